/* Tests of the request parsers (server/request.h): normalisation, defaults,
 * and a 400 naming the field for each kind of bad value. */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include "server/request.h"

static int chat(const char *body, gen_request *r, srv_perr *e)
{
    memset(e, 0, sizeof *e);
    return req_parse_openai_chat(body, strlen(body), r, e);
}

TEST(request_openai_chat_normalises_messages)
{
    gen_request r;
    srv_perr e;
    CHECK(chat("{\"model\": \"gpt-4o\", \"messages\": ["
               "{\"role\": \"developer\", \"content\": \"Be brief.\"},"
               "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
               " {\"type\": \"text\", \"text\": \"b\"}]},"
               "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\","
               " \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": "
               "\"{\\\"x\\\": 1}\"}}]},"
               "{\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"42\"}],"
               " \"stop\": null, \"max_tokens\": null, \"user\": \"u7\", \"seed\": -1}",
               &r, &e) == 0);
    char *m = json_dumps(r.messages, JSON_COMPACT);
    CHECK_STR(m, "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                 "{\"role\":\"user\",\"content\":\"a\\nb\"},"
                 "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}},\"id\":\"c1\"}]},"
                 "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"}]");
    free(m);
    CHECK_STR(r.model, "gpt-4o");
    CHECK_STR(r.session, "u7");
    CHECK_EQ(r.max_tokens, 0);
    CHECK_EQ(r.n_stops, 0);
    CHECK(r.sampling.seed == SW_SEED_RANDOM);
    CHECK_EQ(r.sampling.repeat_last_n, -1); /* OpenAI penalties: every generated token */
    CHECK(!r.stream && !r.json_mode && !r.tools);
    req_free(&r);
}

TEST(request_openai_fields)
{
    gen_request r;
    srv_perr e;
    CHECK(chat("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": 0,"
               " \"top_p\": 0.5, \"max_completion_tokens\": 7, \"stop\": [\"a\", \"\", \"b\"],"
               " \"stream\": true, \"stream_options\": {\"include_usage\": true},"
               " \"response_format\": {\"type\": \"json_object\"}, \"presence_penalty\": 1.5,"
               " \"top_k\": 5, \"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
               "\"f\"}}], \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": "
               "\"f\"}}}", &r, &e) == 0);
    CHECK(r.sampling.temperature == 0.0f && r.sampling.top_p == 0.5f && r.sampling.top_k == 5);
    CHECK(r.sampling.presence_penalty == 1.5f);
    CHECK_EQ(r.max_tokens, 7);
    CHECK_EQ(r.n_stops, 2);
    CHECK_STR(r.stops[1], "b");
    CHECK(r.stream && r.include_usage && r.json_mode);
    CHECK_EQ(r.tool_choice, TOOL_CHOICE_NAMED);
    CHECK_STR(r.tool_name, "f");
    CHECK(req_has_tool(&r, "f") && !req_has_tool(&r, "g"));
    req_free(&r);

    const char *b = "{\"prompt\": [\"hi\"]}";
    CHECK(req_parse_openai_completion(b, strlen(b), &r, &e) == 0);
    CHECK_STR(r.prompt, "hi");
    CHECK_EQ(r.max_tokens, 16); /* OpenAI's default for completions */
    req_free(&r);
    b = "{\"prompt\": [1, 2, 3]}";
    CHECK(req_parse_openai_completion(b, strlen(b), &r, &e) == 0);
    CHECK_EQ(r.n_context, 3);
    CHECK(!r.prompt);
    req_free(&r);
}

TEST(request_errors_name_the_field)
{
    static const struct {
        const char *body, *param, *msg;
    } bad[] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": -5}",
         "max_tokens", "between"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}",
         "max_tokens", "at least 1"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": 9}",
         "temperature", "between"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
         "messages", "image_url"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": "
         "{\"type\": \"json_schema\"}}", "response_format", "json_schema"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": "
         "\"required\"}", "tool_choice", "requires tools"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true}",
         "logprobs", "not supported"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"messages\": []}", "",
         "duplicate"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\\u0000y\"}]}", "", "NUL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gen_request r;
        srv_perr e;
        CHECKF(chat(bad[i].body, &r, &e) < 0, "%s accepted", bad[i].body);
        CHECK_EQ(e.status, 400);
        CHECK_STR(e.param, bad[i].param);
        CHECK_HAS(e.msg, bad[i].msg);
    }
}

TEST(request_ollama_defaults_and_options)
{
    gen_request r;
    srv_perr e = {0};
    const char *b = "{\"model\": \"llama3:8b\", \"prompt\": \"Why?\", \"system\": \"S\","
                    " \"context\": [1, 2], \"format\": \"json\", \"options\": {\"num_predict\": "
                    "-1, \"stop\": [\"\\n\"], \"seed\": 5, \"num_ctx\": 512, \"num_gpu\": 99}}";
    CHECK(req_parse_ollama_generate(b, strlen(b), &r, &e) == 0);
    CHECK(r.stream); /* Ollama streams unless told not to */
    CHECK(r.sampling.repeat_penalty == 1.1f && r.sampling.top_p == 0.9f);
    CHECK(r.sampling.min_p == 0.0f && r.sampling.top_k == 40);
    CHECK(r.sampling.seed == 5);
    CHECK_EQ(r.max_tokens, 0);
    CHECK_EQ(r.n_ctx, 512);
    CHECK_EQ(r.n_context, 2);
    CHECK(r.json_mode && !r.load_only && !r.raw);
    CHECK_STR(r.system, "S");
    CHECK_STR(r.stops[0], "\n");
    req_free(&r);

    b = "{\"model\": \"m\", \"messages\": [{\"role\": \"tool\", \"tool_name\": \"f\", "
        "\"content\": \"1\"}], \"stream\": false, \"options\": {\"temperature\": 0}}";
    CHECK(req_parse_ollama_chat(b, strlen(b), &r, &e) == 0);
    CHECK(!r.stream);
    CHECK_STR(json_string_value(json_object_get(json_array_get(r.messages, 0), "name")), "f");
    req_free(&r);
    b = "{\"model\": \"m\"}";
    CHECK(req_parse_ollama_chat(b, strlen(b), &r, &e) == 0);
    CHECK(r.load_only);
    req_free(&r);

    static const char *bad[] = {
        "{\"prompt\": \"x\", \"format\": {\"type\": \"object\"}}",
        "{\"prompt\": \"x\", \"images\": [\"aGk=\"]}",
        "{\"prompt\": \"x\", \"options\": {\"top_k\": \"many\"}}",
        "{\"prompt\": \"x\", \"context\": [1, -2]}",
        "{\"prompt\": \"x\", \"template\": \"{{ .Prompt }}\"}",
        "{\"prompt\": \"x\", \"think\": true}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(req_parse_ollama_generate(bad[i], strlen(bad[i]), &r, &e) < 0, "%s", bad[i]);
        CHECK_EQ(e.status, 400);
    }
}
