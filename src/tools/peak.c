/* peak.c — clattn_measure_peak(): the device's measured f32 FMA rate and copy bandwidth. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEAK_FMA_PER_ITER 32 /* 8 chains x 4 rounds of VW lanes in cl/peak.cl */
#define PEAK_MAX_RUNS 1000

/* Lanes per FMA of the kernel: the device's native float vector width. */
static int peak_vw(clattn_context ctx) {
  cl_uint w = 1;
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof w, &w, NULL) !=
      CL_SUCCESS)
    w = 1;
  return w >= 16 ? 16 : w >= 8 ? 8 : w >= 4 ? 4 : w >= 2 ? 2 : 1;
}

void clattn_peak_request_init(clattn_peak_request *req) {
  if (!req) return;
  memset(req, 0, sizeof *req);
  req->copy_bytes = (size_t)256 << 20;
  req->fma_ms = 20.0;
  req->runs = 7;
}

/* Median, minimum and maximum of v[0..n) (sorted in place). */
static void stats(double *v, int n, double *med, double *lo, double *hi) {
  clattn__sort_doubles(v, (size_t)n);
  *lo = v[0];
  *hi = v[n - 1];
  *med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Enqueues `kernel` n times (1-D, gws / lws) and writes each run's
 * START..END in ms to ms[0..n). */
static clattn_status time_kernel(clattn_context ctx, cl_kernel kernel, size_t gws, size_t lws,
                                 int n, double *ms, const char *what) {
  cl_event ev[PEAK_MAX_RUNS + 1];
  int made = 0;
  cl_int err = CL_SUCCESS;
  clattn_status st = CLATTN_SUCCESS;
  for (; made < n; made++) {
    err = clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &gws, &lws, 0, NULL, &ev[made]);
    if (err != CL_SUCCESS) {
      st = clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, what);
      break;
    }
  }
  if (st == CLATTN_SUCCESS && (err = clFinish(ctx->queue)) != CL_SUCCESS)
    st = clattn__cl_fail(ctx, "clFinish", err, what);
  for (int i = 0; i < made && st == CLATTN_SUCCESS; i++) {
    cl_ulong t0 = 0, t1 = 0;
    err = clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    if (err != CL_SUCCESS)
      st = clattn__cl_fail(ctx, "clGetEventProfilingInfo", err, what);
    else
      ms[i] = t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
  }
  if (st != CLATTN_SUCCESS) clFinish(ctx->queue);
  for (int i = 0; i < made; i++)
    clReleaseEvent(ev[i]);
  return st;
}

static clattn_status measure_fma(clattn_context ctx, cl_program prog, int vw,
                                 const clattn_peak_request *r, clattn_peak_result *out) {
  const size_t wg = ctx->info.max_wg >= 256 ? 256 : ctx->info.max_wg;
  const size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1;
  const size_t items = cu * 8 * wg; /* enough work-groups to fill every compute unit */
  cl_kernel k = NULL;
  cl_mem buf = NULL;
  cl_int err;
  double ms[PEAK_MAX_RUNS + 1];
  clattn_status st = clattn__create_kernel(ctx, prog, "peak_fma", &k);
  if (st != CLATTN_SUCCESS) return st;
  buf = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
  if (!buf) {
    st = clattn__cl_fail(ctx, "clCreateBuffer", err, "peak FMA output");
    goto done;
  }
  const float a = 0.999f, b = 0.001f;
  int iters = 16;
  err = clSetKernelArg(k, 0, sizeof(cl_mem), &buf);
  err |= clSetKernelArg(k, 2, sizeof(float), &a);
  err |= clSetKernelArg(k, 3, sizeof(float), &b);
  if (err != CL_SUCCESS) {
    st = clattn__cl_fail(ctx, "clSetKernelArg", err, "peak_fma");
    goto done;
  }
  /* Calibrate the length: double the iterations until a run takes 1/8 of
   * the target, then scale to the target. */
  for (;;) {
    if ((err = clSetKernelArg(k, 1, sizeof(int), &iters)) != CL_SUCCESS) {
      st = clattn__cl_fail(ctx, "clSetKernelArg", err, "peak_fma");
      goto done;
    }
    if ((st = time_kernel(ctx, k, items, wg, 1, ms, "peak_fma")) != CLATTN_SUCCESS) goto done;
    if (ms[0] >= r->fma_ms / 8 || iters >= (1 << 24)) break;
    iters *= 2;
  }
  double scaled = ms[0] > 0 ? iters * r->fma_ms / ms[0] : (double)iters;
  if (scaled > (double)(1 << 26)) scaled = (double)(1 << 26);
  if (scaled > iters) iters = (int)scaled;
  if ((err = clSetKernelArg(k, 1, sizeof(int), &iters)) != CL_SUCCESS) {
    st = clattn__cl_fail(ctx, "clSetKernelArg", err, "peak_fma");
    goto done;
  }
  /* One warm-up run, then the timed runs. */
  if ((st = time_kernel(ctx, k, items, wg, r->runs + 1, ms, "peak_fma")) != CLATTN_SUCCESS)
    goto done;
  stats(ms + 1, r->runs, &out->fma_ms, &out->fma_min_ms, &out->fma_max_ms);
  out->fma_work_items = items;
  out->fma_iterations = iters;
  out->fma_flop = 2.0 * PEAK_FMA_PER_ITER * vw * (double)iters * (double)items;
  out->fma_gflops = out->fma_ms > 0 ? out->fma_flop / (out->fma_ms * 1e-3) / 1e9 : 0.0;
done:
  if (buf) clReleaseMemObject(buf);
  clReleaseKernel(k);
  return st;
}

static clattn_status measure_copy(clattn_context ctx, cl_program prog, int vw,
                                  const clattn_peak_request *r, clattn_peak_result *out) {
  const size_t wg = ctx->info.max_wg >= 256 ? 256 : ctx->info.max_wg;
  const size_t elem = (size_t)(vw < 4 ? 4 : vw) * sizeof(float); /* ctype in cl/peak.cl */
  cl_ulong cap = ctx->info.global_mem / 4;
  if (ctx->info.max_alloc < cap) cap = ctx->info.max_alloc;
  size_t bytes = r->copy_bytes;
  if ((cl_ulong)bytes > cap) bytes = (size_t)cap;
  const size_t unit = wg * elem; /* whole work-groups */
  bytes = bytes / unit * unit;
  if (bytes == 0) bytes = unit;
  const size_t gws = bytes / elem;
  cl_kernel k = NULL;
  cl_mem src = NULL, dst = NULL;
  cl_int err;
  double ms[PEAK_MAX_RUNS + 1];
  clattn_status st = clattn__create_kernel(ctx, prog, "peak_copy", &k);
  if (st != CLATTN_SUCCESS) return st;
  src = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY, bytes, NULL, &err);
  if (src) dst = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, bytes, NULL, &err);
  if (!src || !dst) {
    st = clattn__cl_fail(ctx, "clCreateBuffer", err, "peak copy buffers");
    if (st == CLATTN_ERROR_OUT_OF_MEMORY)
      st = clattn__fail(ctx, st, "the copy benchmark needs 2 x %zu bytes (clCreateBuffer: %s)",
                        bytes, clattn__cl_error_name(err));
    goto done;
  }
  /* Touch both buffers so that first-use allocation is not timed. */
  const float one = 1.0f;
  err = clEnqueueFillBuffer(ctx->queue, src, &one, sizeof one, 0, bytes, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    err = clEnqueueFillBuffer(ctx->queue, dst, &one, sizeof one, 0, bytes, 0, NULL, NULL);
  if (err == CL_SUCCESS) err = clFinish(ctx->queue);
  if (err != CL_SUCCESS) {
    st = clattn__cl_fail(ctx, "clEnqueueFillBuffer", err, "peak copy buffers");
    goto done;
  }
  err = clSetKernelArg(k, 0, sizeof(cl_mem), &src);
  err |= clSetKernelArg(k, 1, sizeof(cl_mem), &dst);
  if (err != CL_SUCCESS) {
    st = clattn__cl_fail(ctx, "clSetKernelArg", err, "peak_copy");
    goto done;
  }
  if ((st = time_kernel(ctx, k, gws, wg, r->runs + 1, ms, "peak_copy")) != CLATTN_SUCCESS)
    goto done;
  stats(ms + 1, r->runs, &out->copy_ms, &out->copy_min_ms, &out->copy_max_ms);
  out->copy_bytes = bytes;
  out->copy_gbps = out->copy_ms > 0 ? 2.0 * (double)bytes / (out->copy_ms * 1e-3) / 1e9 : 0.0;
done:
  if (src) clReleaseMemObject(src);
  if (dst) clReleaseMemObject(dst);
  clReleaseKernel(k);
  return st;
}

clattn_status clattn_measure_peak(clattn_context ctx, const clattn_peak_request *req,
                                  clattn_peak_result *out) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!out) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "out (result) is NULL");
  memset(out, 0, sizeof *out);
  clattn_peak_request r;
  clattn_peak_request_init(&r);
  if (req) r = *req;
  if (r.copy_bytes < 16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "req.copy_bytes %zu: must be >= 16",
                        r.copy_bytes);
  if (!(r.fma_ms > 0) || !isfinite(r.fma_ms) || r.fma_ms > 60000)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "req.fma_ms %g: must be in (0, 60000]",
                        r.fma_ms);
  if (r.runs < 1 || r.runs > PEAK_MAX_RUNS)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "req.runs %d: must be in 1..%d", r.runs,
                        PEAK_MAX_RUNS);
  cl_command_queue_properties qp = 0;
  cl_int err = clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clGetCommandQueueInfo", err, "queue");
  if (!(qp & CL_QUEUE_PROFILING_ENABLE))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "measuring the peak needs a queue with CL_QUEUE_PROFILING_ENABLE");
  const int vw = peak_vw(ctx);
  char opts[64];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -cl-mad-enable -DVW=%d", vw);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, "peak.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  out->runs = r.runs;
  out->vector_width = vw;
  st = measure_fma(ctx, prog, vw, &r, out);
  if (st == CLATTN_SUCCESS) st = measure_copy(ctx, prog, vw, &r, out);
  return st;
}
