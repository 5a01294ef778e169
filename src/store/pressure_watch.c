/*
 * pressure_watch.c — the optional watcher thread: sleep in poll() on PSI
 * triggers and a wake-up eventfd, sample on a trigger or on the timer, run
 * the policy, call back when the budget moves.
 *
 * A PSI trigger ("some 150000 1000000": wake me when tasks stalled on
 * memory for 150 ms within any 1 s) is written to /proc/pressure/memory
 * and, on cgroup v2, to the cgroup's memory.pressure; the kernel then
 * reports POLLPRI on that fd. Unprivileged processes may only use windows
 * that are multiples of 2 s (Linux 6.5+), so a refused trigger is retried
 * with a 2 s window. Triggers are armed only on the kernel's own files
 * (procfs, cgroup2fs), never on a plain file in a test's fake tree. Where
 * none can be armed, or the kernel drops one (POLLERR: its cgroup went
 * away), the timer alone paces the samples. While the budget is shrinking
 * the watcher samples four times as often, so it follows a fall quickly.
 *
 * PSI sees stalls, which come late: a cgroup without swap goes from fine
 * to OOM kill without much stalling when something else in it allocates
 * fast. On a v1 memory cgroup with a limit the watcher therefore also
 * asks the kernel to signal an eventfd when memory.usage_in_bytes rises a
 * step (a quarter of the policy's margin, at least 1 MiB) above what the
 * last sample saw (cgroup.event_control), and moves that threshold with
 * every sample that finds the usage elsewhere. Another process eating
 * into the margin then wakes the watcher after a step of it, not at the
 * next tick. (A fixed line below the limit would not do: the budget may
 * legitimately sit above it, with reclaimable page cache or within the
 * dead band, and then nothing crosses it.) Closing the eventfd removes a
 * threshold.
 */
#include "store/pressure_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <unistd.h>

#define WATCH_MAX_TRIGGERS 2
#define CGROUP1_MAGIC 0x27e0eb /* CGROUP_SUPER_MAGIC */

struct pressure_watch {
    pthread_t thread;
    int wake; /* eventfd: stop */
    int trig[WATCH_MAX_TRIGGERS];
    int ntrig;
    _Atomic int thr;   /* eventfd of the v1 usage threshold, or -1 */
    int64_t thr_at;    /* the usage it was armed at */
    bool thr_off;      /* arming failed once (not a real v1 cgroupfs): no more tries */
    pressure_watch_opts o;
    pressure_state st;
    int64_t budget;
};

static int write_trigger(int fd, int64_t stall_us, int64_t window_us)
{
    char spec[64];
    int n = snprintf(spec, sizeof spec, "some %lld %lld", (long long)stall_us, (long long)window_us);
    return write(fd, spec, (size_t)n + 1) == (ssize_t)n + 1 ? 0 : -1;
}

/* An fd with a PSI trigger on dir/name, or -1. */
static int arm_trigger(const char *dir, const char *name, int64_t stall_us, int64_t window_us)
{
    char path[4096];
    if (pressure_path(path, sizeof path, dir, name) != 0)
        return -1;
    int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0 || (sf.f_type != PROC_SUPER_MAGIC && sf.f_type != CGROUP2_SUPER_MAGIC)) {
        close(fd);
        return -1;
    }
    if (write_trigger(fd, stall_us, window_us) == 0)
        return fd;
    int64_t w2 = (window_us + 1999999) / 2000000 * 2000000; /* unprivileged: 2 s multiples */
    if (w2 != window_us && write_trigger(fd, stall_us * w2 / window_us, w2) == 0)
        return fd;
    close(fd);
    return -1;
}

/* An eventfd the kernel signals when the v1 cgroup's usage crosses at
 * (either way), or -1. Only on the kernel's own cgroupfs. */
static int arm_threshold(const char *cg1, int64_t at)
{
    char path[4096];
    int efd = -1, ufd = -1, cfd = -1, ok = 0;
    if (pressure_path(path, sizeof path, cg1, "cgroup.event_control") == 0)
        cfd = open(path, O_WRONLY | O_CLOEXEC);
    if (cfd >= 0 && pressure_path(path, sizeof path, cg1, "memory.usage_in_bytes") == 0)
        ufd = open(path, O_RDONLY | O_CLOEXEC);
    struct statfs sf;
    if (ufd >= 0 && fstatfs(cfd, &sf) == 0 && sf.f_type == CGROUP1_MAGIC &&
        (efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0) {
        char spec[96];
        int n = snprintf(spec, sizeof spec, "%d %d %lld", efd, ufd, (long long)at);
        ok = write(cfd, spec, (size_t)n) == (ssize_t)n;
    }
    if (ufd >= 0)
        close(ufd);
    if (cfd >= 0)
        close(cfd);
    if (!ok && efd >= 0) {
        close(efd);
        efd = -1;
    }
    return efd;
}

/* (Re)arms the usage threshold a step above the usage in s, if it moved
 * by half a step or fired (woke); drops it without a limit. */
static void follow_usage(pressure_mon *m, struct pressure_watch *w, const pressure_snapshot *s,
                         bool woke)
{
    bool limited = !w->thr_off && m->cg1 && s->cgroup == 1 && pressure_known(s->cg_usage) &&
                   pressure_known(s->cg_limit) && s->cg_limit != PRESSURE_UNLIMITED;
    int64_t step = limited ? pressure_cg_margin(&w->o.policy, s->cg_limit) / 4 : 0;
    if (step < ((int64_t)1 << 20))
        step = (int64_t)1 << 20;
    int64_t at = limited ? s->cg_usage + step : PRESSURE_UNKNOWN;
    int64_t moved = at > w->thr_at ? at - w->thr_at : w->thr_at - at;
    if (limited && w->thr >= 0 && !woke && moved < step / 2)
        return;
    if (w->thr >= 0)
        close(w->thr);
    w->thr = limited ? arm_threshold(m->cg1, at) : -1;
    w->thr_at = at;
    w->thr_off = limited && w->thr < 0;
}

static void watch_step(pressure_mon *m, struct pressure_watch *w, bool woke, int *hurry)
{
    pressure_snapshot s;
    pressure_sample(m, &s);
    follow_usage(m, w, &s, woke);
    pressure_input in = {.budget = w->budget, .cache_bytes = w->budget,
                         .other_bytes = PRESSURE_UNKNOWN};
    if (w->o.usage)
        w->o.usage(w->o.ctx, &in);
    in.budget = w->budget;
    pressure_decision d = pressure_target(&w->o.policy, &s, &in, &w->st);
    if (w->o.fixed) {
        d.target = w->budget;
        d.reason = PRESSURE_HOLD;
    }
    *hurry = d.target < w->budget;
    if (d.target != w->budget) {
        w->budget = d.target;
        w->o.on_change(w->o.ctx, &d, &s);
    }
    if (w->o.on_sample)
        w->o.on_sample(w->o.ctx, &d, &s);
}

static void drain(int fd)
{
    uint64_t n;
    while (read(fd, &n, sizeof n) > 0)
        ;
}

static void *watch_main(void *arg)
{
    pressure_mon *m = arg;
    struct pressure_watch *w = m->watch;
    struct pollfd fds[2 + WATCH_MAX_TRIGGERS];
    fds[0] = (struct pollfd){.fd = w->wake, .events = POLLIN};
    for (int k = 0; k < w->ntrig; k++)
        fds[1 + k] = (struct pollfd){.fd = w->trig[k], .events = POLLPRI};
    const int nt = 1 + w->ntrig; /* where the threshold's slot is */
    int hurry = 0;
    watch_step(m, w, false, &hurry); /* reports the start */
    for (;;) {
        int timeout = hurry ? (w->o.interval_ms + 3) / 4 : w->o.interval_ms;
        fds[nt] = (struct pollfd){.fd = w->thr, .events = POLLIN};
        int n = poll(fds, (nfds_t)(nt + 1), timeout);
        if (n < 0 && errno != EINTR)
            usleep((useconds_t)timeout * 1000); /* never spin */
        if (n > 0 && fds[0].revents)
            break;
        for (int k = 1; n > 0 && k < nt; k++)
            if (fds[k].revents & (POLLERR | POLLNVAL))
                fds[k].fd = -1; /* trigger gone: poll skips it, the timer goes on */
        bool woke = n > 0 && fds[nt].revents;
        if (woke && fds[nt].revents & POLLIN)
            drain(w->thr);
        else if (woke) { /* the cgroup went away */
            close(w->thr);
            w->thr = -1;
        }
        watch_step(m, w, woke, &hurry);
    }
    return NULL;
}

static void watch_free(struct pressure_watch *w)
{
    for (int k = 0; k < w->ntrig; k++)
        close(w->trig[k]);
    if (w->thr >= 0)
        close(w->thr);
    if (w->wake >= 0)
        close(w->wake);
    free(w);
}

int pressure_watch_start(pressure_mon *m, const pressure_watch_opts *o, sw_err *err)
{
    if (m->watch)
        return sw_errf(err, SW_EINVAL, "pressure: the watcher already runs");
    if ((!o->on_change && !o->fixed) || o->interval_ms < 0)
        return sw_errf(err, SW_EINVAL, "pressure: the watcher needs on_change and interval >= 0");
    struct pressure_watch *w = calloc(1, sizeof *w);
    if (!w)
        return sw_errf(err, SW_ENOMEM, "pressure: out of memory");
    w->o = *o;
    if (!w->o.interval_ms)
        w->o.interval_ms = 1000;
    if (w->o.psi_stall_us <= 0 || w->o.psi_window_us <= w->o.psi_stall_us) {
        w->o.psi_stall_us = 150000;
        w->o.psi_window_us = 1000000;
    }
    w->budget = o->budget;
    w->thr = -1;
    w->thr_at = PRESSURE_UNKNOWN;
    w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake < 0) {
        int e = errno;
        watch_free(w);
        return sw_errf(err, SW_EIO, "pressure: eventfd: %s", strerror(e));
    }
    int fd = arm_trigger(m->proc, "pressure/memory", w->o.psi_stall_us, w->o.psi_window_us);
    if (fd >= 0)
        w->trig[w->ntrig++] = fd;
    if (m->cg2 && m->cg2_memory &&
        (fd = arm_trigger(m->cg2, "memory.pressure", w->o.psi_stall_us, w->o.psi_window_us)) >= 0)
        w->trig[w->ntrig++] = fd;
    pressure_snapshot snap;
    pressure_sample(m, &snap);
    follow_usage(m, w, &snap, false);
    m->watch = w;
    int rc = pthread_create(&w->thread, NULL, watch_main, m);
    if (rc) {
        m->watch = NULL;
        watch_free(w);
        return sw_errf(err, SW_EIO, "pressure: cannot start the watcher: %s", strerror(rc));
    }
    return 0;
}

void pressure_watch_stop(pressure_mon *m)
{
    struct pressure_watch *w = m->watch;
    if (!w)
        return;
    uint64_t one = 1;
    while (write(w->wake, &one, sizeof one) < 0 && errno == EINTR)
        ;
    pthread_join(w->thread, NULL);
    m->watch = NULL;
    watch_free(w);
}

int pressure_watch_triggers(const pressure_mon *m)
{
    return m->watch ? m->watch->ntrig + (m->watch->thr >= 0) : 0;
}
