/*
 * pressure.c — finding the process's memory cgroup and reading the kernel's
 * memory counters into a pressure_snapshot. See pressure.h.
 *
 * Every file is read whole into a small buffer and parsed by hand (no
 * strtod: PSI's "0.50" must not depend on the locale). A file that is
 * missing, unreadable or malformed leaves its counters PRESSURE_UNKNOWN.
 */
#include "store/pressure_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEXT_MAX 16384             /* meminfo, memory.stat and friends fit */
#define MOUNTINFO_MAX (4u << 20)
#define V1_UNLIMITED (1LL << 62)  /* v1 says "no limit" with ~2^63 rounded to a page */

/* ---- reading files ------------------------------------------------------ */

int pressure_path(char *buf, size_t cap, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    while (*name == '/')
        name++;
    int w = *name ? snprintf(buf, cap, "%.*s/%s", (int)n, dir, name)
                  : snprintf(buf, cap, "%.*s", (int)n, dir);
    return w >= 0 && (size_t)w < cap ? 0 : -1;
}

/* Reads dir/name into buf, NUL-terminated. Length, or -1. */
static ssize_t read_text(const char *dir, const char *name, char *buf, size_t cap)
{
    char path[4096];
    if (pressure_path(path, sizeof path, dir, name) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got < 0)
                n = (size_t)-1;
            break;
        }
        n += (size_t)got;
    }
    close(fd);
    if (n == (size_t)-1)
        return -1;
    buf[n] = 0;
    return (ssize_t)n;
}

/* A whole file of up to max bytes, malloc'd and NUL-terminated, or NULL. */
static char *read_all(const char *path, size_t max)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n + 1 < cap || cap >= max)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
        } else {
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

/* ---- parsing ------------------------------------------------------------ */

/* A decimal count at *p (spaces skipped); advances *p. -1 if none or too big. */
static int64_t parse_count(const char **p)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return PRESSURE_UNKNOWN;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return PRESSURE_UNKNOWN;
        v = v * 10 + (*s - '0');
    }
    *p = s;
    return v;
}

static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* The value of the line "key value", "key: value" or "key: value kB" in
 * text (kB converted to bytes), or PRESSURE_UNKNOWN. */
static int64_t kv_get(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; *line; line = next_line(line)) {
        if (strncmp(line, key, klen) != 0 || (line[klen] != ':' && line[klen] != ' '))
            continue;
        const char *p = line + klen + (line[klen] == ':');
        int64_t v = parse_count(&p);
        if (v < 0)
            return PRESSURE_UNKNOWN;
        while (*p == ' ')
            p++;
        if (p[0] == 'k' && p[1] == 'B')
            return v <= INT64_MAX / 1024 ? v * 1024 : PRESSURE_UNKNOWN;
        return v;
    }
    return PRESSURE_UNKNOWN;
}

static int64_t read_kv(const char *dir, const char *name, const char *key)
{
    char buf[TEXT_MAX];
    return read_text(dir, name, buf, sizeof buf) >= 0 ? kv_get(buf, key) : PRESSURE_UNKNOWN;
}

/* A file holding one number, or "max" (v2) / ~2^63 (v1) for no limit. */
static int64_t read_limit(const char *dir, const char *name)
{
    char buf[64];
    if (read_text(dir, name, buf, sizeof buf) < 0)
        return PRESSURE_UNKNOWN;
    if (strncmp(buf, "max", 3) == 0)
        return PRESSURE_UNLIMITED;
    const char *p = buf;
    int64_t v = parse_count(&p);
    if (v < 0) /* digits past INT64_MAX still mean no limit */
        return buf[0] >= '0' && buf[0] <= '9' ? PRESSURE_UNLIMITED : PRESSURE_UNKNOWN;
    return v >= V1_UNLIMITED ? PRESSURE_UNLIMITED : v;
}

static int64_t read_count(const char *dir, const char *name)
{
    char buf[64];
    const char *p = buf;
    return read_text(dir, name, buf, sizeof buf) >= 0 ? parse_count(&p) : PRESSURE_UNKNOWN;
}

/* Where the value of key ("avg10=") starts in [line, end), or NULL. */
static const char *psi_find(const char *line, const char *end, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = line; p + klen < end; p++)
        if (strncmp(p, key, klen) == 0 && (p == line || p[-1] == ' '))
            return p + klen;
    return NULL;
}

/* "1.25" -> 1.25 without strtod, so no locale can turn the point into a
 * comma; PRESSURE_UNKNOWN if absent. */
static double psi_avg(const char *line, const char *end, const char *key)
{
    const char *q = psi_find(line, end, key);
    int64_t whole = q ? parse_count(&q) : PRESSURE_UNKNOWN;
    if (whole < 0)
        return PRESSURE_UNKNOWN;
    double v = (double)whole, scale = 0.1;
    if (*q == '.')
        for (q++; q < end && *q >= '0' && *q <= '9'; q++, scale /= 10)
            v += (*q - '0') * scale;
    return v;
}

static void psi_unknown(pressure_psi *p)
{
    p->avg10 = p->avg60 = p->avg300 = PRESSURE_UNKNOWN;
    p->total_us = PRESSURE_UNKNOWN;
}

/* Parses "some avg10=.. avg60=.. avg300=.. total=..\nfull ...". */
static void parse_psi(const char *text, pressure_psi *some, pressure_psi *full)
{
    psi_unknown(some);
    psi_unknown(full);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        pressure_psi *p = strncmp(line, "some ", 5) == 0 ? some
                        : strncmp(line, "full ", 5) == 0 ? full : NULL;
        if (p) {
            p->avg10 = psi_avg(line, end, "avg10=");
            p->avg60 = psi_avg(line, end, "avg60=");
            p->avg300 = psi_avg(line, end, "avg300=");
            const char *t = psi_find(line, end, "total=");
            p->total_us = t ? parse_count(&t) : PRESSURE_UNKNOWN;
        }
        line = *end ? end + 1 : end;
    }
}

static void read_psi(const char *dir, const char *name, pressure_psi *some, pressure_psi *full)
{
    char buf[1024];
    if (read_text(dir, name, buf, sizeof buf) >= 0)
        parse_psi(buf, some, full);
    else {
        psi_unknown(some);
        psi_unknown(full);
    }
}

/* ---- finding the cgroup ------------------------------------------------- */

static int exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    return pressure_path(path, sizeof path, dir, name) == 0 && stat(path, &st) == 0;
}

/* Is word one of the comma-separated items of list[0, n)? */
static int has_word(const char *list, size_t n, const char *word)
{
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++)
        if ((i == 0 || list[i - 1] == ',') && strncmp(list + i, word, w) == 0 &&
            (i + w == n || list[i + w] == ','))
            return 1;
    return 0;
}

/* From /proc/self/cgroup ("id:controllers:path" lines): the v1 memory
 * hierarchy's path and the v2 path ("0::path"), malloc'd, or NULL. */
static void parse_self_cgroup(const char *text, char **v1, char **v2)
{
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        const char *c1 = memchr(line, ':', (size_t)(end - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        if (c2) {
            char **slot = c1 - line == 1 && line[0] == '0' && c2 == c1 + 1 ? v2
                        : has_word(c1 + 1, (size_t)(c2 - c1 - 1), "memory") ? v1 : NULL;
            if (slot && !*slot)
                *slot = strndup(c2 + 1, (size_t)(end - c2 - 1));
        }
        line = *end ? end + 1 : end;
    }
}

struct mount {
    char point[1024], root[1024];
};

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

/* One mountinfo line: "id parent maj:min root point opts [tags] - type src superopts".
 * Fills v1 (a cgroup mount with the memory controller) or v2 (cgroup2). */
static void mount_line(char *line, struct mount *v1, struct mount *v2)
{
    char *f[64], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(line, " ", &save); t && n < 64; t = strtok_r(NULL, " ", &save))
        f[n++] = t;
    int dash = 6;
    while (dash < n && strcmp(f[dash], "-") != 0)
        dash++;
    if (dash + 3 >= n)
        return;
    const char *type = f[dash + 1], *super = f[dash + 3];
    struct mount *m = strcmp(type, "cgroup2") == 0 ? v2
                    : strcmp(type, "cgroup") == 0 && has_word(super, strlen(super), "memory") ? v1
                    : NULL;
    if (!m || m->point[0])
        return;
    unescape(f[3]);
    unescape(f[4]);
    snprintf(m->root, sizeof m->root, "%s", f[3]);
    snprintf(m->point, sizeof m->point, "%s", f[4]);
}

static void find_mounts(const char *proc, struct mount *v1, struct mount *v2)
{
    char path[4096];
    v1->point[0] = v2->point[0] = 0;
    if (pressure_path(path, sizeof path, proc, "self/mountinfo") != 0)
        return;
    char *text = read_all(path, MOUNTINFO_MAX);
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
        mount_line(l, v1, v2);
    free(text);
}

/* The directory of cgroup path under a mount of root at point: the path
 * relative to the mount's root, or the mount itself where the path lies
 * outside it or is not there (a container sees only its own subtree). */
static char *cgroup_dir(const char *point, const char *root, const char *path)
{
    const char *rel = path;
    size_t n = strlen(root);
    if (strcmp(root, "/") != 0)
        rel = strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == 0) ? path + n : "";
    char dir[4096];
    struct stat st;
    if (pressure_path(dir, sizeof dir, point, rel) != 0 || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        if (pressure_path(dir, sizeof dir, point, "") != 0)
            return NULL;
    return strdup(dir);
}

/* Where the memory cgroup files of this process are. */
static void find_cgroup(pressure_mon *m, const char *cgroot)
{
    char path[4096], *v1 = NULL, *v2 = NULL, *text = NULL;
    if (pressure_path(path, sizeof path, m->proc, "self/cgroup") == 0)
        text = read_all(path, 1u << 20);
    if (text)
        parse_self_cgroup(text, &v1, &v2);
    free(text);
    struct mount mv1, mv2;
    find_mounts(m->proc, &mv1, &mv2);
    if (v1 && !mv1.point[0] && pressure_path(mv1.point, sizeof mv1.point, cgroot, "memory") == 0)
        snprintf(mv1.root, sizeof mv1.root, "/");
    if (v2 && !mv2.point[0]) {
        snprintf(mv2.root, sizeof mv2.root, "/");
        if (exists(cgroot, "cgroup.controllers"))
            snprintf(mv2.point, sizeof mv2.point, "%s", cgroot);
        else if (exists(cgroot, "unified/cgroup.controllers"))
            pressure_path(mv2.point, sizeof mv2.point, cgroot, "unified");
    }
    if (v1 && mv1.point[0]) {
        m->cg1 = cgroup_dir(mv1.point, mv1.root, v1);
        if (m->cg1 && !exists(m->cg1, "memory.usage_in_bytes")) {
            free(m->cg1);
            m->cg1 = NULL;
        }
    }
    if (v2 && mv2.point[0]) {
        m->cg2 = cgroup_dir(mv2.point, mv2.root, v2);
        m->cg2_top = strdup(mv2.point);
        m->cg2_memory = m->cg2 && exists(m->cg2, "memory.current");
    }
    free(v1);
    free(v2);
}

/* ---- the monitor -------------------------------------------------------- */

static void describe(pressure_mon *m)
{
    char psi[4096];
    pressure_path(psi, sizeof psi, m->proc, "pressure/memory");
    int n = snprintf(m->source, sizeof m->source, "meminfo %s/meminfo; PSI %s%s; ", m->proc, psi,
                     exists(m->proc, "pressure/memory") ? "" : " (absent)");
    size_t at = n > 0 && (size_t)n < sizeof m->source ? (size_t)n : sizeof m->source - 1;
    if (m->cg1)
        snprintf(m->source + at, sizeof m->source - at, "cgroup v1 memory %s", m->cg1);
    else if (m->cg2)
        snprintf(m->source + at, sizeof m->source - at, "cgroup v2 %s%s", m->cg2,
                 m->cg2_memory ? "" : " (no memory controller)");
    else
        snprintf(m->source + at, sizeof m->source - at, "no memory cgroup");
}

int pressure_open(const pressure_paths *paths, pressure_mon **out, sw_err *err)
{
    const char *proc = paths && paths->proc ? paths->proc : "/proc";
    const char *cgroot = paths && paths->cgroup ? paths->cgroup : "/sys/fs/cgroup";
    *out = NULL;
    pressure_mon *m = calloc(1, sizeof *m);
    if (!m || !(m->proc = strdup(proc))) {
        free(m);
        return sw_errf(err, SW_ENOMEM, "pressure: out of memory");
    }
    find_cgroup(m, cgroot);
    describe(m);
    *out = m;
    return 0;
}

void pressure_close(pressure_mon *m)
{
    if (!m)
        return;
    pressure_watch_stop(m);
    free(m->proc);
    free(m->cg1);
    free(m->cg2);
    free(m->cg2_top);
    free(m);
}

const char *pressure_source(const pressure_mon *m)
{
    return m->source;
}

/* ---- sampling ----------------------------------------------------------- */

static void sample_meminfo(const pressure_mon *m, pressure_snapshot *s)
{
    char buf[TEXT_MAX];
    if (read_text(m->proc, "meminfo", buf, sizeof buf) < 0)
        return;
    s->mem_total = kv_get(buf, "MemTotal");
    s->mem_available = kv_get(buf, "MemAvailable");
    s->mem_free = kv_get(buf, "MemFree");
    s->cached = kv_get(buf, "Cached");
    s->dirty = kv_get(buf, "Dirty");
    s->swap_total = kv_get(buf, "SwapTotal");
    s->swap_free = kv_get(buf, "SwapFree");
}

static void sample_rss(const pressure_mon *m, pressure_snapshot *s)
{
    char buf[256];
    const char *p = buf;
    long page = sysconf(_SC_PAGESIZE);
    if (read_text(m->proc, "self/statm", buf, sizeof buf) < 0 || parse_count(&p) < 0)
        return;
    int64_t pages = parse_count(&p); /* statm: size resident shared ... */
    if (pages >= 0 && page > 0 && pages <= INT64_MAX / page)
        s->rss = pages * page;
}

static void sample_v1(const pressure_mon *m, pressure_snapshot *s)
{
    char stat[TEXT_MAX];
    int have = read_text(m->cg1, "memory.stat", stat, sizeof stat) >= 0;
    int64_t lim = have ? kv_get(stat, "hierarchical_memory_limit") : PRESSURE_UNKNOWN;
    if (lim < 0)
        lim = read_limit(m->cg1, "memory.limit_in_bytes");
    s->cgroup = 1;
    s->cg_limit = lim >= V1_UNLIMITED ? PRESSURE_UNLIMITED : lim;
    s->cg_usage = read_count(m->cg1, "memory.usage_in_bytes");
    if (have) {
        s->cg_file = kv_get(stat, "total_cache");
        if (s->cg_file < 0)
            s->cg_file = kv_get(stat, "cache");
        s->cg_inactive_file = kv_get(stat, "total_inactive_file");
        if (s->cg_inactive_file < 0)
            s->cg_inactive_file = kv_get(stat, "inactive_file");
    }
    s->cg_oom_kill = read_kv(m->cg1, "memory.oom_control", "oom_kill");
    s->cg_max_events = read_count(m->cg1, "memory.failcnt");
}

/* The lowest limit in file name from our v2 cgroup up to the mount: a
 * parent's memory.max binds its children too. */
static int64_t v2_lowest(const pressure_mon *m, const char *name)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", m->cg2);
    size_t top = strlen(m->cg2_top);
    int inside = strncmp(dir, m->cg2_top, top) == 0;
    int64_t low = PRESSURE_UNLIMITED;
    for (;;) {
        int64_t v = read_limit(dir, name);
        if (v >= 0 && v < low)
            low = v;
        char *slash = strrchr(dir, '/');
        if (!inside || !slash || (size_t)(slash - dir) < top || strlen(dir) <= top)
            return low;
        *slash = 0;
    }
}

static void sample_v2(const pressure_mon *m, pressure_snapshot *s)
{
    char buf[TEXT_MAX];
    s->cgroup = 2;
    s->cg_limit = v2_lowest(m, "memory.max");
    s->cg_high = v2_lowest(m, "memory.high");
    s->cg_usage = read_count(m->cg2, "memory.current");
    if (read_text(m->cg2, "memory.stat", buf, sizeof buf) >= 0) {
        s->cg_file = kv_get(buf, "file");
        s->cg_inactive_file = kv_get(buf, "inactive_file");
    }
    if (read_text(m->cg2, "memory.events", buf, sizeof buf) >= 0) {
        s->cg_high_events = kv_get(buf, "high");
        s->cg_max_events = kv_get(buf, "max");
        s->cg_oom = kv_get(buf, "oom");
        s->cg_oom_kill = kv_get(buf, "oom_kill");
    }
}

int pressure_sample(pressure_mon *m, pressure_snapshot *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t *counts[] = {
        &s->mem_total, &s->mem_available, &s->mem_free, &s->cached, &s->dirty, &s->swap_total,
        &s->swap_free, &s->rss, &s->cg_limit, &s->cg_high, &s->cg_usage, &s->cg_file,
        &s->cg_inactive_file, &s->cg_oom, &s->cg_oom_kill, &s->cg_high_events, &s->cg_max_events,
    };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        *counts[i] = PRESSURE_UNKNOWN;
    s->time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    s->cgroup = 0;
    sample_meminfo(m, s);
    sample_rss(m, s);
    read_psi(m->proc, "pressure/memory", &s->some, &s->full);
    if (m->cg1)
        sample_v1(m, s);
    else if (m->cg2 && m->cg2_memory)
        sample_v2(m, s);
    if (m->cg2)
        read_psi(m->cg2, "memory.pressure", &s->cg_some, &s->cg_full);
    else {
        psi_unknown(&s->cg_some);
        psi_unknown(&s->cg_full);
    }
    return 0;
}
