/*
 * completion.c — one generation, from a parsed request to text: the prompt
 * (chat template or plain text, Ollama's context ids), the grammar (JSON
 * mode, forced tool calls), the job, and the wait for its output with the
 * client's socket watched.
 */
#include "server/server_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often a waiting request looks at its client's socket. */
#define POLL_MS 50

static int oom(srv_perr *e) { return perr_set(e, 500, "", "out of memory"); }

/* An engine error as a request error. */
static int engine_err(srv_perr *e, const sw_err *err, const char *param)
{
    perr_set(e, srv_status_of(err->code), param, "%s", err->msg);
    if (err->code == SW_ERANGE) /* what OpenAI clients look for to trim a conversation */
        snprintf(e->code, sizeof e->code, "context_length_exceeded");
    return -1;
}

static int render_encode(gen_call *c, const json_t *msgs, int32_t **ids, int *n, srv_perr *e)
{
    sw_err err = {0};
    char *text = NULL;
    int rc = sw_engine_render_chat(c->srv->e, msgs, c->tools_active ? c->rq.tools : NULL, true,
                                   &text, &err);
    if (rc == 0)
        rc = sw_engine_encode_prompt(c->srv->e, text, true, ids, n, &err);
    free(text);
    return rc < 0 ? engine_err(e, &err, "messages") : 0;
}

/* Ollama's /api/generate: the template (when the model has one) around
 * system + prompt, after the ids of an earlier exchange if given. */
static int generate_prompt(gen_call *c, const sw_model_desc *d, int32_t **ids, int *n,
                           srv_perr *e)
{
    gen_request *rq = &c->rq;
    bool templ = !rq->raw && (d->model_has_template || d->template_override);
    char *text = NULL;
    sw_err err = {0};
    int rc = 0;
    if (templ) {
        json_t *msgs = json_array();
        if (rq->system && *rq->system)
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content",
                                                  rq->system));
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content",
                                              rq->prompt));
        rc = sw_engine_render_chat(c->srv->e, msgs, NULL, true, &text, &err);
        json_decref(msgs);
    } else if (!(text = strdup(rq->prompt))) {
        return oom(e);
    }
    if (rc == 0 && !rq->n_context) {
        rc = sw_engine_encode_prompt(c->srv->e, text, templ, ids, n, &err);
    } else if (rc == 0) { /* continue the earlier exchange: no second BOS */
        int32_t *tail = NULL;
        int nt = 0;
        rc = sw_engine_tokenize(c->srv->e, text, strlen(text), false, templ, &tail, &nt, &err);
        int32_t *all = rc == 0 ? malloc(sizeof(int32_t) * (size_t)(rq->n_context + nt)) : NULL;
        if (rc == 0 && !all)
            rc = sw_errf(&err, SW_ENOMEM, "out of memory");
        if (all) {
            memcpy(all, rq->context, sizeof(int32_t) * (size_t)rq->n_context);
            memcpy(all + rq->n_context, tail, sizeof(int32_t) * (size_t)nt);
            *ids = all;
            *n = rq->n_context + nt;
        }
        free(tail);
    }
    free(text);
    return rc < 0 ? engine_err(e, &err, "prompt") : 0;
}

static int build_prompt(gen_call *c, const sw_model_desc *d, int32_t **ids, int *n, srv_perr *e)
{
    gen_request *rq = &c->rq;
    sw_err err = {0};
    switch (rq->api) {
    case GEN_OPENAI_CHAT:
    case GEN_OLLAMA_CHAT:
        return render_encode(c, rq->messages, ids, n, e);
    case GEN_OLLAMA_GENERATE:
        return generate_prompt(c, d, ids, n, e);
    default:
        if (rq->n_context) { /* a prompt given as token ids */
            if (!(*ids = malloc(sizeof(int32_t) * (size_t)rq->n_context)))
                return oom(e);
            memcpy(*ids, rq->context, sizeof(int32_t) * (size_t)rq->n_context);
            *n = rq->n_context;
            return 0;
        }
        if (sw_engine_encode_prompt(c->srv->e, rq->prompt, false, ids, n, &err) < 0)
            return engine_err(e, &err, "prompt");
        return 0;
    }
}

/* The grammar the request implies: a forced tool call, JSON, or none. */
static int build_grammar(gen_call *c, const sw_model_desc *d, char ***alts, int *n, srv_perr *e)
{
    gen_request *rq = &c->rq;
    *alts = NULL;
    *n = 0;
    if (c->tools_active && rq->tool_choice >= TOOL_CHOICE_REQUIRED) {
        const char *only = rq->tool_choice == TOOL_CHOICE_NAMED ? rq->tool_name : NULL;
        if (json_array_size(rq->tools) > SW_GRAMMAR_MAX_ALTS)
            return perr_set(e, 400, "tool_choice", "tool_choice \"required\" supports at most "
                            "%d tools", SW_GRAMMAR_MAX_ALTS);
        if (toolcall_grammar(d->tool_style, rq->tools, only, alts, n) < 0)
            return oom(e);
        return 0;
    }
    if (!rq->json_mode)
        return 0;
    if (!(*alts = calloc(1, sizeof **alts)) || !((*alts)[0] = strdup(SW_GRAMMAR_OBJECT))) {
        free(*alts);
        *alts = NULL;
        return oom(e);
    }
    *n = 1;
    return 0;
}

static int submit(gen_call *c, const int32_t *ids, int n, char **alts, int n_alts, srv_perr *e)
{
    gen_request *rq = &c->rq;
    const char *hdr = srv_header(c->req, "X-Session-Id");
    sw_job_params p = {
        .prompt = ids,
        .n_prompt = n,
        .sampling = rq->sampling,
        .max_tokens = rq->max_tokens,
        .n_ctx = rq->n_ctx,
        .stops = (const char *const *)rq->stops,
        .n_stops = rq->n_stops,
        .grammar = (const char *const *)alts,
        .n_grammar = n_alts,
        .session = hdr && *hdr ? hdr : rq->session,
        .penalize_prompt = rq->api == GEN_OLLAMA_CHAT || rq->api == GEN_OLLAMA_GENERATE,
    };
    if (p.session)
        snprintf(c->req->session, sizeof c->req->session, "%s", p.session);
    sw_err err = {0};
    if (sw_engine_submit(c->srv->e, &p, &c->job, &err) < 0)
        return engine_err(e, &err, rq->messages ? "messages" : "prompt");
    c->n_prompt = n;
    return 0;
}

int gen_start(gen_call *c, srv_req *r, gen_request *rq, srv_perr *e)
{
    memset(c, 0, sizeof *c);
    c->srv = r->srv;
    c->req = r;
    c->rq = *rq;
    memset(rq, 0, sizeof *rq);
    c->created = time_unix();
    r->generated = true;
    bool chat = c->rq.api == GEN_OPENAI_CHAT;
    random_id(chat ? "chatcmpl-" : "cmpl-", c->id, sizeof c->id);
    const sw_model_desc *d = sw_engine_model(c->srv->e);
    if (!d) {
        if (sw_engine_get_state(c->srv->e) == SW_ENGINE_FAILED)
            return perr_set(e, 503, "", "the model failed to load: %s",
                            sw_engine_error(c->srv->e));
        return perr_set(e, 503, "", "the model is still loading");
    }
    c->model = c->rq.model && *c->rq.model ? c->rq.model : d->name;
    c->tools_active = c->rq.tools && c->rq.tool_choice != TOOL_CHOICE_NONE;
    if (c->tools_active && d->tool_style == SW_TOOLS_NONE)
        return perr_set(e, 400, "tools", "%s does not support tools: its chat template ignores "
                        "them (start the server with --chat-template FILE for one that does)",
                        d->name);
    int32_t *ids = NULL;
    int n = 0;
    char **alts = NULL;
    int n_alts = 0;
    int rc = build_prompt(c, d, &ids, &n, e);
    if (rc == 0)
        rc = build_grammar(c, d, &alts, &n_alts, e);
    if (rc == 0)
        rc = submit(c, ids, n, alts, n_alts, e);
    free(ids);
    toolcall_free_grammar(alts, n_alts);
    if (rc == 0 && c->tools_active)
        tcf_init(&c->tcf, c->rq.tools);
    return rc;
}

/* The job ended: its statistics, and the tool calls the filter held. */
static void gen_finish(gen_call *c, strbuf *out)
{
    sw_job_get_stats(c->job, &c->st);
    if (c->tools_active)
        c->calls = tcf_finish(&c->tcf, out);
    c->ended = true;
}

/* Whether the client hung up (looked at no more than every POLL_MS). */
static bool client_left(gen_call *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    if (now - c->last_check < POLL_MS * 1e-3)
        return false;
    c->last_check = now;
    return srv_client_gone(c->req);
}

int gen_next(gen_call *c, strbuf *out)
{
    char buf[4096];
    if (c->ended)
        return 0;
    for (;;) {
        bool done;
        size_t n = sw_job_read(c->job, POLL_MS, buf, sizeof buf, &done);
        if (n && client_left(c)) { /* text flowing to no one */
            sw_job_cancel(c->job);
            c->req->aborted = true;
            return -1;
        }
        if (n) {
            size_t before = out->len;
            if (c->tools_active)
                tcf_feed(&c->tcf, buf, n, out);
            else
                sb_append(out, buf, n);
            if (out->len > before)
                return 1;
            continue;
        }
        if (done) {
            gen_finish(c, out);
            return 0;
        }
        if (client_left(c)) {
            sw_job_cancel(c->job);
            c->req->aborted = true;
            return -1;
        }
    }
}

int gen_collect(gen_call *c, strbuf *content)
{
    int rc;
    while ((rc = gen_next(c, content)) == 1)
        ;
    return rc;
}

const char *gen_finish_reason(const gen_call *c, bool ollama)
{
    if (c->calls)
        return ollama ? "stop" : "tool_calls";
    if (c->st.finish == SW_FINISH_LENGTH || c->st.finish == SW_FINISH_CONTEXT)
        return "length";
    return "stop";
}

void gen_end(gen_call *c)
{
    srv_req *r = c->req;
    if (c->job && !c->ended) { /* cancelled: the engine ends it at its next step */
        sw_job_cancel(c->job);
        char buf[4096];
        bool done = false;
        for (int i = 0; i < 20 && !done; i++) /* for the log's numbers; at most a second */
            while (sw_job_read(c->job, 50, buf, sizeof buf, &done) > 0)
                ;
        sw_job_get_stats(c->job, &c->st);
    }
    if (r) {
        r->n_prompt = c->n_prompt;
        r->n_cached = c->st.n_cached;
        r->n_gen = c->st.n_gen;
        r->finish = c->ended ? sw_finish_name(c->st.finish) : "cancel";
        r->ttft_s = c->st.n_gen ? c->st.queue_s + c->st.prompt_s : 0;
    }
    sw_job_release(c->job);
    c->job = NULL;
    json_decref(c->calls);
    c->calls = NULL;
    if (c->tools_active)
        tcf_free(&c->tcf);
    req_free(&c->rq);
}
