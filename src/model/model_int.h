/*
 * model_int.h — the model's internals, shared by the files of src/model/ only.
 *
 * Three parts, kept apart as in llama2.c's run.c:
 *   model_config   hyperparameters (from GGUF metadata and the arch table)
 *   model_weights  tensors (pointers handed out by the store)
 *   model_state    scratch buffers of one forward step
 * and beside them the kv_cache, one sequence's keys and values.
 *
 * Shapes are written row-major as C arrays: [rows][cols] is GGUF ne
 * {cols, rows}. A weight [out][in] multiplies an activation [in].
 */
#ifndef SW_MODEL_INT_H
#define SW_MODEL_INT_H

#include "model/kv_cache.h"
#include "model/model.h"
#include "model/model_vec.h"
#include "quant/matmul.h"

/* How RoPE pairs the dimensions of a head. */
typedef enum rope_pairing {
    ROPE_ADJACENT, /* (2i, 2i+1): llama.cpp "normal" (llama's Q/K are permuted in GGUF) */
    ROPE_HALVES,   /* (i, i + n_rot/2): NEOX style */
} rope_pairing;

typedef enum rope_scaling {
    ROPE_SCALING_NONE,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_YARN,
} rope_scaling;

/* How the router turns logits into the chosen experts' weights. */
typedef enum moe_gating {
    GATING_SOFTMAX,      /* softmax over all experts, top-k of the probabilities */
    GATING_TOPK_SOFTMAX, /* top-k of the logits, softmax over those k */
} moe_gating;

typedef enum ffn_act {
    ACT_SWIGLU,     /* silu(gate) * up */
    ACT_SWIGLU_OAI, /* gpt-oss: clamped, gate * sigmoid(alpha gate) * (up + 1) */
} ffn_act;

/* What one architecture does differently; one row per GGUF architecture. */
typedef struct arch_desc {
    const char *name;        /* general.architecture */
    rope_pairing rope;
    moe_gating gating;
    bool norm_topk;          /* renormalise the k weights (unless metadata says) */
    ffn_act act;
    int swa_pattern;         /* 0: none; n: layer il slides if il % n < n - 1 */
    bool yarn_truncate;      /* round YaRN's correction range to whole dims */
    const char *ffn_norm;    /* name of the pre-FFN norm, "blk.%d.<this>.weight" */
} arch_desc;

typedef struct model_config {
    const arch_desc *arch;
    int n_vocab;
    int n_embd;        /* residual width */
    int n_layer;
    int n_ctx_train;
    int n_head;        /* query heads */
    int n_head_kv;     /* key/value heads (GQA: n_head is a multiple) */
    int head_dim;      /* per head, queries and keys */
    int head_dim_v;    /* per head, values */
    int n_ff;          /* dense FFN width */
    int n_expert;      /* 0: dense */
    int n_expert_used; /* top-k */
    int n_ff_exp;      /* routed expert width */
    int n_ff_shexp;    /* shared expert width (0: none) */
    bool norm_topk;    /* renormalise the chosen experts' weights to sum 1 */
    float norm_eps;    /* RMSNorm epsilon */
    float attn_scale;  /* query-key scale, 1/sqrt(head_dim) */
    int n_swa;         /* sliding window (positions, including the current) */
    float swiglu_limit, swiglu_alpha; /* ACT_SWIGLU_OAI */
    /* RoPE */
    int n_rot;             /* dims rotated per head (<= head_dim, even) */
    double rope_base;
    double rope_freq_scale;  /* 1 / scaling factor */
    rope_scaling rope_scaling;
    int yarn_orig_ctx;
    double yarn_beta_fast, yarn_beta_slow;
    double yarn_ext_factor;  /* 0 disables the ramp */
    double yarn_attn_factor; /* extra multiplier on the magnitude scale */
} model_config;

typedef struct layer_weights {
    bool is_moe;
    bool is_swa;
    store_tensor attn_norm;  /* [n_embd] */
    store_tensor wq;         /* [n_head * head_dim][n_embd] */
    store_tensor wk;         /* [n_head_kv * head_dim][n_embd] */
    store_tensor wv;         /* [n_head_kv * head_dim_v][n_embd] */
    store_tensor wo;         /* [n_embd][n_head * head_dim_v] */
    store_tensor bq, bk, bv; /* optional: [n_head * head_dim], [n_head_kv * head_dim], ... */
    store_tensor bo;         /* optional: [n_embd] */
    store_tensor q_norm;     /* optional: [head_dim] RMSNorm per head (qwen3) */
    store_tensor k_norm;     /* optional: [head_dim] */
    store_tensor sinks;      /* optional: [n_head] attention sink logits (gpt-oss) */
    store_tensor ffn_norm;   /* [n_embd] */
    /* dense FFN */
    store_tensor ffn_gate;   /* [n_ff][n_embd] */
    store_tensor ffn_up;     /* [n_ff][n_embd] */
    store_tensor ffn_down;   /* [n_embd][n_ff] */
    /* MoE: routed experts come from store_expert() */
    store_tensor router;     /* [n_expert][n_embd] */
    store_tensor router_b;   /* optional: [n_expert] */
    store_tensor gate_exps_b;/* optional: [n_expert][n_ff_exp] */
    store_tensor up_exps_b;  /* optional: [n_expert][n_ff_exp] */
    store_tensor down_exps_b;/* optional: [n_expert][n_embd] */
    /* shared expert (qwen2moe): optional */
    store_tensor gate_shexp; /* [n_ff_shexp][n_embd] */
    store_tensor up_shexp;   /* [n_ff_shexp][n_embd] */
    store_tensor down_shexp; /* [n_embd][n_ff_shexp] */
    store_tensor shexp_gate; /* optional: [n_embd] sigmoid gate of the shared expert */
} layer_weights;

typedef struct model_weights {
    store_tensor tok_embd;    /* [n_vocab][n_embd] */
    store_tensor output_norm; /* [n_embd] */
    store_tensor output;      /* [n_vocab][n_embd] (token_embd when tied) */
    store_tensor rope_freqs;  /* optional: [n_rot / 2] frequency divisors (Llama 3) */
    layer_weights *layers;    /* [n_layer] */
} model_weights;

struct model {
    model_config cfg;
    model_weights w;
    store *st;
    unsigned compat;    /* MODEL_COMPAT_* */
    double *rope_freq;  /* [n_rot / 2] angle per position of each pair (scaling applied) */
    double rope_mscale; /* magnitude scale on cos and sin (YaRN), else 1 */
    model_route_fn route_fn; /* optional routing hook, and its context */
    void *route_ctx;
};

struct kv_cache {
    const model *m;
    quant_type type;
    int n_ctx;             /* positions reserved */
    int pos;               /* positions held */
    int n_layer, n_head_kv;
    size_t row_k, row_v;   /* bytes of one head's key row (head_dim) / value row (head_dim_v) */
    size_t size;           /* bytes of mem */
    uint8_t *mem;          /* everything, layer after layer */
    uint8_t **k;           /* [n_layer] -> [n_head_kv][n_ctx] key rows of row_k bytes */
    uint8_t **v;           /* [n_layer] -> [n_head_kv][n_ctx] value rows of row_v bytes */
    quant_from_float_fn quantize; /* float -> Q8_0 rows */
};

static inline uint8_t *kv_row_k(const kv_cache *kv, int layer, int head, int pos)
{
    return kv->k[layer] + ((size_t)head * kv->n_ctx + (size_t)pos) * kv->row_k;
}

static inline uint8_t *kv_row_v(const kv_cache *kv, int layer, int head, int pos)
{
    return kv->v[layer] + ((size_t)head * kv->n_ctx + (size_t)pos) * kv->row_v;
}

/* Stores n tokens' keys k [n][n_head_kv * head_dim] and values
 * v [n][n_head_kv * head_dim_v] of layer at positions pos..pos+n-1. */
void kv_cache_store(kv_cache *kv, int layer, int pos, int n, const float *k, const float *v);
/* n consecutive cached floats starting at row (rows of one head are
 * consecutive): the row itself for F32, else converted into tmp. */
const float *kv_cache_rows_float(const kv_cache *kv, const uint8_t *row, int n, float *tmp);

/* Experts per token that a one-token MoE step handles in one job. */
#define MODEL_MOE_ONE_MAX 32

/* One sequence's tokens within an internal step of a forward call. */
typedef struct step_part {
    kv_cache *kv;
    const int32_t *tokens; /* [n] */
    int seq;         /* index in the call's seqs */
    int t0, n;       /* its rows [t0, t0 + n) of the step's scratch */
    int pos;         /* position of its first token (kv->pos until the step ends) */
    float *logits;   /* NULL, or [n_out][n_vocab] for its last n_out tokens */
    int n_out;
} step_part;

struct attn_job; /* model_attn.c */

struct model_state {
    const model *m;
    int n_batch;
    /* the step in progress */
    step_part *parts;   /* [parts_cap] its sequences' shares */
    int parts_cap;
    int *tok_seq;       /* [n_batch] each token's sequence (index in the call's seqs) */
    int *tok_pos;       /* [n_batch] and position in it */
    int route_pos;      /* model_route.pos: the first token's, or -1 for several sequences */
    int route_n_seq;    /* model_route.n_seq */
    struct attn_job *att_jobs; /* [parts_cap] attention per sequence */
    float *lg;          /* [lg_rows][n_vocab] logits of several sequences before copying out */
    int lg_rows;
    /* scratch for one step of up to n_batch tokens */
    float *x;        /* [n_batch][n_embd] residual stream */
    float *xn;       /* [n_batch][n_embd] normalised input of a block */
    float *q;        /* [n_batch][n_head * head_dim] */
    float *k;        /* [n_batch][n_head_kv * head_dim] */
    float *v;        /* [n_batch][n_head_kv * head_dim_v] */
    float *att;      /* [n_batch][n_head * head_dim_v] */
    float *out;      /* [n_batch][n_embd] a block's output */
    float *hg;       /* [n_rows][n_ff_max] FFN gate / activation */
    float *hu;       /* [n_rows][n_ff_max] FFN up */
    float *rope_cs;  /* [n_batch][n_rot / 2][2] cos, sin */
    /* MoE */
    float *router;   /* [n_batch][n_expert] logits */
    int *sel;        /* [n_batch][n_expert_used] chosen experts */
    float *sel_w;    /* [n_batch][n_expert_used] their weights */
    int *by_exp;     /* [n_batch * n_expert_used] (token, slot) grouped by expert */
    int *exp_start;  /* [n_expert + 1] offsets into by_exp */
    int *exp_fill;   /* [n_expert] fill cursors while grouping */
    int *exp_list;   /* [n_expert] distinct chosen experts, ascending */
    float *xe;       /* [n_batch][n_embd] tokens gathered for one expert */
    float *ye;       /* [n_rows][n_embd] that expert's outputs (or, decoding, every
                      * chosen expert's); n_rows = max(n_batch, n_expert_used) */
    float *xr;       /* [n_batch][max width] activations rounded for parity mode */
    /* attention */
    int n_thr;
    float *att_tmp;  /* [n_thr][attn_scratch_floats()] per-thread scratch */
    float *att_part; /* [att_part_size] per-segment states of a split step */
    size_t att_part_size;
};

/* --- model_ops.c: elementwise math --------------------------------------- */

/* y = x / rms(x) * w over n (w may be NULL); y may be x. Sums in double. */
void ops_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* The same for m rows of n, threaded over rows when that pays. */
void ops_rmsnorm_rows(sw_pool *pool, float *y, const float *x, const float *w, int m, int n,
                      float eps);
/* Fills m->rope_freq and m->rope_mscale from the configuration (linear or
 * YaRN scaling, Llama 3 frequency factors). */
int ops_rope_init(model *m, sw_err *err);
/* cs[2i], cs[2i+1] = cos, sin of pair i's angle at position pos. */
void ops_rope_table(const model *m, int pos, float *cs);
/* Rotates the first n_rot dims of one head in place. */
void ops_rope_apply(float *x, const float *cs, int n_rot, rope_pairing pairing);
/* g[i] = act(g[i], u[i]) for m rows of n, threaded when that pays. */
void ops_glu(sw_pool *pool, ffn_act act, float *g, const float *u, int m, int n, float limit,
             float alpha);
/* Row `row` of a 2-D tensor [rows][n] of any computable type to float. */
void ops_row_to_float(const store_tensor *t, int64_t row, float *y);
/* y[i][j] += b[j] for m rows of n (b may be NULL: nothing). */
void ops_add_rows(float *y, const float *b, int m, int n);

/* --- model_attn.c --------------------------------------------------------- */

/* Floats of per-thread scratch attention needs. */
size_t attn_scratch_floats(const model_config *c);
/* Bytes of one entry of s->att_jobs. */
size_t attn_job_size(void);
/* Self-attention of one layer for the step's parts (s->q/k/v rows of each
 * at its cache's position): stores each part's K/V in its cache, writes
 * s->att. All parts' tasks run as one pool job. */
int attn_layer(model_state *s, sw_pool *pool, int layer, const step_part *parts, int n_parts,
               sw_err *err);
/* model_attn_fa.c: one part's attention (its K/V already stored) as
 * llama.cpp's CPU flash attention computes it, for MODEL_COMPAT_FLASH_ATTN
 * with an F16/F32 cache. */
int attn_fa_layer(model_state *s, sw_pool *pool, int layer, const step_part *p, sw_err *err);

/* --- model_ffn.c ---------------------------------------------------------- */

/* s->out = FFN(s->xn) for n tokens (dense, or MoE plus shared expert). */
int ffn_layer(const model *m, model_state *s, sw_pool *pool, int layer, int n, sw_err *err);

/* --- model_ops.c: products ----------------------------------------------- */

/* y[m][rows] = W x[m][cols] for W [rows][cols] of type t (quant_matmul; in
 * llama.cpp-parity mode F16/BF16 weights see activations rounded to F16/BF16
 * first, as llama.cpp's kernels do). */
int mat_mul_raw(model_state *s, sw_pool *pool, quant_type t, const void *W, int64_t rows,
                int64_t cols, const float *x, int m, float *y, sw_err *err);
/* One product of mat_vec_multi: y[rows] = W x, W [rows][cols] of type. */
typedef struct mv_item {
    quant_type type;
    const void *W;
    int64_t rows, cols;
    const float *x; /* [cols] */
    float *y;       /* [rows] */
} mv_item;

/* items[0..n) as one pool job (row spans of every matrix as its tasks);
 * results equal mat_mul_raw's with m = 1, bit for bit. */
int mat_vec_multi(model_state *s, sw_pool *pool, const mv_item *items, int n, sw_err *err);
/* The same for a resident 2-D tensor. */
int mat_mul(model_state *s, sw_pool *pool, const store_tensor *w, const float *x, int m, float *y,
            sw_err *err);

#endif
