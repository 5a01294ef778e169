/*
 * pool.h — a thread pool for the engine's hot loop: parallel-for, nothing else.
 *
 * One decode step issues hundreds of small parallel jobs (a 2048x768 expert
 * matvec is a few microseconds of work), so the cost that matters is the
 * latency of handing a job out and learning that it is finished, not
 * throughput of a queue. The design follows from that:
 *
 *   - A job is (fn, ctx, n_tasks). sw_pool_run() publishes it, the calling
 *     thread works on it too, and the call returns when every task is done.
 *     Tasks are handed out one at a time from an atomic counter, so a thread
 *     that is slow (preempted, sharing its core) simply takes fewer tasks.
 *
 *   - Idle workers spin for a short while (SW_POOL_SPIN_US) watching for a
 *     new job, then sleep on a futex. Back-to-back jobs therefore start
 *     within a cache-line transfer, and an idle engine costs no CPU.
 *
 *   - The caller waits for tasks, never for threads: a worker that is asleep
 *     or descheduled when a job is posted does not delay it; whoever is
 *     running takes the work.
 *
 *   - An owner about to block for longer than the spin (an expert read from
 *     disk) calls sw_pool_park(), and the spinning workers go to sleep at
 *     once: while the model waits on the SSD, the pool leaves the CPUs to
 *     the reader and to the machine's other programs.
 *
 * Threads are numbered 0..size-1; the calling thread is 0. fn receives its
 * thread number, so callers can index per-thread scratch space.
 *
 * Invariants and rules of use:
 *   - Every task index in [0, n_tasks) runs exactly once per sw_pool_run.
 *   - Everything the caller wrote before sw_pool_run is visible to the
 *     tasks, and everything the tasks wrote is visible to the caller after.
 *   - Re-entry is safe, not parallel: a task that calls sw_pool_run on its
 *     own pool gets the inner job run serially, in task order, on its own
 *     thread and with its own thread number (so it must not hand that
 *     number's scratch space to the inner job while it uses it itself).
 *     It never deadlocks.
 *   - Concurrent callers are serialized: a second thread calling
 *     sw_pool_run while the pool is busy waits for the first job to end.
 *     The pool is meant for one owner thread, though.
 *   - sw_pool_destroy must not race with sw_pool_run.
 *
 * Linux only (futex, sched_getaffinity).
 */
#ifndef SW_POOL_H
#define SW_POOL_H

#include "util/err.h"

typedef struct sw_pool sw_pool;

/* One task of a job: task in [0, n_tasks), thread in [0, sw_pool_size). */
typedef void (*sw_pool_fn)(void *ctx, int task, int n_tasks, int thread);

/* How long an idle worker spins before it sleeps. */
#define SW_POOL_SPIN_US 200
/* Upper bound on threads per pool. */
#define SW_POOL_MAX_THREADS 1024

/* Starts n_threads - 1 workers (the caller is the n-th). n_threads <= 0
 * means sw_pool_default_threads(). */
int sw_pool_create(int n_threads, sw_pool **out, sw_err *err);
/* Stops and joins the workers; NULL is a no-op. */
void sw_pool_destroy(sw_pool *pool);

/* Runs fn for every task in [0, n_tasks) and returns when all are done.
 * pool may be NULL: the tasks then run in order on the calling thread. */
void sw_pool_run(sw_pool *pool, sw_pool_fn fn, void *ctx, int n_tasks);

/* The owner will not post a job for a while: workers idle since its last
 * job stop spinning and sleep until the next one. Cheap (one store); NULL
 * and a pool of one thread are no-ops. Call it from the owner thread. */
void sw_pool_park(sw_pool *pool);

/* How long idle workers spin before they sleep, microseconds (default
 * SW_POOL_SPIN_US). */
void sw_pool_set_spin(sw_pool *pool, unsigned us);

/* Workers asleep right now (for tests and diagnostics). */
int sw_pool_sleeping(const sw_pool *pool);

/* Threads that take part in a job, the caller included (1 for NULL). */
int sw_pool_size(const sw_pool *pool);

/* CPUs this process may run on (its affinity mask), at least 1. */
int sw_pool_default_threads(void);

#endif
