/*
 * sha256.h — SHA-256 (FIPS 180-4), incremental.
 *
 * Used to fingerprint tensor contents (dequantized values, file slices) and
 * compare them with reference hashes. Not constant-time and not meant for
 * secrets. Usage:
 *
 *   sha256_ctx c;
 *   sha256_init(&c);
 *   sha256_update(&c, buf, len);   // any number of times
 *   sha256_final(&c, digest);      // 32 bytes; the context is then spent
 */
#ifndef SW_SHA256_H
#define SW_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32

typedef struct sha256_ctx {
    uint32_t h[8];       /* chaining state */
    uint64_t nbytes;     /* message length so far */
    uint8_t buf[64];     /* a partial block */
    size_t nbuf;         /* bytes in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t digest[SHA256_DIGEST_SIZE]);

/* One-shot: digest of data. */
void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_SIZE]);
/* Lower-case hex of a digest into hex (65 bytes, NUL-terminated). */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[65]);

#endif
