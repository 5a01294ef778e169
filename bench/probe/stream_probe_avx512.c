/*
 * stream_probe_avx512.c — how fast the cores read memory in one stream or
 * two, with or without arithmetic between the loads (make stream-probe).
 *
 *   stream-probe [--mib N] [--threads N] [--passes N]
 *
 * Each thread reads its share of an N MiB buffer (default 2048, huge pages
 * asked for) in 64-byte loads, with W dependent vpdpbusd per cache line
 * standing for a kernel's arithmetic. "One stream" walks the share from
 * front to back; "two streams D apart" walks, in turns of 1 KiB, the two
 * halves of each 2D-byte block of it (D = half: the two halves of the
 * whole share). Prints GB/s, best of --passes passes, for W = 0 and 4 and
 * several D: the table in bench/RESULTS.md ("two weight streams per
 * thread"), where it shows that a plain one-stream read, the decode's
 * bound, is not the ceiling of every machine.
 *
 * A diagnostic, not part of make bench; needs AVX-512 VNNI.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define TURN 1024 /* bytes read from one stream before the other */
#define MAX_THREADS 64

typedef struct probe {
    const uint8_t *buf;
    size_t share;   /* bytes per thread, a multiple of 2 * TURN */
    size_t apart;   /* two streams this far apart; 0: one stream */
    int work;       /* vpdpbusd per cache line */
    int n_threads;
} probe;

typedef struct worker {
    const probe *p;
    int index;
    uint64_t sum;
} worker;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Reads bytes (a multiple of 256) at p into acc[4], W vpdpbusd per line. */
static inline void read_run(const uint8_t *p, size_t bytes, int work, __m512i acc[4])
{
    const __m512i k = _mm512_set1_epi8(3);
    for (size_t o = 0; o < bytes; o += 256)
        for (int l = 0; l < 4; l++) {
            __m512i v = _mm512_load_si512(p + o + 64 * l);
            for (int w = 0; w < work; w++)
                v = _mm512_dpbusd_epi32(v, k, v);
            acc[l] = _mm512_xor_si512(acc[l], v);
        }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const probe *p = w->p;
    const uint8_t *base = p->buf + (size_t)w->index * p->share;
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512()};
    if (!p->apart) {
        read_run(base, p->share, p->work, acc);
    } else {
        size_t block = 2 * p->apart;
        for (size_t b = 0; b + block <= p->share; b += block)
            for (size_t o = 0; o < p->apart; o += TURN) {
                read_run(base + b + o, TURN, p->work, acc);
                read_run(base + b + p->apart + o, TURN, p->work, acc);
            }
    }
    __m512i s = _mm512_xor_si512(_mm512_xor_si512(acc[0], acc[1]), _mm512_xor_si512(acc[2], acc[3]));
    w->sum = (uint64_t)_mm512_reduce_add_epi64(s);
    return NULL;
}

/* GB/s of one pass over every thread's share (bytes actually read). */
static double one_pass(const probe *p)
{
    pthread_t t[MAX_THREADS];
    worker w[MAX_THREADS];
    double t0 = now_s();
    for (int i = 0; i < p->n_threads; i++) {
        w[i] = (worker){p, i, 0};
        if (pthread_create(&t[i], NULL, worker_main, &w[i]))
            return 0;
    }
    uint64_t sink = 0;
    for (int i = 0; i < p->n_threads; i++) {
        pthread_join(t[i], NULL);
        sink ^= w[i].sum;
    }
    double dt = now_s() - t0;
    size_t per = p->apart ? p->share / (2 * p->apart) * (2 * p->apart) : p->share;
    return sink == 42 ? 0 : (double)per * p->n_threads / dt / 1e9; /* keeps the sums alive */
}

static double best_of(const probe *p, int passes)
{
    double best = 0;
    for (int i = 0; i < passes; i++) {
        double g = one_pass(p);
        best = g > best ? g : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    long mib = 2048, threads = 2, passes = 4;
    for (int i = 1; i < argc; i++) {
        long *dst = !strcmp(argv[i], "--mib") ? &mib : !strcmp(argv[i], "--threads") ? &threads
                    : !strcmp(argv[i], "--passes") ? &passes : NULL;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "usage: stream-probe [--mib N] [--threads N] [--passes N]\n");
            return 2;
        }
        *dst = atol(argv[++i]);
    }
    if (mib < 64 || threads < 1 || threads > MAX_THREADS || passes < 1) {
        fprintf(stderr, "stream-probe: --mib >= 64, --threads 1..%d, --passes >= 1\n", MAX_THREADS);
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vnni")) {
        fprintf(stderr, "stream-probe: this CPU has no AVX-512 VNNI\n");
        return 1;
    }
    size_t bytes = (size_t)mib << 20;
    uint8_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        fprintf(stderr, "stream-probe: cannot map %ld MiB\n", mib);
        return 1;
    }
    madvise(buf, bytes, MADV_HUGEPAGE);
    memset(buf, 0x5a, bytes);
    probe p = {buf, bytes / (size_t)threads / (2 * TURN) * (2 * TURN), 0, 0, (int)threads};
    static const size_t apart_kib[] = {8, 64, 1024, 0}; /* 0: half the share */
    printf("stream-probe: %ld MiB, %ld thread(s), best of %ld passes, GB/s\n\n", mib, threads,
           passes);
    printf("| W | one stream | two, 8 KiB apart | two, 64 KiB | two, 1 MiB | two, half the share |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    for (int work = 0; work <= 4; work += 4) {
        p.work = work;
        p.apart = 0;
        printf("| %d | %.1f", work, best_of(&p, (int)passes));
        for (size_t i = 0; i < sizeof apart_kib / sizeof *apart_kib; i++) {
            p.apart = apart_kib[i] ? apart_kib[i] << 10 : p.share / 2 / TURN * TURN;
            printf(" | %.1f", best_of(&p, (int)passes));
        }
        printf(" |\n");
        fflush(stdout);
    }
    munmap(buf, bytes);
    return 0;
}
