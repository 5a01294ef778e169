#!/usr/bin/env python3
"""bench/bw_history.py: the read bandwidth of an idle bus, from the last full runs.

    bw_history.py FILE CPU ref          prints the reference (GB/s; 0 if none)
    bw_history.py FILE CPU add GBPS     records one run's figure

FILE holds one line per full `make bench`: "GBPS<TAB>UTC time<TAB>CPU model",
where GBPS is spillway-bench's read bandwidth at the benchmark's thread count
(the best of its 64 MiB samples over a 1 GiB buffer). The reference for an
idle bus is the median of the last RUNS figures of this CPU model.

Why a median of runs and not the most ever seen: on a shared host the best
sample of a run is the tail of a noisy distribution. The most over many runs
only ever rises, with the number of runs rather than with the machine, until
no block of a decode can reach 90% of it; one run whose bus stayed busy
throughout still cannot lower a median of five. Lines of other CPU models
(the cache directory moved to another machine) and unreadable lines are
ignored; the file keeps its last KEEP lines.
"""
import os
import sys
import time

RUNS = 5
KEEP = 50


def entries(path, cpu):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3 or parts[2] != cpu:
                    continue
                try:
                    v = float(parts[0])
                except ValueError:
                    continue
                if 0 < v < 100000:
                    out.append(v)
    except FileNotFoundError:
        pass
    return out


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return 0.0
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main(argv):
    if len(argv) < 4 or argv[3] not in ("ref", "add") or (argv[3] == "add") != (len(argv) == 5):
        sys.stderr.write(__doc__)
        return 2
    path, cpu = argv[1], argv[2].replace("\t", " ")
    if argv[3] == "ref":
        print(f"{median(entries(path, cpu)[-RUNS:]):.1f}")
        return 0
    v = float(argv[4])
    if not 0 < v < 100000:
        return 0
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        lines = []
    lines.append(f"{v:.1f}\t{time.strftime('%Y-%m-%d %H:%M', time.gmtime())}\t{cpu}")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines[-KEEP:]) + "\n")
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
