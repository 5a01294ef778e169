/*
 * generate.c — the generation loop (generate.h): loading a model for
 * generation, prompts through the chat template, and the
 * prefill / sample / detokenize / stop loop with its statistics.
 */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "store/store.h"
#include "text/chat.h"

/* The template a model without one gets: ChatML, as llama.cpp and most
 * servers fall back to. */
static const char chatml_template[] =
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

struct generator {
    store *st;
    model *m;
    tokenizer *tok;
    sw_pool *pool;
    model_state *state;  /* scratch for steps of up to n_batch tokens */
    int n_batch;
    int n_vocab;         /* rows of logits (the model's, which may exceed the tokenizer's) */
    jinja_tmpl *tmpl;    /* NULL until first needed */
    bool tmpl_fallback;  /* tmpl is ChatML because the model has none */
    double load_s;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int generator_open(const char *path, const generator_opts *opts, generator **out, sw_err *err)
{
    static const generator_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    *out = NULL;
    double t0 = now_s();
    generator *g = calloc(1, sizeof *g);
    if (!g)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    g->n_batch = opts->n_batch > 0 ? opts->n_batch : 512;
    model_state_opts so = {.n_batch = g->n_batch};
    int rc;
    if ((rc = store_open_opts(path, &opts->store, &g->st, err)) ||
        (rc = model_load(g->st, &opts->model, &g->m, err)))
        goto fail;
    if ((rc = tok_load(store_gguf(g->st), &g->tok, err))) {
        sw_err_prefix(err, "%s: tokenizer", path);
        goto fail;
    }
    if ((rc = model_state_new(g->m, &so, &g->state, err)) ||
        (rc = sw_pool_create(opts->n_threads, &g->pool, err)))
        goto fail;
    model_info info;
    model_get_info(g->m, &info);
    g->n_vocab = info.n_vocab;
    g->load_s = now_s() - t0;
    *out = g;
    return 0;
fail:
    generator_close(g);
    return rc;
}

void generator_close(generator *g)
{
    if (!g)
        return;
    jinja_free(g->tmpl);
    sw_pool_destroy(g->pool);
    model_state_free(g->state);
    tok_free(g->tok);
    model_free(g->m);
    store_close(g->st);
    free(g);
}

model *generator_model(generator *g) { return g->m; }
store *generator_store(generator *g) { return g->st; }
const tokenizer *generator_tokenizer(const generator *g) { return g->tok; }
sw_pool *generator_pool(generator *g) { return g->pool; }
double generator_load_seconds(const generator *g) { return g->load_s; }

/* --- prompts ------------------------------------------------------------- */

int generator_set_template(generator *g, const char *src, size_t len, sw_err *err)
{
    jinja_tmpl *t;
    int rc = jinja_parse(src, len, &t, err);
    if (rc < 0)
        return sw_err_prefix(err, "chat template");
    jinja_free(g->tmpl);
    g->tmpl = t;
    g->tmpl_fallback = false;
    return 0;
}

int generator_template(generator *g, const jinja_tmpl **out, bool *fallback, sw_err *err)
{
    if (!g->tmpl) {
        const char *src = NULL;
        if (gguf_get_str(store_gguf(g->st), "tokenizer.chat_template", &src, NULL) < 0 || !*src) {
            src = chatml_template;
            g->tmpl_fallback = true;
        }
        int rc = jinja_parse(src, strlen(src), &g->tmpl, err);
        if (rc < 0)
            return sw_err_prefix(err, "the model's chat template");
    }
    *out = g->tmpl;
    if (fallback)
        *fallback = g->tmpl_fallback;
    return 0;
}

/* The vocabulary string of a special token ("<s>"), or NULL. */
static const char *special_text(const tokenizer *t, int32_t id)
{
    return id >= 0 && tok_valid(t, id) ? tok_text(t, id, NULL) : NULL;
}

int generator_render_chat(generator *g, const generator_msg *msgs, int n,
                          bool add_generation_prompt, char **out, sw_err *err)
{
    *out = NULL;
    const jinja_tmpl *t;
    int rc = generator_template(g, &t, NULL, err);
    if (rc < 0)
        return rc;
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        json_t *m = json_pack("{s:s, s:s}", "role", msgs[i].role, "content", msgs[i].content);
        if (!m || json_array_append_new(arr, m)) {
            json_decref(arr);
            return sw_errf(err, SW_EINVAL, "message %d is not valid UTF-8", i);
        }
    }
    if (!arr)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    chat_params p = {
        .messages = arr,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = special_text(g->tok, tok_bos(g->tok)),
        .eos_token = special_text(g->tok, tok_eos(g->tok)),
    };
    rc = chat_render(t, &p, NULL, out, NULL, err);
    json_decref(arr);
    return rc < 0 ? sw_err_prefix(err, "chat template") : 0;
}

int generator_encode(const generator *g, const char *text, bool chat, int32_t **ids, int *n,
                     sw_err *err)
{
    *ids = NULL;
    *n = 0;
    unsigned flags = TOK_ADD_BOS;
    if (chat) {
        /* Templates that write the BOS themselves (Llama 3's does) must not
         * get a second one. */
        const char *bos = special_text(g->tok, tok_bos(g->tok));
        flags = TOK_PARSE_SPECIAL;
        if (!bos || strncmp(text, bos, strlen(bos)))
            flags |= TOK_ADD_BOS;
    }
    size_t cnt;
    int rc = tok_encode(g->tok, text, strlen(text), flags, ids, &cnt, err);
    if (rc < 0)
        return rc;
    if (cnt == 0 || cnt > INT32_MAX) {
        free(*ids);
        *ids = NULL;
        return sw_errf(err, SW_EINVAL, cnt ? "prompt too long" : "empty prompt");
    }
    *n = (int)cnt;
    return 0;
}

/* --- the loop ------------------------------------------------------------ */

generator_params generator_default_params(void)
{
    return (generator_params){.sampling = sampler_default_params()};
}

const char *generator_stop_name(generator_stop s)
{
    switch (s) {
    case GENERATOR_STOP_EOG: return "eog";
    case GENERATOR_STOP_STRING: return "stop";
    case GENERATOR_STOP_LENGTH: return "length";
    case GENERATOR_STOP_CTX: return "context";
    case GENERATOR_STOP_CANCEL: return "cancel";
    default: return "";
    }
}

/* One run's moving parts. */
typedef struct run_state {
    const generator_params *p;
    const generator_sink *sink;
    sampler *smp;
    stop_matcher *stops;
    tok_stream *detok;
    float *logits;       /* [n_vocab] */
    generator_stats *st;
} run_state;

/* Hands text to the sink; a nonzero answer cancels the run. */
static void run_emit(run_state *r, const char *text, size_t len)
{
    if (len && r->sink && r->sink->on_text && r->st->stop != GENERATOR_STOP_CANCEL &&
        r->sink->on_text(r->sink->ctx, text, len))
        r->st->stop = GENERATOR_STOP_CANCEL;
}

/* Passes detokenized text through the stop matcher. */
static int run_feed(run_state *r, const char *text, size_t len, sw_err *err)
{
    const char *emit;
    size_t n;
    int rc = stop_matcher_feed(r->stops, text, len, &emit, &n, err);
    if (rc < 0)
        return rc;
    run_emit(r, emit, n);
    if (rc == 1 && r->st->stop != GENERATOR_STOP_CANCEL) {
        /* The matcher holds copies; name the caller's string. */
        const char *hit = stop_matcher_matched(r->stops);
        r->st->stop = GENERATOR_STOP_STRING;
        for (int i = 0; hit && i < r->p->n_stops; i++)
            if (r->p->stops[i] && !strcmp(r->p->stops[i], hit))
                r->st->stop_string = r->p->stops[i];
    }
    return 0;
}

/* End of the run: releases what the detokenizer and the matcher held. */
static int run_finish(run_state *r, sw_err *err)
{
    if (r->st->stop == GENERATOR_STOP_STRING || r->st->stop == GENERATOR_STOP_CANCEL)
        return 0;
    size_t n;
    const char *tail = tok_stream_flush(r->detok, &n);
    int rc = run_feed(r, tail, n, err);
    if (rc < 0 || r->st->stop == GENERATOR_STOP_STRING)
        return rc;
    stop_matcher_flush(r->stops, &tail, &n);
    run_emit(r, tail, n);
    return 0;
}

/* Runs the prompt in steps of n_batch tokens; logits of the last one. */
static int run_prefill(generator *g, kv_cache *kv, const int32_t *prompt, int n, float *logits,
                       sw_err *err)
{
    for (int off = 0; off < n; off += g->n_batch) {
        int len = n - off < g->n_batch ? n - off : g->n_batch;
        bool last = off + len == n;
        int rc = model_forward(g->m, g->state, kv, g->pool, prompt + off, len,
                               last ? logits : NULL, MODEL_LOGITS_LAST, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Samples until a stop condition; stats->stop says which. */
static int run_decode(generator *g, kv_cache *kv, const generator_params *p, run_state *r,
                      sw_err *err)
{
    const tokenizer *tok = g->tok;
    for (;;) {
        int32_t id = sampler_sample(r->smp, r->logits);
        sampler_accept(r->smp, id);
        r->st->n_gen++;
        if (r->sink && r->sink->on_token)
            r->sink->on_token(r->sink->ctx, id);
        if (!p->ignore_eog && tok_is_eog(tok, id)) {
            r->st->stop = GENERATOR_STOP_EOG;
            return 0;
        }
        size_t n;
        const char *piece = tok_stream_push(r->detok, id, &n);
        int rc = run_feed(r, piece, n, err);
        if (rc < 0 || r->st->stop)
            return rc;
        if (p->max_tokens > 0 && r->st->n_gen >= p->max_tokens) {
            r->st->stop = GENERATOR_STOP_LENGTH;
            return 0;
        }
        if (kv_cache_pos(kv) >= kv_cache_n_ctx(kv)) {
            r->st->stop = GENERATOR_STOP_CTX;
            return 0;
        }
        rc = model_forward(g->m, g->state, kv, g->pool, &id, 1, r->logits, MODEL_LOGITS_LAST,
                           err);
        if (rc < 0)
            return rc;
    }
}

int generator_run(generator *g, kv_cache *kv, const int32_t *prompt, int n_prompt,
                  const generator_params *p, const generator_sink *sink, generator_stats *stats,
                  sw_err *err)
{
    generator_stats local;
    if (!stats)
        stats = &local;
    *stats = (generator_stats){.load_s = g->load_s};
    double t0 = now_s();
    int room = kv_cache_n_ctx(kv) - kv_cache_pos(kv);
    if (n_prompt <= 0)
        return sw_errf(err, SW_EINVAL, "empty prompt");
    if (n_prompt > room)
        return sw_errf(err, SW_ERANGE,
                       "the prompt (%d tokens) does not fit the context (%d positions, %d free)",
                       n_prompt, kv_cache_n_ctx(kv), room);
    run_state r = {.p = p, .sink = sink, .st = stats};
    sampler_params sp = p->sampling;
    sp.max_tokens = 0;
    int rc = sampler_create(&sp, g->n_vocab, &r.smp, err);
    if (rc < 0)
        return rc;
    stats->seed = sampler_seed(r.smp);
    if ((rc = stop_matcher_create(p->stops, p->n_stops, &r.stops, err)) < 0)
        goto done;
    r.detok = tok_stream_new(g->tok, 0);
    r.logits = malloc(sizeof(float) * (size_t)g->n_vocab);
    if (!r.detok || !r.logits) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto done;
    }
    sampler_accept_prompt(r.smp, prompt, n_prompt);

    double tp = now_s();
    rc = run_prefill(g, kv, prompt, n_prompt, r.logits, err);
    stats->prompt_s = now_s() - tp;
    if (rc < 0)
        goto done;
    stats->n_prompt = n_prompt;

    double td = now_s();
    rc = run_decode(g, kv, p, &r, err);
    if (rc == 0)
        rc = run_finish(&r, err);
    stats->gen_s = now_s() - td;
done:
    stats->total_s = g->load_s + (now_s() - t0);
    free(r.logits);
    tok_stream_free(r.detok);
    stop_matcher_free(r.stops);
    sampler_free(r.smp);
    return rc;
}
