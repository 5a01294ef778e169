/*
 * cmd_serve.c — `spillway serve MODEL [options]`
 *
 * Serves one model over HTTP: the OpenAI API (/v1/chat/completions,
 * /v1/completions, /v1/models), the Ollama API (/api/chat, /api/generate,
 * /api/tags, /api/show, /api/ps, /api/version), and /health, /slots,
 * /tokenize, /detokenize, /metrics. It listens at once and loads the model
 * in the background (/health answers 503 until it is in).
 *
 * Shutdown: SIGTERM or SIGINT stops accepting connections, lets running
 * and queued requests finish for up to --shutdown-timeout seconds, cancels
 * whatever is left, and exits 0. A second signal exits at once.
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "server/server.h"
#include "spillway.h"
#include "store/catalog.h"
#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *usage_text =
    "usage: spillway serve MODEL [options]\n"
    "\n"
    "Serves MODEL (a GGUF file or a model name, see 'spillway models') over HTTP with\n"
    "the OpenAI and Ollama APIs.\n"
    "  --host HOST           address to listen on (default 127.0.0.1)\n"
    "  --port PORT           port (default 8080; 0 picks a free one)\n"
    "  --parallel N          requests generating together (default 4)\n"
    "  --queue N             requests waiting beyond those; more get 503 (default 64)\n"
    "  --alias NAME          the model's name in listings (default: its file or store name)\n"
    "  --chat-template FILE  Jinja chat template to use instead of the model's\n"
    "  --ctx N               context per session (default: the model's, capped by memory)\n"
    "  --sessions N          conversations whose KV caches are kept (default 4 x parallel)\n"
    "  --kv-budget SIZE      memory the sessions' KV caches may use (default 1/4 of free)\n"
    "  --kv-type T           KV cache type: f16 (default), f32 or q8_0\n"
    "  --prefill-chunk N     prompt tokens per step while others generate (default 128)\n"
    "  --batch N             most tokens per forward call (default 512)\n"
    "  --threads N           compute threads (default: all CPUs this process may use)\n"
    CLI_STORE_USAGE
    "  --max-body SIZE       largest request body (default 32M); larger get 413\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY' (not for / and /health)\n"
    "  --log-format FMT      text (default) or json\n"
    "  --log-file FILE       append logs to FILE instead of standard error\n"
    "  --shutdown-timeout S  seconds running requests get on SIGTERM (default 10)\n"
    "  --models-dir DIR      also look for MODEL names in DIR (repeatable)\n";

typedef struct serve_args {
    store_opts store;
    const char *model, *alias, *template_path, *log_file;
    const char **dirs;
    int n_dirs;
    int log_format;
    int shutdown_s;
    server_opts so;
    sw_engine_opts eo;
} serve_args;

static int parse_size(const char *s, size_t *out)
{
    long long v = cli_parse_size(s);
    if (v <= 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_kv_type(const char *s, sw_kv_type *t)
{
    if (!strcmp(s, "f32"))
        *t = SW_KV_F32;
    else if (!strcmp(s, "f16"))
        *t = SW_KV_F16;
    else if (!strcmp(s, "q8_0"))
        *t = SW_KV_Q8_0;
    else
        return -1;
    return 0;
}

/* One option with a value; 1 used, 0 not an option we know, -1 bad value. */
static int parse_opt(serve_args *a, const char *o, const char *v)
{
    int bad = 0;
    if (!strcmp(o, "--host")) a->so.host = v;
    else if (!strcmp(o, "--port")) bad = cli_parse_int(v, 0, 65535, &a->so.port);
    else if (!strcmp(o, "--parallel") || !strcmp(o, "-np"))
        bad = cli_parse_int(v, 1, 256, &a->eo.n_parallel);
    else if (!strcmp(o, "--queue")) bad = cli_parse_int(v, 0, 100000, &a->eo.n_queue);
    else if (!strcmp(o, "--alias")) a->alias = v;
    else if (!strcmp(o, "--chat-template")) a->template_path = v;
    else if (!strcmp(o, "--ctx") || !strcmp(o, "-c")) bad = cli_parse_int(v, 16, INT32_MAX, &a->eo.n_ctx);
    else if (!strcmp(o, "--sessions")) bad = cli_parse_int(v, 1, 100000, &a->eo.n_sessions);
    else if (!strcmp(o, "--kv-budget")) bad = parse_size(v, &a->eo.kv_budget);
    else if (!strcmp(o, "--kv-type")) bad = parse_kv_type(v, &a->eo.kv_type);
    else if (!strcmp(o, "--prefill-chunk")) bad = cli_parse_int(v, 1, 1 << 16, &a->eo.prefill_chunk);
    else if (!strcmp(o, "--batch")) bad = cli_parse_int(v, 1, 1 << 16, &a->eo.n_batch);
    else if (!strcmp(o, "--threads") || !strcmp(o, "-t")) bad = cli_parse_int(v, 1, 1024, &a->eo.n_threads);
    else if (!strcmp(o, "--max-body")) bad = parse_size(v, &a->so.max_body);
    else if (!strcmp(o, "--api-key")) a->so.api_key = v;
    else if (!strcmp(o, "--log-format")) bad = (a->log_format = log_parse_format(v)) < 0;
    else if (!strcmp(o, "--log-file")) a->log_file = v;
    else if (!strcmp(o, "--shutdown-timeout")) bad = cli_parse_int(v, 0, 86400, &a->shutdown_s);
    else if (!strcmp(o, "--models-dir")) a->dirs[a->n_dirs++] = v;
    else return 0;
    return bad ? -1 : 1;
}

/* -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, serve_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (o[0] != '-' && !a->model) {
            a->model = o;
            continue;
        }
        int sa = cli_store_arg(&a->store, "serve", o, i + 1 < argc ? argv[i + 1] : NULL);
        if (sa < 0)
            return 2;
        if (sa > 0) {
            i += sa - 1;
            continue;
        }
        int rc = i + 1 < argc ? parse_opt(a, o, argv[i + 1]) : 0;
        if (rc < 0) {
            fprintf(stderr, "spillway serve: bad value '%s' for %s\n", argv[i + 1], o);
            return 2;
        }
        if (rc == 0) {
            fprintf(stderr, "spillway serve: unexpected argument '%s'\n\n%s", o, usage_text);
            return 2;
        }
        i++;
    }
    if (!a->model) {
        fputs(usage_text, stderr);
        return 2;
    }
    return -1;
}

/* The model's name when none is given: what the user typed, unless it is a
 * path (then the engine uses the file's name). */
static const char *default_name(const char *model)
{
    return access(model, F_OK) == 0 || strchr(model, '/') ? NULL : model;
}

/* Waits for SIGINT / SIGTERM (blocked in every thread, taken here) or for
 * the model to fail loading; returns the signal, or 0 for a failed load. */
static int wait_for_end(sw_engine *e, const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0)
            return sig;
        if (sw_engine_get_state(e) == SW_ENGINE_FAILED)
            return 0;
    }
}

static int serve(serve_args *a, const char *path, const sigset_t *set, sw_err *err)
{
    char *tmpl = a->template_path ? cli_read_file(a->template_path, NULL, err) : NULL;
    if (a->template_path && !tmpl)
        return SW_EIO;
    a->eo.model_path = path;
    a->eo.model_name = a->alias ? a->alias : default_name(a->model);
    a->eo.template_src = tmpl;
    a->eo.store = &a->store;
    sw_engine *e = NULL;
    server *srv = NULL;
    int rc = sw_engine_open(&a->eo, &e, err);
    free(tmpl);
    if (rc < 0 || (rc = server_start(&a->so, e, &srv, err)) < 0) {
        sw_engine_close(e);
        return rc;
    }
    LOG_EVENT(LOG_INFO, "listening", LOG_S("host", a->so.host), LOG_I("port", server_port(srv)),
              LOG_S("model", path), LOG_I("parallel", a->eo.n_parallel),
              LOG_I("queue", a->eo.n_queue));
    int sig = wait_for_end(e, set);
    if (sig == 0) {
        rc = sw_errf(err, SW_EINVAL, "%s", sw_engine_error(e));
    } else {
        LOG_EVENT(LOG_INFO, "shutting down", LOG_S("signal", strsignal(sig)),
                  LOG_I("timeout_s", a->shutdown_s));
        /* A second signal ends the process at once. */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        pthread_sigmask(SIG_UNBLOCK, set, NULL);
        server_quiesce(srv);
        int left = sw_engine_drain(e, a->shutdown_s * 1000);
        if (left)
            LOG_EVENT(LOG_WARN, "requests cancelled at shutdown", LOG_I("count", left));
        /* what the engine produced still has to reach the clients */
        server_drain(srv, 5000);
    }
    server_stop(srv);
    sw_engine_close(e);
    if (sig)
        LOG_EVENT(LOG_INFO, "stopped");
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    const char **dirs = calloc((size_t)(argc > 0 ? argc : 1), sizeof *dirs);
    if (!dirs)
        return cli_fail("serve: out of memory");
    serve_args a = {.dirs = dirs, .shutdown_s = 10, .store = cli_store_defaults()};
    a.so.host = "127.0.0.1";
    a.so.port = 8080;
    a.eo.n_parallel = 4;
    a.eo.n_queue = 64;
    a.eo.kv_type = SW_KV_F16; /* as llama.cpp and Ollama: half the bytes of f32 */
    int st = parse_args(argc, argv, &a);
    if (st >= 0) {
        free(dirs);
        return st;
    }
    sw_err err = {0};
    if (log_open(a.log_format, a.log_file, LOG_INFO, &err) < 0)
        return cli_fail("serve: %s", err.msg);
    catalog_opts co = {.dirs = a.dirs, .n_dirs = a.n_dirs};
    char *path = NULL;
    int rc = catalog_resolve(a.model, &co, &path, &err);
    free(dirs);
    if (rc < 0) {
        log_close();
        return cli_fail("serve: %s", err.msg);
    }
    /* Signals are taken by the main thread only: block them before any
     * thread starts, so every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = serve(&a, path, &set, &err);
    free(path);
    if (rc < 0) {
        LOG_EVENT(LOG_ERROR, "serve failed", LOG_S("error", err.msg));
        log_close();
        return cli_fail("serve: %s", err.msg);
    }
    log_close();
    return 0;
}
