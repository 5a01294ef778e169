/*
 * cmd_gen.c — `spillway gen --like NAME --type TYPE --out FILE`
 *
 * Writes a GGUF with a real model's tensor shapes, type mix and metadata
 * and random weights (src/gen/gen.h), e.g. a 17 GB Qwen3-30B-A3B to test
 * expert streaming on, without downloading one. The tokenizer is copied
 * from the fixtures' ggml-vocab-<family>.gguf (or --vocab FILE), and the
 * family's chat template from fixtures/templates when it is there.
 */
#include "cli/cli.h"
#include "gen/gen.h"
#include "quant/quant.h"
#include "util/pool.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *usage_text =
    "usage: spillway gen --like NAME --out FILE [--type TYPE] [options]\n"
    "       spillway gen --list [--type TYPE]\n"
    "\n"
    "Writes a GGUF with the tensor shapes, type mix and metadata of a real model and\n"
    "random weights (zero-mean, std 1/sqrt(row length); norms near 1).\n"
    "  --like NAME      the model to imitate (--list shows them)\n"
    "  --type TYPE      file type: q4_k_m (default), q8_0, f16, bf16, f32, mxfp4,\n"
    "                   q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s/m/l, q4_k_s, q5_k_s/m,\n"
    "                   q6_k, iq4_nl (llama.cpp's type mix for each)\n"
    "  --out FILE       the GGUF to write\n"
    "  --seed N         random seed (default 1)\n"
    "  --layers N       block count (default: the model's), for smaller variants\n"
    "  --threads N      threads (default: all CPUs this process may use)\n"
    "  --header-only    write metadata and tensor infos; the data is left as a hole\n"
    "                   (a sparse file of the full size that reads as zeros)\n"
    "  --exact          llama.cpp's reference K-quant search (about 10x slower)\n"
    "  --vocab FILE     GGUF to copy the tokenizer from (default: the fixtures'\n"
    "                   vocab/ggml-vocab-<family>.gguf)\n"
    "  --template FILE  chat template (default: the fixtures' for the family, if any)\n"
    "  --fixtures DIR   where the fixtures are (default: $SPILLWAY_FIXTURES,\n"
    "                   ../shared/fixtures, or beside the binary)\n"
    "  --no-vocab       write no tokenizer (the file is then not loadable by llama.cpp)\n"
    "  --force          overwrite FILE if it exists\n"
    "  --quiet          no progress on stderr\n";

typedef struct gen_args {
    const char *like, *type, *out, *vocab, *template_path, *fixtures;
    uint64_t seed;
    long layers, threads;
    bool header_only, exact, no_vocab, force, quiet, list;
} gen_args;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_long(const char *s, long lo, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo)
        return -1;
    *out = v;
    return 0;
}

/* Returns 0, or 2 for a usage error (after printing it). */
static int parse_args(int argc, char **argv, gen_args *a)
{
    *a = (gen_args){.type = "q4_k_m", .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = !strcmp(o, "--like") || !strcmp(o, "--type") || !strcmp(o, "--out") ||
                     !strcmp(o, "--seed") || !strcmp(o, "--layers") || !strcmp(o, "--threads") ||
                     !strcmp(o, "--vocab") || !strcmp(o, "--template") ||
                     !strcmp(o, "--fixtures");
        if (takes && !v) {
            fprintf(stderr, "spillway gen: %s needs a value\n", o);
            return 2;
        }
        if (takes)
            i++;
        if (!strcmp(o, "--like")) a->like = v;
        else if (!strcmp(o, "--type")) a->type = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--vocab")) a->vocab = v;
        else if (!strcmp(o, "--template")) a->template_path = v;
        else if (!strcmp(o, "--fixtures")) a->fixtures = v;
        else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 0);
            if (end == v || *end || errno) {
                fprintf(stderr, "spillway gen: bad --seed '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--layers") || !strcmp(o, "--threads")) {
            long *dst = !strcmp(o, "--layers") ? &a->layers : &a->threads;
            if (parse_long(v, 1, dst)) {
                fprintf(stderr, "spillway gen: bad %s '%s'\n", o, v);
                return 2;
            }
        } else if (!strcmp(o, "--header-only")) a->header_only = true;
        else if (!strcmp(o, "--exact")) a->exact = true;
        else if (!strcmp(o, "--no-vocab")) a->no_vocab = true;
        else if (!strcmp(o, "--force")) a->force = true;
        else if (!strcmp(o, "--quiet")) a->quiet = true;
        else if (!strcmp(o, "--list")) a->list = true;
        else {
            fprintf(stderr, "spillway gen: unknown option '%s'\n\n%s", o, usage_text);
            return 2;
        }
    }
    if (!a->list && (!a->like || !a->out)) {
        fprintf(stderr, "%s", usage_text);
        return 2;
    }
    return 0;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The fixtures folder: --fixtures, $SPILLWAY_FIXTURES, ../shared/fixtures
 * from here, or from beside the binary (build/ and build/san/). */
static const char *find_fixtures(const char *given, char *buf, size_t cap)
{
    if (given)
        return given;
    const char *env = getenv("SPILLWAY_FIXTURES");
    if (env && is_dir(env))
        return env;
    if (is_dir("../shared/fixtures"))
        return "../shared/fixtures";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        const char *dir = dirname(exe);
        static const char *const up[] = {"/../../shared/fixtures", "/../../../shared/fixtures"};
        for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
            snprintf(buf, cap, "%s%s", dir, up[i]);
            if (is_dir(buf))
                return buf;
        }
    }
    return NULL;
}

static int list_models(const char *type_name)
{
    const gen_ftype *ft = gen_ftype_find(type_name);
    if (!ft)
        return cli_fail("gen: unknown --type '%s'", type_name);
    printf("%-16s %-9s %6s %8s %10s %12s\n", "name", "arch", "layers", "experts", "params",
           type_name);
    for (int i = 0; i < gen_spec_count(); i++) {
        const gen_spec *s = gen_spec_at(i);
        gen_plan plan;
        sw_err err = {0};
        if (gen_plan_build(s, ft, 0, &plan, &err)) {
            printf("%-16s %s\n", s->name, err.msg);
            continue;
        }
        char experts[32] = "-";
        if (s->n_expert)
            snprintf(experts, sizeof experts, "%" PRId64 "/%" PRId64, s->n_expert_used, s->n_expert);
        printf("%-16s %-9s %6" PRId64 " %8s %9.2fB %9.2f GB\n", s->name, s->arch, s->n_layer,
               experts, plan.n_params / 1e9, plan.n_bytes / 1e9);
        gen_plan_free(&plan);
    }
    return 0;
}

typedef struct progress {
    double t0, last;
    bool tty;
} progress;

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress *p = ctx;
    double t = now_s();
    if (t - p->last < (p->tty ? 0.25 : 10.0) && done < total)
        return;
    p->last = t;
    double mb = done / 1e6, rate = mb / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
    fprintf(stderr, "%sgen: %8.0f / %.0f MB  %3.0f%%  %6.0f MB/s%s", p->tty ? "\r" : "", mb,
            total / 1e6, total ? 100.0 * done / total : 100.0, rate, p->tty ? "" : "\n");
}

int cmd_gen(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (a.list)
        return list_models(a.type);
    const gen_spec *spec = gen_spec_find(a.like);
    if (!spec)
        return cli_fail("gen: unknown model '%s' (spillway gen --list shows them)", a.like);
    const gen_ftype *ft = gen_ftype_find(a.type);
    if (!ft)
        return cli_fail("gen: unknown --type '%s'", a.type);
    if (!a.force && access(a.out, F_OK) == 0)
        return cli_fail("gen: %s exists (--force overwrites it)", a.out);

    char fix_buf[PATH_MAX], vocab[PATH_MAX], tmpl[PATH_MAX];
    const char *fixtures = find_fixtures(a.fixtures, fix_buf, sizeof fix_buf);
    gen_options opt = {.out = a.out, .seed = a.seed, .header_only = a.header_only,
                       .exact = a.exact, .vocab_path = a.vocab, .template_path = a.template_path};
    if (!a.no_vocab && !opt.vocab_path) {
        int n = snprintf(vocab, sizeof vocab, "%s/vocab/ggml-vocab-%s.gguf",
                         fixtures ? fixtures : ".", spec->vocab);
        if (!fixtures || n >= (int)sizeof vocab || !is_file(vocab))
            return cli_fail("gen: no tokenizer for %s (ggml-vocab-%s.gguf): pass --vocab FILE, "
                            "--fixtures DIR or --no-vocab", spec->name, spec->vocab);
        opt.vocab_path = vocab;
    }
    if (!opt.template_path && fixtures && spec->chat_template) {
        int n = snprintf(tmpl, sizeof tmpl, "%s/templates/%s", fixtures, spec->chat_template);
        if (n < (int)sizeof tmpl && is_file(tmpl))
            opt.template_path = tmpl;
    }

    gen_plan plan;
    sw_err err = {0};
    if (gen_plan_build(spec, ft, a.layers, &plan, &err))
        return cli_fail("gen: %s", err.msg);
    sw_pool *pool = NULL;
    if (!a.header_only && sw_pool_create((int)a.threads, &pool, &err)) {
        gen_plan_free(&plan);
        return cli_fail("gen: %s", err.msg);
    }
    progress prog = {.t0 = now_s(), .tty = isatty(STDERR_FILENO)};
    opt.pool = pool;
    if (!a.quiet && !a.header_only) {
        opt.progress = on_progress;
        opt.progress_ctx = &prog;
    }
    rc = gen_write(&plan, &opt, &err);
    double dt = now_s() - prog.t0;
    if (prog.tty && opt.progress)
        fputc('\n', stderr);
    if (rc) {
        rc = cli_fail("gen: %s", err.msg);
    } else if (!a.quiet) {
        fprintf(stderr, "wrote %s: %s %s, %d tensors, %.3fB parameters, %.2f GB%s in %.1f s",
                a.out, spec->name, ft->name, plan.n_tensors, plan.n_params / 1e9,
                plan.n_bytes / 1e9, a.header_only ? " (header only)" : "", dt);
        if (!a.header_only)
            fprintf(stderr, ", %.0f MB/s", plan.n_bytes / 1e6 / dt);
        fputc('\n', stderr);
    }
    sw_pool_destroy(pool);
    gen_plan_free(&plan);
    return rc;
}
