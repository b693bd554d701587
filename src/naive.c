/* naive.c — the baseline family: CLBlast batched GEMM, masked row softmax, CLBlast GEMM. */
#include "internal.h"

#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct naive_state {
  cl_kernel softmax;
  int softmax_wg;
  cl_mem scores; /* B·H·Nq·Nk floats */
  size_t batch_count;
  /* Per-(b,h) element offsets; `uniform` when they form arithmetic
   * progressions, so the strided-batched GEMM can be used. */
  size_t *qoff, *koff, *voff, *ooff, *soff;
  bool uniform;
  float *alphas, *ones, *zeros;
  bool out_of_order;
} naive_state;

static bool arithmetic(const size_t *x, size_t n) {
  for (size_t i = 2; i < n; i++)
    if (x[i] - x[i - 1] != x[1] - x[0]) return false;
  return true;
}

static clattn_status alloc_workspace(clattn_plan p) {
  naive_state *s = p->state;
  cl_int err;
  s->scores = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, p->workspace_bytes, NULL, &err);
  if (!s->scores) {
    clattn_status st = clattn__cl_fail(p->ctx, "clCreateBuffer", err, "naive score workspace");
    if (st == CLATTN_ERROR_OUT_OF_MEMORY || err == CL_INVALID_BUFFER_SIZE)
      return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "naive attention needs a %zu-byte score workspace (B*H*Nq*Nk*4); "
                          "clCreateBuffer failed with %s",
                          p->workspace_bytes, clattn__cl_error_name(err));
    return st;
  }
  /* Touch it so that a lazy allocator fails here, not in the middle of a run. */
  float zero = 0.0f;
  err = clEnqueueFillBuffer(p->ctx->queue, s->scores, &zero, sizeof zero, 0, p->workspace_bytes,
                            0, NULL, NULL);
  if (err == CL_SUCCESS) err = clFinish(p->ctx->queue);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(s->scores);
    s->scores = NULL;
    return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "naive attention needs a %zu-byte score workspace (B*H*Nq*Nk*4); the "
                        "device could not provide it (%s)",
                        p->workspace_bytes, clattn__cl_error_name(err));
  }
  return CLATTN_SUCCESS;
}

static clattn_status naive_create(clattn_plan p) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  if (p->qs.dim != 1 || p->ks.dim != 1 || p->vs.dim != 1 || p->os.dim != 1)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family needs a unit dim stride (head_dim contiguous) in q, k, "
                        "v and o; use the flash family for other strides");
  if (p->qs.seq < d->head_dim || p->ks.seq < d->head_dim || p->vs.seq < d->head_dim ||
      p->os.seq < d->head_dim)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family needs seq strides >= head_dim (GEMM leading dims)");
  naive_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate naive state");
  p->state = s;

  size_t bc = (size_t)d->batch * (size_t)d->heads;
  size_t per = (size_t)d->seq_q * (size_t)d->seq_kv;
  if (per > SIZE_MAX / sizeof(float) / bc)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "naive attention needs a score workspace larger than the address space");
  p->workspace_bytes = bc * per * sizeof(float);
  cl_ulong limit = ctx->info.max_alloc < ctx->info.global_mem ? ctx->info.max_alloc
                                                               : ctx->info.global_mem;
  if ((cl_ulong)p->workspace_bytes > limit)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "naive attention needs a %zu-byte score workspace (B*H*Nq*Nk*4 = "
                        "%d*%d*%d*%d*4) but the device allows at most %llu bytes in one buffer "
                        "(%llu in all); use the flash family",
                        p->workspace_bytes, d->batch, d->heads, d->seq_q, d->seq_kv,
                        (unsigned long long)ctx->info.max_alloc,
                        (unsigned long long)ctx->info.global_mem);

  s->batch_count = bc;
  s->qoff = calloc(bc, sizeof(size_t));
  s->koff = calloc(bc, sizeof(size_t));
  s->voff = calloc(bc, sizeof(size_t));
  s->ooff = calloc(bc, sizeof(size_t));
  s->soff = calloc(bc, sizeof(size_t));
  s->alphas = calloc(bc, sizeof(float));
  s->ones = calloc(bc, sizeof(float));
  s->zeros = calloc(bc, sizeof(float));
  if (!s->qoff || !s->koff || !s->voff || !s->ooff || !s->soff || !s->alphas || !s->ones ||
      !s->zeros)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate GEMM offset tables");
  int G = d->heads / d->kv_heads;
  for (size_t i = 0; i < bc; i++) {
    int64_t b = (int64_t)(i / (size_t)d->heads), h = (int64_t)(i % (size_t)d->heads);
    s->qoff[i] = (size_t)(b * p->qs.batch + h * p->qs.head);
    s->koff[i] = (size_t)(b * p->ks.batch + (h / G) * p->ks.head);
    s->voff[i] = (size_t)(b * p->vs.batch + (h / G) * p->vs.head);
    s->ooff[i] = (size_t)(b * p->os.batch + h * p->os.head);
    s->soff[i] = i * per;
    s->alphas[i] = (float)d->scale;
    s->ones[i] = 1.0f;
    s->zeros[i] = 0.0f;
  }
  s->uniform = arithmetic(s->qoff, bc) && arithmetic(s->koff, bc) && arithmetic(s->voff, bc) &&
               arithmetic(s->ooff, bc);

  cl_command_queue_properties qp = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  s->out_of_order = (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;

  s->softmax_wg = 256;
  while ((size_t)s->softmax_wg > ctx->info.max_wg) s->softmax_wg /= 2;
  if (ctx->info.is_cpu) s->softmax_wg = s->softmax_wg > 16 ? 16 : s->softmax_wg;
  char opts[256];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DWG=%d -DCAUSAL=%d", s->softmax_wg,
           d->mask == CLATTN_MASK_CAUSAL ? 1 : 0);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, "softmax.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel(ctx, prog, "softmax_rows", &s->softmax);
  if (st != CLATTN_SUCCESS) return st;

  if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE)) {
    st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  snprintf(p->describe, sizeof p->describe,
           "naive f32: CLBlast %s GEMM -> softmax (wg %d) -> GEMM, workspace %zu bytes "
           "[built-in]",
           s->uniform ? "strided-batched" : "batched (offset tables)", s->softmax_wg,
           p->workspace_bytes);
  return CLATTN_SUCCESS;
}

static clattn_status blast_fail(clattn_context ctx, const char *call, CLBlastStatusCode c) {
  if (c == CLBlastOpenCLOutOfResources ||
      c == CLBlastTempBufferAllocFailure)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "%s failed with CLBlast status %d", call,
                        (int)c);
  return clattn__fail(ctx, CLATTN_ERROR_OPENCL, "%s failed with CLBlast status %d", call, (int)c);
}

static clattn_status naive_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                   cl_mem lse, cl_uint num_wait, const cl_event *wait,
                                   cl_event *event) {
  naive_state *s = p->state;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  cl_command_queue queue = ctx->queue;
  cl_int err;
  if (!s->scores) {
    clattn_status st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  if (num_wait) {
    err = clEnqueueBarrierWithWaitList(queue, num_wait, wait, NULL);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueBarrierWithWaitList", err, "");
  }
  const size_t Nq = (size_t)d->seq_q, Nk = (size_t)d->seq_kv, hd = (size_t)d->head_dim;
  const size_t bc = s->batch_count;
  CLBlastStatusCode bs;
  /* S = scale · Q Kᵀ */
  if (s->uniform) {
    size_t step = bc > 1 ? 1 : 0;
    bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, Nq, Nk, hd,
        (float)d->scale, q, s->qoff[0], (size_t)p->qs.seq, step ? s->qoff[1] - s->qoff[0] : 0, k,
        s->koff[0], (size_t)p->ks.seq, step ? s->koff[1] - s->koff[0] : 0, 0.0f, s->scores, 0,
        Nk, Nq * Nk, bc, &queue, NULL);
  } else {
    bs = CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, Nq,
                             Nk, hd, s->alphas, q, s->qoff, (size_t)p->qs.seq, k, s->koff,
                             (size_t)p->ks.seq, s->zeros, s->scores, s->soff, Nk, bc, &queue,
                             NULL);
  }
  if (bs != CLBlastSuccess) return blast_fail(ctx, "CLBlast GEMM S = Q K^T", bs);
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);

  int write_lse = lse != NULL;
  cl_mem lse_arg = lse ? lse : s->scores;
  int nq = d->seq_q, nk = d->seq_kv;
  err = clSetKernelArg(s->softmax, 0, sizeof(cl_mem), &s->scores);
  err |= clSetKernelArg(s->softmax, 1, sizeof(cl_mem), &lse_arg);
  err |= clSetKernelArg(s->softmax, 2, sizeof(int), &write_lse);
  err |= clSetKernelArg(s->softmax, 3, sizeof(int), &nq);
  err |= clSetKernelArg(s->softmax, 4, sizeof(int), &nk);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "softmax_rows");
  size_t lws = (size_t)s->softmax_wg, gws = bc * Nq * lws;
  err = clEnqueueNDRangeKernel(queue, s->softmax, 1, NULL, &gws, &lws, 0, NULL, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "softmax");
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);

  /* O = P V */
  if (s->uniform) {
    size_t step = bc > 1 ? 1 : 0;
    bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, Nq, hd, Nk, 1.0f,
        s->scores, 0, Nk, Nq * Nk, v, s->voff[0], (size_t)p->vs.seq,
        step ? s->voff[1] - s->voff[0] : 0, 0.0f, o, s->ooff[0], (size_t)p->os.seq,
        step ? s->ooff[1] - s->ooff[0] : 0, bc, &queue, event);
  } else {
    bs = CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, Nq,
                             hd, Nk, s->ones, s->scores, s->soff, Nk, v, s->voff,
                             (size_t)p->vs.seq, s->zeros, o, s->ooff, (size_t)p->os.seq, bc,
                             &queue, event);
  }
  if (bs != CLBlastSuccess) return blast_fail(ctx, "CLBlast GEMM O = P V", bs);
  return CLATTN_SUCCESS;
}

static void naive_release(clattn_plan p) {
  naive_state *s = p->state;
  if (!s) return;
  if (s->softmax) clReleaseKernel(s->softmax);
  if (s->scores) clReleaseMemObject(s->scores);
  free(s->qoff);
  free(s->koff);
  free(s->voff);
  free(s->ooff);
  free(s->soff);
  free(s->alphas);
  free(s->ones);
  free(s->zeros);
  free(s);
  p->state = NULL;
}

const clattn__family clattn__family_naive = {"naive", naive_create, naive_execute,
                                             naive_release};
