/* test_pressure.c — the memory-pressure monitor (src/store/pressure.h):
 * parsers against fake /proc and cgroup trees, unknown counters, the budget
 * policy on synthetic snapshots, the watcher, and the live machine. */
#include "test.h"
#include "store/pressure.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB ((int64_t)1 << 10)
#define MIB ((int64_t)1 << 20)
#define GIB ((int64_t)1 << 30)
#define SEC 1000000000ull

/* Writes text to root/rel, creating directories; 0 or -1. Atomic (rename),
 * so a watcher never reads half a file. */
static int put(const char *root, const char *rel, const char *text)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + 1; (p = strchr(p, '/')); p++) {
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static const char *k_meminfo =
    "MemTotal:       24684092 kB\n"
    "MemFree:        20000000 kB\n"
    "MemAvailable:   22000000 kB\n"
    "Buffers:          100000 kB\n"
    "Cached:          1500000 kB\n"
    "SwapCached:            0 kB\n"
    "Dirty:               128 kB\n"
    "SwapTotal:       2097148 kB\n"
    "SwapFree:        2097000 kB\n";

static const char *k_psi = "some avg10=12.34 avg60=0.05 avg300=100.00 total=123456789\n"
                           "full avg10=0.50 avg60=0.00 avg300=0.00 total=42\n";

/* The common /proc files of a fake tree at root/proc. */
static void fake_proc(const char *root)
{
    char proc[1024];
    snprintf(proc, sizeof proc, "%s/proc", root);
    put(proc, "meminfo", k_meminfo);
    put(proc, "self/statm", "100000 2500 300 10 0 5000 0\n");
    put(proc, "pressure/memory", k_psi);
}

static pressure_mon *open_fake(const char *root, const char *cgroot)
{
    char proc[1024], cg[1024];
    snprintf(proc, sizeof proc, "%s/proc", root);
    snprintf(cg, sizeof cg, "%s/%s", root, cgroot);
    pressure_paths paths = {proc, cg};
    pressure_mon *m = NULL;
    sw_err e = {0};
    if (pressure_open(&paths, &m, &e) != 0)
        fprintf(stderr, "    %s\n", e.msg);
    return m;
}

TEST(pressure_meminfo_psi_rss)
{
    const char *t = test_tmpdir();
    fake_proc(t);
    pressure_mon *m = open_fake(t, "nocgroup");
    CHECK(m != NULL);
    pressure_snapshot s;
    CHECK(pressure_sample(m, &s) == 0);
    CHECK(s.mem_total == 24684092 * KIB);
    CHECK(s.mem_available == 22000000 * KIB);
    CHECK(s.mem_free == 20000000 * KIB);
    CHECK(s.cached == 1500000 * KIB); /* not SwapCached */
    CHECK(s.dirty == 128 * KIB);
    CHECK(s.swap_total == 2097148 * KIB && s.swap_free == 2097000 * KIB);
    CHECK(s.rss == 2500 * (int64_t)sysconf(_SC_PAGESIZE));
    CHECK(fabs(s.some.avg10 - 12.34) < 1e-9 && fabs(s.some.avg60 - 0.05) < 1e-9);
    CHECK(fabs(s.some.avg300 - 100.0) < 1e-9 && s.some.total_us == 123456789);
    CHECK(fabs(s.full.avg10 - 0.5) < 1e-9 && s.full.total_us == 42);
    CHECK(s.cgroup == 0 && s.cg_limit == PRESSURE_UNKNOWN && s.cg_usage == PRESSURE_UNKNOWN);
    CHECK(s.cg_some.avg10 == PRESSURE_UNKNOWN);
    CHECK_HAS(pressure_source(m), "no memory cgroup");
    pressure_close(m);
}

TEST(pressure_unknown_not_zero)
{
    const char *t = test_tmpdir();
    char proc[1024];
    snprintf(proc, sizeof proc, "%s/proc", t);
    /* an old kernel: no MemAvailable, no PSI; a malformed Dirty line */
    put(proc, "meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\nDirty: lots kB\n");
    put(proc, "pressure/memory", "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n");
    pressure_mon *m = open_fake(t, "nocgroup");
    CHECK(m != NULL);
    pressure_snapshot s;
    pressure_sample(m, &s);
    CHECK(s.mem_total == 1000 * KIB && s.mem_free == 500 * KIB);
    CHECK(s.mem_available == PRESSURE_UNKNOWN && s.cached == PRESSURE_UNKNOWN);
    CHECK(s.dirty == PRESSURE_UNKNOWN && s.swap_total == PRESSURE_UNKNOWN);
    CHECK(s.rss == PRESSURE_UNKNOWN);
    CHECK(s.some.avg10 == 1.0 && s.some.total_us == 4);
    CHECK(s.full.avg10 == PRESSURE_UNKNOWN && s.full.total_us == PRESSURE_UNKNOWN);
    CHECK(!pressure_known(s.full.avg60) && pressure_known(s.some.avg300));
    pressure_close(m);

    /* nothing at all */
    pressure_paths none = {"/nonexistent/proc", "/nonexistent/cg"};
    CHECK(pressure_open(&none, &m, NULL) == 0);
    pressure_sample(m, &s);
    CHECK(s.mem_total == PRESSURE_UNKNOWN && s.mem_available == PRESSURE_UNKNOWN);
    CHECK(s.some.avg10 == PRESSURE_UNKNOWN && s.cgroup == 0);
    CHECK_HAS(pressure_source(m), "(absent)");
    pressure_close(m);
}

static const char *k_v1_stat = "cache 2097152\n"
                               "rss 1048576\n"
                               "inactive_file 524288\n"
                               "hierarchical_memory_limit 8589934592\n"
                               "total_cache 3145728\n"
                               "total_rss 1048576\n"
                               "total_inactive_file 1048576\n"
                               "total_active_file 2097152\n";

TEST(pressure_cgroup_v1)
{
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024], dir[1024], line[4096];
    snprintf(proc, sizeof proc, "%s/proc", t);
    put(proc, "self/cgroup", "12:pids:/jobs/a\n4:memory:/jobs/a\n1:name=systemd:/\n0::/\n");
    snprintf(line, sizeof line,
             "22 1 0:20 / /proc rw,nosuid - proc proc rw\n"
             "35 31 0:32 / %s/sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
             "36 31 0:33 / %s/sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n", t, t);
    put(proc, "self/mountinfo", line);
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/memory/jobs/a", t);
    put(dir, "memory.limit_in_bytes", "9223372036854771712\n");
    put(dir, "memory.usage_in_bytes", "5242880\n");
    put(dir, "memory.stat", k_v1_stat);
    put(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    put(dir, "memory.failcnt", "17\n");
    pressure_mon *m = open_fake(t, "sys/fs/cgroup");
    CHECK(m != NULL);
    CHECK_HAS(pressure_source(m), "cgroup v1 memory");
    CHECK_HAS(pressure_source(m), "/jobs/a");
    pressure_snapshot s;
    pressure_sample(m, &s);
    CHECK(s.cgroup == 1);
    CHECK(s.cg_limit == 8 * GIB); /* the hierarchical limit, not the local "none" */
    CHECK(s.cg_usage == 5 * MIB);
    CHECK(s.cg_file == 3 * MIB && s.cg_inactive_file == 1 * MIB); /* total_* win */
    CHECK(s.cg_oom_kill == 3 && s.cg_max_events == 17);
    CHECK(s.cg_oom == PRESSURE_UNKNOWN && s.cg_high == PRESSURE_UNKNOWN);

    /* no hierarchical limit, local "none": unlimited, not unknown */
    put(dir, "memory.stat", "cache 1\n");
    pressure_sample(m, &s);
    CHECK(s.cg_limit == PRESSURE_UNLIMITED && s.cg_file == 1);
    CHECK(s.cg_inactive_file == PRESSURE_UNKNOWN);
    pressure_close(m);
}

TEST(pressure_cgroup_v1_container_root)
{
    /* A container: the memory hierarchy is mounted from /docker/c1 and the
     * process sits in /docker/c1/app. */
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024], dir[1024], line[4096];
    snprintf(proc, sizeof proc, "%s/proc", t);
    put(proc, "self/cgroup", "4:cpu,memory:/docker/c1/app\n");
    snprintf(line, sizeof line,
             "35 31 0:32 /docker/c1 %s/cg\\040mem rw - cgroup cgroup rw,cpu,memory\n", t);
    put(proc, "self/mountinfo", line);
    snprintf(dir, sizeof dir, "%s/cg mem/app", t);
    put(dir, "memory.limit_in_bytes", "1073741824\n");
    put(dir, "memory.usage_in_bytes", "1000\n");
    pressure_mon *m = open_fake(t, "unused");
    CHECK(m != NULL);
    pressure_snapshot s;
    pressure_sample(m, &s);
    CHECK(s.cgroup == 1 && s.cg_limit == GIB && s.cg_usage == 1000);
    CHECK(s.cg_file == PRESSURE_UNKNOWN && s.cg_max_events == PRESSURE_UNKNOWN);
    pressure_close(m);
}

static void fake_v2(const char *t, const char *top)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/user.slice", top);
    put(dir, "memory.max", "8589934592\n");
    put(dir, "memory.high", "max\n");
    snprintf(dir, sizeof dir, "%s/user.slice/app", top);
    put(dir, "memory.max", "max\n");
    put(dir, "memory.high", "6442450944\n");
    put(dir, "memory.current", "4294967296\n");
    put(dir, "memory.stat", "anon 1073741824\nfile 2147483648\nactive_file 1073741824\n"
                            "inactive_file 536870912\nfile_mapped 0\n");
    put(dir, "memory.events", "low 0\nhigh 5\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n");
    put(dir, "memory.pressure", "some avg10=3.00 avg60=1.00 avg300=0.50 total=999\n"
                                "full avg10=1.50 avg60=0.00 avg300=0.00 total=7\n");
    put(top, "cgroup.controllers", "cpu memory pids\n");
}

TEST(pressure_cgroup_v2)
{
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024], top[1024], line[4096];
    snprintf(proc, sizeof proc, "%s/proc", t);
    snprintf(top, sizeof top, "%s/unified", t);
    put(proc, "self/cgroup", "0::/user.slice/app\n");
    snprintf(line, sizeof line, "30 1 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", top);
    put(proc, "self/mountinfo", line);
    fake_v2(t, top);
    pressure_mon *m = open_fake(t, "unused");
    CHECK(m != NULL);
    CHECK_HAS(pressure_source(m), "cgroup v2");
    pressure_snapshot s;
    pressure_sample(m, &s);
    CHECK(s.cgroup == 2);
    CHECK(s.cg_limit == 8 * GIB);  /* from the parent */
    CHECK(s.cg_high == 6 * GIB);   /* from the cgroup itself */
    CHECK(s.cg_usage == 4 * GIB);
    CHECK(s.cg_file == 2 * GIB && s.cg_inactive_file == 512 * MIB);
    CHECK(s.cg_high_events == 5 && s.cg_max_events == 2 && s.cg_oom == 1 && s.cg_oom_kill == 1);
    CHECK(s.cg_some.avg10 == 3.0 && s.cg_full.avg10 == 1.5 && s.cg_some.total_us == 999);
    CHECK(fabs(s.some.avg10 - 12.34) < 1e-9); /* the machine's PSI as well */
    pressure_close(m);
}

TEST(pressure_cgroup_v2_default_layout)
{
    /* No mountinfo: the usual layout under the cgroup root is assumed. */
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024], top[1024];
    snprintf(proc, sizeof proc, "%s/proc", t);
    snprintf(top, sizeof top, "%s/cgroot", t);
    put(proc, "self/cgroup", "0::/user.slice/app\n");
    fake_v2(t, top);
    pressure_mon *m = open_fake(t, "cgroot");
    CHECK(m != NULL);
    pressure_snapshot s;
    pressure_sample(m, &s);
    CHECK(s.cgroup == 2 && s.cg_limit == 8 * GIB && s.cg_usage == 4 * GIB);

    /* a v2 hierarchy without the memory controller (hybrid mode): its
     * pressure file is read, its counters are unknown */
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/user.slice/app/memory.current", top);
    CHECK(unlink(dir) == 0);
    pressure_close(m);
    m = open_fake(t, "cgroot");
    pressure_sample(m, &s);
    CHECK(s.cgroup == 0 && s.cg_limit == PRESSURE_UNKNOWN);
    CHECK(s.cg_some.avg10 == 3.0);
    CHECK_HAS(pressure_source(m), "no memory controller");
    pressure_close(m);
}

/* ---- the policy ---------------------------------------------------------- */

/* A calm 24 GiB machine, no cgroup, nothing else known. */
static pressure_snapshot calm(int64_t avail)
{
    pressure_snapshot s;
    memset(&s, 0xff, sizeof s); /* every int64 -1: unknown */
    s.time_ns = 1000 * SEC;
    s.cgroup = 0;
    s.some = s.full = s.cg_some = s.cg_full =
        (pressure_psi){PRESSURE_UNKNOWN, PRESSURE_UNKNOWN, PRESSURE_UNKNOWN, PRESSURE_UNKNOWN};
    s.mem_total = 24 * GIB;
    s.mem_available = avail;
    s.some.avg10 = s.full.avg10 = 0;
    return s;
}

TEST(pressure_policy_grows_slowly_to_the_room)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(10 * GIB);
    pressure_input in = {.budget = 2 * GIB, .cache_bytes = 2 * GIB, .other_bytes = GIB};
    /* room = 10 GiB available + 2 GiB cached - 2.4 GiB headroom = 9.6 GiB */
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    int64_t room = 12 * GIB - (int64_t)(0.1 * (double)(24 * GIB));
    CHECK(d.room == room);
    CHECK(d.reason == PRESSURE_GROW);
    CHECK(d.target == 2 * GIB + (int64_t)(0.25 * (double)(room - 2 * GIB)));
    /* at once again: too soon */
    in.budget = d.target;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD && d.target == in.budget);
    /* every 2 s a quarter of what is left; never past the room */
    int steps = 0;
    do {
        s.time_ns += 2 * SEC;
        s.mem_available -= in.budget - in.cache_bytes; /* the cache fills its budget */
        in.cache_bytes = in.budget;
        d = pressure_target(&p, &s, &in, &st);
        CHECK(d.room == room && d.target <= room);
        in.budget = d.target;
        steps++;
    } while (steps < 100 && d.reason != PRESSURE_HOLD);
    CHECK(room - in.budget < p.deadband);
    CHECK(steps > 5); /* slowly */
}

TEST(pressure_policy_shrinks_at_once_when_memory_goes)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(GIB); /* something else took the memory */
    pressure_input in = {.budget = 8 * GIB, .cache_bytes = 8 * GIB, .other_bytes = GIB};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    int64_t room = GIB + 8 * GIB - (int64_t)(0.1 * (double)(24 * GIB));
    CHECK(d.reason == PRESSURE_SHRINK_ROOM && d.target == room);
    /* less than the dead band over: hold (hysteresis) */
    in.budget = in.cache_bytes = room + 16 * MIB;
    s.mem_available = GIB + 8 * GIB - in.cache_bytes - 8 * MIB; /* room is 24 MiB short */
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD && d.target == in.budget);
    /* nothing left: down to min_budget, never below */
    p.min_budget = 512 * MIB;
    s.mem_available = 0;
    in.budget = in.cache_bytes = 2 * GIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 0 && d.target == 512 * MIB);
}

TEST(pressure_policy_psi_shrinks_then_waits)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(16 * GIB);
    pressure_input in = {.budget = 8 * GIB, .cache_bytes = 8 * GIB, .other_bytes = GIB};
    s.some.avg10 = 25;
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_PSI && d.target == 7 * GIB); /* 1/8 */
    CHECK(d.psi == 25);
    s.full.avg10 = 8; /* everything stalls: twice the step */
    in.budget = in.cache_bytes = d.target;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.target == 7 * GIB - 7 * GIB / 4);
    /* the cgroup's PSI counts as much as the machine's */
    s.some.avg10 = s.full.avg10 = 0;
    s.cg_some.avg10 = 11;
    in.budget = in.cache_bytes = d.target;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_PSI);
    /* PSI between calm and high: hold */
    s.cg_some.avg10 = 5;
    s.time_ns += 60 * SEC;
    in.budget = in.cache_bytes = d.target;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD);
    /* calm, but the stall was under 10 s ago: hold; later: grow */
    s.cg_some.avg10 = 0.5;
    s.some.avg10 = 30;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_PSI);
    in.budget = in.cache_bytes = d.target;
    s.some.avg10 = 0.2;
    s.time_ns += 9 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD);
    s.time_ns += 2 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_GROW && d.target > in.budget);
}

/* Machine-wide stalls while nobody reclaims machine-wide (plenty free) are
 * other cgroups at their own limits: hold. The cgroup's own stalls count. */
TEST(pressure_policy_ignores_other_cgroups_stalls)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(16 * GIB);
    pressure_input in = {.budget = 8 * GIB, .cache_bytes = 8 * GIB, .other_bytes = GIB};
    s.some.avg10 = 30;
    s.full.avg10 = 20;
    s.mem_free = 12 * GIB;
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD && d.target == in.budget);
    s.cg_some.avg10 = 12; /* our own cgroup stalls */
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_PSI && d.target < in.budget);
    s.cg_some.avg10 = PRESSURE_UNKNOWN;
    s.mem_free = 1 * GIB; /* the machine reclaims: its stalls count again */
    in.budget = in.cache_bytes = 8 * GIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_PSI && d.psi == 30);
}

TEST(pressure_policy_cgroup_limit)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(20 * GIB);
    s.cgroup = 1;
    s.cg_limit = 8 * GIB;
    s.cg_usage = 7 * GIB; /* 3 GiB of it the cache, 1 GiB inactive page cache */
    s.cg_inactive_file = GIB;
    pressure_input in = {.budget = 4 * GIB, .cache_bytes = 3 * GIB, .other_bytes = GIB};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    int64_t margin = (int64_t)(0.05 * (double)(8 * GIB)); /* > 256 MiB */
    int64_t room = 8 * GIB - margin - (7 * GIB - 3 * GIB - GIB);
    CHECK(d.room == room);
    CHECK(d.reason == PRESSURE_GROW && d.target <= room);
    /* memory.high below memory.max binds */
    s.cg_high = 6 * GIB;
    in.budget = 5 * GIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 6 * GIB - (int64_t)(0.05 * (double)(6 * GIB)) - 3 * GIB);
    CHECK(d.reason == PRESSURE_SHRINK_ROOM && d.target == d.room);
    /* unlimited cgroup: the machine alone decides */
    s.cg_limit = s.cg_high = PRESSURE_UNLIMITED;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 20 * GIB + 3 * GIB - (int64_t)(0.1 * (double)(24 * GIB)));
    /* usage unknown: the rest of the process is what is charged */
    s.cg_limit = 4 * GIB;
    s.cg_usage = PRESSURE_UNKNOWN;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 4 * GIB - 256 * MIB - GIB);
}

TEST(pressure_policy_small_cgroup)
{
    /* A 320 MiB cgroup: the margin is 1/8 of it (not 256 MiB, which would
     * leave no room at all) and the dead band at most a quarter of that. */
    pressure_policy p;
    pressure_policy_default(&p);
    CHECK(pressure_cg_margin(&p, 320 * MIB) == 40 * MIB);
    CHECK(pressure_cg_margin(&p, 8 * GIB) == (int64_t)(0.05 * (double)(8 * GIB)));
    CHECK(pressure_cg_margin(&p, 4 * GIB) == 256 * MIB);
    pressure_state st = {0};
    pressure_snapshot s = calm(20 * GIB);
    s.cgroup = 1;
    s.cg_limit = 320 * MIB;
    s.cg_usage = 200 * MIB; /* 100 MiB of it the cache */
    s.cg_inactive_file = 0;
    pressure_input in = {.budget = 100 * MIB, .cache_bytes = 100 * MIB,
                         .other_bytes = PRESSURE_UNKNOWN};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 320 * MIB - 40 * MIB - 100 * MIB);
    CHECK(d.reason == PRESSURE_GROW && d.target > in.budget && d.target <= d.room);
    /* the cache at 180 MiB, then something else takes 15 MiB: 15 over the
     * room is past the 10 MiB dead band, so the cache shrinks at once */
    in.budget = in.cache_bytes = 180 * MIB;
    s.cg_usage = 100 * MIB + 180 * MIB + 15 * MIB;
    s.time_ns += 10 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_ROOM && d.target == 165 * MIB);
    /* 8 MiB over: within the dead band, and still 32 MiB under the limit */
    s.cg_usage = 100 * MIB + 180 * MIB + 8 * MIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD && d.target == 180 * MIB);
}

TEST(pressure_policy_events)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(16 * GIB);
    s.cgroup = 2;
    s.cg_limit = PRESSURE_UNLIMITED;
    s.cg_max_events = 5; /* old events: not news */
    s.cg_oom_kill = 0;
    pressure_input in = {.budget = 8 * GIB, .cache_bytes = 8 * GIB, .other_bytes = GIB};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason != PRESSURE_SHRINK_EVENT);
    s.cg_max_events = 6;
    s.time_ns += 5 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_EVENT && d.target == 6 * GIB); /* 2 x 1/8 */
    s.cg_oom_kill = 1;
    in.budget = d.target;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_EVENT);
    /* counters gone unknown: no event */
    s.cg_oom_kill = s.cg_max_events = PRESSURE_UNKNOWN;
    in.budget = d.target;
    s.time_ns += 1 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_HOLD); /* and too soon to grow */
}

TEST(pressure_policy_blind_and_caps)
{
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_snapshot s = calm(0);
    s.mem_total = s.mem_available = PRESSURE_UNKNOWN;
    s.some.avg10 = s.full.avg10 = PRESSURE_UNKNOWN;
    pressure_input in = {.budget = 3 * GIB, .cache_bytes = 3 * GIB, .other_bytes = PRESSURE_UNKNOWN};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_BLIND && d.target == 3 * GIB && d.room == PRESSURE_UNLIMITED);
    /* MemTotal alone: the rest of the process (RSS less the cache) is used */
    s.mem_total = 16 * GIB;
    s.rss = 5 * GIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.room == 16 * GIB - (int64_t)(0.1 * (double)(16 * GIB)) - 2 * GIB);
    /* max_budget caps growth and the budget itself */
    s = calm(20 * GIB);
    p.max_budget = 4 * GIB;
    in.budget = in.cache_bytes = 5 * GIB;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_SHRINK_ROOM && d.target == 4 * GIB);
    in.budget = in.cache_bytes = 3 * GIB;
    s.time_ns += 100 * SEC;
    d = pressure_target(&p, &s, &in, &st);
    CHECK(d.reason == PRESSURE_GROW && d.target <= 4 * GIB);
    CHECK_STR(pressure_reason_name(PRESSURE_GROW), "grow");
}

/* ---- the watcher --------------------------------------------------------- */

struct seen {
    pthread_mutex_t mu;
    int calls;
    int64_t last;
    pressure_reason reason;
};

static void on_change(void *ctx, const pressure_decision *d, const pressure_snapshot *s)
{
    struct seen *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->last = d->target;
    w->reason = d->reason;
    pthread_mutex_unlock(&w->mu);
}

/* Waits (up to 20 s) until the watcher reported reason, and target if
 * target >= 0; returns the target, or -1. */
static int64_t wait_for(struct seen *w, pressure_reason reason, int64_t target)
{
    for (int i = 0; i < 4000; i++) {
        pthread_mutex_lock(&w->mu);
        int64_t t = w->calls && w->reason == reason && (target < 0 || w->last == target) ? w->last : -1;
        pthread_mutex_unlock(&w->mu);
        if (t >= 0)
            return t;
        usleep(5000);
    }
    return -1;
}

TEST(pressure_watcher_follows_a_fake_machine)
{
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024];
    snprintf(proc, sizeof proc, "%s/proc", t);
    put(proc, "pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    pressure_mon *m = open_fake(t, "nocgroup");
    CHECK(m != NULL);
    struct seen w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pressure_watch_opts o = {.budget = GIB, .interval_ms = 5, .on_change = on_change, .ctx = &w};
    pressure_policy_default(&o.policy);
    o.policy.calm_ns = 0;
    o.policy.grow_every_ns = 0;
    sw_err e = {0};
    CHECK(pressure_watch_start(m, &o, &e) == 0);
    CHECK(pressure_watch_start(m, &o, &e) == SW_EINVAL);
    CHECK(pressure_watch_triggers(m) == 0); /* never on a plain file */
    CHECK(wait_for(&w, PRESSURE_GROW, -1) > GIB);
    /* The memory is gone, and it stays gone however much the cache gives
     * back (nothing here frees it): the budget falls to nothing. */
    put(proc, "meminfo", "MemTotal: 24684092 kB\nMemAvailable: 1000 kB\n");
    CHECK(wait_for(&w, PRESSURE_SHRINK_ROOM, 0) == 0);
    pressure_watch_stop(m);
    pressure_watch_stop(m); /* twice is fine */
    pressure_close(m);
}

struct sampled {
    pthread_mutex_t mu;
    int samples;
    int64_t target;
};

static void on_sample(void *ctx, const pressure_decision *d, const pressure_snapshot *s)
{
    struct sampled *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->samples++;
    w->target = d->target;
    pthread_mutex_unlock(&w->mu);
}

TEST(pressure_watcher_fixed_reports_only)
{
    /* A fixed budget watched for a timeline: every sample is reported, the
     * budget never moves however little memory is left. */
    const char *t = test_tmpdir();
    fake_proc(t);
    char proc[1024];
    snprintf(proc, sizeof proc, "%s/proc", t);
    put(proc, "meminfo", "MemTotal: 24684092 kB\nMemAvailable: 1000 kB\n");
    pressure_mon *m = open_fake(t, "nocgroup");
    CHECK(m != NULL);
    struct sampled w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pressure_watch_opts o = {.budget = GIB, .interval_ms = 5, .on_sample = on_sample, .ctx = &w,
                             .fixed = 1};
    pressure_policy_default(&o.policy);
    sw_err e = {0};
    CHECK(pressure_watch_start(m, &o, &e) == 0);
    int n = 0, moved = 0;
    for (int i = 0; i < 4000 && n < 10; i++) {
        usleep(5000);
        pthread_mutex_lock(&w.mu);
        n = w.samples;
        moved |= n > 0 && w.target != GIB;
        pthread_mutex_unlock(&w.mu);
    }
    pressure_watch_stop(m);
    CHECK(n >= 10);
    CHECK(!moved && w.target == GIB);
    /* without fixed, on_change is required */
    o.fixed = 0;
    CHECK(pressure_watch_start(m, &o, &e) == SW_EINVAL);
    pressure_close(m);
}

/* ---- the live machine ---------------------------------------------------- */

TEST(pressure_live_machine)
{
    pressure_mon *m = NULL;
    sw_err e = {0};
    CHECK(pressure_open(NULL, &m, &e) == 0);
    pressure_snapshot s;
    CHECK(pressure_sample(m, &s) == 0);
    fprintf(stderr, "    %s\n", pressure_source(m));
    fprintf(stderr, "    MemTotal %lld MiB, MemAvailable %lld MiB, RSS %lld MiB, PSI some %.2f\n",
            (long long)(s.mem_total >> 20), (long long)(s.mem_available >> 20),
            (long long)(s.rss >> 20), s.some.avg10);
    CHECK(s.mem_total > 64 * MIB);
    CHECK(s.mem_available > 0 && s.mem_available <= s.mem_total);
    CHECK(s.rss > 0 && s.rss < s.mem_total);
    CHECK(s.mem_free > 0 && s.swap_total >= 0);
    if (access("/proc/pressure/memory", R_OK) == 0)
        CHECK(s.some.avg10 >= 0 && s.some.avg10 <= 100 && s.some.total_us >= 0);
    if (s.cgroup) {
        char lim[32] = "unlimited";
        if (s.cg_limit != PRESSURE_UNLIMITED)
            snprintf(lim, sizeof lim, "%lld MiB", (long long)(s.cg_limit >> 20));
        fprintf(stderr, "    cgroup v%d: limit %s, usage %lld MiB, page cache %lld MiB\n",
                s.cgroup, lim, (long long)(s.cg_usage >> 20), (long long)(s.cg_file >> 20));
        CHECK(pressure_known(s.cg_usage) && s.cg_usage > 0);
        CHECK(pressure_known(s.cg_limit));
    }
    pressure_policy p;
    pressure_policy_default(&p);
    pressure_state st = {0};
    pressure_input in = {.budget = 0, .cache_bytes = 0, .other_bytes = PRESSURE_UNKNOWN};
    pressure_decision d = pressure_target(&p, &s, &in, &st);
    fprintf(stderr, "    room for a cache: %lld MiB (%s)\n", (long long)(d.room >> 20),
            pressure_reason_name(d.reason));
    CHECK(d.room < s.mem_total);
    struct seen w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pressure_watch_opts o = {.budget = 0, .interval_ms = 50, .on_change = on_change, .ctx = &w};
    pressure_policy_default(&o.policy);
    CHECK(pressure_watch_start(m, &o, &e) == 0);
    fprintf(stderr, "    PSI triggers armed: %d\n", pressure_watch_triggers(m));
    pressure_watch_stop(m);
    pressure_close(m);
}
