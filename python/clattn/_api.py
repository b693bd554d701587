"""_api.py — the high-level API: scaled_dot_product_attention (PyTorch's semantics) and attention (all of clattn) on numpy arrays and torch CPU tensors."""
import ctypes
import threading

from . import _lowlevel as ll

try:
    import numpy as np
except ImportError:  # the low-level layer works without numpy; this module needs it
    np = None

try:
    import ml_dtypes as _ml_dtypes

    _BF16 = np.dtype(_ml_dtypes.bfloat16) if np is not None else None
except Exception:
    _BF16 = None

_tls = threading.local()
_PLAN_CACHE_SIZE = 32


def default_context():
    """This thread's default Context (created on first use: $CLATTN_DEVICE, else GPU, else CPU)."""
    ctx = getattr(_tls, "ctx", None)
    if ctx is None or ctx.closed:
        ctx = ll.Context()
        _tls.ctx = ctx
    return ctx


def set_default_context(ctx):
    """Makes `ctx` (a Context, or None to create one on next use) this thread's default."""
    _tls.ctx = ctx


def _need_numpy():
    if np is None:
        raise ImportError("clattn's array API needs numpy (pip install numpy, or apt-get install "
                          "python3-numpy)")


def _torch_module(x):
    mod = type(x).__module__ or ""
    if mod.split(".")[0] == "torch" and hasattr(x, "detach") and hasattr(x, "device"):
        import torch

        return torch
    return None


def _f32_to_bf16_bits(a):
    """float array -> uint16 bfloat16 bit patterns, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        r[nan] = 0x7FC0
    return r


def _bf16_bits_to_f32(b):
    return (np.asarray(b).astype(np.uint32) << 16).view(np.float32)


class _Tensor:
    """One argument as a numpy view of its memory (no copy unless said), its clattn dtype and how
    to give results back in the caller's type."""

    def __init__(self, x, name, dtype):
        _need_numpy()
        self.name = name
        self.torch = _torch_module(x)
        self.torch_dtype = None
        self.back = None  # numpy dtype to convert the output back to (float64 converted on request)
        self.bits = None  # numpy integer dtype when bf16/f16 travel as raw bits
        want = ll.lookup(ll.DTYPES, dtype, "dtype") if dtype is not None else None
        if self.torch is not None:
            torch = self.torch
            t = x.detach()
            if t.device.type != "cpu":
                raise ValueError(f"{name}: a torch tensor on {t.device}; clattn takes CPU tensors "
                                 "(the OpenCL device is chosen by the context)")
            self.torch_dtype = t.dtype
            tmap = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
            if t.dtype in tmap and (want is None or want == tmap[t.dtype]):
                code = tmap[t.dtype]
                a = t.view(torch.int16).numpy() if code == 2 else t.numpy()
                if code == 2:
                    self.bits = np.dtype(np.int16)
            elif want is not None and t.is_floating_point():
                code = want
                a = t.to(torch.float32).numpy()
                a = self._convert(a, want)
                self.torch_dtype = t.dtype
            else:
                raise TypeError(f"{name}: torch dtype {t.dtype} is not supported (float32, float16, "
                                "bfloat16; pass dtype='f32' to clattn.attention to convert)")
            self.arr, self.code = a, code
            return
        if isinstance(x, np.ndarray):
            a = x
        elif hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__"):
            a = np.asarray(x)
        elif hasattr(x, "__dlpack__"):
            a = np.from_dlpack(x)
        else:
            raise TypeError(f"{name}: expected a numpy array or a torch CPU tensor (or an object with "
                            f"__array_interface__ / __dlpack__), got {type(x).__name__}")
        dt = a.dtype
        natural = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
        if _BF16 is not None:
            natural[_BF16] = 2
        if dt in natural and (want is None or want == natural[dt]):
            code = natural[dt]
        elif dt in (np.dtype(np.uint16), np.dtype(np.int16)):
            if want not in (1, 2):
                raise TypeError(f"{name}: a 16-bit integer array; pass dtype='bf16' (or 'f16') to say "
                                "that it holds bfloat16 (half) bit patterns")
            code, self.bits = want, dt
        elif want is not None and dt.kind == "f" or (want is not None and dt in natural):
            code, self.back = want, dt  # converted in on request, converted back on the way out
            a = self._convert(a, want)
        elif dt.kind == "f":
            raise TypeError(f"{name}: {dt} is not a storage type of clattn (float32, float16, "
                            "bfloat16); convert it yourself (a.astype(np.float32)) or pass dtype='f32' "
                            "to clattn.attention to have it converted")
        else:
            raise TypeError(f"{name}: dtype {dt} is not supported (float32, float16, bfloat16)")
        self.arr, self.code = a, code

    def _convert(self, a, want):
        """An explicit conversion the caller asked for (dtype=...)."""
        if want == 0:
            return a.astype(np.float32)
        if want == 1:
            return a.astype(np.float16)
        if _BF16 is not None:
            return a.astype(np.float32).astype(_BF16)
        self.bits = np.dtype(np.uint16)
        return _f32_to_bf16_bits(a).reshape(a.shape)

    def empty(self, shape):
        """A fresh contiguous output (numpy array, and the object to return) like this argument."""
        if self.torch is not None:
            torch = self.torch
            storage = {0: torch.float32, 1: torch.float16, 2: torch.bfloat16}[self.code]
            t = torch.empty(tuple(shape), dtype=storage)
            a = t.view(torch.int16).numpy() if self.code == 2 else t.numpy()
            return a, t
        if self.bits is not None:
            a = np.empty(shape, dtype=self.bits)
        else:
            a = np.empty(shape, dtype={0: np.float32, 1: np.float16, 2: _BF16}[self.code])
        return a, a

    def finish(self, obj):
        """The output in the caller's type (converted back to torch / float64 when converted in)."""
        if self.torch is not None:
            if obj.dtype != self.torch_dtype:
                obj = obj.to(self.torch_dtype)
            return obj
        if self.back is not None:
            if self.code == 2 and self.bits is not None:
                return _bf16_bits_to_f32(obj).astype(self.back)
            return obj.astype(self.back)
        return obj


def _elem_strides(a, name):
    isz = a.itemsize
    if any(s % isz for s in a.strides):
        raise ValueError(f"{name}: strides {a.strides} are not multiples of the element size {isz}")
    return [s // isz if n > 1 else 0 for s, n in zip(a.strides, a.shape)]


def _merge(shape, strides):
    """(size, stride) of leading dimensions merged into one without a copy, or None."""
    size, stride = 1, 0
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    for i, (n, s) in enumerate(dims):
        if i + 1 < len(dims) and s != dims[i + 1][1] * dims[i + 1][0]:
            return None
        size *= n
    if dims:
        stride = dims[-1][1]
    return size, stride


class _View:
    """A 4-D (batch, heads, seq, dim) description of an argument's memory: element strides, the
    base address and the span of bytes the device buffer must cover."""

    def __init__(self, t, layout, role):
        a, name = t.arr, t.name
        if a.ndim < 2:
            raise ValueError(f"{name}: expected at least 2 dimensions (seq, dim), got shape {a.shape}")
        if any(s < 0 for s in a.strides):
            a = np.ascontiguousarray(a)  # negative strides: an explicit copy
        st = _elem_strides(a, name)
        shp = list(a.shape)
        if layout == "bshd":
            if a.ndim < 3:
                raise ValueError(f"{name}: layout 'bshd' needs (..., seq, heads, dim), got shape {a.shape}")
            seq, heads, dim = (shp[-3], st[-3]), (shp[-2], st[-2]), (shp[-1], st[-1])
            lead_n, lead_s = shp[:-3], st[:-3]
        else:
            dim, seq = (shp[-1], st[-1]), (shp[-2], st[-2])
            heads = (shp[-3], st[-3]) if a.ndim >= 3 else (1, 0)
            lead_n, lead_s = shp[:-3], st[:-3]
        m = _merge(lead_n, lead_s)
        if m is None:  # leading dims not expressible by one stride: an explicit copy
            a = np.ascontiguousarray(a)
            t.arr = a
            return self.__init__(t, layout, role)
        self.arr = a
        self.lead = tuple(lead_n)
        self.batch, self.heads, self.seq, self.dim = m[0], heads[0], seq[0], dim[0]
        self.strides = (m[1], heads[1], seq[1], dim[1])
        self.ptr = a.ctypes.data
        n = 1 + sum((size - 1) * s for size, s in zip(a.shape, st)) if a.size else 0
        self.nbytes = n * a.itemsize


def _set_strides(s, v):
    s.batch, s.head, s.seq, s.dim = v


def _sparse_fields(mask, keep):
    """(mask code, SparseDesc) of a sparse spec: {'pattern': 'window', 'window_left': .., ...}."""
    spec = dict(mask) if isinstance(mask, dict) else {"pattern": mask}
    pat = spec.pop("pattern", None)
    if pat is None:
        raise ValueError("mask: a sparse mask needs 'pattern' (window, dilated, strided, bigbird, "
                         "block_layout)")
    code = ll.lookup({k: v for k, v in ll.MASKS.items() if 2 <= v <= 6}, pat, "mask pattern")
    sp = ll.SparseDesc()
    names = {f for f, _ in ll.SparseDesc._fields_}
    for k, val in spec.items():
        if k not in names or k in ("num_global_tokens", "layout_rows"):
            raise ValueError(f"mask: unknown field {k!r}; valid: "
                             + ", ".join(sorted(names - {"num_global_tokens", "layout_rows"})))
        if k in ("global_tokens", "layout_row_offsets", "layout_cols"):
            arr = (ctypes.c_int * len(val))(*[int(x) for x in val])
            keep.append(arr)
            setattr(sp, k, ctypes.cast(arr, ctypes.POINTER(ctypes.c_int)))
            if k == "global_tokens":
                sp.num_global_tokens = len(val)
            if k == "layout_row_offsets":
                sp.layout_rows = len(val) - 1
        else:
            setattr(sp, k, int(val))
    return code, sp


def _desc_key(d, keep):
    c = ll.Desc.from_buffer_copy(d)
    for f in ("global_tokens", "layout_row_offsets", "layout_cols"):
        setattr(c.sparse, f, None)
    fns = (d.score_mod or b"", d.mask_mod or b"")  # the texts, not their addresses
    c.score_mod = c.mask_mod = None
    if d.sinks:
        fns += (tuple(d.sinks[i] for i in range(d.heads)),)
        c.sinks = None
    return bytes(c) + repr([list(a) for a in keep]).encode() + repr(fns).encode()


def _plan(ctx, d, keep, config):
    key = (_desc_key(d, keep), config)
    with ctx._lock:
        p = ctx._cache.get(key)
        if p is not None and p.h:
            ctx._cache.move_to_end(key)
            return p
        p = ll.Plan(ctx, d, 0, config)
        ctx._cache[key] = p
        while len(ctx._cache) > _PLAN_CACHE_SIZE:
            ctx._cache.popitem(last=False)[1].close()
        return p


def _buffer(ctx, role, nbytes):
    """A reusable device buffer of at least nbytes for one role (q, k, v, o, lse)."""
    mem, size = ctx._buffers.get(role, (None, 0))
    if mem and size >= nbytes:
        return mem
    if mem:
        ctx.release_buffer(mem)
        del ctx._buffers[role]
    mem = ctx.buffer(max(nbytes, 1))
    ctx._buffers[role] = (mem, max(nbytes, 1))
    return mem


def _execute(ctx, plan, views, out, lse, user=None, blocks=False, bias=None):
    """Runs the plan on host memory: zero-copy CL_MEM_USE_HOST_PTR buffers on CPU devices, else
    the context's reusable device buffers with copies in and out. user: a numpy array for the
    user functions and bias: the bias tensor's bytes (each copied to a device buffer);
    blocks: make the user mask's block classes first (once per plan without `user`, every
    call with it)."""
    extras = user is not None or blocks or bias is not None
    with ctx._lock:
        if ctx.is_cpu and not extras:
            made = []
            try:
                for v in views:
                    made.append(ctx.buffer(v.nbytes, flags=ll.CL_MEM_READ_ONLY | ll.CL_MEM_USE_HOST_PTR,
                                           host_ptr=v.ptr))
                ob = ctx.buffer(out.nbytes, flags=ll.CL_MEM_READ_WRITE | ll.CL_MEM_USE_HOST_PTR,
                                host_ptr=out.ctypes.data)
                made.append(ob)
                lb = None
                if lse is not None:
                    lb = ctx.buffer(lse.nbytes, flags=ll.CL_MEM_READ_WRITE | ll.CL_MEM_USE_HOST_PTR,
                                    host_ptr=lse.ctypes.data)
                    made.append(lb)
                plan.execute(made[0], made[1], made[2], ob, lb)
                ctx.sync_host(ob, out.nbytes)
                if lb:
                    ctx.sync_host(lb, lse.nbytes)
            finally:
                ctx.finish()
                for m in made:
                    ctx.release_buffer(m)
            return
        made = []  # the extras' buffers, released once the queue is done
        try:
            ub = bb = None
            if user is not None:
                ua = np.ascontiguousarray(user)
                ub = ctx.buffer(max(ua.nbytes, 1))
                made.append(ub)
                ctx.write(ub, ua, nbytes=ua.nbytes)
            if bias is not None:
                bb = ctx.buffer(max(bias.nbytes, 1))
                made.append(bb)
                ctx.write(bb, bias, nbytes=bias.nbytes)
            if blocks and (ub is not None or not getattr(plan, "_blocks_done", False)):
                plan.update_mask_blocks(ub)
                plan._blocks_done = True
            bufs = []
            for role, v in zip("qkv", views):
                b = _buffer(ctx, role, v.nbytes)
                ctx.write(b, None, nbytes=v.nbytes, ptr=v.ptr)
                bufs.append(b)
            ob = _buffer(ctx, "o", out.nbytes)
            lb = _buffer(ctx, "lse", lse.nbytes) if lse is not None else None
            if extras:
                plan.execute_ex(q=bufs[0], k=bufs[1], v=bufs[2], o=ob, lse=lb, user=ub, bias=bb)
            else:
                plan.execute(bufs[0], bufs[1], bufs[2], ob, lb)
            ctx.read(ob, out, nbytes=out.nbytes)  # reused buffers may be larger
            if lb:
                ctx.read(lb, lse, nbytes=lse.nbytes)
        finally:
            if made:
                ctx.finish()
                for m in made:
                    ctx.release_buffer(m)


class _Prepared:
    """What _prepare made of the arguments: tensors, views, the descriptor (and what it points
    to), the output array, the plan (None when the problem is empty)."""


def _attention(q, k, v, *, return_lse, user=None, mask_mod=None, **kw):
    pr = _prepare(q, k, v, return_lse=return_lse, mask_mod=mask_mod, user=user, **kw)
    T = pr.T
    if pr.plan is not None:
        _execute(pr.ctx, pr.plan, pr.V, pr.o_arr, pr.lse, user=user, blocks=mask_mod is not None,
                 bias=pr.bias)
    res = T[0].finish(pr.o_obj)
    return (res, _lse_out(pr.lse, T[0])) if return_lse else res


def _prepare(q, k, v, *, mask_code, scale, layout, sparse, algo, feature_map, num_features,
             feature_seed, return_lse, dtype, context, config, gqa, softcap=0.0,
             alibi_max_bias=0.0, score_mod=None, mask_mod=None, user=None, sinks=None,
             attn_mask=None):
    _need_numpy()
    pr = _Prepared()
    pr.layout = layout
    layout = {0: "bhsd", 1: "bshd"}[ll.lookup({"bhsd": 0, "bshd": 1}, layout, "layout")]
    algo_code = ll.lookup(ll.ALGOS, algo, "algo")
    T = [_Tensor(x, n, dtype) for x, n in ((q, "q"), (k, "k"), (v, "v"))]
    for t in T[1:]:
        if t.code != T[0].code:
            raise ValueError(f"{t.name}: dtype {ll.DTYPE_NAMES[t.code]} differs from q's "
                             f"{ll.DTYPE_NAMES[T[0].code]}")
    for t in T[1:]:
        if t.arr.ndim != T[0].arr.ndim:
            raise ValueError(f"{t.name}: {t.arr.ndim} dimensions, q has {T[0].arr.ndim}")
    V = [_View(t, layout, r) for t, r in zip(T, "qkv")]
    vq, vk, vv = V
    for vw, t in zip(V[1:], T[1:]):
        if vw.lead != vq.lead:
            raise ValueError(f"{t.name}: batch dimensions {vw.lead} differ from q's {vq.lead}")
    if vk.dim != vq.dim:
        raise ValueError(f"k: head dim {vk.dim} differs from q's {vq.dim}")
    if vv.seq != vk.seq:
        raise ValueError(f"v: sequence length {vv.seq} differs from k's {vk.seq}")
    if vv.heads != vk.heads:
        raise ValueError(f"v: {vv.heads} heads, k has {vk.heads}")
    if vv.dim != vq.dim:
        raise NotImplementedError(f"v: value head dim {vv.dim} differs from the query/key head dim "
                                  f"{vq.dim}; clattn needs one head dim for q, k and v")
    if vq.heads % vk.heads:
        raise ValueError(f"k: {vk.heads} key/value heads do not divide q's {vq.heads} heads")
    if vk.heads != vq.heads and not gqa:
        raise ValueError(f"k: {vk.heads} heads but q has {vq.heads}; pass enable_gqa=True for "
                         "grouped-query attention")
    out_shape = T[0].arr.shape[:-1] + (vq.dim,)
    lse_shape = vq.lead + ((vq.heads,) if T[0].arr.ndim >= 3 else ()) + (vq.seq,)
    o_arr, o_obj = T[0].empty(out_shape)
    lse = np.empty(lse_shape, dtype=np.float32) if return_lse else None
    pr.T, pr.V, pr.o_arr, pr.o_obj, pr.lse, pr.plan = T, V, o_arr, o_obj, lse, None
    pr.out_shape, pr.lse_shape = out_shape, lse_shape
    if o_arr.size == 0 or vk.seq == 0:
        if o_arr.size:
            o_arr[...] = 0
        if lse is not None:
            lse[...] = -np.inf
        return pr
    if vq.dim > 256:
        raise ValueError(f"q: head dim {vq.dim}; clattn supports 1..256")
    ctx = context or default_context()
    keep = []
    d = ll.Desc()
    ctx.L.lib.clattn_attention_desc_init(ctypes.byref(d))
    d.batch, d.heads, d.kv_heads = vq.batch, vq.heads, vk.heads
    d.seq_q, d.seq_kv, d.head_dim = vq.seq, vk.seq, vq.dim
    d.dtype, d.layout = T[0].code, 2
    ov = _View(_Out(o_arr), layout, "o")
    for s, vw in zip((d.q_strides, d.k_strides, d.v_strides, d.o_strides), (vq, vk, vv, ov)):
        _set_strides(s, vw.strides)
    if scale is not None:
        scale = float(scale)
        d.scale = scale if scale != 0.0 else 5e-324  # 0 means the default in the descriptor
    d.softcap, d.alibi_max_bias = float(softcap or 0.0), float(alibi_max_bias or 0.0)
    fn_text = [None if f is None else (f.encode() if isinstance(f, str) else bytes(f))
               for f in (score_mod, mask_mod)]
    d.score_mod, d.mask_mod = fn_text  # the bytes live in fn_text until the plan copied them
    if user is not None and score_mod is None and mask_mod is None:
        raise ValueError("user: given without score_mod / mask_mod")
    if sinks is not None:
        sk = np.ascontiguousarray(np.asarray(sinks, dtype=np.float32).ravel())
        if sk.size != vq.heads:
            raise ValueError(f"sinks: {sk.size} values for {vq.heads} query heads")
        keep_sinks = (ctypes.c_float * sk.size)(*sk.tolist())
        d.sinks = ctypes.cast(keep_sinks, ctypes.POINTER(ctypes.c_float))
        d._keep_sinks = keep_sinks
    bias = None
    if attn_mask is not None:
        bias = _bias_tensor(d, attn_mask, (vq.batch, vq.heads, vq.seq, vk.seq),
                            T[0].arr.ndim, vq.lead)
    d.mask = mask_code
    if sparse is not None:
        d.mask, d.sparse = _sparse_fields(sparse, keep)
        if mask_code == 1:
            d.sparse.causal = 1
        elif mask_code == 7:
            raise NotImplementedError("causal='top_left' with a sparse mask: sparse masks are "
                                      "bottom-right aligned; pass causal='bottom_right'")
    d.algo = algo_code
    if algo_code == 3:
        d.feature_map = ll.lookup(ll.FEATURES, feature_map, "feature_map")
        d.num_features, d.feature_seed = int(num_features), int(feature_seed)
        if return_lse:
            raise ValueError("return_lse: linear attention has no log-sum-exp")
    pr.ctx, pr.d, pr.keep, pr.fn_text, pr.bias = ctx, d, keep, fn_text, bias
    pr.plan = _plan(ctx, d, keep, config)
    return pr


def _storage_like(x, name, t, shape, dtype):
    """x as a contiguous array of shape `shape` in t's storage type (raw bits for bf16 without
    ml_dtypes), for the arguments the backward reads with the output's strides; dtype: the
    caller's conversion request, as for q."""
    xt = _Tensor(x, name, dtype)
    if xt.code != t.code:
        raise ValueError(f"{name}: dtype {ll.DTYPE_NAMES[xt.code]} differs from q's "
                         f"{ll.DTYPE_NAMES[t.code]}")
    a = np.ascontiguousarray(xt.arr)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(a.shape)}, expected {tuple(shape)} (the output's)")
    want = t.empty(shape)[0].dtype
    return a.view(want) if a.dtype != want else a


def attention_backward(dout, q, k, v, *, out=None, lse=None, causal=None, scale=None,
                       layout="bhsd", dtype=None, context=None, config=None, softcap=None,
                       alibi_max_bias=None, mask_mod=None, user=None, sinks=None):
    """Gradients (dq, dk, dv) of attention(q, k, v, ...) for the output gradient dout, by
    clattn's deterministic flash backward (clattn_plan_execute_backward: bitwise reproducible,
    on tensor cores on NVIDIA sm_80+ for f16/bf16).

    q, k, v and the keywords as in clattn.attention (flash family: dense or causal masks, GQA,
    softcap, ALiBi, sinks, a user mask_mod; not sparse masks, score_mod, attn_mask or linear
    attention here). dout: the shape of the output, q's dtype. out, lse: the forward's output and
    log-sum-exp (attention(..., return_lse=True)); both None: the forward runs here first.
    Returns dq, dk, dv with the shapes of q, k, v, in q's type and dtype.
    """
    if (out is None) != (lse is None):
        raise ValueError("out and lse: give both (the forward's, with return_lse=True) or neither")
    pr = _prepare(q, k, v, mask_code=_causal_code(causal), scale=scale, layout=layout,
                  sparse=None, algo="flash", feature_map="elu", num_features=0, feature_seed=0,
                  return_lse=True, dtype=dtype, context=context, config=config, gqa=True,
                  softcap=softcap, alibi_max_bias=alibi_max_bias, mask_mod=mask_mod, user=user,
                  sinks=sinks)
    T, V = pr.T, pr.V
    grads = [T[i].empty(T[i].arr.shape) for i in range(3)]
    dout_a = _storage_like(dout, "dout", T[0], pr.out_shape, dtype)
    if pr.plan is None:  # nothing to attend: zero gradients
        for a, _ in grads:
            a[...] = 0
        return tuple(T[i].finish(grads[i][1]) for i in range(3))
    ctx, plan = pr.ctx, pr.plan
    if out is None:
        _execute(ctx, plan, V, pr.o_arr, pr.lse, user=user, blocks=mask_mod is not None)
        o_a, lse_a = pr.o_arr, pr.lse
    else:
        o_a = _storage_like(out, "out", T[0], pr.out_shape, dtype)
        lt = lse.detach().cpu().numpy() if _torch_module(lse) is not None else np.asarray(lse)
        lse_a = np.ascontiguousarray(lt, dtype=np.float32)
        if tuple(lse_a.shape) != tuple(pr.lse_shape):
            raise ValueError(f"lse: shape {tuple(lse_a.shape)}, expected {tuple(pr.lse_shape)}")
    made = []
    with ctx._lock:
        try:
            def dev(nbytes, host=None, ptr=None):
                b = ctx.buffer(max(nbytes, 1))
                made.append(b)
                if host is not None or ptr is not None:
                    ctx.write(b, host, nbytes=nbytes, ptr=ptr)
                return b
            qkv = [dev(vw.nbytes, ptr=vw.ptr) for vw in V]
            ob, db = dev(o_a.nbytes, o_a), dev(dout_a.nbytes, dout_a)
            lb = dev(lse_a.nbytes, lse_a)
            gb = [dev(vw.nbytes) for vw in V]  # the gradients take q's, k's, v's strides
            ub = dev(np.asarray(user).nbytes, np.ascontiguousarray(user)) if user is not None else None
            if mask_mod is not None:
                plan.update_mask_blocks(ub)
            if ub is None:
                plan.execute_backward(qkv[0], qkv[1], qkv[2], ob, lb, db, gb[0], gb[1], gb[2])
            else:
                plan.execute_backward_ex(db, gb[0], gb[1], gb[2], q=qkv[0], k=qkv[1], v=qkv[2],
                                         o=ob, lse=lb, user=ub)
            for (a, _), vw, b in zip(grads, V, gb):
                span = np.empty(vw.nbytes, dtype=np.uint8)
                ctx.read(b, span, nbytes=vw.nbytes)
                st = [s * a.itemsize for s in _elem_strides(vw.arr, "grad")]
                src = np.lib.stride_tricks.as_strided(span.view(a.dtype)[: max(vw.nbytes // a.itemsize, 1)],
                                                      shape=vw.arr.shape, strides=st)
                a[...] = src
        finally:
            ctx.finish()
            for m in made:
                ctx.release_buffer(m)
    return tuple(T[i].finish(grads[i][1]) for i in range(3))


def _bias_tensor(d, attn_mask, shape, ndim, lead):
    """PyTorch attn_mask → the descriptor's bias fields and the bytes to upload: a bool mask
    (True = attend) or a float bias broadcastable to (..., H, L, S); broadcast dimensions get
    stride 0, nothing is expanded."""
    m = attn_mask
    if getattr(m, "__module__", "").startswith("torch"):
        m = m.detach().cpu()
        m = m.to(dtype=__import__("torch").float32).numpy() if m.is_floating_point() else m.numpy()
    m = np.asarray(m)
    if m.dtype == np.bool_:
        code, m = 4, m.astype(np.uint8)
    elif m.dtype == np.float16:
        code = 2
    elif m.dtype.name == "bfloat16":
        code, m = 3, m.view(np.uint16)
    elif np.issubdtype(m.dtype, np.floating):
        code, m = 1, m.astype(np.float32)
    else:
        raise ValueError(f"attn_mask: dtype {m.dtype}; bool or floating point")
    if m.ndim > ndim:
        raise ValueError(f"attn_mask: {m.ndim} dimensions for {ndim}-dimensional q")
    full = lead + (shape[1],) * (ndim >= 3) + shape[2:]  # (..., H, L, S) as q has them
    m = np.ascontiguousarray(m.reshape((1,) * (len(full) - m.ndim) + m.shape))
    try:
        view = np.broadcast_to(m, full)
    except ValueError:
        raise ValueError(f"attn_mask: shape {attn_mask.shape} does not broadcast to {full}") from None
    st = [x // m.itemsize for x in view.strides]
    # the batch dimensions collapse into one (the descriptor's): equal strides for a contiguous lead
    nb = len(lead)
    bstride = st[nb - 1] if nb else 0
    if nb > 1 and any(st[i] != st[i + 1] * full[i + 1] and full[i] > 1 for i in range(nb - 1)):
        raise NotImplementedError("attn_mask: partial broadcasting over several batch dimensions")
    hs = st[nb] if ndim >= 3 else 0
    d.bias_type = code
    d.bias_strides.batch, d.bias_strides.head = bstride, hs
    d.bias_strides.seq, d.bias_strides.dim = st[-2], st[-1]
    return m


class _Out:
    def __init__(self, a):
        self.arr, self.name = a, "out"


def _lse_out(lse, t):
    if t.torch is not None:
        return t.torch.from_numpy(lse)
    return lse


def _causal_code(causal):
    if causal is None or causal is False:
        return 0
    if causal is True:
        raise ValueError("causal=True is ambiguous: pass causal='bottom_right' (FlashAttention, "
                         "clattn's CLATTN_MASK_CAUSAL) or causal='top_left' (PyTorch's is_causal)")
    return ll.lookup({"bottom_right": 1, "top_left": 7}, causal, "causal")


def attention(q, k, v, *, causal=None, scale=None, layout="bhsd", mask=None, algo="auto",
              feature_map="elu", num_features=0, feature_seed=0, return_lse=False, dtype=None,
              context=None, config=None, softcap=None, alibi_max_bias=None, score_mod=None,
              mask_mod=None, user=None, sinks=None):
    """Attention softmax(q kᵀ·scale + mask) v with everything clattn offers.

    q: (..., H, L, E) ('bhsd') or (..., L, H, E) ('bshd'); k, v: the same with Hk heads (GQA when
    Hk divides H) and S positions; any strides (passed as strides, never copied as raw bytes).
    numpy arrays (float32, float16, ml_dtypes.bfloat16, or uint16 bit patterns with dtype='bf16')
    and torch CPU tensors (float32, float16, bfloat16); the output has the type, dtype and layout
    of q. causal: None, 'bottom_right' (query i sees keys j <= i + S - L, FlashAttention) or
    'top_left' (j <= i, PyTorch's is_causal). scale: default 1/sqrt(E). mask: a sparse pattern,
    {'pattern': 'window', 'window_left': 64, 'window_right': 0, 'num_global': 1, ...} with the
    fields of clattn_sparse_desc (bottom-right aligned). algo: 'auto', 'flash', 'naive' or
    'linear' (feature_map 'elu' / 'relu' / 'favor', num_features, feature_seed). return_lse:
    also return the float32 natural-log log-sum-exp, shape (..., H, L). dtype: 'f32' / 'f16' /
    'bf16' to convert the inputs (float64 is converted only when asked). context: a Context
    (default: this thread's). config: a kernel configuration string (clattn_plan_create_with_config).
    softcap: logit soft-capping, s = softcap·tanh(s/softcap) (Gemma 2). alibi_max_bias: ALiBi with
    the standard slopes of this max bias (8: BLOOM's), positions aligned as the causal mask. Both
    on the flash kernels' forward (clattn_attention_desc.softcap / .alibi_max_bias).
    score_mod / mask_mod: OpenCL C source of clattn_score_mod / clattn_mask_mod (clattn.h states
    the signatures), compiled into the flash kernels; user: a numpy array they read as
    `__global const uchar *user`. A mask_mod's block classes are made before each call with
    `user` (once per plan without it), so hidden tiles cost nothing. sinks: attention sinks
    (gpt-oss), one logit per query head added to the softmax denominator.
    """
    return _attention(q, k, v, mask_code=_causal_code(causal), scale=scale, layout=layout,
                      sparse=mask, algo=algo, feature_map=feature_map, num_features=num_features,
                      feature_seed=feature_seed, return_lse=return_lse, dtype=dtype,
                      context=context, config=config, gqa=True, softcap=softcap,
                      alibi_max_bias=alibi_max_bias, score_mod=score_mod, mask_mod=mask_mod,
                      user=user, sinks=sinks)


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention's semantics on numpy arrays or torch CPU
    tensors: shapes (..., H, L, E), is_causal top-left aligned (query i sees keys j <= i), scale
    default 1/sqrt(E), enable_gqa for fewer key/value heads. Returns the type (and dtype) given.
    attn_mask: a bool mask (True = attend) or a float bias added to the scores, broadcastable to
    (..., H, L, S) (not with is_causal, as in PyTorch); a row that attends nothing gives zeros
    (PyTorch gives NaN there). Dropout is not implemented
    (NotImplementedError, never ignored)."""
    if attn_mask is not None and is_causal:
        raise ValueError("attn_mask and is_causal: give one (PyTorch refuses both)")
    if dropout_p != 0.0:
        raise NotImplementedError(f"dropout_p={dropout_p}: dropout is not implemented (inference only)")
    return _attention(q, k, v, mask_code=7 if is_causal else 0, scale=scale, layout="bhsd",
                      sparse=None, algo="auto", feature_map="elu", num_features=0, feature_seed=0,
                      return_lse=False, dtype=None, context=None, config=None, gqa=enable_gqa,
                      attn_mask=attn_mask)
