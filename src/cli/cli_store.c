/*
 * cli_store.c — store options and counters for the CLI (cli_store.h).
 */
#include "cli/cli_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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

int cli_store_arg(store_opts *o, const char *cmd, const char *a, const char *v)
{
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
    fprintf(f, "expert reads:         %llu (%llu failed), %.1f MiB, latency p50 %.0f us, p99 %.0f "
               "us, stalled %.3fs (%s)\n",
            (unsigned long long)s.reads, (unsigned long long)s.read_errors,
            mib((int64_t)s.bytes_read), s.lat_p50_us, s.lat_p99_us, s.stall_s, s.reader);
    if (s.mem_available >= 0)
        fprintf(f, "memory:               %.0f MiB available, PSI some avg10 %.2f%%\n",
                mib(s.mem_available), s.psi_some_avg10);
}
