/*
 * fuzz_tokenizer.c — libFuzzer target for the tokenizer: any byte string
 * must encode to valid ids and decode to valid UTF-8, without a crash.
 *
 * The vocabulary is loaded once, from SPILLWAY_FUZZ_VOCAB or by default
 * ../shared/fixtures/vocab/ggml-vocab-qwen2.gguf. The first input byte
 * chooses the flags, so special-token parsing is fuzzed too. For byte-level
 * BPE, where no normalisation can apply (no byte >= 0xCC, see
 * tok_encode.c), the tokens' pieces must spell the input exactly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tokenizer *g_tok;

static void load_once(void)
{
    if (g_tok)
        return;
    const char *path = getenv("SPILLWAY_FUZZ_VOCAB");
    if (!path)
        path = "../shared/fixtures/vocab/ggml-vocab-qwen2.gguf";
    gguf_ctx *g = NULL;
    sw_err err = {0};
    if (gguf_open(path, GGUF_NO_DATA, &g, &err) || tok_load(g, &g_tok, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        exit(1);
    }
    gguf_close(g);
}

/* The tokens' pieces, joined, must be the input. Not checked where a
 * user-defined token is also the symbol of a byte (DeepSeek's "ø", "Á"...):
 * it renders as its text, as in llama.cpp, so a stray byte comes back as
 * that text. */
static void check_spelling(const int32_t *ids, size_t n, const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (tok_attr(g_tok, ids[i]) & TOK_ATTR_USER_DEFINED)
            return;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m;
        const char *p = tok_piece(g_tok, ids[i], &m);
        if (m > len - at || memcmp(p, text + at, m) != 0)
            abort();
        at += m;
    }
    if (at != len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    if (size == 0)
        return 0;
    unsigned flags = data[0] & (TOK_ADD_BOS | TOK_PARSE_SPECIAL);
    const uint8_t *text = data + 1;
    size_t len = size - 1;

    int32_t *ids = NULL;
    size_t n = 0;
    sw_err err = {0};
    if (tok_encode(g_tok, (const char *)text, len, flags, &ids, &n, &err) != 0)
        abort(); /* only running out of memory may fail */
    for (size_t i = 0; i < n; i++)
        if (!tok_valid(g_tok, ids[i]))
            abort();
    if (tok_kind(g_tok) == TOK_KIND_BPE && !(flags & TOK_ADD_BOS)) {
        bool composable = false;
        for (size_t i = 0; i < len && !composable; i++)
            composable = text[i] >= 0xCC;
        if (!composable)
            check_spelling(ids, n, text, len);
    }

    char *out = NULL;
    size_t out_len = 0;
    if (tok_decode(g_tok, ids, n, data[0] & 0x80 ? TOK_DECODE_SPECIAL : 0, &out, &out_len,
                   &err) != 0 ||
        !utf8_valid(out, out_len))
        abort();
    free(out);
    free(ids);
    return 0;
}
