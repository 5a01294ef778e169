/*
 * bench.h — spillway-bench: matrix-vector throughput against the machine's
 * own memory bandwidth, measured in the same run.
 *
 * A decode step of a large model is a chain of matrix-vector products whose
 * weights do not fit in cache, so the speed that matters is how close the
 * kernels come to streaming weights at DRAM speed. The benchmark therefore:
 *
 *   1. measures read bandwidth with a plain SIMD sum over a large buffer
 *      (bench_mem.c, kernels in bench_read_*.c), per thread count;
 *   2. fills the same buffer with many distinct weight matrices (together
 *      far larger than the last-level cache) and times quant_matvec (or
 *      quant_matvec_multi, several matrices per call) over them, scattered,
 *      reporting weight bytes read per second and the fraction of the
 *      bandwidth of step 1 (bench_matvec.c);
 *   3. prints a markdown report and optionally writes it to a file
 *      (bench_main.c).
 *
 * Timing: the buffer is cut into segments of BENCH_SEGMENT_BYTES (twice a
 * large L3), each timed on its own as one sample, cycling through the whole
 * buffer so no sample finds its data in cache; the result is the best
 * sample. On a shared machine other processes take our cores now and then,
 * and a 2-thread sample in which one thread waited for its core measures
 * the neighbour, not the hardware. So every sample also counts preemptions
 * of our threads (getrusage) and how long they sat runnable waiting for a
 * CPU (schedstat's run delay): a sample with neither is clean, and the best
 * clean sample is reported. Sampling goes on (within a time budget) until a
 * few clean ones are in; a figure with none is marked. What this cannot see
 * is a neighbour that competes for DRAM rather than for our cores.
 */
#ifndef SW_BENCH_H
#define SW_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "quant/quant.h"
#include "util/pool.h"

/* --- bench_mem.c ---------------------------------------------------------- */

#define BENCH_SEGMENT_BYTES ((size_t)64 << 20)
#define BENCH_MIN_CLEAN 3       /* clean samples wanted per figure */
#define BENCH_EXTRA_BUDGET_S 6.0 /* time a figure may take looking for them */

/* Best throughput seen, over clean samples and over all. */
typedef struct bench_best {
    double clean; /* bytes/s, best sample in which our threads had their CPUs */
    double any;   /* bytes/s, best sample */
    int n, n_clean;
} bench_best;

void bench_best_add(bench_best *b, double rate, int clean);
void bench_best_merge(bench_best *into, const bench_best *from);
/* The figure to report: best clean sample, else best of any. */
double bench_best_rate(const bench_best *b);

/* Times samples and says whether each was clean; one timer serves a whole
 * sampling loop (start with {0}), since a disturbance can span two samples. */
typedef struct bench_timer {
    double t0;
    long long delay0; /* our threads' booked wait for a CPU at the start, ns */
    long preempt0;    /* involuntary context switches at the start */
    long preempt1;    /* ... at the end of the last sample (-2: it was preempted) */
    int started, tainted;
} bench_timer;

void bench_timer_start(bench_timer *t);
/* Seconds since start; *clean = no preemption and hardly any wait for a CPU. */
double bench_timer_stop(bench_timer *t, int *clean);

/* Whether a sampling loop that has spent `spent` seconds on `done` samples,
 * of `planned`, should take another. */
int bench_want_more(const bench_best *b, int done, int planned, double spent, double budget);

/* A page-aligned buffer, transparent huge pages requested, every page touched
 * (no faults inside timed regions). NULL on failure. */
void *bench_buffer_alloc(size_t bytes);
void bench_buffer_free(void *p, size_t bytes);

/* Read bandwidth of one segment, over `reps` passes through buf[0, bytes),
 * with all threads of pool (NULL: one thread); merged into *best. */
void bench_read_bandwidth(sw_pool *pool, const void *buf, size_t bytes, int reps,
                          bench_best *best);

/* One timed pass over buf[0, bytes) (bytes a multiple of 256, buf 64-aligned)
 * with every thread of pool, no warm-up: bytes/s (0 in a case that practically
 * never happens); *clean as bench_timer_stop says. */
double bench_read_once(sw_pool *pool, const void *buf, size_t bytes, int *clean);

/* Name of the read kernel bench_read_bandwidth uses ("avx512", ...). */
const char *bench_read_kernel_name(void);

/* Sums 64-bit words of p[0, bytes); bytes a multiple of 256, p 64-aligned.
 * The result only keeps the loads from being optimized away. */
uint64_t bench_read_sum_avx2(const void *p, size_t bytes);
uint64_t bench_read_sum_avx512(const void *p, size_t bytes);

/* Seconds on the monotonic clock. */
double bench_now(void);

/* Median of v[0, n), sorting v in place; 0 for n == 0. */
double bench_median(double *v, int n);

/* --- bench_matvec.c ------------------------------------------------------- */

#define BENCH_MAX_PAIRS 64

/*
 * Pairs: a neighbour's DRAM traffic moves the bandwidth from moment to
 * moment, so each matvec sample also gets a bandwidth sample (one read pass
 * over a distant segment of the arena) just before it, and one more follows
 * the last: pair_bw[k] and pair_bw[k + 1] are the bandwidth around matvec
 * sample pair_mv[k] (all bytes/s; n_pairs 0 when the arena holds fewer than
 * two segments).
 */
typedef struct bench_result {
    bench_best rate;  /* weight bytes read per second */
    double mat_bytes; /* bytes of one matrix (so µs per call = mat_bytes / rate) */
    int n_mats;       /* distinct matrices cycled over */
    int n_pairs;
    double pair_mv[BENCH_MAX_PAIRS];
    double pair_bw[BENCH_MAX_PAIRS + 1];
} bench_result;

/* Median over pairs of matvec / (mean bandwidth around it), counting only
 * pairs whose two bandwidth samples reach min_bw (0: all); *n gets how many
 * counted. 0 when none. */
double bench_pairs_median(const bench_result *r, double min_bw, int *n);

/*
 * Fills arena[0, arena_bytes) with as many rows x cols matrices of type t as
 * fit, back to back; returns 0, or -1 with why filled (type cannot be
 * generated, arena too small).
 */
int bench_matvec_prepare(quant_type t, int64_t rows, int64_t cols, void *arena,
                         size_t arena_bytes, int *n_mats, char *why, size_t whylen);
/*
 * Times products over those matrices: a sample is one segment's worth of
 * matrices, visited scattered (no product continues where the previous
 * one read), per_call at a time: 1 is one quant_matvec per matrix, more is
 * one quant_matvec_multi over per_call of them, as a MoE layer multiplies
 * its routed experts' slices (at most BENCH_MAX_PER_CALL). `reps` passes
 * through all of them, cut short after a few seconds (see
 * bench_want_more). Returns 0, or -1 with why.
 */
#define BENCH_MAX_PER_CALL 16
int bench_matvec_run(sw_pool *pool, quant_type t, int64_t rows, int64_t cols, int per_call,
                     const void *arena, int n_mats, int reps, bench_result *out, char *why,
                     size_t whylen);

/* Average seconds per sw_pool_run of an empty job with one task per thread. */
double bench_pool_dispatch(sw_pool *pool, int iters);

/* --- other sections ------------------------------------------------------- */

/* bench_tokenize.c: tokenizer throughput, as a markdown section; 0 or -1. */
int bench_tokenize(FILE *md_out);
/* bench_reader.c: disk streaming of expert-sized reads; 0 or -1. */
int bench_reader(FILE *md);

#endif
