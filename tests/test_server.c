/* End-to-end tests of `spillway serve`: the real binary on the fixture
 * models, driven over HTTP — both APIs, streaming, sessions, errors,
 * concurrency, disconnects, the queue, shutdown. */
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serve_util.h"

#define STORIES "stories260K/stories260K.gguf"
#define TINYMOE "tinymoe/tinymoe-q8_0.gguf"
#define QWEN_TEMPLATE "templates/Qwen-Qwen2.5-7B-Instruct.jinja"

/* What the fixture README says greedy decoding gives after the prompt. */
#define ONCE_UPON ", there was a little girl named Lily. She loved to play outside in the park. " \
                  "One day, she saw a big, red ball. She wanted to play with it,"

static json_t *body_json(const http_resp *r)
{
    return json_loadb(r->body, r->len, 0, NULL);
}

/* POSTs body to path; the response as JSON (NULL if it is not). */
static json_t *post_json(int port, const char *path, const char *body, int *status)
{
    http_resp r;
    if (http_do(port, "POST", path, NULL, body, &r) < 0)
        return NULL;
    *status = r.status;
    json_t *j = body_json(&r);
    http_free(&r);
    return j;
}

static const char *jstr(const json_t *j, const char *path)
{
    json_t *v = json_object_get(j, path);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Concatenated delta contents of an OpenAI chat stream. */
static char *sse_content(const char *body, int *n_events)
{
    char **ev;
    int n;
    sse_data(body, &ev, &n);
    size_t cap = 1, len = 0;
    char *out = calloc(1, cap);
    for (int i = 0; i < n; i++) {
        json_t *j = json_loads(ev[i], 0, NULL);
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *c = json_object_get(json_object_get(ch, "delta"), "content");
        if (!c)
            c = json_object_get(ch, "text");
        const char *s = json_string_value(c);
        if (s) {
            size_t k = strlen(s);
            out = realloc(out, cap += k);
            memcpy(out + len, s, k + 1);
            len += k;
        }
        json_decref(j);
    }
    *n_events = n;
    sse_free(ev, n);
    return out;
}

TEST(server_listings_and_ollama_basics)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, "--alias stories:260k") == 0);
    http_resp r;
    CHECK(http_do(s.port, "GET", "/", NULL, NULL, &r) == 0);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "Ollama is running");
    http_free(&r);

    CHECK(http_do(s.port, "GET", "/v1/models", NULL, NULL, &r) == 0);
    json_t *j = body_json(&r);
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    CHECK_STR(jstr(j, "object"), "list");
    CHECK_STR(jstr(m, "id"), "stories:260k");
    CHECK_STR(jstr(m, "object"), "model");
    CHECK(json_is_integer(json_object_get(m, "created")) && json_is_string(json_object_get(m, "owned_by")));
    json_decref(j);
    http_free(&r);

    CHECK(http_do(s.port, "GET", "/api/tags", NULL, NULL, &r) == 0);
    j = body_json(&r);
    m = json_array_get(json_object_get(j, "models"), 0);
    CHECK_STR(jstr(m, "name"), "stories:260k");
    CHECK_STR(jstr(json_object_get(m, "details"), "family"), "llama");
    CHECK_STR(jstr(json_object_get(m, "details"), "format"), "gguf");
    CHECK(json_integer_value(json_object_get(m, "size")) > 1000000);
    json_decref(j);
    http_free(&r);

    int st = 0;
    j = post_json(s.port, "/api/show", "{\"model\": \"anything\"}", &st);
    CHECK_EQ(st, 200);
    json_t *info = json_object_get(j, "model_info");
    CHECK_STR(jstr(info, "general.architecture"), "llama");
    CHECK_EQ(json_integer_value(json_object_get(info, "llama.context_length")), 2048);
    CHECK(json_is_null(json_object_get(info, "tokenizer.ggml.tokens")));
    CHECK_HAS(jstr(j, "template"), "<|im_start|>");
    CHECK_STR(json_string_value(json_array_get(json_object_get(j, "capabilities"), 0)),
              "completion");
    json_decref(j);
    j = post_json(s.port, "/api/show", "{\"model\": \"x\", \"verbose\": true}", &st);
    CHECK_EQ(json_array_size(json_object_get(json_object_get(j, "model_info"),
                                             "tokenizer.ggml.tokens")), 512);
    json_decref(j);

    CHECK(http_do(s.port, "GET", "/api/ps", NULL, NULL, &r) == 0);
    j = body_json(&r);
    m = json_array_get(json_object_get(j, "models"), 0);
    CHECK_EQ(json_integer_value(json_object_get(m, "context_length")), 2048);
    CHECK(json_is_string(json_object_get(m, "expires_at")));
    json_decref(j);
    http_free(&r);

    CHECK(http_do(s.port, "GET", "/api/version", NULL, NULL, &r) == 0);
    CHECK_HAS(r.body, "\"version\"");
    http_free(&r);

    /* unknown routes: 404 in each API's error shape */
    CHECK(http_do(s.port, "GET", "/v1/nope", NULL, NULL, &r) == 0);
    CHECK_EQ(r.status, 404);
    j = body_json(&r);
    CHECK(json_is_string(json_object_get(json_object_get(j, "error"), "message")));
    CHECK(json_object_get(json_object_get(j, "error"), "type"));
    json_decref(j);
    http_free(&r);
    CHECK(http_do(s.port, "POST", "/api/nope", NULL, "{}", &r) == 0);
    CHECK_EQ(r.status, 404);
    j = body_json(&r);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    http_free(&r);
    CHECK(http_do(s.port, "GET", "/v1/chat/completions", NULL, NULL, &r) == 0);
    CHECK_EQ(r.status, 405);
    http_free(&r);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_completion_greedy_matches_llamacpp)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, NULL) == 0);
    int st;
    json_t *j = post_json(s.port, "/v1/completions",
                          "{\"prompt\": \"Once upon a time\", \"max_tokens\": 48, "
                          "\"temperature\": 0}", &st);
    CHECK_EQ(st, 200);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR(jstr(ch, "text"), ONCE_UPON);
    CHECK_STR(jstr(ch, "finish_reason"), "length");
    CHECK_STR(jstr(j, "object"), "text_completion");
    json_t *u = json_object_get(j, "usage");
    CHECK_EQ(json_integer_value(json_object_get(u, "prompt_tokens")), 5);
    CHECK_EQ(json_integer_value(json_object_get(u, "completion_tokens")), 48);
    json_decref(j);

    /* Ollama generate on a model without a template: the prompt as it is */
    j = post_json(s.port, "/api/generate",
                  "{\"model\": \"stories\", \"prompt\": \"Once upon a time\", \"stream\": false,"
                  " \"options\": {\"temperature\": 0, \"repeat_penalty\": 1, \"num_predict\": 48}}",
                  &st);
    CHECK_EQ(st, 200);
    CHECK_STR(jstr(j, "response"), ONCE_UPON);
    CHECK_STR(jstr(j, "done_reason"), "length");
    CHECK_STR(jstr(j, "model"), "stories");
    CHECK(json_is_true(json_object_get(j, "done")));
    CHECK_EQ(json_integer_value(json_object_get(j, "eval_count")), 48);
    CHECK(json_integer_value(json_object_get(j, "total_duration")) > 0);
    CHECK(json_integer_value(json_object_get(j, "eval_duration")) > 0);
    CHECK(json_is_integer(json_object_get(j, "load_duration")));
    CHECK(json_is_integer(json_object_get(j, "prompt_eval_duration")));
    CHECK_EQ(json_array_size(json_object_get(j, "context")), 5 + 48);
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_chat_stream_usage_and_session_cache)
{
    test_server s;
    CHECK(ts_start(&s, TINYMOE, NULL) == 0);
    const char *req = "{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"system\", \"content\": "
                      "\"You tell stories.\"}, {\"role\": \"user\", \"content\": [{\"type\": "
                      "\"text\", \"text\": \"Tell me about Tom.\"}]}], \"max_tokens\": 24, "
                      "\"temperature\": 0%s}";
    char body[1024];
    snprintf(body, sizeof body, req, "");
    int st;
    json_t *whole = post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ(st, 200);
    json_t *msg = json_object_get(json_array_get(json_object_get(whole, "choices"), 0), "message");
    CHECK_STR(jstr(msg, "role"), "assistant");
    const char *content = jstr(msg, "content");
    CHECK(strlen(content) > 0);
    CHECK_STR(jstr(whole, "model"), "gpt-4o");
    CHECK_STR(jstr(whole, "object"), "chat.completion");

    snprintf(body, sizeof body, req,
             ", \"stream\": true, \"stream_options\": {\"include_usage\": true}");
    http_resp r;
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: abc\r\n", body, &r) == 0);
    CHECK_EQ(r.status, 200);
    CHECK_HAS(r.head, "text/event-stream");
    char **ev;
    int n;
    sse_data(r.body, &ev, &n);
    CHECK(n >= 4);
    CHECK_STR(ev[n - 1], "[DONE]");
    json_t *first = json_loads(ev[0], 0, NULL);
    json_t *d0 = json_object_get(json_array_get(json_object_get(first, "choices"), 0), "delta");
    CHECK_STR(jstr(d0, "role"), "assistant");
    json_t *usage = json_loads(ev[n - 2], 0, NULL);
    CHECK_EQ(json_array_size(json_object_get(usage, "choices")), 0);
    json_t *u = json_object_get(usage, "usage");
    CHECK_EQ(json_integer_value(json_object_get(u, "completion_tokens")), 24);
    int n_prompt = (int)json_integer_value(json_object_get(u, "prompt_tokens"));
    json_t *fin = json_loads(ev[n - 3], 0, NULL);
    CHECK_STR(jstr(json_array_get(json_object_get(fin, "choices"), 0), "finish_reason"), "length");
    json_decref(first);
    json_decref(usage);
    json_decref(fin);
    sse_free(ev, n);
    int events;
    char *streamed = sse_content(r.body, &events);
    CHECK_STR(streamed, content); /* streaming changes nothing in the text */
    free(streamed);
    http_free(&r);

    /* The same conversation again on its session: only the last token is
     * recomputed; its follow-up turn reuses everything before its new part. */
    snprintf(body, sizeof body, req, "");
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: abc\r\n", body, &r) == 0);
    json_t *again = body_json(&r);
    u = json_object_get(again, "usage");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"),
                                                "cached_tokens")), n_prompt - 1);
    json_decref(again);
    http_free(&r);
    json_t *conv = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}], s:i, s:i}",
                             "model", "m", "messages", "role", "system", "content",
                             "You tell stories.", "role", "user", "content", "Tell me about Tom.",
                             "role", "assistant", "content", content, "role", "user", "content",
                             "And then?", "max_tokens", 8, "temperature", 0);
    char *cb = json_dumps(conv, 0);
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: abc\r\n", cb, &r) == 0);
    json_t *follow = body_json(&r);
    u = json_object_get(follow, "usage");
    long cached = (long)json_integer_value(
        json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
    CHECKF(cached >= n_prompt, "follow-up reused %ld tokens; the first turn's prompt was %d",
           cached, n_prompt);
    free(cb);
    json_decref(conv);
    json_decref(follow);
    json_decref(whole);
    http_free(&r);
    CHECK_EQ(ts_stop(&s), 0);
}

/* --- concurrency ------------------------------------------------------------------ */

typedef struct stream_job {
    int port;
    const char *body;
    char *text;
    int status;
} stream_job;

static void *stream_thread(void *arg)
{
    stream_job *j = arg;
    http_resp r;
    if (http_do(j->port, "POST", "/v1/chat/completions", NULL, j->body, &r) == 0) {
        int n;
        j->status = r.status;
        j->text = sse_content(r.body, &n);
        http_free(&r);
    }
    return NULL;
}

static double metric(int port, const char *name);

/* Six streams on four slots give the text each gets alone, and the engine
 * ran them batched: one forward call per step, several requests per call. */
TEST(server_concurrent_streams_match_alone)
{
    test_server s;
    CHECK(ts_start(&s, TINYMOE, "--parallel 4 --prefill-chunk 8") == 0);
    enum { N = 6 };
    static const char *prompts[N] = {"Tom and his dog", "Once upon a time", "Lily saw a cat",
                                     "The sun was hot", "Ben had a red car", "Sue and Max"};
    char bodies[N][512];
    char *alone[N];
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], \"stream\": true, "
                 "\"max_tokens\": 40, \"temperature\": 0}", prompts[i]);
        stream_job j = {.port = s.port, .body = bodies[i]};
        stream_thread(&j);
        CHECK_EQ(j.status, 200);
        alone[i] = j.text;
    }
    double calls0 = metric(s.port, "spillway_engine_forward_calls_total");
    double seqs0 = metric(s.port, "spillway_engine_forward_sequences_total");
    CHECK(calls0 > 0 && seqs0 == calls0); /* one at a time so far */
    stream_job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (stream_job){.port = s.port, .body = bodies[i]};
        pthread_create(&th[i], NULL, stream_thread, &jobs[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(jobs[i].status, 200);
        CHECK_STR(jobs[i].text, alone[i]);
        free(jobs[i].text);
        free(alone[i]);
    }
    double steps = metric(s.port, "spillway_engine_steps_total");
    double calls = metric(s.port, "spillway_engine_forward_calls_total");
    double seqs = metric(s.port, "spillway_engine_forward_sequences_total") - seqs0;
    CHECK(steps == calls);
    calls -= calls0;
    CHECKF(seqs > calls && seqs <= 4 * calls, "%g requests advanced in %g forward calls", seqs,
           calls);
    CHECK(metric(s.port, "spillway_engine_forward_tokens_total") >= seqs);
    CHECK_EQ(ts_stop(&s), 0);
}

/* The state of slot 0 from /slots. */
static char *slot_state(int port)
{
    http_resp r;
    if (http_do(port, "GET", "/slots", NULL, NULL, &r) < 0)
        return strdup("?");
    json_t *j = body_json(&r);
    char *st = strdup(jstr(json_array_get(j, 0), "state"));
    json_decref(j);
    http_free(&r);
    return st;
}

static double metric(int port, const char *name)
{
    http_resp r;
    if (http_do(port, "GET", "/metrics", NULL, NULL, &r) < 0)
        return -1;
    char key[256];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(r.body, key);
    double v = p ? atof(p + strlen(key)) : -1;
    http_free(&r);
    return v;
}

#define LONG_GEN "{\"prompt\": \"Once upon a time\", \"max_tokens\": 100000, \"stream\": true, " \
                 "\"temperature\": 1, \"seed\": 1}"

TEST(server_disconnect_frees_slot_and_queue_full_503)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, "--parallel 1 --queue 0 --ctx 2048") == 0);
    /* A long generation holds the only slot ... */
    int fd = http_send(s.port, "POST", "/v1/completions", "X-Session-Id: long\r\n", LONG_GEN);
    CHECK(fd >= 0);
    char buf[4096];
    CHECK(http_read_some(fd, buf, sizeof buf, 200, 10000) >= 200);
    /* ... so with no queue, the next request is refused with 503 */
    http_resp r;
    CHECK(http_do(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"Hi\"}", &r) == 0);
    CHECK_EQ(r.status, 503);
    CHECK_HAS(r.body, "busy");
    http_free(&r);
    CHECK(http_do(s.port, "POST", "/api/generate", NULL,
                  "{\"prompt\": \"Hi\", \"stream\": false}", &r) == 0);
    CHECK_EQ(r.status, 503);
    json_t *j = body_json(&r);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    http_free(&r);
    /* The client hangs up: its slot is free almost at once. */
    close(fd);
    double t0 = now_ms();
    char *st = NULL;
    do {
        free(st);
        st = slot_state(s.port);
    } while (strcmp(st, "idle") && now_ms() - t0 < 3000);
    CHECKF(!strcmp(st, "idle"), "slot still '%s' %.0f ms after the client left", st,
           now_ms() - t0);
    free(st);
    CHECK(metric(s.port, "spillway_generations_cancelled_total") >= 1);
    CHECK(metric(s.port, "spillway_requests_rejected_total") >= 2);
    CHECK(http_do(s.port, "POST", "/v1/completions", NULL, "{\"prompt\": \"Hi\"}", &r) == 0);
    CHECK_EQ(r.status, 200);
    http_free(&r);

    /* A client gone while its prompt is still being processed. */
    char *big = malloc(200000);
    strcpy(big, "{\"prompt\": \"");
    for (int i = 0; i < 1500; i++)
        strcat(big, "cat ");
    strcat(big, "\", \"max_tokens\": 10}");
    fd = http_send(s.port, "POST", "/v1/completions", NULL, big);
    free(big);
    close(fd);
    t0 = now_ms();
    while (metric(s.port, "spillway_generations_cancelled_total") < 2 && now_ms() - t0 < 3000)
        ;
    st = slot_state(s.port);
    CHECK_STR(st, "idle");
    free(st);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_overlong_prompt_400)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, "--ctx 64") == 0);
    char body[4096] = "{\"prompt\": \"";
    for (int i = 0; i < 100; i++)
        strcat(body, "dog ");
    strcat(body, "\"}");
    int st;
    json_t *j = post_json(s.port, "/v1/completions", body, &st);
    CHECK_EQ(st, 400);
    const char *msg = jstr(json_object_get(j, "error"), "message");
    CHECK_HAS(msg, "202 tokens"); /* BOS, then "▁dog" and "▁" 100 times */
    CHECK_HAS(msg, "64");
    CHECK_STR(jstr(json_object_get(j, "error"), "type"), "invalid_request_error");
    CHECK_STR(jstr(json_object_get(j, "error"), "code"), "context_length_exceeded");
    json_decref(j);
    char ob[4096];
    snprintf(ob, sizeof ob, "{\"model\": \"m\", \"raw\": true, \"prompt\": \"%.*s\"}", 400,
             body + 12);
    j = post_json(s.port, "/api/generate", ob, &st);
    CHECK_EQ(st, 400);
    CHECK_HAS(jstr(j, "error"), "64");
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_bad_requests_400_and_keeps_serving)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, "--max-body 4096") == 0);
    static const struct {
        const char *path, *body, *param;
    } bad[] = {
        {"/v1/chat/completions", "{\"messages\": [", ""},
        {"/v1/chat/completions", "[1, 2]", ""},
        {"/v1/chat/completions", "", ""},
        {"/v1/chat/completions", "{\"messages\": \"hi\"}", "messages"},
        {"/v1/chat/completions", "{\"messages\": []}", "messages"},
        {"/v1/chat/completions", "{\"messages\": [{\"content\": \"x\"}]}", "messages"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}",
         "messages"},
        {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}",
         "messages"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": \"hot\"}",
         "temperature"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 1e30}",
         "max_tokens"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": "
         "99999999999999999999999}", ""},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_p\": 5}", "top_p"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": \"yes\"}",
         "stream"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 3}", "n"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stop\": [1]}", "stop"},
        {"/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": "
         "\"function\", \"function\": {\"name\": \"f\"}}]}", "tools"},
        {"/v1/completions", "{\"prompt\": 12}", "prompt"},
        {"/v1/completions", "{\"prompt\": \"x\", \"seed\": 1.5}", "seed"},
        {"/api/generate", "{\"prompt\": \"x\", \"options\": {\"temperature\": -1}}", NULL},
        {"/api/generate", "{\"prompt\": \"x\", \"options\": \"hot\"}", NULL},
        {"/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"format\": 7}",
         NULL},
        {"/tokenize", "{\"content\": 7}", "content"},
        {"/detokenize", "{\"tokens\": [1, 99999]}", "tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = 0;
        json_t *j = post_json(s.port, bad[i].path, bad[i].body, &st);
        CHECKF(st == 400, "%s %s: status %d", bad[i].path, bad[i].body, st);
        json_t *err = json_object_get(j, "error");
        if (bad[i].param) { /* OpenAI's shape */
            CHECKF(json_is_string(json_object_get(err, "message")), "%s: %s", bad[i].path,
                   bad[i].body);
            CHECK_STR(jstr(err, "type"), "invalid_request_error");
            if (*bad[i].param)
                CHECK_STR(jstr(err, "param"), bad[i].param);
        } else { /* Ollama's */
            CHECKF(json_is_string(err), "%s: %s", bad[i].path, bad[i].body);
        }
        json_decref(j);
    }
    char *huge = malloc(10000);
    memset(huge, 'a', 9999);
    huge[9999] = 0;
    int st;
    json_t *j = post_json(s.port, "/v1/completions", huge, &st);
    CHECK_EQ(st, 413);
    json_decref(j);
    free(huge);
    j = post_json(s.port, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 4}",
                  &st);
    CHECK_EQ(st, 200);
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_json_mode_output_is_json)
{
    test_server s;
    CHECK(ts_start(&s, TINYMOE, NULL) == 0);
    int st;
    json_t *j = post_json(s.port, "/v1/chat/completions",
                          "{\"messages\": [{\"role\": \"user\", \"content\": \"Give JSON\"}], "
                          "\"response_format\": {\"type\": \"json_object\"}, \"max_tokens\": 300,"
                          " \"temperature\": 0}", &st);
    CHECK_EQ(st, 200);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    const char *content = jstr(json_object_get(ch, "message"), "content");
    CHECK(content[0] != 0);
    if (!strcmp(jstr(ch, "finish_reason"), "stop")) {
        json_t *v = json_loads(content, 0, NULL);
        CHECKF(json_is_object(v), "not a JSON object: %s", content);
        json_decref(v);
    } else { /* cut by max_tokens: still a prefix of an object */
        CHECKF(content[strspn(content, " \n\t\r")] == '{', "%s", content);
    }
    json_decref(j);
    j = post_json(s.port, "/api/chat",
                  "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"JSON!\"}],"
                  " \"format\": \"json\", \"stream\": false, \"options\": {\"seed\": 7, "
                  "\"num_predict\": 300}}", &st);
    CHECK_EQ(st, 200);
    content = jstr(json_object_get(j, "message"), "content");
    if (!strcmp(jstr(j, "done_reason"), "stop")) {
        json_t *v = json_loads(content, 0, NULL);
        CHECKF(json_is_object(v), "not a JSON object: %s", content);
        json_decref(v);
    }
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_tools_forced_and_rejected)
{
    test_server s;
    char args[1024];
    snprintf(args, sizeof args, "--chat-template '%s'", test_fixture(QWEN_TEMPLATE));
    CHECK(ts_start(&s, STORIES, args) == 0); /* a context (2048) that holds Qwen's tool prompt */
    const char *tools = "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
                        "\"get_time\", \"description\": \"The time now\", \"parameters\": "
                        "{\"type\": \"object\", \"properties\": {}}}}, {\"type\": \"function\", "
                        "\"function\": {\"name\": \"weather\", \"parameters\": {\"type\": "
                        "\"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]";
    char body[2048];
    snprintf(body, sizeof body,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"What time is it?\"}], %s, "
             "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"get_time\"}}, "
             "\"temperature\": 0}", tools);
    int st;
    json_t *j = post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ(st, 200);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR(jstr(ch, "finish_reason"), "tool_calls");
    json_t *call = json_array_get(json_object_get(json_object_get(ch, "message"), "tool_calls"), 0);
    CHECK_STR(jstr(call, "type"), "function");
    CHECK(strncmp(jstr(call, "id"), "call_", 5) == 0);
    CHECK_STR(jstr(json_object_get(call, "function"), "name"), "get_time");
    CHECK_STR(jstr(json_object_get(call, "function"), "arguments"), "{}");
    CHECK(json_is_null(json_object_get(json_object_get(ch, "message"), "content")));
    json_decref(j);

    /* streamed: the call arrives as a tool_calls delta */
    snprintf(body, sizeof body,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"Time?\"}], %s, \"tool_choice\":"
             " \"required\", \"stream\": true, \"temperature\": 0, \"max_tokens\": 400}", tools);
    http_resp r;
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", NULL, body, &r) == 0);
    CHECK_EQ(r.status, 200);
    CHECK_HAS(r.body, "\"tool_calls\":[{");
    CHECK(strstr(r.body, "\"finish_reason\":\"tool_calls\"") ||
          strstr(r.body, "\"finish_reason\":\"length\""));
    http_free(&r);

    /* Ollama: a tool result in the conversation renders through the template */
    snprintf(body, sizeof body,
             "{\"model\": \"m\", \"stream\": false, \"messages\": [{\"role\": \"user\", "
             "\"content\": \"Time?\"}, {\"role\": \"assistant\", \"content\": \"\", "
             "\"tool_calls\": [{\"function\": {\"name\": \"get_time\", \"arguments\": {}}}]}, "
             "{\"role\": \"tool\", \"tool_name\": \"get_time\", \"content\": \"noon\"}], %s, "
             "\"options\": {\"num_predict\": 8, \"temperature\": 0}}", tools);
    j = post_json(s.port, "/api/chat", body, &st);
    CHECK_EQ(st, 200);
    CHECK(json_is_true(json_object_get(j, "done")));
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);

    /* ChatML (the model's fallback) has no tools: 400, saying so */
    CHECK(ts_start(&s, TINYMOE, NULL) == 0);
    snprintf(body, sizeof body, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], %s}",
             tools);
    j = post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ(st, 400);
    CHECK_HAS(jstr(json_object_get(j, "error"), "message"), "tools");
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_ollama_chat_ndjson_stream)
{
    test_server s;
    CHECK(ts_start(&s, TINYMOE, "--cache 4M") == 0); /* experts streamed through a small cache */
    http_resp r;
    CHECK(http_do(s.port, "POST", "/api/chat", NULL,
                  "{\"model\": \"tiny:latest\", \"messages\": [{\"role\": \"user\", \"content\": "
                  "\"Hello\"}], \"options\": {\"num_predict\": 12, \"temperature\": 0}}", &r) == 0);
    CHECK_EQ(r.status, 200);
    CHECK_HAS(r.head, "application/x-ndjson");
    int lines = 0, done = 0;
    for (char *line = strtok(r.body, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        CHECKF(j, "not JSON: %s", line);
        CHECK_STR(jstr(j, "model"), "tiny:latest");
        CHECK(json_is_string(json_object_get(j, "created_at")));
        CHECK_STR(jstr(json_object_get(j, "message"), "role"), "assistant");
        if (json_is_true(json_object_get(j, "done"))) {
            done++;
            CHECK_STR(jstr(j, "done_reason"), "length");
            CHECK_EQ(json_integer_value(json_object_get(j, "eval_count")), 12);
            CHECK(json_integer_value(json_object_get(j, "prompt_eval_count")) > 0);
        }
        lines++;
        json_decref(j);
    }
    CHECK(lines >= 2);
    CHECK_EQ(done, 1);
    http_free(&r);
    /* the load request: no messages */
    int st;
    json_t *j = post_json(s.port, "/api/chat", "{\"model\": \"tiny\"}", &st);
    CHECK_EQ(st, 200);
    CHECK_STR(jstr(j, "done_reason"), "load");
    json_decref(j);
    /* the store's own counters, only because they exist here */
    CHECK(metric(s.port, "spillway_expert_cache_hits_total") +
          metric(s.port, "spillway_expert_cache_misses_total") > 0);
    CHECK(metric(s.port, "spillway_store_bytes_read_total") > 0);
    CHECK(metric(s.port, "spillway_expert_cache_budget_bytes") <= 4 << 20);
    CHECK_EQ(ts_stop(&s), 0);
}

TEST(server_metrics_health_tokenize_apikey)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, "--api-key sekrit --log-format json") == 0);
    http_resp r;
    CHECK(http_do(s.port, "GET", "/v1/models", NULL, NULL, &r) == 0);
    CHECK_EQ(r.status, 401);
    http_free(&r);
    const char *auth = "Authorization: Bearer sekrit\r\n";
    CHECK(http_do(s.port, "POST", "/v1/completions", auth,
                  "{\"prompt\": \"Once upon a time\", \"max_tokens\": 8}", &r) == 0);
    CHECK_EQ(r.status, 200);
    http_free(&r);
    CHECK(http_do(s.port, "POST", "/tokenize", auth,
                  "{\"content\": \"Once upon a time\", \"add_special\": true, \"with_pieces\": "
                  "true}", &r) == 0);
    json_t *j = body_json(&r);
    json_t *toks = json_object_get(j, "tokens");
    CHECK_EQ(json_array_size(toks), 5);
    CHECK_EQ(json_integer_value(json_object_get(json_array_get(toks, 0), "id")), 1);
    CHECK_STR(jstr(json_array_get(toks, 1), "piece"), " Once");
    json_decref(j);
    http_free(&r);
    CHECK(http_do(s.port, "POST", "/detokenize", auth, "{\"tokens\": [403, 407, 261, 378]}",
                  &r) == 0);
    j = body_json(&r);
    CHECK_STR(jstr(j, "content"), " Once upon a time");
    json_decref(j);
    http_free(&r);
    CHECK(http_do(s.port, "GET", "/metrics", auth, NULL, &r) == 0);
    CHECK_EQ(r.status, 200);
    CHECK_HAS(r.head, "text/plain; version=0.0.4");
    CHECK_HAS(r.body, "spillway_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1\n");
    CHECK_HAS(r.body, "spillway_requests_total{endpoint=\"/v1/models\",status=\"401\"} 1\n");
    CHECK_HAS(r.body, "# TYPE spillway_time_to_first_token_seconds histogram\n");
    CHECK_HAS(r.body, "spillway_time_to_first_token_seconds_count 1\n");
    CHECK_HAS(r.body, "spillway_inter_token_latency_seconds_count 7\n");
    CHECK_HAS(r.body, "spillway_generated_tokens_total 8\n");
    CHECK_HAS(r.body, "spillway_prompt_tokens_total 5\n");
    CHECK_HAS(r.body, "spillway_sessions_active 0\n");
    CHECK_HAS(r.body, "spillway_kv_cache_bytes ");
    CHECK(!strstr(r.body, "expert")); /* no expert cache yet: no fake series */
    http_free(&r);
    CHECK(http_do(s.port, "GET", "/health", NULL, NULL, &r) == 0);
    CHECK_EQ(r.status, 200);
    http_free(&r);
    CHECK_EQ(ts_stop(&s), 0);
    char *log = ts_log(&s);
    CHECK_HAS(log, "{\"time\":\"");
    CHECK_HAS(log, "\"msg\":\"request\",\"method\":\"POST\",\"path\":\"/v1/completions\","
                   "\"status\":200");
    free(log);
}

TEST(server_sigterm_finishes_running_streams)
{
    test_server s;
    CHECK(ts_start(&s, STORIES, NULL) == 0);
    int fd = http_send(s.port, "POST", "/v1/completions", NULL,
                       "{\"prompt\": \"Once upon a time\", \"max_tokens\": 600, \"stream\": true,"
                       " \"temperature\": 1, \"seed\": 3, \"stop\": [\"zzzzqqq\"]}");
    CHECK(fd >= 0);
    char *buf = calloc(1, 1 << 20);
    size_t n = http_read_some(fd, buf, (1 << 20) - 1, 100, 10000);
    CHECK(n >= 100);
    kill(s.pid, SIGTERM);
    n += http_read_some(fd, buf + n, (1 << 20) - 1 - n, (1 << 20), 60000);
    buf[n] = 0;
    close(fd);
    char *tail = strstr(buf, "data: [DONE]") ? NULL : ts_log(&s);
    CHECKF(!tail, "the stream ended without [DONE]; server log:\n%s", tail);
    int st = 0;
    for (double t0 = now_ms(); now_ms() - t0 < 20000;)
        if (waitpid(s.pid, &st, WNOHANG) == s.pid)
            break;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(buf);
    char *log = ts_log(&s);
    CHECK_HAS(log, "shutting down");
    CHECK_HAS(log, "stopped");
    free(log);
}

TEST(server_sessions_evicted_lru_when_memory_is_needed)
{
    test_server s;
    /* stories: 1280 bytes per position in an f32 cache; 200K holds one
     * conversation's worst case */
    CHECK(ts_start(&s, STORIES, "--parallel 1 --kv-budget 200K --kv-type f32") == 0);
    const char *fmt = "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], "
                      "\"max_tokens\": 60, \"temperature\": 0}";
    char body[512];
    int st;
    snprintf(body, sizeof body, fmt, "Tell me about a cat.");
    http_resp r;
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: a\r\n", body, &r) == 0);
    CHECK_EQ(r.status, 200);
    http_free(&r);
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: a\r\n", body, &r) == 0);
    json_t *j = body_json(&r);
    json_t *u = json_object_get(j, "usage");
    long first = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"),
                                                "cached_tokens")), first - 1);
    json_decref(j);
    http_free(&r);
    CHECK(metric(s.port, "spillway_kv_cache_evictions_total") == 0);
    /* conversation b needs the memory: a's cache goes */
    snprintf(body, sizeof body, fmt, "Tell me about a big red dog.");
    CHECK(http_do(s.port, "POST", "/v1/chat/completions", "X-Session-Id: b\r\n", body, &r) == 0);
    CHECK_EQ(r.status, 200);
    http_free(&r);
    CHECK(metric(s.port, "spillway_kv_cache_evictions_total") >= 1);
    CHECK(metric(s.port, "spillway_kv_cache_bytes") <= 200 * 1024);
    snprintf(body, sizeof body, fmt, "Tell me about a cat.");
    j = post_json(s.port, "/v1/chat/completions", body, &st);
    CHECK_EQ(st, 200);
    u = json_object_get(j, "usage");
    CHECK(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"),
                                             "cached_tokens")) < first - 1);
    json_decref(j);
    CHECK_EQ(ts_stop(&s), 0);
    char *log = ts_log(&s);
    CHECK_HAS(log, "session evicted");
    free(log);
}

TEST(server_bad_model_exits_with_the_reason)
{
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/not-a-model.gguf", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("this is not GGUF\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' serve '%s' --port 0 2>&1", test_bin(), path);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    CHECK_EQ(rc, 1);
    CHECK_HAS(out, "not a GGUF file");
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' serve '%s' --port 99999 2>&1", test_bin(), path);
    rc = test_run(cmd, &out);
    CHECK_EQ(rc, 2);
    free(out);
}
