/*
 * plan.c — machine probes, a model's cache-relevant shape, and the
 * time-per-token estimate. See plan.h for the model behind the numbers.
 */
#include "store/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/pool.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- /proc/meminfo --------------------------------------------------------- */

int plan_probe_meminfo(plan_machine *m, const char *path, sw_err *err)
{
    if (!path)
        path = "/proc/meminfo";
    m->n_cpus = sw_pool_default_threads();
    FILE *f = fopen(path, "r");
    if (!f)
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            m->ram_total = (uint64_t)kb * 1024;
        else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            m->ram_avail = (uint64_t)kb * 1024;
    }
    fclose(f);
    return 0;
}

/* --- memory read bandwidth ------------------------------------------------- */

#define BW_CHUNK (4u << 20) /* bytes per task */

struct bw_job {
    const uint64_t *buf;
    size_t words_per_chunk, n_words;
    _Atomic uint64_t sink;
};

static void bw_task(void *arg, int task, int n_tasks, int thread)
{
    struct bw_job *j = arg;
    size_t lo = (size_t)task * j->words_per_chunk;
    size_t hi = lo + j->words_per_chunk < j->n_words ? lo + j->words_per_chunk : j->n_words;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint64_t *v = j->buf;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
    }
    atomic_fetch_add_explicit(&j->sink, a0 + a1 + a2 + a3, memory_order_relaxed);
}

int plan_probe_mem_bw(plan_machine *m, size_t bytes, sw_err *err)
{
    if (!bytes) {
        bytes = 256u << 20;
        if (m->ram_avail && bytes > m->ram_avail / 8)
            bytes = (size_t)(m->ram_avail / 8);
        if (bytes < (16u << 20))
            bytes = 16u << 20;
    }
    bytes &= ~(size_t)(BW_CHUNK - 1);
    if (!bytes)
        bytes = BW_CHUNK;
    void *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return sw_errf(err, SW_ENOMEM, "no memory for the bandwidth probe (%zu bytes)", bytes);
    memset(buf, 0x5a, bytes); /* back every page before timing */
    sw_pool *pool = NULL;
    int rc = sw_pool_create(0, &pool, err);
    if (rc) {
        munmap(buf, bytes);
        return rc;
    }
    struct bw_job j = {.buf = buf, .words_per_chunk = BW_CHUNK / 8, .n_words = bytes / 8};
    int n_tasks = (int)(bytes / BW_CHUNK);
    double best = 0;
    for (int pass = 0; pass < 4; pass++) { /* the first pass warms up */
        double t0 = now_s();
        sw_pool_run(pool, bw_task, &j, n_tasks);
        double dt = now_s() - t0;
        if (pass > 0 && dt > 0 && (double)bytes / dt > best)
            best = (double)bytes / dt;
    }
    m->mem_bw = best;
    m->mem_threads = sw_pool_size(pool);
    if (atomic_load(&j.sink) == 1) /* keeps the sums alive */
        m->mem_bw += 1e-9;
    sw_pool_destroy(pool);
    munmap(buf, bytes);
    return 0;
}

/* --- SSD random reads -------------------------------------------------------- */

struct ssd_job {
    int fd;
    uint64_t lo, span, read_bytes; /* offsets in [lo, lo + span) */
    double deadline;
    _Atomic uint64_t done_bytes;
    _Atomic int failed;            /* errno of the first failure */
};

struct ssd_thread {
    struct ssd_job *job;
    uint64_t seed;
};

static void *ssd_worker(void *arg)
{
    struct ssd_job *j = ((struct ssd_thread *)arg)->job;
    uint64_t x = ((struct ssd_thread *)arg)->seed;
    void *buf;
    if (posix_memalign(&buf, 4096, j->read_bytes)) {
        atomic_store(&j->failed, ENOMEM);
        return NULL;
    }
    /* xorshift, seeded per thread: positions need no quality, only spread */
    uint64_t slots = j->span / 4096;
    while (now_s() < j->deadline && !atomic_load(&j->failed)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        off_t off = (off_t)(j->lo + (x % slots) * 4096);
        ssize_t got = pread(j->fd, buf, j->read_bytes, off);
        if (got < 0) {
            atomic_store(&j->failed, errno ? errno : EIO);
            break;
        }
        atomic_fetch_add(&j->done_bytes, (uint64_t)got);
    }
    free(buf);
    return NULL;
}

int plan_probe_ssd(plan_machine *m, const char *path, uint64_t lo, uint64_t hi,
                   uint64_t read_bytes, int depth, double seconds, sw_err *err)
{
    m->ssd_bw = 0;
    read_bytes = (read_bytes + 4095) & ~(uint64_t)4095;
    if (read_bytes == 0)
        read_bytes = 4096;
    lo &= ~(uint64_t)4095;
    if (hi < lo + read_bytes) {
        snprintf(m->ssd_note, sizeof m->ssd_note, "not measured: the file is too small");
        return 0;
    }
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        if (errno == EINVAL) {
            snprintf(m->ssd_note, sizeof m->ssd_note,
                     "not measured: the file system of %s has no O_DIRECT", path);
            return 0;
        }
        return sw_errf(err, SW_EIO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size / 2) {
        close(fd);
        snprintf(m->ssd_note, sizeof m->ssd_note,
                 "not measured: %s is sparse (its holes read as zeros, not from the device)",
                 path);
        return 0;
    }
    if (depth < 1)
        depth = 1;
    if (depth > 64)
        depth = 64;
    struct ssd_job j = {.fd = fd, .lo = lo, .span = hi - read_bytes - lo + 4096,
                        .read_bytes = read_bytes, .deadline = now_s() + seconds};
    pthread_t th[64];
    struct ssd_thread arg[64];
    int started = 0;
    double t0 = now_s();
    for (int i = 0; i < depth; i++) {
        arg[i] = (struct ssd_thread){&j, 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
        if (pthread_create(&th[i], NULL, ssd_worker, &arg[i]))
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    close(fd);
    int failed = atomic_load(&j.failed);
    if (failed == EINVAL) {
        snprintf(m->ssd_note, sizeof m->ssd_note,
                 "not measured: O_DIRECT reads refused on %s (alignment)", path);
        return 0;
    }
    if (failed)
        return sw_errf(err, SW_EIO, "%s: read: %s", path, strerror(failed));
    m->ssd_bw = dt > 0 ? (double)atomic_load(&j.done_bytes) / dt : 0;
    m->ssd_read_bytes = read_bytes;
    m->ssd_depth = started;
    snprintf(m->ssd_note, sizeof m->ssd_note,
             "O_DIRECT random reads of %" PRIu64 " KiB, %d in flight, %.1f s on the model file",
             read_bytes / 1024, started, dt);
    return 0;
}

/* --- the model's shape --------------------------------------------------------- */

/* Layer of an expert tensor "blk.N.ffn_{gate,up,down}_exps.weight", or -1. */
static int expert_tensor_layer(const char *name)
{
    static const char *const suffix[] = {".ffn_gate_exps.weight", ".ffn_up_exps.weight",
                                         ".ffn_down_exps.weight"};
    if (strncmp(name, "blk.", 4))
        return -1;
    char *end;
    long layer = strtol(name + 4, &end, 10);
    if (end == name + 4 || layer < 0 || layer > 0xffff)
        return -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(end, suffix[i]))
            return (int)layer;
    return -1;
}

static int get_count(const gguf_ctx *g, const char *arch, const char *what, int *out, bool need,
                     sw_err *err)
{
    char key[128];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, what);
    int rc = gguf_get_u32(g, key, &v, err);
    if (rc == SW_ENOTFOUND && !need) {
        *out = 0;
        return 0;
    }
    if (rc)
        return rc;
    if (v > 0xffff)
        return sw_errf(err, SW_ERANGE, "%s = %u is implausibly large", key, v);
    *out = (int)v;
    return 0;
}

int plan_model_from_gguf(const gguf_ctx *g, plan_model *m, sw_err *err)
{
    memset(m, 0, sizeof *m);
    const char *arch;
    int rc = gguf_get_str(g, "general.architecture", &arch, err);
    if (rc)
        return rc;
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    if ((rc = get_count(g, arch, "block_count", &m->n_layer, true, err)) ||
        (rc = get_count(g, arch, "expert_count", &m->n_expert, false, err)) ||
        (rc = get_count(g, arch, "expert_used_count", &m->n_expert_used, false, err)))
        return rc;
    uint8_t *moe = calloc((size_t)m->n_layer + 1, 1);
    if (!moe)
        return sw_errf(err, SW_ENOMEM, "out of memory");
    uint64_t base = gguf_data_offset(g), embd = 0;
    bool has_output = false;
    m->expert_lo = UINT64_MAX;
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int layer = m->n_expert > 0 ? expert_tensor_layer(t->name) : -1;
        if (!strcmp(t->name, "token_embd.weight"))
            embd = t->size;
        if (!strcmp(t->name, "output.weight"))
            has_output = true;
        if (layer < 0 || layer >= m->n_layer) {
            m->resident_bytes += t->size;
            continue;
        }
        if (t->n_dims != 3 || t->ne[2] != m->n_expert) {
            free(moe);
            return sw_errf(err, SW_EFORMAT, "tensor '%s' does not hold %d experts", t->name,
                           m->n_expert);
        }
        moe[layer] = 1;
        m->expert_total += t->size;
        if (base + t->offset < m->expert_lo)
            m->expert_lo = base + t->offset;
        if (base + t->offset + t->size > m->expert_hi)
            m->expert_hi = base + t->offset + t->size;
    }
    for (int l = 0; l < m->n_layer; l++)
        m->n_moe_layer += moe[l];
    free(moe);
    if (m->n_moe_layer == 0) {
        m->n_expert = m->n_expert_used = 0;
        m->expert_lo = m->expert_hi = 0;
    } else {
        if (m->n_expert_used < 1 || m->n_expert_used > m->n_expert)
            return sw_errf(err, SW_EFORMAT, "%s.expert_used_count = %d with %d experts", arch,
                           m->n_expert_used, m->n_expert);
        m->expert_bytes = m->expert_total / ((uint64_t)m->n_moe_layer * (uint64_t)m->n_expert);
    }
    /* a token reads one row of the embedding table, unless the table is
     * also the output head (tied), which reads all of it */
    m->token_resident = has_output ? m->resident_bytes - embd : m->resident_bytes;
    return 0;
}

/* --- the estimate ---------------------------------------------------------------- */

void plan_estimate_token(const plan_machine *m, const plan_model *md, const plan_rates *r,
                         plan_estimate *out)
{
    memset(out, 0, sizeof *out);
    double reads = (double)md->n_moe_layer * md->n_expert_used; /* expert reads per token */
    double eb = (double)md->expert_bytes;
    double ssd_demand = r->demand * reads * eb, ssd_ahead = r->prefetch * reads * eb;
    out->ssd_bytes_per_token = ssd_demand + ssd_ahead;
    if (m->mem_bw <= 0)
        return;
    out->t_compute = ((double)md->token_resident + reads * eb) / m->mem_bw;
    if (out->ssd_bytes_per_token > 0) {
        if (m->ssd_bw <= 0)
            return; /* reads, but no idea how fast */
        out->t_demand = ssd_demand / m->ssd_bw;
        out->t_prefetch = ssd_ahead / m->ssd_bw;
    }
    out->t_token = out->t_demand +
                   (out->t_compute > out->t_prefetch ? out->t_compute : out->t_prefetch);
    out->tok_per_s = out->t_token > 0 ? 1.0 / out->t_token : 0;
}
