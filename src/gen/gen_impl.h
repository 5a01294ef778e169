/*
 * gen_impl.h — private to src/gen: the generator's value stream, shared by
 * the scalar definition (gen_quant.c) and its AVX-512 twin
 * (gen_simd_avx512.c), which must produce the same bits.
 */
#ifndef SW_GEN_IMPL_H
#define SW_GEN_IMPL_H

#include <stdint.h>
#include <string.h>

#include "gen/gen.h"
#include "quant/quant.h"

#define GEN_GOLDEN 0x9e3779b97f4a7c15ull
#define GEN_MIX_C1 0xbf58476d1ce4e5b9ull
#define GEN_MIX_C2 0x94d049bb133111ebull

/* Mean and standard deviation of the sum of four uniform 16-bit integers. */
#define GEN_IH4_MEAN 131070                  /* 4 * 65535 / 2 */
#define GEN_IH4_INV_STD (1.0f / 37837.2269f) /* 1 / sqrt(4 * (65536^2 - 1) / 12) */

/* splitmix64's finalizer. */
static inline uint64_t gen_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= GEN_MIX_C1;
    x ^= x >> 27;
    x *= GEN_MIX_C2;
    x ^= x >> 31;
    return x;
}

/* One value: element i of the stream keyed by key, with mean 0, std 1,
 * scaled: mean + (sum of the hash's four 16-bit fields - their mean) * scale. */
static inline float gen_gauss_one(uint64_t key, int64_t i, float mean, float scale)
{
    uint64_t h = gen_mix64(key + (uint64_t)(i + 1) * GEN_GOLDEN);
    int32_t s = (int32_t)(h & 0xffff) + (int32_t)((h >> 16) & 0xffff) +
                (int32_t)((h >> 32) & 0xffff) + (int32_t)(h >> 48);
    float z = (float)(s - GEN_IH4_MEAN) * scale; /* two roundings, never an FMA: */
    return mean + z;                              /* the SIMD twin does the same */
}

/* --- the fast K-quantizers' shared steps ------------------------------------
 *
 * Each fast quantizer is: per sub-block statistics (vectorizable), a block
 * header computed from them in scalar code (below), the rounding of every
 * weight with the scale it will be decoded with (vectorizable), and the
 * packing of the q's (below). The scalar versions (gen_quant.c) and the
 * AVX-512 ones (gen_simd_avx512.c) share the scalar steps, and their
 * vector steps use the same IEEE operations in the same order, so both
 * write the same bytes.
 */

/* Round to nearest, ties to even, for |f| < 2^22 (as vcvtps2dq does). */
static inline int gen_round(float f)
{
    float v = f + 12582912.0f; /* 1.5 * 2^23 */
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int gen_clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/*
 * Q4_K / Q5_K header: x = d * sc_j * q - dmin * m_j on sub-block j of 32,
 * q in 0..nmax. From each sub-block's min and max: its scale (range / nmax)
 * and min (a non-negative offset), quantized to 6 bits against the largest;
 * the f16 super-scales; the packed scales; and what the weights will be
 * decoded with: sd[j] = d * sc_j, dm[j] = dmin * m_j.
 */
static inline void gen_k4_header(const float lo_in[8], const float hi[8], int nmax,
                                 ggml_half *d_out, ggml_half *dmin_out, uint8_t scales[12],
                                 float sd[8], float dm[8])
{
    float scale[8], min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float lo = lo_in[j] > 0 ? 0 : lo_in[j];
        scale[j] = (hi[j] - lo) / nmax;
        min[j] = -lo;
        max_scale = scale[j] > max_scale ? scale[j] : max_scale;
        max_min = min[j] > max_min ? min[j] : max_min;
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)gen_clamp(gen_round(inv_scale * scale[j]), 0, 63);
        lm[j] = (uint8_t)gen_clamp(gen_round(inv_min * min[j]), 0, 63);
    }
    /* 6-bit packing, as quant_k4_scale_min (quant_ref.h) unpacks it */
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    *d_out = quant_f32_to_f16(max_scale / 63.0f);
    *dmin_out = quant_f32_to_f16(max_min / 63.0f);
    const float d = quant_f16_to_f32(*d_out), dmin = quant_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        sd[j] = d * ls[j];
        dm[j] = dmin * lm[j];
    }
}

/* Sub-blocks 2k and 2k+1 share 32 bytes of qs: low and high nibbles. */
static inline void gen_pack_q4_K(const uint8_t L[256], uint8_t qs[128])
{
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 32; l++)
            qs[32 * k + l] = (uint8_t)((L[64 * k + l] & 0xF) | (L[64 * k + 32 + l] << 4));
}

/* Q5_K: low four bits as Q4_K; bit 4 of sub-block j's element l is bit j of qh[l]. */
static inline void gen_pack_q5_K(const uint8_t L[256], uint8_t qs[128], uint8_t qh[32])
{
    memset(qh, 0, 32);
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < 32; l++) {
            uint8_t lo = L[64 * k + l], hi = L[64 * k + 32 + l];
            qs[32 * k + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh[l] |= (uint8_t)(((lo >> 4) << (2 * k)) | ((hi >> 4) << (2 * k + 1)));
        }
}

/*
 * Q6_K header: x = d * sc_j * (q - 32) on sub-block j of 16, sc_j int8.
 * v[j] is the sub-block's element of largest magnitude (the first such),
 * amax[j] its magnitude. As in the reference, v maps to -32 (the end of
 * the range with one more step), so scales may be negative. Returns 0 for
 * an all-zero block (y is then zero: d = 0), else fills d and the scales
 * and sets inv[j] = 1 / (d * sc_j) (0 where that is 0).
 */
static inline int gen_q6_header(const float v[16], const float amax[16], block_q6_K *y,
                                float inv[16])
{
    float scale[16], max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; j++) {
        scale[j] = v[j] / -32.0f;
        if (amax[j] > max_abs) {
            max_abs = amax[j];
            max_scale = scale[j];
        }
    }
    memset(y, 0, sizeof *y);
    if (max_abs == 0)
        return 0;
    const float iscale = -128.0f / max_scale;
    y->d = quant_f32_to_f16(1.0f / iscale);
    const float d = quant_f16_to_f32(y->d);
    for (int j = 0; j < 16; j++) {
        int sc = gen_round(iscale * scale[j]);
        y->scales[j] = (int8_t)(sc > 127 ? 127 : sc);
        const float sd = d * y->scales[j];
        inv[j] = sd != 0 ? 1.0f / sd : 0.0f;
    }
    return 1;
}

/* Element 32k + l of each half of 128: low nibble in ql[l + 32 (k % 2)]
 * (nibble k / 2), high two bits in qh[l] bits 2k..2k+1. */
static inline void gen_pack_q6_K(const uint8_t L[256], uint8_t ql[128], uint8_t qh[64])
{
    for (int h = 0; h < 2; h++) {
        uint8_t *l4 = ql + 64 * h, *h2 = qh + 32 * h;
        const uint8_t *q = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            l4[l] = (uint8_t)((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
            l4[l + 32] = (uint8_t)((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
            h2[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                              ((q[l + 96] >> 4) << 6));
        }
    }
}

/* --- AVX-512 twins (gen_simd_avx512.c) ---------------------------------------- */

/* gen_quantizer with the choice of kernels made by the caller (tests). */
gen_quant_fn gen_quantizer_for(int type, bool exact, bool avx512);

/* dst[i] = gen_gauss_one(key, i, mean, std * GEN_IH4_INV_STD) for i < n. */
void gen_gauss_avx512(uint64_t key, float mean, float std, float *dst, int64_t n);
/* F16 conversion of a row, as quant's reference from_float. */
void gen_f16_avx512(const float *restrict x, void *restrict y, int64_t n);
/* The fast quantizers of gen_quant.c (and for BF16, quant's), the same bytes. */
void gen_q4_K_avx512(const float *restrict x, void *restrict y, int64_t n);
void gen_q5_K_avx512(const float *restrict x, void *restrict y, int64_t n);
void gen_q6_K_avx512(const float *restrict x, void *restrict y, int64_t n);
void gen_q8_0_avx512(const float *restrict x, void *restrict y, int64_t n);
void gen_mxfp4_avx512(const float *restrict x, void *restrict y, int64_t n);
void gen_bf16_avx512(const float *restrict x, void *restrict y, int64_t n);

#endif
