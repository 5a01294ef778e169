/*
 * bench_route.h — the routing statistics of `spillway bench`: what the
 * router chose in each decode step (recorded through the model's routing
 * hook), the expert bytes those choices read, and how concentrated the
 * choices are: distinct experts per layer per window of 100 tokens (fewer
 * tokens: one window of all of them), and the share of a token's experts
 * that the previous token also used, each beside what uniformly random
 * routing would give.
 */
#ifndef SW_CLI_BENCH_ROUTE_H
#define SW_CLI_BENCH_ROUTE_H

#include "model/model.h"

#define ROUTE_WINDOW 100 /* tokens per distinct-experts window */

typedef struct route_log {
    const double *per_expert; /* [n_layer]: bytes of one expert of the layer */
    int n_layer, n_expert, n_used;
    int n_steps, step;    /* decode steps recorded; -1: not recording */
    int *experts;         /* [n_steps][n_layer][n_used], -1 where no record */
    double expert_bytes;  /* summed over recorded steps */
} route_log;

/* model_route_fn: ctx is a route_log; records single-token steps while
 * step >= 0, and adds every step's distinct experts' bytes. */
void bench_route_hook(void *ctx, const model_route *r);

typedef struct route_stats {
    int window;              /* tokens per window */
    int n_moe_layers;
    double *distinct;        /* [n_layer] mean distinct experts per window; NAN if dense */
    double distinct_mean, distinct_random;
    double reuse, reuse_random;
} route_stats;

/* From a log of n_steps >= 1 steps; -1 out of memory. rs->distinct is
 * malloc'd. */
int route_stats_compute(const route_log *log, route_stats *rs);

#endif
