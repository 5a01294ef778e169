/*
 * gguf_write.c — writing GGUF v3 files.
 *
 * The header (metadata and tensor infos) is assembled in memory; tensor data
 * is then streamed to the file in the order the tensors were added, each
 * padded to the alignment, so files far larger than memory can be written.
 * Keys keep the order in which they were first set; setting a key again
 * replaces its value in place.
 */
#include "gguf/gguf.h"
#include "quant/quant.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} wbuf;

typedef struct wkv {
    char *key;
    wbuf val; /* encoded type + value, as in the file */
} wkv;

typedef struct wtensor {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t offset, size;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    uint64_t data_size; /* so far, padded */
    FILE *f;
    char *path;
    size_t next_tensor; /* streaming position */
    int failed;
};

static void wb_put(wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }

static void wb_str(wbuf *b, const char *s, uint64_t len)
{
    wb_u64(b, len);
    wb_put(b, s, len);
}

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    if (w->f)
        fclose(w->f);
    free(w->kvs);
    free(w->tensors);
    free(w->path);
    free(w);
}

/* The value buffer for key, emptied (new keys go last). */
static wbuf *slot(gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key)) {
            w->kvs[i].val.len = 0;
            return &w->kvs[i].val;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs)
            return NULL;
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k)
        return NULL;
    w->kvs[w->n_kv] = (wkv){k, {0}};
    return &w->kvs[w->n_kv++].val;
}

static int set_raw(gguf_writer *w, const char *key, gguf_vtype t, const void *v, size_t n)
{
    wbuf *b = slot(w, key);
    if (!b)
        return SW_ENOMEM;
    wb_u32(b, t);
    wb_put(b, v, n);
    return b->oom ? SW_ENOMEM : 0;
}

int gguf_writer_set_u8(gguf_writer *w, const char *k, uint8_t v) { return set_raw(w, k, GGUF_TYPE_UINT8, &v, 1); }
int gguf_writer_set_i8(gguf_writer *w, const char *k, int8_t v) { return set_raw(w, k, GGUF_TYPE_INT8, &v, 1); }
int gguf_writer_set_u16(gguf_writer *w, const char *k, uint16_t v) { return set_raw(w, k, GGUF_TYPE_UINT16, &v, 2); }
int gguf_writer_set_i16(gguf_writer *w, const char *k, int16_t v) { return set_raw(w, k, GGUF_TYPE_INT16, &v, 2); }
int gguf_writer_set_u32(gguf_writer *w, const char *k, uint32_t v) { return set_raw(w, k, GGUF_TYPE_UINT32, &v, 4); }
int gguf_writer_set_i32(gguf_writer *w, const char *k, int32_t v) { return set_raw(w, k, GGUF_TYPE_INT32, &v, 4); }
int gguf_writer_set_u64(gguf_writer *w, const char *k, uint64_t v) { return set_raw(w, k, GGUF_TYPE_UINT64, &v, 8); }
int gguf_writer_set_i64(gguf_writer *w, const char *k, int64_t v) { return set_raw(w, k, GGUF_TYPE_INT64, &v, 8); }
int gguf_writer_set_f32(gguf_writer *w, const char *k, float v) { return set_raw(w, k, GGUF_TYPE_FLOAT32, &v, 4); }
int gguf_writer_set_f64(gguf_writer *w, const char *k, double v) { return set_raw(w, k, GGUF_TYPE_FLOAT64, &v, 8); }

int gguf_writer_set_bool(gguf_writer *w, const char *k, bool v)
{
    uint8_t b = v;
    return set_raw(w, k, GGUF_TYPE_BOOL, &b, 1);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    wbuf *b = slot(w, key);
    if (!b)
        return SW_ENOMEM;
    wb_u32(b, GGUF_TYPE_STRING);
    wb_str(b, v, strlen(v));
    return b->oom ? SW_ENOMEM : 0;
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype type, const void *data,
                        uint64_t n)
{
    size_t es = gguf_vtype_size(type);
    if (!es || n > SIZE_MAX / es)
        return SW_EINVAL;
    wbuf *b = slot(w, key);
    if (!b)
        return SW_ENOMEM;
    wb_u32(b, GGUF_TYPE_ARRAY);
    wb_u32(b, type);
    wb_u64(b, n);
    wb_put(b, data, (size_t)n * es);
    return b->oom ? SW_ENOMEM : 0;
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n)
{
    wbuf *b = slot(w, key);
    if (!b)
        return SW_ENOMEM;
    wb_u32(b, GGUF_TYPE_ARRAY);
    wb_u32(b, GGUF_TYPE_STRING);
    wb_u64(b, n);
    for (uint64_t i = 0; i < n; i++)
        wb_str(b, strs[i].ptr, strs[i].len);
    return b->oom ? SW_ENOMEM : 0;
}

int gguf_writer_set_kv(gguf_writer *w, const gguf_kv *kv)
{
    uint8_t raw[8];
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        wbuf *b = slot(w, kv->key);
        if (!b)
            return SW_ENOMEM;
        wb_u32(b, GGUF_TYPE_STRING);
        wb_str(b, kv->v.str.ptr, kv->v.str.len);
        return b->oom ? SW_ENOMEM : 0;
    }
    case GGUF_TYPE_ARRAY:
        if (kv->arr_type == GGUF_TYPE_STRING)
            return gguf_writer_set_arr_str(w, kv->key, kv->v.arr, kv->arr_n);
        return gguf_writer_set_arr(w, kv->key, kv->arr_type, kv->v.arr, kv->arr_n);
    case GGUF_TYPE_FLOAT32: {
        float f = (float)kv->v.f64;
        return set_raw(w, kv->key, kv->type, &f, 4);
    }
    case GGUF_TYPE_BOOL:
        return gguf_writer_set_bool(w, kv->key, kv->v.b);
    default:
        /* integers and f64: the low bytes of the 64-bit union, little-endian */
        memcpy(raw, &kv->v.u64, 8);
        return set_raw(w, kv->key, kv->type, raw, gguf_vtype_size(kv->type));
    }
}

int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) || w->n_tensors)
        return SW_EINVAL; /* offsets of tensors already added use the old one */
    w->alignment = alignment;
    return gguf_writer_set_u32(w, "general.alignment", alignment);
}

static uint64_t pad_to(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, sw_err *err)
{
    const quant_traits *tr = quant_traits_of(type);
    if (!tr)
        return sw_errf(err, SW_EINVAL, "tensor '%s': unknown type %d", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return sw_errf(err, SW_EINVAL, "tensor '%s': n_dims %u", name, n_dims);
    if (w->f)
        return sw_errf(err, SW_EINVAL, "tensor '%s' added after the header was written", name);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || n > INT64_MAX / (uint64_t)ne[d])
            return sw_errf(err, SW_EINVAL, "tensor '%s': bad dimension %" PRId64, name, ne[d]);
        t.ne[d] = ne[d];
        n *= (uint64_t)ne[d];
    }
    if (ne[0] % tr->blck)
        return sw_errf(err, SW_EINVAL, "tensor '%s': row of %" PRId64 " is not a multiple of %s's block %" PRId64,
                       name, ne[0], tr->name, tr->blck);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return sw_errf(err, SW_EINVAL, "duplicate tensor name '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts)
            return sw_errf(err, SW_ENOMEM, "out of memory");
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name)))
        return sw_errf(err, SW_ENOMEM, "out of memory");
    t.size = n / (uint64_t)tr->blck * tr->size;
    t.offset = w->data_size;
    w->data_size = pad_to(w->data_size + t.size, w->alignment);
    w->tensors[w->n_tensors++] = t;
    return 0;
}

static int write_all(gguf_writer *w, const void *p, size_t n, sw_err *err)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        w->failed = 1;
        return sw_errf(err, SW_EIO, "%s: write failed: %s", w->path, strerror(errno));
    }
    return 0;
}

static int write_zeros(gguf_writer *w, uint64_t n, sw_err *err)
{
    static const uint8_t zeros[64];
    int rc = 0;
    while (n && !rc) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        rc = write_all(w, zeros, k, err);
        n -= k;
    }
    return rc;
}

int gguf_writer_begin(gguf_writer *w, const char *path, sw_err *err)
{
    wbuf h = {0};
    wb_u32(&h, GGUF_MAGIC);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_tensors);
    wb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&h, w->kvs[i].key, strlen(w->kvs[i].key));
        wb_put(&h, w->kvs[i].val.p, w->kvs[i].val.len);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        wb_str(&h, t->name, strlen(t->name));
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            wb_u64(&h, (uint64_t)t->ne[d]);
        wb_u32(&h, (uint32_t)t->type);
        wb_u64(&h, t->offset);
    }
    int rc = 0;
    if (h.oom) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto out;
    }
    if (!(w->path = strdup(path)) || !(w->f = fopen(path, "wb"))) {
        rc = sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = write_all(w, h.p, h.len, err);
    if (!rc)
        rc = write_zeros(w, pad_to(h.len, w->alignment) - h.len, err);
out:
    free(h.p);
    return rc;
}

int gguf_writer_write_tensor(gguf_writer *w, const void *data, uint64_t size, sw_err *err)
{
    if (!w->f || w->next_tensor >= w->n_tensors)
        return sw_errf(err, SW_EINVAL, "gguf writer: no tensor left to write");
    const wtensor *t = &w->tensors[w->next_tensor];
    if (size != t->size)
        return sw_errf(err, SW_EINVAL, "tensor '%s': got %" PRIu64 " bytes, expected %" PRIu64,
                       t->name, size, t->size);
    int rc = write_all(w, data, (size_t)size, err);
    if (!rc)
        rc = write_zeros(w, pad_to(size, w->alignment) - size, err);
    w->next_tensor++;
    return rc;
}

int gguf_writer_finish(gguf_writer *w, sw_err *err)
{
    if (!w->f)
        return sw_errf(err, SW_EINVAL, "gguf writer: header not written");
    int rc = 0;
    if (w->next_tensor != w->n_tensors)
        rc = sw_errf(err, SW_EINVAL, "gguf writer: %zu of %zu tensors written", w->next_tensor,
                     w->n_tensors);
    if (fclose(w->f) != 0 && !rc)
        rc = sw_errf(err, SW_EIO, "%s: %s", w->path, strerror(errno));
    w->f = NULL;
    if (!rc && w->failed)
        rc = sw_errf(err, SW_EIO, "%s: an earlier write failed", w->path);
    return rc;
}
