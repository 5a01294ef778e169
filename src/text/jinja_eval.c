/*
 * jinja_eval.c — running a parsed template: scopes, statements, expressions.
 *
 * Scopes follow jinja2. The render's variables and top-level {% set %}s
 * live in the root frame. Each for-loop iteration, macro call, block set,
 * filter block and {% generation %} body gets a fresh frame whose parent is
 * the enclosing one, so what it sets is gone when it ends — which is why
 * templates carry state out of loops in a namespace(). {% if %} makes no
 * frame. A macro's frame hangs off the frame the macro was defined in.
 * Names missing from every frame fall back to the global functions
 * (range, namespace, ...), then to an undefined value.
 *
 * Work is bounded: every statement, expression and loop iteration costs a
 * step, long strings and lists cost extra in proportion to their size, and
 * nested evaluation (macro recursion above all) has a depth limit.
 */
#include "text/jinja_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20)
#define DEFAULT_MAX_STEPS 200000000u
#define DEFAULT_MAX_DEPTH 100
#define MAX_NEST 2500 /* nested eval/exec calls, whatever causes them */

enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

struct jframe {
    int refs;
    jframe *parent;
    size_t n, cap;
    const char **names; /* stable for the render: from the tree or vars */
    jv *vals;
};

/* ---- errors ------------------------------------------------------------------ */

int jx_fail(jx *x, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->at)
        return sw_errf(x->err, code, "line %u, column %u: %s", x->at->line, x->at->col, msg);
    return sw_errf(x->err, code, "%s", msg);
}

int jx_oom(jx *x) { return jx_fail(x, SW_ENOMEM, "out of memory"); }

int jx_buf_fail(jx *x, const jbuf *b)
{
    if (b->err == SW_ENOMEM)
        return jx_oom(x);
    return jx_fail(x, SW_ERANGE, "output too large (limit %zu bytes)", x->max_output);
}

/* Making a value costs in proportion to its size, which bounds the memory
 * a render can fill as well as its time. */
int jx_charge_value(jx *x, jv v)
{
    switch (v.kind) {
    case JV_STR: return jx_charge(x, v.u.s->len / 8);
    case JV_LIST: return jx_charge(x, v.u.l->n);
    case JV_DICT: case JV_NS: return jx_charge(x, 2 * v.u.d->n);
    default: return 0;
    }
}

int jx_charge(jx *x, uint64_t n)
{
    x->steps += n;
    if (x->steps > x->max_steps)
        return jx_fail(x, SW_ERANGE, "template takes too long to render (limit %llu steps)",
                       (unsigned long long)x->max_steps);
    return 0;
}

/* The error for using an undefined value. */
int jx_undef_fail(jx *x, jv v)
{
    const char *msg = v.u.s ? v.u.s->p : "value is undefined";
    return jx_fail(x, v.flags & JVF_UNSAFE ? SW_EUNSUPPORTED : SW_EINVAL, "%s", msg);
}

/* ---- frames ------------------------------------------------------------------- */

static jframe *frame_new(jframe *parent)
{
    jframe *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->refs = 1;
    f->parent = parent;
    if (parent)
        parent->refs++;
    return f;
}

static void frame_clear(jframe *f)
{
    size_t n = f->n;
    f->n = 0;
    for (size_t i = 0; i < n; i++)
        jv_drop(f->vals[i]);
}

void jframe_drop(jframe *f)
{
    while (f && --f->refs == 0) {
        jframe *parent = f->parent;
        frame_clear(f);
        free(f->names);
        free(f->vals);
        free(f);
        f = parent;
    }
}

/* Sets name in f, taking ownership of v. */
static int frame_set(jx *x, jframe *f, const char *name, jv v)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) {
            jv_drop(f->vals[i]);
            f->vals[i] = v;
            return 0;
        }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **nn = realloc(f->names, cap * sizeof *nn);
        if (nn)
            f->names = nn;
        jv *nv = nn ? realloc(f->vals, cap * sizeof *nv) : NULL;
        if (!nv) {
            jv_drop(v);
            return jx_oom(x);
        }
        f->vals = nv;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return 0;
}

static jv *frame_lookup(jframe *f, const char *name)
{
    for (; f; f = f->parent)
        for (size_t i = f->n; i-- > 0;)
            if (!strcmp(f->names[i], name))
                return &f->vals[i];
    return NULL;
}

/* Runs with a fresh child frame pushed. */
static int push_frame(jx *x)
{
    jframe *f = frame_new(x->frame);
    if (!f)
        return jx_oom(x);
    x->frame = f;
    return 0;
}

static void pop_frame(jx *x)
{
    jframe *f = x->frame;
    x->frame = f->parent;
    frame_clear(f); /* breaks cycles through macros defined in it */
    jframe_drop(f);
}

/* ---- calls ---------------------------------------------------------------------- */

static int exec_list(jx *x, const jnlist *body);
static int eval(jx *x, const jnode *n, jv *out);

int jx_bind(jx *x, const char *what, const jargs *a, const char *const *params, size_t nparams,
            size_t nrequired, jv *slots)
{
    bool set[16] = {false};
    if (nparams > sizeof set / sizeof set[0])
        return jx_fail(x, SW_EINVAL, "internal error: %s has too many parameters", what);
    for (size_t i = 0; i < nparams; i++)
        slots[i] = jv_undef();
    if (a->npos > nparams)
        return jx_fail(x, SW_EINVAL, "%s takes at most %zu argument%s (%zu given)", what,
                       nparams, nparams == 1 ? "" : "s", a->npos);
    for (size_t i = 0; i < a->npos; i++) {
        slots[i] = a->pos[i];
        set[i] = true;
    }
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < nparams && strcmp(params[i], a->kwnames[k]))
            i++;
        if (i == nparams)
            return jx_fail(x, SW_EINVAL, "%s got an unexpected keyword argument '%s'", what,
                           a->kwnames[k]);
        if (set[i])
            return jx_fail(x, SW_EINVAL, "%s got multiple values for argument '%s'", what,
                           params[i]);
        slots[i] = a->kw[k];
        set[i] = true;
    }
    for (size_t i = 0; i < nrequired; i++)
        if (!set[i])
            return jx_fail(x, SW_EINVAL, "%s is missing the required argument '%s'", what,
                           params[i]);
    return (int)(a->npos + a->nkw);
}

/* Binds a macro's parameters in frame f: positional arguments, keywords,
 * then defaults (evaluated in f, so they see earlier parameters); a missing
 * argument without a default is undefined, as in jinja2. */
static int bind_macro_args(jx *x, const jnode *m, const jargs *a, jframe *f)
{
    const jnlist *params = &m->args;
    if (a->npos > params->n)
        return jx_fail(x, SW_EINVAL, "macro '%s' takes not more than %zu argument(s)", m->name,
                       params->n);
    for (size_t k = 0; k < a->nkw; k++) {
        size_t i = 0;
        while (i < params->n && strcmp(params->v[i]->name, a->kwnames[k]))
            i++;
        if (i == params->n)
            return jx_fail(x, SW_EINVAL, "macro '%s' takes no keyword argument '%s'", m->name,
                           a->kwnames[k]);
        if (i < a->npos)
            return jx_fail(x, SW_EINVAL, "macro '%s' got multiple values for argument '%s'",
                           m->name, a->kwnames[k]);
    }
    for (size_t i = 0; i < params->n; i++) {
        const jnode *p = params->v[i];
        jv v = jv_undef();
        int rc = 0;
        bool found = i < a->npos;
        if (found)
            v = jv_ref(a->pos[i]);
        for (size_t k = 0; k < a->nkw && !found; k++)
            if (!strcmp(a->kwnames[k], p->name)) {
                v = jv_ref(a->kw[k]);
                found = true;
            }
        if (!found && p->a)
            rc = eval(x, p->a, &v);
        else if (!found)
            v = jx_undef_msg("'%s' is undefined", p->name);
        if (rc < 0 || (rc = frame_set(x, f, p->name, v)) < 0)
            return rc;
    }
    return 0;
}

static int call_macro(jx *x, const jfunc *fn, const jargs *a, jv *out)
{
    const jnode *m = fn->macro;
    if (x->depth >= x->max_depth)
        return jx_fail(x, SW_ERANGE, "macro calls nested too deeply (limit %d)", x->max_depth);
    jframe *saved = x->frame, *f = frame_new(fn->scope);
    if (!f)
        return jx_oom(x);
    jbuf buf, *saved_out = x->out;
    jbuf_init(&buf, x->max_output);
    x->frame = f;
    int rc = bind_macro_args(x, m, a, f);
    if (rc == 0) {
        x->out = &buf;
        x->depth++;
        rc = exec_list(x, &m->body);
        x->depth--;
        x->out = saved_out;
    }
    x->frame = saved;
    frame_clear(f);
    jframe_drop(f);
    if (rc == 0 && buf.err)
        rc = jx_buf_fail(x, &buf);
    if (rc == 0 && jbuf_to_jv(&buf, out) < 0)
        rc = jx_oom(x);
    jbuf_free(&buf);
    return rc;
}

int jx_call_value(jx *x, jv fn, jv *args, size_t nargs, const char **kwnames, jv *kwargs,
                  size_t nkw, jv *out)
{
    jargs a = {args, nargs, kwnames, kwargs, nkw};
    *out = jv_undef();
    if (fn.kind == JV_UNDEF)
        return jx_undef_fail(x, fn);
    if (fn.kind != JV_FUNC)
        return jx_fail(x, SW_ETYPE, "'%s' object is not callable", jv_type_name(fn));
    switch (fn.u.fn->kind) {
    case JF_MACRO: return call_macro(x, fn.u.fn, &a, out);
    case JF_METHOD: return jinja_method_call(x, fn.u.fn->id, fn.u.fn->self, &a, out);
    default: return jinja_global_call(x, fn.u.fn->id, &a, out);
    }
}

int jv_func_new(int kind, int id, const char *name, jv self, jv *out)
{
    jfunc *f = calloc(1, sizeof *f);
    *out = jv_undef();
    if (!f) {
        jv_drop(self);
        return SW_ENOMEM;
    }
    f->refs = 1;
    f->kind = (uint8_t)kind;
    f->id = id;
    f->name = name;
    f->self = self;
    *out = (jv){.kind = JV_FUNC, .u.fn = f};
    return 0;
}

/* ---- expressions ------------------------------------------------------------------ */

/* A node's evaluated arguments (zeroed first; args_free() always after). */
typedef struct evargs {
    jargs a;
    jv pos[8], kw[8];
    jv *posp, *kwp;
} evargs;

static void args_free(evargs *e)
{
    for (size_t i = 0; i < e->a.npos; i++)
        jv_drop(e->a.pos[i]);
    for (size_t i = 0; i < e->a.nkw; i++)
        jv_drop(e->a.kw[i]);
    if (e->posp != e->pos)
        free(e->posp);
    if (e->kwp != e->kw)
        free(e->kwp);
}

static int args_eval(jx *x, const jnode *n, evargs *e)
{
    e->posp = n->args.n <= 8 ? e->pos : malloc(n->args.n * sizeof(jv));
    e->kwp = n->kwargs.n <= 8 ? e->kw : malloc(n->kwargs.n * sizeof(jv));
    e->a = (jargs){e->posp, 0, n->kwnames, e->kwp, 0};
    if (!e->posp || !e->kwp)
        return jx_oom(x);
    for (size_t i = 0; i < n->args.n; i++) {
        int rc = eval(x, n->args.v[i], &e->posp[i]);
        if (rc < 0)
            return rc;
        e->a.npos++;
    }
    for (size_t i = 0; i < n->kwargs.n; i++) {
        int rc = eval(x, n->kwargs.v[i], &e->kwp[i]);
        if (rc < 0)
            return rc;
        e->a.nkw++;
    }
    return 0;
}

static int eval_call(jx *x, const jnode *n, jv *out)
{
    evargs e;
    jv fn = jv_undef(), self = jv_undef();
    int rc = 0, method = -1;
    if (n->a->kind == JN_ATTR) { /* obj.method(...) without a bound-method object */
        bool unsafe;
        if ((rc = eval(x, n->a->a, &self)) == 0 && self.kind != JV_LOOP) {
            method = jinja_method_find(self, n->a->name, strlen(n->a->name), &unsafe);
            if (method >= 0 && unsafe)
                method = -1;
        }
        if (rc == 0 && method < 0) {
            x->at = n->a;
            rc = jx_getattr(x, self, n->a->name, strlen(n->a->name), &fn);
        }
    } else {
        rc = eval(x, n->a, &fn);
    }
    memset(&e, 0, sizeof e);
    if (rc == 0)
        rc = args_eval(x, n, &e);
    x->at = n;
    if (rc == 0 && method >= 0)
        rc = jinja_method_call(x, method, self, &e.a, out);
    else if (rc == 0)
        rc = jx_call_value(x, fn, e.a.pos, e.a.npos, e.a.kwnames, e.a.kw, e.a.nkw, out);
    args_free(&e);
    jv_drop(fn);
    jv_drop(self);
    return rc;
}

static int eval_filter(jx *x, const jnode *n, jv *out)
{
    jv v = jv_undef();
    evargs e;
    memset(&e, 0, sizeof e);
    int rc = n->a ? eval(x, n->a, &v) : 0;
    if (!n->a)
        v = jv_ref(x->block_value);
    if (rc == 0)
        rc = args_eval(x, n, &e);
    x->at = n;
    if (rc == 0) {
        rc = jinja_filter(x, n->name, v, &e.a, out);
        if (rc == SW_ENOTFOUND)
            rc = jx_fail(x, SW_EFORMAT, jinja_filter_unsupported(n->name)
                         ? "the '%s' filter is not supported" : "no filter named '%s'", n->name);
    }
    args_free(&e);
    jv_drop(v);
    return rc;
}

static int eval_test(jx *x, const jnode *n, jv *out)
{
    jv v = jv_undef();
    evargs e;
    memset(&e, 0, sizeof e);
    int rc = eval(x, n->a, &v);
    bool res = false;
    if (rc == 0)
        rc = args_eval(x, n, &e);
    x->at = n;
    if (rc == 0) {
        rc = jinja_test(x, n->name, v, &e.a, &res);
        if (rc == SW_ENOTFOUND)
            rc = jx_fail(x, SW_EFORMAT, "no test named '%s'", n->name);
    }
    args_free(&e);
    jv_drop(v);
    *out = jv_bool(res != n->flag);
    return rc;
}

static int eval_items(jx *x, const jnode *n, jv *out)
{
    int rc;
    if (n->kind == JN_DICT) {
        if (jv_dict(out) < 0)
            return jx_oom(x);
        for (size_t i = 0; i + 1 < n->args.n; i += 2) {
            jv k, v;
            if ((rc = eval(x, n->args.v[i], &k)) < 0)
                return rc;
            if (!jv_hashable(k)) {
                x->at = n->args.v[i];
                rc = jx_fail(x, SW_ETYPE, "unhashable type: '%s'", jv_type_name(k));
                jv_drop(k);
                return rc;
            }
            if ((rc = eval(x, n->args.v[i + 1], &v)) < 0) {
                jv_drop(k);
                return rc;
            }
            if (jdict_set(out->u.d, k, v) < 0)
                return jx_oom(x);
        }
        return 0;
    }
    if (jv_list(n->args.n, n->kind == JN_TUPLE, out) < 0)
        return jx_oom(x);
    for (size_t i = 0; i < n->args.n; i++) {
        jv v;
        if ((rc = eval(x, n->args.v[i], &v)) < 0)
            return rc;
        if (jlist_push(out->u.l, v) < 0)
            return jx_oom(x);
    }
    return 0;
}

static int eval_compare(jx *x, const jnode *n, jv *out)
{
    jv left;
    int rc = eval(x, n->a, &left);
    bool res = true;
    for (size_t i = 0; rc == 0 && i < n->args.n && res; i++) {
        jv right;
        if ((rc = eval(x, n->args.v[i], &right)) < 0)
            break;
        x->at = n;
        rc = jx_compare(x, n->ops[i], left, right, &res);
        jv_drop(left);
        left = right;
    }
    jv_drop(left);
    *out = jv_bool(res);
    return rc;
}

static int eval_concat(jx *x, const jnode *n, jv *out)
{
    jbuf b;
    jbuf_init(&b, x->max_output);
    int rc = 0;
    for (size_t i = 0; i < n->args.n && rc == 0; i++) {
        jv v;
        if ((rc = eval(x, n->args.v[i], &v)) == 0) {
            jv_write_str(&b, v);
            jv_drop(v);
        }
    }
    x->at = n;
    if (rc == 0)
        rc = b.err ? jx_buf_fail(x, &b) : jbuf_to_jv(&b, out) < 0 ? jx_oom(x) : 0;
    jbuf_free(&b);
    return rc;
}

static int eval_name(jx *x, const jnode *n, jv *out)
{
    jv *v = frame_lookup(x->frame, n->name);
    if (v) {
        *out = jv_ref(*v);
        return 0;
    }
    int id = jinja_global_find(n->name);
    if (id >= 0)
        return jv_func_new(JF_BUILTIN, id, jinja_global_name(id), jv_undef(), out) < 0
                   ? jx_oom(x) : 0;
    *out = jx_undef_msg("'%s' is undefined", n->name);
    return 0;
}

static int eval_unary(jx *x, const jnode *n, jv *out)
{
    jv v;
    int rc = eval(x, n->a, &v);
    x->at = n;
    if (rc < 0)
        return rc;
    if (n->kind == JN_NOT) {
        *out = jv_bool(!jv_truthy(v));
    } else if (v.kind == JV_UNDEF) {
        rc = jx_undef_fail(x, v);
    } else if (!jv_is_num(v)) {
        rc = jx_fail(x, SW_ETYPE, "bad operand type for unary %s: '%s'",
                     n->kind == JN_NEG ? "-" : "+", jv_type_name(v));
    } else if (n->kind == JN_POS) {
        *out = v.kind == JV_BOOL ? jv_int(v.u.b) : v;
    } else if (v.kind == JV_FLOAT) {
        *out = jv_float(-v.u.f);
    } else if (jv_intval(v) == INT64_MIN) {
        rc = jx_fail(x, SW_ERANGE, "integer overflow (spillway's integers are 64-bit)");
    } else {
        *out = jv_int(-jv_intval(v));
    }
    jv_drop(v);
    return rc;
}

/* Whether a node is a literal or built only from literals: what jinja2's
 * optimizer folds into a constant before generating Python code. */
static bool is_constant(const jnode *n)
{
    switch (n->kind) {
    case JN_CONST: return true;
    case JN_NEG: case JN_POS: case JN_NOT: return is_constant(n->a);
    case JN_BINOP: case JN_AND: case JN_OR: return is_constant(n->a) && is_constant(n->b);
    default: return false;
    }
}

/*
 * jinja2 folds "-2" into the constant -2 and writes "-2 ** y" into the
 * Python it generates, which Python reads as -(2 ** y). That happens when
 * the base is a negated number literal and the exponent is not constant
 * (a constant exponent is folded correctly, as (-2) ** y).
 */
static bool negative_literal_base(const jnode *n)
{
    const jnode *a = n->a;
    return a->kind == JN_NEG && a->a->kind == JN_CONST && jv_is_num(a->a->lit) &&
           jv_numval(a->a->lit) >= 0 && !is_constant(n->b);
}

static int eval_pow_quirk(jx *x, const jnode *n, jv *out)
{
    jv e, r;
    int rc = eval(x, n->b, &e);
    if (rc < 0)
        return rc;
    x->at = n;
    rc = jx_binop(x, JOP_POW, n->a->a->lit, e, &r);
    jv_drop(e);
    if (rc < 0)
        return rc;
    if (r.kind == JV_FLOAT)
        *out = jv_float(-r.u.f);
    else if (r.u.i == INT64_MIN)
        rc = jx_fail(x, SW_ERANGE, "integer overflow (spillway's integers are 64-bit)");
    else
        *out = jv_int(-r.u.i);
    return rc;
}

static int eval_node(jx *x, const jnode *n, jv *out)
{
    jv a = jv_undef(), b = jv_undef(), c = jv_undef(), d = jv_undef();
    int rc = 0;
    switch (n->kind) {
    case JN_CONST: *out = jv_ref(n->lit); return 0;
    case JN_NAME: return eval_name(x, n, out);
    case JN_CALL: return eval_call(x, n, out);
    case JN_FILTER: return eval_filter(x, n, out);
    case JN_TEST: return eval_test(x, n, out);
    case JN_COMPARE: return eval_compare(x, n, out);
    case JN_CONCAT: return eval_concat(x, n, out);
    case JN_LIST: case JN_TUPLE: case JN_DICT: return eval_items(x, n, out);
    case JN_NEG: case JN_POS: case JN_NOT: return eval_unary(x, n, out);
    case JN_AND: case JN_OR:
        if ((rc = eval(x, n->a, out)) < 0 || jv_truthy(*out) == (n->kind == JN_OR))
            return rc;
        jv_clear(out);
        return eval(x, n->b, out);
    case JN_COND:
        if ((rc = eval(x, n->a, &a)) < 0)
            return rc;
        if (jv_truthy(a))
            rc = eval(x, n->b, out);
        else if (n->c)
            rc = eval(x, n->c, out);
        else
            *out = jx_undef_msg("the inline if-expression on line %u evaluated to false and no "
                             "else section was defined.", n->line);
        jv_drop(a);
        return rc;
    case JN_ATTR:
        if ((rc = eval(x, n->a, &a)) == 0) {
            x->at = n;
            rc = jx_getattr(x, a, n->name, strlen(n->name), out);
        }
        break;
    case JN_ITEM:
        if ((rc = eval(x, n->a, &a)) == 0 && (rc = eval(x, n->b, &b)) == 0) {
            x->at = n;
            rc = jx_getitem(x, a, b, out);
        }
        break;
    case JN_SLICE:
        b = c = d = jv_none(); /* absent bounds are None */
        if ((rc = eval(x, n->a, &a)) == 0 && (!n->b || (rc = eval(x, n->b, &b)) == 0) &&
            (!n->c || (rc = eval(x, n->c, &c)) == 0) && (!n->d || (rc = eval(x, n->d, &d)) == 0)) {
            x->at = n;
            rc = jx_slice(x, a, b, c, d, out);
        }
        break;
    case JN_BINOP:
        if (n->op == JOP_POW && negative_literal_base(n))
            return eval_pow_quirk(x, n, out);
        if ((rc = eval(x, n->a, &a)) == 0 && (rc = eval(x, n->b, &b)) == 0) {
            x->at = n;
            rc = jx_binop(x, n->op, a, b, out);
        }
        break;
    default:
        rc = jx_fail(x, SW_EINVAL, "internal error: node %d is not an expression", n->kind);
    }
    jv_drop(a);
    jv_drop(b);
    jv_drop(c);
    jv_drop(d);
    return rc;
}

static int eval(jx *x, const jnode *n, jv *out)
{
    *out = jv_undef();
    x->at = n;
    int rc = jx_charge(x, 1);
    if (rc < 0)
        return rc;
    if (++x->nest > MAX_NEST) {
        x->nest--;
        return jx_fail(x, SW_ERANGE, "template evaluation nested too deeply");
    }
    rc = eval_node(x, n, out);
    x->nest--;
    if (rc < 0) {
        jv_clear(out);
        return rc;
    }
    if ((rc = jx_charge_value(x, *out)) < 0)
        jv_clear(out);
    return rc;
}

/* ---- statements -------------------------------------------------------------------- */

/* Assigns v (owned) to a target: a name, a tuple of names, or ns.attr. */
static int assign(jx *x, const jnode *target, jv v)
{
    if (target->kind == JN_NAME)
        return frame_set(x, x->frame, target->name, v);
    if (target->kind == JN_ATTR) {
        jv *ns = frame_lookup(x->frame, target->a->name);
        x->at = target;
        if (!ns || ns->kind != JV_NS) {
            jv_drop(v);
            return jx_fail(x, SW_ETYPE, "can't assign attribute '%s' on '%s': not a namespace",
                           target->name, target->a->name);
        }
        jv key;
        if (jv_cstr(target->name, &key) < 0) {
            jv_drop(v);
            return jx_oom(x);
        }
        return jdict_set(ns->u.d, key, v) < 0 ? jx_oom(x) : 0;
    }
    /* a tuple of names: unpack */
    jv items;
    int rc = jx_iterate(x, v, &items);
    jv_drop(v);
    if (rc < 0)
        return rc;
    size_t want = target->args.n, got = items.u.l->n;
    if (got != want) {
        jv_drop(items);
        x->at = target;
        if (got > want)
            return jx_fail(x, SW_EINVAL, "too many values to unpack (expected %zu)", want);
        return jx_fail(x, SW_EINVAL, "not enough values to unpack (expected %zu, got %zu)", want,
                       got);
    }
    for (size_t i = 0; i < want && rc == 0; i++)
        rc = assign(x, target->args.v[i], jv_ref(items.u.l->v[i]));
    jv_drop(items);
    return rc;
}

/* Renders body into a new string, in a fresh frame. */
static int render_block(jx *x, const jnlist *body, jv *out)
{
    jbuf buf, *saved = x->out;
    jbuf_init(&buf, x->max_output);
    int rc = push_frame(x);
    if (rc < 0)
        return rc;
    x->out = &buf;
    rc = exec_list(x, body);
    x->out = saved;
    pop_frame(x);
    if (rc == 0 && buf.err)
        rc = jx_buf_fail(x, &buf);
    if (rc == 0 && jbuf_to_jv(&buf, out) < 0)
        rc = jx_oom(x);
    jbuf_free(&buf);
    return rc;
}

/* Applies a block's filter chain (innermost operand NULL) to v. */
static int apply_filters(jx *x, const jnode *chain, jv v, jv *out)
{
    if (!chain) {
        *out = v;
        return 0;
    }
    jv saved = x->block_value;
    x->block_value = v;
    int rc = eval(x, chain, out);
    x->block_value = saved;
    jv_drop(v);
    return rc;
}

static int loop_new(jx *x, jv items, jv *out)
{
    jloop *l = calloc(1, sizeof *l);
    if (!l)
        return jx_oom(x);
    l->refs = 1;
    l->items = jv_ref(items).u.l;
    l->length = (int64_t)items.u.l->n;
    *out = (jv){.kind = JV_LOOP, .u.loop = l};
    return 0;
}

/* The items a for loop visits: the iterable, through its `if` filter. */
static int loop_items(jx *x, const jnode *n, jv *out)
{
    jv it, all;
    *out = jv_undef();
    int rc = eval(x, n->b, &it);
    if (rc < 0)
        return rc;
    x->at = n->b;
    rc = jx_iterate(x, it, &all);
    jv_drop(it);
    if (rc < 0 || !n->c) {
        *out = all;
        return rc;
    }
    if (jv_list(all.u.l->n, false, out) < 0) {
        jv_drop(all);
        return jx_oom(x);
    }
    for (size_t i = 0; i < all.u.l->n && rc == 0; i++) {
        jv keep;
        if ((rc = push_frame(x)) < 0)
            break;
        if ((rc = assign(x, n->a, jv_ref(all.u.l->v[i]))) == 0 &&
            (rc = eval(x, n->c, &keep)) == 0) {
            if (jv_truthy(keep) && jlist_push(out->u.l, jv_ref(all.u.l->v[i])) < 0)
                rc = jx_oom(x);
            jv_drop(keep);
        }
        pop_frame(x);
    }
    jv_drop(all);
    return rc;
}

static int exec_for(jx *x, const jnode *n)
{
    jv items = jv_undef(), loop = jv_undef();
    int rc = loop_items(x, n, &items);
    if (rc < 0) {
        jv_drop(items);
        return rc;
    }
    size_t count = items.u.l->n;
    if (count > 0)
        rc = loop_new(x, items, &loop);
    for (size_t i = 0; i < count && rc == 0; i++) {
        x->at = n;
        if ((rc = jx_charge(x, 1)) < 0 || (rc = push_frame(x)) < 0)
            break;
        loop.u.loop->index0 = (int64_t)i;
        if ((rc = assign(x, n->a, jv_ref(items.u.l->v[i]))) == 0 &&
            (rc = frame_set(x, x->frame, "loop", jv_ref(loop))) == 0)
            rc = exec_list(x, &n->body);
        pop_frame(x);
        if (x->ctl == CTL_BREAK) {
            x->ctl = CTL_NONE;
            break;
        }
        x->ctl = CTL_NONE;
    }
    jv_drop(loop);
    jv_drop(items);
    if (rc == 0 && count == 0)
        rc = exec_list(x, &n->orelse);
    return rc;
}

static int exec_macro(jx *x, const jnode *n)
{
    jv fn;
    if (jv_func_new(JF_MACRO, -1, n->name, jv_undef(), &fn) < 0)
        return jx_oom(x);
    fn.u.fn->macro = n;
    fn.u.fn->scope = x->frame;
    x->frame->refs++;
    return frame_set(x, x->frame, n->name, fn);
}

static int exec(jx *x, const jnode *n)
{
    jv v = jv_undef(), s = jv_undef();
    int rc = 0;
    x->at = n;
    if ((rc = jx_charge(x, 1)) < 0)
        return rc;
    if (++x->nest > MAX_NEST) {
        x->nest--;
        return jx_fail(x, SW_ERANGE, "template evaluation nested too deeply");
    }
    switch (n->kind) {
    case JN_TEXT:
        jbuf_put(x->out, n->lit.u.s->p, n->lit.u.s->len);
        break;
    case JN_PRINT:
        if ((rc = eval(x, n->a, &v)) == 0)
            jv_write_str(x->out, v);
        break;
    case JN_IF:
        if ((rc = eval(x, n->a, &v)) == 0)
            rc = exec_list(x, jv_truthy(v) ? &n->body : &n->orelse);
        break;
    case JN_FOR: rc = exec_for(x, n); break;
    case JN_SET:
        if ((rc = eval(x, n->b, &v)) == 0) {
            rc = assign(x, n->a, v);
            v = jv_undef();
        }
        break;
    case JN_SETBLOCK:
        if ((rc = render_block(x, &n->body, &s)) == 0 &&
            (rc = apply_filters(x, n->c, s, &v)) == 0) {
            rc = assign(x, n->a, v);
            v = jv_undef();
        }
        s = jv_undef();
        break;
    case JN_FILTERBLOCK:
        if ((rc = render_block(x, &n->body, &s)) == 0 &&
            (rc = apply_filters(x, n->a, s, &v)) == 0)
            jv_write_str(x->out, v);
        s = jv_undef();
        break;
    case JN_MACRO: rc = exec_macro(x, n); break;
    case JN_BREAK: x->ctl = CTL_BREAK; break;
    case JN_CONTINUE: x->ctl = CTL_CONTINUE; break;
    case JN_SCOPE:
        if ((rc = push_frame(x)) == 0) {
            rc = exec_list(x, &n->body);
            pop_frame(x);
        }
        break;
    default:
        rc = jx_fail(x, SW_EINVAL, "internal error: node %d is not a statement", n->kind);
    }
    x->nest--;
    jv_drop(v);
    jv_drop(s);
    if (rc == 0 && x->out->err) {
        x->at = n;
        rc = jx_buf_fail(x, x->out);
    }
    return rc;
}

static int exec_list(jx *x, const jnlist *body)
{
    for (size_t i = 0; i < body->n; i++) {
        int rc = exec(x, body->v[i]);
        if (rc < 0)
            return rc;
        if (x->ctl)
            return 0;
    }
    return 0;
}

/* ---- entry point ------------------------------------------------------------------- */

static int load_vars(jx *x, const json_t *vars)
{
    if (!vars)
        return 0;
    if (!json_is_object(vars))
        return sw_errf(x->err, SW_EINVAL, "template variables must be a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vars, key, val) {
        jv v;
        int rc = jv_from_json(val, &v);
        if (rc < 0)
            return sw_errf(x->err, rc, "template variable '%s': %s", key,
                           rc == SW_ERANGE ? "nested too deeply" : "out of memory");
        if ((rc = frame_set(x, x->frame, key, v)) < 0)
            return rc;
    }
    return 0;
}

int jinja_render(const jinja_tmpl *t, const json_t *vars, const jinja_opts *opts, char **out,
                 size_t *out_len, sw_err *err)
{
    jx ctx, *x = &ctx;
    memset(x, 0, sizeof *x);
    jinja_opts o = opts ? *opts : (jinja_opts){0};
    x->t = t;
    x->err = err;
    x->max_output = o.max_output ? o.max_output : DEFAULT_MAX_OUTPUT;
    x->max_steps = o.max_steps ? o.max_steps : DEFAULT_MAX_STEPS;
    x->max_depth = o.max_depth ? o.max_depth : DEFAULT_MAX_DEPTH;
    x->now = o.now;
    *out = NULL;
    if (out_len)
        *out_len = 0;
    jbuf buf;
    jbuf_init(&buf, x->max_output);
    x->out = &buf;
    x->namespaces = jlist_new(0);
    x->frame = frame_new(NULL);
    int rc = !x->frame || !x->namespaces ? sw_errf(err, SW_ENOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = load_vars(x, vars);
    if (rc == 0)
        rc = exec_list(x, &t->body);
    /* Namespaces are the only mutable values: emptying them breaks every
     * reference cycle a template can make. */
    if (x->namespaces) {
        for (size_t i = 0; i < x->namespaces->n; i++)
            jdict_clear(x->namespaces->v[i].u.d);
        jv_drop((jv){.kind = JV_LIST, .u.l = x->namespaces});
    }
    if (x->frame) {
        frame_clear(x->frame);
        jframe_drop(x->frame);
    }
    if (rc == 0 && buf.err)
        rc = jx_buf_fail(x, &buf);
    if (rc < 0) {
        jbuf_free(&buf);
        return rc;
    }
    *out = buf.p ? buf.p : strdup("");
    if (!*out)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    if (out_len)
        *out_len = buf.len;
    return 0;
}
