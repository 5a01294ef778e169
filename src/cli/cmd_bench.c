/*
 * cmd_bench.c — `spillway bench MODEL [--prompt N] [--gen N] [--threads N] [--json]`
 *
 * How fast a model runs here, and how that compares with what the memory
 * allows. A decode step of a large model streams its weights once, so its
 * speed is bounded by (memory read bandwidth) / (bytes one token touches);
 * the benchmark measures all three in one run and reports the ratio:
 *
 *   prompt     one batched prefill of N tokens (tok/s), after a warm-up
 *              prefill of the same tokens that faults the weights in;
 *   decode     N single-token steps from an empty context, as llama-bench's
 *              tg test does, each computing the output logits;
 *   tokens     a fixed pseudo-random sequence (BOS, then ids drawn from the
 *              vocabulary without control tokens), fed teacher-forced: the
 *              model's own choices never steer the input, so every run and
 *              every build sees the same tokens (greedy output of a random
 *              or broken model degenerates into a loop and would flatter it);
 *   bytes      model_bytes (every tensor) and bytes_per_token: the resident
 *              tensors a step reads (the token embedding as one row, unless
 *              it doubles as the output head) plus, for MoE layers, the
 *              experts the router actually chose in each decode step (from
 *              the model's routing hook), averaged over the steps;
 *   bandwidth  a multi-threaded streaming read with the same thread count
 *              (bench/bench_mem.c, shared with spillway-bench); the decode
 *              runs in blocks with a bandwidth sample between them, and the
 *              best sample of all is the figure (bench_pairs.h: each block
 *              is also reported against the samples around it, since other
 *              tenants' DRAM traffic moves the bandwidth while we measure);
 *   retries    --retry-decode S runs the decode again, from an empty cache,
 *              while it has fewer than 5 quiet blocks (both samples at 90%
 *              of --quiet-ref, or of the best sample), for at most S
 *              seconds, and keeps the pass with the most: what make bench
 *              judges the decode target on. The choice sees the samples
 *              alone.
 *
 * For MoE models it also reports routing statistics over the decode steps,
 * so degenerate routing shows: distinct experts per layer per window of 100
 * tokens (fewer tokens: one window of all of them), and the share of a
 * token's experts that the previous token also used, each beside what
 * uniformly random routing would give (bench_route.h); and what the store
 * did during the decode: expert bytes read (per token), hit rate, time
 * stalled on reads, budget, peak RSS. --disk-probe adds the disk's own
 * bandwidth on the model's expert reads (store/read_probe.h) and decode
 * speed against (that bandwidth) / (expert bytes read per decode token).
 *
 * `spillway bench --replay TRACE MODEL` drives the store with a recorded
 * routing trace instead of the model (bench_replay.h).
 */
#include "cli/bench_pairs.h"
#include "cli/bench_replay.h"
#include "cli/bench_route.h"
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "quant/matmul.h"
#include "store/catalog.h"
#include "store/read_probe.h"
#include "store/store.h"
#include "text/tokenizer.h"
#include "../../bench/bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BW_BUFFER_BYTES ((size_t)256 << 20)

static const char *usage_text =
    "usage: spillway bench MODEL [--prompt N] [--gen N] [--threads N] [--json]\n"
    "       spillway bench --replay TRACE MODEL [--compute-us N] [--replay-tokens N] [--json]\n"
    "\n"
    "Measures prompt processing and decode speed on a fixed token sequence, the\n"
    "memory read bandwidth, and decode speed as a fraction of the bandwidth bound.\n"
    "  --prompt N        prompt tokens, one batched prefill (default 512; 0 = skip)\n"
    "  --gen N           decode steps, one token each (default 128)\n"
    "  --threads N       threads (default: all CPUs this process may use)\n"
    "  --kv-type T       KV cache type: f16 (default), f32 or q8_0\n"
    "  --no-warmup       skip the warm-up prefill\n"
    "  --retry-decode S  while the decode has fewer than 5 quiet 4-token blocks (both\n"
    "                    bandwidth samples around it at 90% of --quiet-ref, or of the\n"
    "                    best sample), run it again from an empty cache, for at most S\n"
    "                    seconds, and keep the pass with the most (default 0: one pass)\n"
    "  --quiet-ref GBPS  the read bandwidth of an idle bus (GB/s) that quiet is measured\n"
    "                    against, in place of the best sample of the run\n"
    "  --matvec-streams N  1 or 2: rows each thread reads at once in a decode step's\n"
    "                    products, as one stream or two far apart (default: two on\n"
    "                    Intel CPUs, one elsewhere; for comparing the two)\n"
    "  --models-dir DIR  also look for MODEL names in DIR (repeatable)\n"
    "  --json            print one JSON object\n"
    "  --replay TRACE    drive MODEL's store and reader with the routing of a recorded\n"
    "                    trace (JSON lines, see 'spillway trace') instead of running the\n"
    "                    model: hit rate, bytes read, read throughput, time per token.\n"
    "                    Trace layer l is model layer l; rows of other layers are skipped\n"
    "  --compute-us N    with --replay: busy time per layer standing for its compute\n"
    "  --replay-tokens N with --replay: replay only the first N tokens\n"
    "  --disk-probe S    also read MODEL's expert slices at random for S seconds\n"
    "                    (O_DIRECT, the store's queue depth): the disk's bandwidth, and\n"
    "                    decode speed against (that bandwidth) / (expert bytes read\n"
    "                    per decode token)\n"
    CLI_STORE_USAGE;

/* --- what a token reads ---------------------------------------------------- */

typedef struct weight_bytes {
    double total;         /* every tensor */
    double resident;      /* non-expert bytes one decode step reads */
    double *per_expert;   /* [n_layer]: bytes of one expert of the layer */
    int n_layer;
    bool tied;            /* no output.weight: the embedding table is the head */
} weight_bytes;

static int layer_of(const char *name, int n_layer)
{
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 && l >= 0 && l < n_layer ? l : -1;
}

static int weight_bytes_count(const gguf_ctx *g, int n_layer, weight_bytes *w)
{
    *w = (weight_bytes){.n_layer = n_layer, .per_expert = calloc((size_t)n_layer + 1, sizeof(double))};
    if (!w->per_expert)
        return -1;
    bool tied = w->tied = gguf_find_tensor(g, "output.weight") == NULL;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        double size = (double)t->size;
        int l = layer_of(t->name, n_layer);
        w->total += size;
        if (strstr(t->name, "_exps.") && l >= 0) {
            w->per_expert[l] += size / (double)t->ne[t->n_dims - 1];
        } else if (!strcmp(t->name, "token_embd.weight") && !tied && t->n_dims >= 2) {
            w->resident += size / (double)t->ne[1]; /* one row */
        } else {
            w->resident += size;
        }
    }
    return 0;
}

/* --- the token sequence ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n ids: BOS (if the model has one), then a fixed pseudo-random draw from
 * the ids that are not control, unused or unknown tokens. tok may be NULL
 * (a file without a vocabulary): every id is then allowed. */
static int32_t *bench_tokens(const tokenizer *tok, int n_vocab, int n, uint64_t seed)
{
    int32_t *allowed = malloc(sizeof(int32_t) * (size_t)n_vocab);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int n_allowed = 0;
    for (int32_t id = 0; allowed && id < n_vocab; id++) {
        unsigned a = tok ? tok_attr(tok, id) : TOK_ATTR_NORMAL;
        if (a && !(a & (TOK_ATTR_CONTROL | TOK_ATTR_UNUSED | TOK_ATTR_UNKNOWN)))
            allowed[n_allowed++] = id;
    }
    if (!allowed || !seq || n_allowed == 0) {
        free(allowed);
        free(seq);
        return NULL;
    }
    int32_t bos = tok ? tok_bos(tok) : -1;
    for (int i = 0; i < n; i++)
        seq[i] = i == 0 && bos >= 0 && bos < n_vocab
                     ? bos
                     : allowed[splitmix64(&seed) % (uint64_t)n_allowed];
    free(allowed);
    return seq;
}

/* --- measuring --------------------------------------------------------------- */

typedef struct bench_args {
    const char *model, *replay;
    double compute_us, disk_probe_s; /* disk_probe_s 0: no probe */
    int replay_tokens;
    const char **dirs;
    int n_dirs;
    int n_prompt, n_gen, n_threads;
    double retry_decode_s; /* 0: one decode pass */
    double quiet_ref;      /* bytes/s; 0: the run's own samples only */
    bool json, warmup;
    quant_type kv_type;
    store_opts store;
} bench_args;

typedef struct bench_run {
    store *st;
    model *m;
    tokenizer *tok;
    model_state *state;
    kv_cache *kv;
    sw_pool *pool;
    model_info info;
    weight_bytes w;
    route_log log;
    route_stats rs;
    float *logits;
    double prompt_s, decode_s;
    int decode_passes;    /* decode passes run (--retry-decode); the kept one's figures */
    double passes_best;   /* best clean sample of every pass, kept or not, bytes/s */
    double bandwidth;     /* bytes/s */
    bool bw_clean;
    read_probe_result disk; /* --disk-probe; disk.reads 0: not run */
    int64_t peak_rss;       /* before the disk probe (its buffers are not the model's) */
    store_stats st0, st1; /* the store's counters before and after decoding */
    bench_pairs pairs;    /* per-block decode rate against the bandwidth around it */
} bench_run;

static int bench_open(const bench_args *a, const char *path, bench_run *b, sw_err *err)
{
    int rc;
    if ((rc = store_open_opts(path, &a->store, &b->st, err)) ||
        (rc = model_load(b->st, NULL, &b->m, err)))
        return rc;
    model_get_info(b->m, &b->info);
    if (tok_load(store_gguf(b->st), &b->tok, NULL) < 0)
        b->tok = NULL; /* no vocabulary: any id will do */
    int n_ctx = a->n_prompt > a->n_gen ? a->n_prompt : a->n_gen;
    kv_cache_opts ko = {.n_ctx = n_ctx > 0 ? n_ctx : 1, .type = a->kv_type};
    if ((rc = kv_cache_new(b->m, &ko, &b->kv, err)) || (rc = model_state_new(b->m, NULL, &b->state, err)) ||
        (rc = sw_pool_create(a->n_threads, &b->pool, err)))
        return rc;
    b->logits = malloc(sizeof(float) * (size_t)b->info.n_vocab);
    if (!b->logits || weight_bytes_count(store_gguf(b->st), b->info.n_layer, &b->w) < 0)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    return 0;
}

static void bench_close(bench_run *b)
{
    bench_pairs_close(&b->pairs);
    free(b->rs.distinct);
    free(b->log.experts);
    free(b->w.per_expert);
    free(b->logits);
    sw_pool_destroy(b->pool);
    kv_cache_free(b->kv);
    model_state_free(b->state);
    tok_free(b->tok);
    model_free(b->m);
    store_close(b->st);
}

static int bench_prompt(const bench_args *a, bench_run *b, const int32_t *seq, sw_err *err)
{
    if (a->n_prompt <= 0)
        return 0;
    int rc;
    if (a->warmup) {
        rc = model_forward(b->m, b->state, b->kv, b->pool, seq, a->n_prompt, b->logits,
                           MODEL_LOGITS_LAST, err);
        kv_cache_clear(b->kv);
        if (rc < 0)
            return rc;
    }
    double t0 = bench_now();
    rc = model_forward(b->m, b->state, b->kv, b->pool, seq, a->n_prompt, b->logits,
                       MODEL_LOGITS_LAST, err);
    b->prompt_s = bench_now() - t0;
    kv_cache_clear(b->kv);
    return rc;
}

/* One pass of a->n_gen decode steps from an empty cache, timed in blocks of
 * BENCH_PAIR_TOKENS with pairs' bandwidth samples between them (pairs
 * without room: no samples); *seconds gets the decode time. The routing
 * log counts the pass's expert bytes from zero. */
static int decode_pass(const bench_args *a, bench_run *b, const int32_t *seq, bench_pairs *pairs,
                       double *seconds, sw_err *err)
{
    route_log *log = &b->log;
    int rc = 0;
    *seconds = 0;
    log->expert_bytes = 0;
    for (int i = 0; i < a->n_gen && rc == 0;) {
        int n = a->n_gen - i < BENCH_PAIR_TOKENS ? a->n_gen - i : BENCH_PAIR_TOKENS;
        double experts0 = log->expert_bytes, t0 = bench_now();
        for (int k = 0; k < n && rc == 0; k++, i++) {
            log->step = i;
            rc = model_forward(b->m, b->state, b->kv, b->pool, &seq[i], 1, b->logits,
                               MODEL_LOGITS_LAST, err);
        }
        double dt = bench_now() - t0;
        *seconds += dt;
        bench_pairs_block(pairs, n * b->w.resident + log->expert_bytes - experts0, dt);
    }
    return rc;
}

#define DECODE_MIN_QUIET 5 /* quiet blocks bench/run.sh wants before it judges a decode */

/* Quiet is against --quiet-ref where it is given, else against the best
 * sample of every pass so far. Not the more of the two: the best of a
 * thousand samples on a shared bus is the tail of its noise, and rises with
 * every pass that looks for a quiet spell until none can be found. */
static double quiet_ref(const bench_args *a, const bench_run *b)
{
    return a->quiet_ref > 0 ? a->quiet_ref : b->passes_best;
}

/*
 * --retry-decode: passes again while the kept one has fewer than
 * DECODE_MIN_QUIET quiet blocks, keeping whichever has more against the
 * same reference. Each pass decodes the same tokens from an empty cache,
 * so it routes to the same experts (the routing log is rewritten with the
 * same values, its expert bytes counted again from zero); the choice looks
 * at the bandwidth samples alone.
 */
static int decode_retry(const bench_args *a, bench_run *b, const int32_t *seq, double t_start,
                        sw_err *err)
{
    int rc = 0;
    while (rc == 0 && b->pairs.cap > 0 && bench_now() - t_start < a->retry_decode_s &&
           bench_pairs_quiet(&b->pairs, quiet_ref(a, b)) < DECODE_MIN_QUIET) {
        bench_pairs p2;
        double s2;
        if ((rc = bench_pairs_open(&p2, b->pool, b->pairs.cap, err)) < 0)
            break;
        kv_cache_clear(b->kv);
        rc = decode_pass(a, b, seq, &p2, &s2, err);
        b->decode_passes++;
        b->passes_best = p2.best_clean > b->passes_best ? p2.best_clean : b->passes_best;
        double ref = quiet_ref(a, b);
        if (rc == 0 && bench_pairs_quiet(&p2, ref) > bench_pairs_quiet(&b->pairs, ref)) {
            bench_pairs_close(&b->pairs);
            b->pairs = p2;
            b->decode_s = s2;
        } else {
            bench_pairs_close(&p2);
        }
    }
    return rc;
}

static int bench_decode(const bench_args *a, bench_run *b, const int32_t *seq, sw_err *err)
{
    route_log *log = &b->log;
    *log = (route_log){.per_expert = b->w.per_expert, .n_layer = b->info.n_layer, .n_expert = b->info.n_expert,
                       .n_used = b->info.n_expert_used, .n_steps = a->n_gen, .step = -1};
    if (b->info.n_expert > 0 && b->info.n_expert_used > 0) {
        size_t cnt = (size_t)a->n_gen * (size_t)log->n_layer * (size_t)log->n_used;
        if (!(log->experts = malloc(sizeof(int) * (cnt ? cnt : 1))))
            return sw_errf(err, SW_ENOMEM, "out of memory");
        memset(log->experts, 0xff, sizeof(int) * cnt); /* -1: no record */
        model_set_route_hook(b->m, bench_route_hook, log);
    }
    store_stats_get(b->st, &b->st0);
    /* pairs measure against memory bandwidth: not where experts stream from the disk
     * (whose cgroup budget the sample buffer would also take from) */
    bool streams_experts = b->st0.mode == STORE_STREAM && b->st0.total_entries > 0;
    int rc = a->n_gen > 0 && !streams_experts
                 ? bench_pairs_open(&b->pairs, b->pool,
                                    (a->n_gen + BENCH_PAIR_TOKENS - 1) / BENCH_PAIR_TOKENS, err)
                 : 0;
    if (rc < 0)
        return rc;
    double t_start = bench_now();
    rc = decode_pass(a, b, seq, &b->pairs, &b->decode_s, err);
    b->decode_passes = 1;
    b->passes_best = b->pairs.best_clean;
    if (rc == 0 && a->retry_decode_s > 0)
        rc = decode_retry(a, b, seq, t_start, err);
    store_stats_get(b->st, &b->st1);
    log->step = -1;
    model_set_route_hook(b->m, NULL, NULL);
    if (rc == 0 && log->experts && a->n_gen > 0 && route_stats_compute(log, &b->rs) < 0)
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    return rc;
}

static int bench_bandwidth(bench_run *b, sw_err *err)
{
    void *buf = bench_buffer_alloc(BW_BUFFER_BYTES);
    if (!buf)
        return sw_errf(err, SW_ENOMEM, "cannot allocate %zu MiB to measure bandwidth",
                       BW_BUFFER_BYTES >> 20);
    /* Zeros: the read kernels sum 64-bit words, and a sum of the fill
     * pattern overflows (undefined for the AVX-512 reduction's signed
     * lanes). The pages stay touched, so speed is the same. */
    memset(buf, 0, BW_BUFFER_BYTES);
    bench_best best = {0};
    bench_read_bandwidth(b->pool, buf, BW_BUFFER_BYTES, 2, &best);
    bench_buffer_free(buf, BW_BUFFER_BYTES);
    b->bandwidth = bench_best_rate(&best);
    b->bw_clean = best.n_clean > 0;
    /* the samples between decode blocks are part of the same run: the best of them
     * (of every pass, kept or not) counts */
    if (b->passes_best > 0 && (!b->bw_clean || b->passes_best > b->bandwidth)) {
        b->bandwidth = b->passes_best;
        b->bw_clean = true;
    }
    return 0;
}

/* --- reporting --------------------------------------------------------------- */

typedef struct bench_figures {
    double prompt_tps, decode_tps;
    double expert_bytes;  /* per decode token */
    double bytes_per_token;
    double bound_tps, fraction;
} bench_figures;

static void bench_figures_compute(const bench_args *a, const bench_run *b, bench_figures *f)
{
    *f = (bench_figures){0};
    f->prompt_tps = b->prompt_s > 0 ? a->n_prompt / b->prompt_s : 0;
    f->decode_tps = b->decode_s > 0 ? a->n_gen / b->decode_s : 0;
    if (a->n_gen > 0 && b->log.experts) {
        f->expert_bytes = b->log.expert_bytes / a->n_gen;
    } else if (b->info.n_expert_used > 0) { /* no decode: top-k per MoE layer */
        for (int l = 0; l < b->w.n_layer; l++)
            f->expert_bytes += b->info.n_expert_used * b->w.per_expert[l];
    }
    f->bytes_per_token = b->w.resident + f->expert_bytes;
    f->bound_tps = f->bytes_per_token > 0 ? b->bandwidth / f->bytes_per_token : 0;
    f->fraction = f->bound_tps > 0 ? f->decode_tps / f->bound_tps : 0;
}

/* JSON null for a figure that could not be measured. */
static json_t *json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *routing_json(const bench_run *b)
{
    const route_stats *rs = &b->rs;
    if (!b->log.experts || !rs->distinct)
        return json_null();
    json_t *per_layer = json_array();
    for (int l = 0; l < b->info.n_layer; l++)
        if (!isnan(rs->distinct[l]))
            json_array_append_new(per_layer, json_real(rs->distinct[l]));
    return json_pack("{s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o}", "n_expert",
                     b->info.n_expert, "n_expert_used", b->info.n_expert_used, "window",
                     rs->window, "moe_layers", rs->n_moe_layers, "distinct_per_layer", per_layer,
                     "distinct_mean", json_num(rs->distinct_mean), "distinct_random",
                     json_num(rs->distinct_random), "reuse_prev", json_num(rs->reuse),
                     "reuse_random", json_num(rs->reuse_random));
}

/* The store's side: decode-only reads and hit rate, and the totals. */
static void store_json_add(json_t *j, const bench_args *a, const bench_run *b,
                           const bench_figures *f)
{
    const store_stats *s0 = &b->st0, *s1 = &b->st1;
    uint64_t req = s1->requests - s0->requests, hits = s1->hits - s0->hits;
    json_object_set_new(j, "store_mode", json_string(store_mode_name(s1->mode)));
    json_object_set_new(j, "bytes_read", json_integer((json_int_t)(s1->bytes_read - s0->bytes_read)));
    json_object_set_new(j, "hit_rate", req ? json_real((double)hits / (double)req) : json_null());
    json_object_set_new(j, "cache_budget_bytes", json_integer(s1->cache_budget));
    json_object_set_new(j, "peak_rss_bytes", json_integer(b->peak_rss));
    json_object_set_new(j, "store", bench_store_json(s1));
    double per_tok = a->n_gen > 0 ? (double)(s1->bytes_read - s0->bytes_read) / a->n_gen : 0;
    json_object_set_new(j, "decode_bytes_read_per_token", json_real(per_tok));
    json_object_set_new(j, "decode_stall_s", json_real(s1->stall_s - s0->stall_s));
    const read_probe_result *d = &b->disk;
    if (!d->reads)
        return;
    double bound = per_tok > 0 ? d->gbs * 1e9 / per_tok : 0;
    json_object_set_new(j, "disk", json_pack("{s:f, s:I, s:f, s:f, s:f, s:f, s:b, s:s}", "read_gbs",
                                             d->gbs, "reads", (json_int_t)d->reads,
                                             "mean_read_bytes", d->mean_read_bytes, "seconds",
                                             d->seconds, "read_p50_us", d->p50_us, "read_p99_us",
                                             d->p99_us, "direct", d->direct != 0, "reader",
                                             d->mode));
    json_object_set_new(j, "disk_bound_tps", bound > 0 ? json_real(bound) : json_null());
    json_object_set_new(j, "decode_fraction_of_disk_bound",
                        bound > 0 && f->decode_tps > 0 ? json_real(f->decode_tps / bound)
                                                        : json_null());
}

/* The per-block figures (bench_pairs.h), or null without decode blocks. */
static json_t *paired_json(const bench_run *b)
{
    bench_pairs_summary ps;
    bench_pairs_summarize(&b->pairs, &ps);
    if (!ps.blocks)
        return json_null();
    /* the raw pairs too, so that a caller can judge them against another reference */
    json_t *rate = json_array(), *bw = json_array();
    for (int i = 0; rate && bw && i < b->pairs.n_blocks; i++)
        json_array_append_new(rate, json_real(b->pairs.rate[i] / 1e9));
    for (int i = 0; rate && bw && i < b->pairs.n_samples; i++)
        json_array_append_new(bw, json_real(b->pairs.bw[i] / 1e9));
    if (!rate || !bw) {
        json_decref(rate);
        json_decref(bw);
        rate = bw = NULL;
    }
    return json_pack("{s:i, s:i, s:i, s:f, s:o, s:f, s:f, s:f, s:o, s:o}", "block_tokens",
                     BENCH_PAIR_TOKENS, "blocks", ps.blocks, "quiet_blocks", ps.quiet_blocks,
                     "decode_fraction_median", ps.fraction, "decode_fraction_quiet",
                     ps.quiet_blocks ? json_real(ps.fraction_quiet) : json_null(),
                     "bandwidth_min_gbs", ps.bw_min / 1e9, "bandwidth_median_gbs",
                     ps.bw_median / 1e9, "bandwidth_max_gbs", ps.bw_max / 1e9,
                     "block_gbs", rate ? rate : json_null(), "sample_gbs", bw ? bw : json_null());
}

static int print_json(const bench_args *a, const char *path, const bench_run *b,
                      const bench_figures *f)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:f, "
        "s:s, s:b, s:o}",
        "model", path, "arch", b->info.arch, "threads", sw_pool_size(b->pool), "kv_type",
        quant_name(kv_cache_type(b->kv)), "n_prompt", a->n_prompt, "n_gen", a->n_gen,
        "prompt_tps", f->prompt_tps, "decode_tps", f->decode_tps, "prompt_s", b->prompt_s,
        "decode_s", b->decode_s, "model_bytes", (json_int_t)llround(b->w.total),
        "bytes_per_token", (json_int_t)llround(f->bytes_per_token), "resident_bytes_per_token",
        (json_int_t)llround(b->w.resident), "expert_bytes_per_token",
        (json_int_t)llround(f->expert_bytes), "bandwidth_gbs", b->bandwidth / 1e9,
        "bound_tps", f->bound_tps, "decode_fraction_of_bound", f->fraction, "read_kernel",
        bench_read_kernel_name(), "bandwidth_clean", b->bw_clean, "routing", routing_json(b));
    if (!j)
        return cli_fail("bench: could not build the JSON report");
    store_json_add(j, a, b, f);
    json_object_set_new(j, "paired", paired_json(b));
    json_object_set_new(j, "matvec_streams", json_integer(quant_matvec_streams()));
    json_object_set_new(j, "decode_passes", json_integer(b->decode_passes));
    json_object_set_new(j, "decode_passes_best_gbs", json_real(b->passes_best / 1e9));
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(j);
    if (!s)
        return cli_fail("bench: out of memory");
    puts(s);
    free(s);
    return 0;
}

static void print_text(const bench_args *a, const char *path, const bench_run *b,
                       const bench_figures *f)
{
    char total[32], per_tok[32], resident[32], experts[32];
    bench_fmt_bytes(total, sizeof total, b->w.total);
    bench_fmt_bytes(per_tok, sizeof per_tok, f->bytes_per_token);
    bench_fmt_bytes(resident, sizeof resident, b->w.resident);
    bench_fmt_bytes(experts, sizeof experts, f->expert_bytes);
    printf("model        %s (%s, %s of weights)\n", path, b->info.arch, total);
    printf("threads      %d (%d weight stream(s) each), KV cache %s\n", sw_pool_size(b->pool),
           quant_matvec_streams(), quant_name(kv_cache_type(b->kv)));
    if (a->n_prompt > 0)
        printf("prompt       %5d tokens in %8.3f s  %10.2f tok/s\n", a->n_prompt, b->prompt_s,
               f->prompt_tps);
    if (a->n_gen > 0)
        printf("decode       %5d tokens in %8.3f s  %10.2f tok/s\n", a->n_gen, b->decode_s,
               f->decode_tps);
    if (b->info.n_expert > 0)
        printf("bytes/token  %s (resident %s + experts %s)\n", per_tok, resident, experts);
    else
        printf("bytes/token  %s (every weight%s)\n", per_tok,
               b->w.tied ? "; the embedding table is also the output head"
                         : " but the embedding table's other rows");
    printf("bandwidth    %.2f GB/s (%s read, %d threads%s)\n", b->bandwidth / 1e9,
           bench_read_kernel_name(), sw_pool_size(b->pool),
           b->bw_clean ? "" : "; no sample free of CPU contention");
    printf("bound        %.2f tok/s; decode reaches %.1f%% of it%s\n", f->bound_tps,
           100 * f->fraction,
           f->fraction > 1 ? " (the weights fit in the CPU's caches)" : "");
    bench_pairs_summary ps;
    bench_pairs_summarize(&b->pairs, &ps);
    if (ps.blocks) {
        printf("paired       %.1f%% of the bandwidth around each %d-token block (median of %d; "
               "samples %.1f-%.1f GB/s",
               100 * ps.fraction, BENCH_PAIR_TOKENS, ps.blocks, ps.bw_min / 1e9, ps.bw_max / 1e9);
        if (b->decode_passes > 1)
            printf("; the quietest of %d decode passes", b->decode_passes);
        printf(")");
        if (ps.quiet_blocks)
            printf("; %.1f%% in the %d blocks at >= %.0f%% of the best sample\n",
                   100 * ps.fraction_quiet, ps.quiet_blocks, 100 * BENCH_PAIR_QUIET);
        else
            printf("\n");
    }
    if (b->st1.mode == STORE_STREAM && b->st1.total_entries) {
        uint64_t req = b->st1.requests - b->st0.requests, hits = b->st1.hits - b->st0.hits;
        char rd[32], budget[32];
        bench_fmt_bytes(rd, sizeof rd, (double)(b->st1.bytes_read - b->st0.bytes_read));
        bench_fmt_bytes(budget, sizeof budget, (double)b->st1.cache_budget);
        printf("streaming    cache %s (%lld of %lld experts, %s); decode: hit rate %.1f%%, "
               "read %s\n",
               budget, (long long)b->st1.capacity, (long long)b->st1.total_entries,
               b->st1.policy, req ? 100.0 * (double)hits / (double)req : 0.0, rd);
    }
    if (b->disk.reads) {
        double rd_tok = a->n_gen > 0 ? (double)(b->st1.bytes_read - b->st0.bytes_read) / a->n_gen
                                      : 0;
        double bound = rd_tok > 0 ? b->disk.gbs * 1e9 / rd_tok : 0;
        printf("disk         %.2f GB/s (%llu random expert reads of %.0f kB, %s%s)\n",
               b->disk.gbs, (unsigned long long)b->disk.reads, b->disk.mean_read_bytes / 1e3,
               b->disk.mode, b->disk.direct ? ", O_DIRECT" : ", buffered");
        if (bound > 0)
            printf("disk bound   %.2f tok/s at %.2f MB read per decode token; decode reaches "
                   "%.1f%% of it\n",
                   bound, rd_tok / 1e6, 100 * f->decode_tps / bound);
    }
    const route_stats *rs = &b->rs;
    if (b->log.experts && rs->distinct) {
        printf("routing      %d of %d experts per token in %d MoE layers; over %d decode tokens:\n",
               b->info.n_expert_used, b->info.n_expert, rs->n_moe_layers, a->n_gen);
        printf("             distinct experts per layer per %d tokens: %.1f (random routing: %.1f)\n",
               rs->window, rs->distinct_mean, rs->distinct_random);
        printf("             per layer:");
        for (int l = 0; l < b->info.n_layer; l++)
            if (!isnan(rs->distinct[l]))
                printf(" %.1f", rs->distinct[l]);
        printf("\n             experts reused from the previous token: %.1f%% (random: %.1f%%)\n",
               100 * rs->reuse, 100 * rs->reuse_random);
    }
}

/* --- the command ------------------------------------------------------------ */

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bench_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, us = 0, sa = cli_store_arg(&a->store, "bench", o, v);
        if (sa < 0)
            return 2;
        if (sa > 0) {
            i += sa - 1;
            continue;
        }
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(o, "--json")) {
            a->json = true;
        } else if (!strcmp(o, "--no-warmup")) {
            a->warmup = false;
        } else if (!strcmp(o, "--retry-decode") && v) {
            bad = cli_parse_int(argv[++i], 0, 3600, &us);
            a->retry_decode_s = us;
        } else if (!strcmp(o, "--quiet-ref") && v) {
            char *end;
            a->quiet_ref = strtod(argv[++i], &end) * 1e9;
            bad = *end || !(a->quiet_ref >= 0 && a->quiet_ref < 1e15);
        } else if (!strcmp(o, "--matvec-streams") && v) {
            bad = cli_parse_int(argv[++i], 1, 2, &us);
            if (!bad)
                quant_matvec_set_streams(us == 2 ? QUANT_STREAMS_TWO : QUANT_STREAMS_ONE);
        } else if (!strcmp(o, "--prompt") && v) {
            bad = cli_parse_int(argv[++i], 0, 1 << 20, &a->n_prompt);
        } else if (!strcmp(o, "--gen") && v) {
            bad = cli_parse_int(argv[++i], 0, 1 << 20, &a->n_gen);
        } else if (!strcmp(o, "--threads") && v) {
            bad = cli_parse_int(argv[++i], 1, SW_POOL_MAX_THREADS, &a->n_threads);
        } else if (!strcmp(o, "--kv-type") && v) {
            i++;
            bad = cli_parse_kv_type(v, &a->kv_type) != 0;
        } else if (!strcmp(o, "--replay") && v) {
            a->replay = argv[++i];
        } else if (!strcmp(o, "--compute-us") && v) {
            bad = cli_parse_int(argv[++i], 0, 1 << 30, &us);
            a->compute_us = us;
        } else if (!strcmp(o, "--disk-probe") && v) {
            bad = cli_parse_int(argv[++i], 1, 3600, &us);
            a->disk_probe_s = us;
        } else if (!strcmp(o, "--replay-tokens") && v) {
            bad = cli_parse_int(argv[++i], 1, INT32_MAX, &a->replay_tokens);
        } else if (!strcmp(o, "--models-dir") && v) {
            a->dirs[a->n_dirs++] = argv[++i];
        } else if (o[0] != '-' && !a->model) {
            a->model = o;
        } else {
            fprintf(stderr, "spillway bench: unexpected argument '%s'\n\n%s", o, usage_text);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "spillway bench: bad value '%s' for %s\n", v, o);
            return 2;
        }
    }
    if (!a->model || (a->n_prompt == 0 && a->n_gen == 0)) {
        fputs(usage_text, stderr);
        return 2;
    }
    return -1;
}

static int bench_model(const bench_args *a, const char *path, sw_err *err)
{
    bench_run b = {0};
    int32_t *prompt = NULL, *gen = NULL;
    int rc = bench_open(a, path, &b, err);
    if (rc < 0)
        goto done;
    prompt = bench_tokens(b.tok, b.info.n_vocab, a->n_prompt, 1);
    gen = bench_tokens(b.tok, b.info.n_vocab, a->n_gen, 2);
    if (!prompt || !gen) {
        rc = sw_errf(err, SW_EINVAL, "no usable token ids in the vocabulary");
        goto done;
    }
    if ((rc = bench_prompt(a, &b, prompt, err)) < 0 || (rc = bench_decode(a, &b, gen, err)) < 0 ||
        (rc = bench_bandwidth(&b, err)) < 0)
        goto done;
    b.peak_rss = bench_peak_rss();
    if (a->disk_probe_s > 0 && b.info.n_expert > 0 &&
        (rc = read_probe_run(path, &(read_probe_opts){.seconds = a->disk_probe_s}, &b.disk,
                             err)) < 0)
        goto done;
    bench_figures f;
    bench_figures_compute(a, &b, &f);
    if (a->json)
        rc = print_json(a, path, &b, &f) ? SW_EIO : 0;
    else
        print_text(a, path, &b, &f);
    if (rc == 0 && fflush(stdout))
        rc = sw_errf(err, SW_EIO, "writing the report: %s", strerror(errno));
done:
    free(prompt);
    free(gen);
    bench_close(&b);
    return rc;
}

static int bench_run_mode(const bench_args *a, const char *path, sw_err *err)
{
    if (!a->replay)
        return bench_model(a, path, err);
    bench_replay_args ra = {.model_path = path, .trace_path = a->replay, .store = a->store,
                            .compute_us = a->compute_us, .max_tokens = (size_t)a->replay_tokens,
                            .disk_probe_s = a->disk_probe_s, .json = a->json};
    return bench_replay(&ra, err);
}

int cmd_bench(int argc, char **argv)
{
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    if (!dirs)
        return cli_fail("bench: out of memory");
    bench_args a = {.dirs = dirs, .n_prompt = 512, .n_gen = 128, .warmup = true, .kv_type = QT_F16,
                    .store = cli_store_defaults()};
    int status = parse_args(argc, argv, &a);
    char *path = NULL;
    sw_err err = {0};
    if (status < 0) {
        catalog_opts co = {.dirs = dirs, .n_dirs = a.n_dirs};
        if (catalog_resolve(a.model, &co, &path, &err) < 0 || bench_run_mode(&a, path, &err) < 0)
            status = cli_fail("bench: %s", err.msg);
        else
            status = 0;
    }
    free(path);
    free(dirs);
    return status;
}
