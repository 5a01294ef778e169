/*
 * store_replay.c — a routing trace driven through a real store
 * (store_replay.h has the walk and how the trace is fitted to the model).
 */
#include "store/store_replay.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Busy until `us` microseconds have passed: compute keeps a core busy. */
static void spin_us(double us)
{
    if (us <= 0)
        return;
    double end = now_s() + us * 1e-6;
    while (now_s() < end) {
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The step's experts, distinct and ascending, into out[TRACE_MAX_K]. */
static int step_experts(const trace *t, const trace_step *st, int *out)
{
    int n = 0;
    for (int i = 0; i < st->n && i < TRACE_MAX_K; i++)
        out[n++] = t->experts[st->off + (uint32_t)i];
    qsort(out, (size_t)n, sizeof *out, cmp_int);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!m || out[i] != out[m - 1])
            out[m++] = out[i];
    return m;
}

int store_replay_check(store *s, const trace *t, sw_err *err)
{
    size_t usable = 0;
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *st = &t->steps[i];
        int n_exp = store_n_experts(s, st->layer);
        if (n_exp <= 0)
            continue;
        usable++;
        for (int k = 0; k < st->n; k++) {
            int e = t->experts[st->off + (uint32_t)k];
            if (e >= n_exp)
                return sw_errf(err, SW_EINVAL,
                               "trace sequence '%s' token %d layer %d picks expert %d, but the "
                               "model's layer %d has %d experts",
                               t->seqs[st->seq].dataset, st->token, st->layer, e, st->layer,
                               n_exp);
        }
    }
    if (!usable)
        return sw_errf(err, SW_EINVAL,
                       "no trace row fits the model: its %d layers have no experts bound there",
                       t->n_layers);
    return 0;
}

/* One (token, layer) step: plan, then each expert requested, held for its
 * share of the compute time, released. */
static int replay_step(store *s, const trace *t, const trace_step *st, double compute_us,
                       store_replay_result *r, sw_err *err)
{
    int ex[TRACE_MAX_K];
    int n = step_experts(t, st, ex);
    int rc = store_expert_plan(s, st->layer, ex, n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        store_mat g, u, d;
        if ((rc = store_expert(s, st->layer, ex[i], &g, &u, &d, err)))
            return rc;
        spin_us(compute_us / n);
        store_expert_release(s, st->layer, ex[i]);
        r->picks++;
    }
    return 0;
}

int store_replay_run(store *s, const trace *t, const store_replay_opts *o, store_replay_result *out,
                     sw_err *err)
{
    store_replay_opts opts = o ? *o : (store_replay_opts){0};
    memset(out, 0, sizeof *out);
    out->first_layer = -1;
    int rc = store_replay_check(s, t, err);
    if (rc)
        return rc;
    bool *seen = calloc((size_t)t->n_layers + 1, sizeof *seen);
    if (!seen)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    store_stats_get(s, &out->before);
    double t0 = now_s();
    uint32_t cur_seq = UINT32_MAX;
    int32_t cur_tok = -1;
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *st = &t->steps[i];
        if (store_n_experts(s, st->layer) <= 0) {
            out->skipped_rows++;
            continue;
        }
        if (st->seq != cur_seq || st->token != cur_tok) {
            if (opts.max_tokens && out->tokens == opts.max_tokens)
                break;
            cur_seq = st->seq;
            cur_tok = st->token;
            out->tokens++;
        }
        if ((rc = replay_step(s, t, st, opts.compute_us, out, err)))
            break;
        out->steps++;
        if (!seen[st->layer]) {
            seen[st->layer] = true;
            out->layers++;
        }
        if (out->first_layer < 0 || st->layer < out->first_layer)
            out->first_layer = st->layer;
        if (st->layer > out->last_layer)
            out->last_layer = st->layer;
    }
    out->seconds = now_s() - t0;
    out->compute_s = opts.compute_us * 1e-6 * (double)out->steps;
    store_stats_get(s, &out->after);
    free(seen);
    return rc;
}
