/* The test runner: see test.h. */
#include "test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 4096

struct test_case {
    const char *name, *file;
    test_fn fn;
};

static struct test_case g_tests[MAX_TESTS];
static int g_ntests;
static int g_failed_here; /* in the running child: did a CHECK fail? */
static char g_tmpdir[256];
static char g_pathbuf[8][4096];
static int g_pathidx;

void test_register(const char *name, const char *file, test_fn fn)
{
    if (g_ntests < MAX_TESTS)
        g_tests[g_ntests++] = (struct test_case){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    g_failed_here = 1;
}

void test_skip(const char *why)
{
    fprintf(stderr, "    skipped: %s\n", why);
    fflush(stderr);
    _exit(77);
}

const char *test_fixture(const char *rel)
{
    const char *dir = getenv("SPILLWAY_FIXTURES");
    char *buf = g_pathbuf[g_pathidx++ % 8];
    snprintf(buf, 4096, "%s/%s", dir ? dir : "../shared/fixtures", rel);
    return buf;
}

const char *test_bin(void)
{
    const char *b = getenv("SPILLWAY_BIN");
    return b ? b : "build/spillway";
}

const char *test_tmpdir(void)
{
    return g_tmpdir;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

int test_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; (got = fread(buf + n, 1, cap - n, p)) > 0;) {
        n += got;
        if (n == cap) {
            buf = realloc(buf, 2 * cap + 1);
            cap *= 2;
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int selected(const struct test_case *t, int argc, char **argv)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i]))
            return 1;
    return 0;
}

/* Runs one test; returns 0 pass, 1 fail, 2 skip. */
static int run_one(const struct test_case *t, int nofork)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/spillway-test-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(g_tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    int rc;
    if (nofork) {
        g_failed_here = 0;
        t->fn();
        rc = g_failed_here;
    } else {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            t->fn();
            fflush(stdout);
            fflush(stderr);
            exit(g_failed_here ? 1 : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
            rc = 2;
        else if (WIFEXITED(st))
            rc = WEXITSTATUS(st) != 0;
        else {
            fprintf(stderr, "    killed by signal %d\n", WTERMSIG(st));
            rc = 1;
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "    could not remove %s\n", g_tmpdir);
    return rc;
}

int main(int argc, char **argv)
{
    int nofork = getenv("TEST_NOFORK") != NULL;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_ntests; i++) {
        const struct test_case *t = &g_tests[i];
        if (!selected(t, argc, argv))
            continue;
        fprintf(stderr, "%-56s ", t->name);
        fflush(stderr);
        int rc = run_one(t, nofork);
        fprintf(stderr, "%s\n", rc == 0 ? "ok" : rc == 2 ? "skip" : "FAIL");
        if (rc == 0)
            passed++;
        else if (rc == 2)
            skipped++;
        else
            failed++;
    }
    fflush(stderr);
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
