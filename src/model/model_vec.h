/*
 * model_vec.h — the forward pass's vector kernels: float math on rows.
 *
 * Matrix products belong to quant/ (quant_matmul). What is left of a
 * transformer step is elementwise or row-at-a-time float work — attention's
 * scores and weighted sums, softmax, the gated activations, RMSNorm, KV rows
 * converted between storage types — and this table does it. A scalar
 * reference (model_vec.c) is always built; model_vec_avx2.c (AVX2, FMA,
 * F16C) replaces it at start-up when the CPU has them and quant/ chose an
 * AVX2 or better kernel table (so SPILLWAY_ISA=scalar turns both off), and
 * model_vec_avx512.c then replaces attention's two kernels where quant/
 * chose AVX-512.
 *
 * Attention's kernels take several queries at once (the query heads that
 * share a KV head, GQA): each key and value row is then loaded once for all
 * of them. What a query gets never depends on how many came with it.
 *
 * Contracts shared by all versions:
 *   - no alignment is required; n may be any count >= 0;
 *   - a kernel's result depends only on its arguments, never on what else
 *     is in the batch or which thread runs it, so callers that always pass
 *     a value the same operands get the same bits;
 *   - exp is float exp to a few ulp (the AVX2 version is a polynomial);
 *     sums of squares are accumulated in double.
 */
#ifndef SW_MODEL_VEC_H
#define SW_MODEL_VEC_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/blocks.h"
#include "quant/quant.h"

typedef struct model_vec {
    /* s[h * n + i] = scale * dot(q + h * d, K + i * d) for h < nq, i < n:
     * nq query rows against n key rows, d floats each. */
    void (*dots)(const float *q, int nq, const float *K, int n, int d, float scale, float *s);
    /* acc[h * d + j] += p[h * n + i] * V[i * d + j] for i = 0, 1, ..., n - 1 in
     * turn, for h < nq, j < d. */
    void (*wsum)(float *acc, const float *p, int nq, const float *V, int n, int d);
    /* Largest of x[0..n) (-inf when n is 0). */
    float (*max)(const float *x, int n);
    /* x[i] = exp(x[i] - m); returns the sum of the new x. */
    float (*exp_sum)(float *x, int n, float m);
    /* x[i] *= a. */
    void (*scale)(float *x, float a, int n);
    /* y[i] += a * x[i] (a multiply, then an add: no FMA). */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* Sum of x[i]^2, accumulated in double. */
    double (*sumsq)(const float *x, int n);
    /* y[i] = x[i] * s * w[i] (w NULL: x[i] * s), rounded after each product. */
    void (*rms_apply)(float *y, const float *x, const float *w, float s, int n);
    /* g[i] = silu(g[i]) * u[i]. */
    void (*silu_mul)(float *g, const float *u, int n);
    /* gpt-oss: x = min(g, limit), y = clamp(u, -limit, limit),
     * g[i] = x * sigmoid(alpha x) * (y + 1). */
    void (*swiglu_oai)(float *g, const float *u, int n, float limit, float alpha);
    /* RoPE of one head: pair i (i < n_rot / 2) is (x[2i], x[2i+1]) when
     * adjacent, else (x[i], x[i + n_rot/2]); with c, s = cs[2i], cs[2i+1] it
     * becomes (fma(x0, c, -(x1 s)), fma(x0, s, x1 c)), every version to the
     * same bits (the products and the fused operations are exact IEEE). */
    void (*rope)(float *x, const float *cs, int n_rot, bool adjacent);
    /* Storage conversions of KV rows (exact, round to nearest even). */
    void (*f16_to_f32)(const uint16_t *x, float *y, int n);
    void (*f32_to_f16)(const float *x, uint16_t *y, int n);
    /* n a multiple of 32. */
    void (*q8_0_to_f32)(const block_q8_0 *x, float *y, int n);
} model_vec;

/* The table for this CPU (chosen once, thread-safe). */
const model_vec *model_vec_get(void);
/* The table of one ISA, for tests; -1 if this CPU cannot run it. */
int model_vec_for(quant_isa isa, model_vec *out);

/* Installers: the reference fills everything, the others what they have. */
void model_vec_ref(model_vec *v);
void model_vec_avx2(model_vec *v);
void model_vec_avx512(model_vec *v);

#endif
