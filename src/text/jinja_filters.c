/*
 * jinja_filters.c — jinja2's filters and tests, with the semantics of
 * jinja2 3.1 and, for tojson, of transformers' override (plain json.dumps:
 * no HTML escaping, ensure_ascii off unless asked, indent honoured).
 *
 * A filter receives its operand and its arguments already evaluated; it
 * binds them to parameter names the way Python would (jx_bind). map,
 * select, reject, selectattr, rejectattr, unique and reverse return
 * generators in jinja2, and so do they here (a list flagged gen): always
 * true, no length, not JSON-serializable, until |list makes them a list.
 */
#include "text/jinja_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

typedef int (*filter_fn)(jx *x, jv v, const jargs *a, jv *out);

#define BIND(what, params, nreq, slots)                                                     \
    do {                                                                                   \
        int rc_ = jx_bind(x, what, a, params, sizeof params / sizeof params[0], nreq, slots); \
        if (rc_ < 0)                                                                       \
            return rc_;                                                                    \
    } while (0)

static bool given(jv v) { return v.kind != JV_UNDEF; }

static int new_list(jx *x, size_t cap, jv *out)
{
    return jv_list(cap, false, out) < 0 ? jx_oom(x) : 0;
}

/* A list flagged as a generator (what jinja2's lazy filters return). */
static int make_gen(jx *x, size_t cap, jv *out)
{
    int rc = new_list(x, cap, out);
    if (rc == 0)
        out->u.l->gen = true;
    return rc;
}

static int push(jx *x, jv list, jv v)
{
    return jlist_push(list.u.l, v) < 0 ? jx_oom(x) : 0;
}

static int str_of(jx *x, jv v, jv *out)
{
    if (jv_to_str(v, out) < 0)
        return jx_oom(x);
    if (v.kind == JV_STR)
        out->flags = v.flags;
    return 0;
}

/* ---- attribute paths (jinja2's make_attrgetter) -------------------------------- */

/* item's attribute path attr ("a.b.0" or an int), or dflt when undefined. */
static int attr_get(jx *x, jv item, jv attr, jv dflt, jv *out)
{
    int rc;
    *out = jv_undef();
    if (attr.kind != JV_STR) {
        rc = jx_getitem(x, item, attr, out);
    } else {
        jv cur = jv_ref(item);
        const char *p = attr.u.s->p, *end = p + attr.u.s->len;
        rc = 0;
        while (rc == 0) {
            const char *dot = memchr(p, '.', (size_t)(end - p));
            size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
            bool digits = n > 0;
            int64_t k = 0;
            for (size_t i = 0; i < n && digits; i++) {
                digits = p[i] >= '0' && p[i] <= '9' && k < INT64_MAX / 10;
                k = k * 10 + (p[i] - '0');
            }
            jv key, next = jv_undef();
            if (digits)
                key = jv_int(k);
            else if (jv_str(p, n, &key) < 0)
                rc = jx_oom(x);
            if (rc == 0)
                rc = jx_getitem(x, cur, key, &next);
            jv_drop(key);
            jv_drop(cur);
            cur = next;
            if (!dot)
                break;
            p = dot + 1;
        }
        *out = cur;
    }
    if (rc == 0 && out->kind == JV_UNDEF && given(dflt)) {
        jv_drop(*out);
        *out = jv_ref(dflt);
    }
    return rc;
}

/* A copy of s lowercased when it is a string and !case_sensitive. */
static int sort_key(jx *x, jv v, bool case_sensitive, jv *out)
{
    if (v.kind == JV_STR && !case_sensitive)
        return jstr_case(v, JCASE_LOWER, out) < 0 ? jx_oom(x) : 0;
    *out = jv_ref(v);
    return 0;
}

/* ---- sorting ----------------------------------------------------------------------- */

typedef struct sort_item {
    jv key, val;
} sort_item;

/* Stable merge sort on keys; Python's sorted() with only '<' comparisons. */
static int merge_sort(jx *x, sort_item *v, sort_item *tmp, size_t n, bool reverse, bool strict)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    int rc;
    if ((rc = merge_sort(x, v, tmp, h, reverse, strict)) < 0 ||
        (rc = merge_sort(x, v + h, tmp, n - h, reverse, strict)) < 0)
        return rc;
    size_t i = 0, j = h, k = 0;
    char msg[200];
    while (i < h && j < n) {
        int c = 0; /* sorted() lets two undefined keys be (min() does not) */
        bool both_undef = v[j].key.kind == JV_UNDEF && v[i].key.kind == JV_UNDEF;
        if ((!both_undef || strict) && jv_compare(v[j].key, v[i].key, &c, msg, sizeof msg) < 0)
            return v[j].key.kind == JV_UNDEF ? jx_undef_fail(x, v[j].key)
                 : v[i].key.kind == JV_UNDEF ? jx_undef_fail(x, v[i].key)
                                              : jx_fail(x, SW_ETYPE, "%s", msg);
        bool take_right = reverse ? c > 0 : c < 0;
        tmp[k++] = take_right ? v[j++] : v[i++];
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
    return 0;
}

/* Sorts items (a list value) by key (an attribute path or none) into out. */
static int sort_values(jx *x, jv items, jv attr, bool case_sensitive, bool reverse, bool pairs,
                       bool strict, jv *out)
{
    size_t n = items.u.l->n;
    sort_item *v = calloc(n ? n : 1, sizeof *v), *tmp = malloc((n ? n : 1) * sizeof *tmp);
    int rc = v && tmp ? 0 : jx_oom(x);
    size_t made = 0;
    for (; made < n && rc == 0; made++) {
        jv item = items.u.l->v[made], k = jv_undef();
        v[made].val = item;
        if (pairs) /* dictsort: (key, value) by position 0 or 1 */
            rc = sort_key(x, item.u.l->v[jv_intval(attr)], case_sensitive, &v[made].key);
        else if (given(attr) && (rc = attr_get(x, item, attr, jv_undef(), &k)) == 0)
            rc = sort_key(x, k, case_sensitive, &v[made].key);
        else if (rc == 0)
            rc = sort_key(x, item, case_sensitive, &v[made].key);
        jv_drop(k);
    }
    if (rc == 0)
        rc = jx_charge(x, n * 8);
    if (rc == 0)
        rc = merge_sort(x, v, tmp, n, reverse, strict);
    if (rc == 0 && (rc = new_list(x, n, out)) == 0)
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = push(x, *out, jv_ref(v[i].val));
    for (size_t i = 0; v && i < made; i++)
        jv_drop(v[i].key);
    free(v);
    free(tmp);
    return rc;
}

/* ---- the filters ------------------------------------------------------------------- */

static int f_abs(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    if (v.kind == JV_FLOAT)
        *out = jv_float(fabs(v.u.f));
    else if (jv_is_intlike(v) && jv_intval(v) != INT64_MIN)
        *out = jv_int(jv_intval(v) < 0 ? -jv_intval(v) : jv_intval(v));
    else
        return jx_fail(x, SW_ETYPE, "bad operand type for abs(): '%s'", jv_type_name(v));
    return 0;
}

static int f_attr(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"name"};
    jv s[1];
    BIND("filter 'attr'", params, 1, s);
    if (s[0].kind != JV_STR)
        return jx_fail(x, SW_ETYPE, "attribute name must be a string");
    bool unsafe;
    if (v.kind != JV_NS && jinja_method_find(v, s[0].u.s->p, s[0].u.s->len, &unsafe) < 0) {
        char t[80];
        snprintf(t, sizeof t, "'%s object' has no attribute '%s'", jv_type_name(v), s[0].u.s->p);
        *out = jv_undef_named(t, strlen(t));
        return 0;
    }
    return jx_getattr(x, v, s[0].u.s->p, s[0].u.s->len, out);
}

static int f_default(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"default_value", "boolean"};
    jv s[2];
    BIND("filter 'default'", params, 0, s);
    bool use = v.kind == JV_UNDEF || (jv_truthy(s[1]) && !jv_truthy(v));
    if (!use)
        *out = jv_ref(v);
    else if (given(s[0]))
        *out = jv_ref(s[0]);
    else if (jv_str("", 0, out) < 0)
        return jx_oom(x);
    return 0;
}

static int f_dictsort(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"case_sensitive", "by", "reverse"};
    jv s[3];
    BIND("filter 'dictsort'", params, 0, s);
    if (v.kind != JV_DICT)
        return jx_fail(x, SW_ETYPE, "dictsort needs a mapping, not '%s'", jv_type_name(v));
    int pos = 0;
    if (given(s[1])) {
        if (s[1].kind == JV_STR && !strcmp(s[1].u.s->p, "value"))
            pos = 1;
        else if (s[1].kind != JV_STR || strcmp(s[1].u.s->p, "key"))
            return jx_fail(x, SW_EINVAL, "You can only sort by either \"key\" or \"value\"");
    }
    jv items;
    if (new_list(x, v.u.d->n, &items) < 0)
        return jx_oom(x);
    int rc = 0;
    for (size_t i = 0; i < v.u.d->n && rc == 0; i++) {
        jv pair;
        if ((rc = jv_list(2, true, &pair) < 0 ? jx_oom(x) : 0) == 0) {
            jlist_push(pair.u.l, jv_ref(v.u.d->k[i]));
            jlist_push(pair.u.l, jv_ref(v.u.d->v[i]));
            rc = push(x, items, pair);
        }
    }
    if (rc == 0)
        rc = sort_values(x, items, jv_int(pos), jv_truthy(s[0]), jv_truthy(s[2]), true, false,
                         out);
    jv_drop(items);
    return rc;
}

static void escape_into(jbuf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case '&': jbuf_puts(b, "&amp;"); break;
        case '<': jbuf_puts(b, "&lt;"); break;
        case '>': jbuf_puts(b, "&gt;"); break;
        case '"': jbuf_puts(b, "&#34;"); break;
        case '\'': jbuf_puts(b, "&#39;"); break;
        default: jbuf_putc(b, p[i]);
        }
    }
}

static int f_escape(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    if (v.kind == JV_STR && (v.flags & JVF_SAFE)) {
        *out = jv_ref(v);
        return 0;
    }
    jv s;
    if (str_of(x, v, &s) < 0)
        return jx_oom(x);
    jbuf b;
    jbuf_init(&b, x->max_output);
    escape_into(&b, s.u.s->p, s.u.s->len);
    jv_drop(s);
    int rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    if (rc == 0)
        out->flags = JVF_SAFE;
    return rc;
}

static int f_first_last(jx *x, jv v, bool last, jv *out)
{
    if (last && v.kind == JV_LIST && v.u.l->gen)
        return jx_fail(x, SW_ETYPE, "'generator' object is not reversible");
    jv items;
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    size_t n = items.u.l->n;
    if (n == 0)
        *out = jv_undef_named(last ? "No last item, sequence was empty."
                                   : "No first item, sequence was empty.", last ? 33 : 34);
    else
        *out = jv_ref(items.u.l->v[last ? n - 1 : 0]);
    jv_drop(items);
    return 0;
}

static int f_first(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return f_first_last(x, v, false, out);
}

static int f_last(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return f_first_last(x, v, true, out);
}

/* Python's float(str): surrounding whitespace, underscores between digits. */
static bool parse_float(jv v, double *out)
{
    if (v.kind == JV_FLOAT || jv_is_intlike(v)) {
        *out = jv_numval(v);
        return true;
    }
    if (v.kind != JV_STR)
        return false;
    char buf[128];
    size_t n = 0;
    const char *p = v.u.s->p, *e = p + v.u.s->len;
    while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
        p++;
    while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
        e--;
    for (; p < e && n < sizeof buf - 1; p++) {
        if (*p == '_' && n > 0 && buf[n - 1] >= '0' && buf[n - 1] <= '9' && p + 1 < e &&
            p[1] >= '0' && p[1] <= '9')
            continue;
        if (!strchr("0123456789+-.eEinfatyINFATY", *p))
            return false;
        buf[n++] = *p;
    }
    if (n == 0 || p < e)
        return false;
    buf[n] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0 && strncasecmp(buf, "0x", 2) && !strchr(buf, 'x');
}

static int f_float(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"default"};
    jv s[1];
    BIND("filter 'float'", params, 0, s);
    if (v.kind == JV_UNDEF)
        return jx_undef_fail(x, v);
    double d;
    if (parse_float(v, &d))
        *out = jv_float(d);
    else
        *out = given(s[0]) ? jv_ref(s[0]) : jv_float(0.0);
    return 0;
}

/* Python's int(str, base): whitespace, sign, underscores between digits. */
static bool parse_int(jv v, int base, int64_t *out)
{
    const char *p = v.u.s->p, *e = p + v.u.s->len;
    while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
        p++;
    while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
        e--;
    bool neg = p < e && *p == '-';
    if (p < e && (*p == '-' || *p == '+'))
        p++;
    if (base == 16 && e - p > 2 && p[0] == '0' && (p[1] | 0x20) == 'x')
        p += 2;
    uint64_t r = 0;
    size_t digits = 0;
    for (; p < e; p++) {
        if (*p == '_' && digits && p + 1 < e && p[1] != '_')
            continue;
        int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'
                ? (*p | 0x20) - 'a' + 10 : 99;
        if (d >= base || r > (UINT64_C(1) << 62) / (uint64_t)base)
            return false;
        r = r * (uint64_t)base + (uint64_t)d;
        digits++;
    }
    if (!digits)
        return false;
    *out = neg ? -(int64_t)r : (int64_t)r;
    return true;
}

static int f_int(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"default", "base"};
    jv s[2];
    BIND("filter 'int'", params, 0, s);
    if (v.kind == JV_UNDEF)
        return jx_undef_fail(x, v);
    int base = given(s[1]) && jv_is_intlike(s[1]) ? (int)jv_intval(s[1]) : 10;
    int64_t i;
    double d;
    if (jv_is_intlike(v)) {
        *out = jv_int(jv_intval(v));
    } else if (v.kind == JV_STR && base >= 2 && base <= 36 && parse_int(v, base, &i)) {
        *out = jv_int(i);
    } else if (parse_float(v, &d) && isfinite(d) && fabs(d) < 9.2e18) {
        *out = jv_int((int64_t)d);
    } else {
        *out = given(s[0]) ? jv_ref(s[0]) : jv_int(0);
    }
    return 0;
}

static int f_indent(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"width", "first", "blank"};
    jv s[3];
    BIND("filter 'indent'", params, 0, s);
    if (v.kind == JV_UNDEF) /* jinja2 appends "\n" to it: only strings work */
        return jx_undef_fail(x, v);
    if (v.kind != JV_STR)
        return jx_fail(x, SW_ETYPE, "unsupported operand type(s) for +=: '%s' and 'str'",
                       jv_type_name(v));
    jbuf ind, b;
    jbuf_init(&ind, x->max_output);
    if (s[0].kind == JV_STR)
        jbuf_put(&ind, s[0].u.s->p, s[0].u.s->len);
    else
        for (int64_t i = 0, w = given(s[0]) ? jv_intval(s[0]) : 4; i < w && i < 4096; i++)
            jbuf_putc(&ind, ' ');
    jv str, lines = jv_undef();
    int rc = str_of(x, v, &str);
    jbuf_init(&b, x->max_output);
    if (rc == 0) { /* s += "\n"; then splitlines(), as jinja2 does */
        jbuf tmp;
        jbuf_init(&tmp, x->max_output);
        jbuf_put(&tmp, str.u.s->p, str.u.s->len);
        jbuf_putc(&tmp, '\n');
        jv withnl;
        rc = jbuf_to_jv(&tmp, &withnl) < 0 ? jx_oom(x) : 0;
        jbuf_free(&tmp);
        if (rc == 0) {
            rc = jstr_splitlines(x, withnl, false, &lines);
            jv_drop(withnl);
        }
    }
    for (size_t i = 0; rc == 0 && i < lines.u.l->n; i++) {
        jstr *l = lines.u.l->v[i].u.s;
        if (i > 0)
            jbuf_putc(&b, '\n');
        if ((i > 0 || jv_truthy(s[1])) && (l->len > 0 || jv_truthy(s[2])))
            jbuf_put(&b, ind.p ? ind.p : "", ind.len);
        jbuf_put(&b, l->p, l->len);
    }
    if (rc == 0 && lines.u.l->n == 0 && jv_truthy(s[1]))
        jbuf_put(&b, ind.p ? ind.p : "", ind.len);
    if (rc == 0)
        rc = b.err || ind.err ? jx_buf_fail(x, b.err ? &b : &ind)
                              : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    if (rc == 0)
        out->flags = str.flags & JVF_SAFE;
    jv_drop(str);
    jv_drop(lines);
    jbuf_free(&b);
    jbuf_free(&ind);
    return rc;
}

static int f_items(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    if (v.kind == JV_UNDEF)
        return new_list(x, 0, out);
    if (v.kind != JV_DICT)
        return jx_fail(x, SW_ETYPE, "Can only get item pairs from a mapping.");
    int rc = make_gen(x, v.u.d->n, out); /* a generator in jinja2 */
    for (size_t i = 0; i < v.u.d->n && rc == 0; i++) {
        jv pair;
        if (jv_list(2, true, &pair) < 0)
            return jx_oom(x);
        jlist_push(pair.u.l, jv_ref(v.u.d->k[i]));
        jlist_push(pair.u.l, jv_ref(v.u.d->v[i]));
        rc = push(x, *out, pair);
    }
    return rc;
}

static int f_join(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"d", "attribute"};
    jv s[2], items;
    BIND("filter 'join'", params, 0, s);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    jbuf b;
    jbuf_init(&b, x->max_output);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        if (i && given(s[0]))
            jv_write_str(&b, s[0]);
        if (given(s[1])) {
            jv e;
            if ((rc = attr_get(x, items.u.l->v[i], s[1], jv_undef(), &e)) == 0)
                jv_write_str(&b, e);
            jv_drop(e);
        } else {
            jv_write_str(&b, items.u.l->v[i]);
        }
    }
    jv_drop(items);
    if (rc == 0)
        rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    return rc;
}

static int f_length(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    int64_t n = jv_length(v);
    if (n < 0)
        return jx_fail(x, SW_ETYPE, "object of type '%s' has no len()", jv_type_name(v));
    *out = jv_int(n);
    return 0;
}

static int f_list(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    jv items;
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    if ((rc = new_list(x, items.u.l->n, out)) == 0)
        for (size_t i = 0; i < items.u.l->n && rc == 0; i++)
            rc = push(x, *out, jv_ref(items.u.l->v[i]));
    jv_drop(items);
    return rc;
}

static int f_case(jx *x, jv v, int how, jv *out)
{
    jv s;
    if (str_of(x, v, &s) < 0)
        return jx_oom(x);
    int rc = jstr_case(s, how, out) < 0 ? jx_oom(x) : 0;
    if (rc == 0)
        out->flags = s.flags & JVF_SAFE;
    jv_drop(s);
    return rc;
}

static int f_lower(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return f_case(x, v, JCASE_LOWER, out);
}

static int f_upper(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return f_case(x, v, JCASE_UPPER, out);
}

static int f_capitalize(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return f_case(x, v, JCASE_CAPITALIZE, out);
}

/* jinja2's title: words begin after runs of [-\s({\[<]. */
/* jinja2's format: value % args, or value % kwargs. */
static int f_format(jx *x, jv v, const jargs *a, jv *out)
{
    jv s, args;
    int rc = 0;
    if (a->npos && a->nkw)
        return jx_fail(x, SW_EINVAL, "can't handle positional and keyword arguments at the "
                                     "same time");
    if (a->nkw) {
        if (jv_dict(&args) < 0)
            return jx_oom(x);
        for (size_t k = 0; k < a->nkw && rc == 0; k++) {
            jv key;
            if (jv_cstr(a->kwnames[k], &key) < 0 || jdict_set(args.u.d, key, jv_ref(a->kw[k])) < 0)
                rc = jx_oom(x);
        }
    } else {
        if (jv_list(a->npos, true, &args) < 0)
            return jx_oom(x);
        for (size_t k = 0; k < a->npos && rc == 0; k++)
            if (jlist_push(args.u.l, jv_ref(a->pos[k])) < 0)
                rc = jx_oom(x);
    }
    if (rc == 0 && (rc = str_of(x, v, &s)) == 0) {
        rc = jx_percent_format(x, s, args, out);
        jv_drop(s);
    }
    jv_drop(args);
    return rc;
}

static int f_title(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    jv s, lower;
    if (str_of(x, v, &s) < 0)
        return jx_oom(x);
    int rc = jstr_case(s, JCASE_LOWER, &lower) < 0 ? jx_oom(x) : 0;
    jbuf b;
    jbuf_init(&b, x->max_output);
    bool start = true;
    for (size_t i = 0, j = 0; rc == 0 && i < s.u.s->len;) {
        size_t a0 = i, l0 = j;
        uint32_t c = u8_next(s.u.s->p, &i);
        u8_next(lower.u.s->p, &j);
        bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        if (sep) {
            jbuf_put(&b, s.u.s->p + a0, i - a0);
        } else if (start) {
            jv one, up;
            if (jv_str(s.u.s->p + a0, i - a0, &one) < 0 || jstr_case(one, JCASE_UPPER, &up) < 0)
                rc = jx_oom(x);
            else
                jbuf_put(&b, up.u.s->p, up.u.s->len);
            jv_drop(one);
            if (rc == 0)
                jv_drop(up);
        } else {
            jbuf_put(&b, lower.u.s->p + l0, j - l0);
        }
        start = sep;
    }
    if (rc == 0)
        rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    jv_drop(s);
    jv_drop(lower);
    return rc;
}

static int f_minmax(jx *x, jv v, const jargs *a, bool max, jv *out)
{
    static const char *const params[] = {"case_sensitive", "attribute"};
    jv s[2], items, sorted;
    BIND(max ? "filter 'max'" : "filter 'min'", params, 0, s);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    if (items.u.l->n == 0) {
        jv_drop(items);
        *out = jv_undef_named("No aggregated item, sequence was empty.", 38);
        return 0;
    }
    rc = sort_values(x, items, s[1], jv_truthy(s[0]), max, false, true, &sorted);
    jv_drop(items);
    if (rc < 0)
        return rc;
    *out = jv_ref(sorted.u.l->v[0]);
    jv_drop(sorted);
    return 0;
}

static int f_max(jx *x, jv v, const jargs *a, jv *out) { return f_minmax(x, v, a, true, out); }
static int f_min(jx *x, jv v, const jargs *a, jv *out) { return f_minmax(x, v, a, false, out); }

static int f_map(jx *x, jv v, const jargs *a, jv *out)
{
    jv items;
    if (!jv_truthy(v)) /* jinja2: "if value:" guards the loop */
        return make_gen(x, 0, out);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    jv attr = jv_undef(), dflt = jv_undef();
    for (size_t k = 0; k < a->nkw; k++) {
        if (!strcmp(a->kwnames[k], "attribute"))
            attr = a->kw[k];
        else if (!strcmp(a->kwnames[k], "default"))
            dflt = a->kw[k];
        else if (a->npos == 0)
            rc = jx_fail(x, SW_EINVAL, "filter 'map' got an unexpected keyword argument '%s'",
                         a->kwnames[k]);
    }
    if (rc == 0 && !given(attr) && (a->npos == 0 || a->pos[0].kind != JV_STR))
        rc = jx_fail(x, SW_EINVAL, "map requires a filter name or attribute=");
    if (rc == 0)
        rc = make_gen(x, items.u.l->n, out);
    jargs rest = {a->pos + (a->npos ? 1 : 0), a->npos ? a->npos - 1 : 0, a->kwnames, a->kw,
                  a->nkw};
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        jv e;
        if (given(attr))
            rc = attr_get(x, items.u.l->v[i], attr, dflt, &e);
        else
            rc = jinja_filter(x, a->pos[0].u.s->p, items.u.l->v[i], &rest, &e);
        if (rc == SW_ENOTFOUND)
            rc = jx_fail(x, SW_EFORMAT, "no filter named '%s'", a->pos[0].u.s->p);
        if (rc == 0)
            rc = push(x, *out, e);
    }
    jv_drop(items);
    return rc;
}

/* select/reject (attr false) and selectattr/rejectattr (attr true). */
static int select_common(jx *x, jv v, const jargs *a, bool attr, bool want, jv *out)
{
    jv items;
    if (!jv_truthy(v)) /* jinja2: "if value:" guards the loop */
        return make_gen(x, 0, out);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    size_t skip = attr ? 1 : 0;
    if (attr && a->npos < 1)
        rc = jx_fail(x, SW_EINVAL, "selectattr/rejectattr need an attribute name");
    const char *test = NULL;
    if (rc == 0 && a->npos > skip) {
        if (a->pos[skip].kind != JV_STR)
            rc = jx_fail(x, SW_ETYPE, "test name must be a string");
        else
            test = a->pos[skip].u.s->p;
    }
    jargs targs = {a->pos + skip + 1, a->npos > skip + 1 ? a->npos - skip - 1 : 0, a->kwnames,
                   a->kw, a->nkw};
    if (rc == 0)
        rc = make_gen(x, 0, out);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        jv item = items.u.l->v[i], subject = jv_undef();
        bool res;
        if (attr)
            rc = attr_get(x, item, a->pos[0], jv_undef(), &subject);
        else
            subject = jv_ref(item);
        if (rc == 0 && test) {
            rc = jinja_test(x, test, subject, &targs, &res);
            if (rc == SW_ENOTFOUND)
                rc = jx_fail(x, SW_EFORMAT, "no test named '%s'", test);
        } else {
            res = jv_truthy(subject);
        }
        jv_drop(subject);
        if (rc == 0 && res == want)
            rc = push(x, *out, jv_ref(item));
    }
    jv_drop(items);
    return rc;
}

static int f_select(jx *x, jv v, const jargs *a, jv *out)
{
    return select_common(x, v, a, false, true, out);
}
static int f_reject(jx *x, jv v, const jargs *a, jv *out)
{
    return select_common(x, v, a, false, false, out);
}
static int f_selectattr(jx *x, jv v, const jargs *a, jv *out)
{
    return select_common(x, v, a, true, true, out);
}
static int f_rejectattr(jx *x, jv v, const jargs *a, jv *out)
{
    return select_common(x, v, a, true, false, out);
}

static int f_replace(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"old", "new", "count"};
    jv s[3], str;
    BIND("filter 'replace'", params, 2, s);
    if (str_of(x, v, &str) < 0)
        return jx_oom(x);
    jv o, n;
    int rc = str_of(x, s[0], &o);
    if (rc == 0 && (rc = str_of(x, s[1], &n)) == 0) {
        int64_t count = given(s[2]) && jv_is_intlike(s[2]) ? jv_intval(s[2]) : -1;
        rc = jstr_replace(x, str, o, n, count, out);
        jv_drop(n);
    }
    if (rc == 0)
        jv_drop(o);
    jv_drop(str);
    return rc;
}

static int f_reverse(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    if (v.kind == JV_STR) {
        jv items;
        int rc = jx_iterate(x, v, &items);
        if (rc < 0)
            return rc;
        jbuf b;
        jbuf_init(&b, x->max_output);
        for (size_t i = items.u.l->n; i-- > 0;)
            jv_write_str(&b, items.u.l->v[i]);
        jv_drop(items);
        rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
        jbuf_free(&b);
        return rc;
    }
    jv items; /* reversed() of a sequence, else list(value) reversed */
    bool seq = (v.kind == JV_LIST && !v.u.l->gen) || v.kind == JV_DICT || v.kind == JV_UNDEF;
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return jx_fail(x, SW_ETYPE, "argument must be iterable");
    rc = seq ? make_gen(x, items.u.l->n, out) : new_list(x, items.u.l->n, out);
    for (size_t i = items.u.l->n; rc == 0 && i-- > 0;)
        rc = push(x, *out, jv_ref(items.u.l->v[i]));
    jv_drop(items);
    return rc;
}

static int f_round(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"precision", "method"};
    jv s[2];
    BIND("filter 'round'", params, 0, s);
    int64_t prec = given(s[0]) && jv_is_intlike(s[0]) ? jv_intval(s[0]) : 0;
    const char *method = s[1].kind == JV_STR ? s[1].u.s->p : "common";
    if (!jv_is_num(v))
        return jx_fail(x, SW_ETYPE, "type %s doesn't define __round__ method", jv_type_name(v));
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        return jx_fail(x, SW_EINVAL, "method must be common, ceil or floor");
    double d = jv_numval(v);
    if (!strcmp(method, "common")) {
        if (jv_is_intlike(v) && prec >= 0) {
            *out = jv_int(jv_intval(v));
            return 0;
        }
        if (prec < 0 || prec > 300 || !isfinite(d)) {
            double p10 = pow(10.0, (double)prec);
            *out = jv_float(isfinite(d) ? nearbyint(d * p10) / p10 : d);
            return 0;
        }
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, d); /* exact, half-even */
        *out = jv_float(strtod(buf, NULL));
        return 0;
    }
    double p10 = pow(10.0, (double)prec);
    *out = jv_float((!strcmp(method, "ceil") ? ceil(d * p10) : floor(d * p10)) / p10);
    return 0;
}

static int f_safe(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    if (str_of(x, v, out) < 0)
        return jx_oom(x);
    out->flags = JVF_SAFE;
    return 0;
}

static int f_sort(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"reverse", "case_sensitive", "attribute"};
    jv s[3], items;
    BIND("filter 'sort'", params, 0, s);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    rc = sort_values(x, items, s[2], jv_truthy(s[1]), jv_truthy(s[0]), false, false, out);
    jv_drop(items);
    return rc;
}

static int f_string(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    return str_of(x, v, out);
}

static int f_sum(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"attribute", "start"};
    jv s[2], items;
    BIND("filter 'sum'", params, 0, s);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    jv acc = given(s[1]) ? jv_ref(s[1]) : jv_int(0);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        jv e = jv_undef(), r;
        if (given(s[0]))
            rc = attr_get(x, items.u.l->v[i], s[0], jv_undef(), &e);
        else
            e = jv_ref(items.u.l->v[i]);
        if (rc == 0 && (rc = jx_binop(x, JOP_ADD, acc, e, &r)) == 0) {
            jv_drop(acc);
            acc = r;
        }
        jv_drop(e);
    }
    jv_drop(items);
    if (rc < 0)
        jv_drop(acc);
    else
        *out = acc;
    return rc;
}

static int f_tojson(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jv s[4];
    BIND("filter 'tojson'", params, 0, s);
    char indent[4097];
    jjson_opts o = {.ensure_ascii = jv_truthy(s[0]), .sort_keys = jv_truthy(s[3]),
                    .item_sep = ", ", .key_sep = ": "};
    if (s[1].kind == JV_STR) {
        if (s[1].u.s->len >= sizeof indent)
            return jx_fail(x, SW_ERANGE, "tojson indent too long");
        memcpy(indent, s[1].u.s->p, s[1].u.s->len + 1);
        o.indent = indent;
    } else if (jv_is_intlike(s[1])) {
        int64_t n = jv_intval(s[1]);
        n = n < 0 ? 0 : n > 4096 ? 4096 : n;
        memset(indent, ' ', (size_t)n);
        indent[n] = 0;
        o.indent = indent;
    } else if (given(s[1]) && s[1].kind != JV_NONE) {
        return jx_fail(x, SW_ETYPE, "tojson indent must be an int or a string");
    }
    if (o.indent)
        o.item_sep = ",";
    if (given(s[2]) && s[2].kind != JV_NONE) {
        if (s[2].kind != JV_LIST || s[2].u.l->n != 2 || s[2].u.l->v[0].kind != JV_STR ||
            s[2].u.l->v[1].kind != JV_STR)
            return jx_fail(x, SW_ETYPE, "tojson separators must be a pair of strings");
        o.item_sep = s[2].u.l->v[0].u.s->p;
        o.key_sep = s[2].u.l->v[1].u.s->p;
    }
    jbuf b;
    char msg[200];
    jbuf_init(&b, x->max_output);
    int rc = jv_write_json(&b, v, &o, msg, sizeof msg);
    if (rc == SW_ENOMEM)
        rc = jx_oom(x);
    else if (rc < 0)
        rc = jx_fail(x, rc, "tojson: %s", msg);
    else
        rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    return rc;
}

static int f_trim(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"chars"};
    jv s[1], str;
    BIND("filter 'trim'", params, 0, s);
    if (str_of(x, v, &str) < 0)
        return jx_oom(x);
    int rc = jstr_strip(str, s[0], true, true, out) < 0 ? jx_oom(x) : 0;
    if (rc == 0)
        out->flags = str.flags & JVF_SAFE;
    jv_drop(str);
    return rc;
}

static int f_unique(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"case_sensitive", "attribute"};
    jv s[2], items;
    BIND("filter 'unique'", params, 0, s);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    jv seen;
    if ((rc = new_list(x, items.u.l->n, &seen)) == 0)
        rc = make_gen(x, items.u.l->n, out);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        jv k = jv_undef(), key;
        if (given(s[1]))
            rc = attr_get(x, items.u.l->v[i], s[1], jv_undef(), &k);
        else
            k = jv_ref(items.u.l->v[i]);
        if (rc == 0 && !jv_hashable(k))
            rc = jx_fail(x, SW_ETYPE, "unhashable type: '%s'", jv_type_name(k));
        if (rc == 0 && (rc = sort_key(x, k, jv_truthy(s[0]), &key)) == 0) {
            bool dup = false;
            for (size_t j = 0; j < seen.u.l->n && !dup; j++)
                dup = jv_equal(seen.u.l->v[j], key);
            if (dup)
                jv_drop(key);
            else if ((rc = push(x, seen, key)) == 0)
                rc = push(x, *out, jv_ref(items.u.l->v[i]));
            if (rc == 0)
                rc = jx_charge(x, seen.u.l->n / 8);
        }
        jv_drop(k);
    }
    jv_drop(seen);
    jv_drop(items);
    return rc;
}

static int f_wordcount(jx *x, jv v, const jargs *a, jv *out)
{
    (void)a;
    jv s;
    if (str_of(x, v, &s) < 0)
        return jx_oom(x);
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s.u.s->len;) {
        uint32_t c = u8_next(s.u.s->p, &i);
        int cat = utf8proc_category((utf8proc_int32_t)c); /* \w: letters, numbers, _ */
        bool w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                 (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
        n += w && !in;
        in = w;
    }
    jv_drop(s);
    *out = jv_int(n);
    return 0;
}

static int f_center(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"width"};
    jv s[1], str;
    BIND("filter 'center'", params, 0, s);
    if (str_of(x, v, &str) < 0)
        return jx_oom(x);
    int64_t width = given(s[0]) && jv_is_intlike(s[0]) ? jv_intval(s[0]) : 80;
    int64_t len = (int64_t)str.u.s->ncp, marg = width - len;
    if (width > 1 << 20) {
        jv_drop(str);
        return jx_fail(x, SW_ERANGE, "center width too large");
    }
    jbuf b;
    jbuf_init(&b, x->max_output);
    int64_t left = marg > 0 ? marg / 2 + (marg & width & 1) : 0;
    for (int64_t i = 0; i < left; i++)
        jbuf_putc(&b, ' ');
    jbuf_put(&b, str.u.s->p, str.u.s->len);
    for (int64_t i = 0; i < marg - left; i++)
        jbuf_putc(&b, ' ');
    jv_drop(str);
    int rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    return rc;
}

/* jinja2's batch: a new batch starts when the current one has linecount items. */
static int f_batch(jx *x, jv v, const jargs *a, jv *out)
{
    static const char *const params[] = {"linecount", "fill_with"};
    jv s[2], items;
    BIND("filter 'batch'", params, 1, s);
    if (!jv_is_intlike(s[0]))
        return jx_fail(x, SW_ETYPE, "batch size must be an integer");
    int64_t size = jv_intval(s[0]);
    int rc = jx_iterate(x, v, &items);
    if (rc < 0)
        return rc;
    jv cur = jv_undef();
    if ((rc = make_gen(x, 0, out)) == 0)
        rc = new_list(x, 0, &cur);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        if ((int64_t)cur.u.l->n == size) {
            rc = push(x, *out, cur);
            cur = jv_undef();
            if (rc < 0 || (rc = new_list(x, 0, &cur)) < 0)
                break;
        }
        rc = push(x, cur, jv_ref(items.u.l->v[i]));
    }
    if (rc == 0 && cur.u.l->n > 0) {
        while (s[1].kind != JV_UNDEF && s[1].kind != JV_NONE && (int64_t)cur.u.l->n < size &&
               rc == 0)
            rc = push(x, cur, jv_ref(s[1]));
        if (rc == 0)
            rc = push(x, *out, cur);
        cur = jv_undef();
    }
    jv_drop(cur);
    jv_drop(items);
    return rc;
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"abs", f_abs}, {"attr", f_attr}, {"batch", f_batch}, {"capitalize", f_capitalize},
    {"center", f_center}, {"count", f_length}, {"d", f_default}, {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape}, {"escape", f_escape}, {"first", f_first},
    {"float", f_float}, {"forceescape", f_escape}, {"format", f_format},
    {"indent", f_indent}, {"int", f_int},
    {"items", f_items}, {"join", f_join}, {"last", f_last}, {"length", f_length},
    {"list", f_list}, {"lower", f_lower}, {"map", f_map}, {"max", f_max}, {"min", f_min},
    {"reject", f_reject}, {"rejectattr", f_rejectattr}, {"replace", f_replace},
    {"reverse", f_reverse}, {"round", f_round}, {"safe", f_safe}, {"select", f_select},
    {"selectattr", f_selectattr}, {"sort", f_sort}, {"string", f_string}, {"sum", f_sum},
    {"title", f_title}, {"tojson", f_tojson}, {"trim", f_trim}, {"unique", f_unique},
    {"upper", f_upper}, {"wordcount", f_wordcount},
};

/* jinja2 filters spillway does not implement. */
static const char *const unsupported_filters[] = {
    "filesizeformat", "groupby", "pprint", "random", "slice", "striptags",
    "truncate", "urlencode", "urlize", "wordwrap", "xmlattr",
};

bool jinja_filter_unsupported(const char *name)
{
    for (size_t i = 0; i < sizeof unsupported_filters / sizeof unsupported_filters[0]; i++)
        if (!strcmp(name, unsupported_filters[i]))
            return true;
    return false;
}

bool jinja_filter_exists(const char *name)
{
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(name, filters[i].name))
            return true;
    return false;
}

int jinja_filter(jx *x, const char *name, jv v, const jargs *a, jv *out)
{
    *out = jv_undef();
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(name, filters[i].name)) {
            int rc = filters[i].fn(x, v, a, out);
            if (rc == 0)
                rc = jx_charge_value(x, *out);
            if (rc < 0)
                jv_clear(out);
            return rc;
        }
    return SW_ENOTFOUND;
}

/* ---- tests ------------------------------------------------------------------------- */

/* str.islower() / str.isupper(): some cased character, none of the other case. */
static bool str_cased(jv v, bool upper)
{
    bool any = false;
    for (size_t i = 0; i < v.u.s->len;) {
        uint32_t c = u8_next(v.u.s->p, &i);
        int cat = jinja_char_case(c);
        if (cat == 0)
            continue;
        if (cat != (upper ? 1 : 2))
            return false;
        any = true;
    }
    return any;
}

int jinja_test(jx *x, const char *name, jv v, const jargs *a, bool *res)
{
    jv arg = a->npos > 0 ? a->pos[0] : a->nkw > 0 ? a->kw[0] : jv_undef();
    int rc = 0;
    *res = false;
    if (!strcmp(name, "defined")) *res = v.kind != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *res = v.kind == JV_UNDEF;
    else if (!strcmp(name, "none")) *res = v.kind == JV_NONE;
    else if (!strcmp(name, "boolean")) *res = v.kind == JV_BOOL;
    else if (!strcmp(name, "true")) *res = v.kind == JV_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *res = v.kind == JV_BOOL && !v.u.b;
    else if (!strcmp(name, "integer")) *res = v.kind == JV_INT;
    else if (!strcmp(name, "float")) *res = v.kind == JV_FLOAT;
    else if (!strcmp(name, "number")) *res = jv_is_num(v);
    else if (!strcmp(name, "string")) *res = v.kind == JV_STR;
    else if (!strcmp(name, "mapping")) *res = v.kind == JV_DICT;
    else if (!strcmp(name, "sequence")) /* len() and __getitem__: Undefined has both */
        *res = v.kind == JV_STR || v.kind == JV_DICT || (v.kind == JV_LIST && !v.u.l->gen) ||
               v.kind == JV_UNDEF;
    else if (!strcmp(name, "iterable"))
        *res = v.kind == JV_STR || v.kind == JV_DICT || v.kind == JV_LIST ||
               v.kind == JV_UNDEF || v.kind == JV_LOOP;
    else if (!strcmp(name, "callable"))
        *res = v.kind == JV_FUNC || v.kind == JV_LOOP || v.kind == JV_UNDEF;
    else if (!strcmp(name, "escaped")) *res = v.kind == JV_STR && (v.flags & JVF_SAFE);
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        jv s;
        if (str_of(x, v, &s) < 0)
            return jx_oom(x);
        *res = str_cased(s, name[0] == 'u');
        jv_drop(s);
    } else if (!strcmp(name, "sameas")) {
        *res = v.kind == arg.kind && (jv_is_num(v) || v.kind == JV_NONE || v.kind == JV_UNDEF
                                          ? jv_equal(v, arg) : v.u.s == arg.u.s);
    } else if (!strcmp(name, "divisibleby") || !strcmp(name, "even") || !strcmp(name, "odd")) {
        jv r, m = name[0] == 'd' ? arg : jv_int(2); /* value % m == 0 (or 1 for odd) */
        if ((rc = jx_binop(x, JOP_MOD, v, m, &r)) == 0) {
            *res = jv_equal(r, jv_int(name[0] == 'o'));
            jv_drop(r);
        }
    } else if (!strcmp(name, "in")) {
        rc = jx_contains(x, arg, v, res);
    } else if (!strcmp(name, "filter") || !strcmp(name, "test")) {
        *res = v.kind == JV_STR && (name[0] == 'f' ? jinja_filter_exists(v.u.s->p)
                                                   : jinja_test_exists(v.u.s->p));
    } else {
        static const struct { const char *name; int op; } cmp[] = {
            {"eq", JOP_EQ}, {"equalto", JOP_EQ}, {"==", JOP_EQ}, {"ne", JOP_NE}, {"!=", JOP_NE},
            {"lt", JOP_LT}, {"lessthan", JOP_LT}, {"<", JOP_LT}, {"le", JOP_LE}, {"<=", JOP_LE},
            {"gt", JOP_GT}, {"greaterthan", JOP_GT}, {">", JOP_GT}, {"ge", JOP_GE},
            {">=", JOP_GE},
        };
        for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++)
            if (!strcmp(name, cmp[i].name)) {
                int op = cmp[i].op;
                if (op == JOP_EQ || op == JOP_NE) {
                    *res = jv_equal(v, arg) == (op == JOP_EQ);
                    return 0;
                }
                if (v.kind == JV_UNDEF || arg.kind == JV_UNDEF)
                    return jx_fail(x, SW_EINVAL, "comparison with an undefined value");
                int c;
                char msg[200];
                if (jv_compare(v, arg, &c, msg, sizeof msg) < 0)
                    return jx_fail(x, SW_ETYPE, "%s", msg);
                *res = op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0;
                return 0;
            }
        return SW_ENOTFOUND;
    }
    return rc;
}

bool jinja_test_exists(const char *name)
{
    static const char *const tests[] = {
        "defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
        "number", "string", "mapping", "sequence", "iterable", "callable", "escaped", "lower",
        "upper", "sameas", "divisibleby", "even", "odd", "in", "filter", "test", "eq",
        "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan",
        ">", "ge", ">=",
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!strcmp(name, tests[i]))
            return true;
    return false;
}
