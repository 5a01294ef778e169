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
 * This first store keeps everything resident: it wraps a GGUF_MMAP context,
 * and an expert slice is a pointer into the mapped 3-D tensor. A streaming
 * store (expert cache, O_DIRECT reads, prediction) replaces the expert half
 * behind the same calls, so model code does not change.
 *
 * Invariants: a store_mat's data holds rows * row_bytes bytes, each row
 * quant_row_size(type, cols) bytes, rows contiguous. Every tensor was
 * checked against the file by the GGUF reader before the store hands it out.
 */
#ifndef SW_STORE_H
#define SW_STORE_H

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

/* The slices of (layer, expert). gate->data is NULL when the layer has no
 * gate tensor. Valid until store_expert_release(s, layer, expert). */
int store_expert(store *s, int layer, int expert, store_mat *gate, store_mat *up, store_mat *down,
                 sw_err *err);
void store_expert_release(store *s, int layer, int expert);

#endif
