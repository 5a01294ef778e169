/*
 * bench_replay.c — `spillway bench --replay` (bench_replay.h) and the store
 * report both bench modes share.
 */
#include "cli/bench_replay.h"
#include "cli/bench_route.h" /* ROUTE_WINDOW */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/model.h"
#include "store/read_probe.h"
#include "store/store_replay.h"
#include "store/trace.h"

/* --- shared with cmd_bench.c ------------------------------------------------ */

int64_t bench_peak_rss(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? -1 : (int64_t)ru.ru_maxrss * 1024;
}

void bench_fmt_bytes(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2f GB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2f MB", v / 1e6);
    else
        snprintf(buf, n, "%.1f kB", v / 1e3);
}

json_t *bench_store_json(const store_stats *s)
{
    return json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:f, s:f, s:f}",
        "policy", s->policy ? s->policy : "", "reader", s->reader ? s->reader : "",
        "resident_bytes", (json_int_t)s->resident_bytes, "slot_bytes", (json_int_t)s->slot_bytes,
        "capacity", (json_int_t)s->capacity, "total_entries", (json_int_t)s->total_entries,
        "requests", (json_int_t)s->requests, "hits", (json_int_t)s->hits, "misses",
        (json_int_t)s->misses, "prefetch_issued", (json_int_t)s->prefetch_issued,
        "prefetch_hits", (json_int_t)s->prefetch_hits, "prefetch_wasted",
        (json_int_t)s->prefetch_wasted, "evictions", (json_int_t)s->evictions, "reads",
        (json_int_t)s->reads, "bytes_read_total", (json_int_t)s->bytes_read, "predicted",
        (json_int_t)s->predicted, "predicted_right", (json_int_t)s->predicted_right,
        "read_errors", (json_int_t)s->read_errors, "stall_s", s->stall_s, "read_p50_us",
        s->lat_p50_us, "read_p99_us", s->lat_p99_us);
}

/* --- the trace's routing over the replayed layers ------------------------- */

typedef struct trace_routing {
    int window;            /* tokens per window */
    int n_expert, top_k;
    double distinct_mean;  /* distinct experts per layer per window */
    double distinct_random;
    double reuse, reuse_random; /* share of a token's experts the previous token used */
} trace_routing;

/* Per-layer walk state. */
typedef struct layer_walk {
    uint32_t seq;
    int32_t token;         /* last token seen; -1 none */
    int32_t win;           /* current window index; -1 none */
    int count;             /* distinct experts in the window so far */
    uint16_t prev[TRACE_MAX_K];
    int n_prev;
    unsigned char *seen;   /* [n_expert] */
} layer_walk;

static int window_of(const trace *t)
{
    int longest = 0;
    for (size_t i = 0; i < t->n_seqs; i++)
        if (t->seqs[i].n_tokens > longest)
            longest = t->seqs[i].n_tokens;
    return longest < ROUTE_WINDOW ? longest : ROUTE_WINDOW;
}

/* Ends w's window: counted if complete (sequences end in a partial one). */
static void window_close(const trace *t, int window, layer_walk *w, double *win_sum,
                         uint64_t *n_win)
{
    if (w->win < t->seqs[w->seq].n_tokens / window)
        *win_sum += w->count, ++*n_win;
    w->count = 0;
    memset(w->seen, 0, (size_t)t->n_experts);
}

static void walk_step(const trace *t, const trace_step *st, int window, layer_walk *w,
                      double *win_sum, uint64_t *n_win, uint64_t reuse[2])
{
    const uint16_t *ex = t->experts + st->off;
    int32_t win = st->token / window;
    if (w->token >= 0 && (w->seq != st->seq || w->win != win))
        window_close(t, window, w, win_sum, n_win);
    if (w->token >= 0 && w->seq == st->seq && w->token + 1 == st->token) {
        for (int k = 0; k < st->n; k++) {
            int hit = 0;
            for (int j = 0; j < w->n_prev && !hit; j++)
                hit = w->prev[j] == ex[k];
            reuse[0] += (uint64_t)hit;
        }
        reuse[1] += st->n;
    }
    for (int k = 0; k < st->n; k++)
        if (!w->seen[ex[k]]++)
            w->count++;
    memcpy(w->prev, ex, sizeof *ex * st->n);
    w->n_prev = st->n;
    w->seq = st->seq;
    w->token = st->token;
    w->win = win;
}

static int routing_compute(store *s, const trace *t, const store_replay_result *r,
                           trace_routing *out)
{
    *out = (trace_routing){.window = window_of(t), .top_k = t->top_k,
                           .distinct_mean = NAN, .reuse = NAN};
    if (out->window <= 0 || r->first_layer < 0)
        return 0;
    int nl = t->n_layers;
    layer_walk *w = calloc((size_t)nl, sizeof *w);
    unsigned char *seen = calloc((size_t)nl * (size_t)t->n_experts + 1, 1);
    if (!w || !seen) {
        free(w);
        free(seen);
        return -1;
    }
    for (int l = 0; l < nl; l++)
        w[l] = (layer_walk){.token = -1, .win = -1, .seen = seen + (size_t)l * t->n_experts};
    double win_sum = 0;
    uint64_t n_win = 0, reuse[2] = {0, 0};
    uint64_t tokens = 0; /* as the replay counts them: stop where it stopped */
    uint32_t cur_seq = UINT32_MAX;
    int32_t cur_tok = -1;
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *st = &t->steps[i];
        if (store_n_experts(s, st->layer) <= 0)
            continue;
        if (st->seq != cur_seq || st->token != cur_tok) {
            if (tokens == r->tokens)
                break;
            cur_seq = st->seq, cur_tok = st->token, tokens++;
        }
        walk_step(t, st, out->window, &w[st->layer], &win_sum, &n_win, reuse);
    }
    for (int l = 0; l < nl; l++) /* the last window of each layer */
        if (w[l].token >= 0)
            window_close(t, out->window, &w[l], &win_sum, &n_win);
    free(w);
    free(seen);
    out->n_expert = t->n_experts; /* the routing's own choice set, not the model's */
    double p = out->n_expert ? (double)out->top_k / out->n_expert : NAN;
    out->distinct_mean = n_win ? win_sum / (double)n_win : NAN;
    out->distinct_random = out->n_expert * (1 - pow(1 - p, out->window));
    out->reuse = reuse[1] ? (double)reuse[0] / (double)reuse[1] : NAN;
    out->reuse_random = p;
    return 0;
}

/* --- reporting -------------------------------------------------------------- */

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int print_json(const bench_replay_args *a, const trace *t, const store_replay_result *r,
                      const trace_routing *rt, const read_probe_result *d, int64_t peak_rss)
{
    const store_stats *s = &r->after;
    uint64_t req = store_replay_requests(r), bytes = store_replay_bytes(r);
    double tok = (double)r->tokens;
    json_t *routing = json_pack(
        "{s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "n_expert", rt->n_expert, "n_expert_used",
        rt->top_k, "window", rt->window, "distinct_mean", num(rt->distinct_mean),
        "distinct_random", num(rt->distinct_random), "reuse_prev", num(rt->reuse),
        "reuse_random", num(rt->reuse_random));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:i, s:f, s:f, s:o, s:o, s:o, "
        "s:I, s:o, s:o, s:o, s:I, s:I, s:o, s:o}",
        "mode", "replay", "model", a->model_path, "trace", a->trace_path, "store_mode",
        store_mode_name(s->mode), "tokens", (json_int_t)r->tokens, "steps",
        (json_int_t)r->steps, "picks", (json_int_t)r->picks, "skipped_rows",
        (json_int_t)r->skipped_rows, "layers_replayed", r->layers, "first_layer",
        r->first_layer, "last_layer", r->last_layer, "trace_layers", t->n_layers, "seconds",
        r->seconds, "compute_us_per_layer", a->compute_us, "time_per_token_ms",
        num(tok ? 1e3 * r->seconds / tok : NAN), "tokens_per_s",
        num(r->seconds > 0 ? tok / r->seconds : NAN), "hit_rate",
        req ? json_real(store_replay_hit_rate(r)) : json_null(), "bytes_read",
        (json_int_t)bytes, "bytes_read_per_token", num(tok ? (double)bytes / tok : NAN),
        "read_gbs", num(r->seconds > 0 ? (double)bytes / r->seconds / 1e9 : NAN), "stall_s",
        num(s->stall_s - r->before.stall_s), "cache_budget_bytes", (json_int_t)s->cache_budget,
        "peak_rss_bytes", (json_int_t)peak_rss, "routing", routing, "store",
        bench_store_json(s));
    if (!j)
        return -1;
    if (d->reads) {
        double bound = bytes ? d->gbs * 1e9 * tok / (double)bytes : 0;
        json_object_set_new(j, "disk", json_pack("{s:f, s:I, s:f, s:f, s:f, s:s}", "read_gbs",
                                                 d->gbs, "reads", (json_int_t)d->reads,
                                                 "mean_read_bytes", d->mean_read_bytes,
                                                 "read_p50_us", d->p50_us, "read_p99_us",
                                                 d->p99_us, "reader", d->mode));
        json_object_set_new(j, "disk_bound_tps", num(bound > 0 ? bound : NAN));
        json_object_set_new(j, "fraction_of_disk_bound",
                            num(bound > 0 && r->seconds > 0 ? tok / r->seconds / bound : NAN));
    }
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!txt)
        return -1;
    puts(txt);
    free(txt);
    return 0;
}

static void print_text(const bench_replay_args *a, const trace *t, const store_replay_result *r,
                       const trace_routing *rt, const read_probe_result *d, int64_t peak_rss)
{
    const store_stats *s = &r->after;
    uint64_t req = store_replay_requests(r), bytes = store_replay_bytes(r);
    double tok = r->tokens ? (double)r->tokens : 1;
    char rd[32], per_tok[32], budget[32];
    bench_fmt_bytes(rd, sizeof rd, (double)bytes);
    bench_fmt_bytes(per_tok, sizeof per_tok, (double)bytes / tok);
    bench_fmt_bytes(budget, sizeof budget, (double)s->cache_budget);
    printf("model        %s (store: %s)\n", a->model_path, store_mode_name(s->mode));
    printf("trace        %s: %llu tokens, layers %d-%d of its %d replayed",
           a->trace_path, (unsigned long long)r->tokens, r->first_layer, r->last_layer,
           t->n_layers);
    if (r->skipped_rows)
        printf(" (%llu rows of layers the model lacks skipped)",
               (unsigned long long)r->skipped_rows);
    printf("\nreplay       %.3f s, %.2f ms per token (%.1f tok/s), compute %.0f us per layer\n",
           r->seconds, 1e3 * r->seconds / tok, tok / (r->seconds > 0 ? r->seconds : 1),
           a->compute_us);
    if (s->mode == STORE_STREAM)
        printf("cache        %s (%lld of %lld experts, %s, %s)\n", budget, (long long)s->capacity,
               (long long)s->total_entries, s->policy, s->reader);
    printf("hits         %.1f%% of %llu requests; prefetch %llu issued, %llu hits, %llu wasted\n",
           req ? 100.0 * store_replay_hit_rate(r) : 0.0, (unsigned long long)req,
           (unsigned long long)(s->prefetch_issued - r->before.prefetch_issued),
           (unsigned long long)(s->prefetch_hits - r->before.prefetch_hits),
           (unsigned long long)(s->prefetch_wasted - r->before.prefetch_wasted));
    printf("reads        %s (%s per token), %.2f GB/s over the replay, stalled %.3f s, "
           "latency p50 %.0f us, p99 %.0f us\n",
           rd, per_tok, r->seconds > 0 ? (double)bytes / r->seconds / 1e9 : 0.0,
           s->stall_s - r->before.stall_s, s->lat_p50_us, s->lat_p99_us);
    if (isfinite(rt->distinct_mean) || isfinite(rt->reuse))
        printf("routing      top-%d of %d; distinct experts per layer per %d tokens %.1f (random "
               "%.1f); reused from the previous token %.1f%% (random %.1f%%)\n",
               rt->top_k, rt->n_expert, rt->window, rt->distinct_mean, rt->distinct_random,
               100 * rt->reuse, 100 * rt->reuse_random);
    if (d->reads && bytes) {
        double bound = d->gbs * 1e9 * tok / (double)bytes;
        printf("disk         %.2f GB/s (%llu random expert reads of %.0f kB, %s); bound %.1f "
               "tok/s at this replay's bytes per token: the replay reaches %.1f%% of it\n",
               d->gbs, (unsigned long long)d->reads, d->mean_read_bytes / 1e3, d->mode, bound,
               100 * tok / (r->seconds > 0 ? r->seconds : 1) / bound);
    }
    printf("peak RSS     %.1f MiB (before the disk probe)\n",
           (double)peak_rss / (1024.0 * 1024.0));
}

/* --- the replay ------------------------------------------------------------- */

int bench_replay(const bench_replay_args *a, sw_err *err)
{
    trace t;
    trace_init(&t);
    store *st = NULL;
    model *m = NULL;
    store_replay_result r = {0};
    trace_routing rt = {0};
    int rc = trace_load(&t, a->trace_path, err);
    if (rc == 0 && (rc = store_open_opts(a->model_path, &a->store, &st, err)) == 0 &&
        (rc = model_load(st, NULL, &m, err)) == 0) { /* binds the experts */
        store_replay_opts ro = {.compute_us = a->compute_us, .max_tokens = a->max_tokens};
        rc = store_replay_run(st, &t, &ro, &r, err);
    }
    if (rc == 0 && routing_compute(st, &t, &r, &rt) < 0)
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    read_probe_result d = {0};
    int64_t peak_rss = bench_peak_rss(); /* before the probe's buffers */
    if (rc == 0 && a->disk_probe_s > 0)
        rc = read_probe_run(a->model_path, &(read_probe_opts){.seconds = a->disk_probe_s}, &d, err);
    if (rc == 0 && a->json)
        rc = print_json(a, &t, &r, &rt, &d, peak_rss) ? sw_errf(err, SW_EIO, "could not write the report")
                                           : 0;
    else if (rc == 0)
        print_text(a, &t, &r, &rt, &d, peak_rss);
    model_free(m);
    store_close(st);
    trace_free(&t);
    return rc;
}
