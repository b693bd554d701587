/* linear.c — host side of the linear family: configuration, features, workspace, launches. */
#include "linear.h"
#include "families.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_FEAT_K, K_FEAT_Q, K_STATE, K_SCAN, K_OUT, K_COUNT };
static const char *const kernel_names[K_COUNT] = {"lin_feat(k)", "lin_feat(q)", "lin_state",
                                                  "lin_scan", "lin_apply"};

typedef struct linear_state {
  cl_kernel kfeat, kstate, kscan, kout; /* kout: lin_apply or lin_causal */
  cl_mem wt;                            /* FAVOR+: ω transposed, head_dim × F floats */
  cl_mem states;  /* B·Hk·nsplit·F·(D+1) floats: split states, then totals or prefixes */
  cl_mem cmax;    /* FAVOR+: B·Hk·nsplit split maxima */
  cl_mem pmax;    /* FAVOR+: B·Hk·nsplit total or prefix maxima */
  cl_mem phiq;    /* FAVOR+: B·H·Nq·FPS query features */
  cl_mem phik;    /* FAVOR+: B·Hk·Nk·FPS key features */
  cl_mem rowmax;  /* FAVOR+: B·Hk·Nk key row maxima */
  cl_mem scratch; /* causal: B·H·nsplit·ncolt·F·(bd+1) running states */
  size_t states_bytes, max_bytes, wt_bytes, phiq_bytes, phik_bytes, rowmax_bytes, scratch_bytes;
  clattn__linear_cfg cfg;
  int F, fps, nsplit, ncolt, nqb, sres, zloc;
  bool tc;                   /* lin_state / lin_apply on tensor cores (3×TF32) */
  size_t nts, nta, ntc, ntf; /* work-group sizes of lin_state, lin_apply, lin_causal, lin_feat */
  size_t scan_wg;
  bool favor, causal, out_of_order;
  /* Profiling (clattn__linear_profile): the events of the last execute. */
  bool profile;
  cl_event ev[K_COUNT];
} linear_state;

/* "elu+1", "relu", "favor+" in descriptions. */
static const char *map_name(clattn_feature_map m) {
  return m == CLATTN_FEATURE_ELU1 ? "elu+1" : m == CLATTN_FEATURE_FAVOR ? "favor+" : "relu";
}

/* Ceiling division and rounding up of non-negative ints, in 64 bits (no
 * overflow whatever the configuration; results that feed ints are bounded
 * by the parameter ranges or clamped where they are used). */
static int cdiv(int a, int b) { return (int)(((int64_t)a + b - 1) / b); }
static int64_t round_up64(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int round_up(int x, int m) { return (int)round_up64(x, m); }
static int imax(int a, int b) { return a > b ? a : b; }

/* Work-group sizes and local memory (bytes) of the kernels for a
 * configuration, mirroring the derived sizes in cl/linear.cl. */
typedef struct cfg_sizes {
  size_t nts, nta, ntc, ntf;
  size_t lstate, lapply, lcausal, lfeat;
  size_t lapply_sres; /* lin_apply with all of S resident in local memory */
  int regs_state, regs_apply, regs_causal, regs_feat; /* accumulators per work-item */
} cfg_sizes;

/* Key features staged per row by lin_state (SKP in cl/linear.cl). */
static int state_features(const clattn__linear_cfg *c, int F, bool tc) {
  return tc ? c->tsw * c->tsm * 16 : round_up(cdiv(F, c->srf) * c->srf, 4);
}

/* A TC row stride: 8 floats (mod 32) past a multiple of 16 (SLDK, SLDV). */
static int tc_stride(int n) { return n + (n % 32 ? 24 : 8); }

static void cfg_sizes_of(const clattn__linear_cfg *c, int F, bool tc, cfg_sizes *z) {
  const int bd = c->bd, ldv = bd + 4;
  /* lin_state */
  const int stf = cdiv(F, c->srf), stc = bd / c->src, sfp = state_features(c, F, tc);
  if (tc) {
    z->nts = (size_t)c->tsw * 32;
    /* two buffers; V tiles twice (TF32 hi and lo parts) */
    z->lstate = (size_t)(2 * c->bks * tc_stride(sfp) + 4 * c->bks * tc_stride(bd) + (int)z->nts) *
                sizeof(float);
    z->regs_state = c->tsm * bd / 2;
  } else {
    z->nts = (size_t)stf * (size_t)stc;
    z->lstate = (size_t)(2 * c->bks * (sfp + 4) + 2 * c->bks * ldv + (int)z->nts) * sizeof(float);
    z->regs_state = c->srf * c->src;
  }
  /* lin_apply */
  const int fz = cdiv(F, c->afs) * c->afs;
  const int lapply_common = c->afs * (round_up(c->bq, 4) + 4) + fz + c->bq * (c->afs / 4);
  z->nta = (size_t)(c->bq / c->arq) * (size_t)(bd / c->arc);
  z->lapply = (size_t)(lapply_common + c->afs * ldv) * sizeof(float);
  z->lapply_sres = (size_t)(lapply_common + fz * ldv) * sizeof(float);
  z->regs_apply = c->arq * c->arc;
  if (tc) { /* Sᵀ (bd rows of LDST floats) and z resident */
    const int tfz = round_up(F, 16), ldst = tfz + (tfz % 32 ? 0 : 16);
    z->nta = (size_t)c->taw * 32;
    z->lapply = (size_t)(bd * ldst + tfz) * sizeof(float);
    z->lapply_sres = (size_t)(2 * bd * ldst + tfz) * sizeof(float); /* Sᵀ split (SPRE) */
    z->regs_apply = c->tam * bd / 2;
  }
  /* lin_causal */
  const int crq = cdiv(c->chunk, c->ctr), crk = cdiv(c->chunk, c->ctc), crc = bd / c->ctc;
  const int crf = cdiv(c->cfs, c->ctr);
  const int cpr = c->ctr * crq, cpk = c->ctc * crk, cfp = round_up(c->ctr * crf, 4);
  const int ldqc = round_up(cpr, 4) + 4, ldkr = cfp + 4;
  const int uslice = c->cfs * ldqc + cpk * ldkr + c->cfs * ldv, uat = cpk * ldqc;
  z->ntc = (size_t)c->ctr * (size_t)c->ctc;
  z->lcausal = (size_t)(round_up(imax(uslice, uat), 4) + cpk * ldv + c->cfs + cpk) * sizeof(float);
  z->regs_causal = crq * crk + crq * crc + crq + crf * crc + crf;
  /* lin_feat */
  const int ftf = cdiv(F, c->frf), ffp = round_up(ftf * c->frf, 4);
  z->ntf = (size_t)(c->fbr / c->frr) * (size_t)ftf;
  z->lfeat = (size_t)(c->fds * (round_up(c->fbr, 4) + 4) + c->fds * (ffp + 4) +
                      c->fbr * imax(ftf, c->fds) + c->fbr) *
             sizeof(float);
  z->regs_feat = c->frr * c->frf + c->frr;
}

/* NULL when the configuration is legal on the device, else a static reason. */
static const char *cfg_check(const clattn__linear_cfg *c, const clattn__device_info *info, int F,
                             bool favor, bool causal, bool tc) {
  if (c->chunk < 1 || c->split < 0 || c->bpw < 0 || c->maxreg < 0 || c->kunroll < 0 || c->bd < 1 ||
      c->bks < 1 || c->srf < 1 || c->src < 1 || c->bq < 1 || c->arq < 1 || c->arc < 1 ||
      c->afs < 1 || c->ctr < 1 || c->ctc < 1 || c->cfs < 1 || c->fbr < 1 || c->frr < 1 ||
      c->frf < 1 || c->fds < 1)
    return "parameters must be >= 1";
  if (c->bd % 4 || c->bd % c->src || c->bd % c->arc || c->bd % c->ctc)
    return "bd must be a multiple of 4, src, arc and ctc";
  if (c->bq % c->arq) return "bq must be a multiple of arq";
  if (c->fbr % c->frr) return "fbr must be a multiple of frr";
  if (c->afs % 4 || c->cfs % 4) return "afs and cfs must be multiples of 4";
  if (tc) {
    if (c->tsw < 1 || c->tsm < 1 || c->taw < 1 || c->tam < 1)
      return "tsw, tsm, taw and tam must be >= 1";
    if (c->bd % 16 || c->bks % 8)
      return "tensor cores need bd a multiple of 16 and bks a multiple of 8";
    if (c->tsw * c->tsm * 16 < F) return "tensor cores need tsw*tsm*16 >= the feature count";
    if (c->taw > 32 || c->tam > 8 || c->tsw > 32 || c->tsm > 16)
      return "tensor-core tiles out of range (tsw, taw <= 32, tsm <= 16, tam <= 8)";
  }
  cfg_sizes z;
  cfg_sizes_of(c, F, tc, &z);
  const size_t wg[4] = {z.nts, causal ? z.ntc : z.nta, favor ? z.ntf : 1, 1};
  const size_t loc[3] = {z.lstate, causal ? z.lcausal : z.lapply, favor ? z.lfeat : 0};
  for (int i = 0; i < 3; i++) {
    if (wg[i] > info->max_wg) return "a work-group exceeds the device's work-group size";
    if (loc[i] > info->local_mem) return "local memory exceeds the device's limit";
  }
  const int regs[4] = {z.regs_state, causal ? z.regs_causal : z.regs_apply, favor ? z.regs_feat : 0,
                       0};
  const int budget = info->is_cpu ? 1024 : 160;
  for (int i = 0; i < 3; i++)
    if (regs[i] > budget) return "per-item accumulators exceed the register budget";
  return NULL;
}

/* The variants' fallback configuration: a generic tiling (and, with tensor
 * cores, warps enough for the features), whose tiles shrink until the
 * configuration is legal on the device. */
static bool cfg_default(const clattn__device_info *info, const clattn_attention_desc *d, int F,
                        bool tc, clattn__linear_cfg *c) {
  const bool favor = d->feature_map == CLATTN_FEATURE_FAVOR;
  const bool causal = clattn__mask_is_causal(d->mask);
  const int D = d->head_dim;
  memset(c, 0, sizeof *c);
  c->bd = round_up(D < 64 ? D : 64, 8);
  /* A generic tiling that the shrinking below makes legal anywhere; the
   * measured per-class tilings are rows of src/tune/tune_defaults.c, which
   * override these where they apply and are legal. */
  c->chunk = 32;
  c->bks = 32;
  c->srf = !info->is_cpu && F > 64 ? 8 : 4;
  c->src = 8;
  c->bq = 32;
  c->arq = 4;
  c->arc = 8;
  c->afs = 32;
  c->ctr = 8;
  c->ctc = 8;
  c->cfs = 32;
  c->fbr = 32;
  c->frr = 4;
  c->frf = 8;
  c->fds = 16;
  if (tc) {
    /* One warp per 16 features (two per warp past 64) × 64 columns in
     * lin_state; 4 warps of 16 query rows × 64 columns in lin_apply. */
    c->bd = round_up(D < 64 ? D : 64, 16);
    c->tsm = F <= 64 ? 1 : 2;
    c->tsw = cdiv(F, 16 * c->tsm);
    c->taw = 4;
    c->tam = 1;
    c->bq = c->taw * c->tam * 16;
  }
  for (int tries = 0; tries < 64; tries++) {
    const char *why = cfg_check(c, info, F, favor, causal, tc);
    if (!why) return true;
    cfg_sizes z;
    cfg_sizes_of(c, F, tc, &z);
    if (tc && (z.nts > info->max_wg || z.lstate > info->local_mem ||
               (!causal && z.lapply > info->local_mem))) {
      /* Tensor cores: fewer warps (more m-tiles each), then fewer keys per
       * tile, then fewer columns. */
      if (z.nts > info->max_wg && c->tsw > 1) {
        c->tsm *= 2;
        c->tsw = cdiv(F, 16 * c->tsm);
      } else if (z.lstate > info->local_mem && c->bks > 8) {
        c->bks /= 2;
      } else if (c->bd > 16) {
        c->bd = round_up(c->bd / 2, 16);
      } else {
        return false;
      }
      continue;
    }
    /* Halve what is too large: work-groups first, then local memory. */
    if (z.nts > info->max_wg || z.lstate > info->local_mem) {
      if (c->srf < 32 && (size_t)cdiv(F, c->srf) * (size_t)(c->bd / c->src) > info->max_wg)
        c->srf *= 2;
      else if (c->bks > 1)
        c->bks /= 2;
      else if (c->bd > 8)
        c->bd = round_up(c->bd / 2, 8);
      else
        return false;
    } else if (!causal && (z.nta > info->max_wg || z.lapply > info->local_mem)) {
      if (c->bq > c->arq)
        c->bq = round_up(c->bq / 2, c->arq);
      else if (c->afs > 4)
        c->afs /= 2;
      else
        return false;
    } else if (causal && (z.ntc > info->max_wg || z.lcausal > info->local_mem)) {
      if (c->cfs > 4)
        c->cfs /= 2;
      else if (c->ctr > 1 && z.ntc > info->max_wg)
        c->ctr /= 2;
      else if (c->chunk > 1)
        c->chunk /= 2;
      else
        return false;
    } else if (favor && (z.ntf > info->max_wg || z.lfeat > info->local_mem)) {
      if (c->frf < 64 && z.ntf > info->max_wg)
        c->frf *= 2;
      else if (c->fbr > c->frr)
        c->fbr = round_up(c->fbr / 2, c->frr);
      else if (c->fds > 1)
        c->fds /= 2;
      else
        return false;
    } else {
      return false; /* the register budget: no default gets there */
    }
  }
  return false;
}

/* ---- the variant interface (variants.c) ------------------------------------ */

/* One file per kernel over linear_common.cl; a plan builds the ones it runs. */
const char *const clattn__linear_sources[] = {"linear_common.cl",
                                              "linear_feat.cl",
                                              "linear_state.cl",
                                              "linear_scan.cl",
                                              "linear_apply.cl",
                                              "linear_causal.cl",
                                              NULL};
const char *const clattn__linear_tc_sources[] = {
    "linear_common.cl", "tf32.cl",         "linear_feat.cl",   "linear_state.cl",
    "linear_scan.cl",   "linear_apply.cl", "linear_causal.cl", NULL};

static const int v_bks[] = {16, 32, 64}, v_48[] = {4, 8}, v_bq[] = {32, 64, 128},
                 v_1632[] = {16, 32}, v_chunk[] = {32, 64}, v_taw[] = {2, 4, 8}, v_12[] = {1, 2};
#define V(a) a, (int)(sizeof(a) / sizeof(a)[0])
#define NV NULL, 0
/* The fields of clattn__linear_cfg, in order (src/linear.h says what each
 * tiles); the tuner searches those with values. */
#define LINEAR_PARAMS(SRF, SRC, BQ, ARQ, ARC, AFS, TAW, TAM)                                       \
  {                                                                                                \
    {"chunk", 1, 4096, V(v_chunk)}, {"split", 0, 1 << 30, NV}, {"bd", 1, 1024, NV},                \
        {"bks", 1, 1024, V(v_bks)}, {"srf", 1, 1024, SRF}, {"src", 1, 1024, SRC},                  \
        {"bq", 1, 4096, BQ}, {"arq", 1, 1024, ARQ}, {"arc", 1, 1024, ARC}, {"afs", 1, 1024, AFS},  \
        {"bpw", 0, 1 << 20, NV}, {"nosres", 0, 1, NV}, {"maxreg", 0, 255, NV},                     \
        {"kunroll", 0, 2, NV}, {"ctr", 1, 1024, NV}, {"ctc", 1, 1024, NV},                         \
        {"cfs", 1, 1024, V(v_1632)}, {"fbr", 1, 1024, NV}, {"frr", 1, 1024, NV},                   \
        {"frf", 1, 1024, NV}, {"fds", 1, 1024, NV}, {"tsw", 0, 32, NV}, {"tsm", 0, 16, NV},        \
        {"taw", 0, 32, TAW}, {                                                                     \
      "tam", 0, 8, TAM                                                                             \
    }                                                                                              \
  }
const clattn__param clattn__linear_params[25] =
    LINEAR_PARAMS(V(v_48), V(v_48), V(v_bq), V(v_48), V(v_48), V(v_1632), NV, NV);
const clattn__param clattn__linear_tc_params[25] =
    LINEAR_PARAMS(NV, NV, NV, NV, NV, NV, V(v_taw), V(v_12));
#undef LINEAR_PARAMS
#undef V
#undef NV

_Static_assert(sizeof(clattn__linear_cfg) == 25 * sizeof(int),
               "clattn__linear_cfg must be the 25 ints of clattn__linear_params, in order");

int clattn__linear_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                              const char **why) {
  CLATTN__NO_MODS(d, why, "linear-attention");
  (void)info;
  (void)d;
  (void)why;
  return 10;
}

int clattn__linear_tc_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                 const char **why) {
  CLATTN__NO_MODS(d, why, "linear-attention");
  (void)d;
  if (!info->is_nvidia || info->is_cpu || info->nv_cc_major < 8) {
    *why = "needs NVIDIA sm_80 or newer (mma.sync TF32)";
    return 0;
  }
  return 20;
}

/* The problem's features and flags; false when the descriptor has none. */
static bool problem_of(const clattn_attention_desc *d, int *F, bool *favor, bool *causal) {
  if (clattn__linear_resolve(NULL, d, F) != CLATTN_SUCCESS) return false;
  *favor = d->feature_map == CLATTN_FEATURE_FAVOR;
  *causal = clattn__mask_is_causal(d->mask);
  return true;
}

static const char *check_any(const int *params, const clattn_attention_desc *d,
                             const clattn__device_info *info, bool tc) {
  int F;
  bool favor, causal;
  if (!problem_of(d, &F, &favor, &causal)) return "not a linear-attention problem";
  clattn__linear_cfg c;
  memcpy(&c, params, sizeof c);
  if (tc) c.bq = c.taw * c.tam * 16;
  return cfg_check(&c, info, F, favor, causal, tc);
}

const char *clattn__linear_check(const int *params, const clattn_attention_desc *d,
                                 const clattn__device_info *info) {
  return check_any(params, d, info, false);
}

const char *clattn__linear_tc_check(const int *params, const clattn_attention_desc *d,
                                    const clattn__device_info *info) {
  return check_any(params, d, info, true);
}

static bool fallback_any(const clattn__device_info *info, const clattn_attention_desc *d,
                         int *params, bool tc) {
  int F;
  bool favor, causal;
  clattn__linear_cfg c;
  if (!problem_of(d, &F, &favor, &causal) || !cfg_default(info, d, F, tc, &c)) return false;
  memcpy(params, &c, sizeof c);
  return true;
}

bool clattn__linear_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                             int *params) {
  return fallback_any(info, d, params, false);
}

bool clattn__linear_tc_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                int *params) {
  return fallback_any(info, d, params, true);
}

static size_t local_any(const int *params, const clattn_attention_desc *d, bool tc) {
  int F;
  bool favor, causal;
  if (!problem_of(d, &F, &favor, &causal)) return 0;
  clattn__linear_cfg c;
  memcpy(&c, params, sizeof c);
  if (tc) c.bq = c.taw * c.tam * 16;
  cfg_sizes z;
  cfg_sizes_of(&c, F, tc, &z);
  /* The least each kernel declares (lin_state's z partials and lin_apply's
   * resident S are added at plan time where they fit). */
  size_t m = z.lstate;
  const size_t out = causal ? z.lcausal : z.lapply;
  if (out > m) m = out;
  if (favor && z.lfeat > m) m = z.lfeat;
  return m;
}

size_t clattn__linear_local(const int *params, const clattn_attention_desc *d) {
  return local_any(params, d, false);
}

size_t clattn__linear_tc_local(const int *params, const clattn_attention_desc *d) {
  return local_any(params, d, true);
}

/* Multiply-adds of φ(K)ᵀ[V 1] and φ(Q)·[S z] (2 FLOPs each), the causal
 * intra-chunk products, FAVOR+'s feature GEMMs. */
double clattn__linear_flops(clattn_plan p) {
  const linear_state *s = p->state;
  const clattn_attention_desc *d = &p->desc;
  const double F = s ? s->F : d->head_dim, D = d->head_dim;
  const double bh = (double)d->batch * d->heads, bhk = (double)d->batch * d->kv_heads;
  double f = 2.0 * bhk * d->seq_kv * F * (D + 1) + 2.0 * bh * d->seq_q * F * (D + 1);
  if (clattn__mask_is_causal(d->mask) && s) /* within each chunk: half a CH×CH block, QKᵀ and PV */
    f += 2.0 * bh * d->seq_q * (s->cfg.chunk / 2.0) * (F + D);
  if (d->feature_map == CLATTN_FEATURE_FAVOR) f += 2.0 * D * F * (bh * d->seq_q + bhk * d->seq_kv);
  return f;
}

static clattn_status make_buffer(clattn_plan p, size_t bytes, const char *what, cl_mem *out) {
  cl_int err;
  *out = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
  if (!*out) {
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE)
      return clattn__fail_needed(p->ctx, p->workspace_bytes,
                                 "linear attention needs a %zu-byte %s; clCreateBuffer failed "
                                 "with %s",
                                 bytes, what, clattn__cl_error_name(err));
    return clattn__cl_fail(p->ctx, "clCreateBuffer", err, what);
  }
  return CLATTN_SUCCESS;
}

static clattn_status alloc_workspace(clattn_plan p) {
  linear_state *s = p->state;
  clattn_status st = make_buffer(p, s->states_bytes, "state workspace", &s->states);
  if (st == CLATTN_SUCCESS && s->max_bytes)
    st = make_buffer(p, s->max_bytes, "max workspace", &s->cmax);
  if (st == CLATTN_SUCCESS && s->max_bytes)
    st = make_buffer(p, s->max_bytes, "max workspace", &s->pmax);
  if (st == CLATTN_SUCCESS && s->phiq_bytes)
    st = make_buffer(p, s->phiq_bytes, "query-feature workspace", &s->phiq);
  if (st == CLATTN_SUCCESS && s->phik_bytes)
    st = make_buffer(p, s->phik_bytes, "key-feature workspace", &s->phik);
  if (st == CLATTN_SUCCESS && s->rowmax_bytes)
    st = make_buffer(p, s->rowmax_bytes, "key-maximum workspace", &s->rowmax);
  if (st == CLATTN_SUCCESS && s->scratch_bytes)
    st = make_buffer(p, s->scratch_bytes, "causal state scratch", &s->scratch);
  return st;
}

/* Draws ω for `seed` and writes it (transposed, head_dim × F) to s->wt. */
static clattn_status upload_features(clattn_plan p, uint64_t seed) {
  linear_state *s = p->state;
  const int D = p->desc.head_dim, F = s->F;
  float *w = malloc((size_t)F * (size_t)D * sizeof(float));
  float *wt = malloc(s->wt_bytes);
  clattn_status st = CLATTN_SUCCESS;
  if (!w || !wt)
    st = CLATTN_ERROR_OUT_OF_MEMORY;
  else
    st = clattn__favor_draw(D, F, seed, w);
  if (st != CLATTN_SUCCESS) {
    free(w);
    free(wt);
    return clattn__fail(p->ctx, st, "cannot allocate %zu bytes of FAVOR+ feature scratch",
                        2 * (size_t)F * (size_t)D * sizeof(float));
  }
  /* Transposed, rows padded to FPS floats (zeros): float4 loads. */
  memset(wt, 0, s->wt_bytes);
  for (int f = 0; f < F; f++)
    for (int x = 0; x < D; x++)
      wt[(size_t)x * (size_t)s->fps + f] = w[(size_t)f * (size_t)D + x];
  cl_int err = CL_SUCCESS;
  if (s->out_of_order) err = clEnqueueBarrierWithWaitList(p->ctx->queue, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(p->ctx->queue, s->wt, CL_TRUE, 0, s->wt_bytes, wt, 0, NULL, NULL);
  free(w);
  free(wt);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(p->ctx, "clEnqueueWriteBuffer", err, "FAVOR+ features");
  return CLATTN_SUCCESS;
}

/* True when every tensor in `st` has unit dim strides and its other strides
 * are multiples of 4 elements (rows can be moved as 4-element vectors). */
static bool vec_ok(const clattn_strides *const *st, int n, int head_dim) {
  if (head_dim % 4) return false;
  for (int i = 0; i < n; i++)
    if (st[i]->dim != 1 || st[i]->seq % 4 || st[i]->head % 4 || st[i]->batch % 4) return false;
  return true;
}

/* Multiplies a byte count out of the factors, failing on size_t overflow. */
static bool mul_size(size_t *out, const size_t *f, int n) {
  size_t r = 1;
  for (int i = 0; i < n; i++) {
    if (f[i] && r > SIZE_MAX / f[i]) return false;
    r *= f[i];
  }
  *out = r;
  return true;
}

clattn_status clattn__linear_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  clattn_attention_desc *d = &p->desc;
  int F = 0;
  clattn_status st = clattn__linear_resolve(ctx, d, &F);
  if (st != CLATTN_SUCCESS) return st;
  const bool favor = d->feature_map == CLATTN_FEATURE_FAVOR;
  const bool causal = clattn__mask_is_causal(d->mask);
  d->num_features = F;
  linear_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate linear state");
  p->state = s;
  s->F = F;
  s->fps = round_up(F, 4);
  s->favor = favor;
  s->causal = causal;

  const int D = d->head_dim;
  const bool tc = p->variant->fast_path; /* linear_tc */
  memcpy(&s->cfg, params, sizeof s->cfg);
  /* Tensor cores: lin_apply's rows per work-group follow from its warps. */
  if (tc) s->cfg.bq = s->cfg.taw * s->cfg.tam * 16;
  s->tc = tc;
  clattn__linear_cfg *c = &s->cfg;
  cfg_sizes z;
  cfg_sizes_of(c, F, tc, &z);
  s->nts = z.nts;
  s->nta = z.nta;
  s->ntc = z.ntc;
  s->ntf = z.ntf;

  /* Splits of the keys: each lin_state work-group sums one split. Causal:
   * the splits are the segments that lin_causal walks chunk by chunk (a
   * multiple of the chunk). Default: enough work-groups to fill the device
   * (GPUs several per compute unit), at least a few tiles per split. */
  const size_t bhk = (size_t)d->batch * (size_t)d->kv_heads;
  const size_t bh = (size_t)d->batch * (size_t)d->heads;
  const size_t cus = ctx->info.compute_units ? ctx->info.compute_units : 1;
  s->ncolt = cdiv(D, c->bd);
  const int Nk = d->seq_kv;
  if (!c->split) {
    const size_t want = (ctx->info.is_cpu ? 2 : 8) * cus;
    const size_t groups = (causal ? bh : bhk) * (size_t)s->ncolt;
    const size_t splits = groups >= want ? 1 : (want + groups - 1) / groups;
    size_t len = ((size_t)Nk + splits - 1) / splits;
    const size_t minlen = causal ? (size_t)c->chunk : 4 * (size_t)c->bks;
    if (len < minlen) len = minlen;
    c->split = (int)(len < (size_t)Nk ? len : (size_t)Nk);
  }
  /* lin_apply: blocks per work-group so that about 4 work-groups per
   * compute unit walk the rows (GPUs); S stays in local memory when it fits
   * (48 KiB at most, NVIDIA's limit). */
  s->nqb = cdiv(d->seq_q, c->bq);
  if (!c->bpw) {
    const size_t blocks = (size_t)s->nqb * bh * (size_t)s->ncolt, target = 4 * cus;
    c->bpw = ctx->info.is_cpu || blocks <= target ? 1 : (int)((blocks + target - 1) / target);
  }
  if (c->bpw > s->nqb) c->bpw = s->nqb;
  const cl_ulong lmax = ctx->info.local_mem < 49152 ? ctx->info.local_mem : 49152;
  s->sres = !causal && !c->nosres && (cl_ulong)z.lapply_sres <= lmax;
  /* lin_state: z partials in local memory when it has room (fewer registers). */
  const int sfp = state_features(c, F, tc);
  s->zloc = (cl_ulong)(z.lstate + (size_t)c->bks * (size_t)sfp * sizeof(float)) <= lmax;
  if (causal)
    c->split = round_up(c->split, c->chunk);
  else
    c->split = round_up(c->split, c->bks);
  if (c->split > Nk) {
    const int64_t m = causal ? c->chunk : c->bks, r = round_up64(Nk, m);
    c->split = (int)(r <= INT_MAX ? r : INT_MAX / m * m);
  }
  s->nsplit = cdiv(Nk, c->split);
  s->scan_wg = 64;
  while (s->scan_wg > ctx->info.max_wg)
    s->scan_wg /= 2;

  const cl_ulong limit =
      ctx->info.max_alloc < ctx->info.global_mem ? ctx->info.max_alloc : ctx->info.global_mem;
  const size_t fl = sizeof(float);
  const size_t f_states[] = {bhk, (size_t)s->nsplit, (size_t)F, (size_t)(D + 1), fl};
  const size_t f_max[] = {bhk, (size_t)s->nsplit, fl};
  const size_t f_phiq[] = {bh, (size_t)d->seq_q, (size_t)s->fps, fl};
  const size_t f_phik[] = {bhk, (size_t)Nk, (size_t)s->fps, fl};
  const size_t f_rowmax[] = {bhk, (size_t)Nk, fl};
  const size_t f_scratch[] = {bh,        (size_t)s->nsplit,   (size_t)s->ncolt,
                              (size_t)F, (size_t)(c->bd + 1), fl};
  bool ok = mul_size(&s->states_bytes, f_states, 5);
  if (favor) {
    ok = ok && mul_size(&s->max_bytes, f_max, 3) && mul_size(&s->phiq_bytes, f_phiq, 4) &&
         mul_size(&s->phik_bytes, f_phik, 4) && mul_size(&s->rowmax_bytes, f_rowmax, 3);
    s->wt_bytes = (size_t)s->fps * (size_t)D * fl;
  }
  /* Some segment has several chunks, or (top-left, seq_q > seq_kv) the last
   * segment walks on past the keys. */
  if (causal &&
      (c->split > c->chunk || (d->mask == CLATTN_MASK_CAUSAL_TOP_LEFT && d->seq_q > d->seq_kv)))
    ok = ok && mul_size(&s->scratch_bytes, f_scratch, 6);
  if (!ok)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "linear attention workspace sizes exceed the address space");
  p->workspace_bytes = s->states_bytes + 2 * s->max_bytes + s->wt_bytes + s->phiq_bytes +
                       s->phik_bytes + s->rowmax_bytes + s->scratch_bytes;
  const struct {
    size_t bytes;
    const char *what;
  } bufs[] = {{s->states_bytes, "state workspace (B*Hk*splits*F*(D+1)*4)"},
              {s->phiq_bytes, "query-feature workspace (B*H*seq_q*m*4)"},
              {s->phik_bytes, "key-feature workspace (B*Hk*seq_kv*m*4)"},
              {s->scratch_bytes, "causal state scratch (B*H*segments*F*(bd+1)*4)"}};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if ((cl_ulong)bufs[i].bytes > limit && !p->estimate)
      return clattn__fail_needed(ctx, p->workspace_bytes,
                                 "linear attention needs a %zu-byte %s but the device allows at "
                                 "most %llu bytes in one buffer; use a larger split",
                                 bufs[i].bytes, bufs[i].what, (unsigned long long)limit);
  if (p->estimate) return CLATTN_SUCCESS; /* sizing only */

  cl_command_queue_properties qp = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  s->out_of_order = (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;

  const clattn_strides *in[3] = {&p->qs, &p->ks, &p->vs}, *out[1] = {&p->os};
  char opts[896], maxreg[48] = "";
  if (c->maxreg && ctx->info.is_nvidia)
    snprintf(maxreg, sizeof maxreg, " -cl-nv-maxrregcount=%d", c->maxreg);
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DF=%d -DMAP=%d -DCAUSAL=%d "
           "-DVEC=%d -DOVEC=%d -DBD=%d -DBKS=%d -DSRF=%d -DSRC=%d -DBQ=%d -DARQ=%d -DARC=%d "
           "-DAFS=%d -DSRES=%d -DCH=%d -DCTR=%d -DCTC=%d -DCFS=%d -DFBR=%d -DFRR=%d -DFRF=%d "
           "-DFDS=%d -DZLOC=%d -DUNROLL_HINTS=%d -DKUNROLL_STATE=%d -DKUNROLL_OTHERS=%d -DTC=%d "
           "-DSTW=%d -DSTM=%d -DTAW=%d -DTAM=%d -DSPRE=%d%s",
           (int)d->dtype, D, F, (int)d->feature_map, clattn__causal_define(d->mask),
           vec_ok(in, 3, D) ? 1 : 0, vec_ok(out, 1, D) ? 1 : 0, c->bd, c->bks, c->srf, c->src,
           c->bq, c->arq, c->arc, c->afs, s->sres, c->chunk, c->ctr, c->ctc, c->cfs, c->fbr, c->frr,
           c->frf, c->fds, s->zloc, ctx->info.is_cpu ? 0 : 1,
           c->kunroll         ? c->kunroll - 1
           : ctx->info.is_cpu ? 0
                              : 1,
           c->kunroll ? c->kunroll - 1 : 0, tc ? 1 : 0, c->tsw, c->tsm, c->taw, c->tam,
           tc && s->sres ? 1 : 0, maxreg);
  cl_program prog = NULL;
  char files[160];
  snprintf(files, sizeof files, "linear_common.cl%s%s linear_state.cl linear_scan.cl %s",
           tc ? " tf32.cl" : "", favor ? " linear_feat.cl" : "",
           causal ? "linear_causal.cl" : "linear_apply.cl");
  st = clattn__get_program(ctx, files, opts, &prog);
  /* Each kernel's local memory as the geometry says it declares it. */
  const size_t lstate = z.lstate + (s->zloc ? (size_t)c->bks * (size_t)sfp * sizeof(float) : 0);
  const size_t lout = causal ? z.lcausal : s->sres ? z.lapply_sres : z.lapply;
  if (st == CLATTN_SUCCESS && favor)
    st = clattn__create_kernel_sized(ctx, prog, "lin_feat", z.lfeat, &s->kfeat);
  if (st == CLATTN_SUCCESS)
    st = clattn__create_kernel_sized(ctx, prog, "lin_state", lstate, &s->kstate);
  if (st == CLATTN_SUCCESS) st = clattn__create_kernel_sized(ctx, prog, "lin_scan", 0, &s->kscan);
  if (st == CLATTN_SUCCESS)
    st =
        clattn__create_kernel_sized(ctx, prog, causal ? "lin_causal" : "lin_apply", lout, &s->kout);
  if (st != CLATTN_SUCCESS) return st;

  if (favor) {
    st = make_buffer(p, s->wt_bytes, "FAVOR+ feature buffer", &s->wt);
    if (st == CLATTN_SUCCESS) st = upload_features(p, d->feature_seed);
    if (st != CLATTN_SUCCESS) return st;
  }
  if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE)) {
    st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  char seedbuf[64] = "", tiles[160];
  if (favor)
    snprintf(seedbuf, sizeof seedbuf, " m=%d seed=0x%llx", F, (unsigned long long)d->feature_seed);
  if (causal)
    snprintf(tiles, sizeof tiles, "causal ctr=%d ctc=%d cfs=%d", c->ctr, c->ctc, c->cfs);
  else if (tc)
    snprintf(tiles, sizeof tiles, "apply tensor cores taw=%d tam=%d bq=%d bpw=%d%s", c->taw, c->tam,
             c->bq, c->bpw, s->sres ? " (S split)" : "");
  else
    snprintf(tiles, sizeof tiles, "apply bq=%d arq=%d arc=%d afs=%d bpw=%d%s", c->bq, c->arq,
             c->arc, c->afs, c->bpw, s->sres ? " (S resident)" : "");
  char feat[64] = "", stile[64];
  if (favor)
    snprintf(feat, sizeof feat, " feat fbr=%d frr=%d frf=%d fds=%d", c->fbr, c->frr, c->frf,
             c->fds);
  if (tc)
    snprintf(stile, sizeof stile, "tensor cores (3xTF32) tsw=%d tsm=%d", c->tsw, c->tsm);
  else
    snprintf(stile, sizeof stile, "srf=%d src=%d", c->srf, c->src);
  snprintf(p->describe, sizeof p->describe,
           "linear %s %s d=%d%s %s: chunk=%d split=%d (%d %s) bd=%d state bks=%d %s%s "
           "%s%s%s, workspace %zu bytes [%s]",
           map_name(d->feature_map), clattn_dtype_name(d->dtype), D, seedbuf,
           causal ? "causal" : "non-causal", c->chunk, c->split, s->nsplit,
           causal ? "segments" : "splits", c->bd, c->bks, stile, s->zloc ? " (z local)" : "", tiles,
           feat, maxreg, p->workspace_bytes, origin);
  return CLATTN_SUCCESS;
}

static cl_int set_strides(cl_kernel k, int *a, const clattn_strides *st) {
  cl_long v4[4] = {st->batch, st->head, st->seq, st->dim};
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(k, (*a)++, sizeof(cl_long), &v4[i]);
  return err;
}

/* Enqueues kernel `which` (after a barrier on out-of-order queues), keeping
 * its event when profiling or when it is the plan's last one (`event`). */
static clattn_status launch(clattn_plan p, int which, cl_kernel k, cl_uint dims, const size_t *gws,
                            const size_t *lws, cl_uint num_wait, const cl_event *wait,
                            cl_event *event) {
  linear_state *s = p->state;
  if (s->out_of_order && !num_wait) clEnqueueBarrierWithWaitList(p->ctx->queue, 0, NULL, NULL);
  cl_event *ev = event;
  if (s->profile) ev = &s->ev[which];
  cl_int err = clEnqueueNDRangeKernel(p->ctx->queue, k, dims, NULL, gws, lws, num_wait, wait, ev);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(p->ctx, "clEnqueueNDRangeKernel", err, kernel_names[which]);
  if (s->profile && event) {
    clRetainEvent(s->ev[which]);
    *event = s->ev[which];
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__linear_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                     const cl_event *wait, cl_event *event) {
  const cl_mem q = b->q, k = b->k, v = b->v, o = b->o, lse = b->lse;
  linear_state *s = p->state;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const clattn__linear_cfg *c = &s->cfg;
  if (lse)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "lse must be NULL for linear attention: it has no log-sum-exp");
  if (!s->states) {
    clattn_status st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  for (int i = 0; i < K_COUNT; i++)
    if (s->ev[i]) {
      clReleaseEvent(s->ev[i]);
      s->ev[i] = NULL;
    }
  /* √scale on keys, sign(scale)·√|scale| on queries: φ(q')ᵀφ(k') with
   * q'ᵀk' = scale·qᵀk. */
  const double rs = sqrt(fabs(d->scale));
  const float sqk = (float)rs, sqq = (float)(d->scale < 0 ? -rs : rs);
  /* Buffers a kernel takes but does not read in this specialisation. */
  const cl_mem dummy = s->states;
  const cl_mem wt = s->wt ? s->wt : dummy;
  const cl_mem cm = s->cmax ? s->cmax : dummy, pm = s->pmax ? s->pmax : dummy;
  const cl_mem phiq = s->phiq ? s->phiq : dummy, phik = s->phik ? s->phik : dummy;
  const cl_mem rowmax = s->rowmax ? s->rowmax : dummy;
  const cl_mem scratch = s->scratch ? s->scratch : dummy;
  const int Hk = d->kv_heads, G = d->heads / d->kv_heads, Nq = d->seq_q, Nk = d->seq_kv;
  const size_t bhk = (size_t)d->batch * (size_t)Hk, bh = (size_t)d->batch * (size_t)d->heads;
  const int one = 1, zero = 0;
  cl_int err = CL_SUCCESS;
  clattn_status st = CLATTN_SUCCESS;
  bool waited = false; /* the caller's wait list goes to the first kernel */
#define WAITS (waited ? 0 : num_wait), (waited ? NULL : wait)

  if (s->favor) {
    /* Features of the keys (with their row maxima), then of the queries. */
    for (int pass = 0; pass < 2; pass++) {
      const bool key = pass == 0;
      cl_kernel kr = s->kfeat;
      const int Hx = key ? Hk : d->heads, N = key ? Nk : Nq;
      const float sq = key ? sqk : sqq;
      int a = 0;
      err = clSetKernelArg(kr, a++, sizeof(cl_mem), key ? &k : &q);
      err |= set_strides(kr, &a, key ? &p->ks : &p->qs);
      err |= clSetKernelArg(kr, a++, sizeof(int), &Hx);
      err |= clSetKernelArg(kr, a++, sizeof(int), &N);
      err |= clSetKernelArg(kr, a++, sizeof(float), &sq);
      err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &wt);
      err |= clSetKernelArg(kr, a++, sizeof(cl_mem), key ? &phik : &phiq);
      err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &rowmax);
      err |= clSetKernelArg(kr, a++, sizeof(int), key ? &one : &zero);
      if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_feat");
      const size_t gws[2] = {(size_t)cdiv(N, c->fbr) * s->ntf, key ? bhk : bh};
      const size_t lws[2] = {s->ntf, 1};
      st = launch(p, key ? K_FEAT_K : K_FEAT_Q, kr, 2, gws, lws, WAITS, NULL);
      if (st != CLATTN_SUCCESS) return st;
      waited = true;
    }
  }

  /* Split states; causal: the last segment's is never needed. */
  const int nstate = s->causal ? s->nsplit - 1 : s->nsplit;
  if (nstate > 0) {
    cl_kernel kr = s->kstate;
    int a = 0;
    err = clSetKernelArg(kr, a++, sizeof(cl_mem), &k);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &v);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &phik);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &rowmax);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &cm);
    err |= set_strides(kr, &a, &p->ks);
    err |= set_strides(kr, &a, &p->vs);
    err |= clSetKernelArg(kr, a++, sizeof(int), &Hk);
    err |= clSetKernelArg(kr, a++, sizeof(int), &Nk);
    err |= clSetKernelArg(kr, a++, sizeof(int), &c->split);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->nsplit);
    err |= clSetKernelArg(kr, a++, sizeof(float), &sqk);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_state");
    const size_t gws[3] = {(size_t)nstate * s->nts, (size_t)s->ncolt, bhk};
    const size_t lws[3] = {s->nts, 1, 1};
    st = launch(p, K_STATE, kr, 3, gws, lws, WAITS, NULL);
    if (st != CLATTN_SUCCESS) return st;
    waited = true;
  }
  if (s->nsplit > 1) {
    cl_kernel kr = s->kscan;
    int a = 0;
    err = clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &cm);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &pm);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->nsplit);
    if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_scan");
    const size_t elems = (size_t)s->F * (size_t)(d->head_dim + 1);
    const size_t gws[2] = {(elems + s->scan_wg - 1) / s->scan_wg * s->scan_wg, bhk};
    const size_t lws[2] = {s->scan_wg, 1};
    st = launch(p, K_SCAN, kr, 2, gws, lws, 0, NULL, NULL);
    if (st != CLATTN_SUCCESS) return st;
  }

  cl_kernel kr = s->kout;
  int a = 0;
  const int has_prefix = s->nsplit > 1;
  err = clSetKernelArg(kr, a++, sizeof(cl_mem), &q);
  if (s->causal) {
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &k);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &v);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &phiq);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &phik);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &rowmax);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &pm);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &scratch);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &o);
    err |= set_strides(kr, &a, &p->qs);
    err |= set_strides(kr, &a, &p->ks);
    err |= set_strides(kr, &a, &p->vs);
    err |= set_strides(kr, &a, &p->os);
    err |= clSetKernelArg(kr, a++, sizeof(int), &d->heads);
    err |= clSetKernelArg(kr, a++, sizeof(int), &G);
    err |= clSetKernelArg(kr, a++, sizeof(int), &Nq);
    err |= clSetKernelArg(kr, a++, sizeof(int), &Nk);
    err |= clSetKernelArg(kr, a++, sizeof(int), &c->split);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->nsplit);
    err |= clSetKernelArg(kr, a++, sizeof(int), &has_prefix);
    err |= clSetKernelArg(kr, a++, sizeof(float), &sqq);
    err |= clSetKernelArg(kr, a++, sizeof(float), &sqk);
  } else {
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &phiq);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
    err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &o);
    err |= set_strides(kr, &a, &p->qs);
    err |= set_strides(kr, &a, &p->os);
    err |= clSetKernelArg(kr, a++, sizeof(int), &d->heads);
    err |= clSetKernelArg(kr, a++, sizeof(int), &G);
    err |= clSetKernelArg(kr, a++, sizeof(int), &Nq);
    err |= clSetKernelArg(kr, a++, sizeof(int), &s->nsplit);
    err |= clSetKernelArg(kr, a++, sizeof(float), &sqq);
    err |= clSetKernelArg(kr, a++, sizeof(int), &c->bpw);
  }
  const char *oname = s->causal ? "lin_causal" : "lin_apply";
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, oname);
  const size_t nt = s->causal ? s->ntc : s->nta;
  const size_t groups0 = s->causal ? (size_t)s->nsplit : (size_t)cdiv(s->nqb, c->bpw);
  const size_t gws[3] = {groups0 * nt, (size_t)s->ncolt, bh};
  const size_t lws[3] = {nt, 1, 1};
  st = launch(p, K_OUT, kr, 3, gws, lws, WAITS, event);
#undef WAITS
  return st;
}

void clattn__linear_release(clattn_plan p) {
  linear_state *s = p->state;
  if (!s) return;
  cl_kernel ks[4] = {s->kfeat, s->kstate, s->kscan, s->kout};
  for (int i = 0; i < 4; i++)
    if (ks[i]) clReleaseKernel(ks[i]);
  cl_mem ms[9] = {s->wt,   s->states, s->cmax,    s->pmax, s->phiq,
                  s->phik, s->rowmax, s->scratch, NULL};
  for (int i = 0; i < 9; i++)
    if (ms[i]) clReleaseMemObject(ms[i]);
  for (int i = 0; i < K_COUNT; i++)
    if (s->ev[i]) clReleaseEvent(s->ev[i]);
  free(s);
  p->state = NULL;
}

int clattn__linear_profile(clattn_plan p, const clattn__buffers *buffers, int reps,
                           const char **names, double *ms) {
  if (!p || p->variant->family != CLATTN_ALGO_LINEAR || reps < 1) return -1;
  linear_state *s = p->state;
  double *t = calloc((size_t)reps * K_COUNT, sizeof *t);
  if (!t) {
    clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "profile: host allocation failed");
    return -1;
  }
  int n = -1;
  bool seen[K_COUNT] = {false};
  s->profile = true;
  for (int r = 0; r < reps; r++) {
    if (clattn__linear_execute(p, buffers, 0, NULL, NULL) != CLATTN_SUCCESS) goto done;
    cl_int err = clFinish(p->ctx->queue);
    for (int i = 0; i < K_COUNT && err == CL_SUCCESS; i++) {
      if (!s->ev[i]) continue;
      cl_ulong t0 = 0, t1 = 0;
      err = clGetEventProfilingInfo(s->ev[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
      if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(s->ev[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
      t[(size_t)i * (size_t)reps + (size_t)r] = (double)(t1 - t0) * 1e-6;
      seen[i] = true;
    }
    if (err != CL_SUCCESS) {
      clattn__cl_fail(p->ctx, "clGetEventProfilingInfo", err, "linear profile");
      goto done;
    }
  }
  n = 0;
  for (int i = 0; i < K_COUNT; i++) {
    if (!seen[i]) continue;
    clattn__sort_doubles(t + (size_t)i * (size_t)reps, (size_t)reps);
    names[n] = i == K_OUT && s->causal ? "lin_causal" : kernel_names[i];
    ms[n] = t[(size_t)i * (size_t)reps + (size_t)reps / 2];
    n++;
  }
done:
  s->profile = false;
  free(t);
  return n;
}

clattn_status clattn_plan_redraw_features(clattn_plan p, uint64_t seed) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  p->ctx->msg[0] = 0;
  if (p->variant->family != CLATTN_ALGO_LINEAR || p->desc.feature_map != CLATTN_FEATURE_FAVOR)
    return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "plan: clattn_plan_redraw_features needs a linear FAVOR+ plan "
                        "(desc.algo CLATTN_ALGO_LINEAR, desc.feature_map CLATTN_FEATURE_FAVOR)");
  clattn_status st = upload_features(p, seed);
  if (st != CLATTN_SUCCESS) return st;
  p->desc.feature_seed = seed;
  char *at = strstr(p->describe, " seed=0x");
  if (at) {
    char rest[512];
    const char *after = strchr(at + 1, ' ');
    snprintf(rest, sizeof rest, "%s", after ? after : "");
    snprintf(at, sizeof p->describe - (size_t)(at - p->describe), " seed=0x%llx%s",
             (unsigned long long)seed, rest);
  }
  return CLATTN_SUCCESS;
}
