/* plan.c — plan creation (validation, family choice), execution checks and release. */
#include "internal.h"
#include "sparse.h"

#include <stdlib.h>
#include <string.h>

/* Sum over t = 1..x of clamp(t, 0, nk) (0 for x <= 0). */
static uint64_t clamped_sum(int64_t x, uint64_t nk) {
  if (x <= 0) return 0;
  const uint64_t ux = (uint64_t)x;
  if (ux <= nk) return ux * (ux + 1) / 2;
  return nk * (nk + 1) / 2 + (ux - nk) * nk;
}

/* (b, h, i, j) tuples visible without a mask or under a causal mask. Causal:
 * query i sees clamp(i + off + 1, 0, Nk) keys (off = Nk - Nq bottom-right, 0
 * top-left); summed in closed form, so that sizing a long sequence
 * (clattn_plan_estimate) costs no loop over it. */
static uint64_t dense_pairs(const clattn_attention_desc *d) {
  uint64_t per = (uint64_t)d->seq_q * (uint64_t)d->seq_kv;
  if (clattn__mask_is_causal(d->mask)) {
    const int64_t off = clattn__causal_offset(d);
    per = clamped_sum(off + d->seq_q, (uint64_t)d->seq_kv) - clamped_sum(off, (uint64_t)d->seq_kv);
  }
  return per * (uint64_t)d->batch * (uint64_t)d->heads;
}

clattn_status clattn_plan_create(clattn_context ctx, const clattn_attention_desc *desc,
                                 unsigned flags, clattn_plan *out) {
  return clattn__plan_create_ex(ctx, desc, flags, NULL, NULL, out);
}

static clattn_status plan_build(clattn_context ctx, const clattn_attention_desc *desc,
                                unsigned flags, const char *config, const char *origin,
                                bool estimate, size_t *estimate_bytes, clattn_plan *out);

clattn_status clattn__plan_create_ex(clattn_context ctx, const clattn_attention_desc *desc,
                                     unsigned flags, const char *config, const char *origin,
                                     clattn_plan *out) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!out) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "out (plan) is NULL");
  *out = NULL;
  const unsigned known = CLATTN_PLAN_LAZY_WORKSPACE | CLATTN_PLAN_MEASURE;
  if (flags & ~known)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "flags: unknown bits 0x%x",
                        flags & ~known);
  return plan_build(ctx, desc, flags, config, origin, false, NULL, out);
}

clattn_status clattn_plan_estimate(clattn_context ctx, const clattn_attention_desc *desc,
                                   size_t *workspace_bytes) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!workspace_bytes)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "workspace_bytes is NULL");
  *workspace_bytes = 0;
  clattn_plan p = NULL;
  clattn_status st = plan_build(ctx, desc, 0, NULL, NULL, true, workspace_bytes, &p);
  clattn_plan_release(p);
  return st;
}

/* Plan creation proper. With `estimate`, the same steps size the plan but the
 * families build no program, allocate and upload nothing on the device and
 * skip their device-memory checks; *estimate_bytes receives the workspace the
 * sizing reached, also when a family refuses the problem after sizing it. */
static clattn_status plan_build(clattn_context ctx, const clattn_attention_desc *desc,
                                unsigned flags, const char *config, const char *origin,
                                bool estimate, size_t *estimate_bytes, clattn_plan *out) {
  clattn_plan p = calloc(1, sizeof *p);
  if (!p) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate plan");
  p->ctx = ctx;
  p->flags = flags;
  p->config = config;
  p->config_origin = origin;
  p->estimate = estimate;
  clattn_status st = clattn__desc_resolve(ctx, desc, &p->desc, &p->qs, &p->ks, &p->vs, &p->os,
                                          p->elems);
  if (st != CLATTN_SUCCESS) {
    free(p);
    return st;
  }
  if (clattn__mask_is_sparse(p->desc.mask)) {
    if (p->desc.algo == CLATTN_ALGO_LINEAR) {
      free(p);
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "desc.mask %d is a sparse softmax mask: the flash and naive families "
                          "serve it, not desc.algo LINEAR",
                          (int)desc->mask);
    }
    /* Copies the caller's arrays, builds the block lists, counts the pairs. */
    st = clattn__sparse_plan_init(p);
    if (st != CLATTN_SUCCESS) {
      clattn__sparse_release(p);
      free(p);
      return st;
    }
  } else {
    p->visible_pairs = dense_pairs(&p->desc);
  }
  switch (p->desc.algo) {
  case CLATTN_ALGO_NAIVE: p->family = &clattn__family_naive; break;
  case CLATTN_ALGO_LINEAR: p->family = &clattn__family_linear; break;
  case CLATTN_ALGO_FLASH:
  case CLATTN_ALGO_AUTO:
  default:
    p->family = &clattn__family_flash;
    p->desc.algo = CLATTN_ALGO_FLASH;
    break;
  }
  st = p->family->create(p);
  if (estimate_bytes) *estimate_bytes = clattn_plan_workspace_size(p);
  if (st != CLATTN_SUCCESS) {
    if (p->family->release) p->family->release(p);
    clattn__sparse_release(p);
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

size_t clattn_plan_workspace_size(clattn_plan p) {
  if (!p) return 0;
  /* The family's own workspace plus a sparse mask's tile lists and bitmap. */
  return p->workspace_bytes + (p->sparse ? p->sparse->device_bytes : 0);
}

const clattn_attention_desc *clattn_plan_desc(clattn_plan p) { return p ? &p->desc : NULL; }

uint64_t clattn_plan_visible_pairs(clattn_plan p) { return p ? p->visible_pairs : 0; }

double clattn_plan_flops(clattn_plan p) {
  return p ? 4.0 * (double)p->desc.head_dim * (double)p->visible_pairs : 0.0;
}

void clattn_plan_release(clattn_plan p) {
  if (!p) return;
  if (p->family && p->family->release) p->family->release(p);
  clattn__sparse_release(p);
  p->ctx->live_plans--;
  free(p);
}
