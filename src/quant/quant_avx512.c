/*
 * quant_avx512.c — AVX-512 (F, BW, VL, DQ, VNNI) dot products for the float
 * types and the 32-element block types, and the installer of every AVX-512
 * kernel (it overrides the AVX2 table entry by entry).
 *
 * Float rows: as in quant_avx2.c with 16 lanes; the tail is a masked load,
 * which AVX-512BW also offers for 16-bit elements.
 *
 * 32-element blocks: two blocks per 512-bit register, block a in bytes
 * 0..31 and block b in bytes 32..63, each in element order (nibble types
 * unpack [lo a, hi a, lo b, hi b]). VNNI's vpdpbusd multiplies unsigned by
 * signed bytes and sums four products straight into int32 — no int16 stage,
 * so nothing can saturate. Every weight type is therefore turned into
 * unsigned bytes u = q + off and the offset is taken back out exactly:
 *
 *   sum q * y = dpbusd(u, y) - dpbusd(off, y)
 *
 *   Q5_0    u = nibble | bit << 4      off 16
 *   Q4_1    u = nibble                 off 0, plus m * s from Q8_1
 *   Q5_1    u = nibble | bit << 4      off 0, plus m * s from Q8_1
 *
 * Q4_0, IQ4_NL, MXFP4 and Q8_0 (Q8_0 activations) go faster over a
 * prepared activation, four blocks per register: quant_b32_avx512.c,
 * installed last.
 *
 * Scales. Converting each block's two halves on its own (broadcasts,
 * conversions, a multiply per pair) cost more than the integer work, so
 * blocks go in groups of four: one vpermt2w picks the group's four x halves
 * out of two 64-byte windows of the group, another the four y halves, one
 * 8-lane conversion and multiply give the four products (and, for Q4_1 and
 * Q5_1, m * s in the upper lanes), and a vpermps per pair spreads them over
 * the pair's 16 int32 lanes for the FMA. This raised Q4_1 from 23 to 35
 * GB/s in L2. A tail of 1..3 blocks is run as a zero-padded group.
 *
 * Batches (quant.h: dot_multi): a group's u bytes and x's part of its
 * scales are taken once for up to four activation rows, each of which
 * then gets exactly the single-row operations.
 */
#include "quant/quant_simd.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__) || !defined(__AVX512VNNI__)
#error "quant_avx512.c needs the AVX512_FLAGS of the Makefile"
#endif

/* --- float rows -------------------------------------------------------- */

static inline __m512 load_f16x16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 load_bf16x16(const uint16_t *p, __mmask16 m)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

static inline __m512 load_f32x16(const float *p, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, p);
}

/* One shape for all three; LOAD reads 16 of x's elements under a mask. */
#define DEFINE_DOT_FLOAT(name, xtype, LOAD)                                                  \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                  \
                     const void *restrict vy)                                                \
    {                                                                                        \
        const xtype *x = vx;                                                                 \
        const float *y = vy;                                                                 \
        const __mmask16 all = 0xFFFF;                                                        \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        int64_t i = 0;                                                                       \
        for (; i + 64 <= n; i += 64) {                                                       \
            simd_prefetch(x + i, 64 * sizeof *x);                                            \
            a0 = _mm512_fmadd_ps(LOAD(x + i, all), _mm512_loadu_ps(y + i), a0);              \
            a1 = _mm512_fmadd_ps(LOAD(x + i + 16, all), _mm512_loadu_ps(y + i + 16), a1);    \
            a2 = _mm512_fmadd_ps(LOAD(x + i + 32, all), _mm512_loadu_ps(y + i + 32), a2);    \
            a3 = _mm512_fmadd_ps(LOAD(x + i + 48, all), _mm512_loadu_ps(y + i + 48), a3);    \
        }                                                                                    \
        for (; i + 16 <= n; i += 16)                                                         \
            a0 = _mm512_fmadd_ps(LOAD(x + i, all), _mm512_loadu_ps(y + i), a0);              \
        if (i < n) {                                                                         \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                            \
            a1 = _mm512_fmadd_ps(LOAD(x + i, m), _mm512_maskz_loadu_ps(m, y + i), a1);       \
        }                                                                                    \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

DEFINE_DOT_FLOAT(vec_dot_f32, float, load_f32x16)
DEFINE_DOT_FLOAT(vec_dot_f16, uint16_t, load_f16x16)
DEFINE_DOT_FLOAT(vec_dot_bf16, uint16_t, load_bf16x16)

/* --- the integer part, two blocks at a time ----------------------------- */

/* Two blocks' 16 nibble bytes -> 64 bytes [lo a, hi a, lo b, hi b]. */
static inline __m512i nibbles_pair(const uint8_t *a, const uint8_t *b)
{
    const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                               _mm_loadu_si128((const __m128i *)b), 1);
    const __m512i z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                               _mm512_castsi256_si512(ab));
    const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi64(z, shift), _mm512_set1_epi8(0x0F));
}

/* Two blocks' 32 bytes -> one register. */
static inline __m512i bytes_pair(const int8_t *a, const int8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* sum over 4-groups of (u - off) * y, off a constant byte (0 for none). */
static inline __m512i dot_offset(__m512i u, __m512i y, int off)
{
    const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y);
    if (!off)
        return t;
    return _mm512_sub_epi32(t, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), y));
}

/* 64 bits of high bits for two Q5 blocks, element order. */
static inline __mmask64 high_bits_pair(const uint8_t *a, const uint8_t *b)
{
    return (__mmask64)((uint64_t)quant_q5_high_bits(a) | (uint64_t)quant_q5_high_bits(b) << 32);
}

/*
 * Integer sums of blocks x[0], x[1] against y[0], y[1] (lanes 0..7 and
 * 8..15); lut is the type's biased value table where it has one.
 */
/* The unsigned bytes u of blocks x[0], x[1] (the types against Q8_0 whose
 * only scale is d); dot2 of each is dot_offset(u, y, its offset). */
static inline __m512i u2_q5_0(const block_q5_0 *x, __m512i lut)
{
    (void)lut;
    const __m512i u = nibbles_pair(x[0].qs, x[1].qs);
    return _mm512_mask_add_epi8(u, high_bits_pair(x[0].qh, x[1].qh), u, _mm512_set1_epi8(16));
}

#define OFF_q5_0 16

static inline __m512i u2_q4_1(const block_q4_1 *x, __m512i lut)
{
    (void)lut;
    return nibbles_pair(x[0].qs, x[1].qs);
}

static inline __m512i u2_q5_1(const block_q5_1 *x, __m512i lut)
{
    (void)lut;
    const __m512i u = nibbles_pair(x[0].qs, x[1].qs);
    return _mm512_mask_add_epi8(u, high_bits_pair(x[0].qh, x[1].qh), u, _mm512_set1_epi8(16));
}

#define OFF_q4_1 0
#define OFF_q5_1 0
#define DEFINE_DOT2_Y(t, xtype, ytype)                                                        \
    static inline __m512i dot2_##t(const xtype *x, const ytype *y, __m512i lut)               \
    {                                                                                         \
        return dot_offset(u2_##t(x, lut), bytes_pair(y[0].qs, y[1].qs), OFF_##t);             \
    }
DEFINE_DOT2_Y(q5_0, block_q5_0, block_q8_0)
DEFINE_DOT2_Y(q4_1, block_q4_1, block_q8_1)
DEFINE_DOT2_Y(q5_1, block_q5_1, block_q8_1)

/* --- scales, four blocks at a time ------------------------------------- */

/*
 * The halves of four consecutive blocks (stride bytes apart, even) come
 * out of two 64-byte windows of the group with one vpermt2w: [0, 64) and
 * WIN2.. (the group's last 64 bytes, or [64, 128) if it is longer). Both
 * windows lie inside the group, so nothing past the row is read.
 */
#define WIN2(stride) (4 * (stride) - 64 < 64 ? 4 * (stride) - 64 : 64)
/* vpermt2w index of the half at byte b of the group */
#define HALF_AT(stride, b) ((b) + 2 <= 64 ? (b) / 2 : 32 + ((b) - WIN2(stride)) / 2)
/* Lanes 0..3: the halves at offset o0 of blocks 0..3; lanes 4..7: at o1. */
#define GROUP_INDEX(st, o0, o1)                                                               \
    _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
                     HALF_AT(st, 3 * (st) + (o1)), HALF_AT(st, 2 * (st) + (o1)),             \
                     HALF_AT(st, (st) + (o1)), HALF_AT(st, (o1)), HALF_AT(st, 3 * (st) + (o0)), \
                     HALF_AT(st, 2 * (st) + (o0)), HALF_AT(st, (st) + (o0)), HALF_AT(st, (o0)))

/* The 8 halves of a group that idx names, as floats. */
SIMD_INLINE __m256 group_halves(const void *p, int stride, __m512i idx)
{
    const uint8_t *b = p;
    /* Hide that b is the blocks' address: clang otherwise serves their other
     * (unaligned 16/32-byte) loads out of these windows, with scalar shifts
     * that run at a third of the speed. */
    __asm__("" : "+r"(b));
    const __m512i w1 = _mm512_loadu_si512(b), w2 = _mm512_loadu_si512(b + WIN2(stride));
    const __m512i w = _mm512_permutex2var_epi16(w1, idx, w2);
    return _mm256_cvtph_ps(_mm512_castsi512_si128(w));
}

/* A group's scale products in two steps, x's part (XS_*) then the product
 * with y's (F_*), so that a batch takes x's part once: types whose only
 * half is d (at offset 0); Q4_1, Q5_1 against Q8_1 (d * d in lanes 0..3,
 * m * s in lanes 4..7). */
#define XS_D(xg) group_halves(xg, (int)sizeof *(xg), GROUP_INDEX((int)sizeof *(xg), 0, 0))
#define F_D(xs, yg)                                                                           \
    _mm256_mul_ps(xs, group_halves(yg, (int)sizeof *(yg), GROUP_INDEX((int)sizeof *(yg), 0, 0)))
#define XS_DM(xg) group_halves(xg, (int)sizeof *(xg), GROUP_INDEX((int)sizeof *(xg), 0, 2))
#define F_DM(xs, yg)                                                                          \
    _mm256_mul_ps(xs, group_halves(yg, (int)sizeof *(yg), GROUP_INDEX((int)sizeof *(yg), 0, 2)))
#define SCALES_D(xg, yg) F_D(XS_D(xg), yg)
#define SCALES_DM(xg, yg) F_DM(XS_DM(xg), yg)

/* --- the block loop ---------------------------------------------------- */

/*
 * Four blocks per step: f = the group's scale products (lanes 0..3), spread
 * to [f0 x 8, f1 x 8] and [f2 x 8, f3 x 8] for its two pairs; types with a
 * min (HAS_MIN) sum m * s from lanes 4..7 on the side. A tail of 1..3
 * blocks is copied into a zeroed group: a zero block has zero scales, so it
 * adds exactly nothing.
 */
#define DEFINE_DOT32(name, xtype, ytype, DOT2, LUT, SCALES, HAS_MIN)                          \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                   \
                     const void *restrict vy)                                                 \
    {                                                                                         \
        const xtype *x = vx;                                                                  \
        const ytype *y = vy;                                                                  \
        const int64_t nb = n / 32;                                                            \
        const __m512i lut = LUT;                                                              \
        const __m512i pair01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1); \
        const __m512i pair23 = _mm512_add_epi32(pair01, _mm512_set1_epi32(2));                \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                             \
        __m256 am = _mm256_setzero_ps();                                                      \
        int64_t i = 0;                                                                        \
        for (; i + 4 <= nb; i += 4) {                                                         \
            simd_prefetch(x + i, 4 * sizeof *x);                                              \
            STEP4(x + i, y + i, SCALES, DOT2, HAS_MIN);                                       \
        }                                                                                     \
        if (i < nb) {                                                                         \
            xtype xt[4];                                                                      \
            ytype yt[4];                                                                      \
            memset(xt, 0, sizeof xt);                                                         \
            memset(yt, 0, sizeof yt);                                                         \
            memcpy(xt, x + i, (size_t)(nb - i) * sizeof *x);                                  \
            memcpy(yt, y + i, (size_t)(nb - i) * sizeof *y);                                  \
            STEP4(xt, yt, SCALES, DOT2, HAS_MIN);                                             \
        }                                                                                     \
        const float ms = HAS_MIN ? simd_hsum_f32x4(_mm256_extractf128_ps(am, 1)) : 0.0f;      \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + ms;                                \
    }
/* One group of four blocks, inside DEFINE_DOT32. */
#define STEP4(xg, yg, SCALES, DOT2, HAS_MIN)                                                  \
    do {                                                                                      \
        const __m256 f = SCALES(xg, yg);                                                      \
        const __m512 fz = _mm512_castps256_ps512(f);                                          \
        const __m512i t01 = DOT2(xg, yg, lut), t23 = DOT2((xg) + 2, (yg) + 2, lut);           \
        a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair01, fz), _mm512_cvtepi32_ps(t01), a0); \
        a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair23, fz), _mm512_cvtepi32_ps(t23), a1); \
        if (HAS_MIN)                                                                          \
            am = _mm256_add_ps(am, f);                                                        \
    } while (0)

DEFINE_DOT32(vec_dot_q4_1, block_q4_1, block_q8_1, dot2_q4_1, _mm512_setzero_si512(), SCALES_DM, 1)
DEFINE_DOT32(vec_dot_q5_0, block_q5_0, block_q8_0, dot2_q5_0, _mm512_setzero_si512(), SCALES_D, 0)
DEFINE_DOT32(vec_dot_q5_1, block_q5_1, block_q8_1, dot2_q5_1, _mm512_setzero_si512(), SCALES_DM, 1)

/*
 * dot_multi (quant.h) for the 32-element types: up to four activation rows
 * (Q8_0, or Q8_1 for Q4_1 and Q5_1) against a weight row. A group's weight
 * bytes (u2) and x's part of its scales (XS) are taken once for all four;
 * each activation gets exactly DEFINE_DOT32's operations (the same
 * products, the same FMAs into its own a0, a1 and am, the same tail and
 * final sum), so the bits are vec_dot's.
 */
#define DOT32_MULTI_MAX 4
#define DEFINE_DOT32_MULTI(t, xtype, ytype, LUT, XS, F, HAS_MIN)                              \
    SIMD_INLINE void t##_group_na(const xtype *xg, const uint8_t *yb, size_t ys, int64_t i,   \
                                  __m512 *a0, __m512 *a1, __m256 *am, const int NA)           \
    {                                                                                         \
        const __m512i lut = LUT;                                                              \
        const __m512i pair01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1); \
        const __m512i pair23 = _mm512_add_epi32(pair01, _mm512_set1_epi32(2));                \
        const __m256 xs = XS(xg);                                                             \
        const __m512i u01 = u2_##t(xg, lut), u23 = u2_##t(xg + 2, lut);                        \
        _Pragma("GCC unroll 4") for (int v = 0; v < NA; v++)                                  \
        {                                                                                     \
            const ytype *yg = (const ytype *)(yb + (size_t)v * ys) + i;                       \
            const __m256 f = F(xs, yg);                                                       \
            const __m512 fz = _mm512_castps256_ps512(f);                                      \
            const __m512i t01 = dot_offset(u01, bytes_pair(yg[0].qs, yg[1].qs), OFF_##t);     \
            const __m512i t23 = dot_offset(u23, bytes_pair(yg[2].qs, yg[3].qs), OFF_##t);     \
            a0[v] = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair01, fz), _mm512_cvtepi32_ps(t01), a0[v]); \
            a1[v] = _mm512_fmadd_ps(_mm512_permutexvar_ps(pair23, fz), _mm512_cvtepi32_ps(t23), a1[v]); \
            if (HAS_MIN)                                                                      \
                am[v] = _mm256_add_ps(am[v], f);                                              \
        }                                                                                     \
    }                                                                                         \
    SIMD_INLINE void t##_row_na(const xtype *x, int64_t nb, const uint8_t *yb, size_t ys,     \
                                __m512 *a0, __m512 *a1, __m256 *am, const int NA)             \
    {                                                                                         \
        int64_t i = 0;                                                                        \
        for (; i + 4 <= nb; i += 4) {                                                         \
            simd_prefetch(x + i, 4 * sizeof *x);                                              \
            t##_group_na(x + i, yb, ys, i, a0, a1, am, NA);                                   \
        }                                                                                     \
        if (i < nb) { /* the tail as a zero-padded group, per activation too */              \
            xtype xt[4];                                                                      \
            ytype yt[DOT32_MULTI_MAX][4];                                                     \
            memset(xt, 0, sizeof xt);                                                         \
            memset(yt, 0, sizeof yt);                                                         \
            memcpy(xt, x + i, (size_t)(nb - i) * sizeof *x);                                  \
            for (int v = 0; v < NA; v++)                                                      \
                memcpy(yt[v], (const ytype *)(yb + (size_t)v * ys) + i,                       \
                       (size_t)(nb - i) * sizeof(ytype));                                     \
            t##_group_na(xt, (const uint8_t *)yt, sizeof yt[0], 0, a0, a1, am, NA);           \
        }                                                                                     \
    }                                                                                         \
    static void vec_dot_##t##_multi(int64_t n, int nr, int na, float *restrict s,             \
                                    size_t s_stride, const void *restrict vx, size_t stride,  \
                                    const void *restrict vy, size_t y_stride)                 \
    {                                                                                         \
        for (int r = 0; r < nr; r++) {                                                        \
            const xtype *x = (const xtype *)((const uint8_t *)vx + (size_t)r * stride);       \
            for (int v0 = 0; v0 < na; v0 += DOT32_MULTI_MAX) {                                \
                const int nv = na - v0 < DOT32_MULTI_MAX ? na - v0 : DOT32_MULTI_MAX;         \
                const uint8_t *yb = (const uint8_t *)vy + (size_t)v0 * y_stride;              \
                __m512 a0[DOT32_MULTI_MAX], a1[DOT32_MULTI_MAX];                              \
                __m256 am[DOT32_MULTI_MAX];                                                   \
                for (int v = 0; v < nv; v++) {                                                \
                    a0[v] = a1[v] = _mm512_setzero_ps();                                      \
                    am[v] = _mm256_setzero_ps();                                              \
                }                                                                             \
                switch (nv) { /* a constant NA per case, for registers */                     \
                case 1: t##_row_na(x, n / 32, yb, y_stride, a0, a1, am, 1); break;            \
                case 2: t##_row_na(x, n / 32, yb, y_stride, a0, a1, am, 2); break;            \
                case 3: t##_row_na(x, n / 32, yb, y_stride, a0, a1, am, 3); break;            \
                default: t##_row_na(x, n / 32, yb, y_stride, a0, a1, am, 4); break;           \
                }                                                                             \
                for (int v = 0; v < nv; v++) { /* DEFINE_DOT32's final sum, to the bit */     \
                    const float ms =                                                          \
                        HAS_MIN ? simd_hsum_f32x4(_mm256_extractf128_ps(am[v], 1)) : 0.0f;    \
                    s[(size_t)(v0 + v) * s_stride + r] =                                      \
                        _mm512_reduce_add_ps(_mm512_add_ps(a0[v], a1[v])) + ms;               \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

#define ZERO_LUT _mm512_setzero_si512()
DEFINE_DOT32_MULTI(q5_0, block_q5_0, block_q8_0, ZERO_LUT, XS_D, F_D, 0)
DEFINE_DOT32_MULTI(q4_1, block_q4_1, block_q8_1, ZERO_LUT, XS_DM, F_DM, 1)
DEFINE_DOT32_MULTI(q5_1, block_q5_1, block_q8_1, ZERO_LUT, XS_DM, F_DM, 1)
#undef ZERO_LUT

/* --- installer --------------------------------------------------------- */

void quant_avx512_kernels(quant_kernels *k)
{
    k->vec_dot[QT_F32] = vec_dot_f32;
    k->vec_dot[QT_F16] = vec_dot_f16;
    k->vec_dot[QT_BF16] = vec_dot_bf16;
    k->vec_dot[QT_Q4_1] = vec_dot_q4_1;
    k->vec_dot[QT_Q5_0] = vec_dot_q5_0;
    k->vec_dot[QT_Q5_1] = vec_dot_q5_1;
    k->vec_dot[QT_Q2_K] = quant_vec_dot_q2_K_avx512;
    k->vec_dot[QT_Q3_K] = quant_vec_dot_q3_K_avx512;
    k->vec_dot[QT_Q4_K] = quant_vec_dot_q4_K_avx512;
    k->vec_dot[QT_Q5_K] = quant_vec_dot_q5_K_avx512;
    k->vec_dot[QT_Q6_K] = quant_vec_dot_q6_K_avx512;
    k->vec_dot[QT_IQ4_XS] = quant_vec_dot_iq4_xs_avx512;
    k->vec_dot_rows[QT_Q2_K] = quant_vec_dot_q2_K_avx512_rows;
    k->vec_dot_rows[QT_Q3_K] = quant_vec_dot_q3_K_avx512_rows;
    k->vec_dot_rows[QT_Q4_K] = quant_vec_dot_q4_K_avx512_rows;
    k->vec_dot_rows[QT_Q5_K] = quant_vec_dot_q5_K_avx512_rows;
    k->vec_dot_rows[QT_Q6_K] = quant_vec_dot_q6_K_avx512_rows;
    /* batches: plain Q8_0 / Q8_1 rows, nothing to prepare */
    k->act_prep[QT_Q5_0] = (quant_act_prep){NULL, NULL, vec_dot_q5_0_multi, 0, 0};
    k->act_prep[QT_Q4_1] = (quant_act_prep){NULL, NULL, vec_dot_q4_1_multi, 0, 0};
    k->act_prep[QT_Q5_1] = (quant_act_prep){NULL, NULL, vec_dot_q5_1_multi, 0, 0};
    quant_kq_avx512_act_preps(k);
    quant_b32_avx512_kernels(k);
}
