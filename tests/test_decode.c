/* test_decode.c — decode (split-KV), paged KV cache, ragged batches, merge_states, kv_append and
 * hostile tables vs per-sequence float64 references. */
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
 * Every case draws per-sequence logical tensors Q [nq][Hq][d], K, V
 * [nk][Hk][d] (fresh random values, rounded to the storage type), places
 * them into the device layout under test (fixed BSHD/BHSD, ragged packed,
 * page pools in shuffled order with shared prefix pages), runs the plan,
 * and compares each sequence with clattn_reference_attention on its own
 * gathered contiguous data (batch 1, BSHD). Outputs are NaN-poisoned;
 * tolerances tu_rel_tol (f32 1e-5, f16 1e-3, bf16 1e-2). Pools sit inside
 * NaN guard regions (sub-buffers), so a read outside them shows as NaN.
 */

#define MAXB 8
#define GUARD 4096 /* bytes of NaN before and after each pool */

typedef struct dcase {
  int B, Hq, Hk, D;
  clattn_dtype dtype;
  clattn_mask mask;
  int nq[MAXB], nk[MAXB];
  int ragged;    /* packed Q/O (and K/V when contiguous) */
  int kv;        /* clattn_kv_layout */
  int seqlens;   /* contiguous, not ragged: pass seqlens_kv */
  int layout;    /* fixed mode: CLATTN_LAYOUT_BSHD or BHSD */
  int page_size; /* paged */
  int share;     /* paged: sequences b > 0 share seq 0's first `share` pages */
  const char *config;
  int hostile;        /* 1: break the tables (run must not crash; outputs finite) */
  int strided;        /* padded STRIDED layout (pools: padded page strides) */
  int optional;       /* a forced kernel that may not apply on this device: skipped then */
  unsigned flags;     /* plan flags */
  const float *sinks; /* attention sinks (Hq values), or NULL */
  clattn_kv_dtype kvq; /* quantized K/V: random codes and scales, pools of one-byte codes */
  clattn_kv_scale kvs;
  int dim2; /* K/V every stride doubled (dim stride 2: the per-element loads) */
  double softcap, alibi;            /* score modifiers */
  const char *score_mod, *mask_mod; /* user functions (OpenCL C) */
  const clattn_reference_fns *fns;  /* their C twins and the user buffer's host copy */
  size_t user_bytes;
  int bias_type; /* a bias tensor: its host copy, bytes, strides (not ragged) */
  const void *bias;
  size_t bias_bytes;
  clattn_strides bias_strides;
  int blocks; /* a mask_mod's block classes first (clattn_plan_update_mask_blocks_ex): 1 for
                the case's tables, 2 (ragged) for tables with half the keys (not to be used) */
  const char *want_describe; /* a phrase describe() must hold when the plan is flash_rows */
  const char *decode_has, *decode_lacks; /* phrases a decode plan's describe() must (not) hold */
  int profile; /* also clattn_plan_profile_ex (the output is checked after it) */
} dcase;

static clattn_context g_ctx;
static int g_skipped; /* optional cases whose kernel did not apply here */

/* A case's host arrays: logical rows per sequence, block table, stored Q/K/V. */
static void free_host(int B, float **lq, float **lk, float **lv, int *bt, void *hq, void *hk,
                      void *hv) {
  for (int b = 0; b < B; b++) {
    free(lq[b]);
    free(lk[b]);
    free(lv[b]);
  }
  free(bt);
  free(hq);
  free(hk);
  free(hv);
}

static float round_to(clattn_dtype t, float x) {
  if (t == CLATTN_DTYPE_F16) return tu_half_to_float(tu_float_to_half(x));
  if (t == CLATTN_DTYPE_BF16) return tu_bf16_to_float(tu_float_to_bf16(x));
  return x;
}
static void store(clattn_dtype t, void *base, size_t i, float x) {
  if (t == CLATTN_DTYPE_F32)
    ((float *)base)[i] = x;
  else
    ((uint16_t *)base)[i] = t == CLATTN_DTYPE_F16 ? tu_float_to_half(x) : tu_float_to_bf16(x);
}
static float load(clattn_dtype t, const void *base, size_t i) {
  if (t == CLATTN_DTYPE_F32) return ((const float *)base)[i];
  const uint16_t h = ((const uint16_t *)base)[i];
  return t == CLATTN_DTYPE_F16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
}
static void fill_nan(clattn_dtype t, void *base, size_t n) {
  if (t == CLATTN_DTYPE_F32)
    for (size_t i = 0; i < n; i++)
      ((float *)base)[i] = NAN;
  else
    memset(base, 0xff, n * 2);
}

static cl_mem buf_from(const void *h, size_t bytes) {
  cl_mem m = tu_buffer_from_host(g_ctx, h, bytes ? bytes : 4);
  assert_non_null(m);
  return m;
}

/* A pool buffer inside NaN guards: returns the sub-buffer, *parent the whole
 * (quantized pools: 0xff bytes, a NaN code of both fp8 types). */
static cl_mem guarded(const void *h, size_t bytes, clattn_dtype t, bool quant, cl_mem *parent) {
  const size_t es = t == CLATTN_DTYPE_F32 ? 4 : 2;
  unsigned char *all = malloc(bytes + 2 * GUARD);
  assert_non_null(all);
  if (quant)
    memset(all, 0xff, bytes + 2 * GUARD);
  else
    fill_nan(t, all, (bytes + 2 * GUARD) / es);
  memcpy(all + GUARD, h, bytes);
  *parent = buf_from(all, bytes + 2 * GUARD);
  free(all);
  cl_buffer_region reg = {GUARD, bytes};
  cl_int err;
  cl_mem sub =
      clCreateSubBuffer(*parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &reg, &err);
  assert_int_equal(err, CL_SUCCESS);
  return sub;
}

static double run_case(const dcase *c, const char *label) {
  const uint64_t seed = tu_case_seed(label);
  tu_rng rng;
  tu_rng_init(&rng, seed);
  const clattn_dtype t = c->dtype;
  const size_t es = t == CLATTN_DTYPE_F32 ? 4 : 2;
  const int D = c->D, Hq = c->Hq, Hk = c->Hk, B = c->B;
  int nqmax = 1, nkmax = 1, totq = 0, totk = 0;
  int cuq[MAXB + 1] = {0}, cuk[MAXB + 1] = {0};
  for (int b = 0; b < B; b++) {
    if (c->nq[b] > nqmax) nqmax = c->nq[b];
    if (c->nk[b] > nkmax) nkmax = c->nk[b];
    cuq[b + 1] = cuq[b] + c->nq[b];
    cuk[b + 1] = cuk[b] + c->nk[b];
  }
  totq = cuq[B];
  totk = cuk[B];
  /* Logical data per sequence (float, already rounded to the storage type). */
  float *lq[MAXB], *lk[MAXB], *lv[MAXB];
  const int ps = c->page_size > 0 ? c->page_size : 1;
  for (int b = 0; b < B; b++) {
    const size_t nqv = (size_t)(c->nq[b] ? c->nq[b] : 1) * Hq * D;
    const size_t nkv = (size_t)(c->nk[b] ? c->nk[b] : 1) * Hk * D;
    lq[b] = malloc(nqv * 4);
    lk[b] = malloc(nkv * 4);
    lv[b] = malloc(nkv * 4);
    for (size_t i = 0; i < nqv; i++)
      lq[b][i] = round_to(t, (float)tu_rng_uniform(&rng, -2, 2));
    for (size_t i = 0; i < nkv; i++) {
      lk[b][i] = round_to(t, (float)tu_rng_uniform(&rng, -1, 1));
      lv[b][i] = round_to(t, (float)tu_rng_uniform(&rng, -1, 1));
    }
    if (c->share && b > 0) { /* the shared prefix holds sequence 0's tokens */
      const size_t n = (size_t)c->share * ps * Hk * D;
      memcpy(lk[b], lk[0], n * 4);
      memcpy(lv[b], lv[0], n * 4);
    }
  }

  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = B;
  d.heads = Hq;
  d.kv_heads = Hk;
  d.head_dim = D;
  d.dtype = t;
  d.mask = c->mask;
  d.seq_q = nqmax;
  d.seq_kv = nkmax;
  d.layout = c->layout ? (clattn_layout)c->layout : CLATTN_LAYOUT_BSHD;
  d.kv_layout = (clattn_kv_layout)c->kv;
  d.ragged = c->ragged;
  d.total_q = totq > 0 ? totq : 1;
  d.total_kv = totk > 0 ? totk : 1;
  d.sinks = c->sinks;
  d.softcap = c->softcap;
  d.alibi_max_bias = c->alibi;
  d.score_mod = c->score_mod;
  d.mask_mod = c->mask_mod;
  d.bias_type = c->bias_type;
  d.bias_strides = c->bias_strides;
  /* Pages: sequence b's pages in a shuffled pool, shared prefix pages. */
  int maxp = (nkmax + ps - 1) / ps, npages = 0;
  int *bt = calloc((size_t)B * maxp + 1, sizeof(int));
  if (c->kv) {
    int total = 0;
    for (int b = 0; b < B; b++)
      total += (c->nk[b] + ps - 1) / ps;
    npages = total + 3; /* a few unused pages */
    int *perm = malloc((size_t)npages * sizeof(int));
    for (int i = 0; i < npages; i++)
      perm[i] = i;
    for (int i = npages - 1; i > 0; i--) {
      const int j = (int)(tu_rng_next(&rng) % (uint64_t)(i + 1)), x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    int next = 0;
    for (int b = 0; b < B; b++)
      for (int p = 0; p < (c->nk[b] + ps - 1) / ps; p++)
        bt[b * maxp + p] = (c->share && b > 0 && p < c->share) ? bt[p] : perm[next++];
    free(perm);
    d.page_size = ps;
    d.num_pages = npages;
    d.max_pages_per_seq = maxp;
  }
  if (c->strided && !c->ragged) { /* padded rows, heads, batches / pages */
    clattn_attention_desc pad = d;
    if (c->kv) pad.seq_kv = ps;
    tu_set_padded_strides(&pad, 3, 5, c->kv != CLATTN_KV_PAGED_HEAD_MAJOR);
    d.layout = pad.layout;
    d.q_strides = pad.q_strides;
    d.k_strides = pad.k_strides;
    d.v_strides = pad.v_strides;
    d.o_strides = pad.o_strides;
  }
  if (c->dim2) { /* K/V with every stride doubled: a dim stride of 2 */
    clattn_strides s4[4];
    assert_int_equal(clattn_attention_desc_strides(&d, &s4[0], &s4[1], &s4[2], &s4[3], NULL),
                     CLATTN_SUCCESS);
    for (int i = 1; i <= 2; i++) {
      s4[i].batch *= 2;
      s4[i].head *= 2;
      s4[i].seq *= 2;
      s4[i].dim *= 2;
    }
    d.layout = CLATTN_LAYOUT_STRIDED;
    d.q_strides = s4[0];
    d.k_strides = s4[1];
    d.v_strides = s4[2];
    d.o_strides = s4[3];
  }
  /* Quantized K/V: random codes (no NaN / inf) and scales; the logical
   * values become code value · the scale of the slot they land in. */
  const bool quant = c->kvq != CLATTN_KV_DTYPE_SAME;
  const size_t kes = quant ? 1 : es;
  d.kv_dtype = c->kvq;
  d.kv_scale = c->kvs;
  const int srow = c->kv ? ps : c->ragged ? 0 : nkmax; /* token scales: slots per row */
  const size_t nslots = c->kv       ? (size_t)npages * ps
                        : c->ragged ? (size_t)d.total_kv
                                    : (size_t)B * nkmax;
  const size_t nsc = c->kvs == CLATTN_KV_SCALE_TOKEN    ? nslots * Hk
                     : c->kvs == CLATTN_KV_SCALE_TENSOR ? 1
                     : c->kvs == CLATTN_KV_SCALE_HEAD   ? (size_t)Hk
                                                        : (size_t)Hk * D;
  float *ksh = malloc((nsc + 1) * 4), *vsh = malloc((nsc + 1) * 4);
  unsigned char *ck[MAXB], *cv[MAXB];
  const float qmax = c->kvq == CLATTN_KV_DTYPE_INT8       ? 127.0f
                     : c->kvq == CLATTN_KV_DTYPE_FP8_E4M3 ? 448.0f
                                                          : 57344.0f;
  for (size_t i = 0; i < nsc; i++) {
    ksh[i] = (float)tu_rng_uniform(&rng, 0.5, 1.5) / qmax;
    vsh[i] = (float)tu_rng_uniform(&rng, 0.5, 1.5) / qmax;
  }
  for (int b = 0; b < B; b++) {
    const size_t nkv = (size_t)(c->nk[b] ? c->nk[b] : 1) * Hk * D;
    ck[b] = malloc(nkv);
    cv[b] = malloc(nkv);
    for (size_t i = 0; i < nkv && quant; i++)
      for (int w = 0; w < 2; w++) {
        unsigned x;
        do { /* a finite code: int8 -127..127, fp8 without NaN / inf */
          x = (unsigned)(tu_rng_next(&rng) & 0xffu);
        } while (!isfinite(clattn_kv_code_value(c->kvq, x)) ||
                 (c->kvq == CLATTN_KV_DTYPE_INT8 && x == 0x80u));
        (w ? cv : ck)[b][i] = (unsigned char)x;
      }
    if (quant && c->share && b > 0) {
      const size_t n = (size_t)c->share * ps * Hk * D;
      memcpy(ck[b], ck[0], n);
      memcpy(cv[b], cv[0], n);
    }
  }
  clattn_strides qs, ks, vs, os;
  size_t el[4];
  assert_int_equal(clattn_attention_desc_strides(&d, &qs, &ks, &vs, &os, el), CLATTN_SUCCESS);
  void *hq = calloc(el[0], es), *hk = malloc(el[1] * kes), *hv = malloc(el[2] * kes);
  if (quant) {
    memset(hk, 0xff, el[1]);
    memset(hv, 0xff, el[2]);
  } else {
    fill_nan(t, hk, el[1]);
    fill_nan(t, hv, el[2]);
  }
  for (int b = 0; b < B; b++) {
    for (int i = 0; i < c->nq[b]; i++)
      for (int h = 0; h < Hq; h++)
        for (int x = 0; x < D; x++) {
          const int64_t bi = c->ragged ? 0 : b, ii = c->ragged ? cuq[b] + i : i;
          store(t, hq, (size_t)(bi * qs.batch + h * qs.head + ii * qs.seq + x * qs.dim),
                lq[b][((size_t)i * Hq + h) * D + x]);
        }
    for (int j = 0; j < c->nk[b]; j++)
      for (int h = 0; h < Hk; h++)
        for (int x = 0; x < D; x++) {
          int64_t bi = b, jj = j;
          if (c->kv) {
            bi = bt[b * maxp + j / ps];
            jj = j % ps;
          } else if (c->ragged) {
            bi = 0;
            jj = cuk[b] + j;
          }
          const size_t src = ((size_t)j * Hk + h) * D + x;
          const size_t ka = (size_t)(bi * ks.batch + h * ks.head + jj * ks.seq + x * ks.dim);
          const size_t va = (size_t)(bi * vs.batch + h * vs.head + jj * vs.seq + x * vs.dim);
          if (quant) {
            const size_t g = c->kvs == CLATTN_KV_SCALE_TOKEN
                                 ? ((size_t)bi * srow + (size_t)jj) * Hk + h
                             : c->kvs == CLATTN_KV_SCALE_TENSOR ? 0
                             : c->kvs == CLATTN_KV_SCALE_HEAD   ? (size_t)h
                                                                : (size_t)h * D + x;
            ((unsigned char *)hk)[ka] = ck[b][src];
            ((unsigned char *)hv)[va] = cv[b][src];
            lk[b][src] = clattn_kv_code_value(c->kvq, ck[b][src]) * ksh[g];
            lv[b][src] = clattn_kv_code_value(c->kvq, cv[b][src]) * vsh[g];
          } else {
            store(t, hk, ka, lk[b][src]);
            store(t, hv, va, lv[b][src]);
          }
        }
  }
  int sl[MAXB];
  for (int b = 0; b < B; b++)
    sl[b] = c->nk[b];
  if (c->hostile) { /* bad pages and lengths */
    bt[0] = -1;
    if (maxp > 1) bt[1] = npages + 5;
    if (B > 1) sl[1] = nkmax + 1000;
  }

  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create_with_config(g_ctx, &d, c->flags, c->config, &plan);
  if (st == CLATTN_ERROR_UNSUPPORTED && c->optional) { /* e.g. flash_tc off NVIDIA */
    g_skipped++;
    free_host(B, lq, lk, lv, bt, hq, hk, hv);
    for (int b = 0; b < B; b++) {
      free(ck[b]);
      free(cv[b]);
    }
    free(ksh);
    free(vsh);
    return 0;
  }
  if (st != CLATTN_SUCCESS) fail_msg("%s: plan: %s", label, clattn_context_last_error(g_ctx));
  if (c->want_describe && !strncmp(clattn_plan_describe(plan), "flash_rows ", 11) &&
      !strstr(clattn_plan_describe(plan), c->want_describe))
    fail_msg("%s: describe() lacks \"%s\": %s", label, c->want_describe,
             clattn_plan_describe(plan));
  if (!strncmp(clattn_plan_describe(plan), "decode ", 7) &&
      ((c->decode_has && !strstr(clattn_plan_describe(plan), c->decode_has)) ||
       (c->decode_lacks && strstr(clattn_plan_describe(plan), c->decode_lacks))))
    fail_msg("%s: describe() %s \"%s\": %s", label, c->decode_has ? "lacks" : "holds",
             c->decode_has ? c->decode_has : c->decode_lacks, clattn_plan_describe(plan));
  cl_mem pk, pv;
  cl_mem q = buf_from(hq, el[0] * es);
  cl_mem k = guarded(hk, el[1] * kes, t, quant, &pk), v = guarded(hv, el[2] * kes, t, quant, &pv);
  void *ho = malloc(el[3] * es);
  fill_nan(t, ho, el[3]);
  cl_mem o = buf_from(ho, el[3] * es);
  const size_t nlse = c->ragged ? (size_t)totq * Hq : (size_t)B * Hq * nqmax;
  float *hl = tu_alloc_nan(nlse + 1);
  cl_mem lse = buf_from(hl, (nlse + 1) * 4);
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = q;
  a.k = k;
  a.v = v;
  a.o = o;
  a.lse = lse;
  cl_mem mq = NULL, mk = NULL, ms = NULL, mb = NULL;
  if (c->ragged) a.cu_seqlens_q = mq = buf_from(cuq, (size_t)(B + 1) * 4);
  if (c->ragged && !c->kv) a.cu_seqlens_kv = mk = buf_from(cuk, (size_t)(B + 1) * 4);
  cl_mem mks = NULL, mvs = NULL, mu = NULL, mbias = NULL;
  if (c->fns && c->fns->user) a.user = mu = buf_from(c->fns->user, c->user_bytes);
  if (c->bias_type) a.bias = mbias = buf_from(c->bias, c->bias_bytes);
  if (quant) {
    a.k_scale = mks = buf_from(ksh, nsc * 4);
    a.v_scale = mvs = buf_from(vsh, nsc * 4);
  }
  if (c->kv || c->seqlens) a.seqlens_kv = ms = buf_from(sl, (size_t)B * 4);
  if (c->kv) a.block_table = mb = buf_from(bt, (size_t)B * maxp * 4);
  if (c->blocks) {
    clattn_exec_args ba = a;
    cl_mem half = NULL;
    if (c->blocks == 2) { /* classes for other tables: the kernels must not use them */
      int *cuh = malloc((size_t)(B + 1) * sizeof(int));
      assert_non_null(cuh);
      cuh[0] = 0;
      for (int b = 0; b < B; b++)
        cuh[b + 1] = cuh[b] + c->nk[b] / 2;
      ba.cu_seqlens_kv = half = buf_from(cuh, (size_t)(B + 1) * 4);
      free(cuh);
    }
    if (clattn_plan_update_mask_blocks_ex(plan, &ba, 0, NULL, NULL) != CLATTN_SUCCESS)
      fail_msg("%s: mask blocks: %s", label, clattn_context_last_error(g_ctx));
    if (half) clReleaseMemObject(half);
  }
  cl_event ev = NULL;
  st = clattn_plan_execute_ex(plan, &a, 0, NULL, &ev);
  double worst = 0;
  if (c->flags & CLATTN_PLAN_CHECK_TABLES) {
    /* Checking mode on hostile tables: the first bad entry is named. */
    assert_int_equal(st, CLATTN_ERROR_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_last_error(g_ctx), "seqlens_kv[1] = 1040"));
    goto done;
  }
  if (st != CLATTN_SUCCESS) fail_msg("%s: execute: %s", label, clattn_context_last_error(g_ctx));
  assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
  clReleaseEvent(ev);
  if (c->profile) {
    /* decode: the split kernel, the merge and the gap between them; a fused
     * merge (decode_tc): the split kernel alone. Three more executions (a
     * fused plan's counters must be back at 0 after each). */
    const char *kn[8] = {NULL};
    double kms[8];
    int nk = 0;
    if (clattn_plan_profile_ex(plan, &a, 3, 8, kn, kms, &nk) != CLATTN_SUCCESS)
      fail_msg("%s: profile: %s", label, clattn_context_last_error(g_ctx));
    const bool fused = strstr(clattn_plan_describe(plan), "merge fused") != NULL;
    assert_int_equal(nk, fused ? 1 : 3);
    assert_non_null(kn[0]);
    assert_string_equal(kn[0],
                        c->config && !strncmp(c->config, "decode_tc", 9) ? "decode_tc" : "decode");
    assert_true(kms[0] > 0);
    if (!fused) {
      assert_string_equal(kn[1], "decode_merge");
      assert_string_equal(kn[2], "gap");
      assert_true(kms[1] > 0 && kms[2] >= 0);
    }
    /* the tables are checked as clattn_plan_execute_ex checks them (paged) */
    clattn_exec_args bad = a;
    bad.block_table = NULL;
    if (c->kv) {
      assert_int_equal(clattn_plan_profile_ex(plan, &bad, 1, 8, kn, kms, &nk),
                       CLATTN_ERROR_INVALID_ARGUMENT);
      assert_non_null(strstr(clattn_context_last_error(g_ctx), "block_table is NULL"));
    }
    /* a fifth execution into fresh NaN-filled outputs is the one checked
     * below (a fused plan whose counters were left off 0 writes nothing) */
    clReleaseMemObject(o);
    clReleaseMemObject(lse);
    a.o = o = buf_from(ho, el[3] * es);
    a.lse = lse = buf_from(hl, (nlse + 1) * 4);
    assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, &ev), CLATTN_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
  }
  assert_int_equal(tu_buffer_read(g_ctx, o, ho, el[3] * es), CL_SUCCESS);
  assert_int_equal(tu_buffer_read(g_ctx, lse, hl, nlse * 4), CL_SUCCESS);
  if (c->hostile) { /* every written output finite: no guard (NaN) was read */
    for (int b = 0; b < B; b++)
      for (int i = 0; i < c->nq[b]; i++)
        for (int h = 0; h < Hq; h++)
          for (int x = 0; x < D; x++) {
            const int64_t bi = c->ragged ? 0 : b, ii = c->ragged ? cuq[b] + i : i;
            const float y =
                load(t, ho, (size_t)(bi * os.batch + h * os.head + ii * os.seq + x * os.dim));
            if (!isfinite(y)) fail_msg("%s: output (%d,%d,%d,%d) = %g", label, b, i, h, x, y);
          }
    goto done;
  }
  double num = 0, den = 0;
  for (int b = 0; b < B; b++) {
    const int nq = c->nq[b], nk = c->nk[b];
    if (!nq) continue;
    double *ro = calloc((size_t)nq * Hq * D, sizeof(double));
    double *rl = calloc((size_t)nq * Hq, sizeof(double));
    if (nk > 0) {
      clattn_attention_desc r = d;
      r.batch = 1;
      r.seq_q = nq;
      r.seq_kv = nk;
      r.layout = CLATTN_LAYOUT_BSHD;
      r.kv_layout = CLATTN_KV_CONTIGUOUS;
      r.ragged = 0;
      r.algo = CLATTN_ALGO_AUTO;
      /* quantized: the dequantized values (exact in f32; Q's rounded values too) */
      r.kv_dtype = CLATTN_KV_DTYPE_SAME;
      const clattn_dtype rt = quant ? CLATTN_DTYPE_F32 : t;
      const size_t res = quant ? 4 : es;
      r.dtype = rt;
      void *sq = malloc((size_t)nq * Hq * D * res), *sk = malloc((size_t)nk * Hk * D * res),
           *sv = malloc((size_t)nk * Hk * D * res);
      for (size_t i = 0; i < (size_t)nq * Hq * D; i++)
        store(rt, sq, i, lq[b][i]);
      for (size_t i = 0; i < (size_t)nk * Hk * D; i++) {
        store(rt, sk, i, lk[b][i]);
        store(rt, sv, i, lv[b][i]);
      }
      /* the per-sequence reference reads sequence b's block of the bias */
      clattn_reference_fns fb = {NULL, NULL, NULL, NULL};
      if (c->fns) fb = *c->fns;
      if (c->bias_type) {
        const size_t bes = c->bias_type == CLATTN_BIAS_F32 ? 4 : c->bias_type == CLATTN_BIAS_BOOL ? 1 : 2;
        fb.bias = (const char *)c->bias + (size_t)b * (size_t)c->bias_strides.batch * bes;
      }
      assert_int_equal(clattn_reference_attention_ex(&r, sq, sk, sv, ro, rl, NULL, 0,
                                                     c->fns || c->bias_type ? &fb : NULL),
                       CLATTN_SUCCESS);
      free(sq);
      free(sk);
      free(sv);
    } else { /* no key: zeros, LSE -inf (with sinks: the head's sink) */
      for (int i = 0; i < nq * Hq; i++)
        rl[i] = c->sinks ? c->sinks[i / nq] : -INFINITY;
    }
    for (int i = 0; i < nq; i++)
      for (int h = 0; h < Hq; h++) {
        const int64_t bi = c->ragged ? 0 : b, ii = c->ragged ? cuq[b] + i : i;
        for (int x = 0; x < D; x++) {
          const float y =
              load(t, ho, (size_t)(bi * os.batch + h * os.head + ii * os.seq + x * os.dim));
          const double want = ro[((size_t)h * nq + i) * D + x]; /* BHSD */
          if (!isfinite(y)) fail_msg("%s: seq %d out (%d,%d,%d) = %g", label, b, i, h, x, y);
          num += (y - want) * (y - want);
          den += want * want;
        }
        const double wl = rl[(size_t)h * nq + i]; /* reference LSE [1][h][i] */
        const float gl =
            c->ragged ? hl[(size_t)(cuq[b] + i) * Hq + h] : hl[((size_t)b * Hq + h) * nqmax + i];
        if (isinf(wl) || isinf(gl)) {
          if (!(isinf(wl) && isinf(gl) && gl < 0))
            fail_msg("%s: seq %d lse (%d,%d) %g vs %g", label, b, i, h, gl, wl);
          for (int x = 0; x < D; x++)
            if (load(t, ho, (size_t)(bi * os.batch + h * os.head + ii * os.seq + x * os.dim)) !=
                0.0f)
              fail_msg("%s: masked row not zero", label);
        } else {
          const double e = fabs(gl - wl) / fmax(1.0, fabs(wl));
          if (e > worst) worst = e;
          if (e > tu_lse_tol(t))
            fail_msg("%s: seq %d lse (%d,%d) %g vs %g", label, b, i, h, gl, wl);
        }
      }
    free(ro);
    free(rl);
  }
  {
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (rel > tu_rel_tol(t))
      fail_msg("%s (seed 0x%llx, %s): rel err %.3g > %.3g", label, (unsigned long long)seed,
               clattn_plan_describe(plan), rel, tu_rel_tol(t));
    if (rel > worst) worst = rel;
  }
done:
  clReleaseMemObject(q);
  clReleaseMemObject(k);
  clReleaseMemObject(v);
  clReleaseMemObject(pk);
  clReleaseMemObject(pv);
  clReleaseMemObject(o);
  clReleaseMemObject(lse);
  if (mq) clReleaseMemObject(mq);
  if (mk) clReleaseMemObject(mk);
  if (ms) clReleaseMemObject(ms);
  if (mb) clReleaseMemObject(mb);
  if (mks) clReleaseMemObject(mks);
  if (mu) clReleaseMemObject(mu);
  if (mbias) clReleaseMemObject(mbias);
  if (mvs) clReleaseMemObject(mvs);
  clattn_plan_release(plan);
  for (int b = 0; b < B; b++) {
    free(ck[b]);
    free(cv[b]);
  }
  free(ksh);
  free(vsh);
  free_host(B, lq, lk, lv, bt, hq, hk, hv);
  free(ho);
  free(hl);
  return worst;
}

static dcase base(int B, int Hq, int Hk, int D, int nq, int nk) {
  dcase c;
  memset(&c, 0, sizeof c);
  c.B = B;
  c.Hq = Hq;
  c.Hk = Hk;
  c.D = D;
  c.dtype = CLATTN_DTYPE_F32;
  c.mask = CLATTN_MASK_NONE;
  for (int b = 0; b < B; b++) {
    c.nq[b] = nq;
    c.nk[b] = nk;
  }
  c.layout = CLATTN_LAYOUT_BSHD;
  return c;
}

/* seq_q 1..16 with GQA 1:1 .. 32:1, KV lengths 1, 7, 1000, splits forced. */
static void test_decode_contiguous(void **state) {
  (void)state;
  static const struct {
    int hq, hk, nq, nk, d, splits;
    clattn_mask mask;
  } cs[] = {
      {1, 1, 1, 1, 64, 0, CLATTN_MASK_NONE},
      {4, 1, 1, 7, 32, 3, CLATTN_MASK_NONE},
      {8, 1, 1, 1000, 64, 100, CLATTN_MASK_NONE}, /* 63 splits of keys, 37 empty: merge rounds */
      /* 41 splits at d = 24: the merge's groups of 24 work-items (five of 128, 8 idle) */
      {4, 1, 2, 700, 24, 41, CLATTN_MASK_CAUSAL},
      {32, 1, 1, 200, 16, 5, CLATTN_MASK_NONE},
      {8, 2, 3, 100, 36, 4, CLATTN_MASK_CAUSAL},
      {4, 4, 16, 37, 8, 2, CLATTN_MASK_CAUSAL},
      {4, 1, 5, 60, 24, 7, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {2, 1, 16, 9, 128, 1, CLATTN_MASK_CAUSAL},
      {2, 2, 1, 300, 256, 8, CLATTN_MASK_NONE},
      {3, 1, 2, 50, 1, 0, CLATTN_MASK_NONE},
      /* more query rows than keys without a mask (every row sees every key),
       * and the CPU rows' 16-lane form (d % 16 == 0) at i = 12 and 15 */
      {3, 3, 9, 4, 16, 0, CLATTN_MASK_NONE},
      {8, 2, 12, 40, 64, 3, CLATTN_MASK_CAUSAL},
      {3, 3, 9, 4, 16, 0, CLATTN_MASK_NONE},
      {4, 1, 3, 130, 32, 2, CLATTN_MASK_CAUSAL_TOP_LEFT},
      {8, 2, 12, 40, 64, 3, CLATTN_MASK_CAUSAL},
      {4, 2, 5, 1000, 48, 0, CLATTN_MASK_CAUSAL_TOP_LEFT},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    dcase c = base(2, cs[i].hq, cs[i].hk, cs[i].d, cs[i].nq, cs[i].nk);
    c.mask = cs[i].mask;
    c.layout = i % 2 ? CLATTN_LAYOUT_BHSD : CLATTN_LAYOUT_BSHD;
    char cfg[64], label[128];
    /* Both forms: the work-group kernel (wg > 1, GPUs) and the CPU rows (wg = 1;
     * one KV head a work-item in BSHD here, every head in BHSD) */
    if (i % 3 == 0)
      snprintf(cfg, sizeof cfg, "decode:splits=%d,wg=1,allh=%d", cs[i].splits, (int)(i % 2));
    else
      snprintf(cfg, sizeof cfg, "decode:splits=%d,wg=64%s", cs[i].splits,
               cs[i].splits > 32 ? ",kt=16" : "");
    c.config = cfg;
    snprintf(label, sizeof label, "contiguous %zu", i);
    run_case(&c, label);
  }
}

/* decode_warp (on NVIDIA with warp shuffles; elsewhere, forced, with an
 * exchange through local memory: the same algorithm): GQA ratios,
 * seq_q up to 16, KV lengths 1..1000, each head dim it takes, every dtype,
 * paged (shuffled, shared prefix), per-sequence lengths, both causal
 * alignments, strided K/V (the per-element loads) and its parameter range. */
static void test_decode_warp(void **state) {
  (void)state;
  static const struct {
    int hq, hk, nq, nk, d, dtype, kv, strided;
    clattn_mask mask;
    const char *cfg;
  } cs[] = {
      {1, 1, 1, 1, 64, 0, 0, 0, CLATTN_MASK_NONE, "decode_warp:wg=64,qr=1,unroll=2"},
      {4, 1, 1, 7, 32, 0, 0, 0, CLATTN_MASK_NONE, "decode_warp:splits=3,wg=128,qr=4,unroll=4"},
      {8, 1, 1, 1000, 128, 2, 0, 0, CLATTN_MASK_NONE, "decode_warp:wg=128,qr=8,unroll=4"},
      {4, 2, 1, 999, 64, 0, 0, 0, CLATTN_MASK_NONE, "decode_warp:wg=256,qr=2,unroll=8"},
      {32, 1, 1, 200, 16, 1, 0, 0, CLATTN_MASK_NONE, "decode_warp:splits=5,wg=64,qr=8,unroll=2"},
      {8, 2, 3, 100, 256, 0, 0, 0, CLATTN_MASK_CAUSAL, "decode_warp:splits=4,wg=128,qr=2"},
      {4, 4, 16, 37, 8, 2, 0, 0, CLATTN_MASK_CAUSAL, "decode_warp:splits=2,wg=64,qr=4"},
      {4, 1, 5, 60, 64, 1, 0, 0, CLATTN_MASK_CAUSAL_TOP_LEFT, "decode_warp:splits=7,kt=32"},
      {3, 3, 9, 4, 16, 0, 0, 0, CLATTN_MASK_NONE, "decode_warp:wg=64,qr=4"},
      {8, 2, 1, 333, 128, 2, CLATTN_KV_PAGED, 0, CLATTN_MASK_NONE, "decode_warp:unroll=4"},
      {8, 2, 4, 300, 64, 1, CLATTN_KV_PAGED, 0, CLATTN_MASK_CAUSAL, "decode_warp:splits=3"},
      {6, 3, 2, 50, 32, 0, 0, 1, CLATTN_MASK_CAUSAL, "decode_warp:wg=64,splits=2"},
      {6, 3, 2, 50, 32, 2, CLATTN_KV_PAGED, 1, CLATTN_MASK_NONE, "decode_warp:wg=128,qr=2"},
  };
  const int skipped0 = g_skipped;
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    dcase c = base(3, cs[i].hq, cs[i].hk, cs[i].d, cs[i].nq, cs[i].nk);
    c.nk[1] = cs[i].nk > 2 ? cs[i].nk / 2 + 1 : 1; /* per-sequence lengths */
    c.nk[2] = cs[i].kv ? 16 : 1;                   /* paged: holds the shared page */
    c.seqlens = cs[i].kv == 0;
    c.dtype = (clattn_dtype)cs[i].dtype;
    c.kv = cs[i].kv;
    c.page_size = 16;
    c.share = cs[i].kv ? 1 : 0;
    c.strided = cs[i].strided;
    c.mask = cs[i].mask;
    c.layout = i % 2 ? CLATTN_LAYOUT_BHSD : CLATTN_LAYOUT_BSHD;
    c.config = cs[i].cfg;
    char label[128];
    snprintf(label, sizeof label, "warp %zu (%s)", i, cs[i].cfg);
    run_case(&c, label);
  }
  assert_int_equal(g_skipped, skipped0); /* every case ran */
}

/* decode_tc (NVIDIA sm_80+, mma.sync; skipped elsewhere): f16 and bf16,
 * every head dim it takes, GQA 1:1 .. 32:1 and seq_q up to 16 (row blocks
 * of 16), KV lengths 1 .. 1000, contiguous with per-sequence lengths,
 * paged walked page by page (page 16, 32, 256) and key by key (1, 12),
 * head-major pools, shared prefix pages, ragged, both causal alignments,
 * padded strides (cp.async), dim stride 2 (element loads), hostile tables,
 * forced split counts and each step size and stage count. */
static bool decode_tc_applies(void) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 1;
  d.heads = 4;
  d.kv_heads = 1;
  d.seq_q = 1;
  d.seq_kv = 64;
  d.head_dim = 64;
  d.dtype = CLATTN_DTYPE_BF16;
  clattn_plan plan = NULL;
  if (clattn_plan_create_with_config(g_ctx, &d, 0, "decode_tc", &plan) != CLATTN_SUCCESS) {
    print_message("decode_tc does not apply on this device: skipped\n");
    return false;
  }
  clattn_plan_release(plan);
  return true;
}

static void test_decode_tc(void **state) {
  (void)state;
  if (!decode_tc_applies()) skip();
  static const struct {
    int hq, hk, nq, nk, d, dtype, kv, ps, strided, ragged, hostile;
    clattn_mask mask;
    const char *cfg;
  } cs[] = {
      {1, 1, 1, 1, 64, 2, 0, 0, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc:bn=16,ns=2,warps=2"},
      {4, 1, 1, 7, 32, 1, 0, 0, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc:splits=3,kt=16"},
      {8, 1, 1, 1000, 128, 2, 0, 0, 0, 0, 0, CLATTN_MASK_NONE,
       "decode_tc:bn=16,ns=2,kt=64,warps=2"},
      {32, 1, 1, 200, 16, 1, 0, 0, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc:splits=5,ns=3"},
      {8, 2, 3, 100, 64, 2, 0, 0, 0, 0, 0, CLATTN_MASK_CAUSAL, "decode_tc:splits=4,kt=32"},
      {4, 4, 16, 37, 32, 1, 0, 0, 0, 0, 0, CLATTN_MASK_CAUSAL,
       "decode_tc:splits=2,bn=32,ns=4,kt=32"},
      {4, 1, 5, 60, 64, 2, 0, 0, 0, 0, 0, CLATTN_MASK_CAUSAL_TOP_LEFT, "decode_tc:splits=7,kt=16"},
      {3, 3, 9, 4, 16, 2, 0, 0, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc"},
      {4, 1, 16, 333, 128, 1, 0, 0, 0, 0, 0, CLATTN_MASK_CAUSAL, "decode_tc:splits=1"},
      {8, 2, 1, 333, 128, 2, CLATTN_KV_PAGED, 16, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc"},
      {8, 2, 4, 300, 64, 1, CLATTN_KV_PAGED, 16, 0, 0, 0, CLATTN_MASK_CAUSAL,
       "decode_tc:splits=3,warps=2"},
      {4, 1, 1, 1000, 64, 2, CLATTN_KV_PAGED, 256, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc:kt=256"},
      {4, 1, 2, 500, 128, 2, CLATTN_KV_PAGED, 32, 0, 0, 0, CLATTN_MASK_CAUSAL,
       "decode_tc:bn=32,ns=2"},
      {4, 2, 1, 200, 64, 1, CLATTN_KV_PAGED, 1, 0, 0, 0, CLATTN_MASK_NONE, "decode_tc:splits=2"},
      {4, 2, 3, 100, 32, 2, CLATTN_KV_PAGED_HEAD_MAJOR, 12, 0, 0, 0, CLATTN_MASK_CAUSAL,
       "decode_tc:ns=4"},
      {6, 3, 2, 50, 32, 2, 0, 0, 1, 0, 0, CLATTN_MASK_CAUSAL, "decode_tc:splits=2"},
      {6, 3, 2, 50, 64, 1, CLATTN_KV_PAGED, 16, 1, 0, 0, CLATTN_MASK_NONE, "decode_tc"},
      {4, 2, 1, 90, 64, 2, 0, 0, 2, 0, 0, CLATTN_MASK_NONE, "decode_tc:splits=2"},
      {4, 2, 0, 0, 64, 2, 0, 0, 0, 1, 0, CLATTN_MASK_CAUSAL, "decode_tc"},
      {4, 2, 0, 0, 128, 1, CLATTN_KV_PAGED, 16, 0, 1, 0, CLATTN_MASK_CAUSAL,
       "decode_tc:bn=16,ns=2,warps=2"},
      {4, 1, 1, 40, 16, 2, CLATTN_KV_PAGED, 16, 0, 0, 1, CLATTN_MASK_NONE, "decode_tc:warps=2"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    dcase c = base(3, cs[i].hq, cs[i].hk, cs[i].d, cs[i].nq, cs[i].nk);
    c.dtype = (clattn_dtype)cs[i].dtype;
    c.kv = cs[i].kv;
    c.page_size = cs[i].ps;
    c.mask = cs[i].mask;
    c.layout = i % 2 ? CLATTN_LAYOUT_BHSD : CLATTN_LAYOUT_BSHD;
    c.config = cs[i].cfg;
    c.decode_has = "tensor cores";
    if (cs[i].ragged) { /* lengths 0, 1, 16 (Q) over 0, 1000, 17 keys */
      static const int nq[3] = {0, 1, 16}, nk[3] = {0, 1000, 17};
      memcpy(c.nq, nq, sizeof nq);
      memcpy(c.nk, nk, sizeof nk);
      c.ragged = 1;
    } else if (cs[i].hostile) {
      c.B = 2;
      c.hostile = 1;
    } else {
      c.nk[1] = cs[i].nk > 2 ? cs[i].nk / 2 + 1 : 1; /* per-sequence lengths */
      c.nk[2] = cs[i].kv ? cs[i].ps : 1;             /* paged: holds the shared page */
      c.seqlens = cs[i].kv == 0;
      c.share = cs[i].kv ? 1 : 0;
    }
    c.strided = cs[i].strided == 1;
    c.dim2 = cs[i].strided == 2;
    char label[128];
    snprintf(label, sizeof label, "tc %zu (%s)", i, cs[i].cfg);
    run_case(&c, label);
  }
  /* The merge fused (fuse=1) and the merge kernel (fuse=0, the default),
   * each run five times (profiled): GQA 4:1 over three sequences of 1, 501 and 1000
   * keys (paged), 5 splits; a ragged causal batch with an empty sequence
   * and attention sinks (the merge adds them). Then the fused merge's other
   * deals of (row, chunk) pairs: d = 128 at 33 splits (batch 1's split
   * count on 132 compute units; 4 rows, a float4 chunk a lane), and d = 16
   * on 4 warps with two query rows of GQA 8:1 (16 rows of 4 chunks: half
   * of the 128 work-items idle); last, the ragged batch fused on one warp
   * (16 rows of 16 chunks, 8 pairs a lane: two passes of 4). */
  static const char *const fz[7] = {
      "decode_tc:splits=5,fuse=1",         "decode_tc:splits=5,fuse=0",
      "decode_tc:splits=3,warps=2,fuse=1", "decode_tc:splits=3,fuse=0",
      "decode_tc:splits=33,fuse=1",        "decode_tc:splits=9,warps=4,ns=2,fuse=1",
      "decode_tc:splits=3,fuse=1"};
  for (int f = 0; f < 7; f++) {
    dcase c = f < 4 || f == 6 ? base(3, 8, 2, 64, f < 2 ? 1 : 0, f < 2 ? 1000 : 0)
              : f < 5 ? base(2, 8, 2, 128, 1, 2100) /* 33 tiles of 64 keys: no split empty */
                      : base(2, 16, 2, 16, 2, 550); /* 9 tiles */
    c.dtype = f == 4 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16;
    c.config = fz[f];
    const bool fused = f != 1 && f != 3;
    c.decode_has = fused ? "merge fused" : "tensor cores";
    c.decode_lacks = fused ? NULL : "merge fused";
    c.profile = 1;
    if (f == 4 || f == 5) {
      c.nk[1] = f == 4 ? 431 : 77; /* per-sequence lengths */
      c.seqlens = 1;
    } else if (f < 2) {
      c.nk[0] = 1;
      c.nk[1] = 501;
      c.kv = CLATTN_KV_PAGED;
      c.page_size = 16;
    } else { /* lengths 0, 3, 16 (Q) over 0, 40, 300 keys; attention sinks */
      static const int nq[3] = {0, 3, 16}, nk[3] = {0, 40, 300};
      static const float sinks[8] = {-1.0f, 0.5f, 2.0f, 6.0f, 0.0f, -3.0f, 1.5f, 4.0f};
      memcpy(c.nq, nq, sizeof nq);
      memcpy(c.nk, nk, sizeof nk);
      c.ragged = 1;
      c.mask = CLATTN_MASK_CAUSAL;
      c.sinks = sinks;
    }
    run_case(&c, fz[f]);
  }
}

/* f16 / bf16 storage, paged and contiguous with per-sequence lengths. */
static void test_decode_dtypes(void **state) {
  (void)state;
  for (int t = 1; t <= 2; t++) {
    dcase c = base(3, 8, 2, 64, 1, 0);
    c.dtype = (clattn_dtype)t;
    c.nk[0] = 1;
    c.nk[1] = 333;
    c.nk[2] = 64;
    c.seqlens = 1;
    run_case(&c, t == 1 ? "f16 seqlens" : "bf16 seqlens");
    c.kv = CLATTN_KV_PAGED;
    c.seqlens = 0;
    c.page_size = 16;
    run_case(&c, t == 1 ? "f16 paged" : "bf16 paged");
  }
}

/* Padded strides: contiguous and both pool layouts, both kernel forms. */
static void test_strided(void **state) {
  (void)state;
  for (int kv = 0; kv < 3; kv++)
    for (int wg = 0; wg < 2; wg++) {
      dcase c = base(2, 6, 3, 24, 2, 0);
      c.nk[0] = 50;
      c.nk[1] = 19;
      c.kv = kv;
      c.page_size = 8;
      c.seqlens = kv == 0;
      c.strided = 1;
      c.mask = CLATTN_MASK_CAUSAL;
      c.config = wg ? "decode:wg=32,splits=2" : "decode:wg=1,splits=2";
      char label[64];
      snprintf(label, sizeof label, "strided kv=%d wg=%d", kv, wg);
      run_case(&c, label);
    }
}

/* Paged caches: page sizes 1, 16, 256 and 7; lengths page_size-1,
 * page_size, 1000; both pool layouts; shuffled and shared pages. */
static void test_paged(void **state) {
  (void)state;
  static const int psz[] = {1, 16, 256, 7};
  for (int i = 0; i < 4; i++) {
    const int ps = psz[i];
    dcase c = base(3, 4, 1, 32, 1, 0);
    c.kv = i % 2 ? CLATTN_KV_PAGED_HEAD_MAJOR : CLATTN_KV_PAGED;
    c.page_size = ps;
    c.nk[0] = ps > 1 ? ps - 1 : 1;
    c.nk[1] = ps;
    c.nk[2] = ps == 1 ? 200 : 1000;
    char label[64];
    snprintf(label, sizeof label, "paged ps=%d", ps);
    run_case(&c, label);
    /* Shared prefix pages, speculative decoding (4 queries, causal). */
    dcase s = base(3, 8, 2, 16, 4, 3 * ps + 5);
    s.kv = CLATTN_KV_PAGED;
    s.page_size = ps;
    s.share = 2;
    s.mask = CLATTN_MASK_CAUSAL;
    s.nk[2] = 2 * ps + 1;
    s.config = i % 2 ? "decode:splits=3,wg=32" : "decode:splits=3,wg=1";
    s.profile = ps == 16;
    snprintf(label, sizeof label, "paged shared ps=%d", ps);
    run_case(&s, label);
  }
}

/* Ragged batches: lengths 0, 1, 17, 1000 (prefill through the decode
 * kernel), contiguous packed and paged, causal. */
static void test_ragged(void **state) {
  (void)state;
  dcase c = base(4, 4, 2, 32, 0, 0);
  c.ragged = 1;
  c.mask = CLATTN_MASK_CAUSAL;
  const int nq[4] = {0, 1, 17, 40}, nk[4] = {0, 1, 17, 1000};
  memcpy(c.nq, nq, sizeof nq);
  memcpy(c.nk, nk, sizeof nk);
  run_case(&c, "ragged contiguous");
  c.kv = CLATTN_KV_PAGED;
  c.page_size = 16;
  run_case(&c, "ragged paged");
  c.config = "decode:wg=64,qr=8";
  run_case(&c, "ragged paged wg64");
  /* attention sinks (in the merge): empty sequences and rows give LSE = sink */
  static const float sinks[4] = {-1.0f, 0.5f, 2.0f, 6.0f};
  c.sinks = sinks;
  run_case(&c, "ragged paged sinks");
  c.config = "decode:splits=8";
  c.kv = CLATTN_KV_CONTIGUOUS;
  c.page_size = 0;
  run_case(&c, "ragged contiguous sinks, 8 splits");
  c.sinks = NULL;
  c.kv = CLATTN_KV_PAGED;
  c.page_size = 16;
  c.config = NULL;
  c.mask = CLATTN_MASK_CAUSAL_TOP_LEFT;
  c.kv = CLATTN_KV_CONTIGUOUS;
  c.nq[0] = 5; /* queries without keys: zeros, LSE -inf */
  run_case(&c, "ragged top-left");
  /* Ragged prefill on each kernel: the work-group and CPU flash kernels
   * (-DRAGGED) and the decode kernel; 16-bit storage. */
  static const char *const cfgs[] = {
      "flash:bm=16,bn=16,tm=4,tn=4", "flash_rows:bm=8,bn=16",       "decode:wg=64",
      "flash:bm=8,bn=8,tm=2,tn=4",   "flash_tc:warps=4,mt=1,bn=32", "flash_tc:warps=2,mt=2,bn=16"};
  for (int i = 0; i < 6; i++) {
    c.config = cfgs[i];
    c.optional = i >= 4 || i == 1; /* flash_tc: NVIDIA sm_80+ only; flash_rows: CPUs only */
    c.mask = i % 2 ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
    c.dtype = i >= 3 ? (i == 4 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16) : CLATTN_DTYPE_F32;
    char label[80];
    snprintf(label, sizeof label, "ragged prefill %s", cfgs[i]);
    run_case(&c, label);
  }
  /* flash_rows with 16-bit storage reads packed ragged K/V from its f32 copy
   * ([kv_head][total_kv][dim]; test_flash's test_rows_kv_copy has the rest):
   * f16 with GQA, bf16 causal with a query block past short sequences */
  static const char *const rows_cfgs[] = {"flash_rows:bm=16,bn=32", "flash_rows:bm=8,bn=16"};
  for (int i = 0; i < 2; i++) {
    c.config = rows_cfgs[i];
    c.optional = 1; /* CPUs only */
    c.mask = i ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
    c.dtype = i ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F16;
    c.want_describe = "K/V converted once per call into an f32 workspace";
    char label[80];
    snprintf(label, sizeof label, "ragged prefill %s %s", rows_cfgs[i], clattn_dtype_name(c.dtype));
    run_case(&c, label);
  }
}

/* Hostile tables: page -1, page >= num_pages, length beyond the maximum:
 * no crash, no read outside the pools; the checking mode names the entry. */
static void test_hostile(void **state) {
  (void)state;
  dcase c = base(2, 4, 1, 16, 1, 40);
  c.kv = CLATTN_KV_PAGED;
  c.page_size = 16;
  c.hostile = 1;
  run_case(&c, "hostile");
  c.config = "decode:wg=64";
  run_case(&c, "hostile wg64");
  c.config = NULL;
  c.ragged = 1;
  run_case(&c, "hostile ragged");
  c.flags = CLATTN_PLAN_CHECK_TABLES;
  run_case(&c, "hostile checked");
}

/* merge_states of two halves of the keys == one pass; kv_append. */
static void test_merge_append(void **state) {
  (void)state;
  const int H = 4, N = 300, D = 24, n1 = 111;
  tu_rng rng;
  tu_rng_init(&rng, tu_case_seed("merge"));
  float *q = malloc((size_t)H * D * 4), *k = malloc((size_t)H * N * D * 4),
        *v = malloc((size_t)H * N * D * 4);
  for (int i = 0; i < H * D; i++)
    q[i] = (float)tu_rng_uniform(&rng, -2, 2);
  for (int i = 0; i < H * N * D; i++) {
    k[i] = (float)tu_rng_uniform(&rng, -1, 1);
    v[i] = (float)tu_rng_uniform(&rng, -1, 1);
  }
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.heads = H;
  d.head_dim = D;
  d.seq_q = 1;
  cl_mem o[2], l[2];
  for (int part = 0; part < 2; part++) {
    const int j0 = part ? n1 : 0, n = part ? N - n1 : n1;
    d.seq_kv = n;
    float *kk = malloc((size_t)H * n * D * 4), *vv = malloc((size_t)H * n * D * 4);
    for (int h = 0; h < H; h++)
      for (int j = 0; j < n; j++)
        for (int x = 0; x < D; x++) {
          kk[((size_t)h * n + j) * D + x] = k[((size_t)h * N + j0 + j) * D + x];
          vv[((size_t)h * n + j) * D + x] = v[((size_t)h * N + j0 + j) * D + x];
        }
    clattn_plan p;
    assert_int_equal(clattn_plan_create(g_ctx, &d, 0, &p), CLATTN_SUCCESS);
    cl_mem bq = buf_from(q, (size_t)H * D * 4), bk = buf_from(kk, (size_t)H * n * D * 4),
           bv = buf_from(vv, (size_t)H * n * D * 4);
    o[part] = tu_buffer_nan(g_ctx, (size_t)H * D);
    l[part] = tu_buffer_nan(g_ctx, (size_t)H);
    assert_int_equal(clattn_plan_execute(p, bq, bk, bv, o[part], l[part], 0, NULL, NULL),
                     CLATTN_SUCCESS);
    assert_int_equal(clFinish(clattn_context_queue(g_ctx)), CL_SUCCESS);
    clReleaseMemObject(bq);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    clattn_plan_release(p);
    free(kk);
    free(vv);
  }
  cl_mem out = tu_buffer_nan(g_ctx, (size_t)H * D), lout = tu_buffer_nan(g_ctx, (size_t)H);
  cl_event ev = NULL;
  assert_int_equal(
      clattn_merge_states(g_ctx, CLATTN_DTYPE_F32, H, D, 2, o, l, out, lout, 0, NULL, &ev),
      CLATTN_SUCCESS);
  assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
  clReleaseEvent(ev);
  float ho[4 * 24], hl[4];
  assert_int_equal(tu_buffer_read(g_ctx, out, ho, sizeof ho), CL_SUCCESS);
  assert_int_equal(tu_buffer_read(g_ctx, lout, hl, sizeof hl), CL_SUCCESS);
  d.seq_kv = N;
  double ro[4 * 24], rl[4];
  assert_int_equal(clattn_reference_attention(&d, q, k, v, ro, rl, NULL, 0), CLATTN_SUCCESS);
  double num = 0, den = 0;
  for (int i = 0; i < H * D; i++) {
    num += (ho[i] - ro[i]) * (ho[i] - ro[i]);
    den += ro[i] * ro[i];
  }
  assert_true(sqrt(num / den) < 1e-5);
  for (int h = 0; h < H; h++)
    assert_true(fabs(hl[h] - rl[h]) < 1e-5 * fmax(1, fabs(rl[h])));
  /* Bad arguments are named. */
  assert_int_equal(
      clattn_merge_states(g_ctx, CLATTN_DTYPE_F32, H, D, 0, o, l, out, NULL, 0, NULL, NULL),
      CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(g_ctx), "num_states"));
  for (int i = 0; i < 2; i++) {
    clReleaseMemObject(o[i]);
    clReleaseMemObject(l[i]);
  }
  clReleaseMemObject(out);
  clReleaseMemObject(lout);

  /* kv_append: 5 tokens into a head-major pool of 4 pages of 3, with a
   * padding slot (-1) and an out-of-range one. */
  clattn_attention_desc pd;
  clattn_attention_desc_init(&pd);
  pd.kv_heads = pd.heads = 2;
  pd.head_dim = 8;
  pd.kv_layout = CLATTN_KV_PAGED_HEAD_MAJOR;
  pd.page_size = 3;
  pd.num_pages = 4;
  pd.max_pages_per_seq = 1;
  const int slots[5] = {4, -1, 11, 12, 0};
  float kn[5 * 2 * 8], vn[5 * 2 * 8];
  for (int i = 0; i < 80; i++) {
    kn[i] = (float)i;
    vn[i] = (float)-i;
  }
  const size_t pool = 4 * 2 * 3 * 8;
  cl_mem bkn = buf_from(kn, sizeof kn), bvn = buf_from(vn, sizeof vn),
         bs = buf_from(slots, sizeof slots);
  cl_mem kp = tu_buffer_nan(g_ctx, pool), vp = tu_buffer_nan(g_ctx, pool);
  assert_int_equal(clattn_kv_append(g_ctx, &pd, bkn, bvn, bs, 5, kp, vp, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  float hk[4 * 2 * 3 * 8], hv[4 * 2 * 3 * 8];
  assert_int_equal(tu_buffer_read(g_ctx, kp, hk, sizeof hk), CL_SUCCESS);
  assert_int_equal(tu_buffer_read(g_ctx, vp, hv, sizeof hv), CL_SUCCESS);
  for (int pg = 0; pg < 4; pg++)
    for (int h = 0; h < 2; h++)
      for (int r = 0; r < 3; r++)
        for (int x = 0; x < 8; x++) {
          const int slot = pg * 3 + r;
          int t = -1;
          for (int i = 0; i < 5; i++)
            if (slots[i] == slot) t = i;
          const size_t at = (((size_t)pg * 2 + h) * 3 + r) * 8 + x;
          if (t < 0) {
            assert_true(tu_is_poison(hk[at]) && tu_is_poison(hv[at]));
          } else {
            assert_true(hk[at] == kn[(t * 2 + h) * 8 + x]);
            assert_true(hv[at] == vn[(t * 2 + h) * 8 + x]);
          }
        }
  clReleaseMemObject(bkn);
  clReleaseMemObject(bvn);
  clReleaseMemObject(bs);
  clReleaseMemObject(kp);
  clReleaseMemObject(vp);
  free(q);
  free(k);
  free(v);
}

/* Descriptor validation and the tables an execution needs. */
static void test_validation(void **state) {
  (void)state;
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.seq_kv = 100;
  d.kv_layout = CLATTN_KV_PAGED;
  d.page_size = 16;
  d.num_pages = 8;
  d.max_pages_per_seq = 6;
  clattn_plan p = NULL;
  assert_int_equal(clattn_plan_create(g_ctx, &d, 0, &p), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(g_ctx), "max_pages_per_seq"));
  d.max_pages_per_seq = 7;
  d.mask = CLATTN_MASK_WINDOW;
  assert_int_equal(clattn_plan_create(g_ctx, &d, 0, &p), CLATTN_ERROR_INVALID_ARGUMENT);
  d.mask = CLATTN_MASK_NONE;
  assert_int_equal(clattn_plan_create(g_ctx, &d, 0, &p), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(p), "decode"));
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = a.k = a.v = tu_buffer_nan(g_ctx, 8 * 16 * 64);
  a.o = tu_buffer_nan(g_ctx, 64);
  assert_int_equal(clattn_plan_execute_ex(p, &a, 0, NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(clattn_context_last_error(g_ctx), "seqlens_kv is NULL"));
  clReleaseMemObject(a.q);
  clReleaseMemObject(a.o);
  clattn_plan_release(p);
}

/* A ragged batch of 4 sequences with KV lengths 0, 1, 17 and 300, each with
 * min(nq, its length) queries. */
static void ragged_0_1_17_300(dcase *c, int nq) {
  c->B = 4;
  c->ragged = 1;
  const int lens[4] = {0, 1, 17, 300};
  for (int b = 0; b < 4; b++) {
    c->nk[b] = lens[b];
    c->nq[b] = lens[b] < nq ? lens[b] : nq;
  }
}

/* A quantized-K/V case: code type, scale granularity, heads, query rows
 * and keys, head dim, KV layout (a paged one holds sequences of nk, nk/2 +
 * 40 and 33 keys sharing two pages), ragged (0/1/17/300), padded strides,
 * storage type, mask, forced configuration, dim stride 2, modifiers. */
typedef struct qcase {
  clattn_kv_dtype q;
  clattn_kv_scale s;
  int hq, hk, nq, nk, d, kv, ragged, strided;
  clattn_dtype t;
  clattn_mask mask;
  const char *config;
  int dim2;
  double softcap, alibi;
} qcase;

static void run_quant_cases(const qcase *cs, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++) {
    dcase c = base(3, cs[i].hq, cs[i].hk, cs[i].d, cs[i].nq, cs[i].nk);
    c.kvq = cs[i].q;
    c.kvs = cs[i].s;
    c.dtype = cs[i].t;
    c.mask = cs[i].mask;
    c.config = cs[i].config;
    c.kv = cs[i].kv;
    c.strided = cs[i].strided;
    c.dim2 = cs[i].dim2;
    c.softcap = cs[i].softcap;
    c.alibi = cs[i].alibi;
    if (c.kv) {
      c.page_size = 16;
      c.share = 2;
      c.nk[1] = cs[i].nk / 2 + 40;
      c.nk[2] = 33;
    }
    if (cs[i].ragged) ragged_0_1_17_300(&c, cs[i].nq);
    /* flash_tc: NVIDIA sm_80+ (or emulated) only */
    c.optional = c.config && !strncmp(c.config, "flash_tc", 8);
    char label[96];
    snprintf(label, sizeof label, "%s %zu (%s, %s)", what, i, clattn_kv_dtype_name(c.kvq),
             clattn_kv_scale_name(c.kvs));
    run_case(&c, label);
  }
}

/* Quantized K/V (int8, fp8 e4m3 / e5m2; scales per token, tensor, head,
 * channel): random codes and scales against the reference on the
 * dequantized values in f32, on every kernel form (CPU rows with 16-lane
 * and 8-lane vectors and per-element loads, the work-group kernel,
 * decode_warp with its 8-byte lane loads), contiguous, paged (shared
 * prefix, head-major, padded strides) and ragged caches, GQA, causal
 * seq_q > 1, and every output dtype. */
static void test_quantized(void **state) {
  (void)state;
  static const qcase cs[] = {
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 8, 2, 1, 1000, 64, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=1", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 8, 2, 1, 1000, 64, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=64,splits=3", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 8, 2, 1, 1000, 64, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode_warp:wg=64,qr=4,unroll=4", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_CHANNEL, 4, 1, 3, 300, 64, 1, 0, 0,
       CLATTN_DTYPE_BF16, CLATTN_MASK_CAUSAL, "decode:wg=1", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_HEAD, 4, 2, 3, 300, 64, 1, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode_warp:wg=128,qr=4,unroll=2", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 0, 32, 0, 1, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_NONE, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TENSOR, 6, 3, 2, 77, 40, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL_TOP_LEFT, "decode:wg=1", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_CHANNEL, 6, 3, 2, 77, 40, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode:wg=64", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 2, 1, 1, 45, 20, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=1", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 2, 1, 4, 45, 20, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode:wg=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 150, 64, CLATTN_KV_PAGED_HEAD_MAJOR, 0,
       1, CLATTN_DTYPE_F32, CLATTN_MASK_NONE, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 4, 2, 2, 150, 64, 1, 0, 1, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode_warp:wg=64,qr=4,unroll=4", 0, 0, 0},
      /* K/V with a dim stride of 2: per-element loads in every form */
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_CHANNEL, 4, 2, 1, 70, 32, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode_warp:wg=32,qr=4,unroll=2", 1, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 70, 32, 1, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=1", 1, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 70, 32, 1, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=64", 1, 0, 0},
  };
  run_quant_cases(cs, sizeof cs / sizeof *cs, "quantized");
}

/* decode_tc over 8-bit K/V (NVIDIA sm_80+; skipped elsewhere): int8 with
 * token, tensor and head scales, f16 and bf16 outputs, head dims 32 / 64 /
 * 128, contiguous, paged (shared prefix, head-major, padded strides),
 * ragged, causal seq_q > 1, dim stride 2 (element loads), steps of 16, 32 and
 * 64 keys, 1, 2 and 4 warps a work-group; fp8 e4m3 and e5m2 (each with f16 and bf16 Q) the same
 * way. */
static void test_decode_tc_int8(void **state) {
  (void)state;
  if (!decode_tc_applies()) skip();
  static const qcase cs[] = {
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 8, 2, 1, 1000, 128, 0, 0, 0, CLATTN_DTYPE_BF16,
       CLATTN_MASK_NONE, "decode_tc:warps=2", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 1, 3, 300, 64, 1, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "decode_tc:splits=3", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TENSOR, 6, 3, 2, 0, 32, 0, 1, 0, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL, "decode_tc:bn=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_HEAD, 4, 2, 1, 150, 128, CLATTN_KV_PAGED_HEAD_MAJOR, 0,
       1, CLATTN_DTYPE_F16, CLATTN_MASK_NONE, "decode_tc:bn=32,ns=2", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 70, 64, 0, 0, 0, CLATTN_DTYPE_BF16,
       CLATTN_MASK_NONE, "decode_tc:splits=2", 1, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_HEAD, 8, 2, 2, 77, 64, 0, 0, 1, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL_TOP_LEFT, "decode_tc:ns=4", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 32, 8, 4, 500, 128, 1, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "decode_tc:bn=16,ns=2,kt=32,warps=4", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 8, 2, 1, 1000, 128, 1, 0, 0,
       CLATTN_DTYPE_BF16, CLATTN_MASK_NONE, "decode_tc:bn=64,ns=2", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_HEAD, 4, 1, 3, 300, 64, 0, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "decode_tc:splits=3", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TENSOR, 6, 3, 2, 150, 32,
       CLATTN_KV_PAGED_HEAD_MAJOR, 0, 1, CLATTN_DTYPE_BF16, CLATTN_MASK_CAUSAL, "decode_tc:bn=32",
       0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TOKEN, 4, 2, 1, 70, 64, 0, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_NONE, "decode_tc:splits=2", 1, 0, 0},
  };
  run_quant_cases(cs, sizeof cs / sizeof *cs, "tc 8-bit");
}

/* Quantized K/V in a prefill (more query rows than decode takes: the
 * portable flash kernel decodes and scales each K/V tile as it loads it,
 * flash_rows reads a decoded f32 copy made once per call):
 * every code type and scale granularity, GQA, both causal alignments,
 * ragged batches with lengths 0, 1, 17, 300, a dim stride of 2, softcap
 * and ALiBi on top, against the float64 reference on the dequantized
 * cache. */
static void test_quantized_prefill(void **state) {
  (void)state;
  static const qcase cs[] = {
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 40, 100, 64, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_CHANNEL, 4, 1, 33, 77, 40, 0, 0, 0,
       CLATTN_DTYPE_BF16, CLATTN_MASK_NONE, "flash:bm=16,bn=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TENSOR, 6, 3, 50, 30, 32, 0, 0, 0,
       CLATTN_DTYPE_F16, CLATTN_MASK_CAUSAL_TOP_LEFT, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_HEAD, 4, 2, 40, 300, 64, 0, 1, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 4, 2, 24, 300, 16, 0, 1, 0,
       CLATTN_DTYPE_BF16, CLATTN_MASK_NONE, NULL, 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 20, 70, 32, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, NULL, 1, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_CHANNEL, 4, 2, 37, 64, 64, 0, 0, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, NULL, 0, 20.0, 8.0},
      /* the portable kernel where another is the default (CPUs: flash_rows) */
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 40, 100, 64, 0, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "flash:bm=32,bn=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_HEAD, 4, 2, 24, 300, 32, 0, 1, 0, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "flash:bm=16,bn=16", 1, 0, 0},
  };
  run_quant_cases(cs, sizeof cs / sizeof *cs, "quantized prefill");
}

/* Quantized K/V in a prefill on flash_tc (NVIDIA sm_80+; skipped elsewhere,
 * emulated in CI): int8 and fp8 with token, tensor and head scales, f16 and
 * bf16, GQA, both causal alignments, ragged lengths 0, 1, 17, 300, a dim
 * stride of 2 (element loads), head dims 40 / 64 / 128, softcap on top. */
static void test_quantized_prefill_tc(void **state) {
  (void)state;
  static const qcase cs[] = {
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 4, 2, 40, 100, 64, 0, 0, 0, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL, "flash_tc:warps=2,mt=1,bn=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 6, 3, 33, 77, 40, 0, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_NONE, "flash_tc:warps=2,mt=2,bn=16", 0, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TOKEN, 4, 2, 24, 300, 64, 0, 1, 0,
       CLATTN_DTYPE_F16, CLATTN_MASK_CAUSAL_TOP_LEFT, "flash_tc:warps=2,mt=1,bn=32", 0, 0, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_HEAD, 4, 1, 50, 30, 128, 0, 0, 0, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "flash_tc:warps=4,mt=1,bn=16", 1, 0, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TENSOR, 4, 2, 37, 64, 64, 0, 0, 0,
       CLATTN_DTYPE_BF16, CLATTN_MASK_CAUSAL, "flash_tc:warps=2,mt=1,bn=32", 0, 20.0, 0},
  };
  run_quant_cases(cs, sizeof cs / sizeof *cs, "quantized prefill tc");
}

/* Runs a code-decoding plan (one key per sequence, 256 dims in all): q from
 * the host (qbytes), K codes 0x10 (finite in every type), V codes 0..255 in
 * order, tensor scales of 1; the output comes back into ho (obytes). */
static void run_codes(clattn_plan plan, const void *hq, size_t qbytes, void *ho, size_t obytes) {
  unsigned char kc[256], vc[256];
  const float one = 1.0f;
  for (int x = 0; x < 256; x++) {
    kc[x] = 0x10;
    vc[x] = (unsigned char)x;
  }
  clattn_exec_args a;
  memset(&a, 0, sizeof a);
  a.q = buf_from(hq, qbytes);
  a.k = buf_from(kc, sizeof kc);
  a.v = buf_from(vc, sizeof vc);
  a.o = buf_from(ho, obytes);
  a.k_scale = buf_from(&one, 4);
  a.v_scale = buf_from(&one, 4);
  assert_int_equal(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL), CLATTN_SUCCESS);
  assert_int_equal(tu_buffer_read(g_ctx, a.o, ho, obytes), CL_SUCCESS);
  const cl_mem all[6] = {a.q, a.k, a.v, a.o, a.k_scale, a.v_scale};
  for (int i = 0; i < 6; i++)
    clReleaseMemObject(all[i]);
}

/* Every code of each quantized type through every kernel form: one key, so
 * the output row is V's row exactly (p = 1); V's 256 dimensions hold the
 * codes 0..255 with a tensor scale of 1, so output dimension x must be
 * clattn_kv_code_value(x) bit for bit (NaN where it is NaN). Also the host
 * twins' fixed points (largest values, subnormals, inf / NaN codes) and
 * their round trip. */
static void test_quant_codes(void **state) {
  (void)state;
  static const clattn_kv_dtype types[3] = {CLATTN_KV_DTYPE_INT8, CLATTN_KV_DTYPE_FP8_E4M3,
                                           CLATTN_KV_DTYPE_FP8_E5M2};
  /* fixed points of the formats */
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E4M3, 0x7e) == 448.0f);
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E4M3, 0x08) == 0x1.0p-6f);
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E4M3, 0x01) == 0x1.0p-9f);
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E4M3, 0xc4) == -3.0f);
  assert_true(isnan(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E4M3, 0xff)));
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2, 0x7b) == 57344.0f);
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2, 0x01) == 0x1.0p-16f);
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2, 0x04) == 0x1.0p-14f);
  assert_true(isinf(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2, 0xfc)));
  assert_true(isnan(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2, 0x7d)));
  assert_true(clattn_kv_code_value(CLATTN_KV_DTYPE_INT8, 0x80) == -128.0f);
  /* encoding: saturation, ties to even, NaN */
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E4M3, 1000.0f), 0x7e);
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E4M3, -INFINITY), 0xfe);
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E4M3, 1.0625f), 0x38); /* tie: even */
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E4M3, 1.1875f), 0x3a); /* tie: even */
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E5M2, 1e9f), 0x7b);
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_INT8, 2.5f), 2);
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_INT8, -300.0f), 0x81);
  assert_int_equal(clattn_kv_code_of(CLATTN_KV_DTYPE_INT8, NAN), 0);
  assert_true(isnan(clattn_kv_code_value(CLATTN_KV_DTYPE_FP8_E5M2,
                                         clattn_kv_code_of(CLATTN_KV_DTYPE_FP8_E5M2, NAN))));
  for (int ti = 0; ti < 3; ti++)
    for (unsigned x = 0; x < 256; x++) {
      const float v = clattn_kv_code_value(types[ti], x);
      if (!isfinite(v) || (types[ti] == CLATTN_KV_DTYPE_INT8 && x == 0x80)) continue;
      if (clattn_kv_code_of(types[ti], v) != x)
        fail_msg("%s code 0x%02x: value %g encodes as 0x%02x", clattn_kv_dtype_name(types[ti]), x,
                 (double)v, clattn_kv_code_of(types[ti], v));
    }
  /* the kernels' decoding of every code */
  static const char *const cfgs[3] = {"decode:wg=1", "decode:wg=64,splits=2",
                                      "decode_warp:wg=64,qr=1,unroll=2"};
  for (int ti = 0; ti < 3; ti++)
    for (int ci = 0; ci < 3; ci++) {
      clattn_attention_desc d;
      clattn_attention_desc_init(&d);
      d.heads = d.kv_heads = 1;
      d.seq_q = d.seq_kv = 1;
      d.head_dim = 256;
      d.layout = CLATTN_LAYOUT_BSHD;
      d.kv_dtype = types[ti];
      d.kv_scale = CLATTN_KV_SCALE_TENSOR;
      clattn_plan plan = NULL;
      if (clattn_plan_create_with_config(g_ctx, &d, 0, cfgs[ci], &plan) != CLATTN_SUCCESS)
        fail_msg("%s: %s", cfgs[ci], clattn_context_last_error(g_ctx));
      float hq[256], ho[256];
      for (int x = 0; x < 256; x++) {
        hq[x] = (float)(x % 7) * 0.01f;
        ho[x] = NAN;
      }
      run_codes(plan, hq, sizeof hq, ho, sizeof ho);
      for (unsigned x = 0; x < 256; x++) {
        const float want = clattn_kv_code_value(types[ti], x);
        if (!(ho[x] == want || (isnan(ho[x]) && isnan(want))))
          fail_msg("%s %s: code 0x%02x decodes to %a, want %a", cfgs[ci],
                   clattn_kv_dtype_name(types[ti]), x, (double)ho[x], (double)want);
      }
      clattn_plan_release(plan);
    }
}

/* Every code of each 8-bit type through decode_tc (NVIDIA sm_80+, or
 * emulated; skipped elsewhere): two sequences of one key, V's 128
 * dimensions holding codes 0..127 and 128..255 with a tensor scale of 1,
 * so the f16 / bf16 output is each code's value exactly (all of them are
 * representable; inf and NaN where the code is one). */
static void test_decode_tc_codes(void **state) {
  (void)state;
  if (!decode_tc_applies()) skip();
  static const clattn_kv_dtype types[3] = {CLATTN_KV_DTYPE_INT8, CLATTN_KV_DTYPE_FP8_E4M3,
                                           CLATTN_KV_DTYPE_FP8_E5M2};
  for (int ti = 0; ti < 3; ti++)
    for (int dt = 1; dt <= 2; dt++) {
      clattn_attention_desc d;
      clattn_attention_desc_init(&d);
      d.batch = 2;
      d.heads = d.kv_heads = 1;
      d.seq_q = d.seq_kv = 1;
      d.head_dim = 128;
      d.dtype = (clattn_dtype)dt;
      d.kv_dtype = types[ti];
      d.kv_scale = CLATTN_KV_SCALE_TENSOR;
      clattn_plan plan = NULL;
      if (clattn_plan_create_with_config(g_ctx, &d, 0, "decode_tc", &plan) != CLATTN_SUCCESS)
        fail_msg("decode_tc: %s", clattn_context_last_error(g_ctx));
      uint16_t hq[256], ho[256];
      for (int x = 0; x < 256; x++) {
        const float qv = (float)(x % 7) * 0.01f;
        hq[x] = dt == 1 ? tu_float_to_half(qv) : tu_float_to_bf16(qv);
        ho[x] = 0x7fff;
      }
      run_codes(plan, hq, sizeof hq, ho, sizeof ho);
      for (unsigned x = 0; x < 256; x++) {
        const float want = clattn_kv_code_value(types[ti], x);
        const float got = dt == 1 ? tu_half_to_float(ho[x]) : tu_bf16_to_float(ho[x]);
        if (!(got == want || (isnan(got) && isnan(want))))
          fail_msg("decode_tc %s %s: code 0x%02x decodes to %a, want %a; %s",
                   clattn_dtype_name(d.dtype), clattn_kv_dtype_name(types[ti]), x, (double)got,
                   (double)want, clattn_plan_describe(plan));
      }
      clattn_plan_release(plan);
    }
}

/* clattn_kv_append_ex quantizing into contiguous and paged caches: codes
 * equal the host twin's encoding of x / scale, per-token scales equal
 * absmax / the code's largest value; given scales (channel) are used as
 * they are; out-of-range slots are skipped. */
static void test_quant_append(void **state) {
  (void)state;
  static const struct {
    clattn_kv_dtype q;
    clattn_kv_scale s;
    int kv;
    clattn_dtype t;
    int ties; /* scale 1 and values halfway between codes (ties go to the even code) */
  } cs[] = {
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, CLATTN_KV_CONTIGUOUS, CLATTN_DTYPE_F32, 0},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, CLATTN_KV_PAGED, CLATTN_DTYPE_BF16, 0},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_CHANNEL, CLATTN_KV_PAGED_HEAD_MAJOR,
       CLATTN_DTYPE_F16, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_HEAD, CLATTN_KV_PAGED, CLATTN_DTYPE_F32, 0},
      {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TENSOR, CLATTN_KV_CONTIGUOUS, CLATTN_DTYPE_F32, 1},
      {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TENSOR, CLATTN_KV_CONTIGUOUS, CLATTN_DTYPE_F32, 1},
      {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_TENSOR, CLATTN_KV_PAGED, CLATTN_DTYPE_F32, 1},
  };
  /* halfway values of each type (normal and subnormal), either sign */
  static const float ties[3][6] = {{2.5f, 3.5f, -0.5f, 126.5f, -1.5f, 0.5f},
                                   {1.0625f, 1.1875f, 0x1.0p-10f, 3 * 0x1.0p-10f, -1.0625f, 416.0f},
                                   {1.125f, 1.375f, 0x1.0p-17f, 3 * 0x1.0p-17f, -1.125f, 53248.0f}};
  tu_rng rng;
  tu_rng_init(&rng, tu_case_seed("quant append"));
  for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
    const int Hk = 2, D = 24, B = 2, N = 20, ps = 8, npages = 6, ntok = 11;
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    d.batch = B;
    d.heads = 4;
    d.kv_heads = Hk;
    d.head_dim = D;
    d.seq_kv = N;
    d.layout = CLATTN_LAYOUT_BSHD;
    d.dtype = cs[ci].t;
    d.kv_dtype = cs[ci].q;
    d.kv_scale = cs[ci].s;
    d.kv_layout = (clattn_kv_layout)cs[ci].kv;
    if (cs[ci].kv) {
      d.page_size = ps;
      d.num_pages = npages;
      d.max_pages_per_seq = 3;
    }
    clattn_strides qs, ks, vs, os;
    size_t el[4];
    assert_int_equal(clattn_attention_desc_strides(&d, &qs, &ks, &vs, &os, el), CLATTN_SUCCESS);
    const int per = cs[ci].kv ? ps : N, slots_all = cs[ci].kv ? npages * ps : B * N;
    const size_t nsc = cs[ci].s == CLATTN_KV_SCALE_TOKEN    ? (size_t)slots_all * Hk
                       : cs[ci].s == CLATTN_KV_SCALE_TENSOR ? 1
                       : cs[ci].s == CLATTN_KV_SCALE_HEAD   ? (size_t)Hk
                                                            : (size_t)Hk * D;
    const size_t es = cs[ci].t == CLATTN_DTYPE_F32 ? 4 : 2, nn = (size_t)ntok * Hk * D;
    float *xk = malloc(nn * 4), *xv = malloc(nn * 4), *sk = malloc(nsc * 4), *sv = malloc(nsc * 4);
    void *nk = malloc(nn * es), *nv = malloc(nn * es);
    int slots[11];
    for (int t = 0; t < ntok; t++) /* distinct slots, one past the end, one padding */
      slots[t] = t == 3 ? -1 : t == 7 ? slots_all : (t * 7 + 3) % slots_all;
    for (size_t i = 0; i < nn; i++) {
      xk[i] = round_to(cs[ci].t, (float)tu_rng_uniform(&rng, -3, 3));
      xv[i] = round_to(cs[ci].t, (float)tu_rng_uniform(&rng, -3, 3));
      store(cs[ci].t, nk, i, xk[i]);
      store(cs[ci].t, nv, i, xv[i]);
    }
    for (size_t i = 0; i < nsc; i++) {
      sk[i] = cs[ci].ties ? 1.0f : (float)tu_rng_uniform(&rng, 0.001, 0.05);
      sv[i] = cs[ci].ties ? 1.0f : (float)tu_rng_uniform(&rng, 0.001, 0.05);
    }
    for (size_t i = 0; i < nn && cs[ci].ties; i++) {
      xk[i] = ties[cs[ci].q - 1][i % 6];
      xv[i] = ties[cs[ci].q - 1][(i + 3) % 6];
      store(cs[ci].t, nk, i, xk[i]);
      store(cs[ci].t, nv, i, xv[i]);
    }
    unsigned char *ck = malloc(el[1]), *cv = malloc(el[2]);
    memset(ck, 0x5a, el[1]);
    memset(cv, 0x5a, el[2]);
    clattn_kv_append_args a = {.k_new = buf_from(nk, nn * es),
                               .v_new = buf_from(nv, nn * es),
                               .slot_mapping = buf_from(slots, sizeof slots),
                               .num_tokens = ntok,
                               .k_cache = buf_from(ck, el[1]),
                               .v_cache = buf_from(cv, el[2]),
                               .k_scale = buf_from(sk, nsc * 4),
                               .v_scale = buf_from(sv, nsc * 4)};
    float *gk = malloc(nsc * 4), *gv = malloc(nsc * 4);
    assert_int_equal(clattn_kv_append_ex(g_ctx, &d, &a, 0, NULL, NULL), CLATTN_SUCCESS);
    assert_int_equal(tu_buffer_read(g_ctx, a.k_cache, ck, el[1]), CL_SUCCESS);
    assert_int_equal(tu_buffer_read(g_ctx, a.v_cache, cv, el[2]), CL_SUCCESS);
    assert_int_equal(tu_buffer_read(g_ctx, a.k_scale, gk, nsc * 4), CL_SUCCESS);
    assert_int_equal(tu_buffer_read(g_ctx, a.v_scale, gv, nsc * 4), CL_SUCCESS);
    const float qmax = cs[ci].q == CLATTN_KV_DTYPE_INT8       ? 127.0f
                       : cs[ci].q == CLATTN_KV_DTYPE_FP8_E4M3 ? 448.0f
                                                              : 57344.0f;
    size_t checked = 0, written = 0;
    for (int t = 0; t < ntok; t++) {
      if (slots[t] < 0 || slots[t] >= slots_all) continue;
      const int64_t row = slots[t] / per, pos = slots[t] % per;
      for (int h = 0; h < Hk; h++)
        for (int w = 0; w < 2; w++) {
          const float *x = w ? xv : xk, *sc = w ? gv : gk, *given = w ? sv : sk;
          const clattn_strides *st = w ? &vs : &ks;
          const unsigned char *code = w ? cv : ck;
          float amax = 0.0f;
          for (int e = 0; e < D; e++)
            amax = fmaxf(amax, fabsf(x[((size_t)t * Hk + h) * D + e]));
          for (int e = 0; e < D; e++) {
            size_t g;
            if (cs[ci].s == CLATTN_KV_SCALE_TOKEN) {
              g = (size_t)slots[t] * Hk + h;
              if (fabsf(sc[g] - amax / qmax) > 1e-6f * amax / qmax)
                fail_msg("case %zu: token scale %g, want %g", ci, (double)sc[g],
                         (double)(amax / qmax));
            } else {
              g = cs[ci].s == CLATTN_KV_SCALE_TENSOR ? 0
                  : cs[ci].s == CLATTN_KV_SCALE_HEAD ? (size_t)h
                                                     : (size_t)h * D + e;
              if (sc[g] != given[g]) fail_msg("case %zu: a given scale changed", ci);
            }
            const unsigned want =
                clattn_kv_code_of(cs[ci].q, x[((size_t)t * Hk + h) * D + e] / sc[g]);
            const unsigned got = code[row * st->batch + pos * st->seq + h * st->head + e * st->dim];
            if (got != want)
              fail_msg("case %zu (%s): token %d head %d dim %d: code 0x%02x, want 0x%02x", ci,
                       clattn_kv_dtype_name(cs[ci].q), t, h, e, got, want);
            checked++;
          }
        }
    }
    for (size_t i = 0; i < el[1]; i++)
      written += ck[i] != 0x5a;
    assert_true(checked == (size_t)2 * 9 * Hk * D); /* 9 tokens land */
    assert_true(written <= (size_t)9 * Hk * D);     /* nothing else was touched */
    const cl_mem all[8] = {a.k_new,   a.v_new,   a.slot_mapping, a.k_cache,
                           a.v_cache, a.k_scale, a.v_scale,      NULL};
    for (int i = 0; i < 7; i++)
      clReleaseMemObject(all[i]);
    free(xk);
    free(xv);
    free(sk);
    free(sv);
    free(gk);
    free(gv);
    free(nk);
    free(nv);
    free(ck);
    free(cv);
  }
}

/* A user mask's block classes on a ragged prefill (lengths 0, 1, 17, 300;
 * a window of 20 behind the diagonal plus the first two keys, causal
 * within each sequence): made for the execution's tables (hidden tiles
 * skipped) and for tables with half the keys (the kernels see that they
 * were made for other tables and evaluate the mask on every tile), on
 * flash_rows (CPUs), the work-group kernel and flash_tc (NVIDIA or
 * emulated; skipped elsewhere), against the reference with the C twin. */
static const char k_window_src[] =
    "int clattn_mask_mod(int b, int h, int q, int k, __global const uchar *u) {\n"
    "  return (k <= q && k >= q - 20) || k < 2;\n"
    "}\n";
static int twin_window(int b, int h, int q, int k, const void *u) {
  (void)b, (void)h, (void)u;
  return (k <= q && k >= q - 20) || k < 2;
}

static void test_ragged_blocks(void **state) {
  (void)state;
  const clattn_reference_fns wf = {NULL, twin_window, NULL, NULL};
  static const char *const cfgs[3] = {NULL, "flash:bm=16,bn=16,tm=4,tn=4",
                                      "flash_tc:warps=2,mt=1,bn=32"};
  for (int i = 0; i < 3; i++)
    for (int blk = 1; blk <= 2; blk++) {
      dcase c = base(4, 4, 2, 64, 300, 300);
      ragged_0_1_17_300(&c, 300);
      c.dtype = i == 2 ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
      c.config = cfgs[i];
      c.optional = i == 2;
      c.mask_mod = k_window_src;
      c.fns = &wf;
      c.blocks = blk;
      char label[96];
      snprintf(label, sizeof label, "ragged blocks %s, %s", cfgs[i] ? cfgs[i] : "default",
               blk == 1 ? "its tables" : "other tables");
      run_case(&c, label);
    }
}

/* Score modifiers in the decode kernels: softcap, ALiBi, a user score_mod
 * (an ALiBi-like distance term per head and a bonus every third key) and a
 * user mask_mod reading the user buffer, on every kernel form, contiguous,
 * paged and ragged, causal seq_q > 1, against the float64 reference with
 * the functions' C twins. */
static const char k_mods_src[] =
    "float clattn_score_mod(float s, int b, int h, int q, int k, __global const uchar *u) {\n"
    "  return s - 0.05f * (float)(h + 1) * fabs((float)(q - k)) + (k % 3 == 0 ? 0.25f : 0.0f);\n"
    "}\n"
    "int clattn_mask_mod(int b, int h, int q, int k, __global const uchar *u) {\n"
    "  const __global int *w = (const __global int *)u;\n"
    "  return k % w[0] != h % 2 || k == 0;\n"
    "}\n";
static double twin_score(double s, int b, int h, int q, int k, const void *u) {
  (void)b;
  (void)u;
  return s - 0.05 * (h + 1) * fabs((double)(q - k)) + (k % 3 == 0 ? 0.25 : 0.0);
}
static int twin_mask(int b, int h, int q, int k, const void *u) {
  (void)b;
  (void)q;
  return k % ((const int *)u)[0] != h % 2 || k == 0;
}

static void test_decode_mods(void **state) {
  (void)state;
  static const int period = 5;
  /* the reference applies each twin it is given: one set per combination */
  const clattn_reference_fns fns[3] = {{twin_score, NULL, &period, NULL},
                                       {NULL, twin_mask, &period, NULL},
                                       {twin_score, twin_mask, &period, NULL}};
  static const char *const cfgs[4] = {"decode:wg=1", "decode:wg=64,splits=3",
                                      "decode_warp:wg=64,qr=4,unroll=2", "decode:wg=1,kt=16"};
  for (int i = 0; i < 8; i++) {
    const int D = i == 3 ? 40 : 64;
    dcase c = base(2, 8, 2, D, 1 + (i % 3), 150);
    c.config = cfgs[i % 4];
    c.mask = i % 3 ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
    c.dtype = i == 5 ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
    c.softcap = i % 2 ? 0.0 : 20.0;
    c.alibi = i % 4 == 1 || i == 4 ? 8.0 : 0.0;
    if (i >= 2) {
      c.score_mod = i % 2 || i == 2 ? k_mods_src : NULL;
      c.mask_mod = i >= 4 ? k_mods_src : NULL;
      c.fns = &fns[(c.score_mod ? 1 : 0) + (c.mask_mod ? 2 : 0) - 1];
      c.user_bytes = sizeof period;
    }
    if (i == 6) { /* paged, shared prefix pages */
      c.kv = CLATTN_KV_PAGED;
      c.page_size = 16;
      c.share = 2;
      c.nk[1] = 70;
    }
    if (i == 7) { /* ragged: lengths 0, 1, 17, 150 */
      c.B = 4;
      c.ragged = 1;
      const int lens[4] = {0, 1, 17, 150};
      for (int b = 0; b < 4; b++) {
        c.nk[b] = lens[b];
        c.nq[b] = lens[b] < 2 ? lens[b] : 2;
      }
    }
    char label[96];
    snprintf(label, sizeof label, "mods %d (%s)", i, c.config);
    run_case(&c, label);
  }
  /* bias tensors: a full f32 one (-inf entries, a row of batch entry 1 hidden
   * entirely) and a bool [Nq][Nk] mask shared by all, contiguous and paged,
   * on each form */
  const int B = 2, H = 8, NQ = 3, NK = 150;
  float *fb = malloc((size_t)B * H * NQ * NK * sizeof(float));
  unsigned char *mb = malloc((size_t)NQ * NK);
  tu_rng rng;
  tu_rng_init(&rng, tu_case_seed("decode bias"));
  for (size_t e = 0; e < (size_t)B * H * NQ * NK; e++) {
    const double x = tu_rng_uniform(&rng, -2, 2);
    const size_t row = e / NK; /* (b, h, i) */
    fb[e] = x < -1.6 || row == (size_t)(1 * H + 3) * NQ + 1 ? -INFINITY : (float)x;
  }
  for (size_t e = 0; e < (size_t)NQ * NK; e++)
    mb[e] = tu_rng_uniform(&rng, 0, 1) < 0.7;
  for (int i = 0; i < 6; i++) {
    dcase c = base(B, H, 2, 64, NQ, NK);
    c.config = cfgs[i % 4];
    c.mask = i % 2 ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
    c.bias_type = i < 3 ? CLATTN_BIAS_F32 : CLATTN_BIAS_BOOL;
    c.bias = i < 3 ? (const void *)fb : (const void *)mb;
    c.bias_bytes = i < 3 ? (size_t)B * H * NQ * NK * 4 : (size_t)NQ * NK;
    c.bias_strides = i < 3 ? (clattn_strides){(int64_t)H * NQ * NK, (int64_t)NQ * NK, NK, 1}
                           : (clattn_strides){0, 0, NK, 1};
    c.softcap = i == 2 ? 20.0 : 0.0;
    if (i >= 4) { /* paged */
      c.kv = CLATTN_KV_PAGED;
      c.page_size = 16;
    }
    char label[96];
    snprintf(label, sizeof label, "bias %d (%s)", i, c.config);
    run_case(&c, label);
  }
  free(fb);
  free(mb);
}

/* A dense f32 bias [B][H][NQ][NK] for case c (uniform in [-2, 2), about
 * one entry in ten -inf), drawn from the label's seed; the caller frees it. */
static float *set_random_bias(dcase *c, int B, int H, int NQ, int NK, const char *label) {
  const size_t n = (size_t)B * H * NQ * NK;
  float *fb = malloc(n * sizeof(float));
  assert_non_null(fb);
  tu_rng rng;
  tu_rng_init(&rng, tu_case_seed(label));
  for (size_t e = 0; e < n; e++) {
    const double x = tu_rng_uniform(&rng, -2, 2);
    fb[e] = x < -1.6 ? -INFINITY : (float)x;
  }
  c->bias_type = CLATTN_BIAS_F32;
  c->bias = fb;
  c->bias_bytes = n * 4;
  c->bias_strides = (clattn_strides){(int64_t)H * NQ * NK, (int64_t)NQ * NK, NK, 1};
  return fb;
}

/* An out-of-order queue (the split kernel and the merge must be ordered by
 * an event, the fused form's counters filled before the first split):
 * the portable decode with 4 splits, and, where decode_tc runs (NVIDIA, or
 * emulated), its merge kernel and its fused merge; each plan executed five
 * times (profiled), the last into fresh NaN-filled outputs. */
static void test_decode_tc_out_of_order(void **state) {
  (void)state;
  cl_int err;
  cl_command_queue queue = clCreateCommandQueue(
      clattn_context_cl_context(g_ctx), clattn_context_device(g_ctx),
      CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE | CL_QUEUE_PROFILING_ENABLE, &err);
  if (!queue) {
    print_message("out-of-order queues unsupported here (%d): skipped\n", (int)err);
    skip();
  }
  clattn_context qctx = NULL, saved = g_ctx;
  assert_int_equal(clattn_context_create_from_queue(queue, &qctx), CLATTN_SUCCESS);
  const bool tc = decode_tc_applies();
  static const char *const cfgs[3] = {"decode:splits=4", "decode_tc:splits=5,fuse=0",
                                      "decode_tc:splits=5,fuse=1"};
  g_ctx = qctx;
  for (int i = 0; i < (tc ? 3 : 1); i++) {
    dcase c = base(3, 8, 2, 64, 1, 700);
    c.dtype = CLATTN_DTYPE_BF16;
    c.nk[0] = 3;
    c.kv = CLATTN_KV_PAGED;
    c.page_size = 16;
    c.config = cfgs[i];
    c.profile = 1; /* four more executions, the last one checked */
    run_case(&c, cfgs[i]);
  }
  g_ctx = saved;
  clattn_context_release(qctx);
  clReleaseCommandQueue(queue);
}

/* The modifiers in decode_tc (NVIDIA sm_80+, emulated in CI; skipped
 * elsewhere): softcap and ALiBi with a causal seq_q of 3, the user
 * score_mod and mask_mod (reading the user buffer) on a paged cache with
 * shared pages, an f32 bias with -inf entries, a user mask with softcap on a
 * ragged batch (lengths 0, 1, 17, 150); f16 and bf16 (softcap in both),
 * against the reference with the twins. */
static void test_decode_tc_mods(void **state) {
  (void)state;
  if (!decode_tc_applies()) skip();
  static const int period = 5;
  const clattn_reference_fns fns = {twin_score, twin_mask, &period, NULL};
  const clattn_reference_fns mf = {NULL, twin_mask, &period, NULL};
  const int B = 2, H = 8, NQ = 2, NK = 150;
  float *fb = NULL;
  for (int i = 0; i < 4; i++) {
    dcase c = base(B, H, 2, 64, i == 0 ? 3 : NQ, NK);
    c.config = "decode_tc";
    c.optional = 1;
    c.dtype = i % 2 ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_BF16;
    if (i == 0) {
      c.mask = CLATTN_MASK_CAUSAL;
      c.softcap = 20.0;
      c.alibi = 8.0;
    }
    if (i == 1) {
      c.score_mod = c.mask_mod = k_mods_src;
      c.fns = &fns;
      c.user_bytes = sizeof period;
      c.kv = CLATTN_KV_PAGED;
      c.page_size = 16;
      c.share = 2;
      c.nk[1] = 70;
    }
    if (i == 2) fb = set_random_bias(&c, B, H, NQ, NK, "decode_tc bias");
    if (i == 3) { /* ragged: lengths 0, 1, 17, 150 */
      c.B = 4;
      c.ragged = 1;
      const int lens[4] = {0, 1, 17, 150};
      for (int b = 0; b < 4; b++) {
        c.nk[b] = lens[b];
        c.nq[b] = lens[b] < 1 ? lens[b] : 1;
      }
      c.mask_mod = k_mods_src;
      c.fns = &mf;
      c.user_bytes = sizeof period;
      c.softcap = 30.0; /* f16's softcap (bf16's: case 0) */
    }
    char label[96];
    snprintf(label, sizeof label, "decode_tc mods %d", i);
    run_case(&c, label);
  }
  free(fb);
}

/* allh=1: the CPU form reading every KV head of its keys in one work-item
 * (token by token, as the heads lie in BSHD caches and paged pools), against
 * the reference: both layouts, GQA 1:1 to 8:1, seq_q 1..16 with both causal
 * alignments, row blocks (qr below the group), forced splits, seqlens, every
 * dtype, paged pools (both layouts, shuffled and shared pages, page sizes 1,
 * 7, 16), ragged batches with sinks, padded strides, a dim stride of 2 (the
 * per-element form: allh ignored), quantized K/V with every scale type,
 * softcap, ALiBi, user functions and a bias tensor. */
static void test_allheads(void **state) {
  (void)state;
  static const char *const has = "(all KV heads a work-item)";
  static const struct {
    int B, hq, hk, d, nq, nk, kv, ps, ragged, strided, dim2, seqlens, layout;
    clattn_dtype t;
    clattn_mask mask;
    const char *config;
  } cs[] = {
      {2, 32, 8, 128, 1, 1000, 0, 0, 0, 0, 0, 1, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_BF16,
       CLATTN_MASK_NONE, "decode:wg=1,allh=1"},
      {2, 32, 8, 128, 1, 700, 0, 0, 0, 0, 0, 0, CLATTN_LAYOUT_BHSD, CLATTN_DTYPE_F16,
       CLATTN_MASK_NONE, "decode:wg=1,kt=16,allh=1,splits=3"},
      {2, 4, 4, 32, 16, 90, 0, 0, 0, 0, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL_TOP_LEFT, "decode:wg=1,kt=16,allh=1"},
      {3, 12, 3, 48, 5, 77, 0, 0, 0, 0, 0, 1, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode:wg=1,kt=32,qr=2,allh=1,splits=2"},
      {2, 16, 2, 64, 3, 300, 0, 0, 0, 0, 0, 0, CLATTN_LAYOUT_BHSD, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL, "decode:wg=1,qr=4,allh=1"},
      {3, 8, 2, 64, 4, 0, CLATTN_KV_PAGED, 16, 0, 0, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL, "decode:wg=1,allh=1,splits=3"},
      {3, 8, 4, 32, 1, 0, CLATTN_KV_PAGED_HEAD_MAJOR, 7, 0, 0, 0, 0, CLATTN_LAYOUT_BSHD,
       CLATTN_DTYPE_F32, CLATTN_MASK_NONE, "decode:wg=1,kt=16,allh=1"},
      {3, 4, 2, 16, 2, 0, CLATTN_KV_PAGED, 1, 0, 0, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F16,
       CLATTN_MASK_CAUSAL, "decode:wg=1,kt=16,allh=1"},
      {4, 8, 2, 32, 5, 0, 0, 0, 1, 0, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode:wg=1,allh=1"},
      {4, 8, 2, 32, 3, 0, CLATTN_KV_PAGED, 16, 1, 0, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_BF16,
       CLATTN_MASK_CAUSAL, "decode:wg=1,allh=1,splits=4"},
      {2, 6, 3, 32, 2, 50, 0, 0, 0, 1, 0, 1, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F32,
       CLATTN_MASK_CAUSAL, "decode:wg=1,allh=1,splits=2"},
      {2, 6, 3, 32, 2, 0, CLATTN_KV_PAGED_HEAD_MAJOR, 8, 0, 1, 0, 0, CLATTN_LAYOUT_BSHD,
       CLATTN_DTYPE_F32, CLATTN_MASK_CAUSAL, "decode:wg=1,kt=16,allh=1,splits=2"},
      {2, 6, 3, 32, 2, 0, CLATTN_KV_PAGED, 8, 0, 1, 0, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F16,
       CLATTN_MASK_NONE, "decode:wg=1,kt=16,allh=1"},
      {2, 8, 2, 32, 1, 100, 0, 0, 0, 0, 1, 0, CLATTN_LAYOUT_BSHD, CLATTN_DTYPE_F32,
       CLATTN_MASK_NONE, "decode:wg=1,allh=1"},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    dcase c = base(cs[i].B, cs[i].hq, cs[i].hk, cs[i].d, cs[i].nq, cs[i].nk);
    c.kv = cs[i].kv;
    c.page_size = cs[i].ps;
    c.strided = cs[i].strided;
    c.dim2 = cs[i].dim2;
    c.seqlens = cs[i].seqlens;
    c.layout = cs[i].layout;
    c.dtype = cs[i].t;
    c.mask = cs[i].mask;
    c.config = cs[i].config;
    c.decode_has = cs[i].dim2 ? NULL : has;
    c.decode_lacks = cs[i].dim2 ? has : NULL;
    if (c.seqlens) c.nk[1] = cs[i].nk / 3 + 1;
    if (c.kv) { /* shuffled pages; sequences 1, 2 share the first two of 0 */
      c.share = 2;
      c.nk[0] = 5 * cs[i].ps + 3;
      c.nk[1] = 3 * cs[i].ps;
      c.nk[2] = cs[i].ps == 1 ? 40 : 300;
      if (c.B > 3) c.nk[3] = 2 * cs[i].ps + 1;
    }
    if (cs[i].ragged) { /* lengths 0, 1, 17, 300 */
      static const float sinks[8] = {-1.0f, 0.5f, 2.0f, 6.0f, 0.0f, 1.0f, -3.0f, 0.25f};
      c.ragged = 1;
      c.share = 0;
      c.sinks = cs[i].kv ? sinks : NULL;
      const int lens[4] = {0, 1, 17, 300};
      for (int b = 0; b < 4; b++) {
        c.nk[b] = lens[b];
        c.nq[b] = lens[b] < cs[i].nq ? lens[b] : cs[i].nq;
      }
    }
    char label[96];
    snprintf(label, sizeof label, "allheads %zu (%s)", i, c.config);
    run_case(&c, label);
  }
  /* quantized K/V, every scale type, contiguous and paged */
  static const struct {
    clattn_kv_dtype q;
    clattn_kv_scale s;
    int kv;
    clattn_mask mask;
  } qs[] = {{CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TOKEN, 0, CLATTN_MASK_NONE},
            {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_CHANNEL, 0, CLATTN_MASK_CAUSAL},
            {CLATTN_KV_DTYPE_FP8_E5M2, CLATTN_KV_SCALE_HEAD, 1, CLATTN_MASK_CAUSAL},
            {CLATTN_KV_DTYPE_INT8, CLATTN_KV_SCALE_TENSOR, 0, CLATTN_MASK_CAUSAL_TOP_LEFT},
            {CLATTN_KV_DTYPE_FP8_E4M3, CLATTN_KV_SCALE_TOKEN, 1, CLATTN_MASK_CAUSAL}};
  for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
    dcase c = base(3, 8, 2, 64, 1 + (int)i % 3, 300);
    c.kvq = qs[i].q;
    c.kvs = qs[i].s;
    c.kv = qs[i].kv;
    c.mask = qs[i].mask;
    c.dtype = i % 2 ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F32;
    c.config = i % 2 ? "decode:wg=1,kt=16,allh=1,splits=3" : "decode:wg=1,allh=1";
    c.decode_has = has;
    if (c.kv) {
      c.page_size = 16;
      c.share = 2;
      c.nk[1] = 190;
      c.nk[2] = 33;
    }
    char label[96];
    snprintf(label, sizeof label, "allheads quantized %zu (%s, %s)", i, clattn_kv_dtype_name(c.kvq),
             clattn_kv_scale_name(c.kvs));
    run_case(&c, label);
  }
  /* score modifiers, user functions, a bias tensor */
  static const int period = 5;
  const clattn_reference_fns fns = {twin_score, twin_mask, &period, NULL};
  const int B = 2, H = 8, NQ = 3, NK = 150;
  float *fb = NULL;
  for (int i = 0; i < 3; i++) {
    dcase c = base(B, H, 2, 64, NQ, NK);
    c.config = "decode:wg=1,kt=16,allh=1";
    c.decode_has = has;
    c.mask = CLATTN_MASK_CAUSAL;
    c.softcap = i == 0 ? 20.0 : 0.0;
    c.alibi = i == 0 ? 8.0 : 0.0;
    if (i == 1) {
      c.score_mod = k_mods_src;
      c.mask_mod = k_mods_src;
      c.fns = &fns;
      c.user_bytes = sizeof period;
    }
    if (i == 2) {
      fb = set_random_bias(&c, B, H, NQ, NK, "allheads bias");
      c.kv = CLATTN_KV_PAGED;
      c.page_size = 16;
    }
    char label[96];
    snprintf(label, sizeof label, "allheads mods %d", i);
    run_case(&c, label);
  }
  free(fb);
  /* allh is ignored outside the 16-lane CPU form (head_dim or kt not
   * multiples of 16, wg > 1): the one-head forms run */
  static const char *const other[3] = {"decode:wg=1,allh=1", "decode:wg=1,kt=8,allh=1",
                                       "decode:wg=32,allh=1"};
  for (int i = 0; i < 3; i++) {
    dcase c = base(2, 8, 2, i ? 64 : 40, 2, 100);
    c.config = other[i];
    c.mask = CLATTN_MASK_CAUSAL;
    c.decode_lacks = has;
    char label[96];
    snprintf(label, sizeof label, "allheads ignored %d (%s)", i, c.config);
    run_case(&c, label);
  }
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  g_ctx = NULL;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_contiguous),
      cmocka_unit_test(test_decode_dtypes),
      cmocka_unit_test(test_paged),
      cmocka_unit_test(test_ragged),
      cmocka_unit_test(test_hostile),
      cmocka_unit_test(test_merge_append),
      cmocka_unit_test(test_validation),
      cmocka_unit_test(test_strided),
      cmocka_unit_test(test_decode_warp),
      cmocka_unit_test(test_decode_tc),
      cmocka_unit_test(test_quantized),
      cmocka_unit_test(test_decode_tc_int8),
      cmocka_unit_test(test_decode_tc_codes),
      cmocka_unit_test(test_quantized_prefill),
      cmocka_unit_test(test_quantized_prefill_tc),
      cmocka_unit_test(test_quant_codes),
      cmocka_unit_test(test_quant_append),
      cmocka_unit_test(test_decode_mods),
      cmocka_unit_test(test_decode_tc_mods),
      cmocka_unit_test(test_decode_tc_out_of_order),
      cmocka_unit_test(test_ragged_blocks),
      cmocka_unit_test(test_allheads),
  };
  g_ctx = tu_new_context();
  const int r = cmocka_run_group_tests_name("clattn decode", tests, NULL, NULL);
  clattn_context_release(g_ctx);
  return r;
}
