/* backward.c — `clattn run --backward` / `bench --backward`: times the backward pass of one problem
 * and checks its gradients against the float64 reference. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Relative L2 tolerance of each gradient (as tests/test_backward.c). */
double cli_backward_tolerance(clattn_dtype t) {
  return t == CLATTN_DTYPE_F32 ? 1e-4 : t == CLATTN_DTYPE_F16 ? 5e-3 : 3e-2;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

enum { Q, K, V, O, LSE, DO, DQ, DK, DV, NBUF };

typedef struct bpoint {
  clattn_plan plan;
  cl_mem buf[NBUF];
  void *host[NBUF];
  double *times;
} bpoint;

static void release_bpoint(bpoint *pt) {
  clattn_plan_release(pt->plan);
  for (int i = 0; i < NBUF; i++) {
    if (pt->buf[i]) clReleaseMemObject(pt->buf[i]);
    free(pt->host[i]);
  }
  free(pt->times);
}

static clattn_status bfail(cli_result *r, clattn_status st, const char *what, const char *msg) {
  snprintf(r->error, sizeof r->error, "%s: %s", what, msg);
  r->status = st;
  r->oom = st == CLATTN_ERROR_OUT_OF_MEMORY;
  return st;
}

/* Compares the gradients (host copies in the descriptor's layout and dtype)
 * with the reference; fills r's verification fields. */
static clattn_status verify(const clattn_attention_desc *d, bpoint *pt, cli_result *r) {
  clattn_strides st[4];
  size_t elems[4];
  clattn_attention_desc_strides(d, &st[0], &st[1], &st[2], &st[3], elems);
  const int kvh = d->kv_heads ? d->kv_heads : d->heads;
  const int hs[3] = {d->heads, kvh, kvh}, ns[3] = {d->seq_q, d->seq_kv, d->seq_kv};
  uint64_t n[3];
  double *ref[3] = {NULL, NULL, NULL};
  clattn_status s = CLATTN_SUCCESS;
  for (int t = 0; t < 3 && s == CLATTN_SUCCESS; t++) {
    if (!cli_mul_u64((uint64_t)d->batch * (uint64_t)hs[t], (uint64_t)ns[t] * (uint64_t)d->head_dim,
                     &n[t]) ||
        n[t] > SIZE_MAX / sizeof(double) || !(ref[t] = malloc((size_t)n[t] * sizeof(double))))
      s = CLATTN_ERROR_OUT_OF_MEMORY;
  }
  if (s == CLATTN_SUCCESS)
    s = clattn_reference_attention_backward(d, pt->host[Q], pt->host[K], pt->host[V], pt->host[DO],
                                            ref[0], ref[1], ref[2]);
  if (s == CLATTN_SUCCESS) {
    r->rel_err = r->max_abs_err = 0;
    for (int t = 0; t < 3; t++) {
      double num = 0, den = 0;
      size_t idx = 0;
      for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < hs[t]; h++)
          for (int q = 0; q < ns[t]; q++)
            for (int x = 0; x < d->head_dim; x++, idx++) {
              const size_t e =
                  (size_t)(b * st[t].batch + h * st[t].head + q * st[t].seq + x * st[t].dim);
              const double g = cli_load(pt->host[DQ + t], d->dtype, e), rv = ref[t][idx];
              if (isnan(g)) r->nan_found = true;
              num += (g - rv) * (g - rv);
              den += rv * rv;
              if (fabs(g - rv) > r->max_abs_err || isnan(g)) r->max_abs_err = fabs(g - rv);
            }
      const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
      if (!(rel <= r->rel_err)) r->rel_err = rel;
    }
    r->verified = true;
    r->passed = !r->nan_found && r->rel_err <= r->tolerance;
    r->rows_checked = r->rows_total = d->seq_q;
    r->heads_checked = r->heads_total = (long)d->batch * d->heads;
  }
  for (int t = 0; t < 3; t++)
    free(ref[t]);
  return s;
}

clattn_status cli_run_backward_point(clattn_context ctx, const cli_problem *p, cli_result *r) {
  memset(r, 0, sizeof *r);
  r->median_ms = r->min_ms = r->max_ms = r->tflops = r->gbps = NAN;
  r->max_abs_err = r->rel_err = r->lse_max_abs_err = NAN;
  r->approx_rel_err = r->approx_cos = NAN;
  r->tolerance = cli_backward_tolerance(p->desc.dtype);
  r->timing = "host clock around each backward call and clFinish (3 kernels)";
  r->algo = p->desc.algo;
  const clattn_attention_desc *d = &p->desc;
  const size_t es = cli_dtype_size(d->dtype);
  size_t elems[4];
  if (clattn_attention_desc_strides(d, NULL, NULL, NULL, NULL, elems) != CLATTN_SUCCESS)
    return bfail(r, CLATTN_ERROR_INVALID_ARGUMENT, "problem", "invalid description");
  const size_t lse_bytes = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q * sizeof(float);
  /* q, k, v, o, dout read; dq, dk, dv written; lse read. */
  r->io_bytes = 2 * (uint64_t)(elems[0] + elems[1] + elems[2] + elems[3]) * es + lse_bytes;

  bpoint pt;
  memset(&pt, 0, sizeof pt);
  clattn_status st = clattn_plan_create(ctx, d, CLATTN_PLAN_BACKWARD, &pt.plan);
  if (st != CLATTN_SUCCESS) {
    bfail(r, st, "plan", clattn_context_last_error(ctx));
    release_bpoint(&pt);
    return st;
  }
  snprintf(r->describe, sizeof r->describe, "%s", clattn_plan_describe(pt.plan));
  r->algo = clattn_plan_desc(pt.plan)->algo;
  r->workspace_bytes = clattn_plan_workspace_size(pt.plan);
  r->flops = clattn_plan_backward_flops(pt.plan);
  r->mem_bytes = r->io_bytes + r->workspace_bytes;

  cl_context cl = clattn_context_cl_context(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  static const int size_of[NBUF] = {0, 1, 2, 3, -1, 3, 0, 1, 2};
  uint64_t seed = p->seed;
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < NBUF && err == CL_SUCCESS; i++) {
    const size_t bytes = i == LSE ? lse_bytes : elems[size_of[i]] * es;
    pt.buf[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!pt.buf[i]) break;
    if (i == Q || i == K || i == V || i == DO) {
      if (!(pt.host[i] = malloc(bytes))) {
        release_bpoint(&pt);
        return bfail(r, CLATTN_ERROR_OUT_OF_MEMORY, "host memory", "inputs");
      }
      cli_fill_random(pt.host[i], elems[size_of[i]], d->dtype, cli_splitmix64(&seed));
      err = clEnqueueWriteBuffer(queue, pt.buf[i], CL_TRUE, 0, bytes, pt.host[i], 0, NULL, NULL);
    } else {
      unsigned char pattern[4];
      cli_nan_pattern(i == LSE ? CLATTN_DTYPE_F32 : d->dtype, pattern);
      err = clEnqueueFillBuffer(queue, pt.buf[i], pattern, i == LSE ? 4 : es, 0, bytes, 0, NULL,
                                NULL);
    }
  }
  if (err != CL_SUCCESS) {
    release_bpoint(&pt);
    return bfail(r, CLATTN_ERROR_OPENCL, "buffers", "clCreateBuffer / clEnqueueWriteBuffer failed");
  }
  st = clattn_plan_execute(pt.plan, pt.buf[Q], pt.buf[K], pt.buf[V], pt.buf[O], pt.buf[LSE], 0,
                           NULL, NULL);
  if (st != CLATTN_SUCCESS) {
    bfail(r, st, "forward", clattn_context_last_error(ctx));
    release_bpoint(&pt);
    return st;
  }
  clFinish(queue);
  const int total = p->warmup + p->reps;
  if (!(pt.times = malloc((size_t)(p->reps > 0 ? p->reps : 1) * sizeof *pt.times))) {
    release_bpoint(&pt);
    return bfail(r, CLATTN_ERROR_OUT_OF_MEMORY, "host memory", "timings");
  }
  for (int it = 0; it < total; it++) {
    const double t0 = now_ms();
    st = clattn_plan_execute_backward(pt.plan, pt.buf[Q], pt.buf[K], pt.buf[V], pt.buf[O],
                                      pt.buf[LSE], pt.buf[DO], pt.buf[DQ], pt.buf[DK], pt.buf[DV],
                                      0, NULL, NULL);
    if (st == CLATTN_SUCCESS && clFinish(queue) != CL_SUCCESS) st = CLATTN_ERROR_OPENCL;
    if (st != CLATTN_SUCCESS) {
      bfail(r, st, "backward", clattn_context_last_error(ctx));
      release_bpoint(&pt);
      return st;
    }
    if (it >= p->warmup) pt.times[it - p->warmup] = now_ms() - t0;
  }
  if (p->reps > 0) {
    cli_stats(pt.times, p->reps, &r->median_ms, &r->min_ms, &r->max_ms);
    r->tflops = r->flops / (r->median_ms * 1e-3) / 1e12;
    r->gbps = (double)r->io_bytes / (r->median_ms * 1e-3) / 1e9;
  }
  /* The reference needs every row (dK and dV sum over them): up to 2^31
   * multiply-adds per pass, else verification is skipped. */
  const double work = (double)d->batch * d->heads * d->seq_q * (double)d->seq_kv * d->head_dim;
  if (p->verify && work <= 2147483648.0) {
    for (int t = DQ; t <= DV && err == CL_SUCCESS; t++) {
      const size_t bytes = elems[size_of[t]] * es;
      if (!(pt.host[t] = malloc(bytes))) {
        release_bpoint(&pt);
        return bfail(r, CLATTN_ERROR_OUT_OF_MEMORY, "host memory", "gradients");
      }
      err = clEnqueueReadBuffer(queue, pt.buf[t], CL_TRUE, 0, bytes, pt.host[t], 0, NULL, NULL);
    }
    if (err != CL_SUCCESS) {
      release_bpoint(&pt);
      return bfail(r, CLATTN_ERROR_OPENCL, "read back", "clEnqueueReadBuffer failed");
    }
    st = verify(d, &pt, r);
    if (st != CLATTN_SUCCESS) bfail(r, st, "reference", clattn_status_string(st));
  }
  release_bpoint(&pt);
  return r->status;
}
