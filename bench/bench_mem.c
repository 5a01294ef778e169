/* bench_mem.c — the benchmark's buffer and its read-bandwidth measurement. */
#include "bench.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#define READ_CHUNK (4u << 20) /* bytes per parallel-for task */

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_best_add(bench_best *b, double rate, int clean)
{
    b->n++;
    if (rate > b->any)
        b->any = rate;
    if (clean) {
        b->n_clean++;
        if (rate > b->clean)
            b->clean = rate;
    }
}

void bench_best_merge(bench_best *into, const bench_best *from)
{
    into->n += from->n;
    into->n_clean += from->n_clean;
    if (from->any > into->any)
        into->any = from->any;
    if (from->clean > into->clean)
        into->clean = from->clean;
}

double bench_best_rate(const bench_best *b)
{
    return b->n_clean ? b->clean : b->any;
}

/* Nanoseconds the process's threads have spent runnable but waiting for a
 * CPU (the second field of each /proc/self/task/TID/schedstat), or -1. */
static long long run_delay_ns(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[64];
        unsigned long long on_cpu, waited;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread just exited */
        if (fscanf(f, "%llu %llu", &on_cpu, &waited) == 2)
            sum += (long long)waited;
        else
            sum = -1;
        fclose(f);
        if (sum < 0)
            break;
    }
    closedir(d);
    return sum;
}

static long preemptions(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_nivcsw : -1;
}

void bench_timer_start(bench_timer *t)
{
    long p = preemptions();
    /* a preemption since the last sample ended: that thread may still wait */
    t->tainted = t->started && p != t->preempt1;
    t->preempt0 = p;
    t->delay0 = run_delay_ns();
    t->started = 1;
    t->t0 = bench_now();
}

/*
 * Clean: no thread of ours was preempted in this sample or the one before
 * (a thread preempted then may have waited into this one, and its wait is
 * only booked when it runs again), and our threads' booked wait for a CPU
 * stayed under 2% of the sample. Wake-up latency on an idle machine is a few
 * µs; losing a core to another process costs a time slice, milliseconds.
 */
double bench_timer_stop(bench_timer *t, int *clean)
{
    double dt = bench_now() - t->t0;
    long long delay = run_delay_ns();
    long p = preemptions();
    int preempted = p < 0 || p != t->preempt0;
    *clean = !preempted && !t->tainted && t->delay0 >= 0 && delay >= 0 &&
             (double)(delay - t->delay0) < 0.02 * dt * 1e9;
    t->preempt1 = p;
    if (preempted)
        t->preempt1 = -2; /* taints the next sample too */
    return dt;
}

int bench_want_more(const bench_best *b, int done, int planned, double spent, double budget)
{
    if (done < planned && spent < budget)
        return 1; /* the planned passes, unless they are slow */
    return b->n_clean < BENCH_MIN_CLEAN && spent < budget + BENCH_EXTRA_BUDGET_S;
}

void *bench_buffer_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* fewer TLB misses; harmless if refused */
#endif
    memset(p, 0x5a, bytes);
    return p;
}

void bench_buffer_free(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

static uint64_t read_sum_scalar(const void *p, size_t bytes)
{
    const uint64_t *v = p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < bytes / 8; i += 4) {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
    }
    return a0 + a1 + a2 + a3;
}

typedef uint64_t (*read_fn)(const void *, size_t);

static read_fn pick_read(const char **name)
{
    switch (quant_cpu_isa()) {
    case QUANT_ISA_AVX512: *name = "avx512"; return bench_read_sum_avx512;
    case QUANT_ISA_AVX2:
    case QUANT_ISA_AVX2_VNNI: *name = "avx2"; return bench_read_sum_avx2;
    default: *name = "scalar"; return read_sum_scalar;
    }
}

const char *bench_read_kernel_name(void)
{
    const char *name;
    pick_read(&name);
    return name;
}

struct read_job {
    read_fn fn;
    const uint8_t *buf;
    size_t bytes;
    _Atomic uint64_t sink;
};

static void read_task(void *arg, int task, int n_tasks, int thread)
{
    struct read_job *j = arg;
    size_t off = (size_t)task * READ_CHUNK;
    size_t len = j->bytes - off < READ_CHUNK ? j->bytes - off : READ_CHUNK;
    uint64_t s = j->fn(j->buf + off, len & ~(size_t)255);
    atomic_fetch_add_explicit(&j->sink, s, memory_order_relaxed);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_read_once(sw_pool *pool, const void *buf, size_t bytes, int *clean)
{
    const char *name;
    struct read_job j = {.fn = pick_read(&name), .buf = buf, .bytes = bytes};
    bench_timer t = {0};
    bench_timer_start(&t);
    sw_pool_run(pool, read_task, &j, (int)((bytes + READ_CHUNK - 1) / READ_CHUNK));
    double dt = bench_timer_stop(&t, clean);
    return atomic_load(&j.sink) == 42 ? 0 : (double)bytes / dt; /* the test keeps the sums alive */
}

void bench_read_bandwidth(sw_pool *pool, const void *buf, size_t bytes, int reps,
                          bench_best *best)
{
    const char *name;
    struct read_job j = {.fn = pick_read(&name)};
    size_t seg = bytes < BENCH_SEGMENT_BYTES ? bytes : BENCH_SEGMENT_BYTES;
    int n_segs = (int)(bytes / seg);
    int n_tasks = (int)((seg + READ_CHUNK - 1) / READ_CHUNK);
    bench_best b = {0};
    double spent = 0;
    j.bytes = seg;
    j.buf = buf;
    sw_pool_run(pool, read_task, &j, n_tasks); /* warm-up */
    bench_timer t = {0};
    for (int k = 0; bench_want_more(&b, k, reps * n_segs, spent, 1.0); k++) {
        int clean;
        j.buf = (const uint8_t *)buf + (size_t)(k % n_segs) * seg;
        bench_timer_start(&t);
        sw_pool_run(pool, read_task, &j, n_tasks);
        double dt = bench_timer_stop(&t, &clean);
        spent += dt;
        bench_best_add(&b, (double)seg / dt, clean);
    }
    if (atomic_load(&j.sink) == 42) /* practically never; keeps the sums alive */
        b.any += 1e-9;
    bench_best_merge(best, &b);
}
