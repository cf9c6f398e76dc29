#!/usr/bin/env python3
"""Runs commands in alternation and reports, per command, the median and p90 of wall time,
CPU time (user + sys, from wait4) and peak RSS: whole processes measured from outside, so a
fixed cost (connection set-up, thread start, runtime start) counts as the user pays it.

    compare.py ROUNDS NAME=COMMAND [NAME=COMMAND ...]

Prints one line per command and, for every command after the first, its ratio to the first
(the peer compared against is the first named). Exits non-zero when a command fails.
"""
import os
import shlex
import statistics
import subprocess
import sys
import time


PEAKRSS = os.environ.get("PEAKRSS", "peakrss")


def run(cmd):
    """Wall time (seconds), CPU time (seconds) and peak RSS (KiB) of one run of cmd, through
    the small C runner benches/peakrss.c (a child forked from Python would inherit Python's
    peak RSS as its own)."""
    t0 = time.perf_counter()
    p = subprocess.run([PEAKRSS] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    err = p.stderr.decode(errors="replace").strip()
    last = err.splitlines()[-1].split() if err else []
    if p.returncode != 0 or len(last) != 5 or last[0] != "peakrss":
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, float(last[2]) + float(last[3]), int(last[1])


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    cmds = []
    for arg in sys.argv[2:]:
        name, _, cmd = arg.partition("=")
        cmds.append((name, shlex.split(cmd)))
    for _, cmd in cmds:  # warm-up: page cache, engine caches
        run(cmd)
    res = {name: [] for name, _ in cmds}
    for _ in range(rounds):
        for name, cmd in cmds:
            res[name].append(run(cmd))
    first = None
    for name, _ in cmds:
        wall = [r[0] * 1000 for r in res[name]]
        cpu = [r[1] * 1000 for r in res[name]]
        rss = [r[2] / 1024 for r in res[name]]
        med = (statistics.median(wall), statistics.median(cpu), statistics.median(rss))
        line = (f"{name:<22} wall {med[0]:8.1f} ms (p90 {pct(wall, 0.9):8.1f})  "
                f"cpu {med[1]:8.1f} ms  peak RSS {med[2]:6.1f} MiB")
        if first is None:
            first = med
        else:
            line += (f"   ratio to {cmds[0][0]}: wall {med[0] / first[0]:.2f}x  "
                     f"cpu {med[1] / first[1]:.2f}x  rss {med[2] / first[2]:.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
