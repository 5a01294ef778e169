/*
 * trace.h — expert routing traces: which experts each token picked at each
 * layer, recorded from real runs, replayed to choose cache policies and
 * predictors (store/replay.h) and to size the cache (`spillway plan`).
 *
 * On disk a trace is JSON lines, one row per (sequence, layer, token):
 *
 *   {"dataset": "gsm8k", "problem_id": 0, "layer": 3, "experts": [7, 0],
 *    "gating_probs": [0.80, 0.20], "token_idx": 12}
 *
 * A sequence is one (dataset, problem_id) pair: one prompt and its answer.
 * Files are written ordered by sequence, then layer, then token, which is
 * how a recorder that walks layer by layer produces them. Rows may be
 * missing (the Mixtral recorder dropped a few padding rows), so a layer may
 * have one token fewer than its neighbours.
 *
 * In memory a trace is kept in the order the engine reads experts: for each
 * sequence, for each token, layers 0..L-1. One step is one (token, layer)
 * visit with its experts; a missing row is simply an absent step. Several
 * files load into one trace, their sequences one after another.
 *
 * `spillway trace` records them from a model's routing hook (model.h);
 * `spillway bench --replay` drives the real store with one
 * (store_replay.h).
 *
 * Recording (the engine's routing hook): trace_add() appends rows in any
 * order; trace_finish() sorts them into engine order and checks that no
 * (sequence, token, layer) appears twice. trace_load() does both.
 *
 * Limits, all checked: layers and experts below 65536, at most
 * TRACE_MAX_K experts per row, token_idx below 2^31.
 */
#ifndef SW_STORE_TRACE_H
#define SW_STORE_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/err.h"
#include "util/strmap.h"

#define TRACE_MAX_K 64

/* One visit of one layer by one token. */
typedef struct trace_step {
    uint32_t seq;      /* index into trace.seqs */
    int32_t token;     /* token_idx within the sequence */
    uint16_t layer;
    uint16_t n;        /* experts picked */
    uint32_t off;      /* first expert in trace.experts / trace.probs */
} trace_step;

typedef struct trace_seq {
    char *key;             /* dataset, 0x1f, problem id: the index's key */
    char *dataset;
    int64_t problem_id;
    size_t first, n_steps; /* its steps: steps[first .. first + n_steps) */
    int n_tokens;          /* highest token_idx + 1 */
} trace_seq;

typedef struct trace {
    trace_step *steps;      /* engine order (after trace_finish) */
    size_t n_steps, cap_steps;
    uint16_t *experts;      /* step s picks experts[off .. off + n) */
    float *probs;           /* their gating probabilities, same indexing */
    size_t n_picks, cap_picks;
    trace_seq *seqs;
    size_t n_seqs, cap_seqs;
    strmap seq_index;       /* seq key -> index into seqs */
    int n_layers;           /* highest layer + 1 */
    int n_experts;          /* highest expert id + 1 (the trace cannot know more) */
    int top_k;              /* most experts in one row */
    int sorted;             /* trace_finish ran since the last trace_add */
} trace;

void trace_init(trace *t);
void trace_free(trace *t);

/* Appends one row. n experts with their probabilities (probs may be NULL:
 * stored as 0). The sequence is created on first sight. */
int trace_add(trace *t, const char *dataset, int64_t problem_id, int token, int layer,
              const int *experts, const float *probs, int n, sw_err *err);
/* Sorts into engine order; SW_EFORMAT on a duplicate row. */
int trace_finish(trace *t, sw_err *err);

/* Loads one JSON-lines file and appends its sequences (then trace_finish).
 * Errors name the file and line. */
int trace_load(trace *t, const char *path, sw_err *err);

/* Writes every row in file order (sequence, layer, token). path "-" is
 * standard output. */
int trace_write(const trace *t, const char *path, sw_err *err);
int trace_write_file(const trace *t, FILE *f, sw_err *err);

/* Tokens in the trace (sum over sequences of their token counts). */
size_t trace_n_tokens(const trace *t);

#endif
