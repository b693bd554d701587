#!/usr/bin/env python3
"""torch_sdpa.py — times PyTorch's scaled_dot_product_attention backends on the shapes clattn is benchmarked on."""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from torch_peer import BACKENDS, DTYPES, timings_ms

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=262144, help="B*H*N of every shape")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seqs", default="1024,2048,4096,8192,16384")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--masks", default="none,causal")
    ap.add_argument("--dtypes", default="f32")
    ap.add_argument("--backends", default="EFFICIENT_ATTENTION")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--backward", action="store_true",
                    help="time the backward alone (autograd of one forward's output with a random "
                         "dO, retain_graph), FLOPs 2.5x the forward's as FlashAttention counts")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for dname in a.dtypes.split(","):
        for hd in map(int, a.head_dims.split(",")):
            for n in map(int, a.seqs.split(",")):
                for mask in a.masks.split(","):
                    run_shape(a, dname, max(1, a.tokens // n // a.heads), n, hd, mask == "causal")


def run_shape(a, dname, batch, seq, hd, causal):
    g = torch.Generator(device="cuda").manual_seed(1234)
    shape = (batch, a.heads, seq, hd)
    dt = DTYPES[dname]
    q, k, v = (torch.rand(shape, device="cuda", generator=g, dtype=torch.float32).mul_(2).sub_(1).to(dt)
               for _ in range(3))
    flops = 4.0 * batch * a.heads * seq * seq * hd * (0.5 if causal else 1.0)
    if a.backward:
        flops *= 2.5
        for t in (q, k, v):
            t.requires_grad_(True)
        dout = torch.rand(shape, device="cuda", generator=g, dtype=torch.float32).sub_(0.5).to(dt)
    for name in a.backends.split(","):
        rec = {"peer": "torch", "backend": name, "dtype": dname, "batch": batch, "heads": a.heads,
               "seq": seq, "head_dim": hd, "mask": "causal" if causal else "none",
               "torch": torch.__version__, "pass": "backward" if a.backward else "forward"}
        try:
            with sdpa_kernel([BACKENDS[name]]):
                if a.backward:
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    fn = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
                else:
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                ts = timings_ms(fn, a.warmup, a.reps)
                med, lo, hi = ts[len(ts) // 2], ts[0], ts[-1]
            rec.update(median_ms=med, min_ms=lo, max_ms=hi, tflops=flops / med * 1e-9)
        except Exception as e:  # out of memory, unsupported backend for the shape
            rec.update(error=str(e).splitlines()[0][:200])
        torch.cuda.empty_cache()
        print(json.dumps(rec))
        sys.stdout.flush()
    del q, k, v


if __name__ == "__main__":
    main()
