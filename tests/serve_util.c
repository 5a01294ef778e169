/* serve_util.c — starting spillway serve and talking HTTP to it (serve_util.h). */
#include "serve_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *ts_log(const test_server *s)
{
    char *t = test_read_file(s->log, NULL);
    return t ? t : strdup("");
}

/* The port from the server's "listening ... port=N" line, or 0. */
static int port_from_log(const test_server *s)
{
    char *log = ts_log(s);
    const char *p = strstr(log, "listening");
    const char *q = p ? strstr(p, "port=") : NULL;     /* text logs */
    const char *r = p ? strstr(p, "\"port\":") : NULL; /* JSON logs */
    int port = q ? atoi(q + 5) : r ? atoi(r + 7) : 0;
    free(log);
    return port;
}

int ts_start(test_server *s, const char *fixture, const char *args)
{
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s/server-%d.log", test_tmpdir(), (int)now_ms() % 100000);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec '%s' serve '%s' --port 0 %s", test_bin(),
             test_fixture(fixture), args ? args : "");
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    for (double t0 = now_ms(); now_ms() - t0 < 60000; sleep_ms(20)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *log = ts_log(s);
            fprintf(stderr, "    server exited at start:\n%s\n", log);
            free(log);
            s->pid = 0;
            return -1;
        }
        if (!s->port)
            s->port = port_from_log(s);
        http_resp r;
        if (s->port && http_do(s->port, "GET", "/health", NULL, NULL, &r) == 0) {
            int ok = r.status == 200;
            http_free(&r);
            if (ok)
                return 0;
        }
    }
    fprintf(stderr, "    server did not become healthy in 60 s\n");
    return -1;
}

int ts_stop(test_server *s)
{
    if (!s->pid)
        return -1;
    kill(s->pid, SIGTERM);
    int st = 0;
    for (double t0 = now_ms(); now_ms() - t0 < 30000; sleep_ms(10))
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return -1;
}

/* --- HTTP ------------------------------------------------------------------------- */

int http_send(int port, const char *method, const char *path, const char *headers,
              const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, body ? "Content-Type: application/json\r\n" : "",
                     headers ? headers : "", blen);
    if (write(fd, head, (size_t)n) != n || (blen && write(fd, body, blen) != (ssize_t)blen)) {
        close(fd);
        return -1;
    }
    return fd;
}

size_t http_read_some(int fd, char *buf, size_t cap, size_t want, int timeout_ms)
{
    size_t got = 0;
    double t0 = now_ms();
    while (got < want && got < cap) {
        int left = timeout_ms - (int)(now_ms() - t0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = read(fd, buf + got, cap - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* Decodes a chunked body in place; returns its length. */
static size_t dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(b + in, &end, 16);
        char *crlf = strstr(end, "\r\n");
        if (!crlf || n == 0)
            break;
        in = (size_t)(crlf - b) + 2;
        if (in + n > len)
            n = len - in;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
    b[out] = 0;
    return out;
}

int http_do(int port, const char *method, const char *path, const char *headers,
            const char *body, http_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = http_send(port, method, path, headers, body);
    if (fd < 0)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (ssize_t got; buf && (got = read(fd, buf + n, cap - n)) > 0;) {
        n += (size_t)got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf)
        return -1;
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    *sep = 0;
    r->head = strdup(buf);
    size_t blen = n - (size_t)(sep + 4 - buf);
    r->body = malloc(blen + 1);
    memcpy(r->body, sep + 4, blen);
    r->body[blen] = 0;
    r->len = blen;
    if (strcasestr(r->head, "Transfer-Encoding: chunked"))
        r->len = dechunk(r->body, blen);
    free(buf);
    return 0;
}

void http_free(http_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int sse_data(const char *body, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    int cap = 0;
    for (const char *p = body; (p = strstr(p, "data: ")) != NULL;) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        if (!e)
            e = p + strlen(p);
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = realloc(*out, sizeof **out * (size_t)cap);
        }
        (*out)[(*n)++] = strndup(p, (size_t)(e - p));
        p = e;
    }
    return 0;
}

void sse_free(char **ev, int n)
{
    for (int i = 0; i < n; i++)
        free(ev[i]);
    free(ev);
}
