/* Tests for src/gguf: real files, the writer, and every malformed-file case. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

/* --- a byte builder for crafted files ---------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (!n)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }

static void str(bytes *b, const char *s)
{
    u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    u32(b, GGUF_MAGIC);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}

static void kv_u32(bytes *b, const char *key, uint32_t v)
{
    str(b, key);
    u32(b, GGUF_TYPE_UINT32);
    u32(b, v);
}

static void tensor_info(bytes *b, const char *name, uint32_t n_dims, const int64_t *ne,
                        uint32_t type, uint64_t offset)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        u64(b, (uint64_t)ne[i]);
    u32(b, type);
    u64(b, offset);
}

static void pad(bytes *b, size_t align)
{
    while (b->len % align)
        put(b, "", 1);
}

static void zeros(bytes *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(b, "", 1);
}

/* Parses b; returns the error code and leaves the message in err. */
static int parse(bytes *b, sw_err *err)
{
    gguf_ctx *g = NULL;
    err->msg[0] = 0;
    int rc = gguf_open_memory(b->p, b->len, &g, err);
    gguf_close(g);
    free(b->p);
    *b = (bytes){0};
    return rc;
}

/* A valid file with one key and one F32 tensor of 8 elements. */
static void valid_file(bytes *b)
{
    int64_t ne[1] = {8};
    header(b, 3, 1, 1);
    kv_u32(b, "test.answer", 42);
    tensor_info(b, "w", 1, ne, QT_F32, 0);
    pad(b, 32);
    zeros(b, 32);
}

TEST(gguf_crafted_valid_parses)
{
    bytes b = {0};
    sw_err err;
    valid_file(&b);
    CHECKF(parse(&b, &err) == 0, "%s", err.msg);
}

TEST(gguf_bad_magic)
{
    bytes b = {0};
    sw_err err;
    put(&b, "GGML", 4);
    u32(&b, 3);
    zeros(&b, 64);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "bad magic");
}

TEST(gguf_unknown_version)
{
    bytes b = {0};
    sw_err err;
    header(&b, 7, 0, 0);
    CHECK(parse(&b, &err) < 0);
    CHECK_HAS(err.msg, "unknown GGUF version 7");
    header(&b, 1, 0, 0);
    CHECK(parse(&b, &err) < 0);
    CHECK_HAS(err.msg, "version 1");
    header(&b, 0x03000000u, 0, 0);
    CHECK(parse(&b, &err) < 0);
    CHECK_HAS(err.msg, "big-endian");
}

TEST(gguf_v2_accepted)
{
    bytes b = {0};
    sw_err err;
    header(&b, 2, 0, 1);
    kv_u32(&b, "a", 1);
    CHECKF(parse(&b, &err) == 0, "%s", err.msg);
}

TEST(gguf_counts_larger_than_file)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, UINT64_MAX / 2);
    zeros(&b, 100);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "cannot fit");
    header(&b, 3, 1000000, 0);
    zeros(&b, 100);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "cannot fit");
    header(&b, 3, UINT64_MAX, UINT64_MAX);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
}

TEST(gguf_string_length_beyond_file)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    u64(&b, 1000); /* key length */
    put(&b, "abc", 3);
    zeros(&b, 20);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "string length 1000");
    header(&b, 3, 0, 1);
    u64(&b, UINT64_MAX); /* overflowing */
    zeros(&b, 20);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "past the end");
    header(&b, 3, 0, 1); /* string value too long */
    str(&b, "k");
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, UINT64_MAX - 3);
    zeros(&b, 8);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "metadata key #0 'k'");
}

TEST(gguf_array_count_overflow)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    str(&b, "arr");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_UINT64);
    u64(&b, UINT64_MAX / 4); /* * 8 bytes overflows */
    zeros(&b, 16);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "'arr'");
    CHECK_HAS(err.msg, "past the end");
    header(&b, 3, 0, 1);
    str(&b, "strs");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, 1u << 30); /* a billion strings in 16 bytes */
    zeros(&b, 16);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "cannot fit");
    header(&b, 3, 0, 1);
    str(&b, "strs");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, 2);
    str(&b, "ok");
    u64(&b, 99); /* second string past the end */
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "string length 99");
}

TEST(gguf_nested_array)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    str(&b, "nest");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_ARRAY);
    u64(&b, 1);
    zeros(&b, 32);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "nested arrays");
}

TEST(gguf_unknown_value_type)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    str(&b, "weird");
    u32(&b, 13);
    zeros(&b, 16);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "unknown value type 13");
    header(&b, 3, 0, 1);
    str(&b, "weird");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, 99);
    u64(&b, 1);
    zeros(&b, 16);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "unknown array element type 99");
}

static int one_tensor(uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t offset,
                      size_t data_bytes, sw_err *err)
{
    bytes b = {0};
    header(&b, 3, 1, 0);
    tensor_info(&b, "t", n_dims, ne, type, offset);
    pad(&b, 32);
    zeros(&b, data_bytes);
    return parse(&b, err);
}

TEST(gguf_bad_n_dims)
{
    sw_err err;
    int64_t ne[5] = {32, 1, 1, 1, 1};
    CHECK_EQ(one_tensor(0, ne, QT_F32, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "n_dims 0 is outside 1..4");
    CHECK_EQ(one_tensor(5, ne, QT_F32, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "n_dims 5");
}

TEST(gguf_bad_dimensions)
{
    sw_err err;
    int64_t zero[2] = {32, 0}, neg[2] = {32, -4}, big[4] = {INT64_MAX / 2, 4, 1, 1};
    CHECK_EQ(one_tensor(2, zero, QT_F32, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "dimension 1 is 0");
    CHECK_EQ(one_tensor(2, neg, QT_F32, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "dimension 1 is -4");
    CHECK_EQ(one_tensor(4, big, QT_F32, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "overflows");
    int64_t bytes_big[2] = {INT64_MAX / 32 * 32, 1}; /* elements fit, bytes (x4) overflow */
    CHECK_EQ(one_tensor(2, bytes_big, QT_F32, 0, 128, &err), SW_EFORMAT);
}

TEST(gguf_unknown_tensor_type)
{
    sw_err err;
    int64_t ne[1] = {32};
    CHECK_EQ(one_tensor(1, ne, 4, 0, 128, &err), SW_EFORMAT); /* removed Q4_2 */
    CHECK_HAS(err.msg, "unknown tensor type id 4");
    CHECK_EQ(one_tensor(1, ne, 0xffffffffu, 0, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "unknown tensor type id 4294967295");
}

TEST(gguf_row_not_multiple_of_block)
{
    sw_err err;
    int64_t ne[2] = {48, 2};
    CHECK_EQ(one_tensor(2, ne, QT_Q4_K, 0, 4096, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "not a multiple of Q4_K's block size 256");
}

TEST(gguf_tensor_outside_file)
{
    sw_err err;
    int64_t ne[1] = {32}; /* 128 bytes of F32 */
    CHECK_EQ(one_tensor(1, ne, QT_F32, 0, 64, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "outside the data section");
    CHECK_EQ(one_tensor(1, ne, QT_F32, 1024, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "outside the data section");
    CHECK_EQ(one_tensor(1, ne, QT_F32, UINT64_MAX - 31, 128, &err), SW_EFORMAT); /* offset+size wraps */
    CHECK_HAS(err.msg, "outside the data section");
}

TEST(gguf_misaligned_offset)
{
    sw_err err;
    int64_t ne[1] = {8};
    CHECK_EQ(one_tensor(1, ne, QT_F32, 4, 128, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "not a multiple of the alignment 32");
}

TEST(gguf_bad_alignment)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 0);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "general.alignment 0 is not a power of two");
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "48 is not a power of two");
    header(&b, 3, 0, 1);
    str(&b, "general.alignment");
    u32(&b, GGUF_TYPE_UINT8);
    put(&b, "\x20", 1);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "expected u32");
}

TEST(gguf_custom_alignment_respected)
{
    bytes b = {0};
    sw_err err;
    int64_t ne[1] = {8};
    header(&b, 3, 2, 1);
    kv_u32(&b, "general.alignment", 64);
    tensor_info(&b, "a", 1, ne, QT_F32, 0);
    tensor_info(&b, "b", 1, ne, QT_F32, 32); /* aligned to 32, not 64 */
    pad(&b, 64);
    zeros(&b, 128);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "alignment 64");
}

TEST(gguf_duplicate_key)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 2);
    kv_u32(&b, "general.x", 1);
    kv_u32(&b, "general.x", 2);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "duplicate metadata key 'general.x'");
}

TEST(gguf_duplicate_tensor_name)
{
    bytes b = {0};
    sw_err err;
    int64_t ne[1] = {8};
    header(&b, 3, 2, 0);
    tensor_info(&b, "w", 1, ne, QT_F32, 0);
    tensor_info(&b, "w", 1, ne, QT_F32, 32);
    pad(&b, 32);
    zeros(&b, 64);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "duplicate tensor name 'w'");
}

TEST(gguf_overlapping_tensors)
{
    bytes b = {0};
    sw_err err;
    int64_t ne[1] = {16};
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne, QT_F32, 0);
    tensor_info(&b, "b", 1, ne, QT_F32, 32);
    pad(&b, 32);
    zeros(&b, 128);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "overlap");
}

TEST(gguf_truncated_everywhere)
{
    /* Every prefix of a valid file fails cleanly, never crashes. */
    bytes full = {0};
    valid_file(&full);
    for (size_t n = 0; n < full.len; n++) {
        bytes b = {0};
        put(&b, full.p, n);
        sw_err err;
        CHECKF(parse(&b, &err) == SW_EFORMAT, "prefix %zu parsed", n);
        CHECKF(strstr(err.msg, "truncated") || strstr(err.msg, "not a GGUF") ||
                   strstr(err.msg, "cannot fit") || strstr(err.msg, "past the end") ||
                   strstr(err.msg, "outside"),
               "prefix %zu: %s", n, err.msg);
    }
    free(full.p);
}

TEST(gguf_truncated_file_on_disk)
{
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.gguf", test_tmpdir());
    bytes b = {0};
    valid_file(&b);
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.len - 10, f);
    fclose(f);
    free(b.p);
    gguf_ctx *g;
    sw_err err;
    CHECK_EQ(gguf_open(path, GGUF_MMAP, &g, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "trunc.gguf");
    CHECK_HAS(err.msg, "outside the data section");
    CHECK_EQ(gguf_open("/nonexistent/x.gguf", GGUF_NO_DATA, &g, &err), SW_ENOTFOUND);
}

TEST(gguf_key_with_nul)
{
    bytes b = {0};
    sw_err err;
    header(&b, 3, 0, 1);
    u64(&b, 3);
    put(&b, "a\0b", 3);
    u32(&b, GGUF_TYPE_BOOL);
    put(&b, "\1", 1);
    CHECK_EQ(parse(&b, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "NUL");
}

/* --- accessors --------------------------------------------------------- */

TEST(gguf_typed_accessors)
{
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "u32", 7);
    gguf_writer_set_i32(w, "neg", -5);
    gguf_writer_set_u64(w, "big", 1ull << 40);
    gguf_writer_set_f32(w, "f", 0.5f);
    gguf_writer_set_bool(w, "b", true);
    gguf_writer_set_str(w, "s", "hello");
    float arr[3] = {1, 2, 3};
    gguf_writer_set_arr(w, "arr", GGUF_TYPE_FLOAT32, arr, 3);
    gguf_str strs[2] = {{"x", 1}, {"yz", 2}};
    gguf_writer_set_arr_str(w, "strs", strs, 2);
    char path[512];
    snprintf(path, sizeof path, "%s/acc.gguf", test_tmpdir());
    sw_err err;
    CHECK(gguf_writer_begin(w, path, &err) == 0);
    CHECK(gguf_writer_finish(w, &err) == 0);
    gguf_writer_free(w);

    gguf_ctx *g;
    CHECKF(gguf_open(path, GGUF_NO_DATA, &g, &err) == 0, "%s", err.msg);
    uint32_t u;
    int32_t i;
    uint64_t u6;
    float f;
    bool bo;
    const char *s;
    CHECK(gguf_get_u32(g, "u32", &u, &err) == 0 && u == 7);
    CHECK(gguf_get_i32(g, "neg", &i, &err) == 0 && i == -5);
    CHECK_EQ(gguf_get_u32(g, "neg", &u, &err), SW_ERANGE);
    CHECK_EQ(gguf_get_u32(g, "big", &u, &err), SW_ERANGE);
    CHECK(gguf_get_u64(g, "big", &u6, &err) == 0 && u6 == 1ull << 40);
    CHECK(gguf_get_f32(g, "f", &f, &err) == 0 && f == 0.5f);
    CHECK_EQ(gguf_get_u32(g, "f", &u, &err), SW_ETYPE);
    CHECK_HAS(err.msg, "has type f32, expected u32");
    CHECK(gguf_get_bool(g, "b", &bo, &err) == 0 && bo);
    CHECK(gguf_get_str(g, "s", &s, &err) == 0);
    CHECK_STR(s, "hello");
    CHECK_EQ(gguf_get_str(g, "u32", &s, &err), SW_ETYPE);
    CHECK_EQ(gguf_get_u32(g, "missing", &u, &err), SW_ENOTFOUND);
    CHECK_HAS(err.msg, "'missing' not found");
    const gguf_str *out;
    uint64_t n;
    CHECK(gguf_get_arr_str(g, "strs", &out, &n, &err) == 0 && n == 2);
    CHECK_STR(out[1].ptr, "yz");
    CHECK_EQ(gguf_get_arr_str(g, "arr", &out, &n, &err), SW_ETYPE);
    const gguf_kv *kv = gguf_find_kv(g, "arr");
    CHECK(kv && kv->arr_n == 3 && gguf_arr_f64(kv, 2) == 3.0 && gguf_arr_i64(kv, 1) == 2);
    CHECK_STR(gguf_kv_at(g, 0)->key, "u32"); /* insertion order */
    gguf_close(g);
}

TEST(gguf_writer_roundtrip_tensors)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rt.gguf", test_tmpdir());
    gguf_writer *w = gguf_writer_new();
    sw_err err;
    int64_t ne_a[2] = {8, 3}, ne_b[1] = {256};
    gguf_writer_set_str(w, "general.architecture", "test");
    CHECK(gguf_writer_add_tensor(w, "a", QT_F32, 2, ne_a, &err) == 0);
    CHECK(gguf_writer_add_tensor(w, "b", QT_Q8_0, 1, ne_b, &err) == 0);
    CHECK_EQ(gguf_writer_add_tensor(w, "a", QT_F32, 2, ne_a, &err), SW_EINVAL);
    CHECK(gguf_writer_begin(w, path, &err) == 0);
    float a[24];
    for (int k = 0; k < 24; k++)
        a[k] = (float)k;
    uint8_t bq[8 * 34];
    for (size_t k = 0; k < sizeof bq; k++)
        bq[k] = (uint8_t)k;
    CHECK(gguf_writer_write_tensor(w, a, sizeof a, &err) == 0);
    CHECK_EQ(gguf_writer_write_tensor(w, bq, 10, &err), SW_EINVAL);
    CHECK(gguf_writer_write_tensor(w, bq, sizeof bq, &err) == 0);
    CHECK(gguf_writer_finish(w, &err) == 0);
    gguf_writer_free(w);

    for (int mode = GGUF_MMAP; mode <= GGUF_READ; mode++) {
        gguf_ctx *g;
        CHECKF(gguf_open(path, mode, &g, &err) == 0, "%s", err.msg);
        CHECK_EQ(gguf_n_tensors(g), 2);
        const gguf_tensor *t = gguf_find_tensor(g, "b");
        CHECK(t && t->type == QT_Q8_0 && t->size == sizeof bq && t->ne[0] == 256);
        CHECK(memcmp(gguf_tensor_data(g, t), bq, sizeof bq) == 0);
        t = gguf_find_tensor(g, "a");
        CHECK(t && t->n_dims == 2 && t->ne[1] == 3 && t->n_elements == 24);
        CHECK(memcmp(gguf_tensor_data(g, t), a, sizeof a) == 0);
        CHECK(gguf_data_offset(g) % 32 == 0);
        gguf_close(g);
    }
}

/* --- the fixtures: every real file parses ------------------------------ */

TEST(gguf_reads_all_fixtures)
{
    char *list = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.gguf' | sort", test_fixture(""));
    CHECK(test_run(cmd, &list) == 0);
    int files = 0;
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        gguf_ctx *g;
        sw_err err;
        CHECKF(gguf_open(line, GGUF_NO_DATA, &g, &err) == 0, "%s", err.msg);
        const char *arch = NULL;
        CHECKF(gguf_get_str(g, "general.architecture", &arch, &err) == 0, "%s: %s", line, err.msg);
        files++;
        gguf_close(g);
    }
    free(list);
    CHECKF(files >= 40, "only %d fixture files found", files);
}

TEST(gguf_stories260k_metadata)
{
    gguf_ctx *g;
    sw_err err;
    CHECKF(gguf_open(test_fixture("stories260K/stories260K.gguf"), GGUF_MMAP, &g, &err) == 0, "%s",
           err.msg);
    const char *arch;
    uint32_t n_embd;
    CHECK(gguf_get_str(g, "general.architecture", &arch, &err) == 0);
    CHECK_STR(arch, "llama");
    CHECK(gguf_get_u32(g, "llama.embedding_length", &n_embd, &err) == 0);
    CHECK_EQ(n_embd, 64);
    const gguf_str *toks;
    uint64_t n;
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n, &err) == 0);
    CHECK_EQ(n, 512);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->ne[0] == 64 && t->ne[1] == 512);
    CHECK(gguf_tensor_data(g, t) != NULL);
    gguf_close(g);
}
