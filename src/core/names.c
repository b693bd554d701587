/* names.c — the names of statuses, storage types, masks, algorithms, layouts and feature maps, from
 * one X-macro table each. */
#include "internal.h"

#include <string.h>

/* X(enum value, name) — the one place each name is written. */
#define CLATTN__STATUSES(X)                                                                        \
  X(CLATTN_SUCCESS, "success")                                                                     \
  X(CLATTN_ERROR_INVALID_ARGUMENT, "invalid argument")                                             \
  X(CLATTN_ERROR_UNSUPPORTED, "unsupported")                                                       \
  X(CLATTN_ERROR_OUT_OF_MEMORY, "out of memory")                                                   \
  X(CLATTN_ERROR_OPENCL, "OpenCL error")                                                           \
  X(CLATTN_ERROR_BUILD, "kernel build failed")                                                     \
  X(CLATTN_ERROR_NO_DEVICE, "no matching device")                                                  \
  X(CLATTN_ERROR_IO, "I/O error")                                                                  \
  X(CLATTN_ERROR_VERIFY, "verification failed")                                                    \
  X(CLATTN_ERROR_INTERNAL, "internal error")
#define CLATTN__DTYPES(X)                                                                          \
  X(CLATTN_DTYPE_F32, "f32") X(CLATTN_DTYPE_F16, "f16") X(CLATTN_DTYPE_BF16, "bf16")
#define CLATTN__MASKS(X)                                                                           \
  X(CLATTN_MASK_NONE, "none")                                                                      \
  X(CLATTN_MASK_CAUSAL, "causal")                                                                  \
  X(CLATTN_MASK_WINDOW, "window")                                                                  \
  X(CLATTN_MASK_DILATED, "dilated")                                                                \
  X(CLATTN_MASK_STRIDED, "strided")                                                                \
  X(CLATTN_MASK_BIGBIRD, "bigbird")                                                                \
  X(CLATTN_MASK_BLOCK_LAYOUT, "block_layout")                                                      \
  X(CLATTN_MASK_CAUSAL_TOP_LEFT, "causal_top_left")
#define CLATTN__ALGOS(X)                                                                           \
  X(CLATTN_ALGO_AUTO, "auto")                                                                      \
  X(CLATTN_ALGO_FLASH, "flash") X(CLATTN_ALGO_NAIVE, "naive") X(CLATTN_ALGO_LINEAR, "linear")
#define CLATTN__LAYOUTS(X)                                                                         \
  X(CLATTN_LAYOUT_BHSD, "bhsd") X(CLATTN_LAYOUT_BSHD, "bshd") X(CLATTN_LAYOUT_STRIDED, "strided")
#define CLATTN__FEATURE_MAPS(X)                                                                    \
  X(CLATTN_FEATURE_ELU1, "elu") X(CLATTN_FEATURE_RELU, "relu") X(CLATTN_FEATURE_FAVOR, "favor")
#define CLATTN__KV_DTYPES(X)                                                                       \
  X(CLATTN_KV_DTYPE_SAME, "same")                                                                  \
  X(CLATTN_KV_DTYPE_INT8, "int8")                                                                  \
  X(CLATTN_KV_DTYPE_FP8_E4M3, "fp8e4m3") X(CLATTN_KV_DTYPE_FP8_E5M2, "fp8e5m2")
#define CLATTN__KV_SCALES(X)                                                                       \
  X(CLATTN_KV_SCALE_TOKEN, "token")                                                                \
  X(CLATTN_KV_SCALE_TENSOR, "tensor")                                                              \
  X(CLATTN_KV_SCALE_HEAD, "head") X(CLATTN_KV_SCALE_CHANNEL, "channel")

#define CASE_NAME(e, n)                                                                            \
  case e:                                                                                          \
    return n;
#define MATCH_NAME(e, n)                                                                           \
  if (!strcmp(s, n)) return (int)e;

#define NAME_FUNCS(type, list, name_fn, from_fn, unknown)                                          \
  const char *name_fn(type x) {                                                                    \
    switch (x) { list(CASE_NAME) }                                                                 \
    return unknown;                                                                                \
  }                                                                                                \
  int from_fn(const char *s) {                                                                     \
    if (!s) return -1;                                                                             \
    list(MATCH_NAME) return -1;                                                                    \
  }

NAME_FUNCS(clattn_status, CLATTN__STATUSES, clattn_status_string, clattn_status_from_name,
           "unknown status")
NAME_FUNCS(clattn_dtype, CLATTN__DTYPES, clattn_dtype_name, clattn_dtype_from_name, "?")
NAME_FUNCS(clattn_mask, CLATTN__MASKS, clattn_mask_name, clattn_mask_from_name, "?")
NAME_FUNCS(clattn_algo, CLATTN__ALGOS, clattn_algo_name, clattn_algo_from_name, "?")
NAME_FUNCS(clattn_layout, CLATTN__LAYOUTS, clattn_layout_name, clattn_layout_from_name, "?")
NAME_FUNCS(clattn_feature_map, CLATTN__FEATURE_MAPS, clattn_feature_map_name,
           clattn_feature_map_from_name, "?")
NAME_FUNCS(clattn_kv_dtype, CLATTN__KV_DTYPES, clattn_kv_dtype_name, clattn_kv_dtype_from_name, "?")
NAME_FUNCS(clattn_kv_scale, CLATTN__KV_SCALES, clattn_kv_scale_name, clattn_kv_scale_from_name, "?")
