/*
 * matmul.c — threaded matrix-vector and matrix-matrix products (matmul.h).
 *
 * Two phases per call: convert the activations (over the pool, in slices of
 * blocks, when there are enough of them), then one parallel-for over the
 * weight rows.
 *
 * Splitting the rows. Weights stream from DRAM, and the hardware prefetcher
 * streams best along one long contiguous run: cutting a matrix into many
 * chunks handed out round-robin costs a prefetcher ramp-up per chunk, which
 * for a 2048x768 expert slice ate a third of the bandwidth. So the rows are
 * cut into small chunks (>= MIN_CHUNK_BYTES, a multiple of 16 rows so no two
 * chunks share an output cache line), and the chunks into one contiguous
 * stream per thread. A pool task owns a stream and takes its chunks from the
 * front, in address order; a task that runs out steals chunks from the back
 * of the others' streams, so a thread that loses its core costs only the
 * chunk it is in. Each chunk is claimed once (one CAS on the stream's
 * front/back pair), so every output is written by exactly one thread.
 * The CAS is a locked instruction, which waits for every load before it:
 * once per 16 KiB chunk that was 2-4% of a MoE layer's time when its
 * weights come from cache, so an owner claims up to CLAIM_MAX_CHUNKS at
 * once while its stream is long (an eighth of what is left), and single
 * chunks near its end, where a thief might want them.
 *
 * Two streams per thread. On an Intel Xeon (2-core VM, bench/RESULTS.md)
 * one core reads two streams far apart faster than one: `make
 * stream-probe`'s loop, two halves of a buffer read 1 KiB at a time in
 * turn with a few multiply-adds per cache line, ran at 21-23 GB/s on one
 * core where one stream ran at 17, and at 37-44 against 33 on two; two
 * streams 8 KiB apart ran slower than one. So in a product of one
 * activation (a decode step's) each thread's share is two streams, its
 * halves (in a decode step 0.15 to a few MiB apart); the task walks them
 * in alternation (mm_walk), MM_PAIR_STEP_BYTES of rows per turn, then the
 * one left alone, then steals as before. Measured with --matvec-streams
 * on that Xeon, 2 threads: spillway-bench's Q4_K 2048x768 x8 26.8-27.0 ->
 * 28.8-30.3 GB/s, Q6_K 26.5-27.0 -> 28.0-29.0, 4096x4096 no change;
 * `spillway bench` decode, qwen3-30b-a3b q4_k_m 13.1-13.4 -> 13.8-14.0
 * tok/s, llama-3.2-1b q4_k_m 32.5-32.6 -> 33.5-33.7. Rows longer than
 * MM_PAIR_MAX_ROW_BYTES stay one stream: a turn is a whole row, and Q8_0's
 * 4352-byte rows read 1-4% slower in turns. Batches (m > 1) stay one
 * stream: they are bound by compute. The AMD EPYC is not measured, so
 * elsewhere than on Intel CPUs a thread walks one stream
 * (quant_matvec_set_streams).
 *
 * Prepared activations. A kernel that rearranges its activation row before
 * use (quant_act_prep) would do so once per chunk; each task instead keeps,
 * per stream it walks, the prepared row of the last activation it met
 * (mm_slot) and rebuilds it only when a chunk of another activation comes
 * up. A batch (m > 1) whose kernel has dot_multi goes through each chunk
 * MM_MULTI_ACTS activations at a time, prepared together, so every weight
 * block is unpacked once per four activations instead of once per
 * activation.
 */
#include "quant/matmul.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Tuning. */
#define MIN_CHUNK_BYTES (16 * 1024)  /* below this a claim costs too much */
#define CLAIM_MAX_CHUNKS 4           /* chunks an owner claims at once from a long stream */
#define CHUNK_ALIGN_ROWS 16          /* 16 floats: one output cache line */
#define ACT_BLOCK_BYTES (128 * 1024) /* activations reused per weight row (L2) */
#define W_CHUNK_MAX_BYTES (256 * 1024) /* weight chunk kept in L2 across act blocks */
#define STACK_ACT_BYTES (32 * 1024)  /* converted activations up to this size live on the stack */
#define STACK_STREAMS 64             /* streams up to this many threads live on the stack */
#define ACT_PARALLEL_MIN 16384       /* activation elements worth converting in parallel */
#define MM_ROW_GROUP 4               /* weight rows per kernel call when m > 1 */
#define STACK_ITEMS 16               /* matvec_multi items kept on the stack */
#define MM_WARM_BYTES (8 * 1024)     /* prefetched at once where a chunk starts cold */
#define MM_PREP_BYTES (36 * 1024)    /* a thread's prepared activation row (quant_act_prep) */
#define MM_MULTI_ACTS 4              /* activations prepared together for dot_multi */
#define MM_PAIR_STEP_BYTES 1024      /* weight bytes per turn when a thread walks two streams */
#define MM_PAIR_MIN_CHUNKS 2         /* chunks per stream below which a thread walks one */
#define MM_PAIR_MAX_ROW_BYTES 2048   /* longer rows: one stream (a turn would be a whole row) */

/* A run of chunks [front, back): the owner takes from the front, thieves
 * from the back. Packed in one word (front low, back high) so one CAS
 * claims a chunk; one cache line each. */
typedef struct mm_stream {
    _Alignas(64) _Atomic uint64_t range;
} mm_stream;

/* One product of a job: Y[m][rows] = W A, chunks [first_chunk, +n_chunks). */
typedef struct mm_part {
    const quant_kernels *k; /* vec_dot_rows[wtype] or vec_dot[wtype] */
    quant_type wtype;
    const uint8_t *W;
    size_t w_row_bytes;
    const uint8_t *A; /* [m] activation rows, a_row_bytes each */
    size_t a_row_bytes;
    float *Y; /* [m][rows] */
    int64_t rows, cols, m;
    int64_t chunk;     /* weight rows per chunk */
    int64_t act_block; /* activation rows per inner block */
    int64_t first_chunk, n_chunks;
} mm_part;

/* What a task has prepared (quant_act_prep) for one of its walks: the
 * activation row A of cols elements, by prep; A NULL: nothing yet. Within
 * a job A is fixed, so the three identify the contents of buf. */
typedef struct mm_slot {
    const uint8_t *A;
    int64_t cols;
    quant_act_prep_fn prep;
    _Alignas(64) uint8_t buf[MM_PREP_BYTES];
} mm_slot;

/* A task's prepared rows: one slot per walk (mm_walk), and mm_chunk_multi's
 * batch of activations. */
typedef struct mm_prepared {
    mm_slot slot[2];
    _Alignas(64) uint8_t multi[MM_MULTI_ACTS * MM_PREP_BYTES];
} mm_prepared;

/* A job: the chunks of all its parts, numbered in order, split into
 * streams. */
struct mm_job {
    const mm_part *parts;
    int n_parts;
    mm_stream *streams;
    int n_streams;
    bool paired; /* two streams per task (mm_run) */
};

/*
 * Rows [c*chunk, ...) of chunk c of part p, for every activation, block by
 * block. One activation: the whole chunk is one multi-row kernel call.
 * Several: groups of MM_ROW_GROUP weight rows (a few KiB, L1) go against
 * each activation of the block in turn.
 *
 * A cold chunk (a thread's first, a stolen one, the first of a matrix: one
 * that does not continue what the thread just streamed) has its first
 * MM_WARM_BYTES prefetched at once: the kernels prefetch a fixed distance
 * ahead of where they read, so those bytes would otherwise arrive one
 * demand miss at a time. On a 2048x768 Q4_K matvec with 2 threads this
 * took 0.2-0.5 us off a 14.5-18 us call (median per-call timelines, rdtsc).
 */
/* The prepared form of p's activation row in sl (prepared now unless it
 * is there already), or NULL where p's kernel has none (or m > 1). */
static const void *mm_prepared_act(const mm_part *p, mm_slot *sl)
{
    const quant_act_prep *ap = &p->k->act_prep[p->wtype];
    if (p->m != 1 || !ap->prep || p->cols > ap->max_n || ap->bytes > sizeof sl->buf)
        return NULL;
    if (sl->A != p->A || sl->cols != p->cols || sl->prep != ap->prep) {
        ap->prep(p->cols, p->A, sl->buf);
        sl->A = p->A;
        sl->cols = p->cols;
        sl->prep = ap->prep;
    }
    return sl->buf;
}

/* Rows [r0, r1) of p, one activation (m == 1): against its prepared form
 * act where there is one, else against the converted row. */
static void mm_rows_1(const mm_part *p, int64_t r0, int64_t r1, const void *act)
{
    const uint8_t *w = p->W + (size_t)r0 * p->w_row_bytes;
    if (act)
        p->k->act_prep[p->wtype].dot_rows(p->cols, (int)(r1 - r0), &p->Y[r0], w, p->w_row_bytes,
                                          act);
    else
        quant_vec_dot_rows(p->k, p->wtype, p->cols, (int)(r1 - r0), &p->Y[r0], w,
                           p->w_row_bytes, p->A);
}

/* Where a chunk starts cold, its first MM_WARM_BYTES, prefetched at once. */
static void mm_warm(const mm_part *p, int64_t r0, int64_t r1)
{
    const uint8_t *w = p->W + (size_t)r0 * p->w_row_bytes;
    size_t bytes = (size_t)(r1 - r0) * p->w_row_bytes;
    bytes = bytes < MM_WARM_BYTES ? bytes : MM_WARM_BYTES;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(w + o, 0, 2); /* into L2, as the kernels' (quant_simd.h) */
}

/* Rows [r0, r1) of p against all its activations, MM_MULTI_ACTS at a time:
 * prepared into pr->multi (`bytes` apart) where the kernel prepares them,
 * then one dot_multi call over the rows. Returns false where p's kernel has
 * no dot_multi (the caller goes row group by row group instead). */
static bool mm_chunk_multi(const mm_part *p, int64_t r0, int64_t r1, mm_prepared *pr)
{
    const quant_act_prep *ap = &p->k->act_prep[p->wtype];
    if (!ap->dot_multi ||
        (ap->prep && (p->cols > ap->max_n || ap->bytes > MM_PREP_BYTES || ap->bytes % 64)))
        return false;
    for (int64_t i0 = 0; i0 < p->m; i0 += MM_MULTI_ACTS) {
        int na = p->m - i0 < MM_MULTI_ACTS ? (int)(p->m - i0) : MM_MULTI_ACTS;
        const uint8_t *acts = p->A + (size_t)i0 * p->a_row_bytes;
        size_t stride = p->a_row_bytes;
        if (ap->prep) { /* bytes apart, each 64-byte aligned */
            for (int a = 0; a < na; a++)
                ap->prep(p->cols, acts + (size_t)a * stride, pr->multi + (size_t)a * ap->bytes);
            acts = pr->multi;
            stride = ap->bytes;
        }
        ap->dot_multi(p->cols, (int)(r1 - r0), na, &p->Y[i0 * p->rows + r0], (size_t)p->rows,
                      p->W + (size_t)r0 * p->w_row_bytes, p->w_row_bytes, acts, stride);
    }
    return true;
}

static void mm_part_chunk(const mm_part *p, int64_t c, int cold, mm_prepared *pr)
{
    int64_t r0 = c * p->chunk;
    int64_t r1 = r0 + p->chunk < p->rows ? r0 + p->chunk : p->rows;
    if (cold)
        mm_warm(p, r0, r1);
    if (p->m == 1) {
        mm_rows_1(p, r0, r1, mm_prepared_act(p, &pr->slot[0]));
        return;
    }
    if (mm_chunk_multi(p, r0, r1, pr))
        return;
    for (int64_t i0 = 0; i0 < p->m; i0 += p->act_block) {
        int64_t i1 = i0 + p->act_block < p->m ? i0 + p->act_block : p->m;
        for (int64_t r = r0; r < r1; r += MM_ROW_GROUP) {
            int nr = (int)(r + MM_ROW_GROUP < r1 ? MM_ROW_GROUP : r1 - r);
            const uint8_t *w = p->W + (size_t)r * p->w_row_bytes;
            for (int64_t i = i0; i < i1; i++)
                quant_vec_dot_rows(p->k, p->wtype, p->cols, nr, &p->Y[i * p->rows + r], w,
                                   p->w_row_bytes, p->A + (size_t)i * p->a_row_bytes);
        }
    }
}

/* The part holding job-wide chunk c (binary search over first_chunk). */
static const mm_part *mm_part_of(const struct mm_job *j, int64_t c)
{
    int lo = 0, hi = j->n_parts - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (j->parts[mid].first_chunk <= c)
            lo = mid;
        else
            hi = mid - 1;
    }
    return &j->parts[lo];
}

/* Job-wide chunk c; it is cold unless it follows prev, the chunk this
 * thread ran last. pr: what this task has prepared. */
static void mm_chunk(const struct mm_job *j, int64_t c, int64_t prev, mm_prepared *pr)
{
    const mm_part *p = mm_part_of(j, c);
    int64_t local = c - p->first_chunk;
    mm_part_chunk(p, local, c != prev + 1 || local == 0, pr);
}

/* Claims chunks of s: from the front (back = 0) an eighth of what is left,
 * 1..CLAIM_MAX_CHUNKS of them, or one from the back. Returns the first and
 * sets *n to the count; -1 when s is empty. */
static int64_t stream_take(mm_stream *s, int back, int *n)
{
    uint64_t v = atomic_load_explicit(&s->range, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b)
            return -1;
        uint32_t k = back ? 1 : (b - f) / 8;
        k = k < 1 ? 1 : k > CLAIM_MAX_CHUNKS ? CLAIM_MAX_CHUNKS : k;
        uint64_t nv = back ? ((uint64_t)(b - 1) << 32) | f : v + k;
        /* relaxed: the pool orders the data; the CAS only makes claims unique */
        if (atomic_compare_exchange_weak_explicit(&s->range, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *n = (int)k;
            return back ? (int64_t)b - 1 : (int64_t)f;
        }
    }
}

/*
 * A walk through one stream of a paired job (mm_run): chunks from the
 * front of the stream, and within a chunk `step` rows per kernel call.
 */
typedef struct mm_walk {
    mm_stream *s;
    mm_slot *slot;       /* the walk's prepared activation */
    int64_t c, end;      /* chunks claimed and not begun: [c, end) */
    int64_t prev;        /* the chunk begun last (-2: none) */
    const mm_part *p;    /* the chunk under way: rows [r, r1) of p are left */
    int64_t r, r1, step;
    const void *act;     /* p's prepared activation, or NULL */
    bool alone;          /* the other walk is done: whole chunks per call */
} mm_walk;

/* Begins w's next chunk, claiming more of its stream when its claim is
 * used up; false when the stream is empty. */
static bool walk_next(const struct mm_job *j, mm_walk *w)
{
    if (w->c >= w->end) {
        int n;
        int64_t c = stream_take(w->s, 0, &n);
        if (c < 0)
            return false;
        w->c = c;
        w->end = c + n;
    }
    int64_t c = w->c++;
    const mm_part *p = mm_part_of(j, c);
    int64_t local = c - p->first_chunk;
    w->p = p;
    w->r = local * p->chunk;
    w->r1 = w->r + p->chunk < p->rows ? w->r + p->chunk : p->rows;
    if (c != w->prev + 1 || local == 0)
        mm_warm(p, w->r, w->r1);
    w->prev = c;
    w->act = mm_prepared_act(p, w->slot);
    w->step = (int64_t)(MM_PAIR_STEP_BYTES / p->w_row_bytes);
    if (w->step < 1)
        w->step = 1;
    return true;
}

/* Runs w's next rows (a step, or while alone the rest of its chunk);
 * false when its stream is done. */
static bool walk_step(const struct mm_job *j, mm_walk *w)
{
    if (w->r >= w->r1 && !walk_next(j, w))
        return false;
    int64_t r1 = !w->alone && w->r + w->step < w->r1 ? w->r + w->step : w->r1;
    mm_rows_1(w->p, w->r, r1, w->act);
    w->r = r1;
    return true;
}

/* A task of a paired job: its two streams in alternation, then the one
 * left alone. */
static void mm_task_pair(const struct mm_job *j, int task, mm_prepared *pr)
{
    mm_walk w[2];
    for (int k = 0; k < 2; k++)
        w[k] = (mm_walk){.s = &j->streams[2 * task + k], .slot = &pr->slot[k], .prev = -2};
    bool live0 = true, live1 = true;
    while (live0 && live1) {
        live0 = walk_step(j, &w[0]);
        live1 = walk_step(j, &w[1]);
    }
    mm_walk *left = live0 ? &w[0] : live1 ? &w[1] : NULL;
    if (left) {
        left->alone = true;
        while (walk_step(j, left))
            ;
    }
}

static void mm_task(void *arg, int task, int n_tasks, int thread)
{
    const struct mm_job *j = arg;
    const int own = j->paired ? 2 : 1; /* streams [own * task, + own) are this task's */
    int64_t c, prev = -2;
    int n;
    mm_prepared pr;
    pr.slot[0].A = pr.slot[1].A = NULL; /* buf is written before it is read */
    if (j->paired)
        mm_task_pair(j, task, &pr);
    else
        while ((c = stream_take(&j->streams[task], 0, &n)) >= 0)
            for (int i = 0; i < n; i++, prev = c++)
                mm_chunk(j, c, prev, &pr);
    for (int k = own; k < j->n_streams; k++)
        while ((c = stream_take(&j->streams[(own * task + k) % j->n_streams], 1, &n)) >= 0)
            mm_chunk(j, c, -2, &pr); /* taken from the back: never a continuation */
}

/* Converting activations: work items are (row of X, slice of its blocks);
 * every activation type is blockwise, so slices convert independently. */
struct act_job {
    quant_from_float_fn quantize;
    const float *X;  /* [m][cols] */
    uint8_t *A;      /* [m] rows of a_row_bytes */
    size_t a_row_bytes;
    int64_t cols;
    int64_t blck;    /* elements per activation block */
    size_t blck_bytes;
    int64_t nb;      /* blocks per row */
    int64_t per;     /* blocks per slice */
    int64_t slices;  /* slices per row */
};

static void act_task(void *arg, int task, int n_tasks, int thread)
{
    const struct act_job *j = arg;
    int64_t i = task / j->slices, b0 = task % j->slices * j->per;
    int64_t b1 = b0 + j->per < j->nb ? b0 + j->per : j->nb;
    const float *x = j->X + i * j->cols + b0 * j->blck;
    uint8_t *a = j->A + (size_t)i * j->a_row_bytes + (size_t)b0 * j->blck_bytes;
    j->quantize(x, a, (b1 - b0) * j->blck);
}

/* Converts X[m][cols] to A, over the pool when there is enough of it. */
static void act_convert(sw_pool *pool, quant_from_float_fn quantize, quant_type atype,
                        const float *X, int64_t m, int64_t cols, uint8_t *A, size_t a_row_bytes)
{
    const quant_traits *at = quant_traits_of(atype);
    struct act_job j = {quantize, X, A, a_row_bytes, cols, at->blck, at->size, cols / at->blck,
                        cols / at->blck, 1};
    int n_threads = sw_pool_size(pool);
    if (n_threads > 1 && m * cols >= ACT_PARALLEL_MIN) {
        /* about two items per thread */
        int64_t want = (2 * n_threads + m - 1) / m;
        j.slices = want < j.nb ? want : j.nb;
        j.per = (j.nb + j.slices - 1) / j.slices;
        j.slices = (j.nb + j.per - 1) / j.per;
    }
    if (m * j.slices == 1)
        act_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, act_task, &j, (int)(m * j.slices));
}

/* Rows per chunk: at least MIN_CHUNK_BYTES (and, when weights are revisited
 * per activation block, at most W_CHUNK_MAX_BYTES), a multiple of
 * CHUNK_ALIGN_ROWS. */
static int64_t pick_chunk(size_t row_bytes, int revisit)
{
    int64_t chunk = (int64_t)((MIN_CHUNK_BYTES + row_bytes - 1) / row_bytes);
    if (revisit) {
        int64_t max_rows = (int64_t)(W_CHUNK_MAX_BYTES / row_bytes);
        if (chunk > max_rows)
            chunk = max_rows;
    }
    chunk = (chunk + CHUNK_ALIGN_ROWS - 1) / CHUNK_ALIGN_ROWS * CHUNK_ALIGN_ROWS;
    return chunk;
}

/* Checks the arguments and finds the kernels; fills p's kernel table, type,
 * shape and row sizes, and *act (NULL for float activations). */
static int mm_prepare(const char *what, quant_type wtype, int64_t rows, int64_t cols, int64_t m,
                      mm_part *p, quant_from_float_fn *act, sw_err *err)
{
    const quant_traits *tr = quant_traits_of(wtype);
    if (!tr)
        return sw_errf(err, SW_EINVAL, "%s: unknown weight type %d", what, (int)wtype);
    const quant_kernels *k = quant_kernels_get();
    if (!tr->to_float || !k->vec_dot[wtype])
        return sw_errf(err, SW_EUNSUPPORTED, "%s: no dot-product kernel for weight type %s",
                       what, tr->name);
    if (rows < 0 || m < 0 || cols <= 0 || cols % tr->blck != 0)
        return sw_errf(err, SW_EINVAL,
                       "%s: bad shape rows=%lld cols=%lld m=%lld (cols must be a positive "
                       "multiple of %s's block of %lld)",
                       what, (long long)rows, (long long)cols, (long long)m, tr->name,
                       (long long)tr->blck);
    if (rows > INT32_MAX || m > INT32_MAX / 16)
        return sw_errf(err, SW_EINVAL, "%s: shape rows=%lld m=%lld too large", what,
                       (long long)rows, (long long)m);
    p->k = k;
    p->wtype = wtype;
    p->rows = rows;
    p->cols = cols;
    p->m = m;
    p->w_row_bytes = quant_row_size(wtype, cols);
    if (tr->vec_dot_type == QT_F32) {
        *act = NULL;
        p->a_row_bytes = (size_t)cols * sizeof(float);
    } else {
        *act = k->act_quant[tr->vec_dot_type];
        if (!*act)
            return sw_errf(err, SW_EUNSUPPORTED, "%s: no converter to activation type %s",
                           what, quant_name(tr->vec_dot_type));
        p->a_row_bytes = quant_row_size(tr->vec_dot_type, cols);
    }
    return 0;
}

/* Sets p's chunking and numbers its chunks from first; returns the next
 * free chunk number. */
static int64_t mm_part_plan(mm_part *p, int64_t first)
{
    p->act_block = (int64_t)(ACT_BLOCK_BYTES / p->a_row_bytes);
    if (p->act_block < 1)
        p->act_block = 1;
    p->chunk = pick_chunk(p->w_row_bytes, p->m > p->act_block);
    p->first_chunk = first;
    p->n_chunks = (p->rows + p->chunk - 1) / p->chunk;
    return first + p->n_chunks;
}

static _Atomic int mm_streams_mode = QUANT_STREAMS_AUTO;

void quant_matvec_set_streams(quant_streams mode)
{
    atomic_store_explicit(&mm_streams_mode, (int)mode, memory_order_relaxed);
}

/* QUANT_STREAMS_AUTO's choice on this CPU (matmul.h). */
static bool mm_two_streams_here(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static _Atomic int intel = -1;
    int v = atomic_load_explicit(&intel, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_is("intel") ? 1 : 0;
        atomic_store_explicit(&intel, v, memory_order_relaxed);
    }
    return v == 1;
#else
    return false;
#endif
}

int quant_matvec_streams(void)
{
    int mode = atomic_load_explicit(&mm_streams_mode, memory_order_relaxed);
    return mode == QUANT_STREAMS_TWO || (mode == QUANT_STREAMS_AUTO && mm_two_streams_here()) ? 2
                                                                                            : 1;
}

/* Whether the job walks two streams per thread: products of one
 * activation (decode, which streams weights from DRAM), rows of at most
 * MM_PAIR_MAX_ROW_BYTES and at least MM_PAIR_MIN_CHUNKS chunks per stream,
 * where quant_matvec_set_streams asks for two. */
static bool mm_pairs(const mm_part *parts, int n_parts, int64_t n_chunks, int n_threads)
{
    if (quant_matvec_streams() != 2)
        return false;
    for (int i = 0; i < n_parts; i++)
        if (parts[i].m != 1 || parts[i].w_row_bytes > MM_PAIR_MAX_ROW_BYTES)
            return false;
    return n_chunks >= (int64_t)MM_PAIR_MIN_CHUNKS * 2 * n_threads;
}

/* Runs chunks [0, n_chunks) of parts over the pool: one stream per thread,
 * or two (mm_pairs). */
static int mm_run(sw_pool *pool, const mm_part *parts, int n_parts, int64_t n_chunks, sw_err *err)
{
    if (n_chunks == 0)
        return 0;
    struct mm_job j = {parts, n_parts, NULL, 0, false};
    int n_tasks = sw_pool_size(pool);
    if (n_tasks > n_chunks)
        n_tasks = (int)n_chunks;
    j.paired = mm_pairs(parts, n_parts, n_chunks, n_tasks);
    int n_streams = j.paired ? 2 * n_tasks : n_tasks;
    mm_stream stack_streams[2 * STACK_STREAMS];
    j.streams = stack_streams;
    if (n_streams > 2 * STACK_STREAMS) {
        j.streams = aligned_alloc(64, sizeof(mm_stream) * (size_t)n_streams);
        if (!j.streams)
            return sw_errf(err, SW_ENOMEM, "matmul: out of memory");
    }
    j.n_streams = n_streams;
    for (int s = 0; s < n_streams; s++) {
        uint64_t f = (uint64_t)(n_chunks * s / n_streams);
        uint64_t b = (uint64_t)(n_chunks * (s + 1) / n_streams);
        atomic_init(&j.streams[s].range, b << 32 | f);
    }
    if (n_tasks == 1)
        mm_task(&j, 0, 1, 0);
    else
        sw_pool_run(pool, mm_task, &j, n_tasks);
    if (j.streams != stack_streams)
        free(j.streams);
    return 0;
}

int quant_matmul(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *X, int64_t m, float *Y, sw_err *err)
{
    mm_part p = {0};
    quant_from_float_fn act;
    int rc = mm_prepare(m == 1 ? "matvec" : "matmul", wtype, rows, cols, m, &p, &act, err);
    if (rc)
        return rc;
    if (rows == 0 || m == 0)
        return 0;

    _Alignas(64) uint8_t stack_buf[STACK_ACT_BYTES];
    uint8_t *heap_buf = NULL;
    if (act) {
        size_t need = (size_t)m * p.a_row_bytes;
        uint8_t *A = stack_buf;
        if (need > sizeof stack_buf) {
            heap_buf = aligned_alloc(64, (need + 63) / 64 * 64);
            if (!heap_buf)
                return sw_errf(err, SW_ENOMEM, "matmul: no memory for %zu bytes of activations",
                               need);
            A = heap_buf;
        }
        act_convert(pool, act, quant_traits_of(wtype)->vec_dot_type, X, m, cols, A,
                    p.a_row_bytes);
        p.A = A;
    } else {
        p.A = (const uint8_t *)X;
    }
    p.W = W;
    p.Y = Y;
    rc = mm_run(pool, &p, 1, mm_part_plan(&p, 0), err);
    free(heap_buf);
    return rc;
}

int quant_matvec(sw_pool *pool, quant_type wtype, const void *W, int64_t rows, int64_t cols,
                 const float *x, float *y, sw_err *err)
{
    return quant_matmul(pool, wtype, W, rows, cols, x, 1, y, err);
}

/*
 * Several products as one job. Activations: an item whose (x, activation
 * type, cols) an earlier item already has shares that item's converted
 * row; the others are converted in turn into one buffer. Then every item's
 * chunks are numbered in item order and run as one parallel-for, so the
 * dispatch is paid once and the threads stream through the matrices in
 * order, stealing at the end. Up to STACK_ITEMS items and STACK_ACT_BYTES of
 * converted activations need no allocation (a decode step calls this
 * dozens of times per token).
 */
int quant_matvec_multi(sw_pool *pool, const quant_mv *items, int n, sw_err *err)
{
    if (n < 0 || (n > 0 && !items))
        return sw_errf(err, SW_EINVAL, "matvec_multi: bad item count %d", n);
    if (n == 0)
        return 0;
    int rc = 0;
    /* per item: its part, converter, activation offset, and the item whose
     * activations it uses */
    mm_part stack_parts[STACK_ITEMS];
    quant_from_float_fn stack_acts[STACK_ITEMS];
    size_t stack_aoff[STACK_ITEMS];
    int stack_owner[STACK_ITEMS];
    _Alignas(64) uint8_t stack_abuf[STACK_ACT_BYTES];
    mm_part *parts = stack_parts;
    quant_from_float_fn *acts = stack_acts;
    size_t *aoff = stack_aoff;
    int *owner = stack_owner;
    uint8_t *abuf = stack_abuf, *heap_abuf = NULL;
    if (n > STACK_ITEMS) {
        parts = calloc((size_t)n, sizeof *parts);
        acts = calloc((size_t)n, sizeof *acts);
        aoff = calloc((size_t)n, sizeof *aoff);
        owner = calloc((size_t)n, sizeof *owner);
        if (!parts || !acts || !aoff || !owner) {
            rc = sw_errf(err, SW_ENOMEM, "matvec_multi: out of memory");
            goto done;
        }
    } else {
        memset(parts, 0, sizeof *parts * (size_t)n);
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const quant_mv *it = &items[i];
        if ((rc = mm_prepare("matvec_multi", it->wtype, it->rows, it->cols, 1, &parts[i],
                             &acts[i], err)))
            goto done;
        quant_type at = quant_traits_of(it->wtype)->vec_dot_type;
        owner[i] = i;
        aoff[i] = 0;
        for (int e = 0; e < i && acts[i]; e++)
            if (owner[e] == e && acts[e] && items[e].x == it->x && items[e].cols == it->cols &&
                quant_traits_of(items[e].wtype)->vec_dot_type == at) {
                owner[i] = e;
                break;
            }
        if (owner[i] == i && acts[i]) {
            aoff[i] = total;
            total += (parts[i].a_row_bytes + 63) / 64 * 64;
        }
    }
    if (total > sizeof stack_abuf && !(abuf = heap_abuf = aligned_alloc(64, total))) {
        rc = sw_errf(err, SW_ENOMEM, "matvec_multi: no memory for %zu bytes of activations",
                     total);
        goto done;
    }
    int64_t n_chunks = 0;
    for (int i = 0; i < n; i++) {
        const quant_mv *it = &items[i];
        mm_part *p = &parts[i];
        if (!acts[i]) {
            p->A = (const uint8_t *)it->x;
        } else if (owner[i] == i) {
            act_convert(pool, acts[i], quant_traits_of(it->wtype)->vec_dot_type, it->x, 1,
                        it->cols, abuf + aoff[i], p->a_row_bytes);
            p->A = abuf + aoff[i];
        } else {
            p->A = parts[owner[i]].A;
        }
        p->W = it->W;
        p->Y = it->y;
        n_chunks = mm_part_plan(p, n_chunks);
    }
    rc = mm_run(pool, parts, n, n_chunks, err);
done:
    free(heap_abuf);
    if (parts != stack_parts) {
        free(parts);
        free(acts);
        free(aoff);
        free(owner);
    }
    return rc;
}
