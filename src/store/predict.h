/*
 * predict.h — which experts the next MoE layer will use, guessed while the
 * current one runs, so that the expert cache can read them ahead.
 *
 * One predictor object serves the streaming store (expert_cache.c) and the
 * trace replay (replay.c) alike, so the replayed hit rates describe what
 * runs. It sees the engine's steps in order: a step is one visit of one MoE
 * layer (a token's layers 0..L-1, then the next token's), told with
 * xpred_observe() once the layer's router has picked. Before the next step,
 * xpred_predict() names the experts that step's layer is expected to use.
 *
 * Sources, each also scored on its own (precision and recall per layer):
 *
 *   hint   the engine passes the current hidden state through the next
 *          layer's router (model_ffn.c) and hands the top-k over with
 *          xpred_hint(); valid for that layer's next visit only. Traces
 *          record choices, not hidden states, so a replay has none.
 *   cooc   cross-layer co-occurrence, learned online: for every pair (i, j),
 *          how often expert j of this layer followed expert i of the step
 *          before it (the previous layer of the same token, or the last
 *          layer of the previous token). A row's counts decay by COOC_DECAY
 *          each time the row learns, so the estimate follows the text. The
 *          score of j is the mean over the previous step's experts i of
 *          P(j | i). Learned only from steps of one token (n <= top-k): a
 *          batch's union of experts says nothing about pairs.
 *   prev   the experts the layer used at its previous visit (the previous
 *          token).
 *   freq   the layer's experts by use count, each use weighted
 *          2^(-age / halflife), age in visits of the layer (tokens).
 *   mix    prev, then freq (the store's predictor before cooc).
 *
 * The default ("auto", what the store prefetches): experts ranked by
 *     score(j) = W_HINT [j in hint] + cooc(j) + W_PREV [j in prev]
 *                + W_FREQ freq(j) / sum freq * k
 * (cooc and the normalised freq both sum to k over j: comparable), the top
 * `width` of them. The weights were chosen on the fixture traces (cooc alone
 * beats prev and freq there; they break its ties and cover its cold start)
 * and from the hidden-state hint's precision on tinymoe.
 *
 * Scoring: every xpred_predict() records each source's guess (the single
 * sources at the layer's top-k, auto at the width asked) and the next
 * xpred_observe() of that layer counts them: predicted, correct, actual.
 *
 * How many to read ahead: xpred_room() (see there), the same for the store
 * and the replay. Only the next layer is predicted: on tinymoe the hint two
 * layers ahead was right 37.5% of the time (one ahead: 52-66%), about what
 * co-occurrence gives one ahead (33%), so a second read-ahead window would
 * mostly read experts that go unused.
 *
 * Memory: the co-occurrence rows are n_layers x n_experts^2 floats (Qwen3-
 * 30B-A3B: 48 x 128^2 x 4 B = 3 MiB; 256 experts x 61 layers: 16 MiB).
 */
#ifndef SW_STORE_PREDICT_H
#define SW_STORE_PREDICT_H

#include <stdint.h>

#include "util/err.h"

typedef enum xpred_kind {
    XPRED_AUTO,  /* the combination the store prefetches */
    XPRED_HINT,
    XPRED_COOC,
    XPRED_PREV,
    XPRED_FREQ,
    XPRED_MIX,
    XPRED_COUNT
} xpred_kind;

typedef struct xpred_count {
    uint64_t predicted, correct, actual;
} xpred_count;

typedef struct xpred_opts {
    int n_layers, n_experts; /* experts per layer: the largest of the model's */
    int top_k;               /* experts a token uses per layer (>= 1) */
    double freq_halflife;    /* tokens; 0: 4 */
    /* auto's weights; all zero: the defaults below */
    double w_hint, w_cooc, w_prev, w_freq;
} xpred_opts;

#define XPRED_W_HINT 1.5
#define XPRED_W_COOC 1.0
#define XPRED_W_PREV 0.0
#define XPRED_W_FREQ 0.25


typedef struct xpred xpred;

const char *xpred_kind_name(xpred_kind k);

int xpred_create(const xpred_opts *o, xpred **out, sw_err *err);
void xpred_destroy(xpred *p);
/* Forgets everything learned (not the counters): a new, unrelated text. */
void xpred_reset(xpred *p);

/* The hidden-state guess for layer's next visit: experts ex[0..n). */
void xpred_hint(xpred *p, int layer, const int *ex, int n);

/* The experts predicted for layer's next visit, best first, into
 * out[0..width); returns how many (fewer when there is nothing to go on).
 * kind XPRED_AUTO is the default; the guesses of every kind are kept for
 * scoring by the next xpred_observe(p, layer, ...). */
int xpred_predict(xpred *p, xpred_kind kind, int layer, int width, int *out);

/* Layer ran with experts ex[0..n) (distinct): scores the predictions made
 * for it and learns. */
void xpred_observe(xpred *p, int layer, const int *ex, int n);

/* Counters of kind at layer (layer < 0: all layers). */
xpred_count xpred_stats(const xpred *p, xpred_kind kind, int layer);

/* Experts read ahead for the next layer: width, but no more than leaves a
 * token's experts (k) of every MoE layer's share of the cache alone,
 *     min(width, capacity / n_moe_layers - k),
 * and, when shares are smaller than k (a cache of fewer than one token's
 * experts), the next layer's k as long as the cache holds two layers' worth
 * (the current layer pinned, the next one read ahead): stale evicts the
 * layer that just ran first, which is needed again last. */
int xpred_room(int64_t capacity, int n_moe_layers, int k, int width);

/* Experts predicted per layer by default (the store's prefetch width): half
 * a layer's share of the cache, at least 2k. A guess costs a read only when
 * the entry is absent, which a larger cache makes rarer, so a larger cache
 * affords wider guesses. */
int xpred_width(int64_t capacity, int n_moe_layers, int k);

#endif
