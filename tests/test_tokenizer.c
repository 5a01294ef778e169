/* Tests for src/text/tokenizer.h: every fixture vocabulary's test vectors,
 * the tiny models' vocabularies, special tokens, and streaming decoding. */
#include "test.h"

#include <stdlib.h>

#include "gguf/gguf.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

static tokenizer *load_tok(const char *rel)
{
    gguf_ctx *g = NULL;
    tokenizer *t = NULL;
    sw_err err = {0};
    if (gguf_open(test_fixture(rel), GGUF_NO_DATA, &g, &err) == 0 && tok_load(g, &t, &err) != 0)
        t = NULL;
    if (err.code)
        fprintf(stderr, "    %s: %s\n", rel, err.msg);
    gguf_close(g);
    return t;
}

/* Encodes s; returns the ids as a malloc'd array (count in *n). */
static int32_t *encode(const tokenizer *t, const char *s, size_t len, unsigned flags, size_t *n)
{
    int32_t *ids = NULL;
    sw_err err = {0};
    if (tok_encode(t, s, len, flags, &ids, n, &err) != 0) {
        fprintf(stderr, "    encode: %s\n", err.msg);
        return NULL;
    }
    return ids;
}

static char *decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags, size_t *len)
{
    char *out = NULL;
    sw_err err = {0};
    if (tok_decode(t, ids, n, flags, &out, len, &err) != 0)
        fprintf(stderr, "    decode: %s\n", err.msg);
    return out;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "      %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/*
 * Runs vocab/ggml-vocab-NAME.gguf against its .inp/.out: the strings are
 * separated by "\n__ggml_vocab_test__\n", the expected ids are one line per
 * string (no BOS). Counts exact encodings and exact round trips.
 */
static void run_vocab(const char *name, int *n_tests, int *n_exact, int *n_round)
{
    char rel[128], path[160];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    *n_tests = *n_exact = *n_round = 0;
    tokenizer *t = load_tok(rel);
    if (!t)
        return;
    snprintf(path, sizeof path, "%s.inp", rel);
    size_t inp_len, out_len;
    char *inp = test_read_file(test_fixture(path), &inp_len);
    snprintf(path, sizeof path, "%s.out", rel);
    char *out = test_read_file(test_fixture(path), &out_len);
    if (!inp || !out) {
        fprintf(stderr, "    cannot read %s test vectors\n", name);
        goto done;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = inp, *line = out;
    while (s < inp + inp_len && *line) {
        char *end = strstr(s, sep);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = 0;
        int32_t want[1024];
        size_t n_want = 0;
        for (char *p = line; *p && n_want < 1024;) {
            char *q;
            long v = strtol(p, &q, 10);
            if (q == p)
                break;
            want[n_want++] = (int32_t)v;
            p = q;
        }

        size_t n = 0;
        int32_t *ids = encode(t, s, len, 0, &n);
        (*n_tests)++;
        if (ids && n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0)) {
            (*n_exact)++;
        } else {
            fprintf(stderr, "    %s: wrong ids for \"%.*s\"\n", name, (int)len, s);
            print_ids("want", want, n_want);
            print_ids("got ", ids, ids ? n : 0);
        }
        size_t dlen = 0;
        char *text = ids ? decode(t, ids, n, TOK_DECODE_STRIP_PREFIX, &dlen) : NULL;
        if (text && dlen == len && memcmp(text, s, len) == 0)
            (*n_round)++;
        else
            fprintf(stderr, "    %s: \"%.*s\" decodes to \"%s\"\n", name, (int)len, s,
                    text ? text : "(null)");
        free(text);
        free(ids);
        if (!end || !eol)
            break;
        s = end + sizeof sep - 1;
        line = eol + 1;
    }
done:
    fprintf(stderr, "    %s: %d tests, %d exact, %d round trips\n", name, *n_tests, *n_exact,
            *n_round);
    free(inp);
    free(out);
    tok_free(t);
}

#define VOCAB_TEST(fn, name)                                                   \
    TEST(fn)                                                                   \
    {                                                                          \
        int n, exact, round;                                                   \
        run_vocab(name, &n, &exact, &round);                                   \
        CHECKF(n == 46, "%s: %d test strings read, want 46", name, n);         \
        CHECK_EQ(exact, n);                                                    \
        CHECK_EQ(round, n);                                                    \
    }

VOCAB_TEST(tokenizer_vocab_llama_spm, "llama-spm")
VOCAB_TEST(tokenizer_vocab_llama_bpe, "llama-bpe")
VOCAB_TEST(tokenizer_vocab_qwen2, "qwen2")
VOCAB_TEST(tokenizer_vocab_deepseek_llm, "deepseek-llm")
VOCAB_TEST(tokenizer_vocab_gpt2, "gpt-2")
VOCAB_TEST(tokenizer_vocab_phi3, "phi-3")

/* A model's own vocabulary (SentencePiece BPE, byte fallback) round-trips
 * and adds BOS. */
static void check_model_vocab(const char *rel)
{
    tokenizer *t = load_tok(rel);
    CHECKF(t, "cannot load %s", rel);
    CHECK_EQ(tok_kind(t), TOK_KIND_SPM);
    CHECK_EQ(tok_n_vocab(t), 512);
    CHECK_EQ(tok_bos(t), 1);
    CHECK_EQ(tok_eos(t), 2);
    CHECK(tok_is_eog(t, 2));
    static const char *const texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  two spaces, a tab\tand a newline\n",
        "Ünïcödé and emoji \xF0\x9F\xA6\x99 fall back to bytes",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n = 0, len = 0;
        int32_t *ids = encode(t, texts[i], strlen(texts[i]), TOK_ADD_BOS, &n);
        CHECK(ids && n >= 1 && ids[0] == 1);
        for (size_t k = 0; k < n; k++)
            CHECK(ids[k] >= 0 && ids[k] < 512);
        char *back = decode(t, ids, n, TOK_DECODE_STRIP_PREFIX, &len);
        CHECKF(back && strcmp(back, texts[i]) == 0, "\"%s\" came back as \"%s\"", texts[i],
               back ? back : "(null)");
        free(back);
        free(ids);
    }
    tok_free(t);
}

TEST(tokenizer_model_tiny_llama) { check_model_vocab("models/llama/llama-f32.gguf"); }
TEST(tokenizer_model_stories260k) { check_model_vocab("stories260K/stories260K.gguf"); }
TEST(tokenizer_model_tinymoe) { check_model_vocab("tinymoe/tinymoe-q8_0.gguf"); }

TEST(tokenizer_special_tokens_only_when_asked)
{
    tokenizer *t = load_tok("vocab/ggml-vocab-qwen2.gguf");
    CHECK(t);
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    size_t n = 0;
    int32_t *ids = encode(t, chat, strlen(chat), TOK_PARSE_SPECIAL, &n);
    CHECK(ids && n >= 4);
    CHECK_EQ(ids[0], 151644);
    CHECK_EQ(ids[n - 1], 151645);
    free(ids);
    /* user content: the markup is just text */
    ids = encode(t, chat, strlen(chat), TOK_ADD_BOS, &n);
    CHECK(ids && n > 4);
    for (size_t i = 0; i < n; i++)
        CHECK(ids[i] != 151644 && ids[i] != 151645);
    size_t len;
    char *back = decode(t, ids, n, 0, &len);
    CHECK(back);
    CHECK_STR(back, chat);
    free(back);
    free(ids);
    /* user-defined tokens are matched in any text */
    ids = encode(t, "a[PAD151650]b", 13, 0, &n);
    CHECK(ids && n == 3);
    CHECK_EQ(ids[1], 151650);
    free(ids);

    CHECK_EQ(tok_eot(t), 151645);
    CHECK(tok_is_eog(t, 151645));
    CHECK(tok_is_eog(t, 151643));
    CHECK(!tok_is_eog(t, 9707));
    CHECK(tok_is_control(t, 151644));
    CHECK(!tok_add_bos(t));
    CHECK_EQ(tok_find(t, "<|im_end|>", 10), 151645);
    /* control tokens render only when asked */
    int32_t end[] = {9707, 151645};
    back = decode(t, end, 2, 0, &len);
    CHECK_STR(back, "Hello");
    free(back);
    back = decode(t, end, 2, TOK_DECODE_SPECIAL, &len);
    CHECK_STR(back, "Hello<|im_end|>");
    free(back);
    tok_free(t);
}

TEST(tokenizer_spm_bos_and_prefix)
{
    tokenizer *t = load_tok("vocab/ggml-vocab-llama-spm.gguf");
    CHECK(t);
    CHECK(tok_add_bos(t));
    size_t n = 0;
    int32_t *ids = encode(t, "", 0, TOK_ADD_BOS, &n);
    CHECK(ids && n == 1 && ids[0] == 1);
    free(ids);
    /* after a special token the text gets its "▁" prefix again */
    const char *s = "<s>Hello</s>";
    ids = encode(t, s, strlen(s), TOK_PARSE_SPECIAL, &n);
    CHECK(ids && n == 3);
    CHECK_EQ(ids[0], 1);
    CHECK_EQ(ids[1], 15043); /* "▁Hello" */
    CHECK_EQ(ids[2], 2);
    free(ids);
    tok_free(t);
}

TEST(tokenizer_stream_holds_split_characters)
{
    tokenizer *t = load_tok("vocab/ggml-vocab-llama-spm.gguf");
    CHECK(t);
    int32_t llama_bytes[4]; /* 🦙 = F0 9F A6 99, as byte tokens */
    const unsigned char emoji[4] = {0xF0, 0x9F, 0xA6, 0x99};
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", emoji[i]);
        llama_bytes[i] = tok_find(t, name, 6);
        CHECK(llama_bytes[i] >= 0);
    }
    tok_stream *s = tok_stream_new(t, 0);
    CHECK(s);
    size_t len;
    for (int i = 0; i < 3; i++) {
        tok_stream_push(s, llama_bytes[i], &len);
        CHECK_EQ(len, 0);
        CHECK_EQ(tok_stream_pending(s), (size_t)i + 1);
    }
    const char *p = tok_stream_push(s, llama_bytes[3], &len);
    CHECK_EQ(len, 4);
    CHECK(memcmp(p, emoji, 4) == 0);

    /* a stray continuation byte, then an unfinished character at the end */
    p = tok_stream_push(s, llama_bytes[2], &len);
    CHECK_EQ(len, 3);
    CHECK(memcmp(p, UTF8_REPLACEMENT, 3) == 0);
    p = tok_stream_push(s, llama_bytes[0], &len);
    CHECK_EQ(len, 0);
    p = tok_stream_push(s, 15043, &len); /* "▁Hello" breaks the sequence */
    CHECK_EQ(len, 9);
    CHECK(memcmp(p, UTF8_REPLACEMENT " Hello", 9) == 0);
    tok_stream_push(s, llama_bytes[0], &len);
    p = tok_stream_flush(s, &len);
    CHECK_EQ(len, 3);
    CHECK(utf8_valid(p, len));
    tok_stream_free(s);
    tok_free(t);
}

TEST(tokenizer_bpe_invalid_utf8_is_kept_as_bytes)
{
    tokenizer *t = load_tok("vocab/ggml-vocab-qwen2.gguf");
    CHECK(t);
    const char text[] = "ok \xFF\xFE caf\xC3\xA9 \xE2\x82 end";
    size_t n = 0, len = strlen(text);
    int32_t *ids = encode(t, text, len, 0, &n);
    CHECK(ids && n > 0);
    char joined[64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m;
        const char *p = tok_piece(t, ids[i], &m);
        CHECK(k + m <= sizeof joined);
        memcpy(joined + k, p, m);
        k += m;
    }
    CHECK(k == len && memcmp(joined, text, len) == 0);
    char *back = decode(t, ids, n, 0, &len);
    CHECK(back && utf8_valid(back, len));
    free(back);
    free(ids);
    tok_free(t);
}

TEST(tokenizer_qwen2_nfc)
{
    tokenizer *t = load_tok("vocab/ggml-vocab-qwen2.gguf");
    CHECK(t);
    size_t n1, n2;
    int32_t *a = encode(t, "caf\xC3\xA9", 5, 0, &n1);  /* é precomposed */
    int32_t *b = encode(t, "cafe\xCC\x81", 6, 0, &n2); /* e + combining acute */
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0);
    free(a);
    free(b);
    tok_free(t);
}

TEST(tokenizer_utf8_next)
{
    uint32_t cp;
    CHECK_EQ(utf8_next((const unsigned char *)"\xC3\xA9", 2, &cp), 2);
    CHECK_EQ(cp, 0xE9);
    CHECK_EQ(utf8_next((const unsigned char *)"\xC3", 1, &cp), 0);
    CHECK_EQ(utf8_next((const unsigned char *)"\xC0\x80", 2, &cp), -1);     /* overlong */
    CHECK_EQ(utf8_next((const unsigned char *)"\xED\xA0\x80", 3, &cp), -1); /* surrogate */
    CHECK_EQ(utf8_next((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), -1);
    CHECK_EQ(utf8_next((const unsigned char *)"\xE2\x82x", 3, &cp), -2);
    CHECK_EQ(utf8_next((const unsigned char *)"\xF0\x9F\xA6\x99", 4, &cp), 4);
    CHECK_EQ(cp, 0x1F999);
    CHECK(!utf8_valid("\xFF", 1));
    CHECK(utf8_valid("a\xE2\x96\x81", 4));
}

/* A GGUF holding just the given tokenizer keys, written to the test's tmpdir. */
static const char *write_vocab(const char *model, const char *pre, bool merges, bool dup)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/v.gguf", test_tmpdir());
    gguf_writer *w = gguf_writer_new();
    sw_err err = {0};
    gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    if (pre)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_str toks[] = {{"a", 1}, {"b", 1}, {dup ? "a" : "ab", dup ? 1 : 2}};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    if (merges) {
        gguf_str m[] = {{"a b", 3}};
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, 1);
    }
    if (gguf_writer_begin(w, path, &err) || gguf_writer_finish(w, &err))
        fprintf(stderr, "    write: %s\n", err.msg);
    gguf_writer_free(w);
    return path;
}

static int try_load(const char *path, sw_err *err)
{
    gguf_ctx *g = NULL;
    tokenizer *t = NULL;
    int rc = gguf_open(path, GGUF_NO_DATA, &g, err);
    if (rc == 0)
        rc = tok_load(g, &t, err);
    tok_free(t);
    gguf_close(g);
    return rc;
}

TEST(tokenizer_bad_metadata_is_an_error)
{
    sw_err err = {0};
    CHECK(try_load(write_vocab("gpt2", "qwen2", false, false), &err) < 0);
    CHECK_HAS(err.msg, "tokenizer.ggml.merges");
    CHECK(try_load(write_vocab("gpt2", "no-such-family", true, false), &err) < 0);
    CHECK_HAS(err.msg, "no-such-family");
    CHECK(try_load(write_vocab("gpt2", "gpt-2", true, true), &err) < 0);
    CHECK_HAS(err.msg, "duplicate");
    CHECK(try_load(write_vocab("t5", NULL, false, false), &err) < 0);
    CHECK_HAS(err.msg, "t5");
    CHECK_EQ(try_load(write_vocab("gpt2", "gpt-2", true, false), &err), 0);
}

/* Runs `spillway tokenize ARGS`; returns its status, output in out. */
static int run_tokenize(const char *args, char *out, size_t cap)
{
    char cmd[1024], *text = NULL;
    snprintf(cmd, sizeof cmd, "%s tokenize %s", test_bin(), args);
    int rc = test_run(cmd, &text);
    snprintf(out, cap, "%s", text ? text : "");
    free(text);
    return rc;
}

TEST(tokenizer_cli_tokenize)
{
    char args[512], out[4096];
    snprintf(args, sizeof args, "%s --ids -p 'Hello world'",
             test_fixture("vocab/ggml-vocab-qwen2.gguf"));
    CHECK_EQ(run_tokenize(args, out, sizeof out), 0);
    CHECK_HAS(out, "[9707, 1879]");
    snprintf(args, sizeof args, "%s -p 'Hello world'",
             test_fixture("vocab/ggml-vocab-llama-spm.gguf"));
    CHECK_EQ(run_tokenize(args, out, sizeof out), 0);
    CHECK_HAS(out, "     1 -> '<s>'\n 15043 -> ' Hello'\n  3186 -> ' world'\n");
    snprintf(args, sizeof args, "%s --no-bos --ids -p 'Hello world'",
             test_fixture("vocab/ggml-vocab-llama-spm.gguf"));
    CHECK_EQ(run_tokenize(args, out, sizeof out), 0);
    CHECK_HAS(out, "[15043, 3186]");
    snprintf(args, sizeof args, "%s --ids --special -p '<|im_start|>x'",
             test_fixture("vocab/ggml-vocab-qwen2.gguf"));
    CHECK_EQ(run_tokenize(args, out, sizeof out), 0);
    CHECK_HAS(out, "[151644, 87]");
    CHECK(run_tokenize("/nonexistent.gguf -p x 2>/dev/null", out, sizeof out) != 0);
    CHECK_EQ(run_tokenize("2>/dev/null", out, sizeof out), 2);
}
