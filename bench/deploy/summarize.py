#!/usr/bin/env python3
"""Summaries for run.sh.
    summarize.py table SAMPLES.tsv          medians per host count and tool, and the ratios
    summarize.py steps JOB_SHOW.txt...      median duration per slipway step over hosts and jobs
    summarize.py timeline DB JOB_SHOW.txt...  median phases of those jobs, from step_results
SAMPLES.tsv lines: hosts<TAB>tool<TAB>run<TAB>seconds
"""
import re
import statistics
import sys
from collections import defaultdict


def table(path):
    samples = defaultdict(list)
    for line in open(path):
        hosts, tool, _run, secs = line.split("\t")
        samples[(int(hosts), tool)].append(float(secs))
    tools = ["raw", "slipway", "ansible"]
    print(f"{'hosts':>5}  {'raw':>14}  {'slipway':>14}  {'ansible':>14}  {'slipway/raw':>11}  {'slipway/ansible':>15}")
    for hosts in sorted({h for h, _ in samples}):
        med = {t: statistics.median(samples[(hosts, t)]) for t in tools if samples.get((hosts, t))}
        cells = []
        for t in tools:
            s = samples.get((hosts, t))
            cells.append(f"{med[t]:6.2f} s (n={len(s)})" if s else f"{'-':>14}")
        r1 = f"{med['slipway'] / med['raw']:.2f}x" if "slipway" in med and "raw" in med else "-"
        r2 = f"{med['slipway'] / med['ansible']:.2f}x" if "slipway" in med and "ansible" in med else "-"
        print(f"{hosts:>5}  {cells[0]:>14}  {cells[1]:>14}  {cells[2]:>14}  {r1:>11}  {r2:>15}")
    for (hosts, tool), s in sorted(samples.items()):
        if tool not in tools:
            print(f"{hosts:>5}  {tool}: median {statistics.median(s):.2f} s (n={len(s)}, min {min(s):.2f}, max {max(s):.2f})")
    print("all samples (s):")
    for (hosts, tool), s in sorted(samples.items()):
        print(f"  {hosts:>3} {tool:<16} " + " ".join(f"{x:.2f}" for x in s))


STEP = re.compile(r"^\s+#\d+\s+(\S+)\s+\d+\s+(.+?)\s+(ok|failed|timed_out|idle_timeout|cancelled)\b.*?\s(\d+(?:\.\d+)?)(ms|s)\s*$")
TOOK = re.compile(r"^\s+took\s+(\d+(?:\.\d+)?)(ms|s)\s*$")


def secs(value, unit):
    return float(value) / (1000 if unit == "ms" else 1)


def steps(paths):
    per_step = defaultdict(list)
    took = []
    for path in paths:
        for line in open(path):
            m = STEP.match(line)
            if m:
                per_step[m.group(2)].append(secs(m.group(4), m.group(5)))
            m = TOOK.match(line)
            if m:
                took.append(secs(m.group(1), m.group(2)))
    if took:
        print(f"  job duration (queued->done, from `jobs show`): median {statistics.median(took):.2f} s over {len(took)} jobs")
    for name, s in per_step.items():
        print(f"  step {name:<16} median {statistics.median(s):.3f} s, max {max(s):.3f} s ({len(s)} host-runs)")


def timeline(db, paths):
    """Splits each job's run into phases, by the start/end times of its recorded steps:
    before the first step (git archive + one SSH master per host), prepare (ship + build steps on
    every host), gap (reading `current` on every host + the lease fence: channels not recorded as
    steps), switch (every host), after (closing the masters, recording the result)."""
    import sqlite3

    ids = []
    for path in paths:
        m = re.match(r"job (\d+)\b", open(path).readline())
        if m:
            ids.append(int(m.group(1)))
    con = sqlite3.connect(db)
    phases = defaultdict(list)
    for job in ids:
        started, finished = con.execute(
            "select started_at, finished_at from jobs where id = ?", (job,)).fetchone()
        rows = con.execute(
            "select name, started_at, started_at + duration_ms from step_results where job_id = ?",
            (job,)).fetchall()
        switch = [r for r in rows if r[0] == "switch"]
        prep = [r for r in rows if r[0] != "switch"]
        if not switch or not prep:
            continue
        first = min(r[1] for r in prep)
        prep_end = max(r[2] for r in prep)
        sw_start = min(r[1] for r in switch)
        sw_end = max(r[2] for r in switch)
        phases["before first step (archive + connect)"].append(first - started)
        phases["prepare (ship + build, all hosts)"].append(prep_end - first)
        phases["gap (read current + fence)"].append(sw_start - prep_end)
        phases["switch (all hosts)"].append(sw_end - sw_start)
        phases["after (close + record)"].append(finished - sw_end)
        phases["job total (claimed -> finished)"].append(finished - started)
    for name, s in phases.items():
        print(f"  {name:<40} median {statistics.median(s) / 1000:.3f} s")


if __name__ == "__main__":
    {
        "table": lambda a: table(a[0]),
        "steps": steps,
        "timeline": lambda a: timeline(a[0], a[1:]),
    }[sys.argv[1]](sys.argv[2:])
