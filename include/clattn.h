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
 * time (the caller serialises otherwise). Distinct contexts are independent
 * and may be created, used and released from different threads at once.
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

/* Symbols of the shared library: only CLATTN_API functions are exported. */
#if defined(_WIN32) && defined(CLATTN_BUILDING)
#define CLATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLATTN_API __attribute__((visibility("default")))
#else
#define CLATTN_API
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
#define CLATTN_VERSION_HEX                                                                         \
  (CLATTN_VERSION_MAJOR * 10000 + CLATTN_VERSION_MINOR * 100 + CLATTN_VERSION_PATCH)

/** Version of the library linked at run time, as CLATTN_VERSION_HEX. */
CLATTN_API unsigned clattn_version(void);
/** "MAJOR.MINOR.PATCH" of the library linked at run time. Static string. */
CLATTN_API const char *clattn_version_string(void);

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
CLATTN_API const char *clattn_status_string(clattn_status status);
/** The status whose clattn_status_string() is `name`, or -1. */
CLATTN_API int clattn_status_from_name(const char *name);

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
CLATTN_API clattn_status clattn_context_create(const char *selector, clattn_context *out);

/**
 * Creates a context that enqueues on the caller's queue (retained, released
 * with the context). The queue's device and OpenCL context are used. Timing
 * helpers (the CLI, the tuner) need CL_QUEUE_PROFILING_ENABLE; plain
 * execution does not.
 */
CLATTN_API clattn_status clattn_context_create_from_queue(cl_command_queue queue,
                                                          clattn_context *out);

/** Detail of the last failed clattn_context_create* on this thread. */
CLATTN_API const char *clattn_last_create_error(void);

/** The context's queue (owned by the context: do not release). */
CLATTN_API cl_command_queue clattn_context_queue(clattn_context ctx);
/** The context's device (owned by the context: do not release). */
CLATTN_API cl_device_id clattn_context_device(clattn_context ctx);
/** The context's OpenCL context (owned by the context: do not release). */
CLATTN_API cl_context clattn_context_cl_context(clattn_context ctx);
/** Human-readable "platform / device / driver" line. Owned by the context. */
CLATTN_API const char *clattn_context_device_name(clattn_context ctx);

/** Detailed message of the last failure of a call on this context or one of
 *  its plans ("" if none). Valid until the next call on the context. */
CLATTN_API const char *clattn_context_last_error(clattn_context ctx);
/** After a call failed with CLATTN_ERROR_OUT_OF_MEMORY: the bytes the
 *  failed request needed, when the library knows them (0 otherwise, and
 *  after any other result). */
CLATTN_API uint64_t clattn_context_last_needed_bytes(clattn_context ctx);

/** Releases the context, its queue reference and its programs. NULL is
 *  accepted. Plans made from it may still be alive: the context then stays
 *  alive (and its plans keep working) until the last of them is released
 *  with clattn_plan_release, which frees it. The caller must not use the
 *  context handle itself after this call, nor call it twice. */
CLATTN_API void clattn_context_release(clattn_context ctx);

/* ------------------------------------------------------------------------ */
/* Problem description                                                       */
/* ------------------------------------------------------------------------ */

/**
 * Storage type of Q, K, V and O. Accumulation is float32 in every kernel and
 * the log-sum-exp is float32 whatever the storage. 16-bit types need no
 * cl_khr_fp16: f16 is read and written with vload_half / round-to-nearest-
 * even stores, bf16 with bit operations (round to nearest even on store).
 * Per family:
 *   - flash (dense and sparse masks): f32, f16, bf16 natively (on NVIDIA
 *     sm_80+ f16 / bf16 use the tensor-core kernel);
 *   - naive (dense and sparse masks): f32; f16 and bf16 through f32 copies:
 *     q, k and v are converted into packed [b][h][s][d] float buffers that
 *     CLBlast's SGEMM reads, the softmax and both GEMMs run in f32 and the
 *     output is rounded into o in o's layout. The copies are part of the
 *     plan's workspace (clattn_plan_workspace_size);
 *   - linear: f32, f16, bf16 natively (inputs converted as they are loaded,
 *     features, states and sums in f32).
 */
typedef enum clattn_dtype {
  CLATTN_DTYPE_F32 = 0,
  CLATTN_DTYPE_F16 = 1, /**< IEEE half (binary16) storage. */
  CLATTN_DTYPE_BF16 = 2 /**< bfloat16 storage. */
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
 * Positions. Key j (0-based) sits at position j. Query i sits at key
 * position
 *     p = i + (seq_kv - seq_q),
 * i.e. the queries are aligned to the bottom-right corner, as in
 * FlashAttention >= 2.1 (and PyTorch's causal_lower_right; PyTorch's
 * is_causal=True is top-left, CLATTN_MASK_CAUSAL_TOP_LEFT below). Every mask
 * except CLATTN_MASK_CAUSAL_TOP_LEFT is a predicate of (p, j);
 * with seq_q == seq_kv, p == i. With seq_q < seq_kv (decode, chunked
 * prefill) the queries are the last seq_q positions of the sequence, so a
 * pattern written for the whole sequence applies to them unchanged. With
 * seq_q > seq_kv the first seq_q - seq_kv queries have p < 0.
 *
 * CLATTN_MASK_CAUSAL: query i sees key j iff j <= p. With seq_q == seq_kv
 * this is the usual lower triangle. With seq_q < seq_kv the last query sees
 * every key. With seq_q > seq_kv the first seq_q - seq_kv queries see no key
 * at all: their output rows are zeros and their LSE is -inf.
 *
 *   seq_q = seq_kv = 4        seq_q = 2, seq_kv = 4     seq_q = 4, seq_kv = 2
 *     x . . .                   x x x .                   . .
 *     x x . .                   x x x x                   . .
 *     x x x .                                             x .
 *     x x x x                                             x x
 *
 * CLATTN_MASK_CAUSAL_TOP_LEFT: query i sees key j iff j <= i, aligned to the
 * top-left corner whatever seq_q and seq_kv: PyTorch's
 * scaled_dot_product_attention(is_causal=True). With seq_q == seq_kv it is
 * CLATTN_MASK_CAUSAL. Every family (flash, naive, linear) and the reference
 * implement both alignments.
 *
 *   seq_q = 2, seq_kv = 4     seq_q = 4, seq_kv = 2
 *     x . . .                   x .
 *     x x . .                   x x
 *                               x x
 *                               x x
 *
 * The sparse masks (WINDOW .. BLOCK_LAYOUT) take their parameters from
 * desc.sparse and are defined, with pictures, in docs/masks.md.
 *
 * A row whose every key is masked produces zeros (LSE -inf), never NaN.
 */
typedef enum clattn_mask {
  CLATTN_MASK_NONE = 0,
  CLATTN_MASK_CAUSAL = 1,
  /** Sliding window (Longformer), optional global tokens. */
  CLATTN_MASK_WINDOW = 2,
  /** Dilated window: every d-th key of a window. */
  CLATTN_MASK_DILATED = 3,
  /** Sparse Transformer strided: a local window plus every s-th key. */
  CLATTN_MASK_STRIDED = 4,
  /** BigBird: global + window + seeded random blocks. */
  CLATTN_MASK_BIGBIRD = 5,
  /** A user block layout (CSR of key blocks per query block). */
  CLATTN_MASK_BLOCK_LAYOUT = 6,
  /** Causal, top-left aligned: query i sees keys j <= i (PyTorch's
   *  is_causal=True). CLATTN_MASK_CAUSAL is bottom-right aligned. */
  CLATTN_MASK_CAUSAL_TOP_LEFT = 7
} clattn_mask;

/**
 * Parameters of the sparse masks (CLATTN_MASK_WINDOW .. BLOCK_LAYOUT);
 * ignored for NONE and the causal masks. docs/masks.md defines each pattern
 * exactly, with pictures, the element options, the cost and the validation
 * rules. In short (p the query's key position, j the key, G the global
 * positions {0 .. num_global-1} ∪ global_tokens):
 *   WINDOW        p - L <= j <= p + R, or p ∈ G, or j ∈ G (Longformer)
 *   DILATED       as WINDOW, and (p - j) a multiple of `dilation`
 *   STRIDED       the window, or (p - j) a multiple of `stride` (Sparse Transformer)
 *   BIGBIRD       blocks of block_size: global, window and seeded random key
 *                 blocks per query block (Zaheer et al.; the draw is documented)
 *   BLOCK_LAYOUT  the caller's CSR list of key blocks per query block
 * `causal` also requires j <= p; `element_window` restricts the block masks
 * to p - L <= j <= p + R. Arrays are copied by clattn_plan_create(); bad
 * fields give CLATTN_ERROR_INVALID_ARGUMENT naming the field.
 */
typedef struct clattn_sparse_desc {
  int window_left;          /**< L >= 0 (WINDOW/DILATED/STRIDED, element_window). */
  int window_right;         /**< R >= 0 (WINDOW/DILATED/STRIDED, element_window). */
  int num_global;           /**< WINDOW/DILATED/STRIDED: positions 0..num_global-1 are global. */
  const int *global_tokens; /**< WINDOW/DILATED/STRIDED: more global positions (or NULL). */
  int num_global_tokens;    /**< length of global_tokens. */
  int dilation;             /**< DILATED: d >= 1. */
  int stride;               /**< STRIDED: s >= 1. */
  int block_size;           /**< BIGBIRD / BLOCK_LAYOUT: b >= 1 positions per block. */
  int window_blocks;        /**< BIGBIRD: blocks on each side of the query's block. */
  int global_blocks;        /**< BIGBIRD: the first global_blocks blocks are global. */
  int random_blocks;        /**< BIGBIRD: random key blocks per query block. */
  uint64_t seed;            /**< BIGBIRD: seed of the random blocks. */
  int layout_rows;          /**< BLOCK_LAYOUT: number of query blocks, = ceil(seq_kv / b). */
  const int *layout_row_offsets; /**< BLOCK_LAYOUT: layout_rows + 1 entries. */
  const int *layout_cols;        /**< BLOCK_LAYOUT: key-block indices. */
  int causal;                    /**< non-zero: also j <= p (every sparse mask). */
  int element_window;            /**< BIGBIRD/BLOCK_LAYOUT, non-zero: also p-L <= j <= p+R. */
} clattn_sparse_desc;

/**
 * Feature map φ of the linear family (CLATTN_ALGO_LINEAR), which computes
 *
 *     o_i = Σ_j w_ij v_j / Σ_j w_ij,   w_ij = φ(q'_i)ᵀ φ(k'_j)
 *
 * over the visible keys j (all, or j <= i + seq_kv − seq_q under
 * CLATTN_MASK_CAUSAL, the same bottom-right alignment as the softmax
 * families, or j <= i under CLATTN_MASK_CAUSAL_TOP_LEFT), in O(N·F·d) time by reassociation: o_i =
 * φ(q'_i)ᵀS / φ(q'_i)ᵀz with the state S = Σ_j φ(k'_j) v_jᵀ (F×d) and z = Σ_j φ(k'_j). The scale
 * enters as in softmax attention: q' = sign(scale)·√|scale|·q and k' = √|scale|·k, so q'ᵀk' =
 * scale·qᵀk is what the kernel approximates (with scale = 1, elu+1 is exactly Katharopoulos et
 * al.'s φ; relu is invariant to the scale). A row whose weights are all zero (relu features that
 * are all zero, exp underflow, or no visible key) gives zeros, never NaN. Linear attention has no
 * log-sum-exp: execute with lse = NULL.
 */
typedef enum clattn_feature_map {
  /** φ(x)_f = elu(x_f) + 1 (x_f + 1 for x_f > 0, exp(x_f) otherwise); F = d. */
  CLATTN_FEATURE_ELU1 = 0,
  /** φ(x)_f = max(x_f, 0); F = d. */
  CLATTN_FEATURE_RELU = 1,
  /**
   * Performer FAVOR+ positive orthogonal random features (Choromanski et
   * al. 2021): φ(x)_f = exp(ω_fᵀx − ‖x‖²/2) / √m, f < m = num_features, so
   * that E[φ(q')ᵀφ(k')] = exp(q'ᵀk') = exp(scale·qᵀk). ω (m×d) is drawn from
   * feature_seed by clattn_favor_features(); the plan keeps it on the device
   * (clattn_plan_redraw_features() draws a new one). Numerically the
   * features are stabilised as in the Performer code, by constants that
   * cancel in the ratio: a query's features are divided by their maximum
   * exp(max_f ω_fᵀx − ‖x‖²/2) (per row); the keys of one sum share one
   * divisor, the running maximum of their log-features, which the chunked
   * kernels rescale like an online softmax (chunk maxima combined in the
   * scan; the causal in-chunk part joins the prefix's maximum). The 1/√m
   * factor cancels too and is not applied.
   */
  CLATTN_FEATURE_FAVOR = 2
} clattn_feature_map;

/** Which family computes the attention. */
typedef enum clattn_algo {
  /** Let the library choose (flash for every supported problem). */
  CLATTN_ALGO_AUTO = 0,
  /** Fused, tiled kernel with online softmax: O(N) memory, one pass. */
  CLATTN_ALGO_FLASH = 1,
  /** CLBlast GEMM → masked softmax → GEMM with an O(B·H·Nq·Nk) workspace.
   *  The baseline. f32 storage needs a unit dim stride (head_dim contiguous)
   *  and seq strides >= head_dim; f16 / bf16 go through packed f32 copies
   *  (see clattn_dtype) and take any strides. */
  CLATTN_ALGO_NAIVE = 2,
  /** Kernelised linear attention φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1): O(N·d²). An
   *  approximation of softmax attention, chosen only explicitly. */
  CLATTN_ALGO_LINEAR = 3
} clattn_algo;

/** Names of the enumerations, as the command-line tool, the tuning database
 *  and the bindings write them: dtype "f32" "f16" "bf16"; mask "none"
 *  "causal" "window" "dilated" "strided" "bigbird" "block_layout"; algo
 *  "auto" "flash" "naive" "linear"; layout "bhsd" "bshd" "strided"; feature
 *  map "elu" "relu" "favor". Unknown values give "?"; the *_from_name
 *  functions return the value, or -1 for an unknown name. Static strings. */
CLATTN_API const char *clattn_dtype_name(clattn_dtype dtype);
CLATTN_API int clattn_dtype_from_name(const char *name);
CLATTN_API const char *clattn_mask_name(clattn_mask mask);
CLATTN_API int clattn_mask_from_name(const char *name);
CLATTN_API const char *clattn_algo_name(clattn_algo algo);
CLATTN_API int clattn_algo_from_name(const char *name);
CLATTN_API const char *clattn_layout_name(clattn_layout layout);
CLATTN_API int clattn_layout_from_name(const char *name);
CLATTN_API const char *clattn_feature_map_name(clattn_feature_map map);
CLATTN_API int clattn_feature_map_from_name(const char *name);
/* (declared after their enumerations: clattn_kv_dtype_name "same" "int8"
 * "fp8e4m3" "fp8e5m2", clattn_kv_scale_name "token" "tensor" "head"
 * "channel") */

/**
 * Where K and V live (inference engines; see "Inference" in the README).
 *
 *   CONTIGUOUS: [batch][kv_heads][seq_kv][d] tensors as desc.layout says (or,
 *     with desc.ragged, packed [total_kv][kv_heads][d] rows, sequence b owning
 *     rows cu_seqlens_kv[b] .. cu_seqlens_kv[b+1]-1).
 *   PAGED: page pools k, v of [num_pages][page_size][kv_heads][d] (vLLM /
 *     FlashAttention-2 "block table" cache). Key j of sequence b lives in
 *     page block_table[b·max_pages_per_seq + j / page_size], row
 *     j % page_size. Its length is seqlens_kv[b] (execution time).
 *   PAGED_HEAD_MAJOR: the same with pools [num_pages][kv_heads][page_size][d].
 *
 * With desc.layout STRIDED, the pools take k_strides / v_strides instead
 * (batch = the page stride, seq = the token-in-page stride, head, dim).
 * Pages may be shared between sequences and appear in any order.
 */
typedef enum clattn_kv_layout {
  CLATTN_KV_CONTIGUOUS = 0,
  CLATTN_KV_PAGED = 1,
  CLATTN_KV_PAGED_HEAD_MAJOR = 2
} clattn_kv_layout;

/**
 * Storage of K and V (desc.kv_dtype): the descriptor's dtype, or quantized
 * codes with float32 scales (desc.kv_scale) given at execution
 * (clattn_exec_args.k_scale / v_scale). An element's value is
 * decode(code) · scale; Q and O stay in desc.dtype. Served by the decode
 * kernels (decode, decode_warp: seq_q <= 16, contiguous, paged or ragged
 * K/V) and the prefill kernels flash and flash_rows (contiguous or ragged
 * K/V), forward only; the tensor-core kernels and the backward decline such
 * a descriptor.
 *   INT8: signed 8-bit codes, decode(c) = c (quantizers use -127..127).
 *   FP8_E4M3: OCP FP8 E4M3FN (bias 7, no infinities, max ±448; S.1111.111
 *     is NaN). FP8_E5M2: OCP FP8 E5M2 (bias 15, IEEE-like: max ±57344,
 *     infinities and NaNs), the upper byte of an IEEE half.
 */
typedef enum clattn_kv_dtype {
  CLATTN_KV_DTYPE_SAME = 0, /**< K/V in desc.dtype (default). */
  CLATTN_KV_DTYPE_INT8 = 1,
  CLATTN_KV_DTYPE_FP8_E4M3 = 2,
  CLATTN_KV_DTYPE_FP8_E5M2 = 3
} clattn_kv_dtype;

/**
 * Granularity of the scales of a quantized K/V cache (desc.kv_scale); k_scale
 * and v_scale are float32 buffers laid out as follows (Hk = kv_heads):
 *   TOKEN: one per (token, KV head): [batch][seq_kv][Hk] for a contiguous
 *     cache, [total_kv][Hk] for packed ragged K/V, [num_pages][page_size][Hk]
 *     for a paged one (the cache's own token order, whatever its layout).
 *     clattn_kv_append_ex computes them as the tokens are written.
 *   TENSOR: [1]. HEAD: [Hk]. CHANNEL: [Hk][head_dim].
 * For TENSOR, HEAD and CHANNEL the caller sets the scales (e.g. absmax/127
 * for int8, absmax/448 for e4m3 over calibration data) and
 * clattn_kv_append_ex quantizes with them, saturating.
 */
typedef enum clattn_kv_scale {
  CLATTN_KV_SCALE_TOKEN = 0,
  CLATTN_KV_SCALE_TENSOR = 1,
  CLATTN_KV_SCALE_HEAD = 2,
  CLATTN_KV_SCALE_CHANNEL = 3
} clattn_kv_scale;
CLATTN_API const char *clattn_kv_dtype_name(clattn_kv_dtype t);
CLATTN_API int clattn_kv_dtype_from_name(const char *name);
CLATTN_API const char *clattn_kv_scale_name(clattn_kv_scale g);
CLATTN_API int clattn_kv_scale_from_name(const char *name);

/** One attention problem. Initialise with clattn_attention_desc_init(),
 *  then set the fields. Sizes are signed so that negative values can be
 *  reported rather than wrapped. */
typedef struct clattn_attention_desc {
  int batch;            /**< B ≥ 1. Default 1. */
  int heads;            /**< H ≥ 1 query heads. Default 1. */
  int kv_heads;         /**< Hk key/value heads, H % Hk == 0 (GQA / MQA); 0 = heads. */
  int seq_q;            /**< Nq ≥ 1 query positions. */
  int seq_kv;           /**< Nk ≥ 1 key/value positions (may differ from seq_q). */
  int head_dim;         /**< d, 1..256 (same for Q, K and V). */
  clattn_dtype dtype;   /**< Default CLATTN_DTYPE_F32. */
  clattn_layout layout; /**< Default CLATTN_LAYOUT_BHSD. */
  /** Strides used only with CLATTN_LAYOUT_STRIDED (elements, >= 0). q, k
   *  and v may overlap themselves (they are only read); o_strides must not
   *  make two output elements share an address: ordered by stride, each
   *  dimension of size > 1 steps past the extent of the smaller ones. */
  clattn_strides q_strides, k_strides, v_strides, o_strides;
  /** Multiplier of Q Kᵀ; 0 means 1/sqrt(head_dim). Must be finite in
   *  float32, also times log2(e) (|scale| <= FLT_MAX / log2(e)): the
   *  kernels take it as a float. */
  double scale;
  clattn_mask mask;               /**< Default CLATTN_MASK_NONE. */
  clattn_algo algo;               /**< Default CLATTN_ALGO_AUTO. */
  clattn_sparse_desc sparse;      /**< Sparse mask parameters (mask >= WINDOW). */
  clattn_feature_map feature_map; /**< Linear family: φ (default ELU1). */
  /** Linear FAVOR+: m random features, 1..256 (0 = head_dim). For ELU1 and
   *  RELU it must be 0 or head_dim (their feature count is head_dim). */
  int num_features;
  /** Linear FAVOR+: seed of the random features ω (see
   *  clattn_favor_features); the same seed draws the same ω everywhere. */
  uint64_t feature_seed;
  /* ---- inference (KV cache, ragged batches); the defaults (0) keep the
   * fixed-shape problem. In these modes seq_q and seq_kv are the MAXIMA per
   * sequence the plan is built for; the actual lengths, offsets and block
   * tables are device buffers given at execution (clattn_exec_args), so one
   * plan serves every step of a generation loop. Served by the flash
   * family (the decode kernel for paged KV and seq_q <= 16, the prefill
   * kernels for ragged contiguous prefill): dense masks only (NONE, CAUSAL,
   * CAUSAL_TOP_LEFT, per sequence: the bottom-right offset is
   * seqlen_kv[b] - seqlen_q[b]). */
  clattn_kv_layout kv_layout; /**< Default CLATTN_KV_CONTIGUOUS. */
  int page_size;              /**< Paged: tokens per page, >= 1. */
  int num_pages;              /**< Paged: pages in each pool, >= 1. */
  int max_pages_per_seq;      /**< Paged: columns of block_table, >= ceil(seq_kv / page_size). */
  /** Non-zero: ragged batch. Q and O are packed [total_q][heads][d] (BSHD
   *  rows; STRIDED: q_strides.seq/head/dim, batch ignored), sequence b owning
   *  rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1 (at most seq_q of them);
   *  the LSE is [total_q][heads]. K/V: packed with cu_seqlens_kv
   *  (CONTIGUOUS) or the paged cache with seqlens_kv. A sequence of length 0
   *  produces nothing and costs nothing. */
  int ragged;
  int total_q;  /**< Ragged: rows of the packed Q and O, >= 1. */
  int total_kv; /**< Ragged CONTIGUOUS: rows of the packed K and V, >= 1. */

  /* Score modifiers (built-ins; the flash family's prefill kernels, flash
   * and flash_rows, dense and sparse masks, and its decode kernels, and the
   * backward; other kernels decline a descriptor that sets one). Each acts
   * on the
   * scaled score s = scale·qᵀk before the mask, in this order. */
  /** > 0: logit soft-capping (Gemma 2), s ← softcap·tanh(s / softcap).
   *  0: off. Finite, at most 1e30. */
  double softcap;
  /** > 0: ALiBi (BLOOM, MPT) with the standard geometric slopes for this
   *  max bias: with n the largest power of two <= heads, query head h gets
   *  slope 2^(-max_bias·(h+1)/n) for h < n and 2^(-max_bias·(2(h-n)+1)/(2n))
   *  after (max_bias 8 gives BLOOM's slopes); s ← s − slope·|p − j| with p
   *  the query's position among the keys, aligned as the causal mask is
   *  (top-left for CAUSAL_TOP_LEFT: p = i; bottom-right otherwise, as in
   *  FlashAttention: p = i + seq_kv − seq_q). 0: off. Finite, at most 1e6. */
  double alibi_max_bias;

  /* User functions: OpenCL C source compiled into the kernels (the flash
   * family's prefill kernels flash and flash_rows, every mask, and its
   * decode kernels decode and decode_warp; the backward takes mask_mod (not
   * score_mod: it would need its derivative); the other kernels decline a
   * descriptor that sets
   * one). The plan copies the text; a compile error makes plan creation
   * return CLATTN_ERROR_INVALID_ARGUMENT with the compiler's log in
   * clattn_context_last_error(). `user` is the buffer of clattn_exec_args
   * (NULL when none is given): the functions may read it, within its size
   * (the library cannot check what user code reads). Indices: b the batch
   * entry (ragged: the sequence), h the query head, q_idx the query row
   * (0 .. seq_q - 1 of the sequence), kv_idx the key (0 .. seq_kv - 1). The
   * float64 reference evaluates C twins of these functions
   * (clattn_reference_attention_ex in clattn_tools.h). */
  /** NULL, or source defining
   *    float clattn_score_mod(float score, int b, int h, int q_idx, int kv_idx,
   *                           __global const uchar *user)
   *  returning the new score from the scaled score (scale·qᵀk, after softcap
   *  and ALiBi, before the masks). At most 65536 bytes. */
  const char *score_mod;
  /** NULL, or source defining
   *    int clattn_mask_mod(int b, int h, int q_idx, int kv_idx,
   *                        __global const uchar *user)
   *  returning non-zero where query q_idx sees key kv_idx; applied together
   *  with desc.mask (a key must pass both). Rows without a visible key give
   *  zeros and LSE -inf. May be the same text as score_mod (defining both
   *  functions). At most 65536 bytes. */
  const char *mask_mod;
  /** NULL, or attention sinks (gpt-oss): one logit per query head (heads
   *  floats, natural-log units, not scaled), added to each row's softmax
   *  denominator as a key without a value: o = Σ_j e^{s_j} v_j / (Σ_j e^{s_j} +
   *  e^{sink_h}), LSE = log(Σ_j e^{s_j} + e^{sink_h}); a row that sees no key
   *  gives zeros and LSE = sink_h. Finite, |sink| <= 1e30. The plan copies
   *  them. Kernels: flash and flash_rows, and the decode kernels (decode,
   *  decode_warp: added when the splits are merged); the backward takes
   *  them (they are in the forward's LSE; no gradient of the sinks is
   *  computed). */
  const float *sinks;
  /** An additive bias or boolean mask tensor (PyTorch's attn_mask), given
   *  at execution as clattn_exec_args.bias: CLATTN_BIAS_NONE (default),
   *  CLATTN_BIAS_F32 / _F16 / _BF16 (added to the scaled score after the
   *  modifiers and the user score; -inf hides the key) or CLATTN_BIAS_BOOL
   *  (one byte, non-zero = visible). The prefill flash kernels, the decode
   *  kernels (contiguous and paged caches: key index = the position in the
   *  sequence) and the backward (clattn_plan_execute_backward_ex; no
   *  gradient of the bias); not with ragged batches. */
  int bias_type;
  /** Element strides of the bias over (batch, head, query, key) in the
   *  fields batch, head, seq, dim; 0 broadcasts a dimension (e.g. {0, 0,
   *  seq_kv, 1} for one [seq_q][seq_kv] mask shared by every batch entry
   *  and head). All >= 0. */
  clattn_strides bias_strides;
  /** Storage of K and V (see clattn_kv_dtype); default SAME. With a
   *  quantized type, k_strides / v_strides and the layouts count elements
   *  of one byte. */
  clattn_kv_dtype kv_dtype;
  /** Scale granularity of a quantized K/V (see clattn_kv_scale); default
   *  TOKEN. Ignored with kv_dtype SAME. */
  clattn_kv_scale kv_scale;
} clattn_attention_desc;

/** Element types of clattn_attention_desc.bias_type. */
enum {
  CLATTN_BIAS_NONE = 0,
  CLATTN_BIAS_F32 = 1,
  CLATTN_BIAS_F16 = 2,
  CLATTN_BIAS_BF16 = 3,
  CLATTN_BIAS_BOOL = 4
};

/** Sets every field to its default (sizes 1, seq 1, head_dim 64, f32, BHSD,
 *  scale 0, no mask, auto). Never fails; NULL is ignored. */
CLATTN_API void clattn_attention_desc_init(clattn_attention_desc *desc);

/** sizeof(clattn_attention_desc) in the linked library, so that bindings
 *  that mirror the struct (python/clattn) can check their layout at load
 *  time. Never fails. */
CLATTN_API size_t clattn_attention_desc_size(void);

/**
 * Fills *q, *k, *v, *o with the element strides that `desc` implies (for
 * BHSD/BSHD; for STRIDED, copies the given strides) and the minimal element
 * counts each buffer must hold (any pointer may be NULL).
 */
CLATTN_API clattn_status clattn_attention_desc_strides(const clattn_attention_desc *desc,
                                                       clattn_strides *q, clattn_strides *k,
                                                       clattn_strides *v, clattn_strides *o,
                                                       size_t elems[4]);

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
  CLATTN_PLAN_LAZY_WORKSPACE = 1u << 0,
  /** When the tuning database has no entry for the plan's exact problem
   *  class, tune now (clattn_tune() with a bounded budget: the environment
   *  variable CLATTN_TUNE_BUDGET in seconds, default 10) and store the
   *  result before building the plan. Without this flag a plan uses what is
   *  known: the tuned entry, the nearest tuned sequence bucket, else the
   *  library's built-in defaults. */
  CLATTN_PLAN_MEASURE = 1u << 1,
  /** Use only the portable kernels: no device-specific fast path (the NVIDIA
   *  tensor-core kernels, the CPU row-vector flash kernel). The environment
   *  variable CLATTN_PORTABLE=1 does the same for every plan of a context
   *  created while it is set. */
  CLATTN_PLAN_PORTABLE = 1u << 2,
  /** Inference plans: before each execution, read the device-side tables
   *  (cu_seqlens_q/kv, seqlens_kv, block_table) back to the host (a blocking
   *  read) and validate them; the first bad entry is reported by name and
   *  index with CLATTN_ERROR_INVALID_ARGUMENT and nothing is enqueued.
   *  Without it the kernels never touch memory outside the buffers whatever
   *  the tables hold (out-of-range pages and keys are masked, lengths are
   *  clamped to the plan's maxima) but the results of bad rows are
   *  unspecified. */
  CLATTN_PLAN_CHECK_TABLES = 1u << 3,
  /** Also choose and build the backward pass now (else it is built at the
   *  first clattn_plan_execute_backward): describe() then reports both
   *  passes and clattn_plan_workspace_size() includes the backward
   *  workspace. */
  CLATTN_PLAN_BACKWARD = 1u << 4
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
CLATTN_API clattn_status clattn_plan_create(clattn_context ctx, const clattn_attention_desc *desc,
                                            unsigned flags, clattn_plan *out);

/**
 * Like clattn_plan_create() but forces the kernel and its configuration
 * instead of looking them up. `config` is "[VARIANT:]KEY=VALUE,..." with the
 * parameters of one kernel variant of the descriptor's family (see README,
 * "Kernel variants"): e.g. "bm=64,bn=32,tm=16,tn=8" (the portable flash
 * kernel), "flash_rows:bm=16,bn=64" (the CPU flash kernel),
 * "flash_tc:warps=8,mt=1,bn=64" (NVIDIA tensor cores), "linear:chunk=32,
 * split=2048" (linear attention on FMA units), "linear_tc:..." (on tensor
 * cores); a bare variant name ("decode_tc") forces that kernel with its
 * default configuration. Without a prefix the first applicable variant
 * whose parameter names match and whose legality check passes is taken.
 * Parameters the string does not name keep their tuned or default value.
 * Every configuration passes the variant's legality check against the
 * device (CLATTN_ERROR_INVALID_ARGUMENT names the violated constraint); a named
 * variant that does not apply gives CLATTN_ERROR_UNSUPPORTED. NULL or ""
 * behaves as clattn_plan_create(). describe() reports "override". The
 * environment variable CLATTN_TUNE_OVERRIDE takes a ';'-separated list of
 * such strings for every plan of a context (entries for other families are
 * skipped).
 */
CLATTN_API clattn_status clattn_plan_create_with_config(clattn_context ctx,
                                                        const clattn_attention_desc *desc,
                                                        unsigned flags, const char *config,
                                                        clattn_plan *out);

/**
 * Enqueues the attention on the context's queue; never blocks.
 *   q, k, v: input buffers, o: output buffer, all of desc.dtype with the
 *   layout of the descriptor; each must be at least as large as the layout
 *   needs (checked with CL_MEM_SIZE) and belong to the context's cl_context
 *   (CL_MEM_CONTEXT). o must not alias q, k or v (sub-buffers included).
 *   lse: NULL, or a float32 buffer of batch·heads·seq_q elements receiving
 *   the natural-log log-sum-exp of each scaled score row, laid out
 *   [batch][heads][seq_q]; -inf for fully masked rows, NaN for rows whose
 *   scores hold NaN; must not alias q, k, v or o. Must be NULL for
 *   CLATTN_ALGO_LINEAR, which has no log-sum-exp (CLATTN_ERROR_UNSUPPORTED).
 *   num_wait / wait_list: events to wait for (may be 0 / NULL).
 *   event: NULL, or receives an event for the last command enqueued (the
 *   caller releases it).
 */
CLATTN_API clattn_status clattn_plan_execute(clattn_plan plan, cl_mem q, cl_mem k, cl_mem v,
                                             cl_mem o, cl_mem lse, cl_uint num_wait,
                                             const cl_event *wait_list, cl_event *event);

/** The buffers of one execution (clattn_plan_execute_ex). Unused members
 *  are NULL. Index tables are int32 device buffers. */
typedef struct clattn_exec_args {
  cl_mem q, k, v, o;    /**< As clattn_plan_execute (paged: k, v are the pools). */
  cl_mem lse;           /**< NULL, or float32 LSE (ragged: [total_q][heads]). */
  cl_mem cu_seqlens_q;  /**< Ragged: [batch + 1] row offsets into Q/O (first 0). */
  cl_mem cu_seqlens_kv; /**< Ragged CONTIGUOUS: [batch + 1] row offsets into K/V. */
  /** Paged (required) or contiguous (optional, decode kernel only): [batch]
   *  KV lengths, each <= seq_kv (keys past it are not attended). */
  cl_mem seqlens_kv;
  cl_mem block_table; /**< Paged: [batch][max_pages_per_seq] page indices. */
  /** NULL, or the buffer the user functions (desc.score_mod / mask_mod)
   *  read as `user`; must be NULL without them. */
  cl_mem user;
  /** The bias tensor of desc.bias_type (required with one, else NULL). */
  cl_mem bias;
  /** Quantized K/V (desc.kv_dtype): the float32 scales of k and v, laid
   *  out as desc.kv_scale says (required then, else NULL). */
  cl_mem k_scale, v_scale;
} clattn_exec_args;

/**
 * clattn_plan_execute with every buffer of the inference modes. Buffers are
 * checked as in clattn_plan_execute (sizes, context, aliasing); a table the
 * descriptor needs must be given, one it does not use must be NULL. Never
 * blocks, except under CLATTN_PLAN_CHECK_TABLES.
 */
CLATTN_API clattn_status clattn_plan_execute_ex(clattn_plan plan, const clattn_exec_args *args,
                                                cl_uint num_wait, const cl_event *wait_list,
                                                cl_event *event);

/**
 * Block sparsity of a user mask (desc.mask_mod), FlexAttention's block mask:
 * evaluates the mask over the plan's tiles (query rows × keys of its flash
 * kernel, every batch entry and head) for the given user buffer (NULL when
 * the mask reads none), keeps a class per tile (hidden, shown: no
 * per-element mask, partial: the mask is evaluated per element) and lists
 * each row block's tiles that are not hidden, which the kernels then walk
 * (hidden tiles cost nothing). From then on executions use them: call it
 * again whenever the buffer's content changes (e.g. per batch of
 * documents), and pass the same buffer to the executions. Without it the
 * kernels evaluate the mask on every tile (correct; slower: a causal mask
 * written as mask_mod costs 1.3x the native one on PoCL, 1.9x on an H100).
 * The row blocks with the most tiles start first. The classes and lists are
 * plan workspace (5·B·H·tiles_q·tiles_kv + 8·B·H·tiles_q + 16·B bytes, in
 * clattn_plan_workspace_size). Enqueued on the context's queue, never
 * blocks. A plan on a decode kernel (which evaluates the mask per key) has
 * nothing to classify: it returns at once (an event, if asked for, is a
 * marker). CLATTN_ERROR_INVALID_ARGUMENT without a mask_mod or for a ragged
 * plan (whose classes depend on its tables: clattn_plan_update_mask_blocks_ex),
 * CLATTN_ERROR_OUT_OF_MEMORY when the lists do not fit one allocation.
 */
CLATTN_API clattn_status clattn_plan_update_mask_blocks(clattn_plan plan, cl_mem user,
                                                        cl_uint num_wait,
                                                        const cl_event *wait_list,
                                                        cl_event *event);

/**
 * clattn_plan_update_mask_blocks with the user buffer args->user and, for a
 * ragged plan, the tables args->cu_seqlens_q / cu_seqlens_kv the classes are
 * made for (each sequence's tiles, q_idx / kv_idx within the sequence; the
 * other fields are not read). An execution whose tables give a sequence
 * other rows or keys than these evaluates that sequence's mask on every
 * tile (correct, slower): call it again when the batch changes.
 */
CLATTN_API clattn_status clattn_plan_update_mask_blocks_ex(clattn_plan plan,
                                                           const clattn_exec_args *args,
                                                           cl_uint num_wait,
                                                           const cl_event *wait_list,
                                                           cl_event *event);

/**
 * Merges partial attention results computed over disjoint key sets (split
 * KV, cascade / shared-prefix attention, a long context split over
 * devices): for each row r,
 *     lse[r] = log Σ_s exp(lse_s[r]),   o[r] = Σ_s exp(lse_s[r] - lse[r]) · o_s[r]
 * in the order s = 0, 1, ... (deterministic). o_parts[s]: [rows][head_dim]
 * of `dtype`; lse_parts[s]: float32 [rows] natural-log LSE (-inf: the part
 * saw no key). A row whose every part is -inf gets zeros and -inf. o may be
 * o_parts[0] (in place) but no other part, lse no part's LSE; lse may be
 * NULL. Rows pair O and LSE by index: the
 * BHSD outputs of clattn_plan_execute (rows = batch·heads·seq_q) and the
 * ragged outputs ([total_q][heads]) qualify. Enqueued on the context's
 * queue.
 */
CLATTN_API clattn_status clattn_merge_states(clattn_context ctx, clattn_dtype dtype, int rows,
                                             int head_dim, int num_states, const cl_mem *o_parts,
                                             const cl_mem *lse_parts, cl_mem o, cl_mem lse,
                                             cl_uint num_wait, const cl_event *wait_list,
                                             cl_event *event);

/**
 * Appends new tokens' K and V rows into a paged cache (vLLM's
 * reshape_and_cache): for t < num_tokens, slot = slot_mapping[t] (int32);
 * k_new / v_new row t ([num_tokens][kv_heads][head_dim], desc->dtype,
 * contiguous) is written to page slot / page_size, row slot % page_size of
 * the pools laid out as desc says (kv_layout PAGED or PAGED_HEAD_MAJOR,
 * strides). Slots < 0 (padding) and >= num_pages·page_size are skipped.
 */
CLATTN_API clattn_status clattn_kv_append(clattn_context ctx, const clattn_attention_desc *desc,
                                          cl_mem k_new, cl_mem v_new, cl_mem slot_mapping,
                                          int num_tokens, cl_mem k_pool, cl_mem v_pool,
                                          cl_uint num_wait, const cl_event *wait_list,
                                          cl_event *event);

/** The buffers of clattn_kv_append_ex. */
typedef struct clattn_kv_append_args {
  cl_mem k_new, v_new;     /**< [num_tokens][kv_heads][head_dim] of desc.dtype, contiguous. */
  cl_mem slot_mapping;     /**< int32 [num_tokens]: each token's slot (see below). */
  int num_tokens;          /**< >= 0 (0 enqueues nothing). */
  cl_mem k_cache, v_cache; /**< The cache, of desc.kv_dtype, laid out as desc says. */
  /** Quantized caches: float32 scales laid out as desc.kv_scale says.
   *  TOKEN: written (each new token's absmax / the code's largest value,
   *  per KV head); TENSOR, HEAD, CHANNEL: read. NULL otherwise. */
  cl_mem k_scale, v_scale;
} clattn_kv_append_args;

/**
 * clattn_kv_append for every cache the decode kernels read, quantizing on
 * the way when desc.kv_dtype says so (round to nearest even, saturating to
 * the code's range: ±127 for int8, ±448 for e4m3, ±57344 for e5m2; NaN stays
 * NaN for fp8 and becomes 0 for int8). Slots: paged caches as in
 * clattn_kv_append; contiguous caches slot = b·seq_kv + position, or the
 * packed row for ragged K/V (< total_kv). Slots out of range are skipped.
 * CLATTN_ERROR_INVALID_ARGUMENT when a buffer is too small or missing.
 */
CLATTN_API clattn_status clattn_kv_append_ex(clattn_context ctx, const clattn_attention_desc *desc,
                                             const clattn_kv_append_args *args, cl_uint num_wait,
                                             const cl_event *wait_list, cl_event *event);

/**
 * Training: enqueues the backward pass of the plan's attention (the
 * FlashAttention-2 algorithm: P is recomputed tile by tile from q, k and the
 * forward's log-sum-exp, no Nq×Nk matrix exists) on the context's queue;
 * never blocks. Given the forward's inputs q, k, v, its output o and lse
 * (clattn_plan_execute with a non-NULL lse, same plan), and dout = ∂L/∂O,
 * writes dq = ∂L/∂Q, dk = ∂L/∂K, dv = ∂L/∂V:
 *     D = rowsum(dO ∘ O),  P = exp(scale·QKᵀ − LSE) (masked),
 *     dV = PᵀdO,  dS = P ∘ (dO Vᵀ − D),  dQ = scale·dS K,  dK = scale·dSᵀQ.
 *   dout: desc.dtype, laid out as o (o's layout / o_strides);
 *   dq: as q, dk as k, dv as v (desc.dtype, the layout / strides of q, k, v;
 *   with CLATTN_LAYOUT_STRIDED their strides must not make two elements share
 *   an address); every element is written (GQA / MQA: dk and dv are summed
 *   over the query heads of each KV head, in a fixed order). dq, dk, dv must
 *   not alias any other argument.
 *   lse: float32 [batch][heads][seq_q], required.
 * Ragged plans take clattn_plan_execute_backward_ex (the cu_seqlens tables);
 * paged KV caches have no backward pass (CLATTN_ERROR_UNSUPPORTED).
 * Deterministic: the result is identical bit for bit from run to run on the
 * same device and configuration (every sum has a fixed order; no atomics).
 * Accumulation is float32 for every storage type. Fully masked rows give
 * zero gradients; NaN in the inputs gives NaN gradients, never a silent 0.
 * Families: flash (every mask, including the sparse ones; softcap, ALiBi,
 * attention sinks, a user mask_mod and a bias tensor, which come through
 * args->user / args->bias of clattn_plan_execute_backward_ex; not a
 * score_mod: CLATTN_ERROR_UNSUPPORTED naming it; no gradient of the sinks
 * or the bias is computed). The naive and
 * linear families have no backward yet (CLATTN_ERROR_UNSUPPORTED).
 * The backward kernels are chosen and built at the first call unless the
 * plan was created with CLATTN_PLAN_BACKWARD (errors of that build are
 * reported by this call then: CLATTN_ERROR_BUILD, _OUT_OF_MEMORY, ...).
 * The environment's CLATTN_TUNE_OVERRIDE may force the backward kernel's
 * tiling with an entry naming it, e.g. "flash_bwd:bm=16,bn=16".
 */
CLATTN_API clattn_status clattn_plan_execute_backward(clattn_plan plan, cl_mem q, cl_mem k,
                                                      cl_mem v, cl_mem o, cl_mem lse, cl_mem dout,
                                                      cl_mem dq, cl_mem dk, cl_mem dv,
                                                      cl_uint num_wait, const cl_event *wait_list,
                                                      cl_event *event);

/**
 * clattn_plan_execute_backward with the forward's buffers in a
 * clattn_exec_args: what a ragged plan needs (desc.ragged with contiguous
 * K/V): args->q, k, v, o, lse as the forward's (packed; lse [total_q][heads])
 * and args->cu_seqlens_q / cu_seqlens_kv, the tables the forward ran with;
 * dout, dq packed as q / o, dk, dv packed as k / v. A sequence of length 0
 * gets nothing written. seqlens_kv and block_table must be NULL (paged KV
 * caches have no backward: CLATTN_ERROR_UNSUPPORTED). Everything else as
 * clattn_plan_execute_backward (deterministic, never blocks).
 */
CLATTN_API clattn_status clattn_plan_execute_backward_ex(clattn_plan plan,
                                                         const clattn_exec_args *args, cl_mem dout,
                                                         cl_mem dq, cl_mem dk, cl_mem dv,
                                                         cl_uint num_wait,
                                                         const cl_event *wait_list,
                                                         cl_event *event);

/** Floating-point operations of one backward pass counted as FlashAttention
 *  does: 2.5 × clattn_plan_flops() (so causal masks halve it too). */
CLATTN_API double clattn_plan_backward_flops(clattn_plan plan);

/** One human-readable line: family, kernel configuration, and in brackets
 *  where the configuration came from: "tuned" (the tuning database's entry
 *  for the problem class), "tuned (nearest seq bucket N)", "tuned now"
 *  (CLATTN_PLAN_MEASURE), "built-in default (CLASS)" or "override (...)".
 *  Once the backward pass is built (CLATTN_PLAN_BACKWARD, or the first
 *  clattn_plan_execute_backward) "; backward: " and its kernel, configuration
 *  and workspace follow. Owned by the plan. */
CLATTN_API const char *clattn_plan_describe(clattn_plan plan);

/** Bytes of device workspace the plan owns, including, once it is built
 *  (CLATTN_PLAN_BACKWARD or the first backward call), the backward pass's:
 *  D = rowsum(dO∘O), B·H·Nq floats, and for sparse masks its tile bitmap.
 *  Forward: (flash: 0 for dense masks, the
 *  tile lists and bitmap for sparse masks, and on CPUs (flash_rows) with
 *  f16 / bf16 storage the f32 copy of k and v the kernel reads,
 *  2·B·Hk·Nk·d floats (ragged: 2·Hk·total_kv·d; none where each element
 *  would be converted once anyway or the copy exceeds the device's largest
 *  allocation or CLATTN_KV_COPY_MAX bytes, default a quarter of its global
 *  memory: then the kernel converts); naive: the score matrix,
 *  B·H·Nq·Nk floats, and any bitmap, plus for f16 / bf16 the f32 copies of
 *  q (which also receives the f32 output before it is rounded into o) and of
 *  k and v, B·H·Nq·d + 2·B·Hk·Nk·d floats; linear: the chunk states,
 *  B·Hk·chunks·F·(d+1) floats, plus for FAVOR+ the features ω, two maxima
 *  per chunk and, causal, the keys' log-features, B·Hk·seq_kv·F floats
 *  rounded up to whole chunks). */
CLATTN_API size_t clattn_plan_workspace_size(clattn_plan plan);

/**
 * Sizes a plan without making it (FFTW's "estimate"): validates `desc` and
 * chooses the family and its configuration with the very code of
 * clattn_plan_create() — the same sizing functions — but builds no program,
 * allocates and uploads nothing on the device and does not compare the
 * workspace with the device's memory, so problems far larger than the device
 * can be sized (the caller compares). *workspace_bytes receives what
 * clattn_plan_workspace_size() of the plan would return.
 * It sizes the forward pass only (the backward's workspace, B·H·Nq floats
 * for D, is added by clattn_plan_workspace_size once built).
 * Returns CLATTN_SUCCESS when the family accepts the problem (plan creation
 * may still run out of device memory, or fail to compile);
 * CLATTN_ERROR_UNSUPPORTED when the family refuses it whatever the memory —
 * e.g. the naive family at B·H·Nq·Nk >= 2^31 score elements (CLBlast's 32-bit
 * indices), or a dtype the family does not implement — with the message
 * naming the limit and *workspace_bytes holding the bytes sized before the
 * refusal (0 when it came first); CLATTN_ERROR_INVALID_ARGUMENT as
 * clattn_plan_create (*workspace_bytes 0). Device-dependent choices (the
 * linear family's chunking, a sparse mask's tile lists) are those a plan on
 * the context's device would make. Cheap: host work only.
 */
CLATTN_API clattn_status clattn_plan_estimate(clattn_context ctx, const clattn_attention_desc *desc,
                                              size_t *workspace_bytes);

/** Number of (batch, head, query, key) tuples whose score the plan's mask
 *  keeps: B·H·seq_q·seq_kv without a mask, fewer under causal and sparse
 *  masks (counted exactly at plan creation). Saturates at UINT64_MAX when
 *  the count does not fit 64 bits (e.g. B = H = N = 65536). 0 for NULL. */
CLATTN_API uint64_t clattn_plan_visible_pairs(clattn_plan plan);

/** Floating-point operations of one execute counted on the attended pairs
 *  only: 4 · head_dim · (visible pairs) (two multiply-adds per pair and
 *  feature, for Q·Kᵀ and P·V), the convention under which FlashAttention
 *  reports causal TFLOP/s; computed from the exact pair count, also where
 *  clattn_plan_visible_pairs() saturates. 0 for NULL. */
CLATTN_API double clattn_plan_flops(clattn_plan plan);

/** The descriptor the plan was made for, with defaults resolved (kv_heads,
 *  scale, algo). */
CLATTN_API const clattn_attention_desc *clattn_plan_desc(clattn_plan plan);

/** Releases the plan and its workspace. NULL is accepted. */
CLATTN_API void clattn_plan_release(clattn_plan plan);

/**
 * Linear FAVOR+ plans: draws new random features ω from `seed` (as
 * clattn_favor_features) into the plan's device buffer and records the seed
 * in clattn_plan_desc(plan)->feature_seed. Blocks until the features are
 * written; executes enqueued later use them. CLATTN_ERROR_INVALID_ARGUMENT
 * for any other plan.
 */
CLATTN_API clattn_status clattn_plan_redraw_features(clattn_plan plan, uint64_t seed);

/**
 * Draws the FAVOR+ random feature matrix ω for head_dim d and num_features m
 * (0 = d) from `seed` into out[m][d] (row-major floats), exactly as a linear
 * plan does. The generator, fixed so that a seed means the same ω in every
 * version and on every host:
 *   - splitmix64 (state = seed; state += 0x9E3779B97F4A7C15, then the usual
 *     xor-shift-multiply finaliser) gives 64-bit words; u = ((x >> 11) + 1)
 *     · 2^-53 is uniform in (0, 1];
 *   - Box-Muller turns two consecutive u1, u2 into √(−2 ln u1)·cos(2πu2),
 *     then √(−2 ln u1)·sin(2πu2): a stream of standard normals;
 *   - directions: ceil(m/d) blocks, each d×d normals drawn row by row and
 *     orthonormalised by modified Gram-Schmidt over its rows in double (a
 *     row that collapses below 1e-6 of its drawn length is redrawn); rows
 *     0..m−1 of the stacked blocks are used (the last block partially);
 *   - lengths: then, for each row f < m in order, the norm of d fresh
 *     normals (chi(d)-distributed, the Performer's regular scaling), so
 *     every ω_f is marginally N(0, I_d) while rows of a block are exactly
 *     orthogonal; ω = length · direction, rounded to float once.
 * Returns CLATTN_ERROR_INVALID_ARGUMENT for d outside 1..256, m outside
 * 0..256 or out == NULL, CLATTN_ERROR_OUT_OF_MEMORY if scratch fails.
 */
CLATTN_API clattn_status clattn_favor_features(int head_dim, int num_features, uint64_t seed,
                                               float *out);

#ifdef __cplusplus
}
#endif
/* The tuning and tools APIs (clattn_tune.h: tuner, tuning database;
 * clattn_tools.h: references, peak calibration, device capabilities,
 * per-kernel profiles) come with the core API. */
#include "clattn_tools.h"
#include "clattn_tune.h"

#endif /* CLATTN_H */
