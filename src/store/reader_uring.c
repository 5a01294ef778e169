/*
 * reader_uring.c — the io_uring engine: one ring, no threads of ours.
 *
 * Each read in flight owns exactly one SQE or CQE at a time: kick prepares
 * an SQE per read it takes off the queues and submits them in one call;
 * reap walks the CQ and, for each CQE, either finishes the read or prepares
 * the next SQE for its rest (a short read, EINTR, EAGAIN). As at most depth
 * reads are in flight and the SQ has at least depth entries, an SQE is
 * always there when one is needed. Reads complete in the kernel while the
 * owner thread computes; the owner sees them when it next calls in.
 */
#include "store/reader_int.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URING_MAX_RETRIES 1000     /* EINTR/EAGAIN in a row before giving up */
#define URING_MAX_READ (1u << 30)  /* one SQE reads at most this; the rest follows */

struct uring {
    struct io_uring ring;
};

/* Prepares the SQE that reads the rest of request i (from q->from). */
static void uring_prep(reader *r, struct uring *u, int i)
{
    struct rreq *q = &r->req[i];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) { /* cannot happen (see the top); fail the read rather than lose it */
        reader_finish(r, i, EBUSY, 0);
        return;
    }
    size_t rest = q->span_len - q->from;
    io_uring_prep_read(sqe, q->file->fd, q->buf + q->from,
                       (unsigned)(rest < URING_MAX_READ ? rest : URING_MAX_READ),
                       q->span_off + q->from);
    io_uring_sqe_set_data64(sqe, (uint64_t)i);
}

/* Hands prepared SQEs to the kernel. A transient refusal leaves them in the
 * SQ; the next kick or reap submits them. */
static int uring_flush(struct uring *u)
{
    if (!io_uring_sq_ready(&u->ring))
        return 0;
    int rc = io_uring_submit(&u->ring);
    return rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY ? rc : 0;
}

static void uring_kick(reader *r)
{
    struct uring *u = r->impl;
    for (int i; (i = reader_take(r)) >= 0;)
        uring_prep(r, u, i);
    uring_flush(u); /* a hard error shows up again in reap, which reports it */
}

static void uring_complete(reader *r, struct uring *u, int i, int res)
{
    struct rreq *q = &r->req[i];
    if (res == -EINTR || res == -EAGAIN) {
        if (++q->retries > URING_MAX_RETRIES)
            reader_finish(r, i, -res, 0);
        else
            uring_prep(r, u, i);
        return;
    }
    if (res < 0) {
        reader_finish(r, i, -res, 0);
        return;
    }
    switch (reader_advance(q, res)) {
    case 1: reader_finish(r, i, 0, 0); break;
    case 0: q->retries++; uring_prep(r, u, i); break;
    default: reader_finish(r, i, 0, 1); break;
    }
}

/* Handles every CQE that is there; returns how many. */
static unsigned uring_drain(reader *r, struct uring *u)
{
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        int i = (int)io_uring_cqe_get_data64(cqe);
        if (i >= 0 && i < r->cap && r->req[i].state == RQ_ACTIVE)
            uring_complete(r, u, i, cqe->res);
        n++;
    }
    io_uring_cq_advance(&u->ring, n);
    return n;
}

static int uring_reap(reader *r, int block, sw_err *err)
{
    struct uring *u = r->impl;
    uint64_t seen = r->finished;
    for (;;) {
        uring_drain(r, u);
        if (!block || r->finished != seen || r->active == 0)
            return 0;
        int rc = io_uring_submit_and_wait(&u->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
            return sw_errf(err, SW_EIO, "reader: io_uring_submit_and_wait: %s", strerror(-rc));
    }
}

static void uring_close(reader *r)
{
    struct uring *u = r->impl;
    pthread_mutex_lock(&r->mu);
    while (r->active > 0) { /* the kernel still writes into the callers' buffers */
        uring_drain(r, u);
        if (r->active == 0)
            break;
        int rc = io_uring_submit_and_wait(&u->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
            break;
    }
    pthread_mutex_unlock(&r->mu);
    io_uring_queue_exit(&u->ring);
    free(u);
}

static const struct reader_ops uring_ops = {uring_kick, uring_reap, uring_close};

int reader_uring_init(reader *r, sw_err *err)
{
    struct uring *u = calloc(1, sizeof *u);
    if (!u)
        return sw_errf(err, SW_ENOMEM, "reader: out of memory");
    unsigned entries = 1;
    while (entries < (unsigned)r->depth)
        entries <<= 1;
    int rc = io_uring_queue_init(entries, &u->ring, 0);
    if (rc < 0) {
        free(u);
        return sw_errf(err, SW_EUNSUPPORTED, "io_uring unavailable: %s", strerror(-rc));
    }
    r->impl = u;
    r->ops = &uring_ops;
    snprintf(r->mode, sizeof r->mode, "io_uring, depth %d", r->depth);
    return 0;
}
