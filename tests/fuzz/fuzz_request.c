/*
 * fuzz_request.c — libFuzzer target for what the server does with bytes a
 * client controls before any model runs: the four request parsers (OpenAI
 * chat and completions, Ollama chat and generate), the tool-call parser and
 * streaming filter over the same bytes, and the JSON-prefix recogniser of
 * constrained sampling, checked against jansson: whatever it calls a
 * complete object, jansson must parse as one.
 *
 * Every parser must either succeed or fail with a status and a message —
 * never crash, leak or accept a value outside its documented range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/grammar.h"
#include "server/request.h"
#include "server/toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const gen_request *r)
{
    if (r->n_stops < 0 || r->n_stops > GEN_MAX_STOPS || r->max_tokens < 0 || r->n_context < 0)
        abort();
    if (!(r->sampling.temperature >= 0) || !(r->sampling.top_p >= 0 && r->sampling.top_p <= 1))
        abort();
    if (r->messages && (!json_is_array(r->messages) || json_array_size(r->messages) == 0))
        abort();
    if (r->tool_choice == TOOL_CHOICE_NAMED && !req_has_tool(r, r->tool_name))
        abort();
}

static void parse_all(const char *body, size_t len)
{
    int (*const parsers[])(const char *, size_t, gen_request *, srv_perr *) = {
        req_parse_openai_chat, req_parse_openai_completion, req_parse_ollama_chat,
        req_parse_ollama_generate};
    for (size_t i = 0; i < sizeof parsers / sizeof parsers[0]; i++) {
        gen_request r;
        srv_perr e = {0};
        if (parsers[i](body, len, &r, &e) == 0) {
            check_request(&r);
            req_free(&r);
        } else if (!e.status || !e.msg[0]) {
            abort(); /* every refusal says why */
        }
    }
}

static void tool_calls(const char *text, size_t len)
{
    json_t *tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", 0,
                               NULL);
    strbuf content = {0};
    json_decref(toolcall_parse(text, len, tools, &content));
    sb_free(&content);
    toolcall_filter f;
    tcf_init(&f, tools);
    strbuf out = {0};
    for (size_t i = 0; i < len; i += 3)
        tcf_feed(&f, text + i, len - i < 3 ? len - i : 3, &out);
    json_decref(tcf_finish(&f, &out));
    tcf_free(&f);
    sb_free(&out);
    json_decref(tools);
}

static void json_prefix_agrees(const char *text, size_t len)
{
    json_prefix p;
    json_prefix_init(&p);
    size_t i = 0;
    while (i < len && json_prefix_byte(&p, (unsigned char)text[i]))
        i++;
    if (i == len && json_prefix_done(&p)) {
        /* jansson refuses two things JSON allows: numbers too large for a
         * double, and U+0000 in an object key (it keeps keys as C strings) */
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        enum json_error_code why = json_error_code(&je);
        if (!json_is_object(j) && why != json_error_numeric_overflow &&
            why != json_error_null_byte_in_key)
            abort();
        json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    parse_all(text, size);
    tool_calls(text, size);
    json_prefix_agrees(text, size);
    return 0;
}
