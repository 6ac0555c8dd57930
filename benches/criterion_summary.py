#!/usr/bin/env python3
"""Median times of the last criterion run, and a table over several runs.

  criterion_summary.py save RUN.json [GROUP...]   copy the medians of the last
                                                  `cargo bench` (target/criterion)
  criterion_summary.py table RUN.json...          markdown: median of the runs'
                                                  medians, min-max across runs

On a shared VM single criterion runs drift by tens of percent; repeating the
run and reporting the spread is more honest than one confidence interval.
Set CRITERION_DIR if the target directory is not ../target/criterion.
"""

import glob
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CRITERION = os.environ.get("CRITERION_DIR", os.path.join(HERE, "..", "target", "criterion"))


def save(path, groups):
    out = {}
    for est in sorted(glob.glob(os.path.join(CRITERION, "**", "new", "estimates.json"), recursive=True)):
        meta_path = os.path.join(os.path.dirname(est), "benchmark.json")
        with open(meta_path) as f:
            meta = json.load(f)
        if groups and meta["group_id"] not in groups:
            continue
        with open(est) as f:
            median = json.load(f)["median"]["point_estimate"]
        out[meta["full_id"]] = {"median_ns": median, "throughput": meta.get("throughput")}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{len(out)} benchmarks saved to {path}")


def human(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def table(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            runs.append(json.load(f))
    names = list(dict.fromkeys(n for r in runs for n in r))
    print(f"| benchmark | input | median time ({len(runs)} runs) | min – max of run medians | throughput |")
    print("|---|---:|---:|---:|---:|")
    for n in names:
        vals = [r[n]["median_ns"] for r in runs if n in r]
        med = statistics.median(vals)
        tp = next((r[n]["throughput"] for r in runs if n in r), None)
        size, rate = "", ""
        if tp and "Bytes" in tp:
            size = f"{tp['Bytes']:,} B"
            rate = f"{tp['Bytes'] / med * 1e9 / 2**20:,.0f} MiB/s"
        print(f"| `{n}` | {size} | {human(med)} | {human(min(vals))} – {human(max(vals))} | {rate} |")


def main(argv):
    if len(argv) >= 2 and argv[0] == "save":
        save(argv[1], set(argv[2:]))
    elif len(argv) >= 2 and argv[0] == "table":
        table(argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
