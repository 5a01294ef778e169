/*
 * spillway.h — the engine as the front ends see it: load a model, submit
 * generation jobs, read their text as it is produced.
 *
 * This is the only engine header server/ and cli/ code that serves
 * requests includes (DESIGN.md): nothing here names tensors, KV layouts or
 * sampler internals, so the engine can change how it computes without the
 * HTTP code noticing.
 *
 * Threads. sw_engine_open() starts one owner thread that loads the model and
 * then runs every forward pass; it owns the model, the KV caches and the
 * sessions. Every other function here may be called from any thread at any
 * time (they take the engine's locks or read immutable state), except
 * sw_engine_close(), which must not race with the others.
 *
 *   loading   sw_engine_state() is SW_ENGINE_LOADING until the model is in;
 *             then READY, or FAILED with sw_engine_error() saying why.
 *             Everything that needs the model answers SW_EBUSY meanwhile.
 *
 *   jobs      sw_engine_submit() queues a job (prompt ids, sampling, stops,
 *             an optional grammar, a session key) and returns at once. The
 *             caller reads its text with sw_job_read() — from any one
 *             thread, blocking at most the time it asks — and finally calls
 *             sw_job_release(). Releasing a job that is still running
 *             cancels it; the engine frees its slot at the next step.
 *
 *   scheduling  up to n_parallel jobs run at once; every engine step
 *             advances all of them (a chunk of prompt, or one generated
 *             token, each) in one forward call that reads each weight once
 *             for all, so a new job joins at the next step and a finished
 *             one leaves (continuous batching). Beyond n_parallel, up to n_queue jobs wait in FIFO
 *             order; one more is refused with SW_EBUSY.
 *
 *   sessions  each running job is bound to a session: a KV cache and the
 *             tokens in it. A job lands on the session with its session key
 *             if there is one and it is idle, else on the idle session whose
 *             cached tokens share the longest prefix with its prompt, and
 *             re-runs only the tokens after the shared prefix
 *             (sw_job_stats.n_cached). Idle sessions are kept for later
 *             turns and evicted least recently used first when a new one is
 *             needed or their memory is (kv_budget).
 *
 * Output text is valid UTF-8, never cut inside a character; stop strings and
 * end-of-generation tokens never appear in it. Greedy decoding (temperature
 * 0) gives the same text whatever else is running: each session's
 * computation depends only on its own tokens.
 */
#ifndef SPILLWAY_H
#define SPILLWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"

#define SPILLWAY_VERSION "0.1.0"

typedef struct sw_engine sw_engine;
typedef struct sw_job sw_job;
struct store_opts; /* store/store.h: where the weights live (opaque here) */

/* --- the engine ------------------------------------------------------------ */

typedef enum sw_kv_type { SW_KV_F32 = 0, SW_KV_F16, SW_KV_Q8_0 } sw_kv_type;

typedef struct sw_engine_opts {
    const char *model_path;    /* a GGUF file (names are resolved by the caller) */
    const char *model_name;    /* what the model is called in listings */
    const char *template_src;  /* chat template overriding the model's, or NULL */
    int n_threads;             /* <= 0: every CPU this process may use */
    int n_batch;               /* most tokens per forward call; 0: 512 */
    int n_ctx;                 /* positions per session; 0: the model's, capped by memory */
    sw_kv_type kv_type;
    int n_parallel;            /* jobs running together; 0: 1 */
    int n_queue;               /* jobs waiting beyond those; < 0: 0; default caller's */
    int n_sessions;            /* sessions kept (>= n_parallel); 0: 4 x n_parallel, at least 8 */
    size_t kv_budget;          /* bytes all sessions' KV positions may use; 0: a quarter
                                  of the memory available at start */
    int prefill_chunk;         /* prompt tokens per session per step while others
                                  decode; 0: 128 */
    const struct store_opts *store; /* weight store (copied); NULL: the file mapped */
} sw_engine_opts;

typedef enum sw_engine_state {
    SW_ENGINE_LOADING = 0,
    SW_ENGINE_READY,
    SW_ENGINE_FAILED,
    SW_ENGINE_STOPPING, /* sw_engine_drain was called: no new jobs */
} sw_engine_state;

/* Starts the owner thread, which loads the model; returns at once. The
 * strings in opts are copied. */
int sw_engine_open(const sw_engine_opts *opts, sw_engine **out, sw_err *err);
/* Cancels whatever still runs, stops the thread, frees everything. */
void sw_engine_close(sw_engine *e);

sw_engine_state sw_engine_get_state(const sw_engine *e);
/* Why loading failed ("" otherwise). */
const char *sw_engine_error(const sw_engine *e);
/* Blocks until the engine has left LOADING or timeout_ms passed; returns the
 * state. */
sw_engine_state sw_engine_wait_loaded(sw_engine *e, int timeout_ms);
/* Refuses new jobs (SW_EBUSY) and waits up to timeout_ms for the running
 * and queued ones to end; then cancels those left (and waits a little for
 * them to stop). Returns how many had to be cancelled. */
int sw_engine_drain(sw_engine *e, int timeout_ms);

/* --- the model ------------------------------------------------------------- */

/* How a chat template writes tool calls, guessed from its text; decides the
 * form a forced tool call takes (see the server's toolcall.h). */
typedef enum sw_tool_style {
    SW_TOOLS_NONE = 0,  /* the template ignores tools */
    SW_TOOLS_HERMES,    /* <tool_call>{"name":..., "arguments":...}</tool_call> (Qwen, Hermes) */
    SW_TOOLS_LLAMA3,    /* {"name":..., "parameters":...} (Llama 3.x) */
    SW_TOOLS_MISTRAL,   /* [TOOL_CALLS][{"name":..., "arguments":...}] */
    SW_TOOLS_GENERIC,   /* the template shows tools; JSON calls as Hermes writes them */
} sw_tool_style;

/* The loaded model; valid (and immutable) once the engine is READY. */
typedef struct sw_model_desc {
    const char *name;           /* opts.model_name, else the file's base name */
    const char *path;
    const char *arch;           /* general.architecture */
    const char *quant;          /* "Q8_0", "Q4_K_M", ... or "unknown" */
    uint64_t n_params;
    uint64_t file_size;
    int n_ctx;                  /* positions per session, as served */
    int n_ctx_train;
    int n_vocab, n_embd, n_layer, n_expert, n_expert_used;
    int n_parallel, n_queue, n_sessions;
    size_t kv_budget;
    size_t kv_bytes_per_token;
    const char *kv_type;        /* "f32", "f16", "q8_0" */
    const char *template_src;   /* the chat template in use */
    bool template_fallback;     /* ChatML, because the model has none */
    bool template_override;     /* opts.template_src */
    bool model_has_template;    /* the GGUF carries tokenizer.chat_template */
    sw_tool_style tool_style;
    double load_s;
    int64_t loaded_at;          /* Unix seconds */
    int64_t file_mtime;         /* Unix seconds */
} sw_model_desc;

/* NULL until READY. */
const sw_model_desc *sw_engine_model(const sw_engine *e);

/* GGUF metadata, for listings (Ollama's /api/show model_info). */
typedef enum sw_meta_kind {
    SW_META_INT, SW_META_UINT, SW_META_FLOAT, SW_META_BOOL, SW_META_STRING, SW_META_ARRAY
} sw_meta_kind;

typedef struct sw_meta {
    const char *key;
    sw_meta_kind kind;
    sw_meta_kind elem;          /* SW_META_ARRAY: the elements' kind */
    uint64_t n;                 /* SW_META_ARRAY: element count; STRING: bytes */
    int64_t i;
    uint64_t u;
    double f;
    bool b;
    const char *s;              /* SW_META_STRING (n bytes, NUL after) */
} sw_meta;

int64_t sw_engine_meta_count(const sw_engine *e);
/* Key i (0-based); elem < 0 describes the value itself, elem >= 0 the
 * array's element elem (arrays of arrays read as empty). 0 or SW_ENOTFOUND. */
int sw_engine_meta_at(const sw_engine *e, int64_t i, int64_t elem, sw_meta *out);

/* --- text ------------------------------------------------------------------ */

/* Renders a conversation (JSON array of messages, as Hugging Face's
 * apply_chat_template takes them) and tools (array or NULL) through the
 * chat template in use, with add_generation_prompt. *out is malloc'd. */
int sw_engine_render_chat(sw_engine *e, const json_t *messages, const json_t *tools,
                          bool add_generation_prompt, char **out, sw_err *err);

/* A prompt's ids. chat: text the template rendered (its control tokens
 * parsed, BOS added unless the template wrote it); else plain text (BOS
 * added, no special tokens). *ids malloc'd; *n >= 1. */
int sw_engine_encode_prompt(sw_engine *e, const char *text, bool chat, int32_t **ids, int *n,
                            sw_err *err);
/* Tokenizer access for /tokenize: explicit BOS and special-token parsing. */
int sw_engine_tokenize(sw_engine *e, const char *text, size_t len, bool add_bos,
                       bool parse_special, int32_t **ids, int *n, sw_err *err);
/* ids to text (malloc'd, valid UTF-8); SW_EINVAL names an id out of range. */
int sw_engine_detokenize(sw_engine *e, const int32_t *ids, int n, char **out, size_t *len,
                         sw_err *err);
/* The bytes one token stands for (not NUL-terminated), or NULL. */
const char *sw_engine_token_piece(sw_engine *e, int32_t id, size_t *len);

/* --- jobs ------------------------------------------------------------------ */

/* seed asking for a random one */
#define SW_SEED_RANDOM UINT64_MAX

typedef struct sw_sampling {
    float temperature;       /* <= 0: greedy */
    int top_k;               /* <= 0: off */
    float top_p;             /* 1: off */
    float min_p;             /* 0: off */
    float repeat_penalty;    /* 1: off */
    int repeat_last_n;       /* window: 0 none, -1 everything */
    float presence_penalty;  /* OpenAI's, 0: off */
    float frequency_penalty; /* OpenAI's, 0: off */
    uint64_t seed;           /* SW_SEED_RANDOM: drawn */
} sw_sampling;

/* llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05). */
sw_sampling sw_sampling_default(void);

/*
 * A grammar is a set of alternatives, each a literal text in which every
 * SW_GRAMMAR_OBJECT byte stands for one JSON object (any valid object,
 * nested values allowed). Generation is constrained to the tokens that
 * keep the output a prefix of some alternative — a mask over the whole
 * vocabulary before sampling — and ends (SW_FINISH_STOP) as soon as an
 * alternative is complete. {"\x01"} is OpenAI's json_object mode.
 */
#define SW_GRAMMAR_OBJECT "\x01"
#define SW_GRAMMAR_MAX_ALTS 64

typedef struct sw_job_params {
    const int32_t *prompt;      /* copied */
    int n_prompt;
    sw_sampling sampling;
    int max_tokens;             /* <= 0: until the end of the text or a full context */
    int n_ctx;                  /* 0: the engine's; else a lower limit for this job */
    const char *const *stops;   /* copied */
    int n_stops;
    const char *const *grammar; /* alternatives (copied), or NULL */
    int n_grammar;
    const char *session;        /* affinity key (copied), or NULL */
    bool penalize_prompt;       /* the prompt enters the repeat-penalty window */
    bool ignore_eos;
} sw_job_params;

/* Queues a job. SW_EINVAL: bad parameters; SW_ERANGE: the prompt does not
 * fit the context (message says both numbers); SW_EBUSY: loading, the queue
 * is full or the engine is draining (message says which). */
int sw_engine_submit(sw_engine *e, const sw_job_params *p, sw_job **out, sw_err *err);

/* Waits up to timeout_ms (0: no wait; < 0: forever) for new text or the
 * end, then copies at most cap (>= 4) bytes of new text into buf — whole
 * UTF-8 characters only — and returns how many; *done is true once the job
 * has ended and all its text was read. */
size_t sw_job_read(sw_job *j, int timeout_ms, char *buf, size_t cap, bool *done);
/* Asks the engine to stop the job at its next step (idempotent). */
void sw_job_cancel(sw_job *j);
/* Gives up the caller's reference (cancelling the job if it still runs). */
void sw_job_release(sw_job *j);

typedef enum sw_finish {
    SW_FINISH_NONE = 0,
    SW_FINISH_EOG,      /* the model ended its text */
    SW_FINISH_STOP,     /* a stop string matched, or the grammar completed */
    SW_FINISH_LENGTH,   /* max_tokens generated */
    SW_FINISH_CONTEXT,  /* the context is full */
    SW_FINISH_CANCEL,   /* cancelled or released */
    SW_FINISH_ERROR,    /* see sw_job_stats.error */
} sw_finish;

const char *sw_finish_name(sw_finish f); /* "eog", "stop", "length", ... */

typedef struct sw_job_stats {
    sw_finish finish;
    int n_prompt;          /* prompt tokens */
    int n_cached;          /* of them, reused from the session's cache */
    int n_gen;             /* tokens sampled (a final end-of-text token included) */
    double queue_s;        /* submit to start */
    double prompt_s;       /* start to the first token */
    double gen_s;          /* first token to the last */
    double total_s;        /* submit to end */
    uint64_t seed;
    int slot;              /* session it ran on, -1 if it never started */
    bool grammar_done;     /* the grammar completed */
    char stop[64];         /* the matched stop string (cut to fit) */
    char error[256];
} sw_job_stats;

/* Valid once sw_job_read reported done. */
void sw_job_get_stats(sw_job *j, sw_job_stats *out);
/* The prompt and generated ids (malloc'd copy) once done, for Ollama's
 * "context". */
int sw_job_tokens(sw_job *j, int32_t **ids, int *n);

/* --- observability --------------------------------------------------------- */

/* Histogram upper bounds in seconds (Prometheus le, +Inf implied). */
#define SW_HIST_N 16
extern const double sw_hist_bounds[SW_HIST_N];

typedef struct sw_hist {
    uint64_t counts[SW_HIST_N + 1]; /* cumulative is the reader's business */
    double sum;
    uint64_t count;
} sw_hist;

typedef struct sw_engine_stats {
    sw_engine_state state;
    int n_active, n_queued, n_sessions_cached, n_parallel, n_queue_max;
    uint64_t kv_bytes_used, kv_bytes_budget, kv_tokens;
    uint64_t evictions;
    uint64_t jobs_started, jobs_finished, jobs_cancelled, jobs_failed, jobs_rejected;
    uint64_t prompt_tokens, prompt_tokens_cached, gen_tokens;
    uint64_t steps, forward_calls; /* one forward call per step runs every active job */
    uint64_t forward_seqs;  /* jobs advanced, summed over forward calls (/ calls: mean batch) */
    uint64_t forward_tokens;/* tokens computed (prompt chunks and generated tokens) */
    double busy_s;          /* time in engine steps */
    sw_hist ttft, itl, queue_wait;
} sw_engine_stats;

void sw_engine_get_stats(sw_engine *e, sw_engine_stats *out);

typedef struct sw_slot_info {
    int id;
    const char *state;   /* "idle", "prefill", "decode", "empty" (no cache) */
    char session[64];
    int n_ctx;
    int n_cached;        /* tokens in its KV cache */
    int n_prompt, n_prompt_done, n_gen;
    double idle_s;       /* since last used */
} sw_slot_info;

/* The weight store's counters, as the engine thread last read them (it
 * owns the store; it refreshes this at most every 250 ms while working and
 * whenever it goes idle). The cache fields mean something only when
 * streaming; unknown pressure readings are -1. */
typedef struct sw_store_stats {
    bool valid;             /* the model is loaded */
    const char *mode;       /* "mmap", "resident", "stream" */
    bool streaming;
    const char *policy, *reader, *budget_reason;
    int64_t resident_bytes; /* memory held by resident tensors (not mmap) */
    int64_t cache_budget, cache_bytes, slot_bytes;
    int64_t capacity, entries, total_entries;
    uint64_t requests, hits, misses, evictions;
    uint64_t prefetch_issued, prefetch_hits, prefetch_wasted;
    uint64_t reads, read_errors, bytes_read;
    double stall_s;
    int64_t mem_available;
    double psi_some_avg10;
} sw_store_stats;

void sw_engine_get_store_stats(sw_engine *e, sw_store_stats *out);

/* Fills up to cap slots; returns the engine's session count. */
int sw_engine_get_slots(sw_engine *e, sw_slot_info *out, int cap);

#endif
