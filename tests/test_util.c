/* Tests for src/util: SHA-256 against the FIPS 180-4 examples and digests
 * made by an independent implementation (Python's hashlib). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "util/sha256.h"

static const char *hex_of(const void *data, size_t len)
{
    static char hex[65];
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256(data, len, d);
    sha256_hex(d, hex);
    return hex;
}

TEST(util_sha256_vectors)
{
    CHECK_STR(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_STR(hex_of("abc", 3),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK_STR(hex_of(m448, strlen(m448)),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
                       "nopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    CHECK_STR(hex_of(m896, strlen(m896)),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* Lengths around the padding boundaries (55/56 bytes: the length field
 * still fits or spills into another block; 64: exactly one block). */
TEST(util_sha256_padding_boundaries)
{
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "8aa994584139d128848eeebc4e815639ba5ab6e6e39574195a63ac4f14f7c43b"},
        {56, "ad574708f75c044c9b85de64cb568ee7711ff4f36448c6242f053ba8f6cc2b63"},
        {57, "5b46e502092be01b1100193e089fdda95638c12e19a1d24f308eb2c3d3ae849d"},
        {63, "280ed3e8ff1df845b2e7dfe6ac6cee817bef20e783cc65abc41b818b4d2fe076"},
        {64, "c6ab9724ade5b6a7a1edfffb12f3aa9181351355af8fd08c919952ad211339dd"},
        {65, "788367c73c7ddf4c53f65e68cc0d943e6227ab55b0e78ba63ace822b1c6301c0"},
        {119, "3d610547d68216dedf7435a4fb6260353911f6b3fd3f18805ddb8be285d726fe"},
        {120, "1f80156a804cb7862ad113e8200e9d74499723e7c7854d5f48776d3148e09656"},
        {128, "cc548ca2dec1f6fe4f58b2e27aa9c7521607df1130d140b55a4dad0665302356"},
    };
    uint8_t buf[128];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECK_STR(hex_of(buf, v[i].n), v[i].hex);
}

/* A million 'a' fed in uneven pieces equals the published digest: the
 * partial-block buffering is right for every offset. */
TEST(util_sha256_incremental)
{
    enum { N = 1000000 };
    char *a = malloc(N);
    memset(a, 'a', N);
    sha256_ctx c;
    sha256_init(&c);
    size_t off = 0;
    for (size_t step = 1; off < N; step = step % 200 + 1) {
        size_t take = N - off < step ? N - off : step;
        sha256_update(&c, a + off, take);
        off += take;
    }
    free(a);
    uint8_t d[SHA256_DIGEST_SIZE];
    char hex[65];
    sha256_final(&c, d);
    sha256_hex(d, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
