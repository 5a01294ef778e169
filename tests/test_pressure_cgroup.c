/* test_pressure_cgroup.c — the automatic expert-cache budget in a real
 * memory cgroup (v1 memory controller, or v2 where it has one).
 *
 * The scenario of the issue: `spillway serve` on a generated MoE (about
 * 490 MB) runs in a cgroup limited to 320 MiB while a client keeps it
 * generating; a second process in the same cgroup then allocates and
 * touches 64 MiB and holds it. spillway must shrink its cache (RSS falls),
 * keep generating, never be OOM-killed, and grow the cache back once the
 * other process is gone. What happened is read from its --timeline.
 *
 * Nothing here waits for a fixed time: every phase polls the timeline
 * against a generous deadline. Where no memory cgroup can be made (not
 * root, no memory controller, a read-only cgroupfs) the tests skip.
 */
#include "test.h"
#include "serve_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/pressure.h"

#define MIB ((int64_t)1 << 20)
#define LIMIT (320 * MIB) /* the cgroup: smaller than the model */
#define HOG (64 * MIB)    /* what the other process takes */

/* ---- a memory cgroup of our own ----------------------------------------- */

typedef struct cgroup {
    int version; /* 1 or 2 */
    char dir[1100];
} cgroup;

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The value after "key " in dir/name (memory.oom_control, memory.events),
 * or the file's first number when key is NULL; -1 if absent. */
static long long read_key(const char *dir, const char *name, const char *key)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *t = test_read_file(path, NULL);
    if (!t)
        return -1;
    long long v = -1;
    if (!key) {
        v = strtoll(t, NULL, 10);
    } else {
        size_t k = strlen(key);
        for (const char *p = t; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
            if (!strncmp(p, key, k) && p[k] == ' ')
                v = strtoll(p + k + 1, NULL, 10);
    }
    free(t);
    return v;
}

/* This process's cgroup path for the v1 memory hierarchy (ver 1) or v2
 * ("0::"), into out; 0 or -1. */
static int self_cgroup(int ver, char *out, size_t cap)
{
    char *t = test_read_file("/proc/self/cgroup", NULL);
    int rc = -1;
    for (char *line = t; line && *line && rc; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        char *end = strchr(line, '\n');
        if (!c2 || (end && c2 > end))
            continue;
        int is_v2 = c1 == line + 1 && line[0] == '0' && c2 == c1 + 1;
        int is_mem = 0;
        for (char *w = c1 + 1; w < c2 && !is_mem; w = strchr(w, ',') ? strchr(w, ',') + 1 : c2)
            is_mem = !strncmp(w, "memory", 6) && (w[6] == ',' || w + 6 == c2);
        if ((ver == 2 && is_v2) || (ver == 1 && is_mem)) {
            size_t n = end ? (size_t)(end - c2 - 1) : strlen(c2 + 1);
            snprintf(out, cap, "%.*s", (int)n, c2 + 1);
            rc = 0;
        }
    }
    free(t);
    return rc;
}

/* Makes a child memory cgroup limited to limit bytes under ours; 0, or -1
 * with why (a reason to skip). */
static int cg_make(cgroup *cg, int64_t limit, char *why, size_t cap)
{
    char self[512], base[900];
    struct stat st;
    if (geteuid() != 0) {
        snprintf(why, cap, "creating a memory cgroup needs root");
        return -1;
    }
    if (self_cgroup(1, self, sizeof self) == 0 &&
        stat("/sys/fs/cgroup/memory/memory.limit_in_bytes", &st) == 0) {
        cg->version = 1;
        snprintf(base, sizeof base, "/sys/fs/cgroup/memory%s", self);
    } else if (self_cgroup(2, self, sizeof self) == 0) {
        const char *mnt = stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0
                              ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
        snprintf(base, sizeof base, "%s%s", mnt, strcmp(self, "/") ? self : "");
        char path[1200];
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", base);
        char *ctl = test_read_file(path, NULL);
        int has = ctl && strstr(ctl, "memory") != NULL;
        free(ctl);
        if (!has) {
            snprintf(why, cap, "no memory controller: v1 memory is not mounted and %s does not "
                               "delegate memory to its children", base);
            return -1;
        }
        cg->version = 2;
    } else {
        snprintf(why, cap, "this process is in no memory cgroup");
        return -1;
    }
    snprintf(cg->dir, sizeof cg->dir, "%s/spillway-test-%d", base, (int)getpid());
    if (mkdir(cg->dir, 0755) != 0) {
        snprintf(why, cap, "cannot create %s: %s", cg->dir, strerror(errno));
        return -1;
    }
    char lim[32];
    snprintf(lim, sizeof lim, "%lld", (long long)limit);
    if (write_file(cg->dir, cg->version == 1 ? "memory.limit_in_bytes" : "memory.max", lim)) {
        snprintf(why, cap, "cannot set the limit of %s: %s", cg->dir, strerror(errno));
        rmdir(cg->dir);
        return -1;
    }
    if (cg->version == 2)
        write_file(cg->dir, "memory.swap.max", "0"); /* no swap: the limit is the limit */
    return 0;
}

/* Moves the calling process into cg (in a child, before exec). */
static int cg_join(const cgroup *cg)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    return write_file(cg->dir, "cgroup.procs", pid);
}

static long long cg_oom_kills(const cgroup *cg)
{
    return read_key(cg->dir, cg->version == 1 ? "memory.oom_control" : "memory.events",
                    "oom_kill");
}

static long long cg_limit_hits(const cgroup *cg)
{
    return cg->version == 1 ? read_key(cg->dir, "memory.failcnt", NULL)
                            : read_key(cg->dir, "memory.events", "max");
}

/* Removes cg once its processes are gone (they may take a moment). */
static void cg_remove(const cgroup *cg)
{
    for (int i = 0; i < 200 && rmdir(cg->dir) != 0 && errno == EBUSY; i++)
        sleep_ms(50);
}

/* ---- processes ---------------------------------------------------------- */

/* Waits up to ms for pid; its wait status, or -1 if it is still running. */
static int wait_ms(pid_t pid, int ms)
{
    for (double t0 = now_ms(); now_ms() - t0 < ms; sleep_ms(10)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
    }
    return -1;
}

static void stop(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
        *pid = 0;
    }
}

/* `spillway serve model` in cg, with its log and timeline; the pid. */
static pid_t start_server(const cgroup *cg, const char *model, const char *log, const char *tl)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent || cg_join(cg) != 0)
        _exit(126);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    /* a sanitizer build keeps up to 256 MiB of freed memory in quarantine:
     * that would be the process's, not the cache's, and not what is tested */
    char asan[1024];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=8", old ? old : "", old ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    execl(test_bin(), "spillway", "serve", model, "--port", "0", "--parallel", "1", "--sessions",
          "1", "--ctx", "512", "--kv-type", "q8_0", "--threads", "1", "--timeline", tl,
          (char *)NULL);
    _exit(127);
}

/* The port the server listens on, once its log says so; 0 if it died or
 * did not within 120 s. */
static int server_port(pid_t pid, const char *log)
{
    for (double t0 = now_ms(); now_ms() - t0 < 120000; sleep_ms(50)) {
        char *t = test_read_file(log, NULL);
        const char *p = t ? strstr(t, "listening") : NULL;
        const char *q = p ? strstr(p, "port=") : NULL;
        int port = q ? atoi(q + 5) : 0;
        free(t);
        if (port)
            return port;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0;
    }
    return 0;
}

/* A client that keeps the server generating until it is killed. */
static pid_t start_client(int port)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    for (;;) {
        http_resp r;
        if (http_do(port, "POST", "/v1/completions", NULL,
                    "{\"prompt\":\"Once upon a time\",\"max_tokens\":48,\"temperature\":0}",
                    &r) == 0)
            http_free(&r);
        else
            sleep_ms(50);
    }
}

/* The other process: joins cg, allocates and touches bytes in 2 MiB steps
 * every 50 ms (40 MB/s: a watcher on a busy machine can see it coming), says so on ready, holds it until
 * release is closed, then exits 0. */
static pid_t start_hog(const cgroup *cg, int64_t bytes, int *ready, int *release)
{
    int r[2], h[2];
    if (pipe(r) || pipe(h))
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        close(r[1]);
        close(h[0]);
        *ready = r[0];
        *release = h[1];
        return pid;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(r[0]);
    close(h[1]);
    if (getppid() != parent || cg_join(cg) != 0)
        _exit(126);
    char *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(125);
    for (int64_t at = 0; at < bytes; at += 2 * MIB) {
        memset(p + at, 0x5a, (size_t)(bytes - at < 2 * MIB ? bytes - at : 2 * MIB));
        sleep_ms(50);
    }
    char c = 1;
    if (write(r[1], &c, 1) != 1)
        _exit(124);
    while (read(h[0], &c, 1) > 0) /* until the test closes it */
        ;
    munmap(p, (size_t)bytes);
    _exit(0);
}

/* ---- the timeline ------------------------------------------------------- */

typedef struct tl_point {
    double t;
    int64_t budget, cache, rss, steps, oom_kill;
} tl_point;

/* The number after "key": in a JSON line; -1 for null or absent. */
static int64_t field(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p && p[strlen(k)] != 'n' ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* Every complete line of the timeline so far; the count (0 if none). */
static int tl_read(const char *path, tl_point *pts, int cap)
{
    char *text = test_read_file(path, NULL);
    int n = 0;
    for (char *line = text; line && *line && n < cap;) {
        char *nl = strchr(line, '\n');
        if (!nl)
            break; /* being written */
        *nl = 0;
        const char *t = strstr(line, "\"t\":");
        pts[n++] = (tl_point){t ? strtod(t + 4, NULL) : 0, field(line, "budget"),
                              field(line, "cache"), field(line, "rss"), field(line, "steps"),
                              field(line, "cg_oom_kill")};
        line = nl + 1;
    }
    free(text);
    return n;
}

#define TL_MAX 20000

typedef struct scenario {
    cgroup cg;
    char model[1024], log[1024], tl[1024];
    pid_t server, client, hog;
    int ready, release;
    tl_point *pts;
} scenario;

/* Polls the timeline until done(pts, n, arg) or ms pass or the server
 * exits; the line count at that moment, or -1. */
static int tl_until(scenario *s, int ms, int (*done)(const tl_point *, int, int64_t), int64_t arg)
{
    for (double t0 = now_ms(); now_ms() - t0 < ms; sleep_ms(100)) {
        int n = tl_read(s->tl, s->pts, TL_MAX);
        if (n > 0 && done(s->pts, n, arg))
            return n;
        if (waitpid(s->server, NULL, WNOHANG) == s->server) {
            s->server = 0;
            return -1;
        }
    }
    return -1;
}

/* Generating, with the cache filled to (nearly) its budget. */
static int warm(const tl_point *p, int n, int64_t steps)
{
    return p[n - 1].steps >= steps && p[n - 1].cache >= p[n - 1].budget * 9 / 10;
}

static int budget_at_most(const tl_point *p, int n, int64_t b)
{
    return p[n - 1].budget <= b;
}

static int steps_at_least(const tl_point *p, int n, int64_t steps)
{
    return p[n - 1].steps >= steps;
}

static int budget_at_least(const tl_point *p, int n, int64_t b)
{
    return p[n - 1].budget >= b;
}

static void scenario_run(scenario *s)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' gen --like tiny-moe --layers 24 --out '%s' --quiet",
             test_bin(), s->model);
    CHECK(test_run(cmd, NULL) == 0);
    struct stat st;
    CHECK(stat(s->model, &st) == 0 && st.st_size > LIMIT * 5 / 4);

    s->server = start_server(&s->cg, s->model, s->log, s->tl);
    CHECK(s->server > 0);
    int port = server_port(s->server, s->log);
    if (!port) {
        char *log = test_read_file(s->log, NULL);
        fprintf(stderr, "    server log:\n%s\n", log ? log : "");
        free(log);
    }
    CHECK(port > 0);
    s->client = start_client(port);
    CHECK(s->client > 0);

    /* 1. generating with a warm cache */
    int n = tl_until(s, 180000, warm, 32);
    CHECKF(n > 0, "the server did not warm its cache in 180 s");
    tl_point before = s->pts[n - 1];
    fprintf(stderr, "    before: budget %lld MiB, cache %lld MiB, RSS %lld MiB, %lld steps\n",
            (long long)(before.budget >> 20), (long long)(before.cache >> 20),
            (long long)(before.rss >> 20), (long long)before.steps);
    CHECKF(before.budget >= HOG, "the budget (%lld MiB) leaves the other process nothing to take",
           (long long)(before.budget >> 20));

    /* 2. the other process takes HOG: the budget and RSS fall */
    s->hog = start_hog(&s->cg, HOG, &s->ready, &s->release);
    CHECK(s->hog > 0);
    char c;
    CHECKF(read(s->ready, &c, 1) == 1, "the other process died while allocating (OOM?)");
    n = tl_until(s, 60000, budget_at_most, before.budget - HOG / 2);
    CHECKF(n > 0, "the budget did not shrink by %lld MiB in 60 s", (long long)(HOG / 2 >> 20));
    int64_t shrunk_steps = s->pts[n - 1].steps;

    /* 3. it keeps generating while the other process holds its memory */
    n = tl_until(s, 120000, steps_at_least, shrunk_steps + 16);
    CHECKF(n > 0, "generation stalled under pressure");
    int64_t low = INT64_MAX, low_rss = INT64_MAX;
    for (int i = 0; i < n; i++)
        if (s->pts[i].t > before.t) {
            low = s->pts[i].budget < low ? s->pts[i].budget : low;
            low_rss = s->pts[i].rss < low_rss ? s->pts[i].rss : low_rss;
        }
    fprintf(stderr, "    under pressure: budget %lld MiB, RSS %lld MiB\n", (long long)(low >> 20),
            (long long)(low_rss >> 20));
    CHECKF(low_rss <= before.rss - HOG / 2, "RSS did not fall: %lld -> %lld MiB",
           (long long)(before.rss >> 20), (long long)(low_rss >> 20));

    /* 4. the other process exits normally (it was not killed) */
    close(s->release);
    s->release = -1;
    int hs = wait_ms(s->hog, 30000);
    CHECKF(hs >= 0 && WIFEXITED(hs) && WEXITSTATUS(hs) == 0, "the other process ended badly: %d",
           hs);
    s->hog = 0;

    /* 5. the budget grows back */
    n = tl_until(s, 120000, budget_at_least, low + HOG / 2);
    CHECKF(n > 0, "the budget did not grow back by %lld MiB in 120 s", (long long)(HOG / 2 >> 20));
    fprintf(stderr, "    after: budget %lld MiB, RSS %lld MiB, %lld steps\n",
            (long long)(s->pts[n - 1].budget >> 20), (long long)(s->pts[n - 1].rss >> 20),
            (long long)s->pts[n - 1].steps);
    for (int i = 0; i < n; i++)
        CHECK(s->pts[i].oom_kill <= 0);

    /* 6. a clean shutdown: exit status 0, never OOM-killed */
    stop(&s->client);
    kill(s->server, SIGTERM);
    int ss = wait_ms(s->server, 60000);
    CHECKF(ss >= 0 && WIFEXITED(ss) && WEXITSTATUS(ss) == 0, "spillway serve ended with %d", ss);
    s->server = 0;
    CHECK_EQ(cg_oom_kills(&s->cg), 0);
    fprintf(stderr, "    cgroup limit hits (failcnt): %lld, OOM kills: 0\n", cg_limit_hits(&s->cg));
}

TEST(pressure_cgroup_shrinks_keeps_going_grows_back)
{
    scenario s = {.ready = -1, .release = -1};
    char why[1400];
    if (cg_make(&s.cg, LIMIT, why, sizeof why) != 0)
        test_skip(why);
    snprintf(s.model, sizeof s.model, "%s/moe24.gguf", test_tmpdir());
    snprintf(s.log, sizeof s.log, "%s/serve.log", test_tmpdir());
    snprintf(s.tl, sizeof s.tl, "%s/timeline.jsonl", test_tmpdir());
    s.pts = calloc(TL_MAX, sizeof *s.pts);
    if (s.pts)
        scenario_run(&s);
    else
        test_fail(__FILE__, __LINE__, "out of memory");
    /* whatever happened: nothing left running, the cgroup removed */
    if (s.release >= 0)
        close(s.release);
    if (s.ready >= 0)
        close(s.ready);
    stop(&s.client);
    stop(&s.hog);
    stop(&s.server);
    cg_remove(&s.cg);
    free(s.pts);
}

/* ---- the watcher wakes when the cgroup's usage nears its limit ----------- */

static _Atomic int g_samples;

static void count_sample(void *ctx, const pressure_decision *d, const pressure_snapshot *s)
{
    (void)ctx, (void)d, (void)s;
    g_samples++;
}

/* Waits up to ms for more than n samples; 0 if they came. */
static int samples_above(int n, int ms)
{
    for (double t0 = now_ms(); now_ms() - t0 < ms; sleep_ms(5))
        if (g_samples > n)
            return 0;
    return -1;
}

/* In cg, with a watcher that samples only every 10 minutes: touching
 * memory must wake it at every step (a quarter of the margin) of growth.
 * The exit code says what failed. */
static int threshold_child(const cgroup *cg, int64_t limit)
{
    pressure_mon *m = NULL;
    sw_err e = {0};
    if (cg_join(cg) != 0 || pressure_open(NULL, &m, &e) != 0)
        return 2;
    /* no timer, and a PSI trigger that stalls elsewhere on a busy machine
     * cannot fire (9.99 s stalled of every 10 s): only the threshold wakes it */
    pressure_watch_opts o = {.interval_ms = 600000, .on_sample = count_sample, .fixed = 1,
                             .psi_stall_us = 9990000, .psi_window_us = 10000000};
    pressure_policy_default(&o.policy);
    if (pressure_watch_start(m, &o, &e) != 0)
        return 3;
    if (pressure_watch_triggers(m) < 1 || samples_above(0, 30000) != 0)
        return 4; /* nothing armed, or no first sample */
    /* each wake re-arms a step above the usage it saw: every step (and a
     * MiB for the kernel's charge batching) wakes it again */
    int64_t step = pressure_cg_margin(&o.policy, limit) / 4 + MIB, bytes = 6 * step;
    char *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 5;
    for (int64_t off = 0; off < bytes; off += step) {
        int n = g_samples;
        memset(p + off, 1, (size_t)step);
        if (samples_above(n, 30000) != 0)
            return 6; /* a step of growth, and no wake in 30 s */
    }
    munmap(p, (size_t)bytes);
    pressure_close(m);
    return 0;
}

TEST(pressure_cgroup_threshold_wakes_the_watcher)
{
    cgroup cg;
    char why[1400];
    const int64_t limit = 256 * MIB;
    if (cg_make(&cg, limit, why, sizeof why) != 0)
        test_skip(why);
    if (cg.version != 1) {
        cg_remove(&cg);
        test_skip("usage thresholds are cgroup v1's (v2 wakes the watcher through PSI)");
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(threshold_child(&cg, limit));
    }
    int st = pid > 0 ? wait_ms(pid, 180000) : -1;
    if (st < 0 && pid > 0)
        stop(&pid);
    cg_remove(&cg);
    CHECKF(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "the child failed: %s %d (see threshold_child)",
           st >= 0 && WIFEXITED(st) ? "exit" : "status", st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : st);
    CHECK(access(cg.dir, F_OK) != 0); /* removed */
}
