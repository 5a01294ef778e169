/*
 * pressure.h — how much memory the expert cache may use, now.
 *
 * The expert cache should take what the machine can spare and give it back
 * when something else needs it. This module reads the machine's memory
 * state and turns it into a budget, in three layers:
 *
 *   pressure_sample()   a snapshot of every counter that matters: PSI
 *                       (/proc/pressure/memory; the cgroup's
 *                       memory.pressure on v2), the process's memory cgroup
 *                       (v1: memory.limit_in_bytes, usage_in_bytes, stat,
 *                       oom_control, failcnt; v2: memory.max, high, current,
 *                       stat, events), /proc/meminfo and our own RSS. It
 *                       only reads files and never fails: a counter that is
 *                       not there is PRESSURE_UNKNOWN, never zero.
 *   pressure_target()   a pure function: snapshot + the cache's budget and
 *                       size + the policy's small memory -> the new budget
 *                       and why. Unit-tested with synthetic snapshots.
 *   pressure_watch_*()  optional background thread that samples when a PSI
 *                       trigger fires (poll POLLPRI), when a v1 cgroup's
 *                       usage rises a step above the last sample (an
 *                       eventfd armed through cgroup.event_control) or
 *                       every interval_ms, runs the policy and calls back
 *                       when the budget changes, and after every sample
 *                       (a timeline of the budget and the counters).
 *
 * The policy: keep MemAvailable above a headroom (max(10% of RAM, 1 GiB));
 * keep the cgroup's charge below its limit (the lower of memory.max and
 * memory.high) minus a margin (max(5% of the limit, min(256 MiB, 1/8 of
 * it)): a small cgroup keeps a small margin), counting the inactive page
 * cache charged to it as reclaimable; shrink at once when memory is over those lines, by a
 * step of the budget per sample while PSI says tasks stall or the cgroup
 * hit its limit; grow only after pressure has been gone for calm_ns, at
 * most every grow_every_ns and by a fraction of the room, so the budget
 * approaches the room from below instead of oscillating around it; ignore
 * changes smaller than a dead band (under a cgroup limit, at most a quarter
 * of the margin, so that what the dead band lets pass leaves most of it).
 *
 * Where files are: paths->proc (default /proc) and paths->cgroup (default
 * /sys/fs/cgroup). The cgroup directories come from <proc>/self/cgroup and
 * the cgroup mounts in <proc>/self/mountinfo, falling back to the usual
 * layout under paths->cgroup; tests point both at a fake tree.
 *
 * Threads: a monitor is read-only after pressure_open, so pressure_sample
 * may run on any thread, also while the watcher runs. The watcher's
 * callbacks run on its thread.
 */
#ifndef SW_PRESSURE_H
#define SW_PRESSURE_H

#include <stdint.h>

#include "util/err.h"

#define PRESSURE_UNKNOWN (-1)        /* a counter this machine did not give */
#define PRESSURE_UNLIMITED INT64_MAX /* a cgroup limit that is not set ("max") */

/* Is a counter known? (Every counter is >= 0 when known.) */
#define pressure_known(x) ((x) >= 0)

/* One PSI line: share of wall time some (or all: full) tasks stalled on
 * memory, as a percentage over 10/60/300 s, and the total in us. */
typedef struct pressure_psi {
    double avg10, avg60, avg300; /* PRESSURE_UNKNOWN when unknown */
    int64_t total_us;
} pressure_psi;

typedef struct pressure_snapshot {
    uint64_t time_ns; /* CLOCK_MONOTONIC when taken */

    /* /proc/meminfo, bytes */
    int64_t mem_total, mem_available, mem_free, cached, dirty, swap_total, swap_free;
    /* this process: resident set (/proc/self/statm), bytes */
    int64_t rss;
    /* the machine's PSI (/proc/pressure/memory) */
    pressure_psi some, full;

    /* the process's memory cgroup: 0 none found, 1 v1, 2 v2 */
    int cgroup;
    int64_t cg_limit;         /* hard limit, lowest over ancestors; UNLIMITED if none */
    int64_t cg_high;          /* v2 memory.high, lowest over ancestors; UNLIMITED if none */
    int64_t cg_usage;         /* charged now: v1 usage_in_bytes, v2 memory.current */
    int64_t cg_file;          /* page cache in it: v1 total_cache, v2 file */
    int64_t cg_inactive_file; /* of which inactive (reclaimed first) */
    int64_t cg_oom;           /* v2 memory.events oom */
    int64_t cg_oom_kill;      /* v2 memory.events oom_kill, v1 memory.oom_control oom_kill */
    int64_t cg_high_events;   /* v2 memory.events high */
    int64_t cg_max_events;    /* v2 memory.events max, v1 memory.failcnt */
    pressure_psi cg_some, cg_full; /* v2 memory.pressure */
} pressure_snapshot;

/* ---- the monitor -------------------------------------------------------- */

typedef struct pressure_paths {
    const char *proc;   /* NULL: "/proc" */
    const char *cgroup; /* NULL: "/sys/fs/cgroup" */
} pressure_paths;

typedef struct pressure_mon pressure_mon;

/* paths may be NULL. Fails only for lack of memory: a machine without PSI
 * or cgroups gives snapshots with those counters unknown. */
int pressure_open(const pressure_paths *paths, pressure_mon **out, sw_err *err);
/* Stops the watcher if it runs. */
void pressure_close(pressure_mon *m);

/* Where the numbers come from, for logs: "cgroup v1 /sys/fs/cgroup/memory/x;
 * PSI /proc/pressure/memory". */
const char *pressure_source(const pressure_mon *m);

/* Fills *s. Always 0: what cannot be read is PRESSURE_UNKNOWN. */
int pressure_sample(pressure_mon *m, pressure_snapshot *s);

/* ---- the policy (pure) -------------------------------------------------- */

typedef struct pressure_policy {
    int64_t min_budget;     /* never below (enough for one layer's experts) */
    int64_t max_budget;     /* never above (every expert cached); <= 0: no cap */
    double headroom_frac;   /* keep MemAvailable >= max(headroom_frac * MemTotal, */
    int64_t headroom_min;   /*                          headroom_min) */
    double cg_margin_frac;  /* keep the cgroup's charge <= limit - max(frac * limit, */
    int64_t cg_margin_min;  /*                  min(margin_min, limit / 8)) */
    double psi_high;        /* PSI some avg10 (%) at which the budget shrinks */
    double psi_calm;        /* ... below which it may grow again */
    double shrink_step;     /* share of the budget given up per sample under pressure */
    double grow_step;       /* share of the room taken per growth */
    int64_t deadband;       /* smaller changes are not made */
    uint64_t calm_ns;       /* no pressure for this long before growing */
    uint64_t grow_every_ns; /* at most one growth per this */
} pressure_policy;

/* The defaults above: 10% / 1 GiB headroom, 5% / 256 MiB cgroup margin,
 * PSI 10% / 1%, shrink 1/8, grow 1/4 of the room, 32 MiB dead band, 10 s
 * calm, growth every 2 s. min_budget 0, max_budget none. */
void pressure_policy_default(pressure_policy *p);

/* What the policy remembers between samples; zero it to start. */
typedef struct pressure_state {
    uint64_t last_pressure_ns, last_grow_ns;
    int64_t oom_kill, max_events; /* event counts seen last */
    int started;
} pressure_state;

/* The cache's side of the picture. */
typedef struct pressure_input {
    int64_t budget;      /* the budget now */
    int64_t cache_bytes; /* bytes the cache holds now */
    int64_t other_bytes; /* the rest of this process; PRESSURE_UNKNOWN: rss - cache_bytes */
} pressure_input;

typedef enum {
    PRESSURE_HOLD,         /* nothing to change */
    PRESSURE_GROW,         /* pressure gone long enough, room to take */
    PRESSURE_SHRINK_ROOM,  /* over the headroom or the cgroup margin */
    PRESSURE_SHRINK_PSI,   /* tasks stall on memory */
    PRESSURE_SHRINK_EVENT, /* the cgroup hit its limit or killed something */
    PRESSURE_BLIND,        /* no counter known: the budget stays */
} pressure_reason;

typedef struct pressure_decision {
    int64_t target;  /* the new budget */
    int64_t room;    /* the most the cache could hold now; PRESSURE_UNLIMITED if unbounded */
    pressure_reason reason;
    double psi;      /* the PSI some avg10 it went by; PRESSURE_UNKNOWN */
} pressure_decision;

/* The budget for now. Pure but for *st, which it updates. A starting cache
 * may take min(room, max_budget) at once instead of growing to it. */
pressure_decision pressure_target(const pressure_policy *p, const pressure_snapshot *s,
                                  const pressure_input *in, pressure_state *st);
const char *pressure_reason_name(pressure_reason r);
/* The margin the policy keeps below a cgroup limit (limit known, not
 * PRESSURE_UNLIMITED). */
int64_t pressure_cg_margin(const pressure_policy *p, int64_t limit);

/* ---- the watcher -------------------------------------------------------- */

typedef struct pressure_watch_opts {
    pressure_policy policy; /* start from pressure_policy_default() */
    int64_t budget;  /* to start from */
    int interval_ms; /* sample at least this often; 0: 1000 */
    int64_t psi_stall_us, psi_window_us; /* trigger; 0: 150 ms stalled per 1 s */
    /* Fills cache_bytes and other_bytes (budget is the watcher's own);
     * NULL: the cache is taken to hold its budget. Runs on the watcher. */
    void (*usage)(void *ctx, pressure_input *in);
    /* The budget changed. Runs on the watcher's thread. */
    void (*on_change)(void *ctx, const pressure_decision *d, const pressure_snapshot *s);
    /* After every sample, the budget changed or not (d: the policy's
     * decision, target the budget now). NULL: none. Runs on the watcher's
     * thread, after on_change. */
    void (*on_sample)(void *ctx, const pressure_decision *d, const pressure_snapshot *s);
    void *ctx;
    /* Sample and report only: the budget stays (a fixed budget watched for
     * a timeline); on_change may then be NULL. */
    int fixed;
} pressure_watch_opts;

int pressure_watch_start(pressure_mon *m, const pressure_watch_opts *o, sw_err *err);
void pressure_watch_stop(pressure_mon *m);
/* PSI triggers and cgroup thresholds the watcher armed (0: it samples on
 * its timer only). */
int pressure_watch_triggers(const pressure_mon *m);

#endif
