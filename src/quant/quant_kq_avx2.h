/*
 * quant_kq_avx2.h — private to src/quant: the Q4_K, Q5_K and Q6_K dot
 * products on 256-bit registers, for two kernel tables: plain AVX2
 * (quant_kq_avx2.c) and AVX2 with AVX-VNNI (quant_avxvnni.c, which defines
 * KQ_VNNI before including this). Only the integer work differs:
 *
 *   AVX2      per 32 weights: vpmaddubsw (weight x activation, int16
 *             pairs), then vpmaddwd by the sub-block's scale (int32), an add;
 *   AVX-VNNI  per 32 weights: vpdpbusd (int32 lanes of four products),
 *             then for two such registers one vpackssdw to int16 and one
 *             vpdpwssd by their scales: 5 instead of 8 operations per 64
 *             weights. One layer's Q4_K expert products from L3, 2 cores:
 *             55 -> 67 GB/s.
 *
 * Both are exact integer sums of the same products, grouped differently
 * into lanes; the float work per super-block is the same, so the two
 * tables differ from each other (and from the scalar reference) only in
 * how the lanes' partial sums round. Bounds: a vpdpbusd lane is at most
 * 4 * 63 * 128 < 2^15 (Q6_K; Q4_K 4 * 15 * 128, Q5_K 4 * 31 * 128), so the
 * pack never saturates.
 *
 * Q4_K and Q5_K: 8 sub-blocks of 32; qs chunk j (32 bytes) holds sub-block
 * 2j in its low nibbles and 2j+1 in its high nibbles. Q5_K's fifth bit of
 * sub-block b is bit b of qh[l]. dd holds d * y.d and dmin * y.d in lanes 0
 * and 1; the min term goes to *mins (to be subtracted at the end).
 */
#ifndef SW_QUANT_KQ_AVX2_H
#define SW_QUANT_KQ_AVX2_H

#include "quant/quant_simd.h"

#if defined(KQ_VNNI) && !defined(__AVXVNNI__)
#error "KQ_VNNI needs -mavxvnni (only *_avxvnni.c may define it)"
#endif

static inline __m256i loadu256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Bit `from` of every byte of v, moved to bit `to` (other bits cleared). */
static inline __m256i bit_to(__m256i v, int from, int to)
{
    const __m256i b = _mm256_and_si256(v, _mm256_set1_epi8((char)(1 << from)));
    return from >= to ? _mm256_srli_epi16(b, from - to) : _mm256_slli_epi16(b, to - from);
}

/* pshufb controls over 8 int16 scales (the same in both 128-bit lanes):
 * kq_pick[k] makes every int16 a copy of scale k; kq_pick_pair[p] takes
 * scale 2p in the low lane and 2p+1 in the high one; kq_pair[j] makes
 * int16s 0-3 of each lane copies of scale 2j and 4-7 of scale 2j+1, and
 * kq_q6_pair[p] those of 4p, 4p+2 in the low lane and 4p+1, 4p+3 in the
 * high one: the orders of vpackssdw's output for K4 and Q6_K. */
#define K4_W4(e) SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e)
static _Alignas(32) const uint8_t kq_pick[8][32] = {
    {SIMD_PICK16(0), SIMD_PICK16(0)}, {SIMD_PICK16(1), SIMD_PICK16(1)},
    {SIMD_PICK16(2), SIMD_PICK16(2)}, {SIMD_PICK16(3), SIMD_PICK16(3)},
    {SIMD_PICK16(4), SIMD_PICK16(4)}, {SIMD_PICK16(5), SIMD_PICK16(5)},
    {SIMD_PICK16(6), SIMD_PICK16(6)}, {SIMD_PICK16(7), SIMD_PICK16(7)},
};
static _Alignas(32) const uint8_t kq_pick_pair[4][32] = {
    {SIMD_PICK16(0), SIMD_PICK16(1)}, {SIMD_PICK16(2), SIMD_PICK16(3)},
    {SIMD_PICK16(4), SIMD_PICK16(5)}, {SIMD_PICK16(6), SIMD_PICK16(7)},
};
#define K4_PAIR(a, b) K4_W4(a), K4_W4(b), K4_W4(a), K4_W4(b)
static _Alignas(32) const uint8_t kq_pair[4][32] = {
    {K4_PAIR(0, 1)}, {K4_PAIR(2, 3)}, {K4_PAIR(4, 5)}, {K4_PAIR(6, 7)}};
#undef K4_PAIR
#define Q6_PAIR(a) K4_W4(a), K4_W4(a + 2), K4_W4(a + 1), K4_W4(a + 3)
static _Alignas(32) const uint8_t kq_q6_pair[2][32] = {{Q6_PAIR(0)}, {Q6_PAIR(4)}};
#undef Q6_PAIR
#undef K4_W4

/* 8 int16 scales in both 128-bit lanes, from 8 int8 or uint8 values. */
static inline __m256i scales16_i8(const int8_t *p)
{
    return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)p)));
}

/* sum over chunk j's 64 weights (lo: sub-block 2j, hi: 2j+1, widened to
 * bytes) of weight x activation x scale, added to sumi; sc: the 8 scales */
SIMD_INLINE __m256i k4_chunk(__m256i sumi, __m256i lo, __m256i hi, const int8_t *q8, __m256i sc,
                             int j)
{
#ifdef KQ_VNNI
    const __m256i tl = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), lo, loadu256(q8));
    const __m256i th = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), hi, loadu256(q8 + 32));
    const __m256i s = _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)kq_pair[j]));
    return _mm256_dpwssd_avx_epi32(sumi, _mm256_packs_epi32(tl, th), s);
#else
    const __m256i plo = _mm256_maddubs_epi16(lo, loadu256(q8));
    const __m256i phi = _mm256_maddubs_epi16(hi, loadu256(q8 + 32));
    const __m256i slo = _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)kq_pick[2 * j]));
    const __m256i shi =
        _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)kq_pick[2 * j + 1]));
    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, slo));
    return _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, shi));
#endif
}

/* Chunk j of a super-block as bytes: lo sub-block 2j, hi 2j+1, their
 * fifth bits from hb = qh's 32 bytes where qh is given (Q5_K). */
SIMD_INLINE void k4_weights(const uint8_t *qs, const uint8_t *qh, __m256i hb, int j, __m256i *lo,
                            __m256i *hi)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i q = loadu256(qs + 32 * j);
    *lo = _mm256_and_si256(q, low4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
    if (qh) {
        *lo = _mm256_or_si256(*lo, bit_to(hb, 2 * j, 4));
        *hi = _mm256_or_si256(*hi, bit_to(hb, 2 * j + 1, 4));
    }
}

/* mins + dmin * y.d * (min b against bsums 2b and 2b+1); m16: each min
 * paired with itself as int16 */
SIMD_INLINE __m256 k4_min_term(__m256i m16, const block_q8_K *y, __m128 dd, __m256 mins)
{
    const __m256i msum = _mm256_madd_epi16(m16, loadu256(y->bsums));
    return _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)), _mm256_cvtepi32_ps(msum), mins);
}

SIMD_INLINE __m256 k4_superblock(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales,
                                 const block_q8_K *y, __m128 dd, __m256 acc, __m256 *mins)
{
    const __m128i sm = simd_k4_scales_mins(scales);
    *mins = k4_min_term(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), y, dd, *mins);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    const __m256i hb = qh ? loadu256(qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256i lo, hi;
        k4_weights(qs, qh, hb, j, &lo, &hi);
        sumi = k4_chunk(sumi, lo, hi, y->qs + 64 * j, sc, j);
    }
    return _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi), acc);
}

/*
 * Multi-row: NR rows in lockstep against one y, each row with its own acc
 * and mins and exactly the one-row float operations, so results are
 * bit-identical to vec_dot per row (the quant_kq_avx512.c scheme; the
 * compiler shares y's loads between the unrolled rows). Rows go in pairs:
 * with 16 ymm registers four rows gained nothing (Q4_K 768 columns in L1:
 * 16.0 ns/row alone, 17.5 by four, 16.1 by two; Q5_K 22.1, 20.3, 21.3),
 * the AVX2 kernel being bound by its integer work rather than per-call
 * cost. Long rows (SIMD_ROWS_LONG) go one at a time.
 */
#define DEFINE_DOT_K4(name, xtype, QH)                                                             \
    SIMD_INLINE void name##_nr(int64_t n, const int NR, float *restrict s,                         \
                               const uint8_t *restrict x0, size_t stride,                          \
                               const block_q8_K *restrict y)                                       \
    {                                                                                              \
        const size_t ahead = simd_rows_ahead(NR, stride);                                          \
        __m256 acc[4], mins[4];                                                                    \
        for (int r = 0; r < NR; r++)                                                               \
            acc[r] = mins[r] = _mm256_setzero_ps();                                                \
        for (int64_t i = 0; i < n / QK_K; i++) {                                                   \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                   \
            {                                                                                      \
                const xtype *x = (const xtype *)(x0 + (size_t)r * stride);                         \
                simd_prefetch_ahead(&x[i], sizeof x[i], ahead);                                    \
                acc[r] = k4_superblock(x[i].qs, QH(i), x[i].scales, &y[i],                         \
                                       simd_f16_pair(&x[i].d, y[i].d), acc[r], &mins[r]);          \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < NR; r++)                                                               \
            s[r] = simd_hsum_f32x8(_mm256_sub_ps(acc[r], mins[r]));                                \
    }                                                                                              \
    void name(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)      \
    {                                                                                              \
        name##_nr(n, 1, s, vx, sizeof(xtype), vy);                                                 \
    }                                                                                              \
    void name##_rows(int64_t n, int nr, float *restrict s, const void *restrict vx, size_t stride, \
                     const void *restrict vy)                                                      \
    {                                                                                              \
        const uint8_t *x = vx;                                                                     \
        if (SIMD_ROWS_LONG(stride)) {                                                              \
            for (int r = 0; r < nr; r++)                                                           \
                name##_nr(n, 1, s + r, x + (size_t)r * stride, stride, vy);                        \
            return;                                                                                \
        }                                                                                          \
        for (; nr >= 2; nr -= 2, s += 2, x += 2 * stride)                                          \
            name##_nr(n, 2, s, x, stride, vy);                                                     \
        if (nr == 1)                                                                               \
            name##_nr(n, 1, s, x, stride, vy);                                                     \
    }

/* Activations per batched call of the 256-bit super-block kernels (16 ymm
 * registers). */
#define KQ_MULTI_MAX 2

/*
 * Batches (quant.h: dot_multi): each super-block's scales, mins and weight
 * bytes are unpacked once for two plain Q8_K rows, each of which then gets
 * exactly k4_superblock's operations in its order, so the bits are
 * vec_dot's.
 */
#define DEFINE_DOT_K4_MULTI(name, xtype, QH)                                                       \
    SIMD_INLINE void name##_row_na(int64_t nb, const xtype *restrict x, const uint8_t *yb,         \
                                   size_t ys, float *out, size_t s_stride, const int NA)           \
    {                                                                                              \
        __m256 acc[KQ_MULTI_MAX], mins[KQ_MULTI_MAX];                                              \
        for (int v = 0; v < NA; v++)                                                               \
            acc[v] = mins[v] = _mm256_setzero_ps();                                                \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            simd_prefetch(&x[i], sizeof x[i]);                                                     \
            const __m128i sm = simd_k4_scales_mins(x[i].scales);                                   \
            const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));                   \
            const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));                 \
            const uint8_t *qh = QH(i);                                                             \
            const __m256i hb = qh ? loadu256(qh) : _mm256_setzero_si256();                         \
            const block_q8_K *y[KQ_MULTI_MAX];                                                     \
            __m128 dd[KQ_MULTI_MAX];                                                               \
            __m256i sumi[KQ_MULTI_MAX];                                                            \
            _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                                   \
            {                                                                                      \
                y[v] = (const block_q8_K *)(yb + (size_t)v * ys) + i;                              \
                dd[v] = simd_f16_pair(&x[i].d, y[v]->d);                                           \
                mins[v] = k4_min_term(m16, y[v], dd[v], mins[v]);                                  \
                sumi[v] = _mm256_setzero_si256();                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                    \
            {                                                                                      \
                __m256i lo, hi;                                                                    \
                k4_weights(x[i].qs, qh, hb, j, &lo, &hi);                                          \
                _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                               \
                    sumi[v] = k4_chunk(sumi[v], lo, hi, y[v]->qs + 64 * j, sc, j);                 \
            }                                                                                      \
            _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                                   \
                acc[v] = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd[v]),                             \
                                         _mm256_cvtepi32_ps(sumi[v]), acc[v]);                     \
        }                                                                                          \
        for (int v = 0; v < NA; v++)                                                               \
            out[(size_t)v * s_stride] = simd_hsum_f32x8(_mm256_sub_ps(acc[v], mins[v]));           \
    }                                                                                              \
    SIMD_MULTI_ENTRY(name##_multi, name##_row_na, xtype, QK_K, KQ_MULTI_MAX)

/*
 * Q6_K: two halves of 128; in half h, with ql = ql + 64h and qh = qh + 32h,
 * the four groups of 32 are
 *   ql[0..31] & 15 | qh bits 0-1,  ql[32..63] & 15 | qh bits 2-3,
 *   ql[0..31] >> 4 | qh bits 4-5,  ql[32..63] >> 4 | qh bits 6-7,
 * each two 16-element sub-blocks with int8 scales 8h + 2g, 8h + 2g + 1,
 * and u = q + 32 in 0..63, whose offset is taken off up front with the
 * bsums. Per group: AVX2 vpmaddubsw, vpmaddwd by the two scales, an add;
 * AVX-VNNI vpdpbusd (a lane: 4 * 63 * 128 < 2^15), and for two groups one
 * vpackssdw and one vpdpwssd by their four scales.
 */
SIMD_INLINE __m256i q6_half(__m256i sumi, const __m256i u[4], const int8_t *q8, __m256i sc)
{
#ifdef KQ_VNNI
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) {
        const __m256i t0 = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u[2 * p],
                                                   loadu256(q8 + 64 * p));
        const __m256i t1 = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u[2 * p + 1],
                                                   loadu256(q8 + 64 * p + 32));
        const __m256i s = _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)kq_q6_pair[p]));
        sumi = _mm256_dpwssd_avx_epi32(sumi, _mm256_packs_epi32(t0, t1), s);
    }
#else
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m256i p = _mm256_maddubs_epi16(u[g], loadu256(q8 + 32 * g));
        const __m256i s = _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)kq_pick_pair[g]));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
    }
#endif
    return sumi;
}

/*
 * name: one row against one Q8_K row; name##_multi (quant.h: dot_multi):
 * each super-block's 6-bit weights rebuilt once per half for two Q8_K rows,
 * each of which then gets exactly the one-row operations in their order,
 * so the bits are vec_dot's.
 */
#define DEFINE_DOT_Q6K(name)                                                                       \
    SIMD_INLINE void name##_row_na(int64_t nb, const block_q6_K *restrict x, const uint8_t *yb,    \
                                   size_t ys, float *out, size_t s_stride, const int NA)           \
    {                                                                                              \
        const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);              \
        __m256 acc[KQ_MULTI_MAX];                                                                  \
        for (int v = 0; v < NA; v++)                                                               \
            acc[v] = _mm256_setzero_ps();                                                          \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            simd_prefetch(&x[i], sizeof x[i]);                                                     \
            const __m256i sc_all =                                                                 \
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));               \
            const block_q8_K *y[KQ_MULTI_MAX];                                                     \
            __m256i sumi[KQ_MULTI_MAX];                                                            \
            _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                                   \
            {                                                                                      \
                y[v] = (const block_q8_K *)(yb + (size_t)v * ys) + i;                              \
                /* 32 * sum sc * bsums, the offset of u = q + 32, taken off up front */            \
                const __m256i off =                                                                \
                    _mm256_slli_epi32(_mm256_madd_epi16(sc_all, loadu256(y[v]->bsums)), 5);        \
                sumi[v] = _mm256_sub_epi32(_mm256_setzero_si256(), off);                           \
            }                                                                                      \
            for (int h = 0; h < 2; h++) {                                                          \
                const __m256i l0 = loadu256(x[i].ql + 64 * h);                                     \
                const __m256i l1 = loadu256(x[i].ql + 64 * h + 32);                                \
                const __m256i qh = loadu256(x[i].qh + 32 * h);                                     \
                const __m256i lo0 = _mm256_and_si256(l0, low4), lo1 = _mm256_and_si256(l1, low4);  \
                const __m256i hi0 = _mm256_and_si256(_mm256_srli_epi16(l0, 4), low4);              \
                const __m256i hi1 = _mm256_and_si256(_mm256_srli_epi16(l1, 4), low4);              \
                const __m256i u[4] = {                                                             \
                    _mm256_or_si256(lo0, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),      \
                    _mm256_or_si256(lo1, _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),      \
                    _mm256_or_si256(hi0, _mm256_and_si256(qh, bits45)),                            \
                    _mm256_or_si256(hi1, _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)),      \
                };                                                                                 \
                const __m256i sc = scales16_i8(x[i].scales + 8 * h);                               \
                _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                               \
                    sumi[v] = q6_half(sumi[v], u, y[v]->qs + 128 * h, sc);                         \
            }                                                                                      \
            _Pragma("GCC unroll 2") for (int v = 0; v < NA; v++)                                   \
                acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(y[v]->d * simd_f16(x[i].d)),               \
                                         _mm256_cvtepi32_ps(sumi[v]), acc[v]);                     \
        }                                                                                          \
        for (int v = 0; v < NA; v++)                                                               \
            out[(size_t)v * s_stride] = simd_hsum_f32x8(acc[v]);                                   \
    }                                                                                              \
    SIMD_ROW_NA_ENTRIES(name, name##_multi, name##_row_na, block_q6_K, QK_K, KQ_MULTI_MAX)

#define K4_NO_QH(i) NULL
#define K4_QH(i) x[i].qh

#endif
