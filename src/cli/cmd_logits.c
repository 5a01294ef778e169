/*
 * cmd_logits.c — `spillway logits MODEL.gguf --tokens 1,2,3 --out FILE`
 *
 * Runs the forward pass over the given token ids and writes the logits of
 * every position as little-endian float32, row-major [n_tokens][n_vocab]:
 * the format of the fixtures' reference logits, so the two compare directly.
 *
 * It is also the forward pass's stopwatch: --time reports the prompt's
 * throughput, and --decode N then greedily decodes N more tokens one at a
 * time and reports their rate, with the weights already in memory.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "store/catalog.h"
#include "store/store.h"
#include "util/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *usage_text =
    "usage: spillway logits MODEL.gguf --tokens ID,ID,... --out FILE [options]\n"
    "\n"
    "Writes the logits of every position as little-endian float32 [n_tokens][n_vocab].\n"
    "  --tokens LIST   comma-separated token ids\n"
    "  --out FILE      output file ('-' for standard output)\n"
    "  --last          write only the last position's logits [n_vocab]\n"
    "  --threads N     threads (default: all CPUs this process may use)\n"
    "  --batch N       tokens per forward step (default 512; 1 = one at a time)\n"
    "  --kv-type T     KV cache type: f32 (default), f16 or q8_0\n"
    "  --ctx N         KV cache positions (default: as many as needed)\n"
    "  --compat llama.cpp  follow llama.cpp where it knowingly differs from the\n"
    "                  reference (YaRN rounding, F16/BF16 activations, float RoPE\n"
    "                  angles), to compare with llama.cpp's logits (use with\n"
    "                  --kv-type f16); llama.cpp-fa: as llama.cpp with flash\n"
    "                  attention on (its default)\n"
    "  --time          report tokens per second on standard error\n"
    "  --decode N      after the tokens, decode N more greedily, one at a time,\n"
    "                  and report their rate (implies --time; not written)\n"
    CLI_STORE_USAGE;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Parses "1,2,3" into a malloc'd array. */
static int parse_tokens(const char *s, int32_t **out, int *n)
{
    size_t cap = 16;
    int32_t *t = malloc(cap * sizeof *t);
    int cnt = 0;
    while (t) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX)
            break;
        if ((size_t)cnt == cap) {
            int32_t *nt = realloc(t, 2 * cap * sizeof *t);
            if (!nt)
                break;
            t = nt;
            cap *= 2;
        }
        t[cnt++] = (int32_t)v;
        if (*end == 0) {
            *out = t;
            *n = cnt;
            return 0;
        }
        if (*end != ',')
            break;
        s = end + 1;
    }
    free(t);
    return -1;
}

static int write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "wb") : stdout;
    if (!f)
        return -1;
    size_t put = fwrite(x, sizeof(float), n, f); /* x86 and arm64 are little-endian */
    int bad = put != n;
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        bad |= fflush(f) != 0;
    return bad ? -1 : 0;
}

/* Greedy decoding of n_decode tokens after the prompt whose last logits are
 * in `last`; prints the rate. */
static int decode_greedy(model *m, model_state *s, kv_cache *kv, sw_pool *pool, float *last,
                         int n_vocab, int n_decode, sw_err *err)
{
    double t0 = now_s();
    for (int i = 0; i < n_decode; i++) {
        int32_t tok = argmax(last, n_vocab);
        int rc = model_forward(m, s, kv, pool, &tok, 1, last, MODEL_LOGITS_LAST, err);
        if (rc)
            return rc;
    }
    double dt = now_s() - t0;
    fprintf(stderr, "decode: %d tokens in %.3f s, %.2f tok/s (context %d..%d)\n", n_decode, dt,
            n_decode / dt, kv_cache_pos(kv) - n_decode, kv_cache_pos(kv));
    return 0;
}

int cmd_logits(int argc, char **argv)
{
    const char *path = NULL, *tokens_arg = NULL, *out_path = NULL;
    int threads = 0, batch = 0, n_ctx = 0, n_decode = 0, timing = 0, last_only = 0;
    kv_cache_opts ko = {.type = QT_F32};
    model_opts mo = {0};
    store_opts so_store = cli_store_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int sa = cli_store_arg(&so_store, "logits", a, i + 1 < argc ? argv[i + 1] : NULL);
        if (sa < 0)
            return 2;
        if (sa > 0) {
            i += sa - 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--tokens") && i + 1 < argc) {
            tokens_arg = argv[++i];
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--last")) {
            last_only = 1;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--batch") && i + 1 < argc) {
            batch = atoi(argv[++i]);
        } else if (!strcmp(a, "--ctx") && i + 1 < argc) {
            n_ctx = atoi(argv[++i]);
        } else if (!strcmp(a, "--time")) {
            timing = 1;
        } else if (!strcmp(a, "--decode") && i + 1 < argc) {
            n_decode = atoi(argv[++i]);
            timing = 1;
        } else if (!strcmp(a, "--kv-type") && i + 1 < argc) {
            const char *t = argv[++i];
            if (cli_parse_kv_type(t, &ko.type)) {
                cli_fail("logits: --kv-type must be f32, f16 or q8_0, not '%s'", t);
                return 2;
            }
        } else if (!strcmp(a, "--compat") && i + 1 < argc) {
            const char *c = argv[++i];
            if (strcmp(c, "llama.cpp") && strcmp(c, "llama.cpp-fa")) {
                cli_fail("logits: --compat knows only 'llama.cpp' and 'llama.cpp-fa', not '%s'",
                         c);
                return 2;
            }
            mo.compat = MODEL_COMPAT_LLAMACPP;
            if (!strcmp(c, "llama.cpp-fa"))
                mo.compat |= MODEL_COMPAT_FLASH_ATTN;
        } else if (a[0] != '-' && !path) {
            path = a;
        } else {
            fprintf(stderr, "spillway logits: unexpected argument '%s'\n\n%s", a, usage_text);
            return 2;
        }
    }
    if (!path || !tokens_arg || !out_path || threads < 0 || batch < 0 || n_ctx < 0 ||
        n_decode < 0) {
        fputs(usage_text, stderr);
        return 2;
    }
    int32_t *tokens;
    int n;
    if (parse_tokens(tokens_arg, &tokens, &n)) {
        cli_fail("logits: --tokens must be comma-separated token ids");
        return 2;
    }
    ko.n_ctx = n_ctx ? n_ctx : n + n_decode;

    sw_err err = {0};
    store *st = NULL;
    model *m = NULL;
    model_state *s = NULL;
    kv_cache *kv = NULL;
    sw_pool *pool = NULL;
    float *logits = NULL;
    char *resolved = NULL;
    int status = 1;
    if (catalog_resolve(path, NULL, &resolved, &err) < 0 || store_open_opts(resolved, &so_store, &st, &err) ||
        model_load(st, &mo, &m, &err))
        goto done;
    model_info info;
    model_get_info(m, &info);
    model_state_opts so = {.n_batch = batch};
    if (kv_cache_new(m, &ko, &kv, &err) || model_state_new(m, &so, &s, &err) ||
        sw_pool_create(threads, &pool, &err))
        goto done;
    size_t rows = last_only ? 1 : (size_t)n;
    logits = malloc(sizeof(float) * rows * (size_t)info.n_vocab);
    if (!logits) {
        sw_errf(&err, SW_ENOMEM, "out of memory for %zu x %d logits", rows, info.n_vocab);
        goto done;
    }
    double t0 = now_s();
    if (model_forward(m, s, kv, pool, tokens, n, logits,
                      last_only ? MODEL_LOGITS_LAST : MODEL_LOGITS_ALL, &err))
        goto done;
    if (timing) {
        double dt = now_s() - t0;
        fprintf(stderr, "forward: %d tokens in %.3f s, %.2f tok/s (batch %d, %d threads, KV %s)\n",
                n, dt, n / dt, batch ? batch : 512, sw_pool_size(pool),
                quant_name(kv_cache_type(kv)));
    }
    if (write_floats(out_path, logits, rows * info.n_vocab)) {
        sw_errf(&err, SW_EIO, "cannot write '%s': %s", out_path, strerror(errno));
        goto done;
    }
    if (n_decode && decode_greedy(m, s, kv, pool, logits + (rows - 1) * info.n_vocab,
                                  info.n_vocab, n_decode, &err))
        goto done;
    if (timing)
        cli_store_print(stderr, st);
    status = 0;
done:
    if (status)
        cli_fail("logits: %s", err.msg);
    free(logits);
    sw_pool_destroy(pool);
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
    free(resolved);
    free(tokens);
    return status;
}
