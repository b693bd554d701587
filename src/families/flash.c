/* flash.c — the flash family's variants: work-group, CPU row-vector and NVIDIA tensor-core kernels.
 */
#include "families.h"
#include "checked.h"
#include "sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flash_state {
  cl_kernel kernel;
  int bm;  /* query rows per work-group */
  int bn;  /* keys per tile */
  int nt;  /* work-items per work-group */
  int nqb; /* query blocks */
  /* desc.mask_mod: the block classifier (cl/mask_blocks.cl) and its
   * classes, once clattn_plan_update_mask_blocks made them */
  cl_kernel classify, lists, order_k;
  cl_mem cls, list, count, order, stamp; /* stamp: ragged, the tables the classes are for */
  int use_blocks;
  cl_mem sinks; /* desc.sinks on the device */
  /* flash_rows with 16-bit storage: the f32 copy of K and V the kernel reads
   * (cl/flash_rows.cl, KV_F32), written once per call by `convert`; NULL
   * when K/V are converted in the kernel */
  cl_kernel convert;
  cl_mem kf, vf;
  clattn_strides cs; /* the copy's strides, K and V alike */
  int copy_batch;    /* batch entries of the copy: batch, 1 for packed ragged K/V */
  int copy_rows;     /* rows per (entry, kv head): seq_kv, total_kv for packed ragged K/V */
  size_t copy_bytes; /* of both copies */
  /* the last call's flash kernel, the copy's last reader: the next call's
   * conversion waits for it (out-of-order queues) */
  cl_event copy_reader;
} flash_state;

/* ---- parameters and their legal values ----------------------------------- */

static const int pow2_8_128[] = {8, 16, 32, 64, 128};
static const int pow2_1_32[] = {1, 2, 4, 8, 16, 32};
static const int rows_bm[] = {8, 16};
static const int tc_warps[] = {2, 4, 8};
static const int tc_mt[] = {1, 2};
static const int tc_bn[] = {16, 32, 64, 128};
static const int wgmma_wgs[] = {1, 2, 3};
static const int wgmma_st[] = {1, 2, 3};
static const int wgmma_bn[] = {32, 64, 128};
static const int wgmma_ld[] = {0, 1};
#define VALS(a) a, (int)(sizeof(a) / sizeof(a)[0])

/* bm query rows per work-group, bn keys per tile, tm × tn work-items. */
const clattn__param clattn__flash_wg_params[4] = {{"bm", 1, 1024, VALS(pow2_8_128)},
                                                  {"bn", 1, 1024, VALS(pow2_8_128)},
                                                  {"tm", 1, 1024, VALS(pow2_1_32)},
                                                  {"tn", 1, 1024, VALS(pow2_1_32)}};
/* bm query rows (the vector width) per work-item, bn keys per tile. */
const clattn__param clattn__flash_rows_params[2] = {{"bm", 1, 1024, VALS(rows_bm)},
                                                    {"bn", 1, 1024, VALS(pow2_8_128)}};
/* warps per work-group, m-tiles (16 query rows) per warp, keys per tile. */
const clattn__param clattn__flash_tc_params[3] = {
    {"warps", 1, 32, VALS(tc_warps)}, {"mt", 1, 2, VALS(tc_mt)}, {"bn", 16, 1024, VALS(tc_bn)}};

/* computing warpgroups per work-group (taking turns at the S MMAs with 2 or 3), keys per tile,
 * K/V stages in local memory (3: three K and two V tiles, S of the next tile issued with P·V of
 * this one), a loader warpgroup issuing the copies (1, with st = 3). */
const clattn__param clattn__flash_wgmma_params[4] = {{"wgs", 1, 3, VALS(wgmma_wgs)},
                                                     {"bn", 32, 128, VALS(wgmma_bn)},
                                                     {"st", 1, 3, VALS(wgmma_st)},
                                                     {"ld", 0, 1, VALS(wgmma_ld)}};
const char *const clattn__flash_wgmma_sources[] = {"nv_mma.cl", "wgmma.cl", "flash_wgmma.cl", NULL};
const char *const clattn__flash_wg_sources[] = {"flash_fwd.cl", NULL};
const char *const clattn__flash_rows_sources[] = {"flash_rows.cl", NULL};
const char *const clattn__flash_tc_sources[] = {"nv_mma.cl", "flash_tc.cl", NULL};
/* flash_tcq: the same kernel with Q in local memory (-DQLOC=1), flash_tc's parameters. */
const char *const clattn__flash_tcq_sources[] = {"nv_mma.cl", "flash_tc.cl", NULL};
/* flash_tf32: the same kernel for f32 (3xTF32, -DTF32=1), with flash_tc's parameters. */
const char *const clattn__flash_tf32_sources[] = {"nv_mma.cl", "tf32.cl", "flash_tc.cl", NULL};

/* ---- the portable work-group kernel (cl/flash_fwd.cl) ---------------------- */

static int dp_of(int head_dim) { return (head_dim + 3) / 4 * 4; } /* DP: head dim padded to 4 */

/* Paged KV caches: the decode kernel serves them. Ragged batches with
 * contiguous K/V and seq_q > 16 (prefill) are served by the three prefill
 * kernels (-DRAGGED, cl/common.cl). */
static bool inference_mode(const clattn_attention_desc *d, const char **why) {
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS) {
    *why = "paged KV (the decode kernel serves it)";
    return true;
  }
  if (d->ragged && d->seq_q <= 16) {
    *why = "ragged decode (seq_q <= 16: the decode kernel serves it)";
    return true;
  }
  return false;
}

int clattn__flash_wg_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                const char **why) {
  (void)info;
  if (inference_mode(d, why)) return 0;
  return 10; /* every device, every mask */
}

size_t clattn__flash_wg_local(const int *p, const clattn_attention_desc *d) {
  const size_t bm = (size_t)p[0], bn = (size_t)p[1], tn = (size_t)p[3];
  const size_t ld = (size_t)dp_of(d->head_dim) + 4;
  return (bm * ld + bn * ld + bn * (bm + 4) + bm * tn) * sizeof(float);
}

const char *clattn__flash_wg_check(const int *p, const clattn_attention_desc *d,
                                   const clattn__device_info *info) {
  const int bm = p[0], bn = p[1], tm = p[2], tn = p[3];
  if (bm < 1 || bn < 1 || tm < 1 || tn < 1 || bm > 1024 || bn > 1024 || tm > 1024 || tn > 1024)
    return "parameters must lie in 1..1024";
  if (bm % tm) return "bm must be a multiple of tm";
  if (bn % tn) return "bn must be a multiple of tn";
  if (tm * tn == 1) return "tm*tn = 1 is no work-group kernel (the CPU kernel is flash_rows)";
  if ((size_t)(tm * tn) > info->max_wg) return "tm*tn exceeds the device's work-group size";
  if (clattn__flash_wg_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  const int rm = bm / tm, rn = bn / tn;
  const int nch = dp_of(d->head_dim) / 4, rc = (nch + tn - 1) / tn;
  if (rm > 16 || rn > 16) return "per-item register tile larger than 16";
  if (rm * rc * 4 > 128 || rm * rn > 64) return "per-item accumulators exceed the register budget";
  return NULL;
}

bool clattn__flash_wg_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                               int *out) {
  /* Preference list; the first legal entry wins. */
  static const int prefs[][4] = {{64, 32, 16, 8}, {64, 16, 16, 8}, {32, 32, 8, 16}, {32, 16, 8, 8},
                                 {16, 16, 4, 16}, {16, 16, 4, 8},  {16, 16, 4, 4},  {8, 8, 2, 4},
                                 {8, 8, 2, 2},    {8, 8, 2, 1}};
  for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++)
    if (!clattn__flash_wg_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  /* Nothing preferred fits (large head dims, small devices): the legal
   * configuration with the most work per tile, then the most work-items. */
  bool found = false;
  long best = -1;
  for (int a = 0; a < 5; a++)
    for (int b = 0; b < 5; b++)
      for (int c = 0; c < 6; c++)
        for (int e = 0; e < 6; e++) {
          const int cfg[4] = {pow2_8_128[a], pow2_8_128[b], pow2_1_32[c], pow2_1_32[e]};
          if (clattn__flash_wg_check(cfg, d, info)) continue;
          const long score = (long)cfg[0] * cfg[1] * 1024 + cfg[2] * cfg[3];
          if (score > best) {
            best = score;
            memcpy(out, cfg, sizeof cfg);
            found = true;
          }
        }
  return found;
}

/* ---- the CPU row-vector kernel (cl/flash_rows.cl) ------------------------ */

/* flash_rows with 16-bit storage: K and V are converted once per call into an
 * f32 copy (each element once, instead of once per query block and query
 * head of its GQA group) when that is more than one conversion per element
 * and the copy fits: each tensor within the device's largest allocation,
 * both within CLATTN_KV_COPY_MAX bytes (default a quarter of the device's
 * global memory). Else false, with the reason in why. *bytes: both copies.
 * A quantized K/V (desc.kv_dtype) is always copied (decoded and scaled):
 * flash_rows reads it no other way, and its `applicable` checked that a copy
 * fits the device's largest allocation. */
static bool rows_kv_copy(clattn_plan p, int nqb, size_t *bytes, char *why, size_t cap) {
  const clattn_attention_desc *d = &p->desc;
  const clattn__device_info *info = &p->ctx->info;
  const clattn__settings *set = &p->ctx->settings;
  const bool quant = d->kv_dtype != CLATTN_KV_DTYPE_SAME;
  *bytes = 0;
  why[0] = 0;
  if (d->dtype == CLATTN_DTYPE_F32 && !quant) return false;
  if ((int64_t)nqb * (d->heads / d->kv_heads) < 2 && !quant) {
    snprintf(why, cap, "each K/V element is read by one query block only");
    return false;
  }
  const bool packed = d->ragged != 0; /* [total_kv][Hk][d]: one run of rows */
  const size_t rows = (size_t)(packed ? d->total_kv : d->seq_kv);
  size_t one = 0;
  if (!clattn__mul3_size(packed ? 1 : (size_t)d->batch, (size_t)d->kv_heads, rows, &one) ||
      !clattn__mul3_size(one, (size_t)d->head_dim, sizeof(float), &one) ||
      !clattn__mul_size(one, 2, bytes)) {
    snprintf(why, cap, "the size of an f32 copy overflows size_t");
    *bytes = 0;
    return false;
  }
  const uint64_t limit = quant                  ? UINT64_MAX
                         : set->kv_copy_max_set ? set->kv_copy_max
                                                : info->global_mem / 4;
  if (one > info->max_alloc) {
    snprintf(why, cap, "an f32 copy of %zu bytes exceeds the device's largest allocation (%llu)",
             one, (unsigned long long)info->max_alloc);
  } else if (*bytes > limit) {
    snprintf(why, cap, "an f32 copy of K and V (%zu bytes) exceeds %llu bytes (%s)", *bytes,
             (unsigned long long)limit,
             set->kv_copy_max_set ? "CLATTN_KV_COPY_MAX" : "a quarter of the device's memory");
  } else {
    return true;
  }
  *bytes = 0;
  return false;
}

/* Rows of K and V one work-item of flash_rows_kv_f32 converts (-DKV_CONVERT_ROWS). */
#define KV_CONVERT_ROWS 16

/* The f32 copy's geometry (rows_kv_copy said yes): [entry][kv_head][row][dim]
 * with its own strides; the products fit (rows_kv_copy checked them). */
static void rows_kv_copy_geometry(clattn_plan p, flash_state *s, size_t bytes) {
  const clattn_attention_desc *d = &p->desc;
  const int64_t D = d->head_dim;
  s->copy_bytes = bytes;
  s->copy_batch = d->ragged ? 1 : d->batch;
  s->copy_rows = d->ragged ? d->total_kv : d->seq_kv;
  s->cs.dim = 1;
  s->cs.seq = D;
  s->cs.head = (int64_t)s->copy_rows * D;
  s->cs.batch = d->ragged ? 0 : (int64_t)d->kv_heads * s->cs.head;
}

/* Allocates the f32 copy (at plan creation, or at the first execution with
 * CLATTN_PLAN_LAZY_WORKSPACE) and touches it, so that a lazy allocator fails
 * here and not in the middle of a call. */
static clattn_status rows_kv_copy_alloc(clattn_plan p, flash_state *s) {
  clattn_context ctx = p->ctx;
  const size_t one = s->copy_bytes / 2;
  cl_mem *mem[2] = {&s->kf, &s->vf};
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < 2 && err == CL_SUCCESS; i++) {
    *mem[i] = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, one, NULL, &err);
    const float zero = 0.0f;
    if (*mem[i])
      err = clEnqueueFillBuffer(ctx->queue, *mem[i], &zero, sizeof zero, 0, one, 0, NULL, NULL);
  }
  if (err == CL_SUCCESS) err = clFinish(ctx->queue);
  if (err == CL_SUCCESS) return CLATTN_SUCCESS;
  for (int i = 0; i < 2; i++) {
    if (*mem[i]) clReleaseMemObject(*mem[i]);
    *mem[i] = NULL;
  }
  if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
      err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE)
    return clattn__fail_needed(ctx, s->copy_bytes,
                               "flash_rows: the f32 copy of K and V needs %zu bytes (2 x %zu); "
                               "the device could not provide it (%s; CLATTN_KV_COPY_MAX=0 "
                               "converts in the kernel instead)",
                               s->copy_bytes, one, clattn__cl_error_name(err));
  return clattn__cl_fail(ctx, "clCreateBuffer", err, "flash_rows f32 copy of K and V");
}

/* Private memory of one work-item: qT[D], acc[D] and s[BN] row vectors. */
#define ROWS_PRIVATE_MAX 98304

int clattn__flash_rows_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                  const char **why) {
  if (inference_mode(d, why)) return 0;
  if (!info->is_cpu) {
    *why = "written for CPU devices";
    return 0;
  }
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME) {
    /* quantized K/V is read from an f32 copy (rows_kv_copy): each tensor's
     * copy must fit one allocation */
    const uint64_t rows = (uint64_t)(d->ragged ? d->total_kv : d->seq_kv);
    const uint64_t ent = d->ragged ? 1 : (uint64_t)d->batch;
    const uint64_t hk = (uint64_t)(d->kv_heads > 0 ? d->kv_heads : d->heads);
    uint64_t one = 0;
    if (!clattn__mul_u64(ent, hk, &one) || !clattn__mul_u64(one, rows, &one) ||
        !clattn__mul_u64(one, (uint64_t)d->head_dim * sizeof(float), &one) ||
        one > info->max_alloc) {
      *why = "quantized K/V is read from an f32 copy, larger than the device's largest allocation";
      return 0;
    }
  }
  return 20;
}

size_t clattn__flash_rows_local(const int *p, const clattn_attention_desc *d) {
  (void)p;
  (void)d;
  return 0; /* private memory only */
}

const char *clattn__flash_rows_check(const int *p, const clattn_attention_desc *d,
                                     const clattn__device_info *info) {
  (void)info;
  const int bm = p[0], bn = p[1];
  if (bm != 8 && bm != 16) return "bm (the vector width) must be 8 or 16";
  if (bn < 1 || bn > 1024) return "bn must lie in 1..1024";
  const size_t priv = (2 * (size_t)d->head_dim + (size_t)bn) * (size_t)bm * sizeof(float);
  if (priv > ROWS_PRIVATE_MAX) return "private memory per work-item exceeds 96 KiB";
  return NULL;
}

bool clattn__flash_rows_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                 int *out) {
  static const int prefs[][2] = {{16, 64}, {16, 32}, {8, 64}, {8, 16}, {8, 8}};
  for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++)
    if (!clattn__flash_rows_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  return false;
}

/* ---- the NVIDIA tensor-core kernel (cl/flash_tc.cl) ----------------------- */

typedef const char *(*check3_fn)(const int *, const clattn_attention_desc *,
                                 const clattn__device_info *);
/* The first of n parameter sets (np values each, consecutive in prefs) that
 * passes check, into out. */
static bool first_legal_n(const int *prefs, size_t np, size_t n, check3_fn check,
                          const clattn_attention_desc *d, const clattn__device_info *info,
                          int *out) {
  for (size_t i = 0; i < n; i++)
    if (!check(prefs + i * np, d, info)) {
      memcpy(out, prefs + i * np, np * sizeof *prefs);
      return true;
    }
  return false;
}
static bool first_legal3(const int (*prefs)[3], size_t n, check3_fn check,
                         const clattn_attention_desc *d, const clattn__device_info *info,
                         int *out) {
  return first_legal_n(prefs[0], 3, n, check, d, info, out);
}
/* flash_wgmma's four parameters */
static bool first_legal4(const int (*prefs)[4], size_t n, check3_fn check,
                         const clattn_attention_desc *d, const clattn__device_info *info,
                         int *out) {
  return first_legal_n(prefs[0], 4, n, check, d, info, out);
}

/* The problems the tensor-core kernels serve: NVIDIA sm_80+ (or its PTX
 * emulated, tests), no inference mode, f32 storage for flash_tf32 and
 * 16-bit storage for the others, dense or causal masks (sparse_ok: the
 * sparse masks too, without a user mask or 8-bit K/V). */
static bool tc_problem(const clattn__device_info *info, const clattn_attention_desc *d, bool f32,
                       bool sparse_ok, const char **why) {
  if ((!info->is_nvidia || info->nv_cc_major < 8) && !info->nv_emulate) {
    *why = "needs NVIDIA sm_80 or newer (mma.sync)";
    return false;
  }
  if (inference_mode(d, why)) return false;
  if ((d->dtype == CLATTN_DTYPE_F32) != f32) {
    *why =
        f32 ? "f32 storage only (f16/bf16: flash_tc)" : "f16/bf16 storage only (f32: flash_tf32)";
    return false;
  }
  if (sparse_ok && clattn__mask_is_sparse(d->mask) &&
      (d->mask_mod || d->kv_dtype != CLATTN_KV_DTYPE_SAME)) {
    *why = "a sparse mask with a user mask or 8-bit K/V (flash has them)";
    return false;
  }
  if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask) &&
      !(sparse_ok && clattn__mask_is_sparse(d->mask))) {
    *why = sparse_ok ? "dense, causal or sparse masks" : "dense masks only";
    return false;
  }
  return true;
}

/* The legality shared by flash_tc and flash_tf32 (warps, m-tiles, keys per
 * tile): ranges, work-group size, local memory, and an estimate of the
 * registers a lane keeps live against the budget beyond which it spills. */
static const char *tc_params_check(const int *p, const clattn__device_info *info, size_t local,
                                   int regs, int budget) {
  const int warps = p[0], mt = p[1], bn = p[2];
  if (warps < 1 || warps > 32 || mt < 1 || mt > 2 || bn < 16 || bn > 1024 || bn % 16)
    return "parameters out of range (warps 1..32, mt 1..2, bn a multiple of 16)";
  if ((size_t)(32 * warps) > info->max_wg) return "32*warps exceeds the device's work-group size";
  if (local > info->local_mem) return "local memory exceeds the device's limit";
  if (regs > budget) return "fragments and accumulators exceed the register budget";
  return NULL;
}

int clattn__flash_tc_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                const char **why) {
  if (!tc_problem(info, d, false, true, why)) return 0;
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME && d->kv_scale == CLATTN_KV_SCALE_CHANNEL) {
    *why = "8-bit K/V with token, tensor or head scales (channel scales: flash)";
    return 0;
  }
  return 30;
}

size_t clattn__flash_tc_local(const int *p, const clattn_attention_desc *d) {
  if (d->dtype == CLATTN_DTYPE_F32) return clattn__flash_tf32_local(p, d);
  const size_t dp = ((size_t)d->head_dim + 15) / 16 * 16;
  /* one K and one V tile of 16-bit elements; 8-bit K/V with token scales:
   * the tile's scales */
  const bool tok = d->kv_dtype != CLATTN_KV_DTYPE_SAME && d->kv_scale == CLATTN_KV_SCALE_TOKEN;
  return 2 * (size_t)p[2] * (dp + 8) * 2 + (tok ? 2 * (size_t)p[2] * sizeof(float) : 0);
}

/* 32-bit registers a lane holds for Q fragments, S and O accumulators: an
 * estimate of what the compiler must keep live (the rest is addressing). */
static int tc_live_regs(int mt, int bn, int head_dim) {
  const int dp = (head_dim + 15) / 16 * 16;
  return mt * (dp / 16 * 4 + dp / 8 * 4 + bn / 8 * 4);
}

const char *clattn__flash_tc_check(const int *p, const clattn_attention_desc *d,
                                   const clattn__device_info *info) {
  /* Beyond ~240 live registers per lane the kernel spills (255 is the cap). */
  return tc_params_check(p, info, clattn__flash_tc_local(p, d),
                         tc_live_regs(p[1], p[2], d->head_dim), 240);
}

bool clattn__flash_tc_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                               int *out) {
  /* Most rows per work-group first, then the largest tile that fits. */
  static const int prefs[][3] = {{8, 1, 64}, {4, 2, 64}, {4, 1, 64}, {4, 1, 32},
                                 {4, 1, 16}, {2, 1, 32}, {2, 1, 16}};
  return first_legal3(prefs, sizeof prefs / sizeof prefs[0], clattn__flash_tc_check, d, info, out);
}

/* ---- flash_tcq: flash_tc with Q in local memory (cl/flash_tc.cl -DQLOC=1) --- */

/* Issue 15 step 2b: with Q's A fragments in registers, two m-tiles a warp
 * do not fit at d = 128 (64 registers of Q per m-tile: 255 with spills),
 * and one m-tile a warp reads each K/V fragment from local memory for one
 * MMA only, more local-memory bandwidth than the SM has. Here the
 * work-group's Q rows live in local memory (unpadded rows, swizzled
 * chunks), read with ldmatrix at every tile: at d = 128, 4 warps of two
 * m-tiles (128 rows, 32 KiB of Q) and one 32-key K/V tile (16 KiB) fill 48
 * KiB exactly. Head dims padded to a multiple of 64 (the swizzle's 8
 * chunks a row), 16-bit K/V. */
/* the head dim padded to the MMA k step (cl/flash_tc.cl DP) */
static int tc_dp(const clattn_attention_desc *d) { return (d->head_dim + 15) / 16 * 16; }

int clattn__flash_tcq_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                 const char **why) {
  if (!tc_problem(info, d, false, true, why)) return 0;
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME) {
    *why = "16-bit K/V only (8-bit K/V: flash_tc)";
    return 0;
  }
  if (tc_dp(d) % 64) {
    *why = "head_dim padded to 16 must be a multiple of 64 (swizzled rows of 8 chunks or more)";
    return 0;
  }
  /* above flash_tc (30) where measured faster: head dims padded to 128 on
   * an H100 (7-10 % at N = 4k-16k, 2 % slower causal at 16k; bench/RESULTS.md
   * §23); below it elsewhere (d = 256: 1.4x slower with one m-tile a warp) */
  return tc_dp(d) == 128 ? 31 : 29;
}

size_t clattn__flash_tcq_local(const int *p, const clattn_attention_desc *d) {
  return (2 * (size_t)p[2] + 16 * (size_t)p[1] * (size_t)p[0]) * (size_t)tc_dp(d) * 2;
}

const char *clattn__flash_tcq_check(const int *p, const clattn_attention_desc *d,
                                    const clattn__device_info *info) {
  const int dp = tc_dp(d);
  if (dp % 64) return "head_dim padded to 16 must be a multiple of 64";
  /* O and S accumulators and one k-step of Q fragments a lane */
  const int regs = p[1] * (dp / 8 * 4 + p[2] / 8 * 4 + 4);
  return tc_params_check(p, info, clattn__flash_tcq_local(p, d), regs, 240);
}

bool clattn__flash_tcq_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                int *out) {
  static const int prefs[][3] = {{4, 2, 32}, {4, 1, 32}, {4, 1, 16}, {2, 2, 16}, {2, 1, 16}};
  return first_legal3(prefs, sizeof prefs / sizeof prefs[0], clattn__flash_tcq_check, d, info, out);
}

/* ---- f32 on tensor cores: cl/flash_tc.cl with -DTF32=1 (3xTF32) ------------ */

int clattn__flash_tf32_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                  const char **why) {
  if (!tc_problem(info, d, true, true, why)) return 0;
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME) {
    *why = "no 8-bit K/V (flash has them with f32 Q)";
    return 0;
  }
  if (d->head_dim > 128) {
    *why = "head_dim up to 128 (Q stays f32 in registers)";
    return 0;
  }
  return 30; /* above flash (10) */
}

/* Row strides (floats) of the K and V tiles: cl/flash_tc.cl LDK, LDV. */
static size_t tf32_ldk(size_t dp) { return (dp + 31) / 32 * 32 + 8; }
static size_t tf32_ldv(size_t dp) { return (dp + 15) / 16 * 16 + 4; }

size_t clattn__flash_tf32_local(const int *p, const clattn_attention_desc *d) {
  const size_t dp = ((size_t)d->head_dim + 7) / 8 * 8;
  return (size_t)p[2] * (tf32_ldk(dp) + tf32_ldv(dp)) * sizeof(float);
}

const char *clattn__flash_tf32_check(const int *p, const clattn_attention_desc *d,
                                     const clattn__device_info *info) {
  if (d->head_dim > 128) return "head_dim above 128";
  /* f32 Q fragments, S and O accumulators and the fresh P·V accumulators
   * (TG = 4 n-tiles) per lane, plus the split operands and addressing;
   * beyond ~200 the kernel spills */
  const int dp = (d->head_dim + 7) / 8 * 8;
  return tc_params_check(p, info, clattn__flash_tf32_local(p, d),
                         p[1] * (dp / 2 + dp / 2 + p[2] / 2 + 16), 200);
}

bool clattn__flash_tf32_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                 int *out) {
  static const int prefs[][3] = {{8, 1, 32}, {4, 1, 32}, {4, 1, 16}, {2, 1, 16}};
  return first_legal3(prefs, sizeof prefs / sizeof prefs[0], clattn__flash_tf32_check, d, info,
                      out);
}

/* ---- the NVIDIA Hopper warpgroup-MMA kernel (cl/flash_wgmma.cl) ------------ */

int clattn__flash_wgmma_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                   const char **why) {
  if ((!info->is_nvidia || info->nv_cc_major != 9 || info->nv_cc_minor != 0) &&
      !info->nv_emulate) {
    *why = "needs NVIDIA sm_90 (Hopper: wgmma through patched PTX)";
    return 0;
  }
  if (d->score_mod || d->mask_mod || d->sinks || d->bias_type != CLATTN_BIAS_NONE) {
    *why = "softcap and ALiBi only: no user functions, bias or sinks (flash_tc has them)";
    return 0;
  }
  if (!tc_problem(info, d, false, false, why)) return 0;
  /* Head dims padded to 128 with 16-byte rows (the overlapped schedule's
   * cp.async pipeline): above flash_tcq (31), measured 1.12-1.18x faster
   * at 16k and 1.00-1.07x at 4k on an H100 (bench/RESULTS.md §26); elsewhere
   * below flash_tc (30): at d = 64 within 0.95-1.05x of it. Under the CPU
   * emulation (tests) below flash_tc everywhere, so that the other emulated
   * tests keep exercising flash_tc and flash_tcq (test_warpgroup_mma forces
   * it); ragged batches too (not yet verified on a GPU with this kernel). */
  const bool rows16 = d->head_dim % 8 == 0 && d->layout != CLATTN_LAYOUT_STRIDED;
  return tc_dp(d) == 128 && rows16 && !d->ragged && !info->nv_emulate ? 32 : 25;
}

size_t clattn__flash_wgmma_local(const int *p, const clattn_attention_desc *d) {
  const size_t dp = ((size_t)d->head_dim + 15) / 16 * 16;
  /* st stages of a K and a V tile, 16-bit; st = 3: three K tiles and two V tiles */
  const size_t tiles = p[2] == 3 ? 5 : (size_t)p[2] * 2;
  return tiles * (size_t)p[1] * dp * 2;
}

const char *clattn__flash_wgmma_check(const int *p, const clattn_attention_desc *d,
                                      const clattn__device_info *info) {
  const int wgs = p[0], bn = p[1], st = p[2], ld = p[3];
  if (wgs < 1 || wgs > 3 || bn < 32 || bn > 128 || bn % 32 || st < 1 || st > 3 || ld < 0 || ld > 1)
    return "parameters out of range (wgs 1..3, bn 32, 64 or 128, st 1..3, ld 0 or 1)";
  if (d->head_dim > 256) return "head_dim above 256";
  if ((size_t)(128 * (wgs + ld)) > info->max_wg)
    return "128*(wgs+ld) exceeds the device's work-group size";
  /* the loader copies by cp.async in the overlapped schedule (rows of 16
   * bytes; strided layouts whose strides are not multiples of 8 build
   * without it); with three computing warpgroups its 512 work-items would
   * leave 128 registers each: the kernel spills */
  if (ld && st != 3) return "the loader warpgroup (ld=1) needs st=3";
  if (ld && d->head_dim % 8) return "the loader warpgroup (ld=1) needs head_dim % 8 == 0";
  if (ld && wgs + ld > 3) return "the loader warpgroup (ld=1) takes at most two computing ones";
  if (clattn__flash_wgmma_local(p, d) + CLATTN__LOCAL_RESERVE > info->local_mem)
    return "local memory exceeds the device's limit";
  /* Q fragments, S and O accumulators, P fragments (32-bit registers per
   * work-item); beyond ~200 the kernel spills. */
  const int dp = (d->head_dim + 15) / 16 * 16;
  const int frag = dp / 4 + bn / 2 + dp / 2 + bn / 4;
  if (frag > 200) return "fragments and accumulators exceed the register budget";
  /* three warpgroups (384 work-items) get 168 registers each: about 50 for
   * the rest (170 in all at d = 128, bn = 32 with two) */
  if (wgs == 3 && frag > 120)
    return "fragments and accumulators exceed the 168 registers of three warpgroups";
  return NULL;
}

bool clattn__flash_wgmma_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                  int *out) {
  /* The overlapped schedule with three warpgroups first (H100, bench/RESULTS.md
   * §26: at d = 128, 16k 1.19x the two-stage schedule, 7.44 vs 8.83 ms; at d =
   * 64 with 64-key tiles 1.50x, 4.03 vs 6.05 ms); head dims padded above 64
   * take 32-key tiles (40 KiB). */
  static const int three[2][4] = {{3, 32, 3, 0}, {3, 32, 2, 0}};
  static const int prefs[][4] = {{3, 64, 3, 0}, {2, 64, 2, 0}, {2, 32, 2, 0},
                                 {2, 64, 1, 0}, {1, 64, 1, 0}, {1, 32, 1, 0}};
  if ((d->head_dim + 15) / 16 * 16 > 64 &&
      first_legal4(three, 2, clattn__flash_wgmma_check, d, info, out))
    return true;
  return first_legal4(prefs, sizeof prefs / sizeof prefs[0], clattn__flash_wgmma_check, d, info,
                      out);
}

/* ---- build ------------------------------------------------------------------ */

/* True when every tensor's dim stride is 1 and its other strides are
 * multiples of `q` elements (so rows are aligned for q-element vectors). */
static bool strides_aligned(clattn_plan p, int q) {
  const clattn_strides *st[3] = {&p->qs, &p->ks, &p->vs};
  if (p->desc.head_dim % q) return false;
  for (int i = 0; i < 3; i++)
    if (!clattn__strides_multiple(st[i], q)) return false;
  return true;
}

/* CLATTN_NV_VERBOSE: the compiler's registers / spills of the kernel's
 * program at the end of describe(). */
static void append_compiler_note(clattn_plan p, cl_kernel k) {
  cl_program prog = NULL;
  if (clGetKernelInfo(k, CL_KERNEL_PROGRAM, sizeof prog, &prog, NULL) != CL_SUCCESS) return;
  const char *note = clattn__program_note(p->ctx, prog);
  if (*note) clattn__append(p->describe, sizeof p->describe, "; compiler: %s", note);
}

/* The launch geometry: bm query rows and nt work-items per work-group. */
static void set_geometry(clattn_plan p, flash_state *s, int bm, int nt) {
  s->bm = bm;
  s->nt = nt;
  s->nqb = (int)(((int64_t)p->desc.seq_q + bm - 1) / bm);
}

/* The tail of a tensor-core kernel's describe(): ragged, compiler note. */
static void describe_tc_tail(clattn_plan p, flash_state *s) {
  if (p->desc.ragged) clattn__append(p->describe, sizeof p->describe, "; ragged (cu_seqlens)");
  append_compiler_note(p, s->kernel);
}

static clattn_status new_state(clattn_plan p, flash_state **out) {
  flash_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate flash state");
  p->state = s;
  p->workspace_bytes = 0;
  *out = s;
  return CLATTN_SUCCESS;
}

/* A sparse mask's per-query-tile lists of key tiles (bm × bn tiles), built
 * and uploaded once per plan, and their count in describe(). */
static clattn_status sparse_tiles(clattn_plan p, const flash_state *s, int bm, int bn) {
  if (!p->sparse) return CLATTN_SUCCESS;
  const clattn_status st = clattn__sparse_build_tiles(p, bm, bn);
  if (st != CLATTN_SUCCESS) return st;
  char sd[160];
  clattn__sparse_describe(&p->desc, sd, sizeof sd);
  const size_t nkt = ((size_t)p->desc.seq_kv + (size_t)bn - 1) / (size_t)bn;
  clattn__append(p->describe, sizeof p->describe,
                 "; sparse %s: %zu of %zu tiles listed, %zu partial", sd, p->sparse->tile_entries,
                 (size_t)s->nqb * nkt, p->sparse->tiles_partial);
  return CLATTN_SUCCESS;
}

/* "; K/V int8 (token scales)" in describe() for a quantized K/V. */
static void describe_kv(clattn_plan p) {
  const clattn_attention_desc *d = &p->desc;
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
    clattn__append(p->describe, sizeof p->describe, "; K/V %s (%s scales)",
                   clattn_kv_dtype_name(d->kv_dtype), clattn_kv_scale_name(d->kv_scale));
}

/* desc.sinks on the device (FLASH_SINK_ARGS), when the plan has them. */
static clattn_status upload_sinks(clattn_plan p, flash_state *s) {
  const clattn_attention_desc *d = &p->desc;
  if (!d->sinks) return CLATTN_SUCCESS;
  cl_int err;
  s->sinks = clCreateBuffer(p->ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                            (size_t)d->heads * sizeof(float), (void *)d->sinks, &err);
  if (!s->sinks) return clattn__cl_fail(p->ctx, "clCreateBuffer", err, "sinks");
  return CLATTN_SUCCESS;
}

static clattn_status build_kernel(clattn_plan p, flash_state *s, const char *opts,
                                  size_t local_bytes, bool kv_copy) {
  const clattn__variant *v = p->variant;
  /* The program is the variant's files in order; the kernel is named after
   * the last: flash_fwd, flash_rows, flash_tc. */
  char files[128];
  clattn__variant_files(v, files, sizeof files);
  const char *last = v->sources[0];
  for (int i = 0; v->sources[i]; i++)
    last = v->sources[i];
  if (p->desc.mask_mod) clattn__append(files, sizeof files, " mask_blocks.cl");
  bool oom = false;
  char *user_src = clattn__user_source(&p->desc, &oom);
  if (oom) return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy the user source");
  cl_program prog = NULL;
  clattn_status st = clattn__get_program_user(p->ctx, files, opts, user_src, &prog);
  free(user_src);
  if (st != CLATTN_SUCCESS) return st;
  char kname[32];
  snprintf(kname, sizeof kname, "%.*s", (int)(strlen(last) - 3), last);
  st = clattn__create_kernel_sized(p->ctx, prog, kname, local_bytes, &s->kernel);
  if (st == CLATTN_SUCCESS && p->desc.mask_mod)
    st = clattn__create_kernel(p->ctx, prog, "mask_blocks", &s->classify);
  if (st == CLATTN_SUCCESS && p->desc.mask_mod)
    st = clattn__create_kernel(p->ctx, prog, "mask_lists", &s->lists);
  if (st == CLATTN_SUCCESS && p->desc.mask_mod)
    st = clattn__create_kernel(p->ctx, prog, "mask_order", &s->order_k);
  if (st == CLATTN_SUCCESS && kv_copy)
    st = clattn__create_kernel(p->ctx, prog, "flash_rows_kv_f32", &s->convert);
  return st;
}

clattn_status clattn__flash_tc_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  flash_state *s = NULL;
  clattn_status st = new_state(p, &s);
  const int warps = params[0], mt = params[1], bn = params[2];
  if (st != CLATTN_SUCCESS) return st;
  if (p->estimate) /* sizing only: a sparse mask's tile lists are the workspace */
    return p->sparse ? clattn__sparse_build_tiles(p, 16 * mt * warps, bn) : CLATTN_SUCCESS;
  const bool tf32 = d->dtype == CLATTN_DTYPE_F32; /* the flash_tf32 variant */
  const bool qloc = p->variant && !strcmp(p->variant->name, "flash_tcq");
  const int vec = strides_aligned(p, tf32 ? 4 : 8) ? 1 : 0;
  const bool quant = d->kv_dtype != CLATTN_KV_DTYPE_SAME;
  char opts[768];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -DCLATTN_DTYPE=%d -DD=%d -DWARPS=%d -DMT=%d -DBN=%d -DCAUSAL=%d "
           "-DVEC_GLOBAL=%d -DLDM_ADDR=1 -DASYNC=%d -DRAGGED=%d -DTF32=%d",
           (int)d->dtype, d->head_dim, warps, mt, bn, clattn__causal_define(d->mask), vec,
           vec && !quant, d->ragged ? 1 : 0, tf32 ? 1 : 0);
  if (quant) /* 8-bit K/V: codes turned into 16-bit tiles as they are loaded (cl/flash_tc.cl) */
    clattn__append(opts, sizeof opts, " -DKVQ=%d -DKVS=%d -DKV8_VEC=%d", (int)d->kv_dtype,
                   (int)d->kv_scale,
                   d->head_dim % 16 == 0 && clattn__strides_multiple(&p->ks, 16) &&
                           clattn__strides_multiple(&p->vs, 16)
                       ? 1
                       : 0);
  if (qloc) clattn__append(opts, sizeof opts, " -DQLOC=1");
  if (ctx->settings.nv_verbose) clattn__append(opts, sizeof opts, " -cl-nv-verbose");
  if (ctx->info.nv_emulate) /* tests: the warp-level PTX emulated (cl/nv_mma.cl) */ clattn__append(opts, sizeof opts, " -DCLATTN_NV_EMU=1");
  clattn__mods_options(d, opts, sizeof opts);
  if (p->sparse) clattn__sparse_options(p->sparse, opts, sizeof opts);
  const size_t local =
      (qloc ? clattn__flash_tcq_local(params, d) : clattn__flash_tc_local(params, d)) +
      clattn__nv_emu_local(&ctx->info, (size_t)32 * warps);
  if ((st = build_kernel(p, s, opts, local, false)) != CLATTN_SUCCESS) return st;
  if ((st = upload_sinks(p, s)) != CLATTN_SUCCESS) return st;
  set_geometry(p, s, 16 * mt * warps, 32 * warps);
  s->bn = bn; /* the tiles of a user mask's block classes */
  snprintf(p->describe, sizeof p->describe,
           "%s %s d=%d: %s%s, warps=%d mt=%d bn=%d (bm=%d, %zu B local) [%s]",
           tf32   ? "flash_tf32"
           : qloc ? "flash_tcq"
                  : "flash_tc",
           clattn_dtype_name(d->dtype), d->head_dim,
           tf32   ? "3xTF32 mma.sync m16n8k8"
           : qloc ? "mma.sync m16n8k16 + ldmatrix, Q in local memory"
                  : "mma.sync m16n8k16 + ldmatrix",
           vec && !quant ? " + cp.async" : "", warps, mt, bn, s->bm, local, origin);
  describe_kv(p);
  clattn__describe_mods(d, p->describe, sizeof p->describe);
  describe_tc_tail(p, s);
  return sparse_tiles(p, s, s->bm, bn);
}

clattn_status clattn__flash_wgmma_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  flash_state *s = NULL;
  clattn_status st = new_state(p, &s);
  if (st != CLATTN_SUCCESS || p->estimate) return st; /* no workspace */
  const int wgs = params[0], bn = params[1], stages = params[2];
  const int vec = strides_aligned(p, 8) ? 1 : 0;
  const int ld = params[3] && vec ? 1 : 0; /* strides not multiples of 8: no loader */
  char opts[512];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -DCLATTN_DTYPE=%d -DD=%d -DWGS=%d -DBN=%d -DST=%d -DLDW=%d -DCAUSAL=%d "
           "-DVEC_GLOBAL=%d -DRAGGED=%d",
           (int)d->dtype, d->head_dim, wgs, bn, stages, ld, clattn__causal_define(d->mask), vec,
           d->ragged ? 1 : 0);
  clattn__mods_options(d, opts, sizeof opts); /* softcap, ALiBi */
  if (ctx->settings.nv_verbose) clattn__append(opts, sizeof opts, " -cl-nv-verbose");
  const bool emu = ctx->info.nv_emulate; /* tests: wgmma emulated on the CPU (cl/wgmma.cl) */
  if (emu) clattn__append(opts, sizeof opts, " -DCLATTN_NV_EMU=1");
  const size_t local = clattn__flash_wgmma_local(params, d) +
                       clattn__nv_emu_local(&ctx->info, (size_t)128 * (wgs + ld));
  cl_program prog = NULL;
  st = emu ? clattn__get_program(ctx, "nv_mma.cl wgmma.cl flash_wgmma.cl", opts, &prog)
           : clattn__get_program_patched(ctx, "nv_mma.cl wgmma.cl flash_wgmma.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  if ((st = clattn__create_kernel_sized(ctx, prog, "flash_wgmma", local, &s->kernel)) !=
      CLATTN_SUCCESS)
    return st;
  set_geometry(p, s, 64 * wgs, 128 * (wgs + ld));
  snprintf(p->describe, sizeof p->describe,
           "flash_wgmma %s d=%d: wgmma m64nNk16 (%s)%s%s, wgs=%d bn=%d st=%d ld=%d "
           "(bm=%d, %zu B local) [%s]",
           clattn_dtype_name(d->dtype), d->head_dim, emu ? "emulated" : "sm_90a, patched PTX",
           vec ? (stages == 3   ? " + cp.async, 3 K/2 V stages, S(t+1) with P·V(t)"
                  : stages == 2 ? " + cp.async, 2 stages"
                                : " + cp.async")
               : "",
           ld          ? ", a loader warpgroup"
           : params[3] ? " (no loader: strides not multiples of 8)"
                       : "",
           wgs, bn, stages, ld, s->bm, local, origin);
  clattn__describe_mods(d, p->describe, sizeof p->describe);
  describe_tc_tail(p, s);
  return CLATTN_SUCCESS;
}

/* The work-group kernel and the row-vector kernel: the same -D parameters
 * (the row kernel's tm = tn = 1: one work-item). */
clattn_status clattn__flash_wg_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const bool rows = p->variant->num_params == 2;
  const int bm = params[0], bn = params[1], tm = rows ? 1 : params[2], tn = rows ? 1 : params[3];
  flash_state *s = NULL;
  clattn_status st = new_state(p, &s);
  if (st != CLATTN_SUCCESS) return st;
  set_geometry(p, s, bm, tm * tn);
  s->bn = bn;
  size_t copy_bytes = 0;
  char no_copy[200] = "";
  const bool kv_copy = rows && rows_kv_copy(p, s->nqb, &copy_bytes, no_copy, sizeof no_copy);
  p->workspace_bytes += copy_bytes;
  if (p->estimate) /* sizing only: a sparse mask's tile lists are the workspace */
    return p->sparse ? clattn__sparse_build_tiles(p, bm, bn) : CLATTN_SUCCESS;

  /* float4 global I/O needs unit dim strides and 16-byte aligned rows. */
  const int vec_global = strides_aligned(p, 4) ? 1 : 0;
  char opts[768];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DDP=%d -DBM=%d -DBN=%d "
           "-DTM=%d -DTN=%d -DCAUSAL=%d -DVEC_GLOBAL=%d -DRAGGED=%d",
           (int)d->dtype, d->head_dim, dp_of(d->head_dim), bm, bn, tm, tn,
           clattn__causal_define(d->mask), vec_global, d->ragged ? 1 : 0);
  /* CPUs (PoCL): finite math lets LLVM vectorise the max/select chains of the
   * softmax; the kernels never rely on infinities (see CLATTN_MASKED). Half
   * loads by integer operations (CLATTN_SOFT_HALF in cl/common.cl). */
  if (ctx->info.is_cpu)
    clattn__append(opts, sizeof opts, " -cl-fast-relaxed-math -DCLATTN_SOFT_HALF=1 -DCLATTN_CPU=1");
  if (p->sparse) clattn__sparse_options(p->sparse, opts, sizeof opts);
  /* quantized K/V: codes decoded and scaled as tiles are loaded (cl/flash_fwd.cl) */
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
    clattn__append(opts, sizeof opts, " -DKVQ=%d -DKVS=%d", (int)d->kv_dtype, (int)d->kv_scale);
  if (rows) {
    /* K/V from the f32 copy, or rows of D contiguous elements (compile-time
     * row stride; cl/flash_rows.cl) */
    const int D = d->head_dim;
    const bool packed =
        kv_copy || (p->ks.seq == D && p->ks.dim == 1 && p->vs.seq == D && p->vs.dim == 1);
    clattn__append(opts, sizeof opts, " -DKV_F32=%d -DKV_PACKED=%d -DKV_CONVERT_ROWS=%d",
                   kv_copy ? 1 : 0, packed ? 1 : 0, KV_CONVERT_ROWS);
  }
  clattn__mods_options(d, opts, sizeof opts);
  const size_t local = p->variant->local_bytes(params, d);
  if ((st = build_kernel(p, s, opts, local, kv_copy)) != CLATTN_SUCCESS) return st;
  if (kv_copy) {
    rows_kv_copy_geometry(p, s, copy_bytes);
    if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE) &&
        (st = rows_kv_copy_alloc(p, s)) != CLATTN_SUCCESS)
      return st;
  }
  if ((st = upload_sinks(p, s)) != CLATTN_SUCCESS) return st;
  snprintf(p->describe, sizeof p->describe,
           "%s %s d=%d: bm=%d bn=%d tm=%d tn=%d (%d work-items, %zu B local) [%s]",
           p->variant->name, clattn_dtype_name(d->dtype), d->head_dim, bm, bn, tm, tn, tm * tn,
           local, origin);
  if (d->ragged) clattn__append(p->describe, sizeof p->describe, "; ragged (cu_seqlens)");
  describe_kv(p);
  if (kv_copy)
    clattn__append(p->describe, sizeof p->describe,
                   "; K/V converted once per call into an f32 workspace (%zu bytes: 2 x "
                   "%d*%d*%d*%d*4)",
                   copy_bytes, s->copy_batch, d->kv_heads, s->copy_rows, d->head_dim);
  else if (rows && no_copy[0])
    clattn__append(p->describe, sizeof p->describe, "; K/V converted in the kernel (%s)", no_copy);
  clattn__describe_mods(d, p->describe, sizeof p->describe);
  return sparse_tiles(p, s, bm, bn);
}

/* ---- launch (one argument list for the three kernels, FLASH_ARGS in
 * common.cl) ------------------------------------------------------------------ */

/* flash_rows, 16-bit storage: the f32 copy of the call's K and V
 * (flash_rows_kv_f32), after the caller's wait list and the previous call's
 * flash kernel (which reads the copy: on an out-of-order queue the copy must
 * not be overwritten under it); *done is its event. */
static clattn_status enqueue_kv_copy(clattn_plan p, flash_state *s, const clattn__buffers *b,
                                     cl_uint num_wait, const cl_event *wait, cl_event *done) {
  cl_kernel k = s->convert;
  cl_event few[16], *list = few;
  const cl_uint n = num_wait + (s->copy_reader ? 1u : 0u);
  if (n > 16 && !(list = malloc(n * sizeof *list)))
    return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "flash_rows: a wait list of %u events",
                        n);
  for (cl_uint i = 0; i < num_wait; i++)
    list[i] = wait[i];
  if (s->copy_reader) list[num_wait] = s->copy_reader;
  const cl_mem mems[4] = {b->k, b->v, s->kf, s->vf};
  const clattn_strides *st[2] = {&p->ks, &p->vs};
  cl_int err = CL_SUCCESS;
  cl_uint a = 0;
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &mems[i]);
  for (int t = 0; t < 2; t++) {
    const cl_long v4[4] = {st[t]->batch, st[t]->head, st[t]->seq, st[t]->dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(k, a++, sizeof(cl_long), &v4[i]);
  }
  err |= clSetKernelArg(k, a++, sizeof(int), &s->copy_rows);
  if (p->desc.kv_dtype != CLATTN_KV_DTYPE_SAME) { /* FLASH_KVQ_ARGS (checked by the plan) */
    const cl_long ssr = clattn__kv_scale_row_stride(&p->desc);
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &b->k_scale);
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &b->v_scale);
    err |= clSetKernelArg(k, a++, sizeof(cl_long), &ssr);
  }
  if (err != CL_SUCCESS) {
    if (list != few) free(list);
    return clattn__cl_fail(p->ctx, "clSetKernelArg", err, "flash_rows_kv_f32");
  }
  const size_t gws[3] = {((size_t)s->copy_rows + KV_CONVERT_ROWS - 1) / KV_CONVERT_ROWS,
                         (size_t)p->desc.kv_heads, (size_t)s->copy_batch};
  const size_t lws[3] = {1, 1, 1};
  err = clEnqueueNDRangeKernel(p->ctx->queue, k, 3, NULL, gws, lws, n, n ? list : NULL, done);
  if (list != few) free(list);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(p->ctx, "clEnqueueNDRangeKernel", err, "flash_rows_kv_f32");
  return CLATTN_SUCCESS;
}

clattn_status clattn__flash_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                    const cl_event *wait, cl_event *event) {
  flash_state *s = p->state;
  const clattn_attention_desc *d = &p->desc;
  cl_kernel kr = s->kernel;
  cl_int err = CL_SUCCESS;
  cl_uint a = 0;
  const int write_lse = b->lse != NULL;
  const cl_mem lse_arg = b->lse ? b->lse : b->o; /* never dereferenced when write_lse == 0 */
  const clattn_strides *st[4] = {&p->qs, &p->ks, &p->vs, &p->os};
  const float qscale = (float)(d->scale * 1.4426950408889634);
  const int G = d->heads / d->kv_heads;
  cl_mem mems[5] = {b->q, b->k, b->v, b->o, lse_arg};
  if (s->convert) { /* the kernel reads the f32 copy of K and V, with its strides */
    /* CLATTN_PLAN_LAZY_WORKSPACE: the first execution allocates it */
    if (!s->kf) {
      const clattn_status ast = rows_kv_copy_alloc(p, s);
      if (ast != CLATTN_SUCCESS) return ast;
    }
    mems[1] = s->kf;
    mems[2] = s->vf;
    st[1] = st[2] = &s->cs;
  }
  for (int i = 0; i < 5; i++)
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &mems[i]);
  err |= clSetKernelArg(kr, a++, sizeof(int), &write_lse);
  for (int t = 0; t < 4; t++) {
    const cl_long v4[4] = {st[t]->batch, st[t]->head, st[t]->seq, st[t]->dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(kr, a++, sizeof(cl_long), &v4[i]);
  }
  const int ints[5] = {d->heads, G, d->seq_q, d->seq_kv, s->nqb};
  for (int i = 0; i < 5; i++)
    err |= clSetKernelArg(kr, a++, sizeof(int), &ints[i]);
  err |= clSetKernelArg(kr, a++, sizeof(float), &qscale);
  if (d->score_mod || d->mask_mod) /* FLASH_USER_ARGS: the caller's buffer, or NULL */
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->user);
  if (d->mask_mod) { /* the block classes and lists, when made */
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->cls);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->list);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->count);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->order);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->stamp);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->use_blocks);
  }
  if (d->sinks) err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->sinks); /* FLASH_SINK_ARGS */
  if (d->bias_type != CLATTN_BIAS_NONE) {                                  /* FLASH_BIAS_ARGS */
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->bias);
    const cl_long bs[4] = {d->bias_strides.batch, d->bias_strides.head, d->bias_strides.seq,
                           d->bias_strides.dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(kr, a++, sizeof(cl_long), &bs[i]);
  }
  if (d->ragged) { /* FLASH_RAGGED_ARGS (cl/common.cl) */
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->cu_seqlens_q);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->cu_seqlens_kv);
    err |= clSetKernelArg(kr, a++, sizeof(int), &d->total_q);
    err |= clSetKernelArg(kr, a++, sizeof(int), &d->total_kv);
  }
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME) { /* FLASH_KVQ_ARGS (checked by the plan) */
    const cl_long ssr = clattn__kv_scale_row_stride(d);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->k_scale);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &b->v_scale);
    err |= clSetKernelArg(kr, a++, sizeof(cl_long), &ssr);
  }
  if (p->sparse) {
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &p->sparse->tile_off_mem);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &p->sparse->tile_idx_mem);
    err |= clattn__sparse_set_mask_args(p->sparse, kr, a);
  }
  if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clSetKernelArg", err, p->variant->name);
  cl_event conv = NULL;
  if (s->convert) {
    clattn_status cst = enqueue_kv_copy(p, s, b, num_wait, wait, &conv);
    if (cst != CLATTN_SUCCESS) return cst;
    num_wait = 1;
    wait = &conv;
  }
  const size_t nt = (size_t)s->nt;
  const size_t gws[2] = {(size_t)s->nqb * nt, (size_t)d->batch * (size_t)d->heads};
  const size_t lws[2] = {nt, 1};
  cl_event done = NULL; /* with the copy: the copy's reader, kept for the next call */
  err = clEnqueueNDRangeKernel(p->ctx->queue, kr, 2, NULL, gws, lws, num_wait, wait,
                               s->convert ? &done : event);
  if (conv) clReleaseEvent(conv);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(p->ctx, "clEnqueueNDRangeKernel", err, p->variant->name);
  if (done) {
    if (s->copy_reader) clReleaseEvent(s->copy_reader);
    s->copy_reader = done;
    if (event) {
      clRetainEvent(done);
      *event = done;
    }
  }
  return CLATTN_SUCCESS;
}

void clattn__flash_release(clattn_plan p) {
  flash_state *s = p->state;
  if (!s) return;
  if (s->kernel) clReleaseKernel(s->kernel);
  if (s->classify) clReleaseKernel(s->classify);
  if (s->lists) clReleaseKernel(s->lists);
  if (s->cls) clReleaseMemObject(s->cls);
  if (s->list) clReleaseMemObject(s->list);
  if (s->count) clReleaseMemObject(s->count);
  if (s->order_k) clReleaseKernel(s->order_k);
  if (s->order) clReleaseMemObject(s->order);
  if (s->stamp) clReleaseMemObject(s->stamp);
  if (s->sinks) clReleaseMemObject(s->sinks);
  if (s->convert) clReleaseKernel(s->convert);
  if (s->kf) clReleaseMemObject(s->kf);
  if (s->vf) clReleaseMemObject(s->vf);
  if (s->copy_reader) clReleaseEvent(s->copy_reader);
  free(s);
  p->state = NULL;
}

static clattn_status update_mask_blocks(clattn_plan p, cl_mem user, cl_mem cu_q, cl_mem cu_kv,
                                        cl_uint num_wait, const cl_event *wait, cl_event *event) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  flash_state *s = p->state;
  if (!d->mask_mod || !s || !s->classify)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "the plan has no user mask (desc.mask_mod) on a flash or flash_rows "
                        "kernel: no block classes to make");
  if (d->ragged && (!cu_q || !cu_kv))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "block classes of a ragged plan are made for its tables: "
                        "clattn_plan_update_mask_blocks_ex with args.cu_seqlens_q and "
                        "cu_seqlens_kv");
  const int nkt = (int)(((int64_t)d->seq_kv + s->bn - 1) / s->bn);
  const size_t rows = (size_t)d->batch * (size_t)d->heads * (size_t)s->nqb;
  size_t bytes = 0, lbytes = 0, cbytes = rows * sizeof(int), total = 0;
  if (!clattn__mul_size(rows, (size_t)nkt, &bytes) ||
      !clattn__mul_size(bytes, sizeof(int), &lbytes) || !clattn__add_size(bytes, lbytes, &total) ||
      !clattn__add_size(total, cbytes, &total) || !clattn__add_size(total, cbytes, &total))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED, "block classes: size overflows size_t");
  if (!s->cls) {
    if (lbytes > ctx->info.max_alloc)
      return clattn__fail_needed(ctx, total,
                                 "block classes and lists need %zu bytes, the lists more than the "
                                 "device's largest allocation (%llu): the mask is evaluated in "
                                 "the kernel instead",
                                 total, (unsigned long long)ctx->info.max_alloc);
    cl_int err;
    s->cls = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!s->cls) return clattn__cl_fail(ctx, "clCreateBuffer", err, "mask block classes");
    s->list = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, lbytes, NULL, &err);
    if (!s->list) return clattn__cl_fail(ctx, "clCreateBuffer", err, "mask block lists");
    s->count = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, cbytes, NULL, &err);
    if (!s->count) return clattn__cl_fail(ctx, "clCreateBuffer", err, "mask block counts");
    s->order = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, cbytes, NULL, &err);
    if (!s->order) return clattn__cl_fail(ctx, "clCreateBuffer", err, "mask block order");
    const size_t sbytes = (size_t)d->batch * 4 * sizeof(int);
    s->stamp = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, sbytes, NULL, &err);
    if (!s->stamp) return clattn__cl_fail(ctx, "clCreateBuffer", err, "mask block stamps");
    p->workspace_bytes += total + sbytes;
  }
  const int ints[5] = {d->heads, d->seq_q, d->seq_kv, s->nqb, nkt};
  cl_int err = clSetKernelArg(s->classify, 0, sizeof(cl_mem), &s->cls);
  err |= clSetKernelArg(s->classify, 1, sizeof(cl_mem), &user);
  for (int i = 0; i < 5; i++)
    err |= clSetKernelArg(s->classify, (cl_uint)(2 + i), sizeof(int), &ints[i]);
  cl_uint a = 7;
  if (d->ragged) { /* FLASH_RAGGED_ARGS */
    err |= clSetKernelArg(s->classify, a++, sizeof(cl_mem), &cu_q);
    err |= clSetKernelArg(s->classify, a++, sizeof(cl_mem), &cu_kv);
    err |= clSetKernelArg(s->classify, a++, sizeof(int), &d->total_q);
    err |= clSetKernelArg(s->classify, a++, sizeof(int), &d->total_kv);
  }
  err |= clSetKernelArg(s->classify, a, sizeof(cl_mem), &s->stamp);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "mask_blocks");
  const int nq2[2] = {s->nqb, nkt};
  err |= clSetKernelArg(s->lists, 0, sizeof(cl_mem), &s->cls);
  err |= clSetKernelArg(s->lists, 1, sizeof(cl_mem), &s->list);
  err |= clSetKernelArg(s->lists, 2, sizeof(cl_mem), &s->count);
  err |= clSetKernelArg(s->lists, 3, sizeof(int), &nq2[0]);
  err |= clSetKernelArg(s->lists, 4, sizeof(int), &nq2[1]);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "mask_lists");
  err |= clSetKernelArg(s->order_k, 0, sizeof(cl_mem), &s->count);
  err |= clSetKernelArg(s->order_k, 1, sizeof(cl_mem), &s->order);
  err |= clSetKernelArg(s->order_k, 2, sizeof(int), &nq2[0]);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "mask_order");
  const size_t gws[3] = {(size_t)nkt, (size_t)s->nqb, (size_t)d->batch * (size_t)d->heads};
  cl_event e1 = NULL;
  err = clEnqueueNDRangeKernel(ctx->queue, s->classify, 3, NULL, gws, NULL, num_wait, wait, &e1);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "mask_blocks");
  const size_t gws2[2] = {(size_t)s->nqb, (size_t)d->batch * (size_t)d->heads};
  cl_event e2 = NULL;
  err = clEnqueueNDRangeKernel(ctx->queue, s->lists, 2, NULL, gws2, NULL, 1, &e1, &e2);
  clReleaseEvent(e1);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "mask_lists");
  err = clEnqueueNDRangeKernel(ctx->queue, s->order_k, 2, NULL, gws2, NULL, 1, &e2, event);
  clReleaseEvent(e2);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "mask_order");
  s->use_blocks = 1;
  return CLATTN_SUCCESS;
}

static clattn_status update_blocks(clattn_plan p, cl_mem user, cl_mem cu_q, cl_mem cu_kv,
                                   cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  clattn_status st;
  if (user && (st = clattn__check_buffer(ctx, user, 1, "user")) != CLATTN_SUCCESS) return st;
  const size_t cu_bytes = ((size_t)p->desc.batch + 1) * sizeof(int);
  if (cu_q && (st = clattn__check_buffer(ctx, cu_q, cu_bytes, "cu_seqlens_q")) != CLATTN_SUCCESS)
    return st;
  if (cu_kv && (st = clattn__check_buffer(ctx, cu_kv, cu_bytes, "cu_seqlens_kv")) != CLATTN_SUCCESS)
    return st;
  if (p->desc.mask_mod && p->variant && p->variant->create == clattn__decode_create) {
    /* the decode kernels evaluate the mask per key: no tiles to classify */
    if (!event) return CLATTN_SUCCESS;
    const cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, num_wait, wait, event);
    return err == CL_SUCCESS ? CLATTN_SUCCESS
                             : clattn__cl_fail(ctx, "clEnqueueMarkerWithWaitList", err,
                                               "update_mask_blocks");
  }
  if (!p->desc.mask_mod || !p->variant ||
      (p->variant->create != clattn__flash_wg_create &&
       p->variant->create != clattn__flash_tc_create))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "the plan has no user mask (desc.mask_mod) on a flash or flash_rows "
                        "kernel: no block classes to make");
  return update_mask_blocks(p, user, cu_q, cu_kv, num_wait, wait, event);
}

clattn_status clattn_plan_update_mask_blocks(clattn_plan p, cl_mem user, cl_uint num_wait,
                                             const cl_event *wait, cl_event *event) {
  return update_blocks(p, user, NULL, NULL, num_wait, wait, event);
}

clattn_status clattn_plan_update_mask_blocks_ex(clattn_plan p, const clattn_exec_args *args,
                                                cl_uint num_wait, const cl_event *wait,
                                                cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (!args) return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT, "args is NULL");
  return update_blocks(p, args->user, args->cu_seqlens_q, args->cu_seqlens_kv, num_wait, wait,
                       event);
}
