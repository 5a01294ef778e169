/* chat.c — the variables of a chat-template render, and a model's template
 * from its GGUF metadata (see chat.h). */
#include "text/chat.h"

#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int chat_render(const jinja_tmpl *t, const chat_params *p, const jinja_opts *opts, char **out,
                size_t *out_len, sw_err *err)
{
    *out = NULL;
    if (!json_is_array(p->messages))
        return sw_errf(err, SW_EINVAL, "messages must be a JSON array");
    if (p->tools && !json_is_array(p->tools) && !json_is_null(p->tools))
        return sw_errf(err, SW_EINVAL, "tools must be a JSON array");
    if (p->extra && !json_is_object(p->extra))
        return sw_errf(err, SW_EINVAL, "extra template variables must be a JSON object");
    json_t *vars = json_object();
    if (!vars)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    int bad = 0;
    bad |= json_object_set(vars, "messages", (json_t *)p->messages);
    bad |= json_object_set_new(vars, "tools", p->tools ? json_incref((json_t *)p->tools)
                                                        : json_null());
    bad |= json_object_set_new(vars, "documents", json_null());
    bad |= json_object_set_new(vars, "add_generation_prompt",
                               json_boolean(p->add_generation_prompt));
    bad |= json_object_set_new(vars, "bos_token", json_string(p->bos_token ? p->bos_token : ""));
    bad |= json_object_set_new(vars, "eos_token", json_string(p->eos_token ? p->eos_token : ""));
    if (p->extra)
        bad |= json_object_update(vars, (json_t *)p->extra);
    int rc = bad ? sw_errf(err, SW_EINVAL, "could not build the template variables "
                                           "(bos/eos token not valid UTF-8?)")
                 : jinja_render(t, vars, opts, out, out_len, err);
    json_decref(vars);
    return rc;
}

/* The piece of the token id key names (e.g. tokenizer.ggml.bos_token_id):
 * a new string, "" when the key or the token is missing, NULL when out of
 * memory. */
static char *token_piece(const gguf_ctx *g, const char *key)
{
    uint32_t id;
    const gguf_str *toks;
    uint64_t n;
    if (gguf_get_u32(g, key, &id, NULL) < 0 ||
        gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n, NULL) < 0 || id >= n)
        return strdup("");
    return strndup(toks[id].ptr, (size_t)toks[id].len);
}

int chat_template_from_gguf(const gguf_ctx *g, chat_template *out, sw_err *err)
{
    memset(out, 0, sizeof *out);
    const gguf_kv *kv = gguf_find_kv(g, "tokenizer.chat_template");
    if (!kv)
        return sw_errf(err, SW_ENOTFOUND, "the model has no chat template "
                                          "(tokenizer.chat_template)");
    if (kv->type != GGUF_TYPE_STRING)
        return sw_errf(err, SW_ETYPE, "tokenizer.chat_template is not a string");
    int rc = jinja_parse(kv->v.str.ptr, (size_t)kv->v.str.len, &out->tmpl, err);
    if (rc < 0) {
        sw_err_prefix(err, "tokenizer.chat_template");
        return rc;
    }
    out->bos_token = token_piece(g, "tokenizer.ggml.bos_token_id");
    out->eos_token = token_piece(g, "tokenizer.ggml.eos_token_id");
    if (!out->bos_token || !out->eos_token) {
        chat_template_free(out);
        return sw_errf(err, SW_ENOMEM, "out of memory");
    }
    return 0;
}

void chat_template_free(chat_template *ct)
{
    jinja_free(ct->tmpl);
    free(ct->bos_token);
    free(ct->eos_token);
    memset(ct, 0, sizeof *ct);
}
