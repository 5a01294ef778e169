/*
 * gen_quant.c — the values of a generated tensor, and fast K-quantizers.
 *
 * Values. Element i of row r of tensor T is derived from one 64-bit hash of
 * (seed, T's name, r, i): the splitmix64 finalizer applied to a per-row key
 * plus i times the golden ratio, which is a counter-based generator: no
 * state, so any row can be produced by any thread in any order and the file
 * is the same whatever the thread count. The hash's four 16-bit fields are
 * summed (Irwin-Hall with n = 4, shifted and scaled to mean 0, variance 1):
 * a bell curve whose density is within 1% of the normal's up to 2 sigma,
 * with tails cut at 3.46 sigma. That costs ~3 ns a value in scalar code and
 * ~0.3 ns with AVX-512 (gen_simd_avx512.c, the same bits), against tens for
 * Box-Muller with libm.
 *
 * Quantizers. The reference K-quant quantizers search for each sub-block's
 * scale (20 trials for Q4_K) and spend ~40 ns a weight doing it; a 30B
 * model would take ten minutes on two cores. For random weights the search
 * buys a few per cent of error that nothing needs, so Q4_K, Q5_K and Q6_K
 * have single-pass versions here: each sub-block's scale (and min) comes
 * straight from its range, the scales are quantized to 6 (Q4_K, Q5_K) or 8
 * (Q6_K) bits against the block's f16 super-scale, and each weight is then
 * rounded with the scale it will be decoded with. The layout is the
 * standard one (decoded by quant's to_float), only the choice of scales
 * differs. Q8_0 and MXFP4 have no search to skip: their fast versions here
 * write exactly the reference's bytes, without a libm call per weight.
 * With AVX-512 all of these, F16 and BF16 run at ~0.3 ns a weight.
 */
#include "gen/gen.h"
#include "gen/gen_impl.h"
#include "quant/quant.h"

#include <math.h>
#include <string.h>

/* --- values ----------------------------------------------------------------- */

/* FNV-1a of a tensor's name: different tensors get unrelated streams. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* dst[i] = mean + std * z_i, z_i ~ approximately N(0, 1). */
static void fill_gauss(uint64_t key, float mean, float std, float *dst, int64_t n)
{
    if (quant_kernels_get()->isa >= QUANT_ISA_AVX512) {
        gen_gauss_avx512(key, mean, std, dst, n);
        return;
    }
    const float scale = std * GEN_IH4_INV_STD;
    for (int64_t i = 0; i < n; i++)
        dst[i] = gen_gauss_one(key, i, mean, scale);
}

/*
 * Llama 3's rope frequency factors, as the converter computes them from the
 * config's rope_scaling: 1 for high frequencies (wavelength below
 * orig_ctx / high_freq_factor), the full factor for low ones (beyond
 * orig_ctx / low_freq_factor), a smooth blend between.
 */
static void fill_rope_freqs(const gen_spec *s, float *dst, int64_t n)
{
    const double pi = 3.14159265358979323846;
    const double low_wavelen = (double)s->rope_orig_ctx / s->rope_low_freq;
    const double high_wavelen = (double)s->rope_orig_ctx / s->rope_high_freq;
    for (int64_t i = 0; i < n; i++) {
        /* float32 as torch computes the base frequencies */
        float freq = 1.0f / powf(s->rope_base, (float)(2 * i) / (float)s->head_dim);
        double wavelen = 2 * pi / freq;
        if (wavelen < high_wavelen) {
            dst[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            dst[i] = s->rope_factor;
        } else {
            double smooth = ((double)s->rope_orig_ctx / wavelen - s->rope_low_freq) /
                            (s->rope_high_freq - s->rope_low_freq);
            dst[i] = (float)(1.0 / ((1 - smooth) / s->rope_factor + smooth));
        }
    }
}

void gen_fill_row(const gen_tensor *t, const gen_spec *spec, uint64_t seed, int64_t row,
                  float *dst)
{
    const uint64_t key =
        gen_mix64(gen_mix64(seed ^ name_hash(t->name)) + (uint64_t)row * GEN_GOLDEN);
    switch (t->init) {
    case GEN_INIT_NORMAL:
        fill_gauss(key, 0.0f, t->std, dst, t->ne[0]);
        break;
    case GEN_INIT_ONE:
        fill_gauss(key, 1.0f, t->std, dst, t->ne[0]);
        break;
    case GEN_INIT_ROPE_FREQS:
        fill_rope_freqs(spec, dst, t->ne[0]);
        break;
    }
}

/* --- fast K-quantizers -------------------------------------------------------- */

/* The header steps and packing are shared with the AVX-512 versions
 * (gen_impl.h); here are the scalar statistics and rounding loops. */

static void fast_q4_K_or_q5_K(const float *restrict x, void *restrict vy, int64_t n, int nmax)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float lo[8], hi[8], sd[8], dm[8];
        for (int j = 0; j < 8; j++) {
            lo[j] = hi[j] = x[32 * j];
            for (int l = 1; l < 32; l++) {
                lo[j] = x[32 * j + l] < lo[j] ? x[32 * j + l] : lo[j];
                hi[j] = x[32 * j + l] > hi[j] ? x[32 * j + l] : hi[j];
            }
        }
        ggml_half d, dmin;
        uint8_t scales[K_SCALE_SIZE];
        gen_k4_header(lo, hi, nmax, &d, &dmin, scales, sd, dm);
        for (int j = 0; j < 8; j++) {
            const float inv = sd[j] != 0 ? 1.0f / sd[j] : 0.0f;
            for (int l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)gen_clamp(gen_round((x[32 * j + l] + dm[j]) * inv), 0, nmax);
        }
        if (nmax == 15) {
            block_q4_K *y = (block_q4_K *)vy + b;
            y->d = d;
            y->dmin = dmin;
            memcpy(y->scales, scales, sizeof scales);
            gen_pack_q4_K(L, y->qs);
        } else {
            block_q5_K *y = (block_q5_K *)vy + b;
            y->d = d;
            y->dmin = dmin;
            memcpy(y->scales, scales, sizeof scales);
            gen_pack_q5_K(L, y->qs, y->qh);
        }
    }
}

static void fast_q4_K(const float *restrict x, void *restrict vy, int64_t n)
{
    fast_q4_K_or_q5_K(x, vy, n, 15);
}

static void fast_q5_K(const float *restrict x, void *restrict vy, int64_t n)
{
    fast_q4_K_or_q5_K(x, vy, n, 31);
}

static void fast_q6_K(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q6_K *y = vy;
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float v[16], amax[16], inv[16];
        for (int j = 0; j < 16; j++) {
            v[j] = amax[j] = 0;
            for (int l = 0; l < 16; l++)
                if (fabsf(x[16 * j + l]) > amax[j]) {
                    amax[j] = fabsf(x[16 * j + l]);
                    v[j] = x[16 * j + l];
                }
        }
        if (!gen_q6_header(v, amax, &y[b], inv))
            continue;
        for (int j = 0; j < 16; j++)
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)(gen_clamp(gen_round(x[16 * j + l] * inv[j]), -32, 31) + 32);
        gen_pack_q6_K(L, y[b].ql, y[b].qh);
    }
}

/* --- exact fast paths ---------------------------------------------------------- */

/*
 * The reference quantizers of Q8_0 and MXFP4 have no search, so their bytes
 * are the only right answer; these produce the same bytes without a libm
 * call per weight (tests/test_gen.c compares them on random and tie cases).
 */

/* roundf (halves away from zero) for |v| < 2^23. */
static inline int round_away(float v)
{
    int t = (int)v; /* toward zero */
    float r = v - (float)t;
    return t + (r >= 0.5f) - (r <= -0.5f);
}

static void fast_q8_0(const float *restrict x, void *restrict vy, int64_t n)
{
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            y[b].qs[j] = (int8_t)round_away(x[j] * id);
    }
}

/*
 * MXFP4: the reference picks the first table entry nearest x / d. With d a
 * power of two, x / d is exact and so are the distances, so that is
 * rounding |x / d| on the E2M1 grid 0 1 2 3 4 6 8 12 (doubled) with ties
 * going to the smaller magnitude, and +0 (entry 0) for anything that
 * rounds to zero. Blocks whose scale would be subnormal take the reference.
 */
static inline int mxfp4_index(float v)
{
    float a = fabsf(v);
    int m = (a > 0.5f) + (a > 1.5f) + (a > 2.5f) + (a > 3.5f) + (a > 5.0f) + (a > 7.0f) +
            (a > 10.0f);
    return m == 0 ? 0 : v < 0 ? 8 + m : m;
}

static void fast_mxfp4(const float *restrict x, void *restrict vy, int64_t n)
{
    block_mxfp4 *y = vy;
    for (int64_t b = 0; b < n / QK_MXFP4; b++, x += QK_MXFP4) {
        float amax = 0.0f;
        for (int j = 0; j < QK_MXFP4; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        int e = amax > 0.0f ? (int)floorf(log2f(amax)) - 2 + 127 : 0;
        if (e < 2 || e > 254) {
            quant_traits_of(QT_MXFP4)->from_float(x, &y[b], QK_MXFP4);
            continue;
        }
        y[b].e = (uint8_t)e;
        uint32_t bits = (uint32_t)(255 - e) << 23; /* 1 / d = 2^(128 - e) */
        float inv_d;
        memcpy(&inv_d, &bits, sizeof inv_d);
        for (int j = 0; j < QK_MXFP4 / 2; j++)
            y[b].qs[j] = (uint8_t)(mxfp4_index(x[j] * inv_d) | mxfp4_index(x[j + 16] * inv_d) << 4);
    }
}

gen_quant_fn gen_quantizer(int type, bool exact)
{
    return gen_quantizer_for(type, exact, quant_kernels_get()->isa >= QUANT_ISA_AVX512);
}

gen_quant_fn gen_quantizer_for(int type, bool exact, bool avx512)
{
    if (avx512) {
        switch (type) {
        case QT_F16: return gen_f16_avx512;
        case QT_BF16: return gen_bf16_avx512;
        case QT_Q8_0: return gen_q8_0_avx512;
        case QT_MXFP4: return gen_mxfp4_avx512;
        case QT_Q4_K: return exact ? quant_traits_of(type)->from_float : gen_q4_K_avx512;
        case QT_Q5_K: return exact ? quant_traits_of(type)->from_float : gen_q5_K_avx512;
        case QT_Q6_K: return exact ? quant_traits_of(type)->from_float : gen_q6_K_avx512;
        default: break;
        }
    }
    switch (type) {
    case QT_Q8_0: return fast_q8_0;
    case QT_MXFP4: return fast_mxfp4;
    case QT_Q4_K: return exact ? quant_traits_of(type)->from_float : fast_q4_K;
    case QT_Q5_K: return exact ? quant_traits_of(type)->from_float : fast_q5_K;
    case QT_Q6_K: return exact ? quant_traits_of(type)->from_float : fast_q6_K;
    default: break;
    }
    const quant_traits *tr = quant_traits_of(type);
    return tr ? tr->from_float : NULL;
}
