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
 * cache (conversation); nothing is allocated per token.
 *
 * Several sequences (model_forward_multi; model_forward is the case of
 * one): a step's rows are the tokens of its parts — each a run of one
 * sequence's tokens at that sequence's positions — one after another.
 * Embedding, norms, every product and the FFN (MoE routing included) see
 * only rows; RoPE takes each row's own position; attention takes each part
 * against its own cache (attn_layer); each part's cache advances when the
 * step ends, and the rows that want logits share one product with the
 * output matrix.
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
    free(s->lg);
    free(s->parts);
    free(s->att_jobs);
    free(s->tok_seq);
    free(s->tok_pos);
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
    s->tok_seq = malloc(sizeof(int) * B);
    s->tok_pos = malloc(sizeof(int) * B);
    ok &= s->tok_seq && s->tok_pos;
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

/* Rows of s->lg (grows only). */
static int ensure_lg(model_state *s, int rows, sw_err *err)
{
    if (s->lg_rows >= rows)
        return 0;
    float *p = realloc(s->lg, sizeof(float) * (size_t)rows * (size_t)s->m->cfg.n_vocab);
    if (!p)
        return sw_errf(err, SW_ENOMEM, "model state: out of memory for logits");
    s->lg = p;
    s->lg_rows = rows;
    return 0;
}

/* Rows of logits computed together when several sequences want some. */
#define OUT_ROWS 64

/* The logits the parts want: the final norm of their last n_out rows, then
 * one product with the output matrix. One part's go straight to its
 * buffer; several parts' rows are gathered, multiplied OUT_ROWS at a time
 * into s->lg and copied out. */
static int output_logits(model *m, model_state *s, sw_pool *pool, const step_part *parts,
                         int n_parts, sw_err *err)
{
    const model_config *c = &m->cfg;
    int D = c->n_embd, V = c->n_vocab, n_out = 0, n_with = 0, only = -1;
    for (int i = 0; i < n_parts; i++)
        if (parts[i].n_out) {
            n_out += parts[i].n_out;
            n_with++;
            only = i;
        }
    if (!n_with)
        return 0;
    for (int i = 0, row = 0; i < n_parts; i++) {
        const step_part *p = &parts[i];
        if (!p->n_out)
            continue;
        const float *last = s->x + (size_t)(p->t0 + p->n - p->n_out) * D;
        ops_rmsnorm_rows(pool, s->xn + (size_t)row * D, last, m->w.output_norm.data, p->n_out, D,
                         c->norm_eps);
        row += p->n_out;
    }
    if (n_with == 1)
        return mat_mul(s, pool, &m->w.output, s->xn, n_out, parts[only].logits, err);
    int rc = ensure_lg(s, n_out < OUT_ROWS ? n_out : OUT_ROWS, err);
    if (rc)
        return rc;
    int pi = 0, pr = 0; /* the part and its row the next copied row belongs to */
    for (int r0 = 0; r0 < n_out; r0 += OUT_ROWS) {
        int nr = n_out - r0 < OUT_ROWS ? n_out - r0 : OUT_ROWS;
        if ((rc = mat_mul(s, pool, &m->w.output, s->xn + (size_t)r0 * D, nr, s->lg, err)))
            return rc;
        for (int r = 0; r < nr; r++) {
            while (pr == parts[pi].n_out) {
                pi++;
                pr = 0;
            }
            memcpy(parts[pi].logits + (size_t)pr * V, s->lg + (size_t)r * V, sizeof(float) * V);
            pr++;
        }
    }
    return 0;
}

/* One internal step: the parts' n <= n_batch tokens, rows in parts order,
 * through every block; then each part's cache advances and its logits (if
 * any) are computed. */
static int forward_step(model *m, model_state *s, sw_pool *pool, const step_part *parts,
                        int n_parts, int n, sw_err *err)
{
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    int D = c->n_embd, rc;
    for (int i = 0; i < n_parts; i++) {
        const step_part *p = &parts[i];
        for (int t = 0; t < p->n; t++) {
            int row = p->t0 + t;
            ops_row_to_float(&w->tok_embd, p->tokens[t], s->x + (size_t)row * D);
            ops_rope_table(m, p->pos + t, s->rope_cs + (size_t)row * c->n_rot);
            s->tok_seq[row] = p->seq;
            s->tok_pos[row] = p->pos + t;
        }
    }
    s->route_pos = n_parts == 1 ? parts[0].pos : -1;
    s->route_n_seq = n_parts;
    for (int il = 0; il < c->n_layer; il++) {
        const layer_weights *L = &w->layers[il];
        ops_rmsnorm_rows(pool, s->xn, s->x, L->attn_norm.data, n, D, c->norm_eps);
        if ((rc = qkv_layer(m, s, pool, L, n, err)))
            return rc;
        if ((rc = attn_layer(s, pool, il, parts, n_parts, err)))
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
    for (int i = 0; i < n_parts; i++)
        parts[i].kv->pos += parts[i].n;
    return output_logits(m, s, pool, parts, n_parts, err);
}

int model_seq_check(const model *m, const model_seq *q, sw_err *err)
{
    const model_config *c = &m->cfg;
    if (q->n <= 0)
        return sw_errf(err, SW_EINVAL, "forward: no tokens");
    if (!q->kv)
        return sw_errf(err, SW_EINVAL, "forward: no KV cache");
    if (q->kv->m != m)
        return sw_errf(err, SW_EINVAL, "forward: the KV cache belongs to another model");
    if (q->n > q->kv->n_ctx - q->kv->pos)
        return sw_errf(err, SW_EINVAL, "forward: %d tokens at position %d exceed the context of %d",
                       q->n, q->kv->pos, q->kv->n_ctx);
    for (int i = 0; i < q->n; i++)
        if (q->tokens[i] < 0 || q->tokens[i] >= c->n_vocab)
            return sw_errf(err, SW_EINVAL, "forward: token %d (at %d) is not in the vocabulary "
                           "of %d", q->tokens[i], i, c->n_vocab);
    return 0;
}

/* Room for n parts in s->parts and s->att_jobs (grows only). */
static int ensure_parts(model_state *s, int n, sw_err *err)
{
    if (s->parts_cap >= n)
        return 0;
    step_part *p = realloc(s->parts, sizeof *p * (size_t)n);
    if (p)
        s->parts = p;
    void *j = p ? realloc(s->att_jobs, attn_job_size() * (size_t)n) : NULL;
    if (!j)
        return sw_errf(err, SW_ENOMEM, "model state: out of memory");
    s->att_jobs = j;
    s->parts_cap = n;
    return 0;
}

static int check_call(model *m, model_state *s, const model_seq *seqs, int n_seq, sw_err *err)
{
    if (n_seq <= 0)
        return sw_errf(err, SW_EINVAL, "forward: no sequences");
    if (s->m != m)
        return sw_errf(err, SW_EINVAL, "forward: the state belongs to another model");
    for (int i = 0; i < n_seq; i++) {
        int rc = model_seq_check(m, &seqs[i], err);
        if (rc)
            return n_seq > 1 ? sw_err_prefix(err, "sequence %d", i) : rc;
        for (int k = 0; k < i; k++)
            if (seqs[k].kv == seqs[i].kv)
                return sw_errf(err, SW_EINVAL, "forward: sequences %d and %d share a KV cache",
                               k, i);
    }
    return 0;
}

/* The store's wait hook during a forward call: a wait for an expert read
 * parks the pool, whose workers would otherwise spin through it. */
static void park_pool(void *pool)
{
    sw_pool_park(pool);
}

/*
 * Internal steps: the call's tokens, sequence after sequence, cut every
 * n_batch tokens. A step's part of sequence i starts at token `from` of it;
 * a part wants logits for the rows that are its sequence's outputs (all
 * rows with MODEL_LOGITS_ALL, else the sequence's last token if it falls
 * in this step).
 */
int model_forward_multi(model *m, model_state *s, sw_pool *pool, const model_seq *seqs, int n_seq,
                        sw_err *err)
{
    int rc = check_call(m, s, seqs, n_seq, err);
    if (rc || (rc = ensure_att_tmp(s, sw_pool_size(pool), err)) ||
        (rc = ensure_parts(s, n_seq, err)))
        return rc;
    store_set_wait_hook(m->st, park_pool, pool);
    int V = m->cfg.n_vocab, si = 0, from = 0;
    while (si < n_seq && !rc) {
        int n = 0, n_parts = 0;
        while (si < n_seq && n < s->n_batch) {
            const model_seq *q = &seqs[si];
            int take = q->n - from < s->n_batch - n ? q->n - from : s->n_batch - n;
            step_part *p = &s->parts[n_parts];
            *p = (step_part){q->kv, q->tokens + from, si, n, take, q->kv->pos, NULL, 0};
            n_parts++;
            if (q->logits && (q->flags & MODEL_LOGITS_ALL)) {
                p->logits = q->logits + (size_t)from * V;
                p->n_out = take;
            } else if (q->logits && from + take == q->n) {
                p->logits = q->logits;
                p->n_out = 1;
            }
            n += take;
            from += take;
            if (from == q->n) {
                si++;
                from = 0;
            }
        }
        rc = forward_step(m, s, pool, s->parts, n_parts, n, err);
    }
    store_set_wait_hook(m->st, NULL, NULL);
    return rc;
}

int model_forward(model *m, model_state *s, kv_cache *kv, sw_pool *pool, const int32_t *tokens,
                  int n, float *logits, int flags, sw_err *err)
{
    model_seq q = {kv, tokens, n, logits, flags};
    return model_forward_multi(m, s, pool, &q, 1, err);
}
