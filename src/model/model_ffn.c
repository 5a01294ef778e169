/*
 * model_ffn.c — the feed-forward half of a block: dense gated FFN, or a
 * Mixture of Experts with an optional shared expert.
 *
 * MoE over a batch of n tokens, as llama.cpp's mul_mat_id does it:
 *   1. router logits for every token, then each token's top-k experts and
 *      their weights (gating per architecture);
 *   2. tokens grouped by expert (a counting sort); the route hook sees the
 *      choice, and the store is told the whole set of chosen experts
 *      (store_expert_plan) before the first of them is requested;
 *   3. each chosen expert's matrices are fetched from the store once and
 *      multiplied with all of its tokens in one matrix-matrix product (a
 *      one-token step instead sends all experts' products out together,
 *      moe_one_token);
 *   4. each token's output is the weighted sum of its experts' outputs,
 *      added in ascending expert order whatever the batch, so a batch gives
 *      the same sums as one token at a time.
 * Experts nobody chose are never touched.
 *
 * Read-ahead hint (decoding, streaming store only): before layer L's plan,
 * the residual stream (after L's attention) is normalised with the next MoE
 * layer's FFN norm and passed through that layer's router; its top-k goes
 * to the store as a guess (store_expert_hint), which a streaming store
 * reads ahead while L computes. The residual changes little from one layer
 * to the next, so the guess is often right; it only decides what is
 * cached, never what is computed.
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

/* out = down(act(gate x, up x)) for n rows of x; uses s->hg, s->hu. */
static int ffn_dense(const model_config *c, model_state *s, sw_pool *pool, const store_tensor *gate,
                     const store_tensor *up, const store_tensor *down, const float *x, int n,
                     float *out, sw_err *err)
{
    int rc, F = (int)up->ne[1];
    if (n == 1) { /* decode: both products in one job */
        mv_item it[2] = {{gate->type, gate->data, F, gate->ne[0], x, s->hg},
                         {up->type, up->data, F, up->ne[0], x, s->hu}};
        if ((rc = mat_vec_multi(s, pool, it, 2, err)))
            return sw_err_prefix(err, "%s", up->name);
    } else if ((rc = mat_mul(s, pool, gate, x, n, s->hg, err)) ||
               (rc = mat_mul(s, pool, up, x, n, s->hu, err)))
        return rc;
    ops_glu(pool, c->arch->act, s->hg, s->hu, n, F, c->swiglu_limit, c->swiglu_alpha);
    return mat_mul(s, pool, down, s->hg, n, out, err);
}

/* Picks token's k experts from its router logits r[n_expert] into sel/w. */
static void route_token(const model_config *c, const float *r, int *sel, float *w)
{
    int E = c->n_expert, K = c->n_expert_used;
    /* top-k by logit (ties to the lower index), by insertion into sel[0..k)
     * kept in descending order; softmax is monotonic, so this is also the
     * top-k by probability */
    int have = 0;
    for (int e = 0; e < E; e++) {
        if (have == K && !(r[e] > r[sel[K - 1]]))
            continue;
        int i = have < K ? have++ : K - 1;
        while (i > 0 && r[e] > r[sel[i - 1]]) {
            sel[i] = sel[i - 1];
            i--;
        }
        sel[i] = e;
    }
    /* GATING_SOFTMAX: probabilities over all experts, renormalised over the
     * k when asked; GATING_TOPK_SOFTMAX: softmax over the k logits, which is
     * the same as renormalising. */
    bool renorm = c->arch->gating == GATING_TOPK_SOFTMAX || c->norm_topk;
    double mx = r[sel[0]], sum = 0, ksum = 0;
    for (int e = 0; e < E && !renorm; e++)
        sum += exp(r[e] - mx);
    for (int k = 0; k < K; k++)
        ksum += exp(r[sel[k]] - mx);
    for (int k = 0; k < K; k++)
        w[k] = (float)(exp(r[sel[k]] - mx) / (renorm ? ksum : sum));
}

/* Groups (token, slot) pairs by expert: s->exp_start[e]..[e+1] index
 * s->by_exp. Lists the distinct experts chosen in s->exp_list, ascending,
 * and returns their count. */
static int group_by_expert(const model_config *c, model_state *s, int n)
{
    int E = c->n_expert, K = c->n_expert_used;
    memset(s->exp_start, 0, sizeof(int) * (size_t)(E + 1));
    for (int i = 0; i < n * K; i++)
        s->exp_start[s->sel[i] + 1]++;
    for (int e = 0; e < E; e++)
        s->exp_start[e + 1] += s->exp_start[e];
    int *fill = s->exp_fill;
    memcpy(fill, s->exp_start, sizeof(int) * (size_t)E);
    for (int i = 0; i < n * K; i++) /* i = token * K + slot, in token order */
        s->by_exp[fill[s->sel[i]]++] = i;
    int n_chosen = 0;
    for (int e = 0; e < E; e++)
        if (s->exp_start[e + 1] > s->exp_start[e])
            s->exp_list[n_chosen++] = e;
    return n_chosen;
}

/* Runs expert e on its tokens and adds the weighted results to s->out. */
static int run_expert(const model *m, model_state *s, sw_pool *pool, int il, int e, sw_err *err)
{
    const model_config *c = &m->cfg;
    const layer_weights *L = &m->w.layers[il];
    int D = c->n_embd, F = c->n_ff_exp, K = c->n_expert_used;
    const int *items = s->by_exp + s->exp_start[e];
    int cnt = s->exp_start[e + 1] - s->exp_start[e];
    store_mat g, u, d;
    int rc = store_expert(m->st, il, e, &g, &u, &d, err);
    if (rc)
        return rc;
    for (int i = 0; i < cnt; i++)
        memcpy(s->xe + (size_t)i * D, s->xn + (size_t)(items[i] / K) * D, sizeof(float) * D);
    if ((rc = mat_mul_raw(s, pool, g.type, g.data, F, D, s->xe, cnt, s->hg, err)) ||
        (rc = mat_mul_raw(s, pool, u.type, u.data, F, D, s->xe, cnt, s->hu, err)))
        goto done;
    if (L->gate_exps_b.data)
        ops_add_rows(s->hg, (const float *)L->gate_exps_b.data + (size_t)e * F, cnt, F);
    if (L->up_exps_b.data)
        ops_add_rows(s->hu, (const float *)L->up_exps_b.data + (size_t)e * F, cnt, F);
    ops_glu(pool, c->arch->act, s->hg, s->hu, cnt, F, c->swiglu_limit, c->swiglu_alpha);
    if ((rc = mat_mul_raw(s, pool, d.type, d.data, D, F, s->hg, cnt, s->ye, err)))
        goto done;
    if (L->down_exps_b.data)
        ops_add_rows(s->ye, (const float *)L->down_exps_b.data + (size_t)e * D, cnt, D);
    for (int i = 0; i < cnt; i++)
        model_vec_get()->axpy(s->out + (size_t)(items[i] / K) * D, s->sel_w[items[i]],
                              s->ye + (size_t)i * D, D);
done:
    store_expert_release(m->st, il, e);
    if (rc)
        sw_err_prefix(err, "layer %d expert %d", il, e);
    return rc;
}

/*
 * A step of one token: every chosen expert multiplies the same row, so all
 * their gate and up products go out as one pool job and all their down
 * products as a second (mat_vec_multi), instead of three jobs per expert.
 * The chosen experts are held from the store together, at most
 * n_expert_used of them. The arithmetic is run_expert's with one token, so
 * the bits are the same as in a batch.
 */
static int moe_one_token(const model *m, model_state *s, sw_pool *pool, int il, int n_chosen,
                         sw_err *err)
{
    const model_config *c = &m->cfg;
    const layer_weights *L = &m->w.layers[il];
    int D = c->n_embd, F = c->n_ff_exp, rc = 0, held = 0;
    store_mat g, u, d;
    mv_item gu[2 * MODEL_MOE_ONE_MAX] = {{0}}, dn[MODEL_MOE_ONE_MAX] = {{0}};
    for (; held < n_chosen; held++) {
        int e = s->exp_list[held];
        if ((rc = store_expert(m->st, il, e, &g, &u, &d, err))) {
            sw_err_prefix(err, "layer %d expert %d", il, e);
            goto done;
        }
        float *hg = s->hg + (size_t)held * F, *hu = s->hu + (size_t)held * F;
        gu[2 * held] = (mv_item){g.type, g.data, F, D, s->xn, hg};
        gu[2 * held + 1] = (mv_item){u.type, u.data, F, D, s->xn, hu};
        dn[held] = (mv_item){d.type, d.data, D, F, hg, s->ye + (size_t)held * D};
    }
    if ((rc = mat_vec_multi(s, pool, gu, 2 * n_chosen, err)))
        goto fail;
    for (int i = 0; i < n_chosen; i++) {
        int e = s->exp_list[i];
        if (L->gate_exps_b.data)
            ops_add_rows(s->hg + (size_t)i * F, (const float *)L->gate_exps_b.data + (size_t)e * F,
                         1, F);
        if (L->up_exps_b.data)
            ops_add_rows(s->hu + (size_t)i * F, (const float *)L->up_exps_b.data + (size_t)e * F,
                         1, F);
    }
    ops_glu(pool, c->arch->act, s->hg, s->hu, n_chosen, F, c->swiglu_limit, c->swiglu_alpha);
    if ((rc = mat_vec_multi(s, pool, dn, n_chosen, err)))
        goto fail;
    memset(s->out, 0, sizeof(float) * (size_t)D);
    for (int i = 0; i < n_chosen; i++) { /* ascending expert order, as in a batch */
        int e = s->exp_list[i];
        float *y = s->ye + (size_t)i * D;
        if (L->down_exps_b.data)
            ops_add_rows(y, (const float *)L->down_exps_b.data + (size_t)e * D, 1, D);
        model_vec_get()->axpy(s->out, s->sel_w[s->by_exp[s->exp_start[e]]], y, D);
    }
    goto done;
fail:
    sw_err_prefix(err, "layer %d experts", il);
done:
    for (int i = 0; i < held; i++)
        store_expert_release(m->st, il, s->exp_list[i]);
    return rc;
}

/* The hint above, for one token. Uses s->xe (row 0) and s->router, free
 * once layer il has routed and before its experts run. */
static int hint_next_layer(const model *m, model_state *s, sw_pool *pool, int il, sw_err *err)
{
    const model_config *c = &m->cfg;
    int next = il + 1, K = c->n_expert_used, E = c->n_expert;
    while (next < c->n_layer && !m->w.layers[next].is_moe)
        next++;
    if (next >= c->n_layer || K > MODEL_MOE_ONE_MAX || !store_wants_hints(m->st))
        return 0;
    const layer_weights *N = &m->w.layers[next];
    ops_rmsnorm(s->xe, s->x, N->ffn_norm.data, c->n_embd, c->norm_eps);
    int rc = mat_mul(s, pool, &N->router, s->xe, 1, s->router, err);
    if (rc)
        return rc;
    ops_add_rows(s->router, N->router_b.data, 1, E);
    int sel[MODEL_MOE_ONE_MAX];
    float w[MODEL_MOE_ONE_MAX];
    route_token(c, s->router, sel, w);
    store_expert_hint(m->st, next, sel, K);
    return 0;
}

static int ffn_moe(const model *m, model_state *s, sw_pool *pool, int il, int n, sw_err *err)
{
    const model_config *c = &m->cfg;
    const layer_weights *L = &m->w.layers[il];
    int D = c->n_embd, E = c->n_expert, K = c->n_expert_used;
    int rc = mat_mul(s, pool, &L->router, s->xn, n, s->router, err);
    if (rc)
        return rc;
    ops_add_rows(s->router, L->router_b.data, n, E);
    for (int t = 0; t < n; t++)
        route_token(c, s->router + (size_t)t * E, s->sel + (size_t)t * K,
                    s->sel_w + (size_t)t * K);
    int n_chosen = group_by_expert(c, s, n);
    if (m->route_fn) {
        model_route r = {il, s->route_pos, n, E, K, s->sel, s->sel_w, s->router,
                         s->route_n_seq, s->tok_seq, s->tok_pos};
        m->route_fn(m->route_ctx, &r);
    }
    if (n == 1 && (rc = hint_next_layer(m, s, pool, il, err)))
        return rc;
    if ((rc = store_expert_plan(m->st, il, s->exp_list, n_chosen, err)))
        return sw_err_prefix(err, "layer %d", il);

    if (n == 1 && n_chosen <= MODEL_MOE_ONE_MAX) {
        if ((rc = moe_one_token(m, s, pool, il, n_chosen, err)))
            return rc;
    } else {
        memset(s->out, 0, sizeof(float) * (size_t)n * D);
        for (int i = 0; i < n_chosen; i++)
            if ((rc = run_expert(m, s, pool, il, s->exp_list[i], err)))
                return rc;
    }

    if (!L->up_shexp.data)
        return 0;
    /* shared expert, on every token, scaled by its sigmoid gate if any */
    if ((rc = ffn_dense(c, s, pool, &L->gate_shexp, &L->up_shexp, &L->down_shexp, s->xn, n, s->ye,
                        err)))
        return rc;
    const float *gw = L->shexp_gate.data;
    for (int t = 0; t < n; t++) {
        const float *x = s->xn + (size_t)t * D, *y = s->ye + (size_t)t * D;
        float *o = s->out + (size_t)t * D;
        float gate = 1.0f;
        if (gw) {
            double dot = 0;
            for (int j = 0; j < D; j++)
                dot += (double)x[j] * gw[j];
            gate = (float)(1.0 / (1.0 + exp(-dot)));
        }
        for (int j = 0; j < D; j++)
            o[j] += gate * y[j];
    }
    return 0;
}

int ffn_layer(const model *m, model_state *s, sw_pool *pool, int layer, int n, sw_err *err)
{
    const layer_weights *L = &m->w.layers[layer];
    if (L->is_moe)
        return ffn_moe(m, s, pool, layer, n, err);
    return ffn_dense(&m->cfg, s, pool, &L->ffn_gate, &L->ffn_up, &L->ffn_down, s->xn, n, s->out,
                     err);
}
