/*
 * catalog_scan.c — walking the model stores: Ollama's manifests, the Hugging
 * Face cache's snapshots, LM Studio's folders and --models-dir trees, into
 * one list of catalog entries (see catalog.h for the layouts).
 *
 * A store that is absent is simply empty; a directory or manifest we cannot
 * read is skipped, never fatal; only running out of memory fails a scan.
 */
#include "store/catalog_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define WALK_MAX_DEPTH 8               /* directory levels below a root */
#define MANIFEST_MAX_BYTES (1 << 20)   /* Ollama manifests are ~1 KB */
#define OLLAMA_DEFAULT_HOST "registry.ollama.ai"
#define OLLAMA_DEFAULT_NS "library"
#define OLLAMA_MODEL_MEDIA "application/vnd.ollama.image.model"

static int oom(sw_err *err)
{
    return sw_errf(err, SW_ENOMEM, "model catalog: out of memory");
}

/* Formats a path into buf[PATH_MAX]; false if it does not fit, and the
 * caller skips what it names (no such path can be opened anyway). */
static bool __attribute__((format(printf, 2, 3))) pathf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, PATH_MAX, fmt, ap);
    va_end(ap);
    return n >= 0 && n < PATH_MAX;
}

/* --- split names ----------------------------------------------------------- */

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int catalog_split_parse(const char *name, size_t *prefix_len, int *count)
{
    /* "-NNNNN-of-NNNNN.gguf" is 20 bytes, after a non-empty prefix */
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    size_t len = strlen(base);
    if (len <= 20)
        return 0;
    const char *s = base + len - 20;
    if (s[0] != '-' || !all_digits(s + 1, 5) || strncmp(s + 6, "-of-", 4) ||
        !all_digits(s + 10, 5) || strcasecmp(s + 15, ".gguf"))
        return 0;
    int no = atoi(s + 1), n = atoi(s + 10);
    if (no < 1 || n < 1 || no > n)
        return 0;
    if (prefix_len)
        *prefix_len = (size_t)(s - name);
    if (count)
        *count = n;
    return no;
}

char *catalog_split_sibling(const char *part_path, int no, int count)
{
    size_t prefix;
    if (!catalog_split_parse(part_path, &prefix, NULL))
        return NULL;
    char *out;
    /* keep the extension's spelling */
    if (asprintf(&out, "%.*s-%05d-of-%05d%s", (int)prefix, part_path, no, count,
                 part_path + strlen(part_path) - 5) < 0)
        return NULL;
    return out;
}

void catalog_model_stem(const char *file, char *buf, size_t len)
{
    size_t n = strlen(file), prefix;
    if (catalog_split_parse(file, &prefix, NULL))
        n = prefix;
    else if (n > 5 && !strcasecmp(file + n - 5, ".gguf"))
        n -= 5;
    snprintf(buf, len, "%.*s", (int)n, file);
}

/* --- entries ------------------------------------------------------------- */

static bool is_file(const char *path, uint64_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    if (size)
        *size = (uint64_t)st.st_size;
    return true;
}

/* Adds an entry; counts its parts and their bytes on disk. */
static int entry_add(catalog *c, catalog_source src, const char *name, const char *path,
                     const char *repo, const char *file, sw_err *err)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 32;
        catalog_entry *ne = realloc(c->e, nc * sizeof *ne);
        if (!ne)
            return oom(err);
        c->e = ne;
        c->cap = nc;
    }
    catalog_entry *e = &c->e[c->n];
    memset(e, 0, sizeof *e);
    e->source = src;
    e->name = strdup(name);
    e->path = strdup(path);
    e->repo = repo ? strdup(repo) : NULL;
    e->file = file ? strdup(file) : NULL;
    c->n++; /* from here catalog_free releases whatever was allocated */
    if (!e->name || !e->path || (repo && !e->repo) || (file && !e->file))
        return oom(err);
    int count = 1;
    e->n_parts = catalog_split_parse(path, NULL, &count) ? count : 1;
    for (int i = 1; i <= e->n_parts; i++) {
        char *part = e->n_parts > 1 ? catalog_split_sibling(path, i, count) : e->path;
        if (!part)
            return oom(err);
        uint64_t size;
        if (is_file(part, &size))
            e->size += size;
        else
            e->n_missing++;
        if (part != e->path)
            free(part);
    }
    return 0;
}

static int root_add(catalog *c, catalog_source src, const char *path, sw_err *err)
{
    if (c->n_roots == c->roots_cap) {
        size_t nc = c->roots_cap ? 2 * c->roots_cap : 8;
        catalog_root *nr = realloc(c->roots, nc * sizeof *nr);
        if (!nr)
            return oom(err);
        c->roots = nr;
        c->roots_cap = nc;
    }
    struct stat st;
    catalog_root *r = &c->roots[c->n_roots];
    r->source = src;
    r->present = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (!(r->path = strdup(path)))
        return oom(err);
    c->n_roots++;
    return 0;
}

/* --- directory listings ------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The sorted names in dir (no hidden ones) that are directories (want_dirs)
 * or regular files, following symlinks. An unreadable dir lists as empty. */
static int list_dir(const char *dir, bool want_dirs, char ***out, size_t *n_out, sw_err *err)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, 0) != 0)
            continue;
        if (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = oom(err);
                break;
            }
            v = nv;
        }
        if (!(v[n] = strdup(de->d_name))) {
            rc = oom(err);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        names_free(v, n);
        return rc;
    }
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return 0;
}

/* --- GGUF trees (hf snapshots, lmstudio models, --models-dir) -------------- */

typedef struct walk {
    catalog *c;
    catalog_source src;
    const char *repo;  /* hf/lmstudio: "org/repo"; dir: the root directory */
    size_t first;      /* this repository's first entry: later revisions of a
                          file it already has are not added again */
    dev_t anc_dev[WALK_MAX_DEPTH + 1];
    ino_t anc_ino[WALK_MAX_DEPTH + 1];
} walk;

static bool has_gguf_ext(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && !strcasecmp(name + n - 5, ".gguf");
}

static bool is_projector(const char *name)
{
    return !strncasecmp(name, "mmproj", 6);
}

static bool walk_has_file(const walk *w, const char *rel)
{
    for (size_t i = w->first; i < w->c->n; i++)
        if (w->c->e[i].file && !strcmp(w->c->e[i].file, rel))
            return true;
    return false;
}

/* Adds the model whose (first) file is path, rel inside the root. */
static int walk_add(walk *w, const char *path, const char *rel, sw_err *err)
{
    if (walk_has_file(w, rel))
        return 0;
    char *name = NULL, stem[4096];
    if (w->src == CATALOG_DIR) {
        catalog_model_stem(rel, stem, sizeof stem);
        name = strdup(stem);
    } else if (asprintf(&name, "%s/%s", w->repo, rel) < 0) {
        name = NULL;
    }
    int rc = name ? entry_add(w->c, w->src, name, path, w->repo, rel, err) : oom(err);
    free(name);
    return rc;
}

/* One .gguf found at path (rel inside the root). A split model is added
 * once, under its first part's name, by the lowest part that is present. */
static int walk_gguf(walk *w, const char *path, const char *rel, sw_err *err)
{
    int count, no = catalog_split_parse(rel, NULL, &count);
    if (no <= 1)
        return walk_add(w, path, rel, err);
    for (int j = 1; j < no; j++) {
        char *p = catalog_split_sibling(path, j, count);
        if (!p)
            return oom(err);
        bool there = is_file(p, NULL);
        free(p);
        if (there)
            return 0;
    }
    char *path1 = catalog_split_sibling(path, 1, count);
    char *rel1 = catalog_split_sibling(rel, 1, count);
    int rc = path1 && rel1 ? walk_add(w, path1, rel1, err) : oom(err);
    free(path1);
    free(rel1);
    return rc;
}

static int walk_dir(walk *w, const char *dir, const char *rel, int depth, sw_err *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return 0;
    for (int i = 0; i < depth; i++)
        if (w->anc_dev[i] == st.st_dev && w->anc_ino[i] == st.st_ino)
            return 0; /* a symlink loop */
    w->anc_dev[depth] = st.st_dev;
    w->anc_ino[depth] = st.st_ino;

    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.')
            continue;
        char *path = NULL, *sub = NULL;
        if (asprintf(&path, "%s/%s", dir, nm) < 0 ||
            asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", nm) < 0) {
            free(path);
            rc = oom(err);
            break;
        }
        bool there = stat(path, &st) == 0;
        if (there && S_ISDIR(st.st_mode)) {
            if (depth < WALK_MAX_DEPTH)
                rc = walk_dir(w, path, sub, depth + 1, err);
        } else if (has_gguf_ext(nm) && !is_projector(nm) &&
                   ((there && S_ISREG(st.st_mode)) || catalog_split_parse(nm, NULL, NULL))) {
            /* a dangling symlink counts only as a (missing) split part */
            rc = walk_gguf(w, path, sub, err);
        }
        free(path);
        free(sub);
    }
    closedir(d);
    return rc;
}

static int walk_root(catalog *c, catalog_source src, const char *root, const char *repo,
                     size_t first, sw_err *err)
{
    walk w = {.c = c, .src = src, .repo = repo, .first = first};
    return walk_dir(&w, root, "", 0, err);
}

/* --- Hugging Face cache --------------------------------------------------- */

/* refs/main's commit, if the repository has one, into buf. */
static void hf_main_rev(const char *repo_dir, char *buf, size_t len)
{
    buf[0] = 0;
    char path[PATH_MAX];
    FILE *f = pathf(path, "%s/refs/main", repo_dir) ? fopen(path, "r") : NULL;
    if (!f)
        return;
    if (fgets(buf, (int)len, f))
        buf[strcspn(buf, "\r\n \t")] = 0;
    fclose(f);
    if (strchr(buf, '/') || buf[0] == '.')
        buf[0] = 0;
}

static int scan_hf_repo(catalog *c, const char *hub, const char *dname, sw_err *err)
{
    /* models--org--repo → org/repo (repo names cannot contain "--") */
    char repo[PATH_MAX], repo_dir[PATH_MAX], snaps[PATH_MAX], main_rev[256];
    if (!pathf(repo, "%s", dname + strlen("models--")) || !pathf(repo_dir, "%s/%s", hub, dname) ||
        !pathf(snaps, "%s/snapshots", repo_dir))
        return 0;
    char *sep = strstr(repo, "--");
    if (sep) {
        *sep = '/';
        memmove(sep + 1, sep + 2, strlen(sep + 2) + 1);
    }
    if (!repo[0])
        return 0;
    hf_main_rev(repo_dir, main_rev, sizeof main_rev);

    char **revs;
    size_t n_revs;
    int rc = list_dir(snaps, true, &revs, &n_revs, err);
    if (rc < 0)
        return rc;
    /* refs/main's snapshot first: its files win over older revisions' */
    for (size_t i = 0; i < n_revs; i++)
        if (main_rev[0] && !strcmp(revs[i], main_rev)) {
            char *t = revs[0];
            revs[0] = revs[i];
            revs[i] = t;
        }
    size_t first = c->n;
    for (size_t i = 0; i < n_revs && rc == 0; i++) {
        char dir[PATH_MAX];
        if (pathf(dir, "%s/%s", snaps, revs[i]))
            rc = walk_root(c, CATALOG_HF, dir, repo, first, err);
    }
    names_free(revs, n_revs);
    return rc;
}

static int scan_hf(catalog *c, const char *hub, sw_err *err)
{
    char **names;
    size_t n;
    int rc = list_dir(hub, true, &names, &n, err);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!strncmp(names[i], "models--", 8))
            rc = scan_hf_repo(c, hub, names[i], err);
    names_free(names, n);
    return rc;
}

/* --- LM Studio --------------------------------------------------------------- */

static int scan_lmstudio(catalog *c, const char *root, sw_err *err)
{
    char **pubs;
    size_t n_pubs;
    int rc = list_dir(root, true, &pubs, &n_pubs, err);
    for (size_t i = 0; i < n_pubs && rc == 0; i++) {
        char pub_dir[PATH_MAX];
        if (!pathf(pub_dir, "%s/%s", root, pubs[i]))
            continue;
        char **models;
        size_t n_models;
        rc = list_dir(pub_dir, true, &models, &n_models, err);
        for (size_t j = 0; j < n_models && rc == 0; j++) {
            char dir[PATH_MAX], repo[PATH_MAX];
            if (pathf(dir, "%s/%s", pub_dir, models[j]) &&
                pathf(repo, "%s/%s", pubs[i], models[j]))
                rc = walk_root(c, CATALOG_LMSTUDIO, dir, repo, c->n, err);
        }
        names_free(models, n_models);
    }
    names_free(pubs, n_pubs);
    return rc;
}

/* --- Ollama ------------------------------------------------------------------ */

/* The model layer's blob digest hex (64 lowercase hex digits), or false. */
static bool manifest_model_digest(const char *path, char hex[65])
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MANIFEST_MAX_BYTES)
        return false;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    bool ok = false;
    size_t i;
    json_t *layer;
    json_array_foreach(json_object_get(root, "layers"), i, layer) {
        const char *media = json_string_value(json_object_get(layer, "mediaType"));
        const char *digest = json_string_value(json_object_get(layer, "digest"));
        if (!media || strcmp(media, OLLAMA_MODEL_MEDIA) || !digest)
            continue;
        if (strncmp(digest, "sha256:", 7) || strlen(digest) != 7 + 64 ||
            strspn(digest + 7, "0123456789abcdef") != 64)
            break; /* not a digest we can turn into a file name */
        memcpy(hex, digest + 7, 65);
        ok = true;
        break;
    }
    json_decref(root);
    return ok;
}

/* True if the file starts with the GGUF magic. */
static bool gguf_magic(const char *path)
{
    char buf[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = read(fd, buf, 4) == 4 && !memcmp(buf, "GGUF", 4);
    close(fd);
    return ok;
}

/* Ollama's short form: "model:tag" on the default host and namespace,
 * "namespace/model:tag" on the default host, else everything. */
static int ollama_name(const char *host, const char *ns, const char *model, const char *tag,
                       char **out)
{
    if (!strcasecmp(host, OLLAMA_DEFAULT_HOST) && !strcasecmp(ns, OLLAMA_DEFAULT_NS))
        return asprintf(out, "%s:%s", model, tag);
    if (!strcasecmp(host, OLLAMA_DEFAULT_HOST))
        return asprintf(out, "%s/%s:%s", ns, model, tag);
    return asprintf(out, "%s/%s/%s:%s", host, ns, model, tag);
}

static int ollama_add(catalog *c, const char *root, const char *host, const char *ns,
                      const char *model, const char *tag, sw_err *err)
{
    char manifest[PATH_MAX], hex[65], blob[PATH_MAX], old[PATH_MAX];
    if (!pathf(manifest, "%s/manifests/%s/%s/%s/%s", root, host, ns, model, tag) ||
        !manifest_model_digest(manifest, hex) || !pathf(blob, "%s/blobs/sha256-%s", root, hex))
        return 0;
    /* blobs were once named "sha256:<hex>" */
    if (!is_file(blob, NULL) && pathf(old, "%s/blobs/sha256:%s", root, hex) && is_file(old, NULL))
        memcpy(blob, old, sizeof blob);
    if (is_file(blob, NULL) && !gguf_magic(blob))
        return 0; /* a model layer in some other format */
    char *name = NULL, *repo = NULL;
    int rc;
    if (ollama_name(host, ns, model, tag, &name) < 0 ||
        asprintf(&repo, "%s/%s/%s", host, ns, model) < 0)
        rc = oom(err);
    else
        rc = entry_add(c, CATALOG_OLLAMA, name, blob, repo, tag, err);
    free(name);
    free(repo);
    return rc;
}

/* manifests/<host>/<namespace>/<model>/<tag> */
static int scan_ollama(catalog *c, const char *root, sw_err *err)
{
    char dir[PATH_MAX];
    char **hosts = NULL, **nss = NULL, **models = NULL, **tags = NULL;
    size_t nh = 0, nn = 0, nm = 0, nt = 0;
    if (!pathf(dir, "%s/manifests", root))
        return 0;
    int rc = list_dir(dir, true, &hosts, &nh, err);
    for (size_t h = 0; h < nh && rc == 0; h++) {
        nn = 0;
        if (pathf(dir, "%s/manifests/%s", root, hosts[h]))
            rc = list_dir(dir, true, &nss, &nn, err);
        for (size_t s = 0; s < nn && rc == 0; s++) {
            nm = 0;
            if (pathf(dir, "%s/manifests/%s/%s", root, hosts[h], nss[s]))
                rc = list_dir(dir, true, &models, &nm, err);
            for (size_t m = 0; m < nm && rc == 0; m++) {
                nt = 0;
                if (pathf(dir, "%s/manifests/%s/%s/%s", root, hosts[h], nss[s], models[m]))
                    rc = list_dir(dir, false, &tags, &nt, err);
                for (size_t t = 0; t < nt && rc == 0; t++)
                    rc = ollama_add(c, root, hosts[h], nss[s], models[m], tags[t], err);
                names_free(tags, nt);
            }
            names_free(models, nm);
        }
        names_free(nss, nn);
    }
    names_free(hosts, nh);
    return rc;
}

/* --- where the stores are -------------------------------------------------------- */

static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : "/";
}

/* The Hugging Face hub cache, as huggingface_hub finds it. */
static bool hf_hub_dir(char *buf)
{
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        return pathf(buf, "%s", v);
    if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v)
        return pathf(buf, "%s", v);
    if ((v = getenv("HF_HOME")) && *v)
        return pathf(buf, "%s/hub", v);
    if ((v = getenv("XDG_CACHE_HOME")) && *v)
        return pathf(buf, "%s/huggingface/hub", v);
    return pathf(buf, "%s/.cache/huggingface/hub", home_dir());
}

static int entry_cmp(const void *pa, const void *pb)
{
    const catalog_entry *a = pa, *b = pb;
    if (a->source != b->source)
        return (int)a->source - (int)b->source;
    return strcmp(a->name, b->name);
}

typedef int (*store_scan_fn)(catalog *c, const char *root, sw_err *err);

/* Records root among the places searched, and scans it. */
static int scan_store(catalog *c, catalog_source src, const char *root, store_scan_fn scan,
                      sw_err *err)
{
    int rc = root_add(c, src, root, err);
    return rc < 0 ? rc : scan(c, root, err);
}

static int scan_all(catalog *c, const catalog_opts *opts, bool with_defaults, sw_err *err)
{
    char path[PATH_MAX];
    const char *v, *home = home_dir();
    int rc = 0;
    if (with_defaults) {
        bool ok = (v = getenv("OLLAMA_MODELS")) && *v ? pathf(path, "%s", v)
                                                      : pathf(path, "%s/.ollama/models", home);
        if (ok && (rc = scan_store(c, CATALOG_OLLAMA, path, scan_ollama, err)) < 0)
            return rc;
        if (hf_hub_dir(path) && (rc = scan_store(c, CATALOG_HF, path, scan_hf, err)) < 0)
            return rc;
        if (pathf(path, "%s/.lmstudio/models", home) &&
            (rc = scan_store(c, CATALOG_LMSTUDIO, path, scan_lmstudio, err)) < 0)
            return rc;
        /* LM Studio's older place, only mentioned where it exists */
        struct stat st;
        if (pathf(path, "%s/.cache/lm-studio/models", home) && stat(path, &st) == 0 &&
            S_ISDIR(st.st_mode) &&
            (rc = scan_store(c, CATALOG_LMSTUDIO, path, scan_lmstudio, err)) < 0)
            return rc;
    }
    for (int i = 0; opts && i < opts->n_dirs; i++) {
        if ((rc = root_add(c, CATALOG_DIR, opts->dirs[i], err)) < 0 ||
            (rc = walk_root(c, CATALOG_DIR, opts->dirs[i], opts->dirs[i], c->n, err)) < 0)
            return rc;
    }
    return 0;
}

int catalog_scan_roots(const catalog_opts *opts, bool with_defaults, catalog **out,
                       sw_err *err)
{
    *out = NULL;
    catalog *c = calloc(1, sizeof *c);
    if (!c)
        return oom(err);
    int rc = scan_all(c, opts, with_defaults, err);
    if (rc < 0) {
        catalog_free(c);
        return rc;
    }
    if (c->n)
        qsort(c->e, c->n, sizeof *c->e, entry_cmp);
    *out = c;
    return 0;
}

int catalog_scan(const catalog_opts *opts, catalog **out, sw_err *err)
{
    return catalog_scan_roots(opts, true, out, err);
}

void catalog_free(catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].name);
        free(c->e[i].path);
        free(c->e[i].repo);
        free(c->e[i].file);
    }
    for (size_t i = 0; i < c->n_roots; i++)
        free(c->roots[i].path);
    free(c->e);
    free(c->roots);
    free(c);
}
