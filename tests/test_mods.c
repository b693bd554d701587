/* test_mods.c — score modifiers (softcap, ALiBi) in the flash kernels vs the reference, the
 * reference vs closed forms, and the kernels that decline them. */
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
 * clattn_attention_desc.softcap (s <- c·tanh(s/c)) and .alibi_max_bias (s <-
 * s - slope_h·|p - j|, the standard geometric slopes, p aligned as the causal
 * mask) on the flash family's prefill kernels: flash_rows (what CPUs run;
 * every dtype) and the portable work-group kernel (what GPUs run, forced
 * here with two tilings; f32, slow on CPUs), dense and sparse masks, GQA,
 * 6 heads (the slopes'
 * second branch: 6 is no power of two), sizes that are no tile multiple;
 * tolerances tu_rel_tol per dtype against clattn_reference_attention, with
 * the LSE. The reference itself is checked against closed forms.
 */

typedef struct mshape {
  int heads, kv_heads, seq_q, seq_kv, head_dim;
} mshape;

static const mshape shapes[] = {
    {6, 2, 77, 130, 40}, /* GQA 3:1, seq_q < seq_kv */
    {6, 6, 130, 77, 24}, /* seq_q > seq_kv: bottom-right rows without keys */
    {4, 1, 33, 33, 64},  /* MQA, square */
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static const struct { double softcap, alibi; } mods[] = {{5.0, 0.0}, {0.0, 8.0}, {2.0, 1.0}};
#define NMODS (int)(sizeof mods / sizeof mods[0])

static clattn_attention_desc make_desc(const mshape *s, clattn_mask mask, clattn_dtype t) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 2;
  d.heads = s->heads;
  d.kv_heads = s->kv_heads;
  d.seq_q = s->seq_q;
  d.seq_kv = s->seq_kv;
  d.head_dim = s->head_dim;
  d.mask = mask;
  d.dtype = t;
  d.algo = CLATTN_ALGO_FLASH;
  d.scale = 0.5; /* large enough that the cap and the slopes matter */
  return d;
}

/* One case; with `want` the plan must name that kernel and tiling. */
static void check(clattn_context ctx, const clattn_attention_desc *d, const char *want,
                  const char *label) {
  tu_report rep;
  tu_run_and_compare(ctx, d, TU_INPUT_UNIFORM, 1, 0, label, &rep);
  if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
  if (want && !strstr(rep.plan_describe, want))
    fail_msg("%s: the plan is not %s: %s", label, want, rep.plan_describe);
}

static void run_kernel(clattn_context ctx0, const char *override, const char *want, const char *tag,
                       int few) {
  static const clattn_mask masks[] = {CLATTN_MASK_NONE, CLATTN_MASK_CAUSAL,
                                      CLATTN_MASK_CAUSAL_TOP_LEFT};
  clattn_context ctx = ctx0;
  if (override) { /* a context reads the environment when it is created */
    setenv("CLATTN_TUNE_OVERRIDE", override, 1);
    ctx = tu_new_context();
    unsetenv("CLATTN_TUNE_OVERRIDE");
  }
  /* Every mask with every modifier, the shapes in rotation (each program
   * build costs seconds on PoCL), f32; 16-bit storage on three of them. The
   * work-group kernel (slow on CPUs): both modifiers with every mask, or
   * one case. */
  for (int m = 0; m < 3; m++)
    for (int x = 0; x < NMODS; x++)
      for (int t = 0; t < 3; t++) {
        const int s = (m + x) % NSHAPES;
        if (t > 0 && (m + x) % 3 != 2) continue;
        if (t > 0 && t != 1 + (m & 1)) continue;
        if (few && (t > 0 || x != 2 || (few > 1 && m != 1))) continue;
        clattn_attention_desc d = make_desc(&shapes[s], masks[m], (clattn_dtype)t);
        d.softcap = mods[x].softcap;
        d.alibi_max_bias = mods[x].alibi;
        char label[160];
        snprintf(label, sizeof label, "mods/%s/s%d/m%d/softcap%g/alibi%g/t%d", tag, s, m,
                 mods[x].softcap, mods[x].alibi, t);
        check(ctx, &d, want, label);
      }
  /* a sparse mask (sliding window): the same kernels walk its tile lists */
  clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_WINDOW, CLATTN_DTYPE_F32);
  d.sparse.window_left = 20;
  d.sparse.window_right = 5;
  d.softcap = 3.0;
  d.alibi_max_bias = 4.0;
  char label[96];
  snprintf(label, sizeof label, "mods/%s/window", tag);
  check(ctx, &d, want, label);
  if (ctx != ctx0) clattn_context_release(ctx);
}

/* CPUs run flash_rows by default; the portable work-group kernel (what GPUs
 * run) is forced, with two tilings. */
static void test_flash_rows(void **state) { run_kernel(*state, NULL, NULL, "default", 0); }
static void test_flash_workgroup(void **state) {
  run_kernel(*state, "flash:bm=16,bn=16,tm=4,tn=4", "bm=16 bn=16 tm=4 tn=4", "wg16", 1);
  run_kernel(*state, "flash:bm=8,bn=32,tm=2,tn=8", "bm=8 bn=32 tm=2 tn=8", "wg8", 2);
}

/* The reference against closed forms: k = 0 (every score 0), v_j = e_j, so
 * output row i is the softmax of the modifier's bias over the visible keys;
 * and the softcap of known scores (q·k chosen). */
static void test_reference_closed_form(void **state) {
  (void)state;
  const int nq = 5, nk = 9, H = 3; /* 3 heads: slopes 2^-(8·1/2), 2^-(8·2/2), 2^-(8·1/4) */
  const double slope[3] = {exp2(-4.0), exp2(-8.0), exp2(-2.0)};
  for (int m = 0; m < 2; m++) {
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    d.heads = d.kv_heads = H;
    d.seq_q = nq;
    d.seq_kv = nk;
    d.head_dim = nk;
    d.mask = m ? CLATTN_MASK_CAUSAL_TOP_LEFT : CLATTN_MASK_NONE;
    d.alibi_max_bias = 8.0;
    float *q = calloc((size_t)H * nq * nk, sizeof *q), *k = calloc((size_t)H * nk * nk, sizeof *k);
    float *v = calloc((size_t)H * nk * nk, sizeof *v);
    double *o = calloc((size_t)H * nq * nk, sizeof *o), *lse = calloc((size_t)H * nq, sizeof *lse);
    assert_true(q && k && v && o && lse);
    for (int h = 0; h < H; h++)
      for (int j = 0; j < nk; j++)
        v[((size_t)h * nk + j) * nk + j] = 1.0f;
    assert_int_equal(clattn_reference_attention(&d, q, k, v, o, lse, NULL, 0), CLATTN_SUCCESS);
    for (int h = 0; h < H; h++)
      for (int i = 0; i < nq; i++) {
        const int p = m ? i : i + nk - nq;
        double w[9], sum = 0;
        for (int j = 0; j < nk; j++) {
          const int vis = m ? j <= i : 1;
          w[j] = vis ? exp(-slope[h] * abs(p - j)) : 0.0;
          sum += w[j];
        }
        for (int j = 0; j < nk; j++)
          if (fabs(o[((size_t)h * nq + i) * nk + j] - w[j] / sum) > 1e-12)
            fail_msg("ALiBi reference, mask %d, head %d row %d key %d: %g, want %g", m, h, i, j,
                     o[((size_t)h * nq + i) * nk + j], w[j] / sum);
        assert_true(fabs(lse[(size_t)h * nq + i] - log(sum)) < 1e-12);
      }
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
  }
  /* softcap: one query, two keys with scores 3 and -1 (scale 1), cap 2 */
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.seq_q = 1;
  d.seq_kv = 2;
  d.head_dim = 2;
  d.scale = 1.0;
  d.softcap = 2.0;
  const float q[2] = {1.0f, 0.0f}, k[4] = {3.0f, 0.0f, -1.0f, 0.0f}, v[4] = {1, 0, 0, 1};
  double o[2], lse;
  assert_int_equal(clattn_reference_attention(&d, q, k, v, o, &lse, NULL, 0), CLATTN_SUCCESS);
  const double s0 = 2.0 * tanh(1.5), s1 = 2.0 * tanh(-0.5);
  const double z = exp(s0) + exp(s1);
  assert_true(fabs(o[0] - exp(s0) / z) < 1e-12 && fabs(o[1] - exp(s1) / z) < 1e-12);
  assert_true(fabs(lse - log(z)) < 1e-12);
}

/* Bad values are argument errors; kernels without the modifiers decline
 * them by name (the decode kernel for paged caches, naive, the backward). */
static void test_validation(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make_desc(&shapes[2], CLATTN_MASK_NONE, CLATTN_DTYPE_F32);
  clattn_plan plan = NULL;
  const double bad[] = {-1.0, NAN, INFINITY, 1e31};
  for (int i = 0; i < 4; i++) {
    d.softcap = bad[i];
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(ctx), "softcap"));
    d.softcap = 0.0;
    d.alibi_max_bias = bad[i] == 1e31 ? 2e6 : bad[i];
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(ctx), "alibi_max_bias"));
    d.alibi_max_bias = 0.0;
  }
  assert_null(plan);
  d.softcap = 4.0;
  d.algo = CLATTN_ALGO_NAIVE;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(ctx), "are not in the naive kernel"));
  d.algo = CLATTN_ALGO_FLASH;
  /* the backward takes softcap and ALiBi (test_backward checks the gradients) */
  d.alibi_max_bias = 8.0;
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "backward"));
  clattn_plan_release(plan);
  plan = NULL;
  /* a score_mod has no backward: the kernels and the reference decline it */
  d.score_mod = "float clattn_score_mod(float s, int b, int h, int q, int k, "
                "__global const uchar *u) { return s; }\n";
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan),
                   CLATTN_ERROR_UNSUPPORTED);
  assert_non_null(strstr(clattn_context_last_error(ctx), "score_mod has no backward"));
  assert_int_equal(
      clattn_reference_attention_backward(&d, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      CLATTN_ERROR_UNSUPPORTED);
  d.score_mod = NULL;
  d.bias_type = CLATTN_BIAS_NONE;
  d.softcap = 0.0;
  d.seq_q = 1;
  d.seq_kv = 64;
  d.kv_layout = CLATTN_KV_PAGED;
  d.page_size = 16;
  d.num_pages = 8;
  d.max_pages_per_seq = 4;
  d.layout = CLATTN_LAYOUT_BSHD;
  /* paged: the decode kernels apply the modifiers (test_decode checks the values) */
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "decode"));
  assert_non_null(strstr(clattn_plan_describe(plan), "ALiBi max_bias 8"));
  clattn_plan_release(plan);
  plan = NULL;
  /* a bias tensor: the decode kernels take it too (test_decode checks the values) */
  d.alibi_max_bias = 0.0;
  d.bias_type = CLATTN_BIAS_F32;
  d.bias_strides = (clattn_strides){0, 0, 64, 1};
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "additive bias tensor"));
  clattn_plan_release(plan);
  plan = NULL;
  assert_null(plan);
}

/* Attention sinks (desc.sinks): every mask, GQA, rows without keys
 * (seq_q > seq_kv bottom-right: their output is 0 and LSE = the sink),
 * flash_rows and the work-group kernel, against the reference; with
 * softcap too. Then the validation of the values. */
static void test_sinks(void **state) {
  clattn_context ctx0 = *state;
  setenv("CLATTN_TUNE_OVERRIDE", "flash:bm=16,bn=32,tm=4,tn=8", 1);
  clattn_context wg = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  static const clattn_mask masks[] = {CLATTN_MASK_NONE, CLATTN_MASK_CAUSAL,
                                      CLATTN_MASK_CAUSAL_TOP_LEFT};
  const float sinks[6] = {-1.5f, 0.0f, 2.0f, 0.5f, -4.0f, 8.0f};
  for (int k = 0; k < 2; k++) {
    clattn_context ctx = k ? wg : ctx0;
    for (int si = 0; si < NSHAPES; si++)
      for (int mi = 0; mi < 3; mi++) {
        clattn_attention_desc d =
            make_desc(&shapes[si], masks[mi], mi == 2 && !k ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32);
        d.sinks = sinks;
        if (si == 1) d.softcap = 3.0;
        char label[200];
        snprintf(label, sizeof label, "sinks/%s/shape%d/%s", k ? "workgroup" : "rows", si,
                 clattn_mask_name(masks[mi]));
        check(ctx, &d, k ? "tm=4 tn=8" : NULL, label); /* the device's own kernel, then the forced one */
      }
  }
  clattn_context_release(wg);
  /* a sink that is not finite; sinks outside the flash family */
  clattn_attention_desc d = make_desc(&shapes[2], CLATTN_MASK_NONE, CLATTN_DTYPE_F32);
  float bad[4] = {0.0f, NAN, 1.0f, 1.0f};
  d.sinks = bad;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx0, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx0), "desc.sinks[1]"));
  bad[1] = 2.0f;
  d.algo = CLATTN_ALGO_NAIVE;
  assert_int_equal(clattn_plan_create(ctx0, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  d.algo = CLATTN_ALGO_FLASH;
  assert_int_equal(clattn_plan_create(ctx0, &d, 0, &plan), CLATTN_SUCCESS);
  bad[0] = 99.0f; /* the plan copied them */
  assert_true(clattn_plan_desc(plan)->sinks[0] == 0.0f);
  assert_non_null(strstr(clattn_plan_describe(plan), "attention sinks"));
  clattn_plan_release(plan);
}

/* Softcap and ALiBi (mods[(m + c) % NMODS]) with masks m0..m1-1 on shapes
 * (m + k·c) % NSHAPES, f16 causal and bf16 otherwise; then ALiBi without a
 * causal mask (77 rows, 130 keys: tiles whose keys lie before the rows,
 * after them and on both sides, each tile's sign of the distance), with and
 * without softcap (without, flash_tc: also with a negative scale); and softcap alone in f16 (the
 * tanh by an exp2 and a reciprocal) on shape s16 with mask c. Labels mods/TAGc/... */
static void mods_by_mask(clattn_context ctx, int c, int m0, int m1, int k, int s16, const char *tag,
                         const char *want) {
  static const clattn_mask masks[] = {CLATTN_MASK_NONE, CLATTN_MASK_CAUSAL,
                                      CLATTN_MASK_CAUSAL_TOP_LEFT};
  for (int m = m0; m < m1; m++) {
    const int x = (m + c) % NMODS, s = (m + k * c) % NSHAPES;
    clattn_attention_desc d =
        make_desc(&shapes[s], masks[m], m == 1 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16);
    d.softcap = mods[x].softcap;
    d.alibi_max_bias = mods[x].alibi;
    char label[160];
    snprintf(label, sizeof label, "mods/%s%d/s%d/m%d/softcap%g/alibi%g", tag, c, s, m,
             mods[x].softcap, mods[x].alibi);
    check(ctx, &d, want, label);
  }
  clattn_attention_desc d =
      make_desc(&shapes[0], CLATTN_MASK_NONE, c ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16);
  d.alibi_max_bias = 8.0;
  d.softcap = c ? 3.0 : 0.0;
  char label[96];
  snprintf(label, sizeof label, "mods/%s%d/alibi-noncausal", tag, c);
  check(ctx, &d, want, label);
  if (!c && !strcmp(tag, "tc")) { /* ALiBi alone: with a positive scale its term over the
                                   * scale starts S = Q·Kᵀ; a negative one takes the scores in
                                   * log2 units */
    d.scale = -d.scale;
    snprintf(label, sizeof label, "mods/%s%d/alibi-noncausal-negative-scale", tag, c);
    check(ctx, &d, want, label);
  }
  d = make_desc(&shapes[s16], masks[c], CLATTN_DTYPE_F16);
  d.softcap = c ? 2.0 : 5.0;
  snprintf(label, sizeof label, "mods/%s%d/f16-softcap%g", tag, c, d.softcap);
  check(ctx, &d, want, label);
}

/* The NVIDIA tensor-core kernel (flash_tc; on other devices its warp-level
 * PTX emulated with CLATTN_NV_EMULATE=1, else skipped), 16-bit storage:
 * softcap and ALiBi with every mask (one m-tile a warp; two: causal), ALiBi
 * without a mask, and sinks with rows that see no key, under both tilings. */
static void test_flash_tc(void **state) {
  (void)state;
  static const char *cfgs[2] = {"flash_tc:warps=2,mt=1,bn=32", "flash_tc:warps=1,mt=2,bn=16"};
  static const clattn_mask masks[] = {CLATTN_MASK_NONE, CLATTN_MASK_CAUSAL,
                                      CLATTN_MASK_CAUSAL_TOP_LEFT};
  const float sinks[6] = {-1.5f, 0.0f, 2.0f, 0.5f, -4.0f, 8.0f};
  for (int c = 0; c < 2; c++) {
    clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_F16);
    d.softcap = 5.0;
    clattn_context ctx = tu_forced_context(cfgs[c], &d);
    if (!ctx) skip(); /* flash_tc does not apply on this device */
    /* two m-tiles a warp: causal only; f16 softcap alone: its Q scaled by the cap once */
    mods_by_mask(ctx, c, c, 3 - c, 2, c, "tc", "flash_tc");
    /* bf16 softcap alone: the softmax with a fixed maximum (a cap of 50:
     * c = 96 - C with C = cap·log2 e = 72.1; 0.6: c = C) and above a cap of
     * 55.4 the running maximum (60), on rows of scores of one sign around
     * ±1e4 (the capped scores of a negative row all at -cap: the smallest p) */
    static const double caps[3] = {50.0, 0.6, 60.0};
    for (int k = 0; k < 3; k++) {
      d = make_desc(&shapes[(c + k) % NSHAPES], masks[k], CLATTN_DTYPE_BF16);
      d.softcap = caps[k];
      char labelc[96];
      snprintf(labelc, sizeof labelc, "mods/tc%d/bf16-softcap%g", c, d.softcap);
      tu_report rep;
      tu_run_and_compare(ctx, &d, TU_INPUT_EXTREME_ONE_SIGN, 1, 0, labelc, &rep);
      if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    }
    /* sinks, with rows that see no key (shape 1 bottom-right) and softcap */
    d = make_desc(&shapes[1], CLATTN_MASK_CAUSAL, CLATTN_DTYPE_BF16);
    d.sinks = sinks;
    d.softcap = c ? 3.0 : 0.0;
    char label[96];
    snprintf(label, sizeof label, "mods/tc%d/sinks", c);
    check(ctx, &d, "flash_tc", label);
    clattn_context_release(ctx);
  }
  /* the built-in row for bf16 softcap alone without a mask (8 warps of one m-tile, 64-key
   * tiles; tune_defaults.c), on a d = 64 problem with partial tiles */
  clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_BF16);
  d.head_dim = 64;
  d.softcap = 30.0;
  clattn_context ctx = tu_forced_context("flash_tc:warps=8,mt=1,bn=64", &d);
  if (!ctx) skip();
  check(ctx, &d, "flash_tc", "mods/tc/bf16-softcap30-w8");
  clattn_context_release(ctx);
  /* flash_tcq (Q in local memory, the same loop): ALiBi alone as the accumulators' start, tiles
   * on both sides of the rows and across them */
  d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_BF16);
  d.head_dim = 128;
  d.alibi_max_bias = 8.0;
  ctx = tu_forced_context("flash_tcq:warps=4,mt=2,bn=32", &d);
  if (!ctx) skip();
  check(ctx, &d, "flash_tcq", "mods/tcq/alibi-noncausal");
  clattn_context_release(ctx);
}

/* f32 on tensor cores (flash_tf32, 3xTF32; emulated elsewhere with
 * CLATTN_NV_EMULATE=1, else skipped): every modifier with every mask at the
 * f32 tolerances (softcap through exp2 and a reciprocal), and sinks with rows
 * that see no key. */
static void test_flash_tf32(void **state) {
  (void)state;
  static const clattn_mask masks[] = {CLATTN_MASK_NONE, CLATTN_MASK_CAUSAL,
                                      CLATTN_MASK_CAUSAL_TOP_LEFT};
  clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_F32);
  d.softcap = 5.0;
  clattn_context ctx = tu_forced_context("flash_tf32:warps=2,mt=1,bn=16", &d);
  if (!ctx) skip(); /* flash_tf32 does not apply on this device */
  for (int m = 0; m < 3; m++) {
    d = make_desc(&shapes[m], masks[m], CLATTN_DTYPE_F32);
    d.softcap = mods[(m + 2) % NMODS].softcap;
    d.alibi_max_bias = mods[(m + 2) % NMODS].alibi;
    char label[160];
    snprintf(label, sizeof label, "mods/tf32/s%d/m%d/softcap%g/alibi%g", m, m, d.softcap,
             d.alibi_max_bias);
    check(ctx, &d, "flash_tf32", label);
  }
  const float sinks[6] = {-1.5f, 0.0f, 2.0f, 0.5f, -4.0f, 8.0f};
  d = make_desc(&shapes[1], CLATTN_MASK_CAUSAL, CLATTN_DTYPE_F32);
  d.sinks = sinks;
  check(ctx, &d, "flash_tf32", "mods/tf32/sinks");
  clattn_context_release(ctx);
}

/* Hopper's warpgroup MMAs (flash_wgmma; emulated elsewhere with
 * CLATTN_NV_EMULATE=1, else skipped), 16-bit storage: softcap and ALiBi
 * with every mask in the overlapped schedule (two warpgroups; the loader
 * warpgroup changes only the copies, test_flash's test_warpgroup_mma), ALiBi
 * without a mask (tiles before, after and across the rows: the per-tile
 * sign), f16 softcap alone. */
static void test_flash_wgmma(void **state) {
  (void)state;
  clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_BF16);
  d.softcap = 5.0;
  clattn_context ctx = tu_forced_context("flash_wgmma:wgs=2,bn=32,st=3,ld=0", &d);
  if (!ctx) skip(); /* flash_wgmma does not apply on this device */
  mods_by_mask(ctx, 0, 0, 3, 1, 2, "wgmma", "flash_wgmma");
  clattn_context_release(ctx);
}

/* f16 softcap alone (two scores' reciprocals from one, cl/nv_mma.cl
 * NV_SOFTCAP_UNIT2) in flash_tc and flash_wgmma (emulated elsewhere, else
 * skipped): random scores with and without a mask, and rows of scores of one
 * sign around ±1e4, whose exponents exceed the cap of 63 (without it a·b
 * overflows: NaN). */
static void test_cap_pair(void **state) {
  (void)state;
  static const char *cfgs[2] = {"flash_tc:warps=2,mt=1,bn=32", "flash_wgmma:wgs=2,bn=32,st=3,ld=0"};
  int ran = 0;
  for (int v = 0; v < 2; v++) {
    clattn_attention_desc d = make_desc(&shapes[0], CLATTN_MASK_NONE, CLATTN_DTYPE_F16);
    d.softcap = 5.0;
    clattn_context ctx = tu_forced_context(cfgs[v], &d);
    if (!ctx) continue; /* the kernel does not apply on this device */
    ran++;
    const char *want = v ? "flash_wgmma" : "flash_tc";
    check(ctx, &d, want, v ? "pair/wgmma/none" : "pair/tc/none");
    d = make_desc(&shapes[1], CLATTN_MASK_CAUSAL, CLATTN_DTYPE_F16);
    d.softcap = 2.0;
    check(ctx, &d, want, v ? "pair/wgmma/causal" : "pair/tc/causal");
    d = make_desc(&shapes[2], CLATTN_MASK_NONE, CLATTN_DTYPE_F16);
    d.softcap = 30.0;
    tu_report rep;
    tu_run_and_compare(ctx, &d, TU_INPUT_EXTREME_ONE_SIGN, 1, 0,
                       v ? "pair/wgmma/extreme" : "pair/tc/extreme", &rep);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    clattn_context_release(ctx);
  }
  if (!ran) skip(); /* neither kernel applies on this device */
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_closed_form),
      cmocka_unit_test(test_flash_rows),
      cmocka_unit_test(test_flash_workgroup),
      cmocka_unit_test(test_validation),
      cmocka_unit_test(test_sinks),
      cmocka_unit_test(test_flash_tc),
      cmocka_unit_test(test_flash_tf32),
      cmocka_unit_test(test_flash_wgmma),
      cmocka_unit_test(test_cap_pair),
  };
  return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
