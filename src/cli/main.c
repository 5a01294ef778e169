/* main.c — spillway's entry point: dispatches to a subcommand. */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spillway.h" /* SPILLWAY_VERSION */

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command g_commands[] = {
    {"run", cmd_run, "generate text from a prompt, streamed (--chat applies the chat template)"},
    {"serve", cmd_serve, "serve a model over HTTP: the OpenAI and Ollama APIs, /metrics"},
    {"bench", cmd_bench, "prompt and decode speed against the memory bandwidth bound"},
    {"inspect", cmd_inspect, "show a GGUF file's metadata and tensors (--json, --dump)"},
    {"trace", cmd_trace, "record a MoE model's expert routing as a trace (JSON lines)"},
    {"plan", cmd_plan, "what an expert cache of each size buys here: hit rates, tok/s"},
    {"models", cmd_models, "list the GGUF models on this machine (Ollama, HF cache, LM Studio)"},
    {"logits", cmd_logits, "write a model's logits for given token ids (float32)"},
    {"gen", cmd_gen, "write a GGUF with a real model's layout and random weights"},
    {"tokenize", cmd_tokenize, "print the token ids of a text under a model's tokenizer"},
    {"template", cmd_template, "render a conversation through a chat template, exactly"},
};

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("spillway: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

long long cli_parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    double mul = 1;
    switch (tolower((unsigned char)*end)) {
    case 0: break;
    case 'k': mul = 1024.0; end++; break;
    case 'm': mul = 1024.0 * 1024; end++; break;
    case 'g': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return -1;
    return (long long)(v * mul);
}

int cli_parse_kv_type(const char *s, quant_type *out)
{
    static const struct {
        const char *name;
        quant_type type;
    } kinds[] = {{"f32", QT_F32}, {"f16", QT_F16}, {"q8_0", QT_Q8_0}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(s, kinds[i].name)) {
            *out = kinds[i].type;
            return 0;
        }
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f, "spillway %s — run large language models larger than memory\n\n"
               "usage: spillway COMMAND [ARGS...]\n\ncommands:\n",
            SPILLWAY_VERSION);
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].help);
    fprintf(f, "\n'spillway COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("spillway %s\n", SPILLWAY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (!strcmp(argv[1], g_commands[i].name))
            return g_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "spillway: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
