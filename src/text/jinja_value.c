/*
 * jinja_value.c — the template interpreter's values and their Python
 * semantics: reference counting, strings, lists, dicts, truth, equality,
 * ordering, str(), repr() and json.dumps().
 *
 * Freeing is iterative (containers waiting to be freed are chained through
 * a worklist), so a deeply nested value cannot overflow the C stack when it
 * dies. The other recursive walks (repr, json, equality, ordering) stop at
 * JV_MAX_NEST levels.
 */
#include "text/jinja_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#define JV_MAX_NEST 400

void jframe_drop(struct jframe *f); /* jinja_eval.c */

/* ---- reference counting --------------------------------------------------- */

static bool jv_heap(jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return v.u.s != NULL;
    case JV_STR: case JV_LIST: case JV_DICT: case JV_NS: case JV_FUNC: case JV_LOOP:
        return true;
    default: return false;
    }
}

/* Every heap object starts with its int reference count. */
static int *jv_refs(jv v) { return (int *)(void *)v.u.s; }

/* A negative count marks an immortal object (a template's constants, which
 * renders on several threads share): never counted, never freed here. */
jv jv_ref(jv v)
{
    if (jv_heap(v) && *jv_refs(v) > 0)
        (*jv_refs(v))++;
    return v;
}

/* A worklist of containers whose count reached zero. */
typedef struct deadlist {
    jv *v;
    size_t n, cap;
} deadlist;

static void dead_push(deadlist *d, jv v);

/* Drops one reference to a child; containers that die go on the worklist. */
static void drop_child(deadlist *d, jv v)
{
    if (!jv_heap(v) || *jv_refs(v) < 0 || --(*jv_refs(v)) > 0)
        return;
    if (v.kind == JV_STR || v.kind == JV_UNDEF) {
        free(v.u.s);
        return;
    }
    dead_push(d, v);
}

static void free_object(deadlist *d, jv v)
{
    switch (v.kind) {
    case JV_LIST:
        for (size_t i = 0; i < v.u.l->n; i++)
            drop_child(d, v.u.l->v[i]);
        free(v.u.l->v);
        free(v.u.l);
        break;
    case JV_DICT: case JV_NS:
        for (size_t i = 0; i < v.u.d->n; i++) {
            drop_child(d, v.u.d->k[i]);
            drop_child(d, v.u.d->v[i]);
        }
        free(v.u.d->k);
        free(v.u.d->v);
        free(v.u.d);
        break;
    case JV_FUNC:
        drop_child(d, v.u.fn->self);
        if (v.u.fn->scope)
            jframe_drop(v.u.fn->scope);
        free(v.u.fn);
        break;
    case JV_LOOP:
        if (v.u.loop->items)
            drop_child(d, (jv){.kind = JV_LIST, .u.l = v.u.loop->items});
        drop_child(d, v.u.loop->last_changed);
        free(v.u.loop);
        break;
    default:
        free(v.u.s);
        break;
    }
}

static void dead_push(deadlist *d, jv v)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        jv *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv) {
            free_object(d, v); /* out of memory: recurse instead */
            return;
        }
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = v;
}

void jv_drop(jv v)
{
    if (!jv_heap(v) || *jv_refs(v) < 0 || --(*jv_refs(v)) > 0)
        return;
    deadlist d = {0};
    free_object(&d, v);
    while (d.n > 0)
        free_object(&d, d.v[--d.n]);
    free(d.v);
}

void jv_clear(jv *v)
{
    jv_drop(*v);
    *v = jv_undef();
}

/* ---- strings ---------------------------------------------------------------- */

size_t u8_count(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)p[i] & 0xC0) != 0x80;
    return c;
}

uint32_t u8_next(const char *s, size_t *i)
{
    const unsigned char *p = (const unsigned char *)s + *i;
    uint32_t c = p[0];
    size_t n = 1;
    if (c >= 0xF0) {
        c = ((c & 0x07) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
        n = 4;
    } else if (c >= 0xE0) {
        c = ((c & 0x0F) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
        n = 3;
    } else if (c >= 0xC0) {
        c = ((c & 0x1F) << 6) | (p[1] & 0x3Fu);
        n = 2;
    }
    *i += n;
    return c;
}

size_t u8_offset(const jstr *s, size_t cp)
{
    if (s->ncp == s->len)
        return cp;
    size_t i = 0;
    for (size_t k = 0; k < cp && i < s->len; k++)
        u8_next(s->p, &i);
    return i;
}

bool py_isspace(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
        return true;
    }
    return c >= 0x2000 && c <= 0x200A;
}

jstr *jstr_new(const char *p, size_t len)
{
    if (len > SIZE_MAX - sizeof(jstr) - 1)
        return NULL;
    jstr *s = malloc(sizeof *s + len + 1);
    if (!s)
        return NULL;
    s->refs = 1;
    s->len = len;
    if (len)
        memcpy(s->p, p, len);
    s->p[len] = 0;
    s->ncp = u8_count(s->p, len);
    return s;
}

int jv_str(const char *p, size_t len, jv *out)
{
    jstr *s = jstr_new(p, len);
    *out = s ? jv_from_jstr(s) : jv_undef();
    return s ? 0 : SW_ENOMEM;
}

int jv_cstr(const char *s, jv *out) { return jv_str(s, strlen(s), out); }

jv jv_undef_named(const char *name, size_t len)
{
    jv v = jv_undef();
    v.u.s = jstr_new(name, len);
    return v;
}

/* ---- lists and dicts -------------------------------------------------------- */

jlist *jlist_new(size_t cap)
{
    jlist *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->refs = 1;
    if (cap) {
        l->v = malloc(cap * sizeof *l->v);
        if (!l->v) {
            free(l);
            return NULL;
        }
        l->cap = cap;
    }
    return l;
}

int jv_list(size_t cap, bool tuple, jv *out)
{
    jlist *l = jlist_new(cap);
    *out = jv_undef();
    if (!l)
        return SW_ENOMEM;
    l->tuple = tuple;
    *out = (jv){.kind = JV_LIST, .u.l = l};
    return 0;
}

int jlist_push(jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *nv = cap < SIZE_MAX / sizeof *nv ? realloc(l->v, cap * sizeof *nv) : NULL;
        if (!nv) {
            jv_drop(v);
            return SW_ENOMEM;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

jdict *jdict_new(void)
{
    jdict *d = calloc(1, sizeof *d);
    if (d)
        d->refs = 1;
    return d;
}

int jv_dict(jv *out)
{
    jdict *d = jdict_new();
    *out = d ? (jv){.kind = JV_DICT, .u.d = d} : jv_undef();
    return d ? 0 : SW_ENOMEM;
}

/* Python dict keys: equal values are the same key (1 == 1.0 == True). */
static ptrdiff_t jdict_find(const jdict *d, jv key)
{
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->k[i];
        if (k.kind == JV_STR && key.kind == JV_STR) {
            if (k.u.s->len == key.u.s->len && !memcmp(k.u.s->p, key.u.s->p, k.u.s->len))
                return (ptrdiff_t)i;
        } else if (jv_equal(k, key)) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

jv *jdict_get(const jdict *d, jv key)
{
    ptrdiff_t i = jdict_find(d, key);
    return i < 0 ? NULL : &d->v[i];
}

jv *jdict_get_cstr(const jdict *d, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++) {
        jv k = d->k[i];
        if (k.kind == JV_STR && k.u.s->len == n && !memcmp(k.u.s->p, key, n))
            return &d->v[i];
    }
    return NULL;
}

int jdict_set(jdict *d, jv key, jv val)
{
    ptrdiff_t i = jdict_find(d, key);
    if (i >= 0) {
        jv_drop(key);
        jv_drop(d->v[i]);
        d->v[i] = val;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *nk = realloc(d->k, cap * sizeof *nk);
        if (nk)
            d->k = nk;
        jv *nv = nk ? realloc(d->v, cap * sizeof *nv) : NULL;
        if (!nv) {
            jv_drop(key);
            jv_drop(val);
            return SW_ENOMEM;
        }
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = val;
    d->n++;
    return 0;
}

void jdict_clear(jdict *d)
{
    size_t n = d->n;
    d->n = 0; /* first, so that nothing dying below sees the entries */
    for (size_t i = 0; i < n; i++) {
        jv_drop(d->k[i]);
        jv_drop(d->v[i]);
    }
}

/* ---- truth, equality, ordering ---------------------------------------------- */

bool jv_truthy(jv v)
{
    switch (v.kind) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s->len > 0;
    case JV_LIST: return v.u.l->gen || v.u.l->n > 0;
    case JV_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

static bool equal_at(jv a, jv b, int depth);

static bool dict_equal(const jdict *a, const jdict *b, int depth)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        jv *o = jdict_get(b, a->k[i]);
        if (!o || !equal_at(a->v[i], *o, depth + 1))
            return false;
    }
    return true;
}

static bool equal_at(jv a, jv b, int depth)
{
    if (depth > JV_MAX_NEST)
        return false;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (jv_is_intlike(a) && jv_is_intlike(b))
            return jv_intval(a) == jv_intval(b);
        return jv_numval(a) == jv_numval(b);
    }
    if (a.kind != b.kind)
        return false;
    switch (a.kind) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR:
        return a.u.s->len == b.u.s->len && !memcmp(a.u.s->p, b.u.s->p, a.u.s->len);
    case JV_LIST:
        if (a.u.l->gen || b.u.l->gen)
            return a.u.l == b.u.l;
        if (a.u.l->range != b.u.l->range)
            return false;
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_at(a.u.l->v[i], b.u.l->v[i], depth + 1))
                return false;
        return true;
    case JV_DICT: return dict_equal(a.u.d, b.u.d, depth);
    default: return a.u.s == b.u.s; /* identity */
    }
}

bool jv_equal(jv a, jv b) { return equal_at(a, b, 0); }

bool jv_hashable(jv v)
{
    switch (v.kind) {
    case JV_DICT: return false;
    case JV_LIST:
        if (v.u.l->gen || v.u.l->range)
            return true;
        if (!v.u.l->tuple)
            return false;
        for (size_t i = 0; i < v.u.l->n; i++)
            if (!jv_hashable(v.u.l->v[i]))
                return false;
        return true;
    default: return true;
    }
}

static int compare_at(jv a, jv b, int *res, char *msg, size_t msgsz, int depth)
{
    if (depth > JV_MAX_NEST) {
        if (msg)
            snprintf(msg, msgsz, "values nested too deeply to compare");
        return SW_ERANGE;
    }
    if (jv_is_num(a) && jv_is_num(b)) {
        if (jv_is_intlike(a) && jv_is_intlike(b)) {
            int64_t x = jv_intval(a), y = jv_intval(b);
            *res = (x > y) - (x < y);
        } else {
            double x = jv_numval(a), y = jv_numval(b);
            *res = (x > y) - (x < y); /* NaN compares equal: Python says all False */
        }
        return 0;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->p, b.u.s->p, n);
        *res = c ? (c > 0) - (c < 0) : (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
        return 0;
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST && a.u.l->tuple == b.u.l->tuple &&
        !a.u.l->gen && !b.u.l->gen && !a.u.l->range && !b.u.l->range) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++)
            if (!equal_at(a.u.l->v[i], b.u.l->v[i], depth + 1))
                return compare_at(a.u.l->v[i], b.u.l->v[i], res, msg, msgsz, depth + 1);
        *res = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return 0;
    }
    if (msg)
        snprintf(msg, msgsz, "'<' not supported between instances of '%s' and '%s'",
                 jv_type_name(a), jv_type_name(b));
    return SW_ETYPE;
}

int jv_compare(jv a, jv b, int *res, char *msg, size_t msgsz)
{
    *res = 0;
    return compare_at(a, b, res, msg, msgsz, 0);
}

const char *jv_type_name(jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return v.flags & JVF_SAFE ? "Markup" : "str";
    case JV_LIST:
        return v.u.l->gen ? "generator" : v.u.l->range ? "range" : v.u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_FUNC: return v.u.fn->kind == JF_MACRO ? "Macro" : "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

int64_t jv_length(jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return 0;
    case JV_STR: return (int64_t)v.u.s->ncp;
    case JV_LIST: return v.u.l->gen ? -1 : (int64_t)v.u.l->n;
    case JV_DICT: return (int64_t)v.u.d->n;
    case JV_LOOP: return v.u.loop->length;
    default: return -1;
    }
}

/* ---- buffers ---------------------------------------------------------------- */

void jbuf_init(jbuf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void jbuf_free(jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static bool jbuf_reserve(jbuf *b, size_t n)
{
    if (b->err)
        return false;
    if (n > b->max || b->len > b->max - n) {
        b->err = SW_ERANGE;
        return false;
    }
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
        cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->err = SW_ENOMEM;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

void jbuf_put(jbuf *b, const char *p, size_t n)
{
    if (n == 0 || !jbuf_reserve(b, n))
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jbuf_puts(jbuf *b, const char *s) { jbuf_put(b, s, strlen(s)); }

void jbuf_putc(jbuf *b, char c) { jbuf_put(b, &c, 1); }

void jbuf_printf(jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        jbuf_put(b, tmp, (size_t)n);
        return;
    }
    if (!jbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int jbuf_to_jv(jbuf *b, jv *out)
{
    *out = jv_undef();
    if (b->err)
        return b->err;
    int rc = jv_str(b->p ? b->p : "", b->len, out);
    jbuf_free(b);
    return rc;
}

/* ---- str() and repr() ------------------------------------------------------- */

void py_float_repr(double f, char out[32])
{
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        strcpy(out, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* The shortest digit string that reads back as f. */
    char e[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f)
            break;
    }
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char *o = out;
    if (neg)
        *o++ = '-';
    if (exp < -4 || exp >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    int point = exp + 1; /* digits before the decimal point */
    if (point <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -point; i++)
            *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else if ((size_t)point >= nd) {
        memcpy(o, digits, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)point; i++)
            *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)point);
        o += point;
        *o++ = '.';
        memcpy(o, digits + point, nd - (size_t)point);
        o += nd - (size_t)point;
    }
    *o = 0;
}

static bool py_isprintable(uint32_t c)
{
    if (c == ' ')
        return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return false;
    default:
        return true;
    }
}

static void write_str_repr(jbuf *b, const jstr *s)
{
    bool sq = memchr(s->p, '\'', s->len) != NULL, dq = memchr(s->p, '"', s->len) != NULL;
    char q = sq && !dq ? '"' : '\'';
    jbuf_putc(b, q);
    for (size_t i = 0; i < s->len;) {
        size_t start = i;
        uint32_t c = u8_next(s->p, &i);
        if (c == (uint32_t)q || c == '\\') {
            jbuf_putc(b, '\\');
            jbuf_putc(b, (char)c);
        } else if (c == '\n') {
            jbuf_puts(b, "\\n");
        } else if (c == '\r') {
            jbuf_puts(b, "\\r");
        } else if (c == '\t') {
            jbuf_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7F) {
            jbuf_printf(b, "\\x%02x", c);
        } else if (c < 0x80 || py_isprintable(c)) {
            jbuf_put(b, s->p + start, i - start);
        } else if (c < 0x100) {
            jbuf_printf(b, "\\x%02x", c);
        } else if (c < 0x10000) {
            jbuf_printf(b, "\\u%04x", c);
        } else {
            jbuf_printf(b, "\\U%08x", c);
        }
    }
    jbuf_putc(b, q);
}

static void write_repr_at(jbuf *b, jv v, int depth);

static void write_items(jbuf *b, const jlist *l, int depth)
{
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            jbuf_puts(b, ", ");
        write_repr_at(b, l->v[i], depth + 1);
    }
}

static void write_dict(jbuf *b, const jdict *d, int depth)
{
    jbuf_putc(b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i)
            jbuf_puts(b, ", ");
        write_repr_at(b, d->k[i], depth + 1);
        jbuf_puts(b, ": ");
        write_repr_at(b, d->v[i], depth + 1);
    }
    jbuf_putc(b, '}');
}

/* str() and repr() differ only for strings and undefined at the top. */
static void write_common(jbuf *b, jv v, int depth)
{
    char tmp[32];
    if (depth > JV_MAX_NEST) {
        jbuf_puts(b, "[...]");
        return;
    }
    switch (v.kind) {
    case JV_NONE: jbuf_puts(b, "None"); break;
    case JV_BOOL: jbuf_puts(b, v.u.b ? "True" : "False"); break;
    case JV_INT: jbuf_printf(b, "%lld", (long long)v.u.i); break;
    case JV_FLOAT:
        py_float_repr(v.u.f, tmp);
        jbuf_puts(b, tmp);
        break;
    case JV_LIST:
        if (v.u.l->gen) {
            jbuf_puts(b, "<generator object>");
            break;
        }
        if (v.u.l->range) {
            jbuf_printf(b, "range(%lld, %lld", (long long)v.u.l->start, (long long)v.u.l->stop);
            if (v.u.l->step != 1)
                jbuf_printf(b, ", %lld", (long long)v.u.l->step);
            jbuf_putc(b, ')');
            break;
        }
        jbuf_putc(b, v.u.l->tuple ? '(' : '[');
        write_items(b, v.u.l, depth);
        if (v.u.l->tuple && v.u.l->n == 1)
            jbuf_putc(b, ',');
        jbuf_putc(b, v.u.l->tuple ? ')' : ']');
        break;
    case JV_DICT: write_dict(b, v.u.d, depth); break;
    case JV_NS:
        jbuf_puts(b, "<Namespace ");
        write_dict(b, v.u.d, depth);
        jbuf_putc(b, '>');
        break;
    case JV_FUNC:
        if (v.u.fn->kind == JF_MACRO)
            jbuf_printf(b, "<Macro '%s'>", v.u.fn->name);
        else
            jbuf_printf(b, "<built-in function %s>", v.u.fn->name);
        break;
    case JV_LOOP: jbuf_puts(b, "<LoopContext>"); break;
    default: break;
    }
}

static void write_repr_at(jbuf *b, jv v, int depth)
{
    if (v.kind == JV_STR) {
        if (v.flags & JVF_SAFE) {
            jbuf_puts(b, "Markup(");
            write_str_repr(b, v.u.s);
            jbuf_putc(b, ')');
        } else {
            write_str_repr(b, v.u.s);
        }
    } else if (v.kind == JV_UNDEF) {
        jbuf_puts(b, "Undefined");
    } else {
        write_common(b, v, depth);
    }
}

void jv_write_repr(jbuf *b, jv v) { write_repr_at(b, v, 0); }

void jv_write_str(jbuf *b, jv v)
{
    if (v.kind == JV_STR)
        jbuf_put(b, v.u.s->p, v.u.s->len);
    else if (v.kind != JV_UNDEF)
        write_common(b, v, 0);
}

int jv_to_str(jv v, jv *out)
{
    if (v.kind == JV_STR) {
        *out = jv_ref(v);
        out->flags = 0;
        return 0;
    }
    jbuf b;
    jbuf_init(&b, SIZE_MAX / 2);
    jv_write_str(&b, v);
    return jbuf_to_jv(&b, out);
}

/* ---- json.dumps ------------------------------------------------------------- */

static void jw_string(jbuf *b, const char *p, size_t len, bool ascii)
{
    jbuf_putc(b, '"');
    for (size_t i = 0; i < len;) {
        size_t start = i;
        uint32_t c = u8_next(p, &i);
        switch (c) {
        case '"': jbuf_puts(b, "\\\""); continue;
        case '\\': jbuf_puts(b, "\\\\"); continue;
        case '\n': jbuf_puts(b, "\\n"); continue;
        case '\r': jbuf_puts(b, "\\r"); continue;
        case '\t': jbuf_puts(b, "\\t"); continue;
        case '\b': jbuf_puts(b, "\\b"); continue;
        case '\f': jbuf_puts(b, "\\f"); continue;
        }
        if (c < 0x20 || (ascii && c >= 0x7F)) {
            if (c >= 0x10000) {
                c -= 0x10000;
                jbuf_printf(b, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
            } else {
                jbuf_printf(b, "\\u%04x", c);
            }
        } else {
            jbuf_put(b, p + start, i - start);
        }
    }
    jbuf_putc(b, '"');
}

static void jw_float(jbuf *b, double f)
{
    char tmp[32];
    if (isnan(f))
        jbuf_puts(b, "NaN");
    else if (isinf(f))
        jbuf_puts(b, f < 0 ? "-Infinity" : "Infinity");
    else {
        py_float_repr(f, tmp);
        jbuf_puts(b, tmp);
    }
}

static void jw_newline(jbuf *b, const jjson_opts *o, int level)
{
    jbuf_putc(b, '\n');
    for (int i = 0; i < level; i++)
        jbuf_puts(b, o->indent);
}

typedef struct jw_state {
    jbuf *b;
    const jjson_opts *o;
    char *msg;
    size_t msgsz;
} jw_state;

static int jw_value(jw_state *w, jv v, int level);

static int jw_key(jw_state *w, jv k)
{
    char tmp[32];
    switch (k.kind) {
    case JV_STR: jw_string(w->b, k.u.s->p, k.u.s->len, w->o->ensure_ascii); return 0;
    case JV_NONE: jbuf_puts(w->b, "\"null\""); return 0;
    case JV_BOOL: jbuf_puts(w->b, k.u.b ? "\"true\"" : "\"false\""); return 0;
    case JV_INT: jbuf_printf(w->b, "\"%lld\"", (long long)k.u.i); return 0;
    case JV_FLOAT:
        if (isnan(k.u.f) || isinf(k.u.f)) {
            jbuf_putc(w->b, '"');
            jw_float(w->b, k.u.f);
            jbuf_putc(w->b, '"');
        } else {
            py_float_repr(k.u.f, tmp);
            jbuf_printf(w->b, "\"%s\"", tmp);
        }
        return 0;
    default:
        snprintf(w->msg, w->msgsz, "keys must be str, int, float, bool or None, not %s",
                 jv_type_name(k));
        return SW_ETYPE;
    }
}

static int jw_dict(jw_state *w, const jdict *d, int level)
{
    if (d->n == 0) {
        jbuf_puts(w->b, "{}");
        return 0;
    }
    size_t *order = malloc(d->n * sizeof *order);
    if (!order)
        return SW_ENOMEM;
    for (size_t i = 0; i < d->n; i++)
        order[i] = i;
    int rc = 0;
    if (w->o->sort_keys) { /* insertion sort: stable, and dicts are small */
        for (size_t i = 1; i < d->n && rc == 0; i++) {
            size_t cur = order[i], j = i;
            int c = 0;
            while (j > 0 && (rc = jv_compare(d->k[order[j - 1]], d->k[cur], &c, w->msg,
                                             w->msgsz)) == 0 && c > 0) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = cur;
        }
    }
    jbuf_putc(w->b, '{');
    for (size_t i = 0; i < d->n && rc == 0; i++) {
        if (i)
            jbuf_puts(w->b, w->o->item_sep);
        if (w->o->indent)
            jw_newline(w->b, w->o, level + 1);
        rc = jw_key(w, d->k[order[i]]);
        if (rc == 0) {
            jbuf_puts(w->b, w->o->key_sep);
            rc = jw_value(w, d->v[order[i]], level + 1);
        }
    }
    free(order);
    if (w->o->indent)
        jw_newline(w->b, w->o, level);
    jbuf_putc(w->b, '}');
    return rc;
}

static int jw_value(jw_state *w, jv v, int level)
{
    if (level > JV_MAX_NEST) {
        snprintf(w->msg, w->msgsz, "value nested too deeply for tojson");
        return SW_ERANGE;
    }
    switch (v.kind) {
    case JV_NONE: jbuf_puts(w->b, "null"); return 0;
    case JV_BOOL: jbuf_puts(w->b, v.u.b ? "true" : "false"); return 0;
    case JV_INT: jbuf_printf(w->b, "%lld", (long long)v.u.i); return 0;
    case JV_FLOAT: jw_float(w->b, v.u.f); return 0;
    case JV_STR: jw_string(w->b, v.u.s->p, v.u.s->len, w->o->ensure_ascii); return 0;
    case JV_DICT: return jw_dict(w, v.u.d, level);
    case JV_LIST:
        if (v.u.l->gen || v.u.l->range)
            break;
        if (v.u.l->n == 0) {
            jbuf_puts(w->b, "[]");
            return 0;
        }
        jbuf_putc(w->b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                jbuf_puts(w->b, w->o->item_sep);
            if (w->o->indent)
                jw_newline(w->b, w->o, level + 1);
            int rc = jw_value(w, v.u.l->v[i], level + 1);
            if (rc < 0)
                return rc;
        }
        if (w->o->indent)
            jw_newline(w->b, w->o, level);
        jbuf_putc(w->b, ']');
        return 0;
    default:
        break;
    }
    snprintf(w->msg, w->msgsz, "Object of type %s is not JSON serializable", jv_type_name(v));
    return SW_ETYPE;
}

int jv_write_json(jbuf *b, jv v, const jjson_opts *o, char *msg, size_t msgsz)
{
    jw_state w = {b, o, msg, msgsz};
    return jw_value(&w, v, 0);
}

static int from_json_at(const json_t *j, jv *out, int depth)
{
    *out = jv_undef();
    if (depth > JV_MAX_NEST)
        return SW_ERANGE;
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return 0;
    case JSON_TRUE: *out = jv_bool(true); return 0;
    case JSON_FALSE: *out = jv_bool(false); return 0;
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return 0;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return 0;
    case JSON_STRING: return jv_str(json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        int rc = jv_list(json_array_size(j), false, out);
        for (size_t i = 0; rc == 0 && i < json_array_size(j); i++) {
            jv item;
            rc = from_json_at(json_array_get(j, i), &item, depth + 1);
            if (rc == 0)
                rc = jlist_push(out->u.l, item);
        }
        if (rc < 0)
            jv_clear(out);
        return rc;
    }
    case JSON_OBJECT: {
        int rc = jv_dict(out);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            jv k, v;
            if (rc == 0)
                rc = jv_cstr(key, &k);
            if (rc == 0 && (rc = from_json_at(val, &v, depth + 1)) < 0)
                jv_drop(k);
            if (rc == 0)
                rc = jdict_set(out->u.d, k, v);
        }
        if (rc < 0)
            jv_clear(out);
        return rc;
    }
    }
    return SW_EINVAL;
}

int jv_from_json(const json_t *j, jv *out)
{
    int rc = from_json_at(j, out, 0);
    if (rc < 0)
        jv_clear(out);
    return rc;
}
