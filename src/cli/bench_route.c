/*
 * bench_route.c — routing statistics of `spillway bench` (bench_route.h).
 */
#include "cli/bench_route.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bench_route_hook(void *ctx, const model_route *r)
{
    route_log *log = ctx;
    if (log->step < 0 || r->layer < 0 || r->layer >= log->n_layer)
        return;
    int distinct = 0;
    for (int e = 0; e < r->n_expert; e++) {
        for (int i = 0; i < r->n_tokens * r->n_used; i++)
            if (r->experts[i] == e) {
                distinct++;
                break;
            }
    }
    log->expert_bytes += distinct * log->per_expert[r->layer];
    if (r->n_tokens != 1 || r->n_used > log->n_used || log->step >= log->n_steps)
        return;
    int *dst = log->experts + ((size_t)log->step * log->n_layer + r->layer) * log->n_used;
    memcpy(dst, r->experts, sizeof(int) * (size_t)r->n_used);
}

static const int *route_at(const route_log *log, int step, int layer)
{
    return log->experts + ((size_t)step * log->n_layer + layer) * log->n_used;
}

static double layer_distinct(const route_log *log, int layer, int window, unsigned char *seen)
{
    int n_win = log->n_steps / window;
    double sum = 0;
    for (int w = 0; w < n_win; w++) {
        memset(seen, 0, (size_t)log->n_expert);
        int cnt = 0;
        for (int s = w * window; s < (w + 1) * window; s++)
            for (int k = 0; k < log->n_used; k++) {
                int e = route_at(log, s, layer)[k];
                if (e >= 0 && e < log->n_expert && !seen[e])
                    seen[e] = 1, cnt++;
            }
        sum += cnt;
    }
    return sum / n_win;
}

static double layer_reuse(const route_log *log, int layer)
{
    long hits = 0, total = 0;
    for (int s = 1; s < log->n_steps; s++) {
        const int *cur = route_at(log, s, layer), *prev = route_at(log, s - 1, layer);
        for (int k = 0; k < log->n_used; k++) {
            for (int j = 0; j < log->n_used; j++)
                if (cur[k] == prev[j]) {
                    hits++;
                    break;
                }
            total++;
        }
    }
    return total ? (double)hits / (double)total : NAN;
}

int route_stats_compute(const route_log *log, route_stats *rs)
{
    *rs = (route_stats){.distinct = calloc((size_t)log->n_layer, sizeof(double))};
    unsigned char *seen = malloc((size_t)log->n_expert);
    if (!rs->distinct || !seen) {
        free(seen);
        return -1;
    }
    rs->window = log->n_steps < ROUTE_WINDOW ? log->n_steps : ROUTE_WINDOW;
    double reuse_sum = 0, distinct_sum = 0;
    int n_reuse = 0;
    for (int l = 0; l < log->n_layer; l++) {
        rs->distinct[l] = NAN;
        if (route_at(log, 0, l)[0] < 0)
            continue; /* not a MoE layer */
        rs->distinct[l] = layer_distinct(log, l, rs->window, seen);
        distinct_sum += rs->distinct[l];
        rs->n_moe_layers++;
        double r = layer_reuse(log, l);
        if (!isnan(r))
            reuse_sum += r, n_reuse++;
    }
    free(seen);
    double p = (double)log->n_used / log->n_expert;
    rs->distinct_mean = rs->n_moe_layers ? distinct_sum / rs->n_moe_layers : NAN;
    rs->distinct_random = log->n_expert * (1 - pow(1 - p, rs->window));
    rs->reuse = n_reuse ? reuse_sum / n_reuse : NAN;
    rs->reuse_random = p;
    return 0;
}

