/* plan.c — plan objects: validation and resolution of the problem, building with a chosen variant,
 * execution checks, release. */
#include "variant.h"
#include "checked.h"
#include "linear.h"
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
  return per;
}

static void set_pairs(clattn_plan p, uint64_t per_head) {
  const clattn__u128 n = (clattn__u128)per_head * (uint64_t)p->desc.batch * (uint64_t)p->desc.heads;
  p->visible_pairs = n > UINT64_MAX ? UINT64_MAX : (uint64_t)n;
  p->visible_pairs_exact = (double)n;
}

/* Frees a plan that failed before or during its variant's create. */
static void discard(clattn_plan p) {
  if (p->bwd_variant && p->bwd_variant->release) p->bwd_variant->release(p);
  if (p->variant && p->variant->release) p->variant->release(p);
  clattn__sparse_release(p);
  free(p);
}

clattn_status clattn__plan_new(clattn_context ctx, const clattn_attention_desc *desc,
                               unsigned flags, bool estimate, clattn_plan *out) {
  *out = NULL;
  clattn_plan p = calloc(1, sizeof *p);
  if (!p) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate plan");
  p->ctx = ctx;
  p->flags = flags;
  p->estimate = estimate;
  clattn_status st =
      clattn__desc_resolve(ctx, desc, &p->desc, &p->qs, &p->ks, &p->vs, &p->os, p->elems);
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
    uint64_t pairs = 0;
    st = clattn__sparse_plan_init(p, &pairs);
    if (st != CLATTN_SUCCESS) {
      discard(p);
      return st;
    }
    set_pairs(p, pairs);
  } else {
    set_pairs(p, dense_pairs(&p->desc));
  }
  if (p->desc.algo == CLATTN_ALGO_AUTO) p->desc.algo = CLATTN_ALGO_FLASH;
  if (p->desc.algo == CLATTN_ALGO_LINEAR) { /* the feature map and count */
    int features = 0;
    st = clattn__linear_resolve(ctx, &p->desc, &features);
    if (st != CLATTN_SUCCESS) {
      discard(p);
      return st;
    }
    p->desc.num_features = features;
  }
  *out = p;
  return CLATTN_SUCCESS;
}

clattn_status clattn__plan_build(clattn_plan p, const clattn__variant *v, const int *params,
                                 const char *origin, size_t *estimate_bytes, clattn_plan *out) {
  *out = NULL;
  p->variant = v;
  const clattn_status st = v->create(p, params, origin);
  if (estimate_bytes) *estimate_bytes = clattn_plan_workspace_size(p);
  if (st != CLATTN_SUCCESS) {
    discard(p);
    return st;
  }
  p->ctx->live_plans++;
  *out = p;
  return CLATTN_SUCCESS;
}

void clattn__plan_discard(clattn_plan p) {
  if (p) discard(p);
}

/* Whether two buffers share memory: the same object, or sub-buffers (or a
 * sub-buffer and its parent) whose byte ranges in one parent overlap. */
static bool mem_overlap(cl_mem a, cl_mem b) {
  if (a == b) return true;
  cl_mem root[2] = {a, b};
  size_t off[2] = {0, 0}, size[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    cl_mem m = root[i], parent = NULL;
    if (clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size[i], &size[i], NULL) != CL_SUCCESS)
      return false;
    if (clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL) ==
            CL_SUCCESS &&
        parent) {
      if (clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof off[i], &off[i], NULL) != CL_SUCCESS)
        return false;
      root[i] = parent;
    }
  }
  return root[0] == root[1] && off[0] < off[1] + size[1] && off[1] < off[0] + size[0];
}

clattn_status clattn_plan_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
                                  cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  const size_t es = clattn__dtype_size(p->desc.dtype);
  /* Sizes in bytes (desc_resolve bounded the element counts; checked anyway). */
  size_t bytes[5];
  for (int i = 0; i < 4; i++)
    if (!clattn__mul_size(p->elems[i], es, &bytes[i])) bytes[i] = SIZE_MAX;
  if (!clattn__mul3_size((size_t)p->desc.batch * (size_t)p->desc.heads, (size_t)p->desc.seq_q,
                         sizeof(float), &bytes[4]))
    bytes[4] = SIZE_MAX;
  clattn_status st;
  if ((st = clattn__check_buffer(ctx, q, bytes[0], "q")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, k, bytes[1], "k")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, v, bytes[2], "v")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, o, bytes[3], "o")) != CLATTN_SUCCESS) return st;
  if (mem_overlap(o, q) || mem_overlap(o, k) || mem_overlap(o, v))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "o must not alias q, k or v");
  if (lse) {
    if ((st = clattn__check_buffer(ctx, lse, bytes[4], "lse")) != CLATTN_SUCCESS) return st;
    if (mem_overlap(lse, q) || mem_overlap(lse, k) || mem_overlap(lse, v) || mem_overlap(lse, o))
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "lse must not alias q, k, v or o");
  }
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  const clattn__buffers b = {q, k, v, o, lse, NULL, NULL, NULL, NULL};
  return p->variant->execute(p, &b, num_wait, wait, event);
}

clattn_status clattn__plan_build_backward(clattn_plan p) {
  if (p->bwd_variant) return CLATTN_SUCCESS;
  const clattn__variant *v = NULL;
  int params[CLATTN__MAX_PARAMS];
  char origin[200];
  clattn_status st = clattn__choose_backward(p, &v, params, origin, sizeof origin);
  if (st != CLATTN_SUCCESS) return st;
  p->bwd_variant = v;
  st = v->create(p, params, origin);
  if (st != CLATTN_SUCCESS) {
    v->release(p);
    p->bwd_variant = NULL;
    p->bwd_workspace_bytes = 0;
    p->bwd_describe[0] = 0;
    return st;
  }
  clattn__append(p->describe, sizeof p->describe, "; backward: %s", p->bwd_describe);
  return CLATTN_SUCCESS;
}

clattn_status clattn_plan_execute_backward(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                           cl_mem lse, cl_mem dout, cl_mem dq, cl_mem dk, cl_mem dv,
                                           cl_uint num_wait, const cl_event *wait,
                                           cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  ctx->needed_bytes = 0;
  const clattn_attention_desc *d = &p->desc;
  const size_t es = clattn__dtype_size(d->dtype);
  size_t bytes[5];
  for (int i = 0; i < 4; i++)
    if (!clattn__mul_size(p->elems[i], es, &bytes[i])) bytes[i] = SIZE_MAX;
  if (!clattn__mul3_size((size_t)d->batch * (size_t)d->heads, (size_t)d->seq_q, sizeof(float),
                         &bytes[4]))
    bytes[4] = SIZE_MAX;
  /* Arguments, their sizes (q, dq: bytes[0]; k, dk: [1]; v, dv: [2]; o, dout: [3]). */
  const cl_mem mem[9] = {q, k, v, o, lse, dout, dq, dk, dv};
  static const char *const names[9] = {"q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv"};
  static const int size_of[9] = {0, 1, 2, 3, 4, 3, 0, 1, 2};
  clattn_status st;
  for (int i = 0; i < 9; i++)
    if ((st = clattn__check_buffer(ctx, mem[i], bytes[size_of[i]], names[i])) != CLATTN_SUCCESS)
      return st;
  for (int i = 6; i < 9; i++) /* the outputs alias nothing */
    for (int j = 0; j < 9; j++)
      if (j != i && mem_overlap(mem[i], mem[j]))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s must not alias %s", names[i],
                            names[j]);
  if (d->layout == CLATTN_LAYOUT_STRIDED) {
    const clattn_strides *st3[3] = {&p->qs, &p->ks, &p->vs};
    const int hh[3] = {d->heads, d->kv_heads, d->kv_heads};
    const int nn[3] = {d->seq_q, d->seq_kv, d->seq_kv};
    static const char *const sn[3] = {"q_strides", "k_strides", "v_strides"};
    for (int i = 0; i < 3; i++)
      if (!clattn__strides_disjoint(st3[i], d->batch, hh[i], nn[i], d->head_dim))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "desc.%s make two elements share an address: the backward pass "
                            "writes d%c with them",
                            sn[i], "qkv"[i]);
  }
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  if ((st = clattn__plan_build_backward(p)) != CLATTN_SUCCESS) return st;
  const clattn__buffers b = {q, k, v, o, lse, dout, dq, dk, dv};
  return p->bwd_variant->execute(p, &b, num_wait, wait, event);
}

double clattn_plan_backward_flops(clattn_plan p) { return p ? 2.5 * clattn_plan_flops(p) : 0.0; }

const char *clattn_plan_describe(clattn_plan p) { return p ? p->describe : ""; }

size_t clattn_plan_workspace_size(clattn_plan p) {
  if (!p) return 0;
  /* The family's own workspace plus a sparse mask's tile lists and bitmap. */
  return p->workspace_bytes + p->bwd_workspace_bytes + (p->sparse ? p->sparse->device_bytes : 0);
}

const clattn_attention_desc *clattn_plan_desc(clattn_plan p) { return p ? &p->desc : NULL; }

uint64_t clattn_plan_visible_pairs(clattn_plan p) { return p ? p->visible_pairs : 0; }

double clattn_plan_flops(clattn_plan p) {
  if (!p) return 0.0;
  if (p->variant && p->variant->flops) return p->variant->flops(p);
  return 4.0 * (double)p->desc.head_dim * p->visible_pairs_exact;
}

void clattn_plan_release(clattn_plan p) {
  if (!p) return;
  if (p->bwd_variant && p->bwd_variant->release) p->bwd_variant->release(p);
  if (p->variant && p->variant->release) p->variant->release(p);
  clattn__sparse_release(p);
  clattn_context ctx = p->ctx;
  free(p);
  if (--ctx->live_plans == 0 && ctx->released) clattn__context_free(ctx);
}

static int cmp_ms(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

clattn_status clattn_plan_profile(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o, int reps,
                                  int max_kernels, const char **names, double *ms,
                                  int *num_kernels) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  if (!names || !ms || !num_kernels || reps < 1 || max_kernels < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_plan_profile: names, ms and num_kernels must be given, reps >= 1 "
                        "and max_kernels >= 1");
  *num_kernels = 0;
  const clattn__buffers b = {q, k, v, o, NULL, NULL, NULL, NULL, NULL};
  if (p->variant->profile) {
    const char *nm[16];
    double t[16];
    const int n = p->variant->profile(p, &b, reps, nm, t);
    if (n < 0) return CLATTN_ERROR_OPENCL;
    for (int i = 0; i < n && i < max_kernels; i++) {
      names[i] = nm[i];
      ms[i] = t[i];
    }
    *num_kernels = n < max_kernels ? n : max_kernels;
    return CLATTN_SUCCESS;
  }
  double *t = malloc((size_t)reps * sizeof *t);
  if (!t) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "clattn_plan_profile: host memory");
  clattn_status st = CLATTN_SUCCESS;
  for (int r = 0; r < reps && st == CLATTN_SUCCESS; r++) {
    cl_event ev = NULL;
    st = clattn_plan_execute(p, q, k, v, o, NULL, 0, NULL, &ev);
    if (st != CLATTN_SUCCESS) break;
    cl_ulong t0 = 0, t1 = 0;
    cl_int err = clWaitForEvents(1, &ev);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    if (err != CL_SUCCESS) st = clattn__cl_fail(ctx, "clGetEventProfilingInfo", err, "profile");
    t[r] = (double)(t1 - t0) * 1e-6;
  }
  if (st == CLATTN_SUCCESS) {
    qsort(t, (size_t)reps, sizeof *t, cmp_ms);
    names[0] = p->variant->name;
    ms[0] = t[reps / 2];
    *num_kernels = 1;
  }
  free(t);
  return st;
}
