/*
 * gen_simd_avx512.c — AVX-512 versions of the generator's hot loops: the
 * value stream (eight 64-bit hashes at a time, vpmullq doing the
 * multiplies) and the fast quantizers, sixteen weights at a time.
 *
 * Every function here writes the same bytes as its scalar twin (the tests
 * compare them): the same integer arithmetic, the same float operations in
 * the same order, each rounded on its own (separate intrinsics are never
 * fused into an FMA, and the scalar code keeps multiply and add in separate
 * statements so no compiler contracts them either), and round-to-nearest-
 * even conversions where the scalar code rounds that way. Per-block scalar
 * steps (scales, headers) are the shared functions of gen_impl.h.
 */
#include "gen/gen_impl.h"
#include "quant/quant.h"

#include <immintrin.h>
#include <math.h>

void gen_gauss_avx512(uint64_t key, float mean, float std, float *dst, int64_t n)
{
    const float scale = std * GEN_IH4_INV_STD;
    const __m512i step = _mm512_set1_epi64((long long)(8 * GEN_GOLDEN));
    const __m512i c1 = _mm512_set1_epi64((long long)GEN_MIX_C1);
    const __m512i c2 = _mm512_set1_epi64((long long)GEN_MIX_C2);
    const __m512i lo16 = _mm512_set1_epi64(0xffff);
    const __m512i bias = _mm512_set1_epi64(GEN_IH4_MEAN);
    const __m256 vscale = _mm256_set1_ps(scale), vmean = _mm256_set1_ps(mean);
    /* lane l holds key + (i + 1 + l) * golden */
    __m512i x = _mm512_set_epi64(
        (long long)(key + 8 * GEN_GOLDEN), (long long)(key + 7 * GEN_GOLDEN),
        (long long)(key + 6 * GEN_GOLDEN), (long long)(key + 5 * GEN_GOLDEN),
        (long long)(key + 4 * GEN_GOLDEN), (long long)(key + 3 * GEN_GOLDEN),
        (long long)(key + 2 * GEN_GOLDEN), (long long)(key + 1 * GEN_GOLDEN));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, x = _mm512_add_epi64(x, step)) {
        __m512i h = _mm512_xor_si512(x, _mm512_srli_epi64(x, 30));
        h = _mm512_mullo_epi64(h, c1);
        h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 27));
        h = _mm512_mullo_epi64(h, c2);
        h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
        __m512i s = _mm512_add_epi64(
            _mm512_add_epi64(_mm512_and_si512(h, lo16),
                             _mm512_and_si512(_mm512_srli_epi64(h, 16), lo16)),
            _mm512_add_epi64(_mm512_and_si512(_mm512_srli_epi64(h, 32), lo16),
                             _mm512_srli_epi64(h, 48)));
        __m256 f = _mm512_cvtepi64_ps(_mm512_sub_epi64(s, bias));
        _mm256_storeu_ps(dst + i, _mm256_add_ps(vmean, _mm256_mul_ps(f, vscale)));
    }
    for (; i < n; i++)
        dst[i] = gen_gauss_one(key, i, mean, scale);
}

/* F16 rows: vcvtps2ph rounds to nearest even, as quant_f32_to_f16 does
 * (finite values; the generator makes no NaN). */
void gen_f16_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        y[i] = quant_f32_to_f16(x[i]);
}

/* --- fast quantizers ------------------------------------------------------------ */

static inline __m512i clamp_epi32(__m512i v, int lo, int hi)
{
    return _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
}

static inline void store_epi8(uint8_t *dst, __m512i v) /* 16 int32 -> 16 bytes */
{
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(v));
}

/* The q's of sub-block j (32 weights, two vectors), rounded as gen_quant.c's loop. */
static inline void k4_round(const float *x, float sd, float dm, int nmax, __m512i q[2])
{
    const __m512 vinv = _mm512_set1_ps(sd != 0 ? 1.0f / sd : 0.0f), vdm = _mm512_set1_ps(dm);
    for (int h = 0; h < 2; h++) {
        __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_loadu_ps(x + 16 * h), vdm), vinv);
        q[h] = clamp_epi32(_mm512_cvtps_epi32(v), 0, nmax);
    }
}

static void k4_header_avx512(const float *x, int nmax, ggml_half *d, ggml_half *dmin,
                             uint8_t scales[12], float sd[8], float dm[8])
{
    float lo[8], hi[8];
    for (int j = 0; j < 8; j++) {
        __m512 a = _mm512_loadu_ps(x + 32 * j), b = _mm512_loadu_ps(x + 32 * j + 16);
        lo[j] = _mm512_reduce_min_ps(_mm512_min_ps(a, b));
        hi[j] = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
    }
    gen_k4_header(lo, hi, nmax, d, dmin, scales, sd, dm);
}

void gen_q4_K_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q4_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float sd[8], dm[8];
        k4_header_avx512(x, 15, &y[b].d, &y[b].dmin, y[b].scales, sd, dm);
        for (int k = 0; k < 4; k++) {
            __m512i lo[2], hi[2];
            k4_round(x + 64 * k, sd[2 * k], dm[2 * k], 15, lo);
            k4_round(x + 64 * k + 32, sd[2 * k + 1], dm[2 * k + 1], 15, hi);
            for (int h = 0; h < 2; h++)
                store_epi8(y[b].qs + 32 * k + 16 * h,
                           _mm512_or_si512(lo[h], _mm512_slli_epi32(hi[h], 4)));
        }
    }
}

void gen_q5_K_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q5_K *y = vy;
    const __m512i low4 = _mm512_set1_epi32(0xF);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float sd[8], dm[8];
        k4_header_avx512(x, 31, &y[b].d, &y[b].dmin, y[b].scales, sd, dm);
        __m512i qh[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (int k = 0; k < 4; k++) {
            __m512i lo[2], hi[2];
            k4_round(x + 64 * k, sd[2 * k], dm[2 * k], 31, lo);
            k4_round(x + 64 * k + 32, sd[2 * k + 1], dm[2 * k + 1], 31, hi);
            for (int h = 0; h < 2; h++) {
                __m512i nib = _mm512_or_si512(_mm512_and_si512(lo[h], low4),
                                              _mm512_slli_epi32(_mm512_and_si512(hi[h], low4), 4));
                store_epi8(y[b].qs + 32 * k + 16 * h, nib);
                __m512i top = _mm512_or_si512(
                    _mm512_sll_epi32(_mm512_srli_epi32(lo[h], 4), _mm_cvtsi32_si128(2 * k)),
                    _mm512_sll_epi32(_mm512_srli_epi32(hi[h], 4), _mm_cvtsi32_si128(2 * k + 1)));
                qh[h] = _mm512_or_si512(qh[h], top);
            }
        }
        store_epi8(y[b].qh, qh[0]);
        store_epi8(y[b].qh + 16, qh[1]);
    }
}

void gen_q6_K_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q6_K *y = vy;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i low4 = _mm512_set1_epi32(0xF), bias = _mm512_set1_epi32(32);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float v[16], amax[16], inv[16];
        for (int j = 0; j < 16; j++) {
            __m512 a = _mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * j));
            amax[j] = _mm512_reduce_max_ps(a);
            /* the first element of that magnitude, as the scalar loop finds it */
            unsigned first = (unsigned)__builtin_ctz(
                _mm512_cmp_ps_mask(a, _mm512_set1_ps(amax[j]), _CMP_EQ_OQ));
            v[j] = amax[j] > 0 ? x[16 * j + first] : 0.0f;
        }
        if (!gen_q6_header(v, amax, &y[b], inv))
            continue;
        for (int hf = 0; hf < 2; hf++) {
            __m512i q[8];
            for (int j = 0; j < 8; j++) {
                __m512 t = _mm512_mul_ps(_mm512_loadu_ps(x + 128 * hf + 16 * j),
                                         _mm512_set1_ps(inv[8 * hf + j]));
                q[j] = _mm512_add_epi32(clamp_epi32(_mm512_cvtps_epi32(t), -32, 31), bias);
            }
            /* element 32k + l: q[2k] holds l < 16, q[2k + 1] the rest */
            uint8_t *ql = y[b].ql + 64 * hf, *qh = y[b].qh + 32 * hf;
            for (int h = 0; h < 2; h++) {
                __m512i k0 = q[h], k1 = q[2 + h], k2 = q[4 + h], k3 = q[6 + h];
                store_epi8(ql + 16 * h, _mm512_or_si512(_mm512_and_si512(k0, low4),
                                                        _mm512_slli_epi32(_mm512_and_si512(k2, low4), 4)));
                store_epi8(ql + 32 + 16 * h,
                           _mm512_or_si512(_mm512_and_si512(k1, low4),
                                           _mm512_slli_epi32(_mm512_and_si512(k3, low4), 4)));
                __m512i top = _mm512_or_si512(
                    _mm512_or_si512(_mm512_srli_epi32(k0, 4), _mm512_slli_epi32(_mm512_srli_epi32(k1, 4), 2)),
                    _mm512_or_si512(_mm512_slli_epi32(_mm512_srli_epi32(k2, 4), 4),
                                    _mm512_slli_epi32(_mm512_srli_epi32(k3, 4), 6)));
                store_epi8(qh + 16 * h, top);
            }
        }
    }
}

/* Q8_0: roundf (halves away from zero) as truncation plus a correction. */
void gen_q8_0_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_0 *y = vy;
    const __m512 sign = _mm512_set1_ps(-0.0f), half = _mm512_set1_ps(0.5f);
    const __m512 mhalf = _mm512_set1_ps(-0.5f);
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        __m512 a = _mm512_loadu_ps(x), c = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(
            _mm512_max_ps(_mm512_andnot_ps(sign, a), _mm512_andnot_ps(sign, c)));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_f16(d);
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_mul_ps(h ? c : a, _mm512_set1_ps(id));
            __m512i t = _mm512_cvttps_epi32(v);
            __m512 r = _mm512_sub_ps(v, _mm512_cvtepi32_ps(t));
            t = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(r, half, _CMP_GE_OQ), t, one);
            t = _mm512_mask_sub_epi32(t, _mm512_cmp_ps_mask(r, mhalf, _CMP_LE_OQ), t, one);
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * h), _mm512_cvtepi32_epi8(t));
        }
    }
}

/* BF16 rows: round to nearest even on the bits, as quant_f32_to_bf16 does
 * for every value that is not a NaN (the generator makes none). */
void gen_bf16_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    const __m512i round = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_castps_si512(_mm512_loadu_ps(x + i));
        __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
        b = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(round, odd)), 16);
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(b));
    }
    for (; i < n; i++)
        y[i] = quant_f32_to_bf16(x[i]);
}

/* MXFP4 indices of 16 weights already divided by the block scale: the E2M1
 * grid (doubled) 0 1 2 3 4 6 8 12, ties to the smaller magnitude, +0 for
 * zero, 8 + m for negative magnitudes m > 0 (gen_quant.c's mxfp4_index). */
static inline __m512i mxfp4_index16(__m512 v)
{
    static const float mid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
    const __m512 a = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), v);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i m = _mm512_setzero_si512();
    for (int k = 0; k < 7; k++)
        m = _mm512_mask_add_epi32(m, _mm512_cmp_ps_mask(a, _mm512_set1_ps(mid[k]), _CMP_GT_OQ), m, one);
    __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ) &
                    _mm512_test_epi32_mask(m, m);
    return _mm512_mask_add_epi32(m, neg, m, _mm512_set1_epi32(8));
}

void gen_mxfp4_avx512(const float *restrict x, void *restrict vy, int64_t n)
{
    block_mxfp4 *y = vy;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_MXFP4; b++, x += QK_MXFP4) {
        __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(
            _mm512_max_ps(_mm512_andnot_ps(sign, lo), _mm512_andnot_ps(sign, hi)));
        int e = amax > 0.0f ? (int)floorf(log2f(amax)) - 2 + 127 : 0;
        if (e < 2 || e > 254) {
            quant_traits_of(QT_MXFP4)->from_float(x, &y[b], QK_MXFP4);
            continue;
        }
        y[b].e = (uint8_t)e;
        const __m512 inv_d = _mm512_castsi512_ps(_mm512_set1_epi32((255 - e) << 23));
        __m512i q = _mm512_or_si512(mxfp4_index16(_mm512_mul_ps(lo, inv_d)),
                                    _mm512_slli_epi32(mxfp4_index16(_mm512_mul_ps(hi, inv_d)), 4));
        store_epi8(y[b].qs, q);
    }
}
