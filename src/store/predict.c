/*
 * predict.c — next-layer expert prediction (see predict.h).
 *
 * State per layer: the co-occurrence rows cooc[l][i][*] with their totals
 * (experts i of the step before a visit of l), the previous visit's experts,
 * forward-decayed use counts, the pending hint, and each kind's latest
 * guess awaiting its score.
 */
#include "store/predict.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define COOC_DECAY 0.98f /* per learning step of a row */

struct guess {
    int *ex; /* [n_experts] */
    int n;
    bool made;
};

struct xpred {
    xpred_opts o;
    int L, E, K;
    float *cooc;     /* [L][E][E]: cooc[l][i][j], j of layer l after i of the step before */
    float *cooc_n;   /* [L][E]: row totals (decayed like the rows) */
    int *prev;       /* [L][E]: experts of the layer's previous visit */
    int *prev_n;     /* [L] */
    double *freq;    /* [L][E]: uses weighted 2^((visit - base) / halflife) */
    uint64_t *visit; /* [L] */
    uint64_t *base;  /* [L] */
    int *hint;       /* [L][E] */
    int *hint_n;     /* [L] */
    int *last;       /* [E]: experts of the latest step (any layer) */
    int last_n;      /* 0: none, or the step was a batch (not learned from) */
    struct guess *g; /* [XPRED_COUNT][L] */
    xpred_count *st; /* [XPRED_COUNT][L] */
    double *score;   /* [E] scratch */
    int *order;      /* [E] scratch */
};

static const char *const g_names[XPRED_COUNT] = {"auto", "hint", "cooc", "prev", "freq", "mix"};

const char *xpred_kind_name(xpred_kind k)
{
    return (unsigned)k < XPRED_COUNT ? g_names[k] : "?";
}

void xpred_destroy(xpred *p)
{
    if (!p)
        return;
    for (int i = 0; p->g && i < XPRED_COUNT * p->L; i++)
        free(p->g[i].ex);
    free(p->g);
    free(p->st);
    free(p->cooc);
    free(p->cooc_n);
    free(p->prev);
    free(p->prev_n);
    free(p->freq);
    free(p->visit);
    free(p->base);
    free(p->hint);
    free(p->hint_n);
    free(p->last);
    free(p->score);
    free(p->order);
    free(p);
}

int xpred_create(const xpred_opts *o, xpred **out, sw_err *err)
{
    *out = NULL;
    if (o->n_layers < 1 || o->n_experts < 1 || o->n_experts > 65536 || o->top_k < 1)
        return sw_errf(err, SW_EINVAL, "predictor: bad shape (%d layers, %d experts, top-%d)",
                       o->n_layers, o->n_experts, o->top_k);
    xpred *p = calloc(1, sizeof *p);
    if (!p)
        return sw_errf(err, SW_ENOMEM, "predictor: out of memory");
    p->o = *o;
    if (!(o->w_hint || o->w_cooc || o->w_prev || o->w_freq)) {
        p->o.w_hint = XPRED_W_HINT;
        p->o.w_cooc = XPRED_W_COOC;
        p->o.w_prev = XPRED_W_PREV;
        p->o.w_freq = XPRED_W_FREQ;
    }
    if (p->o.freq_halflife <= 0)
        p->o.freq_halflife = 4.0;
    size_t L = (size_t)o->n_layers, E = (size_t)o->n_experts;
    p->L = o->n_layers;
    p->E = o->n_experts;
    p->K = o->top_k;
    p->cooc = calloc(L * E * E, sizeof *p->cooc);
    p->cooc_n = calloc(L * E, sizeof *p->cooc_n);
    p->prev = calloc(L * E, sizeof *p->prev);
    p->prev_n = calloc(L, sizeof *p->prev_n);
    p->freq = calloc(L * E, sizeof *p->freq);
    p->visit = calloc(L, sizeof *p->visit);
    p->base = calloc(L, sizeof *p->base);
    p->hint = calloc(L * E, sizeof *p->hint);
    p->hint_n = calloc(L, sizeof *p->hint_n);
    p->last = calloc(E, sizeof *p->last);
    p->g = calloc((size_t)XPRED_COUNT * L, sizeof *p->g);
    p->st = calloc((size_t)XPRED_COUNT * L, sizeof *p->st);
    p->score = calloc(E, sizeof *p->score);
    p->order = calloc(E, sizeof *p->order);
    bool ok = p->cooc && p->cooc_n && p->prev && p->prev_n && p->freq && p->visit && p->base &&
              p->hint && p->hint_n && p->last && p->g && p->st && p->score && p->order;
    for (size_t i = 0; ok && i < (size_t)XPRED_COUNT * L; i++)
        ok = (p->g[i].ex = calloc(E, sizeof *p->g[i].ex)) != NULL;
    if (!ok) {
        xpred_destroy(p);
        return sw_errf(err, SW_ENOMEM, "predictor: out of memory");
    }
    *out = p;
    return 0;
}

void xpred_reset(xpred *p)
{
    size_t L = (size_t)p->L, E = (size_t)p->E;
    memset(p->cooc, 0, L * E * E * sizeof *p->cooc);
    memset(p->cooc_n, 0, L * E * sizeof *p->cooc_n);
    memset(p->prev_n, 0, L * sizeof *p->prev_n);
    memset(p->freq, 0, L * E * sizeof *p->freq);
    memset(p->visit, 0, L * sizeof *p->visit);
    memset(p->base, 0, L * sizeof *p->base);
    memset(p->hint_n, 0, L * sizeof *p->hint_n);
    for (size_t i = 0; i < (size_t)XPRED_COUNT * L; i++)
        p->g[i].made = false;
    p->last_n = 0;
}

void xpred_hint(xpred *p, int layer, const int *ex, int n)
{
    if (layer < 0 || layer >= p->L)
        return;
    int m = 0;
    for (int i = 0; i < n && m < p->E; i++)
        if (ex[i] >= 0 && ex[i] < p->E)
            p->hint[(size_t)layer * p->E + m++] = ex[i];
    p->hint_n[layer] = m;
}

/* --- ranking ----------------------------------------------------------------- */

/* The top `width` of p->score with score > 0 into out, best first (ties to
 * the lower expert). A partial selection: width is small next to E. */
static int top_scores(xpred *p, int width, int *out)
{
    int n = 0;
    for (int e = 0; e < p->E; e++) {
        double s = p->score[e];
        if (!(s > 0) || (n == width && !(s > p->score[out[n - 1]])))
            continue;
        int i = n < width ? n++ : width - 1;
        while (i > 0 && s > p->score[out[i - 1]]) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = e;
    }
    return n;
}

static void add_cooc(xpred *p, int layer, double w)
{
    if (!p->last_n || w == 0)
        return;
    const float *rows = p->cooc + (size_t)layer * p->E * p->E;
    const float *tot = p->cooc_n + (size_t)layer * p->E;
    double f = w / p->last_n;
    for (int a = 0; a < p->last_n; a++) {
        int i = p->last[a];
        if (!(tot[i] > 0))
            continue;
        const float *r = rows + (size_t)i * p->E;
        double g = f / tot[i];
        for (int j = 0; j < p->E; j++)
            p->score[j] += g * r[j];
    }
}

static void add_list(xpred *p, const int *ex, int n, double w)
{
    for (int i = 0; i < n; i++)
        p->score[ex[i]] += w;
}

static void add_freq(xpred *p, int layer, double w)
{
    const double *f = p->freq + (size_t)layer * p->E;
    double sum = 0;
    for (int e = 0; e < p->E; e++)
        sum += f[e];
    if (!(sum > 0) || w == 0)
        return;
    double g = w * p->K / sum;
    for (int e = 0; e < p->E; e++)
        p->score[e] += g * f[e];
}

/* One kind's guess for layer into out[0..width). */
static int rank_kind(xpred *p, xpred_kind kind, int layer, int width, int *out)
{
    const int *prev = p->prev + (size_t)layer * p->E;
    int n_prev = p->prev_n[layer];
    memset(p->score, 0, sizeof *p->score * (size_t)p->E);
    switch (kind) {
    case XPRED_HINT:
        add_list(p, p->hint + (size_t)layer * p->E, p->hint_n[layer], 1.0);
        break;
    case XPRED_COOC: add_cooc(p, layer, 1.0); break;
    case XPRED_PREV: add_list(p, prev, n_prev, 1.0); break;
    case XPRED_FREQ: add_freq(p, layer, 1.0); break;
    case XPRED_MIX:
        add_freq(p, layer, 1.0 / (4.0 * p->K)); /* below 1: only orders what prev leaves */
        add_list(p, prev, n_prev, 1.0);
        break;
    case XPRED_AUTO:
        add_list(p, p->hint + (size_t)layer * p->E, p->hint_n[layer], p->o.w_hint);
        add_cooc(p, layer, p->o.w_cooc);
        add_list(p, prev, n_prev, p->o.w_prev);
        add_freq(p, layer, p->o.w_freq);
        break;
    default: return 0;
    }
    return top_scores(p, width, out);
}

int xpred_predict(xpred *p, xpred_kind kind, int layer, int width, int *out)
{
    if (layer < 0 || layer >= p->L || width <= 0 || (unsigned)kind >= XPRED_COUNT)
        return 0;
    if (width > p->E)
        width = p->E;
    int ret = 0;
    for (int k = 0; k < XPRED_COUNT; k++) {
        struct guess *g = &p->g[(size_t)k * p->L + layer];
        int w = k == (int)kind ? width : p->K < p->E ? p->K : p->E;
        if (k == XPRED_HINT && !p->hint_n[layer]) {
            g->made = false; /* no hint: nothing to score */
            continue;
        }
        g->n = rank_kind(p, (xpred_kind)k, layer, w, g->ex);
        g->made = true;
        if (k == (int)kind) {
            memcpy(out, g->ex, sizeof *out * (size_t)g->n);
            ret = g->n;
        }
    }
    return ret;
}

/* --- learning and scoring ------------------------------------------------------ */

static bool has(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static void score_guesses(xpred *p, int layer, const int *ex, int n)
{
    for (int k = 0; k < XPRED_COUNT; k++) {
        struct guess *g = &p->g[(size_t)k * p->L + layer];
        if (!g->made)
            continue;
        int right = 0;
        for (int i = 0; i < g->n; i++)
            right += has(ex, n, g->ex[i]);
        xpred_count *c = &p->st[(size_t)k * p->L + layer];
        c->predicted += (uint64_t)g->n;
        c->correct += (uint64_t)right;
        c->actual += (uint64_t)n;
        g->made = false;
    }
}

static void learn_cooc(xpred *p, int layer, const int *ex, int n)
{
    float *rows = p->cooc + (size_t)layer * p->E * p->E;
    float *tot = p->cooc_n + (size_t)layer * p->E;
    for (int a = 0; a < p->last_n; a++) {
        int i = p->last[a];
        float *r = rows + (size_t)i * p->E;
        for (int j = 0; j < p->E; j++)
            r[j] *= COOC_DECAY;
        for (int b = 0; b < n; b++)
            r[ex[b]] += 1.0f;
        tot[i] = tot[i] * COOC_DECAY + 1.0f;
    }
}

/* Forward decay as policy.c's: a use at visit v weighs 2^((v - base) / H). */
static void learn_freq(xpred *p, int layer, const int *ex, int n)
{
    double *row = p->freq + (size_t)layer * p->E;
    double e = (double)(p->visit[layer] - p->base[layer]) / p->o.freq_halflife;
    if (e > 512) {
        double f = exp2(-e);
        for (int i = 0; i < p->E; i++)
            row[i] *= f;
        p->base[layer] = p->visit[layer];
        e = 0;
    }
    double w = exp2(e);
    for (int i = 0; i < n; i++)
        row[ex[i]] += w;
    p->visit[layer]++;
}

void xpred_observe(xpred *p, int layer, const int *ex, int n)
{
    if (layer < 0 || layer >= p->L)
        return;
    int m = 0; /* valid experts only, in place of ex */
    int *v = p->order;
    for (int i = 0; i < n && m < p->E; i++)
        if (ex[i] >= 0 && ex[i] < p->E)
            v[m++] = ex[i];
    score_guesses(p, layer, v, m);
    bool single = m <= p->K;
    if (single && p->last_n)
        learn_cooc(p, layer, v, m);
    learn_freq(p, layer, v, m);
    memcpy(p->prev + (size_t)layer * p->E, v, sizeof *v * (size_t)m);
    p->prev_n[layer] = m;
    p->hint_n[layer] = 0; /* a hint serves one visit */
    if (single)
        memcpy(p->last, v, sizeof *v * (size_t)m);
    p->last_n = single ? m : 0;
}

xpred_count xpred_stats(const xpred *p, xpred_kind kind, int layer)
{
    xpred_count c = {0};
    if ((unsigned)kind >= XPRED_COUNT || layer >= p->L)
        return c;
    for (int l = layer < 0 ? 0 : layer; l < (layer < 0 ? p->L : layer + 1); l++) {
        const xpred_count *s = &p->st[(size_t)kind * p->L + l];
        c.predicted += s->predicted;
        c.correct += s->correct;
        c.actual += s->actual;
    }
    return c;
}

int xpred_room(int64_t capacity, int n_moe_layers, int k, int width)
{
    if (width <= 0 || n_moe_layers <= 0)
        return 0;
    int64_t share = capacity / n_moe_layers;
    int64_t room = share - k;
    if (share < 2 * k && capacity >= 2 * (int64_t)k)
        room = k; /* a cache smaller than two tokens' worth per layer */
    if (room > width)
        room = width;
    return room > 0 ? (int)room : 0;
}

int xpred_width(int64_t capacity, int n_moe_layers, int k)
{
    int64_t w = n_moe_layers > 0 ? capacity / n_moe_layers / 2 : 0;
    return w < 2 * k ? 2 * k : w > 65536 ? 65536 : (int)w;
}
