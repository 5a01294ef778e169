/*
 * store.h — where the weights live: the one door through which model code
 * reaches tensor bytes.
 *
 * The model asks the store for what it needs and never opens files itself.
 * Two kinds of request:
 *
 *   resident tensors   store_tensor(s, "blk.3.attn_q.weight", &t): a plain
 *                      pointer to the whole tensor, valid for the store's
 *                      lifetime (attention, norms, routers, shared experts,
 *                      embeddings, the output head).
 *
 *   expert slices      store_expert(s, layer, expert, &gate, &up, &down): the
 *                      matrices of one (layer, expert) pair, the unit of
 *                      caching. The model declares once, at load time, which
 *                      tensors hold a layer's experts (store_bind_experts);
 *                      the store never learns what they mean. Each call is
 *                      paired with store_expert_release() once the model is
 *                      done with the slices: a caching store pins the entry
 *                      in between, the resident store does nothing.
 *
 * The order of expert requests (the model keeps it; model.h): for each MoE
 * layer of a forward step, the router first chooses the experts of every
 * token of the batch; then the model calls store_expert_plan() once with
 * all the distinct experts chosen, ascending; then it requests exactly
 * those, in that order, each once (store_expert ... store_expert_release),
 * before it moves to the next layer. A streaming store can therefore issue
 * every missing read of the layer in store_expert_plan and overlap them.
 * The model holds at most n_expert_used entries at once (a one-token step
 * takes all of its experts before releasing them; a batch takes one at a
 * time), so a cache with that many slots pinned can always make progress.
 *
 * This first store keeps everything resident: it wraps a GGUF_MMAP context,
 * and an expert slice is a pointer into the mapped 3-D tensor. A streaming
 * store (expert cache, O_DIRECT reads, prediction) replaces the expert half
 * behind the same calls, so model code does not change.
 *
 * Modes (store_open_opts; expert_cache.h has the streaming design):
 *   STORE_MMAP      the file mapped, the page cache decides what is in RAM
 *                   (store_open; the baseline benchmarks compare against).
 *   STORE_RESIDENT  every tensor read into memory the store owns.
 *   STORE_STREAM    every tensor but the routed experts read into memory
 *                   once; experts live in a budgeted cache of (layer,
 *                   expert) entries filled by O_DIRECT reads on demand and
 *                   by prediction. Output is bit-identical to the others.
 *
 * Invariants: a store_mat's data holds rows * row_bytes bytes, each row
 * quant_row_size(type, cols) bytes, rows contiguous. Every tensor was
 * checked against the file by the GGUF reader before the store hands it out.
 */
#ifndef SW_STORE_H
#define SW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/err.h"

typedef struct store store;

/* A resident tensor: GGUF shape (ne[0] innermost) and its bytes. */
typedef struct store_tensor {
    const char *name;
    quant_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    size_t size;      /* bytes */
    const void *data; /* size bytes */
} store_tensor;

/* A row-major matrix [rows][cols] of one storage type (an expert's slice). */
typedef struct store_mat {
    quant_type type;
    int64_t rows, cols;
    size_t row_bytes;
    const void *data; /* rows * row_bytes bytes */
} store_mat;

/* Opens a GGUF file with every tensor resident (mmap). */
int store_open(const char *path, store **out, sw_err *err);

typedef enum store_mode { STORE_MMAP = 0, STORE_RESIDENT, STORE_STREAM } store_mode;

struct pressure_snapshot;

/* What the streaming store reports every sample_ms (a timeline). */
typedef struct store_sample {
    const struct pressure_snapshot *mem; /* every memory counter (store/pressure.h) */
    int64_t budget;      /* the expert cache's budget now */
    int64_t room;        /* what memory would allow it now; -1: no bound known */
    int64_t cache_bytes; /* bytes of slots holding entries (at the last plan) */
    uint64_t steps;      /* forward steps begun: a decode step is one token, a
                            prompt batch one step */
    const char *reason;  /* the last budget decision, or "fixed" */
} store_sample;

/* How to open a store; all-zero means store_open's mmap. */
typedef struct store_opts {
    store_mode mode;
    /* STREAM budget, first that is set: cache_bytes for the experts; else
     * mem_bytes for the whole process (the experts get what the resident
     * set, the process's other memory at open and other_bytes leave);
     * else automatic from the machine's memory state (pressure.h), and
     * followed as it changes when watch is set. */
    int64_t cache_bytes, mem_bytes, other_bytes;
    bool watch;
    const char *policy; /* eviction policy name (policy.h); NULL: the default */
    int prefetch;       /* experts predicted per layer: 0 auto (xpred_width: 2 to 4 x
                           n_expert_used, by the cache's size), < 0 off */
    bool no_hints;      /* ignore store_expert_hint (to measure what hints buy) */
    /* STREAM: called on the pressure watcher's thread about every
     * sample_ms (0: 1000; less while the budget falls); the watcher then
     * runs with a fixed budget too, reporting only. NULL: none. */
    void (*on_sample)(void *ctx, const store_sample *s);
    void *sample_ctx;
    int sample_ms;
} store_opts;

/* "mmap", "resident", "stream". */
const char *store_mode_name(store_mode m);
int store_open_opts(const char *path, const store_opts *opts, store **out, sw_err *err);

#define STORE_HIST_BUCKETS 32

/* What the store did; the cache fields are 0 outside STORE_STREAM. */
typedef struct store_stats {
    store_mode mode;
    const char *policy;      /* eviction policy name ("" outside STREAM) */
    const char *reader;      /* reader_mode() ("" outside STREAM) */
    int64_t resident_bytes;  /* memory held by resident tensors */
    int64_t cache_budget;    /* expert budget, bytes */
    int64_t cache_bytes;     /* bytes of slots holding entries now */
    int64_t slot_bytes;      /* one entry's slot */
    int64_t capacity;        /* entries the budget holds */
    int64_t entries;         /* entries held now */
    int64_t total_entries;   /* (layer, expert) pairs of the model */
    uint64_t requests;       /* store_expert calls */
    uint64_t hits, misses;   /* hits + misses == requests */
    uint64_t prefetch_issued, prefetch_hits, prefetch_wasted;
    uint64_t predicted, predicted_right, routed; /* predictor: precision = right / predicted,
                                                    recall = right / routed */
    uint64_t evictions;
    uint64_t reads, read_errors;
    uint64_t bytes_read;     /* expert bytes read from the file (aligned spans) */
    double stall_s;          /* time store_expert waited for reads */
    uint64_t lat_us[STORE_HIST_BUCKETS]; /* read latency, buckets as reader_stats */
    double lat_p50_us, lat_p99_us;
    int64_t mem_available;   /* pressure readings at the last budget decision; -1 unknown */
    double psi_some_avg10;
    const char *budget_reason;
} store_stats;

void store_stats_get(store *s, store_stats *out);
/* The predictor's record for one layer: predicted, right, routed. */
void store_predict_stats(const store *s, int layer, uint64_t out[3]);

/* Every predictor the streaming store scores, each on its own, per layer
 * (store/predict.h): kind 0 "auto" (what it reads ahead: the combination),
 * 1 "hint" (the model's hidden state through the next layer's router),
 * 2 "cooc" (cross-layer co-occurrence), 3 "prev" (the previous token's),
 * 4 "freq" (recent use), 5 "mix" (prev then freq). The single predictors
 * are scored at n_expert_used guesses, auto at its prefetch width.
 * precision = correct / predicted, recall = correct / routed. */
#define STORE_N_PREDICTORS 6
const char *store_predictor_name(int kind);
/* out: predicted, correct, routed, at layer (< 0: all layers); zeros
 * outside STORE_STREAM. */
void store_predictor_stats(const store *s, int kind, int layer, uint64_t out[3]);
/*
 * Budget outside a step. A streaming cache applies a new budget (the
 * pressure watcher's, or one set here) when the model plans a layer, so
 * that nothing changes under a running step; an owner that may stay idle
 * (a server between requests) calls store_maintain now and then, on the
 * thread that runs the forward steps and never during one, so that a
 * shrink decided while idle still gives the memory back at once. Both are
 * no-ops outside STORE_STREAM. store_set_budget sets the expert cache's
 * budget in bytes (at least n_expert_used entries' worth are kept); a
 * watching store's next decision replaces it.
 */
void store_set_budget(store *s, int64_t bytes);
void store_maintain(store *s);
void store_close(store *s);

/* The file's metadata (read-only; owned by the store). */
const gguf_ctx *store_gguf(const store *s);

/* A resident tensor by name. SW_ENOTFOUND (message names it) if absent. */
int store_tensor_get(store *s, const char *name, store_tensor *out, sw_err *err);
/* The same, but a missing tensor is not an error: returns 0 and sets
 * out->data = NULL, so optional tensors read naturally. */
int store_tensor_opt(store *s, const char *name, store_tensor *out, sw_err *err);

/*
 * Declares layer's expert tensors: three 3-D tensors [n_expert][rows][cols]
 * (GGUF ne = {cols, rows, n_expert}); gate may be NULL for non-gated FFNs.
 * All must exist and agree on n_expert. Call once per MoE layer before any
 * store_expert on it.
 */
int store_bind_experts(store *s, int layer, const char *gate, const char *up, const char *down,
                       sw_err *err);
/* Experts bound to layer (0 if none). */
int store_n_experts(const store *s, int layer);

/* Announces the experts[0..n) of layer (distinct, ascending) that the
 * model will request next, before the first store_expert on that layer in
 * this step. The resident store has nothing to do; a streaming store starts
 * the reads of the ones it does not hold. */
int store_expert_plan(store *s, int layer, const int *experts, int n, sw_err *err);

/* The slices of (layer, expert). gate->data is NULL when the layer has no
 * gate tensor. Valid until store_expert_release(s, layer, expert). */
int store_expert(store *s, int layer, int expert, store_mat *gate, store_mat *up, store_mat *down,
                 sw_err *err);
void store_expert_release(store *s, int layer, int expert);

/*
 * A guess, not a request: the model expects layer's next step to use
 * experts[0..n) (e.g. the next layer's router applied to the current hidden
 * state). Call it while an earlier layer computes, before or after that
 * layer's store_expert_plan. A streaming store reads the guessed experts it
 * lacks at prefetch priority, within its read-ahead room, and scores the
 * guess against what the layer then plans; it never changes what a
 * store_expert call returns. Resident and mmap stores ignore it.
 * store_wants_hints() says whether computing one is worth it.
 */
void store_expert_hint(store *s, int layer, const int *experts, int n);
bool store_wants_hints(const store *s);

/* fn(ctx) runs on the calling thread just before a store_expert call (or a
 * plan) blocks waiting for the disk: the model parks its thread pool there
 * (sw_pool_park), so idle workers do not spin through the read. NULL fn:
 * none. Only a streaming store ever blocks. */
void store_set_wait_hook(store *s, void (*fn)(void *ctx), void *ctx);

#endif
