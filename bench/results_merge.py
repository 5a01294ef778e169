#!/usr/bin/env python3
"""bench/results_merge.py NEW.md RESULTS.md

Merges one benchmark script's report into bench/RESULTS.md without losing
the sections other scripts wrote. A section is a "## " heading and what
follows it up to the next "## " heading. Every section of NEW replaces the
section of RESULTS with the same heading, in place; sections RESULTS lacks
are appended in NEW's order; RESULTS's other sections stay as they are.
Text before NEW's first heading (the title and the machine lines of
bench/run.sh) replaces RESULTS's, unless NEW has none.
"""
import os
import sys


def split(text):
    """(preamble, [(heading, body)]) with body including the heading line."""
    pre, secs, cur = [], [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            cur = [line.rstrip("\n"), [line]]
            secs.append(cur)
        elif cur is None:
            pre.append(line)
        else:
            cur[1].append(line)
    return "".join(pre), [(h, "".join(b).rstrip("\n") + "\n") for h, b in secs]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: results_merge.py NEW.md RESULTS.md")
    new_pre, new_secs = split(open(sys.argv[1]).read())
    old = open(sys.argv[2]).read() if os.path.exists(sys.argv[2]) else ""
    old_pre, old_secs = split(old)
    fresh = dict(new_secs)
    out, seen = [], set()
    for h, body in old_secs:
        out.append(fresh.get(h, body))
        seen.add(h)
    out += [body for h, body in new_secs if h not in seen]
    pre = new_pre if new_pre.strip() else old_pre
    text = pre.rstrip("\n") + "\n\n" + "\n".join(out) if pre.strip() else "\n".join(out)
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(text)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])


if __name__ == "__main__":
    main()
