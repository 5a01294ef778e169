/*
 * batch_step.c — what batching sessions saves in the forward pass itself,
 * without HTTP, sampling or scheduling around it.
 *
 *   batch_step MODEL [--seqs "1 4 16"] [--steps N] [--threads N] [--rounds N]
 *
 * For each count S of sequences: S KV caches, each prefilled with its own
 * 32-token prompt; then N decode steps of one token per sequence, run two
 * ways — S model_forward() calls per step (each sequence alone, as the
 * server did before batching) and one model_forward_multi() call for all
 * S — alternating rounds so that the machine's other load hits both alike.
 * Prints a markdown row per S: milliseconds per step (wall and this
 * process's CPU time, best round of each) and tokens/s from the wall time.
 * CPU time counts the pool's idle spinning too when --threads > 1; with one
 * thread it is the work done. Logits are compared: the two ways must agree
 * bit for bit, or the program fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "store/store.h"

#define PROMPT 32
#define MAX_SEQS 64

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct bench {
    model *m;
    model_state *s;
    sw_pool *pool;
    int V;
} bench;

/* S fresh caches with their prompts in; the step's tokens in tok. */
static int setup(bench *b, int S, kv_cache **kv, sw_err *err)
{
    for (int i = 0; i < S; i++) {
        kv_cache_opts ko = {.n_ctx = 1024};
        int32_t p[PROMPT];
        for (int t = 0; t < PROMPT; t++)
            p[t] = (int32_t)(3 + (i * 131 + t * 37) % (b->V - 3));
        int rc = kv_cache_new(b->m, &ko, &kv[i], err);
        if (rc || (rc = model_forward(b->m, b->s, kv[i], b->pool, p, PROMPT, NULL, 0, err)))
            return rc;
    }
    return 0;
}

/* steps decode steps for S sequences; multi: one call per step. Adds the
 * wall and CPU seconds to wall/cpu; the last step's logits in lg. */
static int run(bench *b, int S, int steps, int multi, float *lg, double *wall, double *cpu,
               sw_err *err)
{
    kv_cache *kv[MAX_SEQS] = {0};
    int rc = setup(b, S, kv, err);
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int k = 0; k < steps && !rc; k++) {
        int32_t tok[MAX_SEQS];
        model_seq q[MAX_SEQS];
        for (int i = 0; i < S; i++) {
            tok[i] = (int32_t)(3 + (i * 17 + k * 101) % (b->V - 3));
            q[i] = (model_seq){kv[i], &tok[i], 1, lg + (size_t)i * b->V, MODEL_LOGITS_LAST};
        }
        if (multi)
            rc = model_forward_multi(b->m, b->s, b->pool, q, S, err);
        else
            for (int i = 0; i < S && !rc; i++)
                rc = model_forward(b->m, b->s, kv[i], b->pool, q[i].tokens, 1, q[i].logits,
                                   MODEL_LOGITS_LAST, err);
    }
    *wall = clock_s(CLOCK_MONOTONIC) - w0;
    *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    for (int i = 0; i < S; i++)
        kv_cache_free(kv[i]);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *seqs = "1 4 16";
    int steps = 20, threads = 0, rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seqs") && i + 1 < argc)
            seqs = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: batch_step MODEL [--seqs LIST] [--steps N] [--threads N] "
                            "[--rounds N]\n");
            return 2;
        }
    }
    if (!path || steps < 1 || rounds < 1) {
        fprintf(stderr, "batch_step: a model and positive --steps / --rounds are needed\n");
        return 2;
    }
    sw_err err = {0};
    store *st = NULL;
    bench b = {0};
    if (store_open_opts(path, NULL, &st, &err) || model_load(st, NULL, &b.m, &err) ||
        model_state_new(b.m, NULL, &b.s, &err) || sw_pool_create(threads, &b.pool, &err)) {
        fprintf(stderr, "batch_step: %s\n", err.msg);
        return 1;
    }
    model_info info;
    model_get_info(b.m, &info);
    b.V = info.n_vocab;
    printf("| sessions | alone: ms/step (wall) | CPU | tok/s | batched: ms/step (wall) | CPU | "
           "tok/s | speed-up |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const char *p = seqs; *p;) {
        char *end;
        int S = (int)strtol(p, &end, 10);
        if (end == p)
            break;
        p = end;
        if (S < 1 || S > MAX_SEQS) {
            fprintf(stderr, "batch_step: 1 to %d sequences\n", MAX_SEQS);
            return 2;
        }
        float *lg[2];
        double best_w[2] = {1e30, 1e30}, best_c[2] = {1e30, 1e30};
        for (int m = 0; m < 2; m++)
            lg[m] = malloc(sizeof(float) * (size_t)S * (size_t)b.V);
        for (int r = 0; r < rounds; r++)
            for (int m = 0; m < 2; m++) {
                double w, c;
                if (run(&b, S, steps, m, lg[m], &w, &c, &err)) {
                    fprintf(stderr, "batch_step: %s\n", err.msg);
                    return 1;
                }
                best_w[m] = w < best_w[m] ? w : best_w[m];
                best_c[m] = c < best_c[m] ? c : best_c[m];
            }
        if (memcmp(lg[0], lg[1], sizeof(float) * (size_t)S * (size_t)b.V)) {
            fprintf(stderr, "batch_step: batched logits differ from alone (%d sequences)\n", S);
            return 1;
        }
        printf("| %d | %.2f | %.2f | %.0f | %.2f | %.2f | %.0f | %.2fx |\n", S,
               best_w[0] * 1e3 / steps, best_c[0] * 1e3 / steps, S * steps / best_w[0],
               best_w[1] * 1e3 / steps, best_c[1] * 1e3 / steps, S * steps / best_w[1],
               best_w[0] / best_w[1]);
        fflush(stdout);
        free(lg[0]);
        free(lg[1]);
    }
    sw_pool_destroy(b.pool);
    model_state_free(b.s);
    model_free(b.m);
    store_close(st);
    return 0;
}
