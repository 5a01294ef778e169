/*
 * pool.c — the parallel-for pool described in pool.h.
 *
 * The whole protocol lives in one 64-bit word, the ticket:
 *
 *     bits 63..48  gen   round number (wraps; only inequality matters)
 *     bits 47..24  n     tasks in this round
 *     bits 23..0   next  next task index to hand out
 *
 * The caller publishes a round by storing (gen+1, n, 0). Every thread,
 * caller included, claims tasks with fetch_add(ticket, 1): the old value
 * names both the task and the round it belongs to, so a thread that arrives
 * late can never run a task of a round it did not see (no ABA: the claim is
 * the read). A claim with next >= n is an over-claim: the thread stops and
 * waits for the gen to change. Each thread over-claims at most once per
 * round, so next stays below n + threads and never carries into n.
 *
 * The job description (fn, ctx, base, total) is plain data written before the
 * ticket is released; a thread reads it only after a successful claim, when
 * the round cannot end (its task is not yet done) and so cannot be replaced.
 *
 * Completion is counted in tasks: each thread adds the number of tasks it ran
 * to `done` once, after its over-claim; the caller waits for done == n.
 *
 * Sleeping: an idle worker spins on the ticket for SW_POOL_SPIN_US, then
 * registers in `sleepers` and futex-waits on `wake_seq`, which the caller
 * bumps after each publish (and wakes only if someone sleeps). The caller,
 * once it has run out of tasks, spins for CALLER_SPIN_US and then
 * futex-waits on `done`, flagging `caller_waiting` so the finishing worker
 * wakes it. Both handshakes are the usual store-then-check pairs on seq_cst
 * atomics.
 *
 * Parking: sw_pool_park() stores the current gen, marked valid, in `park`;
 * a worker spinning after that round (seen == that gen) sees it and goes to
 * sleep at once. A later round has another gen, so an old park never cuts
 * its spin short (after 2^16 rounds one might, once: harmless).
 *
 * Rounds: n_tasks above SW_POOL_ROUND are run as several rounds, each task
 * index offset by `base`.
 */
#include "util/pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NEXT_BITS 24
#define N_BITS 24
#define SW_POOL_ROUND (1 << (N_BITS - 1)) /* leaves room for over-claims */
#define CACHE_LINE 64
/* How long the caller spins for stragglers before it sleeps. A legitimate
 * straggler is one chunk of work from done; one that takes longer has
 * probably lost its core, and sleeping gives the core back. */
#define CALLER_SPIN_US 50
#define PARKED 0x10000u /* above any 16-bit gen */

struct sw_pool {
    /* Line 1: the ticket and the job it hands out (claimed together). */
    _Alignas(CACHE_LINE) _Atomic uint64_t ticket;
    sw_pool_fn fn;
    void *ctx;
    int base;  /* task index of this round's task 0 */
    int total; /* n_tasks of the whole sw_pool_run */

    /* Line 2: completion. */
    _Alignas(CACHE_LINE) _Atomic uint32_t done;
    _Atomic uint32_t caller_waiting;

    /* Line 3: sleeping workers and shutdown. */
    _Alignas(CACHE_LINE) _Atomic uint32_t wake_seq;
    _Atomic uint32_t sleepers;
    _Atomic uint32_t stop;
    _Atomic uint32_t park;    /* PARKED | gen of the round after which to sleep */
    _Atomic uint32_t spin_us; /* idle spin before sleeping */

    /* Cold. */
    _Alignas(CACHE_LINE) pthread_mutex_t run_lock; /* one sw_pool_run at a time */
    int n_threads;
    int n_started; /* workers actually created */
    pthread_t *threads;
};

/* Which pool (if any) this thread is running a task of, and as which thread:
 * lets sw_pool_run detect re-entry. */
static _Thread_local sw_pool *tls_pool;
static _Thread_local int tls_thread;

static inline uint32_t ticket_gen(uint64_t t)
{
    return (uint32_t)(t >> (NEXT_BITS + N_BITS));
}

static inline uint32_t ticket_n(uint64_t t)
{
    return (uint32_t)(t >> NEXT_BITS) & ((1u << N_BITS) - 1);
}

static inline uint32_t ticket_next(uint64_t t)
{
    return (uint32_t)t & ((1u << NEXT_BITS) - 1);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t expect)
{
    /* EAGAIN (value changed) and EINTR both just mean "look again". */
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/*
 * Claims and runs tasks of whatever round is current until one claim comes
 * back empty; reports the tasks run. Returns the gen of that empty claim.
 */
static uint32_t pool_work(sw_pool *p, int thread)
{
    uint32_t ran = 0;
    uint64_t t;
    for (;;) {
        t = atomic_fetch_add_explicit(&p->ticket, 1, memory_order_acq_rel);
        if (ticket_next(t) >= ticket_n(t))
            break;
        p->fn(p->ctx, p->base + (int)ticket_next(t), p->total, thread);
        ran++;
    }
    if (ran) {
        uint32_t now = atomic_fetch_add(&p->done, ran) + ran; /* seq_cst */
        if (now == ticket_n(t) && atomic_load(&p->caller_waiting))
            futex_wake(&p->done, 1);
    }
    return ticket_gen(t);
}

/* Spins, then sleeps, until the ticket's gen differs from seen or stop. */
static void worker_wait(sw_pool *p, uint32_t seen)
{
    uint64_t start = now_us();
    uint64_t spin = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
    for (unsigned i = 1;; i++) {
        if (ticket_gen(atomic_load_explicit(&p->ticket, memory_order_relaxed)) != seen ||
            atomic_load_explicit(&p->stop, memory_order_relaxed))
            return;
        if (atomic_load_explicit(&p->park, memory_order_relaxed) == (PARKED | seen))
            break;
        cpu_relax();
        if ((i & 127) == 0 && now_us() - start > spin)
            break;
    }
    uint32_t seq = atomic_load(&p->wake_seq);
    if (ticket_gen(atomic_load(&p->ticket)) != seen || atomic_load(&p->stop))
        return;
    atomic_fetch_add(&p->sleepers, 1);
    futex_wait(&p->wake_seq, seq); /* returns at once if wake_seq moved */
    atomic_fetch_sub(&p->sleepers, 1);
}

struct worker_arg {
    sw_pool *pool;
    int thread;
};

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    free(arg);
    sw_pool *p = wa.pool;
    tls_pool = p;
    tls_thread = wa.thread;
    uint32_t seen = 0; /* the pool starts at gen 0 with no tasks */
    for (;;) {
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if (ticket_gen(t) != seen)
            seen = pool_work(p, wa.thread);
        else
            worker_wait(p, seen);
    }
}

int sw_pool_default_threads(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int sw_pool_create(int n_threads, sw_pool **out, sw_err *err)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = sw_pool_default_threads();
    if (n_threads > SW_POOL_MAX_THREADS)
        return sw_errf(err, SW_EINVAL, "thread pool: %d threads requested, at most %d",
                       n_threads, SW_POOL_MAX_THREADS);
    sw_pool *p = aligned_alloc(CACHE_LINE, sizeof *p);
    if (!p)
        return sw_errf(err, SW_ENOMEM, "thread pool: out of memory");
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads;
    atomic_init(&p->spin_us, SW_POOL_SPIN_US);
    pthread_mutex_init(&p->run_lock, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads)
        goto nomem;
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa)
            goto nomem;
        *wa = (struct worker_arg){p, i};
        int rc = pthread_create(&p->threads[i], NULL, worker_main, wa);
        if (rc) {
            free(wa);
            sw_pool_destroy(p);
            return sw_errf(err, SW_ENOMEM, "thread pool: starting thread %d of %d: %s", i,
                           n_threads, strerror(rc));
        }
        p->n_started = i;
    }
    *out = p;
    return 0;
nomem:
    sw_pool_destroy(p);
    return sw_errf(err, SW_ENOMEM, "thread pool: out of memory");
}

void sw_pool_destroy(sw_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->wake_seq, 1);
    futex_wake(&p->wake_seq, INT_MAX);
    for (int i = 1; i <= p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->run_lock);
    free(p->threads);
    free(p);
}

void sw_pool_park(sw_pool *p)
{
    if (!p || p->n_threads == 1)
        return;
    uint32_t gen = ticket_gen(atomic_load_explicit(&p->ticket, memory_order_relaxed));
    atomic_store_explicit(&p->park, PARKED | gen, memory_order_relaxed);
}

void sw_pool_set_spin(sw_pool *p, unsigned us)
{
    if (p)
        atomic_store_explicit(&p->spin_us, us, memory_order_relaxed);
}

int sw_pool_sleeping(const sw_pool *p)
{
    return p ? (int)atomic_load((_Atomic uint32_t *)&p->sleepers) : 0;
}

int sw_pool_size(const sw_pool *p)
{
    return p ? p->n_threads : 1;
}

/* Waits until all n tasks of the current round are done. */
static void caller_wait(sw_pool *p, uint32_t n)
{
    uint64_t start = now_us();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&p->done, memory_order_acquire) == n)
            return;
        cpu_relax();
        if ((i & 127) == 0 && now_us() - start > CALLER_SPIN_US)
            break;
    }
    for (;;) {
        uint32_t d = atomic_load(&p->done);
        if (d == n)
            break;
        atomic_store(&p->caller_waiting, 1);
        futex_wait(&p->done, d);
        atomic_store(&p->caller_waiting, 0);
    }
}

/* One round: tasks base .. base+n-1 of total. */
static void pool_round(sw_pool *p, sw_pool_fn fn, void *ctx, int base, int n, int total)
{
    p->fn = fn;
    p->ctx = ctx;
    p->base = base;
    p->total = total;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_relaxed);
    uint64_t gen = (ticket_gen(t) + 1) & 0xffff;
    atomic_store_explicit(&p->ticket, (gen << (NEXT_BITS + N_BITS)) | ((uint64_t)n << NEXT_BITS),
                          memory_order_release);
    atomic_fetch_add(&p->wake_seq, 1);
    uint32_t sleeping = atomic_load(&p->sleepers);
    if (sleeping)
        futex_wake(&p->wake_seq, n - 1 < (int)sleeping ? n - 1 : (int)sleeping);
    pool_work(p, 0);
    caller_wait(p, (uint32_t)n);
}

void sw_pool_run(sw_pool *p, sw_pool_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0)
        return;
    if (!p || tls_pool == p) {
        /* No pool, or re-entered from one of its own tasks: run serially
         * as the thread we are. */
        int thread = p ? tls_thread : 0;
        for (int i = 0; i < n_tasks; i++)
            fn(ctx, i, n_tasks, thread);
        return;
    }
    pthread_mutex_lock(&p->run_lock); /* thread 0 is ours until unlock */
    sw_pool *saved_pool = tls_pool;
    int saved_thread = tls_thread;
    tls_pool = p;
    tls_thread = 0;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++)
            fn(ctx, i, n_tasks, 0);
    } else {
        for (int base = 0; base < n_tasks; base += SW_POOL_ROUND) {
            int n = n_tasks - base < SW_POOL_ROUND ? n_tasks - base : SW_POOL_ROUND;
            pool_round(p, fn, ctx, base, n, n_tasks);
        }
    }
    tls_pool = saved_pool;
    tls_thread = saved_thread;
    pthread_mutex_unlock(&p->run_lock);
}
