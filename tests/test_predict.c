/* Tests for src/store/predict: what each predictor learns and guesses, how
 * guesses are scored, the hint's life, and the read-ahead width and room. */
#include "test.h"

#include "store/predict.h"

static xpred *make(int L, int E, int K)
{
    xpred *p = NULL;
    sw_err err = {0};
    xpred_opts o = {.n_layers = L, .n_experts = E, .top_k = K};
    if (xpred_create(&o, &p, &err))
        fprintf(stderr, "    xpred_create: %s\n", err.msg);
    return p;
}

static int has(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

TEST(predict_cooc_learns_the_next_layer)
{
    /* 2 layers of 16 experts, top-2: layer 1 always uses {e+1, e+2} (mod
     * 16) after layer 0 used {e, e+8}; layer 0 walks through the experts.
     * prev and freq cannot see it, co-occurrence can once e came round. */
    xpred *p = make(2, 16, 2);
    CHECK(p);
    int out[16];
    for (int tok = 0; tok < 64; tok++) {
        int e = tok * 3 % 8; /* consecutive tokens share nothing at layer 1 */
        int l0[2] = {e, e + 8}, l1[2] = {(e + 1) % 16, (e + 2) % 16};
        xpred_predict(p, XPRED_AUTO, 0, 2, out);
        xpred_observe(p, 0, l0, 2);
        int n = xpred_predict(p, XPRED_COOC, 1, 2, out);
        if (tok >= 8) { /* every e seen once */
            CHECK_EQ(n, 2);
            CHECK(has(out, n, l1[0]) && has(out, n, l1[1]));
        }
        xpred_observe(p, 1, l1, 2);
    }
    xpred_count c = xpred_stats(p, XPRED_COOC, 1), v = xpred_stats(p, XPRED_PREV, 1);
    CHECK_EQ(c.actual, 64 * 2);
    CHECK(c.correct >= 56 * 2);           /* right from the second round on */
    CHECK(v.correct < c.correct / 4);     /* the previous token's are others */
    CHECK_EQ(xpred_stats(p, XPRED_COOC, -1).actual, c.actual + 64 * 2); /* a guess of none counts */
    /* no hint was given: the hint predictor has nothing to its name */
    CHECK_EQ(xpred_stats(p, XPRED_HINT, -1).predicted, 0);
    xpred_destroy(p);
}

TEST(predict_hint_ranks_first_and_serves_one_visit)
{
    xpred *p = make(2, 8, 2);
    CHECK(p);
    int a[2] = {0, 1}, b[2] = {2, 3}, out[8];
    for (int i = 0; i < 10; i++) { /* cooc: layer 1 follows {0,1} with {2,3} */
        xpred_observe(p, 0, a, 2);
        xpred_observe(p, 1, b, 2);
    }
    xpred_observe(p, 0, a, 2);
    int hint[2] = {6, 7};
    xpred_hint(p, 1, hint, 2);
    int n = xpred_predict(p, XPRED_AUTO, 1, 4, out);
    CHECK_EQ(n, 4);
    CHECK(has(out, 2, 6) && has(out, 2, 7)); /* the hint first */
    CHECK(has(out + 2, 2, 2) && has(out + 2, 2, 3));
    int used[2] = {3, 6};
    xpred_observe(p, 1, used, 2);
    xpred_count h = xpred_stats(p, XPRED_HINT, 1), au = xpred_stats(p, XPRED_AUTO, 1);
    CHECK_EQ(h.predicted, 2);
    CHECK_EQ(h.correct, 1);
    CHECK_EQ(au.predicted, 4);
    CHECK_EQ(au.correct, 2);
    /* used up: the next visit has no hint */
    xpred_observe(p, 0, a, 2);
    n = xpred_predict(p, XPRED_AUTO, 1, 2, out);
    CHECK(!has(out, n, 7));
    xpred_observe(p, 1, b, 2);
    CHECK_EQ(xpred_stats(p, XPRED_HINT, 1).predicted, 2);
    xpred_destroy(p);
}

TEST(predict_batches_teach_no_pairs)
{
    /* a batch's union of experts is not one token's choice: not learned as
     * pairs, and the step after it has nothing to pair with */
    xpred *p = make(2, 8, 2);
    CHECK(p);
    int all[6] = {0, 1, 2, 3, 4, 5}, one[2] = {6, 7}, out[8];
    xpred_observe(p, 0, all, 6);
    xpred_observe(p, 1, one, 2);
    CHECK_EQ(xpred_predict(p, XPRED_COOC, 1, 2, out), 0);
    xpred_observe(p, 0, one, 2);
    CHECK_EQ(xpred_predict(p, XPRED_COOC, 1, 2, out), 0); /* {6,7} at 0 never led anywhere */
    /* prev and freq do learn from batches */
    CHECK_EQ(xpred_predict(p, XPRED_PREV, 1, 2, out), 2);
    xpred_reset(p);
    CHECK_EQ(xpred_predict(p, XPRED_PREV, 1, 2, out), 0);
    CHECK_EQ(xpred_predict(p, XPRED_AUTO, 1, 2, out), 0);
    xpred_destroy(p);
}

TEST(predict_width_and_room)
{
    /* width: half a layer's share, at least 2k */
    CHECK_EQ(xpred_width(64, 4, 4), 8);    /* tinymoe, a quarter: share 16 */
    CHECK_EQ(xpred_width(128, 4, 4), 16);  /* a half: share 32 */
    CHECK_EQ(xpred_width(16, 4, 4), 8);
    CHECK_EQ(xpred_width(128, 32, 2), 4);  /* Mixtral, a half: share 4 */
    /* room: the share beyond a token's experts, capped by the width */
    CHECK_EQ(xpred_room(64, 4, 4, 8), 8);
    CHECK_EQ(xpred_room(40, 4, 4, 8), 6);
    CHECK_EQ(xpred_room(96, 32, 2, 4), 2);  /* share 3 < 2k: the next layer's k */
    CHECK_EQ(xpred_room(16, 32, 2, 4), 2);  /* less than a layer each: still k */
    CHECK_EQ(xpred_room(3, 32, 2, 4), 0);   /* not two layers' worth: none */
    CHECK_EQ(xpred_room(64, 4, 4, 0), 0);
    sw_err err = {0};
    xpred *p = NULL;
    CHECK_EQ(xpred_create(&(xpred_opts){.n_layers = 0, .n_experts = 8, .top_k = 2}, &p, &err),
             SW_EINVAL);
    CHECK(!p);
}
