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
 *   Q4_0    u = nibble                 off 8
 *   Q5_0    u = nibble | bit << 4      off 16
 *   Q8_0    u = q ^ 0x80 = q + 128     off 128
 *   IQ4_NL  u = (kvalues + 128)[nib]   off 128    (pshufb table)
 *   MXFP4   u = (kvalues + 12)[nib]    off 12     (pshufb table)
 *   Q4_1    u = nibble                 off 0, plus m * s from Q8_1
 *   Q5_1    u = nibble | bit << 4      off 0, plus m * s from Q8_1
 *
 * The 16 int32 lanes are converted to float and FMA'd with a register that
 * holds block a's scale product in lanes 0..7 and block b's in 8..15, built
 * from the halves with broadcasts and one 16-lane vcvtph2ps. Four blocks are
 * in flight per iteration on two accumulators; an odd last block is paired
 * with itself and its copy's scale zeroed.
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

/* --- helpers for block pairs ------------------------------------------- */

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

/* Halves a, b -> 16 floats [a x 8, b x 8]. */
static inline __m512 halves_pair(ggml_half a, ggml_half b)
{
    const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)a)),
                                              _mm_set1_epi16((short)b), 1);
    return _mm512_cvtph_ps(h);
}

/* sum over 4-groups of (u - off) * y, off a constant byte (0 for none). */
static inline __m512i dot_offset(__m512i u, __m512i y, int off)
{
    const __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y);
    if (!off)
        return t;
    return _mm512_sub_epi32(t, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), y));
}

/* acc + d * sums, d's lanes outside `keep` zeroed (an unpaired last block). */
static inline __m512 fma_pair(__m512 d, __m512i sums, __mmask16 keep, __m512 acc)
{
    return _mm512_fmadd_ps(_mm512_maskz_mov_ps(keep, d), _mm512_cvtepi32_ps(sums), acc);
}

/* 64 bits of high bits for two Q5 blocks, element order. */
static inline __mmask64 high_bits_pair(const uint8_t *a, const uint8_t *b)
{
    return (__mmask64)((uint64_t)quant_q5_high_bits(a) | (uint64_t)quant_q5_high_bits(b) << 32);
}

/* The 16-entry table of a non-linear type plus a bias, in all four lanes. */
static inline __m512i lut_biased(const int8_t table[16], int bias)
{
    const __m128i t = _mm_add_epi8(_mm_loadu_si128((const __m128i *)table), _mm_set1_epi8((char)bias));
    return _mm512_broadcast_i32x4(t);
}

/* --- pair steps -------------------------------------------------------- */

/*
 * A step adds blocks a and b (x[0], x[step]) to acc; step is 1, or 0 for an
 * unpaired last block, with keep masking out its copy. Steps of the Q8_1
 * types also add m * s into lanes 0 and 8 of *accm.
 */
typedef struct pair_ctx {
    __m512i lut;
    __m512 accm;
} pair_ctx;

static inline __m512 step_q4_0(const block_q4_0 *x, const block_q8_0 *y, int step, __mmask16 keep,
                               __m512 acc, pair_ctx *c)
{
    (void)c;
    const __m512i u = nibbles_pair(x[0].qs, x[step].qs);
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 8);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

static inline __m512 step_q5_0(const block_q5_0 *x, const block_q8_0 *y, int step, __mmask16 keep,
                               __m512 acc, pair_ctx *c)
{
    (void)c;
    __m512i u = nibbles_pair(x[0].qs, x[step].qs);
    u = _mm512_mask_add_epi8(u, high_bits_pair(x[0].qh, x[step].qh), u, _mm512_set1_epi8(16));
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 16);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

static inline __m512 step_q8_0(const block_q8_0 *x, const block_q8_0 *y, int step, __mmask16 keep,
                               __m512 acc, pair_ctx *c)
{
    (void)c;
    const __m512i u = _mm512_xor_si512(bytes_pair(x[0].qs, x[step].qs), _mm512_set1_epi8((char)0x80));
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 128);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

static inline __m512 step_iq4_nl(const block_iq4_nl *x, const block_q8_0 *y, int step,
                                 __mmask16 keep, __m512 acc, pair_ctx *c)
{
    const __m512i u = _mm512_shuffle_epi8(c->lut, nibbles_pair(x[0].qs, x[step].qs));
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 128);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

static inline __m512 step_mxfp4(const block_mxfp4 *x, const block_q8_0 *y, int step,
                                __mmask16 keep, __m512 acc, pair_ctx *c)
{
    const __m512i u = _mm512_shuffle_epi8(c->lut, nibbles_pair(x[0].qs, x[step].qs));
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 12);
    const __m512 dx = _mm512_insertf32x8(_mm512_set1_ps(quant_e8m0_half(x[0].e)),
                                         _mm256_set1_ps(quant_e8m0_half(x[step].e)), 1);
    return fma_pair(_mm512_mul_ps(dx, halves_pair(y[0].d, y[step].d)), t, keep, acc);
}

/* m * s of both blocks into lanes 0 and 8 of c->accm (exact adds, no FMA). */
static inline void add_min_pair(ggml_half ma, ggml_half mb, ggml_half sa, ggml_half sb,
                                __mmask16 keep, pair_ctx *c)
{
    const __m512 ms = _mm512_mul_ps(halves_pair(ma, mb), halves_pair(sa, sb));
    c->accm = _mm512_mask_add_ps(c->accm, keep & 0x0101, c->accm, ms);
}

static inline __m512 step_q4_1(const block_q4_1 *x, const block_q8_1 *y, int step, __mmask16 keep,
                               __m512 acc, pair_ctx *c)
{
    const __m512i u = nibbles_pair(x[0].qs, x[step].qs);
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 0);
    add_min_pair(x[0].m, x[step].m, y[0].s, y[step].s, keep, c);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

static inline __m512 step_q5_1(const block_q5_1 *x, const block_q8_1 *y, int step, __mmask16 keep,
                               __m512 acc, pair_ctx *c)
{
    __m512i u = nibbles_pair(x[0].qs, x[step].qs);
    u = _mm512_mask_add_epi8(u, high_bits_pair(x[0].qh, x[step].qh), u, _mm512_set1_epi8(16));
    const __m512i t = dot_offset(u, bytes_pair(y[0].qs, y[step].qs), 0);
    add_min_pair(x[0].m, x[step].m, y[0].s, y[step].s, keep, c);
    const __m512 d = _mm512_mul_ps(halves_pair(x[0].d, x[step].d), halves_pair(y[0].d, y[step].d));
    return fma_pair(d, t, keep, acc);
}

/* --- the block loop ---------------------------------------------------- */

#define DEFINE_DOT32(name, xtype, ytype, STEP, LUT)                                          \
    static void name(int64_t n, float *restrict s, const void *restrict vx,                  \
                     const void *restrict vy)                                                \
    {                                                                                        \
        const xtype *x = vx;                                                                 \
        const ytype *y = vy;                                                                 \
        const int64_t nb = n / 32;                                                           \
        pair_ctx c = {LUT, _mm512_setzero_ps()};                                             \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                            \
        int64_t i = 0;                                                                       \
        for (; i + 4 <= nb; i += 4) {                                                        \
            a0 = STEP(x + i, y + i, 1, 0xFFFF, a0, &c);                                      \
            a1 = STEP(x + i + 2, y + i + 2, 1, 0xFFFF, a1, &c);                              \
        }                                                                                    \
        if (i + 2 <= nb) {                                                                   \
            a0 = STEP(x + i, y + i, 1, 0xFFFF, a0, &c);                                      \
            i += 2;                                                                          \
        }                                                                                    \
        if (i < nb)                                                                          \
            a1 = STEP(x + i, y + i, 0, 0x00FF, a1, &c);                                      \
        *s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), c.accm));             \
    }

DEFINE_DOT32(vec_dot_q4_0, block_q4_0, block_q8_0, step_q4_0, _mm512_setzero_si512())
DEFINE_DOT32(vec_dot_q4_1, block_q4_1, block_q8_1, step_q4_1, _mm512_setzero_si512())
DEFINE_DOT32(vec_dot_q5_0, block_q5_0, block_q8_0, step_q5_0, _mm512_setzero_si512())
DEFINE_DOT32(vec_dot_q5_1, block_q5_1, block_q8_1, step_q5_1, _mm512_setzero_si512())
DEFINE_DOT32(vec_dot_q8_0, block_q8_0, block_q8_0, step_q8_0, _mm512_setzero_si512())
DEFINE_DOT32(vec_dot_iq4_nl, block_iq4_nl, block_q8_0, step_iq4_nl, lut_biased(kvalues_iq4nl, 128))
DEFINE_DOT32(vec_dot_mxfp4, block_mxfp4, block_q8_0, step_mxfp4, lut_biased(kvalues_mxfp4, 12))

/* --- installer --------------------------------------------------------- */

void quant_avx512_kernels(quant_kernels *k)
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
    k->vec_dot[QT_Q2_K] = quant_vec_dot_q2_K_avx512;
    k->vec_dot[QT_Q3_K] = quant_vec_dot_q3_K_avx512;
    k->vec_dot[QT_Q4_K] = quant_vec_dot_q4_K_avx512;
    k->vec_dot[QT_Q5_K] = quant_vec_dot_q5_K_avx512;
    k->vec_dot[QT_Q6_K] = quant_vec_dot_q6_K_avx512;
    k->vec_dot[QT_IQ4_XS] = quant_vec_dot_iq4_xs_avx512;
}
