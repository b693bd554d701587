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
 * desc.sparse and are defined, with pictures, at clattn_sparse_desc.
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
 * ignored for NONE and the causal masks. p is the query's key position (see
 * clattn_mask), j the key, "x" a visible pair; every picture is seq_q =
 * seq_kv = 8 (rows are queries, columns keys).
 *
 * Global positions (WINDOW, DILATED, STRIDED): G = {0 .. num_global-1} ∪
 * global_tokens. A global query (p ∈ G) sees every key; a global key (j ∈ G)
 * is seen by every query (Longformer).
 *
 * CLATTN_MASK_WINDOW: visible iff p - L <= j <= p + R, or p ∈ G, or j ∈ G
 * (L = window_left, R = window_right; windows longer than the sequence are
 * clipped to it; L = R = 0 is the diagonal).
 *
 *   L=2 R=1            L=2 R=0 num_global=1     L=2 R=1 tokens {5} causal
 *   x x . . . . . .    x x x x x x x x          x . . . . . . .
 *   x x x . . . . .    x x . . . . . .          x x . . . . . .
 *   x x x x . . . .    x x x . . . . .          x x x . . . . .
 *   . x x x x . . .    x x x x . . . .          . x x x . . . .
 *   . . x x x x . .    x . x x x . . .          . . x x x . . .
 *   . . . x x x x .    x . . x x x . .          x x x x x x . .
 *   . . . . x x x x    x . . . x x x .          . . . . x x x .
 *   . . . . . x x x    x . . . . x x x          . . . . . x x x
 *
 * CLATTN_MASK_DILATED: visible iff p - L <= j <= p + R and (p - j) is a
 * multiple of d = dilation (>= 1; d = 1 is WINDOW), or p ∈ G, or j ∈ G.
 * CLATTN_MASK_STRIDED (Sparse Transformer, Child et al. 2019): visible iff
 * p - L <= j <= p + R, or (p - j) is a multiple of s = stride (>= 1), or
 * p ∈ G, or j ∈ G.
 *
 *   DILATED L=R=4 d=2  STRIDED L=1 R=0 s=3 causal
 *   x . x . x . . .    x . . . . . . .
 *   . x . x . x . .    x x . . . . . .
 *   x . x . x . x .    . x x . . . . .
 *   . x . x . x . x    x . x x . . . .
 *   x . x . x . x .    . x . x x . . .
 *   . x . x . x . x    . . x . x x . .
 *   . . x . x . x .    x . . x . x x .
 *   . . . x . x . x    . x . . x . x x
 *
 * Block masks (BIGBIRD, BLOCK_LAYOUT): positions are cut into blocks of b =
 * block_size; the query is in block qb = floor(p / b), the key in block kb =
 * floor(j / b); there are nkb = ceil(seq_kv / b) blocks on each side. A pair
 * is visible iff p >= 0 and key block kb is listed for query block qb (and
 * the element options below allow it).
 *
 * CLATTN_MASK_BIGBIRD (Zaheer et al. 2020) lists for qb: every block when qb
 * < global_blocks; else the global blocks kb < global_blocks, the window
 * |kb - qb| <= window_blocks, and min(random_blocks, n) random blocks drawn
 * from the n candidates: the blocks 0 <= kb < nkb, in ascending order, that
 * are neither global nor in the window (nor kb > qb when causal). The draw
 * is a partial Fisher-Yates shuffle of the candidates c[0..n-1]: for t = 0,
 * 1, .. it swaps c[t] with c[t + z_t mod (n - t)] and takes c[t], where z_t
 * is the (t+1)-th output of splitmix64 seeded with
 *     seed XOR ((qb + 1) * 0xD1B54A32D192ED03)   (mod 2^64)
 * (splitmix64: x += 0x9E3779B97F4A7C15; z = x; z = (z ^ z>>30) *
 * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31).
 * The layout is therefore a pure function of (seed, seq_kv and the fields):
 * the same seed gives the same output bits on a device.
 *
 *   b=2 window_blocks=0 global_blocks=1 random_blocks=1
 *   seed=1             seed=2
 *   x x x x x x x x    x x x x x x x x
 *   x x x x x x x x    x x x x x x x x
 *   x x x x . . x x    x x x x . . x x
 *   x x x x . . x x    x x x x . . x x
 *   x x . . x x x x    x x . . x x x x
 *   x x . . x x x x    x x . . x x x x
 *   x x x x . . x x    x x . . x x x x
 *   x x x x . . x x    x x . . x x x x
 *
 * CLATTN_MASK_BLOCK_LAYOUT: the caller's layout in CSR form. layout_rows
 * must be nkb (one row per query block); row r lists the key blocks
 * layout_cols[layout_row_offsets[r] .. layout_row_offsets[r+1]-1], strictly
 * increasing, each in 0..nkb-1; layout_row_offsets[0] = 0 and the offsets
 * are non-decreasing. An empty row makes its queries output zeros (LSE
 * -inf). The file format of `clattn run --mask layout:FILE` is in the CLI's
 * help.
 *
 *   b=2, rows {0} {1} {} {0,3}     the same, causal
 *   x x . . . . . .                x . . . . . . .
 *   x x . . . . . .                x x . . . . . .
 *   . . x x . . . .                . . x . . . . .
 *   . . x x . . . .                . . x x . . . .
 *   . . . . . . . .                . . . . . . . .
 *   . . . . . . . .                . . . . . . . .
 *   x x . . . . x x                x x . . . . x .
 *   x x . . . . x x                x x . . . . x x
 *
 * Element options, for every sparse mask: `causal` also requires j <= p
 * (global tokens and blocks included; with WINDOW it makes window_right
 * irrelevant). For the block masks `element_window` also requires p - L <=
 * j <= p + R inside the listed blocks.
 *
 * Cost. The flash family walks, for each tile of BM queries, only the
 * BN-key tiles that hold a visible pair (lists built once at plan creation
 * and kept on the device, 4 bytes per listed tile plus 8 per query tile);
 * tiles with no visible pair cost no memory traffic and no arithmetic, and
 * tiles whose every pair is visible skip the per-element mask. Work is
 * O(listed tiles · BM · BN · d), memory O(B·H·N) plus the lists and the
 * bitmap: for explicit global tokens ceil(seq_kv / 32) words, for the block
 * masks (query blocks · ceil(nkb / 32)) words, about nkb²/8 bytes (a
 * small block_size on a long sequence is refused with
 * CLATTN_ERROR_OUT_OF_MEMORY naming the bytes). The naive family computes
 * the dense score matrix (workspace B·H·seq_q·seq_kv·4 bytes, plus the f32
 * copies of q, k and v under f16 / bf16 storage) and evaluates the same mask
 * inline in its softmax kernel (plus the same bitmap); it keeps no N×N mask
 * buffer. clattn_plan_visible_pairs() counts the pairs.
 *
 * Validation (clattn_plan_create and clattn_reference_attention): negative
 * windows, counts or block indices, dilation / stride / block_size < 1,
 * global tokens outside 0..seq_kv-1, a wrong layout_rows, NULL arrays,
 * non-monotone offsets, unsorted or duplicate columns are rejected with
 * CLATTN_ERROR_INVALID_ARGUMENT and a message naming the field. Arrays are
 * copied by clattn_plan_create(); clattn_plan_desc() points at the plan's
 * copies (global tokens sorted, duplicates removed).
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
 * families, or j <= i under CLATTN_MASK_CAUSAL_TOP_LEFT), in O(N·F·d) time by reassociation: o_i = φ(q'_i)ᵀS / φ(q'_i)ᵀz
 * with the state S = Σ_j φ(k'_j) v_jᵀ (F×d) and z = Σ_j φ(k'_j).
 * The scale enters as in softmax attention: q' = sign(scale)·√|scale|·q and
 * k' = √|scale|·k, so q'ᵀk' = scale·qᵀk is what the kernel approximates
 * (with scale = 1, elu+1 is exactly Katharopoulos et al.'s φ; relu is
 * invariant to the scale). A row whose weights are all zero (relu features
 * that are all zero, exp underflow, or no visible key) gives zeros, never
 * NaN. Linear attention has no log-sum-exp: execute with lse = NULL.
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
  clattn_feature_map feature_map; /**< Linear family: φ (default ELU1). */
  /** Linear FAVOR+: m random features, 1..256 (0 = head_dim). For ELU1 and
   *  RELU it must be 0 or head_dim (their feature count is head_dim). */
  int num_features;
  /** Linear FAVOR+: seed of the random features ω (see
   *  clattn_favor_features); the same seed draws the same ω everywhere. */
  uint64_t feature_seed;
} clattn_attention_desc;

/** Sets every field to its default (sizes 1, seq 1, head_dim 64, f32, BHSD,
 *  scale 0, no mask, auto). Never fails; NULL is ignored. */
void clattn_attention_desc_init(clattn_attention_desc *desc);

/** sizeof(clattn_attention_desc) in the linked library, so that bindings
 *  that mirror the struct (python/clattn) can check their layout at load
 *  time. Never fails. */
size_t clattn_attention_desc_size(void);

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
  CLATTN_PLAN_LAZY_WORKSPACE = 1u << 0,
  /** When the tuning database has no entry for the plan's exact problem
   *  class, tune now (clattn_tune() with a bounded budget: the environment
   *  variable CLATTN_TUNE_BUDGET in seconds, default 10) and store the
   *  result before building the plan. Without this flag a plan uses what is
   *  known: the tuned entry, the nearest tuned sequence bucket, else the
   *  library's built-in defaults. */
  CLATTN_PLAN_MEASURE = 1u << 1
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
 * Like clattn_plan_create() but forces the kernel configuration instead of
 * looking it up: `config` is a configuration string of the chosen family's
 * kernel, e.g. "bm=64,bn=32,tm=16,tn=8" for flash (the syntax of the
 * CLATTN_TUNE_OVERRIDE environment variable, which forces a configuration
 * for every plan). The configuration is checked against the device's limits
 * (CLATTN_ERROR_INVALID_ARGUMENT names the violated constraint). NULL or ""
 * behaves as clattn_plan_create(). describe() reports "override".
 * The linear family's string is any subset of "chunk=C,split=L,bd=..,bks=..,
 * srf=..,src=..,bq=..,arq=..,arc=..,afs=..,bpw=..,ctr=..,ctc=..,cfs=..,
 * fbr=..,frr=..,frf=..,fds=.." (L: keys per state split, for causal masks
 * the segment each work-group walks in chunks of C keys; the others tile the
 * kernels, see src/linear.h and cl/linear.cl); the environment variable
 * CLATTN_LINEAR_OVERRIDE has the same syntax.
 */
clattn_status clattn_plan_create_with_config(clattn_context ctx,
                                             const clattn_attention_desc *desc, unsigned flags,
                                             const char *config, clattn_plan *out);

/**
 * Enqueues the attention on the context's queue; never blocks.
 *   q, k, v: input buffers, o: output buffer, all of desc.dtype with the
 *   layout of the descriptor; each must be at least as large as the layout
 *   needs (checked with CL_MEM_SIZE). o must not alias q, k or v.
 *   lse: NULL, or a float32 buffer of batch·heads·seq_q elements receiving
 *   the natural-log log-sum-exp of each scaled score row, laid out
 *   [batch][heads][seq_q]; -inf for fully masked rows. Must be NULL for
 *   CLATTN_ALGO_LINEAR, which has no log-sum-exp (CLATTN_ERROR_UNSUPPORTED).
 *   num_wait / wait_list: events to wait for (may be 0 / NULL).
 *   event: NULL, or receives an event for the last command enqueued (the
 *   caller releases it).
 */
clattn_status clattn_plan_execute(clattn_plan plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                  cl_mem lse, cl_uint num_wait, const cl_event *wait_list,
                                  cl_event *event);

/** One human-readable line: family, kernel configuration, and in brackets
 *  where the configuration came from: "tuned" (the tuning database's entry
 *  for the problem class), "tuned (nearest seq bucket N)", "tuned now"
 *  (CLATTN_PLAN_MEASURE), "built-in default (CLASS)" or "override (...)".
 *  Owned by the plan. */
const char *clattn_plan_describe(clattn_plan plan);

/** Bytes of device workspace the plan owns (flash: 0 for dense masks, the
 *  tile lists and bitmap for sparse masks; naive: the score matrix,
 *  B·H·Nq·Nk floats, and any bitmap, plus for f16 / bf16 the f32 copies of
 *  q (which also receives the f32 output before it is rounded into o) and of
 *  k and v, B·H·Nq·d + 2·B·Hk·Nk·d floats; linear: the chunk states,
 *  B·Hk·chunks·F·(d+1) floats, plus for FAVOR+ the features ω, two maxima
 *  per chunk and, causal, the keys' log-features, B·Hk·seq_kv·F floats
 *  rounded up to whole chunks). */
size_t clattn_plan_workspace_size(clattn_plan plan);

/**
 * Sizes a plan without making it (FFTW's "estimate"): validates `desc` and
 * chooses the family and its configuration with the very code of
 * clattn_plan_create() — the same sizing functions — but builds no program,
 * allocates and uploads nothing on the device and does not compare the
 * workspace with the device's memory, so problems far larger than the device
 * can be sized (the caller compares). *workspace_bytes receives what
 * clattn_plan_workspace_size() of the plan would return.
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
clattn_status clattn_plan_estimate(clattn_context ctx, const clattn_attention_desc *desc,
                                   size_t *workspace_bytes);

/** Number of (batch, head, query, key) tuples whose score the plan's mask
 *  keeps: B·H·seq_q·seq_kv without a mask, fewer under causal and sparse
 *  masks (counted exactly at plan creation). 0 for NULL. */
uint64_t clattn_plan_visible_pairs(clattn_plan plan);

/** Floating-point operations of one execute counted on the attended pairs
 *  only: 4 · head_dim · clattn_plan_visible_pairs() (two multiply-adds per
 *  pair and feature, for Q·Kᵀ and P·V), the convention under which
 *  FlashAttention reports causal TFLOP/s. 0 for NULL. */
double clattn_plan_flops(clattn_plan plan);

/** The descriptor the plan was made for, with defaults resolved (kv_heads,
 *  scale, algo). */
const clattn_attention_desc *clattn_plan_desc(clattn_plan plan);

/** Releases the plan and its workspace. NULL is accepted. */
void clattn_plan_release(clattn_plan plan);

/**
 * Linear FAVOR+ plans: draws new random features ω from `seed` (as
 * clattn_favor_features) into the plan's device buffer and records the seed
 * in clattn_plan_desc(plan)->feature_seed. Blocks until the features are
 * written; executes enqueued later use them. CLATTN_ERROR_INVALID_ARGUMENT
 * for any other plan.
 */
clattn_status clattn_plan_redraw_features(clattn_plan plan, uint64_t seed);

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
clattn_status clattn_favor_features(int head_dim, int num_features, uint64_t seed, float *out);

/* ------------------------------------------------------------------------ */
/* Device peak calibration                                                   */
/* ------------------------------------------------------------------------ */

/** What clattn_measure_peak() measures. Initialise with
 *  clattn_peak_request_init(). */
typedef struct clattn_peak_request {
  /** Bytes of the copy's source (and destination) buffer. Default 256 MiB;
   *  capped at a quarter of the global memory and at the largest single
   *  allocation, rounded down to whole grid-stride rounds of float4. */
  size_t copy_bytes;
  /** Target duration of one FMA run in ms: the run length is calibrated to
   *  it (doubling, then scaling). Default 20. */
  double fma_ms;
  /** Timed runs of each kernel after one warm-up run; the median is
   *  reported. Default 7, at most 1000. */
  int runs;
} clattn_peak_request;

/** Result of clattn_measure_peak(); times are OpenCL profiling START..END of
 *  the kernel, in ms. */
typedef struct clattn_peak_result {
  double fma_gflops; /**< f32 multiply-add rate, 2 FLOP per FMA, median run (GFLOP/s) */
  double copy_gbps;  /**< bytes read + bytes written per second of the median run / 1e9 */
  double fma_ms, fma_min_ms, fma_max_ms;
  double copy_ms, copy_min_ms, copy_max_ms;
  double fma_flop;       /**< FLOP of one FMA run */
  size_t fma_work_items; /**< work-items of the FMA kernel (8 work-groups per compute unit) */
  int fma_iterations;    /**< loop iterations per work-item (32 FMAs of vector_width lanes) */
  int vector_width;      /**< float lanes per FMA: the device's native float vector width */
  size_t copy_bytes;     /**< bytes read (= bytes written) by one copy run */
  int runs;              /**< timed runs of each kernel */
} clattn_peak_result;

/** Sets the defaults listed in clattn_peak_request. NULL is ignored. */
void clattn_peak_request_init(clattn_peak_request *req);

/**
 * Measures the context's device with two small built-in kernels
 * (cl/peak.cl), so that achieved rates can be stated as a fraction of what
 * the device does: the f32 FMA rate (8 independent multiply-add chains per
 * work-item on vectors of the device's native float width — 1 on GPUs, the
 * SIMD width on CPUs —, 8 work-groups per compute unit, the sum written out)
 * and the copy bandwidth (one vector of at least 4 floats per work-item,
 * between two buffers filled beforehand). Each kernel runs once to warm up,
 * then req->runs times; the median START..END of the profiling events is
 * reported. req may be NULL (defaults). Blocks until done (about (runs + 2) ·
 * fma_ms plus the copies). Errors: INVALID_ARGUMENT (a request field),
 * UNSUPPORTED (the queue has no profiling: a context from
 * clattn_context_create_from_queue without CL_QUEUE_PROFILING_ENABLE),
 * OUT_OF_MEMORY (the copy buffers), BUILD, OPENCL.
 */
clattn_status clattn_measure_peak(clattn_context ctx, const clattn_peak_request *req,
                                  clattn_peak_result *out);

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

/**
 * Float64 host reference of linear attention (the formula documented at
 * clattn_feature_map), computed in its naive quadratic form — each weight
 * w_ij = φ(q'_i)ᵀφ(k'_j) explicitly, causally masked — so that it checks the
 * chunked device kernels independently. desc's feature_map, num_features,
 * feature_seed, mask (NONE or a causal mask) and scale are used whatever desc->algo
 * says. features: NULL to draw ω from desc->feature_seed exactly as the plan
 * does (so clattn_plan_desc(plan) reproduces a plan, also after
 * clattn_plan_redraw_features), or num_features×head_dim floats (FAVOR+
 * only; ignored otherwise). FAVOR+ in double: query features divided by their
 * row maximum, key features by the maximum over every key and feature of the
 * head (constants that cancel). q, k, v, o, rows, num_rows as in
 * clattn_reference_attention (no lse). Cost O(B·H·Nq·Nk·(F + d)).
 * Returns CLATTN_ERROR_INVALID_ARGUMENT for a bad descriptor or argument,
 * CLATTN_ERROR_UNSUPPORTED for a sparse mask, CLATTN_ERROR_OUT_OF_MEMORY.
 *
 * clattn_reference_attention() itself computes exact softmax attention for
 * every descriptor; to compare linear attention with softmax attention, call
 * both on the same inputs.
 */
clattn_status clattn_reference_linear(const clattn_attention_desc *desc, const void *q,
                                      const void *k, const void *v, const float *features,
                                      double *o, const int *rows, int num_rows);

/* ------------------------------------------------------------------------ */
/* Tuning and caches                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Kernel configurations (tile sizes) are tuned per device and problem class
 * and kept in a tuning database, one human-readable text file per device:
 *
 *     <cache>/<device>-<hash>/tuning.txt
 *
 * where <cache> is $CLATTN_CACHE_DIR, else $XDG_CACHE_HOME/clattn, else
 * ~/.cache/clattn, and <hash> covers the platform, vendor, device name,
 * driver version and NVIDIA compute capability. CLATTN_CACHE_DIR=off
 * disables the database and the program-binary cache (compiled kernels,
 * kept beside it in <cache>/<device>-<hash>/programs/).
 *
 * A problem class is (kernel, dtype, head-dim bucket, mask kind, sequence
 * bucket). Head dims 32, 64, 80, 96, 128 and 256 are their own bucket; other
 * head dims are padded up to a multiple of 16. Sequence buckets follow
 * seq_q: powers of two up to 1024 (16, 32, ..., 1024; shorter sequences go
 * to 16), then 1025..4096, 4097..16384 and above 16384 ("inf"). Entries carry
 * a hash of the kernel source: a changed kernel ignores older entries.
 */

/** Progress of clattn_tune(), passed to the callback after each candidate. */
typedef struct clattn_tune_progress {
  int done;           /**< candidates measured or discarded so far */
  int total;          /**< candidates the search expects to try (an estimate
                           when sampling under a time budget) */
  int space_size;     /**< legal configurations in the search space */
  double elapsed_s;   /**< seconds since the start */
  double eta_s;       /**< estimated seconds left (negative when unknown) */
  double best_ms;     /**< best median so far (negative before the first) */
  const char *best_config; /**< its configuration ("" before the first) */
  const char *config; /**< the candidate just handled */
  double ms;          /**< its median time (negative: it failed to build or run) */
  const char *phase;  /**< "exhaustive", "sample", "refine" or "verify" */
} clattn_tune_progress;

/** Progress callback; return non-zero to stop the search early (the best
 *  configuration so far is still verified and reported). */
typedef int (*clattn_tune_progress_fn)(const clattn_tune_progress *progress, void *user);

/** Tuning flags (bitwise or). */
enum {
  CLATTN_TUNE_DEFAULT = 0,
  /** Do not write the result to the tuning database. */
  CLATTN_TUNE_NO_STORE = 1u << 0,
  /** Try every legal configuration (within the budget) however large the
   *  space; without it, spaces above 48 configurations are sampled at random
   *  and then refined around the best (neighbours in each parameter). */
  CLATTN_TUNE_EXHAUSTIVE = 1u << 1
};

/** What to tune. Initialise with clattn_tune_request_init(). */
typedef struct clattn_tune_request {
  clattn_algo algo;     /**< kernel family: CLATTN_ALGO_FLASH (AUTO = flash) */
  clattn_dtype dtype;   /**< storage type. Default f32. */
  int head_dim;         /**< timed at its bucket's head dim. Default 64. */
  clattn_mask mask;     /**< CLATTN_MASK_NONE or a causal mask. */
  int seq;              /**< seq_q = seq_kv of the timed problem; the result is
                             stored for its bucket. Default 4096. */
  int batch, heads;     /**< timed problem's batch and heads; 0 (default):
                             batch 1 and enough heads to fill the device */
  double budget_seconds; /**< wall-clock budget of the search, compilation
                              included (the default configuration is always
                              measured). Default 60. */
  /** NULL, or restricts parameter values: "bm=16,32;tn=4" (parameters not
   *  named keep every legal value). The built-in default is always tried. */
  const char *space;
  unsigned flags;        /**< CLATTN_TUNE_* */
  uint64_t seed;         /**< sampling and random data. Default 1. */
  clattn_tune_progress_fn progress; /**< may be NULL */
  void *user;            /**< passed to progress */
} clattn_tune_request;

/** Result of clattn_tune(). */
typedef struct clattn_tune_result {
  char problem_class[160]; /**< "flash f32 d=64 mask=none seq=4096" */
  char best_config[128];   /**< e.g. "bm=64,bn=64,tm=16,tn=4" */
  char default_config[128]; /**< the built-in default for this device */
  double best_ms;          /**< median time of the best configuration */
  double default_ms;       /**< median time of the built-in default */
  double speedup;          /**< default_ms / best_ms (≥ 1: the default is a candidate) */
  int tried;               /**< candidates measured or discarded */
  int failed;              /**< of which failed to build or run */
  int space_size;          /**< legal configurations in the space */
  int exhaustive;          /**< 1 when every legal configuration was tried */
  int verified;            /**< 1 when the best passed the reference check */
  double max_rel_error;    /**< its ‖out − ref‖ / ‖ref‖ on the rows checked */
  int stored;              /**< 1 when written to the tuning database */
  double elapsed_s;        /**< wall-clock seconds of the whole call */
  int batch, heads, seq, head_dim; /**< the timed problem */
} clattn_tune_result;

/** Sets the defaults listed in clattn_tune_request. NULL is ignored. */
void clattn_tune_request_init(clattn_tune_request *req);

/**
 * Tunes one problem class on the context's device: enumerates the kernel's
 * legal configurations (local memory, work-group and register limits prune
 * the space), builds and times candidates with OpenCL profiling events on
 * random inputs of the requested size (one warm-up, then the median of
 * several runs), skips candidates that fail to build or run, verifies the
 * winner against clattn_reference_attention() (a subset of rows for large
 * problems) and stores it in the tuning database (unless
 * CLATTN_TUNE_NO_STORE or caches are off). Plans created afterwards for the
 * class use it. Errors: INVALID_ARGUMENT (bad request or space), VERIFY (no
 * measured configuration passed the check; nothing stored), OPENCL /
 * OUT_OF_MEMORY (the inputs could not be set up), IO (the database could
 * not be written; *result is still filled).
 */
clattn_status clattn_tune(clattn_context ctx, const clattn_tune_request *req,
                          clattn_tune_result *result);

/** Writes the path of the context's tuning database into buf (whether or
 *  not the file exists yet). UNSUPPORTED when caches are disabled. */
clattn_status clattn_tunedb_path(clattn_context ctx, char *buf, size_t cap);

/** Copies the context's tuning database (its device header and every entry)
 *  to `path`, e.g. to move tuning results to another machine. IO on failure;
 *  an empty database exports a header only. */
clattn_status clattn_tunedb_export(clattn_context ctx, const char *path);

/**
 * Merges the entries of an exported database into the context's one (an
 * imported entry replaces the entry of the same class and kernel source).
 * The file must be for the same device (platform, vendor, device name and
 * compute capability; a different driver version is accepted with a note).
 * *imported (may be NULL) receives the number of entries merged. Corrupt
 * lines are skipped with a note in clattn_context_last_error().
 */
clattn_status clattn_tunedb_import(clattn_context ctx, const char *path, int *imported);

#ifdef __cplusplus
}
#endif
#endif /* CLATTN_H */
