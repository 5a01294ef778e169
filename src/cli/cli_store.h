/*
 * cli_store.h — the weight-store options that run, bench and logits share
 * (--cache, --mem, --cache-policy, --prefetch, --mmap, --resident,
 * --stream, --timeline) and how the store's counters are shown.
 *
 * The commands stream by default: resident tensors read once, experts
 * through a cache whose budget follows the machine's memory pressure
 * unless --cache or --mem fixes it. --mmap is the page-cache baseline.
 *
 * --timeline FILE writes one JSON object per line, about every 250 ms
 * (more often while the budget falls), from the store's pressure watcher
 * thread, so that a run under memory pressure can be replayed:
 *
 *   {"t":1.25,"unix":1764160000.125,"budget":B,"room":R,"cache":C,
 *    "rss":R,"cg_usage":U,"cg_limit":L,"cg_failcnt":F,"cg_oom_kill":K,
 *    "mem_available":A,"psi_some10":P,"psi_full10":P,"steps":N,
 *    "tok_s":X,"reason":"..."}
 *
 * t: seconds since the first line; unix: wall clock; bytes for sizes;
 * steps: forward steps begun (a decode step is one token, a prompt batch
 * one step) and tok_s the steps per second since the previous line;
 * cg_failcnt: times the cgroup hit its limit (v1 failcnt, v2 events max).
 * null: unknown, or no limit. Streaming store only.
 */
#ifndef SW_CLI_STORE_H
#define SW_CLI_STORE_H

#include <stdio.h>

#include "store/store.h"

#define CLI_STORE_USAGE                                                                    \
    "  --cache SIZE          expert cache budget (e.g. 2G; default: what memory allows)\n" \
    "  --mem SIZE            memory for the whole process; the experts get the rest\n"     \
    "  --cache-policy P      expert eviction: stale (default), lru, lfu, s3fifo\n"         \
    "  --prefetch N          experts predicted per layer (default 2 x top-k; 0 = off)\n"   \
    "  --mmap                map the file instead (page-cache baseline)\n"                 \
    "  --resident            read every tensor into memory\n"                          \
    "  --timeline FILE       budget, RSS, cgroup, tok/s every 250 ms (JSON lines)\n"

/* The defaults: streaming, automatic budget followed by a watcher. */
store_opts cli_store_defaults(void);

/* If a is a store option: 1 (a alone), 2 (a and its value v), -1 if v is
 * missing or bad (a message is printed, naming cmd); 0 if a is not one. */
int cli_store_arg(store_opts *o, const char *cmd, const char *a, const char *v);

/* The counters, a few lines of text (run --verbose). */
void cli_store_print(FILE *f, store *st);

#endif
