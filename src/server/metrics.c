/*
 * metrics.c — /metrics in Prometheus' text format (version 0.0.4): the
 * HTTP side's counters (requests by endpoint and status, their durations),
 * the engine's (tokens, latencies, sessions, KV cache) and the weight
 * store's (expert cache, reads, budget, memory pressure).
 *
 * Only numbers that exist are exported: the expert-cache series appear only
 * when the store streams (with --mmap or --resident there is no cache), and
 * pressure readings only when the machine provides them.
 */
#include "server/server_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SERIES 256
#define MAX_ENDPOINTS 32

/* Request duration buckets, seconds. */
static const double dur_bounds[] = {0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define N_DUR (sizeof dur_bounds / sizeof dur_bounds[0])

typedef struct series {
    const char *endpoint; /* a route label (static string) */
    int status;
    uint64_t count;
} series;

typedef struct dur_hist {
    const char *endpoint;
    uint64_t counts[N_DUR + 1];
    double sum;
    uint64_t n;
} dur_hist;

struct metrics {
    pthread_mutex_t mu;
    series s[MAX_SERIES];
    int n_s;
    dur_hist d[MAX_ENDPOINTS];
    int n_d;
};

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(metrics *m, const char *endpoint, int status, double seconds)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_s && !(m->s[i].status == status && !strcmp(m->s[i].endpoint, endpoint)))
        i++;
    if (i == m->n_s && m->n_s < MAX_SERIES)
        m->s[m->n_s++] = (series){.endpoint = endpoint, .status = status};
    if (i < m->n_s)
        m->s[i].count++;
    int k = 0;
    while (k < m->n_d && strcmp(m->d[k].endpoint, endpoint))
        k++;
    if (k == m->n_d && m->n_d < MAX_ENDPOINTS)
        m->d[m->n_d++] = (dur_hist){.endpoint = endpoint};
    if (k < m->n_d) {
        size_t b = 0;
        while (b < N_DUR && seconds > dur_bounds[b])
            b++;
        m->d[k].counts[b]++;
        m->d[k].sum += seconds;
        m->d[k].n++;
    }
    pthread_mutex_unlock(&m->mu);
}

static void head(strbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(strbuf *b, const char *name, const char *help, double v)
{
    head(b, name, "gauge", help);
    sb_printf(b, "%s %.17g\n", name, v);
}

static void counter(strbuf *b, const char *name, const char *help, double v)
{
    head(b, name, "counter", help);
    sb_printf(b, "%s %.17g\n", name, v);
}

static void engine_hist(strbuf *b, const char *name, const char *help, const sw_hist *h)
{
    head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < SW_HIST_N; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, sw_hist_bounds[i],
                  (unsigned long long)cum);
    }
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
              (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

static void http_series(metrics *m, strbuf *b)
{
    pthread_mutex_lock(&m->mu);
    head(b, "spillway_requests_total", "counter", "HTTP requests by endpoint and status code.");
    for (int i = 0; i < m->n_s; i++)
        sb_printf(b, "spillway_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                  m->s[i].endpoint, m->s[i].status, (unsigned long long)m->s[i].count);
    const char *name = "spillway_request_duration_seconds";
    head(b, name, "histogram", "Time from a request's first byte to the end of its response.");
    for (int k = 0; k < m->n_d; k++) {
        const dur_hist *d = &m->d[k];
        uint64_t cum = 0;
        for (size_t i = 0; i < N_DUR; i++) {
            cum += d->counts[i];
            sb_printf(b, "%s_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n", name, d->endpoint,
                      dur_bounds[i], (unsigned long long)cum);
        }
        sb_printf(b, "%s_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n", name, d->endpoint,
                  (unsigned long long)d->n);
        sb_printf(b, "%s_sum{endpoint=\"%s\"} %.17g\n%s_count{endpoint=\"%s\"} %llu\n", name,
                  d->endpoint, d->sum, name, d->endpoint, (unsigned long long)d->n);
    }
    pthread_mutex_unlock(&m->mu);
}

static void engine_series(server *s, strbuf *b)
{
    sw_engine_stats st;
    sw_engine_get_stats(s->e, &st);
    const sw_model_desc *d = sw_engine_model(s->e);
    gauge(b, "spillway_model_loaded", "1 once the model is loaded and serving.", d ? 1 : 0);
    if (d)
        gauge(b, "spillway_model_load_seconds", "How long loading the model took.", d->load_s);
    counter(b, "spillway_prompt_tokens_total", "Prompt tokens of started generations.",
            (double)st.prompt_tokens);
    counter(b, "spillway_prompt_tokens_cached_total",
            "Prompt tokens reused from a session's KV cache instead of computed.",
            (double)st.prompt_tokens_cached);
    counter(b, "spillway_generated_tokens_total", "Tokens generated.", (double)st.gen_tokens);
    engine_hist(b, "spillway_time_to_first_token_seconds",
                "From a request's submission to its first generated token.", &st.ttft);
    engine_hist(b, "spillway_inter_token_latency_seconds",
                "Between consecutive generated tokens of one request.", &st.itl);
    engine_hist(b, "spillway_queue_wait_seconds",
                "From submission until a request starts running.", &st.queue_wait);
    gauge(b, "spillway_sessions_active", "Requests generating now.", st.n_active);
    gauge(b, "spillway_requests_queued", "Requests waiting for a free slot.", st.n_queued);
    gauge(b, "spillway_parallel_max", "Requests that may generate together (--parallel).",
          st.n_parallel);
    gauge(b, "spillway_queue_max", "Requests that may wait (--queue).", st.n_queue_max);
    gauge(b, "spillway_sessions_cached", "Sessions holding a KV cache.", st.n_sessions_cached);
    gauge(b, "spillway_kv_cache_tokens", "Token positions held in all KV caches.",
          (double)st.kv_tokens);
    gauge(b, "spillway_kv_cache_bytes", "Bytes of KV cache positions in use (high-water marks).",
          (double)st.kv_bytes_used);
    gauge(b, "spillway_kv_cache_budget_bytes", "Bytes idle sessions' KV caches may keep.",
          (double)st.kv_bytes_budget);
    counter(b, "spillway_kv_cache_evictions_total",
            "Cached conversations dropped: for memory, or for a new conversation's slot.",
            (double)st.evictions);
    counter(b, "spillway_generations_started_total", "Generations that started running.",
            (double)st.jobs_started);
    counter(b, "spillway_generations_cancelled_total",
            "Generations cancelled (client gone, or shutdown).", (double)st.jobs_cancelled);
    counter(b, "spillway_generations_failed_total", "Generations that failed.",
            (double)st.jobs_failed);
    counter(b, "spillway_requests_rejected_total", "Requests refused because the queue was full.",
            (double)st.jobs_rejected);
    counter(b, "spillway_engine_steps_total", "Engine steps (each advances every active request).",
            (double)st.steps);
    counter(b, "spillway_engine_forward_calls_total",
            "Forward-pass calls (one per step, all active requests batched together).",
            (double)st.forward_calls);
    counter(b, "spillway_engine_forward_sequences_total",
            "Requests advanced by forward calls, summed (divided by the calls: mean batch).",
            (double)st.forward_seqs);
    counter(b, "spillway_engine_forward_tokens_total",
            "Tokens computed by forward calls (prompt chunks and generated tokens).",
            (double)st.forward_tokens);
    counter(b, "spillway_engine_busy_seconds_total", "Time the engine spent in steps.",
            st.busy_s);
}

static void store_series(server *s, strbuf *b)
{
    sw_store_stats st;
    sw_engine_get_store_stats(s->e, &st);
    if (!st.valid)
        return;
    head(b, "spillway_store_info", "gauge", "How the weights are held (labels), always 1.");
    sb_printf(b, "spillway_store_info{mode=\"%s\",policy=\"%s\",reader=\"%s\"} 1\n", st.mode,
              st.policy ? st.policy : "", st.reader ? st.reader : "");
    if (strcmp(st.mode, "mmap"))
        gauge(b, "spillway_store_resident_bytes", "Memory held by resident tensors.",
              (double)st.resident_bytes);
    if (!st.streaming || !st.total_entries)
        return;
    gauge(b, "spillway_expert_cache_budget_bytes", "Bytes the expert cache may hold.",
          (double)st.cache_budget);
    gauge(b, "spillway_expert_cache_bytes", "Bytes of expert-cache slots holding entries.",
          (double)st.cache_bytes);
    gauge(b, "spillway_expert_cache_entries", "(layer, expert) entries cached.", (double)st.entries);
    gauge(b, "spillway_expert_cache_capacity_entries", "Entries the budget holds.",
          (double)st.capacity);
    gauge(b, "spillway_expert_cache_model_entries", "(layer, expert) pairs in the model.",
          (double)st.total_entries);
    counter(b, "spillway_expert_cache_hits_total", "Expert requests served from the cache.",
            (double)st.hits);
    counter(b, "spillway_expert_cache_misses_total", "Expert requests that had to be read.",
            (double)st.misses);
    counter(b, "spillway_expert_cache_evictions_total", "Experts evicted from the cache.",
            (double)st.evictions);
    counter(b, "spillway_expert_prefetch_issued_total", "Predicted experts read ahead.",
            (double)st.prefetch_issued);
    counter(b, "spillway_expert_prefetch_hits_total", "Read-ahead experts that were then used.",
            (double)st.prefetch_hits);
    counter(b, "spillway_store_reads_total", "Reads of expert bytes from the file.",
            (double)st.reads);
    counter(b, "spillway_store_read_errors_total", "Failed reads.", (double)st.read_errors);
    counter(b, "spillway_store_bytes_read_total", "Expert bytes read from the file.",
            (double)st.bytes_read);
    counter(b, "spillway_store_stall_seconds_total", "Time the forward pass waited for reads.",
            st.stall_s);
    if (st.mem_available >= 0)
        gauge(b, "spillway_memory_available_bytes", "MemAvailable at the last budget decision.",
              (double)st.mem_available);
    if (st.psi_some_avg10 >= 0)
        gauge(b, "spillway_memory_pressure_some_avg10",
              "PSI memory 'some' avg10 (percent) at the last budget decision.",
              st.psi_some_avg10);
}

void metrics_render(metrics *m, server *s, strbuf *out)
{
    head(out, "spillway_build_info", "gauge", "The spillway version serving.");
    sb_printf(out, "spillway_build_info{version=\"%s\"} 1\n", SPILLWAY_VERSION);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    gauge(out, "spillway_uptime_seconds", "Seconds since the server started.",
          (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - s->t_start);
    if (m)
        http_series(m, out);
    engine_series(s, out);
    store_series(s, out);
}
