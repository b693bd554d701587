/* test_memory.c — memory accounting (clattn_plan_estimate) and peak calibration
 * (clattn_measure_peak). */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static clattn_attention_desc desc_of(clattn_algo algo, int b, int h, int hk, int nq, int nk, int d,
                                     clattn_mask mask) {
  clattn_attention_desc x;
  clattn_attention_desc_init(&x);
  x.algo = algo;
  x.batch = b;
  x.heads = h;
  x.kv_heads = hk;
  x.seq_q = nq;
  x.seq_kv = nk;
  x.head_dim = d;
  x.mask = mask;
  return x;
}

static size_t estimate_ok(clattn_context ctx, const clattn_attention_desc *d) {
  size_t ws = (size_t)-1;
  clattn_status st = clattn_plan_estimate(ctx, d, &ws);
  if (st != CLATTN_SUCCESS)
    fail_msg("clattn_plan_estimate: %s: %s", clattn_status_string(st),
             clattn_context_last_error(ctx));
  return ws;
}

/* The estimate is what the real plan reports, for every family and for
 * sparse masks (whose tile lists and bitmaps are the workspace), and nothing
 * of it is built: with CLATTN_KERNEL_DIR pointing at an empty directory a
 * plan cannot find its kernels, the estimate does not need them. */
static void test_estimate_equals_plan(void **state) {
  clattn_context ctx = *state;
  typedef struct ecase {
    const char *label;
    clattn_attention_desc d;
  } ecase;
  ecase cases[8];
  int n = 0;
  /* seq_q > 16: a prefill kernel (the decode kernel, seq_q <= 16, owns a workspace) */
  cases[n++] = (ecase){"flash", desc_of(CLATTN_ALGO_FLASH, 2, 4, 2, 17, 9, 16, CLATTN_MASK_NONE)};
  cases[n++] =
      (ecase){"naive causal", desc_of(CLATTN_ALGO_NAIVE, 2, 4, 2, 33, 70, 16, CLATTN_MASK_CAUSAL)};
  cases[n] = (ecase){"flash window",
                     desc_of(CLATTN_ALGO_FLASH, 1, 2, 0, 300, 300, 16, CLATTN_MASK_WINDOW)};
  cases[n].d.sparse.window_left = 20;
  cases[n++].d.sparse.window_right = 5;
  cases[n] = (ecase){"naive bigbird",
                     desc_of(CLATTN_ALGO_NAIVE, 1, 2, 0, 200, 200, 16, CLATTN_MASK_BIGBIRD)};
  cases[n].d.sparse.block_size = 16;
  cases[n].d.sparse.window_blocks = 1;
  cases[n].d.sparse.global_blocks = 1;
  cases[n].d.sparse.random_blocks = 2;
  cases[n++].d.sparse.seed = 7;
  cases[n] = (ecase){"linear elu causal",
                     desc_of(CLATTN_ALGO_LINEAR, 2, 4, 2, 100, 130, 16, CLATTN_MASK_CAUSAL)};
  cases[n++].d.feature_map = CLATTN_FEATURE_ELU1;
  cases[n] = (ecase){"linear favor causal",
                     desc_of(CLATTN_ALGO_LINEAR, 1, 2, 0, 65, 65, 16, CLATTN_MASK_CAUSAL)};
  cases[n].d.feature_map = CLATTN_FEATURE_FAVOR;
  cases[n++].d.num_features = 24;

  /* Estimates first, with no kernel source to be found. */
  size_t est[8];
  char empty[] = "/tmp/clattn_test_memory_XXXXXX";
  assert_non_null(mkdtemp(empty));
  setenv("CLATTN_KERNEL_DIR", empty, 1);
  clattn_context bare = tu_new_context();
  for (int i = 0; i < n; i++)
    est[i] = estimate_ok(bare, &cases[i].d);
  clattn_plan none = NULL;
  assert_int_equal(clattn_plan_create(bare, &cases[0].d, 0, &none), CLATTN_ERROR_IO);
  clattn_context_release(bare);
  unsetenv("CLATTN_KERNEL_DIR");
  rmdir(empty);

  for (int i = 0; i < n; i++) {
    clattn_plan plan = NULL;
    clattn_status st = clattn_plan_create(ctx, &cases[i].d, 0, &plan);
    if (st != CLATTN_SUCCESS)
      fail_msg("%s: plan: %s: %s", cases[i].label, clattn_status_string(st),
               clattn_context_last_error(ctx));
    const size_t real = clattn_plan_workspace_size(plan);
    printf("  %-20s estimate %zu bytes, plan %zu bytes\n", cases[i].label, est[i], real);
    if (est[i] != real)
      fail_msg("%s: clattn_plan_estimate says %zu bytes, the plan %zu (%s)", cases[i].label, est[i],
               real, clattn_plan_describe(plan));
    /* the families that own a workspace report one */
    if (i > 0 && real == 0) fail_msg("%s: no workspace", cases[i].label);
    clattn_plan_release(plan);
  }
  assert_int_equal(est[0], 0);
}

/* Growth in N: naive exactly B·H·N²·4 (quadratic), dense flash nothing, a
 * sliding window's tile lists and linear attention's chunk states linear. */
static void test_estimate_growth(void **state) {
  clattn_context ctx = *state;
  for (int n = 1024; n <= (1 << 20); n *= 4) {
    clattn_attention_desc f = desc_of(CLATTN_ALGO_FLASH, 1, 32, 0, n, n, 128, CLATTN_MASK_CAUSAL);
    assert_int_equal(estimate_ok(ctx, &f), 0);
  }
  size_t prev = 0;
  for (int n = 512; n <= 4096; n *= 2) {
    clattn_attention_desc d = desc_of(CLATTN_ALGO_NAIVE, 2, 3, 0, n, n, 64, CLATTN_MASK_NONE);
    const size_t ws = estimate_ok(ctx, &d);
    assert_true(ws == (size_t)2 * 3 * (size_t)n * (size_t)n * 4);
    if (prev) assert_true(ws == 4 * prev);
    prev = ws;
  }
  /* seq_q != seq_kv: B·H·Nq·Nk·4 */
  clattn_attention_desc r = desc_of(CLATTN_ALGO_NAIVE, 1, 2, 1, 100, 3000, 32, CLATTN_MASK_CAUSAL);
  assert_true(estimate_ok(ctx, &r) == (size_t)2 * 100 * 3000 * 4);

  size_t w1 = 0, l1 = 0;
  for (int n = 16384; n <= 65536; n *= 2) {
    clattn_attention_desc w = desc_of(CLATTN_ALGO_FLASH, 1, 4, 0, n, n, 64, CLATTN_MASK_WINDOW);
    w.sparse.window_left = w.sparse.window_right = 256;
    clattn_attention_desc l = desc_of(CLATTN_ALGO_LINEAR, 1, 4, 0, n, n, 64, CLATTN_MASK_CAUSAL);
    const size_t ws = estimate_ok(ctx, &w), ls = estimate_ok(ctx, &l);
    printf("  N=%d: window tile lists %zu bytes, linear causal workspace %zu bytes\n", n, ws, ls);
    assert_true(ws > 0 && ls > 0);
    if (w1) {
      const double gw = (double)ws / (double)w1, gl = (double)ls / (double)l1;
      if (gw < 1.8 || gw > 2.2) fail_msg("window lists grew %.3fx when N doubled", gw);
      /* at most linear (the causal scan's scratch is per segment: it may stay flat) */
      if (gl > 2.2) fail_msg("linear workspace grew %.3fx when N doubled", gl);
    }
    w1 = ws;
    l1 = ls;
  }
}

/* Limits: the naive family refuses 2^31 score elements whatever the memory
 * (UNSUPPORTED, bytes still sized); the estimate ignores the device's memory
 * where plan creation does not; bad arguments are refused. */
static void test_estimate_limits(void **state) {
  clattn_context ctx = *state;
  size_t ws = 1;
  clattn_attention_desc d = desc_of(CLATTN_ALGO_NAIVE, 1, 32, 0, 8192, 8192, 128, CLATTN_MASK_NONE);
  assert_int_equal(clattn_plan_estimate(ctx, &d, &ws), CLATTN_ERROR_UNSUPPORTED);
  assert_true(ws == (size_t)32 * 8192 * 8192 * 4);
  assert_non_null(strstr(clattn_context_last_error(ctx), "2^31"));
  d.seq_q = d.seq_kv = 8191; /* 32 · 8191² < 2^31 */
  assert_true(estimate_ok(ctx, &d) == (size_t)32 * 8191 * 8191 * 4);

  /* 4 GiB of scores, under the index limit: sized by the estimate; a plan
   * on a device that cannot hold one such buffer refuses it. */
  clattn_attention_desc big =
      desc_of(CLATTN_ALGO_NAIVE, 1, 1, 0, 32768, 32768, 16, CLATTN_MASK_NONE);
  assert_true(estimate_ok(ctx, &big) == ((size_t)1 << 32));
  cl_ulong max_alloc = 0;
  clGetDeviceInfo(clattn_context_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                  &max_alloc, NULL);
  if (max_alloc < ((cl_ulong)1 << 32)) {
    clattn_plan plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &big, CLATTN_PLAN_LAZY_WORKSPACE, &plan),
                     CLATTN_ERROR_OUT_OF_MEMORY);
    assert_null(plan);
  }

  /* Long causal sequences are sized without a loop over them. */
  clattn_attention_desc lng =
      desc_of(CLATTN_ALGO_FLASH, 1, 1, 0, 1 << 30, 1 << 30, 64, CLATTN_MASK_CAUSAL);
  assert_int_equal(estimate_ok(ctx, &lng), 0);

  /* A dtype a family does not implement: the estimate agrees with plan creation. */
  clattn_attention_desc h = desc_of(CLATTN_ALGO_NAIVE, 1, 2, 0, 40, 40, 16, CLATTN_MASK_NONE);
  h.dtype = CLATTN_DTYPE_F16;
  const clattn_status est = clattn_plan_estimate(ctx, &h, &ws);
  clattn_plan plan = NULL;
  const clattn_status real = clattn_plan_create(ctx, &h, 0, &plan);
  assert_int_equal(est, real);
  if (real == CLATTN_SUCCESS) assert_true(ws == clattn_plan_workspace_size(plan));
  clattn_plan_release(plan);

  clattn_attention_desc bad = desc_of(CLATTN_ALGO_FLASH, 1, 2, 3, 40, 40, 16, CLATTN_MASK_NONE);
  ws = 1;
  assert_int_equal(clattn_plan_estimate(ctx, &bad, &ws), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(ws, 0);
  assert_non_null(strstr(clattn_context_last_error(ctx), "kv_heads"));
  assert_int_equal(clattn_plan_estimate(ctx, &d, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_plan_estimate(NULL, &d, &ws), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_plan_estimate(ctx, NULL, &ws), CLATTN_ERROR_INVALID_ARGUMENT);
}

static void check_peak(const clattn_peak_result *r, int runs, size_t max_copy) {
  printf("  FMA %.2f GFLOP/s (%.3f ms, %d iterations x %zu work-items x %d lanes), copy %.2f GB/s "
         "(%zu bytes, %.3f ms)\n",
         r->fma_gflops, r->fma_ms, r->fma_iterations, r->fma_work_items, r->vector_width,
         r->copy_gbps, r->copy_bytes, r->copy_ms);
  assert_true(isfinite(r->fma_gflops) && r->fma_gflops > 0);
  assert_true(isfinite(r->copy_gbps) && r->copy_gbps > 0);
  assert_true(r->fma_min_ms > 0 && r->fma_min_ms <= r->fma_ms && r->fma_ms <= r->fma_max_ms);
  assert_true(r->copy_min_ms > 0 && r->copy_min_ms <= r->copy_ms && r->copy_ms <= r->copy_max_ms);
  assert_true(r->copy_bytes > 0 && r->copy_bytes <= max_copy);
  assert_int_equal(r->runs, runs);
  assert_true(r->vector_width >= 1 && r->vector_width <= 16);
  /* the rates are the work over the median time */
  assert_true(fabs(r->fma_gflops - r->fma_flop / (r->fma_ms * 1e6)) <= 1e-9 * r->fma_gflops);
  assert_true(fabs(r->copy_gbps - 2.0 * (double)r->copy_bytes / (r->copy_ms * 1e6)) <=
              1e-9 * r->copy_gbps);
  assert_true(r->fma_flop ==
              2.0 * 32 * r->vector_width * (double)r->fma_iterations * (double)r->fma_work_items);
}

/* clattn_measure_peak at a small size: positive, finite, self-consistent;
 * argument checks; a queue without profiling is refused. */
static void test_peak(void **state) {
  clattn_context ctx = *state;
  clattn_peak_request req;
  clattn_peak_request_init(&req);
  assert_true(req.copy_bytes == ((size_t)256 << 20) && req.fma_ms == 20.0 && req.runs == 7);
  req.copy_bytes = (size_t)1 << 20;
  req.fma_ms = 2.0;
  req.runs = 3;
  clattn_peak_result r;
  clattn_status st = clattn_measure_peak(ctx, &req, &r);
  if (st != CLATTN_SUCCESS)
    fail_msg("clattn_measure_peak: %s: %s", clattn_status_string(st),
             clattn_context_last_error(ctx));
  check_peak(&r, 3, (size_t)1 << 20);

  clattn_peak_request bad = req;
  bad.runs = 0;
  assert_int_equal(clattn_measure_peak(ctx, &bad, &r), CLATTN_ERROR_INVALID_ARGUMENT);
  bad = req;
  bad.fma_ms = 0;
  assert_int_equal(clattn_measure_peak(ctx, &bad, &r), CLATTN_ERROR_INVALID_ARGUMENT);
  bad = req;
  bad.copy_bytes = 0;
  assert_int_equal(clattn_measure_peak(ctx, &bad, &r), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "copy_bytes"));
  assert_int_equal(clattn_measure_peak(ctx, &req, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_measure_peak(NULL, &req, &r), CLATTN_ERROR_INVALID_ARGUMENT);

  cl_device_id dev = clattn_context_device(ctx);
  cl_int err;
  cl_context cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  cl_command_queue queue = clCreateCommandQueue(cl, dev, 0, &err);
  assert_int_equal(err, CL_SUCCESS);
  clattn_context qctx = NULL;
  assert_int_equal(clattn_context_create_from_queue(queue, &qctx), CLATTN_SUCCESS);
  assert_int_equal(clattn_measure_peak(qctx, &req, &r), CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(qctx), "PROFILING"));
  clattn_context_release(qctx);
  clReleaseCommandQueue(queue);
  clReleaseContext(cl);
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  unsetenv("CLATTN_KERNEL_DIR");
  unsetenv("CLATTN_TUNE_OVERRIDE");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_estimate_equals_plan),
      cmocka_unit_test(test_estimate_growth),
      cmocka_unit_test(test_estimate_limits),
      cmocka_unit_test(test_peak),
  };
  return cmocka_run_group_tests_name("clattn memory accounting and peak", tests, tu_group_setup,
                                     tu_group_teardown);
}
