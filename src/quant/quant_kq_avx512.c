/*
 * quant_kq_avx512.c — AVX-512 (BW, VL, VNNI) dot products of the super-block
 * types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) against Q8_K.
 *
 * The plan of quant_kq_avx2.c at twice the width: 64 weights per register,
 * widened to unsigned bytes in element order, multiplied with 64 activation
 * bytes by vpmaddubsw into int16 pair sums, then scaled per sub-block and
 * summed into int32 lanes by one VNNI vpdpwssd (madd + add). Offsets come out
 * through Q8_K's bsums once per super-block; one float FMA per super-block.
 *
 * Register layouts (four 128-bit lanes, L0..L3):
 *   32-element sub-blocks (Q4_K, Q5_K): L0-L1 one sub-block, L2-L3 the next.
 *   16-element sub-blocks (Q2_K, Q3_K, Q6_K): one sub-block per lane.
 * Scales sit as int16 in every lane (8 per lane) and pshufb spreads the
 * right one over each lane; sub-block high bits (Q3_K, Q5_K) are merged with
 * a byte mask from vptestmb and a masked add.
 *
 * IQ4_XS has signed table values: the magnitudes go to vpmaddubsw and the
 * signs onto the activations (a masked negate), as the AVX2 sign trick.
 *
 * Bounds as in the AVX2 file: int16 pair sums <= 2 * 127 * 127 (IQ4_XS),
 * int32 lanes < 2^26.
 */
#include "quant/quant_simd.h"

#include <stdbool.h>

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "quant_kq_avx512.c needs the AVX512_FLAGS of the Makefile"
#endif

static inline __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* [v | v >> s] with v 32 bytes: two bit-fields of the same bytes side by side. */
static inline __m512i pair_shifted(__m256i v, int s)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, s), 1);
}

/*
 * pshufb controls spreading int16 scales (8 per 128-bit lane) over lanes:
 * PICK_PAIR(m): lanes 0-1 take element 2m, lanes 2-3 element 2m+1 (two
 * 32-element sub-blocks per register); PICK_QUAD(q): lane l takes element
 * 4q + l (four 16-element sub-blocks).
 */
static _Alignas(64) const uint8_t k_pick[6][64] = {
    {SIMD_PICK16(0), SIMD_PICK16(0), SIMD_PICK16(1), SIMD_PICK16(1)},
    {SIMD_PICK16(2), SIMD_PICK16(2), SIMD_PICK16(3), SIMD_PICK16(3)},
    {SIMD_PICK16(4), SIMD_PICK16(4), SIMD_PICK16(5), SIMD_PICK16(5)},
    {SIMD_PICK16(6), SIMD_PICK16(6), SIMD_PICK16(7), SIMD_PICK16(7)},
    {SIMD_PICK16(0), SIMD_PICK16(1), SIMD_PICK16(2), SIMD_PICK16(3)},
    {SIMD_PICK16(4), SIMD_PICK16(5), SIMD_PICK16(6), SIMD_PICK16(7)},
};
#define PICK_PAIR(m) _mm512_load_si512(k_pick[m])
#define PICK_QUAD(q) _mm512_load_si512(k_pick[4 + (q)])

/* 8 int16 scales in all four lanes, from 8 bytes (signed or unsigned). */
static inline __m512i scales16_x4(__m128i eight_i16)
{
    return _mm512_broadcast_i32x4(eight_i16);
}

/* Byte mask: lanes L0-L1 test bit a, L2-L3 bit b, of each byte of [v | v]. */
static inline __mmask64 bits_pair(__m512i vv, int a, int b)
{
    const __m512i m = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << a)),
                                         _mm256_set1_epi8((char)(1 << b)), 1);
    return _mm512_test_epi8_mask(vv, m);
}

/*
 * The sum of v's 16 lanes in a fixed order: lane i with i + 8, then i + 4,
 * i + 2, i + 1 (the tree gcc's _mm512_reduce_add_ps uses, written out so
 * that hsum16_x4 can repeat it exactly).
 */
static inline float hsum16(__m512 v)
{
    const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    u = _mm_add_ps(u, _mm_movehl_ps(u, u));
    u = _mm_add_ss(u, _mm_movehdup_ps(u));
    return _mm_cvtss_f32(u);
}

/* hsum16 of four registers at once: the same additions of the same lanes,
 * with the four rows side by side in the 128-bit lanes. */
static inline __m128 hsum16_x4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* [a lo256 + a hi256 | b ...] and [c ... | d ...] */
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* one 128-bit lane per row: low half + high half */
    __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    w = _mm512_add_ps(w, _mm512_permute_ps(w, _MM_SHUFFLE(1, 0, 3, 2)));
    w = _mm512_add_ps(w, _mm512_movehdup_ps(w));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), w));
}

/* s[r] = hsum16(v[r]) for r < nr (1..4). */
SIMD_INLINE void hsum16_rows(int nr, float *s, const __m512 *v)
{
    if (nr == 4)
        _mm_storeu_ps(s, hsum16_x4(v[0], v[1], v[2], v[3]));
    else
        for (int r = 0; r < nr; r++)
            s[r] = hsum16(v[r]);
}

/*
 * The two entry points of a kernel name##_nr(n, NR, s, x, stride, y): the
 * one-row vec_dot, and name##_rows, which runs any number of rows four at
 * a time, or one at a time where `lockstep` is 0 or the rows are long
 * (SIMD_ROWS_LONG). Q6_K runs one at a time: its one-row kernel already
 * streams at memory speed, and four rows in lockstep measured slower from
 * DRAM (2048x768, 1 thread: 30-35 against 41 GB/s, at every prefetch
 * distance tried) though faster in cache.
 */
#define DEFINE_ROWS_ENTRIES(name, xtype, lockstep)                                             \
    void name(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)  \
    {                                                                                          \
        name##_nr(n, 1, s, vx, sizeof(xtype), vy);                                             \
    }                                                                                          \
    void name##_rows(int64_t n, int nr, float *restrict s, const void *restrict vx,            \
                     size_t stride, const void *restrict vy)                                   \
    {                                                                                          \
        const uint8_t *x = vx;                                                                 \
        if (!(lockstep) || SIMD_ROWS_LONG(stride)) {                                           \
            for (int r = 0; r < nr; r++)                                                       \
                name##_nr(n, 1, s + r, x + (size_t)r * stride, stride, vy);                    \
            return;                                                                            \
        }                                                                                      \
        for (; nr >= 4; nr -= 4, s += 4, x += 4 * stride)                                      \
            name##_nr(n, 4, s, x, stride, vy);                                                 \
        if (nr == 3)                                                                           \
            name##_nr(n, 3, s, x, stride, vy);                                                 \
        else if (nr == 2)                                                                      \
            name##_nr(n, 2, s, x, stride, vy);                                                 \
        else if (nr == 1)                                                                      \
            name##_nr(n, 1, s, x, stride, vy);                                                 \
    }

/* --- Q4_K and Q5_K ----------------------------------------------------- */

/*
 * Super-blocks go in pairs (a, b): the per-super-block work outside the
 * 256 products (unpacking scales and mins, converting d and dmin, the min
 * term) is done once for both at 256/512-bit width, which measured ~10%
 * faster than one at a time. An odd last super-block pairs with itself and
 * its copy's min term and product are dropped.
 */

/* sum_b sc_b * sum q * y of one super-block; sm holds its scales (bytes 0..7). */
SIMD_INLINE __m512i k4_sumi(const uint8_t *qs, const uint8_t *qh, const int8_t *q8, __m128i sm)
{
    const __m512i sc = scales16_x4(_mm_cvtepu8_epi16(sm));
    const __m512i low4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    const __m512i hb = qh ? _mm512_broadcast_i64x4(load256(qh)) : _mm512_setzero_si512();
    __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        /* 64 qs bytes: chunks 2k and 2k+1, i.e. sub-blocks 4k..4k+3 in
         * [lo 2k, lo 2k+1] and [hi 2k, hi 2k+1]; regroup them in order */
        const __m512i q = load512(qs + 64 * k);
        const __m512i lo = _mm512_and_si512(q, low4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
        __m512i u0 = _mm512_shuffle_i64x2(lo, hi, 0x44); /* sub-blocks 4k, 4k+1 */
        __m512i u1 = _mm512_shuffle_i64x2(lo, hi, 0xEE); /* sub-blocks 4k+2, 4k+3 */
        if (qh) {
            u0 = _mm512_mask_add_epi8(u0, bits_pair(hb, 4 * k, 4 * k + 1), u0, sixteen);
            u1 = _mm512_mask_add_epi8(u1, bits_pair(hb, 4 * k + 2, 4 * k + 3), u1, sixteen);
        }
        const __m512i p0 = _mm512_maddubs_epi16(u0, load512(q8 + 128 * k));
        const __m512i p1 = _mm512_maddubs_epi16(u1, load512(q8 + 128 * k + 64));
        sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, PICK_PAIR(2 * k)));
        sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, PICK_PAIR(2 * k + 1)));
    }
    return sumi;
}

/* What a pair of super-blocks shares: its scales, and its d * y.d. */
typedef struct k4_pair {
    __m256i sm;    /* scales and mins: super-block a in the low 16 bytes, b in the high */
    __m512 da, db; /* d * y.d of a and of b, broadcast */
} k4_pair;

/*
 * Unpacks the scales of super-blocks a and b (hd: their d, dmin halves) and
 * adds both min terms, dmin * y.d * sum_b m_b * bsums, to *mins; b's only
 * if pair_b (else b is a again).
 */
SIMD_INLINE k4_pair k4_pair_start(const uint8_t *sc_a, const uint8_t *sc_b, const ggml_half *hd_a,
                                  const ggml_half *hd_b, const block_q8_K *ya, const block_q8_K *yb,
                                  bool pair_b, __m512 *mins)
{
    k4_pair p;
    p.sm = simd_k4_scales_mins_x2(sc_a, sc_b);
    uint32_t ha, hb;
    memcpy(&ha, hd_a, sizeof ha);
    memcpy(&hb, hd_b, sizeof hb);
    const __m128 h = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)ha), (int)hb, 1));
    const __m128 dd = _mm_mul_ps(h, _mm_setr_ps(ya->d, ya->d, yb->d, yb->d)); /* d a, dmin a, d b, dmin b */
    const __m512 d4 = _mm512_castps128_ps512(dd);
    p.da = _mm512_broadcastss_ps(dd);
    p.db = _mm512_permutexvar_ps(_mm512_set1_epi32(2), d4);
    /* mins paired with themselves against bsums 2b, 2b+1: lanes 0..7 a, 8..15 b */
    const __m512i m16 = _mm512_cvtepu8_epi16(_mm256_unpackhi_epi8(p.sm, p.sm));
    const __m512i bs = _mm512_inserti64x4(_mm512_castsi256_si512(load256(ya->bsums)), load256(yb->bsums), 1);
    const __m512i dmin_lanes = _mm512_inserti64x4(_mm512_set1_epi32(1), _mm256_set1_epi32(3), 1);
    const __m512 dmin = _mm512_maskz_permutexvar_ps(pair_b ? 0xFFFF : 0x00FF, dmin_lanes, d4);
    *mins = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(_mm512_madd_epi16(m16, bs)), *mins);
    return p;
}

/*
 * Rows go through the kernels NR (1..4) at a time: the activation super-
 * block is loaded once per step and every row keeps its own acc and mins in
 * registers, doing exactly the float operations the one-row kernel does, in
 * the same order; the final reductions of four rows are done transposed
 * (hsum16_x4), pairing the same lanes as hsum16. So each row's result is
 * bit-identical whether it ran alone or with others.
 */
#define DEFINE_DOT_K4(name, xtype, QH)                                                                 \
    SIMD_INLINE void name##_nr(int64_t n, const int NR, float *restrict s, const uint8_t *restrict x0, \
                               size_t stride, const block_q8_K *restrict y)                            \
    {                                                                                                  \
        const int64_t nb = n / QK_K;                                                                   \
        const size_t ahead = simd_rows_ahead(NR, stride);                                              \
        __m512 acc[4], mins[4];                                                                        \
        for (int r = 0; r < NR; r++)                                                                   \
            acc[r] = mins[r] = _mm512_setzero_ps();                                                    \
        for (int64_t a = 0; a < nb; a += 2) {                                                          \
            const int64_t b = a + 1 < nb ? a + 1 : a;                                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < NR; r++)                                       \
            {                                                                                          \
                const xtype *x = (const xtype *)(x0 + (size_t)r * stride);                             \
                simd_prefetch_ahead(&x[a], 2 * sizeof *x, ahead);                                      \
                const k4_pair p = k4_pair_start(x[a].scales, x[b].scales, &x[a].d, &x[b].d, &y[a],     \
                                                &y[b], b != a, &mins[r]);                              \
                const __m512i sa = k4_sumi(x[a].qs, QH(a), y[a].qs, _mm256_castsi256_si128(p.sm));     \
                acc[r] = _mm512_fmadd_ps(p.da, _mm512_cvtepi32_ps(sa), acc[r]);                        \
                if (b != a) {                                                                          \
                    const __m512i sb = k4_sumi(x[b].qs, QH(b), y[b].qs,                                \
                                               _mm256_extracti128_si256(p.sm, 1));                     \
                    acc[r] = _mm512_fmadd_ps(p.db, _mm512_cvtepi32_ps(sb), acc[r]);                    \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        for (int r = 0; r < NR; r++)                                                                   \
            acc[r] = _mm512_sub_ps(acc[r], mins[r]);                                                   \
        hsum16_rows(NR, s, acc);                                                                       \
    }                                                                                                  \
    DEFINE_ROWS_ENTRIES(name, xtype, 1)

#define Q4K_NO_QH(i) NULL
#define Q5K_QH(i) x[i].qh
DEFINE_DOT_K4(quant_vec_dot_q4_K_avx512, block_q4_K, Q4K_NO_QH)
DEFINE_DOT_K4(quant_vec_dot_q5_K_avx512, block_q5_K, Q5K_QH)

/* --- Q6_K -------------------------------------------------------------- */

/*
 * Half h: ql[64h..64h+63] & 15 are elements 0..63 of the half, >> 4 are
 * 64..127; their top bits are qh[32h + l] bits 0-1, 2-3 (elements 0..63)
 * and 4-5, 6-7 (64..127), i.e. bits 0-1 and 4-5 of [qh | qh >> 2].
 */
SIMD_INLINE void quant_vec_dot_q6_K_avx512_nr(int64_t n, const int NR, float *restrict s,
                                              const uint8_t *restrict x0, size_t stride,
                                              const block_q8_K *restrict y)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    const __m512i pick_lo = PICK_QUAD(0), pick_hi = PICK_QUAD(1);
    const size_t ahead = simd_rows_ahead(NR, stride);
    __m512 acc[4];
    for (int r = 0; r < NR; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256i bsums = load256(y[i].bsums);
        __m512i yq[4];
        for (int k = 0; k < 4; k++)
            yq[k] = load512(y[i].qs + 64 * k);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * stride);
            simd_prefetch_ahead(&x[i], sizeof x[i], ahead);
            const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
            /* -32 * sum sc * bsums, in the low 8 lanes */
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc_all, bsums), 5);
            __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), off));
            for (int h = 0; h < 2; h++) {
                const __m128i half = h ? _mm256_extracti128_si256(sc_all, 1) : _mm256_castsi256_si128(sc_all);
                const __m512i sc = scales16_x4(half);
                const __m512i l = load512(x[i].ql + 64 * h);
                const __m512i hh = pair_shifted(load256(x[i].qh + 32 * h), 2);
                /* A | (B & C): 0xF8 */
                const __m512i lo = _mm512_and_si512(l, low4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(l, 4), low4);
                const __m512i u0 = _mm512_ternarylogic_epi32(lo, _mm512_slli_epi16(hh, 4), bits45, 0xF8);
                const __m512i u1 = _mm512_ternarylogic_epi32(hi, hh, bits45, 0xF8);
                const __m512i p0 = _mm512_maddubs_epi16(u0, yq[2 * h]);
                const __m512i p1 = _mm512_maddubs_epi16(u1, yq[2 * h + 1]);
                sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, pick_lo));
                sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, pick_hi));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi),
                                     acc[r]);
        }
    }
    hsum16_rows(NR, s, acc);
}
DEFINE_ROWS_ENTRIES(quant_vec_dot_q6_K_avx512, block_q6_K, 0)

/* --- Q3_K and Q2_K ----------------------------------------------------- */

/*
 * Both: half h has 32 bytes of qs; [q | q >> 2] & 3 are elements 0..63 of
 * the half (bit-fields 0 and 1), ([q | q >> 2] >> 4) & 3 are 64..127
 * (fields 2 and 3). Sub-blocks of 16, one per 128-bit lane.
 * Q3_K's third bit of field g in half h is bit 4h + g of hmask[l].
 */
void quant_vec_dot_q3_K_avx512(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i low2 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    const __m512i pick_lo = PICK_QUAD(0), pick_hi = PICK_QUAD(1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m128i sc8 = simd_q3k_scales(x[i].scales);
        /* -4 * sum sc * bsums, in the low 8 lanes */
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[i].bsums)), 2);
        __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), off));
        const __m512i hm = _mm512_broadcast_i64x4(load256(x[i].hmask));
        for (int h = 0; h < 2; h++) {
            const __m128i half = h ? _mm_srli_si128(sc8, 8) : sc8;
            const __m512i sc = scales16_x4(_mm_cvtepi8_epi16(half));
            const __m512i q = pair_shifted(load256(x[i].qs + 32 * h), 2);
            __m512i u0 = _mm512_and_si512(q, low2);
            __m512i u1 = _mm512_and_si512(_mm512_srli_epi16(q, 4), low2);
            u0 = _mm512_mask_add_epi8(u0, bits_pair(hm, 4 * h, 4 * h + 1), u0, four);
            u1 = _mm512_mask_add_epi8(u1, bits_pair(hm, 4 * h + 2, 4 * h + 3), u1, four);
            const __m512i p0 = _mm512_maddubs_epi16(u0, load512(y[i].qs + 128 * h));
            const __m512i p1 = _mm512_maddubs_epi16(u1, load512(y[i].qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, pick_lo));
            sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, pick_hi));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

void quant_vec_dot_q2_K_avx512(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i low2 = _mm512_set1_epi8(3);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m512i pick_lo = PICK_QUAD(0), pick_hi = PICK_QUAD(1);
    __m512 acc = _mm512_setzero_ps();
    __m256 mins = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), low4));
        const __m256i msum = _mm256_madd_epi16(m16, load256(y[i].bsums));
        mins = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * simd_f16(x[i].dmin)), _mm256_cvtepi32_ps(msum), mins);

        const __m128i sc8 = _mm_and_si128(raw, low4);
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m128i half = h ? _mm_srli_si128(sc8, 8) : sc8;
            const __m512i sc = scales16_x4(_mm_cvtepu8_epi16(half));
            const __m512i q = pair_shifted(load256(x[i].qs + 32 * h), 2);
            const __m512i u0 = _mm512_and_si512(q, low2);
            const __m512i u1 = _mm512_and_si512(_mm512_srli_epi16(q, 4), low2);
            const __m512i p0 = _mm512_maddubs_epi16(u0, load512(y[i].qs + 128 * h));
            const __m512i p1 = _mm512_maddubs_epi16(u1, load512(y[i].qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, pick_lo));
            sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, pick_hi));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc) - simd_hsum_f32x8(mins);
}

/* --- IQ4_XS ------------------------------------------------------------ */

/*
 * 64 qs bytes hold sub-blocks 4k..4k+3, 16 bytes each: the low nibbles of a
 * sub-block's bytes are its elements 0..15, the high nibbles 16..31. Two
 * vpermt2q interleave [lo | hi] lanes back into element order. The table
 * values are signed (-127..113): vpmaddubsw gets their magnitudes, and y
 * negated where the value is negative (nibbles 0..7); 2 * 127 * 127 fits
 * int16.
 */
void quant_vec_dot_iq4_xs_avx512(int64_t n, float *restrict s, const void *restrict vx,
                                 const void *restrict vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const __m128i table = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_abs_epi8(table)); /* |value| */
    const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11); /* sub-blocks 4k, 4k+1 */
    const __m512i second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15); /* 4k+2, 4k+3 */
    const __m512i low4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m512i sc = scales16_x4(simd_iq4xs_scales(&x[i]));
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const __m512i q = load512(x[i].qs + 64 * k);
            const __m512i lo = _mm512_and_si512(q, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
            const __m512i nib[2] = {_mm512_permutex2var_epi64(lo, first, hi),
                                    _mm512_permutex2var_epi64(lo, second, hi)};
            for (int j = 0; j < 2; j++) {
                const int b = 4 * k + 2 * j; /* sub-blocks b, b + 1 */
                const __m512i y8 = load512(y[i].qs + 32 * b);
                const __mmask64 neg = _mm512_testn_epi8_mask(nib[j], eight);
                const __m512i ys = _mm512_mask_sub_epi8(y8, neg, _mm512_setzero_si512(), y8);
                const __m512i prod = _mm512_maddubs_epi16(_mm512_shuffle_epi8(lut, nib[j]), ys);
                sumi = _mm512_dpwssd_epi32(sumi, prod, _mm512_shuffle_epi8(sc, PICK_PAIR(b / 2)));
            }
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}
