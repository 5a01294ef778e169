/*
 * quant_b32_avx2.h — private to src/quant: dot products of the 32-element
 * block types on 256-bit registers, for the AVX2 table (quant_avx2.c) and,
 * compiled with AVX-VNNI, for the AVX2 + AVX-VNNI one (quant_avxvnni.c).
 * Each including file gets its own static copies; the only difference is
 * simd_dot_u8i8 (quant_simd.h), one vpdpbusd under AVX-VNNI instead of
 * vpmaddubsw + vpmaddwd, with the same int32 lanes, so both tables give the
 * same bits.
 *
 * Against Q8_0 / Q8_1: each block's weights are widened to 32 bytes in
 * element order, multiplied with the activation bytes into 8 exact int32
 * lanes (simd_dot_u8i8), converted to float and added with FMA times the
 * block's scale product. Two blocks are in flight per iteration, each with
 * its own accumulator. Per type, only the widening differs:
 *
 *   Q4_0    nibble - 8                       signed, via sign trick
 *   Q5_0    nibble | (bit ? 0 : 0xF0)        = q - 16 as int8
 *   Q8_0    the bytes themselves             signed, via sign trick
 *   IQ4_NL  kvalues_iq4nl[nibble]            pshufb table look-up
 *   MXFP4   kvalues_mxfp4[nibble]            pshufb; scale 2^(e-128)
 *   Q4_1    nibble (0..15)                   unsigned: maddubs directly,
 *   Q5_1    nibble | bit << 4 (0..31)        plus m * s from Q8_1's sum
 *
 * The sign trick: maddubs multiplies unsigned by signed bytes, so a signed
 * x is split as |x| times (y with x's sign). |x| <= 128 and |y| <= 127 keep
 * each int16 pair sum below 32767, so nothing saturates.
 */
#ifndef SW_QUANT_B32_AVX2_H
#define SW_QUANT_B32_AVX2_H

#include "quant/quant_simd.h"

/* --- 32-element blocks against Q8_0 ------------------------------------ */

/*
 * Each step function adds one block's contribution to acc. The loop below
 * keeps two blocks in flight with separate accumulators: one FMA chain
 * would otherwise bound the loop at its latency per block.
 */
#define DEFINE_DOT32(name, xtype, ytype, STEP, LUT)                                          \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                  \
                     const void *restrict vy)                                                \
    {                                                                                        \
        const xtype *x = vx;                                                                 \
        const ytype *y = vy;                                                                 \
        const int64_t nb = n / 32;                                                           \
        const __m256i lut = LUT;                                                             \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                            \
        int64_t i = 0;                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                        \
            simd_prefetch(x + i, 2 * sizeof *x);                                             \
            a0 = STEP(x + i, y + i, lut, a0);                                                \
            a1 = STEP(x + i + 1, y + i + 1, lut, a1);                                        \
        }                                                                                    \
        if (i < nb)                                                                          \
            a0 = STEP(x + i, y + i, lut, a0);                                                \
        *s = simd_hsum_f32x8(_mm256_add_ps(a0, a1));                                         \
    }

/* The 16-entry value table of a non-linear type, in both 128-bit lanes
 * (types without one pass zero and ignore it). */
static inline __m256i lut_from(const int8_t table[16])
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)table));
}

/* acc + d * (8 int32 lanes of a block's integer dot) */
static inline __m256 fma_block(float d, __m256i sums, __m256 acc)
{
    return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sums), acc);
}

/* Per type: the block's weights as signed bytes (wide_*) and its scale
 * (XS_*); a step is then one block's fma_block. */
static inline __m256i wide_q4_0(const block_q4_0 *x, __m256i lut)
{
    (void)lut;
    return _mm256_sub_epi8(simd_nibbles32(x->qs), _mm256_set1_epi8(8));
}

static inline __m256i wide_q5_0(const block_q5_0 *x, __m256i lut)
{
    (void)lut;
    const __m256i hi = _mm256_andnot_si256(simd_bits_to_bytes(quant_q5_high_bits(x->qh)),
                                           _mm256_set1_epi8((char)0xF0));
    return _mm256_or_si256(simd_nibbles32(x->qs), hi);
}

static inline __m256i wide_q8_0(const block_q8_0 *x, __m256i lut)
{
    (void)lut;
    return _mm256_loadu_si256((const __m256i *)x->qs);
}

static inline __m256i wide_iq4_nl(const block_iq4_nl *x, __m256i lut)
{
    return _mm256_shuffle_epi8(lut, simd_nibbles32(x->qs));
}

static inline __m256i wide_mxfp4(const block_mxfp4 *x, __m256i lut)
{
    return _mm256_shuffle_epi8(lut, simd_nibbles32(x->qs));
}

#define XS_F16(x) simd_f16((x)->d)
#define XS_E8M0(x) quant_e8m0_half((x)->e)

#define DEFINE_STEP(name, xtype, WIDE, XS)                                                   \
    static inline __m256 name(const xtype *x, const block_q8_0 *y, __m256i lut, __m256 acc)  \
    {                                                                                        \
        const __m256i qx = WIDE(x, lut);                                                     \
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);                       \
        return fma_block(XS(x) * simd_f16(y->d), simd_dot_i8i8(qx, qy), acc);                \
    }

DEFINE_STEP(step_q4_0, block_q4_0, wide_q4_0, XS_F16)
DEFINE_STEP(step_q5_0, block_q5_0, wide_q5_0, XS_F16)
DEFINE_STEP(step_q8_0, block_q8_0, wide_q8_0, XS_F16)
DEFINE_STEP(step_iq4_nl, block_iq4_nl, wide_iq4_nl, XS_F16)
DEFINE_STEP(step_mxfp4, block_mxfp4, wide_mxfp4, XS_E8M0)

DEFINE_DOT32(vec_dot_q4_0, block_q4_0, block_q8_0, step_q4_0, _mm256_setzero_si256())
DEFINE_DOT32(vec_dot_q5_0, block_q5_0, block_q8_0, step_q5_0, _mm256_setzero_si256())
DEFINE_DOT32(vec_dot_q8_0, block_q8_0, block_q8_0, step_q8_0, _mm256_setzero_si256())
DEFINE_DOT32(vec_dot_iq4_nl, block_iq4_nl, block_q8_0, step_iq4_nl, lut_from(kvalues_iq4nl))
DEFINE_DOT32(vec_dot_mxfp4, block_mxfp4, block_q8_0, step_mxfp4, lut_from(kvalues_mxfp4))

/*
 * Batches (quant.h: dot_multi): a block's weight bytes, their magnitudes
 * and its scale are taken once for up to B32_MULTI_MAX plain Q8_0 rows,
 * each of which keeps the one-row kernel's two accumulators (even and odd
 * blocks) and exactly its operations, so the bits are vec_dot's.
 */
#define B32_MULTI_MAX 4

/* Block x against activation rows yb, yb + ys, ... (NA of them, block i
 * of each), into acc[v]. */
#define B32_BLOCK_NA(x, i, WIDE, XS, acc, NA)                                                \
    do {                                                                                     \
        const __m256i qx_ = WIDE(x, lut), ax_ = _mm256_sign_epi8(qx_, qx_);                  \
        const float xd_ = XS(x);                                                             \
        _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                                 \
        {                                                                                    \
            const block_q8_0 *y_ = (const block_q8_0 *)(yb + (size_t)v * ys) + (i);          \
            const __m256i qy_ = _mm256_loadu_si256((const __m256i *)y_->qs);                 \
            acc[v] = fma_block(xd_ * simd_f16(y_->d),                                        \
                               simd_dot_u8i8(ax_, _mm256_sign_epi8(qy_, qx_)), acc[v]);      \
        }                                                                                    \
    } while (0)

#define DEFINE_DOT32_MULTI(name, xtype, WIDE, XS, LUT)                                       \
    SIMD_INLINE void name##_row_na(int64_t nb, const xtype *restrict x, const uint8_t *yb,   \
                                   size_t ys, float *out, size_t s_stride, const int NA)     \
    {                                                                                        \
        const __m256i lut = LUT;                                                             \
        __m256 a0[B32_MULTI_MAX], a1[B32_MULTI_MAX];                                         \
        for (int v = 0; v < NA; v++)                                                         \
            a0[v] = a1[v] = _mm256_setzero_ps();                                             \
        int64_t i = 0;                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                        \
            simd_prefetch(x + i, 2 * sizeof *x);                                             \
            B32_BLOCK_NA(x + i, i, WIDE, XS, a0, NA);                                        \
            B32_BLOCK_NA(x + i + 1, i + 1, WIDE, XS, a1, NA);                                \
        }                                                                                    \
        if (i < nb)                                                                          \
            B32_BLOCK_NA(x + i, i, WIDE, XS, a0, NA);                                        \
        for (int v = 0; v < NA; v++)                                                         \
            out[(size_t)v * s_stride] = simd_hsum_f32x8(_mm256_add_ps(a0[v], a1[v]));         \
    }                                                                                        \
    SIMD_MULTI_ENTRY(name##_multi, name##_row_na, xtype, 32, B32_MULTI_MAX)

DEFINE_DOT32_MULTI(vec_dot_q4_0, block_q4_0, wide_q4_0, XS_F16, _mm256_setzero_si256())
DEFINE_DOT32_MULTI(vec_dot_q5_0, block_q5_0, wide_q5_0, XS_F16, _mm256_setzero_si256())
DEFINE_DOT32_MULTI(vec_dot_q8_0, block_q8_0, wide_q8_0, XS_F16, _mm256_setzero_si256())
DEFINE_DOT32_MULTI(vec_dot_iq4_nl, block_iq4_nl, wide_iq4_nl, XS_F16, lut_from(kvalues_iq4nl))
DEFINE_DOT32_MULTI(vec_dot_mxfp4, block_mxfp4, wide_mxfp4, XS_E8M0, lut_from(kvalues_mxfp4))


/* --- 32-element blocks with a min, against Q8_1 ------------------------ */

/*
 * sum (d q + m) y_d y_q = d y_d * sum(q y_q) + m * s, with s = y_d * sum(y_q)
 * stored in the Q8_1 block. The m * s terms go to a scalar per chain.
 */
static inline __m256i wide_q4_1(const block_q4_1 *x)
{
    return simd_nibbles32(x->qs);
}

static inline __m256i wide_q5_1(const block_q5_1 *x)
{
    const __m256i hi = _mm256_and_si256(simd_bits_to_bytes(quant_q5_high_bits(x->qh)),
                                        _mm256_set1_epi8(0x10));
    return _mm256_or_si256(simd_nibbles32(x->qs), hi);
}

#define DEFINE_STEP_MIN(name, xtype, WIDE)                                                   \
    static inline __m256 name(const xtype *x, const block_q8_1 *y, __m256 acc, float *ms)    \
    {                                                                                        \
        const __m256i qx = WIDE(x);                                                          \
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y->qs);                       \
        *ms += simd_f16(x->m) * simd_f16(y->s);                                              \
        return fma_block(simd_f16(x->d) * simd_f16(y->d), simd_dot_u8i8(qx, qy), acc);       \
    }

DEFINE_STEP_MIN(step_q4_1, block_q4_1, wide_q4_1)
DEFINE_STEP_MIN(step_q5_1, block_q5_1, wide_q5_1)

#define DEFINE_DOT32_MIN(name, xtype, STEP)                                                  \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                  \
                     const void *restrict vy)                                                \
    {                                                                                        \
        const xtype *x = vx;                                                                 \
        const block_q8_1 *y = vy;                                                            \
        const int64_t nb = n / 32;                                                           \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                            \
        float m0 = 0.0f, m1 = 0.0f;                                                          \
        int64_t i = 0;                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                        \
            simd_prefetch(x + i, 2 * sizeof *x);                                             \
            a0 = STEP(x + i, y + i, a0, &m0);                                                \
            a1 = STEP(x + i + 1, y + i + 1, a1, &m1);                                        \
        }                                                                                    \
        if (i < nb)                                                                          \
            a0 = STEP(x + i, y + i, a0, &m0);                                                \
        *s = simd_hsum_f32x8(_mm256_add_ps(a0, a1)) + (m0 + m1);                             \
    }

DEFINE_DOT32_MIN(vec_dot_q4_1, block_q4_1, step_q4_1)
DEFINE_DOT32_MIN(vec_dot_q5_1, block_q5_1, step_q5_1)

/* Batches of Q4_1 and Q5_1 against plain Q8_1 rows, as DEFINE_DOT32_MULTI:
 * per activation the one-row kernel's two accumulators and two min sums. */
#define B32_MIN_BLOCK_NA(x, i, WIDE, acc, ms, NA)                                            \
    do {                                                                                     \
        const __m256i qx_ = WIDE(x);                                                         \
        const float xd_ = simd_f16((x)->d), xm_ = simd_f16((x)->m);                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                                 \
        {                                                                                    \
            const block_q8_1 *y_ = (const block_q8_1 *)(yb + (size_t)v * ys) + (i);          \
            const __m256i qy_ = _mm256_loadu_si256((const __m256i *)y_->qs);                 \
            ms[v] += xm_ * simd_f16(y_->s);                                                  \
            acc[v] = fma_block(xd_ * simd_f16(y_->d), simd_dot_u8i8(qx_, qy_), acc[v]);      \
        }                                                                                    \
    } while (0)

#define DEFINE_DOT32_MIN_MULTI(name, xtype, WIDE)                                            \
    SIMD_INLINE void name##_row_na(int64_t nb, const xtype *restrict x, const uint8_t *yb,   \
                                   size_t ys, float *out, size_t s_stride, const int NA)     \
    {                                                                                        \
        __m256 a0[B32_MULTI_MAX], a1[B32_MULTI_MAX];                                         \
        float m0[B32_MULTI_MAX], m1[B32_MULTI_MAX];                                          \
        for (int v = 0; v < NA; v++) {                                                       \
            a0[v] = a1[v] = _mm256_setzero_ps();                                             \
            m0[v] = m1[v] = 0.0f;                                                            \
        }                                                                                    \
        int64_t i = 0;                                                                       \
        for (; i + 2 <= nb; i += 2) {                                                        \
            simd_prefetch(x + i, 2 * sizeof *x);                                             \
            B32_MIN_BLOCK_NA(x + i, i, WIDE, a0, m0, NA);                                    \
            B32_MIN_BLOCK_NA(x + i + 1, i + 1, WIDE, a1, m1, NA);                            \
        }                                                                                    \
        if (i < nb)                                                                          \
            B32_MIN_BLOCK_NA(x + i, i, WIDE, a0, m0, NA);                                    \
        for (int v = 0; v < NA; v++)                                                         \
            out[(size_t)v * s_stride] =                                                      \
                simd_hsum_f32x8(_mm256_add_ps(a0[v], a1[v])) + (m0[v] + m1[v]);             \
    }                                                                                        \
    SIMD_MULTI_ENTRY(name##_multi, name##_row_na, xtype, 32, B32_MULTI_MAX)

DEFINE_DOT32_MIN_MULTI(vec_dot_q4_1, block_q4_1, wide_q4_1)
DEFINE_DOT32_MIN_MULTI(vec_dot_q5_1, block_q5_1, wide_q5_1)

/* The batched entries of the 32-element types, into k (each including table). */
static inline void b32_act_preps(quant_kernels *k)
{
    k->act_prep[QT_Q4_0] = (quant_act_prep){NULL, NULL, vec_dot_q4_0_multi, 0, 0};
    k->act_prep[QT_Q5_0] = (quant_act_prep){NULL, NULL, vec_dot_q5_0_multi, 0, 0};
    k->act_prep[QT_Q8_0] = (quant_act_prep){NULL, NULL, vec_dot_q8_0_multi, 0, 0};
    k->act_prep[QT_IQ4_NL] = (quant_act_prep){NULL, NULL, vec_dot_iq4_nl_multi, 0, 0};
    k->act_prep[QT_MXFP4] = (quant_act_prep){NULL, NULL, vec_dot_mxfp4_multi, 0, 0};
    k->act_prep[QT_Q4_1] = (quant_act_prep){NULL, NULL, vec_dot_q4_1_multi, 0, 0};
    k->act_prep[QT_Q5_1] = (quant_act_prep){NULL, NULL, vec_dot_q5_1_multi, 0, 0};
}

#endif
