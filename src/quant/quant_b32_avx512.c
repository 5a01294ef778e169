/*
 * quant_b32_avx512.c — AVX-512 dot products of the 32-element types Q4_0,
 * IQ4_NL, MXFP4 and Q8_0 against Q8_0, four blocks at a time over an
 * activation prepared once per call.
 *
 * Why not quant_avx512.c's pairs: there, each pair of blocks has its
 * nibbles gathered from two 16-byte loads, the activation's two blocks
 * joined, and the offset sum taken by a second vpdpbusd, about ten vector
 * instructions a block, 2.5-3 cycles; an idle bus leaves a core about 1.7
 * cycles per 18 bytes. Here:
 *
 *   weights   the group's four 16-byte qs come out of two 64-byte windows
 *             with one vpermt2w (Q4_0 and IQ4_NL: at bytes 18k + 2, even;
 *             MXFP4's 17-byte blocks: at 17k + 1, even in a window from
 *             byte 1 for k = 0, 2 and in one from byte 4 for k = 1, 3), one
 *             block per 128-bit lane; low nibbles are its elements 0..15,
 *             high nibbles 16..31 (a pshufb through the biased table for
 *             IQ4_NL and MXFP4): unsigned u = q + off. Q8_0's 34-byte
 *             blocks: qs at 34k + 2, the halves of its four blocks out of
 *             four windows inside the group's 136 bytes by two vpermt2w,
 *             u = q ^ 0x80 = q + 128;
 *   activation  regrouped to match (b32_yprep): per group its elements
 *             0..15 and 16..31 of each block, its four scales as floats,
 *             and, per int32 lane, -off times the sum of the lane's four
 *             bytes in both halves, which the first vpdpbusd takes as its
 *             accumulator:
 *
 *                 t = dpbusd(dpbusd(-off * sums, u_lo, y_lo), u_hi, y_hi)
 *
 *             is sum (u - off) * y = sum q * y of block k in lanes
 *             4k..4k+3, exactly;
 *   scales    d_x * d_y of the four blocks (MXFP4: y.d * 2^(e-128) by
 *             vscalefps), spread over their lanes, one FMA per group.
 *
 * A last group of 1..3 blocks is copied into a zeroed group (prepared the
 * same way): a zero block adds exactly nothing. Batches (dot_multi) take
 * each group's weights and x scales once for up to four activations, each
 * with the one-row operations: vec_dot's bits.
 *
 * Q8_0 came here from quant_avx512.c's pairs for batches: there each
 * activation of a batch cost its own two vpdpbusd per pair of blocks (the
 * offset's) and its blocks' joining, twice the per-activation work of
 * this prepared form; a 512-token prompt of llama-3.2-1b Q8_0 ran at half
 * the speed of its Q4_K_M.
 */
#include "quant/quant_simd512.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__) || !defined(__AVX512VNNI__)
#error "quant_b32_avx512.c needs the AVX512_FLAGS of the Makefile"
#endif

#define B32_MULTI_MAX 4
/* Groups prepared per call: 704 blocks, 22528 columns, in 36 KiB (matmul's
 * MM_PREP_BYTES); longer rows are prepared in segments, per row. */
#define B32_PREP_GROUPS 176
#define B32_PREP_MAX (4 * B32_PREP_GROUPS)

typedef struct b32_yprep {
    __m512i lo[B32_PREP_GROUPS];  /* lane k: elements 0..15 of block 4g + k */
    __m512i hi[B32_PREP_GROUPS];  /* lane k: elements 16..31 */
    __m512i off[B32_PREP_GROUPS]; /* -off * (4-byte sum of lo + of hi), per int32 lane */
    __m128 d[B32_PREP_GROUPS];    /* the four blocks' y.d */
} b32_yprep;

/* 16 bytes at each of p0..p3 into lanes 0..3. */
static inline __m512i lanes4(const void *p0, const void *p1, const void *p2, const void *p3)
{
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p1), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* cnt Q8_0 blocks into yp for a weight type of offset off (zero past cnt,
 * up to the group). */
static void b32_prepare(const block_q8_0 *y, int64_t cnt, b32_yprep *yp, int off)
{
    static const block_q8_0 zero;
    const __m512i offs = _mm512_set1_epi8((char)off);
    for (int64_t g = 0; g < (cnt + 3) / 4; g++) {
        const block_q8_0 *b[4];
        float d[4];
        for (int k = 0; k < 4; k++) {
            b[k] = 4 * g + k < cnt ? &y[4 * g + k] : &zero;
            d[k] = quant_f16_to_f32(b[k]->d);
        }
        yp->lo[g] = lanes4(b[0]->qs, b[1]->qs, b[2]->qs, b[3]->qs);
        yp->hi[g] = lanes4(b[0]->qs + 16, b[1]->qs + 16, b[2]->qs + 16, b[3]->qs + 16);
        const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), offs,
                                                                  yp->lo[g]),
                                              offs, yp->hi[g]);
        yp->off[g] = _mm512_sub_epi32(_mm512_setzero_si512(), s);
        yp->d[g] = _mm_loadu_ps(d);
    }
}

#define DEFINE_B32_PREP(off)                                                                  \
    static void b32_prepare_##off(const block_q8_0 *y, int64_t cnt, b32_yprep *yp)            \
    {                                                                                         \
        b32_prepare(y, cnt, yp, off);                                                         \
    }                                                                                         \
    static void b32_act_prep_##off(int64_t n, const void *restrict y, void *restrict buf)     \
    {                                                                                         \
        b32_prepare(y, n / 32, buf, off);                                                     \
    }
DEFINE_B32_PREP(8)   /* Q4_0 */
DEFINE_B32_PREP(128) /* IQ4_NL */
DEFINE_B32_PREP(12)  /* MXFP4 */
/* Q8_0 shares IQ4_NL's offset of 128 */

/* A group's weights: u_lo, u_hi (see the top), and x's part of the scales. */
typedef struct b32_group {
    __m512i lo, hi;
    __m128 xs; /* d_x (MXFP4: e - 128) */
} b32_group;

/* The 64 bytes of a group from byte at: the clobber hides that they are
 * the blocks' address, so that the compiler does not serve other loads out
 * of them with scalar shifts. */
static inline __m512i window(const void *g, int at)
{
    const uint8_t *p = g;
    __asm__("" : "+r"(p));
    return _mm512_loadu_si512(p + at);
}

/* vpermt2w index: words [a, a + 8) of the first window (b < 32) or of the
 * second (b >= 32) into lane k. */
#define B32_RUN(w) (w), (w) + 1, (w) + 2, (w) + 3, (w) + 4, (w) + 5, (w) + 6, (w) + 7
static _Alignas(64) const uint16_t k_qs18[32] = {B32_RUN(1), B32_RUN(10), B32_RUN(19), B32_RUN(56)};
static _Alignas(64) const uint16_t k_qs17[32] = {B32_RUN(0), B32_RUN(39), B32_RUN(17), B32_RUN(56)};
#undef B32_RUN

static inline void split_nibbles(__m512i v, __m512i *lo, __m512i *hi)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    *lo = _mm512_and_si512(v, low4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
}

/* Q4_0 and IQ4_NL: 18-byte blocks, d at 18k (word 9k), qs at 18k + 2;
 * windows [0, 64) and [8, 72). */
static inline b32_group group18(const void *g)
{
    const __m512i w1 = window(g, 0), w2 = window(g, 8);
    b32_group r;
    split_nibbles(_mm512_permutex2var_epi16(w1, _mm512_load_si512(k_qs18), w2), &r.lo, &r.hi);
    const __m512i d = _mm512_permutexvar_epi16(
        _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 0, 0, 0, 0)), w1);
    r.xs = _mm_cvtph_ps(_mm512_castsi512_si128(d));
    return r;
}

static inline b32_group group_q4_0(const block_q4_0 *x)
{
    return group18(x);
}

static inline b32_group group_iq4_nl(const block_iq4_nl *x)
{
    const __m512i lut = _mm512_broadcast_i32x4(
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)kvalues_iq4nl), _mm_set1_epi8((char)128)));
    b32_group r = group18(x);
    r.lo = _mm512_shuffle_epi8(lut, r.lo);
    r.hi = _mm512_shuffle_epi8(lut, r.hi);
    return r;
}

/*
 * Q8_0: 34-byte blocks, d at word 17k, qs at 34k + 2 (word 17k + 1). The
 * low halves (words 17k + 1 .. 17k + 8) come from the windows at bytes 0
 * and 68, the high halves (17k + 9 .. 17k + 16) from those at 18 and 72,
 * the scales from the first two: every window inside the group.
 */
static _Alignas(64) const uint16_t k_q8_lo[32] = {
    1, 2, 3, 4, 5, 6, 7, 8, 18, 19, 20, 21, 22, 23, 24, 25,
    33, 34, 35, 36, 37, 38, 39, 40, 50, 51, 52, 53, 54, 55, 56, 57};
static _Alignas(64) const uint16_t k_q8_hi[32] = {
    0, 1, 2, 3, 4, 5, 6, 7, 17, 18, 19, 20, 21, 22, 23, 24,
    39, 40, 41, 42, 43, 44, 45, 46, 56, 57, 58, 59, 60, 61, 62, 63};

static inline b32_group group_q8_0(const block_q8_0 *x)
{
    const __m512i w0 = window(x, 0), w68 = window(x, 68), w18 = window(x, 18), w72 = window(x, 72);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    b32_group r;
    r.lo = _mm512_xor_si512(_mm512_permutex2var_epi16(w0, _mm512_load_si512(k_q8_lo), w68), flip);
    r.hi = _mm512_xor_si512(_mm512_permutex2var_epi16(w18, _mm512_load_si512(k_q8_hi), w72), flip);
    const __m512i d = _mm512_permutex2var_epi16(
        w0, _mm512_castsi128_si512(_mm_setr_epi16(0, 17, 32, 49, 0, 0, 0, 0)), w68);
    r.xs = _mm_cvtph_ps(_mm512_castsi512_si128(d));
    return r;
}

/*
 * MXFP4: 17-byte blocks, e at 17k, qs at 17k + 1; windows [1, 65) and
 * [4, 68) for the qs, [0, 64) for the exponents, which sit in the low (k
 * even) or high (k odd) byte of word 17k / 2. xs = e - 128, for vscalefps,
 * which multiplies by a power of two with one rounding, as the reference's
 * float product of quant_e8m0_half(e) (exact, subnormal for e < 2) and d.
 */
static inline b32_group group_mxfp4(const block_mxfp4 *x)
{
    const __m512i lut = _mm512_broadcast_i32x4(
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)kvalues_mxfp4), _mm_set1_epi8(12)));
    const __m512i w1 = window(x, 1), w2 = window(x, 4), w0 = window(x, 0);
    b32_group r;
    split_nibbles(_mm512_permutex2var_epi16(w1, _mm512_load_si512(k_qs17), w2), &r.lo, &r.hi);
    r.lo = _mm512_shuffle_epi8(lut, r.lo);
    r.hi = _mm512_shuffle_epi8(lut, r.hi);
    const __m128i w = _mm512_castsi512_si128(_mm512_permutexvar_epi16(
        _mm512_castsi128_si512(_mm_setr_epi16(0, 8, 17, 25, 0, 0, 0, 0)), w0));
    const __m128i e = _mm_and_si128(_mm_srlv_epi16(w, _mm_setr_epi16(0, 8, 0, 8, 0, 0, 0, 0)),
                                    _mm_set1_epi16(255));
    r.xs = _mm_sub_ps(_mm_cvtepi32_ps(_mm_cvtepu16_epi32(e)), _mm_set1_ps(128.0f));
    return r;
}

/* d_x * d_y per block (MXFP4: d_y * 2^(e-128)). */
static inline __m128 scales_mul(__m128 xs, __m128 yd)
{
    return _mm_mul_ps(xs, yd);
}

static inline __m128 scales_pow2(__m128 xs, __m128 yd)
{
    return _mm_scalef_ps(yd, xs);
}

/*
 * name##_span_na: blocks [i0, i0 + cnt) of row x (i0 a multiple of 4)
 * against NA (1..4) prepared activations holding blocks from p0 on (p0 a
 * multiple of 4), into acc[v].
 */
#define DEFINE_B32_SPAN(name, xtype, GROUP, SCALES)                                           \
    SIMD_INLINE void name##_span_na(const xtype *restrict x, int64_t i0, int64_t cnt,         \
                                    const b32_yprep *const *yp, int64_t p0, __m512 *acc,      \
                                    const int NA)                                             \
    {                                                                                         \
        const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); \
        for (int64_t i = i0; i < i0 + cnt; i += 4) {                                          \
            const int64_t g = (i - p0) / 4;                                                   \
            xtype tail[4];                                                                    \
            const xtype *xg = x + i;                                                          \
            if (i0 + cnt - i < 4) {                                                           \
                memset(tail, 0, sizeof tail);                                                 \
                memcpy(tail, xg, sizeof *xg * (size_t)(i0 + cnt - i));                        \
                xg = tail;                                                                    \
            }                                                                                 \
            simd_prefetch(xg, 4 * sizeof *xg);                                                \
            const b32_group w = GROUP(xg);                                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                              \
            {                                                                                 \
                const b32_yprep *p = yp[v];                                                   \
                const __m512i t = _mm512_dpbusd_epi32(                                        \
                    _mm512_dpbusd_epi32(p->off[g], w.lo, p->lo[g]), w.hi, p->hi[g]);          \
                const __m512 f = _mm512_permutexvar_ps(                                       \
                    spread, _mm512_castps128_ps512(SCALES(w.xs, p->d[g])));                   \
                acc[v] = _mm512_fmadd_ps(f, _mm512_cvtepi32_ps(t), acc[v]);                   \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_B32_SPAN(q4_0, block_q4_0, group_q4_0, scales_mul)
DEFINE_B32_SPAN(iq4_nl, block_iq4_nl, group_iq4_nl, scales_mul)
DEFINE_B32_SPAN(mxfp4, block_mxfp4, group_mxfp4, scales_pow2)
DEFINE_B32_SPAN(q8_0, block_q8_0, group_q8_0, scales_mul)

#define B32_ACC_ZERO _mm512_setzero_ps()
DEFINE_PREP_ENTRIES(quant_vec_dot_q4_0_avx512, q4_0_span_na, block_q4_0, 32, block_q8_0,
                    b32_yprep, b32_prepare_8, B32_PREP_MAX, __m512, B32_ACC_ZERO, hsum16,
                    B32_MULTI_MAX)
DEFINE_PREP_ENTRIES(quant_vec_dot_iq4_nl_avx512, iq4_nl_span_na, block_iq4_nl, 32, block_q8_0,
                    b32_yprep, b32_prepare_128, B32_PREP_MAX, __m512, B32_ACC_ZERO, hsum16,
                    B32_MULTI_MAX)
DEFINE_PREP_ENTRIES(quant_vec_dot_mxfp4_avx512, mxfp4_span_na, block_mxfp4, 32, block_q8_0,
                    b32_yprep, b32_prepare_12, B32_PREP_MAX, __m512, B32_ACC_ZERO, hsum16,
                    B32_MULTI_MAX)
DEFINE_PREP_ENTRIES(quant_vec_dot_q8_0_avx512, q8_0_span_na, block_q8_0, 32, block_q8_0,
                    b32_yprep, b32_prepare_128, B32_PREP_MAX, __m512, B32_ACC_ZERO, hsum16,
                    B32_MULTI_MAX)

void quant_b32_avx512_kernels(quant_kernels *k)
{
    const size_t bytes = sizeof(b32_yprep);
    const int64_t max_n = (int64_t)B32_PREP_MAX * 32;
    k->vec_dot[QT_Q4_0] = quant_vec_dot_q4_0_avx512;
    k->vec_dot[QT_IQ4_NL] = quant_vec_dot_iq4_nl_avx512;
    k->vec_dot[QT_MXFP4] = quant_vec_dot_mxfp4_avx512;
    k->vec_dot[QT_Q8_0] = quant_vec_dot_q8_0_avx512;
    k->vec_dot_rows[QT_Q4_0] = quant_vec_dot_q4_0_avx512_rows;
    k->vec_dot_rows[QT_IQ4_NL] = quant_vec_dot_iq4_nl_avx512_rows;
    k->vec_dot_rows[QT_MXFP4] = quant_vec_dot_mxfp4_avx512_rows;
    k->vec_dot_rows[QT_Q8_0] = quant_vec_dot_q8_0_avx512_rows;
    k->act_prep[QT_Q4_0] = (quant_act_prep){b32_act_prep_8, quant_vec_dot_q4_0_avx512_rows_prep,
                                            quant_vec_dot_q4_0_avx512_multi, bytes, max_n};
    k->act_prep[QT_IQ4_NL] = (quant_act_prep){b32_act_prep_128,
                                              quant_vec_dot_iq4_nl_avx512_rows_prep,
                                              quant_vec_dot_iq4_nl_avx512_multi, bytes, max_n};
    k->act_prep[QT_MXFP4] = (quant_act_prep){b32_act_prep_12, quant_vec_dot_mxfp4_avx512_rows_prep,
                                             quant_vec_dot_mxfp4_avx512_multi, bytes, max_n};
    k->act_prep[QT_Q8_0] = (quant_act_prep){b32_act_prep_128, quant_vec_dot_q8_0_avx512_rows_prep,
                                            quant_vec_dot_q8_0_avx512_multi, bytes, max_n};
}
