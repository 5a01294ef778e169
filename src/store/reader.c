/*
 * reader.c — files, spans, the request table and everything the two
 * engines share: queues and priorities, tags, delivery, counters. See
 * reader.h for the contract and reader_int.h for the request life cycle.
 */
#include "store/reader_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READER_DEFAULT_DEPTH 64
#define READER_MAX_DEPTH 4096
#define READER_DEFAULT_REQUESTS 1024
#define READER_FALLBACK_ALIGN 4096u
#define READER_MAX_BYTES ((uint64_t)1 << 62) /* offsets and lengths: no sums overflow */

uint64_t reader_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- files -------------------------------------------------------------- */

static int is_pow2(uint32_t x)
{
    return x && !(x & (x - 1));
}

/* The direct-I/O alignment of fd: statx where the kernel reports it, the
 * logical block size of a block device, else 4096 (no device has larger
 * logical blocks). 0 when the file system says O_DIRECT is unsupported. */
static void direct_align(int fd, uint32_t *off_align, uint32_t *mem_align)
{
    *off_align = *mem_align = 0;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        if (sx.stx_dio_offset_align == 0)
            return;
        *off_align = sx.stx_dio_offset_align;
        *mem_align = sx.stx_dio_mem_align;
    }
#endif
    struct stat st;
    int bs = 0;
    if (!*off_align && fstat(fd, &st) == 0 && S_ISBLK(st.st_mode) && ioctl(fd, BLKSSZGET, &bs) == 0 &&
        bs > 0)
        *off_align = (uint32_t)bs;
    if (!is_pow2(*off_align) || *off_align > (1u << 20))
        *off_align = READER_FALLBACK_ALIGN;
    if (!is_pow2(*mem_align) || *mem_align > *off_align)
        *mem_align = *off_align;
}

/* Opens path with O_DIRECT and checks that a read really works (some file
 * systems take the flag and refuse the I/O). Returns the fd, or -1 with
 * why filled; *hard is set when the file cannot be opened at all. */
static int open_direct(reader_file *f, const char *path, int *hard)
{
    *hard = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0) {
        *hard = errno != EINVAL;
        snprintf(f->why, sizeof f->why, "O_DIRECT refused: %s", strerror(errno));
        return -1;
    }
    uint32_t a, ma;
    direct_align(fd, &a, &ma);
    if (!a) {
        snprintf(f->why, sizeof f->why, "O_DIRECT unsupported by the file system");
        close(fd);
        return -1;
    }
    void *probe = aligned_alloc(a, a);
    ssize_t n = probe ? pread(fd, probe, a, 0) : -1;
    int e = probe ? errno : ENOMEM;
    free(probe);
    if (n < 0) {
        snprintf(f->why, sizeof f->why, "O_DIRECT read refused: %s", strerror(e));
        close(fd);
        return -1;
    }
    f->align = a;
    f->mem_align = ma;
    return fd;
}

int reader_file_open(reader_file *f, const char *path, int flags, sw_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path)
        return sw_errf(err, SW_ENOMEM, "reader: out of memory");
    int hard = 0, fd = -1;
    if (flags & READER_FILE_BUFFERED)
        snprintf(f->why, sizeof f->why, "buffered by request");
    else
        fd = open_direct(f, path, &hard);
    if (fd >= 0) {
        f->direct = 1;
    } else if (!hard) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        f->align = f->mem_align = 1;
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(f->path);
        f->path = NULL;
        return sw_errf(err, e == ENOENT ? SW_ENOTFOUND : SW_EIO, "open '%s': %s", path,
                       strerror(e));
    }
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    uint64_t dev_bytes;
    if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &dev_bytes) == 0)
        f->size = dev_bytes;
    return 0;
}

void reader_file_close(reader_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    f->fd = -1;
    f->path = NULL;
}

size_t reader_span_bytes(const reader_file *f, uint64_t offset, size_t len)
{
    uint64_t start = reader_span_start(f, offset), end = offset + len;
    end += (f->align - end % f->align) % f->align;
    return (size_t)(end - start);
}

size_t reader_slot_bytes(const reader_file *f, size_t len)
{
    size_t a = f->align, worst = len + a - 1; /* the range may start at a - 1 */
    return (worst + a - 1) / a * a;
}

/* ---- lists and tags (mu held) ------------------------------------------- */

static void list_push(struct rreq *t, struct rlist *l, int i, int at_head)
{
    t[i].prev = t[i].next = -1;
    if (!l->n) {
        l->head = l->tail = i;
    } else if (at_head) {
        t[i].next = l->head;
        t[l->head].prev = i;
        l->head = i;
    } else {
        t[i].prev = l->tail;
        t[l->tail].next = i;
        l->tail = i;
    }
    l->n++;
}

static void list_del(struct rreq *t, struct rlist *l, int i)
{
    if (t[i].prev >= 0)
        t[t[i].prev].next = t[i].next;
    else
        l->head = t[i].next;
    if (t[i].next >= 0)
        t[t[i].next].prev = t[i].prev;
    else
        l->tail = t[i].prev;
    t[i].prev = t[i].next = -1;
    l->n--;
}

static int list_pop(struct rreq *t, struct rlist *l)
{
    int i = l->n ? l->head : -1;
    if (i >= 0)
        list_del(t, l, i);
    return i;
}

static unsigned tag_hash(const reader *r, uint64_t tag)
{
    return (unsigned)((tag * 0x9E3779B97F4A7C15ull) >> 32) & r->bucket_mask;
}

static int tag_find(const reader *r, uint64_t tag)
{
    int i = r->bucket[tag_hash(r, tag)];
    while (i >= 0 && r->req[i].tag != tag)
        i = r->req[i].hnext;
    return i;
}

static void tag_insert(reader *r, int i)
{
    unsigned h = tag_hash(r, r->req[i].tag);
    r->req[i].hnext = r->bucket[h];
    r->bucket[h] = i;
}

static void tag_remove(reader *r, int i)
{
    int *p = &r->bucket[tag_hash(r, r->req[i].tag)];
    while (*p != i)
        p = &r->req[*p].hnext;
    *p = r->req[i].hnext;
}

static struct rlist *queue_of(reader *r, int prio)
{
    return prio == READER_PREFETCH ? &r->prefetch : &r->demand;
}

/* Returns a slot to the free list; its message lives until reuse. */
static void release(reader *r, int i)
{
    tag_remove(r, i);
    r->req[i].state = RQ_FREE;
    r->req[i].waited = 0;
    list_push(r->req, &r->free_, i, 0);
}

/* ---- engine helpers ----------------------------------------------------- */

int reader_take(reader *r)
{
    if (r->active >= r->depth)
        return -1;
    int i;
    if (r->demand.n)
        i = list_pop(r->req, &r->demand);
    else if (r->prefetch.n && r->active_prefetch < r->prefetch_depth)
        i = list_pop(r->req, &r->prefetch);
    else
        return -1;
    struct rreq *q = &r->req[i];
    q->state = RQ_ACTIVE;
    q->from = q->got = 0;
    q->t_issue = reader_now_ns();
    r->active++;
    r->active_prefetch += q->prio == READER_PREFETCH;
    if (r->active > r->st.inflight_max)
        r->st.inflight_max = r->active;
    return i;
}

int reader_advance(struct rreq *q, ssize_t n)
{
    size_t end = q->from + (size_t)(n > 0 ? n : 0);
    if (n <= 0 || end <= q->got)
        return -1; /* end of file, or no progress past it */
    q->got = end;
    if (q->got >= q->need)
        return 1;
    q->from = q->got - q->got % q->file->align;
    return 0;
}

static int hist_bucket(uint64_t us)
{
    if (us < 2)
        return 0;
    int b = 63 - __builtin_clzll(us);
    return b < READER_HIST_BUCKETS ? b : READER_HIST_BUCKETS - 1;
}

static char *error_text(const struct rreq *q, int sys_errno)
{
    const char *path = q->file->path ? q->file->path : "?";
    size_t cap = strlen(path) + 160;
    char *m = malloc(cap);
    if (!m)
        return NULL;
    int n = snprintf(m, cap, "read of %zu bytes at offset %llu of '%s': ", q->len,
                     (unsigned long long)q->offset, path);
    struct stat st;
    if (sys_errno)
        snprintf(m + n, cap - (size_t)n, "%s", strerror(sys_errno));
    else if (fstat(q->file->fd, &st) == 0)
        snprintf(m + n, cap - (size_t)n, "the file has only %llu bytes",
                 (unsigned long long)st.st_size);
    else
        snprintf(m + n, cap - (size_t)n, "the file ends first");
    return m;
}

void reader_finish(reader *r, int idx, int sys_errno, int eof)
{
    struct rreq *q = &r->req[idx];
    q->rc = (sys_errno || eof) ? SW_EIO : 0;
    q->sys_errno = sys_errno;
    if (q->rc)
        q->msg = error_text(q, sys_errno);
    r->active--;
    r->active_prefetch -= q->prio == READER_PREFETCH;
    r->finished++;
    r->st.reads++;
    r->st.errors += q->rc != 0;
    r->st.bytes += q->got;
    r->st.bytes_wanted += q->len;
    r->st.retries += (uint64_t)q->retries;
    r->st.lat_us[hist_bucket((reader_now_ns() - q->t_issue) / 1000)]++;
    q->state = RQ_DONE;
    list_push(r->req, &r->done, idx, 0);
}

/* ---- open and close ----------------------------------------------------- */

static int env_true(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static int reader_alloc_table(reader *r, int cap)
{
    unsigned nb = 1;
    while (nb < 2u * (unsigned)cap)
        nb <<= 1;
    r->req = calloc((size_t)cap, sizeof *r->req);
    r->bucket = malloc(nb * sizeof *r->bucket);
    if (!r->req || !r->bucket)
        return SW_ENOMEM;
    r->cap = cap;
    r->bucket_mask = nb - 1;
    for (unsigned b = 0; b < nb; b++)
        r->bucket[b] = -1;
    for (int i = 0; i < cap; i++)
        list_push(r->req, &r->free_, i, 0);
    return 0;
}

static void reader_free(reader *r)
{
    if (r->req)
        for (int i = 0; i < r->cap; i++)
            free(r->req[i].msg);
    free(r->req);
    free(r->bucket);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Picks and starts the engine; on an AUTO fallback the mode says why. */
static int reader_start(reader *r, reader_backend want, sw_err *err)
{
    char why[sizeof r->mode / 2] = "";
    if (want == READER_AUTO && env_true("SPILLWAY_NO_URING")) {
        snprintf(why, sizeof why, "SPILLWAY_NO_URING is set");
        want = READER_POOL;
    }
    if (want != READER_POOL) {
        sw_err e = {0};
        if (reader_uring_init(r, &e) == 0) {
            r->backend = READER_URING;
            return 0;
        }
        if (want == READER_URING)
            return sw_errf(err, e.code, "%s", e.msg);
        snprintf(why, sizeof why, "%.*s", (int)sizeof why - 1, e.msg);
    }
    int rc = reader_pool_init(r, err);
    if (rc)
        return rc;
    r->backend = READER_POOL;
    if (*why) {
        size_t n = strlen(r->mode);
        snprintf(r->mode + n, sizeof r->mode - n, " (%s)", why);
    }
    return 0;
}

int reader_open(const reader_opts *opts, reader **out, sw_err *err)
{
    reader_opts o = opts ? *opts : (reader_opts){0};
    *out = NULL;
    if (o.depth < 0 || o.prefetch_depth < 0 || o.max_requests < 0 || o.depth > READER_MAX_DEPTH)
        return sw_errf(err, SW_EINVAL, "reader: bad options (depth %d, prefetch depth %d, "
                       "max requests %d)", o.depth, o.prefetch_depth, o.max_requests);
    reader *r = calloc(1, sizeof *r);
    if (!r)
        return sw_errf(err, SW_ENOMEM, "reader: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->depth = o.depth ? o.depth : READER_DEFAULT_DEPTH;
    r->prefetch_depth = o.prefetch_depth ? o.prefetch_depth : r->depth * 3 / 4;
    if (r->prefetch_depth < 1)
        r->prefetch_depth = 1;
    if (r->prefetch_depth > r->depth)
        r->prefetch_depth = r->depth;
    int cap = o.max_requests ? o.max_requests : READER_DEFAULT_REQUESTS;
    r->on_done = o.on_done;
    r->ctx = o.ctx;
    int rc = reader_alloc_table(r, cap < r->depth ? r->depth : cap);
    if (rc) {
        reader_free(r);
        return sw_errf(err, rc, "reader: out of memory");
    }
    rc = reader_start(r, o.backend, err);
    if (rc) {
        reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void reader_close(reader *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (int i; (i = list_pop(r->req, &r->demand)) >= 0 || (i = list_pop(r->req, &r->prefetch)) >= 0;)
        release(r, i);
    pthread_mutex_unlock(&r->mu);
    r->ops->close(r);
    reader_free(r);
}

reader_backend reader_backend_of(const reader *r)
{
    return r->backend;
}

const char *reader_mode(const reader *r)
{
    return r->mode;
}

int reader_live(const reader *r)
{
    return r->cap - r->free_.n;
}

/* ---- submit ------------------------------------------------------------- */

static int check_request(const reader_file *f, uint64_t offset, size_t len, const void *buf,
                         size_t buf_cap, int prio, sw_err *err)
{
    if (!f || f->fd < 0 || !f->align || !buf || (prio != READER_DEMAND && prio != READER_PREFETCH))
        return sw_errf(err, SW_EINVAL, "reader: bad read request");
    const char *path = f->path ? f->path : "?";
    if (len == 0 || len > READER_MAX_BYTES || offset > READER_MAX_BYTES)
        return sw_errf(err, SW_EINVAL, "reader: bad range of %zu bytes at offset %llu of '%s'",
                       len, (unsigned long long)offset, path);
    size_t span = reader_span_bytes(f, offset, len);
    if (buf_cap < span)
        return sw_errf(err, SW_EINVAL, "reader: %zu bytes at offset %llu of '%s' need a "
                       "%zu-byte buffer, got %zu", len, (unsigned long long)offset, path, span,
                       buf_cap);
    if ((uintptr_t)buf % f->mem_align)
        return sw_errf(err, SW_EINVAL, "reader: buffer %p is not %u-byte aligned (O_DIRECT)",
                       buf, f->mem_align);
    return 0;
}

int reader_submit(reader *r, const reader_file *f, uint64_t offset, size_t len, void *buf,
                  size_t buf_cap, uint64_t tag, int priority, sw_err *err)
{
    int rc = check_request(f, offset, len, buf, buf_cap, priority, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&r->mu);
    int i = -1;
    if (tag_find(r, tag) >= 0)
        rc = sw_errf(err, SW_EINVAL, "reader: tag %llu is already in use",
                     (unsigned long long)tag);
    else if ((i = list_pop(r->req, &r->free_)) < 0)
        rc = sw_errf(err, SW_ERANGE, "reader: %d reads are live (max_requests); collect some "
                     "first", r->cap);
    if (rc) {
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    struct rreq *q = &r->req[i];
    free(q->msg);
    *q = (struct rreq){
        .tag = tag, .file = f, .offset = offset, .len = len,
        .span_off = reader_span_start(f, offset), .span_len = reader_span_bytes(f, offset, len),
        .need = (size_t)(offset - reader_span_start(f, offset)) + len,
        .buf = buf, .prio = priority, .state = RQ_QUEUED,
    };
    tag_insert(r, i);
    list_push(r->req, queue_of(r, priority), i, 0);
    if (r->active >= r->depth)
        r->ops->reap(r, 0, NULL); /* room may have opened since the last call */
    r->ops->kick(r);
    int queued = r->demand.n + r->prefetch.n;
    if (queued > r->st.queued_max)
        r->st.queued_max = queued;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* ---- delivery ----------------------------------------------------------- */

static void result_of(const struct rreq *q, reader_result *res)
{
    res->tag = q->tag;
    res->rc = q->rc;
    res->data = q->buf + (q->offset - q->span_off);
    res->len = q->len;
    res->msg = !q->rc ? "" : q->msg ? q->msg : "read failed (no memory for the message)";
}

/* Runs the callback for each finished read, dropping mu around it. A read
 * someone waits on is kept (RQ_HELD) for reader_wait. Returns how many. */
static int run_callbacks(reader *r)
{
    int n = 0;
    for (int i; (i = list_pop(r->req, &r->done)) >= 0; n++) {
        reader_result res;
        result_of(&r->req[i], &res);
        if (r->req[i].waited)
            r->req[i].state = RQ_HELD;
        pthread_mutex_unlock(&r->mu);
        r->on_done(r->ctx, &res);
        pthread_mutex_lock(&r->mu);
        if (r->req[i].state != RQ_HELD)
            release(r, i);
    }
    return n;
}

int reader_wait(reader *r, uint64_t tag, reader_result *res, sw_err *err)
{
    pthread_mutex_lock(&r->mu);
    int i = tag_find(r, tag), rc = 0;
    if (i < 0 || r->req[i].waited) {
        pthread_mutex_unlock(&r->mu);
        return sw_errf(err, SW_ENOTFOUND, "reader: no read tagged %llu is live",
                       (unsigned long long)tag);
    }
    struct rreq *q = &r->req[i];
    q->waited = 1;
    if (q->state == RQ_QUEUED) { /* the caller is blocked on it: first in line */
        list_del(r->req, queue_of(r, q->prio), i);
        q->prio = READER_DEMAND;
        list_push(r->req, &r->demand, i, 1);
        r->ops->kick(r);
    }
    for (;;) {
        if (r->on_done)
            run_callbacks(r);
        if (q->state == RQ_HELD || (!r->on_done && q->state == RQ_DONE))
            break;
        if ((rc = r->ops->reap(r, 1, err)) < 0)
            break;
        r->ops->kick(r);
    }
    if (rc < 0) {
        q->waited = 0;
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    if (q->state == RQ_DONE)
        list_del(r->req, &r->done, i);
    reader_result mine;
    result_of(q, res ? res : &mine);
    rc = q->rc;
    if (rc)
        sw_errf(err, rc, "%s", res ? res->msg : mine.msg);
    release(r, i);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int reader_poll(reader *r, reader_result *out, int max, int block, sw_err *err)
{
    pthread_mutex_lock(&r->mu);
    int rc = r->ops->reap(r, 0, err);
    r->ops->kick(r);
    if (rc == 0 && block && !r->done.n && r->active + r->demand.n + r->prefetch.n > 0) {
        rc = r->ops->reap(r, 1, err);
        r->ops->kick(r);
    }
    int n = 0;
    if (rc == 0 && r->on_done) {
        n = run_callbacks(r);
    } else if (rc == 0) {
        for (int i; n < max && (i = list_pop(r->req, &r->done)) >= 0; n++) {
            result_of(&r->req[i], &out[n]);
            release(r, i);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc < 0 ? rc : n;
}

int reader_promote(reader *r, uint64_t tag)
{
    pthread_mutex_lock(&r->mu);
    int i = tag_find(r, tag), rc = SW_ENOTFOUND;
    if (i >= 0 && r->req[i].state == RQ_QUEUED) {
        if (r->req[i].prio == READER_PREFETCH) {
            list_del(r->req, &r->prefetch, i);
            r->req[i].prio = READER_DEMAND;
            list_push(r->req, &r->demand, i, 0);
            r->ops->kick(r);
        }
        rc = 0;
    } else if (i >= 0) {
        rc = 0; /* already in flight or done: nothing to raise */
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int reader_cancel(reader *r, uint64_t tag)
{
    pthread_mutex_lock(&r->mu);
    int i = tag_find(r, tag), rc = SW_ENOTFOUND;
    if (i >= 0 && r->req[i].state == RQ_QUEUED) {
        list_del(r->req, queue_of(r, r->req[i].prio), i);
        release(r, i);
        r->st.cancelled++;
        rc = 1;
    } else if (i >= 0) {
        rc = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- counters ----------------------------------------------------------- */

void reader_stats_get(reader *r, reader_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    pthread_mutex_unlock(&r->mu);
}

void reader_stats_reset(reader *r)
{
    pthread_mutex_lock(&r->mu);
    memset(&r->st, 0, sizeof r->st);
    pthread_mutex_unlock(&r->mu);
}

double reader_stats_quantile(const reader_stats *s, double q)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; b < READER_HIST_BUCKETS; b++)
        total += s->lat_us[b];
    if (!total)
        return 0;
    double want = q * (double)total;
    for (int b = 0; b < READER_HIST_BUCKETS; b++) {
        seen += s->lat_us[b];
        if ((double)seen >= want && s->lat_us[b])
            return (double)(2ull << b);
    }
    return (double)(2ull << (READER_HIST_BUCKETS - 1));
}
