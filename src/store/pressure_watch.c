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
 */
#include "store/pressure_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <unistd.h>

#define WATCH_MAX_TRIGGERS 2

struct pressure_watch {
    pthread_t thread;
    int wake; /* eventfd: stop */
    int trig[WATCH_MAX_TRIGGERS];
    int ntrig;
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

static void watch_step(pressure_mon *m, struct pressure_watch *w, int *hurry)
{
    pressure_snapshot s;
    pressure_sample(m, &s);
    pressure_input in = {.budget = w->budget, .cache_bytes = w->budget,
                         .other_bytes = PRESSURE_UNKNOWN};
    if (w->o.usage)
        w->o.usage(w->o.ctx, &in);
    in.budget = w->budget;
    pressure_decision d = pressure_target(&w->o.policy, &s, &in, &w->st);
    *hurry = d.target < w->budget;
    if (d.target != w->budget) {
        w->budget = d.target;
        w->o.on_change(w->o.ctx, &d, &s);
    }
}

static void *watch_main(void *arg)
{
    pressure_mon *m = arg;
    struct pressure_watch *w = m->watch;
    struct pollfd fds[1 + WATCH_MAX_TRIGGERS];
    fds[0] = (struct pollfd){.fd = w->wake, .events = POLLIN};
    for (int k = 0; k < w->ntrig; k++)
        fds[1 + k] = (struct pollfd){.fd = w->trig[k], .events = POLLPRI};
    int hurry = 0;
    for (;;) {
        int timeout = hurry ? (w->o.interval_ms + 3) / 4 : w->o.interval_ms;
        int n = poll(fds, (nfds_t)(1 + w->ntrig), timeout);
        if (n < 0 && errno != EINTR)
            usleep((useconds_t)timeout * 1000); /* never spin */
        if (n > 0 && fds[0].revents)
            break;
        for (int k = 1; n > 0 && k <= w->ntrig; k++)
            if (fds[k].revents & (POLLERR | POLLNVAL))
                fds[k].fd = -1; /* trigger gone: poll skips it, the timer goes on */
        watch_step(m, w, &hurry);
    }
    return NULL;
}

static void watch_free(struct pressure_watch *w)
{
    for (int k = 0; k < w->ntrig; k++)
        close(w->trig[k]);
    if (w->wake >= 0)
        close(w->wake);
    free(w);
}

int pressure_watch_start(pressure_mon *m, const pressure_watch_opts *o, sw_err *err)
{
    if (m->watch)
        return sw_errf(err, SW_EINVAL, "pressure: the watcher already runs");
    if (!o->on_change || o->interval_ms < 0)
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
    return m->watch ? m->watch->ntrig : 0;
}
