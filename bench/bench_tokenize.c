/*
 * bench_tokenize.c — tokenizer throughput: how long 1 MiB of English text
 * takes to encode on one core, for the fixture vocabularies.
 *
 * The text is generated, so every run measures the same bytes: sentences
 * of common English words drawn by a fixed-seed generator, with
 * capitals, punctuation, numbers and paragraph breaks, and every so often
 * one of the fixtures' tokenizer test strings (emoji, CJK, Cyrillic, runs
 * of spaces) so that the rare paths are timed too. Each vocabulary encodes
 * the whole text as one call, best of BENCH_TOK_REPS; the report also
 * checks that decoding gives the text back.
 *
 *   int bench_tokenize(FILE *md_out);   markdown section to md_out; 0, or -1
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "text/tokenizer.h"

int bench_tokenize(FILE *md_out);

#define BENCH_TOK_BYTES (1u << 20)
#define BENCH_TOK_REPS 3

static const char *const k_words[] = {
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but",
    "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
    "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time",
    "people", "water", "river", "spillway", "engine", "memory", "model", "weights", "cache",
    "through", "between", "language", "government", "question", "understanding", "although",
    "development", "experience", "information", "particularly", "themselves", "children",
    "morning", "evening", "mountain", "village", "history", "machine", "learning", "quickly",
    "beautiful", "important", "different", "following", "without", "another", "however",
    "because", "something", "nothing", "everyone", "yesterday", "tomorrow", "library", "don't",
    "it's", "we're", "they've", "I'll", "she'd", "computer", "science", "mathematics",
    "tokenizer", "streaming", "experts", "hardware", "pressure", "bandwidth", "throughput",
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The .inp test strings of one fixture vocabulary (all share the same). */
static char *load_samples(const char *dir, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-qwen2.gguf.inp", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    *len = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[*len] = 0;
    return buf;
}

/* Fills out[0, n) with text; returns n. */
static size_t make_text(char *out, size_t n, const char *samples)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    uint64_t seed = 0x5D1BA7E5EEDull;
    size_t k = 0, n_words = sizeof k_words / sizeof k_words[0];
    int sentence = 0;
    const char *sample = samples;
    while (k < n) {
        char chunk[512];
        size_t m = 0;
        if (samples && ++sentence % 40 == 0) { /* the next test string */
            const char *end = strstr(sample, sep);
            if (!end) {
                sample = samples;
                end = strstr(sample, sep);
            }
            m = end ? (size_t)(end - sample) : 0;
            if (m > sizeof chunk - 2)
                m = sizeof chunk - 2;
            memcpy(chunk, sample, m);
            chunk[m++] = ' ';
            sample = end ? end + sizeof sep - 1 : samples;
        } else {
            int len = 6 + (int)(rng_next(&seed) % 14);
            for (int w = 0; w < len && m < sizeof chunk - 40; w++) {
                size_t start = m;
                if (rng_next(&seed) % 29 == 0)
                    m += (size_t)snprintf(chunk + m, 16, "%u", (unsigned)(rng_next(&seed) % 5000));
                else
                    m += (size_t)snprintf(chunk + m, 32, "%s", k_words[rng_next(&seed) % n_words]);
                if (w == 0 && chunk[start] >= 'a' && chunk[start] <= 'z')
                    chunk[start] = (char)(chunk[start] - 'a' + 'A');
                if (w + 1 < len)
                    chunk[m++] = rng_next(&seed) % 11 == 0 ? ',' : ' ';
                if (chunk[m - 1] == ',')
                    chunk[m++] = ' ';
            }
            static const char ends[] = "...!?";
            chunk[m++] = ends[rng_next(&seed) % 5 < 3 ? 0 : rng_next(&seed) % 5];
            chunk[m++] = rng_next(&seed) % 8 == 0 ? '\n' : ' ';
        }
        if (m > n - k)
            m = n - k;
        memcpy(out + k, chunk, m);
        k += m;
    }
    return k;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Times one vocabulary; prints its table row. */
static int bench_vocab(FILE *md, const char *dir, const char *name, const char *text, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, name);
    gguf_ctx *g = NULL;
    tokenizer *t = NULL;
    sw_err err = {0};
    double t0 = now_s();
    if (gguf_open(path, GGUF_NO_DATA, &g, &err) || tok_load(g, &t, &err)) {
        fprintf(md, "| %s | %s | | | | |\n", name, err.msg);
        gguf_close(g);
        return -1;
    }
    double load_s = now_s() - t0;
    gguf_close(g);

    double best = 1e30;
    size_t n = 0;
    int rc = 0;
    for (int r = 0; r < BENCH_TOK_REPS && rc == 0; r++) {
        int32_t *ids = NULL;
        t0 = now_s();
        rc = tok_encode(t, text, len, 0, &ids, &n, &err);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
        if (rc == 0 && r == 0) { /* the text must come back */
            char *back = NULL;
            size_t blen = 0;
            rc = tok_decode(t, ids, n, TOK_DECODE_STRIP_PREFIX, &back, &blen, &err);
            if (rc == 0 && (blen != len || memcmp(back, text, len) != 0))
                rc = sw_errf(&err, SW_EINVAL, "decoding does not give the text back");
            free(back);
        }
        free(ids);
    }
    if (rc)
        fprintf(md, "| %s | %s | | | | |\n", name, err.msg);
    else
        fprintf(md, "| %s | %.0f | %.1f | %.1f | %zu | %.2f |\n", name, load_s * 1e3, best * 1e3,
                (double)len / best / 1e6, n, (double)len / (double)n);
    tok_free(t);
    return rc ? -1 : 0;
}

int bench_tokenize(FILE *md_out)
{
    const char *dir = getenv("SPILLWAY_FIXTURES");
    if (!dir)
        dir = "../shared/fixtures";
    size_t slen = 0;
    char *samples = load_samples(dir, &slen);
    char *text = malloc(BENCH_TOK_BYTES);
    if (!text) {
        free(samples);
        return -1;
    }
    size_t len = make_text(text, BENCH_TOK_BYTES, samples);

    fprintf(md_out, "## Tokenizer\n\n"
                    "Encoding %zu bytes of generated English text (with the fixtures' test\n"
                    "strings mixed in) as one call on one thread, best of %d; the ids decode\n"
                    "back to the text.\n\n"
                    "| vocabulary | load ms | encode ms | MB/s | tokens | bytes/token |\n"
                    "|---|---:|---:|---:|---:|---:|\n",
            len, BENCH_TOK_REPS);
    static const char *const vocabs[] = {"qwen2", "llama-bpe", "gpt-2", "deepseek-llm",
                                         "llama-spm", "phi-3"};
    int rc = 0;
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++)
        if (bench_vocab(md_out, dir, vocabs[i], text, len))
            rc = -1;
    fputc('\n', md_out);
    free(text);
    free(samples);
    return rc;
}
