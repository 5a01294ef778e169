/* toolcall.c — tool calls in model output (toolcall.h). */
#include "server/toolcall.h"

#include <stdlib.h>
#include <string.h>

static const char *const markers[] = {"<tool_call>", "<|python_tag|>", "[TOOL_CALLS]",
                                      "<function="};
#define N_MARKERS (sizeof markers / sizeof markers[0])

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* --- parsing ----------------------------------------------------------------------- */

static bool tool_known(const json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n && !strcmp(n, name))
            return true;
    }
    return false;
}

/* Appends one call {name, arguments} to calls; false if obj is not one. */
static bool add_call(json_t *calls, const json_t *obj, const json_t *tools, bool need_known)
{
    const char *name = json_string_value(json_object_get(obj, "name"));
    const json_t *args = json_object_get(obj, "arguments");
    if (!args)
        args = json_object_get(obj, "parameters");
    if (!json_is_object(obj) || !name || !*name || (need_known && !tool_known(tools, name)))
        return false;
    json_t *a;
    if (json_is_string(args)) /* arguments written as a JSON string */
        a = json_loads(json_string_value(args), 0, NULL);
    else
        a = args && json_is_object(args) ? json_deep_copy(args) : args ? NULL : json_object();
    if (!a)
        return false;
    char id[40];
    random_id("call_", id, sizeof id);
    json_t *c = json_pack("{s:s, s:s, s:{s:s, s:o}}", "id", id, "type", "function", "function",
                          "name", name, "arguments", a);
    return c && json_array_append_new(calls, c) == 0;
}

/* Parses one JSON value at the start of text (whitespace first allowed);
 * *used gets the bytes it took. */
static json_t *json_at(const char *text, size_t len, size_t *used)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    *used = v ? (size_t)je.position : 0;
    return v;
}

/* A value that is one call or an array of calls. */
static bool add_calls(json_t *calls, const json_t *v, const json_t *tools, bool need_known)
{
    if (!json_is_array(v))
        return add_call(calls, v, tools, need_known);
    size_t i;
    json_t *c;
    bool any = false;
    json_array_foreach(v, i, c) {
        if (!add_call(calls, c, tools, need_known))
            return false;
        any = true;
    }
    return any;
}

/* <tool_call>{...}</tool_call>, any number; the closing tag may be missing
 * at the very end. Returns the offset of the first tag, or -1. */
static long parse_hermes(const char *text, size_t len, const json_t *tools, json_t *calls)
{
    const char *open = "<tool_call>", *close = "</tool_call>";
    const char *p = memmem(text, len, open, strlen(open)), *end = text + len;
    long first = p ? (long)(p - text) : -1;
    while (p) {
        p += strlen(open);
        size_t used;
        json_t *v = json_at(p, (size_t)(end - p), &used);
        bool ok = v && add_calls(calls, v, tools, false);
        json_decref(v);
        if (!ok)
            return -1;
        p += used;
        while (p < end && is_ws(*p))
            p++;
        if ((size_t)(end - p) >= strlen(close) && !memcmp(p, close, strlen(close)))
            p += strlen(close);
        while (p < end && is_ws(*p))
            p++;
        if (p == end)
            return first;
        if ((size_t)(end - p) < strlen(open) || memcmp(p, open, strlen(open)))
            return -1; /* text after the calls: not a clean call */
    }
    return -1;
}

/* <function=name>{...}</function>, any number. */
static long parse_function_tag(const char *text, size_t len, const json_t *tools, json_t *calls)
{
    const char *p = memmem(text, len, "<function=", 10), *end = text + len;
    long first = p ? (long)(p - text) : -1;
    while (p && p < end) {
        p += 10;
        const char *gt = memchr(p, '>', (size_t)(end - p));
        if (!gt || gt == p || gt - p > 256)
            return -1;
        char name[260];
        memcpy(name, p, (size_t)(gt - p));
        name[gt - p] = 0;
        size_t used;
        json_t *args = json_at(gt + 1, (size_t)(end - gt - 1), &used);
        json_t *obj = args ? json_pack("{s:s, s:O}", "name", name, "arguments", args) : NULL;
        bool ok = obj && add_call(calls, obj, tools, false);
        json_decref(obj);
        json_decref(args);
        if (!ok)
            return -1;
        p = gt + 1 + used;
        if ((size_t)(end - p) >= 11 && !memcmp(p, "</function>", 11))
            p += 11;
        while (p < end && is_ws(*p))
            p++;
        if (p < end && ((size_t)(end - p) < 10 || memcmp(p, "<function=", 10)))
            return -1;
    }
    return first;
}

/* Bare JSON (optionally after <|python_tag|> or [TOOL_CALLS]): calls
 * separated by whitespace or ';'. */
static long parse_bare(const char *text, size_t len, const json_t *tools, json_t *calls)
{
    size_t i = 0;
    while (i < len && is_ws(text[i]))
        i++;
    long first = (long)i;
    bool tagged = false;
    for (size_t m = 1; m <= 2; m++)
        if (len - i >= strlen(markers[m]) && !memcmp(text + i, markers[m], strlen(markers[m]))) {
            i += strlen(markers[m]);
            tagged = true;
        }
    bool any = false;
    while (i < len) {
        size_t used;
        json_t *v = json_at(text + i, len - i, &used);
        bool ok = v && add_calls(calls, v, tools, !tagged);
        json_decref(v);
        if (!ok)
            return -1;
        any = true;
        i += used;
        while (i < len && (is_ws(text[i]) || text[i] == ';'))
            i++;
    }
    return any ? first : -1;
}

json_t *toolcall_parse(const char *text, size_t len, const json_t *tools, strbuf *content)
{
    long (*const parsers[])(const char *, size_t, const json_t *, json_t *) = {
        parse_hermes, parse_function_tag, parse_bare};
    for (size_t k = 0; k < sizeof parsers / sizeof parsers[0]; k++) {
        json_t *calls = json_array();
        long at = calls ? parsers[k](text, len, tools, calls) : -1;
        if (at >= 0 && json_array_size(calls) > 0) {
            if (content) { /* the text before the calls, without trailing blanks */
                size_t n = (size_t)at;
                while (n > 0 && is_ws(text[n - 1]))
                    n--;
                sb_append(content, text, n);
            }
            return calls;
        }
        json_decref(calls);
    }
    if (content)
        sb_append(content, text, len);
    return NULL;
}

/* --- the streaming filter -------------------------------------------------------- */

void tcf_init(toolcall_filter *f, const json_t *tools)
{
    memset(f, 0, sizeof *f);
    f->tools = tools;
}

void tcf_free(toolcall_filter *f) { sb_free(&f->held); }

/* Does text[len] start with a marker (2), or is it a proper prefix of one (1)? */
static int marker_match(const char *text, size_t len)
{
    int best = 0;
    for (size_t m = 0; m < N_MARKERS; m++) {
        size_t ml = strlen(markers[m]);
        if (len >= ml && !memcmp(text, markers[m], ml))
            return 2;
        if (len < ml && !memcmp(text, markers[m], len))
            best = 1;
    }
    return best;
}

/* Releases held[0, n) as content, less its trailing whitespace: that is
 * released with what follows it, or dropped if a call follows. */
static void release(toolcall_filter *f, size_t n, strbuf *out)
{
    while (n > 0 && is_ws(f->held.s[n - 1]))
        n--;
    sb_append(out, f->held.s, n);
    memmove(f->held.s, f->held.s + n, f->held.len - n + 1);
    f->held.len -= n;
}

/* Before any content: hold whitespace, and an opening that may be a call. */
static bool feed_start(toolcall_filter *f)
{
    size_t i = 0;
    while (i < f->held.len && is_ws(f->held.s[i]))
        i++;
    if (i == f->held.len)
        return true; /* only whitespace so far */
    char c = f->held.s[i];
    int mm = marker_match(f->held.s + i, f->held.len - i);
    if (c == '{' || c == '[' || mm == 2) {
        f->capturing = true;
        return true;
    }
    if (mm == 1)
        return true;
    f->seen_text = true;
    return false;
}

void tcf_feed(toolcall_filter *f, const char *text, size_t len, strbuf *out)
{
    sb_append(&f->held, text, len);
    if (f->capturing || !f->held.len || (!f->seen_text && feed_start(f)))
        return;
    /* A marker anywhere: release what precedes it and hold the rest. */
    for (size_t i = 0; i < f->held.len; i++) {
        if (f->held.s[i] != '<' && f->held.s[i] != '[')
            continue;
        int mm = marker_match(f->held.s + i, f->held.len - i);
        if (mm == 2)
            f->capturing = true;
        if (mm) {
            release(f, i, out);
            return;
        }
    }
    release(f, f->held.len, out);
}

json_t *tcf_finish(toolcall_filter *f, strbuf *out)
{
    json_t *calls = NULL;
    if (f->capturing)
        calls = toolcall_parse(f->held.s, f->held.len, f->tools, out);
    else /* text, whitespace, or a fragment of a tag: all content */
        sb_append(out, f->held.s, f->held.len);
    sb_reset(&f->held);
    return calls;
}

/* --- forcing a call ---------------------------------------------------------------- */

/* The object's place in a forced call: "{}" for tools that take no
 * arguments, else any JSON object. */
static const char *args_slot(const json_t *fn)
{
    const json_t *params = json_object_get(fn, "parameters");
    const json_t *props = json_object_get(params, "properties");
    if (!json_is_object(params) || (json_object_size(params) <= 1 && !props) ||
        (json_is_object(props) && json_object_size(props) == 0 &&
         !json_object_get(params, "additionalProperties")))
        return "{}";
    return SW_GRAMMAR_OBJECT;
}

static char *forced_call(sw_tool_style style, const char *name_json, const char *args)
{
    strbuf b = {0};
    switch (style) {
    case SW_TOOLS_LLAMA3:
        sb_printf(&b, "{\"name\": %s, \"parameters\": %s}", name_json, args);
        break;
    case SW_TOOLS_MISTRAL:
        sb_printf(&b, "[TOOL_CALLS][{\"name\": %s, \"arguments\": %s}]", name_json, args);
        break;
    default:
        sb_printf(&b, "<tool_call>\n{\"name\": %s, \"arguments\": %s}\n</tool_call>", name_json,
                  args);
        break;
    }
    if (b.oom) {
        sb_free(&b);
        return NULL;
    }
    return b.s;
}

void toolcall_free_grammar(char **alts, int n)
{
    for (int i = 0; alts && i < n; i++)
        free(alts[i]);
    free(alts);
}

int toolcall_grammar(sw_tool_style style, const json_t *tools, const char *only, char ***alts,
                     int *n)
{
    *alts = NULL;
    *n = 0;
    size_t cnt = json_array_size(tools), i;
    char **out = calloc(cnt ? cnt : 1, sizeof *out);
    if (!out)
        return SW_ENOMEM;
    json_t *t;
    int k = 0;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name) || (only && strcmp(json_string_value(name), only)))
            continue;
        char *nj = json_dumps(name, JSON_ENCODE_ANY);
        out[k] = nj ? forced_call(style, nj, args_slot(fn)) : NULL;
        free(nj);
        if (!out[k]) {
            toolcall_free_grammar(out, k);
            return SW_ENOMEM;
        }
        k++;
    }
    *alts = out;
    *n = k;
    return 0;
}
