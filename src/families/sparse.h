/* sparse.h — sparse masks: validation, per-row visible key intervals, tile lists, device data. */
#ifndef CLATTN_SPARSE_H
#define CLATTN_SPARSE_H

#include "internal.h"

/* Kernel classes, passed as -DSPARSE=n to cl/flash_fwd.cl and cl/softmax.cl. */
#define CLATTN__SPARSE_ELEMENT 1 /* WINDOW, DILATED, STRIDED: a formula of (p, j) */
#define CLATTN__SPARSE_BLOCK 2   /* BIGBIRD, BLOCK_LAYOUT: a bitmap of layout blocks */

/* Bits of the kernels' sp_flags argument (the same values in cl/common.cl). */
#define CLATTN__SP_CAUSAL 1 /* also j <= p */
#define CLATTN__SP_GBITS 2  /* element class: sp_bits holds the global-token bitmap */
#define CLATTN__SP_EWIN 4   /* block class: also p - left <= j <= p + right */

/* Number of ints the kernels take after the bitmap buffer (sp_left .. sp_flags). */
#define CLATTN__SP_NUM_INT_ARGS 9

/* A half-open interval [a, b) of key positions. */
typedef struct clattn__ivl {
  int a, b;
} clattn__ivl;

/* Everything a plan with a sparse mask keeps: copies of the caller's arrays,
 * the visible key blocks of each query block (block class), the host and
 * device bitmaps and the flash kernel's tile lists. */
typedef struct clattn__sparse {
  int cls; /* CLATTN__SPARSE_ELEMENT or _BLOCK */
  int nq, nk, off;
  int left, right;  /* element window (block class: only with ewin) */
  int step, stride; /* element class: dilation (1 = none), stride (0 = none) */
  int nglobal;      /* element class: positions < nglobal are global */
  int causal, ewin;
  int *gtok; /* element class: sorted unique explicit global tokens */
  int ngtok;
  clattn__ivl *gruns; /* merged runs of global key positions (both sources) */
  int ngruns;
  int bs, nkb; /* block class: block size, key blocks */
  int *brow;   /* block class: nkb + 1 offsets into bcol (BLOCK_LAYOUT: */
  int *bcol;   /* the caller's layout copied), sorted key blocks per row */
  /* Bitmap given to the kernels: element class the global tokens (nk bits),
   * block class rows qb0 .. nkb-1 of the block layout (row_words per row). */
  uint32_t *bits;
  size_t bits_words;
  int row_words, qb0;
  cl_mem bits_mem;
  /* Flash tile lists (see clattn__sparse_build_tiles). */
  int tile_bm, tile_bn;
  cl_mem tile_off_mem, tile_idx_mem;
  size_t tile_entries, tiles_partial;
  size_t device_bytes; /* bits + tile lists */
} clattn__sparse;

/* Validates desc->sparse for desc->mask (sizes already checked). Messages
 * name the field, e.g. "desc.sparse.layout_cols[5] ...". ctx may be NULL. */
clattn_status clattn__sparse_validate(clattn_context ctx, const clattn_attention_desc *d);

/* BigBird random key blocks of query block qb (documented in clattn.h):
 * writes min(R, candidates) distinct blocks to out (in draw order) and
 * returns the count. scratch holds 2 * nkb + 2 ints. */
int clattn__bigbird_random(uint64_t seed, int qb, int nkb, int global_blocks, int window_blocks,
                           int causal, int random_blocks, int *scratch, int *out);

/* Plan-time setup for a sparse mask: copies the caller's arrays into the plan
 * (and repoints p->desc.sparse at them), builds the block lists / bitmaps on
 * the host and counts the visible (i, j) pairs of one (b, h). */
clattn_status clattn__sparse_plan_init(clattn_plan p, uint64_t *pairs_per_head);

/* Visible key intervals of the query at position `pos` (sorted, disjoint,
 * non-adjacent). *buf / *cap: growable scratch (realloc'ed; freed by the
 * caller). Returns the count, or -1 when out of memory. */
int clattn__sparse_row(const clattn__sparse *s, int pos, clattn__ivl **buf, int *cap);

/* Builds the flash kernel's per-query-tile lists for BM x BN tiles and uploads
 * them with the bitmap. tile_off: nqt + 1 offsets, then the nqt query tiles
 * in launch order (longest list first); tile_idx: entries (kt << 1) | partial,
 * ascending kt within a query tile, partial = the tile holds a masked pair. */
clattn_status clattn__sparse_build_tiles(clattn_plan p, int bm, int bn);

/* Appends the kernels' compile-time sparse options to opts: -DSPARSE=cls
 * and, for an element pattern that is a plain band (no dilation, stride or
 * global positions), -DSP_BAND=1, which drops sp_visible's modulo tests. */
void clattn__sparse_options(const clattn__sparse *s, char *opts, size_t cap);

/* Uploads the bitmap alone (the naive family). */
clattn_status clattn__sparse_upload_bits(clattn_plan p);

/* Sets the kernel arguments sp_bits, sp_left .. sp_flags from index first. */
cl_int clattn__sparse_set_mask_args(const clattn__sparse *s, cl_kernel k, cl_uint first);

/* "window(L=..,R=..)..." for describe strings. */
void clattn__sparse_describe(const clattn_attention_desc *d, char *buf, size_t cap);

void clattn__sparse_release(clattn_plan p);

#endif
