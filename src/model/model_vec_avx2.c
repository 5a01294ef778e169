/*
 * model_vec_avx2.c — the vector kernels of model_vec.h with AVX2, FMA and
 * F16C (compiled with those flags; installed only after the CPUID check).
 *
 * Tails shorter than a vector use masked loads and stores, so every element
 * goes through the same arithmetic as its neighbours. exp is a polynomial
 * (the classic Cephes single-precision one: range reduction by ln 2 in two
 * parts, a degree-6 polynomial, the exponent set by integer addition),
 * accurate to about 2 ulp on [-87, 88] and clamped outside it; NaN stays
 * NaN.
 */
#include "model/model_vec.h"

#include <immintrin.h>
#include <math.h>

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "model_vec_avx2.c needs -mavx2 -mfma -mf16c"
#endif

/* Lanes [0, r) set, r in [0, 8]. */
static inline __m256i tail_mask(int r)
{
    static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - r));
}

static inline float hsum(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline __m256 exp8(__m256 x)
{
    /* max/min return their second operand for NaN: keep x second */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* The eight horizontal sums of a0..a7 as one vector, each summed by the
 * same tree whatever its slot. */
static inline __m256 hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7)
{
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* One query: eight rows at a time; missing rows of the last group re-read
 * row i and are not stored. */
static void dots1(const float *q, const float *K, int n, int d, float scale, float *s)
{
    int d8 = d & ~7;
    __m256i m = tail_mask(d - d8);
    for (int i = 0; i < n; i += 8) {
        const float *k[8];
        for (int j = 0; j < 8; j++)
            k[j] = K + (size_t)(i + j < n ? i + j : i) * d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
#define DOT8(LOAD, e)                                                                              \
    do {                                                                                           \
        __m256 qv = LOAD(q + (e));                                                                 \
        a0 = _mm256_fmadd_ps(qv, LOAD(k[0] + (e)), a0);                                            \
        a1 = _mm256_fmadd_ps(qv, LOAD(k[1] + (e)), a1);                                            \
        a2 = _mm256_fmadd_ps(qv, LOAD(k[2] + (e)), a2);                                            \
        a3 = _mm256_fmadd_ps(qv, LOAD(k[3] + (e)), a3);                                            \
        a4 = _mm256_fmadd_ps(qv, LOAD(k[4] + (e)), a4);                                            \
        a5 = _mm256_fmadd_ps(qv, LOAD(k[5] + (e)), a5);                                            \
        a6 = _mm256_fmadd_ps(qv, LOAD(k[6] + (e)), a6);                                            \
        a7 = _mm256_fmadd_ps(qv, LOAD(k[7] + (e)), a7);                                            \
    } while (0)
#define MLOAD(p) _mm256_maskload_ps((p), m)
        for (int e = 0; e < d8; e += 8)
            DOT8(_mm256_loadu_ps, e);
        if (d8 < d)
            DOT8(MLOAD, d8);
#undef MLOAD
#undef DOT8
        __m256 r = _mm256_mul_ps(hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7), _mm256_set1_ps(scale));
        if (i + 8 <= n)
            _mm256_storeu_ps(s + i, r);
        else
            _mm256_maskstore_ps(s + i, tail_mask(n - i), r);
    }
}

static void avx2_dots(const float *q, int nq, const float *K, int n, int d, float scale, float *s)
{
    for (int h = 0; h < nq; h++)
        dots1(q + (size_t)h * d, K, n, d, scale, s + (size_t)h * n);
}

/* One query: stripes of 64 columns (eight accumulators stay in registers
 * across all rows), then of 8, then a masked tail. */
static void wsum1(float *acc, const float *p, const float *V, int n, int d)
{
    int j = 0;
    for (; j + 64 <= d; j += 64) {
        float *o = acc + j;
        __m256 a[8] = {_mm256_loadu_ps(o),      _mm256_loadu_ps(o + 8),  _mm256_loadu_ps(o + 16),
                       _mm256_loadu_ps(o + 24), _mm256_loadu_ps(o + 32), _mm256_loadu_ps(o + 40),
                       _mm256_loadu_ps(o + 48), _mm256_loadu_ps(o + 56)};
        for (int i = 0; i < n; i++) {
            __m256 w = _mm256_broadcast_ss(p + i);
            const float *v = V + (size_t)i * d + j;
            a[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a[0]);
            a[1] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a[1]);
            a[2] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a[2]);
            a[3] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a[3]);
            a[4] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 32), a[4]);
            a[5] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 40), a[5]);
            a[6] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 48), a[6]);
            a[7] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 56), a[7]);
        }
        _mm256_storeu_ps(o, a[0]);
        _mm256_storeu_ps(o + 8, a[1]);
        _mm256_storeu_ps(o + 16, a[2]);
        _mm256_storeu_ps(o + 24, a[3]);
        _mm256_storeu_ps(o + 32, a[4]);
        _mm256_storeu_ps(o + 40, a[5]);
        _mm256_storeu_ps(o + 48, a[6]);
        _mm256_storeu_ps(o + 56, a[7]);
    }
    for (; j < d; j += 8) {
        __m256i m = tail_mask(d - j < 8 ? d - j : 8);
        __m256 a = _mm256_maskload_ps(acc + j, m);
        for (int i = 0; i < n; i++)
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i),
                                _mm256_maskload_ps(V + (size_t)i * d + j, m), a);
        _mm256_maskstore_ps(acc + j, m, a);
    }
}

static void avx2_wsum(float *acc, const float *p, int nq, const float *V, int n, int d)
{
    for (int h = 0; h < nq; h++)
        wsum1(acc + (size_t)h * d, p + (size_t)h * n, V, n, d);
}

static float avx2_max(const float *x, int n)
{
    __m256 ninf = _mm256_set1_ps(-INFINITY), m = ninf;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k));
        m = _mm256_max_ps(m, v);
    }
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static float avx2_exp_sum(float *x, int n, float m)
{
    __m256 vm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(k));
        _mm256_maskstore_ps(x + i, k, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum(sum);
}

static void avx2_scale(float *x, float a, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    if (i < n) {
        __m256i k = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, k, _mm256_mul_ps(_mm256_maskload_ps(x + i, k), va));
    }
}

static void avx2_axpy(float *y, float a, const float *x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 r = _mm256_add_ps(_mm256_maskload_ps(y + i, k),
                                 _mm256_mul_ps(va, _mm256_maskload_ps(x + i, k)));
        _mm256_maskstore_ps(y + i, k, r);
    }
}

static double avx2_sumsq(const float *x, int n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d r = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
    for (; i < n; i++)
        sum += (double)x[i] * x[i];
    return sum;
}

static void avx2_rms_apply(float *y, const float *x, const float *w, float s, int n)
{
    __m256 vs = _mm256_set1_ps(s), one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(y + i, w ? _mm256_mul_ps(v, _mm256_loadu_ps(w + i)) : v);
    }
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, k), vs);
        _mm256_maskstore_ps(y + i, k, _mm256_mul_ps(v, w ? _mm256_maskload_ps(w + i, k) : one));
    }
}

static inline __m256 silu_mul8(__m256 g, __m256 u)
{
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void avx2_silu_mul(float *g, const float *u, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 r = silu_mul8(_mm256_maskload_ps(g + i, k), _mm256_maskload_ps(u + i, k));
        _mm256_maskstore_ps(g + i, k, r);
    }
}

static inline __m256 swiglu_oai8(__m256 g, __m256 u, float limit, float alpha)
{
    __m256 x = _mm256_min_ps(g, _mm256_set1_ps(limit));
    __m256 y = _mm256_min_ps(_mm256_max_ps(u, _mm256_set1_ps(-limit)), _mm256_set1_ps(limit));
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-alpha), x));
    __m256 sig = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_mul_ps(sig, _mm256_add_ps(y, _mm256_set1_ps(1.0f)));
}

static void avx2_swiglu_oai(float *g, const float *u, int n, float limit, float alpha)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(g + i, swiglu_oai8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i), limit,
                                            alpha));
    if (i < n) {
        __m256i k = tail_mask(n - i);
        __m256 r = swiglu_oai8(_mm256_maskload_ps(g + i, k), _mm256_maskload_ps(u + i, k), limit,
                               alpha);
        _mm256_maskstore_ps(g + i, k, r);
    }
}

/* Halves pairing eight pairs at a time (cs de-interleaved by two shuffles
 * and a lane permute); the adjacent pairing and the tail pair by pair, with
 * the same fused operations. */
static void avx2_rope(float *x, const float *cs, int n_rot, bool adjacent)
{
    int half = n_rot / 2, i = 0;
    if (!adjacent)
        for (; i + 8 <= half; i += 8) {
            __m256 lo = _mm256_loadu_ps(cs + 2 * i), hi = _mm256_loadu_ps(cs + 2 * i + 8);
            __m256 c = _mm256_castpd_ps(
                _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
            __m256 s = _mm256_castpd_ps(
                _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + half + i);
            _mm256_storeu_ps(x + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
            _mm256_storeu_ps(x + half + i, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
        }
    int step = adjacent ? 2 : 1, other = adjacent ? 1 : half;
    for (; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float *a = x + i * step, *b = a + other;
        float x0 = *a, x1 = *b;
        *a = fmaf(x0, c, -(x1 * s)); /* one vfmadd with -mfma */
        *b = fmaf(x0, s, x1 * c);
    }
}

static void avx2_f16_to_f32(const uint16_t *x, float *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++)
        y[i] = _cvtsh_ss(x[i]);
}

static void avx2_f32_to_f16(const float *x, uint16_t *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

static void avx2_q8_0_to_f32(const block_q8_0 *x, float *y, int n)
{
    for (int b = 0; b < n / QK8_0; b++, y += QK8_0) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d));
        for (int k = 0; k < QK8_0; k += 8) {
            __m128i q = _mm_loadl_epi64((const __m128i *)(x[b].qs + k));
            __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            _mm256_storeu_ps(y + k, _mm256_mul_ps(d, v));
        }
    }
}

void model_vec_avx2(model_vec *v)
{
    v->dots = avx2_dots;
    v->wsum = avx2_wsum;
    v->max = avx2_max;
    v->exp_sum = avx2_exp_sum;
    v->scale = avx2_scale;
    v->axpy = avx2_axpy;
    v->sumsq = avx2_sumsq;
    v->rms_apply = avx2_rms_apply;
    v->silu_mul = avx2_silu_mul;
    v->swiglu_oai = avx2_swiglu_oai;
    v->rope = avx2_rope;
    v->f16_to_f32 = avx2_f16_to_f32;
    v->f32_to_f16 = avx2_f32_to_f16;
    v->q8_0_to_f32 = avx2_q8_0_to_f32;
}
