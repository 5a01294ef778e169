/*
 * serve_util.h — what the end-to-end tests of `spillway serve` share: start
 * the real binary on a free port and stop it, and a small blocking HTTP/1.1
 * client (Connection: close, chunked bodies decoded).
 *
 * A started server is tied to the test process with PR_SET_PDEATHSIG, so a
 * test that fails half-way (CHECK returns) never leaves a server behind.
 */
#ifndef SW_TEST_SERVE_UTIL_H
#define SW_TEST_SERVE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct test_server {
    pid_t pid;
    int port;
    char log[512];
} test_server;

/* Starts `spillway serve FIXTURE --port 0 ARGS` (args may be NULL) and waits
 * until /health answers 200; 0, or -1 after printing why. */
int ts_start(test_server *s, const char *fixture, const char *args);
/* SIGTERM, then waits up to 30 s; the exit status, or -1. */
int ts_stop(test_server *s);
/* The server's log so far (malloc'd). */
char *ts_log(const test_server *s);

typedef struct http_resp {
    int status;
    char *head;   /* status line and headers */
    char *body;   /* decoded body, NUL-terminated */
    size_t len;
} http_resp;

/* One request on a fresh connection; 0 or -1. headers: extra lines, each
 * ending in "\r\n" (may be NULL). */
int http_do(int port, const char *method, const char *path, const char *headers,
            const char *body, http_resp *r);
void http_free(http_resp *r);

/* The raw side, for tests that hang up early: connects and sends; returns
 * the socket or -1. */
int http_send(int port, const char *method, const char *path, const char *headers,
              const char *body);
/* Reads until at least `want` bytes came or timeout_ms passed; returns the
 * count read (raw, chunk framing included). */
size_t http_read_some(int fd, char *buf, size_t cap, size_t want, int timeout_ms);

/* The payloads of an SSE body's "data: " lines, in order (malloc'd array of
 * malloc'd strings). */
int sse_data(const char *body, char ***out, int *n);
void sse_free(char **ev, int n);

/* Milliseconds on a monotonic clock. */
double now_ms(void);

#endif
