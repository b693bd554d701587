"""Inference entry points of the binding: paged / ragged decode attention and merge_states on numpy arrays."""
import ctypes

from . import _lowlevel as ll
from ._api import default_context

_NP_DTYPES = {"float32": 0, "float16": 1}


def _np():
    import numpy as np
    return np


def _dtype_code(a):
    name = str(a.dtype)
    if name not in _NP_DTYPES:
        raise ll.ClattnError(f"dtype {name}: float32 or float16 arrays")
    return _NP_DTYPES[name]


def _execute_ex(ctx, plan, inputs, o, lse):
    """Upload the host arrays of inputs (name -> array), run plan.execute_ex into o and lse, read
    them back; every buffer and the plan are released whatever happens."""
    made = []
    try:
        args = {}
        for name, a in inputs.items():
            made.append(ctx.buffer(max(a.nbytes, 1), host=a if a.nbytes else None))
            args[name] = made[-1]
        ob, lb = ctx.buffer(o.nbytes), ctx.buffer(lse.nbytes)
        made += [ob, lb]
        plan.execute_ex(o=ob, lse=lb, **args)
        ctx.read(ob, o)
        ctx.read(lb, lse)
    finally:
        ctx.finish()
        for m in made:
            ctx.release_buffer(m)
        plan.close()


def _scale_count(kv_scale, P, ps, Hk, d):
    return {"token": P * ps * Hk, "tensor": 1, "head": Hk, "channel": Hk * d}[kv_scale]


def dequantize_kv(codes, kv_dtype, scale=1.0):
    """The values of quantized K/V codes (int8 or uint8 arrays) exactly as clattn's kernels decode
    them (clattn_kv_code_value), times scale (broadcast): the reference side of a quantized cache."""
    np = _np()
    ctx = default_context()
    if kv_dtype not in ("int8", "fp8e4m3", "fp8e5m2"):
        raise ValueError(f"kv_dtype {kv_dtype!r}: int8, fp8e4m3 or fp8e5m2")
    t = ll.KV_DTYPES[kv_dtype]
    lut = np.array([ctx.L.lib.clattn_kv_code_value(t, c) for c in range(256)], dtype=np.float32)
    return lut[np.asarray(codes).view(np.uint8)] * np.asarray(scale, dtype=np.float32)


def paged_attention(q, k_pages, v_pages, block_table, seqlens_kv, *, causal=False, scale=None,
                    head_major=False, cu_seqlens_q=None, max_seq_q=None, return_lse=False,
                    kv_dtype=None, k_scale=None, v_scale=None, kv_scale="token",
                    config=None, check_tables=False, context=None):
    """Attention of q against a paged KV cache (clattn's decode kernel).

    q: [B, Hq, Nq, d] (or, with cu_seqlens_q, packed [total_q, Hq, d]); k_pages, v_pages:
    [num_pages, page_size, Hk, d] ([num_pages, Hk, page_size, d] with head_major); block_table:
    int32 [B, max_pages_per_seq]; seqlens_kv: int32 [B]. causal: bottom-right ("causal") or
    "top_left". Returns o shaped like q (and the LSE: [B, Hq, Nq], ragged [total_q, Hq]).

    A quantized cache: kv_dtype "int8" (the default for np.int8 pages), "fp8e4m3" or "fp8e5m2"
    (uint8 pages holding the codes), with float32 k_scale / v_scale laid out as kv_scale says:
    "token" [num_pages, page_size, Hk], "tensor" [1], "head" [Hk], "channel" [Hk, d]; an element is
    its code's value (dequantize_kv) times its scale."""
    np = _np()
    ctx = context or default_context()
    q = np.ascontiguousarray(q)
    if kv_dtype is None and np.asarray(k_pages).dtype == np.int8:
        kv_dtype = "int8"
    if kv_dtype is not None:
        if kv_dtype not in ("int8", "fp8e4m3", "fp8e5m2"):
            raise ValueError(f"kv_dtype {kv_dtype!r}: int8, fp8e4m3 or fp8e5m2")
        if kv_scale not in ("token", "tensor", "head", "channel"):
            raise ValueError(f"kv_scale {kv_scale!r}: token, tensor, head or channel")
        for name, a in (("k_pages", k_pages), ("v_pages", v_pages)):
            if np.asarray(a).dtype not in (np.int8, np.uint8):
                raise ValueError(f"{name}: int8 or uint8 codes with kv_dtype={kv_dtype!r} "
                                 f"(got {np.asarray(a).dtype})")
        kp = np.ascontiguousarray(k_pages).view(np.uint8)
        vp = np.ascontiguousarray(v_pages).view(np.uint8)
    else:
        kp, vp = np.ascontiguousarray(k_pages, dtype=q.dtype), np.ascontiguousarray(v_pages, dtype=q.dtype)
    bt = np.ascontiguousarray(block_table, dtype=np.int32)
    sl = np.ascontiguousarray(seqlens_kv, dtype=np.int32)
    B, maxp = bt.shape
    P = kp.shape[0]
    ps, Hk = (kp.shape[2], kp.shape[1]) if head_major else (kp.shape[1], kp.shape[2])
    d = ll.Desc()
    ctx.L.lib.clattn_attention_desc_init(ctypes.byref(d))
    d.batch, d.kv_heads, d.head_dim, d.dtype = B, Hk, q.shape[-1], _dtype_code(q)
    d.kv_layout = 2 if head_major else 1
    d.page_size, d.num_pages, d.max_pages_per_seq = ps, P, maxp
    d.seq_kv = max(1, min(int(sl.max()) if sl.size else 1, maxp * ps))
    scales = {}
    if kv_dtype is not None:
        d.kv_dtype, d.kv_scale = ll.KV_DTYPES[kv_dtype], ll.KV_SCALES[kv_scale]
        n = _scale_count(kv_scale, P, ps, Hk, q.shape[-1])
        for name, a in (("k_scale", k_scale), ("v_scale", v_scale)):
            if a is None:
                raise ValueError(f"{name} is required with kv_dtype={kv_dtype!r}")
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.size != n:
                raise ValueError(f"{name}: {n} float32 scales for kv_scale={kv_scale!r} (got {a.size})")
            scales[name] = a
    elif k_scale is not None or v_scale is not None:
        raise ValueError("k_scale / v_scale need a quantized cache (kv_dtype)")
    cq = None
    if cu_seqlens_q is not None:
        cq = np.ascontiguousarray(cu_seqlens_q, dtype=np.int32)
        d.ragged, d.total_q, d.heads = 1, q.shape[0], q.shape[1]
        d.seq_q = int(max_seq_q or max(1, int(np.diff(cq).max())))
        d.layout = 1  # packed rows
        nlse = q.shape[0] * q.shape[1]
    else:
        d.heads, d.seq_q = q.shape[1], q.shape[2]
        nlse = q.shape[0] * q.shape[1] * q.shape[2]
    d.mask = 0 if not causal else ll.MASKS["causal"] if causal is True else ll.MASKS[causal]
    if scale:
        d.scale = scale
    plan = ll.Plan(ctx, d, 8 if check_tables else 0, config)
    o = np.empty_like(q)
    lse = np.empty(nlse, dtype=np.float32)
    inputs = dict(q=q, k=kp, v=vp, seqlens_kv=sl, block_table=bt, **scales)
    if cq is not None:
        inputs["cu_seqlens_q"] = cq
    _execute_ex(ctx, plan, inputs, o, lse)
    if cq is not None:
        lse = lse.reshape(q.shape[0], q.shape[1])
    else:
        lse = lse.reshape(q.shape[0], q.shape[1], q.shape[2])
    return (o, lse) if return_lse else o


def merge_states(outs, lses, *, context=None):
    """clattn_merge_states on host arrays: outs [S] of [..., d] (float32/float16), lses [S] of [...]
    float32 natural-log LSE. Returns (o, lse)."""
    np = _np()
    ctx = context or default_context()
    outs = [np.ascontiguousarray(o) for o in outs]
    lses = [np.ascontiguousarray(l, dtype=np.float32) for l in lses]
    dim = outs[0].shape[-1]
    rows = outs[0].size // dim
    made = []
    try:
        ob = [ctx.buffer(o.nbytes, host=o) for o in outs]
        lb = [ctx.buffer(l.nbytes, host=l) for l in lses]
        made = ob + lb
        out = np.empty_like(outs[0])
        lout = np.empty_like(lses[0])
        mo, ml = ctx.buffer(out.nbytes), ctx.buffer(lout.nbytes)
        made += [mo, ml]
        arr_o = (ctypes.c_void_p * len(ob))(*ob)
        arr_l = (ctypes.c_void_p * len(lb))(*lb)
        st = ctx.L.lib.clattn_merge_states(ctx._handle(), _dtype_code(outs[0]), rows, dim, len(ob),
                                           arr_o, arr_l, mo, ml, 0, None, None)
        if st != 0:
            raise ctx.fail(st)
        ctx.read(mo, out)
        ctx.read(ml, lout)
    finally:
        ctx.finish()
        for m in made:
            ctx.release_buffer(m)
    return out, lout


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_kv, *, max_seq_q=None, max_seq_kv=None,
                     causal=False, scale=None, return_lse=False, config=None, check_tables=False,
                     context=None):
    """Ragged (variable-length) attention on packed rows, FlashAttention-2 varlen style.

    q: [total_q, Hq, d]; k, v: [total_kv, Hk, d]; cu_seqlens_q / cu_seqlens_kv: int32 [B + 1]
    row offsets (first 0). causal: bottom-right per sequence (True / "causal") or "top_left".
    Returns o [total_q, Hq, d] (and the LSE [total_q, Hq])."""
    np = _np()
    ctx = context or default_context()
    q = np.ascontiguousarray(q)
    k, v = np.ascontiguousarray(k, dtype=q.dtype), np.ascontiguousarray(v, dtype=q.dtype)
    cq = np.ascontiguousarray(cu_seqlens_q, dtype=np.int32)
    ck = np.ascontiguousarray(cu_seqlens_kv, dtype=np.int32)
    d = ll.Desc()
    ctx.L.lib.clattn_attention_desc_init(ctypes.byref(d))
    d.batch, d.heads, d.kv_heads, d.head_dim = len(cq) - 1, q.shape[1], k.shape[1], q.shape[2]
    d.dtype, d.layout, d.ragged = _dtype_code(q), 1, 1
    d.total_q, d.total_kv = q.shape[0], k.shape[0]
    d.seq_q = int(max_seq_q or max(1, int(np.diff(cq).max())))
    d.seq_kv = int(max_seq_kv or max(1, int(np.diff(ck).max())))
    d.mask = 0 if not causal else ll.MASKS["causal"] if causal is True else ll.MASKS[causal]
    if scale:
        d.scale = scale
    plan = ll.Plan(ctx, d, 8 if check_tables else 0, config)
    o = np.empty_like(q)
    lse = np.empty((q.shape[0], q.shape[1]), dtype=np.float32)
    _execute_ex(ctx, plan, dict(q=q, k=k, v=v, cu_seqlens_q=cq, cu_seqlens_kv=ck), o, lse)
    return (o, lse) if return_lse else o
