#!/usr/bin/env python3
"""compare_torch.py — clattn (through the python/clattn package) and PyTorch SDPA on identical inputs in one process: speed table and output agreement (CUDA, or the CPU with --device cpu)."""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import clattn  # noqa: E402
from torch_peer import BACKENDS, FUSED, DTYPES as TORCH_DT, median, timings_ms  # noqa: E402

TOL = {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2}


def raw(t):
    """Host bytes of a tensor (bf16 travels as its 16-bit pattern)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="nvidia",
                    help="clattn device (CLATTN_DEVICE syntax); 'cpu' (or no CUDA) runs torch on the CPU too")
    ap.add_argument("--dtypes", default="f16,bf16,f32")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--seqs", default=None, help="default 4096,16384 (CUDA), 512,1024 (CPU)")
    ap.add_argument("--masks", default="none,causal")
    ap.add_argument("--tokens", type=int, default=None, help="B*H*N (default 262144 CUDA, 8192 CPU)")
    ap.add_argument("--heads", type=int, default=None, help="default 16 (CUDA), 4 (CPU)")
    ap.add_argument("--reps", type=int, default=None, help="default 20 (CUDA), 5 (CPU)")
    ap.add_argument("--json", help="append one JSON object per point to this file")
    a = ap.parse_args()
    if not torch.cuda.is_available() and a.device == "nvidia":
        print("# no CUDA: comparing on the CPU (clattn through PoCL or another CPU OpenCL)")
        a.device = "cpu"
    cuda = torch.cuda.is_available() and a.device != "cpu"
    tdev = "cuda" if cuda else "cpu"
    a.seqs = a.seqs or ("4096,16384" if cuda else "512,1024")
    a.tokens = a.tokens or (262144 if cuda else 8192)
    a.heads = a.heads or (16 if cuda else 4)
    a.reps = a.reps or (20 if cuda else 5)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
    lib = clattn.library()
    ctx = clattn.Context(a.device, lib=lib)
    where = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"# clattn {lib.version()} on {ctx.device}; torch {torch.__version__} on {where}")
    hdr = "| dtype | d | mask | N | B×H | clattn ms | clattn TFLOP/s | torch backend | torch ms | torch TFLOP/s | ratio | rel err vs torch | ok |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    bad = 0
    out = open(a.json, "a") if a.json else None
    for dt in a.dtypes.split(","):
        for d in map(int, a.head_dims.split(",")):
            for n in map(int, a.seqs.split(",")):
                for mask in a.masks.split(","):
                    b = max(1, a.tokens // n // a.heads)
                    g = torch.Generator(device=tdev).manual_seed(n * 131 + d)
                    q, k, v = (torch.rand((b, a.heads, n, d), device=tdev, generator=g).mul_(2).sub_(1).to(TORCH_DT[dt])
                               for _ in range(3))
                    causal = mask == "causal"  # square problems: both causal alignments agree
                    sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
                    if cuda:  # every fused backend that takes the shape; the fastest is the peer
                        backend, tms, ref = None, float("inf"), None
                        for name in FUSED.split(","):
                            try:
                                with sdpa_kernel([BACKENDS[name]]):
                                    out_b = sdpa()
                                    t = median(timings_ms(sdpa, 3, a.reps))
                            except RuntimeError:  # this backend does not take the shape or dtype
                                continue
                            if t < tms:
                                backend, tms, ref = name, t, out_b
                        if ref is None:
                            raise SystemExit(f"no PyTorch SDPA backend takes {dt} d={d} N={n}")
                    else:
                        backend = "default (CPU)"
                        ref = sdpa()
                        tms = median(timings_ms(sdpa, 3, a.reps, cuda=False))
                    # Output through the array API (torch CPU tensors in and out, bf16 included).
                    got = clattn.attention(q.cpu(), k.cpu(), v.cpu(), causal="top_left" if causal else None,
                                           algo="flash", context=ctx).to(tdev).float()
                    r = ref.float()
                    # Kernel time on device buffers (profiling events).
                    desc = clattn.make_desc(lib, b, a.heads, n, n, d, dtype=dt,
                                            mask="causal_top_left" if causal else "none", algo="flash")
                    plan = clattn.Plan(ctx, desc)
                    hq, hk, hv = raw(q), raw(k), raw(v)
                    bq, bk, bv = (ctx.buffer(x.nbytes, x) for x in (hq, hk, hv))
                    bo = ctx.buffer(hq.nbytes)
                    rel = (torch.linalg.vector_norm(got - r) / torch.linalg.vector_norm(r)).item()
                    cms = plan.time_ms(bq, bk, bv, bo, reps=a.reps)
                    flops = 4.0 * b * a.heads * n * n * d * (0.5 if causal else 1.0)
                    ok = rel <= TOL[dt] and not torch.isnan(got).any().item()
                    bad += not ok
                    rec = dict(dtype=dt, head_dim=d, mask=mask, seq=n, batch=b, heads=a.heads, clattn_ms=cms,
                               clattn_tflops=flops / cms * 1e-9, torch_backend=backend, torch_ms=tms,
                               torch_tflops=flops / tms * 1e-9, rel_err=rel, ok=ok, config=plan.describe())
                    print(f"| {dt} | {d} | {mask} | {n} | {b}×{a.heads} | {cms:.3f} | {rec['clattn_tflops']:.1f} | "
                          f"{backend} | {tms:.3f} | {rec['torch_tflops']:.1f} | {tms / cms:.2f}× | {rel:.1e} | "
                          f"{'yes' if ok else 'NO'} |", flush=True)
                    if out:
                        out.write(json.dumps(rec) + "\n")
                    for x in (bq, bk, bv, bo):
                        ctx.release_buffer(x)
                    plan.close()
                    del q, k, v, ref
                    if cuda:
                        torch.cuda.empty_cache()
    ctx.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
