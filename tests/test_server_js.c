/* The official OpenAI and Ollama JavaScript clients (tests/js, installed by
 * scripts/setup with npm) against the real `spillway serve`: what Open
 * WebUI, Continue and friends do, done by the libraries they use. Skipped
 * when node or the packages are missing. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include "serve_util.h"

TEST(server_js_clients_openai_and_ollama)
{
    char *out = NULL;
    if (test_run("node --version 2>/dev/null", &out) != 0) {
        free(out);
        test_skip("node is not installed (scripts/setup installs it)");
    }
    free(out);
    if (access("tests/js/node_modules/openai/package.json", R_OK) ||
        access("tests/js/node_modules/ollama/package.json", R_OK))
        test_skip("tests/js/node_modules missing (run scripts/setup, or npm ci in tests/js)");
    char args[1024];
    snprintf(args, sizeof args, "--alias stories --chat-template '%s'",
             test_fixture("templates/Qwen-Qwen2.5-7B-Instruct.jinja"));
    test_server s;
    CHECK(ts_start(&s, "stories260K/stories260K.gguf", args) == 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cd tests/js && SPILLWAY_URL=http://127.0.0.1:%d node --test 2>&1", s.port);
    int rc = test_run(cmd, &out);
    CHECKF(rc == 0, "node --test failed (%d):\n%s", rc, out);
    free(out);
    CHECK_EQ(ts_stop(&s), 0);
}
