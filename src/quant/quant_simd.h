/*
 * quant_simd.h — private to src/quant: what the x86 SIMD kernel files share.
 *
 * Only files compiled with AVX2 flags (*_avx2.c, *_avxvnni.c, *_avx512.c)
 * include this; everything below needs AVX2 + FMA + F16C and is guarded so
 * that a stray include elsewhere fails loudly instead of miscompiling.
 *
 * The kernels follow one pattern (ggml's): the integer dot product of a
 * block (or sub-block) is exact — int8 x small-int products summed in int16
 * pairs and then int32 lanes, never saturating for values a quantizer can
 * produce — and only the per-block scale is applied in float, with FMA into
 * a few independent vector accumulators. The result therefore differs from
 * the scalar reference only in the order of the float additions.
 *
 * The K-quant kernels live in quant_kq_*.c and the activation quantizers in
 * quant_act_avx2.c; the installers in quant_avx2.c and quant_avx512.c reach
 * them through the prototypes at the bottom.
 */
#ifndef SW_QUANT_SIMD_H
#define SW_QUANT_SIMD_H

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "quant_simd.h needs -mavx2 -mfma -mf16c (only *_avx2.c / *_avxvnni.c / *_avx512.c may include it)"
#endif

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/quant_ref.h"

/* For per-block helpers that must fold into their loops: a call would
 * spill the accumulators (gcc declines to inline the bigger ones). */
#define SIMD_INLINE static inline __attribute__((always_inline))

/*
 * Software prefetch of the weight stream. A matrix-vector product streams
 * weights from DRAM once; with a long loop body per cache line the core
 * keeps too few misses in flight for the hardware prefetcher alone, and one
 * thread reached ~33 of 44 GB/s. Touching the line SIMD_PREFETCH_BYTES ahead
 * of the one being consumed brought it to ~42 (Q4_K, AMD Zen 5; 8 to 32 KiB
 * all do as well, 4 KiB does not). The addresses may run past the row: into
 * the next row, which is the point, or past the matrix, which a prefetch
 * tolerates.
 *
 * The hint is T1, into L2 and not L1 (SIMD_PREFETCH_HINT). On Intel cores a
 * T0 prefetch holds one of the few L1 fill buffers until its line arrives
 * from DRAM, and the kernel's own loads queue behind them. On a Xeon with
 * AMX (a VM of 2 cores, read bandwidth 17 GB/s on one, 33 on both), Q4_K
 * 4096x4096 from DRAM: one thread 9.1-9.8 GB/s with T0, 10.3-12.6 with no
 * prefetch, 13.0-14.0 with T1; two threads 18.5 -> 26 (Q6_K 21 -> 28, Q8_0
 * 22 -> 28). Not yet measured on the AMD EPYC (Zen 5) the distance was
 * tuned on; AMD's optimization guides have described all three temporal
 * hints as fills of L1, which would make it the same prefetch there.
 */
#define SIMD_PREFETCH_BYTES 8192
#define SIMD_PREFETCH_HINT _MM_HINT_T1

/* Prefetches the lines covering [p, p + bytes) shifted `ahead` bytes on;
 * call once per loop step with the bytes the step consumes (a constant, at
 * most 384, so the tests below fold away). */
SIMD_INLINE void simd_prefetch_ahead(const void *p, int bytes, size_t ahead)
{
    const char *c = (const char *)p + ahead;
    _mm_prefetch(c, SIMD_PREFETCH_HINT);
    if (bytes > 64)
        _mm_prefetch(c + 64, SIMD_PREFETCH_HINT);
    if (bytes > 128)
        _mm_prefetch(c + 128, SIMD_PREFETCH_HINT);
    if (bytes > 192)
        _mm_prefetch(c + 192, SIMD_PREFETCH_HINT);
    if (bytes > 256)
        _mm_prefetch(c + 256, SIMD_PREFETCH_HINT);
    if (bytes > 320)
        _mm_prefetch(c + 320, SIMD_PREFETCH_HINT);
}

/* The same, SIMD_PREFETCH_BYTES ahead: one row streaming alone. */
SIMD_INLINE void simd_prefetch(const void *p, int bytes)
{
    simd_prefetch_ahead(p, bytes, SIMD_PREFETCH_BYTES);
}

/*
 * Multi-row kernels walk nr rows (stride bytes apart) in lockstep, so nr
 * streams are in flight; each stream prefetching SIMD_PREFETCH_BYTES ahead
 * would hold nr times that in L1 and evict it before use (Q6_K fell from
 * 41 to 27 GB/s). Instead each row prefetches the same position in the row
 * group k groups on, the fewest groups that reach SIMD_PREFETCH_BYTES: every
 * byte is still prefetched once, about that far ahead in time. Rows so long
 * that one group exceeds SIMD_PREFETCH_BYTES (SIMD_ROWS_LONG) run one at a
 * time: they gain nothing from sharing and would overfill L1.
 */
static inline size_t simd_rows_ahead(int nr, size_t stride)
{
    const size_t group = (size_t)nr * stride;
    return nr == 1 ? SIMD_PREFETCH_BYTES : (SIMD_PREFETCH_BYTES + group - 1) / group * group;
}
#define SIMD_ROWS_LONG(stride) (4 * (stride) > SIMD_PREFETCH_BYTES)

/*
 * A batched entry (quant.h: quant_dot_multi_fn) named `name` over
 * ROW_NA(nb, x, yb, ys, out, s_stride, NA): one weight row x of xtype
 * blocks (blck elements each) against NA plain activation rows at yb, ys
 * bytes apart, results at out, s_stride apart. The activations go MAX (2
 * or 4) at a time, NA a constant per call so that ROW_NA keeps its
 * accumulators in registers.
 */
#define SIMD_MULTI_ENTRY(name, ROW_NA, xtype, blck, MAX)                                     \
    static void name(int64_t n, int nr, int na, float *restrict s, size_t s_stride,         \
                     const void *restrict vx, size_t stride, const void *restrict vy,       \
                     size_t y_stride)                                                        \
    {                                                                                        \
        for (int r = 0; r < nr; r++) {                                                       \
            const xtype *x = (const xtype *)((const uint8_t *)vx + (size_t)r * stride);      \
            for (int v0 = 0; v0 < na; v0 += (MAX)) {                                         \
                const uint8_t *yb = (const uint8_t *)vy + (size_t)v0 * y_stride;             \
                float *out = s + (size_t)v0 * s_stride + r;                                  \
                switch (na - v0 < (MAX) ? na - v0 : (MAX)) {                                 \
                case 1: ROW_NA(n / (blck), x, yb, y_stride, out, s_stride, 1); break;        \
                case 2: ROW_NA(n / (blck), x, yb, y_stride, out, s_stride, 2); break;        \
                case 3:                                                                      \
                    ROW_NA(n / (blck), x, yb, y_stride, out, s_stride, 3 < (MAX) ? 3 : (MAX)); \
                    break;                                                                   \
                default: ROW_NA(n / (blck), x, yb, y_stride, out, s_stride, (MAX)); break;   \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

/* The vec_dot `dot` (ROW_NA with one activation) and the batched entry
 * `multi` over the same kernel, so a batch gives vec_dot's bits. */
#define SIMD_ROW_NA_ENTRIES(dot, multi, ROW_NA, xtype, blck, MAX)                            \
    void dot(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy) \
    {                                                                                        \
        ROW_NA(n / (blck), (const xtype *)vx, (const uint8_t *)vy, 0, s, 0, 1);              \
    }                                                                                        \
    SIMD_MULTI_ENTRY(multi, ROW_NA, xtype, blck, MAX)

/* A half-precision scale as float (F16C; exact, like quant_f16_to_f32). */
static inline float simd_f16(ggml_half h)
{
    return _cvtsh_ss(h);
}

/* Two adjacent halves (d, dmin) as floats in lanes 0 and 1, times f. */
static inline __m128 simd_f16_pair(const ggml_half *p, float f)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)u)), _mm_set1_ps(f));
}

static inline float simd_hsum_f32x8(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline float simd_hsum_f32x4(__m128 r)
{
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/*
 * 16 bytes of packed nibbles -> 32 bytes 0..15 in element order: byte j's
 * low nibble is element j, its high nibble element j + 16 (blocks.h).
 */
static inline __m256i simd_nibbles32(const uint8_t *p)
{
    const __m128i q = _mm_loadu_si128((const __m128i *)p);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes: byte i is 0xFF if bit i is set, else 0. */
static inline __m256i simd_bits_to_bytes(uint32_t bits)
{
    /* Byte i takes byte i/8 of the word, then keeps bit i%8 of it. */
    const __m256i pick = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                            0x0202020202020202, 0x0303030303030303);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Sums of 4 adjacent products of unsigned u and signed s bytes, as 8 int32;
 * exact while the sum of each pair of products fits int16 (maddubs
 * saturates): true for u <= 128 against |s| <= 127. With AVX-VNNI one
 * vpdpbusd gives the same lanes (and never saturates). */
static inline __m256i simd_dot_u8i8(__m256i u, __m256i s)
{
#ifdef __AVXVNNI__
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* Signed x signed bytes, as above: |x| against y with x's sign moved onto y.
 * x may be -128 (|x| = 128 is read unsigned); y must not be. */
static inline __m256i simd_dot_i8i8(__m256i x, __m256i y)
{
    return simd_dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Masks the first n (0..8) of 8 lanes, for tails of float loops. */
static inline __m256i simd_tail_mask8(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/*
 * pshufb control bytes for one 128-bit lane that make each of its 8 int16
 * a copy of its int16 element e: how the kernels spread a sub-block scale.
 * Tables of these live in static storage: built with set1/insert at run
 * time they cost ~40 instructions per call, which short rows feel.
 */
#define SIMD_PICK16_2(e) (2 * (e)), (2 * (e) + 1)
#define SIMD_PICK16(e)                                                                          \
    SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e), \
        SIMD_PICK16_2(e), SIMD_PICK16_2(e), SIMD_PICK16_2(e)

/* --- K-quant scale decoding (see quant_ref.h for the bit layouts) ------- */

/*
 * Q4_K / Q5_K: the 8 six-bit scales (bytes 0..7) and 8 six-bit mins
 * (bytes 8..15) of a super-block, unpacked from its 12 scale bytes b:
 *   sc 0..3 = b0..3 & 63           sc 4..7 = b8..11 & 15 | (b0..3 >> 6) << 4
 *   m  0..3 = b4..7 & 63           m  4..7 = b8..11 >> 4 | (b4..7 >> 6) << 4
 * q must have 16 readable bytes (the block's qh or qs follow its scales).
 */
static inline __m128i simd_k4_scales_mins(const uint8_t *q)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    /* low parts: dwords [b0..3, b8..11, b4..7, b8..11 >> 4], masked */
    const __m128i pick_lo = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m128i lo = _mm_srlv_epi32(_mm_shuffle_epi8(v, pick_lo), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i lo_mask = _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f);
    /* top bits: dwords [0, b0..3, 0, b4..7], bits 6-7 moved to 4-5 */
    const __m128i pick_hi = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m128i top = _mm_and_si128(_mm_srli_epi16(_mm_shuffle_epi8(v, pick_hi), 2), _mm_set1_epi8(0x30));
    return _mm_or_si128(_mm_and_si128(lo, lo_mask), top);
}

/* Q3_K: the 16 scales of a super-block as int8, bias removed (-32..31). */
static inline __m128i simd_q3k_scales(const uint8_t *q)
{
    uint32_t u[3];
    memcpy(u, q, 12);
    const uint32_t four = 0x0f0f0f0f, two = 0x03030303, hi = u[2];
    const __m128i v = _mm_setr_epi32((int)((u[0] & four) | ((hi & two) << 4)),
                                     (int)((u[1] & four) | (((hi >> 2) & two) << 4)),
                                     (int)(((u[0] >> 4) & four) | (((hi >> 4) & two) << 4)),
                                     (int)(((u[1] >> 4) & four) | (((hi >> 6) & two) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* IQ4_XS: the 8 sub-block scales as int16, bias removed (-32..31). */
static inline __m128i simd_iq4xs_scales(const block_iq4_xs *b)
{
    uint32_t l;
    memcpy(&l, b->scales_l, 4);
    /* low nibbles: byte i's low nibble is sub-block 2i, its high one 2i+1 */
    const __m128i v = _mm_cvtsi32_si128((int)l);
    const __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(v, _mm_set1_epi8(0x0F)),
                                         _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)));
    /* top bits: 2 bits per sub-block in scales_h; the multiply moves bits
     * 2i..2i+1 to the top of lane i, the shift brings them down */
    const __m128i mul = _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1);
    const __m128i top = _mm_srli_epi16(_mm_mullo_epi16(_mm_set1_epi16((short)b->scales_h), mul), 14);
    const __m128i ls = _mm_or_si128(_mm_cvtepu8_epi16(lo), _mm_slli_epi16(top, 4));
    return _mm_sub_epi16(ls, _mm_set1_epi16(32));
}

/* Activation quantizers Q8_0, Q8_1, Q8_K (quant_act_avx2.c); the AVX-512
 * table keeps them. */
void quant_avx2_act_kernels(quant_kernels *k);

/* K-quant and IQ4_XS kernels (quant_kq_avx2.c, quant_kq_avx512.c). */
#define QUANT_SIMD_KQ_TYPES(X) X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) X(iq4_xs)
#define QUANT_SIMD_DECLARE(t)                                                            \
    void quant_vec_dot_##t##_avx2(int64_t n, float *restrict s, const void *restrict vx, \
                                  const void *restrict vy);                              \
    void quant_vec_dot_##t##_avx512(int64_t n, float *restrict s, const void *restrict vx, \
                                    const void *restrict vy);
QUANT_SIMD_KQ_TYPES(QUANT_SIMD_DECLARE)
#undef QUANT_SIMD_DECLARE

/* Their multi-row versions (quant_vec_dot_rows_fn): AVX2 Q4_K and Q5_K,
 * AVX-512 Q2_K, Q3_K, Q4_K, Q5_K and Q6_K. */
void quant_vec_dot_q4_K_avx2_rows(int64_t n, int nr, float *restrict s, const void *restrict vx,
                                  size_t stride, const void *restrict vy);
void quant_vec_dot_q5_K_avx2_rows(int64_t n, int nr, float *restrict s, const void *restrict vx,
                                  size_t stride, const void *restrict vy);
/* The AVX2 Q4_K, Q5_K (and Q6_K) kernels with AVX-VNNI (quant_avxvnni.c). */
void quant_vec_dot_q4_K_avxvnni(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy);
void quant_vec_dot_q5_K_avxvnni(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy);
void quant_vec_dot_q6_K_avxvnni(int64_t n, float *restrict s, const void *restrict vx,
                                const void *restrict vy);
void quant_vec_dot_q4_K_avxvnni_rows(int64_t n, int nr, float *restrict s,
                                     const void *restrict vx, size_t stride,
                                     const void *restrict vy);
void quant_vec_dot_q5_K_avxvnni_rows(int64_t n, int nr, float *restrict s,
                                     const void *restrict vx, size_t stride,
                                     const void *restrict vy);
#define QUANT_SIMD_KQ_ROWS_TYPES(X) X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K)
#define QUANT_SIMD_DECLARE_ROWS(t)                                                                \
    void quant_vec_dot_##t##_avx512_rows(int64_t n, int nr, float *restrict s,                    \
                                         const void *restrict vx, size_t stride,                  \
                                         const void *restrict vy);
QUANT_SIMD_KQ_ROWS_TYPES(QUANT_SIMD_DECLARE_ROWS)
#undef QUANT_SIMD_DECLARE_ROWS

/* Fills act_prep (batches) for the AVX2 Q4_K and Q5_K kernels (quant_kq_avx2.c). */
void quant_kq_avx2_act_preps(quant_kernels *k);
/* Installs the AVX-512 Q4_0, IQ4_NL, MXFP4 and Q8_0 kernels over a prepared
 * activation (quant_b32_avx512.c): vec_dot, rows and act_prep. */
void quant_b32_avx512_kernels(quant_kernels *k);
/* Fills act_prep for the AVX-512 K-quant and IQ4_XS kernels, and sets how far
 * ahead the Q4_K/Q5_K kernels prefetch on this CPU (quant_kq_avx512.c). */
void quant_kq_avx512_act_preps(quant_kernels *k);

#endif
