/*
 * reader_pool.c — the pread engine: depth threads, each taking the next
 * queued read (demand first, by the same rule as io_uring's kick) and
 * calling pread until the read has what it needs.
 *
 * Threads take work themselves under r->mu, so reads keep flowing while
 * the owner thread computes. While a thread reads a request it alone
 * touches the request's progress fields (from, got, retries); everything
 * else about the request is fixed from submit to finish. A finished read
 * goes to the done list and wakes the owner if it sleeps in reap.
 */
#include "store/reader_int.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX_RETRIES 1000         /* EINTR/EAGAIN in a row before giving up */
#define POOL_MAX_READ ((size_t)1 << 30) /* one pread asks for at most this */
#define POOL_STACK (256u << 10)

struct pool {
    pthread_t *threads;
    int n, idle, stop;
    pthread_cond_t work; /* queued reads, or stop */
    pthread_cond_t done; /* a read finished */
};

/* Reads request q to the end it needs. Sets *sys_errno or *eof on failure. */
static void pool_read(struct rreq *q, int *sys_errno, int *eof)
{
    for (;;) {
        size_t rest = q->span_len - q->from;
        ssize_t n = pread(q->file->fd, q->buf + q->from, rest < POOL_MAX_READ ? rest : POOL_MAX_READ,
                          (off_t)(q->span_off + q->from));
        if (n < 0) {
            if ((errno == EINTR || errno == EAGAIN) && ++q->retries <= POOL_MAX_RETRIES) {
                if (errno == EAGAIN)
                    sched_yield();
                continue;
            }
            *sys_errno = errno;
            return;
        }
        int a = reader_advance(q, n);
        if (a == 1)
            return;
        if (a < 0) {
            *eof = 1;
            return;
        }
        q->retries++;
    }
}

static void *pool_main(void *arg)
{
    reader *r = arg;
    struct pool *p = r->impl;
    pthread_mutex_lock(&r->mu);
    while (!p->stop) {
        int i = reader_take(r);
        if (i < 0) {
            p->idle++;
            pthread_cond_wait(&p->work, &r->mu);
            p->idle--;
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        int sys_errno = 0, eof = 0;
        pool_read(&r->req[i], &sys_errno, &eof);
        pthread_mutex_lock(&r->mu);
        reader_finish(r, i, sys_errno, eof);
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void pool_kick(reader *r)
{
    struct pool *p = r->impl;
    int want = r->demand.n + r->prefetch.n;
    for (int k = 0; k < want && k < p->idle; k++)
        pthread_cond_signal(&p->work);
}

static int pool_reap(reader *r, int block, sw_err *err)
{
    struct pool *p = r->impl;
    uint64_t seen = r->finished;
    while (block && r->finished == seen && r->active + r->demand.n + r->prefetch.n > 0)
        pthread_cond_wait(&p->done, &r->mu);
    return 0;
}

static void pool_stop(reader *r, struct pool *p)
{
    pthread_mutex_lock(&r->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&r->mu);
    for (int t = 0; t < p->n; t++)
        pthread_join(p->threads[t], NULL); /* each finishes the read it holds */
}

static void pool_close(reader *r)
{
    struct pool *p = r->impl;
    pool_stop(r, p);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

static const struct reader_ops pool_ops = {pool_kick, pool_reap, pool_close};

int reader_pool_init(reader *r, sw_err *err)
{
    struct pool *p = calloc(1, sizeof *p);
    pthread_t *th = calloc((size_t)r->depth, sizeof *th);
    if (!p || !th) {
        free(p);
        free(th);
        return sw_errf(err, SW_ENOMEM, "reader: out of memory");
    }
    p->threads = th;
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    r->impl = p;
    r->ops = &pool_ops;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, POOL_STACK > PTHREAD_STACK_MIN ? POOL_STACK : PTHREAD_STACK_MIN);
    int rc = 0;
    pthread_mutex_lock(&r->mu); /* the threads start once depth is final */
    while (p->n < r->depth && (rc = pthread_create(&th[p->n], &attr, pool_main, r)) == 0)
        p->n++;
    pthread_attr_destroy(&attr);
    if (p->n) {
        r->depth = p->n; /* as many reads in flight as there are threads */
        if (r->prefetch_depth > r->depth)
            r->prefetch_depth = r->depth;
    }
    pthread_mutex_unlock(&r->mu);
    if (p->n == 0) {
        pool_close(r);
        r->impl = NULL;
        r->ops = NULL;
        return sw_errf(err, SW_EIO, "reader: cannot start a pread thread: %s", strerror(rc));
    }
    snprintf(r->mode, sizeof r->mode, "pread pool, %d threads", p->n);
    return 0;
}
