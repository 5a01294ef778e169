/*
 * jinja_ops.c — what expressions do to values, with Python's and jinja2's
 * semantics: attribute and item access (as the sandbox does it: a dict's
 * methods shadow its keys for ".name", keys come first for "[name]"),
 * slicing, iteration, the arithmetic operators (ints stay ints, "/" is true
 * division, "//" and "%" floor), markupsafe's escaping when a safe string
 * meets a plain one, membership and comparison.
 *
 * Missing attributes, keys and elements are not errors: they give an
 * undefined value whose message says what was missing, and only using it
 * fails (jx_undef_fail), as in jinja2.
 */
#include "text/jinja_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

jv jx_undef_msg(const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jv_undef_named(msg, n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n);
}

/* "'dict object'" as jinja2's object_type_repr() writes it. */
static const char *type_repr(jv v, char *buf, size_t size)
{
    if (v.kind == JV_NONE)
        return "None";
    const char *t = jv_type_name(v);
    if (v.kind == JV_NS)
        t = "jinja2.utils.Namespace";
    else if (v.kind == JV_STR && (v.flags & JVF_SAFE))
        t = "markupsafe.Markup";
    snprintf(buf, size, "%s object", t);
    return buf;
}

static jv undef_attr(jv obj, const char *name)
{
    char t[64];
    return jx_undef_msg("'%s' has no attribute '%s'", type_repr(obj, t, sizeof t), name);
}

/* ---- attribute and item access -------------------------------------------------- */

static int loop_attr(jx *x, jloop *l, const char *name, jv obj, jv *out)
{
    int64_t i = l->index0, n = l->length;
    if (!strcmp(name, "index")) *out = jv_int(i + 1);
    else if (!strcmp(name, "index0")) *out = jv_int(i);
    else if (!strcmp(name, "revindex")) *out = jv_int(n - i);
    else if (!strcmp(name, "revindex0")) *out = jv_int(n - i - 1);
    else if (!strcmp(name, "first")) *out = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *out = jv_bool(i == n - 1);
    else if (!strcmp(name, "length")) *out = jv_int(n);
    else if (!strcmp(name, "depth")) *out = jv_int(1);
    else if (!strcmp(name, "depth0")) *out = jv_int(0);
    else if (!strcmp(name, "previtem"))
        *out = i > 0 ? jv_ref(l->items->v[i - 1]) : jx_undef_msg("there is no previous item");
    else if (!strcmp(name, "nextitem"))
        *out = i + 1 < n ? jv_ref(l->items->v[i + 1]) : jx_undef_msg("there is no next item");
    else {
        bool unsafe;
        int id = jinja_method_find(obj, name, strlen(name), &unsafe);
        if (id >= 0)
            return jv_func_new(JF_METHOD, id, name, jv_ref(obj), out) < 0 ? jx_oom(x) : 0;
        *out = undef_attr(obj, name);
    }
    return 0;
}

int jx_getattr(jx *x, jv obj, const char *name, size_t len, jv *out)
{
    *out = jv_undef();
    if (obj.kind == JV_UNDEF)
        return jx_undef_fail(x, obj);
    if (obj.kind == JV_LOOP)
        return loop_attr(x, obj.u.loop, name, obj, out);
    bool unsafe = false;
    int id = jinja_method_find(obj, name, len, &unsafe);
    if (id >= 0 && !unsafe)
        return jv_func_new(JF_METHOD, id, name, jv_ref(obj), out) < 0 ? jx_oom(x) : 0;
    if (unsafe) {
        *out = jx_undef_msg("access to attribute '%s' of '%s' object is unsafe.", name,
                         jv_type_name(obj));
        out->flags = JVF_UNSAFE;
        return 0;
    }
    if (obj.kind == JV_DICT || obj.kind == JV_NS) {
        jv *v = jdict_get_cstr(obj.u.d, name);
        if (v) {
            *out = jv_ref(*v);
            return 0;
        }
    }
    *out = undef_attr(obj, name);
    return 0;
}

/* Python's slice.indices() and the slice itself, for str, list and tuple. */
static int slice_value(jx *x, jv obj, jv start, jv stop, jv step, jv *out)
{
    jv b[3] = {start, stop, step};
    int64_t v[3] = {0, 0, 1};
    for (int i = 0; i < 3; i++) {
        if (b[i].kind == JV_NONE)
            continue;
        if (!jv_is_intlike(b[i]))
            return jx_fail(x, SW_ETYPE, "slice indices must be integers or None or have an "
                                        "__index__ method");
        v[i] = jv_intval(b[i]);
    }
    if (v[2] == 0)
        return jx_fail(x, SW_EINVAL, "slice step cannot be zero");
    int64_t len = jv_length(obj), st = v[2];
    int64_t lower = st > 0 ? 0 : -1, upper = st > 0 ? len : len - 1;
    int64_t idx[2];
    for (int i = 0; i < 2; i++) {
        if (b[i].kind == JV_NONE) {
            idx[i] = (st < 0) == (i == 0) ? upper : lower;
            continue;
        }
        int64_t k = v[i];
        if (k < 0) {
            k = k < -len ? lower : k + len;
            if (k < lower)
                k = lower;
        } else if (k > upper) {
            k = upper;
        }
        idx[i] = k;
    }
    int64_t count = 0;
    if (st > 0 && idx[1] > idx[0])
        count = (idx[1] - idx[0] - 1) / st + 1;
    else if (st < 0 && idx[1] < idx[0])
        count = (idx[0] - idx[1] - 1) / -st + 1;
    if (obj.kind == JV_LIST) {
        if (jv_list((size_t)count, obj.u.l->tuple, out) < 0)
            return jx_oom(x);
        if (obj.u.l->range) { /* a slice of a range is a range */
            jlist *r = out->u.l, *src = obj.u.l;
            r->range = true;
            r->start = src->start + idx[0] * src->step;
            r->stop = src->start + idx[1] * src->step;
            r->step = src->step * st;
        }
        for (int64_t k = 0, i = idx[0]; k < count; k++, i += st)
            if (jlist_push(out->u.l, jv_ref(obj.u.l->v[i])) < 0)
                return jx_oom(x);
        return 0;
    }
    jstr *s = obj.u.s;
    jbuf buf;
    jbuf_init(&buf, x->max_output);
    if (st == 1 && count > 0) {
        size_t a = u8_offset(s, (size_t)idx[0]), e = u8_offset(s, (size_t)(idx[0] + count));
        jbuf_put(&buf, s->p + a, e - a);
    } else if (count > 0) {
        size_t *offs = malloc(((size_t)s->ncp + 1) * sizeof *offs);
        if (!offs)
            return jx_oom(x);
        for (size_t i = 0, k = 0; k <= s->ncp; k++) {
            offs[k] = i;
            if (i < s->len)
                u8_next(s->p, &i);
        }
        for (int64_t k = 0, i = idx[0]; k < count; k++, i += st)
            jbuf_put(&buf, s->p + offs[i], offs[i + 1] - offs[i]);
        free(offs);
    }
    if (buf.err) {
        int rc = jx_buf_fail(x, &buf);
        jbuf_free(&buf);
        return rc;
    }
    if (jbuf_to_jv(&buf, out) < 0)
        return jx_oom(x);
    out->flags = obj.flags & JVF_SAFE;
    return 0;
}

/* jinja2 compiles a slice to Python's own subscription (not the sandbox's
 * getitem), so slicing anything but a sequence is an error. */
int jx_slice(jx *x, jv obj, jv start, jv stop, jv step, jv *out)
{
    *out = jv_undef();
    if (obj.kind == JV_UNDEF)
        return jx_undef_fail(x, obj);
    if (obj.kind == JV_STR || (obj.kind == JV_LIST && !obj.u.l->gen))
        return slice_value(x, obj, start, stop, step, out);
    if (obj.kind == JV_DICT)
        return jx_fail(x, SW_ETYPE, "unhashable type: 'slice'");
    return jx_fail(x, SW_ETYPE, "'%s' object is not subscriptable", jv_type_name(obj));
}

int jx_getitem(jx *x, jv obj, jv key, jv *out)
{
    char t[64];
    *out = jv_undef();
    if (obj.kind == JV_UNDEF)
        return jx_undef_fail(x, obj);
    if (obj.kind == JV_DICT && jv_hashable(key)) {
        jv *v = jdict_get(obj.u.d, key);
        if (v) {
            *out = jv_ref(*v);
            return 0;
        }
    } else if ((obj.kind == JV_LIST || obj.kind == JV_STR) && jv_is_intlike(key)) {
        int64_t n = jv_length(obj), i = jv_intval(key);
        if (i < 0)
            i += n;
        if (i >= 0 && i < n) {
            if (obj.kind == JV_LIST) {
                *out = jv_ref(obj.u.l->v[i]);
                return 0;
            }
            size_t a = u8_offset(obj.u.s, (size_t)i), e = a;
            u8_next(obj.u.s->p, &e);
            if (jv_str(obj.u.s->p + a, e - a, out) < 0)
                return jx_oom(x);
            out->flags = obj.flags & JVF_SAFE;
            return 0;
        }
    }
    if (key.kind == JV_STR)
        return jx_getattr(x, obj, key.u.s->p, key.u.s->len, out);
    jbuf b;
    jbuf_init(&b, 200);
    jv_write_repr(&b, key);
    *out = jx_undef_msg("'%s' has no element %s", type_repr(obj, t, sizeof t), b.p ? b.p : "");
    jbuf_free(&b);
    return 0;
}

int jx_iterate(jx *x, jv v, jv *out)
{
    *out = jv_undef();
    switch (v.kind) {
    case JV_LIST:
        *out = jv_ref(v);
        return 0;
    case JV_UNDEF:
        return jv_list(0, false, out) < 0 ? jx_oom(x) : 0;
    case JV_DICT:
        if (jv_list(v.u.d->n, false, out) < 0)
            return jx_oom(x);
        for (size_t i = 0; i < v.u.d->n; i++)
            if (jlist_push(out->u.l, jv_ref(v.u.d->k[i])) < 0)
                return jx_oom(x);
        return 0;
    case JV_STR:
        if (jv_list(v.u.s->ncp, false, out) < 0)
            return jx_oom(x);
        for (size_t i = 0; i < v.u.s->len;) {
            size_t a = i;
            jv c;
            u8_next(v.u.s->p, &i);
            if (jv_str(v.u.s->p + a, i - a, &c) < 0 || jlist_push(out->u.l, c) < 0)
                return jx_oom(x);
        }
        return 0;
    default:
        return jx_fail(x, SW_ETYPE, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ---- operators ------------------------------------------------------------------- */

static const char *const op_names[] = {"+", "-", "*", "/", "//", "%", "**"};

static int int_result(jx *x, bool ok, int64_t r, jv *out)
{
    if (!ok)
        return jx_fail(x, SW_ERANGE, "integer overflow (spillway's integers are 64-bit)");
    *out = jv_int(r);
    return 0;
}

/* Python's float floor division and modulo (Objects/floatobject.c). */
static void float_divmod(double a, double b, double *div, double *mod)
{
    double m = fmod(a, b), d = (a - m) / b;
    if (m != 0) {
        if ((b < 0) != (m < 0)) {
            m += b;
            d -= 1;
        }
    } else {
        m = copysign(0.0, b);
    }
    double fd = 0;
    if (d != 0) {
        fd = floor(d);
        if (d - fd > 0.5)
            fd += 1;
    } else {
        fd = copysign(0.0, a / b);
    }
    *div = fd;
    *mod = m;
}

static int int_pow(jx *x, int64_t a, int64_t e, jv *out)
{
    int64_t r = 1;
    bool ok = true;
    while (e > 0 && ok) {
        if (e & 1)
            ok = !__builtin_mul_overflow(r, a, &r);
        e >>= 1;
        if (e && ok)
            ok = !__builtin_mul_overflow(a, a, &a);
    }
    return int_result(x, ok, r, out);
}

static int num_binop(jx *x, int op, jv a, jv b, jv *out)
{
    if (jv_is_intlike(a) && jv_is_intlike(b)) {
        int64_t p = jv_intval(a), q = jv_intval(b), r = 0;
        bool ok;
        switch (op) {
        case JOP_ADD:
            ok = !__builtin_add_overflow(p, q, &r);
            return int_result(x, ok, r, out);
        case JOP_SUB:
            ok = !__builtin_sub_overflow(p, q, &r);
            return int_result(x, ok, r, out);
        case JOP_MUL:
            ok = !__builtin_mul_overflow(p, q, &r);
            return int_result(x, ok, r, out);
        case JOP_FLOORDIV: case JOP_MOD:
            if (q == 0)
                return jx_fail(x, SW_EINVAL, "integer division or modulo by zero");
            if (p == INT64_MIN && q == -1)
                return int_result(x, op == JOP_MOD, 0, out);
            r = op == JOP_FLOORDIV ? p / q : p % q;
            if (p % q != 0 && ((p < 0) != (q < 0)))
                r = op == JOP_FLOORDIV ? r - 1 : r + q;
            *out = jv_int(r);
            return 0;
        case JOP_POW:
            if (q >= 0)
                return int_pow(x, p, q, out);
            if (p == 0)
                return jx_fail(x, SW_EINVAL, "0.0 cannot be raised to a negative power");
            *out = jv_float(pow((double)p, (double)q));
            return 0;
        }
    }
    double p = jv_numval(a), q = jv_numval(b), d, m;
    switch (op) {
    case JOP_ADD: *out = jv_float(p + q); return 0;
    case JOP_SUB: *out = jv_float(p - q); return 0;
    case JOP_MUL: *out = jv_float(p * q); return 0;
    case JOP_DIV:
        if (q == 0)
            return jx_fail(x, SW_EINVAL, "division by zero");
        *out = jv_float(p / q);
        return 0;
    case JOP_FLOORDIV: case JOP_MOD:
        if (q == 0)
            return jx_fail(x, SW_EINVAL, "float %s by zero",
                           op == JOP_MOD ? "modulo" : "floor division");
        float_divmod(p, q, &d, &m);
        *out = jv_float(op == JOP_MOD ? m : d);
        return 0;
    case JOP_POW:
        if (p == 0 && q < 0)
            return jx_fail(x, SW_EINVAL, "0.0 cannot be raised to a negative power");
        if (p < 0 && q != floor(q))
            return jx_fail(x, SW_EUNSUPPORTED, "complex numbers are not supported");
        *out = jv_float(pow(p, q));
        return 0;
    }
    return jx_fail(x, SW_EINVAL, "bad operator");
}

/* markupsafe.escape() of v's str(). */
static void write_escaped(jbuf *b, jv v)
{
    if (v.kind == JV_STR && (v.flags & JVF_SAFE)) {
        jv_write_str(b, v);
        return;
    }
    jbuf tmp;
    jbuf_init(&tmp, b->max);
    jv_write_str(&tmp, v);
    for (size_t i = 0; i < tmp.len; i++) {
        switch (tmp.p[i]) {
        case '&': jbuf_puts(b, "&amp;"); break;
        case '<': jbuf_puts(b, "&lt;"); break;
        case '>': jbuf_puts(b, "&gt;"); break;
        case '"': jbuf_puts(b, "&#34;"); break;
        case '\'': jbuf_puts(b, "&#39;"); break;
        default: jbuf_putc(b, tmp.p[i]);
        }
    }
    if (tmp.err)
        b->err = tmp.err;
    jbuf_free(&tmp);
}

static int seq_binop(jx *x, int op, jv a, jv b, jv *out)
{
    jbuf buf;
    jbuf_init(&buf, x->max_output);
    if (op == JOP_ADD && a.kind == JV_STR && b.kind == JV_STR) {
        bool safe = (a.flags | b.flags) & JVF_SAFE;
        if (safe) {
            write_escaped(&buf, a);
            write_escaped(&buf, b);
        } else {
            jbuf_put(&buf, a.u.s->p, a.u.s->len);
            jbuf_put(&buf, b.u.s->p, b.u.s->len);
        }
        int rc = buf.err ? jx_buf_fail(x, &buf) : jbuf_to_jv(&buf, out) < 0 ? jx_oom(x) : 0;
        jbuf_free(&buf);
        if (rc == 0 && safe)
            out->flags = JVF_SAFE;
        return rc;
    }
    if (op == JOP_ADD && a.kind == JV_LIST && b.kind == JV_LIST &&
        a.u.l->tuple == b.u.l->tuple && !a.u.l->gen && !b.u.l->gen && !a.u.l->range &&
        !b.u.l->range) {
        if (jv_list(a.u.l->n + b.u.l->n, a.u.l->tuple, out) < 0)
            return jx_oom(x);
        for (size_t i = 0; i < a.u.l->n + b.u.l->n; i++) {
            jv e = i < a.u.l->n ? a.u.l->v[i] : b.u.l->v[i - a.u.l->n];
            if (jlist_push(out->u.l, jv_ref(e)) < 0)
                return jx_oom(x);
        }
        return 0;
    }
    if (op == JOP_MUL && (jv_is_intlike(a) || jv_is_intlike(b))) {
        jv seq = jv_is_intlike(a) ? b : a;
        int64_t k = jv_intval(jv_is_intlike(a) ? a : b);
        if (k < 0)
            k = 0;
        if (seq.kind == JV_STR) {
            if (seq.u.s->len == 0)
                k = 0;
            if (seq.u.s->len && (uint64_t)k > x->max_output / seq.u.s->len)
                return jx_fail(x, SW_ERANGE, "string too long (limit %zu bytes)", x->max_output);
            int rc;
            if ((rc = jx_charge(x, (uint64_t)k * seq.u.s->len / 8)) < 0)
                return rc;
            for (int64_t i = 0; i < k; i++)
                jbuf_put(&buf, seq.u.s->p, seq.u.s->len);
            rc = buf.err ? jx_buf_fail(x, &buf) : jbuf_to_jv(&buf, out) < 0 ? jx_oom(x) : 0;
            jbuf_free(&buf);
            return rc;
        }
        if (seq.kind == JV_LIST && !seq.u.l->gen && !seq.u.l->range) {
            uint64_t total = (uint64_t)k * seq.u.l->n;
            int rc;
            if (seq.u.l->n && (uint64_t)k > (1u << 20) / seq.u.l->n)
                return jx_fail(x, SW_ERANGE, "list too long");
            if ((rc = jx_charge(x, total)) < 0)
                return rc;
            if (jv_list((size_t)total, seq.u.l->tuple, out) < 0)
                return jx_oom(x);
            for (uint64_t i = 0; i < total; i++)
                if (jlist_push(out->u.l, jv_ref(seq.u.l->v[i % seq.u.l->n])) < 0)
                    return jx_oom(x);
            return 0;
        }
    }
    if (op == JOP_ADD && (a.kind == JV_STR || (a.kind == JV_LIST && !a.u.l->range)))
        return jx_fail(x, SW_ETYPE, "can only concatenate %s (not \"%s\") to %s",
                       jv_type_name(a), jv_type_name(b), jv_type_name(a));
    return jx_fail(x, SW_ETYPE, "unsupported operand type(s) for %s: '%s' and '%s'",
                   op_names[op], jv_type_name(a), jv_type_name(b));
}

int jx_binop(jx *x, int op, jv a, jv b, jv *out)
{
    *out = jv_undef();
    if (op == JOP_MOD && a.kind == JV_STR) /* str.__mod__ goes first, even with undefined */
        return jx_percent_format(x, a, b, out);
    if (a.kind == JV_UNDEF)
        return jx_undef_fail(x, a);
    if (b.kind == JV_UNDEF)
        return jx_undef_fail(x, b);
    if (jv_is_num(a) && jv_is_num(b))
        return num_binop(x, op, a, b, out);
    return seq_binop(x, op, a, b, out);
}

int jx_contains(jx *x, jv c, jv item, bool *res)
{
    *res = false;
    switch (c.kind) {
    case JV_UNDEF:
        return 0;
    case JV_STR:
        if (item.kind != JV_STR)
            return jx_fail(x, SW_ETYPE, "'in <string>' requires string as left operand, not %s",
                           jv_type_name(item));
        *res = item.u.s->len == 0 ||
               memmem(c.u.s->p, c.u.s->len, item.u.s->p, item.u.s->len) != NULL;
        return 0;
    case JV_LIST:
        for (size_t i = 0; i < c.u.l->n && !*res; i++)
            *res = jv_equal(c.u.l->v[i], item);
        return 0;
    case JV_DICT:
        if (!jv_hashable(item))
            return jx_fail(x, SW_ETYPE, "unhashable type: '%s'", jv_type_name(item));
        *res = jdict_get(c.u.d, item) != NULL;
        return 0;
    default:
        return jx_fail(x, SW_ETYPE, "argument of type '%s' is not iterable", jv_type_name(c));
    }
}

int jx_compare(jx *x, int op, jv a, jv b, bool *res)
{
    if (op == JOP_EQ || op == JOP_NE) {
        *res = jv_equal(a, b) == (op == JOP_EQ);
        return 0;
    }
    if (op == JOP_IN || op == JOP_NOTIN) {
        int rc = jx_contains(x, b, a, res);
        if (op == JOP_NOTIN)
            *res = !*res;
        return rc;
    }
    if (a.kind == JV_UNDEF)
        return jx_undef_fail(x, a);
    if (b.kind == JV_UNDEF)
        return jx_undef_fail(x, b);
    int c;
    char msg[200];
    if (jv_compare(a, b, &c, msg, sizeof msg) < 0) {
        static const char *const sym[] = {[JOP_LT] = "<", [JOP_LE] = "<=", [JOP_GT] = ">",
                                          [JOP_GE] = ">="};
        return jx_fail(x, SW_ETYPE, "'%s' not supported between instances of '%s' and '%s'",
                       sym[op], jv_type_name(a), jv_type_name(b));
    }
    bool nan = (a.kind == JV_FLOAT && isnan(a.u.f)) || (b.kind == JV_FLOAT && isnan(b.u.f));
    switch (op) {
    case JOP_LT: *res = c < 0; break;
    case JOP_LE: *res = c <= 0; break;
    case JOP_GT: *res = c > 0; break;
    default: *res = c >= 0; break;
    }
    if (nan)
        *res = false;
    return 0;
}
