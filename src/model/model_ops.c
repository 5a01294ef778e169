/*
 * model_ops.c — the small elementwise pieces of a transformer: RMSNorm,
 * rotary position embeddings, gated activations.
 *
 * These are O(width) per token, so they favour exactness over speed: sums
 * of squares and RoPE angles are computed in double, the gated activations
 * with libm's expf.
 */
#include "model/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ops_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + (double)eps);
    if (w)
        for (int i = 0; i < n; i++)
            y[i] = (float)(x[i] * scale * w[i]);
    else
        for (int i = 0; i < n; i++)
            y[i] = (float)(x[i] * scale);
}

/*
 * YaRN's correction dimension: the pair index whose wavelength makes
 * n_rotations turns over the original context.
 */
static double yarn_corr_dim(int n_rot, int n_ctx_orig, double n_rotations, double base)
{
    return n_rot * log(n_ctx_orig / (n_rotations * 2 * M_PI)) / (2 * log(base));
}

/*
 * Per pair i: the base frequency base^(-2i/n_rot), divided by a frequency
 * factor when the model has them (Llama 3), then scaled. Linear scaling
 * multiplies every frequency by freq_scale. YaRN mixes the scaled
 * ("interpolated") and unscaled ("extrapolated") frequency per pair with a
 * ramp over the correction range [low, high]: pairs below low keep their
 * frequency, pairs above high are fully scaled; cos and sin are multiplied
 * by 1 + 0.1 ln(factor). Angles are pos * frequency, which is the same as
 * mixing angles as llama.cpp does.
 */
int ops_rope_init(model *m, sw_err *err)
{
    const model_config *c = &m->cfg;
    const float *ff = m->w.rope_freqs.data;
    int half = c->n_rot / 2;
    m->rope_freq = malloc(sizeof(double) * (size_t)half);
    if (!m->rope_freq)
        return sw_errf(err, SW_ENOMEM, "model: out of memory");
    double low = 0, high = 0;
    bool yarn = c->rope_scaling == ROPE_SCALING_YARN && c->yarn_ext_factor != 0;
    if (yarn) {
        low = yarn_corr_dim(c->n_rot, c->yarn_orig_ctx, c->yarn_beta_fast, c->rope_base);
        high = yarn_corr_dim(c->n_rot, c->yarn_orig_ctx, c->yarn_beta_slow, c->rope_base);
        if (c->arch->yarn_truncate || (m->compat & MODEL_COMPAT_LLAMACPP)) {
            low = floor(low);
            high = ceil(high);
        }
        low = low > 0 ? low : 0;
        high = high < c->n_rot - 1 ? high : c->n_rot - 1;
    }
    for (int i = 0; i < half; i++) {
        double f = pow(c->rope_base, -2.0 * i / c->n_rot);
        if (ff)
            f /= ff[i];
        double scaled = f * c->rope_freq_scale;
        if (yarn) {
            double r = (i - low) / (high - low > 0.001 ? high - low : 0.001);
            double mix = (1 - (r < 0 ? 0 : r > 1 ? 1 : r)) * c->yarn_ext_factor;
            scaled = scaled * (1 - mix) + f * mix;
        }
        m->rope_freq[i] = scaled;
    }
    m->rope_mscale = 1.0;
    if (c->rope_scaling == ROPE_SCALING_YARN) {
        m->rope_mscale = c->yarn_attn_factor;
        if (yarn)
            m->rope_mscale *= 1.0 + 0.1 * log(1.0 / c->rope_freq_scale);
    }
    return 0;
}

void ops_rope_table(const model *m, int pos, float *cs)
{
    int half = m->cfg.n_rot / 2;
    for (int i = 0; i < half; i++) {
        double a = pos * m->rope_freq[i];
        cs[2 * i] = (float)(cos(a) * m->rope_mscale);
        cs[2 * i + 1] = (float)(sin(a) * m->rope_mscale);
    }
}

void ops_rope_apply(float *x, const float *cs, int n_rot, rope_pairing pairing)
{
    int half = n_rot / 2;
    /* pair i is (x[a], x[b]): adjacent (2i, 2i+1) or halves (i, i + half) */
    int step = pairing == ROPE_ADJACENT ? 2 : 1, other = pairing == ROPE_ADJACENT ? 1 : half;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = x + i * step, *b = a + other;
        float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

void ops_glu(ffn_act act, float *g, const float *u, int n, float limit, float alpha)
{
    if (act == ACT_SWIGLU) {
        for (int i = 0; i < n; i++)
            g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        return;
    }
    /* gpt-oss: gate clamped from above, up clamped both ways and offset by one */
    for (int i = 0; i < n; i++) {
        float x = g[i] < limit ? g[i] : limit;
        float y = u[i] < -limit ? -limit : u[i] > limit ? limit : u[i];
        g[i] = x / (1.0f + expf(-alpha * x)) * (y + 1.0f);
    }
}

void ops_row_to_float(const store_tensor *t, int64_t row, float *y)
{
    size_t rb = quant_row_size(t->type, t->ne[0]);
    quant_traits_of(t->type)->to_float((const uint8_t *)t->data + (size_t)row * rb, y, t->ne[0]);
}

void ops_add_rows(float *y, const float *b, int m, int n)
{
    if (!b)
        return;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            y[(size_t)i * n + j] += b[j];
}

/* --- products ------------------------------------------------------------ */

int mat_mul_raw(model_state *s, sw_pool *pool, quant_type t, const void *W, int64_t rows,
                int64_t cols, const float *x, int m, float *y, sw_err *err)
{
    if ((s->m->compat & MODEL_COMPAT_LLAMACPP) && (t == QT_F16 || t == QT_BF16)) {
        size_t n = (size_t)m * (size_t)cols;
        for (size_t i = 0; i < n; i++)
            s->xr[i] = t == QT_F16 ? quant_f16_to_f32(quant_f32_to_f16(x[i]))
                                   : quant_bf16_to_f32(quant_f32_to_bf16(x[i]));
        x = s->xr;
    }
    return quant_matmul(pool, t, W, rows, cols, x, m, y, err);
}

int mat_mul(model_state *s, sw_pool *pool, const store_tensor *w, const float *x, int m, float *y,
            sw_err *err)
{
    int rc = mat_mul_raw(s, pool, w->type, w->data, w->ne[1], w->ne[0], x, m, y, err);
    return rc ? sw_err_prefix(err, "%s", w->name) : 0;
}
