/* naive.c — the baseline family: CLBlast strided-batched GEMM, masked row softmax, GEMM. */
#include "naive.h"
#include "checked.h"

#include "families.h"
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
  clattn__naive_ws ws; /* bytes of scores and of the copies below */
  /* Strides of what the GEMMs address (q, k, v, o): the caller's tensors
   * (f32), or the packed f32 copies (16-bit storage). */
  clattn_strides gs[4];
  size_t gemm_elems[4]; /* element extents of those four */
  /* 16-bit storage: conversion kernels and the packed f32 copies (cq holds
   * Q, then receives the f32 output that from_f32 rounds into o). */
  bool half;
  cl_kernel to_f32, from_f32;
  int conv_wg;
  cl_mem cq, ck, cv;
} naive_state;

/* CLBlast passes buffer offsets to its kernels as int: every element the
 * GEMMs address (scores and the caller's tensors) must lie below 2^31.
 * (Slicing the scores into sub-buffers was tried: on NVIDIA's OpenCL it gave
 * wrong results at 2^32 elements and hung at 2^31, so the limit is explicit.) */
static clattn_status limit_runs(clattn_plan p, naive_state *s) {
  const clattn_attention_desc *d = &p->desc;
  const size_t per = (size_t)d->seq_q * (size_t)d->seq_kv, lim = (size_t)INT_MAX;
  size_t total;
  if (!clattn__mul_size(per, s->batch_count, &total)) total = SIZE_MAX;
  if (total > lim)
    return clattn__fail(p->ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family's score workspace would hold %zu elements "
                        "(B*H*Nq*Nk = %d*%d*%d*%d) but CLBlast addresses at most 2^31-1 with its "
                        "32-bit indices; use the flash family",
                        total, d->batch, d->heads, d->seq_q, d->seq_kv);
  for (int t = 0; t < 4; t++) {
    const size_t ext = s->gemm_elems[t];
    if (ext > lim)
      return clattn__fail(p->ctx, CLATTN_ERROR_UNSUPPORTED,
                          "the naive family (CLBlast, 32-bit indices) cannot address %s %c "
                          "of %zu elements (> 2^31); use the flash family",
                          s->half ? "the f32 copy of tensor" : "tensor", "qkvo"[t], ext);
  }
  return CLATTN_SUCCESS;
}

/* Element offsets of the five operands of flattened pair i = b·H + h. */
static void pair_offsets(const clattn_attention_desc *d, const clattn_strides gs[4], size_t i,
                         size_t off[5]) {
  const int64_t G = d->heads / d->kv_heads;
  const int64_t b = (int64_t)(i / (size_t)d->heads), h = (int64_t)(i % (size_t)d->heads);
  off[0] = (size_t)(b * gs[0].batch + h * gs[0].head);
  off[1] = (size_t)(b * gs[1].batch + (h / G) * gs[1].head);
  off[2] = (size_t)(b * gs[2].batch + (h / G) * gs[2].head);
  off[3] = (size_t)(b * gs[3].batch + h * gs[3].head);
  off[4] = i * (size_t)d->seq_q * (size_t)d->seq_kv;
}

/* Splits the pairs, taken in `order`, greedily into maximal runs (which is
 * optimal for a fixed order). Returns the number of runs written to out. */
static size_t make_runs(const clattn_plan p, const size_t *order, size_t n, gemm_run *out) {
  const naive_state *s = p->state;
  size_t nr = 0;
  for (size_t i = 0; i < n;) {
    gemm_run *r = &out[nr++];
    pair_offsets(&p->desc, s->gs, order[i], r->off);
    memset(r->step, 0, sizeof r->step);
    r->count = 1;
    size_t prev[5], cur[5];
    memcpy(prev, r->off, sizeof prev);
    for (size_t j = i + 1; j < n; j++) {
      pair_offsets(&p->desc, s->gs, order[j], cur);
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
      r->step[3] = (size_t)p->desc.seq_q * (size_t)s->gs[3].seq;
      r->step[4] = (size_t)p->desc.seq_q * (size_t)p->desc.seq_kv;
    }
    i += r->count;
  }
  return nr;
}

/* ---- workspace ---------------------------------------------------------- */

/* *acc *= x unless x <= 0 or the product overflows size_t. */
static bool mul_size(size_t *acc, int x) { return x > 0 && clattn__mul_size(*acc, (size_t)x, acc); }

static bool add_size(size_t *acc, size_t x) { return clattn__add_size(*acc, x, acc); }

bool clattn__naive_workspace(const clattn_attention_desc *d, clattn__naive_ws *ws) {
  if (!ws) return false;
  memset(ws, 0, sizeof *ws);
  if (!d) return false;
  const int hk = d->kv_heads > 0 ? d->kv_heads : d->heads;
  clattn__naive_ws w = {.scores = sizeof(float)};
  if (!mul_size(&w.scores, d->batch) || !mul_size(&w.scores, d->heads) ||
      !mul_size(&w.scores, d->seq_q) || !mul_size(&w.scores, d->seq_kv))
    return false;
  if (d->dtype != CLATTN_DTYPE_F32) {
    w.q = w.k = sizeof(float);
    if (!mul_size(&w.q, d->batch) || !mul_size(&w.q, d->heads) || !mul_size(&w.q, d->seq_q) ||
        !mul_size(&w.q, d->head_dim) || !mul_size(&w.k, d->batch) || !mul_size(&w.k, hk) ||
        !mul_size(&w.k, d->seq_kv) || !mul_size(&w.k, d->head_dim))
      return false;
    w.v = w.k;
  }
  w.total = w.scores;
  if (!add_size(&w.total, w.q) || !add_size(&w.total, w.k) || !add_size(&w.total, w.v))
    return false;
  *ws = w;
  return true;
}

/* What the workspace is, for messages: "N-byte score workspace (B*H*Nq*Nk*4
 * = ...)", with the f32 copies itemised under 16-bit storage. */
static void ws_text(const clattn_plan p, char *buf, size_t cap) {
  const naive_state *s = p->state;
  const clattn_attention_desc *d = &p->desc;
  if (!s->half) {
    snprintf(buf, cap, "%zu-byte score workspace (B*H*Nq*Nk*4 = %d*%d*%d*%d*4)", s->ws.total,
             d->batch, d->heads, d->seq_q, d->seq_kv);
    return;
  }
  snprintf(buf, cap,
           "%zu-byte workspace (score matrix B*H*Nq*Nk*4 = %d*%d*%d*%d*4 = %zu bytes, plus f32 "
           "copies of the %s inputs for CLBlast's SGEMM: q/o B*H*Nq*d*4 = %zu bytes, k and v "
           "B*Hk*Nk*d*4 = %zu bytes each)",
           s->ws.total, d->batch, d->heads, d->seq_q, d->seq_kv, s->ws.scores,
           clattn_dtype_name(d->dtype), s->ws.q, s->ws.k);
}

static void release_workspace(naive_state *s) {
  cl_mem *m[4] = {&s->scores, &s->cq, &s->ck, &s->cv};
  for (int i = 0; i < 4; i++) {
    if (*m[i]) clReleaseMemObject(*m[i]);
    *m[i] = NULL;
  }
}

static clattn_status alloc_workspace(clattn_plan p) {
  naive_state *s = p->state;
  clattn_context ctx = p->ctx;
  char what[400];
  ws_text(p, what, sizeof what);
  struct {
    cl_mem *mem;
    size_t bytes;
    const char *name;
  } bufs[4] = {{&s->scores, s->ws.scores, "score matrix"},
               {&s->cq, s->ws.q, "f32 copy of q and o"},
               {&s->ck, s->ws.k, "f32 copy of k"},
               {&s->cv, s->ws.v, "f32 copy of v"}};
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < 4; i++) {
    if (!bufs[i].bytes) continue;
    *bufs[i].mem = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bufs[i].bytes, NULL, &err);
    if (!*bufs[i].mem) {
      release_workspace(s);
      char ctxmsg[128];
      snprintf(ctxmsg, sizeof ctxmsg, "naive %s (%zu bytes)", bufs[i].name, bufs[i].bytes);
      clattn_status st = clattn__cl_fail(ctx, "clCreateBuffer", err, ctxmsg);
      if (st == CLATTN_ERROR_OUT_OF_MEMORY || err == CL_INVALID_BUFFER_SIZE)
        return clattn__fail_needed(ctx, p->workspace_bytes,
                                   "naive attention needs a %s; clCreateBuffer of its %s (%zu "
                                   "bytes) failed with %s",
                                   what, bufs[i].name, bufs[i].bytes, clattn__cl_error_name(err));
      return st;
    }
  }
  /* Touch it so that a lazy allocator fails here, not in the middle of a run. */
  float zero = 0.0f;
  for (int i = 0; i < 4 && err == CL_SUCCESS; i++)
    if (bufs[i].bytes)
      err = clEnqueueFillBuffer(ctx->queue, *bufs[i].mem, &zero, sizeof zero, 0, bufs[i].bytes, 0,
                                NULL, NULL);
  if (err == CL_SUCCESS) err = clFinish(ctx->queue);
  if (err != CL_SUCCESS) {
    release_workspace(s);
    return clattn__fail_needed(ctx, p->workspace_bytes,
                               "naive attention needs a %s; the device could not provide it (%s)",
                               what, clattn__cl_error_name(err));
  }
  return CLATTN_SUCCESS;
}

/* Strides of the GEMM operands: the caller's tensors (f32 storage) or the
 * packed [b][h][s][d] f32 copies (16-bit storage; o shares q's copy). */
static void set_gemm_operands(clattn_plan p, naive_state *s) {
  const clattn_attention_desc *d = &p->desc;
  if (!s->half) {
    s->gs[0] = p->qs;
    s->gs[1] = p->ks;
    s->gs[2] = p->vs;
    s->gs[3] = p->os;
    memcpy(s->gemm_elems, p->elems, sizeof s->gemm_elems);
    return;
  }
  const int64_t D = d->head_dim, Nq = d->seq_q, Nk = d->seq_kv;
  s->gs[0] = (clattn_strides){.batch = d->heads * Nq * D, .head = Nq * D, .seq = D, .dim = 1};
  s->gs[1] = (clattn_strides){.batch = d->kv_heads * Nk * D, .head = Nk * D, .seq = D, .dim = 1};
  s->gs[2] = s->gs[1];
  s->gs[3] = s->gs[0];
  s->gemm_elems[0] = s->gemm_elems[3] = s->ws.q / sizeof(float);
  s->gemm_elems[1] = s->gemm_elems[2] = s->ws.k / sizeof(float);
}

/* The batched GEMM runs of the (b, h) pairs (execute only). Two orders of
 * the pairs: (b, h), and (h % G, b, h / G), which makes runs across the kv
 * heads under GQA. The one with fewer runs wins. */
static clattn_status make_run_tables(clattn_plan p, naive_state *s) {
  const clattn_attention_desc *d = &p->desc;
  const size_t bc = s->batch_count;
  size_t per, bytes;
  if (!clattn__add_size(sizeof(size_t), 2 * sizeof(gemm_run), &per) ||
      !clattn__mul_size(bc, per, &bytes))
    bytes = SIZE_MAX;
  size_t *order = bytes == SIZE_MAX ? NULL : malloc(bc * sizeof *order);
  gemm_run *alt = bytes == SIZE_MAX ? NULL : malloc(bc * sizeof *alt);
  s->runs = bytes == SIZE_MAX ? NULL : malloc(bc * sizeof *s->runs);
  if (!order || !alt || !s->runs) {
    free(order);
    free(alt);
    return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "cannot allocate the GEMM run tables: %zu bytes of host memory for "
                        "B*H = %d*%d (b, h) pairs",
                        bytes, d->batch, d->heads);
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
  return CLATTN_SUCCESS;
}

const char *const clattn__naive_sources[] = {"softmax.cl", NULL};

int clattn__naive_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                             const char **why) {
  CLATTN__NO_MODS(d, why, "naive");
  (void)info;
  (void)d;
  (void)why;
  return 10;
}

const char *clattn__naive_check(const int *params, const clattn_attention_desc *d,
                                const clattn__device_info *info) {
  (void)params;
  (void)d;
  (void)info;
  return NULL; /* no parameters: CLBlast tunes its own GEMMs */
}

bool clattn__naive_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                            int *params) {
  (void)info;
  (void)d;
  (void)params;
  return true;
}

size_t clattn__naive_local(const int *params, const clattn_attention_desc *d) {
  (void)params;
  (void)d;
  return 0; /* the softmax kernel's local memory is an argument (set per launch) */
}

clattn_status clattn__naive_create(clattn_plan p, const int *params, const char *origin) {
  (void)params;
  (void)origin;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const bool half = d->dtype != CLATTN_DTYPE_F32;
  /* f32: CLBlast reads the caller's tensors as row-major matrices. 16-bit
   * storage goes through packed copies, so any strides work. */
  if (!half && (p->qs.dim != 1 || p->ks.dim != 1 || p->vs.dim != 1 || p->os.dim != 1))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family needs a unit dim stride (head_dim contiguous) in q, k, "
                        "v and o with f32 storage; use the flash family for other strides");
  if (!half && (p->qs.seq < d->head_dim || p->ks.seq < d->head_dim || p->vs.seq < d->head_dim ||
                p->os.seq < d->head_dim))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the naive family needs seq strides >= head_dim (GEMM leading dims) with "
                        "f32 storage");
  naive_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate naive state");
  p->state = s;
  s->half = half;

  if (!clattn__naive_workspace(d, &s->ws))
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "naive attention needs a workspace larger than the address space (score "
                        "matrix B*H*Nq*Nk*4 = %d*%d*%d*%d*4 bytes%s)",
                        d->batch, d->heads, d->seq_q, d->seq_kv,
                        half ? ", plus f32 copies of q, k and v" : "");
  p->workspace_bytes = s->ws.total;
  size_t largest = s->ws.scores;
  if (s->ws.q > largest) largest = s->ws.q;
  if (s->ws.k > largest) largest = s->ws.k;
  if (!p->estimate &&
      ((cl_ulong)largest > ctx->info.max_alloc || (cl_ulong)s->ws.total > ctx->info.global_mem)) {
    char what[400];
    ws_text(p, what, sizeof what);
    return clattn__fail_needed(
        ctx, s->ws.total,
        "naive attention needs a %s but the device allows at most %llu bytes in "
        "one buffer (%llu in all); use the flash family",
        what, (unsigned long long)ctx->info.max_alloc, (unsigned long long)ctx->info.global_mem);
  }

  clattn_status st;
  const size_t bc = (size_t)d->batch * (size_t)d->heads; /* < 2^62: both are ints */
  s->batch_count = bc;
  set_gemm_operands(p, s);
  /* Refusals first: they need no run tables, and an estimate builds none. */
  if ((st = limit_runs(p, s)) != CLATTN_SUCCESS) return st;
  if (!p->estimate && (st = make_run_tables(p, s)) != CLATTN_SUCCESS) return st;

  cl_command_queue_properties qp = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  s->out_of_order = (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;

  s->softmax_wg = 256;
  while ((size_t)s->softmax_wg > ctx->info.max_wg)
    s->softmax_wg /= 2;
  if (ctx->info.is_cpu) s->softmax_wg = s->softmax_wg > 16 ? 16 : s->softmax_wg;
  s->conv_wg = 256;
  while ((size_t)s->conv_wg > ctx->info.max_wg)
    s->conv_wg /= 2;
  if (p->estimate) return p->sparse ? clattn__sparse_upload_bits(p) : CLATTN_SUCCESS;
  char opts[256];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DWG=%d -DCAUSAL=%d", s->softmax_wg,
           clattn__causal_define(d->mask));
  /* f32 keeps the options (and cached binaries) it had before 16-bit storage. */
  if (half) clattn__append(opts, sizeof opts, " -DCLATTN_DTYPE=%d", (int)d->dtype);
  if (p->sparse) {
    /* The sparse mask is evaluated inline by the softmax (no N x N mask). */
    clattn__sparse_options(p->sparse, opts, sizeof opts);
    st = clattn__sparse_upload_bits(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  cl_program prog = NULL;
  st = clattn__get_program(ctx, "softmax.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  st = clattn__create_kernel_sized(ctx, prog, "softmax_rows", (size_t)s->softmax_wg * sizeof(float),
                                   &s->softmax);
  if (st != CLATTN_SUCCESS) return st;
  if (half) {
    st = clattn__create_kernel(ctx, prog, "to_f32", &s->to_f32);
    if (st != CLATTN_SUCCESS) return st;
    st = clattn__create_kernel(ctx, prog, "from_f32", &s->from_f32);
    if (st != CLATTN_SUCCESS) return st;
  }

  if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE)) {
    st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  const char *dt = clattn_dtype_name(d->dtype);
  if (half)
    snprintf(p->describe, sizeof p->describe,
             "naive %s: q, k, v -> packed f32 copies -> CLBlast strided-batched SGEMM (%zu run%s) "
             "-> softmax (wg %d) -> SGEMM -> %s o, workspace %zu bytes (%zu of f32 copies) "
             "[built-in]",
             dt, s->nruns, s->nruns == 1 ? "" : "s", s->softmax_wg, dt, p->workspace_bytes,
             s->ws.q + s->ws.k + s->ws.v);
  else
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

/* Enqueues a 16-bit <-> f32 conversion (cl/softmax.cl to_f32 / from_f32)
 * between a tensor of nb x nh x ns rows of head_dim elements with strides
 * st and its packed f32 copy. */
static cl_int enqueue_convert(const naive_state *s, cl_command_queue queue, cl_kernel k, cl_mem src,
                              cl_mem dst, const clattn_strides *st, int nb, int nh, int ns, int hd,
                              cl_event *event) {
  /* Below 2^31: limit_runs checked every copy's extent. */
  const cl_int n = (cl_int)((size_t)nb * (size_t)nh * (size_t)ns * (size_t)hd);
  const cl_long sb = st->batch, sh = st->head, ss = st->seq, sd = st->dim;
  cl_int err = clSetKernelArg(k, 0, sizeof(cl_mem), &src);
  err |= clSetKernelArg(k, 1, sizeof(cl_mem), &dst);
  err |= clSetKernelArg(k, 2, sizeof n, &n);
  err |= clSetKernelArg(k, 3, sizeof(cl_int), &hd);
  err |= clSetKernelArg(k, 4, sizeof(cl_int), &ns);
  err |= clSetKernelArg(k, 5, sizeof(cl_int), &nh);
  err |= clSetKernelArg(k, 6, sizeof sb, &sb);
  err |= clSetKernelArg(k, 7, sizeof sh, &sh);
  err |= clSetKernelArg(k, 8, sizeof ss, &ss);
  err |= clSetKernelArg(k, 9, sizeof sd, &sd);
  if (err != CL_SUCCESS) return err;
  const size_t lws = (size_t)s->conv_wg, gws = ((size_t)n + lws - 1) / lws * lws;
  return clEnqueueNDRangeKernel(queue, k, 1, NULL, &gws, &lws, 0, NULL, event);
}

clattn_status clattn__naive_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                    const cl_event *wait, cl_event *event) {
  const cl_mem q = b->q, k = b->k, v = b->v, o = b->o, lse = b->lse;
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
  /* The GEMM operands: the caller's tensors, or (16-bit storage) the f32
   * copies, the output landing in q's copy (Q is no longer needed then). */
  cl_mem gq = q, gk = k, gv = v, go = o;
  if (s->half) {
    err = enqueue_convert(s, queue, s->to_f32, q, s->cq, &p->qs, d->batch, d->heads, d->seq_q,
                          d->head_dim, NULL);
    if (err == CL_SUCCESS)
      err = enqueue_convert(s, queue, s->to_f32, k, s->ck, &p->ks, d->batch, d->kv_heads, d->seq_kv,
                            d->head_dim, NULL);
    if (err == CL_SUCCESS)
      err = enqueue_convert(s, queue, s->to_f32, v, s->cv, &p->vs, d->batch, d->kv_heads, d->seq_kv,
                            d->head_dim, NULL);
    if (err != CL_SUCCESS)
      return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err,
                             "to_f32 (16-bit q, k, v into their f32 copies)");
    if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
    gq = s->cq;
    gk = s->ck;
    gv = s->cv;
    go = s->cq;
  }
  CLBlastStatusCode bs;
  /* S = scale · Q Kᵀ, one strided-batched GEMM per run */
  for (size_t r = 0; r < s->nruns; r++) {
    const gemm_run *g = &s->runs[r];
    bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, Nq, Nk, hd, (float)d->scale,
        gq, g->off[0], (size_t)s->gs[0].seq, g->step[0], gk, g->off[1], (size_t)s->gs[1].seq,
        g->step[1], 0.0f, s->scores, g->off[4], Nk, g->step[4], g->count, &queue, NULL);
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

  /* O = P V; on an in-order queue the last command's event covers
   * everything, on an out-of-order one a final barrier does. */
  for (size_t r = 0; r < s->nruns; r++) {
    const gemm_run *g = &s->runs[r];
    const bool last = r + 1 == s->nruns && !s->out_of_order && !s->half;
    bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, Nq, hd, Nk, 1.0f, s->scores,
        g->off[4], Nk, g->step[4], gv, g->off[2], (size_t)s->gs[2].seq, g->step[2], 0.0f, go,
        g->off[3], (size_t)s->gs[3].seq, g->step[3], g->count, &queue, last ? event : NULL);
    if (bs != CLBlastSuccess) return blast_fail(ctx, "CLBlast GEMM O = P V", bs);
  }
  if (s->half) {
    /* Round the f32 output into o (nearest even), in o's layout. */
    if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
    err = enqueue_convert(s, queue, s->from_f32, s->cq, o, &p->os, d->batch, d->heads, d->seq_q,
                          d->head_dim, s->out_of_order ? NULL : event);
    if (err != CL_SUCCESS)
      return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err,
                             "from_f32 (the f32 output into 16-bit o)");
  }
  if (s->out_of_order && event) {
    err = clEnqueueBarrierWithWaitList(queue, 0, NULL, event);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueBarrierWithWaitList", err, "");
  }
  return CLATTN_SUCCESS;
}

void clattn__naive_release(clattn_plan p) {
  naive_state *s = p->state;
  if (!s) return;
  if (s->softmax) clReleaseKernel(s->softmax);
  if (s->to_f32) clReleaseKernel(s->to_f32);
  if (s->from_f32) clReleaseKernel(s->from_f32);
  release_workspace(s);
  free(s->runs);
  free(s);
  p->state = NULL;
}
