/*
 * log.h — one line per event, as human text or as JSON lines.
 *
 *   2025-06-01T12:00:00.123Z info  request method=POST path=/v1/chat/completions status=200
 *   {"time":"2025-06-01T12:00:00.123Z","level":"info","msg":"request","method":"POST",...}
 *
 * An event is a short message plus typed fields (LOG_S, LOG_I, LOG_F), so the
 * JSON form keeps numbers as numbers and the text form stays greppable.
 * The logger is process-wide, like syslog: log_open() chooses format, file
 * and level once at start-up; until then, and after log_close(), events go
 * to stderr as text. Every line is written with one write() under a lock, so
 * lines from different threads never interleave.
 */
#ifndef SW_LOG_H
#define SW_LOG_H

#include "util/err.h"

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum log_format { LOG_TEXT = 0, LOG_JSON } log_format;

/* path NULL or "-": stderr; else appended to (created 0644). */
int log_open(log_format fmt, const char *path, log_level min, sw_err *err);
void log_close(void);
/* "text" / "json" -> format; -1 if neither. */
int log_parse_format(const char *s);

typedef struct log_field {
    const char *key;
    char type;        /* 's', 'i', 'f' */
    const char *s;
    long long i;
    double d;
} log_field;

#define LOG_S(k, v) ((log_field){.key = (k), .type = 's', .s = (v)})
#define LOG_I(k, v) ((log_field){.key = (k), .type = 'i', .i = (long long)(v)})
#define LOG_F(k, v) ((log_field){.key = (k), .type = 'f', .d = (double)(v)})

void log_event(log_level lv, const char *msg, const log_field *f, int n);
/* log_event with a printf-formatted message and no fields. */
void log_msg(log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_EVENT(lv, msg, ...)                                              \
    do {                                                                     \
        const log_field log_f_[] = {__VA_ARGS__};                            \
        log_event(lv, msg, log_f_, (int)(sizeof log_f_ / sizeof log_f_[0])); \
    } while (0)

#endif
