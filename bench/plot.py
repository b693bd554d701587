#!/usr/bin/env python3
"""plot.py — turns `clattn bench --csv` files into PNGs: time, memory and TFLOP/s vs N.

Usage:
  python3 bench/plot.py [--peak PEAK.json | --peak-gflops X] [--prefix OUT] [--title T] A.csv [B.csv ...]

Writes OUT_time.png, OUT_memory.png and OUT_tflops.png (default prefix: the first
CSV's path without .csv):
  (a) time vs N, log-log, one line per family/variant (algo, linear feature map,
      mask; dtype and head dim when the files hold several), with a vertical line
      at the smallest N from which flash is more than 2x faster than naive at the
      same mask, dtype and head dim (or a legend note saying it never is);
  (b) attention memory vs N, log-log: measured (the CSV's mem_bytes: q, k, v, o +
      the plan's workspace; needed_bytes of out-of-memory points, hollow) and
      theoretical (naive B*H*N^2*4 bytes of f32 scores + q, k, v, o; flash
      q, k, v, o only: O(N));
  (c) TFLOP/s vs N, log-log, against the device's measured f32 FMA peak (a
      horizontal line) from --peak (the JSON of `clattn devices --peak --json`),
      --peak-gflops, or the CSV's peak_fma_gflops column (`clattn bench --peak`).
Points that failed (out of memory, unsupported) are listed in the legend.
Plotting uses matplotlib with the Agg backend (no display needed).
"""
import argparse
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ALGO_COLORS = {"flash": "tab:blue", "naive": "tab:red", "linear": "tab:green", "auto": "tab:purple"}
SPARSE_COLOR = "tab:orange"
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2}


def num(s):
    try:
        x = float(s)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_rows(paths):
    """Rows of every CSV, deduplicated on the point's identity (first file wins)."""
    rows, seen = [], set()
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                for k in ("seq_q", "seq_kv", "batch", "heads", "kv_heads", "head_dim"):
                    r[k] = int(r[k])
                key = (r["device"], r["algo"], r.get("feature", ""), r["mask"], r["dtype"],
                       r["head_dim"], r["batch"], r["heads"], r["kv_heads"], r["seq_q"], r["seq_kv"])
                if key in seen:
                    continue
                seen.add(key)
                rows.append(r)
    if not rows:
        sys.exit("plot.py: no rows in " + ", ".join(paths))
    return rows


def variant(r, multi_dtype, multi_d):
    """Label of the line a row belongs to."""
    label = r["algo"]
    if r["algo"] == "linear" and r.get("feature"):
        label += "-" + r["feature"]
    if r["mask"] not in ("", "none"):
        label += " " + r["mask"]
    if multi_dtype:
        label += " " + r["dtype"]
    if multi_d:
        label += " d=%d" % r["head_dim"]
    return label


MARKERS = "osD^v<>ph*"
_shape_marker = {}


def style(r):
    """Colour by family (sparse flash apart), dashes for causal, marker by dtype and head dim."""
    sparse = r["mask"] not in ("none", "causal")
    color = ALGO_COLORS.get(r["algo"], "black")
    if sparse:
        color = SPARSE_COLOR if r["algo"] == "flash" else "tab:brown"
    if r["algo"] == "linear" and r.get("feature", "").startswith("favor"):
        color = "tab:olive"
    causal = r["mask"] == "causal" or r["mask"].endswith(",causal")
    shape = (r["dtype"], r["head_dim"])
    marker = _shape_marker.setdefault(shape, MARKERS[len(_shape_marker) % len(MARKERS)])
    return dict(color=color, linestyle="--" if causal else "-", marker=marker, markersize=4)


def ok(r):
    return not r.get("error") and num(r.get("median_ms")) is not None


def lines_of(rows, multi_dtype, multi_d):
    out = {}
    for r in rows:
        out.setdefault(variant(r, multi_dtype, multi_d), []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["seq_q"])
    return out


def failures(rows, multi_dtype, multi_d):
    """'naive: out of memory from N=..' notes."""
    notes = {}
    for r in rows:
        if ok(r):
            continue
        what = r.get("error") or "error"
        key = (variant(r, multi_dtype, multi_d), what)
        notes[key] = min(notes.get(key, r["seq_q"]), r["seq_q"])
    return ["%s: %s from N=%d" % (v, what, n) for (v, what), n in sorted(notes.items())]


def crossover(rows):
    """Per (mask, dtype, d, batch, heads): the smallest N with naive/flash > 2, or the best ratio."""
    groups = {}
    for r in rows:
        if not ok(r) or r["algo"] not in ("flash", "naive") or r["mask"] not in ("none", "causal"):
            continue
        g = (r["mask"], r["dtype"], r["head_dim"], r["batch"], r["heads"])
        groups.setdefault(g, {}).setdefault(r["seq_q"], {})[r["algo"]] = num(r["median_ms"])
    result = []
    for g, by_n in sorted(groups.items()):
        ratios = [(n, t["naive"] / t["flash"]) for n, t in sorted(by_n.items())
                  if "naive" in t and "flash" in t and t["flash"] > 0]
        if not ratios:
            continue
        first = next((n for n, x in ratios if x > 2.0), None)
        best = max(ratios, key=lambda nx: nx[1])
        result.append((g, first, best))
    return result


def device_title(rows, title):
    if title:
        return title
    dev = rows[0]["device"]
    parts = [p.strip() for p in dev.split("/")]
    return parts[1] if len(parts) > 1 else dev


def finish(fig, ax, path, extra_notes):
    handles, labels = ax.get_legend_handles_labels()
    for note in extra_notes:
        handles.append(plt.Line2D([], [], linestyle="none"))
        labels.append(note)
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)


def plot_time(rows, lines, notes, title, path):
    fig, ax = plt.subplots(figsize=(12, 6))
    for label, rs in lines.items():
        pts = [r for r in rs if ok(r)]
        if not pts:
            continue
        ns = [r["seq_q"] for r in pts]
        med = [num(r["median_ms"]) for r in pts]
        lo = [m - (num(r["min_ms"]) or m) for m, r in zip(med, pts)]
        hi = [(num(r["max_ms"]) or m) - m for m, r in zip(med, pts)]
        ax.errorbar(ns, med, yerr=[lo, hi], label=label, capsize=2, **style(pts[0]))
    extra = []
    colors = {"none": "black", "causal": "dimgray"}
    for (mask, dtype, d, b, h), first, best in crossover(rows):
        tag = "%s %s d=%d" % (mask, dtype, d)
        if first is not None:
            ax.axvline(first, color=colors.get(mask, "black"), linestyle=":" if mask == "none" else "-.",
                       linewidth=1.2, label="flash > 2x faster than naive (%s) from N=%d" % (tag, first))
        else:
            extra.append("flash never > 2x faster than naive (%s); best %.2fx at N=%d"
                         % (tag, best[1], best[0]))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N (Nq = Nk)")
    ax.set_ylabel("median time per call (ms), bars: min..max")
    ax.set_title("%s: attention time vs N" % title)
    finish(fig, ax, path, extra + notes)


def qkvo_bytes(b, h, hk, d, dtype, n):
    es = DTYPE_BYTES.get(dtype, 4)
    return (2 * b * h + 2 * b * hk) * n * d * es


def plot_memory(rows, lines, notes, title, path):
    fig, ax = plt.subplots(figsize=(12, 6))
    for label, rs in lines.items():
        pts = [r for r in rs if ok(r) and num(r["mem_bytes"])]
        st = style(rs[0])
        if pts:
            ax.plot([r["seq_q"] for r in pts], [num(r["mem_bytes"]) for r in pts],
                    label=label + " (measured)", **st)
        need = [r for r in rs if not ok(r) and num(r.get("needed_bytes"))]
        if need:
            ax.plot([r["seq_q"] for r in need], [num(r["needed_bytes"]) for r in need],
                    linestyle="none", marker="o", markerfacecolor="none", color=st["color"],
                    label=label + " (needed: out of memory)")
    # theory, for each problem shape of the files
    shapes = sorted({(r["batch"], r["heads"], r["kv_heads"], r["head_dim"], r["dtype"]) for r in rows})
    ns = sorted({r["seq_q"] for r in rows})
    if ns:
        lo, hi = ns[0], ns[-1]
        grid = [lo * (hi / lo) ** (i / 40) for i in range(41)] if hi > lo else [lo]
        for i, (b, h, hk, d, dt) in enumerate(shapes[:4]):
            tag = "B=%d H=%d d=%d %s" % (b, h, d, dt)
            ls = ["-", "-.", ":", (0, (5, 5))][i]
            ax.plot(grid, [b * h * n * n * 4 + qkvo_bytes(b, h, hk, d, dt, n) for n in grid],
                    color="tab:red", alpha=0.35, linewidth=3, linestyle=ls,
                    label="theory naive: B*H*N^2*4 + QKVO (%s)" % tag)
            ax.plot(grid, [qkvo_bytes(b, h, hk, d, dt, n) for n in grid], color="tab:blue",
                    alpha=0.35, linewidth=3, linestyle=ls, label="theory flash: QKVO, O(N) (%s)" % tag)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N (Nq = Nk)")
    ax.set_ylabel("device memory of the call (bytes): Q, K, V, O + workspace")
    ax.set_title("%s: attention memory vs N" % title)
    finish(fig, ax, path, notes)


def load_peak(args, rows):
    """(GFLOP/s, GB/s, source) of the device's measured peak, or (None, None, None)."""
    if args.peak_gflops:
        return args.peak_gflops, None, "--peak-gflops"
    if args.peak:
        with open(args.peak) as f:
            data = json.load(f)
        devs = data if isinstance(data, list) else [data]
        devs = [d for d in devs if isinstance(d, dict) and d.get("peak")]
        if not devs:
            sys.exit("plot.py: %s holds no measured peak (clattn devices --peak --json)" % args.peak)
        name = rows[0]["device"]
        pick = next((d for d in devs if d.get("name") and d["name"] in name), None)
        pick = pick or next((d for d in devs if d.get("default")), None) or devs[0]
        return pick["peak"]["fma_gflops"], pick["peak"].get("copy_gbps"), os.path.basename(args.peak)
    vals = [num(r.get("peak_fma_gflops")) for r in rows if num(r.get("peak_fma_gflops"))]
    if vals:
        cps = [num(r.get("peak_copy_gbps")) for r in rows if num(r.get("peak_copy_gbps"))]
        return max(vals), (max(cps) if cps else None), "clattn bench --peak"
    return None, None, None


def plot_tflops(rows, lines, notes, title, path, peak):
    fig, ax = plt.subplots(figsize=(12, 6))
    for label, rs in lines.items():
        pts = [r for r in rs if ok(r) and num(r["tflops"])]
        if pts:
            ax.plot([r["seq_q"] for r in pts], [num(r["tflops"]) for r in pts], label=label,
                    **style(pts[0]))
    gflops, gbps, source = peak
    extra = []
    if gflops:
        ax.axhline(gflops / 1e3, color="black", linewidth=1.5,
                   label="measured f32 FMA peak %.4g TFLOP/s (%s)" % (gflops / 1e3, source))
    else:
        extra.append("device peak not measured (give --peak FILE or run bench --peak)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N (Nq = Nk)")
    ax.set_ylabel("TFLOP/s on the work done (visible pairs)")
    ax.set_title("%s: TFLOP/s vs N against the measured peak" % title)
    finish(fig, ax, path, extra + notes)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", help="CSV files of clattn bench --csv")
    ap.add_argument("--prefix", help="output path prefix (default: first CSV without .csv)")
    ap.add_argument("--peak", help="JSON of `clattn devices --peak --json`")
    ap.add_argument("--peak-gflops", type=float, help="the device's f32 FMA peak in GFLOP/s")
    ap.add_argument("--title", help="device name for the titles (default: from the CSV)")
    args = ap.parse_args()
    rows = read_rows(args.csv)
    prefix = args.prefix or os.path.splitext(args.csv[0])[0]
    if os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
    multi_dtype = len({r["dtype"] for r in rows}) > 1
    multi_d = len({r["head_dim"] for r in rows}) > 1
    lines = lines_of(rows, multi_dtype, multi_d)
    notes = failures(rows, multi_dtype, multi_d)
    title = device_title(rows, args.title)
    plot_time(rows, lines, notes, title, prefix + "_time.png")
    plot_memory(rows, lines, notes, title, prefix + "_memory.png")
    plot_tflops(rows, lines, notes, title, prefix + "_tflops.png", load_peak(args, rows))


if __name__ == "__main__":
    main()
