/*
 * quant_ref_quantize.c — from_float for the float types, the 32-element
 * block types, the activation types (Q8_0, Q8_1, Q8_K) and the non-linear
 * 4-bit types (IQ4_NL, MXFP4). The K-quants are in quant_ref_quantize_k.c.
 *
 * These follow ggml's reference quantizers (quantize_row_*_ref) operation
 * for operation, so that a tensor quantized here has the bytes llama.cpp's
 * quantizer writes without an importance matrix, and activations quantized
 * here give the dot products llama.cpp's generic CPU path gives. The rules,
 * per block of 32 (or 256 for Q8_K):
 *
 *   Q4_0/Q5_0  d = v / -8 (/-16), v the element of largest magnitude, so v
 *              itself maps to the end of the range that has one more level
 *   Q4_1/Q5_1  d = (max - min) / 15 (/31), m = min
 *   Q8_0/Q8_1  d = amax / 127, q = round half away from zero (roundf)
 *   Q8_K       d = v / -127 stored as float, plus sums of 16-element groups
 *   IQ4_NL     scale search over 15 candidate scales, weights x^2
 *   MXFP4      e = floor(log2(amax)) - 2 + 127, then nearest table value
 *
 * Inputs must be finite; n is a multiple of the block size.
 */
#include "quant/quant_impl.h"
#include "quant/quant_ref.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* --- plain floats ------------------------------------------------------ */

void quant_from_float_f32(const float *restrict x, void *restrict y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void quant_from_float_f16(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i++)
        y[i] = quant_f32_to_f16(x[i]);
}

void quant_from_float_bf16(const float *restrict x, void *restrict vy, int64_t n)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i++)
        y[i] = quant_f32_to_bf16(x[i]);
}

/* --- 32-element blocks ------------------------------------------------- */

/* The element of largest magnitude, sign included (the first if tied). */
static float block_signed_absmax(const float *x, int n)
{
    float amax = 0.0f, v = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            v = x[j];
        }
    return v;
}

static void block_min_max(const float *x, int n, float *min, float *max)
{
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min)
            *min = x[j];
        if (x[j] > *max)
            *max = x[j];
    }
}

void quant_from_float_q4_0(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float d = block_signed_absmax(x, QK4_0) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            /* truncation after +8.5 rounds half up; 16 (from -v) clamps */
            int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void quant_from_float_q4_1(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min, max;
        block_min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        y[i].m = quant_f32_to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = (int8_t)((x[j] - min) * id + 0.5f);
            int q1 = (int8_t)((x[j + QK4_1 / 2] - min) * id + 0.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Packs 32 five-bit values: low nibbles as Q4, fifth bits into qh. */
static void q5_pack(const uint8_t q[32], uint8_t qs[16], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        h |= (uint32_t)(q[j] >> 4) << j;
        h |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++)
        qh[b] = (uint8_t)(h >> (8 * b));
}

void quant_from_float_q5_0(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float d = block_signed_absmax(x, QK5_0) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[QK5_0];
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK5_0; j++) {
            int v = (int8_t)(x[j] * id + 16.5f);
            q[j] = (uint8_t)(v < 31 ? v : 31);
        }
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

void quant_from_float_q5_1(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min, max;
        block_min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[QK5_1];
        y[i].d = quant_f32_to_f16(d);
        y[i].m = quant_f32_to_f16(min);
        for (int j = 0; j < QK5_1; j++)
            q[j] = (uint8_t)((x[j] - min) * id + 0.5f) & 31; /* ggml keeps 5 bits */
        q5_pack(q, y[i].qs, y[i].qh);
    }
}

static float block_absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

void quant_from_float_q8_0(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        const float d = block_absmax(x, QK8_0) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void quant_from_float_q8_1(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        const float d = block_absmax(x, QK8_1) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = quant_f32_to_f16(sum * d);
    }
}

/* --- Q8_K -------------------------------------------------------------- */

void quant_from_float_q8_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_K *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float v = block_signed_absmax(x, QK_K);
        if (v == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* -127 rather than -128 keeps every q in -127..127 */
        const float iscale = -127.0f / v;
        for (int j = 0; j < QK_K; j++) {
            int q = quant_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(q < 127 ? q : 127);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* --- IQ4_NL ------------------------------------------------------------ */

/* Index of the table value nearest x (ties go up); val sorted, 16 entries.
 * Comparing 2x with the sum of neighbours is exact in float. */
static int iq4_nearest(const int8_t *val, float x)
{
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1)
        if (x2 >= (float)(val[idx + step - 1] + val[idx + step]))
            idx += step;
    return idx;
}

/* Least-squares fit of one scale to a block for a trial inverse scale:
 * accumulates sum(w q x) and sum(w q^2) over the nearest table values. */
static void iq4_fit(const float *x, const float *w, int n, float id, float *sumqx, float *sumq2,
                    uint8_t *L)
{
    float sqx = 0, sq2 = 0;
    for (int j = 0; j < n; j++) {
        int l = iq4_nearest(kvalues_iq4nl, id * x[j]);
        if (L)
            L[j] = (uint8_t)l;
        float q = kvalues_iq4nl[l];
        sqx += w[j] * q * x[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

/*
 * ggml's IQ4_NL search without an importance matrix: weights x^2; start
 * from the scale that maps the largest-magnitude element onto -127's
 * position, then try inverse scales (k - 127) / v for k = -7..7 and keep
 * the best least-squares fit. Returns the block scale.
 */
static float iq4_nl_block_scale(const float *x, int n, int ntry)
{
    float w[QK4_NL];
    for (int j = 0; j < n; j++)
        w[j] = x[j] * x[j];
    const float v = block_signed_absmax(x, n);
    if (fabsf(v) < 1e-15f)
        return 0.0f;
    float d = -v / kvalues_iq4nl[0];
    float sumqx, sumq2;
    iq4_fit(x, w, n, 1 / d, &sumqx, &sumq2, NULL);
    if (sumq2 > 0) /* 0 only if every x^2 underflows */
        d = sumqx / sumq2;
    float best = d * sumqx;
    for (int t = -ntry; t <= ntry; t++) {
        iq4_fit(x, w, n, (t + kvalues_iq4nl[0]) / v, &sumqx, &sumq2, NULL);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

void quant_from_float_iq4_nl(const float *restrict x, void *restrict vy, int64_t n)
{
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / QK4_NL; i++, x += QK4_NL) {
        const float d = iq4_nl_block_scale(x, QK4_NL, 7);
        const float id = d != 0.0f ? 1 / d : 0.0f;
        uint8_t L[QK4_NL];
        y[i].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK4_NL; j++)
            L[j] = (uint8_t)iq4_nearest(kvalues_iq4nl, id * x[j]);
        for (int j = 0; j < QK4_NL / 2; j++)
            y[i].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

/* --- MXFP4 ------------------------------------------------------------- */

/* The first table index whose value times d is nearest x. */
static int mxfp4_nearest(float x, float d)
{
    int best = 0;
    float best_err = fabsf(kvalues_mxfp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(kvalues_mxfp4[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

void quant_from_float_mxfp4(const float *restrict x, void *restrict vy, int64_t n)
{
    block_mxfp4 *y = vy;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, x += QK_MXFP4) {
        const float amax = block_absmax(x, QK_MXFP4);
        /* the largest E2M1 value is 6 = 1.5 * 2^2: put amax in that binade */
        int e = amax > 0.0f ? (int)floorf(log2f(amax)) - 2 + 127 : 0;
        e = e < 0 ? 0 : e > 254 ? 254 : e;
        const float d = quant_e8m0_half((uint8_t)e);
        y[i].e = (uint8_t)e;
        for (int j = 0; j < QK_MXFP4 / 2; j++)
            y[i].qs[j] = (uint8_t)(mxfp4_nearest(x[j], d) | mxfp4_nearest(x[j + 16], d) << 4);
    }
}
