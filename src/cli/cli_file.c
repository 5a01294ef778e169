/*
 * cli_file.c — reading a whole input file (a prompt, a template, a text) for
 * the commands. One reader, so every command treats '-', errors and the
 * final newline the same way.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *cli_read_file(const char *path, size_t *len, sw_err *err)
{
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        sw_errf(err, SW_EIO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    bool failed = ferror(f);
    if (!is_stdin)
        fclose(f);
    if (!buf || failed) {
        sw_errf(err, buf ? SW_EIO : SW_ENOMEM, "cannot read '%s'%s", path,
                buf ? "" : ": out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

size_t cli_strip_final_newline(char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\n')
        n -= n > 1 && s[n - 2] == '\r' ? 2 : 1;
    s[n] = 0;
    return n;
}
