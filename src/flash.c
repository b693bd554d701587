/* flash.c — host side of the fused flash forward kernel: configuration, build options, launch. */
#include "internal.h"
#include "flash_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flash_state {
  cl_kernel kernel;
  clattn__flash_cfg cfg;
  int nqb;
} flash_state;

static clattn_status flash_create(clattn_plan p) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  flash_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate flash state");
  p->state = s;

  clattn__flash_limits lim = clattn__flash_limits_of(&ctx->info);
  const char *origin = "built-in default";
  const char *ov = getenv("CLATTN_TUNE_OVERRIDE");
  if (ov && *ov) {
    clattn_status st = clattn__flash_cfg_parse(ov, &s->cfg);
    if (st != CLATTN_SUCCESS)
      return clattn__fail(ctx, st,
                          "CLATTN_TUNE_OVERRIDE='%s' is not a flash configuration "
                          "(expected e.g. 'bm=64,bn=32,tm=16,tn=8')",
                          ov);
    const char *why = clattn__flash_cfg_check(&s->cfg, d->head_dim, &lim);
    if (why)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                          "CLATTN_TUNE_OVERRIDE='%s' is not legal on this device: %s", ov, why);
    origin = "override (CLATTN_TUNE_OVERRIDE)";
  } else if (!clattn__flash_cfg_default(&ctx->info, d->head_dim, &lim, &s->cfg)) {
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "no flash configuration fits this device for head_dim %d (local memory "
                        "%llu bytes, max work-group %zu)",
                        d->head_dim, (unsigned long long)ctx->info.local_mem, ctx->info.max_wg);
  }

  char opts[512];
  int dp = clattn__flash_dp(&s->cfg, d->head_dim);
  /* float4 global I/O needs unit dim strides and 16-byte aligned rows. */
  int vec_global = d->head_dim % 4 == 0 && p->qs.dim == 1 && p->ks.dim == 1 && p->vs.dim == 1 &&
                   p->qs.seq % 4 == 0 && p->ks.seq % 4 == 0 && p->vs.seq % 4 == 0 &&
                   p->qs.head % 4 == 0 && p->ks.head % 4 == 0 && p->vs.head % 4 == 0 &&
                   p->qs.batch % 4 == 0 && p->ks.batch % 4 == 0 && p->vs.batch % 4 == 0;
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DDP=%d -DBM=%d -DBN=%d "
           "-DTM=%d -DTN=%d -DCAUSAL=%d -DVEC_GLOBAL=%d",
           (int)d->dtype, d->head_dim, dp, s->cfg.bm, s->cfg.bn, s->cfg.tm, s->cfg.tn,
           d->mask == CLATTN_MASK_CAUSAL ? 1 : 0, vec_global);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, "flash_fwd.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel(ctx, prog, "flash_fwd", &s->kernel);
  if (st != CLATTN_SUCCESS) return st;
  s->nqb = (d->seq_q + s->cfg.bm - 1) / s->cfg.bm;
  snprintf(p->describe, sizeof p->describe,
           "flash f32 d=%d: bm=%d bn=%d tm=%d tn=%d (%d work-items, %zu B local) [%s]",
           d->head_dim, s->cfg.bm, s->cfg.bn, s->cfg.tm, s->cfg.tn, s->cfg.tm * s->cfg.tn,
           clattn__flash_local_bytes(&s->cfg, d->head_dim), origin);
  p->workspace_bytes = 0;
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
    for (int i = 0; i < 4; i++) err |= clSetKernelArg(kr, a++, sizeof(cl_long), &v4[i]);
  }
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->heads);
  err |= clSetKernelArg(kr, a++, sizeof(int), &G);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_q);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_kv);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->nqb);
  err |= clSetKernelArg(kr, a++, sizeof(float), &qscale);
  if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clSetKernelArg", err, "flash_fwd");
  size_t nt = (size_t)(s->cfg.tm * s->cfg.tn);
  size_t gws[2] = {(size_t)s->nqb * nt, (size_t)d->batch * (size_t)d->heads};
  size_t lws[2] = {nt, 1};
  err = clEnqueueNDRangeKernel(p->ctx->queue, kr, 2, NULL, gws, lws, num_wait, wait, event);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(p->ctx, "clEnqueueNDRangeKernel", err, "flash_fwd");
  return CLATTN_SUCCESS;
}

static void flash_release(clattn_plan p) {
  flash_state *s = p->state;
  if (!s) return;
  if (s->kernel) clReleaseKernel(s->kernel);
  free(s);
  p->state = NULL;
}

const clattn__family clattn__family_flash = {"flash", flash_create, flash_execute,
                                             flash_release};
