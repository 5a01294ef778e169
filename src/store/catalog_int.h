/*
 * catalog_int.h — what catalog.c (names, resolution, split parts, headers)
 * and catalog_scan.c (walking the stores) share. Not a public header.
 */
#ifndef SW_CATALOG_INT_H
#define SW_CATALOG_INT_H

#include "store/catalog.h"

struct catalog {
    catalog_entry *e;
    size_t n, cap;
    catalog_root *roots;
    size_t n_roots, roots_cap;
};

/* Scans the --models-dir directories and, if with_defaults, the Ollama,
 * Hugging Face and LM Studio stores. */
int catalog_scan_roots(const catalog_opts *opts, bool with_defaults, catalog **out,
                       sw_err *err);

/* Split-part file names: "<prefix>-00002-of-00005.gguf". Returns the
 * 1-based part number (0: not a split part) and sets *count and *prefix_len
 * (the bytes of name before "-00002..."). */
int catalog_split_parse(const char *name, size_t *prefix_len, int *count);
/* The path of part `no` of `count` next to part_path, which is one of its
 * parts; malloc'd (NULL when out of memory). */
char *catalog_split_sibling(const char *part_path, int no, int count);

/* A file name with ".gguf" and any split suffix removed, into buf. */
void catalog_model_stem(const char *file, char *buf, size_t len);

#endif
