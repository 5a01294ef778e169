/*
 * cmd_inspect.c — `spillway inspect FILE.gguf [--json] [--dump TENSOR --out PATH]`
 *
 * Shows what a GGUF file holds: architecture and its hyperparameters, all
 * metadata (long arrays and strings summarised), the tensor table and totals
 * by storage type. --json prints the same as one JSON object for machines.
 * --dump writes one tensor's dequantized values as little-endian float32.
 */
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "store/catalog.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ARRAY_HEAD 8     /* elements shown of a long array */
#define STR_SHOWN 72     /* characters shown of a long string */

static const char *usage_text =
    "usage: spillway inspect MODEL [--json]\n"
    "       spillway inspect MODEL --dump TENSOR --out PATH\n"
    "\n"
    "Shows a GGUF file's architecture, hyperparameters, metadata and tensors.\n"
    "MODEL is a GGUF file or a model name (see 'spillway models').\n"
    "  --json          print one JSON object instead of text\n"
    "  --dump TENSOR   write TENSOR's values, dequantized to little-endian float32,\n"
    "  --out PATH      to PATH ('-' for standard output)\n";

/* --- text helpers --------------------------------------------------------- */

static void human_bytes(uint64_t n, char *buf, size_t len)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

static void human_count(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000ull)
        snprintf(buf, len, "%.2fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, len, "%.2fM", (double)n / 1e6);
    else if (n >= 1000ull)
        snprintf(buf, len, "%.1fK", (double)n / 1e3);
    else
        snprintf(buf, len, "%" PRIu64, n);
}

/* Shortest decimal that reads back as the same float ("1e-06", not
 * "9.99999997e-07"): GGUF stores most reals as f32. */
static double f32_shortest(double v, char *buf, size_t len)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if ((float)strtod(buf, NULL) == (float)v)
            break;
    }
    return strtod(buf, NULL);
}

static double kv_real(gguf_vtype t, double v, char *buf, size_t len)
{
    if (t == GGUF_TYPE_FLOAT32)
        return f32_shortest(v, buf, len);
    snprintf(buf, len, "%.17g", v);
    return v;
}

/* Prints s quoted, escaping control bytes, cut after max bytes. */
static void print_str(FILE *f, const char *s, uint64_t len, uint64_t max)
{
    fputc('"', f);
    for (uint64_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
    if (len > max)
        fprintf(f, "... (%" PRIu64 " bytes)", len);
}

static void print_scalar(FILE *f, const gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        fprintf(f, "%" PRId64, kv->v.i64);
        break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: {
        char buf[40];
        kv_real(kv->type, kv->v.f64, buf, sizeof buf);
        fputs(buf, f);
        break;
    }
    case GGUF_TYPE_BOOL:
        fputs(kv->v.b ? "true" : "false", f);
        break;
    case GGUF_TYPE_STRING:
        print_str(f, kv->v.str.ptr, kv->v.str.len, STR_SHOWN);
        break;
    default:
        fprintf(f, "%" PRIu64, kv->v.u64);
    }
}

static void print_array(FILE *f, const gguf_kv *kv)
{
    fprintf(f, "[%s x %" PRIu64 "]", gguf_vtype_name(kv->arr_type), kv->arr_n);
    uint64_t shown = kv->arr_n < ARRAY_HEAD ? kv->arr_n : ARRAY_HEAD;
    fputs(" [", f);
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            fputs(", ", f);
        if (kv->arr_type == GGUF_TYPE_STRING) {
            const gguf_str *s = (const gguf_str *)kv->v.arr + i;
            print_str(f, s->ptr, s->len, 24);
        } else if (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) {
            char buf[40];
            kv_real(kv->arr_type, gguf_arr_f64(kv, i), buf, sizeof buf);
            fputs(buf, f);
        } else if (kv->arr_type == GGUF_TYPE_UINT64) {
            fprintf(f, "%" PRIu64, (uint64_t)gguf_arr_i64(kv, i));
        } else {
            fprintf(f, "%" PRId64, gguf_arr_i64(kv, i));
        }
    }
    fputs(kv->arr_n > shown ? ", ...]" : "]", f);
}

static void print_value(FILE *f, const gguf_kv *kv)
{
    if (kv->type == GGUF_TYPE_ARRAY)
        print_array(f, kv);
    else
        print_scalar(f, kv);
}

static void shape_str(const gguf_tensor *t, char *buf, size_t len)
{
    int n = snprintf(buf, len, "[");
    for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < len; d++)
        n += snprintf(buf + n, len - (size_t)n, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
    if (n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "]");
}

/* --- summaries shared by text and JSON ------------------------------------ */

typedef struct type_total {
    int64_t tensors;
    uint64_t elements, bytes;
} type_total;

static void totals_by_type(const gguf_ctx *g, type_total *tot, uint64_t *params, uint64_t *bytes)
{
    memset(tot, 0, sizeof(type_total) * QT_COUNT);
    *params = *bytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        tot[t->type].tensors++;
        tot[t->type].elements += (uint64_t)t->n_elements;
        tot[t->type].bytes += t->size;
        *params += (uint64_t)t->n_elements;
        *bytes += t->size;
    }
}

static const char *arch_of(const gguf_ctx *g)
{
    const char *arch = NULL;
    if (gguf_get_str(g, "general.architecture", &arch, NULL) != 0)
        arch = NULL;
    return arch;
}

/* Hyperparameters are the keys "<arch>.*". */
static int is_hparam(const gguf_kv *kv, const char *arch)
{
    size_t n = arch ? strlen(arch) : 0;
    return n && !strncmp(kv->key, arch, n) && kv->key[n] == '.';
}

/* --- text output ------------------------------------------------------------ */

static void print_text(const gguf_ctx *g)
{
    char b1[64], b2[64];
    const char *arch = arch_of(g), *name = NULL;
    type_total tot[QT_COUNT];
    uint64_t params, bytes;
    totals_by_type(g, tot, &params, &bytes);
    gguf_get_str(g, "general.name", &name, NULL);

    human_bytes(gguf_file_size(g), b1, sizeof b1);
    printf("file:          %s (%s)\n", gguf_path(g), b1);
    printf("format:        GGUF v%u, alignment %u, data at offset %" PRIu64 "\n", gguf_version(g),
           gguf_alignment(g), gguf_data_offset(g));
    printf("architecture:  %s\n", arch ? arch : "(none)");
    if (name)
        printf("name:          %s\n", name);
    human_count(params, b1, sizeof b1);
    human_bytes(bytes, b2, sizeof b2);
    printf("parameters:    %s (%" PRIu64 "), %s of tensor data, %.2f bits per weight\n", b1, params,
           b2, params ? 8.0 * (double)bytes / (double)params : 0.0);

    printf("\nhyperparameters:\n");
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (!is_hparam(kv, arch))
            continue;
        printf("  %-44s ", kv->key + strlen(arch) + 1);
        print_value(stdout, kv);
        putchar('\n');
    }

    printf("\nmetadata (%" PRId64 " keys):\n", gguf_n_kv(g));
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (is_hparam(kv, arch))
            continue;
        printf("  %-44s %-7s ", kv->key, gguf_vtype_name(kv->type));
        print_value(stdout, kv);
        putchar('\n');
    }

    printf("\ntensors (%" PRId64 "):\n", gguf_n_tensors(g));
    printf("  %-48s %-7s %-24s %12s\n", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        shape_str(t, b1, sizeof b1);
        printf("  %-48s %-7s %-24s %12" PRIu64 "\n", t->name, quant_name(t->type), b1, t->size);
    }

    printf("\ntotals by type:\n");
    printf("  %-7s %8s %16s %16s %8s\n", "type", "tensors", "parameters", "bytes", "share");
    for (int ty = 0; ty < QT_COUNT; ty++) {
        if (!tot[ty].tensors)
            continue;
        printf("  %-7s %8" PRId64 " %16" PRIu64 " %16" PRIu64 " %7.1f%%\n", quant_name(ty),
               tot[ty].tensors, tot[ty].elements, tot[ty].bytes,
               bytes ? 100.0 * (double)tot[ty].bytes / (double)bytes : 0.0);
    }
}

/* --- JSON output ---------------------------------------------------------- */

static json_t *json_string_bytes(const char *s, uint64_t len)
{
    /* GGUF strings should be UTF-8; where not, fall back to a lossless escape. */
    json_t *j = json_stringn(s, (size_t)len);
    if (j)
        return j;
    char *buf = malloc((size_t)len * 4 + 1), *p = buf;
    if (!buf)
        return json_null();
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        p += c < 0x80 ? sprintf(p, "%c", c) : sprintf(p, "\\x%02x", c);
    }
    j = json_stringn(buf, (size_t)(p - buf));
    free(buf);
    return j ? j : json_null();
}

static json_t *json_array_elem(const gguf_kv *kv, uint64_t i)
{
    switch (kv->arr_type) {
    case GGUF_TYPE_STRING: {
        const gguf_str *s = (const gguf_str *)kv->v.arr + i;
        return json_string_bytes(s->ptr, s->len);
    }
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: {
        char buf[40];
        return json_real(kv_real(kv->arr_type, gguf_arr_f64(kv, i), buf, sizeof buf));
    }
    case GGUF_TYPE_BOOL:
        return json_boolean(gguf_arr_i64(kv, i));
    default:
        return json_integer(gguf_arr_i64(kv, i));
    }
}

/* Arrays longer than ARRAY_HEAD are summarised: {type, n, head}. */
static json_t *json_value(const gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        return json_integer(kv->v.i64);
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: {
        char buf[40];
        return json_real(kv_real(kv->type, kv->v.f64, buf, sizeof buf));
    }
    case GGUF_TYPE_BOOL:
        return json_boolean(kv->v.b);
    case GGUF_TYPE_STRING:
        return json_string_bytes(kv->v.str.ptr, kv->v.str.len);
    case GGUF_TYPE_ARRAY: {
        json_t *head = json_array();
        uint64_t shown = kv->arr_n <= ARRAY_HEAD ? kv->arr_n : ARRAY_HEAD;
        for (uint64_t i = 0; i < shown; i++)
            json_array_append_new(head, json_array_elem(kv, i));
        if (kv->arr_n <= ARRAY_HEAD)
            return head;
        return json_pack("{s:s, s:I, s:o}", "array_of", gguf_vtype_name(kv->arr_type), "n",
                         (json_int_t)kv->arr_n, "head", head);
    }
    default:
        return json_integer((json_int_t)kv->v.u64);
    }
}

static json_t *json_tensor(const gguf_tensor *t)
{
    json_t *shape = json_array();
    for (uint32_t d = 0; d < t->n_dims; d++)
        json_array_append_new(shape, json_integer(t->ne[d]));
    return json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type", quant_name(t->type),
                     "shape", shape, "offset", (json_int_t)t->offset, "bytes", (json_int_t)t->size);
}

static int print_json(const gguf_ctx *g)
{
    type_total tot[QT_COUNT];
    uint64_t params, bytes;
    totals_by_type(g, tot, &params, &bytes);
    const char *arch = arch_of(g);
    json_t *hp = json_object(), *meta = json_object(), *tensors = json_array(),
           *totals = json_object();
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (is_hparam(kv, arch))
            json_object_set_new(hp, kv->key + strlen(arch) + 1, json_value(kv));
        json_object_set_new(meta, kv->key, json_value(kv));
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++)
        json_array_append_new(tensors, json_tensor(gguf_tensor_at(g, i)));
    for (int ty = 0; ty < QT_COUNT; ty++)
        if (tot[ty].tensors)
            json_object_set_new(totals, quant_name(ty),
                                json_pack("{s:I, s:I, s:I}", "tensors", (json_int_t)tot[ty].tensors,
                                          "parameters", (json_int_t)tot[ty].elements, "bytes",
                                          (json_int_t)tot[ty].bytes));
    json_t *root = json_pack(
        "{s:s, s:I, s:i, s:i, s:I, s:o, s:I, s:I, s:o, s:o, s:o, s:o}", "file", gguf_path(g),
        "file_size", (json_int_t)gguf_file_size(g), "version", (int)gguf_version(g), "alignment",
        (int)gguf_alignment(g), "data_offset", (json_int_t)gguf_data_offset(g), "architecture",
        arch ? json_string(arch) : json_null(), "parameters", (json_int_t)params, "tensor_bytes",
        (json_int_t)bytes, "hyperparameters", hp, "metadata", meta, "tensors", tensors,
        "totals_by_type", totals);
    if (!root)
        return cli_fail("inspect: could not build JSON");
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    putchar('\n');
    json_decref(root);
    return rc ? cli_fail("inspect: write failed") : 0;
}

/* --- dump ------------------------------------------------------------------ */

static int dump_tensor(const gguf_ctx *g, const char *name, const char *out)
{
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t)
        return cli_fail("inspect: no tensor named '%s' in %s", name, gguf_path(g));
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr->to_float)
        return cli_fail("inspect: cannot dequantize tensor '%s' of type %s", name, tr->name);
    FILE *f = strcmp(out, "-") ? fopen(out, "wb") : stdout;
    if (!f)
        return cli_fail("inspect: %s: %s", out, strerror(errno));
    int64_t row = t->ne[0], rows = t->n_elements / row;
    size_t row_bytes = quant_row_size(t->type, row);
    float *buf = malloc((size_t)row * sizeof *buf);
    const uint8_t *src = gguf_tensor_data(g, t);
    int rc = buf ? 0 : cli_fail("inspect: out of memory");
    for (int64_t r = 0; r < rows && !rc; r++) {
        tr->to_float(src + (size_t)r * row_bytes, buf, row);
        if (fwrite(buf, sizeof *buf, (size_t)row, f) != (size_t)row)
            rc = cli_fail("inspect: %s: write failed: %s", out, strerror(errno));
    }
    free(buf);
    if (f != stdout && fclose(f) != 0 && !rc)
        rc = cli_fail("inspect: %s: %s", out, strerror(errno));
    if (!rc && f != stdout)
        fprintf(stderr, "wrote %" PRId64 " float32 values of '%s' (%s) to %s\n", t->n_elements, name,
                tr->name, out);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *dump = NULL, *out = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "spillway inspect: unexpected argument '%s'\n%s", argv[i], usage_text);
            return 2;
        } else
            path = argv[i];
    }
    if (!path || (dump && !out) || (out && !dump)) {
        fputs(usage_text, stderr);
        return 2;
    }
    gguf_ctx *g;
    sw_err err;
    char *file;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) /* any file, a split part too */
        file = strdup(path);
    else if (catalog_resolve(path, NULL, &file, &err) < 0)
        return cli_fail("%s", err.msg);
    if (!file)
        return cli_fail("out of memory");
    int rc = gguf_open(file, dump ? GGUF_MMAP : GGUF_NO_DATA, &g, &err);
    free(file);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    rc = dump ? dump_tensor(g, dump, out) : json ? print_json(g) : (print_text(g), 0);
    gguf_close(g);
    return rc;
}
