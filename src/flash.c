/* flash.c — host side of the fused flash forward kernel: configuration, build options, launch. */
#include "internal.h"
#include "flash_config.h"
#include "sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flash_state {
  cl_kernel kernel;
  clattn__flash_cfg cfg; /* portable kernel's configuration */
  int bm;                /* query rows per work-group */
  int nt;                /* work-items per work-group */
  int nqb;               /* query blocks */
} flash_state;

/* True when every tensor's dim stride is 1 and its other strides are
 * multiples of `q` elements (so rows are aligned for q-element vectors). */
static bool strides_aligned(clattn_plan p, int q) {
  const clattn_strides *st[3] = {&p->qs, &p->ks, &p->vs};
  if (p->desc.head_dim % q) return false;
  for (int i = 0; i < 3; i++)
    if (st[i]->dim != 1 || st[i]->seq % q || st[i]->head % q || st[i]->batch % q) return false;
  return true;
}

/* The tensor-core kernel (cl/flash_tc.cl): NVIDIA sm_80+, f16/bf16 storage,
 * dense masks. CLATTN_NO_TENSOR_CORES=1 forces the portable kernel. */
bool clattn__flash_uses_tensor_cores(clattn_context ctx, const clattn_attention_desc *d) {
  const char *off = getenv("CLATTN_NO_TENSOR_CORES");
  if (off && *off && *off != '0') return false;
  if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask)) return false;
  return d->dtype != CLATTN_DTYPE_F32 && ctx->info.is_nvidia && ctx->info.nv_cc_major >= 8;
}

/* A forced configuration (API, tuner, CLATTN_TUNE_OVERRIDE) names its kernel
 * by its parameters: "warps=..,mt=..,bn=.." is the tensor-core kernel's,
 * anything else the portable kernel's (validated there). */
static bool forced_is_tc(clattn_plan p) {
  const char *cfg = p->config && *p->config ? p->config : getenv("CLATTN_TUNE_OVERRIDE");
  if (!cfg || !*cfg) return true; /* nothing forced: tensor cores where they apply */
  int params[CLATTN__MAX_PARAMS];
  return clattn__config_parse(&clattn__flash_tc_space, cfg, params) == CLATTN_SUCCESS;
}

static clattn_status flash_tc_create(clattn_plan p, flash_state *s) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  int params[CLATTN__MAX_PARAMS];
  char origin[160];
  clattn_status st =
      clattn__choose_config(p, &clattn__flash_tc_space, params, origin, sizeof origin);
  if (st != CLATTN_SUCCESS) return st;
  const int warps = params[0], mt = params[1], bn = params[2];
  int vec = strides_aligned(p, 8) ? 1 : 0;
  char opts[512];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -DCLATTN_DTYPE=%d -DD=%d -DWARPS=%d -DMT=%d -DBN=%d -DCAUSAL=%d "
           "-DVEC_GLOBAL=%d -DLDM_ADDR=1 -DASYNC=%d",
           (int)d->dtype, d->head_dim, warps, mt, bn, clattn__causal_define(d->mask), vec, vec);
  const char *verbose = getenv("CLATTN_NV_VERBOSE"); /* register/spill counts in the build log */
  if (verbose && *verbose && *verbose != '0') clattn__append(opts, sizeof opts, " -cl-nv-verbose");
  cl_program prog = NULL;
  st = clattn__get_program(ctx, "flash_tc.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel(ctx, prog, "flash_tc", &s->kernel);
  if (st != CLATTN_SUCCESS) return st;
  s->bm = 16 * mt * warps;
  s->nt = 32 * warps;
  snprintf(p->describe, sizeof p->describe,
           "flash-tc %s d=%d: mma.sync m16n8k16 + ldmatrix%s, warps=%d mt=%d bn=%d (bm=%d, %zu B "
           "local) [%s]",
           clattn__dtype_name(d->dtype), d->head_dim, vec ? " + cp.async" : "", warps, mt, bn,
           s->bm, clattn__flash_tc_local_bytes(bn, d->head_dim), origin);
  return CLATTN_SUCCESS;
}

static clattn_status flash_create(clattn_plan p) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  flash_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate flash state");
  p->state = s;
  p->workspace_bytes = 0;
  if (!p->sparse && clattn__flash_uses_tensor_cores(ctx, d) && forced_is_tc(p)) {
    if (p->estimate) return CLATTN_SUCCESS; /* no workspace */
    clattn_status st = flash_tc_create(p, s);
    s->nqb = (d->seq_q + s->bm - 1) / s->bm;
    return st;
  }

  /* Forced (API / tuner) → CLATTN_TUNE_OVERRIDE → tuning database →
   * CLATTN_PLAN_MEASURE → built-in defaults (src/tune.c). */
  int params[CLATTN__MAX_PARAMS];
  char origin[160];
  clattn_status cst = clattn__choose_config(p, &clattn__flash_space, params, origin, sizeof origin);
  if (cst != CLATTN_SUCCESS) return cst;
  s->cfg = clattn__flash_cfg_from_params(params);
  if (p->estimate) /* sizing only: a sparse mask's tile lists are the workspace */
    return p->sparse ? clattn__sparse_build_tiles(p, s->cfg.bm, s->cfg.bn) : CLATTN_SUCCESS;

  char opts[512];
  const bool rows = clattn__flash_cfg_is_rows(&s->cfg);
  const char *src = rows ? "flash_rows.cl" : "flash_fwd.cl";
  const char *kname = rows ? "flash_rows" : "flash_fwd";
  int dp = clattn__flash_dp(&s->cfg, d->head_dim);
  /* float4 global I/O needs unit dim strides and 16-byte aligned rows. */
  int vec_global = strides_aligned(p, 4) ? 1 : 0;
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DDP=%d -DBM=%d -DBN=%d "
           "-DTM=%d -DTN=%d -DCAUSAL=%d -DVEC_GLOBAL=%d",
           (int)d->dtype, d->head_dim, dp, s->cfg.bm, s->cfg.bn, s->cfg.tm, s->cfg.tn,
           clattn__causal_define(d->mask), vec_global);
  /* CPUs (PoCL): finite math lets LLVM vectorise the max/select chains of the
   * softmax; the kernels never rely on infinities (see CLATTN_MASKED). Half
   * loads by integer operations (CLATTN_SOFT_HALF in cl/common.cl). */
  if (ctx->info.is_cpu)
    clattn__append(opts, sizeof opts, " -cl-fast-relaxed-math -DCLATTN_SOFT_HALF=1");
  if (p->sparse) clattn__append(opts, sizeof opts, " -DSPARSE=%d", p->sparse->cls);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, src, opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel(ctx, prog, kname, &s->kernel);
  if (st != CLATTN_SUCCESS) return st;
  s->bm = s->cfg.bm;
  s->nt = s->cfg.tm * s->cfg.tn;
  s->nqb = (d->seq_q + s->bm - 1) / s->bm;
  snprintf(p->describe, sizeof p->describe,
           "flash%s %s d=%d: bm=%d bn=%d tm=%d tn=%d (%d work-items, %zu B local) [%s]",
           rows ? " (row-vector kernel)" : "", clattn__dtype_name(d->dtype), d->head_dim, s->cfg.bm,
           s->cfg.bn, s->cfg.tm, s->cfg.tn, s->cfg.tm * s->cfg.tn,
           clattn__flash_local_bytes(&s->cfg, d->head_dim), origin);
  if (p->sparse) {
    /* Per-query-tile lists of key tiles, built and uploaded once per plan. */
    st = clattn__sparse_build_tiles(p, s->cfg.bm, s->cfg.bn);
    if (st != CLATTN_SUCCESS) return st;
    char sd[160];
    clattn__sparse_describe(d, sd, sizeof sd);
    const size_t nkt = ((size_t)d->seq_kv + (size_t)s->cfg.bn - 1) / (size_t)s->cfg.bn;
    clattn__append(p->describe, sizeof p->describe,
                   "; sparse %s: %zu of %zu tiles listed, %zu partial", sd, p->sparse->tile_entries,
                   (size_t)s->nqb * nkt, p->sparse->tiles_partial);
  }
  return CLATTN_SUCCESS;
}

static clattn_status flash_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                   cl_mem lse, cl_uint num_wait, const cl_event *wait,
                                   cl_event *event) {
  flash_state *s = p->state;
  const clattn_attention_desc *d = &p->desc;
  cl_kernel kr = s->kernel;
  cl_int err = CL_SUCCESS;
  int a = 0;
  int write_lse = lse != NULL;
  cl_mem lse_arg = lse ? lse : o; /* never dereferenced when write_lse == 0 */
  const clattn_strides *st[4] = {&p->qs, &p->ks, &p->vs, &p->os};
  float qscale = (float)(d->scale * 1.4426950408889634);
  int G = d->heads / d->kv_heads;
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &q);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &k);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &o);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &lse_arg);
  err |= clSetKernelArg(kr, a++, sizeof(int), &write_lse);
  for (int t = 0; t < 4; t++) {
    cl_long v4[4] = {st[t]->batch, st[t]->head, st[t]->seq, st[t]->dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(kr, a++, sizeof(cl_long), &v4[i]);
  }
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->heads);
  err |= clSetKernelArg(kr, a++, sizeof(int), &G);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_q);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_kv);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->nqb);
  err |= clSetKernelArg(kr, a++, sizeof(float), &qscale);
  if (p->sparse) {
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &p->sparse->tile_off_mem);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &p->sparse->tile_idx_mem);
    err |= clattn__sparse_set_mask_args(p->sparse, kr, (cl_uint)a);
  }
  if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clSetKernelArg", err, "flash_fwd");
  size_t nt = (size_t)s->nt;
  size_t gws[2] = {(size_t)s->nqb * nt, (size_t)d->batch * (size_t)d->heads};
  size_t lws[2] = {nt, 1};
  err = clEnqueueNDRangeKernel(p->ctx->queue, kr, 2, NULL, gws, lws, num_wait, wait, event);
  if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clEnqueueNDRangeKernel", err, "flash_fwd");
  return CLATTN_SUCCESS;
}

static void flash_release(clattn_plan p) {
  flash_state *s = p->state;
  if (!s) return;
  if (s->kernel) clReleaseKernel(s->kernel);
  free(s);
  p->state = NULL;
}

const clattn__family clattn__family_flash = {"flash", flash_create, flash_execute, flash_release};
