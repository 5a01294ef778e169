/*
 * policy.c — the expert cache's eviction policies (see policy.h).
 *
 * Shared machinery first: a pool of nodes addressed by 32-bit index (so the
 * pool can grow by realloc without invalidating links), an open-addressing
 * hash from key to node, intrusive doubly linked lists, and min-heaps of
 * decayed counts. Then each policy's part of insert, touch and victim, chosen
 * by a switch in the public functions at the end.
 *
 * Lists run from head (newest / most recent) to tail (oldest); victims come
 * from tails. A node is in exactly one place, recorded in node->where.
 *
 * Decayed counts (lfu, stale) use forward decay: an access at time t adds
 * 2^((t - base) / H) to the count, so relative to "now" every count halves
 * each H time units, yet a count changes only when its entry is accessed
 * and the order of two counts is fixed between accesses: a heap stays valid.
 * When the weight nears overflow, base moves to now and the counts are
 * rescaled (which keeps their order; the heap is rebuilt in case rounding
 * to zero made ties). lfu's time is accesses; stale's is visits of the
 * entry's layer, so each layer has its own clock.
 */
#include "store/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

enum where {
    W_FREE,  /* on the free list */
    W_LRU,   /* lru: the one list */
    W_HEAP,  /* lfu: an entry (in the heap unless pinned) */
    W_SMALL, /* s3fifo: small FIFO */
    W_MAIN,  /* s3fifo: main FIFO */
    W_GHOST, /* s3fifo: evicted key remembered, not an entry */
    W_LAYER, /* stale: an entry (in its layer's heap unless pinned) */
};

struct node {
    policy_key key;
    uint32_t prev, next; /* list links; next also links the free list */
    uint32_t heap;       /* lfu, stale: heap position, NIL while pinned */
    uint32_t pins;
    uint8_t where;
    uint8_t freq;        /* s3fifo: 0..3 */
    uint8_t used;        /* touched since inserted */
    double count;        /* lfu, stale: decayed access count */
    uint64_t stamp;      /* lfu, stale: when last accessed (breaks ties) */
};

struct list {
    uint32_t head, tail;
    size_t n;
};

/* A min-heap of node indices, ordered by (count, stamp). */
struct heap {
    uint32_t *v;
    size_t n, cap;
};

/* Forward-decay time: weight 2^((now - base) / halflife). */
struct clock {
    uint64_t now, base;
};

/* stale: one layer's entries. */
struct layer {
    struct heap heap;
    struct clock clock; /* visits of the layer */
};

struct policy {
    policy_kind kind;
    size_t cap;      /* entries */
    size_t count;    /* entries (ghosts not included) */
    size_t n_pinned; /* entries with pins > 0 */
    policy_stats st;
    policy_opts opts;
    uint64_t tick;   /* touches so far */

    struct node *nodes;
    uint32_t n_nodes, nodes_cap, free_head;

    uint32_t *table; /* node index + 1; 0 = empty */
    size_t table_mask, table_used;

    struct list lru;                /* lru */

    struct heap heap;               /* lfu */
    struct clock clock;
    double halflife;                /* lfu: accesses; stale: layer visits */

    struct list small, main, ghost; /* s3fifo */

    struct layer *layers;           /* stale: n_alloc of them */
    int n_alloc, n_layers;          /* n_layers: highest layer seen + 1 */
    int cur_layer;
};

static const char *const g_names[POLICY_KIND_COUNT] = {"lru", "lfu", "s3fifo", "stale"};

const char *policy_kind_name(policy_kind kind)
{
    return (unsigned)kind < POLICY_KIND_COUNT ? g_names[kind] : "?";
}

int policy_kind_parse(const char *name, policy_kind *out, sw_err *err)
{
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        if (name && !strcmp(name, g_names[k])) {
            *out = (policy_kind)k;
            return 0;
        }
    return sw_errf(err, SW_EINVAL, "unknown cache policy '%s' (known: lru, lfu, s3fifo, stale)",
                   name ? name : "");
}

/* --- nodes and the key hash ------------------------------------------------ */

static inline size_t hash_slot(const policy *p, policy_key key)
{
    /* Fibonacci hashing: the high bits of the product mix layer and expert */
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & p->table_mask;
}

static uint32_t hash_find(const policy *p, policy_key key)
{
    for (size_t i = hash_slot(p, key);; i = (i + 1) & p->table_mask) {
        uint32_t v = p->table[i];
        if (!v)
            return NIL;
        if (p->nodes[v - 1].key == key)
            return v - 1;
    }
}

static void hash_put_raw(uint32_t *table, size_t mask, const policy *p, uint32_t idx)
{
    size_t i = hash_slot(p, p->nodes[idx].key);
    while (table[i])
        i = (i + 1) & mask;
    table[i] = idx + 1;
}

/* Keeps the table at most half full. */
static int hash_reserve(policy *p, size_t want)
{
    size_t size = p->table_mask + 1;
    if (p->table && want * 2 <= size)
        return 0;
    while (want * 2 > size)
        size *= 2;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t)
        return SW_ENOMEM;
    uint32_t *old = p->table;
    size_t old_size = old ? p->table_mask + 1 : 0;
    p->table = t;
    p->table_mask = size - 1;
    for (size_t i = 0; i < old_size; i++)
        if (old[i])
            hash_put_raw(t, p->table_mask, p, old[i] - 1);
    free(old);
    return 0;
}

/* Deletes with backward shift, so lookups never need tombstones. */
static void hash_del(policy *p, policy_key key)
{
    size_t i = hash_slot(p, key);
    while (p->nodes[p->table[i] - 1].key != key)
        i = (i + 1) & p->table_mask;
    p->table[i] = 0;
    for (size_t j = (i + 1) & p->table_mask; p->table[j]; j = (j + 1) & p->table_mask) {
        size_t home = hash_slot(p, p->nodes[p->table[j] - 1].key);
        /* move j back into the hole at i if its home is not in (i, j] */
        if (((j - home) & p->table_mask) >= ((j - i) & p->table_mask)) {
            p->table[i] = p->table[j];
            p->table[j] = 0;
            i = j;
        }
    }
    p->table_used--;
}

static int node_new(policy *p, policy_key key, uint32_t *out)
{
    int rc = hash_reserve(p, p->table_used + 1);
    if (rc)
        return rc;
    if (p->free_head == NIL) {
        if (p->n_nodes == p->nodes_cap) {
            uint32_t cap = p->nodes_cap ? p->nodes_cap * 2 : 64;
            if (cap <= p->nodes_cap || cap >= NIL)
                return SW_ENOMEM;
            struct node *n = realloc(p->nodes, (size_t)cap * sizeof *n);
            if (!n)
                return SW_ENOMEM;
            p->nodes = n;
            p->nodes_cap = cap;
        }
        p->nodes[p->n_nodes].next = NIL;
        p->free_head = p->n_nodes++;
    }
    uint32_t i = p->free_head;
    p->free_head = p->nodes[i].next;
    p->nodes[i] = (struct node){.key = key, .prev = NIL, .next = NIL, .heap = NIL};
    hash_put_raw(p->table, p->table_mask, p, i);
    p->table_used++;
    *out = i;
    return 0;
}

static void node_free(policy *p, uint32_t i)
{
    hash_del(p, p->nodes[i].key);
    p->nodes[i].where = W_FREE;
    p->nodes[i].next = p->free_head;
    p->free_head = i;
}

/* --- lists ----------------------------------------------------------------- */

static void list_init(struct list *l)
{
    l->head = l->tail = NIL;
    l->n = 0;
}

static void list_push_head(policy *p, struct list *l, uint32_t i)
{
    struct node *n = &p->nodes[i];
    n->prev = NIL;
    n->next = l->head;
    if (l->head != NIL)
        p->nodes[l->head].prev = i;
    else
        l->tail = i;
    l->head = i;
    l->n++;
}

static void list_unlink(policy *p, struct list *l, uint32_t i)
{
    struct node *n = &p->nodes[i];
    if (n->prev != NIL)
        p->nodes[n->prev].next = n->next;
    else
        l->head = n->next;
    if (n->next != NIL)
        p->nodes[n->next].prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NIL;
    l->n--;
}

/* The unpinned node nearest the tail, or NIL. */
static uint32_t list_tail_unpinned(const policy *p, const struct list *l)
{
    uint32_t i = l->tail;
    while (i != NIL && p->nodes[i].pins)
        i = p->nodes[i].prev;
    return i;
}

/* --- decayed counts in min-heaps (lfu, stale) ----------------------------- */

static inline bool count_less(const policy *p, uint32_t a, uint32_t b)
{
    const struct node *x = &p->nodes[a], *y = &p->nodes[b];
    return x->count < y->count || (x->count == y->count && x->stamp < y->stamp);
}

static void heap_set(policy *p, struct heap *h, size_t pos, uint32_t i)
{
    h->v[pos] = i;
    p->nodes[i].heap = (uint32_t)pos;
}

static void heap_up(policy *p, struct heap *h, size_t pos)
{
    uint32_t i = h->v[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!count_less(p, i, h->v[parent]))
            break;
        heap_set(p, h, pos, h->v[parent]);
        pos = parent;
    }
    heap_set(p, h, pos, i);
}

static void heap_down(policy *p, struct heap *h, size_t pos)
{
    uint32_t i = h->v[pos];
    for (;;) {
        size_t c = 2 * pos + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && count_less(p, h->v[c + 1], h->v[c]))
            c++;
        if (!count_less(p, h->v[c], i))
            break;
        heap_set(p, h, pos, h->v[c]);
        pos = c;
    }
    heap_set(p, h, pos, i);
}

static int heap_push(policy *p, struct heap *h, uint32_t i)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        uint32_t *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return SW_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->n++;
    heap_set(p, h, h->n - 1, i);
    heap_up(p, h, h->n - 1);
    return 0;
}

static void heap_del(policy *p, struct heap *h, uint32_t i)
{
    size_t pos = p->nodes[i].heap;
    uint32_t last = h->v[--h->n];
    p->nodes[i].heap = NIL;
    if (pos == h->n)
        return;
    heap_set(p, h, pos, last);
    heap_up(p, h, pos);
    heap_down(p, h, p->nodes[last].heap);
}

/* The heap a counted node belongs to. */
static struct heap *heap_of(policy *p, uint32_t i)
{
    if (p->kind == POLICY_LFU)
        return &p->heap;
    return &p->layers[policy_key_layer(p->nodes[i].key)].heap;
}

/* The weight of an access now on clock c, rescaling the counts of the
 * nodes on that clock (every lfu entry, or one layer's) when it is due. */
static double clock_weight(policy *p, struct clock *c, int layer)
{
    double e = (double)(c->now - c->base) / p->halflife;
    if (e <= 256)
        return exp2(e);
    double f = exp2(-e);
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        struct node *n = &p->nodes[i];
        if ((n->where == W_HEAP) || (n->where == W_LAYER && policy_key_layer(n->key) == layer))
            n->count *= f;
    }
    c->base = c->now;
    struct heap *h = layer < 0 ? &p->heap : &p->layers[layer].heap;
    for (size_t k = h->n / 2; k-- > 0;)
        heap_down(p, h, k);
    return 1.0;
}

/* lfu's half-life defaults to the capacity in accesses (at least 64);
 * stale's to STALE_HALFLIFE visits of a layer. */
#define STALE_HALFLIFE 128.0

static void set_halflife(policy *p)
{
    if (p->kind == POLICY_STALE) {
        p->halflife = p->opts.stale_halflife > 0 ? p->opts.stale_halflife : STALE_HALFLIFE;
        return;
    }
    double h = p->opts.lfu_halflife > 0 ? p->opts.lfu_halflife : (double)p->cap;
    p->halflife = h < 64 ? 64 : h;
}

/* --- s3fifo ---------------------------------------------------------------- */

static size_t s3_small_target(const policy *p)
{
    double r = p->opts.s3_small_ratio > 0 ? p->opts.s3_small_ratio : 0.10;
    size_t t = (size_t)((double)p->cap * r);
    return t ? t : 1;
}

/* Ghost keys kept: as many as the main FIFO may hold. */
static void s3_trim_ghost(policy *p)
{
    size_t keep = p->cap > s3_small_target(p) ? p->cap - s3_small_target(p) : 0;
    while (p->ghost.n > keep) {
        uint32_t g = p->ghost.tail;
        list_unlink(p, &p->ghost, g);
        node_free(p, g);
    }
}

/* Looks at main's tail until an unpinned entry with no second chance left
 * shows up; entries with chances go back to the head, one chance less, and
 * pinned ones go round unchanged. Counts are at most 3, so five rounds find
 * a victim if main holds any unpinned entry. */
static uint32_t s3_victim_main(policy *p)
{
    for (size_t budget = 5 * p->main.n; budget > 0; budget--) {
        uint32_t t = p->main.tail;
        struct node *n = &p->nodes[t];
        if (!n->pins && !n->freq)
            return t;
        list_unlink(p, &p->main, t);
        list_push_head(p, &p->main, t);
        if (!n->pins)
            n->freq--;
    }
    return NIL;
}

/* Small's tail: entries used again since they came in are promoted to main
 * with a clean count; the first unpinned, unused one is the victim (it stays
 * in place until the caller removes it). Pinned entries go round again. */
static uint32_t s3_victim_small(policy *p)
{
    for (size_t budget = p->small.n; budget > 0; budget--) {
        uint32_t t = p->small.tail;
        struct node *n = &p->nodes[t];
        if (!n->pins && !n->freq)
            return t;
        list_unlink(p, &p->small, t);
        if (n->pins) {
            list_push_head(p, &p->small, t);
        } else {
            n->freq = 0;
            n->where = W_MAIN;
            list_push_head(p, &p->main, t);
        }
    }
    return NIL;
}

static uint32_t s3_victim(policy *p)
{
    uint32_t v = NIL;
    if (p->small.n >= s3_small_target(p) || p->main.n == 0)
        v = s3_victim_small(p);
    if (v == NIL)
        v = s3_victim_main(p);
    if (v == NIL)
        v = s3_victim_small(p);
    return v;
}

/* --- stale: stalest layer first, least used within it ----------------------- */

static int stale_layer(policy *p, int layer, struct layer **out)
{
    if (layer >= p->n_alloc) {
        int n = p->n_alloc ? p->n_alloc : 8;
        while (n <= layer)
            n *= 2;
        struct layer *l = realloc(p->layers, (size_t)n * sizeof *l);
        if (!l)
            return SW_ENOMEM;
        memset(l + p->n_alloc, 0, (size_t)(n - p->n_alloc) * sizeof *l);
        p->layers = l;
        p->n_alloc = n;
    }
    if (layer >= p->n_layers)
        p->n_layers = layer + 1;
    *out = &p->layers[layer];
    return 0;
}

/* A new visit of layer: its clock advances, its counts age by one step. */
static void stale_visit(policy *p, int layer)
{
    p->cur_layer = layer;
    if (layer < p->n_layers)
        p->layers[layer].clock.now++;
}

/* From the current layer backwards round the cycle: the current layer is
 * the stalest (needed again only after all others), the next one the
 * freshest. Within a layer, the smallest decayed count. */
static uint32_t stale_victim(policy *p)
{
    int L = p->n_layers > p->cur_layer ? p->n_layers : p->cur_layer + 1;
    for (int d = 0; d < L; d++) {
        int layer = ((p->cur_layer - d) % L + L) % L;
        if (layer < p->n_layers && p->layers[layer].heap.n)
            return p->layers[layer].heap.v[0];
    }
    return NIL;
}

/* --- the public interface -------------------------------------------------- */

int policy_create(policy_kind kind, size_t capacity, policy **out, sw_err *err)
{
    return policy_create_opts(kind, capacity, NULL, out, err);
}

int policy_create_opts(policy_kind kind, size_t capacity, const policy_opts *opts,
                       policy **out, sw_err *err)
{
    *out = NULL;
    if ((unsigned)kind >= POLICY_KIND_COUNT)
        return sw_errf(err, SW_EINVAL, "cache policy kind %d does not exist", (int)kind);
    if (capacity >= NIL / 2)
        return sw_errf(err, SW_EINVAL, "cache capacity %zu entries is too large", capacity);
    if (opts && (opts->lfu_halflife < 0 || opts->stale_halflife < 0 || opts->s3_small_ratio < 0 ||
                 opts->s3_small_ratio >= 1))
        return sw_errf(err, SW_EINVAL, "bad cache policy options");
    policy *p = calloc(1, sizeof *p);
    if (!p)
        return sw_errf(err, SW_ENOMEM, "out of memory for the cache policy");
    p->kind = kind;
    p->cap = capacity;
    p->free_head = NIL;
    if (opts)
        p->opts = *opts;
    set_halflife(p);
    list_init(&p->lru);
    list_init(&p->small);
    list_init(&p->main);
    list_init(&p->ghost);
    if (hash_reserve(p, 32)) {
        free(p);
        return sw_errf(err, SW_ENOMEM, "out of memory for the cache policy");
    }
    *out = p;
    return 0;
}

void policy_destroy(policy *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_alloc; i++)
        free(p->layers[i].heap.v);
    free(p->layers);
    free(p->nodes);
    free(p->table);
    free(p->heap.v);
    free(p);
}

policy_kind policy_get_kind(const policy *p) { return p->kind; }
size_t policy_capacity(const policy *p) { return p->cap; }
size_t policy_count(const policy *p) { return p->count; }
bool policy_full(const policy *p) { return p->count >= p->cap; }
policy_stats policy_get_stats(const policy *p) { return p->st; }

/* The entry's node, or NIL (absent or only a ghost). */
static uint32_t entry_find(const policy *p, policy_key key)
{
    uint32_t i = hash_find(p, key);
    return i != NIL && p->nodes[i].where != W_GHOST ? i : NIL;
}

bool policy_contains(const policy *p, policy_key key)
{
    return entry_find(p, key) != NIL;
}

bool policy_pinned(const policy *p, policy_key key)
{
    uint32_t i = entry_find(p, key);
    return i != NIL && p->nodes[i].pins > 0;
}

/* Places a new (or returning ghost) node in its policy's structure. */
static int place_new(policy *p, uint32_t i, bool was_ghost)
{
    struct node *n = &p->nodes[i];
    int layer = policy_key_layer(n->key);
    struct layer *l;
    switch (p->kind) {
    case POLICY_LRU:
        n->where = W_LRU;
        list_push_head(p, &p->lru, i);
        return 0;
    case POLICY_LFU:
        n->where = W_HEAP;
        n->count = clock_weight(p, &p->clock, -1); /* the load counts as an access */
        n->stamp = p->tick;
        return heap_push(p, &p->heap, i);
    case POLICY_S3FIFO:
        n->where = was_ghost ? W_MAIN : W_SMALL;
        list_push_head(p, was_ghost ? &p->main : &p->small, i);
        return 0;
    case POLICY_STALE:
        if (stale_layer(p, layer, &l))
            return SW_ENOMEM;
        n->where = W_LAYER;
        n->count = clock_weight(p, &l->clock, layer);
        n->stamp = p->tick;
        return heap_push(p, &l->heap, i);
    default:
        return SW_EINVAL;
    }
}

int policy_insert(policy *p, policy_key key, sw_err *err)
{
    uint32_t i = hash_find(p, key);
    if (i != NIL && p->nodes[i].where != W_GHOST)
        return sw_errf(err, SW_EINVAL, "cache entry (layer %d, expert %d) is already present",
                       policy_key_layer(key), policy_key_expert(key));
    if (p->count >= p->cap)
        return sw_errf(err, SW_EINVAL, "cache policy is full (%zu entries): evict first", p->cap);
    bool was_ghost = i != NIL;
    if (was_ghost)
        list_unlink(p, &p->ghost, i);
    else if (node_new(p, key, &i))
        return sw_errf(err, SW_ENOMEM, "out of memory for the cache policy");
    struct node *n = &p->nodes[i];
    n->pins = 0;
    n->freq = 0;
    n->used = 0;
    n->heap = NIL;
    if (place_new(p, i, was_ghost)) {
        node_free(p, i);
        return sw_errf(err, SW_ENOMEM, "out of memory for the cache policy");
    }
    p->count++;
    p->st.inserts++;
    return 0;
}

int policy_touch(policy *p, policy_key key, bool hit)
{
    uint32_t i = entry_find(p, key);
    if (i == NIL)
        return SW_ENOTFOUND;
    struct node *n = &p->nodes[i];
    int layer = policy_key_layer(key);
    bool first = !n->used;
    n->used = 1;
    if (hit)
        p->st.hits++;
    else
        p->st.misses++;
    switch (p->kind) {
    case POLICY_LRU:
        list_unlink(p, &p->lru, i);
        list_push_head(p, &p->lru, i);
        break;
    case POLICY_LFU:
    case POLICY_STALE:
        if (p->kind == POLICY_STALE && layer != p->cur_layer)
            stale_visit(p, layer); /* the engine did not say: infer the visit */
        if (!first)
            n->count += p->kind == POLICY_LFU ? clock_weight(p, &p->clock, -1)
                                              : clock_weight(p, &p->layers[layer].clock, layer);
        n->stamp = p->tick;
        if (n->heap != NIL)
            heap_down(p, heap_of(p, i), n->heap); /* the count only grows */
        break;
    case POLICY_S3FIFO:
        if (!first && n->freq < 3)
            n->freq++;
        break;
    default:
        break;
    }
    p->tick++;
    p->clock.now = p->tick;
    return 0;
}

int policy_victim(policy *p, policy_key *out)
{
    if (p->count == p->n_pinned)
        return SW_ENOTFOUND;
    uint32_t v = NIL;
    switch (p->kind) {
    case POLICY_LRU: v = list_tail_unpinned(p, &p->lru); break;
    case POLICY_LFU: v = p->heap.n ? p->heap.v[0] : NIL; break;
    case POLICY_S3FIFO: v = s3_victim(p); break;
    case POLICY_STALE: v = stale_victim(p); break;
    default: break;
    }
    if (v == NIL)
        return SW_ENOTFOUND;
    *out = p->nodes[v].key;
    return 0;
}

int policy_remove(policy *p, policy_key key)
{
    uint32_t i = entry_find(p, key);
    if (i == NIL)
        return SW_ENOTFOUND;
    struct node *n = &p->nodes[i];
    if (n->pins)
        return SW_EINVAL;
    switch (n->where) {
    case W_LRU: list_unlink(p, &p->lru, i); break;
    case W_HEAP:
    case W_LAYER: heap_del(p, heap_of(p, i), i); break;
    case W_MAIN: list_unlink(p, &p->main, i); break;
    case W_SMALL:
        /* leaving the small FIFO unused: remember the key, as S3-FIFO does */
        list_unlink(p, &p->small, i);
        p->count--;
        p->st.removes++;
        n->where = W_GHOST;
        list_push_head(p, &p->ghost, i);
        s3_trim_ghost(p);
        return 0;
    default: break;
    }
    node_free(p, i);
    p->count--;
    p->st.removes++;
    return 0;
}

void policy_layer_begin(policy *p, int layer)
{
    if (layer < 0 || layer > 0xffff)
        return;
    if (p->kind == POLICY_STALE)
        stale_visit(p, layer);
    else
        p->cur_layer = layer;
}

int policy_pin(policy *p, policy_key key)
{
    uint32_t i = entry_find(p, key);
    if (i == NIL)
        return SW_ENOTFOUND;
    struct node *n = &p->nodes[i];
    if (n->pins++ == 0) {
        p->n_pinned++;
        if (n->heap != NIL)
            heap_del(p, heap_of(p, i), i);
    }
    return 0;
}

int policy_unpin(policy *p, policy_key key)
{
    uint32_t i = entry_find(p, key);
    if (i == NIL)
        return SW_ENOTFOUND;
    struct node *n = &p->nodes[i];
    if (!n->pins)
        return SW_EINVAL;
    if (--n->pins == 0) {
        p->n_pinned--;
        if ((n->where == W_HEAP || n->where == W_LAYER) && heap_push(p, heap_of(p, i), i))
            return SW_ENOMEM;
    }
    return 0;
}

int policy_resize(policy *p, size_t capacity, policy_evict_fn on_evict, void *ctx)
{
    if (capacity >= NIL / 2)
        return SW_EINVAL;
    p->cap = capacity;
    set_halflife(p);
    while (p->count > p->cap) {
        policy_key v;
        if (policy_victim(p, &v))
            break;
        if (on_evict)
            on_evict(ctx, v);
        policy_remove(p, v);
    }
    if (p->kind == POLICY_S3FIFO)
        s3_trim_ghost(p);
    return p->count > p->cap ? (int)(p->count - p->cap) : 0;
}
