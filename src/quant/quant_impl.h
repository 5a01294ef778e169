/*
 * quant_impl.h — private to src/quant: the scalar reference functions that
 * the type table (quant.c) and the kernel tables point to. Names are
 * quant_<what>_<type>, with the type in ggml's spelling (q4_K, iq4_xs).
 */
#ifndef SW_QUANT_IMPL_H
#define SW_QUANT_IMPL_H

#include "quant/quant.h"

#define QUANT_TYPES_TO_FLOAT(X) \
    X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) X(q8_1) \
    X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) X(q8_K) X(iq4_nl) X(iq4_xs) X(mxfp4)

#define QUANT_TYPES_FROM_FLOAT(X) \
    X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) X(q8_1) \
    X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) X(q8_K) X(iq4_nl) X(mxfp4)

#define QUANT_DECLARE_TO_FLOAT(t) \
    void quant_to_float_##t(const void *restrict x, float *restrict y, int64_t n);
#define QUANT_DECLARE_FROM_FLOAT(t) \
    void quant_from_float_##t(const float *restrict x, void *restrict y, int64_t n);
QUANT_TYPES_TO_FLOAT(QUANT_DECLARE_TO_FLOAT)
QUANT_TYPES_FROM_FLOAT(QUANT_DECLARE_FROM_FLOAT)

#endif
