/*
 * grammar.h — constrained sampling: only tokens that keep the output a
 * prefix of an allowed text may be sampled.
 *
 * The allowed texts are a set of alternatives, each a literal in which the
 * byte GRAMMAR_OBJECT (0x01) stands for one JSON object (RFC 8259: any
 * object, nested arrays, strings with escapes, numbers, literals). That is
 * enough for the three things the server needs:
 *
 *   {"\x01"}                                 response_format json_object,
 *                                            Ollama's format "json"
 *   {"<tool_call>\n{\"name\": \"f\", \"arguments\": \x01}\n</tool_call>"}
 *                                            a forced call of tool f
 *   one alternative per tool                 tool_choice "required"
 *
 * How. Each alternative keeps a cursor: an offset into its literal, and
 * while inside an object the state of a byte-at-a-time JSON recogniser (a
 * pushdown automaton whose stack is a 64-bit word: nesting is limited to 63
 * levels; strings must be valid UTF-8 with paired surrogate escapes, so
 * the output is JSON any strict parser takes). Feeding a byte either advances a cursor or kills it; a text is a
 * valid prefix while some cursor lives. grammar_mask() tries every token's
 * bytes against a copy of the cursors and sets the logits of the tokens
 * that would kill them all to -infinity, so the sampler's whole pipeline
 * (penalties, top-k, top-p, min-p, temperature) runs on the allowed tokens
 * only — the constrained distribution is exact, not rejection sampling.
 * A first-byte table computed once per step rejects most tokens without
 * walking them.
 *
 * Runs of whitespace inside JSON are limited to GRAMMAR_MAX_WS bytes so a
 * model cannot pad forever; control tokens and empty pieces never match;
 * end-of-generation tokens match only once an alternative is complete (the
 * engine stops there anyway).
 *
 * A grammar is owned by one job on the engine thread: no locking.
 */
#ifndef SW_GRAMMAR_H
#define SW_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GRAMMAR_OBJECT 0x01
#define GRAMMAR_MAX_WS 32
#define GRAMMAR_MAX_ALTS 64 /* = SW_GRAMMAR_MAX_ALTS */

/* What the mask needs to know about the vocabulary: each token's bytes and
 * whether it may appear in constrained text at all. Built once per model. */
typedef struct grammar_vocab {
    int n;                    /* tokens (rows of logits) */
    const char *const *piece; /* [n] bytes of each token */
    const uint32_t *len;      /* [n] their lengths */
    const uint8_t *kind;      /* [n] GRAMMAR_TOK_* */
} grammar_vocab;

enum {
    GRAMMAR_TOK_TEXT = 0, /* ordinary text */
    GRAMMAR_TOK_EOG = 1,  /* ends generation */
    GRAMMAR_TOK_NEVER = 2 /* control, unused, empty: never allowed */
};

typedef struct grammar grammar;

/* Copies the n alternatives (1 <= n <= GRAMMAR_MAX_ALTS). */
int grammar_new(const char *const *alts, int n, grammar **out, sw_err *err);
void grammar_free(grammar *g);

/* Sets logits[id] = -INFINITY for every token of v that cannot come next.
 * Returns how many tokens remain allowed (0: nothing can continue). */
int grammar_mask(grammar *g, const grammar_vocab *v, float *logits);
/* Advances over text[len] (a sampled token's bytes); false if that leaves
 * no alternative alive (the grammar is then dead). */
bool grammar_feed(grammar *g, const char *text, size_t len);
/* Some alternative has been completed exactly. */
bool grammar_complete(const grammar *g);

/* --- the JSON recogniser on its own (tests, the fuzz target) ------------- */

typedef struct json_prefix {
    uint64_t stack;   /* bit d: container at depth d+1 is an array */
    uint16_t val;     /* the \u escape's value so far */
    uint8_t state;
    uint8_t depth;
    uint8_t sub;      /* literal index, or \u hex digits left */
    uint8_t off;      /* offset in a literal */
    uint8_t ws;       /* consecutive whitespace */
    uint8_t key;      /* the string being read is an object key */
    uint8_t low_next; /* the escape being read must be a low surrogate */
    uint8_t u8n;      /* UTF-8 continuation bytes still due */
    uint8_t u8lo, u8hi; /* the range the next one must be in */
} json_prefix;

/* Starts a recogniser for one JSON object (leading whitespace allowed). */
void json_prefix_init(json_prefix *p);
/* Feeds one byte; false if the text is no longer a prefix of an object. */
bool json_prefix_byte(json_prefix *p, unsigned char c);
/* The object is complete (its closing brace was fed). */
bool json_prefix_done(const json_prefix *p);

#endif
