/* Tests of the logger (util/log.h): text and JSON lines, escaping, levels. */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

#include "util/log.h"

TEST(log_json_lines_are_json)
{
    char path[512];
    snprintf(path, sizeof path, "%s/log.jsonl", test_tmpdir());
    CHECK(log_open(LOG_JSON, path, LOG_INFO, NULL) == 0);
    LOG_EVENT(LOG_INFO, "request", LOG_S("path", "/v1/chat \"x\"\n\t\x01"), LOG_I("status", 200),
              LOG_F("ms", 1.5), LOG_F("nan", 0.0 / 0.0));
    LOG_EVENT(LOG_DEBUG, "hidden", LOG_I("x", 1));
    log_msg(LOG_WARN, "plain %d", 7);
    log_close();
    char *text = test_read_file(path, NULL);
    CHECK(text);
    char *second = strchr(text, '\n');
    CHECK(second);
    *second++ = 0;
    json_t *a = json_loads(text, 0, NULL), *b = json_loads(second, JSON_DISABLE_EOF_CHECK, NULL);
    CHECK(a && b);
    CHECK_STR(json_string_value(json_object_get(a, "level")), "info");
    CHECK_STR(json_string_value(json_object_get(a, "msg")), "request");
    CHECK_STR(json_string_value(json_object_get(a, "path")), "/v1/chat \"x\"\n\t\x01");
    CHECK_EQ(json_integer_value(json_object_get(a, "status")), 200);
    CHECK(json_real_value(json_object_get(a, "ms")) == 1.5);
    CHECK(json_is_null(json_object_get(a, "nan")));
    CHECK(json_is_string(json_object_get(a, "time")));
    CHECK_STR(json_string_value(json_object_get(b, "msg")), "plain 7");
    CHECK(!strstr(second, "hidden"));
    json_decref(a);
    json_decref(b);
    free(text);
}

TEST(log_text_lines_quote_what_needs_it)
{
    char path[512];
    snprintf(path, sizeof path, "%s/log.txt", test_tmpdir());
    CHECK(log_open(LOG_TEXT, path, LOG_DEBUG, NULL) == 0);
    LOG_EVENT(LOG_ERROR, "failed", LOG_S("model", "a b"), LOG_S("path", "/x"), LOG_S("empty", ""));
    log_close();
    char *text = test_read_file(path, NULL);
    CHECK(text);
    CHECK_HAS(text, " error failed model=\"a b\" path=/x empty=\"\"\n");
    CHECK(log_parse_format("json") == LOG_JSON && log_parse_format("xml") < 0);
    free(text);
}
