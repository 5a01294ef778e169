/*
 * test_store_replay.c — routing traces driven through the real store
 * (store/store_replay.h) and `spillway bench --replay`: the counters add
 * up, agree with the in-memory simulation (store/replay.h) where both model
 * the same cache, traces are fitted to the model's layers and experts, and
 * the CLI reports what it must.
 */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include "model/model.h"
#include "store/read_probe.h"
#include "store/replay.h"
#include "store/store.h"
#include "store/store_replay.h"
#include "store/trace.h"

#define TINYMOE_Q8 "tinymoe/tinymoe-q8_0.gguf"
#define TINYMOE_TRACE "traces/tinymoe_routing.jsonl"

/* A store on path opened with o and its experts bound (through the model). */
typedef struct opened {
    store *st;
    model *m;
} opened;

static int open_bound(const char *path, const store_opts *o, opened *out, sw_err *err)
{
    *out = (opened){0};
    int rc = store_open_opts(path, o, &out->st, err);
    return rc ? rc : model_load(out->st, NULL, &out->m, err);
}

static void close_bound(opened *x)
{
    model_free(x->m);
    store_close(x->st);
}

/* The first n tokens of the fixture's tinymoe trace (all its sequences). */
static int load_trace(const char *rel, trace *t)
{
    sw_err err = {0};
    trace_init(t);
    int rc = trace_load(t, test_fixture(rel), &err);
    if (rc)
        fprintf(stderr, "    %s\n", err.msg);
    return rc;
}

/* Distinct (layer, expert) pairs among the first n_tokens tokens' steps. */
static uint64_t distinct_pairs(const trace *t, uint64_t n_tokens)
{
    static unsigned char seen[1 << 16][4];
    memset(seen, 0, sizeof seen);
    uint64_t n = 0, tok = 0;
    uint32_t seq = UINT32_MAX;
    int32_t cur = -1;
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *s = &t->steps[i];
        if (s->seq != seq || s->token != cur) {
            if (tok == n_tokens)
                break;
            seq = s->seq, cur = s->token, tok++;
        }
        for (int k = 0; k < s->n; k++) {
            unsigned e = t->experts[s->off + (uint32_t)k];
            if (!seen[e][s->layer]++)
                n++;
        }
    }
    return n;
}

TEST(store_replay_whole_cache_reads_each_expert_once)
{
    trace t;
    CHECK_EQ(load_trace(TINYMOE_TRACE, &t), 0);
    sw_err err = {0};
    opened x;
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = INT64_MAX / 4, .prefetch = -1};
    CHECKF(open_bound(test_fixture(TINYMOE_Q8), &o, &x, &err) == 0, "%s", err.msg);
    store_replay_opts ro = {.max_tokens = 300};
    store_replay_result r;
    CHECKF(store_replay_run(x.st, &t, &ro, &r, &err) == 0, "%s", err.msg);
    CHECK_EQ(r.tokens, 300);
    CHECK_EQ(r.steps, 4 * 300);
    CHECK_EQ(r.picks, 4 * 4 * 300); /* top-4, 4 layers */
    CHECK_EQ(r.skipped_rows, 0);
    CHECK_EQ(r.layers, 4);
    CHECK_EQ(store_replay_requests(&r), r.picks);
    /* every expert is read once, on first use, and stays */
    uint64_t misses = r.after.misses - r.before.misses;
    CHECK_EQ(misses, distinct_pairs(&t, 300));
    CHECK_EQ(r.after.hits - r.before.hits + misses, r.picks);
    CHECK_EQ(r.after.evictions, 0);
    CHECK(store_replay_bytes(&r) >= misses * 3 * 64 * 272); /* gate, up, down: 64 rows of 256 in q8_0 */
    CHECK(r.seconds > 0);
    close_bound(&x);
    trace_free(&t);
}

/* The first n sequences of src, as a trace of their own. */
static int first_seqs(const trace *src, size_t n, trace *out)
{
    trace_init(out);
    for (size_t s = 0; s < n && s < src->n_seqs; s++) {
        const trace_seq *q = &src->seqs[s];
        for (size_t i = q->first; i < q->first + q->n_steps; i++) {
            const trace_step *st = &src->steps[i];
            int ex[TRACE_MAX_K];
            for (int k = 0; k < st->n; k++)
                ex[k] = src->experts[st->off + (uint32_t)k];
            if (trace_add(out, q->dataset, q->problem_id, st->token, st->layer, ex,
                          src->probs + st->off, st->n, NULL))
                return -1;
        }
    }
    return trace_finish(out, NULL);
}

TEST(store_replay_lru_matches_the_simulation)
{
    /* the real store with LRU, no prefetch, a quarter of the experts, and
     * the in-memory replay of the same cache: the same hits */
    trace all, t;
    CHECK_EQ(load_trace(TINYMOE_TRACE, &all), 0);
    CHECK_EQ(first_seqs(&all, 4, &t), 0);
    trace_free(&all);
    sw_err err = {0};
    opened x;
    store_opts probe = {.mode = STORE_STREAM, .cache_bytes = 1};
    CHECKF(open_bound(test_fixture(TINYMOE_Q8), &probe, &x, &err) == 0, "%s", err.msg);
    store_stats s;
    store_stats_get(x.st, &s);
    close_bound(&x);
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = 64 * s.slot_bytes, .policy = "lru",
                    .prefetch = -1};
    CHECKF(open_bound(test_fixture(TINYMOE_Q8), &o, &x, &err) == 0, "%s", err.msg);
    store_replay_result r;
    CHECKF(store_replay_run(x.st, &t, NULL, &r, &err) == 0, "%s", err.msg);
    CHECK_EQ(r.after.capacity, 64);
    CHECK_EQ(r.tokens, trace_n_tokens(&t));

    replay_opts ro = {.policy = POLICY_LRU, .capacity = 64};
    replay_result sim;
    CHECKF(replay_run(&t, &ro, &sim, &err) == 0, "%s", err.msg);
    CHECK_EQ(sim.accesses, r.picks);
    /* Not exactly equal: the simulation pins a step's cached experts before
     * loading its misses, while the store's plan loads misses in ascending
     * order and may evict a cached expert of the same step not yet reached
     * (and touches in a different order). On the whole trace: 0.5% of picks. */
    uint64_t hits = r.after.hits - r.before.hits;
    double diff = fabs((double)sim.hits - (double)hits) / (double)sim.accesses;
    CHECKF(diff < 0.01, "simulated %llu hits, store %llu", (unsigned long long)sim.hits,
           (unsigned long long)hits);
    CHECK(store_replay_hit_rate(&r) > 0.3 && store_replay_hit_rate(&r) < 0.6);
    replay_result_free(&sim);
    close_bound(&x);
    trace_free(&t);
}

TEST(store_replay_fits_the_trace_to_a_generated_model)
{
    /* a 2-layer tiny-moe (64 experts, top-8) written by `spillway gen`
     * (header only: a sparse file that reads as zeros): the 4-layer
     * tinymoe trace replays its layers 0 and 1, the rest is skipped */
    char path[1024], cmd[4096];
    snprintf(path, sizeof path, "%s/tm2.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s gen --like tiny-moe --layers 2 --type q8_0 --header-only --quiet --out '%s'",
             test_bin(), path);
    char *out = NULL;
    CHECK_EQ(test_run(cmd, &out), 0);
    free(out);
    trace t;
    CHECK_EQ(load_trace(TINYMOE_TRACE, &t), 0);
    sw_err err = {0};
    opened x;
    store_opts o = {.mode = STORE_STREAM, .cache_bytes = 1}; /* top-8 entries */
    CHECKF(open_bound(path, &o, &x, &err) == 0, "%s", err.msg);
    store_replay_opts ro = {.max_tokens = 50, .compute_us = 20};
    store_replay_result r;
    CHECKF(store_replay_run(x.st, &t, &ro, &r, &err) == 0, "%s", err.msg);
    CHECK_EQ(r.tokens, 50);
    CHECK_EQ(r.layers, 2);
    CHECK_EQ(r.first_layer, 0);
    CHECK_EQ(r.last_layer, 1);
    CHECK_EQ(r.steps, 2 * 50);
    CHECK_EQ(r.skipped_rows, 2 * 50); /* layers 2 and 3 of each token */
    CHECK_EQ(r.picks, 4 * 2 * 50);
    CHECK_EQ(r.after.capacity, 8);
    CHECK_EQ(store_replay_requests(&r), r.picks);
    CHECK(r.after.misses > r.before.misses && r.after.evictions > 0);
    CHECK(store_replay_bytes(&r) > 0);
    CHECK(r.compute_s > 0.9 * 100 * 20e-6 && r.seconds >= r.compute_s);
    close_bound(&x);
    trace_free(&t);
}

TEST(store_replay_rejects_experts_the_model_lacks)
{
    /* Mixtral's traces pick among 8 experts; the fixture mixtral has 4 */
    trace t;
    CHECK_EQ(load_trace("traces/gsm8k_2_routing.jsonl", &t), 0);
    sw_err err = {0};
    opened x;
    store_opts o = {.mode = STORE_STREAM};
    CHECKF(open_bound(test_fixture("models/mixtral/mixtral-q8_0.gguf"), &o, &x, &err) == 0, "%s",
           err.msg);
    store_replay_result r;
    CHECK_EQ(store_replay_run(x.st, &t, NULL, &r, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "has 4 experts");
    CHECK_HAS(err.msg, "gsm8k");
    CHECK_EQ(r.picks, 0);
    close_bound(&x);
    /* a dense model binds no experts: nothing fits */
    CHECKF(open_bound(test_fixture("models/llama/llama-q8_0.gguf"), &o, &x, &err) == 0, "%s",
           err.msg);
    CHECK_EQ(store_replay_run(x.st, &t, NULL, &r, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "no trace row fits");
    close_bound(&x);
    trace_free(&t);
}

TEST(store_replay_bench_cli)
{
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s bench --replay '%s' '%s' --cache 4M --cache-policy lru --replay-tokens 400 "
             "--json 2>/dev/null",
             test_bin(), test_fixture(TINYMOE_TRACE), test_fixture(TINYMOE_Q8));
    CHECK_EQ(test_run(cmd, &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON at %d:%d: %s\n%s", je.line, je.column, je.text, out);
    free(out);
    CHECK_STR(json_string_value(json_object_get(j, "mode")), "replay");
    CHECK_STR(json_string_value(json_object_get(j, "store_mode")), "stream");
    CHECK_EQ(json_integer_value(json_object_get(j, "tokens")), 400);
    CHECK_EQ(json_integer_value(json_object_get(j, "picks")), 400 * 4 * 4);
    double hit = json_number_value(json_object_get(j, "hit_rate"));
    CHECKF(hit > 0.2 && hit < 0.9, "hit rate %g", hit);
    CHECK(json_integer_value(json_object_get(j, "bytes_read")) > 0);
    CHECK(json_number_value(json_object_get(j, "read_gbs")) > 0);
    CHECK(json_number_value(json_object_get(j, "time_per_token_ms")) > 0);
    CHECK(json_integer_value(json_object_get(j, "cache_budget_bytes")) <= 4 << 20);
    CHECK(json_integer_value(json_object_get(j, "peak_rss_bytes")) > 0);
    json_t *rt = json_object_get(j, "routing"), *st = json_object_get(j, "store");
    CHECK(json_is_object(rt) && json_is_object(st));
    CHECK_EQ(json_integer_value(json_object_get(rt, "n_expert")), 64);
    double reuse = json_number_value(json_object_get(rt, "reuse_prev"));
    CHECKF(reuse > 0.10 && reuse < 0.20, "reuse %g", reuse); /* the README's 15.4% */
    CHECK_STR(json_string_value(json_object_get(st, "policy")), "lru");
    CHECK_EQ(json_integer_value(json_object_get(st, "requests")), 400 * 4 * 4);
    json_decref(j);

    /* the text report; a trace that does not fit is one clear error */
    snprintf(cmd, sizeof cmd, "%s bench --replay '%s' '%s' --replay-tokens 50 2>&1", test_bin(),
             test_fixture(TINYMOE_TRACE), test_fixture(TINYMOE_Q8));
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_HAS(out, "50 tokens, layers 0-3 of its 4 replayed");
    CHECK_HAS(out, "hits ");
    CHECK_HAS(out, "GB/s over the replay");
    free(out);
    snprintf(cmd, sizeof cmd, "%s bench --replay '%s' '%s' 2>&1", test_bin(),
             test_fixture("traces/gsm8k_2_routing.jsonl"),
             test_fixture("models/mixtral/mixtral-q8_0.gguf"));
    CHECK_EQ(test_run(cmd, &out), 1);
    CHECK_HAS(out, "has 4 experts");
    free(out);
}

TEST(store_replay_read_probe)
{
    /* tinymoe: 4 layers x 3 tensors x 64 experts = 768 slices of 64 rows
     * of 256 (q8_0: 17408 bytes each), all read once (the time limit is
     * far beyond what 13 MB take) */
    read_probe_result r;
    sw_err err = {0};
    read_probe_opts o = {.seconds = 600, .depth = 8};
    CHECKF(read_probe_run(test_fixture(TINYMOE_Q8), &o, &r, &err) == 0, "%s", err.msg);
    CHECK_EQ(r.reads, 768);
    CHECK(r.bytes >= 768 * 17408 && r.bytes <= 768 * (17408 + 2 * 4096));
    CHECK(r.mean_read_bytes >= 17408);
    CHECK(r.gbs > 0 && r.seconds > 0);
    CHECK(r.p50_us > 0 && r.p99_us >= r.p50_us);
    CHECK(strlen(r.mode) > 0);
    /* a dense model has no experts to read */
    CHECK_EQ(read_probe_run(test_fixture("models/llama/llama-q8_0.gguf"), &o, &r, &err),
             SW_EINVAL);
    CHECK_HAS(err.msg, "no expert tensors");
}

TEST(store_replay_bench_stream_json)
{
    /* plain bench, streamed: the figures bench/stream.sh reads */
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s bench '%s' --prompt 8 --gen 12 --threads 1 --cache 2M --disk-probe 1 --json "
             "2>/dev/null",
             test_bin(), test_fixture(TINYMOE_Q8));
    CHECK_EQ(test_run(cmd, &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON at %d:%d: %s\n%s", je.line, je.column, je.text, out);
    free(out);
    static const char *const keys[] = {"bytes_read", "hit_rate", "cache_budget_bytes",
                                       "peak_rss_bytes", "decode_bytes_read_per_token",
                                       "decode_stall_s", "disk_bound_tps",
                                       "decode_fraction_of_disk_bound"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECKF(json_is_number(json_object_get(j, keys[i])), "no number \"%s\"", keys[i]);
    CHECK(json_integer_value(json_object_get(j, "cache_budget_bytes")) <= 2 << 20);
    double per_tok = json_number_value(json_object_get(j, "decode_bytes_read_per_token"));
    /* reals are printed to 6 significant digits: compare to that precision */
    double total = (double)json_integer_value(json_object_get(j, "bytes_read"));
    CHECKF(fabs(per_tok * 12 - total) <= 1e-5 * total + 1, "per token %g, total %.0f", per_tok,
           total);
    json_t *d = json_object_get(j, "disk"), *rt = json_object_get(j, "routing");
    CHECK(json_is_object(d) && json_number_value(json_object_get(d, "read_gbs")) > 0);
    CHECK(json_is_true(json_object_get(d, "direct")) || json_is_false(json_object_get(d, "direct")));
    double bound = json_number_value(json_object_get(j, "disk_bound_tps"));
    CHECKF(fabs(bound * per_tok - 1e9 * json_number_value(json_object_get(d, "read_gbs"))) <
               1e-3 * bound * per_tok,
           "bound %g", bound);
    CHECK(json_is_array(json_object_get(rt, "distinct_per_layer")));
    CHECK(json_is_number(json_object_get(rt, "reuse_prev")));
    json_decref(j);

    /* and the replay's comparison with the disk */
    snprintf(cmd, sizeof cmd,
             "%s bench --replay '%s' '%s' --cache 2M --replay-tokens 100 --disk-probe 1 --json "
             "2>/dev/null",
             test_bin(), test_fixture(TINYMOE_TRACE), test_fixture(TINYMOE_Q8));
    CHECK_EQ(test_run(cmd, &out), 0);
    j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON: %s", out);
    free(out);
    CHECK(json_number_value(json_object_get(j, "disk_bound_tps")) > 0);
    CHECK(json_number_value(json_object_get(j, "fraction_of_disk_bound")) > 0);
    json_decref(j);
}
