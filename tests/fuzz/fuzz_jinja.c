/*
 * fuzz_jinja.c — libFuzzer target for the chat-template interpreter: any
 * text must either fail to parse with a message, or render (with a small
 * fixed conversation) to valid UTF-8 or fail with a message — never crash,
 * hang or grow without bound. The limits below keep each input cheap; the
 * interpreter must enforce them itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "text/chat.h"
#include "text/jinja.h"
#include "text/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *g_messages, *g_tools;

static void load_once(void)
{
    if (g_messages)
        return;
    json_error_t je;
    g_messages = json_loads(
        "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"user\", \"content\": \"Grüße 😀 \\\"hi\\\"\"},"
        " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"abc123XYZ\","
        "   \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"abc123XYZ\", \"content\": \"42\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"part\"}]}]",
        0, &je);
    g_tools = json_loads(
        "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
        " \"parameters\": {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}},"
        " \"required\": [\"x\"]}}}]",
        0, &je);
    if (!g_messages || !g_tools) {
        fprintf(stderr, "fuzz_jinja: bad built-in JSON: %s\n", je.text);
        exit(1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    jinja_tmpl *t = NULL;
    sw_err err = {0};
    if (jinja_parse((const char *)data, size, &t, &err) < 0) {
        if (!err.msg[0])
            abort(); /* every failure says why */
        return 0;
    }
    chat_params p = {.messages = g_messages, .tools = g_tools, .add_generation_prompt = true,
                     .bos_token = "<s>", .eos_token = "</s>"};
    jinja_opts o = {.max_output = 1 << 20, .max_steps = 200000, .max_depth = 30,
                    .now = 1736937000};
    char *out = NULL;
    size_t len = 0;
    int rc = chat_render(t, &p, &o, &out, &len, &err);
    if (rc == 0 && (strlen(out) > len || !utf8_valid(out, len)))
        abort(); /* output is NUL-terminated, of the stated length, and UTF-8 */
    if (rc < 0 && !err.msg[0])
        abort();
    free(out);
    jinja_free(t);
    return 0;
}
