/* linear_features.c — FAVOR+ random features (deterministic generator), linear desc checks. */
#include "linear.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(...) clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

clattn_status clattn__linear_resolve(clattn_context ctx, const clattn_attention_desc *d,
                                     int *features) {
  if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "desc.mask %d: linear attention supports CLATTN_MASK_NONE, "
                        "CLATTN_MASK_CAUSAL and CLATTN_MASK_CAUSAL_TOP_LEFT only",
                        (int)d->mask);
  if ((unsigned)d->feature_map > CLATTN_FEATURE_FAVOR)
    return BAD("desc.feature_map: unknown value %d", (int)d->feature_map);
  int f = d->head_dim;
  if (d->feature_map == CLATTN_FEATURE_FAVOR) {
    if (d->num_features < 0 || d->num_features > CLATTN_LINEAR_MAX_FEATURES)
      return BAD("desc.num_features must be in 0..%d for FAVOR+ (0 = head_dim), got %d",
                 CLATTN_LINEAR_MAX_FEATURES, d->num_features);
    if (d->num_features > 0) f = d->num_features;
  } else if (d->num_features != 0 && d->num_features != d->head_dim) {
    return BAD("desc.num_features (%d) must be 0 or head_dim (%d) for the elu+1 and relu "
               "feature maps, whose feature count is head_dim",
               d->num_features, d->head_dim);
  }
  if (features) *features = f;
  return CLATTN_SUCCESS;
}

/* ---- generator: splitmix64 -> Box-Muller normals -> Gram-Schmidt blocks ---- */

typedef struct normal_gen {
  uint64_t state;
  double spare;
  int has_spare;
} normal_gen;

/* Uniform in (0, 1]: ((x >> 11) + 1) · 2^-53. */
static double uniform01(normal_gen *g) {
  return (double)((clattn__splitmix64(&g->state) >> 11) + 1) * 0x1.0p-53;
}

/* Standard normal by Box-Muller: u1, u2 from two consecutive draws give
 * r·cos(2πu2) (returned first) and r·sin(2πu2) (returned next), r = √(−2 ln u1). */
static double normal(normal_gen *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  const double u1 = uniform01(g), u2 = uniform01(g);
  const double r = sqrt(-2.0 * log(u1)), t = 6.283185307179586 * u2;
  g->spare = r * sin(t);
  g->has_spare = 1;
  return r * cos(t);
}

clattn_status clattn__favor_draw(int d, int m, uint64_t seed, float *out) {
  const int nblocks = (m + d - 1) / d;
  double *dir = malloc((size_t)nblocks * (size_t)d * (size_t)d * sizeof(double));
  if (!dir) return CLATTN_ERROR_OUT_OF_MEMORY;
  normal_gen g = {seed, 0.0, 0};
  /* Orthonormal directions: block by block, d Gaussian rows of d, then
   * modified Gram-Schmidt over the rows of the block (a row left shorter than
   * 1e-6 of its drawn length is redrawn, which happens with probability 0). */
  for (int bI = 0; bI < nblocks; bI++) {
    double *blk = dir + (size_t)bI * (size_t)d * (size_t)d;
    for (int i = 0; i < d; i++) {
      double *row = blk + (size_t)i * (size_t)d;
      for (;;) {
        double n0 = 0.0;
        for (int x = 0; x < d; x++) {
          row[x] = normal(&g);
          n0 += row[x] * row[x];
        }
        for (int j = 0; j < i; j++) {
          const double *prev = blk + (size_t)j * (size_t)d;
          double dot = 0.0;
          for (int x = 0; x < d; x++)
            dot += row[x] * prev[x];
          for (int x = 0; x < d; x++)
            row[x] -= dot * prev[x];
        }
        double n1 = 0.0;
        for (int x = 0; x < d; x++)
          n1 += row[x] * row[x];
        if (n1 > 1e-12 * n0 && n1 > 0.0) {
          const double inv = 1.0 / sqrt(n1);
          for (int x = 0; x < d; x++)
            row[x] *= inv;
          break;
        }
      }
    }
  }
  /* Lengths: row i (of the first m rows) is scaled by the norm of a fresh
   * d-dimensional Gaussian vector (chi(d)-distributed), so that each row is
   * marginally N(0, I_d); then rounded to float once. */
  for (int i = 0; i < m; i++) {
    double s = 0.0;
    for (int x = 0; x < d; x++) {
      const double z = normal(&g);
      s += z * z;
    }
    s = sqrt(s);
    for (int x = 0; x < d; x++)
      out[(size_t)i * (size_t)d + x] = (float)(dir[(size_t)i * (size_t)d + x] * s);
  }
  free(dir);
  return CLATTN_SUCCESS;
}

clattn_status clattn_favor_features(int head_dim, int num_features, uint64_t seed, float *out) {
  if (head_dim < 1 || head_dim > 256 || num_features < 0 ||
      num_features > CLATTN_LINEAR_MAX_FEATURES || !out)
    return CLATTN_ERROR_INVALID_ARGUMENT;
  return clattn__favor_draw(head_dim, num_features ? num_features : head_dim, seed, out);
}
