/* log.c — text and JSON-lines logging (log.h). */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu;
    int fd;
    log_format fmt;
    log_level min;
} g_log = {PTHREAD_MUTEX_INITIALIZER, 2, LOG_TEXT, LOG_INFO};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_format(const char *s)
{
    return !strcmp(s, "text") ? LOG_TEXT : !strcmp(s, "json") ? LOG_JSON : -1;
}

int log_open(log_format fmt, const char *path, log_level min, sw_err *err)
{
    int fd = 2;
    if (path && strcmp(path, "-")) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return sw_errf(err, SW_EIO, "cannot open log file '%s': %s", path, strerror(errno));
    }
    pthread_mutex_lock(&g_log.mu);
    if (g_log.fd > 2)
        close(g_log.fd);
    g_log.fd = fd;
    g_log.fmt = fmt;
    g_log.min = min;
    pthread_mutex_unlock(&g_log.mu);
    return 0;
}

void log_close(void)
{
    pthread_mutex_lock(&g_log.mu);
    if (g_log.fd > 2)
        close(g_log.fd);
    g_log.fd = 2;
    g_log.fmt = LOG_TEXT;
    pthread_mutex_unlock(&g_log.mu);
}

/* A line being built; overflow truncates. */
typedef struct line {
    char buf[4096];
    size_t n;
} line;

static void put(line *l, const char *s, size_t len)
{
    size_t room = sizeof l->buf - 2 - l->n; /* keep space for "\n" */
    if (len > room)
        len = room;
    memcpy(l->buf + l->n, s, len);
    l->n += len;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

static void putf(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line *l, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal; control bytes escaped, other bytes as they are. */
static void put_json_str(line *l, const char *s)
{
    put(l, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        } else if (c < 0x20) {
            putf(l, "\\u%04x", c);
        } else {
            put(l, s, 1);
        }
    }
    put(l, "\"", 1);
}

/* Text form: bare if it has no spaces, quotes or controls, else quoted. */
static void put_text_value(line *l, const char *s)
{
    bool plain = *s != 0;
    for (const char *p = s; *p && plain; p++)
        plain = (unsigned char)*p > ' ' && *p != '"' && *p != '=';
    if (plain)
        puts_(l, s);
    else
        put_json_str(l, s);
}

static void put_time(line *l)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    time_t t = tv.tv_sec;
    gmtime_r(&t, &tm);
    putf(l, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

static void put_number(line *l, const log_field *f)
{
    if (f->type == 'i')
        putf(l, "%lld", f->i);
    else if (f->d != f->d || f->d - f->d != 0) /* NaN or infinite: JSON has neither */
        puts_(l, "null");
    else
        putf(l, "%.6g", f->d);
}

static void format_json(line *l, log_level lv, const char *msg, const log_field *f, int n)
{
    puts_(l, "{\"time\":\"");
    put_time(l);
    putf(l, "\",\"level\":\"%s\",\"msg\":", level_names[lv]);
    put_json_str(l, msg);
    for (int i = 0; i < n; i++) {
        put(l, ",", 1);
        put_json_str(l, f[i].key);
        put(l, ":", 1);
        if (f[i].type == 's')
            put_json_str(l, f[i].s ? f[i].s : "");
        else
            put_number(l, &f[i]);
    }
    put(l, "}", 1);
}

static void format_text(line *l, log_level lv, const char *msg, const log_field *f, int n)
{
    put_time(l);
    putf(l, " %-5s %s", level_names[lv], msg);
    for (int i = 0; i < n; i++) {
        putf(l, " %s=", f[i].key);
        if (f[i].type == 's')
            put_text_value(l, f[i].s ? f[i].s : "");
        else
            put_number(l, &f[i]);
    }
}

void log_event(log_level lv, const char *msg, const log_field *f, int n)
{
    if ((unsigned)lv > LOG_ERROR)
        lv = LOG_ERROR;
    pthread_mutex_lock(&g_log.mu);
    if (lv < g_log.min) {
        pthread_mutex_unlock(&g_log.mu);
        return;
    }
    line l;
    l.n = 0;
    if (g_log.fmt == LOG_JSON)
        format_json(&l, lv, msg, f, n);
    else
        format_text(&l, lv, msg, f, n);
    l.buf[l.n++] = '\n';
    ssize_t w = write(g_log.fd, l.buf, l.n);
    (void)w;
    pthread_mutex_unlock(&g_log.mu);
}

void log_msg(log_level lv, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_event(lv, msg, NULL, 0);
}
