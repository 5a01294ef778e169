/*
 * store_replay.h — drives a real store with a recorded routing trace
 * instead of a model's router (`spillway bench --replay`).
 *
 * replay.h simulates a cache in memory and counts what it would read;
 * this drives the store itself: its expert cache, its eviction policy and
 * budget, its predictor and its reader, with real (O_DIRECT) reads of the
 * model file's expert bytes. What it measures is therefore what the store
 * and the disk do on real routing, without the model's compute in the way
 * (or with a fixed stand-in for it: compute_us per layer).
 *
 * The walk follows the trace's engine order (trace.h: for each sequence,
 * for each token, layers 0..L-1) and keeps store.h's order of requests, as
 * the model does for a one-token step: for each (token, layer) step, the
 * step's distinct experts ascending go to store_expert_plan(), then each
 * is requested (store_expert) and released in that same order. With
 * compute_us, each expert of a step holds its entry for compute_us / n
 * microseconds of busy time (the model computes one expert at a time), so
 * prefetches issued at the plan overlap it as they would overlap compute.
 *
 * Fitting the trace to the model: trace layer l is model layer l. Rows of
 * layers the model has no experts for (a trace of 32 layers on a model
 * written with 8) are skipped and counted; an expert id the layer does not
 * have is an error, found before anything is replayed. The store must have
 * its experts bound (model_load does it), else every row is skipped and the
 * replay fails.
 */
#ifndef SW_STORE_STORE_REPLAY_H
#define SW_STORE_STORE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "store/trace.h"
#include "util/err.h"

typedef struct store_replay_opts {
    double compute_us; /* busy time per layer step, spread over its experts; 0: none */
    size_t max_tokens; /* replay at most this many tokens (all sequences together); 0: all */
} store_replay_opts;

typedef struct store_replay_result {
    uint64_t tokens;       /* (sequence, token) pairs replayed */
    uint64_t steps;        /* (token, layer) steps replayed */
    uint64_t picks;        /* store_expert calls */
    uint64_t skipped_rows; /* trace rows of layers without experts in the model */
    int layers;            /* distinct layers replayed */
    int first_layer, last_layer;
    double seconds;        /* wall time of the walk */
    double compute_s;      /* of which simulated compute */
    store_stats before, after; /* the store's counters around the walk */
} store_replay_result;

/* Checks that every replayable row fits the store's experts; SW_EINVAL
 * naming the first row that does not, or if no row is replayable. */
int store_replay_check(store *s, const trace *t, sw_err *err);

/* Replays t (finished: trace_finish) through s. On error the counters so
 * far are in *out. */
int store_replay_run(store *s, const trace *t, const store_replay_opts *o, store_replay_result *out,
                     sw_err *err);

/* Derived figures: requests, hits and bytes over the walk only. */
static inline uint64_t store_replay_requests(const store_replay_result *r)
{
    return r->after.requests - r->before.requests;
}
static inline double store_replay_hit_rate(const store_replay_result *r)
{
    uint64_t n = store_replay_requests(r);
    return n ? (double)(r->after.hits - r->before.hits) / (double)n : 0;
}
static inline uint64_t store_replay_bytes(const store_replay_result *r)
{
    return r->after.bytes_read - r->before.bytes_read;
}

#endif
