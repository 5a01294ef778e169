/*
 * engine.c — the engine's public face (spillway.h): opening and loading,
 * the job queue, jobs and their output, text helpers, metadata and
 * statistics. The owner thread's loop is engine_sched.c.
 */
#include "engine/engine_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/catalog.h"
#include "text/chat.h"
#include "util/log.h"

/* The template a model without one gets (llama.cpp and Ollama fall back to
 * ChatML as well). It ignores tools. */
static const char chatml_src[] =
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

const double sw_hist_bounds[SW_HIST_N] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.075, 0.1,    0.25,  0.5,  0.75,  1.0,
                                          2.5,   5.0,    10.0,  30.0};

double engine_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void hist_observe(sw_hist *h, double v)
{
    int i = 0;
    while (i < SW_HIST_N && v > sw_hist_bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

sw_sampling sw_sampling_default(void)
{
    return (sw_sampling){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                         .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = SW_SEED_RANDOM};
}

const char *sw_finish_name(sw_finish f)
{
    static const char *const names[] = {"", "eog", "stop", "length", "context", "cancel", "error"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "";
}

/* --- opening and loading ---------------------------------------------------- */

int sw_engine_open(const sw_engine_opts *opts, sw_engine **out, sw_err *err)
{
    *out = NULL;
    if (!opts || !opts->model_path)
        return sw_errf(err, SW_EINVAL, "no model path");
    sw_engine *e = calloc(1, sizeof *e);
    if (!e)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    e->opts = *opts;
    e->path = strdup(opts->model_path);
    e->name = opts->model_name ? strdup(opts->model_name) : NULL;
    e->template_src = opts->template_src ? strdup(opts->template_src) : NULL;
    if (!e->path || (opts->model_name && !e->name) || (opts->template_src && !e->template_src)) {
        sw_engine_close(e);
        return sw_errf(err, SW_ENOMEM, "out of memory");
    }
    if (opts->store) {
        e->store_o = *opts->store;
        if (opts->store->policy && !(e->store_policy = strdup(opts->store->policy))) {
            sw_engine_close(e);
            return sw_errf(err, SW_ENOMEM, "out of memory");
        }
        e->store_o.policy = e->store_policy;
    }
    sw_engine_opts *o = &e->opts;
    o->store = NULL; /* e->store_o holds it */
    o->model_path = e->path;
    o->model_name = e->name;
    o->template_src = e->template_src;
    if (o->n_parallel <= 0)
        o->n_parallel = 1;
    if (o->n_queue < 0)
        o->n_queue = 0;
    if (o->n_sessions < o->n_parallel)
        o->n_sessions = o->n_parallel * 4 > 8 ? o->n_parallel * 4 : 8;
    if (o->prefill_chunk <= 0)
        o->prefill_chunk = 128;
    if (o->n_batch <= 0)
        o->n_batch = 512;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->cv_state, NULL);
    atomic_store(&e->state, SW_ENGINE_LOADING);
    e->stats.n_parallel = o->n_parallel;
    e->stats.n_queue_max = o->n_queue;
    if (pthread_create(&e->thread, NULL, engine_thread_main, e)) {
        sw_engine_close(e);
        return sw_errf(err, SW_ENOMEM, "cannot start the engine thread");
    }
    e->thread_started = true;
    *out = e;
    return 0;
}

/* MemAvailable in bytes, 0 if unknown. */
static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (size_t)kb * 1024;
}

static sw_tool_style tool_style_of(const char *src, bool fallback)
{
    if (fallback || !strstr(src, "tools"))
        return SW_TOOLS_NONE;
    if (strstr(src, "<tool_call>"))
        return SW_TOOLS_HERMES;
    if (strstr(src, "[TOOL_CALLS]"))
        return SW_TOOLS_MISTRAL;
    if (strstr(src, "<|python_tag|>") || strstr(src, "<|start_header_id|>"))
        return SW_TOOLS_LLAMA3;
    return SW_TOOLS_GENERIC;
}

/* The pieces table grammar_mask walks. */
static int load_vocab_table(sw_engine *e, sw_err *err)
{
    int n = e->n_vocab;
    e->gv_piece = calloc((size_t)n, sizeof *e->gv_piece);
    e->gv_len = calloc((size_t)n, sizeof *e->gv_len);
    e->gv_kind = calloc((size_t)n, sizeof *e->gv_kind);
    if (!e->gv_piece || !e->gv_len || !e->gv_kind)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    for (int id = 0; id < n; id++) {
        unsigned attr = tok_attr(e->tok, id);
        size_t len = 0;
        e->gv_piece[id] = "";
        if (!tok_valid(e->tok, id)) {
            e->gv_kind[id] = GRAMMAR_TOK_NEVER;
            continue;
        }
        if (tok_is_eog(e->tok, id))
            e->gv_kind[id] = GRAMMAR_TOK_EOG;
        else if (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNUSED | TOK_ATTR_UNKNOWN))
            e->gv_kind[id] = GRAMMAR_TOK_NEVER;
        else
            e->gv_piece[id] = tok_piece(e->tok, id, &len);
        e->gv_len[id] = (uint32_t)len;
    }
    e->gv = (grammar_vocab){.n = n, .piece = e->gv_piece, .len = e->gv_len, .kind = e->gv_kind};
    return 0;
}

/* Context per session: asked for, or the model's, capped so that every
 * parallel session fits the budget, in multiples of 256. */
static int pick_n_ctx(const sw_engine *e, int n_ctx_train)
{
    if (e->opts.n_ctx > 0)
        return e->opts.n_ctx;
    int train = n_ctx_train > 0 ? n_ctx_train : 4096;
    size_t per = e->desc.kv_budget / (size_t)e->opts.n_parallel / (e->kv_bpp ? e->kv_bpp : 1);
    size_t n = per < (size_t)train ? per / 256 * 256 : (size_t)train;
    if (n < 256)
        n = train < 256 ? (size_t)train : 256;
    return (int)n;
}

/* The storage type holding most weights, for files without
 * general.file_type. */
static const char *main_type(const gguf_ctx *g)
{
    uint64_t by_type[QT_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type >= 0 && t->type < QT_COUNT)
            by_type[t->type] += (uint64_t)t->n_elements;
    }
    int best = 0;
    for (int t = 1; t < QT_COUNT; t++)
        if (by_type[t] > by_type[best])
            best = t;
    const char *name = by_type[best] ? quant_name(best) : NULL;
    return name ? name : "unknown";
}

static void load_desc(sw_engine *e, const model_info *mi)
{
    sw_model_desc *d = &e->desc;
    d->path = e->path;
    d->arch = mi->arch;
    d->n_vocab = mi->n_vocab;
    d->n_embd = mi->n_embd;
    d->n_layer = mi->n_layer;
    d->n_ctx_train = mi->n_ctx_train;
    d->n_expert = mi->n_expert;
    d->n_expert_used = mi->n_expert_used;
    d->n_parallel = e->opts.n_parallel;
    d->n_queue = e->opts.n_queue;
    d->n_sessions = e->opts.n_sessions;
    d->kv_bytes_per_token = e->kv_bpp;
    d->kv_type = e->kv_qt == QT_F16 ? "f16" : e->kv_qt == QT_Q8_0 ? "q8_0" : "f32";
    for (int64_t i = 0; i < gguf_n_tensors(e->gguf); i++)
        d->n_params += (uint64_t)gguf_tensor_at(e->gguf, i)->n_elements;
    d->file_size = gguf_file_size(e->gguf);
    uint32_t ft;
    const char *q = gguf_get_u32(e->gguf, "general.file_type", &ft, NULL) == 0
                        ? catalog_ftype_name(ft) : NULL;
    d->quant = q ? q : main_type(e->gguf);
    struct stat sb;
    if (stat(e->path, &sb) == 0)
        d->file_mtime = (int64_t)sb.st_mtime;
    d->loaded_at = (int64_t)time(NULL);
    if (e->name) {
        d->name = e->name;
    } else {
        const char *base = strrchr(e->path, '/');
        base = base ? base + 1 : e->path;
        size_t len = strlen(base);
        if (len > 5 && !strcmp(base + len - 5, ".gguf"))
            len -= 5;
        e->name = strndup(base, len);
        d->name = e->name ? e->name : "model";
    }
}

/* The chat template: --chat-template, the model's, or ChatML. */
static int load_template(sw_engine *e, sw_err *err)
{
    sw_model_desc *d = &e->desc;
    const char *src = NULL;
    d->model_has_template =
        gguf_get_str(e->gguf, "tokenizer.chat_template", &src, NULL) == 0 && src && *src;
    if (e->template_src) {
        src = e->template_src;
        d->template_override = true;
    } else if (!d->model_has_template) {
        src = chatml_src;
        d->template_fallback = true;
    }
    d->template_src = src;
    d->tool_style = tool_style_of(src, d->template_fallback);
    int rc = generator_set_template(e->g, src, strlen(src), err);
    if (rc < 0)
        return rc;
    const jinja_tmpl *t;
    return generator_template(e->g, &t, NULL, err);
}

int engine_load(sw_engine *e, sw_err *err)
{
    double t0 = engine_now();
    generator_opts go = {.n_threads = e->opts.n_threads, .n_batch = e->opts.n_batch,
                         .store = e->store_o};
    int rc;
    if ((rc = generator_open(e->path, &go, &e->g, err)) < 0 ||
        (rc = gguf_open(e->path, GGUF_NO_DATA, (gguf_ctx **)&e->gguf, err)) < 0)
        return rc;
    e->m = generator_model(e->g);
    e->tok = generator_tokenizer(e->g);
    e->pool = generator_pool(e->g);
    model_state_opts so = {.n_batch = e->opts.n_batch};
    if ((rc = model_state_new(e->m, &so, &e->ms, err)) < 0 || (rc = load_template(e, err)) < 0)
        return rc;
    model_info mi;
    model_get_info(e->m, &mi);
    e->n_vocab = mi.n_vocab;
    e->kv_qt = e->opts.kv_type == SW_KV_F16 ? QT_F16
               : e->opts.kv_type == SW_KV_Q8_0 ? QT_Q8_0 : QT_F32;
    e->kv_bpp = kv_cache_bytes_per_pos(e->m, e->kv_qt);
    if (!e->kv_bpp)
        return sw_errf(err, SW_EUNSUPPORTED, "KV cache type %s does not fit this model",
                       quant_name(e->kv_qt));
    e->desc.kv_budget = e->opts.kv_budget ? e->opts.kv_budget : mem_available() / 4;
    if (!e->desc.kv_budget)
        e->desc.kv_budget = (size_t)1 << 30;
    e->n_ctx = pick_n_ctx(e, mi.n_ctx_train);
    if ((rc = load_vocab_table(e, err)) < 0)
        return rc;
    e->n_sess = e->opts.n_sessions;
    e->sess = calloc((size_t)e->n_sess, sizeof *e->sess);
    e->seqs = calloc((size_t)e->n_sess, sizeof *e->seqs);
    e->mseqs = calloc((size_t)e->n_sess, sizeof *e->mseqs);
    if (!e->sess || !e->seqs || !e->mseqs)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    for (int i = 0; i < e->n_sess; i++)
        e->sess[i].id = i;
    load_desc(e, &mi);
    e->desc.n_ctx = e->n_ctx;
    e->desc.load_s = engine_now() - t0;
    e->stats.kv_bytes_budget = e->desc.kv_budget;
    return 0;
}

void sw_engine_close(sw_engine *e)
{
    if (!e)
        return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        e->draining = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    session_free_all(e);
    free(e->sess);
    free(e->seqs);
    free(e->mseqs);
    free(e->gv_piece);
    free(e->gv_len);
    free(e->gv_kind);
    model_state_free(e->ms);
    gguf_close((gguf_ctx *)e->gguf);
    generator_close(e->g);
    pthread_cond_destroy(&e->cv_state);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e->path);
    free(e->name);
    free(e->template_src);
    free(e->store_policy);
    free(e);
}

sw_engine_state sw_engine_get_state(const sw_engine *e)
{
    return (sw_engine_state)atomic_load(&((sw_engine *)e)->state);
}

const char *sw_engine_error(const sw_engine *e) { return e->error; }

/* Absolute time timeout_ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_after(int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

sw_engine_state sw_engine_wait_loaded(sw_engine *e, int timeout_ms)
{
    struct timespec dl = deadline_after(timeout_ms);
    pthread_mutex_lock(&e->mu);
    while (atomic_load(&e->state) == SW_ENGINE_LOADING)
        if (pthread_cond_timedwait(&e->cv_state, &e->mu, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&e->mu);
    return sw_engine_get_state(e);
}

/* Waits under mu until no job runs or waits, or until dl. */
static void wait_idle(sw_engine *e, const struct timespec *dl)
{
    while (e->n_active + e->n_queued > 0)
        if (pthread_cond_timedwait(&e->cv_state, &e->mu, dl) == ETIMEDOUT)
            break;
}

int sw_engine_drain(sw_engine *e, int timeout_ms)
{
    struct timespec dl = deadline_after(timeout_ms);
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    if (atomic_load(&e->state) == SW_ENGINE_READY)
        atomic_store(&e->state, SW_ENGINE_STOPPING);
    wait_idle(e, &dl);
    int left = e->n_active + e->n_queued;
    if (left) { /* out of time: cancel the rest, which ends them at the next step */
        for (sw_job *j = e->q_head; j; j = j->next)
            sw_job_cancel(j);
        for (int i = 0; e->sess && i < e->n_sess; i++)
            if (e->sess[i].job)
                sw_job_cancel(e->sess[i].job);
        pthread_cond_signal(&e->cv);
        dl = deadline_after(2000);
        wait_idle(e, &dl);
    }
    pthread_mutex_unlock(&e->mu);
    return left;
}

const sw_model_desc *sw_engine_model(const sw_engine *e)
{
    int st = atomic_load(&((sw_engine *)e)->state);
    return st == SW_ENGINE_READY || st == SW_ENGINE_STOPPING ? &e->desc : NULL;
}

/* SW_EBUSY unless the model is usable. */
static int need_model(const sw_engine *e, sw_err *err)
{
    if (sw_engine_model(e))
        return 0;
    if (sw_engine_get_state(e) == SW_ENGINE_FAILED)
        return sw_errf(err, SW_EBUSY, "the model failed to load: %s", e->error);
    return sw_errf(err, SW_EBUSY, "the model is still loading");
}

/* --- metadata ---------------------------------------------------------------- */

int64_t sw_engine_meta_count(const sw_engine *e)
{
    return sw_engine_model(e) ? gguf_n_kv(e->gguf) : 0;
}

static sw_meta_kind meta_kind(gguf_vtype t)
{
    switch (t) {
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return SW_META_INT;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return SW_META_FLOAT;
    case GGUF_TYPE_BOOL: return SW_META_BOOL;
    case GGUF_TYPE_STRING: return SW_META_STRING;
    case GGUF_TYPE_ARRAY: return SW_META_ARRAY;
    default: return SW_META_UINT;
    }
}

int sw_engine_meta_at(const sw_engine *e, int64_t i, int64_t elem, sw_meta *out)
{
    memset(out, 0, sizeof *out);
    const gguf_kv *kv = i >= 0 && i < sw_engine_meta_count(e) ? gguf_kv_at(e->gguf, i) : NULL;
    if (!kv)
        return SW_ENOTFOUND;
    out->key = kv->key;
    if (elem < 0) {
        out->kind = meta_kind(kv->type);
        switch (out->kind) {
        case SW_META_INT: out->i = kv->v.i64; break;
        case SW_META_UINT: out->u = kv->v.u64; break;
        case SW_META_FLOAT: out->f = kv->v.f64; break;
        case SW_META_BOOL: out->b = kv->v.b; break;
        case SW_META_STRING: out->s = kv->v.str.ptr; out->n = kv->v.str.len; break;
        case SW_META_ARRAY:
            out->elem = meta_kind(kv->arr_type);
            out->n = kv->arr_type == GGUF_TYPE_ARRAY ? 0 : kv->arr_n;
            break;
        }
        return 0;
    }
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type == GGUF_TYPE_ARRAY ||
        (uint64_t)elem >= kv->arr_n)
        return SW_ENOTFOUND;
    out->kind = meta_kind(kv->arr_type);
    if (out->kind == SW_META_STRING) {
        const gguf_str *s = (const gguf_str *)kv->v.arr + elem;
        out->s = s->ptr;
        out->n = s->len;
    } else if (out->kind == SW_META_BOOL) {
        out->b = ((const uint8_t *)kv->v.arr)[elem] != 0;
    } else if (out->kind == SW_META_FLOAT) {
        out->f = gguf_arr_f64(kv, (uint64_t)elem);
    } else {
        out->i = gguf_arr_i64(kv, (uint64_t)elem);
        out->u = (uint64_t)out->i;
    }
    return 0;
}

/* --- text -------------------------------------------------------------------- */

static const char *special_text(const tokenizer *t, int32_t id)
{
    return id >= 0 && tok_valid(t, id) ? tok_text(t, id, NULL) : NULL;
}

int sw_engine_render_chat(sw_engine *e, const json_t *messages, const json_t *tools,
                          bool add_generation_prompt, char **out, sw_err *err)
{
    *out = NULL;
    int rc = need_model(e, err);
    const jinja_tmpl *t;
    if (rc < 0 || (rc = generator_template(e->g, &t, NULL, err)) < 0)
        return rc;
    chat_params p = {
        .messages = messages,
        .tools = tools,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = special_text(e->tok, tok_bos(e->tok)),
        .eos_token = special_text(e->tok, tok_eos(e->tok)),
    };
    /* A request is not allowed to run a template for minutes or make it
     * write gigabytes. */
    jinja_opts jo = {.max_output = 16u << 20, .max_steps = 20000000};
    rc = chat_render(t, &p, &jo, out, NULL, err);
    return rc < 0 ? sw_err_prefix(err, "chat template") : 0;
}

int sw_engine_encode_prompt(sw_engine *e, const char *text, bool chat, int32_t **ids, int *n,
                            sw_err *err)
{
    *ids = NULL;
    *n = 0;
    int rc = need_model(e, err);
    return rc < 0 ? rc : generator_encode(e->g, text, chat, ids, n, err);
}

int sw_engine_tokenize(sw_engine *e, const char *text, size_t len, bool add_bos,
                       bool parse_special, int32_t **ids, int *n, sw_err *err)
{
    *ids = NULL;
    *n = 0;
    int rc = need_model(e, err);
    if (rc < 0)
        return rc;
    size_t cnt;
    unsigned flags = (add_bos ? TOK_ADD_BOS : 0) | (parse_special ? TOK_PARSE_SPECIAL : 0);
    if ((rc = tok_encode(e->tok, text, len, flags, ids, &cnt, err)) < 0)
        return rc;
    if (cnt > INT32_MAX / 2) {
        free(*ids);
        *ids = NULL;
        return sw_errf(err, SW_ERANGE, "text too long");
    }
    *n = (int)cnt;
    return 0;
}

int sw_engine_detokenize(sw_engine *e, const int32_t *ids, int n, char **out, size_t *len,
                         sw_err *err)
{
    *out = NULL;
    int rc = need_model(e, err);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++)
        if (!tok_valid(e->tok, ids[i]))
            return sw_errf(err, SW_EINVAL, "token id %d is not in the vocabulary (0 to %d)",
                           ids[i], tok_n_vocab(e->tok) - 1);
    return tok_decode(e->tok, ids, (size_t)n, 0, out, len, err);
}

const char *sw_engine_token_piece(sw_engine *e, int32_t id, size_t *len)
{
    if (!sw_engine_model(e) || !tok_valid(e->tok, id))
        return NULL;
    return tok_piece(e->tok, id, len);
}

/* --- jobs ---------------------------------------------------------------------- */

static void job_free(sw_job *j)
{
    if (!j)
        return;
    for (int i = 0; j->stops && i < j->p.n_stops; i++)
        free(j->stops[i]);
    for (int i = 0; j->grammar && i < j->p.n_grammar; i++)
        free(j->grammar[i]);
    free(j->stops);
    free(j->grammar);
    free(j->session_key);
    free(j->prompt);
    free(j->text);
    free(j->gen);
    sampler_free(j->smp);
    stop_matcher_free(j->sm);
    tok_stream_free(j->detok);
    grammar_free(j->gram);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void job_unref(sw_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left == 0)
        job_free(j);
}

static char **copy_strings(const char *const *src, int n, bool *ok)
{
    *ok = true;
    if (n <= 0)
        return NULL;
    char **dst = calloc((size_t)n, sizeof *dst);
    for (int i = 0; dst && i < n; i++)
        if (!(dst[i] = strdup(src[i] ? src[i] : "")))
            *ok = false;
    if (!dst)
        *ok = false;
    return dst;
}

static int check_sampling(const sw_sampling *s, sw_err *err)
{
    if (!isfinite(s->temperature) || s->temperature < 0)
        return sw_errf(err, SW_EINVAL, "temperature must be a number >= 0");
    if (!(s->top_p >= 0 && s->top_p <= 1))
        return sw_errf(err, SW_EINVAL, "top_p must be between 0 and 1");
    if (!(s->min_p >= 0 && s->min_p <= 1))
        return sw_errf(err, SW_EINVAL, "min_p must be between 0 and 1");
    if (!isfinite(s->repeat_penalty) || s->repeat_penalty <= 0)
        return sw_errf(err, SW_EINVAL, "repeat_penalty must be > 0");
    if (!isfinite(s->presence_penalty) || !isfinite(s->frequency_penalty))
        return sw_errf(err, SW_EINVAL, "penalties must be finite numbers");
    if (s->repeat_last_n < -1)
        return sw_errf(err, SW_EINVAL, "repeat_last_n must be -1 or more");
    return 0;
}

/* Everything a job needs that can fail, made on the caller's thread so
 * that bad parameters are the caller's error, not the engine's. */
static int job_build(sw_engine *e, const sw_job_params *p, sw_job *j, sw_err *err)
{
    bool ok1, ok2;
    j->prompt = malloc(sizeof(int32_t) * (size_t)p->n_prompt);
    j->stops = copy_strings(p->stops, p->n_stops, &ok1);
    j->grammar = copy_strings(p->grammar, p->n_grammar, &ok2);
    j->session_key = p->session && *p->session ? strndup(p->session, 63) : NULL;
    if (!j->prompt || !ok1 || !ok2 || (p->session && *p->session && !j->session_key))
        return sw_errf(err, SW_ENOMEM, "out of memory");
    memcpy(j->prompt, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
    j->n_prompt = p->n_prompt;
    j->p = *p;
    j->p.prompt = j->prompt;
    j->p.stops = (const char *const *)j->stops;
    j->p.grammar = (const char *const *)j->grammar;
    j->p.session = j->session_key;
    sampler_params sp = {
        .temperature = p->sampling.temperature, .top_k = p->sampling.top_k,
        .top_p = p->sampling.top_p, .min_p = p->sampling.min_p,
        .repeat_penalty = p->sampling.repeat_penalty,
        .presence_penalty = p->sampling.presence_penalty,
        .frequency_penalty = p->sampling.frequency_penalty,
        .penalty_last_n = p->sampling.repeat_last_n, .seed = p->sampling.seed,
    };
    int rc;
    if ((rc = sampler_create(&sp, e->n_vocab, &j->smp, err)) < 0 ||
        (rc = stop_matcher_create(p->stops, p->n_stops, &j->sm, err)) < 0)
        return rc;
    if (p->n_grammar > 0 && (rc = grammar_new(p->grammar, p->n_grammar, &j->gram, err)) < 0)
        return rc;
    if (!(j->detok = tok_stream_new(e->tok, 0)))
        return sw_errf(err, SW_ENOMEM, "out of memory");
    if (p->penalize_prompt)
        sampler_accept_prompt(j->smp, p->prompt, p->n_prompt);
    return 0;
}

static int check_job(const sw_engine *e, const sw_job_params *p, sw_err *err)
{
    if (!p->prompt || p->n_prompt <= 0)
        return sw_errf(err, SW_EINVAL, "the prompt is empty");
    int n_ctx = p->n_ctx > 0 && p->n_ctx < e->n_ctx ? p->n_ctx : e->n_ctx;
    if (p->n_prompt > n_ctx)
        return sw_errf(err, SW_ERANGE,
                       "the prompt is %d tokens long, more than the context of %d tokens",
                       p->n_prompt, n_ctx);
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->n_vocab)
            return sw_errf(err, SW_EINVAL, "token id %d is not in the vocabulary (0 to %d)",
                           p->prompt[i], e->n_vocab - 1);
    if (p->n_stops < 0 || p->n_grammar < 0 || (p->n_stops && !p->stops) ||
        (p->n_grammar && !p->grammar))
        return sw_errf(err, SW_EINVAL, "bad stop strings or grammar");
    return check_sampling(&p->sampling, err);
}

/* Refuses (SW_EBUSY) when the engine cannot take one more job. Under mu. */
static int admit_check(sw_engine *e, sw_err *err)
{
    if (e->draining)
        return sw_errf(err, SW_EBUSY, "the server is shutting down");
    if (e->n_active + e->n_queued >= e->opts.n_parallel + e->opts.n_queue) {
        e->stats.jobs_rejected++;
        return sw_errf(err, SW_EBUSY,
                       "the server is busy: %d requests running and %d waiting, the most it "
                       "takes (--parallel %d, --queue %d); try again later",
                       e->n_active, e->n_queued, e->opts.n_parallel, e->opts.n_queue);
    }
    return 0;
}

int sw_engine_submit(sw_engine *e, const sw_job_params *p, sw_job **out, sw_err *err)
{
    *out = NULL;
    int rc = need_model(e, err);
    if (rc < 0 || (rc = check_job(e, p, err)) < 0)
        return rc;
    sw_job *j = calloc(1, sizeof *j);
    if (!j)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->e = e;
    j->refs = 2;
    j->stats.slot = -1;
    if ((rc = job_build(e, p, j, err)) < 0) {
        job_free(j);
        return rc;
    }
    j->t_submit = engine_now();
    pthread_mutex_lock(&e->mu);
    if ((rc = admit_check(e, err)) < 0) {
        pthread_mutex_unlock(&e->mu);
        job_free(j);
        return rc;
    }
    if (e->q_tail)
        e->q_tail->next = j;
    else
        e->q_head = j;
    e->q_tail = j;
    e->n_queued++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = j;
    return 0;
}

void job_append_text(sw_job *j, const char *text, size_t len)
{
    if (!len)
        return;
    pthread_mutex_lock(&j->mu);
    if (j->text_len + len > j->text_cap) {
        size_t cap = j->text_cap ? j->text_cap : 256;
        while (cap < j->text_len + len)
            cap *= 2;
        char *nt = realloc(j->text, cap);
        if (!nt) { /* the reader will see less text; never a crash */
            pthread_mutex_unlock(&j->mu);
            return;
        }
        j->text = nt;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, text, len);
    j->text_len += len;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void job_append_token(sw_job *j, int32_t id)
{
    pthread_mutex_lock(&j->mu);
    if (j->n_gen == j->gen_cap) {
        int cap = j->gen_cap ? j->gen_cap * 2 : 64;
        int32_t *ng = realloc(j->gen, sizeof(int32_t) * (size_t)cap);
        if (ng) {
            j->gen = ng;
            j->gen_cap = cap;
        }
    }
    if (j->n_gen < j->gen_cap)
        j->gen[j->n_gen++] = id;
    pthread_mutex_unlock(&j->mu);
}

void job_finish(sw_job *j, const sw_job_stats *st)
{
    pthread_mutex_lock(&j->mu);
    j->stats = *st;
    j->done = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

/* How many of the first `avail` bytes of s end on a character boundary,
 * taking at most cap. */
static size_t utf8_cut(const char *s, size_t avail, size_t cap)
{
    if (avail <= cap)
        return avail;
    size_t n = cap;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

size_t sw_job_read(sw_job *j, int timeout_ms, char *buf, size_t cap, bool *done)
{
    struct timespec dl = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&j->mu);
    while (j->text_read == j->text_len && !j->done && timeout_ms != 0) {
        if (timeout_ms < 0)
            pthread_cond_wait(&j->cv, &j->mu);
        else if (pthread_cond_timedwait(&j->cv, &j->mu, &dl) == ETIMEDOUT)
            break;
    }
    size_t n = utf8_cut(j->text + j->text_read, j->text_len - j->text_read, cap);
    if (n)
        memcpy(buf, j->text + j->text_read, n);
    j->text_read += n;
    if (j->text_read == j->text_len)
        j->text_read = j->text_len = 0;
    *done = j->done && j->text_len == 0;
    pthread_mutex_unlock(&j->mu);
    return n;
}

void sw_job_cancel(sw_job *j) { atomic_store(&j->cancel, 1); }

void sw_job_release(sw_job *j)
{
    if (!j)
        return;
    sw_job_cancel(j);
    job_unref(j);
}

void sw_job_get_stats(sw_job *j, sw_job_stats *out)
{
    pthread_mutex_lock(&j->mu);
    *out = j->stats;
    pthread_mutex_unlock(&j->mu);
}

int sw_job_tokens(sw_job *j, int32_t **ids, int *n)
{
    pthread_mutex_lock(&j->mu);
    size_t total = (size_t)j->n_prompt + (size_t)j->n_gen;
    int32_t *out = malloc(sizeof(int32_t) * (total ? total : 1));
    if (out) {
        memcpy(out, j->prompt, sizeof(int32_t) * (size_t)j->n_prompt);
        if (j->n_gen)
            memcpy(out + j->n_prompt, j->gen, sizeof(int32_t) * (size_t)j->n_gen);
    }
    pthread_mutex_unlock(&j->mu);
    *ids = out;
    *n = out ? (int)total : 0;
    return out ? 0 : SW_ENOMEM;
}

/* --- observability --------------------------------------------------------------- */

void sw_engine_get_stats(sw_engine *e, sw_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->state = sw_engine_get_state(e);
    out->n_active = e->n_active;
    out->n_queued = e->n_queued;
    out->kv_bytes_used = e->kv_used;
    out->n_sessions_cached = 0;
    out->kv_tokens = 0;
    for (int i = 0; i < e->n_sess; i++) {
        out->n_sessions_cached += e->sess[i].kv != NULL;
        out->kv_tokens += (uint64_t)e->sess[i].n_toks;
    }
    pthread_mutex_unlock(&e->mu);
}

void engine_snapshot_store(sw_engine *e)
{
    store_stats st;
    store_stats_get(generator_store(e->g), &st);
    sw_store_stats o = {
        .valid = true, .mode = store_mode_name(st.mode), .streaming = st.mode == STORE_STREAM,
        .policy = st.policy, .reader = st.reader, .budget_reason = st.budget_reason,
        .resident_bytes = st.resident_bytes, .cache_budget = st.cache_budget,
        .cache_bytes = st.cache_bytes, .slot_bytes = st.slot_bytes, .capacity = st.capacity,
        .entries = st.entries, .total_entries = st.total_entries, .requests = st.requests,
        .hits = st.hits, .misses = st.misses, .evictions = st.evictions,
        .prefetch_issued = st.prefetch_issued, .prefetch_hits = st.prefetch_hits,
        .prefetch_wasted = st.prefetch_wasted, .reads = st.reads, .read_errors = st.read_errors,
        .bytes_read = st.bytes_read, .stall_s = st.stall_s, .mem_available = st.mem_available,
        .psi_some_avg10 = st.psi_some_avg10,
    };
    pthread_mutex_lock(&e->mu);
    e->store_snap = o;
    e->store_snap_t = engine_now();
    pthread_mutex_unlock(&e->mu);
}

void sw_engine_get_store_stats(sw_engine *e, sw_store_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->store_snap;
    pthread_mutex_unlock(&e->mu);
}

int sw_engine_get_slots(sw_engine *e, sw_slot_info *out, int cap)
{
    double now = engine_now();
    pthread_mutex_lock(&e->mu);
    int n = e->sess ? e->n_sess : 0;
    for (int i = 0; i < n && i < cap; i++) {
        const session *s = &e->sess[i];
        sw_slot_info *o = &out[i];
        memset(o, 0, sizeof *o);
        o->id = s->id;
        o->state = s->job ? (s->phase == SESS_DECODE ? "decode" : "prefill")
                          : s->kv ? "idle" : "empty";
        snprintf(o->session, sizeof o->session, "%s", s->key);
        o->n_ctx = e->n_ctx;
        o->n_cached = s->n_toks;
        if (s->job) {
            o->n_prompt = s->job->n_prompt;
            o->n_prompt_done = s->n_fed;
            o->n_gen = s->n_gen;
        }
        o->idle_s = s->job || !s->last_used ? 0 : now - s->last_used;
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}
