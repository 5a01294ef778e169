/*
 * reader.h — many reads of one file in flight at once, straight from the
 * device into the caller's buffers.
 *
 * The expert cache asks for byte ranges of the model file (an expert's
 * slices) and keeps computing while they arrive. An SSD is only fast with
 * many requests queued, so the reader lets the caller submit many reads,
 * each tagged, and collect them as they finish: by waiting on one tag, by
 * polling, or through a completion callback.
 *
 * Two engines do the work behind the same calls, chosen at reader_open():
 *
 *   io_uring   one ring; reads are prepared as SQEs and the kernel runs
 *              them; no threads of ours (reader_uring.c).
 *   pread pool N threads calling pread(); used where io_uring is absent or
 *              refused (io_uring_queue_init fails: old kernel, seccomp,
 *              io_uring_disabled), or forced with SPILLWAY_NO_URING=1
 *              (reader_pool.c).
 *
 * Files are opened through reader_file_open(), which tries O_DIRECT so the
 * page cache neither doubles the memory the weights take nor hides the
 * device's real speed, and falls back to buffered reads where the file
 * system refuses it (the open, or a probe read, fails with EINVAL). What
 * happened is reported: reader_file.direct and .why, reader_mode().
 *
 * Alignment. O_DIRECT needs offset, length and buffer aligned to the file's
 * direct-I/O alignment (statx STATX_DIOALIGN, else 4096). Expert slices in
 * a GGUF are only 32-byte aligned, so a read of [offset, offset+len) reads
 * the enclosing aligned span into the caller's buffer, and the requested
 * bytes start at reader_data(f, buf, offset) = buf + (offset - span start).
 * reader_span_bytes() says how big the buffer must be for one range,
 * reader_slot_bytes() how big for any range of a given length (size cache
 * slots with it). Buffered files need no alignment: the span is the range.
 *
 * Priorities. A demand read (READER_DEMAND: the model waits for it) is
 * issued before any queued prefetch (READER_PREFETCH: a guess). Prefetches
 * may occupy at most prefetch_depth of the depth reads in flight, so a
 * demand read always finds room. Waiting on a queued prefetch promotes it;
 * a prefetch still queued may be cancelled (reader_cancel).
 *
 * Errors. A read that fails (EIO, a bad fd, the file ending before the
 * range does) completes with SW_EIO and a message naming the file, offset
 * and length; it affects that read only and the reader keeps working.
 * Short reads are resumed where they stopped, EINTR and EAGAIN retried.
 *
 * Threads. One thread — the engine's owner thread — makes every call on a
 * reader. Finished reads are gathered in every call, and delivered only
 * inside reader_poll and reader_wait: callbacks run there, on that thread,
 * so the caller's state needs no locks. Callbacks may call reader_submit,
 * reader_promote and reader_cancel, not reader_wait, reader_poll or
 * reader_close. With io_uring, reads run in the kernel between calls, but a
 * read queued behind a full depth is issued only at the next call, so a
 * caller that computes for long should call reader_poll(r, NULL, 0, 0, err)
 * now and then (between layers). The pool's threads take queued reads
 * themselves.
 *
 * Invariants: every submitted read completes exactly once (callback, poll
 * or wait) unless cancelled while queued; the caller's buffer belongs to the
 * reader from submit until that completion; tags of live reads are unique.
 */
#ifndef SW_READER_H
#define SW_READER_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* ---- files -------------------------------------------------------------- */

typedef struct reader_file {
    int fd;
    int direct;         /* 1: O_DIRECT in effect */
    uint32_t align;     /* read offsets and lengths: multiples of this (1 when buffered) */
    uint32_t mem_align; /* buffers start at a multiple of this (1 when buffered) */
    uint64_t size;      /* bytes, at open */
    char *path;         /* for messages */
    char why[128];      /* when !direct: why not ("O_DIRECT refused: ...") */
} reader_file;

enum { READER_FILE_BUFFERED = 1 }; /* reader_file_open flag: never O_DIRECT */

int reader_file_open(reader_file *f, const char *path, int flags, sw_err *err);
void reader_file_close(reader_file *f);

/* First byte of the aligned span that a read at offset covers. */
static inline uint64_t reader_span_start(const reader_file *f, uint64_t offset)
{
    return offset - offset % f->align;
}
/* Bytes of the aligned span covering [offset, offset+len): the buffer size
 * that read needs. */
size_t reader_span_bytes(const reader_file *f, uint64_t offset, size_t len);
/* Largest span of a len-byte read at any offset: a buffer this big takes
 * every such read. */
size_t reader_slot_bytes(const reader_file *f, size_t len);
/* Where the bytes of a read at offset begin inside its buffer. */
static inline void *reader_data(const reader_file *f, void *buf, uint64_t offset)
{
    return (char *)buf + (offset - reader_span_start(f, offset));
}

/* ---- the reader --------------------------------------------------------- */

typedef struct reader reader;

enum { READER_DEMAND = 0, READER_PREFETCH = 1 };
typedef enum { READER_AUTO = 0, READER_URING, READER_POOL } reader_backend;

/* One finished read. */
typedef struct reader_result {
    uint64_t tag;
    int rc;          /* 0, or SW_EIO */
    void *data;      /* the requested bytes, inside the caller's buffer */
    size_t len;      /* = the requested length */
    const char *msg; /* on error: what, where and why; "" on success. Valid
                        until the next reader_submit or reader_close. */
} reader_result;

typedef void (*reader_done_fn)(void *ctx, const reader_result *res);

typedef struct reader_opts {
    reader_backend backend; /* AUTO: io_uring unless unavailable or SPILLWAY_NO_URING=1 */
    int depth;              /* reads in flight at most (pool: threads); 0: 64 */
    int prefetch_depth;     /* of which prefetches at most; 0: 3/4 of depth */
    int max_requests;       /* live reads (queued + in flight + undelivered); 0: 1024 */
    reader_done_fn on_done; /* NULL: results come from reader_poll / reader_wait */
    void *ctx;
} reader_opts;

/* opts may be NULL for the defaults. */
int reader_open(const reader_opts *opts, reader **out, sw_err *err);
/* Waits for reads in flight (their buffers are in use), drops queued ones. */
void reader_close(reader *r);

reader_backend reader_backend_of(const reader *r);
/* "io_uring, depth 64", "pread pool, 64 threads (io_uring unavailable: ...)". */
const char *reader_mode(const reader *r);

/*
 * Queues a read of [offset, offset+len) of f into buf (buf_cap bytes, at
 * least reader_span_bytes(f, offset, len), aligned to f->mem_align), and
 * issues it at once if there is room. tag names it in results; no other
 * live read may have it. SW_EINVAL for a bad argument, SW_ERANGE when
 * max_requests reads are live (collect some first).
 */
int reader_submit(reader *r, const reader_file *f, uint64_t offset, size_t len, void *buf,
                  size_t buf_cap, uint64_t tag, int priority, sw_err *err);

/*
 * Waits until the read tagged tag completes and returns its rc (err says
 * why on failure); fills *res if non-NULL. With a callback, the callback
 * runs for it too. A queued prefetch is promoted first. SW_ENOTFOUND if no
 * live read has that tag.
 */
int reader_wait(reader *r, uint64_t tag, reader_result *res, sw_err *err);

/*
 * Collects finished reads and issues queued ones. block: if nothing has
 * finished, wait for one (returns 0 at once when nothing is live). With a
 * callback, runs it for each and returns how many; without, moves up to max
 * results into out (oldest first) and returns how many. Negative only if the
 * reader itself failed (not a read: those are results).
 */
int reader_poll(reader *r, reader_result *out, int max, int block, sw_err *err);

/* Raises a queued prefetch to demand priority. 0, or SW_ENOTFOUND. */
int reader_promote(reader *r, uint64_t tag);
/* Drops a read still queued: 1 (it will never complete), 0 if already in
 * flight or done (it completes as usual), SW_ENOTFOUND if unknown. */
int reader_cancel(reader *r, uint64_t tag);

/* Live reads: queued, in flight, or finished but not yet collected. */
int reader_live(const reader *r);

/* ---- counters ----------------------------------------------------------- */

#define READER_HIST_BUCKETS 32

typedef struct reader_stats {
    uint64_t reads;        /* completed, including failed */
    uint64_t errors;       /* completed with an error */
    uint64_t bytes;        /* bytes moved from the file (aligned spans) */
    uint64_t bytes_wanted; /* bytes callers asked for */
    uint64_t retries;      /* short reads resumed, EINTR/EAGAIN retried */
    uint64_t cancelled;
    int inflight_max;      /* most reads in flight at once */
    int queued_max;        /* most reads waiting for room */
    /* Service time, from issue to completion seen: bucket 0 counts reads
     * under 2 us, bucket i >= 1 those in [2^i, 2^(i+1)) us. */
    uint64_t lat_us[READER_HIST_BUCKETS];
} reader_stats;

void reader_stats_get(reader *r, reader_stats *out);
void reader_stats_reset(reader *r);
/* Upper edge, in us, of the bucket holding quantile q (0..1) of latencies;
 * 0 when there are none. */
double reader_stats_quantile(const reader_stats *s, double q);

#endif
