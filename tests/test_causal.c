/* test_causal.c — both causal alignments (bottom-right, top-left) in every family vs the reference,
 * and the reference vs brute force. */
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

/*
 * CLATTN_MASK_CAUSAL: query i sees keys j <= i + seq_kv - seq_q (bottom-right,
 * FlashAttention); CLATTN_MASK_CAUSAL_TOP_LEFT: j <= i (PyTorch's is_causal).
 * The shapes have seq_q < seq_kv, seq_q > seq_kv (rows with no visible key
 * under bottom-right; rows past seq_kv that see every key under top-left),
 * sizes that are no tile multiple, and GQA. Tolerances: tu_rel_tol (f32
 * 1e-5, f16 1e-3, bf16 1e-2) against clattn_reference_attention /
 * clattn_reference_linear; the references are themselves checked against a
 * brute-force visibility count (q = k = 0 and v_j = e_j make output row i the
 * uniform distribution over the keys it sees).
 */

typedef struct shape {
  int batch, heads, kv_heads, seq_q, seq_kv, head_dim;
} shape;

static const shape shapes[] = {
    {1, 2, 1, 7, 33, 16},  /* seq_q < seq_kv, GQA */
    {2, 1, 1, 65, 20, 40}, /* seq_q > seq_kv */
    {1, 4, 2, 63, 63, 24}, /* square, GQA: both alignments agree */
    {1, 1, 1, 100, 37, 8}, /* seq_q > seq_kv, more than one tile of queries past seq_kv */
    {1, 2, 1, 50, 30, 16}, /* seq_q > seq_kv, GQA */
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static const clattn_mask masks[2] = {CLATTN_MASK_CAUSAL, CLATTN_MASK_CAUSAL_TOP_LEFT};

static clattn_attention_desc make_desc(const shape *s, clattn_mask mask, clattn_algo algo) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = s->batch;
  d.heads = s->heads;
  d.kv_heads = s->kv_heads;
  d.seq_q = s->seq_q;
  d.seq_kv = s->seq_kv;
  d.head_dim = s->head_dim;
  d.mask = mask;
  d.algo = algo;
  return d;
}

static int visible(clattn_mask mask, int i, int j, int nq, int nk) {
  return mask == CLATTN_MASK_CAUSAL_TOP_LEFT ? j <= i : j <= i + nk - nq;
}

/* The references against brute force: q = k = 0, head_dim = seq_kv, v_j = e_j. */
static void test_reference_visibility(void **state) {
  (void)state;
  static const int dims[][2] = {{3, 7}, {7, 3}, {5, 5}, {1, 9}, {9, 1}};
  for (int c = 0; c < 5; c++)
    for (int m = 0; m < 2; m++)
      for (int lin = 0; lin < 2; lin++) {
        const int nq = dims[c][0], nk = dims[c][1];
        const shape s = {1, 1, 1, nq, nk, nk};
        clattn_attention_desc d =
            make_desc(&s, masks[m], lin ? CLATTN_ALGO_LINEAR : CLATTN_ALGO_AUTO);
        float *q = calloc((size_t)nq * nk, sizeof *q), *k = calloc((size_t)nk * nk, sizeof *k);
        float *v = calloc((size_t)nk * nk, sizeof *v);
        double *o = calloc((size_t)nq * nk, sizeof *o), *lse = calloc((size_t)nq, sizeof *lse);
        assert_non_null(q);
        assert_non_null(k);
        assert_non_null(v);
        assert_non_null(o);
        assert_non_null(lse);
        for (int j = 0; j < nk; j++)
          v[(size_t)j * nk + j] = 1.0f;
        const clattn_status st = lin ? clattn_reference_linear(&d, q, k, v, NULL, o, NULL, 0)
                                     : clattn_reference_attention(&d, q, k, v, o, lse, NULL, 0);
        assert_int_equal(st, CLATTN_SUCCESS);
        for (int i = 0; i < nq; i++) {
          int nvis = 0;
          for (int j = 0; j < nk; j++)
            nvis += visible(masks[m], i, j, nq, nk);
          for (int j = 0; j < nk; j++) {
            const double want = visible(masks[m], i, j, nq, nk) ? 1.0 / nvis : 0.0;
            if (fabs(o[(size_t)i * nk + j] - want) > 1e-12)
              fail_msg("%s reference, mask %d, nq %d nk %d: o[%d][%d] = %g, want %g",
                       lin ? "linear" : "softmax", (int)masks[m], nq, nk, i, j,
                       o[(size_t)i * nk + j], want);
          }
          if (!lin && nvis == 0) assert_true(isinf(lse[i]) && lse[i] < 0);
          if (!lin && nvis > 0) assert_true(fabs(lse[i] - log((double)nvis)) < 1e-12);
        }
        free(q);
        free(k);
        free(v);
        free(o);
        free(lse);
      }
}

static void run_family(clattn_context ctx, clattn_algo algo, const char *tag) {
  for (int s = 0; s < NSHAPES; s++)
    for (int m = 0; m < 2; m++) {
      clattn_attention_desc d = make_desc(&shapes[s], masks[m], algo);
      char label[160];
      snprintf(label, sizeof label, "causal/%s/%s/q%d-k%d-d%d", tag,
               m ? "top_left" : "bottom_right", shapes[s].seq_q, shapes[s].seq_kv,
               shapes[s].head_dim);
      TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, 1, label);
    }
}

static void test_flash(void **state) { run_family(*state, CLATTN_ALGO_FLASH, "flash"); }

/* The work-group kernel (cl/flash_fwd.cl, what GPUs run); CPUs default to the
 * row kernel. A context reads the override when it is created. */
static void test_flash_workgroup(void **state) {
  (void)state;
  setenv("CLATTN_TUNE_OVERRIDE", "flash:bm=16,bn=32,tm=4,tn=8", 1);
  clattn_context ctx = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_CAUSAL, CLATTN_ALGO_FLASH);
  tu_report rep;
  tu_run_and_compare(ctx, &d, TU_INPUT_UNIFORM, 1, 0, "causal/flash_wg/forced", &rep);
  if (!strstr(rep.plan_describe, "bm=16 bn=32 tm=4 tn=8"))
    fail_msg("the work-group kernel was not forced: %s", rep.plan_describe);
  run_family(ctx, CLATTN_ALGO_FLASH, "flash_wg");
  clattn_context_release(ctx);
}

static void test_naive(void **state) { run_family(*state, CLATTN_ALGO_NAIVE, "naive"); }

/* 16-bit storage, top-left, seq_q > seq_kv and seq_q < seq_kv. */
static void test_half(void **state) {
  const clattn_dtype dts[2] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (int t = 0; t < 2; t++)
    for (int s = 0; s < 2; s++) {
      clattn_attention_desc d =
          make_desc(&shapes[s], CLATTN_MASK_CAUSAL_TOP_LEFT, CLATTN_ALGO_FLASH);
      d.dtype = dts[t];
      char label[128];
      snprintf(label, sizeof label, "causal/half/%d/top_left/q%d-k%d", (int)dts[t], shapes[s].seq_q,
               shapes[s].seq_kv);
      TU_CHECK_CASE(*state, &d, TU_INPUT_UNIFORM, 1, label);
    }
}

/* Linear attention (elu+1, f32 BHSD) against clattn_reference_linear, with the
 * built-in chunking and with small chunks over several segments (top-left
 * with seq_q > seq_kv: the last segment walks on past the keys). */
static void linear_case(clattn_context ctx, const clattn_attention_desc *d, const char *config,
                        const char *label) {
  const size_t nq = (size_t)d->batch * d->heads * d->seq_q * d->head_dim;
  const size_t nk = (size_t)d->batch * d->kv_heads * d->seq_kv * d->head_dim;
  float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
  float *o = malloc(nq * sizeof *o);
  double *ref = malloc(nq * sizeof *ref);
  assert_true(q && k && v && o && ref);
  tu_rng r;
  tu_rng_init(&r, tu_case_seed(label));
  for (size_t i = 0; i < nq; i++)
    q[i] = (float)tu_rng_uniform(&r, -1, 1);
  for (size_t i = 0; i < nk; i++)
    k[i] = (float)tu_rng_uniform(&r, -1, 1);
  for (size_t i = 0; i < nk; i++)
    v[i] = (float)tu_rng_uniform(&r, -1, 1);
  cl_mem bq = tu_buffer_from_host(ctx, q, nq * 4), bk = tu_buffer_from_host(ctx, k, nk * 4);
  cl_mem bv = tu_buffer_from_host(ctx, v, nk * 4), bo = tu_buffer_nan(ctx, nq);
  assert_true(bq && bk && bv && bo);
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create_with_config(ctx, d, 0, config, &plan);
  if (st != CLATTN_SUCCESS) fail_msg("%s: plan: %s", label, clattn_context_last_error(ctx));
  st = clattn_plan_execute(plan, bq, bk, bv, bo, NULL, 0, NULL, NULL);
  if (st != CLATTN_SUCCESS) fail_msg("%s: execute: %s", label, clattn_context_last_error(ctx));
  assert_int_equal(tu_buffer_read(ctx, bo, o, nq * 4), CL_SUCCESS);
  assert_int_equal(clattn_reference_linear(d, q, k, v, NULL, ref, NULL, 0), CLATTN_SUCCESS);
  double num = 0, den = 0;
  size_t bad = 0;
  for (size_t i = 0; i < nq; i++) {
    if (!isfinite(o[i])) bad++;
    num += (o[i] - ref[i]) * (o[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  const double rel = sqrt(num / (den > 0 ? den : 1));
  if (bad || !(rel <= 1e-5))
    fail_msg("%s (seed %llu): rel %.3g, %zu non-finite (%s)", label,
             (unsigned long long)tu_case_seed(label), rel, bad, clattn_plan_describe(plan));
  clattn_plan_release(plan);
  clReleaseMemObject(bq);
  clReleaseMemObject(bk);
  clReleaseMemObject(bv);
  clReleaseMemObject(bo);
  free(q);
  free(k);
  free(v);
  free(o);
  free(ref);
}

static void test_linear(void **state) {
  static const char *const configs[] = {NULL, "chunk=13,split=39,bks=1", "chunk=5,split=10,bks=1"};
  for (int c = 0; c < 3; c++)
    for (int s = 0; s < NSHAPES; s++)
      for (int m = 0; m < 2; m++) {
        clattn_attention_desc d = make_desc(&shapes[s], masks[m], CLATTN_ALGO_LINEAR);
        char label[160];
        snprintf(label, sizeof label, "causal/linear/%s/%s/q%d-k%d", c ? configs[c] : "default",
                 m ? "top_left" : "bottom_right", shapes[s].seq_q, shapes[s].seq_kv);
        linear_case(*state, &d, configs[c], label);
      }
  /* FAVOR+ (maxima rescaled along the walk past the keys). */
  for (int c = 0; c < 3; c++)
    for (int s = 1; s < NSHAPES; s += 3) {
      clattn_attention_desc d =
          make_desc(&shapes[s], CLATTN_MASK_CAUSAL_TOP_LEFT, CLATTN_ALGO_LINEAR);
      d.feature_map = CLATTN_FEATURE_FAVOR;
      d.feature_seed = 5;
      char label[160];
      snprintf(label, sizeof label, "causal/linear_favor/%s/top_left/q%d-k%d",
               c ? configs[c] : "default", shapes[s].seq_q, shapes[s].seq_kv);
      linear_case(*state, &d, configs[c], label);
    }
}

/* clattn_plan_visible_pairs against a count, and the desc size. */
static void test_pairs(void **state) {
  for (int s = 0; s < NSHAPES; s++)
    for (int m = 0; m < 2; m++) {
      clattn_attention_desc d = make_desc(&shapes[s], masks[m], CLATTN_ALGO_FLASH);
      clattn_plan plan = NULL;
      assert_int_equal(clattn_plan_create(*state, &d, 0, &plan), CLATTN_SUCCESS);
      uint64_t want = 0;
      for (int i = 0; i < d.seq_q; i++)
        for (int j = 0; j < d.seq_kv; j++)
          want += visible(masks[m], i, j, d.seq_q, d.seq_kv);
      want *= (uint64_t)d.batch * d.heads;
      assert_int_equal(clattn_plan_visible_pairs(plan), want);
      clattn_plan_release(plan);
    }
  assert_int_equal(clattn_attention_desc_size(), sizeof(clattn_attention_desc));
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_visibility),
      cmocka_unit_test(test_pairs),
      cmocka_unit_test(test_flash),
      cmocka_unit_test(test_flash_workgroup),
      cmocka_unit_test(test_naive),
      cmocka_unit_test(test_half),
      cmocka_unit_test(test_linear),
  };
  return cmocka_run_group_tests_name("clattn causal", tests, tu_group_setup, tu_group_teardown);
}
