/*
 * jinja_methods.c — what templates call: Python's str, dict and list
 * methods, the loop object's cycle() and changed(), str.format(), and the
 * global functions (range, namespace, dict, raise_exception, strftime_now).
 *
 * Strings are indexed in code points, as Python's are. Case mapping uses
 * utf8proc's simple mappings (plus "ß" -> "SS"), which agree with Python's
 * for everything but a few special cases. The methods that would mutate a
 * list or dict exist only to be refused, as transformers' sandbox does.
 */
#include "text/jinja_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <utf8proc.h>

enum {
    /* str */
    JM_STARTSWITH, JM_ENDSWITH, JM_SPLIT, JM_RSPLIT, JM_STRIP, JM_LSTRIP, JM_RSTRIP,
    JM_UPPER, JM_LOWER, JM_TITLE, JM_CAPITALIZE, JM_SWAPCASE, JM_REPLACE, JM_FIND, JM_RFIND,
    JM_INDEX, JM_RINDEX, JM_COUNT, JM_JOIN, JM_FORMAT, JM_ISDIGIT, JM_ISALPHA, JM_ISALNUM,
    JM_ISSPACE, JM_ISLOWER, JM_ISUPPER, JM_CENTER, JM_LJUST, JM_RJUST, JM_ZFILL,
    JM_SPLITLINES, JM_PARTITION, JM_RPARTITION, JM_REMOVEPREFIX, JM_REMOVESUFFIX,
    /* dict */
    JM_GET, JM_ITEMS, JM_KEYS, JM_VALUES, JM_DCOPY,
    /* list and tuple */
    JM_LCOUNT, JM_LINDEX, JM_LCOPY,
    /* loop */
    JM_CYCLE, JM_CHANGED,
    /* refused by the sandbox */
    JM_UNSAFE,
};

typedef struct method {
    const char *name;
    int id;
} method;

static const method str_methods[] = {
    {"startswith", JM_STARTSWITH}, {"endswith", JM_ENDSWITH}, {"split", JM_SPLIT},
    {"rsplit", JM_RSPLIT}, {"strip", JM_STRIP}, {"lstrip", JM_LSTRIP}, {"rstrip", JM_RSTRIP},
    {"upper", JM_UPPER}, {"lower", JM_LOWER}, {"title", JM_TITLE},
    {"capitalize", JM_CAPITALIZE}, {"swapcase", JM_SWAPCASE}, {"replace", JM_REPLACE},
    {"find", JM_FIND}, {"rfind", JM_RFIND}, {"index", JM_INDEX}, {"rindex", JM_RINDEX},
    {"count", JM_COUNT}, {"join", JM_JOIN}, {"format", JM_FORMAT}, {"isdigit", JM_ISDIGIT},
    {"isalpha", JM_ISALPHA}, {"isalnum", JM_ISALNUM}, {"isspace", JM_ISSPACE},
    {"islower", JM_ISLOWER}, {"isupper", JM_ISUPPER}, {"center", JM_CENTER},
    {"ljust", JM_LJUST}, {"rjust", JM_RJUST}, {"zfill", JM_ZFILL},
    {"splitlines", JM_SPLITLINES}, {"partition", JM_PARTITION},
    {"rpartition", JM_RPARTITION}, {"removeprefix", JM_REMOVEPREFIX},
    {"removesuffix", JM_REMOVESUFFIX},
};

static const method dict_methods[] = {
    {"get", JM_GET}, {"items", JM_ITEMS}, {"keys", JM_KEYS}, {"values", JM_VALUES},
    {"copy", JM_DCOPY}, {"pop", JM_UNSAFE}, {"popitem", JM_UNSAFE},
    {"setdefault", JM_UNSAFE}, {"update", JM_UNSAFE}, {"clear", JM_UNSAFE},
};

static const method list_methods[] = {
    {"count", JM_LCOUNT}, {"index", JM_LINDEX}, {"copy", JM_LCOPY}, {"append", JM_UNSAFE},
    {"extend", JM_UNSAFE}, {"insert", JM_UNSAFE}, {"pop", JM_UNSAFE}, {"remove", JM_UNSAFE},
    {"reverse", JM_UNSAFE}, {"sort", JM_UNSAFE}, {"clear", JM_UNSAFE},
};

static const method loop_methods[] = {{"cycle", JM_CYCLE}, {"changed", JM_CHANGED}};

static int find_in(const method *m, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(m[i].name) == len && !memcmp(m[i].name, name, len))
            return m[i].id;
    return -1;
}

int jinja_method_find(jv self, const char *name, size_t len, bool *unsafe)
{
    int id = -1;
    *unsafe = false;
    switch (self.kind) {
    case JV_STR: id = find_in(str_methods, sizeof str_methods / sizeof *str_methods, name, len);
        break;
    case JV_DICT:
        id = find_in(dict_methods, sizeof dict_methods / sizeof *dict_methods, name, len);
        break;
    case JV_LIST:
        if (self.u.l->gen)
            break;
        id = find_in(list_methods, sizeof list_methods / sizeof *list_methods, name, len);
        if (self.u.l->tuple && id != JM_LCOUNT && id != JM_LINDEX)
            id = -1;
        break;
    case JV_LOOP:
        id = find_in(loop_methods, sizeof loop_methods / sizeof *loop_methods, name, len);
        break;
    default: break;
    }
    *unsafe = id == JM_UNSAFE;
    return id;
}

/* ---- string helpers ------------------------------------------------------------- */

static int finish(jx *x, jbuf *b, jv *out)
{
    int rc = b->err ? jx_buf_fail(x, b) : jbuf_to_jv(b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(b);
    return rc;
}

static bool cp_in(uint32_t c, const jstr *set)
{
    for (size_t i = 0; i < set->len;)
        if (u8_next(set->p, &i) == c)
            return true;
    return false;
}

int jstr_strip(jv s, jv chars, bool left, bool right, jv *out)
{
    const jstr *set = chars.kind == JV_STR ? chars.u.s : NULL;
    const char *p = s.u.s->p;
    size_t a = 0, b = s.u.s->len;
    while (left && a < b) {
        size_t j = a;
        uint32_t c = u8_next(p, &j);
        if (set ? !cp_in(c, set) : !py_isspace(c))
            break;
        a = j;
    }
    while (right && b > a) {
        size_t start = b - 1;
        while (start > a && ((unsigned char)p[start] & 0xC0) == 0x80)
            start--;
        size_t j = start;
        uint32_t c = u8_next(p, &j);
        if (set ? !cp_in(c, set) : !py_isspace(c))
            break;
        b = start;
    }
    return jv_str(p + a, b - a, out);
}

int jinja_char_case(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LT: return 1;
    case UTF8PROC_CATEGORY_LL: return 2;
    default: return 0;
    }
}

static void put_cp(jbuf *b, uint32_t c)
{
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)c, tmp);
    jbuf_put(b, (const char *)tmp, (size_t)n);
}

static void put_mapped(jbuf *b, uint32_t c, int how)
{
    if (c == 0xDF && (how == JCASE_UPPER || how == JCASE_SWAP)) { /* ß */
        jbuf_puts(b, "SS");
        return;
    }
    if (c == 0xDF && how == JCASE_TITLE) {
        jbuf_puts(b, "Ss");
        return;
    }
    utf8proc_int32_t r = (utf8proc_int32_t)c;
    switch (how) {
    case JCASE_UPPER: r = utf8proc_toupper(r); break;
    case JCASE_LOWER: r = utf8proc_tolower(r); break;
    case JCASE_TITLE: r = utf8proc_totitle(r); break;
    case JCASE_SWAP: r = jinja_char_case(c) == 2 ? utf8proc_toupper(r) : utf8proc_tolower(r);
        break;
    }
    put_cp(b, (uint32_t)r);
}

int jstr_case(jv s, int how, jv *out)
{
    jbuf b;
    jbuf_init(&b, SIZE_MAX / 2);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.u.s->len;) {
        uint32_t c = u8_next(s.u.s->p, &i);
        if (how == JCASE_TITLE)
            put_mapped(&b, c, prev_cased ? JCASE_LOWER : JCASE_TITLE);
        else if (how == JCASE_CAPITALIZE)
            put_mapped(&b, c, first ? JCASE_TITLE : JCASE_LOWER);
        else
            put_mapped(&b, c, how);
        prev_cased = jinja_char_case(c) != 0;
        first = false;
    }
    *out = jv_undef();
    if (b.err) {
        jbuf_free(&b);
        return SW_ENOMEM;
    }
    return jbuf_to_jv(&b, out);
}

int jstr_replace(jx *x, jv s, jv old, jv new_, int64_t count, jv *out)
{
    const jstr *str = s.u.s, *o = old.u.s, *n = new_.u.s;
    jbuf b;
    jbuf_init(&b, x->max_output);
    int64_t done = 0;
    if (o->len == 0) { /* "ab".replace("", "-") == "-a-b-" */
        for (size_t i = 0; i <= str->len;) {
            if (count < 0 || done < count) {
                jbuf_put(&b, n->p, n->len);
                done++;
            }
            if (i == str->len)
                break;
            size_t a = i;
            u8_next(str->p, &i);
            jbuf_put(&b, str->p + a, i - a);
        }
        return finish(x, &b, out);
    }
    size_t i = 0;
    while (i < str->len) {
        const char *hit = count >= 0 && done >= count ? NULL
                        : memmem(str->p + i, str->len - i, o->p, o->len);
        if (!hit)
            break;
        size_t at = (size_t)(hit - str->p);
        jbuf_put(&b, str->p + i, at - i);
        jbuf_put(&b, n->p, n->len);
        i = at + o->len;
        done++;
    }
    jbuf_put(&b, str->p + i, str->len - i);
    return finish(x, &b, out);
}

/* Length of the line break at s[i] (str.splitlines()), or 0. */
static size_t line_break(const char *s, size_t len, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    if (c == '\r')
        return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1E))
        return 1;
    if (c >= 0x80) {
        size_t j = i;
        uint32_t cp = u8_next(s, &j);
        if (cp == 0x85 || cp == 0x2028 || cp == 0x2029)
            return j - i;
    }
    return 0;
}

int jstr_splitlines(jx *x, jv s, bool keepends, jv *out)
{
    const char *p = s.u.s->p;
    size_t len = s.u.s->len, start = 0;
    if (jv_list(0, false, out) < 0)
        return jx_oom(x);
    for (size_t i = 0; i < len;) {
        size_t k = line_break(p, len, i);
        if (!k) {
            i++;
            continue;
        }
        jv line;
        if (jv_str(p + start, (keepends ? i + k : i) - start, &line) < 0 ||
            jlist_push(out->u.l, line) < 0)
            return jx_oom(x);
        i += k;
        start = i;
    }
    if (start < len) {
        jv line;
        if (jv_str(p + start, len - start, &line) < 0 || jlist_push(out->u.l, line) < 0)
            return jx_oom(x);
    }
    return 0;
}

/* ---- str methods ---------------------------------------------------------------- */

#define BIND(what, params, nreq, slots)                                                     \
    do {                                                                                   \
        int rc_ = jx_bind(x, what, a, params, sizeof params / sizeof params[0], nreq, slots); \
        if (rc_ < 0)                                                                       \
            return rc_;                                                                    \
    } while (0)

static bool given(jv v) { return v.kind != JV_UNDEF && v.kind != JV_NONE; }

static int need_str(jx *x, const char *what, jv v)
{
    if (v.kind == JV_STR)
        return 0;
    return jx_fail(x, SW_ETYPE, "%s: expected str, got '%s'", what, jv_type_name(v));
}

/* Byte range of s[start:end] for Python's optional start/end (code points). */
static void sub_range(const jstr *s, jv start, jv end, size_t *a, size_t *b)
{
    int64_t n = (int64_t)s->ncp, st = 0, en = n;
    if (jv_is_intlike(start))
        st = jv_intval(start);
    if (jv_is_intlike(end))
        en = jv_intval(end);
    if (st < 0)
        st = st + n < 0 ? 0 : st + n;
    if (en < 0)
        en = en + n < 0 ? 0 : en + n;
    if (st > n)
        st = n;
    if (en > n)
        en = n;
    if (en < st)
        en = st;
    *a = u8_offset(s, (size_t)st);
    *b = u8_offset(s, (size_t)en);
}

static int m_affix(jx *x, jv self, const jargs *a, bool ends, jv *out)
{
    static const char *const params[] = {"prefix", "start", "end"};
    jv s[3];
    BIND(ends ? "str.endswith()" : "str.startswith()", params, 1, s);
    size_t lo, hi;
    sub_range(self.u.s, s[1], s[2], &lo, &hi);
    const char *p = self.u.s->p + lo;
    size_t n = hi - lo;
    bool res = false;
    size_t count = s[0].kind == JV_LIST && s[0].u.l->tuple ? s[0].u.l->n : 1;
    for (size_t i = 0; i < count && !res; i++) {
        jv e = s[0].kind == JV_LIST ? s[0].u.l->v[i] : s[0];
        if (e.kind != JV_STR)
            return jx_fail(x, SW_ETYPE, "%s first arg must be str or a tuple of str, not %s",
                           ends ? "endswith" : "startswith", jv_type_name(e));
        size_t k = e.u.s->len;
        res = k <= n && !memcmp(ends ? p + n - k : p, e.u.s->p, k);
    }
    *out = jv_bool(res);
    return 0;
}

static int push_str(jx *x, jv list, const char *p, size_t n)
{
    jv v;
    if (jv_str(p, n, &v) < 0 || jlist_push(list.u.l, v) < 0)
        return jx_oom(x);
    return 0;
}

/* str.split() / str.rsplit() on whitespace runs. */
static int split_ws(jx *x, const jstr *s, int64_t max, bool rev, jv *out)
{
    const char *p = s->p;
    size_t n = s->len;
    jv parts;
    if (jv_list(0, false, &parts) < 0)
        return jx_oom(x);
    size_t i = 0, words = 0;
    if (!rev) {
        while (i < n) {
            size_t j = i;
            while (j < n) { /* skip whitespace */
                size_t k = j;
                if (!py_isspace(u8_next(p, &k)))
                    break;
                j = k;
            }
            if (j >= n)
                break;
            if (max >= 0 && (int64_t)words == max) { /* the rest, as it is */
                if (push_str(x, parts, p + j, n - j) < 0)
                    goto oom;
                break;
            }
            size_t w = j;
            while (w < n) {
                size_t k = w;
                if (py_isspace(u8_next(p, &k)))
                    break;
                w = k;
            }
            if (push_str(x, parts, p + j, w - j) < 0)
                goto oom;
            words++;
            i = w;
        }
        *out = parts;
        return 0;
    }
    /* rsplit: split from the right, then reverse */
    size_t e = n;
    while (e > 0) {
        size_t j = e;
        while (j > 0) {
            size_t st = j - 1;
            while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80)
                st--;
            size_t k = st;
            if (!py_isspace(u8_next(p, &k)))
                break;
            j = st;
        }
        if (j == 0)
            break;
        if (max >= 0 && (int64_t)words == max) {
            if (push_str(x, parts, p, j) < 0)
                goto oom;
            break;
        }
        size_t w = j;
        while (w > 0) {
            size_t st = w - 1;
            while (st > 0 && ((unsigned char)p[st] & 0xC0) == 0x80)
                st--;
            size_t k = st;
            if (py_isspace(u8_next(p, &k)))
                break;
            w = st;
        }
        if (push_str(x, parts, p + w, j - w) < 0)
            goto oom;
        words++;
        e = w;
    }
    for (size_t l = 0, r = parts.u.l->n; r > l + 1; l++, r--) {
        jv t = parts.u.l->v[l];
        parts.u.l->v[l] = parts.u.l->v[r - 1];
        parts.u.l->v[r - 1] = t;
    }
    *out = parts;
    return 0;
oom:
    jv_drop(parts);
    return SW_ENOMEM; /* push_str reported it */
}

static int m_split(jx *x, jv self, const jargs *a, bool rev, jv *out)
{
    static const char *const params[] = {"sep", "maxsplit"};
    jv s[2];
    BIND(rev ? "str.rsplit()" : "str.split()", params, 0, s);
    int64_t max = jv_is_intlike(s[1]) ? jv_intval(s[1]) : -1;
    const jstr *str = self.u.s;
    if (!given(s[0]))
        return split_ws(x, str, max, rev, out);
    int rc = need_str(x, "str.split() separator", s[0]);
    if (rc < 0)
        return rc;
    const jstr *sep = s[0].u.s;
    if (sep->len == 0)
        return jx_fail(x, SW_EINVAL, "empty separator");
    jv parts;
    if (jv_list(0, false, &parts) < 0)
        return jx_oom(x);
    int64_t done = 0;
    if (!rev) {
        size_t i = 0;
        const char *hit;
        while ((max < 0 || done < max) &&
               (hit = memmem(str->p + i, str->len - i, sep->p, sep->len)) != NULL) {
            size_t at = (size_t)(hit - str->p);
            if ((rc = push_str(x, parts, str->p + i, at - i)) < 0)
                break;
            i = at + sep->len;
            done++;
        }
        if (rc == 0)
            rc = push_str(x, parts, str->p + i, str->len - i);
    } else {
        size_t e = str->len;
        while (rc == 0 && (max < 0 || done < max) && e >= sep->len) {
            size_t at = e - sep->len;
            while (at > 0 && memcmp(str->p + at, sep->p, sep->len))
                at--;
            if (memcmp(str->p + at, sep->p, sep->len))
                break;
            rc = push_str(x, parts, str->p + at + sep->len, e - at - sep->len);
            e = at;
            done++;
        }
        if (rc == 0)
            rc = push_str(x, parts, str->p, e);
        for (size_t l = 0, r = parts.u.l->n; rc == 0 && r > l + 1; l++, r--) {
            jv t = parts.u.l->v[l];
            parts.u.l->v[l] = parts.u.l->v[r - 1];
            parts.u.l->v[r - 1] = t;
        }
    }
    if (rc < 0) {
        jv_drop(parts);
        return rc;
    }
    *out = parts;
    return 0;
}

static int m_strip(jx *x, jv self, const jargs *a, int which, jv *out)
{
    static const char *const params[] = {"chars"};
    jv s[1];
    BIND("str.strip()", params, 0, s);
    if (given(s[0]) && s[0].kind != JV_STR)
        return jx_fail(x, SW_ETYPE, "strip arg must be None or str");
    int rc = jstr_strip(self, s[0], which != JM_RSTRIP, which != JM_LSTRIP, out);
    return rc < 0 ? jx_oom(x) : 0;
}

/* find/rfind/index/rindex/count: code-point results. */
static int m_search(jx *x, jv self, const jargs *a, int id, jv *out)
{
    static const char *const params[] = {"sub", "start", "end"};
    jv s[3];
    BIND("str.find()", params, 1, s);
    int rc = need_str(x, "str.find() argument", s[0]);
    if (rc < 0)
        return rc;
    const jstr *str = self.u.s, *sub = s[0].u.s;
    size_t lo, hi;
    sub_range(str, s[1], s[2], &lo, &hi);
    if (id == JM_COUNT) {
        int64_t n = 0;
        if (sub->len == 0) {
            n = (int64_t)u8_count(str->p + lo, hi - lo) + 1;
        } else {
            for (size_t i = lo; i + sub->len <= hi;) {
                const char *h = memmem(str->p + i, hi - i, sub->p, sub->len);
                if (!h)
                    break;
                n++;
                i = (size_t)(h - str->p) + sub->len;
            }
        }
        *out = jv_int(n);
        return 0;
    }
    ptrdiff_t found = -1;
    if (sub->len <= hi - lo) {
        if (id == JM_FIND || id == JM_INDEX) {
            const char *h = memmem(str->p + lo, hi - lo, sub->p, sub->len);
            found = h ? h - str->p : -1;
        } else {
            for (size_t i = hi - sub->len + 1; i-- > lo;)
                if (!memcmp(str->p + i, sub->p, sub->len)) {
                    found = (ptrdiff_t)i;
                    break;
                }
        }
    }
    if (found < 0 && (id == JM_INDEX || id == JM_RINDEX))
        return jx_fail(x, SW_EINVAL, "substring not found");
    *out = jv_int(found < 0 ? -1 : (int64_t)u8_count(str->p, (size_t)found));
    return 0;
}

static int m_join(jx *x, jv self, const jargs *a, jv *out)
{
    static const char *const params[] = {"iterable"};
    jv s[1], items;
    BIND("str.join()", params, 1, s);
    int rc = jx_iterate(x, s[0], &items);
    if (rc < 0)
        return rc;
    jbuf b;
    jbuf_init(&b, x->max_output);
    for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
        jv e = items.u.l->v[i];
        if (e.kind != JV_STR) {
            rc = jx_fail(x, SW_ETYPE, "sequence item %zu: expected str instance, %s found", i,
                         jv_type_name(e));
            break;
        }
        if (i)
            jbuf_put(&b, self.u.s->p, self.u.s->len);
        jbuf_put(&b, e.u.s->p, e.u.s->len);
    }
    jv_drop(items);
    if (rc < 0) {
        jbuf_free(&b);
        return rc;
    }
    return finish(x, &b, out);
}

static int m_class(jv self, int id, jv *out)
{
    const jstr *s = self.u.s;
    bool res = s->len > 0, any_cased = false;
    for (size_t i = 0; i < s->len && res;) {
        uint32_t c = u8_next(s->p, &i);
        int cat = utf8proc_category((utf8proc_int32_t)c);
        bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND || (c >= 0xB2 && c <= 0xB9 && c != 0xB4 &&
                                                     c != 0xB5 && c != 0xB6 && c != 0xB7 &&
                                                     c != 0xB8);
        bool numeric = digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
        int cased = jinja_char_case(c);
        switch (id) {
        case JM_ISDIGIT: res = digit; break;
        case JM_ISALPHA: res = alpha; break;
        case JM_ISALNUM: res = alpha || numeric; break;
        case JM_ISSPACE: res = py_isspace(c); break;
        case JM_ISLOWER: res = cased != 1; any_cased |= cased == 2; break;
        case JM_ISUPPER: res = cased != 2; any_cased |= cased == 1; break;
        }
    }
    if (id == JM_ISLOWER || id == JM_ISUPPER)
        res = res && any_cased;
    *out = jv_bool(res);
    return 0;
}

static int m_pad(jx *x, jv self, const jargs *a, int id, jv *out)
{
    static const char *const params[] = {"width", "fillchar"};
    jv s[2];
    BIND("str padding", params, 1, s);
    if (!jv_is_intlike(s[0]))
        return jx_fail(x, SW_ETYPE, "width must be an integer");
    const char *fill = " ";
    size_t fill_len = 1;
    if (given(s[1])) {
        if (s[1].kind != JV_STR || s[1].u.s->ncp != 1)
            return jx_fail(x, SW_ETYPE, "The fill character must be exactly one character long");
        fill = s[1].u.s->p;
        fill_len = s[1].u.s->len;
    }
    int64_t width = jv_intval(s[0]), len = (int64_t)self.u.s->ncp, marg = width - len;
    if (width > (1 << 20))
        return jx_fail(x, SW_ERANGE, "padding width too large");
    int64_t left = 0;
    if (marg > 0) {
        if (id == JM_CENTER)
            left = marg / 2 + (marg & width & 1);
        else if (id == JM_RJUST || id == JM_ZFILL)
            left = marg;
    } else {
        marg = 0;
    }
    jbuf b;
    jbuf_init(&b, x->max_output);
    const char *p = self.u.s->p;
    size_t n = self.u.s->len;
    if (id == JM_ZFILL && n > 0 && (p[0] == '-' || p[0] == '+') && left > 0) {
        jbuf_putc(&b, p[0]);
        p++;
        n--;
    }
    for (int64_t i = 0; i < left; i++)
        jbuf_put(&b, id == JM_ZFILL ? "0" : fill, id == JM_ZFILL ? 1 : fill_len);
    jbuf_put(&b, p, n);
    for (int64_t i = 0; i < marg - left; i++)
        jbuf_put(&b, fill, fill_len);
    return finish(x, &b, out);
}

static int m_partition(jx *x, jv self, const jargs *a, bool rev, jv *out)
{
    static const char *const params[] = {"sep"};
    jv s[1];
    BIND("str.partition()", params, 1, s);
    int rc = need_str(x, "str.partition() separator", s[0]);
    if (rc < 0)
        return rc;
    const jstr *str = self.u.s, *sep = s[0].u.s;
    if (sep->len == 0)
        return jx_fail(x, SW_EINVAL, "empty separator");
    ptrdiff_t at = -1;
    if (!rev) {
        const char *h = memmem(str->p, str->len, sep->p, sep->len);
        at = h ? h - str->p : -1;
    } else {
        for (size_t i = str->len >= sep->len ? str->len - sep->len + 1 : 0; i-- > 0;)
            if (!memcmp(str->p + i, sep->p, sep->len)) {
                at = (ptrdiff_t)i;
                break;
            }
    }
    if (jv_list(3, true, out) < 0)
        return jx_oom(x);
    if (at < 0) {
        const char *whole = str->p;
        rc = push_str(x, *out, rev ? "" : whole, rev ? 0 : str->len);
        if (rc == 0)
            rc = push_str(x, *out, "", 0);
        if (rc == 0)
            rc = push_str(x, *out, rev ? whole : "", rev ? str->len : 0);
        return rc;
    }
    size_t k = (size_t)at;
    if ((rc = push_str(x, *out, str->p, k)) == 0 && (rc = push_str(x, *out, sep->p, sep->len)) == 0)
        rc = push_str(x, *out, str->p + k + sep->len, str->len - k - sep->len);
    return rc;
}

static int m_affix_remove(jx *x, jv self, const jargs *a, bool suffix, jv *out)
{
    static const char *const params[] = {"affix"};
    jv s[1];
    BIND(suffix ? "str.removesuffix()" : "str.removeprefix()", params, 1, s);
    int rc = need_str(x, "str.removeprefix() argument", s[0]);
    if (rc < 0)
        return rc;
    const jstr *str = self.u.s, *f = s[0].u.s;
    size_t a0 = 0, b0 = str->len;
    if (f->len <= str->len && !memcmp(suffix ? str->p + str->len - f->len : str->p, f->p, f->len)) {
        if (suffix)
            b0 -= f->len;
        else
            a0 = f->len;
    }
    return jv_str(str->p + a0, b0 - a0, out) < 0 ? jx_oom(x) : 0;
}

/* ---- dict, list and loop methods ---------------------------------------------------- */

static int pairs_of(jx *x, const jdict *d, int which, jv *out)
{
    if (jv_list(d->n, false, out) < 0)
        return jx_oom(x);
    for (size_t i = 0; i < d->n; i++) {
        jv e;
        if (which == JM_KEYS) {
            e = jv_ref(d->k[i]);
        } else if (which == JM_VALUES) {
            e = jv_ref(d->v[i]);
        } else {
            if (jv_list(2, true, &e) < 0)
                return jx_oom(x);
            jlist_push(e.u.l, jv_ref(d->k[i]));
            jlist_push(e.u.l, jv_ref(d->v[i]));
        }
        if (jlist_push(out->u.l, e) < 0)
            return jx_oom(x);
    }
    return 0;
}

static int copy_value(jx *x, jv self, jv *out)
{
    if (self.kind == JV_DICT) {
        if (jv_dict(out) < 0)
            return jx_oom(x);
        for (size_t i = 0; i < self.u.d->n; i++)
            if (jdict_set(out->u.d, jv_ref(self.u.d->k[i]), jv_ref(self.u.d->v[i])) < 0)
                return jx_oom(x);
        return 0;
    }
    if (jv_list(self.u.l->n, false, out) < 0)
        return jx_oom(x);
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jlist_push(out->u.l, jv_ref(self.u.l->v[i])) < 0)
            return jx_oom(x);
    return 0;
}

static int m_dict_get(jx *x, jv self, const jargs *a, jv *out)
{
    static const char *const params[] = {"key", "default"};
    jv s[2];
    BIND("dict.get()", params, 1, s);
    if (!jv_hashable(s[0]))
        return jx_fail(x, SW_ETYPE, "unhashable type: '%s'", jv_type_name(s[0]));
    jv *v = jdict_get(self.u.d, s[0]);
    *out = v ? jv_ref(*v) : s[1].kind == JV_UNDEF ? jv_none() : jv_ref(s[1]);
    return 0;
}

static int m_list_search(jx *x, jv self, const jargs *a, int id, jv *out)
{
    static const char *const params[] = {"value"};
    jv s[1];
    BIND(id == JM_LCOUNT ? "list.count()" : "list.index()", params, 1, s);
    int64_t n = 0;
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jv_equal(self.u.l->v[i], s[0])) {
            if (id == JM_LINDEX) {
                *out = jv_int((int64_t)i);
                return 0;
            }
            n++;
        }
    if (id == JM_LINDEX)
        return jx_fail(x, SW_EINVAL, "value is not in list");
    *out = jv_int(n);
    return 0;
}

static int m_loop(jx *x, jv self, const jargs *a, int id, jv *out)
{
    jloop *l = self.u.loop;
    if (id == JM_CYCLE) {
        if (a->npos == 0)
            return jx_fail(x, SW_EINVAL, "no items for cycling given");
        *out = jv_ref(a->pos[l->index0 % (int64_t)a->npos]);
        return 0;
    }
    jv vals;
    if (jv_list(a->npos, true, &vals) < 0)
        return jx_oom(x);
    for (size_t i = 0; i < a->npos; i++)
        jlist_push(vals.u.l, jv_ref(a->pos[i]));
    bool changed = !l->has_changed || !jv_equal(vals, l->last_changed);
    if (changed) {
        jv_drop(l->last_changed);
        l->last_changed = vals;
        l->has_changed = true;
    } else {
        jv_drop(vals);
    }
    *out = jv_bool(changed);
    return 0;
}

int jinja_method_call(jx *x, int id, jv self, const jargs *a, jv *out)
{
    int rc;
    *out = jv_undef();
    switch (id) {
    case JM_STARTSWITH: case JM_ENDSWITH: rc = m_affix(x, self, a, id == JM_ENDSWITH, out); break;
    case JM_SPLIT: case JM_RSPLIT: rc = m_split(x, self, a, id == JM_RSPLIT, out); break;
    case JM_STRIP: case JM_LSTRIP: case JM_RSTRIP: rc = m_strip(x, self, a, id, out); break;
    case JM_UPPER: case JM_LOWER: case JM_TITLE: case JM_CAPITALIZE: case JM_SWAPCASE: {
        static const int how[] = {JCASE_UPPER, JCASE_LOWER, JCASE_TITLE, JCASE_CAPITALIZE,
                                  JCASE_SWAP};
        if (a->npos || a->nkw)
            return jx_fail(x, SW_EINVAL, "this string method takes no arguments");
        rc = jstr_case(self, how[id - JM_UPPER], out) < 0 ? jx_oom(x) : 0;
        break;
    }
    case JM_REPLACE: {
        static const char *const params[] = {"old", "new", "count"};
        jv s[3];
        BIND("str.replace()", params, 2, s);
        if (s[0].kind != JV_STR || s[1].kind != JV_STR)
            return jx_fail(x, SW_ETYPE, "replace() arguments must be str");
        rc = jstr_replace(x, self, s[0], s[1], jv_is_intlike(s[2]) ? jv_intval(s[2]) : -1, out);
        break;
    }
    case JM_FIND: case JM_RFIND: case JM_INDEX: case JM_RINDEX: case JM_COUNT:
        rc = m_search(x, self, a, id, out);
        break;
    case JM_JOIN: rc = m_join(x, self, a, out); break;
    case JM_FORMAT: rc = jx_str_format(x, self, a, out); break;
    case JM_ISDIGIT: case JM_ISALPHA: case JM_ISALNUM: case JM_ISSPACE: case JM_ISLOWER:
    case JM_ISUPPER:
        rc = m_class(self, id, out);
        break;
    case JM_CENTER: case JM_LJUST: case JM_RJUST: rc = m_pad(x, self, a, id, out); break;
    case JM_ZFILL: rc = m_pad(x, self, a, id, out); break;
    case JM_SPLITLINES: {
        static const char *const params[] = {"keepends"};
        jv s[1];
        BIND("str.splitlines()", params, 0, s);
        rc = jstr_splitlines(x, self, jv_truthy(s[0]), out);
        break;
    }
    case JM_PARTITION: case JM_RPARTITION:
        rc = m_partition(x, self, a, id == JM_RPARTITION, out);
        break;
    case JM_REMOVEPREFIX: case JM_REMOVESUFFIX:
        rc = m_affix_remove(x, self, a, id == JM_REMOVESUFFIX, out);
        break;
    case JM_GET: rc = m_dict_get(x, self, a, out); break;
    case JM_ITEMS: case JM_KEYS: case JM_VALUES:
        if (a->npos || a->nkw)
            return jx_fail(x, SW_EINVAL, "dict method takes no arguments");
        rc = pairs_of(x, self.u.d, id, out);
        break;
    case JM_DCOPY: case JM_LCOPY: rc = copy_value(x, self, out); break;
    case JM_LCOUNT: case JM_LINDEX: rc = m_list_search(x, self, a, id, out); break;
    case JM_CYCLE: case JM_CHANGED: rc = m_loop(x, self, a, id, out); break;
    default: rc = jx_fail(x, SW_EUNSUPPORTED, "this method is refused by the sandbox");
    }
    if (rc == 0)
        rc = jx_charge_value(x, *out);
    if (rc < 0)
        jv_clear(out);
    return rc;
}

/* ---- global functions ------------------------------------------------------------- */

enum { JB_RANGE, JB_NAMESPACE, JB_DICT, JB_RAISE, JB_STRFTIME, JB_JOINER, JB_CYCLER, JB_LIPSUM };

static const char *const globals[] = {
    "range", "namespace", "dict", "raise_exception", "strftime_now", "joiner", "cycler",
    "lipsum",
};

int jinja_global_find(const char *name)
{
    for (int i = 0; i < (int)(sizeof globals / sizeof globals[0]); i++)
        if (!strcmp(name, globals[i]))
            return i;
    return -1;
}

const char *jinja_global_name(int id) { return globals[id]; }

#define MAX_RANGE 100000 /* jinja2's sandbox limit */

static int g_range(jx *x, const jargs *a, jv *out)
{
    int64_t v[3] = {0, 0, 1};
    if (a->nkw)
        return jx_fail(x, SW_EINVAL, "range() takes no keyword arguments");
    if (a->npos < 1 || a->npos > 3)
        return jx_fail(x, SW_EINVAL, "range expected 1 to 3 arguments, got %zu", a->npos);
    for (size_t i = 0; i < a->npos; i++) {
        if (!jv_is_intlike(a->pos[i]))
            return jx_fail(x, SW_ETYPE, "'%s' object cannot be interpreted as an integer",
                           jv_type_name(a->pos[i]));
        v[a->npos == 1 ? 1 : i] = jv_intval(a->pos[i]);
    }
    if (v[2] == 0)
        return jx_fail(x, SW_EINVAL, "range() arg 3 must not be zero");
    double count = v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2]
                            : ((double)v[0] - (double)v[1]) / -(double)v[2];
    if (count > MAX_RANGE)
        return jx_fail(x, SW_ERANGE, "Range too big. The sandbox blocks ranges larger than "
                                     "MAX_RANGE (%d).", MAX_RANGE);
    if (jv_list(count > 0 ? (size_t)count + 1 : 0, false, out) < 0)
        return jx_oom(x);
    jlist *l = out->u.l;
    l->range = true;
    l->start = v[0];
    l->stop = v[1];
    l->step = v[2];
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2])
        if (jlist_push(l, jv_int(i)) < 0)
            return jx_oom(x);
    return jx_charge(x, l->n);
}

/* dict(mapping or pairs, **kwargs) into d. */
static int fill_dict(jx *x, const char *what, jdict *d, const jargs *a)
{
    if (a->npos > 1)
        return jx_fail(x, SW_EINVAL, "%s expected at most 1 argument, got %zu", what, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.kind == JV_DICT || src.kind == JV_NS) {
            for (size_t i = 0; i < src.u.d->n; i++)
                if (jdict_set(d, jv_ref(src.u.d->k[i]), jv_ref(src.u.d->v[i])) < 0)
                    return jx_oom(x);
        } else {
            jv items;
            int rc = jx_iterate(x, src, &items);
            if (rc < 0)
                return rc;
            for (size_t i = 0; i < items.u.l->n && rc == 0; i++) {
                jv p = items.u.l->v[i];
                if (p.kind != JV_LIST || p.u.l->n != 2)
                    rc = jx_fail(x, SW_EINVAL, "dictionary update sequence element #%zu has the "
                                               "wrong length", i);
                else if (jdict_set(d, jv_ref(p.u.l->v[0]), jv_ref(p.u.l->v[1])) < 0)
                    rc = jx_oom(x);
            }
            jv_drop(items);
            if (rc < 0)
                return rc;
        }
    }
    for (size_t k = 0; k < a->nkw; k++) {
        jv key;
        if (jv_cstr(a->kwnames[k], &key) < 0 || jdict_set(d, key, jv_ref(a->kw[k])) < 0)
            return jx_oom(x);
    }
    return 0;
}

/* strftime_now(format): the clock formatted like Python's naive datetime. */
static int g_strftime(jx *x, const jargs *a, jv *out)
{
    if (a->npos != 1 || a->pos[0].kind != JV_STR || a->nkw)
        return jx_fail(x, SW_EINVAL, "strftime_now() takes one string argument");
    struct tm tm;
    long usec = 0;
    if (x->now) {
        time_t t = (time_t)x->now;
        gmtime_r(&t, &tm);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        time_t t = tv.tv_sec;
        localtime_r(&t, &tm);
        usec = (long)tv.tv_usec;
    }
    /* %f is Python's; %z and %Z are empty for a naive datetime. */
    const jstr *f = a->pos[0].u.s;
    jbuf fmt, res;
    jbuf_init(&fmt, 1 << 16);
    jbuf_init(&res, 1 << 20);
    for (size_t i = 0; i < f->len; i++) {
        if (f->p[i] == '%' && i + 1 < f->len) {
            char c = f->p[++i];
            if (c == 'f')
                jbuf_printf(&fmt, "%06ld", usec);
            else if (c != 'z' && c != 'Z') {
                jbuf_putc(&fmt, '%');
                jbuf_putc(&fmt, c);
            }
        } else {
            jbuf_putc(&fmt, f->p[i]);
        }
    }
    if (fmt.err) {
        jbuf_free(&fmt);
        return jx_fail(x, SW_ERANGE, "strftime_now() format too long");
    }
    /* strftime cannot tell "empty" from "too small": a marker byte can */
    jbuf_putc(&fmt, '|');
    size_t cap = 256 + fmt.len * 4;
    char *buf = malloc(cap);
    size_t n = buf ? strftime(buf, cap, fmt.p, &tm) : 0;
    int rc = !buf ? jx_oom(x) : n == 0 ? jx_fail(x, SW_ERANGE, "strftime_now() result too long")
                                      : jv_str(buf, n - 1, out) < 0 ? jx_oom(x) : 0;
    free(buf);
    jbuf_free(&fmt);
    jbuf_free(&res);
    return rc;
}

int jinja_global_call(jx *x, int id, const jargs *a, jv *out)
{
    *out = jv_undef();
    int rc = 0;
    switch (id) {
    case JB_RANGE: rc = g_range(x, a, out); break;
    case JB_NAMESPACE: case JB_DICT: {
        jdict *d = jdict_new();
        if (!d)
            return jx_oom(x);
        *out = (jv){.kind = id == JB_NAMESPACE ? JV_NS : JV_DICT, .u.d = d};
        rc = fill_dict(x, id == JB_NAMESPACE ? "namespace()" : "dict()", d, a);
        if (rc == 0 && id == JB_NAMESPACE && jlist_push(x->namespaces, jv_ref(*out)) < 0)
            rc = jx_oom(x);
        break;
    }
    case JB_RAISE: {
        jbuf b;
        jbuf_init(&b, 1 << 16);
        for (size_t i = 0; i < a->npos; i++)
            jv_write_str(&b, a->pos[i]);
        rc = jx_fail(x, SW_EINVAL, "raise_exception: %s", b.p ? b.p : "");
        jbuf_free(&b);
        break;
    }
    case JB_STRFTIME: rc = g_strftime(x, a, out); break;
    default:
        rc = jx_fail(x, SW_EUNSUPPORTED, "the global '%s()' is not supported", globals[id]);
    }
    if (rc < 0)
        jv_clear(out);
    return rc;
}
