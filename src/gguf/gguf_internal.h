/*
 * gguf_internal.h — private to src/gguf: the context layout shared by the
 * parser (gguf_read.c) and the accessors (gguf_get.c).
 */
#ifndef SW_GGUF_INTERNAL_H
#define SW_GGUF_INTERNAL_H

#include "gguf/gguf.h"
#include "util/arena.h"
#include "util/strmap.h"

struct gguf_ctx {
    char *path;             /* "" for memory images */
    uint32_t version;
    uint32_t alignment;
    uint64_t file_size;
    uint64_t data_offset;   /* absolute; == file_size when there is no data */
    int64_t n_kv, n_tensors;
    gguf_kv *kvs;           /* [n_kv], in file order */
    gguf_tensor *tensors;   /* [n_tensors], in file order */
    strmap kv_index;        /* key -> index in kvs */
    strmap tensor_index;    /* name -> index in tensors */
    arena mem;              /* everything above that is variable-sized */
    void *map;              /* GGUF_MMAP: the whole file */
    void *data;             /* GGUF_READ: the data section, owned */
    const uint8_t *image;   /* gguf_open_memory: the caller's buffer */
};

#endif
