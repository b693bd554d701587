"""clattn.py — thin ctypes binding of libclattn (context, plan, execute, reference) plus the OpenCL buffer calls it needs."""
import ctypes
import ctypes.util
import os

c_int, c_size_t, c_double, c_void_p, c_char_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_double, ctypes.c_void_p, ctypes.c_char_p
c_int64, c_uint64, c_uint = ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint

DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
LAYOUTS = {"bhsd": 0, "bshd": 1, "strided": 2}
MASKS = {"none": 0, "causal": 1}
ALGOS = {"auto": 0, "flash": 1, "naive": 2, "linear": 3}
FEATURES = {"elu": 0, "relu": 1, "favor": 2}


class Strides(ctypes.Structure):
    _fields_ = [("batch", c_int64), ("head", c_int64), ("seq", c_int64), ("dim", c_int64)]


class SparseDesc(ctypes.Structure):
    _fields_ = [("window_left", c_int), ("window_right", c_int), ("num_global", c_int),
                ("global_tokens", ctypes.POINTER(c_int)), ("num_global_tokens", c_int),
                ("dilation", c_int), ("stride", c_int), ("block_size", c_int),
                ("window_blocks", c_int), ("global_blocks", c_int), ("random_blocks", c_int),
                ("seed", c_uint64), ("layout_rows", c_int),
                ("layout_row_offsets", ctypes.POINTER(c_int)), ("layout_cols", ctypes.POINTER(c_int)),
                ("causal", c_int), ("element_window", c_int)]


class Desc(ctypes.Structure):
    _fields_ = [("batch", c_int), ("heads", c_int), ("kv_heads", c_int), ("seq_q", c_int),
                ("seq_kv", c_int), ("head_dim", c_int), ("dtype", c_int), ("layout", c_int),
                ("q_strides", Strides), ("k_strides", Strides), ("v_strides", Strides),
                ("o_strides", Strides), ("scale", c_double), ("mask", c_int), ("algo", c_int),
                ("sparse", SparseDesc), ("feature_map", c_int), ("num_features", c_int),
                ("feature_seed", c_uint64)]


class ClattnError(RuntimeError):
    pass


def _ptr_len(arr):
    """(address, bytes) of a numpy array or a ctypes array."""
    if hasattr(arr, "__array_interface__"):
        return arr.ctypes.data, arr.nbytes
    return ctypes.addressof(arr), ctypes.sizeof(arr)


def _load(path=None):
    cands = [path, os.environ.get("CLATTN_LIB"),
             os.path.join(os.path.dirname(__file__), "..", "build", "libclattn.so"),
             ctypes.util.find_library("clattn")]
    for c in cands:
        if c and (os.path.exists(c) or not os.path.dirname(c)):
            try:
                return ctypes.CDLL(c)
            except OSError:
                continue
    raise ClattnError("libclattn not found (set CLATTN_LIB)")


class Library:
    """The shared library and libOpenCL, with argument types declared."""

    def __init__(self, path=None):
        L = self.lib = _load(path)
        self.cl = ctypes.CDLL(ctypes.util.find_library("OpenCL") or "libOpenCL.so.1")
        L.clattn_status_string.restype = c_char_p
        L.clattn_version_string.restype = c_char_p
        L.clattn_last_create_error.restype = c_char_p
        L.clattn_context_last_error.restype = c_char_p
        L.clattn_context_last_error.argtypes = [c_void_p]
        L.clattn_context_device_name.restype = c_char_p
        L.clattn_context_device_name.argtypes = [c_void_p]
        L.clattn_context_create.argtypes = [c_char_p, ctypes.POINTER(c_void_p)]
        for f in ("clattn_context_queue", "clattn_context_cl_context", "clattn_context_device"):
            getattr(L, f).restype = c_void_p
            getattr(L, f).argtypes = [c_void_p]
        L.clattn_context_release.argtypes = [c_void_p]
        L.clattn_attention_desc_init.argtypes = [ctypes.POINTER(Desc)]
        L.clattn_plan_create.argtypes = [c_void_p, ctypes.POINTER(Desc), c_uint, ctypes.POINTER(c_void_p)]
        L.clattn_plan_execute.argtypes = [c_void_p] + [c_void_p] * 5 + [c_uint, c_void_p, ctypes.POINTER(c_void_p)]
        L.clattn_plan_describe.restype = c_char_p
        L.clattn_plan_describe.argtypes = [c_void_p]
        L.clattn_plan_estimate.argtypes = [c_void_p, ctypes.POINTER(Desc), ctypes.POINTER(c_size_t)]
        L.clattn_plan_workspace_size.restype = c_size_t
        L.clattn_plan_workspace_size.argtypes = [c_void_p]
        L.clattn_plan_release.argtypes = [c_void_p]
        L.clattn_reference_attention.argtypes = [ctypes.POINTER(Desc), c_void_p, c_void_p, c_void_p,
                                                 c_void_p, c_void_p, c_void_p, c_int]
        cl = self.cl
        cl.clCreateBuffer.restype = c_void_p
        cl.clCreateBuffer.argtypes = [c_void_p, ctypes.c_uint64, c_size_t, c_void_p, ctypes.POINTER(c_int)]
        cl.clEnqueueWriteBuffer.argtypes = [c_void_p, c_void_p, c_uint, c_size_t, c_size_t, c_void_p, c_uint, c_void_p, c_void_p]
        cl.clEnqueueReadBuffer.argtypes = cl.clEnqueueWriteBuffer.argtypes
        cl.clReleaseMemObject.argtypes = [c_void_p]
        cl.clFinish.argtypes = [c_void_p]
        cl.clWaitForEvents.argtypes = [c_uint, ctypes.POINTER(c_void_p)]
        cl.clReleaseEvent.argtypes = [c_void_p]
        cl.clEnqueueMarkerWithWaitList.argtypes = [c_void_p, c_uint, c_void_p, ctypes.POINTER(c_void_p)]
        cl.clGetEventProfilingInfo.argtypes = [c_void_p, c_uint, c_size_t, c_void_p, c_void_p]

    def version(self):
        return self.lib.clattn_version_string().decode()


class Context:
    def __init__(self, lib, selector=None):
        self.L = lib
        h = c_void_p()
        st = lib.lib.clattn_context_create(selector.encode() if selector else None, ctypes.byref(h))
        if st != 0:
            raise ClattnError(lib.lib.clattn_last_create_error().decode())
        self.h = h
        self.queue = lib.lib.clattn_context_queue(h)
        self.clctx = lib.lib.clattn_context_cl_context(h)

    @property
    def device(self):
        return self.L.lib.clattn_context_device_name(self.h).decode()

    def error(self):
        return self.L.lib.clattn_context_last_error(self.h).decode()

    def buffer(self, nbytes, host=None):
        """A read-write device buffer of nbytes, filled from `host` if given."""
        err = c_int()
        b = self.L.cl.clCreateBuffer(self.clctx, 1 << 0, nbytes, None, ctypes.byref(err))  # READ_WRITE
        if not b:
            raise ClattnError(f"clCreateBuffer({nbytes}) failed with {err.value}")
        if host is not None:
            self.write(b, host)
        return b

    def write(self, buf, arr):
        ptr, n = _ptr_len(arr)
        st = self.L.cl.clEnqueueWriteBuffer(self.queue, buf, 1, 0, n, ptr, 0, None, None)
        if st:
            raise ClattnError(f"clEnqueueWriteBuffer failed with {st}")

    def read(self, buf, arr):
        ptr, n = _ptr_len(arr)
        st = self.L.cl.clEnqueueReadBuffer(self.queue, buf, 1, 0, n, ptr, 0, None, None)
        if st:
            raise ClattnError(f"clEnqueueReadBuffer failed with {st}")

    def release_buffer(self, buf):
        self.L.cl.clReleaseMemObject(buf)

    def estimate(self, desc):
        """Device workspace bytes a plan for `desc` would own (clattn_plan_estimate: sized,
        nothing compiled or allocated). Raises ClattnError when the family refuses it."""
        n = c_size_t()
        st = self.L.lib.clattn_plan_estimate(self.h, ctypes.byref(desc), ctypes.byref(n))
        if st != 0:
            raise ClattnError(f"{self.L.lib.clattn_status_string(st).decode()}: {self.error()}")
        return n.value

    def close(self):
        if self.h:
            self.L.lib.clattn_context_release(self.h)
            self.h = None


def make_desc(lib, batch, heads, seq_q, seq_kv, head_dim, dtype="f32", mask="none", algo="auto",
              kv_heads=0, layout="bhsd", scale=0.0):
    d = Desc()
    lib.lib.clattn_attention_desc_init(ctypes.byref(d))
    d.batch, d.heads, d.kv_heads, d.seq_q, d.seq_kv, d.head_dim = batch, heads, kv_heads, seq_q, seq_kv, head_dim
    d.dtype, d.layout, d.mask, d.algo, d.scale = DTYPES[dtype], LAYOUTS[layout], MASKS[mask], ALGOS[algo], scale
    return d


class Plan:
    def __init__(self, ctx, desc, flags=0):
        self.ctx, self.desc = ctx, desc
        h = c_void_p()
        st = ctx.L.lib.clattn_plan_create(ctx.h, ctypes.byref(desc), flags, ctypes.byref(h))
        if st != 0:
            raise ClattnError(f"{ctx.L.lib.clattn_status_string(st).decode()}: {ctx.error()}")
        self.h = h

    def describe(self):
        return self.ctx.L.lib.clattn_plan_describe(self.h).decode()

    def execute(self, q, k, v, o, lse=None, event=False):
        ev = c_void_p()
        st = self.ctx.L.lib.clattn_plan_execute(self.h, q, k, v, o, lse, 0, None, ctypes.byref(ev) if event else None)
        if st != 0:
            raise ClattnError(self.ctx.error())
        return ev if event else None

    def time_ms(self, q, k, v, o, reps=20, warmup=3):
        """Median over `reps` runs, each END(plan's event) - END(marker before it), in ms."""
        cl = self.ctx.L.cl
        for _ in range(warmup):
            self.execute(q, k, v, o)
        cl.clFinish(self.ctx.queue)
        times = []
        for _ in range(reps):
            m = c_void_p()
            cl.clEnqueueMarkerWithWaitList(self.ctx.queue, 0, None, ctypes.byref(m))
            ev = self.execute(q, k, v, o, event=True)
            cl.clWaitForEvents(1, ctypes.byref(ev))
            a, b = ctypes.c_uint64(), ctypes.c_uint64()
            cl.clGetEventProfilingInfo(m, 0x1283, 8, ctypes.byref(a), None)  # CL_PROFILING_COMMAND_END
            cl.clGetEventProfilingInfo(ev, 0x1283, 8, ctypes.byref(b), None)
            times.append((b.value - a.value) * 1e-6)
            cl.clReleaseEvent(m)
            cl.clReleaseEvent(ev)
        times.sort()
        return times[len(times) // 2]

    def close(self):
        if self.h:
            self.ctx.L.lib.clattn_plan_release(self.h)
            self.h = None
