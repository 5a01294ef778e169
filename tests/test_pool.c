/* test_pool.c — the parallel-for thread pool (src/util/pool.h). */
#include "test.h"
#include "util/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* Counts how often each task ran and checks the arguments it got. */
struct count_ctx {
    _Atomic int *hits; /* [n_tasks] */
    int n_tasks;
    int n_threads;
    _Atomic int bad; /* calls with out-of-range arguments */
    _Atomic int thread_used[64];
};

static void count_task(void *arg, int task, int n_tasks, int thread)
{
    struct count_ctx *c = arg;
    if (task < 0 || task >= c->n_tasks || n_tasks != c->n_tasks || thread < 0 ||
        thread >= c->n_threads) {
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 64)
        atomic_store(&c->thread_used[thread], 1);
}

/* Runs n_tasks on pool; returns 0 if every task ran exactly once. */
static int run_and_count(sw_pool *pool, int n_tasks, char *why, size_t whylen)
{
    struct count_ctx c = {0};
    c.n_tasks = n_tasks;
    c.n_threads = sw_pool_size(pool);
    c.hits = calloc((size_t)(n_tasks > 0 ? n_tasks : 1), sizeof *c.hits);
    sw_pool_run(pool, count_task, &c, n_tasks);
    int rc = 0;
    if (atomic_load(&c.bad)) {
        snprintf(why, whylen, "%d calls with bad arguments", atomic_load(&c.bad));
        rc = -1;
    }
    for (int i = 0; i < n_tasks && !rc; i++)
        if (atomic_load(&c.hits[i]) != 1) {
            snprintf(why, whylen, "task %d of %d ran %d times", i, n_tasks,
                     atomic_load(&c.hits[i]));
            rc = -1;
        }
    free(c.hits);
    return rc;
}

TEST(pool_default_threads_positive)
{
    CHECK(sw_pool_default_threads() >= 1);
    sw_pool *p = NULL;
    sw_err e = {0};
    CHECK_EQ(sw_pool_create(0, &p, &e), 0);
    CHECK_EQ(sw_pool_size(p), sw_pool_default_threads());
    sw_pool_destroy(p);
    CHECK_EQ(sw_pool_size(NULL), 1);
}

TEST(pool_rejects_too_many_threads)
{
    sw_pool *p = (sw_pool *)1;
    sw_err e = {0};
    CHECK_EQ(sw_pool_create(SW_POOL_MAX_THREADS + 1, &p, &e), SW_EINVAL);
    CHECK(p == NULL);
    CHECK_HAS(e.msg, "threads");
}

TEST(pool_every_task_once_various_sizes)
{
    static const int threads[] = {1, 2, 3, 4, 8};
    static const int tasks[] = {0, 1, 2, 3, 5, 7, 8, 64, 1000, 4099};
    char why[128];
    for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
        sw_pool *p = NULL;
        sw_err e = {0};
        CHECKF(sw_pool_create(threads[i], &p, &e) == 0, "%s", e.msg);
        CHECK_EQ(sw_pool_size(p), threads[i]);
        for (size_t j = 0; j < sizeof tasks / sizeof *tasks; j++)
            CHECKF(run_and_count(p, tasks[j], why, sizeof why) == 0, "%d threads: %s",
                   threads[i], why);
        sw_pool_destroy(p);
    }
}

TEST(pool_null_runs_serially_in_order)
{
    char why[128];
    CHECKF(run_and_count(NULL, 17, why, sizeof why) == 0, "%s", why);
}

/* Many back-to-back small jobs: the case the pool is built for. A lost
 * wake-up or a task of one job leaking into the next shows up here. */
struct sum_ctx {
    _Atomic long sum;
    int job;
};

static void sum_task(void *arg, int task, int n_tasks, int thread)
{
    struct sum_ctx *c = arg;
    volatile int busy = 0; /* a little work, so that workers get a share */
    for (int i = 0; i < 300; i++)
        busy = busy + i;
    atomic_fetch_add(&c->sum, (long)c->job * 1000 + task + 0 * busy);
}

TEST(pool_many_rapid_dispatches)
{
    for (int nt = 2; nt <= 3; nt++) {
        sw_pool *p = NULL;
        CHECK_EQ(sw_pool_create(nt, &p, NULL), 0);
        for (int job = 0; job < 20000; job++) {
            struct sum_ctx c = {0};
            c.job = job;
            int n = 1 + job % 9;
            sw_pool_run(p, sum_task, &c, n);
            long want = (long)job * 1000 * n + (long)n * (n - 1) / 2;
            CHECKF(atomic_load(&c.sum) == want, "threads %d job %d: sum %ld, want %ld", nt,
                   job, atomic_load(&c.sum), want);
        }
        sw_pool_destroy(p);
    }
}

/* With gaps between jobs the workers go to sleep; they must wake again. */
TEST(pool_survives_sleeping_workers)
{
    sw_pool *p = NULL;
    CHECK_EQ(sw_pool_create(3, &p, NULL), 0);
    char why[128];
    for (int round = 0; round < 5; round++) {
        struct timespec ts = {0, 3 * SW_POOL_SPIN_US * 1000L};
        nanosleep(&ts, NULL);
        CHECKF(run_and_count(p, 100, why, sizeof why) == 0, "round %d: %s", round, why);
    }
    sw_pool_destroy(p);
}

/* Workers do take part: with slow tasks and several threads, some task runs
 * on a thread other than the caller. (Not a timing assertion: a task waits
 * until another thread has started one, or gives up after a long while.) */
struct meet_ctx {
    _Atomic int started[64];
    int n_threads;
};

static void meet_task(void *arg, int task, int n_tasks, int thread)
{
    struct meet_ctx *c = arg;
    atomic_store(&c->started[thread], 1);
    time_t give_up = time(NULL) + 30;
    while (time(NULL) < give_up) {
        for (int t = 0; t < c->n_threads; t++)
            if (t != thread && atomic_load(&c->started[t]))
                return;
        sched_yield();
    }
}

TEST(pool_workers_take_part)
{
    sw_pool *p = NULL;
    CHECK_EQ(sw_pool_create(2, &p, NULL), 0);
    struct meet_ctx c = {0};
    c.n_threads = 2;
    sw_pool_run(p, meet_task, &c, 2);
    sw_pool_destroy(p);
    CHECK(atomic_load(&c.started[0]) && atomic_load(&c.started[1]));
}

/* A task that calls sw_pool_run on its own pool: runs inline, no deadlock. */
struct nest_ctx {
    sw_pool *pool;
    _Atomic int inner_hits[16 * 8];
    _Atomic int wrong_thread;
};

struct inner_ctx {
    struct nest_ctx *outer;
    int outer_task;
    int outer_thread;
};

static void inner_task(void *arg, int task, int n_tasks, int thread)
{
    struct inner_ctx *ic = arg;
    if (thread != ic->outer_thread)
        atomic_fetch_add(&ic->outer->wrong_thread, 1);
    atomic_fetch_add(&ic->outer->inner_hits[ic->outer_task * 8 + task], 1);
}

static void outer_task(void *arg, int task, int n_tasks, int thread)
{
    struct nest_ctx *c = arg;
    struct inner_ctx ic = {c, task, thread};
    sw_pool_run(c->pool, inner_task, &ic, 8);
}

TEST(pool_nested_run_is_serial_and_safe)
{
    sw_pool *p = NULL;
    CHECK_EQ(sw_pool_create(3, &p, NULL), 0);
    struct nest_ctx c = {0};
    c.pool = p;
    sw_pool_run(p, outer_task, &c, 16);
    sw_pool_destroy(p);
    CHECK_EQ(atomic_load(&c.wrong_thread), 0);
    for (int i = 0; i < 16 * 8; i++)
        CHECKF(atomic_load(&c.inner_hits[i]) == 1, "inner task %d ran %d times", i,
               atomic_load(&c.inner_hits[i]));
}

/* Two outside threads sharing one pool are serialized, both complete. */
struct share_arg {
    sw_pool *pool;
    int failures;
};

static void *share_main(void *arg)
{
    struct share_arg *a = arg;
    char why[128];
    for (int i = 0; i < 2000; i++)
        a->failures += run_and_count(a->pool, 1 + i % 13, why, sizeof why) != 0;
    return NULL;
}

TEST(pool_concurrent_callers_serialized)
{
    sw_pool *p = NULL;
    CHECK_EQ(sw_pool_create(2, &p, NULL), 0);
    struct share_arg a = {p, 0}, b = {p, 0};
    pthread_t ta, tb;
    CHECK_EQ(pthread_create(&ta, NULL, share_main, &a), 0);
    CHECK_EQ(pthread_create(&tb, NULL, share_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    sw_pool_destroy(p);
    CHECK_EQ(a.failures, 0);
    CHECK_EQ(b.failures, 0);
}

TEST(pool_create_destroy_repeatedly)
{
    for (int i = 0; i < 50; i++) {
        sw_pool *p = NULL;
        CHECK_EQ(sw_pool_create(1 + i % 4, &p, NULL), 0);
        if (i % 2) {
            char why[128];
            CHECKF(run_and_count(p, 10, why, sizeof why) == 0, "%s", why);
        }
        sw_pool_destroy(p);
    }
    sw_pool_destroy(NULL);
}

/* Polls cond(pool) every millisecond for up to 30 s. */
static int wait_until(sw_pool *p, int want_sleeping)
{
    for (int i = 0; i < 30000; i++) {
        if (sw_pool_sleeping(p) == want_sleeping)
            return 1;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* With a spin far longer than the test, idle workers only sleep because
 * sw_pool_park told them to; the next job wakes them and runs correctly. */
TEST(pool_park_sends_spinning_workers_to_sleep)
{
    sw_pool *p = NULL;
    CHECK_EQ(sw_pool_create(3, &p, NULL), 0);
    char why[128];
    CHECKF(run_and_count(p, 50, why, sizeof why) == 0, "%s", why); /* wakes the workers */
    sw_pool_set_spin(p, 600u * 1000 * 1000);                      /* ten minutes */
    for (int round = 0; round < 3; round++) {
        CHECKF(run_and_count(p, 50, why, sizeof why) == 0, "round %d: %s", round, why);
        CHECK(wait_until(p, 0)); /* a worker still leaving its futex wait */
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        CHECK_EQ(sw_pool_sleeping(p), 0); /* spinning, not asleep */
        sw_pool_park(p);
        CHECKF(wait_until(p, 2), "round %d: %d of 2 workers asleep", round,
               sw_pool_sleeping(p));
    }
    sw_pool_park(NULL); /* no-ops */
    sw_pool *one = NULL;
    CHECK_EQ(sw_pool_create(1, &one, NULL), 0);
    sw_pool_park(one);
    CHECK_EQ(sw_pool_sleeping(one), 0);
    sw_pool_destroy(one);
    sw_pool_destroy(p); /* wakes the sleepers to stop them */
}
