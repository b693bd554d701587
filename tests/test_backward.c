/* test_backward.c — the attention backward pass against the float64 reference, the reference by
 * finite differences, determinism, masked rows, extreme scores, NaN. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Tolerances (relative L2 norm of each gradient, ‖g − ref‖₂ / ‖ref‖₂, against
 * clattn_reference_attention_backward on the inputs as stored): f32 1e-4
 * (the backward sums Nq or Nk products of recomputed probabilities, and
 * dS = P∘(dP − D) cancels), f16 5e-3, bf16 3e-2 (the forward's O is rounded
 * to 16 bits before D = rowsum(dO∘O) and the gradients are rounded on store).
 * The reference itself is checked by central finite differences of
 * L = Σ dO∘O computed with clattn_reference_attention (1e-5 relative to the
 * largest gradient entry, steps of 1e-3 with the perturbed values taken as
 * stored in float).
 *
 * Every case draws fresh inputs from its label's seed (printed on failure)
 * and NaN-poisons dq, dk and dv, so an element the kernels skip fails.
 */

static double rel_tol(clattn_dtype t) {
  return t == CLATTN_DTYPE_F32 ? 1e-4 : t == CLATTN_DTYPE_F16 ? 5e-3 : 3e-2;
}

/* Host arrays of one tensor: floats (the values as stored) and, for 16-bit
 * dtypes, the storage. */
typedef struct tensor {
  size_t n;
  float *f;
  uint16_t *h;
} tensor;

static void tensor_fill(tensor *t, size_t n, clattn_dtype dt, tu_rng *r, double lo, double hi) {
  t->n = n;
  t->f = malloc(n * sizeof *t->f);
  t->h = dt == CLATTN_DTYPE_F32 ? NULL : malloc(n * sizeof *t->h);
  assert_non_null(t->f);
  for (size_t i = 0; i < n; i++) {
    float x = (float)tu_rng_uniform(r, lo, hi);
    if (dt == CLATTN_DTYPE_F16) {
      t->h[i] = tu_float_to_half(x);
      x = tu_half_to_float(t->h[i]);
    } else if (dt == CLATTN_DTYPE_BF16) {
      t->h[i] = tu_float_to_bf16(x);
      x = tu_bf16_to_float(t->h[i]);
    }
    t->f[i] = x;
  }
}

static const void *tensor_data(const tensor *t) { return t->h ? (const void *)t->h : t->f; }
static void tensor_set(tensor *t, clattn_dtype dt, size_t i, float x) {
  if (dt == CLATTN_DTYPE_F16) {
    t->h[i] = tu_float_to_half(x);
    x = tu_half_to_float(t->h[i]);
  } else if (dt == CLATTN_DTYPE_BF16) {
    t->h[i] = tu_float_to_bf16(x);
    x = tu_bf16_to_float(t->h[i]);
  }
  t->f[i] = x;
}
static void tensor_free(tensor *t) {
  free(t->f);
  free(t->h);
}

static double elem_of(const void *host, clattn_dtype dt, size_t i) {
  if (dt == CLATTN_DTYPE_F32) return ((const float *)host)[i];
  const uint16_t u = ((const uint16_t *)host)[i];
  return dt == CLATTN_DTYPE_F16 ? tu_half_to_float(u) : tu_bf16_to_float(u);
}

/* Results of one device run: the gradients read back in the storage type. */
typedef struct run_out {
  void *g[3]; /* dq, dk, dv as stored, elems[0..2] elements each */
  char describe[1100];
} run_out;

typedef struct problem {
  clattn_attention_desc d;
  clattn_strides st[4];
  size_t elems[4];
  size_t es;
  tensor q, k, v, dout;
  char label[256];
  uint64_t seed;
} problem;

static void problem_init(problem *p, const clattn_attention_desc *d, const char *label, double qlo,
                         double qhi) {
  memset(p, 0, sizeof *p);
  p->d = *d;
  snprintf(p->label, sizeof p->label, "%s", label);
  assert_int_equal(
      clattn_attention_desc_strides(d, &p->st[0], &p->st[1], &p->st[2], &p->st[3], p->elems),
      CLATTN_SUCCESS);
  p->es = d->dtype == CLATTN_DTYPE_F32 ? 4 : 2;
  p->seed = tu_case_seed(label);
  tu_rng r;
  tu_rng_init(&r, p->seed);
  tensor_fill(&p->q, p->elems[0], d->dtype, &r, qlo, qhi);
  tensor_fill(&p->k, p->elems[1], d->dtype, &r, -1.0, 1.0);
  tensor_fill(&p->v, p->elems[2], d->dtype, &r, -1.0, 1.0);
  tensor_fill(&p->dout, p->elems[3], d->dtype, &r, -1.0, 1.0);
}

static void problem_free(problem *p) {
  tensor_free(&p->q);
  tensor_free(&p->k);
  tensor_free(&p->v);
  tensor_free(&p->dout);
}

/* Forward (with LSE) and backward on the device; fails the test on an error. */
/* The C twins of a descriptor's mask_mod and the host copy of its bias
 * tensor (g_bias_bytes bytes; test_mask_mod, test_bias), else NULL. */
static const clattn_reference_fns *g_fns;
static size_t g_bias_bytes;

static void run_device(clattn_context ctx, problem *p, unsigned flags, run_out *out) {
  const clattn_attention_desc *d = &p->d;
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create(ctx, d, flags, &plan);
  if (st != CLATTN_SUCCESS) fail_msg("%s: plan: %s", p->label, clattn_context_last_error(ctx));
  const size_t nlse = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q;
  cl_mem q = tu_buffer_from_host(ctx, tensor_data(&p->q), p->elems[0] * p->es);
  cl_mem k = tu_buffer_from_host(ctx, tensor_data(&p->k), p->elems[1] * p->es);
  cl_mem v = tu_buffer_from_host(ctx, tensor_data(&p->v), p->elems[2] * p->es);
  cl_mem dout = tu_buffer_from_host(ctx, tensor_data(&p->dout), p->elems[3] * p->es);
  cl_mem o = tu_buffer_nan(ctx, (p->elems[3] * p->es + 3) / 4);
  cl_mem lse = tu_buffer_nan(ctx, nlse);
  cl_mem g[3];
  for (int i = 0; i < 3; i++)
    g[i] = tu_buffer_nan(ctx, (p->elems[i] * p->es + 3) / 4);
  assert_true(q && k && v && dout && o && lse && g[0] && g[1] && g[2]);
  /* a bias tensor goes through the _ex entry points, forward and backward */
  cl_mem mb = d->bias_type != CLATTN_BIAS_NONE
                  ? tu_buffer_from_host(ctx, g_fns->bias, g_bias_bytes)
                  : NULL;
  clattn_exec_args a = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .bias = mb};
  st = clattn_plan_execute_ex(plan, &a, 0, NULL, NULL);
  if (st != CLATTN_SUCCESS) fail_msg("%s: forward: %s", p->label, clattn_context_last_error(ctx));
  cl_event ev = NULL;
  st = clattn_plan_execute_backward_ex(plan, &a, dout, g[0], g[1], g[2], 0, NULL, &ev);
  if (st != CLATTN_SUCCESS) fail_msg("%s: backward: %s", p->label, clattn_context_last_error(ctx));
  assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
  clReleaseEvent(ev);
  snprintf(out->describe, sizeof out->describe, "%s", clattn_plan_describe(plan));
  for (int i = 0; i < 3; i++) {
    out->g[i] = malloc(p->elems[i] * p->es + 4);
    assert_non_null(out->g[i]);
    assert_int_equal(tu_buffer_read(ctx, g[i], out->g[i], p->elems[i] * p->es), CL_SUCCESS);
  }
  cl_mem all[] = {q, k, v, dout, o, lse, g[0], g[1], g[2]};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    clReleaseMemObject(all[i]);
  if (mb) clReleaseMemObject(mb);
  clattn_plan_release(plan);
}

static void run_out_free(run_out *o) {
  for (int i = 0; i < 3; i++)
    free(o->g[i]);
}

/* Reads gradient t (0 dq, 1 dk, 2 dv) of the device run in BHSD order. */
static double dev_grad(const problem *p, const run_out *o, int t, int b, int h, int s, int x) {
  const clattn_strides *st = &p->st[t];
  const size_t i = (size_t)(b * st->batch + h * st->head + s * st->seq + x * st->dim);
  return elem_of(o->g[t], p->d.dtype, i);
}

typedef struct grad_err {
  double rel[3];
  size_t nonfinite;
} grad_err;

static void reference(const problem *p, double *ref[3]) {
  const clattn_attention_desc *d = &p->d;
  const int kvh = d->kv_heads ? d->kv_heads : d->heads;
  const size_t nq = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q * (size_t)d->head_dim;
  const size_t nk = (size_t)d->batch * (size_t)kvh * (size_t)d->seq_kv * (size_t)d->head_dim;
  ref[0] = malloc(nq * sizeof(double));
  ref[1] = malloc(nk * sizeof(double));
  ref[2] = malloc(nk * sizeof(double));
  assert_true(ref[0] && ref[1] && ref[2]);
  assert_int_equal(clattn_reference_attention_backward_ex(
                       d, tensor_data(&p->q), tensor_data(&p->k), tensor_data(&p->v),
                       tensor_data(&p->dout), ref[0], ref[1], ref[2], g_fns),
                   CLATTN_SUCCESS);
}

/* Device gradients against the float64 reference: relative L2 error per
 * gradient and the count of non-finite device values. */
static grad_err compare(const problem *p, const run_out *o) {
  double *ref[3];
  reference(p, ref);
  const clattn_attention_desc *d = &p->d;
  const int kvh = d->kv_heads ? d->kv_heads : d->heads;
  const int hs[3] = {d->heads, kvh, kvh}, ns[3] = {d->seq_q, d->seq_kv, d->seq_kv};
  grad_err e = {{0, 0, 0}, 0};
  for (int t = 0; t < 3; t++) {
    double num = 0, den = 0;
    size_t idx = 0;
    for (int b = 0; b < d->batch; b++)
      for (int h = 0; h < hs[t]; h++)
        for (int s = 0; s < ns[t]; s++)
          for (int x = 0; x < d->head_dim; x++, idx++) {
            const double g = dev_grad(p, o, t, b, h, s, x), r = ref[t][idx];
            if (!isfinite(g)) e.nonfinite++;
            num += (g - r) * (g - r);
            den += r * r;
          }
    e.rel[t] = den > 0 ? sqrt(num / den) : sqrt(num);
  }
  for (int i = 0; i < 3; i++)
    free(ref[i]);
  return e;
}

/* One case: device gradients against the reference. */
static void check_case(clattn_context ctx, const clattn_attention_desc *d, const char *label) {
  problem p;
  problem_init(&p, d, label, -2.0, 2.0);
  run_out o;
  run_device(ctx, &p, 0, &o);
  const grad_err e = compare(&p, &o);
  const double tol = rel_tol(d->dtype);
  if (e.nonfinite || e.rel[0] > tol || e.rel[1] > tol || e.rel[2] > tol)
    fail_msg("%s (seed 0x%llx): rel err dq %.3g dk %.3g dv %.3g (tol %.1g), %zu non-finite; %s",
             label, (unsigned long long)p.seed, e.rel[0], e.rel[1], e.rel[2], tol, e.nonfinite,
             o.describe);
  run_out_free(&o);
  problem_free(&p);
}

static clattn_attention_desc make(int b, int h, int hk, int nq, int nk, int hd, clattn_mask m) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = b;
  d.heads = h;
  d.kv_heads = hk;
  d.seq_q = nq;
  d.seq_kv = nk;
  d.head_dim = hd;
  d.mask = m;
  d.algo = CLATTN_ALGO_FLASH;
  return d;
}

static void label_of(char *buf, size_t cap, const char *test, const clattn_attention_desc *d) {
  snprintf(buf, cap, "bwd/%s/B%d-H%d-Hk%d-q%d-k%d-d%d-%s-%s-%s", test, d->batch, d->heads,
           d->kv_heads, d->seq_q, d->seq_kv, d->head_dim, clattn_mask_name(d->mask),
           clattn_dtype_name(d->dtype), clattn_layout_name(d->layout));
}

/* ---- the reference by central finite differences ------------------------- */

/* L = Σ dO ∘ O over the whole output, O from the float64 forward reference. */
static double loss(const problem *p, double *o) {
  assert_int_equal(clattn_reference_attention(&p->d, p->q.f, p->k.f, p->v.f, o, NULL, NULL, 0),
                   CLATTN_SUCCESS);
  const clattn_attention_desc *d = &p->d;
  double l = 0;
  size_t idx = 0;
  for (int b = 0; b < d->batch; b++)
    for (int h = 0; h < d->heads; h++)
      for (int s = 0; s < d->seq_q; s++)
        for (int x = 0; x < d->head_dim; x++, idx++)
          l += o[idx] *
               p->dout
                   .f[b * p->st[3].batch + h * p->st[3].head + s * p->st[3].seq + x * p->st[3].dim];
  return l;
}

static void fd_case(const clattn_attention_desc *d, const char *label) {
  problem p;
  problem_init(&p, d, label, -2.0, 2.0);
  double *ref[3];
  reference(&p, ref);
  const int kvh = d->kv_heads ? d->kv_heads : d->heads;
  double *o = malloc((size_t)d->batch * d->heads * d->seq_q * d->head_dim * sizeof(double));
  assert_non_null(o);
  tensor *ts[3] = {&p.q, &p.k, &p.v};
  const int hs[3] = {d->heads, kvh, kvh}, ns[3] = {d->seq_q, d->seq_kv, d->seq_kv};
  for (int t = 0; t < 3; t++) {
    double gmax = 0, emax = 0;
    size_t idx = 0;
    for (int b = 0; b < d->batch; b++)
      for (int h = 0; h < hs[t]; h++)
        for (int s = 0; s < ns[t]; s++)
          for (int x = 0; x < d->head_dim; x++, idx++) {
            const clattn_strides *st = &p.st[t];
            const size_t i = (size_t)(b * st->batch + h * st->head + s * st->seq + x * st->dim);
            const float x0 = ts[t]->f[i];
            const float xp = x0 + 1e-3f, xm = x0 - 1e-3f;
            ts[t]->f[i] = xp;
            const double lp = loss(&p, o);
            ts[t]->f[i] = xm;
            const double lm = loss(&p, o);
            ts[t]->f[i] = x0;
            const double fd = (lp - lm) / ((double)xp - (double)xm);
            if (fabs(ref[t][idx]) > gmax) gmax = fabs(ref[t][idx]);
            if (fabs(fd - ref[t][idx]) > emax) emax = fabs(fd - ref[t][idx]);
          }
    if (emax > 1e-5 * (gmax > 1 ? gmax : 1))
      fail_msg("%s: gradient %c differs from finite differences by %.3g (max |g| %.3g)", label,
               "qkv"[t], emax, gmax);
  }
  free(o);
  for (int i = 0; i < 3; i++)
    free(ref[i]);
  problem_free(&p);
}

static void test_reference_fd(void **state) {
  (void)state;
  static const struct {
    int b, h, hk, nq, nk, hd;
    clattn_mask m;
  } cs[] = {
      {1, 1, 1, 3, 5, 4, CLATTN_MASK_NONE},
      {2, 2, 1, 5, 4, 3, CLATTN_MASK_CAUSAL},
      {1, 4, 2, 4, 6, 2, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {1, 1, 1, 6, 3, 5, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 7, 7, 3, CLATTN_MASK_WINDOW},
      {1, 4, 2, 5, 6, 3, CLATTN_MASK_CAUSAL}, /* with ALiBi and sinks (below) */
      {1, 2, 1, 4, 5, 3, CLATTN_MASK_NONE},   /* with softcap (below) */
  };
  static const float sinks[4] = {0.3f, -0.5f, 1.5f, 0.0f};
  for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
    clattn_attention_desc d =
        make(cs[c].b, cs[c].h, cs[c].hk, cs[c].nq, cs[c].nk, cs[c].hd, cs[c].m);
    d.sparse.window_left = 2;
    d.sparse.window_right = 1;
    d.layout = c == 1 ? CLATTN_LAYOUT_BSHD : CLATTN_LAYOUT_BHSD;
    if (c == 5) {
      d.alibi_max_bias = 4.0;
      d.sinks = sinks;
    }
    if (c == 6) d.softcap = 0.7; /* small: scores near the cap, tanh far from linear */
    char label[256];
    label_of(label, sizeof label, "fd", &d);
    fd_case(&d, label);
  }
}

/* ---- device gradients ----------------------------------------------------- */

typedef struct shape {
  int b, h, hk, nq, nk, hd;
  clattn_mask m;
} shape;

static void run_shapes(clattn_context ctx, const char *test, const shape *cs, size_t n,
                       clattn_dtype dt, clattn_layout layout) {
  for (size_t c = 0; c < n; c++) {
    clattn_attention_desc d =
        make(cs[c].b, cs[c].h, cs[c].hk, cs[c].nq, cs[c].nk, cs[c].hd, cs[c].m);
    d.dtype = dt;
    d.layout = layout;
    char label[256];
    label_of(label, sizeof label, test, &d);
    check_case(ctx, &d, label);
  }
}

/* Tile-boundary lengths, seq_q != seq_kv both ways, both causal alignments,
 * GQA and MQA (head dim 64). */
/* ALiBi and attention sinks in the backward (P recomputed with ALiBi; the
 * sinks live in the forward's LSE): causal both ways, GQA, seq_q != seq_kv,
 * f32 and bf16, against the reference (itself checked by finite differences
 * in test_reference_fd). */
static void test_alibi_sinks(void **state) {
  static const float sinks[4] = {0.5f, -1.0f, 2.0f, 1.0f};
  static const shape cs[] = {
      {1, 4, 2, 33, 70, 64, CLATTN_MASK_CAUSAL},
      {2, 4, 4, 40, 25, 32, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {1, 4, 1, 65, 65, 64, CLATTN_MASK_NONE},
  };
  for (int mode = 0; mode < 4; mode++) /* ALiBi, sinks, both, softcap with ALiBi */
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
      clattn_attention_desc d =
          make(cs[c].b, cs[c].h, cs[c].hk, cs[c].nq, cs[c].nk, cs[c].hd, cs[c].m);
      d.alibi_max_bias = mode != 1 ? 8.0 : 0.0;
      d.sinks = mode == 1 || mode == 2 ? sinks : NULL;
      d.softcap = mode == 3 ? 2.0 : 0.0;
      /* half in bf16 (on NVIDIA: the tensor-core kernels with the modifiers) */
      d.dtype = (c + (size_t)mode) % 2 ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
      char label[256];
      label_of(label, sizeof label,
               mode == 0   ? "alibi"
               : mode == 1 ? "sinks"
               : mode == 2 ? "alibi+sinks"
                           : "softcap+alibi",
               &d);
      check_case(*state, &d, label);
    }
}

/* A user mask_mod in the backward (P = dS = 0 where it hides a pair): a
 * pattern over (b, h, q, k) that also hides a whole row of batch entry 1
 * (zero gradients there), causal or not, GQA, seq_q != seq_kv, f32 and
 * bf16, against the reference with the C twin. A score_mod is refused. */
static const char k_bwd_mask[] =
    "int clattn_mask_mod(int b, int h, int q, int k, __global const uchar *u) {\n"
    "  return (q + 2 * k + h) % 5 != 0 && !(b == 1 && q == 3);\n"
    "}\n";
static int bwd_mask_twin(int b, int h, int q, int k, const void *u) {
  (void)u;
  return (q + 2 * k + h) % 5 != 0 && !(b == 1 && q == 3);
}
static void test_mask_mod(void **state) {
  const clattn_reference_fns fns = {NULL, bwd_mask_twin, NULL, NULL};
  static const shape cs[] = {
      {2, 4, 2, 33, 70, 64, CLATTN_MASK_CAUSAL},
      {2, 2, 2, 40, 25, 32, CLATTN_MASK_NONE},
      {2, 4, 1, 20, 20, 16, CLATTN_MASK_CAUSAL_TOP_LEFT},
  };
  g_fns = &fns;
  for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
    clattn_attention_desc d =
        make(cs[c].b, cs[c].h, cs[c].hk, cs[c].nq, cs[c].nk, cs[c].hd, cs[c].m);
    d.mask_mod = k_bwd_mask;
    d.dtype = c == 1 ? CLATTN_DTYPE_BF16 : c == 2 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32;
    d.alibi_max_bias = c == 2 ? 4.0 : 0.0;
    char label[256];
    label_of(label, sizeof label, "mask_mod", &d);
    check_case(*state, &d, label);
  }
  g_fns = NULL;
  /* a score_mod has no backward: refused with the reason */
  clattn_attention_desc d = make(1, 1, 1, 8, 8, 16, CLATTN_MASK_NONE);
  d.score_mod = "float clattn_score_mod(float s, int b, int h, int q, int k, "
                "__global const uchar *u) { return s; }\n";
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(*state, &d, CLATTN_PLAN_BACKWARD, &plan),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(*state), "score_mod has no backward"));
  assert_null(plan);
}

/* Bias tensors in the backward (added as in the forward; -inf hides the
 * pair; no gradient of the bias): a full f32 tensor with -inf entries and
 * one row hidden entirely, a bool [Nq][Nk] mask broadcast over batch and
 * heads, a bf16 one broadcast over batch; causal or not, GQA, against the
 * reference with the host copy; the plain entry point refuses a bias plan. */
static void test_bias(void **state) {
  tu_rng rng;
  tu_rng_init(&rng, tu_case_seed("bwd bias"));
  static const struct {
    int type;
    clattn_mask m;
    clattn_dtype dt;
  } cs[] = {{CLATTN_BIAS_F32, CLATTN_MASK_CAUSAL, CLATTN_DTYPE_F32},
            {CLATTN_BIAS_BOOL, CLATTN_MASK_NONE, CLATTN_DTYPE_F32},
            {CLATTN_BIAS_BF16, CLATTN_MASK_CAUSAL_TOP_LEFT, CLATTN_DTYPE_BF16},
            {CLATTN_BIAS_F32, CLATTN_MASK_NONE, CLATTN_DTYPE_F16}};
  for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
    clattn_attention_desc d = make(2, 4, 2, 37, 50, 32, cs[c].m);
    d.dtype = cs[c].dt;
    d.bias_type = cs[c].type;
    const int64_t B = d.batch, H = d.heads, Nq = d.seq_q, Nk = d.seq_kv;
    d.bias_strides = cs[c].type == CLATTN_BIAS_F32    ? (clattn_strides){H * Nq * Nk, Nq * Nk, Nk, 1}
                     : cs[c].type == CLATTN_BIAS_BOOL ? (clattn_strides){0, 0, Nk, 1}
                                                      : (clattn_strides){0, Nq * Nk, Nk, 1};
    const size_t n = cs[c].type == CLATTN_BIAS_F32    ? (size_t)(B * H * Nq * Nk)
                     : cs[c].type == CLATTN_BIAS_BOOL ? (size_t)(Nq * Nk)
                                                      : (size_t)(H * Nq * Nk);
    const size_t es = cs[c].type == CLATTN_BIAS_F32 ? 4 : cs[c].type == CLATTN_BIAS_BOOL ? 1 : 2;
    unsigned char *hb = malloc(n * es);
    assert_non_null(hb);
    for (size_t e = 0; e < n; e++) {
      const double x = tu_rng_uniform(&rng, -2, 2);
      if (cs[c].type == CLATTN_BIAS_F32) /* one in 8 -inf, and all of row 5 of (0, 0) */
        ((float *)hb)[e] = x < -1.5 || (e / (size_t)Nk == 5) ? -INFINITY : (float)x;
      else if (cs[c].type == CLATTN_BIAS_BOOL)
        hb[e] = x > -1.0;
      else
        ((uint16_t *)hb)[e] = tu_float_to_bf16((float)x);
    }
    const clattn_reference_fns fns = {NULL, NULL, NULL, hb};
    g_fns = &fns;
    g_bias_bytes = n * es;
    char label[256];
    label_of(label, sizeof label, "bias", &d);
    check_case(*state, &d, label);
    g_fns = NULL;
    free(hb);
  }
  /* the plain entry point has no bias argument: a bias plan names the _ex one */
  clattn_attention_desc d = make(1, 1, 1, 8, 8, 16, CLATTN_MASK_NONE);
  d.bias_type = CLATTN_BIAS_F32;
  d.bias_strides = (clattn_strides){0, 0, 8, 1};
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(*state, &d, CLATTN_PLAN_BACKWARD, &plan), CLATTN_SUCCESS);
  cl_mem m[10];
  for (int i = 0; i < 10; i++)
    assert_non_null(m[i] = tu_buffer_nan(*state, 8 * 16));
  assert_int_equal(clattn_plan_execute_backward(plan, m[0], m[1], m[2], m[3], m[4], m[5], m[6],
                                                m[7], m[8], 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(*state), "bias is NULL"));
  for (int i = 0; i < 10; i++)
    clReleaseMemObject(m[i]);
  clattn_plan_release(plan);
}

static void test_shapes(void **state) {
  static const shape cs[] = {
      {1, 2, 2, 1, 1, 64, CLATTN_MASK_NONE},
      {2, 2, 2, 7, 7, 64, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 63, 65, 64, CLATTN_MASK_NONE},
      {1, 2, 2, 65, 63, 64, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 33, 100, 64, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 100, 33, 64, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {1, 1, 1, 257, 257, 64, CLATTN_MASK_CAUSAL},
      {1, 4, 2, 65, 47, 64, CLATTN_MASK_CAUSAL}, /* GQA */
      {2, 4, 1, 31, 70, 64, CLATTN_MASK_NONE},   /* MQA */
  };
  run_shapes(*state, "shapes", cs, sizeof cs / sizeof *cs, CLATTN_DTYPE_F32, CLATTN_LAYOUT_BHSD);
}

static void test_head_dims(void **state) {
  static const shape cs[] = {
      {1, 1, 1, 9, 40, 1, CLATTN_MASK_CAUSAL},
      {1, 2, 1, 40, 17, 7, CLATTN_MASK_NONE},
      {1, 1, 1, 33, 33, 32, CLATTN_MASK_NONE},
      {1, 1, 1, 20, 35, 128, CLATTN_MASK_CAUSAL},
      {1, 1, 1, 17, 19, 256, CLATTN_MASK_CAUSAL_TOP_LEFT},
  };
  run_shapes(*state, "head_dims", cs, sizeof cs / sizeof *cs, CLATTN_DTYPE_F32, CLATTN_LAYOUT_BHSD);
}

static void test_16bit(void **state) {
  static const shape cs[] = {
      {1, 2, 1, 65, 40, 64, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 20, 37, 64, CLATTN_MASK_NONE},
  };
  run_shapes(*state, "16bit", cs, sizeof cs / sizeof *cs, CLATTN_DTYPE_F16, CLATTN_LAYOUT_BHSD);
  run_shapes(*state, "16bit", cs, sizeof cs / sizeof *cs, CLATTN_DTYPE_BF16, CLATTN_LAYOUT_BSHD);
}

static void test_layouts(void **state) {
  static const shape cs[] = {{2, 4, 2, 37, 29, 64, CLATTN_MASK_CAUSAL}};
  run_shapes(*state, "layouts", cs, 1, CLATTN_DTYPE_F32, CLATTN_LAYOUT_BSHD);
  /* Padded strides, dim stride 1 (no float4 assumption in the backward). */
  clattn_attention_desc d = make(2, 4, 2, 37, 29, 64, CLATTN_MASK_CAUSAL);
  tu_set_padded_strides(&d, 3, 5, 1);
  char label[256];
  label_of(label, sizeof label, "layouts", &d);
  check_case(*state, &d, label);
}

static void nan_case(clattn_context ctx, clattn_dtype dt, int hd, const char *label);

/* 16-bit storage on the shapes the tensor-core backward (flash_bwd_tc,
 * NVIDIA sm_80+) serves and the ones it leaves to flash_bwd: tile-boundary
 * lengths, seq_q != seq_kv both ways, both causal alignments, GQA and MQA,
 * head dims that are not multiples of 16 or of 8 (element loads), d above
 * 128; BSHD and padded strides (rows not 16-byte aligned: one stage); a NaN
 * (test_determinism runs bf16 too). Other devices run their own kernels on
 * them. */
static void test_16bit_shapes(void **state) {
  clattn_context ctx = *state;
  static const shape cs[] = {
      {1, 2, 2, 1, 1, 64, CLATTN_MASK_NONE},
      {1, 2, 1, 65, 130, 64, CLATTN_MASK_CAUSAL},
      {2, 4, 2, 130, 65, 64, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {1, 4, 1, 77, 200, 128, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 100, 37, 128, CLATTN_MASK_NONE},
      {1, 2, 1, 50, 70, 40, CLATTN_MASK_CAUSAL},
      {1, 2, 2, 33, 33, 8, CLATTN_MASK_NONE},
      {1, 2, 2, 40, 29, 13, CLATTN_MASK_CAUSAL},
      {1, 1, 1, 20, 35, 160, CLATTN_MASK_CAUSAL},
  };
  const size_t n = sizeof cs / sizeof *cs;
  run_shapes(ctx, "16bit_shapes", cs, n, CLATTN_DTYPE_F16, CLATTN_LAYOUT_BHSD);
  run_shapes(ctx, "16bit_shapes", cs, n, CLATTN_DTYPE_BF16, CLATTN_LAYOUT_BSHD);
  for (int dt = 0; dt < 2; dt++) {
    clattn_attention_desc d = make(2, 4, 2, 70, 90, 64, CLATTN_MASK_CAUSAL);
    d.dtype = dt ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F16;
    tu_set_padded_strides(&d, 3, 5, 1);
    char label[256];
    label_of(label, sizeof label, "16bit_padded", &d);
    check_case(ctx, &d, label);
  }
  nan_case(ctx, CLATTN_DTYPE_F16, 64, "bwd/16bit_nan");
}

/* The tensor-core backward's configurations, forced one by one through
 * CLATTN_TUNE_OVERRIDE in a context of their own: one and eight warps, the
 * tile sizes, one and two stages. Skipped where flash_bwd_tc does not apply
 * (it needs NVIDIA sm_80+). */
static void test_tc_configs(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc probe = make(1, 1, 1, 16, 16, 64, CLATTN_MASK_NONE);
  probe.dtype = CLATTN_DTYPE_BF16;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &probe, CLATTN_PLAN_BACKWARD, &plan), CLATTN_SUCCESS);
  const bool tc = strstr(clattn_plan_describe(plan), "backward: flash_bwd_tc") != NULL;
  clattn_plan_release(plan);
  if (!tc) {
    print_message("flash_bwd_tc does not apply on this device: skipped\n");
    skip();
  }
  static const struct {
    const char *cfg;
    shape s;
  } cases[] = {
      {"kw=1,qm=16,kst=1,qw=1,kn=16,qst=1,kmt=1,qmt=1", {1, 4, 2, 97, 130, 64, CLATTN_MASK_CAUSAL}},
      {"kw=2,qm=32,kst=2,qw=2,kn=32,qst=2,kmt=1,qmt=1", {2, 2, 2, 45, 300, 64, CLATTN_MASK_NONE}},
      {"kw=8,qm=16,kst=2,qw=8,kn=64,qst=1,kmt=1,qmt=1",
       {1, 4, 2, 200, 150, 64, CLATTN_MASK_CAUSAL_TOP_LEFT}},
      {"kw=4,qm=64,kst=1,qw=4,kn=64,qst=2,kmt=1,qmt=1",
       {1, 4, 1, 130, 257, 64, CLATTN_MASK_CAUSAL}},
      {"kw=4,qm=16,kst=2,qw=4,kn=32,qst=2,kmt=2,qmt=2",
       {1, 4, 2, 300, 290, 64, CLATTN_MASK_CAUSAL}},
      {"kw=2,qm=16,kst=1,qw=1,kn=16,qst=1,kmt=2,qmt=2",
       {2, 2, 1, 70, 111, 40, CLATTN_MASK_CAUSAL_TOP_LEFT}},
      {"kw=4,qm=16,kst=1,qw=2,kn=32,qst=2,kmt=1,qmt=1",
       {1, 2, 1, 70, 50, 128, CLATTN_MASK_CAUSAL_TOP_LEFT}},
      {"kw=2,qm=32,kst=1,qw=4,kn=16,qst=2,kmt=1,qmt=1",
       {1, 2, 2, 129, 64, 128, CLATTN_MASK_CAUSAL}},
      {"kw=1,qm=16,kst=2,qw=1,kn=32,qst=1,kmt=1,qmt=1", {1, 2, 1, 33, 90, 96, CLATTN_MASK_NONE}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    char env[128];
    snprintf(env, sizeof env, "flash_bwd_tc:%s", cases[c].cfg);
    assert_int_equal(setenv("CLATTN_TUNE_OVERRIDE", env, 1), 0);
    clattn_context c2 = NULL;
    assert_int_equal(clattn_context_create(NULL, &c2), CLATTN_SUCCESS);
    for (int dt = 0; dt < 2; dt++) {
      const shape *s = &cases[c].s;
      clattn_attention_desc d = make(s->b, s->h, s->hk, s->nq, s->nk, s->hd, s->m);
      d.dtype = dt ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F16;
      d.layout = dt ? CLATTN_LAYOUT_BSHD : CLATTN_LAYOUT_BHSD;
      char label[256];
      label_of(label, sizeof label, "tc_configs", &d);
      snprintf(label + strlen(label), sizeof label - strlen(label), "-%s", cases[c].cfg);
      problem p;
      problem_init(&p, &d, label, -2.0, 2.0);
      run_out o;
      run_device(c2, &p, 0, &o);
      int kw, qm, kst, qw, kn, qst, kmt, qmt;
      assert_int_equal(sscanf(cases[c].cfg, "kw=%d,qm=%d,kst=%d,qw=%d,kn=%d,qst=%d,kmt=%d,qmt=%d",
                              &kw, &qm, &kst, &qw, &kn, &qst, &kmt, &qmt),
                       8);
      char want[128];
      snprintf(want, sizeof want,
               "(kw=%d kmt=%d qm=%d kst=%d), dQ over %d-row tiles (qw=%d qmt=%d kn=%d qst=%d)", kw,
               kmt, qm, kst, 16 * qmt * qw, qw, qmt, kn, qst);
      if (!strstr(o.describe, "backward: flash_bwd_tc") || !strstr(o.describe, want))
        fail_msg("%s: not run with the forced configuration: %s", label, o.describe);
      const grad_err e = compare(&p, &o);
      const double tol = rel_tol(d.dtype);
      if (e.nonfinite || e.rel[0] > tol || e.rel[1] > tol || e.rel[2] > tol)
        fail_msg("%s (seed 0x%llx): rel err dq %.3g dk %.3g dv %.3g (tol %.1g), %zu non-finite; %s",
                 label, (unsigned long long)p.seed, e.rel[0], e.rel[1], e.rel[2], tol, e.nonfinite,
                 o.describe);
      run_out_free(&o);
      problem_free(&p);
    }
    clattn_context_release(c2);
  }
  unsetenv("CLATTN_TUNE_OVERRIDE");
}

/* Every sparse pattern of the sparse family. */
static void test_sparse(void **state) {
  static const int tokens[] = {11};
  static const int rows[] = {0, 2, 3, 3, 5, 6}; /* 5 query blocks of 8 */
  static const int cols[] = {0, 1, 1, 0, 3, 4};
  for (int c = 0; c < 7; c++) {
    clattn_attention_desc d = make(1, 2, 1, 40, 40, 64, CLATTN_MASK_WINDOW);
    clattn_sparse_desc *sp = &d.sparse;
    switch (c) {
    case 0: sp->window_left = 3, sp->window_right = 2, sp->num_global = 1; break;
    case 1:
      d.seq_q = 17;
      sp->window_left = 5, sp->causal = 1, sp->global_tokens = tokens, sp->num_global_tokens = 1;
      break;
    case 2:
      d.mask = CLATTN_MASK_DILATED;
      sp->window_left = sp->window_right = 8, sp->dilation = 3;
      break;
    case 3:
      d.mask = CLATTN_MASK_STRIDED;
      sp->window_left = 2, sp->stride = 7, sp->causal = 1;
      break;
    case 4:
      d.mask = CLATTN_MASK_BIGBIRD;
      sp->block_size = 8, sp->window_blocks = 1, sp->global_blocks = 1, sp->random_blocks = 1;
      sp->seed = 7;
      break;
    case 5:
      d.mask = CLATTN_MASK_BIGBIRD;
      d.seq_q = 23;
      sp->block_size = 5, sp->window_blocks = 0, sp->global_blocks = 1, sp->random_blocks = 2;
      sp->causal = 1, sp->element_window = 1, sp->window_left = 6, sp->window_right = 6;
      break;
    default:
      d.mask = CLATTN_MASK_BLOCK_LAYOUT;
      sp->block_size = 8, sp->layout_rows = 5, sp->layout_row_offsets = rows;
      sp->layout_cols = cols;
      break;
    }
    char label[256];
    label_of(label, sizeof label, "sparse", &d);
    snprintf(label + strlen(label), sizeof label - strlen(label), "-c%d", c);
    check_case(*state, &d, label);
  }
}

/* The naive backward (CLBlast GEMMs per head; f32, unit dim strides). */
static void test_naive(void **state) {
  static const shape cs[] = {
      {1, 4, 2, 65, 47, 64, CLATTN_MASK_CAUSAL},
      {2, 2, 2, 33, 70, 32, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {1, 2, 1, 20, 20, 16, CLATTN_MASK_NONE},
  };
  for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
    clattn_attention_desc d =
        make(cs[c].b, cs[c].h, cs[c].hk, cs[c].nq, cs[c].nk, cs[c].hd, cs[c].m);
    d.algo = CLATTN_ALGO_NAIVE;
    d.layout = c == 1 ? CLATTN_LAYOUT_BSHD : CLATTN_LAYOUT_BHSD;
    if (c == 2) { /* a sparse mask */
      d.mask = CLATTN_MASK_WINDOW;
      d.sparse.window_left = 3;
      d.sparse.window_right = 1;
      d.sparse.num_global = 1;
    }
    char label[256];
    label_of(label, sizeof label, "naive", &d);
    check_case(*state, &d, label);
  }
  /* 16-bit storage: no naive backward, the message says why. */
  clattn_context ctx = *state;
  clattn_attention_desc d = make(1, 1, 1, 8, 8, 16, CLATTN_MASK_NONE);
  d.algo = CLATTN_ALGO_NAIVE;
  d.dtype = CLATTN_DTYPE_F16;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(ctx), "f32 storage only"));
}

/* Two runs of the same plan inputs are bitwise equal (the default mode). */
static void test_determinism(void **state) {
  clattn_context ctx = *state;
  for (int dt = 0; dt < 2; dt++) { /* f32, and bf16 (the tensor-core kernels on NVIDIA) */
    clattn_attention_desc d = make(1, 4, 2, 130, 97, 64, CLATTN_MASK_CAUSAL);
    d.dtype = dt ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
    problem p;
    problem_init(&p, &d, dt ? "bwd/determinism_bf16" : "bwd/determinism", -2.0, 2.0);
    run_out a, b;
    run_device(ctx, &p, CLATTN_PLAN_BACKWARD, &a);
    run_device(ctx, &p, 0, &b);
    for (int t = 0; t < 3; t++)
      assert_memory_equal(a.g[t], b.g[t], p.elems[t] * p.es);
    /* The describe line reports the backward pass. */
    assert_non_null(strstr(a.describe, "backward: flash_bwd"));
    run_out_free(&a);
    run_out_free(&b);
    problem_free(&p);
  }
}

/* Rows without a visible key: zero dq rows; their dO adds nothing anywhere. */
static void test_masked_rows(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make(1, 2, 2, 20, 6, 16, CLATTN_MASK_CAUSAL); /* 14 rows masked */
  problem p;
  problem_init(&p, &d, "bwd/masked_rows", -2.0, 2.0);
  run_out o;
  run_device(ctx, &p, 0, &o);
  for (int h = 0; h < 2; h++)
    for (int s = 0; s < 14; s++)
      for (int x = 0; x < 16; x++)
        assert_true(dev_grad(&p, &o, 0, 0, h, s, x) == 0.0);
  const grad_err e = compare(&p, &o);
  assert_int_equal(e.nonfinite, 0);
  assert_true(e.rel[0] <= 1e-4 && e.rel[1] <= 1e-4 && e.rel[2] <= 1e-4);
  run_out_free(&o);
  problem_free(&p);
}

/* Scores of magnitude ~1e3: exp overflows f32 by far, the gradients stay
 * finite and match the reference. */
static void test_large_scores(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make(1, 1, 1, 50, 45, 32, CLATTN_MASK_NONE);
  d.scale = 30.0;
  problem p;
  problem_init(&p, &d, "bwd/large_scores", -2.0, 2.0);
  run_out o;
  run_device(ctx, &p, 0, &o);
  const grad_err e = compare(&p, &o);
  if (e.nonfinite || e.rel[0] > 1e-3 || e.rel[1] > 1e-3 || e.rel[2] > 1e-3)
    fail_msg("large scores: %zu non-finite, rel dq %.3g dk %.3g dv %.3g", e.nonfinite, e.rel[0],
             e.rel[1], e.rel[2]);
  run_out_free(&o);
  problem_free(&p);
}

/* A NaN in q row 3 gives NaN gradients for that row and every key it sees,
 * never a silent zero (causal, 10 rows, storage dt, head dim hd). */
static void nan_case(clattn_context ctx, clattn_dtype dt, int hd, const char *label) {
  clattn_attention_desc d = make(1, 1, 1, 10, 10, hd, CLATTN_MASK_CAUSAL);
  d.dtype = dt;
  problem p;
  problem_init(&p, &d, label, -2.0, 2.0);
  tensor_set(&p.q, d.dtype, 3 * (size_t)hd + 2, NAN);
  run_out o;
  run_device(ctx, &p, 0, &o);
  for (int x = 0; x < hd; x++) {
    assert_true(isnan(dev_grad(&p, &o, 0, 0, 0, 3, x)));
    for (int j = 0; j <= 3; j++) {
      assert_true(isnan(dev_grad(&p, &o, 1, 0, 0, j, x)));
      assert_true(isnan(dev_grad(&p, &o, 2, 0, 0, j, x)));
    }
    assert_true(isfinite(dev_grad(&p, &o, 0, 0, 0, 2, x))); /* rows that do not see it */
  }
  run_out_free(&o);
  problem_free(&p);
}

static void test_nan(void **state) { nan_case(*state, CLATTN_DTYPE_F32, 8, "bwd/nan"); }

/* Argument checks name the argument. */
static void test_arguments(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make(1, 1, 1, 8, 8, 16, CLATTN_MASK_NONE);
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  cl_mem b[9];
  for (int i = 0; i < 9; i++)
    b[i] = tu_buffer_nan(ctx, 8 * 16);
  assert_int_equal(clattn_plan_execute_backward(plan, b[0], b[1], b[2], b[3], NULL, b[5], b[6],
                                                b[7], b[8], 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "lse"));
  assert_int_equal(clattn_plan_execute_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[0],
                                                b[7], b[8], 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "dq must not alias q"));
  assert_true(clattn_plan_backward_flops(plan) == 2.5 * clattn_plan_flops(plan));
  for (int i = 0; i < 9; i++)
    clReleaseMemObject(b[i]);
  clattn_plan_release(plan);
  /* The backward workspace (D: B·H·Nq floats) is reported once built. */
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  const size_t fwd_ws = clattn_plan_workspace_size(plan); /* the forward variant's own */
  assert_null(strstr(clattn_plan_describe(plan), "backward"));
  clattn_plan_release(plan);
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_workspace_size(plan), fwd_ws + 8 * sizeof(float));
  assert_non_null(strstr(clattn_plan_describe(plan), "; backward: "));
  clattn_plan_release(plan);
  /* The portable opt-out gives the work-group kernels (CPUs: not the rows kernels). */
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD | CLATTN_PLAN_PORTABLE, &plan),
                   CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "backward: flash_bwd "));
  clattn_plan_release(plan);
  /* The linear family has no backward. */
  d.algo = CLATTN_ALGO_LINEAR;
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_null(plan);
}

/* ---- ragged batches ---------------------------------------------------------- */

/* One ragged batch (packed BSHD Q/O/dO [total_q][H][d], K/V [total_kv][Hk][d],
 * LSE [total_q][H]): forward and backward through the _ex entry points, each
 * sequence's gradients against the reference run on that sequence alone.
 * Sequences of length 0 (queries or keys), 1, and longer than a tile; the
 * rows past the last sequence of dq/dk/dv stay NaN (nothing is written
 * outside the sequences). */
static void ragged_case(clattn_context ctx, clattn_dtype dt, clattn_mask m, int hd, const int *nq,
                        const int *nk, int B) {
  const int H = 4, Hk = 2;
  int cuq[9] = {0}, cuk[9] = {0}, nqmax = 1, nkmax = 1;
  for (int b = 0; b < B; b++) {
    cuq[b + 1] = cuq[b] + nq[b];
    cuk[b + 1] = cuk[b] + nk[b];
    nqmax = nq[b] > nqmax ? nq[b] : nqmax;
    nkmax = nk[b] > nkmax ? nk[b] : nkmax;
  }
  const int pad = 3; /* rows past the packed sequences: must stay untouched */
  clattn_attention_desc d = make(B, H, Hk, nqmax, nkmax, hd, m);
  d.dtype = dt;
  d.layout = CLATTN_LAYOUT_BSHD;
  d.ragged = 1;
  d.total_q = cuq[B] + pad;
  d.total_kv = cuk[B] + pad;
  char label[200];
  snprintf(label, sizeof label, "bwd/ragged/%s-%s-d%d-B%d", clattn_dtype_name(dt),
           clattn_mask_name(m), hd, B);
  const size_t es = dt == CLATTN_DTYPE_F32 ? 4 : 2;
  const size_t nqe = (size_t)d.total_q * H * hd, nke = (size_t)d.total_kv * Hk * hd;
  tu_rng r;
  tu_rng_init(&r, tu_case_seed(label));
  tensor q, k, v, dout;
  tensor_fill(&q, nqe, dt, &r, -2.0, 2.0);
  tensor_fill(&k, nke, dt, &r, -1.0, 1.0);
  tensor_fill(&v, nke, dt, &r, -1.0, 1.0);
  tensor_fill(&dout, nqe, dt, &r, -1.0, 1.0);
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan) != CLATTN_SUCCESS)
    fail_msg("%s: plan: %s", label, clattn_context_last_error(ctx));
  assert_non_null(strstr(clattn_plan_describe(plan), "backward: "));
  cl_mem mq = tu_buffer_from_host(ctx, tensor_data(&q), nqe * es);
  cl_mem mk = tu_buffer_from_host(ctx, tensor_data(&k), nke * es);
  cl_mem mv = tu_buffer_from_host(ctx, tensor_data(&v), nke * es);
  cl_mem mdo = tu_buffer_from_host(ctx, tensor_data(&dout), nqe * es);
  cl_mem mo = tu_buffer_nan(ctx, (nqe * es + 3) / 4);
  cl_mem ml = tu_buffer_nan(ctx, (size_t)d.total_q * H);
  cl_mem mcq = tu_buffer_from_host(ctx, cuq, (size_t)(B + 1) * sizeof(int));
  cl_mem mck = tu_buffer_from_host(ctx, cuk, (size_t)(B + 1) * sizeof(int));
  cl_mem g[3] = {tu_buffer_nan(ctx, (nqe * es + 3) / 4), tu_buffer_nan(ctx, (nke * es + 3) / 4),
                 tu_buffer_nan(ctx, (nke * es + 3) / 4)};
  const clattn_exec_args a = {
      .q = mq, .k = mk, .v = mv, .o = mo, .lse = ml, .cu_seqlens_q = mcq, .cu_seqlens_kv = mck};
  if (clattn_plan_execute_ex(plan, &a, 0, NULL, NULL) != CLATTN_SUCCESS)
    fail_msg("%s: forward: %s", label, clattn_context_last_error(ctx));
  /* the plain entry point refuses a ragged plan, naming the _ex one */
  assert_int_equal(
      clattn_plan_execute_backward(plan, mq, mk, mv, mo, ml, mdo, g[0], g[1], g[2], 0, NULL, NULL),
      CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "clattn_plan_execute_backward_ex"));
  if (clattn_plan_execute_backward_ex(plan, &a, mdo, g[0], g[1], g[2], 0, NULL, NULL) !=
      CLATTN_SUCCESS)
    fail_msg("%s: backward: %s", label, clattn_context_last_error(ctx));
  const size_t ne[3] = {nqe, nke, nke};
  void *host[3];
  for (int t = 0; t < 3; t++) {
    host[t] = malloc(ne[t] * es);
    assert_non_null(host[t]);
    assert_int_equal(tu_buffer_read(ctx, g[t], host[t], ne[t] * es), CL_SUCCESS);
  }
  const double tol = rel_tol(dt);
  for (int b = 0; b < B; b++) {
    /* the sequence alone, BSHD batch 1: a slice of the packed tensors */
    const int hs[3] = {H, Hk, Hk}, ns[3] = {nq[b], nk[b], nk[b]};
    const int start[3] = {cuq[b], cuk[b], cuk[b]};
    double *ref[3] = {NULL, NULL, NULL};
    if (nq[b] > 0 && nk[b] > 0) {
      clattn_attention_desc rd = make(1, H, Hk, nq[b], nk[b], hd, m);
      rd.dtype = dt;
      rd.layout = CLATTN_LAYOUT_BSHD;
      for (int t = 0; t < 3; t++)
        ref[t] = calloc((size_t)hs[t] * ns[t] * hd, sizeof(double));
      const size_t qo = (size_t)cuq[b] * H * hd * es, ko = (size_t)cuk[b] * Hk * hd * es;
      assert_int_equal(clattn_reference_attention_backward(
                           &rd, (const char *)tensor_data(&q) + qo,
                           (const char *)tensor_data(&k) + ko, (const char *)tensor_data(&v) + ko,
                           (const char *)tensor_data(&dout) + qo, ref[0], ref[1], ref[2]),
                       CLATTN_SUCCESS);
    }
    for (int t = 0; t < 3; t++) {
      double num = 0, den = 0;
      size_t nonfinite = 0;
      for (int hh = 0; hh < hs[t]; hh++)
        for (int i = 0; i < ns[t]; i++)
          for (int x = 0; x < hd; x++) {
            const size_t di = ((size_t)(start[t] + i) * hs[t] + hh) * hd + x;
            const double gv = elem_of(host[t], dt, di);
            /* no key (or no query): the gradient is exactly 0 */
            const double rv = ref[t] ? ref[t][((size_t)hh * ns[t] + i) * hd + x] : 0.0;
            if (!isfinite(gv)) nonfinite++;
            num += (gv - rv) * (gv - rv);
            den += rv * rv;
          }
      const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
      if (nonfinite || rel > tol)
        fail_msg("%s (seed 0x%llx): sequence %d (nq %d, nk %d): d%c rel err %.3g (tol %.1g), %zu "
                 "non-finite; %s",
                 label, (unsigned long long)tu_case_seed(label), b, nq[b], nk[b], "qkv"[t], rel,
                 tol, nonfinite, clattn_plan_describe(plan));
      free(ref[t]);
    }
  }
  /* the padding rows after the last sequence: never written (the poison's
   * bytes kept; tu_buffer_nan fills float NaNs, so compare bytes) */
  float *poison = tu_alloc_nan((nqe * es + 3) / 4 + 1);
  assert_non_null(poison);
  for (int t = 0; t < 3; t++) {
    const size_t first = (size_t)(t == 0 ? cuq[B] * H : cuk[B] * Hk) * hd * es;
    if (memcmp((const char *)host[t] + first, (const char *)poison + first, ne[t] * es - first))
      fail_msg("%s: d%c past the packed sequences was written", label, "qkv"[t]);
    free(host[t]);
  }
  free(poison);
  cl_mem all[] = {mq, mk, mv, mdo, mo, ml, mcq, mck, g[0], g[1], g[2]};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    clReleaseMemObject(all[i]);
  clattn_plan_release(plan);
  tensor_free(&q);
  tensor_free(&k);
  tensor_free(&v);
  tensor_free(&dout);
}

static void test_ragged(void **state) {
  clattn_context ctx = *state;
  /* lengths 0, 1, tile-crossing, nq != nk, a sequence with keys but no
   * queries and one with queries but no keys */
  const int nq[6] = {17, 0, 1, 40, 9, 3}, nk[6] = {20, 3, 0, 50, 9, 1};
  ragged_case(ctx, CLATTN_DTYPE_F32, CLATTN_MASK_NONE, 24, nq, nk, 6);
  ragged_case(ctx, CLATTN_DTYPE_F32, CLATTN_MASK_CAUSAL, 24, nq, nk, 6);
  ragged_case(ctx, CLATTN_DTYPE_F32, CLATTN_MASK_CAUSAL_TOP_LEFT, 16, nq, nk, 6);
  ragged_case(ctx, CLATTN_DTYPE_BF16, CLATTN_MASK_CAUSAL, 64, nq, nk, 6);
  /* a paged plan has no backward */
  clattn_attention_desc d = make(1, 2, 2, 1, 64, 16, CLATTN_MASK_NONE);
  d.kv_layout = CLATTN_KV_PAGED;
  d.page_size = 16;
  d.num_pages = 4;
  d.max_pages_per_seq = 4;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  cl_mem b = tu_buffer_nan(ctx, 4096);
  const clattn_exec_args a = {.q = b, .k = b, .v = b, .o = b, .lse = b};
  assert_int_equal(clattn_plan_execute_backward_ex(plan, &a, b, b, b, b, 0, NULL, NULL),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(ctx), "paged"));
  clReleaseMemObject(b);
  clattn_plan_release(plan);
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_fd), cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_head_dims),    cmocka_unit_test(test_16bit),
      cmocka_unit_test(test_layouts),      cmocka_unit_test(test_sparse),
      cmocka_unit_test(test_naive),        cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_masked_rows),  cmocka_unit_test(test_large_scores),
      cmocka_unit_test(test_nan),          cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_ragged),       cmocka_unit_test(test_alibi_sinks),
      cmocka_unit_test(test_mask_mod),     cmocka_unit_test(test_bias),
      cmocka_unit_test(test_16bit_shapes), cmocka_unit_test(test_tc_configs),
  };
  return cmocka_run_group_tests_name("clattn backward", tests, tu_group_setup, tu_group_teardown);
}
