/*
 * cmd_run.c — `spillway run MODEL -p PROMPT [options]`
 *
 * Generates text from a prompt and streams it to standard output as it is
 * produced, one flush per piece, like `ollama run` with a prompt argument.
 * MODEL is a GGUF path or a name the catalog resolves (Ollama, Hugging Face
 * cache, LM Studio, --models-dir). The prompt is used as it is (BOS added,
 * special tokens not parsed), or with --chat rendered through the model's
 * chat template as one user turn (after an optional system turn) with the
 * assistant's turn opened. --verbose adds the statistics of `ollama run
 * --verbose` on standard error at the end. Ctrl-C stops generation and
 * still prints them; a second Ctrl-C kills the process.
 *
 * Everything between the prompt and the text is the generation loop of
 * engine/generate.h; this file is arguments and presentation.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "engine/generate.h"
#include "store/catalog.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_text =
    "usage: spillway run MODEL (-p PROMPT | -f FILE) [options]\n"
    "\n"
    "Generates text after PROMPT and streams it to standard output. MODEL is a GGUF\n"
    "file or a model name (see 'spillway models'). Without -p or -f the prompt is\n"
    "read from standard input.\n"
    "  -p, --prompt TEXT     the prompt\n"
    "  -f, --file FILE       read the prompt from FILE ('-' for standard input)\n"
    "  -n, --num-predict N   generate at most N tokens (default: until the model\n"
    "                        ends its text or the context is full)\n"
    "  --temp T              temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K             keep the K most likely tokens (default 40; 0 = off)\n"
    "  --top-p P             nucleus sampling (default 0.95; 1 = off)\n"
    "  --min-p P             drop tokens below P x the best one's probability (0.05)\n"
    "  --repeat-penalty R    penalize repeats of the last --repeat-last-n tokens (1 = off)\n"
    "  --repeat-last-n N     the penalty's window (default 64; -1 = everything)\n"
    "  --seed S              random seed (default: a random one; shown with --verbose)\n"
    "  --stop STR            stop before STR (repeatable; STR is not printed)\n"
    "  --ignore-eos          keep generating past end-of-text tokens\n"
    "  --chat                apply the model's chat template (ChatML if it has none)\n"
    "  --system TEXT         a system message before the prompt (implies --chat)\n"
    "  --chat-template FILE  use this Jinja chat template instead (implies --chat)\n"
    "  --show-prompt         print the prompt as the model sees it on standard error\n"
    "  --threads N           threads (default: all CPUs this process may use)\n"
    "  --ctx N               context length (default: the model's, capped by memory)\n"
    "  --batch N             prompt tokens per forward step (default 512)\n"
    "  --kv-type T           KV cache type: f16 (default), f32 or q8_0\n"
    "  --models-dir DIR      also look for MODEL names in DIR (repeatable)\n"
    CLI_STORE_USAGE
    "  --verbose             print timings and rates on standard error at the end\n";

typedef struct run_args {
    const char *model, *prompt, *file, *system, *template_path;
    const char **stops, **dirs;
    int n_stops, n_dirs;
    bool chat, show_prompt, verbose;
    generator_params gp;
    generator_opts go;
    kv_cache_opts ko;
} run_args;

/* --- arguments ------------------------------------------------------------ */

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi))
        return -1;
    *out = (float)v;
    return 0;
}

static int parse_seed(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* Options taking a number; returns 1 if `a` was one of them, -1 if its
 * value is bad, 0 if `a` is something else. */
static int parse_numeric(run_args *r, const char *a, const char *v)
{
    sampler_params *sp = &r->gp.sampling;
    int bad;
    if (!strcmp(a, "-n") || !strcmp(a, "--num-predict"))
        bad = cli_parse_int(v, -1, INT32_MAX, &r->gp.max_tokens);
    else if (!strcmp(a, "--temp") || !strcmp(a, "--temperature"))
        bad = parse_float(v, 0, 100, &sp->temperature);
    else if (!strcmp(a, "--top-k"))
        bad = cli_parse_int(v, 0, INT32_MAX, &sp->top_k);
    else if (!strcmp(a, "--top-p"))
        bad = parse_float(v, 0, 1, &sp->top_p);
    else if (!strcmp(a, "--min-p"))
        bad = parse_float(v, 0, 1, &sp->min_p);
    else if (!strcmp(a, "--repeat-penalty"))
        bad = parse_float(v, 1e-6, 100, &sp->repeat_penalty);
    else if (!strcmp(a, "--repeat-last-n"))
        bad = cli_parse_int(v, -1, INT32_MAX, &sp->penalty_last_n);
    else if (!strcmp(a, "--seed"))
        bad = parse_seed(v, &sp->seed);
    else if (!strcmp(a, "--threads"))
        bad = cli_parse_int(v, 1, SW_POOL_MAX_THREADS, &r->go.n_threads);
    else if (!strcmp(a, "--ctx"))
        bad = cli_parse_int(v, 1, INT32_MAX, &r->ko.n_ctx);
    else if (!strcmp(a, "--batch"))
        bad = cli_parse_int(v, 1, 1 << 16, &r->go.n_batch);
    else if (!strcmp(a, "--kv-type"))
        bad = cli_parse_kv_type(v, &r->ko.type);
    else
        return 0;
    return bad ? -1 : 1;
}

/* Options taking a string or none; same convention as parse_numeric, with
 * *used set when the value was consumed. */
static int parse_other(run_args *r, const char *a, const char *v, bool *used)
{
    *used = v != NULL;
    if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v)
        r->prompt = v;
    else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && v)
        r->file = v;
    else if (!strcmp(a, "--stop") && v)
        r->stops[r->n_stops++] = v;
    else if (!strcmp(a, "--models-dir") && v)
        r->dirs[r->n_dirs++] = v;
    else if (!strcmp(a, "--system") && v)
        r->system = v, r->chat = true;
    else if (!strcmp(a, "--chat-template") && v)
        r->template_path = v, r->chat = true;
    else {
        *used = false;
        if (!strcmp(a, "--chat"))
            r->chat = true;
        else if (!strcmp(a, "--show-prompt"))
            r->show_prompt = true;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
            r->verbose = true;
        else if (!strcmp(a, "--ignore-eos"))
            r->gp.ignore_eog = true;
        else
            return 0;
    }
    return 1;
}

/* Returns -1 to go on, else the exit status (0 for --help, 2 for misuse). */
static int parse_args(int argc, char **argv, run_args *r)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        int sa = cli_store_arg(&r->go.store, "run", a, v);
        if (sa < 0)
            return 2;
        if (sa > 0) {
            i += sa - 1;
            continue;
        }
        int rc = v ? parse_numeric(r, a, v) : 0;
        if (rc < 0) {
            fprintf(stderr, "spillway run: bad value '%s' for %s\n", v, a);
            return 2;
        }
        bool used = rc > 0;
        if (rc == 0)
            rc = parse_other(r, a, v, &used);
        if (rc == 0 && a[0] != '-' && !r->model) {
            r->model = a;
            continue;
        }
        if (rc == 0) {
            fprintf(stderr, "spillway run: unexpected argument '%s'\n\n%s", a, usage_text);
            return 2;
        }
        i += used;
    }
    if (!r->model || (r->prompt && r->file)) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (!r->prompt && !r->file) {
        if (isatty(STDIN_FILENO)) {
            fprintf(stderr, "spillway run: no prompt (-p TEXT, -f FILE or standard input)\n\n%s",
                    usage_text);
            return 2;
        }
        r->file = "-";
    }
    return -1;
}

/* --- input and output ------------------------------------------------------ */

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

typedef struct out_state {
    char last;      /* last byte written */
    bool any;       /* anything written */
    bool failed;    /* standard output failed */
} out_state;

static int print_piece(void *ctx, const char *text, size_t len)
{
    out_state *o = ctx;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
        o->failed = true;
        return 1;
    }
    o->any = true;
    o->last = text[len - 1];
    return g_interrupted ? 1 : 0;
}

/* "1.234s", "12.345ms", "850µs": close to how ollama prints durations. */
static void fmt_duration(char *buf, size_t n, double s)
{
    if (s >= 1)
        snprintf(buf, n, "%.3fs", s);
    else if (s >= 1e-3)
        snprintf(buf, n, "%.3fms", s * 1e3);
    else
        snprintf(buf, n, "%.0fµs", s * 1e6);
}

static void print_stats(const generator_stats *st)
{
    char total[32], load[32], pd[32], ed[32];
    fmt_duration(total, sizeof total, st->total_s);
    fmt_duration(load, sizeof load, st->load_s);
    fmt_duration(pd, sizeof pd, st->prompt_s);
    fmt_duration(ed, sizeof ed, st->gen_s);
    fprintf(stderr,
            "total duration:       %s\n"
            "load duration:        %s\n"
            "prompt eval count:    %d token(s)\n"
            "prompt eval duration: %s\n"
            "prompt eval rate:     %.2f tokens/s\n"
            "eval count:           %d token(s)\n"
            "eval duration:        %s\n"
            "eval rate:            %.2f tokens/s\n"
            "stop reason:          %s%s%s%s\n"
            "seed:                 %llu\n",
            total, load, st->n_prompt, pd, st->prompt_s > 0 ? st->n_prompt / st->prompt_s : 0.0,
            st->n_gen, ed, st->gen_s > 0 ? st->n_gen / st->gen_s : 0.0,
            generator_stop_name(st->stop), st->stop_string ? " (\"" : "",
            st->stop_string ? st->stop_string : "", st->stop_string ? "\")" : "",
            (unsigned long long)st->seed);
}

/* --- the command ------------------------------------------------------------ */

/* The prompt as text the tokenizer gets: as given, or through the template. */
static int build_prompt(generator *g, const run_args *r, const char *user, char **text,
                        sw_err *err)
{
    if (!r->chat) {
        *text = strdup(user);
        return *text ? 0 : sw_errf(err, SW_ENOMEM, "out of memory");
    }
    if (r->template_path) {
        char *src = cli_read_file(r->template_path, NULL, err);
        int rc = src ? generator_set_template(g, src, strlen(src), err) : SW_EIO;
        free(src);
        if (rc < 0)
            return rc;
    }
    const jinja_tmpl *t;
    bool fallback;
    int rc = generator_template(g, &t, &fallback, err);
    if (rc < 0)
        return rc;
    if (fallback)
        fprintf(stderr, "spillway run: the model has no chat template; using ChatML\n");
    generator_msg msgs[2];
    int n = 0;
    if (r->system)
        msgs[n++] = (generator_msg){"system", r->system};
    msgs[n++] = (generator_msg){"user", user};
    return generator_render_chat(g, msgs, n, true, text, err);
}

static void show_prompt(const char *text, const int32_t *ids, int n)
{
    fprintf(stderr, "--- prompt, %d tokens ---\n%s\n--- ids:", n, text);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n--- end of prompt ---\n");
}

static int run_model(const run_args *r, const char *path, const char *user, sw_err *err)
{
    generator *g = NULL;
    kv_cache *kv = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int n_ids = 0, rc;
    if ((rc = generator_open(path, &r->go, &g, err)) < 0)
        goto done;
    if ((rc = build_prompt(g, r, user, &text, err)) < 0 ||
        (rc = generator_encode(g, text, r->chat, &ids, &n_ids, err)) < 0 ||
        (rc = kv_cache_new(generator_model(g), &r->ko, &kv, err)) < 0)
        goto done;
    if (r->show_prompt)
        show_prompt(text, ids, n_ids);
    if (r->verbose) {
        model_info mi;
        model_get_info(generator_model(g), &mi);
        fprintf(stderr, "model: %s (%s, %d layers, context %d of %d, KV %s, %d threads)\n", path,
                mi.arch, mi.n_layer, kv_cache_n_ctx(kv), mi.n_ctx_train,
                quant_name(kv_cache_type(kv)), sw_pool_size(generator_pool(g)));
    }
    out_state o = {0};
    generator_sink sink = {.on_text = print_piece, .ctx = &o};
    generator_params gp = r->gp;
    gp.stops = r->stops;
    gp.n_stops = r->n_stops;
    generator_stats st;
    /* The first Ctrl-C ends generation; the handler then resets itself, so
     * a second one kills. */
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND | SA_RESTART}, old;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    rc = generator_run(g, kv, ids, n_ids, &gp, &sink, &st, err);
    sigaction(SIGINT, &old, NULL);
    if (o.any && o.last != '\n' && !o.failed)
        putchar('\n');
    if (fflush(stdout) || o.failed) {
        if (rc == 0)
            rc = sw_errf(err, SW_EIO, "writing the output: %s", strerror(errno));
    }
    if (r->verbose && st.n_prompt > 0) {
        print_stats(&st);
        cli_store_print(stderr, generator_store(g));
    }
done:
    free(ids);
    free(text);
    kv_cache_free(kv);
    generator_close(g);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char **strs = calloc((size_t)argc * 2, sizeof *strs);
    if (!strs)
        return cli_fail("run: out of memory");
    run_args r = {.stops = strs, .dirs = strs + argc, .gp = generator_default_params(),
                  .go.store = cli_store_defaults(), .ko.type = QT_F16};
    int status = parse_args(argc, argv, &r);
    char *path = NULL, *input = NULL;
    sw_err err = {0};
    if (status >= 0)
        goto done;
    status = 1;
    catalog_opts co = {.dirs = r.dirs, .n_dirs = r.n_dirs};
    if (catalog_resolve(r.model, &co, &path, &err) < 0) {
        cli_fail("run: %s", err.msg);
        goto done;
    }
    size_t in_len = 0;
    if (r.file && !(input = cli_read_file(r.file, &in_len, &err))) {
        cli_fail("run: %s", err.msg);
        goto done;
    }
    if (input)
        cli_strip_final_newline(input, in_len);
    if (run_model(&r, path, input ? input : r.prompt, &err) < 0) {
        cli_fail("run: %s", err.msg);
        goto done;
    }
    status = 0;
done:
    free(input);
    free(path);
    free(strs);
    return status;
}
