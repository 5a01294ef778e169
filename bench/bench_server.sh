#!/bin/sh
# bench/bench_server.sh — load test of `spillway serve`: requests/s, tokens/s,
# latency and time-to-first-token at 1, 4 and 16 concurrent sessions.
#
#   bench/bench_server.sh [MODEL] [--duration S] [--max-tokens N]
#                         [--parallel N] [--levels "1 4 16"] [--out FILE]
#                         [--bin SPILLWAY] [--threads N]
#
# MODEL defaults to the fixtures' tinymoe (a trained 13.7M MoE). Starts the
# release build on a free port with --parallel (default 16, so every client
# decodes at once), drives it with bench/server/loadgen.c (closed loop: each
# client sends its next streamed chat request as soon as the last one ends,
# each a new conversation), and prints a markdown table; --out also writes it.
# --bin serves with another build (e.g. an older one, for before/after
# tables; nothing is built then); --threads is serve's --threads. After each
# level it prints on stderr the engine's mean batch (requests advanced per
# forward call, from /metrics; servers without that counter print none) and
# the server's CPU time per generated token (user + system, from /proc: the
# work done, which the machine's other load disturbs less than wall time;
# idle pool workers spin briefly, so with several threads it includes some
# waiting).
set -eu
cd "$(dirname "$0")/.."

FIXTURES=${SPILLWAY_FIXTURES:-../shared/fixtures}
model="$FIXTURES/tinymoe/tinymoe-q8_0.gguf"
duration=10 max_tokens=32 parallel=16 levels="1 4 16" out="" bin="" threads=""
case "${1:-}" in -*|"") ;; *) model=$1; shift ;; esac
while [ $# -gt 0 ]; do
    case $1 in
    --duration) duration=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "bench_server.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

if [ -z "$bin" ]; then
    make -s build/spillway
    bin=build/spillway
fi
mkdir -p build/bench
cc -O2 -Wall -Wextra -pthread -o build/bench/loadgen bench/server/loadgen.c

log=$(mktemp)
"$bin" serve "$model" --port 0 --parallel "$parallel" --queue 1024 \
    ${threads:+--threads "$threads"} >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT INT TERM
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening.* port=\([0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; echo "bench_server.sh: the server did not start" >&2; exit 1; }

# a counter from /metrics ("" if the server does not export it)
metric() {
    curl -s "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"
}

# user + system clock ticks the server has used
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

# one request to warm up caches and pages
build/bench/loadgen --port "$port" --concurrency 1 --duration 0.5 --max-tokens 8 >/dev/null

table=$(mktemp)
{
    echo "spillway serve $(basename "$model") --parallel $parallel; $(nproc) CPUs;" \
         "streamed chat, max_tokens $max_tokens, ${duration}s per level"
    echo
    echo "| model | sessions | requests | req/s | gen tok/s | p50 ms | p90 ms | p99 ms |" \
         "TTFT p50 ms | TTFT p99 ms | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for c in $levels; do
        calls0=$(metric spillway_engine_forward_calls_total)
        seqs0=$(metric spillway_engine_forward_sequences_total)
        gen0=$(metric spillway_generated_tokens_total)
        cpu0=$(cpu_ticks)
        build/bench/loadgen --port "$port" --concurrency "$c" --duration "$duration" \
            --max-tokens "$max_tokens" --label "$(basename "$model" .gguf)"
        cpu=$(cpu_ticks)
        gen=$(metric spillway_generated_tokens_total)
        calls=$(metric spillway_engine_forward_calls_total)
        seqs=$(metric spillway_engine_forward_sequences_total)
        awk -v c="$c" -v a="$calls0" -v b="$calls" -v s="$seqs0" -v t="$seqs" \
            -v g0="$gen0" -v g="$gen" -v u0="$cpu0" -v u="$cpu" -v hz="$(getconf CLK_TCK)" 'BEGIN {
            line = "sessions " c ":"
            if (b > a && t != "") line = line sprintf(" mean batch %.2f requests per forward call;", (t - s) / (b - a))
            if (g > g0) line = line sprintf(" server CPU %.2f ms per generated token", (u - u0) / hz * 1000 / (g - g0))
            print line > "/dev/stderr" }'
    done
} | tee "$table"
[ -n "$out" ] && cp "$table" "$out"
rm -f "$table"
