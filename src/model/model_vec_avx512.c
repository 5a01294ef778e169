/*
 * model_vec_avx512.c — attention's kernels of model_vec.h with AVX-512F
 * (compiled with the Makefile's AVX512_FLAGS; installed only where quant/
 * chose its AVX-512 table, i.e. after the CPUID check).
 *
 * Both take the query heads of one KV head together, so each key and value
 * row is loaded once per four queries instead of once per query:
 *
 *   dots  blocks of 4 queries x 4 keys: 16 accumulators of 16 lanes, one
 *         FMA per (query, key) per 16 elements (8 loads feed 16 FMAs), then
 *         one transposing reduction gives the 16 sums in one register;
 *   wsum  blocks of 4 queries x 64 columns: 16 accumulators, each value
 *         row's 64 floats loaded once for the 4 queries.
 *
 * Exactness: a (query, key) sum goes through the same lane FMAs and the same
 * reduction tree whatever slot of the block it has, and a block missing
 * queries or keys repeats the last one (computed, not stored), so a query's
 * scores do not depend on the others. wsum's lanes are independent, and
 * every one adds its terms in ascending key order with one FMA each, which
 * is also what the AVX2 table does: its results are the AVX2 table's bits.
 */
#include "model/model_vec.h"

#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

#if !defined(__AVX512F__)
#error "model_vec_avx512.c needs the AVX512_FLAGS of the Makefile"
#endif

/* Lanes [0, r) of a 16-lane vector, r in [0, 16]. */
static inline __mmask16 lanes(int r)
{
    return (__mmask16)((1u << r) - 1u);
}

/*
 * v[0..15] -> one vector whose lane L is the sum of the 16 lanes of
 * v[k_slot[L]], every sum by the same tree: halves of 256 bits, then of
 * 128, then elements (0 + 2, 1 + 3), then the two.
 */
static const int k_slot[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

INLINE __m512 reduce16x16(const __m512 v[16])
{
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* [v_i halves summed | v_{i+8} halves summed] */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 8], 0x44),
                             _mm512_shuffle_f32x4(v[i], v[i + 8], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 128-bit lanes: v_i, v_{i+8}, v_{i+4}, v_{i+12} */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88),
                             _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[i], c[i + 2], 0x44),
                             _mm512_shuffle_ps(c[i], c[i + 2], 0xEE));
    return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
}

/* Queries q[0..3] against keys k[0..3] (rows of d floats): lane 4h + i of
 * the result is scale * dot(q[h], k[i]). */
INLINE __m512 dots_4x4(const float *const q[4], const float *const k[4], int d, float scale)
{
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        acc[i] = _mm512_setzero_ps();
    for (int e = 0; e < d; e += 16) {
        __mmask16 m = lanes(d - e < 16 ? d - e : 16);
        __m512 qv[4], kv[4];
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++)
            qv[h] = _mm512_maskz_loadu_ps(m, q[h] + e);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            kv[i] = _mm512_maskz_loadu_ps(m, k[i] + e);
        /* (h, i)'s accumulator goes to the slot that comes out at lane 4h + i */
#pragma GCC unroll 16
        for (int L = 0; L < 16; L++)
            acc[k_slot[L]] = _mm512_fmadd_ps(qv[L / 4], kv[L % 4], acc[k_slot[L]]);
    }
    return _mm512_mul_ps(reduce16x16(acc), _mm512_set1_ps(scale));
}

static void avx512_dots(const float *q, int nq, const float *K, int n, int d, float scale, float *s)
{
    for (int h0 = 0; h0 < nq; h0 += 4) {
        int hn = nq - h0 < 4 ? nq - h0 : 4;
        const float *qr[4];
        for (int h = 0; h < 4; h++)
            qr[h] = q + (size_t)(h0 + (h < hn ? h : hn - 1)) * d;
        for (int i0 = 0; i0 < n; i0 += 4) {
            int in = n - i0 < 4 ? n - i0 : 4;
            const float *kr[4];
            for (int i = 0; i < 4; i++)
                kr[i] = K + (size_t)(i0 + (i < in ? i : in - 1)) * d;
            __m512 r = dots_4x4(qr, kr, d, scale);
            /* query h's four scores are 128-bit lane h */
            __mmask8 m = (__mmask8)((1u << in) - 1u);
            float *o = s + (size_t)h0 * n + i0;
            _mm_mask_storeu_ps(o, m, _mm512_castps512_ps128(r));
            if (hn > 1)
                _mm_mask_storeu_ps(o + n, m, _mm512_extractf32x4_ps(r, 1));
            if (hn > 2)
                _mm_mask_storeu_ps(o + 2 * (size_t)n, m, _mm512_extractf32x4_ps(r, 2));
            if (hn > 3)
                _mm_mask_storeu_ps(o + 3 * (size_t)n, m, _mm512_extractf32x4_ps(r, 3));
        }
    }
}

/* Queries [0, QB) of acc/p, columns [j, j + w) (w <= 64) over all n rows of V. */
INLINE void wsum_block(float *acc, const float *p, int QB, const float *V, int n, int d,
                              int j, int w)
{
    __mmask16 m[4];
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        int left = w - 16 * c;
        m[c] = lanes(left <= 0 ? 0 : left < 16 ? left : 16);
    }
#pragma GCC unroll 4
    for (int h = 0; h < QB; h++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            a[h][c] = _mm512_maskz_loadu_ps(m[c], acc + (size_t)h * d + j + 16 * c);
    for (int i = 0; i < n; i++) {
        const float *v = V + (size_t)i * d + j;
        __m512 vv[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            vv[c] = _mm512_maskz_loadu_ps(m[c], v + 16 * c);
#pragma GCC unroll 4
        for (int h = 0; h < QB; h++) {
            __m512 w8 = _mm512_set1_ps(p[(size_t)h * n + i]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                a[h][c] = _mm512_fmadd_ps(w8, vv[c], a[h][c]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < QB; h++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            _mm512_mask_storeu_ps(acc + (size_t)h * d + j + 16 * c, m[c], a[h][c]);
}

static void avx512_wsum(float *acc, const float *p, int nq, const float *V, int n, int d)
{
    for (int j = 0; j < d; j += 64) {
        int w = d - j < 64 ? d - j : 64;
        int h = 0;
        for (; h + 4 <= nq; h += 4)
            wsum_block(acc + (size_t)h * d, p + (size_t)h * n, 4, V, n, d, j, w);
        for (; h < nq; h++)
            wsum_block(acc + (size_t)h * d, p + (size_t)h * n, 1, V, n, d, j, w);
    }
}

void model_vec_avx512(model_vec *v)
{
    v->dots = avx512_dots;
    v->wsum = avx512_wsum;
}
