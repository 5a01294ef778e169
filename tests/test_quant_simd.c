/*
 * test_quant_simd.c — every SIMD dot product against the scalar reference.
 *
 * For each weight type with a kernel and each ISA this CPU runs, random
 * weight rows (random bytes, with the float scale fields replaced by
 * realistic finite halves: random bytes are valid quants for every type, but
 * a NaN or 65504 scale would make any comparison meaningless) meet
 * activations quantized by the reference act_quant from random normals. Row
 * lengths are 1, 2, 3, 7, 33, 64, 129 and 1031 blocks (odd and even counts
 * reach every tail path); buffers sit both 64-byte aligned and at 7 times
 * the blocks' own alignment (the most quant.h promises).
 *
 * The SIMD activation quantizers must reproduce the reference's bytes
 * exactly, on random data and on rounding ties, zeros and sign ties.
 *
 * Tolerance: the integer part of every kernel is exact, so SIMD and
 * reference differ only in the order of float additions (and FMA vs.
 * mul + add). |simd - ref| must be <= 1e-6 * sum |w_i * a_i|, with w and a
 * dequantized by to_float; observed differences are 1e-8 to 1e-7 of that
 * sum, while a single wrong sub-block or dropped block is far above it.
 */
#include "test.h"

#include "quant/quant.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIMD_TOL 1e-6

static const quant_type k_weight_types[] = {
    QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,   QT_Q5_1,   QT_Q8_0,
    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS, QT_MXFP4,
};

static const int64_t k_row_blocks[] = {1, 2, 3, 7, 33, 64, 129, 1031};

/* --- random data ------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static double rng_unit(rng *r) /* (0, 1) */
{
    return ((double)(rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

static float rng_normal(rng *r)
{
    return (float)(sqrt(-2.0 * log(rng_unit(r))) * cos(6.283185307179586 * rng_unit(r)));
}

/* A scale as quantizers produce them: 2^-10 .. 2^-4 in magnitude. */
static ggml_half rng_scale(rng *r, bool signed_)
{
    float v = ldexpf(1.0f + (float)rng_unit(r), -4 - (int)(rng_next(r) % 7));
    if (signed_ && (rng_next(r) & 1))
        v = -v;
    return quant_f32_to_f16(v);
}

/* Replaces the float fields of nb random blocks (or elements) of type t. */
static void sanitize_row(quant_type t, void *row, int64_t nb, rng *r)
{
    for (int64_t i = 0; i < nb; i++) {
        switch (t) {
        case QT_F32: ((float *)row)[i] = rng_normal(r); break;
        case QT_F16: ((uint16_t *)row)[i] = quant_f32_to_f16(rng_normal(r)); break;
        case QT_BF16: ((uint16_t *)row)[i] = quant_f32_to_bf16(rng_normal(r)); break;
        case QT_Q4_0: ((block_q4_0 *)row)[i].d = rng_scale(r, true); break;
        case QT_Q5_0: ((block_q5_0 *)row)[i].d = rng_scale(r, true); break;
        case QT_Q8_0: ((block_q8_0 *)row)[i].d = rng_scale(r, true); break;
        case QT_IQ4_NL: ((block_iq4_nl *)row)[i].d = rng_scale(r, true); break;
        case QT_Q4_1:
            ((block_q4_1 *)row)[i].d = rng_scale(r, true);
            ((block_q4_1 *)row)[i].m = rng_scale(r, true);
            break;
        case QT_Q5_1:
            ((block_q5_1 *)row)[i].d = rng_scale(r, true);
            ((block_q5_1 *)row)[i].m = rng_scale(r, true);
            break;
        case QT_MXFP4: ((block_mxfp4 *)row)[i].e = (uint8_t)(118 + rng_next(r) % 13); break;
        case QT_Q2_K:
            ((block_q2_K *)row)[i].d = rng_scale(r, true);
            ((block_q2_K *)row)[i].dmin = rng_scale(r, false);
            break;
        case QT_Q3_K: ((block_q3_K *)row)[i].d = rng_scale(r, true); break;
        case QT_Q4_K:
            ((block_q4_K *)row)[i].d = rng_scale(r, true);
            ((block_q4_K *)row)[i].dmin = rng_scale(r, false);
            break;
        case QT_Q5_K:
            ((block_q5_K *)row)[i].d = rng_scale(r, true);
            ((block_q5_K *)row)[i].dmin = rng_scale(r, false);
            break;
        case QT_Q6_K: ((block_q6_K *)row)[i].d = rng_scale(r, true); break;
        case QT_IQ4_XS: ((block_iq4_xs *)row)[i].d = rng_scale(r, true); break;
        default: break;
        }
    }
}

/* Alignment the layout guarantees for a row of type t (quant.h: nothing more). */
static size_t type_align(quant_type t)
{
    switch (t) {
    case QT_F32: return _Alignof(float);
    case QT_Q8_K: return _Alignof(block_q8_K);
    case QT_MXFP4: return _Alignof(block_mxfp4);
    default: return _Alignof(ggml_half);
    }
}

/* --- the comparison ---------------------------------------------------- */

typedef struct row_case {
    quant_type t, at;
    int64_t n;
    void *w, *a;  /* at their (unaligned) offsets */
    double scale; /* sum |w_i * a_i| */
} row_case;

/* Builds weights and activations for n elements; buffers go to *wbuf, *abuf. */
static bool row_case_make(row_case *c, const quant_kernels *ref, quant_type t, int64_t n,
                          size_t skew, rng *r, void **wbuf, void **abuf)
{
    const quant_traits *tr = quant_traits_of(t), *atr = quant_traits_of(tr->vec_dot_type);
    const size_t wsize = quant_row_size(t, n), asize = quant_row_size(tr->vec_dot_type, n);
    *wbuf = aligned_alloc(64, (wsize + 64 + 63) / 64 * 64);
    *abuf = aligned_alloc(64, (asize + 64 + 63) / 64 * 64);
    float *xa = malloc((size_t)n * sizeof *xa), *wf = malloc((size_t)n * sizeof *wf);
    float *af = malloc((size_t)n * sizeof *af);
    bool ok = *wbuf && *abuf && xa && wf && af;
    if (ok) {
        c->t = t;
        c->at = tr->vec_dot_type;
        c->n = n;
        c->w = (uint8_t *)*wbuf + skew * type_align(t);
        c->a = (uint8_t *)*abuf + skew * type_align(c->at);
        for (size_t i = 0; i < wsize; i++)
            ((uint8_t *)c->w)[i] = (uint8_t)rng_next(r);
        sanitize_row(t, c->w, n / tr->blck, r);
        for (int64_t i = 0; i < n; i++)
            xa[i] = rng_normal(r);
        if (c->at == QT_F32)
            memcpy(c->a, xa, asize);
        else
            ref->act_quant[c->at](xa, c->a, n);
        tr->to_float(c->w, wf, n);
        atr->to_float(c->a, af, n);
        c->scale = 0.0;
        for (int64_t i = 0; i < n; i++)
            c->scale += fabs((double)wf[i] * (double)af[i]);
    }
    free(xa);
    free(wf);
    free(af);
    return ok;
}

/* Runs every type at every size for one ISA; returns false on a mismatch
 * (already reported). */
static bool check_isa(quant_isa isa)
{
    quant_kernels ref, simd;
    if (quant_kernels_for(QUANT_ISA_REF, &ref) != 0 || quant_kernels_for(isa, &simd) != 0) {
        test_fail(__FILE__, __LINE__, "no kernel table for %s", quant_isa_name(isa));
        return false;
    }
    rng r = {0x9E3779B97F4A7C15ull + (uint64_t)isa};
    int compared = 0;
    for (size_t ti = 0; ti < sizeof k_weight_types / sizeof *k_weight_types; ti++) {
        const quant_type t = k_weight_types[ti];
        const quant_traits *tr = quant_traits_of(t);
        if (!simd.vec_dot[t] || !ref.vec_dot[t] || !tr->to_float)
            continue;
        if (tr->vec_dot_type != QT_F32 && !ref.act_quant[tr->vec_dot_type])
            continue;
        for (size_t si = 0; si < sizeof k_row_blocks / sizeof *k_row_blocks; si++) {
            for (size_t skew = 0; skew < 2; skew++) {
                const int64_t n = k_row_blocks[si] * tr->blck;
                row_case c;
                void *wbuf = NULL, *abuf = NULL;
                if (!row_case_make(&c, &ref, t, n, skew ? 7 : 0, &r, &wbuf, &abuf)) {
                    free(wbuf);
                    free(abuf);
                    test_fail(__FILE__, __LINE__, "out of memory");
                    return false;
                }
                float want = NAN, got = NAN;
                ref.vec_dot[t](n, &want, c.w, c.a);
                simd.vec_dot[t](n, &got, c.w, c.a);
                free(wbuf);
                free(abuf);
                const double err = fabs((double)got - (double)want);
                if (!isfinite(got) || !(err <= SIMD_TOL * c.scale)) {
                    test_fail(__FILE__, __LINE__,
                              "%s %s n=%lld skew=%zu: simd %.9g ref %.9g (|diff| %.3g > %.3g)",
                              quant_isa_name(isa), tr->name, (long long)n, skew, got, want, err,
                              SIMD_TOL * c.scale);
                    return false;
                }
                compared++;
            }
        }
    }
    if (compared == 0) {
        test_fail(__FILE__, __LINE__, "%s: nothing compared", quant_isa_name(isa));
        return false;
    }
    return true;
}

TEST(quant_simd_avx2_matches_reference)
{
    if (quant_cpu_isa() < QUANT_ISA_AVX2) {
        test_skip("CPU lacks AVX2/FMA/F16C");
        return;
    }
    CHECK(check_isa(QUANT_ISA_AVX2));
}

TEST(quant_simd_avx2vnni_matches_reference)
{
    if (!quant_isa_supported(QUANT_ISA_AVX2_VNNI)) {
        test_skip("CPU lacks AVX2 or AVX-VNNI");
        return;
    }
    CHECK(check_isa(QUANT_ISA_AVX2_VNNI));
}

/* quant_avxvnni.c: its 32-element block kernels are the AVX2 ones with one
 * vpdpbusd for vpmaddubsw + vpmaddwd, the same int32 lanes, so the same
 * bits; and they are its own copies, not the AVX2 table's. */
TEST(quant_simd_avx2vnni_blocks_equal_avx2)
{
    static const quant_type b32[] = {QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                                     QT_Q8_0, QT_IQ4_NL, QT_MXFP4};
    quant_kernels ref, avx2, vnni;
    if (!quant_isa_supported(QUANT_ISA_AVX2_VNNI)) {
        test_skip("CPU lacks AVX2 or AVX-VNNI");
        return;
    }
    CHECK(quant_kernels_for(QUANT_ISA_REF, &ref) == 0);
    CHECK(quant_kernels_for(QUANT_ISA_AVX2, &avx2) == 0);
    CHECK(quant_kernels_for(QUANT_ISA_AVX2_VNNI, &vnni) == 0);
    rng r = {0x5851F42D4C957F2Dull};
    for (size_t ti = 0; ti < sizeof b32 / sizeof *b32; ti++) {
        const quant_type t = b32[ti];
        CHECKF(vnni.vec_dot[t] != avx2.vec_dot[t], "%s: the AVX2 kernel, not a VNNI copy",
               quant_name(t));
        for (size_t si = 0; si < sizeof k_row_blocks / sizeof *k_row_blocks; si++) {
            const int64_t n = k_row_blocks[si] * quant_traits_of(t)->blck;
            row_case c;
            void *wbuf = NULL, *abuf = NULL;
            if (!row_case_make(&c, &ref, t, n, 3, &r, &wbuf, &abuf)) {
                free(wbuf);
                free(abuf);
                CHECKF(0, "out of memory");
                return;
            }
            float want = NAN, got = NAN;
            avx2.vec_dot[t](n, &want, c.w, c.a);
            vnni.vec_dot[t](n, &got, c.w, c.a);
            free(wbuf);
            free(abuf);
            CHECKF(memcmp(&want, &got, sizeof got) == 0, "%s n=%lld: avx2vnni %.9g, avx2 %.9g",
                   quant_name(t), (long long)n, got, want);
        }
    }
}

TEST(quant_simd_avx512_matches_reference)
{
    if (quant_cpu_isa() < QUANT_ISA_AVX512) {
        test_skip("CPU lacks AVX-512 F/BW/VL/DQ/VNNI");
        return;
    }
    CHECK(check_isa(QUANT_ISA_AVX512));
}

/*
 * Multi-row kernels: quant_vec_dot_rows over nr rows must give, bit for
 * bit, what the same table's vec_dot gives row by row, for awkward nr (the
 * 4-row groups and their 1..3 tails), short and long rows (the kernels walk
 * long rows one at a time; the AVX-512 Q4_K/Q5_K kernels prepare the
 * activation for up to 128 super-blocks at once, Q2_K and Q3_K for 112, and longer
 * rows in segments: 131 blocks crosses both), and unaligned data.
 */
static const int k_rows_nr[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13};
static const int64_t k_rows_blocks[] = {1, 2, 3, 5, 33, 131};

static bool check_rows(quant_isa isa)
{
    quant_kernels ref, k;
    if (quant_kernels_for(QUANT_ISA_REF, &ref) != 0 || quant_kernels_for(isa, &k) != 0) {
        test_fail(__FILE__, __LINE__, "no kernel table for %s", quant_isa_name(isa));
        return false;
    }
    rng r = {0xD1B54A32D192ED03ull + (uint64_t)isa};
    for (size_t ti = 0; ti < sizeof k_weight_types / sizeof *k_weight_types; ti++) {
        const quant_type t = k_weight_types[ti];
        const quant_traits *tr = quant_traits_of(t);
        if (!k.vec_dot[t] || !tr->to_float)
            continue;
        if (tr->vec_dot_type != QT_F32 && !ref.act_quant[tr->vec_dot_type])
            continue;
        for (size_t bi = 0; bi < sizeof k_rows_blocks / sizeof *k_rows_blocks; bi++) {
            for (size_t ni = 0; ni < sizeof k_rows_nr / sizeof *k_rows_nr; ni++) {
                const int nr = k_rows_nr[ni];
                const int64_t n = k_rows_blocks[bi] * tr->blck;
                const size_t skew = (bi + ni) % 2 ? 7 : 0;
                /* nr rows of n are one row of nr * n; the activation is the
                 * first n elements of that case's (blockwise) activations */
                row_case c;
                void *wbuf = NULL, *abuf = NULL;
                if (!row_case_make(&c, &ref, t, nr * n, skew, &r, &wbuf, &abuf)) {
                    free(wbuf);
                    free(abuf);
                    test_fail(__FILE__, __LINE__, "out of memory");
                    return false;
                }
                const size_t stride = quant_row_size(t, n);
                float want[16], got[16];
                for (int i = 0; i < nr; i++) {
                    want[i] = NAN;
                    k.vec_dot[t](n, &want[i], (const uint8_t *)c.w + (size_t)i * stride, c.a);
                    got[i] = NAN;
                }
                quant_vec_dot_rows(&k, t, n, nr, got, c.w, stride, c.a);
                free(wbuf);
                free(abuf);
                for (int i = 0; i < nr; i++) {
                    if (memcmp(&want[i], &got[i], sizeof got[i]) != 0) {
                        test_fail(__FILE__, __LINE__,
                                  "%s %s n=%lld nr=%d row %d: rows kernel %.9g, vec_dot %.9g (%s)",
                                  quant_isa_name(isa), tr->name, (long long)n, nr, i, got[i],
                                  want[i], k.vec_dot_rows[t] ? "multi-row kernel" : "fallback");
                        return false;
                    }
                }
            }
        }
    }
    return true;
}

TEST(quant_simd_rows_match_vec_dot)
{
    for (int isa = QUANT_ISA_REF; isa <= (int)quant_cpu_isa(); isa++)
        if (quant_isa_supported((quant_isa)isa))
            CHECK(check_rows((quant_isa)isa));
}

/*
 * Batched kernels (quant.h: dot_multi): nr weight rows against na
 * activations (prepared where the kernel prepares) must give each (row,
 * activation) the table's vec_dot bits, for every table this CPU runs, at
 * lengths with tails and for na across the kernels' groups of four.
 */
static bool check_multi(quant_isa isa, quant_type t, int64_t n, int na, rng *r)
{
    enum { NR = 3 };
    quant_kernels ref, k;
    if (quant_kernels_for(QUANT_ISA_REF, &ref) != 0 || quant_kernels_for(isa, &k) != 0)
        return false;
    const quant_act_prep *ap = &k.act_prep[t];
    const quant_traits *tr = quant_traits_of(t);
    const size_t wsize = quant_row_size(t, n), asize = quant_row_size(tr->vec_dot_type, n);
    const size_t ystride = ap->prep ? (ap->bytes + 63) / 64 * 64 : asize;
    uint8_t *W = malloc(NR * wsize), *A = malloc((size_t)na * asize);
    uint8_t *Y = aligned_alloc(64, ((size_t)na * ystride + 63) / 64 * 64);
    float *got = malloc(sizeof(float) * NR * (size_t)na);
    bool ok = W && A && Y && got;
    for (int i = 0; ok && i < (NR > na ? NR : na); i++) {
        row_case c;
        void *wbuf = NULL, *abuf = NULL;
        ok = row_case_make(&c, &ref, t, n, 0, r, &wbuf, &abuf);
        if (ok && i < NR)
            memcpy(W + (size_t)i * wsize, c.w, wsize);
        if (ok && i < na)
            memcpy(A + (size_t)i * asize, c.a, asize);
        free(wbuf);
        free(abuf);
    }
    for (int a = 0; ok && a < na; a++) {
        if (ap->prep)
            ap->prep(n, A + (size_t)a * asize, Y + (size_t)a * ystride);
        else
            memcpy(Y + (size_t)a * ystride, A + (size_t)a * asize, asize);
    }
    if (ok)
        ap->dot_multi(n, NR, na, got, NR, W, wsize, Y, ystride);
    for (int a = 0; ok && a < na; a++)
        for (int row = 0; ok && row < NR; row++) {
            float want;
            k.vec_dot[t](n, &want, W + (size_t)row * wsize, A + (size_t)a * asize);
            ok = memcmp(&want, &got[a * NR + row], sizeof want) == 0;
            if (!ok)
                test_fail(__FILE__, __LINE__, "%s %s n=%lld na=%d: row %d activation %d: %.9g, vec_dot %.9g",
                          quant_isa_name(isa), tr->name, (long long)n, na, row, a,
                          got[a * NR + row], want);
        }
    free(W);
    free(A);
    free(Y);
    free(got);
    return ok;
}

TEST(quant_simd_dot_multi_equals_vec_dot)
{
    static const int64_t blocks[] = {1, 3, 8, 13};
    static const int nas[] = {1, 2, 3, 4, 5, 7, 9};
    rng r = {0x2545F4914F6CDD1Dull};
    int seen = 0;
    for (int isa = QUANT_ISA_REF; isa <= (int)quant_cpu_isa(); isa++) {
        quant_kernels k;
        if (!quant_isa_supported((quant_isa)isa) || quant_kernels_for((quant_isa)isa, &k) != 0)
            continue;
        for (int t = 0; t < QT_COUNT; t++) {
            const quant_act_prep *ap = &k.act_prep[t];
            if (!ap->dot_multi)
                continue;
            for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++) {
                const int64_t n = blocks[bi] * quant_traits_of(t)->blck;
                if (ap->prep && n > ap->max_n)
                    continue;
                for (size_t ni = 0; ni < sizeof nas / sizeof *nas; ni++) {
                    seen++;
                    CHECK(check_multi((quant_isa)isa, (quant_type)t, n, nas[ni], &r));
                }
            }
        }
    }
    if (quant_cpu_isa() == QUANT_ISA_AVX512)
        CHECK(seen > 0);
}

/* The types that have multi-row kernels keep them in the selected table
 * (an installer replacing vec_dot without its rows kernel drops it). */
TEST(quant_simd_rows_kernels_installed)
{
    quant_kernels k;
    if (quant_cpu_isa() < QUANT_ISA_AVX512) {
        test_skip("CPU lacks AVX-512 F/BW/VL/DQ/VNNI");
        return;
    }
    CHECK(quant_kernels_for(QUANT_ISA_AVX512, &k) == 0);
    const quant_type with[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof with / sizeof *with; i++)
        CHECKF(k.vec_dot_rows[with[i]] != NULL, "avx512: %s has no rows kernel", quant_name(with[i]));
}

/* Each SIMD table really replaces the reference for the priority types
 * (otherwise the comparison above would compare the reference with itself). */
TEST(quant_simd_tables_install_kernels)
{
    quant_kernels ref, simd;
    CHECK(quant_kernels_for(QUANT_ISA_REF, &ref) == 0);
    for (int isa = QUANT_ISA_AVX2; isa <= (int)quant_cpu_isa(); isa++) {
        if (!quant_isa_supported((quant_isa)isa))
            continue;
        CHECK(quant_kernels_for((quant_isa)isa, &simd) == 0);
        CHECK_EQ((int)simd.isa, isa);
        for (size_t ti = 0; ti < sizeof k_weight_types / sizeof *k_weight_types; ti++) {
            const quant_type t = k_weight_types[ti];
            CHECKF(simd.vec_dot[t] && simd.vec_dot[t] != ref.vec_dot[t], "%s: %s kernel missing",
                   quant_isa_name((quant_isa)isa), quant_name(t));
        }
    }
}

/* --- activation quantizers --------------------------------------------- */

/*
 * Fills n floats with one of several patterns that stress the rounding and
 * the choice of the scale: normals at three magnitudes, exact ties after
 * scaling (a block whose largest value is 127 has scale 1, so k + 0.5 sits
 * on a tie), zeros and negative zeros, a largest magnitude present with both
 * signs, and values far below the block's maximum.
 */
static void fill_activations(float *x, int64_t n, int pattern, rng *r)
{
    for (int64_t i = 0; i < n; i++) {
        switch (pattern) {
        case 0: x[i] = rng_normal(r); break;
        case 1: x[i] = 1e-3f * rng_normal(r); break;
        case 2: x[i] = 1e3f * rng_normal(r); break;
        case 3: x[i] = (float)((int)(rng_next(r) % 253) - 126) + 0.5f; break;
        case 4: x[i] = (rng_next(r) & 1) ? 0.0f : -0.0f; break;
        case 5: x[i] = 1e-6f * rng_normal(r); break;
        }
    }
    if (pattern == 3)
        for (int64_t i = 0; i < n; i += 32)
            x[i + 5] = 127.0f; /* every 32-element block has scale exactly 1 */
    if (pattern == 5)
        for (int64_t i = 0; i < n; i += 32) { /* both signs of the maximum */
            x[i + 3] = (i / 32) % 2 ? 2.0f : -2.0f;
            x[i + 17] = -x[i + 3];
        }
}

/* Compares one ISA's quantizers with the reference on every pattern;
 * x holds 7 * QK_K floats, want and got room for 7 Q8_K blocks + 64. */
static bool check_act_quant(quant_isa isa, float *x, uint8_t *want, uint8_t *got)
{
    static const quant_type acts[] = {QT_Q8_0, QT_Q8_1, QT_Q8_K};
    quant_kernels ref, simd;
    if (quant_kernels_for(QUANT_ISA_REF, &ref) != 0 || quant_kernels_for(isa, &simd) != 0) {
        test_fail(__FILE__, __LINE__, "no kernel table for %s", quant_isa_name(isa));
        return false;
    }
    rng r = {12345};
    const int64_t n = 7 * QK_K;
    for (size_t ai = 0; ai < sizeof acts / sizeof *acts; ai++) {
        const quant_type at = acts[ai];
        if (!simd.act_quant[at] || simd.act_quant[at] == ref.act_quant[at]) {
            test_fail(__FILE__, __LINE__, "%s: no SIMD %s quantizer", quant_isa_name(isa), quant_name(at));
            return false;
        }
        for (int pattern = 0; pattern < 6; pattern++) {
            const size_t size = quant_row_size(at, n), skew = type_align(at);
            fill_activations(x, n, pattern, &r);
            memset(want, 0xAA, size + skew);
            memset(got, 0x55, size + skew);
            ref.act_quant[at](x, want + skew, n);
            simd.act_quant[at](x, got + skew, n);
            size_t diff = 0;
            while (diff < size && want[skew + diff] == got[skew + diff])
                diff++;
            if (diff != size) {
                test_fail(__FILE__, __LINE__, "%s %s pattern %d: first differing byte %zu of %zu",
                          quant_isa_name(isa), quant_name(at), pattern, diff, size);
                return false;
            }
        }
    }
    return true;
}

TEST(quant_simd_act_quant_is_exact)
{
    if (quant_cpu_isa() < QUANT_ISA_AVX2) {
        test_skip("CPU lacks AVX2/FMA/F16C");
        return;
    }
    const size_t bytes = quant_row_size(QT_Q8_K, 7 * QK_K) + 64;
    float *x = malloc(7 * QK_K * sizeof *x);
    uint8_t *want = malloc(bytes), *got = malloc(bytes);
    bool ok = x && want && got;
    for (int isa = QUANT_ISA_AVX2; ok && isa <= (int)quant_cpu_isa(); isa++)
        ok = !quant_isa_supported((quant_isa)isa) || check_act_quant((quant_isa)isa, x, want, got);
    free(x);
    free(want);
    free(got);
    CHECK(ok);
}

/* --- ISA selection ----------------------------------------------------- */

/* Whether /proc/cpuinfo's first "flags" line lists every name in want. */
static int cpuinfo_has(const char *const *want, size_t nwant)
{
    char *info = test_read_file("/proc/cpuinfo", NULL);
    if (!info)
        return -1;
    char *line = strstr(info, "\nflags");
    int ok = line != NULL;
    if (line) {
        char *end = strchr(line + 1, '\n');
        if (end)
            *end = '\0';
        strcat(line, " "); /* end + 1 exists: at worst it held the final NUL */
        for (size_t i = 0; i < nwant && ok; i++) {
            char pat[40];
            snprintf(pat, sizeof pat, " %s ", want[i]);
            ok = strstr(line, pat) != NULL;
        }
    }
    free(info);
    return ok;
}

TEST(quant_simd_selects_best_isa)
{
    static const char *const avx2[] = {"avx2", "fma", "f16c"};
    static const char *const avx512[] = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"};
    static const char *const vnni[] = {"avx_vnni"};
    const int has2 = cpuinfo_has(avx2, 3), has512 = cpuinfo_has(avx512, 5);
    const int hasvnni = cpuinfo_has(vnni, 1);
    if (has2 < 0 || has512 < 0 || hasvnni < 0) {
        test_skip("no /proc/cpuinfo");
        return;
    }
    const quant_isa want = has2 && has512 ? QUANT_ISA_AVX512
                           : has2 && hasvnni ? QUANT_ISA_AVX2_VNNI
                           : has2 ? QUANT_ISA_AVX2 : QUANT_ISA_REF;
    CHECKF(quant_isa_supported(QUANT_ISA_AVX2_VNNI) == (has2 && hasvnni),
           "CPUID and /proc/cpuinfo disagree on AVX-VNNI");
    CHECKF(quant_cpu_isa() == want, "CPUID says %s, /proc/cpuinfo says %s",
           quant_isa_name(quant_cpu_isa()), quant_isa_name(want));
    if (getenv("SPILLWAY_ISA")) {
        test_skip("SPILLWAY_ISA caps the selection");
        return;
    }
    const quant_kernels *k = quant_kernels_get();
    CHECK_STR(quant_isa_name(k->isa), quant_isa_name(want));
    quant_kernels best;
    CHECK(quant_kernels_for(want, &best) == 0);
    CHECK(memcmp(best.vec_dot, k->vec_dot, sizeof best.vec_dot) == 0);
    CHECK(memcmp(best.act_quant, k->act_quant, sizeof best.act_quant) == 0);
    if (want < QUANT_ISA_AVX512)
        CHECK(quant_kernels_for(QUANT_ISA_AVX512, &best) == -1);
}
