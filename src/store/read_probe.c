/*
 * read_probe.c — random reads of a model's expert slices (read_probe.h).
 */
#include "store/read_probe.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "store/reader.h"

#define PROBE_DEFAULT_DEPTH 64
#define PROBE_MAX_BUFFERS ((size_t)256 << 20) /* read buffers in all, bytes */

typedef struct slice {
    uint64_t off;
    size_t len;
} slice;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int is_expert_tensor(const gguf_tensor *t)
{
    size_t n = strlen(t->name), m = strlen("_exps.weight");
    return !strncmp(t->name, "blk.", 4) && n > m && !strcmp(t->name + n - m, "_exps.weight") &&
           t->n_dims == 3 && t->ne[2] > 0 && t->size % (uint64_t)t->ne[2] == 0;
}

/* Every expert slice of the file, shuffled; *n of them (malloc'd). */
static slice *list_slices(const gguf_ctx *g, uint64_t seed, size_t *n, size_t *max_len)
{
    size_t cnt = 0, k = 0;
    *max_len = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++)
        if (is_expert_tensor(gguf_tensor_at(g, i)))
            cnt += (size_t)gguf_tensor_at(g, i)->ne[2];
    slice *s = malloc((cnt ? cnt : 1) * sizeof *s);
    if (!s)
        return NULL;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!is_expert_tensor(t))
            continue;
        size_t len = (size_t)(t->size / (uint64_t)t->ne[2]);
        for (int64_t e = 0; e < t->ne[2]; e++)
            s[k++] = (slice){gguf_data_offset(g) + t->offset + (uint64_t)e * len, len};
        if (len > *max_len)
            *max_len = len;
    }
    for (size_t i = cnt; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(splitmix64(&seed) % i);
        slice tmp = s[i - 1];
        s[i - 1] = s[j];
        s[j] = tmp;
    }
    *n = cnt;
    return s;
}

typedef struct probe {
    reader *r;
    reader_file f;
    slice *s;
    size_t n, next;
    uint8_t **buf; /* [depth] */
    size_t cap;    /* bytes of each buffer */
    int depth, live;
} probe;

/* Issues the next slice into buffer b; 0 when none is left. */
static int probe_issue(probe *p, int b, sw_err *err)
{
    if (p->next == p->n)
        return 0;
    const slice *s = &p->s[p->next++];
    int rc = reader_submit(p->r, &p->f, s->off, s->len, p->buf[b], p->cap, (uint64_t)b,
                           READER_DEMAND, err);
    if (rc)
        return rc;
    p->live++;
    return 0;
}

static int probe_loop(probe *p, double seconds, double *elapsed, sw_err *err)
{
    reader_result res[PROBE_DEFAULT_DEPTH];
    double t0 = now_s();
    int rc = 0;
    for (int b = 0; b < p->depth && rc == 0; b++)
        rc = probe_issue(p, b, err);
    while (rc == 0 && p->live > 0) {
        int got = reader_poll(p->r, res, PROBE_DEFAULT_DEPTH, 1, err);
        if (got < 0)
            return got;
        bool more = now_s() - t0 < seconds;
        for (int i = 0; i < got && rc == 0; i++) {
            p->live--;
            if (res[i].rc)
                rc = sw_errf(err, res[i].rc, "%s", res[i].msg);
            else if (more)
                rc = probe_issue(p, (int)res[i].tag, err);
        }
    }
    *elapsed = now_s() - t0;
    return rc;
}

static void probe_free(probe *p)
{
    if (p->r)
        reader_close(p->r); /* waits for reads into the buffers */
    for (int b = 0; p->buf && b < p->depth; b++)
        free(p->buf[b]);
    free(p->buf);
    free(p->s);
    reader_file_close(&p->f);
}

int read_probe_run(const char *path, const read_probe_opts *o, read_probe_result *out,
                   sw_err *err)
{
    read_probe_opts opts = o ? *o : (read_probe_opts){0};
    double seconds = opts.seconds > 0 ? opts.seconds : 2;
    memset(out, 0, sizeof *out);
    probe p = {.depth = opts.depth > 0 ? opts.depth : PROBE_DEFAULT_DEPTH, .f.fd = -1};
    if (p.depth > PROBE_DEFAULT_DEPTH * 16)
        return sw_errf(err, SW_EINVAL, "read probe: depth %d is too deep", p.depth);
    gguf_ctx *g = NULL;
    size_t max_len = 0;
    int rc = gguf_open(path, GGUF_NO_DATA, &g, err);
    if (rc)
        return rc;
    p.s = list_slices(g, opts.seed ? opts.seed : 1, &p.n, &max_len);
    gguf_close(g);
    if (!p.s)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    if (!p.n) {
        free(p.s);
        return sw_errf(err, SW_EINVAL, "'%s' has no expert tensors to read", path);
    }
    if ((rc = reader_file_open(&p.f, path, 0, err)))
        goto done;
    p.cap = reader_slot_bytes(&p.f, max_len);
    if ((size_t)p.depth * p.cap > PROBE_MAX_BUFFERS) /* Mixtral's slices are 35 MB */
        p.depth = p.cap < PROBE_MAX_BUFFERS ? (int)(PROBE_MAX_BUFFERS / p.cap) : 1;
    reader_opts ro = {.depth = p.depth, .max_requests = p.depth};
    if ((rc = reader_open(&ro, &p.r, err)))
        goto done;
    p.buf = calloc((size_t)p.depth, sizeof *p.buf);
    for (int b = 0; p.buf && b < p.depth; b++)
        if (posix_memalign((void **)&p.buf[b], 4096, p.cap))
            p.buf[b] = NULL, rc = SW_ENOMEM;
    if (!p.buf || rc) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory for %d read buffers", p.depth);
        goto done;
    }
    if ((rc = probe_loop(&p, seconds, &out->seconds, err)))
        goto done;
    reader_stats st;
    reader_stats_get(p.r, &st);
    out->reads = st.reads;
    out->bytes = st.bytes;
    out->gbs = out->seconds > 0 ? (double)st.bytes / out->seconds / 1e9 : 0;
    out->mean_read_bytes = st.reads ? (double)st.bytes / (double)st.reads : 0;
    out->p50_us = reader_stats_quantile(&st, 0.5);
    out->p99_us = reader_stats_quantile(&st, 0.99);
    out->direct = p.f.direct;
    snprintf(out->mode, sizeof out->mode, "%s", reader_mode(p.r));
done:
    probe_free(&p);
    return rc;
}
