/*
 * request.c — what both APIs share (messages, tools, stops) and OpenAI's
 * two generating requests (request.h). Ollama's are request_ollama.c.
 */
#include "server/request.h"

#include <stdlib.h>
#include <string.h>

void req_free(gen_request *r)
{
    free(r->model);
    json_decref(r->messages);
    json_decref(r->tools);
    free(r->tool_name);
    free(r->prompt);
    free(r->system);
    free(r->context);
    for (int i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    free(r->session);
    memset(r, 0, sizeof *r);
}

static int oom(srv_perr *e) { return perr_set(e, 500, "", "out of memory"); }

/* --- messages -------------------------------------------------------------------- */

/* OpenAI content: a string, null, or an array of parts of which only text
 * parts are understood. Joined with newlines, as llama.cpp does. */
static int content_text(const json_t *c, int idx, strbuf *out, srv_perr *e)
{
    if (!c || json_is_null(c))
        return 0;
    if (json_is_string(c)) {
        sb_append(out, json_string_value(c), json_string_length(c));
        return 0;
    }
    if (!json_is_array(c))
        return perr_set(e, 400, "messages", "messages[%d].content must be a string or an array "
                        "of content parts", idx);
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !type)
            return perr_set(e, 400, "messages", "messages[%d].content[%zu] must be an object "
                            "with a \"type\"", idx, i);
        if (strcmp(type, "text"))
            return perr_set(e, 400, "messages", "messages[%d].content[%zu]: content of type "
                            "'%s' is not supported (text only)", idx, i, type);
        if (!json_is_string(text))
            return perr_set(e, 400, "messages", "messages[%d].content[%zu].text must be a "
                            "string", idx, i);
        if (out->len)
            sb_puts(out, "\n");
        sb_append(out, json_string_value(text), json_string_length(text));
    }
    return 0;
}

/* A tool call of an earlier assistant turn, as templates expect it. */
static json_t *norm_tool_call(const json_t *tc, int idx, size_t k, srv_perr *e)
{
    const json_t *fn = json_object_get(tc, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    if (!json_is_object(tc) || !json_is_object(fn) || !name) {
        perr_set(e, 400, "messages", "messages[%d].tool_calls[%zu] needs a function with a "
                 "name", idx, k);
        return NULL;
    }
    const json_t *args = json_object_get(fn, "arguments");
    json_t *a = NULL;
    if (json_is_string(args)) { /* OpenAI sends arguments as JSON text */
        a = json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
        if (!a)
            a = json_incref((json_t *)args);
    } else {
        a = args ? json_deep_copy(args) : json_object();
    }
    const char *id = json_string_value(json_object_get(tc, "id"));
    json_t *out = json_pack("{s:s, s:{s:s, s:o}}", "type", "function", "function", "name", name,
                            "arguments", a);
    if (out && id)
        json_object_set_new(out, "id", json_string(id));
    if (!out)
        oom(e);
    return out;
}

static int norm_role(const char *role, bool ollama, int idx, const char **out, srv_perr *e)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    if (!role)
        return perr_set(e, 400, "messages", "messages[%d].role must be a string", idx);
    if (!ollama && !strcmp(role, "developer")) {
        *out = "system";
        return 0;
    }
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(role, roles[i])) {
            *out = roles[i];
            return 0;
        }
    return perr_set(e, 400, "messages", "messages[%d].role '%s' is not one of system, user, "
                    "assistant, tool%s", idx, role, ollama ? "" : ", developer");
}

static int norm_message(const json_t *m, int idx, bool ollama, json_t *arr, srv_perr *e)
{
    if (!json_is_object(m))
        return perr_set(e, 400, "messages", "messages[%d] must be an object", idx);
    const char *role = NULL;
    if (norm_role(json_string_value(json_object_get(m, "role")), ollama, idx, &role, e) < 0)
        return -1;
    const json_t *imgs = json_object_get(m, "images");
    if (ollama && json_is_array(imgs) && json_array_size(imgs) > 0)
        return perr_set(e, 400, "messages", "messages[%d]: images are not supported", idx);
    strbuf text = {0};
    if (content_text(json_object_get(m, "content"), idx, &text, e) < 0) {
        sb_free(&text);
        return -1;
    }
    json_t *out = json_pack("{s:s, s:s#}", "role", role, "content", text.s ? text.s : "",
                            text.len);
    sb_free(&text);
    if (!out || json_array_append_new(arr, out))
        return oom(e);
    const json_t *tcs = json_object_get(m, "tool_calls");
    if (tcs && !json_is_null(tcs)) {
        if (!json_is_array(tcs))
            return perr_set(e, 400, "messages", "messages[%d].tool_calls must be an array", idx);
        json_t *calls = json_array(), *tc;
        size_t k;
        json_object_set_new(out, "tool_calls", calls);
        json_array_foreach(tcs, k, tc) {
            json_t *n = norm_tool_call(tc, idx, k, e);
            if (!n || json_array_append_new(calls, n))
                return -1;
        }
    }
    static const char *const copy[] = {"tool_call_id", "name"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(m, copy[i]);
        if (json_is_string(v))
            json_object_set(out, copy[i], (json_t *)v);
    }
    const json_t *tn = json_object_get(m, "tool_name");
    if (ollama && json_is_string(tn))
        json_object_set(out, "name", (json_t *)tn);
    return 0;
}

int req_parse_messages(const json_t *arr, bool ollama, json_t **out, srv_perr *e)
{
    *out = NULL;
    json_t *res = json_array();
    if (!res)
        return oom(e);
    size_t i;
    json_t *m;
    json_array_foreach(arr, i, m) {
        if (i > 100000 || norm_message(m, (int)i, ollama, res, e) < 0) {
            if (i > 100000)
                perr_set(e, 400, "messages", "too many messages");
            json_decref(res);
            return -1;
        }
    }
    *out = res;
    return 0;
}

/* --- tools, stops ------------------------------------------------------------------ */

int req_parse_tools(const json_t *arr, json_t **out, srv_perr *e)
{
    *out = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        const json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!json_is_object(t) || (type && strcmp(type, "function")) || !json_is_object(fn))
            return perr_set(e, 400, "tools", "tools[%zu] must be {\"type\": \"function\", "
                            "\"function\": {...}}", i);
        if (!name || !*name || strchr(name, 0x01))
            return perr_set(e, 400, "tools", "tools[%zu].function.name must be a non-empty "
                            "string", i);
        const json_t *params = json_object_get(fn, "parameters");
        if (params && !json_is_object(params) && !json_is_null(params))
            return perr_set(e, 400, "tools", "tools[%zu].function.parameters must be an object",
                            i);
    }
    if (json_array_size(arr) == 0)
        return 0;
    if (!(*out = json_deep_copy(arr)))
        return oom(e);
    return 0;
}

/* The function object of tool `name`, or NULL. */
static const json_t *find_tool(const gen_request *r, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(r->tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        const char *n = json_string_value(json_object_get(fn, "name"));
        if (n && !strcmp(n, name))
            return fn;
    }
    return NULL;
}

bool req_has_tool(const gen_request *r, const char *name) { return find_tool(r, name) != NULL; }

const json_t *req_tool_params(const gen_request *r, const char *name)
{
    const json_t *fn = find_tool(r, name);
    return fn ? json_object_get(fn, "parameters") : NULL;
}

static int add_stop(gen_request *r, const char *param, const char *s, srv_perr *e)
{
    if (!*s)
        return 0;
    if (r->n_stops >= GEN_MAX_STOPS)
        return perr_set(e, 400, param, "at most %d stop sequences are supported", GEN_MAX_STOPS);
    if (!(r->stops[r->n_stops] = strdup(s)))
        return oom(e);
    r->n_stops++;
    return 0;
}

int req_parse_stops(const json_t *v, const char *param, gen_request *r, srv_perr *e)
{
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v))
        return add_stop(r, param, json_string_value(v), e);
    if (!json_is_array(v))
        return perr_set(e, 400, param, "'%s' must be a string or an array of strings", param);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s))
            return perr_set(e, 400, param, "'%s' must be a string or an array of strings",
                            param);
        if (add_stop(r, param, json_string_value(s), e) < 0)
            return -1;
    }
    return 0;
}

/* --- OpenAI ------------------------------------------------------------------------ */

/* Sampling fields, OpenAI's and llama.cpp's extensions. */
static int openai_sampling(const json_t *j, gen_request *r, srv_perr *e)
{
    sw_sampling *s = &r->sampling;
    double d;
    long long x;
    int rc;
#define NUM(key, lo, hi, dst)                                    \
    if ((rc = jget_num(j, key, lo, hi, &d, e)) < 0) return -1;   \
    if (rc) dst = (float)d;
    NUM("temperature", 0, 2, s->temperature);
    NUM("top_p", 0, 1, s->top_p);
    NUM("min_p", 0, 1, s->min_p);
    NUM("presence_penalty", -2, 2, s->presence_penalty);
    NUM("frequency_penalty", -2, 2, s->frequency_penalty);
    NUM("repeat_penalty", 0.0001, 100, s->repeat_penalty);
#undef NUM
    if ((rc = jget_int(j, "top_k", 0, INT32_MAX, &x, e)) < 0)
        return -1;
    if (rc)
        s->top_k = (int)x;
    if ((rc = jget_int(j, "repeat_last_n", -1, INT32_MAX, &x, e)) < 0)
        return -1;
    if (rc)
        s->repeat_last_n = (int)x;
    if ((rc = jget_int(j, "seed", INT64_MIN, INT64_MAX, &x, e)) < 0)
        return -1;
    if (rc)
        s->seed = (uint64_t)x; /* -1: random, as llama.cpp reads it */
    return req_parse_stops(json_object_get(j, "stop"), "stop", r, e);
}

/* Fields both OpenAI requests share. */
static int openai_common(const json_t *j, gen_request *r, srv_perr *e)
{
    const char *s = NULL;
    long long x;
    int rc;
    r->sampling = sw_sampling_default();
    r->sampling.repeat_last_n = -1; /* OpenAI's penalties count every generated token */
    if (jget_str(j, "model", &s, e) < 0 || !(r->model = strdup(s ? s : "")))
        return r->model ? -1 : oom(e);
    if (openai_sampling(j, r, e) < 0)
        return -1;
    if ((rc = jget_int(j, "n", 1, 1, &x, e)) < 0)
        return perr_set(e, 400, "n", "only n = 1 is supported");
    if ((rc = jget_int(j, "best_of", 1, 1, &x, e)) < 0)
        return perr_set(e, 400, "best_of", "only best_of = 1 is supported");
    json_t *opts = NULL;
    if (jget_bool(j, "stream", &r->stream, e) < 0 || jget_obj(j, "stream_options", &opts, e) < 0)
        return -1;
    if (opts && jget_bool(opts, "include_usage", &r->include_usage, e) < 0)
        return -1;
    s = NULL;
    if (jget_str(j, "user", &s, e) < 0)
        return -1;
    if (s && *s && !(r->session = strdup(s)))
        return oom(e);
    const json_t *lp = json_object_get(j, "logprobs");
    if (lp && !json_is_null(lp) && !json_is_false(lp))
        return perr_set(e, 400, "logprobs", "logprobs are not supported");
    return 0;
}

/* max_tokens (or max_completion_tokens): -1 means no limit (llama.cpp). */
static int openai_max_tokens(const json_t *j, gen_request *r, srv_perr *e)
{
    static const char *const keys[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < 2; i++) {
        long long x;
        int rc = jget_int(j, keys[i], -1, INT32_MAX, &x, e);
        if (rc < 0)
            return -1;
        if (rc && x == 0)
            return perr_set(e, 400, keys[i], "'%s' must be at least 1", keys[i]);
        if (rc) {
            r->max_tokens = x < 0 ? 0 : (int)x;
            return 0;
        }
    }
    return 0;
}

static int openai_response_format(const json_t *j, gen_request *r, srv_perr *e)
{
    json_t *rf = NULL;
    int rc = jget_obj(j, "response_format", &rf, e);
    if (rc <= 0)
        return rc;
    const char *type = NULL;
    if (jget_str(rf, "type", &type, e) < 0)
        return -1;
    if (!type || !strcmp(type, "text"))
        return 0;
    if (!strcmp(type, "json_object")) {
        r->json_mode = true;
        return 0;
    }
    if (!strcmp(type, "json_schema"))
        return perr_set(e, 400, "response_format", "response_format json_schema is not "
                        "supported yet; use {\"type\": \"json_object\"}");
    return perr_set(e, 400, "response_format", "unknown response_format type '%s'", type);
}

static int openai_tools(const json_t *j, gen_request *r, srv_perr *e)
{
    json_t *tools = NULL;
    if (jget_arr(j, "tools", &tools, e) < 0 || (tools && req_parse_tools(tools, &r->tools, e) < 0))
        return -1;
    const json_t *tc = json_object_get(j, "tool_choice");
    if (!tc || json_is_null(tc))
        return 0;
    const char *s = json_string_value(tc);
    if (s && !strcmp(s, "none"))
        r->tool_choice = TOOL_CHOICE_NONE;
    else if (s && !strcmp(s, "auto"))
        r->tool_choice = TOOL_CHOICE_AUTO;
    else if (s && !strcmp(s, "required"))
        r->tool_choice = TOOL_CHOICE_REQUIRED;
    else if (json_is_object(tc)) {
        const char *name =
            json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
        if (!name)
            return perr_set(e, 400, "tool_choice", "tool_choice must name a function");
        if (!req_has_tool(r, name))
            return perr_set(e, 400, "tool_choice", "tool_choice names '%s', which is not "
                            "among the tools", name);
        r->tool_choice = TOOL_CHOICE_NAMED;
        if (!(r->tool_name = strdup(name)))
            return oom(e);
    } else {
        return perr_set(e, 400, "tool_choice", "tool_choice must be \"none\", \"auto\", "
                        "\"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (r->tool_choice >= TOOL_CHOICE_REQUIRED && !r->tools)
        return perr_set(e, 400, "tool_choice", "tool_choice requires tools");
    return 0;
}

int req_parse_openai_chat(const char *body, size_t len, gen_request *r, srv_perr *e)
{
    memset(r, 0, sizeof *r);
    r->api = GEN_OPENAI_CHAT;
    json_t *j = json_parse_body(body, len, e), *msgs = NULL;
    if (!j)
        return -1;
    int rc = -1;
    if (openai_common(j, r, e) < 0 || openai_max_tokens(j, r, e) < 0 ||
        openai_response_format(j, r, e) < 0 || openai_tools(j, r, e) < 0)
        goto done;
    if (jget_arr(j, "messages", &msgs, e) < 0)
        goto done;
    if (!msgs || json_array_size(msgs) == 0) {
        perr_set(e, 400, "messages", "'messages' must be a non-empty array");
        goto done;
    }
    rc = req_parse_messages(msgs, false, &r->messages, e);
done:
    json_decref(j);
    if (rc < 0)
        req_free(r);
    return rc;
}

/* A prompt: a string, an array holding one string, or an array of token
 * ids. */
static int openai_prompt(const json_t *p, gen_request *r, srv_perr *e)
{
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_string(p))
        return (r->prompt = strdup(json_string_value(p))) ? 0 : oom(e);
    if (!json_is_array(p) || json_array_size(p) == 0)
        return perr_set(e, 400, "prompt", "'prompt' must be a string (or an array of token ids)");
    size_t n = json_array_size(p), i;
    json_t *v;
    if (n > (1u << 24))
        return perr_set(e, 400, "prompt", "the prompt is too long");
    if (!(r->context = malloc(sizeof(int32_t) * n)))
        return oom(e);
    json_array_foreach(p, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return perr_set(e, 400, "prompt", "only one prompt per request is supported: a "
                            "string or an array of token ids");
        r->context[i] = (int32_t)json_integer_value(v);
    }
    r->n_context = (int)n;
    return 0;
}

int req_parse_openai_completion(const char *body, size_t len, gen_request *r, srv_perr *e)
{
    memset(r, 0, sizeof *r);
    r->api = GEN_OPENAI_COMPLETION;
    r->max_tokens = 16; /* OpenAI's default for completions */
    json_t *j = json_parse_body(body, len, e);
    if (!j)
        return -1;
    int rc = -1;
    bool echo = false;
    const char *suffix = NULL;
    if (openai_common(j, r, e) < 0 || openai_max_tokens(j, r, e) < 0 ||
        jget_bool(j, "echo", &echo, e) < 0 || jget_str(j, "suffix", &suffix, e) < 0)
        goto done;
    if (echo) {
        perr_set(e, 400, "echo", "echo is not supported");
        goto done;
    }
    if (suffix && *suffix) {
        perr_set(e, 400, "suffix", "suffix (fill-in-the-middle) is not supported");
        goto done;
    }
    const json_t *p = json_object_get(j, "prompt");
    if (!p || json_is_null(p)) {
        perr_set(e, 400, "prompt", "'prompt' is required");
        goto done;
    }
    rc = openai_prompt(p, r, e);
done:
    json_decref(j);
    if (rc < 0)
        req_free(r);
    return rc;
}
