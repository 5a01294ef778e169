/* test_reader.c — the streaming reader (src/store/reader.h): every byte it
 * delivers is compared with pread of the same range, under io_uring and the
 * pread pool, O_DIRECT and buffered. */
#include "test.h"
#include "store/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FILE_BYTES ((size_t)(8u << 20) + 1234) /* not a multiple of any block */

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Writes size pseudo-random bytes to path. 0 or -1. */
static int make_file(const char *path, size_t size, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    uint64_t s = seed | 1, w[512];
    for (size_t done = 0; done < size;) {
        for (int i = 0; i < 512; i++)
            w[i] = rng(&s);
        size_t n = size - done < sizeof w ? size - done : sizeof w;
        if (fwrite(w, 1, n, f) != n)
            break;
        done += n;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* A file of FILE_BYTES in dir (or a fresh temporary one in the test dir). */
static int make_in(const char *dir, char *path, size_t cap)
{
    snprintf(path, cap, "%s/spillway-reader-XXXXXX", dir ? dir : test_tmpdir());
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return make_file(path, FILE_BYTES, 0x5eed ^ (uint64_t)getpid());
}

/* A page-aligned buffer of at least bytes (aligned_alloc wants a multiple). */
static void *abuf(size_t bytes)
{
    return aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
}

static reader *open_backend(reader_backend be, int depth, int max_requests, reader_done_fn fn,
                            void *ctx)
{
    reader_opts o = {.backend = be, .depth = depth, .max_requests = max_requests,
                     .on_done = fn, .ctx = ctx};
    reader *r = NULL;
    sw_err e = {0};
    if (reader_open(&o, &r, &e) != 0) {
        if (be == READER_URING)
            test_skip(e.msg); /* io_uring disabled on this machine */
        fprintf(stderr, "    reader_open: %s\n", e.msg);
        return NULL;
    }
    return r;
}

/* Checks that res holds exactly bytes [off, off+len) of the file at path. */
static int same_as_pread(int ref_fd, const reader_result *res, uint64_t off)
{
    unsigned char *want = malloc(res->len);
    ssize_t n = pread(ref_fd, want, res->len, (off_t)off);
    int ok = n == (ssize_t)res->len && memcmp(want, res->data, res->len) == 0;
    free(want);
    return ok;
}

struct rd {
    uint64_t off;
    size_t len;
    void *buf;
    int seen;
};

/* A mix of ranges: tiny, unaligned, block-aligned, expert-sized, and ones
 * that end exactly at the end of the file. */
static void pick_range(uint64_t *s, struct rd *d)
{
    uint64_t k = rng(s) % 8;
    if (k < 3) {
        d->len = 1 + rng(s) % 70000;
        d->off = rng(s) % (FILE_BYTES - d->len);
    } else if (k < 5) {
        d->len = 4096 * (1 + rng(s) % 64);
        d->off = 4096 * (rng(s) % ((FILE_BYTES - d->len) / 4096));
    } else if (k < 7) {
        d->len = (size_t)(1536u << 10) - 32 * (rng(s) % 100);
        d->off = 32 * (rng(s) % ((FILE_BYTES - d->len) / 32));
    } else {
        d->len = 1 + rng(s) % 300000;
        d->off = FILE_BYTES - d->len;
    }
}

/* Submits n random reads of the file at path through a reader of backend
 * be, collects some by tag and the rest by polling, and compares each with
 * pread. */
static void random_reads(reader_backend be, const char *path, int flags, int n, int depth,
                         int want_direct)
{
    reader *r = open_backend(be, depth, n, NULL, NULL);
    CHECK(r != NULL);
    reader_file f;
    sw_err e = {0};
    CHECKF(reader_file_open(&f, path, flags, &e) == 0, "%s", e.msg);
    if (want_direct >= 0)
        CHECKF(f.direct == want_direct, "direct %d (%s)", f.direct, f.why);
    int ref = open(path, O_RDONLY);
    CHECK(ref >= 0);
    struct rd *d = calloc((size_t)n, sizeof *d);
    uint64_t s = 0x1234567 + (uint64_t)n;
    for (int i = 0; i < n; i++) {
        pick_range(&s, &d[i]);
        size_t cap = reader_slot_bytes(&f, d[i].len);
        CHECK(cap >= reader_span_bytes(&f, d[i].off, d[i].len));
        d[i].buf = abuf(cap);
        int prio = rng(&s) % 2 ? READER_PREFETCH : READER_DEMAND;
        CHECKF(reader_submit(r, &f, d[i].off, d[i].len, d[i].buf, cap, (uint64_t)i, prio, &e) == 0,
               "%s", e.msg);
    }
    for (int i = 0; i < n; i += 3) { /* some by tag, out of order */
        reader_result res;
        CHECKF(reader_wait(r, (uint64_t)i, &res, &e) == 0, "%s", e.msg);
        CHECK(res.tag == (uint64_t)i && res.len == d[i].len);
        CHECK(res.data == reader_data(&f, d[i].buf, d[i].off));
        CHECKF(same_as_pread(ref, &res, d[i].off), "read %d [%llu, +%zu) differs", i,
               (unsigned long long)d[i].off, d[i].len);
        d[i].seen++;
    }
    reader_result out[16];
    for (int got; (got = reader_poll(r, out, 16, 1, &e)) > 0;)
        for (int k = 0; k < got; k++) {
            int i = (int)out[k].tag;
            CHECK(i >= 0 && i < n && out[k].rc == 0);
            CHECKF(same_as_pread(ref, &out[k], d[i].off), "read %d differs", i);
            d[i].seen++;
        }
    for (int i = 0; i < n; i++)
        CHECKF(d[i].seen == 1, "read %d delivered %d times", i, d[i].seen);
    CHECK(reader_live(r) == 0);
    reader_stats st;
    reader_stats_get(r, &st);
    CHECK(st.reads == (uint64_t)n && st.errors == 0);
    uint64_t hist = 0;
    for (int b = 0; b < READER_HIST_BUCKETS; b++)
        hist += st.lat_us[b];
    CHECK(hist == (uint64_t)n);
    CHECK(st.inflight_max >= 1 && st.inflight_max <= depth);
    if (be == READER_URING) /* kicks happen only in our calls: the ring fills */
        CHECK(st.inflight_max == depth);
    reader_close(r);
    reader_file_close(&f);
    close(ref);
    for (int i = 0; i < n; i++)
        free(d[i].buf);
    free(d);
}

TEST(reader_spans)
{
    reader_file f = {.fd = -1, .align = 512, .mem_align = 512};
    CHECK(reader_span_start(&f, 1000) == 512);
    CHECK(reader_span_bytes(&f, 1000, 24) == 512);
    CHECK(reader_span_bytes(&f, 1000, 25) == 1024);
    CHECK(reader_span_bytes(&f, 1024, 512) == 512);
    CHECK(reader_slot_bytes(&f, 512) == 1024);
    CHECK(reader_slot_bytes(&f, 1) == 512);
    CHECK(reader_slot_bytes(&f, 1000) == 1536);
    static char buf[1024];
    CHECK(reader_data(&f, buf, 1000) == buf + 488);
    f.align = f.mem_align = 1; /* buffered: the span is the range */
    CHECK(reader_span_bytes(&f, 1000, 25) == 25 && reader_slot_bytes(&f, 25) == 25);
    CHECK(reader_data(&f, buf, 1000) == buf);
}

TEST(reader_uring_random_ranges)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    random_reads(READER_URING, path, 0, 300, 16, -1);
}

TEST(reader_pool_random_ranges)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    random_reads(READER_POOL, path, 0, 300, 8, -1);
}

TEST(reader_buffered_random_ranges)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    random_reads(READER_URING, path, READER_FILE_BUFFERED, 200, 64, 0);
    random_reads(READER_POOL, path, READER_FILE_BUFFERED, 200, 4, 0);
}

/* A directory on a disk file system where O_DIRECT works, or NULL. */
static const char *direct_dir(char *path, size_t cap)
{
    const char *dirs[] = {test_tmpdir(), "/var/tmp", "build"};
    for (size_t k = 0; k < sizeof dirs / sizeof *dirs; k++) {
        if (make_in(dirs[k], path, cap) != 0)
            continue;
        reader_file f;
        int direct = reader_file_open(&f, path, 0, NULL) == 0 && f.direct;
        if (f.path)
            reader_file_close(&f);
        if (direct)
            return dirs[k];
        unlink(path);
    }
    return NULL;
}

TEST(reader_direct_on_disk)
{
    char path[512];
    if (!direct_dir(path, sizeof path))
        test_skip("no file system here takes O_DIRECT");
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    CHECK(f.direct && f.align >= 512 && f.size == FILE_BYTES);
    reader_file_close(&f);
    random_reads(READER_URING, path, 0, 200, 64, 1);
    random_reads(READER_POOL, path, 0, 100, 16, 1);
    unlink(path);
}

TEST(reader_tmpfs)
{
    /* tmpfs refused O_DIRECT before Linux 6.6 and takes it since: either
     * way the reads must be right, and the file says which happened. */
    char path[512];
    if (make_in("/dev/shm", path, sizeof path) != 0)
        test_skip("no /dev/shm");
    reader_file f;
    sw_err e = {0};
    CHECKF(reader_file_open(&f, path, 0, &e) == 0, "%s", e.msg);
    fprintf(stderr, "    /dev/shm: %s\n", f.direct ? "O_DIRECT" : f.why);
    CHECK(f.direct || strstr(f.why, "O_DIRECT") != NULL);
    reader_file_close(&f);
    random_reads(READER_URING, path, 0, 100, 16, -1);
    random_reads(READER_POOL, path, 0, 100, 4, -1);
    unlink(path);
}

TEST(reader_falls_back_to_buffered)
{
    /* procfs refuses O_DIRECT at open (EINVAL): the reader must read it
     * buffered and say so. */
    const char *path = "/proc/version";
    reader_file f;
    sw_err e = {0};
    CHECKF(reader_file_open(&f, "/proc/version", 0, &e) == 0, "%s", e.msg);
    CHECK(!f.direct && f.align == 1);
    CHECK_HAS(f.why, "O_DIRECT");
    reader_file_close(&f);
    for (int be = READER_URING; be <= READER_POOL; be++) {
        reader *r = open_backend((reader_backend)be, 4, 0, NULL, NULL);
        CHECK(r != NULL);
        CHECK(reader_file_open(&f, path, 0, &e) == 0 && !f.direct);
        char buf[64];
        reader_result res;
        CHECK(reader_submit(r, &f, 7, 40, buf, sizeof buf, 1, READER_DEMAND, &e) == 0);
        CHECKF(reader_wait(r, 1, &res, &e) == 0, "%s", e.msg);
        int ref = open(path, O_RDONLY);
        CHECK(same_as_pread(ref, &res, 7));
        close(ref);
        reader_file_close(&f);
        reader_close(r);
    }
}

TEST(reader_missing_file)
{
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, "/nonexistent/spillway/model.gguf", 0, &e) == SW_ENOTFOUND);
    CHECK_HAS(e.msg, "/nonexistent/spillway/model.gguf");
}

/* Errors: a read past the end and a read of a closed fd fail alone, with a
 * message naming the file, offset and length; the reads around them and
 * after them succeed. */
static void errors_stay_local(reader_backend be)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    reader *r = open_backend(be, 8, 0, NULL, NULL);
    CHECK(r != NULL);
    reader_file f, dead;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    CHECK(reader_file_open(&dead, path, 0, &e) == 0);
    int ref = open(path, O_RDONLY); /* before the close: it must not reuse the fd */
    close(dead.fd);                 /* the reader is not told */
    size_t cap = reader_slot_bytes(&f, 1 << 20);
    void *b[5];
    for (int i = 0; i < 5; i++)
        b[i] = abuf(cap);
    const uint64_t tail = FILE_BYTES - 100;
    CHECK(reader_submit(r, &f, 4096, 1 << 20, b[0], cap, 10, READER_DEMAND, &e) == 0);
    CHECK(reader_submit(r, &f, tail, 1000, b[1], cap, 11, READER_DEMAND, &e) == 0);
    CHECK(reader_submit(r, &f, FILE_BYTES + 8192, 512, b[2], cap, 12, READER_DEMAND, &e) == 0);
    CHECK(reader_submit(r, &dead, 0, 4096, b[3], cap, 13, READER_PREFETCH, &e) == 0);
    CHECK(reader_submit(r, &f, 77, 5000, b[4], cap, 14, READER_PREFETCH, &e) == 0);
    reader_result res;
    CHECK(reader_wait(r, 11, &res, &e) == SW_EIO);
    CHECK(res.rc == SW_EIO);
    CHECK_HAS(e.msg, path);
    CHECK_HAS(e.msg, "1000 bytes at offset");
    CHECK_HAS(e.msg, "the file has only");
    CHECK(reader_wait(r, 12, &res, &e) == SW_EIO);
    CHECK_HAS(e.msg, "the file has only");
    CHECK(reader_wait(r, 13, &res, &e) == SW_EIO);
    CHECK_HAS(e.msg, strerror(EBADF));
    CHECK(reader_wait(r, 10, &res, &e) == 0 && same_as_pread(ref, &res, 4096));
    CHECK(reader_wait(r, 14, &res, &e) == 0 && same_as_pread(ref, &res, 77));
    CHECK(reader_wait(r, 14, &res, &e) == SW_ENOTFOUND);
    /* the reader still works */
    CHECK(reader_submit(r, &f, tail - 900, 1000, b[1], cap, 15, READER_DEMAND, &e) == 0);
    CHECK(reader_wait(r, 15, &res, &e) == 0 && same_as_pread(ref, &res, tail - 900));
    reader_stats st;
    reader_stats_get(r, &st);
    CHECK(st.reads == 6 && st.errors == 3);
    reader_close(r);
    reader_file_close(&f);
    dead.fd = -1;
    reader_file_close(&dead);
    close(ref);
    for (int i = 0; i < 5; i++)
        free(b[i]);
}

TEST(reader_uring_errors_stay_local)
{
    errors_stay_local(READER_URING);
}

TEST(reader_pool_errors_stay_local)
{
    errors_stay_local(READER_POOL);
}

TEST(reader_bad_requests)
{
    char path[512];
    if (!direct_dir(path, sizeof path))
        test_skip("no file system here takes O_DIRECT");
    reader *r = open_backend(READER_AUTO, 4, 4, NULL, NULL);
    CHECK(r != NULL);
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0 && f.direct);
    size_t cap = reader_slot_bytes(&f, 10000);
    char *buf = abuf(cap + 4096);
    CHECK(reader_submit(r, &f, 100, 10000, buf, 10000, 1, READER_DEMAND, &e) == SW_EINVAL);
    CHECK_HAS(e.msg, "buffer");
    if (f.mem_align > 1) {
        CHECK(reader_submit(r, &f, 100, 100, buf + 1, cap, 1, READER_DEMAND, &e) == SW_EINVAL);
        CHECK_HAS(e.msg, "aligned");
    }
    CHECK(reader_submit(r, &f, 100, 0, buf, cap, 1, READER_DEMAND, &e) == SW_EINVAL);
    CHECK(reader_submit(r, &f, UINT64_MAX - 10, 100, buf, cap, 1, READER_DEMAND, &e) == SW_EINVAL);
    CHECK(reader_submit(r, &f, 0, 100, buf, cap, 1, 7, &e) == SW_EINVAL);
    CHECK(reader_submit(r, &f, 0, 100, buf, cap, 1, READER_DEMAND, &e) == 0);
    CHECK(reader_submit(r, &f, 0, 100, buf + 4096, cap, 1, READER_DEMAND, &e) == SW_EINVAL);
    CHECK_HAS(e.msg, "tag 1");
    CHECK(reader_wait(r, 1, NULL, &e) == 0);
    CHECK(reader_wait(r, 99, NULL, &e) == SW_ENOTFOUND);
    reader_close(r);
    reader_file_close(&f);
    free(buf);
    unlink(path);
}

TEST(reader_max_requests)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    reader *r = open_backend(READER_AUTO, 2, 3, NULL, NULL);
    CHECK(r != NULL);
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    size_t cap = reader_slot_bytes(&f, 4096);
    char *buf = abuf(4 * cap);
    for (int i = 0; i < 3; i++)
        CHECK(reader_submit(r, &f, 0, 4096, buf + i * cap, cap, (uint64_t)i, 0, &e) == 0);
    CHECK(reader_live(r) == 3);
    CHECK(reader_submit(r, &f, 0, 4096, buf + 3 * cap, cap, 3, 0, &e) == SW_ERANGE);
    CHECK(reader_wait(r, 1, NULL, &e) == 0);
    CHECK(reader_submit(r, &f, 0, 4096, buf + 3 * cap, cap, 3, 0, &e) == 0);
    reader_close(r); /* with reads still live */
    reader_file_close(&f);
    free(buf);
}

/* ---- deterministic ordering with io_uring: a pipe read that does not end
 * until the test writes to the pipe keeps one slot busy ------------------ */

struct pipe_file {
    int p[2];
    reader_file f;
};

static int pipe_open(struct pipe_file *pf)
{
    if (pipe(pf->p) != 0)
        return -1;
    pf->f = (reader_file){.fd = pf->p[0], .align = 1, .mem_align = 1, .path = "pipe"};
    return 0;
}

static void pipe_close(struct pipe_file *pf)
{
    close(pf->p[0]);
    close(pf->p[1]);
}

TEST(reader_demand_before_prefetch)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    reader *r = open_backend(READER_URING, 1, 0, NULL, NULL);
    CHECK(r != NULL);
    struct pipe_file pf;
    CHECK(pipe_open(&pf) == 0);
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    size_t cap = reader_slot_bytes(&f, 8192);
    char *buf = abuf(5 * cap);
    CHECK(reader_submit(r, &pf.f, 0, 16, buf, cap, 100, READER_DEMAND, &e) == 0); /* blocks */
    CHECK(reader_submit(r, &f, 0, 8192, buf + cap, cap, 1, READER_PREFETCH, &e) == 0);
    CHECK(reader_submit(r, &f, 9, 8192, buf + 2 * cap, cap, 2, READER_PREFETCH, &e) == 0);
    CHECK(reader_submit(r, &f, 99, 8192, buf + 3 * cap, cap, 3, READER_DEMAND, &e) == 0);
    CHECK(reader_submit(r, &f, 999, 8192, buf + 4 * cap, cap, 4, READER_PREFETCH, &e) == 0);
    CHECK(reader_cancel(r, 4) == 1); /* still queued */
    CHECK(reader_cancel(r, 100) == 0); /* in flight */
    CHECK(reader_cancel(r, 4) == SW_ENOTFOUND);
    CHECK(write(pf.p[1], "0123456789abcdef", 16) == 16);
    uint64_t order[8];
    int n = 0;
    reader_result out[8];
    for (int got; (got = reader_poll(r, out, 8, 1, &e)) > 0;)
        for (int k = 0; k < got && n < 8; k++) {
            CHECK(out[k].rc == 0);
            order[n++] = out[k].tag;
        }
    CHECK(n == 4);
    CHECK(order[0] == 100 && order[1] == 3 && order[2] == 1 && order[3] == 2);
    CHECK(memcmp(buf, "0123456789abcdef", 16) == 0);
    reader_stats st;
    reader_stats_get(r, &st);
    CHECK(st.cancelled == 1 && st.queued_max == 4 && st.inflight_max == 1);
    reader_close(r);
    reader_file_close(&f);
    pipe_close(&pf);
    free(buf);
}

TEST(reader_prefetch_depth_leaves_room)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    reader_opts o = {.backend = READER_URING, .depth = 3, .prefetch_depth = 1};
    reader *r = NULL;
    sw_err e = {0};
    if (reader_open(&o, &r, &e) != 0)
        test_skip(e.msg);
    struct pipe_file pf;
    CHECK(pipe_open(&pf) == 0);
    reader_file f;
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    size_t cap = reader_slot_bytes(&f, 4096);
    char *buf = abuf(4 * cap);
    CHECK(reader_submit(r, &pf.f, 0, 4, buf, cap, 0, READER_PREFETCH, &e) == 0);
    CHECK(reader_submit(r, &f, 0, 4096, buf + cap, cap, 1, READER_PREFETCH, &e) == 0);
    CHECK(reader_submit(r, &f, 0, 4096, buf + 2 * cap, cap, 2, READER_DEMAND, &e) == 0);
    /* the pipe prefetch holds the one prefetch place: 1 waits, 2 went */
    CHECK(reader_cancel(r, 2) == 0);
    CHECK(reader_promote(r, 1) == 0); /* now a demand read: it goes */
    CHECK(reader_cancel(r, 1) == 0);
    CHECK(reader_wait(r, 1, NULL, &e) == 0);
    CHECK(reader_wait(r, 2, NULL, &e) == 0);
    CHECK(write(pf.p[1], "abcd", 4) == 4);
    CHECK(reader_wait(r, 0, NULL, &e) == 0 && memcmp(buf, "abcd", 4) == 0);
    reader_close(r);
    reader_file_close(&f);
    pipe_close(&pf);
    free(buf);
}

TEST(reader_short_reads_resume)
{
    /* A pipe read returns what is there: 30 bytes of 100 first, so the
     * reader must resubmit the other 70. */
    reader *r = open_backend(READER_URING, 4, 0, NULL, NULL);
    CHECK(r != NULL);
    struct pipe_file pf;
    CHECK(pipe_open(&pf) == 0);
    char buf[100], want[100];
    for (int i = 0; i < 100; i++)
        want[i] = (char)('A' + i % 26);
    sw_err e = {0};
    CHECK(reader_submit(r, &pf.f, 0, 100, buf, sizeof buf, 7, READER_DEMAND, &e) == 0);
    CHECK(write(pf.p[1], want, 30) == 30);
    for (int left = 30; left > 0;) { /* until the kernel has taken the 30 */
        CHECK(ioctl(pf.p[0], FIONREAD, &left) == 0);
        sched_yield();
    }
    CHECK(reader_poll(r, NULL, 0, 0, &e) == 0); /* sees the short read */
    CHECK(write(pf.p[1], want + 30, 70) == 70);
    CHECK(reader_wait(r, 7, NULL, &e) == 0);
    CHECK(memcmp(buf, want, 100) == 0);
    reader_stats st;
    reader_stats_get(r, &st);
    CHECK(st.retries >= 1 && st.bytes == 100);
    reader_close(r);
    pipe_close(&pf);
}

/* ---- callbacks ----------------------------------------------------------- */

struct cb_state {
    int calls[64];
    int bad;
    int ref_fd;
    uint64_t off[64];
};

static void on_done(void *ctx, const reader_result *res)
{
    struct cb_state *cs = ctx;
    if (res->tag >= 64 || res->rc != 0 || !same_as_pread(cs->ref_fd, res, cs->off[res->tag]))
        cs->bad++;
    else
        cs->calls[res->tag]++;
}

static void callbacks(reader_backend be)
{
    char path[512];
    CHECK(make_in(NULL, path, sizeof path) == 0);
    struct cb_state cs = {0};
    reader *r = open_backend(be, 8, 64, on_done, &cs);
    CHECK(r != NULL);
    reader_file f;
    sw_err e = {0};
    CHECK(reader_file_open(&f, path, 0, &e) == 0);
    cs.ref_fd = open(path, O_RDONLY);
    size_t cap = reader_slot_bytes(&f, 200000);
    char *buf = abuf(64 * cap);
    for (int i = 0; i < 64; i++) {
        cs.off[i] = (uint64_t)i * 123457;
        CHECK(reader_submit(r, &f, cs.off[i], 200000, buf + (size_t)i * cap, cap, (uint64_t)i,
                            i % 2, &e) == 0);
    }
    reader_result res;
    CHECK(reader_wait(r, 40, &res, &e) == 0 && same_as_pread(cs.ref_fd, &res, cs.off[40]));
    CHECK(cs.calls[40] == 1); /* the callback ran for it too */
    int total = 0;
    while (reader_live(r) > 0) {
        int n = reader_poll(r, NULL, 0, 1, &e);
        CHECK(n >= 0);
        total += n;
    }
    CHECK(cs.bad == 0);
    for (int i = 0; i < 64; i++)
        CHECKF(cs.calls[i] == 1, "tag %d: %d callbacks", i, cs.calls[i]);
    CHECK(total <= 63); /* 40, and any that finished before it, ran in the wait */
    reader_close(r);
    reader_file_close(&f);
    close(cs.ref_fd);
    free(buf);
}

TEST(reader_uring_callbacks)
{
    callbacks(READER_URING);
}

TEST(reader_pool_callbacks)
{
    callbacks(READER_POOL);
}

TEST(reader_no_uring_env)
{
    setenv("SPILLWAY_NO_URING", "1", 1);
    reader *r = NULL;
    sw_err e = {0};
    CHECK(reader_open(NULL, &r, &e) == 0);
    CHECK(reader_backend_of(r) == READER_POOL);
    CHECK_HAS(reader_mode(r), "SPILLWAY_NO_URING");
    reader_close(r);
    unsetenv("SPILLWAY_NO_URING");
    CHECK(reader_open(NULL, &r, &e) == 0);
    fprintf(stderr, "    auto: %s\n", reader_mode(r));
    reader_close(r);
}

TEST(reader_latency_quantiles)
{
    reader_stats s = {0};
    CHECK(reader_stats_quantile(&s, 0.5) == 0);
    s.lat_us[0] = 50;  /* < 2 us */
    s.lat_us[10] = 49; /* [1024, 2048) us */
    s.lat_us[12] = 1;  /* [4096, 8192) us */
    CHECK(reader_stats_quantile(&s, 0.5) == 2);
    CHECK(reader_stats_quantile(&s, 0.9) == 2048);
    CHECK(reader_stats_quantile(&s, 1.0) == 8192);
}
