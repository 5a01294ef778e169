/* Tests of the model catalog (src/store/catalog.h): fake Ollama, Hugging
 * Face and LM Studio stores and --models-dir trees built in the test's
 * temporary directory from the fixture GGUFs, resolution of every name form,
 * ambiguity and missing-part errors, and `spillway models` end to end. */
#include "test.h"

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "store/catalog.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- building fake stores ---------------------------------------------------- */

#define N_PATHS 64
static char g_path[N_PATHS][4096];
static int g_path_i;

/* A path under the test's temporary directory, in one of N_PATHS rotating
 * buffers: each test makes fewer calls than that, so results stay valid for
 * the whole test. */
static const char *tmp_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tmp_path(const char *fmt, ...)
{
    char rel[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char *buf = g_path[g_path_i++ % N_PATHS];
    snprintf(buf, sizeof g_path[0], "%s/%s", test_tmpdir(), rel);
    return buf;
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Creates path's parent directories, then writes text to it. */
static int write_text(const char *path, const char *text)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    if (mkdir_p(dir) != 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int link_to(const char *target, const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    if (mkdir_p(dir) != 0)
        return -1;
    return symlink(target, path);
}

static int copy_to(const char *src, const char *dst)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\" && cp '%s' '%s'", dst, src, dst);
    return test_run(cmd, NULL);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t gguf_params(const char *path)
{
    gguf_ctx *g;
    if (gguf_open(path, GGUF_NO_DATA, &g, NULL) != 0)
        return 0;
    uint64_t n = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++)
        n += (uint64_t)gguf_tensor_at(g, i)->n_elements;
    gguf_close(g);
    return n;
}

#define LLAMA_Q8 "models/llama/llama-q8_0.gguf"
#define LLAMA_Q4KM "models/llama/llama-q4_k_m.gguf"
#define QWEN3_Q4KM "models/qwen3/qwen3-q4_k_m.gguf"

/* 64 hex digits made of one repeated digit. */
static const char *digest(char d)
{
    static char buf[4][65];
    static int i;
    char *b = buf[i++ % 4];
    memset(b, d, 64);
    b[64] = 0;
    return b;
}

/* An Ollama manifest naming blob sha256:<hex> as its model layer, with the
 * other layers a real manifest has. */
static int ollama_manifest(const char *root, const char *name_path, const char *hex)
{
    char path[4096], json[2048];
    snprintf(path, sizeof path, "%s/manifests/%s", root, name_path);
    snprintf(json, sizeof json,
             "{\"schemaVersion\":2,"
             "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
             "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
             "\"digest\":\"sha256:%s\",\"size\":485},"
             "\"layers\":["
             "{\"mediaType\":\"application/vnd.ollama.image.template\","
             "\"digest\":\"sha256:%s\",\"size\":1200},"
             "{\"mediaType\":\"application/vnd.ollama.image.model\","
             "\"digest\":\"sha256:%s\",\"size\":1000},"
             "{\"mediaType\":\"application/vnd.ollama.image.params\","
             "\"digest\":\"sha256:%s\",\"size\":30}]}",
             digest('e'), digest('d'), hex, digest('c'));
    return write_text(path, json);
}

/* The Ollama store used by several tests, at tmp/ollama. */
static int make_ollama(void)
{
    const char *root = tmp_path("ollama");
    int rc = 0;
    rc |= ollama_manifest(root, "registry.ollama.ai/library/qwen3/30b-a3b", digest('1'));
    rc |= ollama_manifest(root, "registry.ollama.ai/library/qwen3/latest", digest('2'));
    rc |= ollama_manifest(root, "registry.ollama.ai/someuser/tiny/v1", digest('3'));
    rc |= ollama_manifest(root, "hf.co/org/repo/Q4_K_M", digest('4')); /* blob missing */
    rc |= link_to(test_fixture(LLAMA_Q8), tmp_path("ollama/blobs/sha256-%s", digest('1')));
    rc |= copy_to(test_fixture(QWEN3_Q4KM), tmp_path("ollama/blobs/sha256-%s", digest('2')));
    rc |= link_to(test_fixture(LLAMA_Q4KM), tmp_path("ollama/blobs/sha256-%s", digest('3')));
    /* a manifest that is not JSON is skipped */
    rc |= write_text(tmp_path("ollama/manifests/registry.ollama.ai/library/bad/x"), "{oops");
    return rc;
}

/* HF cache at tmp/hf: org/repo with two quants (and a projector, and an
 * older revision holding one more file), org/single with one GGUF. */
static int make_hf(void)
{
    int rc = 0;
    const char *repo = "hf/models--org--repo";
    rc |= copy_to(test_fixture(LLAMA_Q8), tmp_path("%s/blobs/aaaa", repo));
    rc |= copy_to(test_fixture(LLAMA_Q4KM), tmp_path("%s/blobs/bbbb", repo));
    rc |= link_to("../../blobs/aaaa", tmp_path("%s/snapshots/rev2/repo-Q8_0.gguf", repo));
    rc |= link_to("../../blobs/bbbb", tmp_path("%s/snapshots/rev2/repo-Q4_K_M.gguf", repo));
    rc |= link_to("../../blobs/aaaa", tmp_path("%s/snapshots/rev2/mmproj-repo-f16.gguf", repo));
    rc |= write_text(tmp_path("%s/snapshots/rev2/config.json", repo), "{}");
    rc |= link_to("../../blobs/aaaa", tmp_path("%s/snapshots/rev1/repo-Q8_0.gguf", repo));
    rc |= copy_to(test_fixture(LLAMA_Q8), tmp_path("%s/blobs/dddd", repo));
    rc |= link_to("../../blobs/dddd", tmp_path("%s/snapshots/rev1/old-Q2_K.gguf", repo));
    rc |= write_text(tmp_path("%s/refs/main", repo), "rev2\n");
    const char *single = "hf/models--org--single";
    rc |= copy_to(test_fixture(QWEN3_Q4KM), tmp_path("%s/blobs/cccc", single));
    rc |= link_to("../../../blobs/cccc", tmp_path("%s/snapshots/r/sub/one.gguf", single));
    return rc;
}

/* Points the catalog at tmp/ (nothing of the real machine's stores). */
static void use_tmp_stores(void)
{
    setenv("HOME", tmp_path("home"), 1);
    setenv("OLLAMA_MODELS", tmp_path("ollama"), 1);
    setenv("HF_HUB_CACHE", tmp_path("hf"), 1);
    unsetenv("HF_HOME");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("XDG_CACHE_HOME");
}

/* Resolves name; returns the path (static) or "ERR: <message>". */
static const char *resolve(const char *name, const catalog_opts *opts)
{
    static char out[4][1024];
    static int i;
    char *buf = out[i++ % 4];
    char *path = NULL;
    sw_err err = {0};
    if (catalog_resolve(name, opts, &path, &err) == 0)
        snprintf(buf, sizeof out[0], "%s", path);
    else
        snprintf(buf, sizeof out[0], "ERR: %s", err.msg);
    free(path);
    return buf;
}

/* --- Ollama ------------------------------------------------------------------ */

TEST(catalog_ollama_names)
{
    CHECK_EQ(make_ollama(), 0);
    use_tmp_stores();
    const char *blob1 = tmp_path("ollama/blobs/sha256-%s", digest('1'));
    const char *blob2 = tmp_path("ollama/blobs/sha256-%s", digest('2'));
    const char *blob3 = tmp_path("ollama/blobs/sha256-%s", digest('3'));
    CHECK_STR(resolve("qwen3:30b-a3b", NULL), blob1);
    CHECK_STR(resolve("library/qwen3:30b-a3b", NULL), blob1);
    CHECK_STR(resolve("registry.ollama.ai/library/qwen3:30b-a3b", NULL), blob1);
    CHECK_STR(resolve("QWEN3:30B-A3B", NULL), blob1);
    CHECK_STR(resolve("qwen3", NULL), blob2);
    CHECK_STR(resolve("qwen3:latest", NULL), blob2);
    CHECK_STR(resolve("someuser/tiny:v1", NULL), blob3);

    const char *r = resolve("tiny:v1", NULL); /* namespace library has no tiny */
    CHECK_HAS(r, "ERR: model 'tiny:v1' not found");
    CHECK_HAS(r, tmp_path("ollama"));
    CHECK_HAS(r, "hf ");
    CHECK_HAS(r, "(absent)");

    r = resolve("hf.co/org/repo:Q4_K_M", NULL);
    CHECK_HAS(r, "ERR: ");
    CHECK_HAS(r, "is missing");
    CHECK_HAS(r, digest('4'));

    catalog *c;
    CHECK_EQ(catalog_scan(NULL, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 4);
    const char *want[] = {"hf.co/org/repo:Q4_K_M", "qwen3:30b-a3b", "qwen3:latest",
                          "someuser/tiny:v1"};
    for (int i = 0; i < 4; i++) {
        CHECK_STR(catalog_at(c, (size_t)i)->name, want[i]);
        CHECK_EQ(catalog_at(c, (size_t)i)->source, CATALOG_OLLAMA);
    }
    CHECK_EQ(catalog_at(c, 0)->n_missing, 1);
    CHECK_EQ(catalog_at(c, 1)->size, file_size(test_fixture(LLAMA_Q8)));
    catalog_free(c);
}

/* --- Hugging Face and LM Studio --------------------------------------------- */

TEST(catalog_hf_names)
{
    CHECK_EQ(make_hf(), 0);
    use_tmp_stores();
    const char *q8 = tmp_path("hf/models--org--repo/snapshots/rev2/repo-Q8_0.gguf");
    const char *q4 = tmp_path("hf/models--org--repo/snapshots/rev2/repo-Q4_K_M.gguf");
    const char *q2 = tmp_path("hf/models--org--repo/snapshots/rev1/old-Q2_K.gguf");
    const char *one = tmp_path("hf/models--org--single/snapshots/r/sub/one.gguf");

    CHECK_STR(resolve("org/repo:Q4_K_M", NULL), q4);
    CHECK_STR(resolve("org/repo:q4_k_m", NULL), q4);
    CHECK_STR(resolve("org/repo:Q8_0", NULL), q8);
    CHECK_STR(resolve("hf.co/org/repo:Q8_0", NULL), q8);
    CHECK_STR(resolve("org/repo/repo-Q8_0.gguf", NULL), q8);
    CHECK_STR(resolve("org/repo/repo-Q8_0", NULL), q8);
    CHECK_STR(resolve("org/repo:Q2_K", NULL), q2); /* only in the older revision */
    CHECK_STR(resolve("org/single", NULL), one);
    CHECK_STR(resolve("org/single/sub/one.gguf", NULL), one);
    CHECK_HAS(resolve("org/repo:Q4_K", NULL), "not found"); /* not a word of Q4_K_M */
    CHECK_HAS(resolve("org/repo:f16", NULL), "not found");  /* the projector */

    const char *r = resolve("org/repo", NULL);
    CHECK_HAS(r, "ERR: model name 'org/repo' is ambiguous; 3 models");
    CHECK_HAS(r, "org/repo/repo-Q4_K_M.gguf (hf, ");
    CHECK_HAS(r, "org/repo/repo-Q8_0.gguf (hf, ");
    CHECK_HAS(r, "org/repo/old-Q2_K.gguf");

    catalog *c;
    CHECK_EQ(catalog_scan(NULL, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 4); /* rev1's copy of repo-Q8_0 is not listed again */
    catalog_free(c);
}

TEST(catalog_lmstudio_and_cross_store_ambiguity)
{
    use_tmp_stores();
    const char *lms = tmp_path("home/.lmstudio/models/pub/Model-GGUF/model-Q4_K_M.gguf");
    CHECK_EQ(copy_to(test_fixture(LLAMA_Q4KM), lms), 0);
    CHECK_STR(resolve("pub/Model-GGUF", NULL), lms);
    CHECK_STR(resolve("pub/model-gguf:Q4_K_M", NULL), lms);
    CHECK_STR(resolve("pub/Model-GGUF/model-Q4_K_M.gguf", NULL), lms);

    /* the same repository name in the HF cache, another file: ambiguous */
    const char *hf = tmp_path("hf/models--pub--Model-GGUF/snapshots/r/model-Q4_K_M.gguf");
    CHECK_EQ(copy_to(test_fixture(LLAMA_Q4KM), hf), 0);
    const char *r = resolve("pub/Model-GGUF:Q4_K_M", NULL);
    CHECK_HAS(r, "ambiguous; 2 models");
    CHECK_HAS(r, "(hf, ");
    CHECK_HAS(r, "(lmstudio, ");

    /* the same file reached twice is one answer */
    CHECK_EQ(unlink(hf), 0);
    CHECK_EQ(symlink(lms, hf), 0);
    CHECK_STR(resolve("pub/Model-GGUF:Q4_K_M", NULL), hf);
}

/* --- --models-dir and paths ----------------------------------------------------- */

TEST(catalog_models_dir_and_paths)
{
    use_tmp_stores();
    CHECK_EQ(copy_to(test_fixture(LLAMA_Q8), tmp_path("dir/a/b/x.gguf")), 0);
    CHECK_EQ(copy_to(test_fixture(LLAMA_Q4KM), tmp_path("dir/top.gguf")), 0);
    CHECK_EQ(copy_to(test_fixture(LLAMA_Q4KM), tmp_path("dir/a/other.gguf")), 0);
    CHECK_EQ(symlink("..", tmp_path("dir/a/loop")), 0); /* must not walk forever */
    const char *dirs[] = {tmp_path("dir")};
    catalog_opts opts = {dirs, 1};

    CHECK_STR(resolve("a/b/x", &opts), tmp_path("dir/a/b/x.gguf"));
    CHECK_STR(resolve("a/b/x.gguf", &opts), tmp_path("dir/a/b/x.gguf"));
    CHECK_STR(resolve("top", &opts), tmp_path("dir/top.gguf"));
    CHECK_HAS(resolve("top", NULL), "not found"); /* not without --models-dir */
    CHECK_HAS(resolve("nothing", &opts), tmp_path("dir"));

    /* a path is itself; a directory holding one model is that model */
    CHECK_STR(resolve(tmp_path("dir/top.gguf"), NULL), tmp_path("dir/top.gguf"));
    CHECK_STR(resolve(tmp_path("dir/a/b"), NULL), tmp_path("dir/a/b/x.gguf"));
    CHECK_HAS(resolve(tmp_path("dir/a"), NULL), "ambiguous");
    CHECK_EQ(mkdir_p(tmp_path("empty")), 0);
    CHECK_HAS(resolve(tmp_path("empty"), NULL), "no GGUF model in directory");

    catalog *c;
    CHECK_EQ(catalog_scan(&opts, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 3);
    CHECK_STR(catalog_at(c, 0)->name, "a/b/x");
    CHECK_STR(catalog_at(c, 1)->name, "a/other");
    CHECK_STR(catalog_at(c, 2)->name, "top");
    CHECK_EQ(catalog_at(c, 2)->source, CATALOG_DIR);
    catalog_free(c);
}

/* --- split models ------------------------------------------------------------ */

/* Writes part `no` (1-based) of `count` as gguf-split would: split.no is
 * 0-based; the first part carries the model's metadata. Each part holds one
 * F32 tensor of 32 x rows. */
static int write_part(const char *path, int no, int count, int split_no, int rows)
{
    sw_err err;
    gguf_writer *w = gguf_writer_new();
    if (no == 1) {
        gguf_writer_set_str(w, "general.architecture", "llama");
        gguf_writer_set_u32(w, "general.file_type", 0);
    }
    gguf_writer_set_u16(w, "split.no", (uint16_t)split_no);
    gguf_writer_set_u16(w, "split.count", (uint16_t)count);
    gguf_writer_set_i32(w, "split.tensors.count", count);
    char name[32];
    snprintf(name, sizeof name, "t%d.weight", no);
    int64_t ne[2] = {32, rows};
    float *data = calloc((size_t)(32 * rows), sizeof *data);
    int rc = gguf_writer_add_tensor(w, name, QT_F32, 2, ne, &err);
    if (rc == 0)
        rc = gguf_writer_begin(w, path, &err);
    if (rc == 0)
        rc = gguf_writer_write_tensor(w, data, (uint64_t)32 * rows * sizeof *data, &err);
    if (rc == 0)
        rc = gguf_writer_finish(w, &err);
    if (rc != 0)
        fprintf(stderr, "    write_part %s: %s\n", path, err.msg);
    gguf_writer_free(w);
    free(data);
    return rc;
}

TEST(catalog_split_models)
{
    use_tmp_stores();
    CHECK_EQ(mkdir_p(tmp_path("split/big")), 0);
    for (int i = 1; i <= 3; i++)
        CHECK_EQ(write_part(tmp_path("split/big/big-%05d-of-00003.gguf", i), i, 3, i - 1, i), 0);
    const char *p1 = tmp_path("split/big/big-00001-of-00003.gguf");
    const char *p2 = tmp_path("split/big/big-00002-of-00003.gguf");
    const char *p3 = tmp_path("split/big/big-00003-of-00003.gguf");
    const char *dirs[] = {tmp_path("split")};
    catalog_opts opts = {dirs, 1};

    int count = 0;
    CHECK_EQ(catalog_split_info(p2, &count), 2);
    CHECK_EQ(count, 3);
    CHECK_EQ(catalog_split_info(tmp_path("x-1-of-3.gguf"), &count), 0);

    catalog *c;
    CHECK_EQ(catalog_scan(&opts, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 1);
    const catalog_entry *e = catalog_at(c, 0);
    CHECK_STR(e->name, "big/big");
    CHECK_STR(e->path, p1);
    CHECK_EQ(e->n_parts, 3);
    CHECK_EQ(e->n_missing, 0);
    CHECK_EQ(e->size, file_size(p1) + file_size(p2) + file_size(p3));
    catalog_info info;
    CHECK_EQ(catalog_read_info(e, &info, NULL), 0);
    CHECK_STR(info.arch, "llama");
    CHECK_EQ(info.n_params, 32 * (1 + 2 + 3));
    CHECK_STR(info.quant, "F32");
    catalog_free(c);

    CHECK_STR(resolve("big/big", &opts), p1);
    CHECK_STR(resolve("big/big-00001-of-00003.gguf", &opts), p1);
    CHECK_STR(resolve(p3, NULL), p1); /* any part's path stands for the model */

    char **parts;
    int n;
    CHECK_EQ(catalog_split_parts(p1, &parts, &n, NULL), 0);
    CHECK_EQ(n, 3);
    CHECK_STR(parts[0], p1);
    CHECK_STR(parts[1], p2);
    CHECK_STR(parts[2], p3);
    catalog_free_parts(parts, n);

    /* a part whose header disagrees with its name */
    CHECK_EQ(unlink(p3), 0);
    CHECK_EQ(write_part(p3, 3, 3, 1, 3), 0);
    sw_err err = {0};
    CHECK_EQ(catalog_split_parts(p1, &parts, &n, &err), SW_EFORMAT);
    CHECK_HAS(err.msg, "says it is part 2");

    /* a missing part: listed, flagged, and resolving names it */
    CHECK_EQ(unlink(p2), 0);
    const char *r = resolve("big/big", &opts);
    CHECK_HAS(r, "ERR: model 'big/big' (dir): split model");
    CHECK_HAS(r, "part 2");
    CHECK_HAS(r, p2);
    CHECK_HAS(r, "missing");
    CHECK_EQ(catalog_split_parts(p1, &parts, &n, &err), SW_ENOTFOUND);
    CHECK_EQ(catalog_scan(&opts, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 1);
    CHECK_EQ(catalog_at(c, 0)->n_missing, 1);
    catalog_free(c);

    /* without its first part it is still listed once, under the first */
    CHECK_EQ(unlink(p1), 0);
    CHECK_EQ(write_part(p2, 2, 3, 1, 2), 0);
    CHECK_EQ(catalog_scan(&opts, &c, NULL), 0);
    CHECK_EQ(catalog_count(c), 1);
    CHECK_STR(catalog_at(c, 0)->path, p1);
    CHECK_EQ(catalog_at(c, 0)->n_missing, 1);
    catalog_free(c);
    CHECK_HAS(resolve("big/big", &opts), "part 1");
}

/* --- header facts ---------------------------------------------------------------- */

TEST(catalog_quant_names)
{
    CHECK_STR(catalog_ftype_name(15), "Q4_K_M");
    CHECK_STR(catalog_ftype_name(15 | 1024), "Q4_K_M");
    CHECK_STR(catalog_ftype_name(7), "Q8_0");
    CHECK_STR(catalog_ftype_name(38), "MXFP4_MOE");
    CHECK(catalog_ftype_name(4) == NULL);
    CHECK(catalog_ftype_name(999) == NULL);

    /* no general.file_type: the type holding most weights (2-D and up) */
    const char *path = tmp_path("noftype.gguf");
    sw_err err;
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "test");
    int64_t ne_q[2] = {64, 8}, ne_n[1] = {1024};
    CHECK_EQ(gguf_writer_add_tensor(w, "w", QT_Q8_0, 2, ne_q, &err), 0);
    CHECK_EQ(gguf_writer_add_tensor(w, "norm", QT_F32, 1, ne_n, &err), 0);
    CHECK_EQ(gguf_writer_begin(w, path, &err), 0);
    static char zeros[8192];
    CHECK_EQ(gguf_writer_write_tensor(w, zeros, quant_row_size(QT_Q8_0, 64) * 8, &err), 0);
    CHECK_EQ(gguf_writer_write_tensor(w, zeros, 4096, &err), 0);
    CHECK_EQ(gguf_writer_finish(w, &err), 0);
    gguf_writer_free(w);
    catalog_entry e = {.name = "x", .path = (char *)path, .source = CATALOG_PATH,
                       .n_parts = 1};
    catalog_info info;
    CHECK_EQ(catalog_read_info(&e, &info, &err), 0);
    CHECK_STR(info.quant, "Q8_0");
    CHECK_STR(info.arch, "test");
    CHECK_EQ(info.n_params, 64 * 8 + 1024);
}

/* --- spillway models, end to end ---------------------------------------------- */

static const json_t *by_name(const json_t *models, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && !strcmp(n, name))
            return m;
    }
    return NULL;
}

static int run_models(const char *args, char **out)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "env -u HF_HOME -u XDG_CACHE_HOME HOME='%s' OLLAMA_MODELS='%s' HF_HUB_CACHE='%s' "
             "%s models %s",
             tmp_path("home"), tmp_path("ollama"), tmp_path("hf"), test_bin(), args);
    return test_run(cmd, out);
}

TEST(catalog_cli_models_json)
{
    CHECK_EQ(make_ollama(), 0);
    CHECK_EQ(make_hf(), 0);
    CHECK_EQ(copy_to(test_fixture(QWEN3_Q4KM), tmp_path("home/.lmstudio/models/p/m/m.gguf")), 0);
    CHECK_EQ(mkdir_p(tmp_path("dir")), 0);
    for (int i = 1; i <= 2; i++)
        CHECK_EQ(write_part(tmp_path("dir/s-%05d-of-00002.gguf", i), i, 2, i - 1, 4), 0);
    char args[4096], *out;
    snprintf(args, sizeof args, "--json --models-dir '%s' 2>&1", tmp_path("dir"));
    CHECK_EQ(run_models(args, &out), 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    CHECKF(j, "bad JSON at %d:%d: %s\n%s", jerr.line, jerr.column, jerr.text, out);
    json_t *models = json_object_get(j, "models");
    CHECK_EQ(json_array_size(models), 4 + 4 + 1 + 1);

    const json_t *m = by_name(models, "qwen3:30b-a3b");
    CHECK(m);
    CHECK_STR(json_string_value(json_object_get(m, "source")), "ollama");
    CHECK_STR(json_string_value(json_object_get(m, "architecture")), "llama");
    CHECK_STR(json_string_value(json_object_get(m, "quantization")), "Q8_0");
    CHECK_EQ(json_integer_value(json_object_get(m, "parameters")),
             (json_int_t)gguf_params(test_fixture(LLAMA_Q8)));
    CHECK_EQ(json_integer_value(json_object_get(m, "size")),
             (json_int_t)file_size(test_fixture(LLAMA_Q8)));

    m = by_name(models, "org/repo/repo-Q4_K_M.gguf");
    CHECK(m);
    CHECK_STR(json_string_value(json_object_get(m, "source")), "hf");
    CHECK_STR(json_string_value(json_object_get(m, "quantization")), "Q4_K_M");

    m = by_name(models, "p/m/m.gguf");
    CHECK(m);
    CHECK_STR(json_string_value(json_object_get(m, "source")), "lmstudio");
    CHECK_STR(json_string_value(json_object_get(m, "architecture")), "qwen3");

    m = by_name(models, "s");
    CHECK(m);
    CHECK_STR(json_string_value(json_object_get(m, "source")), "dir");
    CHECK_EQ(json_integer_value(json_object_get(m, "parts")), 2);
    CHECK_EQ(json_integer_value(json_object_get(m, "parameters")), 2 * 32 * 4);

    m = by_name(models, "hf.co/org/repo:Q4_K_M");
    CHECK(m);
    CHECK_EQ(json_integer_value(json_object_get(m, "missing_parts")), 1);
    CHECK(json_is_null(json_object_get(m, "architecture")));
    CHECK(json_string_value(json_object_get(m, "error")));

    json_t *searched = json_object_get(j, "searched");
    CHECK_EQ(json_array_size(searched), 4);
    CHECK_STR(json_string_value(json_object_get(json_array_get(searched, 0), "path")),
              tmp_path("ollama"));
    json_decref(j);
    free(out);
}

TEST(catalog_cli_models_table_and_resolve)
{
    CHECK_EQ(make_ollama(), 0);
    CHECK_EQ(make_hf(), 0);
    char *out;
    CHECK_EQ(run_models("2>&1", &out), 0);
    CHECK_HAS(out, "NAME");
    CHECK_HAS(out, "QUANT");
    const char *line = strstr(out, "qwen3:latest");
    CHECKF(line, "no qwen3:latest in:\n%s", out);
    char row[256];
    snprintf(row, sizeof row, "%.*s", (int)strcspn(line, "\n"), line);
    CHECK_HAS(row, "qwen3 ");
    CHECK_HAS(row, "Q4_K_M");
    CHECK_HAS(row, "ollama");
    CHECK_HAS(row, "M "); /* parameters in millions */
    CHECK_HAS(out, "org/repo/repo-Q8_0.gguf");
    free(out);

    CHECK_EQ(run_models("--resolve org/repo:Q8_0 2>&1", &out), 0);
    CHECK_HAS(out, "models--org--repo/snapshots/rev2/repo-Q8_0.gguf\n");
    free(out);
    CHECK_EQ(run_models("--resolve org/repo 2>&1", &out), 1);
    CHECK_HAS(out, "ambiguous");
    free(out);
    CHECK_EQ(run_models("--bogus 2>&1", &out), 2);
    free(out);
}

TEST(catalog_cli_models_empty)
{
    char *out;
    CHECK_EQ(run_models("2>&1", &out), 0);
    CHECK_HAS(out, "no GGUF models found");
    CHECK_HAS(out, tmp_path("ollama"));
    CHECK_HAS(out, "(absent)");
    free(out);
}
