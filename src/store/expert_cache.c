/*
 * expert_cache.c — entries, reads, plans, prediction and counters of the
 * streaming store (expert_cache.h has the design and the life of an entry).
 */
#include "store/expert_cache_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static xentry *entry_of(xcache *c, policy_key k)
{
    return &c->L[policy_key_layer(k)].e[policy_key_expert(k)];
}

static uint8_t *slot_at(const xcache *c, int32_t slot)
{
    return c->slots + (size_t)slot * c->slot_bytes;
}

/* --- binding ------------------------------------------------------------- */

int xcache_bind(xcache *c, int layer, const gguf_tensor *const t[3], int n_expert, sw_err *err)
{
    if (layer >= c->n_layers)
        return sw_errf(err, SW_EUNSUPPORTED,
                       "store: layer %d's experts are not named blk.N.ffn_*_exps.weight; "
                       "streaming cannot hold them", layer);
    xlayer *L = &c->L[layer];
    if (L->n_expert)
        return sw_errf(err, SW_EINVAL, "store: layer %d's experts are bound twice", layer);
    size_t pos = 0;
    for (int p = 0; p < 3; p++) {
        L->t[p] = t[p];
        if (!t[p])
            continue;
        if (!c->res_ptr || xcache_tensor_data(c, t[p]))
            return sw_errf(err, SW_EUNSUPPORTED, "store: '%s' is resident, not streamed",
                           t[p]->name);
        L->off[p] = gguf_data_offset(c->g) + t[p]->offset;
        L->len[p] = (size_t)(t[p]->size / (uint64_t)n_expert);
        L->part_off[p] = pos;
        size_t span = reader_slot_bytes(&c->f, L->len[p]);
        pos += (span + 4095) / 4096 * 4096;
    }
    if (pos > c->slot_bytes)
        return sw_errf(err, SW_EUNSUPPORTED, "store: layer %d's experts (%zu bytes) exceed a slot",
                       layer, pos);
    if (c->pred)
        return sw_errf(err, SW_EINVAL, "store: layer %d's experts are bound after the first plan",
                       layer);
    L->e = calloc((size_t)n_expert, sizeof *L->e);
    if (!L->e)
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    for (int e = 0; e < n_expert; e++)
        L->e[e].slot = -1;
    L->n_expert = n_expert;
    return 0;
}

/* --- reads ---------------------------------------------------------------- */

void xcache_on_done(void *ctx, const reader_result *res)
{
    xcache *c = ctx;
    if (res->tag & XC_TAG_RESIDENT) {
        c->res_pending--;
        if (res->rc && !c->res_msg[0])
            snprintf(c->res_msg, sizeof c->res_msg, "%s", res->msg);
        return;
    }
    policy_key k = (policy_key)(res->tag >> 2);
    xentry *e = entry_of(c, k);
    e->pending &= (uint8_t)~(1u << (res->tag & 3));
    if (res->rc && !e->msg)
        e->msg = strdup(res->msg[0] ? res->msg : "read failed");
    if (e->pending)
        return;
    e->state = e->msg ? XE_FAILED : XE_READY;
    if (e->prefetched)
        c->n_prefetch_loading--;
    policy_unpin(c->pol, k); /* the loading pin */
}

/* Frees an unpinned READY or FAILED entry's slot (the policy entry stays). */
static void drop_slot(xcache *c, policy_key k, bool give_back)
{
    xentry *e = entry_of(c, k);
    if (e->prefetched)
        c->prefetch_wasted++;
    if (give_back) {
        madvise(slot_at(c, e->slot), c->slot_bytes, MADV_DONTNEED);
        c->n_faulted -= c->faulted[e->slot];
        c->faulted[e->slot] = 0;
    }
    c->free_slots[c->n_free++] = e->slot;
    free(e->msg);
    *e = (xentry){.slot = -1};
    c->evictions++;
}

static void evict(xcache *c, policy_key k)
{
    drop_slot(c, k, false);
    policy_remove(c->pol, k);
}

/* Tells the owner (store_set_wait_hook) that a wait for the disk begins. */
static void about_to_block(xcache *c)
{
    if (c->wait_hook)
        c->wait_hook(c->wait_ctx);
}

void xcache_set_wait_hook(xcache *c, void (*fn)(void *ctx), void *ctx)
{
    c->wait_hook = fn;
    c->wait_ctx = ctx;
}

/* A free slot, evicting the policy's victim if the cache is full. wait:
 * if everything is pinned, wait for prefetches in flight to finish. Never
 * evicts an entry of layer spare (-1: any may go). SW_EBUSY if no slot. */
static int take_slot(xcache *c, bool wait, int spare, int32_t *slot)
{
    for (;;) {
        if (!policy_full(c->pol) && c->n_free) {
            *slot = c->free_slots[--c->n_free];
            c->n_faulted += !c->faulted[*slot]; /* its read faults it in */
            c->faulted[*slot] = 1;
            return 0;
        }
        policy_key v;
        if (policy_victim(c->pol, &v) == 0) {
            if (policy_key_layer(v) == spare)
                return SW_EBUSY;
            evict(c, v);
            continue;
        }
        if (!wait || !c->n_prefetch_loading)
            return SW_EBUSY;
        about_to_block(c);
        if (reader_poll(c->r, NULL, 0, 1, NULL) < 0)
            return SW_EBUSY;
    }
}

/* Inserts (layer, expert) into slot and issues its reads. */
static int issue(xcache *c, int layer, int expert, int32_t slot, int prio, sw_err *err)
{
    xlayer *L = &c->L[layer];
    xentry *e = &L->e[expert];
    policy_key k = policy_key_make(layer, expert);
    int rc = policy_insert(c->pol, k, err);
    if (rc) {
        c->free_slots[c->n_free++] = slot;
        return rc;
    }
    policy_pin(c->pol, k);
    e->slot = slot;
    e->state = XE_LOADING;
    e->prefetched = prio == READER_PREFETCH;
    c->n_prefetch_loading += e->prefetched;
    uint8_t *buf = slot_at(c, slot);
    for (int p = 0; p < 3; p++) {
        if (!L->t[p])
            continue;
        uint64_t off = L->off[p] + (uint64_t)expert * L->len[p];
        size_t cap = reader_span_bytes(&c->f, off, L->len[p]);
        e->pending |= (uint8_t)(1u << p);
        for (;;) {
            rc = reader_submit(c->r, &c->f, off, L->len[p], buf + L->part_off[p], cap,
                               (uint64_t)k << 2 | (uint64_t)p, prio, err);
            if (rc != SW_ERANGE)
                break;
            if ((rc = reader_poll(c->r, NULL, 0, 1, err)) < 0)
                break;
        }
        if (rc) { /* the parts already issued complete; this one never will */
            e->pending &= (uint8_t)~(1u << p);
            if (!e->msg)
                e->msg = strdup(err ? err->msg : "read not issued");
            if (!e->pending)
                xcache_on_done(c, &(reader_result){.tag = (uint64_t)k << 2 | (uint64_t)p,
                                                   .rc = rc, .msg = e->msg});
            return 0;
        }
    }
    return 0;
}

/* --- budget --------------------------------------------------------------- */

static void evict_for_resize(void *ctx, policy_key k)
{
    drop_slot(ctx, k, true);
}

/* After a shrink: gives back the pages of free slots (pre-faulted at open,
 * or emptied since) beyond what the capacity can fill, so that the memory
 * the cache holds follows its budget down. */
static void trim_free_slots(xcache *c)
{
    for (int64_t i = 0; i < c->n_free && c->n_faulted > c->capacity; i++) {
        int32_t slot = c->free_slots[i];
        if (c->faulted[slot]) {
            madvise(slot_at(c, slot), c->slot_bytes, MADV_DONTNEED);
            c->faulted[slot] = 0;
            c->n_faulted--;
        }
    }
}

/* Applies a budget chosen since the last plan (by the pressure watcher or
 * xcache_set_budget; a shrink gives the freed slots back to the kernel)
 * and publishes the cache's use for the watcher's reports. */
void xcache_maintain(xcache *c)
{
    int64_t b = atomic_load(&c->budget_next);
    if (b != c->budget) {
        c->budget = b;
        int64_t cap = xcache_capacity_for(c, b);
        if (cap != c->capacity && policy_resize(c->pol, (size_t)cap, evict_for_resize, c) >= 0)
            c->capacity = cap;
        trim_free_slots(c);
    }
    atomic_store(&c->used_bytes, c->n_faulted * (int64_t)c->slot_bytes);
}

void xcache_set_budget(xcache *c, int64_t bytes)
{
    atomic_store(&c->budget_next, bytes);
}

/* At each plan: counts steps (a plan of a layer not above the last planned
 * one begins a step), then applies a new budget if there is one. */
static void apply_budget(xcache *c, int layer)
{
    if (layer <= c->plan_layer)
        atomic_fetch_add(&c->steps, 1);
    c->plan_layer = layer;
    xcache_maintain(c);
}

/* --- prediction ----------------------------------------------------------- */

/* The MoE layer after layer, round to the first. */
static int next_layer(const xcache *c, int layer)
{
    for (int i = 1; i <= c->n_layers; i++) {
        int l = (layer + i) % c->n_layers;
        if (c->L[l].n_expert)
            return l;
    }
    return layer;
}

/* The predictor, sized once every layer is bound (at the first plan). */
static int pred_open(xcache *c, sw_err *err)
{
    int E = 0;
    c->n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) {
        c->n_moe += c->L[l].n_expert > 0;
        E = c->L[l].n_expert > E ? c->L[l].n_expert : E;
    }
    if (!E)
        return sw_errf(err, SW_EINVAL, "store: no experts bound");
    free(c->pf_list);
    c->pf_list = malloc(sizeof *c->pf_list * (size_t)E);
    if (!c->pf_list)
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    xpred_opts po = {.n_layers = c->n_layers, .n_experts = E, .top_k = c->k_used};
    return xpred_create(&po, &c->pred, err);
}

static int pred_width(const xcache *c)
{
    return c->prefetch_n > 0 ? c->prefetch_n : xpred_width(c->capacity, c->n_moe, c->k_used);
}

/* Reads ahead layer nl's predicted experts that are absent, best first,
 * while c->pf_room lasts, never evicting an entry of nl (the cache keeps
 * what is predicted for the layer about to run). */
static void prefetch_issue(xcache *c, int nl, const int *want, int n)
{
    xlayer *L = &c->L[nl];
    for (int i = 0; i < n && c->pf_room > 0; i++) {
        int e = want[i];
        int32_t slot;
        if (e >= L->n_expert || L->e[e].state != XE_ABSENT)
            continue;
        if (take_slot(c, false, nl, &slot) || issue(c, nl, e, slot, READER_PREFETCH, NULL)) {
            c->pf_room = 0;
            return;
        }
        c->prefetch_issued++;
        c->pf_room--;
    }
}

/* Predicts the next MoE layer's experts (predict.h) and reads ahead up to
 * xpred_room() of those absent. */
static void prefetch_next(xcache *c, int layer)
{
    int nl = next_layer(c, layer), width = pred_width(c);
    int n = xpred_predict(c->pred, XPRED_AUTO, nl, width, c->pf_list);
    c->pf_layer = nl;
    c->pf_room = xpred_room(c->capacity, c->n_moe, c->k_used, width);
    prefetch_issue(c, nl, c->pf_list, n);
}

bool xcache_wants_hints(const xcache *c)
{
    return !c->no_hints && c->prefetch_n >= 0;
}

void xcache_hint(xcache *c, int layer, const int *experts, int n)
{
    if (layer < 0 || layer >= c->n_layers || !c->L[layer].n_expert || !xcache_wants_hints(c) ||
        (!c->pred && pred_open(c, NULL)))
        return;
    xpred_hint(c->pred, layer, experts, n);
    /* the hint came after the prefetch for its layer: read its experts with
     * what room that prefetch left */
    if (c->pf_layer == layer)
        prefetch_issue(c, layer, experts, n);
}

/* --- the store's calls ---------------------------------------------------- */

static int reserve(xcache *c, policy_key k, sw_err *err)
{
    if (c->n_resv == c->cap_resv) {
        int cap = c->cap_resv ? 2 * c->cap_resv : 64;
        policy_key *r = realloc(c->resv, sizeof *r * (size_t)cap);
        if (!r)
            return sw_errf(err, SW_ENOMEM, "store: out of memory");
        c->resv = r;
        c->cap_resv = cap;
    }
    c->resv[c->n_resv++] = k;
    entry_of(c, k)->reserved = 1;
    policy_pin(c->pol, k);
    return 0;
}

/* Undoes reservations a previous plan left (its step failed part-way). */
static void drop_reservations(xcache *c)
{
    for (int i = 0; i < c->n_resv; i++) {
        xentry *e = entry_of(c, c->resv[i]);
        if (e->reserved) {
            e->reserved = 0;
            e->demand = 0;
            policy_unpin(c->pol, c->resv[i]);
        }
    }
    c->n_resv = 0;
}

static int check_layer(const xcache *c, int layer, sw_err *err)
{
    if (layer < 0 || layer >= c->n_layers || !c->L[layer].n_expert)
        return sw_errf(err, SW_EINVAL, "store: layer %d has no experts bound", layer);
    return 0;
}

int xcache_plan(xcache *c, int layer, const int *experts, int n, sw_err *err)
{
    int rc = check_layer(c, layer, err);
    if (rc)
        return rc;
    xlayer *L = &c->L[layer];
    for (int i = 0; i < n; i++)
        if (experts[i] < 0 || experts[i] >= L->n_expert || (i && experts[i] <= experts[i - 1]))
            return sw_errf(err, SW_EINVAL, "store: layer %d: plan is not ascending experts < %d",
                           layer, L->n_expert);
    if (!c->pred && (rc = pred_open(c, err)))
        return rc;
    apply_budget(c, layer);
    drop_reservations(c);
    policy_layer_begin(c->pol, layer);
    xpred_observe(c->pred, layer, experts, n);
    c->pf_layer = -1;
    /* When the whole plan fits, the entries present are reserved first, so
     * that making room for the absent ones never evicts one this step is
     * about to use (and reads it again). Every pin is then one of the n
     * <= capacity planned entries, so progress is as certain as with the
     * prefix below. */
    if (n <= c->capacity)
        for (int i = 0; i < n; i++) {
            xentry *e = &L->e[experts[i]];
            if (e->state != XE_ABSENT &&
                (rc = reserve(c, policy_key_make(layer, experts[i]), err)))
                return rc;
        }
    for (int i = 0; i < n; i++) {
        xentry *e = &L->e[experts[i]];
        policy_key k = policy_key_make(layer, experts[i]);
        if (e->reserved)
            continue;
        if (e->state == XE_ABSENT) {
            int32_t slot;
            if (take_slot(c, true, -1, &slot))
                break; /* no room: the rest are read on demand */
            if ((rc = issue(c, layer, experts[i], slot, READER_DEMAND, err)))
                return rc;
            e->demand = 1;
        }
        if ((rc = reserve(c, k, err)))
            return rc;
    }
    if (c->prefetch_n >= 0)
        prefetch_next(c, layer);
    return reader_poll(c->r, NULL, 0, 0, err) < 0 ? SW_EIO : 0;
}

/* Waits for e's reads; the stall is counted. */
static int wait_entry(xcache *c, policy_key k, xentry *e, sw_err *err)
{
    uint64_t t0 = now_ns();
    about_to_block(c);
    for (int p = 0; p < 3 && e->state == XE_LOADING; p++)
        if (e->pending & (1u << p)) {
            int rc = reader_wait(c->r, (uint64_t)k << 2 | (uint64_t)p, NULL, NULL);
            if (rc == SW_ENOTFOUND)
                return sw_errf(err, SW_EIO, "store: lost the read of layer %d expert %d",
                               policy_key_layer(k), policy_key_expert(k));
        }
    c->stall_ns += now_ns() - t0;
    return 0;
}

/* A failed entry: report, and forget it so that a later request retries. */
static int fail_entry(xcache *c, policy_key k, xentry *e, sw_err *err)
{
    int rc = sw_errf(err, SW_EIO, "expert read failed: %s", e->msg ? e->msg : "unknown error");
    if (e->reserved) {
        e->reserved = 0;
        policy_unpin(c->pol, k);
    }
    if (!policy_pinned(c->pol, k))
        evict(c, k);
    return rc;
}

static void fill_mat(const xcache *c, const xlayer *L, const xentry *e, int p, store_mat *m)
{
    memset(m, 0, sizeof *m);
    const gguf_tensor *t = L->t[p];
    if (!t)
        return;
    m->type = (quant_type)t->type;
    m->cols = t->ne[0];
    m->rows = t->ne[1];
    m->row_bytes = quant_row_size(m->type, m->cols);
    uint64_t off = L->off[p] + (uint64_t)(e - L->e) * L->len[p];
    m->data = reader_data(&c->f, slot_at(c, e->slot) + L->part_off[p], off);
}

int xcache_get(xcache *c, int layer, int expert, store_mat m[3], sw_err *err)
{
    int rc = check_layer(c, layer, err);
    if (rc)
        return rc;
    xlayer *L = &c->L[layer];
    if (expert < 0 || expert >= L->n_expert)
        return sw_errf(err, SW_EINVAL, "store: layer %d has no expert %d (of %d)", layer, expert,
                       L->n_expert);
    xentry *e = &L->e[expert];
    policy_key k = policy_key_make(layer, expert);
    c->requests++;
    if (e->state == XE_FAILED && e->prefetched) { /* a guess failed: read it again */
        if (e->reserved) {
            e->reserved = 0;
            policy_unpin(c->pol, k);
        }
        evict(c, k);
    }
    bool hit = e->state != XE_ABSENT && !e->demand;
    if (e->state == XE_ABSENT) {
        int32_t slot;
        if (take_slot(c, true, -1, &slot)) {
            c->requests--;
            return sw_errf(err, SW_EBUSY,
                           "store: all %lld expert cache entries are in use; the cache must "
                           "hold at least n_expert_used experts", (long long)c->capacity);
        }
        if ((rc = issue(c, layer, expert, slot, READER_DEMAND, err)))
            return rc;
    }
    e->demand = 0;
    if (e->state == XE_LOADING && (rc = wait_entry(c, k, e, err)))
        return rc;
    if (e->state == XE_FAILED) {
        c->misses++;
        return fail_entry(c, k, e, err);
    }
    if (hit) {
        c->hits++;
        c->prefetch_hits += e->prefetched;
    } else {
        c->misses++;
    }
    e->prefetched = 0;
    policy_touch(c->pol, k, hit);
    if (e->reserved)
        e->reserved = 0; /* the plan's pin becomes the hold */
    else
        policy_pin(c->pol, k);
    e->held++;
    for (int p = 0; p < 3; p++)
        fill_mat(c, L, e, p, &m[p]);
    return 0;
}

void xcache_release(xcache *c, int layer, int expert)
{
    if (layer < 0 || layer >= c->n_layers || expert < 0 || expert >= c->L[layer].n_expert)
        return;
    xentry *e = &c->L[layer].e[expert];
    if (!e->held)
        return;
    e->held--;
    policy_unpin(c->pol, policy_key_make(layer, expert));
}

/* --- counters ------------------------------------------------------------- */

void xcache_predict_stats(const xcache *c, int kind, int layer, uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
    if (!c->pred || layer >= c->n_layers)
        return;
    xpred_count n = xpred_stats(c->pred, (xpred_kind)kind, layer);
    out[0] = n.predicted;
    out[1] = n.correct;
    out[2] = n.actual;
}

void xcache_stats(xcache *c, store_stats *s)
{
    s->policy = policy_kind_name(c->kind);
    s->reader = reader_mode(c->r);
    s->resident_bytes = c->res_bytes;
    s->slot_bytes = (int64_t)c->slot_bytes;
    s->capacity = c->capacity;
    s->cache_budget = c->capacity * (int64_t)c->slot_bytes;
    s->entries = (int64_t)policy_count(c->pol);
    s->cache_bytes = s->entries * (int64_t)c->slot_bytes;
    s->total_entries = c->n_slots;
    s->requests = c->requests;
    s->hits = c->hits;
    s->misses = c->misses;
    s->prefetch_issued = c->prefetch_issued;
    s->prefetch_hits = c->prefetch_hits;
    s->prefetch_wasted = c->prefetch_wasted;
    s->evictions = c->evictions;
    s->stall_s = (double)c->stall_ns * 1e-9;
    uint64_t pr[3];
    xcache_predict_stats(c, XPRED_AUTO, -1, pr);
    s->predicted = pr[0];
    s->predicted_right = pr[1];
    s->routed = pr[2];
    reader_stats rs;
    reader_stats_get(c->r, &rs);
    s->reads = rs.reads;
    s->read_errors = rs.errors;
    s->bytes_read = rs.bytes;
    _Static_assert(STORE_HIST_BUCKETS == READER_HIST_BUCKETS, "histograms differ");
    memcpy(s->lat_us, rs.lat_us, sizeof s->lat_us);
    s->lat_p50_us = reader_stats_quantile(&rs, 0.5);
    s->lat_p99_us = reader_stats_quantile(&rs, 0.99);
    pressure_snapshot snap;
    pressure_sample(c->mon, &snap);
    s->mem_available = snap.mem_available;
    s->psi_some_avg10 = snap.some.avg10;
    int r = atomic_load(&c->reason);
    s->budget_reason = r < 0 ? "fixed" : pressure_reason_name((pressure_reason)r);
}
