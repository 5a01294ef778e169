/*
 * bench_main.c — spillway-bench's options, orchestration and report.
 *
 *   spillway-bench [--quick] [--types Q4_K,Q8_0] [--threads 1,2]
 *                  [--arena MIB] [--reps N] [--sections matvec,tokenize,reader]
 *                  [--quiet-ref GBPS] [--matvec-streams 1|2] [--out FILE]
 *
 * Prints a markdown report; --out also writes it to FILE (make bench writes
 * bench/RESULTS.md). Sections (all by default): matvec (bench.h says what is
 * measured and how), tokenize (bench_tokenize.c) and reader (bench_reader.c:
 * disk streaming, writes a test file; see its environment variables). Exits
 * 1 if any measurement failed.
 */
#include "bench.h"
#include "quant/matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TYPES 32
#define MAX_THREADS 8
#define N_SHAPES 3
#define TARGET_PCT 80.0

enum { SECTION_MATVEC = 1, SECTION_TOKENIZE = 2, SECTION_READER = 4, SECTION_ALL = 7 };

static const quant_type k_default_types[] = {
    QT_F32,  QT_F16,  QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1,   QT_Q5_0,   QT_Q5_1,
    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS, QT_MXFP4,
};
static const quant_type k_target_types[] = {QT_Q4_K, QT_Q6_K, QT_Q8_0};

/*
 * per_call: products per call; 8 is how a MoE layer multiplies the slices
 * of its 8 routed experts (one quant_matvec_multi job). judged: the target
 * applies. The engine never multiplies a lone expert slice: that cell is
 * there to show what one call's fixed costs (activation conversion,
 * dispatch, every thread's cold start, the join) weigh against 10 µs of
 * streaming.
 */
struct shape {
    int64_t rows, cols;
    int per_call, judged;
    const char *what;
};
static const struct shape k_shapes[N_SHAPES] = {
    {4096, 4096, 1, 1, "a dense layer"},
    {2048, 768, 1, 0, "one expert's slice alone in its call, which the engine never does"},
    {2048, 768, 8, 1, "8 experts' slices in one call, as a MoE layer with 8 routed experts runs "
                      "them"}};
static const struct shape k_quick_shapes[N_SHAPES] = {
    {1024, 1024, 1, 1, "small"}, {512, 256, 1, 0, "tiny"}, {512, 256, 4, 1, "tiny, 4 per call"}};

/* "4096x4096", or "2048x768 x8" where a call does several products. */
static const char *shape_name(const struct shape *sh, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%lldx%lld", (long long)sh->rows, (long long)sh->cols);
    if (sh->per_call > 1 && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " x%d", sh->per_call);
    return buf;
}

struct opts {
    int quick;
    quant_type types[MAX_TYPES];
    int n_types;
    int threads[MAX_THREADS];
    int n_threads;
    size_t arena_bytes;
    int reps;
    const char *out;
    int sections;     /* SECTION_* bits */
    double quiet_ref; /* --quiet-ref: a 2-thread bandwidth seen before, bytes/s (0: none) */
};

struct cell {
    int ok;
    bench_result r;
    char why[160];
};

struct run {
    struct opts o;
    const struct shape *shapes;
    bench_best bandwidth[MAX_THREADS];  /* by thread-count index */
    double dispatch_us[MAX_THREADS];
    struct cell cells[MAX_TYPES][N_SHAPES][MAX_THREADS];
    int failures;
    char loadavg[64]; /* /proc/loadavg's first three fields: was the machine busy? */
    int retry_rounds;     /* rounds of retry_targets that measured something */
    double retry_seconds; /* and how long they took */
};

static int usage(FILE *f)
{
    fprintf(f, "usage: spillway-bench [--quick] [--types Q4_K,Q8_0,...] [--threads 1,2,...]\n"
               "                      [--arena MIB] [--reps N] [--out FILE]\n"
               "                      [--quiet-ref GBPS] [--matvec-streams 1|2]\n"
               "                      [--sections matvec,tokenize,reader]\n");
    return f == stderr ? 2 : 0;
}

/* Splits a comma-separated list in place into at most max items; returns
 * the count, or -1 if there are more. */
static int split_list(char *s, char **items, int max)
{
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max)
            return -1;
        items[n++] = tok;
    }
    return n;
}

static int parse_types(const char *s, struct opts *o)
{
    char buf[512], *items[MAX_TYPES];
    snprintf(buf, sizeof buf, "%s", s);
    o->n_types = split_list(buf, items, MAX_TYPES);
    for (int i = 0; i < o->n_types; i++) {
        int t = quant_from_name(items[i]);
        const quant_traits *tr = quant_traits_of(t);
        if (!tr || !tr->to_float) {
            fprintf(stderr, "spillway-bench: '%s' is not a type we can compute with\n", items[i]);
            return -1;
        }
        o->types[i] = (quant_type)t;
    }
    return o->n_types > 0 ? 0 : -1;
}

static int parse_threads(const char *s, struct opts *o)
{
    char buf[256], *items[MAX_THREADS];
    snprintf(buf, sizeof buf, "%s", s);
    o->n_threads = split_list(buf, items, MAX_THREADS);
    for (int i = 0; i < o->n_threads; i++) {
        o->threads[i] = atoi(items[i]);
        if (o->threads[i] < 1 || o->threads[i] > SW_POOL_MAX_THREADS) {
            fprintf(stderr, "spillway-bench: bad thread count '%s'\n", items[i]);
            return -1;
        }
    }
    return o->n_threads > 0 ? 0 : -1;
}

static int parse_sections(const char *s)
{
    char buf[128], *items[8];
    snprintf(buf, sizeof buf, "%s", s);
    int n = split_list(buf, items, 8), bits = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(items[i], "matvec")) {
            bits |= SECTION_MATVEC;
        } else if (!strcmp(items[i], "tokenize")) {
            bits |= SECTION_TOKENIZE;
        } else if (!strcmp(items[i], "reader")) {
            bits |= SECTION_READER;
        } else {
            fprintf(stderr, "spillway-bench: unknown section '%s' (matvec, tokenize, reader)\n",
                    items[i]);
            return -1;
        }
    }
    return n > 0 ? bits : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    const char *types = NULL, *threads = NULL;
    long arena_mib = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            return 1;
        } else if (v && !strcmp(a, "--types")) {
            types = v, i++;
        } else if (v && !strcmp(a, "--threads")) {
            threads = v, i++;
        } else if (v && !strcmp(a, "--arena")) {
            arena_mib = atol(v), i++;
        } else if (v && !strcmp(a, "--reps")) {
            o->reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--out")) {
            o->out = v, i++;
        } else if (v && !strcmp(a, "--quiet-ref")) {
            char *end;
            o->quiet_ref = strtod(v, &end) * 1e9, i++;
            if (*end || !(o->quiet_ref >= 0 && o->quiet_ref < 1e15)) {
                fprintf(stderr, "spillway-bench: bad --quiet-ref '%s' (GB/s)\n", v);
                return -1;
            }
        } else if (v && !strcmp(a, "--matvec-streams")) {
            if (strcmp(v, "1") && strcmp(v, "2")) {
                fprintf(stderr, "spillway-bench: bad --matvec-streams '%s' (1 or 2)\n", v);
                return -1;
            }
            quant_matvec_set_streams(v[0] == '2' ? QUANT_STREAMS_TWO : QUANT_STREAMS_ONE), i++;
        } else if (v && !strcmp(a, "--sections")) {
            o->sections = parse_sections(v), i++;
            if (o->sections < 0)
                return -1;
        } else {
            fprintf(stderr, "spillway-bench: unknown or incomplete option '%s'\n", a);
            return -1;
        }
    }
    if (types) {
        if (parse_types(types, o))
            return -1;
    } else {
        o->n_types = (int)(sizeof k_default_types / sizeof *k_default_types);
        memcpy(o->types, k_default_types, sizeof k_default_types);
    }
    if (threads) {
        if (parse_threads(threads, o))
            return -1;
    } else {
        int ncpu = sw_pool_default_threads();
        o->threads[o->n_threads++] = 1;
        if (ncpu >= 2)
            o->threads[o->n_threads++] = 2;
        if (ncpu > 2)
            o->threads[o->n_threads++] = ncpu;
    }
    if (arena_mib < 0 || arena_mib > (1L << 20)) {
        fprintf(stderr, "spillway-bench: bad --arena\n");
        return -1;
    }
    o->arena_bytes = (size_t)(arena_mib ? arena_mib : o->quick ? 64 : 1024) << 20;
    if (o->reps <= 0)
        o->reps = o->quick ? 2 : 5;
    if (!o->sections)
        o->sections = SECTION_ALL;
    return 0;
}

/* Which installer the selected kernel for t came from. */
static const char *kernel_origin(quant_type t)
{
    quant_kernels ref, avx2;
    const quant_kernels *sel = quant_kernels_get();
    quant_kernels_for(QUANT_ISA_REF, &ref);
    if (sel->vec_dot[t] == ref.vec_dot[t])
        return "scalar";
    if (quant_kernels_for(QUANT_ISA_AVX2, &avx2) == 0 && sel->vec_dot[t] == avx2.vec_dot[t])
        return "avx2";
    return quant_isa_name(sel->isa);
}

/* --- measuring ------------------------------------------------------------ */

/* One more pass of bandwidth samples, merged in. On a shared machine a
 * neighbour busy at the start would otherwise depress the figure every
 * ratio is taken against; sampling throughout the run finds a quiet spell. */
static void resample_bandwidth(struct run *R, sw_pool *pool, int ti, const void *arena)
{
    bench_read_bandwidth(pool, arena, R->o.arena_bytes, 1, &R->bandwidth[ti]);
}

static double bandwidth(const struct run *R, int ti)
{
    return bench_best_rate(&R->bandwidth[ti]);
}

#define QUIET_SHARE 0.9 /* a quiet pair: both bandwidth samples reach this share of the best */
#define QUIET_MIN_PAIRS 3 /* quiet pairs wanted before their median decides the target */

/* What quiet is measured against at thread count ti: the best bandwidth of
 * the run, or for 2 threads --quiet-ref where that is more (make bench: the
 * most an earlier run saw on this machine, so that a run whose bus stays
 * busy throughout does not call its own best quiet). */
static double quiet_ref(const struct run *R, int ti)
{
    double ref = bandwidth(R, ti);
    return R->o.threads[ti] == 2 && R->o.quiet_ref > ref ? R->o.quiet_ref : ref;
}

/* Median matvec / bandwidth over a cell's quiet pairs (bench.h); *n: how many. */
static double quiet_pct(const struct run *R, int ti, const struct cell *c, int *n)
{
    return 100.0 * bench_pairs_median(&c->r, QUIET_SHARE * quiet_ref(R, ti), n);
}

/* Index of the 2-thread run, the target's, or -1. */
static int target_threads(const struct opts *o)
{
    for (int ti = 0; ti < o->n_threads; ti++)
        if (o->threads[ti] == 2)
            return ti;
    return -1;
}

/* Whether t is one of the target types. */
static int is_target_type(quant_type t)
{
    for (size_t i = 0; i < sizeof k_target_types / sizeof *k_target_types; i++)
        if (t == k_target_types[i])
            return 1;
    return 0;
}

#define RETRY_SECONDS 240 /* at most this long measuring unjudged target cells again */

/*
 * A neighbour can keep the bus busy through a target cell's whole
 * measurement and leave it no quiet pairs to be judged on. Such cells (the
 * target types, the judged shapes, 2 threads) are measured again, round
 * after round, until each has QUIET_MIN_PAIRS or RETRY_SECONDS have gone:
 * each round is a fresh measurement, which replaces the cell's pairs if it
 * has more quiet ones (the best sample stays the best of both). The choice
 * looks at the bandwidth samples alone, never at the matvec figures.
 */
static void retry_targets(struct run *R, sw_pool *pool, int ti, void *arena)
{
    const struct opts *o = &R->o;
    double t0 = bench_now();
    for (int pending = 1; pending && bench_now() - t0 < RETRY_SECONDS;) {
        pending = 0;
        for (int k = 0; k < o->n_types; k++)
            for (int s = 0; s < N_SHAPES && bench_now() - t0 < RETRY_SECONDS; s++) {
                const struct shape *sh = &R->shapes[s];
                struct cell *c = &R->cells[k][s][ti];
                int n_old, n_new, n_mats = 0;
                char why[160];
                if (!is_target_type(o->types[k]) || !sh->judged || !c->ok)
                    continue;
                quiet_pct(R, ti, c, &n_old);
                if (n_old >= QUIET_MIN_PAIRS)
                    continue;
                pending = 1;
                bench_result r;
                if (bench_matvec_prepare(o->types[k], sh->rows, sh->cols, arena, o->arena_bytes,
                                         &n_mats, why, sizeof why))
                    continue;
                resample_bandwidth(R, pool, ti, arena);
                if (bench_matvec_run(pool, o->types[k], sh->rows, sh->cols, sh->per_call, arena,
                                     n_mats, o->reps, &r, why, sizeof why))
                    continue; /* the first measurement stands */
                quiet_pct(R, ti, c, &n_old); /* against the best bandwidth, which may have risen */
                bench_pairs_median(&r, QUIET_SHARE * quiet_ref(R, ti), &n_new);
                bench_best_merge(&r.rate, &c->r.rate);
                if (n_new > n_old)
                    c->r = r;
                else
                    c->r.rate = r.rate;
                fprintf(stderr, "retry %-6s %s 2T: %d quiet pairs (had %d)\n",
                        quant_name(o->types[k]), shape_name(sh, why, sizeof why), n_new, n_old);
            }
        R->retry_rounds += pending;
    }
    R->retry_seconds = bench_now() - t0;
}

static int measure(struct run *R)
{
    const struct opts *o = &R->o;
    void *arena = bench_buffer_alloc(o->arena_bytes);
    sw_pool *pools[MAX_THREADS] = {NULL};
    int rc = -1;
    if (!arena) {
        fprintf(stderr, "spillway-bench: cannot allocate %zu MiB\n", o->arena_bytes >> 20);
        return -1;
    }
    for (int ti = 0; ti < o->n_threads; ti++) {
        sw_err e = {0};
        if (sw_pool_create(o->threads[ti], &pools[ti], &e)) {
            fprintf(stderr, "spillway-bench: %s\n", e.msg);
            goto done;
        }
        bench_read_bandwidth(pools[ti], arena, o->arena_bytes, o->reps, &R->bandwidth[ti]);
        R->dispatch_us[ti] = bench_pool_dispatch(pools[ti], o->quick ? 2000 : 50000) * 1e6;
        fprintf(stderr, "bandwidth, %d thread(s): %.1f GB/s\n", o->threads[ti],
                bandwidth(R, ti) / 1e9);
    }
    for (int k = 0; k < o->n_types; k++)
        for (int s = 0; s < N_SHAPES; s++) {
            const struct shape *sh = &R->shapes[s];
            int n_mats = 0;
            char why[160], name[32];
            shape_name(sh, name, sizeof name);
            int prep = bench_matvec_prepare(o->types[k], sh->rows, sh->cols, arena,
                                            o->arena_bytes, &n_mats, why, sizeof why);
            for (int ti = 0; ti < o->n_threads; ti++) {
                struct cell *c = &R->cells[k][s][ti];
                resample_bandwidth(R, pools[ti], ti, arena);
                if (prep == 0)
                    c->ok = bench_matvec_run(pools[ti], o->types[k], sh->rows, sh->cols,
                                             sh->per_call, arena, n_mats, o->reps, &c->r, c->why,
                                             sizeof c->why) == 0;
                else
                    snprintf(c->why, sizeof c->why, "%s", why);
                R->failures += !c->ok;
                if (c->ok)
                    fprintf(stderr, "%-6s %s %dT: %6.1f GB/s\n", quant_name(o->types[k]), name,
                            o->threads[ti], bench_best_rate(&c->r.rate) / 1e9);
                else
                    fprintf(stderr, "%-6s %s %dT: failed: %s\n", quant_name(o->types[k]), name,
                            o->threads[ti], c->why);
            }
        }
    for (int ti = 0; ti < o->n_threads; ti++)
        resample_bandwidth(R, pools[ti], ti, arena);
    /* last: a round that measures nothing has checked every cell against
     * the final best bandwidth */
    int ti2 = target_threads(o);
    if (!o->quick && ti2 >= 0)
        retry_targets(R, pools[ti2], ti2, arena);
    rc = 0;
done:
    for (int ti = 0; ti < o->n_threads; ti++)
        sw_pool_destroy(pools[ti]);
    bench_buffer_free(arena, o->arena_bytes);
    return rc;
}

/* --- reporting ------------------------------------------------------------ */

/* "model name" from /proc/cpuinfo, or "unknown CPU". */
static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            colon += 1 + (colon[1] == ' ');
            colon[strcspn(colon, "\n")] = 0;
            snprintf(buf, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static void read_loadavg(char *buf, size_t len)
{
    double a = 0, b = 0, c = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(buf, len, "%.2f %.2f %.2f", a, b, c);
    else
        snprintf(buf, len, "unknown");
    if (f)
        fclose(f);
}

/* Size of the last-level cache as sysfs says ("32768K"), or "?". */
static void llc_size(char *buf, size_t len)
{
    snprintf(buf, len, "?");
    for (int idx = 4; idx >= 0; idx--) {
        char path[128];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, (int)len, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
        return;
    }
}

/* Figures with no clean sample (see bench.h) are marked, and footnoted. */
static const char *mark(const bench_best *b)
{
    return b->n_clean ? "" : " †";
}

static void footnote_marks(FILE *f, const struct run *R)
{
    int any = 0;
    for (int ti = 0; ti < R->o.n_threads; ti++) {
        any |= !R->bandwidth[ti].n_clean;
        for (int k = 0; k < R->o.n_types; k++)
            for (int s = 0; s < N_SHAPES; s++)
                any |= R->cells[k][s][ti].ok && !R->cells[k][s][ti].r.rate.n_clean;
    }
    if (any)
        fprintf(f, "† every sample of this figure was disturbed: our threads waited for a "
                   "CPU that another process held. The figure is a lower bound; rerun on a "
                   "quiet machine.\n\n");
}

static double pct(const struct run *R, int ti, const struct cell *c)
{
    double bw = bandwidth(R, ti);
    return bw > 0 ? 100.0 * bench_best_rate(&c->r.rate) / bw : 0;
}

static void report_header(FILE *f, const struct run *R, int argc, char **argv)
{
    char cpu[256], llc[32], date[64];
    cpu_model(cpu, sizeof cpu);
    llc_size(llc, sizeof llc);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f, "# spillway-bench\n\n");
    fprintf(f, "- machine: %s; %ld CPUs online, %d in this process's affinity mask; "
               "last-level cache %s\n",
            cpu, sysconf(_SC_NPROCESSORS_ONLN), sw_pool_default_threads(), llc);
    fprintf(f, "- kernels: %s selected (best this CPU supports: %s); bandwidth read "
               "kernel: %s\n",
            quant_isa_name(quant_kernels_get()->isa), quant_isa_name(quant_cpu_isa()),
            bench_read_kernel_name());
    fprintf(f, "- weight streams per thread in a matvec: %d (src/quant/matmul.h)\n",
            quant_matvec_streams());
    fprintf(f, "- date: %s\n- command: `", date);
    for (int i = 0; i < argc; i++)
        fprintf(f, "%s%s", i ? " " : "", argv[i]);
    fprintf(f, "`\n");
    fprintf(f, "- load average when the run started: %s\n\n", R->loadavg);
}

static void report_bandwidth(FILE *f, const struct run *R)
{
    fprintf(f, "## Memory read bandwidth and pool dispatch\n\n");
    fprintf(f, "Method: one %zu MiB buffer, read in %zu MiB samples; the best sample of %d "
               "passes through the buffer at the start and one more before each matvec "
               "cell (a target cell's retry too) and at the end. Each matvec cell below "
               "fills the buffer with as "
               "many distinct matrices as fit and cycles over them, so weights stream from "
               "DRAM as in a real decode step. GB = 10^9 bytes.%s\n\n",
            R->o.arena_bytes >> 20, BENCH_SEGMENT_BYTES >> 20, R->o.reps,
            R->o.quick ? " **--quick: smoke-test sizes, numbers not meaningful.**" : "");
    fprintf(f, "| threads | read GB/s | empty parallel-for, µs |\n|---:|---:|---:|\n");
    for (int ti = 0; ti < R->o.n_threads; ti++)
        fprintf(f, "| %d | %.1f%s | %.3f |\n", R->o.threads[ti], bandwidth(R, ti) / 1e9,
                mark(&R->bandwidth[ti]), R->dispatch_us[ti]);
    fprintf(f, "\n");
}

static void report_pair_cell(FILE *f, const struct run *R, int ti, const struct cell *c)
{
    int n_all, n_quiet;
    double all = 100.0 * bench_pairs_median(&c->r, 0, &n_all);
    double quiet = quiet_pct(R, ti, c, &n_quiet);
    if (!n_all)
        fprintf(f, " - |");
    else if (!n_quiet)
        fprintf(f, " %.0f%% / - (0 of %d) |", all, n_all);
    else
        fprintf(f, " %.0f%% / %.0f%% (%d of %d) |", all, quiet, n_quiet, n_all);
}

/* One table; value 0: "GB/s (% of bandwidth)", value 1: µs per matvec,
 * value 2: the pairs' medians. */
static void report_table(FILE *f, const struct run *R, int value)
{
    const struct opts *o = &R->o;
    char name[32];
    fprintf(f, "| type | bpw | kernel |");
    for (int s = 0; s < N_SHAPES; s++)
        for (int ti = 0; ti < o->n_threads; ti++)
            fprintf(f, " %s %dT |", shape_name(&R->shapes[s], name, sizeof name), o->threads[ti]);
    fprintf(f, "\n|---|---:|---|");
    for (int i = 0; i < N_SHAPES * o->n_threads; i++)
        fprintf(f, "---:|");
    fprintf(f, "\n");
    for (int k = 0; k < o->n_types; k++) {
        const quant_traits *tr = quant_traits_of(o->types[k]);
        fprintf(f, "| %s | %.2f | %s |", tr->name, 8.0 * (double)tr->size / (double)tr->blck,
                kernel_origin(o->types[k]));
        for (int s = 0; s < N_SHAPES; s++)
            for (int ti = 0; ti < o->n_threads; ti++) {
                const struct cell *c = &R->cells[k][s][ti];
                if (!c->ok)
                    fprintf(f, " failed |");
                else if (value == 0)
                    fprintf(f, " %.1f (%.0f%%)%s |", bench_best_rate(&c->r.rate) / 1e9,
                            pct(R, ti, c), mark(&c->r.rate));
                else if (value == 2)
                    report_pair_cell(f, R, ti, c);
                else
                    fprintf(f, " %.1f%s |", R->shapes[s].per_call * c->r.mat_bytes /
                                                bench_best_rate(&c->r.rate) * 1e6,
                            mark(&c->r.rate));
            }
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
}

/* The project's target: Q4_K, Q6_K, Q8_0 at 2 threads reach TARGET_PCT of
 * the 2-thread bandwidth. */
static void report_target(FILE *f, const struct run *R)
{
    const struct opts *o = &R->o;
    int ti2 = target_threads(o);
    fprintf(f, "## Target: Q4_K, Q6_K, Q8_0 with 2 threads >= %.0f%% of 2-thread bandwidth\n\n",
            TARGET_PCT);
    if (ti2 < 0) {
        fprintf(f, "Not evaluated: no 2-thread run.\n\n");
        return;
    }
    fprintf(f, "Quiet samples: both bandwidth samples around them at >= %.0f%% of %.1f GB/s, ",
            100 * QUIET_SHARE, quiet_ref(R, ti2) / 1e9);
    if (R->o.quiet_ref > bandwidth(R, ti2))
        fprintf(f, "the --quiet-ref given (this run's best was %.1f GB/s). ",
                bandwidth(R, ti2) / 1e9);
    else
        fprintf(f, "the best 2-thread bandwidth of the run. ");
    fprintf(f, "Judged on the median of the quiet samples (the table above) where a cell has at "
               "least %d; a cell with fewer is not judged: the bus was busy whenever it ran. "
               "Shapes judged: those the engine runs:", QUIET_MIN_PAIRS);
    char name[32];
    for (int s = 0, first = 1; s < N_SHAPES; s++)
        if (R->shapes[s].judged) {
            fprintf(f, "%s %s", first ? "" : ",", shape_name(&R->shapes[s], name, sizeof name));
            first = 0;
        }
    fprintf(f, ".");
    if (R->retry_rounds)
        fprintf(f, " Cells short of quiet samples were measured again after the table's pass (%d "
                   "round%s, %.0f s; at most %d s), each keeping the measurement with more quiet "
                   "samples: chosen by the bandwidth samples alone, never by the matvec figures.",
                R->retry_rounds, R->retry_rounds == 1 ? "" : "s", R->retry_seconds, RETRY_SECONDS);
    fprintf(f, "\n\n");
    int all = 1, seen = 0, unjudged = 0;
    for (size_t i = 0; i < sizeof k_target_types / sizeof *k_target_types; i++)
        for (int k = 0; k < o->n_types; k++) {
            if (o->types[k] != k_target_types[i])
                continue;
            for (int s = 0; s < N_SHAPES; s++) {
                if (!R->shapes[s].judged)
                    continue;
                const struct cell *c = &R->cells[k][s][ti2];
                int n_quiet = 0;
                double p = c->ok ? quiet_pct(R, ti2, c, &n_quiet) : 0;
                seen++;
                fprintf(f, "- %s %s: ", quant_name(o->types[k]),
                        shape_name(&R->shapes[s], name, sizeof name));
                if (c->ok && n_quiet < QUIET_MIN_PAIRS) {
                    unjudged++;
                    fprintf(f, "not judged (%d quiet samples; best sample / best bandwidth "
                               "%.0f%%)\n", n_quiet, pct(R, ti2, c));
                    continue;
                }
                int met = c->ok && p >= TARGET_PCT;
                all &= met;
                fprintf(f, "%.0f%% (median of %d quiet samples) — %s\n", p, n_quiet,
                        met ? "met" : "not met");
            }
        }
    if (!seen)
        fprintf(f, "Not evaluated: none of the target types was run.\n\n");
    else
        fprintf(f, "\n**%s.**\n\n", !all      ? "Target not met"
                                      : unjudged ? "Not determined: the bus was never quiet "
                                                   "while some cells ran"
                                                 : "Target met");
}

static void report_matvec(FILE *f, const struct run *R)
{
    report_bandwidth(f, R);
    fprintf(f, "## quant_matvec: weight GB/s (%% of read bandwidth at the same thread count)\n\n");
    char name[32];
    fprintf(f, "Shapes are rows x cols:");
    for (int s = 0; s < N_SHAPES; s++)
        fprintf(f, "%s %s (%s)", s ? "," : "", shape_name(&R->shapes[s], name, sizeof name),
                R->shapes[s].what);
    fprintf(f, "; NT = N threads. Each sample visits its matrices scattered, so no product "
               "continues the stream the one before it left warm. The kernel column says "
               "which kernel table the type's dot product came from.\n\n");
    report_table(f, R, 0);
    fprintf(f, "## quant_matvec: µs per call\n\n");
    report_table(f, R, 1);
    fprintf(f, "## quant_matvec against the bandwidth of the same moment\n\n"
               "Each matvec sample above also had a bandwidth sample (one %zu MiB read pass, "
               "half the buffer away) just before it, and the last one after it. Per cell: the "
               "median over samples of matvec GB/s / the mean of the two bandwidth samples "
               "around it, then the same median over the quiet samples only (both bandwidth "
               "samples at >= %.0f%% of the best bandwidth of the run, or for 2 threads of "
               "--quiet-ref where that is more), with how many there "
               "were. Other tenants' DRAM traffic, which the preemption check cannot see, "
               "lowers the first figure's denominator with its numerator; the quiet figure is "
               "the one for an idle machine.\n\n",
            BENCH_SEGMENT_BYTES >> 20, 100 * QUIET_SHARE);
    report_table(f, R, 2);
    footnote_marks(f, R);
    report_target(f, R);
}

static int write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct run R; /* large: cells for every type, shape and thread count */
    int rc = parse_args(argc, argv, &R.o);
    if (rc)
        return usage(rc > 0 ? stdout : stderr);
    R.shapes = R.o.quick ? k_quick_shapes : k_shapes;
    read_loadavg(R.loadavg, sizeof R.loadavg);
    quant_init();

    /* The report is assembled in memory, then goes to stdout and --out. */
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = open_memstream(&md, &md_len);
    if (!f) {
        perror("open_memstream");
        return 1;
    }
    report_header(f, &R, argc, argv);
    if (R.o.sections & SECTION_MATVEC) {
        if (measure(&R)) {
            fclose(f);
            free(md);
            return 1;
        }
        report_matvec(f, &R);
    }
    if ((R.o.sections & SECTION_TOKENIZE) && bench_tokenize(f))
        R.failures++;
    if ((R.o.sections & SECTION_READER) && bench_reader(f))
        R.failures++;
    if (fclose(f)) {
        free(md);
        return 1;
    }
    fwrite(md, 1, md_len, stdout);
    if (R.o.out && write_file(R.o.out, md, md_len))
        R.failures++;
    free(md);
    return R.failures ? 1 : 0;
}
