/*
 * gguf.h — reading and writing GGUF files (versions 2 and 3, little-endian).
 *
 * A GGUF file is: magic "GGUF", version, tensor count, metadata count, the
 * metadata key/value pairs, the tensor infos (name, dims, type, offset), then
 * padding to general.alignment (default 32) and the data section, in which
 * every tensor's offset is relative to the section's start.
 *
 * Reading never trusts the file. Every count, length, offset, dimension and
 * type id is checked against the file's size with overflow-safe arithmetic
 * before it is used, so a malformed file yields one error naming what is
 * wrong (and where), never a crash, hang or allocation larger than the file.
 * Everything the reader keeps (keys, strings, arrays, tensor infos) is copied
 * into memory the context owns, so nothing points into the file.
 *
 * Data access is the caller's choice (gguf_open flags):
 *   GGUF_NO_DATA  only the header is read; callers read tensor bytes
 *                 themselves at gguf_data_offset() + t->offset (the
 *                 streaming store does this with O_DIRECT).
 *   GGUF_MMAP     the file is mapped read-only; gguf_tensor_data() points in.
 *   GGUF_READ     the data section is read into memory the context owns.
 *
 * Typed accessors (gguf_get_u32, ...) return SW_ENOTFOUND for a missing key
 * and SW_ETYPE for a value of another kind. Integer getters accept any
 * integer type whose value fits the requested one (SW_ERANGE otherwise);
 * float getters accept F32 and F64.
 */
#ifndef SW_GGUF_H
#define SW_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_vtype {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_vtype;

/* A string: bytes, length, and a NUL after them (so .ptr is a C string
 * unless the value itself contains NUL bytes). */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    const char *key;     /* NUL-terminated, no embedded NUL */
    gguf_vtype type;
    gguf_vtype arr_type; /* element type when type == ARRAY */
    uint64_t arr_n;      /* element count when type == ARRAY */
    union {
        uint64_t u64;     /* UINT8..UINT64 zero-extended */
        int64_t i64;      /* INT8..INT64 sign-extended */
        double f64;       /* FLOAT32, FLOAT64 */
        bool b;
        gguf_str str;
        const void *arr;  /* numbers: packed little-endian; strings: gguf_str[] */
    } v;
} gguf_kv;

typedef struct gguf_tensor {
    const char *name;
    int type;                   /* quant_type id */
    uint32_t n_dims;            /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS];  /* elements per dim, ne[0] innermost; unused = 1 */
    int64_t n_elements;
    uint64_t offset;            /* from the data section start */
    uint64_t size;              /* bytes */
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

enum { GGUF_NO_DATA = 0, GGUF_MMAP = 1, GGUF_READ = 2 };

int gguf_open(const char *path, int flags, gguf_ctx **out, sw_err *err);
/* Parses a file image already in memory (the fuzzer, tests). The buffer must
 * outlive the context if data is accessed. */
int gguf_open_memory(const void *buf, size_t len, gguf_ctx **out, sw_err *err);
void gguf_close(gguf_ctx *ctx);

uint32_t gguf_version(const gguf_ctx *ctx);
uint64_t gguf_file_size(const gguf_ctx *ctx);
uint32_t gguf_alignment(const gguf_ctx *ctx);
uint64_t gguf_data_offset(const gguf_ctx *ctx); /* absolute file offset */
const char *gguf_path(const gguf_ctx *ctx);     /* "" for memory images */

/* --- metadata ---------------------------------------------------------- */
int64_t gguf_n_kv(const gguf_ctx *ctx);
const gguf_kv *gguf_kv_at(const gguf_ctx *ctx, int64_t i);
const gguf_kv *gguf_find_kv(const gguf_ctx *ctx, const char *key);
const char *gguf_vtype_name(gguf_vtype t);
size_t gguf_vtype_size(gguf_vtype t); /* 0 for STRING/ARRAY */

int gguf_get_u32(const gguf_ctx *ctx, const char *key, uint32_t *out, sw_err *err);
int gguf_get_i32(const gguf_ctx *ctx, const char *key, int32_t *out, sw_err *err);
int gguf_get_u64(const gguf_ctx *ctx, const char *key, uint64_t *out, sw_err *err);
int gguf_get_i64(const gguf_ctx *ctx, const char *key, int64_t *out, sw_err *err);
int gguf_get_f32(const gguf_ctx *ctx, const char *key, float *out, sw_err *err);
int gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out, sw_err *err);
int gguf_get_str(const gguf_ctx *ctx, const char *key, const char **out, sw_err *err);
/* Array of any element type: its type, count and data (see gguf_kv.v.arr). */
int gguf_get_arr(const gguf_ctx *ctx, const char *key, gguf_vtype *type, uint64_t *n,
                 const void **data, sw_err *err);
/* Array of strings. */
int gguf_get_arr_str(const gguf_ctx *ctx, const char *key, const gguf_str **strs,
                     uint64_t *n, sw_err *err);
/* Element i of a numeric array as double / int64 (any numeric element type). */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

/* --- tensors ----------------------------------------------------------- */
int64_t gguf_n_tensors(const gguf_ctx *ctx);
const gguf_tensor *gguf_tensor_at(const gguf_ctx *ctx, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name);
/* The tensor's bytes (GGUF_MMAP, GGUF_READ, memory images), else NULL. */
const void *gguf_tensor_data(const gguf_ctx *ctx, const gguf_tensor *t);

/* --- writing ----------------------------------------------------------- */
/*
 * Build the header in memory, then stream tensor data in the order the
 * tensors were added (a 17 GB file never needs to be in memory):
 *
 *   gguf_writer *w = gguf_writer_new();
 *   gguf_writer_set_str(w, "general.architecture", "llama");
 *   gguf_writer_add_tensor(w, "token_embd.weight", QT_Q4_K, 2, ne, err);
 *   gguf_writer_begin(w, "out.gguf", err);         // writes the header
 *   gguf_writer_write_tensor(w, bytes, size, err);  // once per tensor, in order
 *   gguf_writer_finish(w, err);                     // closes; checks all written
 *   gguf_writer_free(w);
 */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Set (or replace) a key. Strings are copied. */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Numeric array: n elements of type (not STRING/ARRAY), packed little-endian. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype type, const void *data,
                        uint64_t n);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n);
/* Copies a key/value pair read from another file (any type). */
int gguf_writer_set_kv(gguf_writer *w, const gguf_kv *kv);
/* Before any tensor is added (tensor offsets depend on it). */
int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, sw_err *err);
int gguf_writer_begin(gguf_writer *w, const char *path, sw_err *err);
int gguf_writer_write_tensor(gguf_writer *w, const void *data, uint64_t size, sw_err *err);
int gguf_writer_finish(gguf_writer *w, sw_err *err);

#endif
