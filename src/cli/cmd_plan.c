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
 *
 * Beside each policy's curve, the store's default (POLICY_DEFAULT with
 * read-ahead by the auto predictor, replay_opts_default) with the share of
 * the gap to Belady's optimum it closes and what its read-ahead costs.
 * --text FILE runs MODEL itself over a text (plan_engine.h) to score the
 * predictor a trace cannot replay: the hidden state through the next
 * layer's router. plan_print.c prints the report.
 */
#include "cli/cli.h"
#include "cli/plan_cli.h"
#include "gguf/gguf.h"
#include "store/plan.h"
#include "store/read_probe.h"
#include "store/replay.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* RAM kept out of the cache for the KV cache, activations and the process:
 * 1 GiB, or an eighth of the RAM when that is less. */
#define RESERVE_MAX (1ull << 30)

static const char *usage_text =
    "usage: spillway plan [MODEL.gguf] [--trace FILE]... [--ram SIZE] [--text FILE] [--json]\n"
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
    "  --text FILE           also run MODEL over this text (one token per step, as\n"
    "                        decoding) through a streaming store, with and without the\n"
    "                        model's hidden-state hints, and score every predictor per\n"
    "                        layer\n"
    "  --text-share F        share of the experts that store caches (default 0.25)\n"
    "  --tokens N            at most N tokens of the text (default 2048)\n"
    "  --json                one JSON object instead of text\n";

/* Shares of all experts replayed as budgets. */
static const double g_fracs[] = {1.0 / 16, 1.0 / 8, 1.0 / 4, 3.0 / 8, 1.0 / 2,
                                 5.0 / 8,  3.0 / 4, 7.0 / 8, 1.0};
_Static_assert(sizeof g_fracs / sizeof g_fracs[0] == N_FRACS, "N_FRACS");

/* --- arguments and traces ---------------------------------------------------- */

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->ram = -1;
    o->policy = -1;
    o->text_share = 0.25;
    o->text_tokens = 2048;
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
        } else if (!strcmp(a, "--text") && more) {
            o->text = argv[++i];
        } else if (!strcmp(a, "--text-share") && more) {
            o->text_share = strtod(argv[++i], NULL);
            if (!(o->text_share > 0 && o->text_share <= 1))
                return cli_fail("plan: --text-share must be in (0, 1]") + 1;
        } else if (!strcmp(a, "--tokens") && more) {
            o->text_tokens = atoi(argv[++i]);
            if (o->text_tokens < 2)
                return cli_fail("plan: bad --tokens '%s'", argv[i]) + 1;
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
    for (int i = 0; i < s->n_rows; i++) {
        replay_result_free(&s->rows[i].pf);
        replay_result_free(&s->rows[i].def);
    }
    replay_result_free(&s->pred);
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
    replay_opts o;
    for (int i = 0; i < s->n_rows; i++) {
        struct row *r = &s->rows[i];
        for (int k = 0; k < POLICY_KIND_COUNT; k++) {
            o = (replay_opts){.policy = (policy_kind)k, .capacity = r->entries};
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
        replay_opts_default(&o, &s->t, r->entries);
        if ((rc = replay_run(&s->t, &o, &r->def, err)))
            return rc;
        s->mean_def += replay_hit_rate(&r->def) / s->n_rows;
    }
    s->best = POLICY_LRU;
    for (int k = 1; k < POLICY_KIND_COUNT; k++)
        if (s->mean_hit[k] > s->mean_hit[s->best])
            s->best = (policy_kind)k;
    replay_opts_default(&o, &s->t, s->total / 4);
    return replay_run(&s->t, &o, &s->pred, err);
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
        replay_opts o;
        replay_opts_default(&o, &s->t, r->entries);
        o.policy = pol;
        int rc = replay_run(&s->t, &o, &r->pf, err);
        if (rc)
            return rc;
        plan_rates pf = rates_of(&r->pf);
        plan_estimate_token(m, md, &pf, &r->est_pf);
    }
    return 0;
}

/* --- the command ----------------------------------------------------------------- */

/* The disk as the streaming store reads it: the model's own expert slices
 * through the store's reader at its queue depth (read_probe.h, the probe of
 * `spillway bench --disk-probe`), so estimate and measurement share it. */
static int probe_experts(plan_machine *m, const char *path, sw_err *err)
{
    read_probe_opts po = {.seconds = 1.0};
    read_probe_result r;
    int rc = read_probe_run(path, &po, &r, err);
    if (rc)
        return rc;
    m->ssd_bw = r.gbs * 1e9;
    m->ssd_read_bytes = (uint64_t)r.mean_read_bytes;
    snprintf(m->ssd_note, sizeof m->ssd_note,
             "%s random reads of the model's expert slices (%.0f KiB), %.1f s: %s",
             r.direct ? "O_DIRECT" : "buffered", r.mean_read_bytes / 1024, r.seconds, r.mode);
    return 0;
}

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
    if (md->n_expert)
        return probe_experts(m, o->model, err);
    /* no experts: plain random reads of the data section */
    return plan_probe_ssd(m, o->model, lo, hi, 1u << 20, 8, 0.5, err);
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

/* --text: the model over the text, with and without hints. */
static int measure_text(const struct opts *o, plan_engine_result *eng, plan_engine_result *eng0)
{
    size_t len = 0;
    sw_err err = {0};
    char *text = cli_read_file(o->text, &len, &err);
    if (!text)
        return cli_fail("plan: %s", err.msg);
    int rc = plan_engine_measure(o->model, text, len, o->text_share, o->text_tokens, true, eng,
                                 &err);
    if (!rc)
        rc = plan_engine_measure(o->model, text, len, o->text_share, o->text_tokens, false, eng0,
                                 &err);
    free(text);
    return rc ? cli_fail("plan: %s: %s", o->text, err.msg) : 0;
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
    plan_engine_result eng = {0}, eng0 = {0};
    int have_model = 0, n_st = 0, status = 1;
    memset(&md, 0, sizeof md);
    struct study st[2];
    if (probe(&o, &m, &md, &have_model, &err))
        return cli_fail("plan: %s", err.msg);
    if (pick_studies(&o, &md, have_model, st, &n_st))
        return 1;
    struct plan_report rep = {.o = &o, .m = &m, .md = have_model ? &md : NULL, .st = st};
    rep.ram = o.ram >= 0 ? (double)o.ram : (double)m.ram_avail;
    rep.reserve = rep.ram / 8 < (double)RESERVE_MAX ? rep.ram / 8 : (double)RESERVE_MAX;
    rep.fit_bytes = rep.ram - (double)md.resident_bytes - rep.reserve;
    double fit_frac = -1;
    rep.moe = have_model && md.n_expert;
    if (rep.moe)
        fit_frac = rep.fit_bytes <= 0 ? 0
                   : rep.fit_bytes >= (double)md.expert_total
                       ? 1
                       : (double)((uint64_t)rep.fit_bytes / md.expert_bytes) /
                             ((double)md.n_moe_layer * md.n_expert);
    rep.pol = o.policy >= 0 ? (policy_kind)o.policy : POLICY_DEFAULT;
    for (int i = 0; i < n_st; i++) {
        if (study_run(&st[i], fit_frac, rep.pol, &m, rep.moe ? &md : NULL, &err)) {
            cli_fail("plan: %s", err.msg);
            n_st = i + 1;
            goto done;
        }
    }
    rep.n_st = n_st;
    if (o.text) {
        if (!rep.moe) {
            cli_fail("plan: --text needs a MoE model");
            goto done;
        }
        if (measure_text(&o, &eng, &eng0))
            goto done;
        rep.eng = &eng;
        rep.eng0 = &eng0;
    }
    if (o.json)
        plan_print_json(&rep);
    else
        plan_print_text(&rep);
    status = 0;
done:
    plan_engine_free(&eng);
    plan_engine_free(&eng0);
    for (int i = 0; i < n_st; i++)
        study_free(&st[i]);
    return status;
}
