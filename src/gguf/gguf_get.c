/* gguf_get.c — looking things up in a parsed GGUF context. */
#include "gguf/gguf_internal.h"

#include <inttypes.h>
#include <string.h>

uint32_t gguf_version(const gguf_ctx *g) { return g->version; }
uint64_t gguf_file_size(const gguf_ctx *g) { return g->file_size; }
uint32_t gguf_alignment(const gguf_ctx *g) { return g->alignment; }
uint64_t gguf_data_offset(const gguf_ctx *g) { return g->data_offset; }
const char *gguf_path(const gguf_ctx *g) { return g->path; }
int64_t gguf_n_kv(const gguf_ctx *g) { return g->n_kv; }
int64_t gguf_n_tensors(const gguf_ctx *g) { return g->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_ctx *g, int64_t i)
{
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_ctx *g, const char *key)
{
    int64_t i = strmap_get(&g->kv_index, key);
    return i >= 0 ? &g->kvs[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name)
{
    int64_t i = strmap_get(&g->tensor_index, name);
    return i >= 0 ? &g->tensors[i] : NULL;
}

const void *gguf_tensor_data(const gguf_ctx *g, const gguf_tensor *t)
{
    if (g->map)
        return (const uint8_t *)g->map + g->data_offset + t->offset;
    if (g->image)
        return g->image + g->data_offset + t->offset;
    if (g->data)
        return (const uint8_t *)g->data + t->offset;
    return NULL;
}

static int lookup(const gguf_ctx *g, const char *key, const gguf_kv **kv, sw_err *err)
{
    *kv = gguf_find_kv(g, key);
    if (!*kv)
        return sw_errf(err, SW_ENOTFOUND, "metadata key '%s' not found", key);
    return 0;
}

static int wrong_type(const gguf_kv *kv, const char *want, sw_err *err)
{
    return sw_errf(err, SW_ETYPE, "metadata key '%s' has type %s, expected %s", kv->key,
                   gguf_vtype_name(kv->type), want);
}

static int is_signed(gguf_vtype t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

static int is_unsigned(gguf_vtype t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

/* Any integer value, checked against [lo, hi] (as signed) or hi (unsigned). */
static int get_int(const gguf_ctx *g, const char *key, int64_t lo, uint64_t hi, int64_t *si,
                   uint64_t *ui, const char *want, sw_err *err)
{
    const gguf_kv *kv;
    int rc = lookup(g, key, &kv, err);
    if (rc)
        return rc;
    if (is_signed(kv->type)) {
        int64_t v = kv->v.i64;
        if (v < lo || (v > 0 && (uint64_t)v > hi))
            return sw_errf(err, SW_ERANGE, "metadata key '%s' = %" PRId64 " does not fit %s", key,
                           v, want);
        *si = v;
        *ui = (uint64_t)v;
        return 0;
    }
    if (is_unsigned(kv->type)) {
        uint64_t v = kv->v.u64;
        if (v > hi)
            return sw_errf(err, SW_ERANGE, "metadata key '%s' = %" PRIu64 " does not fit %s", key,
                           v, want);
        *si = (int64_t)v;
        *ui = v;
        return 0;
    }
    return wrong_type(kv, want, err);
}

int gguf_get_u32(const gguf_ctx *g, const char *key, uint32_t *out, sw_err *err)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(g, key, 0, UINT32_MAX, &s, &u, "u32", err);
    if (!rc)
        *out = (uint32_t)u;
    return rc;
}

int gguf_get_i32(const gguf_ctx *g, const char *key, int32_t *out, sw_err *err)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, &s, &u, "i32", err);
    if (!rc)
        *out = (int32_t)s;
    return rc;
}

int gguf_get_u64(const gguf_ctx *g, const char *key, uint64_t *out, sw_err *err)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(g, key, 0, UINT64_MAX, &s, &u, "u64", err);
    if (!rc)
        *out = u;
    return rc;
}

int gguf_get_i64(const gguf_ctx *g, const char *key, int64_t *out, sw_err *err)
{
    int64_t s;
    uint64_t u;
    int rc = get_int(g, key, INT64_MIN, INT64_MAX, &s, &u, "i64", err);
    if (!rc)
        *out = s;
    return rc;
}

int gguf_get_f32(const gguf_ctx *g, const char *key, float *out, sw_err *err)
{
    const gguf_kv *kv;
    int rc = lookup(g, key, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return wrong_type(kv, "f32", err);
    *out = (float)kv->v.f64;
    return 0;
}

int gguf_get_bool(const gguf_ctx *g, const char *key, bool *out, sw_err *err)
{
    const gguf_kv *kv;
    int rc = lookup(g, key, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GGUF_TYPE_BOOL)
        return wrong_type(kv, "bool", err);
    *out = kv->v.b;
    return 0;
}

int gguf_get_str(const gguf_ctx *g, const char *key, const char **out, sw_err *err)
{
    const gguf_kv *kv;
    int rc = lookup(g, key, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GGUF_TYPE_STRING)
        return wrong_type(kv, "string", err);
    *out = kv->v.str.ptr;
    return 0;
}

int gguf_get_arr(const gguf_ctx *g, const char *key, gguf_vtype *type, uint64_t *n,
                 const void **data, sw_err *err)
{
    const gguf_kv *kv;
    int rc = lookup(g, key, &kv, err);
    if (rc)
        return rc;
    if (kv->type != GGUF_TYPE_ARRAY)
        return wrong_type(kv, "array", err);
    *type = kv->arr_type;
    *n = kv->arr_n;
    *data = kv->v.arr;
    return 0;
}

int gguf_get_arr_str(const gguf_ctx *g, const char *key, const gguf_str **strs, uint64_t *n,
                     sw_err *err)
{
    gguf_vtype t = GGUF_TYPE_COUNT;
    const void *data = NULL;
    int rc = gguf_get_arr(g, key, &t, n, &data, err);
    if (rc)
        return rc;
    if (t != GGUF_TYPE_STRING)
        return sw_errf(err, SW_ETYPE, "metadata key '%s' is an array of %s, expected strings", key,
                       gguf_vtype_name(t));
    *strs = data;
    return 0;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i)
{
    const uint8_t *p = (const uint8_t *)kv->v.arr + i * gguf_vtype_size(kv->arr_type);
    float f;
    double d;
    switch (kv->arr_type) {
    case GGUF_TYPE_FLOAT32: memcpy(&f, p, 4); return f;
    case GGUF_TYPE_FLOAT64: memcpy(&d, p, 8); return d;
    case GGUF_TYPE_UINT64: {
        uint64_t u;
        memcpy(&u, p, 8);
        return (double)u;
    }
    default: return (double)gguf_arr_i64(kv, i);
    }
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i)
{
    const uint8_t *p = (const uint8_t *)kv->v.arr + i * gguf_vtype_size(kv->arr_type);
    uint16_t u16;
    uint32_t u32;
    int64_t v = 0;
    switch (kv->arr_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return p[0];
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_UINT16: memcpy(&u16, p, 2); return u16;
    case GGUF_TYPE_INT16: memcpy(&u16, p, 2); return (int16_t)u16;
    case GGUF_TYPE_UINT32: memcpy(&u32, p, 4); return u32;
    case GGUF_TYPE_INT32: memcpy(&u32, p, 4); return (int32_t)u32;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: memcpy(&v, p, 8); return v;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64: {
        double d = gguf_arr_f64(kv, i); /* truncated; out of range (or NaN) gives 0 */
        return d > -9.2e18 && d < 9.2e18 ? (int64_t)d : 0;
    }
    default: return 0;
    }
}
