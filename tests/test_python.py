#!/usr/bin/env python3
"""test_python.py — checks the low-level ctypes layer of the Python package (python/clattn) end to end against the float64 reference, without numpy."""
import ctypes
import math
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import clattn  # noqa: E402


def check(lib, ctx, b, h, n, d, mask, algo):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    desc = clattn.make_desc(lib, b, h, n, n, d, mask=mask, algo=algo)
    cnt = b * h * n * d
    host = [(ctypes.c_float * cnt)(*[rng.uniform(-1, 1) for _ in range(cnt)]) for _ in range(3)]
    out = (ctypes.c_float * cnt)(*([float("nan")] * cnt))
    bufs = [ctx.buffer(ctypes.sizeof(x), x) for x in host] + [ctx.buffer(ctypes.sizeof(out), out)]
    plan = clattn.Plan(ctx, desc)
    plan.execute(*bufs)
    ctx.read(bufs[3], out)
    ref = (ctypes.c_double * cnt)()
    st = lib.lib.clattn_reference_attention(ctypes.byref(desc), host[0], host[1], host[2], ref, None, None, 0)
    assert st == 0, st
    num = sum((out[i] - ref[i]) ** 2 for i in range(cnt))
    den = sum(ref[i] ** 2 for i in range(cnt))
    rel = math.sqrt(num / den)
    ok = rel <= 1e-5 and not any(math.isnan(out[i]) for i in range(cnt))
    est = ctx.estimate(desc)
    ok = ok and est == lib.lib.clattn_plan_workspace_size(plan.h)
    print(f"{'ok' if ok else 'FAIL'} {algo} B={b} H={h} N={n} d={d} {mask}: rel {rel:.2e} (seed {seed}), "
          f"workspace estimate {est} B — {plan.describe()}")
    for x in bufs:
        ctx.release_buffer(x)
    plan.close()
    return ok


def main():
    lib = clattn.Library(os.environ.get("CLATTN_LIBRARY") or os.environ.get("CLATTN_LIB"))
    ctx = clattn.Context(os.environ.get("CLATTN_DEVICE"), lib=lib)
    print(f"clattn {lib.version()} on {ctx.device}")
    results = [check(lib, ctx, 1, 2, 65, 40, "causal", "flash"),
               check(lib, ctx, 2, 1, 33, 16, "none", "flash"),
               check(lib, ctx, 1, 2, 50, 64, "causal", "naive")]
    try:
        clattn.Plan(ctx, clattn.make_desc(lib, 1, 1, 8, 8, 300))
        results.append(False)
        print("FAIL: head_dim 300 accepted")
    except clattn.ClattnError as e:
        ok = "head_dim" in str(e)
        results.append(ok)
        print(f"{'ok' if ok else 'FAIL'} invalid head_dim rejected: {e}")
    # Closing the context before its plan (issue #13 item 9) must be harmless: the
    # plan keeps the C context alive until it is closed itself.
    plan = clattn.Plan(ctx, clattn.make_desc(lib, 1, 1, 8, 8, 16, mask="causal_top_left"))
    ctx.close()
    ok = "flash" in plan.describe()
    plan.close()
    plan.close()
    ctx.close()
    results.append(ok)
    print(f"{'ok' if ok else 'FAIL'} context closed before its plan")
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
