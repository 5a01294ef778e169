/*
 * cli.h — the spillway command-line tool. Each subcommand lives in its own
 * src/cli/cmd_<name>.c and is listed once in main.c's table. A command
 * returns the process exit status: 0 success, 1 failure (after printing
 * "spillway <cmd>: <message>" to stderr), 2 usage error.
 */
#ifndef SW_CLI_H
#define SW_CLI_H

#include <stddef.h>

#include "quant/quant.h"
#include "util/err.h"

int cmd_inspect(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_trace(int argc, char **argv);

/* Prints "spillway: <msg>" to stderr and returns 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses a decimal integer in [lo, hi] into *out: 0, or -1 if invalid. */
int cli_parse_int(const char *s, long lo, long hi, int *out);
/* Parses "16G", "512MiB", "1.5g", "4096" (bytes); returns -1 if invalid. */
long long cli_parse_size(const char *s);
/* Parses a --kv-type value: "f32", "f16" or "q8_0". Returns -1 if invalid. */
int cli_parse_kv_type(const char *s, quant_type *out);

/* All of path ('-': standard input), NUL-terminated (the NUL not counted
 * in *len; len may be NULL); NULL with err on failure. Free it. */
char *cli_read_file(const char *path, size_t *len, sw_err *err);
/* Drops one final "\n" or "\r\n" (a prompt file or a piped line ends with
 * one that is not part of the prompt); returns the new length. */
size_t cli_strip_final_newline(char *s, size_t n);

#endif
