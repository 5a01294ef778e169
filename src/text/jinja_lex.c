/*
 * jinja_lex.c — template text to tokens, as jinja2's lexer does it with
 * trim_blocks and lstrip_blocks on.
 *
 * The source is first normalized: "\r\n" and "\r" become "\n" and one
 * trailing newline is dropped (keep_trailing_newline is off). Then text
 * alternates with tags:
 *
 *   {{ expr }}   JT_VAR_BEGIN tokens JT_VAR_END
 *   {% stmt %}   JT_BLOCK_BEGIN tokens JT_BLOCK_END
 *   {# note #}   nothing
 *   {% raw %}..{% endraw %}   the text between, verbatim
 *
 * Whitespace control decides how much of the text around a tag survives:
 * "-" after an opening delimiter strips all whitespace before the tag, "-"
 * before a closing one all whitespace after it. Without "-", a block or
 * comment tag's closing delimiter eats one newline (trim_blocks) unless it
 * is written "+%}", and spaces and tabs between the start of a line and a
 * block or comment tag are dropped (lstrip_blocks) unless it opens "{%+".
 * "Whitespace" is Python's: str.isspace().
 *
 * Inside a tag, a closing delimiter only counts while (), [] and {} are
 * balanced, so "{{ {'a': {}} }}" works.
 */
#include "text/jinja_int.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

typedef struct lexer {
    const char *s; /* normalized source */
    size_t n, pos;
    uint32_t line, col; /* of pos */
    arena *mem;
    jtoks *toks;
    sw_err *err;
    bool line_starting; /* the last thing consumed ended a line */
    char stack[64];     /* expected closing brackets */
    size_t depth;
} lexer;

static int lx_fail(lexer *lx, const char *fmt, const char *arg)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg);
    return sw_errf(lx->err, SW_EFORMAT, "line %u, column %u: %s", lx->line, lx->col, msg);
}

/* Moves pos forward to p, keeping line and column (in code points). */
static void lx_advance(lexer *lx, size_t p)
{
    for (; lx->pos < p; lx->pos++) {
        unsigned char c = (unsigned char)lx->s[lx->pos];
        if (c == '\n') {
            lx->line++;
            lx->col = 1;
        } else if ((c & 0xC0) != 0x80) {
            lx->col++;
        }
    }
}

static int lx_push(lexer *lx, int kind, const char *text, size_t len, uint32_t line,
                   uint32_t col, jtok **out)
{
    jtoks *t = lx->toks;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        jtok *nv = realloc(t->v, cap * sizeof *nv);
        if (!nv)
            return sw_errf(lx->err, SW_ENOMEM, "out of memory");
        t->v = nv;
        t->cap = cap;
    }
    jtok *k = &t->v[t->n++];
    memset(k, 0, sizeof *k);
    k->kind = (uint8_t)kind;
    k->line = line;
    k->col = col;
    k->len = len;
    k->text = arena_strndup(lx->mem, text ? text : "", len);
    if (!k->text)
        return sw_errf(lx->err, SW_ENOMEM, "out of memory");
    if (out)
        *out = k;
    return 0;
}

/* Length of the Python whitespace character at s[i], or 0. */
static size_t ws_at(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return 0;
    size_t j = i;
    uint32_t c = u8_next(s, &j);
    return py_isspace(c) ? j - i : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    size_t k;
    while ((k = ws_at(s, n, i)) > 0)
        i += k;
    return i;
}

/* Text [a, b) minus trailing whitespace (str.rstrip()). */
static size_t rstrip_end(const char *s, size_t a, size_t b)
{
    while (b > a) {
        size_t start = b - 1;
        while (start > a && ((unsigned char)s[start] & 0xC0) == 0x80)
            start--;
        size_t j = start;
        if (!py_isspace(u8_next(s, &j)))
            break;
        b = start;
    }
    return b;
}

/*
 * Emits the text [a, b) that precedes a tag whose opening sign is sign
 * ('-', '+' or 0); block says whether lstrip_blocks applies to the tag.
 */
static int lx_text(lexer *lx, size_t a, size_t b, char sign, bool block)
{
    size_t end = b;
    if (sign == '-') {
        end = rstrip_end(lx->s, a, b);
    } else if (sign != '+' && block) {
        size_t l = b;
        while (l > a && lx->s[l - 1] != '\n')
            l--;
        if ((l > a || lx->line_starting) && l < b && skip_ws(lx->s, b, l) == b)
            end = l;
    }
    uint32_t line = lx->line, col = lx->col;
    int rc = 0;
    if (end > a)
        rc = lx_push(lx, JT_TEXT, lx->s + a, end - a, line, col, NULL);
    lx_advance(lx, b);
    return rc;
}

/* ---- inside tags ------------------------------------------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

/* (\d+_)*\d+ at i: its length, or 0. */
static size_t scan_digits(const char *s, size_t n, size_t i)
{
    size_t j = i;
    if (j >= n || !is_digit(s[j]))
        return 0;
    for (;;) {
        while (j < n && is_digit(s[j]))
            j++;
        if (j + 1 < n && s[j] == '_' && is_digit(s[j + 1]))
            j++;
        else
            return j - i;
    }
}

/* A float literal at i (jinja2's float_re): its length, or 0. */
static size_t scan_float(const char *s, size_t n, size_t i)
{
    if (i > 0 && s[i - 1] == '.')
        return 0;
    size_t d = scan_digits(s, n, i);
    if (!d)
        return 0;
    size_t j = i + d, frac = 0;
    if (j < n && s[j] == '.')
        frac = scan_digits(s, n, j + 1);
    size_t k = frac ? j + 1 + frac : j;
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        size_t m = k + 1;
        if (m < n && (s[m] == '+' || s[m] == '-'))
            m++;
        size_t e = scan_digits(s, n, m);
        if (e)
            return m + e - i;
    }
    return frac ? k - i : 0;
}

static int digit_val(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 99;
}

/* An integer literal at i (jinja2's integer_re): its length and value. */
static size_t scan_int(const char *s, size_t n, size_t i, int64_t *val, bool *overflow)
{
    int base = 10;
    size_t j = i;
    *val = 0;
    *overflow = false;
    if (j + 1 < n && s[j] == '0') {
        char p = s[j + 1] | 0x20;
        base = p == 'b' ? 2 : p == 'o' ? 8 : p == 'x' ? 16 : 10;
    }
    if (base != 10) {
        j += 2;
    } else if (j < n && s[j] == '0') {
        j++; /* 0(_?0)* */
        while (j < n && (s[j] == '0' || (s[j] == '_' && j + 1 < n && s[j + 1] == '0')))
            j++;
        return j - i;
    } else if (j >= n || !is_digit(s[j])) {
        return 0;
    }
    size_t digits = 0;
    uint64_t v = 0;
    while (j < n) {
        size_t k = j;
        if (s[k] == '_' && (base != 10 || digits > 0))
            k++;
        if (k >= n || digit_val(s[k]) >= base)
            break;
        uint64_t dv = (uint64_t)digit_val(s[k]);
        if (v > (UINT64_C(0x7FFFFFFFFFFFFFFF) - dv) / (uint64_t)base)
            *overflow = true;
        v = v * (uint64_t)base + dv;
        digits++;
        j = k + 1;
    }
    if (digits == 0)
        return 0;
    *val = (int64_t)v;
    return j - i;
}

static void put_utf8(jbuf *b, uint32_t c)
{
    char tmp[4];
    int n = utf8_encode(c, tmp);
    jbuf_put(b, tmp, (size_t)n);
}

/* Python's "unicode-escape" of a literal whose non-ASCII characters were
 * first turned into \x.., \u.... or \U........ (what jinja2 does). */
static int decode_escape(lexer *lx, const char *p, size_t n, size_t *i, jbuf *out)
{
    size_t j = *i + 1; /* after the backslash */
    unsigned char c = (unsigned char)p[j];
    if (c >= 0x80) { /* "\é" is "\\xe9" after backslashreplace: a backslash, "xe9" */
        size_t k = j;
        uint32_t cp = u8_next(p, &k);
        jbuf_printf(out, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        *i = k;
        return 0;
    }
    *i = j + 1;
    switch (c) {
    case '\n': return 0;
    case '\\': case '\'': case '"': jbuf_putc(out, (char)c); return 0;
    case 'a': jbuf_putc(out, '\a'); return 0;
    case 'b': jbuf_putc(out, '\b'); return 0;
    case 'f': jbuf_putc(out, '\f'); return 0;
    case 'n': jbuf_putc(out, '\n'); return 0;
    case 'r': jbuf_putc(out, '\r'); return 0;
    case 't': jbuf_putc(out, '\t'); return 0;
    case 'v': jbuf_putc(out, '\v'); return 0;
    case 'N': return lx_fail(lx, "%s", "\\N{...} escapes in strings are not supported");
    }
    if (c >= '0' && c <= '7') {
        uint32_t v = 0;
        size_t k = j;
        for (; k < n && k < j + 3 && p[k] >= '0' && p[k] <= '7'; k++)
            v = v * 8 + (uint32_t)(p[k] - '0');
        put_utf8(out, v);
        *i = k;
        return 0;
    }
    size_t want = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (!want) { /* unknown escapes stay as written */
        jbuf_putc(out, '\\');
        jbuf_putc(out, (char)c);
        return 0;
    }
    uint32_t v = 0;
    for (size_t k = 0; k < want; k++) {
        if (j + 1 + k >= n || digit_val(p[j + 1 + k]) > 15)
            return lx_fail(lx, "truncated \\%s escape in a string", (const char[]){(char)c, 0});
        v = v * 16 + (uint32_t)digit_val(p[j + 1 + k]);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return lx_fail(lx, "%s", "string escape is not a valid Unicode character");
    put_utf8(out, v);
    *i = j + 1 + want;
    return 0;
}

/* A string literal at pos (quote included): its length, pushing the token. */
static int lx_string(lexer *lx, size_t *len)
{
    const char *s = lx->s;
    char q = s[lx->pos];
    size_t j = lx->pos + 1;
    while (j < lx->n && s[j] != q)
        j += s[j] == '\\' && j + 1 < lx->n ? 2 : 1;
    if (j >= lx->n)
        return lx_fail(lx, "%s", "unterminated string literal");
    jbuf b;
    jbuf_init(&b, SIZE_MAX / 2);
    int rc = 0;
    for (size_t i = lx->pos + 1; i < j && rc == 0;) {
        if (s[i] == '\\') {
            rc = decode_escape(lx, s, j, &i, &b);
        } else {
            size_t k = i + 1;
            while (k < j && s[k] != '\\')
                k++;
            jbuf_put(&b, s + i, k - i);
            i = k;
        }
    }
    if (rc == 0 && b.err)
        rc = sw_errf(lx->err, SW_ENOMEM, "out of memory");
    if (rc == 0)
        rc = lx_push(lx, JT_STRING, b.p, b.len, lx->line, lx->col, NULL);
    jbuf_free(&b);
    *len = j + 1 - lx->pos;
    return rc;
}

static const char *const ops2[] = {"//", "**", "==", "!=", ">=", "<="};

/* One token inside a tag at pos; *len gets its length. */
static int lx_token(lexer *lx, size_t *len)
{
    const char *s = lx->s;
    size_t i = lx->pos, n = lx->n, k;
    jtok *t;
    int rc;
    if ((k = scan_float(s, n, i)) > 0) {
        char tmp[128];
        size_t m = 0;
        for (size_t j = i; j < i + k && m < sizeof tmp - 1; j++)
            if (s[j] != '_')
                tmp[m++] = s[j];
        tmp[m] = 0;
        if ((rc = lx_push(lx, JT_FLOAT, s + i, k, lx->line, lx->col, &t)) < 0)
            return rc;
        t->fval = strtod(tmp, NULL);
        *len = k;
        return 0;
    }
    int64_t v;
    bool overflow;
    if ((k = scan_int(s, n, i, &v, &overflow)) > 0) {
        if (overflow)
            return lx_fail(lx, "%s", "integer literal too large (spillway's integers are 64-bit)");
        if ((rc = lx_push(lx, JT_INT, s + i, k, lx->line, lx->col, &t)) < 0)
            return rc;
        t->ival = v;
        *len = k;
        return 0;
    }
    if (is_name_start(s[i])) {
        for (k = i + 1; k < n && is_name_char(s[k]);)
            k++;
        *len = k - i;
        return lx_push(lx, JT_NAME, s + i, k - i, lx->line, lx->col, NULL);
    }
    if (s[i] == '\'' || s[i] == '"')
        return lx_string(lx, len);
    for (size_t o = 0; o < sizeof ops2 / sizeof ops2[0]; o++)
        if (i + 1 < n && s[i] == ops2[o][0] && s[i + 1] == ops2[o][1]) {
            *len = 2;
            return lx_push(lx, JT_OP, s + i, 2, lx->line, lx->col, NULL);
        }
    if (!strchr("+-/*%~[](){}><=.:|,;", s[i]) || s[i] == 0) {
        if ((unsigned char)s[i] >= 0x80)
            return lx_fail(lx, "%s", "unexpected non-ASCII character in a tag "
                                     "(non-ASCII names are not supported)");
        char c[2] = {s[i], 0};
        return lx_fail(lx, "unexpected character '%s'", c);
    }
    char c = s[i];
    if (c == '(' || c == '[' || c == '{') {
        if (lx->depth == sizeof lx->stack)
            return lx_fail(lx, "%s", "brackets nested too deeply");
        lx->stack[lx->depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
        char want[2] = {lx->depth ? lx->stack[lx->depth - 1] : 0, 0};
        char got[2] = {c, 0};
        if (!lx->depth)
            return lx_fail(lx, "unexpected '%s'", got);
        if (want[0] != c) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected '%c', expected '%c'", c, want[0]);
            return lx_fail(lx, "%s", msg);
        }
        lx->depth--;
    }
    *len = 1;
    return lx_push(lx, JT_OP, s + i, 1, lx->line, lx->col, NULL);
}

/* The closing delimiter of a tag at pos, if there: its length with what it
 * swallows after it. */
static size_t tag_end(lexer *lx, char close, bool block)
{
    const char *s = lx->s;
    size_t i = lx->pos, n = lx->n;
    if (lx->depth)
        return 0;
    if (i + 2 < n && (s[i] == '-' || s[i] == '+') && s[i + 1] == close && s[i + 2] == '}') {
        if (s[i] == '+')
            return block ? 3 : 0;
        return skip_ws(s, n, i + 3) - i;
    }
    if (i + 1 < n && s[i] == close && s[i + 1] == '}') {
        if (block && i + 2 < n && s[i + 2] == '\n')
            return 3;
        return 2;
    }
    return 0;
}

/* Tokens of a {{ }} or {% %} tag from pos to its closing delimiter. */
static int lx_tag(lexer *lx, bool block)
{
    char close = block ? '%' : '}';
    lx->depth = 0;
    for (;;) {
        size_t k;
        if (lx->pos >= lx->n)
            return lx_fail(lx, "%s", block ? "unexpected end of template: '%}' missing"
                                           : "unexpected end of template: '}}' missing");
        if ((k = tag_end(lx, close, block)) > 0) {
            int rc = lx_push(lx, block ? JT_BLOCK_END : JT_VAR_END, NULL, 0, lx->line,
                             lx->col, NULL);
            lx->line_starting = lx->s[lx->pos + k - 1] == '\n';
            lx_advance(lx, lx->pos + k);
            return rc;
        }
        if ((k = ws_at(lx->s, lx->n, lx->pos)) > 0) {
            lx_advance(lx, skip_ws(lx->s, lx->n, lx->pos));
            continue;
        }
        int rc = lx_token(lx, &k);
        if (rc < 0)
            return rc;
        lx_advance(lx, lx->pos + k);
    }
}

/* ---- raw blocks and comments ------------------------------------------------ */

/* "{%[-+]?\s*raw\s*(-%}\s*|%})" at i: its length, or 0. */
static size_t raw_begin(const char *s, size_t n, size_t i)
{
    size_t j = i + 2;
    if (j < n && (s[j] == '-' || s[j] == '+'))
        j++;
    j = skip_ws(s, n, j);
    if (n - j < 3 || memcmp(s + j, "raw", 3))
        return 0;
    j = skip_ws(s, n, j + 3);
    if (j + 2 < n && s[j] == '-' && s[j + 1] == '%' && s[j + 2] == '}')
        return skip_ws(s, n, j + 3) - i;
    if (j + 1 < n && s[j] == '%' && s[j + 1] == '}')
        return j + 2 - i;
    return 0;
}

/* The {% endraw %} after pos: its start, sign and end, or false. */
static bool raw_end(const char *s, size_t n, size_t pos, size_t *start, char *sign, size_t *end)
{
    for (const char *p = s + pos; (p = memmem(p, (size_t)(s + n - p), "{%", 2)) != NULL; p++) {
        size_t j = (size_t)(p - s) + 2;
        char sg = j < n && (s[j] == '-' || s[j] == '+') ? s[j] : 0;
        j = skip_ws(s, n, j + (sg != 0));
        if (n - j < 6 || memcmp(s + j, "endraw", 6))
            continue;
        j = skip_ws(s, n, j + 6);
        if (j + 2 < n && (s[j] == '-' || s[j] == '+') && s[j + 1] == '%' && s[j + 2] == '}') {
            *end = s[j] == '-' ? skip_ws(s, n, j + 3) : j + 3;
        } else if (j + 1 < n && s[j] == '%' && s[j + 1] == '}') {
            *end = j + 2 + (j + 2 < n && s[j + 2] == '\n');
        } else {
            continue;
        }
        *start = (size_t)(p - s);
        *sign = sg;
        return true;
    }
    return false;
}

static int lx_raw(lexer *lx, size_t k)
{
    lx->line_starting = lx->s[lx->pos + k - 1] == '\n';
    lx_advance(lx, lx->pos + k);
    size_t start, end;
    char sign;
    if (!raw_end(lx->s, lx->n, lx->pos, &start, &sign, &end))
        return lx_fail(lx, "%s", "missing {% endraw %} for this {% raw %}");
    int rc = lx_text(lx, lx->pos, start, sign, true);
    lx->line_starting = lx->s[end - 1] == '\n';
    lx_advance(lx, end);
    return rc;
}

static int lx_comment(lexer *lx)
{
    const char *s = lx->s;
    const char *e = memmem(s + lx->pos, lx->n - lx->pos, "#}", 2);
    if (!e)
        return lx_fail(lx, "%s", "missing end of comment tag '#}'");
    size_t at = (size_t)(e - s), end = at + 2;
    if (at > lx->pos && s[at - 1] == '-')
        end = skip_ws(s, lx->n, end);
    else if (!(at > lx->pos && s[at - 1] == '+') && end < lx->n && s[end] == '\n')
        end++;
    lx->line_starting = s[end - 1] == '\n';
    lx_advance(lx, end);
    return 0;
}

/* ---- the whole template ----------------------------------------------------- */

static char *normalize(arena *mem, const char *src, size_t len, size_t *out_len)
{
    char *p = arena_alloc(mem, len + 1);
    if (!p)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            p[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            p[n++] = src[i];
        }
    }
    if (n > 0 && p[n - 1] == '\n')
        n--;
    p[n] = 0;
    *out_len = n;
    return p;
}

static int lx_run(lexer *lx)
{
    const char *s = lx->s;
    while (lx->pos < lx->n) {
        const char *p = s + lx->pos;
        size_t t = lx->n;
        while ((p = memchr(p, '{', (size_t)(s + lx->n - p))) != NULL) {
            if (p + 1 < s + lx->n && (p[1] == '{' || p[1] == '%' || p[1] == '#')) {
                t = (size_t)(p - s);
                break;
            }
            p++;
        }
        if (t == lx->n)
            return lx_text(lx, lx->pos, lx->n, 0, false);
        char kind = s[t + 1];
        char sign = t + 2 < lx->n && (s[t + 2] == '-' || s[t + 2] == '+') ? s[t + 2] : 0;
        int rc = lx_text(lx, lx->pos, t, sign, kind != '{');
        if (rc < 0)
            return rc;
        size_t k;
        if (kind == '%' && (k = raw_begin(s, lx->n, t)) > 0) {
            rc = lx_raw(lx, k);
        } else {
            uint32_t line = lx->line, col = lx->col;
            lx->line_starting = false;
            lx_advance(lx, t + 2 + (sign != 0));
            if (kind == '#')
                rc = lx_comment(lx);
            else if ((rc = lx_push(lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, NULL, 0,
                                   line, col, NULL)) == 0)
                rc = lx_tag(lx, kind == '%');
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int jinja_lex(const char *src, size_t len, arena *mem, jtoks *toks, sw_err *err)
{
    memset(toks, 0, sizeof *toks);
    if (!utf8_valid(src, len))
        return sw_errf(err, SW_EFORMAT, "template is not valid UTF-8");
    if (memchr(src, 0, len))
        return sw_errf(err, SW_EFORMAT, "template contains a NUL byte");
    lexer lx = {.mem = mem, .toks = toks, .err = err, .line = 1, .col = 1,
                .line_starting = true};
    lx.s = normalize(mem, src, len, &lx.n);
    if (!lx.s)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    int rc = lx_run(&lx);
    if (rc == 0)
        rc = lx_push(&lx, JT_EOF, NULL, 0, lx.line, lx.col, NULL);
    if (rc < 0) {
        free(toks->v);
        memset(toks, 0, sizeof *toks);
    }
    return rc;
}
