"""_lowlevel.py — ctypes layer of libclattn: loading, the descriptor structs, name tables, Context / Plan objects and OpenCL buffers."""
import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict

c_int, c_size_t, c_double, c_void_p, c_char_p = (ctypes.c_int, ctypes.c_size_t, ctypes.c_double,
                                                 ctypes.c_void_p, ctypes.c_char_p)
c_int64, c_uint64, c_uint = ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint

# Names accepted for each enum of include/clattn.h. The library's own names
# (clattn_dtype_name() and friends, one X-macro table in src/core/names.c)
# are added when the library is loaded (_sync_names); these are the extra
# spellings the binding accepts besides them.
DTYPES = {"float32": 0, "float16": 1, "half": 1, "bfloat16": 2}
LAYOUTS = {}
MASKS = {"causal_bottom_right": 1, "bottom_right": 1, "top_left": 7}
ALGOS = {}
FEATURES = {"elu1": 0, "elu+1": 0, "favor+": 2}
DTYPE_NAMES = {}
DTYPE_SIZES = {0: 4, 1: 2, 2: 2}

# OpenCL constants used here.
CL_MEM_READ_WRITE, CL_MEM_WRITE_ONLY, CL_MEM_READ_ONLY, CL_MEM_USE_HOST_PTR = 1, 2, 4, 8
CL_MAP_READ = 1
CL_DEVICE_TYPE, CL_DEVICE_TYPE_CPU = 0x1000, 2
CL_MEM_SIZE = 0x1102

STATUS_NAMES = {}  # clattn_status_string() of each status, filled by _sync_names
KV_DTYPES = {}  # quantized K/V storage: "same", "int8", "fp8e4m3", "fp8e5m2" (filled by _sync_names)
KV_SCALES = {}  # their scale granularity: "token", "tensor", "head", "channel"


def _sync_names(L):
    """Adds the library's names of every enum value (and its status strings) to the tables."""
    for fn, table in (("clattn_dtype_name", DTYPES), ("clattn_layout_name", LAYOUTS),
                      ("clattn_mask_name", MASKS), ("clattn_algo_name", ALGOS),
                      ("clattn_feature_map_name", FEATURES), ("clattn_kv_dtype_name", KV_DTYPES),
                      ("clattn_kv_scale_name", KV_SCALES)):
        f = getattr(L, fn)
        f.restype = c_char_p
        f.argtypes = [c_int]
        for v in range(32):
            name = f(v).decode()
            if name != "?":
                table[name] = v
                if table is DTYPES:
                    DTYPE_NAMES[v] = name
    L.clattn_status_string.restype = c_char_p
    L.clattn_status_string.argtypes = [c_int]
    for v in range(0, -32, -1):
        STATUS_NAMES[v] = L.clattn_status_string(v).decode()


class ClattnError(RuntimeError):
    """A libclattn call failed; .status holds the clattn_status code."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


class InvalidArgumentError(ClattnError, ValueError):
    """CLATTN_ERROR_INVALID_ARGUMENT: the message names the field."""


class UnsupportedError(ClattnError, NotImplementedError):
    """CLATTN_ERROR_UNSUPPORTED: a valid request this library or device cannot serve."""


def _error(status, msg):
    cls = {-1: InvalidArgumentError, -2: UnsupportedError}.get(status, ClattnError)
    return cls(f"{STATUS_NAMES.get(status, 'status %d' % status)}: {msg}", status)


def lookup(table, name, what):
    """table[name] for a case-insensitive name (ints pass through); ValueError listing the valid names."""
    if not STATUS_NAMES:  # the library's names are not loaded yet
        _sync_names(_load(None))
    if isinstance(name, int) and not isinstance(name, bool) and name in table.values():
        return name
    key = str(name).lower().replace("-", "_") if isinstance(name, str) else None
    if key in table:
        return table[key]
    raise ValueError(f"{what}: unknown value {name!r}; valid: {', '.join(sorted(table))}")


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
    """clattn_attention_desc (checked against clattn_attention_desc_size() at load)."""
    _fields_ = [("batch", c_int), ("heads", c_int), ("kv_heads", c_int), ("seq_q", c_int),
                ("seq_kv", c_int), ("head_dim", c_int), ("dtype", c_int), ("layout", c_int),
                ("q_strides", Strides), ("k_strides", Strides), ("v_strides", Strides),
                ("o_strides", Strides), ("scale", c_double), ("mask", c_int), ("algo", c_int),
                ("sparse", SparseDesc), ("feature_map", c_int), ("num_features", c_int),
                ("feature_seed", c_uint64),
                # inference: KV layout, pages, ragged rows (clattn.h)
                ("kv_layout", c_int), ("page_size", c_int), ("num_pages", c_int),
                ("max_pages_per_seq", c_int), ("ragged", c_int), ("total_q", c_int),
                ("total_kv", c_int), ("softcap", c_double), ("alibi_max_bias", c_double),
                # user functions: OpenCL C source (the plan copies it)
                ("score_mod", ctypes.c_char_p), ("mask_mod", ctypes.c_char_p),
                ("sinks", ctypes.POINTER(ctypes.c_float)),
                ("bias_type", c_int), ("bias_strides", Strides),
                ("kv_dtype", c_int), ("kv_scale", c_int)]


class ExecArgs(ctypes.Structure):
    """clattn_exec_args (clattn_plan_execute_ex)."""
    _fields_ = [(n, c_void_p) for n in ("q", "k", "v", "o", "lse", "cu_seqlens_q", "cu_seqlens_kv",
                                        "seqlens_kv", "block_table", "user", "bias", "k_scale",
                                        "v_scale")]


def _ptr_len(arr):
    """(address, bytes) of a numpy array or a ctypes array."""
    if hasattr(arr, "__array_interface__"):
        return arr.ctypes.data, arr.nbytes
    return ctypes.addressof(arr), ctypes.sizeof(arr)


def _candidates(path):
    here = os.path.dirname(os.path.abspath(__file__))
    try:  # written by python/setup.py when installed with pip: the checkout it came from
        from ._checkout import ROOT as checkout
    except ImportError:
        checkout = None
    return [path, os.environ.get("CLATTN_LIBRARY"), os.environ.get("CLATTN_LIB"),
            os.path.join(here, "..", "..", "build", "libclattn.so"),  # python/clattn/ of a checkout
            os.path.join(checkout, "build", "libclattn.so") if checkout else None,
            ctypes.util.find_library("clattn"), "libclattn.so.0", "libclattn.so"]


def _load(path=None):
    tried = []
    for c in _candidates(path):
        if not c or c in tried:
            continue
        tried.append(c)
        if os.path.dirname(c) and not os.path.exists(c):
            continue
        try:
            return ctypes.CDLL(c)
        except OSError:
            continue
    raise ClattnError("libclattn not found (tried: " + ", ".join(tried) + "); build it "
                      "(cmake --build build) or set CLATTN_LIBRARY to the path of libclattn.so")


class Library:
    """The shared library and libOpenCL, with argument types declared."""

    def __init__(self, path=None):
        L = self.lib = _load(path)
        self.cl = ctypes.CDLL(ctypes.util.find_library("OpenCL") or "libOpenCL.so.1")
        if not hasattr(L, "clattn_attention_desc_size"):
            raise ClattnError(f"{L._name}: no clattn_attention_desc_size(): the library is older "
                              "than this binding; rebuild it")
        L.clattn_attention_desc_size.restype = c_size_t
        L.clattn_attention_desc_size.argtypes = []
        n = L.clattn_attention_desc_size()
        if n != ctypes.sizeof(Desc):
            raise ClattnError(f"{L._name}: clattn_attention_desc is {n} bytes in the library but "
                              f"{ctypes.sizeof(Desc)} in this binding: the binding and the library "
                              "do not match; install them from the same version")
        L.clattn_status_string.restype = c_char_p
        L.clattn_status_string.argtypes = [c_int]
        _sync_names(L)
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
        L.clattn_plan_create_with_config.argtypes = [c_void_p, ctypes.POINTER(Desc), c_uint, c_char_p,
                                                     ctypes.POINTER(c_void_p)]
        L.clattn_plan_execute.argtypes = [c_void_p] + [c_void_p] * 5 + [c_uint, c_void_p, ctypes.POINTER(c_void_p)]
        L.clattn_plan_execute_ex.argtypes = [c_void_p, ctypes.POINTER(ExecArgs), c_uint, c_void_p,
                                             ctypes.POINTER(c_void_p)]
        L.clattn_plan_update_mask_blocks.argtypes = [c_void_p, c_void_p, c_uint, c_void_p,
                                                     ctypes.POINTER(c_void_p)]
        L.clattn_merge_states.argtypes = [c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_void_p,
                                          c_void_p, c_void_p, c_uint, c_void_p,
                                          ctypes.POINTER(c_void_p)]
        L.clattn_kv_append.argtypes = [c_void_p, ctypes.POINTER(Desc), c_void_p, c_void_p, c_void_p,
                                       c_int, c_void_p, c_void_p, c_uint, c_void_p,
                                       ctypes.POINTER(c_void_p)]
        L.clattn_kv_code_value.restype = ctypes.c_float
        L.clattn_kv_code_value.argtypes = [c_int, c_uint]
        L.clattn_plan_execute_backward.argtypes = ([c_void_p] + [c_void_p] * 9 +
                                                   [c_uint, c_void_p, ctypes.POINTER(c_void_p)])
        L.clattn_plan_execute_backward_ex.argtypes = ([c_void_p, ctypes.POINTER(ExecArgs)] +
                                                      [c_void_p] * 4 +
                                                      [c_uint, c_void_p, ctypes.POINTER(c_void_p)])
        L.clattn_plan_backward_flops.restype = ctypes.c_double
        L.clattn_plan_backward_flops.argtypes = [c_void_p]
        L.clattn_plan_describe.restype = c_char_p
        L.clattn_plan_describe.argtypes = [c_void_p]
        L.clattn_plan_estimate.argtypes = [c_void_p, ctypes.POINTER(Desc), ctypes.POINTER(c_size_t)]
        L.clattn_plan_workspace_size.restype = c_size_t
        L.clattn_plan_workspace_size.argtypes = [c_void_p]
        L.clattn_plan_visible_pairs.restype = c_uint64
        L.clattn_plan_visible_pairs.argtypes = [c_void_p]
        L.clattn_plan_release.argtypes = [c_void_p]
        L.clattn_reference_attention.argtypes = [ctypes.POINTER(Desc), c_void_p, c_void_p, c_void_p,
                                                 c_void_p, c_void_p, c_void_p, c_int]
        L.clattn_reference_attention_backward.argtypes = [ctypes.POINTER(Desc)] + [c_void_p] * 7
        L.clattn_reference_linear.argtypes = [ctypes.POINTER(Desc), c_void_p, c_void_p, c_void_p,
                                              c_void_p, c_void_p, c_void_p, c_int]
        cl = self.cl
        cl.clCreateBuffer.restype = c_void_p
        cl.clCreateBuffer.argtypes = [c_void_p, ctypes.c_uint64, c_size_t, c_void_p, ctypes.POINTER(c_int)]
        cl.clEnqueueWriteBuffer.argtypes = [c_void_p, c_void_p, c_uint, c_size_t, c_size_t, c_void_p, c_uint,
                                            c_void_p, c_void_p]
        cl.clEnqueueReadBuffer.argtypes = cl.clEnqueueWriteBuffer.argtypes
        cl.clEnqueueMapBuffer.restype = c_void_p
        cl.clEnqueueMapBuffer.argtypes = [c_void_p, c_void_p, c_uint, ctypes.c_uint64, c_size_t, c_size_t,
                                          c_uint, c_void_p, c_void_p, ctypes.POINTER(c_int)]
        cl.clEnqueueUnmapMemObject.argtypes = [c_void_p, c_void_p, c_void_p, c_uint, c_void_p, c_void_p]
        cl.clReleaseMemObject.argtypes = [c_void_p]
        cl.clFinish.argtypes = [c_void_p]
        cl.clWaitForEvents.argtypes = [c_uint, ctypes.POINTER(c_void_p)]
        cl.clReleaseEvent.argtypes = [c_void_p]
        cl.clEnqueueMarkerWithWaitList.argtypes = [c_void_p, c_uint, c_void_p, ctypes.POINTER(c_void_p)]
        cl.clGetEventProfilingInfo.argtypes = [c_void_p, c_uint, c_size_t, c_void_p, c_void_p]
        cl.clGetDeviceInfo.argtypes = [c_void_p, c_uint, c_size_t, c_void_p, c_void_p]
        cl.clGetMemObjectInfo.argtypes = [c_void_p, c_uint, c_size_t, c_void_p, c_void_p]

    def version(self):
        return self.lib.clattn_version_string().decode()


_library = None
_library_lock = threading.Lock()


def library():
    """The process-wide Library (loaded on first use)."""
    global _library
    with _library_lock:
        if _library is None:
            _library = Library()
        return _library


class Context:
    """A device (clattn_context). Context(device=None): $CLATTN_DEVICE, else the first GPU, else
    the CPU; or "cpu", "gpu", "P:D", a name substring. Plans hold a reference to their context, and
    close() defers freeing the C context until the last plan is closed, so that closing in any
    order, and twice, is safe. The old form Context(library, selector) is accepted."""

    def __init__(self, device=None, selector=None, *, lib=None):
        if isinstance(device, Library):
            lib, device = device, selector
        self.L = lib or library()
        self.h = None
        self._lock = threading.RLock()
        self._plans = 0          # live Plan objects made on this context
        self._closing = False
        self._cache = OrderedDict()  # plan cache of the high-level API (key -> Plan)
        self._buffers = {}       # reusable device buffers of the high-level API (role -> (mem, bytes))
        h = c_void_p()
        st = self.L.lib.clattn_context_create(device.encode() if device else None, ctypes.byref(h))
        if st != 0:
            raise _error(st, self.L.lib.clattn_last_create_error().decode())
        self.h = h
        self.queue = self.L.lib.clattn_context_queue(h)
        self.clctx = self.L.lib.clattn_context_cl_context(h)
        dev = self.L.lib.clattn_context_device(h)
        t = ctypes.c_uint64()
        self.is_cpu = (self.L.cl.clGetDeviceInfo(dev, CL_DEVICE_TYPE, 8, ctypes.byref(t), None) == 0
                       and bool(t.value & CL_DEVICE_TYPE_CPU))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._closing or self.h is None

    def _handle(self):
        if self.closed:
            raise ClattnError("the context is closed")
        return self.h

    @property
    def device(self):
        return self.L.lib.clattn_context_device_name(self._handle()).decode()

    def error(self):
        return self.L.lib.clattn_context_last_error(self.h).decode() if self.h else "context closed"

    def fail(self, st):
        return _error(st, self.error())

    def buffer(self, nbytes, host=None, flags=CL_MEM_READ_WRITE, host_ptr=None):
        """A device buffer of nbytes, filled from `host` if given (host_ptr: with CL_MEM_USE_HOST_PTR)."""
        err = c_int()
        b = self.L.cl.clCreateBuffer(self.clctx, flags, nbytes, host_ptr, ctypes.byref(err))
        if not b:
            raise ClattnError(f"clCreateBuffer({nbytes} bytes, flags {flags}) failed with {err.value}")
        if host is not None:
            self.write(b, host)
        return b

    def write(self, buf, arr, nbytes=None, ptr=None):
        p, n = _ptr_len(arr) if arr is not None else (ptr, nbytes)
        st = self.L.cl.clEnqueueWriteBuffer(self.queue, buf, 1, 0, n if nbytes is None else nbytes,
                                            p if ptr is None else ptr, 0, None, None)
        if st:
            raise ClattnError(f"clEnqueueWriteBuffer failed with {st}")

    def buffer_size(self, buf):
        n = c_size_t()
        st = self.L.cl.clGetMemObjectInfo(buf, CL_MEM_SIZE, ctypes.sizeof(n), ctypes.byref(n), None)
        if st:
            raise ClattnError(f"clGetMemObjectInfo(CL_MEM_SIZE) failed with {st}")
        return n.value

    def read(self, buf, arr, nbytes=None):
        """Blocking read of the whole buffer into `arr` (which must be exactly as large: a smaller
        array would silently get part of it), or of its first nbytes."""
        ptr, n = _ptr_len(arr)
        if nbytes is None:
            size = self.buffer_size(buf)
            if size != n:
                raise ValueError(f"the buffer holds {size} bytes but the host array {n}; pass "
                                 "nbytes= to read a prefix")
        else:
            if nbytes > n:
                raise ValueError(f"read of {nbytes} bytes into a host array of {n} bytes")
            n = nbytes
        st = self.L.cl.clEnqueueReadBuffer(self.queue, buf, 1, 0, n, ptr, 0, None, None)
        if st:
            raise ClattnError(f"clEnqueueReadBuffer failed with {st}")

    def sync_host(self, buf, nbytes):
        """Makes a CL_MEM_USE_HOST_PTR buffer's content visible in host memory (map + unmap)."""
        err = c_int()
        p = self.L.cl.clEnqueueMapBuffer(self.queue, buf, 1, CL_MAP_READ, 0, nbytes, 0, None, None,
                                         ctypes.byref(err))
        if not p:
            raise ClattnError(f"clEnqueueMapBuffer failed with {err.value}")
        self.L.cl.clEnqueueUnmapMemObject(self.queue, buf, p, 0, None, None)
        self.finish()

    def finish(self):
        st = self.L.cl.clFinish(self.queue)
        if st:
            raise ClattnError(f"clFinish failed with {st}")

    def release_buffer(self, buf):
        if buf:
            self.L.cl.clReleaseMemObject(buf)

    def estimate(self, desc):
        """Device workspace bytes a plan for `desc` would own (clattn_plan_estimate: sized,
        nothing compiled or allocated). Raises ClattnError when the family refuses it."""
        n = c_size_t()
        st = self.L.lib.clattn_plan_estimate(self._handle(), ctypes.byref(desc), ctypes.byref(n))
        if st != 0:
            raise self.fail(st)
        return n.value

    def _plan_closed(self):
        with self._lock:
            self._plans -= 1
            if self._closing and self._plans == 0:
                self._release()

    def _release(self):
        if self.h:
            self.L.lib.clattn_context_release(self.h)
            self.h = None

    def close(self):
        """Closes the cached plans and buffers; the C context is freed now, or when the last plan
        made on it is closed. Safe to call twice."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            bufs, self._buffers = self._buffers, {}
            for mem, _ in bufs.values():
                self.release_buffer(mem)
            cache, self._cache = self._cache, {}
            for p in cache.values():
                p.close()
            if self._plans == 0:
                self._release()


def make_desc(lib, batch, heads, seq_q, seq_kv, head_dim, dtype="f32", mask="none", algo="auto",
              kv_heads=0, layout="bhsd", scale=0.0):
    """A Desc with the library's defaults and these fields (names as in DTYPES, MASKS, ALGOS, LAYOUTS)."""
    d = Desc()
    (lib or library()).lib.clattn_attention_desc_init(ctypes.byref(d))
    d.batch, d.heads, d.kv_heads, d.seq_q, d.seq_kv, d.head_dim = batch, heads, kv_heads, seq_q, seq_kv, head_dim
    d.dtype = lookup(DTYPES, dtype, "dtype")
    d.layout = lookup(LAYOUTS, layout, "layout")
    d.mask = lookup(MASKS, mask, "mask")
    d.algo = lookup(ALGOS, algo, "algo")
    d.scale = scale
    return d


class Plan:
    """clattn_plan on a Context (which it keeps alive). close() is safe twice and in any order
    with the context's close()."""

    def __init__(self, ctx, desc, flags=0, config=None):
        self.ctx, self.desc, self.h = ctx, desc, None
        h = c_void_p()
        with ctx._lock:
            handle = ctx._handle()
            if config:
                st = ctx.L.lib.clattn_plan_create_with_config(handle, ctypes.byref(desc), flags,
                                                              config.encode(), ctypes.byref(h))
            else:
                st = ctx.L.lib.clattn_plan_create(handle, ctypes.byref(desc), flags, ctypes.byref(h))
            if st != 0:
                raise ctx.fail(st)
            self.h = h
            ctx._plans += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self.h:
            raise ClattnError("the plan is closed")
        return self.h

    def describe(self):
        return self.ctx.L.lib.clattn_plan_describe(self._handle()).decode()

    def workspace_size(self):
        return self.ctx.L.lib.clattn_plan_workspace_size(self._handle())

    def visible_pairs(self):
        return self.ctx.L.lib.clattn_plan_visible_pairs(self._handle())

    def execute(self, q, k, v, o, lse=None, event=False):
        ev = c_void_p()
        st = self.ctx.L.lib.clattn_plan_execute(self._handle(), q, k, v, o, lse, 0, None,
                                                ctypes.byref(ev) if event else None)
        if st != 0:
            raise self.ctx.fail(st)
        return ev if event else None

    def execute_ex(self, event=False, **bufs):
        """clattn_plan_execute_ex: keyword buffers q, k, v, o, lse, cu_seqlens_q, cu_seqlens_kv,
        seqlens_kv, block_table, user (cl_mem handles; missing ones are NULL)."""
        a = ExecArgs(**{n: bufs.get(n) for n, _ in ExecArgs._fields_})
        ev = c_void_p()
        st = self.ctx.L.lib.clattn_plan_execute_ex(self._handle(), ctypes.byref(a), 0, None,
                                                   ctypes.byref(ev) if event else None)
        if st != 0:
            raise self.ctx.fail(st)
        return ev if event else None

    def update_mask_blocks(self, user=None):
        """clattn_plan_update_mask_blocks: the user mask's block classes for the buffer `user`
        (a cl_mem handle, or None)."""
        st = self.ctx.L.lib.clattn_plan_update_mask_blocks(self._handle(), user, 0, None, None)
        if st != 0:
            raise self.ctx.fail(st)

    def execute_backward_ex(self, dout, dq, dk, dv, event=False, **bufs):
        """clattn_plan_execute_backward_ex: the forward's buffers as keywords (q, k, v, o, lse,
        cu_seqlens_q, cu_seqlens_kv, user, bias; missing ones NULL), dout, dq, dk, dv."""
        a = ExecArgs(**{n: bufs.get(n) for n, _ in ExecArgs._fields_})
        ev = c_void_p()
        st = self.ctx.L.lib.clattn_plan_execute_backward_ex(self._handle(), ctypes.byref(a), dout, dq,
                                                            dk, dv, 0, None,
                                                            ctypes.byref(ev) if event else None)
        if st != 0:
            raise self.ctx.fail(st)
        return ev if event else None

    def execute_backward(self, q, k, v, o, lse, dout, dq, dk, dv, event=False):
        """clattn_plan_execute_backward: dq, dk, dv from the forward's q, k, v, o, lse and dout."""
        ev = c_void_p()
        st = self.ctx.L.lib.clattn_plan_execute_backward(self._handle(), q, k, v, o, lse, dout, dq, dk,
                                                         dv, 0, None, ctypes.byref(ev) if event else None)
        if st != 0:
            raise self.ctx.fail(st)
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
        h, self.h = self.h, None
        if h:
            self.ctx.L.lib.clattn_plan_release(h)
            self.ctx._plan_closed()
