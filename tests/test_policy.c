/* Tests for src/store/policy: each policy's eviction order on scripted
 * sequences, pinning, resizing, and a randomized check against a shadow set. */
#include "test.h"

#include <stdlib.h>

#include "store/policy.h"

#define K(l, e) policy_key_make((l), (e))

static policy *make(policy_kind kind, size_t cap)
{
    policy *p = NULL;
    sw_err err = {0};
    if (policy_create(kind, cap, &p, &err))
        fprintf(stderr, "    policy_create: %s\n", err.msg);
    return p;
}

/* A demand miss as the cache does it: room is assumed, insert, first use. */
static int load(policy *p, policy_key k)
{
    int rc = policy_insert(p, k, NULL);
    return rc ? rc : policy_touch(p, k, false);
}

/* Evicts the victim and returns its key (or UINT32_MAX when none). */
static policy_key evict(policy *p)
{
    policy_key v;
    if (policy_victim(p, &v))
        return UINT32_MAX;
    if (policy_remove(p, v))
        return UINT32_MAX - 1;
    return v;
}

TEST(policy_names)
{
    sw_err err = {0};
    policy_kind k;
    for (int i = 0; i < POLICY_KIND_COUNT; i++) {
        CHECK_EQ(policy_kind_parse(policy_kind_name((policy_kind)i), &k, &err), 0);
        CHECK_EQ((int)k, i);
    }
    CHECK_EQ(policy_kind_parse("arc", &k, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "stale");
    CHECK_EQ(policy_key_layer(K(61, 255)), 61);
    CHECK_EQ(policy_key_expert(K(61, 255)), 255);
}

TEST(policy_lru_order)
{
    policy *p = make(POLICY_LRU, 3);
    CHECK(p);
    CHECK_EQ(load(p, K(0, 1)), 0);
    CHECK_EQ(load(p, K(0, 2)), 0);
    CHECK_EQ(load(p, K(0, 3)), 0);
    CHECK(policy_full(p));
    CHECK_EQ(policy_insert(p, K(0, 4), NULL), SW_EINVAL); /* full: evict first */
    CHECK_EQ(policy_touch(p, K(0, 1), true), 0);
    CHECK_EQ(evict(p), K(0, 2));
    CHECK_EQ(load(p, K(0, 4)), 0);
    CHECK_EQ(evict(p), K(0, 3));
    CHECK_EQ(evict(p), K(0, 1));
    CHECK_EQ(evict(p), K(0, 4));
    CHECK_EQ(evict(p), UINT32_MAX); /* empty */
    CHECK_EQ(policy_touch(p, K(0, 4), true), SW_ENOTFOUND);
    policy_stats st = policy_get_stats(p);
    CHECK_EQ(st.hits, 1);
    CHECK_EQ(st.misses, 4);
    CHECK_EQ(st.inserts, 4);
    CHECK_EQ(st.removes, 4);
    policy_destroy(p);
}

TEST(policy_lfu_order)
{
    policy *p = make(POLICY_LFU, 3);
    CHECK(p);
    CHECK_EQ(load(p, K(0, 1)), 0);
    CHECK_EQ(load(p, K(0, 2)), 0);
    CHECK_EQ(load(p, K(0, 3)), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(policy_touch(p, K(0, 1), true), 0);
    CHECK_EQ(policy_touch(p, K(0, 3), true), 0);
    /* counts 4, 1, 2: the least used goes first, then ties by age */
    CHECK_EQ(evict(p), K(0, 2));
    CHECK_EQ(evict(p), K(0, 3));
    policy_destroy(p);

    /* decay: 8 early uses of A are outweighed by recent single uses once
     * enough half-lives (64 accesses at this size) have passed */
    p = make(POLICY_LFU, 3);
    CHECK(p);
    CHECK_EQ(load(p, K(0, 1)), 0);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(policy_touch(p, K(0, 1), true), 0);
    CHECK_EQ(load(p, K(0, 2)), 0);
    CHECK_EQ(load(p, K(0, 3)), 0);
    CHECK_EQ(evict(p), K(0, 2)); /* A still dominates */
    CHECK_EQ(load(p, K(0, 2)), 0);
    for (int i = 0; i < 64 * 5; i++)
        CHECK_EQ(policy_touch(p, K(0, 5 < i % 7 ? 2 : 3), true), 0);
    CHECK_EQ(policy_touch(p, K(0, 2), true), 0);
    CHECK_EQ(policy_touch(p, K(0, 3), true), 0);
    /* A's 8 uses are 5 half-lives old: 8/32 < 1 */
    CHECK_EQ(evict(p), K(0, 1));
    policy_destroy(p);
}

TEST(policy_lfu_rescale_keeps_order)
{
    /* half-life 64 accesses: the weight passes 2^256 after 16384 touches and
     * the counts are rescaled; the order must not change */
    policy *p = make(POLICY_LFU, 4);
    CHECK(p);
    for (int e = 0; e < 4; e++)
        CHECK_EQ(load(p, K(0, e)), 0);
    for (int i = 0; i < 40000; i++)
        CHECK_EQ(policy_touch(p, K(0, i % 10 < 6 ? 0 : i % 10 < 9 ? 1 : 2), true), 0);
    CHECK_EQ(evict(p), K(0, 3));
    CHECK_EQ(evict(p), K(0, 2));
    CHECK_EQ(evict(p), K(0, 1));
    CHECK_EQ(evict(p), K(0, 0));
    policy_destroy(p);
}

TEST(policy_s3fifo_order)
{
    /* capacity 10: the small FIFO's target is 1 entry */
    policy *p = make(POLICY_S3FIFO, 10);
    CHECK(p);
    for (int e = 0; e < 10; e++)
        CHECK_EQ(load(p, K(0, e)), 0);
    CHECK_EQ(policy_touch(p, K(0, 0), true), 0); /* used again: will be promoted */
    CHECK_EQ(policy_touch(p, K(0, 2), true), 0);
    /* the small FIFO's tail: 0 was reused (moves to main), 1 was not */
    CHECK_EQ(evict(p), K(0, 1));
    CHECK_EQ(evict(p), K(0, 3)); /* 2 promoted on the way */
    CHECK(!policy_contains(p, K(0, 1)));
    /* 1 is a ghost now: coming back it goes to main, so the next victims
     * are still small's (4, 5, ...), not 1 */
    CHECK_EQ(load(p, K(0, 1)), 0);
    CHECK_EQ(load(p, K(0, 10)), 0);
    CHECK_EQ(evict(p), K(0, 4));
    CHECK_EQ(evict(p), K(0, 5));
    /* empty the small FIFO; then main evicts in FIFO order with second
     * chances: 0 and 2 (promoted first) lost their count on promotion */
    for (int e = 6; e < 10; e++)
        CHECK_EQ(evict(p), K(0, e));
    CHECK_EQ(evict(p), K(0, 10));
    CHECK_EQ(policy_touch(p, K(0, 0), true), 0); /* a second chance for 0 */
    CHECK_EQ(evict(p), K(0, 2));
    CHECK_EQ(evict(p), K(0, 1));
    CHECK_EQ(evict(p), K(0, 0));
    CHECK_EQ(policy_count(p), 0);
    policy_destroy(p);
}

TEST(policy_stale_order)
{
    policy *p = make(POLICY_STALE, 8);
    CHECK(p);
    /* one token through 4 layers, two experts each */
    for (int l = 0; l < 4; l++) {
        policy_layer_begin(p, l);
        CHECK_EQ(load(p, K(l, 0)), 0);
        CHECK_EQ(load(p, K(l, 1)), 0);
    }
    CHECK_EQ(policy_touch(p, K(3, 1), true), 0);
    CHECK_EQ(policy_touch(p, K(3, 1), true), 0);
    /* at layer 3: layer 3 is needed again last, least used first */
    CHECK_EQ(evict(p), K(3, 0));
    CHECK_EQ(evict(p), K(3, 1));
    CHECK_EQ(evict(p), K(2, 0));
    /* the next token reaches layer 1: order 1, 0, 3 (empty), 2 */
    policy_layer_begin(p, 0);
    policy_layer_begin(p, 1);
    CHECK_EQ(policy_pin(p, K(1, 0)), 0);
    CHECK_EQ(evict(p), K(1, 1));
    CHECK_EQ(evict(p), K(0, 0));
    CHECK_EQ(evict(p), K(0, 1));
    CHECK_EQ(evict(p), K(2, 1));
    CHECK_EQ(evict(p), UINT32_MAX); /* only the pinned one is left */
    CHECK_EQ(policy_unpin(p, K(1, 0)), 0);
    CHECK_EQ(evict(p), K(1, 0));
    policy_destroy(p);
}

TEST(policy_stale_decays_within_a_layer)
{
    /* expert 0 was used often long ago, expert 1 a little lately: after
     * enough visits of the layer, 0's count has decayed below 1's */
    policy *p = make(POLICY_STALE, 3);
    CHECK(p);
    policy_layer_begin(p, 0);
    CHECK_EQ(load(p, K(0, 0)), 0);
    CHECK_EQ(load(p, K(0, 1)), 0);
    for (int i = 0; i < 4; i++) {
        policy_layer_begin(p, 0);
        CHECK_EQ(policy_touch(p, K(0, 0), true), 0);
    }
    CHECK_EQ(load(p, K(0, 2)), 0);
    policy_key v;
    CHECK_EQ(policy_victim(p, &v), 0);
    CHECK_EQ(v, K(0, 1));
    for (int i = 0; i < 100; i++) { /* ~6 half-lives of 16 visits */
        policy_layer_begin(p, 0);
        CHECK_EQ(policy_touch(p, K(0, i % 2 ? 1 : 2), true), 0);
    }
    CHECK_EQ(policy_victim(p, &v), 0);
    CHECK_EQ(v, K(0, 0));
    policy_destroy(p);
}

TEST(policy_pins)
{
    for (int kind = 0; kind < POLICY_KIND_COUNT; kind++) {
        policy *p = make((policy_kind)kind, 4);
        CHECK(p);
        for (int e = 0; e < 4; e++) {
            CHECK_EQ(load(p, K(0, e)), 0);
            CHECK_EQ(policy_pin(p, K(0, e)), 0);
        }
        CHECK_EQ(policy_pin(p, K(0, 2)), 0); /* pins count */
        policy_key v;
        CHECKF(policy_victim(p, &v) == SW_ENOTFOUND, "%s", policy_kind_name((policy_kind)kind));
        CHECK_EQ(policy_remove(p, K(0, 1)), SW_EINVAL);
        CHECK_EQ(policy_unpin(p, K(0, 2)), 0);
        CHECK_EQ(policy_victim(p, &v), SW_ENOTFOUND); /* still pinned once */
        CHECK_EQ(policy_unpin(p, K(0, 2)), 0);
        CHECK_EQ(policy_unpin(p, K(0, 2)), SW_EINVAL);
        CHECK_EQ(evict(p), K(0, 2));
        CHECK_EQ(policy_pin(p, K(0, 2)), SW_ENOTFOUND);
        CHECK_EQ(policy_count(p), 3);
        policy_destroy(p);
    }
}

struct evicted {
    policy *p;
    int n;
    int bad; /* an evicted entry was pinned or absent */
};

static void on_evict(void *ctx, policy_key k)
{
    struct evicted *e = ctx;
    e->n++;
    if (!policy_contains(e->p, k) || policy_pinned(e->p, k))
        e->bad++;
}

TEST(policy_resize_evicts)
{
    for (int kind = 0; kind < POLICY_KIND_COUNT; kind++) {
        policy *p = make((policy_kind)kind, 8);
        CHECK(p);
        for (int e = 0; e < 8; e++)
            CHECK_EQ(load(p, K(e % 2, e)), 0);
        CHECK_EQ(policy_pin(p, K(0, 0)), 0);
        CHECK_EQ(policy_pin(p, K(1, 5)), 0);
        struct evicted ev = {p, 0, 0};
        CHECK_EQ(policy_resize(p, 3, on_evict, &ev), 0);
        CHECK_EQ(ev.n, 5);
        CHECK_EQ(ev.bad, 0);
        CHECK_EQ(policy_count(p), 3);
        CHECK(policy_contains(p, K(0, 0)) && policy_contains(p, K(1, 5)));
        /* below the pinned count: what can go goes, the rest is reported */
        CHECK_EQ(policy_resize(p, 1, on_evict, &ev), 1);
        CHECK_EQ(policy_count(p), 2);
        CHECK_EQ(ev.bad, 0);
        CHECK_EQ(policy_insert(p, K(3, 3), NULL), SW_EINVAL);
        CHECK_EQ(policy_unpin(p, K(0, 0)), 0);
        CHECK_EQ(policy_resize(p, 1, NULL, NULL), 0);
        CHECK(policy_contains(p, K(1, 5)));
        /* growing just raises the limit */
        CHECK_EQ(policy_resize(p, 16, NULL, NULL), 0);
        for (int e = 0; e < 15; e++)
            CHECK_EQ(load(p, K(2, e)), 0);
        CHECK(policy_full(p));
        policy_destroy(p);
    }
}

TEST(policy_zero_capacity)
{
    for (int kind = 0; kind < POLICY_KIND_COUNT; kind++) {
        policy *p = make((policy_kind)kind, 0);
        CHECK(p);
        CHECK(policy_full(p));
        CHECK_EQ(policy_insert(p, K(0, 0), NULL), SW_EINVAL);
        policy_key v;
        CHECK_EQ(policy_victim(p, &v), SW_ENOTFOUND);
        policy_destroy(p);
    }
}

/* Random misses, hits, pins and resizes, checked step by step against a
 * shadow set: the policy holds exactly the keys we think, exactly
 * min(capacity, keys loaded) of them once full, and never evicts a pinned
 * entry. */
static int random_run(policy_kind kind, unsigned seed)
{
    enum { NK = 96 };
    policy *p = make(kind, 12);
    if (!p)
        return 1;
    char present[NK] = {0}, pins[NK] = {0};
    size_t cap = 12, n = 0;
    int n_pinned = 0, bad = 0;
    srand(seed);
    for (int step = 0; step < 20000 && !bad; step++) {
        int r = rand() % 100, id = rand() % NK;
        policy_key k = K(id / 16, id % 16);
        if (r < 2) { /* resize */
            cap = 1 + (size_t)(rand() % 24);
            int over = policy_resize(p, cap, NULL, NULL);
            for (int i = 0; i < NK; i++)
                if (present[i] && !policy_contains(p, K(i / 16, i % 16))) {
                    if (pins[i])
                        bad = 1; /* a pinned entry went */
                    present[i] = 0;
                    n--;
                }
            if (over != (n > cap ? (int)(n - cap) : 0) || (over && (size_t)n_pinned <= cap))
                bad = 2;
        } else if (r < 12) { /* pin or unpin */
            if (present[id] && !pins[id] && n_pinned < 4) {
                bad = policy_pin(p, k) ? 3 : 0;
                pins[id] = 1;
                n_pinned++;
            } else if (pins[id]) {
                bad = policy_unpin(p, k) ? 4 : 0;
                pins[id] = 0;
                n_pinned--;
            }
        } else if (present[id]) {
            policy_layer_begin(p, id / 16);
            bad = policy_touch(p, k, true) ? 5 : 0;
        } else {
            size_t before = n;
            policy_layer_begin(p, id / 16);
            policy_key v;
            while (!bad && policy_full(p) && !policy_victim(p, &v)) {
                int vi = policy_key_layer(v) * 16 + policy_key_expert(v);
                if (!present[vi] || pins[vi])
                    bad = 6;
                if (policy_remove(p, v))
                    bad = 7;
                present[vi] = 0;
                n--;
            }
            if (!policy_full(p)) {
                bad = load(p, k) ? 8 : bad;
                present[id] = 1;
                n++;
            } else if (n_pinned < (int)cap) {
                bad = 9; /* full of unpinned entries, yet no victim */
            }
            if (n_pinned < (int)cap && before >= cap && n != cap)
                bad = 11; /* a full cache must stay exactly full */
        }
        if (policy_count(p) != n)
            bad = 10;
        for (int i = 0; i < NK && !bad; i++)
            if (policy_contains(p, K(i / 16, i % 16)) != present[i] ||
                policy_pinned(p, K(i / 16, i % 16)) != pins[i])
                bad = 12;
    }
    policy_destroy(p);
    if (bad)
        fprintf(stderr, "    %s, seed %u: invariant %d broken\n", policy_kind_name(kind), seed,
                bad);
    return bad;
}

TEST(policy_randomized_cross_check)
{
    for (int kind = 0; kind < POLICY_KIND_COUNT; kind++)
        for (unsigned seed = 1; seed <= 5; seed++)
            CHECK_EQ(random_run((policy_kind)kind, seed), 0);
}

TEST(policy_stays_full)
{
    /* once full, every policy holds exactly `capacity` entries through any
     * sequence of misses */
    for (int kind = 0; kind < POLICY_KIND_COUNT; kind++) {
        policy *p = make((policy_kind)kind, 37);
        CHECK(p);
        srand(7);
        for (int i = 0; i < 5000; i++) {
            policy_key k = K(rand() % 8, rand() % 32);
            policy_layer_begin(p, policy_key_layer(k));
            if (policy_contains(p, k)) {
                CHECK_EQ(policy_touch(p, k, true), 0);
                continue;
            }
            if (policy_full(p))
                CHECK(evict(p) < UINT32_MAX - 1); /* a victim, and removable */
            CHECK_EQ(load(p, k), 0);
            if (i > 200)
                CHECK_EQ(policy_count(p), 37);
        }
        policy_destroy(p);
    }
}
