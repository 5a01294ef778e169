/*
 * policy.h — eviction policies for the expert cache.
 *
 * The expert cache holds (layer, expert) entries: the gate, up and down
 * slices of one expert of one layer. This module decides which entry to give
 * up when a new one must come in; it owns no expert bytes and knows nothing
 * of slots or reads. The cache drives it:
 *
 *   hit            policy_touch(p, key, true)
 *   demand miss    while (policy_full(p)) { policy_victim(p, &v);
 *                                           free v's slot; policy_remove(p, v); }
 *                  policy_insert(p, key); policy_touch(p, key, false)
 *   prefetch       make room the same way, then policy_insert(p, key) alone:
 *                  loading an entry is not using it. Its first touch counts
 *                  as the access that loaded it, exactly as for a demand miss.
 *   in use         policy_pin(p, key) ... policy_unpin(p, key): while the
 *                  current layer computes with an entry, it is never a victim.
 *   new layer      policy_layer_begin(p, layer) once its router has picked,
 *                  before its hits and misses are handled.
 *   memory change  policy_resize(p, n, on_evict, ctx)
 *
 * Capacity is counted in entries, not bytes: within one model every entry
 * has the same size (the three slices of one expert), so bytes / entry size
 * is exact. Models whose layers differ in expert size would need a byte
 * budget; none of the supported families do.
 *
 * The policies (policy_kind_parse() takes these names):
 *
 *   lru     least recently used: one list, a touch moves to the front.
 *
 *   lfu     frequency with exponential decay, as Redis' LFU ages its
 *           counters but exact: each access adds weight 2^(t/H) at access
 *           tick t (forward decay), so every entry's count decays by half
 *           every H accesses without being visited, and the order of two
 *           counts never changes between accesses. A min-heap on the count
 *           gives the victim in O(log n). Ties go to the older access.
 *
 *   s3fifo  S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10% of the
 *           capacity) filters entries used once; entries used again while
 *           in it move to the main FIFO, which evicts with a 2-bit
 *           second-chance counter; a ghost FIFO of recently evicted keys
 *           sends returning entries straight to the main FIFO.
 *
 *   stale   layer-aware, for the order in which a model reads experts. A
 *           token visits layers 0..L-1 in turn, so an entry of the layer
 *           that just ran cannot be needed again before every other layer
 *           has run, while an entry of the next layer may be needed at
 *           once. Victims come from the layer visited most recently ("the
 *           stalest layer"), then the one before it, and so on round the
 *           cycle; the next layer's entries go last. Within a layer the
 *           victim is the entry with the smallest count, decayed as lfu's
 *           but on the layer's own clock (visits of the layer, i.e.
 *           tokens; half-life 128: a long memory, since the store's
 *           read-ahead (predict.h) covers what the next tokens need and
 *           the cache is left to hold what is used most; 128 measured best
 *           with read-ahead on the fixture traces, 16 without, by less
 *           than a point). This approximates Belady's rule (evict
 *           what is needed furthest in the future) for cyclic access, where
 *           LRU degenerates: with fewer slots than one token's experts, LRU
 *           evicts exactly the entry needed soonest. The layer order follows
 *           the layer-aware policies proposed for MoE offloading (SpecMD's
 *           "Least-Stale", 2026; Angelopoulos et al.'s layered LRU, 2025).
 *           The current layer is the one policy_layer_begin() named last,
 *           or that of the latest touch if it differs.

 * Costs: lru and s3fifo O(1) per operation (amortized for s3fifo), lfu and
 * stale O(log n), and stale's victim O(L + log n) for L layers. lru and
 * s3fifo step over pinned entries when looking for a victim; those are at
 * most the experts of the layers in flight. lfu and stale take pinned
 * entries out of their heaps. Keys live in an open-addressing hash.
 *
 * Invariants: policy_count() never exceeds the capacity except after a
 * shrink that pinned entries held up (policy_resize says how many); a pinned
 * entry is never returned by policy_victim; policy_contains() is true
 * exactly for inserted and not yet removed keys (s3fifo's ghosts are not
 * entries). A policy is not thread-safe: the engine's owner thread drives it.
 */
#ifndef SW_STORE_POLICY_H
#define SW_STORE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* One cache entry: (layer, expert), each below 65536. */
typedef uint32_t policy_key;

static inline policy_key policy_key_make(int layer, int expert)
{
    return ((uint32_t)layer << 16) | ((uint32_t)expert & 0xffffu);
}
static inline int policy_key_layer(policy_key k) { return (int)(k >> 16); }
static inline int policy_key_expert(policy_key k) { return (int)(k & 0xffffu); }

typedef enum policy_kind {
    POLICY_LRU,
    POLICY_LFU,
    POLICY_S3FIFO,
    POLICY_STALE,
    POLICY_KIND_COUNT
} policy_kind;

/* The policy spillway uses unless told otherwise: the one that measured
 * best on the real routing traces, with and without the store's read-ahead
 * (see `spillway plan`). */
#define POLICY_DEFAULT POLICY_STALE

typedef struct policy_opts {
    /* lfu: half-life of a count, in accesses (touches). 0: 1x capacity
     * (at least 64): a count halves while every entry could have been
     * touched once. */
    double lfu_halflife;
    /* stale: half-life of a count within its layer, in visits of the
     * layer (tokens). 0: 128. */
    double stale_halflife;
    /* s3fifo: share of the capacity given to the small FIFO. 0: 0.10. */
    double s3_small_ratio;
} policy_opts;

typedef struct policy_stats {
    uint64_t hits, misses;  /* touches with hit true / false */
    uint64_t inserts, removes;
} policy_stats;

typedef struct policy policy;

/* Called by policy_resize for each entry it evicts, before removal. */
typedef void (*policy_evict_fn)(void *ctx, policy_key key);

const char *policy_kind_name(policy_kind kind);
/* "lru", "lfu", "s3fifo", "stale". SW_EINVAL, listing them, otherwise. */
int policy_kind_parse(const char *name, policy_kind *out, sw_err *err);

/* A policy for `capacity` entries (0 allowed: nothing fits). opts may be
 * NULL for defaults. */
int policy_create(policy_kind kind, size_t capacity, policy **out, sw_err *err);
int policy_create_opts(policy_kind kind, size_t capacity, const policy_opts *opts,
                       policy **out, sw_err *err);
void policy_destroy(policy *p);

policy_kind policy_get_kind(const policy *p);
size_t policy_capacity(const policy *p);
size_t policy_count(const policy *p);
/* True when an insert needs a victim first (count >= capacity). */
bool policy_full(const policy *p);
bool policy_contains(const policy *p, policy_key key);
bool policy_pinned(const policy *p, policy_key key);
policy_stats policy_get_stats(const policy *p);

/* Makes key an entry. SW_EINVAL if it already is one or the policy is
 * full; SW_ENOMEM. Not an access: see the header comment. */
int policy_insert(policy *p, policy_key key, sw_err *err);
/* Records one access to an entry; hit says whether it was served from the
 * cache (true) or had to be loaded for this access (false). SW_ENOTFOUND
 * if key is not an entry. */
int policy_touch(policy *p, policy_key key, bool hit);
/* The entry to evict next, without removing it. SW_ENOTFOUND when there is
 * none (empty, or every entry pinned). May reorder internal queues. */
int policy_victim(policy *p, policy_key *out);
/* Removes an entry (evicted or invalidated). SW_ENOTFOUND if absent,
 * SW_EINVAL if pinned. */
int policy_remove(policy *p, policy_key key);

/* The engine starts computing `layer` (0-based). Only stale uses it; for
 * the others it is a no-op. */
void policy_layer_begin(policy *p, int layer);

/* Pins are counted: an entry is evictable when every pin is undone.
 * SW_ENOTFOUND if absent; SW_EINVAL when unpinning an unpinned entry. */
int policy_pin(policy *p, policy_key key);
int policy_unpin(policy *p, policy_key key);

/* Sets the capacity. On a shrink, evicts victims (calling on_evict, which
 * may be NULL, for each before removing it) until the count fits. Returns
 * how many entries remain over the new capacity because they are pinned
 * (0 normally), or SW_ENOMEM. */
int policy_resize(policy *p, size_t capacity, policy_evict_fn on_evict, void *ctx);

#endif
