/*
 * test.h — the project's small test framework.
 *
 * A test is a function declared with TEST(name); it registers itself before
 * main() runs, so a test file needs nothing but its tests. The runner
 * (tests/test_main.c) forks one child per test, so a crash or a sanitizer
 * report fails that test alone, and ends with the line "N passed, N failed".
 *
 *   spillway-tests [SUBSTRING...]   run tests whose name contains any SUBSTRING
 *   SPILLWAY_FIXTURES=DIR           where ../shared/fixtures is
 *   SPILLWAY_BIN=PATH               the spillway binary end-to-end tests run
 *   TEST_NOFORK=1                   run in-process (for gdb)
 *
 * CHECK* macros record a failure and return from the test; a test may also
 * call test_skip("why") when something it needs is absent on this machine.
 */
#ifndef SW_TEST_H
#define SW_TEST_H

#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void test_skip(const char *why);

/* Absolute path of a fixture file, e.g. test_fixture("models/llama/ref.json"). */
const char *test_fixture(const char *rel);
/* The spillway binary under test (SPILLWAY_BIN). */
const char *test_bin(void);
/* A fresh temporary directory for this test (removed by the runner). */
const char *test_tmpdir(void);
/* Reads a whole file; returns malloc'd bytes (NUL-terminated) or NULL. */
char *test_read_file(const char *path, size_t *len);
/* Runs a shell command, captures stdout (malloc'd, NUL-terminated); returns exit status. */
int test_run(const char *cmd, char **out);

#define TEST(name)                                                         \
    static void name(void);                                                \
    __attribute__((constructor)) static void name##_register(void)         \
    {                                                                      \
        test_register(#name, __FILE__, name);                              \
    }                                                                      \
    static void name(void)

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            test_fail(__FILE__, __LINE__, "%s", #cond);                    \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                    \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                     \
    CHECKF((a) == (b), "%s == %s: %lld != %lld", #a, #b,                   \
           (long long)(a), (long long)(b))

#define CHECK_STR(a, b)                                                    \
    CHECKF(strcmp((a), (b)) == 0, "%s == %s: \"%s\" != \"%s\"", #a, #b,    \
           (a), (b))

/* Checks that s contains sub (e.g. an error message names the problem). */
#define CHECK_HAS(s, sub)                                                  \
    CHECKF(strstr((s), (sub)) != NULL, "\"%s\" does not contain \"%s\"",   \
           (s), (sub))

#endif
