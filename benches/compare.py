#!/usr/bin/env python3
"""Runs commands in alternating rounds (each round in a shuffled order) and reports, per
command, the median and p90 of wall time, CPU time (user + sys, from wait4) and peak RSS:
whole processes measured from outside, so a fixed cost (connection set-up, thread start,
runtime start) counts as the user pays it; with ENGINE_PID also the engine's mean CPU time
per run.

    compare.py ROUNDS NAME=COMMAND [NAME=COMMAND ...]

Prints one line per command and, for every command after the first, its ratio to the first
(the peer compared against is the first named): of the medians, and paired (the median of
the per-round ratios). Exits non-zero when a command fails.
"""
import os
import random
import shlex
import statistics
import subprocess
import sys
import time


PEAKRSS = os.environ.get("PEAKRSS", "peakrss")
# With ENGINE_PID set: the engine's CPU time per run too (utime + stime of the process and
# of its reaped children, from /proc/PID/stat), the cost a client's way of asking puts on
# the engine (e.g. dockerd's /info runs external commands).
ENGINE_PID = os.environ.get("ENGINE_PID")
TICK = os.sysconf("SC_CLK_TCK")


def engine_cpu():
    """The engine's CPU seconds so far (0 without ENGINE_PID)."""
    if not ENGINE_PID:
        return 0.0
    with open(f"/proc/{ENGINE_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def run(cmd):
    """Wall time (seconds), CPU time (seconds) and peak RSS (KiB) of one run of cmd, through
    the small C runner benches/peakrss.c (a child forked from Python would inherit Python's
    peak RSS as its own)."""
    e0 = engine_cpu()
    t0 = time.perf_counter()
    p = subprocess.run([PEAKRSS] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    engine = engine_cpu() - e0
    err = p.stderr.decode(errors="replace").strip()
    last = err.splitlines()[-1].split() if err else []
    if p.returncode != 0 or len(last) != 5 or last[0] != "peakrss":
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({p.returncode}): {err}")
    return wall, float(last[2]) + float(last[3]), int(last[1]), engine


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
    # Each round in its own (seeded) order, so that no command always follows the same
    # other one (an engine still busy with the previous client's leftovers).
    order = random.Random(16)
    for _ in range(rounds):
        for name, cmd in order.sample(cmds, len(cmds)):
            res[name].append(run(cmd))
    first = None
    for name, _ in cmds:
        wall = [r[0] * 1000 for r in res[name]]
        cpu = [r[1] * 1000 for r in res[name]]
        rss = [r[2] / 1024 for r in res[name]]
        med = (statistics.median(wall), statistics.median(cpu), statistics.median(rss))
        line = (f"{name:<22} wall {med[0]:8.1f} ms (p90 {pct(wall, 0.9):8.1f})  "
                f"cpu {med[1]:8.1f} ms  peak RSS {med[2]:6.1f} MiB")
        if ENGINE_PID:
            # Mean, not median: the engine's clock ticks are 10 ms.
            line += f"  engine cpu {statistics.mean(r[3] for r in res[name]) * 1000:6.1f} ms"
        if first is None:
            first = med
        else:
            # Paired: the median of each round's ratio to the first command's run of the
            # same round (adjacent in time), which a machine's varying load biases less.
            paired = statistics.median(
                r[0] / f[0] for r, f in zip(res[name], res[cmds[0][0]]))
            line += (f"   ratio to {cmds[0][0]}: wall {med[0] / first[0]:.2f}x "
                     f"(paired {paired:.2f}x)  "
                     f"cpu {med[1] / first[1]:.2f}x  rss {med[2] / first[2]:.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
