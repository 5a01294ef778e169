/*
 * plan_engine.h — the expert predictors measured in the engine itself, for
 * `spillway plan MODEL --text FILE`.
 *
 * A trace records which experts were chosen, not the hidden states, so the
 * hidden-state predictor (the next layer's router applied to the current
 * residual stream, model_ffn.c) can only be scored by running the model.
 * This runs MODEL over a text, one token per forward step as decoding does
 * (the text is fed, not sampled: teacher forcing), through a streaming
 * store whose cache holds a given share of the experts, and collects the
 * store's counters, every predictor's per-layer record and the time it
 * took: a measured tokens/s to set beside `spillway plan`'s estimate for a
 * cache of the same size.
 */
#ifndef SW_CLI_PLAN_ENGINE_H
#define SW_CLI_PLAN_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

typedef struct plan_engine_result {
    int n_layers;
    int n_tokens;        /* tokens run */
    double seconds;      /* wall time of the forward steps (logits included) */
    store_stats st;      /* the streaming store's counters at the end */
    uint64_t *pred;      /* [STORE_N_PREDICTORS][n_layers][3]: predicted, correct, routed */
} plan_engine_result;

/* share: of all experts cached, in (0, 1]; max_tokens: at most this many of
 * the text's tokens (BOS first); hints false: the store ignores the model's
 * hidden-state hints (what they buy is the difference). */
int plan_engine_measure(const char *model_path, const char *text, size_t len, double share,
                        int max_tokens, bool hints, plan_engine_result *out, sw_err *err);
void plan_engine_free(plan_engine_result *r);

static inline const uint64_t *plan_engine_pred(const plan_engine_result *r, int kind, int layer)
{
    return r->pred + ((size_t)kind * (size_t)r->n_layers + (size_t)layer) * 3;
}

#endif
