/* Tests for src/store/replay (scripted replays, Belady's bound) and
 * src/store/plan (the estimate, a model's shape, the probes), and
 * `spillway plan` end to end. */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "store/plan.h"
#include "store/replay.h"

/* One sequence, one expert per layer, tokens given as rows of L experts. */
static void make_trace(trace *t, int n_tokens, int L, const int *experts)
{
    trace_init(t);
    for (int tok = 0; tok < n_tokens; tok++)
        for (int l = 0; l < L; l++)
            trace_add(t, "s", 0, tok, l, &experts[tok * L + l], NULL, 1, NULL);
    trace_finish(t, NULL);
}

TEST(replay_prefetch_accounting)
{
    /* 3 layers, LRU of 2 entries: without prefetch a 3-cycle always misses;
     * prefetching "the previous token's expert" one layer ahead turns the
     * second token into hits */
    trace t;
    int same[] = {0, 1, 2, 0, 1, 2};
    make_trace(&t, 2, 3, same);
    replay_opts o = {.policy = POLICY_LRU, .capacity = 2, .entry_bytes = 1000};
    replay_result r;
    sw_err err = {0};
    CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
    CHECK_EQ(r.accesses, 6);
    CHECK_EQ(r.hits, 0);
    CHECK_EQ(r.bytes_read, 6000);
    replay_result_free(&r);

    o.predictor = PREDICT_PREV;
    o.prefetch = true;
    CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
    CHECK_EQ(r.hits, 3);
    CHECK_EQ(r.misses, 3);
    CHECK_EQ(r.prefetches, 3);
    CHECK_EQ(r.prefetch_hits, 3);
    CHECK_EQ(r.prefetch_wasted, 0);
    CHECK_EQ(r.bytes_read, 6000);
    CHECK_EQ(r.pred.predicted, 3);
    CHECK_EQ(r.pred.correct, 3);
    CHECK_EQ(r.pred.actual, 5); /* step 0 has no issuing step */
    CHECK_EQ(r.per_layer[0].actual, 1);
    CHECK_EQ(r.per_layer[1].actual, 2);
    replay_result_free(&r);
    trace_free(&t);

    /* the second token switches layer 1 to another expert: the prefetched
     * one is evicted unused (wasted), the real one is a demand miss */
    int change[] = {0, 1, 2, 0, 3, 2};
    make_trace(&t, 2, 3, change);
    CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
    CHECK_EQ(r.hits, 2);
    CHECK_EQ(r.misses, 4);
    CHECK_EQ(r.prefetches, 3);
    CHECK_EQ(r.prefetch_hits, 2);
    CHECK_EQ(r.prefetch_wasted, 1);
    CHECK_EQ(r.pred.correct, 2);
    replay_result_free(&r);

    /* scoring without prefetching leaves the cache alone */
    o.prefetch = false;
    CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
    CHECK_EQ(r.prefetches, 0);
    CHECK_EQ(r.hits, 0);
    CHECK_EQ(r.pred.correct, 2);
    replay_result_free(&r);
    trace_free(&t);
}

TEST(replay_opt_bypasses)
{
    /* Belady on the 3-cycle with 2 slots: keep 0 and 1, never cache 2 */
    trace t;
    int cyc[] = {0, 1, 2, 0, 1, 2, 0, 1, 2};
    make_trace(&t, 3, 3, cyc);
    uint64_t h, a;
    sw_err err = {0};
    CHECK_EQ(replay_opt(&t, 2, &h, &a, &err), 0);
    CHECK_EQ(a, 9);
    CHECK_EQ(h, 4);
    CHECK_EQ(replay_opt(&t, 3, &h, &a, &err), 0);
    CHECK_EQ(h, 6);
    CHECK_EQ(replay_opt(&t, 0, &h, &a, &err), 0);
    CHECK_EQ(h, 0);
    trace_free(&t);
}

TEST(replay_opt_bounds_every_policy)
{
    const char *files[] = {"traces/tinymoe_routing.jsonl", "traces/humaneval_2_routing.jsonl"};
    for (int f = 0; f < 2; f++) {
        trace t;
        trace_init(&t);
        sw_err err = {0};
        CHECK_EQ(trace_load(&t, test_fixture(files[f]), &err), 0);
        size_t total = (size_t)t.n_layers * (size_t)t.n_experts;
        for (size_t cap = total / 8; cap <= total; cap += total / 8) {
            uint64_t h, a;
            CHECK_EQ(replay_opt(&t, cap, &h, &a, &err), 0);
            for (int k = 0; k < POLICY_KIND_COUNT; k++) {
                replay_opts o = {.policy = (policy_kind)k, .capacity = cap};
                replay_result r;
                CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
                CHECK_EQ(r.accesses, a);
                CHECKF(r.hits <= h, "%s at %zu: %llu hits > opt %llu",
                       policy_kind_name((policy_kind)k), cap, (unsigned long long)r.hits,
                       (unsigned long long)h);
                CHECK_EQ(r.hits + r.misses, r.accesses);
                replay_result_free(&r);
            }
        }
        trace_free(&t);
    }
}

TEST(replay_stale_beats_lru_on_real_traces)
{
    /* the reason stale is the default: on both real traces it is at least
     * as good as LRU at every budget, and much better below one token's
     * worth of experts */
    const char *files[][2] = {{"traces/gsm8k_2_routing.jsonl", "traces/humaneval_2_routing.jsonl"},
                              {"traces/tinymoe_routing.jsonl", NULL}};
    for (int f = 0; f < 2; f++) {
        trace t;
        trace_init(&t);
        sw_err err = {0};
        for (int i = 0; i < 2 && files[f][i]; i++)
            CHECK_EQ(trace_load(&t, test_fixture(files[f][i]), &err), 0);
        size_t total = (size_t)t.n_layers * (size_t)t.n_experts;
        for (size_t cap = total / 8; cap < total; cap += total / 8) {
            double hit[POLICY_KIND_COUNT];
            for (int k = 0; k < POLICY_KIND_COUNT; k++) {
                replay_opts o = {.policy = (policy_kind)k, .capacity = cap};
                replay_result r;
                CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
                hit[k] = replay_hit_rate(&r);
                replay_result_free(&r);
            }
            CHECKF(hit[POLICY_STALE] >= hit[POLICY_LRU] - 0.005, "%s cap %zu: stale %.3f lru %.3f",
                   files[f][0], cap, hit[POLICY_STALE], hit[POLICY_LRU]);
        }
        trace_free(&t);
    }
}

TEST(replay_default_beats_lru_and_closes_half_the_gap)
{
    /* The store's default (stale + read-ahead by the auto predictor,
     * replay_opts_default) against LRU and Belady's optimum on each fixture
     * trace, at 1/8 .. 3/4 of the experts: it beats LRU everywhere and
     * closes at least half of the gap (default - lru) / (opt - lru), except
     * on tinymoe at 3/4, where its 64 load-balanced experts leave the
     * co-occurrence predictor little to find (0.37: checked at 0.3). */
    static const char *const files[] = {"traces/gsm8k_2_routing.jsonl",
                                         "traces/humaneval_2_routing.jsonl",
                                         "traces/tinymoe_routing.jsonl"};
    static const double fracs[] = {1.0 / 8, 1.0 / 4, 3.0 / 8, 1.0 / 2, 3.0 / 4};
    for (int f = 0; f < 3; f++) {
        trace t;
        trace_init(&t);
        sw_err err = {0};
        CHECK_EQ(trace_load(&t, test_fixture(files[f]), &err), 0);
        size_t total = (size_t)t.n_layers * (size_t)t.n_experts;
        for (int b = 0; b < 5; b++) {
            size_t cap = (size_t)(fracs[b] * (double)total + 0.5);
            replay_opts o = {.policy = POLICY_LRU, .capacity = cap};
            replay_result lru, def;
            CHECK_EQ(replay_run(&t, &o, &lru, &err), 0);
            replay_opts_default(&o, &t, cap);
            CHECK_EQ(o.policy, POLICY_DEFAULT);
            CHECK_EQ(replay_run(&t, &o, &def, &err), 0);
            uint64_t h, a;
            CHECK_EQ(replay_opt(&t, cap, &h, &a, &err), 0);
            double hl = replay_hit_rate(&lru), hd = replay_hit_rate(&def), ho = (double)h / a;
            double gap = (hd - hl) / (ho - hl), want = f == 2 && b == 4 ? 0.3 : 0.5;
            CHECKF(hd > hl, "%s at %zu: default %.3f <= lru %.3f", files[f], cap, hd, hl);
            CHECKF(gap >= want, "%s at %zu: gap closed %.2f < %.2f (lru %.3f default %.3f opt %.3f)",
                   files[f], cap, gap, want, hl, hd, ho);
            /* the accounting: reads ahead are counted, used or wasted */
            CHECK_EQ(def.accesses, a);
            CHECK_EQ(def.hits + def.misses, def.accesses);
            CHECK(def.prefetches > 0 && def.prefetch_hits > 0);
            CHECK(def.prefetch_hits + def.prefetch_wasted <= def.prefetches);
            CHECK(def.kinds != NULL);
            replay_result_free(&lru);
            replay_result_free(&def);
        }
        trace_free(&t);
    }
}

TEST(replay_scores_every_predictor)
{
    /* co-occurrence is the trace-only predictor worth having: on every
     * fixture trace it beats the previous token's and recent use */
    const char *files[] = {"traces/humaneval_2_routing.jsonl", "traces/tinymoe_routing.jsonl"};
    for (int f = 0; f < 2; f++) {
        trace t;
        trace_init(&t);
        sw_err err = {0};
        CHECK_EQ(trace_load(&t, test_fixture(files[f]), &err), 0);
        replay_opts o;
        replay_opts_default(&o, &t, (size_t)t.n_layers * (size_t)t.n_experts / 4);
        replay_result r;
        CHECK_EQ(replay_run(&t, &o, &r, &err), 0);
        replay_pred k[XPRED_COUNT] = {{0}};
        for (int i = 0; i < XPRED_COUNT; i++)
            for (int l = 0; l < r.n_layers; l++) {
                k[i].predicted += r.kinds[(size_t)i * r.n_layers + l].predicted;
                k[i].correct += r.kinds[(size_t)i * r.n_layers + l].correct;
                k[i].actual += r.kinds[(size_t)i * r.n_layers + l].actual;
            }
        CHECK_EQ(k[XPRED_HINT].predicted, 0); /* nothing to hint with on a trace */
        CHECK_EQ(k[XPRED_AUTO].correct, r.pred.correct);
        CHECK_EQ(k[XPRED_AUTO].predicted, r.pred.predicted);
        CHECK(k[XPRED_COOC].actual == r.pred.actual);
        double margin = f ? 0.1 : 0.02; /* Mixtral's 8 experts leave less to gain */
        CHECKF(replay_precision(&k[XPRED_COOC]) > replay_precision(&k[XPRED_PREV]) + margin &&
                   replay_precision(&k[XPRED_COOC]) > replay_precision(&k[XPRED_FREQ]) + margin,
               "%s: cooc %.3f prev %.3f freq %.3f", files[f], replay_precision(&k[XPRED_COOC]),
               replay_precision(&k[XPRED_PREV]), replay_precision(&k[XPRED_FREQ]));
        replay_result_free(&r);
        trace_free(&t);
    }
}

TEST(plan_estimate_formula)
{
    plan_machine m = {.mem_bw = 10e9, .ssd_bw = 1e9};
    plan_model md = {.n_moe_layer = 2, .n_expert = 8, .n_expert_used = 2,
                     .expert_bytes = 1000000, .token_resident = 1000000};
    plan_rates r = {.hit = 0.5, .demand = 0.5, .prefetch = 0.25};
    plan_estimate e;
    plan_estimate_token(&m, &md, &r, &e);
    /* compute: (1e6 + 4 reads x 1e6) / 10e9 = 0.5 ms; demand 2e6 / 1e9 = 2 ms;
     * prefetch 1e6 / 1e9 = 1 ms, hidden behind... nothing: it is longer */
    CHECK(fabs(e.t_compute - 0.5e-3) < 1e-12);
    CHECK(fabs(e.t_demand - 2e-3) < 1e-12);
    CHECK(fabs(e.t_prefetch - 1e-3) < 1e-12);
    CHECK(fabs(e.t_token - 3e-3) < 1e-12);
    CHECK(fabs(e.tok_per_s - 1 / 3e-3) < 1e-6);
    CHECK(fabs(e.ssd_bytes_per_token - 3e6) < 1e-3);
    /* everything cached: the memory-bandwidth bound */
    r = (plan_rates){1, 0, 0};
    m.ssd_bw = 0; /* not needed when nothing is read */
    plan_estimate_token(&m, &md, &r, &e);
    CHECK(fabs(e.tok_per_s - 2000) < 1e-6);
    /* reads but no SSD figure: unknown, not infinite */
    r = (plan_rates){0.5, 0.5, 0};
    plan_estimate_token(&m, &md, &r, &e);
    CHECK(e.tok_per_s == 0);
}

TEST(plan_model_shape_tinymoe)
{
    gguf_ctx *g;
    sw_err err = {0};
    CHECK_EQ(gguf_open(test_fixture("tinymoe/tinymoe-q8_0.gguf"), GGUF_NO_DATA, &g, &err), 0);
    plan_model md;
    CHECK_EQ(plan_model_from_gguf(g, &md, &err), 0);
    CHECK_STR(md.arch, "qwen3moe");
    CHECK_EQ(md.n_layer, 4);
    CHECK_EQ(md.n_moe_layer, 4);
    CHECK_EQ(md.n_expert, 64);
    CHECK_EQ(md.n_expert_used, 4);
    uint64_t all = 0, exps = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        all += t->size;
        if (strstr(t->name, "_exps.weight"))
            exps += t->size;
    }
    CHECK_EQ(md.expert_total, exps);
    CHECK_EQ(md.resident_bytes + md.expert_total, all);
    CHECK_EQ(md.expert_bytes * 64 * 4, md.expert_total);
    CHECK(md.token_resident < md.resident_bytes); /* the embedding table is read by row */
    CHECK(md.expert_lo >= gguf_data_offset(g) && md.expert_hi <= gguf_file_size(g));
    gguf_close(g);

    CHECK_EQ(gguf_open(test_fixture("models/llama/llama-f32.gguf"), GGUF_NO_DATA, &g, &err), 0);
    CHECK_EQ(plan_model_from_gguf(g, &md, &err), 0);
    CHECK_EQ(md.n_expert, 0);
    CHECK_EQ(md.expert_total, 0);
    CHECK(md.resident_bytes > 0);
    gguf_close(g);
}

TEST(plan_probes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/meminfo", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("MemTotal:       16384000 kB\nMemFree:   100 kB\nMemAvailable:    8192000 kB\n", f);
    fclose(f);
    plan_machine m = {0};
    sw_err err = {0};
    CHECK_EQ(plan_probe_meminfo(&m, path, &err), 0);
    CHECK_EQ(m.ram_total, 16384000ull * 1024);
    CHECK_EQ(m.ram_avail, 8192000ull * 1024);
    CHECK(m.n_cpus >= 1);
    CHECK_EQ(plan_probe_meminfo(&m, "/nonexistent", &err), SW_EIO);

    CHECK_EQ(plan_probe_mem_bw(&m, 32u << 20, &err), 0);
    CHECKF(m.mem_bw > 1e8 && m.mem_bw < 1e13, "memory bandwidth %.3g B/s", m.mem_bw);

    /* O_DIRECT may be refused by the fixtures' file system: then a note */
    const char *model = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    CHECK_EQ(plan_probe_ssd(&m, model, 0, 4u << 20, 64 * 1024, 2, 0.05, &err), 0);
    CHECKF(m.ssd_bw > 0 || strstr(m.ssd_note, "not measured"), "%s", m.ssd_note);
    CHECK_EQ(plan_probe_ssd(&m, model, 0, 4096, 64 * 1024, 2, 0.05, &err), 0);
    CHECK_EQ(m.ssd_bw, 0); /* range smaller than one read */
}

static json_t *run_plan_json(const char *args)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan %s --json", test_bin(), args);
    if (test_run(cmd, &out) != 0) {
        free(out);
        return NULL;
    }
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    return j;
}

TEST(plan_cli_traces)
{
    char args[1024];
    snprintf(args, sizeof args, "--trace %s", test_fixture("traces/tinymoe_routing.jsonl"));
    json_t *j = run_plan_json(args);
    CHECK(j);
    CHECK_STR(json_string_value(json_object_get(j, "default_policy")), "stale");
    json_t *tr = json_array_get(json_object_get(j, "traces"), 0);
    CHECK(tr);
    CHECK_EQ(json_integer_value(json_object_get(tr, "tokens")), 7611);
    json_t *budgets = json_object_get(tr, "budgets");
    CHECK_EQ(json_array_size(budgets), 9);
    double last = -1;
    for (size_t i = 0; i < json_array_size(budgets); i++) {
        json_t *b = json_array_get(budgets, i), *hit = json_object_get(b, "hit_rate");
        double stale = json_real_value(json_object_get(hit, "stale"));
        double opt = json_real_value(json_object_get(b, "opt"));
        CHECK(stale >= last && stale <= opt + 1e-12);
        last = stale;
    }
    json_t *prev = json_object_get(json_object_get(tr, "predictors"), "prev");
    CHECK(fabs(json_real_value(json_object_get(prev, "precision")) - 0.153) < 0.01);
    json_t *cooc = json_object_get(json_object_get(tr, "predictors"), "cooc");
    CHECK(json_real_value(json_object_get(cooc, "precision")) > 0.3);
    CHECK_EQ(json_array_size(json_object_get(cooc, "per_layer")), 4);
    /* the default's curve beside the policies', with what it reads */
    for (size_t i = 0; i + 1 < json_array_size(budgets); i++) {
        json_t *b = json_array_get(budgets, i), *d = json_object_get(b, "default");
        double lru = json_real_value(json_object_get(json_object_get(b, "hit_rate"), "lru"));
        CHECK(d && json_real_value(json_object_get(d, "hit_rate")) > lru);
        double ahead = json_real_value(json_object_get(d, "prefetch_reads_per_token"));
        double used = json_real_value(json_object_get(d, "prefetch_hits_per_token"));
        double wasted = json_real_value(json_object_get(d, "prefetch_wasted_per_token"));
        CHECK(used + wasted <= ahead + 1e-9);
    }
    json_decref(j);
}

TEST(plan_cli_text_scores_the_hint)
{
    /* --text: tinymoe over a story in the engine, with and without hints */
    char path[4096], args[8192];
    snprintf(path, sizeof path, "%s/story.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("Once upon a time, there was a little girl named Lily. She liked to play in the park "
          "with her dog. One day, she saw a big red ball under a tree. She threw the ball and "
          "the dog ran after it. Then it started to rain, and her mom came with a yellow "
          "umbrella. They went home and had warm milk. Lily was happy.",
          f);
    fclose(f);
    snprintf(args, sizeof args, "%s --ssd-bw 1 --text %s --text-share 0.25",
             test_fixture("tinymoe/tinymoe-q8_0.gguf"), path);
    json_t *j = run_plan_json(args);
    CHECK(j);
    json_t *e = json_object_get(j, "engine"), *e0 = json_object_get(j, "engine_no_hints");
    CHECK(e && e0);
    json_int_t tokens = json_integer_value(json_object_get(e, "tokens"));
    CHECK(tokens > 40);
    CHECK_EQ(json_integer_value(json_object_get(e, "requests")), tokens * 4 * 4);
    CHECK_EQ(json_integer_value(json_object_get(e, "capacity")), 64);
    json_t *hint = json_object_get(json_object_get(e, "predictors_per_layer"), "hint");
    json_t *hint0 = json_object_get(json_object_get(e0, "predictors_per_layer"), "hint");
    CHECK_EQ(json_array_size(hint), 4);
    /* layer 0 has nothing before it in the token; layers 1..3 get 4 guesses a token */
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(hint, 0), "predicted")), 0);
    for (int l = 1; l < 4; l++) {
        json_t *h = json_array_get(hint, (size_t)l);
        CHECK_EQ(json_integer_value(json_object_get(h, "predicted")), tokens * 4);
        CHECKF(json_real_value(json_object_get(h, "precision")) > 0.3, "layer %d: %.3f", l,
               json_real_value(json_object_get(h, "precision")));
        CHECK_EQ(json_integer_value(
                     json_object_get(json_array_get(hint0, (size_t)l), "predicted")), 0);
    }
    json_decref(j);
}

TEST(plan_cli_model)
{
    char args[1024];
    snprintf(args, sizeof args, "%s --ram 10M --ssd-bw 1",
             test_fixture("tinymoe/tinymoe-q8_0.gguf"));
    json_t *j = run_plan_json(args);
    CHECK(j);
    json_t *md = json_object_get(j, "model");
    CHECK_EQ(json_integer_value(json_object_get(md, "experts")), 64);
    json_t *tr = json_array_get(json_object_get(j, "traces"), 0);
    CHECK_HAS(json_string_value(json_object_get(tr, "mapping")), "exact");
    json_t *budgets = json_object_get(tr, "budgets");
    int fits = 0;
    for (size_t i = 0; i < json_array_size(budgets); i++) {
        json_t *b = json_array_get(budgets, i);
        json_t *est = json_object_get(b, "estimate");
        CHECK(est && json_real_value(json_object_get(est, "tok_per_s")) > 0);
        if (json_is_true(json_object_get(b, "largest_fit"))) {
            fits++;
            /* 10 MiB - 1.25 MiB reserve - resident, in 51 KiB experts */
            CHECK(json_integer_value(json_object_get(b, "cache_bytes")) < 9 << 20);
        }
    }
    CHECK_EQ(fits, 1);
    json_decref(j);

    /* the text form says what fits in one line */
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan %s", test_bin(), args);
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_HAS(out, "of expert reads from RAM, about");
    CHECK_HAS(out, "default cache policy: stale");
    free(out);
}

TEST(plan_cli_errors)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan --cache-policy arc 2>&1", test_bin());
    CHECK(test_run(cmd, &out) != 0);
    CHECK_HAS(out, "unknown cache policy");
    free(out);
    snprintf(cmd, sizeof cmd, "%s plan --trace /nonexistent.jsonl 2>&1", test_bin());
    CHECK(test_run(cmd, &out) != 0);
    CHECK_HAS(out, "/nonexistent.jsonl");
    free(out);
}
