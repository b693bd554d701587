/* verify.c — checks a device result against the float64 reference, head by head on host threads. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Problems up to this many multiply-adds (B·H·Nq·Nk·d) are checked in full. */
#define FULL_CHECK_LIMIT (1ull << 31)
#define SUBSET_ROWS 64
/* Host memory for the per-thread reference output (Nq·d doubles each). */
#define THREAD_MEM_LIMIT (1ull << 30)

double cli_tolerance(clattn_dtype t) {
  switch (t) {
  case CLATTN_DTYPE_F16: return 2e-3;
  case CLATTN_DTYPE_BF16: return 1e-2;
  case CLATTN_DTYPE_F32: break;
  }
  return 1e-5;
}

/* Absolute tolerance of the log-sum-exp (float32 in every dtype). */
static double lse_tolerance(clattn_dtype t) { return t == CLATTN_DTYPE_F32 ? 1e-4 : 1e-3; }

typedef struct vjob {
  clattn_attention_desc d; /* resolved */
  clattn_strides qs, ks, vs, os;
  const char *q, *k, *v;
  const void *o;
  const float *lse;
  const void *bias; /* the host bias tensor (--bias), or NULL */
  const int *rows;  /* NULL: every row */
  int nrows;
  const long *pairs; /* (b·H + h) indices to check */
  long npairs;
  pthread_mutex_t lock;
  long next;
  /* accumulated under lock */
  double sum_d2, sum_r2, max_abs, lse_max;
  bool nan;
  clattn_status st;
} vjob;

/* ALiBi of query head h of `heads` as a one-head problem (the reference is
 * called per head): head 0 of 1 has slope 2^-max_bias, so the header's
 * exponent for head h becomes the max bias. */
static double alibi_of_head(double max_bias, int h, int heads) {
  int n = 1;
  while (n * 2 <= heads)
    n *= 2;
  return h < n ? max_bias * (h + 1) / n : max_bias * (2 * (h - n) + 1) / (2.0 * n);
}

static void check_pair(vjob *j, long pair, double *ref, double *ref_lse, double acc[4], bool *nan) {
  const clattn_attention_desc *d = &j->d;
  const int b = (int)(pair / d->heads), h = (int)(pair % d->heads);
  const int hk = h / (d->heads / d->kv_heads);
  const size_t es = cli_dtype_size(d->dtype);
  /* One (batch, head) as a strided problem of its own: same strides, offset pointers. */
  clattn_attention_desc s = *d;
  s.batch = s.heads = s.kv_heads = 1;
  if (d->alibi_max_bias > 0.0) s.alibi_max_bias = alibi_of_head(d->alibi_max_bias, h, d->heads);
  if (d->sinks) s.sinks = d->sinks + h; /* the head's sink */
  s.layout = CLATTN_LAYOUT_STRIDED;
  s.q_strides = j->qs;
  s.k_strides = j->ks;
  s.v_strides = j->vs;
  const int64_t nd = (int64_t)d->seq_q * d->head_dim;
  s.o_strides = (clattn_strides){nd, nd, d->head_dim, 1};
  const char *q = j->q + (size_t)(b * j->qs.batch + h * j->qs.head) * es;
  const char *k = j->k + (size_t)(b * j->ks.batch + hk * j->ks.head) * es;
  const char *v = j->v + (size_t)(b * j->vs.batch + hk * j->vs.head) * es;
  /* The bias of this (batch, head): its [Nq][Nk] slice. */
  clattn_reference_fns fns = {NULL, NULL, NULL, NULL};
  if (d->bias_type != CLATTN_BIAS_NONE) {
    const size_t bes = d->bias_type == CLATTN_BIAS_F32    ? 4
                       : d->bias_type == CLATTN_BIAS_BOOL ? 1
                                                          : 2;
    fns.bias = (const char *)j->bias +
               (size_t)(b * d->bias_strides.batch + h * d->bias_strides.head) * bes;
    s.bias_strides.batch = s.bias_strides.head = 0;
  }
  /* Linear attention is checked against its own reference (same features). */
  clattn_status st =
      d->algo == CLATTN_ALGO_LINEAR
          ? clattn_reference_linear(&s, q, k, v, NULL, ref, j->rows, j->rows ? j->nrows : 0)
          : clattn_reference_attention_ex(&s, q, k, v, ref, j->lse ? ref_lse : NULL, j->rows,
                                          j->rows ? j->nrows : 0, &fns);
  if (st != CLATTN_SUCCESS) {
    pthread_mutex_lock(&j->lock);
    j->st = st;
    pthread_mutex_unlock(&j->lock);
    return;
  }
  const int n = j->rows ? j->nrows : d->seq_q;
  for (int r = 0; r < n; r++) {
    const int i = j->rows ? j->rows[r] : r;
    const int64_t base = b * j->os.batch + h * j->os.head + i * j->os.seq;
    for (int x = 0; x < d->head_dim; x++) {
      const double want = ref[(int64_t)i * d->head_dim + x];
      const double got = cli_load(j->o, d->dtype, (size_t)(base + x * j->os.dim));
      const double e = fabs(got - want);
      if (isnan(got)) *nan = true;
      acc[0] += e * e;
      acc[1] += want * want;
      if (e > acc[2]) acc[2] = e;
    }
    if (j->lse) {
      const double want = ref_lse[i];
      const double got = j->lse[(size_t)pair * (size_t)d->seq_q + (size_t)i];
      double e = 0.0;
      if (isnan(got))
        *nan = true;
      else if (isinf(want) || isinf(got))
        e = got == want ? 0.0 : INFINITY;
      else
        e = fabs(got - want);
      if (e > acc[3]) acc[3] = e;
    }
  }
}

static void *worker(void *arg) {
  vjob *j = arg;
  const size_t nq = (size_t)j->d.seq_q;
  double *ref = malloc(nq * (size_t)j->d.head_dim * sizeof *ref);
  double *ref_lse = j->lse ? malloc(nq * sizeof *ref_lse) : NULL;
  double acc[4] = {0, 0, 0, 0};
  bool nan = false;
  if (!ref || (j->lse && !ref_lse)) {
    pthread_mutex_lock(&j->lock);
    j->st = CLATTN_ERROR_OUT_OF_MEMORY;
    pthread_mutex_unlock(&j->lock);
  }
  for (;;) {
    pthread_mutex_lock(&j->lock);
    long idx = j->st == CLATTN_SUCCESS ? j->next++ : j->npairs;
    pthread_mutex_unlock(&j->lock);
    if (idx >= j->npairs) break;
    check_pair(j, j->pairs[idx], ref, ref_lse, acc, &nan);
  }
  pthread_mutex_lock(&j->lock);
  j->sum_d2 += acc[0];
  j->sum_r2 += acc[1];
  if (acc[2] > j->max_abs || isnan(acc[2])) j->max_abs = acc[2];
  if (acc[3] > j->lse_max || isnan(acc[3])) j->lse_max = acc[3];
  j->nan |= nan;
  pthread_mutex_unlock(&j->lock);
  free(ref);
  free(ref_lse);
  return NULL;
}

/* n indices spread evenly over [0, total), first and last included. */
static void spread(long total, long n, long *out) {
  for (long i = 0; i < n; i++)
    out[i] = n == 1 ? 0 : (long)((double)i * (double)(total - 1) / (double)(n - 1) + 0.5);
}

clattn_status cli_verify(const clattn_attention_desc *desc, const void *q, const void *k,
                         const void *v, const void *o, const float *lse, const void *bias,
                         cli_result *r) {
  vjob j;
  memset(&j, 0, sizeof j);
  size_t elems[4];
  clattn_status st = clattn_attention_desc_strides(desc, &j.qs, &j.ks, &j.vs, &j.os, elems);
  if (st != CLATTN_SUCCESS) return st;
  j.d = *desc;
  if (j.d.kv_heads == 0) j.d.kv_heads = j.d.heads;
  j.q = q;
  j.k = k;
  j.v = v;
  j.o = o;
  j.lse = lse;
  j.bias = bias;

  /* Every output element must have been written (the buffer was NaN-poisoned). */
  r->nan_found = false;
  for (size_t i = 0; i < elems[3] && !r->nan_found; i++)
    if (isnan(cli_load(o, desc->dtype, i))) r->nan_found = true;
  const size_t nlse = (size_t)desc->batch * (size_t)desc->heads * (size_t)desc->seq_q;
  for (size_t i = 0; lse && i < nlse && !r->nan_found; i++)
    if (isnan(lse[i])) r->nan_found = true;

  const long bh = (long)desc->batch * desc->heads;
  const double per_row = (double)desc->seq_kv * desc->head_dim;
  int rows_buf[SUBSET_ROWS];
  long nrows = desc->seq_q;
  if ((double)bh * nrows * per_row > (double)FULL_CHECK_LIMIT && desc->seq_q > SUBSET_ROWS) {
    long tmp[SUBSET_ROWS];
    spread(desc->seq_q, SUBSET_ROWS, tmp);
    for (int i = 0; i < SUBSET_ROWS; i++)
      rows_buf[i] = (int)tmp[i];
    j.rows = rows_buf;
    j.nrows = nrows = SUBSET_ROWS;
  }
  long npairs = bh;
  double per_pair = (double)nrows * per_row;
  if ((double)npairs * per_pair > (double)FULL_CHECK_LIMIT) {
    npairs = (long)((double)FULL_CHECK_LIMIT / per_pair);
    if (npairs < 2) npairs = bh < 2 ? bh : 2;
  }
  long *pairs = malloc((size_t)npairs * sizeof *pairs);
  if (!pairs) return CLATTN_ERROR_OUT_OF_MEMORY;
  spread(bh, npairs, pairs);
  j.pairs = pairs;
  j.npairs = npairs;

  long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
  const double thread_bytes = (double)desc->seq_q * desc->head_dim * sizeof(double);
  if ((double)nthreads * thread_bytes > (double)THREAD_MEM_LIMIT)
    nthreads = (long)((double)THREAD_MEM_LIMIT / thread_bytes);
  if (nthreads > npairs) nthreads = npairs;
  if (nthreads > 256) nthreads = 256;
  if (nthreads < 1) nthreads = 1;
  pthread_t tid[256];
  pthread_mutex_init(&j.lock, NULL);
  long started = 0;
  for (; started < nthreads - 1; started++)
    if (pthread_create(&tid[started], NULL, worker, &j) != 0) break;
  worker(&j); /* this thread takes part too */
  for (long i = 0; i < started; i++)
    pthread_join(tid[i], NULL);
  pthread_mutex_destroy(&j.lock);
  free(pairs);
  if (j.st != CLATTN_SUCCESS) return j.st;

  r->verified = true;
  r->rows_checked = nrows;
  r->rows_total = desc->seq_q;
  r->heads_checked = npairs;
  r->heads_total = bh;
  r->max_abs_err = j.max_abs;
  const double dn = sqrt(j.sum_d2), rn = sqrt(j.sum_r2);
  r->rel_err = rn > 0 ? dn / rn : (dn > 0 || isnan(dn) ? INFINITY : 0.0);
  if (isnan(dn)) r->rel_err = NAN;
  r->lse_max_abs_err = lse ? j.lse_max : NAN;
  r->tolerance = cli_tolerance(desc->dtype);
  r->nan_found |= j.nan;
  r->passed = !r->nan_found && r->rel_err <= r->tolerance &&
              (!lse || j.lse_max <= lse_tolerance(desc->dtype));
  return CLATTN_SUCCESS;
}

clattn_status cli_compare_softmax(const clattn_attention_desc *desc, const void *q, const void *k,
                                  const void *v, const void *o, cli_result *r) {
  clattn_strides qs, ks, vs, os;
  clattn_status st = clattn_attention_desc_strides(desc, &qs, &ks, &vs, &os, NULL);
  if (st != CLATTN_SUCCESS) return st;
  clattn_attention_desc d = *desc;
  if (d.kv_heads == 0) d.kv_heads = d.heads;
  /* The same rows and heads as cli_verify. */
  const long bh = (long)d.batch * d.heads;
  const double per_row = (double)d.seq_kv * d.head_dim;
  long rows[SUBSET_ROWS];
  long nrows = d.seq_q;
  const bool subset =
      (double)bh * nrows * per_row > (double)FULL_CHECK_LIMIT && d.seq_q > SUBSET_ROWS;
  if (subset) {
    spread(d.seq_q, SUBSET_ROWS, rows);
    nrows = SUBSET_ROWS;
  }
  long npairs = bh;
  const double per_pair = (double)nrows * per_row;
  if ((double)npairs * per_pair > (double)FULL_CHECK_LIMIT) {
    npairs = (long)((double)FULL_CHECK_LIMIT / per_pair);
    if (npairs < 2) npairs = bh < 2 ? bh : 2;
  }
  long *pairs = malloc((size_t)npairs * sizeof *pairs);
  int *irows = malloc((size_t)nrows * sizeof *irows);
  double *ref = malloc((size_t)d.seq_q * (size_t)d.head_dim * sizeof *ref);
  if (!pairs || !irows || !ref) {
    free(pairs);
    free(irows);
    free(ref);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  spread(bh, npairs, pairs);
  for (long i = 0; i < nrows; i++)
    irows[i] = subset ? (int)rows[i] : (int)i;
  const size_t es = cli_dtype_size(d.dtype);
  double d2 = 0.0, r2 = 0.0, cos_sum = 0.0;
  long ncos = 0;
  for (long pi = 0; pi < npairs && st == CLATTN_SUCCESS; pi++) {
    const int b = (int)(pairs[pi] / d.heads), h = (int)(pairs[pi] % d.heads);
    const int hk = h / (d.heads / d.kv_heads);
    /* One (batch, head) as a strided softmax problem of its own. */
    clattn_attention_desc s = d;
    s.algo = CLATTN_ALGO_FLASH;
    s.batch = s.heads = s.kv_heads = 1;
    if (d.alibi_max_bias > 0.0) s.alibi_max_bias = alibi_of_head(d.alibi_max_bias, h, d.heads);
    if (d.sinks) s.sinks = d.sinks + h; /* the head's sink */
    s.layout = CLATTN_LAYOUT_STRIDED;
    s.q_strides = qs;
    s.k_strides = ks;
    s.v_strides = vs;
    const int64_t nd = (int64_t)d.seq_q * d.head_dim;
    s.o_strides = (clattn_strides){nd, nd, d.head_dim, 1};
    st = clattn_reference_attention(&s, (const char *)q + (size_t)(b * qs.batch + h * qs.head) * es,
                                    (const char *)k + (size_t)(b * ks.batch + hk * ks.head) * es,
                                    (const char *)v + (size_t)(b * vs.batch + hk * vs.head) * es,
                                    ref, NULL, irows, (int)nrows);
    for (long ri = 0; ri < nrows && st == CLATTN_SUCCESS; ri++) {
      const int i = irows[ri];
      const int64_t base = b * os.batch + h * os.head + i * os.seq;
      double xy = 0.0, xx = 0.0, yy = 0.0;
      for (int x = 0; x < d.head_dim; x++) {
        const double want = ref[(int64_t)i * d.head_dim + x];
        const double got = cli_load(o, d.dtype, (size_t)(base + x * os.dim));
        d2 += (got - want) * (got - want);
        r2 += want * want;
        xy += got * want;
        xx += got * got;
        yy += want * want;
      }
      if (xx > 0.0 && yy > 0.0) {
        cos_sum += xy / sqrt(xx * yy);
        ncos++;
      }
    }
  }
  free(pairs);
  free(irows);
  free(ref);
  if (st != CLATTN_SUCCESS) return st;
  r->compared = true;
  r->approx_rel_err = r2 > 0.0 ? sqrt(d2 / r2) : (d2 > 0.0 ? INFINITY : 0.0);
  r->approx_cos = ncos ? cos_sum / (double)ncos : NAN;
  r->approx_rows = nrows;
  r->approx_heads = npairs;
  return CLATTN_SUCCESS;
}
