/*
 * kv_cache.h — one sequence's attention memory: the keys and values of every
 * position so far, for every layer.
 *
 * A cache belongs to a conversation, not to the model or to the forward
 * pass's scratch: the engine keeps one per session and hands those it is
 * running to model_forward_multi() together (one step for all of them), so
 * many sequences share one model_state.
 *
 *   positions   [0, kv_cache_pos) hold the sequence; model_forward appends.
 *   truncation  kv_cache_truncate(kv, n) keeps the first n positions, so a
 *               follow-up that shares a prompt prefix re-runs only what
 *               differs. Nothing is erased: positions >= n are simply
 *               overwritten by the next forward, and results never depend
 *               on them (a truncated cache continues exactly as a fresh
 *               run of the same tokens would, bit for bit).
 *   types       F32, F16 (llama.cpp's default), or Q8_0 (blocks of 32 values
 *               with one F16 scale, 8.5 bits each; needs head dimensions that
 *               are multiples of 32). Rows are converted to float as
 *               attention reads them.
 *   sizing      n_ctx positions are reserved at creation; memory is touched
 *               only as positions fill (pages of untouched positions are
 *               never faulted in). n_ctx 0 picks the model's context length,
 *               capped so the whole cache needs at most a quarter of the
 *               memory available (MemAvailable in /proc/meminfo), in
 *               multiples of 256. An explicit n_ctx whose cache would not
 *               fit in the available memory is refused with SW_ENOMEM and a
 *               message saying how much it needs.
 *
 * Layout (model_int.h): per layer, K and V are [n_head_kv][n_ctx] rows of
 * one head's width, so attention streams each head's keys contiguously.
 */
#ifndef SW_KV_CACHE_H
#define SW_KV_CACHE_H

#include <stddef.h>

#include "model/model.h"

typedef struct kv_cache_opts {
    int n_ctx;            /* positions; 0: the model's context, capped by memory */
    quant_type type;      /* QT_F32 (0, the default), QT_F16 or QT_Q8_0 */
    size_t mem_available; /* bytes the cache may assume free; 0: read /proc/meminfo */
} kv_cache_opts;

/* opts may be NULL (all defaults). The model must outlive the cache. */
int kv_cache_new(const model *m, const kv_cache_opts *opts, kv_cache **out, sw_err *err);
void kv_cache_free(kv_cache *kv);

/* Positions the cache can hold. */
int kv_cache_n_ctx(const kv_cache *kv);
/* Positions it holds now (the next token's position). */
int kv_cache_pos(const kv_cache *kv);
quant_type kv_cache_type(const kv_cache *kv);
/* Bytes reserved for all n_ctx positions. */
size_t kv_cache_size(const kv_cache *kv);

/* Keeps positions [0, n); SW_EINVAL unless 0 <= n <= kv_cache_pos. */
int kv_cache_truncate(kv_cache *kv, int n, sw_err *err);
/* Forgets every position. */
void kv_cache_clear(kv_cache *kv);

/* Bytes one position takes in a cache of type t for model m (all layers,
 * keys and values); 0 if t is not a KV type or does not fit the model. */
size_t kv_cache_bytes_per_pos(const model *m, quant_type t);

#endif
