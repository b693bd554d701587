/* naive.c — the baseline family: CLBlast strided-batched GEMM, masked row softmax, GEMM. */
#include "internal.h"
#include "sparse.h"

#include <clblast_c.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A run of (b, h) pairs whose element offsets into q, k, v, o and the
 * scores are arithmetic progressions (non-negative steps): one CLBlast
 * strided-batched GEMM per run and product. CLBlast's batched GEMM with
 * offset tables is not used: it uploads the tables with blocking writes,
 * which wait for everything before them in the queue, so execute would block
 * and, behind a wait list holding a user event, deadlock. */
typedef struct gemm_run {
  size_t count;
  size_t off[5], step[5]; /* q, k, v, o, scores */
} gemm_run;

typedef struct naive_state {
  cl_kernel softmax;
  int softmax_wg;
  cl_mem scores; /* B·H·Nq·Nk floats */
  size_t batch_count;
  gemm_run *runs;
  size_t nruns;
  bool out_of_order;
} naive_state;

/* Device workspace of a naive plan, computed from the resolved descriptor:
 * the single source of truth of the family's memory. naive_create allocates
 * exactly this; clattn_plan_estimate reports it (clattn_plan_workspace_size
 * adds a sparse mask's bitmap). */
typedef struct naive_workspace {
  size_t scores;  /* the f32 score matrix S = P, B·H·Nq·Nk floats */
  size_t convert; /* f32 copies of half-precision tensors for the f32 GEMMs: 0 while the family
                     serves f32 storage only (plan.c refuses other dtypes before this point) */
  size_t total;
} naive_workspace;

static clattn_status naive_workspace_of(clattn_plan p, naive_workspace *ws) {
  const clattn_attention_desc *d = &p->desc;
  const size_t bc = (size_t)d->batch * (size_t)d->heads;
  const size_t per = (size_t)d->seq_q * (size_t)d->seq_kv;
  memset(ws, 0, sizeof *ws);
  if (per > SIZE_MAX / sizeof(float) / bc)
    return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "naive attention needs a score workspace larger than the address space");
  ws->scores = bc * per * sizeof(float);
  ws->convert = 0;
  ws->total = ws->scores + ws->convert;
  return CLATTN_SUCCESS;
}

/* CLBlast passes buffer offsets to its kernels as int: every element the
 * GEMMs address (scores and the caller's tensors) must lie below 2^31.
 * (Slicing the scores into sub-buffers was tried: on NVIDIA's OpenCL it gave
 * wrong results at 2^32 elements and hung at 2^31, so the limit is explicit.)
 * A property of the problem, not of the device's memory. */
static clattn_status limit_indices(clattn_plan p) {
  const clattn_attention_desc *d = &p->desc;
  const size_t per = (size_t)d->seq_q * (size_t)d->seq_kv, lim = (size_t)INT_MAX;
  const size_t total = per * (size_t)d->batch * (size_t)d->heads;
  if (total > lim)
    return clattn__fail(p->ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family's score workspace would hold %zu elements "
                        "(B*H*Nq*Nk = %d*%d*%d*%d) but CLBlast addresses at most 2^31-1 with its "
                        "32-bit indices; use the flash family",
                        total, d->batch, d->heads, d->seq_q, d->seq_kv);
  for (int t = 0; t < 4; t++) {
    const size_t ext = p->elems[t];
    if (ext > lim)
      return clattn__fail(p->ctx, CLATTN_ERROR_UNSUPPORTED,
                          "the naive family (CLBlast, 32-bit indices) cannot address tensor %c "
                          "of %zu elements (> 2^31); use the flash family",
                          "qkvo"[t], ext);
  }
  return CLATTN_SUCCESS;
}

/* Element offsets of the five operands of flattened pair i = b·H + h. */
static void pair_offsets(const clattn_plan p, size_t i, size_t off[5]) {
  const clattn_attention_desc *d = &p->desc;
  const int64_t G = d->heads / d->kv_heads;
  const int64_t b = (int64_t)(i / (size_t)d->heads), h = (int64_t)(i % (size_t)d->heads);
  off[0] = (size_t)(b * p->qs.batch + h * p->qs.head);
  off[1] = (size_t)(b * p->ks.batch + (h / G) * p->ks.head);
  off[2] = (size_t)(b * p->vs.batch + (h / G) * p->vs.head);
  off[3] = (size_t)(b * p->os.batch + h * p->os.head);
  off[4] = i * (size_t)d->seq_q * (size_t)d->seq_kv;
}

/* Splits the pairs, taken in `order`, greedily into maximal runs (which is
 * optimal for a fixed order). Returns the number of runs written to out. */
static size_t make_runs(const clattn_plan p, const size_t *order, size_t n, gemm_run *out) {
  size_t nr = 0;
  for (size_t i = 0; i < n;) {
    gemm_run *r = &out[nr++];
    pair_offsets(p, order[i], r->off);
    memset(r->step, 0, sizeof r->step);
    r->count = 1;
    size_t prev[5], cur[5];
    memcpy(prev, r->off, sizeof prev);
    for (size_t j = i + 1; j < n; j++) {
      pair_offsets(p, order[j], cur);
      bool ok = true;
      for (int t = 0; t < 5 && ok; t++) {
        if (cur[t] < prev[t])
          ok = false;
        else if (r->count > 1 && cur[t] - prev[t] != r->step[t])
          ok = false;
      }
      if (!ok) break;
      if (r->count == 1)
        for (int t = 0; t < 5; t++)
          r->step[t] = cur[t] - prev[t];
      r->count++;
      memcpy(prev, cur, sizeof prev);
    }
    if (r->count == 1) {
      /* The strides of a one-matrix batch are never used, but CLBlast's
       * indirect GEMM rejects an output stride of 0 (CLBlastInvalidDimension):
       * give the outputs (o, scores) their matrix extents. */
      r->step[3] = (size_t)p->desc.seq_q * (size_t)p->os.seq;
      r->step[4] = (size_t)p->desc.seq_q * (size_t)p->desc.seq_kv;
    }
    i += r->count;
  }
  return nr;
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
  err = clEnqueueFillBuffer(p->ctx->queue, s->scores, &zero, sizeof zero, 0, p->workspace_bytes, 0,
                            NULL, NULL);
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

  const size_t bc = (size_t)d->batch * (size_t)d->heads;
  naive_workspace ws;
  clattn_status st = naive_workspace_of(p, &ws);
  if (st != CLATTN_SUCCESS) return st;
  p->workspace_bytes = ws.total;
  if (p->estimate) { /* sizing only: the family's own limits, not the device's memory */
    if ((st = limit_indices(p)) != CLATTN_SUCCESS) return st;
  } else {
    cl_ulong limit =
        ctx->info.max_alloc < ctx->info.global_mem ? ctx->info.max_alloc : ctx->info.global_mem;
    if ((cl_ulong)p->workspace_bytes > limit)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "naive attention needs a %zu-byte score workspace (B*H*Nq*Nk*4 = "
                          "%d*%d*%d*%d*4) but the device allows at most %llu bytes in one buffer "
                          "(%llu in all); use the flash family",
                          p->workspace_bytes, d->batch, d->heads, d->seq_q, d->seq_kv,
                          (unsigned long long)ctx->info.max_alloc,
                          (unsigned long long)ctx->info.global_mem);
  }

  s->batch_count = bc;
  /* Two orders of the pairs: (b, h), and (h % G, b, h / G), which makes
   * runs across the kv heads under GQA. The one with fewer runs wins. */
  size_t *order = malloc(bc * sizeof *order);
  gemm_run *alt = malloc(bc * sizeof *alt);
  s->runs = malloc(bc * sizeof *s->runs);
  if (!order || !alt || !s->runs) {
    free(order);
    free(alt);
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate GEMM run tables");
  }
  for (size_t i = 0; i < bc; i++)
    order[i] = i;
  s->nruns = make_runs(p, order, bc, s->runs);
  if (s->nruns > 1) {
    const size_t G = (size_t)(d->heads / d->kv_heads), Hk = (size_t)d->kv_heads;
    size_t n = 0;
    for (size_t g = 0; g < G; g++)
      for (size_t b = 0; b < (size_t)d->batch; b++)
        for (size_t hk = 0; hk < Hk; hk++)
          order[n++] = b * (size_t)d->heads + hk * G + g;
    size_t nalt = make_runs(p, order, bc, alt);
    if (nalt < s->nruns) {
      memcpy(s->runs, alt, nalt * sizeof *alt);
      s->nruns = nalt;
    }
  }
  free(order);
  free(alt);
  if ((st = limit_indices(p)) != CLATTN_SUCCESS) return st;

  cl_command_queue_properties qp = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  s->out_of_order = (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;

  s->softmax_wg = 256;
  while ((size_t)s->softmax_wg > ctx->info.max_wg)
    s->softmax_wg /= 2;
  if (ctx->info.is_cpu) s->softmax_wg = s->softmax_wg > 16 ? 16 : s->softmax_wg;
  if (p->estimate) return p->sparse ? clattn__sparse_upload_bits(p) : CLATTN_SUCCESS;
  char opts[256];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DWG=%d -DCAUSAL=%d", s->softmax_wg,
           d->mask == CLATTN_MASK_CAUSAL ? 1 : 0);
  if (p->sparse) {
    /* The sparse mask is evaluated inline by the softmax (no N x N mask). */
    clattn__append(opts, sizeof opts, " -DSPARSE=%d", p->sparse->cls);
    st = clattn__sparse_upload_bits(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  cl_program prog = NULL;
  st = clattn__get_program(ctx, "softmax.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel(ctx, prog, "softmax_rows", &s->softmax);
  if (st != CLATTN_SUCCESS) return st;

  if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE)) {
    st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  snprintf(p->describe, sizeof p->describe,
           "naive f32: CLBlast strided-batched GEMM (%zu run%s) -> softmax (wg %d) -> GEMM, "
           "workspace %zu bytes [built-in]",
           s->nruns, s->nruns == 1 ? "" : "s", s->softmax_wg, p->workspace_bytes);
  if (p->sparse) {
    char sd[160];
    clattn__sparse_describe(d, sd, sizeof sd);
    clattn__append(p->describe, sizeof p->describe,
                   "; sparse %s evaluated in the softmax (%zu "
                   "bytes of bitmap)",
                   sd, p->sparse->device_bytes);
  }
  return CLATTN_SUCCESS;
}

static clattn_status blast_fail(clattn_context ctx, const char *call, CLBlastStatusCode c) {
  if (c == CLBlastOpenCLOutOfResources || c == CLBlastTempBufferAllocFailure)
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
  /* S = scale · Q Kᵀ, one strided-batched GEMM per run */
  for (size_t r = 0; r < s->nruns; r++) {
    const gemm_run *g = &s->runs[r];
    bs = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                    Nq, Nk, hd, (float)d->scale, q, g->off[0], (size_t)p->qs.seq,
                                    g->step[0], k, g->off[1], (size_t)p->ks.seq, g->step[1], 0.0f,
                                    s->scores, g->off[4], Nk, g->step[4], g->count, &queue, NULL);
    if (bs != CLBlastSuccess) return blast_fail(ctx, "CLBlast GEMM S = Q K^T", bs);
  }
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);

  int write_lse = lse != NULL;
  cl_mem lse_arg = lse ? lse : s->scores;
  int nq = d->seq_q, nk = d->seq_kv;
  err = clSetKernelArg(s->softmax, 0, sizeof(cl_mem), &s->scores);
  err |= clSetKernelArg(s->softmax, 1, sizeof(cl_mem), &lse_arg);
  err |= clSetKernelArg(s->softmax, 2, sizeof(int), &write_lse);
  err |= clSetKernelArg(s->softmax, 3, sizeof(int), &nq);
  err |= clSetKernelArg(s->softmax, 4, sizeof(int), &nk);
  if (p->sparse) err |= clattn__sparse_set_mask_args(p->sparse, s->softmax, 5);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "softmax_rows");
  size_t lws = (size_t)s->softmax_wg, gws = bc * Nq * lws;
  err = clEnqueueNDRangeKernel(queue, s->softmax, 1, NULL, &gws, &lws, 0, NULL, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "softmax");
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);

  /* O = P V; on an in-order queue the last GEMM's event covers everything,
   * on an out-of-order one a final barrier does. */
  for (size_t r = 0; r < s->nruns; r++) {
    const gemm_run *g = &s->runs[r];
    const bool last = r + 1 == s->nruns && !s->out_of_order;
    bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, Nq, hd, Nk, 1.0f, s->scores,
        g->off[4], Nk, g->step[4], v, g->off[2], (size_t)p->vs.seq, g->step[2], 0.0f, o, g->off[3],
        (size_t)p->os.seq, g->step[3], g->count, &queue, last ? event : NULL);
    if (bs != CLBlastSuccess) return blast_fail(ctx, "CLBlast GEMM O = P V", bs);
  }
  if (s->out_of_order && event) {
    err = clEnqueueBarrierWithWaitList(queue, 0, NULL, event);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueBarrierWithWaitList", err, "");
  }
  return CLATTN_SUCCESS;
}

static void naive_release(clattn_plan p) {
  naive_state *s = p->state;
  if (!s) return;
  if (s->softmax) clReleaseKernel(s->softmax);
  if (s->scores) clReleaseMemObject(s->scores);
  free(s->runs);
  free(s);
  p->state = NULL;
}

const clattn__family clattn__family_naive = {"naive", naive_create, naive_execute, naive_release};
