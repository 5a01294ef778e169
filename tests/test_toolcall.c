/* Tests of tool-call parsing, the streaming filter and forced calls
 * (server/toolcall.h). */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include "server/toolcall.h"

static json_t *tools(void)
{
    return json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                      "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
                      "{\"type\": \"string\"}}}}}, {\"type\": \"function\", \"function\": "
                      "{\"name\": \"now\"}}]", 0, NULL);
}

/* Parses text; returns "name(args);..." of the calls, content in *content. */
static char *calls_of(const char *text, char **content)
{
    json_t *t = tools();
    strbuf c = {0};
    json_t *calls = toolcall_parse(text, strlen(text), t, &c);
    strbuf out = {0};
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        json_t *fn = json_object_get(tc, "function");
        char *args = json_dumps(json_object_get(fn, "arguments"), JSON_COMPACT | JSON_SORT_KEYS);
        sb_printf(&out, "%s(%s);", json_string_value(json_object_get(fn, "name")), args);
        free(args);
        if (strncmp(json_string_value(json_object_get(tc, "id")), "call_", 5))
            sb_puts(&out, "BAD-ID");
    }
    *content = c.s ? c.s : strdup("");
    json_decref(calls);
    json_decref(t);
    return out.s ? out.s : strdup("");
}

TEST(toolcall_parse_formats)
{
    static const struct {
        const char *text, *calls, *content;
    } cases[] = {
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n"
         "</tool_call>", "get_weather({\"city\":\"Oslo\"});", ""},
        {"Let me check.\n<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>\n"
         "<tool_call>{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}",
         "now({});get_weather({\"city\":\"Rome\"});", "Let me check."},
        {"{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
         "get_weather({\"city\":\"Paris\"});", ""},
        {"<|python_tag|>{\"name\": \"now\", \"parameters\": {}}; {\"name\": \"now\"}",
         "now({});now({});", ""},
        {"[TOOL_CALLS][{\"name\": \"now\", \"arguments\": {}}]", "now({});", ""},
        {"<function=get_weather>{\"city\": \"Bern\"}</function>", "get_weather({\"city\":\"Bern\"});",
         ""},
        /* not calls: plain JSON naming no tool, broken JSON, text after a call */
        {"{\"name\": \"Bob\", \"age\": 3}", "", "{\"name\": \"Bob\", \"age\": 3}"},
        {"<tool_call>{\"name\": \"now\", ", "", "<tool_call>{\"name\": \"now\", "},
        {"Hello there", "", "Hello there"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *content;
        char *calls = calls_of(cases[i].text, &content);
        CHECKF(!strcmp(calls, cases[i].calls), "case %zu: calls '%s'", i, calls);
        CHECKF(!strcmp(content, cases[i].content), "case %zu: content '%s'", i, content);
        free(calls);
        free(content);
    }
}

/* Feeds text in pieces of `step` bytes; returns what was released, and the
 * calls at the end. */
static char *filter(const char *text, size_t step, json_t **calls)
{
    json_t *t = tools();
    toolcall_filter f;
    tcf_init(&f, t);
    strbuf out = {0};
    for (size_t i = 0; i < strlen(text); i += step) {
        size_t n = strlen(text + i) < step ? strlen(text + i) : step;
        tcf_feed(&f, text + i, n, &out);
    }
    *calls = tcf_finish(&f, &out);
    tcf_free(&f);
    json_decref(t);
    return out.s ? out.s : strdup("");
}

TEST(toolcall_filter_streams_text_and_holds_calls)
{
    static const struct {
        const char *text, *content;
        int n_calls;
    } cases[] = {
        {"Plain <b>text</b> with [brackets] and < signs.", "Plain <b>text</b> with [brackets] and < signs.", 0},
        {"Sure.\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", "Sure.", 1},
        {"  {\"name\": \"now\", \"parameters\": {}}", "", 1},
        {"<tool_cal", "<tool_cal", 0},
        {"{\"not\": \"a call\"}", "{\"not\": \"a call\"}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t step = 1; step <= 7; step += 3) {
            json_t *calls;
            char *out = filter(cases[i].text, step, &calls);
            CHECKF(!strcmp(out, cases[i].content), "case %zu step %zu: '%s'", i, step, out);
            CHECK_EQ((int)json_array_size(calls), cases[i].n_calls);
            json_decref(calls);
            free(out);
        }
}

TEST(toolcall_filter_releases_text_early)
{
    json_t *t = tools();
    toolcall_filter f;
    tcf_init(&f, t);
    strbuf out = {0};
    tcf_feed(&f, "Hello, ", 7, &out);
    CHECK_STR(out.s, "Hello,"); /* a trailing blank waits for what follows */
    tcf_feed(&f, "world <to", 9, &out);
    CHECK_STR(out.s, "Hello, world"); /* "<to" might open a call */
    tcf_feed(&f, "day>", 4, &out);
    CHECK_STR(out.s, "Hello, world <today>");
    json_t *calls = tcf_finish(&f, &out);
    CHECK(!calls);
    sb_free(&out);
    tcf_free(&f);
    json_decref(t);
}

TEST(toolcall_forced_grammar_per_style)
{
    json_t *t = tools();
    char **alts;
    int n;
    CHECK(toolcall_grammar(SW_TOOLS_HERMES, t, NULL, &alts, &n) == 0);
    CHECK_EQ(n, 2);
    CHECK_STR(alts[0], "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \x01}\n</tool_call>");
    CHECK_STR(alts[1], "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>");
    toolcall_free_grammar(alts, n);
    CHECK(toolcall_grammar(SW_TOOLS_LLAMA3, t, "now", &alts, &n) == 0);
    CHECK_EQ(n, 1);
    CHECK_STR(alts[0], "{\"name\": \"now\", \"parameters\": {}}");
    toolcall_free_grammar(alts, n);
    CHECK(toolcall_grammar(SW_TOOLS_MISTRAL, t, "get_weather", &alts, &n) == 0);
    CHECK_STR(alts[0], "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": \x01}]");
    toolcall_free_grammar(alts, n);
    json_decref(t);
}
