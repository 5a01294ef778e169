/*
 * model_attn.c — causal self-attention over the KV cache.
 *
 * One task per (token, query head), handed out by the pool. A task scores
 * its query against every visible cached key (all earlier positions, or
 * the last n_swa on sliding-window layers), takes the softmax (with the
 * head's sink logit in the denominator when the model has sinks), and sums
 * the values. Scores are dot products accumulated in double; the softmax's
 * normaliser too. Each task reads only the cache and writes only its own
 * output slice, so the result does not depend on threads or batching.
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

struct attn_job {
    model_state *s;
    const layer_weights *L;
    int layer, n, n_tok_heads;
};

/* A cached row as floats: in place for F32, converted into tmp for F16. */
static inline const float *kv_row(const uint8_t *p, quant_type t, int n, float *tmp)
{
    if (t == QT_F32)
        return (const float *)p;
    const uint16_t *h = (const uint16_t *)p;
    for (int i = 0; i < n; i++)
        tmp[i] = quant_f16_to_f32(h[i]);
    return tmp;
}

static void kv_store(uint8_t *dst, quant_type t, const float *x, int n)
{
    if (t == QT_F32) {
        memcpy(dst, x, sizeof(float) * (size_t)n);
        return;
    }
    uint16_t *h = (uint16_t *)dst;
    for (int i = 0; i < n; i++)
        h[i] = quant_f32_to_f16(x[i]);
}

static void attn_task(void *arg, int task, int n_tasks, int thread)
{
    const struct attn_job *j = arg;
    model_state *s = j->s;
    const model_config *c = &s->m->cfg;
    int t = task / c->n_head, h = task % c->n_head;
    int hd = c->head_dim, hdv = c->head_dim_v;
    int g = h / (c->n_head / c->n_head_kv); /* the KV head this query head reads */
    int p = s->pos + t;
    int lo = j->L->is_swa && p - c->n_swa + 1 > 0 ? p - c->n_swa + 1 : 0;

    float *scores = s->att_tmp + (size_t)thread * (s->n_ctx + 2 * (hd > hdv ? hd : hdv));
    float *tmp = scores + s->n_ctx;
    const float *q = s->q + ((size_t)t * c->n_head + h) * hd;
    const uint8_t *kc = s->k_cache[j->layer], *vc = s->v_cache[j->layer];
    size_t elt = s->kv_type == QT_F32 ? 4 : 2;

    double mx = -INFINITY;
    for (int i = lo; i <= p; i++) {
        const float *k = kv_row(kc + (size_t)i * s->kv_row_k + (size_t)g * hd * elt, s->kv_type,
                                hd, tmp);
        double d = 0;
        for (int e = 0; e < hd; e++)
            d += (double)q[e] * k[e];
        d *= c->attn_scale;
        scores[i - lo] = (float)d;
        mx = d > mx ? d : mx;
    }
    const float *sinks = j->L->sinks.data;
    double sink = sinks ? sinks[h] : -INFINITY;
    mx = sink > mx ? sink : mx;
    double sum = sinks ? exp(sink - mx) : 0;
    for (int i = lo; i <= p; i++) {
        double e = exp(scores[i - lo] - mx);
        scores[i - lo] = (float)e;
        sum += e;
    }

    float *out = s->att + ((size_t)t * c->n_head + h) * hdv;
    memset(out, 0, sizeof(float) * (size_t)hdv);
    float inv = (float)(1.0 / sum);
    for (int i = lo; i <= p; i++) {
        const float *v = kv_row(vc + (size_t)i * s->kv_row_v + (size_t)g * hdv * elt, s->kv_type,
                                hdv, tmp);
        float w = scores[i - lo] * inv;
        for (int e = 0; e < hdv; e++)
            out[e] += w * v[e];
    }
}

void attn_layer(model_state *s, sw_pool *pool, int layer, int n)
{
    const model_config *c = &s->m->cfg;
    int nk = c->n_head_kv * c->head_dim, nv = c->n_head_kv * c->head_dim_v;
    for (int t = 0; t < n; t++) {
        kv_store(s->k_cache[layer] + (size_t)(s->pos + t) * s->kv_row_k, s->kv_type,
                 s->k + (size_t)t * nk, nk);
        kv_store(s->v_cache[layer] + (size_t)(s->pos + t) * s->kv_row_v, s->kv_type,
                 s->v + (size_t)t * nv, nv);
    }
    struct attn_job j = {s, &s->m->w.layers[layer], layer, n, n * c->n_head};
    sw_pool_run(pool, attn_task, &j, j.n_tok_heads);
}
