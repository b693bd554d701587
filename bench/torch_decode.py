#!/usr/bin/env python3
"""torch_decode.py — times PyTorch SDPA decode (q [B,Hq,1,d] against k, v [B,Hk,N,d], enable_gqa) per backend, KV GB/s.

--layouts bhsd: K/V stored head-major ([B,Hk,N,d] contiguous, SDPA's own layout); bshd: stored
token-major ([B,N,Hk,d], an inference engine's cache) and passed as the transposed view."""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from torch_peer import BACKENDS, DTYPES, median, timings_ms

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--seqs", default="4096,32768,131072")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--dtypes", default="bf16,f16")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--layouts", default="bhsd", help="K/V storage, a comma list of bhsd and bshd (default bhsd)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    for dname in a.dtypes.split(","):
        dt = DTYPES[dname]
        points = [(b, n, lay) for b in map(int, a.batches.split(",")) for n in map(int, a.seqs.split(","))
                  for lay in a.layouts.split(",")]
        for b, n, lay in points:
            q = k = v = None
            try:
                q = torch.randn(b, a.heads, 1, a.head_dim, device="cuda", dtype=dt)
                if lay == "bshd":  # token-major storage, the head-major view SDPA takes
                    k = torch.randn(b, n, a.kv_heads, a.head_dim, device="cuda", dtype=dt).transpose(1, 2)
                    v = torch.randn(b, n, a.kv_heads, a.head_dim, device="cuda", dtype=dt).transpose(1, 2)
                else:
                    k = torch.randn(b, a.kv_heads, n, a.head_dim, device="cuda", dtype=dt)
                    v = torch.randn_like(k)
            except Exception as e:  # out of memory
                print(json.dumps({"peer": "torch", "dtype": dname, "batch": b, "seq_kv": n, "layout": lay,
                                  "error": str(e).splitlines()[0][:160]}))
                del q, k, v
                torch.cuda.empty_cache()
                continue
            kv_bytes = 2 * k.numel() * k.element_size()
            for name in a.backends.split(","):
                rec = {"peer": "torch", "backend": name, "dtype": dname, "batch": b, "seq_kv": n, "layout": lay,
                       "heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim,
                       "torch": torch.__version__}
                try:
                    with sdpa_kernel([BACKENDS[name]]):
                        fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                        med = median(timings_ms(fn, a.warmup, a.reps))
                    rec.update(median_ms=med, kv_gbps=kv_bytes / med * 1e-6)
                except Exception as e:  # unsupported backend for the shape
                    rec.update(error=str(e).splitlines()[0][:160])
                print(json.dumps(rec))
                sys.stdout.flush()
            del q, k, v
            torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
