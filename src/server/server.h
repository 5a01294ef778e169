/*
 * server.h — spillway's HTTP server: the OpenAI and Ollama APIs, health,
 * slots, tokenizer endpoints and Prometheus metrics over one engine.
 *
 * Threads: libmicrohttpd runs one thread per connection. A request's thread
 * parses the body, renders and tokenizes the prompt (the template and the
 * tokenizer are immutable, so any number of threads use them at once),
 * submits a job to the engine and then waits on that job's output, writing
 * it to the client as it comes (SSE, NDJSON) or all at once. While it waits
 * it watches its socket: a client that hangs up gets its job cancelled, so
 * the engine frees the slot at its next step. The engine thread never
 * touches a socket and never waits for a client.
 *
 * Lifecycle: server_start() listens at once (requests that need the model
 * get 503 until it is loaded; /health says so); server_quiesce() stops
 * accepting new connections; server_drain() waits for the responses in
 * flight; server_stop() closes everything (see cmd_serve.c for the SIGTERM
 * sequence).
 */
#ifndef SW_SERVER_H
#define SW_SERVER_H

#include <stddef.h>

#include "spillway.h"
#include "util/err.h"

typedef struct server_opts {
    const char *host;          /* "127.0.0.1", "0.0.0.0", "::", a name */
    int port;                  /* 0: any free port (see server_port) */
    size_t max_body;           /* bytes; larger requests get 413 */
    const char *api_key;       /* required as "Authorization: Bearer KEY"; NULL: none */
    int max_connections;       /* 0: 256 */
} server_opts;

typedef struct server server;

int server_start(const server_opts *opts, sw_engine *e, server **out, sw_err *err);
int server_port(const server *s);
/* Stops accepting connections; open ones are served to the end. */
void server_quiesce(server *s);
/* Waits up to timeout_ms for the requests in flight to complete (their
 * responses fully sent); returns how many are left. */
int server_drain(server *s, int timeout_ms);
/* Closes every connection and frees the server. */
void server_stop(server *s);

#endif
