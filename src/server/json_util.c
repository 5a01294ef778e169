/* json_util.c — buffers, typed request fields, timestamps (json_util.h). */
#include "server/json_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* --- strbuf ------------------------------------------------------------------ */

static bool sb_reserve(strbuf *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *ns = realloc(b->s, cap);
    if (!ns) {
        b->oom = true;
        return false;
    }
    b->s = ns;
    b->cap = cap;
    return true;
}

void sb_append(strbuf *b, const char *s, size_t len)
{
    if (!sb_reserve(b, len))
        return;
    if (len)
        memcpy(b->s + b->len, s, len);
    b->len += len;
    b->s[b->len] = 0;
}

void sb_puts(strbuf *b, const char *s) { sb_append(b, s, strlen(s)); }

void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static int sb_dump_cb(const char *buf, size_t size, void *data)
{
    sb_append(data, buf, size);
    return ((strbuf *)data)->oom ? -1 : 0;
}

void sb_json(strbuf *b, const json_t *j)
{
    json_dump_callback(j, sb_dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
}

void sb_reset(strbuf *b)
{
    b->len = 0;
    if (b->s)
        b->s[0] = 0;
}

void sb_free(strbuf *b)
{
    free(b->s);
    *b = (strbuf){0};
}

/* --- errors and fields --------------------------------------------------------- */

int perr_set(srv_perr *e, int status, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->code[0] = 0;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

json_t *json_parse_body(const char *body, size_t len, srv_perr *e)
{
    if (!body || len == 0) {
        perr_set(e, 400, "", "the request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        perr_set(e, 400, "", "the request body is not valid JSON: %s (line %d, column %d)",
                 je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        perr_set(e, 400, "", "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* The field, or NULL when absent or null. */
static json_t *field(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

int jget_str(const json_t *obj, const char *key, const char **out, srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return perr_set(e, 400, key, "'%s' must be a string", key);
    *out = json_string_value(v);
    return 1;
}

int jget_bool(const json_t *obj, const char *key, bool *out, srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return perr_set(e, 400, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 1;
}

int jget_int(const json_t *obj, const char *key, long long lo, long long hi, long long *out,
             srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d == floor(d) && d >= -9.2e18 && d <= 9.2e18))
            return perr_set(e, 400, key, "'%s' must be an integer", key);
        x = (long long)d;
    } else {
        return perr_set(e, 400, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return perr_set(e, 400, key, "'%s' is %lld; it must be between %lld and %lld", key, x,
                        lo, hi);
    *out = x;
    return 1;
}

int jget_num(const json_t *obj, const char *key, double lo, double hi, double *out,
             srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return perr_set(e, 400, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return perr_set(e, 400, key, "'%s' is %g; it must be between %g and %g", key, d, lo, hi);
    *out = d;
    return 1;
}

int jget_obj(const json_t *obj, const char *key, json_t **out, srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_object(v))
        return perr_set(e, 400, key, "'%s' must be an object", key);
    *out = v;
    return 1;
}

int jget_arr(const json_t *obj, const char *key, json_t **out, srv_perr *e)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_array(v))
        return perr_set(e, 400, key, "'%s' must be an array", key);
    *out = v;
    return 1;
}

/* --- time and ids -------------------------------------------------------------- */

int64_t time_unix(void) { return (int64_t)time(NULL); }

void time_rfc3339(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

void time_rfc3339_of(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void random_id(const char *prefix, char *buf, size_t n)
{
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[24];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)((uint64_t)ts.tv_nsec * 2654435761u >> (i % 24));
    }
    size_t p = (size_t)snprintf(buf, n, "%s", prefix);
    for (size_t i = 0; i < sizeof r && p + 1 < n; i++)
        buf[p++] = alnum[r[i] % (sizeof alnum - 1)];
    if (p < n)
        buf[p] = 0;
}
