/*
 * matmul.c — threaded matrix-vector and matrix-matrix products (matmul.h).
 *
 * Two phases per call: convert the activations (over the pool, in slices of
 * blocks, when there are enough of them), then one parallel-for over the
 * weight rows.
 *
 * Splitting the rows. Weights stream from DRAM, and the hardware prefetcher
 * streams best along one long contiguous run: cutting a matrix into many
 * chunks handed out round-robin costs a prefetcher ramp-up per chunk, which
 * for a 2048x768 expert slice ate a third of the bandwidth. So the rows are
 * cut into small chunks (>= MIN_CHUNK_BYTES, a multiple of 16 rows so no two
 * chunks share an output cache line), and the chunks into one contiguous
 * stream per thread. A pool task owns a stream and takes its chunks from the
 * front, in address order; a task that runs out steals chunks from the back
 * of the others' streams, so a thread that loses its core costs only the
 * chunk it is in. Each chunk is claimed once (one CAS on the stream's
 * front/back pair), so every output is written by exactly one thread.
 */
#include "quant/matmul.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Tuning. */
#define MIN_CHUNK_BYTES (16 * 1024)  /* below this a claim costs too much */
#define CHUNK_ALIGN_ROWS 16          /* 16 floats: one output cache line */
#define ACT_BLOCK_BYTES (128 * 1024) /* activations reused per weight row (L2) */
#define W_CHUNK_MAX_BYTES (256 * 1024) /* weight chunk kept in L2 across act blocks */
#define STACK_ACT_BYTES (32 * 1024)  /* converted activations up to this size live on the stack */
#define STACK_STREAMS 64             /* streams up to this many threads live on the stack */
#define ACT_PARALLEL_MIN 16384       /* activation elements worth converting in parallel */

/* A run of chunks [front, back): the owner takes from the front, thieves
 * from the back. Packed in one word (front low, back high) so one CAS
 * claims a chunk; one cache line each. */
typedef struct mm_stream {
    _Alignas(64) _Atomic uint64_t range;
} mm_stream;

struct mm_job {
    quant_vec_dot_fn dot;
    const uint8_t *W;
    size_t w_row_bytes;
    const uint8_t *A; /* [m] activation rows, a_row_bytes each */
    size_t a_row_bytes;
    float *Y; /* [m][rows] */
    int64_t rows, cols, m;
    int64_t chunk;     /* weight rows per chunk */
    int64_t act_block; /* activation rows per inner block */
    mm_stream *streams;
    int n_streams;
};

/* Rows [c*chunk, ...) of chunk c, for every activation, block by block. */
static void mm_chunk(const struct mm_job *j, int64_t c)
{
    int64_t r0 = c * j->chunk;
    int64_t r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    for (int64_t i0 = 0; i0 < j->m; i0 += j->act_block) {
        int64_t i1 = i0 + j->act_block < j->m ? i0 + j->act_block : j->m;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *w = j->W + (size_t)r * j->w_row_bytes;
            for (int64_t i = i0; i < i1; i++)
                j->dot(j->cols, &j->Y[i * j->rows + r], w, j->A + (size_t)i * j->a_row_bytes);
        }
    }
}

/* Claims a chunk from the front (back = 0) or back of s; -1 when empty. */
static int64_t stream_take(mm_stream *s, int back)
{
    uint64_t v = atomic_load_explicit(&s->range, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b)
            return -1;
        uint64_t nv = back ? ((uint64_t)(b - 1) << 32) | f : v + 1;
        /* relaxed: the pool orders the data; the CAS only makes claims unique */
        if (atomic_compare_exchange_weak_explicit(&s->range, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed))
            return back ? (int64_t)b - 1 : (int64_t)f;
    }
}

static void mm_task(void *arg, int task, int n_tasks, int thread)
{
    const struct mm_job *j = arg;
    int64_t c;
    while ((c = stream_take(&j->streams[task], 0)) >= 0)
        mm_chunk(j, c);
    for (int k = 1; k < j->n_streams; k++)
        while ((c = stream_take(&j->streams[(task + k) % j->n_streams], 1)) >= 0)
            mm_chunk(j, c);
}

/* Converting activations: work items are (row of X, slice of its blocks);
 * every activation type is blockwise, so slices convert independently. */
struct act_job {
    quant_from_float_fn quantize;
    const float *X;  /* [m][cols] */
    uint8_t *A;      /* [m] rows of a_row_bytes */
    size_t a_row_bytes;
    int64_t cols;
    int64_t blck;    /* elements per activation block */
    size_t blck_bytes;
    int64_t nb;      /* blocks per row */
    int64_t per;     /* blocks per slice */
    int64_t slices;  /* slices per row */
};

static void act_task(void *arg, int task, int n_tasks, int thread)
{
    const struct act_job *j = arg;
    int64_t i = task / j->slices, b0 = task % j->slices * j->per;
    int64_t b1 = b0 + j->per < j->nb ? b0 + j->per : j->nb;
    const float *x = j->X + i * j->cols + b0 * j->blck;
    uint8_t *a = j->A + (size_t)i * j->a_row_bytes + (size_t)b0 * j->blck_bytes;
    j->quantize(x, a, (b1 - b0) * j->blck);
}

/* Converts X[m][cols] to A, over the pool when there is enough of it. */
static void act_convert(sw_pool *pool, quant_from_float_fn quantize, quant_type atype,
                        const float *X, int64_t m, int64_t cols, uint8_t *A, size_t a_row_bytes)
{
    const quant_traits *at = quant_traits_of(atype);
    struct act_job j = {quantize, X, A, a_row_bytes, cols, at->blck, at->size, cols / at->blck,
                        cols / at->blck, 1};
    int n_threads = sw_pool_size(pool);
    if (n_threads > 1 && m * cols >= ACT_PARALLEL_MIN) {
        /* about two items per thread */
        int64_t want = (2 * n_threads + m - 1) / m;
        j.slices = want < j.nb ? want : j.nb;
        j.per = (j.nb + j.slices - 1) / j.slices;
        j.slices = (j.nb + j.per - 1) / j.per;
    }
    if (m * j.slices == 1)
        act_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, act_task, &j, (int)(m * j.slices));
}

/* Rows per chunk: at least MIN_CHUNK_BYTES (and, when weights are revisited
 * per activation block, at most W_CHUNK_MAX_BYTES), a multiple of
 * CHUNK_ALIGN_ROWS. */
static int64_t pick_chunk(size_t row_bytes, int revisit)
{
    int64_t chunk = (int64_t)((MIN_CHUNK_BYTES + row_bytes - 1) / row_bytes);
    if (revisit) {
        int64_t max_rows = (int64_t)(W_CHUNK_MAX_BYTES / row_bytes);
        if (chunk > max_rows)
            chunk = max_rows;
    }
    chunk = (chunk + CHUNK_ALIGN_ROWS - 1) / CHUNK_ALIGN_ROWS * CHUNK_ALIGN_ROWS;
    return chunk;
}

/* Checks the arguments and finds the kernels; fills dot, act (NULL for float
 * activations) and the two row sizes. */
static int mm_prepare(const char *what, quant_type wtype, int64_t rows, int64_t cols, int64_t m,
                      quant_vec_dot_fn *dot, quant_from_float_fn *act, size_t *w_row,
                      size_t *a_row, sw_err *err)
{
    const quant_traits *tr = quant_traits_of(wtype);
    if (!tr)
        return sw_errf(err, SW_EINVAL, "%s: unknown weight type %d", what, (int)wtype);
    const quant_kernels *k = quant_kernels_get();
    if (!tr->to_float || !k->vec_dot[wtype])
        return sw_errf(err, SW_EUNSUPPORTED, "%s: no dot-product kernel for weight type %s",
                       what, tr->name);
    if (rows < 0 || m < 0 || cols <= 0 || cols % tr->blck != 0)
        return sw_errf(err, SW_EINVAL,
                       "%s: bad shape rows=%lld cols=%lld m=%lld (cols must be a positive "
                       "multiple of %s's block of %lld)",
                       what, (long long)rows, (long long)cols, (long long)m, tr->name,
                       (long long)tr->blck);
    if (rows > INT32_MAX || m > INT32_MAX / 16)
        return sw_errf(err, SW_EINVAL, "%s: shape rows=%lld m=%lld too large", what,
                       (long long)rows, (long long)m);
    *dot = k->vec_dot[wtype];
    *w_row = quant_row_size(wtype, cols);
    if (tr->vec_dot_type == QT_F32) {
        *act = NULL;
        *a_row = (size_t)cols * sizeof(float);
    } else {
        *act = k->act_quant[tr->vec_dot_type];
        if (!*act)
            return sw_errf(err, SW_EUNSUPPORTED, "%s: no converter to activation type %s",
                           what, quant_name(tr->vec_dot_type));
        *a_row = quant_row_size(tr->vec_dot_type, cols);
    }
    return 0;
}

int quant_matmul(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *X, int64_t m, float *Y, sw_err *err)
{
    struct mm_job j = {0};
    quant_from_float_fn act;
    int rc = mm_prepare(m == 1 ? "matvec" : "matmul", wtype, rows, cols, m, &j.dot, &act,
                        &j.w_row_bytes, &j.a_row_bytes, err);
    if (rc)
        return rc;
    if (rows == 0 || m == 0)
        return 0;

    _Alignas(64) uint8_t stack_buf[STACK_ACT_BYTES];
    uint8_t *heap_buf = NULL;
    if (act) {
        size_t need = (size_t)m * j.a_row_bytes;
        uint8_t *A = stack_buf;
        if (need > sizeof stack_buf) {
            heap_buf = aligned_alloc(64, (need + 63) / 64 * 64);
            if (!heap_buf)
                return sw_errf(err, SW_ENOMEM, "matmul: no memory for %zu bytes of activations",
                               need);
            A = heap_buf;
        }
        act_convert(pool, act, quant_traits_of(wtype)->vec_dot_type, X, m, cols, A,
                    j.a_row_bytes);
        j.A = A;
    } else {
        j.A = (const uint8_t *)X;
    }

    j.W = W;
    j.Y = Y;
    j.rows = rows;
    j.cols = cols;
    j.m = m;
    j.act_block = (int64_t)(ACT_BLOCK_BYTES / j.a_row_bytes);
    if (j.act_block < 1)
        j.act_block = 1;
    j.chunk = pick_chunk(j.w_row_bytes, m > j.act_block);
    int64_t n_chunks = (rows + j.chunk - 1) / j.chunk;
    int n_streams = sw_pool_size(pool);
    if (n_streams > n_chunks)
        n_streams = (int)n_chunks;
    mm_stream stack_streams[STACK_STREAMS];
    j.streams = stack_streams;
    if (n_streams > STACK_STREAMS) {
        j.streams = aligned_alloc(64, sizeof(mm_stream) * (size_t)n_streams);
        if (!j.streams) {
            free(heap_buf);
            return sw_errf(err, SW_ENOMEM, "matmul: out of memory");
        }
    }
    j.n_streams = n_streams;
    for (int s = 0; s < n_streams; s++) {
        uint64_t f = (uint64_t)(n_chunks * s / n_streams);
        uint64_t b = (uint64_t)(n_chunks * (s + 1) / n_streams);
        atomic_init(&j.streams[s].range, b << 32 | f);
    }
    if (n_streams == 1)
        mm_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, mm_task, &j, n_streams);
    if (j.streams != stack_streams)
        free(j.streams);
    free(heap_buf);
    return 0;
}

int quant_matvec(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *x, float *y, sw_err *err)
{
    return quant_matmul(pool, wtype, W, rows, cols, x, 1, y, err);
}
