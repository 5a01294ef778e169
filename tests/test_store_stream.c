/*
 * test_store_stream.c — the streaming store (store.h STORE_STREAM,
 * expert_cache.h): output bit-identical to the mapped store whatever the
 * cache size and policy, counters that add up, read errors reported.
 */
#include "test.h"

#include <glob.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "store/replay.h"
#include "store/store.h"

#define N_PROMPT 9
#define N_GEN 20

/* One run: a prompt prefilled in batches of 4, then greedy decoding. */
typedef struct run_out {
    float *logits;      /* [(N_PROMPT + N_GEN)][n_vocab] */
    int32_t toks[N_PROMPT + N_GEN];
    int n_vocab;
    int n_layer;
    store_stats st;
    uint64_t planned;   /* distinct experts per layer and step, from the route hook */
} run_out;

static void count_route(void *ctx, const model_route *r)
{
    char seen[1024] = {0};
    uint64_t *n = ctx;
    for (int i = 0; i < r->n_tokens * r->n_used; i++)
        if (r->experts[i] >= 0 && r->experts[i] < 1024 && !seen[r->experts[i]]++)
            ++*n;
}

static void run_free(run_out *r)
{
    free(r->logits);
    r->logits = NULL;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* Runs the model at path through a store opened with o; 0 or the error. */
static int run(const char *path, const store_opts *o, run_out *r, sw_err *err)
{
    store *st = NULL;
    model *m = NULL;
    model_state *s = NULL;
    kv_cache *kv = NULL;
    sw_pool *pool = NULL;
    memset(r, 0, sizeof *r);
    int rc;
    if ((rc = store_open_opts(path, o, &st, err)) || (rc = model_load(st, NULL, &m, err)))
        goto fail;
    model_info info;
    model_get_info(m, &info);
    r->n_vocab = info.n_vocab;
    r->n_layer = info.n_layer;
    model_set_route_hook(m, count_route, &r->planned);
    kv_cache_opts ko = {.n_ctx = N_PROMPT + N_GEN};
    if ((rc = kv_cache_new(m, &ko, &kv, err)) || (rc = model_state_new(m, NULL, &s, err)) ||
        (rc = sw_pool_create(2, &pool, err)))
        goto fail;
    r->logits = calloc((size_t)(N_PROMPT + N_GEN) * (size_t)info.n_vocab, sizeof(float));
    for (int i = 0; i < N_PROMPT; i++)
        r->toks[i] = i ? 3 + (i * 37) % (info.n_vocab - 3) : 1;
    for (int off = 0; off < N_PROMPT; off += 4) {
        int k = N_PROMPT - off < 4 ? N_PROMPT - off : 4;
        if ((rc = model_forward(m, s, kv, pool, r->toks + off, k,
                                r->logits + (size_t)off * info.n_vocab, MODEL_LOGITS_ALL, err)))
            goto fail;
    }
    for (int i = N_PROMPT; i < N_PROMPT + N_GEN; i++) {
        float *prev = r->logits + (size_t)(i - 1) * info.n_vocab;
        r->toks[i] = argmax(prev, info.n_vocab);
        if ((rc = model_forward(m, s, kv, pool, &r->toks[i], 1,
                                r->logits + (size_t)i * info.n_vocab, MODEL_LOGITS_LAST, err)))
            goto fail;
    }
    store_stats_get(st, &r->st);
    goto done;
fail:
    run_free(r);
done:
    sw_pool_destroy(pool);
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
    return rc;
}

static int same_run(const run_out *a, const run_out *b)
{
    size_t n = (size_t)(N_PROMPT + N_GEN) * (size_t)a->n_vocab;
    return a->n_vocab == b->n_vocab && !memcmp(a->toks, b->toks, sizeof a->toks) &&
           !memcmp(a->logits, b->logits, n * sizeof(float));
}

static int counters_add_up(const store_stats *s)
{
    return s->hits + s->misses == s->requests && s->requests > 0 &&
           s->prefetch_hits <= s->prefetch_issued && s->prefetch_wasted <= s->prefetch_issued &&
           s->predicted_right <= s->predicted && s->entries <= s->capacity;
}

/* The file run mapped, then streamed with the smallest cache, a quarter of
 * the experts, and everything; all bit-identical. */
static void check_exact(const char *path)
{
    sw_err err = {0};
    run_out ref, got;
    CHECKF(!run(path, NULL, &ref, &err), "%s: %s", path, err.msg);
    static const char *const policies[] = {"stale", "lru", "lfu", "s3fifo"};
    for (int i = 0; i < 6; i++) {
        store_opts o = {.mode = STORE_STREAM, .policy = policies[i % 4]};
        if (i < 4)
            o.cache_bytes = 1; /* clamped up to n_expert_used entries */
        else if (i == 4)
            o.cache_bytes = INT64_MAX / 4; /* every expert */
        else
            o.mode = STORE_RESIDENT;
        if (i == 1)
            o.prefetch = -1;
        int rc = run(path, &o, &got, &err);
        CHECKF(!rc, "%s (%d): %s", path, i, err.msg);
        int same = same_run(&ref, &got);
        if (o.mode == STORE_STREAM) {
            const store_stats *s = &got.st;
            CHECKF(counters_add_up(s), "%s: requests %llu hits %llu misses %llu", path,
                   (unsigned long long)s->requests, (unsigned long long)s->hits,
                   (unsigned long long)s->misses);
            CHECKF(s->misses > 0 && s->bytes_read > 0, "%s: nothing read", path);
            if (i < 4)
                CHECKF(s->capacity < s->total_entries && s->evictions > 0,
                       "%s: capacity %lld of %lld, %llu evictions", path, (long long)s->capacity,
                       (long long)s->total_entries, (unsigned long long)s->evictions);
            else
                CHECK_EQ(s->evictions, 0);
        }
        run_free(&got);
        CHECKF(same, "%s: case %d differs from the mapped store", path, i);
    }
    run_free(&ref);
}

TEST(store_stream_exact_tinymoe)
{
    check_exact(test_fixture("tinymoe/tinymoe-q8_0.gguf"));
}

TEST(store_stream_exact_tinymoe_q4_k_m)
{
    check_exact(test_fixture("tinymoe/tinymoe-q4_k_m.gguf"));
}

TEST(store_stream_exact_qwen3moe_all_types)
{
    glob_t g;
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/*.gguf", test_fixture("models/qwen3moe"));
    CHECKF(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0, "no files match %s", pat);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        check_exact(g.gl_pathv[i]);
    }
    globfree(&g);
}

TEST(store_stream_exact_mixtral)
{
    check_exact(test_fixture("models/mixtral/mixtral-q8_0.gguf"));
    check_exact(test_fixture("models/mixtral/mixtral-q4_k_m.gguf"));
}

TEST(store_stream_exact_gptoss_mxfp4)
{
    check_exact(test_fixture("models/gptoss/gptoss-mxfp4_moe.gguf"));
}

TEST(store_stream_exact_qwen2moe)
{
    check_exact(test_fixture("models/qwen2moe/qwen2moe-q8_0.gguf"));
}

TEST(store_stream_dense_model)
{
    /* no experts: everything resident, nothing streamed */
    sw_err err = {0};
    run_out ref, got;
    const char *path = test_fixture("models/llama/llama-q8_0.gguf");
    CHECKF(!run(path, NULL, &ref, &err), "%s", err.msg);
    store_opts o = {.mode = STORE_STREAM};
    CHECKF(!run(path, &o, &got, &err), "%s", err.msg);
    int same = same_run(&ref, &got);
    CHECK_EQ(got.st.requests, 0);
    CHECK_EQ(got.st.total_entries, 0);
    run_free(&ref);
    run_free(&got);
    CHECK(same);
}

TEST(store_stream_counters)
{
    sw_err err = {0};
    run_out r;
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = 1};
    CHECKF(!run(test_fixture("tinymoe/tinymoe-q8_0.gguf"), &o, &r, &err), "%s", err.msg);
    const store_stats *s = &r.st;
    /* tinymoe: 4 layers, top-4: every routed expert is one request */
    CHECK_EQ(s->requests, r.planned);
    CHECK(counters_add_up(s));
    CHECK_EQ(s->capacity, 4);
    CHECK_STR(s->policy, "stale");
    CHECK(s->reads >= 2 * s->misses); /* gate, up, down per load */
    CHECK(s->cache_budget == s->capacity * s->slot_bytes);
    run_free(&r);

    /* a quarter of the experts, prediction on: hits and prefetch hits happen */
    o.cache_bytes = 0;
    o.mem_bytes = 0;
    store *st;
    CHECKF(!store_open_opts(test_fixture("tinymoe/tinymoe-q8_0.gguf"),
                            &(store_opts){.mode = STORE_STREAM}, &st, &err), "%s", err.msg);
    store_stats full;
    store_stats_get(st, &full);
    store_close(st);
    CHECK_EQ(full.total_entries, 4 * 64);
    o.cache_bytes = full.slot_bytes * 64;
    CHECKF(!run(test_fixture("tinymoe/tinymoe-q8_0.gguf"), &o, &r, &err), "%s", err.msg);
    CHECK_EQ(r.st.capacity, 64);
    CHECK(counters_add_up(&r.st));
    CHECK(r.st.hits > 0);
    CHECK(r.st.prefetch_issued > 0);
    run_free(&r);
}

static int copy_file(const char *from, const char *to)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd);
}

TEST(store_stream_read_error)
{
    sw_err err = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/t.gguf", test_tmpdir());
    CHECK_EQ(copy_file(test_fixture("tinymoe/tinymoe-q8_0.gguf"), path), 0);

    store *st = NULL;
    model *m = NULL;
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = 1, .prefetch = -1};
    CHECKF(!store_open_opts(path, &o, &st, &err), "%s", err.msg);
    CHECKF(!model_load(st, NULL, &m, &err), "%s", err.msg);
    /* cut the file inside the first layer's experts: every read fails */
    const gguf_tensor *t = gguf_find_tensor(store_gguf(st), "blk.0.ffn_gate_exps.weight");
    CHECK(t != NULL);
    CHECK_EQ(truncate(path, (off_t)(gguf_data_offset(store_gguf(st)) + t->offset + 100)), 0);
    model_state *s = NULL;
    kv_cache *kv = NULL;
    kv_cache_opts ko = {.n_ctx = 8};
    CHECK(!kv_cache_new(m, &ko, &kv, &err) && !model_state_new(m, NULL, &s, &err));
    int32_t tok = 1;
    float *logits = malloc(sizeof(float) * 1024);
    int rc = model_forward(m, s, kv, NULL, &tok, 1, logits, MODEL_LOGITS_LAST, &err);
    int rc2 = model_forward(m, s, kv, NULL, &tok, 1, logits, MODEL_LOGITS_LAST, &err);
    store_stats ss;
    store_stats_get(st, &ss);
    free(logits);
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
    CHECK_EQ(rc, SW_EIO);
    CHECK_EQ(rc2, SW_EIO); /* and again: the failed entry was forgotten */
    CHECK_HAS(err.msg, "expert read failed");
    CHECK_HAS(err.msg, "t.gguf");
    CHECK(ss.read_errors > 0);
    CHECK(ss.hits + ss.misses == ss.requests);

    /* a file cut before opening is refused at open, clearly */
    store_opts o2 = {.mode = STORE_STREAM};
    CHECK(store_open_opts(path, &o2, &st, &err) < 0);
    CHECK(strlen(err.msg) > 0);
}

static void count_wait(void *ctx)
{
    ++*(int *)ctx;
}

/* Plans and fetches experts of layer 0, n at a time from first, through st. */
static int fetch_experts(store *st, int first, int n, sw_err *err)
{
    int ex[8];
    for (int i = 0; i < n; i++)
        ex[i] = first + i;
    int rc = store_expert_plan(st, 0, ex, n, err);
    for (int i = 0; i < n && !rc; i++) {
        store_mat g, u, d;
        if (!(rc = store_expert(st, 0, ex[i], &g, &u, &d, err)))
            store_expert_release(st, 0, ex[i]);
    }
    return rc;
}

/* The wait hook runs before the store blocks on a read, and a store that
 * never reads never calls it. */
TEST(store_stream_wait_hook)
{
    sw_err err = {0};
    const char *path = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    for (int streamed = 0; streamed < 2; streamed++) {
        store_opts o = {.mode = streamed ? STORE_STREAM : STORE_MMAP, .cache_bytes = 1,
                        .no_hints = true};
        store *st = NULL;
        model *m = NULL;
        CHECKF(!store_open_opts(path, &o, &st, &err) && !model_load(st, NULL, &m, &err), "%s",
               err.msg);
        int waits = 0;
        store_set_wait_hook(st, count_wait, &waits);
        /* four at a time through a cache of four: every group is read anew */
        for (int first = 0; first + 4 <= 64; first += 4)
            CHECKF(!fetch_experts(st, first, 4, &err), "%s", err.msg);
        store_stats stats;
        store_stats_get(st, &stats);
        if (streamed) {
            CHECK_EQ(stats.misses, 64);
            CHECKF(waits > 0 && waits <= 64 + 64, "%d waits", waits);
        } else {
            CHECK_EQ(waits, 0);
        }
        store_set_wait_hook(st, NULL, NULL);
        CHECKF(!fetch_experts(st, 0, 4, &err), "%s", err.msg); /* no hook: fine */
        model_free(m);
        store_close(st);
    }
}

TEST(store_stream_bad_policy)
{
    sw_err err = {0};
    store *st = NULL;
    store_opts o = {.mode = STORE_STREAM, .policy = "fifo"};
    CHECK_EQ(store_open_opts(test_fixture("tinymoe/tinymoe-q8_0.gguf"), &o, &st, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "lru");
    CHECK(st == NULL);
}

TEST(store_stream_mem_budget)
{
    /* --mem: the process's limit minus what it holds; tiny limits still run */
    sw_err err = {0};
    run_out r;
    store_opts o = {.mode = STORE_STREAM, .mem_bytes = 1 << 20};
    CHECKF(!run(test_fixture("tinymoe/tinymoe-q8_0.gguf"), &o, &r, &err), "%s", err.msg);
    CHECK_EQ(r.st.capacity, 4);
    CHECK(counters_add_up(&r.st));
    run_free(&r);
    o = (store_opts){.mode = STORE_STREAM, .watch = true}; /* automatic, followed */
    CHECKF(!run(test_fixture("tinymoe/tinymoe-q8_0.gguf"), &o, &r, &err), "%s", err.msg);
    CHECK(r.st.capacity >= 4);
    CHECK(counters_add_up(&r.st));
    run_free(&r);
}

/* --- read-ahead: hints, and the replay of what the store saw ---------------- */

#define N_DECODE 96

/* The routing of one-token steps, recorded for the replay (ascending, as
 * the store plans them). */
static void record_route(void *ctx, const model_route *r)
{
    int ex[64];
    for (int i = 0; i < r->n_used && i < 64; i++) {
        int e = r->experts[i], j = i;
        while (j > 0 && ex[j - 1] > e) {
            ex[j] = ex[j - 1];
            j--;
        }
        ex[j] = e;
    }
    trace_add(ctx, "run", 0, r->pos, r->layer, ex, NULL, r->n_used, NULL);
}

/* Greedy decoding from BOS, one token per step (hints are given on
 * one-token steps), N_DECODE steps; logits of every step into out. */
static int run_decode(const char *path, const store_opts *o, float *out, trace *t,
                      store_stats *st_out, uint64_t hint[3], sw_err *err)
{
    store *st = NULL;
    model *m = NULL;
    model_state *s = NULL;
    kv_cache *kv = NULL;
    int rc;
    if ((rc = store_open_opts(path, o, &st, err)) || (rc = model_load(st, NULL, &m, err)))
        goto done;
    model_info info;
    model_get_info(m, &info);
    if (t)
        model_set_route_hook(m, record_route, t);
    kv_cache_opts ko = {.n_ctx = N_DECODE};
    if ((rc = kv_cache_new(m, &ko, &kv, err)) || (rc = model_state_new(m, NULL, &s, err)))
        goto done;
    int32_t tok = 1;
    for (int i = 0; i < N_DECODE; i++) {
        float *lg = out + (size_t)i * info.n_vocab;
        if ((rc = model_forward(m, s, kv, NULL, &tok, 1, lg, MODEL_LOGITS_LAST, err)))
            goto done;
        tok = argmax(lg, info.n_vocab);
    }
    store_stats_get(st, st_out);
    store_predictor_stats(st, 1, -1, hint);
done:
    model_state_free(s);
    kv_cache_free(kv);
    model_free(m);
    store_close(st);
    return rc;
}

TEST(store_stream_hints)
{
    /* the model's hidden-state hints reach a streaming store, are scored
     * there and change nothing computed; an mmap store ignores them */
    const char *path = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    sw_err err = {0};
    size_t n = (size_t)N_DECODE * 512;
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    store_stats st;
    uint64_t hint[3];
    CHECKF(!run_decode(path, &(store_opts){0}, ref, NULL, &st, hint, &err), "%s", err.msg);
    CHECK_EQ(hint[0], 0);
    store *mm;
    CHECK_EQ(store_open(path, &mm, &err), 0);
    CHECK(!store_wants_hints(mm));
    store_expert_hint(mm, 1, (int[]){1, 2}, 2);
    store_close(mm);
    for (int nh = 0; nh < 2; nh++) {
        store_opts o = {.mode = STORE_STREAM, .cache_bytes = 1, .no_hints = nh};
        CHECKF(!run_decode(path, &o, got, NULL, &st, hint, &err), "%s", err.msg);
        CHECK(!memcmp(ref, got, n * sizeof *got));
        CHECK(counters_add_up(&st));
        if (nh) {
            CHECK_EQ(hint[0], 0);
        } else { /* layers 1..3 hinted at every step, 4 experts each */
            CHECK_EQ(hint[0], (uint64_t)N_DECODE * 3 * 4);
            CHECK_EQ(hint[2], hint[0]);
            CHECKF(hint[1] > hint[0] / 3, "hint precision %llu / %llu",
                   (unsigned long long)hint[1], (unsigned long long)hint[0]);
        }
    }
    free(ref);
    free(got);
}

TEST(store_stream_replay_matches_the_store)
{
    /* the replay's default is the store's: the routing a streaming run saw
     * (hints off: a trace has none), replayed with replay_opts_default at
     * the same capacity, gives the same hit rate. Not exactly: reads in
     * flight are pinned in the store, never in the replay. */
    const char *path = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    sw_err err = {0};
    float *lg = calloc((size_t)N_DECODE * 512, sizeof *lg);
    for (int q = 1; q <= 2; q++) {
        store *st;
        CHECK_EQ(store_open_opts(path, &(store_opts){.mode = STORE_STREAM, .cache_bytes = 1}, &st,
                                 &err), 0);
        store_stats one;
        store_stats_get(st, &one);
        store_close(st);
        store_opts o = {.mode = STORE_STREAM, .cache_bytes = one.slot_bytes * 64 * q,
                        .no_hints = true};
        trace t;
        trace_init(&t);
        store_stats s;
        uint64_t hint[3];
        CHECKF(!run_decode(path, &o, lg, &t, &s, hint, &err), "%s", err.msg);
        CHECK_EQ(trace_finish(&t, &err), 0);
        replay_opts ro;
        replay_opts_default(&ro, &t, (size_t)s.capacity);
        replay_result r;
        CHECK_EQ(replay_run(&t, &ro, &r, &err), 0);
        CHECK_EQ(r.accesses, s.requests);
        double hs = (double)s.hits / (double)s.requests, hr = replay_hit_rate(&r);
        CHECKF(hs > hr - 0.04 && hs < hr + 0.04, "capacity %lld: store %.3f replay %.3f",
               (long long)s.capacity, hs, hr);
        CHECKF(s.prefetch_issued > 0 && r.prefetches > 0, "read-ahead: store %llu replay %llu",
               (unsigned long long)s.prefetch_issued, (unsigned long long)r.prefetches);
        replay_result_free(&r);
        trace_free(&t);
    }
    free(lg);
}
