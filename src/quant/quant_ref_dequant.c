/*
 * quant_ref_dequant.c — to_float for every type we compute with.
 *
 * These are the definition of what a GGUF tensor holds, so they reproduce
 * ggml's dequantize_row_* bit for bit: same float operations, same order.
 * Where ggml first forms a sub-block's scale as a float (d * sc, dmin * m)
 * and then applies it, so do we; where it multiplies left to right
 * (d * sc * q), so do we. No FMA: this file is built without -mfma and C11
 * forbids contraction across statements, and ggml's reference does not
 * contract either.
 *
 * Element order inside a block follows blocks.h: for the 32-element types
 * byte j holds elements j (low nibble) and j + 16 (high nibble); the K-quant
 * layouts are spelled out per function.
 */
#include "quant/quant_impl.h"
#include "quant/quant_ref.h"

#include <string.h>

const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};

/* E2M1 values times two: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives. */
const int8_t kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* --- plain floats ------------------------------------------------------ */

void quant_to_float_f32(const void *restrict x, float *restrict y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void quant_to_float_f16(const void *restrict x, float *restrict y, int64_t n)
{
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++)
        y[i] = quant_f16_to_f32(h[i]);
}

void quant_to_float_bf16(const void *restrict x, float *restrict y, int64_t n)
{
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++)
        y[i] = quant_bf16_to_f32(h[i]);
}

/* --- 32-element blocks ------------------------------------------------- */

void quant_to_float_q4_0(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void quant_to_float_q4_1(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = quant_f16_to_f32(x[i].d);
        const float m = quant_f16_to_f32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0xF) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

void quant_to_float_q5_0(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = quant_f16_to_f32(x[i].d);
        const uint32_t qh = quant_q5_high_bits(x[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (lo - 16) * d;
            y[j + QK5_0 / 2] = (hi - 16) * d;
        }
    }
}

void quant_to_float_q5_1(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = quant_f16_to_f32(x[i].d);
        const float m = quant_f16_to_f32(x[i].m);
        const uint32_t qh = quant_q5_high_bits(x[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int lo = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = lo * d + m;
            y[j + QK5_1 / 2] = hi * d + m;
        }
    }
}

void quant_to_float_q8_0(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = x[i].qs[j] * d;
    }
}

void quant_to_float_q8_1(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = x[i].qs[j] * d;
    }
}

void quant_to_float_iq4_nl(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * kvalues_iq4nl[x[i].qs[j] & 0xF];
            y[j + QK4_NL / 2] = d * kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

void quant_to_float_mxfp4(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_mxfp4 *x = vx;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, y += QK_MXFP4) {
        const float d = quant_e8m0_half(x[i].e);
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            y[j] = kvalues_mxfp4[x[i].qs[j] & 0xF] * d;
            y[j + QK_MXFP4 / 2] = kvalues_mxfp4[x[i].qs[j] >> 4] * d;
        }
    }
}

/* --- 256-element super-blocks ------------------------------------------ */

/*
 * Q2_K: each 128-element half uses 32 bytes of qs; element 32*k + l of the
 * half (k = 0..3, l = 0..31) is bits 2k..2k+1 of byte l. Sub-block s (16
 * elements) has scale nibble scales[s] & 15 and min nibble scales[s] >> 4.
 */
void quant_to_float_q2_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q2_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const float d = quant_f16_to_f32(x[i].d);
        const float dmin = quant_f16_to_f32(x[i].dmin);
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const uint8_t sc = x[i].scales[e0 / 16];
            const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            for (int e = e0; e < e0 + 16; e++) {
                const uint8_t *q = x[i].qs + 32 * (e / 128);
                int shift = 2 * ((e % 128) / 32);
                y[e] = dl * ((q[e % 32] >> shift) & 3) - ml;
            }
        }
    }
}

/*
 * Q3_K: low 2 bits as in Q2_K; the third bit of element e is bit e / 32 of
 * hmask[e % 32], and a clear bit means 4 is subtracted (q in -4..3).
 */
void quant_to_float_q3_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q3_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const float d_all = quant_f16_to_f32(x[i].d);
        for (int e0 = 0; e0 < QK_K; e0 += 16) {
            const float dl = d_all * (quant_q3k_scale(x[i].scales, e0 / 16) - 32);
            for (int e = e0; e < e0 + 16; e++) {
                const uint8_t *q = x[i].qs + 32 * (e / 128);
                int shift = 2 * ((e % 128) / 32);
                int lo = (q[e % 32] >> shift) & 3;
                int high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
                y[e] = dl * (lo - (high ? 0 : 4));
            }
        }
    }
}

/*
 * Q4_K: each 64-element quarter uses 32 bytes of qs, its first 32 elements
 * in the low nibbles and the next 32 in the high nibbles; sub-block s (32
 * elements) has 6-bit scale and min (quant_k4_scale_min).
 */
void quant_to_float_q4_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const float d = quant_f16_to_f32(x[i].d);
        const float dmin = quant_f16_to_f32(x[i].dmin);
        for (int s = 0; s < QK_K / 32; s++) {
            uint8_t sc, m;
            quant_k4_scale_min(s, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            for (int l = 0; l < 32; l++)
                y[32 * s + l] = d1 * ((q[l] >> shift) & 0xF) - m1;
        }
    }
}

/* Q5_K: as Q4_K, plus a fifth bit: bit e / 32 of qh[e % 32] adds 16. */
void quant_to_float_q5_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const float d = quant_f16_to_f32(x[i].d);
        const float dmin = quant_f16_to_f32(x[i].dmin);
        for (int s = 0; s < QK_K / 32; s++) {
            uint8_t sc, m;
            quant_k4_scale_min(s, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (s / 2);
            const int shift = 4 * (s % 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) + (((x[i].qh[l] >> s) & 1) << 4);
                y[32 * s + l] = d1 * v - m1;
            }
        }
    }
}

/*
 * Q6_K: each 128-element half uses 64 bytes of ql and 32 of qh. Element
 * 32*k + l of the half (k = 0..3): low 4 bits from ql[l + 32*(k%2)], nibble
 * k / 2; high 2 bits from qh[l], bits 2k..2k+1. Sub-block e / 16 has an int8
 * scale. ggml computes d * sc * q left to right; so do we.
 */
static inline int q6k_value(const block_q6_K *b, int e)
{
    const uint8_t *ql = b->ql + 64 * (e / 128);
    const uint8_t *qh = b->qh + 32 * (e / 128);
    int k = (e % 128) / 32, l = e % 32;
    int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
    int hi = (qh[l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

void quant_to_float_q6_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int e = 0; e < QK_K; e++)
            y[e] = d * x[i].scales[e / 16] * q6k_value(&x[i], e);
    }
}

void quant_to_float_q8_K(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++)
            y[j] = x[i].d * x[i].qs[j];
}

/* IQ4_XS: 8 sub-blocks of 32 laid out like IQ4_NL blocks, each with its
 * own 6-bit scale (quant_iq4xs_scale) biased by -32. */
void quant_to_float_iq4_xs(const void *restrict vx, float *restrict y, int64_t n)
{
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = quant_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32) {
            const float dl = d * (quant_iq4xs_scale(&x[i], ib) - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * kvalues_iq4nl[qs[j] & 0xF];
                y[j + 16] = dl * kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}
