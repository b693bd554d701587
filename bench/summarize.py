#!/usr/bin/env python3
"""summarize.py — turns the JSON lines of `clattn run --json` and torch_sdpa.py into the Markdown tables of RESULTS.md."""
import argparse
import json
from collections import defaultdict


def load(paths):
    recs = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        recs.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    return recs


def key(r):
    seq = r.get("seq_q", r.get("seq"))
    return (r.get("dtype"), r.get("head_dim"), r.get("mask"), seq)


def cell(r):
    if r is None:
        return "—", "—"
    if "error" in r or r.get("median_ms") is None:
        return "error", (r.get("error") or "")[:40]
    return f"{r['median_ms']:.3f}", f"{r['tflops']:.1f}"


def ratio(a, b):
    try:
        return f"{a['tflops'] / b['tflops']:.2f}×"
    except (TypeError, KeyError, ZeroDivisionError):
        return "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--peer", default="EFFICIENT_ATTENTION",
                    help="the torch backend to compare with, or 'fastest': per shape the fastest one timed")
    ap.add_argument("--algos", default="flash,naive")
    a = ap.parse_args()
    recs = load(a.files)
    ours = defaultdict(dict)
    peer = {}
    for r in recs:
        if r.get("peer") == "torch":
            if a.peer != "fastest":
                if r.get("backend") == a.peer:
                    peer[key(r)] = r
            elif r.get("median_ms") is not None and (
                    key(r) not in peer or r["median_ms"] < peer[key(r)]["median_ms"]):
                peer[key(r)] = r
        elif "algo" in r:
            ours[key(r)][r["algo"]] = r
    algos = a.algos.split(",")
    head = ["dtype", "d", "mask", "N"]
    for al in algos:
        head += [f"{al} ms", f"{al} TFLOP/s"]
    if "naive" in algos and "flash" in algos:
        head.append("flash/naive")
    head += [f"torch {a.peer} ms", "TFLOP/s"] + (["torch backend"] if a.peer == "fastest" else [])
    head += [f"{algos[0]}/torch", "rel err", "config"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for k in sorted(set(ours) | set(peer), key=lambda k: tuple(str(x).zfill(6) for x in k)):
        row = [str(k[0]), str(k[1]), str(k[2]), str(k[3])]
        for al in algos:
            row += list(cell(ours[k].get(al)))
        if "naive" in algos and "flash" in algos:
            row.append(ratio(ours[k].get("flash"), ours[k].get("naive")))
        p = peer.get(k)
        row += list(cell(p))
        if a.peer == "fastest":
            row.append(p["backend"] if p else "—")
        first = ours[k].get(algos[0])
        row.append(ratio(first, p))
        row.append(f"{first['rel_err']:.1e}" if first and first.get("rel_err") is not None else "—")
        row.append((first or {}).get("config", "")[:60])
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
