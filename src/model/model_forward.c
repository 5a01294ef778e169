/*
 * model_forward.c — step scratch (model_state) and the forward pass.
 *
 * A step takes up to n_batch tokens through every block:
 *
 *   x  = embed(tokens)
 *   per layer:
 *     h  = rmsnorm(x) * attn_norm
 *     q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *     q, k  = rope(qk_norm(q), qk_norm(k))        per head
 *     x += attention(q, K cache, V cache) Wo (+bo)
 *     h  = rmsnorm(x) * ffn_norm
 *     x += ffn(h)                                  dense or MoE
 *   logits = (rmsnorm(x) * output_norm) Wout
 *
 * Longer inputs are cut into steps; the KV cache carries what came before.
 * The state holds only scratch, sized by n_batch, so one state serves every
 * cache (conversation) in turn; nothing is allocated per token.
 */
#include "model/model_int.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 512
#define MAX_BATCH 65536

static int max3(int a, int b, int c)
{
    int m = a > b ? a : b;
    return m > c ? m : c;
}

void model_state_free(model_state *s)
{
    if (!s)
        return;
    float *bufs[] = {s->x,   s->xn, s->q,      s->k,      s->v,     s->att, s->out,
                     s->hg,  s->hu, s->rope_cs, s->router, s->sel_w, s->xe,  s->ye,
                     s->xr, s->att_tmp, s->att_part};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(s->sel);
    free(s->by_exp);
    free(s->exp_start);
    free(s->exp_fill);
    free(s->exp_list);
    free(s);
}

static float *falloc(size_t rows, size_t cols, bool *ok)
{
    size_t n = rows * cols;
    float *p = malloc(sizeof(float) * (n ? n : 1));
    *ok &= p != NULL;
    return p;
}

int model_state_new(const model *m, const model_state_opts *o, model_state **out, sw_err *err)
{
    *out = NULL;
    const model_config *c = &m->cfg;
    int nb = o && o->n_batch ? o->n_batch : DEFAULT_BATCH;
    if (nb <= 0 || nb > MAX_BATCH)
        return sw_errf(err, SW_EINVAL, "model state: bad n_batch %d", nb);
    model_state *s = calloc(1, sizeof *s);
    if (!s)
        return sw_errf(err, SW_ENOMEM, "model state: out of memory");
    s->m = m;
    s->n_batch = nb;

    bool ok = true;
    size_t B = (size_t)s->n_batch, D = (size_t)c->n_embd;
    size_t F = (size_t)max3(c->n_ff, c->n_ff_exp, c->n_ff_shexp);
    size_t E = (size_t)c->n_expert, K = (size_t)c->n_expert_used;
    s->x = falloc(B, D, &ok);
    s->xn = falloc(B, D, &ok);
    s->q = falloc(B, (size_t)c->n_head * c->head_dim, &ok);
    s->k = falloc(B, (size_t)c->n_head_kv * c->head_dim, &ok);
    s->v = falloc(B, (size_t)c->n_head_kv * c->head_dim_v, &ok);
    s->att = falloc(B, (size_t)c->n_head * c->head_dim_v, &ok);
    s->out = falloc(B, D, &ok);
    size_t R = B > K ? B : K; /* a one-token MoE step keeps every chosen expert's rows */
    s->hg = falloc(R, F, &ok);
    s->hu = falloc(R, F, &ok);
    s->rope_cs = falloc(B, (size_t)c->n_rot, &ok);
    if (E) {
        s->router = falloc(B, E, &ok);
        s->sel_w = falloc(B, K, &ok);
        s->xe = falloc(B, D, &ok);
        s->sel = malloc(sizeof(int) * B * K);
        s->by_exp = malloc(sizeof(int) * B * K);
        s->exp_start = malloc(sizeof(int) * (E + 1));
        s->exp_fill = malloc(sizeof(int) * E);
        s->exp_list = malloc(sizeof(int) * E);
        ok &= s->sel && s->by_exp && s->exp_start && s->exp_fill && s->exp_list;
    }
    s->ye = falloc(R, D, &ok); /* routed experts' and shared expert's output */
    if (m->compat & MODEL_COMPAT_LLAMACPP)
        s->xr = falloc(B, (size_t)max3(c->n_embd, (int)F, c->n_head * c->head_dim_v), &ok);
    if (!ok) {
        model_state_free(s);
        return sw_errf(err, SW_ENOMEM, "model state: out of memory (n_batch %d)", nb);
    }
    *out = s;
    return 0;
}

void model_set_route_hook(model *m, model_route_fn fn, void *ctx)
{
    m->route_fn = fn;
    m->route_ctx = fn ? ctx : NULL;
}

/* Per-thread attention scratch for a pool of n threads (grows only). */
static int ensure_att_tmp(model_state *s, int n, sw_err *err)
{
    if (s->n_thr >= n)
        return 0;
    float *p = realloc(s->att_tmp, sizeof(float) * attn_scratch_floats(&s->m->cfg) * (size_t)n);
    if (!p)
        return sw_errf(err, SW_ENOMEM, "model state: out of memory");
    s->att_tmp = p;
    s->n_thr = n;
    return 0;
}

/* Tokens below which QK-norm and RoPE stay on the calling thread. */
#define QK_PAR_MIN_TOKENS 8

struct qk_job {
    const model *m;
    model_state *s;
    const layer_weights *L;
};

/* QK-norm (if any) and RoPE of token t's query and key heads. */
static void qk_token(void *arg, int t, int n, int thread)
{
    const struct qk_job *j = arg;
    const model_config *c = &j->m->cfg;
    const layer_weights *L = j->L;
    int hd = c->head_dim;
    const float *cs = j->s->rope_cs + (size_t)t * c->n_rot;
    for (int h = 0; h < c->n_head; h++) {
        float *q = j->s->q + ((size_t)t * c->n_head + h) * hd;
        if (L->q_norm.data)
            ops_rmsnorm(q, q, L->q_norm.data, hd, c->norm_eps);
        ops_rope_apply(q, cs, c->n_rot, c->arch->rope);
    }
    for (int h = 0; h < c->n_head_kv; h++) {
        float *k = j->s->k + ((size_t)t * c->n_head_kv + h) * hd;
        if (L->k_norm.data)
            ops_rmsnorm(k, k, L->k_norm.data, hd, c->norm_eps);
        ops_rope_apply(k, cs, c->n_rot, c->arch->rope);
    }
}

/* q, k, v of n tokens from s->xn: projections, biases, QK-norm, RoPE. */
static int qkv_layer(const model *m, model_state *s, sw_pool *pool, const layer_weights *L, int n,
                     sw_err *err)
{
    const model_config *c = &m->cfg;
    int hd = c->head_dim, nq = c->n_head * hd, nk = c->n_head_kv * hd;
    int nv = c->n_head_kv * c->head_dim_v;
    int rc;
    if (n == 1) { /* decode: the three products in one job */
        mv_item it[3] = {{L->wq.type, L->wq.data, nq, c->n_embd, s->xn, s->q},
                         {L->wk.type, L->wk.data, nk, c->n_embd, s->xn, s->k},
                         {L->wv.type, L->wv.data, nv, c->n_embd, s->xn, s->v}};
        if ((rc = mat_vec_multi(s, pool, it, 3, err)))
            return sw_err_prefix(err, "%s", L->wq.name);
    } else if ((rc = mat_mul(s, pool, &L->wq, s->xn, n, s->q, err)) ||
               (rc = mat_mul(s, pool, &L->wk, s->xn, n, s->k, err)) ||
               (rc = mat_mul(s, pool, &L->wv, s->xn, n, s->v, err)))
        return rc;
    ops_add_rows(s->q, L->bq.data, n, nq);
    ops_add_rows(s->k, L->bk.data, n, nk);
    ops_add_rows(s->v, L->bv.data, n, nv);
    struct qk_job j = {m, s, L};
    if (n < QK_PAR_MIN_TOKENS)
        for (int t = 0; t < n; t++)
            qk_token(&j, t, n, 0);
    else
        sw_pool_run(pool, qk_token, &j, n);
    return 0;
}

static void add_residual(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* One step of n <= n_batch tokens. logits: [n_out][n_vocab] for the last
 * n_out tokens of the step (n_out may be 0). */
static int forward_step(model *m, model_state *s, sw_pool *pool, const int32_t *tokens, int n,
                        float *logits, int n_out, sw_err *err)
{
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    int D = c->n_embd, rc;
    int pos = s->kv->pos;
    for (int t = 0; t < n; t++) {
        ops_row_to_float(&w->tok_embd, tokens[t], s->x + (size_t)t * D);
        ops_rope_table(m, pos + t, s->rope_cs + (size_t)t * c->n_rot);
    }
    for (int il = 0; il < c->n_layer; il++) {
        const layer_weights *L = &w->layers[il];
        ops_rmsnorm_rows(pool, s->xn, s->x, L->attn_norm.data, n, D, c->norm_eps);
        if ((rc = qkv_layer(m, s, pool, L, n, err)))
            return rc;
        if ((rc = attn_layer(s, pool, il, n, err)))
            return rc;
        if ((rc = mat_mul(s, pool, &L->wo, s->att, n, s->out, err)))
            return rc;
        ops_add_rows(s->out, L->bo.data, n, D);
        add_residual(s->x, s->out, (size_t)n * D);

        ops_rmsnorm_rows(pool, s->xn, s->x, L->ffn_norm.data, n, D, c->norm_eps);
        if ((rc = ffn_layer(m, s, pool, il, n, err)))
            return rc;
        add_residual(s->x, s->out, (size_t)n * D);
    }
    s->kv->pos += n;
    if (!n_out)
        return 0;
    const float *last = s->x + (size_t)(n - n_out) * D;
    ops_rmsnorm_rows(pool, s->xn, last, w->output_norm.data, n_out, D, c->norm_eps);
    return mat_mul(s, pool, &w->output, s->xn, n_out, logits, err);
}

int model_forward(model *m, model_state *s, kv_cache *kv, sw_pool *pool, const int32_t *tokens,
                  int n, float *logits, int flags, sw_err *err)
{
    const model_config *c = &m->cfg;
    if (n <= 0)
        return sw_errf(err, SW_EINVAL, "forward: no tokens");
    if (kv->m != m || s->m != m)
        return sw_errf(err, SW_EINVAL, "forward: the KV cache or state belongs to another model");
    if (n > kv->n_ctx - kv->pos)
        return sw_errf(err, SW_EINVAL, "forward: %d tokens at position %d exceed the context of %d",
                       n, kv->pos, kv->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return sw_errf(err, SW_EINVAL, "forward: token %d (at %d) is not in the vocabulary "
                           "of %d", tokens[i], i, c->n_vocab);
    int rc = ensure_att_tmp(s, sw_pool_size(pool), err);
    if (rc)
        return rc;
    s->kv = kv;
    for (int off = 0; off < n && !rc; off += s->n_batch) {
        int nb = n - off < s->n_batch ? n - off : s->n_batch;
        int last_step = off + nb == n;
        float *out = NULL;
        int n_out = 0;
        if (logits && (flags & MODEL_LOGITS_ALL)) {
            out = logits + (size_t)off * c->n_vocab;
            n_out = nb;
        } else if (logits && last_step) {
            out = logits;
            n_out = 1;
        }
        rc = forward_step(m, s, pool, tokens + off, nb, out, n_out, err);
    }
    s->kv = NULL;
    return rc;
}
