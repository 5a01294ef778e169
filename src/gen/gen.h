/*
 * gen.h — synthetic models: a real model's GGUF layout, random weights.
 *
 * `spillway gen --like qwen3-30b-a3b --type q4_k_m` writes a file that has
 * exactly the tensor names, shapes, types and metadata that llama.cpp's
 * converter and quantizer would produce for that model, so every loader,
 * store and benchmark can be exercised at real scale without downloading
 * tens of gigabytes. Only the values are invented.
 *
 * The parts:
 *
 *   catalogue (gen_specs.c)  One gen_spec per model: the hyperparameters of
 *       its Hugging Face config. gen_plan_build() turns a spec into the list
 *       of tensors the architecture has (llama, qwen3, qwen3moe, gpt-oss), in
 *       the order llama-quantize writes them (file-level tensors, then layer
 *       by layer, names sorted within each), and gen_plan_metadata() writes
 *       the general.* and <arch>.* keys the converter writes.
 *
 *   type mix (gen_mix.c)  Which storage type each tensor gets for a file
 *       type such as Q4_K_M: llama.cpp's rules (output in Q6_K, attn_v and
 *       ffn_down in Q6_K on some layers, Q8_0 attention for 8-expert models,
 *       fall-backs for rows that are not a multiple of 256, ...). Norms,
 *       biases, routers and other 1-D tensors stay F32.
 *
 *   values (gen_quant.c)  Element i of row r of a tensor is a function of
 *       (seed, tensor name, r, i) only, so the output does not depend on the
 *       thread count or chunking, and the same seed gives the same weights
 *       in every storage type. Values are approximately normal (the sum of
 *       four 16-bit uniforms from one 64-bit hash: Irwin-Hall, tails cut at
 *       3.46 sigma) with mean 0 and, for most matrices, std 1/sqrt(row
 *       length) (unit gain: activations keep their scale); norms are near
 *       1. The exceptions make routing realistic (Scales, below). The
 *       K-quants are written by
 *       single-pass quantizers (scales from each sub-block's range, no
 *       search): about ten times faster than the reference quantizers, at an
 *       error a few per cent higher. gen_options.exact selects the reference
 *       ones (llama-quantize's bytes for the same floats).
 *
 *   writer (gen_write.c)  The GGUF writer writes the header; tensors are
 *       then produced in chunks of rows (never a whole tensor in memory):
 *       the thread pool fills one buffer while a writer thread appends the
 *       previous one to the file, through a ring of three buffers, with
 *       O_DIRECT where the file system has it (so a model-sized file does
 *       not flush the page cache, and on VMs it is also 4x faster).
 *       header_only writes the real header and leaves the data as a hole (a
 *       sparse file of the full size, reading as zeros), so the layout of a
 *       60 GB model can be checked in milliseconds.
 *
 * Scales. With every matrix at unit gain, a generated MoE routed almost
 * the same experts for every token (qwen3-30b-a3b: ~30 distinct experts of
 * 128 per layer over 100 tokens, 79% of a token's experts reused from the
 * previous one; random routing: 128 and 6%). Two causes, both fixed here:
 *   - The token embedding was drawn as a matrix with n_embd inputs (std
 *     1/sqrt(n_embd)), so a token's own vector had norm ~1 while every layer
 *     adds vectors of per-element RMS ~0.1-1 (norm ~sqrt(n_embd)): from the
 *     first attention on, the token itself was a few per cent of the
 *     residual stream. The embedding is a lookup, not a projection: its rows
 *     now have per-element std 0.2, the scale of what one layer writes.
 *   - Random attention is nearly uniform (scores of std ~1), so its output
 *     is mostly the mean of the context's values: a vector that consecutive
 *     tokens share, and that every later layer's attention averages and
 *     passes on again. At unit gain that shared part grew with depth until
 *     it dominated the residual stream, and with it every router's input.
 *     Trained heads attend to a few positions instead. attn_output gets a
 *     gain of 0.3: the context still colours the residual stream (so
 *     consecutive tokens share about twice random's experts, as the trained
 *     tinymoe does: 15.4% against 6.25%), but the token-specific part
 *     (embedding, FFN and expert outputs, functions of the token) dominates
 *     at every depth.
 *   The router keeps unit gain: logits of std ~1 per expert, the spread of
 *   the trained tinymoe's routers on random inputs (0.3-0.8); the top-k
 *   choice does not depend on the router's scale, only the mixing weights
 *   do. The output head (output.weight, or a tied token_embd) has std
 *   2/sqrt(n_embd): logits of std ~2. The resulting routing statistics are
 *   in bench/RESULTS.md (streaming section); tests/test_gen.c checks
 *   tiny-moe's through the model itself.
 *
 * Tokenizer: gen copies every tokenizer.* key from a GGUF holding the
 * family's vocabulary (the fixtures' ggml-vocab-*.gguf), padding the token
 * list with "[PAD<i>]" entries up to the model's vocabulary size as the
 * converter does.
 */
#ifndef SW_GEN_H
#define SW_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "util/err.h"
#include "util/pool.h"

/* --- catalogue ------------------------------------------------------------ */

typedef enum gen_rope {
    GEN_ROPE_NONE,
    GEN_ROPE_LLAMA3, /* frequency factors in rope_freqs.weight, no keys */
    GEN_ROPE_YARN,   /* rope.scaling.* keys */
} gen_rope;

typedef struct gen_spec {
    const char *name;          /* what --like takes: "qwen3-30b-a3b" */
    const char *arch;          /* general.architecture: llama, qwen3, qwen3moe, gpt-oss */
    const char *model_name;    /* general.name */
    const char *size_label;    /* general.size_label */
    const char *vocab;         /* tokenizer: ggml-vocab-<vocab>.gguf */
    const char *chat_template; /* a file of fixtures/templates, or NULL */
    const char *note;          /* appended to general.description, or NULL */
    int64_t n_vocab, n_ctx, n_embd, n_layer, n_ff;
    int64_t n_head, n_head_kv, head_dim;
    int64_t n_expert, n_expert_used, n_ff_exp; /* 0 for dense models */
    float rope_base, norm_eps;
    bool tied_output;  /* no output.weight: logits reuse token_embd */
    bool has_head_dim; /* the config states head_dim: key/value_length written */
    gen_rope rope;
    float rope_factor;                   /* LLAMA3, YARN */
    float rope_low_freq, rope_high_freq; /* LLAMA3 */
    int64_t rope_orig_ctx;               /* LLAMA3, YARN */
    float yarn_beta_fast, yarn_beta_slow;
    int64_t sliding_window; /* gpt-oss: every other layer */
} gen_spec;

int gen_spec_count(void);
const gen_spec *gen_spec_at(int i);
const gen_spec *gen_spec_find(const char *name); /* case-insensitive; NULL if unknown */

/* --- file types and the type mix ------------------------------------------ */

typedef struct gen_ftype {
    const char *name; /* what --type takes: "q4_k_m" */
    int id;           /* llama_ftype, stored as general.file_type */
    int base;         /* quant_type of most weights */
} gen_ftype;

int gen_ftype_count(void);
const gen_ftype *gen_ftype_at(int i);
const gen_ftype *gen_ftype_find(const char *name); /* case-insensitive */

/* What llama.cpp's quantizer needs to know about the model. */
typedef struct gen_mix {
    const gen_ftype *ftype;
    int64_t n_layer, n_expert, n_head, n_head_kv;
    bool has_output; /* output.weight exists (else token_embd plays its part) */
} gen_mix;

/* The storage type of a tensor: F32 for those llama-quantize leaves alone
 * (norms, biases, routers, 1-D tensors), else the file type's choice. */
int gen_mix_type(const gen_mix *mix, const char *name, uint32_t n_dims, const int64_t *ne);

/* --- plan: the tensors of one file ---------------------------------------- */

typedef enum gen_init {
    GEN_INIT_NORMAL,     /* N(0, std^2) */
    GEN_INIT_ONE,        /* 1 + N(0, std^2): norm weights */
    GEN_INIT_ROPE_FREQS, /* Llama 3's rope frequency factors (exact) */
} gen_init;

typedef struct gen_tensor {
    char name[64];
    int type; /* quant_type */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length */
    gen_init init;
    float std;
    uint64_t size; /* bytes */
} gen_tensor;

typedef struct gen_plan {
    const gen_spec *spec;
    const gen_ftype *ftype;
    int64_t n_layer; /* may differ from spec->n_layer (--layers) */
    gen_tensor *tensors;
    int n_tensors;
    int64_t n_params;
    uint64_t n_bytes; /* tensor data, unpadded */
} gen_plan;

/* n_layer <= 0 keeps the spec's block count. */
int gen_plan_build(const gen_spec *spec, const gen_ftype *ftype, int64_t n_layer, gen_plan *out,
                   sw_err *err);
void gen_plan_free(gen_plan *plan);
const gen_tensor *gen_plan_find(const gen_plan *plan, const char *name);

/* general.* and <arch>.* keys. gen_write then adds the tokenizer's, and last
 * general.quantization_version and general.file_type, where llama-quantize
 * puts them. */
int gen_plan_metadata(const gen_plan *plan, uint64_t seed, gguf_writer *w, sw_err *err);

/* --- values ----------------------------------------------------------------- */

/* The n values of row `row` of tensor t (n = t->ne[0]). */
void gen_fill_row(const gen_tensor *t, const gen_spec *spec, uint64_t seed, int64_t row,
                  float *dst);
/* Quantizer for a type: the fast single-pass one for Q4_K/Q5_K/Q6_K unless
 * exact, else the reference from_float. NULL if the type has none. */
typedef void (*gen_quant_fn)(const float *restrict x, void *restrict y, int64_t n);
gen_quant_fn gen_quantizer(int type, bool exact);

/* --- writing ---------------------------------------------------------------- */

typedef struct gen_options {
    const char *out;           /* path of the GGUF to write */
    uint64_t seed;
    const char *vocab_path;    /* GGUF whose tokenizer.* keys are copied; NULL: none */
    const char *template_path; /* chat template file (overrides the vocab's); NULL: none */
    bool header_only;          /* metadata and tensor infos; data left as a hole */
    bool exact;                /* reference quantizers (slow) */
    sw_pool *pool;             /* NULL: single-threaded */
    /* Called after each chunk is handed to the writer, from the calling thread. */
    void (*progress)(void *ctx, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
} gen_options;

/* Copies the tokenizer of the GGUF at path into w, padded to n_vocab. */
int gen_copy_tokenizer(gguf_writer *w, const char *path, int64_t n_vocab, sw_err *err);

int gen_write(const gen_plan *plan, const gen_options *opt, sw_err *err);

#endif
