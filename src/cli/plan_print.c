/*
 * plan_print.c — `spillway plan`'s report as text or one JSON object
 * (plan_cli.h).
 */
#include "cli/plan_cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void plan_human_bytes(double n, char *buf, size_t len)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, u ? (n < 10 ? "%.2f %s" : "%.1f %s") : "%.0f %s", n, unit[u]);
}

/* Share of the gap between LRU and the optimum that the default closes. */
double plan_gap_closed(const struct row *r)
{
    double d = replay_hit_rate(&r->def), lru = r->hit[POLICY_LRU];
    return r->opt - lru > 1e-9 ? (d - lru) / (r->opt - lru) : 1.0;
}

double plan_per_token(uint64_t n, const replay_result *r)
{
    return r->tokens ? (double)n / (double)r->tokens : 0;
}

/* --- text output --------------------------------------------------------------- */

static void print_machine(const plan_machine *m, const struct opts *o)
{
    char tot[32], av[32];
    plan_human_bytes((double)m->ram_total, tot, sizeof tot);
    plan_human_bytes((double)m->ram_avail, av, sizeof av);
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
    plan_human_bytes((double)md->expert_bytes, eb, sizeof eb);
    plan_human_bytes((double)md->expert_total, et, sizeof et);
    plan_human_bytes((double)md->resident_bytes, rb, sizeof rb);
    plan_human_bytes((double)md->token_resident, tr, sizeof tr);
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

static void print_row_label(const struct study *s, const struct row *r, const plan_model *md)
{
    char label[64], sz[32] = "";
    if (md && md->n_expert) {
        plan_human_bytes(r->frac * (double)md->expert_total, sz, sizeof sz);
        snprintf(label, sizeof label, "%5.1f%% %9s%s", 100 * r->frac, sz,
                 r->fits == 2 ? " fits" : r->fits ? "" : " >RAM");
    } else {
        snprintf(label, sizeof label, "%5.1f%% (%zu of %zu)", 100 * r->frac, r->entries,
                 s->total);
    }
    printf("  %-26s", label);
}

static void print_hits(const struct study *s, const plan_model *md)
{
    printf("\nhit rate of expert reads by cache policy, and the default (%s + read-ahead by the\n"
           "auto predictor, as the store runs); opt is Belady's offline bound for a cache without\n"
           "read-ahead; gap: (default - lru) / (opt - lru)\n  %-26s",
           policy_kind_name(POLICY_DEFAULT), "experts cached");
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        printf(" %7s", policy_kind_name((policy_kind)k));
    printf(" | %7s %6s | %5s\n", "default", "opt", "gap");
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        print_row_label(s, r, md);
        for (int k = 0; k < POLICY_KIND_COUNT; k++)
            printf(" %6.1f%%", 100 * r->hit[k]);
        printf(" | %6.1f%% %5.1f%% | %5.2f\n", 100 * replay_hit_rate(&r->def), 100 * r->opt,
               plan_gap_closed(r));
    }
    printf("  %-26s", "mean");
    for (int k = 0; k < POLICY_KIND_COUNT; k++)
        printf(" %6.1f%%", 100 * s->mean_hit[k]);
    printf(" | %6.1f%%\n  best policy without read-ahead on this trace: %s\n", 100 * s->mean_def,
           policy_kind_name(s->best));
    printf("\nwhat the default reads, in experts per token (lru reads only its misses)\n"
           "  %-26s %8s %8s %8s %8s %8s | %8s\n", "experts cached", "demand", "ahead", "used",
           "wasted", "total", "lru");
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        const replay_result *d = &r->def;
        double tok = d->tokens ? (double)d->tokens : 1;
        print_row_label(s, r, md);
        printf(" %8.2f %8.2f %8.2f %8.2f %8.2f | %8.2f\n", plan_per_token(d->misses, d),
               plan_per_token(d->prefetches, d), plan_per_token(d->prefetch_hits, d),
               plan_per_token(d->prefetch_wasted, d), plan_per_token(d->misses + d->prefetches, d),
               (1 - r->hit[POLICY_LRU]) * (double)d->accesses / tok);
    }
}

static void print_predictors(const struct study *s)
{
    const replay_result *b = &s->pred;
    printf("\nprefetch predictors, replayed with the default at a quarter of the experts: the next\n"
           "layer's experts guessed while the layer before runs (%d guesses each; auto as many\n"
           "as the store reads ahead from); precision / recall, all layers, then per layer\n",
           s->t.top_k);
    static const char *const what[XPRED_COUNT] = {
        "hint, cooc, prev and freq by score: what the store reads ahead",
        "",
        "co-occurrence: experts that followed the previous step's, learned online",
        "same experts as the previous token at this layer",
        "most used at this layer, recent tokens weigh more",
        "prev, then freq"};
    for (int k = 0; k < XPRED_COUNT; k++) {
        if (k == XPRED_HINT || !b->kinds)
            continue;
        replay_pred t = {0};
        for (int l = 0; l < b->n_layers; l++) {
            const replay_pred *c = &b->kinds[(size_t)k * b->n_layers + l];
            t.predicted += c->predicted;
            t.correct += c->correct;
            t.actual += c->actual;
        }
        printf("  %-5s %5.1f%% / %5.1f%%  %s", xpred_kind_name((xpred_kind)k),
               100 * replay_precision(&t), 100 * replay_recall(&t), what[k]);
        for (int l = 0; l < b->n_layers; l++) {
            const replay_pred *c = &b->kinds[(size_t)k * b->n_layers + l];
            printf("%s L%d %.0f/%.0f", l % 8 ? "" : "\n   ", l, 100 * replay_precision(c),
                   100 * replay_recall(c));
        }
        printf("\n");
    }
    printf("  hint (layer L+1's router applied to layer L's hidden state) needs the model:\n"
           "  `spillway plan MODEL --text FILE` scores it in the engine\n");
}

static const plan_estimate *best_est(const struct row *r, int *pf)
{
    *pf = r->est_pf.tok_per_s > r->est.tok_per_s;
    return *pf ? &r->est_pf : &r->est;
}

static void print_estimate(const struct study *s, policy_kind pol, const plan_model *md)
{
    printf("\nestimate with %s; read-ahead by the %s predictor one layer ahead\n"
           "  time per token = demand reads / SSD bw + max((resident + active expert bytes) /"
           " memory bw,\n                                           prefetch reads / SSD bw)\n",
           policy_kind_name(pol), replay_predictor_name(PREDICT_AUTO));
    printf("  %-16s %8s %8s | %8s %10s %10s %8s\n", "cache", "hit", "tok/s", "hit+pf",
           "wasted pf", "SSD/token", "tok/s");
    for (int i = 0; i < s->n_rows; i++) {
        const struct row *r = &s->rows[i];
        char sz[32], rd[32], v0[16] = "-", v1[16] = "-";
        plan_human_bytes(r->frac * (double)md->expert_total, sz, sizeof sz);
        plan_human_bytes(r->est_pf.ssd_bytes_per_token, rd, sizeof rd);
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
    plan_human_bytes(ram, rs, sizeof rs);
    plan_human_bytes(reserve, vs, sizeof vs);
    plan_human_bytes(fit_bytes > 0 ? fit_bytes : 0, fs, sizeof fs);
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

/* --- predictors in the engine (--text) ---------------------------------------- */

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0;
}

static void print_cache_line(const char *what, const plan_engine_result *r)
{
    const store_stats *st = &r->st;
    printf("  %-14s expert hits %5.1f%% of %llu; per token: %.2f demand reads, %.2f read ahead "
           "(%.2f used, %.2f wasted), %.2f MiB read; measured %.2f tok/s\n",
           what, 100 * ratio(st->hits, st->requests), (unsigned long long)st->requests,
           ratio(st->misses, (uint64_t)r->n_tokens), ratio(st->prefetch_issued, (uint64_t)r->n_tokens),
           ratio(st->prefetch_hits, (uint64_t)r->n_tokens),
           ratio(st->prefetch_wasted, (uint64_t)r->n_tokens),
           ratio(st->bytes_read, (uint64_t)r->n_tokens) / (1024.0 * 1024.0),
           r->seconds > 0 ? r->n_tokens / r->seconds : 0.0);
}

static void print_engine(const plan_engine_result *r, const plan_engine_result *r0,
                         const struct opts *o)
{
    const store_stats *st = &r->st;
    printf("\npredictors in the engine: %s over %s, %d tokens one per step, cache %lld of %lld "
           "entries (%s)\n",
           o->model, o->text, r->n_tokens, (long long)st->capacity, (long long)st->total_entries,
           st->policy);
    print_cache_line("with hints", r);
    print_cache_line("without hints", r0);
    printf("  precision / recall, all layers and per layer (the next MoE layer's experts, guessed\n"
           "  while the layer before it runs; single predictors guess top-k, auto its width)\n");
    for (int k = 0; k < STORE_N_PREDICTORS; k++) {
        uint64_t t[3] = {0};
        for (int l = 0; l < r->n_layers; l++)
            for (int j = 0; j < 3; j++)
                t[j] += plan_engine_pred(r, k, l)[j];
        printf("  %-5s %5.1f%% / %5.1f%% |", store_predictor_name(k), 100 * ratio(t[1], t[0]),
               100 * ratio(t[1], t[2]));
        for (int l = 0; l < r->n_layers; l++) {
            const uint64_t *c = plan_engine_pred(r, k, l);
            if (c[2])
                printf(" L%d %.0f/%.0f", l, 100 * ratio(c[1], c[0]), 100 * ratio(c[1], c[2]));
        }
        printf("\n");
    }
}

static json_t *json_engine(const plan_engine_result *r, const struct opts *o)
{
    json_t *preds = json_object();
    for (int k = 0; k < STORE_N_PREDICTORS; k++) {
        json_t *pl = json_array();
        for (int l = 0; l < r->n_layers; l++) {
            const uint64_t *c = plan_engine_pred(r, k, l);
            json_array_append_new(pl, json_pack("{s:f, s:f, s:I, s:I, s:I}", "precision",
                                                ratio(c[1], c[0]), "recall", ratio(c[1], c[2]),
                                                "predicted", (json_int_t)c[0], "correct",
                                                (json_int_t)c[1], "actual", (json_int_t)c[2]));
        }
        json_object_set_new(preds, store_predictor_name(k), pl);
    }
    const store_stats *st = &r->st;
    return json_pack("{s:s, s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "text",
                     o->text, "tokens", r->n_tokens, "seconds", r->seconds, "share",
                     o->text_share, "capacity",
                     (json_int_t)st->capacity, "requests", (json_int_t)st->requests, "hits",
                     (json_int_t)st->hits, "misses", (json_int_t)st->misses, "prefetch_issued",
                     (json_int_t)st->prefetch_issued, "prefetch_hits",
                     (json_int_t)st->prefetch_hits, "prefetch_wasted",
                     (json_int_t)st->prefetch_wasted, "bytes_read", (json_int_t)st->bytes_read,
                     "predictors_per_layer", preds);
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
        const replay_result *d = &r->def;
        json_object_set_new(
            row, "default",
            json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "hit_rate", replay_hit_rate(d),
                      "gap_closed", plan_gap_closed(r), "demand_reads_per_token",
                      plan_per_token(d->misses, d), "prefetch_reads_per_token",
                      plan_per_token(d->prefetches, d), "prefetch_hits_per_token",
                      plan_per_token(d->prefetch_hits, d), "prefetch_wasted_per_token",
                      plan_per_token(d->prefetch_wasted, d), "lru_reads_per_token",
                      (1 - r->hit[POLICY_LRU]) * plan_per_token(d->accesses, d)));
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
    for (int k = 0; k < XPRED_COUNT && s->pred.kinds; k++) {
        if (k == XPRED_HINT)
            continue;
        replay_pred t = {0};
        json_t *pl = json_array();
        for (int l = 0; l < s->pred.n_layers; l++) {
            const replay_pred *c = &s->pred.kinds[(size_t)k * s->pred.n_layers + l];
            t.predicted += c->predicted;
            t.correct += c->correct;
            t.actual += c->actual;
            json_array_append_new(pl, json_pred(c));
        }
        json_t *o = json_pred(&t);
        json_object_set_new(o, "per_layer", pl);
        json_object_set_new(preds, xpred_kind_name((xpred_kind)k), o);
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
                     "predictors", preds, "default_predictor", replay_predictor_name(PREDICT_AUTO),
                     "not_replayable",
                     "layer L+1's router applied to layer L's hidden state");
}

void plan_print_json(const struct plan_report *r)
{
    const plan_machine *m = r->m;
    const plan_model *md = r->md;
    const char *model_path = r->o->model;
    const struct study *st = r->st;
    int n_st = r->n_st;
    policy_kind pol = r->pol;
    double ram = r->ram;
    const plan_engine_result *eng = r->eng, *eng0 = r->eng0;
    const struct opts *o = r->o;
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
    if (eng) {
        json_object_set_new(root, "engine", json_engine(eng, o));
        json_object_set_new(root, "engine_no_hints", json_engine(eng0, o));
    }
    json_object_set_new(root, "default_policy", json_string(policy_kind_name(POLICY_DEFAULT)));
    json_object_set_new(root, "estimate_model",
                        json_string("t_token = demand_bytes/ssd_bw + max((token_resident + "
                                    "active_expert_bytes)/mem_bw, prefetch_bytes/ssd_bw)"));
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(root);
}

void plan_print_text(const struct plan_report *r)
{
    print_machine(r->m, r->o);
    if (r->md)
        print_model(r->md, r->o->model);
    for (int i = 0; i < r->n_st; i++) {
        const struct study *s = &r->st[i];
        printf("\ntrace     %s: %d layers x %d experts, top-%d; %zu sequences, %zu tokens\n"
               "          %s\n",
               s->label, s->t.n_layers, s->t.n_experts, s->t.top_k, s->t.n_seqs,
               trace_n_tokens(&s->t), s->mapping);
        print_hits(s, r->moe ? r->md : NULL);
        print_predictors(s);
        if (r->moe) {
            print_estimate(s, r->pol, r->md);
            print_summary(s, r->pol, r->md, r->ram, r->reserve, r->fit_bytes);
        }
    }
    if (r->eng)
        print_engine(r->eng, r->eng0, r->o);
    printf("\ndefault cache policy: %s with read-ahead by the auto predictor (best on the real "
           "traces;\n--cache-policy to change the estimate's)\n",
           policy_kind_name(POLICY_DEFAULT));
}
