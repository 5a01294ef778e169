/*
 * replay.c — trace replay through a cache policy and a predictor, and
 * Belady's optimum. See replay.h for what is counted and why.
 */
#include "store/replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_pred_names[PREDICT_COUNT] = {"none", "prev", "freq", "mix", "cooc",
                                                        "auto"};

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
    return sw_errf(err, SW_EINVAL, "unknown predictor '%s' (known: none, prev, freq, mix, cooc, auto)",
                   name ? name : "");
}

static bool in_list(const uint16_t *v, int n, uint16_t x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* The predictor's kind for a replay predictor. */
static xpred_kind kind_of(replay_predictor p)
{
    switch (p) {
    case PREDICT_PREV: return XPRED_PREV;
    case PREDICT_FREQ: return XPRED_FREQ;
    case PREDICT_MIX: return XPRED_MIX;
    case PREDICT_COOC: return XPRED_COOC;
    default: return XPRED_AUTO;
    }
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
    xpred *pred;        /* NULL: PREDICT_NONE */
    int width, room;    /* experts predicted, and read ahead at most, per step */
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

/* Evicts until p has room. *ok false when it cannot (all pinned, no
 * capacity at all, or the victim belongs to layer `spare`, which a prefetch
 * for that layer never evicts, as the store's does not): the entry is then
 * read for this use only, or not prefetched. */
static void make_room(struct rp *rp, policy *p, int spare, bool *ok)
{
    while (policy_full(p)) {
        policy_key v;
        if (policy_victim(p, &v) || policy_key_layer(v) == spare) {
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
    make_room(rp, p, -1, &ok);
    if (!ok)
        return 0;
    int rc = policy_insert(p, k, err);
    if (!rc)
        rc = policy_touch(p, k, false);
    if (!rc)
        rc = policy_pin(p, k);
    return rc;
}

/* Loads a predicted entry; *stop when no room can be made. */
static int prefetch_one(struct rp *rp, policy_key k, bool *stop, sw_err *err)
{
    policy *p = pol_of(rp, k);
    bool ok;
    make_room(rp, p, policy_key_layer(k), &ok);
    if (!ok) {
        *stop = true;
        return 0;
    }
    int rc = policy_insert(p, k, err);
    if (rc)
        return rc;
    rp->pf_unused[idx_of(rp, k)] = 1;
    rp->r->prefetches++;
    return 0;
}

/* Predicts step `next` from what is known after the current step, scores
 * the prediction and, if asked, reads ahead the predicted entries not
 * cached, best first, at most `room` of them. */
static int predict_step(struct rp *rp, const trace_step *next, int width, int room, sw_err *err)
{
    const trace *t = rp->t;
    int want[TRACE_MAX_K];
    int n = xpred_predict(rp->pred, kind_of(rp->o->predictor), next->layer, width, want);
    const uint16_t *actual = t->experts + next->off;
    int correct = 0;
    for (int i = 0; i < n; i++)
        correct += in_list(actual, next->n, (uint16_t)want[i]);
    replay_pred *lp = &rp->r->per_layer[next->layer];
    lp->predicted += (uint64_t)n;
    lp->correct += (uint64_t)correct;
    lp->actual += next->n;
    rp->r->pred.predicted += (uint64_t)n;
    rp->r->pred.correct += (uint64_t)correct;
    rp->r->pred.actual += next->n;
    if (!rp->o->prefetch)
        return 0;
    bool stop = false;
    for (int i = 0; i < n && room > 0 && !stop; i++) {
        policy_key k = policy_key_make(next->layer, want[i]);
        if (policy_contains(pol_of(rp, k), k))
            continue;
        int rc = prefetch_one(rp, k, &stop, err);
        if (rc)
            return rc;
        room -= !stop;
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
    size_t d = rp->o->distance > 0 ? (size_t)rp->o->distance : 1;
    if (rp->pred) {
        int v[TRACE_MAX_K];
        for (int i = 0; i < st->n; i++)
            v[i] = ex[i];
        xpred_observe(rp->pred, st->layer, v, st->n);
        if (s + d < t->n_steps && (!rp->o->cold_per_seq || t->steps[s + d].seq == st->seq))
            rc = predict_step(rp, &t->steps[s + d], rp->width, rp->room, err);
    }
    /* the step is done: its experts may go (those streamed were never pinned) */
    for (int i = 0; i < st->n; i++) {
        policy_key k = policy_key_make(st->layer, ex[i]);
        if (policy_pinned(pol_of(rp, k), k))
            policy_unpin(pol_of(rp, k), k);
    }
    return rc;
}

/* Widths and room: the options', or (room_auto) the store's rule. */
static void set_width(struct rp *rp)
{
    const replay_opts *o = rp->o;
    rp->width = o->width > 0 ? o->width : rp->t->top_k;
    if (rp->width > TRACE_MAX_K)
        rp->width = TRACE_MAX_K;
    rp->room = o->room_auto ? xpred_room((int64_t)o->capacity, rp->L, rp->t->top_k, rp->width)
                            : rp->width;
}

static int pred_open(struct rp *rp, sw_err *err)
{
    const replay_opts *o = rp->o;
    if (o->predictor == PREDICT_NONE)
        return 0;
    xpred_opts po = {.n_layers = rp->L, .n_experts = rp->E, .top_k = rp->t->top_k,
                     .freq_halflife = o->halflife};
    if (o->weights)
        memcpy(&po.w_hint, o->weights, 4 * sizeof *o->weights);
    return xpred_create(&po, &rp->pred, err);
}

/* Every predictor's record, per layer, from the predictor. */
static int copy_kinds(struct rp *rp, replay_result *out)
{
    if (!rp->pred)
        return 0;
    out->kinds = calloc((size_t)XPRED_COUNT * (size_t)rp->L, sizeof *out->kinds);
    if (!out->kinds)
        return SW_ENOMEM;
    for (int k = 0; k < XPRED_COUNT; k++)
        for (int l = 0; l < rp->L; l++) {
            xpred_count c = xpred_stats(rp->pred, (xpred_kind)k, l);
            out->kinds[(size_t)k * rp->L + l] = (replay_pred){c.predicted, c.correct, c.actual};
        }
    return 0;
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
    set_width(&rp);
    int rc = SW_ENOMEM;
    out->n_layers = rp.L;
    out->per_layer = calloc((size_t)rp.L, sizeof *out->per_layer);
    rp.pol = calloc((size_t)rp.n_pol, sizeof *rp.pol);
    rp.pf_unused = calloc((size_t)rp.L * (size_t)rp.E, 1);
    if (!out->per_layer || !rp.pol || !rp.pf_unused) {
        sw_errf(err, SW_ENOMEM, "replay: out of memory");
        goto done;
    }
    if ((rc = pred_open(&rp, err)) || (rc = pols_reset(&rp, err)))
        goto done;
    for (size_t s = 0; s < t->n_steps && !rc; s++) {
        if (o->cold_per_seq && s > 0 && t->steps[s].seq != t->steps[s - 1].seq) {
            if (rp.pred)
                xpred_reset(rp.pred);
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
    if (copy_kinds(&rp, out))
        rc = sw_errf(err, SW_ENOMEM, "replay: out of memory");
done:
    pols_free(&rp);
    free(rp.pol);
    free(rp.pf_unused);
    xpred_destroy(rp.pred);
    if (rc)
        replay_result_free(out);
    return rc;
}

void replay_opts_default(replay_opts *o, const trace *t, size_t capacity)
{
    memset(o, 0, sizeof *o);
    o->policy = POLICY_DEFAULT;
    o->capacity = capacity;
    o->predictor = PREDICT_AUTO;
    o->prefetch = true;
    o->width = xpred_width((int64_t)capacity, t->n_layers, t->top_k);
    o->room_auto = true;
}

void replay_result_free(replay_result *r)
{
    free(r->per_layer);
    free(r->kinds);
    r->per_layer = NULL;
    r->kinds = NULL;
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
