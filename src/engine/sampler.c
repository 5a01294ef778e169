/*
 * sampler.c — token sampling (penalties, top-k, top-p, min-p, temperature)
 * and the stop-string matcher. See sampler.h for the semantics.
 */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* One token still in the running. */
typedef struct cand {
    float logit;
    float w;     /* exp(logit - max logit), for top-p */
    int id;
} cand;

struct sampler {
    sampler_params p;
    int n_vocab;
    uint64_t seed;
    uint64_t rng[4];     /* xoshiro256** state */
    int n_generated;

    /* The penalty window: the last penalty_last_n accepted tokens in a ring
     * (no ring when the window is unbounded), how often each token occurs in
     * it, and the distinct tokens that occur, so that applying penalties
     * costs O(distinct tokens), not O(n_vocab). */
    int *ring;           /* [ring_cap], oldest at ring_head */
    int ring_cap, ring_len, ring_head;
    int32_t *count;      /* [n_vocab] */
    int *seen;           /* [n_vocab]: tokens with count > 0, n_seen of them */
    int *seen_at;        /* [n_vocab]: index in seen, while count > 0 */
    int n_seen;

    cand *cand;          /* [n_vocab] scratch */
};

/* --- random numbers -------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static uint64_t rng_next(uint64_t st[4])
{
    uint64_t out = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return out;
}

/* Uniform in [0, 1), 53 bits. */
static double rng_uniform(uint64_t st[4])
{
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

static uint64_t seed_from_os(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof v, 0) == (ssize_t)sizeof v && v != SAMPLER_SEED_RANDOM)
        return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    v = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    return v == SAMPLER_SEED_RANDOM ? 0 : v;
}

/* --- creation ---------------------------------------------------------------- */

sampler_params sampler_default_params(void)
{
    return (sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = SAMPLER_SEED_RANDOM,
        .max_tokens = 0,
    };
}

static int params_check(const sampler_params *p, int n_vocab, sw_err *err)
{
    if (n_vocab <= 0)
        return sw_errf(err, SW_EINVAL, "sampler: vocabulary size %d", n_vocab);
    if (!isfinite(p->temperature))
        return sw_errf(err, SW_EINVAL, "sampler: temperature must be finite");
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return sw_errf(err, SW_EINVAL, "sampler: top_p %g is not in [0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return sw_errf(err, SW_EINVAL, "sampler: min_p %g is not in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return sw_errf(err, SW_EINVAL, "sampler: repeat_penalty %g must be > 0",
                       p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return sw_errf(err, SW_EINVAL, "sampler: presence and frequency penalties must be finite");
    if (p->penalty_last_n < -1)
        return sw_errf(err, SW_EINVAL, "sampler: penalty_last_n %d (use -1 for all tokens)",
                       p->penalty_last_n);
    return 0;
}

int sampler_create(const sampler_params *p, int n_vocab, sampler **out, sw_err *err)
{
    *out = NULL;
    int rc = params_check(p, n_vocab, err);
    if (rc < 0)
        return rc;
    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return sw_errf(err, SW_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->ring_cap = p->penalty_last_n > 0 ? p->penalty_last_n : 0;
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->seen = malloc((size_t)n_vocab * sizeof *s->seen);
    s->seen_at = malloc((size_t)n_vocab * sizeof *s->seen_at);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (s->ring_cap)
        s->ring = malloc((size_t)s->ring_cap * sizeof *s->ring);
    if (!s->count || !s->seen || !s->seen_at || !s->cand || (s->ring_cap && !s->ring)) {
        sampler_free(s);
        return sw_errf(err, SW_ENOMEM, "sampler: out of memory for %d tokens", n_vocab);
    }
    s->seed = p->seed == SAMPLER_SEED_RANDOM ? seed_from_os() : p->seed;
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return 0;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    free(s->ring);
    free(s->count);
    free(s->seen);
    free(s->seen_at);
    free(s->cand);
    free(s);
}

uint64_t sampler_seed(const sampler *s)
{
    return s->seed;
}

/* --- the penalty window ----------------------------------------------------- */

static void window_add(sampler *s, int id)
{
    if (s->count[id]++ == 0) {
        s->seen_at[id] = s->n_seen;
        s->seen[s->n_seen++] = id;
    }
}

static void window_remove(sampler *s, int id)
{
    if (--s->count[id] == 0) {
        int at = s->seen_at[id], last = s->seen[--s->n_seen];
        s->seen[at] = last;
        s->seen_at[last] = at;
    }
}

static void window_push(sampler *s, int id)
{
    if (id < 0 || id >= s->n_vocab || s->p.penalty_last_n == 0)
        return;
    if (s->ring_cap) {
        if (s->ring_len == s->ring_cap) {
            window_remove(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = id;
            s->ring_head = (s->ring_head + 1) % s->ring_cap;
        } else {
            s->ring[(s->ring_head + s->ring_len++) % s->ring_cap] = id;
        }
    }
    window_add(s, id);
}

void sampler_accept(sampler *s, int id)
{
    window_push(s, id);
    s->n_generated++;
}

void sampler_accept_prompt(sampler *s, const int *ids, int n)
{
    for (int i = 0; i < n; i++)
        window_push(s, ids[i]);
}

void sampler_reset(sampler *s)
{
    for (int i = 0; i < s->n_seen; i++)
        s->count[s->seen[i]] = 0;
    s->n_seen = 0;
    s->ring_len = s->ring_head = 0;
    s->n_generated = 0;
}

int sampler_n_generated(const sampler *s)
{
    return s->n_generated;
}

bool sampler_done(const sampler *s)
{
    return s->p.max_tokens > 0 && s->n_generated >= s->p.max_tokens;
}

void sampler_apply_penalties(const sampler *s, float *logits)
{
    const float rep = s->p.repeat_penalty, freq = s->p.frequency_penalty,
                pres = s->p.presence_penalty;
    if (rep == 1.0f && freq == 0.0f && pres == 0.0f)
        return;
    for (int i = 0; i < s->n_seen; i++) {
        int id = s->seen[i];
        float l = logits[id];
        if (rep != 1.0f)
            l = l > 0 ? l / rep : l * rep;
        logits[id] = l - (float)s->count[id] * freq - pres;
    }
}

/* --- selection ------------------------------------------------------------- */

/* The total order candidates are ranked by: higher logit first, then lower id. */
static inline bool cand_before(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void cand_swap(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Partitions c[lo, hi) (hi - lo >= 2) around a median of three; returns
 * the pivot's final index s: c[lo, s) rank before it, c(s, hi) after.
 * Keys are distinct (ids are), so the pivot's place is final. */
static size_t cand_partition(cand *c, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (cand_before(&c[mid], &c[lo]))
        cand_swap(&c[mid], &c[lo]);
    if (cand_before(&c[last], &c[lo]))
        cand_swap(&c[last], &c[lo]);
    if (cand_before(&c[mid], &c[last]))
        cand_swap(&c[mid], &c[last]); /* median now at last */
    size_t store = lo;
    for (size_t i = lo; i < last; i++)
        if (cand_before(&c[i], &c[last]))
            cand_swap(&c[i], &c[store++]);
    cand_swap(&c[store], &c[last]);
    return store;
}

/* Rearranges c[0, n) so that c[0, k) holds its k best candidates, in no
 * particular order (quickselect: expected O(n)). */
static void cand_select(cand *c, size_t n, size_t k)
{
    size_t lo = 0, hi = n;
    while (k > lo && k < hi && hi - lo > 1) {
        size_t s = cand_partition(c, lo, hi);
        if (k <= s)
            hi = s;
        else
            lo = s + 1;
    }
}

/* Index of the largest logit (NaN never wins; ties go to the lowest id). */
static int logits_argmax(const float *l, int n)
{
    int best = 0;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[i] > bv) {
            bv = l[i];
            best = i;
        }
    return best;
}

/* Top-p over c[0, n): the length m of the shortest head of the ranking
 * whose weight (c[].w) reaches target, with that head moved to c[0, m).
 * A quickselect that steers by mass instead of by count, so the nucleus is
 * found in expected O(n) however many tokens it holds; only the last few
 * candidates around the cut get sorted. */
static size_t top_p_cut(cand *c, size_t n, double target)
{
    size_t lo = 0, hi = n; /* the cut lies in (lo, hi]; c[0, lo) is inside */
    double acc = 0;        /* weight of c[0, lo) */
    while (hi - lo > 32) {
        size_t s = cand_partition(c, lo, hi);
        double before = 0;
        for (size_t i = lo; i < s; i++)
            before += c[i].w;
        if (acc + before >= target) {
            hi = s;
        } else if (acc + before + c[s].w >= target) {
            return s + 1;
        } else {
            acc += before + c[s].w;
            lo = s + 1;
        }
    }
    qsort(c + lo, hi - lo, sizeof *c, cand_cmp);
    for (size_t i = lo; i < hi; i++) {
        acc += c[i].w;
        if (acc >= target)
            return i + 1;
    }
    return hi; /* rounding: the whole of what is left */
}

/* Softmax of c[0, n) at temperature t, and one draw from it. */
static int draw(sampler *s, cand *c, size_t n, float lmax, float t)
{
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double w = exp(((double)c[i].logit - lmax) / t);
        c[i].logit = (float)w;
        total += w;
    }
    double u = rng_uniform(s->rng) * total;
    for (size_t i = 0; i < n; i++) {
        u -= c[i].logit;
        if (u < 0)
            return c[i].id;
    }
    return c[n - 1].id; /* rounding left u a hair above zero */
}

/* Steps 1 to 4: applies penalties and leaves the tokens that may be drawn
 * in s->cand[0, n), returning n; returns 0 when decoding is greedy, *best
 * being the argmax either way. */
static size_t filter(sampler *s, float *logits, int *best)
{
    sampler_apply_penalties(s, logits);
    *best = logits_argmax(logits, s->n_vocab);
    if (s->p.temperature <= 0 || s->p.top_k == 1 || !isfinite(logits[*best]))
        return 0; /* greedy; or +inf, or nothing finite */

    cand *c = s->cand;
    size_t n = 0;
    for (int i = 0; i < s->n_vocab; i++)
        if (isfinite(logits[i]))
            c[n++] = (cand){.logit = logits[i], .id = i};
    const float lmax = logits[*best];

    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        cand_select(c, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
    }

    /* top-p normalises over what top-k kept; min-p only needs lmax. Both
     * keep a head of the ranking, so filtering by min-p before searching
     * the top-p head (with top-k's normaliser) gives llama.cpp's
     * top-p-then-min-p result with less to search. */
    double z = 0;
    if (s->p.top_p < 1.0f)
        for (size_t i = 0; i < n; i++) {
            c[i].w = (float)exp((double)c[i].logit - lmax);
            z += c[i].w;
        }
    if (s->p.min_p > 0.0f) {
        const float floor_logit = lmax + logf(s->p.min_p);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].logit >= floor_logit)
                c[kept++] = c[i];
        n = kept;
    }
    if (s->p.top_p < 1.0f)
        n = top_p_cut(c, n, z * s->p.top_p);
    return n;
}

int sampler_sample(sampler *s, float *logits)
{
    int best;
    size_t n = filter(s, logits, &best);
    if (!n)
        return best;
    return draw(s, s->cand, n, logits[best], s->p.temperature);
}

int sampler_candidates(sampler *s, float *logits, int *ids)
{
    int best;
    size_t n = filter(s, logits, &best);
    if (!n) {
        ids[0] = best;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = s->cand[i].id;
    return (int)n;
}

/* --- stop strings ------------------------------------------------------------ */

struct stop_matcher {
    char **stops;
    size_t *lens;
    int n;
    size_t max_len;
    char *pend;          /* held-back text */
    size_t pend_len, pend_cap;
    char *out;           /* what the last call emitted */
    size_t out_cap;
    int matched;         /* index into stops, or -1 */
};

int stop_matcher_create(const char *const *stops, int n, stop_matcher **out, sw_err *err)
{
    *out = NULL;
    stop_matcher *m = calloc(1, sizeof *m);
    if (!m)
        return sw_errf(err, SW_ENOMEM, "stop strings: out of memory");
    m->matched = -1;
    if (n > 0) {
        m->stops = calloc((size_t)n, sizeof *m->stops);
        m->lens = calloc((size_t)n, sizeof *m->lens);
        if (!m->stops || !m->lens)
            goto oom;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(stops[i]);
        if (!len)
            continue;
        if (!(m->stops[m->n] = strdup(stops[i])))
            goto oom;
        m->lens[m->n++] = len;
        if (len > m->max_len)
            m->max_len = len;
    }
    *out = m;
    return 0;
oom:
    stop_matcher_free(m);
    return sw_errf(err, SW_ENOMEM, "stop strings: out of memory");
}

void stop_matcher_free(stop_matcher *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++)
        free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    free(m->pend);
    free(m->out);
    free(m);
}

const char *stop_matcher_matched(const stop_matcher *m)
{
    return m->matched >= 0 ? m->stops[m->matched] : NULL;
}

size_t stop_matcher_pending(const stop_matcher *m)
{
    return m->pend_len;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Moves pend[0, n) to the output buffer. */
static int emit_head(stop_matcher *m, size_t n, const char **emit, size_t *emit_len)
{
    if (grow(&m->out, &m->out_cap, n + 1) < 0)
        return -1;
    memcpy(m->out, m->pend, n);
    m->out[n] = 0;
    memmove(m->pend, m->pend + n, m->pend_len - n);
    m->pend_len -= n;
    *emit = m->out;
    *emit_len = n;
    return 0;
}

/* The stop string completed first in pend, or -1: least end, then least
 * start. Its start goes to *at. */
static int first_match(const stop_matcher *m, size_t *at)
{
    int best = -1;
    size_t best_end = 0;
    for (int i = 0; i < m->n; i++) {
        const char *hit = memmem(m->pend, m->pend_len, m->stops[i], m->lens[i]);
        if (!hit)
            continue;
        size_t start = (size_t)(hit - m->pend), end = start + m->lens[i];
        if (best < 0 || end < best_end || (end == best_end && start < *at)) {
            best = i;
            best_end = end;
            *at = start;
        }
    }
    return best;
}

/* Where the longest suffix of pend that is a proper prefix of a stop
 * string begins (pend_len if none). */
static size_t held_suffix(const stop_matcher *m)
{
    size_t len = m->pend_len;
    size_t from = m->max_len > len ? 0 : len - m->max_len + 1;
    for (size_t j = from; j < len; j++)
        for (int i = 0; i < m->n; i++)
            if (m->lens[i] > len - j && !memcmp(m->pend + j, m->stops[i], len - j))
                return j;
    return len;
}

/* Moves n back over an incomplete UTF-8 sequence at the end of s[0, n). */
static size_t utf8_boundary(const char *s, size_t n)
{
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: keep looking for the lead */
        size_t need = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 1;
        return need > back ? n - back : n;
    }
    return n; /* not UTF-8 we can judge: let it through */
}

int stop_matcher_feed(stop_matcher *m, const char *text, size_t len, const char **emit,
                      size_t *emit_len, sw_err *err)
{
    *emit = "";
    *emit_len = 0;
    if (m->matched >= 0)
        return 1;
    if (grow(&m->pend, &m->pend_cap, m->pend_len + len) < 0)
        return sw_errf(err, SW_ENOMEM, "stop strings: out of memory");
    memcpy(m->pend + m->pend_len, text, len);
    m->pend_len += len;

    size_t at = 0;
    int hit = first_match(m, &at);
    if (hit >= 0) {
        m->matched = hit;
        if (emit_head(m, at, emit, emit_len) < 0)
            return sw_errf(err, SW_ENOMEM, "stop strings: out of memory");
        m->pend_len = 0;
        return 1;
    }
    size_t safe = utf8_boundary(m->pend, held_suffix(m));
    if (emit_head(m, safe, emit, emit_len) < 0)
        return sw_errf(err, SW_ENOMEM, "stop strings: out of memory");
    return 0;
}

void stop_matcher_flush(stop_matcher *m, const char **emit, size_t *emit_len)
{
    *emit = "";
    *emit_len = 0;
    if (m->pend_len && emit_head(m, m->pend_len, emit, emit_len) < 0) {
        /* Could not allocate the copy: hand out the held bytes directly. */
        *emit = m->pend;
        *emit_len = m->pend_len;
        m->pend_len = 0;
    }
}
