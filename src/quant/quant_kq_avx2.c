/*
 * quant_kq_avx2.c — AVX2 dot products of the 256-element super-block types
 * (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) against Q8_K activations.
 *
 * Shape shared by all six: per super-block, 32 weights at a time are widened
 * to bytes in element order (nibble masks, 2-bit fields, high bits merged
 * from their bit planes), multiplied with 32 activation bytes by maddubs into
 * 16 int16 pair sums, and those are multiplied by their sub-block's scale and
 * summed into 8 int32 lanes by madd. One float FMA per super-block applies
 * d_x * d_y. Everything before that FMA is exact integer arithmetic.
 *
 * Offsets are folded out of the inner loop with Q8_K's bsums (sums of 16
 * activations): weights are kept non-negative for maddubs and the constant
 * part is subtracted once per super-block:
 *   Q2_K, Q4_K, Q5_K   x = d sc q - dmin m      -> dmin * sum m * bsums
 *   Q3_K               q = u - 4, u in 0..7     -> 4 * sum sc * bsums
 *   Q6_K               q = u - 32, u in 0..63   -> 32 * sum sc * bsums
 * IQ4_XS has signed table values; it uses the sign trick of quant_avx2.c.
 *
 * Batches (quant.h: dot_multi): every type here goes through a weight row
 * once for two activation rows (KQ_MULTI_MAX, set by the 16 registers), each
 * of which gets the one-row operations in their order: vec_dot's bits.
 *
 * Scale selection: the sub-block scales are kept as int16 in a register and
 * spread to the lanes of a 32-element group with one pshufb. For 16-element
 * sub-blocks a group spans two of them, one per 128-bit lane.
 *
 * Bounds (why nothing overflows): maddubs pairs are at most 2 * 63 * 127 =
 * 16002 (Q6_K) or 2 * 127 * 127 = 32258 (IQ4_XS, with |sc| <= 32); scaled by
 * |sc| <= 128 and summed over a super-block an int32 lane stays below 2^26.
 */
#include "quant/quant_kq_avx2.h"

/* pshufb controls (quant_kq_avx2.h's tables): PICK(k) makes every int16 a
 * copy of scale k (one 32-element sub-block per register); PICK_PAIR(p)
 * takes scale 2p in the low lane and 2p+1 in the high one (two 16-element
 * sub-blocks). */
#define PICK(k) _mm256_load_si256((const __m256i *)kq_pick[k])
#define PICK_PAIR(p) _mm256_load_si256((const __m256i *)kq_pick_pair[p])

/* --- Q4_K and Q5_K: quant_kq_avx2.h ---------------------------------- */

DEFINE_DOT_K4(quant_vec_dot_q4_K_avx2, block_q4_K, K4_NO_QH)
DEFINE_DOT_K4(quant_vec_dot_q5_K_avx2, block_q5_K, K4_QH)
DEFINE_DOT_K4_MULTI(quant_vec_dot_q4_K_avx2, block_q4_K, K4_NO_QH)
DEFINE_DOT_K4_MULTI(quant_vec_dot_q5_K_avx2, block_q5_K, K4_QH)

/* --- Q6_K: quant_kq_avx2.h ------------------------------------------- */

DEFINE_DOT_Q6K(quant_vec_dot_q6_K_avx2)

/*
 * The three below are _row_na kernels as in quant_kq_avx2.h: super-blocks
 * [0, nb) of row x against NA (1..KQ_MULTI_MAX) plain Q8_K rows at yb, ys
 * bytes apart, results at out, s_stride apart. A group's weight bytes and
 * scale pick are made once for every activation, and each activation gets
 * the one-row operations in their order (vec_dot is the kernel with one),
 * so batches give vec_dot's bits.
 */

/* Super-block i of NA plain Q8_K rows at yb, ys bytes apart. */
SIMD_INLINE void kq_rows_at(const uint8_t *yb, size_t ys, int64_t i, const block_q8_K **y,
                            const int NA)
{
#pragma GCC unroll 2
    for (int v = 0; v < NA; v++)
        y[v] = (const block_q8_K *)(yb + (size_t)v * ys) + i;
}

/* 32 weight bytes u against each activation's 32 bytes at offset off,
 * times their scales (pick), into sumi[v]: Q2_K's and Q3_K's group. */
SIMD_INLINE void k2_group(__m256i u, __m256i pick, const block_q8_K *const *y, int off,
                          __m256i *sumi, const int NA)
{
#pragma GCC unroll 2
    for (int v = 0; v < NA; v++) {
        const __m256i p = _mm256_maddubs_epi16(u, loadu256(y[v]->qs + off));
        sumi[v] = _mm256_add_epi32(sumi[v], _mm256_madd_epi16(p, pick));
    }
}

/* acc[v] += d_x * d_y[v] * sumi[v], once per super-block. */
SIMD_INLINE void kq_fold(__m256 *acc, const __m256i *sumi, const block_q8_K *const *y, float dx,
                         const int NA)
{
#pragma GCC unroll 2
    for (int v = 0; v < NA; v++)
        acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(y[v]->d * dx), _mm256_cvtepi32_ps(sumi[v]), acc[v]);
}

/* --- Q3_K -------------------------------------------------------------- */

/*
 * Two halves of 128 with 32 bytes of qs each; group g of half h is bits
 * 2g..2g+1 of those bytes, with its third bit in bit 4h + g of hmask[l].
 * u = low2 | hbit << 2 = q + 4. Sub-blocks of 16 as in Q6_K.
 */
SIMD_INLINE void q3k_row_na(int64_t nb, const block_q3_K *restrict x, const uint8_t *yb,
                            size_t ys, float *out, size_t s_stride, const int NA)
{
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc[KQ_MULTI_MAX];
    for (int v = 0; v < NA; v++)
        acc[v] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m128i sc8 = simd_q3k_scales(x[i].scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const block_q8_K *y[KQ_MULTI_MAX];
        __m256i sumi[KQ_MULTI_MAX];
        kq_rows_at(yb, ys, i, y, NA);
#pragma GCC unroll 2
        for (int v = 0; v < NA; v++) { /* 4 * sum sc * bsums */
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu256(y[v]->bsums)), 2);
            sumi[v] = _mm256_sub_epi32(_mm256_setzero_si256(), off);
        }
        const __m256i hm = loadu256(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m128i half = h ? _mm_srli_si128(sc8, 8) : sc8;
            const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(half));
            const __m256i q = loadu256(x[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * g), low2),
                                                  bit_to(hm, 4 * h + g, 2));
                k2_group(u, _mm256_shuffle_epi8(sc, PICK_PAIR(g)), y, 128 * h + 32 * g, sumi, NA);
            }
        }
        kq_fold(acc, sumi, y, simd_f16(x[i].d), NA);
    }
    for (int v = 0; v < NA; v++)
        out[(size_t)v * s_stride] = simd_hsum_f32x8(acc[v]);
}

SIMD_ROW_NA_ENTRIES(quant_vec_dot_q3_K_avx2, q3k_multi, q3k_row_na, block_q3_K, QK_K, KQ_MULTI_MAX)

/* --- Q2_K -------------------------------------------------------------- */

/*
 * Two halves of 128 with 32 bytes of qs each; group g of half h is bits
 * 2g..2g+1. scales[k]: low nibble scale, high nibble min of sub-block k.
 */
SIMD_INLINE void q2k_row_na(int64_t nb, const block_q2_K *restrict x, const uint8_t *yb,
                            size_t ys, float *out, size_t s_stride, const int NA)
{
    const __m256i low2 = _mm256_set1_epi8(3);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    __m256 acc[KQ_MULTI_MAX], mins[KQ_MULTI_MAX];
    for (int v = 0; v < NA; v++)
        acc[v] = mins[v] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), low4));
        const float dmin = simd_f16(x[i].dmin);
        const block_q8_K *y[KQ_MULTI_MAX];
        __m256i sumi[KQ_MULTI_MAX];
        kq_rows_at(yb, ys, i, y, NA);
#pragma GCC unroll 2
        for (int v = 0; v < NA; v++) {
            const __m256i msum = _mm256_madd_epi16(m16, loadu256(y[v]->bsums));
            mins[v] = _mm256_fmadd_ps(_mm256_set1_ps(y[v]->d * dmin), _mm256_cvtepi32_ps(msum),
                                      mins[v]);
            sumi[v] = _mm256_setzero_si256();
        }
        const __m128i sc8 = _mm_and_si128(raw, low4);
        for (int h = 0; h < 2; h++) {
            const __m128i half = h ? _mm_srli_si128(sc8, 8) : sc8;
            const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(half));
            const __m256i q = loadu256(x[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), low2);
                k2_group(u, _mm256_shuffle_epi8(sc, PICK_PAIR(g)), y, 128 * h + 32 * g, sumi, NA);
            }
        }
        kq_fold(acc, sumi, y, simd_f16(x[i].d), NA);
    }
    for (int v = 0; v < NA; v++)
        out[(size_t)v * s_stride] = simd_hsum_f32x8(_mm256_sub_ps(acc[v], mins[v]));
}

SIMD_ROW_NA_ENTRIES(quant_vec_dot_q2_K_avx2, q2k_multi, q2k_row_na, block_q2_K, QK_K, KQ_MULTI_MAX)

/* --- IQ4_XS ------------------------------------------------------------ */

/*
 * 8 sub-blocks of 32; sub-block b's 16 qs bytes hold elements 0..15 in their
 * low nibbles and 16..31 in their high ones, mapped through kvalues_iq4nl.
 */
SIMD_INLINE void iq4xs_row_na(int64_t nb, const block_iq4_xs *restrict x, const uint8_t *yb,
                              size_t ys, float *out, size_t s_stride, const int NA)
{
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kvalues_iq4nl));
    __m256 acc[KQ_MULTI_MAX];
    for (int v = 0; v < NA; v++)
        acc[v] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m256i sc = _mm256_broadcastsi128_si256(simd_iq4xs_scales(&x[i]));
        const block_q8_K *y[KQ_MULTI_MAX];
        __m256i sumi[KQ_MULTI_MAX];
        kq_rows_at(yb, ys, i, y, NA);
        for (int v = 0; v < NA; v++)
            sumi[v] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int b = 0; b < 8; b++) {
            const __m256i w = _mm256_shuffle_epi8(lut, simd_nibbles32(x[i].qs + 16 * b));
            const __m256i mag = _mm256_sign_epi8(w, w);
            const __m256i pick = _mm256_shuffle_epi8(sc, PICK(b));
#pragma GCC unroll 2
            for (int v = 0; v < NA; v++) {
                const __m256i q8 = loadu256(y[v]->qs + 32 * b);
                const __m256i p = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(q8, w));
                sumi[v] = _mm256_add_epi32(sumi[v], _mm256_madd_epi16(p, pick));
            }
        }
        kq_fold(acc, sumi, y, simd_f16(x[i].d), NA);
    }
    for (int v = 0; v < NA; v++)
        out[(size_t)v * s_stride] = simd_hsum_f32x8(acc[v]);
}

SIMD_ROW_NA_ENTRIES(quant_vec_dot_iq4_xs_avx2, iq4xs_multi, iq4xs_row_na, block_iq4_xs, QK_K, KQ_MULTI_MAX)

/* Batches of every type here (quant_avx2.c installs these; the AVX-VNNI
 * table keeps the Q2_K, Q3_K and IQ4_XS ones). */
void quant_kq_avx2_act_preps(quant_kernels *k)
{
    k->act_prep[QT_Q2_K] = (quant_act_prep){NULL, NULL, q2k_multi, 0, 0};
    k->act_prep[QT_Q3_K] = (quant_act_prep){NULL, NULL, q3k_multi, 0, 0};
    k->act_prep[QT_Q4_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q4_K_avx2_multi, 0, 0};
    k->act_prep[QT_Q5_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q5_K_avx2_multi, 0, 0};
    k->act_prep[QT_Q6_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q6_K_avx2_multi, 0, 0};
    k->act_prep[QT_IQ4_XS] = (quant_act_prep){NULL, NULL, iq4xs_multi, 0, 0};
}
