/*
 * test_batch.c — several sequences in one forward call (model.h,
 * model_forward_multi): every sequence's logits equal, bit for bit, those of
 * model_forward on that sequence alone, whatever runs beside it.
 *
 * The schedule mixes what a server step holds: a long prefill cut across
 * internal steps (n_batch 64) beside short prompt chunks and single decode
 * tokens, sequences joining late and leaving early, logits for the last
 * token, for every token, or none. The longest sequence passes 256
 * positions, so attention's segments (and, with four threads, their split
 * into tasks of their own) are exercised. Dense and MoE models; a gpt-oss
 * one (sinks, sliding window); tinymoe through a streaming store with the
 * smallest cache, where the route hook's view of a shared step and the
 * store's requests (the union of the sequences' experts) are checked too.
 */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "store/store.h"

enum { NSEQ = 4, N_CTX = 320, MAX_STEPS = 400 };
static const int seq_len[NSEQ] = {300, 37, 20, 12};
static const int seq_join[NSEQ] = {0, 0, 1, 2}; /* the step a sequence starts at */

/* The model options and KV cache type every rig and cache of a test uses
 * (a parity mode's test sets them before it runs). */
static model_opts g_mopts;
static quant_type g_kv_type = QT_F32;

typedef struct rig {
    store *st;
    model *m;
    model_state *s;
    sw_pool *pool;
    int V;
} rig;

static void rig_close(rig *r)
{
    sw_pool_destroy(r->pool);
    model_state_free(r->s);
    model_free(r->m);
    store_close(r->st);
    memset(r, 0, sizeof *r);
}

static int rig_open(rig *r, const char *path, const store_opts *so, int n_batch, int threads,
                    sw_err *err)
{
    memset(r, 0, sizeof *r);
    model_state_opts mo = {.n_batch = n_batch};
    int rc;
    if ((rc = store_open_opts(path, so, &r->st, err)) || (rc = model_load(r->st, &g_mopts, &r->m, err)) ||
        (rc = model_state_new(r->m, &mo, &r->s, err)) ||
        (rc = sw_pool_create(threads, &r->pool, err))) {
        rig_close(r);
        return rc;
    }
    model_info info;
    model_get_info(r->m, &info);
    r->V = info.n_vocab;
    return 0;
}

static int32_t tok_of(int seq, int i, int V)
{
    return (int32_t)(i == 0 ? 1 : 3 + (seq * 131 + i * 37 + i * i) % (V - 3));
}

/* Tokens sequence seq contributes at step k (from position done), and the
 * logits it asks for: 0 none, 1 the last token's, 2 every token's. */
static int chunk_of(int seq, int k, int done, int *kind)
{
    int left = seq_len[seq] - done;
    if (k < seq_join[seq] || left <= 0)
        return 0;
    *kind = (seq + k) % 3;
    int n;
    if (k == seq_join[seq])
        n = seq == 0 ? 280 : 5 + 2 * seq; /* its prompt, or the first chunk of it */
    else
        n = (seq + k) % 5 == 0 ? 3 + seq : 1;
    return n < left ? n : left;
}

/* Each sequence alone, in one call: [seq_len][V] logits. */
static int reference(const char *path, float *ref[NSEQ], sw_err *err)
{
    rig r;
    int rc = rig_open(&r, path, NULL, 512, 2, err);
    for (int i = 0; i < NSEQ && !rc; i++) {
        kv_cache *kv = NULL;
        kv_cache_opts ko = {.n_ctx = N_CTX, .type = g_kv_type};
        int32_t toks[N_CTX];
        for (int t = 0; t < seq_len[i]; t++)
            toks[t] = tok_of(i, t, r.V);
        ref[i] = malloc(sizeof(float) * (size_t)seq_len[i] * (size_t)r.V);
        if (!(rc = kv_cache_new(r.m, &ko, &kv, err)))
            rc = model_forward(r.m, r.s, kv, r.pool, toks, seq_len[i], ref[i], MODEL_LOGITS_ALL,
                               err);
        kv_cache_free(kv);
    }
    rig_close(&r);
    return rc;
}

/* What the route hook saw. */
typedef struct route_seen {
    int calls, multi_calls, bad;
    long long union_experts; /* distinct experts per call, summed */
    long long per_seq;       /* distinct experts per sequence per call, summed */
} route_seen;

static void see_route(void *ctx, const model_route *r)
{
    route_seen *rs = ctx;
    rs->calls++;
    rs->multi_calls += r->n_seq > 1;
    char all[1024] = {0}, one[NSEQ][1024];
    memset(one, 0, sizeof one);
    int prev = -1;
    for (int t = 0; t < r->n_tokens; t++) {
        int q = r->seq[t];
        if (q < 0 || q >= NSEQ || q < prev || r->token_pos[t] < 0) {
            rs->bad++;
            return;
        }
        if (r->n_seq == 1 && r->token_pos[t] != r->pos + t)
            rs->bad++;
        prev = q;
        for (int k = 0; k < r->n_used; k++) {
            int e = r->experts[t * r->n_used + k];
            rs->union_experts += !all[e]++;
            rs->per_seq += !one[q][e]++;
        }
    }
    if ((r->n_seq > 1) != (r->pos < 0))
        rs->bad++;
}

/* The schedule through model_forward_multi with state n_batch 64 and a pool
 * of `threads`; every logit row compared with ref. */
static void check_multi(const char *path, const store_opts *so, int threads, float *ref[NSEQ],
                        route_seen *rs)
{
    sw_err err = {0};
    rig r;
    CHECKF(!rig_open(&r, path, so, 64, threads, &err), "%s: %s", path, err.msg);
    if (rs)
        model_set_route_hook(r.m, see_route, rs);
    kv_cache *kv[NSEQ] = {0};
    int32_t *toks[NSEQ];
    float *lg[NSEQ];
    int done[NSEQ] = {0}, steps = 0, mixed = 0, bad = 0;
    for (int i = 0; i < NSEQ; i++) {
        kv_cache_opts ko = {.n_ctx = N_CTX, .type = g_kv_type};
        CHECKF(!kv_cache_new(r.m, &ko, &kv[i], &err), "%s", err.msg);
        toks[i] = malloc(sizeof(int32_t) * N_CTX);
        lg[i] = malloc(sizeof(float) * (size_t)N_CTX * (size_t)r.V);
        for (int t = 0; t < seq_len[i]; t++)
            toks[i][t] = tok_of(i, t, r.V);
    }
    for (int k = 0; k < MAX_STEPS; k++) {
        model_seq q[NSEQ];
        int who[NSEQ], kinds[NSEQ], n = 0, n_prefill = 0, n_decode = 0;
        for (int i = 0; i < NSEQ; i++) {
            int kind = 0, c = chunk_of(i, k, done[i], &kind);
            if (!c)
                continue;
            q[n] = (model_seq){kv[i], toks[i] + done[i], c, kind ? lg[i] : NULL,
                               kind == 2 ? MODEL_LOGITS_ALL : MODEL_LOGITS_LAST};
            kinds[n] = kind;
            who[n++] = i;
            n_prefill += c > 1;
            n_decode += c == 1;
        }
        if (!n)
            break;
        steps++;
        mixed += n_prefill && n_decode;
        int rc = model_forward_multi(r.m, r.s, r.pool, q, n, &err);
        CHECKF(!rc, "%s step %d: %s", path, k, err.msg);
        for (int j = 0; j < n; j++) {
            int i = who[j], c = q[j].n;
            CHECK_EQ(kv_cache_pos(kv[i]), done[i] + c);
            if (kinds[j] == 2)
                bad += memcmp(lg[i], ref[i] + (size_t)done[i] * r.V,
                              sizeof(float) * (size_t)c * r.V) != 0;
            else if (kinds[j] == 1)
                bad += memcmp(lg[i], ref[i] + (size_t)(done[i] + c - 1) * r.V,
                              sizeof(float) * (size_t)r.V) != 0;
            CHECKF(!bad, "%s: step %d, sequence %d (%d tokens at %d) differs from alone", path,
                   k, i, c, done[i]);
            done[i] += c;
        }
    }
    for (int i = 0; i < NSEQ; i++) {
        CHECK_EQ(done[i], seq_len[i]);
        kv_cache_free(kv[i]);
        free(toks[i]);
        free(lg[i]);
    }
    CHECK(steps >= 15 && mixed >= 5); /* the schedule did what it says */
    if (so && so->mode == STORE_STREAM && rs) {
        store_stats st;
        store_stats_get(r.st, &st);
        /* each layer of each internal step requested the union once */
        CHECK_EQ((long long)st.requests, rs->union_experts);
        CHECK(st.hits + st.misses == st.requests);
        CHECK(st.evictions > 0);
    }
    rig_close(&r);
}

static void check_model(const char *rel, int threads)
{
    const char *path = test_fixture(rel);
    float *ref[NSEQ] = {0};
    sw_err err = {0};
    CHECKF(!reference(path, ref, &err), "%s: %s", path, err.msg);
    check_multi(path, NULL, threads, ref, NULL);
    for (int i = 0; i < NSEQ; i++)
        free(ref[i]);
}

TEST(batch_dense_llama_f32)
{
    check_model("models/llama/llama-f32.gguf", 2);
}

/* llama.cpp's flash-attention parity mode (model_attn_fa.c) computes each
 * sequence's attention apart: batched, it must still equal each alone. */
TEST(batch_flash_attention_parity_mode)
{
    g_mopts.compat = MODEL_COMPAT_LLAMACPP | MODEL_COMPAT_FLASH_ATTN;
    g_kv_type = QT_F16;
    check_model("models/qwen3moe/qwen3moe-q8_0.gguf", 2);
}

TEST(batch_dense_qwen2_q8_0_four_threads)
{
    check_model("models/qwen2/qwen2-q8_0.gguf", 4);
}

TEST(batch_moe_qwen3moe_q8_0)
{
    check_model("models/qwen3moe/qwen3moe-q8_0.gguf", 2);
}

TEST(batch_moe_shared_expert_qwen2moe_f32)
{
    check_model("models/qwen2moe/qwen2moe-f32.gguf", 4);
}

TEST(batch_gptoss_sinks_sliding_window)
{
    check_model("models/gptoss/gptoss-f32.gguf", 4);
}

TEST(batch_tinymoe_streamed_shares_expert_reads)
{
    const char *path = test_fixture("tinymoe/tinymoe-q8_0.gguf");
    float *ref[NSEQ] = {0};
    sw_err err = {0};
    CHECKF(!reference(path, ref, &err), "%s", err.msg);
    route_seen *rs = calloc(1, sizeof *rs);
    store_opts so = {.mode = STORE_STREAM, .cache_bytes = 1}; /* n_expert_used slots */
    check_multi(path, &so, 2, ref, rs);
    CHECK_EQ(rs->bad, 0);
    CHECK(rs->multi_calls > 0 && rs->calls > rs->multi_calls);
    /* sequences that chose the same expert in a layer shared its read */
    CHECKF(rs->union_experts < rs->per_seq, "union %lld, per sequence %lld", rs->union_experts,
           rs->per_seq);
    free(rs);
    /* and mapped, with four threads */
    check_multi(path, NULL, 4, ref, NULL);
    for (int i = 0; i < NSEQ; i++)
        free(ref[i]);
}

TEST(batch_refuses_bad_sequences_before_running)
{
    sw_err err = {0};
    rig r;
    CHECKF(!rig_open(&r, test_fixture("models/llama/llama-f32.gguf"), NULL, 0, 1, &err), "%s",
           err.msg);
    kv_cache *a = NULL, *b = NULL;
    kv_cache_opts ko = {.n_ctx = 8};
    CHECK(!kv_cache_new(r.m, &ko, &a, &err) && !kv_cache_new(r.m, &ko, &b, &err));
    int32_t good[3] = {1, 5, 6}, bad[2] = {1, 9999};
    model_seq q[2] = {{a, good, 3, NULL, 0}, {b, bad, 2, NULL, 0}};
    CHECK_EQ(model_forward_multi(r.m, r.s, r.pool, q, 2, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "sequence 1");
    CHECK_HAS(err.msg, "vocabulary");
    CHECK_EQ(kv_cache_pos(a), 0); /* nothing ran */
    q[1] = (model_seq){a, good, 1, NULL, 0};
    CHECK_EQ(model_forward_multi(r.m, r.s, r.pool, q, 2, &err), SW_EINVAL);
    CHECK_HAS(err.msg, "share a KV cache");
    q[1] = (model_seq){b, good, 3, NULL, 0};
    CHECK_EQ(model_forward_multi(r.m, r.s, r.pool, q, 2, &err), 0);
    q[1].n = 6; /* 3 + 6 > 8 */
    CHECK_EQ(model_seq_check(r.m, &q[1], &err), SW_EINVAL);
    CHECK_HAS(err.msg, "exceed the context");
    CHECK_EQ(model_forward_multi(r.m, r.s, r.pool, q, 0, &err), SW_EINVAL);
    kv_cache_free(a);
    kv_cache_free(b);
    rig_close(&r);
}
