"""torch_peer.py — what the PyTorch peer scripts share: the SDPA backends, the dtypes and the timer."""
import time

import torch
from torch.nn.attention import SDPBackend

# Every SDPA backend this PyTorch has; cuDNN is the fastest on Hopper where it accepts the shape.
BACKENDS = {n: getattr(SDPBackend, n) for n in
            ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH") if hasattr(SDPBackend, n)}
# The fused backends, the ones worth comparing with (MATH materialises the score matrix).
FUSED = ",".join(n for n in BACKENDS if n != "MATH")
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def timings_ms(fn, warmup, reps, cuda=True, min_ms=2.0):
    """Sorted per-call times in ms after warm-up: on CUDA, each sample is one pair of events around
    back-to-back calls (as many as take about min_ms, at least one), divided by their number, so that
    the host's dispatch of a short call (tens of microseconds) is hidden behind the device's work as
    in a real loop, not counted once per call; on the CPU, the wall clock of synchronous calls."""
    for _ in range(warmup):
        fn()
    ts = []
    if not cuda:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return sorted(ts)
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    inner = max(1, min(1000, int(min_ms / max(a.elapsed_time(b), 1e-3))))
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / inner)
    return sorted(ts)


def median(ts):
    return ts[len(ts) // 2]
