/* End-to-end tests of `spillway run` and `spillway bench`: the real binary on
 * the fixture models, checked against the continuations llama.cpp gives. */
#include "test.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>

#include "gguf/gguf.h"

#define STORIES "stories260K/stories260K.gguf"
#define TINYMOE_Q8 "tinymoe/tinymoe-q8_0.gguf"

/* Runs `spillway ARGS` (printf-style), standard output into *out and
 * standard error into *err (both malloc'd); returns the exit status. */
static int __attribute__((format(printf, 3, 4))) spill(char **out, char **err, const char *fmt,
                                                       ...)
{
    char args[4096], cmd[8192], errpath[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s 2>'%s' </dev/null", test_bin(), args, errpath);
    int rc = test_run(cmd, out);
    *err = test_read_file(errpath, NULL);
    if (!*err)
        *err = strdup("");
    return rc;
}

/* The number after "label" in text (e.g. "eval count:"), or -1. */
static long stat_after(const char *text, const char *label)
{
    const char *p = strstr(text, label);
    return p ? strtol(p + strlen(label), NULL, 10) : -1;
}

TEST(run_stories_greedy_matches_llamacpp)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --temp 0 -n 48",
                   test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, ", there was a little girl named Lily. She loved to play outside in the park. "
                   "One day, she saw a big, red ball. She wanted to play with it,\n");
    free(out);
    free(err);
    rc = spill(&out, &err, "run '%s' -p 'Lily and Ben went to the park' --temp 0 -n 40",
               test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, ". They saw a big box with a big box. They wanted to play with it. They wanted "
                   "to play with the box. They wanted to play with\n");
    free(out);
    free(err);
}

TEST(run_tinymoe_greedy_matches_llamacpp)
{
    static const struct {
        const char *file, *want;
    } cases[] = {
        {TINYMOE_Q8, " girl named Lily. She loved to play outside in the park. One day, she saw a "
                     "big, red ball. She wanted to play with it, but she did\n"},
        {"tinymoe/tinymoe-q4_k_m.gguf", " girl named Lily. She loved to play outside in the park. "
                                        "One day, she saw a big, red ball. She wanted to play "
                                        "with it, but it was\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = spill(&out, &err,
                       "run '%s' -p 'Once upon a time, there was a little' --temp 0 -n 40 --verbose",
                       test_fixture(cases[i].file));
        CHECKF(rc == 0, "%s: rc %d: %s", cases[i].file, rc, err);
        CHECK_STR(out, cases[i].want);
        CHECK_EQ(stat_after(err, "prompt eval count:"), 10); /* BOS + 9, as llama.cpp */
        CHECK_EQ(stat_after(err, "\neval count:"), 40);
        CHECK_HAS(err, "stop reason:          length");
        free(out);
        free(err);
    }
}

TEST(run_seed_is_deterministic)
{
    char *a, *b, *c, *err;
    const char *m = test_fixture(STORIES);
    CHECK_EQ(spill(&a, &err, "run '%s' -p 'Once upon a time' --seed 42 -n 40", m), 0);
    free(err);
    CHECK_EQ(spill(&b, &err, "run '%s' -p 'Once upon a time' --seed 42 -n 40 --threads 1", m), 0);
    free(err);
    CHECK_EQ(spill(&c, &err, "run '%s' -p 'Once upon a time' --seed 43 -n 40", m), 0);
    free(err);
    CHECK_STR(a, b);
    CHECKF(strcmp(a, c) != 0, "seeds 42 and 43 gave the same text: %s", a);
    free(a);
    free(b);
    free(c);
}

TEST(run_stop_string_stops_and_is_not_printed)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --temp 0 -n 48 --stop Lily "
                               "--stop zzz --verbose",
                   test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, ", there was a little girl named \n");
    CHECK_HAS(err, "stop reason:          stop (\"Lily\")");
    free(out);
    free(err);
    /* A stop string spanning tokens, matched in the middle of one. */
    rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --temp 0 -n 48 --stop 'ay, sh'",
               test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, ", there was a little girl named Lily. She loved to play outside in the park. "
                   "One d\n");
    free(out);
    free(err);
}

TEST(run_num_predict_limits_tokens)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --temp 0 -n 5 --verbose",
                   test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_STR(out, ", there was a little\n");
    CHECK_EQ(stat_after(err, "\neval count:"), 5);
    CHECK_EQ(stat_after(err, "prompt eval count:"), 5);
    CHECK_HAS(err, "load duration:");
    CHECK_HAS(err, "prompt eval rate:");
    CHECK_HAS(err, "eval rate:");
    free(out);
    free(err);
}

TEST(run_stops_at_eog_and_full_context)
{
    char *out, *err;
    /* tinymoe ends this story with </s>, whose text is never shown. */
    int rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --seed 1 -n 1000 --verbose",
                   test_fixture(TINYMOE_Q8));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_HAS(err, "stop reason:          eog");
    CHECK(strstr(out, "</s>") == NULL);
    free(out);
    free(err);
    rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --temp 0 --ctx 16 --verbose",
               test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_HAS(err, "stop reason:          context");
    CHECK_EQ(stat_after(err, "\neval count:"), 12); /* 16 - 5 forwarded, + the last sampled */
    free(out);
    free(err);
    rc = spill(&out, &err, "run '%s' -p 'Once upon a time' --ctx 3", test_fixture(STORIES));
    CHECK_EQ(rc, 1);
    CHECK_HAS(err, "does not fit the context");
    free(out);
    free(err);
}

TEST(run_bad_model_is_a_clear_error)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s/nope.gguf' -p hi", test_tmpdir());
    CHECK_EQ(rc, 1);
    CHECK_HAS(err, "spillway: run: ");
    CHECK_HAS(err, "nope.gguf");
    CHECK_HAS(err, "not found");
    CHECK_STR(out, "");
    free(out);
    free(err);
    rc = spill(&out, &err, "run no-such-model:7b -p hi");
    CHECK_EQ(rc, 1);
    CHECK_HAS(err, "no-such-model:7b");
    free(out);
    free(err);
    rc = spill(&out, &err, "run '%s' -p hi", test_fixture("README.md"));
    CHECK_EQ(rc, 1);
    CHECK_HAS(err, "not a GGUF file");
    free(out);
    free(err);
    rc = spill(&out, &err, "run '%s' -p hi --temp x", test_fixture(STORIES));
    CHECK_EQ(rc, 2);
    CHECK_HAS(err, "--temp");
    free(out);
    free(err);
}

TEST(run_prompt_from_stdin_and_model_by_name)
{
    char cmd[4096], *out;
    /* A --models-dir tree names the model "tiny/stories". */
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/models/tiny && ln -s '%s' %s/models/tiny/stories.gguf && "
             "printf 'Once upon a time\\n' | %s run tiny/stories --models-dir %s/models --temp 0 -n 5",
             test_tmpdir(), test_fixture(STORIES), test_tmpdir(), test_bin(), test_tmpdir());
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, ", there was a little\n");
    free(out);
}

TEST(run_chat_falls_back_to_chatml)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s' --chat --system 'Be brief.' -p Hello -n 4 --seed 1 "
                               "--show-prompt --verbose",
                   test_fixture(TINYMOE_Q8));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_HAS(err, "no chat template; using ChatML");
    CHECK_HAS(err, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                   "<|im_start|>assistant\n\n--- ids: 1 ");
    long shown = stat_after(err, "--- prompt, ");
    CHECK(shown > 20);
    CHECK_EQ(stat_after(err, "prompt eval count:"), shown);
    free(out);
    free(err);
}

TEST(run_chat_template_file)
{
    char *out, *err;
    int rc = spill(&out, &err, "run '%s' --chat-template '%s' -p Hello -n 2 --seed 1 --show-prompt",
                   test_fixture(TINYMOE_Q8), test_fixture("templates/Qwen-Qwen3-0.6B.jinja"));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_HAS(err, "--- prompt, ");
    CHECK_HAS(err, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    CHECK(strstr(err, "ChatML") == NULL);
    free(out);
    free(err);
}

/* Copies src to dst with tokenizer.chat_template set to tmpl. */
static int copy_with_template(const char *src, const char *dst, const char *tmpl)
{
    sw_err e = {0};
    gguf_ctx *g;
    if (gguf_open(src, GGUF_MMAP, &g, &e))
        return -1;
    gguf_writer *w = gguf_writer_new();
    int rc = w ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < gguf_n_kv(g); i++)
        rc = gguf_writer_set_kv(w, gguf_kv_at(g, i));
    if (rc == 0)
        rc = gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
    for (int64_t i = 0; rc == 0 && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        rc = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, &e);
    }
    if (rc == 0)
        rc = gguf_writer_begin(w, dst, &e);
    for (int64_t i = 0; rc == 0 && i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        rc = gguf_writer_write_tensor(w, gguf_tensor_data(g, t), t->size, &e);
    }
    if (rc == 0)
        rc = gguf_writer_finish(w, &e);
    if (rc)
        fprintf(stderr, "copy_with_template: %s\n", e.msg);
    gguf_writer_free(w);
    gguf_close(g);
    return rc;
}

TEST(run_chat_uses_the_models_template)
{
    char path[1024], *out, *err;
    snprintf(path, sizeof path, "%s/stories-chat.gguf", test_tmpdir());
    CHECK_EQ(copy_with_template(test_fixture(STORIES), path,
                                "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] "
                                "{{ m['content'] }}\n{% endfor %}"
                                "{% if add_generation_prompt %}[assistant]{% endif %}"),
             0);
    int rc = spill(&out, &err, "run '%s' --chat -p 'Once upon' -n 3 --temp 0 --show-prompt "
                               "--verbose",
                   path);
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK(strstr(err, "ChatML") == NULL);
    CHECK_HAS(err, "<s>[user] Once upon\n[assistant]\n--- ids: 1 ");
    CHECK(strstr(err, "--- ids: 1 1 ") == NULL); /* the template's BOS, not a second one */
    free(out);
    free(err);
}

TEST(bench_json_fields_are_sane)
{
    char *out, *err;
    int rc = spill(&out, &err, "bench '%s' --prompt 32 --gen 24 --threads 2 --json",
                   test_fixture(TINYMOE_Q8));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON at %d:%d: %s\n%s", je.line, je.column, je.text, out);
    double prompt_tps = json_number_value(json_object_get(j, "prompt_tps"));
    double decode_tps = json_number_value(json_object_get(j, "decode_tps"));
    double model_bytes = json_number_value(json_object_get(j, "model_bytes"));
    double per_token = json_number_value(json_object_get(j, "bytes_per_token"));
    double bw = json_number_value(json_object_get(j, "bandwidth_gbs"));
    double frac = json_number_value(json_object_get(j, "decode_fraction_of_bound"));
    CHECK(prompt_tps > 0 && decode_tps > 0);
    CHECK_EQ(json_integer_value(json_object_get(j, "threads")), 2);
    CHECK(model_bytes > 14.0e6 && model_bytes < 15.5e6); /* 14.07 MiB of tensors */
    CHECK(per_token > 0 && per_token < model_bytes / 2); /* 4 of 64 experts */
    CHECK(bw > 0.1 && bw < 10000);
    CHECK(frac > 0);
    CHECKF(fabs(frac - decode_tps * per_token / (bw * 1e9)) < 1e-3 * frac, "fraction %g", frac);
    json_t *r = json_object_get(j, "routing");
    CHECK(json_is_object(r));
    CHECK_EQ(json_integer_value(json_object_get(r, "n_expert")), 64);
    CHECK_EQ(json_integer_value(json_object_get(r, "moe_layers")), 4);
    double distinct = json_number_value(json_object_get(r, "distinct_mean"));
    double reuse = json_number_value(json_object_get(r, "reuse_prev"));
    CHECKF(distinct >= 4 && distinct <= 64, "distinct %g", distinct);
    CHECKF(reuse >= 0 && reuse <= 1, "reuse %g", reuse);
    /* streamed experts (the default for an MoE model): the disk, not memory, bounds it */
    CHECK(json_is_null(json_object_get(j, "paired")));
    json_decref(j);
    free(out);
    free(err);

    rc = spill(&out, &err, "bench '%s' --prompt 16 --gen 24 --json", test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON: %s", out);
    CHECK(json_is_null(json_object_get(j, "routing")));
    /* 24 tokens: six 4-token blocks, each against the bandwidth samples around it */
    json_t *pr = json_object_get(j, "paired");
    CHECK(json_is_object(pr));
    CHECK_EQ(json_integer_value(json_object_get(pr, "blocks")), 6);
    json_int_t quiet = json_integer_value(json_object_get(pr, "quiet_blocks"));
    CHECK(quiet >= 0 && quiet <= 6);
    CHECK(json_number_value(json_object_get(pr, "decode_fraction_median")) > 0);
    CHECK(quiet ? json_number_value(json_object_get(pr, "decode_fraction_quiet")) > 0
                : json_is_null(json_object_get(pr, "decode_fraction_quiet")));
    double lo = json_number_value(json_object_get(pr, "bandwidth_min_gbs"));
    double mid = json_number_value(json_object_get(pr, "bandwidth_median_gbs"));
    double hi = json_number_value(json_object_get(pr, "bandwidth_max_gbs"));
    CHECKF(lo > 0 && lo <= mid && mid <= hi, "samples %g %g %g", lo, mid, hi);
    CHECK_EQ(json_array_size(json_object_get(pr, "block_gbs")), 6);
    CHECK_EQ(json_array_size(json_object_get(pr, "sample_gbs")), 7);
    /* Dense: every weight but the embedding table's other rows. */
    CHECK(json_number_value(json_object_get(j, "bytes_per_token")) <
          json_number_value(json_object_get(j, "model_bytes")));
    json_decref(j);
    free(out);
    free(err);
}

/* --retry-decode: against a reference no sample can reach, no block is quiet,
 * so the decode runs again until the seconds are up; the kept pass is a
 * whole one (its blocks and samples), and without the option there is one. */
TEST(bench_retry_decode_passes)
{
    char *out, *err;
    int rc = spill(&out, &err, "bench '%s' --prompt 8 --gen 8 --threads 2 --retry-decode 1 "
                               "--quiet-ref 100000 --json",
                   test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON: %s", out);
    json_int_t passes = json_integer_value(json_object_get(j, "decode_passes"));
    CHECKF(passes > 1, "%lld passes", (long long)passes);
    json_t *pr = json_object_get(j, "paired");
    CHECK_EQ(json_integer_value(json_object_get(pr, "blocks")), 2);
    CHECK_EQ(json_array_size(json_object_get(pr, "sample_gbs")), 3);
    CHECK(json_number_value(json_object_get(j, "decode_tps")) > 0);
    json_decref(j);
    free(out);
    free(err);

    rc = spill(&out, &err, "bench '%s' --prompt 8 --gen 8 --json", test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON: %s", out);
    CHECK_EQ(json_integer_value(json_object_get(j, "decode_passes")), 1);
    json_decref(j);
    free(out);
    free(err);

    rc = spill(&out, &err, "bench '%s' --gen 8 --quiet-ref x1", test_fixture(STORIES));
    CHECK(rc != 0);
    CHECK_HAS(err, "bad value 'x1' for --quiet-ref");
    free(out);
    free(err);

    rc = spill(&out, &err, "bench '%s' --gen 8 --retry-decode -1", test_fixture(STORIES));
    CHECK(rc != 0);
    CHECK_HAS(err, "bad value '-1' for --retry-decode");
    free(out);
    free(err);

    rc = spill(&out, &err, "bench '%s' --gen 8 --matvec-streams 3", test_fixture(STORIES));
    CHECK(rc != 0);
    CHECK_HAS(err, "bad value '3' for --matvec-streams");
    free(out);
    free(err);
}

/* --quiet-ref replaces the run's best sample as what quiet is measured
 * against: with a reference every sample reaches, every block is quiet and
 * one pass is enough (24 tokens: 6 blocks, 5 wanted), however far the
 * run's own samples spread. */
TEST(bench_quiet_ref_replaces_run_best)
{
    char *out, *err;
    int rc = spill(&out, &err, "bench '%s' --prompt 8 --gen 24 --threads 2 --retry-decode 30 "
                               "--quiet-ref 0.001 --json",
                   test_fixture(STORIES));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECKF(j, "bad JSON: %s", out);
    CHECK_EQ(json_integer_value(json_object_get(j, "decode_passes")), 1);
    json_decref(j);
    free(out);
    free(err);
}

/* bench/bw_history.py: the idle reference is the median of this CPU's last
 * five runs, so one outlier cannot raise it for good; other CPUs' lines and
 * broken ones do not count. */
TEST(bench_bandwidth_history_median)
{
    char path[1024], cmd[4096], *out = NULL;
    snprintf(path, sizeof path, "%s/bw-history", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("33.5\n" /* the old one-number format */
          "90.0\t2026-11-01 10:00\tOther CPU\n"
          "garbage\n",
          f);
    fclose(f);
    const char *runs[] = {"50", "31.6", "31.7", "33.5", "31.9", "31.8"};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        snprintf(cmd, sizeof cmd, "python3 bench/bw_history.py '%s' 'Test CPU' add %s", path,
                 runs[i]);
        CHECK_EQ(test_run(cmd, NULL), 0);
    }
    snprintf(cmd, sizeof cmd, "python3 bench/bw_history.py '%s' 'Test CPU' ref", path);
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, "31.8\n"); /* the median of the last five: 50 has left */
    free(out);
    snprintf(cmd, sizeof cmd, "python3 bench/bw_history.py '%s' 'New CPU' ref", path);
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, "0.0\n");
    free(out);
    snprintf(cmd, sizeof cmd, "python3 bench/bw_history.py '%s' 'Test CPU' add 2>/dev/null", path);
    CHECK(test_run(cmd, NULL) != 0);
}

/* An MoE model's bytes per token count its routed experts once, however
 * many decode passes ran: every pass routes the same tokens alike. */
TEST(bench_retry_decode_counts_experts_once)
{
    double per_token[2] = {0, 0};
    json_int_t passes[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        char *out, *err;
        int rc = spill(&out, &err, "bench '%s' --prompt 8 --gen 8 --threads 2 --resident %s --json",
                       test_fixture(TINYMOE_Q8),
                       i ? "--retry-decode 1 --quiet-ref 100000" : "");
        CHECKF(rc == 0, "rc %d: %s", rc, err);
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        CHECKF(j, "bad JSON: %s", out);
        per_token[i] = json_number_value(json_object_get(j, "bytes_per_token"));
        passes[i] = json_integer_value(json_object_get(j, "decode_passes"));
        json_decref(j);
        free(out);
        free(err);
    }
    CHECK_EQ(passes[0], 1);
    CHECKF(passes[1] > 1, "%lld passes", (long long)passes[1]);
    CHECKF(per_token[0] > 0 && per_token[1] == per_token[0], "bytes per token %g, %g", per_token[0],
           per_token[1]);
}

TEST(bench_text_report)
{
    char *out, *err;
    int rc = spill(&out, &err, "bench '%s' --prompt 16 --gen 16", test_fixture(TINYMOE_Q8));
    CHECKF(rc == 0, "rc %d: %s", rc, err);
    CHECK_HAS(out, "prompt ");
    CHECK_HAS(out, "decode ");
    CHECK_HAS(out, "bandwidth ");
    CHECK_HAS(out, "distinct experts per layer per 16 tokens");
    free(out);
    free(err);
}
