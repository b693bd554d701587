/* reference.c — float64 host reference of attention for every descriptor the library accepts. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double half_to_double(uint16_t h) {
  int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0) v = ldexp((double)man, -24);
  else if (exp == 31) v = man ? NAN : INFINITY;
  else v = ldexp((double)(man | 0x400), exp - 25);
  return sign ? -v : v;
}

static double bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return (double)f;
}

static double load(const void *base, clattn_dtype t, int64_t i) {
  switch (t) {
  case CLATTN_DTYPE_F16: return half_to_double(((const uint16_t *)base)[i]);
  case CLATTN_DTYPE_BF16: return bf16_to_double(((const uint16_t *)base)[i]);
  default: return (double)((const float *)base)[i];
  }
}

clattn_status clattn_reference_attention(const clattn_attention_desc *desc, const void *q,
                                         const void *k, const void *v, double *o, double *lse,
                                         const int *rows, int num_rows) {
  clattn_attention_desc d;
  clattn_strides qs, ks, vs;
  clattn_status st = clattn__desc_resolve(NULL, desc, &d, &qs, &ks, &vs, NULL, NULL);
  if (st != CLATTN_SUCCESS) return st;
  if (!q || !k || !v || !o) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (rows && num_rows < 0) return CLATTN_ERROR_INVALID_ARGUMENT;
  const int nrows = rows ? num_rows : d.seq_q;
  for (int i = 0; rows && i < nrows; i++)
    if (rows[i] < 0 || rows[i] >= d.seq_q) return CLATTN_ERROR_INVALID_ARGUMENT;
  const int Nk = d.seq_kv, hd = d.head_dim, G = d.heads / d.kv_heads;
  double *s = malloc((size_t)Nk * sizeof(double));
  double *qrow = malloc((size_t)hd * sizeof(double));
  if (!s || !qrow) {
    free(s);
    free(qrow);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  const int off = d.seq_kv - d.seq_q;
  for (int b = 0; b < d.batch; b++)
    for (int h = 0; h < d.heads; h++) {
      const int hk = h / G;
      for (int ri = 0; ri < nrows; ri++) {
        const int i = rows ? rows[ri] : ri;
        for (int x = 0; x < hd; x++)
          qrow[x] = load(q, d.dtype, b * qs.batch + h * qs.head + i * qs.seq + x * qs.dim);
        double mx = -INFINITY;
        int nvis = Nk;
        if (d.mask == CLATTN_MASK_CAUSAL) {
          nvis = i + off + 1;
          if (nvis < 0) nvis = 0;
          if (nvis > Nk) nvis = Nk;
        }
        for (int j = 0; j < nvis; j++) {
          double acc = 0.0;
          const int64_t kb = b * ks.batch + hk * ks.head + j * ks.seq;
          for (int x = 0; x < hd; x++) acc += qrow[x] * load(k, d.dtype, kb + x * ks.dim);
          s[j] = acc * d.scale;
          if (s[j] > mx) mx = s[j];
        }
        double sum = 0.0;
        for (int j = 0; j < nvis; j++) {
          s[j] = exp(s[j] - mx);
          sum += s[j];
        }
        double *orow = o + (((int64_t)b * d.heads + h) * d.seq_q + i) * hd;
        for (int x = 0; x < hd; x++) orow[x] = 0.0;
        for (int j = 0; j < nvis; j++) {
          const double w = s[j] / sum;
          const int64_t vb = b * vs.batch + hk * vs.head + j * vs.seq;
          for (int x = 0; x < hd; x++) orow[x] += w * load(v, d.dtype, vb + x * vs.dim);
        }
        if (lse)
          lse[((int64_t)b * d.heads + h) * d.seq_q + i] = nvis > 0 ? mx + log(sum) : -INFINITY;
      }
    }
  free(s);
  free(qrow);
  return CLATTN_SUCCESS;
}
