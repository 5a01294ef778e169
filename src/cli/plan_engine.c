/*
 * plan_engine.c — runs a model over a text through a streaming store and
 * collects the predictors' records (plan_engine.h).
 */
#include "cli/plan_engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "util/pool.h"

/* The budget for share of the experts: entries x slot bytes of the file's
 * streaming store (opened once to learn them). */
static int budget_for(const char *path, double share, int64_t *bytes, sw_err *err)
{
    store *st;
    int rc = store_open_opts(path, &(store_opts){.mode = STORE_STREAM, .cache_bytes = 1}, &st,
                             err);
    if (rc)
        return rc;
    store_stats s;
    store_stats_get(st, &s);
    store_close(st);
    if (!s.total_entries)
        return sw_errf(err, SW_EUNSUPPORTED, "%s has no routed experts", path);
    *bytes = (int64_t)(share * (double)s.total_entries + 0.5) * s.slot_bytes;
    return 0;
}

static void collect(store *st, plan_engine_result *r)
{
    store_stats_get(st, &r->st);
    for (int k = 0; k < STORE_N_PREDICTORS; k++)
        for (int l = 0; l < r->n_layers; l++)
            store_predictor_stats(st, k, l,
                                  r->pred + ((size_t)k * (size_t)r->n_layers + (size_t)l) * 3);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int plan_engine_measure(const char *path, const char *text, size_t len, double share,
                        int max_tokens, bool hints, plan_engine_result *r, sw_err *err)
{
    memset(r, 0, sizeof *r);
    store *st = NULL;
    model *m = NULL;
    model_state *s = NULL;
    kv_cache *kv = NULL;
    sw_pool *pool = NULL;
    tokenizer *tok = NULL;
    int32_t *ids = NULL;
    float *logits = NULL; /* [n_vocab] */
    size_t n_ids = 0;
    int64_t budget = 0;
    int rc;
    if ((rc = budget_for(path, share, &budget, err)) ||
        (rc = store_open_opts(path, &(store_opts){.mode = STORE_STREAM, .cache_bytes = budget,
                                              .no_hints = !hints},
                              &st, err)) ||
        (rc = model_load(st, NULL, &m, err)) || (rc = tok_load(store_gguf(st), &tok, err)) ||
        (rc = tok_encode(tok, text, len, TOK_ADD_BOS, &ids, &n_ids, err)))
        goto done;
    if (max_tokens > 0 && n_ids > (size_t)max_tokens)
        n_ids = (size_t)max_tokens;
    model_info info;
    model_get_info(m, &info);
    if (info.n_ctx_train > 0 && n_ids > (size_t)info.n_ctx_train)
        n_ids = (size_t)info.n_ctx_train;
    kv_cache_opts ko = {.n_ctx = (int)n_ids};
    if ((rc = kv_cache_new(m, &ko, &kv, err)) || (rc = model_state_new(m, NULL, &s, err)) ||
        (rc = sw_pool_create(0, &pool, err)))
        goto done;
    r->n_layers = info.n_layer;
    r->pred = calloc((size_t)STORE_N_PREDICTORS * (size_t)info.n_layer * 3, sizeof *r->pred);
    if (!r->pred) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto done;
    }
    if (!(logits = malloc(sizeof *logits * (size_t)info.n_vocab))) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto done;
    }
    double t0 = now_s();
    for (size_t i = 0; i < n_ids; i++) /* one token per step, as decoding runs */
        if ((rc = model_forward(m, s, kv, pool, &ids[i], 1, logits, MODEL_LOGITS_LAST, err)))
            goto done;
    r->seconds = now_s() - t0;
    r->n_tokens = (int)n_ids;
    collect(st, r);
done:
    free(logits);
    free(ids);
    tok_free(tok);
    sw_pool_destroy(pool);
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
    if (rc)
        plan_engine_free(r);
    return rc;
}

void plan_engine_free(plan_engine_result *r)
{
    free(r->pred);
    r->pred = NULL;
}
