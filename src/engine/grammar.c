/*
 * grammar.c — alternatives of literals and JSON objects, and the vocabulary
 * mask over them (grammar.h).
 */
#include "engine/grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- the JSON recogniser --------------------------------------------------- */

enum {
    J_ROOT,       /* before the root object: whitespace or '{' */
    J_VALUE,      /* a value must come */
    J_ARR_FIRST,  /* after '[': a value or ']' */
    J_OBJ_FIRST,  /* after '{': a key or '}' */
    J_OBJ_KEY,    /* after ',' in an object: a key */
    J_COLON,      /* after a key */
    J_AFTER,      /* after a value in a container: ',' or its closer */
    J_STR,        /* inside a string */
    J_STR_ESC,    /* after a backslash */
    J_STR_HEX,    /* inside \uXXXX; sub digits left, val so far */
    J_STR_SUR1,   /* after a high surrogate: its low half's '\' must come */
    J_STR_SUR2,   /* ... and its 'u' */
    J_STR_U8,     /* inside a multi-byte UTF-8 character */
    J_NUM_MINUS,  /* after '-' */
    J_NUM_ZERO,   /* a leading 0 */
    J_NUM_INT,    /* integer digits */
    J_NUM_DOT,    /* after '.' */
    J_NUM_FRAC,   /* fraction digits */
    J_NUM_E,      /* after 'e' */
    J_NUM_ESIGN,  /* after the exponent's sign */
    J_NUM_EXP,    /* exponent digits */
    J_LIT,        /* true / false / null; sub which, off how far */
    J_DONE,       /* the root object is closed */
};

static const char *const j_literals[3] = {"true", "false", "null"};

void json_prefix_init(json_prefix *p)
{
    memset(p, 0, sizeof *p);
    p->state = J_ROOT;
}

bool json_prefix_done(const json_prefix *p) { return p->state == J_DONE; }

static bool j_is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool j_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool j_is_hex(unsigned char c)
{
    return j_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool j_top_is_array(const json_prefix *p) { return (p->stack >> (p->depth - 1)) & 1; }

/* A value just ended. */
static void j_value_done(json_prefix *p) { p->state = p->depth ? J_AFTER : J_DONE; }

static bool j_push(json_prefix *p, bool array)
{
    if (p->depth >= 63)
        return false;
    if (array)
        p->stack |= (uint64_t)1 << p->depth;
    else
        p->stack &= ~((uint64_t)1 << p->depth);
    p->depth++;
    p->state = array ? J_ARR_FIRST : J_OBJ_FIRST;
    return true;
}

static void j_pop(json_prefix *p)
{
    p->depth--;
    j_value_done(p);
}

static bool j_value_start(json_prefix *p, unsigned char c)
{
    switch (c) {
    case '{': return j_push(p, false);
    case '[': return j_push(p, true);
    case '"': p->state = J_STR; p->key = 0; return true;
    case '-': p->state = J_NUM_MINUS; return true;
    case '0': p->state = J_NUM_ZERO; return true;
    case 't': p->sub = 0; break;
    case 'f': p->sub = 1; break;
    case 'n': p->sub = 2; break;
    default:
        if (c >= '1' && c <= '9') {
            p->state = J_NUM_INT;
            return true;
        }
        return false;
    }
    p->state = J_LIT;
    p->off = 1;
    return true;
}

/* A byte that may end a number: the number ends, the byte goes on. */
static bool j_after_number(json_prefix *p, unsigned char c)
{
    j_value_done(p);
    return json_prefix_byte(p, c);
}

static bool j_number(json_prefix *p, unsigned char c)
{
    bool d = j_is_digit(c);
    switch (p->state) {
    case J_NUM_MINUS:
        if (!d)
            return false;
        p->state = c == '0' ? J_NUM_ZERO : J_NUM_INT;
        return true;
    case J_NUM_ZERO:
    case J_NUM_INT:
        if (d && p->state == J_NUM_INT)
            return true;
        if (c == '.') {
            p->state = J_NUM_DOT;
            return true;
        }
        if (c == 'e' || c == 'E') {
            p->state = J_NUM_E;
            return true;
        }
        return j_after_number(p, c);
    case J_NUM_DOT:
        if (!d)
            return false;
        p->state = J_NUM_FRAC;
        return true;
    case J_NUM_FRAC:
        if (d)
            return true;
        if (c == 'e' || c == 'E') {
            p->state = J_NUM_E;
            return true;
        }
        return j_after_number(p, c);
    case J_NUM_E:
        if (c == '+' || c == '-') {
            p->state = J_NUM_ESIGN;
            return true;
        }
        /* fallthrough */
    case J_NUM_ESIGN:
        if (!d)
            return false;
        p->state = J_NUM_EXP;
        return true;
    default: /* J_NUM_EXP */
        return d ? true : j_after_number(p, c);
    }
}

/* A UTF-8 lead byte inside a string: how many continuation bytes follow
 * and the range of the first (no overlongs, surrogates or code points past
 * U+10FFFF, as RFC 3629 says). */
static bool j_utf8_lead(json_prefix *p, unsigned char c)
{
    p->u8lo = 0x80;
    p->u8hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        p->u8n = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        p->u8n = 2, p->u8lo = c == 0xE0 ? 0xA0 : 0x80, p->u8hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        p->u8n = 3, p->u8lo = c == 0xF0 ? 0x90 : 0x80, p->u8hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return false;
    p->state = J_STR_U8;
    return true;
}

/* The end of a \uXXXX escape: surrogates must come in pairs. */
static bool j_escape_done(json_prefix *p)
{
    bool high = p->val >= 0xD800 && p->val <= 0xDBFF, low = p->val >= 0xDC00 && p->val <= 0xDFFF;
    if (p->low_next) {
        p->low_next = 0;
        if (!low)
            return false;
        p->state = J_STR;
        return true;
    }
    if (low)
        return false;
    p->state = high ? J_STR_SUR1 : J_STR;
    return true;
}

static bool j_string(json_prefix *p, unsigned char c)
{
    switch (p->state) {
    case J_STR:
        if (c == '"') {
            if (p->key)
                p->state = J_COLON;
            else
                j_value_done(p);
            return true;
        }
        if (c == '\\')
            p->state = J_STR_ESC;
        else if (c < 0x20)
            return false;
        else if (c >= 0x80)
            return j_utf8_lead(p, c);
        return true;
    case J_STR_U8:
        if (c < p->u8lo || c > p->u8hi)
            return false;
        p->u8lo = 0x80;
        p->u8hi = 0xBF;
        if (--p->u8n == 0)
            p->state = J_STR;
        return true;
    case J_STR_ESC:
        if (c == 'u') {
            p->state = J_STR_HEX;
            p->sub = 4;
            p->val = 0;
            return true;
        }
        if (!c || !strchr("\"\\/bfnrt", c) || p->low_next)
            return false;
        p->state = J_STR;
        return true;
    case J_STR_SUR1:
        if (c != '\\')
            return false;
        p->state = J_STR_SUR2;
        return true;
    case J_STR_SUR2:
        if (c != 'u')
            return false;
        p->state = J_STR_HEX;
        p->sub = 4;
        p->val = 0;
        p->low_next = 1;
        return true;
    default: /* J_STR_HEX */
        if (!j_is_hex(c))
            return false;
        p->val = (uint16_t)(p->val << 4 | (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10));
        return --p->sub ? true : j_escape_done(p);
    }
}

/* The structural states, where whitespace is allowed. */
static bool j_structure(json_prefix *p, unsigned char c)
{
    switch (p->state) {
    case J_ROOT:
        return c == '{' && j_push(p, false);
    case J_VALUE:
        return j_value_start(p, c);
    case J_ARR_FIRST:
        if (c == ']') {
            j_pop(p);
            return true;
        }
        return j_value_start(p, c);
    case J_OBJ_FIRST:
    case J_OBJ_KEY:
        if (c == '}' && p->state == J_OBJ_FIRST) {
            j_pop(p);
            return true;
        }
        if (c != '"')
            return false;
        p->state = J_STR;
        p->key = 1;
        return true;
    case J_COLON:
        if (c != ':')
            return false;
        p->state = J_VALUE;
        return true;
    default: /* J_AFTER */
        if (c == ',') {
            p->state = j_top_is_array(p) ? J_VALUE : J_OBJ_KEY;
            return true;
        }
        if (c == (j_top_is_array(p) ? ']' : '}')) {
            j_pop(p);
            return true;
        }
        return false;
    }
}

bool json_prefix_byte(json_prefix *p, unsigned char c)
{
    switch (p->state) {
    case J_ROOT: case J_VALUE: case J_ARR_FIRST: case J_OBJ_FIRST: case J_OBJ_KEY:
    case J_COLON: case J_AFTER:
        if (j_is_ws(c))
            return ++p->ws <= GRAMMAR_MAX_WS;
        p->ws = 0;
        return j_structure(p, c);
    case J_STR: case J_STR_ESC: case J_STR_HEX: case J_STR_SUR1: case J_STR_SUR2: case J_STR_U8:
        return j_string(p, c);
    case J_LIT: {
        const char *lit = j_literals[p->sub];
        if (c != (unsigned char)lit[p->off])
            return false;
        if (!lit[++p->off])
            j_value_done(p);
        return true;
    }
    case J_DONE:
        return false;
    default:
        return j_number(p, c);
    }
}

/* --- alternatives ---------------------------------------------------------- */

typedef struct cursor {
    uint32_t alt;     /* which alternative */
    uint32_t off;     /* offset in its literal */
    bool in_json;     /* inside the object at off */
    bool dead;
    json_prefix js;
} cursor;

typedef struct alt {
    char *text;
    size_t len;
} alt;

struct grammar {
    alt *alts;
    int n;
    cursor *cur;      /* [n] live state */
    int n_live;
};

int grammar_new(const char *const *alts, int n, grammar **out, sw_err *err)
{
    *out = NULL;
    if (n < 1 || n > GRAMMAR_MAX_ALTS)
        return sw_errf(err, SW_EINVAL, "grammar: %d alternatives (1 to %d allowed)", n,
                       GRAMMAR_MAX_ALTS);
    grammar *g = calloc(1, sizeof *g);
    if (!g)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    g->alts = calloc((size_t)n, sizeof *g->alts);
    g->cur = calloc((size_t)n, sizeof *g->cur);
    g->n = n;
    for (int i = 0; g->alts && g->cur && i < n; i++) {
        if (!(g->alts[i].text = strdup(alts[i] ? alts[i] : "")))
            break;
        g->alts[i].len = strlen(g->alts[i].text);
        g->cur[i] = (cursor){.alt = (uint32_t)i};
        g->n_live++;
    }
    if (g->n_live != n) {
        grammar_free(g);
        return sw_errf(err, SW_ENOMEM, "out of memory");
    }
    *out = g;
    return 0;
}

void grammar_free(grammar *g)
{
    if (!g)
        return;
    for (int i = 0; g->alts && i < g->n; i++)
        free(g->alts[i].text);
    free(g->alts);
    free(g->cur);
    free(g);
}

/* Advances one cursor over one byte; false kills it. */
static bool cursor_byte(const grammar *g, cursor *c, unsigned char b)
{
    const alt *a = &g->alts[c->alt];
    if (c->in_json) {
        if (!json_prefix_byte(&c->js, b))
            return false;
        if (json_prefix_done(&c->js)) {
            c->in_json = false;
            c->off++;
        }
        return true;
    }
    if (c->off >= a->len)
        return false;
    if ((unsigned char)a->text[c->off] == GRAMMAR_OBJECT) {
        json_prefix_init(&c->js);
        c->in_json = true;
        return cursor_byte(g, c, b);
    }
    if ((unsigned char)a->text[c->off] != b)
        return false;
    c->off++;
    return true;
}

static bool cursor_complete(const grammar *g, const cursor *c)
{
    return !c->dead && !c->in_json && c->off == g->alts[c->alt].len;
}

bool grammar_complete(const grammar *g)
{
    for (int i = 0; i < g->n; i++)
        if (cursor_complete(g, &g->cur[i]))
            return true;
    return false;
}

bool grammar_feed(grammar *g, const char *text, size_t len)
{
    g->n_live = 0;
    for (int i = 0; i < g->n; i++) {
        cursor *c = &g->cur[i];
        for (size_t k = 0; !c->dead && k < len; k++)
            if (!cursor_byte(g, c, (unsigned char)text[k]))
                c->dead = true;
        g->n_live += !c->dead;
    }
    return g->n_live > 0;
}

/* Would text[len] keep some cursor alive? */
static bool grammar_try(grammar *g, const char *text, size_t len)
{
    for (int i = 0; i < g->n; i++) {
        if (g->cur[i].dead)
            continue;
        cursor c = g->cur[i];
        size_t k = 0;
        while (k < len && cursor_byte(g, &c, (unsigned char)text[k]))
            k++;
        if (k == len)
            return true;
    }
    return false;
}

int grammar_mask(grammar *g, const grammar_vocab *v, float *logits)
{
    bool first[256];
    bool complete = grammar_complete(g);
    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        first[b] = grammar_try(g, &ch, 1);
    }
    int allowed = 0;
    for (int id = 0; id < v->n; id++) {
        bool ok;
        if (v->kind[id] == GRAMMAR_TOK_EOG)
            ok = complete;
        else if (v->kind[id] == GRAMMAR_TOK_NEVER || v->len[id] == 0)
            ok = false;
        else
            ok = first[(unsigned char)v->piece[id][0]] &&
                 (v->len[id] == 1 || grammar_try(g, v->piece[id], v->len[id]));
        if (ok && !isnan(logits[id]) && logits[id] != -INFINITY)
            allowed++;
        else
            logits[id] = -INFINITY;
    }
    return allowed;
}
