/* test_linear.c — linear attention vs its float64 reference, chunking, FAVOR+, numerical safety. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Tolerance (f32 storage): ‖out − ref‖₂/‖ref‖₂ ≤ LIN_REL_TOL against
 * clattn_reference_linear (float64, naive quadratic form with the same
 * features). The device sums F×(d+1) states over up to 1000 keys in f32 and,
 * for FAVOR+, exponentiates f32 log-features of magnitude up to ~50 with the
 * test inputs (q ~ U[-4, 4), k, v ~ U[-1, 1)), whose rounding (~1e-6
 * relative each) is what the 1e-5 bound covers. Every output element must be
 * written (o is NaN-poisoned), finite, rows whose reference is exactly zero
 * (no visible key, all-zero relu features) must be exactly zero, and strided
 * padding must stay poisoned.
 *
 * Inputs are fresh per case, seeded from the case label (printed with the
 * seed on failure; $CLATTN_TEST_SEED changes the base seed).
 *
 * f16 / bf16 storage (test_half): the inputs are rounded to the storage type
 * and the reference computed from the rounded values (as stored); the
 * device accumulates in f32 and rounds the output once, so the flash tests'
 * per-dtype bounds apply (tu_rel_tol: 1e-3 for f16, 1e-2 for bf16).
 *
 * Run time: every distinct (dtype, head_dim, features, map, causal, tiling,
 * vector access) builds one program (about a second on PoCL); the cases
 * share programs (about 40 in all): about 50 s from cold caches on a 2-core
 * PoCL CPU (test_half about 9 s of it), a few seconds warm. The chunk and split sizes and tilings
 * are forced through clattn_plan_create_with_config (and
 * clattn_plan_create_with_config in test_api).
 * The whole file also passes on an NVIDIA H200 (CLATTN_DEVICE=nvidia), whose
 * built-in configurations differ from the CPU's.
 */

#define LIN_REL_TOL 1e-5

typedef struct lin_case {
  int batch, heads, kv_heads, seq_q, seq_kv, head_dim;
  int layout; /* 0 BHSD, 1 BSHD, 2 padded strides */
  int num_features;
} lin_case;

static const char *map_tag(clattn_feature_map m) {
  return m == CLATTN_FEATURE_ELU1 ? "elu1" : m == CLATTN_FEATURE_RELU ? "relu" : "favor";
}

static clattn_attention_desc make_desc(const lin_case *c, clattn_feature_map map, int causal) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = c->batch;
  d.heads = c->heads;
  d.kv_heads = c->kv_heads;
  d.seq_q = c->seq_q;
  d.seq_kv = c->seq_kv;
  d.head_dim = c->head_dim;
  d.mask = causal ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
  d.algo = CLATTN_ALGO_LINEAR;
  d.feature_map = map;
  d.num_features = map == CLATTN_FEATURE_FAVOR ? c->num_features : 0;
  d.feature_seed = 0x1234;
  if (c->layout == 1) d.layout = CLATTN_LAYOUT_BSHD;
  if (c->layout == 2) tu_set_padded_strides(&d, 3, 5, 0);
  return d;
}

/* Result of one run, outputs gathered in BHSD order. */
typedef struct lin_run {
  double rel;           /* vs the linear reference (when compared) */
  size_t nonfinite;     /* output elements NaN/Inf (poison included) */
  size_t zero_rows_bad; /* elements of exactly-zero reference rows that are not 0 */
  size_t pad_clobbered; /* padding elements of o written */
  double max_abs_out;   /* max |o| */
  double max_abs_v;     /* max |v| */
  float *out;           /* B·H·Nq·d (caller frees) */
  double *ref;          /* B·H·Nq·d when compared (caller frees) */
  uint64_t seed;
  char describe[512];
  char error[2200];
} lin_run;

static void lin_run_free(lin_run *r) {
  free(r->out);
  free(r->ref);
  r->out = NULL;
  r->ref = NULL;
}

static int64_t off4(const clattn_strides *s, int64_t b, int64_t h, int64_t i, int64_t x) {
  return b * s->batch + h * s->head + i * s->seq + x * s->dim;
}

/* Scales the logical elements of a host tensor and rewrites its buffer
 * (f32 problems only). */
static int rescale(tu_problem *p, float *host, cl_mem buf, size_t n, double amp) {
  if (p->desc.dtype != CLATTN_DTYPE_F32) return -1;
  for (size_t i = 0; i < n; i++)
    if (!isnan(host[i])) host[i] = (float)(host[i] * amp);
  return clEnqueueWriteBuffer(clattn_context_queue(p->ctx), buf, CL_TRUE, 0, n * sizeof(float),
                              host, 0, NULL, NULL) == CL_SUCCESS
             ? 0
             : -1;
}

/* Runs one problem with fresh inputs (q scaled by qamp, k by kamp); with
 * `compare`, against clattn_reference_linear on the plan's descriptor.
 * `override`: a forced (partial) configuration of the linear variants
 * (clattn_plan_create_with_config; NULL: none).
 * `zero_q_rows`: rows i with i % zero_q_rows == 1 get q ≤ 0 (relu: all-zero
 * features); 0 for none. Returns 0, or -1 with r->error set. */
static int run_linear(clattn_context ctx, const clattn_attention_desc *d, const char *label,
                      const char *override, double qamp, double kamp, int zero_q_rows, int compare,
                      lin_run *r) {
  memset(r, 0, sizeof *r);
  tu_problem p;
  tu_report rep;
  clattn_plan plan = NULL;
  float *ho = NULL;
  void *raw = NULL;
  int ret = -1;
  if (tu_problem_init(&p, ctx, d, TU_INPUT_UNIFORM, 0, label, &rep)) {
    snprintf(r->error, sizeof r->error, "problem init: %s", rep.summary);
    tu_problem_free(&p);
    return -1;
  }
  r->seed = p.seed;
  const int B = d->batch, H = d->heads, Nq = d->seq_q, D = d->head_dim;
  const int Hk = d->kv_heads ? d->kv_heads : d->heads;
  if (zero_q_rows > 0) {
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 1; i < Nq; i += zero_q_rows)
          for (int x = 0; x < D; x++) {
            float *e = &p.hq[off4(&p.qs, b, h, i, x)];
            *e = -fabsf(*e);
          }
  }
  if ((qamp != 1.0 || zero_q_rows) && rescale(&p, p.hq, p.q, p.elems[0], qamp)) goto io_fail;
  if (kamp != 1.0 && rescale(&p, p.hk, p.k, p.elems[1], kamp)) goto io_fail;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < Hk; h++)
      for (int j = 0; j < d->seq_kv; j++)
        for (int x = 0; x < D; x++) {
          const double v = fabs(p.hv[off4(&p.vs, b, h, j, x)]);
          if (v > r->max_abs_v) r->max_abs_v = v;
        }

  clattn_status st = clattn_plan_create_with_config(ctx, d, 0, override, &plan);
  if (st != CLATTN_SUCCESS) {
    snprintf(r->error, sizeof r->error, "clattn_plan_create: %s: %s", clattn_status_string(st),
             clattn_context_last_error(ctx));
    goto done;
  }
  snprintf(r->describe, sizeof r->describe, "%s", clattn_plan_describe(plan));
  st = clattn_plan_execute(plan, p.q, p.k, p.v, p.o, NULL, 0, NULL, NULL);
  if (st != CLATTN_SUCCESS) {
    snprintf(r->error, sizeof r->error, "clattn_plan_execute: %s: %s", clattn_status_string(st),
             clattn_context_last_error(ctx));
    goto done;
  }
  ho = malloc(p.elems[3] * sizeof(float));
  raw = malloc((p.elems[3] ? p.elems[3] : 1) * p.esize);
  r->out = malloc((size_t)B * H * Nq * D * sizeof(float));
  if (!ho || !raw || !r->out) goto io_fail;
  if (tu_buffer_read(ctx, p.o, raw, p.elems[3] * p.esize) != CL_SUCCESS) goto io_fail;
  for (size_t e = 0; e < p.elems[3]; e++) { /* as float; 16-bit poison becomes NaN */
    const uint16_t *h16 = raw;
    ho[e] = d->dtype == CLATTN_DTYPE_F16    ? tu_half_to_float(h16[e])
            : d->dtype == CLATTN_DTYPE_BF16 ? tu_bf16_to_float(h16[e])
                                            : ((const float *)raw)[e];
  }
  if (compare) {
    r->ref = malloc((size_t)B * H * Nq * D * sizeof(double));
    if (!r->ref) goto io_fail;
    /* 16-bit storage: the reference reads the inputs as stored. */
    const int f32 = d->dtype == CLATTN_DTYPE_F32;
    st = clattn_reference_linear(clattn_plan_desc(plan), f32 ? (const void *)p.hq : p.sq,
                                 f32 ? (const void *)p.hk : p.sk, f32 ? (const void *)p.hv : p.sv,
                                 NULL, r->ref, NULL, 0);
    if (st != CLATTN_SUCCESS) {
      snprintf(r->error, sizeof r->error, "clattn_reference_linear: %s", clattn_status_string(st));
      goto done;
    }
  }
  unsigned char *touched = calloc(p.elems[3], 1);
  if (!touched) goto io_fail;
  double num = 0.0, den = 0.0;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < Nq; i++) {
        const size_t row = (((size_t)b * H + h) * Nq + i) * D;
        int ref_zero = compare;
        for (int x = 0; x < D && compare; x++)
          ref_zero &= r->ref[row + x] == 0.0;
        for (int x = 0; x < D; x++) {
          const int64_t o = off4(&p.os, b, h, i, x);
          touched[o] = 1;
          const float out = ho[o];
          r->out[row + x] = out;
          if (!isfinite(out)) {
            r->nonfinite++;
            continue;
          }
          if (fabs(out) > r->max_abs_out) r->max_abs_out = fabs(out);
          if (ref_zero && out != 0.0f) r->zero_rows_bad++;
          if (compare) {
            const double e = out - r->ref[row + x];
            num += e * e;
            den += r->ref[row + x] * r->ref[row + x];
          }
        }
      }
  for (size_t e = 0; e < p.elems[3]; e++)
    if (!touched[e] && (d->dtype == CLATTN_DTYPE_F32 ? !tu_is_poison(ho[e]) : !isnan(ho[e])))
      r->pad_clobbered++;
  free(touched);
  r->rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
  ret = 0;
  goto done;
io_fail:
  snprintf(r->error, sizeof r->error, "host allocation or buffer transfer failed");
done:
  free(ho);
  free(raw);
  clattn_plan_release(plan);
  tu_problem_free(&p);
  return ret;
}

/* Runs and checks one case against the reference; fails the test with the
 * label, seed, descriptor and plan on any violation. */
static void check_case(clattn_context ctx, const clattn_attention_desc *d, const char *label,
                       const char *override) {
  lin_run r;
  int rc = run_linear(ctx, d, label, override, 1.0, 1.0, 0, 1, &r);
  char ds[512];
  tu_desc_string(d, ds, sizeof ds);
  const double tol = d->dtype == CLATTN_DTYPE_F32 ? LIN_REL_TOL : tu_rel_tol(d->dtype);
  const int ok =
      rc == 0 && r.rel <= tol && r.nonfinite == 0 && r.zero_rows_bad == 0 && r.pad_clobbered == 0;
  if (!ok || getenv("CLATTN_TEST_VERBOSE"))
    print_message("%s %s: seed 0x%016" PRIx64 " rel %.3g nonfinite %zu zero-row errors %zu "
                  "padding written %zu | %s | %s | override %s %s\n",
                  ok ? "ok" : "FAILED", label, r.seed, r.rel, r.nonfinite, r.zero_rows_bad,
                  r.pad_clobbered, ds, r.describe, override ? override : "-", r.error);
  lin_run_free(&r);
  if (!ok) fail();
}

/* ---- shapes: each map, causal and not ---------------------------------- */

/* Per map, every shape below causal and not. Head dims 16, 40, 64 and 128
 * are all covered; relu shares elu+1's code path but for φ and runs two of
 * them, FAVOR+ three plus m != d (programs are the cost on PoCL). */
static const lin_case elu_cases[] = {
    {1, 1, 1, 1, 1, 16, 0, 0},        /* one query, one key */
    {2, 4, 2, 7, 65, 40, 1, 0},       /* GQA, BSHD, seq_q < seq_kv */
    {1, 2, 1, 257, 257, 64, 0, 0},    /* MQA */
    {1, 3, 3, 65, 257, 64, 2, 0},     /* padded strides */
    {1, 2, 2, 257, 7, 16, 0, 0},      /* seq_q > seq_kv: causal rows without keys */
    {1, 1, 1, 1000, 1000, 128, 1, 0}, /* long, BSHD */
};
static const lin_case relu_cases[] = {
    {1, 1, 1, 1, 1, 40, 0, 0},    {2, 4, 2, 7, 65, 40, 1, 0},  {1, 2, 1, 257, 257, 64, 0, 0},
    {1, 3, 3, 65, 257, 64, 2, 0}, {1, 2, 2, 257, 7, 40, 0, 0}, {1, 1, 1, 1000, 1000, 64, 1, 0},
};
static const lin_case favor_cases[] = {
    {1, 1, 1, 1, 1, 16, 0, 0},      {2, 4, 2, 7, 65, 40, 1, 0},   {1, 2, 1, 257, 257, 64, 0, 0},
    {1, 3, 3, 65, 257, 64, 2, 0},   {1, 2, 2, 257, 7, 16, 0, 0},  {1, 1, 1, 1000, 1000, 64, 1, 0},
    {1, 2, 1, 65, 100, 40, 0, 100}, /* m > d: two orthogonal blocks, the last partial */
    {2, 2, 2, 100, 65, 40, 1, 100}, {1, 2, 1, 100, 130, 4, 0, 3}, /* m < d, fewer features than a
                                                                     vector of work-items */
};

static void run_shapes(clattn_context ctx, clattn_feature_map map, const lin_case *cases,
                       size_t n) {
  for (int causal = 0; causal < 2; causal++)
    for (size_t i = 0; i < n; i++) {
      clattn_attention_desc d = make_desc(&cases[i], map, causal);
      char label[160];
      const lin_case *c = &cases[i];
      snprintf(label, sizeof label, "linear/%s/c%d/B%d-H%d-Hk%d-q%d-k%d-d%d-L%d-m%d", map_tag(map),
               causal, c->batch, c->heads, c->kv_heads, c->seq_q, c->seq_kv, c->head_dim, c->layout,
               c->num_features);
      check_case(ctx, &d, label, NULL);
    }
}

#define RUN_SHAPES(ctx, map, cases) run_shapes((ctx), (map), (cases), sizeof cases / sizeof *cases)
static void test_shapes_elu1(void **state) { RUN_SHAPES(*state, CLATTN_FEATURE_ELU1, elu_cases); }
static void test_shapes_relu(void **state) { RUN_SHAPES(*state, CLATTN_FEATURE_RELU, relu_cases); }
static void test_shapes_favor(void **state) {
  RUN_SHAPES(*state, CLATTN_FEATURE_FAVOR, favor_cases);
}

/* ---- 16-bit storage ------------------------------------------------------- */

/* f16 and bf16 storage for Q, K, V, O with f32 accumulation, every map,
 * causal and not, on shapes that are not tile multiples: vector rows (BSHD,
 * GQA, d = 40), scalar rows (padded strides), seq_q > seq_kv. */
static void test_half(void **state) {
  clattn_context ctx = *state;
  static const struct {
    lin_case c;
    clattn_feature_map map;
    int causal;
  } cases[] = {
      {{2, 4, 2, 65, 100, 40, 1, 0}, CLATTN_FEATURE_ELU1, 0},
      {{2, 4, 2, 65, 100, 40, 1, 0}, CLATTN_FEATURE_ELU1, 1},
      {{1, 3, 3, 65, 257, 64, 2, 100}, CLATTN_FEATURE_FAVOR, 0},
      {{1, 3, 3, 65, 257, 64, 2, 100}, CLATTN_FEATURE_FAVOR, 1},
      {{1, 2, 2, 257, 7, 16, 0, 0}, CLATTN_FEATURE_RELU, 1},
  };
  const clattn_dtype dts[2] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (int t = 0; t < 2; t++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      clattn_attention_desc d = make_desc(&cases[i].c, cases[i].map, cases[i].causal);
      d.dtype = dts[t];
      const lin_case *c = &cases[i].c;
      char label[160];
      snprintf(label, sizeof label, "linear/%s/%s/c%d/q%d-k%d-d%d-L%d", t ? "bf16" : "f16",
               map_tag(cases[i].map), cases[i].causal, c->seq_q, c->seq_kv, c->head_dim, c->layout);
      check_case(ctx, &d, label, NULL);
    }
}

/* ---- causal chunking ------------------------------------------------------ */

/* Causal chunked == the naive causal formula (the reference). Two levels:
 * segments of `split` keys (their states summed by lin_state, prefixed by
 * lin_scan) walked chunk by chunk (`chunk` keys) by lin_causal. Chunk 1 with
 * one chunk per segment (only the prefixes), a middle chunk (13, no tile
 * multiple) with segments of 3 chunks, one segment holding every key (no
 * prefix; the chunk walk alone), and a GPU-like tiling (three column tiles,
 * float4 register groups, 16 work-items), on square and seq_q < seq_kv
 * problems; and a non-causal reduction over many splits. */
static void test_causal_chunks(void **state) {
  clattn_context ctx = *state;
  static const lin_case cases[] = {{1, 2, 1, 257, 257, 40, 0, 0}, {2, 2, 2, 100, 300, 40, 1, 0}};
  static const char *const overrides[] = {
      "chunk=1,split=1", "chunk=13,split=39,bks=1", "split=2000",
      "chunk=16,split=48,bd=16,ctr=4,ctc=4,cfs=8,bks=8,srf=4,src=4"};
  const clattn_feature_map maps[2] = {CLATTN_FEATURE_ELU1, CLATTN_FEATURE_FAVOR};
  for (int m = 0; m < 2; m++)
    for (int o = 0; o < 4; o++)
      for (int i = 0; i < 2; i++) {
        clattn_attention_desc d = make_desc(&cases[i], maps[m], 1);
        char label[160];
        snprintf(label, sizeof label, "linear/chunks/%s/%s/q%d-k%d", map_tag(maps[m]), overrides[o],
                 cases[i].seq_q, cases[i].seq_kv);
        check_case(ctx, &d, label, overrides[o]);
      }
  /* Non-causal: 10 splits; and the apply kernel's pipeline over 3 row
   * blocks per work-group and 5 feature slices with S staged per slice. */
  static const lin_case nc = {2, 2, 1, 100, 300, 40, 0, 0};
  static const char *const nc_overrides[] = {"split=32",
                                             "split=48,bq=8,arq=2,arc=4,afs=8,bpw=3,nosres=1"};
  for (int m = 0; m < 2; m++)
    for (int o = 0; o < 2; o++) {
      clattn_attention_desc d = make_desc(&nc, maps[m], 0);
      char label[128];
      snprintf(label, sizeof label, "linear/chunks/%s/noncausal/%s", map_tag(maps[m]),
               nc_overrides[o]);
      check_case(ctx, &d, label, nc_overrides[o]);
    }
}

/* ---- FAVOR+ features -------------------------------------------------------- */

static void test_favor_generator(void **state) {
  (void)state;
  const int d = 40, m = 100;
  float *a = malloc((size_t)m * d * sizeof(float)), *b = malloc((size_t)m * d * sizeof(float));
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(clattn_favor_features(d, m, 99, a), CLATTN_SUCCESS);
  assert_int_equal(clattn_favor_features(d, m, 99, b), CLATTN_SUCCESS);
  assert_memory_equal(a, b, (size_t)m * d * sizeof(float));
  assert_int_equal(clattn_favor_features(d, m, 100, b), CLATTN_SUCCESS);
  assert_true(memcmp(a, b, (size_t)m * d * sizeof(float)) != 0);
  /* Rows of one block are orthogonal; lengths vary (chi(d)) around √d. */
  double lmin = 1e30, lmax = 0.0, lsum = 0.0;
  for (int i = 0; i < m; i++) {
    double li = 0.0;
    for (int x = 0; x < d; x++)
      li += (double)a[i * d + x] * a[i * d + x];
    li = sqrt(li);
    lmin = fmin(lmin, li);
    lmax = fmax(lmax, li);
    lsum += li;
    for (int j = (i / d) * d; j < i; j++) {
      double dot = 0.0, lj = 0.0;
      for (int x = 0; x < d; x++) {
        dot += (double)a[i * d + x] * a[j * d + x];
        lj += (double)a[j * d + x] * a[j * d + x];
      }
      assert_true(fabs(dot) <= 1e-5 * li * sqrt(lj));
    }
  }
  assert_true(lmax > lmin * 1.1);
  assert_true(fabs(lsum / m - sqrt((double)d)) < 0.15 * sqrt((double)d));
  assert_int_equal(clattn_favor_features(0, m, 1, a), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_favor_features(d, 257, 1, a), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_favor_features(d, m, 1, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  free(a);
  free(b);
}

/* Same seed → bit-identical output (also across plans and repeated
 * executes: the reductions have a fixed order); another seed differs; a
 * redraw to that seed reproduces it bit for bit; the reference with explicit
 * features equals the one drawing them from the seed. */
static void test_favor_determinism(void **state) {
  clattn_context ctx = *state;
  static const lin_case c = {2, 2, 1, 300, 300, 40, 0, 100};
  for (int causal = 0; causal < 2; causal++) {
    clattn_attention_desc d = make_desc(&c, CLATTN_FEATURE_FAVOR, causal);
    tu_problem p;
    tu_report rep;
    char label[64];
    snprintf(label, sizeof label, "linear/favor/determinism/c%d", causal);
    assert_int_equal(tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 0, label, &rep), 0);
    const size_t n = p.elems[3];
    float *o[5];
    clattn_plan plan[3];
    d.feature_seed = 7;
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan[0]), CLATTN_SUCCESS);
    assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_LAZY_WORKSPACE, &plan[1]),
                     CLATTN_SUCCESS);
    d.feature_seed = 8;
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan[2]), CLATTN_SUCCESS);
    const int order[5] = {0, 0, 1, 2, 0}; /* the last run after plan 0's redraw */
    for (int r = 0; r < 5; r++) {
      if (r == 4) {
        assert_int_equal(clattn_plan_redraw_features(plan[0], 8), CLATTN_SUCCESS);
        assert_true(clattn_plan_desc(plan[0])->feature_seed == 8);
      }
      assert_int_equal(tu_problem_poison(&p), 0);
      assert_int_equal(clattn_plan_execute(plan[order[r]], p.q, p.k, p.v, p.o, NULL, 0, NULL, NULL),
                       CLATTN_SUCCESS);
      o[r] = malloc(n * sizeof(float));
      assert_non_null(o[r]);
      assert_int_equal(tu_buffer_read(ctx, p.o, o[r], n * sizeof(float)), CL_SUCCESS);
    }
    assert_memory_equal(o[0], o[1], n * sizeof(float));      /* repeated execute */
    assert_memory_equal(o[0], o[2], n * sizeof(float));      /* another plan, same seed */
    assert_true(memcmp(o[0], o[3], n * sizeof(float)) != 0); /* another seed */
    assert_memory_equal(o[3], o[4], n * sizeof(float));      /* redraw */
    /* Reference: explicit features == drawn from the seed. */
    const size_t nref = (size_t)d.batch * d.heads * d.seq_q * d.head_dim;
    double *r1 = malloc(nref * sizeof(double)), *r2 = malloc(nref * sizeof(double));
    float *w = malloc((size_t)100 * 40 * sizeof(float));
    assert_non_null(r1);
    assert_non_null(r2);
    assert_non_null(w);
    assert_int_equal(clattn_favor_features(40, 100, 8, w), CLATTN_SUCCESS);
    assert_int_equal(clattn_reference_linear(&d, p.hq, p.hk, p.hv, w, r1, NULL, 0), CLATTN_SUCCESS);
    assert_int_equal(
        clattn_reference_linear(clattn_plan_desc(plan[0]), p.hq, p.hk, p.hv, NULL, r2, NULL, 0),
        CLATTN_SUCCESS);
    assert_memory_equal(r1, r2, nref * sizeof(double));
    /* A subset of rows gives the same values on those rows. */
    int rows[3] = {0, 150, 299};
    double *r3 = malloc(nref * sizeof(double));
    assert_non_null(r3);
    for (size_t i = 0; i < nref; i++)
      r3[i] = NAN;
    assert_int_equal(clattn_reference_linear(&d, p.hq, p.hk, p.hv, NULL, r3, rows, 3),
                     CLATTN_SUCCESS);
    for (int b = 0; b < d.batch * d.heads; b++)
      for (int k = 0; k < 3; k++)
        assert_memory_equal(r3 + ((size_t)b * d.seq_q + rows[k]) * d.head_dim,
                            r1 + ((size_t)b * d.seq_q + rows[k]) * d.head_dim,
                            (size_t)d.head_dim * sizeof(double));
    free(r1);
    free(r2);
    free(r3);
    free(w);
    for (int r = 0; r < 5; r++)
      free(o[r]);
    for (int i = 0; i < 3; i++)
      clattn_plan_release(plan[i]);
    tu_problem_free(&p);
  }
}

/* FAVOR+ approximates softmax attention better as m grows. Inputs of
 * moderate norm (q, k ~ U[-0.5, 0.5), d = 16, default scale 1/4: ‖q'‖² ≈
 * 0.33), N = 128, non-causal (the features are the same under the causal
 * mask); error ‖o_favor − o_softmax‖/‖o_softmax‖ and the mean cosine
 * similarity of output rows, averaged over 4 seeds per m. The estimator is
 * unbiased with variance ∝ 1/m, so the error should fall like 1/√m (measured
 * with the float64 reference over 16 seeds: 0.19, 0.095, 0.046 for m = 16,
 * 64, 256). Margins: m = 64 below m = 16, m = 256 below half of m = 16, and
 * the cosine similarity rising. */
static void test_favor_approximation(void **state) {
  clattn_context ctx = *state;
  static const lin_case c = {1, 2, 2, 128, 128, 16, 0, 0};
  const int ms[3] = {16, 64, 256};
  const int nseeds = 4;
  double err[3] = {0, 0, 0}, cosv[3] = {0, 0, 0};
  for (int mi = 0; mi < 3; mi++) {
    clattn_attention_desc d = make_desc(&c, CLATTN_FEATURE_FAVOR, 0);
    d.num_features = ms[mi];
    tu_problem p;
    tu_report rep;
    assert_int_equal(tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 0, "linear/favor/approx", &rep),
                     0);
    assert_int_equal(rescale(&p, p.hq, p.q, p.elems[0], 0.125), 0); /* q ~ U[-0.5, 0.5) */
    assert_int_equal(rescale(&p, p.hk, p.k, p.elems[1], 0.5), 0);   /* k ~ U[-0.5, 0.5) */
    const size_t n = p.elems[3], nref = (size_t)d.batch * d.heads * d.seq_q * d.head_dim;
    double *ref = malloc(nref * sizeof(double));
    float *o = malloc(n * sizeof(float));
    assert_non_null(ref);
    assert_non_null(o);
    clattn_attention_desc sd = d;
    sd.algo = CLATTN_ALGO_FLASH;
    assert_int_equal(clattn_reference_attention(&sd, p.hq, p.hk, p.hv, ref, NULL, NULL, 0),
                     CLATTN_SUCCESS);
    clattn_plan plan;
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
    for (int s = 0; s < nseeds; s++) {
      assert_int_equal(clattn_plan_redraw_features(plan, 1000 + (uint64_t)s), CLATTN_SUCCESS);
      assert_int_equal(tu_problem_poison(&p), 0);
      assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, NULL, 0, NULL, NULL),
                       CLATTN_SUCCESS);
      assert_int_equal(tu_buffer_read(ctx, p.o, o, n * sizeof(float)), CL_SUCCESS);
      double num = 0.0, den = 0.0, cs = 0.0;
      const size_t rows = nref / (size_t)d.head_dim;
      for (size_t r = 0; r < rows; r++) {
        double xy = 0.0, xx = 0.0, yy = 0.0;
        for (int x = 0; x < d.head_dim; x++) {
          const double a = o[r * d.head_dim + x], b = ref[r * d.head_dim + x];
          assert_true(isfinite(a));
          num += (a - b) * (a - b);
          den += b * b;
          xy += a * b;
          xx += a * a;
          yy += b * b;
        }
        cs += xy / sqrt(xx * yy);
      }
      err[mi] += sqrt(num / den) / nseeds;
      cosv[mi] += cs / (double)rows / nseeds;
    }
    clattn_plan_release(plan);
    free(ref);
    free(o);
    tu_problem_free(&p);
  }
  print_message("FAVOR+ vs softmax (d 16, N 128, %d seeds): rel. error m=16 %.4f, m=64 %.4f, "
                "m=256 %.4f; mean cosine %.4f, %.4f, %.4f\n",
                nseeds, err[0], err[1], err[2], cosv[0], cosv[1], cosv[2]);
  assert_true(err[1] < err[0]);
  assert_true(err[2] < 0.5 * err[0]);
  assert_true(cosv[2] > cosv[0]);
}

/* ---- numerical safety --------------------------------------------------------- */

/* Large-norm q and k (×30 and ×10: |q'| up to ~40): no Inf/NaN, every output
 * row a convex combination of v rows (|o| ≤ max|v|); elu+1 and relu are
 * still checked against the reference. FAVOR+ loses accuracy there (f32
 * features underflow against the stabilisers, as in any f32 Performer) and is
 * only held to safety. */
static void test_large_norms(void **state) {
  clattn_context ctx = *state;
  static const lin_case c = {1, 2, 1, 257, 300, 64, 0, 0};
  const clattn_feature_map maps[3] = {CLATTN_FEATURE_ELU1, CLATTN_FEATURE_RELU,
                                      CLATTN_FEATURE_FAVOR};
  for (int m = 0; m < 3; m++)
    for (int causal = 0; causal < 2; causal++) {
      clattn_attention_desc d = make_desc(&c, maps[m], causal);
      char label[96];
      snprintf(label, sizeof label, "linear/large/%s/c%d", map_tag(maps[m]), causal);
      lin_run r;
      int rc = run_linear(ctx, &d, label, NULL, 30.0, 10.0, 0, 1, &r);
      const int exact = maps[m] != CLATTN_FEATURE_FAVOR;
      const int ok = rc == 0 && r.nonfinite == 0 && r.max_abs_out <= r.max_abs_v * (1 + 1e-5) &&
                     (!exact || r.rel <= LIN_REL_TOL);
      if (!ok || getenv("CLATTN_TEST_VERBOSE"))
        print_message("%s %s: seed 0x%016" PRIx64 " rel %.3g nonfinite %zu max|o| %.4g max|v| "
                      "%.4g | %s %s\n",
                      ok ? "ok" : "FAILED", label, r.seed, r.rel, r.nonfinite, r.max_abs_out,
                      r.max_abs_v, r.describe, r.error);
      lin_run_free(&r);
      if (!ok) fail();
    }
}

/* relu rows whose features are all zero give zero rows (not NaN). */
static void test_zero_denominator(void **state) {
  clattn_context ctx = *state;
  static const lin_case c = {1, 2, 2, 65, 65, 40, 0, 0};
  for (int causal = 0; causal < 2; causal++) {
    clattn_attention_desc d = make_desc(&c, CLATTN_FEATURE_RELU, causal);
    char label[64];
    snprintf(label, sizeof label, "linear/relu-zero/c%d", causal);
    lin_run r;
    int rc = run_linear(ctx, &d, label, NULL, 1.0, 1.0, 3, 1, &r);
    size_t zero_rows = 0;
    for (int row = 0; rc == 0 && row < d.heads * d.seq_q; row++) {
      int all = 1;
      for (int x = 0; x < d.head_dim; x++)
        all &= r.ref[(size_t)row * d.head_dim + x] == 0.0;
      zero_rows += (size_t)all;
    }
    const int ok = rc == 0 && r.nonfinite == 0 && r.zero_rows_bad == 0 && zero_rows >= 40 &&
                   r.rel <= LIN_REL_TOL;
    if (!ok)
      print_message("FAILED %s: seed 0x%016" PRIx64 " zero rows %zu bad %zu nonfinite %zu rel "
                    "%.3g %s\n",
                    label, r.seed, zero_rows, r.zero_rows_bad, r.nonfinite, r.rel, r.error);
    lin_run_free(&r);
    if (!ok) fail();
  }
}

/* ---- API ------------------------------------------------------------------------ */

static void test_api(void **state) {
  clattn_context ctx = *state;
  static const lin_case c = {2, 4, 2, 65, 100, 40, 0, 0};
  clattn_attention_desc d = make_desc(&c, CLATTN_FEATURE_ELU1, 0);
  clattn_plan plan = NULL;

  clattn_attention_desc bad = d;
  bad.feature_map = CLATTN_FEATURE_FAVOR;
  bad.num_features = 257;
  assert_int_equal(clattn_plan_create(ctx, &bad, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "num_features"));
  bad = d;
  bad.num_features = 7; /* elu+1 has head_dim features */
  assert_int_equal(clattn_plan_create(ctx, &bad, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "num_features"));
  bad = d;
  bad.feature_map = (clattn_feature_map)9;
  assert_int_equal(clattn_plan_create(ctx, &bad, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "feature_map"));
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "chunk=banana", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "chunk"));
  /* bd not a multiple of src; splits past int (issue 13.2). */
  static const char *const bad_cfg[] = {"bd=12,src=8", "split=2147483647", "split=99999999999",
                                        "linear:chunk=0"};
  for (int i = 0; i < 4; i++)
    assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, bad_cfg[i], &plan),
                     CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  /* Tensor cores: naming linear_tc requires them (NVIDIA sm_80+; PoCL has
   * none, and says so), naming linear never uses them. */
  const clattn_status tc2 = clattn_plan_create_with_config(ctx, &d, 0, "linear_tc:", &plan);
  if (tc2 == CLATTN_SUCCESS) {
    assert_non_null(strstr(clattn_plan_describe(plan), "tensor cores"));
    clattn_plan_release(plan);
    plan = NULL;
  } else {
    assert_int_equal(tc2, CLATTN_ERROR_UNSUPPORTED);
    assert_non_null(strstr(clattn_context_last_error(ctx), "does not apply"));
  }
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "linear:", &plan), CLATTN_SUCCESS);
  assert_null(strstr(clattn_plan_describe(plan), "tensor cores"));
  clattn_plan_release(plan);
  plan = NULL;
  /* The portable opt-out does the same. */
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_PORTABLE, &plan), CLATTN_SUCCESS);
  assert_null(strstr(clattn_plan_describe(plan), "tensor cores"));
  clattn_plan_release(plan);
  plan = NULL;

  /* Workspace (causal, segments of 32 keys: 4 of them, chunks of 16, one
   * column block): B·Hk·segments·F·(d+1) floats of segment states and
   * B·H·segments·F·(bd+1) of running states. */
  d.mask = CLATTN_MASK_CAUSAL;
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, CLATTN_PLAN_LAZY_WORKSPACE,
                                                  "linear:chunk=16,split=32,bd=40", &plan),
                   CLATTN_SUCCESS);
  assert_true(clattn_plan_workspace_size(plan) ==
              ((size_t)2 * 2 * 4 * 40 * 41 + (size_t)2 * 4 * 4 * 40 * 41) * sizeof(float));
  assert_non_null(strstr(clattn_plan_describe(plan), "linear elu+1"));
  assert_int_equal(clattn_plan_desc(plan)->num_features, 40);
  assert_int_equal(clattn_plan_redraw_features(plan, 3), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_plan_redraw_features(NULL, 3), CLATTN_ERROR_INVALID_ARGUMENT);

  tu_problem p;
  tu_report rep;
  assert_int_equal(tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 1, "linear/api", &rep), 0);
  /* No log-sum-exp for linear attention. */
  assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, p.lse, 0, NULL, NULL),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(ctx), "lse"));
  /* The lazy workspace is allocated by the first execute; an event comes back. */
  cl_event ev = NULL;
  assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, NULL, 0, NULL, &ev),
                   CLATTN_SUCCESS);
  assert_non_null(ev);
  assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
  clReleaseEvent(ev);
  clattn_plan_release(plan);
  tu_problem_free(&p);

  /* A forced configuration through the public API (the linear syntax). */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "chunk=16,bq=8,arq=8", &plan),
                   CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "chunk=16"));
  assert_non_null(strstr(clattn_plan_describe(plan), "override"));
  clattn_plan_release(plan);
  plan = NULL;
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "bm=64,bn=32", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "config"));

  /* Sparse masks are not defined for linear attention. */
  bad = d;
  bad.mask = CLATTN_MASK_WINDOW;
  bad.sparse.window_left = 4;
  assert_true(clattn_plan_create(ctx, &bad, 0, &plan) != CLATTN_SUCCESS);
  assert_null(plan);

  /* Reference argument checks. */
  float x = 0.0f;
  double y = 0.0;
  assert_int_equal(clattn_reference_linear(NULL, &x, &x, &x, NULL, &y, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  bad = d;
  bad.num_features = 3;
  assert_int_equal(clattn_reference_linear(&bad, &x, &x, &x, NULL, &y, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  clattn_attention_desc one;
  clattn_attention_desc_init(&one);
  one.head_dim = 1;
  one.algo = CLATTN_ALGO_LINEAR;
  int row = 1; /* out of range */
  assert_int_equal(clattn_reference_linear(&one, &x, &x, &x, NULL, &y, &row, 1),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_reference_linear(&one, &x, &x, &x, NULL, &y, NULL, 0), CLATTN_SUCCESS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api),
      cmocka_unit_test(test_shapes_elu1),
      cmocka_unit_test(test_shapes_relu),
      cmocka_unit_test(test_shapes_favor),
      cmocka_unit_test(test_half),
      cmocka_unit_test(test_causal_chunks),
      cmocka_unit_test(test_favor_generator),
      cmocka_unit_test(test_favor_determinism),
      cmocka_unit_test(test_favor_approximation),
      cmocka_unit_test(test_large_norms),
      cmocka_unit_test(test_zero_denominator),
  };
  return cmocka_run_group_tests_name("clattn linear", tests, tu_group_setup, tu_group_teardown);
}
