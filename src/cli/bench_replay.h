/*
 * bench_replay.h — `spillway bench --replay TRACE MODEL`: the store and the
 * disk on recorded routing (store/store_replay.h drives them), and what
 * `spillway bench` reports of any store, shared by both of its modes.
 *
 * The replay opens MODEL's store with the command's store options (budget,
 * policy, prefetch, mode), loads the model only to bind its experts, and
 * walks the trace through store_expert_plan / store_expert /
 * store_expert_release, no model compute (or --compute-us of busy time per
 * layer). It reports tokens, time per token, bytes read, read throughput,
 * hit rate and the store's counters, and the trace's routing statistics
 * over the layers replayed (distinct experts per layer per 100 tokens,
 * share of a token's experts the previous token used), in text or JSON.
 * With --disk-probe it also measures the disk with the model's own expert
 * reads (store/read_probe.h) and compares the replay's tokens per second
 * with (that bandwidth) / (bytes the replay read per token).
 */
#ifndef SW_CLI_BENCH_REPLAY_H
#define SW_CLI_BENCH_REPLAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

typedef struct bench_replay_args {
    const char *model_path; /* resolved */
    const char *trace_path;
    store_opts store;
    double compute_us;      /* per layer step */
    size_t max_tokens;      /* 0: all */
    double disk_probe_s;    /* > 0: also measure the disk (read_probe.h) for this long */
    bool json;
} bench_replay_args;

int bench_replay(const bench_replay_args *a, sw_err *err);

/* The store's counters as one JSON object (the "store" key of both modes). */
json_t *bench_store_json(const store_stats *s);
/* Peak resident set of this process, bytes (-1 unknown). */
int64_t bench_peak_rss(void);
/* "1.23 GB", "4.56 MB", "7.8 kB" (10^3 units). */
void bench_fmt_bytes(char *buf, size_t n, double v);

#endif
