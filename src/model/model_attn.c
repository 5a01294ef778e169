/*
 * model_attn.c — causal self-attention over the KV cache.
 *
 * Work is cut by KV head and by tiles of ATT_TILE tokens: one task takes a
 * KV head and a tile, i.e. every query head that reads that KV head (GQA)
 * for every token of the tile, so each cached key and value row is read
 * from memory and converted to float once per task, then used by all of the
 * task's queries while it is in L1. Decode is the tile of one token. A
 * token's query heads go through the vector kernels together (model_vec.h
 * takes several queries per call), so that an AVX-512 kernel loads each key
 * and value row once per four of them.
 *
 * Positions are visited in chunks of ATT_CHUNK with an online softmax per
 * query (flash attention's): for each chunk, the query's scores against the
 * visible keys of the chunk (all earlier positions, or the last n_swa on
 * sliding-window layers), the running maximum raised if needed (rescaling
 * the partial sums), the scores exponentiated and added, and the values
 * summed with those weights. Chunks are grouped in segments of ATT_SEG
 * positions: each segment starts from an empty state, and the segments'
 * states are merged into the query's result in ascending order. A head's
 * sink logit (gpt-oss) starts that result, as a position whose value is zero
 * would. Everything is float: dot products and sums accumulate in float
 * vectors (model_vec.h).
 *
 * Segments are what lets decode use more threads than there are KV heads:
 * when (KV heads x tiles) would leave threads idle and the step is short,
 * every (KV head, tile, segment) becomes a task that leaves its segment's
 * state in s->att_part, and the states are merged afterwards in the same
 * order, by the same code, as a task that walks all segments itself does.
 *
 * Several sequences (model_forward_multi): each is a job of its own — its
 * rows of the step's q and att, its cache, its position — and the tasks of
 * all of them form one pool job, so sixteen one-token decodes keep the
 * threads as busy as one long prefill. Whether a sequence splits its
 * segments is decided from the whole step's task count.
 *
 * Exactness: what a query computes depends only on its own position and the
 * fixed grid of chunks and segments (aligned to multiples of their sizes),
 * never on the other queries of its task, the tile, the split, the thread,
 * or the batch, so batched prefill and token-by-token decode give the same
 * bits.
 */
#include "model/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATT_CHUNK 64        /* positions per online-softmax step */
#define ATT_SEG 256         /* positions per segment (a multiple of ATT_CHUNK) */
#define ATT_TILE 16         /* tokens per task */
#define ATT_SPLIT_TOKENS 4  /* steps of at most this many tokens may split segments */

/* One sequence's attention in a layer: its n tokens are the rows q, att of
 * the step's scratch. */
struct attn_job {
    model_state *s;
    const kv_cache *kv;
    const layer_weights *L;
    int layer, n, pos;
    const float *q; /* [n][n_head * head_dim] */
    float *att;     /* [n][n_head * head_dim_v] */
    int n_tiles;
    int n_seg;  /* segments up to the step's last position */
    int seg0;   /* the first segment any token of the step sees */
    bool split; /* one task per segment, states left in part */
    float *part;/* split: [n][n_head][n_seg][2 + head_dim_v] (in s->att_part) */
    int task0;  /* its first task in the layer's pool job */
};

/* A thread's scratch. TG = ATT_TILE * (query heads per KV head). */
struct attn_scratch {
    float *kbuf; /* [ATT_CHUNK][head_dim] keys as float */
    float *vbuf; /* [ATT_CHUNK][head_dim_v] values as float */
    float *sc;   /* [G][ATT_CHUNK] scores, then weights (G: query heads per KV head) */
    float *mx;   /* [TG] a segment's running maximum per query */
    float *sum;  /* [TG] its sum of weights */
    float *acc;  /* [TG][head_dim_v] its weighted sum of values */
    float *rm;   /* [TG] the query's result so far: maximum */
    float *rl;   /* [TG] and sum of weights (the output holds the values) */
};

size_t attn_job_size(void)
{
    return sizeof(struct attn_job);
}

size_t attn_scratch_floats(const model_config *c)
{
    size_t g = (size_t)(c->n_head / c->n_head_kv), tg = (size_t)ATT_TILE * g;
    return (size_t)ATT_CHUNK * ((size_t)c->head_dim + (size_t)c->head_dim_v + g) +
           tg * (4 + (size_t)c->head_dim_v);
}

static struct attn_scratch scratch_of(const model_state *s, int thread)
{
    const model_config *c = &s->m->cfg;
    size_t g = (size_t)(c->n_head / c->n_head_kv), tg = (size_t)ATT_TILE * g;
    struct attn_scratch a;
    a.kbuf = s->att_tmp + (size_t)thread * attn_scratch_floats(c);
    a.vbuf = a.kbuf + (size_t)ATT_CHUNK * c->head_dim;
    a.sc = a.vbuf + (size_t)ATT_CHUNK * c->head_dim_v;
    a.mx = a.sc + ATT_CHUNK * g;
    a.sum = a.mx + tg;
    a.acc = a.sum + tg;
    a.rm = a.acc + tg * (size_t)c->head_dim_v;
    a.rl = a.rm + tg;
    return a;
}

/* First position token p may see. */
static inline int window_lo(const model_config *c, const layer_weights *L, int p)
{
    return L->is_swa && p - c->n_swa + 1 > 0 ? p - c->n_swa + 1 : 0;
}

/* The G query heads of one token that read the same KV head (rows q, hd
 * apart) against the visible keys K and values V of a chunk (float rows, n
 * of them): into their segment states mx[G], sum[G], acc[G][hdv]; sc holds
 * G rows of n scores. Each query gets exactly what it would alone. */
static void attn_chunk(const model_vec *vk, const model_config *c, const float *q, int G,
                       const float *K, const float *V, int n, float *sc, float *mx, float *sum,
                       float *acc)
{
    int hdv = c->head_dim_v;
    vk->dots(q, G, K, n, c->head_dim, c->attn_scale, sc);
    for (int h = 0; h < G; h++) {
        float *sh = sc + (size_t)h * n;
        float cm = vk->max(sh, n);
        if (cm > mx[h]) {
            float f = expf(mx[h] - cm); /* 0 while mx[h] is -inf */
            vk->scale(acc + (size_t)h * hdv, f, hdv);
            sum[h] *= f;
            mx[h] = cm;
        }
        sum[h] += vk->exp_sum(sh, n, mx[h]);
    }
    vk->wsum(acc, sc, G, V, n, hdv);
}

/* Folds a segment's state (m, l, acc) into a query's result (M, L, out).
 * An empty segment (l == 0) changes nothing. */
static void merge_segment(const model_vec *vk, int hdv, float *M, float *L, float *out, float m,
                          float l, const float *acc)
{
    if (l == 0)
        return;
    float nm = m > *M ? m : *M;
    float a = expf(*M - nm), b = expf(m - nm); /* a is 0 while *M is -inf */
    vk->scale(out, a, hdv);
    vk->axpy(out, b, acc, hdv);
    *L = *L * a + l * b;
    *M = nm;
}

/* Query (t, head)'s result before any segment: the sink, if any. */
static void result_init(const struct attn_job *j, int t, int head, float *M, float *L)
{
    const model_config *c = &j->s->m->cfg;
    const float *sinks = j->L->sinks.data;
    memset(j->att + ((size_t)t * c->n_head + head) * c->head_dim_v, 0,
           sizeof(float) * c->head_dim_v);
    *M = sinks ? sinks[head] : -INFINITY;
    *L = sinks ? 1.0f : 0.0f;
}

/* Asks for [p, p + bytes) at once, into L2: a segment's key or value rows,
 * so that each chunk's conversion finds them in cache instead of waiting on
 * DRAM a line at a time (a decode step reads the whole cache, which the
 * weights streamed since the last step have pushed out of every cache). */
static void prefetch_l2(const uint8_t *p, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(p + o, 0, 2);
}

/* Segment seg's state for KV head g and tokens [t0, t1) into a's mx, sum, acc. */
static void segment_run(const struct attn_job *j, const struct attn_scratch *a, int g, int t0,
                        int t1, int seg)
{
    const model_config *c = &j->s->m->cfg;
    const model_vec *vk = model_vec_get();
    const kv_cache *kv = j->kv;
    int G = c->n_head / c->n_head_kv, hd = c->head_dim, hdv = c->head_dim_v;
    int nq = (t1 - t0) * G;
    for (int i = 0; i < nq; i++) {
        a->mx[i] = -INFINITY;
        a->sum[i] = 0;
    }
    memset(a->acc, 0, sizeof(float) * (size_t)nq * hdv);

    int first = window_lo(c, j->L, j->pos + t0), last = j->pos + t1 - 1;
    int s0 = seg * ATT_SEG, s1 = s0 + ATT_SEG;
    int p_lo = s0 > first ? s0 : first, p_hi = s1 <= last ? s1 : last + 1;
    if (p_hi > p_lo) {
        prefetch_l2(kv_row_k(kv, j->layer, g, p_lo), (size_t)(p_hi - p_lo) * kv->row_k);
        prefetch_l2(kv_row_v(kv, j->layer, g, p_lo), (size_t)(p_hi - p_lo) * kv->row_v);
    }
    for (int c0 = s0 > first / ATT_CHUNK * ATT_CHUNK ? s0 : first / ATT_CHUNK * ATT_CHUNK;
         c0 < s1 && c0 <= last; c0 += ATT_CHUNK) {
        int lo = c0 > first ? c0 : first, hi = c0 + ATT_CHUNK <= last ? c0 + ATT_CHUNK : last + 1;
        const float *K = kv_cache_rows_float(kv, kv_row_k(kv, j->layer, g, lo), (hi - lo) * hd,
                                             a->kbuf);
        const float *V = kv_cache_rows_float(kv, kv_row_v(kv, j->layer, g, lo), (hi - lo) * hdv,
                                             a->vbuf);
        for (int t = t0; t < t1; t++) {
            int p = j->pos + t, w = window_lo(c, j->L, p);
            int qa = c0 > w ? c0 : w, qb = c0 + ATT_CHUNK <= p ? c0 + ATT_CHUNK : p + 1;
            if (qa >= qb)
                continue;
            int qi = (t - t0) * G; /* its G queries: qi .. qi + G - 1 */
            const float *q = j->q + ((size_t)t * c->n_head + (size_t)g * G) * hd;
            attn_chunk(vk, c, q, G, K + (size_t)(qa - lo) * hd, V + (size_t)(qa - lo) * hdv,
                       qb - qa, a->sc, &a->mx[qi], &a->sum[qi], a->acc + (size_t)qi * hdv);
        }
    }
}

/* KV head g, tile `tile`, every segment: the finished attention output. */
static void attn_task(const struct attn_job *j, int task, int thread)
{
    const model_config *c = &j->s->m->cfg;
    const model_vec *vk = model_vec_get();
    int H = c->n_head_kv, G = c->n_head / H, hdv = c->head_dim_v;
    int g = task % H, tile = j->n_tiles - 1 - task / H; /* longest tiles first */
    int t0 = tile * ATT_TILE, t1 = t0 + ATT_TILE < j->n ? t0 + ATT_TILE : j->n;
    struct attn_scratch a = scratch_of(j->s, thread);

    for (int t = t0; t < t1; t++)
        for (int h = 0; h < G; h++)
            result_init(j, t, g * G + h, &a.rm[(t - t0) * G + h], &a.rl[(t - t0) * G + h]);
    int seg_first = window_lo(c, j->L, j->pos + t0) / ATT_SEG;
    int seg_last = (j->pos + t1 - 1) / ATT_SEG;
    for (int seg = seg_first; seg <= seg_last; seg++) {
        segment_run(j, &a, g, t0, t1, seg);
        for (int t = t0; t < t1; t++)
            for (int h = 0; h < G; h++) {
                int qi = (t - t0) * G + h;
                float *out = j->att + ((size_t)t * c->n_head + g * G + h) * hdv;
                merge_segment(vk, hdv, &a.rm[qi], &a.rl[qi], out, a.mx[qi], a.sum[qi],
                              a.acc + (size_t)qi * hdv);
            }
    }
    for (int t = t0; t < t1; t++)
        for (int h = 0; h < G; h++)
            vk->scale(j->att + ((size_t)t * c->n_head + g * G + h) * hdv,
                      1.0f / a.rl[(t - t0) * G + h], hdv);
}

/* Where segment seg's state of query (t, head) is kept: [m, l, acc...]. */
static float *part_of(const struct attn_job *j, int t, int head, int seg)
{
    const model_config *c = &j->s->m->cfg;
    size_t q = (size_t)t * c->n_head + head;
    return j->part + (q * j->n_seg + seg) * (2 + (size_t)c->head_dim_v);
}

/* KV head g, one segment, all tokens of the (short) step: states only. */
static void attn_split_task(const struct attn_job *j, int task, int thread)
{
    const model_config *c = &j->s->m->cfg;
    int H = c->n_head_kv, G = c->n_head / H, hdv = c->head_dim_v;
    int g = task % H, seg = j->seg0 + task / H;
    struct attn_scratch a = scratch_of(j->s, thread);
    segment_run(j, &a, g, 0, j->n, seg);
    for (int t = 0; t < j->n; t++)
        for (int h = 0; h < G; h++) {
            int qi = t * G + h;
            float *p = part_of(j, t, g * G + h, seg);
            p[0] = a.mx[qi];
            p[1] = a.sum[qi];
            memcpy(p + 2, a.acc + (size_t)qi * hdv, sizeof(float) * hdv);
        }
}

/* After attn_split_task: each query's segments merged in ascending order. */
static void attn_split_merge(const struct attn_job *j)
{
    const model_config *c = &j->s->m->cfg;
    const model_vec *vk = model_vec_get();
    int hdv = c->head_dim_v;
    for (int t = 0; t < j->n; t++)
        for (int head = 0; head < c->n_head; head++) {
            float M, L, *out = j->att + ((size_t)t * c->n_head + head) * hdv;
            result_init(j, t, head, &M, &L);
            for (int seg = j->seg0; seg < j->n_seg; seg++) {
                const float *p = part_of(j, t, head, seg);
                merge_segment(vk, hdv, &M, &L, out, p[0], p[1], p + 2);
            }
            vk->scale(out, 1.0f / L, hdv);
        }
}

/* Tasks of job j in the layer's pool job. */
static int job_tasks(const struct attn_job *j)
{
    int H = j->s->m->cfg.n_head_kv;
    return j->split ? (j->n_seg - j->seg0) * H : j->n_tiles * H;
}

struct attn_all {
    struct attn_job *jobs;
    int n_jobs;
};

/* Task `task` of the layer: found by bisection over the jobs' first tasks. */
static void attn_any_task(void *arg, int task, int n_tasks, int thread)
{
    const struct attn_all *a = arg;
    int lo = 0, hi = a->n_jobs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (a->jobs[mid].task0 <= task)
            lo = mid;
        else
            hi = mid - 1;
    }
    const struct attn_job *j = &a->jobs[lo];
    (void)n_tasks;
    if (j->split)
        attn_split_task(j, task - j->task0, thread);
    else
        attn_task(j, task - j->task0, thread);
}

/* Room for part_floats floats in s->att_part (grows only). */
static int ensure_room(model_state *s, size_t part_floats, sw_err *err)
{
    if (s->att_part_size < part_floats) {
        float *p = realloc(s->att_part, sizeof(float) * part_floats);
        if (!p)
            return sw_errf(err, SW_ENOMEM, "attention: out of memory");
        s->att_part = p;
        s->att_part_size = part_floats;
    }
    return 0;
}

/* MODEL_COMPAT_FLASH_ATTN applies when no part has a Q8_0 cache. */
static bool flash_parity(const model_state *s, const step_part *parts, int n_parts)
{
    if (!(s->m->compat & MODEL_COMPAT_FLASH_ATTN))
        return false;
    for (int i = 0; i < n_parts; i++)
        if (kv_cache_type(parts[i].kv) == QT_Q8_0)
            return false;
    return true;
}

int attn_layer(model_state *s, sw_pool *pool, int layer, const step_part *parts, int n_parts,
               sw_err *err)
{
    const model_config *c = &s->m->cfg;
    const layer_weights *L = &s->m->w.layers[layer];
    int H = c->n_head_kv, threads = sw_pool_size(pool);
    size_t nq = (size_t)c->n_head * c->head_dim, nk = (size_t)H * c->head_dim;
    size_t nv = (size_t)H * c->head_dim_v, na = (size_t)c->n_head * c->head_dim_v;
    if (flash_parity(s, parts, n_parts)) {
        for (int i = 0; i < n_parts; i++) {
            const step_part *p = &parts[i];
            kv_cache_store(p->kv, layer, p->pos, p->n, s->k + (size_t)p->t0 * nk,
                           s->v + (size_t)p->t0 * nv);
            int rc = attn_fa_layer(s, pool, layer, p, err); /* model_attn_fa.c */
            if (rc)
                return rc;
        }
        return 0;
    }
    struct attn_job *jobs = s->att_jobs;
    int all_tasks = 0;
    for (int i = 0; i < n_parts; i++) {
        const step_part *p = &parts[i];
        kv_cache_store(p->kv, layer, p->pos, p->n, s->k + (size_t)p->t0 * nk,
                       s->v + (size_t)p->t0 * nv);
        jobs[i] = (struct attn_job){s, p->kv, L, layer, p->n, p->pos,
                                    s->q + (size_t)p->t0 * nq, s->att + (size_t)p->t0 * na,
                                    (p->n + ATT_TILE - 1) / ATT_TILE,
                                    (p->pos + p->n - 1) / ATT_SEG + 1,
                                    window_lo(c, L, p->pos) / ATT_SEG, false, NULL, 0};
        all_tasks += jobs[i].n_tiles * H;
    }
    /* Segments become tasks of their own for short sequences with several
     * of them when the whole step would leave threads idle otherwise. */
    size_t part_floats = 0;
    for (int i = 0; i < n_parts; i++) {
        struct attn_job *j = &jobs[i];
        j->split = j->n <= ATT_SPLIT_TOKENS && j->n_seg - j->seg0 > 1 && all_tasks < 2 * threads;
        if (j->split)
            part_floats += (size_t)j->n * c->n_head * j->n_seg * (2 + (size_t)c->head_dim_v);
    }
    int rc = ensure_room(s, part_floats, err);
    if (rc)
        return rc;
    int task = 0;
    part_floats = 0;
    for (int i = 0; i < n_parts; i++) {
        struct attn_job *j = &jobs[i];
        j->task0 = task;
        task += job_tasks(j);
        if (j->split) {
            j->part = s->att_part + part_floats;
            part_floats += (size_t)j->n * c->n_head * j->n_seg * (2 + (size_t)c->head_dim_v);
        }
    }
    struct attn_all a = {jobs, n_parts};
    sw_pool_run(pool, attn_any_task, &a, task);
    for (int i = 0; i < n_parts; i++)
        if (jobs[i].split)
            attn_split_merge(&jobs[i]);
    return 0;
}
