/*
 * routes_misc.c — the server's own endpoints, in llama.cpp server's shapes:
 * /health (503 while loading, 200 when ready), /slots (what each session
 * holds and does), /tokenize, /detokenize, /metrics (Prometheus text).
 */
#include "server/server_int.h"

#include <stdlib.h>
#include <string.h>

mhd_result route_health(srv_req *r)
{
    sw_engine *e = r->srv->e;
    switch (sw_engine_get_state(e)) {
    case SW_ENGINE_READY:
        return srv_send_json(r, 200, json_pack("{s:s}", "status", "ok"));
    case SW_ENGINE_LOADING:
        return srv_send_json(r, 503, json_pack("{s:s, s:{s:i, s:s, s:s}}", "status", "loading",
                                               "error", "code", 503, "message", "Loading model",
                                               "type", "unavailable_error"));
    case SW_ENGINE_STOPPING:
        return srv_send_json(r, 503, json_pack("{s:s}", "status", "shutting down"));
    default:
        return srv_send_json(r, 503, json_pack("{s:s, s:s}", "status", "error", "error",
                                               sw_engine_error(e)));
    }
}

mhd_result route_slots(srv_req *r)
{
    sw_engine *e = r->srv->e;
    if (!sw_engine_model(e))
        return srv_error_openai(r, 503, NULL, "the model is still loading");
    int n = sw_engine_get_slots(e, NULL, 0);
    sw_slot_info *slots = calloc((size_t)(n > 0 ? n : 1), sizeof *slots);
    if (!slots)
        return srv_error_openai(r, 500, NULL, "out of memory");
    n = sw_engine_get_slots(e, slots, n);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const sw_slot_info *s = &slots[i];
        json_array_append_new(
            arr, json_pack("{s:i, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f}", "id", s->id, "state",
                           s->state, "session", s->session, "n_ctx", s->n_ctx, "n_cached",
                           s->n_cached, "n_prompt", s->n_prompt, "n_prompt_processed",
                           s->n_prompt_done, "n_generated", s->n_gen, "idle_seconds",
                           s->idle_s));
    }
    free(slots);
    return srv_send_json(r, 200, arr);
}

/* A token's bytes: a string when they are UTF-8, else their values. */
static json_t *piece_json(const char *p, size_t len)
{
    json_t *s = json_stringn(p, len);
    if (s)
        return s;
    json_t *arr = json_array();
    for (size_t i = 0; i < len; i++)
        json_array_append_new(arr, json_integer((unsigned char)p[i]));
    return arr;
}

mhd_result route_tokenize(srv_req *r)
{
    srv_perr pe = {0};
    json_t *j = json_parse_body(r->body.s, r->body.len, &pe);
    const char *content = NULL;
    bool add_special = false, parse_special = true, with_pieces = false;
    if (!j || jget_str(j, "content", &content, &pe) < 0 ||
        jget_bool(j, "add_special", &add_special, &pe) < 0 ||
        jget_bool(j, "parse_special", &parse_special, &pe) < 0 ||
        jget_bool(j, "with_pieces", &with_pieces, &pe) < 0) {
        json_decref(j);
        return srv_error(r, &pe, false);
    }
    if (!content) {
        json_decref(j);
        return srv_error_openai(r, 400, "content", "'content' (a string) is required");
    }
    int32_t *ids = NULL;
    int n = 0;
    sw_err err = {0};
    int rc = sw_engine_tokenize(r->srv->e, content, strlen(content), add_special, parse_special,
                                &ids, &n, &err);
    json_decref(j);
    if (rc < 0)
        return srv_error_openai(r, srv_status_of(rc), NULL, "%s", err.msg);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = with_pieces ? sw_engine_token_piece(r->srv->e, ids[i], &len) : NULL;
        json_array_append_new(arr, with_pieces ? json_pack("{s:i, s:o}", "id", ids[i], "piece",
                                                           piece_json(p ? p : "", len))
                                               : json_integer(ids[i]));
    }
    free(ids);
    return srv_send_json(r, 200, json_pack("{s:o}", "tokens", arr));
}

mhd_result route_detokenize(srv_req *r)
{
    srv_perr pe = {0};
    json_t *j = json_parse_body(r->body.s, r->body.len, &pe), *toks = NULL;
    if (!j || jget_arr(j, "tokens", &toks, &pe) < 0) {
        json_decref(j);
        return srv_error(r, &pe, false);
    }
    size_t n = json_array_size(toks), i;
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    json_t *v;
    bool bad = !ids || n > (1u << 24);
    json_array_foreach(toks, i, v) {
        if (bad || !json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX) {
            bad = true;
            break;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(j);
    if (bad) {
        free(ids);
        return srv_error_openai(r, 400, "tokens", "'tokens' must be an array of token ids");
    }
    char *text = NULL;
    size_t len = 0;
    sw_err err = {0};
    int rc = sw_engine_detokenize(r->srv->e, ids, (int)n, &text, &len, &err);
    free(ids);
    if (rc < 0)
        return srv_error_openai(r, srv_status_of(rc), "tokens", "%s", err.msg);
    mhd_result ret = srv_send_json(r, 200, json_pack("{s:s#}", "content", text, len));
    free(text);
    return ret;
}

mhd_result route_metrics(srv_req *r)
{
    strbuf b = {0};
    metrics_render(r->srv->m, r->srv, &b);
    mhd_result ret = b.oom ? srv_error_openai(r, 500, NULL, "out of memory")
                           : srv_send(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                                      b.s ? b.s : "", b.len);
    sb_free(&b);
    return ret;
}
