/*
 * trace.c — routing traces: JSON-lines reading and writing, engine order.
 * See trace.h for the format and the order kept in memory.
 */
#include "store/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void trace_init(trace *t)
{
    memset(t, 0, sizeof *t);
    strmap_init(&t->seq_index);
    t->sorted = 1;
}

void trace_free(trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_seqs; i++) {
        free(t->seqs[i].key);
        free(t->seqs[i].dataset);
    }
    free(t->seqs);
    free(t->steps);
    free(t->experts);
    free(t->probs);
    strmap_free(&t->seq_index);
    trace_init(t);
}

/* Grows *buf (of *cap elements of size elem) to hold need elements. */
static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return SW_ENOMEM;
        n *= 2;
    }
    void *p = realloc(*buf, n * elem);
    if (!p)
        return SW_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static int seq_get(trace *t, const char *dataset, int64_t problem_id, uint32_t *out)
{
    char key[320];
    int n = snprintf(key, sizeof key, "%s\x1f%" PRId64, dataset, problem_id);
    if (n < 0 || (size_t)n >= sizeof key)
        return SW_EINVAL;
    int64_t i = strmap_get(&t->seq_index, key);
    if (i >= 0) {
        *out = (uint32_t)i;
        return 0;
    }
    if (t->n_seqs >= UINT32_MAX - 1 ||
        grow((void **)&t->seqs, &t->cap_seqs, t->n_seqs + 1, sizeof *t->seqs))
        return SW_ENOMEM;
    trace_seq *s = &t->seqs[t->n_seqs];
    memset(s, 0, sizeof *s);
    s->key = strdup(key);
    s->dataset = strdup(dataset);
    s->problem_id = problem_id;
    if (!s->key || !s->dataset || strmap_put(&t->seq_index, s->key, (int64_t)t->n_seqs) < 0) {
        free(s->key);
        free(s->dataset);
        return SW_ENOMEM;
    }
    *out = (uint32_t)t->n_seqs++;
    return 0;
}

int trace_add(trace *t, const char *dataset, int64_t problem_id, int token, int layer,
              const int *experts, const float *probs, int n, sw_err *err)
{
    if (layer < 0 || layer > 0xffff)
        return sw_errf(err, SW_ERANGE, "layer %d is outside 0..65535", layer);
    if (token < 0)
        return sw_errf(err, SW_ERANGE, "token_idx %d is negative", token);
    if (n < 1 || n > TRACE_MAX_K)
        return sw_errf(err, SW_ERANGE, "a row has %d experts (1..%d allowed)", n, TRACE_MAX_K);
    if (strlen(dataset) > 255)
        return sw_errf(err, SW_ERANGE, "dataset name longer than 255 bytes");
    for (int i = 0; i < n; i++) {
        if (experts[i] < 0 || experts[i] > 0xffff)
            return sw_errf(err, SW_ERANGE, "expert %d is outside 0..65535", experts[i]);
        for (int j = 0; j < i; j++)
            if (experts[j] == experts[i])
                return sw_errf(err, SW_EFORMAT, "expert %d appears twice in one row", experts[i]);
    }
    if (t->n_picks > UINT32_MAX - (size_t)n)
        return sw_errf(err, SW_ERANGE, "trace too large");
    uint32_t seq;
    size_t old_cap = t->cap_picks;
    if (seq_get(t, dataset, problem_id, &seq) ||
        grow((void **)&t->steps, &t->cap_steps, t->n_steps + 1, sizeof *t->steps) ||
        grow((void **)&t->experts, &t->cap_picks, t->n_picks + (size_t)n, sizeof *t->experts))
        return sw_errf(err, SW_ENOMEM, "out of memory for the trace");
    /* probs shares experts' capacity: grow it when that grew (only then: a
     * realloc to the same size may still copy, e.g. under ASan) */
    if (t->cap_picks != old_cap || !t->probs) {
        float *pr = realloc(t->probs, t->cap_picks * sizeof *pr);
        if (!pr) {
            t->cap_picks = old_cap < t->cap_picks ? old_cap : t->cap_picks;
            return sw_errf(err, SW_ENOMEM, "out of memory for the trace");
        }
        t->probs = pr;
    }
    trace_step *s = &t->steps[t->n_steps++];
    *s = (trace_step){.seq = seq, .token = token, .layer = (uint16_t)layer,
                      .n = (uint16_t)n, .off = (uint32_t)t->n_picks};
    for (int i = 0; i < n; i++) {
        t->experts[t->n_picks + (size_t)i] = (uint16_t)experts[i];
        t->probs[t->n_picks + (size_t)i] = probs ? probs[i] : 0.0f;
        if (experts[i] + 1 > t->n_experts)
            t->n_experts = experts[i] + 1;
    }
    t->n_picks += (size_t)n;
    if (layer + 1 > t->n_layers)
        t->n_layers = layer + 1;
    if (n > t->top_k)
        t->top_k = n;
    if (token + 1 > t->seqs[seq].n_tokens)
        t->seqs[seq].n_tokens = token + 1;
    t->sorted = 0;
    return 0;
}

static int cmp_engine(const void *a, const void *b)
{
    const trace_step *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    if (x->token != y->token)
        return x->token < y->token ? -1 : 1;
    return (x->layer > y->layer) - (x->layer < y->layer);
}

int trace_finish(trace *t, sw_err *err)
{
    if (t->sorted)
        return 0;
    qsort(t->steps, t->n_steps, sizeof *t->steps, cmp_engine);
    for (size_t i = 0; i < t->n_seqs; i++)
        t->seqs[i].n_steps = 0;
    for (size_t i = 0; i < t->n_steps; i++) {
        trace_step *s = &t->steps[i];
        if (i > 0 && !cmp_engine(s, s - 1)) {
            trace_seq *q = &t->seqs[s->seq];
            return sw_errf(err, SW_EFORMAT, "%s problem %" PRId64 ": token %d, layer %d appears twice",
                           q->dataset, q->problem_id, s->token, s->layer);
        }
        if (t->seqs[s->seq].n_steps++ == 0)
            t->seqs[s->seq].first = i;
    }
    t->sorted = 1;
    return 0;
}

size_t trace_n_tokens(const trace *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_seqs; i++)
        n += (size_t)t->seqs[i].n_tokens;
    return n;
}

/* --- reading ----------------------------------------------------------------- */

static int get_int(json_t *row, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   sw_err *err)
{
    json_t *v = json_object_get(row, key);
    if (!v)
        return sw_errf(err, SW_EFORMAT, "missing \"%s\"", key);
    if (!json_is_integer(v))
        return sw_errf(err, SW_EFORMAT, "\"%s\" is not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return sw_errf(err, SW_ERANGE, "\"%s\" = %" JSON_INTEGER_FORMAT " is outside %" PRId64
                       "..%" PRId64, key, x, lo, hi);
    *out = (int64_t)x;
    return 0;
}

/* One row's fields, checked, into trace_add. */
static int add_row(trace *t, json_t *row, sw_err *err)
{
    int64_t pid, layer, token;
    int experts[TRACE_MAX_K];
    float probs[TRACE_MAX_K];
    if (!json_is_object(row))
        return sw_errf(err, SW_EFORMAT, "a row is not a JSON object");
    json_t *ds = json_object_get(row, "dataset");
    if (!json_is_string(ds))
        return sw_errf(err, SW_EFORMAT, "\"dataset\" is missing or not a string");
    int rc = get_int(row, "problem_id", INT64_MIN, INT64_MAX, &pid, err);
    if (!rc)
        rc = get_int(row, "layer", 0, 0xffff, &layer, err);
    if (!rc)
        rc = get_int(row, "token_idx", 0, INT32_MAX - 1, &token, err);
    if (rc)
        return rc;
    json_t *ex = json_object_get(row, "experts"), *gp = json_object_get(row, "gating_probs");
    if (!json_is_array(ex))
        return sw_errf(err, SW_EFORMAT, "\"experts\" is missing or not an array");
    size_t n = json_array_size(ex);
    if (n < 1 || n > TRACE_MAX_K)
        return sw_errf(err, SW_ERANGE, "\"experts\" has %zu entries (1..%d allowed)", n,
                       TRACE_MAX_K);
    if (gp && (!json_is_array(gp) || json_array_size(gp) != n))
        return sw_errf(err, SW_EFORMAT, "\"gating_probs\" is not an array of %zu numbers", n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ex, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 0xffff)
            return sw_errf(err, SW_EFORMAT, "\"experts\"[%zu] is not an expert id in 0..65535", i);
        experts[i] = (int)json_integer_value(e);
        probs[i] = 0;
        if (gp) {
            json_t *g = json_array_get(gp, i);
            if (!json_is_number(g))
                return sw_errf(err, SW_EFORMAT, "\"gating_probs\"[%zu] is not a number", i);
            probs[i] = (float)json_number_value(g);
        }
    }
    return trace_add(t, json_string_value(ds), pid, (int)token, (int)layer, experts, probs,
                     (int)n, err);
}

int trace_load(trace *t, const char *path, sw_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t i = 0;
        while (i < (size_t)len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' ||
                                   line[i] == '\n'))
            i++;
        if (i == (size_t)len)
            continue; /* blank line */
        json_error_t jerr;
        json_t *row = json_loadb(line, (size_t)len, 0, &jerr);
        if (!row) {
            rc = sw_errf(err, SW_EFORMAT, "%s:%zu:%d: %s", path, lineno, jerr.column, jerr.text);
            goto done;
        }
        rc = add_row(t, row, err);
        json_decref(row);
        if (rc) {
            sw_err_prefix(err, "%s:%zu", path, lineno);
            goto done;
        }
    }
    if (ferror(f)) {
        rc = sw_errf(err, SW_EIO, "%s: read error: %s", path, strerror(errno));
        goto done;
    }
    rc = trace_finish(t, err);
    if (rc)
        sw_err_prefix(err, "%s", path);
done:
    free(line);
    fclose(f);
    return rc;
}

/* --- writing ----------------------------------------------------------------- */

static void write_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* The shortest decimal that reads back as the same float. */
static void write_float(FILE *f, float v)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strcat(buf, ".0"); /* keep it a JSON real, as the recorders write it */
    fputs(buf, f);
}

/* A row's place in file order (sequence, layer, token). */
struct file_pos {
    uint32_t seq;
    int32_t token;
    uint16_t layer;
    size_t step;
};

static int cmp_file(const void *a, const void *b)
{
    const struct file_pos *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return (x->token > y->token) - (x->token < y->token);
}

int trace_write_file(const trace *t, FILE *f, sw_err *err)
{
    struct file_pos *order = malloc((t->n_steps ? t->n_steps : 1) * sizeof *order);
    if (!order)
        return sw_errf(err, SW_ENOMEM, "out of memory writing the trace");
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *s = &t->steps[i];
        order[i] = (struct file_pos){s->seq, s->token, s->layer, i};
    }
    qsort(order, t->n_steps, sizeof *order, cmp_file);
    for (size_t i = 0; i < t->n_steps; i++) {
        const trace_step *s = &t->steps[order[i].step];
        const trace_seq *q = &t->seqs[s->seq];
        fputs("{\"dataset\": ", f);
        write_json_str(f, q->dataset);
        fprintf(f, ", \"problem_id\": %" PRId64 ", \"layer\": %d, \"experts\": [", q->problem_id,
                s->layer);
        for (int k = 0; k < s->n; k++)
            fprintf(f, k ? ", %d" : "%d", t->experts[s->off + (uint32_t)k]);
        fputs("], \"gating_probs\": [", f);
        for (int k = 0; k < s->n; k++) {
            if (k)
                fputs(", ", f);
            write_float(f, t->probs[s->off + (uint32_t)k]);
        }
        fprintf(f, "], \"token_idx\": %d}\n", s->token);
    }
    free(order);
    if (ferror(f))
        return sw_errf(err, SW_EIO, "write error: %s", strerror(errno));
    return 0;
}

int trace_write(const trace *t, const char *path, sw_err *err)
{
    if (!strcmp(path, "-")) {
        int rc = trace_write_file(t, stdout, err);
        return rc ? rc : (fflush(stdout) ? sw_errf(err, SW_EIO, "stdout: %s", strerror(errno)) : 0);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    int rc = trace_write_file(t, f, err);
    if (fclose(f) && !rc)
        rc = sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    if (rc)
        sw_err_prefix(err, "%s", path);
    return rc;
}
