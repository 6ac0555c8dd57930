#!/usr/bin/env python3
"""Turn run.sh's k6 summaries (--summary-export JSON) into figures.

  report.py --one SUMMARY.json          one-line digest of a run
  report.py --auto-rate RUNS.tsv SCEN FRACTION
                                        a latency-run rate below saturation:
                                        FRACTION of the slowest contender's
                                        median throughput, rounded down
  report.py --table RUNS.tsv CLK_TCK    the markdown table (and runs.md, the
                                        per-run figures, next to RUNS.tsv)

RUNS.tsv has one line per k6 run: scenario, contender, mode, round, rate,
user_ticks, sys_ticks (the proxy's utime and stime over the run), core_ticks
(busy ticks of the proxy's core over the run), k6_rc, summary path.
"""

import csv
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        m = json.load(f)["metrics"]
    dur = m.get("http_req_duration", {})
    checks = m.get("checks", {})
    failed = m.get("http_req_failed", {})
    return {
        "count": int(m.get("http_reqs", {}).get("count", 0)),
        "rps": float(m.get("http_reqs", {}).get("rate", 0.0)),
        "p50": float(dur.get("med", float("nan"))),
        "p99": float(dur.get("p(99)", float("nan"))),
        "max": float(dur.get("max", float("nan"))),
        "check_fails": int(checks.get("fails", 0)),
        # A k6 Rate metric counts true samples as "passes": failed requests.
        "http_failed": int(failed.get("passes", 0)),
        "dropped": int(m.get("dropped_iterations", {}).get("count", 0)),
    }


def runs(path):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        r.update(load(r["summary"]))
        r["user"], r["sys"] = int(r["user_ticks"]), int(r["sys_ticks"])
    return rows


def one(path):
    s = load(path)
    return (
        f"{s['rps']:.0f} req/s, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, "
        f"{s['count']} reqs, failed checks {s['check_fails']}, dropped {s['dropped']}"
    )


def auto_rate(path, scenario, fraction):
    rows = [r for r in runs(path) if r["scenario"] == scenario and r["mode"] == "throughput"]
    by = {}
    for r in rows:
        by.setdefault(r["contender"], []).append(r["rps"])
    slowest = min(statistics.median(v) for v in by.values())
    rate = slowest * fraction
    step = 50 if rate >= 200 else 10
    return max(step, int(rate // step) * step)


def fmt(x, digits=2, sign=False):
    if x != x:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def table(path, clk_tck):
    rows = runs(path)
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    out = [
        "| scenario | contender | req/s | p50 ms | p99 ms | added p50/p99 vs direct (ms) "
        "| proxy CPU µs/req (saturated / at fixed rate) | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for scen in scenarios:
        rate = next((r["rate"] for r in rows if r["scenario"] == scen and r["mode"] == "latency"), "?")
        notes.append(f"{scen}: latency measured at {rate} req/s")
        base = None
        for who in contenders:
            sel = [r for r in rows if r["scenario"] == scen and r["contender"] == who]
            thr = [r for r in sel if r["mode"] == "throughput"]
            lat = [r for r in sel if r["mode"] == "latency"]
            if not sel:
                continue
            rps = statistics.median(r["rps"] for r in thr) if thr else float("nan")
            p50 = statistics.median(r["p50"] for r in lat) if lat else float("nan")
            p99 = statistics.median(r["p99"] for r in lat) if lat else float("nan")
            if who == "direct":
                base = (p50, p99)
                added = "—"
            elif base:
                added = f"{fmt(p50 - base[0], 3, True)} / {fmt(p99 - base[1], 3, True)}"
            else:
                added = "?"

            def cpu(rs):
                reqs = sum(r["count"] for r in rs)
                ticks = sum(r["user"] + r["sys"] for r in rs)
                return ticks / clk_tck / reqs * 1e6 if reqs else float("nan")

            cpu_col = "—" if who == "direct" else f"{fmt(cpu(thr), 1)} / {fmt(cpu(lat), 1)}"
            errors = sum(r["check_fails"] + r["http_failed"] for r in sel)
            bad_rc = sum(1 for r in sel if r["k6_rc"] != "0")
            err_col = str(errors) + (f" ({bad_rc} k6 runs exited non-zero)" if bad_rc else "")
            other = sum(int(r["core_ticks"]) - r["user"] - r["sys"] for r in sel) / clk_tck
            secs = sum(float(r["rps"]) and r["count"] / r["rps"] for r in sel)
            if secs and other / secs > 0.05:
                notes.append(
                    f"{scen}/{who}: other processes used {other / secs:.0%} of the proxy core"
                )
            dropped = sum(r["dropped"] for r in lat)
            if dropped:
                notes.append(f"{scen}/{who}: {dropped} arrivals dropped by k6 (no free VU)")
            out.append(
                f"| {scen} | {who} | {rps:.0f} | {fmt(p50, 3)} | {fmt(p99, 3)} | {added} "
                f"| {cpu_col} | {err_col} |"
            )
    print("\n".join(out))
    print()
    print(
        "req/s: median of the throughput runs; p50/p99: medians of the fixed-rate runs' "
        "percentiles (" + "; ".join(notes) + "); CPU: proxy utime+stime / requests "
        f"(clock tick {1000 / clk_tck:.0f} ms); errors: failed checks + failed requests, "
        "all runs."
    )

    raw = [
        "| scenario | contender | mode | round | req/s | p50 ms | p99 ms | max ms | requests "
        "| proxy CPU s | CPU µs/req (user + sys) | other work on proxy core s "
        "| failed checks | dropped | k6 rc |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        secs = (r["user"] + r["sys"]) / clk_tck
        if r["count"] and r["contender"] != "direct":
            us = lambda t: t / clk_tck / r["count"] * 1e6
            per = f"{us(r['user'] + r['sys']):.1f} ({us(r['user']):.1f} + {us(r['sys']):.1f})"
        else:
            per = "—"
        raw.append(
            f"| {r['scenario']} | {r['contender']} | {r['mode']} | {r['round']} | {r['rps']:.0f} "
            f"| {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.1f} | {r['count']} | {secs:.2f} "
            f"| {per} | {(int(r['core_ticks']) - r['user'] - r['sys']) / clk_tck:.2f} "
            f"| {r['check_fails']} | {r['dropped']} | {r['k6_rc']} |"
        )
    raw_path = os.path.join(os.path.dirname(path), "runs.md")
    with open(raw_path, "w") as f:
        f.write("\n".join(raw) + "\n")
    print(f"Per-run figures: {raw_path}")


def main(argv):
    if len(argv) == 2 and argv[0] == "--one":
        print(one(argv[1]))
    elif len(argv) == 4 and argv[0] == "--auto-rate":
        print(auto_rate(argv[1], argv[2], float(argv[3])))
    elif len(argv) == 3 and argv[0] == "--table":
        table(argv[1], int(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
