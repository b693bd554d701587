#!/usr/bin/env python3
"""check_layering.py — the library's module structure: no two src/ files call or include each other in a loop, and the shared library exports only clattn_ names.

usage: check_layering.py --src DIR --lib LIBCLATTN.so OBJECT.o...
"""
import argparse
import os
import re
import subprocess
import sys


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def symbols(obj):
    text = subprocess.run(["nm", obj], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRCV":
            defined.add(parts[2])
    return defined, undefined


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("objects", nargs="+")
    a = ap.parse_args()
    a.objects = [o for arg in a.objects for o in arg.split(";") if o]
    bad = 0

    # Calls: object file -> object file through undefined symbols.
    owner, needs = {}, {}
    for obj in a.objects:
        name = re.sub(r"\.c\.o(bj)?$", ".c", os.path.basename(obj))
        d, u = symbols(obj)
        for s in d:
            owner[s] = name
        needs[name] = u
    calls = {n: {owner[s] for s in u if s in owner and owner[s] != n} for n, u in needs.items()}
    for comp in cycles(calls):
        print("call loop between: " + " <-> ".join(comp))
        for n in comp:
            print("  %s calls %s" % (n, ", ".join(sorted(calls[n] & set(comp)))))
        bad += 1

    # Includes among src/ files.
    incs = {}
    for d, _, files in os.walk(a.src):
        if os.path.basename(d) == "cli":
            continue
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    incs[f] = set(re.findall(r'^#include "([a-z0-9_]+\.h)"', fh.read(), re.M))
    for comp in cycles(incs):
        print("include loop between: " + " <-> ".join(comp))
        bad += 1

    # Exports of the shared library.
    text = subprocess.run(["nm", "-D", "--defined-only", a.lib], check=True, capture_output=True,
                          text=True).stdout
    exported = [l.split()[-1] for l in text.splitlines() if len(l.split()) == 3 and l.split()[1] in "TDBRVW"]
    foreign = [s for s in exported if not s.startswith("clattn_") and s not in ("_init", "_fini")]
    internal = [s for s in exported if s.startswith("clattn__")]
    for s in foreign + internal:
        print("exported but not public: " + s)
        bad += 1
    public = [s for s in exported if s.startswith("clattn_") and not s.startswith("clattn__")]
    print("%d objects, %d public symbols exported, %d problems" % (len(a.objects), len(public), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
