/*
 * model_vec.c — scalar reference of the vector kernels (model_vec.h) and the
 * choice of table at start-up.
 */
#include "model/model_vec.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static void ref_dots(const float *q, int nq, const float *K, int n, int d, float scale, float *s)
{
    for (int h = 0; h < nq; h++)
        for (int i = 0; i < n; i++) {
            const float *qh = q + (size_t)h * d, *k = K + (size_t)i * d;
            float acc = 0;
            for (int j = 0; j < d; j++)
                acc += qh[j] * k[j];
            s[(size_t)h * n + i] = acc * scale;
        }
}

static void ref_wsum(float *acc, const float *p, int nq, const float *V, int n, int d)
{
    for (int h = 0; h < nq; h++)
        for (int i = 0; i < n; i++) {
            const float *v = V + (size_t)i * d;
            float *a = acc + (size_t)h * d, w = p[(size_t)h * n + i];
            for (int j = 0; j < d; j++)
                a[j] += w * v[j];
        }
}

static float ref_max(const float *x, int n)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

static float ref_exp_sum(float *x, int n, float m)
{
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    return sum;
}

static void ref_scale(float *x, float a, int n)
{
    for (int i = 0; i < n; i++)
        x[i] *= a;
}

static void ref_axpy(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

static double ref_sumsq(const float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

static void ref_rms_apply(float *y, const float *x, const float *w, float s, int n)
{
    if (w)
        for (int i = 0; i < n; i++)
            y[i] = x[i] * s * w[i];
    else
        for (int i = 0; i < n; i++)
            y[i] = x[i] * s;
}

static void ref_silu_mul(float *g, const float *u, int n)
{
    for (int i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_swiglu_oai(float *g, const float *u, int n, float limit, float alpha)
{
    for (int i = 0; i < n; i++) {
        float x = g[i] < limit ? g[i] : limit;
        float y = u[i] < -limit ? -limit : u[i] > limit ? limit : u[i];
        g[i] = x / (1.0f + expf(-alpha * x)) * (y + 1.0f);
    }
}

static void ref_f16_to_f32(const uint16_t *x, float *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = quant_f16_to_f32(x[i]);
}

static void ref_rope(float *x, const float *cs, int n_rot, bool adjacent)
{
    int half = n_rot / 2, step = adjacent ? 2 : 1, other = adjacent ? 1 : half;
    for (int i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = x + i * step, *b = a + other;
        float x0 = *a, x1 = *b;
        /* one rounding less than x0 c - x1 s, and what llama.cpp's compilers
         * make of it (the first product fused) */
        *a = fmaf(x0, c, -(x1 * s));
        *b = fmaf(x0, s, x1 * c);
    }
}

static void ref_f32_to_f16(const float *x, uint16_t *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = quant_f32_to_f16(x[i]);
}

static void ref_q8_0_to_f32(const block_q8_0 *x, float *y, int n)
{
    for (int b = 0; b < n / QK8_0; b++) {
        float d = quant_f16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++)
            y[b * QK8_0 + j] = d * x[b].qs[j];
    }
}

void model_vec_ref(model_vec *v)
{
    *v = (model_vec){
        .dots = ref_dots,
        .wsum = ref_wsum,
        .max = ref_max,
        .exp_sum = ref_exp_sum,
        .scale = ref_scale,
        .axpy = ref_axpy,
        .sumsq = ref_sumsq,
        .rms_apply = ref_rms_apply,
        .silu_mul = ref_silu_mul,
        .swiglu_oai = ref_swiglu_oai,
        .rope = ref_rope,
        .f16_to_f32 = ref_f16_to_f32,
        .f32_to_f16 = ref_f32_to_f16,
        .q8_0_to_f32 = ref_q8_0_to_f32,
    };
}

int model_vec_for(quant_isa isa, model_vec *out)
{
    if (!quant_isa_supported(isa))
        return -1;
    model_vec_ref(out);
    if (isa >= QUANT_ISA_AVX2)
        model_vec_avx2(out);
    if (isa == QUANT_ISA_AVX512)
        model_vec_avx512(out);
    return 0;
}

static model_vec g_vec;
static pthread_once_t g_vec_once = PTHREAD_ONCE_INIT;

/* Follows quant/'s choice, which honours SPILLWAY_ISA. */
static void vec_select(void)
{
    model_vec_for(quant_kernels_get()->isa, &g_vec);
}

const model_vec *model_vec_get(void)
{
    pthread_once(&g_vec_once, vec_select);
    return &g_vec;
}
