/* reference.c — float64 host reference of attention for every descriptor the library accepts. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the mask, written from the header's definitions, independently of the
 * library's interval and tile-list builders (src/sparse.c) ---- */

typedef struct ref_mask {
  const clattn_attention_desc *d;
  int nkb;            /* key blocks (BIGBIRD, BLOCK_LAYOUT) */
  int row_qb;         /* query block whose key blocks are in `row` (-1: none) */
  unsigned char *row; /* row[kb] = 1 when key block kb is listed for row_qb */
  int *cand;          /* BigBird random-block candidates */
} ref_mask;

static int ref_is_global(const clattn_sparse_desc *s, int64_t x) {
  if (x < 0) return 0;
  if (x < s->num_global) return 1;
  for (int t = 0; t < s->num_global_tokens; t++)
    if (s->global_tokens[t] == x) return 1;
  return 0;
}

/* Fills m->row with the key blocks listed for query block qb. */
static void ref_block_row(ref_mask *m, int qb) {
  const clattn_sparse_desc *s = &m->d->sparse;
  const int nkb = m->nkb;
  memset(m->row, 0, (size_t)nkb);
  m->row_qb = qb;
  if (m->d->mask == CLATTN_MASK_BLOCK_LAYOUT) {
    for (int e = s->layout_row_offsets[qb]; e < s->layout_row_offsets[qb + 1]; e++)
      m->row[s->layout_cols[e]] = 1;
    return;
  }
  const int G = s->global_blocks, W = s->window_blocks;
  for (int kb = 0; kb < nkb; kb++) {
    const int64_t dist = kb > qb ? (int64_t)kb - qb : (int64_t)qb - kb;
    if (kb < G || qb < G || dist <= W) m->row[kb] = 1;
  }
  if (qb < G) return;
  /* Random blocks: candidates in ascending order, partial Fisher-Yates. */
  int n = 0;
  for (int kb = 0; kb < nkb; kb++) {
    const int64_t dist = kb > qb ? (int64_t)kb - qb : (int64_t)qb - kb;
    if (kb >= G && dist > W && !(s->causal && kb > qb)) m->cand[n++] = kb;
  }
  uint64_t x = s->seed ^ (((uint64_t)qb + 1u) * 0xD1B54A32D192ED03ull);
  for (int t = 0; t < s->random_blocks && t < n; t++) {
    const int u = t + (int)(clattn__splitmix64(&x) % (uint64_t)(n - t));
    const int c = m->cand[u];
    m->cand[u] = m->cand[t];
    m->cand[t] = c;
    m->row[c] = 1;
  }
}

/* Whether query i may attend key j (the header's definitions, one pair at a time). */
static int ref_visible(ref_mask *m, int i, int j) {
  const clattn_attention_desc *d = m->d;
  const clattn_sparse_desc *s = &d->sparse;
  const int64_t p = (int64_t)i + d->seq_kv - d->seq_q; /* the query's key position */
  const int64_t dlt = p - j;                           /* how far back key j lies */
  switch (d->mask) {
  case CLATTN_MASK_NONE: return 1;
  case CLATTN_MASK_CAUSAL: return j <= p;
  case CLATTN_MASK_CAUSAL_TOP_LEFT: return j <= i; /* PyTorch's is_causal */
  default: break;
  }
  if (s->causal && j > p) return 0;
  const int in_window = dlt <= s->window_left && -dlt <= s->window_right;
  switch (d->mask) {
  case CLATTN_MASK_WINDOW:
  case CLATTN_MASK_DILATED:
  case CLATTN_MASK_STRIDED:
    if (ref_is_global(s, p) || ref_is_global(s, j)) return 1;
    if (d->mask == CLATTN_MASK_WINDOW) return in_window;
    if (d->mask == CLATTN_MASK_DILATED) return in_window && dlt % s->dilation == 0;
    return in_window || dlt % s->stride == 0;
  default: break;
  }
  if (p < 0) return 0;
  if (s->element_window && !in_window) return 0;
  const int qb = (int)(p / s->block_size), kb = j / s->block_size;
  if (qb != m->row_qb) ref_block_row(m, qb);
  return m->row[kb];
}

/* The score modifiers on the scaled score s of query i, head h, key j (the
 * header's definitions). */
static double ref_score_mod(const clattn_attention_desc *d, double s, int h, int i, int j) {
  if (d->softcap > 0.0) s = d->softcap * tanh(s / d->softcap);
  if (d->alibi_max_bias > 0.0) {
    const int64_t p =
        d->mask == CLATTN_MASK_CAUSAL_TOP_LEFT ? (int64_t)i : (int64_t)i + d->seq_kv - d->seq_q;
    s -= clattn__alibi_slope(h, d->heads, d->alibi_max_bias) * (double)llabs(p - j);
  }
  return s;
}

/* The bias element (b, h, i, j) of the descriptor's tensor (natural units;
 * a bool mask gives 0 or -inf). */
static double ref_bias(const clattn_attention_desc *d, const void *bias, int b, int h, int i,
                       int j) {
  const clattn_strides *st = &d->bias_strides;
  const int64_t e = b * st->batch + h * st->head + i * st->seq + j * st->dim;
  switch (d->bias_type) {
  case CLATTN_BIAS_F32: return ((const float *)bias)[e];
  case CLATTN_BIAS_F16: return clattn__load_elem(bias, CLATTN_DTYPE_F16, e);
  case CLATTN_BIAS_BF16: return clattn__load_elem(bias, CLATTN_DTYPE_BF16, e);
  default: return ((const unsigned char *)bias)[e] ? 0.0 : -INFINITY;
  }
}

/* The modified, scaled scores s[j] of query i (row qrow) of head h, batch b,
 * for the visible keys j (vis[j]); returns their maximum (-inf without one). */
static double ref_row_scores(const clattn_attention_desc *d, const clattn_reference_fns *fn,
                             const void *k, const clattn_strides *ks, const double *qrow,
                             const unsigned char *vis, int b, int h, int i, double *s) {
  const int hk = h / (d->heads / d->kv_heads);
  double mx = -INFINITY;
  for (int j = 0; j < d->seq_kv; j++) {
    if (!vis[j]) continue;
    double acc = 0.0;
    const int64_t kb = b * ks->batch + hk * ks->head + j * ks->seq;
    for (int x = 0; x < d->head_dim; x++)
      acc += qrow[x] * clattn__load_elem(k, d->dtype, kb + x * ks->dim);
    s[j] = ref_score_mod(d, acc * d->scale, h, i, j);
    if (fn && fn->score_mod) s[j] = fn->score_mod(s[j], b, h, i, j, fn->user);
    if (fn && d->bias_type != CLATTN_BIAS_NONE) s[j] += ref_bias(d, fn->bias, b, h, i, j);
    if (s[j] > mx) mx = s[j];
  }
  return mx;
}

clattn_status clattn_reference_attention(const clattn_attention_desc *desc, const void *q,
                                         const void *k, const void *v, double *o, double *lse,
                                         const int *rows, int num_rows) {
  return clattn_reference_attention_ex(desc, q, k, v, o, lse, rows, num_rows, NULL);
}

clattn_status clattn_reference_attention_ex(const clattn_attention_desc *desc, const void *q,
                                            const void *k, const void *v, double *o, double *lse,
                                            const int *rows, int num_rows,
                                            const clattn_reference_fns *fns) {
  clattn_attention_desc d;
  clattn_strides qs, ks, vs;
  clattn_status st = clattn__desc_resolve(NULL, desc, &d, &qs, &ks, &vs, NULL, NULL);
  if (st != CLATTN_SUCCESS) return st;
  if (!q || !k || !v || !o) return CLATTN_ERROR_INVALID_ARGUMENT;
  /* a twin for each user function the descriptor sets */
  if ((d.score_mod && !(fns && fns->score_mod)) || (d.mask_mod && !(fns && fns->mask_mod)) ||
      (d.bias_type != CLATTN_BIAS_NONE && !(fns && fns->bias)))
    return CLATTN_ERROR_INVALID_ARGUMENT;
  const clattn_reference_fns none = {NULL, NULL, NULL, NULL};
  const clattn_reference_fns *fn =
      d.score_mod || d.mask_mod || d.bias_type != CLATTN_BIAS_NONE ? fns : &none;
  if (!clattn__rows_valid(rows, num_rows, d.seq_q)) return CLATTN_ERROR_INVALID_ARGUMENT;
  const int nrows = rows ? num_rows : d.seq_q;
  const int Nk = d.seq_kv, hd = d.head_dim, G = d.heads / d.kv_heads;
  ref_mask m = {&d, 0, -1, NULL, NULL};
  if (d.mask == CLATTN_MASK_BIGBIRD || d.mask == CLATTN_MASK_BLOCK_LAYOUT)
    m.nkb = (int)(((int64_t)Nk + d.sparse.block_size - 1) / d.sparse.block_size);
  double *s = malloc((size_t)Nk * sizeof(double));
  double *qrow = malloc((size_t)hd * sizeof(double));
  unsigned char *vis = malloc((size_t)Nk), *uvis = malloc((size_t)Nk);
  m.row = malloc((size_t)m.nkb + 1);
  m.cand = malloc(((size_t)m.nkb + 1) * sizeof(int));
  if (!s || !qrow || !vis || !uvis || !m.row || !m.cand) {
    free(s);
    free(qrow);
    free(vis);
    free(uvis);
    free(m.row);
    free(m.cand);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  for (int ri = 0; ri < nrows; ri++) {
    const int i = rows ? rows[ri] : ri;
    int nvis_mask = 0;
    for (int j = 0; j < Nk; j++)
      nvis_mask += vis[j] = (unsigned char)ref_visible(&m, i, j);
    for (int b = 0; b < d.batch; b++)
      for (int h = 0; h < d.heads; h++) {
        const int hk = h / G;
        /* the user's mask on top of desc.mask (per batch entry and head) */
        const unsigned char *v2 = vis;
        int nvis = nvis_mask;
        if (fn->mask_mod || d.bias_type != CLATTN_BIAS_NONE) {
          nvis = 0;
          for (int j = 0; j < Nk; j++) {
            bool on = vis[j] && (!fn->mask_mod || fn->mask_mod(b, h, i, j, fn->user));
            if (on && d.bias_type != CLATTN_BIAS_NONE) {
              const double x = ref_bias(&d, fn->bias, b, h, i, j);
              on = !(isinf(x) && x < 0); /* -inf hides the key; NaN stays and propagates */
            }
            nvis += uvis[j] = (unsigned char)on;
          }
          v2 = uvis;
        }
        for (int x = 0; x < hd; x++)
          qrow[x] =
              clattn__load_elem(q, d.dtype, b * qs.batch + h * qs.head + i * qs.seq + x * qs.dim);
        double mx = ref_row_scores(&d, fn, k, &ks, qrow, v2, b, h, i, s);
        double sum = 0.0;
        if (d.sinks) { /* one more term of the denominator, without a value */
          const double z = (double)d.sinks[h];
          mx = nvis > 0 && mx > z ? mx : z;
          sum = exp(z - mx);
        }
        for (int j = 0; j < Nk; j++) {
          if (!v2[j]) continue;
          s[j] = exp(s[j] - mx);
          sum += s[j];
        }
        double *orow = o + (((int64_t)b * d.heads + h) * d.seq_q + i) * hd;
        for (int x = 0; x < hd; x++)
          orow[x] = 0.0;
        for (int j = 0; j < Nk; j++) {
          if (!v2[j]) continue;
          const double w = s[j] / sum;
          const int64_t vb = b * vs.batch + hk * vs.head + j * vs.seq;
          for (int x = 0; x < hd; x++)
            orow[x] += w * clattn__load_elem(v, d.dtype, vb + x * vs.dim);
        }
        if (lse)
          lse[((int64_t)b * d.heads + h) * d.seq_q + i] =
              nvis > 0 || d.sinks ? mx + log(sum) : -INFINITY;
      }
  }
  free(s);
  free(qrow);
  free(vis);
  free(uvis);
  free(m.row);
  free(m.cand);
  return CLATTN_SUCCESS;
}

/* ---- backward: the exact gradients of the function above ---- */

clattn_status clattn_reference_attention_backward(const clattn_attention_desc *desc, const void *q,
                                                  const void *k, const void *v, const void *dout,
                                                  double *dq, double *dk, double *dv) {
  return clattn_reference_attention_backward_ex(desc, q, k, v, dout, dq, dk, dv, NULL);
}

clattn_status clattn_reference_attention_backward_ex(const clattn_attention_desc *desc,
                                                     const void *q, const void *k, const void *v,
                                                     const void *dout, double *dq, double *dk,
                                                     double *dv, const clattn_reference_fns *fns) {
  clattn_attention_desc d;
  clattn_strides qs, ks, vs, os;
  clattn_status st = clattn__desc_resolve(NULL, desc, &d, &qs, &ks, &vs, &os, NULL);
  if (st != CLATTN_SUCCESS) return st;
  /* as the backward kernels: softcap, ALiBi, sinks, a user mask (its C twin)
   * and a bias tensor (its host copy), not a score_mod */
  if (d.score_mod) return CLATTN_ERROR_UNSUPPORTED;
  if (d.mask_mod && !(fns && fns->mask_mod)) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (d.bias_type != CLATTN_BIAS_NONE && !(fns && fns->bias)) return CLATTN_ERROR_INVALID_ARGUMENT;
  const clattn_reference_fns *umask = d.mask_mod ? fns : NULL;
  /* the bias, for the scores (the only twin ref_row_scores uses here) */
  clattn_reference_fns bfns = {NULL, NULL, NULL, fns ? fns->bias : NULL};
  if (!q || !k || !v || !dout || !dq || !dk || !dv) return CLATTN_ERROR_INVALID_ARGUMENT;
  const int Nq = d.seq_q, Nk = d.seq_kv, hd = d.head_dim, G = d.heads / d.kv_heads;
  ref_mask m = {&d, 0, -1, NULL, NULL};
  if (d.mask == CLATTN_MASK_BIGBIRD || d.mask == CLATTN_MASK_BLOCK_LAYOUT)
    m.nkb = (int)(((int64_t)Nk + d.sparse.block_size - 1) / d.sparse.block_size);
  double *pr = malloc((size_t)Nk * sizeof(double));
  double *qrow = malloc((size_t)hd * sizeof(double));
  double *dorow = malloc((size_t)hd * sizeof(double));
  double *orow = malloc((size_t)hd * sizeof(double));
  unsigned char *vis = malloc((size_t)Nk), *uvis = malloc((size_t)Nk);
  m.row = malloc((size_t)m.nkb + 1);
  m.cand = malloc(((size_t)m.nkb + 1) * sizeof(int));
  if (!pr || !qrow || !dorow || !orow || !vis || !uvis || !m.row || !m.cand) {
    free(pr);
    free(qrow);
    free(dorow);
    free(orow);
    free(vis);
    free(uvis);
    free(m.row);
    free(m.cand);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  memset(dq, 0, (size_t)d.batch * (size_t)d.heads * (size_t)Nq * (size_t)hd * sizeof(double));
  memset(dk, 0, (size_t)d.batch * (size_t)d.kv_heads * (size_t)Nk * (size_t)hd * sizeof(double));
  memset(dv, 0, (size_t)d.batch * (size_t)d.kv_heads * (size_t)Nk * (size_t)hd * sizeof(double));
  for (int i = 0; i < Nq; i++) {
    int nvis = 0;
    for (int j = 0; j < Nk; j++)
      nvis += vis[j] = (unsigned char)ref_visible(&m, i, j);
    if (!nvis) continue; /* a fully masked row: output 0 whatever its inputs, zero gradients */
    for (int b = 0; b < d.batch; b++)
      for (int h = 0; h < d.heads; h++) {
        const int hk = h / G;
        /* the user mask (its twin) on top of the descriptor's */
        int nu = 0;
        for (int j = 0; j < Nk; j++)
          nu += uvis[j] = (unsigned char)(vis[j] && (!umask || umask->mask_mod(b, h, i, j,
                                                                                 umask->user)));
        if (!nu) continue; /* no key visible to this row: zero gradients */
        for (int x = 0; x < hd; x++) {
          qrow[x] =
              clattn__load_elem(q, d.dtype, b * qs.batch + h * qs.head + i * qs.seq + x * qs.dim);
          dorow[x] = clattn__load_elem(dout, d.dtype,
                                       b * os.batch + h * os.head + i * os.seq + x * os.dim);
          orow[x] = 0.0;
        }
        /* P = softmax of the visible scores. */
        /* (a NaN score makes the sum, so every P, NaN) */
        double mx = ref_row_scores(&d, d.bias_type != CLATTN_BIAS_NONE ? &bfns : NULL, k, &ks,
                                   qrow, uvis, b, h, i, pr);
        /* keys the bias hides (-inf) are masked: a row they all hide gets zero gradients */
        int nb = 0;
        for (int j = 0; j < Nk; j++) {
          if (uvis[j] && pr[j] == -INFINITY) uvis[j] = 0;
          nb += uvis[j];
        }
        if (!nb) continue;
        double sum = 0.0;
        /* a sink: one more term of the denominator (its value is no key's) */
        if (d.sinks && (double)d.sinks[h] > mx) mx = (double)d.sinks[h];
        if (d.sinks) sum = exp((double)d.sinks[h] - mx);
        for (int j = 0; j < Nk; j++)
          if (uvis[j]) sum += pr[j] = exp(pr[j] - mx);
        for (int j = 0; j < Nk; j++) {
          if (!uvis[j]) continue;
          pr[j] /= sum;
          const int64_t vb = b * vs.batch + hk * vs.head + j * vs.seq;
          for (int x = 0; x < hd; x++)
            orow[x] += pr[j] * clattn__load_elem(v, d.dtype, vb + x * vs.dim);
        }
        /* D = dO · O; dS_j = P_j (dO · v_j - D); dq = scale Σ dS_j k_j, dk_j += scale dS_j q,
         * dv_j += P_j dO. */
        double Di = 0.0;
        for (int x = 0; x < hd; x++)
          Di += dorow[x] * orow[x];
        double *dqrow = dq + (((int64_t)b * d.heads + h) * Nq + i) * hd;
        for (int j = 0; j < Nk; j++) {
          if (!uvis[j]) continue;
          const int64_t kb = b * ks.batch + hk * ks.head + j * ks.seq;
          const int64_t vb = b * vs.batch + hk * vs.head + j * vs.seq;
          double dp = 0.0, qk = 0.0;
          for (int x = 0; x < hd; x++) {
            dp += dorow[x] * clattn__load_elem(v, d.dtype, vb + x * vs.dim);
            qk += qrow[x] * clattn__load_elem(k, d.dtype, kb + x * ks.dim);
          }
          /* softcap: back through s_c = c·tanh(s / c), ∂s_c/∂s = 1 − tanh²(s / c) */
          const double th = d.softcap > 0.0 ? tanh(qk * d.scale / d.softcap) : 0.0;
          const double ds = pr[j] * (dp - Di) * d.scale * (1.0 - th * th);
          double *dkrow = dk + (((int64_t)b * d.kv_heads + hk) * Nk + j) * hd;
          double *dvrow = dv + (((int64_t)b * d.kv_heads + hk) * Nk + j) * hd;
          for (int x = 0; x < hd; x++) {
            dqrow[x] += ds * clattn__load_elem(k, d.dtype, kb + x * ks.dim);
            dkrow[x] += ds * qrow[x];
            dvrow[x] += pr[j] * dorow[x];
          }
        }
      }
  }
  free(pr);
  free(uvis);
  free(qrow);
  free(dorow);
  free(orow);
  free(vis);
  free(m.row);
  free(m.cand);
  return CLATTN_SUCCESS;
}
