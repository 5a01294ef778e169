/*
 * engine_int.h — the engine's insides (spillway.h is the outside): jobs,
 * sessions, the queue, and how the owner thread's step is cut.
 *
 * Locks, in the order they may nest:
 *   engine.mu   the queue, the state, the session table's bookkeeping that
 *               other threads read (/slots), the statistics
 *   job.mu      one job's output buffer and its done flag
 * The engine thread holds engine.mu only to admit jobs and to publish
 * statistics, never across a forward call; HTTP threads hold it only for
 * queue operations and snapshots. job.mu is held for a memcpy at most.
 *
 * Files: engine.c (opening, loading, the queue, jobs, text helpers),
 * engine_sched.c (the owner thread's loop: admission, the step, sampling,
 * finishing), engine_session.c (choosing, evicting and accounting
 * sessions).
 */
#ifndef SW_ENGINE_INT_H
#define SW_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/generate.h"
#include "engine/grammar.h"
#include "engine/sampler.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "spillway.h"
#include "text/tokenizer.h"

typedef struct session session;

struct sw_job {
    /* Set at submit, then read-only. */
    sw_engine *e;
    int32_t *prompt;
    int n_prompt;
    sw_job_params p;           /* its pointers point into the copies below */
    char **stops;
    char **grammar;
    char *session_key;
    double t_submit;
    sw_job *next;              /* queue link (engine.mu) */

    atomic_int cancel;

    /* The engine thread's, made at submit (so bad parameters fail there). */
    sampler *smp;
    stop_matcher *sm;
    tok_stream *detok;
    grammar *gram;             /* NULL: unconstrained */

    pthread_mutex_t mu;        /* everything below */
    pthread_cond_t cv;
    char *text;                /* produced, not yet read */
    size_t text_len, text_cap, text_read;
    bool done;                 /* the engine is finished with it */
    int refs;                  /* engine + caller */
    sw_job_stats stats;        /* final once done */
    int32_t *gen;              /* generated ids */
    int n_gen, gen_cap;
};

enum { SESS_IDLE = 0, SESS_PREFILL, SESS_DECODE };

/* One sequence's share of an engine step (engine_sched.c). */
typedef struct step_seq {
    session *s;
    kv_cache *kv;
    const int32_t *tokens;
    int n;
    float *logits;   /* NULL: no logits wanted (a prompt chunk that is not the last) */
    int rc;
    sw_err err;
} step_seq;

/* One conversation's cache, and the running state of the job on it. */
struct session {
    int id;
    kv_cache *kv;              /* NULL: never made or evicted */
    int32_t *toks;             /* the tokens in kv, in order */
    int n_toks, toks_cap;
    int hw;                    /* most positions ever held (memory touched) */
    char key[64];              /* session key, "" for none */
    double last_used;

    /* While a job runs (job != NULL). */
    sw_job *job;
    int phase;                 /* SESS_PREFILL, SESS_DECODE */
    int n_fed;                 /* prompt tokens in kv */
    int32_t next_tok;          /* SESS_DECODE: the sampled token to feed */
    int n_ctx;                 /* the job's context limit */
    int n_gen;                 /* tokens sampled (published under mu) */
    int n_cached;              /* prompt tokens reused */
    bool prepared;             /* kv made and truncated for the job */
    float *logits;             /* [n_vocab] */
    double t_start, t_first, t_last;
};

struct sw_engine {
    sw_engine_opts opts;       /* strings below are owned copies */
    char *path, *name, *template_src;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* work for the engine thread */
    pthread_cond_t cv_state;   /* state changes, drained jobs */
    _Atomic int state;         /* sw_engine_state */
    bool stopping;             /* close: leave the loop */
    bool draining;             /* no new jobs */
    char error[512];

    sw_job *q_head, *q_tail;   /* waiting jobs, FIFO */
    int n_queued;
    int n_active;

    /* Loaded; read-only once READY except where noted. */
    generator *g;
    model *m;
    const tokenizer *tok;
    model_state *ms;
    sw_pool *pool;
    int n_vocab;
    int n_ctx;
    size_t kv_bpp;             /* bytes per KV position */
    quant_type kv_qt;
    grammar_vocab gv;
    const char **gv_piece;
    uint32_t *gv_len;
    uint8_t *gv_kind;
    sw_model_desc desc;
    char *desc_quant;
    const gguf_ctx *gguf;

    session *sess;             /* [n_sess]; bookkeeping read under mu */
    int n_sess;
    step_seq *seqs;            /* [n_sess]: the step being run */
    model_seq *mseqs;          /* [n_sess]: the same, as the one forward call sees it */
    size_t kv_used;            /* sum of hw * kv_bpp (engine thread writes under mu) */

    sw_engine_stats stats;     /* under mu */

    store_opts store_o;        /* opts.store, copied (policy below) */
    char *store_policy;
    sw_store_stats store_snap; /* under mu; the engine thread refreshes it */
    double store_snap_t;
};

double engine_now(void);

/* engine.c */
void job_append_text(sw_job *j, const char *text, size_t len);
void job_append_token(sw_job *j, int32_t id);
/* Marks the job done with stats and drops the engine's reference. */
void job_finish(sw_job *j, const sw_job_stats *st);
void job_unref(sw_job *j);
void hist_observe(sw_hist *h, double v);

int engine_load(sw_engine *e, sw_err *err);

/* Refreshes store_snap (engine thread; takes mu). */
void engine_snapshot_store(sw_engine *e);

/* engine_sched.c */
void *engine_thread_main(void *arg);

/* engine_session.c */
int session_pick(sw_engine *e, const sw_job *j, int *reuse);
/* lcp shared tokens make j a continuation of s's conversation. */
bool session_continues(const session *s, int lcp, const sw_job *j);
int session_prepare(sw_engine *e, session *s, int reuse, int n_need, sw_err *err);
int session_push_tokens(session *s, const int32_t *toks, int n);
void session_account(sw_engine *e, session *s);
void session_free_all(sw_engine *e);

#endif
