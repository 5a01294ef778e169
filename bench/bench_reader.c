/*
 * bench_reader.c — how fast the reader streams expert-sized reads from the
 * disk: random reads of 1.5 MiB and 4.5 MiB (expert slices of the size of
 * Qwen3-30B-A3B's and Mixtral's at 4-5 bits per weight), at 32-byte aligned
 * offsets as in a GGUF file, with 1, 4, 16 and 64 reads in flight, through
 * io_uring and through the pread pool, with O_DIRECT; and, as the baseline
 * every streaming number is compared with, the same kind of reads as memcpy
 * from a plain mmap of the file, and through the page cache (buffered
 * io_uring). No range is read twice in one run (see struct picker).
 *
 * The test file is written once with O_DIRECT (so it is not left in the page
 * cache) from a fixed-seed generator (so no layer below can compress or
 * dedupe it). Before each page-cache run the caches are dropped if this
 * process may (root: /proc/sys/vm/drop_caches); the report says whether it
 * could. O_DIRECT runs do not touch the page cache, but a virtual disk may
 * still be cached by its host: the report cannot see that, so read the
 * numbers as this machine's, not the SSD's.
 *
 *   int bench_reader(FILE *md);   markdown section to md; 0, or -1
 *
 * Environment: SPILLWAY_BENCH_READ_FILE (default
 * /var/tmp/spillway-bench-read.dat), SPILLWAY_BENCH_READ_MIB (file size,
 * default 4096), SPILLWAY_BENCH_READ_SECONDS (per cell, default 1; a cell
 * also ends once it has read every slot of the file once),
 * SPILLWAY_BENCH_READ_KEEP=1 (keep the file for the next run).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/reader.h"

int bench_reader(FILE *md);

#define N_QD 4
#define N_SIZES 2
#define WRITE_CHUNK ((size_t)8 << 20)

static const int k_qd[N_QD] = {1, 4, 16, 64};
static const size_t k_sizes[N_SIZES] = {(size_t)3 << 19, (size_t)9 << 19}; /* 1.5, 4.5 MiB */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double env_num(const char *name, double dflt)
{
    const char *v = getenv(name);
    double x = v && *v ? atof(v) : 0;
    return x > 0 ? x : dflt;
}

/* Drops the page cache if allowed; 1 if it did. */
static int drop_caches(void)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int ok = write(fd, "3", 1) == 1;
    close(fd);
    return ok;
}

/* Writes bytes of generated data to path with O_DIRECT (buffered + fsync
 * where refused), unless a file that big is there already. Returns the
 * write speed in GB/s, 0 if reused, or -1. */
static double make_file(const char *path, uint64_t bytes)
{
    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size >= bytes)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
    if (fd < 0)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint64_t *buf = aligned_alloc(4096, WRITE_CHUNK);
    if (fd < 0 || !buf) {
        free(buf);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull;
    double t0 = now_s();
    int ok = 1;
    for (uint64_t done = 0; ok && done < bytes; done += WRITE_CHUNK) {
        for (size_t i = 0; i < WRITE_CHUNK / 8; i++)
            buf[i] = rng(&s);
        ok = write(fd, buf, WRITE_CHUNK) == (ssize_t)WRITE_CHUNK;
    }
    ok = ok && fsync(fd) == 0;
    double secs = now_s() - t0;
    close(fd);
    free(buf);
    return ok ? (double)bytes / secs / 1e9 : -1;
}

/* Random ranges that never repeat within a run, so that a page-cache run
 * cannot be served from what it read earlier: the file is cut into slots
 * (len rounded up to a page, plus a page of slack), visited in a shuffled
 * order, each read at a random 32-byte aligned offset inside its slot. */
struct picker {
    uint32_t *order;
    uint64_t n, next, stride, s;
    size_t len;
};

static int picker_init(struct picker *p, uint64_t file_size, size_t len, uint64_t seed)
{
    p->stride = ((len + 4095) & ~(uint64_t)4095) + 4096;
    p->n = file_size / p->stride;
    p->next = 0;
    p->s = seed | 1;
    p->len = len;
    p->order = malloc(p->n * sizeof *p->order);
    if (!p->order)
        return -1;
    for (uint64_t i = 0; i < p->n; i++)
        p->order[i] = (uint32_t)i;
    for (uint64_t i = p->n; i > 1; i--) {
        uint64_t j = rng(&p->s) % i;
        uint32_t t = p->order[i - 1];
        p->order[i - 1] = p->order[j];
        p->order[j] = t;
    }
    return 0;
}

/* The next offset, or UINT64_MAX when every slot has been read. */
static uint64_t picker_next(struct picker *p)
{
    if (p->next >= p->n)
        return UINT64_MAX;
    uint64_t slack = (p->stride - p->len) / 32;
    return p->order[p->next++] * p->stride + 32 * (rng(&p->s) % slack);
}

struct cell {
    double gbps, p50_ms, p99_ms;
    int ok;
};

/* Keeps qd random reads of len bytes in flight for secs seconds (or until
 * every slot of the file has been read once). */
static void run_cell(reader_backend be, const reader_file *f, size_t len, int qd, double secs,
                     struct cell *c)
{
    reader_opts o = {.backend = be, .depth = qd, .prefetch_depth = qd, .max_requests = qd};
    reader *r = NULL;
    struct picker pk = {0};
    c->ok = 0;
    if (reader_open(&o, &r, NULL) != 0 || picker_init(&pk, f->size, len, 0x5eed + (uint64_t)qd))
        goto done;
    size_t cap = (reader_slot_bytes(f, len) + 4095) & ~(size_t)4095;
    char *bufs = aligned_alloc(4096, cap * (size_t)qd);
    uint64_t bytes = 0, off;
    int live = 0, failed = 0;
    reader_result out[64];
    if (!bufs)
        goto done;
    memset(bufs, 0, cap * (size_t)qd); /* no page faults while timing */
    double t0 = now_s(), stop = t0 + secs;
    for (int i = 0; i < qd && (off = picker_next(&pk)) != UINT64_MAX; i++, live++)
        failed |= reader_submit(r, f, off, len, bufs + (size_t)i * cap, cap, (uint64_t)i,
                                READER_DEMAND, NULL) != 0;
    while (live > 0 && !failed) {
        int n = reader_poll(r, out, 64, 1, NULL);
        failed |= n < 0;
        int more = now_s() < stop;
        for (int k = 0; k < n; k++) {
            failed |= out[k].rc != 0;
            bytes += out[k].len;
            live--;
            if (more && !failed && (off = picker_next(&pk)) != UINT64_MAX) {
                size_t i = (size_t)out[k].tag;
                failed |= reader_submit(r, f, off, len, bufs + i * cap, cap, out[k].tag,
                                        READER_DEMAND, NULL) != 0;
                live++;
            }
        }
    }
    double t = now_s() - t0;
    reader_stats st;
    reader_stats_get(r, &st);
    c->gbps = (double)bytes / t / 1e9;
    c->p50_ms = reader_stats_quantile(&st, 0.50) / 1000;
    c->p99_ms = reader_stats_quantile(&st, 0.99) / 1000;
    c->ok = !failed;
    free(bufs);
done:
    reader_close(r);
    free(pk.order);
}

/* The baseline: memcpy of the same kind of ranges out of a plain mmap. */
static void run_mmap(const char *path, uint64_t size, size_t len, double secs, struct cell *c)
{
    c->ok = 0;
    struct picker pk = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *map = fd >= 0 ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    char *dst = malloc(len);
    if (map != MAP_FAILED && dst && picker_init(&pk, size, len, 0x5eed) == 0) {
        memset(dst, 0, len);
        uint64_t bytes = 0, off;
        double t0 = now_s(), t;
        while ((t = now_s() - t0) < secs && (off = picker_next(&pk)) != UINT64_MAX) {
            memcpy(dst, (const char *)map + off, len);
            bytes += len;
        }
        c->gbps = (double)bytes / t / 1e9;
        c->p50_ms = c->p99_ms = 0;
        c->ok = 1;
    }
    if (map != MAP_FAILED)
        munmap(map, size);
    if (fd >= 0)
        close(fd);
    free(dst);
    free(pk.order);
}

static void print_row(FILE *md, const char *engine, size_t len, const struct cell *c, int n,
                      int lat)
{
    fprintf(md, "| %s | %.1f MiB |", engine, (double)len / (1 << 20));
    for (int q = 0; q < N_QD; q++) {
        if (q >= n)
            fprintf(md, " |");
        else if (!c[q].ok)
            fprintf(md, " failed |");
        else if (lat)
            fprintf(md, " %.2f / %.2f |", c[q].p50_ms, c[q].p99_ms);
        else
            fprintf(md, " %.2f |", c[q].gbps);
    }
    fprintf(md, "\n");
}

int bench_reader(FILE *md)
{
    const char *path = getenv("SPILLWAY_BENCH_READ_FILE");
    if (!path || !*path)
        path = "/var/tmp/spillway-bench-read.dat";
    uint64_t size = (uint64_t)env_num("SPILLWAY_BENCH_READ_MIB", 4096) << 20;
    double secs = env_num("SPILLWAY_BENCH_READ_SECONDS", 1);
    double wr = make_file(path, size);
    if (wr < 0) {
        fprintf(md, "## Expert reads\n\ncannot write %s: %s\n\n", path, strerror(errno));
        return -1;
    }
    reader_file fd, fb;
    sw_err e = {0};
    if (reader_file_open(&fd, path, 0, &e) != 0 ||
        reader_file_open(&fb, path, READER_FILE_BUFFERED, &e) != 0) {
        fprintf(md, "## Expert reads\n\n%s\n\n", e.msg);
        return -1;
    }
    int dropped = drop_caches();
    reader *probe = NULL;
    reader_open(NULL, &probe, NULL);
    fprintf(md, "## Expert reads (store/reader)\n\n");
    fprintf(md, "Random reads at 32-byte aligned offsets of a %.1f GiB file (%s%s), %.1f s per "
            "cell. Direct reads: %s. Reader: %s. Page cache dropped before the page-cache "
            "runs: %s.\n\n", (double)size / (1 << 30), path,
            wr > 0 ? "" : ", reused", secs,
            fd.direct ? "O_DIRECT" : fd.why, probe ? reader_mode(probe) : "?",
            dropped ? "yes" : "no (not permitted): they may read from RAM");
    if (wr > 0)
        fprintf(md, "Writing the file with O_DIRECT: %.2f GB/s.\n\n", wr);
    reader_close(probe);

    struct cell c[2][N_SIZES][N_QD], cm[N_SIZES], cb[N_SIZES][N_QD];
    int rc = 0;
    for (int z = 0; z < N_SIZES; z++)
        for (int q = 0; q < N_QD; q++) {
            drop_caches();
            run_cell(READER_URING, &fd, k_sizes[z], k_qd[q], secs, &c[0][z][q]);
            drop_caches();
            run_cell(READER_POOL, &fd, k_sizes[z], k_qd[q], secs, &c[1][z][q]);
            drop_caches();
            run_cell(READER_URING, &fb, k_sizes[z], k_qd[q], secs, &cb[z][q]);
            rc |= !c[0][z][q].ok || !c[1][z][q].ok || !cb[z][q].ok;
        }
    for (int z = 0; z < N_SIZES; z++) {
        drop_caches();
        run_mmap(path, size, k_sizes[z], secs, &cm[z]);
        rc |= !cm[z].ok;
    }
    for (int lat = 0; lat < 2; lat++) {
        fprintf(md, lat ? "Service time per read, p50 / p99 (ms, upper edges of log2 buckets):\n\n"
                        : "Read throughput (GB/s):\n\n");
        fprintf(md, "| engine | read | QD 1 | QD 4 | QD 16 | QD 64 |\n|---|---|---|---|---|---|\n");
        for (int z = 0; z < N_SIZES; z++) {
            print_row(md, "io_uring, O_DIRECT", k_sizes[z], c[0][z], N_QD, lat);
            print_row(md, "pread pool, O_DIRECT", k_sizes[z], c[1][z], N_QD, lat);
            print_row(md, "io_uring, page cache", k_sizes[z], cb[z], N_QD, lat);
            if (!lat)
                print_row(md, "mmap + memcpy (baseline)", k_sizes[z], &cm[z], 1, 0);
        }
        fprintf(md, "\n");
    }
    fprintf(md, "No range is read twice in a run, so page-cache runs read the disk too (as "
            "far as this process can tell); the mmap baseline is one thread, QD 1.\n\n");
    reader_file_close(&fd);
    reader_file_close(&fb);
    const char *keep = getenv("SPILLWAY_BENCH_READ_KEEP");
    if (!(keep && *keep && strcmp(keep, "0") != 0))
        unlink(path);
    return rc ? -1 : 0;
}
