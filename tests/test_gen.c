/* test_gen.c — synthetic models: catalogue, type mix, values, files. */
#include "test.h"

#include "gen/gen.h"
#include "gen/gen_impl.h"
#include "gguf/gguf.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "quant/quant.h"
#include "store/store.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- helpers ------------------------------------------------------------------- */

static double rng_next(uint64_t *s) /* uniform in (0, 1) */
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

static void randn(float *x, int64_t n, float std, uint64_t seed)
{
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        double u = rng_next(&s), v = rng_next(&s);
        x[i] = (float)(std * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    }
}

static void stats(const float *x, int64_t n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
}

/* Runs `spillway gen ARGS` (stderr to stdout); returns its exit status. */
static int run_gen(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s gen --quiet --fixtures '%s' %s 2>&1", test_bin(),
             test_fixture("."), args);
    return test_run(cmd, out);
}

static const gen_plan *plan_of(const char *like, const char *type, gen_plan *p)
{
    sw_err err = {0};
    if (gen_plan_build(gen_spec_find(like), gen_ftype_find(type), 0, p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return p;
}

static int64_t ne_of(const gen_plan *p, const char *name, int d)
{
    const gen_tensor *t = gen_plan_find(p, name);
    return t ? t->ne[d] : -1;
}

static int type_of(const gen_plan *p, const char *name)
{
    const gen_tensor *t = gen_plan_find(p, name);
    return t ? t->type : -1;
}

/* --- the catalogue: well-known numbers of the real models ------------------------ */

TEST(gen_spec_qwen3_30b_a3b)
{
    gen_plan p;
    CHECK(plan_of("qwen3-30b-a3b", "q4_k_m", &p));
    CHECK_STR(p.spec->arch, "qwen3moe");
    CHECK_EQ(p.n_layer, 48);
    CHECK_EQ(p.n_tensors, 3 + 48 * 12);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 0), 2048);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 1), 151936);
    CHECK_EQ(ne_of(&p, "blk.47.ffn_gate_exps.weight", 0), 2048);
    CHECK_EQ(ne_of(&p, "blk.47.ffn_gate_exps.weight", 1), 768);
    CHECK_EQ(ne_of(&p, "blk.47.ffn_gate_exps.weight", 2), 128);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_down_exps.weight", 0), 768);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate_inp.weight", 1), 128);
    CHECK_EQ(ne_of(&p, "blk.0.attn_q.weight", 1), 32 * 128);
    CHECK_EQ(ne_of(&p, "blk.0.attn_k.weight", 1), 4 * 128);
    CHECK_EQ(ne_of(&p, "blk.0.attn_k_norm.weight", 0), 128);
    CHECK_EQ(p.spec->n_expert_used, 8);
    CHECKF(llabs(p.n_params - 30532122624LL) < 1000000, "%" PRId64, p.n_params);
    /* Q4_K_M: Q6_K output, attn_v / ffn_down on the use-more-bits layers */
    CHECK_EQ(type_of(&p, "output.weight"), QT_Q6_K);
    CHECK_EQ(type_of(&p, "token_embd.weight"), QT_Q4_K);
    CHECK_EQ(type_of(&p, "blk.0.attn_v.weight"), QT_Q6_K);
    CHECK_EQ(type_of(&p, "blk.6.attn_v.weight"), QT_Q4_K);
    CHECK_EQ(type_of(&p, "blk.8.ffn_down_exps.weight"), QT_Q6_K);
    CHECK_EQ(type_of(&p, "blk.9.ffn_down_exps.weight"), QT_Q4_K);
    CHECK_EQ(type_of(&p, "blk.9.ffn_up_exps.weight"), QT_Q4_K);
    CHECK_EQ(type_of(&p, "blk.9.ffn_gate_inp.weight"), QT_F32);
    CHECK_EQ(type_of(&p, "blk.9.attn_q_norm.weight"), QT_F32);
    /* ~18.6 GB, as the Q4_K_M downloads */
    CHECKF(p.n_bytes > 18400000000ull && p.n_bytes < 18700000000ull, "%" PRIu64, p.n_bytes);
    gen_plan_free(&p);
}

TEST(gen_spec_mixtral_8x7b)
{
    gen_plan p;
    CHECK(plan_of("mixtral-8x7b", "q4_k_m", &p));
    CHECK_STR(p.spec->arch, "llama");
    CHECK_EQ(p.n_layer, 32);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 1), 32000);
    CHECK_EQ(ne_of(&p, "blk.31.ffn_up_exps.weight", 0), 4096);
    CHECK_EQ(ne_of(&p, "blk.31.ffn_up_exps.weight", 1), 14336);
    CHECK_EQ(ne_of(&p, "blk.31.ffn_up_exps.weight", 2), 8);
    CHECK_EQ(ne_of(&p, "blk.31.ffn_down_exps.weight", 0), 14336);
    CHECK_EQ(p.spec->n_expert_used, 2);
    CHECKF(llabs(p.n_params - 46702792704LL) < 1000000, "%" PRId64, p.n_params);
    /* the 8-expert rules */
    CHECK_EQ(type_of(&p, "blk.5.attn_v.weight"), QT_Q8_0);
    CHECK_EQ(type_of(&p, "blk.5.attn_k.weight"), QT_Q8_0);
    CHECK_EQ(type_of(&p, "blk.5.attn_output.weight"), QT_Q5_K);
    CHECK_EQ(type_of(&p, "blk.5.attn_q.weight"), QT_Q4_K);
    CHECK(gen_plan_find(&p, "rope_freqs.weight") == NULL);
    gen_plan_free(&p);
}

TEST(gen_spec_llama_3_1_8b)
{
    gen_plan p;
    CHECK(plan_of("llama-3.1-8b", "q8_0", &p));
    CHECK_EQ(p.n_layer, 32);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 0), 4096);
    CHECK_EQ(ne_of(&p, "output.weight", 1), 128256);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate.weight", 1), 14336);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_down.weight", 0), 14336);
    CHECK_EQ(ne_of(&p, "blk.0.attn_q.weight", 1), 4096);
    CHECK_EQ(ne_of(&p, "blk.0.attn_k.weight", 1), 1024); /* 8 KV heads of 128 */
    CHECK_EQ(ne_of(&p, "rope_freqs.weight", 0), 64);
    CHECK_EQ(type_of(&p, "rope_freqs.weight"), QT_F32);
    CHECK_EQ(type_of(&p, "output.weight"), QT_Q8_0);
    CHECK_EQ(type_of(&p, "blk.0.ffn_down.weight"), QT_Q8_0);
    CHECKF(llabs(p.n_params - 8030261312LL) < 1000, "%" PRId64, p.n_params);
    CHECK_EQ(p.n_tensors, 4 + 32 * 9);
    gen_plan_free(&p);

    CHECK(plan_of("llama-3.2-1b", "q4_k_m", &p)); /* tied: token_embd is the output */
    CHECK(gen_plan_find(&p, "output.weight") == NULL);
    CHECK_EQ(type_of(&p, "token_embd.weight"), QT_Q6_K);
    CHECKF(llabs(p.n_params - 1235814432LL) < 1000, "%" PRId64, p.n_params);
    gen_plan_free(&p);
}

TEST(gen_spec_gpt_oss_20b)
{
    gen_plan p;
    CHECK(plan_of("gpt-oss-20b", "mxfp4", &p));
    CHECK_STR(p.spec->arch, "gpt-oss");
    CHECK_EQ(p.n_layer, 24);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 0), 2880);
    CHECK_EQ(ne_of(&p, "token_embd.weight", 1), 201088);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate_exps.weight", 1), 2880);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate_exps.weight", 2), 32);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate_exps.bias", 0), 2880);
    CHECK_EQ(ne_of(&p, "blk.0.ffn_gate_exps.bias", 1), 32);
    CHECK_EQ(ne_of(&p, "blk.0.attn_q.weight", 1), 64 * 64);
    CHECK_EQ(ne_of(&p, "blk.0.attn_sinks.weight", 0), 64);
    CHECK_EQ(ne_of(&p, "blk.0.post_attention_norm.weight", 0), 2880);
    CHECK_EQ(p.spec->n_expert_used, 4);
    CHECK_EQ(p.spec->sliding_window, 128);
    CHECK_EQ(type_of(&p, "blk.0.ffn_down_exps.weight"), QT_MXFP4);
    CHECK_EQ(type_of(&p, "blk.0.attn_q.weight"), QT_Q8_0);
    CHECK_EQ(type_of(&p, "output.weight"), QT_Q8_0);
    CHECK_EQ(type_of(&p, "blk.0.ffn_down_exps.bias"), QT_F32);
    CHECKF(llabs(p.n_params - 20914757184LL) < 1000000, "%" PRId64, p.n_params);
    CHECKF(p.n_bytes > 12000000000ull && p.n_bytes < 12200000000ull, "%" PRIu64, p.n_bytes);
    gen_plan_free(&p);

    /* Q4_K_M: rows of 2880 are not a multiple of 256 */
    CHECK(plan_of("gpt-oss-20b", "q4_k_m", &p));
    CHECK_EQ(type_of(&p, "blk.0.ffn_up_exps.weight"), QT_Q5_0);
    CHECK_EQ(type_of(&p, "blk.0.ffn_down_exps.weight"), QT_Q8_0); /* Q6_K's fall-back */
    CHECK_EQ(type_of(&p, "blk.0.attn_output.weight"), QT_Q4_K);  /* rows of 4096 */
    CHECK_EQ(type_of(&p, "output.weight"), QT_Q8_0);
    gen_plan_free(&p);
}

TEST(gen_spec_layers_override)
{
    gen_plan p;
    sw_err err = {0};
    CHECK(gen_plan_build(gen_spec_find("Qwen3-30B-A3B"), gen_ftype_find("Q8_0"), 2, &p, &err) == 0);
    CHECK_EQ(p.n_layer, 2);
    CHECK_EQ(p.n_tensors, 3 + 2 * 12);
    CHECK(gen_plan_find(&p, "blk.1.ffn_up_exps.weight") != NULL);
    CHECK(gen_plan_find(&p, "blk.2.ffn_up_exps.weight") == NULL);
    /* file order: file-level tensors, then blocks, names sorted within */
    CHECK_STR(p.tensors[0].name, "output.weight");
    CHECK_STR(p.tensors[3].name, "blk.0.attn_k.weight");
    CHECK_STR(p.tensors[p.n_tensors - 1].name, "blk.1.ffn_up_exps.weight");
    gen_plan_free(&p);
    CHECK(gen_spec_find("no-such-model") == NULL);
    CHECK(gen_ftype_find("q4_k_x") == NULL);
}

/* --- the type mix reproduces llama.cpp's on every fixture file -------------------- */

static const gen_ftype *ftype_by_id(uint32_t id)
{
    for (int i = 0; i < gen_ftype_count(); i++)
        if ((uint32_t)gen_ftype_at(i)->id == id)
            return gen_ftype_at(i);
    return NULL;
}

static uint32_t arch_u32(gguf_ctx *g, const char *arch, const char *key, uint32_t dflt)
{
    char k[128];
    uint32_t v;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_get_u32(g, k, &v, NULL) ? dflt : v;
}

/* Returns the number of tensors compared, or -1 after a failure. */
static int check_mix(const char *path)
{
    gguf_ctx *g = NULL;
    sw_err err = {0};
    if (gguf_open(path, GGUF_NO_DATA, &g, &err)) {
        test_fail(__FILE__, __LINE__, "%s", err.msg);
        return -1;
    }
    const char *arch = "";
    uint32_t ft_id = 0;
    gguf_get_str(g, "general.architecture", &arch, NULL);
    gguf_get_u32(g, "general.file_type", &ft_id, NULL);
    gen_mix mix = {
        .ftype = ftype_by_id(ft_id),
        .n_layer = arch_u32(g, arch, "block_count", 0),
        .n_expert = arch_u32(g, arch, "expert_count", 0),
        .n_head = arch_u32(g, arch, "attention.head_count", 1),
        .n_head_kv = arch_u32(g, arch, "attention.head_count_kv", 1),
        .has_output = gguf_find_tensor(g, "output.weight") != NULL,
    };
    int n = 0;
    for (int64_t i = 0; mix.ftype && i < gguf_n_tensors(g); i++, n++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int want = gen_mix_type(&mix, t->name, t->n_dims, t->ne);
        if (want != t->type) {
            test_fail(__FILE__, __LINE__, "%s: %s is %s, the mix says %s", path, t->name,
                      quant_name(t->type), quant_name(want));
            n = -1;
            break;
        }
    }
    gguf_close(g);
    return n;
}

TEST(gen_mix_matches_llama_cpp_on_fixtures)
{
    static const char *const archs[] = {"llama", "qwen2", "qwen3", "mixtral", "qwen2moe",
                                        "qwen3moe", "gptoss"};
    int files = 0, tensors = 0;
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", test_fixture("models"));
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", archs[a]);
        DIR *d = opendir(dir);
        if (!d) {
            test_skip("fixtures not found");
            return;
        }
        for (struct dirent *e; (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 5, ".gguf"))
                continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            int n = check_mix(path);
            if (n < 0) {
                closedir(d);
                return;
            }
            files += n > 0;
            tensors += n;
        }
        closedir(d);
    }
    CHECKF(files >= 30, "only %d fixture files had a file type gen offers", files);
    CHECK(tensors > 500);
}

/* --- values -------------------------------------------------------------------------- */

TEST(gen_values_normal_and_reproducible)
{
    gen_tensor t = {.name = "blk.3.ffn_up.weight", .type = QT_F32, .n_dims = 2,
                    .ne = {4096, 64, 1, 1}, .init = GEN_INIT_NORMAL, .std = 0.015625f};
    const int64_t n = 4096 * 64;
    float *x = malloc(n * sizeof *x), *y = malloc(4096 * sizeof *y);
    CHECK(x && y);
    for (int64_t r = 0; r < 64; r++)
        gen_fill_row(&t, NULL, 7, r, x + r * 4096);
    double mean, std, k4 = 0;
    stats(x, n, &mean, &std);
    for (int64_t i = 0; i < n; i++)
        k4 += pow((x[i] - mean) / std, 4);
    k4 /= n;
    CHECKF(fabs(mean) < 4 * 0.015625 / sqrt((double)n), "mean %g", mean);
    CHECKF(fabs(std / 0.015625 - 1) < 0.01, "std %g", std);
    CHECKF(k4 > 2.6 && k4 < 2.8, "kurtosis %g (Irwin-Hall n=4: 2.7)", k4); /* bell, not flat */
    /* same (seed, name, row): same values; another seed, row or name: others */
    gen_fill_row(&t, NULL, 7, 5, y);
    CHECK(memcmp(y, x + 5 * 4096, 4096 * sizeof *y) == 0);
    gen_fill_row(&t, NULL, 8, 5, y);
    CHECK(memcmp(y, x + 5 * 4096, 4096 * sizeof *y) != 0);
    CHECK(memcmp(x, x + 4096, 4096 * sizeof *x) != 0);
    snprintf(t.name, sizeof t.name, "blk.3.ffn_gate.weight");
    gen_fill_row(&t, NULL, 7, 5, y);
    CHECK(memcmp(y, x + 5 * 4096, 4096 * sizeof *y) != 0);
    /* norms sit around 1 */
    t.init = GEN_INIT_ONE;
    t.std = 0.02f;
    gen_fill_row(&t, NULL, 7, 0, y);
    stats(y, 4096, &mean, &std);
    CHECKF(fabs(mean - 1) < 0.002 && fabs(std - 0.02) < 0.002, "%g %g", mean, std);
    free(x);
    free(y);
}

TEST(gen_values_simd_matches_scalar)
{
    if (quant_cpu_isa() < QUANT_ISA_AVX512) {
        test_skip("no AVX-512");
        return;
    }
    float a[1003], b[1003];
    for (uint64_t key = 1; key < 50; key += 7) {
        gen_gauss_avx512(key * 0x12345678901ull, 0.5f, 0.03f, a, 1003);
        for (int i = 0; i < 1003; i++)
            b[i] = gen_gauss_one(key * 0x12345678901ull, i, 0.5f, 0.03f * GEN_IH4_INV_STD);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    uint16_t h1[1003], h2[1003];
    randn(a, 1003, 3.0f, 9);
    a[0] = 1e-7f; /* an F16 subnormal */
    a[1] = 70000.0f; /* overflows to inf */
    gen_f16_avx512(a, h1, 1003);
    quant_traits_of(QT_F16)->from_float(a, h2, 1003);
    CHECK(memcmp(h1, h2, sizeof h1) == 0);
}

TEST(gen_quant_simd_matches_scalar)
{
    if (quant_cpu_isa() < QUANT_ISA_AVX512) {
        test_skip("no AVX-512");
        return;
    }
    const int64_t n = 256 * 64;
    float *x = malloc(n * sizeof *x);
    uint8_t *a = malloc(n * 4), *b = malloc(n * 4);
    CHECK(x && a && b);
    static const int types[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_Q8_0, QT_F16, QT_BF16, QT_MXFP4};
    for (int s = 0; s < 3; s++) {
        randn(x, n, s == 0 ? 0.02f : 1.0f, 200 + s);
        if (s == 2) { /* zero blocks and sub-blocks, ties in magnitude, all-positive runs */
            memset(x, 0, 256 * sizeof *x);
            memset(x + 512, 0, 16 * sizeof *x);
            for (int i = 1024; i < 1024 + 64; i++)
                x[i] = i % 3 ? 0.5f : -0.5f;
            for (int i = 2048; i < 2048 + 256; i++)
                x[i] = fabsf(x[i]) + 1;
        }
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            const quant_traits *tr = quant_traits_of(types[k]);
            gen_quantizer_for(types[k], false, true)(x, a, n);
            gen_quantizer_for(types[k], false, false)(x, b, n);
            CHECKF(memcmp(a, b, (size_t)(n / tr->blck) * tr->size) == 0, "%s (set %d)", tr->name, s);
        }
    }
    free(x);
    free(a);
    free(b);
}

TEST(gen_rope_freqs_llama3)
{
    gen_plan p;
    CHECK(plan_of("llama-3.1-8b", "f16", &p));
    const gen_tensor *t = gen_plan_find(&p, "rope_freqs.weight");
    CHECK(t && t->ne[0] == 64);
    float f[64];
    gen_fill_row(t, p.spec, 1, 0, f);
    CHECK(f[0] == 1.0f);   /* high frequencies unchanged */
    CHECK(f[63] == 8.0f);  /* low frequencies divided by the factor */
    int blended = 0;
    for (int i = 1; i < 64; i++) {
        CHECK(f[i] >= f[i - 1]);
        blended += f[i] > 1.0f && f[i] < 8.0f;
    }
    CHECK(blended > 0 && blended < 20);
    gen_plan_free(&p);
}

/* --- quantizers ------------------------------------------------------------------------ */

TEST(gen_quant_exact_types_match_reference)
{
    const int64_t n = 32 * 4096;
    float *x = malloc(n * sizeof *x);
    uint8_t *a = malloc(n * 4), *b = malloc(n * 4);
    CHECK(x && a && b);
    static const int types[] = {QT_Q8_0, QT_MXFP4, QT_F16, QT_BF16};
    for (int s = 0; s < 4; s++) {
        randn(x, n, s == 0 ? 0.02f : s == 1 ? 1.0f : s == 2 ? 300.0f : 1e-3f, 100 + s);
        if (s == 3) {
            /* ties: exact E2M1 midpoints and Q8_0 halves, both signs */
            static const float mid[] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f, 0.0f};
            for (int i = 0; i < 2048; i++) {
                x[32 * i] = 8.0f; /* e = 128: the (doubled) grid 0 1 2 3 4 6 8 12 as is */
                x[32 * i + 1 + i % 30] = (i & 1 ? -1 : 1) * mid[i % 8];
            }
            for (int i = 2048; i < 4096; i++) {
                x[32 * i] = 127.0f; /* Q8_0: d = 1 */
                x[32 * i + 1 + i % 30] = (i & 1 ? -1.0f : 1.0f) * (float)(i % 100) + 0.5f;
            }
        }
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            const quant_traits *tr = quant_traits_of(types[k]);
            size_t bytes = (size_t)(n / tr->blck) * tr->size;
            gen_quantizer(types[k], false)(x, a, n);
            tr->from_float(x, b, n);
            CHECKF(memcmp(a, b, bytes) == 0, "%s differs from the reference (set %d)", tr->name, s);
        }
    }
    free(x);
    free(a);
    free(b);
}

/* Relative RMS error of quantizing x with fn, decoded by the type's to_float. */
static double quant_error(int type, gen_quant_fn fn, const float *x, int64_t n)
{
    void *q = malloc((size_t)n * 4);
    float *y = malloc((size_t)n * sizeof *y);
    fn(x, q, n);
    quant_traits_of(type)->to_float(q, y, n);
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += (double)(y[i] - x[i]) * (y[i] - x[i]);
        s += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sqrt(e / s);
}

TEST(gen_quant_fast_kquants_close_to_reference)
{
    const int64_t n = 256 * 512;
    float *x = malloc(n * sizeof *x);
    CHECK(x);
    randn(x, n, 0.02f, 5);
    static const struct { int type; double max; } cases[] = {
        {QT_Q4_K, 0.12}, {QT_Q5_K, 0.06}, {QT_Q6_K, 0.03},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int t = cases[k].type;
        double fast = quant_error(t, gen_quantizer(t, false), x, n);
        double ref = quant_error(t, gen_quantizer(t, true), x, n);
        CHECKF(fast < cases[k].max, "%s: error %.4f", quant_name(t), fast);
        CHECKF(fast < 1.25 * ref, "%s: error %.4f, reference %.4f", quant_name(t), fast, ref);
        CHECK(gen_quantizer(t, true) == quant_traits_of(t)->from_float);
    }
    /* zeros stay zeros */
    memset(x, 0, 256 * sizeof *x);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t q[256];
        float y[256];
        gen_quantizer(cases[k].type, false)(x, q, 256);
        quant_traits_of(cases[k].type)->to_float(q, y, 256);
        for (int i = 0; i < 256; i++)
            CHECK(y[i] == 0.0f);
    }
    free(x);
}

/* --- files, end to end ------------------------------------------------------------------ */

static uint32_t get_u32(gguf_ctx *g, const char *key)
{
    uint32_t v = 0;
    gguf_get_u32(g, key, &v, NULL);
    return v;
}

/* Checks a header-only file of a big model against its plan. */
static void check_header_only(const char *like, const char *type)
{
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/%s-%s.gguf", test_tmpdir(), like, type);
    snprintf(args, sizeof args, "--like %s --type %s --header-only --out '%s'", like, type, path);
    char *out = NULL;
    int rc = run_gen(args, &out);
    CHECKF(rc == 0, "gen %s: %s", like, out);
    free(out);

    gen_plan p;
    CHECK(plan_of(like, type, &p));
    gguf_ctx *g = NULL;
    sw_err err = {0};
    CHECKF(gguf_open(path, GGUF_NO_DATA, &g, &err) == 0, "%s", err.msg);
    const char *arch = "";
    CHECK(gguf_get_str(g, "general.architecture", &arch, NULL) == 0);
    CHECK_STR(arch, p.spec->arch);
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch);
    CHECK_EQ(get_u32(g, key), p.spec->n_layer);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    CHECK_EQ(get_u32(g, key), p.spec->n_embd);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    CHECK_EQ(get_u32(g, key), p.spec->n_head_kv);
    snprintf(key, sizeof key, "%s.expert_used_count", arch);
    CHECK_EQ(get_u32(g, key), p.spec->n_expert_used);
    CHECK_EQ(get_u32(g, "general.file_type"), (uint32_t)p.ftype->id);
    const gguf_str *tokens;
    uint64_t n_tok = 0;
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", &tokens, &n_tok, NULL) == 0);
    CHECK_EQ(n_tok, (uint64_t)p.spec->n_vocab);
    CHECK(gguf_find_kv(g, "tokenizer.ggml.merges") || gguf_find_kv(g, "tokenizer.ggml.scores"));
    CHECK_EQ(gguf_n_tensors(g), p.n_tensors);
    uint64_t end = 0;
    for (int i = 0; i < p.n_tensors; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const gen_tensor *want = &p.tensors[i];
        CHECK_STR(t->name, want->name);
        CHECK_EQ(t->type, want->type);
        CHECK_EQ(t->n_dims, want->n_dims);
        for (int d = 0; d < 4; d++)
            CHECK_EQ(t->ne[d], want->ne[d]);
        end = t->offset + t->size;
    }
    CHECK(gguf_data_offset(g) + end <= gguf_file_size(g));
    CHECK(gguf_file_size(g) - (gguf_data_offset(g) + end) < 32);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECKF((uint64_t)st.st_blocks * 512 < 64 << 20, "%s is not sparse", path);
    gguf_close(g);
    gen_plan_free(&p);
    remove(path);
}

TEST(gen_header_only_big_models)
{
    check_header_only("qwen3-30b-a3b", "q4_k_m");
    check_header_only("mixtral-8x7b", "q4_k_m");
    check_header_only("llama-3.1-8b", "q8_0");
    check_header_only("gpt-oss-20b", "mxfp4");
    check_header_only("gpt-oss-120b", "mxfp4");
    check_header_only("llama-3.2-1b", "f16");
    check_header_only("qwen3-0.6b", "bf16");
}

TEST(gen_header_only_metadata_details)
{
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/oss.gguf", test_tmpdir());
    snprintf(args, sizeof args, "--like gpt-oss-20b --type mxfp4 --header-only --out '%s'", path);
    char *out = NULL;
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    gguf_ctx *g = NULL;
    CHECK(gguf_open(path, GGUF_NO_DATA, &g, NULL) == 0);
    const char *s = "";
    CHECK(gguf_get_str(g, "gpt-oss.rope.scaling.type", &s, NULL) == 0);
    CHECK_STR(s, "yarn");
    float f = 0;
    CHECK(gguf_get_f32(g, "gpt-oss.rope.scaling.factor", &f, NULL) == 0 && f == 32.0f);
    CHECK(gguf_get_f32(g, "gpt-oss.rope.freq_base", &f, NULL) == 0 && f == 150000.0f);
    CHECK_EQ(get_u32(g, "gpt-oss.rope.scaling.original_context_length"), 4096);
    CHECK_EQ(get_u32(g, "gpt-oss.attention.sliding_window"), 128);
    CHECK_EQ(get_u32(g, "gpt-oss.expert_feed_forward_length"), 2880);
    CHECK_EQ(get_u32(g, "gpt-oss.attention.key_length"), 64);
    CHECK(gguf_get_str(g, "general.description", &s, NULL) == 0);
    CHECK_HAS(s, "stand-in");
    const gguf_str *tok;
    uint64_t n = 0;
    CHECK(gguf_get_arr_str(g, "tokenizer.ggml.tokens", &tok, &n, NULL) == 0 && n == 201088);
    CHECK_STR(tok[201087].ptr, "[PAD201087]");
    const gguf_kv *types = gguf_find_kv(g, "tokenizer.ggml.token_type");
    CHECK(types && types->arr_n == 201088 && gguf_arr_i64(types, 201087) == 5);
    CHECK(gguf_get_str(g, "tokenizer.chat_template", &s, NULL) == 0);
    CHECK_HAS(s, "<|start|>");
    gguf_close(g);

    /* Llama 3.1: llama3 rope is a tensor, and the llama keys */
    snprintf(path, sizeof path, "%s/l8.gguf", test_tmpdir());
    snprintf(args, sizeof args, "--like llama-3.1-8b --header-only --out '%s'", path);
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    CHECK(gguf_open(path, GGUF_NO_DATA, &g, NULL) == 0);
    CHECK_EQ(get_u32(g, "llama.vocab_size"), 128256);
    CHECK_EQ(get_u32(g, "llama.rope.dimension_count"), 128);
    CHECK_EQ(get_u32(g, "llama.context_length"), 131072);
    CHECK(gguf_find_tensor(g, "rope_freqs.weight") != NULL);
    CHECK(gguf_find_kv(g, "llama.attention.key_length") == NULL); /* no head_dim in its config */
    CHECK(gguf_get_f32(g, "llama.rope.freq_base", &f, NULL) == 0 && f == 500000.0f);
    gguf_close(g);
}

/* Stats of every tensor of a generated file after dequantization. */
static void check_values(gguf_ctx *g, const gen_plan *p)
{
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const gen_tensor *want = gen_plan_find(p, t->name);
        CHECK(want);
        if (want->init == GEN_INIT_ROPE_FREQS)
            continue;
        float *x = malloc((size_t)t->n_elements * sizeof *x);
        CHECK(x);
        quant_traits_of(t->type)->to_float(gguf_tensor_data(g, t), x, t->n_elements);
        double mean, std;
        stats(x, t->n_elements, &mean, &std);
        free(x);
        double want_mean = want->init == GEN_INIT_ONE ? 1.0 : 0.0;
        double tol = 5 * want->std / sqrt((double)t->n_elements) + 1e-4 * want->std;
        if (t->n_elements < 64)
            tol = 2 * want->std;
        CHECKF(fabs(mean - want_mean) < tol, "%s: mean %g", t->name, mean);
        /* the standard error of a sample std is std / sqrt(2n) */
        double std_tol = 0.02 + 4 / sqrt(2.0 * (double)t->n_elements);
        CHECKF(t->n_elements < 64 || fabs(std / want->std - 1) < std_tol, "%s: std %g, want %g",
               t->name, std, want->std);
    }
}

TEST(gen_tiny_moe_values_and_routing)
{
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/tiny.gguf", test_tmpdir());
    snprintf(args, sizeof args, "--like tiny-moe --type q4_k_m --layers 2 --seed 3 --out '%s'", path);
    char *out = NULL;
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    gen_plan p;
    sw_err err = {0};
    CHECK(gen_plan_build(gen_spec_find("tiny-moe"), gen_ftype_find("q4_k_m"), 2, &p, &err) == 0);
    gguf_ctx *g = NULL;
    CHECKF(gguf_open(path, GGUF_MMAP, &g, &err) == 0, "%s", err.msg);
    CHECK_EQ(gguf_n_tensors(g), p.n_tensors);
    check_values(g, &p);

    /* the router spreads random hidden states over the experts */
    const gguf_tensor *r = gguf_find_tensor(g, "blk.1.ffn_gate_inp.weight");
    CHECK(r && r->type == QT_F32 && r->ne[0] == 512 && r->ne[1] == 64);
    const float *w = gguf_tensor_data(g, r);
    int picks[64] = {0}, distinct_sets = 0;
    uint64_t prev_set = 0;
    float x[512];
    for (int tok = 0; tok < 64; tok++) {
        randn(x, 512, 1.0f, 1000 + tok);
        float logit[64];
        for (int e = 0; e < 64; e++) {
            logit[e] = 0;
            for (int i = 0; i < 512; i++)
                logit[e] += w[e * 512 + i] * x[i];
        }
        uint64_t set = 0;
        for (int k = 0; k < 8; k++) {
            int best = -1;
            for (int e = 0; e < 64; e++)
                if (!(set >> e & 1) && (best < 0 || logit[e] > logit[best]))
                    best = e;
            set |= 1ull << best;
            picks[best]++;
        }
        distinct_sets += set != prev_set;
        prev_set = set;
    }
    int used = 0, most = 0;
    for (int e = 0; e < 64; e++) {
        used += picks[e] > 0;
        most = picks[e] > most ? picks[e] : most;
    }
    CHECKF(used >= 48, "only %d of 64 experts ever picked", used);
    CHECKF(most <= 24, "one expert picked by %d of 64 tokens", most);
    CHECK(distinct_sets == 64);
    gguf_close(g);
    gen_plan_free(&p);
}

/* --- routing through the model -------------------------------------------------------- */

#define RT_LAYERS 4
#define RT_EXPERTS 64
#define RT_USED 8
#define RT_STEPS 100

typedef struct route_rec {
    int step; /* decode step being run */
    uint64_t set[RT_STEPS][RT_LAYERS]; /* experts chosen, one bit each */
    int count[RT_LAYERS][RT_EXPERTS];
    bool bad;
} route_rec;

static void record_route(void *ctx, const model_route *r)
{
    route_rec *rec = ctx;
    if (r->n_tokens != 1 || r->layer >= RT_LAYERS || r->n_used != RT_USED ||
        r->n_expert != RT_EXPERTS || rec->step >= RT_STEPS) {
        rec->bad = true;
        return;
    }
    for (int k = 0; k < RT_USED; k++) {
        rec->set[rec->step][r->layer] |= 1ull << r->experts[k];
        rec->count[r->layer][r->experts[k]]++;
    }
}

/*
 * A generated MoE routes like a trained one: teacher-forced decode of 100
 * pseudo-random tokens (as bench feeds them) through the model itself.
 * Random top-8 of 64 would use all 64 experts per layer in 100 tokens and
 * reuse 12.5% of the previous token's; the trained tinymoe reuses about
 * 2.5x random's share. Before gen's scales were fixed (gen.h, "Scales")
 * this model used ~36 distinct experts per layer and reused 65%.
 */
TEST(gen_tiny_moe_routes_like_a_trained_model)
{
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/route.gguf", test_tmpdir());
    snprintf(args, sizeof args, "--like tiny-moe --type q4_k_m --layers %d --seed 1 --no-vocab "
             "--out '%s'", RT_LAYERS, path);
    char *out = NULL;
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    sw_err err = {0};
    store *st = NULL;
    model *m = NULL;
    kv_cache *kv = NULL;
    model_state *s = NULL;
    CHECKF(!store_open(path, &st, &err), "%s", err.msg);
    CHECKF(!model_load(st, NULL, &m, &err), "%s", err.msg);
    kv_cache_opts ko = {.n_ctx = RT_STEPS + 1};
    CHECKF(!kv_cache_new(m, &ko, &kv, &err), "%s", err.msg);
    CHECKF(!model_state_new(m, NULL, &s, &err), "%s", err.msg);
    model_info info;
    model_get_info(m, &info);
    route_rec *rec = calloc(1, sizeof *rec);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    CHECK(rec && logits);
    model_set_route_hook(m, record_route, rec);
    uint64_t lcg = 12345;
    for (rec->step = 0; rec->step < RT_STEPS; rec->step++) {
        int32_t tok = (int32_t)(rng_next(&lcg) * 150000);
        bool last = rec->step == RT_STEPS - 1; /* the output head only once: it is big */
        CHECKF(!model_forward(m, s, kv, NULL, &tok, 1, last ? logits : NULL, MODEL_LOGITS_LAST,
                              &err), "%s", err.msg);
    }
    CHECK(!rec->bad);
    double finite = 0, amax = 0;
    for (int i = 0; i < info.n_vocab; i++) {
        finite += isfinite(logits[i]);
        amax = fabs(logits[i]) > amax ? fabs(logits[i]) : amax;
    }
    CHECK(finite == info.n_vocab);
    CHECKF(amax > 0.5 && amax < 100, "largest |logit| %g", amax);

    int reused = 0;
    for (int l = 0; l < RT_LAYERS; l++) {
        int distinct = 0, most = 0;
        for (int e = 0; e < RT_EXPERTS; e++) {
            distinct += rec->count[l][e] > 0;
            most = rec->count[l][e] > most ? rec->count[l][e] : most;
        }
        /* random: 64 used, each about 12.5 times, the busiest ~22 */
        CHECKF(distinct >= 56, "layer %d: %d distinct experts in %d tokens", l, distinct, RT_STEPS);
        CHECKF(most <= 40, "layer %d: one expert picked by %d of %d tokens", l, most, RT_STEPS);
        for (int t = 1; t < RT_STEPS; t++)
            reused += __builtin_popcountll(rec->set[t][l] & rec->set[t - 1][l]);
    }
    double reuse = (double)reused / ((RT_STEPS - 1) * RT_LAYERS * RT_USED);
    /* about 15% here; a token-independent residual stream pushes it up (65% before) */
    CHECKF(reuse > 0.10 && reuse < 0.35, "%.1f%% of a token's experts reused from the previous "
           "token (random: 12.5%%)", 100 * reuse);
    free(logits);
    free(rec);
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
}

TEST(gen_same_seed_same_file_other_seed_other_data)
{
    char a[4096], b[4096], c[4096], args[8192];
    char *out = NULL;
    const char *common = "--like tiny-moe --type q4_0 --layers 1 --no-vocab";
    snprintf(a, sizeof a, "%s/a.gguf", test_tmpdir());
    snprintf(b, sizeof b, "%s/b.gguf", test_tmpdir());
    snprintf(c, sizeof c, "%s/c.gguf", test_tmpdir());
    snprintf(args, sizeof args, "%s --threads 1 --out '%s'", common, a);
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    snprintf(args, sizeof args, "%s --threads 3 --out '%s'", common, b);
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    snprintf(args, sizeof args, "%s --seed 2 --out '%s'", common, c);
    CHECKF(run_gen(args, &out) == 0, "%s", out);
    free(out);
    size_t na, nb, nc;
    char *fa = test_read_file(a, &na), *fb = test_read_file(b, &nb), *fc = test_read_file(c, &nc);
    CHECK(fa && fb && fc);
    CHECK(na == nb && na == nc && na > 50000000);
    CHECK(memcmp(fa, fb, na) == 0); /* thread count does not matter */
    gguf_ctx *g = NULL;
    CHECK(gguf_open_memory(fa, na, &g, NULL) == 0);
    size_t data = (size_t)gguf_data_offset(g);
    const gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(t);
    /* the seed is named in general.description, so the headers differ a little;
     * every tensor's data differs */
    CHECK(memcmp(fa + data + t->offset, fc + data + t->offset, (size_t)t->size) != 0);
    CHECK(memcmp(fa + data, fc + data, 4096) != 0);
    gguf_close(g);
    free(fa);
    free(fb);
    free(fc);
}

TEST(gen_cli_errors)
{
    char *out = NULL, args[8192], path[4096];
    CHECK(run_gen("--like no-such-model --out /tmp/x.gguf", &out) == 1);
    CHECK_HAS(out, "unknown model");
    free(out);
    CHECK(run_gen("--like tiny-moe --type q9_9 --out /tmp/x.gguf", &out) == 1);
    CHECK_HAS(out, "unknown --type");
    free(out);
    CHECK(run_gen("--like tiny-moe --layers 0 --out /tmp/x.gguf", &out) == 2);
    free(out);
    CHECK(run_gen("--like tiny-moe", &out) == 2);
    free(out);
    snprintf(path, sizeof path, "%s/exists.gguf", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("keep me", f);
    fclose(f);
    snprintf(args, sizeof args, "--like tiny-moe --header-only --out '%s'", path);
    CHECK(run_gen(args, &out) == 1);
    CHECK_HAS(out, "--force");
    free(out);
    size_t n;
    char *kept = test_read_file(path, &n);
    CHECK(kept && n == 7);
    free(kept);
    snprintf(args, sizeof args, "--like tiny-moe --vocab /nonexistent.gguf --out '%s/v.gguf'",
             test_tmpdir());
    CHECK(run_gen(args, &out) == 1);
    CHECK_HAS(out, "nonexistent");
    free(out);
    CHECK(run_gen("--like tiny-moe --no-vocab --force --out /dev/null", &out) == 1);
    CHECK_HAS(out, "not a regular file");
    free(out);
    CHECK(run_gen("--list", &out) == 0);
    CHECK_HAS(out, "qwen3-30b-a3b");
    CHECK_HAS(out, "tiny-moe");
    free(out);
}
