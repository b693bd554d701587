"""clattn — Python binding of libclattn: attention(), scaled_dot_product_attention() on numpy arrays and torch CPU tensors, and the low-level Context / Plan layer."""
from ._api import (attention, attention_backward, default_context, scaled_dot_product_attention,
                   set_default_context)
from ._decode import dequantize_kv, merge_states, paged_attention, varlen_attention
from ._lowlevel import (ALGOS, DTYPES, FEATURES, LAYOUTS, MASKS, ClattnError, Context, Desc,
                        ExecArgs, InvalidArgumentError, Library, Plan, SparseDesc, Strides, UnsupportedError,
                        library, make_desc)

__all__ = ["attention", "attention_backward", "paged_attention", "dequantize_kv", "varlen_attention", "merge_states", "scaled_dot_product_attention", "default_context", "set_default_context",
           "Context", "Plan", "Library", "library", "make_desc", "Desc", "SparseDesc", "Strides",
           "ClattnError", "InvalidArgumentError", "UnsupportedError", "version", "DTYPES", "MASKS",
           "ALGOS", "LAYOUTS", "FEATURES"]


def version():
    """Version of the loaded libclattn ("MAJOR.MINOR.PATCH", clattn_version_string())."""
    return library().version()


def __getattr__(name):
    if name == "__version__":  # from the library, loaded on first use
        return version()
    raise AttributeError(f"module 'clattn' has no attribute {name!r}")
