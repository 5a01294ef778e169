/*
 * jinja_format.c — Python's two string formatting languages, as templates
 * use them: str.format() ("{} and {name:>5}") and printf-style
 * ("%s-%d" % (a, b), and jinja2's |format filter).
 *
 * Supported: automatic, numbered and named fields; !r !s !a; format specs
 * [[fill]align][sign][0][width][.precision][type] for strings, ints and
 * floats; %-conversions s r a c d i u o x X e E f F g G with flags, width,
 * precision, "*" and %(name)s. Field attributes and indexes ("{0.name}",
 * "{0[k]}"), nested fields and "," grouping fail clearly.
 */
#include "text/jinja_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

static void put_cp(jbuf *b, uint32_t c)
{
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)c, tmp);
    jbuf_put(b, (const char *)tmp, (size_t)n);
}

/* c is one of the characters of set (never the NUL). */
static bool in_set(char c, const char *set) { return c && strchr(set, c); }

static int finish(jx *x, jbuf *b, jv *out)
{
    int rc = b->err ? jx_buf_fail(x, b) : jbuf_to_jv(b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(b);
    return rc;
}

/* ---- str.format() ---------------------------------------------------------------- */

/* format(v, spec) for the common specs: [[fill]align][sign][0][width][.prec][type]. */
static int format_value(jx *x, jbuf *b, jv v, const char *spec, size_t n)
{
    char fill[5] = " ", align = 0, sign = '-', type = 0;
    size_t i = 0;
    int64_t width = -1, prec = -1;
    if (n >= 2 && in_set(spec[1], "<>=^")) {
        fill[0] = spec[0];
        align = spec[1];
        i = 2;
    } else if (n >= 1 && in_set(spec[0], "<>=^")) {
        align = spec[0];
        i = 1;
    }
    if (i < n && in_set(spec[i], "+- "))
        sign = spec[i++];
    if (i < n && spec[i] == '0') {
        if (!align) {
            fill[0] = '0';
            align = '=';
        }
        i++;
    }
    for (; i < n && spec[i] >= '0' && spec[i] <= '9' && width < 100000; i++)
        width = (width < 0 ? 0 : width * 10) + (spec[i] - '0');
    if (i < n && spec[i] == '.')
        for (prec = 0, i++; i < n && spec[i] >= '0' && spec[i] <= '9' && prec < 1000; i++)
            prec = prec * 10 + (spec[i] - '0');
    if (i < n)
        type = spec[i++];
    if (i < n || width > 100000)
        return jx_fail(x, SW_EUNSUPPORTED, "format spec '%.*s' is not supported", (int)n, spec);
    jbuf body;
    jbuf_init(&body, x->max_output);
    bool numeric = jv_is_num(v) && v.kind != JV_BOOL ? true : v.kind == JV_BOOL && type;
    if (v.kind == JV_STR && (!type || type == 's')) {
        size_t len = v.u.s->len;
        if (prec >= 0 && (size_t)prec < v.u.s->ncp)
            len = u8_offset(v.u.s, (size_t)prec);
        jbuf_put(&body, v.u.s->p, len);
        numeric = false;
    } else if (numeric && (strchr("dbox", type ? type : 'd') && jv_is_intlike(v) &&
                           !(type == 0 && prec >= 0))) {
        int64_t k = jv_intval(v);
        uint64_t mag = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
        if (k < 0 || sign != '-')
            jbuf_putc(&body, k < 0 ? '-' : sign);
        char digits[70];
        int base = type == 'b' ? 2 : type == 'o' ? 8 : type == 'x' ? 16 : 10, nd = 0;
        do {
            digits[nd++] = "0123456789abcdef"[mag % (uint64_t)base];
            mag /= (uint64_t)base;
        } while (mag);
        while (nd)
            jbuf_putc(&body, digits[--nd]);
    } else if (numeric && (!type || in_set(type, "fFeEgG%"))) {
        double d = jv_numval(v);
        if (!type && prec < 0) {
            char tmp[32];
            py_float_repr(d, tmp);
            if (d >= 0 && sign != '-')
                jbuf_putc(&body, sign);
            jbuf_puts(&body, tmp);
        } else {
            char cfmt[16], t = type ? type : 'g';
            if (t == '%')
                d *= 100;
            snprintf(cfmt, sizeof cfmt, "%%%s.%d%c", sign == '+' ? "+" : sign == ' ' ? " " : "",
                     (int)(prec < 0 ? 6 : prec), t == '%' ? 'f' : t);
            jbuf_printf(&body, cfmt, d);
            if (t == '%')
                jbuf_putc(&body, '%');
        }
    } else if (!type && n == 0) {
        jv_write_str(&body, v);
    } else if (!type && v.kind != JV_STR && !jv_is_num(v)) {
        jbuf_free(&body);
        return jx_fail(x, SW_ETYPE, "unsupported format string passed to %s.__format__",
                       jv_type_name(v));
    } else {
        jbuf_free(&body);
        return jx_fail(x, SW_EUNSUPPORTED, "format spec '%.*s' is not supported for '%s'",
                       (int)n, spec, jv_type_name(v));
    }
    if (!align)
        align = numeric ? '>' : '<';
    int64_t pad = width - (int64_t)u8_count(body.p ? body.p : "", body.len);
    int64_t left = pad <= 0 ? 0 : align == '>' ? pad : align == '^' ? pad / 2 : 0;
    size_t skip = 0;
    if (align == '=') { /* padding goes after the sign */
        if (body.len && in_set(body.p[0], "+- ")) {
            jbuf_putc(b, body.p[0]);
            skip = 1;
        }
        left = pad > 0 ? pad : 0;
    }
    for (int64_t k = 0; k < left; k++)
        jbuf_puts(b, fill);
    jbuf_put(b, body.p ? body.p + skip : "", body.len - skip);
    for (int64_t k = left; k < pad; k++)
        jbuf_puts(b, fill);
    jbuf_free(&body);
    return 0;
}

/* The argument a replacement field names: "" (the next one), "0", "name". */
static int format_arg(jx *x, const jargs *a, const char *name, size_t len, int *numbering,
                      size_t *next_auto, jv *out)
{
    bool digits = len > 0;
    size_t idx = 0;
    for (size_t k = 0; k < len && digits; k++) {
        digits = name[k] >= '0' && name[k] <= '9' && idx < 100000;
        idx = idx * 10 + (size_t)(name[k] - '0');
    }
    if (len > 0 && !digits) {
        for (size_t k = 0; k < a->nkw; k++)
            if (strlen(a->kwnames[k]) == len && !memcmp(a->kwnames[k], name, len)) {
                *out = a->kw[k];
                return 0;
            }
        return jx_fail(x, SW_EINVAL, "KeyError: '%.*s'", (int)len, name);
    }
    int mode = len == 0 ? 1 : 2; /* automatic or manual numbering, never both */
    if (*numbering && *numbering != mode)
        return jx_fail(x, SW_EINVAL, "cannot switch between automatic field numbering and "
                                     "manual field specification");
    *numbering = mode;
    if (len == 0)
        idx = (*next_auto)++;
    if (idx >= a->npos)
        return jx_fail(x, SW_EINVAL, "Replacement index %zu out of range for positional args "
                                     "tuple", idx);
    *out = a->pos[idx];
    return 0;
}

/* One replacement field, the text between "{" and "}": name[!conv][:spec]. */
static int format_field(jx *x, jbuf *b, const jargs *a, const char *field, size_t len,
                        int *numbering, size_t *next_auto)
{
    const char *end = field + len, *colon = memchr(field, ':', len);
    const char *name_end = colon ? colon : end;
    const char *conv = memchr(field, '!', (size_t)(name_end - field));
    if (conv)
        name_end = conv;
    size_t nlen = (size_t)(name_end - field);
    if (memchr(field, '{', len) || memchr(field, '.', nlen) || memchr(field, '[', nlen))
        return jx_fail(x, SW_EUNSUPPORTED, "str.format() fields with attributes, indexes or "
                                           "nested fields are not supported");
    jv v, conv_v = jv_undef();
    int rc = format_arg(x, a, field, nlen, numbering, next_auto, &v);
    if (rc < 0)
        return rc;
    if (conv) {
        if (conv + 2 != (colon ? colon : end) || !in_set(conv[1], "rsa"))
            return jx_fail(x, SW_EINVAL, "Unknown conversion specifier");
        jbuf tmp;
        jbuf_init(&tmp, x->max_output);
        if (conv[1] == 's')
            jv_write_str(&tmp, v);
        else
            jv_write_repr(&tmp, v);
        if (jbuf_to_jv(&tmp, &conv_v) < 0) {
            jbuf_free(&tmp);
            return jx_oom(x);
        }
        v = conv_v;
    }
    rc = format_value(x, b, v, colon ? colon + 1 : end, colon ? (size_t)(end - colon - 1) : 0);
    jv_drop(conv_v);
    return rc;
}

/* str.format(*args, **kwargs). */
int jx_str_format(jx *x, jv self, const jargs *a, jv *out)
{
    const char *p = self.u.s->p;
    size_t n = self.u.s->len, next_auto = 0;
    int numbering = 0, rc = 0;
    jbuf b;
    jbuf_init(&b, x->max_output);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((p[i] == '{' || p[i] == '}') && i + 1 < n && p[i + 1] == p[i]) {
            jbuf_putc(&b, p[i++]); /* "{{" and "}}" */
        } else if (p[i] == '}') {
            rc = jx_fail(x, SW_EINVAL, "Single '}' encountered in format string");
        } else if (p[i] == '{') {
            const char *close = memchr(p + i + 1, '}', n - i - 1);
            if (!close) {
                rc = jx_fail(x, SW_EINVAL, "Single '{' encountered in format string");
                break;
            }
            rc = format_field(x, &b, a, p + i + 1, (size_t)(close - p - i - 1), &numbering,
                              &next_auto);
            i = (size_t)(close - p);
        } else {
            jbuf_putc(&b, p[i]);
        }
    }
    if (rc < 0) {
        jbuf_free(&b);
        return rc;
    }
    return finish(x, &b, out);
}

/* ---- printf-style formatting ("%s" % x, |format) ------------------------------ */

/* The next argument for a conversion: positional, or by (name) from a dict. */
static int pct_arg(jx *x, jv args, bool mapping, const char *name, size_t nlen, size_t *next,
                   jv *out)
{
    if (name) {
        if (args.kind == JV_UNDEF)
            return jx_undef_fail(x, args);
        if (!mapping)
            return jx_fail(x, SW_ETYPE, "format requires a mapping");
        jv key;
        if (jv_str(name, nlen, &key) < 0)
            return jx_oom(x);
        jv *v = jdict_get(args.u.d, key);
        jv_drop(key);
        if (!v)
            return jx_fail(x, SW_EINVAL, "KeyError: '%.*s'", (int)nlen, name);
        *out = *v;
        return 0;
    }
    bool tuple = args.kind == JV_LIST && args.u.l->tuple;
    size_t n = tuple ? args.u.l->n : 1;
    if (*next >= n)
        return jx_fail(x, SW_EINVAL, "not enough arguments for format string");
    *out = tuple ? args.u.l->v[*next] : args;
    (*next)++;
    return 0;
}

/* One conversion of v by type t with printf flags, width and precision. */
static int pct_convert(jx *x, jbuf *b, jv v, char t, const char *flags, int width, int prec)
{
    char spec[32], tmp[512];
    if (t == 's' || t == 'r' || t == 'a') {
        jbuf s;
        jbuf_init(&s, x->max_output);
        if (t == 's')
            jv_write_str(&s, v);
        else
            jv_write_repr(&s, v);
        size_t len = s.len, ncp = u8_count(s.p ? s.p : "", s.len);
        if (prec >= 0 && (size_t)prec < ncp) {
            jv tmpv;
            if (jv_str(s.p, s.len, &tmpv) == 0) {
                len = u8_offset(tmpv.u.s, (size_t)prec);
                ncp = (size_t)prec;
                jv_drop(tmpv);
            }
        }
        bool left = strchr(flags, '-') != NULL;
        for (int i = (int)ncp; !left && i < width; i++)
            jbuf_putc(b, ' ');
        jbuf_put(b, s.p ? s.p : "", len);
        for (int i = (int)ncp; left && i < width; i++)
            jbuf_putc(b, ' ');
        jbuf_free(&s);
        return 0;
    }
    if (t == 'c') {
        if (v.kind == JV_STR && v.u.s->ncp == 1) {
            jbuf_put(b, v.u.s->p, v.u.s->len);
            return 0;
        }
        if (!jv_is_intlike(v) || jv_intval(v) < 0 || jv_intval(v) > 0x10FFFF)
            return jx_fail(x, SW_ETYPE, "%%c requires an int or a single character");
        put_cp(b, (uint32_t)jv_intval(v));
        return 0;
    }
    if (!jv_is_num(v))
        return jx_fail(x, SW_ETYPE, "%%%c format: a real number is required, not %s", t,
                       jv_type_name(v));
    if (in_set(t, "diuoxX")) {
        int64_t k = v.kind == JV_FLOAT ? (int64_t)v.u.f : jv_intval(v);
        uint64_t mag = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
        char digits[72], body[160];
        snprintf(digits, sizeof digits, t == 'o' ? "%llo" : t == 'x' ? "%llx" : t == 'X' ? "%llX"
                                                                       : "%llu",
                 (unsigned long long)mag);
        const char *sign = k < 0 ? "-" : strchr(flags, '+') ? "+" : strchr(flags, ' ') ? " " : "";
        const char *prefix = !strchr(flags, '#') ? "" : t == 'o' ? "0o" : t == 'x' ? "0x"
                           : t == 'X' ? "0X" : "";
        int zeros = prec > (int)strlen(digits) ? prec - (int)strlen(digits) : 0;
        if (zeros > 64)
            zeros = 64;
        int head = snprintf(body, sizeof body, "%s%s", sign, prefix);
        int len = head + zeros + (int)strlen(digits);
        bool left = strchr(flags, '-') != NULL, zero = !left && strchr(flags, '0') != NULL;
        for (int i = len; !left && !zero && i < width; i++)
            jbuf_putc(b, ' ');
        jbuf_puts(b, body);
        for (int i = len; zero && i < width; i++)
            jbuf_putc(b, '0');
        for (int i = 0; i < zeros; i++)
            jbuf_putc(b, '0');
        jbuf_puts(b, digits);
        for (int i = len; left && i < width; i++)
            jbuf_putc(b, ' ');
        return 0;
    }
    if (!in_set(t, "eEfFgG"))
        return jx_fail(x, SW_EUNSUPPORTED, "unsupported format character '%c'", t);
    snprintf(spec, sizeof spec, "%%%s*.*%c", flags, t);
    snprintf(tmp, sizeof tmp, spec, width > 60 ? 60 : width, prec < 0 ? 6 : prec > 40 ? 40 : prec,
             jv_numval(v));
    jbuf_puts(b, tmp);
    return 0;
}

int jx_percent_format(jx *x, jv fmt, jv args, jv *out)
{
    const char *p = fmt.u.s->p;
    size_t n = fmt.u.s->len, next = 0;
    bool mapping = args.kind == JV_DICT;
    /* Python treats any non-tuple with __getitem__ (a list, a dict) as a
     * mapping, and then does not complain about unused arguments. */
    bool lenient = mapping || (args.kind == JV_LIST && !args.u.l->tuple) ||
                   args.kind == JV_UNDEF;
    jbuf b;
    jbuf_init(&b, x->max_output);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (p[i] != '%') {
            jbuf_putc(&b, p[i]);
            continue;
        }
        if (++i >= n) {
            rc = jx_fail(x, SW_EINVAL, "incomplete format");
            break;
        }
        const char *name = NULL;
        size_t nlen = 0;
        if (p[i] == '(') {
            const char *close = memchr(p + i, ')', n - i);
            if (!close) {
                rc = jx_fail(x, SW_EINVAL, "incomplete format key");
                break;
            }
            name = p + i + 1;
            nlen = (size_t)(close - name);
            i = (size_t)(close - p) + 1;
        }
        char flags[8] = "";
        size_t nf = 0;
        while (i < n && in_set(p[i], "-+ 0#") && nf < sizeof flags - 1)
            flags[nf++] = p[i++];
        int width = 0, prec = -1;
        jv a;
        if (i < n && p[i] == '*') {
            if ((rc = pct_arg(x, args, mapping, NULL, 0, &next, &a)) < 0)
                break;
            width = jv_is_intlike(a) ? (int)jv_intval(a) : 0;
            i++;
        }
        while (i < n && p[i] >= '0' && p[i] <= '9' && width < 100000)
            width = width * 10 + (p[i++] - '0');
        if (i < n && p[i] == '.') {
            prec = 0;
            for (i++; i < n && p[i] >= '0' && p[i] <= '9' && prec < 1000; i++)
                prec = prec * 10 + (p[i] - '0');
        }
        if (i >= n) {
            rc = jx_fail(x, SW_EINVAL, "incomplete format");
            break;
        }
        if (p[i] == '%') {
            jbuf_putc(&b, '%');
            continue;
        }
        if (width > 100000) {
            rc = jx_fail(x, SW_ERANGE, "format width too large");
            break;
        }
        if ((rc = pct_arg(x, args, mapping, name, nlen, &next, &a)) == 0)
            rc = pct_convert(x, &b, a, p[i], flags, width, prec);
    }
    bool tuple = args.kind == JV_LIST && args.u.l->tuple;
    if (rc == 0 && !lenient && next < (tuple ? args.u.l->n : 1))
        rc = jx_fail(x, SW_ETYPE, "not all arguments converted during string formatting");
    if (rc < 0) {
        jbuf_free(&b);
        return rc;
    }
    return finish(x, &b, out);
}
