/* End-to-end tests of `spillway inspect`: the real binary on real files. */
#include "test.h"

#include <jansson.h>
#include <stdlib.h>

static int run_inspect(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s inspect %s 2>&1", test_bin(), args);
    return test_run(cmd, out);
}

TEST(cli_inspect_text)
{
    char args[1024], *out;
    snprintf(args, sizeof args, "'%s'", test_fixture("models/qwen3moe/qwen3moe-q4_k_m.gguf"));
    CHECK_EQ(run_inspect(args, &out), 0);
    CHECK_HAS(out, "architecture:  qwen3moe");
    CHECK_HAS(out, "expert_count");
    CHECK_HAS(out, "tokenizer.ggml.tokens");
    CHECK_HAS(out, "[string x 512]");
    CHECK_HAS(out, "blk.1.ffn_down_exps.weight");
    CHECK_HAS(out, "[256, 256, 4]");
    CHECK_HAS(out, "totals by type:");
    CHECK_HAS(out, "Q6_K");
    free(out);
}

TEST(cli_inspect_json)
{
    char args[1024], *out;
    snprintf(args, sizeof args, "'%s' --json", test_fixture("stories260K/stories260K.gguf"));
    CHECK_EQ(run_inspect(args, &out), 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    CHECKF(j, "bad JSON at %d:%d: %s", jerr.line, jerr.column, jerr.text);
    CHECK_STR(json_string_value(json_object_get(j, "architecture")), "llama");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "hyperparameters"),
                                                "embedding_length")),
             64);
    json_t *tensors = json_object_get(j, "tensors");
    CHECK(json_array_size(tensors) > 10);
    json_t *toks = json_object_get(json_object_get(j, "metadata"), "tokenizer.ggml.tokens");
    CHECK_EQ(json_integer_value(json_object_get(toks, "n")), 512); /* summarised */
    json_decref(j);
    free(out);
}

/* Dumps one tensor of every type listed in dequant-expect.json through the
 * CLI and checks the SHA-256 of the output file. */
TEST(cli_inspect_dump_every_type)
{
    json_error_t jerr;
    json_t *expect = json_load_file(test_fixture("models/dequant-expect.json"), 0, &jerr);
    CHECKF(expect, "dequant-expect.json: %s", jerr.text);
    json_t *seen = json_object();
    const char *file;
    json_t *tensors;
    int checked = 0;
    json_object_foreach(expect, file, tensors) {
        const char *name;
        json_t *info;
        json_object_foreach(tensors, name, info) {
            const char *type = json_string_value(json_object_get(info, "type"));
            if (json_object_get(seen, type))
                continue;
            json_object_set_new(seen, type, json_true());
            char dir[64], cmd[4096], *out = NULL;
            snprintf(dir, sizeof dir, "%.*s", (int)(strchr(file, '-') - file), file);
            snprintf(cmd, sizeof cmd,
                     "%s inspect '%s/%s/%s' --dump '%s' --out %s/t.f32 2>&1 && sha256sum %s/t.f32",
                     test_bin(), test_fixture("models"), dir, file, name, test_tmpdir(),
                     test_tmpdir());
            int rc = test_run(cmd, &out);
            CHECKF(rc == 0, "%s %s: %s", file, name, out);
            const char *want = json_string_value(json_object_get(info, "sha256_f32le"));
            CHECKF(strstr(out, want), "%s %s (%s): sha256 differs:\n%s", file, name, type, out);
            free(out);
            checked++;
        }
    }
    CHECKF(checked >= 15, "only %d types checked", checked);
    json_decref(seen);
    json_decref(expect);
}

TEST(cli_inspect_bad_inputs)
{
    char args[1024], *out;
    CHECK_EQ(run_inspect("/nonexistent.gguf", &out), 1);
    CHECK_HAS(out, "/nonexistent.gguf");
    free(out);
    snprintf(args, sizeof args, "'%s'", test_fixture("models/llama/ref.json"));
    CHECK_EQ(run_inspect(args, &out), 1);
    CHECK_HAS(out, "not a GGUF file");
    free(out);
    snprintf(args, sizeof args, "'%s' --dump no.such.tensor --out %s/x", test_fixture("stories260K/stories260K.gguf"),
             test_tmpdir());
    CHECK_EQ(run_inspect(args, &out), 1);
    CHECK_HAS(out, "no tensor named 'no.such.tensor'");
    free(out);
    CHECK_EQ(run_inspect("", &out), 2);
    free(out);
    snprintf(args, sizeof args, "'%s' --dump output.weight --out /nonexistent/dir/x",
             test_fixture("stories260K/stories260K.gguf"));
    CHECK_EQ(run_inspect(args, &out), 1);
    CHECK_HAS(out, "/nonexistent/dir/x");
    free(out);
}
