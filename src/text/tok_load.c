/*
 * tok_load.c — building a tokenizer from tokenizer.ggml.* metadata: the
 * string table, token attributes, merges, special ids, the tables the
 * encoder and decoder use, and the vocabulary queries.
 *
 * Metadata is checked, never trusted: array types and lengths, ids in
 * range, no duplicate tokens. What llama.cpp infers from token text (the
 * end-of-turn token, the end-of-generation set) is inferred the same way,
 * so that a GGUF file behaves here as it does there. One deliberate
 * difference: a byte-level BPE vocabulary without BOS/EOS keys has none,
 * where llama.cpp would default both to token 11.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "text/tok_internal.h"
#include "text/utf8.h"

/* tokenizer.ggml.token_type values */
enum {
    GGUF_TOKEN_UNDEFINED = 0,
    GGUF_TOKEN_NORMAL = 1,
    GGUF_TOKEN_UNKNOWN = 2,
    GGUF_TOKEN_CONTROL = 3,
    GGUF_TOKEN_USER_DEFINED = 4,
    GGUF_TOKEN_UNUSED = 5,
    GGUF_TOKEN_BYTE = 6,
};

#define TOK_MAX_VOCAB (1 << 24)

/* --- the string table -------------------------------------------------- */

static int strtab_grow_slots(tokenizer *t, size_t want)
{
    size_t cap = 1024;
    while (cap < want * 2)
        cap *= 2;
    if (cap > UINT32_MAX)
        return SW_ENOMEM;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return SW_ENOMEM;
    for (int32_t id = 0; id < t->n_str; id++) {
        uint64_t i = tok_hash(t->pool + t->str_off[id], t->str_len[id]) & (cap - 1);
        while (slot[i])
            i = (i + 1) & (cap - 1);
        slot[i] = (uint32_t)id + 1;
    }
    free(t->str_slot);
    t->str_slot = slot;
    t->str_mask = (uint32_t)(cap - 1);
    return 0;
}

/* Appends a new string (the caller knows it is absent) and returns its id. */
static int32_t strtab_add(tokenizer *t, const char *s, size_t n)
{
    if (n > UINT32_MAX - t->pool_len - 1 || t->n_str >= INT32_MAX - 1)
        return SW_ENOMEM;
    if (t->n_str == t->str_cap) {
        int32_t cap = t->str_cap ? t->str_cap * 2 : 1024;
        uint32_t *off = realloc(t->str_off, (size_t)cap * sizeof *off);
        if (!off)
            return SW_ENOMEM;
        t->str_off = off;
        uint32_t *len = realloc(t->str_len, (size_t)cap * sizeof *len);
        if (!len)
            return SW_ENOMEM;
        t->str_len = len;
        t->str_cap = cap;
    }
    if ((size_t)t->n_str * 2 >= (size_t)t->str_mask + 1 && strtab_grow_slots(t, (size_t)t->n_str + 1))
        return SW_ENOMEM;
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + n + 1)
            cap *= 2;
        char *pool = realloc(t->pool, cap);
        if (!pool)
            return SW_ENOMEM;
        t->pool = pool;
        t->pool_cap = cap;
    }
    int32_t id = t->n_str++;
    t->str_off[id] = (uint32_t)t->pool_len;
    t->str_len[id] = (uint32_t)n;
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = 0;
    t->pool_len += n + 1;

    uint64_t i = tok_hash(s, n) & t->str_mask;
    while (t->str_slot[i])
        i = (i + 1) & t->str_mask;
    t->str_slot[i] = (uint32_t)id + 1;
    return id;
}

/* The id of s, adding it as a merge-only string if it is new. */
static int32_t strtab_intern(tokenizer *t, const char *s, size_t n)
{
    int32_t id = tok_lookup(t, s, n);
    return id >= 0 ? id : strtab_add(t, s, n);
}

/* --- tokens ------------------------------------------------------------- */

static uint16_t attr_from_type(int64_t type)
{
    switch (type) {
    case GGUF_TOKEN_NORMAL: return TOK_ATTR_NORMAL;
    case GGUF_TOKEN_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case GGUF_TOKEN_CONTROL: return TOK_ATTR_CONTROL;
    case GGUF_TOKEN_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case GGUF_TOKEN_UNUSED: return TOK_ATTR_UNUSED;
    case GGUF_TOKEN_BYTE: return TOK_ATTR_BYTE;
    default: return 0; /* undefined */
    }
}

/* An optional numeric array with at least n elements: its kv or NULL. */
static int get_opt_array(const gguf_ctx *g, const char *key, uint64_t n, const gguf_kv **out,
                         sw_err *err)
{
    *out = NULL;
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv)
        return 0;
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type == GGUF_TYPE_STRING ||
        kv->arr_type == GGUF_TYPE_ARRAY)
        return sw_errf(err, SW_ETYPE, "tokenizer: %s is not a numeric array", key);
    if (kv->arr_n < n)
        return sw_errf(err, SW_EFORMAT, "tokenizer: %s has %llu entries for %llu tokens", key,
                       (unsigned long long)kv->arr_n, (unsigned long long)n);
    *out = kv;
    return 0;
}

static int load_tokens(tokenizer *t, const gguf_ctx *g, sw_err *err)
{
    const gguf_str *strs;
    uint64_t n;
    int rc = gguf_get_arr_str(g, "tokenizer.ggml.tokens", &strs, &n, err);
    if (rc)
        return sw_err_prefix(err, "tokenizer");
    if (n == 0 || n > TOK_MAX_VOCAB)
        return sw_errf(err, SW_EFORMAT, "tokenizer: %llu tokens", (unsigned long long)n);

    const gguf_kv *scores, *types;
    if ((rc = get_opt_array(g, "tokenizer.ggml.scores", n, &scores, err)) ||
        (rc = get_opt_array(g, "tokenizer.ggml.token_type", n, &types, err)))
        return rc;

    t->n_vocab = (int32_t)n;
    t->score = calloc(n, sizeof *t->score);
    t->attr = calloc(n, sizeof *t->attr);
    if (!t->score || !t->attr || strtab_grow_slots(t, n))
        return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory for %llu tokens",
                       (unsigned long long)n);

    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i].ptr;
        size_t len = (size_t)strs[i].len;
        char empty[32];
        if (len == 0) { /* as llama.cpp: an empty token gets a visible name */
            len = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%llu]", (unsigned long long)i);
            s = empty;
        }
        int32_t dup = tok_lookup(t, s, len);
        if (dup >= 0)
            return sw_errf(err, SW_EFORMAT,
                           "tokenizer: duplicate token '%.*s' has ids %d and %llu",
                           (int)(len > 64 ? 64 : len), s, dup, (unsigned long long)i);
        if (strtab_add(t, s, len) < 0)
            return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory");
        t->score[i] = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
        t->attr[i] = types ? attr_from_type(gguf_arr_i64(types, i)) : TOK_ATTR_NORMAL;
    }
    return 0;
}

/* --- merges ------------------------------------------------------------- */

static int load_merges(tokenizer *t, const gguf_ctx *g, sw_err *err)
{
    const gguf_str *strs;
    uint64_t n;
    int rc = gguf_get_arr_str(g, "tokenizer.ggml.merges", &strs, &n, err);
    if (rc)
        return sw_err_prefix(err, "tokenizer");
    if (n > TOK_MAX_VOCAB * 4ull)
        return sw_errf(err, SW_EFORMAT, "tokenizer: %llu merges", (unsigned long long)n);

    uint64_t cap = 1024; /* at most 2/3 full */
    while (cap < n + n / 2)
        cap *= 2;
    t->merge = malloc(cap * sizeof *t->merge);
    if (!t->merge)
        return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory for %llu merges",
                       (unsigned long long)n);
    t->merge_mask = cap - 1;
    for (uint64_t i = 0; i < cap; i++)
        t->merge[i].key = TOK_MERGE_EMPTY;

    char *cat = NULL;
    size_t cat_cap = 0;
    for (uint64_t r = 0; r < n; r++) {
        const char *s = strs[r].ptr;
        size_t len = (size_t)strs[r].len;
        /* "left right": split at the first space after the first byte */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            continue; /* not a rule; llama.cpp ignores it in effect too */
        size_t nl = (size_t)(sp - s), nr = len - nl - 1;
        if (nl + nr > cat_cap) {
            cat_cap = (nl + nr) * 2;
            char *p = realloc(cat, cat_cap);
            if (!p) {
                free(cat);
                return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory");
            }
            cat = p;
        }
        memcpy(cat, s, nl);
        memcpy(cat + nl, sp + 1, nr);
        int32_t left = strtab_intern(t, s, nl);
        int32_t right = strtab_intern(t, sp + 1, nr);
        int32_t result = strtab_intern(t, cat, nl + nr);
        if (left < 0 || right < 0 || result < 0) {
            free(cat);
            return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory");
        }
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        uint64_t i = tok_hash_pair(left, right) & t->merge_mask;
        while (t->merge[i].key != TOK_MERGE_EMPTY && t->merge[i].key != key)
            i = (i + 1) & t->merge_mask;
        if (t->merge[i].key == key)
            continue; /* the first (lowest-ranked) rule for a pair wins */
        t->merge[i] = (tok_merge){key, (uint32_t)r, result};
    }
    free(cat);
    return 0;
}

/* --- special ids and inferred attributes -------------------------------- */

static void read_special_id(tokenizer *t, const gguf_ctx *g, const char *key, int32_t *id)
{
    if (*id >= t->n_vocab)
        *id = TOK_NONE;
    uint32_t v;
    if (gguf_get_u32(g, key, &v, NULL) == 0 && v < (uint32_t)t->n_vocab)
        *id = (int32_t)v; /* out-of-range ids (often 0xFFFFFFFF: "none") are ignored */
}

static void read_flag(const gguf_ctx *g, const char *key, bool *flag)
{
    bool v;
    if (gguf_get_bool(g, key, &v, NULL) == 0)
        *flag = v;
}

static int32_t find_cstr(const tokenizer *t, const char *s)
{
    int32_t id = tok_lookup(t, s, strlen(s));
    return id < t->n_vocab ? id : TOK_NONE;
}

/* The first token of a NULL-terminated list of texts that the vocabulary has. */
static int32_t find_first(const tokenizer *t, const char *const *texts)
{
    for (; *texts; texts++) {
        int32_t id = find_cstr(t, *texts);
        if (id >= 0)
            return id;
    }
    return TOK_NONE;
}

static void mark_eog(tokenizer *t, int32_t id)
{
    if (id < 0)
        return;
    t->attr[id] |= TOK_ATTR_EOG;
    if (!(t->attr[id] & TOK_ATTR_CONTROL))
        t->attr[id] |= TOK_ATTR_CONTROL; /* a token that ends turns is a control token */
}

static const char *const g_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", /* DeepSeek */
    "<end_of_utterance>", NULL,
};

/* Every token llama.cpp ends generation on, matched by text. */
static const char *const g_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~[",
    /* fill-in-the-middle padding, repository and file separators */
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", NULL,
};

static void infer_special(tokenizer *t, const gguf_ctx *g)
{
    /* gpt-oss (harmony): <|end|> ends a message, not generation; and its
     * channel markup is always rendered, so the parser can see it. */
    int32_t end = find_cstr(t, "<|end|>");
    bool harmony = (find_cstr(t, "<|return|>") >= 0 && find_cstr(t, "<|call|>") >= 0) ||
                   (find_cstr(t, "<|calls|>") >= 0 && find_cstr(t, "<|flush|>") >= 0);

    if (t->eot < 0) {
        t->eot = find_first(t, g_eot_texts);
        if (harmony && t->eot == end)
            t->eot = find_cstr(t, "<|return|>");
    }
    if (t->eom < 0)
        t->eom = find_cstr(t, "<|eom_id|>");
    if (t->eot >= 0)
        t->attr[t->eot] |= TOK_ATTR_CONTROL;
    if (t->eom >= 0)
        t->attr[t->eom] |= TOK_ATTR_CONTROL;

    /* control tokens named "unused" are unused */
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->attr[id] & TOK_ATTR_CONTROL) && strstr(t->pool + t->str_off[id], "unused"))
            t->attr[id] |= TOK_ATTR_UNUSED;

    for (const char *const *p = g_eog_texts; *p; p++)
        mark_eog(t, find_cstr(t, *p));
    mark_eog(t, t->eos);
    mark_eog(t, t->eot);
    mark_eog(t, t->eom);

    static const char *const harmony_markup[] = {"<|channel|>", "<|message|>", "<|start|>",
                                                 "<|constrain|>", NULL};
    for (const char *const *p = harmony_markup; *p; p++) {
        int32_t id = find_cstr(t, *p);
        if (id >= 0)
            t->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    if (harmony && end >= 0 && end != t->eos)
        t->attr[end] = TOK_ATTR_USER_DEFINED;

    /* Gemma 4: </s> is an ordinary token there */
    int32_t s_end = find_cstr(t, "</s>");
    if (find_cstr(t, "<|tool_response>") >= 0 && s_end >= 0 && s_end != t->eos)
        t->attr[s_end] = TOK_ATTR_NORMAL;

    /* Phi-3: special tokens swallow the whitespace after them */
    char name[128] = "";
    const char *gname;
    if (gguf_get_str(g, "general.name", &gname, NULL) == 0) {
        size_t i = 0;
        for (; gname[i] && i + 1 < sizeof name; i++)
            name[i] = (char)tolower((unsigned char)gname[i]);
        name[i] = 0;
    }
    if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t id = 0; id < t->n_vocab; id++)
            if (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
                t->attr[id] |= TOK_ATTR_RSTRIP;
        int32_t id = find_cstr(t, "</s>");
        if (id >= 0)
            t->attr[id] |= TOK_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
        for (const char *const *p = keep; *p; p++)
            if ((id = find_cstr(t, *p)) >= 0)
                t->attr[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
    }
}

static void load_special(tokenizer *t, const gguf_ctx *g)
{
    if (t->kind == TOK_KIND_SPM) {
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = true;
    }
    t->eot = t->eom = t->pad = t->sep = TOK_NONE;
    read_special_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos);
    read_special_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos);
    read_special_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot);
    read_special_id(t, g, "tokenizer.ggml.eom_token_id", &t->eom);
    read_special_id(t, g, "tokenizer.ggml.unknown_token_id", &t->unk);
    read_special_id(t, g, "tokenizer.ggml.seperator_token_id", &t->sep);
    read_special_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad);
    read_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos);
    read_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos);
    if (t->bos < 0)
        t->add_bos = false;
    if (t->eos < 0)
        t->add_eos = false;
    infer_special(t, g);
}

/* --- encoder and decoder tables ------------------------------------------ */

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    unsigned char fx = (unsigned char)t->pool[t->str_off[x]];
    unsigned char fy = (unsigned char)t->pool[t->str_off[y]];
    if (fx != fy)
        return fx < fy ? -1 : 1;
    if (t->str_len[x] != t->str_len[y])
        return t->str_len[x] > t->str_len[y] ? -1 : 1; /* longest first */
    return x < y ? -1 : x > y;
}

static int build_specials(tokenizer *t)
{
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            n++;
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    if (!t->special)
        return SW_ENOMEM;
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            t->special[n++] = id;
    t->n_special = n;
    qsort_r(t->special, n, sizeof *t->special, cmp_special, t);
    size_t i = 0;
    for (unsigned b = 0; b < 256; b++) {
        t->special_from[b] = (uint32_t)i;
        while (i < n && (unsigned char)t->pool[t->str_off[t->special[i]]] == b)
            i++;
    }
    t->special_from[256] = (uint32_t)n;
    return 0;
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100.. in byte order. */
static uint32_t bpe_byte_cp(unsigned b, unsigned *next_extra)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return b;
    return 0x100 + (*next_extra)++;
}

/* The raw byte of an SPM-style byte token "<0xXX>", or -1. */
static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !isxdigit((unsigned char)s[3]) ||
        !isxdigit((unsigned char)s[4]))
        return -1;
    char hex[3] = {s[3], s[4], 0};
    return (int)strtol(hex, NULL, 16);
}

static int build_byte_tables(tokenizer *t)
{
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++) {
        t->byte_tok[b] = TOK_NONE;
        if (t->kind == TOK_KIND_BPE) {
            char u[4];
            int n = utf8_encode(bpe_byte_cp(b, &extra), u);
            memcpy(t->byte_chr[b], u, (size_t)n);
            t->byte_chr_len[b] = (unsigned char)n;
            int32_t id = strtab_intern(t, u, (size_t)n);
            if (id < 0)
                return SW_ENOMEM;
            t->byte_sym[b] = id;
            if (id < t->n_vocab)
                t->byte_tok[b] = id;
        } else {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_tok[b] = find_cstr(t, name);
            if (t->byte_tok[b] < 0 && b < 0x80) {
                char c = (char)b;
                int32_t id = tok_lookup(t, &c, 1);
                t->byte_tok[b] = id < t->n_vocab ? id : TOK_NONE;
            }
        }
        if (t->byte_tok[b] < 0)
            t->byte_tok[b] = t->unk;
    }
    return 0;
}

/* The decoded bytes of token id into out (room for its text's length). */
static size_t token_piece(const tokenizer *t, int32_t id, const int16_t *cp_byte, char *out)
{
    const char *s = t->pool + t->str_off[id];
    size_t n = t->str_len[id];
    unsigned a = t->attr[id];
    if (a & TOK_ATTR_BYTE) {
        int b = parse_byte_token(s, n);
        if (b >= 0) {
            out[0] = (char)b;
            return 1;
        }
    }
    if (!(a & TOK_ATTR_NORMAL)) {
        memcpy(out, s, n);
        return n;
    }
    size_t k = 0;
    if (t->kind == TOK_KIND_SPM) { /* "▁" is a space */
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                out[k++] = ' ';
                i += 3;
            } else {
                out[k++] = s[i++];
            }
        }
        return k;
    }
    /* byte-level BPE: each code point of the table stands for one byte */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int r = utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (r > 0 && cp < 512 && cp_byte[cp] >= 0) {
            out[k++] = (char)cp_byte[cp];
            i += (size_t)r;
        } else { /* not a byte symbol: keep the text as it is */
            size_t m = r > 0 ? (size_t)r : 1;
            memcpy(out + k, s + i, m);
            k += m;
            i += m;
        }
    }
    return k;
}

static int build_pieces(tokenizer *t)
{
    int16_t cp_byte[512];
    for (int i = 0; i < 512; i++)
        cp_byte[i] = -1;
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++)
        cp_byte[bpe_byte_cp(b, &extra)] = (int16_t)b;

    size_t total = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        total += t->str_len[id];
    t->piece_pool = malloc(total ? total : 1);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_pool || !t->piece_off || !t->piece_len)
        return SW_ENOMEM;
    size_t at = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = token_piece(t, id, cp_byte, t->piece_pool + at);
        t->piece_off[id] = (uint32_t)at;
        t->piece_len[id] = (uint32_t)n;
        if (n > t->max_piece)
            t->max_piece = n;
        at += n;
    }
    return 0;
}

/* Whether no token holds a "▁" right after something other than "▁". */
static bool spm_words_are_independent(const tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->pool + t->str_off[id];
        size_t n = t->str_len[id];
        for (size_t i = 1; i + 3 <= n; i++)
            if (memcmp(s + i, "\xE2\x96\x81", 3) == 0 &&
                (i < 3 || memcmp(s + i - 3, "\xE2\x96\x81", 3) != 0))
                return false;
    }
    return true;
}

/* --- load and free ------------------------------------------------------- */

static int load_kind(tokenizer *t, const gguf_ctx *g, sw_err *err)
{
    const char *model;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc)
        return sw_err_prefix(err, "tokenizer");
    if (!strcmp(model, "llama"))
        t->kind = TOK_KIND_SPM;
    else if (!strcmp(model, "gpt2"))
        t->kind = TOK_KIND_BPE;
    else
        return sw_errf(err, SW_EUNSUPPORTED, "tokenizer: unsupported tokenizer model '%s'",
                       model);
    const char *pre;
    if (gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL) == 0)
        snprintf(t->pre, sizeof t->pre, "%s", pre);
    t->add_space_prefix = t->kind == TOK_KIND_SPM;
    read_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
    return 0;
}

int tok_load(const gguf_ctx *g, tokenizer **out, sw_err *err)
{
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory");
    t->bos = t->eos = t->unk = TOK_NONE;

    int rc;
    if ((rc = load_kind(t, g, err)) || (rc = load_tokens(t, g, err)))
        goto fail;
    if (t->kind == TOK_KIND_BPE &&
        ((rc = load_merges(t, g, err)) || (rc = tok_pretok_init(t, err))))
        goto fail;
    load_special(t, g);
    if (t->kind == TOK_KIND_SPM)
        t->spm_word_split = spm_words_are_independent(t);
    if ((rc = build_specials(t)) || (rc = build_byte_tables(t)) || (rc = build_pieces(t))) {
        rc = sw_errf(err, SW_ENOMEM, "tokenizer: out of memory");
        goto fail;
    }
    *out = t;
    return 0;
fail:
    tok_free(t);
    return rc;
}

void tok_free(tokenizer *t)
{
    if (!t)
        return;
    tok_pretok_free(t);
    free(t->pool);
    free(t->str_off);
    free(t->str_len);
    free(t->str_slot);
    free(t->score);
    free(t->attr);
    free(t->piece_pool);
    free(t->piece_off);
    free(t->piece_len);
    free(t->merge);
    free(t->special);
    free(t);
}

/* --- queries ------------------------------------------------------------- */

int tok_kind(const tokenizer *t) { return t->kind; }
const char *tok_pre_name(const tokenizer *t) { return t->pre; }
int32_t tok_n_vocab(const tokenizer *t) { return t->n_vocab; }
bool tok_valid(const tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab; }

const char *tok_text(const tokenizer *t, int32_t id, size_t *len)
{
    if (!tok_valid(t, id)) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = t->str_len[id];
    return t->pool + t->str_off[id];
}

const char *tok_piece(const tokenizer *t, int32_t id, size_t *len)
{
    if (!tok_valid(t, id)) {
        *len = 0;
        return "";
    }
    *len = t->piece_len[id];
    return t->piece_pool + t->piece_off[id];
}

int32_t tok_find(const tokenizer *t, const char *s, size_t len)
{
    int32_t id = tok_lookup(t, s, len);
    return id < t->n_vocab ? id : TOK_NONE;
}

float tok_score(const tokenizer *t, int32_t id) { return tok_valid(t, id) ? t->score[id] : 0.0f; }
unsigned tok_attr(const tokenizer *t, int32_t id) { return tok_valid(t, id) ? t->attr[id] : 0; }

bool tok_is_control(const tokenizer *t, int32_t id)
{
    return (tok_attr(t, id) & TOK_ATTR_CONTROL) != 0;
}

bool tok_is_eog(const tokenizer *t, int32_t id) { return (tok_attr(t, id) & TOK_ATTR_EOG) != 0; }

int32_t tok_bos(const tokenizer *t) { return t->bos; }
int32_t tok_eos(const tokenizer *t) { return t->eos; }
int32_t tok_eot(const tokenizer *t) { return t->eot; }
int32_t tok_pad(const tokenizer *t) { return t->pad; }
int32_t tok_unk(const tokenizer *t) { return t->unk; }
bool tok_add_bos(const tokenizer *t) { return t->add_bos; }
bool tok_add_eos(const tokenizer *t) { return t->add_eos; }
