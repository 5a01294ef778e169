/*
 * gen_specs.c — the model catalogue, and what each architecture's GGUF holds.
 *
 * Hyperparameters are those of the models' Hugging Face configs; tensor
 * names and metadata keys are those llama.cpp's converter writes for the
 * architecture (the fixtures under models/ were made by that converter and
 * show the same layout at small scale).
 *
 * Tensor order is llama-quantize's: tensors outside the blocks first, then
 * block 0, 1, ... (numerically), names sorted bytewise within each group.
 */
#include "gen/gen.h"
#include "quant/quant.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Weights are N(0, 1/row length) (unit gain: an input of RMS 1 gives outputs
 * of RMS 1) except where gen.h's "Scales" says otherwise; these are the
 * other scales. */
#define GEN_STD_EMBD 0.2f      /* token embedding (untied): per element */
#define GEN_STD_LOGIT 2.0f     /* logits of a normalized hidden state */
#define GEN_GAIN_ATTN_OUT 0.3f /* attention's output projection */
#define GEN_STD_NORM 0.02f     /* spread of norm weights around 1 */
#define GEN_STD_BIAS 0.02f
#define GEN_STD_SINK 1.0f  /* gpt-oss attention sinks: logits */

static const gen_spec g_specs[] = {
    {
        .name = "llama-3.2-1b", .arch = "llama", .model_name = "Llama 3.2 1B", .size_label = "1B",
        .vocab = "llama-bpe", .chat_template = "meta-llama-Llama-3.2-3B-Instruct.jinja",
        .n_vocab = 128256, .n_ctx = 131072, .n_embd = 2048, .n_layer = 16, .n_ff = 8192,
        .n_head = 32, .n_head_kv = 8, .head_dim = 64,
        .rope_base = 500000.0f, .norm_eps = 1e-5f, .tied_output = true, .has_head_dim = true,
        .rope = GEN_ROPE_LLAMA3, .rope_factor = 32.0f, .rope_low_freq = 1.0f,
        .rope_high_freq = 4.0f, .rope_orig_ctx = 8192,
    },
    {
        .name = "llama-3.1-8b", .arch = "llama", .model_name = "Llama 3.1 8B", .size_label = "8B",
        .vocab = "llama-bpe", .chat_template = "meta-llama-Llama-3.1-8B-Instruct.jinja",
        .n_vocab = 128256, .n_ctx = 131072, .n_embd = 4096, .n_layer = 32, .n_ff = 14336,
        .n_head = 32, .n_head_kv = 8, .head_dim = 128,
        .rope_base = 500000.0f, .norm_eps = 1e-5f,
        .rope = GEN_ROPE_LLAMA3, .rope_factor = 8.0f, .rope_low_freq = 1.0f,
        .rope_high_freq = 4.0f, .rope_orig_ctx = 8192,
    },
    {
        .name = "mixtral-8x7b", .arch = "llama", .model_name = "Mixtral 8x7B v0.1",
        .size_label = "8x7B", .vocab = "llama-spm",
        .n_vocab = 32000, .n_ctx = 32768, .n_embd = 4096, .n_layer = 32, .n_ff = 14336,
        .n_head = 32, .n_head_kv = 8, .head_dim = 128,
        .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 14336,
        .rope_base = 1000000.0f, .norm_eps = 1e-5f,
    },
    {
        .name = "qwen3-0.6b", .arch = "qwen3", .model_name = "Qwen3 0.6B", .size_label = "0.6B",
        .vocab = "qwen2", .chat_template = "Qwen-Qwen3-0.6B.jinja",
        .n_vocab = 151936, .n_ctx = 40960, .n_embd = 1024, .n_layer = 28, .n_ff = 3072,
        .n_head = 16, .n_head_kv = 8, .head_dim = 128,
        .rope_base = 1000000.0f, .norm_eps = 1e-6f, .tied_output = true, .has_head_dim = true,
    },
    {
        .name = "qwen3-30b-a3b", .arch = "qwen3moe", .model_name = "Qwen3 30B A3B",
        .size_label = "30B-A3B", .vocab = "qwen2", .chat_template = "Qwen-Qwen3-0.6B.jinja",
        .n_vocab = 151936, .n_ctx = 40960, .n_embd = 2048, .n_layer = 48, .n_ff = 6144,
        .n_head = 32, .n_head_kv = 4, .head_dim = 128,
        .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 768,
        .rope_base = 1000000.0f, .norm_eps = 1e-6f, .has_head_dim = true,
    },
    {
        .name = "gpt-oss-20b", .arch = "gpt-oss", .model_name = "gpt-oss 20b", .size_label = "20B",
        .vocab = "llama-bpe", .chat_template = "openai-gpt-oss-120b.jinja",
        .note = "The tokenizer is a stand-in: Llama 3's (llama-bpe), padded to gpt-oss's "
                "201088 tokens, not o200k_harmony.",
        .n_vocab = 201088, .n_ctx = 131072, .n_embd = 2880, .n_layer = 24, .n_ff = 2880,
        .n_head = 64, .n_head_kv = 8, .head_dim = 64,
        .n_expert = 32, .n_expert_used = 4, .n_ff_exp = 2880,
        .rope_base = 150000.0f, .norm_eps = 1e-5f, .has_head_dim = true,
        .rope = GEN_ROPE_YARN, .rope_factor = 32.0f, .rope_orig_ctx = 4096,
        .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f, .sliding_window = 128,
    },
    {
        .name = "gpt-oss-120b", .arch = "gpt-oss", .model_name = "gpt-oss 120b",
        .size_label = "120B", .vocab = "llama-bpe", .chat_template = "openai-gpt-oss-120b.jinja",
        .note = "The tokenizer is a stand-in: Llama 3's (llama-bpe), padded to gpt-oss's "
                "201088 tokens, not o200k_harmony.",
        .n_vocab = 201088, .n_ctx = 131072, .n_embd = 2880, .n_layer = 36, .n_ff = 2880,
        .n_head = 64, .n_head_kv = 8, .head_dim = 64,
        .n_expert = 128, .n_expert_used = 4, .n_ff_exp = 2880,
        .rope_base = 150000.0f, .norm_eps = 1e-5f, .has_head_dim = true,
        .rope = GEN_ROPE_YARN, .rope_factor = 32.0f, .rope_orig_ctx = 4096,
        .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f, .sliding_window = 128,
    },
    {
        /* Not a released model: Qwen3-30B-A3B's layout at CI scale, with
         * enough experts that a small expert cache really streams. */
        .name = "tiny-moe", .arch = "qwen3moe", .model_name = "tiny-moe", .size_label = "64x6M",
        .vocab = "qwen2", .chat_template = "Qwen-Qwen3-0.6B.jinja",
        .note = "Not a released model: the qwen3moe layout at CI scale (64 experts, top-8).",
        .n_vocab = 151936, .n_ctx = 4096, .n_embd = 512, .n_layer = 8, .n_ff = 1536,
        .n_head = 8, .n_head_kv = 4, .head_dim = 64,
        .n_expert = 64, .n_expert_used = 8, .n_ff_exp = 256,
        .rope_base = 1000000.0f, .norm_eps = 1e-6f, .has_head_dim = true,
    },
};

int gen_spec_count(void)
{
    return (int)(sizeof g_specs / sizeof g_specs[0]);
}

const gen_spec *gen_spec_at(int i)
{
    return i >= 0 && i < gen_spec_count() ? &g_specs[i] : NULL;
}

const gen_spec *gen_spec_find(const char *name)
{
    for (int i = 0; i < gen_spec_count(); i++)
        if (!strcasecmp(g_specs[i].name, name))
            return &g_specs[i];
    return NULL;
}

/* --- building the tensor list ------------------------------------------- */

typedef struct plan_builder {
    gen_plan *plan;
    int cap;
    int rc;
    sw_err *err;
} plan_builder;

static void add(plan_builder *b, const char *name, gen_init init, float std, uint32_t n_dims,
                int64_t ne0, int64_t ne1, int64_t ne2)
{
    if (b->rc)
        return;
    gen_plan *p = b->plan;
    if (p->n_tensors == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        gen_tensor *t = realloc(p->tensors, (size_t)cap * sizeof *t);
        if (!t) {
            b->rc = sw_errf(b->err, SW_ENOMEM, "out of memory");
            return;
        }
        p->tensors = t;
        b->cap = cap;
    }
    gen_tensor *t = &p->tensors[p->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->ne[2] = n_dims > 2 ? ne2 : 1;
    t->ne[3] = 1;
    t->init = init;
    t->std = init == GEN_INIT_NORMAL && std == 0 ? 1.0f / sqrtf((float)ne0) : std;
}

/* A weight matrix [in, out] (or a stack of n_expert of them). */
static void add_matrix(plan_builder *b, const char *name, int64_t in, int64_t out, int64_t n_expert)
{
    add(b, name, GEN_INIT_NORMAL, 0, n_expert ? 3 : 2, in, out, n_expert);
}

static void add_layer(plan_builder *b, const gen_spec *s, int64_t il)
{
    char n[64];
    const int64_t E = s->n_embd, q_dim = s->n_head * s->head_dim, kv_dim = s->n_head_kv * s->head_dim;
    const bool gptoss = !strcmp(s->arch, "gpt-oss");
    const bool qwen3 = !strcmp(s->arch, "qwen3") || !strcmp(s->arch, "qwen3moe");

#define NAME(suffix) (snprintf(n, sizeof n, "blk.%" PRId64 ".%s", il, suffix), n)
    add(b, NAME("attn_norm.weight"), GEN_INIT_ONE, GEN_STD_NORM, 1, E, 1, 1);
    add_matrix(b, NAME("attn_q.weight"), E, q_dim, 0);
    add_matrix(b, NAME("attn_k.weight"), E, kv_dim, 0);
    add_matrix(b, NAME("attn_v.weight"), E, kv_dim, 0);
    add(b, NAME("attn_output.weight"), GEN_INIT_NORMAL, GEN_GAIN_ATTN_OUT / sqrtf((float)q_dim), 2,
        q_dim, E, 1);
    if (qwen3) {
        add(b, NAME("attn_q_norm.weight"), GEN_INIT_ONE, GEN_STD_NORM, 1, s->head_dim, 1, 1);
        add(b, NAME("attn_k_norm.weight"), GEN_INIT_ONE, GEN_STD_NORM, 1, s->head_dim, 1, 1);
    }
    if (gptoss) {
        add(b, NAME("attn_q.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 1, q_dim, 1, 1);
        add(b, NAME("attn_k.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 1, kv_dim, 1, 1);
        add(b, NAME("attn_v.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 1, kv_dim, 1, 1);
        add(b, NAME("attn_output.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 1, E, 1, 1);
        add(b, NAME("attn_sinks.weight"), GEN_INIT_NORMAL, GEN_STD_SINK, 1, s->n_head, 1, 1);
        add(b, NAME("post_attention_norm.weight"), GEN_INIT_ONE, GEN_STD_NORM, 1, E, 1, 1);
    } else {
        add(b, NAME("ffn_norm.weight"), GEN_INIT_ONE, GEN_STD_NORM, 1, E, 1, 1);
    }
    if (s->n_expert) {
        const int64_t X = s->n_expert, F = s->n_ff_exp;
        add_matrix(b, NAME("ffn_gate_inp.weight"), E, X, 0);
        add_matrix(b, NAME("ffn_gate_exps.weight"), E, F, X);
        add_matrix(b, NAME("ffn_up_exps.weight"), E, F, X);
        add_matrix(b, NAME("ffn_down_exps.weight"), F, E, X);
        if (gptoss) {
            add(b, NAME("ffn_gate_inp.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 1, X, 1, 1);
            add(b, NAME("ffn_gate_exps.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 2, F, X, 1);
            add(b, NAME("ffn_up_exps.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 2, F, X, 1);
            add(b, NAME("ffn_down_exps.bias"), GEN_INIT_NORMAL, GEN_STD_BIAS, 2, E, X, 1);
        }
    } else {
        add_matrix(b, NAME("ffn_gate.weight"), E, s->n_ff, 0);
        add_matrix(b, NAME("ffn_up.weight"), E, s->n_ff, 0);
        add_matrix(b, NAME("ffn_down.weight"), s->n_ff, E, 0);
    }
#undef NAME
}

/* llama.cpp's order: by block (-1 for file-level tensors), then by name. */
static int tensor_layer(const char *name)
{
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1)
        il = -1;
    return il;
}

static int tensor_order(const void *a, const void *b)
{
    const gen_tensor *x = a, *y = b;
    int lx = tensor_layer(x->name), ly = tensor_layer(y->name);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int spec_is_supported(const gen_spec *s, sw_err *err)
{
    static const char *const archs[] = {"llama", "qwen3", "qwen3moe", "gpt-oss"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(s->arch, archs[i]))
            return 0;
    return sw_errf(err, SW_EUNSUPPORTED, "%s: architecture '%s' has no tensor layout", s->name,
                   s->arch);
}

int gen_plan_build(const gen_spec *spec, const gen_ftype *ftype, int64_t n_layer, gen_plan *out,
                   sw_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = spec_is_supported(spec, err);
    if (rc)
        return rc;
    if (n_layer <= 0)
        n_layer = spec->n_layer;
    if (n_layer > 100000)
        return sw_errf(err, SW_EINVAL, "%" PRId64 " layers is too many", n_layer);
    out->spec = spec;
    out->ftype = ftype;
    out->n_layer = n_layer;

    plan_builder b = {.plan = out, .err = err};
    /* a tied embedding is also the output head: its scale is the logits' */
    const float head_std = GEN_STD_LOGIT / sqrtf((float)spec->n_embd);
    add(&b, "token_embd.weight", GEN_INIT_NORMAL, spec->tied_output ? head_std : GEN_STD_EMBD, 2,
        spec->n_embd, spec->n_vocab, 1);
    add(&b, "output_norm.weight", GEN_INIT_ONE, GEN_STD_NORM, 1, spec->n_embd, 1, 1);
    if (!spec->tied_output)
        add(&b, "output.weight", GEN_INIT_NORMAL, head_std, 2, spec->n_embd, spec->n_vocab, 1);
    if (spec->rope == GEN_ROPE_LLAMA3)
        add(&b, "rope_freqs.weight", GEN_INIT_ROPE_FREQS, 0, 1, spec->head_dim / 2, 1, 1);
    for (int64_t il = 0; il < n_layer; il++)
        add_layer(&b, spec, il);
    if (b.rc) {
        gen_plan_free(out);
        return b.rc;
    }
    qsort(out->tensors, (size_t)out->n_tensors, sizeof *out->tensors, tensor_order);

    gen_mix mix = {
        .ftype = ftype, .n_layer = n_layer, .n_expert = spec->n_expert,
        .n_head = spec->n_head, .n_head_kv = spec->n_head_kv, .has_output = !spec->tied_output,
    };
    for (int i = 0; i < out->n_tensors; i++) {
        gen_tensor *t = &out->tensors[i];
        t->type = gen_mix_type(&mix, t->name, t->n_dims, t->ne);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        const quant_traits *tr = quant_traits_of(t->type);
        if (!tr || n % tr->blck || t->ne[0] % tr->blck) {
            rc = sw_errf(err, SW_EUNSUPPORTED, "tensor '%s': rows of %" PRId64 " do not fit type %s",
                         t->name, t->ne[0], quant_name(t->type));
            gen_plan_free(out);
            return rc;
        }
        t->size = (uint64_t)(n / tr->blck) * tr->size;
        out->n_params += n;
        out->n_bytes += t->size;
    }
    return 0;
}

void gen_plan_free(gen_plan *plan)
{
    free(plan->tensors);
    plan->tensors = NULL;
    plan->n_tensors = 0;
}

const gen_tensor *gen_plan_find(const gen_plan *plan, const char *name)
{
    for (int i = 0; i < plan->n_tensors; i++)
        if (!strcmp(plan->tensors[i].name, name))
            return &plan->tensors[i];
    return NULL;
}

/* --- metadata ------------------------------------------------------------- */

typedef struct kv_builder {
    gguf_writer *w;
    const char *arch;
    int rc;
} kv_builder;

/* "<arch>.<key>" */
static const char *akey(const kv_builder *b, const char *key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", b->arch, key);
    return buf;
}

static void kv_u32(kv_builder *b, const char *key, int64_t v)
{
    char k[128];
    if (!b->rc)
        b->rc = gguf_writer_set_u32(b->w, akey(b, key, k, sizeof k), (uint32_t)v);
}

static void kv_f32(kv_builder *b, const char *key, float v)
{
    char k[128];
    if (!b->rc)
        b->rc = gguf_writer_set_f32(b->w, akey(b, key, k, sizeof k), v);
}

static void kv_str(kv_builder *b, const char *key, const char *v)
{
    char k[128];
    if (!b->rc)
        b->rc = gguf_writer_set_str(b->w, akey(b, key, k, sizeof k), v);
}

/* The <arch>.* keys, in the converter's order. */
static void arch_keys(kv_builder *b, const gen_plan *p)
{
    const gen_spec *s = p->spec;
    const bool gptoss = !strcmp(s->arch, "gpt-oss");
    kv_u32(b, "block_count", p->n_layer);
    kv_u32(b, "context_length", s->n_ctx);
    kv_u32(b, "embedding_length", s->n_embd);
    kv_u32(b, "feed_forward_length", s->n_ff);
    kv_u32(b, "attention.head_count", s->n_head);
    kv_u32(b, "attention.head_count_kv", s->n_head_kv);
    if (s->rope == GEN_ROPE_YARN) {
        kv_str(b, "rope.scaling.type", "yarn");
        kv_f32(b, "rope.scaling.factor", s->rope_factor);
        kv_u32(b, "rope.scaling.original_context_length", s->rope_orig_ctx);
        kv_f32(b, "rope.scaling.yarn_beta_fast", s->yarn_beta_fast);
        kv_f32(b, "rope.scaling.yarn_beta_slow", s->yarn_beta_slow);
    }
    kv_f32(b, "rope.freq_base", s->rope_base);
    kv_f32(b, "attention.layer_norm_rms_epsilon", s->norm_eps);
    if (s->n_expert) {
        kv_u32(b, "expert_count", s->n_expert);
        kv_u32(b, "expert_used_count", s->n_expert_used);
    }
    if (s->has_head_dim) {
        kv_u32(b, "attention.key_length", s->head_dim);
        kv_u32(b, "attention.value_length", s->head_dim);
    }
    if (gptoss)
        kv_u32(b, "attention.sliding_window", s->sliding_window);
    if (!strcmp(s->arch, "llama")) {
        kv_u32(b, "vocab_size", s->n_vocab);
        kv_u32(b, "rope.dimension_count", s->head_dim);
    } else if (s->n_expert) {
        kv_u32(b, "expert_feed_forward_length", s->n_ff_exp);
    }
}

int gen_plan_metadata(const gen_plan *p, uint64_t seed, gguf_writer *w, sw_err *err)
{
    const gen_spec *s = p->spec;
    char desc[1024], layers[96] = "";
    if (p->n_layer != s->n_layer)
        snprintf(layers, sizeof layers, " Block count reduced to %" PRId64 " of %" PRId64 ".",
                 p->n_layer, s->n_layer);
    snprintf(desc, sizeof desc,
             "Random weights, made by spillway gen --like %s --type %s --seed %" PRIu64
             ": the tensor shapes, types and metadata of %s, not its weights.%s%s%s",
             s->name, p->ftype->name, seed, s->model_name, layers, s->note ? " " : "",
             s->note ? s->note : "");

    kv_builder b = {.w = w, .arch = s->arch};
    b.rc = gguf_writer_set_str(w, "general.architecture", s->arch);
    if (!b.rc)
        b.rc = gguf_writer_set_str(w, "general.type", "model");
    if (!b.rc)
        b.rc = gguf_writer_set_str(w, "general.name", s->model_name);
    if (!b.rc)
        b.rc = gguf_writer_set_str(w, "general.description", desc);
    if (!b.rc)
        b.rc = gguf_writer_set_str(w, "general.size_label", s->size_label);
    arch_keys(&b, p);
    return b.rc ? sw_errf(err, b.rc, "metadata: %s", sw_strerror(b.rc)) : 0;
}
