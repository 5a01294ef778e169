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
 * Q2_K, Q3_K, Q4_K and Q5_K depart from this (their sections say how):
 * vpdpbusd sums, packed to int16, then scaled, over an activation regrouped
 * once per call (Q4_K and Q5_K with four super-blocks' scales unpacked
 * together).
 *
 * Register layouts (four 128-bit lanes, L0..L3):
 *   32-element sub-blocks (IQ4_XS): L0-L1 one sub-block, L2-L3 the next.
 *   16-element sub-blocks (Q2_K, Q3_K, Q6_K): one sub-block per lane.
 * Scales sit as int16 in every lane (8 per lane) and pshufb spreads the
 * right one over each lane; sub-block high bits (Q3_K, Q5_K) are merged with
 * a byte mask from vptestmb and a masked add.
 *
 * IQ4_XS has signed table values: the magnitudes go to vpmaddubsw and the
 * signs onto the activations (a masked negate), as the AVX2 sign trick.
 *
 * Batches (quant.h: dot_multi): every type here goes through a weight row
 * once for up to four activation rows. What comes from the weights alone
 * (unpacked bytes, scale picks) is made once, and each activation gets the
 * one-row operations in their order, so a batch gives vec_dot's bits.
 *
 * Bounds as in the AVX2 file: int16 pair sums <= 2 * 127 * 127 (IQ4_XS),
 * int32 lanes < 2^26.
 */
#include "quant/quant_simd512.h"

#include <stdatomic.h>

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

/* --- Q4_K and Q5_K ----------------------------------------------------- */

/*
 * Rows are walked one at a time, in address order: four rows in lockstep
 * shared more work and ran faster in L2 but streamed worse from DRAM
 * (2048 columns, 1 thread: 32-33 against 37-39 GB/s; four interleaved
 * streams serve the hardware prefetchers badly), so the sharing comes from
 * elsewhere:
 *
 *   - the activation is prepared once per call (k4_yprep) for every row:
 *     each super-block's 256 bytes regrouped to the weights' order, its
 *     bsums summed in pairs (the min term's multiplier), and y.d;
 *   - a row's super-blocks go four at a time: the first 16 bytes of each
 *     (d, dmin, 12 scale bytes) into one 128-bit lane each, so one unpack
 *     gives the four blocks' scales and mins, one conversion their d and
 *     dmin, and one multiply-add their four min terms.
 *
 * The integer work per super-block: its 128 qs bytes are two registers;
 * register k's low nibbles are sub-blocks 4k and 4k+2 (bytes 0..31,
 * 32..63), its high nibbles 4k+1 and 4k+3, against the regrouped y:
 *
 *   vpdpbusd    four: nibble (| fifth bit) x activation, 4 products per
 *               int32 lane; a lane is a quarter of a 16-element half of a
 *               sub-block, |lane| <= 4 * 31 * 128 < 2^15
 *   vpackssdw   two: pairs of those registers to int16 (exact: they fit),
 *               lanes now [sub-block a x 4, sub-block b x 4] per 128 bits
 *   vpdpwssd    two: times the sub-block scales, into int32
 *
 * which replaces per-sub-block vpmaddubsw + vpdpwssd + a pshufb per scale.
 * Against the kernel it replaced (Q4_K, 1 thread): in L2 47 against 37 GB/s
 * at 768 columns, 55 against 44 at 2048; from DRAM 40 against 32-34. vec_dot is the rows kernel with one row, so the two agree bit
 * for bit; the float work of a row does not depend on how its super-blocks
 * are split into prepared segments (groups of four always start at a
 * multiple of four).
 */

/* pshufb controls over a 128-bit lane holding scales (bytes 0..7) and mins
 * (8..15), making int16 (high byte zero): k_k4_sc[h] for lanes 0-1 the
 * scales of sub-blocks 4h, 4h+1 (four each), for lanes 2-3 those of 4h+2,
 * 4h+3; k_k4_mins: every lane's mins m0..m7. */
#define Z 0x80
#define SC4(j) (j), Z, (j), Z, (j), Z, (j), Z
static _Alignas(64) const uint8_t k_k4_sc[2][64] = {
    {SC4(0), SC4(1), SC4(0), SC4(1), SC4(2), SC4(3), SC4(2), SC4(3)},
    {SC4(4), SC4(5), SC4(4), SC4(5), SC4(6), SC4(7), SC4(6), SC4(7)},
};
#define M8 8, Z, 9, Z, 10, Z, 11, Z, 12, Z, 13, Z, 14, Z, 15, Z
static _Alignas(64) const uint8_t k_k4_mins[64] = {M8, M8, M8, M8};
#undef M8
#undef Z
#undef SC4

/* 128-bit lane r (0..3) of v in all four lanes (an immediate per case, so
 * that builds which do not unroll the loops still compile). */
SIMD_INLINE __m512i lane_bcast(__m512i v, int r)
{
    switch (r) {
    case 0: return _mm512_shuffle_i32x4(v, v, 0x00);
    case 1: return _mm512_shuffle_i32x4(v, v, 0x55);
    case 2: return _mm512_shuffle_i32x4(v, v, 0xAA);
    default: return _mm512_shuffle_i32x4(v, v, 0xFF);
    }
}

/* Per 128-bit lane: head bytes (d, dmin, scales[12]) -> 8 scales, 8 mins
 * (the unpacking of simd_k4_scales_mins, with the scales at byte 4). */
SIMD_INLINE __m512i k4_unpack(__m512i h)
{
    const __m512i pick_lo = _mm512_broadcast_i32x4(
        _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i lo = _mm512_srlv_epi32(_mm512_shuffle_epi8(h, pick_lo),
                                         _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 4)));
    const __m512i lo_mask = _mm512_broadcast_i32x4(
        _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m512i pick_hi = _mm512_broadcast_i32x4(
        _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    const __m512i top = _mm512_and_si512(_mm512_srli_epi16(_mm512_shuffle_epi8(h, pick_hi), 2),
                                         _mm512_set1_epi8(0x30));
    /* (lo & lo_mask) | top */
    return _mm512_ternarylogic_epi32(lo, lo_mask, top, 0xEA);
}

/* Super-blocks prepared per call: at most this many at a time (32768
 * columns, a 36 KiB stack frame; longer rows are prepared in segments,
 * per row, which costs about half again the integer work). */
#define K4_PREP_MAX 128

/*
 * The activation of super-blocks [i0, i0 + cnt) in the form the row loop
 * reads: q[i][k] = register k of super-block i (sub-blocks 0|2, 1|3, 4|6,
 * 5|7), bp[i] = its bsums summed in pairs as int16, so that four
 * consecutive super-blocks' bp are one register (lane k = super-block k),
 * and d2[i] = y.d twice (lanes 2k, 2k+1 of a group's d, dmin vector).
 * bp and d2 are zero from cnt up to the next multiple of four, so a last
 * group of 1..3 super-blocks reads whole registers and its empty lanes
 * (zero d and dmin too) add exactly nothing.
 */
typedef struct k4_yprep {
    __m512i q[K4_PREP_MAX][4];
    __m128i bp[K4_PREP_MAX];
    _Alignas(32) float d2[K4_PREP_MAX][2];
} k4_yprep;

SIMD_INLINE __m512i k4_y1(const int8_t *p)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(p)), load256(p + 64), 1);
}

static void k4_prepare(const block_q8_K *y, int64_t cnt, k4_yprep *yp)
{
    for (int64_t i = 0; i < cnt; i++) {
        yp->q[i][0] = k4_y1(y[i].qs);
        yp->q[i][1] = k4_y1(y[i].qs + 32);
        yp->q[i][2] = k4_y1(y[i].qs + 128);
        yp->q[i][3] = k4_y1(y[i].qs + 160);
        const __m256i pairs = _mm256_madd_epi16(load256(y[i].bsums), _mm256_set1_epi16(1));
        yp->bp[i] = _mm256_cvtepi32_epi16(pairs); /* |pair| <= 2 * 16 * 128: exact */
        yp->d2[i][0] = yp->d2[i][1] = y[i].d;
    }
    for (int64_t i = cnt; i % 4; i++) {
        yp->bp[i] = _mm_setzero_si128();
        yp->d2[i][0] = yp->d2[i][1] = 0.0f;
    }
}

/* One super-block's weights as bytes: lo[k], hi[k] are register k's low and
 * high nibbles (| their fifth bit where hb, [qh | qh] for Q5_K, is given). */
SIMD_INLINE void k4_weights(const uint8_t *qs, const __m512i *hb, __m512i lo[2], __m512i hi[2])
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    for (int k = 0; k < 2; k++) {
        const __m512i q = load512(qs + 64 * k);
        lo[k] = _mm512_and_si512(q, low4);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
        if (hb) {
            lo[k] = _mm512_mask_add_epi8(lo[k], bits_pair(*hb, 4 * k, 4 * k + 2), lo[k], sixteen);
            hi[k] = _mm512_mask_add_epi8(hi[k], bits_pair(*hb, 4 * k + 1, 4 * k + 3), hi[k], sixteen);
        }
    }
}

/* sum_j sc_j * sum q * y of one super-block from its weight bytes; s0, s1:
 * its scales picked for the two packed pairs (k4_scales). */
SIMD_INLINE __m512i k4_dot(const __m512i lo[2], const __m512i hi[2], const __m512i *y, __m512i s0,
                           __m512i s1)
{
    __m512i t[4];
    for (int k = 0; k < 2; k++) {
        t[2 * k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[k], y[2 * k]);
        t[2 * k + 1] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[k], y[2 * k + 1]);
    }
    __m512i sumi = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(t[0], t[1]), s0);
    return _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(t[2], t[3]), s1);
}

/* A super-block's scales (smk: its scales and mins in every lane) picked
 * for k4_dot's two packed pairs. */
SIMD_INLINE void k4_scales(__m512i smk, __m512i *s0, __m512i *s1)
{
    *s0 = _mm512_shuffle_epi8(smk, _mm512_load_si512(k_k4_sc[0]));
    *s1 = _mm512_shuffle_epi8(smk, _mm512_load_si512(k_k4_sc[1]));
}

/*
 * How far ahead of its reads k4_group_heads prefetches. The least that
 * keeps a core's stream in flight is its bandwidth times the memory
 * latency (Little's law), so a core that streams less needs less; on
 * the slower core, prefetching further ahead was slower:
 *   - AMD EPYC (Zen 5, 54 GB/s on one core): SIMD_PREFETCH_BYTES, 8 KiB;
 *   - Intel Xeon with AMX (18 GB/s on one core): 3 KiB. Against 8 KiB,
 *     Q4_K from DRAM with 2 threads 24.5 -> 26.1 GB/s (4096x4096), 23.7
 *     -> 25.2 (8 slices of 2048x768), 24.4 -> 25.7 (16 of 768x2048); 4
 *     KiB gave 25.5, 24.6, 24.9 and 12 KiB 24.5, 24.2, 24.0 (medians of
 *     three runs). qwen3-30b-a3b q4_k_m decode, three alternating runs:
 *     12.00-12.51 -> 12.41-12.99 tok/s.
 * The other kernels keep SIMD_PREFETCH_BYTES: on that Xeon 4 KiB did not
 * help Q6_K or Q8_0. Set when the table is installed
 * (quant_kq_avx512_act_preps); every install stores the same value.
 */
#define K4_PREFETCH_INTEL 3072
static _Atomic size_t k4_prefetch_bytes = SIMD_PREFETCH_BYTES;

/* Starts a group of n4 (1..4) super-blocks of sb bytes at x: prefetches
 * its bytes k4_prefetch_bytes on, and returns in lane k the first 16
 * bytes of super-block k (d, dmin, scales; zero past n4). */
SIMD_INLINE __m512i k4_group_heads(const void *x, size_t sb, int n4)
{
    const uint8_t *b = x;
    const char *ahead = (const char *)b + atomic_load_explicit(&k4_prefetch_bytes,
                                                                memory_order_relaxed);
#pragma GCC unroll 12
    for (size_t o = 0; o < 4 * sb; o += 64)
        _mm_prefetch(ahead + o, SIMD_PREFETCH_HINT);
    __m512i heads = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)b));
    if (n4 > 1)
        heads = _mm512_inserti32x4(heads, _mm_loadu_si128((const __m128i *)(b + sb)), 1);
    if (n4 > 2)
        heads = _mm512_inserti32x4(heads, _mm_loadu_si128((const __m128i *)(b + 2 * sb)), 2);
    if (n4 > 3)
        heads = _mm512_inserti32x4(heads, _mm_loadu_si128((const __m128i *)(b + 3 * sb)), 3);
    return heads;
}

/* A row's running sums: acc over the scaled products, mins over the min
 * terms (lane group k: super-blocks 4g + k). */
typedef struct k4_acc {
    __m512 acc, mins;
} k4_acc;

/*
 * name##_span_na: super-blocks [i0, i0 + cnt) of row x (i0 a multiple of
 * 4) against NA (1..4) prepared activations (each holds super-blocks from
 * p0 on), four super-blocks at a time, the last group 1..4; each group's
 * scales, mins and weight bytes are unpacked once for all NA, and each
 * activation has its own accumulators and the same float operations
 * whatever NA is. DEFINE_PREP_ENTRIES gives the rows, vec_dot and batched
 * entries over it.
 */
#define DEFINE_K4_SPAN(name, xtype, HAS_QH)                                                            \
    SIMD_INLINE void name##_span_na(const xtype *restrict x, int64_t i0, int64_t cnt,                  \
                                    const k4_yprep *const *yp, int64_t p0, k4_acc *a, const int NA)    \
    {                                                                                                  \
        const __m512i pick_d = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);     \
        const __m512i pick_dmin = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7);   \
        for (int64_t g = i0; g < i0 + cnt; g += 4) {                                                   \
            const int n4 = i0 + cnt - g < 4 ? (int)(i0 + cnt - g) : 4;                                 \
            const int64_t j = g - p0; /* index into yp */                                              \
            const __m512i heads = k4_group_heads(&x[g], sizeof *x, n4);                                \
            const __m512i sm = k4_unpack(heads);                                                       \
            const __m256 hd =                                                                          \
                _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick_d, heads)));      \
            const __m512i m16 = _mm512_shuffle_epi8(sm, _mm512_load_si512(k_k4_mins));                \
            __m512 dd[K4_MULTI_MAX];                                                                   \
            _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                                       \
            {                                                                                          \
                const __m512i bp = _mm512_load_si512(&yp[v]->bp[j]);                                   \
                dd[v] = _mm512_castps256_ps512(_mm256_mul_ps(hd, _mm256_load_ps(yp[v]->d2[j])));       \
                a[v].mins = _mm512_fmadd_ps(_mm512_permutexvar_ps(pick_dmin, dd[v]),                   \
                                            _mm512_cvtepi32_ps(_mm512_madd_epi16(m16, bp)), a[v].mins); \
            }                                                                                          \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                                        \
            {                                                                                          \
                if (k >= n4)                                                                           \
                    break;                                                                             \
                __m512i hb, lo[2], hi[2], s0, s1;                                                      \
                if (HAS_QH)                                                                            \
                    hb = _mm512_broadcast_i64x4(load256(K4_QH(x, g + k)));                             \
                k4_weights(x[g + k].qs, HAS_QH ? &hb : NULL, lo, hi);                                  \
                k4_scales(lane_bcast(sm, k), &s0, &s1);                                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                                   \
                {                                                                                      \
                    const __m512i sumi = k4_dot(lo, hi, yp[v]->q[j + k], s0, s1);                      \
                    const __m512 dk = _mm512_permutexvar_ps(_mm512_set1_epi32(2 * k), dd[v]);          \
                    a[v].acc = _mm512_fmadd_ps(dk, _mm512_cvtepi32_ps(sumi), a[v].acc);                \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

#define K4_MULTI_MAX 4
#define K4_QH(x, i) ((const block_q5_K *)(x))[i].qh
DEFINE_K4_SPAN(quant_vec_dot_q4_K_avx512, block_q4_K, 0)
DEFINE_K4_SPAN(quant_vec_dot_q5_K_avx512, block_q5_K, 1)
#undef K4_QH

#define K4_ACC_ZERO ((k4_acc){_mm512_setzero_ps(), _mm512_setzero_ps()})
SIMD_INLINE float k4_result(k4_acc a)
{
    return hsum16(_mm512_sub_ps(a.acc, a.mins));
}
DEFINE_PREP_ENTRIES(quant_vec_dot_q4_K_avx512, quant_vec_dot_q4_K_avx512_span_na, block_q4_K,
                    QK_K, block_q8_K, k4_yprep, k4_prepare, K4_PREP_MAX, k4_acc, K4_ACC_ZERO,
                    k4_result, K4_MULTI_MAX)
DEFINE_PREP_ENTRIES(quant_vec_dot_q5_K_avx512, quant_vec_dot_q5_K_avx512_span_na, block_q5_K,
                    QK_K, block_q8_K, k4_yprep, k4_prepare, K4_PREP_MAX, k4_acc, K4_ACC_ZERO,
                    k4_result, K4_MULTI_MAX)

/* The prepared form of a row's activations (quant.h: quant_act_prep): the
 * same k4_yprep every call of the rows kernels builds for itself. Matmul
 * prepares once per thread and activation instead of once per chunk: on
 * one core from L2 that is 3-10% faster (2048x768 to 2048x8192). */
static void k4_act_prep(int64_t n, const void *restrict y, void *restrict buf)
{
    k4_prepare(y, n / QK_K, buf);
}


/* --- Q6_K -------------------------------------------------------------- */

/*
 * Half h: ql[64h..64h+63] & 15 are elements 0..63 of the half, >> 4 are
 * 64..127; their top bits are qh[32h + l] bits 0-1, 2-3 (elements 0..63)
 * and 4-5, 6-7 (64..127), i.e. bits 0-1 and 4-5 of [qh | qh >> 2].
 */
/* Half h of super-block x as bytes u = q + 32 (u0: elements 0..63 of the
 * half, u1: 64..127) and its scales picked for them (slo, shi); sc_all:
 * the 16 scales as int16. */
SIMD_INLINE void q6k_half(const block_q6_K *x, int h, __m256i sc_all, __m512i *u0, __m512i *u1,
                          __m512i *slo, __m512i *shi)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
    const __m128i half = h ? _mm256_extracti128_si256(sc_all, 1) : _mm256_castsi256_si128(sc_all);
    const __m512i sc = scales16_x4(half);
    const __m512i l = load512(x->ql + 64 * h);
    const __m512i hh = pair_shifted(load256(x->qh + 32 * h), 2);
    const __m512i lo = _mm512_and_si512(l, low4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(l, 4), low4);
    /* A | (B & C): 0xF8 */
    *u0 = _mm512_ternarylogic_epi32(lo, _mm512_slli_epi16(hh, 4), bits45, 0xF8);
    *u1 = _mm512_ternarylogic_epi32(hi, hh, bits45, 0xF8);
    *slo = _mm512_shuffle_epi8(sc, PICK_QUAD(0));
    *shi = _mm512_shuffle_epi8(sc, PICK_QUAD(1));
}

SIMD_INLINE void quant_vec_dot_q6_K_avx512_nr(int64_t n, const int NR, float *restrict s,
                                              const uint8_t *restrict x0, size_t stride,
                                              const block_q8_K *restrict y)
{
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
                __m512i u0, u1, slo, shi;
                q6k_half(&x[i], h, sc_all, &u0, &u1, &slo, &shi);
                const __m512i p0 = _mm512_maddubs_epi16(u0, yq[2 * h]);
                const __m512i p1 = _mm512_maddubs_epi16(u1, yq[2 * h + 1]);
                sumi = _mm512_dpwssd_epi32(sumi, p0, slo);
                sumi = _mm512_dpwssd_epi32(sumi, p1, shi);
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(y[i].d * simd_f16(x[i].d)), _mm512_cvtepi32_ps(sumi),
                                     acc[r]);
        }
    }
    hsum16_rows(NR, s, acc);
}
DEFINE_ROWS_ENTRIES(quant_vec_dot_q6_K_avx512, block_q6_K, 0)

/*
 * Q6_K's dot_multi (quant.h): up to four activations, plain Q8_K rows, against
 * a row; each half's weight bytes and scale picks are built once for all of
 * them, and each activation gets exactly _nr's operations, so the bits
 * are vec_dot's.
 */
#define Q6_MULTI_MAX 4
SIMD_INLINE void q6k_row_multi(int64_t nb, const block_q6_K *restrict x, const uint8_t *restrict vy,
                               size_t y_stride, __m512 *acc, const int NA)
{
    for (int64_t i = 0; i < nb; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m512i u0[2], u1[2], slo[2], shi[2];
        for (int h = 0; h < 2; h++)
            q6k_half(&x[i], h, sc_all, &u0[h], &u1[h], &slo[h], &shi[h]);
        const float dx = simd_f16(x[i].d);
#pragma GCC unroll 4
        for (int v = 0; v < NA; v++) {
            const block_q8_K *y = (const block_q8_K *)(vy + (size_t)v * y_stride) + i;
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc_all, load256(y->bsums)), 5);
            __m512i sumi = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), off));
            for (int h = 0; h < 2; h++) {
                const __m512i p0 = _mm512_maddubs_epi16(u0[h], load512(y->qs + 128 * h));
                const __m512i p1 = _mm512_maddubs_epi16(u1[h], load512(y->qs + 128 * h + 64));
                sumi = _mm512_dpwssd_epi32(sumi, p0, slo[h]);
                sumi = _mm512_dpwssd_epi32(sumi, p1, shi[h]);
            }
            acc[v] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[v]);
        }
    }
}

static void quant_vec_dot_q6_K_avx512_multi(int64_t n, int nr, int na, float *restrict s,
                                            size_t s_stride, const void *restrict vx, size_t stride,
                                            const void *restrict vy, size_t y_stride)
{
    for (int r = 0; r < nr; r++) {
        const block_q6_K *x = (const block_q6_K *)((const uint8_t *)vx + (size_t)r * stride);
        for (int v0 = 0; v0 < na; v0 += Q6_MULTI_MAX) {
            const int nv = na - v0 < Q6_MULTI_MAX ? na - v0 : Q6_MULTI_MAX;
            const uint8_t *y = (const uint8_t *)vy + (size_t)v0 * y_stride;
            __m512 acc[Q6_MULTI_MAX];
            for (int v = 0; v < nv; v++)
                acc[v] = _mm512_setzero_ps();
            switch (nv) { /* a constant NA per case, for registers */
            case 1: q6k_row_multi(n / QK_K, x, y, y_stride, acc, 1); break;
            case 2: q6k_row_multi(n / QK_K, x, y, y_stride, acc, 2); break;
            case 3: q6k_row_multi(n / QK_K, x, y, y_stride, acc, 3); break;
            default: q6k_row_multi(n / QK_K, x, y, y_stride, acc, 4); break;
            }
            for (int v = 0; v < nv; v++)
                s[(size_t)(v0 + v) * s_stride + r] = hsum16(acc[v]);
        }
    }
}

/* --- Q3_K and Q2_K ----------------------------------------------------- */

/*
 * Both keep their weights in 2-bit fields, in the manner of Q4_K: the
 * super-block's 64 qs bytes are one register, and its bit-field g (shift
 * 2g) is register g: bytes 0..31 are elements 32g.. of the first half,
 * bytes 32..63 elements 32g.. of the second, so its 128-bit lanes are
 * sub-blocks 2g, 2g+1, 8+2g, 9+2g. Q3_K's third bit comes from
 * [hmask | hmask >> 4] (bit g of each byte): u = q + 4 in 0..7; Q2_K's
 * weights are u = q in 0..3. The activation is regrouped to match once per
 * call (kq2_yprep), and per register:
 *
 *   vpdpbusd    u x y, 4 products per int32 lane, |lane| <= 4 * 7 * 128
 *   vpackssdw   registers 0|1 and 2|3 to int16 (exact), lanes now
 *               [sub-block a x 4, sub-block b x 4] per 128 bits
 *   vpdpwssd    times the scales spread to match (one vpermw each)
 *
 * Q3_K's offset, -4 * sum sc * bsums, is one more vpdpwssd into the same
 * sums, against the prepared -4 * bsums; Q2_K's min term, dmin * sum m *
 * bsums, is a float sum of its own, kept -4 times too large off the same
 * vector and scaled back at the end (exactly: a power of two).
 * Everything before the float FMAs of a super-block is exact integer
 * arithmetic. Batches (dot_multi) take four activations per pass over a
 * row, each with its own sums and the same operations, so they give
 * vec_dot's bits.
 */
#define KQ_MULTI_MAX 4
#define KQ2_PREP_MAX 112 /* 28672 columns in a 32 KiB frame; longer rows go in segments */

typedef struct kq2_yprep {
    __m512i q[KQ2_PREP_MAX][4]; /* register g: y[32g .. 32g+31] | y[128+32g .. 128+32g+31] */
    __m256i nb4[KQ2_PREP_MAX]; /* -4 * bsums, int16 (|4 * 16 * 128| fits) */
    float d[KQ2_PREP_MAX];
} kq2_yprep;

static void kq2_prepare(const block_q8_K *y, int64_t cnt, kq2_yprep *yp)
{
    for (int64_t i = 0; i < cnt; i++) {
        for (int g = 0; g < 4; g++)
            yp->q[i][g] = _mm512_inserti64x4(_mm512_castsi256_si512(load256(y[i].qs + 32 * g)),
                                             load256(y[i].qs + 128 + 32 * g), 1);
        yp->nb4[i] = _mm256_mullo_epi16(load256(y[i].bsums), _mm256_set1_epi16(-4));
        yp->d[i] = y[i].d;
    }
}

static void kq2_act_prep(int64_t n, const void *restrict y, void *restrict buf)
{
    kq2_prepare(y, n / QK_K, buf);
}

/* A row's running sums: acc over the scaled products, mins over -4 times
 * Q2_K's min terms (zero for Q3_K). */
typedef struct kq2_acc {
    __m512 acc;
    __m256 mins;
} kq2_acc;

/* vpermw controls: lane L of [sub-block a(L) x 4, sub-block b(L) x 4] for
 * registers 0|1 (a = 0, 1, 8, 9; b = 2, 3, 10, 11) and 2|3 (+4 each). */
#define KQ2_SC(a, b) a, a, a, a, b, b, b, b
static _Alignas(64) const uint16_t k_kq2_sc[2][32] = {
    {KQ2_SC(0, 2), KQ2_SC(1, 3), KQ2_SC(8, 10), KQ2_SC(9, 11)},
    {KQ2_SC(4, 6), KQ2_SC(5, 7), KQ2_SC(12, 14), KQ2_SC(13, 15)},
};
#undef KQ2_SC

/* A super-block's 16 scales (int16, lanes 0..15 of sc) spread for
 * registers 0|1 (s[0]) and 2|3 (s[1]) after their pack. */
SIMD_INLINE void kq2_scales(__m512i sc, __m512i s[2])
{
    s[0] = _mm512_permutexvar_epi16(_mm512_load_si512(k_kq2_sc[0]), sc);
    s[1] = _mm512_permutexvar_epi16(_mm512_load_si512(k_kq2_sc[1]), sc);
}

/* sumi + the super-block's scaled products with one prepared activation:
 * u, its four weight registers; s, its scales from kq2_scales; y, the
 * activation's four registers. */
SIMD_INLINE __m512i kq2_dot(__m512i sumi, const __m512i u[4], const __m512i s[2], const __m512i *y)
{
    const __m512i zero = _mm512_setzero_si512();
    const __m512i t0 = _mm512_dpbusd_epi32(zero, u[0], y[0]);
    const __m512i t1 = _mm512_dpbusd_epi32(zero, u[1], y[1]);
    const __m512i t2 = _mm512_dpbusd_epi32(zero, u[2], y[2]);
    const __m512i t3 = _mm512_dpbusd_epi32(zero, u[3], y[3]);
    sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(t0, t1), s[0]);
    return _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(t2, t3), s[1]);
}

/* hm with bit g of each byte moved to bit 2 (16-bit shifts: what crosses
 * into the next byte lands outside bit 2, which the caller keeps alone). */
SIMD_INLINE __m512i k3_bit_to_2(__m512i hm, int g)
{
    switch (g) {
    case 0: return _mm512_slli_epi16(hm, 2);
    case 1: return _mm512_slli_epi16(hm, 1);
    case 2: return hm;
    default: return _mm512_srli_epi16(hm, 1);
    }
}

/*
 * Q3_K's 16 scales as int8, bias removed (-32..31), with vector
 * instructions (simd_q3k_scales does it in integer registers): scale j's
 * low four bits are the low (j < 8) or high nibble of byte j % 8, its top
 * two bits are bits 2 (j / 4), +1 of byte 8 + j % 4, which the dword of
 * bytes 8..11 shifted right by 0, 2, 4, 6 brings to the bottom of lane
 * j / 4's bytes.
 */
SIMD_INLINE __m128i k3_scales(const uint8_t *q)
{
    uint32_t h;
    memcpy(&h, q + 8, 4);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i v = _mm_loadl_epi64((const __m128i *)q);
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), low4);
    const __m128i hb = _mm_srlv_epi32(_mm_set1_epi32((int)h), _mm_setr_epi32(0, 2, 4, 6));
    /* lo | (hb & 3) << 4, then - 32 */
    const __m128i top = _mm_slli_epi16(_mm_and_si128(hb, _mm_set1_epi8(3)), 4);
    return _mm_sub_epi8(_mm_or_si128(lo, top), _mm_set1_epi8(32));
}

/*
 * q3k_span_na / q2k_span_na: super-blocks [i0, i0 + cnt) of row x against
 * NA (1..4) prepared activations (each holding super-blocks from p0 on),
 * into a[v]: each super-block's weights and scales are unpacked once for
 * all NA, and each activation gets the same operations whatever NA is.
 */
SIMD_INLINE void q3k_span_na(const block_q3_K *restrict x, int64_t i0, int64_t cnt,
                             const kq2_yprep *const *yp, int64_t p0, kq2_acc *a, const int NA)
{
    const __m512i low2 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    for (int64_t i = i0; i < i0 + cnt; i++) {
        const int64_t j = i - p0;
        simd_prefetch(&x[i], sizeof x[i]);
        const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(k3_scales(x[i].scales)));
        __m512i s[2];
        kq2_scales(sc, s);
        const __m512i hm = pair_shifted(load256(x[i].hmask), 4);
        const __m512i q = load512(x[i].qs);
        __m512i u[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) { /* (q >> 2g) & 3 | (bit g of hm) << 2 */
            const __m512i hb = _mm512_and_si512(k3_bit_to_2(hm, g), four);
            u[g] = _mm512_ternarylogic_epi32(g ? _mm512_srli_epi16(q, 2 * g) : q, low2, hb, 0xEA);
        }
        const float dx = simd_f16(x[i].d);
#pragma GCC unroll 4
        for (int v = 0; v < NA; v++) { /* sc x -4 bsums, in the low 8 lanes */
            const __m512i off = _mm512_dpwssd_epi32(_mm512_setzero_si512(), sc,
                                                    _mm512_zextsi256_si512(yp[v]->nb4[j]));
            const __m512i sumi = kq2_dot(off, u, s, yp[v]->q[j]);
            a[v].acc = _mm512_fmadd_ps(_mm512_set1_ps(dx * yp[v]->d[j]), _mm512_cvtepi32_ps(sumi),
                                       a[v].acc);
        }
    }
}

SIMD_INLINE void q2k_span_na(const block_q2_K *restrict x, int64_t i0, int64_t cnt,
                             const kq2_yprep *const *yp, int64_t p0, kq2_acc *a, const int NA)
{
    const __m512i low2 = _mm512_set1_epi8(3);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    for (int64_t i = i0; i < i0 + cnt; i++) {
        const int64_t j = i - p0;
        simd_prefetch(&x[i], sizeof x[i]);
        /* scales[k]: low nibble the scale, high nibble the min of sub-block k */
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(raw, low4)));
        __m512i s[2];
        kq2_scales(sc, s);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), low4));
        const __m512i q = load512(x[i].qs);
        __m512i u[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            u[g] = _mm512_and_si512(g ? _mm512_srli_epi16(q, 2 * g) : q, low2);
        const float dx = simd_f16(x[i].d), dmin = simd_f16(x[i].dmin);
#pragma GCC unroll 4
        for (int v = 0; v < NA; v++) {
            const __m512i sumi = kq2_dot(_mm512_setzero_si512(), u, s, yp[v]->q[j]);
            const float dy = yp[v]->d[j];
            a[v].acc = _mm512_fmadd_ps(_mm512_set1_ps(dx * dy), _mm512_cvtepi32_ps(sumi), a[v].acc);
            const __m256i msum = _mm256_madd_epi16(m16, yp[v]->nb4[j]);
            a[v].mins = _mm256_fmadd_ps(_mm256_set1_ps(dmin * dy), _mm256_cvtepi32_ps(msum),
                                        a[v].mins);
        }
    }
}

SIMD_INLINE float kq2_result(kq2_acc a)
{
    return hsum16(a.acc) + 0.25f * simd_hsum_f32x8(a.mins);
}

#define KQ2_ACC_ZERO ((kq2_acc){_mm512_setzero_ps(), _mm256_setzero_ps()})
DEFINE_PREP_ENTRIES(quant_vec_dot_q3_K_avx512, q3k_span_na, block_q3_K, QK_K, block_q8_K,
                    kq2_yprep, kq2_prepare, KQ2_PREP_MAX, kq2_acc, KQ2_ACC_ZERO, kq2_result,
                    KQ_MULTI_MAX)
DEFINE_PREP_ENTRIES(quant_vec_dot_q2_K_avx512, q2k_span_na, block_q2_K, QK_K, block_q8_K,
                    kq2_yprep, kq2_prepare, KQ2_PREP_MAX, kq2_acc, KQ2_ACC_ZERO, kq2_result,
                    KQ_MULTI_MAX)

/* --- IQ4_XS ------------------------------------------------------------ */

/*
 * 64 qs bytes hold sub-blocks 4k..4k+3, 16 bytes each: the low nibbles of a
 * sub-block's bytes are its elements 0..15, the high nibbles 16..31. Two
 * vpermt2q interleave [lo | hi] lanes back into element order. The table
 * values are signed (-127..113): vpmaddubsw gets their magnitudes, and y
 * negated where the value is negative (nibbles 0..7); 2 * 127 * 127 fits
 * int16.
 *
 * iq4xs_row_na: super-blocks [0, nb) of row x against NA (1..4) plain Q8_K
 * rows at yb, ys bytes apart, results at out, s_stride apart. Each
 * sub-block pair's magnitudes, sign masks and scales are taken once, and
 * each activation gets the one-row operations in their order (vec_dot is
 * this with one), so batches give vec_dot's bits.
 */
SIMD_INLINE void iq4xs_row_na(int64_t nb, const block_iq4_xs *restrict x, const uint8_t *yb,
                              size_t ys, float *out, size_t s_stride, const int NA)
{
    const __m128i table = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_abs_epi8(table)); /* |value| */
    const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11); /* sub-blocks 4k, 4k+1 */
    const __m512i second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15); /* 4k+2, 4k+3 */
    const __m512i low4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    __m512 acc[KQ_MULTI_MAX];
    for (int v = 0; v < NA; v++)
        acc[v] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        simd_prefetch(&x[i], sizeof x[i]);
        const __m512i sc = scales16_x4(simd_iq4xs_scales(&x[i]));
        const block_q8_K *y[KQ_MULTI_MAX];
        __m512i sumi[KQ_MULTI_MAX];
#pragma GCC unroll 4
        for (int v = 0; v < NA; v++) {
            y[v] = (const block_q8_K *)(yb + (size_t)v * ys) + i;
            sumi[v] = _mm512_setzero_si512();
        }
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const __m512i q = load512(x[i].qs + 64 * k);
            const __m512i lo = _mm512_and_si512(q, low4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low4);
            const __m512i nib[2] = {_mm512_permutex2var_epi64(lo, first, hi),
                                    _mm512_permutex2var_epi64(lo, second, hi)};
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                const int b = 4 * k + 2 * j; /* sub-blocks b, b + 1 */
                const __mmask64 neg = _mm512_testn_epi8_mask(nib[j], eight);
                const __m512i mag = _mm512_shuffle_epi8(lut, nib[j]);
                const __m512i pick = _mm512_shuffle_epi8(sc, PICK_PAIR(b / 2));
#pragma GCC unroll 4
                for (int v = 0; v < NA; v++) {
                    const __m512i y8 = load512(y[v]->qs + 32 * b);
                    const __m512i ysg = _mm512_mask_sub_epi8(y8, neg, _mm512_setzero_si512(), y8);
                    sumi[v] = _mm512_dpwssd_epi32(sumi[v], _mm512_maddubs_epi16(mag, ysg), pick);
                }
            }
        }
        const float dx = simd_f16(x[i].d);
#pragma GCC unroll 4
        for (int v = 0; v < NA; v++)
            acc[v] = _mm512_fmadd_ps(_mm512_set1_ps(y[v]->d * dx), _mm512_cvtepi32_ps(sumi[v]),
                                     acc[v]);
    }
    for (int v = 0; v < NA; v++)
        out[(size_t)v * s_stride] = _mm512_reduce_add_ps(acc[v]);
}

SIMD_ROW_NA_ENTRIES(quant_vec_dot_iq4_xs_avx512, iq4xs_multi, iq4xs_row_na, block_iq4_xs, QK_K, KQ_MULTI_MAX)

/* --- prepared and batched activations (quant.h: quant_act_prep) --------- */

void quant_kq_avx512_act_preps(quant_kernels *k)
{
    __builtin_cpu_init();
    atomic_store_explicit(&k4_prefetch_bytes,
                          __builtin_cpu_is("intel") ? K4_PREFETCH_INTEL : SIMD_PREFETCH_BYTES,
                          memory_order_relaxed);
    k->act_prep[QT_Q4_K] = (quant_act_prep){k4_act_prep, quant_vec_dot_q4_K_avx512_rows_prep,
                                            quant_vec_dot_q4_K_avx512_multi, sizeof(k4_yprep),
                                            (int64_t)K4_PREP_MAX * QK_K};
    k->act_prep[QT_Q5_K] = (quant_act_prep){k4_act_prep, quant_vec_dot_q5_K_avx512_rows_prep,
                                            quant_vec_dot_q5_K_avx512_multi, sizeof(k4_yprep),
                                            (int64_t)K4_PREP_MAX * QK_K};
    k->act_prep[QT_IQ4_XS] = (quant_act_prep){NULL, NULL, iq4xs_multi, 0, 0};
    k->act_prep[QT_Q2_K] = (quant_act_prep){kq2_act_prep, quant_vec_dot_q2_K_avx512_rows_prep,
                                            quant_vec_dot_q2_K_avx512_multi, sizeof(kq2_yprep),
                                            (int64_t)KQ2_PREP_MAX * QK_K};
    k->act_prep[QT_Q3_K] = (quant_act_prep){kq2_act_prep, quant_vec_dot_q3_K_avx512_rows_prep,
                                            quant_vec_dot_q3_K_avx512_multi, sizeof(kq2_yprep),
                                            (int64_t)KQ2_PREP_MAX * QK_K};
    /* Q6_K prepares nothing: its dot_multi reads the Q8_K rows */
    k->act_prep[QT_Q6_K] = (quant_act_prep){NULL, NULL, quant_vec_dot_q6_K_avx512_multi, 0, 0};
}
