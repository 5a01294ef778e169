/*
 * quant_act_avx2.c — AVX2 activation quantizers (Q8_0, Q8_1, Q8_K), bit for
 * bit the reference's (quant_ref_quantize.c).
 *
 * They must be exact, not merely close: a dot product's integer part is
 * only reproducible if both sides quantize the activations identically. So
 * each step is the reference's float operation on 8 lanes at a time:
 *
 *   Q8_0/Q8_1  d = amax / 127, id = 1 / d (0 if d is 0), q = roundf(x * id):
 *              roundf rounds half away from zero, done as trunc(v) plus
 *              copysign(1, v) where |v - trunc(v)| >= 0.5 (v - trunc(v) is
 *              exact). s = f16(sum(q) * d).
 *   Q8_K       v = the first element of largest magnitude, iscale = -127 / v,
 *              q = min(127, round-to-nearest-even(iscale * x)), d = 1/iscale.
 *
 * The maximum is order-independent, and max(|x|, m) keeps m when |x| is NaN,
 * as the reference's "fabsf(x) > amax" does. Scales go through the same
 * scalar quant_f32_to_f16. Rounding uses explicit modes, not MXCSR.
 */
#include "quant/quant_simd.h"

static inline __m256 abs8(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* max |x[i]| over 8k elements (k >= 1), NaNs skipped. */
static inline float absmax(const float *x, int k)
{
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < k; j++)
        m = _mm256_max_ps(abs8(_mm256_loadu_ps(x + 8 * j)), m);
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* roundf(v) on 8 lanes, as int32. */
static inline __m256i round_away8(__m256 v)
{
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 half = _mm256_cmp_ps(abs8(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(half, one)));
}

/* 32 int32 in four registers (each |q| <= 127) -> 32 int8 at p, in order. */
static inline void store_i8x32(int8_t *p, __m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    /* the packs interleave 128-bit lanes: dwords come out as a0 b0 c0 d0 a1 b1 c1 d1 */
    const __m256i v = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)p, v);
}

static inline int hsum_i32x8(__m256i v)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 1));
    return _mm_cvtsi128_si32(r);
}

/* One 32-element block: qs, and the sum of its qs. */
static inline int quantize_block32(const float *x, int8_t *qs, float id)
{
    const __m256 s = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; j++)
        q[j] = round_away8(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), s));
    store_i8x32(qs, q[0], q[1], q[2], q[3]);
    return hsum_i32x8(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static void act_q8_0(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = absmax(x, 4) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        (void)quantize_block32(x, y[i].qs, id);
    }
}

static void act_q8_1(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = absmax(x, 4) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        const int sum = quantize_block32(x, y[i].qs, id);
        y[i].s = quant_f32_to_f16(sum * d);
    }
}

/* The first of x[0..255] whose magnitude is amax (> 0, so one exists). */
static inline float first_with_abs(const float *x, float amax)
{
    const __m256 m = _mm256_set1_ps(amax);
    for (int j = 0; j < QK_K; j += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + j)), m, _CMP_EQ_OQ));
        if (hit)
            return x[j + __builtin_ctz((unsigned)hit)];
    }
    return amax; /* unreachable */
}

static void act_q8_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float amax = absmax(x, QK_K / 8);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / first_with_abs(x, amax);
        const __m256 s = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        __m256i sums[QK_K / 16]; /* 8 partial sums per group of 16 */
        for (int g = 0; g < QK_K / 32; g++) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * j), s);
                const __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[j] = _mm256_min_epi32(_mm256_cvttps_epi32(r), top);
            }
            store_i8x32(y[i].qs + 32 * g, q[0], q[1], q[2], q[3]);
            sums[2 * g] = _mm256_add_epi32(q[0], q[1]);
            sums[2 * g + 1] = _mm256_add_epi32(q[2], q[3]);
        }
        /* reduce the 16 vectors to 16 sums: two hadd rounds leave group
         * 4k + c's two halves in dword c of either 128-bit lane */
        __m128i b[4];
        for (int k = 0; k < 4; k++) {
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(sums[4 * k], sums[4 * k + 1]),
                                                _mm256_hadd_epi32(sums[4 * k + 2], sums[4 * k + 3]));
            b[k] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        }
        _mm_storeu_si128((__m128i *)y[i].bsums, _mm_packs_epi32(b[0], b[1]));
        _mm_storeu_si128((__m128i *)(y[i].bsums + 8), _mm_packs_epi32(b[2], b[3]));
        y[i].d = 1 / iscale;
    }
}

void quant_avx2_act_kernels(quant_kernels *k)
{
    k->act_quant[QT_Q8_0] = act_q8_0;
    k->act_quant[QT_Q8_1] = act_q8_1;
    k->act_quant[QT_Q8_K] = act_q8_K;
}
