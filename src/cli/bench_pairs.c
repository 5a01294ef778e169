/* bench_pairs.c — per-block decode / bandwidth pairs (bench_pairs.h). */
#include "cli/bench_pairs.h"

#include "../../bench/bench.h"

#include <stdlib.h>
#include <string.h>

static void take_sample(bench_pairs *p)
{
    size_t n_segs = BENCH_PAIR_BUFFER_BYTES / BENCH_PAIR_SAMPLE_BYTES;
    const unsigned char *seg = p->buf + (size_t)p->n_samples % n_segs * BENCH_PAIR_SAMPLE_BYTES;
    int clean;
    double rate = bench_read_once(p->pool, seg, BENCH_PAIR_SAMPLE_BYTES, &clean);
    if (clean && rate > p->best_clean)
        p->best_clean = rate;
    p->bw[p->n_samples++] = rate;
}

int bench_pairs_open(bench_pairs *p, sw_pool *pool, int max_blocks, sw_err *err)
{
    *p = (bench_pairs){.pool = pool, .cap = max_blocks > 0 ? max_blocks : 0};
    p->buf = bench_buffer_alloc(BENCH_PAIR_BUFFER_BYTES);
    p->bw = calloc((size_t)p->cap + 1, sizeof *p->bw);
    p->rate = calloc((size_t)p->cap + 1, sizeof *p->rate);
    if (!p->buf || !p->bw || !p->rate) {
        bench_pairs_close(p);
        return sw_errf(err, SW_ENOMEM, "no memory for %zu MiB of bandwidth samples",
                       BENCH_PAIR_BUFFER_BYTES >> 20);
    }
    /* zeros: the read kernels' sums of them cannot overflow */
    memset(p->buf, 0, BENCH_PAIR_BUFFER_BYTES);
    take_sample(p);
    return 0;
}

void bench_pairs_block(bench_pairs *p, double bytes, double seconds)
{
    if (p->n_blocks >= p->cap || seconds <= 0)
        return;
    p->rate[p->n_blocks++] = bytes / seconds;
    take_sample(p);
}

void bench_pairs_summarize(const bench_pairs *p, bench_pairs_summary *s)
{
    *s = (bench_pairs_summary){.blocks = p->n_blocks};
    double *all = malloc(sizeof(double) * ((size_t)p->n_blocks + 1));
    double *quiet = malloc(sizeof(double) * ((size_t)p->n_blocks + 1));
    double *bw = malloc(sizeof(double) * ((size_t)p->n_samples + 1));
    if (!all || !quiet || !bw || p->n_samples == 0)
        goto done;
    memcpy(bw, p->bw, sizeof(double) * (size_t)p->n_samples);
    double best = 0;
    for (int i = 0; i < p->n_samples; i++)
        best = bw[i] > best ? bw[i] : best;
    for (int b = 0; b < p->n_blocks; b++) {
        double lo = p->bw[b], hi = p->bw[b + 1];
        double f = p->rate[b] / ((lo + hi) / 2);
        all[b] = f;
        if (lo >= BENCH_PAIR_QUIET * best && hi >= BENCH_PAIR_QUIET * best)
            quiet[s->quiet_blocks++] = f;
    }
    s->fraction = bench_median(all, p->n_blocks);
    s->fraction_quiet = bench_median(quiet, s->quiet_blocks);
    s->bw_median = bench_median(bw, p->n_samples);
    s->bw_min = bw[0];
    s->bw_max = bw[p->n_samples - 1];
done:
    free(all);
    free(quiet);
    free(bw);
}

int bench_pairs_quiet(const bench_pairs *p, double ref)
{
    double best = ref;
    for (int i = 0; ref <= 0 && i < p->n_samples; i++)
        best = p->bw[i] > best ? p->bw[i] : best;
    int n = 0;
    for (int b = 0; b < p->n_blocks; b++)
        n += p->bw[b] >= BENCH_PAIR_QUIET * best && p->bw[b + 1] >= BENCH_PAIR_QUIET * best;
    return n;
}

void bench_pairs_close(bench_pairs *p)
{
    if (p->buf)
        bench_buffer_free(p->buf, BENCH_PAIR_BUFFER_BYTES);
    free(p->bw);
    free(p->rate);
    *p = (bench_pairs){0};
}
