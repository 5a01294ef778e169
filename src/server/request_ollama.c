/*
 * request_ollama.c — Ollama's /api/chat and /api/generate requests
 * (request.h). Defaults are Ollama's: stream true, temperature 0.8, top-k 40,
 * top-p 0.9, min-p 0, repeat penalty 1.1 over the last 64 tokens (prompt
 * included), no token limit.
 */
#include "server/request.h"

#include <stdlib.h>
#include <string.h>

static int oom(srv_perr *e) { return perr_set(e, 500, "", "out of memory"); }

static void ollama_defaults(gen_request *r)
{
    r->sampling = sw_sampling_default();
    r->sampling.top_p = 0.9f;
    r->sampling.min_p = 0.0f;
    r->sampling.repeat_penalty = 1.1f;
    r->stream = true;
}

/* options{...}: the sampling and length settings Ollama documents. Keys it
 * has that do not apply here (num_gpu, num_thread, mirostat, ...) are
 * accepted and ignored, as Ollama ignores what a runner lacks. */
static int ollama_options(const json_t *o, gen_request *r, srv_perr *e)
{
    sw_sampling *s = &r->sampling;
    double d;
    long long x;
    int rc;
#define NUM(key, lo, hi, dst)                                    \
    if ((rc = jget_num(o, key, lo, hi, &d, e)) < 0) return -1;   \
    if (rc) dst = (float)d;
#define INT(key, lo, hi, dst)                                       \
    if ((rc = jget_int(o, key, lo, hi, &x, e)) < 0) return -1;      \
    if (rc) dst = (int)x;
    NUM("temperature", 0, 100, s->temperature);
    NUM("top_p", 0, 1, s->top_p);
    NUM("min_p", 0, 1, s->min_p);
    NUM("repeat_penalty", 0.0001, 100, s->repeat_penalty);
    NUM("presence_penalty", -100, 100, s->presence_penalty);
    NUM("frequency_penalty", -100, 100, s->frequency_penalty);
    INT("top_k", 0, INT32_MAX, s->top_k);
    INT("repeat_last_n", -1, INT32_MAX, s->repeat_last_n);
    INT("num_predict", -2, INT32_MAX, r->max_tokens);
    INT("num_ctx", 1, INT32_MAX, r->n_ctx);
#undef NUM
#undef INT
    if ((rc = jget_int(o, "seed", INT64_MIN, INT64_MAX, &x, e)) < 0)
        return -1;
    if (rc)
        s->seed = x < 0 ? SW_SEED_RANDOM : (uint64_t)x;
    if (r->max_tokens < 0)
        r->max_tokens = 0; /* -1 forever, -2 until the context is full: the same here */
    return req_parse_stops(json_object_get(o, "stop"), "stop", r, e);
}

/* format: "json", "" or absent; a JSON schema is refused, not half-honoured. */
static int ollama_format(const json_t *j, gen_request *r, srv_perr *e)
{
    const json_t *f = json_object_get(j, "format");
    if (!f || json_is_null(f))
        return 0;
    if (json_is_string(f)) {
        const char *s = json_string_value(f);
        if (!strcmp(s, "json"))
            r->json_mode = true;
        else if (*s)
            return perr_set(e, 400, "format", "format must be \"json\" (or a JSON schema)");
        return 0;
    }
    if (json_is_object(f))
        return perr_set(e, 400, "format", "JSON schemas in 'format' are not supported yet; "
                        "use \"json\"");
    return perr_set(e, 400, "format", "format must be \"json\"");
}

/* What both Ollama requests share. */
static int ollama_common(const json_t *j, gen_request *r, srv_perr *e)
{
    ollama_defaults(r);
    const char *model = NULL;
    json_t *opts = NULL;
    if (jget_str(j, "model", &model, e) < 0)
        return -1;
    if (!(r->model = strdup(model ? model : "")))
        return oom(e);
    if (jget_bool(j, "stream", &r->stream, e) < 0 || jget_obj(j, "options", &opts, e) < 0 ||
        (opts && ollama_options(opts, r, e) < 0) || ollama_format(j, r, e) < 0)
        return -1;
    const json_t *think = json_object_get(j, "think");
    if (json_is_true(think) || (json_is_string(think) && json_string_length(think)))
        return perr_set(e, 400, "think", "thinking mode is not supported by this server");
    return 0;
}

int req_parse_ollama_chat(const char *body, size_t len, gen_request *r, srv_perr *e)
{
    memset(r, 0, sizeof *r);
    r->api = GEN_OLLAMA_CHAT;
    json_t *j = json_parse_body(body, len, e), *msgs = NULL, *tools = NULL;
    if (!j)
        return -1;
    int rc = -1;
    if (ollama_common(j, r, e) < 0 || jget_arr(j, "messages", &msgs, e) < 0 ||
        jget_arr(j, "tools", &tools, e) < 0 || (tools && req_parse_tools(tools, &r->tools, e) < 0))
        goto done;
    if (!msgs || json_array_size(msgs) == 0) {
        r->load_only = true; /* Ollama loads the model and answers done */
        rc = 0;
        goto done;
    }
    rc = req_parse_messages(msgs, true, &r->messages, e);
done:
    json_decref(j);
    if (rc < 0)
        req_free(r);
    return rc;
}

static int ollama_context(const json_t *j, gen_request *r, srv_perr *e)
{
    json_t *ctx = NULL;
    int rc = jget_arr(j, "context", &ctx, e);
    if (rc <= 0)
        return rc;
    size_t n = json_array_size(ctx), i;
    if (n == 0)
        return 0;
    if (n > (1u << 24))
        return perr_set(e, 400, "context", "'context' is too long");
    if (!(r->context = malloc(sizeof(int32_t) * n)))
        return oom(e);
    json_t *v;
    json_array_foreach(ctx, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return perr_set(e, 400, "context", "'context' must be an array of token ids");
        r->context[i] = (int32_t)json_integer_value(v);
    }
    r->n_context = (int)n;
    return 0;
}

/* Fields of /api/generate this server cannot honour, refused by name. */
static int ollama_generate_unsupported(const json_t *j, srv_perr *e)
{
    const char *s = NULL;
    json_t *imgs = NULL;
    if (jget_str(j, "suffix", &s, e) < 0)
        return -1;
    if (s && *s)
        return perr_set(e, 400, "suffix", "suffix (fill-in-the-middle) is not supported");
    s = NULL;
    if (jget_str(j, "template", &s, e) < 0)
        return -1;
    if (s && *s)
        return perr_set(e, 400, "template", "Go templates are not supported; start the server "
                        "with --chat-template FILE (Jinja) instead");
    if (jget_arr(j, "images", &imgs, e) < 0)
        return -1;
    if (imgs && json_array_size(imgs) > 0)
        return perr_set(e, 400, "images", "images are not supported");
    return 0;
}

int req_parse_ollama_generate(const char *body, size_t len, gen_request *r, srv_perr *e)
{
    memset(r, 0, sizeof *r);
    r->api = GEN_OLLAMA_GENERATE;
    json_t *j = json_parse_body(body, len, e);
    if (!j)
        return -1;
    int rc = -1;
    const char *prompt = NULL, *system = NULL;
    if (ollama_common(j, r, e) < 0 || ollama_generate_unsupported(j, e) < 0 ||
        jget_str(j, "prompt", &prompt, e) < 0 || jget_str(j, "system", &system, e) < 0 ||
        jget_bool(j, "raw", &r->raw, e) < 0 || ollama_context(j, r, e) < 0)
        goto done;
    if ((system && !(r->system = strdup(system))) || !(r->prompt = strdup(prompt ? prompt : ""))) {
        oom(e);
        goto done;
    }
    r->load_only = !*r->prompt && !r->n_context;
    rc = 0;
done:
    json_decref(j);
    if (rc < 0)
        req_free(r);
    return rc;
}
