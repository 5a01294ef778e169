/*
 * request.h — generation requests of both APIs, parsed into one form.
 *
 * The four generating endpoints (OpenAI's /v1/chat/completions and
 * /v1/completions, Ollama's /api/chat and /api/generate) differ in field
 * names, defaults and response shapes, but ask for the same thing: a
 * conversation or a prompt, sampling settings, stops, an output format.
 * Their parsers turn a request body into a gen_request, checking every
 * field's type and range (a 400 naming the field otherwise), so the code
 * after them never sees a malformed value. They touch no engine and no
 * network: the libFuzzer target tests/fuzz/fuzz_request.c runs them on
 * arbitrary bytes.
 *
 * Conversations are normalised into the shape chat templates expect
 * (Hugging Face's): content always a string (OpenAI's text parts joined),
 * "developer" read as "system", tool-call arguments as JSON objects, Ollama's
 * tool_name as name.
 */
#ifndef SW_SERVER_REQUEST_H
#define SW_SERVER_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "server/json_util.h"
#include "spillway.h"

enum gen_api { GEN_OPENAI_CHAT, GEN_OPENAI_COMPLETION, GEN_OLLAMA_CHAT, GEN_OLLAMA_GENERATE };

enum tool_choice { TOOL_CHOICE_AUTO = 0, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, TOOL_CHOICE_NAMED };

#define GEN_MAX_STOPS 16

typedef struct gen_request {
    enum gen_api api;
    char *model;              /* as the client named it ("" if absent) */
    json_t *messages;         /* chat: normalised array; NULL for prompts */
    json_t *tools;            /* normalised tools, or NULL */
    int tool_choice;
    char *tool_name;          /* TOOL_CHOICE_NAMED */
    char *prompt;             /* prompt APIs: the text */
    char *system;             /* Ollama generate: a system message */
    bool raw;                 /* Ollama generate: no template */
    int32_t *context;         /* Ollama generate: ids of an earlier exchange */
    int n_context;
    sw_sampling sampling;
    int max_tokens;           /* <= 0: no limit */
    int n_ctx;                /* Ollama num_ctx, 0: the server's */
    char *stops[GEN_MAX_STOPS];
    int n_stops;
    bool json_mode;           /* response_format json_object / format "json" */
    bool stream;
    bool include_usage;       /* stream_options.include_usage */
    bool load_only;           /* Ollama: empty prompt / messages, just load */
    char *session;            /* OpenAI "user" (X-Session-Id is the caller's) */
} gen_request;

int req_parse_openai_chat(const char *body, size_t len, gen_request *r, srv_perr *e);
int req_parse_openai_completion(const char *body, size_t len, gen_request *r, srv_perr *e);
int req_parse_ollama_chat(const char *body, size_t len, gen_request *r, srv_perr *e);
int req_parse_ollama_generate(const char *body, size_t len, gen_request *r, srv_perr *e);
void req_free(gen_request *r);

/* request.c, shared by the parsers */
int req_parse_messages(const json_t *arr, bool ollama, json_t **out, srv_perr *e);
int req_parse_tools(const json_t *arr, json_t **out, srv_perr *e);
int req_parse_stops(const json_t *v, const char *param, gen_request *r, srv_perr *e);
bool req_has_tool(const gen_request *r, const char *name);
/* The parameters object of tool `name` in r->tools (NULL if none). */
const json_t *req_tool_params(const gen_request *r, const char *name);

#endif
