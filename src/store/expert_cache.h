/*
 * expert_cache.h — the streaming half of the store (STORE_STREAM): the
 * resident set read once, and a budgeted cache of experts read on demand.
 *
 * store.c keeps the store's contract and hands the streaming calls here;
 * nothing else includes this header.
 *
 * Resident set. Every tensor except the routed experts (the tensors named
 * blk.N.ffn_{gate,up,down}_exps.weight) is read into one anonymous mapping
 * at open, through the reader (O_DIRECT where the file system allows it),
 * in 4 MiB reads with many in flight. Tensors lying next to each other in
 * the file form one run read as a whole; each run starts on a page of the
 * buffer. Token embeddings are part of it: they are small next to the
 * experts, and a row-by-row read would cost a read per token.
 *
 * Entries. One entry per (layer, expert) holds its gate, up and down slices
 * (each read as its enclosing aligned span: reader.h). Every entry gets the
 * same slot size, the largest entry of the model rounded up to a page (q4_k_m
 * files mix Q4_K and Q6_K experts across layers), so the policy counts
 * entries and a budget is exactly capacity = budget / slot size. Slots are
 * carved from one address-space reservation big enough for every expert of
 * the model (MAP_NORESERVE): a slot costs memory only once it is filled,
 * and a slot freed by a shrink of the budget is given back (MADV_DONTNEED).
 *
 * An entry's life: ABSENT -> LOADING (slot taken, reads issued, pinned) ->
 * READY or FAILED (unpinned when the last of its reads completes; a failed
 * entry keeps the reader's message until requested, evicted or retried).
 *
 * Pins (policy.h counts them) keep an entry from being a victim while
 *   - its reads are in flight (the reader owns the slot),
 *   - store_expert_plan reserved it for the layer about to run,
 *   - the model holds it (store_expert .. store_expert_release).
 * store_expert_plan reserves the layer's experts for the step. When they
 * all fit in the capacity it first reserves those present (so that room
 * made for the absent ones never evicts one the step needs), then takes
 * slots for the absent ones and issues their reads; every pin is then one
 * of the planned entries, which fit. A bigger plan (a prompt batch) walks
 * the experts in the order the model will ask for them and reserves each
 * (issuing the reads of those absent) until no slot can be had; the rest
 * are read on demand. Reservations are then a prefix of the request order.
 * Either way a cache of n_expert_used entries always makes progress
 * (store.h), and the capacity never goes below that.
 *
 * Counting. A request is a hit when the entry was present, or being read
 * by a prefetch (issued while an earlier layer ran), when the layer was
 * planned; a miss when its read was issued for this request. hits + misses
 * == requests.
 *
 * Prediction and read-ahead (predict.h has the predictors). After planning
 * layer L, the store predicts the experts of the next MoE layer: the
 * model's hint for it (the next router applied to the current hidden state,
 * store_expert_hint), the cross-layer co-occurrence with the experts L just
 * planned, and recent use, combined by score; xpred_width() of them (half
 * a layer's share of the cache, at least 2 x n_expert_used). It reads the
 * absent ones at prefetch priority, best first, at most xpred_room() of
 * them, and never evicts an entry of that next layer to make room: the
 * cache keeps what is predicted for the layer about to run and takes its
 * victims, through the policy, from the layers that ran last. A hint that
 * arrives after the read-ahead for its layer is read with the room left.
 * An entry read ahead and first used counts as a prefetch hit; one evicted
 * unused as wasted. Every predictor (auto, hint, cooc, prev, freq, mix) is
 * scored per layer: xcache_predict_stats. replay_opts_default() replays
 * exactly this configuration on a trace.
 *
 * Threads: everything runs on the engine's owner thread (the reader's
 * callbacks too), except the pressure watcher, which only stores a new
 * budget in an atomic that the next plan (or store_maintain, which an idle
 * server calls every half second) applies.
 */
#ifndef SW_EXPERT_CACHE_H
#define SW_EXPERT_CACHE_H

#include "gguf/gguf.h"
#include "store/store.h"
#include "util/err.h"

typedef struct xcache xcache;

/* Reads g's resident set from path and sizes the cache from o. */
int xcache_open(const gguf_ctx *g, const char *path, const store_opts *o, xcache **out,
                sw_err *err);
void xcache_close(xcache *c);

/* True for the tensors the cache streams (routed experts). */
bool xcache_is_streamed(const char *name);
/* A resident tensor's bytes; NULL for a streamed one. */
const void *xcache_tensor_data(const xcache *c, const gguf_tensor *t);

/* t[0] gate (may be NULL), t[1] up, t[2] down: [n_expert][rows][cols]. */
int xcache_bind(xcache *c, int layer, const gguf_tensor *const t[3], int n_expert, sw_err *err);
int xcache_plan(xcache *c, int layer, const int *experts, int n, sw_err *err);
/* m[0] gate, m[1] up, m[2] down. */
int xcache_get(xcache *c, int layer, int expert, store_mat m[3], sw_err *err);
void xcache_release(xcache *c, int layer, int expert);

/* store_expert_hint: the hidden-state guess of layer's next experts. */
void xcache_hint(xcache *c, int layer, const int *experts, int n);
bool xcache_wants_hints(const xcache *c);
void xcache_set_wait_hook(xcache *c, void (*fn)(void *ctx), void *ctx);

void xcache_stats(xcache *c, store_stats *out);
/* store_set_budget / store_maintain (store.h). */
void xcache_set_budget(xcache *c, int64_t bytes);
void xcache_maintain(xcache *c);
/* Predictor kind's (xpred_kind) predicted, correct, routed at layer (< 0:
 * all layers). */
void xcache_predict_stats(const xcache *c, int kind, int layer, uint64_t out[3]);

#endif
