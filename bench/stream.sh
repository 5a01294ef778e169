#!/bin/sh
# bench/stream.sh — a MoE model larger than its memory limit: decode speed
# streamed (the default store) against --mmap (the page cache) under the
# same cgroup v1 memory limit, and against the disk's bound.
#
#   sh bench/stream.sh [--out FILE.md]      (root: cgroups, drop_caches;
#                                           FILE.md.jsonl gets every run's JSON)
#
# Each run: the page cache is dropped, then `spillway bench MODEL --threads
# T --prompt P --gen G --json` runs inside a fresh child memory cgroup with
# memory.limit_in_bytes = LIMIT (page cache included, as the kernel counts
# it). bench feeds the same fixed teacher-forced tokens to every run. The
# streamed run also probes the disk (--disk-probe: random O_DIRECT reads of
# the model's own expert slices at the store's queue depth, in the same
# process and cgroup), so its bound is (that bandwidth) / (expert bytes
# the decode actually read per token). The cgroup is removed at the end.
#
# Environment: SPILLWAY (build/spillway), MODEL (the 18.5 GB generated
# qwen3-30b-a3b q4_k_m), LIMIT (8G), THREADS (2), NPROMPT (16), NGEN (32),
# PROBE (disk probe seconds, 4), STREAM_ARGS (extra options for the streamed
# runs), TIMEOUT (seconds per run, 900), REPLAY_TRACE (a routing trace for
# the third run, `bench --replay`: the store and reader without compute;
# default the fixtures' gsm8k_2_routing.jsonl, empty: no replay run),
# REPLAY_CACHE (its expert cache, 512M).
set -eu

SPILLWAY=${SPILLWAY:-build/spillway}
MODEL=${MODEL:-/root/.cache/spillway/qwen3-30b-a3b-q4_k_m.gguf}
LIMIT=${LIMIT:-8G}
THREADS=${THREADS:-2}
NPROMPT=${NPROMPT:-16}
NGEN=${NGEN:-32}
PROBE=${PROBE:-4}
STREAM_ARGS=${STREAM_ARGS:-}
TIMEOUT=${TIMEOUT:-900}
fixtures=${SPILLWAY_FIXTURES:-../shared/fixtures}
REPLAY_TRACE=${REPLAY_TRACE-$fixtures/traces/gsm8k_2_routing.jsonl}
[ -f "$REPLAY_TRACE" ] || REPLAY_TRACE=""
REPLAY_CACHE=${REPLAY_CACHE:-512M}
out=""
while [ $# -gt 0 ]; do
    case $1 in
    --out) out=$2; shift 2 ;;
    *) echo "usage: sh bench/stream.sh [--out FILE.md]" >&2; exit 2 ;;
    esac
done

die() { echo "stream: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (memory cgroup, drop_caches)"
[ -f "$MODEL" ] || die "no model at $MODEL"
[ -x "$SPILLWAY" ] || die "no spillway binary at $SPILLWAY (make)"
limit_bytes=$(python3 -c '
import sys
s = sys.argv[1].upper().rstrip("B").rstrip("I")
m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
print(int(float(s.rstrip("KMG")) * m))' "$LIMIT")

# A child of this process's own memory cgroup (v1).
v1=/sys/fs/cgroup/memory
[ -f $v1/memory.limit_in_bytes ] || die "no cgroup v1 memory controller at $v1"
parent=$v1$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
[ -w "$parent" ] || parent=$v1
cg=$parent/spillway-stream.$$
tmp=$(mktemp -d /var/tmp/spillway-stream.XXXXXX)
cleanup() {
    if [ -d "$cg" ]; then
        # nothing of ours runs in it by now; empty it of stray pages and remove it
        echo 0 >"$cg/memory.force_empty" 2>/dev/null || true
        rmdir "$cg" 2>/dev/null || echo "stream: could not remove $cg" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir "$cg"
echo "$limit_bytes" >"$cg/memory.limit_in_bytes"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# run NAME ARGS...: one bench run in the cgroup, page cache dropped first
# (ARGS may begin with --replay TRACE: then MODEL is the model it drives)
run() {
    name=$1
    shift
    set -- "$@" "$MODEL" --threads "$THREADS" --prompt "$NPROMPT" --gen "$NGEN" --json
    sync
    echo 3 >/proc/sys/vm/drop_caches
    echo 0 >"$cg/memory.max_usage_in_bytes"
    failcnt0=$(cat "$cg/memory.failcnt")
    load0=$(loadavg)
    echo "stream: $name: spillway bench $*" >&2
    t0=$(date +%s.%N)
    rc=0
    timeout "$TIMEOUT" sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
        "$SPILLWAY" bench "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" || rc=$?
    t1=$(date +%s.%N)
    if [ $rc -ne 0 ]; then
        cat "$tmp/$name.err" >&2
        echo "{\"failed\": $rc}" >"$tmp/$name.json"
    fi
    python3 - "$tmp/$name.json" "$name" "$(cat "$cg/memory.max_usage_in_bytes")" \
        "$(($(cat "$cg/memory.failcnt") - failcnt0))" "$load0" "$(loadavg)" "$t0" "$t1" \
        "$(echo "$*" | sed "s|$MODEL|MODEL|")" \
        >>"$tmp/rows.jsonl" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(name=sys.argv[2], cg_max_usage=int(sys.argv[3]), cg_failcnt=int(sys.argv[4]),
         load=sys.argv[5], load_end=sys.argv[6], wall_s=float(sys.argv[8]) - float(sys.argv[7]),
         args=sys.argv[9])
print(json.dumps(r))
EOF
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
# shellcheck disable=SC2086
run stream --disk-probe "$PROBE" $STREAM_ARGS
run mmap --mmap
# the store and reader alone on recorded routing, no compute: Mixtral's
# GSM8K trace (8 experts, top-2, 32 layers) drives the model's layers 0-31
# (experts 0-7 of its 128) with a cache of REPLAY_CACHE
if [ -n "$REPLAY_TRACE" ]; then
    # shellcheck disable=SC2086
    run replay --replay "$REPLAY_TRACE" --cache "$REPLAY_CACHE" --replay-tokens 200 \
        --disk-probe "$PROBE" $STREAM_ARGS
fi

report() {
    python3 - "$tmp/rows.jsonl" "$MODEL" "$LIMIT" "$THREADS" "$NPROMPT" "$NGEN" "$started" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$(nproc)" <<'EOF'
import json, sys
rows = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
model, limit, threads, nprompt, ngen, started, cpu, ncpu = sys.argv[2:10]
gib = 1 << 30
print(f"- machine: {cpu}; {ncpu} CPUs; date: {started}; model: `{model}`")
print(f"- each run: page cache dropped, then `spillway bench MODEL --threads {threads} "
      f"--prompt {nprompt} --gen {ngen} --json [ARGS]` in a fresh cgroup v1 memory group "
      f"with memory.limit_in_bytes = {limit} (bench/stream.sh)\n")
print("| run | args | decode tok/s | prompt tok/s | hit rate | read per token | cache budget "
      "| peak RSS | cgroup peak | load avg | wall s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for name in ("stream", "mmap"):
    r = rows.get(name)
    if not r or "failed" in r:
        print(f"| {name} | | failed ({r.get('failed') if r else 'missing'}) | | | | | | | | |")
        continue
    hr = r.get("hit_rate")
    per = r.get("decode_bytes_read_per_token") or 0
    print(f"| {name} | `{r['args']}` | {r['decode_tps']:.2f} | {r['prompt_tps']:.2f} | "
          f"{'' if hr is None else f'{100 * hr:.1f}%'} | "
          f"{'' if not per else f'{per / 1e6:.0f} MB'} | "
          f"{r['cache_budget_bytes'] / gib:.2f} GiB | {r['peak_rss_bytes'] / gib:.2f} GiB | "
          f"{r['cg_max_usage'] / gib:.2f} GiB | {r['load'].split()[0]}-{r['load_end'].split()[0]} "
          f"| {r['wall_s']:.0f} |")
s, m = rows.get("stream"), rows.get("mmap")
if s and "failed" not in s:
    d = s.get("disk")
    if d:
        print(f"\nDisk, same run and cgroup: {d['read_gbs']:.2f} GB/s ({d['reads']} random O_DIRECT "
              f"reads of the model's expert slices, mean {d['mean_read_bytes'] / 1e3:.0f} kB, "
              f"{d['reader']}; p50 {d['read_p50_us'] / 1e3:.1f} ms, p99 "
              f"{d['read_p99_us'] / 1e3:.1f} ms).")
    if s.get("disk_bound_tps"):
        print(f"Disk bound: {d['read_gbs']:.2f} GB/s / "
              f"{s['decode_bytes_read_per_token'] / 1e6:.0f} MB per token = "
              f"{s['disk_bound_tps']:.2f} tok/s; streamed decode reaches "
              f"**{100 * s['decode_fraction_of_disk_bound']:.0f}%** of it (target 90%).")
    st = s.get("store", {})
    print(f"Streamed store: {st.get('policy')}, {st.get('reader')}, {st.get('capacity')} of "
          f"{st.get('total_entries')} experts cached; decode stalled on reads "
          f"{s.get('decode_stall_s', 0):.2f} s of {s['decode_s']:.2f} s; read p50 "
          f"{st.get('read_p50_us', 0) / 1e3:.1f} ms, p99 {st.get('read_p99_us', 0) / 1e3:.1f} ms.")
    io_free = s["decode_s"] - s.get("decode_stall_s", 0)
    if io_free > 0:
        print(f"Without its read stalls the same decode would run at {int(ngen) / io_free:.2f} "
              f"tok/s (compute and everything else): streamed reaches "
              f"{100 * s['decode_tps'] * io_free / int(ngen):.0f}% of that.")
    rt = s.get("routing")
    if rt:
        print(f"Routing the decode saw ({rt['moe_layers']} MoE layers): "
              f"{rt['distinct_mean']:.1f} distinct experts per layer per {rt['window']} tokens "
              f"(random routing: {rt['distinct_random']:.1f}); "
              f"{100 * rt['reuse_prev']:.1f}% of a token's experts reused from the previous "
              f"token (random: {100 * rt['reuse_random']:.1f}%).")
    if st.get("prefetch_issued") is not None:
        print(f"Read-ahead (whole run, warm-up included): {st['prefetch_issued']} experts read "
              f"ahead, {st['prefetch_hits']} used, {st['prefetch_wasted']} evicted unused; "
              f"{st.get('misses', 0)} demand misses.")
    if m and "failed" not in m and m["decode_tps"] > 0:
        print(f"Streamed / mmap decode: **{s['decode_tps'] / m['decode_tps']:.2f}x** (target 2x).")
p = rows.get("replay")
if p and "failed" not in p:
    st = p["store"]
    print(f"\nReplay (`spillway bench {p['args']}`, the store and reader alone, no compute): "
          f"{p['tokens']} tokens of {p['layers_replayed']} layers, {p['tokens_per_s']:.1f} tok/s, "
          f"hit rate {100 * (p['hit_rate'] or 0):.1f}%, {p['bytes_read_per_token'] / 1e6:.1f} MB "
          f"read per token at {p['read_gbs']:.2f} GB/s; disk probe {p['disk']['read_gbs']:.2f} "
          f"GB/s: bound {p['disk_bound_tps']:.1f} tok/s, the replay reaches "
          f"**{100 * p['fraction_of_disk_bound']:.0f}%** of it; read p50 "
          f"{st['read_p50_us'] / 1e3:.1f} ms, p99 {st['read_p99_us'] / 1e3:.1f} ms.")
elif p:
    print(f"\nReplay: failed ({p.get('failed')})")
EOF
}
if [ -n "$out" ]; then
    report >"$out"
    cp "$tmp/rows.jsonl" "$out.jsonl" # every run's full bench JSON
else
    report
fi
