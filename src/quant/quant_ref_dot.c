/*
 * quant_ref_dot.c — the scalar reference dot products and the reference
 * kernel table.
 *
 * A weight row of type T meets an activation row already converted to T's
 * vec_dot_type (quant.h). Float weights (F32, F16, BF16) meet float32
 * activations: products in float, summed in double, as ggml's scalar path
 * does. Quantized weights meet int8 activations: within a block (or
 * sub-block) the products are summed exactly in int32, and only the block
 * total is scaled into float:
 *
 *   Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4 · Q8_0   sum += (dx * dy) * isum
 *   Q4_1, Q5_1 · Q8_1                        sum += (dx * dy) * isum + m * s
 *       (s = dy * sum(qy), stored by the activation quantizer)
 *   Q2_K, Q4_K, Q5_K · Q8_K   sum += (dy * d) * isum - (dy * dmin) * msum
 *       isum = sum over sub-blocks of scale * (q . qy)
 *       msum = sum over sub-blocks of min * (sum of qy), from bsums
 *   Q3_K, Q6_K, IQ4_XS · Q8_K  sum += (dy * d) * isum, signed scales
 *
 * The SIMD kernels may order the float work differently; the integer sums
 * are exact, so they agree with these to float rounding of a few terms per
 * block. No int32 overflows: the largest block total (Q6_K) is below 2^28.
 */
#include "quant/quant_impl.h"
#include "quant/quant_ref.h"

#include <string.h>

/* --- float weights · float activations --------------------------------- */

static void dot_f32(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const float *x = vx, *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static void dot_f16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const uint16_t *x = vx;
    const float *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(quant_f16_to_f32(x[i]) * y[i]);
    *s = (float)sum;
}

static void dot_bf16(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const uint16_t *x = vx;
    const float *y = vy;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(quant_bf16_to_f32(x[i]) * y[i]);
    *s = (float)sum;
}

/* --- 32-element blocks · Q8_0 / Q8_1 ------------------------------------ */

static void dot_q4_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK8_0 / 2];
        }
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

static void dot_q4_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            isum += (x[i].qs[j] & 0xF) * y[i].qs[j];
            isum += (x[i].qs[j] >> 4) * y[i].qs[j + QK8_1 / 2];
        }
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum +
               quant_f16_to_f32(x[i].m) * quant_f16_to_f32(y[i].s);
    }
    *s = sum;
}

static void dot_q5_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const uint32_t qh = quant_q5_high_bits(x[i].qh);
        int isum = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += (lo - 16) * y[i].qs[j] + (hi - 16) * y[i].qs[j + QK8_0 / 2];
        }
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

static void dot_q5_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const uint32_t qh = quant_q5_high_bits(x[i].qh);
        int isum = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += lo * y[i].qs[j] + hi * y[i].qs[j + QK8_1 / 2];
        }
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum +
               quant_f16_to_f32(x[i].m) * quant_f16_to_f32(y[i].s);
    }
    *s = sum;
}

static void dot_q8_0(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_0; j++)
            isum += x[i].qs[j] * y[i].qs[j];
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

/* Q8_1 weights are not a storage format anyone writes, but the type has
 * to_float, so it gets a dot product too (the m * s term is absent). */
static void dot_q8_1(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q8_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int isum = 0;
        for (int j = 0; j < QK8_1; j++)
            isum += x[i].qs[j] * y[i].qs[j];
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

static void dot_iq4_nl(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        int isum = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            isum += kvalues_iq4nl[x[i].qs[j] & 0xF] * y[i].qs[j];
            isum += kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + QK4_NL / 2];
        }
        sum += (quant_f16_to_f32(x[i].d) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

static void dot_mxfp4(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_mxfp4 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_MXFP4; i++) {
        int isum = 0;
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            isum += kvalues_mxfp4[x[i].qs[j] & 0xF] * y[i].qs[j];
            isum += kvalues_mxfp4[x[i].qs[j] >> 4] * y[i].qs[j + QK_MXFP4 / 2];
        }
        sum += (quant_e8m0_half(x[i].e) * quant_f16_to_f32(y[i].d)) * isum;
    }
    *s = sum;
}

/* --- super-blocks · Q8_K ------------------------------------------------- */

static void dot_q2_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0, msum = 0;
        for (int sb = 0; sb < QK_K / 16; sb++) {
            const int sc = x[i].scales[sb] & 0xF, m = x[i].scales[sb] >> 4;
            const uint8_t *q = x[i].qs + 32 * (sb / 8);
            const int shift = 2 * ((sb % 8) / 2), off = 16 * (sb % 2);
            int d = 0;
            for (int l = 0; l < 16; l++)
                d += ((q[off + l] >> shift) & 3) * y[i].qs[16 * sb + l];
            isum += sc * d;
            msum += m * y[i].bsums[sb];
        }
        const float dall = y[i].d * quant_f16_to_f32(x[i].d);
        const float dmin = y[i].d * quant_f16_to_f32(x[i].dmin);
        sum += dall * isum - dmin * msum;
    }
    *s = sum;
}

static void dot_q3_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int sb = 0; sb < QK_K / 16; sb++) {
            int d = 0;
            for (int e = 16 * sb; e < 16 * sb + 16; e++) {
                const uint8_t *q = x[i].qs + 32 * (e / 128);
                int lo = (q[e % 32] >> (2 * ((e % 128) / 32))) & 3;
                int high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
                d += (lo - (high ? 0 : 4)) * y[i].qs[e];
            }
            isum += (quant_q3k_scale(x[i].scales, sb) - 32) * d;
        }
        sum += (y[i].d * quant_f16_to_f32(x[i].d)) * isum;
    }
    *s = sum;
}

/* Q4_K and Q5_K share everything but the fifth bit (qh NULL for Q4_K). */
static float dot_k45_block(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh,
                           ggml_half dh, ggml_half dminh, const block_q8_K *y)
{
    int isum = 0, msum = 0;
    for (int sb = 0; sb < QK_K / 32; sb++) {
        uint8_t sc, m;
        quant_k4_scale_min(sb, scales, &sc, &m);
        const uint8_t *q = qs + 32 * (sb / 2);
        const int shift = 4 * (sb % 2);
        int d = 0;
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 0xF;
            if (qh)
                v |= ((qh[l] >> sb) & 1) << 4;
            d += v * y->qs[32 * sb + l];
        }
        isum += sc * d;
        msum += m * (y->bsums[2 * sb] + y->bsums[2 * sb + 1]);
    }
    const float dall = y->d * quant_f16_to_f32(dh);
    const float dmin = y->d * quant_f16_to_f32(dminh);
    return dall * isum - dmin * msum;
}

static void dot_q4_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sum += dot_k45_block(x[i].scales, x[i].qs, NULL, x[i].d, x[i].dmin, &y[i]);
    *s = sum;
}

static void dot_q5_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++)
        sum += dot_k45_block(x[i].scales, x[i].qs, x[i].qh, x[i].d, x[i].dmin, &y[i]);
    *s = sum;
}

static void dot_q6_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int sb = 0; sb < QK_K / 16; sb++) {
            int d = 0;
            for (int e = 16 * sb; e < 16 * sb + 16; e++) {
                const uint8_t *ql = x[i].ql + 64 * (e / 128), *qh = x[i].qh + 32 * (e / 128);
                int k = (e % 128) / 32, l = e % 32;
                int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
                int hi = (qh[l] >> (2 * k)) & 3;
                d += ((lo | hi << 4) - 32) * y[i].qs[e];
            }
            isum += x[i].scales[sb] * d;
        }
        sum += (y[i].d * quant_f16_to_f32(x[i].d)) * isum;
    }
    *s = sum;
}

static void dot_q8_K(int64_t n, float *restrict s, const void *restrict vx, const void *restrict vy)
{
    const block_q8_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < QK_K; j++)
            isum += x[i].qs[j] * y[i].qs[j];
        sum += (x[i].d * y[i].d) * isum;
    }
    *s = sum;
}

static void dot_iq4_xs(int64_t n, float *restrict s, const void *restrict vx,
                       const void *restrict vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int isum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const uint8_t *qs = x[i].qs + 16 * ib;
            const int8_t *q8 = y[i].qs + 32 * ib;
            int d = 0;
            for (int j = 0; j < 16; j++)
                d += kvalues_iq4nl[qs[j] & 0xF] * q8[j] + kvalues_iq4nl[qs[j] >> 4] * q8[j + 16];
            isum += (quant_iq4xs_scale(&x[i], ib) - 32) * d;
        }
        sum += (y[i].d * quant_f16_to_f32(x[i].d)) * isum;
    }
    *s = sum;
}

/* --- the table ----------------------------------------------------------- */

void quant_ref_kernels(quant_kernels *k)
{
    k->vec_dot[QT_F32] = dot_f32;
    k->vec_dot[QT_F16] = dot_f16;
    k->vec_dot[QT_BF16] = dot_bf16;
    k->vec_dot[QT_Q4_0] = dot_q4_0;
    k->vec_dot[QT_Q4_1] = dot_q4_1;
    k->vec_dot[QT_Q5_0] = dot_q5_0;
    k->vec_dot[QT_Q5_1] = dot_q5_1;
    k->vec_dot[QT_Q8_0] = dot_q8_0;
    k->vec_dot[QT_Q8_1] = dot_q8_1;
    k->vec_dot[QT_IQ4_NL] = dot_iq4_nl;
    k->vec_dot[QT_MXFP4] = dot_mxfp4;
    k->vec_dot[QT_Q2_K] = dot_q2_K;
    k->vec_dot[QT_Q3_K] = dot_q3_K;
    k->vec_dot[QT_Q4_K] = dot_q4_K;
    k->vec_dot[QT_Q5_K] = dot_q5_K;
    k->vec_dot[QT_Q6_K] = dot_q6_K;
    k->vec_dot[QT_Q8_K] = dot_q8_K;
    k->vec_dot[QT_IQ4_XS] = dot_iq4_xs;

    k->act_quant[QT_F32] = quant_from_float_f32; /* a copy */
    k->act_quant[QT_Q8_0] = quant_from_float_q8_0;
    k->act_quant[QT_Q8_1] = quant_from_float_q8_1;
    k->act_quant[QT_Q8_K] = quant_from_float_q8_K;
}
