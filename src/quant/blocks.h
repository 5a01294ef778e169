/*
 * blocks.h — the byte layout of every quantized block, declared once.
 *
 * These are the on-disk layouts of GGUF files (ggml's), little-endian. Each
 * block stores a fixed number of weights (QK*) with its scales; "bpw" is bits
 * per weight including the scales. Halves (ggml_half) are IEEE binary16 bit
 * patterns kept as uint16_t; conversions live in quant.c.
 *
 * Nibble order for the 32-element types: byte j of qs holds element j in its
 * low nibble and element j+16 in its high nibble.
 */
#ifndef SW_QUANT_BLOCKS_H
#define SW_QUANT_BLOCKS_H

#include <stdint.h>

typedef uint16_t ggml_half;

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_MXFP4 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* Q4_0: x = d * (q - 8), q in 0..15.  4.5 bpw */
typedef struct {
    ggml_half d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* Q4_1: x = d * q + m, q in 0..15.  5.0 bpw */
typedef struct {
    ggml_half d;
    ggml_half m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

/* Q5_0: x = d * (q - 16), q 5 bits: low 4 in qs, bit 4 of element j is bit j of qh.  5.5 bpw */
typedef struct {
    ggml_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

/* Q5_1: x = d * q + m, q 5 bits as in Q5_0.  6.0 bpw */
typedef struct {
    ggml_half d;
    ggml_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

/* Q8_0: x = d * q, q int8.  8.5 bpw */
typedef struct {
    ggml_half d;
    int8_t qs[QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* Q8_1: x = d * q; s = d * sum(q) (activation type for Q4_1/Q5_1).  9.0 bpw */
typedef struct {
    ggml_half d;
    ggml_half s;
    int8_t qs[QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

/*
 * Q2_K: 16 sub-blocks of 16. scales[i]: low nibble = 4-bit scale, high
 * nibble = 4-bit min; x = d * sc * q - dmin * m, q 2 bits.  2.625 bpw
 */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    ggml_half d;
    ggml_half dmin;
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");

/*
 * Q3_K: 16 sub-blocks of 16, 6-bit signed scales packed in 12 bytes;
 * q = 2 low bits from qs, high bit from hmask (bit clear means subtract 4);
 * x = d * (sc - 32) * q.  3.4375 bpw
 */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    ggml_half d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");

/*
 * Q4_K: 8 sub-blocks of 32, each with a 6-bit scale and 6-bit min packed in
 * scales[12]; x = d * sc * q - dmin * m, q 4 bits.  4.5 bpw
 */
typedef struct {
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

/* Q5_K: as Q4_K with a fifth bit per weight in qh.  5.5 bpw */
typedef struct {
    ggml_half d;
    ggml_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

/*
 * Q6_K: 16 sub-blocks of 16 with int8 scales; q 6 bits = 4 low bits in ql,
 * 2 high bits in qh; x = d * sc * (q - 32).  6.5625 bpw
 */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    ggml_half d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

/* Q8_K: activation type of the K-quants; bsums[i] = sum of qs[16i..16i+15]. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* IQ4_NL: x = d * kvalues_iq4nl[q], q 4 bits (non-linear grid).  4.5 bpw */
typedef struct {
    ggml_half d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");

/*
 * IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l,
 * high 2 in scales_h); x = d * (ls - 32) * kvalues_iq4nl[q].  4.25 bpw
 */
typedef struct {
    ggml_half d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;
_Static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs size");

/*
 * MXFP4 (OCP microscaling): e = shared E8M0 exponent; q 4-bit E2M1 values;
 * x = kvalues_mxfp4[q] * 2^(e-127) / 2 (the table holds doubled values).  4.25 bpw
 */
typedef struct {
    uint8_t e;
    uint8_t qs[QK_MXFP4 / 2];
} block_mxfp4;
_Static_assert(sizeof(block_mxfp4) == 17, "block_mxfp4 size");

extern const int8_t kvalues_iq4nl[16];
extern const int8_t kvalues_mxfp4[16];

#endif
