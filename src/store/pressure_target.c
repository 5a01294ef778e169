/*
 * pressure_target.c — the budget policy: a pure function from a snapshot,
 * the cache's size and a little remembered state to the next budget.
 *
 * Three bands, so the budget does not chase every wobble of MemAvailable:
 *
 *   over the room      (room = what the machine and the cgroup can spare
 *                      the cache now) by more than the dead band: drop to
 *                      the room at once;
 *   under pressure     (PSI some avg10 >= psi_high, the machine's only
 *                      while the machine reclaims: stalls(); or a
 *                      new cgroup limit hit / OOM kill): give up
 *                      shrink_step of the budget per sample, twice that
 *                      when all tasks stall (full avg10 >= psi_high / 2)
 *                      or on an event;
 *   calm long enough   (PSI under psi_calm for calm_ns, or unknown; the
 *                      machine's too, even where stalls() ignores it): take
 *                      grow_step of the room left, at most every
 *                      grow_every_ns, if that is worth a dead band.
 *
 * Under a cgroup limit the dead band is at most a quarter of the margin
 * kept below it: a budget the dead band lets stand over the room leaves
 * most of the margin for someone else's next allocation.
 * Between psi_calm and psi_high the budget holds. Without any counter
 * known the budget holds too (PRESSURE_BLIND): never grow on no evidence.
 */
#include "store/pressure.h"

#define GIB ((int64_t)1 << 30)
#define MIB ((int64_t)1 << 20)

void pressure_policy_default(pressure_policy *p)
{
    *p = (pressure_policy){
        .min_budget = 0,
        .max_budget = 0,
        .headroom_frac = 0.10,
        .headroom_min = 1 * GIB,
        .cg_margin_frac = 0.05,
        .cg_margin_min = 256 * MIB,
        .psi_high = 10.0,
        .psi_calm = 1.0,
        .shrink_step = 0.125,
        .grow_step = 0.25,
        .deadband = 32 * MIB,
        .calm_ns = 10000000000ull,
        .grow_every_ns = 2000000000ull,
    };
}

const char *pressure_reason_name(pressure_reason r)
{
    switch (r) {
    case PRESSURE_HOLD: return "hold";
    case PRESSURE_GROW: return "grow";
    case PRESSURE_SHRINK_ROOM: return "shrink: over the room";
    case PRESSURE_SHRINK_PSI: return "shrink: memory stalls";
    case PRESSURE_SHRINK_EVENT: return "shrink: cgroup limit hit";
    case PRESSURE_BLIND: return "hold: no counters";
    }
    return "?";
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t share(double f, int64_t x)
{
    return (int64_t)(f * (double)x);
}

static double max_known(double a, double b)
{
    return a >= b ? a : b; /* unknown is negative: a known value wins */
}

/* The machine's headroom: what the rest of the machine keeps. */
static int64_t headroom(const pressure_policy *p, const pressure_snapshot *s)
{
    int64_t head = p->headroom_min;
    if (pressure_known(s->mem_total))
        head = max64(head, share(p->headroom_frac, s->mem_total));
    return head;
}

/* What the machine leaves the cache: MemAvailable (which excludes the
 * cache's own pages, so they are added back) above the headroom. */
static int64_t room_machine(const pressure_policy *p, const pressure_snapshot *s, int64_t cache,
                            int64_t other)
{
    int64_t head = headroom(p, s);
    if (pressure_known(s->mem_available))
        return s->mem_available + cache - head;
    if (pressure_known(s->mem_total) && pressure_known(other))
        return s->mem_total - head - other;
    return PRESSURE_UNLIMITED;
}

int64_t pressure_cg_margin(const pressure_policy *p, int64_t limit)
{
    return max64(share(p->cg_margin_frac, limit), min64(p->cg_margin_min, limit / 8));
}

/* What the cgroup leaves the cache: the lower of its limits, less a margin
 * (*margin; 0 without a limit) and less what else is charged to it
 * (inactive page cache counts as reclaimable: the kernel takes it back
 * before it reclaims anything of ours). */
static int64_t room_cgroup(const pressure_policy *p, const pressure_snapshot *s, int64_t cache,
                           int64_t other, int64_t *margin)
{
    int64_t lim = PRESSURE_UNLIMITED;
    *margin = 0;
    if (pressure_known(s->cg_limit))
        lim = s->cg_limit;
    if (pressure_known(s->cg_high))
        lim = min64(lim, s->cg_high);
    if (lim == PRESSURE_UNLIMITED)
        return PRESSURE_UNLIMITED;
    *margin = pressure_cg_margin(p, lim);
    int64_t charged = 0;
    if (pressure_known(s->cg_usage)) {
        int64_t reclaimable = pressure_known(s->cg_inactive_file) ? s->cg_inactive_file : 0;
        charged = max64(s->cg_usage - cache - reclaimable, 0);
    } else if (pressure_known(other)) {
        charged = other;
    }
    return lim - *margin - charged;
}

/* New cgroup limit hits or OOM kills since the last sample? */
static int new_events(const pressure_snapshot *s, pressure_state *st)
{
    int ev = st->started &&
             ((pressure_known(s->cg_oom_kill) && pressure_known(st->oom_kill) &&
               s->cg_oom_kill > st->oom_kill) ||
              (pressure_known(s->cg_max_events) && pressure_known(st->max_events) &&
               s->cg_max_events > st->max_events));
    st->oom_kill = s->cg_oom_kill;
    st->max_events = s->cg_max_events;
    st->started = 1;
    return ev;
}

/*
 * The stalls the budget goes by. The cgroup's own PSI (v2 memory.pressure)
 * always counts. The machine's counts only while the machine reclaims, that
 * is while MemFree is under twice the headroom (or unknown): with more free
 * than that nobody is reclaiming machine-wide, and the stalls are tasks of
 * other cgroups reclaiming against their own limits (a benchmark in a
 * 1 GiB group thrashing), which this cache shrinking would not help. A
 * desktop whose page cache fills its RAM has little free, so there the
 * machine's PSI counts as it should.
 */
static double stalls(const pressure_policy *p, const pressure_snapshot *s, pressure_psi which,
                     pressure_psi cg_which)
{
    int reclaiming = !pressure_known(s->mem_free) || s->mem_free < 2 * headroom(p, s);
    return max_known(reclaiming ? which.avg10 : PRESSURE_UNKNOWN, cg_which.avg10);
}

static uint64_t since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

pressure_decision pressure_target(const pressure_policy *p, const pressure_snapshot *s,
                                  const pressure_input *in, pressure_state *st)
{
    const int64_t budget = in->budget, cache = max64(in->cache_bytes, 0);
    int64_t other = in->other_bytes;
    if (!pressure_known(other) && pressure_known(s->rss))
        other = max64(s->rss - cache, 0);
    pressure_decision d = {.target = budget, .reason = PRESSURE_HOLD};
    int64_t margin;
    int64_t rm = room_machine(p, s, cache, other), rc = room_cgroup(p, s, cache, other, &margin);
    /* under a cgroup limit the dead band must leave most of the margin */
    const int64_t deadband = margin > 0 ? min64(p->deadband, margin / 4) : p->deadband;
    d.room = max64(min64(rm, rc), 0);
    d.psi = stalls(p, s, s->some, s->cg_some);
    double full = stalls(p, s, s->full, s->cg_full);

    int event = new_events(s, st);
    int stalled = d.psi >= p->psi_high;
    if (stalled || event)
        st->last_pressure_ns = s->time_ns;
    if (rm == PRESSURE_UNLIMITED && rc == PRESSURE_UNLIMITED && d.psi < 0 && !event) {
        d.reason = PRESSURE_BLIND;
        return d;
    }

    int64_t cap = p->max_budget > 0 ? min64(d.room, p->max_budget) : d.room;
    int64_t t = budget;
    if (stalled || event) {
        double step = p->shrink_step;
        if (event || full >= p->psi_high / 2)
            step *= 2;
        t = budget - share(step > 1 ? 1 : step, budget);
        d.reason = event ? PRESSURE_SHRINK_EVENT : PRESSURE_SHRINK_PSI;
    }
    if (t > cap && (t - cap >= deadband || t != budget || cap == p->max_budget)) {
        t = cap;
        d.reason = PRESSURE_SHRINK_ROOM;
    } else if (t == budget && max_known(d.psi, s->some.avg10) < p->psi_calm &&
               cap != PRESSURE_UNLIMITED &&
               since(s->time_ns, st->last_pressure_ns) >= p->calm_ns &&
               since(s->time_ns, st->last_grow_ns) >= p->grow_every_ns &&
               cap - budget >= deadband) {
        t = min64(budget + max64(share(p->grow_step, cap - budget), deadband), cap);
        st->last_grow_ns = s->time_ns;
        d.reason = PRESSURE_GROW;
    }
    d.target = max64(t, p->min_budget);
    if (d.target == budget)
        d.reason = PRESSURE_HOLD;
    return d;
}
