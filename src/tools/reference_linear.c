/* reference_linear.c — float64 host reference of linear attention (naive quadratic form). */
#include "linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Features of one row x (already scaled) into phi[F]. FAVOR+: the
 * log-features a_f = ω_fᵀx − ‖x‖²/2 (exponentiated by the caller). */
static void features(clattn_feature_map map, const double *x, int D, int F, const double *w,
                     double *phi) {
  if (map == CLATTN_FEATURE_FAVOR) {
    double n2 = 0.0;
    for (int c = 0; c < D; c++)
      n2 += x[c] * x[c];
    for (int f = 0; f < F; f++) {
      double a = 0.0;
      for (int c = 0; c < D; c++)
        a += w[(size_t)f * (size_t)D + c] * x[c];
      phi[f] = a - 0.5 * n2;
    }
  } else if (map == CLATTN_FEATURE_ELU1) {
    for (int f = 0; f < F; f++)
      phi[f] = x[f] > 0.0 ? x[f] + 1.0 : exp(x[f]);
  } else {
    for (int f = 0; f < F; f++)
      phi[f] = x[f] > 0.0 ? x[f] : 0.0;
  }
}

clattn_status clattn_reference_linear(const clattn_attention_desc *desc, const void *q,
                                      const void *k, const void *v, const float *feats, double *o,
                                      const int *rows, int num_rows) {
  clattn_attention_desc d;
  clattn_strides qs, ks, vs;
  clattn_status st = clattn__desc_resolve(NULL, desc, &d, &qs, &ks, &vs, NULL, NULL);
  if (st != CLATTN_SUCCESS) return st;
  int F = 0;
  st = clattn__linear_resolve(NULL, &d, &F);
  if (st != CLATTN_SUCCESS) return st;
  if (!q || !k || !v || !o) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (!clattn__rows_valid(rows, num_rows, d.seq_q)) return CLATTN_ERROR_INVALID_ARGUMENT;
  const int nrows = rows ? num_rows : d.seq_q;
  const int Nk = d.seq_kv, D = d.head_dim, G = d.heads / d.kv_heads;
  const bool favor = d.feature_map == CLATTN_FEATURE_FAVOR;
  const double rs = sqrt(fabs(d.scale)), sq = d.scale < 0 ? -rs : rs, sk = rs;

  double *w = NULL;
  double *phik = malloc((size_t)Nk * (size_t)F * sizeof(double));
  double *phiq = malloc((size_t)F * sizeof(double));
  double *x = malloc((size_t)D * sizeof(double));
  double *num = malloc((size_t)D * sizeof(double));
  float *wf = NULL;
  if (favor) {
    w = malloc((size_t)F * (size_t)D * sizeof(double));
    if (!feats) wf = malloc((size_t)F * (size_t)D * sizeof(float));
  }
  if (!phik || !phiq || !x || !num || (favor && (!w || (!feats && !wf)))) {
    st = CLATTN_ERROR_OUT_OF_MEMORY;
    goto done;
  }
  if (favor) {
    if (!feats) {
      st = clattn__favor_draw(D, F, d.feature_seed, wf);
      if (st != CLATTN_SUCCESS) goto done;
      feats = wf;
    }
    for (size_t i = 0; i < (size_t)F * (size_t)D; i++)
      w[i] = (double)feats[i];
  }

  const int off = d.seq_kv - d.seq_q;
  for (int b = 0; b < d.batch; b++)
    for (int hk = 0; hk < d.kv_heads; hk++) {
      /* φ(K) of this kv head; FAVOR+ keys are stabilised by their max over
       * every key and feature of the head (a constant that cancels). */
      double mk = -INFINITY;
      for (int j = 0; j < Nk; j++) {
        const int64_t kb = b * ks.batch + hk * ks.head + j * ks.seq;
        for (int c = 0; c < D; c++)
          x[c] = clattn__load_elem(k, d.dtype, kb + c * ks.dim) * sk;
        double *pk = phik + (size_t)j * (size_t)F;
        features(d.feature_map, x, D, F, w, pk);
        for (int f = 0; favor && f < F; f++)
          mk = pk[f] > mk ? pk[f] : mk;
      }
      if (favor)
        for (size_t i = 0; i < (size_t)Nk * (size_t)F; i++)
          phik[i] = exp(phik[i] - mk);
      for (int h = hk * G; h < (hk + 1) * G; h++)
        for (int ri = 0; ri < nrows; ri++) {
          const int i = rows ? rows[ri] : ri;
          const int64_t qb = b * qs.batch + h * qs.head + i * qs.seq;
          for (int c = 0; c < D; c++)
            x[c] = clattn__load_elem(q, d.dtype, qb + c * qs.dim) * sq;
          features(d.feature_map, x, D, F, w, phiq);
          if (favor) {
            double mq = -INFINITY;
            for (int f = 0; f < F; f++)
              mq = phiq[f] > mq ? phiq[f] : mq;
            for (int f = 0; f < F; f++)
              phiq[f] = exp(phiq[f] - mq);
          }
          int nvis = Nk;
          if (d.mask == CLATTN_MASK_CAUSAL || d.mask == CLATTN_MASK_CAUSAL_TOP_LEFT) {
            nvis = i + (d.mask == CLATTN_MASK_CAUSAL ? off : 0) + 1;
            if (nvis < 0) nvis = 0;
            if (nvis > Nk) nvis = Nk;
          }
          double den = 0.0;
          for (int c = 0; c < D; c++)
            num[c] = 0.0;
          for (int j = 0; j < nvis; j++) {
            const double *pk = phik + (size_t)j * (size_t)F;
            double wgt = 0.0;
            for (int f = 0; f < F; f++)
              wgt += phiq[f] * pk[f];
            if (wgt == 0.0) continue;
            den += wgt;
            const int64_t vb = b * vs.batch + hk * vs.head + j * vs.seq;
            for (int c = 0; c < D; c++)
              num[c] += wgt * clattn__load_elem(v, d.dtype, vb + c * vs.dim);
          }
          double *orow = o + (((int64_t)b * d.heads + h) * d.seq_q + i) * D;
          for (int c = 0; c < D; c++)
            orow[c] = den > 0.0 ? num[c] / den : 0.0;
        }
    }
done:
  free(w);
  free(wf);
  free(phik);
  free(phiq);
  free(x);
  free(num);
  return st;
}
