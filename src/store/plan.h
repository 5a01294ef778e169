/*
 * plan.h — how fast a model can run from a given expert-cache budget on this
 * machine: the probes, the model's shape, and the time-per-token estimate
 * that `spillway plan` prints and the benchmark checks against measured
 * runs.
 *
 * The estimate. A decoded token reads, per MoE layer, n_expert_used experts;
 * a fraction of those reads is served from the cache (hit), the rest comes
 * from the SSD either on demand (the layer waits for it) or ahead of time by
 * prefetch (the read overlaps compute). Compute is taken to be bound by
 * memory bandwidth, as single-batch decoding is: every byte of the resident
 * weights a token uses, and of every expert it uses, is streamed once. So,
 * per token,
 *
 *     t_compute  = (resident bytes read + active expert bytes) / memory bandwidth
 *     t_demand   = demand-read bytes / SSD bandwidth
 *     t_prefetch = prefetched bytes / SSD bandwidth
 *     t_token    = t_demand + max(t_compute, t_prefetch)
 *
 * With no misses this is the memory-bandwidth bound of a model held in RAM;
 * with every read prefetched it is max(compute, SSD) — reads fully hidden
 * behind compute, or compute behind reads. Real runs land below it: kernels
 * reach only part of the bandwidth (bench/ measures how much), and demand
 * reads overlap the computation of experts already present a little. The
 * rates come from replaying routing traces (store/replay.h).
 *
 * Probes: /proc/meminfo (a missing field is unknown, reported as 0), a
 * streaming-read bandwidth measurement over a buffer much larger than the
 * caches, and O_DIRECT random reads of the expert read size on the model
 * file (the page cache cannot answer them, so they measure the device).
 */
#ifndef SW_STORE_PLAN_H
#define SW_STORE_PLAN_H

#include <stdint.h>

#include "gguf/gguf.h"
#include "util/err.h"

typedef struct plan_machine {
    int n_cpus;
    uint64_t ram_total, ram_avail; /* bytes; 0: unknown */
    double mem_bw;                 /* bytes/s, streaming read, all CPUs; 0: not measured */
    int mem_threads;
    double ssd_bw;                 /* bytes/s, random O_DIRECT reads; 0: not measured */
    uint64_t ssd_read_bytes;       /* size of each read */
    int ssd_depth;                 /* reads in flight */
    char ssd_note[320];            /* what was measured, or why not */
} plan_machine;

/* RAM total and available from /proc/meminfo (or the file given, for
 * tests). Absent fields stay 0. */
int plan_probe_meminfo(plan_machine *m, const char *path, sw_err *err);
/* Streaming-read bandwidth over a buffer of `bytes` (0: 256 MiB, less when
 * little RAM is available), all CPUs reading, best of a few passes. */
int plan_probe_mem_bw(plan_machine *m, size_t bytes, sw_err *err);
/* Random O_DIRECT reads of read_bytes each, `depth` in flight, at
 * 4 KiB-aligned offsets in [lo, hi) of path, for about `seconds`. A file
 * system without O_DIRECT (tmpfs) leaves ssd_bw 0 and says so in ssd_note:
 * not an error. */
int plan_probe_ssd(plan_machine *m, const char *path, uint64_t lo, uint64_t hi,
                   uint64_t read_bytes, int depth, double seconds, sw_err *err);

typedef struct plan_model {
    char arch[64];
    int n_layer;            /* blocks */
    int n_moe_layer;        /* blocks with expert tensors */
    int n_expert, n_expert_used;
    uint64_t expert_bytes;  /* one cache entry: one expert's gate, up and down slices */
    uint64_t expert_total;  /* all expert tensors */
    uint64_t resident_bytes;    /* every other tensor */
    uint64_t token_resident;    /* resident bytes a token reads (not the embedding table) */
    uint64_t expert_lo, expert_hi; /* file range holding expert data */
} plan_model;

/* The shape from a GGUF header: <arch>.block_count, .expert_count,
 * .expert_used_count, and blk.N.ffn_{gate,up,down}_exps.weight sizes.
 * A dense model gives n_expert 0 and everything resident. */
int plan_model_from_gguf(const gguf_ctx *g, plan_model *m, sw_err *err);

/* Per expert read the model makes, where it is served from. */
typedef struct plan_rates {
    double hit;      /* from the cache */
    double demand;   /* from the SSD, waited for */
    double prefetch; /* SSD reads issued ahead, per expert read (wasted ones included) */
} plan_rates;

typedef struct plan_estimate {
    double t_compute, t_demand, t_prefetch, t_token; /* seconds per token */
    double tok_per_s;                                /* 0 when unknown */
    double ssd_bytes_per_token;
} plan_estimate;

/* The model above. Needs mem_bw, and ssd_bw when anything is read. */
void plan_estimate_token(const plan_machine *m, const plan_model *md, const plan_rates *r,
                         plan_estimate *out);

#endif
