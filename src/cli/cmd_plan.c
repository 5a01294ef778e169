/*
 * cmd_plan.c — `spillway plan [MODEL] [--trace FILE]... [--ram SIZE] [--json]`
 *
 * What an expert cache of a given size buys on this machine. It probes the
 * machine (RAM, memory read bandwidth, and SSD read bandwidth on MODEL's
 * file), reads MODEL's shape from its GGUF header, replays real routing
 * traces through every cache policy at a range of budgets, scores the
 * prefetch predictors, and turns the default policy's hit rates into
 * tokens per second with plan_estimate_token() (store/plan.h states the
 * model).
 *
 * Traces: those given with --trace, else the fixtures' (found through
 * SPILLWAY_FIXTURES, ../shared/fixtures, or beside the binary): Mixtral's
 * for 8-expert models, tinymoe's for the others, both without a model.
 * When the trace's model differs from MODEL, budgets are mapped by the share
 * of all experts cached (a cache of 25% of MODEL's experts is replayed as a
 * cache of 25% of the trace's), and the output says so.
 */
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "store/plan.h"
#include "store/replay.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TRACES 16
/* RAM kept out of the cache for the KV cache, activations and the process:
 * 1 GiB, or an eighth of the RAM when that is less. */
#define RESERVE_MAX (1ull << 30)

static const char *usage_text =
    "usage: spillway plan [MODEL.gguf] [--trace FILE]... [--ram SIZE] [--json]\n"
    "\n"
    "Estimates what an expert cache buys on this machine: hit rates of each cache\n"
    "policy at a range of budgets, replayed on real routing traces, prefetch\n"
    "predictor precision and recall, and, given a MoE model, tokens/s per budget.\n"
    "  --trace FILE          routing trace (JSON lines); repeatable. Default: the\n"
    "                        fixtures' Mixtral traces for 8-expert models, tinymoe's\n"
    "                        for others\n"
    "  --ram SIZE            RAM to plan for (default: MemAvailable), e.g. 16G\n"
    "  --cache-policy NAME   policy to estimate with (default: the best measured)\n"
    "  --ssd-bw GBPS         SSD read bandwidth to assume instead of measuring\n"
    "  --json                one JSON object instead of text\n";

/* Shares of all experts replayed as budgets. */
static const double g_fracs[] = {1.0 / 16, 1.0 / 8, 1.0 / 4, 3.0 / 8, 1.0 / 2,
                                 5.0 / 8,  3.0 / 4, 7.0 / 8, 1.0};
#define N_FRACS (int)(sizeof g_fracs / sizeof g_fracs[0])
#define MAX_ROWS (N_FRACS + 1) /* the shares, and what fits */

struct opts {
    const char *model;
    const char *traces[MAX_TRACES];
    int n_traces;
    long long ram;
    double ssd_bw;
    int policy; /* -1: choose */
    int json;
};

/* One budget, replayed. */
struct row {
    double frac;            /* of all experts */
    size_t entries;         /* trace entries */
    int fits;               /* 1: within the RAM planned for; 2: the largest that fits */
    double hit[POLICY_KIND_COUNT], opt;
    replay_result pf;       /* chosen policy, prefetching with the best predictor */
    plan_estimate est, est_pf;
};

/* One set of traces and everything measured on it. */
struct study {
    const char *label;
    const char *paths[MAX_TRACES];
    int n_paths;
    char own[2][PATH_MAX + 64];      /* default paths live here */
    trace t;
    size_t total;                    /* layers x experts of the trace */
    struct row rows[MAX_ROWS];
    int n_rows;
    double mean_hit[POLICY_KIND_COUNT];
    policy_kind best;                /* highest mean hit rate */
    replay_result pred[PREDICT_COUNT]; /* scored at width top-k, no prefetch */
    replay_predictor best_pred;
    char mapping[200];
};

static void human_bytes(double n, char *buf, size_t len)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, u ? (n < 10 ? "%.2f %s" : "%.1f %s") : "%.0f %s", n, unit[u]);
}

/* --- arguments and traces ---------------------------------------------------- */

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->ram = -1;
    o->policy = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--trace") && more) {
            if (o->n_traces == MAX_TRACES)
                return cli_fail("plan: at most %d --trace files", MAX_TRACES) + 1;
            o->traces[o->n_traces++] = argv[++i];
        } else if (!strcmp(a, "--ram") && more) {
            o->ram = cli_parse_size(argv[++i]);
            if (o->ram < 0)
                return cli_fail("plan: bad size '%s'", argv[i]) + 1;
        } else if (!strcmp(a, "--ssd-bw") && more) {
            o->ssd_bw = strtod(argv[++i], NULL) * 1e9;
            if (o->ssd_bw <= 0)
                return cli_fail("plan: bad --ssd-bw '%s' (GB/s)", argv[i]) + 1;
        } else if (!strcmp(a, "--cache-policy") && more) {
            sw_err err = {0};
            policy_kind k;
            if (policy_kind_parse(argv[++i], &k, &err))
                return cli_fail("plan: %s", err.msg) + 1;
            o->policy = (int)k;
        } else if (a[0] != '-' && !o->model) {
            o->model = a;
        } else {
            fputs(usage_text, stderr);
            return 2;
        }
    }
    return -1; /* go on */
}

/* The fixtures' traces folder, or NULL. */
static const char *fixture_traces(char *buf, size_t len)
{
    const char *env = getenv("SPILLWAY_FIXTURES");
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
    } else {
        exe[0] = 0;
    }
    const char *cand[3] = {env, "../shared/fixtures", NULL};
    char beside[PATH_MAX + 32];
    snprintf(beside, sizeof beside, "%s/../../shared/fixtures", exe);
    cand[2] = exe[0] ? beside : NULL;
    for (int i = 0; i < 3; i++) {
        if (!cand[i])
            continue;
        snprintf(buf, len, "%s/traces", cand[i]);
        char probe[PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/tinymoe_routing.jsonl", buf);
        if (access(probe, R_OK) == 0)
            return buf;
    }
    return NULL;
}

/* Fills s->paths with the default traces of one kind: 'm' Mixtral, 't' tinymoe. */
static void default_study(struct study *s, char kind, const char *dir)
{
    if (kind == 'm') {
        s->label = "Mixtral-8x7B (GSM8K + HumanEval)";
        snprintf(s->own[0], sizeof s->own[0], "%s/gsm8k_2_routing.jsonl", dir);
        snprintf(s->own[1], sizeof s->own[1], "%s/humaneval_2_routing.jsonl", dir);
        s->n_paths = 2;
    } else {
        s->label = "tinymoe (stories)";
        snprintf(s->own[0], sizeof s->own[0], "%s/tinymoe_routing.jsonl", dir);
        s->n_paths = 1;
    }
    for (int i = 0; i < s->n_paths; i++)
        s->paths[i] = s->own[i];
}

/* --- measuring on a trace ------------------------------------------------------ */

static void study_free(struct study *s)
{
    for (int i = 0; i < s->n_rows; i++)
        replay_result_free(&s->rows[i].pf);
    for (int p = 0; p < PREDICT_COUNT; p++)
        replay_result_free(&s->pred[p]);
    trace_free(&s->t);
}

static int study_load(struct study *s, sw_err *err)
{
    trace_init(&s->t);
    for (int i = 0; i < s->n_paths; i++) {
        int rc = trace_load(&s->t, s->paths[i], err);
        if (rc)
            return rc;
    }
    if (!s->t.n_steps)
        return sw_errf(err, SW_EINVAL, "%s: no routing rows", s->paths[0]);
    s->total = (size_t)s->t.n_layers * (size_t)s->t.n_experts;
    return 0;
}

/* Budgets: the shares, and (fit_frac >= 0) the largest that fits, marked
 * fits = 2; shares beyond it get fits = 0. fit_frac < 0: no limit known. */
static void study_rows(struct study *s, double fit_frac)
{
    int placed = fit_frac <= 0;
    s->n_rows = 0;
    for (int i = 0; i < N_FRACS; i++) {
        double f = g_fracs[i];
        if (!placed && fit_frac <= f) {
            placed = 1;
            if (fit_frac < f)
                s->rows[s->n_rows++] = (struct row){.frac = fit_frac, .fits = 2};
        }
        s->rows[s->n_rows++] = (struct row){
            .frac = f, .fits = fit_frac < 0 ? 1 : f == fit_frac ? 2 : f < fit_frac};
    }
    for (int i = 0; i < s->n_rows; i++)
        s->rows[i].entries = (size_t)(s->rows[i].frac * (double)s->total + 0.5);
}

static int study_replay(struct study *s, sw_err *err)
{
    for (int i = 0; i < s->n_rows; i++) {
        struct row *r = &s->rows[i];
        for (int k = 0; k < POLICY_KIND_COUNT; k++) {
            replay_opts o = {.policy = (policy_kind)k, .capacity = r->entries};
            replay_result res;
            int rc = replay_run(&s->t, &o, &res, err);
            if (rc)
                return rc;
            r->hit[k] = replay_hit_rate(&res);
            s->mean_hit[k] += r->hit[k] / s->n_rows;
            replay_result_free(&res);
        }
        uint64_t h, a;
        int rc = replay_opt(&s->t, r->entries, &h, &a, err);
        if (rc)
            return rc;
        r->opt = a ? (double)h / (double)a : 0;
    }
    s->best = POLICY_LRU;
    for (int k = 1; k < POLICY_KIND_COUNT; k++)
        if (s->mean_hit[k] > s->mean_hit[s->best])
            s->best = (policy_kind)k;
    s->best_pred = PREDICT_PREV;
    for (int p = PREDICT_PREV; p < PREDICT_COUNT; p++) {
        /* mix is scored twice as wide: at top-k it is prev */
        replay_opts o = {.policy = POLICY_DEFAULT, .capacity = s->total / 4,
                         .predictor = (replay_predictor)p,
                         .width = p == PREDICT_MIX ? 2 * s->t.top_k : 0};
        int rc = replay_run(&s->t, &o, &s->pred[p], err);
        if (rc)
            return rc;
        if (p != PREDICT_MIX &&
            replay_precision(&s->pred[p].pred) > replay_precision(&s->pred[s->best_pred].pred))
            s->best_pred = (replay_predictor)p;
    }
    return 0;
}

/* Rates per expert read, from a replay. */
static plan_rates rates_of(const replay_result *r)
{
    double a = r->accesses ? (double)r->accesses : 1;
    return (plan_rates){(double)r->hits / a, (double)r->misses / a, (double)r->prefetches / a};
}

static int study_estimate(struct study *s, policy_kind pol, const plan_machine *m,
                          const plan_model *md, sw_err *err)
{
    for (int i = 0; i < s->n_rows; i++) {
        struct row *r = &s->rows[i];
        plan_rates plain = {r->hit[pol], 1 - r->hit[pol], 0};
        plan_estimate_token(m, md, &plain, &r->est);
        replay_opts o = {.policy = pol, .capacity = r->entries, .predictor = s->best_pred,
                         .prefetch = true};
        int rc = replay_run(&s->t, &o, &r->pf, err);
        if (rc)
            return rc;
        plan_rates pf = rates_of(&r->pf);
        plan_estimate_token(m, md, &pf, &r->est_pf);
    }
    return 0;
}

/* --- text output --------------------------------------------------------------- */

static void print_machine(const plan_machine *m, const struct opts *o)
{
    char tot[32], av[32];
    human_bytes((double)m->ram_total, tot, sizeof tot);
    human_bytes((double)m->ram_avail, av, sizeof av);
    printf("machine   %d CPUs, RAM %s (%s available); memory read %.1f GB/s (%d threads)\n",
           m->n_cpus, m->ram_total ? tot : "unknown", m->ram_avail ? av : "unknown",
           m->mem_bw / 1e9, m->mem_threads);
    if (o->ssd_bw > 0)
        printf("          SSD %.2f GB/s (given with --ssd-bw)\n", m->ssd_bw / 1e9);
    else if (m->ssd_bw > 0)
        printf("          SSD %.2f GB/s: %s\n", m->ssd_bw / 1e9, m->ssd_note);
    else
        printf("          SSD: %s\n", m->ssd_note);
}

static void print_model(const plan_model *md, const char *path)
{
    char eb[32], et[32], rb[32], tr[32];
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    human_bytes((double)md->expert_bytes, eb, sizeof eb);
    human_bytes((double)md->expert_total, et, sizeof et);
    human_bytes((double)md->resident_bytes, rb, sizeof rb);
    human_bytes((double)md->token_resident, tr, sizeof tr);
    if (!md->n_expert) {
        printf("model     %s: %s, %d layers, dense: no experts to cache; %s resident\n", base,
               md->arch, md->n_layer, rb);
        return;
    }
    printf("model     %s: %s, %d MoE layers of %d experts, %d used per token\n", base, md->arch,
           md->n_moe_layer, md->n_expert, md->n_expert_used);
    printf("          expert %s each, %s in all; resident %s (%s read per token)\n", eb, et, rb,
           tr);
}

static void print_hits(const struct study *s, const plan_model *md)
{
    printf("\nhit rate of expert reads by cache policy (demand reads only; opt is Belady's "
           "offline bound)\n  %-26s", "experts cached");
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        printf(" %7s", policy_kind_name((policy_kind)k));
    printf(" | %6s\n", "opt");
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        char label[64], sz[32] = "";
        if (md && md->n_expert) {
            human_bytes(r->frac * (double)md->expert_total, sz, sizeof sz);
            snprintf(label, sizeof label, "%5.1f%% %9s%s", 100 * r->frac, sz,
                     r->fits == 2 ? " fits" : r->fits ? "" : " >RAM");
        } else {
            snprintf(label, sizeof label, "%5.1f%% (%zu of %zu)", 100 * r->frac, r->entries,
                     s->total);
        }
        printf("  %-26s", label);
        for (int k = 0; k < POLICY_KIND_COUNT; k++)
            printf(" %6.1f%%", 100 * r->hit[k]);
        printf(" | %5.1f%%\n", 100 * r->opt);
    }
    printf("  %-26s", "mean");
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        printf(" %6.1f%%", 100 * s->mean_hit[k]);
    printf("\n  best on this trace: %s\n", policy_kind_name(s->best));
}

static void print_predictors(const struct study *s)
{
    printf("\nprefetch predictors (the next visit of a layer, %d experts predicted; "
           "precision / recall)\n",
           s->t.top_k);
    for (int p = PREDICT_PREV; p < PREDICT_COUNT; p++)
        printf("  %-5s %5.1f%% / %5.1f%%%s\n", replay_predictor_name((replay_predictor)p),
               100 * replay_precision(&s->pred[p].pred), 100 * replay_recall(&s->pred[p].pred),
               p == PREDICT_PREV   ? "  same experts as the previous token at this layer"
               : p == PREDICT_FREQ ? "  most used at this layer, recent tokens weigh more"
                                   : "  prev, then freq: twice as many predicted");
    const replay_result *b = &s->pred[s->best_pred];
    printf("  per layer, %s:", replay_predictor_name(s->best_pred));
    for (int l = 0; l < b->n_layers; l++)
        printf("%s L%d %.0f/%.0f", l % 8 ? "" : "\n   ", l,
               100 * replay_precision(&b->per_layer[l]), 100 * replay_recall(&b->per_layer[l]));
    printf("\n  not replayable from a trace: layer L+1's router applied to layer L's hidden\n"
           "  state, which the engine can use while layer L runs\n");
}

static const plan_estimate *best_est(const struct row *r, int *pf)
{
    *pf = r->est_pf.tok_per_s > r->est.tok_per_s;
    return *pf ? &r->est_pf : &r->est;
}

static void print_estimate(const struct study *s, policy_kind pol, const plan_model *md)
{
    printf("\nestimate with %s; prefetch by %s one layer ahead\n"
           "  time per token = demand reads / SSD bw + max((resident + active expert bytes) /"
           " memory bw,\n                                           prefetch reads / SSD bw)\n",
           policy_kind_name(pol), replay_predictor_name(s->best_pred));
    printf("  %-16s %8s %8s | %8s %10s %10s %8s\n", "cache", "hit", "tok/s", "hit+pf",
           "wasted pf", "SSD/token", "tok/s");
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        char sz[32], rd[32], v0[16] = "-", v1[16] = "-";
        human_bytes(r->frac * (double)md->expert_total, sz, sizeof sz);
        human_bytes(r->est_pf.ssd_bytes_per_token, rd, sizeof rd);
        if (r->est.tok_per_s > 0) /* 0: unknown, no SSD figure */
            snprintf(v0, sizeof v0, "%.2f", r->est.tok_per_s);
        if (r->est_pf.tok_per_s > 0)
            snprintf(v1, sizeof v1, "%.2f", r->est_pf.tok_per_s);
        double a = r->pf.accesses ? (double)r->pf.accesses : 1;
        printf("  %-9s%-7s %7.1f%% %8s | %7.1f%% %9.1f%% %10s %8s\n", sz,
               r->fits == 2 ? " fits" : r->fits ? "" : " >RAM", 100 * r->hit[pol], v0,
               100 * replay_hit_rate(&r->pf), 100 * (double)r->pf.prefetch_wasted / a, rd, v1);
    }
}

static void print_summary(const struct study *s, policy_kind pol, const plan_model *md,
                          double ram, double reserve, double fit_bytes)
{
    char rs[32], fs[32], vs[32];
    human_bytes(ram, rs, sizeof rs);
    human_bytes(reserve, vs, sizeof vs);
    human_bytes(fit_bytes > 0 ? fit_bytes : 0, fs, sizeof fs);
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        if (r->fits != 2)
            continue;
        int pf;
        const plan_estimate *e = best_est(r, &pf);
        double hit = pf ? replay_hit_rate(&r->pf) : r->hit[pol];
        char speed[96];
        if (e->tok_per_s > 0)
            snprintf(speed, sizeof speed, "about %.1f tok/s%s", e->tok_per_s,
                     pf ? " (with prefetch)" : "");
        else
            snprintf(speed, sizeof speed, "tok/s unknown without an SSD figure (--ssd-bw)");
        printf("\nwith %s of RAM (%s for the cache after resident weights and a %s reserve):\n"
               "  %s cache: %.0f%% of expert reads from RAM, %s\n",
               rs, fs, vs, fs, 100 * hit, speed);
        return;
    }
    printf("\nwith %s of RAM: %s\n", rs,
           fit_bytes >= (double)md->expert_total ? "every expert fits: nothing to stream"
                                                  : "no room for an expert cache");
}

/* --- JSON output ---------------------------------------------------------------- */

static json_t *json_pred(const replay_pred *p)
{
    return json_pack("{s:f, s:f, s:I, s:I, s:I}", "precision", replay_precision(p), "recall",
                     replay_recall(p), "predicted", (json_int_t)p->predicted, "correct",
                     (json_int_t)p->correct, "actual", (json_int_t)p->actual);
}

static json_t *json_study(const struct study *s, policy_kind pol, const plan_model *md)
{
    json_t *paths = json_array(), *rows = json_array(), *preds = json_object();
    for (int i = 0; i < s->n_paths; i++)
        json_array_append_new(paths, json_string(s->paths[i]));
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        json_t *hit = json_object();
        for (int k = 0; k < POLICY_KIND_COUNT; k++)
            json_object_set_new(hit, policy_kind_name((policy_kind)k), json_real(r->hit[k]));
        json_t *row = json_pack("{s:f, s:I, s:b, s:b, s:o, s:f}", "share", r->frac,
                                "trace_entries", (json_int_t)r->entries, "fits", r->fits != 0,
                                "largest_fit", r->fits == 2, "hit_rate", hit, "opt", r->opt);
        if (md && md->n_expert) {
            double a = r->pf.accesses ? (double)r->pf.accesses : 1;
            json_object_set_new(row, "cache_bytes",
                                json_integer((json_int_t)(r->frac * (double)md->expert_total)));
            json_object_set_new(
                row, "estimate",
                json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "tok_per_s",
                          r->est.tok_per_s, "tok_per_s_prefetch", r->est_pf.tok_per_s,
                          "hit_rate_prefetch", replay_hit_rate(&r->pf), "prefetch_wasted",
                          (double)r->pf.prefetch_wasted / a, "ssd_bytes_per_token",
                          r->est_pf.ssd_bytes_per_token, "t_compute", r->est_pf.t_compute,
                          "t_demand", r->est_pf.t_demand, "t_prefetch", r->est_pf.t_prefetch));
        }
        json_array_append_new(rows, row);
    }
    for (int p = PREDICT_PREV; p < PREDICT_COUNT; p++) {
        json_t *o = json_pred(&s->pred[p].pred);
        if (p == (int)s->best_pred) {
            json_t *pl = json_array();
            for (int l = 0; l < s->pred[p].n_layers; l++)
                json_array_append_new(pl, json_pred(&s->pred[p].per_layer[l]));
            json_object_set_new(o, "per_layer", pl);
        }
        json_object_set_new(preds, replay_predictor_name((replay_predictor)p), o);
    }
    json_t *mean = json_object();
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        json_object_set_new(mean, policy_kind_name((policy_kind)k), json_real(s->mean_hit[k]));
    return json_pack("{s:s, s:o, s:i, s:i, s:i, s:I, s:I, s:s, s:o, s:o, s:s, s:s, s:o, s:s, "
                     "s:s}",
                     "label", s->label, "files", paths, "layers", s->t.n_layers, "experts",
                     s->t.n_experts, "top_k", s->t.top_k, "sequences", (json_int_t)s->t.n_seqs,
                     "tokens", (json_int_t)trace_n_tokens(&s->t), "mapping", s->mapping,
                     "budgets", rows, "mean_hit_rate", mean, "best_policy",
                     policy_kind_name(s->best), "estimate_policy", policy_kind_name(pol),
                     "predictors", preds, "best_predictor", replay_predictor_name(s->best_pred),
                     "not_replayable",
                     "layer L+1's router applied to layer L's hidden state");
}

static void print_json(const plan_machine *m, const plan_model *md, const char *model_path,
                       struct study *st, int n_st, policy_kind pol, double ram)
{
    json_t *root = json_object(), *studies = json_array();
    json_object_set_new(
        root, "machine",
        json_pack("{s:i, s:I, s:I, s:f, s:f, s:s, s:I}", "cpus", m->n_cpus, "ram_total",
                  (json_int_t)m->ram_total, "ram_available", (json_int_t)m->ram_avail,
                  "mem_read_bw", m->mem_bw, "ssd_read_bw", m->ssd_bw, "ssd_note", m->ssd_note,
                  "ram_planned", (json_int_t)ram));
    if (md) {
        json_object_set_new(
            root, "model",
            json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I}", "path", model_path,
                      "arch", md->arch, "layers", md->n_layer, "moe_layers", md->n_moe_layer,
                      "experts", md->n_expert, "experts_used", md->n_expert_used,
                      "expert_bytes", (json_int_t)md->expert_bytes, "expert_total",
                      (json_int_t)md->expert_total, "resident_bytes",
                      (json_int_t)md->resident_bytes, "token_resident_bytes",
                      (json_int_t)md->token_resident));
    }
    for (int i = 0; i < n_st; i++)
        json_array_append_new(studies, json_study(&st[i], pol, md));
    json_object_set_new(root, "traces", studies);
    json_object_set_new(root, "default_policy", json_string(policy_kind_name(POLICY_DEFAULT)));
    json_object_set_new(root, "estimate_model",
                        json_string("t_token = demand_bytes/ssd_bw + max((token_resident + "
                                    "active_expert_bytes)/mem_bw, prefetch_bytes/ssd_bw)"));
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
}

/* --- the command ----------------------------------------------------------------- */

static int probe(struct opts *o, plan_machine *m, plan_model *md, int *have_model,
                 sw_err *err)
{
    memset(m, 0, sizeof *m);
    int rc = plan_probe_meminfo(m, NULL, err);
    if (rc)
        return rc;
    if ((rc = plan_probe_mem_bw(m, 0, err)))
        return rc;
    snprintf(m->ssd_note, sizeof m->ssd_note, "not measured: no model given");
    if (!o->model)
        return 0;
    gguf_ctx *g;
    if ((rc = gguf_open(o->model, GGUF_NO_DATA, &g, err)))
        return rc;
    rc = plan_model_from_gguf(g, md, err);
    uint64_t lo = md->n_expert ? md->expert_lo : gguf_data_offset(g);
    uint64_t hi = md->n_expert ? md->expert_hi : gguf_file_size(g);
    gguf_close(g);
    if (rc)
        return sw_err_prefix(err, "%s", o->model);
    *have_model = 1;
    if (o->ssd_bw > 0) {
        m->ssd_bw = o->ssd_bw;
        snprintf(m->ssd_note, sizeof m->ssd_note, "given with --ssd-bw");
        return 0;
    }
    /* the reader fetches an expert as its three slices, split into reads of
     * at most 4 MiB, many in flight */
    uint64_t rd = md->expert_bytes ? md->expert_bytes / 3 : (1u << 20);
    if (rd > (4u << 20))
        rd = 4u << 20;
    return plan_probe_ssd(m, o->model, lo, hi, rd, 8, 0.5, err);
}

/* Which traces to replay. */
static int pick_studies(const struct opts *o, const plan_model *md, int have_model,
                        struct study *st, int *n_st)
{
    memset(st, 0, 2 * sizeof *st);
    if (o->n_traces) {
        st[0].label = "given";
        for (int i = 0; i < o->n_traces; i++)
            st[0].paths[i] = o->traces[i];
        st[0].n_paths = o->n_traces;
        *n_st = 1;
        return 0;
    }
    char dir[PATH_MAX + 16];
    if (!fixture_traces(dir, sizeof dir))
        return cli_fail("plan: no routing traces found (set SPILLWAY_FIXTURES or pass --trace)");
    if (have_model && md->n_expert) {
        default_study(&st[0], md->n_expert == 8 ? 'm' : 't', dir);
        *n_st = 1;
    } else {
        default_study(&st[0], 'm', dir);
        default_study(&st[1], 't', dir);
        *n_st = 2;
    }
    return 0;
}

static void describe_mapping(struct study *s, const plan_model *md)
{
    const trace *t = &s->t;
    if (!md || !md->n_expert)
        snprintf(s->mapping, sizeof s->mapping, "no model: budgets are shares of the trace's experts");
    else if (t->n_layers == md->n_moe_layer && t->n_experts == md->n_expert &&
             t->top_k == md->n_expert_used)
        snprintf(s->mapping, sizeof s->mapping, "exact: the trace has the model's shape");
    else
        snprintf(s->mapping, sizeof s->mapping,
                 "scaled: trace %dx%d top-%d replayed for a %dx%d top-%d model, budgets mapped "
                 "by share of experts cached",
                 t->n_layers, t->n_experts, t->top_k, md->n_moe_layer, md->n_expert,
                 md->n_expert_used);
}

/* Loads, replays and (with a MoE model) estimates one study. */
static int study_run(struct study *s, double fit_frac, policy_kind pol, const plan_machine *m,
                     const plan_model *md, sw_err *err)
{
    int rc = study_load(s, err);
    if (rc)
        return rc;
    study_rows(s, fit_frac);
    if ((rc = study_replay(s, err)))
        return rc;
    if (md && (rc = study_estimate(s, pol, m, md, err)))
        return rc;
    describe_mapping(s, md);
    return 0;
}

int cmd_plan(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    sw_err err = {0};
    plan_machine m;
    plan_model md;
    int have_model = 0, n_st = 0, status = 1;
    memset(&md, 0, sizeof md);
    struct study st[2];
    if (probe(&o, &m, &md, &have_model, &err))
        return cli_fail("plan: %s", err.msg);
    if (pick_studies(&o, &md, have_model, st, &n_st))
        return 1;
    double ram = o.ram >= 0 ? (double)o.ram : (double)m.ram_avail;
    double reserve = ram / 8 < (double)RESERVE_MAX ? ram / 8 : (double)RESERVE_MAX;
    double fit_bytes = ram - (double)md.resident_bytes - reserve;
    double fit_frac = -1;
    int moe = have_model && md.n_expert;
    if (moe)
        fit_frac = fit_bytes <= 0 ? 0
                   : fit_bytes >= (double)md.expert_total
                       ? 1
                       : (double)((uint64_t)fit_bytes / md.expert_bytes) /
                             ((double)md.n_moe_layer * md.n_expert);
    policy_kind pol = o.policy >= 0 ? (policy_kind)o.policy : POLICY_DEFAULT;
    for (int i = 0; i < n_st; i++) {
        if (study_run(&st[i], fit_frac, pol, &m, moe ? &md : NULL, &err)) {
            cli_fail("plan: %s", err.msg);
            n_st = i + 1;
            goto done;
        }
    }
    if (o.json) {
        print_json(&m, have_model ? &md : NULL, o.model, st, n_st, pol, ram);
    } else {
        print_machine(&m, &o);
        if (have_model)
            print_model(&md, o.model);
        for (int i = 0; i < n_st; i++) {
            const struct study *s = &st[i];
            printf("\ntrace     %s: %d layers x %d experts, top-%d; %zu sequences, %zu tokens\n"
                   "          %s\n",
                   s->label, s->t.n_layers, s->t.n_experts, s->t.top_k, s->t.n_seqs,
                   trace_n_tokens(&s->t), s->mapping);
            print_hits(s, moe ? &md : NULL);
            print_predictors(s);
            if (moe) {
                print_estimate(s, pol, &md);
                print_summary(s, pol, &md, ram, reserve, fit_bytes);
            }
        }
        printf("\ndefault cache policy: %s (best on the real traces; --cache-policy to change)\n",
               policy_kind_name(POLICY_DEFAULT));
    }
    status = 0;
done:
    for (int i = 0; i < n_st; i++)
        study_free(&st[i]);
    return status;
}
