/* bench_matvec.c — quant_matvec throughput over a working set far beyond cache. */
#include "bench.h"
#include "quant/matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ROWS 64          /* distinct quantized rows, tiled over the arena */
#define PASS_BUDGET_S 2.0     /* planned passes are cut short after this */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_normal(uint64_t *s)
{
    double u1 = ((rng_next(s) >> 11) + 0.5) * 0x1p-53;
    double u2 = ((rng_next(s) >> 11) + 0.5) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* One weight row of type t: quantized normal data, or random bytes with a
 * sane scale where the type has no quantizer. */
static int make_row(quant_type t, int64_t cols, float *tmp, uint8_t *row, uint64_t *seed)
{
    const quant_traits *tr = quant_traits_of(t);
    if (tr->from_float) {
        for (int64_t c = 0; c < cols; c++)
            tmp[c] = rng_normal(seed) * 0.02f;
        tr->from_float(tmp, row, cols);
        return 0;
    }
    size_t bytes = quant_row_size(t, cols);
    for (size_t b = 0; b < bytes; b++)
        row[b] = (uint8_t)rng_next(seed);
    if (t != QT_IQ4_XS)
        return -1;
    for (int64_t b = 0; b < cols / tr->blck; b++)
        ((block_iq4_xs *)row)[b].d = quant_f32_to_f16(0.0005f);
    return 0;
}

int bench_matvec_prepare(quant_type t, int64_t rows, int64_t cols, void *arena,
                         size_t arena_bytes, int *n_mats, char *why, size_t whylen)
{
    const quant_traits *tr = quant_traits_of(t);
    if (!tr || !tr->to_float || cols % tr->blck) {
        snprintf(why, whylen, "%s cannot be computed at %lld columns", quant_name(t),
                 (long long)cols);
        return -1;
    }
    size_t row_bytes = quant_row_size(t, cols), mat_bytes = row_bytes * (size_t)rows;
    if (mat_bytes == 0 || mat_bytes > arena_bytes) {
        snprintf(why, whylen, "a %lldx%lld %s matrix does not fit the %zu-byte arena",
                 (long long)rows, (long long)cols, tr->name, arena_bytes);
        return -1;
    }
    *n_mats = (int)(arena_bytes / mat_bytes);
    size_t total = (size_t)*n_mats * mat_bytes;

    /* Quantize SEED_ROWS rows, then tile them: content is irrelevant to the
     * speed of a streaming product, and quantizing a GiB would take minutes. */
    int64_t seed_rows = rows < SEED_ROWS ? rows : SEED_ROWS;
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    uint8_t *dst = arena;
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)t;
    for (int64_t r = 0; r < seed_rows; r++)
        if (!tmp || make_row(t, cols, tmp, dst + (size_t)r * row_bytes, &seed) < 0) {
            snprintf(why, whylen, "no way to generate %s weights", tr->name);
            free(tmp);
            return -1;
        }
    free(tmp);
    size_t have = (size_t)seed_rows * row_bytes;
    while (have < total) { /* doubling copy: whole rows, since have is */
        size_t n = have < total - have ? have : total - have;
        memcpy(dst + have, dst, n);
        have += n;
    }
    return 0;
}

/* The order a sample visits its n matrices: visit v takes matrix
 * v * step mod n, step coprime to n and about n / 8, so consecutive calls
 * (and the items of one multi call) are far apart in memory, as a decode
 * step's tensors and a layer's routed experts are: no product continues
 * the stream the previous one left warm. */
static int scatter_step(int n)
{
    int step = n / 8 > 2 ? n / 8 : 2;
    if (n <= 2)
        return 1;
    for (;; step++) {
        int a = n, b = step;
        while (b) {
            int r = a % b;
            a = b, b = r;
        }
        if (a == 1)
            return step;
    }
}

/* Runs matrices [0, n) once, per_call at a time (quant_matvec for 1,
 * quant_matvec_multi for more; a short last call takes the rest); y holds
 * per_call outputs. Returns 0 or -1 with why. */
static int one_pass(sw_pool *pool, quant_type t, int64_t rows, int64_t cols, const uint8_t *arena,
                    size_t mat_bytes, int n, int per_call, const float *x, float *y, char *why,
                    size_t whylen)
{
    sw_err e = {0};
    quant_mv items[BENCH_MAX_PER_CALL];
    int step = scatter_step(n);
    for (int v = 0; v < n; v += per_call) {
        int k = n - v < per_call ? n - v : per_call;
        for (int j = 0; j < k; j++)
            items[j] = (quant_mv){t, arena + (size_t)((int64_t)(v + j) * step % n) * mat_bytes,
                                  rows, cols, x, y + (size_t)j * (size_t)rows};
        int rc = per_call == 1 ? quant_matvec(pool, t, items[0].W, rows, cols, x, y, &e)
                               : quant_matvec_multi(pool, items, k, &e);
        if (rc) {
            snprintf(why, whylen, "%s", e.msg);
            return -1;
        }
    }
    return 0;
}

/* One bandwidth sample (bytes/s) over the segment half the arena away from
 * the matrices at group, which no recent sample or product touched. */
static double distant_sample(sw_pool *pool, const uint8_t *base, size_t n_segs,
                             const uint8_t *group)
{
    size_t seg = ((size_t)(group - base) / BENCH_SEGMENT_BYTES + n_segs / 2) % n_segs;
    int clean;
    return bench_read_once(pool, base + seg * BENCH_SEGMENT_BYTES, BENCH_SEGMENT_BYTES, &clean);
}

double bench_pairs_median(const bench_result *r, double min_bw, int *n)
{
    double v[BENCH_MAX_PAIRS];
    *n = 0;
    for (int k = 0; k < r->n_pairs; k++) {
        double lo = r->pair_bw[k], hi = r->pair_bw[k + 1];
        if (lo >= min_bw && hi >= min_bw && lo + hi > 0)
            v[(*n)++] = r->pair_mv[k] / ((lo + hi) / 2);
    }
    return bench_median(v, *n);
}

int bench_matvec_run(sw_pool *pool, quant_type t, int64_t rows, int64_t cols, int per_call,
                     const void *arena, int n_mats, int reps, bench_result *out, char *why,
                     size_t whylen)
{
    size_t mat_bytes = quant_row_size(t, cols) * (size_t)rows;
    float *x = malloc(sizeof(float) * (size_t)cols);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)(per_call > 0 ? per_call : 1));
    int rc = -1;
    if (per_call < 1 || per_call > BENCH_MAX_PER_CALL) {
        snprintf(why, whylen, "bad number of products per call: %d", per_call);
        goto done;
    }
    if (!x || !y) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    uint64_t seed = 12345;
    for (int64_t c = 0; c < cols; c++)
        x[c] = rng_normal(&seed);
    /* a sample: enough consecutive matrices to fill a segment */
    int per = (int)(BENCH_SEGMENT_BYTES / mat_bytes);
    per = per < 1 ? 1 : per > n_mats ? n_mats : per;
    int n_groups = n_mats / per;
    const uint8_t *base = arena;
    /* warm-up: code, pool threads awake, activation converter */
    if (one_pass(pool, t, rows, cols, base, mat_bytes, per < 8 ? per : 8, per_call, x, y, why,
                 whylen))
        goto done;
    bench_best b = {0};
    double spent = 0;
    bench_timer tm = {0};
    /* bandwidth samples: whole segments, half the arena away from the group */
    size_t n_segs = (size_t)n_mats * mat_bytes / BENCH_SEGMENT_BYTES;
    out->n_pairs = 0;
    for (int k = 0; bench_want_more(&b, k, reps * n_groups, spent, PASS_BUDGET_S); k++) {
        const uint8_t *group = base + (size_t)(k % n_groups) * per * mat_bytes;
        int clean;
        if (n_segs >= 2 && k < BENCH_MAX_PAIRS)
            out->pair_bw[k] = distant_sample(pool, base, n_segs, group);
        bench_timer_start(&tm);
        if (one_pass(pool, t, rows, cols, group, mat_bytes, per, per_call, x, y, why, whylen))
            goto done;
        double dt = bench_timer_stop(&tm, &clean);
        spent += dt;
        bench_best_add(&b, (double)mat_bytes * per / dt, clean);
        if (n_segs >= 2 && k < BENCH_MAX_PAIRS)
            out->pair_mv[out->n_pairs++] = (double)mat_bytes * per / dt;
    }
    if (out->n_pairs)
        out->pair_bw[out->n_pairs] = distant_sample(
            pool, base, n_segs, base + (size_t)((out->n_pairs - 1) % n_groups) * per * mat_bytes);
    out->rate = b;
    out->mat_bytes = (double)mat_bytes;
    out->n_mats = n_mats;
    rc = 0;
done:
    free(x);
    free(y);
    return rc;
}

static void empty_task(void *ctx, int task, int n_tasks, int thread)
{
}

double bench_pool_dispatch(sw_pool *pool, int iters)
{
    int n = sw_pool_size(pool);
    for (int i = 0; i < iters / 10; i++)
        sw_pool_run(pool, empty_task, NULL, n);
    double t0 = bench_now();
    for (int i = 0; i < iters; i++)
        sw_pool_run(pool, empty_task, NULL, n);
    return (bench_now() - t0) / iters;
}
