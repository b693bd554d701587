/* test_user_fns.c — user functions (desc.score_mod / mask_mod, OpenCL C compiled into the flash
 * kernels) against the float64 reference with C twins, against the native masks and ALiBi, and
 * their refusals. */
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
 * Each case draws q, k, v from its label's seed (f32 or bf16 storage, BHSD),
 * runs the plan (with the user buffer through clattn_plan_execute_ex),
 * NaN-poisons o and lse, and compares o and the LSE with
 * clattn_reference_attention_ex given the functions' C twins (tolerances
 * tu_rel_tol / tu_lse_tol per dtype). The kernels: flash_rows (what CPUs
 * run) and the portable work-group kernel (what GPUs run with user
 * functions), forced with a small tiling in a second context.
 */

/* ---- the functions, in OpenCL C and their C twins ---- */

/* causal, bottom-right, for seq_q = 77, seq_kv = 130 (offset 53) */
static const char *causal_src =
    "int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {\n"
    "  return kv_idx <= q_idx + 53;\n"
    "}\n";
static int causal_twin(int b, int h, int i, int j, const void *u) {
  (void)b, (void)h, (void)u;
  return j <= i + 53;
}

/* a sliding window of 16 keys each side around the diagonal (offset 53)
 * and the first 4 keys (StreamingLLM's sink tokens): the last row blocks'
 * tile lists have a gap (tile 0, then the window's tiles) */
static const char *window_src =
    "int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {\n"
    "  return abs(kv_idx - (q_idx + 53)) <= 16 || kv_idx < 4;\n"
    "}\n";
static int window_twin(int b, int h, int i, int j, const void *u) {
  (void)b, (void)h, (void)u;
  return abs(j - (i + 53)) <= 16 || j < 4;
}

/* document mask from the user buffer: ints [nq, doc of each query, doc of
 * each key], per batch entry b at offset b * stride (stride in user[0]... no:
 * the layout is [stride, nq, q docs (batch 0), k docs (batch 0), q docs
 * (batch 1), ...]); a key is visible when it is in the query's document and
 * not after it (causal within the document). */
static const char *doc_src =
    "int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {\n"
    "  __global const int *u = (__global const int *)user;\n"
    "  const int stride = u[0], nq = u[1];\n"
    "  __global const int *ids = u + 2 + b * stride;\n"
    "  return ids[q_idx] == ids[nq + kv_idx] && kv_idx <= q_idx + 53;\n"
    "}\n";
static int doc_twin(int b, int h, int i, int j, const void *user) {
  (void)h;
  const int *u = user;
  const int stride = u[0], nq = u[1];
  const int *ids = u + 2 + b * stride;
  return ids[i] == ids[nq + j] && j <= i + 53;
}

/* ALiBi through score_mod: slopes per head from the user buffer (floats),
 * positions aligned bottom-right (offset 53) as the built-in */
static const char *alibi_src =
    "float clattn_score_mod(float s, int b, int h, int q_idx, int kv_idx,\n"
    "                       __global const uchar *user) {\n"
    "  const float slope = ((__global const float *)user)[h];\n"
    "  return s - slope * (float)abs(q_idx + 53 - kv_idx);\n"
    "}\n";
static double alibi_twin(double s, int b, int h, int i, int j, const void *user) {
  (void)b;
  return s - ((const float *)user)[h] * (double)abs(i + 53 - j);
}

/* both functions in one text: a soft cap by a per-batch constant and a
 * mask that drops every third key */
static const char *both_src =
    "float clattn_score_mod(float s, int b, int h, int q_idx, int kv_idx,\n"
    "                       __global const uchar *user) {\n"
    "  const float c = 2.0f + (float)b;\n"
    "  return c * tanh(s / c);\n"
    "}\n"
    "int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {\n"
    "  return kv_idx % 3 != 2 || h == 0;\n"
    "}\n";
static double both_score_twin(double s, int b, int h, int i, int j, const void *u) {
  (void)h, (void)i, (void)j, (void)u;
  const double c = 2.0 + b;
  return c * tanh(s / c);
}
static int both_mask_twin(int b, int h, int i, int j, const void *u) {
  (void)b, (void)i, (void)u;
  return j % 3 != 2 || h == 0;
}

/* ---- one run ---- */

typedef struct run {
  double *o;  /* [B][H][Nq][d] as stored, widened */
  float *lse; /* [B][H][Nq] */
  char describe[1100];
} run;

static void run_free(run *r) {
  free(r->o);
  free(r->lse);
}

static void host_inputs(const clattn_attention_desc *d, const char *label, void *buf[3],
                        size_t n[3]) {
  const size_t es = d->dtype == CLATTN_DTYPE_F32 ? 4 : 2;
  n[0] = (size_t)d->batch * d->heads * d->seq_q * d->head_dim;
  n[1] = n[2] = (size_t)d->batch * d->kv_heads * d->seq_kv * d->head_dim;
  tu_rng r;
  tu_rng_init(&r, tu_case_seed(label));
  for (int t = 0; t < 3; t++) {
    buf[t] = malloc(n[t] * es);
    assert_non_null(buf[t]);
    for (size_t i = 0; i < n[t]; i++) {
      const float x = (float)tu_rng_uniform(&r, -1.5, 1.5);
      if (es == 4)
        ((float *)buf[t])[i] = x;
      else
        ((uint16_t *)buf[t])[i] = tu_float_to_bf16(x);
    }
  }
}

/* Runs the plan of d on ctx with the user buffer (host bytes, may be NULL). */
static int with_blocks;    /* run_device: make the mask's block classes first */
static const void *g_bias; /* run_device: the bias tensor's host bytes, or NULL */
static size_t g_bias_bytes;

static void run_device(clattn_context ctx, const clattn_attention_desc *d, void *in[3],
                       const size_t n[3], const void *user, size_t user_bytes, run *out) {
  const size_t es = d->dtype == CLATTN_DTYPE_F32 ? 4 : 2;
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, d, 0, &plan) != CLATTN_SUCCESS)
    fail_msg("plan: %s", clattn_context_last_error(ctx));
  snprintf(out->describe, sizeof out->describe, "%s", clattn_plan_describe(plan));
  const size_t no = (size_t)d->batch * d->heads * d->seq_q * d->head_dim;
  const size_t nl = (size_t)d->batch * d->heads * d->seq_q;
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = tu_buffer_from_host(ctx, in[0], n[0] * es);
  a.k = tu_buffer_from_host(ctx, in[1], n[1] * es);
  a.v = tu_buffer_from_host(ctx, in[2], n[2] * es);
  a.o = tu_buffer_nan(ctx, (no * es + 3) / 4);
  a.lse = tu_buffer_nan(ctx, nl);
  a.user = user ? tu_buffer_from_host(ctx, user, user_bytes) : NULL;
  a.bias = g_bias ? tu_buffer_from_host(ctx, g_bias, g_bias_bytes) : NULL;
  if (with_blocks && d->mask_mod) {
    const size_t ws = clattn_plan_workspace_size(plan);
    if (clattn_plan_update_mask_blocks(plan, a.user, 0, NULL, NULL) != CLATTN_SUCCESS)
      fail_msg("mask blocks: %s", clattn_context_last_error(ctx));
    assert_true(clattn_plan_workspace_size(plan) > ws); /* the classes are workspace */
  }
  if (clattn_plan_execute_ex(plan, &a, 0, NULL, NULL) != CLATTN_SUCCESS)
    fail_msg("execute: %s", clattn_context_last_error(ctx));
  void *ho = malloc(no * es);
  out->o = malloc(no * sizeof(double));
  out->lse = malloc(nl * sizeof(float));
  assert_true(ho && out->o && out->lse);
  assert_int_equal(tu_buffer_read(ctx, a.o, ho, no * es), CL_SUCCESS);
  assert_int_equal(tu_buffer_read(ctx, a.lse, out->lse, nl * sizeof(float)), CL_SUCCESS);
  for (size_t i = 0; i < no; i++)
    out->o[i] = es == 4 ? ((float *)ho)[i] : tu_bf16_to_float(((uint16_t *)ho)[i]);
  free(ho);
  cl_mem all[7] = {a.q, a.k, a.v, a.o, a.lse, a.user, a.bias};
  for (int i = 0; i < 7; i++)
    if (all[i]) clReleaseMemObject(all[i]);
  clattn_plan_release(plan);
}

/* Device output vs the reference (with twins): fails with the label. */
static void compare_ref(const clattn_attention_desc *d, void *in[3], const run *r,
                        const clattn_reference_fns *fns, const char *label) {
  const size_t no = (size_t)d->batch * d->heads * d->seq_q * d->head_dim;
  const size_t nl = (size_t)d->batch * d->heads * d->seq_q;
  double *ro = malloc(no * sizeof(double)), *rl = malloc(nl * sizeof(double));
  assert_true(ro && rl);
  assert_int_equal(clattn_reference_attention_ex(d, in[0], in[1], in[2], ro, rl, NULL, 0, fns),
                   CLATTN_SUCCESS);
  double num = 0, den = 0, lerr = 0;
  size_t bad = 0, empty = 0;
  for (size_t i = 0; i < no; i++) {
    if (!isfinite(r->o[i])) bad++;
    num += (r->o[i] - ro[i]) * (r->o[i] - ro[i]);
    den += ro[i] * ro[i];
  }
  for (size_t i = 0; i < nl; i++) {
    if (isinf(rl[i])) { /* no visible key: the device says -inf too */
      empty++;
      if (!(isinf(r->lse[i]) && r->lse[i] < 0)) bad++;
      continue;
    }
    const double e = fabs(r->lse[i] - rl[i]);
    if (!(e <= lerr)) lerr = e; /* NaN propagates */
  }
  const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  if (bad || !(rel <= tu_rel_tol(d->dtype)) || !(lerr <= tu_lse_tol(d->dtype)))
    fail_msg("%s: rel err %.3g (tol %.1g), lse err %.3g (tol %.1g), %zu bad, %zu empty rows; %s",
             label, rel, tu_rel_tol(d->dtype), lerr, tu_lse_tol(d->dtype), bad, empty, r->describe);
  free(ro);
  free(rl);
}

static clattn_attention_desc make(clattn_dtype t) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 2;
  d.heads = 6;
  d.kv_heads = 2;
  d.seq_q = 77;
  d.seq_kv = 130;
  d.head_dim = 40;
  d.dtype = t;
  d.algo = CLATTN_ALGO_FLASH;
  d.scale = 0.4;
  return d;
}

/* The document ids of the doc mask: 2 batch entries, documents of 1..40
 * tokens, the query rows being the last 77 of the 130 key positions. */
static int *doc_ids(size_t *bytes) {
  const int nq = 77, nk = 130, stride = nq + nk;
  int *u = malloc((size_t)(2 + 2 * stride) * sizeof(int));
  assert_non_null(u);
  u[0] = stride;
  u[1] = nq;
  tu_rng r;
  tu_rng_init(&r, tu_case_seed("user/doc_ids"));
  for (int b = 0; b < 2; b++) {
    int *ids = u + 2 + b * stride, doc = 0, left = 0;
    for (int j = 0; j < nk; j++) {
      if (left == 0) {
        doc++;
        left = 1 + (int)(tu_rng_next(&r) % 40);
      }
      left--;
      ids[nq + j] = doc;
    }
    for (int i = 0; i < nq; i++)
      ids[i] = ids[nq + i + 53]; /* query i sits at key position i + 53 */
  }
  *bytes = (size_t)(2 + 2 * stride) * sizeof(int);
  return u;
}

static int g_only16; /* cases(), bias_cases(): 16-bit storage only, no 16-bit biases (flash_tc:
                        the bias types are common code; each program costs seconds emulated) */
static int g_only32; /* cases(), bias_cases(): f32 storage only (flash_tf32) */

static void cases(clattn_context ctx, const char *tag, const char *want) {
  static const clattn_dtype dts[2] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_BF16};
  for (int di = g_only16; di < 2 - g_only32; di++) {
    const clattn_dtype dt = dts[di];
    char label[160];
    void *in[3];
    size_t n[3];
    run r, r2;
    /* 1. mask_mod = causal: the reference, and the native causal plan */
    clattn_attention_desc d = make(dt);
    d.mask_mod = causal_src;
    snprintf(label, sizeof label, "user/%s/%s/causal", tag, clattn_dtype_name(dt));
    host_inputs(&d, label, in, n);
    const clattn_reference_fns cf = {NULL, causal_twin, NULL, NULL};
    run_device(ctx, &d, in, n, NULL, 0, &r);
    if (want && !strstr(r.describe, want)) fail_msg("%s: not %s: %s", label, want, r.describe);
    assert_non_null(strstr(r.describe, "user mask_mod"));
    compare_ref(&d, in, &r, &cf, label);
    clattn_attention_desc nat = make(dt);
    nat.mask = CLATTN_MASK_CAUSAL;
    run_device(ctx, &nat, in, n, NULL, 0, &r2);
    double md = 0;
    for (size_t i = 0; i < n[0]; i++)
      md = fmax(md, fabs(r.o[i] - r2.o[i]));
    if (!(md <= (dt == CLATTN_DTYPE_F32 ? 1e-5 : 1e-2)))
      fail_msg("%s: differs from the native causal mask by %.3g", label, md);
    run_free(&r);
    run_free(&r2);
    /* 2. a sliding window */
    d.mask_mod = window_src;
    snprintf(label, sizeof label, "user/%s/%s/window", tag, clattn_dtype_name(dt));
    const clattn_reference_fns wf = {NULL, window_twin, NULL, NULL};
    run_device(ctx, &d, in, n, NULL, 0, &r);
    compare_ref(&d, in, &r, &wf, label);
    run_free(&r);
    /* 3. documents from the user buffer, GQA */
    size_t ub = 0;
    int *ids = doc_ids(&ub);
    d.mask_mod = doc_src;
    snprintf(label, sizeof label, "user/%s/%s/documents", tag, clattn_dtype_name(dt));
    const clattn_reference_fns df = {NULL, doc_twin, ids, NULL};
    run_device(ctx, &d, in, n, ids, ub, &r);
    compare_ref(&d, in, &r, &df, label);
    run_free(&r);
    free(ids);
    /* 4. ALiBi through score_mod = the built-in ALiBi (the reference of the
     * built-in, and the twin) */
    d.mask_mod = NULL;
    d.score_mod = alibi_src;
    float slopes[6];
    for (int h = 0; h < 6; h++)
      slopes[h] = (float)pow(2.0, -8.0 * (h + 1) / 4.0 * (h < 4) -
                                      8.0 * (2 * (h - 4) + 1) / 8.0 * (h >= 4));
    snprintf(label, sizeof label, "user/%s/%s/alibi", tag, clattn_dtype_name(dt));
    run_device(ctx, &d, in, n, slopes, sizeof slopes, &r);
    const clattn_reference_fns af = {alibi_twin, NULL, slopes, NULL};
    compare_ref(&d, in, &r, &af, label);
    clattn_attention_desc bi = make(dt);
    bi.alibi_max_bias = 8.0;
    compare_ref(&bi, in, &r, NULL, label); /* the built-in's reference */
    run_free(&r);
    /* 5. both in one text, causal desc.mask on top */
    d.score_mod = d.mask_mod = both_src;
    d.mask = CLATTN_MASK_CAUSAL_TOP_LEFT;
    snprintf(label, sizeof label, "user/%s/%s/both", tag, clattn_dtype_name(dt));
    const clattn_reference_fns bf = {both_score_twin, both_mask_twin, NULL, NULL};
    run_device(ctx, &d, in, n, NULL, 0, &r);
    compare_ref(&d, in, &r, &bf, label);
    run_free(&r);
    for (int t = 0; t < 3; t++)
      free(in[t]);
  }
}

static void test_flash_rows(void **state) {
  with_blocks = 0;
  cases(*state, "rows", NULL);
  with_blocks = 1; /* the same with block classes (hidden tiles skipped) */
  cases(*state, "rows-blocks", NULL);
  with_blocks = 0;
}

static void test_flash_workgroup(void **state) {
  (void)state;
  setenv("CLATTN_TUNE_OVERRIDE", "flash:bm=16,bn=32,tm=4,tn=8", 1);
  clattn_context ctx = tu_new_context(); /* reads the environment */
  unsetenv("CLATTN_TUNE_OVERRIDE");
  with_blocks = 0;
  cases(ctx, "workgroup", "tm=4 tn=8");
  with_blocks = 1;
  cases(ctx, "workgroup-blocks", "tm=4 tn=8");
  with_blocks = 0;
  clattn_context_release(ctx);
}

/* ---- bias tensors (PyTorch attn_mask) ---- */

static uint16_t to16(clattn_dtype t, float x) {
  return t == CLATTN_DTYPE_F16 ? tu_float_to_half(x) : tu_float_to_bf16(x);
}

/* Bias cases on ctx: a full f32 bias with -inf entries (whole tiles, a
 * whole row), a bool mask broadcast over batch and heads (= the native
 * causal mask when it is causal), 16-bit biases broadcast over the batch. */
static void bias_cases(clattn_context ctx, const char *tag, const char *want) {
  const float NEG = -INFINITY;
  for (int di = g_only16; di < 2 - g_only32; di++) {
    const clattn_dtype dt = di ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
    clattn_attention_desc d = make(dt);
    const int B = d.batch, H = d.heads, L = d.seq_q, S = d.seq_kv;
    char label[160];
    void *in[3];
    size_t n[3];
    snprintf(label, sizeof label, "bias/%s/%s", tag, clattn_dtype_name(dt));
    host_inputs(&d, label, in, n);
    tu_rng r;
    tu_rng_init(&r, tu_case_seed(label));
    run out, nat;
    /* 1. f32 [B][H][L][S], -inf: keys 64..127 for every row of batch 1
     * (whole tiles), row 5 of head 2 entirely, and scattered entries */
    const size_t nb = (size_t)B * H * L * S;
    float *bf = malloc(nb * sizeof(float));
    assert_non_null(bf);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++)
          for (int j = 0; j < S; j++) {
            float x = (float)tu_rng_uniform(&r, -2.0, 2.0);
            if ((b == 1 && j >= 64 && j < 128) || (h == 2 && i == 5) || (i * 7 + j) % 11 == 0)
              x = NEG;
            bf[(((size_t)b * H + h) * L + i) * S + j] = x;
          }
    d.bias_type = CLATTN_BIAS_F32;
    d.bias_strides = (clattn_strides){(int64_t)H * L * S, (int64_t)L * S, S, 1};
    g_bias = bf;
    g_bias_bytes = nb * sizeof(float);
    run_device(ctx, &d, in, n, NULL, 0, &out);
    if (want && !strstr(out.describe, want)) fail_msg("%s: not %s: %s", label, want, out.describe);
    assert_non_null(strstr(out.describe, "additive bias tensor"));
    const clattn_reference_fns ff = {NULL, NULL, NULL, bf};
    compare_ref(&d, in, &out, &ff, label);
    run_free(&out);
    free(bf);
    /* 2. a bool [L][S] causal mask for every batch entry and head = causal */
    unsigned char *bm = malloc((size_t)L * S);
    assert_non_null(bm);
    for (int i = 0; i < L; i++)
      for (int j = 0; j < S; j++)
        bm[(size_t)i * S + j] = j <= i + (S - L);
    d.bias_type = CLATTN_BIAS_BOOL;
    d.bias_strides = (clattn_strides){0, 0, S, 1};
    g_bias = bm;
    g_bias_bytes = (size_t)L * S;
    run_device(ctx, &d, in, n, NULL, 0, &out);
    const clattn_reference_fns bfn = {NULL, NULL, NULL, bm};
    compare_ref(&d, in, &out, &bfn, label);
    g_bias = NULL;
    clattn_attention_desc c = make(dt);
    c.mask = CLATTN_MASK_CAUSAL;
    run_device(ctx, &c, in, n, NULL, 0, &nat);
    double md = 0;
    for (size_t i = 0; i < n[0]; i++)
      md = fmax(md, fabs(out.o[i] - nat.o[i]));
    if (!(md <= (dt == CLATTN_DTYPE_F32 ? 1e-5 : 1e-2)))
      fail_msg("%s: the causal bool mask differs from the native causal mask by %.3g", label, md);
    run_free(&out);
    run_free(&nat);
    free(bm);
    /* 3. 16-bit [H][L][S] biases broadcast over the batch, with a causal desc.mask */
    for (int t = 0; t < 2 && !g_only16; t++) {
      const clattn_dtype bt = t ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F16;
      uint16_t *bh = malloc((size_t)H * L * S * 2);
      assert_non_null(bh);
      for (size_t e = 0; e < (size_t)H * L * S; e++)
        bh[e] = to16(bt, e % 13 == 0 ? NEG : (float)tu_rng_uniform(&r, -3.0, 3.0));
      d.bias_type = t ? CLATTN_BIAS_BF16 : CLATTN_BIAS_F16;
      d.bias_strides = (clattn_strides){0, (int64_t)L * S, S, 1};
      d.mask = CLATTN_MASK_CAUSAL_TOP_LEFT;
      g_bias = bh;
      g_bias_bytes = (size_t)H * L * S * 2;
      run_device(ctx, &d, in, n, NULL, 0, &out);
      const clattn_reference_fns hf = {NULL, NULL, NULL, bh};
      compare_ref(&d, in, &out, &hf, label);
      run_free(&out);
      free(bh);
      d.mask = CLATTN_MASK_NONE;
    }
    g_bias = NULL;
    for (int i = 0; i < 3; i++)
      free(in[i]);
  }
}

static void test_bias(void **state) {
  bias_cases(*state, "rows", NULL);
  setenv("CLATTN_TUNE_OVERRIDE", "flash:bm=16,bn=32,tm=4,tn=8", 1);
  clattn_context ctx = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  bias_cases(ctx, "workgroup", "tm=4 tn=8");
  clattn_context_release(ctx);
  /* refusals: strides, a bias buffer without a type and the reverse, a
   * buffer smaller than the span, ragged */
  clattn_context c0 = *state;
  clattn_attention_desc d = make(CLATTN_DTYPE_F32);
  clattn_plan plan = NULL;
  d.bias_type = CLATTN_BIAS_BOOL;
  d.bias_strides = (clattn_strides){0, 0, -1, 1};
  assert_int_equal(clattn_plan_create(c0, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(c0), "bias_strides"));
  d.bias_type = 9;
  assert_int_equal(clattn_plan_create(c0, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  d.bias_type = CLATTN_BIAS_BOOL;
  d.bias_strides = (clattn_strides){0, 0, d.seq_kv, 1};
  assert_int_equal(clattn_plan_create(c0, &d, 0, &plan), CLATTN_SUCCESS);
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = a.k = a.v = tu_buffer_nan(c0, 2 * 6 * 130 * 40);
  a.o = tu_buffer_nan(c0, 2 * 6 * 77 * 40);
  assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(c0), "bias is NULL"));
  a.bias = tu_buffer_nan(c0, 77 * 130 / 4 - 1); /* one word short */
  assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(c0), "bias"));
  clattn_plan_release(plan);
  clattn_attention_desc plain = make(CLATTN_DTYPE_F32);
  assert_int_equal(clattn_plan_create(c0, &plain, 0, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(c0), "CLATTN_BIAS_NONE"));
  clattn_plan_release(plan);
  clReleaseMemObject(a.q);
  clReleaseMemObject(a.o);
  clReleaseMemObject(a.bias);
  d.ragged = 1;
  d.total_q = 100;
  d.total_kv = 200;
  d.layout = CLATTN_LAYOUT_BSHD;
  assert_int_equal(clattn_plan_create(c0, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  /* the reference needs the bias */
  double o[8];
  float x[8] = {0};
  d.ragged = 0;
  d.layout = CLATTN_LAYOUT_BHSD;
  assert_int_equal(clattn_reference_attention(&d, x, x, x, o, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
}

static void test_refusals(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make(CLATTN_DTYPE_F32);
  clattn_plan plan = NULL;
  /* a compile error: INVALID_ARGUMENT with the compiler's log */
  d.score_mod = "float clattn_score_mod(float s, int b, int h, int q, int k,\n"
                "                       __global const uchar *user) { return s +; }\n";
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  const char *msg = clattn_context_last_error(ctx);
  if (!strstr(msg, "score_mod") || !strstr(msg, "build log"))
    fail_msg("no compiler log in: %s", msg);
  /* a wrong signature is a compile error too */
  d.score_mod = "int clattn_score_mod(void) { return 0; }\n";
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  /* an empty text, and user functions outside the flash family */
  d.score_mod = "";
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "desc.score_mod"));
  d.score_mod = NULL;
  d.mask_mod = causal_src;
  d.algo = CLATTN_ALGO_NAIVE;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  d.algo = CLATTN_ALGO_FLASH;
  /* the backward takes a mask_mod (test_backward checks the gradients) */
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "backward"));
  clattn_plan_release(plan);
  plan = NULL;
  /* decode-sized problems run on the decode kernels, which take them
   * (test_decode checks the values); block classes have nothing to do there */
  clattn_attention_desc dq = d;
  dq.seq_q = 1;
  assert_int_equal(clattn_plan_create(ctx, &dq, 0, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "decode"));
  assert_non_null(strstr(clattn_plan_describe(plan), "user mask_mod"));
  cl_event ev = NULL;
  assert_int_equal(clattn_plan_update_mask_blocks(plan, NULL, 0, NULL, &ev), CLATTN_SUCCESS);
  assert_non_null(ev);
  assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
  clReleaseEvent(ev);
  clattn_plan_release(plan);
  /* the reference needs the twins */
  double o[8];
  float x[8] = {0};
  assert_int_equal(clattn_reference_attention(&d, x, x, x, o, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  /* a user buffer without user functions */
  clattn_attention_desc plain = make(CLATTN_DTYPE_F32);
  assert_int_equal(clattn_plan_create(ctx, &plain, 0, &plan), CLATTN_SUCCESS);
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = a.k = a.v = tu_buffer_nan(ctx, 2 * 6 * 130 * 40);
  a.o = tu_buffer_nan(ctx, 2 * 6 * 77 * 40);
  a.user = tu_buffer_nan(ctx, 16);
  assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "user"));
  clReleaseMemObject(a.q);
  clReleaseMemObject(a.o);
  clReleaseMemObject(a.user);
  clattn_plan_release(plan);
  /* block classes: only with a mask_mod; a ragged plan's through the _ex
   * entry point with its tables */
  assert_int_equal(clattn_plan_create(ctx, &plain, 0, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_update_mask_blocks(plan, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  clattn_plan_release(plan);
  clattn_attention_desc rg = d;
  rg.ragged = 1;
  rg.total_q = 200;
  rg.total_kv = 300;
  rg.layout = CLATTN_LAYOUT_BSHD;
  assert_int_equal(clattn_plan_create(ctx, &rg, 0, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_update_mask_blocks(plan, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "clattn_plan_update_mask_blocks_ex"));
  clattn_exec_args ea;
  memset(&ea, 0, sizeof ea);
  assert_int_equal(clattn_plan_update_mask_blocks_ex(plan, &ea, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT); /* without the tables */
  assert_int_equal(clattn_plan_update_mask_blocks_ex(plan, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  ea.cu_seqlens_q = tu_buffer_nan(ctx, 1); /* 4 bytes: shorter than batch + 1 ints */
  ea.cu_seqlens_kv = tu_buffer_nan(ctx, 1);
  assert_int_equal(clattn_plan_update_mask_blocks_ex(plan, &ea, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(ctx), "cu_seqlens_q"));
  clReleaseMemObject(ea.cu_seqlens_q);
  clReleaseMemObject(ea.cu_seqlens_kv);
  clattn_plan_release(plan);
  /* the plan keeps its own copy of the text */
  char *src = malloc(strlen(causal_src) + 1);
  strcpy(src, causal_src);
  d.mask_mod = src;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  memset(src, 'x', strlen(src));
  free(src);
  assert_non_null(strstr(clattn_plan_desc(plan)->mask_mod, "clattn_mask_mod"));
  clattn_plan_release(plan);
}

/* A tensor-core variant forced by cfg (on other devices than NVIDIA its
 * warp-level PTX emulated with CLATTN_NV_EMULATE=1, else skipped): every
 * user function case with and without block classes (32-row blocks, 32-key
 * tiles: the lists' hidden, partial and shown tiles, the cp.async pipeline
 * fetching the next listed tile), and the bias tensors, in storage dt only
 * (the plans must be want's). */
static void tc_variant_cases(const char *cfg, clattn_dtype dt, const char *tag, const char *want) {
  clattn_attention_desc d = make(dt);
  d.mask_mod = window_src;
  clattn_context ctx = tu_forced_context(cfg, &d);
  if (!ctx) skip(); /* the variant does not apply on this device */
  g_only16 = dt != CLATTN_DTYPE_F32;
  g_only32 = dt == CLATTN_DTYPE_F32;
  char blocks[32];
  snprintf(blocks, sizeof blocks, "%s-blocks", tag);
  with_blocks = 0;
  cases(ctx, tag, want);
  with_blocks = 1;
  cases(ctx, blocks, want);
  with_blocks = 0;
  bias_cases(ctx, tag, want);
  g_only16 = g_only32 = 0;
  clattn_context_release(ctx);
}

/* flash_tc, bf16 */
static void test_flash_tc(void **state) {
  (void)state;
  tc_variant_cases("flash_tc:warps=2,mt=1,bn=32", CLATTN_DTYPE_BF16, "tc", "flash_tc");
}

/* flash_tf32 (f32 on tensor cores, 3xTF32), at the f32 tolerances */
static void test_flash_tf32(void **state) {
  (void)state;
  tc_variant_cases("flash_tf32:warps=2,mt=1,bn=32", CLATTN_DTYPE_F32, "tf32", "flash_tf32");
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals),        cmocka_unit_test(test_flash_rows),
      cmocka_unit_test(test_flash_workgroup), cmocka_unit_test(test_bias),
      cmocka_unit_test(test_flash_tc),        cmocka_unit_test(test_flash_tf32),
  };
  return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
