/*
 * sampler.h — choosing the next token from a row of logits, and knowing when
 * to stop.
 *
 * A sampler turns the model's logits for one position into one token id. It
 * applies, in llama.cpp's default order:
 *
 *   1. penalties    over the last penalty_last_n accepted tokens, each
 *                   distinct token t seen c(t) > 0 times there:
 *                     repetition (llama.cpp): logit /= r if logit > 0,
 *                                             logit *= r otherwise;
 *                     frequency and presence (OpenAI):
 *                        logit -= c(t) * frequency + presence
 *   2. top-k        keep the k highest logits
 *   3. top-p        keep the smallest set of most likely tokens whose
 *                   probability (softmax of what top-k kept) sums to >= p
 *   4. min-p        keep tokens whose probability is >= min_p times the
 *                   most likely token's
 *   5. temperature  divide the remaining logits by T, softmax, and draw
 *
 * temperature <= 0 (or top_k == 1) is greedy decoding: the argmax after
 * penalties, with ties going to the lowest id, and no random draw.
 *
 * Cost. Nothing sorts the vocabulary: penalties touch only the tokens in
 * the window, top-k is a quickselect, min-p a linear filter, and top-p a
 * quickselect steered by probability mass, which finds the nucleus without
 * ordering it (only a few dozen tokens at its edge get sorted). One step is
 * expected O(n_vocab) whatever k and p are.
 *
 * Determinism. Each sampler owns its random state (xoshiro256**, seeded by
 * splitmix64 from params.seed): the same seed, parameters, logits and
 * accepted tokens give the same tokens, on every machine. Candidates are
 * ordered by (logit descending, id ascending), so ties never depend on how a
 * selection happened to partition them.
 *
 * Stop strings are matched on the text, not on tokens, by a separate
 * stop_matcher (below): a stop string may span token boundaries, and the
 * matcher holds back exactly the text that could still turn out to be the
 * start of one.
 */
#ifndef SW_SAMPLER_H
#define SW_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* params.seed value asking for a seed from the operating system. */
#define SAMPLER_SEED_RANDOM UINT64_MAX

typedef struct sampler_params {
    float temperature;       /* <= 0: greedy */
    int top_k;               /* <= 0: off */
    float top_p;             /* in [0, 1]; 1: off */
    float min_p;             /* in [0, 1]; 0: off */
    float repeat_penalty;    /* > 0; 1: off */
    float presence_penalty;  /* 0: off (OpenAI allows -2..2) */
    float frequency_penalty; /* 0: off */
    int penalty_last_n;      /* window of accepted tokens: 0 none, -1 all */
    uint64_t seed;           /* SAMPLER_SEED_RANDOM: from the OS */
    int max_tokens;          /* generated tokens before sampler_done(); <= 0: no limit */
} sampler_params;

typedef struct sampler sampler;

/* llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * no penalties (window 64), random seed, no token limit. */
sampler_params sampler_default_params(void);

/* Checks params (SW_EINVAL naming the bad field) and allocates a sampler for
 * a vocabulary of n_vocab tokens. */
int sampler_create(const sampler_params *p, int n_vocab, sampler **out, sw_err *err);
void sampler_free(sampler *s);

/* The seed actually in use (the drawn one for SAMPLER_SEED_RANDOM). */
uint64_t sampler_seed(const sampler *s);

/* Picks a token from logits[n_vocab]. The logits are modified in place
 * (penalties applied) and may hold -INFINITY for banned tokens; NaN counts
 * as -INFINITY. If no token has a finite logit, returns the argmax rule's
 * answer over the raw values (token 0 if all are -INFINITY or NaN). */
int sampler_sample(sampler *s, float *logits);

/* Steps 1 to 4 without the draw: the ids sampler_sample could return for
 * these logits, in no particular order, into ids[n_vocab]; returns their
 * count (1 when decoding is greedy). Consumes no randomness. */
int sampler_candidates(sampler *s, float *logits, int *ids);

/* Step 1 alone: applies the penalties to logits[n_vocab] in place. */
void sampler_apply_penalties(const sampler *s, float *logits);

/* Records a generated token: it enters the penalty window and counts
 * towards max_tokens. Ids outside [0, n_vocab) are ignored. */
void sampler_accept(sampler *s, int id);
/* Records prompt tokens in the penalty window without counting them as
 * generated (llama.cpp's server does this; OpenAI's penalties count only
 * generated tokens, so an OpenAI front end does not call it). */
void sampler_accept_prompt(sampler *s, const int *ids, int n);
/* Forgets the window and the generated count (the random state continues). */
void sampler_reset(sampler *s);

/* Tokens accepted with sampler_accept since creation or reset. */
int sampler_n_generated(const sampler *s);
/* True once max_tokens tokens have been generated. */
bool sampler_done(const sampler *s);

/* --- stop strings -------------------------------------------------------- */

/*
 * Feed the generated text piece by piece as the detokenizer yields it; each
 * call hands back the text that is safe to show now. Text is held back while
 * it could be the beginning of a stop string, and released as soon as it
 * cannot. Held text is also never cut inside a UTF-8 sequence, so what is
 * emitted ends on a character boundary even when a piece ends mid-character.
 *
 * The first stop string to be completed in the text wins (the one ending
 * earliest; of those ending at the same byte, the longest), so the result
 * depends only on the text, never on where the pieces were cut. On a match
 * the emitted text ends just before the stop string; the stop string and
 * anything after it are dropped.
 */
typedef struct stop_matcher stop_matcher;

/* Copies the n stop strings; empty strings are ignored. */
int stop_matcher_create(const char *const *stops, int n, stop_matcher **out, sw_err *err);
void stop_matcher_free(stop_matcher *m);

/* Appends text[len]. *emit, *emit_len: text to show now (valid until the
 * next call on m). Returns 1 once a stop string has matched (and on every
 * later call, emitting nothing), 0 otherwise, SW_ENOMEM on allocation
 * failure. */
int stop_matcher_feed(stop_matcher *m, const char *text, size_t len, const char **emit,
                      size_t *emit_len, sw_err *err);
/* End of generation without a stop string (EOS, max tokens): releases the
 * held-back text, whatever it is. */
void stop_matcher_flush(stop_matcher *m, const char **emit, size_t *emit_len);
/* The stop string that matched, or NULL. */
const char *stop_matcher_matched(const stop_matcher *m);
/* Bytes currently held back. */
size_t stop_matcher_pending(const stop_matcher *m);

#endif
