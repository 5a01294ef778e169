/*
 * plan_cli.h — `spillway plan`'s measurements (cmd_plan.c) and their
 * printing as text or JSON (plan_print.c).
 */
#ifndef SW_CLI_PLAN_CLI_H
#define SW_CLI_PLAN_CLI_H

#include <limits.h>

#include "cli/plan_engine.h"
#include "store/plan.h"
#include "store/replay.h"

#define MAX_TRACES 16
#define N_FRACS 9               /* shares of all experts replayed as budgets */
#define MAX_ROWS (N_FRACS + 1)  /* the shares, and what fits */

struct opts {
    const char *model;
    const char *traces[MAX_TRACES];
    int n_traces;
    long long ram;
    double ssd_bw;
    int policy; /* -1: choose */
    int json;
    const char *text;   /* --text */
    double text_share;
    int text_tokens;
};

/* One budget, replayed. */
struct row {
    double frac;            /* of all experts */
    size_t entries;         /* trace entries */
    int fits;               /* 1: within the RAM planned for; 2: the largest that fits */
    double hit[POLICY_KIND_COUNT], opt;
    replay_result def;      /* the store's default: POLICY_DEFAULT + auto read-ahead */
    replay_result pf;       /* the estimate's policy with the default read-ahead */
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
    double mean_hit[POLICY_KIND_COUNT], mean_def;
    policy_kind best;                /* highest mean hit rate without read-ahead */
    replay_result pred;              /* the default at a quarter: every predictor's record */
    char mapping[200];
};

/* Everything a report shows. */
struct plan_report {
    const struct opts *o;
    const plan_machine *m;
    const plan_model *md;          /* NULL without a model */
    int moe;                       /* a MoE model was given */
    const struct study *st;
    int n_st;
    policy_kind pol;               /* the estimate's policy */
    double ram, reserve, fit_bytes;
    const plan_engine_result *eng, *eng0; /* --text: with and without hints; else NULL */
};

void plan_print_text(const struct plan_report *r);
void plan_print_json(const struct plan_report *r);

/* Share of the gap between LRU and the optimum the default closes. */
double plan_gap_closed(const struct row *r);
/* n per token of r's trace. */
double plan_per_token(uint64_t n, const replay_result *r);
void plan_human_bytes(double n, char *buf, size_t len);

#endif
