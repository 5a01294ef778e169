/* Tests of the engine's public API (spillway.h): loading, jobs, continuous
 * batching, sessions and prefix reuse, cancellation, the queue. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "spillway.h"
#include "util/log.h"

#define STORIES "stories260K/stories260K.gguf"
#define ONCE_UPON ", there was a little girl named Lily. She loved to play outside in the park. " \
                  "One day, she saw a big, red ball. She wanted to play with it,"

static sw_engine *open_engine(int parallel, int queue)
{
    sw_engine_opts o = {.model_path = test_fixture(STORIES), .n_parallel = parallel,
                        .n_queue = queue, .n_threads = 1};
    sw_engine *e = NULL;
    sw_err err = {0};
    log_open(LOG_TEXT, NULL, LOG_ERROR, NULL); /* no "model loaded" lines in test output */
    if (sw_engine_open(&o, &e, &err) < 0) {
        fprintf(stderr, "    %s\n", err.msg);
        return NULL;
    }
    if (sw_engine_wait_loaded(e, 60000) != SW_ENGINE_READY) {
        fprintf(stderr, "    %s\n", sw_engine_error(e));
        sw_engine_close(e);
        return NULL;
    }
    return e;
}

static sw_job *submit(sw_engine *e, const char *text, int max_tokens, const char *session)
{
    int32_t *ids;
    int n;
    if (sw_engine_encode_prompt(e, text, false, &ids, &n, NULL) < 0)
        return NULL;
    sw_job_params p = {.prompt = ids, .n_prompt = n, .sampling = sw_sampling_default(),
                       .max_tokens = max_tokens, .session = session};
    p.sampling.temperature = 0;
    sw_job *j = NULL;
    sw_engine_submit(e, &p, &j, NULL);
    free(ids);
    return j;
}

/* Reads a job to its end; malloc'd text. */
static char *read_all(sw_job *j)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    bool done = false;
    while (!done)
        len += sw_job_read(j, -1, out + len, cap - len - 1, &done);
    out[len] = 0;
    return out;
}

TEST(engine_greedy_job_matches_llamacpp)
{
    sw_engine *e = open_engine(1, 4);
    CHECK(e);
    const sw_model_desc *d = sw_engine_model(e);
    CHECK_STR(d->name, "stories260K");
    CHECK_STR(d->arch, "llama");
    CHECK(d->template_fallback);
    sw_job *j = submit(e, "Once upon a time", 48, NULL);
    CHECK(j);
    char *text = read_all(j);
    CHECK_STR(text, ONCE_UPON);
    sw_job_stats st;
    sw_job_get_stats(j, &st);
    CHECK_EQ(st.finish, SW_FINISH_LENGTH);
    CHECK_EQ(st.n_prompt, 5);
    CHECK_EQ(st.n_gen, 48);
    CHECK_EQ(st.n_cached, 0);
    free(text);
    sw_job_release(j);
    /* the same prompt again: everything but its last token from the cache */
    j = submit(e, "Once upon a time", 48, NULL);
    text = read_all(j);
    CHECK_STR(text, ONCE_UPON);
    sw_job_get_stats(j, &st);
    CHECK_EQ(st.n_cached, 4);
    free(text);
    sw_job_release(j);
    sw_engine_close(e);
}

TEST(engine_batches_jobs_without_changing_them)
{
    sw_engine *e = open_engine(3, 8);
    CHECK(e);
    static const char *prompts[] = {"Once upon a time", "Lily and Ben went to the park",
                                    "The cat", "A big dog", "Tim had a toy"};
    enum { N = 5 };
    char *alone[N];
    for (int i = 0; i < N; i++) {
        sw_job *j = submit(e, prompts[i], 40, NULL);
        alone[i] = read_all(j);
        sw_job_release(j);
    }
    sw_engine_stats before;
    sw_engine_get_stats(e, &before);
    CHECK_EQ(before.forward_seqs, before.forward_calls); /* alone: one job per call */
    sw_job *jobs[N];
    for (int i = 0; i < N; i++) /* 3 run, 2 wait, all join as others leave */
        CHECK(jobs[i] = submit(e, prompts[i], 40, NULL));
    uint64_t computed = 0; /* prompt tokens not cached, generated tokens fed back */
    for (int i = 0; i < N; i++) {
        char *t = read_all(jobs[i]);
        CHECK_STR(t, alone[i]);
        free(t);
        free(alone[i]);
        sw_job_stats js;
        sw_job_get_stats(jobs[i], &js);
        computed += (uint64_t)(js.n_prompt - js.n_cached + js.n_gen - 1);
        sw_job_release(jobs[i]);
    }
    sw_engine_stats st;
    sw_engine_get_stats(e, &st);
    CHECK_EQ(st.jobs_finished, 2 * N);
    /* one forward call per step, however many jobs run */
    CHECK_EQ(st.forward_calls, st.steps);
    uint64_t calls = st.forward_calls - before.forward_calls;
    uint64_t seqs = st.forward_seqs - before.forward_seqs;
    /* steps advanced several jobs together: N jobs of 40 tokens in well
     * under N x 40 calls, and never more than 3 (--parallel) per call */
    CHECKF(seqs > calls && calls < (uint64_t)N * 40 && seqs <= 3 * calls,
           "%llu sequences in %llu calls", (unsigned long long)seqs, (unsigned long long)calls);
    CHECK_EQ(st.forward_tokens - before.forward_tokens, computed);
    sw_engine_close(e);
}

TEST(engine_queue_limit_cancel_and_context)
{
    sw_engine *e = open_engine(1, 1);
    CHECK(e);
    sw_job *a = submit(e, "Once upon a time", 0, NULL);
    sw_job *b = submit(e, "Once upon a time", 4, NULL);
    CHECK(a && b);
    int32_t one = 1;
    sw_job_params p = {.prompt = &one, .n_prompt = 1, .sampling = sw_sampling_default()};
    sw_job *c = NULL;
    sw_err err = {0};
    CHECK_EQ(sw_engine_submit(e, &p, &c, &err), SW_EBUSY);
    CHECK_HAS(err.msg, "busy");
    sw_job_release(a); /* gone: the engine drops it at its next step */
    char *t = read_all(b);
    free(t);
    sw_job_stats st;
    sw_job_get_stats(b, &st);
    CHECK_EQ(st.finish, SW_FINISH_LENGTH);
    sw_job_release(b);
    sw_engine_stats es;
    sw_engine_get_stats(e, &es);
    CHECK_EQ(es.jobs_cancelled, 1);
    CHECK_EQ(es.n_active, 0);
    /* a prompt longer than the context */
    int32_t *many = calloc(5000, sizeof *many);
    for (int i = 0; i < 5000; i++)
        many[i] = 300;
    p.prompt = many;
    p.n_prompt = 5000;
    CHECK_EQ(sw_engine_submit(e, &p, &c, &err), SW_ERANGE);
    CHECK_HAS(err.msg, "5000 tokens");
    CHECK_HAS(err.msg, "2048");
    p.n_prompt = 1;
    many[0] = 99999;
    CHECK_EQ(sw_engine_submit(e, &p, &c, &err), SW_EINVAL);
    free(many);
    p.prompt = &one;
    p.sampling.top_p = 2;
    CHECK_EQ(sw_engine_submit(e, &p, &c, &err), SW_EINVAL);
    CHECK(sw_engine_drain(e, 1000) == 0);
    p.sampling.top_p = 1;
    CHECK_EQ(sw_engine_submit(e, &p, &c, &err), SW_EBUSY); /* draining */
    sw_engine_close(e);
}

TEST(engine_grammar_constrains_output)
{
    sw_engine *e = open_engine(1, 1);
    CHECK(e);
    int32_t *ids;
    int n;
    CHECK(sw_engine_encode_prompt(e, "Once upon a time", false, &ids, &n, NULL) == 0);
    const char *alts[] = {"{\"story\": \x01}", "yes"};
    sw_job_params p = {.prompt = ids, .n_prompt = n, .sampling = sw_sampling_default(),
                       .max_tokens = 400, .grammar = alts, .n_grammar = 2};
    p.sampling.seed = 11;
    sw_job *j = NULL;
    CHECK(sw_engine_submit(e, &p, &j, NULL) == 0);
    char *t = read_all(j);
    sw_job_stats st;
    sw_job_get_stats(j, &st);
    CHECKF(!strcmp(t, "yes") || !strncmp(t, "{\"story\": {", 11), "%s", t);
    if (st.finish == SW_FINISH_STOP)
        CHECK(st.grammar_done);
    free(t);
    free(ids);
    sw_job_release(j);
    sw_engine_close(e);
}
