/* Tests of the sampler (src/engine/sampler.h): exact penalty arithmetic,
 * greedy and seeded decoding, and the filters' empirical distributions; and
 * of the stop-string matcher on text cut at awkward places. */
#include "test.h"

#include "engine/sampler.h"

#include <stdint.h>
#include <stdlib.h>

static sampler_params plain_params(void)
{
    sampler_params p = sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

/* Deterministic pseudo-random logits in [-scale, scale). */
static void fill_logits(float *l, int n, uint32_t seed, float scale)
{
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        l[i] = ((float)(x >> 8) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
    }
}

/* Draws n times from logits (copied fresh each time); counts[id]++. */
static void histogram(sampler *s, const float *logits, int n_vocab, int n, int *counts)
{
    float *l = malloc((size_t)n_vocab * sizeof *l);
    for (int d = 0; d < n; d++) {
        memcpy(l, logits, (size_t)n_vocab * sizeof *l);
        int id = sampler_sample(s, l);
        if (id >= 0 && id < n_vocab)
            counts[id]++;
    }
    free(l);
}

TEST(sampler_greedy_is_argmax)
{
    enum { N = 1000 };
    float logits[N], copy[N];
    sampler_params p = plain_params();
    p.temperature = 0.0f;
    sampler *s;
    CHECK_EQ(sampler_create(&p, N, &s, NULL), 0);
    for (uint32_t round = 0; round < 20; round++) {
        fill_logits(logits, N, round, 10.0f);
        int want = 0;
        for (int i = 1; i < N; i++)
            if (logits[i] > logits[want])
                want = i;
        memcpy(copy, logits, sizeof copy);
        CHECK_EQ(sampler_sample(s, copy), want);
    }
    /* ties go to the lowest id; NaN never wins */
    for (int i = 0; i < N; i++)
        logits[i] = 0.0f;
    logits[7] = logits[500] = 3.0f;
    logits[3] = NAN;
    CHECK_EQ(sampler_sample(s, logits), 7);
    sampler_free(s);
}

TEST(sampler_temperature_zero_and_top_k_one_are_greedy)
{
    enum { N = 300 };
    float logits[N], copy[N];
    fill_logits(logits, N, 99, 2.0f);
    int want = 0;
    for (int i = 1; i < N; i++)
        if (logits[i] > logits[want])
            want = i;
    sampler_params p = plain_params();
    p.temperature = 0.0f;
    p.top_k = 40;
    sampler *greedy, *topk1;
    CHECK_EQ(sampler_create(&p, N, &greedy, NULL), 0);
    p.temperature = 1.5f;
    p.top_k = 1;
    CHECK_EQ(sampler_create(&p, N, &topk1, NULL), 0);
    for (int d = 0; d < 200; d++) {
        memcpy(copy, logits, sizeof copy);
        CHECK_EQ(sampler_sample(greedy, copy), want);
        memcpy(copy, logits, sizeof copy);
        CHECK_EQ(sampler_sample(topk1, copy), want);
    }
    sampler_free(greedy);
    sampler_free(topk1);
}

TEST(sampler_same_seed_same_tokens)
{
    enum { N = 2000, STEPS = 300 };
    static float logits[N], copy[N];
    sampler_params p = sampler_default_params();
    p.seed = 42;
    p.repeat_penalty = 1.1f;
    sampler *a, *b, *c;
    CHECK_EQ(sampler_create(&p, N, &a, NULL), 0);
    CHECK_EQ(sampler_create(&p, N, &b, NULL), 0);
    p.seed = 43;
    CHECK_EQ(sampler_create(&p, N, &c, NULL), 0);
    CHECK_EQ(sampler_seed(a), 42);
    int differs = 0;
    for (int t = 0; t < STEPS; t++) {
        fill_logits(logits, N, (uint32_t)t, 3.0f);
        memcpy(copy, logits, sizeof copy);
        int ia = sampler_sample(a, copy);
        memcpy(copy, logits, sizeof copy);
        int ib = sampler_sample(b, copy);
        memcpy(copy, logits, sizeof copy);
        int ic = sampler_sample(c, copy);
        CHECKF(ia == ib, "step %d: %d != %d with the same seed", t, ia, ib);
        differs += ia != ic;
        sampler_accept(a, ia);
        sampler_accept(b, ib);
        sampler_accept(c, ic);
    }
    CHECKF(differs > 0, "another seed gave the very same %d tokens", STEPS);
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

TEST(sampler_random_seed_is_reported)
{
    sampler_params p = plain_params();
    p.seed = SAMPLER_SEED_RANDOM;
    sampler *s;
    CHECK_EQ(sampler_create(&p, 10, &s, NULL), 0);
    CHECK(sampler_seed(s) != SAMPLER_SEED_RANDOM);
    sampler_free(s);
}

/* probabilities 0.5 0.3 0.1 0.05 0.05 */
static void five_logits(float *l)
{
    const double pr[5] = {0.5, 0.3, 0.1, 0.05, 0.05};
    for (int i = 0; i < 5; i++)
        l[i] = (float)log(pr[i]);
}

TEST(sampler_temperature_scales_distribution)
{
    float logits[2] = {0.0f, (float)log(4.0)};
    sampler_params p = plain_params();
    p.temperature = 2.0f; /* p ∝ 1 : 2 */
    sampler *s;
    CHECK_EQ(sampler_create(&p, 2, &s, NULL), 0);
    int counts[2] = {0};
    histogram(s, logits, 2, 30000, counts);
    double f1 = counts[1] / 30000.0;
    CHECKF(fabs(f1 - 2.0 / 3.0) < 0.02, "p(1) = %.3f, want 0.667", f1);
    sampler_free(s);
}

TEST(sampler_top_k_keeps_k_best)
{
    float logits[5];
    five_logits(logits);
    sampler_params p = plain_params();
    p.top_k = 2;
    sampler *s;
    CHECK_EQ(sampler_create(&p, 5, &s, NULL), 0);
    int counts[5] = {0};
    histogram(s, logits, 5, 20000, counts);
    CHECK_EQ(counts[2] + counts[3] + counts[4], 0);
    double f0 = counts[0] / 20000.0;
    CHECKF(fabs(f0 - 0.625) < 0.02, "p(0) = %.3f, want 0.625", f0);
    sampler_free(s);
}

TEST(sampler_top_p_keeps_nucleus)
{
    float logits[5];
    five_logits(logits);
    sampler_params p = plain_params();
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8: tokens 0 and 1 */
    sampler *s;
    CHECK_EQ(sampler_create(&p, 5, &s, NULL), 0);
    int counts[5] = {0};
    histogram(s, logits, 5, 20000, counts);
    CHECKF(counts[2] + counts[3] + counts[4] == 0, "outside the nucleus: %d %d %d", counts[2],
           counts[3], counts[4]);
    double f0 = counts[0] / 20000.0;
    CHECKF(fabs(f0 - 0.625) < 0.02, "p(0) = %.3f, want 0.625", f0);
    sampler_free(s);

    p.top_p = 0.85f; /* needs token 2 as well */
    CHECK_EQ(sampler_create(&p, 5, &s, NULL), 0);
    memset(counts, 0, sizeof counts);
    histogram(s, logits, 5, 20000, counts);
    CHECK_EQ(counts[3] + counts[4], 0);
    CHECK(counts[2] > 20000 * 0.1 / 0.9 * 0.8);
    sampler_free(s);
}

TEST(sampler_min_p_drops_unlikely)
{
    float logits[5];
    five_logits(logits);
    sampler_params p = plain_params();
    p.min_p = 0.15f; /* floor 0.075: keeps 0.5, 0.3, 0.1 */
    sampler *s;
    CHECK_EQ(sampler_create(&p, 5, &s, NULL), 0);
    int counts[5] = {0};
    histogram(s, logits, 5, 30000, counts);
    CHECK_EQ(counts[3] + counts[4], 0);
    double f2 = counts[2] / 30000.0;
    CHECKF(fabs(f2 - 0.1 / 0.9) < 0.015, "p(2) = %.3f, want 0.111", f2);
    sampler_free(s);
}

/* Reference: the set top-k, top-p, min-p keep, by sorting everything. */
static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

TEST(sampler_filters_on_large_vocab_match_full_sort)
{
    enum { N = 20000 };
    static float logits[N], sorted[N], copy[N];
    fill_logits(logits, N, 7, 1.0f); /* flat: the nucleus spans many chunks */
    const int top_k = 12000;
    const float top_p = 0.5f, min_p = 0.6f;
    memcpy(sorted, logits, sizeof sorted);
    qsort(sorted, N, sizeof *sorted, cmp_desc);
    double z = 0, cum = 0;
    for (int i = 0; i < top_k; i++)
        z += exp((double)sorted[i] - sorted[0]);
    int keep = 0;
    while (keep < top_k) {
        cum += exp((double)sorted[keep] - sorted[0]) / z;
        keep++;
        if (cum >= top_p)
            break;
    }
    float floor_p = sorted[keep - 1], floor_m = sorted[0] + logf(min_p);
    float floor_all = floor_p > floor_m ? floor_p : floor_m;
    CHECKF(floor_p > floor_m, "test setup: top-p should bind (%g vs %g)", floor_p, floor_m);

    sampler_params p = plain_params();
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    sampler *s;
    CHECK_EQ(sampler_create(&p, N, &s, NULL), 0);
    int distinct = 0;
    static unsigned char hit[N];
    for (int d = 0; d < 3000; d++) {
        memcpy(copy, logits, sizeof copy);
        int id = sampler_sample(s, copy);
        CHECKF(logits[id] >= floor_all, "draw %d: token %d (logit %g) below the cut %g", d, id,
               logits[id], floor_all);
        distinct += !hit[id];
        hit[id] = 1;
    }
    CHECKF(distinct > keep / 3, "only %d distinct tokens of %d allowed", distinct, keep);
    sampler_free(s);

    /* min-p binding instead */
    p.top_p = 1.0f;
    p.min_p = 0.9f;
    CHECK_EQ(sampler_create(&p, N, &s, NULL), 0);
    for (int d = 0; d < 2000; d++) {
        memcpy(copy, logits, sizeof copy);
        int id = sampler_sample(s, copy);
        CHECK(logits[id] >= sorted[0] + logf(0.9f));
    }
    sampler_free(s);
}

/* Reference for sampler_candidates: rank everything by (logit desc, id
 * asc), then cut as llama.cpp does, with the same float weights. */
typedef struct ranked {
    float l;
    int id;
} ranked;

static int cmp_ranked(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return a->id - b->id;
}

static int reference_set(const float *logits, int n, int top_k, float top_p, float min_p,
                         unsigned char *in)
{
    ranked *r = malloc((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++)
        r[i] = (ranked){logits[i], i};
    qsort(r, (size_t)n, sizeof *r, cmp_ranked);
    int m = top_k > 0 && top_k < n ? top_k : n;
    const float lmax = r[0].l;
    if (top_p < 1.0f) {
        double z = 0, acc = 0;
        for (int i = 0; i < m; i++)
            z += (float)exp((double)r[i].l - lmax);
        for (int i = 0; i < m; i++) {
            acc += (float)exp((double)r[i].l - lmax);
            if (acc >= z * top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (min_p > 0.0f) {
        const float floor_logit = lmax + logf(min_p);
        int k = 0;
        while (k < m && r[k].l >= floor_logit)
            k++;
        m = k;
    }
    memset(in, 0, (size_t)n);
    for (int i = 0; i < m; i++)
        in[r[i].id] = 1;
    free(r);
    return m;
}

TEST(sampler_candidates_match_full_sort)
{
    enum { N = 3000 };
    static float logits[N], copy[N];
    static int ids[N];
    static unsigned char want[N], got[N];
    uint32_t x = 12345;
    for (int round = 0; round < 400; round++) {
        x = x * 1664525u + 1013904223u;
        float scale = 0.5f + (float)(x >> 20) / 256.0f; /* flat to peaked */
        fill_logits(logits, N, (uint32_t)round + 1000, scale);
        if (round % 3 == 0) /* some exact ties */
            for (int i = 0; i < N; i += 7)
                logits[i] = logits[(i + 1) % N];
        sampler_params p = plain_params();
        p.top_k = (int)(x % 5 == 0 ? 0 : 1 + (x >> 4) % N);
        p.top_p = x % 3 == 0 ? 1.0f : 0.05f + (float)((x >> 8) % 95) / 100.0f;
        p.min_p = x % 4 == 0 ? 0.0f : (float)((x >> 12) % 50) / 100.0f;
        sampler *s;
        CHECK_EQ(sampler_create(&p, N, &s, NULL), 0);
        int m = reference_set(logits, N, p.top_k, p.top_p, p.min_p, want);
        memcpy(copy, logits, sizeof copy);
        int n = sampler_candidates(s, copy, ids);
        sampler_free(s);
        memset(got, 0, sizeof got);
        for (int i = 0; i < n; i++)
            got[ids[i]] = 1;
        CHECKF(n == m && !memcmp(got, want, sizeof got),
               "round %d (top_k %d, top_p %g, min_p %g): %d candidates, want %d", round,
               p.top_k, p.top_p, p.min_p, n, m);
    }
}

TEST(sampler_banned_tokens_never_drawn)
{
    float logits[6] = {1, -INFINITY, 1, NAN, 1, -INFINITY};
    sampler_params p = plain_params();
    sampler *s;
    CHECK_EQ(sampler_create(&p, 6, &s, NULL), 0);
    int counts[6] = {0};
    histogram(s, logits, 6, 3000, counts);
    CHECK_EQ(counts[1] + counts[3] + counts[5], 0);
    CHECK(counts[0] > 800 && counts[2] > 800 && counts[4] > 800);
    sampler_free(s);
}

TEST(sampler_penalties_exact)
{
    const float base[6] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
    float l[6];
    sampler_params p = plain_params();
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = -1;
    sampler *s;
    CHECK_EQ(sampler_create(&p, 6, &s, NULL), 0);
    const int hist[4] = {0, 0, 1, 4};
    for (int i = 0; i < 4; i++)
        sampler_accept(s, hist[i]);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    /* positive logits are divided, negative multiplied, then
     * count * frequency + presence subtracted */
    CHECK(l[0] == 2.0f / 1.5f - 2 * 0.25f - 0.5f);
    CHECK(l[1] == -1.0f * 1.5f - 0.25f - 0.5f);
    CHECK(l[4] == -2.0f * 1.5f - 0.25f - 0.5f);
    CHECK(l[2] == 0.5f && l[3] == 3.0f && l[5] == 1.0f);
    sampler_free(s);

    /* window of 2: only tokens 1 and 4 remain */
    p.penalty_last_n = 2;
    CHECK_EQ(sampler_create(&p, 6, &s, NULL), 0);
    for (int i = 0; i < 4; i++)
        sampler_accept(s, hist[i]);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    CHECK(l[0] == 2.0f);
    CHECK(l[1] == -1.0f * 1.5f - 0.25f - 0.5f);
    CHECK(l[4] == -2.0f * 1.5f - 0.25f - 0.5f);
    /* the window slides on: 3, 3 evict 1 and 4 */
    sampler_accept(s, 3);
    sampler_accept(s, 3);
    memcpy(l, base, sizeof l);
    sampler_apply_penalties(s, l);
    CHECK(l[1] == -1.0f && l[4] == -2.0f);
    CHECK(l[3] == 3.0f / 1.5f - 2 * 0.25f - 0.5f);
    sampler_free(s);

    /* a zero logit counts as non-positive (multiplied: stays 0) */
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = p.presence_penalty = 0.0f;
    CHECK_EQ(sampler_create(&p, 6, &s, NULL), 0);
    sampler_accept(s, 2);
    float z[6] = {0};
    sampler_apply_penalties(s, z);
    CHECK(z[2] == 0.0f);
    sampler_free(s);
}

TEST(sampler_penalty_changes_greedy_choice)
{
    sampler_params p = plain_params();
    p.temperature = 0.0f;
    p.repeat_penalty = 1.2f;
    sampler *s;
    CHECK_EQ(sampler_create(&p, 2, &s, NULL), 0);
    float l[2] = {1.0f, 0.9f};
    CHECK_EQ(sampler_sample(s, l), 0);
    sampler_accept(s, 0);
    l[0] = 1.0f;
    l[1] = 0.9f;
    CHECK_EQ(sampler_sample(s, l), 1); /* 1 / 1.2 < 0.9 */
    CHECK(l[0] == 1.0f / 1.2f);
    sampler_free(s);
}

TEST(sampler_prompt_tokens_and_max_tokens)
{
    sampler_params p = plain_params();
    p.max_tokens = 3;
    p.presence_penalty = 1.0f;
    sampler *s;
    CHECK_EQ(sampler_create(&p, 10, &s, NULL), 0);
    const int prompt[3] = {5, 6, 7};
    sampler_accept_prompt(s, prompt, 3);
    CHECK_EQ(sampler_n_generated(s), 0);
    CHECK(!sampler_done(s));
    float l[10] = {0};
    sampler_apply_penalties(s, l);
    CHECK(l[5] == -1.0f && l[6] == -1.0f && l[4] == 0.0f);
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    CHECK(!sampler_done(s));
    sampler_accept(s, 3);
    CHECK(sampler_done(s));
    sampler_reset(s);
    CHECK(!sampler_done(s));
    memset(l, 0, sizeof l);
    sampler_apply_penalties(s, l);
    CHECK(l[5] == 0.0f);
    sampler_free(s);
}

TEST(sampler_rejects_bad_params)
{
    sampler_params p = plain_params();
    sampler *s;
    sw_err e = {0};
    p.top_p = 1.5f;
    CHECK_EQ(sampler_create(&p, 10, &s, &e), SW_EINVAL);
    CHECK_HAS(e.msg, "top_p");
    CHECK(s == NULL);
    p = plain_params();
    p.repeat_penalty = 0.0f;
    CHECK_EQ(sampler_create(&p, 10, &s, &e), SW_EINVAL);
    CHECK_HAS(e.msg, "repeat_penalty");
    p = plain_params();
    CHECK_EQ(sampler_create(&p, 0, &s, &e), SW_EINVAL);
}

/* --- stop strings ----------------------------------------------------------- */

typedef struct fed {
    char text[512];
    size_t len;
    int hit;
    int chunks_split_utf8; /* emitted chunks that ended inside a character */
} fed;

static int utf8_cut(const char *s, size_t n)
{
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
        i--;
    if (i == 0)
        return n > 0;
    unsigned char c = (unsigned char)s[i - 1];
    size_t need = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    return n - (i - 1) != need;
}

static void feed_all(stop_matcher *m, const char *const *pieces, int n, fed *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < n && !f->hit; i++) {
        const char *out;
        size_t len;
        f->hit = stop_matcher_feed(m, pieces[i], strlen(pieces[i]), &out, &len, NULL);
        if (len && utf8_cut(out, len))
            f->chunks_split_utf8++;
        memcpy(f->text + f->len, out, len);
        f->len += len;
    }
    if (!f->hit) {
        const char *out;
        size_t len;
        stop_matcher_flush(m, &out, &len);
        memcpy(f->text + f->len, out, len);
        f->len += len;
    }
    f->text[f->len] = 0;
}

/* Feeds s one byte at a time. */
static void feed_bytes(stop_matcher *m, const char *s, fed *f)
{
    static char bytes[256][2];
    const char *pieces[256];
    int n = 0;
    for (; s[n] && n < 256; n++) {
        bytes[n][0] = s[n];
        bytes[n][1] = 0;
        pieces[n] = bytes[n];
    }
    feed_all(m, pieces, n, f);
}

TEST(stop_split_across_pieces)
{
    const char *stops[] = {"</s>", "User:"};
    stop_matcher *m;
    CHECK_EQ(stop_matcher_create(stops, 2, &m, NULL), 0);
    const char *out;
    size_t len;
    CHECK_EQ(stop_matcher_feed(m, "Hello <", 7, &out, &len, NULL), 0);
    CHECK_EQ(len, 6); /* "<" held back */
    CHECK_EQ(stop_matcher_pending(m), 1);
    CHECK_EQ(stop_matcher_feed(m, "/", 1, &out, &len, NULL), 0);
    CHECK_EQ(len, 0);
    CHECK_EQ(stop_matcher_feed(m, "s> world", 8, &out, &len, NULL), 1);
    CHECK_EQ(len, 0);
    CHECK_STR(stop_matcher_matched(m), "</s>");
    CHECK_EQ(stop_matcher_feed(m, "more", 4, &out, &len, NULL), 1);
    CHECK_EQ(len, 0);
    stop_matcher_free(m);

    /* the text before a stop string in the same piece is emitted */
    CHECK_EQ(stop_matcher_create(stops, 2, &m, NULL), 0);
    fed f;
    const char *pieces[] = {"Sure. Us", "er: hi"};
    feed_all(m, pieces, 2, &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "Sure. ");
    stop_matcher_free(m);
}

TEST(stop_held_text_released)
{
    const char *stops[] = {"STOP"};
    stop_matcher *m;
    CHECK_EQ(stop_matcher_create(stops, 1, &m, NULL), 0);
    const char *out;
    size_t len;
    CHECK_EQ(stop_matcher_feed(m, "A ST", 4, &out, &len, NULL), 0);
    CHECK_EQ(len, 2);
    CHECK_EQ(stop_matcher_feed(m, "ART", 3, &out, &len, NULL), 0);
    CHECK_EQ(len, 5);
    CHECK(!memcmp(out, "START", 5));
    CHECK_EQ(stop_matcher_feed(m, "STO", 3, &out, &len, NULL), 0);
    CHECK_EQ(len, 0);
    stop_matcher_flush(m, &out, &len); /* generation ended: held text is text */
    CHECK_EQ(len, 3);
    CHECK(!memcmp(out, "STO", 3));
    CHECK(stop_matcher_matched(m) == NULL);
    stop_matcher_free(m);
}

TEST(stop_overlapping_prefixes)
{
    fed f;
    stop_matcher *m;
    /* "ab" and "aab" both end at the same byte: the longer one wins */
    const char *two[] = {"ab", "aab"};
    CHECK_EQ(stop_matcher_create(two, 2, &m, NULL), 0);
    feed_bytes(m, "xaab tail", &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "x");
    CHECK_STR(stop_matcher_matched(m), "aab");
    stop_matcher_free(m);

    /* a failed partial match must not swallow the start of the real one */
    const char *one[] = {"aab"};
    CHECK_EQ(stop_matcher_create(one, 1, &m, NULL), 0);
    feed_bytes(m, "aaab", &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "a");
    stop_matcher_free(m);

    /* the first stop to complete wins, however the text was cut */
    const char *nested[] = {"abcd", "bc"};
    const char *whole[] = {"xabcd"}, *cut[] = {"xa", "b", "cd"};
    CHECK_EQ(stop_matcher_create(nested, 2, &m, NULL), 0);
    feed_all(m, whole, 1, &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "xa");
    CHECK_STR(stop_matcher_matched(m), "bc");
    stop_matcher_free(m);
    CHECK_EQ(stop_matcher_create(nested, 2, &m, NULL), 0);
    feed_all(m, cut, 3, &f);
    CHECK_STR(f.text, "xa");
    CHECK_STR(stop_matcher_matched(m), "bc");
    stop_matcher_free(m);

    /* a near miss releases everything */
    CHECK_EQ(stop_matcher_create(one, 1, &m, NULL), 0);
    feed_bytes(m, "aaxab", &f);
    CHECK(!f.hit);
    CHECK_STR(f.text, "aaxab");
    stop_matcher_free(m);
}

TEST(stop_utf8_safe)
{
    fed f;
    stop_matcher *m;
    /* byte-at-a-time multi-byte text never comes out cut mid-character */
    const char *stops[] = {"wör!"};
    CHECK_EQ(stop_matcher_create(stops, 1, &m, NULL), 0);
    const char *text = "héllo wörld — 日本語 🙂 wö";
    feed_bytes(m, text, &f);
    CHECK(!f.hit);
    CHECK_STR(f.text, text);
    CHECK_EQ(f.chunks_split_utf8, 0);
    stop_matcher_free(m);

    /* a stop string starting with a multi-byte character, split inside it */
    const char *euro[] = {"€x"};
    CHECK_EQ(stop_matcher_create(euro, 1, &m, NULL), 0);
    const char *pieces[] = {"a\xe2", "\x82", "\xac", "y€", "\xe2\x82", "\xacx!"};
    feed_all(m, pieces, 6, &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "a€y€");
    CHECK_EQ(f.chunks_split_utf8, 0);
    stop_matcher_free(m);

    /* no stop strings at all: still never cut a character */
    CHECK_EQ(stop_matcher_create(NULL, 0, &m, NULL), 0);
    feed_bytes(m, "ĉu vi?", &f);
    CHECK_STR(f.text, "ĉu vi?");
    CHECK_EQ(f.chunks_split_utf8, 0);
    stop_matcher_free(m);
}

TEST(stop_empty_strings_ignored)
{
    const char *stops[] = {"", "END"};
    stop_matcher *m;
    CHECK_EQ(stop_matcher_create(stops, 2, &m, NULL), 0);
    fed f;
    feed_bytes(m, "abc END", &f);
    CHECK(f.hit);
    CHECK_STR(f.text, "abc ");
    stop_matcher_free(m);
}
