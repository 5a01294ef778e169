/*
 * catalog.c — turning a model name into a file: name matching, resolution,
 * split-model parts, and what a model's headers say (see catalog.h).
 */
#include "store/catalog_int.h"

#include "gguf/gguf.h"
#include "quant/quant.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define OLLAMA_DEFAULT_HOST "registry.ollama.ai"
#define OLLAMA_DEFAULT_NS "library"
#define OLLAMA_DEFAULT_TAG "latest"

size_t catalog_count(const catalog *c)
{
    return c->n;
}

const catalog_entry *catalog_at(const catalog *c, size_t i)
{
    return i < c->n ? &c->e[i] : NULL;
}

size_t catalog_n_roots(const catalog *c)
{
    return c->n_roots;
}

const catalog_root *catalog_root_at(const catalog *c, size_t i)
{
    return i < c->n_roots ? &c->roots[i] : NULL;
}

const char *catalog_source_name(catalog_source s)
{
    switch (s) {
    case CATALOG_OLLAMA: return "ollama";
    case CATALOG_HF: return "hf";
    case CATALOG_LMSTUDIO: return "lmstudio";
    case CATALOG_DIR: return "dir";
    case CATALOG_PATH: return "path";
    }
    return "?";
}

/* --- matching names -------------------------------------------------------- */

/* An Ollama name, [host/][namespace/]model[:tag][@digest], defaults filled. */
typedef struct oname {
    char repo[768]; /* host/namespace/model */
    char tag[256];
} oname;

static bool oname_parse(const char *q, oname *o)
{
    const char *scheme = strstr(q, "://");
    if (scheme)
        q = scheme + 3;
    char buf[768];
    size_t len = strcspn(q, "@");
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, q, len);
    buf[len] = 0;

    const char *slash = strrchr(buf, '/');
    char *colon = strchr(slash ? slash : buf, ':');
    snprintf(o->tag, sizeof o->tag, "%s", colon ? colon + 1 : OLLAMA_DEFAULT_TAG);
    if (colon)
        *colon = 0;
    if (!o->tag[0])
        return false;

    char *part[3];
    int n = 0;
    for (char *s = buf, *end;; s = end + 1) {
        end = strchr(s, '/');
        if (end)
            *end = 0;
        if (!*s || n == 3)
            return false;
        part[n++] = s;
        if (!end)
            break;
    }
    const char *host = n == 3 ? part[0] : OLLAMA_DEFAULT_HOST;
    const char *ns = n >= 2 ? part[n - 2] : OLLAMA_DEFAULT_NS;
    int w = snprintf(o->repo, sizeof o->repo, "%s/%s/%s", host, ns, part[n - 1]);
    return w > 0 && (size_t)w < sizeof o->repo;
}

/* A file inside a repository or --models-dir named by q: its path, with or
 * without ".gguf", or its model stem (split suffix removed) with or without. */
static bool file_matches(const char *file, const char *q)
{
    char stem[4096];
    if (!strcasecmp(q, file))
        return true;
    size_t n = strlen(file);
    if (n > 5 && strlen(q) == n - 5 && !strncasecmp(q, file, n - 5))
        return true;
    catalog_model_stem(file, stem, sizeof stem);
    size_t sn = strlen(stem);
    return !strcasecmp(q, stem) ||
           (!strncasecmp(q, stem, sn) && !strcasecmp(q + sn, ".gguf"));
}

/* TAG occurs in file as a word, case-insensitively: not preceded by a letter
 * or digit, not followed by one or by '_' (so Q4_K is not part of Q4_K_M). */
static bool tag_matches(const char *file, const char *tag)
{
    size_t tl = strlen(tag);
    if (!tl)
        return false;
    for (const char *p = file; *p; p++) {
        if (strncasecmp(p, tag, tl))
            continue;
        bool left = p == file || !isalnum((unsigned char)p[-1]);
        unsigned char r = (unsigned char)p[tl];
        bool right = !r || (!isalnum(r) && r != '_');
        if (left && right)
            return true;
    }
    return false;
}

/* hf and lmstudio: org/repo, org/repo:TAG, org/repo/FILE. */
static bool repo_matches(const catalog_entry *e, const char *q)
{
    if (!strncasecmp(q, "hf.co/", 6))
        q += 6;
    else if (!strncasecmp(q, "huggingface.co/", 15))
        q += 15;
    size_t rl = strlen(e->repo);
    if (strncasecmp(q, e->repo, rl))
        return false;
    const char *rest = q + rl;
    if (!*rest)
        return true;
    if (*rest == ':')
        return tag_matches(e->file, rest + 1);
    return *rest == '/' && file_matches(e->file, rest + 1);
}

static bool entry_matches(const catalog_entry *e, const char *q, const oname *o, bool o_ok)
{
    switch (e->source) {
    case CATALOG_OLLAMA:
        return o_ok && !strcasecmp(o->repo, e->repo) && !strcasecmp(o->tag, e->file);
    case CATALOG_HF:
    case CATALOG_LMSTUDIO:
        return repo_matches(e, q);
    case CATALOG_DIR:
        return file_matches(e->file, q);
    case CATALOG_PATH:
        break;
    }
    return false;
}

/* --- finding ----------------------------------------------------------------- */

/* Appends to err's message at *len, as far as it fits. */
static void __attribute__((format(printf, 3, 4)))
err_append(sw_err *err, size_t *len, const char *fmt, ...)
{
    if (*len >= sizeof err->msg)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(err->msg + *len, sizeof err->msg - *len, fmt, ap);
    va_end(ap);
    if (w > 0)
        *len += (size_t)w;
}

static int not_found(const catalog *c, const char *name, sw_err *err)
{
    if (!err)
        return SW_ENOTFOUND;
    sw_errf(err, SW_ENOTFOUND, "model '%s' not found: it is not a file, and no model of that "
                               "name is in ", name);
    size_t len = strlen(err->msg);
    for (size_t i = 0; i < c->n_roots; i++) {
        const catalog_root *r = &c->roots[i];
        err_append(err, &len, "%s%s %s%s", i ? ", " : "", catalog_source_name(r->source),
                   r->path, r->present ? "" : " (absent)");
    }
    if (!c->n_roots)
        err_append(err, &len, "any store");
    return SW_ENOTFOUND;
}

static int ambiguous(const catalog *c, const char *name, const size_t *hits, size_t n,
                     sw_err *err)
{
    if (!err)
        return SW_EINVAL;
    sw_errf(err, SW_EINVAL, "model name '%s' is ambiguous; %zu models answer to it: ", name, n);
    size_t len = strlen(err->msg);
    for (size_t i = 0; i < n; i++) {
        const catalog_entry *e = &c->e[hits[i]];
        err_append(err, &len, "%s%s (%s, %s)", i ? "; " : "", e->name,
                   catalog_source_name(e->source), e->path);
    }
    err_append(err, &len, "; give one of these names, or a path");
    if (len >= sizeof err->msg - 1)
        memcpy(err->msg + sizeof err->msg - 5, "...", 4);
    return SW_EINVAL;
}

/* True if entries i and j are the same file on disk. */
static bool same_file(const catalog_entry *a, const catalog_entry *b)
{
    struct stat sa, sb;
    if (stat(a->path, &sa) != 0 || stat(b->path, &sb) != 0)
        return !strcmp(a->path, b->path);
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int catalog_find(const catalog *c, const char *name, size_t *index, sw_err *err)
{
    oname o;
    bool o_ok = oname_parse(name, &o);
    size_t *hits = malloc((c->n ? c->n : 1) * sizeof *hits), n = 0;
    if (!hits)
        return sw_errf(err, SW_ENOMEM, "model catalog: out of memory");
    for (size_t i = 0; i < c->n; i++) {
        if (!entry_matches(&c->e[i], name, &o, o_ok))
            continue;
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = same_file(&c->e[hits[j]], &c->e[i]);
        if (!dup)
            hits[n++] = i;
    }
    int rc = 0;
    if (n == 1)
        *index = hits[0];
    else if (n == 0)
        rc = not_found(c, name, err);
    else
        rc = ambiguous(c, name, hits, n, err);
    free(hits);
    return rc;
}

/* --- split models -------------------------------------------------------------- */

int catalog_split_info(const char *path, int *count)
{
    int n = 1, no = catalog_split_parse(path, NULL, &n);
    if (count)
        *count = no ? n : 1;
    return no;
}

void catalog_free_parts(char **parts, int n_parts)
{
    if (!parts)
        return;
    for (int i = 0; i < n_parts; i++)
        free(parts[i]);
    free(parts);
}

/* The paths of all parts of the model `path` belongs to; each must be a
 * file. */
static int parts_list(const char *path, char ***out, int *n_out, sw_err *err)
{
    *out = NULL;
    *n_out = 0;
    int count, no = catalog_split_info(path, &count);
    char **parts = calloc((size_t)count, sizeof *parts);
    if (!parts)
        return sw_errf(err, SW_ENOMEM, "model catalog: out of memory");
    for (int i = 0; i < count; i++) {
        parts[i] = no ? catalog_split_sibling(path, i + 1, count) : strdup(path);
        if (!parts[i]) {
            catalog_free_parts(parts, count);
            return sw_errf(err, SW_ENOMEM, "model catalog: out of memory");
        }
    }
    for (int i = 0; i < count; i++) {
        struct stat st;
        if (stat(parts[i], &st) == 0 && S_ISREG(st.st_mode))
            continue;
        int rc = no ? sw_errf(err, SW_ENOTFOUND,
                              "split model '%s' has %d parts, but part %d (%s) is missing",
                              parts[0], count, i + 1, parts[i])
                    : sw_errf(err, SW_ENOTFOUND, "model file '%s' is missing", path);
        catalog_free_parts(parts, count);
        return rc;
    }
    *out = parts;
    *n_out = count;
    return 0;
}

/* What part i (0-based) of count says about itself must agree. */
static int part_check(const gguf_ctx *g, int i, int count, sw_err *err)
{
    uint32_t v;
    if (count == 1 && !gguf_find_kv(g, "split.count"))
        return 0;
    if (gguf_get_u32(g, "split.count", &v, NULL) == 0 && v != (uint32_t)count)
        return sw_errf(err, SW_EFORMAT, "'%s' says the model has %u parts, its name %d",
                       gguf_path(g), v, count);
    if (gguf_get_u32(g, "split.no", &v, NULL) == 0 && v != (uint32_t)i)
        return sw_errf(err, SW_EFORMAT, "'%s' says it is part %u of the model, its name %d",
                       gguf_path(g), v + 1, i + 1);
    return 0;
}

int catalog_split_parts(const char *path, char ***parts, int *n_parts, sw_err *err)
{
    int rc = parts_list(path, parts, n_parts, err);
    if (rc < 0 || *n_parts == 1)
        return rc;
    for (int i = 0; i < *n_parts && rc == 0; i++) {
        gguf_ctx *g;
        if ((rc = gguf_open((*parts)[i], GGUF_NO_DATA, &g, err)) < 0)
            break;
        rc = part_check(g, i, *n_parts, err);
        gguf_close(g);
    }
    if (rc < 0) {
        catalog_free_parts(*parts, *n_parts);
        *parts = NULL;
        *n_parts = 0;
    }
    return rc;
}

/* --- resolving -------------------------------------------------------------------- */

/* The model file `path` stands for (a split's first part), checked. */
static int resolve_file(const char *path, char **out, sw_err *err)
{
    char **parts;
    int n;
    int rc = catalog_split_parts(path, &parts, &n, err);
    if (rc < 0)
        return rc;
    *out = parts[0];
    parts[0] = NULL;
    catalog_free_parts(parts, n);
    return 0;
}

int catalog_resolve(const char *name_or_path, const catalog_opts *opts, char **path_out,
                    sw_err *err)
{
    *path_out = NULL;
    if (!name_or_path || !*name_or_path)
        return sw_errf(err, SW_EINVAL, "no model given");
    struct stat st;
    bool exists = stat(name_or_path, &st) == 0, is_dir = exists && S_ISDIR(st.st_mode);
    if (exists && !is_dir)
        return resolve_file(name_or_path, path_out, err);

    catalog *c;
    const char *dirs[1] = {name_or_path};
    catalog_opts only = {dirs, 1};
    int rc = is_dir ? catalog_scan_roots(&only, false, &c, err)
                    : catalog_scan(opts, &c, err);
    if (rc < 0)
        return rc;
    size_t idx = 0;
    if (is_dir && c->n == 0)
        rc = sw_errf(err, SW_ENOTFOUND, "no GGUF model in directory '%s'", name_or_path);
    else if (is_dir && c->n > 1) {
        size_t *all = malloc(c->n * sizeof *all);
        for (size_t i = 0; all && i < c->n; i++)
            all[i] = i;
        rc = all ? ambiguous(c, name_or_path, all, c->n, err)
                 : sw_errf(err, SW_ENOMEM, "model catalog: out of memory");
        free(all);
    } else if (!is_dir)
        rc = catalog_find(c, name_or_path, &idx, err);
    if (rc == 0) {
        const catalog_entry *e = &c->e[idx];
        if ((rc = resolve_file(e->path, path_out, err)) < 0)
            sw_err_prefix(err, "model '%s' (%s)", e->name, catalog_source_name(e->source));
    }
    catalog_free(c);
    return rc;
}

/* --- headers -------------------------------------------------------------------- */

/* llama.cpp's llama_ftype values, named as its quantize tool names them. */
static const char *const k_ftype_names[] = {
    [0] = "F32",       [1] = "F16",       [2] = "Q4_0",      [3] = "Q4_1",
    [7] = "Q8_0",      [8] = "Q5_0",      [9] = "Q5_1",      [10] = "Q2_K",
    [11] = "Q3_K_S",   [12] = "Q3_K_M",   [13] = "Q3_K_L",   [14] = "Q4_K_S",
    [15] = "Q4_K_M",   [16] = "Q5_K_S",   [17] = "Q5_K_M",   [18] = "Q6_K",
    [19] = "IQ2_XXS",  [20] = "IQ2_XS",   [21] = "Q2_K_S",   [22] = "IQ3_XS",
    [23] = "IQ3_XXS",  [24] = "IQ1_S",    [25] = "IQ4_NL",   [26] = "IQ3_S",
    [27] = "IQ3_M",    [28] = "IQ2_S",    [29] = "IQ2_M",    [30] = "IQ4_XS",
    [31] = "IQ1_M",    [32] = "BF16",     [33] = "Q4_0_4_4", [34] = "Q4_0_4_8",
    [35] = "Q4_0_8_8", [36] = "TQ1_0",    [37] = "TQ2_0",    [38] = "MXFP4_MOE",
};

#define FTYPE_GUESSED 1024u /* llama.cpp's flag: not from the file */

const char *catalog_ftype_name(uint32_t ftype)
{
    ftype &= ~FTYPE_GUESSED;
    if (ftype < sizeof k_ftype_names / sizeof k_ftype_names[0])
        return k_ftype_names[ftype];
    return NULL;
}

int catalog_read_info(const catalog_entry *e, catalog_info *info, sw_err *err)
{
    memset(info, 0, sizeof *info);
    snprintf(info->arch, sizeof info->arch, "?");
    snprintf(info->quant, sizeof info->quant, "?");
    char **parts;
    int n;
    int rc = parts_list(e->path, &parts, &n, err);
    if (rc < 0)
        return rc;
    uint64_t by_type[QT_COUNT] = {0};
    uint32_t ftype = UINT32_MAX;
    for (int i = 0; i < n && rc == 0; i++) {
        gguf_ctx *g;
        if ((rc = gguf_open(parts[i], GGUF_NO_DATA, &g, err)) < 0)
            break;
        if ((rc = part_check(g, i, n, err)) == 0 && i == 0) {
            const char *arch;
            if (gguf_get_str(g, "general.architecture", &arch, NULL) == 0)
                snprintf(info->arch, sizeof info->arch, "%s", arch);
            if (gguf_get_u32(g, "general.file_type", &ftype, NULL) < 0)
                ftype = UINT32_MAX;
        }
        for (int64_t t = 0; t < gguf_n_tensors(g); t++) {
            const gguf_tensor *ti = gguf_tensor_at(g, t);
            info->n_params += (uint64_t)ti->n_elements;
            if (ti->type >= 0 && ti->type < QT_COUNT && ti->n_dims >= 2)
                by_type[ti->type] += (uint64_t)ti->n_elements;
        }
        gguf_close(g);
    }
    catalog_free_parts(parts, n);
    if (rc < 0)
        return rc;
    const char *fname = ftype != UINT32_MAX ? catalog_ftype_name(ftype) : NULL;
    if (fname) {
        snprintf(info->quant, sizeof info->quant, "%s", fname);
    } else {
        int best = -1;
        for (int t = 0; t < QT_COUNT; t++)
            if (by_type[t] && (best < 0 || by_type[t] > by_type[best]))
                best = t;
        if (best >= 0)
            snprintf(info->quant, sizeof info->quant, "%s", quant_name(best));
    }
    return 0;
}
