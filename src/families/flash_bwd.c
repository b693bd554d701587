/* flash_bwd.c — the flash family's backward variants: the portable deterministic kernels of
 * cl/flash_bwd.cl (work-group and CPU forms) and the NVIDIA tensor-core kernels of
 * cl/flash_bwd_tc.cl. */
#include "checked.h"
#include "families.h"
#include "sparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a plan keeps for its backward pass (p->bwd_state). */
typedef struct bwd_state {
  cl_kernel pre, dkdv, dq;
  cl_mem dbuf;  /* D = rowsum(dO ∘ O), B·H·Nq floats */
  cl_mem tbits; /* sparse masks: (query tile, key tile) pairs with a visible pair */
  int tb_words; /* words per query tile in tbits */
  int bm, bn;
  int nt;    /* work-items per work-group */
  bool rows; /* the CPU kernels: one work-item per work-group, W = bm = bn lanes */
  /* The launch geometry: keys and work-items per work-group of the dK/dV
   * kernel, query rows and work-items per work-group of the dQ kernel. */
  int kv_keys, kv_nt, q_rows, q_nt;
} bwd_state;

static const int bwd_tiles[] = {4, 8, 16, 32, 64};
static const int bwd_nt[] = {64, 128, 256};
#define VALS(a) a, (int)(sizeof(a) / sizeof(a)[0])

/* bm: query rows per tile, bn: keys per tile, nt: work-items per work-group. */
const clattn__param clattn__flash_bwd_params[3] = {{"bm", 1, 256, VALS(bwd_tiles)},
                                                   {"bn", 1, 256, VALS(bwd_tiles)},
                                                   {"nt", 1, 1024, VALS(bwd_nt)}};
const char *const clattn__flash_bwd_sources[] = {"flash_bwd.cl", NULL};
static const int rows_w[] = {8, 16};
/* w: keys (dK/dV) or query rows (dQ) per work-item, the vector width. */
const clattn__param clattn__flash_bwd_rows_params[1] = {{"w", 8, 16, VALS(rows_w)}};
const char *const clattn__flash_bwd_rows_sources[] = {"flash_bwd.cl", NULL};
static const int tc_warps[] = {1, 2, 4, 8};
static const int tc_tiles[] = {16, 32, 64};
static const int tc_stages[] = {1, 2};
static const int tc_mtiles[] = {1, 2};
/* kw: warps of the dK/dV kernel, kmt: m-tiles of 16 keys per warp there, qm:
 * query rows per tile, kst: its stages; qw: warps of the dQ kernel, qmt:
 * m-tiles of 16 rows per warp, kn: keys per tile, qst: its stages (2:
 * cp.async double buffering, used when every row is 16-byte aligned). */
const clattn__param clattn__flash_bwd_tc_params[8] = {
    {"kw", 1, 8, VALS(tc_warps)},   {"qm", 16, 64, VALS(tc_tiles)}, {"kst", 1, 2, VALS(tc_stages)},
    {"qw", 1, 8, VALS(tc_warps)},   {"kn", 16, 64, VALS(tc_tiles)}, {"qst", 1, 2, VALS(tc_stages)},
    {"kmt", 1, 2, VALS(tc_mtiles)}, {"qmt", 1, 2, VALS(tc_mtiles)}};
const char *const clattn__flash_bwd_tc_sources[] = {"flash_bwd.cl", "nv_mma.cl", "flash_bwd_tc.cl",
                                                    NULL};

/* The modifiers the backward kernels take: softcap (dS through its
 * derivative), ALiBi (P recomputed with it), attention sinks (in the
 * forward's LSE already; no gradient is made for them) and the user's
 * mask_mod (hidden pairs get P = dS = 0), bias tensors (added as in the
 * forward; no gradient of the bias is made). A score_mod would need the
 * user's derivative: not yet. */
static bool bwd_mods_ok(const clattn_attention_desc *d, const char **why) {
  if (d->score_mod) {
    *why = "a user score_mod has no backward (it needs its derivative; mask_mod has one)";
    return false;
  }
  return true;
}

/* ---- the CPU kernels (flash_bwd.cl with -DROWS=1) ---- */

int clattn__flash_bwd_rows_applicable(const clattn__device_info *info,
                                      const clattn_attention_desc *d, const char **why) {
  if (!bwd_mods_ok(d, why)) return 0;
  if (!info->is_cpu) {
    *why = "written for CPU devices";
    return 0;
  }
  return 20;
}

size_t clattn__flash_bwd_rows_local(const int *p, const clattn_attention_desc *d) {
  (void)p;
  (void)d;
  return 0; /* private memory only */
}

const char *clattn__flash_bwd_rows_check(const int *p, const clattn_attention_desc *d,
                                         const clattn__device_info *info) {
  (void)info;
  if (p[0] != 8 && p[0] != 16) return "w (the vector width) must be 8 or 16";
  /* kT, vT, dkT, dvT: 4·D vectors of w floats. */
  if (4 * (size_t)d->head_dim * (size_t)p[0] * sizeof(float) > 131072)
    return "private memory per work-item exceeds 128 KiB";
  return NULL;
}

bool clattn__flash_bwd_rows_fallback(const clattn__device_info *info,
                                     const clattn_attention_desc *d, int *out) {
  static const int prefs[] = {16, 8};
  for (int i = 0; i < 2; i++)
    if (!clattn__flash_bwd_rows_check(&prefs[i], d, info)) {
      out[0] = prefs[i];
      return true;
    }
  return false;
}

/* ---- the portable work-group kernels ---- */

int clattn__flash_bwd_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                 const char **why) {
  if (!bwd_mods_ok(d, why)) return 0;
  (void)info;
  return 10; /* every device, dtype and mask of the flash family */
}

/* Both kernels' local arrays: K, V tiles (BN rows), Q, dO tiles (BM rows),
 * rows padded to head_dim + 1 floats, the P and dS tiles, LSE and D. */
size_t clattn__flash_bwd_local(const int *p, const clattn_attention_desc *d) {
  const size_t bm = (size_t)p[0], bn = (size_t)p[1], ld = (size_t)d->head_dim + 1;
  return ((2 * bn + 2 * bm) * ld + 2 * bm * (bn + 1) + 2 * bm) * sizeof(float);
}

const char *clattn__flash_bwd_check(const int *p, const clattn_attention_desc *d,
                                    const clattn__device_info *info) {
  const int bm = p[0], bn = p[1], nt = p[2];
  if (bm < 1 || bn < 1 || bm > 256 || bn > 256) return "bm and bn must lie in 1..256";
  if (nt < 1 || (size_t)nt > info->max_wg) return "nt must lie in 1..the device's work-group size";
  if (nt % bm || nt % bn) return "nt must be a multiple of bm and of bn";
  if (clattn__flash_bwd_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  /* Accumulators per work-item: dK and dV slices, a dQ slice. */
  const int rx_kv = (d->head_dim + nt / bn - 1) / (nt / bn);
  const int rx_q = (d->head_dim + nt / bm - 1) / (nt / bm);
  if (2 * rx_kv > 128 || rx_q > 128) return "per-item accumulators exceed the register budget";
  return NULL;
}

bool clattn__flash_bwd_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                int *out) {
  static const int prefs[][3] = {{32, 32, 128}, {16, 16, 128}, {8, 8, 64},
                                 {8, 8, 32},    {4, 4, 16},    {1, 1, 1}};
  static const int cpu_prefs[][3] = {{16, 16, 64}, {8, 8, 32}, {4, 4, 16}, {1, 1, 1}};
  const int(*list)[3] = info->is_cpu ? cpu_prefs : prefs;
  const size_t n =
      info->is_cpu ? sizeof cpu_prefs / sizeof *cpu_prefs : sizeof prefs / sizeof *prefs;
  for (size_t i = 0; i < n; i++)
    if (!clattn__flash_bwd_check(list[i], d, info)) {
      memcpy(out, list[i], sizeof list[i]);
      return true;
    }
  return false;
}

/* ---- the NVIDIA tensor-core kernels (cl/flash_bwd_tc.cl) ---- */

/* The problems they serve: 16-bit storage, dense or causal masks (and the
 * modifiers flash_bwd takes), head dims up to 128 (the dK and dV
 * accumulators of 16 keys take 128 registers a lane at d = 128); the others
 * get flash_bwd. */
int clattn__flash_bwd_tc_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                    const char **why) {
  if (!info->is_nvidia || info->nv_cc_major < 8) {
    *why = "needs NVIDIA sm_80 or newer (mma.sync)";
    return 0;
  }
  if (d->dtype == CLATTN_DTYPE_F32) {
    *why = "f16/bf16 storage only";
    return 0;
  }
  if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask)) {
    *why = "dense and causal masks only (sparse: flash_bwd)";
    return 0;
  }
  /* softcap, ALiBi, bias tensors and the user's mask_mod as in flash_bwd;
   * attention sinks need no code (the forward's LSE holds them) */
  if (!bwd_mods_ok(d, why)) return 0;
  if (d->head_dim > 128) {
    *why = "head_dim above 128 (the accumulators exceed the registers; flash_bwd serves it)";
    return 0;
  }
  return 30;
}

/* Local memory of the two kernels (the larger): dK/dV: the K and V rows of
 * 16·kmt·kw keys and kst stages of qm Q and dO rows with their LSE and D; dQ:
 * qst stages of kn K and V rows. Rows are padded to the k step plus 8. */
static size_t tc_local_dkdv(const int *p, const clattn_attention_desc *d) {
  const size_t ldk = ((size_t)d->head_dim + 15) / 16 * 16 + 8;
  return 2 * 16 * (size_t)p[6] * (size_t)p[0] * ldk * 2 +
         (size_t)p[2] * (2 * (size_t)p[1] * ldk * 2 + 2 * (size_t)p[1] * sizeof(float));
}
static size_t tc_local_dq(const int *p, const clattn_attention_desc *d) {
  const size_t ldk = ((size_t)d->head_dim + 15) / 16 * 16 + 8;
  return (size_t)p[5] * 2 * (size_t)p[4] * ldk * 2;
}

size_t clattn__flash_bwd_tc_local(const int *p, const clattn_attention_desc *d) {
  const size_t a = tc_local_dkdv(p, d), b = tc_local_dq(p, d);
  return a > b ? a : b;
}

const char *clattn__flash_bwd_tc_check(const int *p, const clattn_attention_desc *d,
                                       const clattn__device_info *info) {
  const int kw = p[0], qm = p[1], kst = p[2], qw = p[3], kn = p[4], qst = p[5], kmt = p[6],
            qmt = p[7];
  if (kw < 1 || kw > 8 || qw < 1 || qw > 8) return "kw and qw must lie in 1..8";
  if (kmt < 1 || kmt > 2 || qmt < 1 || qmt > 2) return "kmt and qmt must be 1 or 2";
  if (qm < 16 || qm > 64 || qm % 16 || kn < 16 || kn > 64 || kn % 16)
    return "qm and kn must be 16, 32 or 64";
  if (kst < 1 || kst > 2 || qst < 1 || qst > 2) return "kst and qst must be 1 or 2";
  if ((size_t)(32 * (kw > qw ? kw : qw)) > info->max_wg)
    return "32*kw or 32*qw exceeds the device's work-group size";
  if (d->head_dim > 128) return "head_dim above 128";
  if (clattn__flash_bwd_tc_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  /* Live 32-bit registers a lane holds, per m-tile: dK/dV: the dK and dV
   * accumulators (dp) and the Sᵀ, dPᵀ tiles (qm); dQ: the Q and dO fragments
   * and dQ (dp), S and dP (kn). Measured with ptxas (sm_90, no spills):
   * 160 → 233-250 registers in dK/dV, 192 → 213-237 in dQ; one step more
   * spills. */
  const int dp = (d->head_dim + 15) / 16 * 16;
  /* the modifiers keep a few values live (ALiBi's slope, the softcap
   * factor, bias and mask addresses): with all of them two dQ m-tiles at
   * d = 64 spilled 8 bytes (ptxas, 255 registers); the dK/dV pass at d = 128
   * took 245 and did not */
  const int mods =
      d->softcap > 0.0 || d->alibi_max_bias > 0.0 || d->mask_mod || d->bias_type != CLATTN_BIAS_NONE
          ? 16
          : 0;
  if (kmt * (dp + qm) > 160 || qmt * (dp + kn) + mods > 192)
    return "fragments and accumulators exceed the register budget";
  return NULL;
}

bool clattn__flash_bwd_tc_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                   int *out) {
  /* Measured on an H100 (bench/RESULTS.md §9), bf16 d = 64 causal: dK/dV
   * with one m-tile of 16 keys a warp and 64-row query tiles beat two m-tiles
   * (16-row tiles, 250 registers) by 13-16 %; dQ with two m-tiles and 32-key
   * tiles beats one by 6-7 %. */
  static const int prefs[][8] = {{4, 64, 1, 4, 32, 2, 1, 2}, {4, 64, 1, 4, 64, 2, 1, 1},
                                 {2, 32, 1, 4, 32, 2, 1, 1}, {4, 16, 1, 4, 32, 2, 1, 1},
                                 {2, 32, 1, 4, 32, 1, 1, 1}, {2, 16, 1, 2, 16, 1, 1, 1},
                                 {1, 16, 1, 1, 16, 1, 1, 1}};
  for (size_t i = 0; i < sizeof prefs / sizeof *prefs; i++)
    if (!clattn__flash_bwd_tc_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  return false;
}

/* The (query tile, key tile) bitmap of a sparse mask from the row intervals
 * of every query (the same intervals the forward's tile lists come from). */
static clattn_status build_tile_bits(clattn_plan p, bwd_state *s, size_t bytes) {
  const clattn__sparse *sp = p->sparse;
  uint32_t *bits = calloc(bytes / sizeof(uint32_t), sizeof(uint32_t));
  clattn__ivl *buf = NULL;
  int cap = 0;
  if (!bits)
    return clattn__fail_needed(p->ctx, bytes, "cannot allocate the backward tile bitmap (%zu B)",
                               bytes);
  for (int i = 0; i < sp->nq; i++) {
    const int n = clattn__sparse_row(sp, i + sp->off, &buf, &cap);
    if (n < 0) {
      free(bits);
      free(buf);
      return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate row intervals");
    }
    uint32_t *row = bits + (size_t)(i / s->bm) * (size_t)s->tb_words;
    for (int t = 0; t < n; t++)
      for (int kt = buf[t].a / s->bn; kt <= (buf[t].b - 1) / s->bn; kt++)
        row[kt >> 5] |= 1u << (kt & 31);
  }
  free(buf);
  cl_int err;
  s->tbits =
      clCreateBuffer(p->ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, bits, &err);
  free(bits);
  if (!s->tbits) return clattn__cl_fail(p->ctx, "clCreateBuffer", err, "backward tile bitmap");
  return CLATTN_SUCCESS;
}

/* The program of `files` with `opts` (the user's mask_mod compiled in: a
 * compile error is INVALID_ARGUMENT with the log), its three kernels (local
 * bytes of the dK/dV and dQ kernels) and the D workspace. */
static clattn_status build_kernels(clattn_plan p, bwd_state *s, const char *files,
                                   const char *opts, size_t l_dkdv, size_t l_dq, size_t dbytes,
                                   cl_program *prog) {
  clattn_context ctx = p->ctx;
  clattn_status st = clattn__get_program_user(ctx, files, opts, p->desc.mask_mod, prog);
  if (st != CLATTN_SUCCESS) return st;
  if ((st = clattn__create_kernel_sized(ctx, *prog, "flash_bwd_pre", 0, &s->pre)) !=
          CLATTN_SUCCESS ||
      (st = clattn__create_kernel_sized(ctx, *prog, "flash_bwd_dkdv", l_dkdv, &s->dkdv)) !=
          CLATTN_SUCCESS ||
      (st = clattn__create_kernel_sized(ctx, *prog, "flash_bwd_dq", l_dq, &s->dq)) !=
          CLATTN_SUCCESS)
    return st;
  cl_int err;
  s->dbuf = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, dbytes, NULL, &err);
  if (!s->dbuf) return clattn__cl_fail(ctx, "clCreateBuffer", err, "backward workspace D");
  return CLATTN_SUCCESS;
}

/* The tensor-core kernels' program, kernels and workspace (create's tail
 * for flash_bwd_tc). Two stages need 16-byte aligned rows (cp.async): with
 * other strides each kernel runs with one, as describe() says. */
static clattn_status tc_create(clattn_plan p, bwd_state *s, const int *params, const char *origin,
                               size_t dbytes, size_t total) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const clattn_strides *st[4] = {&p->qs, &p->ks, &p->vs, &p->os};
  bool vec = d->head_dim % 8 == 0;
  for (int i = 0; i < 4; i++)
    vec = vec && clattn__strides_multiple(st[i], 8);
  const int kst = vec ? params[2] : 1, qst = vec ? params[5] : 1;
  char opts[512];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -DCLATTN_DTYPE=%d -DD=%d -DCAUSAL=%d -DRAGGED=%d -DTC=1 -DKW=%d -DQM=%d "
           "-DKST=%d -DQW=%d -DKN=%d -DQST=%d -DKMT=%d -DQMT=%d -DVEC_GLOBAL=%d -DASYNC=%d "
           "-DLDM_ADDR=1",
           (int)d->dtype, d->head_dim, clattn__causal_define(d->mask), d->ragged ? 1 : 0, params[0],
           params[1], kst, params[3], params[4], qst, params[6], params[7], vec, vec);
  if (ctx->settings.nv_verbose) clattn__append(opts, sizeof opts, " -cl-nv-verbose");
  clattn__mods_options(d, opts, sizeof opts); /* softcap, ALiBi, bias, the user's mask */
  cl_program prog = NULL;
  const clattn_status r =
      build_kernels(p, s, "flash_bwd.cl nv_mma.cl flash_bwd_tc.cl", opts, tc_local_dkdv(params, d),
                    tc_local_dq(params, d), dbytes, &prog);
  if (r != CLATTN_SUCCESS) return r;
  snprintf(p->bwd_describe, sizeof p->bwd_describe,
           "flash_bwd_tc %s d=%d: deterministic, mma.sync m16n8k16 + ldmatrix%s; dK/dV over %d-key "
           "tiles (kw=%d kmt=%d qm=%d kst=%d), dQ over %d-row tiles (qw=%d qmt=%d kn=%d qst=%d) "
           "(%zu B local, %zu B workspace) [%s]%s",
           clattn_dtype_name(d->dtype), d->head_dim, vec ? " + cp.async" : "", s->kv_keys,
           params[0], params[6], params[1], kst, s->q_rows, params[3], params[7], params[4], qst,
           clattn__flash_bwd_tc_local(params, d), total, origin,
           d->ragged ? "; ragged (cu_seqlens)" : "");
  clattn__describe_mods(d, p->bwd_describe, sizeof p->bwd_describe);
  if (ctx->settings.nv_verbose) {
    const char *note = clattn__program_note(ctx, prog);
    if (*note) clattn__append(p->bwd_describe, sizeof p->bwd_describe, "; compiler: %s", note);
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__flash_bwd_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  bwd_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate backward state");
  p->bwd_state = s;
  s->rows = p->bwd_variant->num_params == 1;
  const bool tc = p->bwd_variant->num_params == 8;
  if (tc) {
    s->bm = params[1];
    s->bn = params[4];
    s->kv_keys = 16 * params[6] * params[0], s->kv_nt = 32 * params[0];
    s->q_rows = 16 * params[7] * params[3], s->q_nt = 32 * params[3];
  } else {
    s->bm = params[0];
    s->bn = s->rows ? params[0] : params[1];
    s->nt = s->rows ? 1 : params[2];
    s->kv_keys = s->bn, s->kv_nt = s->nt, s->q_rows = s->bm, s->q_nt = s->nt;
  }
  const int nqt = (d->seq_q + s->bm - 1) / s->bm, nkt = (d->seq_kv + s->bn - 1) / s->bn;
  s->tb_words = (nkt + 31) / 32;

  /* Workspace: D (B·H·Nq floats) and, sparse, the tile bitmap. */
  size_t dbytes = 0, tbytes = 0, total = 0;
  if (!clattn__mul3_size((size_t)d->batch * (size_t)d->heads, (size_t)d->seq_q, sizeof(float),
                         &dbytes) ||
      (p->sparse &&
       !clattn__mul3_size((size_t)nqt, (size_t)s->tb_words, sizeof(uint32_t), &tbytes)) ||
      !clattn__add_size(dbytes, tbytes, &total))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "backward workspace size overflows size_t (batch %d, heads %d, seq_q %d)",
                        d->batch, d->heads, d->seq_q);
  p->bwd_workspace_bytes = total;
  if (p->estimate) return CLATTN_SUCCESS;
  if (!p->estimate && total > ctx->info.max_alloc)
    return clattn__fail_needed(ctx, total,
                               "the backward workspace needs %zu bytes, more than the device's "
                               "largest allocation (%llu)",
                               total, (unsigned long long)ctx->info.max_alloc);

  if (tc) return tc_create(p, s, params, origin, dbytes, total);
  char opts[512];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DBM=%d -DBN=%d -DCAUSAL=%d "
           "-DRAGGED=%d",
           (int)d->dtype, d->head_dim, s->bm, s->bn, clattn__causal_define(d->mask),
           d->ragged ? 1 : 0);
  if (s->rows)
    clattn__append(opts, sizeof opts, " -DROWS=1");
  else
    clattn__append(opts, sizeof opts, " -DNT=%d", s->nt);
  /* No -cl-fast-relaxed-math: NaN inputs must give NaN gradients. */
  if (ctx->info.is_cpu) clattn__append(opts, sizeof opts, " -DCLATTN_SOFT_HALF=1 -DCLATTN_CPU=1");
  if (p->sparse) clattn__sparse_options(p->sparse, opts, sizeof opts);
  /* the forward's modifiers, compiled the same way (bwd_mods_ok says which
   * the backward takes; sinks need no code here) */
  clattn__mods_options(d, opts, sizeof opts);
  cl_program prog = NULL;
  const size_t l_local = s->rows ? 0 : clattn__flash_bwd_local(params, d);
  clattn_status st = build_kernels(p, s, "flash_bwd.cl", opts, l_local, l_local, dbytes, &prog);
  if (st != CLATTN_SUCCESS) return st;
  if (p->sparse) {
    if ((st = build_tile_bits(p, s, tbytes)) != CLATTN_SUCCESS) return st;
    if ((st = clattn__sparse_upload_bits(p)) != CLATTN_SUCCESS) return st;
  }
  if (s->rows)
    snprintf(p->bwd_describe, sizeof p->bwd_describe,
             "flash_bwd_rows %s d=%d: deterministic, dK/dV over key blocks + dQ over query blocks, "
             "w=%d (%zu B workspace) [%s]%s",
             clattn_dtype_name(d->dtype), d->head_dim, s->bm, total, origin,
             d->ragged ? "; ragged (cu_seqlens)" : "");
  else
    snprintf(p->bwd_describe, sizeof p->bwd_describe,
             "flash_bwd %s d=%d: deterministic, dK/dV over key tiles + dQ over query tiles, bm=%d "
             "bn=%d nt=%d (%zu B local, %zu B workspace) [%s]%s",
             clattn_dtype_name(d->dtype), d->head_dim, s->bm, s->bn, s->nt,
             clattn__flash_bwd_local(params, d), total, origin,
             d->ragged ? "; ragged (cu_seqlens)" : "");
  return CLATTN_SUCCESS;
}

/* The strides of q, k, v, o (also those of dq, dk, dv, dO) as kernel arguments. */
static cl_int set_common(clattn_plan p, bwd_state *s, cl_kernel kr, const clattn__buffers *b,
                         cl_uint *a) {
  const clattn_attention_desc *d = &p->desc;
  cl_int err = CL_SUCCESS;
  const cl_mem mems[6] = {b->q, b->k, b->v, b->dout, b->lse, s->dbuf};
  for (int i = 0; i < 6; i++)
    err |= clSetKernelArg(kr, (*a)++, sizeof(cl_mem), &mems[i]);
  const clattn_strides *st[4] = {&p->qs, &p->ks, &p->vs, &p->os};
  for (int t = 0; t < 4; t++) {
    const cl_long v4[4] = {st[t]->batch, st[t]->head, st[t]->seq, st[t]->dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(kr, (*a)++, sizeof(cl_long), &v4[i]);
  }
  const int ints[4] = {d->heads, d->heads / d->kv_heads, d->seq_q, d->seq_kv};
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(kr, (*a)++, sizeof(int), &ints[i]);
  const float qscale = (float)(d->scale * 1.4426950408889634), scale = (float)d->scale;
  err |= clSetKernelArg(kr, (*a)++, sizeof(float), &qscale);
  err |= clSetKernelArg(kr, (*a)++, sizeof(float), &scale);
  if (d->ragged) { /* BWD_RAGGED_ARGS */
    err |= clSetKernelArg(kr, (*a)++, sizeof(cl_mem), &b->cu_seqlens_q);
    err |= clSetKernelArg(kr, (*a)++, sizeof(cl_mem), &b->cu_seqlens_kv);
    err |= clSetKernelArg(kr, (*a)++, sizeof(int), &d->total_q);
    err |= clSetKernelArg(kr, (*a)++, sizeof(int), &d->total_kv);
  }
  return err;
}

/* The arguments after the tiles': the sparse tile bitmap (BWD_TILE_ARGS),
 * the user buffer (BWD_USER_ARG; the D workspace stands in when the call
 * gives none: the mask must not read `user` then, as in the forward), the
 * bias tensor and its strides, the sparse mask's. */
static cl_int set_tail(clattn_plan p, bwd_state *s, cl_kernel kr, cl_uint a, cl_mem user,
                       cl_mem bias) {
  cl_int err = CL_SUCCESS;
  if (p->sparse) {
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->tbits);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->tb_words);
  }
  if (p->desc.mask_mod) err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &user);
  if (p->desc.bias_type != CLATTN_BIAS_NONE) { /* FLASH_BIAS_ARGS */
    const clattn_strides *bs = &p->desc.bias_strides;
    const cl_long b4[4] = {bs->batch, bs->head, bs->seq, bs->dim};
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &bias);
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(kr, a++, sizeof(cl_long), &b4[i]);
  }
  if (p->sparse) err |= clattn__sparse_set_mask_args(p->sparse, kr, a);
  return err;
}

clattn_status clattn__flash_bwd_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                        const cl_event *wait, cl_event *event) {
  clattn_context ctx = p->ctx;
  bwd_state *s = p->bwd_state;
  const clattn_attention_desc *d = &p->desc;
  cl_int err = CL_SUCCESS;
  const size_t bh = (size_t)d->batch * (size_t)d->heads;
  const size_t bhk = (size_t)d->batch * (size_t)d->kv_heads;

  /* 1. D = rowsum(dO ∘ O). */
  cl_uint a = 0;
  err |= clSetKernelArg(s->pre, a++, sizeof(cl_mem), &b->o);
  err |= clSetKernelArg(s->pre, a++, sizeof(cl_mem), &b->dout);
  err |= clSetKernelArg(s->pre, a++, sizeof(cl_mem), &s->dbuf);
  const cl_long os4[4] = {p->os.batch, p->os.head, p->os.seq, p->os.dim};
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(s->pre, a++, sizeof(cl_long), &os4[i]);
  err |= clSetKernelArg(s->pre, a++, sizeof(int), &d->heads);
  err |= clSetKernelArg(s->pre, a++, sizeof(int), &d->seq_q);
  if (d->ragged) { /* BWD_PRE_RAGGED_ARGS */
    err |= clSetKernelArg(s->pre, a++, sizeof(cl_mem), &b->cu_seqlens_q);
    err |= clSetKernelArg(s->pre, a++, sizeof(int), &d->total_q);
  }
  /* 2. dK, dV over key tiles; 3. dQ over query tiles. */
  a = 0;
  err |= set_common(p, s, s->dkdv, b, &a);
  err |= clSetKernelArg(s->dkdv, a++, sizeof(cl_mem), &b->dk);
  err |= clSetKernelArg(s->dkdv, a++, sizeof(cl_mem), &b->dv);
  const cl_mem user = b->user ? b->user : s->dbuf;
  err |= set_tail(p, s, s->dkdv, a, user, b->bias);
  a = 0;
  err |= set_common(p, s, s->dq, b, &a);
  err |= clSetKernelArg(s->dq, a++, sizeof(cl_mem), &b->dq);
  err |= set_tail(p, s, s->dq, a, user, b->bias);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "flash_bwd");

  const size_t pre_lws[2] = {64, 1};
  const size_t pre_gws[2] = {((size_t)d->seq_q + 63) / 64 * 64, bh};
  const size_t nkt = ((size_t)d->seq_kv + (size_t)s->kv_keys - 1) / (size_t)s->kv_keys;
  const size_t nqt = ((size_t)d->seq_q + (size_t)s->q_rows - 1) / (size_t)s->q_rows;
  const size_t kv_nt = (size_t)s->kv_nt, q_nt = (size_t)s->q_nt;
  const size_t kv_gws[2] = {nkt * kv_nt, bhk}, kv_lws[2] = {kv_nt, 1};
  const size_t q_gws[2] = {nqt * q_nt, bh}, q_lws[2] = {q_nt, 1};
  cl_event e1 = NULL, e2 = NULL;
  err = clEnqueueNDRangeKernel(ctx->queue, s->pre, 2, NULL, pre_gws,
                               ctx->info.max_wg >= 64 ? pre_lws : NULL, num_wait, wait, &e1);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "flash_bwd_pre");
  err = clEnqueueNDRangeKernel(ctx->queue, s->dkdv, 2, NULL, kv_gws, kv_lws, 1, &e1, &e2);
  if (err != CL_SUCCESS) {
    clReleaseEvent(e1);
    return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "flash_bwd_dkdv");
  }
  const cl_event both[2] = {e1, e2};
  err = clEnqueueNDRangeKernel(ctx->queue, s->dq, 2, NULL, q_gws, q_lws, 2, both, event);
  clReleaseEvent(e1);
  clReleaseEvent(e2);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "flash_bwd_dq");
  return CLATTN_SUCCESS;
}

void clattn__flash_bwd_release(clattn_plan p) {
  bwd_state *s = p->bwd_state;
  if (!s) return;
  if (s->pre) clReleaseKernel(s->pre);
  if (s->dkdv) clReleaseKernel(s->dkdv);
  if (s->dq) clReleaseKernel(s->dq);
  if (s->dbuf) clReleaseMemObject(s->dbuf);
  if (s->tbits) clReleaseMemObject(s->tbits);
  free(s);
  p->bwd_state = NULL;
}
