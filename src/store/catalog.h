/*
 * catalog.h — finding the GGUF models already on this machine, by name.
 *
 * Wherever spillway takes a MODEL it takes either a path or a name, and the
 * catalog turns names into files. It reads the stores other tools keep,
 * without changing anything in them:
 *
 *   ollama    $OLLAMA_MODELS, else ~/.ollama/models. Each model is a
 *             manifest, manifests/<host>/<namespace>/<model>/<tag> (JSON);
 *             the layer of mediaType application/vnd.ollama.image.model names
 *             the GGUF blob by digest "sha256:<hex>", stored as
 *             blobs/sha256-<hex>. Named as Ollama names them: "qwen3:30b-a3b"
 *             (host registry.ollama.ai and namespace library are implied, tag
 *             latest too), "user/model:tag", "host/namespace/model:tag".
 *   hf        the Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
 *             $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 *             GGUFs under models--<org>--<repo>/snapshots/<rev>/ (symlinks into
 *             blobs/), the revision refs/main names first. Named
 *             "org/repo/<file>.gguf" (its path inside the snapshot).
 *   lmstudio  ~/.lmstudio/models/<publisher>/<model>/ (and the older
 *             ~/.cache/lm-studio/models), named like hf: "publisher/model/file.gguf".
 *   dir       each --models-dir DIR, searched recursively; a model is named by
 *             its path relative to DIR without ".gguf".
 *
 * A name resolves when exactly one model answers to it:
 *   - an Ollama name matches the manifest with the same host, namespace,
 *     model and tag (case-insensitively, defaults filled in);
 *   - for hf and lmstudio, "org/repo/file.gguf" (".gguf" and a split suffix
 *     optional) names one file, "org/repo" the repository's only model, and
 *     "org/repo:TAG" the one whose file name holds TAG as a whole word,
 *     case-insensitively ("Q4_K_M" matches "x-q4_k_m.gguf", "Q4_K" does not);
 *     "hf.co/" or "huggingface.co/" in front is ignored;
 *   - a dir model by its name, or its relative path with ".gguf".
 * Several answers that are the same file count once; otherwise the error
 * lists the candidates. No answer: the error says where the catalog looked.
 * Vision projectors (files named mmproj*) are not models and are skipped,
 * as are Ollama model layers that are not GGUF files.
 *
 * Split models (llama.cpp's gguf-split: name-00001-of-00003.gguf, ...,
 * each part carrying split.no, 0-based, and split.count) are one model: the
 * catalog lists them once, resolves them to the first part, and
 * catalog_split_parts() lists every part in order, failing clearly when one
 * is missing.
 *
 * Nothing here reads tensor data: scanning stats files and reads Ollama's
 * small manifests; catalog_info() reads GGUF headers only.
 */
#ifndef SW_CATALOG_H
#define SW_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef enum catalog_source {
    CATALOG_OLLAMA,
    CATALOG_HF,
    CATALOG_LMSTUDIO,
    CATALOG_DIR,
    CATALOG_PATH, /* a path given directly */
} catalog_source;

typedef struct catalog_opts {
    const char *const *dirs; /* --models-dir, in order */
    int n_dirs;
} catalog_opts;

typedef struct catalog_entry {
    char *name;            /* the name it is listed and resolved by */
    char *path;            /* the GGUF file (a split model's first part) */
    catalog_source source;
    char *repo;            /* hf, lmstudio: "org/repo"; dir: the DIR;
                              ollama: "host/namespace/model" */
    char *file;            /* hf, lmstudio, dir: path of `path` inside the
                              snapshot, model folder or DIR; ollama: the tag */
    int n_parts;           /* 1, or a split model's part count */
    int n_missing;         /* parts (or an Ollama blob) not on disk */
    uint64_t size;         /* bytes on disk of the parts present */
} catalog_entry;

/* A place the catalog searches. */
typedef struct catalog_root {
    catalog_source source;
    char *path;
    bool present;          /* the directory exists */
} catalog_root;

typedef struct catalog catalog;

/* Scans every store (cheap: directory listings, stats, manifests). */
int catalog_scan(const catalog_opts *opts, catalog **out, sw_err *err);
void catalog_free(catalog *c);
size_t catalog_count(const catalog *c);
const catalog_entry *catalog_at(const catalog *c, size_t i);
size_t catalog_n_roots(const catalog *c);
const catalog_root *catalog_root_at(const catalog *c, size_t i);

/* Index of the one entry answering to name, or SW_ENOTFOUND / SW_EINVAL
 * (ambiguous) with the candidates or the searched places in err. */
int catalog_find(const catalog *c, const char *name, size_t *index, sw_err *err);

/* What other commands call: if name_or_path is a file, that file (a split
 * part resolves to the first part); if a directory, the one model in it;
 * else the one catalog entry of that name. Split models must have all their
 * parts. *path_out is malloc'd. */
int catalog_resolve(const char *name_or_path, const catalog_opts *opts, char **path_out,
                    sw_err *err);

/* --- split models ------------------------------------------------------- */

/* If path's file name is a split part ("<prefix>-00002-of-00005.gguf"),
 * returns its 1-based part number and sets *count; else 0. */
int catalog_split_info(const char *path, int *count);
/* All parts of the model path belongs to, in order (just path itself for an
 * unsplit file); each must exist and, where its header says, be part
 * split.no of split.count. *parts and its strings are malloc'd; free with
 * catalog_free_parts. */
int catalog_split_parts(const char *path, char ***parts, int *n_parts, sw_err *err);
void catalog_free_parts(char **parts, int n_parts);

/* --- headers ------------------------------------------------------------ */

typedef struct catalog_info {
    char arch[64];          /* general.architecture, or "?" */
    uint64_t n_params;      /* sum of tensor elements over all parts */
    char quant[32];         /* general.file_type's llama.cpp name, else the
                               storage type holding most weights */
} catalog_info;

/* Reads the headers of e's parts (GGUF_NO_DATA). */
int catalog_read_info(const catalog_entry *e, catalog_info *info, sw_err *err);

/* llama.cpp's name of a general.file_type value ("Q4_K_M"), or NULL. */
const char *catalog_ftype_name(uint32_t ftype);
/* "ollama", "hf", "lmstudio", "dir", "path". */
const char *catalog_source_name(catalog_source s);

#endif
