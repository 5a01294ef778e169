/*
 * quant.h — tensor storage types: layouts, conversion and dot products.
 *
 * One table describes every tensor type spillway knows (ids are ggml's, as
 * GGUF stores them): its name, how many elements a block holds and how many
 * bytes it takes. Types we can compute with also have to_float (exact
 * dequantization: bit-identical to the GGUF ecosystem's reference), and some
 * have from_float (quantization, used by the model generator and tests).
 *
 * Dot products. A weight row of type T is multiplied with an activation row
 * that has first been converted to T's activation type (traits->vec_dot_type):
 * float32 for F32/F16/BF16, Q8_0 for the 32-element types, Q8_1 for Q4_1 and
 * Q5_1 (which need the block sums), Q8_K for the 256-element K-quants and
 * IQ4_XS. The integer kernels then work on int8 x small-int products.
 *
 * Kernels. A scalar reference of every kernel is always built
 * (quant_ref_*.c); AVX2 and AVX-512 versions (quant_*_avx2.c, *_avx512.c) are
 * compiled with their own flags and installed over the reference once, at
 * quant_init(), according to CPUID. quant_kernels_for() returns the table of
 * a given ISA so tests can compare each SIMD kernel with the reference.
 *
 * Invariants: n (elements) passed to a kernel is a multiple of the type's
 * block size; pointers need no alignment beyond the block struct's own.
 */
#ifndef SW_QUANT_H
#define SW_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/blocks.h"

/* ggml type ids, as stored in GGUF tensor infos. */
typedef enum quant_type {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_IQ2_XXS = 16,
    QT_IQ2_XS = 17,
    QT_IQ3_XXS = 18,
    QT_IQ1_S = 19,
    QT_IQ4_NL = 20,
    QT_IQ3_S = 21,
    QT_IQ2_S = 22,
    QT_IQ4_XS = 23,
    QT_I8 = 24,
    QT_I16 = 25,
    QT_I32 = 26,
    QT_I64 = 27,
    QT_F64 = 28,
    QT_IQ1_M = 29,
    QT_BF16 = 30,
    QT_TQ1_0 = 34,
    QT_TQ2_0 = 35,
    QT_MXFP4 = 39,
    QT_COUNT = 40
} quant_type;

typedef void (*quant_to_float_fn)(const void *restrict x, float *restrict y, int64_t n);
typedef void (*quant_from_float_fn)(const float *restrict x, void *restrict y, int64_t n);
/* *s = dot(x, y) over n elements; x of the weight type, y of its vec_dot_type. */
typedef void (*quant_vec_dot_fn)(int64_t n, float *restrict s, const void *restrict x,
                                 const void *restrict y);

/*
 * s[r] = dot(row r of x, y) for r < nr: the rows lie row_stride bytes
 * apart, all against the same y. Each s[r] is bit-identical to vec_dot's
 * result for that row alone (same integer sums, same float additions in
 * the same order); the kernels only share y's loads and per-block work
 * between rows and keep each row's accumulators in registers.
 */
typedef void (*quant_vec_dot_rows_fn)(int64_t n, int nr, float *restrict s, const void *restrict x,
                                      size_t row_stride, const void *restrict y);

/*
 * Prepared activations, for kernels that rearrange their activation row
 * before use (the AVX-512 Q4_K and Q5_K kernels regroup it to the weights'
 * order). A caller that multiplies one activation row with many weight rows
 * over several calls (matmul's chunks) can prepare it once: prep(n, y, buf)
 * writes the prepared form of y (n elements of the weight type's
 * vec_dot_type) into buf (64-byte aligned, `bytes` long), and dot_rows
 * reads buf where vec_dot_rows reads y, with the same results bit for bit.
 * prep NULL: the kernel has no such step (it may still have dot_multi);
 * rows longer than max_n elements are not prepared (use vec_dot_rows).
 */
typedef void (*quant_act_prep_fn)(int64_t n, const void *restrict y, void *restrict buf);
/*
 * Several activations at once (a batch's rows): yp holds na activations,
 * yp_stride bytes apart, each a buffer prep wrote (or, where prep is NULL,
 * a plain row of the vec_dot_type); s[a * s_stride + r] = dot(row r of x,
 * activation a) for r < nr, a < na, each bit-identical to the table's
 * vec_dot for that row and activation. The kernel unpacks each weight
 * block once for all of them.
 */
typedef void (*quant_dot_multi_fn)(int64_t n, int nr, int na, float *restrict s, size_t s_stride,
                                   const void *restrict x, size_t row_stride,
                                   const void *restrict yp, size_t yp_stride);
typedef struct quant_act_prep {
    quant_act_prep_fn prep;
    quant_vec_dot_rows_fn dot_rows; /* its y: a buffer prep wrote */
    quant_dot_multi_fn dot_multi;   /* NULL: none */
    size_t bytes;
    int64_t max_n;
} quant_act_prep;

typedef struct quant_traits {
    const char *name;          /* "Q4_K" */
    int64_t blck;              /* elements per block */
    size_t size;               /* bytes per block */
    quant_type vec_dot_type;   /* activation type for dot products */
    quant_to_float_fn to_float;     /* NULL: storage only (we cannot compute with it) */
    quant_from_float_fn from_float; /* NULL: no quantizer */
} quant_traits;

/* The traits of a type id, or NULL if the id is not a known ggml type. */
const quant_traits *quant_traits_of(int type);
/* Name of a type id ("Q4_K"), or "type<N>" for unknown ids. */
const char *quant_name(int type);
/* Type id for a name (case-insensitive), or -1. */
int quant_from_name(const char *name);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t quant_row_size(quant_type t, int64_t n);

/* --- kernels ----------------------------------------------------------- */

/* Kernel tables, in order of preference. AVX2_VNNI is the AVX2 table with
 * AVX-VNNI kernels over it (quant_avxvnni.c); AVX-512 CPUs need not have
 * AVX-VNNI, so a table is runnable where quant_isa_supported says so, not
 * wherever a better one is. */
typedef enum quant_isa {
    QUANT_ISA_REF = 0,
    QUANT_ISA_AVX2,
    QUANT_ISA_AVX2_VNNI,
    QUANT_ISA_AVX512
} quant_isa;

typedef struct quant_kernels {
    quant_isa isa;
    quant_vec_dot_fn vec_dot[QT_COUNT];      /* by weight type */
    /* by weight type; NULL where there is no multi-row kernel (use
     * quant_vec_dot_rows, which falls back to vec_dot row by row) */
    quant_vec_dot_rows_fn vec_dot_rows[QT_COUNT];
    quant_act_prep act_prep[QT_COUNT];       /* by weight type; prep NULL: none */
    quant_from_float_fn act_quant[QT_COUNT]; /* by activation type: Q8_0, Q8_1, Q8_K */
} quant_kernels;

/* k's vec_dot_rows[t], or vec_dot[t] once per row where that is NULL. */
void quant_vec_dot_rows(const quant_kernels *k, quant_type t, int64_t n, int nr, float *s,
                        const void *x, size_t row_stride, const void *y);

/* Selects kernels for this CPU (idempotent, thread-safe). */
void quant_init(void);
/* The selected table (calls quant_init). */
const quant_kernels *quant_kernels_get(void);
/* The table for one ISA; returns -1 if this CPU cannot run it. */
int quant_kernels_for(quant_isa isa, quant_kernels *out);
const char *quant_isa_name(quant_isa isa);
/* Best ISA this CPU supports (CPUID). */
quant_isa quant_cpu_isa(void);
/* Whether this CPU can run isa's table. */
bool quant_isa_supported(quant_isa isa);

/* Installers: each fills the entries it implements, leaving the rest. */
void quant_ref_kernels(quant_kernels *k);
void quant_avx2_kernels(quant_kernels *k);
void quant_avxvnni_kernels(quant_kernels *k); /* over quant_avx2_kernels */
void quant_avx512_kernels(quant_kernels *k);

/* --- scalar conversions shared by all files ---------------------------- */

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f); /* round to nearest even */
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f); /* round to nearest even, NaN kept quiet */

#endif
