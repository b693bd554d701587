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


def paged_attention(q, k_pages, v_pages, block_table, seqlens_kv, *, causal=False, scale=None,
                    head_major=False, cu_seqlens_q=None, max_seq_q=None, return_lse=False,
                    config=None, check_tables=False, context=None):
    """Attention of q against a paged KV cache (clattn's decode kernel).

    q: [B, Hq, Nq, d] (or, with cu_seqlens_q, packed [total_q, Hq, d]); k_pages, v_pages:
    [num_pages, page_size, Hk, d] ([num_pages, Hk, page_size, d] with head_major); block_table:
    int32 [B, max_pages_per_seq]; seqlens_kv: int32 [B]. causal: bottom-right ("causal") or
    "top_left". Returns o shaped like q (and the LSE: [B, Hq, Nq], ragged [total_q, Hq])."""
    np = _np()
    ctx = context or default_context()
    q = np.ascontiguousarray(q)
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
    inputs = dict(q=q, k=kp, v=vp, seqlens_kv=sl, block_table=bt)
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
