#!/usr/bin/env python3
"""Import cycles among a crate's modules, held to a ratchet.

For each crate (gateway, config, control) every `crate::a::b` and `super::x`
path in its src/ files names the module it reaches (the longest prefix that
is a module of the crate); the strongly connected components of that graph
with more than one module are cycles. Each cycle must lie inside one of the
cycles listed in .ci/cycles.allow (one per line: `crate: mod mod ...`), so a
new cycle, or a module joining one, fails the suite. Cutting cycles only
shrinks the list: update it when one goes.

It also holds the gateway to its layers (.ci/layers): a module of a layer
imports no module of a layer above it, and a core module imports no layer.

Usage: .ci/cycles.py [--print]   (--print: the cycles now, as allow lines)
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["gateway", "config", "control"]
PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")


def paths(text):
    """(`crate`|`super`, `::a::b`) for every path, brace groups spread out
    (`crate::{a::X, b}` gives `::a::X` and `::b`)."""
    out = list(PATH.findall(text))
    for m in re.finditer(r"\b(crate|super)::\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body, item, depth = text[m.end() : i - 1], "", 0
        for ch in body + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                head = item.split("{")[0].split(" as ")[0].strip().rstrip(":")
                if head and head != "self":
                    out.append((m.group(1), "::" + head))
                item = ""
            else:
                item += ch
    return out


def modules(src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods["::".join(rel)] = os.path.join(dirpath, f)
    return mods


def strip_tests(text):
    # `#[cfg(test)] mod tests { ... }` at the end of a file: tests may import
    # anything of their parent. Comments name modules without importing them.
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("//"))


def graph(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        if path.endswith(("tests.rs",)) and m.endswith("tests"):
            continue
        with open(path, encoding="utf-8") as fh:
            text = strip_tests(fh.read())
        here = m.split("::") if m else []
        # A file's own items live in `m`; `super` is its parent (mod.rs files
        # are their directory's module).
        for kind, rest in paths(text):
            parts = [p for p in rest.split("::") if p]
            if kind == "super":
                base = here[:-1]
                while parts and parts[0] == "super":
                    base, parts = base[:-1], parts[1:]
                parts = base + parts
            target = None
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in mods:
                    target = cand
                    break
            if target is not None and target != m and not target.startswith(m + "::") and m != "":
                edges[m].add(target)
    return edges


def sccs(edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer_breaches():
    """Imports against .ci/layers, as `crate: from -> to (why)` lines."""
    rules = {}
    with open(os.path.join(ROOT, ".ci", "layers"), encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            head, mods = line.split(":", 1)
            crate, kind = head.split()
            if kind == "layers":
                rules.setdefault(crate, {})["layers"] = [l.split() for l in mods.split("|")]
            else:
                rules.setdefault(crate, {})["core"] = mods.split()
    out = []
    for crate, r in rules.items():
        layers, core = r.get("layers", []), set(r.get("core", []))

        def layer(m):
            top = m.split("::")[0]
            return next((i for i, l in enumerate(layers) if top in l), None)

        for m, targets in sorted(graph(os.path.join(ROOT, crate, "src")).items()):
            top = m.split("::")[0]
            for t in sorted(targets):
                if t.split("::")[0] == top:
                    continue
                lm, lt = layer(m), layer(t)
                if lm is not None and lt is not None and lt < lm:
                    out.append(f"{crate}: {m} -> {t} (a layer imports one above it)")
                elif top in core and lt is not None:
                    out.append(f"{crate}: {m} -> {t} (a core module imports a layer)")
    return out


def main():
    found = {c: sccs(graph(os.path.join(ROOT, c, "src"))) for c in CRATES}
    if "--print" in sys.argv:
        for c, comps in found.items():
            for comp in comps:
                print(f"{c}: {' '.join(comp)}")
        return 0
    allowed = {}
    with open(os.path.join(ROOT, ".ci", "cycles.allow"), encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                crate, mods = line.split(":", 1)
                allowed.setdefault(crate.strip(), []).append(set(mods.split()))
    bad = []
    for c, comps in found.items():
        for comp in comps:
            if not any(set(comp) <= a for a in allowed.get(c, [])):
                bad.append(f"{c}: {' '.join(comp)}")
    total = sum(len(v) for v in found.values())
    breaches = layer_breaches()
    if breaches:
        print("imports against the layers (.ci/layers):")
        for b in breaches:
            print("  " + b)
        return 1
    if bad:
        print("new import cycle(s) among modules (each must fit a cycle in .ci/cycles.allow):")
        for b in bad:
            print("  " + b)
        return 1
    print(f"import cycles: {total}, none new (.ci/cycles.allow); layers kept (.ci/layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
