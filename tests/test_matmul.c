/* test_matmul.c — threaded quantized products (src/quant/matmul.h). */
#include "test.h"
#include "quant/matmul.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static const quant_type k_types[] = {
    QT_F32,  QT_F16,  QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1,   QT_Q5_0,   QT_Q5_1,
    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS, QT_MXFP4,
};
#define N_TYPES (int)(sizeof k_types / sizeof *k_types)

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_normal(uint64_t *s)
{
    double u1 = ((rng_next(s) >> 11) + 0.5) * 0x1p-53;
    double u2 = ((rng_next(s) >> 11) + 0.5) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* rows x cols weights of type t: quantized normal data, or for a type with
 * no quantizer random bytes whose scale field is made sane. */
static void *make_weights(quant_type t, int64_t rows, int64_t cols, uint64_t seed)
{
    const quant_traits *tr = quant_traits_of(t);
    size_t row_bytes = quant_row_size(t, cols);
    uint8_t *w = malloc(row_bytes * (size_t)rows + 1);
    float *f = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + (size_t)r * row_bytes;
        if (tr->from_float) {
            for (int64_t c = 0; c < cols; c++)
                f[c] = rng_normal(&seed) * 0.5f;
            tr->from_float(f, row, cols);
        } else {
            for (size_t b = 0; b < row_bytes; b++)
                row[b] = (uint8_t)rng_next(&seed);
            if (t == QT_IQ4_XS)
                for (int64_t b = 0; b < cols / tr->blck; b++) {
                    block_iq4_xs *blk = (block_iq4_xs *)row + b;
                    blk->d = quant_f32_to_f16(0.001f * (float)(1 + rng_next(&seed) % 16));
                }
        }
    }
    free(f);
    return w;
}

static float *make_floats(int64_t n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(&seed);
    return x;
}

/*
 * Reference for Y[i][r]: dequantize the weight row, convert X[i] to the
 * activation type and back (the kernel sees exactly that), sum in double.
 * Returns the largest error relative to sum |w x| of the row.
 */
static double ref_max_rel_err(quant_type t, const void *W, int64_t rows, int64_t cols,
                              const float *X, int64_t m, const float *Y)
{
    const quant_traits *tr = quant_traits_of(t);
    const quant_traits *at = quant_traits_of(tr->vec_dot_type);
    const quant_kernels *k = quant_kernels_get();
    size_t row_bytes = quant_row_size(t, cols);
    float *wf = malloc(sizeof(float) * (size_t)cols);
    float *xf = malloc(sizeof(float) * (size_t)cols);
    void *xq = malloc(quant_row_size(tr->vec_dot_type, cols));
    double worst = 0;
    for (int64_t i = 0; i < m; i++) {
        const float *x = X + i * cols;
        if (tr->vec_dot_type == QT_F32) {
            memcpy(xf, x, sizeof(float) * (size_t)cols);
        } else {
            k->act_quant[tr->vec_dot_type](x, xq, cols);
            at->to_float(xq, xf, cols);
        }
        for (int64_t r = 0; r < rows; r++) {
            tr->to_float((const uint8_t *)W + (size_t)r * row_bytes, wf, cols);
            double sum = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                sum += (double)wf[c] * xf[c];
                mag += fabs((double)wf[c] * xf[c]);
            }
            double err = fabs(Y[i * rows + r] - sum) / (mag + 1e-30);
            if (err > worst || isnan(Y[i * rows + r]))
                worst = isnan(Y[i * rows + r]) ? INFINITY : err;
        }
    }
    free(wf);
    free(xf);
    free(xq);
    return worst;
}

/* Products of every computable type against the dequantized reference, for
 * odd shapes, m = 1..5 and pools of 1, 2 and 3 threads; all pool sizes must
 * give the same bits. */
TEST(matmul_matches_reference_all_types)
{
    sw_pool *pools[4] = {NULL};
    for (int p = 1; p <= 3; p++)
        CHECK_EQ(sw_pool_create(p, &pools[p], NULL), 0);
    for (int ti = 0; ti < N_TYPES; ti++) {
        quant_type t = k_types[ti];
        const quant_traits *tr = quant_traits_of(t);
        int64_t cols = tr->blck == 1 ? 67 : tr->blck == 32 ? 32 * 7 : 256 * 3;
        int64_t rows = 37;
        void *W = make_weights(t, rows, cols, 1000 + (uint64_t)ti);
        for (int64_t m = 1; m <= 5; m++) {
            float *X = make_floats(m * cols, 77 + (uint64_t)m);
            float *Y0 = malloc(sizeof(float) * (size_t)(m * rows));
            float *Y = malloc(sizeof(float) * (size_t)(m * rows));
            sw_err e = {0};
            CHECKF(quant_matmul(NULL, t, W, rows, cols, X, m, Y0, &e) == 0, "%s: %s", tr->name,
                   e.msg);
            /* Q8_1 keeps each block's sum d*sum(q) as a half, and Q4_1/Q5_1
             * multiply it by their offset: about 2^-11 relative, per block. */
            double tol = tr->vec_dot_type == QT_Q8_1 ? 2e-3 : 1e-4;
            double err = ref_max_rel_err(t, W, rows, cols, X, m, Y0);
            CHECKF(err < tol, "%s m=%lld: relative error %g", tr->name, (long long)m, err);
            for (int p = 1; p <= 3; p++) {
                memset(Y, 0xff, sizeof(float) * (size_t)(m * rows));
                CHECKF(quant_matmul(pools[p], t, W, rows, cols, X, m, Y, &e) == 0, "%s", e.msg);
                CHECKF(memcmp(Y, Y0, sizeof(float) * (size_t)(m * rows)) == 0,
                       "%s m=%lld: %d threads differ from serial", tr->name, (long long)m, p);
            }
            free(X);
            free(Y0);
            free(Y);
        }
        free(W);
    }
    for (int p = 1; p <= 3; p++)
        sw_pool_destroy(pools[p]);
}

/* Each output is exactly the kernel's dot of its row with the converted
 * activation, and matmul row i equals matvec of X[i]. Shapes large enough for
 * many chunks, several activation blocks and a heap activation buffer. */
TEST(matmul_equals_kernel_dot_and_matvec)
{
    /* Batches of the quantized types go MM_MULTI_ACTS (4) activations to a
     * dot_multi call: 301, 6, 7 and 5 rows leave groups of 1, 2, 3 and 1;
     * 512 columns are 16 blocks of 32, 15 * 32 = 480 leave a tail of 3 */
    static const quant_type types[] = {QT_Q4_K, QT_Q8_0, QT_F16, QT_Q4_1, QT_Q5_K, QT_Q4_K,
                                       QT_Q6_K, QT_Q4_0, QT_Q5_0, QT_IQ4_NL, QT_Q5_1, QT_MXFP4};
    sw_pool *pool = NULL;
    CHECK_EQ(sw_pool_create(3, &pool, NULL), 0);
    const quant_kernels *k = quant_kernels_get();
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        quant_type t = types[ti];
        const quant_traits *tr = quant_traits_of(t);
        int64_t rows = 1003, cols = ti >= 7 ? 480 : 512;
        int64_t m = ti == 0 ? 301 : ti == 4 || ti == 8 ? 6 : ti == 6 || ti == 7 ? 5 : 7;
        void *W = make_weights(t, rows, cols, 5 + ti);
        float *X = make_floats(m * cols, 9 + ti);
        float *Y = malloc(sizeof(float) * (size_t)(m * rows));
        float *y = malloc(sizeof(float) * (size_t)rows);
        void *xq = malloc(quant_row_size(tr->vec_dot_type, cols));
        float *Y0 = malloc(sizeof(float) * (size_t)(m * rows));
        sw_err e = {0};
        CHECKF(quant_matmul(NULL, t, W, rows, cols, X, m, Y0, &e) == 0, "%s", e.msg);
        memset(Y, 0xff, sizeof(float) * (size_t)(m * rows)); /* NaN: catches a skipped chunk */
        CHECKF(quant_matmul(pool, t, W, rows, cols, X, m, Y, &e) == 0, "%s", e.msg);
        CHECKF(memcmp(Y, Y0, sizeof(float) * (size_t)(m * rows)) == 0,
               "%s: 3 threads differ from serial", tr->name);
        free(Y0);
        size_t row_bytes = quant_row_size(t, cols);
        for (int64_t i = 0; i < m; i++) {
            const void *a = X + i * cols;
            if (tr->vec_dot_type != QT_F32) {
                k->act_quant[tr->vec_dot_type](X + i * cols, xq, cols);
                a = xq;
            }
            CHECK_EQ(quant_matvec(pool, t, W, rows, cols, X + i * cols, y, &e), 0);
            CHECKF(memcmp(y, Y + i * rows, sizeof(float) * (size_t)rows) == 0,
                   "%s: matmul row %lld differs from matvec", tr->name, (long long)i);
            for (int64_t r = 0; r < rows; r += 1 + r % 7) {
                float s;
                k->vec_dot[t](cols, &s, (const uint8_t *)W + (size_t)r * row_bytes, a);
                CHECKF(memcmp(&s, &Y[i * rows + r], sizeof s) == 0,
                       "%s: Y[%lld][%lld] = %g, kernel says %g", tr->name, (long long)i,
                       (long long)r, Y[i * rows + r], s);
            }
        }
        free(W);
        free(X);
        free(Y);
        free(y);
        free(xq);
    }
    sw_pool_destroy(pool);
}

TEST(matmul_rejects_bad_arguments)
{
    float x[256] = {0}, y[4];
    uint8_t w[4 * 144] = {0};
    sw_err e = {0};
    CHECK_EQ(quant_matvec(NULL, QT_Q4_K, w, 4, 100, x, y, &e), SW_EINVAL);
    CHECK_HAS(e.msg, "Q4_K");
    CHECK_EQ(quant_matvec(NULL, QT_IQ2_XXS, w, 1, 256, x, y, &e), SW_EUNSUPPORTED);
    CHECK_HAS(e.msg, "IQ2_XXS");
    CHECK_EQ(quant_matvec(NULL, (quant_type)5, w, 1, 256, x, y, &e), SW_EINVAL);
    CHECK_EQ(quant_matvec(NULL, QT_Q4_K, w, -1, 256, x, y, &e), SW_EINVAL);
    /* empty shapes are fine and touch nothing */
    CHECK_EQ(quant_matvec(NULL, QT_Q4_K, w, 0, 256, x, NULL, &e), 0);
    CHECK_EQ(quant_matmul(NULL, QT_Q4_K, w, 4, 256, x, 0, NULL, &e), 0);
}

/* A 1-row and a 1-block matrix through a pool: no chunk arithmetic slips. */
TEST(matmul_tiny_shapes_threaded)
{
    sw_pool *pool = NULL;
    CHECK_EQ(sw_pool_create(2, &pool, NULL), 0);
    for (int64_t rows = 1; rows <= 40; rows += 13) {
        void *W = make_weights(QT_Q8_0, rows, 32, (uint64_t)rows);
        float *X = make_floats(3 * 32, 3);
        float Y[3 * 40], Y0[3 * 40];
        CHECK_EQ(quant_matmul(NULL, QT_Q8_0, W, rows, 32, X, 3, Y0, NULL), 0);
        CHECK_EQ(quant_matmul(pool, QT_Q8_0, W, rows, 32, X, 3, Y, NULL), 0);
        CHECK(memcmp(Y, Y0, sizeof(float) * (size_t)(3 * rows)) == 0);
        CHECK(ref_max_rel_err(QT_Q8_0, W, rows, 32, X, 3, Y) < 1e-4);
        free(W);
        free(X);
    }
    sw_pool_destroy(pool);
}

/* Wide rows: the activation vector is converted in slices over the pool;
 * the slices must give the same bytes as converting it whole, so every
 * output still equals the kernel's dot with the whole-row conversion. */
TEST(matvec_wide_rows_sliced_activation)
{
    static const quant_type types[] = {QT_Q4_K, QT_Q8_0, QT_Q4_1};
    sw_pool *pool = NULL;
    CHECK_EQ(sw_pool_create(3, &pool, NULL), 0);
    const quant_kernels *k = quant_kernels_get();
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        quant_type t = types[ti];
        const quant_traits *tr = quant_traits_of(t);
        int64_t rows = 40, cols = 256 * 67; /* >= ACT_PARALLEL_MIN; blocks split unevenly */
        void *W = make_weights(t, rows, cols, 31 + ti);
        float *x = make_floats(cols, 41 + ti);
        float *y = malloc(sizeof(float) * (size_t)rows);
        void *xq = malloc(quant_row_size(tr->vec_dot_type, cols));
        k->act_quant[tr->vec_dot_type](x, xq, cols);
        sw_err e = {0};
        CHECKF(quant_matvec(pool, t, W, rows, cols, x, y, &e) == 0, "%s", e.msg);
        size_t row_bytes = quant_row_size(t, cols);
        for (int64_t r = 0; r < rows; r++) {
            float s;
            k->vec_dot[t](cols, &s, (const uint8_t *)W + (size_t)r * row_bytes, xq);
            CHECKF(memcmp(&s, &y[r], sizeof s) == 0, "%s: y[%lld] = %g, kernel says %g",
                   tr->name, (long long)r, y[r], s);
        }
        free(W);
        free(x);
        free(y);
        free(xq);
    }
    sw_pool_destroy(pool);
}

/* quant_matvec_multi: items of mixed types and shapes, some sharing an
 * activation vector, each bit-identical to its own quant_matvec. */
TEST(matvec_multi_equals_matvec)
{
    sw_pool *pool = NULL;
    CHECK_EQ(sw_pool_create(2, &pool, NULL), 0);
    /* Q4_K and Q5_K items with the same or another activation of the same
     * length: a thread's prepared activation (quant_act_prep) must be
     * rebuilt for exactly the items whose activation differs */
    enum { N = 8 };
    static const quant_type types[N] = {QT_Q4_K, QT_Q4_K, QT_Q6_K, QT_Q8_0,
                                        QT_F16,  QT_Q4_K, QT_Q5_K, QT_Q4_K};
    static const int64_t rows[N] = {2048, 1003, 77, 300, 40, 5, 600, 700};
    static const int64_t cols[N] = {768, 768, 512, 768, 768, 256, 768, 768};
    static const int xsel[N] = {0, 0, 1, 0, 0, 2, 3, 0}; /* which activation vector */
    float *xs[4] = {make_floats(768, 1), make_floats(512, 2), make_floats(256, 3),
                    make_floats(768, 4)};
    quant_mv items[N];
    float *want[N];
    for (int i = 0; i < N; i++) {
        items[i] = (quant_mv){types[i], make_weights(types[i], rows[i], cols[i], 40 + i),
                              rows[i], cols[i], xs[xsel[i]],
                              malloc(sizeof(float) * (size_t)rows[i])};
        memset(items[i].y, 0xff, sizeof(float) * (size_t)rows[i]); /* NaN: a skipped chunk */
        want[i] = malloc(sizeof(float) * (size_t)rows[i]);
    }
    sw_err e = {0};
    for (int i = 0; i < N; i++)
        CHECKF(quant_matvec(NULL, types[i], items[i].W, rows[i], cols[i], items[i].x, want[i],
                            &e) == 0, "%s", e.msg);
    for (int pass = 0; pass < 2; pass++) {
        CHECKF(quant_matvec_multi(pass ? pool : NULL, items, N, &e) == 0, "%s", e.msg);
        for (int i = 0; i < N; i++)
            CHECKF(memcmp(items[i].y, want[i], sizeof(float) * (size_t)rows[i]) == 0,
                   "item %d (%s) differs from quant_matvec, pass %d", i, quant_name(types[i]),
                   pass);
    }
    CHECK_EQ(quant_matvec_multi(pool, items, 0, &e), 0);
    quant_mv bad = items[0];
    bad.cols = 100;
    CHECK_EQ(quant_matvec_multi(pool, &bad, 1, &e), SW_EINVAL);
    for (int i = 0; i < N; i++) {
        free((void *)items[i].W);
        free(items[i].y);
        free(want[i]);
    }
    for (int i = 0; i < 4; i++)
        free(xs[i]);
    sw_pool_destroy(pool);
}

/* y[r] == the kernel's dot of row r with x converted whole, for every r. */
static bool rows_equal_kernel(quant_type t, const void *W, int64_t rows, int64_t cols,
                              const float *x, const float *y)
{
    const quant_traits *tr = quant_traits_of(t);
    const quant_kernels *k = quant_kernels_get();
    const void *a = x;
    void *xq = NULL;
    if (tr->vec_dot_type != QT_F32) {
        a = xq = malloc(quant_row_size(tr->vec_dot_type, cols));
        k->act_quant[tr->vec_dot_type](x, xq, cols);
    }
    size_t row_bytes = quant_row_size(t, cols);
    bool same = true;
    for (int64_t r = 0; r < rows && same; r++) {
        float s;
        k->vec_dot[t](cols, &s, (const uint8_t *)W + (size_t)r * row_bytes, a);
        same = memcmp(&s, &y[r], sizeof s) == 0;
    }
    free(xq);
    return same;
}

/*
 * Two streams per thread (quant_matvec_set_streams): every row is still
 * computed once, by its kernel, whatever the thread count. Row counts put
 * the chunk count on both sides of where pairing starts (4 chunks per
 * thread), leave short last chunks and odd streams; Q4_K's rows are
 * prepared, Q6_K's and Q8_0's plain, F16's float; matvec_multi mixes them
 * so that a stream crosses from one matrix to the next.
 */
TEST(matvec_two_streams_equal_one)
{
    static const quant_type types[] = {QT_Q4_K, QT_Q6_K, QT_Q8_0, QT_F16};
    static const int64_t rows[] = {1, 127, 385, 511, 512, 1000, 4099};
    const int64_t cols = 256;
    sw_pool *pools[3] = {NULL, NULL, NULL};
    CHECK_EQ(sw_pool_create(2, &pools[1], NULL), 0);
    CHECK_EQ(sw_pool_create(3, &pools[2], NULL), 0);
    float *x = make_floats(cols, 77);
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        quant_type t = types[ti];
        for (size_t ri = 0; ri < sizeof rows / sizeof *rows; ri++) {
            int64_t n = rows[ri];
            void *W = make_weights(t, n, cols, 100 + 10 * ti + ri);
            float *y = malloc(sizeof(float) * (size_t)n);
            for (int mode = QUANT_STREAMS_ONE; mode <= QUANT_STREAMS_TWO; mode++)
                for (int pi = 0; pi < 3; pi++) {
                    quant_matvec_set_streams((quant_streams)mode);
                    memset(y, 0xff, sizeof(float) * (size_t)n); /* NaN: a skipped row */
                    sw_err e = {0};
                    CHECKF(quant_matvec(pools[pi], t, W, n, cols, x, y, &e) == 0, "%s", e.msg);
                    CHECKF(rows_equal_kernel(t, W, n, cols, x, y),
                           "%s, %lld rows, %d stream(s), pool %d: a row differs from its kernel",
                           quant_name(t), (long long)n, mode, pi);
                }
            free(W);
            free(y);
        }
    }
    enum { N = 6 };
    quant_mv items[N];
    for (int i = 0; i < N; i++) {
        quant_type t = types[i % 4];
        int64_t n = rows[2 + i % 5];
        items[i] = (quant_mv){t, make_weights(t, n, cols, 300 + i), n, cols, x,
                              malloc(sizeof(float) * (size_t)n)};
    }
    for (int pi = 0; pi < 3; pi++) {
        quant_matvec_set_streams(QUANT_STREAMS_TWO);
        for (int i = 0; i < N; i++)
            memset(items[i].y, 0xff, sizeof(float) * (size_t)items[i].rows);
        sw_err e = {0};
        CHECKF(quant_matvec_multi(pools[pi], items, N, &e) == 0, "%s", e.msg);
        for (int i = 0; i < N; i++)
            CHECKF(rows_equal_kernel(items[i].wtype, items[i].W, items[i].rows, cols, x,
                                     items[i].y),
                   "matvec_multi item %d (%s), pool %d: a row differs from its kernel", i,
                   quant_name(items[i].wtype), pi);
    }
    quant_matvec_set_streams(QUANT_STREAMS_AUTO);
    for (int i = 0; i < N; i++) {
        free((void *)items[i].W);
        free(items[i].y);
    }
    free(x);
    sw_pool_destroy(pools[1]);
    sw_pool_destroy(pools[2]);
}

/* A kernel's prepared activations give its rows kernel's results bit for
 * bit, at every length it prepares (awkward ones included). */
TEST(act_prep_equals_vec_dot_rows)
{
    const quant_kernels *k = quant_kernels_get();
    static const int64_t lens[] = {256, 512, 768, 1280, 4096, 11008};
    int seen = 0;
    for (int t = 0; t < QT_COUNT; t++) {
        const quant_act_prep *ap = &k->act_prep[t];
        if (!ap->prep)
            continue;
        const quant_traits *tr = quant_traits_of(t);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t n = lens[li], nr = 13;
            if (n > ap->max_n || n % tr->blck)
                continue;
            seen++;
            uint8_t *W = make_weights((quant_type)t, nr, n, 90 + (uint64_t)li);
            float *x = make_floats(n, 7 + (uint64_t)li);
            size_t a_bytes = quant_row_size(tr->vec_dot_type, n);
            void *A = malloc(a_bytes), *buf = aligned_alloc(64, (ap->bytes + 63) / 64 * 64);
            float want[13], got[13];
            k->act_quant[tr->vec_dot_type](x, A, n);
            quant_vec_dot_rows(k, (quant_type)t, n, (int)nr, want, W, quant_row_size(t, n), A);
            ap->prep(n, A, buf);
            ap->dot_rows(n, (int)nr, got, W, quant_row_size(t, n), buf);
            CHECKF(memcmp(want, got, sizeof want) == 0, "%s n=%lld", tr->name, (long long)n);
            free(W);
            free(x);
            free(A);
            free(buf);
        }
    }
    if (quant_kernels_get()->isa == QUANT_ISA_AVX512)
        CHECK(seen > 0); /* Q4_K and Q5_K have one there */
}
