/*
 * engine_session.c — which session a job runs on, and what sessions cost.
 *
 * A session is a KV cache plus the token ids in it. Picking one for a job
 * (session_pick, under engine.mu, idle sessions only):
 *
 *   1. the most recently used session with the job's key (X-Session-Id, the
 *      OpenAI "user"): a conversation returns to its cache;
 *   2. else the session sharing the longest token prefix with the prompt,
 *      if that prefix is at least half of the shorter of the two — the
 *      prompt continues (or regenerates) that conversation rather than
 *      merely sharing a system prompt with it;
 *   3. else a session holding nothing;
 *   4. else the least recently used session.
 *
 * The job then re-runs only its tokens after the shared prefix (at least its
 * last token, whose logits are needed). Memory: a cache's pages are touched
 * only as positions fill, so a session costs its high-water mark of
 * positions times the bytes per position; session_prepare evicts idle
 * sessions, least recently used first, until the job's worst case fits the
 * budget. Running sessions are never evicted; when they alone exceed the
 * budget the job runs anyway (the budget is what idle caches may keep).
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

#include "util/log.h"

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

bool session_continues(const session *s, int lcp, const sw_job *j)
{
    int shorter = s->n_toks < j->n_prompt ? s->n_toks : j->n_prompt;
    return lcp > 0 && lcp * 2 >= shorter;
}

int session_pick(sw_engine *e, const sw_job *j, int *reuse)
{
    int keyed = -1, best = -1, best_lcp = -1, empty = -1, lru = -1;
    for (int i = 0; i < e->n_sess; i++) {
        session *s = &e->sess[i];
        if (s->job)
            continue;
        if (!s->kv || s->n_toks == 0) {
            if (empty < 0)
                empty = i;
            continue;
        }
        if (j->session_key && !strcmp(s->key, j->session_key) &&
            (keyed < 0 || s->last_used > e->sess[keyed].last_used))
            keyed = i;
        int lcp = common_prefix(s->toks, s->n_toks, j->prompt, j->n_prompt);
        if (lcp > best_lcp || (lcp == best_lcp && s->last_used > e->sess[best].last_used)) {
            best = i;
            best_lcp = lcp;
        }
        if (lru < 0 || s->last_used < e->sess[lru].last_used)
            lru = i;
    }
    int pick = keyed >= 0                                          ? keyed
               : best >= 0 && session_continues(&e->sess[best], best_lcp, j) ? best
               : empty >= 0                                        ? empty
               : lru >= 0                                          ? lru
                                                                   : best;
    if (pick < 0) /* cannot happen: n_sessions >= n_parallel */
        return -1;
    session *s = &e->sess[pick];
    int lcp = s->kv ? common_prefix(s->toks, s->n_toks, j->prompt, j->n_prompt) : 0;
    *reuse = lcp < j->n_prompt ? lcp : j->n_prompt - 1;
    return pick;
}

/* Drops a session's cache (engine thread, under mu). */
static void session_evict(sw_engine *e, session *s)
{
    kv_cache_free(s->kv);
    s->kv = NULL;
    e->kv_used -= (size_t)s->hw * e->kv_bpp;
    s->hw = 0;
    s->n_toks = 0;
    s->key[0] = 0;
    e->stats.evictions++;
}

/* Evicts idle sessions, LRU first, until `extra` more bytes fit. */
static void make_room(sw_engine *e, const session *keep, size_t extra)
{
    while (e->kv_used + extra > e->desc.kv_budget) {
        session *victim = NULL;
        for (int i = 0; i < e->n_sess; i++) {
            session *s = &e->sess[i];
            if (s != keep && !s->job && s->kv && (!victim || s->last_used < victim->last_used))
                victim = s;
        }
        if (!victim)
            return;
        LOG_EVENT(LOG_INFO, "session evicted", LOG_I("slot", victim->id),
                  LOG_S("session", victim->key), LOG_I("tokens", victim->n_toks),
                  LOG_I("kv_bytes", (long long)((size_t)victim->hw * e->kv_bpp)));
        session_evict(e, victim);
    }
}

int session_prepare(sw_engine *e, session *s, int reuse, int n_need, sw_err *err)
{
    size_t extra = n_need > s->hw ? (size_t)(n_need - s->hw) * e->kv_bpp : 0;
    pthread_mutex_lock(&e->mu);
    make_room(e, s, extra);
    pthread_mutex_unlock(&e->mu);
    if (!s->kv) {
        kv_cache_opts ko = {.n_ctx = e->n_ctx, .type = e->kv_qt};
        kv_cache *kv;
        int rc = kv_cache_new(e->m, &ko, &kv, err);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&e->mu);
        s->kv = kv;
        s->n_toks = s->hw = 0;
        pthread_mutex_unlock(&e->mu);
        reuse = 0;
    }
    if (!s->logits && !(s->logits = malloc(sizeof(float) * (size_t)e->n_vocab)))
        return sw_errf(err, SW_ENOMEM, "out of memory");
    if (reuse > kv_cache_pos(s->kv))
        reuse = kv_cache_pos(s->kv);
    int rc = kv_cache_truncate(s->kv, reuse, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&e->mu);
    s->n_toks = reuse;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int session_push_tokens(session *s, const int32_t *toks, int n)
{
    if (s->n_toks + n > s->toks_cap) {
        int cap = s->toks_cap ? s->toks_cap : 256;
        while (cap < s->n_toks + n)
            cap *= 2;
        int32_t *nt = realloc(s->toks, sizeof(int32_t) * (size_t)cap);
        if (!nt)
            return SW_ENOMEM;
        s->toks = nt;
        s->toks_cap = cap;
    }
    memcpy(s->toks + s->n_toks, toks, sizeof(int32_t) * (size_t)n);
    s->n_toks += n;
    return 0;
}

void session_account(sw_engine *e, session *s)
{
    int pos = s->kv ? kv_cache_pos(s->kv) : 0;
    if (pos > s->hw) {
        e->kv_used += (size_t)(pos - s->hw) * e->kv_bpp;
        s->hw = pos;
    }
}

void session_free_all(sw_engine *e)
{
    for (int i = 0; e->sess && i < e->n_sess; i++) {
        kv_cache_free(e->sess[i].kv);
        free(e->sess[i].toks);
        free(e->sess[i].logits);
    }
}
