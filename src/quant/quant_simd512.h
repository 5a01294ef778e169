/*
 * quant_simd512.h — private to src/quant: what the AVX-512 kernel files
 * (quant_avx512.c, quant_kq_avx512.c) share beyond quant_simd.h: the
 * horizontal sums whose order the multi-row kernels must repeat exactly,
 * and the two entry points every multi-row kernel gets.
 *
 * A multi-row kernel is written once as name##_nr(n, NR, s, x, stride, y),
 * NR (1..4, a constant after inlining) rows in lockstep against one y,
 * each row with its own accumulators and exactly the float operations of
 * the one-row case; vec_dot is name##_nr with NR = 1, so the rows kernel is
 * bit-identical to it by construction. Kernels over a prepared activation
 * get theirs from DEFINE_PREP_ENTRIES.
 */
#ifndef SW_QUANT_SIMD512_H
#define SW_QUANT_SIMD512_H

#include "quant/quant_simd.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "quant_simd512.h needs the AVX512_FLAGS of the Makefile"
#endif

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

/*
 * The entries of a kernel over a prepared activation, for name over
 * SPAN_NA(x, i0, cnt, yp, p0, a, NA) (blocks [i0, i0 + cnt) of an xtype
 * row, BLCK elements each, against NA yprep_t activations holding blocks
 * from p0 on, into acc_t a[NA]; PREPARE(y, cnt, yp) fills one from cnt
 * ytype blocks, at most PREP_MAX; RESULT(a) finishes a row):
 *   name##_rows_prep  rows against y prepared whole (quant_act_prep's
 *                     dot_rows);
 *   name##_rows       rows against plain ytype rows, prepared here (per row,
 *                     in segments of PREP_MAX blocks past that: the same
 *                     FMAs in the same order);
 *   name              one row;
 *   name##_multi      nr rows against na prepared activations, MAX at a
 *                     time (quant_dot_multi_fn): each result is
 *                     name##_rows_prep's for that activation.
 */
#define DEFINE_PREP_ENTRIES(name, SPAN_NA, xtype, BLCK, ytype, yprep_t, PREPARE, PREP_MAX, acc_t,  \
                            ACC_ZERO, RESULT, MAX)                                                 \
    static void name##_rows_prep(int64_t n, int nr, float *restrict s, const void *restrict vx,    \
                                 size_t stride, const void *restrict vyp)                          \
    {                                                                                              \
        const yprep_t *one[1] = {vyp};                                                             \
        for (int r = 0; r < nr; r++) {                                                             \
            acc_t a = ACC_ZERO;                                                                    \
            SPAN_NA((const xtype *)((const uint8_t *)vx + (size_t)r * stride), 0, n / (BLCK), one, \
                    0, &a, 1);                                                                     \
            s[r] = RESULT(a);                                                                      \
        }                                                                                          \
    }                                                                                              \
    void name##_rows(int64_t n, int nr, float *restrict s, const void *restrict vx, size_t stride, \
                     const void *restrict vy)                                                      \
    {                                                                                              \
        const ytype *y = vy;                                                                       \
        const int64_t nb = n / (BLCK);                                                             \
        yprep_t yp;                                                                                \
        const yprep_t *one[1] = {&yp};                                                             \
        if (nb <= PREP_MAX) {                                                                      \
            PREPARE(y, nb, &yp);                                                                   \
            name##_rows_prep(n, nr, s, vx, stride, &yp);                                           \
            return;                                                                                \
        }                                                                                          \
        for (int r = 0; r < nr; r++) {                                                             \
            const xtype *x = (const xtype *)((const uint8_t *)vx + (size_t)r * stride);            \
            acc_t a = ACC_ZERO;                                                                    \
            for (int64_t p = 0; p < nb; p += PREP_MAX) {                                           \
                const int64_t cnt = nb - p < PREP_MAX ? nb - p : PREP_MAX;                         \
                PREPARE(y + p, cnt, &yp);                                                          \
                SPAN_NA(x, p, cnt, one, p, &a, 1);                                                 \
            }                                                                                      \
            s[r] = RESULT(a);                                                                      \
        }                                                                                          \
    }                                                                                              \
    void name(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)      \
    {                                                                                              \
        name##_rows(n, 1, s, vx, sizeof(xtype), vy);                                               \
    }                                                                                              \
    static void name##_multi(int64_t n, int nr, int na, float *restrict s, size_t s_stride,        \
                             const void *restrict vx, size_t stride, const void *restrict vyp,     \
                             size_t yp_stride)                                                     \
    {                                                                                              \
        for (int r = 0; r < nr; r++) {                                                             \
            const xtype *x = (const xtype *)((const uint8_t *)vx + (size_t)r * stride);            \
            for (int v0 = 0; v0 < na; v0 += MAX) {                                                 \
                const int nv = na - v0 < MAX ? na - v0 : MAX;                                      \
                const yprep_t *yp[MAX];                                                            \
                acc_t a[MAX];                                                                      \
                for (int v = 0; v < nv; v++) {                                                     \
                    yp[v] = (const void *)((const uint8_t *)vyp + (size_t)(v0 + v) * yp_stride);   \
                    a[v] = ACC_ZERO;                                                               \
                }                                                                                  \
                switch (nv) { /* a constant NA per case, for registers */                          \
                case 1: SPAN_NA(x, 0, n / (BLCK), yp, 0, a, 1); break;                             \
                case 2: SPAN_NA(x, 0, n / (BLCK), yp, 0, a, 2); break;                             \
                case 3: SPAN_NA(x, 0, n / (BLCK), yp, 0, a, 3); break;                             \
                default: SPAN_NA(x, 0, n / (BLCK), yp, 0, a, MAX); break; /* 4 */                  \
                }                                                                                  \
                for (int v = 0; v < nv; v++)                                                       \
                    s[(size_t)(v0 + v) * s_stride + r] = RESULT(a[v]);                             \
            }                                                                                      \
        }                                                                                          \
    }

#endif
