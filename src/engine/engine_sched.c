/*
 * engine_sched.c — the owner thread: load the model, then run steps until
 * closed.
 *
 * One step (engine_step):
 *   1. admission (under engine.mu): queued jobs take idle sessions while
 *      fewer than n_parallel run; cancelled queued jobs are dropped;
 *   2. every running job contributes its tokens for this step — a chunk of
 *      its prompt (prefill_chunk while others run, n_batch when alone), or
 *      the one token it sampled last — and cancelled ones finish here, so a
 *      disconnect frees its slot within one step;
 *   3. engine_forward() runs them all in one forward call;
 *   4. each job that got logits samples its next token (grammar mask
 *      first), which is detokenized, stop-matched and appended to its text;
 *   5. bookkeeping others can see (/slots, metrics) is published under mu.
 *
 * Continuous batching. engine_forward() receives the whole step — every
 * running job's KV cache, tokens and logits buffer, prompt chunks and
 * decode tokens alike — and runs it as one model_forward_multi() call: each
 * weight matrix is read once per step for all jobs, and in an MoE layer
 * each chosen expert once for every job that routed to it (model.h). A job
 * admitted at a step's start joins the batch in that step; one that
 * finishes leaves it. Each job's logits are exactly those it would get alone, so
 * greedy output does not depend on what else runs. A job whose step the
 * model would refuse (model_seq_check) fails alone before the call; an
 * error during the call fails every job in it (their caches may hold half
 * a step, which finish_job discards).
 */
#include "engine/engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

/* The step's forward call (see the header comment); returns how many
 * sequences it ran (0: no call). */
static int engine_forward(sw_engine *e, step_seq *seqs, int n)
{
    model_seq *q = e->mseqs;
    int k = 0;
    for (int i = 0; i < n; i++) {
        model_seq mq = {seqs[i].kv, seqs[i].tokens, seqs[i].n, seqs[i].logits,
                        MODEL_LOGITS_LAST};
        seqs[i].rc = model_seq_check(e->m, &mq, &seqs[i].err);
        if (seqs[i].rc == 0)
            q[k++] = mq;
    }
    if (!k)
        return 0;
    sw_err err = {0};
    int rc = model_forward_multi(e->m, e->ms, e->pool, q, k, &err);
    for (int i = 0; i < n && rc; i++)
        if (seqs[i].rc == 0) {
            seqs[i].rc = rc;
            seqs[i].err = err;
        }
    return k;
}

/* How often an idle engine applies the store's budget: a shrink the
 * pressure watcher decides while no request runs gives its memory back
 * within this long, not at the next request. */
#define IDLE_MAINTAIN_MS 500

/* No session runs: publish the store's counters, apply its budget, and
 * sleep until a request comes (or IDLE_MAINTAIN_MS passes). */
static void idle_wait(sw_engine *e)
{
    store_maintain(generator_store(e->g));
    engine_snapshot_store(e); /* the counters as they stand while idle */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += IDLE_MAINTAIN_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&e->mu);
    if (!e->stopping && !e->q_head)
        pthread_cond_timedwait(&e->cv, &e->mu, &until);
    pthread_mutex_unlock(&e->mu);
}

/* --- finishing ------------------------------------------------------------ */

/* Releases the text the detokenizer and stop matcher still hold. */
static void flush_text(session *s, sw_finish f)
{
    sw_job *j = s->job;
    if (f == SW_FINISH_STOP && stop_matcher_matched(j->sm))
        return;
    if (f == SW_FINISH_CANCEL || f == SW_FINISH_ERROR)
        return;
    size_t n;
    const char *tail = tok_stream_flush(j->detok, &n), *emit;
    size_t en;
    if (n && stop_matcher_feed(j->sm, tail, n, &emit, &en, NULL) >= 0)
        job_append_text(j, emit, en);
    if (stop_matcher_matched(j->sm))
        return;
    stop_matcher_flush(j->sm, &emit, &en);
    job_append_text(j, emit, en);
}

static void finish_job(sw_engine *e, session *s, sw_finish f, const char *error)
{
    sw_job *j = s->job;
    double now = engine_now();
    flush_text(s, f);
    sw_job_stats st = {
        .finish = f,
        .n_prompt = j->n_prompt,
        .n_cached = s->n_cached,
        .n_gen = s->n_gen,
        .queue_s = s->t_start - j->t_submit,
        .prompt_s = (s->t_first ? s->t_first : now) - s->t_start,
        .gen_s = s->t_first ? s->t_last - s->t_first : 0,
        .total_s = now - j->t_submit,
        .seed = sampler_seed(j->smp),
        .slot = s->id,
        .grammar_done = j->gram && grammar_complete(j->gram),
    };
    const char *hit = stop_matcher_matched(j->sm);
    if (hit)
        snprintf(st.stop, sizeof st.stop, "%s", hit);
    if (error)
        snprintf(st.error, sizeof st.error, "%s", error);
    pthread_mutex_lock(&e->mu);
    e->stats.jobs_finished++;
    e->stats.jobs_cancelled += f == SW_FINISH_CANCEL;
    e->stats.jobs_failed += f == SW_FINISH_ERROR;
    e->stats.gen_tokens += (uint64_t)s->n_gen;
    s->job = NULL;
    s->phase = SESS_IDLE;
    s->last_used = now;
    if (f == SW_FINISH_ERROR && s->kv) { /* the cache may hold half a step */
        kv_cache_clear(s->kv);
        s->n_toks = 0;
    }
    e->n_active--;
    if (e->n_active + e->n_queued == 0)
        pthread_cond_broadcast(&e->cv_state);
    pthread_mutex_unlock(&e->mu);
    if (f == SW_FINISH_ERROR)
        LOG_EVENT(LOG_ERROR, "generation failed", LOG_I("slot", s->id), LOG_S("error", error));
    job_finish(j, &st);
}

/* A job that never ran (cancelled while queued, or the engine closing). */
static void drop_job(sw_engine *e, sw_job *j, sw_finish f)
{
    sw_job_stats st = {.finish = f, .n_prompt = j->n_prompt, .slot = -1,
                       .queue_s = engine_now() - j->t_submit};
    st.total_s = st.queue_s;
    e->stats.jobs_finished++;
    e->stats.jobs_cancelled++;
    job_finish(j, &st);
}

/* --- admission (under mu) ---------------------------------------------------- */

static void admit_one(sw_engine *e, sw_job *j)
{
    int reuse = 0;
    int si = session_pick(e, j, &reuse);
    if (si < 0) { /* cannot happen: there are at least n_parallel sessions */
        drop_job(e, j, SW_FINISH_ERROR);
        return;
    }
    session *s = &e->sess[si];
    s->job = j;
    s->phase = SESS_PREFILL;
    s->prepared = false;
    s->n_fed = reuse;
    s->n_cached = reuse;
    s->n_gen = 0;
    s->t_start = engine_now();
    s->t_first = s->t_last = 0;
    s->n_ctx = j->p.n_ctx > 0 && j->p.n_ctx < e->n_ctx ? j->p.n_ctx : e->n_ctx;
    bool continues = session_continues(s, reuse, j);
    if (s->n_toks > 0 && !continues) { /* another conversation's cache goes */
        e->stats.evictions++;
        LOG_EVENT(LOG_INFO, "session replaced", LOG_I("slot", s->id), LOG_S("session", s->key),
                  LOG_I("tokens", s->n_toks), LOG_I("reused", reuse));
    }
    if (j->session_key)
        snprintf(s->key, sizeof s->key, "%s", j->session_key);
    else if (!continues)
        s->key[0] = 0;
    e->n_active++;
    e->stats.jobs_started++;
    e->stats.prompt_tokens += (uint64_t)j->n_prompt;
    e->stats.prompt_tokens_cached += (uint64_t)reuse;
    hist_observe(&e->stats.queue_wait, s->t_start - j->t_submit);
}

static void admit(sw_engine *e)
{
    while (e->q_head && (e->n_active < e->opts.n_parallel || atomic_load(&e->q_head->cancel))) {
        sw_job *j = e->q_head;
        e->q_head = j->next;
        if (!e->q_head)
            e->q_tail = NULL;
        e->n_queued--;
        j->next = NULL;
        if (atomic_load(&j->cancel) || e->stopping)
            drop_job(e, j, SW_FINISH_CANCEL);
        else
            admit_one(e, j);
    }
    /* Cancelled jobs further back leave the queue now, not when their turn
     * comes: their clients are gone and their places count against --queue. */
    for (sw_job **pp = &e->q_head; *pp;) {
        sw_job *j = *pp;
        if (!atomic_load(&j->cancel) && !e->stopping) {
            e->q_tail = j;
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        e->n_queued--;
        drop_job(e, j, SW_FINISH_CANCEL);
    }
    if (!e->q_head)
        e->q_tail = NULL;
}

/* --- sampling ------------------------------------------------------------------ */

/* Hands a detokenized piece through the stop matcher; true on a match. */
static bool emit_piece(sw_job *j, const char *text, size_t len)
{
    const char *emit;
    size_t n;
    int rc = stop_matcher_feed(j->sm, text, len, &emit, &n, NULL);
    if (rc < 0)
        return false;
    job_append_text(j, emit, n);
    return rc == 1;
}

/* Samples the next token from s->logits; finishes the job or sets up the
 * next decode step. */
static void sample_next(sw_engine *e, session *s, double now)
{
    sw_job *j = s->job;
    if (j->gram && grammar_mask(j->gram, &e->gv, s->logits) == 0) {
        finish_job(e, s, SW_FINISH_ERROR, "no token of the vocabulary can continue the "
                                          "constrained output");
        return;
    }
    int32_t id = sampler_sample(j->smp, s->logits);
    sampler_accept(j->smp, id);
    job_append_token(j, id);
    pthread_mutex_lock(&e->mu);
    s->n_gen++;
    hist_observe(s->t_first ? &e->stats.itl : &e->stats.ttft,
                 s->t_first ? now - s->t_last : now - j->t_submit);
    pthread_mutex_unlock(&e->mu);
    if (!s->t_first)
        s->t_first = now;
    s->t_last = now;
    if (!j->p.ignore_eos && tok_is_eog(e->tok, id)) {
        finish_job(e, s, SW_FINISH_EOG, NULL);
        return;
    }
    if (j->gram && id < e->gv.n)
        grammar_feed(j->gram, e->gv.piece[id], e->gv.len[id]);
    size_t n;
    const char *piece = tok_stream_push(j->detok, id, &n);
    if (emit_piece(j, piece, n)) {
        finish_job(e, s, SW_FINISH_STOP, NULL);
    } else if (j->gram && grammar_complete(j->gram)) {
        finish_job(e, s, SW_FINISH_STOP, NULL);
    } else if (j->p.max_tokens > 0 && s->n_gen >= j->p.max_tokens) {
        finish_job(e, s, SW_FINISH_LENGTH, NULL);
    } else if (kv_cache_pos(s->kv) >= s->n_ctx) {
        finish_job(e, s, SW_FINISH_CONTEXT, NULL);
    } else {
        s->next_tok = id;
        pthread_mutex_lock(&e->mu);
        s->phase = SESS_DECODE;
        pthread_mutex_unlock(&e->mu);
    }
}

/* --- the step ------------------------------------------------------------------ */

/* What session s contributes to this step; false if it has nothing (it
 * finished here). */
static bool plan_seq(sw_engine *e, session *s, int n_running, step_seq *q)
{
    sw_job *j = s->job;
    if (atomic_load(&j->cancel)) {
        finish_job(e, s, SW_FINISH_CANCEL, NULL);
        return false;
    }
    if (!s->prepared) {
        sw_err err = {0};
        int want = j->p.max_tokens > 0 ? j->n_prompt + j->p.max_tokens : s->n_ctx;
        int rc = session_prepare(e, s, s->n_fed, want < s->n_ctx ? want : s->n_ctx, &err);
        if (rc < 0) {
            finish_job(e, s, SW_FINISH_ERROR, err.msg);
            return false;
        }
        pthread_mutex_lock(&e->mu);
        s->n_fed = s->n_cached = s->n_toks;
        pthread_mutex_unlock(&e->mu);
        s->prepared = true;
    }
    *q = (step_seq){.s = s, .kv = s->kv};
    if (s->phase == SESS_DECODE) {
        q->tokens = &s->next_tok;
        q->n = 1;
        q->logits = s->logits;
        return true;
    }
    int left = j->n_prompt - s->n_fed;
    int chunk = n_running > 1 ? e->opts.prefill_chunk : e->opts.n_batch;
    q->tokens = j->prompt + s->n_fed;
    q->n = left < chunk ? left : chunk;
    q->logits = q->n == left ? s->logits : NULL;
    return true;
}

static void engine_step(sw_engine *e)
{
    double t0 = engine_now();
    step_seq *seqs = e->seqs;
    int n_running = 0, n = 0;
    for (int i = 0; i < e->n_sess; i++)
        n_running += e->sess[i].job != NULL;
    for (int i = 0; i < e->n_sess; i++)
        if (e->sess[i].job && plan_seq(e, &e->sess[i], n_running, &seqs[n]))
            n++;
    int n_run = engine_forward(e, seqs, n);
    double now = engine_now();
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < n; i++) {
        session *s = seqs[i].s;
        if (seqs[i].rc == 0)
            e->stats.forward_tokens += (uint64_t)seqs[i].n;
        if (seqs[i].rc == 0 && session_push_tokens(s, seqs[i].tokens, seqs[i].n) < 0)
            seqs[i].rc = sw_errf(&seqs[i].err, SW_ENOMEM, "out of memory");
        if (seqs[i].rc == 0 && s->phase == SESS_PREFILL)
            s->n_fed += seqs[i].n;
        session_account(e, s);
    }
    e->stats.steps++;
    e->stats.forward_calls += n_run > 0;
    e->stats.forward_seqs += (uint64_t)n_run;
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < n; i++) {
        session *s = seqs[i].s;
        if (seqs[i].rc < 0)
            finish_job(e, s, SW_FINISH_ERROR, seqs[i].err.msg);
        else if (seqs[i].logits)
            sample_next(e, s, now);
    }
    pthread_mutex_lock(&e->mu);
    e->stats.busy_s += engine_now() - t0;
    bool stale = engine_now() - e->store_snap_t > 0.25;
    pthread_mutex_unlock(&e->mu);
    if (stale)
        engine_snapshot_store(e);
}

/* --- the thread ------------------------------------------------------------------ */

static void engine_shutdown(sw_engine *e)
{
    for (int i = 0; i < e->n_sess; i++)
        if (e->sess && e->sess[i].job)
            finish_job(e, &e->sess[i], SW_FINISH_CANCEL, NULL);
    pthread_mutex_lock(&e->mu);
    admit(e); /* with stopping set, drops every queued job */
    pthread_cond_broadcast(&e->cv_state);
    pthread_mutex_unlock(&e->mu);
}

static void engine_loaded(sw_engine *e, int rc, const sw_err *err)
{
    pthread_mutex_lock(&e->mu);
    if (rc < 0) {
        snprintf(e->error, sizeof e->error, "%s", err->msg);
        atomic_store(&e->state, SW_ENGINE_FAILED);
    } else if (atomic_load(&e->state) == SW_ENGINE_LOADING) {
        atomic_store(&e->state, e->draining ? SW_ENGINE_STOPPING : SW_ENGINE_READY);
    }
    pthread_cond_broadcast(&e->cv_state);
    pthread_mutex_unlock(&e->mu);
    if (rc < 0) {
        LOG_EVENT(LOG_ERROR, "model load failed", LOG_S("path", e->path), LOG_S("error", err->msg));
        return;
    }
    const sw_model_desc *d = &e->desc;
    LOG_EVENT(LOG_INFO, "model loaded", LOG_S("model", d->name), LOG_S("path", d->path),
              LOG_S("arch", d->arch), LOG_S("quant", d->quant), LOG_S("store", e->store_snap.mode),
              LOG_I("n_ctx", d->n_ctx),
              LOG_I("parallel", d->n_parallel), LOG_I("sessions", d->n_sessions),
              LOG_S("kv_type", d->kv_type), LOG_I("kv_budget", (long long)d->kv_budget),
              LOG_F("load_s", d->load_s));
    if (d->template_fallback)
        LOG_EVENT(LOG_WARN, "the model has no chat template; using ChatML",
                  LOG_S("model", d->name));
}

void *engine_thread_main(void *arg)
{
    sw_engine *e = arg;
    sw_err err = {0};
    int rc = engine_load(e, &err);
    if (rc == 0)
        engine_snapshot_store(e);
    engine_loaded(e, rc, &err);
    if (rc < 0)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        if (e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        admit(e);
        if (e->n_active == 0) {
            pthread_mutex_unlock(&e->mu);
            idle_wait(e);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        engine_step(e);
    }
    engine_shutdown(e);
    return NULL;
}
