/* test_attention.c — flash or naive (-DTEST_ALGO) against the float64 reference, every axis. */
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
 * Built twice by tests/CMakeLists.txt: test_flash (-DTEST_ALGO=1, i.e.
 * CLATTN_ALGO_FLASH) and test_naive (-DTEST_ALGO=2, CLATTN_ALGO_NAIVE).
 * ctest runs test_flash as two entries (--skip / --only test_head_dims).
 *
 * Tolerance (f32 storage): ‖out − ref‖₂/‖ref‖₂ ≤ 1e-5 against the float64
 * reference and |lse − ref| ≤ 1e-5·max(1, |ref|) (TU_F32_REL_TOL and
 * TU_F32_LSE_TOL in test_util.h); f16 / bf16 storage 1e-3 / 1e-2 for both.
 * Fully masked rows exactly 0 with LSE -inf; elements of o outside the
 * tensor (strided padding) never written.
 *
 * Every case gets fresh random inputs seeded from its label (printed on
 * failure; $CLATTN_TEST_SEED changes the base seed) and NaN-poisoned o and
 * lse buffers, so an element the kernel does not write fails.
 *
 * Run time: on PoCL every distinct (head_dim, mask, configuration, vector
 * I/O) builds a flash program (seconds each) and the first CLBlast GEMM of a
 * process compiles its kernels, so the cases below cover every axis (seq
 * lengths 1, 7, 63, 65, 257, 1000 in both orders, every head dim 1..256 the
 * library claims, both masks, GQA, three layouts) without their cross
 * product, reusing a handful of programs.
 */

#ifndef TEST_ALGO
#error "compile with -DTEST_ALGO=1 (flash) or -DTEST_ALGO=2 (naive)"
#endif
#define IS_FLASH (TEST_ALGO == 1)
#define IS_NAIVE (TEST_ALGO == 2)
#if !IS_FLASH && !IS_NAIVE
#error "TEST_ALGO must be 1 (flash) or 2 (naive)"
#endif

#if IS_FLASH
#define FAMILY "flash"
#else
#define FAMILY "naive"
#endif

typedef struct shape_case {
  int batch, heads, kv_heads, seq_q, seq_kv, head_dim;
  int causal;
} shape_case;

static clattn_attention_desc make_desc(const shape_case *c) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = c->batch;
  d.heads = c->heads;
  d.kv_heads = c->kv_heads;
  d.seq_q = c->seq_q;
  d.seq_kv = c->seq_kv;
  d.head_dim = c->head_dim;
  d.mask = c->causal ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
  d.algo = (clattn_algo)TEST_ALGO;
  return d;
}

static void case_label(char *buf, size_t cap, const char *test, const clattn_attention_desc *d) {
  snprintf(buf, cap, "%s/%s/B%d-H%d-Hk%d-q%d-k%d-d%d-L%d-m%d", FAMILY, test, d->batch, d->heads,
           d->kv_heads, d->seq_q, d->seq_kv, d->head_dim, (int)d->layout, (int)d->mask);
}

static void run_shapes(clattn_context ctx, const char *test, const shape_case *cases, size_t n,
                       clattn_layout layout, int with_lse) {
  for (size_t i = 0; i < n; i++) {
    clattn_attention_desc d = make_desc(&cases[i]);
    d.layout = layout;
    char label[256];
    case_label(label, sizeof label, test, &d);
    TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, with_lse, label);
  }
}

/* seq_q == seq_kv over the tile-boundary lengths, both masks (head dim 64). */
static void test_seq_square(void **state) {
  static const shape_case cases[] = {
      {1, 2, 0, 1, 1, 64, 0},     {1, 2, 0, 1, 1, 64, 1},       {2, 2, 0, 7, 7, 64, 1},
      {1, 3, 0, 63, 63, 64, 0},   {1, 2, 0, 65, 65, 64, 1},     {1, 2, 0, 257, 257, 64, 0},
      {1, 1, 0, 257, 257, 64, 1}, {1, 1, 0, 1000, 1000, 64, 1}, {1, 1, 0, 1000, 1000, 64, 0},
  };
  run_shapes(*state, "square", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BHSD, 1);
}

/* seq_q != seq_kv both ways; causal is bottom-right aligned: with
 * seq_q > seq_kv the first seq_q - seq_kv rows see no key (zeros, LSE -inf). */
static void test_seq_rect(void **state) {
  static const shape_case cases[] = {
      {1, 2, 0, 7, 63, 64, 0},     {1, 2, 0, 63, 7, 64, 0},    {1, 2, 0, 65, 257, 64, 1},
      {1, 2, 0, 1, 1000, 64, 1},   {1, 1, 0, 1000, 65, 64, 0}, {1, 2, 0, 257, 65, 64, 1},
      {1, 2, 0, 65, 7, 64, 1},     {1, 2, 0, 63, 1, 64, 1},    {1, 2, 0, 1, 257, 64, 0},
      {1, 1, 0, 1000, 257, 64, 1},
  };
  run_shapes(*state, "rect", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BHSD, 1);
}

/* The fully masked rows of a bottom-right causal mask with seq_q > seq_kv are
 * exactly zero with LSE -inf (checked for every row whose reference LSE is
 * -inf); also checks there are such rows. */
static void test_fully_masked_rows(void **state) {
  clattn_context ctx = *state;
  static const shape_case cases[] = {{1, 2, 0, 65, 7, 64, 1}, {2, 1, 0, 257, 1, 64, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    clattn_attention_desc d = make_desc(&cases[i]);
    char label[256];
    case_label(label, sizeof label, "masked", &d);
    tu_report rep;
    tu_run_and_compare(ctx, &d, TU_INPUT_UNIFORM, 1, 0, label, &rep);
    const size_t want = (size_t)d.batch * (size_t)d.heads * (size_t)(d.seq_q - d.seq_kv);
    if (!tu_report_ok(&rep, 1) || rep.masked_rows != want)
      fail_msg("expected %zu fully masked rows\n%s", want, rep.summary);
  }
}

/* Every head dim the library claims, alternating masks and odd shapes. */
static void test_head_dims(void **state) {
  static const shape_case cases[] = {
      {1, 2, 0, 65, 63, 1, 1},   {1, 2, 0, 257, 257, 16, 0}, {1, 2, 0, 63, 65, 40, 1},
      {1, 1, 0, 65, 65, 80, 0},  {1, 2, 0, 7, 257, 96, 1},   {1, 1, 0, 257, 63, 128, 0},
      {1, 1, 0, 65, 65, 256, 1}, {2, 1, 0, 7, 7, 256, 1},
  };
  run_shapes(*state, "head_dim", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BHSD, 1);
}

/* Grouped-query attention: 8 query heads on 1 kv head (MQA), 4 on 2. */
static void test_gqa(void **state) {
  static const shape_case cases[] = {
      {1, 8, 1, 65, 65, 64, 1},
      {2, 4, 2, 63, 257, 64, 0},
      {2, 8, 1, 7, 63, 64, 0},
      {1, 4, 2, 257, 7, 64, 1},
  };
  run_shapes(*state, "gqa", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BHSD, 1);
}

/* [batch][seq][heads][head_dim], with and without GQA. */
static void test_layout_bshd(void **state) {
  static const shape_case cases[] = {
      {2, 4, 2, 65, 63, 64, 1},
      {1, 2, 0, 257, 257, 64, 0},
      {2, 3, 1, 1, 65, 64, 0},
      {1, 2, 0, 63, 65, 64, 1},
  };
  run_shapes(*state, "bshd", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BSHD, 1);
}

/* Explicit strides with padding: seq strides larger than head_dim, heads
 * not contiguous, k/v seq-major, o with its own strides. pad_seq 5 breaks
 * 16-byte row alignment, pad_seq 4 keeps it. */
static void test_layout_strided(void **state) {
  clattn_context ctx = *state;
  static const struct {
    shape_case s;
    int pad_seq, pad_head, seq_major;
  } cases[] = {
      {{2, 4, 2, 65, 63, 64, 1}, 5, 7, 0},
      {{1, 2, 0, 257, 65, 64, 1}, 5, 3, 1},
      {{2, 2, 1, 63, 257, 64, 0}, 4, 8, 1},
      {{1, 3, 0, 7, 7, 64, 1}, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    clattn_attention_desc d = make_desc(&cases[i].s);
    tu_set_padded_strides(&d, cases[i].pad_seq, cases[i].pad_head, cases[i].seq_major);
    char label[256];
    case_label(label, sizeof label, "strided", &d);
    TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, 1, label);
  }
}

/* Non-unit dim strides: K stored transposed ([b][h][d][s]), Q interleaved
 * with another tensor (dim stride 2), O with dim stride 3. */
static void set_dim_strided(clattn_attention_desc *d) {
  const int64_t hd = d->head_dim, nq = d->seq_q, nk = d->seq_kv;
  const int64_t hk = d->kv_heads ? d->kv_heads : d->heads;
  d->layout = CLATTN_LAYOUT_STRIDED;
  d->q_strides = (clattn_strides){.dim = 2, .seq = 2 * hd + 1, .head = nq * (2 * hd + 1) + 3};
  d->q_strides.batch = d->heads * d->q_strides.head;
  d->k_strides = (clattn_strides){.dim = nk, .seq = 1, .head = hd * nk, .batch = hk * hd * nk};
  d->v_strides = (clattn_strides){.dim = 1, .seq = hd, .head = nk * hd, .batch = hk * nk * hd};
  d->o_strides = (clattn_strides){.dim = 3, .seq = 3 * hd, .head = nq * 3 * hd};
  d->o_strides.batch = d->heads * d->o_strides.head + 1;
}

static void test_layout_dim_stride(void **state) {
  clattn_context ctx = *state;
  static const shape_case cases[] = {{2, 4, 2, 65, 63, 64, 1}, {1, 2, 0, 7, 257, 64, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    clattn_attention_desc d = make_desc(&cases[i]);
    set_dim_strided(&d);
    char label[256];
    case_label(label, sizeof label, "dim_stride", &d);
#if IS_FLASH
    TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, 1, label);
#else
    /* The naive family's GEMMs need head_dim contiguous: a clean refusal. */
    clattn_plan plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_UNSUPPORTED);
    assert_null(plan);
    assert_non_null(strstr(clattn_context_last_error(ctx), "dim stride"));
#endif
  }
}

/* No lse buffer: the kernels must not need one. */
static void test_without_lse(void **state) {
  static const shape_case cases[] = {{1, 2, 0, 65, 257, 64, 1}, {1, 2, 2, 257, 63, 64, 0}};
  run_shapes(*state, "nolse", cases, sizeof cases / sizeof *cases, CLATTN_LAYOUT_BHSD, 0);
}

/* Scores around ±1e4: exp(score) overflows f32, the output must be finite
 * and correct (ties between duplicated keys check the mixing). */
static void test_extreme_scores(void **state) {
  clattn_context ctx = *state;
  static const shape_case cases[] = {
      {1, 2, 0, 65, 65, 64, 0},  {1, 2, 0, 65, 65, 64, 1},  {1, 1, 0, 257, 257, 64, 1},
      {1, 2, 0, 63, 257, 64, 0}, {1, 2, 0, 257, 63, 64, 1},
  };
  static const tu_input inputs[] = {TU_INPUT_EXTREME_MIXED, TU_INPUT_EXTREME_ONE_SIGN};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      clattn_attention_desc d = make_desc(&cases[i]);
      char label[256];
      case_label(label, sizeof label, k ? "extreme_one_sign" : "extreme_mixed", &d);
      TU_CHECK_CASE(ctx, &d, inputs[k], 1, label);
    }
}

/* Runs one f32 BHSD problem (batch = heads = 1, head dim d) on host arrays
 * q[nq*d], k and v [nk*d]; fills o[nq*d] and lse[nq]. */
static void run_host(clattn_context ctx, clattn_mask mask, int nq, int nk, int d, double scale,
                     const float *q, const float *k, const float *v, float *o, float *lse) {
  clattn_attention_desc desc;
  clattn_attention_desc_init(&desc);
  desc.seq_q = nq;
  desc.seq_kv = nk;
  desc.head_dim = d;
  desc.scale = scale;
  desc.mask = mask;
  desc.algo = (clattn_algo)TEST_ALGO;
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, &desc, 0, &plan) != CLATTN_SUCCESS)
    fail_msg("plan_create: %s", clattn_context_last_error(ctx));
  cl_mem bq = tu_buffer_from_host(ctx, q, (size_t)nq * d * sizeof(float));
  cl_mem bk = tu_buffer_from_host(ctx, k, (size_t)nk * d * sizeof(float));
  cl_mem bv = tu_buffer_from_host(ctx, v, (size_t)nk * d * sizeof(float));
  cl_mem bo = tu_buffer_nan(ctx, (size_t)nq * d);
  cl_mem bl = tu_buffer_nan(ctx, (size_t)nq);
  assert_non_null(bq);
  assert_non_null(bk);
  assert_non_null(bv);
  assert_non_null(bo);
  assert_non_null(bl);
  assert_int_equal(clattn_plan_execute(plan, bq, bk, bv, bo, bl, 0, NULL, NULL), CLATTN_SUCCESS);
  assert_int_equal(tu_buffer_read(ctx, bo, o, (size_t)nq * d * sizeof(float)), CL_SUCCESS);
  assert_int_equal(tu_buffer_read(ctx, bl, lse, (size_t)nq * sizeof(float)), CL_SUCCESS);
  clReleaseMemObject(bq);
  clReleaseMemObject(bk);
  clReleaseMemObject(bv);
  clReleaseMemObject(bo);
  clReleaseMemObject(bl);
  clattn_plan_release(plan);
}

/* Visible keys are attended whatever their score: with every score about
 * -1e29 (in log2 units below the old -1e30 mask sentinel's reach), each row
 * is the mean of V over its visible keys, not zeros, with a finite LSE;
 * causal rows with no visible key are still zeros with LSE -inf. */
static void test_very_negative_scores(void **state) {
  clattn_context ctx = *state;
  enum { D = 8, NQ = 70, NK = 67 };
  static float q[NQ * D], k[NK * D], v[NK * D], o[NQ * D], lse[NQ];
  for (int i = 0; i < NQ * D; i++)
    q[i] = 1.0f;
  for (int i = 0; i < NK * D; i++)
    k[i] = -1.0f;
  for (int j = 0; j < NK; j++)
    for (int c = 0; c < D; c++)
      v[j * D + c] = (float)(j + 1) * (float)(c + 1);
  for (int causal = 0; causal < 2; causal++) {
    run_host(ctx, causal ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE, NQ, NK, D, 1.25e28, q, k, v, o,
             lse);
    for (int i = 0; i < NQ; i++) {
      const int nvis = causal ? (i + NK - NQ + 1 < 0 ? 0 : i + NK - NQ + 1) : NK;
      if (nvis == 0) {
        for (int c = 0; c < D; c++)
          if (o[i * D + c] != 0.0f) fail_msg("causal=%d row %d: masked row not zero", causal, i);
        if (!(isinf(lse[i]) && lse[i] < 0))
          fail_msg("causal=%d row %d: lse %g, want -inf", causal, i, lse[i]);
        continue;
      }
      for (int c = 0; c < D; c++) {
        const double want = (double)(nvis + 1) / 2.0 * (c + 1); /* mean of (j+1)(c+1) */
        if (fabs(o[i * D + c] - want) > 1e-4 * want)
          fail_msg("causal=%d row %d col %d: got %g, want the mean of V %g", causal, i, c,
                   o[i * D + c], want);
      }
      const double want_lse = -8.0 * 1.25e28;
      if (!isfinite(lse[i]) || fabs(lse[i] - want_lse) > 1e-5 * fabs(want_lse))
        fail_msg("causal=%d row %d: lse %g, want %g", causal, i, lse[i], want_lse);
    }
  }
}

/* A query row holding NaN gives NaN outputs and a NaN LSE (not -inf); the
 * other rows are unaffected. */
static void test_nan_rows(void **state) {
  clattn_context ctx = *state;
  enum { D = 8, NQ = 9, NK = 5 };
  static float q[NQ * D], k[NK * D], v[NK * D], o[NQ * D], lse[NQ];
  for (int i = 0; i < NQ * D; i++)
    q[i] = 0.25f;
  for (int i = 0; i < NK * D; i++)
    k[i] = v[i] = 0.5f;
  q[3 * D + 2] = NAN;
  run_host(ctx, CLATTN_MASK_NONE, NQ, NK, D, 0.0, q, k, v, o, lse);
  for (int i = 0; i < NQ; i++) {
    if (i == 3) {
      if (!isnan(lse[i])) fail_msg("NaN row: lse %g, want NaN", lse[i]);
      for (int c = 0; c < D; c++)
        if (!isnan(o[i * D + c])) fail_msg("NaN row: o[%d] = %g, want NaN", c, o[i * D + c]);
    } else if (!isfinite(lse[i]) || fabs(o[i * D] - 0.5f) > 1e-6) {
      fail_msg("row %d: o %g lse %g", i, o[i * D], lse[i]);
    }
  }
}

/* Explicit scales (not 1/sqrt(d)), one of them negative. */
static void test_explicit_scale(void **state) {
  clattn_context ctx = *state;
  static const shape_case c = {1, 2, 0, 63, 65, 64, 0};
  clattn_attention_desc d = make_desc(&c);
  d.scale = 0.37;
  TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, 1, FAMILY "/scale/0.37");
  d.scale = -1.25;
  TU_CHECK_CASE(ctx, &d, TU_INPUT_UNIFORM, 1, FAMILY "/scale/-1.25");
}

/* 16-bit storage (f16, bf16): tolerances 1e-3 / 1e-2 relative (test_util.h),
 * against the float64 reference of the inputs as stored (rounded). Both
 * families implement them (naive through f32 copies, see test_naive_16bit). */
static void test_16bit_storage(void **state) {
  clattn_context ctx = *state;
  static const struct {
    shape_case s;
    clattn_layout layout;
    tu_input input;
  } cases[] = {
      {{1, 2, 0, 65, 63, 64, 1}, CLATTN_LAYOUT_BHSD, TU_INPUT_UNIFORM},
      {{2, 4, 2, 7, 257, 64, 1}, CLATTN_LAYOUT_BSHD, TU_INPUT_UNIFORM},
      {{1, 2, 0, 257, 65, 64, 1}, CLATTN_LAYOUT_BHSD, TU_INPUT_EXTREME_MIXED},
      /* rows whose maximum rises over several key tiles by far more than
       * the lazy rescale's 2^8 (cl/nv_mma.cl SOFTMAX_STEP) */
      {{1, 2, 0, 40, 300, 64, 0}, CLATTN_LAYOUT_BHSD, TU_INPUT_EXTREME_MIXED},
  };
  static const clattn_dtype types[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 2; t++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      clattn_attention_desc d = make_desc(&cases[i].s);
      d.layout = cases[i].layout;
      d.dtype = types[t];
      char label[256];
      case_label(label, sizeof label, t ? "bf16" : "f16", &d);
      TU_CHECK_CASE(ctx, &d, cases[i].input, 1, label);
    }
}

/* A context on an out-of-order queue of ctx's device (*queue: the queue, for
 * the caller to release after the context); NULL, with a message, where
 * such queues are not supported. */
static clattn_context ooo_context(clattn_context ctx, cl_command_queue *queue) {
  cl_int err;
  *queue = clCreateCommandQueue(clattn_context_cl_context(ctx), clattn_context_device(ctx),
                                CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE | CL_QUEUE_PROFILING_ENABLE,
                                &err);
  if (!*queue) {
    print_message("out-of-order queues unsupported here (%d): skipped\n", (int)err);
    return NULL;
  }
  clattn_context qctx = NULL;
  assert_int_equal(clattn_context_create_from_queue(*queue, &qctx), CLATTN_SUCCESS);
  return qctx;
}

#if IS_NAIVE
/* The naive family's 16-bit path: q, k, v are converted into packed f32
 * copies, CLBlast's SGEMM and the softmax run in f32, and the output is
 * rounded (nearest even) into o in its own layout; the LSE stays f32.
 * Tolerances as test_16bit_storage: f16 TU_F16_REL_TOL (1e-3), bf16
 * TU_BF16_REL_TOL (1e-2) relative, for o and for the LSE relative to
 * max(1, |ref|), against the float64 reference of the rounded inputs; o
 * and lse NaN-poisoned before the run. Shapes that are no tile multiple
 * (seq 1, 63, 257 in both orders), head dims 16, 80, 128, both masks
 * (bottom-right causal with fully masked rows), GQA / MQA, BHSD, BSHD and
 * strided tensors — including non-unit dim strides, which the f32 path
 * refuses but the conversion kernels read and write directly — with the
 * workspace allocated at plan creation or (lazily) at the first execute. */
static void test_naive_16bit(void **state) {
  clattn_context ctx = *state;
  enum { BHSD, BSHD, PADDED, DIMSTRIDE };
  static const struct {
    shape_case s;
    int layout, with_lse;
    tu_input input;
  } cases[] = {
      {{1, 2, 0, 1, 1, 16, 0}, BHSD, 1, TU_INPUT_UNIFORM},
      {{1, 2, 0, 63, 63, 80, 1}, BHSD, 1, TU_INPUT_UNIFORM},
      {{1, 1, 0, 257, 257, 128, 0}, BHSD, 1, TU_INPUT_UNIFORM},
      {{1, 2, 0, 257, 63, 16, 1}, BHSD, 1, TU_INPUT_UNIFORM}, /* 194 fully masked rows */
      {{2, 8, 1, 63, 257, 80, 1}, BSHD, 1, TU_INPUT_UNIFORM}, /* MQA */
      {{2, 4, 2, 257, 1, 128, 0}, BSHD, 1, TU_INPUT_UNIFORM}, /* GQA */
      {{1, 2, 0, 1, 257, 128, 1}, BSHD, 1, TU_INPUT_UNIFORM},
      {{2, 4, 2, 65, 63, 16, 1}, PADDED, 1, TU_INPUT_UNIFORM},
      {{2, 4, 2, 63, 65, 80, 1}, DIMSTRIDE, 1, TU_INPUT_UNIFORM},
      {{1, 2, 2, 63, 257, 16, 0}, BHSD, 0, TU_INPUT_UNIFORM},
      {{1, 2, 0, 63, 63, 16, 0}, BHSD, 1, TU_INPUT_EXTREME_MIXED},
  };
  static const clattn_dtype types[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 2; t++)
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      clattn_attention_desc d = make_desc(&cases[i].s);
      d.dtype = types[t];
      if (cases[i].layout == BSHD) d.layout = CLATTN_LAYOUT_BSHD;
      if (cases[i].layout == PADDED) tu_set_padded_strides(&d, 5, 7, 1);
      if (cases[i].layout == DIMSTRIDE) set_dim_strided(&d);
      char label[256], test[32];
      snprintf(test, sizeof test, "%s-%d-lse%d", t ? "bf16" : "f16", cases[i].layout,
               cases[i].with_lse);
      case_label(label, sizeof label, test, &d);
      tu_report rep;
      /* Every other case allocates the workspace at its first execute. */
      const unsigned flags = i % 2 ? CLATTN_PLAN_LAZY_WORKSPACE : 0;
      tu_run_and_compare(ctx, &d, cases[i].input, cases[i].with_lse, flags, label, &rep);
      if (!tu_report_ok(&rep, cases[i].with_lse)) fail_msg("%s", rep.summary);
      if (rep.rel_tol != (t ? TU_BF16_REL_TOL : TU_F16_REL_TOL))
        fail_msg("tolerance %g is not the %s one\n%s", rep.rel_tol, t ? "bf16" : "f16",
                 rep.summary);
      if (!strstr(rep.plan_describe, t ? "naive bf16" : "naive f16"))
        fail_msg("describe does not name the storage type: %s", rep.plan_describe);
      if (i == 3 && rep.masked_rows != 2 * 194)
        fail_msg("expected %d fully masked rows\n%s", 2 * 194, rep.summary);
    }
}

/* An application's out-of-order queue: the stages (conversions, GEMMs,
 * softmax) are ordered by barriers and the returned event covers the last
 * one; tu_run_and_compare waits on that event alone before reading o. */
static void test_naive_out_of_order(void **state) {
  clattn_context ctx = *state;
  cl_command_queue queue = NULL;
  clattn_context qctx = ooo_context(ctx, &queue);
  if (!qctx) return;
  static const shape_case c = {2, 4, 2, 65, 63, 80, 1};
  static const clattn_dtype types[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 3; t++) {
    clattn_attention_desc d = make_desc(&c);
    d.dtype = types[t];
    d.layout = CLATTN_LAYOUT_BSHD;
    char label[256];
    case_label(label, sizeof label, t == 0 ? "ooo-f32" : t == 1 ? "ooo-f16" : "ooo-bf16", &d);
    TU_CHECK_CASE(qctx, &d, TU_INPUT_UNIFORM, 1, label);
  }
  clattn_context_release(qctx);
  clReleaseCommandQueue(queue);
}

/* The output is rounded to nearest even, not truncated: the f32 result is
 * within ~1e-6 relative of the float64 reference, far below half an f16 /
 * bf16 ulp, so nearly every element must equal the reference rounded to
 * the storage type (tu_float_to_half / tu_float_to_bf16); the rest must be
 * one ulp away (a reference within the f32 error of a rounding boundary).
 * Truncation would miss about half of them, always towards zero. */
static void test_naive_16bit_rounding(void **state) {
  clattn_context ctx = *state;
  static const shape_case c = {1, 2, 0, 63, 65, 80, 0};
  static const clattn_dtype types[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 2; t++) {
    clattn_attention_desc d = make_desc(&c);
    d.dtype = types[t];
    char label[256];
    case_label(label, sizeof label, t ? "bf16-rounding" : "f16-rounding", &d);
    tu_problem pr;
    tu_report rep;
    if (tu_problem_init(&pr, ctx, &d, TU_INPUT_UNIFORM, 0, label, &rep))
      fail_msg("%s", rep.summary);
    clattn_plan plan = NULL;
    if (clattn_plan_create(ctx, &d, 0, &plan) != CLATTN_SUCCESS ||
        clattn_plan_execute(plan, pr.q, pr.k, pr.v, pr.o, NULL, 0, NULL, NULL) != CLATTN_SUCCESS)
      fail_msg("%s: %s", label, clattn_context_last_error(ctx));
    const size_t n = pr.elems[3]; /* BHSD: o is the reference's order */
    uint16_t *out = malloc(n * sizeof *out);
    double *ref = malloc(n * sizeof *ref);
    assert_non_null(out);
    assert_non_null(ref);
    assert_int_equal(clFinish(clattn_context_queue(ctx)), CL_SUCCESS);
    assert_int_equal(tu_buffer_read(ctx, pr.o, out, n * sizeof *out), CL_SUCCESS);
    assert_int_equal(clattn_reference_attention(&d, pr.sq, pr.sk, pr.sv, ref, NULL, NULL, 0),
                     CLATTN_SUCCESS);
    size_t off_by_one = 0;
    for (size_t e = 0; e < n; e++) {
      const uint16_t want = t ? tu_float_to_bf16((float)ref[e]) : tu_float_to_half((float)ref[e]);
      if (out[e] == want) continue;
      if (abs((int)out[e] - (int)want) != 1)
        fail_msg("%s: element %zu is 0x%04x, the rounded reference 0x%04x (%.9g)", label, e, out[e],
                 want, ref[e]);
      off_by_one++;
    }
    if (off_by_one > n / 100)
      fail_msg("%s: %zu of %zu elements are not the rounded reference", label, off_by_one, n);
    free(out);
    free(ref);
    clattn_plan_release(plan);
    tu_problem_free(&pr);
  }
}
#endif

#if IS_FLASH
/* f32 on NVIDIA tensor cores (flash_tf32: 3xTF32 mma.sync m16n8k8; on other
 * devices its PTX emulated with CLATTN_NV_EMULATE=1, else skipped) at the
 * f32 tolerances (1e-5 relative, output and LSE): head dims that are no
 * multiple of 8 or 4 (dims past D in the padded tiles; 13: the synchronous
 * element-wise loads), both causal alignments with seq_q != seq_kv, GQA and
 * MQA, BHSD and BSHD, lengths that are no tile multiple, scores of mixed
 * extreme magnitudes; the default tiling and two forced ones (one m-tile a
 * warp with 16-key tiles, two m-tiles a warp). */
static void test_f32_tensor_cores(void **state) {
  (void)state;
  static const struct {
    const char *cfg;
    shape_case s;
    clattn_layout layout;
    tu_input input;
  } cases[] = {
      {NULL, {1, 2, 0, 65, 63, 64, 1}, CLATTN_LAYOUT_BHSD, TU_INPUT_UNIFORM},
      {NULL, {2, 4, 2, 7, 257, 20, 0}, CLATTN_LAYOUT_BSHD, TU_INPUT_UNIFORM},
      {NULL, {1, 4, 1, 100, 37, 13, 1}, CLATTN_LAYOUT_BHSD, TU_INPUT_UNIFORM},
      {NULL, {1, 2, 0, 130, 130, 128, 1}, CLATTN_LAYOUT_BSHD, TU_INPUT_EXTREME_MIXED},
      {"flash_tf32:warps=2,mt=1,bn=16",
       {1, 2, 0, 257, 65, 96, 1},
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      {"flash_tf32:warps=1,mt=2,bn=32",
       {2, 2, 2, 63, 100, 40, 0},
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_UNIFORM},
  };
  int ran = 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    clattn_attention_desc d = make_desc(&cases[i].s);
    d.layout = cases[i].layout;
    clattn_context ctx = tu_forced_context(cases[i].cfg ? cases[i].cfg : "flash_tf32", &d);
    if (!ctx) continue; /* flash_tf32 does not apply on this device */
    char label[256];
    case_label(label, sizeof label, "tf32", &d);
    tu_report rep;
    tu_run_and_compare(ctx, &d, cases[i].input, 1, 0, label, &rep);
    clattn_context_release(ctx);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    if (!strstr(rep.plan_describe, "flash_tf32 f32"))
      fail_msg("%s: the plan is not flash_tf32: %s", label, rep.plan_describe);
    ran++;
  }
  if (!ran) skip();
}

/* A problem under a forced configuration (CLATTN_TUNE_OVERRIDE). */
typedef struct forced_case {
  const char *cfg;
  shape_case s;
  clattn_dtype dtype;
  clattn_layout layout;
  tu_input input;
} forced_case;

/* Runs each case against the float64 reference under its configuration (a
 * case whose variant does not apply on the device is left out) and fails
 * the test unless the plan's description holds every string of want
 * (NULL-terminated) and, with params, each "k=v" of the case's
 * configuration. Skips the test when no case ran. */
static void run_forced_cases(const forced_case *cases, size_t n, const char *const *want,
                             int params) {
  int ran = 0;
  for (size_t i = 0; i < n; i++) {
    clattn_attention_desc d = make_desc(&cases[i].s);
    d.layout = cases[i].layout;
    d.dtype = cases[i].dtype;
    clattn_context ctx = tu_forced_context(cases[i].cfg, &d);
    if (!ctx) continue;
    char label[256];
    case_label(label, sizeof label, cases[i].cfg, &d);
    tu_report rep;
    tu_run_and_compare(ctx, &d, cases[i].input, 1, 0, label, &rep);
    clattn_context_release(ctx);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    for (const char *const *w = want; *w; w++)
      if (!strstr(rep.plan_describe, *w))
        fail_msg("%s: the plan is not %s: %s", label, cases[i].cfg, rep.plan_describe);
    char kv[128];
    const char *colon = strchr(cases[i].cfg, ':');
    snprintf(kv, sizeof kv, "%s", colon ? colon + 1 : cases[i].cfg);
    for (char *tok = params ? strtok(kv, ",") : NULL; tok; tok = strtok(NULL, ","))
      if (!strstr(rep.plan_describe, tok))
        fail_msg("%s: the plan is not %s: %s", label, cases[i].cfg, rep.plan_describe);
    ran++;
  }
  if (!ran) skip();
}

/* flash_tcq (issue 15 step 2b): flash_tc with the work-group's Q rows in
 * local memory (swizzled, read with ldmatrix at every tile) and swizzled,
 * unpadded K/V tiles, at the 16-bit tolerances. Head dims 60 (element
 * loads: no 16-byte rows), 64, 120 and 128 (padded to 128: 48 KiB with two
 * m-tiles a warp), 256; rows and keys that are no tile multiple, both
 * causal alignments' bottom-right form with seq_q != seq_kv, GQA, BSHD,
 * extreme mixed scores. Emulated on CPUs (ctest test_flash_tcq_emu); the
 * plan must be flash_tcq. */
static void test_q_in_local_memory(void **state) {
  (void)state;
  static const forced_case cases[] = {
      {"flash_tcq:warps=4,mt=2,bn=32",
       {1, 2, 0, 150, 257, 128, 1},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      {"flash_tcq:warps=4,mt=2,bn=32",
       {2, 4, 2, 63, 100, 120, 1},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_UNIFORM},
      {"flash_tcq:warps=2,mt=2,bn=64",
       {1, 2, 0, 130, 70, 64, 0},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_EXTREME_MIXED},
      {"flash_tcq:warps=1,mt=1,bn=16",
       {1, 2, 1, 40, 33, 60, 1},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_UNIFORM},
      {"flash_tcq:warps=4,mt=1,bn=16",
       {1, 1, 0, 70, 90, 256, 0},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
  };
  static const char *const want[] = {"flash_tcq ", "Q in local", NULL};
  run_forced_cases(cases, sizeof cases / sizeof *cases, want, 0);
}

/* flash_wgmma (Hopper warpgroup MMAs; emulated on the CPU in CI) under
 * each of its schedules: one, two and three warpgroups, one stage, two
 * stages, and the overlapped schedule (st=3: three K and two V tiles, S of
 * the next tile issued with P·V of this one) with one tile, two and many;
 * head dims whose last MMA is 16 wide (40, 80, 112), one that takes the
 * synchronous loads (60: rows not 16-byte multiples), causal with seq_q !=
 * seq_kv, GQA, both layouts, large mixed-sign inputs. */
static void test_warpgroup_mma(void **state) {
  (void)state;
  static const forced_case cases[] = {
      {"flash_wgmma:wgs=3,bn=32,st=3",
       {1, 2, 1, 150, 257, 128, 1},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      {"flash_wgmma:wgs=2,bn=64,st=3",
       {2, 2, 0, 130, 200, 64, 0},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_EXTREME_MIXED},
      {"flash_wgmma:wgs=1,bn=32,st=3",
       {1, 1, 0, 70, 33, 40, 1},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      {"flash_wgmma:wgs=2,bn=32,st=3",
       {1, 1, 0, 20, 20, 80, 0},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_UNIFORM},
      {"flash_wgmma:wgs=1,bn=64,st=3",
       {1, 1, 0, 40, 90, 60, 1},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      {"flash_wgmma:wgs=2,bn=32,st=2",
       {1, 2, 0, 100, 300, 112, 1},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_UNIFORM},
      {"flash_wgmma:wgs=2,bn=32,st=1",
       {1, 1, 0, 65, 130, 80, 0},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
      /* the loader warpgroup: many tiles, causal, GQA; one tile; a last
       * dim chunk past head_dim (120) */
      {"flash_wgmma:wgs=2,bn=32,st=3,ld=1",
       {1, 4, 2, 140, 230, 128, 1},
       CLATTN_DTYPE_BF16,
       CLATTN_LAYOUT_BSHD,
       TU_INPUT_EXTREME_MIXED},
      {"flash_wgmma:wgs=1,bn=32,st=3,ld=1",
       {2, 1, 0, 70, 30, 120, 0},
       CLATTN_DTYPE_F16,
       CLATTN_LAYOUT_BHSD,
       TU_INPUT_UNIFORM},
  };
  static const char *const want[] = {"flash_wgmma ", NULL};
  run_forced_cases(cases, sizeof cases / sizeof *cases, want, 1);
}

/* Other flash configurations than the device default, through
 * CLATTN_TUNE_OVERRIDE: the GPU default (128 work-items, a partial last
 * output chunk) and small tiles whose items partly own no output chunk
 * (tn = 16 > head_dim / 4 = 10). */
static void test_flash_configs(void **state) {
  (void)state;
  char saved[256] = "";
  const char *was = getenv("CLATTN_TUNE_OVERRIDE");
  if (was) snprintf(saved, sizeof saved, "%s", was);
  static const struct {
    const char *cfg;
    shape_case s;
  } cases[] = {
      {"bm=64,bn=32,tm=16,tn=8", {1, 2, 0, 257, 63, 40, 1}},
      {"bm=16,bn=16,tm=4,tn=16", {2, 4, 2, 63, 65, 40, 1}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    clattn_attention_desc d = make_desc(&cases[i].s);
    char label[256];
    snprintf(label, sizeof label, "flash/config/%s", cases[i].cfg);
    assert_int_equal(setenv("CLATTN_TUNE_OVERRIDE", cases[i].cfg, 1), 0);
    clattn_context c = tu_new_context(); /* reads the environment */
    unsetenv("CLATTN_TUNE_OVERRIDE");
    tu_report rep;
    tu_run_and_compare(c, &d, TU_INPUT_UNIFORM, 1, 0, label, &rep);
    clattn_context_release(c);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    if (!strstr(rep.plan_describe, "override"))
      fail_msg("override not used: %s", rep.plan_describe);
  }
  if (was)
    setenv("CLATTN_TUNE_OVERRIDE", saved, 1);
  else
    unsetenv("CLATTN_TUNE_OVERRIDE");
}
#endif

#if IS_FLASH
/* flash_rows (CPUs) with 16-bit storage converts K and V once per call into
 * an f32 workspace laid out [batch][kv_head][seq][dim] and reads it with
 * the copy's own strides (cl/flash_rows.cl, KV_F32). f16 and bf16 against
 * the float64 reference over what the copy must index right: shapes that are
 * no tile multiple (head dim 40: two 16-element conversions and a tail),
 * padded strided layouts (rows unaligned for vectors, and aligned), K/V
 * seq-major (BSHD-like) and BSHD, non-unit dim strides (K transposed), GQA
 * and MQA, both causal alignments with rows that see no key, the lazy
 * workspace; then the in-kernel conversion (CLATTN_KV_COPY_MAX=0). On a CPU
 * device (flash_rows) describe() and the workspace must say which path ran.
 * test_decode's test_ragged covers packed ragged K/V. */
static void test_rows_kv_copy(void **state) {
  clattn_context ctx = *state;
  enum { PADDED_HEAD_MAJOR = 1, PADDED_SEQ_MAJOR, BSHD, DIM_STRIDED };
  static const struct {
    shape_case s;
    int layout;
    clattn_mask mask;
    unsigned flags;
  } cases[] = {
      {{2, 4, 2, 37, 101, 40, 1}, PADDED_HEAD_MAJOR, CLATTN_MASK_CAUSAL, 0},
      {{1, 6, 2, 100, 63, 40, 1}, PADDED_SEQ_MAJOR, CLATTN_MASK_CAUSAL, 0},
      {{2, 3, 1, 17, 200, 40, 0}, BSHD, CLATTN_MASK_NONE, CLATTN_PLAN_LAZY_WORKSPACE},
      {{1, 2, 2, 65, 70, 40, 1}, DIM_STRIDED, CLATTN_MASK_CAUSAL_TOP_LEFT, 0},
  };
  static const clattn_dtype types[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  const size_t n = sizeof cases / sizeof *cases;
  char saved[64] = "";
  const char *was = getenv("CLATTN_KV_COPY_MAX");
  if (was) snprintf(saved, sizeof saved, "%s", was);
  /* mode 0: the f32 copy (default limit); mode 1: converted in the kernel
   * (two of the cases, in a context made with CLATTN_KV_COPY_MAX=0) */
  for (int mode = 0; mode < 2; mode++) {
    clattn_context c = ctx;
    if (mode) {
      assert_int_equal(setenv("CLATTN_KV_COPY_MAX", "0", 1), 0);
      c = tu_new_context(); /* reads the environment */
    } else {
      unsetenv("CLATTN_KV_COPY_MAX");
    }
    for (size_t t = 0; t < 2; t++)
      for (size_t i = 0; i < n; i++) {
        if (mode && i != t) continue; /* in-kernel: f16 case 0, bf16 case 1 */
        clattn_attention_desc d = make_desc(&cases[i].s);
        d.dtype = types[t];
        d.mask = cases[i].mask;
        if (cases[i].layout == PADDED_HEAD_MAJOR) tu_set_padded_strides(&d, 5, 7, 0);
        if (cases[i].layout == PADDED_SEQ_MAJOR) tu_set_padded_strides(&d, 4, 3, 1);
        if (cases[i].layout == BSHD) d.layout = CLATTN_LAYOUT_BSHD;
        if (cases[i].layout == DIM_STRIDED) set_dim_strided(&d);
        char label[256], test[32];
        snprintf(test, sizeof test, "kvcopy%d-%s", mode, clattn_dtype_name(d.dtype));
        case_label(label, sizeof label, test, &d);
        tu_report rep;
        tu_run_and_compare(c, &d, TU_INPUT_UNIFORM, 1, cases[i].flags, label, &rep);
        if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
        if (strncmp(rep.plan_describe, "flash_rows ", 11)) continue; /* not a CPU device */
        /* both copies: 2 x B*Hk*seq_kv*d floats */
        const size_t hk = (size_t)(d.kv_heads ? d.kv_heads : d.heads);
        const size_t want = 2 * (size_t)d.batch * hk * (size_t)d.seq_kv * (size_t)d.head_dim * 4;
        size_t ws = 0;
        assert_int_equal(clattn_plan_estimate(c, &d, &ws), CLATTN_SUCCESS);
        char phrase[96];
        snprintf(phrase, sizeof phrase, "K/V converted once per call into an f32 workspace (%zu",
                 want);
        if (mode == 0 && (!strstr(rep.plan_describe, phrase) || ws != want))
          fail_msg("%s: want the f32 copy (%zu bytes), got workspace %zu: %s", label, want, ws,
                   rep.plan_describe);
        if (mode == 1 && (!strstr(rep.plan_describe, "K/V converted in the kernel") ||
                          !strstr(rep.plan_describe, "CLATTN_KV_COPY_MAX") || ws != 0))
          fail_msg("%s: want the in-kernel conversion, got workspace %zu: %s", label, ws,
                   rep.plan_describe);
      }
    if (mode) clattn_context_release(c);
  }
  if (was)
    setenv("CLATTN_KV_COPY_MAX", saved, 1);
  else
    unsetenv("CLATTN_KV_COPY_MAX");
}

/* The f32 copy is one per plan: on an out-of-order queue two calls enqueued
 * back to back (different K/V) must not convert the second call's K/V while
 * the first call's kernel still reads the copy. */
static void test_rows_kv_copy_out_of_order(void **state) {
  clattn_context ctx = *state;
  cl_command_queue queue = NULL;
  clattn_context qctx = ooo_context(ctx, &queue);
  if (!qctx) return;
  static const shape_case c = {2, 4, 2, 65, 130, 40, 1};
  clattn_attention_desc d = make_desc(&c);
  d.dtype = CLATTN_DTYPE_BF16;
  d.layout = CLATTN_LAYOUT_BSHD;
  tu_problem pr[2];
  tu_report rep;
  for (int i = 0; i < 2; i++) {
    char label[256], test[16];
    snprintf(test, sizeof test, "kvcopy-ooo%d", i);
    case_label(label, sizeof label, test, &d);
    if (tu_problem_init(&pr[i], qctx, &d, TU_INPUT_UNIFORM, 1, label, &rep))
      fail_msg("%s", rep.summary);
  }
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(qctx, &d, 0, &plan), CLATTN_SUCCESS);
  cl_event ev[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(
        clattn_plan_execute(plan, pr[i].q, pr[i].k, pr[i].v, pr[i].o, pr[i].lse, 0, NULL, &ev[i]),
        CLATTN_SUCCESS);
  assert_int_equal(clWaitForEvents(2, ev), CL_SUCCESS);
  for (int i = 0; i < 2; i++) {
    clReleaseEvent(ev[i]);
    assert_int_equal(tu_problem_compare(&pr[i], clattn_plan_describe(plan), &rep), 0);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    tu_problem_free(&pr[i]);
  }
  clattn_plan_release(plan);
  clattn_context_release(qctx);
  clReleaseCommandQueue(queue);
}
#endif

int main(int argc, char **argv) {
  /* The configuration must come from the library, not the environment. */
  unsetenv("CLATTN_TUNE_OVERRIDE");
  unsetenv("CLATTN_KV_COPY_MAX");
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_seq_square),
    cmocka_unit_test(test_seq_rect),
    cmocka_unit_test(test_fully_masked_rows),
    cmocka_unit_test(test_head_dims),
    cmocka_unit_test(test_gqa),
    cmocka_unit_test(test_layout_bshd),
    cmocka_unit_test(test_layout_strided),
    cmocka_unit_test(test_layout_dim_stride),
    cmocka_unit_test(test_without_lse),
    cmocka_unit_test(test_extreme_scores),
    cmocka_unit_test(test_explicit_scale),
    cmocka_unit_test(test_very_negative_scores),
    cmocka_unit_test(test_nan_rows),
    cmocka_unit_test(test_16bit_storage),
#if IS_NAIVE
    cmocka_unit_test(test_naive_16bit),
    cmocka_unit_test(test_naive_16bit_rounding),
    cmocka_unit_test(test_naive_out_of_order),
#endif
#if IS_FLASH
    cmocka_unit_test(test_flash_configs),
    cmocka_unit_test(test_f32_tensor_cores),
    cmocka_unit_test(test_q_in_local_memory),
      cmocka_unit_test(test_warpgroup_mma),
    cmocka_unit_test(test_rows_kv_copy),
    cmocka_unit_test(test_rows_kv_copy_out_of_order),
#endif
  };
  return cmocka_run_group_tests_name("clattn " FAMILY, tests, tu_group_setup, tu_group_teardown);
}
