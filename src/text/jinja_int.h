/*
 * jinja_int.h — what the template interpreter's files share.
 *
 *   jinja_lex.c      template text -> tokens (delimiters, whitespace control,
 *                    trim_blocks/lstrip_blocks, string literal escapes)
 *   jinja_parse.c    tokens -> syntax tree (jnode), owned by the template
 *   jinja_value.c    the value type jv: Python's objects (None, bool, int,
 *                    float, str, list/tuple, dict, ...), their equality,
 *                    ordering, truth, str(), repr() and json.dumps()
 *   jinja_eval.c     statements and expressions, scopes, calls, limits
 *   jinja_ops.c      attribute/item access, slicing, operators, comparison
 *   jinja_filters.c  filters and tests
 *   jinja_methods.c  str/dict/list methods, global functions
 *   jinja_format.c   str.format() and printf-style "%" formatting
 *
 * Values. A jv is a small struct passed by value; strings, lists, dicts,
 * namespaces, functions, loop objects and undefineds with a message point
 * to a reference-counted heap object (each starts with its int count).
 * Ownership is explicit: a function that returns a jv (through an out
 * parameter) gives the caller one reference, which the caller drops with
 * jv_drop(); containers take ownership of what is stored in them. A
 * template's string constants are immortal (count -1), so that renders on
 * several threads can share them. Only namespaces are mutable, so reference
 * cycles can only run through namespaces (and macro scopes); the evaluator
 * clears them all when a render ends.
 *
 * Strings are immutable UTF-8 (always valid: templates and JSON are checked
 * on entry) with their code-point count cached, since Python indexes, slices
 * and measures strings in code points.
 *
 * Errors. Evaluation functions return 0 or a negative SW_E* code, having
 * filled the render's sw_err through jx_fail(), which prefixes the line and
 * column of the node being evaluated.
 */
#ifndef SW_JINJA_INT_H
#define SW_JINJA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "text/jinja.h"
#include "util/arena.h"
#include "util/err.h"

/* ---- values -------------------------------------------------------------- */

typedef enum jv_kind {
    JV_UNDEF, /* jinja2.Undefined; u.s says what was missing (or NULL) */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,  /* list, or tuple when u.l->tuple */
    JV_DICT,
    JV_NS,    /* namespace(): a dict whose attributes can be assigned */
    JV_FUNC,  /* builtin function, bound method or macro */
    JV_LOOP,  /* the `loop` variable of a for loop */
} jv_kind;

enum {
    JVF_SAFE = 1,   /* JV_STR: markupsafe.Markup (from |safe) */
    JVF_UNSAFE = 2, /* JV_UNDEF: an attribute the sandbox refuses */
};

typedef struct jstr jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    uint8_t kind;
    uint8_t flags;
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        jfunc *fn;
        jloop *loop;
    } u;
} jv;

struct jstr {
    int refs;
    size_t len; /* bytes, not counting the NUL */
    size_t ncp; /* code points */
    char p[];
};

struct jlist {
    int refs;
    bool tuple;
    bool gen; /* the lazy result of map/select/unique/reverse: a generator */
    bool range; /* range(start, stop, step), materialized in v */
    int64_t start, stop, step;
    size_t n, cap;
    jv *v;
};

struct jdict {
    int refs;
    size_t n, cap;
    jv *k, *v; /* insertion order */
};

struct jnode;
struct jframe;

typedef enum jfunc_kind { JF_BUILTIN, JF_METHOD, JF_MACRO } jfunc_kind;

struct jfunc {
    int refs;
    uint8_t kind;              /* jfunc_kind */
    int id;                    /* JF_BUILTIN: JB_*; JF_METHOD: JM_* */
    const char *name;          /* for messages and repr() */
    jv self;                   /* JF_METHOD: the receiver */
    const struct jnode *macro; /* JF_MACRO: its definition */
    struct jframe *scope;      /* JF_MACRO: the scope it was defined in */
};

struct jloop {
    int refs;
    int64_t index0, length;
    jlist *items; /* what is iterated, for previtem/nextitem */
    jv last_changed;
    bool has_changed;
};

static inline jv jv_undef(void) { return (jv){.kind = JV_UNDEF}; }
static inline jv jv_none(void) { return (jv){.kind = JV_NONE}; }
static inline jv jv_bool(bool b) { return (jv){.kind = JV_BOOL, .u.b = b}; }
static inline jv jv_int(int64_t i) { return (jv){.kind = JV_INT, .u.i = i}; }
static inline jv jv_float(double f) { return (jv){.kind = JV_FLOAT, .u.f = f}; }
static inline bool jv_is_num(jv v)
{
    return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL;
}
/* An int, or a bool as Python treats it (True == 1). */
static inline bool jv_is_intlike(jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }
static inline int64_t jv_intval(jv v) { return v.kind == JV_BOOL ? v.u.b : v.u.i; }
static inline double jv_numval(jv v)
{
    return v.kind == JV_FLOAT ? v.u.f : (double)jv_intval(v);
}

jv jv_ref(jv v);
void jv_drop(jv v);
/* Drops *v and sets it to undefined (for cleanup paths). */
void jv_clear(jv *v);

/* Strings. NULL when out of memory. */
jstr *jstr_new(const char *p, size_t len);
/* A new string value; returns SW_ENOMEM (leaving *out undefined) on failure. */
int jv_str(const char *p, size_t len, jv *out);
int jv_cstr(const char *s, jv *out);
static inline jv jv_from_jstr(jstr *s) { return (jv){.kind = JV_STR, .u.s = s}; }
/* A named undefined (name copied); never fails (the name is dropped instead). */
jv jv_undef_named(const char *name, size_t len);

/* Lists and dicts. Push/set take ownership of their arguments, also when
 * they fail. */
jlist *jlist_new(size_t cap);
int jv_list(size_t cap, bool tuple, jv *out);
int jlist_push(jlist *l, jv v);
jdict *jdict_new(void);
int jv_dict(jv *out);
int jdict_set(jdict *d, jv key, jv val);
/* The value stored under key (borrowed), or NULL. */
jv *jdict_get(const jdict *d, jv key);
jv *jdict_get_cstr(const jdict *d, const char *key);
/* Removes every entry (breaks reference cycles through namespaces). */
void jdict_clear(jdict *d);

/* Python semantics. Depth-limited recursion reports SW_ERANGE. */
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
/* Whether v can be a dict key (lists and dicts cannot). */
bool jv_hashable(jv v);
/* Ordering for <, sorting, min/max: *res < 0, 0, > 0; SW_ETYPE with a
 * message in msg (when not NULL) for unorderable types. */
int jv_compare(jv a, jv b, int *res, char *msg, size_t msgsz);
const char *jv_type_name(jv v); /* Python's: "str", "int", "NoneType", ... */
/* Length in Python's sense, or -1 when the value has none. */
int64_t jv_length(jv v);

/* ---- text buffers -------------------------------------------------------- */

/* A growable byte buffer with a size limit and a sticky error (SQLite's
 * StrAccum): appends after a failure do nothing, and the owner checks err
 * once at the end. */
typedef struct jbuf {
    char *p;
    size_t len, cap, max;
    int err; /* 0, SW_ENOMEM or SW_ERANGE (max exceeded) */
} jbuf;

void jbuf_init(jbuf *b, size_t max);
void jbuf_free(jbuf *b);
void jbuf_put(jbuf *b, const char *p, size_t n);
void jbuf_puts(jbuf *b, const char *s);
void jbuf_putc(jbuf *b, char c);
void jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Moves the contents into a new string value (the buffer is emptied). */
int jbuf_to_jv(jbuf *b, jv *out);

/* Python str(v) and repr(v), appended to b. */
void jv_write_str(jbuf *b, jv v);
void jv_write_repr(jbuf *b, jv v);
/* Python's float.__repr__ ("1.0", "1e+16", "0.1", "inf"). */
void py_float_repr(double f, char out[32]);
/* Python str(v) as a new string value (strings are returned as is). */
int jv_to_str(jv v, jv *out);

typedef struct jjson_opts {
    bool ensure_ascii;
    bool sort_keys;
    const char *indent; /* NULL: compact one line; else the indent unit */
    const char *item_sep, *key_sep;
} jjson_opts;

/* json.dumps(v) appended to b; SW_ETYPE with msg for unserializable values. */
int jv_write_json(jbuf *b, jv v, const jjson_opts *o, char *msg, size_t msgsz);
/* A jansson value as a jv (objects keep their order). */
int jv_from_json(const json_t *j, jv *out);

/* ---- Unicode helpers ----------------------------------------------------- */

/* Decodes the code point at s[*i] (valid UTF-8) and advances *i. */
uint32_t u8_next(const char *s, size_t *i);
/* Byte offset of code point index cp in s (cp <= ncp). */
size_t u8_offset(const jstr *s, size_t cp);
/* str.isspace() for one code point. */
bool py_isspace(uint32_t c);
size_t u8_count(const char *p, size_t n);

/* ---- syntax tree --------------------------------------------------------- */

typedef enum jn_kind {
    /* expressions */
    JN_CONST,   /* lit */
    JN_NAME,    /* name */
    JN_ATTR,    /* a.name */
    JN_ITEM,    /* a[b] */
    JN_SLICE,   /* a[b:c:d], each of b, c, d may be NULL */
    JN_CALL,    /* a(args, kw) */
    JN_FILTER,  /* a | name(args, kw); a is NULL inside filter blocks */
    JN_TEST,    /* a is [not] name(args, kw); flag = negated */
    JN_NEG,     /* -a */
    JN_POS,     /* +a */
    JN_NOT,     /* not a */
    JN_AND,     /* a and b */
    JN_OR,      /* a or b */
    JN_BINOP,   /* a op b */
    JN_CONCAT,  /* args joined with ~ */
    JN_COMPARE, /* a ops[0] args[0] ops[1] args[1] ... */
    JN_COND,    /* b if a else c (c may be NULL) */
    JN_LIST,    /* [args] */
    JN_TUPLE,   /* (args) */
    JN_DICT,    /* {args[0]: args[1], ...} */
    /* statements */
    JN_TEXT,     /* literal output: lit */
    JN_PRINT,    /* {{ a }} */
    JN_IF,       /* if a: body else orelse */
    JN_FOR,      /* for a in b [if c]: body else orelse */
    JN_SET,      /* a = b (a: NAME, ATTR on a namespace, TUPLE of NAMEs) */
    JN_SETBLOCK, /* a = body, through the filter chain c (may be NULL) */
    JN_MACRO,    /* macro name(args: NAME nodes, their a = default) body */
    JN_FILTERBLOCK, /* body through filter chain a */
    JN_BREAK,
    JN_CONTINUE,
    JN_SCOPE, /* {% generation %}: just its body */
} jn_kind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
} jop;

typedef struct jnode jnode;

typedef struct jnlist {
    jnode **v;
    size_t n;
} jnlist;

struct jnode {
    uint8_t kind; /* jn_kind */
    uint8_t op;   /* jop for JN_BINOP */
    bool flag;
    uint32_t line, col;
    const char *name;
    jv lit;
    jnode *a, *b, *c, *d;
    jnlist args;          /* positional arguments, items, operands */
    jnlist kwargs;        /* keyword argument values ... */
    const char **kwnames; /* ... and their names */
    uint8_t *ops;         /* JN_COMPARE: one jop per args entry */
    jnlist body, orelse;
};

struct jinja_tmpl {
    arena mem;  /* every node, name and list */
    jnlist body;
    jv *consts; /* the (immortal) string constants the nodes hold */
    size_t nconsts, capconsts;
};

/* ---- lexer (jinja_lex.c) ------------------------------------------------- */

typedef enum jtok_kind {
    JT_EOF,
    JT_TEXT,        /* template data (already whitespace-controlled) */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING, /* decoded value in text/len */
    JT_INT,
    JT_FLOAT,
    JT_OP, /* text/len is the operator */
} jtok_kind;

typedef struct jtok {
    uint8_t kind;
    uint32_t line, col;
    const char *text; /* arena copy, NUL-terminated */
    size_t len;
    int64_t ival;
    double fval;
} jtok;

typedef struct jtoks {
    jtok *v;
    size_t n, cap;
} jtoks;

/* Tokenizes src; tokens and their texts live in mem. toks->v is malloc'd. */
int jinja_lex(const char *src, size_t len, arena *mem, jtoks *toks, sw_err *err);

/* ---- evaluation (jinja_eval.c) ------------------------------------------- */

typedef struct jframe jframe;

/* One render. */
typedef struct jx {
    const jinja_tmpl *t;
    sw_err *err;
    jbuf *out;        /* where output goes now */
    jframe *frame;    /* innermost scope */
    const jnode *at;  /* node being evaluated, for error positions */
    uint64_t steps, max_steps;
    int depth, max_depth;
    size_t max_output;
    int ctl;          /* pending {% break %} / {% continue %} */
    int nest;         /* nested eval/exec calls now */
    jv block_value;   /* the operand of a filter chain in a block (borrowed) */
    int64_t now;
    jlist *namespaces; /* every namespace made, cleared at the end */
} jx;

/* Fails the render at the node being evaluated: "line L, column C: msg". */
int jx_fail(jx *x, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Charges n steps of work; fails when the budget is spent. */
int jx_charge(jx *x, uint64_t n);
/* Charges for a value just made, in proportion to its size. */
int jx_charge_value(jx *x, jv v);
/* Reports a failed jbuf (out of memory or too large). */
int jx_buf_fail(jx *x, const jbuf *b);
int jx_oom(jx *x);
/* The error for using undefined value v (its message says what was missing). */
int jx_undef_fail(jx *x, jv v);
/* Calls a callable value with evaluated arguments. */
int jx_call_value(jx *x, jv fn, jv *args, size_t nargs, const char **kwnames, jv *kwargs,
                  size_t nkw, jv *out);
/* getattr/getitem as jinja2's sandbox does them. */
int jx_getattr(jx *x, jv obj, const char *name, size_t len, jv *out);
int jx_getitem(jx *x, jv obj, jv key, jv *out);
/* obj[start:stop:step] (an undefined bound is None). */
int jx_slice(jx *x, jv obj, jv start, jv stop, jv step, jv *out);
/* Materializes an iterable (list, tuple, dict keys, string characters,
 * undefined: empty) as a list value. */
int jx_iterate(jx *x, jv v, jv *out);
int jx_binop(jx *x, int op, jv a, jv b, jv *out);
int jx_contains(jx *x, jv container, jv item, bool *res);
/* Comparison operator op (JOP_EQ .. JOP_NOTIN) applied to a and b. */
int jx_compare(jx *x, int op, jv a, jv b, bool *res);
/* An undefined value whose use fails with the given message. */
jv jx_undef_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Arguments as filters, tests, methods and globals receive them. */
typedef struct jargs {
    jv *pos;
    size_t npos;
    const char **kwnames;
    jv *kw;
    size_t nkw;
} jargs;

/* Binds args to parameter names by Python's rules (positional first, then
 * keywords; no duplicates, no unknown names, the first nrequired must be
 * given). slots get borrowed values; unbound ones are undefined. Returns
 * the number bound or an error; what names the function in messages. */
int jx_bind(jx *x, const char *what, const jargs *a, const char *const *params, size_t nparams,
            size_t nrequired, jv *slots);

/* ---- filters, tests, methods, globals ------------------------------------ */

/* String operations shared by filters and methods; each returns a new
 * string value or an error code (out of memory). */
int jstr_strip(jv s, jv chars, bool left, bool right, jv *out); /* chars: str or none */
int jstr_case(jv s, int how, jv *out);                          /* JCASE_* */
enum { JCASE_UPPER, JCASE_LOWER, JCASE_TITLE, JCASE_CAPITALIZE, JCASE_SWAP };
int jstr_replace(jx *x, jv s, jv old, jv new_, int64_t count, jv *out);
/* Python's printf-style fmt % args (a tuple, a dict, or one value), and
 * fmt.format(*args, **kwargs) (jinja_format.c). */
int jx_percent_format(jx *x, jv fmt, jv args, jv *out);
int jx_str_format(jx *x, jv fmt, const jargs *a, jv *out);
/* 1 for an uppercase or titlecase letter, 2 for lowercase, 0 for uncased. */
int jinja_char_case(uint32_t c);
/* str.splitlines(): a list of strings. */
int jstr_splitlines(jx *x, jv s, bool keepends, jv *out);

/* Applies filter name to v. SW_ENOTFOUND (without a message) when there
 * is no such filter. */
int jinja_filter(jx *x, const char *name, jv v, const jargs *a, jv *out);
bool jinja_filter_exists(const char *name);
int jinja_test(jx *x, const char *name, jv v, const jargs *a, bool *res);
bool jinja_test_exists(const char *name);
/* Whether name is a jinja2 filter spillway does not implement. */
bool jinja_filter_unsupported(const char *name);

/* Method lookup on a value: its method id, or -1. unsafe is set for the
 * methods the sandbox refuses (list.append, dict.update, ...). */
int jinja_method_find(jv self, const char *name, size_t len, bool *unsafe);
int jinja_method_call(jx *x, int id, jv self, const jargs *a, jv *out);
/* Global functions (range, namespace, dict, raise_exception, strftime_now). */
int jinja_global_find(const char *name);
const char *jinja_global_name(int id);
int jinja_global_call(jx *x, int id, const jargs *a, jv *out);
int jv_func_new(int kind, int id, const char *name, jv self, jv *out);

#endif
