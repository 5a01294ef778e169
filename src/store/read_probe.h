/*
 * read_probe.h — how fast this disk delivers a model's experts: random
 * O_DIRECT reads of the model file's own expert slices through the reader,
 * at the store's queue depth, for a few seconds.
 *
 * A streamed decode step cannot go faster than (disk read bandwidth) /
 * (expert bytes it reads), so `spillway bench --disk-probe` measures the
 * bandwidth in the same run as the decode it bounds, with the same kind of
 * reads: the sizes and offsets of the file's real expert slices (gate, up
 * and down of one (layer, expert), each one read as the store reads it),
 * in a shuffled order that reads no slice twice (so no cache below the
 * file system can serve a repeat), the slices' aligned spans as bytes.
 * The file is only read.
 */
#ifndef SW_STORE_READ_PROBE_H
#define SW_STORE_READ_PROBE_H

#include <stdint.h>

#include "util/err.h"

typedef struct read_probe_opts {
    double seconds; /* stop after this long; 0: 2 */
    int depth;      /* reads in flight; 0: 64 (the store's); fewer where depth
                       buffers of the largest slice would pass 256 MiB */
    uint64_t seed;  /* order of the slices; 0: 1 */
} read_probe_opts;

typedef struct read_probe_result {
    uint64_t reads, bytes;  /* completed reads, their aligned spans' bytes */
    double seconds;         /* from the first submit to the last completion */
    double gbs;             /* bytes / seconds / 1e9 */
    double mean_read_bytes;
    double p50_us, p99_us;  /* service time, upper edges of log2 buckets */
    int direct;             /* O_DIRECT in effect */
    char mode[192];         /* reader_mode() */
} read_probe_result;

/* SW_EINVAL if the file has no expert tensors (blk.N.ffn_*_exps.weight). */
int read_probe_run(const char *path, const read_probe_opts *o, read_probe_result *out,
                   sw_err *err);

#endif
