/*
 * cmd_tokenize.c — `spillway tokenize MODEL.gguf [--ids] [--no-bos]
 *                   [--special] (-p TEXT | -f FILE)`
 *
 * Tokenizes text with the tokenizer a GGUF file carries (a model, or a
 * vocabulary-only file) and prints one "id -> 'piece'" line per token, or
 * with --ids the ids alone as a list, "[1, 15043, 3186]". BOS/EOS are added
 * as the model asks unless --no-bos; control tokens written in the text
 * ("<|im_start|>") are recognised only with --special.
 */
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "store/catalog.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: spillway tokenize MODEL [--ids] [--no-bos] [--special] (-p TEXT | -f FILE)\n"
    "\n"
    "MODEL is a GGUF file (a model or a vocabulary) or a model name.\n"
    "Prints the token ids of TEXT (or of FILE's contents, '-' for standard input)\n"
    "under the model's tokenizer, one \"id -> 'piece'\" line per token.\n"
    "  --ids       print only the ids, as [a, b, c]\n"
    "  --no-bos    do not add the BOS (and EOS) tokens the model asks for\n"
    "  --special   recognise control tokens such as <|im_start|> in the text\n";

/* Prints a piece readably: control characters and bytes that are not part
 * of a complete UTF-8 character are escaped. */
static void print_piece(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int r = utf8_next(s + i, n - i, &cp);
        if (r > 1) {
            fwrite(s + i, 1, (size_t)r, stdout);
            i += (size_t)r;
            continue;
        }
        unsigned char c = s[i++];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\\' || c == '\'')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7F)
            printf("\\x%02X", c);
        else
            putchar(c);
    }
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    bool ids_only = false;
    unsigned flags = TOK_ADD_BOS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--no-bos")) {
            flags &= ~(unsigned)TOK_ADD_BOS;
        } else if (!strcmp(a, "--special")) {
            flags |= TOK_PARSE_SPECIAL;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            text = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if (a[0] == '-' || model) {
            fprintf(stderr, "spillway tokenize: unexpected argument '%s'\n\n%s", a, usage_text);
            return 2;
        } else {
            model = a;
        }
    }
    if (!model || !text == !file) {
        fputs(usage_text, stderr);
        return 2;
    }

    int status = 1;
    gguf_ctx *g = NULL;
    tokenizer *tok = NULL;
    char *buf = NULL;
    int32_t *ids = NULL;
    char *path = NULL;
    size_t len = 0, n = 0;
    sw_err err = {0};
    if (file) {
        if (!(buf = cli_read_file(file, &len, &err))) {
            cli_fail("tokenize: %s", err.msg);
            goto done;
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    if (catalog_resolve(model, NULL, &path, &err) < 0) {
        cli_fail("tokenize: %s", err.msg);
        goto done;
    }
    if (gguf_open(path, GGUF_NO_DATA, &g, &err) || tok_load(g, &tok, &err) ||
        tok_encode(tok, text, len, flags, &ids, &n, &err)) {
        cli_fail("tokenize: %s: %s", model, err.msg);
        goto done;
    }

    if (ids_only) {
        putchar('[');
        for (size_t i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t m;
            const char *p = tok_piece(tok, ids[i], &m);
            printf("%6d -> '", ids[i]);
            print_piece(p, m);
            puts("'");
        }
    }
    status = fflush(stdout) ? 1 : 0;
done:
    free(path);
    free(ids);
    free(buf);
    tok_free(tok);
    gguf_close(g);
    return status;
}
