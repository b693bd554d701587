/* test_decode.c — decode (split-KV), paged KV cache, ragged batches, merge_states, kv_append and
 * hostile tables vs per-sequence float64 references. */
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

/* A pool buffer inside NaN guards: returns the sub-buffer, *parent the whole. */
static cl_mem guarded(const void *h, size_t bytes, clattn_dtype t, cl_mem *parent) {
  const size_t es = t == CLATTN_DTYPE_F32 ? 4 : 2;
  unsigned char *all = malloc(bytes + 2 * GUARD);
  assert_non_null(all);
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
  clattn_strides qs, ks, vs, os;
  size_t el[4];
  assert_int_equal(clattn_attention_desc_strides(&d, &qs, &ks, &vs, &os, el), CLATTN_SUCCESS);
  void *hq = calloc(el[0], es), *hk = malloc(el[1] * es), *hv = malloc(el[2] * es);
  fill_nan(t, hk, el[1]);
  fill_nan(t, hv, el[2]);
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
          store(t, hk, (size_t)(bi * ks.batch + h * ks.head + jj * ks.seq + x * ks.dim),
                lk[b][src]);
          store(t, hv, (size_t)(bi * vs.batch + h * vs.head + jj * vs.seq + x * vs.dim),
                lv[b][src]);
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
    return 0;
  }
  if (st != CLATTN_SUCCESS) fail_msg("%s: plan: %s", label, clattn_context_last_error(g_ctx));
  cl_mem pk, pv;
  cl_mem q = buf_from(hq, el[0] * es);
  cl_mem k = guarded(hk, el[1] * es, t, &pk), v = guarded(hv, el[2] * es, t, &pv);
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
  if (c->kv || c->seqlens) a.seqlens_kv = ms = buf_from(sl, (size_t)B * 4);
  if (c->kv) a.block_table = mb = buf_from(bt, (size_t)B * maxp * 4);
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
      void *sq = malloc((size_t)nq * Hq * D * es), *sk = malloc((size_t)nk * Hk * D * es),
           *sv = malloc((size_t)nk * Hk * D * es);
      for (size_t i = 0; i < (size_t)nq * Hq * D; i++)
        store(t, sq, i, lq[b][i]);
      for (size_t i = 0; i < (size_t)nk * Hk * D; i++) {
        store(t, sk, i, lk[b][i]);
        store(t, sv, i, lv[b][i]);
      }
      assert_int_equal(clattn_reference_attention(&r, sq, sk, sv, ro, rl, NULL, 0), CLATTN_SUCCESS);
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
  clattn_plan_release(plan);
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
      {8, 1, 1, 1000, 64, 0, CLATTN_MASK_NONE},
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
    /* Both forms: the work-group kernel (wg > 1, GPUs) and the CPU rows (wg = 1). */
    snprintf(cfg, sizeof cfg, "decode:splits=%d,wg=%d", cs[i].splits, i % 3 == 0 ? 1 : 64);
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
  };
  g_ctx = tu_new_context();
  const int r = cmocka_run_group_tests_name("clattn decode", tests, NULL, NULL);
  clattn_context_release(g_ctx);
  return r;
}
