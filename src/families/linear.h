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

/* Kernel configuration of cl/linear.cl (its -D parameters): the parameters
 * of the linear and linear_tc variants (clattn__linear_params), in order. */
typedef struct clattn__linear_cfg {
  int chunk;   /* CH: keys (and queries) per sequential step of lin_causal */
  int split;   /* keys per state split (non-causal) or segment (causal); 0: automatic */
  int bd;      /* value columns per work-group (multiple of 4, src, arc and ctc) */
  int bks;     /* lin_state: keys per tile */
  int srf;     /* lin_state: features per work-item */
  int src;     /* lin_state: columns per work-item */
  int bq;      /* lin_apply: query rows per work-group (multiple of arq) */
  int arq;     /* lin_apply: rows per work-item */
  int arc;     /* lin_apply: columns per work-item */
  int afs;     /* lin_apply: features per slice (multiple of 4) */
  int bpw;     /* lin_apply: row blocks per work-group; 0: automatic */
  int nosres;  /* lin_apply: 1 keeps S out of local memory (tests) */
  int maxreg;  /* NVIDIA: -cl-nv-maxrregcount (0: the compiler's choice) */
  int kunroll; /* unroll the products' reduction loops: 0 per-kernel default, 1 none, 2 all */
  int ctr;     /* lin_causal: work-items along rows / features */
  int ctc;     /* lin_causal: work-items along columns / keys */
  int cfs;     /* lin_causal: features per slice (multiple of 4) */
  int fbr;     /* lin_feat: rows per work-group (multiple of frr) */
  int frr;     /* lin_feat: rows per work-item */
  int frf;     /* lin_feat: features per work-item */
  int fds;     /* lin_feat: head-dim slice */
  int tsw;     /* TC lin_state: warps (0: enough for the features) */
  int tsm;     /* TC lin_state: 16-feature m-tiles per warp (0: automatic) */
  int taw;     /* TC lin_apply: warps */
  int tam;     /* TC lin_apply: 16-row m-tiles per warp */
} clattn__linear_cfg;

#endif /* CLATTN_LINEAR_H */
