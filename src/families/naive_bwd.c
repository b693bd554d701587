/* naive_bwd.c — the naive family's backward: CLBlast GEMMs with P recomputed per head, the
 * baseline of the flash backward. */
#include "checked.h"
#include "families.h"
#include "sparse.h"

#include <clblast_c.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Per (batch, head), in a fixed order (batch, kv head, query heads of the kv
 * head), with two Nq×Nk float matrices of workspace reused by every head:
 *   S  = scale · Q Kᵀ          (GEMM)       P = exp(S − LSE) masked (kernel)
 *   dV (+)= Pᵀ dO              (GEMM; the first query head of a kv head
 *                                writes, the others add: GQA sums in order)
 *   dP = dO Vᵀ                 (GEMM)       dS = scale · P∘(dP − D) (kernel)
 *   dQ = dS K,  dK (+)= dSᵀ Q  (GEMMs)
 * f32 storage with unit dim strides (the GEMMs read rows); the flash
 * backward serves everything else.
 */

typedef struct naive_bwd_state {
  cl_kernel pk, dsk;
  cl_mem P, dS; /* Nq×Nk floats each */
  bool out_of_order;
} naive_bwd_state;

const char *const clattn__naive_bwd_sources[] = {"naive_bwd.cl", NULL};

int clattn__naive_bwd_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                 const char **why) {
  CLATTN__NO_MODS(d, why, "naive backward");
  (void)info;
  if (d->dtype != CLATTN_DTYPE_F32) {
    *why = "f32 storage only (the flash backward serves f16 / bf16)";
    return 0;
  }
  clattn_strides s[4];
  if (clattn_attention_desc_strides(d, &s[0], &s[1], &s[2], &s[3], NULL) != CLATTN_SUCCESS) {
    *why = "invalid descriptor";
    return 0;
  }
  for (int t = 0; t < 4; t++)
    if (s[t].dim != 1 || s[t].seq < d->head_dim) {
      *why = "needs unit dim strides and seq strides >= head_dim (rows for CLBlast)";
      return 0;
    }
  return 10;
}

const char *clattn__naive_bwd_check(const int *params, const clattn_attention_desc *d,
                                    const clattn__device_info *info) {
  (void)params;
  (void)d;
  (void)info;
  return NULL;
}

bool clattn__naive_bwd_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                int *params) {
  (void)info;
  (void)d;
  (void)params;
  return true;
}

size_t clattn__naive_bwd_local(const int *params, const clattn_attention_desc *d) {
  (void)params;
  (void)d;
  return 0;
}

clattn_status clattn__naive_bwd_create(clattn_plan p, const int *params, const char *origin) {
  (void)params;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  naive_bwd_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate backward state");
  p->bwd_state = s;
  size_t per = 0, total = 0;
  if (!clattn__mul3_size((size_t)d->seq_q, (size_t)d->seq_kv, sizeof(float), &per) ||
      !clattn__mul_size(per, 2, &total) || per / sizeof(float) > (size_t)INT_MAX)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive backward's Nq*Nk = %d*%d score matrix exceeds CLBlast's 32-bit "
                        "indices; use the flash family",
                        d->seq_q, d->seq_kv);
  for (int t = 0; t < 4; t++)
    if (p->elems[t] > (size_t)INT_MAX)
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "the naive backward (CLBlast, 32-bit indices) cannot address tensor %c "
                          "of %zu elements; use the flash family",
                          "qkvo"[t], p -> elems[t]);
  p->bwd_workspace_bytes = total;
  if (p->estimate) return CLATTN_SUCCESS;
  char opts[256];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DCLATTN_DTYPE=0 -DD=%d -DCAUSAL=%d", d->head_dim,
           clattn__causal_define(d->mask));
  if (p->sparse) clattn__sparse_options(p->sparse, opts, sizeof opts);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, "naive_bwd.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  if ((st = clattn__create_kernel(ctx, prog, "naive_bwd_p", &s->pk)) != CLATTN_SUCCESS ||
      (st = clattn__create_kernel(ctx, prog, "naive_bwd_ds", &s->dsk)) != CLATTN_SUCCESS)
    return st;
  cl_int err;
  s->P = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, per, NULL, &err);
  if (s->P) s->dS = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, per, NULL, &err);
  if (!s->P || !s->dS) {
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_INVALID_BUFFER_SIZE)
      return clattn__fail_needed(ctx, total, "the naive backward needs %zu bytes of workspace",
                                 total);
    return clattn__cl_fail(ctx, "clCreateBuffer", err, "naive backward workspace");
  }
  if (p->sparse && (st = clattn__sparse_upload_bits(p)) != CLATTN_SUCCESS) return st;
  cl_command_queue_properties props = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
  s->out_of_order = (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
  snprintf(p->bwd_describe, sizeof p->bwd_describe,
           "naive_bwd f32: per head CLBlast GEMM S=QK^T -> P -> dV=P^T dO, dP=dO V^T -> dS -> "
           "dQ=dS K, dK=dS^T Q (deterministic, %zu B workspace) [%s]",
           total, origin);
  return CLATTN_SUCCESS;
}

static clattn_status blast_fail(clattn_context ctx, const char *what, CLBlastStatusCode c) {
  if (c == CLBlastOpenCLOutOfResources || c == CLBlastTempBufferAllocFailure)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "%s failed with CLBlast status %d", what,
                        (int)c);
  return clattn__fail(ctx, CLATTN_ERROR_OPENCL, "%s failed with CLBlast status %d", what, (int)c);
}

#define GEMM(ta, tb, m, n, k, alpha, A, ao, lda, B, bo, ldb, beta, C, co, ldc, what)               \
  do {                                                                                             \
    const CLBlastStatusCode c_ =                                                                   \
        CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, (size_t)(m), (size_t)(n), (size_t)(k), alpha,  \
                     A, (size_t)(ao), (size_t)(lda), B, (size_t)(bo), (size_t)(ldb), beta, C,      \
                     (size_t)(co), (size_t)(ldc), &queue, NULL);                                   \
    if (c_ != CLBlastSuccess) return blast_fail(ctx, what, c_);                                    \
    if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);                       \
  } while (0)

clattn_status clattn__naive_bwd_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                        const cl_event *wait, cl_event *event) {
  naive_bwd_state *s = p->bwd_state;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  cl_command_queue queue = ctx->queue;
  cl_int err = CL_SUCCESS;
  if (num_wait) {
    err = clEnqueueBarrierWithWaitList(queue, num_wait, wait, NULL);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueBarrierWithWaitList", err, "");
  }
  const int Nq = d->seq_q, Nk = d->seq_kv, hd = d->head_dim, G = d->heads / d->kv_heads;
  const clattn_strides *qs = &p->qs, *ks = &p->ks, *vs = &p->vs, *os = &p->os;
  const float scale = (float)d->scale;
  const CLBlastTranspose N = CLBlastTransposeNo, T = CLBlastTransposeYes;
  const size_t pgws[2] = {(size_t)Nk, (size_t)Nq}, dgws = (size_t)Nq;
  for (int bi = 0; bi < d->batch; bi++)
    for (int hk = 0; hk < d->kv_heads; hk++)
      for (int hh = 0; hh < G; hh++) {
        const int h = hk * G + hh;
        const int64_t qo = bi * qs->batch + h * qs->head, oo = bi * os->batch + h * os->head;
        const int64_t ko = bi * ks->batch + hk * ks->head, vo = bi * vs->batch + hk * vs->head;
        const float beta = hh ? 1.0f : 0.0f; /* GQA: the kv head's gradients sum in order */
        GEMM(N, T, Nq, Nk, hd, scale, b->q, qo, qs->seq, b->k, ko, ks->seq, 0.0f, s->P, 0, Nk,
             "CLBlast GEMM S = scale Q K^T");
        const cl_long lse_off = ((cl_long)bi * d->heads + h) * Nq;
        err = clSetKernelArg(s->pk, 0, sizeof(cl_mem), &s->P);
        err |= clSetKernelArg(s->pk, 1, sizeof(cl_mem), &b->lse);
        err |= clSetKernelArg(s->pk, 2, sizeof(cl_long), &lse_off);
        err |= clSetKernelArg(s->pk, 3, sizeof(int), &Nq);
        err |= clSetKernelArg(s->pk, 4, sizeof(int), &Nk);
        if (p->sparse) err |= clattn__sparse_set_mask_args(p->sparse, s->pk, 5);
        if (err == CL_SUCCESS)
          err = clEnqueueNDRangeKernel(queue, s->pk, 2, NULL, pgws, NULL, 0, NULL, NULL);
        if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "naive_bwd_p", err, "P = exp(S - LSE)");
        if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
        GEMM(T, N, Nk, hd, Nq, 1.0f, s->P, 0, Nk, b->dout, oo, os->seq, beta, b->dv, vo, vs->seq,
             "CLBlast GEMM dV = P^T dO");
        GEMM(N, T, Nq, Nk, hd, 1.0f, b->dout, oo, os->seq, b->v, vo, vs->seq, 0.0f, s->dS, 0, Nk,
             "CLBlast GEMM dP = dO V^T");
        const cl_long o_off = oo, oss = os->seq;
        err = clSetKernelArg(s->dsk, 0, sizeof(cl_mem), &s->P);
        err |= clSetKernelArg(s->dsk, 1, sizeof(cl_mem), &s->dS);
        err |= clSetKernelArg(s->dsk, 2, sizeof(cl_mem), &b->o);
        err |= clSetKernelArg(s->dsk, 3, sizeof(cl_mem), &b->dout);
        err |= clSetKernelArg(s->dsk, 4, sizeof(cl_long), &o_off);
        err |= clSetKernelArg(s->dsk, 5, sizeof(cl_long), &oss);
        err |= clSetKernelArg(s->dsk, 6, sizeof(int), &Nq);
        err |= clSetKernelArg(s->dsk, 7, sizeof(int), &Nk);
        err |= clSetKernelArg(s->dsk, 8, sizeof(float), &scale);
        if (err == CL_SUCCESS)
          err = clEnqueueNDRangeKernel(queue, s->dsk, 1, NULL, &dgws, NULL, 0, NULL, NULL);
        if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "naive_bwd_ds", err, "dS");
        if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
        GEMM(N, N, Nq, hd, Nk, 1.0f, s->dS, 0, Nk, b->k, ko, ks->seq, 0.0f, b->dq, qo, qs->seq,
             "CLBlast GEMM dQ = dS K");
        GEMM(T, N, Nk, hd, Nq, 1.0f, s->dS, 0, Nk, b->q, qo, qs->seq, beta, b->dk, ko, ks->seq,
             "CLBlast GEMM dK = dS^T Q");
      }
  if (event) {
    err = clEnqueueBarrierWithWaitList(queue, 0, NULL, event);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueBarrierWithWaitList", err, "");
  }
  return CLATTN_SUCCESS;
}

void clattn__naive_bwd_release(clattn_plan p) {
  naive_bwd_state *s = p->bwd_state;
  if (!s) return;
  if (s->pk) clReleaseKernel(s->pk);
  if (s->dsk) clReleaseKernel(s->dsk);
  if (s->P) clReleaseMemObject(s->P);
  if (s->dS) clReleaseMemObject(s->dS);
  free(s);
  p->bwd_state = NULL;
}
