/*
 * tokenizer.h — text to token ids and back, exactly as the model family's
 * own tokenizer does it, from a GGUF file's tokenizer.ggml.* metadata.
 *
 * Two families of vocabularies are implemented:
 *
 *   "llama"  SentencePiece-style (Llama 2, Mistral, Mixtral, Phi-3, Gemma,
 *            the tiny fixture models): spaces become U+2581 "▁", a "▁" is
 *            prefixed to the text (tokenizer.ggml.add_space_prefix, default
 *            on), adjacent pieces merge by highest score, and anything the
 *            vocabulary cannot spell falls back to byte tokens <0xXX>.
 *   "gpt2"   byte-level BPE (Llama 3, Qwen 2/2.5/3, DeepSeek, GPT-2, ...):
 *            the text is split into words by the family's pre-tokenizer
 *            regexes (PCRE2, Unicode classes, JIT; chosen by
 *            tokenizer.ggml.pre), every byte of a word is mapped to a
 *            printable code point (the GPT-2 byte-to-unicode table), and the
 *            word's symbols merge by lowest merge rank.
 *
 * Special tokens. Control and unknown tokens (<|im_start|>, <s>, ...) are
 * recognised in text only with TOK_PARSE_SPECIAL, which a chat-template
 * renderer passes for its own markup and nobody passes for user content.
 * User-defined tokens (added vocabulary) are always matched first, as the
 * reference tokenizers do. Where several special tokens could match, the
 * leftmost, then longest, wins.
 *
 * Invariants: a loaded tokenizer is immutable, so one may be shared by any
 * number of threads; encoding keeps no state between calls and caches
 * nothing. Nothing points into the gguf_ctx after tok_load returns.
 * Encoding never fails on odd input: invalid UTF-8 is carried through as
 * bytes (byte tokens), so every byte sequence has an encoding. Text handed
 * out by the streaming detokenizer is always valid UTF-8.
 *
 * The parts: tok_load.c (vocabulary, special ids, attributes, lookup
 * tables), tok_pretok.c (pre-tokenizer regexes per family), tok_encode.c
 * (special-token partition, SentencePiece and BPE merging), tok_decode.c
 * (pieces and the streaming detokenizer), utf8.c (UTF-8 checks).
 */
#ifndef SW_TOKENIZER_H
#define SW_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "util/err.h"

typedef struct tokenizer tokenizer;

enum tok_kind {
    TOK_KIND_SPM = 1, /* tokenizer.ggml.model "llama" */
    TOK_KIND_BPE = 2, /* tokenizer.ggml.model "gpt2" */
};

/* Token attributes (tok_attr). A token has exactly one of the type bits
 * NORMAL..BYTE (UNUSED may join CONTROL), plus any of the others. */
enum {
    TOK_ATTR_NORMAL = 1u << 0,
    TOK_ATTR_UNKNOWN = 1u << 1,
    TOK_ATTR_CONTROL = 1u << 2,
    TOK_ATTR_USER_DEFINED = 1u << 3,
    TOK_ATTR_UNUSED = 1u << 4,
    TOK_ATTR_BYTE = 1u << 5,
    TOK_ATTR_LSTRIP = 1u << 6, /* matching eats whitespace on its left */
    TOK_ATTR_RSTRIP = 1u << 7, /* ... and on its right */
    TOK_ATTR_EOG = 1u << 8,    /* generation ends when it is sampled */
};

/* tok_encode flags. */
enum {
    /* Add BOS (and EOS) where the model asks for them
     * (tokenizer.ggml.add_bos_token / add_eos_token and family defaults).
     * Pass it when the text starts a fresh sequence. */
    TOK_ADD_BOS = 1u << 0,
    /* Recognise control tokens written in the text ("<|im_start|>"). Only
     * for text the program wrote itself, such as a rendered chat prompt. */
    TOK_PARSE_SPECIAL = 1u << 1,
};

/* Loads the tokenizer described by g's tokenizer.ggml.* keys. */
int tok_load(const gguf_ctx *g, tokenizer **out, sw_err *err);
void tok_free(tokenizer *t);

/*
 * Tokenizes len bytes of text (not necessarily NUL-terminated or valid
 * UTF-8). On success *ids is a malloc'd array of *n ids (free() it; it may
 * be non-NULL with *n == 0). Fails only when memory runs out.
 */
int tok_encode(const tokenizer *t, const char *text, size_t len, unsigned flags,
               int32_t **ids, size_t *n, sw_err *err);

/* --- the vocabulary ---------------------------------------------------- */
int tok_kind(const tokenizer *t);
const char *tok_pre_name(const tokenizer *t); /* tokenizer.ggml.pre, or "" */
int32_t tok_n_vocab(const tokenizer *t);
bool tok_valid(const tokenizer *t, int32_t id);
/* The token's string as the vocabulary stores it ("▁Hello", "Ġworld"), or
 * "" for an invalid id. NUL-terminated; *len (if non-NULL) gets its length. */
const char *tok_text(const tokenizer *t, int32_t id, size_t *len);
/* The bytes the token stands for in text (" Hello", " world", one raw byte
 * for a byte token; control tokens give their text). Not NUL-terminated
 * and possibly a fragment of a UTF-8 character. */
const char *tok_piece(const tokenizer *t, int32_t id, size_t *len);
/* The id of the token whose vocabulary string is exactly s, or -1. */
int32_t tok_find(const tokenizer *t, const char *s, size_t len);
float tok_score(const tokenizer *t, int32_t id);
unsigned tok_attr(const tokenizer *t, int32_t id); /* 0 for an invalid id */
bool tok_is_control(const tokenizer *t, int32_t id);
bool tok_is_eog(const tokenizer *t, int32_t id);

/* Special ids, -1 where the vocabulary has none. */
int32_t tok_bos(const tokenizer *t);
int32_t tok_eos(const tokenizer *t);
int32_t tok_eot(const tokenizer *t); /* end of turn: <|eot_id|>, <|im_end|>, ... */
int32_t tok_pad(const tokenizer *t);
int32_t tok_unk(const tokenizer *t);
bool tok_add_bos(const tokenizer *t);
bool tok_add_eos(const tokenizer *t);

/* --- detokenizing ------------------------------------------------------ */

/* Detokenizer flags. */
enum {
    /* Render control tokens as their text ("<|im_end|>"); by default they
     * render as nothing, as do unused tokens. */
    TOK_DECODE_SPECIAL = 1u << 0,
    /* Drop the space that SentencePiece's add_space_prefix put before the
     * first word (for turning an encoded text back into that text). */
    TOK_DECODE_STRIP_PREFIX = 1u << 1,
};

/*
 * The streaming detokenizer: feed it ids one at a time as they are
 * sampled; it returns the text they complete. Bytes of a UTF-8 character
 * split across tokens are held back until the character is complete; bytes
 * that can never form a valid character come out as U+FFFD. So everything
 * it returns is valid UTF-8, ready for a JSON encoder.
 *
 *   tok_stream *s = tok_stream_new(tok, 0);
 *   for each sampled id: p = tok_stream_push(s, id, &n); write(p, n);
 *   p = tok_stream_flush(s, &n); write(p, n);
 *   tok_stream_free(s);
 *
 * The returned text lives in the stream and is valid until its next call.
 */
typedef struct tok_stream tok_stream;

tok_stream *tok_stream_new(const tokenizer *t, unsigned flags); /* NULL: no memory */
void tok_stream_free(tok_stream *s);
const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len);
/* Ends the stream: an incomplete character still held becomes U+FFFD. The
 * stream can then be used again as if new. */
const char *tok_stream_flush(tok_stream *s, size_t *len);
/* Bytes held back, waiting for the rest of a character (0..3). */
size_t tok_stream_pending(const tok_stream *s);

/*
 * Detokenizes a whole sequence into a malloc'd, NUL-terminated string of
 * valid UTF-8 (*out, length *len).
 */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out,
               size_t *len, sw_err *err);

#endif
