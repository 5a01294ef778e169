/*
 * gen_write.c — writing a generated model: metadata, tokenizer, and the
 * tensor data streamed through a ring of buffers.
 *
 * The calling thread produces: for each chunk of at most GEN_CHUNK_BYTES of
 * one tensor's rows, it waits for a free buffer of the ring, has the pool
 * fill it (each task generates and quantizes a run of rows, with its own
 * float scratch row), and marks it full. A writer thread consumes the ring
 * in the same order and appends each buffer (and the padding after a
 * tensor's last one) to the file through the sink below. So quantization
 * of chunk k+1 overlaps the write of chunk k, memory use is GEN_NBUF
 * buffers whatever the model's size, and the order of bytes in the file
 * never depends on timing. The header comes from the GGUF writer
 * (gguf_writer_begin); the data follows it laid out as that writer lays it
 * out (each tensor padded to the alignment), which check_file confirms by
 * reading the finished file's header back.
 *
 * If the writer fails it records the error and keeps draining the ring
 * without writing, so the producer never blocks; the producer sees the
 * error at its next chunk and stops.
 */
#include "gen/gen.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN_CHUNK_BYTES ((size_t)16 << 20)
#define GEN_NBUF 3
#define GEN_MAX_TEMPLATE ((long)1 << 20)

/* Token types (llama_token_type) and the score the converter gives padding. */
#define TOKEN_TYPE_UNUSED 5
#define PAD_SCORE -1000.0f

/* --- tokenizer ---------------------------------------------------------------- */

/* tokenizer.ggml.tokens padded with "[PAD<i>]" up to n_vocab. */
static int put_tokens(gguf_writer *w, const gguf_kv *kv, int64_t n_vocab, sw_err *err)
{
    const gguf_str *src = kv->v.arr;
    const uint64_t n = kv->arr_n, n_pad = (uint64_t)n_vocab - n;
    gguf_str *strs = malloc((size_t)n_vocab * sizeof *strs);
    char *names = malloc((size_t)n_pad * 24 + 1);
    int rc = 0;
    if (!strs || !names) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(strs, src, (size_t)n * sizeof *strs);
    char *p = names;
    for (uint64_t i = n; i < (uint64_t)n_vocab; i++) {
        int len = snprintf(p, 24, "[PAD%" PRIu64 "]", i);
        strs[i] = (gguf_str){p, (uint64_t)len};
        p += len + 1;
    }
    if ((rc = gguf_writer_set_arr_str(w, kv->key, strs, (uint64_t)n_vocab)))
        rc = sw_errf(err, rc, "out of memory");
out:
    free(strs);
    free(names);
    return rc;
}

/* A per-token numeric array (scores, token types) padded with pad. */
static int put_token_array(gguf_writer *w, const gguf_kv *kv, int64_t n_vocab, const void *pad,
                           sw_err *err)
{
    const size_t es = gguf_vtype_size(kv->arr_type);
    uint8_t *data = malloc((size_t)n_vocab * es);
    if (!data)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    memcpy(data, kv->v.arr, (size_t)kv->arr_n * es);
    for (uint64_t i = kv->arr_n; i < (uint64_t)n_vocab; i++)
        memcpy(data + i * es, pad, es);
    int rc = gguf_writer_set_arr(w, kv->key, kv->arr_type, data, (uint64_t)n_vocab);
    free(data);
    return rc ? sw_errf(err, rc, "out of memory") : 0;
}

int gen_copy_tokenizer(gguf_writer *w, const char *path, int64_t n_vocab, sw_err *err)
{
    gguf_ctx *v = NULL;
    int rc = gguf_open(path, GGUF_NO_DATA, &v, err);
    if (rc)
        return sw_err_prefix(err, "tokenizer");
    const gguf_kv *tok = gguf_find_kv(v, "tokenizer.ggml.tokens");
    if (!tok || tok->type != GGUF_TYPE_ARRAY || tok->arr_type != GGUF_TYPE_STRING) {
        rc = sw_errf(err, SW_EFORMAT, "%s: no tokenizer.ggml.tokens", path);
        goto out;
    }
    const uint64_t n_tok = tok->arr_n;
    if (n_tok > (uint64_t)n_vocab) {
        rc = sw_errf(err, SW_EINVAL, "%s: %" PRIu64 " tokens, more than the model's %" PRId64,
                     path, n_tok, n_vocab);
        goto out;
    }
    const float pad_score = PAD_SCORE;
    const int32_t pad_type = TOKEN_TYPE_UNUSED;
    for (int64_t i = 0; i < gguf_n_kv(v) && !rc; i++) {
        const gguf_kv *kv = gguf_kv_at(v, i);
        if (strncmp(kv->key, "tokenizer.", 10))
            continue;
        bool per_token = kv->type == GGUF_TYPE_ARRAY && kv->arr_n == n_tok;
        if (kv == tok)
            rc = put_tokens(w, kv, n_vocab, err);
        else if (per_token && !strcmp(kv->key, "tokenizer.ggml.scores") &&
                 kv->arr_type == GGUF_TYPE_FLOAT32)
            rc = put_token_array(w, kv, n_vocab, &pad_score, err);
        else if (per_token && !strcmp(kv->key, "tokenizer.ggml.token_type") &&
                 kv->arr_type == GGUF_TYPE_INT32)
            rc = put_token_array(w, kv, n_vocab, &pad_type, err);
        else if ((rc = gguf_writer_set_kv(w, kv)))
            rc = sw_errf(err, rc, "tokenizer key %s: %s", kv->key, sw_strerror(rc));
    }
out:
    gguf_close(v);
    return rc;
}

static int set_template(gguf_writer *w, const char *path, sw_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    char *text = malloc((size_t)GEN_MAX_TEMPLATE + 1);
    size_t n = text ? fread(text, 1, (size_t)GEN_MAX_TEMPLATE + 1, f) : 0;
    int rc = 0;
    if (!text)
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    else if (ferror(f))
        rc = sw_errf(err, SW_EIO, "%s: read failed", path);
    else if (n > (size_t)GEN_MAX_TEMPLATE)
        rc = sw_errf(err, SW_EINVAL, "%s: a chat template over 1 MiB", path);
    else {
        text[n] = 0;
        if ((rc = gguf_writer_set_str(w, "tokenizer.chat_template", text)))
            rc = sw_errf(err, rc, "out of memory");
    }
    free(text);
    fclose(f);
    return rc;
}

static int write_metadata(const gen_plan *plan, const gen_options *opt, gguf_writer *w,
                          sw_err *err)
{
    int rc = gen_plan_metadata(plan, opt->seed, w, err);
    if (!rc && opt->vocab_path)
        rc = gen_copy_tokenizer(w, opt->vocab_path, plan->spec->n_vocab, err);
    if (!rc && opt->template_path)
        rc = set_template(w, opt->template_path, err);
    if (!rc && (gguf_writer_set_u32(w, "general.quantization_version", 2) ||
                gguf_writer_set_u32(w, "general.file_type", (uint32_t)plan->ftype->id)))
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
    for (int i = 0; i < plan->n_tensors && !rc; i++) {
        const gen_tensor *t = &plan->tensors[i];
        rc = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err);
    }
    return rc;
}

/* --- the header ----------------------------------------------------------------- */

static uint64_t pad_to(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

/* Writes the header with the GGUF writer and returns its (padded) size.
 * The writer is freed (an unfinished writer closes its file as it is):
 * the data section is written by the sink below. */
static int write_header(gguf_writer *w, const char *path, uint64_t *size, bool *created,
                        sw_err *err)
{
    int rc = gguf_writer_begin(w, path, err);
    *created = rc == 0;
    gguf_writer_free(w);
    struct stat st;
    if (!rc && stat(path, &st))
        rc = sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    if (!rc)
        *size = (uint64_t)st.st_size;
    return rc;
}

/* Reads the header back and checks that every tensor is where the data was
 * written and the file ends after the last one's padding. */
static int check_file(const gen_plan *plan, const char *path, sw_err *err)
{
    gguf_ctx *g = NULL;
    int rc = gguf_open(path, GGUF_NO_DATA, &g, err);
    if (rc)
        return sw_err_prefix(err, "the written file");
    uint64_t off = 0;
    for (int i = 0; i < plan->n_tensors && !rc; i++) {
        const gguf_tensor *t = i < gguf_n_tensors(g) ? gguf_tensor_at(g, i) : NULL;
        if (!t || t->offset != off || t->size != plan->tensors[i].size)
            rc = sw_errf(err, SW_EIO, "%s: tensor %d is not where its data was written", path, i);
        off += pad_to(plan->tensors[i].size, gguf_alignment(g));
    }
    if (!rc && (gguf_n_tensors(g) != plan->n_tensors ||
                gguf_data_offset(g) + off != gguf_file_size(g)))
        rc = sw_errf(err, SW_EIO, "%s: the file does not end where its data does", path);
    gguf_close(g);
    return rc;
}

/* --- the sink: the data section, written around the page cache ------------------ */

/*
 * A model-sized file written through the page cache evicts everything else
 * the machine had cached (the very thing spillway is careful about), and on
 * virtual machines the buffered path is also the slow one: here 200-400
 * MB/s against 1.7 GB/s with O_DIRECT. So the data goes out with O_DIRECT
 * where the file system allows it (else through plain pwrite, same code).
 * O_DIRECT wants block-aligned offsets, lengths and memory: bytes are
 * staged in an aligned buffer whose start is a block boundary of the file
 * (the first block, shared with the header's end, is read back), whole
 * blocks are written as the buffer fills, and the last partial block is
 * written padded and the file then truncated to its size.
 */
#define SINK_BLOCK 4096
#define SINK_STAGE ((size_t)8 << 20)

typedef struct sink {
    int fd;
    uint8_t *stage; /* SINK_STAGE bytes, SINK_BLOCK-aligned */
    size_t fill;    /* bytes staged */
    uint64_t off;   /* file offset of stage[0], block-aligned */
    const char *path;
} sink;

static int sink_open(sink *k, const char *path, uint64_t header_size, sw_err *err)
{
    *k = (sink){.fd = -1, .path = path, .off = header_size / SINK_BLOCK * SINK_BLOCK};
    k->fill = (size_t)(header_size - k->off);
    k->stage = aligned_alloc(SINK_BLOCK, SINK_STAGE);
    if (!k->stage)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    k->fd = open(path, O_RDWR | O_DIRECT);
    if (k->fd < 0 && errno == EINVAL) /* tmpfs and others: no O_DIRECT */
        k->fd = open(path, O_RDWR);
    if (k->fd < 0)
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    /* the header's last partial block, which the first write rewrites */
    ssize_t got = pread(k->fd, k->stage, SINK_BLOCK, (off_t)k->off);
    if (got < (ssize_t)k->fill)
        return sw_errf(err, SW_EIO, "%s: cannot read the header back: %s", path,
                       got < 0 ? strerror(errno) : "short read");
    return 0;
}

static int sink_write(sink *k, size_t n, sw_err *err)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(k->fd, k->stage + done, n - done, (off_t)(k->off + done));
        if (w <= 0)
            return sw_errf(err, SW_EIO, "%s: write failed: %s", k->path,
                           w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    return 0;
}

/* Writes the whole blocks staged and keeps the rest. */
static int sink_flush(sink *k, sw_err *err)
{
    size_t whole = k->fill / SINK_BLOCK * SINK_BLOCK;
    int rc = sink_write(k, whole, err);
    if (rc)
        return rc;
    memmove(k->stage, k->stage + whole, k->fill - whole);
    k->fill -= whole;
    k->off += whole;
    return 0;
}

/* Appends n bytes (zeros if src is NULL). */
static int sink_put(sink *k, const uint8_t *src, size_t n, sw_err *err)
{
    while (n) {
        size_t m = SINK_STAGE - k->fill < n ? SINK_STAGE - k->fill : n;
        if (src) {
            memcpy(k->stage + k->fill, src, m);
            src += m;
        } else {
            memset(k->stage + k->fill, 0, m);
        }
        k->fill += m;
        n -= m;
        if (k->fill == SINK_STAGE) {
            int rc = sink_flush(k, err);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Writes the last block padded, then cuts the file to its size. */
static int sink_close(sink *k, bool ok, sw_err *err)
{
    int rc = 0;
    if (ok && k->fd >= 0) {
        uint64_t size = k->off + k->fill;
        size_t padded = (size_t)pad_to(k->fill, SINK_BLOCK);
        memset(k->stage + k->fill, 0, padded - k->fill);
        rc = sink_write(k, padded, err);
        if (!rc && ftruncate(k->fd, (off_t)size))
            rc = sw_errf(err, SW_EIO, "%s: %s", k->path, strerror(errno));
    }
    if (k->fd >= 0 && close(k->fd) && ok && !rc)
        rc = sw_errf(err, SW_EIO, "%s: %s", k->path, strerror(errno));
    free(k->stage);
    return rc;
}

/* --- streaming the data ------------------------------------------------------- */

typedef struct ring {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct {
        uint8_t *p;
        size_t len, pad; /* bytes, then zeros up to the next tensor */
        bool full;
    } buf[GEN_NBUF];
    bool done;
    int rc; /* the writer's first error */
    sw_err err;
    sink *out;
} ring;

static void *writer_main(void *arg)
{
    ring *r = arg;
    for (unsigned i = 0;; i++) {
        pthread_mutex_lock(&r->mu);
        while (!r->buf[i % GEN_NBUF].full && !r->done)
            pthread_cond_wait(&r->cv, &r->mu);
        bool have = r->buf[i % GEN_NBUF].full;
        bool failed = r->rc != 0;
        pthread_mutex_unlock(&r->mu);
        if (!have)
            break; /* the producer fills in order: nothing after this one either */
        int rc = 0;
        if (!failed)
            rc = sink_put(r->out, r->buf[i % GEN_NBUF].p, r->buf[i % GEN_NBUF].len, &r->err);
        if (!failed && !rc)
            rc = sink_put(r->out, NULL, r->buf[i % GEN_NBUF].pad, &r->err);
        pthread_mutex_lock(&r->mu);
        if (rc && !r->rc)
            r->rc = rc;
        r->buf[i % GEN_NBUF].full = false;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

typedef struct fill_job {
    const gen_tensor *t;
    const gen_spec *spec;
    uint64_t seed;
    gen_quant_fn quantize;
    int64_t row0, n_rows, rows_per_task;
    size_t row_bytes;
    uint8_t *dst;
    float **scratch; /* one row of floats per pool thread */
} fill_job;

static void fill_task(void *ctx, int task, int n_tasks, int thread)
{
    const fill_job *j = ctx;
    float *x = j->scratch[thread];
    int64_t a = (int64_t)task * j->rows_per_task;
    int64_t b = a + j->rows_per_task < j->n_rows ? a + j->rows_per_task : j->n_rows;
    for (int64_t r = a; r < b; r++) {
        gen_fill_row(j->t, j->spec, j->seed, j->row0 + r, x);
        j->quantize(x, j->dst + (size_t)r * j->row_bytes, j->t->ne[0]);
    }
}

/* Fills and hands over every chunk of every tensor; returns the first error
 * (its own or the writer's, which is left in r->err). */
static int produce(const gen_plan *plan, const gen_options *opt, ring *r, float **scratch)
{
    const int n_threads = sw_pool_size(opt->pool);
    uint64_t done = 0;
    unsigned k = 0;
    for (int i = 0; i < plan->n_tensors; i++) {
        const gen_tensor *t = &plan->tensors[i];
        const int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        fill_job job = {
            .t = t, .spec = plan->spec, .seed = opt->seed,
            .quantize = gen_quantizer(t->type, opt->exact),
            .row_bytes = (size_t)(t->size / (uint64_t)rows), .scratch = scratch,
        };
        int64_t per_chunk = (int64_t)(GEN_CHUNK_BYTES / job.row_bytes);
        per_chunk = per_chunk < 1 ? 1 : per_chunk;
        for (job.row0 = 0; job.row0 < rows; job.row0 += job.n_rows) {
            job.n_rows = rows - job.row0 < per_chunk ? rows - job.row0 : per_chunk;
            job.rows_per_task = job.n_rows / (8 * n_threads);
            job.rows_per_task = job.rows_per_task < 1 ? 1 : job.rows_per_task;
            const int n_tasks = (int)((job.n_rows + job.rows_per_task - 1) / job.rows_per_task);
            const bool last = job.row0 + job.n_rows == rows;

            unsigned slot = k++ % GEN_NBUF;
            pthread_mutex_lock(&r->mu);
            while (r->buf[slot].full && !r->rc)
                pthread_cond_wait(&r->cv, &r->mu);
            int rc = r->rc;
            pthread_mutex_unlock(&r->mu);
            if (rc)
                return rc;

            job.dst = r->buf[slot].p;
            sw_pool_run(opt->pool, fill_task, &job, n_tasks);

            pthread_mutex_lock(&r->mu);
            r->buf[slot].len = (size_t)job.n_rows * job.row_bytes;
            r->buf[slot].pad = last ? (size_t)(pad_to(t->size, GGUF_DEFAULT_ALIGNMENT) - t->size) : 0;
            r->buf[slot].full = true;
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
            done += (size_t)job.n_rows * job.row_bytes;
            if (opt->progress)
                opt->progress(opt->progress_ctx, done, plan->n_bytes);
        }
    }
    return 0;
}

/* Buffers and scratch rows sized for the plan's largest row. */
static int stream_data(const gen_plan *plan, const gen_options *opt, sink *out, sw_err *err)
{
    const int n_threads = sw_pool_size(opt->pool);
    size_t buf_bytes = GEN_CHUNK_BYTES;
    int64_t max_row = 1;
    for (int i = 0; i < plan->n_tensors; i++) {
        const gen_tensor *t = &plan->tensors[i];
        size_t row_bytes = (size_t)(t->size / (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        buf_bytes = row_bytes > buf_bytes ? row_bytes : buf_bytes;
        max_row = t->ne[0] > max_row ? t->ne[0] : max_row;
    }
    ring r = {.out = out};
    float **scratch = calloc((size_t)n_threads, sizeof *scratch);
    int rc = scratch ? 0 : SW_ENOMEM;
    for (int i = 0; i < n_threads && !rc; i++)
        if (!(scratch[i] = malloc((size_t)max_row * sizeof(float))))
            rc = SW_ENOMEM;
    for (int i = 0; i < GEN_NBUF && !rc; i++)
        if (!(r.buf[i].p = malloc(buf_bytes)))
            rc = SW_ENOMEM;
    if (rc) {
        rc = sw_errf(err, SW_ENOMEM, "out of memory");
        goto out;
    }
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    pthread_t writer;
    if (pthread_create(&writer, NULL, writer_main, &r)) {
        rc = sw_errf(err, SW_ENOMEM, "cannot start the writer thread");
    } else {
        rc = produce(plan, opt, &r, scratch);
        pthread_mutex_lock(&r.mu);
        r.done = true;
        pthread_cond_broadcast(&r.cv);
        pthread_mutex_unlock(&r.mu);
        pthread_join(writer, NULL);
        if (r.rc) {
            rc = r.rc;
            if (err)
                *err = r.err;
        }
    }
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
out:
    for (int i = 0; i < GEN_NBUF; i++)
        free(r.buf[i].p);
    for (int i = 0; scratch && i < n_threads; i++)
        free(scratch[i]);
    free(scratch);
    return rc;
}

int gen_write(const gen_plan *plan, const gen_options *opt, sw_err *err)
{
    for (int i = 0; i < plan->n_tensors; i++)
        if (!gen_quantizer(plan->tensors[i].type, opt->exact))
            return sw_errf(err, SW_EUNSUPPORTED, "tensor '%s': no quantizer for %s",
                           plan->tensors[i].name, quant_name(plan->tensors[i].type));
    struct stat st;
    if (stat(opt->out, &st) == 0 && !S_ISREG(st.st_mode))
        return sw_errf(err, SW_EINVAL, "%s: not a regular file", opt->out);
    gguf_writer *w = gguf_writer_new();
    if (!w)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    bool created = false;
    uint64_t header = 0, data = 0;
    for (int i = 0; i < plan->n_tensors; i++)
        data += pad_to(plan->tensors[i].size, GGUF_DEFAULT_ALIGNMENT);
    int rc = write_metadata(plan, opt, w, err);
    if (rc)
        gguf_writer_free(w);
    else
        rc = write_header(w, opt->out, &header, &created, err);
    if (!rc && opt->header_only) {
        /* the data section as a hole: full size, reads as zeros */
        if (truncate(opt->out, (off_t)(header + data)))
            rc = sw_errf(err, SW_EIO, "%s: %s", opt->out, strerror(errno));
    } else if (!rc) {
        sink out;
        rc = sink_open(&out, opt->out, header, err);
        if (!rc)
            rc = stream_data(plan, opt, &out, err);
        int rc2 = sink_close(&out, rc == 0, err);
        rc = rc ? rc : rc2;
    }
    if (!rc)
        rc = check_file(plan, opt->out, err);
    if (rc && created)
        unlink(opt->out); /* a half-written model is a trap */
    return rc;
}
