/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader: any byte string must
 * either parse or fail with a message; a parsed context must be consistent
 * (every tensor's bytes inside the image, every accessor safe).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_ctx *g = NULL;
    sw_err err;
    if (gguf_open_memory(data, size, &g, &err) != 0) {
        if (!err.msg[0])
            abort(); /* every failure must say why */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        uint32_t u;
        const char *s;
        gguf_get_u32(g, kv->key, &u, NULL);
        gguf_get_str(g, kv->key, &s, NULL);
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_n && kv->arr_type != GGUF_TYPE_STRING) {
            sink ^= (uint8_t)gguf_arr_i64(kv, kv->arr_n - 1);
            double f = gguf_arr_f64(kv, 0); /* any double: a cast to an integer may overflow */
            uint64_t bits;
            memcpy(&bits, &f, sizeof bits);
            sink ^= (uint8_t)bits;
        }
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const uint8_t *p = gguf_tensor_data(g, t);
        if (gguf_find_tensor(g, t->name) != t)
            abort();
        if (p < data || p + t->size > data + size)
            abort();
        if (t->size)
            sink ^= p[0] ^ p[t->size - 1];
    }
    (void)sink;
    gguf_close(g);
    return 0;
}
