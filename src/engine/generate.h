/*
 * generate.h — the generation loop: prompt text in, streamed text out.
 *
 * One loop serves every front end (the CLI now, the HTTP server later), so
 * the rules about where text comes from and when generation ends live in
 * one place:
 *
 *   generator      a loaded model with everything needed to run it: the
 *                  weight store, the model, its tokenizer, a thread pool, the
 *                  forward pass's scratch, and the chat template (parsed on
 *                  first use). Opening one is the "load" of the statistics.
 *
 *   prompt         text becomes ids with generator_encode(): plain text gets
 *                  the model's BOS and no special-token parsing (a user who
 *                  types "<|im_end|>" gets those characters, not the token);
 *                  a prompt rendered by the chat template is the program's
 *                  own markup, so its control tokens are parsed, and BOS is
 *                  added only when the template did not already write it.
 *
 *   run            generator_run() appends the prompt to a KV cache the
 *                  caller owns (so a conversation can keep its cache, and a
 *                  caller that kept a common prefix passes only the rest),
 *                  prefills it in batches, then samples one token at a time.
 *                  Each token goes through the streaming detokenizer (whole
 *                  UTF-8 characters only) and the stop-string matcher (text
 *                  that could still begin a stop string is held back), and
 *                  what is safe to show is handed to the sink's on_text.
 *
 *   stopping       the first of: an end-of-generation token (EOS, EOT, ...:
 *                  its text is never shown), a stop string (neither it nor
 *                  anything after it is shown), max_tokens generated, the
 *                  KV cache full, or on_text asking to stop.
 *
 * Invariants: everything handed to on_text is valid UTF-8; the text emitted
 * does not depend on how the loop's pieces happen to be cut; with a fixed
 * seed (or greedy decoding) the same prompt gives the same text. The last
 * sampled token is reported and counted but not run through the model (its
 * logits would never be used), so the cache ends one token short of the
 * text; a follow-up turn re-feeds it with its own prompt.
 *
 * Nothing here knows about HTTP or JSON requests; the chat-template
 * interpreter takes its conversation as JSON, and generator_template()
 * exposes it for front ends that build richer conversations (tools, ...).
 */
#ifndef SW_GENERATE_H
#define SW_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/sampler.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "text/jinja.h"
#include "text/tokenizer.h"
#include "util/err.h"
#include "util/pool.h"

typedef struct generator generator;

typedef struct generator_opts {
    int n_threads;        /* <= 0: every CPU this process may use */
    int n_batch;          /* most tokens per forward step; 0 = 512 */
    model_opts model;     /* parity mode etc. */
    store_opts store;     /* where weights live; zero: mapped (store_open) */
} generator_opts;

/* Opens the GGUF at path (a file; names are the caller's business, see
 * catalog_resolve), loads the model and its tokenizer and starts the
 * thread pool. opts may be NULL. */
int generator_open(const char *path, const generator_opts *opts, generator **out, sw_err *err);
void generator_close(generator *g);

model *generator_model(generator *g);
store *generator_store(generator *g);
const tokenizer *generator_tokenizer(const generator *g);
sw_pool *generator_pool(generator *g);
/* Seconds generator_open took. */
double generator_load_seconds(const generator *g);

/* --- prompts ------------------------------------------------------------- */

/* One chat message. */
typedef struct generator_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} generator_msg;

/* Replaces the model's chat template with src[len] (parsed now). */
int generator_set_template(generator *g, const char *src, size_t len, sw_err *err);

/* The chat template in use: the one set above, else the model's
 * tokenizer.chat_template, else ChatML (*fallback true). Parsed on first
 * call; owned by g. fallback may be NULL. */
int generator_template(generator *g, const jinja_tmpl **out, bool *fallback, sw_err *err);

/* Renders msgs[0..n) through the chat template (with the tokenizer's
 * bos/eos strings) into a malloc'd string *out. */
int generator_render_chat(generator *g, const generator_msg *msgs, int n,
                          bool add_generation_prompt, char **out, sw_err *err);

/* Text to ids (see the header comment): chat selects template-rendered
 * text. *ids is malloc'd, *n >= 1 on success (an empty prompt without a BOS
 * token to stand for it is SW_EINVAL). */
int generator_encode(const generator *g, const char *text, bool chat, int32_t **ids, int *n,
                     sw_err *err);

/* --- the loop ------------------------------------------------------------ */

typedef struct generator_params {
    sampler_params sampling;  /* its max_tokens is ignored: see below */
    const char *const *stops; /* stop strings */
    int n_stops;
    int max_tokens;           /* tokens to generate; <= 0: until EOG or a full cache */
    bool ignore_eog;          /* keep going past end-of-generation tokens */
} generator_params;

/* llama.cpp's sampling defaults, no stop strings, no token limit. */
generator_params generator_default_params(void);

/* Where the output goes. Any callback may be NULL. */
typedef struct generator_sink {
    /* Text safe to show, valid UTF-8, len > 0. Nonzero return stops the
     * run (GENERATOR_STOP_CANCEL). */
    int (*on_text)(void *ctx, const char *text, size_t len);
    /* Every sampled token, in order, the final EOG token included. */
    void (*on_token)(void *ctx, int32_t id);
    void *ctx;
} generator_sink;

typedef enum generator_stop {
    GENERATOR_STOP_NONE = 0,
    GENERATOR_STOP_EOG,    /* an end-of-generation token was sampled */
    GENERATOR_STOP_STRING, /* a stop string matched */
    GENERATOR_STOP_LENGTH, /* max_tokens generated */
    GENERATOR_STOP_CTX,    /* the KV cache is full */
    GENERATOR_STOP_CANCEL, /* on_text asked to stop */
} generator_stop;

/* "eog", "stop", "length", "context", "cancel" ("" for none). */
const char *generator_stop_name(generator_stop s);

typedef struct generator_stats {
    double load_s;        /* generator_open */
    int n_prompt;         /* prompt tokens run through the model */
    double prompt_s;      /* their prefill, last logits included */
    int n_gen;            /* tokens sampled (a final EOG token included) */
    double gen_s;         /* from the end of prefill to the last token */
    double total_s;       /* load_s plus the whole run */
    uint64_t seed;        /* the sampler's seed */
    generator_stop stop;
    const char *stop_string; /* the matched stop string (points into params) */
} generator_stats;

/*
 * Runs prompt[0..n_prompt) after whatever kv already holds, then generates.
 * stats (may be NULL) is filled even when the run fails part-way. The
 * prompt must fit in what kv has left (SW_ERANGE otherwise); generation
 * then goes on until a stop condition, GENERATOR_STOP_CTX at the latest.
 */
int generator_run(generator *g, kv_cache *kv, const int32_t *prompt, int n_prompt,
                  const generator_params *p, const generator_sink *sink, generator_stats *stats,
                  sw_err *err);

#endif
