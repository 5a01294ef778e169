/*
 * kv_cache.c — a sequence's keys and values (kv_cache.h): sizing against
 * the memory available, storage of new rows in the cache's type, and
 * truncation.
 */
#include "model/kv_cache.h"
#include "model/model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_ROUND 256        /* default contexts are multiples of this */
#define DEFAULT_CTX 4096     /* when the model does not say */
#define MAX_CTX (1 << 24)
#define GIB(x) ((double)(x) / (1024.0 * 1024.0 * 1024.0))

/* MemAvailable in bytes, or 0 when unknown. */
static size_t meminfo_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (size_t)kb * 1024;
}

static bool kv_type_ok(quant_type t)
{
    return t == QT_F32 || t == QT_F16 || t == QT_Q8_0;
}

size_t kv_cache_bytes_per_pos(const model *m, quant_type t)
{
    const model_config *c = &m->cfg;
    if (!kv_type_ok(t))
        return 0;
    int64_t blck = quant_traits_of(t)->blck;
    if (c->head_dim % blck || c->head_dim_v % blck)
        return 0;
    size_t row = quant_row_size(t, c->head_dim) + quant_row_size(t, c->head_dim_v);
    return row * (size_t)c->n_head_kv * (size_t)c->n_layer;
}

/* The context to reserve: the request, or the model's own capped by memory. */
static int pick_ctx(const model *m, const kv_cache_opts *o, size_t per_pos, int *n_ctx,
                    sw_err *err)
{
    size_t avail = o->mem_available ? o->mem_available : meminfo_available();
    const char *tname = quant_name(o->type);
    if (o->n_ctx > 0) {
        if (o->n_ctx > MAX_CTX)
            return sw_errf(err, SW_EINVAL, "KV cache: context of %d positions is too large "
                           "(at most %d)", o->n_ctx, MAX_CTX);
        size_t need = per_pos * (size_t)o->n_ctx;
        if (avail && need > avail)
            return sw_errf(err, SW_ENOMEM,
                           "KV cache: a context of %d positions needs %.2f GiB (%s), more than "
                           "the %.2f GiB of memory available; ask for a smaller context or a "
                           "smaller KV type (q8_0)", o->n_ctx, GIB(need), tname, GIB(avail));
        *n_ctx = o->n_ctx;
        return 0;
    }
    int want = m->cfg.n_ctx_train > 0 ? m->cfg.n_ctx_train : DEFAULT_CTX;
    want = want < MAX_CTX ? want : MAX_CTX;
    size_t fit = avail ? avail / 4 / per_pos : (size_t)want;
    if (fit < (size_t)want) {
        if (fit < CTX_ROUND)
            return sw_errf(err, SW_ENOMEM,
                           "KV cache: only %.2f GiB of memory is available, too little for a "
                           "context of %d positions (%.1f KiB each, %s)", GIB(avail), CTX_ROUND,
                           (double)per_pos / 1024, tname);
        want = (int)(fit / CTX_ROUND * CTX_ROUND);
    }
    *n_ctx = want;
    return 0;
}

int kv_cache_new(const model *m, const kv_cache_opts *opts, kv_cache **out, sw_err *err)
{
    *out = NULL;
    kv_cache_opts o = opts ? *opts : (kv_cache_opts){0};
    const model_config *c = &m->cfg;
    if (o.n_ctx < 0)
        return sw_errf(err, SW_EINVAL, "KV cache: negative context %d", o.n_ctx);
    if (!kv_type_ok(o.type))
        return sw_errf(err, SW_EUNSUPPORTED, "KV cache type %s is not supported (F32, F16, Q8_0)",
                       quant_name(o.type));
    size_t per_pos = kv_cache_bytes_per_pos(m, o.type);
    if (!per_pos)
        return sw_errf(err, SW_EUNSUPPORTED,
                       "KV cache type %s needs head dimensions that are multiples of %lld; this "
                       "model's are %d and %d", quant_name(o.type),
                       (long long)quant_traits_of(o.type)->blck, c->head_dim, c->head_dim_v);
    int n_ctx, rc = pick_ctx(m, &o, per_pos, &n_ctx, err);
    if (rc)
        return rc;

    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv)
        return sw_errf(err, SW_ENOMEM, "KV cache: out of memory");
    kv->m = m;
    kv->type = o.type;
    kv->n_ctx = n_ctx;
    kv->n_layer = c->n_layer;
    kv->n_head_kv = c->n_head_kv;
    kv->row_k = quant_row_size(o.type, c->head_dim);
    kv->row_v = quant_row_size(o.type, c->head_dim_v);
    kv->size = per_pos * (size_t)n_ctx;
    /* one reservation; pages are faulted in as positions fill */
    kv->mem = malloc(kv->size);
    kv->k = calloc((size_t)c->n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)c->n_layer, sizeof *kv->v);
    if (!kv->mem || !kv->k || !kv->v) {
        kv_cache_free(kv);
        return sw_errf(err, SW_ENOMEM, "KV cache: cannot reserve %.2f GiB for %d positions",
                       GIB(per_pos * (size_t)n_ctx), n_ctx);
    }
    size_t layer_k = kv->row_k * (size_t)c->n_head_kv * (size_t)n_ctx;
    size_t layer_v = kv->row_v * (size_t)c->n_head_kv * (size_t)n_ctx;
    for (int il = 0; il < c->n_layer; il++) {
        kv->k[il] = kv->mem + (layer_k + layer_v) * (size_t)il;
        kv->v[il] = kv->k[il] + layer_k;
    }
    kv->quantize = quant_kernels_get()->act_quant[QT_Q8_0];
    if (!kv->quantize)
        kv->quantize = quant_traits_of(QT_Q8_0)->from_float;
    *out = kv;
    return 0;
}

void kv_cache_free(kv_cache *kv)
{
    if (!kv)
        return;
    free(kv->mem);
    free(kv->k);
    free(kv->v);
    free(kv);
}

int kv_cache_n_ctx(const kv_cache *kv)
{
    return kv->n_ctx;
}

int kv_cache_pos(const kv_cache *kv)
{
    return kv->pos;
}

quant_type kv_cache_type(const kv_cache *kv)
{
    return kv->type;
}

size_t kv_cache_size(const kv_cache *kv)
{
    return kv->size;
}

int kv_cache_truncate(kv_cache *kv, int n, sw_err *err)
{
    if (n < 0 || n > kv->pos)
        return sw_errf(err, SW_EINVAL, "KV cache: cannot keep %d positions of %d", n, kv->pos);
    kv->pos = n;
    return 0;
}

void kv_cache_clear(kv_cache *kv)
{
    kv->pos = 0;
}

/* One head's row of n floats into the cache's type. */
static void store_row(const kv_cache *kv, uint8_t *dst, const float *x, int n)
{
    switch (kv->type) {
    case QT_F16:
        model_vec_get()->f32_to_f16(x, (uint16_t *)dst, n);
        break;
    case QT_Q8_0:
        kv->quantize(x, dst, n);
        break;
    default:
        memcpy(dst, x, sizeof(float) * (size_t)n);
        break;
    }
}

void kv_cache_store(kv_cache *kv, int layer, int pos, int n, const float *k, const float *v)
{
    const model_config *c = &kv->m->cfg;
    int hd = c->head_dim, hdv = c->head_dim_v, H = kv->n_head_kv;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            store_row(kv, kv_row_k(kv, layer, h, pos + t), k + ((size_t)t * H + h) * hd, hd);
            store_row(kv, kv_row_v(kv, layer, h, pos + t), v + ((size_t)t * H + h) * hdv, hdv);
        }
}

const float *kv_cache_rows_float(const kv_cache *kv, const uint8_t *row, int n, float *tmp)
{
    switch (kv->type) {
    case QT_F16:
        model_vec_get()->f16_to_f32((const uint16_t *)row, tmp, n);
        return tmp;
    case QT_Q8_0:
        model_vec_get()->q8_0_to_f32((const block_q8_0 *)row, tmp, n);
        return tmp;
    default:
        return (const float *)row;
    }
}
