/*
 * routes_openai.c — OpenAI's API: /v1/chat/completions, /v1/completions
 * (both streamed as server-sent events when asked) and /v1/models.
 *
 * Streams follow OpenAI's shape: "data: {chunk}\n\n" events, the first chat
 * chunk carrying the role, the last one the finish_reason with an empty
 * delta, then (stream_options.include_usage) a chunk with "choices": [] and
 * the usage, then "data: [DONE]". With include_usage every other chunk has
 * "usage": null, as OpenAI sends it.
 */
#include "server/server_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct oa_call {
    gen_call c;
    bool chat;
    bool role_sent;
    strbuf text;
} oa_call;

/* --- shared pieces ------------------------------------------------------------------ */

static json_t *usage_json(const gen_call *c)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", c->n_prompt, "completion_tokens",
                     c->st.n_gen, "total_tokens", c->n_prompt + c->st.n_gen,
                     "prompt_tokens_details", "cached_tokens", c->st.n_cached);
}

/* Tool calls as OpenAI writes them: arguments as a JSON string; streamed
 * ones carry their index. */
static json_t *openai_calls(const json_t *calls, bool indexed)
{
    json_t *out = json_array();
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        const json_t *fn = json_object_get(tc, "function");
        char *args = json_dumps(json_object_get(fn, "arguments"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *o = json_pack("{s:O, s:s, s:{s:O, s:s}}", "id", json_object_get(tc, "id"), "type",
                              "function", "function", "name", json_object_get(fn, "name"),
                              "arguments", args ? args : "{}");
        free(args);
        if (o && indexed)
            json_object_set_new(o, "index", json_integer((json_int_t)i));
        if (o)
            json_array_append_new(out, o);
    }
    return out;
}

static json_t *chunk_new(const oa_call *s, json_t *choice)
{
    const gen_call *c = &s->c;
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", c->id, "object",
                          s->chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)c->created, "model", c->model, "system_fingerprint",
                          "spillway-" SPILLWAY_VERSION, "choices", choice);
    if (j && c->rq.include_usage)
        json_object_set_new(j, "usage", json_null());
    return j;
}

static void sse(strbuf *out, json_t *j)
{
    sb_puts(out, "data: ");
    sb_json(out, j);
    sb_puts(out, "\n\n");
    json_decref(j);
}

/* A choice of a chunk: delta (chat) or text (completions). */
static json_t *choice_new(const oa_call *s, json_t *delta, const char *text, const char *finish)
{
    json_t *ch = json_pack("{s:i, s:n, s:o}", "index", 0, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    if (ch && s->chat)
        json_object_set_new(ch, "delta", delta ? delta : json_object());
    else if (ch)
        json_object_set_new(ch, "text", json_string(text ? text : ""));
    return ch;
}

static const char *error_end_message(const gen_call *c, int *status)
{
    if (c->st.finish == SW_FINISH_ERROR) {
        *status = 500;
        return c->st.error[0] ? c->st.error : "generation failed";
    }
    *status = 503; /* cancelled by the engine: shutting down */
    return "the generation was cancelled: the server is shutting down";
}

/* --- streaming ----------------------------------------------------------------------- */

static void stream_end(oa_call *s, strbuf *out)
{
    gen_call *c = &s->c;
    if (c->st.finish == SW_FINISH_ERROR || c->st.finish == SW_FINISH_CANCEL) {
        int status;
        const char *msg = error_end_message(c, &status);
        sse(out, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type",
                           status == 500 ? "server_error" : "unavailable_error", "param", "code"));
        sb_puts(out, "data: [DONE]\n\n");
        return;
    }
    if (c->calls)
        sse(out, chunk_new(s, choice_new(s, json_pack("{s:o}", "tool_calls",
                                                      openai_calls(c->calls, true)),
                                         NULL, NULL)));
    sse(out, chunk_new(s, choice_new(s, NULL, "", gen_finish_reason(c, false))));
    if (c->rq.include_usage) {
        json_t *u = chunk_new(s, json_object());
        json_object_set_new(u, "choices", json_array());
        json_object_set_new(u, "usage", usage_json(c));
        sse(out, u);
    }
    sb_puts(out, "data: [DONE]\n\n");
}

static int oa_pull(void *ctx, strbuf *out)
{
    oa_call *s = ctx;
    if (s->chat && !s->role_sent) {
        s->role_sent = true;
        sse(out, chunk_new(s, choice_new(s, json_pack("{s:s, s:s, s:n}", "role", "assistant",
                                                      "content", "", "refusal"),
                                         NULL, NULL)));
        return 1;
    }
    sb_reset(&s->text);
    int rc = gen_next(&s->c, &s->text);
    if (rc < 0)
        return -1;
    if (s->text.len) {
        json_t *delta = s->chat ? json_pack("{s:s#}", "content", s->text.s, s->text.len) : NULL;
        sse(out, chunk_new(s, choice_new(s, delta, s->text.s, NULL)));
    }
    if (rc == 1)
        return 1;
    stream_end(s, out);
    return 0;
}

static void oa_done(void *ctx)
{
    oa_call *s = ctx;
    gen_end(&s->c);
    sb_free(&s->text);
    free(s);
}

/* --- whole answers ------------------------------------------------------------------- */

static json_t *whole_chat(const oa_call *s, const strbuf *content)
{
    const gen_call *c = &s->c;
    json_t *msg = json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                            content->len || !c->calls ? json_stringn(content->s ? content->s : "",
                                                                     content->len)
                                                      : json_null(),
                            "refusal");
    if (msg && c->calls)
        json_object_set_new(msg, "tool_calls", openai_calls(c->calls, false));
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:[{s:i, s:o, s:n, s:s}], s:o}", "id", c->id,
                     "object", "chat.completion", "created", (json_int_t)c->created, "model",
                     c->model, "system_fingerprint", "spillway-" SPILLWAY_VERSION, "choices",
                     "index", 0, "message", msg, "logprobs", "finish_reason",
                     gen_finish_reason(c, false), "usage", usage_json(c));
}

static json_t *whole_completion(const oa_call *s, const strbuf *content)
{
    const gen_call *c = &s->c;
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:[{s:s#, s:i, s:n, s:s}], s:o}", "id", c->id,
                     "object", "text_completion", "created", (json_int_t)c->created, "model",
                     c->model, "system_fingerprint", "spillway-" SPILLWAY_VERSION, "choices",
                     "text", content->s ? content->s : "", content->len, "index", 0, "logprobs",
                     "finish_reason", gen_finish_reason(c, false), "usage", usage_json(c));
}

static mhd_result answer_whole(srv_req *r, oa_call *s)
{
    strbuf content = {0};
    int rc = gen_collect(&s->c, &content);
    mhd_result ret;
    if (rc < 0) {
        ret = MHD_NO; /* the client is gone: drop the connection */
    } else if (s->c.st.finish == SW_FINISH_ERROR || s->c.st.finish == SW_FINISH_CANCEL) {
        int status;
        const char *msg = error_end_message(&s->c, &status);
        ret = srv_error_openai(r, status, NULL, "%s", msg);
    } else {
        ret = srv_send_json(r, 200, s->chat ? whole_chat(s, &content)
                                            : whole_completion(s, &content));
    }
    sb_free(&content);
    oa_done(s);
    return ret;
}

/* --- the routes ----------------------------------------------------------------------- */

static mhd_result generate(srv_req *r, bool chat)
{
    gen_request rq;
    srv_perr pe = {0};
    int rc = chat ? req_parse_openai_chat(r->body.s, r->body.len, &rq, &pe)
                  : req_parse_openai_completion(r->body.s, r->body.len, &rq, &pe);
    if (rc < 0)
        return srv_error(r, &pe, false);
    oa_call *s = calloc(1, sizeof *s);
    if (!s) {
        req_free(&rq);
        return srv_error_openai(r, 500, NULL, "out of memory");
    }
    s->chat = chat;
    if (gen_start(&s->c, r, &rq, &pe) < 0) {
        oa_done(s);
        return srv_error(r, &pe, false);
    }
    if (s->c.rq.stream)
        return srv_send_stream(r, "text/event-stream", oa_pull, oa_done, s);
    return answer_whole(r, s);
}

mhd_result route_openai_chat(srv_req *r) { return generate(r, true); }
mhd_result route_openai_completions(srv_req *r) { return generate(r, false); }

static json_t *model_object(const sw_model_desc *d, const char *id)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created",
                     (json_int_t)(d->file_mtime ? d->file_mtime : d->loaded_at), "owned_by",
                     "spillway");
}

mhd_result route_openai_models(srv_req *r)
{
    const sw_model_desc *d = sw_engine_model(r->srv->e);
    if (!d)
        return srv_error_openai(r, 503, NULL, "the model is still loading");
    if (!strncmp(r->path, "/v1/models/", 11)) /* any name answers: it is the one model */
        return srv_send_json(r, 200, model_object(d, r->path + 11));
    return srv_send_json(r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data",
                                           model_object(d, d->name)));
}
