/* test_sparse.c — sparse masks (window, dilated, strided, BigBird, block layouts) on flash and
 * naive against the float64 reference. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Every sparse mask of clattn.h against clattn_reference_attention, whose
 * per-(i, j) visibility is written independently of the library's interval
 * and tile-list builder (src/families/sparse.c), on shapes that are not tile or block
 * multiples, seq_q != seq_kv in both directions, windows of 0 and longer than
 * the sequence, global tokens at both ends, empty layout rows (zeros, LSE
 * -inf) and small flash tiles (many partial and full tiles).
 *
 * Tolerance (f32 storage): ‖out − ref‖₂/‖ref‖₂ ≤ 1e-5 and |lse − ref| ≤
 * 1e-5·max(1, |ref|) (TU_F32_REL_TOL, TU_F32_LSE_TOL); fully masked rows
 * exactly 0 with LSE -inf; o and lse are NaN-poisoned before each run, so an
 * unwritten element fails. Inputs are fresh per case, seeded from the case
 * label (the seed is printed on failure; $CLATTN_TEST_SEED changes the base).
 *
 * Run time: the mask parameters are kernel arguments, so the cases share a
 * few programs: flash with -DSPARSE=1 (element patterns) and -DSPARSE=2
 * (block patterns) per head dim / configuration, and the naive softmax per
 * class, plus CLBlast's GEMMs for the naive cases: about 50 s on a 2-core
 * PoCL machine with cold kernel caches (POCL_CACHE_DIR, CLATTN_CACHE_DIR
 * empty), a few seconds with warm ones. $CLATTN_TEST_FILTER runs a subset
 * (a cmocka pattern such as "test_window").
 */

#define HD 32 /* head dim of most cases */

static int g_tokens[2][4]; /* storage for global token lists of the cases below */

static clattn_attention_desc make(int nq, int nk, clattn_mask mask, clattn_algo algo,
                                  const clattn_sparse_desc *sp) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 1;
  d.heads = 2;
  d.seq_q = nq;
  d.seq_kv = nk;
  d.head_dim = HD;
  d.mask = mask;
  d.algo = algo;
  if (sp) d.sparse = *sp;
  return d;
}

static const char *algo_str(clattn_algo a) { return a == CLATTN_ALGO_NAIVE ? "naive" : "flash"; }

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
check(clattn_context ctx, const clattn_attention_desc *d, const char *fmt, ...) {
  char label[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(label, sizeof label, fmt, ap);
  va_end(ap);
  TU_CHECK_CASE(ctx, d, TU_INPUT_UNIFORM, 1, label);
}

typedef struct shp {
  int nq, nk;
} shp;

/* Shapes that are not multiples of any tile or block, in both orders. */
static const shp g_shapes[] = {{1, 1}, {7, 7}, {65, 65}, {200, 200}, {5, 70}, {70, 30}, {130, 257}};
#define NSHAPES (sizeof g_shapes / sizeof *g_shapes)

/* ---- element patterns -------------------------------------------------- */

typedef struct elem_case {
  int left, right, nglobal, tokens; /* tokens: 0 none, 1 {0, N-1}, 2 {N/2} */
  int step, causal;
} elem_case;

static void set_tokens(clattn_sparse_desc *sp, int which, int nk, int slot) {
  if (which == 1) {
    g_tokens[slot][0] = nk - 1;
    g_tokens[slot][1] = 0;
    sp->global_tokens = g_tokens[slot];
    sp->num_global_tokens = nk > 1 ? 2 : 1;
  } else if (which == 2) {
    g_tokens[slot][0] = nk / 2;
    sp->global_tokens = g_tokens[slot];
    sp->num_global_tokens = 1;
  }
}

static void run_elem(clattn_context ctx, clattn_mask mask, clattn_algo algo, const elem_case *cs,
                     size_t ncs, const shp *shapes, size_t nshapes) {
  static const char *names[] = {"", "", "window", "dilated", "strided"};
  for (size_t s = 0; s < nshapes; s++)
    for (size_t c = 0; c < ncs; c++) {
      clattn_sparse_desc sp;
      memset(&sp, 0, sizeof sp);
      sp.window_left = cs[c].left;
      sp.window_right = cs[c].right;
      sp.num_global = cs[c].nglobal;
      sp.causal = cs[c].causal;
      if (mask == CLATTN_MASK_DILATED) sp.dilation = cs[c].step;
      if (mask == CLATTN_MASK_STRIDED) sp.stride = cs[c].step;
      set_tokens(&sp, cs[c].tokens, shapes[s].nk, 0);
      clattn_attention_desc d = make(shapes[s].nq, shapes[s].nk, mask, algo, &sp);
      check(ctx, &d, "%s/%s/q%d-k%d/L%d-R%d-g%d-t%d-s%d-c%d", algo_str(algo), names[mask],
            shapes[s].nq, shapes[s].nk, cs[c].left, cs[c].right, cs[c].nglobal, cs[c].tokens,
            cs[c].step, cs[c].causal);
    }
}

static const elem_case g_window[] = {
    {0, 0, 0, 0, 1, 0},       /* window 0: the diagonal only */
    {3, 5, 0, 0, 1, 0},       /* asymmetric */
    {16, 0, 0, 0, 1, 1},      /* causal local attention */
    {1000, 1000, 0, 0, 1, 0}, /* longer than the sequence: dense */
    {2, 1, 1, 0, 1, 0},       /* Longformer, first token global */
    {4, 4, 0, 1, 1, 0},       /* global tokens at both ends */
    {0, 0, 2, 1, 1, 1},       /* globals, causal */
    {5, 3, 0, 2, 1, 1},       /* a global token in the middle, causal */
};

static void test_window(void **state) {
  run_elem(*state, CLATTN_MASK_WINDOW, CLATTN_ALGO_FLASH, g_window,
           sizeof g_window / sizeof *g_window, g_shapes, NSHAPES);
}

static const elem_case g_dilated[] = {
    {8, 8, 0, 0, 2, 0}, {20, 0, 0, 0, 3, 1}, {1000, 1000, 0, 0, 5, 0}, {3, 3, 1, 1, 4, 0}};
static const elem_case g_strided[] = {
    {4, 0, 0, 0, 8, 1}, {2, 2, 0, 0, 5, 0}, {0, 0, 0, 0, 1, 0}, {3, 0, 0, 2, 16, 1}};
static const shp g_shapes_small[] = {{65, 65}, {100, 37}, {6, 90}, {1, 1}};
#define NSMALL (sizeof g_shapes_small / sizeof *g_shapes_small)

static void test_dilated(void **state) {
  run_elem(*state, CLATTN_MASK_DILATED, CLATTN_ALGO_FLASH, g_dilated,
           sizeof g_dilated / sizeof *g_dilated, g_shapes_small, NSMALL);
}

static void test_strided(void **state) {
  run_elem(*state, CLATTN_MASK_STRIDED, CLATTN_ALGO_FLASH, g_strided,
           sizeof g_strided / sizeof *g_strided, g_shapes_small, NSMALL);
}

/* ---- block patterns ---------------------------------------------------- */

typedef struct bb_case {
  int b, w, g, r, causal, ewin, left, right;
} bb_case;

static const bb_case g_bigbird[] = {
    {16, 1, 1, 2, 0, 0, 0, 0}, {8, 0, 1, 3, 1, 0, 0, 0},  {7, 1, 0, 1, 0, 1, 10, 10},
    {1, 2, 2, 4, 0, 0, 0, 0},  {64, 0, 0, 1, 0, 0, 0, 0}, {5, 0, 3, 100, 0, 0, 0, 0},
    {9, 1, 0, 0, 1, 1, 4, 0},
};
static const shp g_shapes_bb[] = {{100, 100}, {64, 64}, {33, 130}, {130, 33}};

static void run_bigbird(clattn_context ctx, clattn_algo algo) {
  for (size_t s = 0; s < sizeof g_shapes_bb / sizeof *g_shapes_bb; s++)
    for (size_t c = 0; c < sizeof g_bigbird / sizeof *g_bigbird; c++) {
      const bb_case *k = &g_bigbird[c];
      clattn_sparse_desc sp;
      memset(&sp, 0, sizeof sp);
      sp.block_size = k->b;
      sp.window_blocks = k->w;
      sp.global_blocks = k->g;
      sp.random_blocks = k->r;
      sp.seed = 0x1234u + c;
      sp.causal = k->causal;
      sp.element_window = k->ewin;
      sp.window_left = k->left;
      sp.window_right = k->right;
      clattn_attention_desc d =
          make(g_shapes_bb[s].nq, g_shapes_bb[s].nk, CLATTN_MASK_BIGBIRD, algo, &sp);
      check(ctx, &d, "%s/bigbird/q%d-k%d/b%d-w%d-g%d-r%d-c%d-e%d", algo_str(algo),
            g_shapes_bb[s].nq, g_shapes_bb[s].nk, k->b, k->w, k->g, k->r, k->causal, k->ewin);
    }
}

static void test_bigbird(void **state) { run_bigbird(*state, CLATTN_ALGO_FLASH); }

typedef struct layout {
  int rows;
  int *off, *cols;
} layout;

/* A random layout: each block listed with probability `density`, every
 * `empty_every`-th row empty (0: none). */
static void make_layout(uint64_t seed, int nk, int bs, double density, int empty_every, layout *L) {
  tu_rng r;
  tu_rng_init(&r, seed);
  const int nkb = (nk + bs - 1) / bs;
  L->rows = nkb;
  L->off = malloc(((size_t)nkb + 1) * sizeof(int));
  L->cols = malloc((size_t)nkb * (size_t)nkb * sizeof(int) + sizeof(int));
  assert_non_null(L->off);
  assert_non_null(L->cols);
  int n = 0;
  L->off[0] = 0;
  for (int qb = 0; qb < nkb; qb++) {
    const int empty = empty_every > 0 && qb % empty_every == empty_every - 1;
    for (int kb = 0; kb < nkb && !empty; kb++)
      if (tu_rng_uniform(&r, 0.0, 1.0) < density) L->cols[n++] = kb;
    L->off[qb + 1] = n;
  }
}

static void free_layout(layout *L) {
  free(L->off);
  free(L->cols);
}

static void set_layout(clattn_sparse_desc *sp, const layout *L, int bs) {
  sp->block_size = bs;
  sp->layout_rows = L->rows;
  sp->layout_row_offsets = L->off;
  sp->layout_cols = L->cols;
}

typedef struct lay_case {
  int nq, nk, bs, empty_every, causal, ewin, left, right;
  double density;
} lay_case;

static const lay_case g_layouts[] = {
    {100, 100, 16, 3, 0, 0, 0, 0, 0.4},  {77, 77, 10, 2, 1, 0, 0, 0, 0.6},
    {40, 120, 64, 0, 0, 0, 0, 0, 0.7},   {120, 40, 7, 4, 0, 1, 5, 9, 0.5},
    {257, 257, 32, 5, 1, 1, 40, 0, 0.3}, {9, 9, 3, 1, 0, 0, 0, 0, 1.0}, /* every row empty */
};

static void run_layouts(clattn_context ctx, clattn_algo algo) {
  for (size_t c = 0; c < sizeof g_layouts / sizeof *g_layouts; c++) {
    const lay_case *k = &g_layouts[c];
    char label[256];
    snprintf(label, sizeof label, "%s/layout/q%d-k%d/b%d-e%d-c%d-w%d", algo_str(algo), k->nq, k->nk,
             k->bs, k->empty_every, k->causal, k->ewin);
    layout L;
    make_layout(tu_case_seed(label), k->nk, k->bs, k->density, k->empty_every, &L);
    clattn_sparse_desc sp;
    memset(&sp, 0, sizeof sp);
    set_layout(&sp, &L, k->bs);
    sp.causal = k->causal;
    sp.element_window = k->ewin;
    sp.window_left = k->left;
    sp.window_right = k->right;
    clattn_attention_desc d = make(k->nq, k->nk, CLATTN_MASK_BLOCK_LAYOUT, algo, &sp);
    tu_report rep;
    tu_run_and_compare(ctx, &d, TU_INPUT_UNIFORM, 1, 0, label, &rep);
    free_layout(&L);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    /* Empty rows: their queries have no key (checked zero / -inf above). */
    if (k->empty_every == 1 && rep.masked_rows != (size_t)(d.batch * d.heads * d.seq_q))
      fail_msg("%s: expected every row masked, got %zu", label, rep.masked_rows);
    if (k->empty_every > 1 && k->nq == k->nk && rep.masked_rows == 0)
      fail_msg("%s: expected empty rows", label);
  }
}

static void test_layout(void **state) { run_layouts(*state, CLATTN_ALGO_FLASH); }

/* ---- the tensor-core kernel ------------------------------------------------ */

/* BigBird of 7-token blocks (one window block, one random block drawn from
 * seed) with an element window of 10 each side: the tensor-core tests' case. */
static clattn_sparse_desc bigbird_ew(uint64_t seed) {
  clattn_sparse_desc sp;
  memset(&sp, 0, sizeof sp);
  sp.block_size = 7;
  sp.window_blocks = 1;
  sp.random_blocks = 1;
  sp.seed = seed;
  sp.element_window = 1;
  sp.window_left = sp.window_right = 10;
  return sp;
}

/* flash_tc (NVIDIA sm_80+; emulated in CI with CLATTN_NV_EMULATE=1, else
 * skipped) walking the tile lists with 16-bit storage: a causal window with
 * global positions, dilated, strided with global tokens, BigBird with an
 * element window (ALiBi on top in the second tiling), a block layout with
 * empty rows; shapes that are no tile multiple; two tilings (one and two
 * m-tiles a warp). */
static void test_flash_tc(void **state) {
  (void)state;
  static const char *cfgs[2] = {"flash_tc:warps=2,mt=1,bn=32", "flash_tc:warps=1,mt=2,bn=16"};
  for (int c = 0; c < 2; c++) {
    const clattn_dtype dt = c ? CLATTN_DTYPE_BF16 : CLATTN_DTYPE_F16;
    clattn_sparse_desc sp;
    memset(&sp, 0, sizeof sp);
    sp.window_left = 16;
    sp.window_right = 4;
    sp.num_global = 2;
    sp.causal = 1;
    clattn_attention_desc d = make(130, 257, CLATTN_MASK_WINDOW, CLATTN_ALGO_FLASH, &sp);
    d.dtype = dt;
    clattn_context ctx = tu_forced_context(cfgs[c], &d);
    if (!ctx) skip(); /* flash_tc does not apply on this device */
    check(ctx, &d, "tc%d/window/q130-k257/L16-R4-g2-c1", c);
    memset(&sp, 0, sizeof sp);
    sp.window_left = 20;
    sp.dilation = 3;
    sp.causal = 1;
    d = make(100, 37, CLATTN_MASK_DILATED, CLATTN_ALGO_FLASH, &sp);
    d.dtype = dt;
    check(ctx, &d, "tc%d/dilated/q100-k37/L20-s3-c1", c);
    memset(&sp, 0, sizeof sp);
    sp.window_left = 3;
    sp.stride = 16;
    sp.causal = c;
    set_tokens(&sp, 2, 90, 0);
    d = make(65, 90, CLATTN_MASK_STRIDED, CLATTN_ALGO_FLASH, &sp);
    d.dtype = dt;
    check(ctx, &d, "tc%d/strided/q65-k90/L3-s16-t2-c%d", c, c);
    sp = bigbird_ew(0x77u);
    d = make(120, 130, CLATTN_MASK_BIGBIRD, CLATTN_ALGO_FLASH, &sp);
    d.dtype = dt;
    d.alibi_max_bias = c ? 4.0 : 0.0;
    check(ctx, &d, "tc%d/bigbird/q120-k130/b7-w1-r1-e10", c);
    char label[96];
    snprintf(label, sizeof label, "tc%d/layout/q257-k257/b32-e5-c1", c);
    layout L;
    make_layout(tu_case_seed(label), 257, 32, 0.3, 5, &L);
    memset(&sp, 0, sizeof sp);
    set_layout(&sp, &L, 32);
    sp.causal = 1;
    d = make(257, 257, CLATTN_MASK_BLOCK_LAYOUT, CLATTN_ALGO_FLASH, &sp);
    d.dtype = dt;
    check(ctx, &d, "%s", label);
    free_layout(&L);
    clattn_context_release(ctx);
  }
}

/* f32 on tensor cores (flash_tf32; emulated elsewhere, else skipped) over
 * the tile lists: a plain causal band (SP_BAND), a dilated band with global
 * positions, BigBird with an element window. */
static void test_flash_tf32(void **state) {
  (void)state;
  clattn_sparse_desc sp;
  memset(&sp, 0, sizeof sp);
  sp.window_left = 40;
  sp.causal = 1;
  clattn_attention_desc d = make(130, 257, CLATTN_MASK_WINDOW, CLATTN_ALGO_FLASH, &sp);
  clattn_context ctx = tu_forced_context("flash_tf32:warps=2,mt=1,bn=16", &d);
  if (!ctx) skip(); /* flash_tf32 does not apply on this device */
  check(ctx, &d, "tf32/window/q130-k257/L40-c1");
  memset(&sp, 0, sizeof sp);
  sp.window_left = 20;
  sp.dilation = 3;
  sp.num_global = 2;
  d = make(100, 37, CLATTN_MASK_DILATED, CLATTN_ALGO_FLASH, &sp);
  check(ctx, &d, "tf32/dilated/q100-k37/L20-s3-g2");
  sp = bigbird_ew(0x78u);
  d = make(120, 130, CLATTN_MASK_BIGBIRD, CLATTN_ALGO_FLASH, &sp);
  check(ctx, &d, "tf32/bigbird/q120-k130/b7-w1-r1-e10");
  clattn_context_release(ctx);
}

/* ---- GQA, layouts, strides, head dims, small tiles ------------------------ */

static void test_shapes_and_layouts(void **state) {
  clattn_context ctx = *state;
  clattn_sparse_desc w;
  memset(&w, 0, sizeof w);
  w.window_left = 9;
  w.window_right = 3;
  w.num_global = 1;
  layout L;
  make_layout(7, 90, 8, 0.3, 3, &L);
  clattn_sparse_desc lay;
  memset(&lay, 0, sizeof lay);
  set_layout(&lay, &L, 8);
  const clattn_sparse_desc *pats[2] = {&w, &lay};
  const clattn_mask masks[2] = {CLATTN_MASK_WINDOW, CLATTN_MASK_BLOCK_LAYOUT};
  for (int pi = 0; pi < 2; pi++) {
    /* GQA, two batches, BSHD. */
    clattn_attention_desc d = make(70, 90, masks[pi], CLATTN_ALGO_FLASH, pats[pi]);
    d.batch = 2;
    d.heads = 4;
    d.kv_heads = 2;
    d.layout = CLATTN_LAYOUT_BSHD;
    check(ctx, &d, "flash/gqa-bshd/m%d", (int)masks[pi]);
    /* Padded strides, K/V seq-major. */
    d = make(70, 90, masks[pi], CLATTN_ALGO_FLASH, pats[pi]);
    d.heads = 3;
    d.kv_heads = 1;
    /* Padding that keeps rows 16-byte aligned (the vector I/O program; the
     * scalar one runs with head_dim 1 below). */
    tu_set_padded_strides(&d, 4, 4, 1);
    check(ctx, &d, "flash/strided/m%d", (int)masks[pi]);
    /* Head dims other than HD, one per class to save program builds (the
     * head-dim code is the dense path's): 256, the largest, and 1, scalar
     * I/O with a 3-wide padded chunk. */
    d = make(70, 90, masks[pi], CLATTN_ALGO_FLASH, pats[pi]);
    d.head_dim = pi == 0 ? 256 : 1;
    check(ctx, &d, "flash/head-dim/%d/m%d", d.head_dim, (int)masks[pi]);
  }
  /* Small tiles: many tiles per row, both full (mask skipped) and partial.
   * The override is read when a context is created and names the portable
   * kernel (the default on a GPU may be a tensor-core one whose 128-row
   * blocks leave no full tile in 70 rows). */
  assert_int_equal(setenv("CLATTN_TUNE_OVERRIDE", "flash:bm=16,bn=8,tm=4,tn=4", 1), 0);
  clattn_context small = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  size_t full_tiles[2] = {0, 0};
  layout L2; /* dense enough for fully visible tiles */
  make_layout(8, 90, 8, 0.9, 0, &L2);
  clattn_sparse_desc dense_lay;
  memset(&dense_lay, 0, sizeof dense_lay);
  set_layout(&dense_lay, &L2, 8);
  for (int pi = 0; pi < 2; pi++) {
    static const int wins[][2] = {{0, 0}, {30, 17}, {64, 64}};
    for (int wi = 0; wi < 3; wi++) {
      clattn_sparse_desc sp = pi == 0 ? w : dense_lay;
      if (pi == 0) {
        sp.window_left = wins[wi][0];
        sp.window_right = wins[wi][1];
        sp.num_global = wi;
      } else {
        sp.element_window = wi > 0;
        sp.window_left = wins[wi][0];
        sp.window_right = wins[wi][1];
        sp.causal = wi == 2;
      }
      clattn_attention_desc d = make(70, 90, masks[pi], CLATTN_ALGO_FLASH, &sp);
      tu_report rep;
      char label[128];
      snprintf(label, sizeof label, "flash/small-tiles/m%d/%d", (int)masks[pi], wi);
      tu_run_and_compare(small, &d, TU_INPUT_UNIFORM, 1, 0, label, &rep);
      if (!tu_report_ok(&rep, 1) || !strstr(rep.plan_describe, "bm=16 bn=8")) {
        clattn_context_release(small);
        free_layout(&L);
        free_layout(&L2);
        fail_msg("%s (%s)", rep.summary, rep.plan_describe);
      }
      const char *sd = strstr(rep.plan_describe, "tiles listed");
      size_t listed = 0, total = 0, partial = 0;
      while (sd > rep.plan_describe && sd[-1] != ':')
        sd--;
      if (!sd ||
          sscanf(sd, " %zu of %zu tiles listed, %zu partial", &listed, &total, &partial) != 3)
        fail_msg("%s: no tile counts in '%s'", label, rep.plan_describe);
      full_tiles[pi] += listed - partial;
    }
    if (full_tiles[pi] == 0) fail_msg("mask %d: no full tile was exercised", (int)masks[pi]);
  }
  clattn_context_release(small);
  free_layout(&L);
  free_layout(&L2);
}

/* ---- the naive family ------------------------------------------------------ */

static void test_naive(void **state) {
  clattn_context ctx = *state;
  const shp shapes[] = {{65, 65}, {5, 70}, {70, 30}};
  run_elem(ctx, CLATTN_MASK_WINDOW, CLATTN_ALGO_NAIVE, g_window, sizeof g_window / sizeof *g_window,
           shapes, 3);
  run_elem(ctx, CLATTN_MASK_DILATED, CLATTN_ALGO_NAIVE, g_dilated, 2, shapes, 3);
  run_elem(ctx, CLATTN_MASK_STRIDED, CLATTN_ALGO_NAIVE, g_strided, 2, shapes, 3);
  run_bigbird(ctx, CLATTN_ALGO_NAIVE);
  run_layouts(ctx, CLATTN_ALGO_NAIVE);
}

/* The naive-masked baseline with 16-bit storage (q, k, v converted into f32
 * copies, o rounded back; tests/test_attention.c test_naive_16bit): f16
 * within TU_F16_REL_TOL (1e-3) and bf16 within TU_BF16_REL_TOL (1e-2)
 * relative, output and LSE, against the reference of the rounded inputs.
 * An element pattern with global tokens and a BigBird pattern, causal, on
 * shapes that are no block multiple (fully masked rows included). */
static void test_naive_16bit(void **state) {
  clattn_context ctx = *state;
  static const clattn_dtype types[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (size_t t = 0; t < 2; t++) {
    const char *tn = t ? "bf16" : "f16";
    clattn_sparse_desc sp;
    memset(&sp, 0, sizeof sp);
    sp.window_left = 16;
    sp.window_right = 4;
    sp.num_global = 2;
    sp.causal = 1;
    clattn_attention_desc d = make(130, 257, CLATTN_MASK_WINDOW, CLATTN_ALGO_NAIVE, &sp);
    d.dtype = types[t];
    check(ctx, &d, "naive/%s/window/q130-k257/L16-R4-g2-c1", tn);
    memset(&sp, 0, sizeof sp);
    sp.block_size = 16;
    sp.window_blocks = 1;
    sp.global_blocks = 1;
    sp.random_blocks = 2;
    sp.seed = 0x5eed;
    sp.causal = 1;
    d = make(70, 30, CLATTN_MASK_BIGBIRD, CLATTN_ALGO_NAIVE, &sp);
    d.dtype = types[t];
    d.layout = CLATTN_LAYOUT_BSHD;
    check(ctx, &d, "naive/%s/bigbird/q70-k30/b16-w1-g1-r2-c1/bshd", tn);
  }
}

/* ---- BigBird determinism ----------------------------------------------------- */

/* Runs desc on the inputs of `prob` and returns the output (caller frees). */
static float *run_raw(tu_problem *prob, const clattn_attention_desc *d) {
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create(prob->ctx, d, 0, &plan);
  if (st != CLATTN_SUCCESS) fail_msg("plan: %s", clattn_context_last_error(prob->ctx));
  assert_int_equal(tu_problem_poison(prob), 0);
  st = clattn_plan_execute(plan, prob->q, prob->k, prob->v, prob->o, NULL, 0, NULL, NULL);
  assert_int_equal(st, CLATTN_SUCCESS);
  float *out = malloc(prob->elems[3] * sizeof(float));
  assert_non_null(out);
  assert_int_equal(tu_buffer_read(prob->ctx, prob->o, out, prob->elems[3] * sizeof(float)),
                   CL_SUCCESS);
  clattn_plan_release(plan);
  return out;
}

static void test_bigbird_determinism(void **state) {
  clattn_context ctx = *state;
  clattn_sparse_desc sp;
  memset(&sp, 0, sizeof sp);
  sp.block_size = 16;
  sp.window_blocks = 1;
  sp.global_blocks = 1;
  sp.random_blocks = 2;
  sp.seed = 42;
  clattn_attention_desc d = make(256, 256, CLATTN_MASK_BIGBIRD, CLATTN_ALGO_FLASH, &sp);
  tu_problem prob;
  tu_report rep;
  assert_int_equal(tu_problem_init(&prob, ctx, &d, TU_INPUT_UNIFORM, 0, "bigbird/seed", &rep), 0);
  float *a = run_raw(&prob, &d);
  float *b = run_raw(&prob, &d); /* a second plan, same seed */
  if (memcmp(a, b, prob.elems[3] * sizeof(float)))
    fail_msg("BigBird seed %" PRIu64 ": two plans gave different output bits", sp.seed);
  d.sparse.seed = 43;
  float *c = run_raw(&prob, &d);
  if (!memcmp(a, c, prob.elems[3] * sizeof(float)))
    fail_msg("BigBird seeds 42 and 43 gave identical outputs (same random blocks)");
  /* The layout differs, and each seed agrees with the reference. */
  prob.desc.sparse.seed = 43;
  assert_int_equal(tu_problem_compare(&prob, NULL, &rep), 0);
  if (!tu_report_ok(&rep, 0)) fail_msg("%s", rep.summary);
  free(a);
  free(b);
  free(c);
  tu_problem_free(&prob);
}

/* ---- visible pairs ------------------------------------------------------------ */

static uint64_t plan_pairs(clattn_context ctx, const clattn_attention_desc *d, double *flops) {
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, d, 0, &plan) != CLATTN_SUCCESS)
    fail_msg("plan: %s", clattn_context_last_error(ctx));
  uint64_t n = clattn_plan_visible_pairs(plan);
  if (flops) *flops = clattn_plan_flops(plan);
  clattn_plan_release(plan);
  return n;
}

static void test_visible_pairs(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = make(5, 7, CLATTN_MASK_NONE, CLATTN_ALGO_FLASH, NULL);
  double fl = 0;
  assert_int_equal(plan_pairs(ctx, &d, &fl), 2 * 5 * 7);
  assert_true(fl == 4.0 * HD * 2 * 5 * 7);
  d.mask = CLATTN_MASK_CAUSAL;
  assert_int_equal(plan_pairs(ctx, &d, NULL), 2 * (3 + 4 + 5 + 6 + 7));
  /* Window: a closed form per row. */
  clattn_sparse_desc sp;
  memset(&sp, 0, sizeof sp);
  sp.window_left = 6;
  sp.window_right = 2;
  d = make(50, 61, CLATTN_MASK_WINDOW, CLATTN_ALGO_FLASH, &sp);
  uint64_t want = 0;
  for (int i = 0; i < 50; i++) {
    int p = i + 11, lo = p - 6 < 0 ? 0 : p - 6, hi = p + 2 > 60 ? 60 : p + 2;
    want += (uint64_t)(hi - lo + 1);
  }
  assert_int_equal(plan_pairs(ctx, &d, &fl), 2 * want);
  assert_true(fl == 4.0 * HD * 2.0 * (double)want);
  /* Layout: the listed blocks' sizes (the last block is short). */
  layout L;
  make_layout(11, 61, 8, 0.5, 3, &L);
  memset(&sp, 0, sizeof sp);
  set_layout(&sp, &L, 8);
  d = make(61, 61, CLATTN_MASK_BLOCK_LAYOUT, CLATTN_ALGO_FLASH, &sp);
  want = 0;
  for (int r = 0; r < L.rows; r++) {
    const int rows = r * 8 + 8 > 61 ? 61 - r * 8 : 8;
    for (int e = L.off[r]; e < L.off[r + 1]; e++)
      want += (uint64_t)rows * (uint64_t)(L.cols[e] * 8 + 8 > 61 ? 61 - L.cols[e] * 8 : 8);
  }
  assert_int_equal(plan_pairs(ctx, &d, NULL), 2 * want);
  free_layout(&L);
}

/* ---- validation ---------------------------------------------------------------- */

static void expect_invalid(clattn_context ctx, const clattn_attention_desc *d, const char *field,
                           const char *what) {
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create(ctx, d, 0, &plan);
  if (st != CLATTN_ERROR_INVALID_ARGUMENT)
    fail_msg("%s: plan_create returned %s, expected invalid argument", what,
             clattn_status_string(st));
  assert_null(plan);
  const char *msg = clattn_context_last_error(ctx);
  if (!strstr(msg, field)) fail_msg("%s: message does not name %s: '%s'", what, field, msg);
  /* The reference rejects the same descriptor. */
  const size_t n = (size_t)d->batch * (size_t)d->heads * (size_t)d->head_dim *
                   (size_t)(d->seq_q > d->seq_kv ? d->seq_q : d->seq_kv);
  float *x = calloc(n, sizeof(float));
  double *o = calloc(n, sizeof(double));
  assert_non_null(x);
  assert_non_null(o);
  const clattn_status rs = clattn_reference_attention(d, x, x, x, o, NULL, NULL, 0);
  free(x);
  free(o);
  if (rs != CLATTN_ERROR_INVALID_ARGUMENT)
    fail_msg("%s: the reference returned %s", what, clattn_status_string(rs));
}

static void test_invalid(void **state) {
  clattn_context ctx = *state;
  clattn_sparse_desc sp;
  clattn_attention_desc d;
#define BASE(mask)                                                                                 \
  memset(&sp, 0, sizeof sp);                                                                       \
  d = make(40, 40, mask, CLATTN_ALGO_FLASH, NULL)
#define EXPECT(field, what)                                                                        \
  do {                                                                                             \
    d.sparse = sp;                                                                                 \
    expect_invalid(ctx, &d, field, what);                                                          \
  } while (0)
  BASE(CLATTN_MASK_WINDOW);
  sp.window_left = -1;
  EXPECT("window_left", "negative left window");
  BASE(CLATTN_MASK_WINDOW);
  sp.window_right = -3;
  EXPECT("window_right", "negative right window");
  BASE(CLATTN_MASK_WINDOW);
  sp.num_global = -1;
  EXPECT("num_global", "negative num_global");
  BASE(CLATTN_MASK_WINDOW);
  sp.num_global_tokens = 2;
  EXPECT("global_tokens", "NULL global tokens");
  static const int toks[] = {3, 40};
  BASE(CLATTN_MASK_WINDOW);
  sp.global_tokens = toks;
  sp.num_global_tokens = 2;
  EXPECT("global_tokens[1]", "token out of range");
  BASE(CLATTN_MASK_DILATED);
  sp.dilation = 0;
  EXPECT("dilation", "zero dilation");
  BASE(CLATTN_MASK_STRIDED);
  sp.stride = -2;
  EXPECT("stride", "negative stride");
  BASE(CLATTN_MASK_BIGBIRD);
  sp.block_size = 0;
  EXPECT("block_size", "zero block size");
  BASE(CLATTN_MASK_BIGBIRD);
  sp.block_size = 8;
  sp.random_blocks = -1;
  EXPECT("random_blocks", "negative random blocks");
  BASE(CLATTN_MASK_BIGBIRD);
  sp.block_size = 8;
  sp.window_blocks = -1;
  EXPECT("window_blocks", "negative window blocks");
  BASE(CLATTN_MASK_BIGBIRD);
  sp.block_size = 8;
  sp.element_window = 1;
  sp.window_left = -1;
  EXPECT("window_left", "negative element window");
  /* Layouts over 40 keys in blocks of 8: 5 rows. */
  int off[6] = {0, 1, 2, 3, 4, 5};
  int cols[5] = {0, 1, 2, 3, 4};
#define LAYOUT()                                                                                   \
  BASE(CLATTN_MASK_BLOCK_LAYOUT);                                                                  \
  sp.block_size = 8;                                                                               \
  sp.layout_rows = 5;                                                                              \
  sp.layout_row_offsets = off;                                                                     \
  sp.layout_cols = cols
  LAYOUT();
  d.sparse = sp;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS); /* the valid one */
  clattn_plan_release(plan);
  LAYOUT();
  sp.block_size = 0;
  EXPECT("block_size", "zero block size");
  LAYOUT();
  sp.layout_rows = 4;
  EXPECT("layout_rows", "wrong row count");
  LAYOUT();
  sp.layout_row_offsets = NULL;
  EXPECT("layout_row_offsets", "NULL offsets");
  LAYOUT();
  sp.layout_cols = NULL;
  EXPECT("layout_cols", "NULL columns");
  int off_bad0[6] = {1, 1, 2, 3, 4, 5};
  LAYOUT();
  sp.layout_row_offsets = off_bad0;
  EXPECT("layout_row_offsets[0]", "offsets not starting at 0");
  int off_dec[6] = {0, 2, 1, 3, 4, 5};
  LAYOUT();
  sp.layout_row_offsets = off_dec;
  EXPECT("layout_row_offsets", "offsets not monotone");
  int cols_range[5] = {0, 1, 5, 3, 4};
  LAYOUT();
  sp.layout_cols = cols_range;
  EXPECT("layout_cols[2]", "column out of range");
  int cols_neg[5] = {0, -1, 2, 3, 4};
  LAYOUT();
  sp.layout_cols = cols_neg;
  EXPECT("layout_cols[1]", "negative column");
  int off2[6] = {0, 2, 3, 4, 5, 5};
  int cols_unsorted[5] = {3, 1, 2, 3, 4};
  LAYOUT();
  sp.layout_row_offsets = off2;
  sp.layout_cols = cols_unsorted;
  EXPECT("layout_cols", "unsorted columns");
  int cols_dup[5] = {2, 2, 2, 3, 4};
  LAYOUT();
  sp.layout_row_offsets = off2;
  sp.layout_cols = cols_dup;
  EXPECT("layout_cols", "duplicate columns");
  /* Sparse masks are not for the linear family. */
  BASE(CLATTN_MASK_WINDOW);
  d.sparse = sp;
  d.algo = CLATTN_ALGO_LINEAR;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_UNSUPPORTED);
#undef LAYOUT
#undef EXPECT
#undef BASE
}

/* The plan copies the caller's arrays: changing them afterwards has no effect. */
static void test_arrays_copied(void **state) {
  clattn_context ctx = *state;
  layout L;
  make_layout(3, 50, 8, 0.5, 0, &L);
  clattn_sparse_desc sp;
  memset(&sp, 0, sizeof sp);
  set_layout(&sp, &L, 8);
  clattn_attention_desc d = make(50, 50, CLATTN_MASK_BLOCK_LAYOUT, CLATTN_ALGO_FLASH, &sp);
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  const uint64_t before = clattn_plan_visible_pairs(plan);
  const clattn_attention_desc *pd = clattn_plan_desc(plan);
  assert_ptr_not_equal(pd->sparse.layout_cols, L.cols);
  assert_int_equal(pd->sparse.layout_row_offsets[L.rows], L.off[L.rows]);
  free_layout(&L); /* the plan must not read them any more */
  d = *pd;         /* (nor may this test) */
  tu_problem prob;
  tu_report rep;
  assert_int_equal(tu_problem_init(&prob, ctx, &d, TU_INPUT_UNIFORM, 0, "copied", &rep), 0);
  assert_int_equal(clattn_plan_execute(plan, prob.q, prob.k, prob.v, prob.o, NULL, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  assert_int_equal(clFinish(clattn_context_queue(ctx)), CL_SUCCESS);
  assert_int_equal(clattn_plan_visible_pairs(plan), before);
  assert_true(clattn_plan_workspace_size(plan) > 0);
  /* The reference runs from the plan's copy of the descriptor. */
  if (tu_problem_compare(&prob, clattn_plan_describe(plan), &rep) || !tu_report_ok(&rep, 0))
    fail_msg("%s", rep.summary);
  tu_problem_free(&prob);
  clattn_plan_release(plan);
}

int main(int argc, char **argv) {
  unsetenv("CLATTN_TUNE_OVERRIDE");
  if (tu_parse_filter_args(argc, argv)) return 2;
  const char *filter = getenv("CLATTN_TEST_FILTER"); /* e.g. "test_window" */
  if (filter && *filter) cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_visible_pairs),
      cmocka_unit_test(test_window),
      cmocka_unit_test(test_dilated),
      cmocka_unit_test(test_strided),
      cmocka_unit_test(test_bigbird),
      cmocka_unit_test(test_bigbird_determinism),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_arrays_copied),
      cmocka_unit_test(test_shapes_and_layouts),
      cmocka_unit_test(test_naive),
      cmocka_unit_test(test_naive_16bit),
      cmocka_unit_test(test_flash_tc),
      cmocka_unit_test(test_flash_tf32),
  };
  return cmocka_run_group_tests_name("clattn sparse", tests, tu_group_setup, tu_group_teardown);
}
