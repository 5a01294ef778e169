/*
 * model_load.c — from GGUF metadata and tensor names to a model description.
 *
 * The architecture table below is the only place a family is named. Reading
 * goes: find the family, read its hyperparameters (with the family's
 * defaults where the metadata is silent), then bind every tensor by name and
 * check its shape against the hyperparameters, so the forward pass can trust
 * every size it multiplies with.
 *
 * Adding a family: a row in k_archs when it differs only in switches the
 * table has; optional tensors (bound with T_VEC/T_MAT and no T_REQ) for new
 * pieces that are simply absent elsewhere. Families in view and what they
 * need: olmoe (QK-norm over the whole projection: q_norm of n_head *
 * head_dim, applied before the per-head split), glm4moe and deepseek2/3
 * (sigmoid gating with a per-expert selection bias, expert_weights_scale,
 * leading dense layers, which already work since a layer is MoE exactly
 * when it has a router), gemma3 (post-attention and post-FFN norms,
 * embedding scaled by sqrt(n_embd), a second RoPE base for local layers),
 * deepseek2/3 (MLA: a separate attention variant over compressed KV, chosen
 * per model in model_forward.c, with its own cache layout).
 */
#include "model/model_int.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const arch_desc k_archs[] = {
    /* name       rope           gating          norm_topk act      swa yarn_trunc ffn_norm */
    {"llama",    ROPE_ADJACENT, GATING_SOFTMAX, true,  ACT_SWIGLU, 0, true, "ffn_norm"},
    {"qwen2",    ROPE_HALVES,   GATING_SOFTMAX, false, ACT_SWIGLU, 0, true, "ffn_norm"},
    {"qwen3",    ROPE_HALVES,   GATING_SOFTMAX, false, ACT_SWIGLU, 0, true, "ffn_norm"},
    {"qwen2moe", ROPE_HALVES,   GATING_SOFTMAX, false, ACT_SWIGLU, 0, true, "ffn_norm"},
    {"qwen3moe", ROPE_HALVES,   GATING_SOFTMAX, true,  ACT_SWIGLU, 0, true, "ffn_norm"},
    /* gpt-oss: the reference YaRN does not round the correction range, and
     * its pre-FFN norm is stored as post_attention_norm. */
    {"gpt-oss",  ROPE_HALVES,   GATING_TOPK_SOFTMAX, true, ACT_SWIGLU_OAI, 2, false,
     "post_attention_norm"},
};
#define N_ARCHS (int)(sizeof k_archs / sizeof k_archs[0])

/* Sanity bounds: far above any real model, low enough that products of two
 * of them fit comfortably in int64 and one in int. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_EXPERTS 4096

static char g_arch_list[256];
static pthread_once_t g_arch_once = PTHREAD_ONCE_INIT;

static void arch_list_init(void)
{
    size_t used = 0;
    for (int i = 0; i < N_ARCHS && used < sizeof g_arch_list; i++)
        used += (size_t)snprintf(g_arch_list + used, sizeof g_arch_list - used, "%s%s",
                                 i ? ", " : "", k_archs[i].name);
}

const char *model_supported_archs(void)
{
    pthread_once(&g_arch_once, arch_list_init);
    return g_arch_list;
}

/* --- metadata ------------------------------------------------------------ */

struct meta {
    const gguf_ctx *g;
    const char *arch;
    char key[256];
};

static const char *meta_key(struct meta *md, const char *suffix)
{
    snprintf(md->key, sizeof md->key, "%s.%s", md->arch, suffix);
    return md->key;
}

/* "<arch>.<suffix>" as an int in [lo, hi]; def when absent (def < 0: required). */
static int meta_int(struct meta *md, const char *suffix, int def, int lo, int hi, int *out,
                    sw_err *err)
{
    const char *key = meta_key(md, suffix);
    uint32_t v;
    int rc = gguf_get_u32(md->g, key, &v, err);
    if (rc == SW_ENOTFOUND && def >= 0) {
        *out = def;
        return 0;
    }
    if (rc)
        return rc == SW_ENOTFOUND ? sw_errf(err, rc, "metadata '%s' is missing", key) : rc;
    if ((int64_t)v < lo || (int64_t)v > hi)
        return sw_errf(err, SW_EFORMAT, "metadata '%s' = %u is out of range [%d, %d]", key, v, lo,
                       hi);
    *out = (int)v;
    return 0;
}

static int meta_float(struct meta *md, const char *suffix, double def, double *out, sw_err *err)
{
    const char *key = meta_key(md, suffix);
    float v;
    int rc = gguf_get_f32(md->g, key, &v, err);
    if (rc == SW_ENOTFOUND && !isnan(def)) {
        *out = def;
        return 0;
    }
    if (rc)
        return rc == SW_ENOTFOUND ? sw_errf(err, rc, "metadata '%s' is missing", key) : rc;
    if (!isfinite(v))
        return sw_errf(err, SW_EFORMAT, "metadata '%s' is not finite", key);
    *out = v;
    return 0;
}

static int load_rope(struct meta *md, model_config *c, sw_err *err)
{
    int rc;
    if ((rc = meta_int(md, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->n_rot, err)))
        return rc;
    if (c->n_rot % 2)
        return sw_errf(err, SW_EFORMAT, "rope.dimension_count %d is odd", c->n_rot);
    if ((rc = meta_float(md, "rope.freq_base", 10000.0, &c->rope_base, err)))
        return rc;
    if (c->rope_base <= 1.0)
        return sw_errf(err, SW_EFORMAT, "rope.freq_base %g must exceed 1", c->rope_base);

    double factor;
    if ((rc = meta_float(md, "rope.scaling.factor", 0.0, &factor, err)))
        return rc;
    if (factor == 0.0 && (rc = meta_float(md, "rope.scale_linear", 0.0, &factor, err)))
        return rc;
    const char *type = NULL;
    gguf_get_str(md->g, meta_key(md, "rope.scaling.type"), &type, NULL);
    c->rope_scaling = ROPE_SCALING_NONE;
    c->rope_freq_scale = 1.0;
    if (type && !strcmp(type, "yarn"))
        c->rope_scaling = ROPE_SCALING_YARN;
    else if ((type && !strcmp(type, "linear")) || (!type && factor > 0))
        c->rope_scaling = ROPE_SCALING_LINEAR;
    else if (type && strcmp(type, "none"))
        return sw_errf(err, SW_EUNSUPPORTED, "RoPE scaling type '%s' is not supported", type);
    if (c->rope_scaling != ROPE_SCALING_NONE) {
        if (factor < 1.0)
            return sw_errf(err, SW_EFORMAT, "rope.scaling.factor %g must be at least 1", factor);
        c->rope_freq_scale = 1.0 / factor;
    }
    if (c->rope_scaling == ROPE_SCALING_YARN) {
        if ((rc = meta_int(md, "rope.scaling.original_context_length", c->n_ctx_train, 1,
                           1 << 30, &c->yarn_orig_ctx, err)) ||
            (rc = meta_float(md, "rope.scaling.yarn_beta_fast", 32.0, &c->yarn_beta_fast, err)) ||
            (rc = meta_float(md, "rope.scaling.yarn_beta_slow", 1.0, &c->yarn_beta_slow, err)) ||
            (rc = meta_float(md, "rope.scaling.yarn_ext_factor", 1.0, &c->yarn_ext_factor, err)) ||
            (rc = meta_float(md, "rope.scaling.attn_factor", 1.0, &c->yarn_attn_factor, err)))
            return rc;
        if (c->yarn_orig_ctx <= 0)
            return sw_errf(err, SW_EFORMAT, "YaRN needs rope.scaling.original_context_length");
    }
    return 0;
}

static int load_moe(struct meta *md, model_config *c, sw_err *err)
{
    int rc;
    if ((rc = meta_int(md, "expert_count", 0, 0, MAX_EXPERTS, &c->n_expert, err)) ||
        (rc = meta_int(md, "expert_used_count", 0, 0, MAX_EXPERTS, &c->n_expert_used, err)) ||
        (rc = meta_int(md, "expert_feed_forward_length", 0, 0, MAX_DIM, &c->n_ff_exp, err)) ||
        (rc = meta_int(md, "expert_shared_feed_forward_length", 0, 0, MAX_DIM, &c->n_ff_shexp,
                       err)))
        return rc;
    if (c->n_expert && (c->n_expert_used < 1 || c->n_expert_used > c->n_expert))
        return sw_errf(err, SW_EFORMAT, "expert_used_count %d must be in [1, expert_count %d]",
                       c->n_expert_used, c->n_expert);
    c->norm_topk = c->arch->norm_topk;
    bool b;
    if (gguf_get_bool(md->g, meta_key(md, "expert_weights_norm"), &b, NULL) == 0)
        c->norm_topk = b;
    return 0;
}

static int load_config(const gguf_ctx *g, model_config *c, sw_err *err)
{
    const char *name;
    int rc = gguf_get_str(g, "general.architecture", &name, err);
    if (rc)
        return sw_errf(err, rc, "general.architecture is missing or not a string");
    for (int i = 0; i < N_ARCHS; i++)
        if (!strcmp(name, k_archs[i].name))
            c->arch = &k_archs[i];
    if (!c->arch)
        return sw_errf(err, SW_EUNSUPPORTED,
                       "architecture '%s' is not supported (supported: %s)", name,
                       model_supported_archs());

    struct meta md = {.g = g, .arch = name};
    double eps;
    if ((rc = meta_int(&md, "block_count", -1, 1, MAX_LAYERS, &c->n_layer, err)) ||
        (rc = meta_int(&md, "embedding_length", -1, 1, MAX_DIM, &c->n_embd, err)) ||
        (rc = meta_int(&md, "feed_forward_length", 0, 0, MAX_DIM, &c->n_ff, err)) ||
        (rc = meta_int(&md, "context_length", 0, 0, 1 << 30, &c->n_ctx_train, err)) ||
        (rc = meta_int(&md, "attention.head_count", -1, 1, MAX_DIM, &c->n_head, err)))
        return rc;
    if ((rc = meta_int(&md, "attention.head_count_kv", c->n_head, 1, c->n_head, &c->n_head_kv,
                       err)) ||
        (rc = meta_int(&md, "attention.key_length", c->n_embd / c->n_head, 1, MAX_DIM,
                       &c->head_dim, err)) ||
        (rc = meta_int(&md, "attention.value_length", c->head_dim, 1, MAX_DIM, &c->head_dim_v,
                       err)) ||
        (rc = meta_float(&md, "attention.layer_norm_rms_epsilon", NAN, &eps, err)) ||
        (rc = meta_int(&md, "attention.sliding_window", 0, 0, 1 << 30, &c->n_swa, err)))
        return rc;
    if (c->n_head % c->n_head_kv)
        return sw_errf(err, SW_EFORMAT, "head_count %d is not a multiple of head_count_kv %d",
                       c->n_head, c->n_head_kv);
    if ((int64_t)c->n_head * c->head_dim > MAX_DIM || c->head_dim % 2)
        return sw_errf(err, SW_EFORMAT, "bad attention shape: %d heads of %d", c->n_head,
                       c->head_dim);
    if (eps <= 0 || eps > 1)
        return sw_errf(err, SW_EFORMAT, "layer_norm_rms_epsilon %g is not in (0, 1]", eps);
    c->norm_eps = (float)eps;
    c->attn_scale = (float)(1.0 / sqrt((double)c->head_dim));
    c->swiglu_limit = 7.0f; /* gpt-oss's values; the file does not carry them */
    c->swiglu_alpha = 1.702f;
    if ((rc = load_rope(&md, c, err)) || (rc = load_moe(&md, c, err)))
        return rc;
    return meta_int(&md, "vocab_size", 0, 0, 1 << 30, &c->n_vocab, err);
}

/* --- tensors ------------------------------------------------------------- */

enum {
    T_REQ = 1, /* must exist */
    T_VEC = 2, /* float32 data read directly (norms, biases, sinks) */
    T_MAT = 4, /* multiplied through quant_matmul: needs kernels */
};

/* Binds tensor fmt(layer) into *t and checks its shape is [ne1][ne0]. */
static int bind(store *st, store_tensor *t, int flags, int64_t ne0, int64_t ne1, sw_err *err,
                const char *fmt, int layer)
{
    char name[128];
    snprintf(name, sizeof name, fmt, layer);
    int rc = (flags & T_REQ) ? store_tensor_get(st, name, t, err)
                             : store_tensor_opt(st, name, t, err);
    if (rc || !t->data)
        return rc;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return sw_errf(err, SW_EFORMAT,
                       "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)ne0, (long long)ne1);
    if ((flags & T_VEC) && t->type != QT_F32)
        return sw_errf(err, SW_EUNSUPPORTED, "tensor '%s' is %s; spillway expects F32 here",
                       name, quant_name(t->type));
    if (flags & T_MAT) {
        const quant_traits *tr = quant_traits_of(t->type);
        if (!tr->to_float || !quant_kernels_get()->vec_dot[t->type])
            return sw_errf(err, SW_EUNSUPPORTED,
                           "tensor '%s' is %s, a type spillway cannot compute with yet", name,
                           tr->name);
        if (ne0 % tr->blck)
            return sw_errf(err, SW_EFORMAT, "tensor '%s': rows of %lld are not whole %s blocks",
                           name, (long long)ne0, tr->name);
    }
    return 0;
}

/* Checks one 3-D expert tensor [n_expert][rows][cols] before binding it. */
static int check_exps(store *st, const char *name, int64_t cols, int64_t rows, int n_expert,
                      sw_err *err)
{
    const gguf_tensor *t = gguf_find_tensor(store_gguf(st), name);
    if (!t)
        return sw_errf(err, SW_ENOTFOUND, "tensor '%s' is missing from the file", name);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n_expert || t->ne[3] != 1)
        return sw_errf(err, SW_EFORMAT,
                       "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %d]", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)cols, (long long)rows, n_expert);
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr || !tr->to_float || !quant_kernels_get()->vec_dot[t->type])
        return sw_errf(err, SW_EUNSUPPORTED,
                       "tensor '%s' is %s, a type spillway cannot compute with yet", name,
                       quant_name(t->type));
    return 0;
}

static int bind_moe(model *m, int il, layer_weights *L, sw_err *err)
{
    model_config *c = &m->cfg;
    store *st = m->st;
    int rc, E = c->n_expert, D = c->n_embd;
    if (!E)
        return sw_errf(err, SW_EFORMAT, "layer %d has a router but expert_count is 0", il);
    char gate[96], up[96], down[96];
    snprintf(gate, sizeof gate, "blk.%d.ffn_gate_exps.weight", il);
    snprintf(up, sizeof up, "blk.%d.ffn_up_exps.weight", il);
    snprintf(down, sizeof down, "blk.%d.ffn_down_exps.weight", il);
    const gguf_tensor *tu = gguf_find_tensor(store_gguf(st), up);
    if (!tu)
        return sw_errf(err, SW_ENOTFOUND, "tensor '%s' is missing from the file", up);
    if (!c->n_ff_exp)
        c->n_ff_exp = tu->ne[1] > 0 && tu->ne[1] <= MAX_DIM ? (int)tu->ne[1] : 0;
    int F = c->n_ff_exp;
    if ((rc = check_exps(st, gate, D, F, E, err)) || (rc = check_exps(st, up, D, F, E, err)) ||
        (rc = check_exps(st, down, F, D, E, err)) ||
        (rc = store_bind_experts(st, il, gate, up, down, err)))
        return rc;
    if ((rc = bind(st, &L->router, T_REQ | T_MAT, D, E, err, "blk.%d.ffn_gate_inp.weight", il)) ||
        (rc = bind(st, &L->router_b, T_VEC, E, 1, err, "blk.%d.ffn_gate_inp.bias", il)) ||
        (rc = bind(st, &L->gate_exps_b, T_VEC, F, E, err, "blk.%d.ffn_gate_exps.bias", il)) ||
        (rc = bind(st, &L->up_exps_b, T_VEC, F, E, err, "blk.%d.ffn_up_exps.bias", il)) ||
        (rc = bind(st, &L->down_exps_b, T_VEC, D, E, err, "blk.%d.ffn_down_exps.bias", il)))
        return rc;

    /* shared expert (its width from the tensor when metadata is silent) */
    char shexp[96];
    snprintf(shexp, sizeof shexp, "blk.%d.ffn_up_shexp.weight", il);
    const gguf_tensor *ts = gguf_find_tensor(store_gguf(st), shexp);
    if (!ts)
        return 0;
    if (!c->n_ff_shexp && ts->ne[1] > 0 && ts->ne[1] <= MAX_DIM)
        c->n_ff_shexp = (int)ts->ne[1];
    int S = c->n_ff_shexp;
    if ((rc = bind(st, &L->gate_shexp, T_REQ | T_MAT, D, S, err, "blk.%d.ffn_gate_shexp.weight",
                   il)) ||
        (rc = bind(st, &L->up_shexp, T_REQ | T_MAT, D, S, err, "blk.%d.ffn_up_shexp.weight", il)) ||
        (rc = bind(st, &L->down_shexp, T_REQ | T_MAT, S, D, err, "blk.%d.ffn_down_shexp.weight",
                   il)) ||
        (rc = bind(st, &L->shexp_gate, T_VEC, D, 1, err, "blk.%d.ffn_gate_inp_shexp.weight", il)))
        return rc;
    return 0;
}

static int bind_layer(model *m, int il, sw_err *err)
{
    const model_config *c = &m->cfg;
    layer_weights *L = &m->w.layers[il];
    store *st = m->st;
    int rc, D = c->n_embd;
    int64_t nq = (int64_t)c->n_head * c->head_dim, nk = (int64_t)c->n_head_kv * c->head_dim;
    int64_t nv = (int64_t)c->n_head_kv * c->head_dim_v, no = (int64_t)c->n_head * c->head_dim_v;
    char ffn_norm[64];
    snprintf(ffn_norm, sizeof ffn_norm, "blk.%%d.%s.weight", c->arch->ffn_norm);

    if ((rc = bind(st, &L->attn_norm, T_REQ | T_VEC, D, 1, err, "blk.%d.attn_norm.weight", il)) ||
        (rc = bind(st, &L->wq, T_REQ | T_MAT, D, nq, err, "blk.%d.attn_q.weight", il)) ||
        (rc = bind(st, &L->wk, T_REQ | T_MAT, D, nk, err, "blk.%d.attn_k.weight", il)) ||
        (rc = bind(st, &L->wv, T_REQ | T_MAT, D, nv, err, "blk.%d.attn_v.weight", il)) ||
        (rc = bind(st, &L->wo, T_REQ | T_MAT, no, D, err, "blk.%d.attn_output.weight", il)) ||
        (rc = bind(st, &L->bq, T_VEC, nq, 1, err, "blk.%d.attn_q.bias", il)) ||
        (rc = bind(st, &L->bk, T_VEC, nk, 1, err, "blk.%d.attn_k.bias", il)) ||
        (rc = bind(st, &L->bv, T_VEC, nv, 1, err, "blk.%d.attn_v.bias", il)) ||
        (rc = bind(st, &L->bo, T_VEC, D, 1, err, "blk.%d.attn_output.bias", il)) ||
        (rc = bind(st, &L->q_norm, T_VEC, c->head_dim, 1, err, "blk.%d.attn_q_norm.weight", il)) ||
        (rc = bind(st, &L->k_norm, T_VEC, c->head_dim, 1, err, "blk.%d.attn_k_norm.weight", il)) ||
        (rc = bind(st, &L->sinks, T_VEC, c->n_head, 1, err, "blk.%d.attn_sinks.weight", il)) ||
        (rc = bind(st, &L->ffn_norm, T_REQ | T_VEC, D, 1, err, ffn_norm, il)))
        return rc;

    int pat = c->arch->swa_pattern;
    L->is_swa = c->n_swa > 0 && pat > 0 && il % pat < pat - 1;

    char router[64];
    snprintf(router, sizeof router, "blk.%d.ffn_gate_inp.weight", il);
    L->is_moe = gguf_find_tensor(store_gguf(st), router) != NULL;
    if (L->is_moe)
        return bind_moe(m, il, L, err);
    if (!c->n_ff)
        return sw_errf(err, SW_EFORMAT, "layer %d is dense but feed_forward_length is missing", il);
    if ((rc = bind(st, &L->ffn_gate, T_REQ | T_MAT, D, c->n_ff, err, "blk.%d.ffn_gate.weight",
                   il)) ||
        (rc = bind(st, &L->ffn_up, T_REQ | T_MAT, D, c->n_ff, err, "blk.%d.ffn_up.weight", il)) ||
        (rc = bind(st, &L->ffn_down, T_REQ | T_MAT, c->n_ff, D, err, "blk.%d.ffn_down.weight",
                   il)))
        return rc;
    return 0;
}

static int bind_model(model *m, sw_err *err)
{
    model_config *c = &m->cfg;
    model_weights *w = &m->w;
    store *st = m->st;
    int rc = store_tensor_get(st, "token_embd.weight", &w->tok_embd, err);
    if (rc)
        return rc;
    if (!c->n_vocab)
        c->n_vocab = w->tok_embd.ne[1] > 0 && w->tok_embd.ne[1] < (1 << 30)
                         ? (int)w->tok_embd.ne[1]
                         : 0;
    const quant_traits *te = quant_traits_of(w->tok_embd.type);
    if (!te->to_float)
        return sw_errf(err, SW_EUNSUPPORTED, "token_embd.weight is %s, which cannot be read",
                       te->name);
    if ((rc = bind(st, &w->tok_embd, T_REQ, c->n_embd, c->n_vocab, err, "token_embd.weight", 0)) ||
        (rc = bind(st, &w->output_norm, T_REQ | T_VEC, c->n_embd, 1, err, "output_norm.weight",
                   0)) ||
        (rc = bind(st, &w->output, T_MAT, c->n_embd, c->n_vocab, err, "output.weight", 0)) ||
        (rc = bind(st, &w->rope_freqs, T_VEC, c->n_rot / 2, 1, err, "rope_freqs.weight", 0)))
        return rc;
    if (!w->output.data) { /* tied embeddings */
        if ((rc = bind(st, &w->output, T_REQ | T_MAT, c->n_embd, c->n_vocab, err,
                       "token_embd.weight", 0)))
            return rc;
    }
    w->layers = calloc((size_t)c->n_layer, sizeof *w->layers);
    if (!w->layers)
        return sw_errf(err, SW_ENOMEM, "model: out of memory");
    for (int il = 0; il < c->n_layer; il++)
        if ((rc = bind_layer(m, il, err)))
            return rc;
    return 0;
}

int model_load(store *st, const model_opts *opts, model **out, sw_err *err)
{
    *out = NULL;
    quant_init();
    model *m = calloc(1, sizeof *m);
    if (!m)
        return sw_errf(err, SW_ENOMEM, "model: out of memory");
    m->st = st;
    m->compat = opts ? opts->compat : 0;
    if ((m->compat & ~(unsigned)(MODEL_COMPAT_LLAMACPP | MODEL_COMPAT_FLASH_ATTN)) ||
        (m->compat & MODEL_COMPAT_FLASH_ATTN && !(m->compat & MODEL_COMPAT_LLAMACPP))) {
        unsigned bad = m->compat;
        free(m);
        return sw_errf(err, SW_EINVAL, "model: bad compat flags %#x (flash attention parity "
                       "goes with llama.cpp parity)", bad);
    }
    int rc = load_config(store_gguf(st), &m->cfg, err);
    if (!rc)
        rc = bind_model(m, err);
    if (!rc)
        rc = ops_rope_init(m, err);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void model_free(model *m)
{
    if (!m)
        return;
    free(m->w.layers);
    free(m->rope_freq);
    free(m);
}

void model_get_info(const model *m, model_info *info)
{
    const model_config *c = &m->cfg;
    *info = (model_info){
        .arch = c->arch->name,
        .n_vocab = c->n_vocab,
        .n_embd = c->n_embd,
        .n_layer = c->n_layer,
        .n_ctx_train = c->n_ctx_train,
        .n_expert = c->n_expert,
        .n_expert_used = c->n_expert_used,
    };
}
