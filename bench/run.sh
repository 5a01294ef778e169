#!/bin/sh
# bench/run.sh — what `make bench` runs: spillway-bench (matvec against the
# memory bandwidth, tokenizer, expert reads) and `spillway bench` on generated
# models, assembled into one markdown report, a section per benchmark.
#
#   bench/run.sh [--quick] [--out FILE]
#
# Full run: llama-3.2-1b and qwen3-30b-a3b in Q4_K_M and Q8_0, 512 prompt
# tokens and 128 decode steps, $BENCH_THREADS (2) threads; writes
# bench/RESULTS.md (its own sections; bench/results_merge.py keeps the
# others). --quick (make bench QUICK=1): spillway-bench --quick and
# tiny-moe only, a smoke test for CI; writes build/RESULTS-quick.md unless
# --out says otherwise.
#
# The models are written by `spillway gen` (real layouts, random weights) into
# $SPILLWAY_BENCH_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/spillway) and
# reused from there. A model larger than the RAM budget (MemTotal - 5 GiB, or
# $BENCH_RAM_GB) gets fewer layers so that it stays in RAM; one that does not
# fit on the disk gets 12 layers; the report says which.
#
# The models run first and spillway-bench after them. What both call a quiet
# bus is measured against the read bandwidth of an idle one: the median of
# spillway-bench's figure over the last five full runs on this CPU model,
# this one's included ($SPILLWAY_BENCH_CACHE/read-bandwidth-history-Nt,
# bench/bw_history.py), so that a run whose bus stays busy throughout is not
# judged.
#
# STREAM=1 adds bench/stream.sh's section (a model larger than its memory
# cgroup, streamed against mmap and the disk's bound; needs root).
set -eu
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
SPILLWAY=${SPILLWAY:-$BUILD/spillway}
SWBENCH=${SWBENCH:-$BUILD/spillway-bench}
THREADS=${BENCH_THREADS:-2}
CACHE=${SPILLWAY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway}
mkdir -p "$CACHE"
quick=0
out=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$out" ]; then
    if [ $quick = 1 ]; then out=$BUILD/RESULTS-quick.md; else out=bench/RESULTS.md; fi
fi
for b in "$SPILLWAY" "$SWBENCH"; do
    [ -x "$b" ] || { echo "bench: $b is missing (run make first)" >&2; exit 1; }
done
command -v python3 >/dev/null 2>&1 || { echo "bench: needs python3 (scripts/setup)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
failures=0

# --- the machine ---------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
ncpu=$(nproc)
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
mem_gib=$(awk -v k="$mem_kb" 'BEGIN { printf "%.1f", k / 1048576 }')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev + uncommitted changes"
if [ $quick = 1 ]; then cmd="make bench QUICK=1"; else cmd="make bench"; fi
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(loadavg)

# The $THREADS-thread read bandwidth of an idle bus as the last full runs on this CPU model
# measured it (bench/bw_history.py; 0.0: none yet): the models' decodes look for quiet blocks
# against it, so that a run whose bus stays busy throughout cannot call its own best quiet.
# This run's figure joins it once spillway-bench has measured it.
hist_file="$CACHE/read-bandwidth-history-${THREADS}t"
seen_ref=0.0 # as bw_history.py prints "none"
[ $quick = 0 ] && seen_ref=$(python3 bench/bw_history.py "$hist_file" "$cpu" ref)

# --- spillway bench on generated models -----------------------------------
if [ -n "${BENCH_RAM_GB:-}" ]; then
    ram_budget=$(awk -v g="$BENCH_RAM_GB" 'BEGIN { printf "%.0f", g * 1e9 }')
else
    ram_budget=$(awk -v k="$mem_kb" 'BEGIN { printf "%.0f", k * 1024 - 5 * 2^30 }')
fi

# prepare LIKE TYPE: prints "FILE<TAB>NOTE" for a model file in the cache
# (generated unless it is there), or "-<TAB>WHY" if it can't be made.
prepare()
{
    like=$1 type=$2
    row=$("$SPILLWAY" gen --list --type "$type" | awk -v m="$like" '$1 == m { print $3, $(NF-1) }')
    [ -n "$row" ] || { printf -- '-\t-\tspillway gen does not know %s\n' "$like"; return; }
    full_layers=${row% *}
    full_bytes=$(awk -v g="${row#* }" 'BEGIN { printf "%.0f", g * 1e9 }')
    layers=$full_layers note=""
    if [ "$full_bytes" -gt "$ram_budget" ]; then
        # fewer layers, rounded down to a multiple of 4, so the file fits in RAM
        layers=$(awk -v n="$full_layers" -v s="$full_bytes" -v b="$ram_budget" \
            'BEGIN { l = int(n * b / s / 4) * 4; print (l < 4 ? 4 : l) }')
        note="$layers of $full_layers layers: the full model ($(awk -v s="$full_bytes" 'BEGIN { printf "%.1f", s / 1e9 }') GB) does not fit in RAM"
    fi
    name=$like-$type
    [ "$layers" != "$full_layers" ] && name=$name-${layers}L
    file=$CACHE/$name.gguf
    if [ ! -f "$file" ]; then
        need=$(awk -v s="$full_bytes" -v l="$layers" -v n="$full_layers" \
            'BEGIN { printf "%.0f", s * l / n / 1024 + 2 * 2^20 }') # KiB, 2 GiB spare
        avail=$(df -Pk "$CACHE" | awk 'NR == 2 { print $4 }')
        if [ "$need" -gt "$avail" ] && [ "$layers" -gt 12 ]; then
            layers=12
            name=$like-$type-12L
            file=$CACHE/$name.gguf
            note="12 of $full_layers layers: not enough free disk for the full model"
            need=$(awk -v s="$full_bytes" -v n="$full_layers" \
                'BEGIN { printf "%.0f", s * 12 / n / 1024 + 2 * 2^20 }')
        fi
        if [ ! -f "$file" ]; then
            if [ "$need" -gt "$avail" ]; then
                printf -- '-\t-\tskipped: %s MB free in %s, %s MB needed\n' \
                    $((avail / 1024)) "$CACHE" $((need / 1024))
                return
            fi
            echo "bench: spillway gen --like $like --type $type --layers $layers -> $file" >&2
            if ! "$SPILLWAY" gen --like "$like" --type "$type" --layers "$layers" --quiet \
                    --force --out "$file.part" >&2; then
                rm -f "$file.part"
                printf -- '-\t-\tspillway gen failed\n'
                return
            fi
            mv "$file.part" "$file"
        fi
    fi
    printf '%s\t%s\t%s\n' "$file" "$layers" "$note"
}

if [ $quick = 1 ]; then
    models="tiny-moe:q4_k_m"
    nprompt=64 ngen=16
else
    models="llama-3.2-1b:q4_k_m llama-3.2-1b:q8_0 qwen3-30b-a3b:q4_k_m qwen3-30b-a3b:q8_0"
    nprompt=512 ngen=128
fi
: >"$tmp/rows.jsonl"
# every weight in RAM: --resident where this build has it (it streams experts
# by default)
resident=""
"$SPILLWAY" bench --help 2>&1 | grep -q -- '--resident' && resident="--resident"
# a decode that met a busy bus throughout runs again (full runs; bench_decode's
# --retry-decode), so that it has quiet blocks to be judged on
retry=""
if [ $quick = 0 ] && "$SPILLWAY" bench --help 2>&1 | grep -q -- '--retry-decode'; then
    retry="--retry-decode ${BENCH_RETRY_S:-120}"
    [ "$seen_ref" = 0.0 ] || retry="$retry --quiet-ref $seen_ref"
fi
for m in $models; do
    like=${m%%:*} type=${m#*:}
    prep=$(prepare "$like" "$type")
    file=$(printf '%s' "$prep" | cut -f1)
    layers=$(printf '%s' "$prep" | cut -f2)
    note=$(printf '%s' "$prep" | cut -f3-)
    load=$(loadavg)
    if [ "$file" = "-" ]; then
        echo "bench: $like $type: $note" >&2
        python3 -c 'import json,sys; print(json.dumps({"like":sys.argv[1],"type":sys.argv[2],"note":sys.argv[3],"load":sys.argv[4]}))' \
            "$like" "$type" "$note" "$load" >>"$tmp/rows.jsonl"
        continue
    fi
    echo "bench: spillway bench $file --threads $THREADS --prompt $nprompt --gen $ngen $resident $retry" >&2
    # shellcheck disable=SC2086
    if "$SPILLWAY" bench "$file" --threads "$THREADS" --prompt "$nprompt" --gen "$ngen" \
            $resident $retry --json >"$tmp/one.json" 2>"$tmp/one.err"; then
        python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
r.update(like=sys.argv[2], type=sys.argv[3], note=sys.argv[4], load=sys.argv[5],
         load_end=sys.argv[6], file_bytes=int(sys.argv[7]), layers=sys.argv[8])
print(json.dumps(r))' "$tmp/one.json" "$like" "$type" "$note" "$load" "$(loadavg)" \
            "$(stat -c %s "$file")" "$layers" >>"$tmp/rows.jsonl"
    else
        failures=$((failures + 1))
        cat "$tmp/one.err" >&2
        why="spillway bench failed: $(tail -n 1 "$tmp/one.err")"
        python3 -c 'import json,sys; print(json.dumps({"like":sys.argv[1],"type":sys.argv[2],"note":sys.argv[3],"load":sys.argv[4]}))' \
            "$like" "$type" "$why" "$load" >>"$tmp/rows.jsonl"
    fi
done

# --- spillway-bench: matvec vs bandwidth, tokenizer, expert reads ----------
# Its matvec cells' quiet samples are measured against its own best bandwidth
# or the earlier runs' reference, whichever is more.
echo "bench: spillway-bench" >&2
swargs=""
if [ $quick = 1 ]; then
    swargs="--quick --sections matvec --types Q4_K,Q8_0"
elif [ "$THREADS" = 2 ] && [ "$seen_ref" != 0.0 ]; then
    swargs="--quiet-ref $seen_ref"
fi
# shellcheck disable=SC2086
if ! "$SWBENCH" $swargs --out "$tmp/swbench.md" >&2; then
    failures=$((failures + 1))
fi
[ -f "$tmp/swbench.md" ] || echo "(spillway-bench wrote no report)" >"$tmp/swbench.md"
# its bandwidth at this thread count: with the models' own samples, the reference for
# "an idle bus"
swbw=$(awk -F'|' -v t="$THREADS" '$2+0 == t && $3+0 > 0 {print $3+0; exit}' "$tmp/swbench.md")
# this run's figure joins the history, and the reference the decodes are judged against is the
# median of the last runs with it
idle_ref=0
if [ $quick = 0 ]; then
    [ -n "$swbw" ] && python3 bench/bw_history.py "$hist_file" "$cpu" add "$swbw"
    idle_ref=$(python3 bench/bw_history.py "$hist_file" "$cpu" ref)
fi

# --- the report -------------------------------------------------------------
{
    echo "# spillway benchmarks"
    echo
    echo "- machine: $cpu; $ncpu CPUs online; ${mem_gib} GiB RAM"
    echo "- date: $started"
    echo "- command: \`$cmd\` (bench/run.sh); source: $rev"
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $(loadavg)." \
        "The machine is shared: a load above $ncpu means other processes took CPU time" \
        "from these runs, so their numbers are lower bounds."
    echo
    echo "## Models: prompt and decode speed (\`spillway bench\`)"
    echo
    python3 - "$tmp/rows.jsonl" "$THREADS" "$nprompt" "$ngen" "$CACHE" "$resident" "${swbw:-0}" "$retry" \
        "$idle_ref" "$( [ $quick = 0 ] && echo "$hist_file" )" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads, nprompt, ngen, cache, resident = sys.argv[2:7]
swbw = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
retry = sys.argv[8] if len(sys.argv) > 8 else ""
idle_ref = float(sys.argv[9]) if len(sys.argv) > 9 else 0.0
hist_file = sys.argv[10] if len(sys.argv) > 10 else ""
resident = " " + resident if resident else ""
print(f"`spillway bench MODEL --threads {threads} --prompt {nprompt} --gen {ngen}{resident} --json` on "
      f"models written by `spillway gen --like NAME --type TYPE` (the real model's tensor "
      f"shapes and type mix, random weights) into `{cache}`, every weight in RAM. "
      "Prompt: one batched prefill of the prompt tokens; decode: one token per step. "
      "The bound is the measured read bandwidth (same thread count) divided by the bytes "
      "one decode step reads (resident tensors + the experts routed to); the bandwidth is the "
      "best sample of the run. Paired: each 4-token block of the decode against a bandwidth "
      "sample taken just before and after it (src/cli/bench_pairs.h): the median over blocks, "
      "and the median over quiet blocks (both samples at >= 90% of the run's best), which is "
      "the figure for an idle machine. GB = 10^9 bytes.")
if retry:
    print(f"With `{retry}`: a decode with fewer than 5 quiet blocks ran its steps again from an "
          "empty cache, until it had 5 or the seconds were up, and the pass with the most quiet "
          "blocks is the one reported (chosen by its bandwidth samples alone; the notes say how "
          "many passes ran).")
kv = sorted({r["kv_type"] for r in rows if r.get("kv_type")})
print(f"KV cache: {', '.join(kv) or 'unknown'} (spillway's default, as llama.cpp's). The bound "
      "counts weight bytes only: reading the cache counts against the decode, which starts "
      "from an empty one, as llama-bench's tg test does (positions 0 to gen - 1).\n")
print("| model | type | layers | file GB | prompt tok/s | decode tok/s | bytes/token | "
      "bandwidth GB/s | bound tok/s | decode / bound | paired: median | paired: quiet "
      "(blocks) | bandwidth samples GB/s | load avg | notes |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
def paired(r):
    p = r.get("paired")
    if not p:
        return " | | "
    q = p["decode_fraction_quiet"]
    quiet = f"{100 * q:.0f}% ({p['quiet_blocks']})" if q is not None else f"- (0)"
    return (f"{100 * p['decode_fraction_median']:.0f}% | {quiet} | "
            f"{p['bandwidth_min_gbs']:.0f}-{p['bandwidth_max_gbs']:.0f}")
for r in rows:
    note = r.get("note") or ""
    load = r.get("load", "").split(" ")[0]
    if "decode_tps" not in r:
        print(f"| {r['like']} | {r['type']} | | | | | | | | | | | | {load} | {note} |")
        continue
    if not r.get("bandwidth_clean", True):
        note = (note + "; " if note else "") + "bandwidth samples disturbed by other processes"
    if r.get("decode_passes", 1) > 1:
        note = (note + "; " if note else "") + f"the quietest of {r['decode_passes']} decode passes"
    if r["decode_fraction_of_bound"] > 1:
        note = (note + "; " if note else "") + ("above its bound: this run's bandwidth sample "
                "was low (other processes), see the other rows and spillway-bench's figure")
    layers = r.get("layers", "")
    print(f"| {r['like']} | {r['type']} | {layers} | {r['file_bytes'] / 1e9:.2f} | "
          f"{r['prompt_tps']:.1f} | {r['decode_tps']:.2f} | "
          f"{r['bytes_per_token'] / 1e6:.0f} MB | {r['bandwidth_gbs']:.1f} | "
          f"{r['bound_tps']:.2f} | {100 * r['decode_fraction_of_bound']:.0f}% | "
          f"{paired(r)} | {load} | {note} |")
moe = [r for r in rows if r.get("routing")]
if moe:
    print("\nMoE routing over the decode steps (random weights: real models route "
          "differently):\n")
    print("| model | type | experts used/total | distinct experts per layer (mean) | "
          "if random | reuse from previous token | if random |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in moe:
        g = r["routing"]
        print(f"| {r['like']} | {r['type']} | {g['n_expert_used']}/{g['n_expert']} | "
              f"{g['distinct_mean']:.1f} | {g['distinct_random']:.1f} | "
              f"{100 * g['reuse_prev']:.0f}% | {100 * g['reuse_random']:.0f}% |")
print("\n### Target: decode at >= 85% of its bandwidth bound\n")
# An idle bus reads what the median of the last five full runs' spillway-bench figures says
# (bench/bw_history.py; a quick run, or a first one without that figure: the most bandwidth
# seen in this run); a block counts as quiet when the samples on both sides reach 90% of that,
# and a model is judged on the median of its quiet blocks, if it has 5.
run_best = max([swbw] + [max(r["paired"]["sample_gbs"]) for r in rows
                         if r.get("paired") and r["paired"].get("sample_gbs")]
               + [r.get("decode_passes_best_gbs") or 0 for r in rows])
if idle_ref > 0:
    ref = idle_ref
    print(f"Reference for an idle bus: {ref:.1f} GB/s, the median of spillway-bench's read "
          f"bandwidth ({threads} threads) over the last full runs on this CPU model, "
          + (f"this one's {swbw:.1f} GB/s included" if swbw > 0 else "this one measured none")
          + f" (kept in `{hist_file}`; bench/bw_history.py says why a "
          f"median of runs and not the most ever seen). The most any sample of this run saw was "
          f"{run_best:.1f} GB/s. ", end="")
else:
    ref = run_best
    print(f"Reference for an idle bus: {ref:.1f} GB/s, the most bandwidth seen in this run "
          f"(spillway-bench and the samples between decode blocks; "
          f"{'a quick run keeps no history' if not hist_file else 'no earlier run recorded one'}). ",
          end="")
print("A 4-token block is quiet when the bandwidth samples on both sides of it reach 90% of "
      "that; a model is judged on the median of its quiet blocks' decode / (bandwidth around "
      "them), if it has at least 5, and not judged otherwise: the bus was busy for the whole "
      "run.\n")
verdicts = []
for r in rows:
    p = r.get("paired") or {}
    bw, rate = p.get("sample_gbs") or [], p.get("block_gbs") or []
    if "decode_tps" not in r or len(bw) != len(rate) + 1:
        continue
    quiet = sorted(rate[i] / ((bw[i] + bw[i + 1]) / 2) for i in range(len(rate))
                   if min(bw[i], bw[i + 1]) >= 0.9 * ref)
    name = f"{r['like']} {r['type']}"
    if len(quiet) < 5:
        print(f"- {name}: not judged ({len(quiet)} quiet blocks; its samples reached "
              f"{max(bw):.0f} GB/s)")
        verdicts.append(None)
        continue
    n = len(quiet)
    med = quiet[n // 2] if n % 2 else (quiet[n // 2 - 1] + quiet[n // 2]) / 2
    print(f"- {name}: {100 * med:.0f}% (median of {n} quiet blocks) — "
          f"{'met' if med >= 0.85 else 'not met'}")
    verdicts.append(med >= 0.85)
if verdicts:
    if False in verdicts:
        print("\n**Target not met.**")
    elif None in verdicts:
        print("\n**Not determined: the bus was never idle long enough for some models.**")
    else:
        print("\n**Target met.**")
EOF
    echo
    # spillway-bench's report, one heading level down
    sed -e 's/^## /### /' -e "s| --out $tmp/swbench.md\`|\` (from bench/run.sh)|" \
        -e 's/^# spillway-bench$/## spillway-bench: matvec, tokenizer, expert reads/' "$tmp/swbench.md"
} >"$tmp/report.md"
# STREAM=1: the streaming benchmark too (bench/stream.sh: root, a memory
# cgroup, dropped page caches; the machine's other work is disturbed)
if [ "${STREAM:-0}" = 1 ]; then
    smodel=${STREAM_MODEL:-$CACHE/qwen3-30b-a3b-q4_k_m.gguf}
    {
        echo
        echo "## Streaming: qwen3-30b-a3b under $(echo "${STREAM_LIMIT:-8G}" | sed 's/G$/ GiB/')"
        echo
        if ! SPILLWAY=$SPILLWAY MODEL=$smodel LIMIT=${STREAM_LIMIT:-8G} THREADS=$THREADS \
            sh bench/stream.sh; then
            echo "bench/stream.sh failed (see the log)"
            failures=$((failures + 1))
        fi
    } >>"$tmp/report.md"
fi
mkdir -p "$(dirname "$out")"
# other scripts (pressure.sh, bench_server.sh, plan's curves) own their own
# sections of the same file: replace only this run's sections
python3 bench/results_merge.py "$tmp/report.md" "$out"
echo "bench: wrote $out" >&2
if [ $quick = 1 ]; then cat "$out"; fi
[ $failures -eq 0 ] || { echo "bench: $failures benchmark(s) failed" >&2; exit 1; }
