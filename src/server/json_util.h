/*
 * json_util.h — the small things every route needs: a growable byte
 * buffer, typed reads of request fields that say exactly what is wrong
 * with a bad one, and timestamps in the formats the APIs use.
 *
 * Field readers share one convention: a missing field and an explicit JSON
 * null both mean "not given" (return 0, *out untouched — OpenAI clients
 * send "stop": null and "max_tokens": null); a value of the right type and
 * range is stored (return 1); anything else fills the srv_perr with a 400
 * naming the field and returns -1.
 */
#ifndef SW_SERVER_JSON_UTIL_H
#define SW_SERVER_JSON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* A growable buffer; s is always NUL-terminated when non-NULL. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool oom;          /* an append failed; the contents are incomplete */
} strbuf;

void sb_append(strbuf *b, const char *s, size_t len);
void sb_puts(strbuf *b, const char *s);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the compact serialization of j (and nothing if it fails). */
void sb_json(strbuf *b, const json_t *j);
void sb_reset(strbuf *b);
void sb_free(strbuf *b);

/* A request error: HTTP status, the offending parameter ("" if none), and
 * a sentence for the client. */
typedef struct srv_perr {
    int status;
    char param[64];
    char code[40];     /* OpenAI's machine-readable code, "" for none */
    char msg[448];
} srv_perr;

int perr_set(srv_perr *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses a request body that must be one JSON object. */
json_t *json_parse_body(const char *body, size_t len, srv_perr *e);

int jget_str(const json_t *obj, const char *key, const char **out, srv_perr *e);
int jget_bool(const json_t *obj, const char *key, bool *out, srv_perr *e);
/* An integer (or a real with an integral value) in [lo, hi]. */
int jget_int(const json_t *obj, const char *key, long long lo, long long hi, long long *out,
             srv_perr *e);
/* A finite number in [lo, hi]. */
int jget_num(const json_t *obj, const char *key, double lo, double hi, double *out,
             srv_perr *e);
/* The field if it is an object / array (0 if absent or null). */
int jget_obj(const json_t *obj, const char *key, json_t **out, srv_perr *e);
int jget_arr(const json_t *obj, const char *key, json_t **out, srv_perr *e);

/* Unix seconds and RFC 3339 with nanoseconds in UTC
 * ("2024-05-01T12:00:00.123456789Z"). */
int64_t time_unix(void);
void time_rfc3339(char *buf, size_t n);
/* Seconds since the Unix epoch as RFC 3339 ("2024-05-01T12:00:00Z"). */
void time_rfc3339_of(int64_t t, char *buf, size_t n);
/* A random id: prefix + 24 alphanumerics. */
void random_id(const char *prefix, char *buf, size_t n);

#endif
