/* clattn_tools.h — clattn's tools API: float64 references, peak calibration, device capabilities,
 * per-kernel profiles. */
#ifndef CLATTN_TOOLS_H
#define CLATTN_TOOLS_H

#include "clattn.h"

#ifdef __cplusplus
extern "C" {
#endif

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
CLATTN_API void clattn_peak_request_init(clattn_peak_request *req);

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
CLATTN_API clattn_status clattn_measure_peak(clattn_context ctx, const clattn_peak_request *req,
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
/**
 * Host twins of the quantized K/V codes (desc.kv_dtype): the value of a code
 * (bits 0..7 of `code`) as the kernels decode it, and the code of a float as
 * clattn_kv_append_ex encodes it (round to nearest even, saturating; NaN
 * gives a NaN code for fp8 and 0 for int8). An element of a quantized cache
 * is clattn_kv_code_value(code) · its scale; a reference run on those
 * values is what the decode kernels compute. SAME gives NaN / 0.
 */
CLATTN_API float clattn_kv_code_value(clattn_kv_dtype t, unsigned code);
CLATTN_API unsigned clattn_kv_code_of(clattn_kv_dtype t, float x);

CLATTN_API clattn_status clattn_reference_attention(const clattn_attention_desc *desc,
                                                    const void *q, const void *k, const void *v,
                                                    double *o, double *lse, const int *rows,
                                                    int num_rows);

/** C twins of the descriptor's user functions (desc.score_mod / mask_mod)
 *  for clattn_reference_attention_ex: the same semantics in double
 *  precision, on the host. */
typedef struct clattn_reference_fns {
  /** Twin of clattn_score_mod (NULL: the descriptor has none). */
  double (*score_mod)(double score, int b, int h, int q_idx, int kv_idx, const void *user);
  /** Twin of clattn_mask_mod: non-zero where q_idx sees kv_idx. */
  int (*mask_mod)(int b, int h, int q_idx, int kv_idx, const void *user);
  const void *user; /**< host copy of the user buffer (may be NULL) */
  /** Host copy of the bias tensor (desc.bias_type / bias_strides), required
   *  when the descriptor has one. */
  const void *bias;
} clattn_reference_fns;

/**
 * clattn_reference_attention for a descriptor with user functions or a
 * bias tensor: fns gives the functions' C twins and the bias (required for
 * each the descriptor sets, else CLATTN_ERROR_INVALID_ARGUMENT; fns may be
 * NULL without them). The
 * reference cannot run OpenCL C: the twins are the user's statement of
 * what the kernels' functions compute.
 */
CLATTN_API clattn_status clattn_reference_attention_ex(const clattn_attention_desc *desc,
                                                       const void *q, const void *k,
                                                       const void *v, double *o, double *lse,
                                                       const int *rows, int num_rows,
                                                       const clattn_reference_fns *fns);

/**
 * Float64 host reference of the attention backward pass: the exact
 * gradients dQ, dK, dV of a loss L given dO = ∂L/∂O, for the function
 * clattn_reference_attention computes (every mask, GQA / MQA, every
 * layout and dtype). q, k, v as there; dout: host array of desc->dtype laid
 * out as o (desc's o strides / layout). dq: double [batch][heads][seq_q]
 * [head_dim]; dk, dv: double [batch][kv_heads][seq_kv][head_dim] (BHSD
 * order, GQA gradients summed over the query heads of each KV head). P and
 * O are recomputed in double from q, k, v (not taken from a forward run):
 * with S = scale·QKᵀ (masked), P = softmax(S), D_i = dO_i·O_i,
 * dS = P∘(dO Vᵀ − D), dQ = scale·dS K, dK = scale·dSᵀQ, dV = PᵀdO. A fully
 * masked row contributes nothing (its output is 0 whatever the inputs).
 * Cost O(B·H·Nq·Nk·d). Returns CLATTN_ERROR_INVALID_ARGUMENT for a bad
 * descriptor or a NULL array, CLATTN_ERROR_OUT_OF_MEMORY, and
 * CLATTN_ERROR_UNSUPPORTED for a descriptor with a score modifier (softcap,
 * ALiBi, user functions: no backward kernel takes them yet).
 */
CLATTN_API clattn_status clattn_reference_attention_backward(const clattn_attention_desc *desc,
                                                             const void *q, const void *k,
                                                             const void *v, const void *dout,
                                                             double *dq, double *dk, double *dv);

/** clattn_reference_attention_backward with the C twin of the descriptor's
 *  mask_mod (fns->mask_mod and fns->user) and the host copy of its bias
 *  tensor (fns->bias), each required when the descriptor has it, else
 *  CLATTN_ERROR_INVALID_ARGUMENT. A score_mod has no backward
 *  (CLATTN_ERROR_UNSUPPORTED). */
CLATTN_API clattn_status clattn_reference_attention_backward_ex(
    const clattn_attention_desc *desc, const void *q, const void *k, const void *v,
    const void *dout, double *dq, double *dk, double *dv, const clattn_reference_fns *fns);

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
CLATTN_API clattn_status clattn_reference_linear(const clattn_attention_desc *desc, const void *q,
                                                 const void *k, const void *v,
                                                 const float *features, double *o, const int *rows,
                                                 int num_rows);

/* ------------------------------------------------------------------------ */
/* Device capabilities and per-kernel profiles                               */
/* ------------------------------------------------------------------------ */

/** What clattn reads of a device (as `clattn devices` prints it). */
typedef struct clattn_device_caps {
  char platform_name[256], platform_version[256], vendor[256], name[256], driver[256],
      device_version[256];
  cl_device_type type;
  cl_uint compute_units;
  cl_ulong local_mem, global_mem, max_alloc; /**< bytes */
  size_t max_work_group;
  int local_is_global;          /**< local memory emulated in global memory (CPUs) */
  int fp16, fp64, subgroups;    /**< extensions */
  int nv_cc_major, nv_cc_minor; /**< NVIDIA compute capability (0 elsewhere) */
} clattn_device_caps;

/** Reads the capabilities of any OpenCL device. */
CLATTN_API clattn_status clattn_device_caps_query(cl_device_id device, clattn_device_caps *out);

/**
 * Runs the plan `reps` times, one kernel at a time with profiling events
 * (the context's queue must have profiling enabled), and returns the median
 * milliseconds of each kernel it enqueues: names[i] (static strings) and
 * ms[i] for i < *num_kernels ≤ max_kernels. A plan of one kernel reports
 * that kernel. Blocks until done.
 */
CLATTN_API clattn_status clattn_plan_profile(clattn_plan plan, cl_mem q, cl_mem k, cl_mem v,
                                             cl_mem o, int reps, int max_kernels,
                                             const char **names, double *ms, int *num_kernels);

/**
 * clattn_plan_profile with every buffer of the inference modes (paged and
 * ragged tables, quantized K/V scales, bias, user buffer), checked as
 * clattn_plan_execute_ex checks them. The decode kernels report the split
 * kernel, the merge and the idle time between the two ("gap").
 */
CLATTN_API clattn_status clattn_plan_profile_ex(clattn_plan plan, const clattn_exec_args *args,
                                                int reps, int max_kernels, const char **names,
                                                double *ms, int *num_kernels);

#ifdef __cplusplus
}
#endif

#endif
