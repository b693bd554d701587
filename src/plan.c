/* plan.c — plan creation (validation, family choice), execution checks and release. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

clattn_status clattn_plan_create(clattn_context ctx, const clattn_attention_desc *desc,
                                 unsigned flags, clattn_plan *out) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!out) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "out (plan) is NULL");
  *out = NULL;
  if (flags & ~(unsigned)CLATTN_PLAN_LAZY_WORKSPACE)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "flags: unknown bits 0x%x",
                        flags & ~(unsigned)CLATTN_PLAN_LAZY_WORKSPACE);
  clattn_plan p = calloc(1, sizeof *p);
  if (!p) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate plan");
  p->ctx = ctx;
  p->flags = flags;
  clattn_status st = clattn__desc_resolve(ctx, desc, &p->desc, &p->qs, &p->ks, &p->vs, &p->os,
                                          p->elems);
  if (st != CLATTN_SUCCESS) {
    free(p);
    return st;
  }
  if (p->desc.dtype != CLATTN_DTYPE_F32) {
    free(p);
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "desc.dtype %s is not implemented yet: this version computes f32 "
                        "storage only",
                        clattn__dtype_name(desc->dtype));
  }
  if (p->desc.mask > CLATTN_MASK_CAUSAL) {
    free(p);
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "desc.mask %d (sparse patterns) is not implemented yet", (int)desc->mask);
  }
  if (p->desc.algo == CLATTN_ALGO_LINEAR) {
    free(p);
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "desc.algo LINEAR is not implemented yet");
  }
  switch (p->desc.algo) {
  case CLATTN_ALGO_NAIVE: p->family = &clattn__family_naive; break;
  case CLATTN_ALGO_FLASH:
  case CLATTN_ALGO_AUTO:
  default:
    p->family = &clattn__family_flash;
    p->desc.algo = CLATTN_ALGO_FLASH;
    break;
  }
  st = p->family->create(p);
  if (st != CLATTN_SUCCESS) {
    if (p->family->release) p->family->release(p);
    free(p);
    return st;
  }
  ctx->live_plans++;
  *out = p;
  return CLATTN_SUCCESS;
}

clattn_status clattn_plan_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                  cl_mem lse, cl_uint num_wait, const cl_event *wait,
                                  cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  size_t es = clattn__dtype_size(p->desc.dtype);
  clattn_status st;
  if ((st = clattn__check_buffer(ctx, q, p->elems[0] * es, "q")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, k, p->elems[1] * es, "k")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, v, p->elems[2] * es, "v")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, o, p->elems[3] * es, "o")) != CLATTN_SUCCESS) return st;
  if (o == q || o == k || o == v)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "o must not alias q, k or v");
  if (lse) {
    size_t n = (size_t)p->desc.batch * (size_t)p->desc.heads * (size_t)p->desc.seq_q;
    if ((st = clattn__check_buffer(ctx, lse, n * sizeof(float), "lse")) != CLATTN_SUCCESS)
      return st;
  }
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  return p->family->execute(p, q, k, v, o, lse, num_wait, wait, event);
}

const char *clattn_plan_describe(clattn_plan p) { return p ? p->describe : ""; }

size_t clattn_plan_workspace_size(clattn_plan p) { return p ? p->workspace_bytes : 0; }

const clattn_attention_desc *clattn_plan_desc(clattn_plan p) { return p ? &p->desc : NULL; }

void clattn_plan_release(clattn_plan p) {
  if (!p) return;
  if (p->family && p->family->release) p->family->release(p);
  p->ctx->live_plans--;
  free(p);
}
