/*
 * toolcall.h — tool calls in model output: finding them, holding back
 * streamed text that may be one, and forcing one with a grammar.
 *
 * Models write tool calls as text in their family's convention:
 *
 *   Hermes, Qwen 2.5/3     <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
 *   Llama 3.x              {"name": "f", "parameters": {...}}   (maybe after <|python_tag|>)
 *                          <function=f>{...}</function>
 *   Mistral                [TOOL_CALLS][{"name": "f", "arguments": {...}}]
 *
 * toolcall_parse() recognises all of them in a finished text. Calls marked
 * by a tag are taken whatever their name; bare JSON counts as a call only if
 * it names one of the request's tools (so a JSON answer stays an answer).
 *
 * Streaming. A toolcall_filter sits between the engine's text and the
 * client: it passes text through as content, except that it holds back
 * (a) an answer that opens with '{' or '[' or a tag, until the end, and
 * (b) anywhere later, text that could be the start of a tag, until it is
 * known not to be. Once a tag appears, the rest is held, and at the end it
 * is parsed: calls become tool_calls, anything unparseable is released as
 * content after all. So clients never see half a call as text, and plain
 * answers stream as before.
 *
 * Calls are returned as a JSON array of {"id", "type": "function",
 * "function": {"name", "arguments": <object>}}; the OpenAI routes turn the
 * arguments into a JSON string, Ollama's keep the object.
 */
#ifndef SW_SERVER_TOOLCALL_H
#define SW_SERVER_TOOLCALL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "server/json_util.h"
#include "spillway.h"

typedef struct toolcall_filter {
    const json_t *tools;
    strbuf held;
    bool seen_text;   /* non-whitespace content has been released */
    bool capturing;   /* holding everything to the end */
} toolcall_filter;

void tcf_init(toolcall_filter *f, const json_t *tools);
/* Model text in; content that is safe to show appended to out. */
void tcf_feed(toolcall_filter *f, const char *text, size_t len, strbuf *out);
/* End of the output: returns the calls (new reference) or NULL; content
 * still held is appended to out. */
json_t *tcf_finish(toolcall_filter *f, strbuf *out);
void tcf_free(toolcall_filter *f);

/* The calls in text[len] (new reference) or NULL; the text that is not part
 * of a call is appended to content (may be NULL). */
json_t *toolcall_parse(const char *text, size_t len, const json_t *tools, strbuf *content);

/* Grammar alternatives (see spillway.h) that force one call of `only` (or of
 * any of the tools when NULL) in the template's style. *alts and its strings
 * are malloc'd; free with toolcall_free_grammar. */
int toolcall_grammar(sw_tool_style style, const json_t *tools, const char *only, char ***alts,
                     int *n);
void toolcall_free_grammar(char **alts, int n);

#endif
