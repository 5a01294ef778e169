/*
 * test_store_plan.c — store_expert_plan on a full streaming cache: making
 * room for a step's absent experts never evicts a present one the same
 * step is about to use (expert_cache.h, "store_expert_plan reserves"); a
 * budget set between steps applies at store_maintain.
 */
#include "test.h"

#include <stdio.h>

#include "store/store.h"

/* Plans (layer, experts[0..n)), then requests and releases each. */
static int step(store *st, int layer, const int *experts, int n, sw_err *err)
{
    int rc = store_expert_plan(st, layer, experts, n, err);
    for (int i = 0; i < n && !rc; i++) {
        store_mat g, u, d;
        if (!(rc = store_expert(st, layer, experts[i], &g, &u, &d, err)))
            store_expert_release(st, layer, experts[i]);
    }
    return rc;
}

/* tinymoe streamed with a cache of `entries` experts, least recently used
 * out, no read-ahead, layers 0 .. n_layers-1 bound; *slot: bytes per entry. */
static store *open_lru(int entries, int n_layers, int64_t *slot, sw_err *err)
{
    const char *path = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    store *st = NULL;
    if (store_open_opts(path, &(store_opts){.mode = STORE_STREAM}, &st, err))
        return NULL;
    store_stats s;
    store_stats_get(st, &s);
    store_close(st);
    *slot = s.slot_bytes;
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = entries * s.slot_bytes,
                    .policy = "lru", .prefetch = -1, .no_hints = true};
    if (store_open_opts(path, &o, &st, err))
        return NULL;
    for (int l = 0; l < n_layers; l++) {
        char g[64], u[64], d[64];
        snprintf(g, sizeof g, "blk.%d.ffn_gate_exps.weight", l);
        snprintf(u, sizeof u, "blk.%d.ffn_up_exps.weight", l);
        snprintf(d, sizeof d, "blk.%d.ffn_down_exps.weight", l);
        if (store_bind_experts(st, l, g, u, d, err)) {
            store_close(st);
            return NULL;
        }
    }
    return st;
}

TEST(store_plan_keeps_present_experts)
{
    sw_err err = {0};
    int64_t slot;
    store *st = open_lru(5, 2, &slot, &err); /* five entries */
    CHECKF(st, "%s", err.msg);
    store_stats s;
    store_stats_get(st, &s);
    CHECK_EQ(s.capacity, 5);
    /* fill the cache: layer 0's 5..8 (5 the least recently used), layer 1's 0 */
    CHECKF(!step(st, 0, (int[]){5, 6, 7, 8}, 4, &err), "%s", err.msg);
    CHECKF(!step(st, 1, (int[]){0}, 1, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.misses, 5);
    CHECK_EQ(s.entries, 5);
    /* expert 0 is absent and comes first; 5, the policy's victim, is needed
     * too: 0 must take 6's place, not 5's */
    CHECKF(!step(st, 0, (int[]){0, 5}, 2, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.misses, 6);
    CHECK_EQ(s.hits, 1);
    CHECK_EQ(s.evictions, 1);
    /* 6 went: asking for it again is a miss, 7 and 8 are still there */
    CHECKF(!step(st, 0, (int[]){7, 8}, 2, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.hits, 3);
    CHECKF(!step(st, 0, (int[]){6}, 1, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.misses, 7);
    store_close(st);
}

/* A budget set (or chosen by the pressure watcher) while no step runs is
 * applied by store_maintain at once, not at the next plan: an idle server
 * gives the memory back. */
TEST(store_maintain_applies_a_new_budget_between_steps)
{
    sw_err err = {0};
    int64_t slot;
    store *st = open_lru(8, 1, &slot, &err);
    CHECKF(st, "%s", err.msg);
    store_stats s;
    CHECKF(!step(st, 0, (int[]){0, 1, 2, 3}, 4, &err), "%s", err.msg);
    CHECKF(!step(st, 0, (int[]){4, 5, 6, 7}, 4, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.capacity, 8);
    CHECK_EQ(s.entries, 8);
    store_set_budget(st, 5 * slot);
    store_stats_get(st, &s);
    CHECK_EQ(s.entries, 8); /* set, not yet applied */
    store_maintain(st);
    store_stats_get(st, &s);
    CHECK_EQ(s.capacity, 5);
    CHECK_EQ(s.entries, 5);
    CHECK_EQ(s.evictions, 3);
    /* the most recently used stayed: 3..7 hit, 0 misses */
    uint64_t misses = s.misses;
    CHECKF(!step(st, 0, (int[]){3, 4, 5, 6}, 4, &err), "%s", err.msg);
    store_stats_get(st, &s);
    CHECK_EQ(s.misses, misses);
    /* below the fewest a step needs (n_expert_used), the budget stops there */
    store_set_budget(st, 0);
    store_maintain(st);
    store_stats_get(st, &s);
    CHECK_EQ(s.capacity, 4);
    store_maintain(st); /* nothing new: nothing changes */
    store_stats_get(st, &s);
    CHECK_EQ(s.capacity, 4);
    CHECK(s.entries <= 4);
    store_close(st);
}
