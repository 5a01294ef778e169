/* Tests of constrained sampling (engine/grammar.h): the JSON recogniser,
 * alternatives with literals, and the vocabulary mask. */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "engine/grammar.h"

/* 1: text is a complete object, 0: a valid prefix, -1: not a prefix. */
static int json_state(const char *text)
{
    json_prefix p;
    json_prefix_init(&p);
    for (const char *c = text; *c; c++)
        if (!json_prefix_byte(&p, (unsigned char)*c))
            return -1;
    return json_prefix_done(&p) ? 1 : 0;
}

TEST(grammar_json_prefixes)
{
    static const char *complete[] = {
        "{}", " {\n}", "{\"a\":1}", "{\"a\": [1, 2.5, -3e+7, 0, -0.0, true, false, null]}",
        "{\"a\":{\"b\":{\"c\":[[],[{}]]}}}", "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9x\"}",
        "{\"\xc3\xa9\": \"\xf0\x9f\x98\x80\"}", "{\"n\":1E5,\"m\":0.5e-3}",
        "{\"\\ud83d\\ude00\": \"\xe2\x82\xac\xf4\x8f\xbf\xbf\"}",
    };
    for (size_t i = 0; i < sizeof complete / sizeof complete[0]; i++) {
        CHECKF(json_state(complete[i]) == 1, "%s", complete[i]);
        json_t *j = json_loads(complete[i], 0, NULL); /* jansson agrees */
        CHECKF(json_is_object(j), "%s", complete[i]);
        json_decref(j);
    }
    /* JSON allows U+0000 in any string, keys included; jansson refuses it
     * in a key (its keys are C strings), so the fuzzer's oracle excuses it */
    CHECK(json_state("{\"a\\u0000b\": \"\\u0000\"}") == 1);
    json_error_t je;
    CHECK(!json_loads("{\"a\\u0000b\": 1}", JSON_ALLOW_NUL, &je));
    CHECK(json_error_code(&je) == json_error_null_byte_in_key);
    static const char *prefixes[] = {"", "  ", "{", "{\"a", "{\"a\"", "{\"a\":", "{\"a\": -",
                                     "{\"a\": 1.", "{\"a\": 1e", "{\"a\": 1e-", "{\"a\": tr",
                                     "{\"a\": \"\\u00", "{\"a\": [1,", "{\"a\":{}"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        CHECKF(json_state(prefixes[i]) == 0, "'%s'", prefixes[i]);
    static const char *bad[] = {"[", "1", "\"x\"", "{,", "{\"a\" 1", "{\"a\":01", "{\"a\":-x",
                                "{\"a\":1.e", "{\"a\":tru3", "{\"a\":\"\\x\"", "{\"a\":\"\x01\"",
                                "{}}", "{} ", "{\"a\":[1,]", "{\"a\":1,}", "{'a':1}",
                                "{\"a\":\"\\u12g\"", "{\"a\": +1}", "{\"a\": .5}",
                                "{\"\xc3(\"", "{\"\xed\xa0\x80\"", "{\"\xf5\x80\"",
                                "{\"\xc0\xaf\"", "{\"\\udc00\"", "{\"\\ud800x\"",
                                "{\"\\ud800\\u0041\"", "{\"\\ud800\\n\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(json_state(bad[i]) == -1, "'%s' accepted", bad[i]);
}

TEST(grammar_json_limits_whitespace_and_depth)
{
    char ws[64] = "{";
    memset(ws + 1, ' ', GRAMMAR_MAX_WS);
    CHECK_EQ(json_state(ws), 0);
    strcat(ws, " ");
    CHECK_EQ(json_state(ws), -1);
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 62; i++)
        strcat(deep, "[");
    CHECK_EQ(json_state(deep), 0);
    strcat(deep, "[");
    CHECK_EQ(json_state(deep), -1);
}

TEST(grammar_alternatives_literals_and_objects)
{
    const char *alts[] = {"<tool_call>\n{\"name\": \"a\", \"arguments\": \x01}\n</tool_call>",
                          "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>"};
    grammar *g;
    CHECK(grammar_new(alts, 2, &g, NULL) == 0);
    const char *steps[] = {"<tool_", "call>\n{\"name\": \"", "a\", \"arguments\": ", "{\"x\"",
                           ": [1, {\"y\": null}]}", "}\n</tool_call"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        CHECKF(grammar_feed(g, steps[i], strlen(steps[i])), "step %zu", i);
        CHECK(!grammar_complete(g));
    }
    CHECK(grammar_feed(g, ">", 1));
    CHECK(grammar_complete(g));
    CHECK(!grammar_feed(g, " ", 1)); /* nothing after the end */
    grammar_free(g);

    CHECK(grammar_new(alts, 2, &g, NULL) == 0);
    CHECK(grammar_feed(g, "<tool_call>\n{\"name\": \"b", 23));
    CHECK(!grammar_feed(g, "\", \"arguments\": {\"", 18)); /* b takes no arguments */
    grammar_free(g);
    CHECK(grammar_new(alts, 0, &g, NULL) < 0);
}

TEST(grammar_mask_over_a_vocabulary)
{
    /* ids: 0 "{", 1 "}", 2 "\"", 3 "a", 4 "{\"", 5 ":", 6 " ", 7 EOG, 8 control, 9 "x}" */
    static const char *pieces[] = {"{", "}", "\"", "a", "{\"", ":", " ", "", "<ctl>", "x}"};
    uint32_t len[10];
    uint8_t kind[10] = {0, 0, 0, 0, 0, 0, 0, GRAMMAR_TOK_EOG, GRAMMAR_TOK_NEVER, 0};
    for (int i = 0; i < 10; i++)
        len[i] = (uint32_t)strlen(pieces[i]);
    grammar_vocab v = {.n = 10, .piece = pieces, .len = len, .kind = kind};
    const char *alts[] = {"\x01"};
    grammar *g;
    CHECK(grammar_new(alts, 1, &g, NULL) == 0);
    float lg[10];
    for (int i = 0; i < 10; i++)
        lg[i] = 1.0f;
    CHECK_EQ(grammar_mask(g, &v, lg), 3); /* "{", "{\"", " " */
    CHECK(lg[0] == 1.0f && lg[4] == 1.0f && lg[6] == 1.0f);
    CHECK(isinf(lg[1]) && isinf(lg[7]) && isinf(lg[8]) && isinf(lg[9]));
    CHECK(grammar_feed(g, "{\"a\":", 5));
    for (int i = 0; i < 10; i++)
        lg[i] = 1.0f;
    int n = grammar_mask(g, &v, lg);
    CHECK_EQ(n, 4); /* a value: "{", "\"", "{\"", " " */
    CHECK(grammar_feed(g, "\"a\"}", 4));
    CHECK(grammar_complete(g));
    for (int i = 0; i < 10; i++)
        lg[i] = 1.0f;
    CHECK_EQ(grammar_mask(g, &v, lg), 1); /* only the end of generation */
    CHECK(lg[7] == 1.0f);
    grammar_free(g);
}
