/*
 * tok_encode.c — text to token ids.
 *
 *   1. Partition: special tokens are cut out of the text, leftmost first,
 *      longest first at a position (user-defined tokens always, control
 *      and unknown tokens with TOK_PARSE_SPECIAL); the text between them is
 *      encoded piece by piece.
 *   2. SentencePiece: "▁" for every space (and one before the text, after
 *      BOS or a special token, with add_space_prefix); the text splits into
 *      UTF-8 characters; the adjacent pair whose concatenation is the
 *      highest-scoring token merges, leftmost on ties, until none is left;
 *      a symbol that is no token is spelled with byte tokens.
 *   3. Byte-level BPE: optional NFC, then the pre-tokenizer regexes split
 *      the text into words; a word starts as one symbol per byte and the
 *      adjacent pair with the lowest merge rank merges, leftmost on ties.
 *
 * Both merge loops keep candidate pairs in a binary heap and drop stale
 * entries when they surface, so a word of n symbols costs O(n log n), not
 * the O(n^2) of rescanning. All per-call memory lives in an `encoder`, so
 * concurrent calls on one tokenizer do not interfere; nothing is cached.
 */
#include <stdlib.h>
#include <utf8proc.h>

#include "text/tok_internal.h"
#include "text/utf8.h"

typedef struct encoder {
    const tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    bool oom;
    void *sym; /* spm_sym[] or bpe_sym[] */
    size_t sym_cap;
    void *heap; /* spm_pair[] or bpe_pair[] */
    size_t heap_cap, heap_n;
    char *buf; /* text being built (SPM escaping, a BPE word's symbols) */
    size_t buf_cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* with a larger JIT stack, made when needed */
    pcre2_jit_stack *jit_stack;
} encoder;

/* Makes *p hold at least need bytes. */
static bool reserve(encoder *e, void **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c);
    if (!q) {
        e->oom = true;
        return false;
    }
    *p = q;
    *cap = c;
    return true;
}

static void emit(encoder *e, int32_t id)
{
    if (id < 0)
        return;
    if (e->n == e->cap) {
        size_t bytes = e->cap * sizeof *e->ids;
        if (!reserve(e, (void **)&e->ids, &bytes, (e->n + 1) * sizeof *e->ids))
            return;
        e->cap = bytes / sizeof *e->ids;
    }
    e->ids[e->n++] = id;
}

/* Emits byte tokens for the bytes of s. */
static void emit_bytes(encoder *e, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        emit(e, e->t->byte_tok[s[i]]);
}

/* --- SentencePiece -------------------------------------------------------- */

typedef struct spm_sym {
    int32_t prev, next;
    uint32_t start, len; /* len 0: merged into its left neighbour */
} spm_sym;

typedef struct spm_pair {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of left + right when the pair was made */
} spm_pair;

/* Heap order: higher score first, then the leftmost pair. */
static bool spm_before(const spm_pair *a, const spm_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void spm_heap_push(encoder *e, spm_pair p)
{
    if (!reserve(e, &e->heap, &e->heap_cap, (e->heap_n + 1) * sizeof p))
        return;
    spm_pair *h = e->heap;
    size_t i = e->heap_n++;
    while (i > 0 && spm_before(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static spm_pair spm_heap_pop(encoder *e)
{
    spm_pair *h = e->heap;
    spm_pair top = h[0], last = h[--e->heap_n];
    size_t n = e->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && spm_before(&h[c + 1], &h[c]))
            c++;
        if (!spm_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = last;
    return top;
}

static void spm_try_pair(encoder *e, const char *text, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const spm_sym *s = e->sym;
    uint32_t size = s[left].len + s[right].len;
    int32_t id = tok_lookup(e->t, text + s[left].start, size);
    if (id < 0 || id >= e->t->n_vocab)
        return;
    spm_heap_push(e, (spm_pair){e->t->score[id], left, right, size});
}

/* Merges symbols [a, b) of text among themselves and emits their tokens. */
static void spm_merge(encoder *e, const char *text, size_t a, size_t b)
{
    spm_sym *s = e->sym;
    for (size_t k = a; k < b; k++) {
        s[k].prev = k > a ? (int32_t)k - 1 : -1;
        s[k].next = k + 1 < b ? (int32_t)k + 1 : -1;
    }
    e->heap_n = 0;
    for (size_t k = a + 1; k < b; k++)
        spm_try_pair(e, text, (int32_t)k - 1, (int32_t)k);
    while (e->heap_n > 0 && !e->oom) {
        spm_pair p = spm_heap_pop(e);
        spm_sym *l = &s[p.left], *r = &s[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size)
            continue; /* stale: one side has merged since */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = p.left;
        spm_try_pair(e, text, l->prev, p.left);
        spm_try_pair(e, text, p.left, l->next);
    }
    for (int32_t k = (int32_t)a; k >= 0; k = s[k].next) {
        int32_t id = tok_lookup(e->t, text + s[k].start, s[k].len);
        if (id >= 0 && id < e->t->n_vocab)
            emit(e, id);
        else
            emit_bytes(e, (const unsigned char *)text + s[k].start, s[k].len);
    }
}

static bool is_escaped_space(const char *text, const spm_sym *s)
{
    return s->len == 3 && memcmp(text + s->start, "\xE2\x96\x81", 3) == 0;
}

/* Encodes text (already escaped: spaces are "▁") as SentencePiece does.
 * Where the vocabulary allows it (spm_word_split), each word, a "▁" that
 * follows other text up to the next such, merges on its own: the result
 * is the same, and small heaps stay in cache. */
static void spm_run(encoder *e, const char *text, size_t n)
{
    size_t nsym = 0;
    for (size_t i = 0; i < n; i += utf8_lead_len((unsigned char)text[i]))
        nsym++;
    if (!reserve(e, &e->sym, &e->sym_cap, nsym * sizeof(spm_sym)))
        return;
    spm_sym *s = e->sym;
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t len = utf8_lead_len((unsigned char)text[i]);
        if (len > n - i)
            len = n - i;
        s[k] = (spm_sym){-1, -1, (uint32_t)i, (uint32_t)len};
        i += len;
    }
    size_t from = 0;
    for (k = 1; k < nsym && e->t->spm_word_split && !e->oom; k++) {
        if (is_escaped_space(text, &s[k]) && !is_escaped_space(text, &s[k - 1])) {
            spm_merge(e, text, from, k);
            from = k;
        }
    }
    if (from < nsym && !e->oom)
        spm_merge(e, text, from, nsym);
}

static void spm_fragment(encoder *e, const char *text, size_t n, bool space_prefix)
{
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += text[i] == ' ';
    if (!reserve(e, (void **)&e->buf, &e->buf_cap, n + 2 * spaces + 3 * space_prefix))
        return;
    char *out = e->buf;
    size_t k = 0;
    if (space_prefix) {
        memcpy(out, "\xE2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(out + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            out[k++] = text[i];
        }
    }
    spm_run(e, out, k);
}

/* --- byte-level BPE ---------------------------------------------------------- */

typedef struct bpe_sym {
    int32_t id; /* string id; -1 once merged into its left neighbour */
    int32_t prev, next;
    uint32_t start, len; /* the raw bytes of the word it covers */
} bpe_sym;

typedef struct bpe_pair {
    uint32_t rank;
    int32_t left;
    int32_t left_id, right_id; /* what the pair was made of */
    int32_t result;            /* and what it makes */
} bpe_pair;

/* Heap order: lowest rank first, then the leftmost pair. */
static bool bpe_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void bpe_heap_push(encoder *e, bpe_pair p)
{
    if (!reserve(e, &e->heap, &e->heap_cap, (e->heap_n + 1) * sizeof p))
        return;
    bpe_pair *h = e->heap;
    size_t i = e->heap_n++;
    while (i > 0 && bpe_before(&p, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = p;
}

static bpe_pair bpe_heap_pop(encoder *e)
{
    bpe_pair *h = e->heap;
    bpe_pair top = h[0], last = h[--e->heap_n];
    size_t n = e->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bpe_before(&h[c + 1], &h[c]))
            c++;
        if (!bpe_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = last;
    return top;
}

static void bpe_try_pair(encoder *e, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const bpe_sym *s = e->sym;
    const tok_merge *m = tok_merge_find(e->t, s[left].id, s[right].id);
    if (m)
        bpe_heap_push(e, (bpe_pair){m->rank, left, s[left].id, s[right].id, m->result});
}

/* Whole-word lookup (ignore_merges): the word's symbols as one string. */
static int32_t bpe_whole_word(encoder *e, const unsigned char *w, size_t n)
{
    const tokenizer *t = e->t;
    if (!reserve(e, (void **)&e->buf, &e->buf_cap, 2 * n))
        return TOK_NONE;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(e->buf + k, t->byte_chr[w[i]], t->byte_chr_len[w[i]]);
        k += t->byte_chr_len[w[i]];
    }
    int32_t id = tok_lookup(t, e->buf, k);
    return id < t->n_vocab ? id : TOK_NONE;
}

/* Encodes one pre-tokenized word of n raw bytes. */
static void bpe_word(encoder *e, const unsigned char *w, size_t n)
{
    const tokenizer *t = e->t;
    if (n == 0)
        return;
    if (n == 1) {
        emit(e, t->byte_tok[w[0]]);
        return;
    }
    if (t->ignore_merges) {
        int32_t id = bpe_whole_word(e, w, n);
        if (id >= 0) {
            emit(e, id);
            return;
        }
    }
    if (!reserve(e, &e->sym, &e->sym_cap, n * sizeof(bpe_sym)))
        return;
    bpe_sym *s = e->sym;
    for (size_t i = 0; i < n; i++)
        s[i] = (bpe_sym){t->byte_sym[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1,
                         (uint32_t)i, 1};

    e->heap_n = 0;
    for (size_t i = 1; i < n; i++)
        bpe_try_pair(e, (int32_t)i - 1, (int32_t)i);
    while (e->heap_n > 0 && !e->oom) {
        bpe_pair p = bpe_heap_pop(e);
        s = e->sym;
        bpe_sym *l = &s[p.left];
        if (l->id != p.left_id || l->next < 0 || s[l->next].id != p.right_id)
            continue; /* stale: one side has merged since */
        bpe_sym *r = &s[l->next];
        l->id = p.result;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = p.left;
        r->id = -1;
        bpe_try_pair(e, l->prev, p.left);
        bpe_try_pair(e, p.left, l->next);
    }

    s = e->sym;
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        if (s[i].id < t->n_vocab)
            emit(e, s[i].id);
        else /* merged into a string that is no token: spell it in bytes */
            emit_bytes(e, w + s[i].start, s[i].len);
    }
}

/* Runs regex `level` over s, passing every match and every stretch between
 * matches on to the next level; after the last level, pieces are words. */
static void bpe_split(encoder *e, int level, const char *s, size_t n)
{
    const tokenizer *t = e->t;
    if (level == t->n_regex || n == 0) {
        bpe_word(e, (const unsigned char *)s, n);
        return;
    }
    const pcre2_code *re = t->regex[level];
    size_t gap = 0, pos = 0;
    while (pos < n && !e->oom) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, e->md, e->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jit_stack) {
            /* a pathological run needs more than the default 32 KiB */
            e->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            e->mctx = pcre2_match_context_create(NULL);
            if (!e->jit_stack || !e->mctx) {
                e->oom = true;
                return;
            }
            pcre2_jit_stack_assign(e->mctx, NULL, e->jit_stack);
            continue;
        }
        if (rc < 0)
            break; /* no match (or a limit): the rest is one piece */
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match makes no piece: step one character */
            pos = ms + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80)
                pos++;
            continue;
        }
        if (ms > gap)
            bpe_split(e, level + 1, s + gap, ms - gap);
        bpe_split(e, level + 1, s + ms, me - ms);
        gap = pos = me;
    }
    if (gap < n)
        bpe_split(e, level + 1, s + gap, n - gap);
}

static void bpe_fragment(encoder *e, const char *text, size_t n)
{
    /* NFC: text without a byte >= 0xCC has no code point >= U+0300, and
     * such text is already NFC; invalid UTF-8 is left as it is. */
    bool composable = false;
    for (size_t i = 0; i < n && !composable; i++)
        composable = (unsigned char)text[i] >= 0xCC;
    if (e->t->nfc && composable) {
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n,
                                          &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (m >= 0) {
            bpe_split(e, 0, (const char *)nfc, (size_t)m);
            free(nfc);
            return;
        }
        if (m == UTF8PROC_ERROR_NOMEM) {
            e->oom = true;
            return;
        }
    }
    bpe_split(e, 0, text, n);
}

/* --- partition ------------------------------------------------------------------ */

static bool is_ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Finds the first special token in s[from, n) that may be matched; leftmost
 * wins, then longest (buckets are sorted longest first). */
static bool find_special(const tokenizer *t, const char *s, size_t n, size_t from,
                         bool parse_special, size_t *at, int32_t *id)
{
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        for (uint32_t k = t->special_from[b]; k < t->special_from[b + 1]; k++) {
            int32_t sid = t->special[k];
            if (!parse_special && (t->attr[sid] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
                continue;
            uint32_t len = t->str_len[sid];
            if (len <= n - i && memcmp(s + i, t->pool + t->str_off[sid], len) == 0) {
                *at = i;
                *id = sid;
                return true;
            }
        }
    }
    return false;
}

static void encode_text(encoder *e, const char *s, size_t n, bool after_special)
{
    if (e->t->kind == TOK_KIND_SPM)
        spm_fragment(e, s, n, e->t->add_space_prefix && after_special);
    else
        bpe_fragment(e, s, n);
}

int tok_encode(const tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
               size_t *n, sw_err *err)
{
    encoder e = {.t = t};
    e.cap = len / 3 + 16;
    e.ids = malloc(e.cap * sizeof *e.ids);
    e.md = pcre2_match_data_create(8, NULL);
    e.oom = !e.ids || !e.md;
    bool parse_special = (flags & TOK_PARSE_SPECIAL) != 0;

    if ((flags & TOK_ADD_BOS) && t->add_bos)
        emit(&e, t->bos);
    bool after_special = true; /* the start of text counts as one */
    for (size_t pos = 0; pos < len && !e.oom;) {
        size_t at = len;
        int32_t sid = TOK_NONE;
        bool found = find_special(t, text, len, pos, parse_special, &at, &sid);
        size_t end = at;
        if (found && (t->attr[sid] & TOK_ATTR_LSTRIP))
            while (end > pos && is_ascii_space(text[end - 1]))
                end--;
        if (end > pos) {
            encode_text(&e, text + pos, end - pos, after_special);
            after_special = false;
        }
        if (!found)
            break;
        emit(&e, sid);
        after_special = true;
        pos = at + t->str_len[sid];
        if (t->attr[sid] & TOK_ATTR_RSTRIP)
            while (pos < len && is_ascii_space(text[pos]))
                pos++;
    }
    if ((flags & TOK_ADD_BOS) && t->add_eos)
        emit(&e, t->eos);

    free(e.sym);
    free(e.heap);
    free(e.buf);
    pcre2_match_data_free(e.md);
    pcre2_match_context_free(e.mctx);
    if (e.jit_stack)
        pcre2_jit_stack_free(e.jit_stack);
    if (e.oom) {
        free(e.ids);
        *ids = NULL;
        *n = 0;
        return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    }
    *ids = e.ids;
    *n = e.n;
    return 0;
}
