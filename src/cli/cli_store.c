/*
 * cli_store.c — store options and counters for the CLI (cli_store.h).
 */
#include "cli/cli_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "store/pressure.h"

#define TIMELINE_MS 250

/* --timeline: one per process, written on store watcher threads (one per
 * open streaming store). */
static struct timeline {
    pthread_mutex_t mu;
    FILE *f;
    uint64_t t0_ns, last_ns;
    uint64_t last_steps;
    int64_t last_budget;
    bool started;
} g_tl = {.mu = PTHREAD_MUTEX_INITIALIZER};

store_opts cli_store_defaults(void)
{
    return (store_opts){.mode = STORE_STREAM, .watch = true};
}

static int bad(const char *cmd, const char *a, const char *v)
{
    fprintf(stderr, "spillway %s: %s '%s' for %s\n", cmd, v ? "bad value" : "missing value",
            v ? v : "", a);
    return -1;
}

/* A count, or null when unknown (or no limit). */
static void put_count(FILE *f, const char *key, int64_t v)
{
    if (pressure_known(v) && v != PRESSURE_UNLIMITED)
        fprintf(f, ",\"%s\":%lld", key, (long long)v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void put_pct(FILE *f, const char *key, double v)
{
    if (v >= 0)
        fprintf(f, ",\"%s\":%.2f", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void timeline_line(struct timeline *tl, const store_sample *x)
{
    const pressure_snapshot *s = x->mem;
    uint64_t now = s->time_ns;
    if (!tl->started) {
        tl->t0_ns = tl->last_ns = now;
        tl->last_steps = x->steps;
    } else if (x->budget == tl->last_budget &&
               now - tl->last_ns < (uint64_t)TIMELINE_MS * 900000u) {
        return; /* an extra sample while the budget fell: keep the pace */
    }
    double dt = (double)(now - tl->last_ns) * 1e-9;
    double tok_s = dt > 0 ? (double)(x->steps - tl->last_steps) / dt : 0;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    FILE *f = tl->f;
    fprintf(f, "{\"t\":%.3f,\"unix\":%.3f", (double)(now - tl->t0_ns) * 1e-9,
            (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9);
    put_count(f, "budget", x->budget);
    put_count(f, "room", x->room);
    put_count(f, "cache", x->cache_bytes);
    put_count(f, "rss", s->rss);
    put_count(f, "cg_usage", s->cg_usage);
    put_count(f, "cg_limit", s->cg_limit);
    put_count(f, "cg_failcnt", s->cg_max_events);
    put_count(f, "cg_oom_kill", s->cg_oom_kill);
    put_count(f, "mem_available", s->mem_available);
    put_pct(f, "psi_some10", s->cg_some.avg10 > s->some.avg10 ? s->cg_some.avg10 : s->some.avg10);
    put_pct(f, "psi_full10", s->cg_full.avg10 > s->full.avg10 ? s->cg_full.avg10 : s->full.avg10);
    fprintf(f, ",\"steps\":%llu,\"tok_s\":%.1f,\"reason\":\"%s\"}\n",
            (unsigned long long)x->steps, tok_s, x->reason);
    fflush(f);
    tl->started = true;
    tl->last_ns = now;
    tl->last_steps = x->steps;
    tl->last_budget = x->budget;
}

static void timeline_sample(void *ctx, const store_sample *x)
{
    struct timeline *tl = ctx;
    pthread_mutex_lock(&tl->mu);
    timeline_line(tl, x);
    pthread_mutex_unlock(&tl->mu);
}

/* --timeline FILE: opened now, closed at exit. */
static int timeline_open(store_opts *o, const char *cmd, const char *path)
{
    if (g_tl.f) {
        fprintf(stderr, "spillway %s: --timeline given twice\n", cmd);
        return -1;
    }
    g_tl.f = fopen(path, "we");
    if (!g_tl.f) {
        fprintf(stderr, "spillway %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        return -1;
    }
    o->on_sample = timeline_sample;
    o->sample_ctx = &g_tl;
    o->sample_ms = TIMELINE_MS;
    return 2;
}

int cli_store_arg(store_opts *o, const char *cmd, const char *a, const char *v)
{
    if (!strcmp(a, "--timeline"))
        return v ? timeline_open(o, cmd, v) : bad(cmd, a, v);
    if (!strcmp(a, "--mmap") || !strcmp(a, "--resident") || !strcmp(a, "--stream")) {
        o->mode = a[2] == 'm' ? STORE_MMAP : a[2] == 'r' ? STORE_RESIDENT : STORE_STREAM;
        return 1;
    }
    bool size = !strcmp(a, "--cache") || !strcmp(a, "--mem");
    if (!size && strcmp(a, "--cache-policy") && strcmp(a, "--prefetch"))
        return 0;
    if (!v)
        return bad(cmd, a, v);
    o->mode = STORE_STREAM;
    if (size) {
        long long n = cli_parse_size(v);
        if (n <= 0)
            return bad(cmd, a, v);
        *(!strcmp(a, "--cache") ? &o->cache_bytes : &o->mem_bytes) = n;
    } else if (!strcmp(a, "--prefetch")) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (end == v || *end || errno || n < 0 || n > 4096)
            return bad(cmd, a, v);
        o->prefetch = n ? (int)n : -1;
    } else {
        o->policy = v; /* checked when the store opens */
    }
    return 2;
}

static double mib(int64_t b)
{
    return (double)b / (1024.0 * 1024.0);
}

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

void cli_store_print(FILE *f, store *st)
{
    store_stats s;
    store_stats_get(st, &s);
    fprintf(f, "store:                %s, resident %.1f MiB\n", store_mode_name(s.mode),
            mib(s.resident_bytes));
    if (s.mode != STORE_STREAM || !s.total_entries)
        return;
    fprintf(f, "expert cache:         %lld of %lld entries (%.1f MiB budget, %s, %s; %.2f MiB/entry)\n",
            (long long)s.capacity, (long long)s.total_entries, mib(s.cache_budget), s.policy,
            s.budget_reason, mib(s.slot_bytes));
    fprintf(f, "expert requests:      %llu, hits %llu (%.1f%%), misses %llu, evictions %llu\n",
            (unsigned long long)s.requests, (unsigned long long)s.hits, pct(s.hits, s.requests),
            (unsigned long long)s.misses, (unsigned long long)s.evictions);
    fprintf(f, "prefetch:             %llu issued, %llu hits, %llu wasted; predictor precision "
               "%.1f%%, recall %.1f%%\n",
            (unsigned long long)s.prefetch_issued, (unsigned long long)s.prefetch_hits,
            (unsigned long long)s.prefetch_wasted, pct(s.predicted_right, s.predicted),
            pct(s.predicted_right, s.routed));
    for (int k = 0; k < STORE_N_PREDICTORS; k++) {
        uint64_t c[3];
        store_predictor_stats(st, k, -1, c);
        if (c[0])
            fprintf(f, "  predictor %-8s  precision %.1f%%, recall %.1f%% (%llu guesses)\n",
                    store_predictor_name(k), pct(c[1], c[0]), pct(c[1], c[2]),
                    (unsigned long long)c[0]);
    }
    fprintf(f, "expert reads:         %llu (%llu failed), %.1f MiB, latency p50 %.0f us, p99 %.0f "
               "us, stalled %.3fs (%s)\n",
            (unsigned long long)s.reads, (unsigned long long)s.read_errors,
            mib((int64_t)s.bytes_read), s.lat_p50_us, s.lat_p99_us, s.stall_s, s.reader);
    if (s.mem_available >= 0)
        fprintf(f, "memory:               %.0f MiB available, PSI some avg10 %.2f%%\n",
                mib(s.mem_available), s.psi_some_avg10);
}
