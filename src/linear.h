/* linear.h — internal interface of the linear family: checks, FAVOR+ features, configuration. */
#ifndef CLATTN_LINEAR_H
#define CLATTN_LINEAR_H

#include "internal.h"

/* Most FAVOR+ random features a descriptor may ask for. */
#define CLATTN_LINEAR_MAX_FEATURES 256

/* Checks the linear-family fields of a resolved descriptor (feature_map,
 * num_features, mask) and returns the feature count F through *features
 * (head_dim for elu+1 / relu; num_features or head_dim for FAVOR+). ctx may
 * be NULL (no message stored). */
clattn_status clattn__linear_resolve(clattn_context ctx, const clattn_attention_desc *d,
                                     int *features);

/* Draws the FAVOR+ matrix ω (m rows of head_dim, row-major, float) for a
 * seed; the generator is documented at clattn_favor_features in clattn.h.
 * Returns CLATTN_ERROR_OUT_OF_MEMORY when its scratch cannot be allocated. */
clattn_status clattn__favor_draw(int head_dim, int m, uint64_t seed, float *out);

/* Kernel configuration of cl/linear.cl (its -D parameters). */
typedef struct clattn__linear_cfg {
  int chunk; /* keys per chunk: causal chunk size, or non-causal split length */
  int bd;    /* value columns per work-group (multiple of tc) */
  int bq;    /* query rows per output work-group (multiple of tf) */
  int bk;    /* keys per intra sub-tile of the output kernel (multiple of tc) */
  int bks;   /* keys per sub-tile of the state kernel */
  int tf;    /* work-items of the state kernel along features */
  int tr;    /* work-items of the output kernel along query rows */
  int tc;    /* work-items along value columns / intra keys (both kernels) */
} clattn__linear_cfg;

/* Parses "chunk=16,bq=32,..." (any subset, any order) over *cfg: the
 * internal override $CLATTN_LINEAR_OVERRIDE, read at plan creation (tests use
 * it to force chunk sizes and tilings). */
clattn_status clattn__linear_cfg_parse(const char *s, clattn__linear_cfg *cfg);

#endif /* CLATTN_LINEAR_H */
