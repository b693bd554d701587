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

/* The scale of element (token tk of the cache, KV head hh, dim x) of a
 * quantized cache: its index in the scale buffer (desc.kv_scale's layout). */
static size_t scale_group(const clattn_attention_desc *d, size_t tk, int hh, int x) {
  switch (d->kv_scale) {
  case CLATTN_KV_SCALE_TENSOR: return 0;
  case CLATTN_KV_SCALE_HEAD: return (size_t)hh;
  case CLATTN_KV_SCALE_CHANNEL: return (size_t)hh * (size_t)d->head_dim + (size_t)x;
  default: return tk * (size_t)d->kv_heads + (size_t)hh;
  }
}

/* The quantized cache of a problem: the source K/V (hk, hv: dtype t, the
 * cache's layout) written through clattn_kv_append_ex, every slot once, into
 * code buffers *k, *v and scale buffers *ksc, *vsc (tensor, head or channel
 * scales: absmax / the code's largest value, computed here); the codes and
 * scales read back and dequantized into dk, dv (floats, the same layout;
 * skipped when they are NULL). */
static clattn_status quantize_cache(clattn_context ctx, const clattn_attention_desc *d,
                                    const clattn_strides *ks, const clattn_strides *vs,
                                    const size_t el[4], const void *hk, const void *hv, cl_mem *k,
                                    cl_mem *v, cl_mem *ksc, cl_mem *vsc, float *dk, float *dv) {
  const clattn_dtype t = d->dtype;
  const size_t es = cli_dtype_size(t);
  const int Hk = d->kv_heads, D = d->head_dim;
  const bool paged = d->kv_layout != CLATTN_KV_CONTIGUOUS;
  const int per = paged ? d->page_size : d->ragged ? d->total_kv : d->seq_kv;
  const int nrows = paged ? d->num_pages : d->ragged ? 1 : d->batch;
  const size_t ntok = (size_t)nrows * per, nel = ntok * Hk * D;
  const float qmax = d->kv_dtype == CLATTN_KV_DTYPE_INT8       ? 127.0f
                     : d->kv_dtype == CLATTN_KV_DTYPE_FP8_E4M3 ? 448.0f
                                                               : 57344.0f;
  const size_t nsc = d->kv_scale == CLATTN_KV_SCALE_TOKEN    ? ntok * Hk
                     : d->kv_scale == CLATTN_KV_SCALE_TENSOR ? 1
                     : d->kv_scale == CLATTN_KV_SCALE_HEAD   ? (size_t)Hk
                                                             : (size_t)Hk * D;
  clattn_status st = CLATTN_SUCCESS;
  void *src[2] = {malloc(nel * es), malloc(nel * es)};
  float *sc[2] = {calloc(nsc, sizeof(float)), calloc(nsc, sizeof(float))};
  int *slots = malloc(ntok * sizeof(int));
  uint8_t *codes = malloc(el[1] > el[2] ? el[1] : el[2]);
  cl_mem ms = NULL, mn[2] = {NULL, NULL};
  if (!src[0] || !src[1] || !sc[0] || !sc[1] || !slots || !codes) {
    st = CLATTN_ERROR_OUT_OF_MEMORY;
    goto out;
  }
  const void *h[2] = {hk, hv};
  const clattn_strides *str[2] = {ks, vs};
  for (size_t tk = 0; tk < ntok; tk++) {
    slots[tk] = (int)tk;
    const int64_t row = (int64_t)(tk / per), pos = (int64_t)(tk % per);
    for (int w = 0; w < 2; w++)
      for (int hh = 0; hh < Hk; hh++)
        for (int x = 0; x < D; x++) {
          const int64_t at =
              row * str[w]->batch + pos * str[w]->seq + hh * str[w]->head + x * str[w]->dim;
          cp(src[w], (tk * Hk + hh) * D + x, h[w], (size_t)at, es);
          if (d->kv_scale != CLATTN_KV_SCALE_TOKEN) { /* absmax of the scale's group */
            const size_t g = scale_group(d, tk, hh, x);
            const float a = (float)fabs(cli_load(h[w], t, (size_t)at));
            if (a > sc[w][g]) sc[w][g] = a;
          }
        }
  }
  if (d->kv_scale != CLATTN_KV_SCALE_TOKEN)
    for (int w = 0; w < 2; w++)
      for (size_t g = 0; g < nsc; g++)
        sc[w][g] = sc[w][g] > 0.0f ? sc[w][g] / qmax : 1.0f;
  memset(codes, 0, el[1] > el[2] ? el[1] : el[2]);
  *k = mk(ctx, codes, el[1], &st);
  *v = mk(ctx, codes, el[2], &st);
  *ksc = mk(ctx, sc[0], nsc * sizeof(float), &st);
  *vsc = mk(ctx, sc[1], nsc * sizeof(float), &st);
  ms = mk(ctx, slots, ntok * sizeof(int), &st);
  mn[0] = mk(ctx, src[0], nel * es, &st);
  mn[1] = mk(ctx, src[1], nel * es, &st);
  if (st != CLATTN_SUCCESS) goto out;
  const clattn_kv_append_args a = {.k_new = mn[0],
                                   .v_new = mn[1],
                                   .slot_mapping = ms,
                                   .num_tokens = (int)ntok,
                                   .k_cache = *k,
                                   .v_cache = *v,
                                   .k_scale = *ksc,
                                   .v_scale = *vsc};
  if ((st = clattn_kv_append_ex(ctx, d, &a, 0, NULL, NULL)) != CLATTN_SUCCESS) goto out;
  cl_command_queue queue = clattn_context_queue(ctx);
  const cl_mem cm[2] = {*k, *v}, sm[2] = {*ksc, *vsc};
  float *out[2] = {dk, dv};
  for (int w = 0; w < 2 && st == CLATTN_SUCCESS && dk && dv; w++) {
    if (clEnqueueReadBuffer(queue, cm[w], CL_TRUE, 0, el[1 + w], codes, 0, NULL, NULL) !=
            CL_SUCCESS ||
        clEnqueueReadBuffer(queue, sm[w], CL_TRUE, 0, nsc * sizeof(float), sc[w], 0, NULL, NULL) !=
            CL_SUCCESS) {
      st = CLATTN_ERROR_OPENCL;
      break;
    }
    for (size_t i = 0; i < el[1 + w]; i++)
      out[w][i] = 0.0f;
    for (size_t tk = 0; tk < ntok; tk++) {
      const int64_t row = (int64_t)(tk / per), pos = (int64_t)(tk % per);
      for (int hh = 0; hh < Hk; hh++)
        for (int x = 0; x < D; x++) {
          const size_t at = (size_t)(row * str[w]->batch + pos * str[w]->seq + hh * str[w]->head +
                                     x * str[w]->dim);
          out[w][at] =
              clattn_kv_code_value(d->kv_dtype, codes[at]) * sc[w][scale_group(d, tk, hh, x)];
        }
    }
  }
out:
  if (ms) clReleaseMemObject(ms);
  for (int w = 0; w < 2; w++) {
    if (mn[w]) clReleaseMemObject(mn[w]);
    free(src[w]);
    free(sc[w]);
  }
  free(slots);
  free(codes);
  return st;
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
  float *dqk = NULL, *dqv = NULL; /* quantized K/V: the dequantized cache */
  cl_mem ksc = NULL, vsc = NULL;
  const bool quant = d.kv_dtype != CLATTN_KV_DTYPE_SAME;
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
    for (int i = npages - 1; i > 0 && !in->sequential_pages; i--) { /* pages in shuffled order */
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
  if ((st = clattn_attention_desc_strides(&d, &qs, &ks, &vs, &os, el)) != CLATTN_SUCCESS) {
    size_t ws = 0; /* the strides call has no context: the estimate leaves the reason in ctx */
    (void)clattn_plan_estimate(ctx, &d, &ws);
    goto out;
  }
  {
    /* the device buffers (and, where the device shares the host's memory,
     * their host copies) must fit before anything is made: a cache too large
     * is out of memory here, not a host the system runs out of */
    uint64_t total = 0, largest = 0, host = 0, b = 0;
    bool sized = true; /* an overflowing size fits nowhere */
    for (int i = 0; i < 4; i++) {
      sized = sized && cli_mul_u64(el[i], es, &b) && cli_add_u64(total, b, &total) &&
              (i == 3 || cli_add_u64(host, b, &host));
      if (b > largest) largest = b;
    }
    if (!sized || !cli_bytes_fit(ctx, total, largest, host, r->error, sizeof r->error)) {
      if (!sized) snprintf(r->error, sizeof r->error, "the buffers' sizes overflow 64 bits");
      st = CLATTN_ERROR_OUT_OF_MEMORY;
      goto out;
    }
  }
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
  const size_t kes = quant ? 1 : es;
  const size_t ebytes[4] = {el[0] * es, el[1] * kes, el[2] * kes, el[3] * es};
  q = mk(ctx, hq, ebytes[0], &st);
  if (quant) {
    if (in->verify) { /* the dequantized cache, for the reference */
      dqk = malloc(el[1] * sizeof(float));
      dqv = malloc(el[2] * sizeof(float));
      if (!dqk || !dqv) st = CLATTN_ERROR_OUT_OF_MEMORY;
    }
    if (st == CLATTN_SUCCESS)
      st = quantize_cache(ctx, &d, &ks, &vs, el, hk, hv, &k, &v, &ksc, &vsc, dqk, dqv);
    if (st != CLATTN_SUCCESS) goto out;
  } else {
    k = mk(ctx, hk, ebytes[1], &st);
    v = mk(ctx, hv, ebytes[2], &st);
  }
  o = mk(ctx, NULL, ebytes[3], &st);
  if (d.ragged) mq = mk(ctx, cuq, ((size_t)B + 1) * 4, &st);
  if (d.ragged && !ps) mkv = mk(ctx, cuk, ((size_t)B + 1) * 4, &st);
  if (ps) {
    ms = mk(ctx, nk, (size_t)B * 4, &st);
    mb = mk(ctx, bt, (size_t)B * maxp * 4, &st);
  }
  if (st != CLATTN_SUCCESS) goto out;
  clattn_exec_args a = {.q = q,
                        .k = k,
                        .v = v,
                        .o = o,
                        .cu_seqlens_q = mq,
                        .cu_seqlens_kv = mkv,
                        .seqlens_kv = ms,
                        .block_table = mb,
                        .k_scale = ksc,
                        .v_scale = vsc};
  /* a user mask's block classes for these tables, once (as an engine would
   * per batch; no user buffer in the CLI) */
  if (d.mask_mod && !in->no_mask_blocks &&
      (st = clattn_plan_update_mask_blocks_ex(plan, &a, 0, NULL, NULL)) != CLATTN_SUCCESS)
    goto out;
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
    /* KV bytes: every key and value row of every sequence read once (and
     * a quantized cache's token scales) */
    double kvb = 0;
    const double tok_scale = quant && d.kv_scale == CLATTN_KV_SCALE_TOKEN ? 4.0 : 0.0;
    for (int b = 0; b < B; b++)
      kvb += 2.0 * nk[b] * Hk * (D * (double)kes + tok_scale);
    r->kv_bytes = kvb;
    r->kv_gbps = kvb / (r->median_ms * 1e-3) / 1e9;
  }
  free(ms_t);
  if (st == CLATTN_SUCCESS && in->profile)
    st = clattn_plan_profile_ex(plan, &a, in->reps > 0 ? in->reps : 1, 8, r->kernel_names,
                                r->kernel_ms, &r->nkernels);
  if (st != CLATTN_SUCCESS || !in->verify) goto out;
  clEnqueueReadBuffer(queue, o, CL_TRUE, 0, ebytes[3], ho, 0, NULL, NULL);
  /* Per-sequence float64 reference on gathered contiguous data. */
  double num = 0, den = 0, qnum = 0, qden = 0;
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
    rd.kv_dtype = CLATTN_KV_DTYPE_SAME;
    const size_t nqe = (size_t)nq[b] * Hq * D, nke = (size_t)nk[b] * Hk * D;
    void *sq = malloc(nqe * es), *sk = malloc(nke * es), *sv = malloc(nke * es);
    double *ro = malloc(nqe * sizeof(double));
    /* quantized K/V: the reference runs in f32 on the dequantized cache (ro),
     * and once more on the unquantized source (ru) for the quantization error */
    float *fq = quant ? malloc(nqe * sizeof(float)) : NULL;
    float *fk = quant ? malloc(nke * sizeof(float)) : NULL;
    float *fv = quant ? malloc(nke * sizeof(float)) : NULL;
    double *ru = quant ? malloc(nqe * sizeof(double)) : NULL;
    if (!sq || !sk || !sv || !ro || (quant && (!fq || !fk || !fv || !ru))) {
      free(sq);
      free(sk);
      free(sv);
      free(ro);
      free(fq);
      free(fk);
      free(fv);
      free(ru);
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
          const size_t ka = (size_t)(bi * ks.batch + h * ks.head + jj * ks.seq + x * ks.dim);
          const size_t va = (size_t)(bi * vs.batch + h * vs.head + jj * vs.seq + x * vs.dim);
          cp(sk, dst, hk, ka, es);
          cp(sv, dst, hv, va, es);
          if (quant) {
            fk[dst] = dqk[ka];
            fv[dst] = dqv[va];
          }
        }
    if (quant) {
      for (size_t i = 0; i < nqe; i++)
        fq[i] = (float)cli_load(sq, t, i);
      clattn_attention_desc fd = rd;
      fd.dtype = CLATTN_DTYPE_F32;
      st = clattn_reference_attention(&fd, fq, fk, fv, ro, NULL, NULL, 0);
      if (st == CLATTN_SUCCESS) st = clattn_reference_attention(&rd, sq, sk, sv, ru, NULL, NULL, 0);
    } else {
      st = clattn_reference_attention(&rd, sq, sk, sv, ro, NULL, NULL, 0);
    }
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
            if (quant) {
              const double u = ru[((size_t)h * nq[b] + i) * D + x];
              qnum += (y - u) * (y - u);
              qden += u * u;
            }
          }
    free(sq);
    free(sk);
    free(sv);
    free(ro);
    free(fq);
    free(fk);
    free(fv);
    free(ru);
    if (st != CLATTN_SUCCESS) goto out;
  }
  r->rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
  if (quant) r->quant_err = qden > 0 ? sqrt(qnum / qden) : sqrt(qnum);
  r->tolerance = t == CLATTN_DTYPE_F32 ? 1e-5 : t == CLATTN_DTYPE_F16 ? 1e-3 : 1e-2;
  r->passed = !r->nan_found && r->rel_err <= r->tolerance;
out:
  if (st != CLATTN_SUCCESS && !r->error[0]) /* else the reason is already there */
    snprintf(r->error, sizeof r->error, "%s", clattn_context_last_error(ctx));
  r->status = st;
  const cl_mem all[10] = {q, k, v, o, mq, mkv, ms, mb, ksc, vsc};
  for (int i = 0; i < 10; i++)
    if (all[i]) clReleaseMemObject(all[i]);
  clattn_plan_release(plan);
  free(hq);
  free(hk);
  free(hv);
  free(ho);
  free(dqk);
  free(dqv);
  free(bt);
  free(nq);
  free(nk);
  free(cuq);
  free(cuk);
  return st;
}
