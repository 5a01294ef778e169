#!/bin/sh
# bench/pressure.sh — the memory-pressure scenario of the issue at full
# scale: `spillway run` on a MoE larger than its memory cgroup's limit, a
# second process in the same cgroup that allocates and touches a large
# block for a while, and the timeline of what spillway did (budget, RSS,
# cgroup usage, tok/s) written as the section "Memory pressure timeline" of
# bench/RESULTS.md (replaced if there, else appended).
#
#   bench/pressure.sh [--model FILE] [--limit MIB] [--hog MIB] [--hog-at S]
#                     [--hog-for S] [--after S] [--threads N] [--out FILE]
#                     [--no-results]
#
# Defaults: qwen3-30b-a3b-q4_k_m.gguf (18.5 GB) from $SPILLWAY_BENCH_CACHE,
# a 4096 MiB limit, a 1024 MiB hog that starts 30 s after the first token
# and holds its memory for 40 s, then 50 s more; about 2.5 minutes in all.
# Needs root and a memory cgroup (v1, or v2 with the memory controller
# delegated to our cgroup's children), and python3 (the hog, the table).
# The raw timeline, events and spillway's output stay in $WORK
# (default /var/tmp/spillway-pressure).
set -eu
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
SPILLWAY=${SPILLWAY:-$BUILD/spillway}
CACHE=${SPILLWAY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway}
WORK=${WORK:-/var/tmp/spillway-pressure}
model=$CACHE/qwen3-30b-a3b-q4_k_m.gguf
limit=4096 hog=1024 hog_at=30 hog_for=40 after=50 threads=2
out=bench/RESULTS.md results=1
while [ $# -gt 0 ]; do
    case $1 in
    --model) model=$2; shift ;;
    --limit) limit=$2; shift ;;
    --hog) hog=$2; shift ;;
    --hog-at) hog_at=$2; shift ;;
    --hog-for) hog_for=$2; shift ;;
    --after) after=$2; shift ;;
    --threads) threads=$2; shift ;;
    --out) out=$2; shift ;;
    --no-results) results=0 ;;
    *) sed -n '8,11p' "$0" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "bench/pressure.sh: $*" >&2; exit 1; }
[ -x "$SPILLWAY" ] || die "no $SPILLWAY (run make)"
[ -f "$model" ] || die "no model $model"
command -v python3 >/dev/null || die "needs python3"
[ "$(id -u)" = 0 ] || die "needs root to create a memory cgroup"

# --- a memory cgroup under ours --------------------------------------------
v1=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}memory\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup)
if [ -n "$v1" ] && [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    cg=/sys/fs/cgroup/memory${v1%/}/spillway-pressure-$$
    mkdir "$cg" || die "cannot create $cg"
    echo $((limit << 20)) > "$cg/memory.limit_in_bytes"
    cgv=1
else
    v2=$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup)
    mnt=/sys/fs/cgroup
    [ -f $mnt/cgroup.controllers ] || mnt=/sys/fs/cgroup/unified
    grep -qw memory "$mnt${v2%/}/cgroup.subtree_control" 2>/dev/null ||
        die "no memory cgroup controller here"
    cg=$mnt${v2%/}/spillway-pressure-$$
    mkdir "$cg" || die "cannot create $cg"
    echo $((limit << 20)) > "$cg/memory.max"
    echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
    cgv=2
fi
mkdir -p "$WORK"
tl=$WORK/timeline.jsonl ev=$WORK/events.txt
rm -f "$tl" "$ev" "$WORK/hog.out" "$WORK/run.out" "$WORK/run.err"
sp="" hp=""
cleanup() {
    [ -n "$hp" ] && kill "$hp" 2>/dev/null || true
    [ -n "$sp" ] && kill "$sp" 2>/dev/null || true
    wait 2>/dev/null || true
    for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.5; done
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load0=$(load)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# --- spillway in the cgroup ------------------------------------------------
cmd="$SPILLWAY run $model -p 'Once upon a time' -n 100000 --temp 0 --ignore-eos --threads $threads --ctx 2048 --kv-type q8_0 --timeline $tl --verbose"
sh -c "echo \$\$ > $cg/cgroup.procs && exec $cmd" >"$WORK/run.out" 2>"$WORK/run.err" &
sp=$!
echo "spillway start $(now)" >>"$ev"
# the first token
i=0
until grep -q '"steps":[1-9]' "$tl" 2>/dev/null; do
    kill -0 $sp 2>/dev/null || die "spillway exited: $(tail -n 3 "$WORK/run.err")"
    i=$((i + 1)); [ $i -lt 1200 ] || die "no token in 120 s"
    sleep 0.1
done
echo "first token $(now)" >>"$ev"
sleep "$hog_at"

# --- the other process -----------------------------------------------------
hogpy='import sys, time
mb, hold = int(sys.argv[1]), float(sys.argv[2])
held = []
for i in range(0, mb, 16):
    held.append(bytearray(16 << 20))  # zero-filled: every page touched
    time.sleep(0.05)
print("allocated", flush=True)
time.sleep(hold)'
printf '%s\n' "$hogpy" >"$WORK/hog.py"
echo "hog start $(now)" >>"$ev"
sh -c "echo \$\$ > $cg/cgroup.procs && exec python3 $WORK/hog.py $hog $hog_for" >"$WORK/hog.out" 2>&1 &
hp=$!
until grep -q allocated "$WORK/hog.out" 2>/dev/null || ! kill -0 $hp 2>/dev/null; do sleep 0.05; done
echo "hog allocated $(now)" >>"$ev"
hs=0; wait $hp || hs=$?
hp=""
echo "hog exit $(now) $hs" >>"$ev"
sleep "$after"

# --- the end: Ctrl-C ends generation cleanly ---------------------------------
kill -INT $sp 2>/dev/null || true
ss=0; wait $sp || ss=$?
sp=""
echo "spillway exit $(now) $ss" >>"$ev"
if [ $cgv = 1 ]; then
    oom=$(sed -n 's/^oom_kill //p' "$cg/memory.oom_control")
    hits=$(cat "$cg/memory.failcnt")
    peak=$(cat "$cg/memory.max_usage_in_bytes")
else
    oom=$(sed -n 's/^oom_kill //p' "$cg/memory.events")
    hits=$(sed -n 's/^max //p' "$cg/memory.events")
    peak=$(cat "$cg/memory.peak" 2>/dev/null || echo -1)
fi
load1=$(load)
echo "spillway exit status $ss, hog exit status $hs, cgroup OOM kills $oom, limit hits $hits, peak $peak"
tail -n 12 "$WORK/run.err"

# --- the table ------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
psi=absent; [ -r /proc/pressure/memory ] && psi=present
mdesc="$(basename "$model") ($(du -k "$model" | awk '{ printf "%.1f GB", $1 * 1024 / 1e9 }'))"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export tl ev out results cpu mem psi mdesc rev cgv limit hog hog_at hog_for after threads \
    started load0 load1 ss hs oom hits peak cmd
python3 - <<'EOF'
import json, os, re
E = os.environ
pts = [json.loads(l) for l in open(E["tl"]) if l.endswith("\n")]
ev = [l.split() for l in open(E["ev"])]
if not pts:
    raise SystemExit("empty timeline")
u0 = pts[0]["unix"] - pts[0]["t"]
events = [(float(e[2]) - u0, e[0] + " " + e[1]) for e in ev]
first = next(t for t, name in events if name == "first token")
MiB = lambda b: "" if b is None else "%.0f" % (b / 2**20)
rows, step = [], 5.0
t, i = 0.0, 0
end = pts[-1]["t"]
while t <= end + 1e-9:
    # the sample nearest each 5 s mark; tok/s over the 5 s before it
    j = min(range(len(pts)), key=lambda k: abs(pts[k]["t"] - t))
    p = pts[j]
    q = min(pts, key=lambda x: abs(x["t"] - (p["t"] - step)))
    dt = p["t"] - q["t"]
    rate = (p["steps"] - q["steps"]) / dt if dt > 0.5 else 0.0
    names = [n for (te, n) in events if t - step < te <= t and n != "spillway start"]
    lows = [x["budget"] for x in pts if t - step < x["t"] <= t]
    low = min(lows + [p["budget"]])
    rows.append("| %.0f | %s | %s | %s | %s | %s | %s | %.1f | %s | %s |" % (
        p["t"], MiB(p["budget"]), MiB(low), MiB(p["cache"]), MiB(p["rss"]), MiB(p["cg_usage"]),
        p["cg_failcnt"] if p["cg_failcnt"] is not None else "", rate, p["reason"],
        ", ".join(names)))
    t += step
def at(name):
    return next((te for te, n in events if n == name), None)
hs, he = at("hog start"), at("hog exit")
ha = at("hog allocated") or hs
def mean_rate(a, b):
    sel = [x for x in pts if a <= x["t"] <= b]
    return (sel[-1]["steps"] - sel[0]["steps"]) / (sel[-1]["t"] - sel[0]["t"]) if len(sel) > 1 and sel[-1]["t"] > sel[0]["t"] else 0.0
before = [x for x in pts if first + 10 <= x["t"] <= hs]
during = [x for x in pts if ha + 5 <= x["t"] <= he]
after = [x for x in pts if he + 20 <= x["t"]]
def summ(sel, label, a, b):
    if not sel:
        return ""
    return "%s: budget %s-%s MiB, RSS %s-%s MiB, %.2f tok/s" % (
        label, MiB(min(x["budget"] for x in sel)), MiB(max(x["budget"] for x in sel)),
        MiB(min(x["rss"] for x in sel)), MiB(max(x["rss"] for x in sel)), mean_rate(a, b))
b_hs = min(pts, key=lambda x: abs(x["t"] - hs))["budget"]
shrink = next((x["t"] for x in pts if x["t"] >= hs and x["budget"] < b_hs), None)
lines = [
    "## Memory pressure timeline",
    "",
    "- machine: %s; %s GiB RAM, no swap; cgroup v%s memory controller; PSI %s" % (E["cpu"], E["mem"], E["cgv"], E["psi"]),
    "- date: %s; source: %s + uncommitted changes" % (E["started"], E["rev"]),
    "- command: `bench/pressure.sh --limit %s --hog %s --hog-at %s --hog-for %s --after %s --threads %s`: spillway runs as `%s` in a new memory cgroup (a child of this process's) limited to %s MiB; %s s after its first token a second process in the same cgroup allocates %s MiB in 16 MiB steps every 50 ms (python3 bytearrays: every page touched), holds it %s s and exits; %s s later Ctrl-C ends generation." % (
        E["limit"], E["hog"], E["hog_at"], E["hog_for"], E["after"], E["threads"],
        re.sub(r"\S*/", "", E["cmd"]), E["limit"], E["hog_at"], E["hog"], E["hog_for"], E["after"]),
    "- model: %s: larger than the limit (the experts stream from the SSD through the budgeted cache)" % E["mdesc"],
    "- load average (1, 5, 15 min) at the start: %s; at the end: %s (2 CPUs shared with other work: tok/s are lower bounds)" % (E["load0"], E["load1"]),
    "- outcome: spillway exit status %s (0: not killed), the hog's %s; cgroup OOM kills %s, limit hits (failcnt) %s, peak charge %s MiB of %s" % (
        E["ss"], E["hs"], E["oom"], E["hits"], MiB(int(E["peak"])) if int(E["peak"]) >= 0 else "?", E["limit"]),
] + ["- " + x for x in (
    summ(before, "before the hog (from 10 s after the first token)", first + 10, hs),
    summ(during, "while the hog held its memory (from 5 s after it finished allocating)", ha + 5, he),
    summ(after, "from 20 s after the hog exited", he + 20, end)) if x]
if shrink is not None:
    lines.append("- the budget first fell %.2f s after the hog started (it allocated for %.2f s)" % (shrink - hs, ha - hs))
lines += [
    "",
    "From `--timeline` (a JSON line every 250 ms from the store's pressure watcher): the sample nearest each 5 s mark; t in seconds since the store opened; budget = the expert cache's budget, min = its lowest in the 5 s before; cache = slots holding experts; RSS = spillway's resident set; cgroup = the cgroup's charge (spillway + the hog); hits = memory.failcnt; tok/s over the 5 s before; reason = the budget's last move; events in the 5 s before.",
    "",
    "| t s | budget MiB | min MiB | cache MiB | RSS MiB | cgroup MiB | hits | tok/s | reason | events |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
] + rows + [""]
section = "\n".join(lines) + "\n"
print(section)
if E["results"] == "1":
    text = open(E["out"]).read() if os.path.exists(E["out"]) else ""
    m = re.search(r"^## Memory pressure timeline\n.*?(?=^## |\Z)", text, re.S | re.M)
    if m:
        text = text[:m.start()] + section + ("\n" if m.end() < len(text) else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    open(E["out"], "w").write(text)
    print("wrote the section to", E["out"])
EOF
