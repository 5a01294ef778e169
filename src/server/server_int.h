/*
 * server_int.h — what the server's files share: a request in flight, the
 * response helpers (http.c), the generation driver (completion.c), the
 * route handlers (routes_*.c) and metrics (metrics.c).
 *
 * A request (srv_req) lives from its first header to the end of its
 * response. A streamed response outlives the access handler, so the
 * request is reference-counted: the connection holds one reference, a
 * stream another; the last one out writes the access-log line and records
 * the metrics.
 */
#ifndef SW_SERVER_INT_H
#define SW_SERVER_INT_H

#include <stdatomic.h>
#include <stdbool.h>

#include <microhttpd.h>

#include "server/json_util.h"
#include "server/request.h"
#include "server/server.h"
#include "server/toolcall.h"

typedef struct metrics metrics;

struct server {
    server_opts o;
    char *host, *api_key;
    sw_engine *e;
    struct MHD_Daemon *d;
    int listen_fd;
    int port;
    metrics *m;
    double t_start;
    atomic_int in_flight;      /* requests not yet completed */
};

typedef struct srv_req {
    server *srv;
    struct MHD_Connection *conn;
    const char *method;        /* MHD's */
    char *path;                /* the URL without its query */
    strbuf body;
    bool too_big;
    bool responded;
    double t0;
    const char *endpoint;      /* metrics label: the route's pattern, or "other" */
    int status;
    atomic_int refs;
    /* what the access log says about a generation */
    bool generated;
    bool streamed;
    bool aborted;              /* the client went away first */
    char session[64];
    int n_prompt, n_cached, n_gen;
    const char *finish;
    double ttft_s;
} srv_req;

typedef enum MHD_Result mhd_result;

/* --- http.c ------------------------------------------------------------------- */

const char *srv_header(srv_req *r, const char *name);
/* The client closed its end (or the connection broke). */
bool srv_client_gone(srv_req *r);
mhd_result srv_send(srv_req *r, int status, const char *ctype, const char *body, size_t len);
/* Sends j compactly and drops the reference. */
mhd_result srv_send_json(srv_req *r, int status, json_t *j);
/* {"error": {"message", "type", "param", "code"}} */
mhd_result srv_error_openai(srv_req *r, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error": "..."} */
mhd_result srv_error_ollama(srv_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
mhd_result srv_error(srv_req *r, const srv_perr *e, bool ollama);

/* A streamed response: pull() is called on the connection's thread when
 * the client can take more; it appends to out and returns 1 (more to
 * come), 0 (this was the end) or -1 (abort the connection). done() runs
 * exactly once, when the stream is over for whatever reason. */
typedef int (*srv_pull_fn)(void *ctx, strbuf *out);
mhd_result srv_send_stream(srv_req *r, const char *ctype, srv_pull_fn pull,
                           void (*done)(void *ctx), void *ctx);

/* HTTP status for an engine error code. */
int srv_status_of(int code);

/* --- completion.c: one generation from request to text -------------------------- */

typedef struct gen_call {
    server *srv;
    srv_req *req;
    gen_request rq;
    sw_job *job;
    int n_prompt;
    bool tools_active;
    toolcall_filter tcf;
    json_t *calls;             /* at the end: tool calls, or NULL */
    sw_job_stats st;           /* at the end */
    bool ended;
    char id[48];
    int64_t created;
    const char *model;         /* the name responses carry */
    double last_check;         /* when the client's socket was last looked at */
} gen_call;

/* Parses nothing: takes the parsed request (moved into c), renders and
 * tokenizes its prompt, submits. On failure fills e. */
int gen_start(gen_call *c, srv_req *r, gen_request *rq, srv_perr *e);
/* Waits for text: 1 with content appended to out, 0 at the end (stats,
 * calls ready; out may have got the last content), -1 when the client went
 * away (the job is cancelled). */
int gen_next(gen_call *c, strbuf *out);
/* Waits for the whole answer into content; same returns as gen_next's end. */
int gen_collect(gen_call *c, strbuf *content);
/* "stop", "length", "tool_calls" */
const char *gen_finish_reason(const gen_call *c, bool ollama);
/* Records what the access log and metrics need, releases the job. */
void gen_end(gen_call *c);

/* --- routes ------------------------------------------------------------------------ */

mhd_result route_openai_chat(srv_req *r);
mhd_result route_openai_completions(srv_req *r);
mhd_result route_openai_models(srv_req *r);
mhd_result route_ollama_root(srv_req *r);
mhd_result route_ollama_version(srv_req *r);
mhd_result route_ollama_tags(srv_req *r);
mhd_result route_ollama_show(srv_req *r);
mhd_result route_ollama_ps(srv_req *r);
mhd_result route_ollama_generate(srv_req *r);
mhd_result route_ollama_chat(srv_req *r);
mhd_result route_health(srv_req *r);
mhd_result route_slots(srv_req *r);
mhd_result route_tokenize(srv_req *r);
mhd_result route_detokenize(srv_req *r);
mhd_result route_metrics(srv_req *r);

/* The model's Ollama "details" object (routes_ollama.c; /api/tags, /api/ps). */
json_t *ollama_details(const sw_model_desc *d);

/* --- metrics.c --------------------------------------------------------------------- */

metrics *metrics_new(void);
void metrics_free(metrics *m);
void metrics_request(metrics *m, const char *endpoint, int status, double seconds);
void metrics_render(metrics *m, server *s, strbuf *out);

#endif
