/* Tests for src/store/trace and src/store/replay on the fixtures' real
 * routing traces: loading, engine order, writing, and the statistics the
 * fixtures README states. */
#include "test.h"

#include <stdlib.h>

#include "store/replay.h"
#include "store/trace.h"
#include "engine/generate.h"
#include "model/kv_cache.h"
#include "model/model.h"

static int load(trace *t, const char *rel)
{
    sw_err err = {0};
    int rc = trace_load(t, test_fixture(rel), &err);
    if (rc)
        fprintf(stderr, "    %s\n", err.msg);
    return rc;
}

/* Every sequence's steps go token by token, layers 0..L-1 within a token. */
static int engine_ordered(const trace *t)
{
    for (size_t i = 1; i < t->n_steps; i++) {
        const trace_step *a = &t->steps[i - 1], *b = &t->steps[i];
        if (a->seq > b->seq)
            return 0;
        if (a->seq == b->seq &&
            (a->token > b->token || (a->token == b->token && a->layer >= b->layer)))
            return 0;
    }
    for (size_t s = 0; s < t->n_seqs; s++)
        if (s > 0 && t->seqs[s].first != t->seqs[s - 1].first + t->seqs[s - 1].n_steps)
            return 0;
    return 1;
}

TEST(trace_mixtral_fixtures)
{
    trace t;
    trace_init(&t);
    CHECK_EQ(load(&t, "traces/gsm8k_2_routing.jsonl"), 0);
    CHECK_EQ(t.n_steps, 7889);
    CHECK_EQ(t.n_seqs, 2);
    CHECK_EQ(t.n_layers, 32);
    CHECK_EQ(t.n_experts, 8);
    CHECK_EQ(t.top_k, 2);
    CHECK_EQ(t.n_picks, 2 * 7889);
    CHECK(engine_ordered(&t));
    CHECK_STR(t.seqs[0].dataset, "gsm8k");
    /* the first steps: token 0 through layers 0..31, then token 1 */
    for (int l = 0; l < 32; l++) {
        CHECK_EQ(t.steps[l].token, 0);
        CHECK_EQ(t.steps[l].layer, l);
    }
    CHECK_EQ(t.steps[32].token, 1);
    CHECK_EQ(t.steps[32].layer, 0);
    /* the file's first row: layer 0, token 0, experts [7, 0] */
    CHECK_EQ(t.experts[t.steps[0].off], 7);
    CHECK_EQ(t.experts[t.steps[0].off + 1], 0);
    CHECK(fabsf(t.probs[t.steps[0].off] - 0.80038011f) < 1e-6f);
    /* a layer may miss a row: the counts per layer differ by at most one */
    int per_layer[32] = {0};
    for (size_t i = t.seqs[0].first; i < t.seqs[0].first + t.seqs[0].n_steps; i++)
        per_layer[t.steps[i].layer]++;
    for (int l = 1; l < 32; l++)
        CHECK(abs(per_layer[l] - per_layer[l - 1]) <= 2);
    CHECK_EQ(t.seqs[0].n_tokens, 168);

    /* a second file appends its sequences */
    CHECK_EQ(load(&t, "traces/humaneval_2_routing.jsonl"), 0);
    CHECK_EQ(t.n_steps, 7889 + 10779);
    CHECK_EQ(t.n_seqs, 4);
    CHECK_STR(t.seqs[2].dataset, "humaneval");
    CHECK(engine_ordered(&t));
    CHECK_EQ(trace_n_tokens(&t), 168 + 79 + 83 + 255);
    trace_free(&t);
}

TEST(trace_tinymoe_fixture)
{
    trace t;
    trace_init(&t);
    CHECK_EQ(load(&t, "traces/tinymoe_routing.jsonl"), 0);
    CHECK_EQ(t.n_steps, 30444);
    CHECK_EQ(t.n_seqs, 32);
    CHECK_EQ(t.n_layers, 4);
    CHECK_EQ(t.n_experts, 64);
    CHECK_EQ(t.top_k, 4);
    CHECK(engine_ordered(&t));
    CHECK_EQ(trace_n_tokens(&t), 30444 / 4);
    trace_free(&t);
}

/* Per-layer LRU of `per_layer` entries, cold at each story. */
static double tinymoe_lru(const trace *t, size_t per_layer)
{
    replay_opts o = {.policy = POLICY_LRU, .capacity = per_layer * (size_t)t->n_layers,
                     .per_layer = true, .cold_per_seq = true};
    replay_result r;
    sw_err err = {0};
    if (replay_run(t, &o, &r, &err))
        return -1;
    double h = replay_hit_rate(&r);
    replay_result_free(&r);
    return h;
}

TEST(trace_tinymoe_readme_statistics)
{
    trace t;
    trace_init(&t);
    CHECK_EQ(load(&t, "traces/tinymoe_routing.jsonl"), 0);
    /* "a per-layer LRU cache of 16 / 32 of the 64 experts hits 43% / 74% of
     * picks". The replay pins a layer's cached picks before loading its
     * missing ones, as the engine does, which is worth ~1.5 points at 16;
     * a plain one-pick-at-a-time LRU gives 42.95% / 73.9%. */
    double h16 = tinymoe_lru(&t, 16), h32 = tinymoe_lru(&t, 32);
    CHECKF(fabs(h16 - 0.43) < 0.02, "LRU 16/64 per layer: %.4f", h16);
    CHECKF(fabs(h32 - 0.74) < 0.02, "LRU 32/64 per layer: %.4f", h32);
    /* "15.4% of a token's experts were also used by the previous token"
     * (random would be 4/64 = 6.25%): the prev predictor's precision */
    replay_opts o = {.policy = POLICY_LRU, .capacity = 64, .predictor = PREDICT_PREV,
                     .cold_per_seq = true};
    replay_result r;
    sw_err err = {0};
    CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
    double reuse = replay_precision(&r.pred);
    CHECKF(fabs(reuse - 0.154) < 0.002, "reuse from the previous token: %.4f", reuse);
    /* a story's first token has nothing to go on: its layer 0 is not
     * scored (the prediction would be issued during the previous story),
     * its layers 1..3 are scored with nothing predicted */
    CHECK_EQ(r.pred.actual - r.pred.predicted, (uint64_t)(32 * 3 * 4));
    replay_result_free(&r);
    trace_free(&t);
}

TEST(trace_write_round_trip)
{
    trace a, b;
    trace_init(&a);
    trace_init(&b);
    CHECK_EQ(load(&a, "traces/gsm8k_2_routing.jsonl"), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/rt.jsonl", test_tmpdir());
    sw_err err = {0};
    CHECK_EQ(trace_write(&a, path, &err), 0);
    CHECK_EQ(trace_load(&b, path, &err), 0);
    CHECK_EQ(b.n_steps, a.n_steps);
    CHECK_EQ(b.n_seqs, a.n_seqs);
    for (size_t i = 0; i < a.n_steps; i++) {
        const trace_step *x = &a.steps[i], *y = &b.steps[i];
        CHECK(x->seq == y->seq && x->token == y->token && x->layer == y->layer && x->n == y->n);
        for (int k = 0; k < x->n; k++) {
            CHECK_EQ(a.experts[x->off + (uint32_t)k], b.experts[y->off + (uint32_t)k]);
            CHECK(a.probs[x->off + (uint32_t)k] == b.probs[y->off + (uint32_t)k]);
        }
    }
    /* written in the fixtures' order and shape, probabilities as the
     * shortest decimals that read back as the same floats */
    size_t len;
    char *text = test_read_file(path, &len);
    CHECK(text);
    const char *head =
        "{\"dataset\": \"gsm8k\", \"problem_id\": 0, \"layer\": 0, \"experts\": [7, 0], "
        "\"gating_probs\": [0.8003801, 0.19961987], \"token_idx\": 0}\n"
        "{\"dataset\": \"gsm8k\", \"problem_id\": 0, \"layer\": 0, \"experts\": [5, 6],";
    CHECKF(!strncmp(text, head, strlen(head)), "wrote: %.200s", text);
    free(text);
    trace_free(&a);
    trace_free(&b);
}

TEST(trace_write_tinymoe_byte_identical)
{
    /* tinymoe's recorder wrote 6-digit probabilities: the writer gives
     * back the very same file */
    trace t;
    trace_init(&t);
    CHECK_EQ(load(&t, "traces/tinymoe_routing.jsonl"), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/tm.jsonl", test_tmpdir());
    sw_err err = {0};
    CHECK_EQ(trace_write(&t, path, &err), 0);
    trace_free(&t);
    size_t la, lb;
    char *a = test_read_file(test_fixture("traces/tinymoe_routing.jsonl"), &la);
    char *b = test_read_file(path, &lb);
    CHECK(a && b);
    CHECK_EQ(la, lb);
    CHECK(!memcmp(a, b, la));
    free(a);
    free(b);
}

TEST(trace_record_api)
{
    /* rows added in any order come out in engine order */
    trace t;
    trace_init(&t);
    sw_err err = {0};
    int e01[2] = {3, 1}, e00[2] = {0, 2}, e10[2] = {1, 2}, e11[2] = {5, 4};
    float p[2] = {0.75f, 0.25f};
    CHECK_EQ(trace_add(&t, "live", 7, 0, 1, e01, p, 2, &err), 0);
    CHECK_EQ(trace_add(&t, "live", 7, 1, 1, e11, p, 2, &err), 0);
    CHECK_EQ(trace_add(&t, "live", 7, 1, 0, e10, NULL, 2, &err), 0);
    CHECK_EQ(trace_add(&t, "live", 7, 0, 0, e00, p, 2, &err), 0);
    CHECK_EQ(trace_finish(&t, &err), 0);
    CHECK(engine_ordered(&t));
    CHECK_EQ(t.experts[t.steps[0].off], 0);
    CHECK_EQ(t.experts[t.steps[1].off], 3);
    CHECK_EQ(t.experts[t.steps[2].off], 1);
    CHECK_EQ(t.experts[t.steps[3].off], 5);
    CHECK_EQ(t.n_experts, 6);
    /* a duplicate row is refused at finish */
    CHECK_EQ(trace_add(&t, "live", 7, 1, 0, e10, NULL, 2, &err), 0);
    CHECK_EQ(trace_finish(&t, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "token 1, layer 0 appears twice");
    /* bad rows are refused at add */
    int dup[2] = {4, 4}, big[1] = {70000};
    CHECK_EQ(trace_add(&t, "live", 7, 2, 0, dup, NULL, 2, &err), SW_EFORMAT);
    CHECK_EQ(trace_add(&t, "live", 7, 2, 0, big, NULL, 1, &err), SW_ERANGE);
    CHECK_EQ(trace_add(&t, "live", 7, -1, 0, e00, NULL, 2, &err), SW_ERANGE);
    CHECK_EQ(trace_add(&t, "live", 7, 2, 70000, e00, NULL, 2, &err), SW_ERANGE);
    trace_free(&t);
}

static int load_text(const char *text, sw_err *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", test_tmpdir());
    FILE *f = fopen(path, "w");
    if (!f)
        return -100;
    fputs(text, f);
    fclose(f);
    trace t;
    trace_init(&t);
    int rc = trace_load(&t, path, err);
    trace_free(&t);
    return rc;
}

TEST(trace_malformed_files)
{
    sw_err err = {0};
    const char *ok = "{\"dataset\": \"d\", \"problem_id\": 0, \"layer\": 0, \"experts\": [1, 2], "
                     "\"gating_probs\": [0.5, 0.5], \"token_idx\": 0}\n";
    CHECK_EQ(load_text(ok, &err), 0);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s\n%s{\"dataset\": \"d\", \"problem_id\": 0", ok, ok);
    CHECK_EQ(load_text(buf, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "bad.jsonl:4:"); /* names the line (blank lines count) */
    snprintf(buf, sizeof buf, "%s%s", ok, ok);
    CHECK_EQ(load_text(buf, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "appears twice");
    CHECK_EQ(load_text("{\"dataset\": \"d\", \"problem_id\": 0, \"layer\": 0, \"experts\": [1, "
                       "\"x\"], \"token_idx\": 0}\n",
                       &err),
             SW_EFORMAT);
    CHECK_HAS(err.msg, "\"experts\"[1]");
    CHECK_EQ(load_text("{\"dataset\": \"d\", \"problem_id\": 0, \"layer\": 0, \"experts\": [1], "
                       "\"gating_probs\": [0.5, 0.5], \"token_idx\": 0}\n",
                       &err),
             SW_EFORMAT);
    CHECK_HAS(err.msg, "gating_probs");
    CHECK_EQ(load_text("{\"dataset\": \"d\", \"problem_id\": 0, \"layer\": -1, \"experts\": [1], "
                       "\"token_idx\": 0}\n",
                       &err),
             SW_ERANGE);
    CHECK_HAS(err.msg, "\"layer\"");
    CHECK_EQ(load_text("{\"dataset\": \"d\", \"layer\": 0, \"experts\": [1], \"token_idx\": 0}\n",
                       &err),
             SW_EFORMAT);
    CHECK_HAS(err.msg, "missing \"problem_id\"");
    CHECK_EQ(load_text("[1, 2]\n", &err), SW_EFORMAT);
    trace t;
    trace_init(&t);
    CHECK_EQ(trace_load(&t, "/nonexistent/x.jsonl", &err), SW_EIO);
    trace_free(&t);
}

/* --- `spillway trace`: recording a model's routing ------------------------- */

#define TINYMOE_Q8 "tinymoe/tinymoe-q8_0.gguf"

/* Runs `spillway trace ARGS` with stderr into the test's folder; returns
 * the exit status, *err the standard error (malloc'd). */
static int spill_trace(const char *args, char **out, char **err)
{
    char cmd[8192], errpath[1024];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s trace %s 2>'%s' </dev/null", test_bin(), args, errpath);
    int rc = test_run(cmd, out);
    *err = test_read_file(errpath, NULL);
    if (!*err)
        *err = strdup("");
    return rc;
}

/* The step of (seq, token, layer), or NULL. */
static const trace_step *find_step(const trace *t, uint32_t seq, int token, int layer)
{
    for (size_t i = t->seqs[seq].first; i < t->seqs[seq].first + t->seqs[seq].n_steps; i++)
        if (t->steps[i].token == token && t->steps[i].layer == layer)
            return &t->steps[i];
    return NULL;
}

static int same_set(const uint16_t *a, const uint16_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            found |= a[i] == b[j];
        if (!found)
            return 0;
    }
    return 1;
}

TEST(trace_cli_tinymoe_teacher_forced)
{
    /* the prompt alone (-n 0): one row per token and layer, in the
     * fixtures' shape; the fixture trace's first story begins with the
     * same 9 tokens, so its rows for them name the same experts (the
     * fixture was recorded from the unquantized weights: the order of
     * near-tied experts may differ, the set does not) */
    char path[1024], args[4096], *out, *err;
    snprintf(path, sizeof path, "%s/t.jsonl", test_tmpdir());
    snprintf(args, sizeof args, "'%s' -p 'Once upon a time, there was a' --out '%s'",
             test_fixture(TINYMOE_Q8), path);
    int rc = spill_trace(args, &out, &err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, "");
    CHECK_HAS(err, "9 tokens, 36 rows (4 layers, top-4 of 64)");
    free(out);
    free(err);
    trace t, fx;
    trace_init(&t);
    trace_init(&fx);
    sw_err e = {0};
    CHECKF(trace_load(&t, path, &e) == 0, "%s", e.msg);
    CHECK_EQ(load(&fx, "traces/tinymoe_routing.jsonl"), 0);
    CHECK_EQ(t.n_seqs, 1);
    CHECK_STR(t.seqs[0].dataset, "prompt");
    CHECK_EQ(t.seqs[0].problem_id, 0);
    CHECK_EQ(t.n_steps, 36);
    CHECK_EQ(t.n_layers, 4);
    CHECK_EQ(t.top_k, 4);
    CHECK(t.n_experts <= 64);
    CHECK_EQ(trace_n_tokens(&t), 9);
    CHECK(engine_ordered(&t));
    CHECK_EQ(fx.seqs[0].problem_id, 0);
    for (size_t i = 0; i < t.n_steps; i++) {
        const trace_step *s = &t.steps[i], *f = find_step(&fx, 0, s->token, s->layer);
        CHECK(f && s->n == 4 && f->n == 4);
        float sum = 0;
        for (int k = 0; k < 4; k++) {
            float p = t.probs[s->off + (uint32_t)k];
            CHECK(p > 0 && (k == 0 || p <= t.probs[s->off + (uint32_t)k - 1]));
            sum += p;
        }
        CHECKF(fabsf(sum - 1) < 1e-5f, "weights of token %d layer %d sum to %g", s->token,
               s->layer, sum);
        CHECKF(same_set(&t.experts[s->off], &fx.experts[f->off], 4),
               "token %d layer %d: not the fixture's experts", s->token, s->layer);
    }
    trace_free(&t);
    trace_free(&fx);
}

/* The routing of prompt + greedy generation, recorded in this process
 * through the model's hook, as the trace's rows should hold it. */
typedef struct hook_rows {
    trace t;
} hook_rows;

static void hook_record(void *ctx, const model_route *r)
{
    hook_rows *h = ctx;
    for (int i = 0; i < r->n_tokens; i++)
        trace_add(&h->t, "prompt", 0, r->pos + i, r->layer, r->experts + i * r->n_used,
                  r->weights + i * r->n_used, r->n_used, NULL);
}

TEST(trace_cli_rows_are_the_models_routing)
{
    char path[1024], args[4096], *out, *err;
    snprintf(path, sizeof path, "%s/g.jsonl", test_tmpdir());
    snprintf(args, sizeof args,
             "'%s' -p 'Once upon a time, there was a little' -n 12 --mmap --out '%s'",
             test_fixture(TINYMOE_Q8), path);
    int rc = spill_trace(args, &out, &err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    /* greedy, as llama.cpp continues it (fixtures README) */
    CHECK_STR(out, " girl named Lily. She loved to play outside\n");
    free(out);
    free(err);

    hook_rows h;
    trace_init(&h.t);
    sw_err e = {0};
    generator *g = NULL;
    generator_opts go = {.n_threads = 1};
    CHECKF(generator_open(test_fixture(TINYMOE_Q8), &go, &g, &e) == 0, "%s", e.msg);
    int32_t *ids = NULL;
    int n = 0;
    kv_cache *kv = NULL;
    kv_cache_opts ko = {.n_ctx = 64};
    CHECK(generator_encode(g, "Once upon a time, there was a little", false, &ids, &n, &e) == 0);
    CHECK(kv_cache_new(generator_model(g), &ko, &kv, &e) == 0);
    model_set_route_hook(generator_model(g), hook_record, &h);
    generator_params gp = generator_default_params();
    gp.sampling.temperature = 0;
    gp.max_tokens = 12;
    CHECK(generator_run(g, kv, ids, n, &gp, NULL, NULL, &e) == 0);
    free(ids);
    kv_cache_free(kv);
    generator_close(g);
    CHECK(trace_finish(&h.t, &e) == 0);

    trace t;
    trace_init(&t);
    CHECKF(trace_load(&t, path, &e) == 0, "%s", e.msg);
    CHECK_EQ(trace_n_tokens(&t), (size_t)n + 12 - 1); /* the last token is never run */
    CHECK_EQ(t.n_steps, h.t.n_steps);
    CHECK_EQ(t.n_steps, 4 * trace_n_tokens(&t));
    for (size_t i = 0; i < t.n_steps; i++) {
        const trace_step *a = &t.steps[i], *b = &h.t.steps[i];
        CHECK(a->token == b->token && a->layer == b->layer && a->n == b->n);
        for (int k = 0; k < a->n; k++) {
            CHECK_EQ(t.experts[a->off + (uint32_t)k], h.t.experts[b->off + (uint32_t)k]);
            CHECK(t.probs[a->off + (uint32_t)k] == h.t.probs[b->off + (uint32_t)k]);
        }
    }
    trace_free(&t);
    trace_free(&h.t);
}

TEST(trace_cli_lines_and_errors)
{
    char path[1024], prompts[1024], args[4096], *out, *err;
    snprintf(path, sizeof path, "%s/l.jsonl", test_tmpdir());
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", test_tmpdir());
    FILE *f = fopen(prompts, "w");
    CHECK(f);
    fputs("Once upon a time\n\nTom and his dog\n", f);
    fclose(f);
    snprintf(args, sizeof args, "'%s' -f '%s' --lines --dataset stories -n 3 --quiet --out '%s'",
             test_fixture(TINYMOE_Q8), prompts, path);
    int rc = spill_trace(args, &out, &err);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, "");
    free(out);
    free(err);
    trace t;
    trace_init(&t);
    sw_err e = {0};
    CHECKF(trace_load(&t, path, &e) == 0, "%s", e.msg);
    CHECK_EQ(t.n_seqs, 2); /* the empty line is no sequence */
    CHECK_STR(t.seqs[0].dataset, "stories");
    CHECK_EQ(t.seqs[0].problem_id, 0);
    CHECK_EQ(t.seqs[1].problem_id, 1);
    CHECK_EQ(t.seqs[0].n_tokens, 5 + 3 - 1); /* BOS + 4 tokens, 3 generated */
    CHECK_EQ(t.steps[t.seqs[1].first].token, 0);
    trace_free(&t);

    /* a dense model has nothing to trace; a missing --out is misuse */
    snprintf(args, sizeof args, "'%s' -p hi --out '%s'",
             test_fixture("stories260K/stories260K.gguf"), path);
    rc = spill_trace(args, &out, &err);
    CHECK_EQ(rc, 1);
    CHECK_HAS(err, "no routed experts");
    free(out);
    free(err);
    snprintf(args, sizeof args, "'%s' -p hi", test_fixture(TINYMOE_Q8));
    rc = spill_trace(args, &out, &err);
    CHECK_EQ(rc, 2);
    free(out);
    free(err);
}
