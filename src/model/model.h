/*
 * model.h — decoder-only transformer models read from GGUF: description
 * and forward pass.
 *
 * One generic decoder covers the supported families; what differs between
 * them is data, not code paths copied per family:
 *
 *   - an architecture table (model_load.c) says, per GGUF
 *     general.architecture, how RoPE pairs dimensions, how the router picks
 *     and weighs experts, which FFN activation is used, which layers use a
 *     sliding window, and where names differ;
 *   - the model description (configuration: hyperparameters from metadata;
 *     weights: per-layer tensors, optional ones absent) says the rest:
 *     biases, QK-norm, attention sinks, shared experts, MoE or dense FFN.
 *
 * Weights come from a store (store/store.h), never from files: resident
 * tensors as pointers, experts per (layer, expert) when the router picks
 * them. Only the experts a token routes to are computed.
 *
 * Run state (model_state) is one sequence: its KV cache and scratch. A
 * forward call appends n tokens at the state's current position. Prefill of
 * many tokens uses matrix-matrix products (each weight row is loaded once
 * and used for the whole batch); every row is computed exactly as a one-token
 * step would compute it, so batched and token-by-token runs agree.
 *
 * Activations are float32. Matrix products go through quant_matmul (the
 * activations converted to the weight type's activation type, as llama.cpp
 * does); norms, softmax and RoPE angles are computed in double where that
 * costs nothing measurable.
 */
#ifndef SW_MODEL_H
#define SW_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/quant.h"
#include "store/store.h"
#include "util/err.h"
#include "util/pool.h"

typedef struct model model;
typedef struct model_state model_state;

/* What callers may want to know about a loaded model. */
typedef struct model_info {
    const char *arch;  /* GGUF general.architecture */
    int n_vocab;
    int n_embd;
    int n_layer;
    int n_ctx_train;   /* context length the model was trained for */
    int n_expert;      /* 0 for dense models */
    int n_expert_used;
} model_info;

/*
 * Parity mode. By default spillway computes what the model's reference
 * implementation computes, as exactly as float32 activations allow.
 * MODEL_COMPAT_LLAMACPP instead follows llama.cpp where it knowingly
 * differs, so that logits can be compared with llama.cpp's closely:
 *   - YaRN's correction range rounded to whole dimensions (gpt-oss's
 *     reference does not round);
 *   - activations rounded to F16 / BF16 before products with F16 / BF16
 *     weights (llama.cpp's activation types for them).
 * Together with an F16 KV cache (llama.cpp's default) this reproduces
 * llama.cpp's logits on float32 files to ~1e-9 KL. Quantized files still
 * differ a little: where an activation sits on a rounding boundary of its
 * 8-bit quantization, last-bit differences in float arithmetic flip it.
 */
enum { MODEL_COMPAT_LLAMACPP = 1 };

typedef struct model_opts {
    unsigned compat; /* MODEL_COMPAT_* */
} model_opts;

/* Reads the description from the store's metadata and binds its tensors,
 * checking every shape. Unknown architectures fail with SW_EUNSUPPORTED and
 * a message listing the supported ones. opts may be NULL (defaults). The
 * store must outlive the model. */
int model_load(store *st, const model_opts *opts, model **out, sw_err *err);
void model_free(model *m);
void model_get_info(const model *m, model_info *info);
/* "llama, qwen2, ..." */
const char *model_supported_archs(void);

typedef struct model_state_opts {
    int n_ctx;          /* KV cache positions (> 0) */
    int n_batch;        /* most tokens per internal step; 0 = 512 */
    quant_type kv_type; /* QT_F32 (default when 0) or QT_F16 */
} model_state_opts;

int model_state_new(const model *m, const model_state_opts *opts, model_state **out, sw_err *err);
void model_state_free(model_state *s);
/* Forgets the sequence (position back to 0). */
void model_state_reset(model_state *s);
/* Tokens held in the KV cache. */
int model_state_pos(const model_state *s);

enum {
    MODEL_LOGITS_LAST = 0, /* logits: [n_vocab] for the last token */
    MODEL_LOGITS_ALL = 1,  /* logits: [n][n_vocab], one row per token */
};

/* Runs tokens[0..n) at positions pos..pos+n-1 and appends them to the KV
 * cache. logits may be NULL (prefill without output). pool may be NULL.
 * Results do not depend on n_batch, on how the tokens are split across
 * calls, or on the pool's size (bit for bit). On error, positions from the
 * failed internal step on are not part of the sequence (model_state_pos). */
int model_forward(model *m, model_state *s, sw_pool *pool, const int32_t *tokens, int n,
                  float *logits, int flags, sw_err *err);

#endif
