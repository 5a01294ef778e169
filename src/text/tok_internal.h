/*
 * tok_internal.h — the tokenizer's representation, shared by its .c files.
 *
 * Strings. Every vocabulary string lives once in `pool` (NUL-terminated),
 * found by id through str_off/str_len and by content through an
 * open-addressing hash (str_slot). For byte-level BPE the table also holds
 * "merge-only" strings: a merge rule may name a left or right part, or
 * produce a result, that is not itself a token. Those get ids >= n_vocab,
 * so BPE can merge on integer ids alone; a word that ends as such a symbol
 * is spelled with byte tokens, as the reference implementations do.
 *
 * Merges. merge[] maps the id pair (left, right) to the merge's rank and
 * the id of the merged string; the first rule for a pair wins.
 *
 * Specials. special[] lists the tokens the partition step may cut out of
 * the text (control, unknown and user-defined tokens), bucketed by their
 * first byte and, inside a bucket, longest first.
 */
#ifndef SW_TOK_INTERNAL_H
#define SW_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "text/tokenizer.h"

#define TOK_MAX_REGEX 6
#define TOK_NONE (-1)

typedef struct tok_merge {
    uint64_t key;    /* (left << 32) | right; TOK_MERGE_EMPTY when free */
    uint32_t rank;   /* position in tokenizer.ggml.merges: lower merges first */
    int32_t result;  /* string id of left + right */
} tok_merge;
#define TOK_MERGE_EMPTY UINT64_MAX

struct tokenizer {
    int kind;         /* TOK_KIND_* */
    char pre[64];     /* tokenizer.ggml.pre */
    int32_t n_vocab;  /* real tokens: ids 0 .. n_vocab-1 */
    int32_t n_str;    /* plus merge-only strings */
    int32_t str_cap;

    char *pool;       /* all strings, each followed by a NUL */
    size_t pool_len, pool_cap;
    uint32_t *str_off; /* [str_cap] */
    uint32_t *str_len; /* [str_cap] */
    uint32_t *str_slot; /* hash slots: id + 1, 0 when free */
    uint32_t str_mask;  /* slot count - 1 */

    float *score;     /* [n_vocab] */
    uint16_t *attr;   /* [n_vocab] TOK_ATTR_* */

    char *piece_pool; /* decoded bytes of every token */
    uint32_t *piece_off, *piece_len; /* [n_vocab] */
    size_t max_piece;

    /* byte-level BPE */
    tok_merge *merge;
    uint64_t merge_mask;
    int32_t byte_sym[256]; /* string id of the symbol for raw byte b */
    unsigned char byte_chr[256][2]; /* its UTF-8 (GPT-2 byte-to-unicode) */
    unsigned char byte_chr_len[256];
    bool ignore_merges;    /* a word that is a token is taken whole (Llama 3) */
    bool nfc;              /* NFC-normalise text first (Qwen) */
    int n_regex;
    pcre2_code *regex[TOK_MAX_REGEX]; /* applied in turn, each splitting the pieces of the last */

    /* SentencePiece */
    bool add_space_prefix;
    bool spm_word_split; /* no token has "▁" after other text: merging never
                            crosses the start of a word, so words merge alone */

    /* the token for a raw byte nothing else spells: <0xXX> or the byte's BPE
     * symbol; TOK_NONE if the vocabulary has neither */
    int32_t byte_tok[256];

    int32_t bos, eos, eot, eom, unk, pad, sep;
    bool add_bos, add_eos;

    int32_t *special;
    size_t n_special;
    uint32_t special_from[257];
};

/* Hash of a byte string (for the string table). */
static inline uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t tok_hash_pair(int32_t left, int32_t right)
{
    uint64_t h = ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

/* String id (real or merge-only) of exactly these bytes, or TOK_NONE. */
static inline int32_t tok_lookup(const tokenizer *t, const char *s, size_t n)
{
    uint64_t i = tok_hash(s, n) & t->str_mask;
    for (;;) {
        uint32_t v = t->str_slot[i];
        if (v == 0)
            return TOK_NONE;
        int32_t id = (int32_t)(v - 1);
        if (t->str_len[id] == n && memcmp(t->pool + t->str_off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->str_mask;
    }
}

/* The merge rule for (left, right), or NULL. */
static inline const tok_merge *tok_merge_find(const tokenizer *t, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t i = tok_hash_pair(left, right) & t->merge_mask;
    for (;;) {
        const tok_merge *m = &t->merge[i];
        if (m->key == key)
            return m;
        if (m->key == TOK_MERGE_EMPTY)
            return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* tok_pretok.c: chooses the family's regexes and flags from t->pre and
 * compiles them. */
int tok_pretok_init(tokenizer *t, sw_err *err);
void tok_pretok_free(tokenizer *t);

#endif
