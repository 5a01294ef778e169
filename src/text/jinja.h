/*
 * jinja.h — the chat-template interpreter: the subset of Jinja that real
 * chat templates use, rendered exactly as Hugging Face transformers renders
 * them (Python's jinja2 in an ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks and the loop-controls extension).
 *
 * A template is compiled once and rendered many times:
 *
 *   jinja_tmpl *t;
 *   if (jinja_parse(src, len, &t, err) < 0) ...        // "line 3, column 7: ..."
 *   char *text; size_t n;
 *   if (jinja_render(t, vars, NULL, &text, &n, err) < 0) ...
 *   ...; free(text); jinja_free(t);
 *
 * vars is a JSON object whose members become the template's variables
 * (messages, tools, add_generation_prompt, bos_token, ...); chat.h builds it
 * for a conversation. A compiled template is immutable: renders on several
 * threads at once are safe.
 *
 * What is supported: {% if/elif/else %}, {% for %} (tuple targets, an `if`
 * filter, `else`, loop.*), {% set %} (names, namespace attributes, tuples,
 * block set with filters), {% macro %} with defaults and keyword arguments,
 * {% filter %}, {% break %}/{% continue %}, {% raw %}, transformers'
 * {% generation %} (renders its body), comments and whitespace control.
 * Expressions have Python's semantics (ints vs floats, None/True/False,
 * slicing, `in`, `~`, dict order, str/repr formatting, markupsafe's `safe`).
 * The usual tests, filters, string/dict methods, namespace(), range(),
 * dict(), raise_exception() and strftime_now() exist.
 *
 * What is not: template inheritance and inclusion ({% extends %},
 * {% include %}, {% import %}, {% block %}), {% call %}, {% with %},
 * recursive loops, *args and **kwargs in calls, the filters groupby, pprint,
 * random, slice, striptags, truncate, urlencode, urlize, wordwrap,
 * xmlattr and filesizeformat, and the globals joiner, cycler and lipsum.
 * Using one is an error naming the feature and its line and column (for a
 * filter or global, when it is reached) — never a different rendering.
 * Like the sandbox, templates cannot mutate lists or dicts (list.append is
 * refused); namespaces are the one mutable thing. Integers are 64-bit
 * (overflow is an error, where Python would grow them).
 *
 * Rendering is bounded: the work done (steps), macro nesting, value nesting
 * and output size have limits (jinja_opts), so a hostile template fails
 * with an error instead of hanging or exhausting memory.
 */
#ifndef SW_JINJA_H
#define SW_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

typedef struct jinja_tmpl jinja_tmpl;

/* Render options; a zero field takes its default. */
typedef struct jinja_opts {
    size_t max_output;  /* bytes of output and of any one string (64 MiB) */
    uint64_t max_steps; /* statements, expressions and loop iterations (200M) */
    int max_depth;      /* nested macro calls (100) */
    int64_t now;        /* strftime_now's clock: Unix seconds read as UTC;
                           0 = the current local time */
} jinja_opts;

/* Compiles src (len bytes of UTF-8; need not be NUL-terminated). */
int jinja_parse(const char *src, size_t len, jinja_tmpl **out, sw_err *err);
void jinja_free(jinja_tmpl *t);

/* Renders with vars (a JSON object, or NULL for none) into a malloc'd,
 * NUL-terminated string *out of *out_len bytes (out_len may be NULL). */
int jinja_render(const jinja_tmpl *t, const json_t *vars, const jinja_opts *opts,
                 char **out, size_t *out_len, sw_err *err);

#endif
