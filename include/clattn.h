/* clattn.h — public C API of clattn, a portable OpenCL attention library. */
#ifndef CLATTN_H
#define CLATTN_H

/*
 * clattn computes scaled dot-product attention
 *
 *     O = softmax(Q Kᵀ · scale + mask) V
 *
 * on any OpenCL 1.2 device (NVIDIA, AMD and Intel GPUs, CPUs through PoCL).
 * Kernel sources are embedded in the library and compiled at run time for
 * the device in hand.
 *
 * Usage, FFTW style:
 *
 *     clattn_context ctx;
 *     clattn_context_create(NULL, &ctx);              // $CLATTN_DEVICE, else GPU, else CPU
 *     clattn_attention_desc d;
 *     clattn_attention_desc_init(&d);
 *     d.batch = 1; d.heads = 8; d.seq_q = d.seq_kv = 2048; d.head_dim = 64;
 *     d.mask = CLATTN_MASK_CAUSAL;
 *     clattn_plan plan;
 *     clattn_plan_create(ctx, &d, 0, &plan);          // validates, compiles
 *     clattn_plan_execute(plan, q, k, v, o, NULL, 0, NULL, NULL);  // enqueues only
 *     clattn_plan_release(plan);
 *     clattn_context_release(ctx);
 *
 * Every function returns a clattn_status (or a value documented as never
 * failing). The library never aborts and never prints: on failure the
 * context keeps a detailed message, clattn_context_last_error().
 *
 * Thread safety: a context and its plans may be used from one thread at a
 * time. Distinct contexts are independent.
 */

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define CLATTN_VERSION_MAJOR 0
#define CLATTN_VERSION_MINOR 1
#define CLATTN_VERSION_PATCH 0
/** Single integer (major * 10000 + minor * 100 + patch) for #if comparisons. */
#define CLATTN_VERSION_HEX                                                       \
  (CLATTN_VERSION_MAJOR * 10000 + CLATTN_VERSION_MINOR * 100 + CLATTN_VERSION_PATCH)

/** Version of the library linked at run time, as CLATTN_VERSION_HEX. */
unsigned clattn_version(void);
/** "MAJOR.MINOR.PATCH" of the library linked at run time. Static string. */
const char *clattn_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum clattn_status {
  CLATTN_SUCCESS = 0,
  /** An argument or descriptor field is invalid; the message names it. */
  CLATTN_ERROR_INVALID_ARGUMENT = -1,
  /** Valid request that this library version or device cannot serve. */
  CLATTN_ERROR_UNSUPPORTED = -2,
  /** Device (or host) memory needed exceeds what is available; the message
   *  names the number of bytes needed. */
  CLATTN_ERROR_OUT_OF_MEMORY = -3,
  /** An OpenCL call failed; the message names the call and its error code. */
  CLATTN_ERROR_OPENCL = -4,
  /** A kernel failed to compile; the message holds the build log. */
  CLATTN_ERROR_BUILD = -5,
  /** No OpenCL device matches the selector (or none exists). */
  CLATTN_ERROR_NO_DEVICE = -6,
  /** A file could not be read or written (caches, tuning database, layouts). */
  CLATTN_ERROR_IO = -7,
  /** A result failed verification against the reference. */
  CLATTN_ERROR_VERIFY = -8,
  /** Internal invariant broken: please report. */
  CLATTN_ERROR_INTERNAL = -9
} clattn_status;

/** Short English description of a status ("invalid argument"). Never NULL;
 *  unknown codes give "unknown status". Static string. */
const char *clattn_status_string(clattn_status status);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/** Opaque: an OpenCL device, its context and in-order queue, the programs
 *  built for it and the last error message. */
typedef struct clattn_context_s *clattn_context;

/**
 * Creates a context on a device chosen by `selector`:
 *   - NULL or "": the environment variable CLATTN_DEVICE if set, else the
 *     first GPU of any platform, else the first CPU, else any device;
 *   - "gpu" / "cpu" / "accelerator": the first device of that type;
 *   - "P:D": device D of platform P (indices as `clattn devices` prints);
 *   - anything else: the first device whose platform or device name contains
 *     the string (case-insensitive), e.g. "nvidia", "pocl", "H100".
 * The queue is created with profiling enabled. On failure *out is NULL and
 * CLATTN_ERROR_NO_DEVICE / CLATTN_ERROR_OPENCL is returned; since no context
 * exists, the detail is available from clattn_last_create_error().
 */
clattn_status clattn_context_create(const char *selector, clattn_context *out);

/**
 * Creates a context that enqueues on the caller's queue (retained, released
 * with the context). The queue's device and OpenCL context are used. Timing
 * helpers (the CLI, the tuner) need CL_QUEUE_PROFILING_ENABLE; plain
 * execution does not.
 */
clattn_status clattn_context_create_from_queue(cl_command_queue queue, clattn_context *out);

/** Detail of the last failed clattn_context_create* on this thread. */
const char *clattn_last_create_error(void);

/** The context's queue (owned by the context: do not release). */
cl_command_queue clattn_context_queue(clattn_context ctx);
/** The context's device (owned by the context: do not release). */
cl_device_id clattn_context_device(clattn_context ctx);
/** The context's OpenCL context (owned by the context: do not release). */
cl_context clattn_context_cl_context(clattn_context ctx);
/** Human-readable "platform / device / driver" line. Owned by the context. */
const char *clattn_context_device_name(clattn_context ctx);

/** Detailed message of the last failure of a call on this context or one of
 *  its plans ("" if none). Valid until the next call on the context. */
const char *clattn_context_last_error(clattn_context ctx);

/** Releases the context, its queue reference and its programs. Plans made
 *  from it must be released first. NULL is accepted. */
void clattn_context_release(clattn_context ctx);

/* ------------------------------------------------------------------------ */
/* Problem description                                                       */
/* ------------------------------------------------------------------------ */

/** Storage type of Q, K, V and O. Accumulation is float32 in every kernel. */
typedef enum clattn_dtype {
  CLATTN_DTYPE_F32 = 0,
  CLATTN_DTYPE_F16 = 1, /**< IEEE half; not yet implemented (UNSUPPORTED). */
  CLATTN_DTYPE_BF16 = 2 /**< bfloat16; not yet implemented (UNSUPPORTED). */
} clattn_dtype;

/** Memory layout of the four tensors. Indices: b batch, h head, s position,
 *  d feature. Element offsets are 64-bit. */
typedef enum clattn_layout {
  /** [batch][heads][seq][head_dim], contiguous (PyTorch SDPA's layout). */
  CLATTN_LAYOUT_BHSD = 0,
  /** [batch][seq][heads][head_dim], contiguous (the layout of a fused QKV
   *  projection's output). */
  CLATTN_LAYOUT_BSHD = 1,
  /** Explicit element strides per tensor (q_strides, k_strides, ...). */
  CLATTN_LAYOUT_STRIDED = 2
} clattn_layout;

/** Element strides of one tensor (in elements, not bytes; all ≥ 0). The
 *  element (b, h, s, d) lives at b*batch + h*head + s*seq + d*dim. For K and
 *  V, h is the kv-head index. */
typedef struct clattn_strides {
  int64_t batch, head, seq, dim;
} clattn_strides;

/**
 * Mask applied to the scores before the softmax.
 *
 * CLATTN_MASK_CAUSAL is aligned to the bottom-right corner, as in
 * FlashAttention >= 2.1 and PyTorch: query i (0-based) sees key j iff
 *     j <= i + (seq_kv - seq_q).
 * With seq_q == seq_kv this is the usual lower triangle. With seq_q < seq_kv
 * (decode, chunked prefill) the last query sees every key. With
 * seq_q > seq_kv the first seq_q - seq_kv queries see no key at all: their
 * output rows are zeros and their LSE is -inf.
 *
 *   seq_q = seq_kv = 4        seq_q = 2, seq_kv = 4     seq_q = 4, seq_kv = 2
 *     x . . .                   x x x .                   . .
 *     x x . .                   x x x x                   . .
 *     x x x .                                             x .
 *     x x x x                                             x x
 *
 * A row whose every key is masked produces zeros, never NaN.
 */
typedef enum clattn_mask {
  CLATTN_MASK_NONE = 0,
  CLATTN_MASK_CAUSAL = 1,
  /** Sparse patterns (fields in clattn_sparse_desc; see its comment). */
  CLATTN_MASK_WINDOW = 2,
  CLATTN_MASK_DILATED = 3,
  CLATTN_MASK_STRIDED = 4,
  CLATTN_MASK_BIGBIRD = 5,
  CLATTN_MASK_BLOCK_LAYOUT = 6
} clattn_mask;

/**
 * Parameters of the sparse masks (CLATTN_MASK_WINDOW .. BLOCK_LAYOUT); ignored
 * for NONE and CAUSAL. Arrays are copied by clattn_plan_create(). Semantics
 * and pictures are documented with each field below.
 */
typedef struct clattn_sparse_desc {
  int window_left;  /**< WINDOW/DILATED/STRIDED: keys back from the query. */
  int window_right; /**< WINDOW/DILATED/STRIDED: keys ahead (0 with causal). */
  int num_global;   /**< WINDOW: the first num_global positions are global. */
  const int *global_tokens; /**< WINDOW: optional explicit global positions. */
  int num_global_tokens;    /**< length of global_tokens. */
  int dilation;     /**< DILATED: every dilation-th key inside the window. */
  int stride;       /**< STRIDED: also every key j with j % stride == stride-1. */
  int block_size;   /**< BIGBIRD / BLOCK_LAYOUT: block edge in positions. */
  int window_blocks, global_blocks, random_blocks; /**< BIGBIRD. */
  uint64_t seed;    /**< BIGBIRD: random-block seed. */
  int layout_rows;  /**< BLOCK_LAYOUT: number of query blocks (CSR rows). */
  const int *layout_row_offsets; /**< BLOCK_LAYOUT: layout_rows + 1 entries. */
  const int *layout_cols;        /**< BLOCK_LAYOUT: key-block indices. */
  int causal; /**< non-zero: also apply the causal mask element-wise. */
} clattn_sparse_desc;

/** Feature map of the linear family (CLATTN_ALGO_LINEAR). */
typedef enum clattn_feature_map {
  CLATTN_FEATURE_ELU1 = 0,  /**< φ(x) = elu(x) + 1 */
  CLATTN_FEATURE_RELU = 1,  /**< φ(x) = relu(x) */
  CLATTN_FEATURE_FAVOR = 2  /**< Performer FAVOR+ positive random features */
} clattn_feature_map;

/** Which family computes the attention. */
typedef enum clattn_algo {
  /** Let the library choose (flash for every supported problem). */
  CLATTN_ALGO_AUTO = 0,
  /** Fused, tiled kernel with online softmax: O(N) memory, one pass. */
  CLATTN_ALGO_FLASH = 1,
  /** CLBlast GEMM → masked softmax → GEMM with an O(B·H·Nq·Nk) workspace.
   *  The baseline. Needs unit dim stride (head_dim contiguous). */
  CLATTN_ALGO_NAIVE = 2,
  /** Kernelised linear attention φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1): O(N·d²). An
   *  approximation of softmax attention, chosen only explicitly. */
  CLATTN_ALGO_LINEAR = 3
} clattn_algo;

/** One attention problem. Initialise with clattn_attention_desc_init(),
 *  then set the fields. Sizes are signed so that negative values can be
 *  reported rather than wrapped. */
typedef struct clattn_attention_desc {
  int batch;    /**< B ≥ 1. Default 1. */
  int heads;    /**< H ≥ 1 query heads. Default 1. */
  int kv_heads; /**< Hk key/value heads, H % Hk == 0 (GQA / MQA); 0 = heads. */
  int seq_q;    /**< Nq ≥ 1 query positions. */
  int seq_kv;   /**< Nk ≥ 1 key/value positions (may differ from seq_q). */
  int head_dim; /**< d, 1..256 (same for Q, K and V). */
  clattn_dtype dtype;   /**< Default CLATTN_DTYPE_F32. */
  clattn_layout layout; /**< Default CLATTN_LAYOUT_BHSD. */
  /** Strides used only with CLATTN_LAYOUT_STRIDED. */
  clattn_strides q_strides, k_strides, v_strides, o_strides;
  /** Multiplier of Q Kᵀ; 0 means 1/sqrt(head_dim). Must be finite. */
  double scale;
  clattn_mask mask;  /**< Default CLATTN_MASK_NONE. */
  clattn_algo algo;  /**< Default CLATTN_ALGO_AUTO. */
  clattn_sparse_desc sparse; /**< Sparse mask parameters (mask >= WINDOW). */
  clattn_feature_map feature_map; /**< Linear family: default ELU1. */
  int num_features;      /**< Linear FAVOR+: m random features (default 0 = head_dim). */
  uint64_t feature_seed; /**< Linear FAVOR+: seed of the random features. */
} clattn_attention_desc;

/** Sets every field to its default (sizes 1, seq 1, head_dim 64, f32, BHSD,
 *  scale 0, no mask, auto). Never fails; NULL is ignored. */
void clattn_attention_desc_init(clattn_attention_desc *desc);

/**
 * Fills *q, *k, *v, *o with the element strides that `desc` implies (for
 * BHSD/BSHD; for STRIDED, copies the given strides) and the minimal element
 * counts each buffer must hold (any pointer may be NULL).
 */
clattn_status clattn_attention_desc_strides(const clattn_attention_desc *desc, clattn_strides *q,
                                            clattn_strides *k, clattn_strides *v,
                                            clattn_strides *o, size_t elems[4]);

/* ------------------------------------------------------------------------ */
/* Plans                                                                     */
/* ------------------------------------------------------------------------ */

/** Opaque: a validated problem, the chosen family and configuration, the
 *  compiled kernels and any device workspace. */
typedef struct clattn_plan_s *clattn_plan;

/** Plan flags (bitwise or). */
enum {
  CLATTN_PLAN_DEFAULT = 0,
  /** Do not allocate the workspace at plan time; allocate it at the first
   *  execute instead (the size check still runs at plan time). */
  CLATTN_PLAN_LAZY_WORKSPACE = 1u << 0
};

/**
 * Validates `desc` against the device, chooses the family (desc->algo) and
 * its configuration, compiles what it needs and allocates its workspace.
 * Errors: CLATTN_ERROR_INVALID_ARGUMENT (the message names the field),
 * CLATTN_ERROR_UNSUPPORTED, CLATTN_ERROR_OUT_OF_MEMORY (the message names
 * the bytes needed), CLATTN_ERROR_BUILD (with the build log),
 * CLATTN_ERROR_OPENCL. `desc` is copied; the plan keeps `ctx` referenced
 * and must be released before it.
 */
clattn_status clattn_plan_create(clattn_context ctx, const clattn_attention_desc *desc,
                                 unsigned flags, clattn_plan *out);

/**
 * Enqueues the attention on the context's queue; never blocks.
 *   q, k, v: input buffers, o: output buffer, all of desc.dtype with the
 *   layout of the descriptor; each must be at least as large as the layout
 *   needs (checked with CL_MEM_SIZE). o must not alias q, k or v.
 *   lse: NULL, or a float32 buffer of batch·heads·seq_q elements receiving
 *   the natural-log log-sum-exp of each scaled score row, laid out
 *   [batch][heads][seq_q]; -inf for fully masked rows.
 *   num_wait / wait_list: events to wait for (may be 0 / NULL).
 *   event: NULL, or receives an event for the last command enqueued (the
 *   caller releases it).
 */
clattn_status clattn_plan_execute(clattn_plan plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                  cl_mem lse, cl_uint num_wait, const cl_event *wait_list,
                                  cl_event *event);

/** One human-readable line: family, kernel configuration, and where the
 *  configuration came from. Owned by the plan. */
const char *clattn_plan_describe(clattn_plan plan);

/** Bytes of device workspace the plan owns (0 for flash). */
size_t clattn_plan_workspace_size(clattn_plan plan);

/** The descriptor the plan was made for, with defaults resolved (kv_heads,
 *  scale, algo). */
const clattn_attention_desc *clattn_plan_desc(clattn_plan plan);

/** Releases the plan and its workspace. NULL is accepted. */
void clattn_plan_release(clattn_plan plan);

/* ------------------------------------------------------------------------ */
/* Reference                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Float64 host reference for every descriptor the library accepts.
 * q, k, v: host arrays of desc->dtype in the descriptor's layout (for f16 /
 * bf16, 16-bit storage); o: host array of double receiving the output in
 * BHSD order [batch][heads][seq_q][head_dim]; lse: NULL or double array
 * [batch][heads][seq_q] (natural log, -inf for fully masked rows).
 * rows: NULL to compute every query row, or an array of num_rows query
 * positions to compute (the other rows of o and lse are left untouched):
 * useful to check a large problem on a subset.
 * Cost O(B·H·Nq·Nk·d) on the host. Returns CLATTN_ERROR_INVALID_ARGUMENT on
 * a bad descriptor (no message store: the host reference has no context).
 */
clattn_status clattn_reference_attention(const clattn_attention_desc *desc, const void *q,
                                         const void *k, const void *v, double *o, double *lse,
                                         const int *rows, int num_rows);

#ifdef __cplusplus
}
#endif
#endif /* CLATTN_H */
