/*
 * Tests for src/quant: the scalar reference of every type.
 *
 *   dequantization   bit-exact against the fixture hashes of every tensor of
 *                    the fixture models (dequant-expect.json)
 *   quantization     round-trip error on awkward random data, byte-exact
 *                    agreement with llama.cpp's quantizer on the fixtures
 *   f16 / bf16       exhaustive and tie-breaking checks against an
 *                    independent double-precision model of IEEE rounding
 *   dot products     every reference vec_dot against the float dot product
 *                    of the dequantized operands
 */
#include "test.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "util/sha256.h"

/* --- helpers ------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_u64(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(rng *r) /* (0, 1) */
{
    return ((double)(rng_u64(r) >> 11) + 0.5) * 0x1p-53;
}

static float rng_normal(rng *r)
{
    double u = rng_unit(r), v = rng_unit(r);
    return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v));
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every type with a to_float, for loops over "all computable types". */
static const quant_type k_types[] = {
    QT_F32,  QT_F16,  QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0,   QT_Q5_1,   QT_Q8_0,  QT_Q8_1,
    QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_K,   QT_IQ4_NL, QT_IQ4_XS, QT_MXFP4,
};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])

/* --- f16 / bf16 ---------------------------------------------------------- */

/*
 * The IEEE model the conversions must match, in double: the value of a
 * half, and the half nearest a float (ties to even), found by scaling the
 * value to units of the target's last place at its binade.
 */
static double model_f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Nearest value with `mbits` explicit mantissa bits, min normal exponent
 * emin, returned as sign-less bits of that format (exponent bias 1-emin);
 * overflow comes out as the infinity pattern by itself. */
static uint32_t model_round(double a, int mbits, int emin)
{
    if (a == 0)
        return 0;
    int e;
    frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    e -= 1;       /* a in [2^e, 2^(e+1)) */
    if (e < emin)
        e = emin;
    double ulp = ldexp(1, e - mbits);
    double r = nearbyint(a / ulp); /* exact division; ties to even */
    /* (e - emin + 1) << mbits is the binade's first pattern; r counts from
     * 2^mbits there (or from 0 in the subnormal binade, e == emin). */
    return (uint32_t)(((e - emin + 1) << mbits) + (int64_t)r - (1 << mbits));
}

static uint16_t model_f32_to_f16(float f)
{
    uint16_t sign = (f32_bits(f) >> 16) & 0x8000;
    double a = fabs((double)f);
    if (a >= 65520.0)
        return sign | 0x7c00;
    return (uint16_t)(sign | model_round(a, 10, -14));
}

static uint16_t model_f32_to_bf16(float f)
{
    uint16_t sign = (f32_bits(f) >> 16) & 0x8000;
    return (uint16_t)(sign | model_round(fabs((double)f), 7, -126));
}

TEST(quant_f16_exhaustive)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        int is_nan = ((h >> 10) & 31) == 31 && (h & 1023);
        if (is_nan) {
            CHECKF(isnan(f), "half %04x is NaN, got %g", h, f);
            uint16_t back = quant_f32_to_f16(f);
            CHECKF((back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000),
                   "NaN %04x came back as %04x", h, back);
            continue;
        }
        CHECKF((double)f == model_f16_value((uint16_t)h), "half %04x -> %a", h, f);
        CHECKF(quant_f32_to_f16(f) == h, "half %04x round trip gave %04x", h,
               quant_f32_to_f16(f));
    }
}

static int check_f16(float f)
{
    uint16_t got = quant_f32_to_f16(f), want = model_f32_to_f16(f);
    if (got != want) {
        fprintf(stderr, "    f32 %a (%08x): f16 %04x, want %04x\n", f, f32_bits(f), got, want);
        return 0;
    }
    return 1;
}

TEST(quant_f16_rounding)
{
    /* every midpoint between neighbouring halves (exact ties), and the
     * floats just either side of it, in both signs */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double mid = (model_f16_value((uint16_t)h) + model_f16_value((uint16_t)(h + 1))) / 2;
        float m = (float)mid;
        CHECK((double)m == mid);
        float probes[] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
        for (int i = 0; i < 3; i++) {
            CHECK(check_f16(probes[i]));
            CHECK(check_f16(-probes[i]));
        }
    }
    /* specials and edges */
    const float edge[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65519.996f, 65520.0f,
                          1e10f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1p-26f, 0x1p-14f,
                          0x1.ff8p-15f, FLT_MIN, FLT_TRUE_MIN, FLT_MAX, 1.0f, 1.0009765625f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        CHECK(check_f16(edge[i]));
        CHECK(check_f16(-edge[i]));
    }
    CHECK_EQ(quant_f32_to_f16(0x1p-25f), 0);      /* tie to even: 0 */
    CHECK_EQ(quant_f32_to_f16(0x1.8p-24f), 2);    /* 1.5 ulp: to 2 */
    CHECK_EQ(quant_f32_to_f16(65520.0f), 0x7c00); /* overflow by rounding */
    uint16_t nan = quant_f32_to_f16(-NAN);
    CHECKF((nan & 0xfc00) == 0xfc00 && (nan & 0x3ff), "NaN -> %04x", nan);
    /* random floats across the half range and far outside it */
    rng r = {1};
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i % 2) /* exponents near the half range: 2^-30 .. 2^17 */
            u = (u & 0x807fffffu) | (uint32_t)(97 + (u >> 23) % 48) << 23;
        float f = bits_f32(u);
        if (isnan(f))
            continue;
        CHECK(check_f16(f));
    }
}

TEST(quant_bf16_rounding)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_bf16_to_f32((uint16_t)h);
        CHECK_EQ(f32_bits(f), h << 16);
        if (!isnan(f))
            CHECK_EQ(quant_f32_to_bf16(f), h);
    }
    rng r = {2};
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i % 4 == 1)
            u = (u & 0xffff0000u) | 0x8000u; /* exact tie */
        if (i % 4 == 2)
            u = (u & 0xffff0000u) | 0x7fffu; /* just below a tie */
        float f = bits_f32(u);
        uint16_t got = quant_f32_to_bf16(f);
        if (isnan(f)) {
            CHECKF((got & 0x7f80) == 0x7f80 && (got & 0x40) && (got >> 15) == (u >> 31),
                   "NaN %08x -> bf16 %04x", u, got);
            continue;
        }
        uint16_t want = model_f32_to_bf16(f);
        CHECKF(got == want, "f32 %08x: bf16 %04x, want %04x", u, got, want);
    }
    CHECK_EQ(quant_f32_to_bf16(bits_f32(0x7f7f8000u)), 0x7f80); /* ties up to inf */
    CHECK_EQ(quant_f32_to_bf16(bits_f32(0x00018000u)), 0x0002); /* subnormal tie, to even */
    CHECK_EQ(quant_f32_to_bf16(bits_f32(0x00008000u)), 0x0000);
}

/* --- round trips ---------------------------------------------------------- */

/*
 * Data with the awkward cases in it: block 0 all zero, block 1 constant,
 * block 2 one large outlier among small values, the rest standard normal.
 */
static float *make_data(int64_t n, int64_t blck, uint64_t seed)
{
    rng r = {seed};
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(&r);
    for (int64_t i = 0; i < blck; i++) {
        x[i] = 0.0f;
        x[blck + i] = 0.75f;
        x[2 * blck + i] = 0.01f * x[2 * blck + i];
    }
    x[2 * blck + blck / 3] = -9.0f;
    return x;
}

typedef struct rt_case {
    quant_type type;
    double max_rel_rmse; /* over the normal blocks, relative to their rms */
} rt_case;

/*
 * Bounds: what ggml's reference quantizers give on standard normal data
 * (our quantizers are byte-identical to them, see
 * quant_matches_llama_quantize), measured value in the comment, plus about
 * 15%. They follow the bit width: roughly (range / levels) / sqrt(12).
 */
static const rt_case k_round_trip[] = {
    {QT_F32, 0.0},
    {QT_F16, 2.5e-4},    /* 0.00021: 11-bit mantissa */
    {QT_BF16, 1.9e-3},   /* 0.00166: 8-bit mantissa */
    {QT_Q8_0, 5.9e-3},   /* 0.00510 */
    {QT_Q8_1, 5.9e-3},   /* 0.00515 */
    {QT_Q8_K, 8.4e-3},   /* 0.00727: one scale per 256 */
    {QT_Q6_K, 2.0e-2},   /* 0.0173 */
    {QT_Q5_1, 4.3e-2},   /* 0.0377 */
    {QT_Q5_K, 4.1e-2},   /* 0.0358 */
    {QT_Q5_0, 5.2e-2},   /* 0.0448 */
    {QT_Q4_K, 8.2e-2},   /* 0.0714 */
    {QT_IQ4_NL, 8.6e-2}, /* 0.0749 */
    {QT_Q4_1, 9.1e-2},   /* 0.0793 */
    {QT_Q4_0, 9.9e-2},   /* 0.0861 */
    {QT_MXFP4, 1.3e-1},  /* 0.1136: power-of-two scales */
    {QT_Q3_K, 1.7e-1},   /* 0.1467 */
    {QT_Q2_K, 3.4e-1},   /* 0.2986 */
};

/* Quantizes and dequantizes one case; 1 if within its bounds. */
static int round_trip_one(const rt_case *rc, uint64_t seed)
{
    const quant_traits *tr = quant_traits_of(rc->type);
    /* awkward sizes: an odd number of blocks, not a power of two */
    const int64_t nblocks = tr->blck == 1 ? 1189 : tr->blck == 32 ? 37 : 11;
    const int64_t blck = tr->blck == 1 ? 32 : tr->blck, n = nblocks * blck;
    float *x = make_data(n, blck, seed), *y = malloc((size_t)n * sizeof *y);
    uint8_t *q = malloc(quant_row_size(rc->type, n));
    tr->from_float(x, q, n);
    tr->to_float(q, y, n);
    double se = 0, ss = 0;
    int64_t bad = -1, nonzero = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i]) && bad < 0)
            bad = i;
        if (i < blck && y[i] != 0.0f && nonzero < 0)
            nonzero = i;
        if (i >= 3 * blck) {
            se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            ss += (double)x[i] * x[i];
        }
    }
    const double rel = sqrt(se / ss);
    const float outlier = y[2 * blck + blck / 3];
    free(x);
    free(y);
    free(q);
    if (getenv("TEST_VERBOSE") || rel > rc->max_rel_rmse)
        fprintf(stderr, "    %-6s relative rmse %.5f (bound %.2g)\n", tr->name, rel,
                rc->max_rel_rmse);
    if (bad >= 0 || nonzero >= 0) {
        fprintf(stderr, "    %s: element %lld not finite / zero block element %lld not zero\n",
                tr->name, (long long)bad, (long long)nonzero);
        return 0;
    }
    /* every type keeps a block's largest magnitude to within its grid
     * (MXFP4's nearest values to 9 at that scale are 8 and 12) */
    if (fabsf(outlier + 9.0f) > 1.1f) {
        fprintf(stderr, "    %s: outlier -9 came back as %g\n", tr->name, outlier);
        return 0;
    }
    return rel <= rc->max_rel_rmse;
}

TEST(quant_round_trip)
{
    int failed = 0;
    for (size_t c = 0; c < sizeof k_round_trip / sizeof k_round_trip[0]; c++) {
        const quant_traits *tr = quant_traits_of(k_round_trip[c].type);
        CHECKF(tr && tr->from_float && tr->to_float, "%s: no quantizer", quant_name(k_round_trip[c].type));
        failed += !round_trip_one(&k_round_trip[c], 42 + c);
    }
    CHECKF(failed == 0, "%d types outside their round-trip bounds", failed);
}

TEST(quant_activation_sums)
{
    enum { n = 4 * QK_K };
    float *x = make_data(n, QK_K, 7);
    block_q8_K qk[4];
    block_q8_1 q1[n / QK8_1];
    quant_traits_of(QT_Q8_K)->from_float(x, qk, n);
    quant_traits_of(QT_Q8_1)->from_float(x, q1, n);
    float amax[n / QK8_1];
    for (int b = 0; b < n / QK8_1; b++) {
        amax[b] = 0;
        for (int j = 0; j < QK8_1; j++)
            amax[b] = fmaxf(amax[b], fabsf(x[QK8_1 * b + j]));
    }
    free(x);
    for (int b = 0; b < 4; b++)
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) {
                sum += qk[b].qs[16 * g + j];
                CHECK(qk[b].qs[16 * g + j] >= -127); /* never -128 */
            }
            CHECK_EQ(qk[b].bsums[g], sum);
        }
    /* s = d * sum(q), with d the scale before its rounding to f16 */
    for (int b = 0; b < n / QK8_1; b++) {
        int sum = 0;
        for (int j = 0; j < QK8_1; j++)
            sum += q1[b].qs[j];
        CHECK_EQ(q1[b].s, quant_f32_to_f16(sum * (amax[b] / 127)));
    }
}

/* --- dot products ---------------------------------------------------------- */

/* Random bytes for a block, with its scale fields made finite and modest
 * (any bit pattern of the quants and sub-scales is valid). */
static void random_block(quant_type t, uint8_t *b, size_t size, rng *r)
{
    for (size_t i = 0; i < size; i++)
        b[i] = (uint8_t)rng_u64(r);
    ggml_half d = quant_f32_to_f16((float)(0.001 + 0.01 * rng_unit(r)));
    ggml_half m = quant_f32_to_f16((float)(0.02 * rng_unit(r) - 0.01));
    switch (t) {
    case QT_Q4_0: ((block_q4_0 *)b)->d = d; break;
    case QT_Q5_0: ((block_q5_0 *)b)->d = d; break;
    case QT_Q8_0: ((block_q8_0 *)b)->d = d; break;
    case QT_IQ4_NL: ((block_iq4_nl *)b)->d = d; break;
    case QT_IQ4_XS: ((block_iq4_xs *)b)->d = d; break;
    case QT_Q6_K: ((block_q6_K *)b)->d = d; break;
    case QT_Q3_K: ((block_q3_K *)b)->d = d; break;
    case QT_Q4_1: ((block_q4_1 *)b)->d = d, ((block_q4_1 *)b)->m = m; break;
    case QT_Q5_1: ((block_q5_1 *)b)->d = d, ((block_q5_1 *)b)->m = m; break;
    case QT_Q8_1: ((block_q8_1 *)b)->d = d, ((block_q8_1 *)b)->s = m; break;
    case QT_Q2_K: ((block_q2_K *)b)->d = d, ((block_q2_K *)b)->dmin = d; break;
    case QT_Q4_K: ((block_q4_K *)b)->d = d, ((block_q4_K *)b)->dmin = d; break;
    case QT_Q5_K: ((block_q5_K *)b)->d = d, ((block_q5_K *)b)->dmin = d; break;
    case QT_Q8_K: ((block_q8_K *)b)->d = 0.003f; break;
    case QT_MXFP4: ((block_mxfp4 *)b)->e = (uint8_t)(118 + rng_u64(r) % 12); break;
    default: break;
    }
}

/*
 * dot(x, act(y)) against the double-precision sum of dequant(x) *
 * dequant(act(y)). The tolerance is float rounding of a few operations per
 * block relative to sum |x_i y_i| (terms that cancel still round; the
 * reference is ~1e-7 off, SIMD kernels with other summation orders more). With
 * Q8_1 activations the kernel uses the stored block sums s, which are
 * rounded to f16, for the min term; the expectation does the same.
 */
static int check_dot(quant_type t, const uint8_t *wx, const float *ya, int64_t n,
                     const quant_kernels *k, const char *what)
{
    const quant_traits *tr = quant_traits_of(t), *ta = quant_traits_of(tr->vec_dot_type);
    uint8_t *qa = malloc(quant_row_size(tr->vec_dot_type, n));
    float *dx = malloc((size_t)n * sizeof *dx), *da = malloc((size_t)n * sizeof *da);
    k->act_quant[tr->vec_dot_type](ya, qa, n);
    tr->to_float(wx, dx, n);
    ta->to_float(qa, da, n);
    double want = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        want += (double)dx[i] * da[i];
        mag += fabs((double)dx[i] * da[i]);
    }
    if (t == QT_Q4_1 || t == QT_Q5_1)
        for (int64_t b = 0; b < n / 32; b++) {
            const block_q8_1 *yb = (const block_q8_1 *)qa + b;
            double m = quant_f16_to_f32(t == QT_Q4_1 ? ((const block_q4_1 *)wx)[b].m
                                                     : ((const block_q5_1 *)wx)[b].m);
            double exact = 0;
            for (int j = 0; j < 32; j++)
                exact += (double)da[32 * b + j];
            want += m * (quant_f16_to_f32(yb->s) - exact);
        }
    float got = NAN;
    k->vec_dot[t](n, &got, wx, qa);
    double tol = 2e-6 * mag + 1e-30;
    int ok = fabs(got - want) <= tol;
    if (!ok || getenv("TEST_VERBOSE"))
        fprintf(stderr, "    %s %s: dot %.9g, want %.9g (tol %.3g)\n", tr->name, what, got,
                want, tol);
    free(qa);
    free(dx);
    free(da);
    return ok;
}

TEST(quant_vec_dot_reference)
{
    quant_kernels k;
    memset(&k, 0, sizeof k);
    quant_ref_kernels(&k);
    rng r = {99};
    int failed = 0;
    for (int ti = 0; ti < N_TYPES; ti++) {
        quant_type t = k_types[ti];
        const quant_traits *tr = quant_traits_of(t);
        CHECKF(k.vec_dot[t], "%s has no reference vec_dot", tr->name);
        CHECKF(k.act_quant[tr->vec_dot_type], "%s: no act_quant for %s", tr->name,
               quant_name(tr->vec_dot_type));
        const int64_t n = tr->blck == QK_K ? 8 * QK_K : tr->blck == 32 ? 41 * 32 : 1000;
        const int64_t blck = tr->blck == 1 ? 32 : tr->blck;
        float *w = make_data(n, blck, 500 + ti), *a = make_data(n, blck, 900 + ti);
        for (int64_t i = 0; i < n; i++)
            a[i] = a[i] * 3.0f + 0.5f; /* activations with an offset: mins matter */
        uint8_t *wx = malloc(quant_row_size(t, n));
        if (tr->from_float) {
            tr->from_float(w, wx, n);
            failed += !check_dot(t, wx, a, n, &k, "quantized");
        }
        if (tr->blck > 1) {
            for (int64_t b = 0; b < n / tr->blck; b++)
                random_block(t, wx + b * tr->size, tr->size, &r);
            failed += !check_dot(t, wx, a, n, &k, "random blocks");
        }
        free(w);
        free(a);
        free(wx);
    }
    CHECKF(failed == 0, "%d dot products off", failed);
}

TEST(quant_table_complete)
{
    quant_kernels k;
    memset(&k, 0, sizeof k);
    quant_ref_kernels(&k);
    CHECK(k.act_quant[QT_F32] && k.act_quant[QT_Q8_0] && k.act_quant[QT_Q8_1] &&
          k.act_quant[QT_Q8_K]);
    for (int t = 0; t < QT_COUNT; t++) {
        const quant_traits *tr = quant_traits_of(t);
        if (!tr || !tr->to_float)
            continue;
        CHECKF(k.vec_dot[t], "%s: to_float but no vec_dot", tr->name);
        CHECKF(tr->vec_dot_type < QT_COUNT && k.act_quant[tr->vec_dot_type],
               "%s: no activation quantizer", tr->name);
    }
    /* the kernel table quant.c selects must reach the reference through
     * every ISA (SIMD installers only replace entries) */
    for (int isa = QUANT_ISA_REF; isa <= QUANT_ISA_AVX512; isa++) {
        quant_kernels ks;
        if (quant_kernels_for((quant_isa)isa, &ks) < 0)
            continue;
        for (int ti = 0; ti < N_TYPES; ti++)
            CHECKF(ks.vec_dot[k_types[ti]], "%s: %s vec_dot missing", quant_isa_name(ks.isa),
                   quant_name(k_types[ti]));
    }
}

/* --- fixtures: dequantization hashes --------------------------------------- */

/* "llama-q4_0.gguf" lives in models/llama/. */
static const char *model_path(const char *file)
{
    char dir[64];
    size_t len = strcspn(file, "-");
    if (len >= sizeof dir)
        len = sizeof dir - 1;
    memcpy(dir, file, len);
    dir[len] = '\0';
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/%s", dir, file);
    return test_fixture(rel);
}

/* SHA-256 of the values as little-endian float32. */
static void hash_floats(const float *v, int64_t n, char hex[65])
{
    sha256_ctx c;
    sha256_init(&c);
    uint8_t buf[4096];
    size_t nb = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(v[i]);
        for (int k = 0; k < 4; k++)
            buf[nb++] = (uint8_t)(u >> (8 * k));
        if (nb == sizeof buf) {
            sha256_update(&c, buf, nb);
            nb = 0;
        }
    }
    sha256_update(&c, buf, nb);
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_final(&c, d);
    sha256_hex(d, hex);
}

typedef struct type_tally {
    int ok[QT_COUNT], total[QT_COUNT];
} type_tally;

static void tally_print(const type_tally *t, const char *what)
{
    for (int i = 0; i < QT_COUNT; i++)
        if (t->total[i])
            fprintf(stderr, "    %-7s %4d / %4d %s\n", quant_name(i), t->ok[i], t->total[i], what);
}

/* Dequantizes one tensor and compares it with its expectation entry. */
static int dequant_matches(const char *file, const gguf_ctx *g, const char *name, json_t *want)
{
    const gguf_tensor *t = gguf_find_tensor(g, name);
    const char *type = json_string_value(json_object_get(want, "type"));
    if (!t || !type || quant_from_name(type) != t->type) {
        fprintf(stderr, "    %s/%s: missing or type %s != %s\n", file, name,
                t ? quant_name(t->type) : "-", type ? type : "-");
        return 0;
    }
    json_t *ne = json_object_get(want, "ne");
    for (size_t d = 0; d < json_array_size(ne); d++)
        if (json_integer_value(json_array_get(ne, d)) != t->ne[d]) {
            fprintf(stderr, "    %s/%s: shape differs in dim %zu\n", file, name, d);
            return 0;
        }
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr || !tr->to_float || t->n_elements != json_integer_value(json_object_get(want, "n")))
        return 0;
    float *v = malloc((size_t)t->n_elements * sizeof *v);
    tr->to_float(gguf_tensor_data(g, t), v, t->n_elements);
    char hex[65];
    hash_floats(v, t->n_elements, hex);
    int ok = strcmp(hex, json_string_value(json_object_get(want, "sha256_f32le"))) == 0;
    if (!ok) {
        json_t *first = json_object_get(want, "first8");
        fprintf(stderr, "    %s/%s (%s): hash differs; first values", file, name, type);
        for (size_t i = 0; i < 8 && i < json_array_size(first); i++)
            fprintf(stderr, " %.9g/%.9g", v[i], json_real_value(json_array_get(first, i)));
        fputc('\n', stderr);
    }
    free(v);
    return ok;
}

TEST(quant_dequant_expect)
{
    json_error_t jerr;
    json_t *root = json_load_file(test_fixture("models/dequant-expect.json"), 0, &jerr);
    CHECKF(root, "dequant-expect.json: %s (line %d)", jerr.text, jerr.line);
    type_tally tally;
    memset(&tally, 0, sizeof tally);
    int failed = 0, files = 0;
    const char *file;
    json_t *tensors;
    json_object_foreach(root, file, tensors)
    {
        if (json_object_size(tensors) == 0)
            continue;
        gguf_ctx *g = NULL;
        sw_err err;
        if (gguf_open(model_path(file), GGUF_MMAP, &g, &err) < 0) {
            fprintf(stderr, "    %s: %s\n", file, err.msg);
            failed++;
            continue;
        }
        files++;
        const char *name;
        json_t *want;
        json_object_foreach(tensors, name, want)
        {
            int type = quant_from_name(json_string_value(json_object_get(want, "type")));
            int ok = dequant_matches(file, g, name, want);
            if (type >= 0) {
                tally.total[type]++;
                tally.ok[type] += ok;
            }
            failed += !ok;
        }
        gguf_close(g);
    }
    json_decref(root);
    if (failed)
        tally_print(&tally, "tensors bit-exact");
    CHECKF(failed == 0, "%d tensors do not dequantize bit-exactly (%d files)", failed, files);
    /* every type the fixtures hold was seen */
    const quant_type seen[] = {QT_F16,  QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1,   QT_Q5_0,   QT_Q5_1,
                               QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL, QT_IQ4_XS,
                               QT_MXFP4};
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        CHECKF(tally.total[seen[i]] > 0, "no %s tensor in the fixtures", quant_name(seen[i]));
}

/* --- fixtures: quantization against llama.cpp's ---------------------------- */

/* The f32 model the quantized file was made from: "llama-q4_0.gguf" ->
 * "llama-f32.gguf". */
static const char *f32_sibling(const char *file)
{
    char name[128];
    size_t len = strcspn(file, "-");
    snprintf(name, sizeof name, "%.*s-f32.gguf", (int)len, file);
    return model_path(name);
}

/* Quantizes every tensor of `file` that has a quantizer from the same
 * tensor of the f32 model and counts the tensors whose bytes agree. */
static void quantize_compare_file(const char *file, type_tally *tally, type_tally *blocks)
{
    gguf_ctx *g = NULL, *f = NULL;
    sw_err err;
    if (gguf_open(model_path(file), GGUF_MMAP, &g, &err) < 0 ||
        gguf_open(f32_sibling(file), GGUF_MMAP, &f, &err) < 0) {
        fprintf(stderr, "    %s: %s\n", file, err.msg);
        gguf_close(g);
        return;
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const gguf_tensor *src = gguf_find_tensor(f, t->name);
        const quant_traits *tr = quant_traits_of(t->type);
        if (t->type == QT_F32 || !tr || !tr->from_float || !src || src->type != QT_F32 ||
            src->n_elements != t->n_elements)
            continue;
        uint8_t *q = malloc(t->size);
        tr->from_float(gguf_tensor_data(f, src), q, t->n_elements);
        const uint8_t *ref = gguf_tensor_data(g, t);
        int64_t nb = t->n_elements / tr->blck, same = 0;
        for (int64_t b = 0; b < nb; b++)
            same += memcmp(q + b * tr->size, ref + b * tr->size, tr->size) == 0;
        tally->total[t->type]++;
        tally->ok[t->type] += same == nb;
        blocks->total[t->type] += (int)nb;
        blocks->ok[t->type] += (int)same;
        free(q);
    }
    gguf_close(f);
    gguf_close(g);
}

TEST(quant_matches_llama_quantize)
{
    json_error_t jerr;
    json_t *root = json_load_file(test_fixture("models/dequant-expect.json"), 0, &jerr);
    CHECKF(root, "dequant-expect.json: %s (line %d)", jerr.text, jerr.line);
    type_tally tensors, blocks;
    memset(&tensors, 0, sizeof tensors);
    memset(&blocks, 0, sizeof blocks);
    const char *file;
    json_t *unused;
    json_object_foreach(root, file, unused)
    {
        if (!strstr(file, "-f32."))
            quantize_compare_file(file, &tensors, &blocks);
    }
    json_decref(root);
    int differ = 0;
    for (int t = 0; t < QT_COUNT; t++)
        differ += tensors.total[t] - tensors.ok[t];
    if (differ || getenv("TEST_VERBOSE")) {
        tally_print(&tensors, "tensors byte-identical to llama.cpp's quantizer");
        tally_print(&blocks, "blocks byte-identical");
    }
    CHECKF(tensors.total[QT_Q4_K] > 0 && tensors.total[QT_IQ4_NL] > 0, "fixtures not found");
    for (int t = 0; t < QT_COUNT; t++)
        CHECKF(tensors.ok[t] == tensors.total[t], "%s: %d of %d tensors differ", quant_name(t),
               tensors.total[t] - tensors.ok[t], tensors.total[t]);
}
