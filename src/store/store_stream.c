/*
 * store_stream.c — opening and closing a streaming store's cache
 * (expert_cache.h): which tensors stream, reading the resident set, the
 * slot region and the budget (fixed, from a whole-process limit, or from
 * the machine's memory state through pressure.h).
 */
#include "store/expert_cache_int.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XC_PAGE 4096u
#define XC_RUN_GAP (1u << 20)   /* resident tensors closer than this share a read */
#define XC_CHUNK (4u << 20)     /* resident reads are at most this long */

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

bool xcache_is_streamed(const char *name)
{
    static const char *const parts[] = {".ffn_gate_exps.weight", ".ffn_up_exps.weight",
                                        ".ffn_down_exps.weight"};
    if (strncmp(name, "blk.", 4))
        return false;
    size_t n = strlen(name);
    for (int i = 0; i < 3; i++) {
        size_t m = strlen(parts[i]);
        if (n > m && !strcmp(name + n - m, parts[i]))
            return true;
    }
    return false;
}

const void *xcache_tensor_data(const xcache *c, const gguf_tensor *t)
{
    int64_t i = t - gguf_tensor_at(c->g, 0);
    return i >= 0 && i < gguf_n_tensors(c->g) ? c->res_ptr[i] : NULL;
}

/* --- the resident set ---------------------------------------------------- */

typedef struct res_item {
    int64_t index;
    uint64_t off, end; /* absolute file range */
} res_item;

static int cmp_item(const void *a, const void *b)
{
    const res_item *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Submits a read, collecting finished ones while the reader is full. */
static int submit(xcache *c, uint64_t off, size_t len, void *buf, size_t cap, uint64_t tag,
                  int prio, sw_err *err)
{
    for (;;) {
        int rc = reader_submit(c->r, &c->f, off, len, buf, cap, tag, prio, err);
        if (rc != SW_ERANGE)
            return rc;
        if ((rc = reader_poll(c->r, NULL, 0, 1, err)) < 0)
            return rc;
    }
}

/* Reads one run [off, end) into buf (which starts at the run's span). */
static int read_run(xcache *c, uint64_t off, uint64_t end, uint8_t *buf, uint64_t *tag,
                    sw_err *err)
{
    uint64_t base = reader_span_start(&c->f, off);
    for (uint64_t a = off; a < end;) {
        uint64_t b = reader_span_start(&c->f, a) + XC_CHUNK;
        if (b > end || c->f.align == 1)
            b = end < a + XC_CHUNK ? end : a + XC_CHUNK;
        size_t len = (size_t)(b - a);
        uint8_t *dst = buf + (reader_span_start(&c->f, a) - base);
        int rc = submit(c, a, len, dst, reader_span_bytes(&c->f, a, len),
                        XC_TAG_RESIDENT | (*tag)++, READER_DEMAND, err);
        if (rc)
            return rc;
        c->res_pending++;
        a = b;
    }
    return 0;
}

/* Lays out the runs of items[0..n) (sorted) in one mapping and reads them. */
static int load_runs(xcache *c, res_item *it, int64_t n, sw_err *err)
{
    size_t total = 0;
    for (int64_t i = 0, j; i < n; i = j) {
        uint64_t end = it[i].end;
        for (j = i + 1; j < n && it[j].off <= end + XC_RUN_GAP; j++)
            end = it[j].end > end ? it[j].end : end;
        total += round_up(reader_span_bytes(&c->f, it[i].off, (size_t)(end - it[i].off)), XC_PAGE);
    }
    c->res_map_bytes = total ? total : XC_PAGE;
    void *m = mmap(NULL, c->res_map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED)
        return sw_errf(err, SW_ENOMEM, "store: cannot map %zu bytes for the resident tensors",
                       c->res_map_bytes);
    c->res_buf = m;
    uint64_t tag = 0;
    size_t pos = 0;
    for (int64_t i = 0, j; i < n; i = j) {
        uint64_t end = it[i].end, base = reader_span_start(&c->f, it[i].off);
        for (j = i + 1; j < n && it[j].off <= end + XC_RUN_GAP; j++)
            end = it[j].end > end ? it[j].end : end;
        for (int64_t k = i; k < j; k++)
            c->res_ptr[it[k].index] = c->res_buf + pos + (it[k].off - base);
        int rc = read_run(c, it[i].off, end, c->res_buf + pos, &tag, err);
        if (rc)
            return rc;
        pos += round_up(reader_span_bytes(&c->f, it[i].off, (size_t)(end - it[i].off)), XC_PAGE);
    }
    while (c->res_pending > 0) {
        int rc = reader_poll(c->r, NULL, 0, 1, err);
        if (rc < 0)
            return rc;
    }
    if (c->res_msg[0])
        return sw_errf(err, SW_EIO, "store: reading the resident tensors: %s", c->res_msg);
    return 0;
}

static int load_resident(xcache *c, sw_err *err)
{
    int64_t n = gguf_n_tensors(c->g), m = 0;
    uint64_t base = gguf_data_offset(c->g);
    c->res_ptr = calloc(n ? (size_t)n : 1, sizeof *c->res_ptr);
    res_item *it = malloc((n ? (size_t)n : 1) * sizeof *it);
    if (!c->res_ptr || !it) {
        free(it);
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(c->g, i);
        if (xcache_is_streamed(t->name) || !t->size)
            continue;
        it[m++] = (res_item){i, base + t->offset, base + t->offset + t->size};
        c->res_bytes += (int64_t)t->size;
    }
    qsort(it, (size_t)m, sizeof *it, cmp_item);
    int rc = load_runs(c, it, m, err);
    free(it);
    /* zero-size tensors point at the start of the buffer: never read */
    for (int64_t i = 0; i < n && !rc; i++)
        if (!c->res_ptr[i] && !xcache_is_streamed(gguf_tensor_at(c->g, i)->name))
            c->res_ptr[i] = c->res_buf;
    return rc;
}

/* --- slots and budget ---------------------------------------------------- */

/* Bytes of one entry of an expert tensor triple, laid out as in a slot. */
static size_t entry_bytes(const reader_file *f, const gguf_tensor *const t[3])
{
    size_t sz = 0;
    for (int p = 0; p < 3; p++)
        if (t[p])
            sz += round_up(reader_slot_bytes(f, (size_t)(t[p]->size / (uint64_t)t[p]->ne[2])),
                           XC_PAGE);
    return sz;
}

/* Finds the streamed tensors by name: entry count and the largest entry. */
static int scan_experts(xcache *c, sw_err *err)
{
    int64_t n = gguf_n_tensors(c->g);
    int max_layer = -1;
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(c->g, i);
        int layer;
        if (xcache_is_streamed(t->name) && sscanf(t->name, "blk.%d.", &layer) == 1 &&
            layer > max_layer && layer < 65536)
            max_layer = layer;
    }
    c->n_layers = max_layer + 1;
    c->L = calloc(c->n_layers ? (size_t)c->n_layers : 1, sizeof *c->L);
    if (!c->L)
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    static const char *const part[3] = {"gate", "up", "down"};
    for (int l = 0; l < c->n_layers; l++) {
        const gguf_tensor *t[3];
        for (int p = 0; p < 3; p++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.weight", l, part[p]);
            t[p] = gguf_find_tensor(c->g, name);
            if (t[p] && (t[p]->n_dims != 3 || t[p]->ne[2] < 1 || t[p]->ne[2] > 65536 ||
                         t[p]->size % (uint64_t)t[p]->ne[2]))
                return sw_errf(err, SW_EFORMAT, "tensor '%s' is not [n_expert][rows][cols]",
                               name);
        }
        if (!t[1] || !t[2])
            continue;
        size_t sz = entry_bytes(&c->f, t);
        if (sz > c->slot_bytes)
            c->slot_bytes = sz;
        c->n_slots += t[1]->ne[2];
    }
    return 0;
}

static int map_slots(xcache *c, sw_err *err)
{
    if (!c->n_slots)
        return 0;
    size_t bytes = (size_t)c->n_slots * c->slot_bytes;
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    c->free_slots = malloc((size_t)c->n_slots * sizeof *c->free_slots);
    c->faulted = calloc((size_t)c->n_slots, 1);
    if (m == MAP_FAILED || !c->free_slots || !c->faulted) {
        if (m != MAP_FAILED)
            munmap(m, bytes);
        return sw_errf(err, SW_ENOMEM, "store: cannot reserve %zu bytes for expert slots", bytes);
    }
    c->slots = m;
    for (int64_t i = 0; i < c->n_slots; i++)
        c->free_slots[i] = (int32_t)(c->n_slots - 1 - i);
    c->n_free = c->n_slots;
    return 0;
}

/*
 * Faults in, at open, the slots the budget will fill first (the free stack
 * hands out the lowest indices first). Left to the reads, every fresh slot
 * is zeroed page by page inside the submitting call on the owner thread,
 * in the middle of the warm-up's compute (about 15% of its samples); here
 * the kernel does it in one call per run of slots, before the first token.
 * The memory is what the budget grants anyway; the watcher is told of it
 * (used_bytes counts faulted slots, the cache's real footprint). Where the
 * kernel lacks MADV_POPULATE_WRITE (before 5.14) the slots fault lazily as
 * before.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static void prefault_slots(xcache *c)
{
    int64_t n = c->capacity < c->n_slots ? c->capacity : c->n_slots;
    if (n <= 0)
        return;
    /* told first: the watcher may sample while the pages come in */
    atomic_store(&c->used_bytes, n * (int64_t)c->slot_bytes);
    if (madvise(c->slots, (size_t)n * c->slot_bytes, MADV_POPULATE_WRITE)) {
        atomic_store(&c->used_bytes, 0);
        return;
    }
    memset(c->faulted, 1, (size_t)n);
    c->n_faulted = n;
}

int64_t xcache_capacity_for(const xcache *c, int64_t budget)
{
    int64_t cap = c->slot_bytes ? budget / (int64_t)c->slot_bytes : 0;
    if (cap < c->k_used)
        cap = c->k_used;
    return cap > c->n_slots ? c->n_slots : cap;
}

static void watch_usage(void *ctx, pressure_input *in)
{
    xcache *c = ctx;
    in->cache_bytes = atomic_load(&c->used_bytes);
    in->other_bytes = PRESSURE_UNKNOWN;
}

static void watch_change(void *ctx, const pressure_decision *d, const pressure_snapshot *s)
{
    (void)s;
    xcache *c = ctx;
    atomic_store(&c->budget_next, d->target);
    atomic_store(&c->reason, (int)d->reason);
}

static void watch_sample(void *ctx, const pressure_decision *d, const pressure_snapshot *s)
{
    xcache *c = ctx;
    int r = atomic_load(&c->reason);
    store_sample x = {
        .mem = s,
        .budget = d->target,
        .room = d->room == PRESSURE_UNLIMITED ? -1 : d->room,
        .cache_bytes = atomic_load(&c->used_bytes),
        .steps = atomic_load(&c->steps),
        .reason = r < 0 ? "fixed" : pressure_reason_name((pressure_reason)r),
    };
    c->on_sample(c->sample_ctx, &x);
}

/* Starts the watcher: it follows the memory state (fixed: only reports). */
static int watch(xcache *c, const store_opts *o, const pressure_policy *pp, bool fixed,
                 sw_err *err)
{
    pressure_watch_opts w = {.policy = *pp, .budget = c->budget, .interval_ms = o->sample_ms,
                             .usage = watch_usage, .on_change = fixed ? NULL : watch_change,
                             .on_sample = c->on_sample ? watch_sample : NULL, .ctx = c,
                             .fixed = fixed};
    int rc = pressure_watch_start(c->mon, &w, err);
    c->watching = rc == 0;
    return rc;
}

/* The budget: fixed, whole-process, or from the memory state. */
static int choose_budget(xcache *c, const store_opts *o, sw_err *err)
{
    int rc = pressure_open(NULL, &c->mon, err);
    if (rc)
        return rc;
    pressure_snapshot snap;
    pressure_sample(c->mon, &snap);
    int64_t all = c->n_slots * (int64_t)c->slot_bytes, least = c->k_used * (int64_t)c->slot_bytes;
    pressure_policy pp;
    pressure_policy_default(&pp);
    pp.min_budget = least;
    pp.max_budget = all;
    atomic_store(&c->reason, -1);
    bool fixed = true;
    if (o->cache_bytes > 0) {
        c->budget = o->cache_bytes;
    } else if (o->mem_bytes > 0) {
        int64_t used = pressure_known(snap.rss) ? snap.rss : c->res_bytes;
        c->budget = o->mem_bytes - used - (o->other_bytes > 0 ? o->other_bytes : 0);
    } else {
        pressure_state st = {0};
        pressure_input in = {0, 0, pressure_known(snap.rss) ? snap.rss : PRESSURE_UNKNOWN};
        pressure_decision d = pressure_target(&pp, &snap, &in, &st);
        /* a starting cache takes the room at once; the policy only grows by steps */
        c->budget = d.reason == PRESSURE_BLIND ? d.target : d.room < all ? d.room : all;
        atomic_store(&c->reason, (int)d.reason);
        fixed = !o->watch;
    }
    if (c->budget < least)
        c->budget = least;
    atomic_store(&c->budget_next, c->budget);
    c->capacity = xcache_capacity_for(c, c->budget);
    if (c->n_slots && (!fixed || o->on_sample))
        return watch(c, o, &pp, fixed, err);
    return 0;
}

/* n_expert_used from the metadata: the fewest entries the cache may hold. */
static int expert_used(const gguf_ctx *g)
{
    const char *arch = NULL;
    char key[128];
    uint32_t k = 0;
    if (gguf_get_str(g, "general.architecture", &arch, NULL) < 0)
        return 1;
    snprintf(key, sizeof key, "%s.expert_used_count", arch);
    if (gguf_get_u32(g, key, &k, NULL) < 0 || k < 1 || k > 256)
        return 1;
    return (int)k;
}

int xcache_open(const gguf_ctx *g, const char *path, const store_opts *o, xcache **out,
                sw_err *err)
{
    *out = NULL;
    xcache *c = calloc(1, sizeof *c);
    if (!c)
        return sw_errf(err, SW_ENOMEM, "store: out of memory");
    c->g = g;
    c->f.fd = -1;
    c->k_used = expert_used(g);
    c->prefetch_n = o->prefetch < 0 ? -1 : o->prefetch;
    c->pf_layer = -1;
    c->no_hints = o->no_hints;
    c->kind = POLICY_DEFAULT;
    c->on_sample = o->on_sample;
    c->sample_ctx = o->sample_ctx;
    c->plan_layer = INT_MAX; /* the first plan begins a step */
    reader_opts ro = {.depth = 64, .max_requests = 4096, .on_done = xcache_on_done, .ctx = c};
    int rc;
    if ((o->policy && (rc = policy_kind_parse(o->policy, &c->kind, err))) ||
        (rc = reader_file_open(&c->f, path, 0, err)) || (rc = reader_open(&ro, &c->r, err)) ||
        (rc = load_resident(c, err)) || (rc = scan_experts(c, err)) || (rc = map_slots(c, err)) ||
        (rc = choose_budget(c, o, err)) ||
        (rc = policy_create(c->kind, (size_t)c->capacity, &c->pol, err)))
        goto fail;
    prefault_slots(c);
    reader_stats_reset(c->r); /* count expert reads from here on */
    *out = c;
    return 0;
fail:
    xcache_close(c);
    return rc;
}

void xcache_close(xcache *c)
{
    if (!c)
        return;
    if (c->mon)
        pressure_close(c->mon); /* stops the watcher first */
    if (c->r)
        reader_close(c->r);     /* waits for reads into our buffers */
    reader_file_close(&c->f);
    for (int l = 0; l < c->n_layers; l++) {
        xlayer *L = &c->L[l];
        for (int e = 0; L->e && e < L->n_expert; e++)
            free(L->e[e].msg);
        free(L->e);
    }
    free(c->L);
    xpred_destroy(c->pred);
    free(c->pf_list);
    policy_destroy(c->pol);
    if (c->slots)
        munmap(c->slots, (size_t)c->n_slots * c->slot_bytes);
    if (c->res_buf)
        munmap(c->res_buf, c->res_map_bytes);
    free(c->free_slots);
    free(c->faulted);
    free(c->res_ptr);
    free(c->resv);
    free(c);
}
