/*
 * model_ops.c — the small elementwise pieces of a transformer: RMSNorm,
 * rotary position embeddings, gated activations.
 *
 * The arithmetic is in model_vec.h's kernels; this file decides what runs
 * where. RMSNorm sums squares in double and RoPE computes its angles in
 * double (both cost nothing measurable); the gated activations use the
 * kernels' float exp. Batches of rows are split over the pool when they are
 * large enough to repay a dispatch, in whole rows, so the result of a row
 * never depends on the split.
 */
#include "model/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Elements of elementwise work below which a dispatch costs more than it saves. */
#define PAR_MIN_ELEMS (1 << 15)

void ops_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    const model_vec *vk = model_vec_get();
    double ss = vk->sumsq(x, n);
    float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    vk->rms_apply(y, x, w, scale, n);
}

/* Rows [task * per, ...) of a row-wise job. */
struct rows_job {
    int m, n, per;
    float *y;
    const float *x, *w;
    float eps;
    ffn_act act;
    float limit, alpha;
};

static int rows_tasks(sw_pool *pool, int m, int n, int *per)
{
    int T = sw_pool_size(pool);
    if (T <= 1 || (size_t)m * (size_t)n < PAR_MIN_ELEMS || m < 2) {
        *per = m;
        return 1;
    }
    int tasks = m < 4 * T ? m : 4 * T;
    *per = (m + tasks - 1) / tasks;
    return (m + *per - 1) / *per;
}

static void rmsnorm_task(void *arg, int task, int n_tasks, int thread)
{
    const struct rows_job *j = arg;
    int r1 = (task + 1) * j->per < j->m ? (task + 1) * j->per : j->m;
    for (int r = task * j->per; r < r1; r++)
        ops_rmsnorm(j->y + (size_t)r * j->n, j->x + (size_t)r * j->n, j->w, j->n, j->eps);
}

void ops_rmsnorm_rows(sw_pool *pool, float *y, const float *x, const float *w, int m, int n,
                      float eps)
{
    struct rows_job j = {.m = m, .n = n, .y = y, .x = x, .w = w, .eps = eps};
    int tasks = rows_tasks(pool, m, n, &j.per);
    if (tasks == 1)
        rmsnorm_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, rmsnorm_task, &j, tasks);
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

/* YaRN's correction dimension as llama.cpp computes it, in float. */
static float yarn_corr_dim_f(int n_rot, int n_ctx_orig, float n_rotations, float base)
{
    return n_rot * logf(n_ctx_orig / (n_rotations * 2 * (float)M_PI)) / (2 * logf(base));
}

/*
 * MODEL_COMPAT_LLAMACPP: the table as llama.cpp builds it, all in float.
 * Pair i's angle is pos * s^i with s = base^(-2/n_rot), accumulated by one
 * float multiplication per pair (theta *= s), divided by the frequency
 * factor; YaRN mixes the interpolated angle fs * theta and theta with the
 * ramp over the floor/ceil'd correction range (the mix contracted to one
 * FMA, as compilers build it); cos and sin are cosf / sinf of the float
 * angle times the magnitude scale. The reference table (double angles)
 * differs by up to ~1e-6 rad at position 63, which is enough to move
 * activations across 8-bit rounding boundaries.
 */
static void rope_table_lcpp(const model *m, int pos, float *cs)
{
    const model_config *c = &m->cfg;
    const float *ff = m->w.rope_freqs.data;
    int half = c->n_rot / 2;
    float base = (float)c->rope_base, fs = (float)c->rope_freq_scale;
    float theta_scale = powf(base, -2.0f / (float)c->n_rot), theta = (float)pos;
    float ext = c->rope_scaling == ROPE_SCALING_YARN ? (float)c->yarn_ext_factor : 0.0f;
    float mscale = c->rope_scaling == ROPE_SCALING_YARN ? (float)c->yarn_attn_factor : 1.0f;
    float low = 0, high = 0;
    if (ext != 0.0f) {
        low = floorf(yarn_corr_dim_f(c->n_rot, c->yarn_orig_ctx, (float)c->yarn_beta_fast, base));
        high = ceilf(yarn_corr_dim_f(c->n_rot, c->yarn_orig_ctx, (float)c->yarn_beta_slow, base));
        low = low > 0 ? low : 0;
        high = high < c->n_rot - 1 ? high : (float)(c->n_rot - 1);
        mscale *= 1.0f + 0.1f * logf(1.0f / fs);
    }
    for (int i = 0; i < half; i++) {
        float extrap = ff ? theta / ff[i] : theta, t = fs * extrap;
        if (ext != 0.0f) {
            float y = ((float)i - low) / (high - low > 0.001f ? high - low : 0.001f);
            float mix = (1 - (y < 0 ? 0 : y > 1 ? 1 : y)) * ext;
            t = fmaf(t, 1 - mix, extrap * mix);
        }
        cs[2 * i] = cosf(t) * mscale;
        cs[2 * i + 1] = sinf(t) * mscale;
        theta *= theta_scale;
    }
}

void ops_rope_table(const model *m, int pos, float *cs)
{
    if (m->compat & MODEL_COMPAT_LLAMACPP) {
        rope_table_lcpp(m, pos, cs);
        return;
    }
    int half = m->cfg.n_rot / 2;
    for (int i = 0; i < half; i++) {
        double a = pos * m->rope_freq[i];
        cs[2 * i] = (float)(cos(a) * m->rope_mscale);
        cs[2 * i + 1] = (float)(sin(a) * m->rope_mscale);
    }
}

void ops_rope_apply(float *x, const float *cs, int n_rot, rope_pairing pairing)
{
    model_vec_get()->rope(x, cs, n_rot, pairing == ROPE_ADJACENT);
}

static void glu_task(void *arg, int task, int n_tasks, int thread)
{
    const struct rows_job *j = arg;
    int r0 = task * j->per, r1 = r0 + j->per < j->m ? r0 + j->per : j->m;
    size_t off = (size_t)r0 * j->n;
    int cnt = (r1 - r0) * j->n;
    if (j->act == ACT_SWIGLU)
        model_vec_get()->silu_mul(j->y + off, j->x + off, cnt);
    else
        model_vec_get()->swiglu_oai(j->y + off, j->x + off, cnt, j->limit, j->alpha);
}

void ops_glu(sw_pool *pool, ffn_act act, float *g, const float *u, int m, int n, float limit,
             float alpha)
{
    struct rows_job j = {.m = m, .n = n, .y = g, .x = u, .act = act, .limit = limit,
                         .alpha = alpha};
    int tasks = rows_tasks(pool, m, n, &j.per);
    if (tasks == 1)
        glu_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, glu_task, &j, tasks);
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

/*
 * Several matrix-vector products as one pool job: quant_matvec_multi
 * converts each distinct activation once and runs every matrix's rows as
 * contiguous streams of chunks in one dispatch (with stealing), which is
 * what small products such as a decode step's projections and experts lose
 * most to. Every output is the same kernel call on the same row and
 * activation as in quant_matvec, so the bits are the same.
 */
#define MV_MAX_ITEMS 128

int mat_vec_multi(model_state *s, sw_pool *pool, const mv_item *items, int n, sw_err *err)
{
    bool rounding = (s->m->compat & MODEL_COMPAT_LLAMACPP) != 0;
    if (n > MV_MAX_ITEMS || rounding) {
        /* one product at a time (parity mode rounds activations per type) */
        for (int i = 0; i < n; i++) {
            int rc = mat_mul_raw(s, pool, items[i].type, items[i].W, items[i].rows,
                                 items[i].cols, items[i].x, 1, items[i].y, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    quant_mv mv[MV_MAX_ITEMS];
    for (int i = 0; i < n; i++)
        mv[i] = (quant_mv){items[i].type, items[i].W, items[i].rows, items[i].cols, items[i].x,
                           items[i].y};
    return quant_matvec_multi(pool, mv, n, err);
}
