/*
 * jinja_parse.c — tokens to a syntax tree, following jinja2's grammar.
 *
 * Expressions, loosest binding first (jinja2's parser.py):
 *
 *   tuple      expr (',' expr)*          only where jinja2 allows a tuple
 *   expr       or ('if' or ('else' expr)?)*
 *   or/and/not the boolean operators
 *   compare    math1 (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not' 'in') math1)*
 *   math1      concat (('+'|'-') concat)*
 *   concat     math2 ('~' math2)*
 *   math2      pow (('*'|'/'|'//'|'%') pow)*
 *   pow        unary ('**' unary)*
 *   unary      ('-'|'+') unary | primary postfix* then ('|' filter,
 *              'is' test, call)*
 *
 * so "-x|abs" is "(-x)|abs", and "not x is none" is "not (x is none)".
 *
 * A filter or test that does not exist is an error when the template is
 * compiled, unless it sits inside an if statement or an if expression (and
 * not in a loop, macro or block inside that): there jinja2 only fails when
 * it is reached, and so do we (check_names() below).
 */
#include "text/jinja_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEST 200        /* parser recursion: nested brackets, tags */
#define MAX_TREE_DEPTH 1000 /* the tree: also left-nested chains like a+b+c */

typedef struct parser {
    jtok *t;
    size_t i;
    jinja_tmpl *tmpl;
    sw_err *err;
    int depth;      /* expression and statement nesting */
    int loops;      /* enclosing for loops (within the current macro) */
} parser;

/* A growable list of nodes, copied into the arena when done. */
typedef struct nvec {
    jnode **v;
    const char **names;
    size_t n, cap;
} nvec;

static jtok *cur(parser *p) { return &p->t[p->i]; }
static jtok *look(parser *p)
{
    return p->t[p->i].kind == JT_EOF ? &p->t[p->i] : &p->t[p->i + 1];
}
static void next(parser *p)
{
    if (p->t[p->i].kind != JT_EOF)
        p->i++;
}

static bool is_op(const jtok *t, const char *op)
{
    return t->kind == JT_OP && !strcmp(t->text, op);
}
static bool is_name(const jtok *t, const char *name)
{
    return t->kind == JT_NAME && !strcmp(t->text, name);
}

static const char *tok_desc(const jtok *t)
{
    switch (t->kind) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "end of print statement '}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "end of statement block '%}'";
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    case JT_FLOAT: return "float";
    default: return t->text;
    }
}

static int fail_at(parser *p, const jtok *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(parser *p, const jtok *t, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sw_errf(p->err, code, "line %u, column %u: %s", t->line, t->col, msg);
}

static int expect_op(parser *p, const char *op)
{
    if (!is_op(cur(p), op))
        return fail_at(p, cur(p), SW_EFORMAT, "expected '%s', got %s", op, tok_desc(cur(p)));
    next(p);
    return 0;
}

static int oom(parser *p) { return sw_errf(p->err, SW_ENOMEM, "out of memory"); }

static jnode *new_node(parser *p, int kind, const jtok *at)
{
    jnode *n = arena_alloc(&p->tmpl->mem, sizeof *n);
    if (!n)
        return NULL;
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static int nvec_push(parser *p, nvec *v, jnode *n, const char *name)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        jnode **nv = realloc(v->v, cap * sizeof *nv);
        if (!nv)
            return oom(p);
        v->v = nv;
        const char **nn = realloc(v->names, cap * sizeof *nn);
        if (!nn)
            return oom(p);
        v->names = nn;
        v->cap = cap;
    }
    v->names[v->n] = name;
    v->v[v->n++] = n;
    return 0;
}

static void nvec_free(nvec *v)
{
    free(v->v);
    free(v->names);
    memset(v, 0, sizeof *v);
}

/* Moves v into the arena as *out (and its names into *names if asked). */
static int nvec_finish(parser *p, nvec *v, jnlist *out, const char ***names)
{
    out->n = v->n;
    out->v = NULL;
    int rc = 0;
    if (v->n) {
        out->v = arena_alloc(&p->tmpl->mem, v->n * sizeof *out->v);
        if (!out->v)
            rc = oom(p);
        else
            memcpy(out->v, v->v, v->n * sizeof *out->v);
        if (rc == 0 && names) {
            *names = arena_alloc(&p->tmpl->mem, v->n * sizeof **names);
            if (!*names)
                rc = oom(p);
            else
                memcpy(*names, v->names, v->n * sizeof **names);
        }
    }
    nvec_free(v);
    return rc;
}

/* Registers a string constant with the template (which drops it at free). */
static int add_const(parser *p, jnode *n, const char *s, size_t len)
{
    jinja_tmpl *t = p->tmpl;
    if (t->nconsts == t->capconsts) {
        size_t cap = t->capconsts ? t->capconsts * 2 : 64;
        jv *nv = realloc(t->consts, cap * sizeof *nv);
        if (!nv)
            return oom(p);
        t->consts = nv;
        t->capconsts = cap;
    }
    if (jv_str(s, len, &n->lit) < 0)
        return oom(p);
    n->lit.u.s->refs = -1; /* immortal: shared by concurrent renders */
    t->consts[t->nconsts++] = n->lit;
    return 0;
}

/* ---- expressions -------------------------------------------------------------- */

static int parse_expr(parser *p, bool condexpr, jnode **out);
static int parse_tuple(parser *p, bool simplified, bool condexpr, const char *extra_end,
                       bool explicit_parens, jnode **out);
static int parse_unary(parser *p, bool with_filter, jnode **out);
static int parse_postfix(parser *p, jnode **node);
static int parse_primary(parser *p, jnode **out);

static int enter(parser *p)
{
    if (++p->depth > MAX_NEST)
        return fail_at(p, cur(p), SW_ERANGE, "template nested too deeply (limit %d)", MAX_NEST);
    return 0;
}

/* ( args ) with keyword arguments into n->args, n->kwargs, n->kwnames. */
static int parse_call_args(parser *p, jnode *n)
{
    nvec pos = {0}, kw = {0};
    const jtok *open = cur(p);
    int rc = expect_op(p, "(");
    bool comma = false;
    while (rc == 0 && !is_op(cur(p), ")")) {
        if (comma) {
            if ((rc = expect_op(p, ",")) < 0 || is_op(cur(p), ")"))
                break;
        }
        jnode *e = NULL;
        if (is_op(cur(p), "*") || is_op(cur(p), "**")) {
            rc = fail_at(p, cur(p), SW_EUNSUPPORTED,
                         "'%s' argument unpacking in calls is not supported", cur(p)->text);
        } else if (cur(p)->kind == JT_NAME && is_op(look(p), "=")) {
            const char *key = cur(p)->text;
            next(p);
            next(p);
            if ((rc = parse_expr(p, true, &e)) == 0)
                rc = nvec_push(p, &kw, e, key);
        } else if (kw.n) {
            rc = fail_at(p, open, SW_EFORMAT, "invalid syntax for function call expression "
                                              "(positional argument after keyword argument)");
        } else if ((rc = parse_expr(p, true, &e)) == 0) {
            rc = nvec_push(p, &pos, e, NULL);
        }
        comma = true;
    }
    if (rc == 0)
        rc = expect_op(p, ")");
    if (rc == 0)
        rc = nvec_finish(p, &pos, &n->args, NULL);
    if (rc == 0)
        rc = nvec_finish(p, &kw, &n->kwargs, &n->kwnames);
    nvec_free(&pos);
    nvec_free(&kw);
    return rc;
}

/* A dotted name after '|' or 'is' ("a.b.c"), built in one allocation. */
static int parse_dotted(parser *p, const char **out)
{
    if (cur(p)->kind != JT_NAME)
        return fail_at(p, cur(p), SW_EFORMAT, "expected a name, got %s", tok_desc(cur(p)));
    size_t len = cur(p)->len, parts = 1;
    const jtok *t = cur(p); /* the token stream ends with EOF: t[1], t[2] exist here */
    while (is_op(&t[2 * parts - 1], ".") && t[2 * parts].kind == JT_NAME)
        len += 1 + t[2 * parts++].len;
    if (parts == 1) {
        *out = cur(p)->text;
        next(p);
        return 0;
    }
    char *s = arena_alloc(&p->tmpl->mem, len + 1), *o = s;
    if (!s)
        return oom(p);
    for (size_t k = 0; k < parts; k++) {
        if (k)
            *o++ = '.';
        memcpy(o, cur(p)->text, cur(p)->len);
        o += cur(p)->len;
        next(p);
        if (k + 1 < parts)
            next(p);
    }
    *o = 0;
    *out = s;
    return 0;
}

/* '|' name args, repeatedly; node may be NULL (filter blocks). */
static int parse_filters(parser *p, jnode *node, bool start_inline, jnode **out)
{
    int rc = 0;
    while (rc == 0 && (is_op(cur(p), "|") || start_inline)) {
        if (!start_inline)
            next(p);
        start_inline = false;
        jnode *f = new_node(p, JN_FILTER, cur(p));
        if (!f)
            return oom(p);
        f->a = node;
        if ((rc = parse_dotted(p, &f->name)) == 0 && is_op(cur(p), "("))
            rc = parse_call_args(p, f);
        node = f;
    }
    *out = node;
    return rc;
}

static int parse_test(parser *p, jnode *node, jnode **out)
{
    jnode *t = new_node(p, JN_TEST, cur(p));
    if (!t)
        return oom(p);
    next(p); /* 'is' */
    t->a = node;
    if (is_name(cur(p), "not")) {
        t->flag = true;
        next(p);
    }
    int rc = parse_dotted(p, &t->name);
    if (rc < 0)
        return rc;
    const jtok *c = cur(p);
    if (is_op(c, "(")) {
        rc = parse_call_args(p, t);
    } else if ((c->kind == JT_NAME || c->kind == JT_STRING || c->kind == JT_INT ||
                c->kind == JT_FLOAT || is_op(c, "[") || is_op(c, "{")) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is"))
            return fail_at(p, c, SW_EFORMAT, "you cannot chain multiple tests with is");
        jnode *arg;
        if ((rc = parse_primary(p, &arg)) == 0 && (rc = parse_postfix(p, &arg)) == 0) {
            nvec v = {0};
            if ((rc = nvec_push(p, &v, arg, NULL)) == 0)
                rc = nvec_finish(p, &v, &t->args, NULL);
            nvec_free(&v);
        }
    }
    *out = t;
    return rc;
}

/* One subscript: an expression or a slice [start]:[stop][:[step]]. */
static int parse_subscribed(parser *p, jnode *obj, jnode **out)
{
    jnode *parts[3] = {NULL, NULL, NULL};
    const jtok *at = cur(p);
    int rc = 0;
    if (!is_op(cur(p), ":")) {
        if ((rc = parse_expr(p, true, &parts[0])) < 0)
            return rc;
        if (!is_op(cur(p), ":")) {
            jnode *n = new_node(p, JN_ITEM, at);
            if (!n)
                return oom(p);
            n->a = obj;
            n->b = parts[0];
            *out = n;
            return 0;
        }
    }
    next(p); /* ':' */
    if (!is_op(cur(p), ":") && !is_op(cur(p), "]") && !is_op(cur(p), ","))
        rc = parse_expr(p, true, &parts[1]);
    if (rc == 0 && is_op(cur(p), ":")) {
        next(p);
        if (!is_op(cur(p), "]") && !is_op(cur(p), ","))
            rc = parse_expr(p, true, &parts[2]);
    }
    jnode *n = new_node(p, JN_SLICE, at);
    if (!n)
        return oom(p);
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    *out = n;
    return rc;
}

static int parse_subscript(parser *p, jnode **node)
{
    const jtok *at = cur(p);
    if (is_op(at, ".")) {
        next(p);
        const jtok *a = cur(p);
        jnode *n;
        if (a->kind == JT_NAME) {
            if (!(n = new_node(p, JN_ATTR, at)))
                return oom(p);
            n->a = *node;
            n->name = a->text;
        } else if (a->kind == JT_INT) {
            jnode *k = new_node(p, JN_CONST, a);
            if (!(n = new_node(p, JN_ITEM, at)) || !k)
                return oom(p);
            k->lit = jv_int(a->ival);
            n->a = *node;
            n->b = k;
        } else {
            return fail_at(p, a, SW_EFORMAT, "expected name or number after '.', got %s",
                           tok_desc(a));
        }
        next(p);
        *node = n;
        return 0;
    }
    next(p); /* '[' */
    jnode *n = NULL;
    int rc = parse_subscribed(p, *node, &n);
    if (rc == 0 && is_op(cur(p), ","))
        return fail_at(p, cur(p), SW_EUNSUPPORTED,
                       "subscripts with several values (x[a, b]) are not supported");
    if (rc == 0)
        rc = expect_op(p, "]");
    *node = n;
    return rc;
}

static int parse_postfix(parser *p, jnode **node)
{
    int rc = 0;
    while (rc == 0) {
        if (is_op(cur(p), ".") || is_op(cur(p), "[")) {
            rc = parse_subscript(p, node);
        } else if (is_op(cur(p), "(")) {
            jnode *c = new_node(p, JN_CALL, cur(p));
            if (!c)
                return oom(p);
            c->line = (*node)->line; /* errors point at what is called */
            c->col = (*node)->col;
            c->a = *node;
            rc = parse_call_args(p, c);
            *node = c;
        } else {
            break;
        }
    }
    return rc;
}

static int parse_filter_expr(parser *p, jnode **node)
{
    int rc = 0;
    while (rc == 0) {
        if (is_op(cur(p), "|")) {
            rc = parse_filters(p, *node, false, node);
        } else if (is_name(cur(p), "is")) {
            rc = parse_test(p, *node, node);
        } else if (is_op(cur(p), "(")) {
            jnode *c = new_node(p, JN_CALL, cur(p));
            if (!c)
                return oom(p);
            c->line = (*node)->line; /* errors point at what is called */
            c->col = (*node)->col;
            c->a = *node;
            rc = parse_call_args(p, c);
            *node = c;
        } else {
            break;
        }
    }
    return rc;
}

/* [ ... ] and { k: v, ... } */
static int parse_collection(parser *p, bool dict, jnode **out)
{
    jnode *n = new_node(p, dict ? JN_DICT : JN_LIST, cur(p));
    if (!n)
        return oom(p);
    const char *close = dict ? "}" : "]";
    next(p);
    nvec items = {0};
    int rc = 0;
    while (rc == 0 && !is_op(cur(p), close)) {
        if (items.n && ((rc = expect_op(p, ",")) < 0 || is_op(cur(p), close)))
            break;
        jnode *e;
        if ((rc = parse_expr(p, true, &e)) == 0)
            rc = nvec_push(p, &items, e, NULL);
        if (rc == 0 && dict && (rc = expect_op(p, ":")) == 0 &&
            (rc = parse_expr(p, true, &e)) == 0)
            rc = nvec_push(p, &items, e, NULL);
    }
    if (rc == 0)
        rc = expect_op(p, close);
    if (rc == 0)
        rc = nvec_finish(p, &items, &n->args, NULL);
    nvec_free(&items);
    *out = n;
    return rc;
}

static int parse_primary(parser *p, jnode **out)
{
    const jtok *t = cur(p);
    jnode *n;
    if (t->kind == JT_NAME) {
        static const char *const consts[] = {"true", "false", "none", "True", "False", "None"};
        for (int i = 0; i < 6; i++)
            if (!strcmp(t->text, consts[i])) {
                if (!(n = new_node(p, JN_CONST, t)))
                    return oom(p);
                n->lit = i % 3 == 2 ? jv_none() : jv_bool(i % 3 == 0);
                next(p);
                *out = n;
                return 0;
            }
        if (!(n = new_node(p, JN_NAME, t)))
            return oom(p);
        n->name = t->text;
        next(p);
    } else if (t->kind == JT_STRING) {
        if (!(n = new_node(p, JN_CONST, t)))
            return oom(p);
        jbuf b; /* adjacent literals concatenate */
        jbuf_init(&b, SIZE_MAX / 2);
        while (cur(p)->kind == JT_STRING) {
            jbuf_put(&b, cur(p)->text, cur(p)->len);
            next(p);
        }
        int rc = b.err ? oom(p) : add_const(p, n, b.p ? b.p : "", b.len);
        jbuf_free(&b);
        if (rc < 0)
            return rc;
    } else if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        if (!(n = new_node(p, JN_CONST, t)))
            return oom(p);
        n->lit = t->kind == JT_INT ? jv_int(t->ival) : jv_float(t->fval);
        next(p);
    } else if (is_op(t, "(")) {
        next(p);
        int rc = parse_tuple(p, false, true, NULL, true, &n);
        if (rc == 0)
            rc = expect_op(p, ")");
        if (rc < 0)
            return rc;
    } else if (is_op(t, "[") || is_op(t, "{")) {
        return parse_collection(p, is_op(t, "{"), out);
    } else {
        return fail_at(p, t, SW_EFORMAT, "unexpected %s", tok_desc(t));
    }
    *out = n;
    return 0;
}

static int parse_unary(parser *p, bool with_filter, jnode **out)
{
    int rc = enter(p);
    if (rc < 0)
        return rc;
    const jtok *t = cur(p);
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        if (!(n = new_node(p, is_op(t, "-") ? JN_NEG : JN_POS, t)))
            return oom(p);
        next(p);
        rc = parse_unary(p, false, &n->a);
    } else {
        rc = parse_primary(p, &n);
    }
    if (rc == 0)
        rc = parse_postfix(p, &n);
    if (rc == 0 && with_filter)
        rc = parse_filter_expr(p, &n);
    p->depth--;
    *out = n;
    return rc;
}

static jnode *binop(parser *p, const jtok *at, int op, jnode *a, jnode *b)
{
    jnode *n = new_node(p, JN_BINOP, at);
    if (n) {
        n->op = (uint8_t)op;
        n->a = a;
        n->b = b;
    }
    return n;
}

static int parse_pow(parser *p, jnode **out)
{
    int rc = parse_unary(p, true, out);
    while (rc == 0 && is_op(cur(p), "**")) {
        const jtok *at = cur(p);
        jnode *r;
        next(p);
        if ((rc = parse_unary(p, true, &r)) == 0 && !(*out = binop(p, at, JOP_POW, *out, r)))
            rc = oom(p);
    }
    return rc;
}

static int parse_math2(parser *p, jnode **out)
{
    int rc = parse_pow(p, out);
    for (;;) {
        const jtok *at = cur(p);
        int op = is_op(at, "*") ? JOP_MUL : is_op(at, "/") ? JOP_DIV
               : is_op(at, "//") ? JOP_FLOORDIV : is_op(at, "%") ? JOP_MOD : -1;
        if (rc < 0 || op < 0)
            return rc;
        jnode *r;
        next(p);
        if ((rc = parse_pow(p, &r)) == 0 && !(*out = binop(p, at, op, *out, r)))
            rc = oom(p);
    }
}

static int parse_concat(parser *p, jnode **out)
{
    const jtok *at = cur(p);
    jnode *first;
    int rc = parse_math2(p, &first);
    if (rc < 0 || !is_op(cur(p), "~")) {
        *out = first;
        return rc;
    }
    nvec v = {0};
    rc = nvec_push(p, &v, first, NULL);
    while (rc == 0 && is_op(cur(p), "~")) {
        jnode *e;
        next(p);
        if ((rc = parse_math2(p, &e)) == 0)
            rc = nvec_push(p, &v, e, NULL);
    }
    jnode *n = new_node(p, JN_CONCAT, at);
    if (!n && rc == 0)
        rc = oom(p);
    if (rc == 0)
        rc = nvec_finish(p, &v, &n->args, NULL);
    nvec_free(&v);
    *out = n;
    return rc;
}

static int parse_math1(parser *p, jnode **out)
{
    int rc = parse_concat(p, out);
    for (;;) {
        const jtok *at = cur(p);
        int op = is_op(at, "+") ? JOP_ADD : is_op(at, "-") ? JOP_SUB : -1;
        if (rc < 0 || op < 0)
            return rc;
        jnode *r;
        next(p);
        if ((rc = parse_concat(p, &r)) == 0 && !(*out = binop(p, at, op, *out, r)))
            rc = oom(p);
    }
}

static int compare_op(parser *p)
{
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    static const int codes[] = {JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE};
    for (int i = 0; i < 6; i++)
        if (is_op(cur(p), ops[i])) {
            next(p);
            return codes[i];
        }
    if (is_name(cur(p), "in")) {
        next(p);
        return JOP_IN;
    }
    if (is_name(cur(p), "not") && is_name(look(p), "in")) {
        next(p);
        next(p);
        return JOP_NOTIN;
    }
    return -1;
}

static int parse_compare(parser *p, jnode **out)
{
    const jtok *at = cur(p);
    jnode *first;
    int rc = parse_math1(p, &first), op;
    *out = first;
    if (rc < 0 || (op = compare_op(p)) < 0)
        return rc;
    nvec v = {0};
    uint8_t ops[MAX_NEST];
    size_t nops = 0;
    do {
        jnode *e;
        if (nops == MAX_NEST)
            rc = fail_at(p, cur(p), SW_ERANGE, "comparison chain too long");
        else if ((rc = parse_math1(p, &e)) == 0 && (rc = nvec_push(p, &v, e, NULL)) == 0)
            ops[nops++] = (uint8_t)op;
    } while (rc == 0 && (op = compare_op(p)) >= 0);
    jnode *n = new_node(p, JN_COMPARE, at);
    if (!n && rc == 0)
        rc = oom(p);
    if (rc == 0 && !(n->ops = arena_alloc(&p->tmpl->mem, nops)))
        rc = oom(p);
    if (rc == 0) {
        memcpy(n->ops, ops, nops);
        n->a = first;
        rc = nvec_finish(p, &v, &n->args, NULL);
    }
    nvec_free(&v);
    *out = n;
    return rc;
}

static int parse_not(parser *p, jnode **out)
{
    if (!is_name(cur(p), "not"))
        return parse_compare(p, out);
    jnode *n = new_node(p, JN_NOT, cur(p));
    if (!n)
        return oom(p);
    next(p);
    int rc = enter(p);
    if (rc == 0)
        rc = parse_not(p, &n->a);
    p->depth--;
    *out = n;
    return rc;
}

static int parse_logic(parser *p, bool is_or, jnode **out)
{
    int rc = is_or ? parse_logic(p, false, out) : parse_not(p, out);
    while (rc == 0 && is_name(cur(p), is_or ? "or" : "and")) {
        jnode *n = new_node(p, is_or ? JN_OR : JN_AND, cur(p));
        if (!n)
            return oom(p);
        next(p);
        n->a = *out;
        rc = is_or ? parse_logic(p, false, &n->b) : parse_not(p, &n->b);
        *out = n;
    }
    return rc;
}

static int parse_expr(parser *p, bool condexpr, jnode **out)
{
    int rc = enter(p);
    if (rc == 0)
        rc = parse_logic(p, true, out);
    while (rc == 0 && condexpr && is_name(cur(p), "if")) {
        jnode *n = new_node(p, JN_COND, cur(p));
        if (!n)
            return oom(p);
        next(p);
        n->b = *out;
        if ((rc = parse_logic(p, true, &n->a)) == 0 && is_name(cur(p), "else")) {
            next(p);
            rc = parse_expr(p, true, &n->c);
        }
        *out = n;
    }
    p->depth--;
    return rc;
}

static bool tuple_end(parser *p, const char *extra_end)
{
    const jtok *t = cur(p);
    return t->kind == JT_VAR_END || t->kind == JT_BLOCK_END || t->kind == JT_EOF ||
           is_op(t, ")") || (extra_end && is_name(t, extra_end));
}

static int parse_tuple(parser *p, bool simplified, bool condexpr, const char *extra_end,
                       bool explicit_parens, jnode **out)
{
    const jtok *at = cur(p);
    nvec v = {0};
    bool is_tuple = false;
    int rc = 0;
    for (;;) {
        if (v.n && (rc = expect_op(p, ",")) < 0)
            break;
        if (tuple_end(p, extra_end))
            break;
        jnode *e;
        rc = simplified ? parse_primary(p, &e) : parse_expr(p, condexpr, &e);
        if (rc == 0)
            rc = nvec_push(p, &v, e, NULL);
        if (rc < 0 || !is_op(cur(p), ","))
            break;
        is_tuple = true;
    }
    if (rc == 0 && !is_tuple) {
        if (v.n) {
            *out = v.v[0];
            nvec_free(&v);
            return 0;
        }
        if (!explicit_parens) {
            nvec_free(&v);
            return fail_at(p, cur(p), SW_EFORMAT, "expected an expression, got %s",
                           tok_desc(cur(p)));
        }
    }
    jnode *n = rc == 0 ? new_node(p, JN_TUPLE, at) : NULL;
    if (!n && rc == 0)
        rc = oom(p);
    if (rc == 0)
        rc = nvec_finish(p, &v, &n->args, NULL);
    nvec_free(&v);
    *out = n;
    return rc;
}

/* ---- statements ----------------------------------------------------------------- */

static int parse_body(parser *p, const char *const *ends, const jnode *open, jnlist *out,
                      const char **which);

static int expect_block_end(parser *p)
{
    if (cur(p)->kind != JT_BLOCK_END)
        return fail_at(p, cur(p), SW_EFORMAT, "expected end of statement block, got %s",
                       tok_desc(cur(p)));
    next(p);
    return 0;
}

static bool assignable(const jnode *n, bool allow_tuple)
{
    if (n->kind == JN_NAME)
        return true;
    if (n->kind != JN_TUPLE || !allow_tuple)
        return false;
    for (size_t i = 0; i < n->args.n; i++)
        if (!assignable(n->args.v[i], false))
            return false;
    return true;
}

/* A name, tuple of names, or (with_ns) namespace.attribute to assign to. */
static int parse_target(parser *p, const char *extra_end, bool with_ns, jnode **out)
{
    const jtok *at = cur(p);
    int rc;
    if (with_ns && at->kind == JT_NAME && is_op(look(p), ".")) {
        jnode *ns = new_node(p, JN_NAME, at), *n = new_node(p, JN_ATTR, at);
        if (!ns || !n)
            return oom(p);
        ns->name = at->text;
        next(p);
        next(p);
        if (cur(p)->kind != JT_NAME)
            return fail_at(p, cur(p), SW_EFORMAT, "expected an attribute name, got %s",
                           tok_desc(cur(p)));
        n->a = ns;
        n->name = cur(p)->text;
        next(p);
        *out = n;
        return 0;
    }
    if ((rc = parse_tuple(p, true, false, extra_end, false, out)) < 0)
        return rc;
    if (!assignable(*out, true) || (*out)->kind == JN_CONST)
        return fail_at(p, at, SW_EFORMAT, "can't assign to this expression");
    return 0;
}

static int parse_if(parser *p, jnode *n)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const end[] = {"endif", NULL};
    const char *which;
    const jnode *open = n;
    for (;;) { /* each elif is an if in the previous one's else */
        int rc = parse_tuple(p, false, false, NULL, false, &n->a);
        if (rc == 0)
            rc = expect_block_end(p);
        if (rc == 0)
            rc = parse_body(p, ends, open, &n->body, &which);
        if (rc < 0)
            return rc;
        if (strcmp(which, "elif"))
            break;
        jnode *e = new_node(p, JN_IF, cur(p));
        n->orelse.v = arena_alloc(&p->tmpl->mem, sizeof *n->orelse.v);
        if (!e || !n->orelse.v)
            return oom(p);
        n->orelse.v[0] = e;
        n->orelse.n = 1;
        n = e;
    }
    int rc = 0;
    if (!strcmp(which, "else") && (rc = expect_block_end(p)) == 0)
        rc = parse_body(p, end, open, &n->orelse, &which);
    return rc == 0 ? expect_block_end(p) : rc;
}

static int parse_for(parser *p, jnode *n)
{
    static const char *const ends[] = {"endfor", "else", NULL};
    const char *which;
    int rc = parse_target(p, "in", false, &n->a);
    if (rc == 0 && !is_name(cur(p), "in"))
        rc = fail_at(p, cur(p), SW_EFORMAT, "expected 'in', got %s", tok_desc(cur(p)));
    if (rc < 0)
        return rc;
    next(p);
    if ((rc = parse_tuple(p, false, false, "recursive", false, &n->b)) < 0)
        return rc;
    if (is_name(cur(p), "if")) {
        next(p);
        if ((rc = parse_expr(p, true, &n->c)) < 0)
            return rc;
    }
    if (is_name(cur(p), "recursive"))
        return fail_at(p, cur(p), SW_EUNSUPPORTED, "recursive for loops are not supported");
    if ((rc = expect_block_end(p)) < 0)
        return rc;
    p->loops++;
    rc = parse_body(p, ends, n, &n->body, &which);
    p->loops--;
    if (rc == 0 && !strcmp(which, "else")) {
        static const char *const end[] = {"endfor", NULL};
        if ((rc = expect_block_end(p)) == 0)
            rc = parse_body(p, end, n, &n->orelse, &which);
    }
    return rc == 0 ? expect_block_end(p) : rc;
}

static int parse_set(parser *p, jnode *n)
{
    int rc = parse_target(p, NULL, true, &n->a);
    if (rc < 0)
        return rc;
    if (is_op(cur(p), "=")) {
        next(p);
        if ((rc = parse_tuple(p, false, true, NULL, false, &n->b)) == 0)
            rc = expect_block_end(p);
        return rc;
    }
    static const char *const ends[] = {"endset", NULL};
    const char *which;
    n->kind = JN_SETBLOCK;
    if (n->a->kind == JN_TUPLE)
        return fail_at(p, cur(p), SW_EFORMAT, "a block set needs a single name");
    if ((rc = parse_filters(p, NULL, false, &n->c)) == 0 && (rc = expect_block_end(p)) == 0 &&
        (rc = parse_body(p, ends, n, &n->body, &which)) == 0)
        rc = expect_block_end(p);
    return rc;
}

static int parse_macro(parser *p, jnode *n)
{
    if (cur(p)->kind != JT_NAME)
        return fail_at(p, cur(p), SW_EFORMAT, "expected a macro name, got %s", tok_desc(cur(p)));
    n->name = cur(p)->text;
    next(p);
    nvec params = {0};
    bool defaults = false;
    int rc = expect_op(p, "(");
    while (rc == 0 && !is_op(cur(p), ")")) {
        if (params.n && (rc = expect_op(p, ",")) < 0)
            break;
        const jtok *t = cur(p);
        if (t->kind != JT_NAME) {
            rc = fail_at(p, t, SW_EFORMAT, "expected a parameter name, got %s", tok_desc(t));
            break;
        }
        jnode *param = new_node(p, JN_NAME, t);
        if (!param) {
            rc = oom(p);
            break;
        }
        param->name = t->text;
        next(p);
        if (is_op(cur(p), "=")) {
            next(p);
            rc = parse_expr(p, true, &param->a);
            defaults = true;
        } else if (defaults) {
            rc = fail_at(p, t, SW_EFORMAT, "non-default argument follows default argument");
        }
        if (rc == 0)
            rc = nvec_push(p, &params, param, NULL);
    }
    if (rc == 0)
        rc = expect_op(p, ")");
    if (rc == 0)
        rc = nvec_finish(p, &params, &n->args, NULL);
    nvec_free(&params);
    if (rc == 0)
        rc = expect_block_end(p);
    if (rc < 0)
        return rc;
    static const char *const ends[] = {"endmacro", NULL};
    const char *which;
    int loops = p->loops;
    p->loops = 0;
    rc = parse_body(p, ends, n, &n->body, &which);
    p->loops = loops;
    return rc == 0 ? expect_block_end(p) : rc;
}

static int parse_statement(parser *p, jnode **out)
{
    const jtok *t = cur(p);
    if (t->kind != JT_NAME)
        return fail_at(p, t, SW_EFORMAT, "expected a tag name, got %s", tok_desc(t));
    static const struct { const char *name; int kind; } tags[] = {
        {"if", JN_IF}, {"for", JN_FOR}, {"set", JN_SET}, {"macro", JN_MACRO},
        {"filter", JN_FILTERBLOCK}, {"break", JN_BREAK}, {"continue", JN_CONTINUE},
        {"generation", JN_SCOPE},
    };
    static const char *const unsupported[] = {
        "call", "with", "block", "extends", "include", "import", "from", "autoescape",
        "do", "trans", "pluralize", "debug",
    };
    int kind = -1;
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (!strcmp(t->text, tags[i].name))
            kind = tags[i].kind;
    if (kind < 0) {
        for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
            if (!strcmp(t->text, unsupported[i]))
                return fail_at(p, t, SW_EUNSUPPORTED, "the '{%% %s %%}' tag is not supported",
                               t->text);
        return fail_at(p, t, SW_EUNSUPPORTED, "unknown tag '%s'", t->text);
    }
    jnode *n = new_node(p, kind, t);
    if (!n)
        return oom(p);
    next(p);
    *out = n;
    int rc = enter(p);
    if (rc < 0)
        return rc;
    static const char *const gen_end[] = {"endgeneration", NULL};
    static const char *const filter_end[] = {"endfilter", NULL};
    const char *which;
    switch (kind) {
    case JN_IF: rc = parse_if(p, n); break;
    case JN_FOR: rc = parse_for(p, n); break;
    case JN_SET: rc = parse_set(p, n); break;
    case JN_MACRO: rc = parse_macro(p, n); break;
    case JN_BREAK: case JN_CONTINUE:
        if (!p->loops)
            rc = fail_at(p, t, SW_EFORMAT, "'%s' outside of a loop", t->text);
        else
            rc = expect_block_end(p);
        break;
    case JN_SCOPE:
        if ((rc = expect_block_end(p)) == 0 &&
            (rc = parse_body(p, gen_end, n, &n->body, &which)) == 0)
            rc = expect_block_end(p);
        break;
    case JN_FILTERBLOCK:
        if ((rc = parse_filters(p, NULL, true, &n->a)) == 0 && (rc = expect_block_end(p)) == 0 &&
            (rc = parse_body(p, filter_end, n, &n->body, &which)) == 0)
            rc = expect_block_end(p);
        break;
    }
    p->depth--;
    return rc;
}

/* The name of the tag a node was opened with, and the one that closes it. */
static const char *tag_name(const jnode *n)
{
    switch (n->kind) {
    case JN_IF: return "if";
    case JN_FOR: return "for";
    case JN_SETBLOCK: return "set";
    case JN_MACRO: return "macro";
    case JN_FILTERBLOCK: return "filter";
    case JN_SCOPE: return "generation";
    default: return "?";
    }
}

static int unclosed(parser *p, const jnode *open)
{
    return sw_errf(p->err, SW_EFORMAT, "line %u, column %u: the '{%% %s %%}' here is never "
                   "closed (no '{%% end%s %%}' before the end of the template)", open->line,
                   open->col, tag_name(open), tag_name(open));
}

/* Statements up to a {% name %} with name in ends, for the tag open (or to
 * the end of the template when ends is NULL). Leaves the tokens after that
 * name unread. */
static int parse_body(parser *p, const char *const *ends, const jnode *open, jnlist *out,
                      const char **which)
{
    nvec v = {0};
    int rc = 0;
    for (;;) {
        const jtok *t = cur(p);
        jnode *n = NULL;
        if (t->kind == JT_EOF) {
            if (ends)
                rc = unclosed(p, open);
            break;
        }
        if (t->kind == JT_TEXT) {
            if (!(n = new_node(p, JN_TEXT, t)))
                rc = oom(p);
            else
                rc = add_const(p, n, t->text, t->len);
            next(p);
        } else if (t->kind == JT_VAR_BEGIN) {
            if (!(n = new_node(p, JN_PRINT, t)))
                rc = oom(p);
            next(p);
            if (rc == 0)
                rc = parse_tuple(p, false, true, NULL, false, &n->a);
            if (rc == 0 && cur(p)->kind != JT_VAR_END)
                rc = fail_at(p, cur(p), SW_EFORMAT, "expected end of print statement, got %s",
                             tok_desc(cur(p)));
            next(p);
        } else if (t->kind == JT_BLOCK_BEGIN) {
            next(p);
            const jtok *name = cur(p);
            bool is_end = false;
            for (size_t i = 0; ends && ends[i]; i++)
                if (is_name(name, ends[i])) {
                    *which = ends[i];
                    is_end = true;
                }
            if (is_end) {
                next(p);
                break;
            }
            if (name->kind == JT_NAME && (!strncmp(name->text, "end", 3) ||
                                          !strcmp(name->text, "else") ||
                                          !strcmp(name->text, "elif"))) {
                if (open)
                    rc = fail_at(p, name, SW_EFORMAT, "unexpected '{%% %s %%}': the innermost "
                                 "open tag is the '{%% %s %%}' of line %u", name->text,
                                 tag_name(open), open->line);
                else
                    rc = fail_at(p, name, SW_EFORMAT, "unexpected '{%% %s %%}'", name->text);
            } else {
                rc = parse_statement(p, &n);
            }
        } else {
            rc = fail_at(p, t, SW_EFORMAT, "unexpected %s", tok_desc(t));
        }
        if (rc == 0)
            rc = nvec_push(p, &v, n, NULL);
        if (rc < 0)
            break;
    }
    if (rc == 0)
        rc = nvec_finish(p, &v, out, NULL);
    nvec_free(&v);
    return rc;
}

/* ---- names that must exist ---------------------------------------------------- */

static int check_node(parser *p, const jnode *n, bool soft, int depth);

static int check_list(parser *p, const jnlist *l, bool soft, int depth)
{
    for (size_t i = 0; i < l->n; i++) {
        int rc = check_node(p, l->v[i], soft, depth);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Unknown filters and tests outside if statements and expressions fail now.
 * Also bounds the tree's depth, which evaluation recurses over. */
static int check_node(parser *p, const jnode *n, bool soft, int depth)
{
    if (!n)
        return 0;
    if (depth > MAX_TREE_DEPTH)
        return sw_errf(p->err, SW_ERANGE, "line %u, column %u: template nested too deeply "
                       "(limit %d)", n->line, n->col, MAX_TREE_DEPTH);
    if (!soft && n->kind == JN_FILTER && !jinja_filter_exists(n->name) &&
        !jinja_filter_unsupported(n->name))
        return sw_errf(p->err, SW_EFORMAT, "line %u, column %u: no filter named '%s'",
                       n->line, n->col, n->name);
    if (!soft && n->kind == JN_TEST && !jinja_test_exists(n->name))
        return sw_errf(p->err, SW_EFORMAT, "line %u, column %u: no test named '%s'",
                       n->line, n->col, n->name);
    bool inner = soft, kids = soft;
    switch (n->kind) {
    case JN_IF: case JN_COND: inner = kids = true; break;
    case JN_FOR: inner = false; break; /* b (the iterable) keeps soft */
    case JN_MACRO: case JN_SETBLOCK: case JN_FILTERBLOCK: case JN_SCOPE:
        inner = kids = false;
        break;
    }
    int rc;
    depth++;
    if ((rc = check_node(p, n->a, n->kind == JN_FOR ? inner : kids, depth)) < 0 ||
        (rc = check_node(p, n->b, kids, depth)) < 0 ||
        (rc = check_node(p, n->c, inner, depth)) < 0 ||
        (rc = check_node(p, n->d, kids, depth)) < 0 ||
        (rc = check_list(p, &n->args, kids, depth)) < 0 ||
        (rc = check_list(p, &n->kwargs, kids, depth)) < 0 ||
        (rc = check_list(p, &n->body, inner, depth)) < 0 ||
        (rc = check_list(p, &n->orelse, inner, depth)) < 0)
        return rc;
    return 0;
}

/* ---- entry points ----------------------------------------------------------------- */

int jinja_parse(const char *src, size_t len, jinja_tmpl **out, sw_err *err)
{
    *out = NULL;
    jinja_tmpl *t = calloc(1, sizeof *t);
    if (!t)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    arena_init(&t->mem);
    jtoks toks;
    int rc = jinja_lex(src, len, &t->mem, &toks, err);
    if (rc == 0) {
        parser p = {.t = toks.v, .tmpl = t, .err = err};
        const char *which = NULL;
        rc = parse_body(&p, NULL, NULL, &t->body, &which);
        if (rc == 0)
            rc = check_list(&p, &t->body, false, 0);
    }
    free(toks.v);
    if (rc < 0) {
        jinja_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void jinja_free(jinja_tmpl *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nconsts; i++)
        free(t->consts[i].u.s);
    free(t->consts);
    arena_free(&t->mem);
    free(t);
}
