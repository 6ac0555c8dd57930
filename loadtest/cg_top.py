#!/usr/bin/env python3
"""Where a proxied request's instructions go: per-function self Ir of a
callgrind profile minus its baseline profile, divided by the request count.

  cg_top.py RUN.out BASELINE.out REQUESTS [TOP]

Uses callgrind_annotate (self cost, every function); prints a markdown table.
"""

import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.+?)(?: \[[^\]]*\])?$")


def costs(path):
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", path],
        check=True, capture_output=True, text=True,
    ).stdout
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        # file:function -> function (the file is the inlined-from location)
        name = m.group(2)
        name = name.split(":", 1)[1] if ":" in name and not name.startswith("<") else name
        out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    return out


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    run, base, n = costs(sys.argv[1]), costs(sys.argv[2]), int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) == 5 else 20
    diff = {k: (v - base.get(k, 0)) / n for k, v in run.items()}
    total = sum(diff.values())
    print(f"| Ir/request | share | function (self cost) |")
    print("|---:|---:|---|")
    for name, ir in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        short = name if len(name) <= 110 else name[:107] + "..."
        print(f"| {ir:,.0f} | {ir / total:.1%} | `{short}` |")


if __name__ == "__main__":
    main()
