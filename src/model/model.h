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
 * A forward call takes three things: the model (configuration and weights,
 * read-only), a model_state (scratch for one step, reusable for any
 * sequences) and a kv_cache (kv_cache.h: one sequence's keys and values,
 * owned by whoever owns the conversation). It appends n tokens at the
 * cache's current position. Prefill of many tokens uses matrix-matrix
 * products (each weight row is loaded once and used for the whole batch);
 * every row is computed exactly as a one-token step would compute it, so
 * batched and token-by-token runs agree bit for bit.
 *
 * Several sequences in one step (model_forward_multi). A server decoding
 * for N users would otherwise stream every weight, and read every routed
 * expert, N times per step. model_forward_multi takes N sequences — each
 * its own kv_cache, tokens, logits and flags, e.g. one user's prompt chunk
 * beside three others' single decode tokens — and puts all their tokens
 * through each weight matrix in one product, each token at its own
 * sequence's position (RoPE per token); attention runs per sequence against
 * its own cache (all sequences' tasks in one pool job); an MoE layer routes
 * all the step's tokens together and plans and requests the union of their
 * experts once, so one expert read serves every sequence that chose it.
 * Since products are row-independent and attention depends only on a
 * query's own sequence and position, each sequence's logits are the bits
 * model_forward would give it alone. model_forward is the one-sequence case.
 *
 * Activations are float32. Matrix products go through quant_matmul (the
 * activations converted to the weight type's activation type, as llama.cpp
 * does); a one-token step sends its independent products (Q, K and V; gate
 * and up; all chosen experts) to the pool as one job each. Attention is
 * threaded over (KV head, tile of tokens) and, for short steps at long
 * context, over segments of positions too; it is computed in float with an
 * online softmax over a fixed grid of positions (model_attn.c). Elementwise
 * work goes through SIMD kernels (model_vec.h). RMSNorm sums squares and
 * RoPE computes its angles in double.
 *
 * Mixture of Experts and the store. For each MoE layer of a step the model
 * (1) computes the router's choice for every token of the batch, (2) reports
 * it to the route hook if one is set, (3) calls store_expert_plan() once
 * with the set of distinct experts chosen (ascending), and only then
 * (4) asks for each of those experts with store_expert() and
 * store_expert_release(), in the same ascending order, each once per layer
 * and step, holding at most n_expert_used of them at a time. So a streaming
 * store learns a layer's whole need before the first request and can issue
 * every read at once.
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
typedef struct kv_cache kv_cache; /* kv_cache.h */

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
 *     weights (llama.cpp's activation types for them);
 *   - RoPE angles as llama.cpp builds them, in float: pos * s^i by one
 *     multiplication per pair, cosf / sinf (the reference uses double).
 * Together with an F16 KV cache (llama.cpp's default) this reproduces
 * llama.cpp's logits on float32 files to ~1e-9 KL, as llama.cpp computes
 * them without flash attention. Quantized files still differ a little:
 * where an activation sits on a rounding boundary of its 8-bit
 * quantization, last-bit differences in float arithmetic flip it. (The
 * 8-bit activation quantizers are the reference ones in every mode: on the
 * fixtures they reproduce llama.cpp's, e.g. llama-q4_0 matches at all 64
 * positions to 1e-13 KL, while x86 ggml's SIMD variant, 127 / amax and
 * round-half-even, flips 28 of them.)
 *
 * MODEL_COMPAT_FLASH_ATTN (only with MODEL_COMPAT_LLAMACPP) follows
 * llama.cpp's CPU flash-attention kernel instead (its default setting):
 * with an F16 cache the query is rounded to F16 and the weighted sum of
 * values is accumulated in F16 (model_attn_fa.c). A Q8_0 cache keeps the
 * ordinary attention.
 */
enum { MODEL_COMPAT_LLAMACPP = 1, MODEL_COMPAT_FLASH_ATTN = 2 };

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

/*
 * Routing hook: what the router chose for one MoE layer in one step. Called
 * on the thread running model_forward, after the layer's routing and before
 * any expert of it is requested from the store; the pointers are valid only
 * during the call. The hook must not call back into the model.
 *
 * A step is one internal step of a forward call (at most n_batch tokens).
 * With one sequence its tokens are consecutive: token t is at pos + t. A
 * step of model_forward_multi holds the tokens of n_seq sequences, sequence
 * after sequence in the order of the call's seqs (each one's in position
 * order); then pos is -1 and seq / token_pos say where each token belongs.
 * Those two arrays are filled in either case.
 */
typedef struct model_route {
    int layer;
    int pos;              /* position of the step's first token; -1 if n_seq > 1 */
    int n_tokens;         /* tokens in the step */
    int n_expert;         /* experts in the layer */
    int n_used;           /* experts per token (top-k) */
    const int *experts;   /* [n_tokens][n_used] chosen experts, best first */
    const float *weights; /* [n_tokens][n_used] their mixing weights */
    const float *logits;  /* [n_tokens][n_expert] router logits (bias included) */
    int n_seq;            /* sequences with tokens in the step (1 for model_forward) */
    const int *seq;       /* [n_tokens] index into the call's seqs of each token's sequence */
    const int *token_pos; /* [n_tokens] each token's position in its own sequence */
} model_route;

typedef void (*model_route_fn)(void *ctx, const model_route *route);

/* Installs (fn != NULL) or removes the routing hook. */
void model_set_route_hook(model *m, model_route_fn fn, void *ctx);

typedef struct model_state_opts {
    int n_batch; /* most tokens per internal step; 0 = 512 */
} model_state_opts;

/* Scratch for forward steps of up to n_batch tokens; opts may be NULL. One
 * state serves any number of caches, one forward call at a time. */
int model_state_new(const model *m, const model_state_opts *opts, model_state **out, sw_err *err);
void model_state_free(model_state *s);

enum {
    MODEL_LOGITS_LAST = 0, /* logits: [n_vocab] for the last token */
    MODEL_LOGITS_ALL = 1,  /* logits: [n][n_vocab], one row per token */
};

/* Runs tokens[0..n) at positions p..p+n-1, p = kv_cache_pos(kv), and
 * appends them to kv (a cache made for m). logits may be NULL (prefill
 * without output). pool may be NULL. Results do not depend on n_batch, on
 * how the tokens are split across calls, or on the pool's size (bit for
 * bit). On error, positions from the failed internal step on are not part
 * of the sequence (kv_cache_pos). */
int model_forward(model *m, model_state *s, kv_cache *kv, sw_pool *pool, const int32_t *tokens,
                  int n, float *logits, int flags, sw_err *err);

/* One sequence's share of a model_forward_multi call. */
typedef struct model_seq {
    kv_cache *kv;          /* its cache (a cache made for the model) */
    const int32_t *tokens; /* [n] appended at kv_cache_pos(kv).. */
    int n;                 /* >= 1 */
    float *logits;         /* NULL, or as model_forward's for flags */
    int flags;             /* MODEL_LOGITS_* */
} model_seq;

/* Checks what model_forward_multi would refuse about one sequence (no
 * tokens, a token outside the vocabulary, more tokens than its context has
 * room for, another model's cache): 0, or SW_EINVAL with the reason. */
int model_seq_check(const model *m, const model_seq *q, sw_err *err);

/* Runs seqs[0..n_seq) together (design comment above): every sequence's
 * tokens are appended to its own cache, and its logits are exactly those
 * model_forward would give it alone, whatever the other sequences, n_batch
 * or the pool. Each cache may appear once. A call whose tokens exceed
 * n_batch runs as several internal steps, each taking the next n_batch
 * tokens in seqs order (a sequence may be split between steps). Nothing
 * runs if a sequence fails model_seq_check (the message names it); on an
 * error while running, each sequence keeps the positions of the internal
 * steps that completed. */
int model_forward_multi(model *m, model_state *s, sw_pool *pool, const model_seq *seqs, int n_seq,
                        sw_err *err);

#endif
