/*
 * quant_avx2.c — AVX2 (+FMA, F16C) dot products for the float types and the
 * 32-element block types, and the installer of every AVX2 kernel (these,
 * the K-quants of quant_kq_avx2.c, the activation quantizers of
 * quant_act_avx2.c).
 *
 * Float rows (F32, F16, BF16 against float32): four independent 8-lane FMA
 * accumulators, so the loop is bound by loads rather than by FMA latency; a
 * tail of fewer than 8 elements goes through a masked or zero-padded load.
 *
 * 32-element blocks against Q8_0 / Q8_1: quant_b32_avx2.h, shared with the
 * AVX-VNNI table.
 */
#include "quant/quant_b32_avx2.h"

/* --- float rows -------------------------------------------------------- */

/* 8 halves / bfloat16s at p as floats. */
static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static void vec_dot_f32(int64_t n, float *restrict s, const void *restrict vx,
                        const void *restrict vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        simd_prefetch(x + i, 32 * sizeof *x);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    if (i < n) {
        const __m256i m = simd_tail_mask8(n - i);
        a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m), a1);
    }
    *s = simd_hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* F16 and BF16 rows share this shape; LOAD widens 8 of x's elements. */
#define DEFINE_DOT_HALF(name, LOAD)                                                          \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                  \
                     const void *restrict vy)                                                \
    {                                                                                        \
        const uint16_t *x = vx;                                                              \
        const float *y = vy;                                                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int64_t i = 0;                                                                       \
        for (; i + 32 <= n; i += 32) {                                                       \
            simd_prefetch(x + i, 32 * sizeof *x);                                            \
            a0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), a0);                   \
            a1 = _mm256_fmadd_ps(LOAD(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);           \
            a2 = _mm256_fmadd_ps(LOAD(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);         \
            a3 = _mm256_fmadd_ps(LOAD(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);         \
        }                                                                                    \
        for (; i + 8 <= n; i += 8)                                                           \
            a0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), a0);                   \
        if (i < n) { /* zero-padded copy: a 16-bit masked load needs AVX-512 */              \
            uint16_t xt[8] = {0};                                                            \
            memcpy(xt, x + i, (size_t)(n - i) * sizeof *x);                                  \
            const __m256 yt = _mm256_maskload_ps(y + i, simd_tail_mask8(n - i));             \
            a1 = _mm256_fmadd_ps(LOAD(xt), yt, a1);                                          \
        }                                                                                    \
        *s = simd_hsum_f32x8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));   \
    }

DEFINE_DOT_HALF(vec_dot_f16, load_f16x8)
DEFINE_DOT_HALF(vec_dot_bf16, load_bf16x8)

/* --- installer --------------------------------------------------------- */

void quant_avx2_kernels(quant_kernels *k)
{
    k->vec_dot[QT_F32] = vec_dot_f32;
    k->vec_dot[QT_F16] = vec_dot_f16;
    k->vec_dot[QT_BF16] = vec_dot_bf16;
    k->vec_dot[QT_Q4_0] = vec_dot_q4_0;
    k->vec_dot[QT_Q4_1] = vec_dot_q4_1;
    k->vec_dot[QT_Q5_0] = vec_dot_q5_0;
    k->vec_dot[QT_Q5_1] = vec_dot_q5_1;
    k->vec_dot[QT_Q8_0] = vec_dot_q8_0;
    k->vec_dot[QT_IQ4_NL] = vec_dot_iq4_nl;
    k->vec_dot[QT_MXFP4] = vec_dot_mxfp4;
    k->vec_dot[QT_Q2_K] = quant_vec_dot_q2_K_avx2;
    k->vec_dot[QT_Q3_K] = quant_vec_dot_q3_K_avx2;
    k->vec_dot[QT_Q4_K] = quant_vec_dot_q4_K_avx2;
    k->vec_dot[QT_Q5_K] = quant_vec_dot_q5_K_avx2;
    k->vec_dot_rows[QT_Q4_K] = quant_vec_dot_q4_K_avx2_rows;
    k->vec_dot_rows[QT_Q5_K] = quant_vec_dot_q5_K_avx2_rows;
    k->vec_dot[QT_Q6_K] = quant_vec_dot_q6_K_avx2;
    k->vec_dot[QT_IQ4_XS] = quant_vec_dot_iq4_xs_avx2;
    quant_kq_avx2_act_preps(k);
    b32_act_preps(k);
    quant_avx2_act_kernels(k);
}
