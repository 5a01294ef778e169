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
 * chunks (for one activation on Intel CPUs, as two streams: the halves of
 * its share in alternation; quant_matvec_set_streams below), and a thread
 * that finishes early steals chunks from the far end of the others' shares
 * (so a thread that loses its core costs little; see matmul.c). For m > 1 each weight row, once loaded, is multiplied with a
 * block of activations that fits in L2 before moving on, so weights are
 * read from memory once.
 *
 * Kernels: rows go through the type's multi-row kernel (vec_dot_rows, a
 * chunk of rows per call for one activation, groups of 4 for several),
 * which shares the activation's loads between rows and pays the call and
 * setup once; types without one use vec_dot per row.
 *
 * Exactness: each output is computed as vec_dot of one weight row and one
 * converted activation row would compute it (the multi-row kernels are
 * bit-identical per row), so results do not depend on the pool size, the
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

/*
 * Several matrix-vector products in one call (a decode step's gate and up
 * projections, or the chosen experts' slices): y = W x for each item. Items
 * that share an activation vector (same x pointer, cols and activation
 * type) have it converted once; all items' rows then run as one pool job,
 * each matrix in contiguous chunks, so one dispatch serves them all. Every
 * y is bit-identical to quant_matvec of that item alone. Items may differ
 * in type and shape; their y must not overlap.
 */
typedef struct quant_mv {
    quant_type wtype;
    const void *W;  /* [rows][cols] of wtype */
    int64_t rows, cols;
    const float *x; /* [cols] */
    float *y;       /* [rows] */
} quant_mv;

int quant_matvec_multi(sw_pool *pool, const quant_mv *items, int n, sw_err *err);

/*
 * How a thread reads its share of a matrix-vector product's rows (all
 * three calls above with one activation; batches always use one):
 *
 *   QUANT_STREAMS_ONE   one contiguous stream, chunk after chunk;
 *   QUANT_STREAMS_TWO   its share cut in two halves, read in alternation
 *                       about 1 KiB at a time: two streams far apart;
 *   QUANT_STREAMS_AUTO  two on Intel CPUs, one elsewhere (the default).
 *
 * On the Intel Xeon that bench/RESULTS.md records, one core reads two far
 * streams faster than one (matmul.c has the figures); the AMD EPYC is not
 * measured, so it keeps one. Results are the same bits either way.
 * Process-wide; for benchmarks and tests.
 */
typedef enum quant_streams {
    QUANT_STREAMS_AUTO = 0,
    QUANT_STREAMS_ONE = 1,
    QUANT_STREAMS_TWO = 2,
} quant_streams;

void quant_matvec_set_streams(quant_streams mode);
/* Streams per thread (1 or 2) that a large enough product uses now. */
int quant_matvec_streams(void);

#endif
