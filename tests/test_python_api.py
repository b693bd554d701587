"""test_python_api.py — pytest checks of the clattn Python package (python/clattn) against a numpy float64 reference: dtypes, causal alignments, GQA, strides, errors, lifetimes, torch, the README example."""
import ctypes
import math
import os
import re
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "python"))
import clattn  # noqa: E402
from clattn import _api, _lowlevel  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

TOL = {"f32": 2e-5, "f16": 2e-3, "bf16": 2e-2}


# ---- float64 references -------------------------------------------------------------------

def visible(L, S, causal):
    i = np.arange(L)[:, None]
    j = np.arange(S)[None, :]
    if causal == "top_left":
        return j <= i
    if causal == "bottom_right":
        return j <= i + (S - L)
    return np.ones((L, S), dtype=bool)


def ref_attention(q, k, v, causal=None, scale=None, vis=None):
    """softmax(q kᵀ·scale + mask) v in float64 on (B, H, L, E) arrays, GQA by repeating heads;
    rows with no visible key give zeros and LSE -inf."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    H, Hk = q.shape[-3], k.shape[-3]
    k = np.repeat(k, H // Hk, axis=-3)
    v = np.repeat(v, H // Hk, axis=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    m = visible(q.shape[-2], k.shape[-2], causal) if vis is None else vis
    s = np.where(m, s, -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    p = np.exp(s - mx)
    den = p.sum(axis=-1, keepdims=True)
    o = (p @ v) / np.where(den > 0, den, 1.0)
    lse = np.where(den[..., 0] > 0, mx[..., 0] + np.log(np.where(den[..., 0] > 0, den[..., 0], 1)), -np.inf)
    return o, lse


def ref_linear_elu(q, k, v, causal=None, scale=None):
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    H, Hk = q.shape[-3], k.shape[-3]
    k = np.repeat(k, H // Hk, axis=-3)
    v = np.repeat(v, H // Hk, axis=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    phi = lambda x: np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0)))  # noqa: E731
    w = phi(q * math.sqrt(scale)) @ np.swapaxes(phi(k * math.sqrt(scale)), -1, -2)
    w = np.where(visible(q.shape[-2], k.shape[-2], causal), w, 0.0)
    den = w.sum(axis=-1, keepdims=True)
    return (w @ v) / np.where(den > 0, den, 1.0)


def rel_err(out, ref):
    out = np.asarray(out, dtype=np.float64)
    assert np.isfinite(out).all(), "non-finite output"
    return np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-300)


def rand(rng, shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def as_storage(x, dt):
    """(array to pass, its float values as stored, dtype argument) for a storage type."""
    if dt == "f32":
        return x, x.astype(np.float64), None
    if dt == "f16":
        h = x.astype(np.float16)
        return h, h.astype(np.float64), None
    bits = _api._f32_to_bf16_bits(x).reshape(x.shape)
    return bits, _api._bf16_bits_to_f32(bits).reshape(x.shape).astype(np.float64), "bf16"


def out_values(o, dt):
    if dt == "bf16" and o.dtype == np.uint16:
        return _api._bf16_bits_to_f32(o).reshape(o.shape)
    return np.asarray(o, dtype=np.float64)


# ---- numerics ------------------------------------------------------------------------------

SHAPES = [  # (B, H, Hk, L, S, E): odd sizes, L < S, L > S, GQA
    (1, 2, 1, 7, 33, 24),
    (2, 2, 2, 65, 20, 24),
    (1, 4, 2, 63, 63, 40),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [None, "bottom_right", "top_left"])
def test_attention_f32(shape, causal):
    B, H, Hk, L, S, E = shape
    rng = np.random.default_rng(hash((shape, causal)) & 0xFFFF)
    q, k, v = rand(rng, (B, H, L, E), -2, 2), rand(rng, (B, Hk, S, E)), rand(rng, (B, Hk, S, E))
    o, lse = clattn.attention(q, k, v, causal=causal, return_lse=True)
    ro, rl = ref_attention(q, k, v, causal)
    assert o.shape == q.shape and o.dtype == np.float32 and lse.shape == (B, H, L)
    assert rel_err(o, ro) <= TOL["f32"]
    fin = np.isfinite(rl)
    assert np.array_equal(np.isfinite(lse), fin)
    assert np.allclose(lse[fin], rl[fin], rtol=1e-5, atol=1e-5)
    assert (o[~np.broadcast_to(fin[..., None], o.shape)] == 0).all()


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_16bit(dt, causal):
    rng = np.random.default_rng(7)
    B, H, Hk, L, S, E = 1, 4, 2, 33, 50, 24
    x = [rand(rng, (B, H, L, E), -2, 2), rand(rng, (B, Hk, S, E)), rand(rng, (B, Hk, S, E))]
    st = [as_storage(a, dt) for a in x]
    if dt == "bf16":  # numpy has no bfloat16: bit patterns with dtype='bf16'
        o = clattn.attention(*[s[0] for s in st], dtype="bf16", causal="top_left" if causal else None)
        assert o.dtype == np.uint16
    else:
        o = clattn.scaled_dot_product_attention(*[s[0] for s in st], is_causal=causal, enable_gqa=True)
        assert o.dtype == np.float16
    ro, _ = ref_attention(*[s[1] for s in st], "top_left" if causal else None)
    assert rel_err(out_values(o, dt), ro) <= TOL[dt]


def test_ml_dtypes_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(31)
    x = [rand(rng, (1, 2, 17, 24)).astype(ml_dtypes.bfloat16) for _ in range(3)]
    o = clattn.scaled_dot_product_attention(*x, is_causal=True)
    assert o.dtype == ml_dtypes.bfloat16
    ro, _ = ref_attention(*[a.astype(np.float64) for a in x], "top_left")
    assert rel_err(o.astype(np.float64), ro) <= TOL["bf16"]
    o2 = clattn.attention(*[a.astype(np.float64) for a in x], dtype="bf16")  # converted on request
    assert o2.dtype == np.float64


def test_sdpa_is_top_left_and_scale():
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, (2, 3, 9, 16)), rand(rng, (2, 3, 4, 16)), rand(rng, (2, 3, 4, 16))
    o = clattn.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    assert rel_err(o, ref_attention(q, k, v, "top_left", 0.3)[0]) <= TOL["f32"]
    o3 = clattn.scaled_dot_product_attention(q[0], k[0], v[0])  # 3-D: (H, L, E)
    assert o3.shape == (3, 9, 16)
    assert rel_err(o3, ref_attention(q[:1], k[:1], v[:1])[0][0]) <= TOL["f32"]
    o2 = clattn.scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0])  # 2-D: (L, E)
    assert rel_err(o2, ref_attention(q[:1, :1], k[:1, :1], v[:1, :1])[0][0, 0]) <= TOL["f32"]


def test_non_contiguous_views():
    rng = np.random.default_rng(11)
    B, H, L, E = 2, 3, 21, 24
    bshd = [rand(rng, (B, L, H, E)) for _ in range(3)]
    views = [np.swapaxes(a, 1, 2) for a in bshd]  # BSHD memory viewed as BHSD
    assert not views[0].flags.c_contiguous
    o = clattn.scaled_dot_product_attention(*views, is_causal=True)
    assert rel_err(o, ref_attention(*views, "top_left")[0]) <= TOL["f32"]
    # Slices with an offset and a step, a padded head dim, negative strides.
    big = rand(rng, (B, H, 2 * L + 3, E + 8))
    qv = big[:, :, 3::2, 4:4 + E]
    kv = big[:, :, 1:L + 1, :E][:, :, ::-1]
    vv = np.broadcast_to(rand(rng, (1, 1, L, E)), (B, H, L, E))  # zero strides
    o = clattn.attention(qv, kv, vv, causal="bottom_right")
    assert rel_err(o, ref_attention(qv, kv, vv, "bottom_right")[0]) <= TOL["f32"]
    # More than 4 dimensions: leading dims merged (or copied explicitly when they cannot be).
    q5 = rand(rng, (2, 2, 3, 5, 8))
    o5 = clattn.scaled_dot_product_attention(q5, q5, q5)
    assert rel_err(o5, ref_attention(q5.reshape(4, 3, 5, 8), q5.reshape(4, 3, 5, 8),
                                     q5.reshape(4, 3, 5, 8))[0].reshape(q5.shape)) <= TOL["f32"]
    q5t = np.swapaxes(q5, 0, 1)
    o5t = clattn.scaled_dot_product_attention(q5t, q5t, q5t)
    assert rel_err(o5t, np.swapaxes(o5, 0, 1)) <= TOL["f32"]


def test_layout_bshd():
    rng = np.random.default_rng(5)
    q, k, v = rand(rng, (2, 17, 4, 16)), rand(rng, (2, 30, 2, 16)), rand(rng, (2, 30, 2, 16))
    o, lse = clattn.attention(q, k, v, layout="bshd", causal="top_left", return_lse=True)
    t = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731
    ro, rl = ref_attention(t(q), t(k), t(v), "top_left")
    assert o.shape == q.shape and rel_err(t(o), ro) <= TOL["f32"]
    assert np.allclose(lse, rl, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["flash", "naive"])
def test_algos_and_reuse(algo):
    rng = np.random.default_rng(9)
    q, k, v = rand(rng, (1, 2, 40, 32)), rand(rng, (1, 2, 40, 32)), rand(rng, (1, 2, 40, 32))
    for _ in range(3):  # cached plan, reused buffers
        o = clattn.attention(q, k, v, algo=algo, causal="top_left")
        assert rel_err(o, ref_attention(q, k, v, "top_left")[0]) <= TOL["f32"]


def test_copy_path_and_buffer_reuse():
    """The path of non-CPU devices (device buffers reused and grown, copies in and out), forced."""
    rng = np.random.default_rng(29)
    with clattn.Context() as ctx:
        ctx.is_cpu = False
        for L, S in ((9, 20), (30, 41), (5, 7)):
            k, v = rand(rng, (1, 1, S, 16)), rand(rng, (1, 1, S, 16))
            qv = np.swapaxes(rand(rng, (1, L, 2, 16)), 1, 2)
            o, lse = clattn.attention(qv, k, v, causal="top_left", return_lse=True, context=ctx)
            ro, rl = ref_attention(qv, k, v, "top_left")
            assert rel_err(o, ro) <= TOL["f32"] and np.allclose(lse, rl, rtol=1e-5, atol=1e-5)


def test_lowlevel_read_size_checked():
    ctx = clattn.default_context()
    buf = ctx.buffer(64)
    try:
        small = (ctypes.c_float * 8)()
        with pytest.raises(ValueError, match="64 bytes"):
            ctx.read(buf, small)
        ctx.read(buf, small, nbytes=32)
        ctx.read(buf, (ctypes.c_float * 16)())
    finally:
        ctx.release_buffer(buf)


@pytest.mark.parametrize("causal", [None, "bottom_right", "top_left"])
def test_linear(causal):
    rng = np.random.default_rng(13)
    q, k, v = rand(rng, (1, 2, 50, 16)), rand(rng, (1, 1, 30, 16)), rand(rng, (1, 1, 30, 16))
    o = clattn.attention(q, k, v, algo="linear", feature_map="elu", causal=causal)
    assert rel_err(o, ref_linear_elu(q, k, v, causal)) <= TOL["f32"]
    with pytest.raises(ValueError, match="log-sum-exp"):
        clattn.attention(q, k, v, algo="linear", return_lse=True)


def test_sparse_window():
    rng = np.random.default_rng(17)
    L, S, E = 40, 40, 16
    q, k, v = rand(rng, (1, 2, L, E)), rand(rng, (1, 2, S, E)), rand(rng, (1, 2, S, E))
    o = clattn.attention(q, k, v, mask={"pattern": "window", "window_left": 5, "window_right": 2})
    i, j = np.arange(L)[:, None], np.arange(S)[None, :]
    vis = (j >= i - 5) & (j <= i + 2)
    assert rel_err(o, ref_attention(q, k, v, vis=vis)[0]) <= TOL["f32"]
    with pytest.raises(ValueError, match="valid"):
        clattn.attention(q, k, v, mask={"pattern": "window", "window_lft": 5})


def test_float64_explicit_conversion():
    rng = np.random.default_rng(19)
    q, k, v = (rng.uniform(-1, 1, (1, 2, 9, 8)) for _ in range(3))
    with pytest.raises(TypeError, match="float64"):
        clattn.scaled_dot_product_attention(q, k, v)
    o = clattn.attention(q, k, v, dtype="float32")
    assert o.dtype == np.float64 and rel_err(o, ref_attention(q, k, v)[0]) <= 1e-5


# ---- errors --------------------------------------------------------------------------------

def test_bad_inputs():
    rng = np.random.default_rng(23)
    q, k, v = rand(rng, (1, 2, 9, 8)), rand(rng, (1, 2, 9, 8)), rand(rng, (1, 2, 9, 8))
    with pytest.raises(ValueError, match="^k: dtype"):
        clattn.attention(q, k.astype(np.float16), v)
    with pytest.raises(ValueError, match="^k: head dim"):
        clattn.attention(q, rand(rng, (1, 2, 9, 4)), v)
    with pytest.raises(ValueError, match="^v: sequence"):
        clattn.attention(q, k, rand(rng, (1, 2, 5, 8)))
    with pytest.raises(ValueError, match="^k: batch"):
        clattn.attention(q, rand(rng, (2, 2, 9, 8)), v)
    with pytest.raises(ValueError, match="enable_gqa"):
        clattn.scaled_dot_product_attention(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match="^k: 3 key/value heads"):
        clattn.attention(rand(rng, (1, 4, 9, 8)), rand(rng, (1, 3, 9, 8)), rand(rng, (1, 3, 9, 8)))
    with pytest.raises(ValueError, match="attn_mask and is_causal"):
        clattn.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((9, 9), bool), is_causal=True)
    with pytest.raises(ValueError, match="does not broadcast"):
        clattn.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((9, 8), bool))
    with pytest.raises(NotImplementedError, match="dropout"):
        clattn.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(NotImplementedError, match="value head dim"):
        clattn.attention(q, k, rand(rng, (1, 2, 9, 4)))
    with pytest.raises(ValueError, match="ambiguous"):
        clattn.attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="valid: .*top_left"):
        clattn.attention(q, k, v, causal="lower_right")
    with pytest.raises(ValueError, match="valid: auto, flash, linear, naive"):
        clattn.attention(q, k, v, algo="fast")
    with pytest.raises(TypeError, match="dtype='bf16'"):
        clattn.attention(q.view(np.uint16), k.view(np.uint16), v.view(np.uint16))
    with pytest.raises(TypeError, match="int32"):
        clattn.attention(q.view(np.int32), k, v)
    with pytest.raises(ValueError, match="head dim 300"):
        z = np.zeros((1, 1, 2, 300), np.float32)
        clattn.attention(z, z, z)
    with pytest.raises(TypeError, match="numpy array"):
        clattn.attention([1.0], k, v)


def test_names_and_desc():
    lib = clattn.library()
    for name in ("f32", "float32", "f16", "float16", "bf16", "bfloat16"):
        assert clattn.make_desc(lib, 1, 1, 4, 4, 8, dtype=name).dtype == clattn.DTYPES[name]
    with pytest.raises(ValueError, match="valid: .*bfloat16.*float32"):
        clattn.make_desc(lib, 1, 1, 4, 4, 8, dtype="float33")
    assert clattn.make_desc(lib, 1, 1, 4, 4, 8, mask="causal_top_left").mask == 7
    assert re.fullmatch(r"\d+\.\d+\.\d+", clattn.__version__)
    assert lib.lib.clattn_attention_desc_size() == ctypes.sizeof(clattn.Desc)


def test_struct_size_mismatch_refused(monkeypatch):
    class Bigger(ctypes.Structure):
        _fields_ = [("d", clattn.Desc), ("extra", ctypes.c_int64)]

    monkeypatch.setattr(_lowlevel, "Desc", Bigger)
    with pytest.raises(clattn.ClattnError, match="do not match"):
        clattn.Library()


def test_library_not_found(monkeypatch):
    monkeypatch.setattr(_lowlevel, "_candidates", lambda path: ["/nonexistent/libclattn.so"])
    with pytest.raises(clattn.ClattnError, match="CLATTN_LIBRARY"):
        clattn.Library()


# ---- lifetimes -----------------------------------------------------------------------------

def test_close_in_any_order():
    ctx = clattn.Context()
    d = clattn.make_desc(ctx.L, 1, 1, 8, 8, 16, mask="causal")
    plan = clattn.Plan(ctx, d)
    ctx.close()  # the plan still holds the C context: nothing freed under it
    assert "flash" in plan.describe()
    plan.close()  # now the C context goes (issue #13 item 9: was a heap-use-after-free)
    plan.close()
    ctx.close()
    with pytest.raises(clattn.ClattnError, match="closed"):
        clattn.Plan(ctx, d)
    with clattn.Context() as c2:
        # seq_q > 16: a prefill kernel (the decode kernel, seq_q <= 16, owns a workspace)
        with clattn.Plan(c2, clattn.make_desc(c2.L, 1, 1, 17, 17, 16, mask="causal")) as p2:
            assert p2.workspace_size() == 0
        q = np.ones((1, 1, 8, 16), np.float32)
        o = clattn.attention(q, q, q, context=c2)
        assert np.allclose(o, 1.0)
    q = np.ones((1, 1, 8, 16), np.float32)
    with pytest.raises(clattn.ClattnError, match="closed"):
        clattn.attention(q, q, q, context=c2)
    # The default context: closing it makes the next call create a new one.
    clattn.default_context().close()
    assert np.allclose(clattn.attention(q, q, q), 1.0)


def test_errors_from_the_library_are_value_errors():
    ctx = clattn.default_context()
    with pytest.raises(clattn.InvalidArgumentError, match="head_dim"):
        clattn.Plan(ctx, clattn.make_desc(ctx.L, 1, 1, 8, 8, 300))
    with pytest.raises(ValueError):
        clattn.Plan(ctx, clattn.make_desc(ctx.L, 1, 1, 8, 8, 300))


# ---- torch (when installed) ------------------------------------------------------------------

@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("dt", ["f32", "f16", "bf16"])
def test_torch_matches_sdpa(dt):
    import torch.nn.functional as F

    tdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dt]
    g = torch.Generator().manual_seed(0)
    q = torch.rand((2, 4, 13, 32), generator=g).to(tdt)
    k = torch.rand((2, 2, 29, 32), generator=g).to(tdt)
    v = torch.rand((2, 2, 29, 32), generator=g).to(tdt)
    for causal in (False, True):
        o = clattn.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        assert isinstance(o, torch.Tensor) and o.dtype == tdt and o.shape == q.shape
        r = F.scaled_dot_product_attention(q.double(), k.double().repeat_interleave(2, 1),
                                           v.double().repeat_interleave(2, 1), is_causal=causal)
        assert ((o.double() - r).norm() / r.norm()).item() <= TOL[dt]
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous view
    o2 = clattn.scaled_dot_product_attention(qt, k, v, enable_gqa=True)
    o1 = clattn.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert torch.equal(o1, o2)


# ---- the README's example -----------------------------------------------------------------

def test_readme_python_example():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    sec = text[text.index("## Python"):]
    code = re.search(r"```python\n(.*?)```", sec, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})


def _paged_reference(q, kp, vp, bt, lens, b, h, g):
    K = np.concatenate([kp[p] for p in bt[b]])[:lens[b]].astype(np.float64)
    V = np.concatenate([vp[p] for p in bt[b]])[:lens[b]].astype(np.float64)
    s = K[:, h // g, :] @ q[b, h, 0].astype(np.float64) / math.sqrt(q.shape[-1])
    m = s.max()
    w = np.exp(s - m)
    return (w @ V[:, h // g, :]) / w.sum(), m + math.log(w.sum())


@pytest.mark.parametrize("head_major", [False, True])
def test_paged_attention_and_merge(head_major):
    """clattn.paged_attention on a shuffled paged cache vs a float64 numpy reference; merge_states
    of a state with itself adds log 2 to the LSE and keeps the output."""
    rng = np.random.default_rng(7)
    B, Hq, Hk, d, ps, P = 2, 8, 2, 32, 16, 8
    lens = np.array([37, 5], dtype=np.int32)
    kp = rng.standard_normal((P, ps, Hk, d)).astype(np.float32)
    vp = rng.standard_normal((P, ps, Hk, d)).astype(np.float32)
    bt = np.array([[3, 0, 6], [5, 0, 0]], dtype=np.int32)
    q = rng.standard_normal((B, Hq, 1, d)).astype(np.float32)
    kq, vq = (kp.transpose(0, 2, 1, 3).copy(), vp.transpose(0, 2, 1, 3).copy()) if head_major else (kp, vp)
    o, lse = clattn.paged_attention(q, kq, vq, bt, lens, head_major=head_major, return_lse=True)
    for b in range(B):
        for h in range(Hq):
            ref, rl = _paged_reference(q, kp, vp, bt, lens, b, h, Hq // Hk)
            assert np.linalg.norm(o[b, h, 0] - ref) / np.linalg.norm(ref) < 1e-5
            assert abs(lse[b, h, 0] - rl) < 1e-5 * max(1, abs(rl))
    o2, l2 = clattn.merge_states([o, o], [lse, lse])
    assert np.abs(o2 - o).max() < 1e-5
    assert np.abs(l2 - (lse + math.log(2))).max() < 1e-5


@pytest.mark.parametrize("kv_dtype,kv_scale", [("int8", "token"), ("fp8e4m3", "channel"),
                                               ("fp8e5m2", "head")])
def test_paged_attention_quantized(kv_dtype, kv_scale):
    """clattn.paged_attention on a quantized cache (random codes and scales) vs the float64
    reference on clattn.dequantize_kv's values; bad scales and code types raise ValueError."""
    rng = np.random.default_rng(11)
    B, Hq, Hk, d, ps, P = 2, 8, 2, 32, 16, 8
    lens = np.array([37, 5], dtype=np.int32)
    bt = np.array([[3, 0, 6], [5, 0, 0]], dtype=np.int32)
    q = rng.standard_normal((B, Hq, 1, d)).astype(np.float32)
    if kv_dtype == "int8":
        kc = rng.integers(-127, 128, (P, ps, Hk, d)).astype(np.int8)
        vc = rng.integers(-127, 128, (P, ps, Hk, d)).astype(np.int8)
    else:  # finite codes only
        ok = np.isfinite(clattn.dequantize_kv(np.arange(256, dtype=np.uint8), kv_dtype))
        pool = np.arange(256, dtype=np.uint8)[ok]
        kc, vc = rng.choice(pool, (P, ps, Hk, d)), rng.choice(pool, (P, ps, Hk, d))
    shape = {"token": (P, ps, Hk, 1), "head": (1, 1, Hk, 1), "channel": (1, 1, Hk, d)}[kv_scale]
    qmax = {"int8": 127.0, "fp8e4m3": 448.0, "fp8e5m2": 57344.0}[kv_dtype]
    ks = (rng.uniform(0.5, 1.5, shape) / qmax).astype(np.float32)
    vs = (rng.uniform(0.5, 1.5, shape) / qmax).astype(np.float32)
    o = clattn.paged_attention(q, kc, vc, bt, lens, kv_dtype=kv_dtype, k_scale=ks, v_scale=vs,
                               kv_scale=kv_scale)
    kp, vp = clattn.dequantize_kv(kc, kv_dtype, ks), clattn.dequantize_kv(vc, kv_dtype, vs)
    for b in range(B):
        for h in range(Hq):
            ref, _ = _paged_reference(q, kp, vp, bt, lens, b, h, Hq // Hk)
            assert np.linalg.norm(o[b, h, 0] - ref) / np.linalg.norm(ref) < 1e-5
    with pytest.raises(ValueError, match="k_scale"):
        clattn.paged_attention(q, kc, vc, bt, lens, kv_dtype=kv_dtype, k_scale=ks[..., :1][:1],
                               v_scale=vs, kv_scale=kv_scale) if kv_scale == "channel" else \
            clattn.paged_attention(q, kc, vc, bt, lens, kv_dtype=kv_dtype, v_scale=vs,
                                   kv_scale=kv_scale)
    with pytest.raises(ValueError, match="k_pages"):
        clattn.paged_attention(q, kc.astype(np.float32), vc, bt, lens, kv_dtype=kv_dtype,
                               k_scale=ks, v_scale=vs, kv_scale=kv_scale)


def test_varlen_attention():
    """clattn.varlen_attention (ragged prefill, lengths 0, 1, 17, 40; causal bottom-right) vs
    numpy per sequence; a query row without keys gets zeros and LSE -inf."""
    rng = np.random.default_rng(3)
    Hq, Hk, d = 4, 2, 16
    nq, nk = [0, 1, 17, 40], [3, 0, 17, 60]
    cq = np.concatenate([[0], np.cumsum(nq)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(nk)]).astype(np.int32)
    q = rng.standard_normal((cq[-1], Hq, d)).astype(np.float32)
    k = rng.standard_normal((ck[-1], Hk, d)).astype(np.float32)
    v = rng.standard_normal((ck[-1], Hk, d)).astype(np.float32)
    o, lse = clattn.varlen_attention(q, k, v, cq, ck, causal=True, return_lse=True)
    for b in range(4):
        for i in range(nq[b]):
            for h in range(Hq):
                row = cq[b] + i
                vis = min(max(i + nk[b] - nq[b] + 1, 0), nk[b])
                if vis == 0:
                    assert np.all(o[row, h] == 0) and np.isneginf(lse[row, h])
                    continue
                K = k[ck[b]:ck[b] + vis, h // 2].astype(np.float64)
                V = v[ck[b]:ck[b] + vis, h // 2].astype(np.float64)
                s = K @ q[row, h].astype(np.float64) / math.sqrt(d)
                w = np.exp(s - s.max())
                ref = w @ V / w.sum()
                assert np.abs(o[row, h] - ref).max() < 1e-5
                assert abs(lse[row, h] - (s.max() + math.log(w.sum()))) < 1e-5


def test_user_functions():
    """score_mod / mask_mod as OpenCL C: a document mask read from `user` and an ALiBi score
    function against numpy; a compile error is a ValueError naming the field."""
    rng = np.random.default_rng(6)
    H, L, S, E = 4, 29, 41, 16
    q, k, v = rand(rng, (2, H, L, E)), rand(rng, (2, H, S, E)), rand(rng, (2, H, S, E))
    docs = np.sort(rng.integers(0, 4, size=(2, S))).astype(np.int32)  # key documents per batch
    qdocs = docs[:, S - L:]                                             # query i sits at key i + S - L
    user = np.concatenate([np.array([S], np.int32), docs.ravel()])
    mask_mod = f"""
    int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {{
      __global const int *u = (__global const int *)user;
      const int s = u[0];
      return u[1 + b * s + q_idx + {S - L}] == u[1 + b * s + kv_idx] && kv_idx <= q_idx + {S - L};
    }}"""
    vis = (qdocs[:, None, :, None] == docs[:, None, None, :]) & visible(L, S, "bottom_right")
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(E)
    s = np.where(vis, s, -np.inf)
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    ref = (w @ v) / w.sum(axis=-1, keepdims=True)
    o = clattn.attention(q, k, v, mask_mod=mask_mod, user=user)
    assert rel_err(o, ref) <= TOL["f32"]
    # the same mask again with other documents: the block classes follow the buffer
    docs2 = docs[:, ::-1].copy()
    user2 = np.concatenate([np.array([S], np.int32), docs2.ravel()])
    vis2 = (docs2[:, S - L:][:, None, :, None] == docs2[:, None, None, :]) & visible(L, S, "bottom_right")
    s2 = np.where(vis2, q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(E), -np.inf)
    w2 = np.exp(s2 - s2.max(axis=-1, keepdims=True))
    assert rel_err(clattn.attention(q, k, v, mask_mod=mask_mod, user=user2),
                   (w2 @ v) / w2.sum(axis=-1, keepdims=True)) <= TOL["f32"]
    # ALiBi as a score function equals the built-in
    score_mod = """
    float clattn_score_mod(float s, int b, int h, int q_idx, int kv_idx, __global const uchar *u) {
      const float slope = exp2(-8.0f * (float)(h + 1) / 4.0f);
      return s - slope * (float)abs(q_idx + %d - kv_idx);
    }""" % (S - L)
    a = clattn.attention(q, k, v, score_mod=score_mod)
    b = clattn.attention(q, k, v, alibi_max_bias=8.0)
    assert rel_err(a, b) <= TOL["f32"]
    with pytest.raises(ValueError, match="score_mod"):
        clattn.attention(q, k, v, score_mod="float clattn_score_mod(float s) { return s +; }")
    with pytest.raises(ValueError, match="user"):
        clattn.attention(q, k, v, user=user)


def test_sinks():
    """attention sinks against numpy: a per-head logit in the denominator; rows that see no key
    (causal top-left with L > S) give zeros and LSE = the sink."""
    rng = np.random.default_rng(8)
    H, L, S, E = 4, 23, 17, 16
    q, k, v = rand(rng, (1, H, L, E)), rand(rng, (1, H, S, E)), rand(rng, (1, H, S, E))
    sinks = np.array([-1.0, 0.0, 1.5, 6.0], np.float32)
    for causal in (None, "bottom_right"):
        s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(E)
        s = np.where(visible(L, S, causal), s, -np.inf)
        z = sinks.astype(np.float64)[None, :, None, None]
        mx = np.maximum(s.max(axis=-1, keepdims=True), z)
        w = np.exp(s - mx)
        den = w.sum(axis=-1, keepdims=True) + np.exp(z - mx)
        ref, ref_lse = (w @ v) / den, (mx + np.log(den))[..., 0]
        o, lse = clattn.attention(q, k, v, causal=causal, sinks=sinks, return_lse=True)
        assert rel_err(o, ref) <= TOL["f32"], causal
        assert np.max(np.abs(lse - ref_lse)) <= 1e-4, causal
    with pytest.raises(ValueError, match="sinks"):
        clattn.attention(q, k, v, sinks=sinks[:3])


def test_sdpa_attn_mask():
    """attn_mask with PyTorch's semantics: a bool mask (True = attend) broadcast over batch and
    heads, a float bias per head, a float16 bias with -inf, rows that attend nothing (zeros)."""
    rng = np.random.default_rng(9)
    B, H, L, S, E = 2, 3, 19, 33, 16
    q, k, v = rand(rng, (B, H, L, E)), rand(rng, (B, H, S, E)), rand(rng, (B, H, S, E))
    s0 = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(E)

    def ref(bias):
        s = s0 + bias
        mx = np.max(np.where(np.isfinite(s), s, -1e300), axis=-1, keepdims=True)
        w = np.where(np.isfinite(s), np.exp(s - mx), 0.0)
        den = w.sum(axis=-1, keepdims=True)
        return np.where(den > 0, (w @ v) / np.where(den > 0, den, 1), 0.0)

    keep = rng.random((L, S)) < 0.6
    keep[4] = False  # a row that attends nothing: zeros
    o = clattn.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert rel_err(o, ref(np.where(keep, 0.0, -np.inf))) <= TOL["f32"]
    bias = rng.standard_normal((H, 1, S)).astype(np.float32)  # per head and key
    o = clattn.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert rel_err(o, ref(bias.astype(np.float64))) <= TOL["f32"]
    b16 = rng.standard_normal((B, 1, L, S)).astype(np.float16)
    b16[..., ::5] = -np.inf
    o = clattn.scaled_dot_product_attention(q, k, v, attn_mask=b16)
    assert rel_err(o, ref(b16.astype(np.float64))) <= TOL["f32"]


def test_softcap_and_alibi():
    """softcap and ALiBi against numpy: s = c·tanh(s/c) - slope_h·|p - j| (BLOOM's slopes for
    max bias 8 at 8 heads: 2^-1 .. 2^-8), p aligned as the causal mask."""
    rng = np.random.default_rng(5)
    H, L, S, E = 8, 37, 50, 32
    q, k, v = rand(rng, (2, H, L, E)), rand(rng, (2, 2, S, E)), rand(rng, (2, 2, S, E))
    slopes = 2.0 ** -(np.arange(1, H + 1) * 8.0 / H)
    for causal in (None, "bottom_right", "top_left"):
        kk, vv = np.repeat(k, H // 2, axis=1), np.repeat(v, H // 2, axis=1)
        s = q.astype(np.float64) @ np.swapaxes(kk, -1, -2) * 0.5
        s = 3.0 * np.tanh(s / 3.0)
        p = np.arange(L)[:, None] + (0 if causal == "top_left" else S - L)
        s = s - slopes[None, :, None, None] * np.abs(p - np.arange(S)[None, :])
        s = np.where(visible(L, S, causal), s, -np.inf)
        w = np.exp(s - s.max(axis=-1, keepdims=True))
        ref = (w @ vv) / w.sum(axis=-1, keepdims=True)
        o = clattn.attention(q, k, v, causal=causal, scale=0.5, softcap=3.0, alibi_max_bias=8.0)
        assert rel_err(o, ref) <= TOL["f32"], causal
    with pytest.raises(ValueError, match="softcap"):
        clattn.attention(q, k, v, softcap=-1.0)


# ---- the backward ---------------------------------------------------------------------------

def ref_attention_backward(q, k, v, dout, causal=None, scale=None):
    """(dq, dk, dv) of sum(dout · attention) in float64 on (B, H, L, E) arrays; GQA gradients summed
    over each KV head's query heads; rows with no visible key give zero gradients."""
    q, k, v, dout = (np.asarray(x, dtype=np.float64) for x in (q, k, v, dout))
    H, Hk = q.shape[-3], k.shape[-3]
    g = H // Hk
    kk, vv = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.where(visible(q.shape[-2], k.shape[-2], causal), q @ np.swapaxes(kk, -1, -2) * scale,
                 -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(mx), mx, 0.0))
    den = p.sum(axis=-1, keepdims=True)
    p = p / np.where(den > 0, den, 1.0)
    dp = dout @ np.swapaxes(vv, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = ds @ kk * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dv = np.swapaxes(p, -1, -2) @ dout
    fold = lambda x: x.reshape(x.shape[:-3] + (Hk, g) + x.shape[-2:]).sum(axis=-3)  # noqa: E731
    return dq, fold(dk), fold(dv)


@pytest.mark.parametrize("dt", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("causal", [None, "bottom_right", "top_left"])
def test_attention_backward(dt, causal):
    """clattn.attention_backward against the float64 gradients: GQA, seq_q != seq_kv, a
    non-contiguous q view; the forward recomputed or given (out, lse), results equal bitwise."""
    B, H, Hk, L, S, E = 2, 4, 2, 37, 50, 24
    rng = np.random.default_rng(7 + len(dt) + (0 if causal is None else len(causal)))
    qf = rand(rng, (B, L, H, E), -2, 2).transpose(0, 2, 1, 3)  # a BSHD buffer viewed as BHSD
    kf, vf, df = rand(rng, (B, Hk, S, E)), rand(rng, (B, Hk, S, E)), rand(rng, (B, H, L, E))
    (q, qv, dtype), (k, kv_, _), (v, vv, _), (d, dv_, _) = (as_storage(x, dt) for x in (qf, kf, vf, df))
    if dt != "f32":
        q = q.transpose(0, 1, 2, 3)  # as_storage copied: make the view non-contiguous again
        q = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    grads = clattn.attention_backward(d, q, k, v, causal=causal, dtype=dtype)
    ref = ref_attention_backward(qv, kv_, vv, dv_, causal)
    for g, r, name, shp in zip(grads, ref, "qkv", (q.shape, k.shape, v.shape)):
        assert g.shape == shp, name
        err = rel_err(out_values(g, dt), r)
        assert err < 10 * TOL[dt], f"d{name} {dt} {causal}: rel err {err}"
    o, lse = clattn.attention(q, k, v, causal=causal, dtype=dtype, return_lse=True)
    again = clattn.attention_backward(d, q, k, v, out=o, lse=lse, causal=causal, dtype=dtype)
    for a, b in zip(grads, again):
        assert np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def test_attention_backward_errors():
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, (1, 2, 8, 16)), rand(rng, (1, 2, 9, 16)), rand(rng, (1, 2, 9, 16))
    with pytest.raises(ValueError, match="dout: shape"):
        clattn.attention_backward(rand(rng, (1, 2, 9, 16)), q, k, v)
    with pytest.raises(ValueError, match="out and lse"):
        clattn.attention_backward(rand(rng, (1, 2, 8, 16)), q, k, v, out=q)
    with pytest.raises(ValueError, match="dout: dtype"):
        clattn.attention_backward(rand(rng, (1, 2, 8, 16)).astype(np.float16), q, k, v)


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_attention_backward_torch():
    """torch CPU tensors in, torch tensors out; equal to torch.autograd through PyTorch's SDPA
    (top-left causal, GQA)."""
    g = torch.Generator().manual_seed(5)
    q = torch.rand(1, 4, 20, 16, generator=g) * 2 - 1
    k = torch.rand(1, 2, 31, 16, generator=g) * 2 - 1
    v = torch.rand(1, 2, 31, 16, generator=g) * 2 - 1
    dout = torch.rand(1, 4, 20, 16, generator=g) - 0.5
    dq, dk, dv = clattn.attention_backward(dout, q, k, v, causal="top_left")
    assert isinstance(dq, torch.Tensor) and dq.shape == q.shape
    qq, kk, vv = (x.clone().double().requires_grad_() for x in (q, k, v))
    o = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)
    o.backward(dout.double())
    for a, b in ((dq, qq.grad), (dk, kk.grad), (dv, vv.grad)):
        assert torch.linalg.norm(a.double() - b) / torch.linalg.norm(b) < 1e-4


def test_attention_backward_modifiers_by_finite_differences():
    """softcap, ALiBi and sinks in the backward: entries of dq, dk, dv against central differences of
    sum(dout · attention) through clattn.attention itself (f32)."""
    rng = np.random.default_rng(11)
    B, H, Hk, L, S, E = 1, 4, 2, 12, 17, 16
    q, k, v = rand(rng, (B, H, L, E), -2, 2), rand(rng, (B, Hk, S, E)), rand(rng, (B, Hk, S, E))
    dout = rand(rng, (B, H, L, E))
    kw = dict(causal="bottom_right", softcap=3.0, alibi_max_bias=4.0, sinks=[0.5, -1.0, 1.0, 0.0])
    grads = clattn.attention_backward(dout, q, k, v, **kw)
    loss = lambda a, b, c: float((clattn.attention(a, b, c, **kw).astype(np.float64) * dout).sum())  # noqa: E731
    eps = 1e-2
    for t, (x, gx) in enumerate(zip((q, k, v), grads)):
        for _ in range(5):
            idx = tuple(int(rng.integers(n)) for n in x.shape)
            xs = [q, k, v]
            plus, minus = x.copy(), x.copy()
            plus[idx] += eps
            minus[idx] -= eps
            xs[t] = plus
            lp = loss(*xs)
            xs[t] = minus
            lm = loss(*xs)
            fd = (lp - lm) / (2 * eps)
            assert abs(fd - gx[idx]) < 2e-3 + 2e-2 * abs(fd), f"d{'qkv'[t]}{idx}: {gx[idx]} vs {fd}"
