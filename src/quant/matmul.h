/*
 * matmul.h — quantized weights times float activations, threaded.
 *
 * The engine's two products, both y = W x with W a quantized weight matrix:
 *
 *   quant_matvec  one activation vector (a decode step):
 *       W  [rows][cols]  of type wtype, row-major; each row is
 *                        quant_row_size(wtype, cols) bytes, rows contiguous
 *       x  [cols]        float
 *       y  [rows]        float, y[r] = dot(W[r], x)
 *
 *   quant_matmul  m activation vectors (a prefill batch):
 *       X  [m][cols]     float, row-major
 *       Y  [m][rows]     float, Y[i][r] = dot(W[r], X[i])
 *
 * How: the activations are converted once to wtype's activation type (Q8_0,
 * Q8_1 or Q8_K; float types use x as it is), then each thread of the pool
 * streams through its own contiguous share of the weight rows, in small
 * chunks, and a thread that finishes early steals chunks from the far end
 * of the others' shares (so a thread that loses its core costs little; see
 * matmul.c). For m > 1 each weight row, once loaded, is multiplied with a
 * block of activations that fits in L2 before moving on, so weights are
 * read from memory once.
 *
 * Exactness: each output is one kernel call on one weight row and one
 * converted activation row, so results do not depend on the pool size, the
 * chunking or m: quant_matmul row i equals quant_matvec of X[i], bit for bit.
 *
 * pool may be NULL (run on the calling thread). Returns 0 or SW_EINVAL /
 * SW_EUNSUPPORTED / SW_ENOMEM with err filled.
 */
#ifndef SW_QUANT_MATMUL_H
#define SW_QUANT_MATMUL_H

#include <stdint.h>

#include "quant/quant.h"
#include "util/err.h"
#include "util/pool.h"

int quant_matvec(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *x, float *y, sw_err *err);

int quant_matmul(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *X, int64_t m, float *Y, sw_err *err);

#endif
