/*
 * replay.c — trace replay through a cache policy and a predictor, and
 * Belady's optimum. See replay.h for what is counted and why.
 */
#include "store/replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_pred_names[PREDICT_COUNT] = {"none", "prev", "freq", "mix"};

const char *replay_predictor_name(replay_predictor p)
{
    return (unsigned)p < PREDICT_COUNT ? g_pred_names[p] : "?";
}

int replay_predictor_parse(const char *name, replay_predictor *out, sw_err *err)
{
    for (int k = 0; k < PREDICT_COUNT; k++)
        if (name && !strcmp(name, g_pred_names[k])) {
            *out = (replay_predictor)k;
            return 0;
        }
    return sw_errf(err, SW_EINVAL, "unknown predictor '%s' (known: none, prev, freq, mix)",
                   name ? name : "");
}

/* --- predictors ------------------------------------------------------------ */

struct predictor {
    int L, E;
    double halflife;   /* tokens */
    uint16_t *last;    /* [L][TRACE_MAX_K]: the latest visit's experts */
    int *last_n;       /* [L] */
    double *count;     /* [L][E]: uses, weighted 2^((visit - base) / halflife) */
    uint64_t *visits;  /* [L]: visits of the layer so far */
    uint64_t *base;    /* [L] */
};

static void pred_free(struct predictor *p)
{
    free(p->last);
    free(p->last_n);
    free(p->count);
    free(p->visits);
    free(p->base);
}

static int pred_init(struct predictor *p, int L, int E, double halflife)
{
    memset(p, 0, sizeof *p);
    p->L = L;
    p->E = E;
    p->halflife = halflife;
    p->last = calloc((size_t)L * TRACE_MAX_K, sizeof *p->last);
    p->last_n = calloc((size_t)L, sizeof *p->last_n);
    p->count = calloc((size_t)L * (size_t)E, sizeof *p->count);
    p->visits = calloc((size_t)L, sizeof *p->visits);
    p->base = calloc((size_t)L, sizeof *p->base);
    if (!p->last || !p->last_n || !p->count || !p->visits || !p->base) {
        pred_free(p);
        return SW_ENOMEM;
    }
    return 0;
}

static void pred_reset(struct predictor *p)
{
    memset(p->last_n, 0, (size_t)p->L * sizeof *p->last_n);
    memset(p->count, 0, (size_t)p->L * (size_t)p->E * sizeof *p->count);
    memset(p->visits, 0, (size_t)p->L * sizeof *p->visits);
    memset(p->base, 0, (size_t)p->L * sizeof *p->base);
}

/* Layer `layer` ran with experts ex[0..n). Counts use forward decay: a use
 * at visit v weighs 2^((v - base) / H), so older uses weigh relatively less
 * without touching them; the row is rescaled before weights overflow. */
static void pred_observe(struct predictor *p, int layer, const uint16_t *ex, int n)
{
    memcpy(p->last + (size_t)layer * TRACE_MAX_K, ex, (size_t)n * sizeof *ex);
    p->last_n[layer] = n;
    double *row = p->count + (size_t)layer * (size_t)p->E;
    double e = (double)(p->visits[layer] - p->base[layer]) / p->halflife;
    if (e > 512) {
        double f = exp2(-e);
        for (int i = 0; i < p->E; i++)
            row[i] *= f;
        p->base[layer] = p->visits[layer];
        e = 0;
    }
    double w = exp2(e);
    for (int i = 0; i < n; i++)
        row[ex[i]] += w;
    p->visits[layer]++;
}

static bool in_list(const uint16_t *v, int n, uint16_t x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* Appends to out[*n..width) the most used experts of layer not yet in out. */
static void pred_fill_freq(const struct predictor *p, int layer, uint16_t *out, int *n, int width)
{
    const double *row = p->count + (size_t)layer * (size_t)p->E;
    while (*n < width) {
        int best = -1;
        for (int e = 0; e < p->E; e++)
            if (row[e] > 0 && (best < 0 || row[e] > row[best]) && !in_list(out, *n, (uint16_t)e))
                best = e;
        if (best < 0)
            return;
        out[(*n)++] = (uint16_t)best;
    }
}

/* The experts predicted for the next visit of layer; returns how many. */
static int pred_make(const struct predictor *p, replay_predictor kind, int layer, int width,
                     uint16_t *out)
{
    int n = 0;
    if (kind == PREDICT_PREV || kind == PREDICT_MIX) {
        const uint16_t *last = p->last + (size_t)layer * TRACE_MAX_K;
        for (int i = 0; i < p->last_n[layer] && n < width; i++)
            out[n++] = last[i];
    }
    if (kind == PREDICT_FREQ || kind == PREDICT_MIX)
        pred_fill_freq(p, layer, out, &n, width);
    return n;
}

/* --- the replay ------------------------------------------------------------ */

struct rp {
    const trace *t;
    const replay_opts *o;
    replay_result *r;
    int L, E;
    policy **pol;      /* n_pol: 1, or one per layer */
    int n_pol;
    uint8_t *pf_unused; /* [L][E]: loaded by a prefetch, not used since */
    struct predictor pred;
};

static policy *pol_of(struct rp *rp, policy_key k)
{
    return rp->pol[rp->n_pol > 1 ? policy_key_layer(k) : 0];
}

static size_t idx_of(const struct rp *rp, policy_key k)
{
    return (size_t)policy_key_layer(k) * (size_t)rp->E + (size_t)policy_key_expert(k);
}

static void pols_free(struct rp *rp)
{
    for (int i = 0; rp->pol && i < rp->n_pol; i++)
        policy_destroy(rp->pol[i]);
}

/* (Re)creates the cache: empty, with the options' capacity. Prefetched
 * entries still unused are dropped, hence wasted. */
static int pols_reset(struct rp *rp, sw_err *err)
{
    pols_free(rp);
    for (size_t i = 0; i < (size_t)rp->L * (size_t)rp->E; i++)
        if (rp->pf_unused[i]) {
            rp->pf_unused[i] = 0;
            rp->r->prefetch_wasted++;
        }
    for (int i = 0; i < rp->n_pol; i++) {
        size_t cap = rp->o->capacity;
        if (rp->n_pol > 1)
            cap = cap / (size_t)rp->n_pol + ((size_t)i < cap % (size_t)rp->n_pol);
        rp->pol[i] = NULL;
        int rc = policy_create_opts(rp->o->policy, cap, &rp->o->popts, &rp->pol[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Evicts until p has room. *ok false when it cannot (all pinned, or no
 * capacity at all): the entry is then read for this use only. */
static void make_room(struct rp *rp, policy *p, bool *ok)
{
    while (policy_full(p)) {
        policy_key v;
        if (policy_victim(p, &v)) {
            *ok = false;
            return;
        }
        size_t i = idx_of(rp, v);
        if (rp->pf_unused[i]) {
            rp->pf_unused[i] = 0;
            rp->r->prefetch_wasted++;
        }
        policy_remove(p, v);
    }
    *ok = true;
}

/* A hit: touched and pinned for the step. */
static int access_hit(struct rp *rp, policy_key k)
{
    policy *p = pol_of(rp, k);
    size_t i = idx_of(rp, k);
    rp->r->accesses++;
    rp->r->hits++;
    if (rp->pf_unused[i]) {
        rp->pf_unused[i] = 0;
        rp->r->prefetch_hits++;
    }
    policy_touch(p, k, true);
    return policy_pin(p, k);
}

/* A demand miss: loaded (a victim evicted first) and pinned for the step. */
static int access_miss(struct rp *rp, policy_key k, sw_err *err)
{
    policy *p = pol_of(rp, k);
    bool ok;
    rp->r->accesses++;
    rp->r->misses++;
    make_room(rp, p, &ok);
    if (!ok)
        return 0;
    int rc = policy_insert(p, k, err);
    if (!rc)
        rc = policy_touch(p, k, false);
    if (!rc)
        rc = policy_pin(p, k);
    return rc;
}

static int prefetch_one(struct rp *rp, policy_key k, sw_err *err)
{
    policy *p = pol_of(rp, k);
    if (policy_contains(p, k))
        return 0;
    bool ok;
    make_room(rp, p, &ok);
    if (!ok)
        return 0;
    int rc = policy_insert(p, k, err);
    if (rc)
        return rc;
    rp->pf_unused[idx_of(rp, k)] = 1;
    rp->r->prefetches++;
    return 0;
}

/* Predicts step `next` from what is known after step `now`, scores the
 * prediction and, if asked, prefetches it. */
static int predict_step(struct rp *rp, const trace_step *next, sw_err *err)
{
    const trace *t = rp->t;
    uint16_t want[TRACE_MAX_K];
    int width = rp->o->width > 0 ? rp->o->width : t->top_k;
    if (width > TRACE_MAX_K)
        width = TRACE_MAX_K;
    int n = pred_make(&rp->pred, rp->o->predictor, next->layer, width, want);
    const uint16_t *actual = t->experts + next->off;
    int correct = 0;
    for (int i = 0; i < n; i++)
        correct += in_list(actual, next->n, want[i]);
    replay_pred *lp = &rp->r->per_layer[next->layer];
    lp->predicted += (uint64_t)n;
    lp->correct += (uint64_t)correct;
    lp->actual += next->n;
    rp->r->pred.predicted += (uint64_t)n;
    rp->r->pred.correct += (uint64_t)correct;
    rp->r->pred.actual += next->n;
    if (!rp->o->prefetch)
        return 0;
    for (int i = 0; i < n; i++) {
        int rc = prefetch_one(rp, policy_key_make(next->layer, want[i]), err);
        if (rc)
            return rc;
    }
    return 0;
}

static int replay_step(struct rp *rp, size_t s, sw_err *err)
{
    const trace *t = rp->t;
    const trace_step *st = &t->steps[s];
    const uint16_t *ex = t->experts + st->off;
    bool present[TRACE_MAX_K];
    int rc = 0;
    for (int i = 0; i < rp->n_pol; i++)
        policy_layer_begin(rp->pol[i], st->layer);
    /* the router picks all of a layer's experts at once: those cached are
     * pinned before any miss may evict */
    for (int i = 0; i < st->n && !rc; i++) {
        policy_key k = policy_key_make(st->layer, ex[i]);
        present[i] = policy_contains(pol_of(rp, k), k);
        if (present[i])
            rc = access_hit(rp, k);
    }
    for (int i = 0; i < st->n && !rc; i++)
        if (!present[i])
            rc = access_miss(rp, policy_key_make(st->layer, ex[i]), err);
    if (rc)
        return rc;
    pred_observe(&rp->pred, st->layer, ex, st->n);
    size_t d = rp->o->distance > 0 ? (size_t)rp->o->distance : 1;
    if (rp->o->predictor != PREDICT_NONE && s + d < t->n_steps &&
        (!rp->o->cold_per_seq || t->steps[s + d].seq == st->seq))
        rc = predict_step(rp, &t->steps[s + d], err);
    /* the step is done: its experts may go (those streamed were never pinned) */
    for (int i = 0; i < st->n; i++) {
        policy_key k = policy_key_make(st->layer, ex[i]);
        if (policy_pinned(pol_of(rp, k), k))
            policy_unpin(pol_of(rp, k), k);
    }
    return rc;
}

int replay_run(const trace *t, const replay_opts *o, replay_result *out, sw_err *err)
{
    memset(out, 0, sizeof *out);
    if (!t->sorted)
        return sw_errf(err, SW_EINVAL, "replay: the trace is not finished (trace_finish)");
    if (t->n_steps == 0)
        return sw_errf(err, SW_EINVAL, "replay: the trace is empty");
    if ((unsigned)o->predictor >= PREDICT_COUNT)
        return sw_errf(err, SW_EINVAL, "replay: bad predictor");
    struct rp rp = {.t = t, .o = o, .r = out, .L = t->n_layers, .E = t->n_experts};
    rp.n_pol = o->per_layer ? rp.L : 1;
    int rc = SW_ENOMEM;
    out->n_layers = rp.L;
    out->per_layer = calloc((size_t)rp.L, sizeof *out->per_layer);
    rp.pol = calloc((size_t)rp.n_pol, sizeof *rp.pol);
    rp.pf_unused = calloc((size_t)rp.L * (size_t)rp.E, 1);
    if (!out->per_layer || !rp.pol || !rp.pf_unused ||
        pred_init(&rp.pred, rp.L, rp.E, o->halflife > 0 ? o->halflife : 4.0)) {
        sw_errf(err, SW_ENOMEM, "replay: out of memory");
        goto done;
    }
    rc = pols_reset(&rp, err);
    for (size_t s = 0; s < t->n_steps && !rc; s++) {
        if (o->cold_per_seq && s > 0 && t->steps[s].seq != t->steps[s - 1].seq) {
            pred_reset(&rp.pred);
            rc = pols_reset(&rp, err);
            if (rc)
                break;
        }
        rc = replay_step(&rp, s, err);
    }
    if (rc)
        goto done;
    for (size_t i = 0; i < (size_t)rp.L * (size_t)rp.E; i++)
        out->prefetch_wasted += rp.pf_unused[i];
    out->steps = t->n_steps;
    out->tokens = trace_n_tokens(t);
    out->bytes_read = (out->misses + out->prefetches) * o->entry_bytes;
done:
    pols_free(&rp);
    free(rp.pol);
    free(rp.pf_unused);
    pred_free(&rp.pred);
    if (rc)
        replay_result_free(out);
    return rc;
}

void replay_result_free(replay_result *r)
{
    free(r->per_layer);
    r->per_layer = NULL;
    r->n_layers = 0;
}

/* --- Belady's optimum -------------------------------------------------------- */

struct opt_item {
    uint64_t next; /* position of the entry's next use (UINT64_MAX: never) */
    policy_key key;
};

/* Max-heap on next use. Entries go stale when a key is used again; they are
 * recognised by comparing with next_use[] and skipped. */
static void opt_push(struct opt_item *h, size_t *n, struct opt_item x)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].next < x.next) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static struct opt_item opt_pop(struct opt_item *h, size_t *n)
{
    struct opt_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].next > h[c].next)
            c++;
        if (h[c].next <= x.next)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

static size_t opt_slot(const trace *t, policy_key k)
{
    return (size_t)policy_key_layer(k) * (size_t)t->n_experts + (size_t)policy_key_expert(k);
}

/* Pops the cached entry used furthest ahead that the current step does not
 * hold. False when there is none. */
static bool opt_victim(const trace *t, const trace_step *st, const uint8_t *cached,
                       const uint64_t *next_use, struct opt_item *heap, size_t *hn,
                       struct opt_item *out)
{
    struct opt_item keep[TRACE_MAX_K];
    int n_keep = 0;
    bool found = false;
    while (*hn && !found) {
        struct opt_item v = opt_pop(heap, hn);
        size_t vs = opt_slot(t, v.key);
        if (!cached[vs] || next_use[vs] != v.next)
            continue; /* stale item: the key was used again since */
        if (policy_key_layer(v.key) == st->layer &&
            in_list(t->experts + st->off, st->n, (uint16_t)policy_key_expert(v.key)))
            keep[n_keep++] = v; /* in use by this step: pinned */
        else {
            *out = v;
            found = true;
        }
    }
    for (int i = 0; i < n_keep; i++)
        opt_push(heap, hn, keep[i]);
    return found;
}

int replay_opt(const trace *t, size_t capacity, uint64_t *hits, uint64_t *accesses,
               sw_err *err)
{
    *hits = *accesses = 0;
    if (!t->sorted)
        return sw_errf(err, SW_EINVAL, "replay: the trace is not finished (trace_finish)");
    size_t n = t->n_picks, slots = (size_t)t->n_layers * (size_t)t->n_experts;
    /* time is a pick's rank in engine order; picks are stored in add order */
    uint64_t *next = malloc((n ? n : 1) * sizeof *next);   /* per stored pick */
    uint64_t *next_use = malloc(slots * sizeof *next_use); /* per key */
    uint8_t *cached = calloc(slots, 1);
    /* one push per pick; re-pushes follow pops, so this bounds the heap */
    struct opt_item *heap = malloc((n + 1) * sizeof *heap);
    int rc = 0;
    if (!next || !next_use || !cached || !heap) {
        rc = sw_errf(err, SW_ENOMEM, "replay: out of memory");
        goto done;
    }
    for (size_t i = 0; i < slots; i++)
        next_use[i] = UINT64_MAX;
    uint64_t rank = n;
    for (size_t s = t->n_steps; s-- > 0;) {
        const trace_step *st = &t->steps[s];
        for (int k = st->n; k-- > 0;) {
            size_t pos = st->off + (size_t)k;
            size_t slot = opt_slot(t, policy_key_make(st->layer, t->experts[pos]));
            next[pos] = next_use[slot];
            next_use[slot] = --rank;
        }
    }
    size_t count = 0, hn = 0;
    for (size_t s = 0; s < t->n_steps; s++) {
        const trace_step *st = &t->steps[s];
        for (int k = 0; k < st->n; k++) {
            size_t pos = st->off + (size_t)k;
            policy_key key = policy_key_make(st->layer, t->experts[pos]);
            size_t slot = opt_slot(t, key);
            (*accesses)++;
            if (cached[slot]) {
                (*hits)++;
            } else if (count < capacity) {
                cached[slot] = 1;
                count++;
            } else {
                struct opt_item v;
                bool found = opt_victim(t, st, cached, next_use, heap, &hn, &v);
                if (!found || v.next <= next[pos]) {
                    /* bypass: the newcomer is needed later than any victim */
                    if (found)
                        opt_push(heap, &hn, v);
                    continue;
                }
                cached[opt_slot(t, v.key)] = 0;
                cached[slot] = 1;
            }
            next_use[slot] = next[pos];
            opt_push(heap, &hn, (struct opt_item){next[pos], key});
        }
    }
done:
    free(next);
    free(next_use);
    free(cached);
    free(heap);
    return rc;
}
