/*
 * replay.h — replays a routing trace through an expert cache and a
 * predictor, as the engine would run them, and counts what happens.
 *
 * The replay walks the trace in engine order (for each token, layers
 * 0..L-1). At each step, the layer's experts are looked up in the cache:
 * present ones are hits, absent ones are demand misses, loaded (a victim
 * evicted first) and then used; every expert of the step is pinned while
 * the step runs, as the engine pins what the current layer computes with.
 *
 * Prefetching: right after step s has picked its experts, a predictor names
 * the experts of step s + distance (distance 1: the next layer), and those
 * not yet cached are loaded, best first, up to `width` of them (or
 * xpred_room() with room_auto, as the store does), evicting as a demand
 * miss would but never an entry of the predicted step's layer (the store
 * keeps what is predicted for the layer about to run) and never the
 * current step's experts. A later use of a prefetched entry is a prefetch
 * hit (counted among the hits: the read was issued a layer early); a
 * prefetched entry evicted or left over before any use is a wasted
 * prefetch; bytes_read counts both kinds of reads. Reads are assumed to
 * finish in time: timing is the estimator's business (store/plan.h).
 *
 * Predictors (store/predict.h, the same code as the store's), all using
 * only what the engine knows when it must issue the reads:
 *   prev   the experts the previous token used at that layer;
 *   freq   the `width` experts used most at that layer over recent tokens,
 *          each use weighted 2^(-age / halflife), age in tokens;
 *   mix    prev first, then freq's ranking to fill up to `width`;
 *   cooc   cross-layer co-occurrence with the previous step's experts;
 *   auto   the store's combination (hint + cooc + freq by score).
 * The hint (layer L+1's router applied to layer L's hidden state) cannot be
 * replayed: traces record choices, not hidden states; `spillway plan MODEL
 * --text FILE` measures it in the engine. Every predictor is also scored on
 * its own at the trace's top-k in replay_result.kinds.
 *
 * Precision = correct / predicted, recall = correct / actual picks, both
 * over the steps a prediction was made for (all but the first `distance`).
 *
 * replay_opt() gives Belady's offline optimum (evict the entry used
 * furthest in the future, or do not cache at all) as an upper bound on any
 * demand policy's hit rate at a capacity.
 */
#ifndef SW_STORE_REPLAY_H
#define SW_STORE_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "store/policy.h"
#include "store/predict.h"
#include "store/trace.h"
#include "util/err.h"

typedef enum replay_predictor {
    PREDICT_NONE,
    PREDICT_PREV,
    PREDICT_FREQ,
    PREDICT_MIX,
    PREDICT_COOC,
    PREDICT_AUTO,
    PREDICT_COUNT
} replay_predictor;

typedef struct replay_opts {
    policy_kind policy;
    policy_opts popts;          /* zero: the policy's defaults */
    size_t capacity;            /* cache entries in all */
    bool per_layer;             /* capacity split evenly, one policy per layer */
    bool cold_per_seq;          /* empty cache and history at each sequence */
    replay_predictor predictor; /* PREDICT_NONE: no prediction, no prefetch */
    bool prefetch;              /* load the predictions (else only score them) */
    int width;                  /* experts predicted per step; 0: the trace's top-k */
    int distance;               /* steps ahead a prefetch is issued; 0: 1 */
    double halflife;            /* freq predictor, in tokens; 0: 4 */
    bool room_auto;             /* read ahead at most xpred_room() per step, as the
                                   store does (else up to width) */
    const double *weights;      /* auto's weights hint, cooc, prev, freq; NULL: defaults */
    uint64_t entry_bytes;       /* bytes per entry, for bytes_read; 0: count only */
} replay_opts;

/* Prediction counts, in all or for one layer. */
typedef struct replay_pred {
    uint64_t predicted, correct, actual;
} replay_pred;

typedef struct replay_result {
    uint64_t tokens, steps;
    uint64_t accesses;        /* expert picks replayed */
    uint64_t hits;            /* served from the cache, prefetch hits included */
    uint64_t misses;          /* demand loads */
    uint64_t prefetch_hits;   /* first use of a prefetched entry */
    uint64_t prefetches;      /* prefetch loads */
    uint64_t prefetch_wasted; /* prefetch loads never used */
    uint64_t bytes_read;      /* (misses + prefetches) * entry_bytes */
    replay_pred pred;
    replay_pred *per_layer;   /* the chosen predictor, n_layers of them (replay_result_free) */
    replay_pred *kinds;       /* every predictor: [XPRED_COUNT][n_layers], each scored at
                                 the trace's top-k (auto at the width); NULL without one */
    int n_layers;
} replay_result;

const char *replay_predictor_name(replay_predictor p);
int replay_predictor_parse(const char *name, replay_predictor *out, sw_err *err);

/* Replays the whole trace (it must be finished: trace_finish). */
int replay_run(const trace *t, const replay_opts *o, replay_result *out, sw_err *err);
/* What the streaming store runs by default (expert_cache.h) at capacity
 * entries: POLICY_DEFAULT, the auto predictor at XPRED_WIDTH(top-k),
 * prefetching at most xpred_room() per step. */
void replay_opts_default(replay_opts *o, const trace *t, size_t capacity);
void replay_result_free(replay_result *r);

static inline double replay_hit_rate(const replay_result *r)
{
    return r->accesses ? (double)r->hits / (double)r->accesses : 0;
}
static inline double replay_precision(const replay_pred *p)
{
    return p->predicted ? (double)p->correct / (double)p->predicted : 0;
}
static inline double replay_recall(const replay_pred *p)
{
    return p->actual ? (double)p->correct / (double)p->actual : 0;
}

/* Belady's optimum with bypass: hits out of *accesses at capacity entries. */
int replay_opt(const trace *t, size_t capacity, uint64_t *hits, uint64_t *accesses,
               sw_err *err);

#endif
