/*
 * utf8.h — UTF-8 checks shared by the tokenizer and whoever else must tell
 * complete, incomplete and invalid byte sequences apart.
 *
 * Well-formedness follows Unicode's Table 3-7: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. An ill-formed
 * sequence is replaced by one U+FFFD per "maximal subpart" (the longest
 * prefix of a well-formed sequence, or one byte), the practice Unicode
 * recommends and browsers follow.
 */
#ifndef SW_UTF8_H
#define SW_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD, 3 bytes */

/*
 * Looks at the character starting at s (n > 0 bytes available):
 *   > 0  a well-formed character of that many bytes (*cp gets it);
 *   0    the n bytes are a proper prefix of a well-formed character: more
 *        bytes are needed to decide;
 *   < 0  ill-formed: the first -r bytes are a maximal subpart to replace.
 */
int utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* The byte count a lead byte announces (1 for ASCII, continuation and
 * invalid bytes), as SentencePiece-style splitting uses it. */
static inline size_t utf8_lead_len(unsigned char c)
{
    static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

bool utf8_valid(const char *s, size_t n);

/* Encodes cp (<= 0x10FFFF) into out; returns the byte count (1..4). */
int utf8_encode(uint32_t cp, char out[4]);

#endif
