/*
 * quant_ref.h — small inline helpers shared by the scalar reference files
 * (quant_ref_*.c) and usable by the SIMD files: scale decoding for the
 * packed K-quant formats, the E8M0 exponent of MXFP4, and ggml's rounding.
 *
 * Everything here is exact integer or single-rounding float work, so a SIMD
 * kernel that uses these helpers for its scalar tails computes the same bits
 * as the reference.
 */
#ifndef SW_QUANT_REF_H
#define SW_QUANT_REF_H

#include <stdint.h>
#include <string.h>

#include "quant/quant.h"

/*
 * Round to nearest, ties to even, for |f| < 2^22: adding 1.5 * 2^23 pushes
 * the integer part into the low mantissa bits. Same result as ggml's
 * nearest_int (and lrintf in the default rounding mode), without a libm call
 * and without undefined behaviour for NaN or huge inputs (which give junk).
 */
static inline int quant_nearest_int(float f)
{
    float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* An MXFP4 block exponent as a float, halved: 2^(e-128). The table
 * kvalues_mxfp4 holds E2M1 values doubled, so d * kvalues[q] is exact.
 * e = 0 and 1 give the subnormals 2^-128 and 2^-127. */
static inline float quant_e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/*
 * Q4_K / Q5_K: scale and min of sub-block j (0..7), 6 bits each, packed in
 * 12 bytes. Sub-blocks 0..3 keep theirs in the low 6 bits of bytes j (scale)
 * and j+4 (min); sub-blocks 4..7 keep the low 4 bits in byte j+4 (scale low
 * nibble, min high nibble) and the top 2 bits in the top bits of bytes j-4
 * (scale) and j (min).
 */
static inline void quant_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/*
 * Q3_K: the unsigned 6-bit scale of sub-block j (0..15), before the -32
 * bias. Low 4 bits: nibble (j / 8) of byte j % 8; high 2 bits: bits
 * 2 * (j / 4) of byte 8 + j % 4.
 */
static inline int quant_q3k_scale(const uint8_t *scales, int j)
{
    int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | (hi << 4);
}

/* IQ4_XS: the unsigned 6-bit scale of sub-block ib (0..7), before the -32
 * bias: low nibble from scales_l, top 2 bits from scales_h. */
static inline int quant_iq4xs_scale(const block_iq4_xs *b, int ib)
{
    int lo = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    int hi = (b->scales_h >> (2 * ib)) & 3;
    return lo | (hi << 4);
}

/* Q5_0 / Q5_1: the 32 high bits, element j in bit j. */
static inline uint32_t quant_q5_high_bits(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
           (uint32_t)qh[3] << 24;
}

#endif
