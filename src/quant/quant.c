/* quant.c — the type table, half-precision conversions, kernel selection. */
#include "quant/quant.h"
#include "quant/quant_impl.h"

#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TF(t) quant_to_float_##t
#define FF(t) quant_from_float_##t

static const quant_traits g_traits[QT_COUNT] = {
    [QT_F32] = {"F32", 1, 4, QT_F32, TF(f32), FF(f32)},
    [QT_F16] = {"F16", 1, 2, QT_F32, TF(f16), FF(f16)},
    [QT_BF16] = {"BF16", 1, 2, QT_F32, TF(bf16), FF(bf16)},
    [QT_Q4_0] = {"Q4_0", QK4_0, sizeof(block_q4_0), QT_Q8_0, TF(q4_0), FF(q4_0)},
    [QT_Q4_1] = {"Q4_1", QK4_1, sizeof(block_q4_1), QT_Q8_1, TF(q4_1), FF(q4_1)},
    [QT_Q5_0] = {"Q5_0", QK5_0, sizeof(block_q5_0), QT_Q8_0, TF(q5_0), FF(q5_0)},
    [QT_Q5_1] = {"Q5_1", QK5_1, sizeof(block_q5_1), QT_Q8_1, TF(q5_1), FF(q5_1)},
    [QT_Q8_0] = {"Q8_0", QK8_0, sizeof(block_q8_0), QT_Q8_0, TF(q8_0), FF(q8_0)},
    [QT_Q8_1] = {"Q8_1", QK8_1, sizeof(block_q8_1), QT_Q8_1, TF(q8_1), FF(q8_1)},
    [QT_Q2_K] = {"Q2_K", QK_K, sizeof(block_q2_K), QT_Q8_K, TF(q2_K), FF(q2_K)},
    [QT_Q3_K] = {"Q3_K", QK_K, sizeof(block_q3_K), QT_Q8_K, TF(q3_K), FF(q3_K)},
    [QT_Q4_K] = {"Q4_K", QK_K, sizeof(block_q4_K), QT_Q8_K, TF(q4_K), FF(q4_K)},
    [QT_Q5_K] = {"Q5_K", QK_K, sizeof(block_q5_K), QT_Q8_K, TF(q5_K), FF(q5_K)},
    [QT_Q6_K] = {"Q6_K", QK_K, sizeof(block_q6_K), QT_Q8_K, TF(q6_K), FF(q6_K)},
    [QT_Q8_K] = {"Q8_K", QK_K, sizeof(block_q8_K), QT_Q8_K, TF(q8_K), FF(q8_K)},
    [QT_IQ4_NL] = {"IQ4_NL", QK4_NL, sizeof(block_iq4_nl), QT_Q8_0, TF(iq4_nl), FF(iq4_nl)},
    [QT_IQ4_XS] = {"IQ4_XS", QK_K, sizeof(block_iq4_xs), QT_Q8_K, TF(iq4_xs), NULL},
    [QT_MXFP4] = {"MXFP4", QK_MXFP4, sizeof(block_mxfp4), QT_Q8_0, TF(mxfp4), FF(mxfp4)},
    /* Storage-only types: known layout, so files holding them can be read
     * and inspected, but no kernels. */
    [QT_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, QT_COUNT, NULL, NULL},
    [QT_IQ2_XS] = {"IQ2_XS", QK_K, 74, QT_COUNT, NULL, NULL},
    [QT_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, QT_COUNT, NULL, NULL},
    [QT_IQ1_S] = {"IQ1_S", QK_K, 50, QT_COUNT, NULL, NULL},
    [QT_IQ3_S] = {"IQ3_S", QK_K, 110, QT_COUNT, NULL, NULL},
    [QT_IQ2_S] = {"IQ2_S", QK_K, 82, QT_COUNT, NULL, NULL},
    [QT_IQ1_M] = {"IQ1_M", QK_K, 56, QT_COUNT, NULL, NULL},
    [QT_TQ1_0] = {"TQ1_0", QK_K, 54, QT_COUNT, NULL, NULL},
    [QT_TQ2_0] = {"TQ2_0", QK_K, 66, QT_COUNT, NULL, NULL},
    [QT_I8] = {"I8", 1, 1, QT_COUNT, NULL, NULL},
    [QT_I16] = {"I16", 1, 2, QT_COUNT, NULL, NULL},
    [QT_I32] = {"I32", 1, 4, QT_COUNT, NULL, NULL},
    [QT_I64] = {"I64", 1, 8, QT_COUNT, NULL, NULL},
    [QT_F64] = {"F64", 1, 8, QT_COUNT, NULL, NULL},
};

const quant_traits *quant_traits_of(int type)
{
    if (type < 0 || type >= QT_COUNT || !g_traits[type].name)
        return NULL;
    return &g_traits[type];
}

const char *quant_name(int type)
{
    static __thread char buf[24];
    const quant_traits *t = quant_traits_of(type);
    if (t)
        return t->name;
    snprintf(buf, sizeof buf, "type%d", type);
    return buf;
}

int quant_from_name(const char *name)
{
    for (int i = 0; i < QT_COUNT; i++)
        if (g_traits[i].name && strcasecmp(g_traits[i].name, name) == 0)
            return i;
    return -1;
}

size_t quant_row_size(quant_type t, int64_t n)
{
    const quant_traits *tr = quant_traits_of(t);
    return tr ? (size_t)(n / tr->blck) * tr->size : 0;
}

/* --- half precision ---------------------------------------------------- */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* inf / nan */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in float */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t quant_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keep nan quiet) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half or zero */
        /* value / 2^-24, rounded to nearest even by float addition */
        float v = bits_f32(ax) * 0x1p24f;
        uint32_t m = (uint32_t)lrintf(v);
        return (uint16_t)(sign | m);
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent: still correct */
    return (uint16_t)(sign | h);
}

float quant_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 64); /* quiet nan */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

/* --- kernel selection -------------------------------------------------- */

static quant_kernels g_kernels;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* What each table needs, from CPUID plus the OS's consent (XCR0) to save
 * the registers. */
struct cpu_features {
    bool avx2;   /* AVX2, FMA, F16C; AVX state enabled */
    bool vnni;   /* AVX-VNNI (VEX) */
    bool avx512; /* F, DQ, BW, VL, VNNI; ZMM state enabled */
};

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static struct cpu_features detect_features(void)
{
    struct cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return f;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX state */
        return f;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1;
    int avx512vl = (b >> 31) & 1, vnni512 = (c >> 11) & 1;
    if (!(avx2 && fma && f16c))
        return f;
    f.avx2 = true;
    f.avx512 = avx512f && avx512dq && avx512bw && avx512vl && vnni512 && (xcr0 & 0xe0) == 0xe0;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d))
        f.vnni = (a >> 4) & 1;
    return f;
}
#else
static struct cpu_features detect_features(void)
{
    return (struct cpu_features){0};
}
#endif

/* a few CPUID instructions; callers are not hot */
bool quant_isa_supported(quant_isa isa)
{
    struct cpu_features f = detect_features();
    switch (isa) {
    case QUANT_ISA_REF: return true;
    case QUANT_ISA_AVX2: return f.avx2;
    case QUANT_ISA_AVX2_VNNI: return f.avx2 && f.vnni;
    case QUANT_ISA_AVX512: return f.avx512;
    }
    return false;
}

quant_isa quant_cpu_isa(void)
{
    quant_isa best = QUANT_ISA_REF;
    for (int i = QUANT_ISA_REF; i <= QUANT_ISA_AVX512; i++)
        if (quant_isa_supported((quant_isa)i))
            best = (quant_isa)i;
    return best;
}

const char *quant_isa_name(quant_isa isa)
{
    switch (isa) {
    case QUANT_ISA_REF: return "scalar";
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_AVX2_VNNI: return "avx2vnni";
    case QUANT_ISA_AVX512: return "avx512";
    }
    return "?";
}

/*
 * Runs one installer over k. A multi-row kernel must compute exactly what
 * the same table's vec_dot does, so where the installer replaced vec_dot[t]
 * but not vec_dot_rows[t] (say an AVX-512 dot over an AVX2 table with an
 * AVX2 multi-row kernel), the stale multi-row entry is dropped, and so is
 * a stale prepared-activation entry.
 */
static void kernels_install(quant_kernels *k, void (*install)(quant_kernels *))
{
    quant_kernels before = *k;
    install(k);
    for (int t = 0; t < QT_COUNT; t++) {
        if (k->vec_dot[t] == before.vec_dot[t])
            continue;
        if (k->vec_dot_rows[t] == before.vec_dot_rows[t])
            k->vec_dot_rows[t] = NULL;
        if (k->act_prep[t].dot_rows == before.act_prep[t].dot_rows &&
            k->act_prep[t].dot_multi == before.act_prep[t].dot_multi)
            k->act_prep[t] = (quant_act_prep){0};
    }
}

int quant_kernels_for(quant_isa isa, quant_kernels *out)
{
    if (!quant_isa_supported(isa))
        return -1;
    memset(out, 0, sizeof *out);
    quant_ref_kernels(out);
    if (isa >= QUANT_ISA_AVX2)
        kernels_install(out, quant_avx2_kernels);
    if (isa == QUANT_ISA_AVX2_VNNI) /* AVX-512 needs no AVX-VNNI, and replaces these */
        kernels_install(out, quant_avxvnni_kernels);
    if (isa >= QUANT_ISA_AVX512)
        kernels_install(out, quant_avx512_kernels);
    out->isa = isa;
    return 0;
}

void quant_vec_dot_rows(const quant_kernels *k, quant_type t, int64_t n, int nr, float *s,
                        const void *x, size_t row_stride, const void *y)
{
    if (k->vec_dot_rows[t]) {
        k->vec_dot_rows[t](n, nr, s, x, row_stride, y);
        return;
    }
    for (int r = 0; r < nr; r++)
        k->vec_dot[t](n, &s[r], (const uint8_t *)x + (size_t)r * row_stride, y);
}

/* SPILLWAY_ISA=scalar|avx2|avx2vnni|avx512 picks another table this CPU
 * can run (for comparisons). */
static void select_kernels(void)
{
    quant_isa isa = quant_cpu_isa();
    const char *want = getenv("SPILLWAY_ISA");
    for (int i = QUANT_ISA_REF; want && i <= QUANT_ISA_AVX512; i++)
        if (strcmp(want, quant_isa_name((quant_isa)i)) == 0 && quant_isa_supported((quant_isa)i))
            isa = (quant_isa)i;
    quant_kernels_for(isa, &g_kernels);
}

void quant_init(void)
{
    pthread_once(&g_once, select_kernels);
}

const quant_kernels *quant_kernels_get(void)
{
    quant_init();
    return &g_kernels;
}
