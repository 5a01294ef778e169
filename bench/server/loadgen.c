/*
 * loadgen.c — a closed-loop load generator for `spillway serve`.
 *
 *   loadgen --port P [--concurrency C] [--duration S] [--max-tokens N]
 *           [--path /v1/chat/completions] [--label TEXT]
 *
 * C client threads each send streamed chat requests back to back for S
 * seconds (each request a new conversation with its own prompt, so prefix
 * reuse covers only the chat template's common opening) and read the SSE
 * answer to the end. Per request it records the latency (first byte of the
 * request to the last of the answer), the time to the first content token,
 * and the completion tokens from the final usage chunk. Prints one markdown
 * table row: requests/s, generated tokens/s, latency and TTFT percentiles,
 * errors. Built by bench/bench_server.sh; plain sockets and pthreads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct sample {
    double latency, ttft;
    int tokens;
} sample;

typedef struct client {
    int id;
    sample *s;
    int n, cap;
    int errors;
} client;

static int g_port = 8080, g_max_tokens = 32;
static double g_deadline;
static const char *g_path = "/v1/chat/completions";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One streamed request; 0 with *out filled, -1 on any failure. */
static int one_request(int id, int k, sample *out)
{
    char body[512], req[1024];
    int bl = snprintf(body, sizeof body,
                      "{\"model\": \"bench\", \"messages\": [{\"role\": \"user\", \"content\": "
                      "\"Tell story %d of client %d.\"}], \"max_tokens\": %d, \"stream\": true, "
                      "\"stream_options\": {\"include_usage\": true}, \"seed\": %d}",
                      k, id, g_max_tokens, k);
    int rl = snprintf(req, sizeof req,
                      "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                      g_path, bl, body);
    double t0 = now();
    int fd = dial();
    if (fd < 0 || write(fd, req, (size_t)rl) != rl) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double first = 0;
    for (ssize_t n; buf && (n = read(fd, buf + len, cap - len - 1)) > 0;) {
        len += (size_t)n;
        buf[len] = 0;
        if (!first && strstr(buf, "\"delta\":{\"content\":\""))
            first = now();
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    double t1 = now();
    if (!buf)
        return -1;
    buf[len] = 0;
    const char *u = strstr(buf, "\"completion_tokens\":");
    int ok = !strncmp(buf, "HTTP/1.1 200", 12) && u && strstr(buf, "data: [DONE]");
    *out = (sample){.latency = t1 - t0, .ttft = first ? first - t0 : t1 - t0,
                    .tokens = u ? atoi(u + 20) : 0};
    free(buf);
    return ok ? 0 : -1;
}

static void *client_main(void *arg)
{
    client *c = arg;
    for (int k = 0; now() < g_deadline; k++) {
        sample s;
        if (one_request(c->id, k, &s) < 0) {
            c->errors++;
            continue;
        }
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->s = realloc(c->s, sizeof *c->s * (size_t)c->cap);
        }
        c->s[c->n++] = s;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    int conc = 1;
    double duration = 10;
    const char *label = "";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) g_port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency")) conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) g_max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--path")) g_path = argv[i + 1];
        else if (!strcmp(argv[i], "--label")) label = argv[i + 1];
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (conc < 1 || conc > 1024)
        return 2;
    client *cs = calloc((size_t)conc, sizeof *cs);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    double t0 = now();
    g_deadline = t0 + duration;
    for (int i = 0; i < conc; i++) {
        cs[i].id = i;
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    int total = 0, errors = 0;
    long tokens = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        total += cs[i].n;
        errors += cs[i].errors;
    }
    double wall = now() - t0;
    double *lat = malloc(sizeof(double) * (size_t)(total + 1));
    double *ttft = malloc(sizeof(double) * (size_t)(total + 1));
    int k = 0;
    for (int i = 0; i < conc; i++)
        for (int j = 0; j < cs[i].n; j++, k++) {
            lat[k] = cs[i].s[j].latency * 1e3;
            ttft[k] = cs[i].s[j].ttft * 1e3;
            tokens += cs[i].s[j].tokens;
        }
    qsort(lat, (size_t)total, sizeof *lat, cmp_double);
    qsort(ttft, (size_t)total, sizeof *ttft, cmp_double);
    printf("| %s | %d | %d | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d |\n", label, conc,
           total, total / wall, tokens / wall, pct(lat, total, 0.5), pct(lat, total, 0.9),
           pct(lat, total, 0.99), pct(ttft, total, 0.5), pct(ttft, total, 0.99), errors);
    return errors && !total ? 1 : 0;
}
