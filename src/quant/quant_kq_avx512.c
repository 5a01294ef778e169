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
 * IQ4_XS is the exception: its table values are signed, so it biases them by
 * 128 into unsigned bytes and uses vpdpbusd (no int16 stage to saturate),
 * scales the int32 lanes with vpmulld, and subtracts 128 * sum(ls * bsums).
 *
 * Bounds as in the AVX2 file: int16 pair sums <= 16002, int32 lanes < 2^26.
 */
#include "quant/quant_simd.h"

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

/* pshufb control: every int16 of 128-bit lane l takes int16 element e_l of that lane. */
static inline __m512i pick16_lanes(int e0, int e1, int e2, int e3)
{
#define PICK(e) _mm_set1_epi16((short)(((2 * (e) + 1) << 8) | (2 * (e))))
    const __m256i lo = _mm256_set_m128i(PICK(e1), PICK(e0));
    const __m256i hi = _mm256_set_m128i(PICK(e3), PICK(e2));
#undef PICK
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* 8 int16 scales in all four lanes, from 8 bytes (signed or unsigned). */
static inline __m512i scales16_x4(__m128i eight_i16)
{
    return _mm512_broadcast_i32x4(eight_i16);
}

/* Byte mask: lanes L0-L1 test bit a, L2-L3 bit b, of each byte of [v | v]. */
static inline __mmask64 bits_pair(__m512i vv, int a, int b)
{
    const __m512i m = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << a)), _mm256_set1_epi8((char)(1 << b)), 1);
    return _mm512_test_epi8_mask(vv, m);
}

/* --- Q4_K and Q5_K ----------------------------------------------------- */

SIMD_INLINE __m512 k4_superblock(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales,
                                 const block_q8_K *y, __m128 dd, __m512 acc, __m256 *mins)
{
    const __m128i sm = simd_k4_scales_mins(scales);
    /* min b against bsums 2b and 2b+1: pair each min with itself */
    const __m256i msum = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), load256(y->bsums));
    *mins = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)), _mm256_cvtepi32_ps(msum), *mins);

    const __m512i sc = scales16_x4(_mm_cvtepu8_epi16(sm));
    const __m512i low4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    const __m512i hb = qh ? _mm512_broadcast_i64x4(load256(qh)) : _mm512_setzero_si512();
    __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        /* 64 qs bytes: chunks 2k and 2k+1, i.e. sub-blocks 4k..4k+3 in
         * [lo 2k, lo 2k+1] and [hi 2k, hi 2k+1]; regroup them in order */
        const __m512i q = load512(qs + 64 * k);
        const __m512i lo = _mm512_and_si512(q, low4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
        __m512i u0 = _mm512_shuffle_i64x2(lo, hi, 0x44); /* sub-blocks 4k, 4k+1 */
        __m512i u1 = _mm512_shuffle_i64x2(lo, hi, 0xEE); /* sub-blocks 4k+2, 4k+3 */
        if (qh) {
            u0 = _mm512_mask_add_epi8(u0, bits_pair(hb, 4 * k, 4 * k + 1), u0, sixteen);
            u1 = _mm512_mask_add_epi8(u1, bits_pair(hb, 4 * k + 2, 4 * k + 3), u1, sixteen);
        }
        const __m512i p0 = _mm512_maddubs_epi16(u0, load512(y->qs + 128 * k));
        const __m512i p1 = _mm512_maddubs_epi16(u1, load512(y->qs + 128 * k + 64));
        sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, pick16_lanes(4 * k, 4 * k, 4 * k + 1, 4 * k + 1)));
        sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, pick16_lanes(4 * k + 2, 4 * k + 2, 4 * k + 3, 4 * k + 3)));
    }
    return _mm512_fmadd_ps(_mm512_broadcastss_ps(dd), _mm512_cvtepi32_ps(sumi), acc);
}

void quant_vec_dot_q4_K_avx512(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    __m512 acc = _mm512_setzero_ps();
    __m256 mins = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++)
        acc = k4_superblock(x[i].qs, NULL, x[i].scales, &y[i], simd_f16_pair(&x[i].d, y[i].d), acc, &mins);
    *s = _mm512_reduce_add_ps(acc) - simd_hsum_f32x8(mins);
}

void quant_vec_dot_q5_K_avx512(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    __m512 acc = _mm512_setzero_ps();
    __m256 mins = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++)
        acc = k4_superblock(x[i].qs, x[i].qh, x[i].scales, &y[i], simd_f16_pair(&x[i].d, y[i].d), acc, &mins);
    *s = _mm512_reduce_add_ps(acc) - simd_hsum_f32x8(mins);
}

/* --- Q6_K -------------------------------------------------------------- */

/*
 * Half h: ql[64h..64h+63] & 15 are elements 0..63 of the half, >> 4 are
 * 64..127; their top bits are qh[32h + l] bits 0-1, 2-3 (elements 0..63)
 * and 4-5, 6-7 (64..127), i.e. bits 0-1 and 4-5 of [qh | qh >> 2].
 */
void quant_vec_dot_q6_K_avx512(int64_t n, float *restrict s, const void *restrict vx,
                               const void *restrict vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    const __m512i pick_lo = pick16_lanes(0, 1, 2, 3), pick_hi = pick16_lanes(4, 5, 6, 7);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m256i off = _mm256_madd_epi16(sc_all, load256(y[i].bsums));
        /* -32 * sum sc * bsums, in the low 8 lanes */
        __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5)));
        for (int h = 0; h < 2; h++) {
            const __m512i sc = scales16_x4(h ? _mm256_extracti128_si256(sc_all, 1) : _mm256_castsi256_si128(sc_all));
            const __m512i l = load512(x[i].ql + 64 * h);
            const __m512i hh = pair_shifted(load256(x[i].qh + 32 * h), 2);
            /* A | (B & C): 0xF8 */
            const __m512i u0 = _mm512_ternarylogic_epi32(_mm512_and_si512(l, low4), _mm512_slli_epi16(hh, 4), bits45, 0xF8);
            const __m512i u1 = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4), hh, bits45, 0xF8);
            const __m512i p0 = _mm512_maddubs_epi16(u0, load512(y[i].qs + 128 * h));
            const __m512i p1 = _mm512_maddubs_epi16(u1, load512(y[i].qs + 128 * h + 64));
            sumi = _mm512_dpwssd_epi32(sumi, p0, _mm512_shuffle_epi8(sc, pick_lo));
            sumi = _mm512_dpwssd_epi32(sumi, p1, _mm512_shuffle_epi8(sc, pick_hi));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

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
    const __m512i pick_lo = pick16_lanes(0, 1, 2, 3), pick_hi = pick16_lanes(4, 5, 6, 7);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m128i sc8 = simd_q3k_scales(x[i].scales);
        const __m256i off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), load256(y[i].bsums));
        __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 2)));
        const __m512i hm = _mm512_broadcast_i64x4(load256(x[i].hmask));
        for (int h = 0; h < 2; h++) {
            const __m512i sc = scales16_x4(_mm_cvtepi8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
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
    const __m512i pick_lo = pick16_lanes(0, 1, 2, 3), pick_hi = pick16_lanes(4, 5, 6, 7);
    __m512 acc = _mm512_setzero_ps();
    __m256 mins = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), low4));
        const __m256i msum = _mm256_madd_epi16(m16, load256(y[i].bsums));
        mins = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * simd_f16(x[i].dmin)), _mm256_cvtepi32_ps(msum), mins);

        const __m128i sc8 = _mm_and_si128(raw, low4);
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i sc = scales16_x4(_mm_cvtepu8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
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
 * Sub-blocks 2p and 2p+1 share 32 qs bytes: [A | B], A = 16 bytes of 2p.
 * [A, A, B, B] shifted by [0, 4, 0, 4] and masked are the 64 elements in
 * order. u = kvalues[nib] + 128 (1..241), dpbusd'd with y into int32 lanes
 * (lanes 0..7 sub-block 2p, 8..15 sub-block 2p+1), times ls - 32.
 */
void quant_vec_dot_iq4_xs_avx512(int64_t n, float *restrict s, const void *restrict vx,
                                 const void *restrict vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const __m512i lut = _mm512_broadcast_i32x4(
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)kvalues_iq4nl), _mm_set1_epi8((char)128)));
    const __m512i dup = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);
    const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const __m128i ls16 = simd_iq4xs_scales(&x[i]);
        const __m512i ls32 = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(ls16));
        /* the bias: 128 * sum_b ls_b * (bsums[2b] + bsums[2b+1]) */
        const __m256i bs = load256(y[i].bsums);
        const __m128i bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m128i bias = _mm_slli_epi32(_mm_madd_epi16(ls16, bs32), 7);
        __m512i sumi = _mm512_zextsi128_si512(_mm_sub_epi32(_mm_setzero_si128(), bias));
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512i z = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(load256(x[i].qs + 32 * p)));
            const __m512i u = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srlv_epi64(z, shift), low4));
            const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, load512(y[i].qs + 64 * p));
            const __m512i lsp = _mm512_permutexvar_epi32(
                _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1), ls32);
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(t, lsp));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}
