/*
 * cmd_trace.c — `spillway trace MODEL -p PROMPT [-n N] --out FILE`
 *
 * Records which experts a MoE model routes each token to, at each layer,
 * as a routing trace (store/trace.h: JSON lines, the shape of the
 * fixtures' traces/), for `spillway plan --trace`, `spillway bench
 * --replay` and cache-policy work on real routing.
 *
 * What runs is `spillway run` with greedy decoding: the prompt is
 * prefilled, then N tokens are generated, each the argmax of the last
 * logits; the text goes to standard output as it comes. With -n 0 only the
 * prompt runs, teacher-forced: every row is a token of the given text. The
 * model's routing hook (model.h) sees every MoE layer of every step, and
 * each token of the step becomes one row: layer, token index (its
 * position), the chosen experts best first, and their mixing weights as
 * "gating_probs". As generate.h explains, the last generated token is
 * never run through the model, so the trace has n_prompt + N - 1 tokens.
 *
 * --lines treats each non-empty line of the prompt as its own sequence
 * (problem_id 0, 1, ...; the KV cache is emptied between them), so one
 * command records a whole set of prompts.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "engine/generate.h"
#include "store/catalog.h"
#include "store/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: spillway trace MODEL (-p PROMPT | -f FILE) --out TRACE [options]\n"
    "\n"
    "Runs MODEL greedily on PROMPT and writes the experts its router chose for every\n"
    "token at every MoE layer as JSON lines (the routing-trace format of\n"
    "'spillway plan --trace' and 'spillway bench --replay').\n"
    "  -p, --prompt TEXT     the prompt (BOS added, as 'spillway run' does)\n"
    "  -f, --file FILE       read the prompt from FILE ('-' for standard input)\n"
    "  -n, --num-predict N   tokens to generate greedily (default 0: only the prompt,\n"
    "                        teacher-forced)\n"
    "  -o, --out TRACE       the trace to write ('-' for standard output)\n"
    "  --lines               every non-empty line of the prompt is its own sequence\n"
    "  --dataset NAME        the rows' \"dataset\" (default \"prompt\")\n"
    "  --ignore-eos          keep generating past end-of-text tokens\n"
    "  --threads N           threads (default: all CPUs this process may use)\n"
    "  --batch N             prompt tokens per forward step (default 512)\n"
    "  --models-dir DIR      also look for MODEL names in DIR (repeatable)\n"
    CLI_STORE_USAGE
    "  --quiet               do not print the generated text\n";

typedef struct trace_args {
    const char *model, *prompt, *file, *out, *dataset;
    const char **dirs;
    int n_dirs, n_gen;
    bool lines, quiet, ignore_eos;
    generator_opts go;
} trace_args;

/* --- recording ------------------------------------------------------------ */

typedef struct recorder {
    trace t;
    const char *dataset;
    int64_t problem_id;
    uint64_t rows;
    int rc;          /* first failure inside the hook */
    sw_err err;
} recorder;

static void record_route(void *ctx, const model_route *r)
{
    recorder *rec = ctx;
    for (int i = 0; i < r->n_tokens && rec->rc == 0; i++) {
        const int *ex = r->experts + (size_t)i * (size_t)r->n_used;
        const float *w = r->weights + (size_t)i * (size_t)r->n_used;
        rec->rc = trace_add(&rec->t, rec->dataset, rec->problem_id, r->pos + i, r->layer, ex, w,
                            r->n_used, &rec->err);
        rec->rows += rec->rc == 0;
    }
}

/* --- arguments ------------------------------------------------------------ */

/* An option with a value: 1 if a was one (its value consumed), -1 if the
 * value is bad, 0 otherwise. */
static int parse_valued(trace_args *a, const char *o, const char *v)
{
    int bad = 0;
    if (!strcmp(o, "-p") || !strcmp(o, "--prompt"))
        a->prompt = v;
    else if (!strcmp(o, "-f") || !strcmp(o, "--file"))
        a->file = v;
    else if (!strcmp(o, "-o") || !strcmp(o, "--out"))
        a->out = v;
    else if (!strcmp(o, "--dataset"))
        a->dataset = v;
    else if (!strcmp(o, "--models-dir"))
        a->dirs[a->n_dirs++] = v;
    else if (!strcmp(o, "-n") || !strcmp(o, "--num-predict"))
        bad = cli_parse_int(v, 0, INT32_MAX, &a->n_gen);
    else if (!strcmp(o, "--threads"))
        bad = cli_parse_int(v, 1, SW_POOL_MAX_THREADS, &a->go.n_threads);
    else if (!strcmp(o, "--batch"))
        bad = cli_parse_int(v, 1, 1 << 16, &a->go.n_batch);
    else
        return 0;
    return bad ? -1 : 1;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, trace_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        int sa = cli_store_arg(&a->go.store, "trace", o, v);
        if (sa < 0)
            return 2;
        if (sa > 0) {
            i += sa - 1;
            continue;
        }
        int rc = v ? parse_valued(a, o, v) : 0;
        if (rc < 0) {
            fprintf(stderr, "spillway trace: bad value '%s' for %s\n", v, o);
            return 2;
        }
        if (rc > 0) {
            i++;
        } else if (!strcmp(o, "--lines")) {
            a->lines = true;
        } else if (!strcmp(o, "--quiet")) {
            a->quiet = true;
        } else if (!strcmp(o, "--ignore-eos")) {
            a->ignore_eos = true;
        } else if (o[0] != '-' && !a->model) {
            a->model = o;
        } else {
            fprintf(stderr, "spillway trace: unexpected argument '%s'\n\n%s", o, usage_text);
            return 2;
        }
    }
    if (!a->model || !a->out || !!a->prompt == !!a->file) {
        fputs(usage_text, stderr);
        return 2;
    }
    return -1;
}

/* --- running ---------------------------------------------------------------- */

typedef struct text_out {
    FILE *f;         /* NULL: --quiet */
    bool failed;
} text_out;

static int print_piece(void *ctx, const char *text, size_t len)
{
    text_out *o = ctx;
    if (o->f && (fwrite(text, 1, len, o->f) != len || fflush(o->f)))
        o->failed = true;
    return o->failed;
}

/* Teacher-forced: the ids in batches, nothing sampled. */
static int run_forced(generator *g, kv_cache *kv, const int32_t *ids, int n, int n_batch,
                      sw_err *err)
{
    model *m = generator_model(g);
    model_state *st = NULL;
    model_state_opts so = {.n_batch = n_batch};
    int rc = model_state_new(m, &so, &st, err);
    if (rc)
        return rc;
    model_info info;
    model_get_info(m, &info);
    float *logits = malloc(sizeof(float) * (size_t)info.n_vocab);
    if (!logits)
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    for (int off = 0; off < n && rc == 0; off += n_batch) {
        int k = n - off < n_batch ? n - off : n_batch;
        rc = model_forward(m, st, kv, generator_pool(g), ids + off, k, logits, MODEL_LOGITS_LAST,
                           err);
    }
    free(logits);
    model_state_free(st);
    return rc;
}

/* One sequence: the prompt text, then -n tokens. */
static int trace_one(const trace_args *a, generator *g, const char *text, text_out *o,
                     sw_err *err)
{
    int32_t *ids = NULL;
    int n = 0;
    kv_cache *kv = NULL;
    int rc = generator_encode(g, text, false, &ids, &n, err);
    kv_cache_opts ko = {.n_ctx = n + a->n_gen + 1};
    if (rc == 0)
        rc = kv_cache_new(generator_model(g), &ko, &kv, err);
    if (rc == 0 && a->n_gen == 0) {
        rc = run_forced(g, kv, ids, n, a->go.n_batch > 0 ? a->go.n_batch : 512, err);
    } else if (rc == 0) {
        generator_params gp = generator_default_params();
        gp.sampling.temperature = 0;
        gp.max_tokens = a->n_gen;
        gp.ignore_eog = a->ignore_eos;
        generator_sink sink = {.on_text = print_piece, .ctx = o};
        rc = generator_run(g, kv, ids, n, &gp, &sink, NULL, err);
        if (o->f && !o->failed && fputc('\n', o->f) == EOF)
            o->failed = true;
    }
    kv_cache_free(kv);
    free(ids);
    return rc;
}

/* The prompts: the whole text, or (--lines) each non-empty line. */
static int trace_all(const trace_args *a, generator *g, char *text, recorder *rec, sw_err *err)
{
    text_out o = {.f = a->quiet ? NULL : !strcmp(a->out, "-") ? stderr : stdout};
    int rc = 0;
    char *save = NULL, *line = a->lines ? strtok_r(text, "\r\n", &save) : text;
    for (; line && rc == 0; line = a->lines ? strtok_r(NULL, "\r\n", &save) : NULL) {
        rc = trace_one(a, g, line, &o, err);
        if (rc == 0 && rec->rc)
            rc = sw_errf(err, rec->rc, "recording: %s", rec->err.msg);
        rec->problem_id++;
    }
    if (rc == 0 && o.failed)
        rc = sw_errf(err, SW_EIO, "writing the text: %s", strerror(errno));
    return rc;
}

static int trace_model(const trace_args *a, const char *path, char *text, sw_err *err)
{
    generator *g = NULL;
    recorder rec = {.dataset = a->dataset};
    trace_init(&rec.t);
    int rc = generator_open(path, &a->go, &g, err);
    if (rc == 0) {
        model_info info;
        model_get_info(generator_model(g), &info);
        if (info.n_expert <= 0)
            rc = sw_errf(err, SW_EINVAL, "'%s' (%s) has no routed experts to trace", path,
                         info.arch);
    }
    if (rc == 0) {
        model_set_route_hook(generator_model(g), record_route, &rec);
        rc = trace_all(a, g, text, &rec, err);
        model_set_route_hook(generator_model(g), NULL, NULL);
    }
    if (rc == 0 && !(rc = trace_finish(&rec.t, err)))
        rc = trace_write(&rec.t, a->out, err);
    if (rc == 0)
        fprintf(stderr, "spillway trace: %zu tokens, %llu rows (%d layers, top-%d of %d) -> %s\n",
                trace_n_tokens(&rec.t), (unsigned long long)rec.rows, rec.t.n_layers, rec.t.top_k,
                rec.t.n_experts, a->out);
    trace_free(&rec.t);
    generator_close(g);
    return rc;
}

int cmd_trace(int argc, char **argv)
{
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    if (!dirs)
        return cli_fail("trace: out of memory");
    trace_args a = {.dirs = dirs, .dataset = "prompt", .go.store = cli_store_defaults()};
    int status = parse_args(argc, argv, &a);
    char *path = NULL, *text = NULL;
    sw_err err = {0};
    if (status < 0) {
        catalog_opts co = {.dirs = dirs, .n_dirs = a.n_dirs};
        size_t tn = 0;
        text = a.file ? cli_read_file(a.file, &tn, &err) : strdup(a.prompt);
        if (text && a.file)
            cli_strip_final_newline(text, tn);
        if (!text && !a.file)
            sw_errf(&err, SW_ENOMEM, "out of memory");
        if (!text || catalog_resolve(a.model, &co, &path, &err) < 0 ||
            trace_model(&a, path, text, &err) < 0)
            status = cli_fail("trace: %s", err.msg);
        else
            status = 0;
    }
    free(text);
    free(path);
    free(dirs);
    return status;
}
