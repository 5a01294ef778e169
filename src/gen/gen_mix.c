/*
 * gen_mix.c — file types, and which storage type each tensor gets in one.
 *
 * A "Q4_K_M" file is not all Q4_K: llama.cpp's quantizer gives some tensors
 * more bits (the output matrix, attn_v and ffn_down on the first and last
 * eighth of the layers and every third one between, attention of 8-expert
 * models), and falls back to a 32-element type where a row is not a
 * multiple of 256. These are its rules for the file types gen offers
 * (llama_tensor_get_type without an importance matrix), restated so that a
 * generated file has the type mix of a real download. The fixtures' files,
 * quantized by llama.cpp, are the test of this table.
 */
#include "gen/gen.h"
#include "quant/quant.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* llama_ftype values (general.file_type). */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8,
    FT_Q5_1 = 9, FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13,
    FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18,
    FT_IQ4_NL = 25, FT_BF16 = 32, FT_MXFP4_MOE = 38,
};

static const gen_ftype g_ftypes[] = {
    {"f32", FT_ALL_F32, QT_F32},     {"f16", FT_F16, QT_F16},
    {"bf16", FT_BF16, QT_BF16},      {"q8_0", FT_Q8_0, QT_Q8_0},
    {"q4_0", FT_Q4_0, QT_Q4_0},      {"q4_1", FT_Q4_1, QT_Q4_1},
    {"q5_0", FT_Q5_0, QT_Q5_0},      {"q5_1", FT_Q5_1, QT_Q5_1},
    {"q2_k", FT_Q2_K, QT_Q2_K},      {"q3_k_s", FT_Q3_K_S, QT_Q3_K},
    {"q3_k_m", FT_Q3_K_M, QT_Q3_K},  {"q3_k_l", FT_Q3_K_L, QT_Q3_K},
    {"q4_k_s", FT_Q4_K_S, QT_Q4_K},  {"q4_k_m", FT_Q4_K_M, QT_Q4_K},
    {"q5_k_s", FT_Q5_K_S, QT_Q5_K},  {"q5_k_m", FT_Q5_K_M, QT_Q5_K},
    {"q6_k", FT_Q6_K, QT_Q6_K},      {"iq4_nl", FT_IQ4_NL, QT_IQ4_NL},
    {"mxfp4", FT_MXFP4_MOE, QT_MXFP4}, /* experts MXFP4, the rest Q8_0 */
};

int gen_ftype_count(void)
{
    return (int)(sizeof g_ftypes / sizeof g_ftypes[0]);
}

const gen_ftype *gen_ftype_at(int i)
{
    return i >= 0 && i < gen_ftype_count() ? &g_ftypes[i] : NULL;
}

const gen_ftype *gen_ftype_find(const char *name)
{
    for (int i = 0; i < gen_ftype_count(); i++)
        if (!strcasecmp(g_ftypes[i].name, name))
            return &g_ftypes[i];
    if (!strcasecmp(name, "mxfp4_moe"))
        return gen_ftype_find("mxfp4");
    return NULL;
}

static bool has(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Does llama-quantize convert this tensor at all? */
static bool is_quantized(const char *name, uint32_t n_dims)
{
    return ends_with(name, "weight") && n_dims >= 2 && !has(name, "_norm.weight") &&
           !has(name, "ffn_gate_inp.weight");
}

/* The first and last eighth of the layers, and every third between. */
static bool use_more_bits(int64_t il, int64_t n)
{
    return il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2;
}

static int64_t layer_of(const char *name)
{
    int il = 0;
    return sscanf(name, "blk.%d.", &il) == 1 ? il : 0;
}

static int type_attn_v(const gen_mix *m, int ft, int type, int64_t il)
{
    const int64_t gqa = m->n_head_kv ? m->n_head / m->n_head_kv : 1;
    if (ft == FT_Q2_K)
        type = gqa >= 4 ? QT_Q4_K : QT_Q3_K;
    else if (ft == FT_Q3_K_M)
        type = il < 2 ? QT_Q5_K : QT_Q4_K;
    else if (ft == FT_Q3_K_L)
        type = QT_Q5_K;
    else if (ft == FT_IQ4_NL && gqa >= 4)
        type = QT_Q5_K;
    else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(il, m->n_layer))
        type = QT_Q6_K;
    else if (ft == FT_Q4_K_S && il < 4)
        type = QT_Q5_K;
    if (m->n_expert == 8)
        type = QT_Q8_0;
    return type;
}

static int type_ffn_down(const gen_mix *m, int ft, int type, int64_t il)
{
    const int64_t n = m->n_layer;
    if (ft == FT_Q2_K)
        type = QT_Q3_K;
    else if (ft == FT_Q3_K_M)
        type = il < n / 16 ? QT_Q5_K : QT_Q4_K;
    else if (ft == FT_Q3_K_L)
        type = QT_Q5_K;
    else if (ft == FT_Q4_K_M)
        type = use_more_bits(il, n) ? QT_Q6_K : type;
    else if (ft == FT_IQ4_NL && il < n / 8)
        type = QT_Q5_K;
    else if (ft == FT_Q5_K_M && use_more_bits(il, n))
        type = QT_Q6_K;
    else if (ft == FT_Q4_K_S && il < n / 8)
        type = QT_Q5_K;
    return type;
}

static int type_attn_output(const gen_mix *m, int ft, int type)
{
    if (m->n_expert == 8) {
        if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL ||
            ft == FT_Q4_K_S || ft == FT_Q4_K_M)
            type = QT_Q5_K;
    } else if (ft == FT_Q2_K) {
        type = QT_Q3_K;
    } else if (ft == FT_Q3_K_M) {
        type = QT_Q4_K;
    } else if (ft == FT_Q3_K_L) {
        type = QT_Q5_K;
    }
    return type;
}

/* Rows that are not a multiple of the chosen type's block. */
static int type_fallback(int type, int64_t ne0)
{
    const quant_traits *tr = quant_traits_of(type);
    if (tr && ne0 % tr->blck == 0)
        return type;
    switch (type) {
    case QT_Q2_K: case QT_Q3_K: type = QT_IQ4_NL; break;
    case QT_Q4_K: type = QT_Q5_0; break;
    case QT_Q5_K: type = QT_Q5_1; break;
    case QT_Q6_K: type = QT_Q8_0; break;
    default: break;
    }
    tr = quant_traits_of(type);
    return tr && ne0 % tr->blck == 0 ? type : QT_F16;
}

int gen_mix_type(const gen_mix *m, const char *name, uint32_t n_dims, const int64_t *ne)
{
    const int ft = m->ftype->id;
    int type = m->ftype->base;
    if (!is_quantized(name, n_dims))
        return QT_F32;
    /* F32, F16, BF16: every quantized tensor simply takes the type. */
    if (type == QT_F32 || type == QT_F16 || type == QT_BF16)
        return type;

    const bool is_output = !strcmp(name, "output.weight") ||
                           (!m->has_output && !strcmp(name, "token_embd.weight"));
    const int64_t il = layer_of(name);
    if (is_output) {
        const quant_traits *tr = quant_traits_of(type);
        if (ft == FT_MXFP4_MOE || ne[0] % tr->blck)
            type = QT_Q8_0;
        else if (type != QT_Q8_0)
            type = QT_Q6_K;
    } else if (ft == FT_MXFP4_MOE) {
        type = n_dims > 2 && ne[2] > 1 ? QT_MXFP4 : QT_Q8_0;
    } else if (!strcmp(name, "token_embd.weight")) {
        /* no rule for the file types offered here */
    } else if (has(name, "attn_v.weight"))
        type = type_attn_v(m, ft, type, il);
    else if (has(name, "attn_k.weight")) {
        if (m->n_expert == 8)
            type = QT_Q8_0;
    } else if (has(name, "ffn_down"))
        type = type_ffn_down(m, ft, type, il);
    else if (has(name, "attn_output.weight"))
        type = type_attn_output(m, ft, type);
    return type_fallback(type, ne[0]);
}
