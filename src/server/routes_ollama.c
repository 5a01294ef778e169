/*
 * routes_ollama.c — Ollama's API: /api/generate and /api/chat (streamed
 * as NDJSON by default, one JSON object per line, the last with "done":
 * true, done_reason and the timings in nanoseconds), /api/tags, /api/show,
 * /api/ps, /api/version and "/".
 *
 * Ollama names models "name:tag"; this server has one model and answers to
 * any name, echoing back the one asked for. An empty prompt (or no
 * messages) is Ollama's "load the model" request: it waits for the model
 * and answers done_reason "load".
 */
#include "server/server_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct ol_call {
    gen_call c;
    bool chat;
    strbuf text;
} ol_call;

static json_t *base_object(const char *model)
{
    char ts[64];
    time_rfc3339(ts, sizeof ts);
    return json_pack("{s:s, s:s}", "model", model, "created_at", ts);
}

static void ndjson(strbuf *out, json_t *j)
{
    sb_json(out, j);
    sb_puts(out, "\n");
    json_decref(j);
}

static json_int_t ns(double s) { return (json_int_t)(s * 1e9); }

/* Ollama tool calls: {"function": {"name", "arguments": {...}}}. */
static json_t *ollama_calls(const json_t *calls)
{
    json_t *out = json_array();
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        const json_t *fn = json_object_get(tc, "function");
        json_array_append_new(out, json_pack("{s:{s:O, s:O}}", "function", "name",
                                             json_object_get(fn, "name"), "arguments",
                                             json_object_get(fn, "arguments")));
    }
    return out;
}

/* A chunk: text as "response" or as the message's content. */
static json_t *chunk(const ol_call *s, const char *text, size_t len, bool done)
{
    json_t *j = base_object(s->c.model);
    if (s->chat)
        json_object_set_new(j, "message", json_pack("{s:s, s:s#}", "role", "assistant",
                                                     "content", text, len));
    else
        json_object_set_new(j, "response", json_stringn(text, len));
    json_object_set_new(j, "done", json_boolean(done));
    return j;
}

/* The final object's statistics (and generate's context). */
static void add_final(const ol_call *s, json_t *j)
{
    const gen_call *c = &s->c;
    const sw_job_stats *st = &c->st;
    json_object_set_new(j, "done_reason", json_string(gen_finish_reason(c, true)));
    if (!s->chat) {
        int32_t *ids = NULL;
        int n = 0;
        json_t *ctx = json_array();
        if (c->job && sw_job_tokens(c->job, &ids, &n) == 0)
            for (int i = 0; i < n; i++)
                json_array_append_new(ctx, json_integer(ids[i]));
        free(ids);
        json_object_set_new(j, "context", ctx);
    }
    json_t *t = json_pack("{s:I, s:I, s:i, s:I, s:i, s:I}", "total_duration", ns(st->total_s),
                          "load_duration", (json_int_t)0, "prompt_eval_count",
                          c->n_prompt - st->n_cached, "prompt_eval_duration", ns(st->prompt_s),
                          "eval_count", st->n_gen, "eval_duration", ns(st->gen_s));
    json_object_update_new(j, t);
}

static const char *end_error(const gen_call *c)
{
    if (c->st.finish == SW_FINISH_ERROR)
        return c->st.error[0] ? c->st.error : "generation failed";
    if (c->st.finish == SW_FINISH_CANCEL)
        return "the generation was cancelled: the server is shutting down";
    return NULL;
}

/* --- streaming ------------------------------------------------------------------------ */

static int ol_pull(void *ctx, strbuf *out)
{
    ol_call *s = ctx;
    sb_reset(&s->text);
    int rc = gen_next(&s->c, &s->text);
    if (rc < 0)
        return -1;
    if (s->text.len)
        ndjson(out, chunk(s, s->text.s, s->text.len, false));
    if (rc == 1)
        return 1;
    const char *err = end_error(&s->c);
    if (err) {
        ndjson(out, json_pack("{s:s}", "error", err));
        return 0;
    }
    if (s->c.calls && s->chat) {
        json_t *j = chunk(s, "", 0, false);
        json_object_set_new(json_object_get(j, "message"), "tool_calls",
                            ollama_calls(s->c.calls));
        ndjson(out, j);
    }
    json_t *fin = chunk(s, "", 0, true);
    add_final(s, fin);
    ndjson(out, fin);
    return 0;
}

static void ol_done(void *ctx)
{
    ol_call *s = ctx;
    gen_end(&s->c);
    sb_free(&s->text);
    free(s);
}

static mhd_result answer_whole(srv_req *r, ol_call *s)
{
    strbuf content = {0};
    int rc = gen_collect(&s->c, &content);
    mhd_result ret;
    const char *err = rc < 0 ? NULL : end_error(&s->c);
    if (rc < 0) {
        ret = MHD_NO;
    } else if (err) {
        ret = srv_error_ollama(r, s->c.st.finish == SW_FINISH_ERROR ? 500 : 503, "%s", err);
    } else {
        json_t *j = chunk(s, content.s ? content.s : "", content.len, true);
        if (s->c.calls && s->chat)
            json_object_set_new(json_object_get(j, "message"), "tool_calls",
                                ollama_calls(s->c.calls));
        add_final(s, j);
        ret = srv_send_json(r, 200, j);
    }
    sb_free(&content);
    ol_done(s);
    return ret;
}

/* Ollama's load request: wait for the model, answer done_reason "load". */
static mhd_result answer_load(srv_req *r, const gen_request *rq, bool chat)
{
    while (sw_engine_wait_loaded(r->srv->e, 100) == SW_ENGINE_LOADING)
        if (srv_client_gone(r))
            return MHD_NO;
    const sw_model_desc *d = sw_engine_model(r->srv->e);
    if (!d)
        return srv_error_ollama(r, 503, "the model failed to load: %s",
                                sw_engine_error(r->srv->e));
    json_t *j = base_object(rq->model && *rq->model ? rq->model : d->name);
    if (chat)
        json_object_set_new(j, "message", json_pack("{s:s, s:s}", "role", "assistant", "content",
                                                    ""));
    else
        json_object_set_new(j, "response", json_string(""));
    json_object_set_new(j, "done", json_true());
    json_object_set_new(j, "done_reason", json_string("load"));
    return srv_send_json(r, 200, j);
}

static mhd_result generate(srv_req *r, bool chat)
{
    gen_request rq;
    srv_perr pe = {0};
    int rc = chat ? req_parse_ollama_chat(r->body.s, r->body.len, &rq, &pe)
                  : req_parse_ollama_generate(r->body.s, r->body.len, &rq, &pe);
    if (rc < 0)
        return srv_error(r, &pe, true);
    if (rq.load_only) {
        mhd_result ret = answer_load(r, &rq, chat);
        req_free(&rq);
        return ret;
    }
    ol_call *s = calloc(1, sizeof *s);
    if (!s) {
        req_free(&rq);
        return srv_error_ollama(r, 500, "out of memory");
    }
    s->chat = chat;
    if (gen_start(&s->c, r, &rq, &pe) < 0) {
        ol_done(s);
        return srv_error(r, &pe, true);
    }
    if (s->c.rq.stream)
        return srv_send_stream(r, "application/x-ndjson", ol_pull, ol_done, s);
    return answer_whole(r, s);
}

mhd_result route_ollama_generate(srv_req *r) { return generate(r, false); }
mhd_result route_ollama_chat(srv_req *r) { return generate(r, true); }

/* --- listings ----------------------------------------------------------------------------- */

mhd_result route_ollama_root(srv_req *r)
{
    static const char text[] = "Ollama is running";
    return srv_send(r, 200, "text/plain; charset=utf-8", text, sizeof text - 1);
}

mhd_result route_ollama_version(srv_req *r)
{
    return srv_send_json(r, 200, json_pack("{s:s}", "version", SPILLWAY_VERSION));
}

static void param_size(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000ull)
        snprintf(buf, len, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, len, "%.1fM", (double)n / 1e6);
    else
        snprintf(buf, len, "%.1fK", (double)n / 1e3);
}

json_t *ollama_details(const sw_model_desc *d)
{
    char ps[32];
    param_size(d->n_params, ps, sizeof ps);
    return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format", "gguf",
                     "family", d->arch, "families", d->arch, "parameter_size", ps,
                     "quantization_level", d->quant);
}

/* The blob digest when the file is one of Ollama's blobs, else "". */
static void model_digest(const sw_model_desc *d, char *buf, size_t n)
{
    const char *base = strrchr(d->path, '/');
    base = base ? base + 1 : d->path;
    if (!strncmp(base, "sha256-", 7) && strlen(base) == 7 + 64)
        snprintf(buf, n, "%s", base + 7);
    else
        buf[0] = 0;
}

static json_t *model_entry(const sw_model_desc *d)
{
    char mod[40], digest[80];
    time_rfc3339_of(d->file_mtime ? d->file_mtime : d->loaded_at, mod, sizeof mod);
    model_digest(d, digest, sizeof digest);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "name", d->name, "model", d->name,
                     "modified_at", mod, "size", (json_int_t)d->file_size, "digest", digest,
                     "details", ollama_details(d));
}

static const sw_model_desc *need_model(srv_req *r)
{
    const sw_model_desc *d = sw_engine_model(r->srv->e);
    if (!d)
        srv_error_ollama(r, 503, "the model is still loading");
    return d;
}

mhd_result route_ollama_tags(srv_req *r)
{
    const sw_model_desc *d = need_model(r);
    return d ? srv_send_json(r, 200, json_pack("{s:[o]}", "models", model_entry(d))) : MHD_YES;
}

mhd_result route_ollama_ps(srv_req *r)
{
    const sw_model_desc *d = need_model(r);
    if (!d)
        return MHD_YES;
    sw_engine_stats st;
    sw_engine_get_stats(r->srv->e, &st);
    sw_store_stats ss;
    sw_engine_get_store_stats(r->srv->e, &ss);
    /* memory: what the store holds (the file, when mapped) and the KV caches */
    uint64_t weights = ss.valid && strcmp(ss.mode, "mmap")
                           ? (uint64_t)(ss.resident_bytes + ss.cache_bytes) : d->file_size;
    json_t *m = model_entry(d);
    json_object_del(m, "modified_at");
    /* Loaded until the server stops: keep_alive is not applied. */
    json_object_set_new(m, "expires_at", json_string("9999-12-31T23:59:59Z"));
    json_object_set_new(m, "size", json_integer((json_int_t)(weights + st.kv_bytes_used)));
    json_object_set_new(m, "size_vram", json_integer(0));
    json_object_set_new(m, "context_length", json_integer(d->n_ctx));
    return srv_send_json(r, 200, json_pack("{s:[o]}", "models", m));
}

/* One metadata value (or element) as JSON. */
static json_t *meta_value(const sw_meta *m)
{
    switch (m->kind) {
    case SW_META_INT: return json_integer((json_int_t)m->i);
    case SW_META_UINT: return m->u > (uint64_t)INT64_MAX ? json_real((double)m->u)
                                                         : json_integer((json_int_t)m->u);
    case SW_META_FLOAT: return json_real(m->f);
    case SW_META_BOOL: return json_boolean(m->b);
    case SW_META_STRING: {
        json_t *s = json_stringn(m->s, m->n);
        return s ? s : json_string("");  /* not UTF-8: shown empty */
    }
    default: return json_null();
    }
}

static json_t *model_info(sw_engine *e, const sw_model_desc *d, bool verbose)
{
    json_t *info = json_object();
    int64_t n = sw_engine_meta_count(e);
    for (int64_t i = 0; i < n; i++) {
        sw_meta m;
        if (sw_engine_meta_at(e, i, -1, &m) < 0)
            continue;
        json_t *v = NULL;
        if (m.kind != SW_META_ARRAY) {
            v = meta_value(&m);
        } else if (verbose) {
            v = json_array();
            for (uint64_t k = 0; k < m.n; k++) {
                sw_meta el;
                if (sw_engine_meta_at(e, i, (int64_t)k, &el) == 0)
                    json_array_append_new(v, meta_value(&el));
            }
        } else {
            v = json_null(); /* as Ollama: big arrays only with verbose */
        }
        json_object_set_new(info, m.key, v);
    }
    if (!json_object_get(info, "general.parameter_count"))
        json_object_set_new(info, "general.parameter_count", json_integer((json_int_t)d->n_params));
    return info;
}

mhd_result route_ollama_show(srv_req *r)
{
    srv_perr pe = {0};
    json_t *j = json_parse_body(r->body.s, r->body.len, &pe);
    if (!j)
        return srv_error(r, &pe, true);
    bool verbose = false;
    const char *name = NULL;
    if (jget_str(j, "model", &name, &pe) < 0 || (!name && jget_str(j, "name", &name, &pe) < 0) ||
        jget_bool(j, "verbose", &verbose, &pe) < 0) {
        json_decref(j);
        return srv_error(r, &pe, true);
    }
    const sw_model_desc *d = need_model(r);
    if (!d) {
        json_decref(j);
        return MHD_YES;
    }
    char mod[40];
    time_rfc3339_of(d->file_mtime ? d->file_mtime : d->loaded_at, mod, sizeof mod);
    strbuf mf = {0}, params = {0};
    sb_printf(&mf, "# Modelfile generated by spillway\nFROM %s\nPARAMETER num_ctx %d\n", d->path,
              d->n_ctx);
    sb_printf(&params, "num_ctx %d", d->n_ctx); /* the context each session gets here */
    json_t *caps = json_pack("[s]", "completion");
    if (d->tool_style != SW_TOOLS_NONE)
        json_array_append_new(caps, json_string("tools"));
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s}", "license", "", "modelfile",
                            mf.s ? mf.s : "", "parameters", params.s ? params.s : "", "template",
                            d->template_src,
                            "details", ollama_details(d), "model_info",
                            model_info(r->srv->e, d, verbose), "capabilities", caps,
                            "modified_at", mod);
    sb_free(&mf);
    sb_free(&params);
    json_decref(j);
    return srv_send_json(r, 200, out);
}
