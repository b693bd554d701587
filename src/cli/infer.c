/* infer.c — inference problems for run and bench: KV-cache decode, paged caches, ragged batches
 * (setup, timing, per-sequence verification). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t *s) { return cli_splitmix64(s); }

/* Copies element si of src into element di of dst (es bytes each). */
static void cp(void *dst, size_t di, const void *src, size_t si, size_t es) {
  memcpy((char *)dst + di * es, (const char *)src + si * es, es);
}

static cl_mem mk(clattn_context ctx, const void *h, size_t bytes, clattn_status *st) {
  cl_int err;
  cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx),
                            CL_MEM_READ_WRITE | (h ? CL_MEM_COPY_HOST_PTR : 0), bytes ? bytes : 4,
                            (void *)h, &err);
  if (err != CL_SUCCESS) *st = CLATTN_ERROR_OUT_OF_MEMORY;
  return m;
}

clattn_status cli_infer_run(clattn_context ctx, const cli_infer *in, cli_infer_result *r) {
  memset(r, 0, sizeof *r);
  clattn_attention_desc d = in->desc;
  const clattn_dtype t = d.dtype;
  const size_t es = cli_dtype_size(t);
  const int B = in->nlens ? in->nlens : d.batch;
  const int Hq = d.heads, Hk = d.kv_heads ? d.kv_heads : d.heads, D = d.head_dim;
  const int ps = in->page_size;
  int *nq = calloc((size_t)B, sizeof(int)), *nk = calloc((size_t)B, sizeof(int));
  int *cuq = calloc((size_t)B + 1, sizeof(int)), *cuk = calloc((size_t)B + 1, sizeof(int));
  clattn_status st = CLATTN_SUCCESS;
  void *hq = NULL, *hk = NULL, *hv = NULL, *ho = NULL;
  int *bt = NULL;
  cl_mem q = NULL, k = NULL, v = NULL, o = NULL, mq = NULL, mkv = NULL, ms = NULL, mb = NULL;
  clattn_plan plan = NULL;
  if (!nq || !nk || !cuq || !cuk) {
    st = CLATTN_ERROR_OUT_OF_MEMORY;
    goto out;
  }
  /* Ragged: --ragged gives the KV lengths; each sequence has min(seq_q, len)
   * queries (speculative / chunked prefill when seq_q > 1), bottom-right. */
  int nkmax = 1, nqmax = 1;
  for (int b = 0; b < B; b++) {
    nk[b] = in->nlens ? in->lens[b] : d.seq_kv;
    nq[b] = in->nlens ? (nk[b] < d.seq_q ? nk[b] : d.seq_q) : d.seq_q;
    if (nk[b] > nkmax) nkmax = nk[b];
    if (nq[b] > nqmax) nqmax = nq[b];
    cuq[b + 1] = cuq[b] + nq[b];
    cuk[b + 1] = cuk[b] + nk[b];
  }
  d.batch = B;
  d.kv_heads = Hk;
  d.seq_q = nqmax;
  d.seq_kv = nkmax;
  if (in->nlens) {
    d.ragged = 1;
    d.total_q = cuq[B] > 0 ? cuq[B] : 1;
    d.total_kv = cuk[B] > 0 ? cuk[B] : 1;
    if (d.layout == CLATTN_LAYOUT_BHSD) d.layout = CLATTN_LAYOUT_BSHD;
  }
  int maxp = 0, npages = 0;
  if (ps > 0) {
    maxp = (nkmax + ps - 1) / ps;
    for (int b = 0; b < B; b++)
      npages += (nk[b] + ps - 1) / ps;
    if (npages < 1) npages = 1;
    d.kv_layout = CLATTN_KV_PAGED;
    d.page_size = ps;
    d.num_pages = npages;
    d.max_pages_per_seq = maxp;
    bt = calloc((size_t)B * (size_t)maxp + 1, sizeof(int));
    int *perm = malloc((size_t)npages * sizeof(int));
    if (!bt || !perm) {
      free(perm);
      st = CLATTN_ERROR_OUT_OF_MEMORY;
      goto out;
    }
    uint64_t s = in->seed ^ 0xabcdef;
    for (int i = 0; i < npages; i++)
      perm[i] = i;
    for (int i = npages - 1; i > 0; i--) { /* pages in shuffled order */
      const int j = (int)(mix(&s) % (uint64_t)(i + 1)), x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    int next = 0;
    for (int b = 0; b < B; b++)
      for (int p = 0; p < (nk[b] + ps - 1) / ps; p++)
        bt[(size_t)b * maxp + p] = perm[next++];
    free(perm);
  }
  clattn_strides qs, ks, vs, os;
  size_t el[4];
  if ((st = clattn_attention_desc_strides(&d, &qs, &ks, &vs, &os, el)) != CLATTN_SUCCESS) goto out;
  hq = calloc(el[0], es);
  hk = calloc(el[1], es);
  hv = calloc(el[2], es);
  ho = calloc(el[3], es);
  if (!hq || !hk || !hv || !ho) {
    st = CLATTN_ERROR_OUT_OF_MEMORY;
    goto out;
  }
  cli_fill_random(hq, el[0], t, in->seed);
  cli_fill_random(hk, el[1], t, in->seed + 1);
  cli_fill_random(hv, el[2], t, in->seed + 2);
  const unsigned flags = in->check_tables ? CLATTN_PLAN_CHECK_TABLES : 0;
  st = clattn_plan_create_with_config(ctx, &d, flags, in->config, &plan);
  if (st != CLATTN_SUCCESS) goto out;
  snprintf(r->describe, sizeof r->describe, "%s", clattn_plan_describe(plan));
  const size_t ebytes[4] = {el[0] * es, el[1] * es, el[2] * es, el[3] * es};
  q = mk(ctx, hq, ebytes[0], &st);
  k = mk(ctx, hk, ebytes[1], &st);
  v = mk(ctx, hv, ebytes[2], &st);
  o = mk(ctx, NULL, ebytes[3], &st);
  if (d.ragged) mq = mk(ctx, cuq, ((size_t)B + 1) * 4, &st);
  if (d.ragged && !ps) mkv = mk(ctx, cuk, ((size_t)B + 1) * 4, &st);
  if (ps) {
    ms = mk(ctx, nk, (size_t)B * 4, &st);
    mb = mk(ctx, bt, (size_t)B * maxp * 4, &st);
  }
  if (st != CLATTN_SUCCESS) goto out;
  clattn_exec_args a = {q, k, v, o, NULL, mq, mkv, ms, mb, NULL, NULL};
  cl_command_queue queue = clattn_context_queue(ctx);
  double *ms_t = calloc((size_t)(in->reps > 0 ? in->reps : 1), sizeof(double));
  if (!ms_t) {
    st = CLATTN_ERROR_OUT_OF_MEMORY;
    goto out;
  }
  for (int i = 0; i < in->warmup + in->reps && st == CLATTN_SUCCESS; i++) {
    cl_event m0 = NULL, ev = NULL;
    clEnqueueMarkerWithWaitList(queue, 0, NULL, &m0);
    st = clattn_plan_execute_ex(plan, &a, 0, NULL, &ev);
    if (st == CLATTN_SUCCESS) {
      clWaitForEvents(1, &ev);
      cl_ulong t0 = 0, t1 = 0;
      clGetEventProfilingInfo(m0, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL);
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
      if (i >= in->warmup) ms_t[i - in->warmup] = (double)(t1 - t0) * 1e-6;
      clReleaseEvent(ev);
    }
    if (m0) clReleaseEvent(m0);
  }
  if (st == CLATTN_SUCCESS) {
    for (int i = 1; i < in->reps; i++) /* insertion sort: a few runs */
      for (int j = i; j > 0 && ms_t[j - 1] > ms_t[j]; j--) {
        const double x = ms_t[j];
        ms_t[j] = ms_t[j - 1];
        ms_t[j - 1] = x;
      }
    r->median_ms = ms_t[in->reps / 2];
    /* KV bytes: every key and value row of every sequence read once. */
    double kvb = 0;
    for (int b = 0; b < B; b++)
      kvb += 2.0 * nk[b] * Hk * D * (double)es;
    r->kv_bytes = kvb;
    r->kv_gbps = kvb / (r->median_ms * 1e-3) / 1e9;
  }
  free(ms_t);
  if (st != CLATTN_SUCCESS || !in->verify) goto out;
  clEnqueueReadBuffer(queue, o, CL_TRUE, 0, ebytes[3], ho, 0, NULL, NULL);
  /* Per-sequence float64 reference on gathered contiguous data. */
  double num = 0, den = 0;
  r->verified = true;
  for (int b = 0; b < B; b++) {
    if (!nq[b] || !nk[b]) continue;
    clattn_attention_desc rd = d;
    rd.batch = 1;
    rd.seq_q = nq[b];
    rd.seq_kv = nk[b];
    rd.layout = CLATTN_LAYOUT_BSHD;
    rd.kv_layout = CLATTN_KV_CONTIGUOUS;
    rd.ragged = 0;
    rd.total_q = rd.total_kv = 0;
    const size_t nqe = (size_t)nq[b] * Hq * D, nke = (size_t)nk[b] * Hk * D;
    void *sq = malloc(nqe * es), *sk = malloc(nke * es), *sv = malloc(nke * es);
    double *ro = malloc(nqe * sizeof(double));
    if (!sq || !sk || !sv || !ro) {
      free(sq);
      free(sk);
      free(sv);
      free(ro);
      st = CLATTN_ERROR_OUT_OF_MEMORY;
      goto out;
    }
    for (int i = 0; i < nq[b]; i++)
      for (int h = 0; h < Hq; h++)
        for (int x = 0; x < D; x++) {
          const int64_t bi = d.ragged ? 0 : b, ii = d.ragged ? cuq[b] + i : i;
          cp(sq, ((size_t)i * Hq + h) * D + x, hq,
             (size_t)(bi * qs.batch + h * qs.head + ii * qs.seq + x * qs.dim), es);
        }
    for (int j = 0; j < nk[b]; j++)
      for (int h = 0; h < Hk; h++)
        for (int x = 0; x < D; x++) {
          int64_t bi = b, jj = j;
          if (ps) {
            bi = bt[(size_t)b * maxp + j / ps];
            jj = j % ps;
          } else if (d.ragged) {
            bi = 0;
            jj = cuk[b] + j;
          }
          const size_t dst = ((size_t)j * Hk + h) * D + x;
          cp(sk, dst, hk, (size_t)(bi * ks.batch + h * ks.head + jj * ks.seq + x * ks.dim), es);
          cp(sv, dst, hv, (size_t)(bi * vs.batch + h * vs.head + jj * vs.seq + x * vs.dim), es);
        }
    st = clattn_reference_attention(&rd, sq, sk, sv, ro, NULL, NULL, 0);
    if (st == CLATTN_SUCCESS)
      for (int i = 0; i < nq[b]; i++)
        for (int h = 0; h < Hq; h++)
          for (int x = 0; x < D; x++) {
            const int64_t bi = d.ragged ? 0 : b, ii = d.ragged ? cuq[b] + i : i;
            const double y =
                cli_load(ho, t, (size_t)(bi * os.batch + h * os.head + ii * os.seq + x * os.dim));
            const double w = ro[((size_t)h * nq[b] + i) * D + x];
            if (!isfinite(y)) r->nan_found = true;
            num += (y - w) * (y - w);
            den += w * w;
            if (fabs(y - w) > r->max_abs_err) r->max_abs_err = fabs(y - w);
          }
    free(sq);
    free(sk);
    free(sv);
    free(ro);
    if (st != CLATTN_SUCCESS) goto out;
  }
  r->rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
  r->tolerance = t == CLATTN_DTYPE_F32 ? 1e-5 : t == CLATTN_DTYPE_F16 ? 1e-3 : 1e-2;
  r->passed = !r->nan_found && r->rel_err <= r->tolerance;
out:
  if (st != CLATTN_SUCCESS)
    snprintf(r->error, sizeof r->error, "%s", clattn_context_last_error(ctx));
  r->status = st;
  const cl_mem all[8] = {q, k, v, o, mq, mkv, ms, mb};
  for (int i = 0; i < 8; i++)
    if (all[i]) clReleaseMemObject(all[i]);
  clattn_plan_release(plan);
  free(hq);
  free(hk);
  free(hv);
  free(ho);
  free(bt);
  free(nq);
  free(nk);
  free(cuq);
  free(cuk);
  return st;
}
