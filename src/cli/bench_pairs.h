/*
 * bench_pairs.h — decode speed against the memory bandwidth of the same
 * moment (`spillway bench`).
 *
 * On a shared host other tenants' DRAM traffic moves the read bandwidth
 * from second to second (30 to 86 GB/s within a minute on the machines
 * these benchmarks ran on), and their memory traffic is invisible to the
 * preemption checks of bench.h. A bandwidth figure taken before or after
 * the decode is then a different machine's, and decode / bound swings from
 * 0.6 to 1.4 between identical runs. So the decode runs in blocks of
 * BENCH_PAIR_TOKENS tokens with a short bandwidth sample (one pass over
 * BENCH_PAIR_SAMPLE_BYTES, the same read kernel and threads as the main
 * figure) before each block and after the last, and each block's rate of
 * weight bytes is set against the mean of the two samples around it.
 *
 * Summaries: the median of the per-block fractions, and the median over
 * the quiet blocks only — those whose samples both reached 90% of the best
 * sample of the run — which is the figure for an idle machine, where the
 * kernels must keep up with the most bandwidth. The samples evict the
 * last-level cache between blocks, which can only slow the next block.
 */
#ifndef SW_CLI_BENCH_PAIRS_H
#define SW_CLI_BENCH_PAIRS_H

#include "util/err.h"
#include "util/pool.h"

#include <stddef.h>

#define BENCH_PAIR_TOKENS 4
#define BENCH_PAIR_SAMPLE_BYTES ((size_t)32 << 20)
#define BENCH_PAIR_BUFFER_BYTES ((size_t)128 << 20) /* samples cycle through it */
#define BENCH_PAIR_QUIET 0.9

typedef struct bench_pairs {
    unsigned char *buf;
    sw_pool *pool;
    int n_blocks, cap;   /* blocks recorded, room for */
    double *bw;          /* [cap + 1] samples, bytes/s; bw[b], bw[b + 1] around block b */
    double *rate;        /* [cap] weight bytes/s of each block */
    int n_samples;
    double best_clean;   /* best sample whose threads kept their CPUs, bytes/s */
} bench_pairs;

typedef struct bench_pairs_summary {
    int blocks, quiet_blocks;
    double fraction;       /* median over blocks of rate / bandwidth around it */
    double fraction_quiet; /* the same over quiet blocks; 0 when there are none */
    double bw_min, bw_median, bw_max; /* samples, bytes/s */
} bench_pairs_summary;

/* Room for max_blocks blocks; takes the first sample. */
int bench_pairs_open(bench_pairs *p, sw_pool *pool, int max_blocks, sw_err *err);
/* A block of `seconds` that read `bytes` of weights, then the next sample. */
void bench_pairs_block(bench_pairs *p, double bytes, double seconds);
void bench_pairs_summarize(const bench_pairs *p, bench_pairs_summary *s);
/* Blocks whose two samples both reach BENCH_PAIR_QUIET of ref (bytes/s),
 * or of p's own best sample where ref is 0: its quiet blocks against an
 * idle bandwidth measured elsewhere. */
int bench_pairs_quiet(const bench_pairs *p, double ref);
void bench_pairs_close(bench_pairs *p);

#endif
