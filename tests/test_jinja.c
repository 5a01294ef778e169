/*
 * test_jinja.c — the chat-template interpreter (src/text/jinja*.c, chat.c)
 * and `spillway template`.
 *
 * The differential tests render the same things through spillway and
 * through Python's jinja2 configured as transformers configures it
 * (tests/jinja_oracle.py) and require byte-identical output, or both to
 * fail: every fixture template with a set of conversations
 * (tests/data/chat/), and a corpus of small templates exercising the
 * language itself (tests/data/chat/snippets.json, or the file named by
 * SPILLWAY_JINJA_SNIPPETS). They are skipped when python3 with jinja2 is
 * missing.
 */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "text/chat.h"
#include "text/jinja.h"

#define CHAT_DIR "tests/data/chat/"
#define FIXED_NOW 1736937000 /* 2025-01-15 10:30:00 UTC */
#define NOW_STR "1736937000"

/* Parses and renders src with vars; the result (or NULL) in *out. */
static int render(const char *src, const json_t *vars, const jinja_opts *opts, char **out,
                  sw_err *err)
{
    jinja_tmpl *t;
    jinja_opts o = opts ? *opts : (jinja_opts){0};
    if (!o.now)
        o.now = FIXED_NOW;
    *out = NULL;
    int rc = jinja_parse(src, strlen(src), &t, err);
    if (rc < 0)
        return rc;
    rc = jinja_render(t, vars, &o, out, NULL, err);
    jinja_free(t);
    return rc;
}

/* Renders src with no variables and compares with want (or NULL: must fail). */
static int expect(const char *src, const char *want, char *got_msg, size_t msgsz)
{
    char *out = NULL;
    sw_err err = {0};
    int rc = render(src, NULL, NULL, &out, &err);
    int ok = want ? rc == 0 && !strcmp(out, want) : rc < 0;
    snprintf(got_msg, msgsz, "%s", rc == 0 ? out : err.msg);
    free(out);
    return ok;
}

#define EXPECT(src, want)                                                                  \
    do {                                                                                   \
        char got_[600];                                                                    \
        CHECKF(expect(src, want, got_, sizeof got_), "%s: got \"%s\", want \"%s\"", src,  \
               got_, (want) ? (want) : "(an error)");                                     \
    } while (0)

/* The error message of rendering src (parse or render), in msg. */
static int fails_with(const char *src, char *msg, size_t msgsz)
{
    char *out = NULL;
    sw_err err = {0};
    int rc = render(src, NULL, NULL, &out, &err);
    free(out);
    snprintf(msg, msgsz, "%s", rc < 0 ? err.msg : "(rendered)");
    return rc;
}

#define EXPECT_ERROR(src, code, needle)                                                    \
    do {                                                                                   \
        char msg_[600];                                                                    \
        int rc_ = fails_with(src, msg_, sizeof msg_);                                      \
        CHECKF(rc_ == (code), "%s: code %d, want %d (%s)", src, rc_, code, msg_);          \
        CHECK_HAS(msg_, needle);                                                           \
    } while (0)

/* ---- without the oracle ---------------------------------------------------------- */

TEST(jinja_whitespace_control)
{
    EXPECT("a  {{- 'b' -}}  c", "abc");
    EXPECT("  {% if true %}\n  x\n  {% endif %}\ny", "  x\ny");
    EXPECT("{% if true %}\nline\n{% endif %}\n", "line\n");
    EXPECT("{% if true %}\n{% endif %}\n\n", "");
    EXPECT("  {%+ if true %}k{% endif %}", "  k");
    EXPECT("{% if true +%}\nk{% endif %}", "\nk");
    EXPECT("a {# c #} b\n  {#- c -#}  c", "a  bc");
    EXPECT("{% raw %}{{ x }}{% endraw %}", "{{ x }}");
    EXPECT("x\r\ny\r\n", "x\ny");
    EXPECT("  {{ 'v' }}", "  v");
}

TEST(jinja_python_values)
{
    EXPECT("{{ 1.0 }} {{ 1e16 }} {{ 1e-05 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ -7 // 2 }}",
           "1.0 1e+16 1e-05 0.30000000000000004 2.5 -4");
    EXPECT("{{ none }} {{ true }} {{ [none, 'a', \"b'\"] }} {{ (1,) }} {{ {'k': 1.5} }}",
           "None True [None, 'a', \"b'\"] (1,) {'k': 1.5}");
    EXPECT("{{ 'héllo'[::-1] }}|{{ 'héllo'[1:3] }}|{{ [1, 2, 3][-1] }}|{{ 'héllo'|length }}",
           "olléh|él|3|5");
    EXPECT("{{ {'b': 1, 'a': 2}|tojson }}|{{ 'é\"'|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}",
           "{\"b\": 1, \"a\": 2}|\"é\\\"\"|\"\\u00e9\"");
    EXPECT("{{ [1, {'a': 2}]|tojson(indent=2) }}", "[\n  1,\n  {\n    \"a\": 2\n  }\n]");
    EXPECT("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
           "{% endfor %}{{ ns.n }}",
           "6");
    EXPECT("{% for x in [1, 2, 3] %}{{ loop.index }}{{ 'L' if loop.last }}{% endfor %}", "123L");
    EXPECT("{{ 'a' ~ 1 ~ none }}|{{ x is defined }}|{{ {'items': 1}['items'] }}", "a1None|False|1");
}

TEST(jinja_errors_name_line_and_column)
{
    EXPECT_ERROR("line one\n  {{ 1 + }}", SW_EFORMAT, "line 2, column 10");
    EXPECT_ERROR("{% if x %}\nopen", SW_EFORMAT, "line 1");
    EXPECT_ERROR("{% if x %}\nopen", SW_EFORMAT, "endif");
    EXPECT_ERROR("\n\n   {% include 'other.jinja' %}", SW_EUNSUPPORTED, "line 3, column 7");
    EXPECT_ERROR("{% include 'other.jinja' %}", SW_EUNSUPPORTED, "include");
    EXPECT_ERROR("{% extends 'base' %}", SW_EUNSUPPORTED, "extends");
    EXPECT_ERROR("{% call m() %}x{% endcall %}", SW_EUNSUPPORTED, "call");
    EXPECT_ERROR("{% for x in y recursive %}{% endfor %}", SW_EUNSUPPORTED, "recursive");
    EXPECT_ERROR("{% frobnicate %}", SW_EUNSUPPORTED, "unknown tag 'frobnicate'");
    EXPECT_ERROR("{{ x|frob }}", SW_EFORMAT, "no filter named 'frob'");
    EXPECT_ERROR("{{ [1]|groupby('a') }}", SW_EFORMAT, "'groupby' filter is not supported");
    EXPECT_ERROR("{{ x is frob }}", SW_EFORMAT, "no test named 'frob'");
    EXPECT_ERROR("{% break %}", SW_EFORMAT, "outside of a loop");
    EXPECT_ERROR("a\n{{ raise_exception('Roles must alternate') }}", SW_EINVAL,
                 "line 2, column 4: raise_exception: Roles must alternate");
    EXPECT_ERROR("{{ x.y }}", SW_EINVAL, "'x' is undefined");
    EXPECT_ERROR("{% set l = [] %}{{ l.append(1) }}", SW_EUNSUPPORTED, "unsafe");
    EXPECT_ERROR("{{ 'a' + 1 }}", SW_ETYPE, "can only concatenate str");
    /* an unknown filter inside an if fails only when reached, as in jinja2 */
    EXPECT("{% if false %}{{ x|frob }}{% endif %}ok", "ok");
    EXPECT_ERROR("{% if true %}{{ x|frob }}{% endif %}", SW_EFORMAT, "no filter named 'frob'");
}

TEST(jinja_hostile_templates_are_bounded)
{
    char msg[600];
    jinja_opts small = {.max_steps = 200000, .max_output = 1 << 20, .max_depth = 20};
    char *out = NULL;
    sw_err err = {0};
    const char *loops = "{% for i in range(100000) %}{% for j in range(100000) %}"
                        "{% endfor %}{% endfor %}";
    CHECK_EQ(render(loops, NULL, &small, &out, &err), SW_ERANGE);
    CHECK_HAS(err.msg, "too long to render");
    const char *rec = "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}";
    CHECK_EQ(render(rec, NULL, &small, &out, &err), SW_ERANGE);
    CHECK_HAS(err.msg, "nested too deeply");
    const char *grow = "{% set ns = namespace(s='xx') %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
    CHECK_EQ(render(grow, NULL, &small, &out, &err), SW_ERANGE);
    const char *mul = "{{ 'x' * 1000000000000 }}";
    CHECK_EQ(render(mul, NULL, &small, &out, &err), SW_ERANGE);
    CHECK(fails_with("{{ range(1000000)|length }}", msg, sizeof msg) == SW_ERANGE);
    CHECK_HAS(msg, "Range too big");
    /* deep nesting in the source is a parse error, not a stack overflow */
    char deep[4000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    CHECK(fails_with(deep, msg, sizeof msg) < 0);
    /* a namespace that holds itself is freed (ASan reports leaks) */
    EXPECT("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, ns] %}ok", "ok");
    free(out);
}

TEST(jinja_strftime_now_is_fixed)
{
    EXPECT("{{ strftime_now('%Y-%m-%d %H:%M') }}|{{ strftime_now('%d %b %Y') }}|"
           "{{ strftime_now('%z%Z') }}",
           "2025-01-15 10:30|15 Jan 2025|");
}

TEST(jinja_chat_render_variables)
{
    json_error_t je;
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"hi\"}]", 0, &je);
    CHECK(msgs);
    const char *src = "{{ bos_token }}{{ tools is none }}{{ documents is none }}"
                      "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                      "{% if add_generation_prompt %}<gen>{% endif %}{{ eos_token }}{{ extra }}";
    jinja_tmpl *t;
    sw_err err = {0};
    CHECK(jinja_parse(src, strlen(src), &t, &err) == 0);
    json_t *extra = json_pack("{s:i}", "extra", 5);
    chat_params p = {.messages = msgs, .add_generation_prompt = true, .bos_token = "<s>",
                     .extra = extra};
    char *out = NULL;
    int rc = chat_render(t, &p, NULL, &out, NULL, &err);
    jinja_free(t);
    json_decref(msgs);
    json_decref(extra);
    CHECKF(rc == 0, "%s", err.msg);
    CHECK_STR(out, "<s>TrueTrue[user:hi]<gen>5");
    free(out);
}

/* ---- spillway template ------------------------------------------------------------- */

TEST(jinja_cli_template)
{
    char cmd[2048], path[1024], *out = NULL;
    snprintf(path, sizeof path, "%s/t.jinja", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
          "{% if add_generation_prompt %}<assistant>{% endif %}{{ eos_token }}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s template %s --messages " CHAT_DIR "plain.json", test_bin(),
             path);
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, "<user>Hello! What is 2 + 2?\n<assistant>"); /* no newline added */
    free(out);
    snprintf(cmd, sizeof cmd, "%s template %s --messages " CHAT_DIR "plain.json "
             "--no-generation-prompt --bos '<s>' --eos '</s>'", test_bin(), path);
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, "<s><user>Hello! What is 2 + 2?\n</s>");
    free(out);
    /* from a GGUF file: its template, and bos/eos looked up in its vocabulary */
    snprintf(cmd, sizeof cmd, "%s template %s --messages " CHAT_DIR "multi_turn.json",
             test_bin(), test_fixture("vocab/ggml-vocab-phi-3.gguf"));
    CHECK_EQ(test_run(cmd, &out), 0);
    CHECK_STR(out, "<s><|user|>\nName a prime number.<|end|>\n<|assistant|>\n"
                   "7 is a prime number.<|end|>\n<|user|>\nAnd one larger than 100?<|end|>\n"
                   "<|assistant|>\n101.<|end|>\n<|user|>\nThanks; now a \"quoted\" one <tag> & "
                   "'apostrophes'.<|end|>\n<|assistant|>\n");
    free(out);
    /* failures: exit status 1 and a message naming line and column */
    snprintf(path, sizeof path, "%s/bad.jinja", test_tmpdir());
    f = fopen(path, "w");
    CHECK(f);
    fputs("ok\n{% include 'x' %}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s template %s --messages " CHAT_DIR "plain.json 2>&1",
             test_bin(), path);
    CHECK_EQ(test_run(cmd, &out), 1);
    CHECK_HAS(out, "line 2, column 4");
    free(out);
    snprintf(cmd, sizeof cmd, "%s template %s 2>/dev/null", test_bin(), path);
    CHECK_EQ(test_run(cmd, NULL), 2);
}

/* ---- against the oracle ------------------------------------------------------------ */

static int have_oracle(void)
{
    return test_run("python3 -c 'import jinja2' 2>/dev/null", NULL) == 0;
}

/* Runs the oracle over jobs (which it consumes); 0 on success. */
static int run_oracle(json_t *jobs)
{
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s/jobs.json", test_tmpdir());
    int rc = json_dump_file(jobs, path, 0);
    json_decref(jobs);
    if (rc < 0)
        return -1;
    snprintf(cmd, sizeof cmd, "SPILLWAY_NOW=" NOW_STR " timeout 600 python3 tests/jinja_oracle.py "
             "--batch %s", path);
    return test_run(cmd, NULL);
}

/* Compares our result with the oracle's files for job i. Returns 1 if they
 * agree (same text, or both failed), else 0 after printing the difference. */
static int agree(const char *label, int i, int rc, const char *out, const sw_err *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%d.txt", test_tmpdir(), i);
    size_t n = 0;
    char *want = test_read_file(path, &n);
    strcat(path, ".err");
    char *werr = test_read_file(path, NULL);
    int ok;
    if (werr) {
        ok = rc < 0;
        /* a template's own raise_exception() message must come through */
        if (ok && !strncmp(werr, "TemplateError: ", 15) && !strstr(err->msg, werr + 15))
            ok = 0;
        if (!ok)
            fprintf(stderr, "    %s: jinja2 fails (%s) but spillway %s%s\n", label, werr,
                    rc < 0 ? "says: " : "renders", rc < 0 ? err->msg : "");
    } else if (rc < 0) {
        ok = 0;
        fprintf(stderr, "    %s: spillway fails: %s\n", label, err->msg);
    } else {
        ok = want && strlen(out) == n && !memcmp(out, want, n);
        if (!ok) {
            size_t k = 0;
            while (want && k < n && out[k] == want[k])
                k++;
            fprintf(stderr, "    %s: output differs at byte %zu\n      jinja2:   \"%.80s\"\n"
                            "      spillway: \"%.80s\"\n", label, k, want ? want + k : "",
                    out + k);
        }
    }
    free(want);
    free(werr);
    return ok;
}

TEST(jinja_snippets_match_oracle)
{
    if (!have_oracle())
        test_skip("python3 with jinja2 is not installed");
    json_error_t je;
    const char *path = getenv("SPILLWAY_JINJA_SNIPPETS"); /* another corpus, for exploring */
    json_t *doc = json_load_file(path ? path : CHAT_DIR "snippets.json", 0, &je);
    CHECKF(doc, "snippets.json: %s", je.text);
    json_t *vars = json_object_get(doc, "vars"), *snips = json_object_get(doc, "snippets");
    json_t *jobs = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(snips, i, s) {
        char out[1024];
        snprintf(out, sizeof out, "%s/%zu.txt", test_tmpdir(), i);
        json_array_append_new(jobs, json_pack("{s:O,s:O,s:s}", "source", json_object_get(s, "t"),
                                              "vars", vars, "out", out));
    }
    CHECK_EQ(run_oracle(jobs), 0);
    int bad = 0;
    json_array_foreach(snips, i, s) {
        const char *src = json_string_value(json_object_get(s, "t"));
        char *out = NULL, label[100];
        sw_err err = {0};
        int rc = render(src, vars, NULL, &out, &err);
        snprintf(label, sizeof label, "snippet %zu \"%.40s\"", i, src);
        bad += !agree(label, (int)i, rc, out, &err);
        free(out);
    }
    size_t total = json_array_size(snips);
    json_decref(doc);
    CHECKF(bad == 0, "%d of %zu snippets differ from jinja2", bad, total);
}

/* The conversations every template is rendered with. */
static const struct conv {
    const char *name, *messages, *tools, *extra;
    int gen;
} convs[] = {
    {"plain", "plain", NULL, NULL, 1},
    {"plain-nogen", "plain", NULL, NULL, 0},
    {"system", "system", NULL, NULL, 1},
    {"multi_turn", "multi_turn", NULL, NULL, 1},
    {"multi_turn-nogen", "multi_turn", NULL, NULL, 0},
    {"unicode", "unicode", NULL, NULL, 1},
    {"multi_system", "multi_system", NULL, NULL, 1},
    {"plain+tools", "plain", "tools", NULL, 1},
    {"tool_calls", "tool_calls", "tools", NULL, 1},
    {"tool_calls-nogen", "tool_calls", "tools", NULL, 0},
    {"tool_result", "tool_result", "tools", NULL, 1},
    {"tool_calls_str", "tool_calls_str", "tools", NULL, 1},
    {"reasoning", "reasoning", NULL, NULL, 1},
    {"reasoning-nothink", "reasoning", NULL, "{\"enable_thinking\": false}", 1},
    {"multimodal", "multimodal", NULL, NULL, 1},
    {"tool_calls_nested", "tool_calls_nested", "tools_nested", NULL, 1},
    {"multi_turn-nothink", "multi_turn", "tools", "{\"enable_thinking\": false}", 0},
    {"assistant_last", "assistant_last", NULL, NULL, 0},
};
#define NCONV (sizeof convs / sizeof convs[0])

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(jinja_templates_match_oracle)
{
    if (!have_oracle())
        test_skip("python3 with jinja2 is not installed");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", test_fixture("templates"));
    DIR *d = opendir(dir);
    CHECKF(d, "%s: cannot open", dir);
    char *names[256];
    size_t nt = 0;
    for (struct dirent *e; (e = readdir(d)) && nt < 256;) {
        size_t l = strlen(e->d_name);
        if (l > 6 && !strcmp(e->d_name + l - 6, ".jinja"))
            names[nt++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, nt, sizeof *names, by_name);
    CHECKF(nt >= 70, "only %zu templates in %s", nt, dir);

    json_t *jobs = json_array();
    for (size_t t = 0; t < nt; t++)
        for (size_t c = 0; c < NCONV; c++) {
            char tpath[2048], m[256], tl[256], out[1024];
            snprintf(tpath, sizeof tpath, "%s/%s", dir, names[t]);
            snprintf(m, sizeof m, CHAT_DIR "%s.json", convs[c].messages);
            snprintf(tl, sizeof tl, CHAT_DIR "%s.json", convs[c].tools ? convs[c].tools : "");
            snprintf(out, sizeof out, "%s/%zu.txt", test_tmpdir(), t * NCONV + c);
            json_t *job = json_pack("{s:s,s:s,s:b,s:s,s:s,s:s}", "template", tpath, "messages",
                                    m, "add_generation_prompt", convs[c].gen, "bos", "<s>", "eos",
                                    "</s>", "out", out);
            if (convs[c].tools)
                json_object_set_new(job, "tools", json_string(tl));
            if (convs[c].extra)
                json_object_set_new(job, "extra", json_loads(convs[c].extra, 0, NULL));
            json_array_append_new(jobs, job);
        }
    CHECK_EQ(run_oracle(jobs), 0);

    int bad_templates = 0;
    for (size_t t = 0; t < nt; t++) {
        char tpath[2048];
        snprintf(tpath, sizeof tpath, "%s/%s", dir, names[t]);
        size_t len;
        char *src = test_read_file(tpath, &len);
        jinja_tmpl *tmpl = NULL;
        sw_err perr = {0};
        int prc = src ? jinja_parse(src, len, &tmpl, &perr) : -1;
        int bad = 0;
        for (size_t c = 0; c < NCONV; c++) {
            char m[256], tl[256], label[400];
            snprintf(m, sizeof m, CHAT_DIR "%s.json", convs[c].messages);
            snprintf(tl, sizeof tl, CHAT_DIR "%s.json", convs[c].tools ? convs[c].tools : "");
            json_t *msgs = json_load_file(m, 0, NULL);
            json_t *tools = convs[c].tools ? json_load_file(tl, 0, NULL) : NULL;
            json_t *extra = convs[c].extra ? json_loads(convs[c].extra, 0, NULL) : NULL;
            chat_params p = {.messages = msgs, .tools = tools, .extra = extra,
                             .add_generation_prompt = convs[c].gen, .bos_token = "<s>",
                             .eos_token = "</s>"};
            jinja_opts o = {.now = FIXED_NOW};
            char *out = NULL;
            sw_err err = perr;
            int rc = prc < 0 ? prc : chat_render(tmpl, &p, &o, &out, NULL, &err);
            snprintf(label, sizeof label, "%s [%s]", names[t], convs[c].name);
            bad += !agree(label, (int)(t * NCONV + c), rc, out, &err);
            free(out);
            json_decref(msgs);
            json_decref(tools);
            json_decref(extra);
        }
        if (bad)
            fprintf(stderr, "    %s: %d of %zu renderings differ\n", names[t], bad, NCONV);
        bad_templates += bad > 0;
        jinja_free(tmpl);
        free(src);
        free(names[t]);
    }
    CHECKF(bad_templates == 0, "%d of %zu templates render differently from jinja2",
           bad_templates, nt);
}
