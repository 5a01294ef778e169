/*
 * expert_cache_int.h — the expert cache's state, shared by store_stream.c
 * (opening: resident set, slots, budget) and expert_cache.c (entries,
 * reads, prediction, counters). See expert_cache.h for the design.
 */
#ifndef SW_EXPERT_CACHE_INT_H
#define SW_EXPERT_CACHE_INT_H

#include <stdatomic.h>

#include "store/expert_cache.h"
#include "store/policy.h"
#include "store/predict.h"
#include "store/pressure.h"
#include "store/reader.h"

enum { XE_ABSENT = 0, XE_LOADING, XE_READY, XE_FAILED };

/* Reads of resident runs carry this bit in their tag; expert reads carry
 * key * 4 + part. */
#define XC_TAG_RESIDENT ((uint64_t)1 << 62)

typedef struct xentry {
    int32_t slot;       /* index into the slot region; -1 when ABSENT */
    uint8_t state;      /* XE_* */
    uint8_t pending;    /* bit p: part p's read is in flight */
    uint8_t reserved;   /* pinned by the current plan, not yet requested */
    uint8_t prefetched; /* loaded by a prefetch and not used since */
    uint8_t demand;     /* its read was issued for the coming request (a miss) */
    uint8_t held;       /* store_expert calls not yet released */
    char *msg;          /* FAILED: the reader's message (malloc'd) */
} xentry;

typedef struct xlayer {
    int n_expert;             /* 0: not bound */
    int n_parts;              /* parts present: gate may be missing */
    const gguf_tensor *t[3];  /* gate (or NULL), up, down */
    uint64_t off[3];          /* absolute file offset of expert 0's slice */
    size_t len[3];            /* bytes of one expert's slice */
    size_t part_off[3];       /* where part p's span starts in a slot */
    xentry *e;                /* [n_expert] */
} xlayer;

/* A resident tensor's bytes, by index in the GGUF tensor table. */
struct xcache {
    const gguf_ctx *g;
    reader_file f;
    reader *r;
    policy *pol;
    policy_kind kind;

    /* resident set */
    uint8_t *res_buf;         /* anonymous mapping of res_map_bytes */
    size_t res_map_bytes;
    const uint8_t **res_ptr;  /* [n_tensors]: bytes, NULL for streamed tensors */
    int64_t res_bytes;        /* bytes of the resident tensors themselves */
    int res_pending;          /* resident reads still in flight at open */
    char res_msg[256];        /* first resident read error */

    /* entries and slots */
    xlayer *L;                /* [n_layers] */
    int n_layers;
    int k_used;               /* n_expert_used from the metadata (>= 1) */
    int prefetch_n;           /* experts predicted per layer: 0 auto (xpred_width), < 0 off */
    xpred *pred;              /* created at the first plan, once every layer is bound */
    int n_moe;                /* layers with experts bound */
    bool no_hints;            /* store_opts.no_hints */
    int pf_layer;             /* layer the latest prefetch was for; -1 none */
    int pf_room;              /* reads that prefetch may still issue (a late hint) */
    int *pf_list;             /* [max n_expert] scratch */
    uint8_t *slots;           /* n_slots * slot_bytes reserved */
    size_t slot_bytes;
    int64_t n_slots;          /* every (layer, expert) of the model */
    int32_t *free_slots;      /* stack, lowest index on top */
    int64_t n_free;
    uint8_t *faulted;         /* [n_slots]: 1 where the slot's pages are in memory */
    int64_t n_faulted;        /* slots with faulted set: the cache's real footprint */
    int64_t capacity;         /* entries the budget holds */
    int n_prefetch_loading;   /* prefetched entries still loading */
    void (*wait_hook)(void *); /* called before blocking on a read (store_set_wait_hook) */
    void *wait_ctx;
    policy_key *resv;         /* keys the current plan reserved [n_resv] */
    int n_resv, cap_resv;

    /* budget */
    int64_t budget;
    _Atomic int64_t budget_next; /* set by the watcher, applied by the next plan */
    _Atomic int reason;          /* pressure_reason of the last decision; -1 fixed */
    pressure_mon *mon;
    bool watching;
    /* for the watcher's reports (store_opts.on_sample) */
    void (*on_sample)(void *ctx, const store_sample *s);
    void *sample_ctx;
    int plan_layer;              /* the layer planned last; a lower one begins a step */
    _Atomic uint64_t steps;      /* forward steps begun */
    _Atomic int64_t used_bytes;  /* bytes of slots holding entries, at the last plan */

    /* counters (the reader keeps bytes, reads and latencies) */
    uint64_t requests, hits, misses, evictions;
    uint64_t prefetch_issued, prefetch_hits, prefetch_wasted;
    uint64_t stall_ns;
};

/* expert_cache.c */
void xcache_on_done(void *ctx, const reader_result *res);
/* Capacity for a budget: budget / slot_bytes within [k_used, n_slots]. */
int64_t xcache_capacity_for(const xcache *c, int64_t budget);

#endif
