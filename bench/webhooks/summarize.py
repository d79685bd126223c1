#!/usr/bin/env python3
"""Tables for bench/webhooks/run.sh: one row per server, slipway's ratios to each peer, and
issue #11's targets.

usage: summarize.py RESULTS_DIR NAME...   (the first NAME is slipway)

Each NAME has RESULTS_DIR/NAME.wrk.txt (wrk --latency output of the measured run) and
RESULTS_DIR/NAME.meta (KEY=VALUE lines written by run.sh). Exit status 1 when a 2xx answer of
slipway is not backed by a committed row."""
import os
import re
import sys

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    t = open(path).read()
    d = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)),
        "reqs": int(re.search(r"(\d+) requests in", t).group(1)),
        "p50": ms(re.search(r"\s50%\s+(\S+)", t).group(1)),
        "p99": ms(re.search(r"\s99%\s+(\S+)", t).group(1)),
    }
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    d["non2xx"] = int(n.group(1)) if n else 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    d["sockerr"] = sum(map(int, e.groups())) if e else 0
    return d


def load(results, name):
    d = parse_wrk(os.path.join(results, name + ".wrk.txt"))
    for line in open(os.path.join(results, name + ".meta")):
        key, _, value = line.rstrip("\n").partition("=")
        d[key] = value
    hz = float(d["hz"])
    d["cpu_us"] = float(d["server_ticks"]) / hz / d["reqs"] * 1e6
    d["rss_idle"] = int(d["rss_idle_kb"]) / 1024
    d["rss_after"] = int(d["rss_after_kb"]) / 1024
    d["other"] = float(d["other_core_s"]) / float(d["wall_s"])
    return d


def rows_cell(d):
    if "rows_jobs" not in d:
        return "—"
    return f"{int(d['rows_jobs']):,} / {int(d['rows_deliveries']):,} / {int(d['ok_total']):,}"


def rows_ok(d):
    """Every 2xx backed by a row; more rows than 2xx only by requests in flight when wrk stopped."""
    jobs, deliveries, ok = int(d["rows_jobs"]), int(d["rows_deliveries"]), int(d["ok_total"])
    return jobs >= ok and deliveries >= ok


def main():
    results, names = sys.argv[1], sys.argv[2:]
    runs = [(name, load(results, name)) for name in names]
    print("| server | request | req/s | p50 ms | p99 ms | non-2xx | socket errors "
          "| server CPU µs/req | RSS MiB idle → after | rows: jobs / deliveries / 2xx | other load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, d in runs:
        print(f"| {d['label']} | {d['request']} | **{d['rps']:,.0f}** | {d['p50']:.2f} | {d['p99']:.2f} "
              f"| {d['non2xx']:,} | {d['sockerr']:,} | {d['cpu_us']:.0f} "
              f"| {d['rss_idle']:.1f} → {d['rss_after']:.1f} | {rows_cell(d)} | {100 * d['other']:.0f} % |")
    print()
    print("rows: committed during the warm-up and the measured run, against the 2xx answers of both "
          "(every 2xx must have its job and delivery; a few more rows are requests in flight when wrk "
          "stopped). other load: CPU used by processes other than the server and wrk, in % of one "
          "core over the measured run (this machine is shared).")

    (_, s), peers = runs[0], runs[1:]
    if peers:
        print()
        print("| slipway / peer | req/s | p99 | CPU µs/req | RSS idle | RSS after load |")
        print("|---|---:|---:|---:|---:|---:|")
        for _, p in peers:
            print(f"| {p['label']} | {s['rps'] / p['rps']:.2f}× | {s['p99'] / p['p99']:.2f}× "
                  f"| {s['cpu_us'] / p['cpu_us']:.2f}× | {s['rss_idle'] / p['rss_idle']:.2f}× "
                  f"| {s['rss_after'] / p['rss_after']:.2f}× |")

    conns = int(s["connections"])
    verdict = lambda ok: "met" if ok else "**missed**"
    print()
    print("| issue #11 target | slipway | |")
    print("|---|---:|---|")
    print(f"| ≥ 30,000 req/s at c={conns} | {s['rps']:,.0f} | {verdict(s['rps'] >= 30000)} |")
    print(f"| p99 < 5 ms | {s['p99']:.2f} ms | {verdict(s['p99'] < 5)} |")
    print(f"| ≤ 30 µs server CPU per request | {s['cpu_us']:.0f} µs | {verdict(s['cpu_us'] <= 30)} |")
    print(f"| RSS ≤ 15 MiB idle | {s['rss_idle']:.1f} MiB | {verdict(s['rss_idle'] <= 15)} |")
    print(f"| RSS ≤ 40 MiB after load | {s['rss_after']:.1f} MiB | {verdict(s['rss_after'] <= 40)} |")
    backed = rows_ok(s)
    print(f"| every 2xx backed by a committed row | {rows_cell(s)} | {verdict(backed)} |")
    if not backed:
        print("\nFAILED: slipway answered 2xx for requests without a committed job and delivery", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
