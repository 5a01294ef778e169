/*
 * chat.h — rendering a conversation through a model's chat template, with
 * the variables Hugging Face transformers' apply_chat_template() passes:
 *
 *   messages               the conversation (a JSON array of message objects:
 *                          role, content, tool_calls, tool_call_id, ...)
 *   tools                  the tool definitions, or None when there are none
 *   documents              None
 *   add_generation_prompt  whether to open the assistant's turn
 *   bos_token, eos_token   the tokenizer's special tokens ("" when unknown)
 *
 * plus any extra variables the caller names (enable_thinking, ...), which
 * override these. The template interpreter itself is jinja.h.
 */
#ifndef SW_CHAT_H
#define SW_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "gguf/gguf.h"
#include "text/jinja.h"
#include "util/err.h"

typedef struct chat_params {
    const json_t *messages;     /* array (required) */
    const json_t *tools;        /* array, or NULL for none */
    bool add_generation_prompt;
    const char *bos_token;      /* NULL: "" */
    const char *eos_token;      /* NULL: "" */
    const json_t *extra;        /* object of more variables, or NULL */
} chat_params;

/* Renders p through t into a malloc'd string (see jinja_render). */
int chat_render(const jinja_tmpl *t, const chat_params *p, const jinja_opts *opts, char **out,
                size_t *out_len, sw_err *err);

/* A model's chat template, compiled, with the special tokens it is rendered
 * with: tokenizer.chat_template, and the pieces of tokenizer.ggml.bos_token_id
 * and eos_token_id in tokenizer.ggml.tokens ("" where the model has none). */
typedef struct chat_template {
    jinja_tmpl *tmpl;
    char *bos_token, *eos_token;
} chat_template;

/* SW_ENOTFOUND when the file has no chat template. */
int chat_template_from_gguf(const gguf_ctx *g, chat_template *out, sw_err *err);
void chat_template_free(chat_template *ct);

#endif
