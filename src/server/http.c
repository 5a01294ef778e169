/*
 * http.c — the HTTP layer: libmicrohttpd set-up, request bodies, routing,
 * response helpers, streamed responses, disconnect detection, the access
 * log.
 */
#include "server/server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- routes -------------------------------------------------------------------- */

typedef struct route {
    const char *method;
    const char *path;          /* exact, or a prefix when it ends in '/' and prefix is set */
    bool prefix;
    mhd_result (*fn)(srv_req *r);
    const char *label;         /* the metrics endpoint */
    bool open;                 /* no API key needed */
} route;

static const route routes[] = {
    {"GET", "/", false, route_ollama_root, "/", true},
    {"HEAD", "/", false, route_ollama_root, "/", true},
    {"GET", "/health", false, route_health, "/health", true},
    {"GET", "/v1/health", false, route_health, "/health", true},
    {"GET", "/metrics", false, route_metrics, "/metrics", false},
    {"GET", "/slots", false, route_slots, "/slots", false},
    {"POST", "/tokenize", false, route_tokenize, "/tokenize", false},
    {"POST", "/detokenize", false, route_detokenize, "/detokenize", false},
    {"POST", "/v1/chat/completions", false, route_openai_chat, "/v1/chat/completions", false},
    {"POST", "/chat/completions", false, route_openai_chat, "/v1/chat/completions", false},
    {"POST", "/v1/completions", false, route_openai_completions, "/v1/completions", false},
    {"POST", "/completions", false, route_openai_completions, "/v1/completions", false},
    {"GET", "/v1/models", false, route_openai_models, "/v1/models", false},
    {"GET", "/models", false, route_openai_models, "/v1/models", false},
    {"GET", "/v1/models/", true, route_openai_models, "/v1/models", false},
    {"GET", "/api/version", false, route_ollama_version, "/api/version", false},
    {"GET", "/api/tags", false, route_ollama_tags, "/api/tags", false},
    {"POST", "/api/show", false, route_ollama_show, "/api/show", false},
    {"GET", "/api/ps", false, route_ollama_ps, "/api/ps", false},
    {"POST", "/api/generate", false, route_ollama_generate, "/api/generate", false},
    {"POST", "/api/chat", false, route_ollama_chat, "/api/chat", false},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static bool route_matches_path(const route *rt, const char *path)
{
    return rt->prefix ? !strncmp(path, rt->path, strlen(rt->path)) && path[strlen(rt->path)]
                      : !strcmp(path, rt->path);
}

static bool is_ollama_path(const char *path) { return !strncmp(path, "/api/", 5); }

/* --- requests -------------------------------------------------------------------- */

static void req_log(srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[INET6_ADDRSTRLEN] = "-";
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
    }
    double ms = (now_s() - r->t0) * 1e3;
    if (!r->generated) {
        LOG_EVENT(r->status >= 500 ? LOG_WARN : LOG_INFO, "request", LOG_S("method", r->method),
                  LOG_S("path", r->path), LOG_I("status", r->status), LOG_F("ms", ms),
                  LOG_S("client", addr));
        return;
    }
    LOG_EVENT(r->status >= 500 ? LOG_WARN : LOG_INFO, "request", LOG_S("method", r->method),
              LOG_S("path", r->path), LOG_I("status", r->status), LOG_F("ms", ms),
              LOG_S("client", addr), LOG_S("session", r->session), LOG_I("prompt", r->n_prompt),
              LOG_I("cached", r->n_cached), LOG_I("generated", r->n_gen),
              LOG_S("finish", r->aborted ? "client_gone" : r->finish ? r->finish : ""),
              LOG_F("ttft_ms", r->ttft_s * 1e3), LOG_I("stream", r->streamed));
}

static void req_unref(srv_req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (!r->status)
        r->status = 499; /* nothing was sent: the client left first */
    req_log(r);
    metrics_request(r->srv->m, r->endpoint, r->status, now_s() - r->t0);
    atomic_fetch_sub(&r->srv->in_flight, 1);
    sb_free(&r->body);
    free(r->path);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    srv_req *r = *con_cls;
    if (!r)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->streamed)
        r->aborted = true;
    *con_cls = NULL;
    req_unref(r);
}

const char *srv_header(srv_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

bool srv_client_gone(srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP))
        return true;
    /* Readable: either pipelined bytes (still there) or EOF (gone). */
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* --- responses ------------------------------------------------------------------- */

static void add_common_headers(struct MHD_Response *resp, const char *ctype)
{
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Server", "spillway/" SPILLWAY_VERSION);
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
}

static mhd_result queue(srv_req *r, int status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    r->status = status;
    r->responded = true;
    mhd_result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

mhd_result srv_send(srv_req *r, int status, const char *ctype, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp)
        add_common_headers(resp, ctype);
    return queue(r, status, resp);
}

mhd_result srv_send_json(srv_req *r, int status, json_t *j)
{
    strbuf b = {0};
    if (j)
        sb_json(&b, j);
    json_decref(j);
    if (!j || b.oom || !b.s) {
        sb_free(&b);
        static const char fail[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                   "\"server_error\",\"param\":null,\"code\":null}}";
        return srv_send(r, 500, "application/json", fail, sizeof fail - 1);
    }
    sb_puts(&b, "\n");
    mhd_result ret = srv_send(r, status, "application/json", b.s, b.len);
    sb_free(&b);
    return ret;
}

static const char *openai_error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429:
    case 503: return "unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static mhd_result error_openai_v(srv_req *r, int status, const char *param, const char *code,
                                 const char *msg)
{
    if (!code || !*code)
        code = status == 413 ? "request_too_large" : status == 503 ? "unavailable" : NULL;
    json_t *err = json_pack("{s:s, s:s, s:o, s:o}", "message", msg, "type",
                            openai_error_type(status), "param",
                            param && *param ? json_string(param) : json_null(), "code",
                            code ? json_string(code) : json_null());
    return srv_send_json(r, status, json_pack("{s:o}", "error", err));
}

mhd_result srv_error_openai(srv_req *r, int status, const char *param, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_openai_v(r, status, param, NULL, msg);
}

mhd_result srv_error_ollama(srv_req *r, int status, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return srv_send_json(r, status, json_pack("{s:s}", "error", msg));
}

mhd_result srv_error(srv_req *r, const srv_perr *e, bool ollama)
{
    int status = e->status ? e->status : 500;
    return ollama ? srv_error_ollama(r, status, "%s", e->msg)
                  : error_openai_v(r, status, e->param, e->code, e->msg);
}

int srv_status_of(int code)
{
    switch (code) {
    case SW_EINVAL: case SW_ERANGE: case SW_ETYPE: case SW_EFORMAT: case SW_EUNSUPPORTED:
        return 400;
    case SW_EBUSY: return 503;
    case SW_ENOTFOUND: return 404;
    default: return 500;
    }
}

/* --- streaming -------------------------------------------------------------------- */

typedef struct srv_stream {
    srv_req *r;
    srv_pull_fn pull;
    void (*done)(void *ctx);
    void *ctx;
    strbuf out;
    size_t off;
    int state;                 /* 1 more to come, 0 ended, -1 aborted */
} srv_stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    srv_stream *s = cls;
    while (s->off == s->out.len) {
        if (s->state <= 0)
            return s->state == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                                 : MHD_CONTENT_READER_END_WITH_ERROR;
        sb_reset(&s->out);
        s->off = 0;
        s->state = s->pull(s->ctx, &s->out);
        if (s->out.oom)
            s->state = -1;
    }
    size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
    memcpy(buf, s->out.s + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    srv_stream *s = cls;
    if (s->state != 0 || s->off < s->out.len)
        s->r->aborted = true;
    s->done(s->ctx);
    sb_free(&s->out);
    req_unref(s->r);
    free(s);
}

mhd_result srv_send_stream(srv_req *r, const char *ctype, srv_pull_fn pull,
                           void (*done)(void *ctx), void *ctx)
{
    srv_stream *s = calloc(1, sizeof *s);
    if (!s) {
        done(ctx);
        return srv_error_openai(r, 500, NULL, "out of memory");
    }
    *s = (srv_stream){.r = r, .pull = pull, .done = done, .ctx = ctx, .state = 1};
    atomic_fetch_add(&r->refs, 1);
    r->streamed = true;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return MHD_NO;
    }
    add_common_headers(resp, ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return queue(r, 200, resp);
}

/* --- dispatch ---------------------------------------------------------------------- */

static mhd_result not_found(srv_req *r)
{
    if (is_ollama_path(r->path))
        return srv_error_ollama(r, 404, "404 page not found: %s %s", r->method, r->path);
    return srv_error_openai(r, 404, NULL, "no such endpoint: %s %s", r->method, r->path);
}

static bool authorized(srv_req *r, const route *rt)
{
    const char *key = r->srv->api_key;
    if (!key || rt->open)
        return true;
    const char *h = srv_header(r, "Authorization");
    return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, key);
}

static mhd_result dispatch(srv_req *r)
{
    if (!strcmp(r->method, "OPTIONS")) { /* CORS preflight */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (resp) {
            add_common_headers(resp, NULL);
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                    "Authorization, Content-Type, X-Session-Id");
        }
        return queue(r, 204, resp);
    }
    bool path_known = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        const route *rt = &routes[i];
        if (!route_matches_path(rt, r->path))
            continue;
        path_known = true;
        r->endpoint = rt->label;
        if (strcmp(rt->method, r->method))
            continue;
        if (!authorized(r, rt))
            return is_ollama_path(r->path)
                       ? srv_error_ollama(r, 401, "unauthorized: wrong or missing API key")
                       : srv_error_openai(r, 401, NULL, "invalid or missing API key (send "
                                                        "\"Authorization: Bearer KEY\")");
        return rt->fn(r);
    }
    if (!path_known)
        return not_found(r);
    if (is_ollama_path(r->path))
        return srv_error_ollama(r, 405, "method %s not allowed on %s", r->method, r->path);
    return srv_error_openai(r, 405, NULL, "method %s not allowed on %s", r->method, r->path);
}

static srv_req *req_new(server *s, struct MHD_Connection *conn, const char *url,
                        const char *method)
{
    srv_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->conn = conn;
    r->method = method;
    r->t0 = now_s();
    r->endpoint = "other";
    atomic_init(&r->refs, 1);
    atomic_fetch_add(&s->in_flight, 1);
    const char *q = strchr(url, '?');
    r->path = q ? strndup(url, (size_t)(q - url)) : strdup(url);
    if (!r->path) {
        atomic_fetch_sub(&s->in_flight, 1);
        free(r);
        return NULL;
    }
    return r;
}

static mhd_result too_large(srv_req *r)
{
    size_t max = r->srv->o.max_body;
    if (is_ollama_path(r->path))
        return srv_error_ollama(r, 413, "request body too large (the limit is %zu bytes)", max);
    return srv_error_openai(r, 413, NULL, "request body too large (the limit is %zu bytes; "
                            "see --max-body)", max);
}

static mhd_result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls)
{
    (void)version;
    server *s = cls;
    srv_req *r = *con_cls;
    if (!r) {
        if (!(r = req_new(s, conn, url, method)))
            return MHD_NO;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body)
            return too_large(r); /* answered before the body is read */
        return MHD_YES;
    }
    if (r->responded) { /* a body after an early answer: discard it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (r->body.len + *upload_data_size > s->o.max_body)
            r->too_big = true;
        else
            sb_append(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->too_big)
        return too_large(r);
    if (r->body.oom)
        return srv_error_openai(r, 500, NULL, "out of memory reading the request");
    return dispatch(r);
}

/* --- the daemon --------------------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    LOG_EVENT(LOG_DEBUG, "http", LOG_S("detail", msg));
}

/* Binds and listens on host:port; -1 with err. */
static int listen_on(const char *host, int port, int *bound_port, sw_err *err)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai)
        return sw_errf(err, SW_EINVAL, "cannot resolve host '%s': %s", host, gai_strerror(gai));
    int fd = -1, last = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            last = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return sw_errf(err, SW_EIO, "cannot listen on %s:%d: %s", host, port,
                       strerror(last ? last : EADDRNOTAVAIL));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int server_start(const server_opts *opts, sw_engine *e, server **out, sw_err *err)
{
    *out = NULL;
    server *s = calloc(1, sizeof *s);
    if (!s)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    s->o = *opts;
    s->e = e;
    s->t_start = now_s();
    s->host = strdup(opts->host ? opts->host : "127.0.0.1");
    s->api_key = opts->api_key && *opts->api_key ? strdup(opts->api_key) : NULL;
    s->m = metrics_new();
    if (!s->o.max_body)
        s->o.max_body = 32u << 20;
    if (!s->o.max_connections)
        s->o.max_connections = 256;
    int rc = 0;
    if (!s->host || !s->m || (opts->api_key && *opts->api_key && !s->api_key))
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    else if ((s->listen_fd = listen_on(s->host, opts->port, &s->port, err)) < 0)
        rc = s->listen_fd;
    if (rc < 0) {
        s->listen_fd = -1;
        server_stop(s);
        return rc;
    }
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!s->d) {
        server_stop(s);
        return sw_errf(err, SW_EIO, "cannot start the HTTP server (libmicrohttpd)");
    }
    s->listen_fd = -1; /* the daemon's now */
    *out = s;
    return 0;
}

int server_port(const server *s) { return s->port; }

void server_quiesce(server *s)
{
    if (s && s->d) {
        /* The daemon's threads may still look at the socket: it is closed
         * after MHD_stop_daemon. */
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET)
            s->listen_fd = fd;
    }
}

int server_drain(server *s, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1e3;
    while (atomic_load(&s->in_flight) > 0 && now_s() < end) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&s->in_flight);
}

void server_stop(server *s)
{
    if (!s)
        return;
    if (s->d)
        MHD_stop_daemon(s->d);
    if (s->listen_fd >= 0) /* not started, or quiesced */
        close(s->listen_fd);
    metrics_free(s->m);
    free(s->host);
    free(s->api_key);
    free(s);
}
