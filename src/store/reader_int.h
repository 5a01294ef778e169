/*
 * reader_int.h — what reader.c shares with its two engines (reader_uring.c,
 * reader_pool.c). Not for use outside src/store/reader*.c.
 *
 * Requests live in one table of max_requests slots, addressed by index.
 * A slot moves FREE -> QUEUED -> ACTIVE -> DONE -> FREE:
 *
 *   QUEUED   on the demand or prefetch list, waiting for room in flight;
 *   ACTIVE   handed to the engine (an SQE, or a pool thread's pread);
 *   DONE     result set, on the done list until delivered (callback, poll
 *            or wait), then FREE again.
 *
 * Lists are intrusive (prev/next indices), tags are found through a chained
 * hash (hnext). r->mu guards the table, the lists and the counters; only the
 * pool's threads ever contend for it. The engine's hooks are called with mu
 * held; reap may drop it while it sleeps.
 */
#ifndef SW_READER_INT_H
#define SW_READER_INT_H

#include <pthread.h>
#include <sys/types.h>

#include "store/reader.h"

/* RQ_HELD: done, its callback has run, kept for the reader_wait blocked on it. */
enum { RQ_FREE, RQ_QUEUED, RQ_ACTIVE, RQ_DONE, RQ_HELD };

struct rreq {
    uint64_t tag;
    const reader_file *file;
    uint64_t offset; /* what the caller asked for */
    size_t len;
    uint64_t span_off; /* the aligned span read into buf */
    size_t span_len;
    size_t need; /* bytes of the span that must arrive: offset - span_off + len */
    size_t got;  /* bytes of the span that have arrived (a prefix) */
    size_t from; /* where in the span the read in flight started */
    uint8_t *buf;
    int prio, state, waited, retries;
    int rc, sys_errno; /* sys_errno 0 with rc != 0: the file ended early */
    char *msg;         /* error text, malloc'd; freed when the slot is reused */
    uint64_t t_issue; /* ns: when it went in flight */
    int prev, next, hnext;
};

struct rlist {
    int head, tail, n;
};

struct reader_ops {
    /* Starts queued reads while there is room (mu held). */
    void (*kick)(reader *r);
    /* Moves finished reads to the done list; if block and none finished,
     * sleeps until one does (mu held, may be dropped while asleep). */
    int (*reap)(reader *r, int block, sw_err *err);
    /* Waits for reads in flight and frees the engine (mu not held). */
    void (*close)(reader *r);
};

struct reader {
    pthread_mutex_t mu;
    struct rreq *req;
    int cap;
    int *bucket; /* tag hash heads, nbucket = power of two >= 2 * cap */
    unsigned bucket_mask;
    struct rlist free_, demand, prefetch, done;
    int active, active_prefetch;
    uint64_t finished; /* reads ended, ever: reap(block) waits for it to move */
    int depth, prefetch_depth;
    reader_done_fn on_done;
    void *ctx;
    reader_stats st;
    reader_backend backend;
    const struct reader_ops *ops;
    void *impl;
    char mode[192];
};

uint64_t reader_now_ns(void);

/* Pops the next read to issue (demand first; prefetch only below
 * prefetch_depth), marks it ACTIVE and returns its index, or -1. mu held. */
int reader_take(reader *r);

/* Accounts for a read of the span that started at q->from and returned n
 * bytes (n >= 0). Returns 1 when the request has all it needs, 0 when more
 * must be read from q->from (updated), -1 when the file ended first. */
int reader_advance(struct rreq *q, ssize_t n);

/* Ends request idx: sets its result (sys_errno 0 and eof 0: success),
 * counts it and moves it to the done list. mu held. */
void reader_finish(reader *r, int idx, int sys_errno, int eof);

/* Engines. Each returns 0 or fills err (the caller falls back). */
int reader_uring_init(reader *r, sw_err *err);
int reader_pool_init(reader *r, sw_err *err);

#endif
