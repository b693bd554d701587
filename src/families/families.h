/* families.h — the functions each family file gives the variant registry (variants.c). */
#ifndef CLATTN_FAMILIES_H
#define CLATTN_FAMILIES_H

#include "variant.h"

#define CLATTN__VARIANT_DECL(v)                                                                    \
  extern const char *const clattn__##v##_sources[];                                                \
  int clattn__##v##_applicable(const clattn__device_info *info, const clattn_attention_desc *d,    \
                               const char **why);                                                  \
  const char *clattn__##v##_check(const int *params, const clattn_attention_desc *d,               \
                                  const clattn__device_info *info);                                \
  bool clattn__##v##_fallback(const clattn__device_info *info, const clattn_attention_desc *d,     \
                              int *params);                                                        \
  size_t clattn__##v##_local(const int *params, const clattn_attention_desc *d);

/* A variant without the score modifiers (softcap, ALiBi) declines a
 * descriptor that sets one: first statement of its `applicable`. */
#define CLATTN__NO_MODS(d, why, kernel)                                                            \
  do {                                                                                             \
    if (clattn__desc_has_mods(d)) {                                                                \
      *(why) = "score modifiers (softcap, ALiBi, user functions) are not in the " kernel          \
               " kernel yet (flash, flash_rows: forward)";                                        \
      return 0;                                                                                    \
    }                                                                                              \
  } while (0)

/* The plan operations a family implements: create (build kernels for the
 * chosen parameters), execute (enqueue) and release. */
#define CLATTN__FAMILY_OPS_DECL(f)                                                                 \
  clattn_status clattn__##f##_create(clattn_plan p, const int *params, const char *origin);        \
  clattn_status clattn__##f##_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,   \
                                      const cl_event *wait, cl_event *event);                      \
  void clattn__##f##_release(clattn_plan p);

/* flash.c: the portable work-group kernel (cl/flash_fwd.cl), the CPU
 * row-vector kernel (cl/flash_rows.cl), the NVIDIA tensor-core kernel
 * (cl/flash_tc.cl); one argument list and one launch for the three. */
CLATTN__VARIANT_DECL(flash_wg)
CLATTN__VARIANT_DECL(flash_rows)
CLATTN__VARIANT_DECL(flash_tc)
/* flash_wgmma: Hopper warpgroup MMAs (cl/flash_wgmma.cl through PTX patching). */
CLATTN__VARIANT_DECL(flash_wgmma)
extern const clattn__param clattn__flash_wgmma_params[4];
clattn_status clattn__flash_wgmma_create(clattn_plan p, const int *params, const char *origin);
extern const clattn__param clattn__flash_wg_params[4];
extern const clattn__param clattn__flash_rows_params[2];
extern const clattn__param clattn__flash_tc_params[3];
/* flash_tcq: flash_tc with Q in local memory (-DQLOC=1); flash_tc's parameters and create. */
CLATTN__VARIANT_DECL(flash_tcq)
/* flash_tf32: f32 on tensor cores (cl/flash_tc.cl with -DTF32=1, 3xTF32); flash_tc's create. */
CLATTN__VARIANT_DECL(flash_tf32)
clattn_status clattn__flash_wg_create(clattn_plan p, const int *params, const char *origin);
clattn_status clattn__flash_tc_create(clattn_plan p, const int *params, const char *origin);
clattn_status clattn__flash_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                    const cl_event *wait, cl_event *event);
void clattn__flash_release(clattn_plan p);

/* decode.c: split-KV decode over contiguous, ragged or paged KV (cl/decode.cl). */
CLATTN__VARIANT_DECL(decode)
extern const clattn__param clattn__decode_params[5];
CLATTN__FAMILY_OPS_DECL(decode)
int clattn__decode_profile(clattn_plan p, const clattn__buffers *b, int reps, const char **names,
                           double *ms);
/* decode_warp: the same plan operations, the NVIDIA warp-stream kernel. */
CLATTN__VARIANT_DECL(decode_warp)
extern const clattn__param clattn__decode_warp_params[5];
/* decode_tc: the same plan operations, the NVIDIA tensor-core kernel (mma.sync). */
CLATTN__VARIANT_DECL(decode_tc)
extern const clattn__param clattn__decode_tc_params[6];
/* The automatic split count (splits = 0) of a decode plan: tc for decode_tc
 * (tw warps a work-group), kt keys a split's granularity, nrb row blocks,
 * allh all KV heads a work-item (CPU form). */
int clattn__decode_auto_splits(const clattn__device_info *info, const clattn_attention_desc *d,
                               bool tc, int tw, int kt, int nrb, bool allh);

/* flash_bwd.c: the deterministic backward kernels (cl/flash_bwd.cl, cl/flash_bwd_tc.cl);
 * create / execute / release work on the plan's backward state. */
CLATTN__VARIANT_DECL(flash_bwd)
CLATTN__VARIANT_DECL(flash_bwd_rows)
/* flash_bwd_tc: the NVIDIA tensor-core backward (cl/flash_bwd_tc.cl, mma.sync). */
CLATTN__VARIANT_DECL(flash_bwd_tc)
extern const clattn__param clattn__flash_bwd_tc_params[8];
extern const clattn__param clattn__flash_bwd_params[3];
extern const clattn__param clattn__flash_bwd_rows_params[1];
CLATTN__FAMILY_OPS_DECL(flash_bwd)

/* naive.c: CLBlast GEMM → masked softmax → GEMM (no tunable parameters). */
CLATTN__VARIANT_DECL(naive)
CLATTN__FAMILY_OPS_DECL(naive)

/* naive_bwd.c: the naive backward (CLBlast GEMMs per head, no parameters). */
CLATTN__VARIANT_DECL(naive_bwd)
CLATTN__FAMILY_OPS_DECL(naive_bwd)

/* linear.c: FMA kernels (every device) and tensor-core (3xTF32) state and
 * output kernels (NVIDIA sm_80+); one parameter list for both. */
CLATTN__VARIANT_DECL(linear)
CLATTN__VARIANT_DECL(linear_tc)
extern const clattn__param clattn__linear_params[25];
extern const clattn__param clattn__linear_tc_params[25];
CLATTN__FAMILY_OPS_DECL(linear)
double clattn__linear_flops(clattn_plan p);
int clattn__linear_profile(clattn_plan p, const clattn__buffers *b, int reps, const char **names,
                           double *ms);

#endif
