/*
 * cmd_template.c — `spillway template`: render a conversation through a
 * chat template and print the prompt exactly (no newline added).
 *
 *   spillway template (MODEL.gguf | FILE.jinja) --messages FILE.json
 *       [--tools FILE.json] [--no-generation-prompt] [--bos TEXT] [--eos TEXT]
 *       [--var NAME=JSON]...
 *
 * From a GGUF file the template is tokenizer.chat_template and bos/eos are
 * the tokens tokenizer.ggml.bos_token_id / eos_token_id name; from a bare
 * template they are empty unless given. SPILLWAY_NOW (Unix seconds) fixes
 * the clock strftime_now() reads, for reproducible output.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gguf/gguf.h"
#include "text/chat.h"

static void template_usage(FILE *f)
{
    fprintf(f, "usage: spillway template (MODEL.gguf | FILE.jinja) --messages FILE.json\n"
               "           [--tools FILE.json] [--no-generation-prompt] [--bos TEXT] [--eos TEXT]\n"
               "           [--var NAME=JSON]...\n\n"
               "Renders the conversation in FILE.json (a list of messages) through the chat\n"
               "template of a GGUF model or of a Jinja file, and prints the prompt exactly.\n"
               "--var sets another template variable (e.g. --var enable_thinking=false).\n"
               "SPILLWAY_NOW=SECONDS fixes the date strftime_now() sees.\n");
}

static bool is_gguf(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f)
        fclose(f);
    return yes;
}

/* The template of a GGUF model or of a Jinja file, compiled. */
static int load_template(const char *path, chat_template *ct, sw_err *err)
{
    int rc;
    if (is_gguf(path)) {
        gguf_ctx *g;
        if ((rc = gguf_open(path, GGUF_NO_DATA, &g, err)) < 0)
            return rc;
        rc = chat_template_from_gguf(g, ct, err);
        gguf_close(g);
    } else {
        size_t len;
        char *text = cli_read_file(path, &len, err);
        if (!text)
            return SW_EIO;
        rc = jinja_parse(text, len, &ct->tmpl, err);
        free(text);
    }
    if (rc < 0)
        sw_err_prefix(err, "%s", path);
    return rc;
}

static json_t *load_json(const char *path, sw_err *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_DECODE_ANY, &je);
    if (!j)
        sw_errf(err, SW_EFORMAT, "%s: line %d, column %d: %s", path, je.line, je.column, je.text);
    return j;
}

/* --var NAME=JSON (a value that is not JSON is taken as a string). */
static int add_var(json_t *vars, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    char *name = strndup(arg, (size_t)(eq - arg));
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_string(eq + 1);
    int rc = name && v ? json_object_set_new(vars, name, v) : -1;
    free(name);
    return rc;
}

int cmd_template(int argc, char **argv)
{
    const char *path = NULL, *messages_path = NULL, *tools_path = NULL;
    const char *bos = NULL, *eos = NULL;
    bool gen_prompt = true;
    json_t *extra = json_object();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            template_usage(stdout);
            json_decref(extra);
            return 0;
        } else if (!strcmp(a, "--messages") && has_val) {
            messages_path = argv[++i];
        } else if (!strcmp(a, "--tools") && has_val) {
            tools_path = argv[++i];
        } else if (!strcmp(a, "--bos") && has_val) {
            bos = argv[++i];
        } else if (!strcmp(a, "--eos") && has_val) {
            eos = argv[++i];
        } else if (!strcmp(a, "--var") && has_val) {
            if (add_var(extra, argv[++i]) < 0) {
                fprintf(stderr, "spillway template: --var wants NAME=JSON, got '%s'\n", argv[i]);
                json_decref(extra);
                return 2;
            }
        } else if (!strcmp(a, "--no-generation-prompt")) {
            gen_prompt = false;
        } else if (a[0] != '-' && !path) {
            path = a;
        } else {
            fprintf(stderr, "spillway template: unexpected argument '%s'\n\n", a);
            template_usage(stderr);
            json_decref(extra);
            return 2;
        }
    }
    if (!path || !messages_path) {
        template_usage(stderr);
        json_decref(extra);
        return 2;
    }

    sw_err err = {0};
    chat_template ct = {0};
    json_t *messages = NULL, *tools = NULL;
    char *out = NULL;
    size_t out_len = 0;
    int rc = load_template(path, &ct, &err);
    if (rc == 0 && !(messages = load_json(messages_path, &err)))
        rc = SW_EFORMAT;
    if (rc == 0 && tools_path && !(tools = load_json(tools_path, &err)))
        rc = SW_EFORMAT;
    if (rc == 0) {
        jinja_opts opts = {0};
        const char *now = getenv("SPILLWAY_NOW");
        if (now && *now)
            opts.now = strtoll(now, NULL, 10);
        chat_params p = {
            .messages = messages,
            .tools = tools,
            .add_generation_prompt = gen_prompt,
            .bos_token = bos ? bos : ct.bos_token,
            .eos_token = eos ? eos : ct.eos_token,
            .extra = extra,
        };
        if ((rc = chat_render(ct.tmpl, &p, &opts, &out, &out_len, &err)) < 0)
            sw_err_prefix(&err, "%s", path);
    }
    if (rc == 0 && (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0))
        rc = sw_errf(&err, SW_EIO, "writing the output failed");
    if (rc < 0)
        fprintf(stderr, "spillway template: %s\n", err.msg);
    free(out);
    chat_template_free(&ct);
    json_decref(messages);
    json_decref(tools);
    json_decref(extra);
    return rc < 0 ? 1 : 0;
}
