/*
 * model_attn_fa.c — attention as llama.cpp's CPU flash-attention kernel
 * computes it (MODEL_COMPAT_FLASH_ATTN, a parity mode: model.h).
 *
 * llama.cpp runs attention one of two ways. Without flash attention it
 * multiplies the cached keys and values as matrices, and on the fixture
 * models that matches spillway's own attention (model_attn.c) to float
 * rounding. With flash attention (its default, "auto", wherever the CPU
 * backend is used) it rounds more: for an F16 cache
 *   - the query is rounded to F16 (the cache's dot-product type), then each
 *     score is dot(q16, k) in float, summed in double here (ggml's scalar
 *     F16 dot sums in double; its SIMD ones in float lanes — either way the
 *     score is exact to float rounding), times the scale;
 *   - positions are visited in order with an online softmax, and the
 *     weighted sum of values is kept in an F16 buffer: on a new maximum the
 *     buffer is scaled by exp(old - new) and rounded to F16, then v * w is
 *     added with one fused multiply-add and rounded to F16 again;
 *   - the weight sum is S = S * ms + vs (fused, as compilers contract it),
 *     and the result is the F16 buffer as float times 1 / S;
 *   - an attention sink (gpt-oss) is folded in after the loop, in float.
 * The F16 accumulation costs about 2^-11 relative per step, enough to move
 * a trained model's near-tied logits (tinymoe's "Tom and his dog" picks ","
 * over " we" by 0.03 only this way). An F32 cache keeps the query and the
 * buffer in float (the same steps without rounding).
 *
 * Every (token, head) is one task and depends only on its own position, so
 * results are the same for any batch split or thread count.
 */
#include "model/model_int.h"

#include <math.h>

/* Widest head this file handles (its per-task buffers live on the stack). */
#define FA_MAX_HEAD 1024

struct fa_job {
    model_state *s;
    const kv_cache *kv;
    const layer_weights *L;
    int layer, pos;
    const float *q; /* [n][n_head * head_dim] the part's queries */
    float *att;     /* [n][n_head * head_dim_v] its output rows */
    bool f16; /* F16 cache: round the query and the value buffer to F16 */
};

static inline float round_f16(float x)
{
    return quant_f16_to_f32(quant_f32_to_f16(x));
}

/* acc[j] = round(acc[j] * a) for j < n (rounded to F16 when f16). */
static void scale_acc(float *acc, float a, int n, bool f16)
{
    for (int j = 0; j < n; j++)
        acc[j] = f16 ? round_f16(acc[j] * a) : acc[j] * a;
}

/* acc[j] = round(fma(v[j], w, acc[j])) for j < n. */
static void mad_acc(float *acc, const float *v, float w, int n, bool f16)
{
    for (int j = 0; j < n; j++)
        acc[j] = f16 ? round_f16(fmaf(v[j], w, acc[j])) : fmaf(v[j], w, acc[j]);
}

/* Query t, head h of the part: its attention output row. */
static void fa_task(void *arg, int task, int n_tasks, int thread)
{
    const struct fa_job *j = arg;
    const model_config *c = &j->s->m->cfg;
    const model_vec *vk = model_vec_get();
    int hd = c->head_dim, hdv = c->head_dim_v;
    int t = task / c->n_head, h = task % c->n_head, g = h / (c->n_head / c->n_head_kv);
    int p = j->pos + t;
    int lo = j->L->is_swa && p - c->n_swa + 1 > 0 ? p - c->n_swa + 1 : 0;
    float q[FA_MAX_HEAD], kf[FA_MAX_HEAD], vf[FA_MAX_HEAD], acc[FA_MAX_HEAD];

    const float *q32 = j->q + ((size_t)t * c->n_head + h) * hd;
    for (int i = 0; i < hd; i++)
        q[i] = j->f16 ? round_f16(q32[i]) : q32[i];
    for (int i = 0; i < hdv; i++)
        acc[i] = 0;
    float S = 0, M = -INFINITY;
    for (int ic = lo; ic <= p; ic++) {
        const float *k = kv_cache_rows_float(j->kv, kv_row_k(j->kv, j->layer, g, ic), hd, kf);
        double dot = 0;
        for (int i = 0; i < hd; i++)
            dot += (double)(q[i] * k[i]);
        float sc = (float)dot * c->attn_scale;
        float ms = 1.0f, vs = 1.0f;
        if (sc > M) { /* a new maximum: rescale what is summed so far */
            ms = expf(M - sc);
            M = sc;
            scale_acc(acc, ms, hdv, j->f16);
        } else {
            vs = expf(sc - M);
        }
        const float *v = kv_cache_rows_float(j->kv, kv_row_v(j->kv, j->layer, g, ic), hdv, vf);
        mad_acc(acc, v, vs, hdv, j->f16);
        S = fmaf(S, ms, vs);
    }
    const float *sinks = j->L->sinks.data;
    if (sinks) {
        float ss = sinks[h];
        if (ss > M) {
            float ms = expf(M - ss);
            scale_acc(acc, ms, hdv, false);
            S = fmaf(S, ms, 1.0f);
        } else {
            S += expf(ss - M);
        }
    }
    float *out = j->att + ((size_t)t * c->n_head + h) * hdv;
    for (int i = 0; i < hdv; i++)
        out[i] = acc[i];
    vk->scale(out, S == 0.0f ? 0.0f : 1.0f / S, hdv);
}

int attn_fa_layer(model_state *s, sw_pool *pool, int layer, const step_part *p, sw_err *err)
{
    const model_config *c = &s->m->cfg;
    if (c->head_dim > FA_MAX_HEAD || c->head_dim_v > FA_MAX_HEAD)
        return sw_errf(err, SW_EUNSUPPORTED,
                       "flash-attention parity mode: heads of %d / %d exceed %d", c->head_dim,
                       c->head_dim_v, FA_MAX_HEAD);
    struct fa_job j = {s,
                       p->kv,
                       &s->m->w.layers[layer],
                       layer,
                       p->pos,
                       s->q + (size_t)p->t0 * c->n_head * c->head_dim,
                       s->att + (size_t)p->t0 * c->n_head * c->head_dim_v,
                       kv_cache_type(p->kv) == QT_F16};
    sw_pool_run(pool, fa_task, &j, p->n * c->n_head);
    return 0;
}
