/*
 * tok_decode.c — token ids back to text: which bytes a token renders as,
 * and the streaming detokenizer that turns those bytes into valid UTF-8.
 *
 * A token renders as its piece (tok_load.c computed them all), except:
 * control and unknown tokens render as nothing unless TOK_DECODE_SPECIAL;
 * unused and undefined tokens render as nothing. (llama.cpp's rules.)
 *
 * The stream holds back the bytes of a character that a token left
 * unfinished (at most 3) and emits them with the token that completes it.
 * A byte that cannot belong to a well-formed character, or a character
 * left unfinished at the end, becomes U+FFFD. Output per push is at most
 * 3 bytes for each byte in (held + piece), so one buffer sized for the
 * longest piece serves every call.
 */
#include <stdlib.h>

#include "text/tok_internal.h"
#include "text/utf8.h"

struct tok_stream {
    const tokenizer *t;
    unsigned flags;
    bool at_boundary;        /* at the start, or right after a special token */
    unsigned char held[4];   /* an unfinished character */
    size_t n_held;
    unsigned char *in;       /* held + piece: max_piece + 4 bytes */
    char *out;               /* 3 bytes for each input byte, and a NUL */
};

/* The bytes token id renders as under flags (length 0: nothing). */
static const char *render(const tokenizer *t, int32_t id, unsigned flags, size_t *len)
{
    *len = 0;
    if (!tok_valid(t, id))
        return "";
    unsigned a = t->attr[id];
    if (!(flags & TOK_DECODE_SPECIAL) && (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
        return "";
    if (!(a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED | TOK_ATTR_NORMAL |
               TOK_ATTR_BYTE)))
        return ""; /* unused or undefined */
    *len = t->piece_len[id];
    return t->piece_pool + t->piece_off[id];
}

tok_stream *tok_stream_new(const tokenizer *t, unsigned flags)
{
    tok_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->t = t;
    s->flags = flags;
    s->at_boundary = true;
    s->in = malloc(t->max_piece + sizeof s->held);
    s->out = malloc(3 * (t->max_piece + sizeof s->held) + 1);
    if (!s->in || !s->out) {
        tok_stream_free(s);
        return NULL;
    }
    return s;
}

void tok_stream_free(tok_stream *s)
{
    if (!s)
        return;
    free(s->in);
    free(s->out);
    free(s);
}

size_t tok_stream_pending(const tok_stream *s) { return s->n_held; }

/* Appends bytes p[0..n) to out as valid UTF-8, holding an unfinished tail. */
static size_t emit_valid(tok_stream *s, size_t k, const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            s->out[k++] = (char)p[i++];
            continue;
        }
        uint32_t cp;
        int r = utf8_next(p + i, n - i, &cp);
        if (r > 0) {
            memcpy(s->out + k, p + i, (size_t)r);
            k += (size_t)r;
            i += (size_t)r;
        } else if (r == 0) { /* unfinished: wait for the next token */
            s->n_held = n - i;
            memcpy(s->held, p + i, s->n_held);
            return k;
        } else {
            memcpy(s->out + k, UTF8_REPLACEMENT, 3);
            k += 3;
            i += (size_t)-r;
        }
    }
    return k;
}

const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len)
{
    const tokenizer *t = s->t;
    size_t n;
    const char *piece = render(t, id, s->flags, &n);

    bool boundary = s->at_boundary;
    if (tok_valid(t, id))
        s->at_boundary = (t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN |
                                         TOK_ATTR_USER_DEFINED)) != 0;
    /* the space SentencePiece put before the text after a boundary */
    if ((s->flags & TOK_DECODE_STRIP_PREFIX) && boundary && t->add_space_prefix && n > 0 &&
        piece[0] == ' ' && (t->attr[id] & TOK_ATTR_NORMAL))
        piece++, n--;

    /* the held bytes and the piece's head may form one character */
    size_t m = s->n_held;
    memcpy(s->in, s->held, m);
    memcpy(s->in + m, piece, n);
    s->n_held = 0;
    size_t k = emit_valid(s, 0, s->in, m + n);
    *len = k;
    s->out[k] = 0;
    return s->out;
}

const char *tok_stream_flush(tok_stream *s, size_t *len)
{
    size_t k = 0;
    if (s->n_held) { /* an unfinished character is one maximal subpart */
        memcpy(s->out, UTF8_REPLACEMENT, 3);
        k = 3;
    }
    s->n_held = 0;
    s->at_boundary = true;
    s->out[k] = 0;
    *len = k;
    return s->out;
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out,
               size_t *len, sw_err *err)
{
    *out = NULL;
    *len = 0;
    tok_stream *s = tok_stream_new(t, flags);
    size_t cap = n * 4 + 16, k = 0;
    char *buf = malloc(cap);
    if (!s || !buf)
        goto oom;
    for (size_t i = 0; i <= n; i++) {
        size_t m;
        const char *p = i < n ? tok_stream_push(s, ids[i], &m) : tok_stream_flush(s, &m);
        if (k + m + 1 > cap) {
            while (k + m + 1 > cap)
                cap *= 2;
            char *q = realloc(buf, cap);
            if (!q)
                goto oom;
            buf = q;
        }
        memcpy(buf + k, p, m);
        k += m;
    }
    buf[k] = 0;
    tok_stream_free(s);
    *out = buf;
    *len = k;
    return 0;
oom:
    tok_stream_free(s);
    free(buf);
    return sw_errf(err, SW_ENOMEM, "tokenizer: out of memory decoding %zu tokens", n);
}
