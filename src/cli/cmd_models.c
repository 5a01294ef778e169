/*
 * cmd_models.c — `spillway models [--json] [--models-dir DIR]... [--resolve NAME]`
 *
 * Lists the GGUF models already on this machine (Ollama's store, the Hugging
 * Face cache, LM Studio, --models-dir trees) with the name each resolves by,
 * architecture, parameter count, quantization, size on disk and source.
 * Only headers are read. --resolve prints the file a name or path stands for,
 * as every command taking a MODEL resolves it.
 */
#include "cli/cli.h"
#include "store/catalog.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: spillway models [--json] [--models-dir DIR]...\n"
    "       spillway models --resolve NAME [--models-dir DIR]...\n"
    "\n"
    "Lists the GGUF models on this machine: Ollama's store ($OLLAMA_MODELS or\n"
    "~/.ollama/models), the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or\n"
    "~/.cache/huggingface/hub), LM Studio (~/.lmstudio/models) and each DIR.\n"
    "Any command's MODEL may be one of the names listed.\n"
    "  --json             print one JSON object instead of a table\n"
    "  --models-dir DIR   also search DIR, recursively (repeatable)\n"
    "  --resolve NAME     print the file NAME resolves to\n";

/* One listed model: its entry and what its headers say. */
typedef struct row {
    const catalog_entry *e;
    catalog_info info;
    int rc;              /* reading the headers: 0 or SW_E* */
    char error[512];
    char params[16], size[16], note[600];
} row;

static void human_params(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000000ull)
        snprintf(buf, len, "%.1fT", (double)n / 1e12);
    else if (n >= 1000000000ull)
        snprintf(buf, len, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, len, "%.1fM", (double)n / 1e6);
    else if (n >= 1000ull)
        snprintf(buf, len, "%.1fK", (double)n / 1e3);
    else
        snprintf(buf, len, "%" PRIu64, n);
}

/* Decimal units, as Ollama and the Hugging Face hub show sizes. */
static void human_size(uint64_t n, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void row_fill(row *r, const catalog_entry *e)
{
    memset(r, 0, sizeof *r);
    r->e = e;
    sw_err err = {0};
    if (e->n_missing == 0) {
        r->rc = catalog_read_info(e, &r->info, &err);
        if (r->rc < 0)
            snprintf(r->error, sizeof r->error, "%s", err.msg);
    } else {
        catalog_read_info(e, &r->info, NULL); /* fills "?" */
        r->rc = SW_ENOTFOUND;
        if (e->n_parts > 1)
            snprintf(r->error, sizeof r->error, "%d of %d parts missing", e->n_missing,
                     e->n_parts);
        else
            snprintf(r->error, sizeof r->error, "file missing: %s", e->path);
    }
    if (r->rc == 0)
        human_params(r->info.n_params, r->params, sizeof r->params);
    else
        snprintf(r->params, sizeof r->params, "?");
    human_size(e->size, r->size, sizeof r->size);
    if (r->rc < 0)
        snprintf(r->note, sizeof r->note, "  (%s)", r->error);
}

static void print_searched(const catalog *c, FILE *f)
{
    for (size_t i = 0; i < catalog_n_roots(c); i++) {
        const catalog_root *r = catalog_root_at(c, i);
        fprintf(f, "  %-9s %s%s\n", catalog_source_name(r->source), r->path,
                r->present ? "" : " (absent)");
    }
}

static void print_table(const catalog *c, const row *rows, size_t n)
{
    if (!n) {
        printf("no GGUF models found; searched:\n");
        print_searched(c, stdout);
        return;
    }
    int wn = 4, wa = 4, wp = 6, wq = 5, ws = 4;
#define WIDEN(w, s) do { int l_ = (int)strlen(s); if (l_ > (w)) (w) = l_; } while (0)
    for (size_t i = 0; i < n; i++) {
        WIDEN(wn, rows[i].e->name);
        WIDEN(wa, rows[i].info.arch);
        WIDEN(wp, rows[i].params);
        WIDEN(wq, rows[i].info.quant);
        WIDEN(ws, rows[i].size);
    }
#undef WIDEN
    printf("%-*s  %-*s  %*s  %-*s  %*s  %s\n", wn, "NAME", wa, "ARCH", wp, "PARAMS", wq,
           "QUANT", ws, "SIZE", "SOURCE");
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("%-*s  %-*s  %*s  %-*s  %*s  %s%s\n", wn, r->e->name, wa, r->info.arch, wp,
               r->params, wq, r->info.quant, ws, r->size, catalog_source_name(r->e->source),
               r->note);
    }
}

static int print_json(const catalog *c, const row *rows, size_t n)
{
    json_t *root = json_object(), *models = json_array(), *searched = json_array();
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        json_t *m = json_object();
        json_object_set_new(m, "name", json_string(r->e->name));
        json_object_set_new(m, "path", json_string(r->e->path));
        json_object_set_new(m, "source", json_string(catalog_source_name(r->e->source)));
        json_object_set_new(m, "architecture",
                            r->rc == 0 ? json_string(r->info.arch) : json_null());
        json_object_set_new(m, "parameters",
                            r->rc == 0 ? json_integer((json_int_t)r->info.n_params)
                                       : json_null());
        json_object_set_new(m, "quantization",
                            r->rc == 0 ? json_string(r->info.quant) : json_null());
        json_object_set_new(m, "size", json_integer((json_int_t)r->e->size));
        json_object_set_new(m, "parts", json_integer(r->e->n_parts));
        json_object_set_new(m, "missing_parts", json_integer(r->e->n_missing));
        if (r->rc < 0)
            json_object_set_new(m, "error", json_string(r->error));
        json_array_append_new(models, m);
    }
    for (size_t i = 0; i < catalog_n_roots(c); i++) {
        const catalog_root *r = catalog_root_at(c, i);
        json_t *s = json_object();
        json_object_set_new(s, "source", json_string(catalog_source_name(r->source)));
        json_object_set_new(s, "path", json_string(r->path));
        json_object_set_new(s, "present", json_boolean(r->present));
        json_array_append_new(searched, s);
    }
    json_object_set_new(root, "models", models);
    json_object_set_new(root, "searched", searched);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
    return rc == 0 ? 0 : cli_fail("models: cannot write JSON");
}

int cmd_models(int argc, char **argv)
{
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    const char *resolve = NULL;
    int n_dirs = 0, json = 0, status = 0;
    if (!dirs)
        return cli_fail("models: out of memory");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--models-dir") && i + 1 < argc)
            dirs[n_dirs++] = argv[++i];
        else if (!strncmp(argv[i], "--models-dir=", 13))
            dirs[n_dirs++] = argv[i] + 13;
        else if (!strcmp(argv[i], "--resolve") && i + 1 < argc)
            resolve = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            goto out;
        } else {
            fprintf(stderr, "spillway models: unexpected argument '%s'\n%s", argv[i],
                    usage_text);
            status = 2;
            goto out;
        }
    }
    catalog_opts opts = {dirs, n_dirs};
    sw_err err = {0};
    if (resolve) {
        char *path;
        if (catalog_resolve(resolve, &opts, &path, &err) < 0) {
            status = cli_fail("%s", err.msg);
        } else {
            printf("%s\n", path);
            free(path);
        }
        goto out;
    }
    catalog *c;
    if (catalog_scan(&opts, &c, &err) < 0) {
        status = cli_fail("models: %s", err.msg);
        goto out;
    }
    size_t n = catalog_count(c);
    row *rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows) {
        catalog_free(c);
        status = cli_fail("models: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        row_fill(&rows[i], catalog_at(c, i));
    if (json)
        status = print_json(c, rows, n);
    else
        print_table(c, rows, n);
    free(rows);
    catalog_free(c);
out:
    free(dirs);
    return status;
}
