/*
 * store.c — the weight store (store.h): a GGUF context (mapped, read, or
 * header only) plus, per MoE layer, the three expert tensors the model
 * bound to it. In STORE_STREAM the resident tensors and the experts come
 * from the expert cache (expert_cache.h).
 */
#include "store/store.h"

#include "store/expert_cache.h"
#include "store/predict.h"

#include <stdlib.h>
#include <string.h>

#define STORE_MAX_LAYERS 4096

/* One layer's expert tensors; t[0] gate (may be NULL), t[1] up, t[2] down. */
struct expert_bind {
    const gguf_tensor *t[3];
    int n_expert;
};

struct store {
    gguf_ctx *gguf;
    store_mode mode;
    xcache *xc;                  /* STORE_STREAM only */
    struct expert_bind *experts; /* [n_layers] */
    int n_layers;
};

int store_open(const char *path, store **out, sw_err *err)
{
    return store_open_opts(path, NULL, out, err);
}

const char *store_mode_name(store_mode m)
{
    return m == STORE_STREAM ? "stream" : m == STORE_RESIDENT ? "resident" : "mmap";
}

int store_open_opts(const char *path, const store_opts *opts, store **out, sw_err *err)
{
    static const store_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    s->mode = opts->mode;
    int flags = s->mode == STORE_STREAM     ? GGUF_NO_DATA
                : s->mode == STORE_RESIDENT ? GGUF_READ
                                            : GGUF_MMAP;
    int rc = gguf_open(path, flags, &s->gguf, err);
    if (!rc && s->mode == STORE_STREAM)
        rc = xcache_open(s->gguf, path, opts, &s->xc, err);
    if (rc) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_stats_get(store *s, store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->mode = s->mode;
    out->policy = out->reader = out->budget_reason = "";
    out->mem_available = -1;
    out->psi_some_avg10 = -1;
    if (s->xc) {
        xcache_stats(s->xc, out);
        return;
    }
    for (int64_t i = 0; i < gguf_n_tensors(s->gguf); i++)
        out->resident_bytes += (int64_t)gguf_tensor_at(s->gguf, i)->size;
}

void store_predict_stats(const store *s, int layer, uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
    if (s->xc)
        xcache_predict_stats(s->xc, XPRED_AUTO, layer, out);
}

_Static_assert(STORE_N_PREDICTORS == XPRED_COUNT, "store.h lists predict.h's kinds");

const char *store_predictor_name(int kind)
{
    return xpred_kind_name((xpred_kind)kind);
}

void store_predictor_stats(const store *s, int kind, int layer, uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
    if (s->xc && kind >= 0 && kind < STORE_N_PREDICTORS)
        xcache_predict_stats(s->xc, kind, layer, out);
}

void store_set_budget(store *s, int64_t bytes)
{
    if (s->xc)
        xcache_set_budget(s->xc, bytes);
}

void store_maintain(store *s)
{
    if (s->xc)
        xcache_maintain(s->xc);
}

void store_close(store *s)
{
    if (!s)
        return;
    xcache_close(s->xc);
    gguf_close(s->gguf);
    free(s->experts);
    free(s);
}

const gguf_ctx *store_gguf(const store *s)
{
    return s->gguf;
}

static int fill_tensor(store *s, const gguf_tensor *t, store_tensor *out, sw_err *err)
{
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr)
        return sw_errf(err, SW_EUNSUPPORTED, "tensor '%s': unknown type %d", t->name, t->type);
    out->name = t->name;
    out->type = (quant_type)t->type;
    out->n_dims = (int)t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->size = (size_t)t->size;
    out->data = s->xc ? xcache_tensor_data(s->xc, t) : gguf_tensor_data(s->gguf, t);
    if (!out->data)
        return sw_errf(err, SW_EIO, "tensor '%s': data not %s", t->name,
                       s->xc ? "resident (its experts are streamed)" : "mapped");
    return 0;
}

int store_tensor_opt(store *s, const char *name, store_tensor *out, sw_err *err)
{
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = gguf_find_tensor(s->gguf, name);
    return t ? fill_tensor(s, t, out, err) : 0;
}

int store_tensor_get(store *s, const char *name, store_tensor *out, sw_err *err)
{
    int rc = store_tensor_opt(s, name, out, err);
    if (rc == 0 && !out->data)
        return sw_errf(err, SW_ENOTFOUND, "tensor '%s' is missing from the file", name);
    return rc;
}

int store_bind_experts(store *s, int layer, const char *gate, const char *up, const char *down,
                       sw_err *err)
{
    if (layer < 0 || layer >= STORE_MAX_LAYERS)
        return sw_errf(err, SW_EINVAL, "store: layer %d out of range", layer);
    if (layer >= s->n_layers) {
        struct expert_bind *e = realloc(s->experts, sizeof *e * (size_t)(layer + 1));
        if (!e)
            return sw_errf(err, SW_ENOMEM, "store: out of memory");
        memset(e + s->n_layers, 0, sizeof *e * (size_t)(layer + 1 - s->n_layers));
        s->experts = e;
        s->n_layers = layer + 1;
    }
    struct expert_bind b = {{NULL, NULL, NULL}, 0};
    const char *names[3] = {gate, up, down};
    for (int i = 0; i < 3; i++) {
        if (!names[i])
            continue;
        const gguf_tensor *t = gguf_find_tensor(s->gguf, names[i]);
        if (!t)
            return sw_errf(err, SW_ENOTFOUND, "tensor '%s' is missing from the file", names[i]);
        if (t->n_dims != 3)
            return sw_errf(err, SW_EFORMAT, "tensor '%s': expected 3 dimensions, has %u",
                           names[i], t->n_dims);
        const quant_traits *tr = quant_traits_of(t->type);
        if (!tr || t->ne[0] % tr->blck)
            return sw_errf(err, SW_EFORMAT, "tensor '%s': rows of %lld are not whole %s blocks",
                           names[i], (long long)t->ne[0], quant_name(t->type));
        if (b.n_expert && t->ne[2] != b.n_expert)
            return sw_errf(err, SW_EFORMAT, "tensor '%s': %lld experts, others of layer %d have %d",
                           names[i], (long long)t->ne[2], layer, b.n_expert);
        if (t->ne[2] > INT32_MAX)
            return sw_errf(err, SW_EFORMAT, "tensor '%s': too many experts", names[i]);
        b.n_expert = (int)t->ne[2];
        b.t[i] = t;
    }
    if (!b.t[1] || !b.t[2])
        return sw_errf(err, SW_EINVAL, "store: layer %d: experts need up and down tensors", layer);
    int rc = s->xc ? xcache_bind(s->xc, layer, b.t, b.n_expert, err) : 0;
    if (rc)
        return rc;
    s->experts[layer] = b;
    return 0;
}

int store_n_experts(const store *s, int layer)
{
    return layer >= 0 && layer < s->n_layers ? s->experts[layer].n_expert : 0;
}

static void slice(store *s, const gguf_tensor *t, int expert, store_mat *m)
{
    memset(m, 0, sizeof *m);
    if (!t)
        return;
    m->type = (quant_type)t->type;
    m->cols = t->ne[0];
    m->rows = t->ne[1];
    m->row_bytes = quant_row_size(m->type, m->cols);
    m->data = (const uint8_t *)gguf_tensor_data(s->gguf, t) +
              (size_t)expert * (size_t)m->rows * m->row_bytes;
}

int store_expert(store *s, int layer, int expert, store_mat *gate, store_mat *up, store_mat *down,
                 sw_err *err)
{
    if (layer < 0 || layer >= s->n_layers || !s->experts[layer].n_expert)
        return sw_errf(err, SW_EINVAL, "store: layer %d has no experts bound", layer);
    const struct expert_bind *b = &s->experts[layer];
    if (s->xc) {
        store_mat m[3];
        int rc = xcache_get(s->xc, layer, expert, m, err);
        if (!rc)
            *gate = m[0], *up = m[1], *down = m[2];
        return rc;
    }
    if (expert < 0 || expert >= b->n_expert)
        return sw_errf(err, SW_EINVAL, "store: layer %d has no expert %d (of %d)", layer, expert,
                       b->n_expert);
    slice(s, b->t[0], expert, gate);
    slice(s, b->t[1], expert, up);
    slice(s, b->t[2], expert, down);
    return 0;
}

int store_expert_plan(store *s, int layer, const int *experts, int n, sw_err *err)
{
    return s->xc ? xcache_plan(s->xc, layer, experts, n, err) : 0;
}

void store_set_wait_hook(store *s, void (*fn)(void *ctx), void *ctx)
{
    if (s->xc)
        xcache_set_wait_hook(s->xc, fn, ctx);
}

bool store_wants_hints(const store *s)
{
    return s->xc && xcache_wants_hints(s->xc);
}

void store_expert_hint(store *s, int layer, const int *experts, int n)
{
    if (s->xc)
        xcache_hint(s->xc, layer, experts, n);
}

void store_expert_release(store *s, int layer, int expert)
{
    if (s->xc)
        xcache_release(s->xc, layer, expert);
}
