/* decode.c — the flash family's decode variant (split-KV over contiguous, ragged or paged KV),
 * clattn_merge_states and clattn_kv_append. */
#include "families.h"
#include "checked.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct decode_state {
  cl_kernel split, merge;
  int splits, kt, wg, qr, nrb, warp, unroll, allh, tc, bn, ns, mw, tw, fuse;
  cl_mem ws, wl; /* [rows][splits][D] partial outputs, [rows][splits] log2-sum-exps */
  cl_mem cnt;    /* fuse: a counter per unit (work-groups done; 0 between executions) */
  cl_mem sinks;  /* desc.sinks on the device (the merge adds them) */
  size_t ws_o_bytes, ws_bytes, cnt_bytes;
  /* Profiling (clattn__decode_profile): the events of the last execute. */
  bool profile;
  cl_event ev[2];
} decode_state;

static const int dec_splits[] = {0, 1, 2, 4, 8, 16, 32, 64};
static const int dec_kt[] = {16, 32, 64};
static const int dec_wg[] = {1, 32, 64, 128, 256};
static const int dec_qr[] = {1, 2, 4, 8, 16, 32};
static const int dec_allh[] = {0, 1};
#define VALS(a) a, (int)(sizeof(a) / sizeof(a)[0])

/* splits (0: the heuristic over the device's compute units), kt keys per
 * tile, wg work-items, qr packed query rows (query × head of a KV-head
 * group) per work-group, allh: one work-item reads every KV head of its
 * keys (the 16-lane CPU form only, allh_applies(); ignored elsewhere). */
const clattn__param clattn__decode_params[5] = {{"splits", 0, 1024, VALS(dec_splits)},
                                                {"kt", 1, 256, VALS(dec_kt)},
                                                {"wg", 1, 1024, VALS(dec_wg)},
                                                {"qr", 1, 256, VALS(dec_qr)},
                                                {"allh", 0, 1, VALS(dec_allh)}};
const char *const clattn__decode_sources[] = {"decode.cl", NULL};

/* decode_warp (NVIDIA): splits, kt (the split granularity), wg work-items
 * (whole warps), qr rows, unroll keys in flight per key stream. */
static const int dw_kt[] = {32, 64, 128};
static const int dw_wg[] = {64, 128, 256};
static const int dw_qr[] = {1, 2, 4, 8};
static const int dw_unroll[] = {2, 4, 8};
const clattn__param clattn__decode_warp_params[5] = {{"splits", 0, 1024, VALS(dec_splits)},
                                                     {"kt", 1, 4096, VALS(dw_kt)},
                                                     {"wg", 32, 1024, VALS(dw_wg)},
                                                     {"qr", 1, 16, VALS(dw_qr)},
                                                     {"unroll", 1, 16, VALS(dw_unroll)}};
const char *const clattn__decode_warp_sources[] = {"decode.cl", NULL};

/* Query rows of one (sequence, KV head): the query heads of the group times
 * the query positions. */
static int kv_heads_of(const clattn_attention_desc *d) {
  return d->kv_heads > 0 ? d->kv_heads : d->heads > 0 ? d->heads : 1;
}

static int group_rows(const clattn_attention_desc *d) {
  const int64_t r = (int64_t)(d->heads / kv_heads_of(d)) * d->seq_q;
  return r > (1 << 30) ? (1 << 30) : (int)r;
}

/* Rows per work-group the kernel is built for: qr, but no more than the
 * group has (rounded up to a power of two). */
static int eff_qr(int qr, const clattn_attention_desc *d) {
  int r = 1;
  while (r < qr && r < group_rows(d))
    r *= 2;
  return r < qr ? r : qr;
}

int clattn__decode_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                              const char **why) {
  /* softcap, ALiBi, the user functions and a bias tensor act on each
   * score, attention sinks in the merge */
  (void)info;
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS) return 40; /* paged: the decode kernel alone */
  if (d->ragged && d->seq_q > 16) { /* ragged prefill: the flash kernels, which tile the queries */
    *why = "a ragged prefill (seq_q > 16): the flash kernels serve it"; /* for the others */
    return 5;
  }
  if (d->ragged) return 40;
  if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask)) {
    *why = "dense masks only (the flash kernels walk the sparse masks)";
    return 0;
  }
  if (d->seq_q > 16) {
    *why = "decode shapes only (seq_q <= 16, or paged / ragged KV)";
    return 0;
  }
  return 40;
}

size_t clattn__decode_local(const int *p, const clattn_attention_desc *d) {
  if (p[2] == 1) return 0; /* the CPU form: private memory only */
  const size_t qr = (size_t)eff_qr(p[3], d), kt = (size_t)p[1], dd = (size_t)d->head_dim;
  return (qr * dd + kt * (dd + 1) + kt * dd + qr * kt + 3 * qr + 2 * kt) * sizeof(float) +
         kt * sizeof(int);
}

/* Private memory of a CPU work-item (PoCL keeps it on the thread's stack). */
#define DECODE_PRIVATE_MAX 98304
#define DECODE_ALLH_PRIVATE_MAX 262144

/* Whether allh=1 applies to parameters p: the 16-lane CPU form (wg=1,
 * head_dim and kt multiples of 16; the plan adds unit dim strides) with
 * the rows, partial sums and token scales of every KV head and the tile's
 * V rows of every head (as stored) within DECODE_ALLH_PRIVATE_MAX.
 * Elsewhere allh is ignored: the one-head-a-work-item forms run. */
static bool allh_applies(const int *p, const clattn_attention_desc *d) {
  if (!p[4] || p[2] != 1 || d->head_dim % 16 || p[1] % 16) return false;
  const size_t nh = (size_t)kv_heads_of(d), qr = (size_t)eff_qr(p[3], d), kt = (size_t)p[1];
  const size_t dd = (size_t)d->head_dim;
  if (nh > 4096 || dd > 4096) return false;
  const size_t priv = nh * qr * (2 * dd * 4 + 16 * 64 + kt * 4) +
                      nh * kt * (dd * clattn__kv_elem_size(d) + 8) + kt * 4 * 8 + (size_t)qr * 8;
  return priv <= DECODE_ALLH_PRIVATE_MAX;
}
const char *clattn__decode_check(const int *p, const clattn_attention_desc *d,
                                 const clattn__device_info *info) {
  const int splits = p[0], kt = p[1], wg = p[2], qr = eff_qr(p[3], d);
  if (splits < 0 || splits > 1024) return "splits must lie in 0..1024 (0: automatic)";
  if (kt < 1 || kt > 256 || wg < 1 || wg > 1024 || qr < 1 || qr > 256)
    return "kt in 1..256, wg in 1..1024, qr in 1..256";
  if ((size_t)wg > info->max_wg) return "wg exceeds the device's work-group size";
  if (clattn__decode_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  if (wg == 1) { /* the CPU form: rows in private memory */
    if (kt % 8) return "wg=1: kt must be a multiple of 8";
    /* q and accumulator rows, the tile's scores; the 16-lane form (d % 16
     * == 0, kt % 16 == 0) adds 16 partial sums per row, the key offsets and
     * the tile's V rows as stored */
    const size_t dv = ((size_t)d->head_dim + 7) / 8 * 8, es = clattn__dtype_size(d->dtype);
    size_t priv = ((size_t)2 * qr * dv + (size_t)qr * kt + dv) * 4;
    if (d->head_dim % 16 == 0 && kt % 16 == 0)
      priv += (size_t)qr * 16 * 64 + (size_t)kt * (2 * 8 + 4) + (size_t)kt * d->head_dim * es;
    if (priv > DECODE_PRIVATE_MAX) return "wg=1: private memory per work-item exceeds 96 KiB";
    return NULL;
  }
  if ((qr * d->head_dim + wg - 1) / wg > 64)
    return "qr*head_dim/wg > 64 accumulators per work-item (register budget)";
  return NULL;
}

/* A token's KV heads lie next to each other ([token][kv_head][dim]: BSHD,
 * paged pools, such strides): allh=1 then reads K and V sequentially (in
 * BHSD it reads Hk strided streams; measured slower there). */
static bool heads_interleaved(const clattn_attention_desc *d) {
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS) return d->kv_layout == CLATTN_KV_PAGED;
  if (d->layout == CLATTN_LAYOUT_STRIDED)
    return d->k_strides.head < d->k_strides.seq && d->v_strides.head < d->v_strides.seq;
  return d->layout == CLATTN_LAYOUT_BSHD;
}

bool clattn__decode_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                             int *out) {
  static const int gpu[][5] = {{0, 32, 128, 16, 0}, {0, 32, 128, 8, 0}, {0, 16, 128, 8, 0},
                               {0, 16, 64, 4, 0},   {0, 16, 64, 2, 0},  {0, 8, 32, 1, 0}};
  /* CPUs: every KV head in one work-item first (allh=1: sequential reads
   * of [token][kv_head][dim] caches, bench/RESULTS.md §8), where its
   * private memory fits */
  static const int cpu[][5] = {{0, 32, 1, 16, 1}, {0, 16, 1, 16, 1}, {0, 64, 1, 16, 0},
                               {0, 32, 1, 8, 0},  {0, 16, 1, 4, 0},  {0, 16, 1, 1, 0},
                               {0, 32, 64, 8, 0}, {0, 8, 32, 1, 0}};
  const int(*prefs)[5] = info->is_cpu ? cpu : gpu;
  const size_t n = info->is_cpu ? sizeof cpu / sizeof cpu[0] : sizeof gpu / sizeof gpu[0];
  for (size_t i = 0; i < n; i++)
    if (!(prefs[i][4] && !(heads_interleaved(d) && allh_applies(prefs[i], d))) &&
        !clattn__decode_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  return false;
}

/* ---- decode_warp: the NVIDIA warp-stream form (cl/decode.cl, -DWARP=1) ----- */

/* head_dim / 8 lanes per key: a power of two up to a warp. */
static bool warp_head_dim(int h) {
  return h >= 8 && h <= 256 && h % 8 == 0 && ((h / 8) & (h / 8 - 1)) == 0;
}

int clattn__decode_warp_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                   const char **why) {
  const int base = clattn__decode_applicable(info, d, why);
  if (base <= 5) return 0; /* not a decode shape (or ragged prefill: the flash kernels) */
  if (!warp_head_dim(d->head_dim)) {
    *why = "head_dim 8, 16, 32, 64, 128 or 256 (8 elements per lane)";
    return 0;
  }
  /* Above the decode kernel on NVIDIA (2.0-3.5x faster on the H100 with
   * 16-byte loads, bench/RESULTS.md §14); elsewhere (its shuffles go through
   * local memory) only when forced: the CPU tests. */
  return info->is_nvidia ? base + 1 : 1;
}

size_t clattn__decode_warp_local(const int *p, const clattn_attention_desc *d) {
  const size_t lpk = (size_t)(d->head_dim / 8 > 0 ? d->head_dim / 8 : 1);
  const size_t nsw = (size_t)p[2] / lpk, qr = (size_t)eff_qr(p[3], d);
  return (nsw * qr * ((size_t)d->head_dim + 2) + (size_t)p[2]) * sizeof(float);
}

const char *clattn__decode_warp_check(const int *p, const clattn_attention_desc *d,
                                      const clattn__device_info *info) {
  const int splits = p[0], kt = p[1], wg = p[2], qr = p[3], unroll = p[4];
  if (!warp_head_dim(d->head_dim)) return "head_dim must be 8, 16, 32, 64, 128 or 256";
  if (splits < 0 || splits > 1024) return "splits must lie in 0..1024 (0: automatic)";
  if (kt < 1 || kt > 4096) return "kt (the split granularity) must lie in 1..4096";
  if (wg < 32 || wg > 1024 || wg % 32)
    return "wg must be a multiple of 32 (whole warps) up to 1024";
  if ((size_t)wg > info->max_wg) return "wg exceeds the device's work-group size";
  if (qr < 1 || qr > 16 || unroll < 1 || unroll > 16) return "qr and unroll must lie in 1..16";
  if (16 * eff_qr(qr, d) + 16 * unroll > 192) return "16 x (qr + unroll) > 192 registers per lane";
  if (clattn__decode_warp_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  return NULL;
}

bool clattn__decode_warp_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                  int *out) {
  static const int prefs[][5] = {
      {0, 64, 128, 4, 4}, {0, 64, 128, 2, 4}, {0, 64, 64, 2, 4}, {0, 64, 64, 1, 2}};
  for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++)
    if (!clattn__decode_warp_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  return false;
}

/* ---- decode_tc: the NVIDIA tensor-core form (cl/decode.cl, -DTC=1) -------- */

/* splits, kt (the split granularity, a multiple of bn), bn keys a step,
 * ns stages of the ring, warps a work-group (each its own ring, tiles
 * `warps` apart, their states merged in local memory: fewer partial rows
 * for the merge kernel at the same number of warps), fuse: the last
 * work-group of a unit (sequence, KV head, row block) merges the unit's
 * splits itself, counted in by an atomic counter after a fence (no merge
 * kernel, no launch gap; 0: the decode_merge kernel). */
static const int dt_kt[] = {64, 128, 256};
static const int dt_bn[] = {16, 32}; /* the search; 64 legal when forced (H100: 1.8x slower, §29) */
static const int dt_ns[] = {2, 3, 4};
static const int dt_warps[] = {1, 2, 4};
static const int dt_fuse[] = {0, 1};
const clattn__param clattn__decode_tc_params[6] = {
    {"splits", 0, 1024, VALS(dec_splits)}, {"kt", 16, 4096, VALS(dt_kt)},
    {"bn", 16, 64, VALS(dt_bn)},           {"ns", 2, 4, VALS(dt_ns)},
    {"warps", 1, 4, VALS(dt_warps)},       {"fuse", 0, 1, VALS(dt_fuse)}};
const char *const clattn__decode_tc_sources[] = {"nv_mma.cl", "decode.cl", NULL};

int clattn__decode_tc_applicable(const clattn__device_info *info, const clattn_attention_desc *d,
                                 const char **why) {
  const int base = clattn__decode_applicable(info, d, why);
  if (base <= 5) return 0; /* not a decode shape (*why says which) */
  if ((!info->is_nvidia || info->nv_cc_major < 8) && !info->nv_emulate) {
    *why = "needs NVIDIA sm_80 or newer (mma.sync)";
    return 0;
  }
  if (d->dtype == CLATTN_DTYPE_F32) {
    *why = "f16/bf16 storage only";
    return 0;
  }
  const bool q8 = d->kv_dtype != CLATTN_KV_DTYPE_SAME; /* int8, fp8 e4m3 / e5m2 */
  if (q8 && d->kv_scale == CLATTN_KV_SCALE_CHANNEL) {
    *why = "8-bit K/V with token, tensor or head scales (channel scales: decode_warp)";
    return 0;
  }
  if ((d->head_dim != 16 || q8) && d->head_dim != 32 && d->head_dim != 64 && d->head_dim != 128) {
    *why = "head_dim 16, 32, 64 or 128 (8-bit K/V: 32, 64 or 128)";
    return 0;
  }
  /* above decode_warp (bench/RESULTS.md §17); emulated: when forced only */
  return info->nv_emulate ? 1 : base + 2;
}

/* The ring's K and V rows (16-bit: padded by 8 elements; int8: by 16
 * codes), a flag per key and, int8 with token scales, two scales per key. */
size_t clattn__decode_tc_local(const int *p, const clattn_attention_desc *d) {
  const size_t ns = (size_t)p[3], bn = (size_t)p[2], hd = (size_t)d->head_dim;
  const size_t tw = p[4] >= 1 && p[4] <= 4 ? (size_t)p[4] : 4;
  const bool q8 = d->kv_dtype != CLATTN_KV_DTYPE_SAME;
  size_t ring = tw * ns * 2 * bn * (q8 ? hd + 16 : (hd + 8) * 2);
  /* the warps' merge reuses the rings: o, m and l of warps 1.. */
  const size_t xch = (tw - 1) * 32 * (4 * (hd / 8) + 4) * sizeof(float);
  if (xch > ring) ring = xch;
  /* fuse: the last-one flag (the merge itself runs in registers) */
  const size_t fuse = p[5] ? sizeof(int) : 0;
  return ring + tw * ns * bn * sizeof(int) + fuse +
         (q8 && d->kv_scale == CLATTN_KV_SCALE_TOKEN ? tw * 2 * ns * bn * sizeof(float) : 0);
}

const char *clattn__decode_tc_check(const int *p, const clattn_attention_desc *d,
                                    const clattn__device_info *info) {
  const int splits = p[0], kt = p[1], bn = p[2], ns = p[3], warps = p[4];
  if (splits < 0 || splits > 1024) return "splits must lie in 0..1024 (0: automatic)";
  if (p[5] != 0 && p[5] != 1) return "fuse must be 0 or 1";
  if (warps != 1 && warps != 2 && warps != 4) return "warps must be 1, 2 or 4";
  if (bn != 16 && bn != 32 && bn != 64) return "bn must be 16, 32 or 64";
  if (kt < bn || kt > 4096 || kt % bn) return "kt must be a multiple of bn up to 4096";
  if (ns < 2 || ns > 4) return "ns must lie in 2..4";
  if (d->head_dim % 16 || d->head_dim > 128 || 32 % (d->head_dim / 8))
    return "head_dim must be 16, 32, 64 or 128";
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME && (d->head_dim % 32 || bn * d->head_dim < 512))
    return "8-bit K/V: head_dim 32, 64 or 128 and bn * head_dim >= 512 (a 16-byte chunk a lane)";
  if (info->max_wg < (size_t)(32 * warps)) return "needs work-groups of 32 x warps";
  if (clattn__decode_tc_local(p, d) > info->local_mem)
    return "local memory exceeds the device's limit";
  return NULL;
}

bool clattn__decode_tc_fallback(const clattn__device_info *info, const clattn_attention_desc *d,
                                int *out) {
  static const int prefs[][6] = {
      {0, 64, 16, 3, 1, 0}, {0, 64, 16, 2, 1, 0}, {0, 64, 32, 3, 1, 0}, {0, 64, 32, 2, 1, 0}};
  for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++)
    if (!clattn__decode_tc_check(prefs[i], d, info)) {
      memcpy(out, prefs[i], sizeof prefs[i]);
      return true;
    }
  return false;
}

/* The automatic split count of a plan (splits = 0): enough work-groups
 * (splits × batch × kv_heads × row blocks) to give every compute unit
 * per_cu of them (decode_tc's 16-bit K/V rounded down: whole rounds of
 * work-groups per unit), but at least two tiles of keys per split.
 * Work-groups per unit: decode_tc (one warp each, measured on an H100,
 * bench/RESULTS.md §17): 16-bit K/V streams at the copy rate with two a
 * compute unit, and fewer splits mean less to merge (B = 1, 32k: 33 splits
 * 13 % faster than 132), in whole rounds (B = 8, 131k: 4 splits, 256
 * work-groups, 5 % faster than 5); int8 decodes its codes with more
 * instructions per byte and needs more warps to hide them (B = 8, 131k:
 * 66 splits 17 % faster than 17). Where the sequences' KV heads alone give
 * a quarter of the units one (B·Hk ≥ CUs / 4), 16-bit K/V takes four a
 * unit (H100, §30: B = 8, 32k: 8 splits 2.3 % faster than 4; B = 1 keeps
 * two, its merge grows with the splits). */
int clattn__decode_auto_splits(const clattn__device_info *info, const clattn_attention_desc *d,
                               bool tc, int tw, int kt, int nrb, bool allh) {
  const bool q8 = d->kv_dtype != CLATTN_KV_DTYPE_SAME, floor = tc && !q8;
  const int64_t base = (int64_t)d->batch * (allh ? 1 : kv_heads_of(d)) * nrb;
  const int64_t cus = info->compute_units ? (int64_t)info->compute_units : 1;
  int per_cu = info->is_cpu ? 2 : tc ? (q8 ? 32 : 4 * base >= cus ? 4 : 2) : 4;
  if (tc) per_cu = per_cu / tw > 0 ? per_cu / tw : 1; /* the same warps a unit */
  const int64_t target = cus * per_cu;
  int64_t s = floor ? target / base : (target + base - 1) / base;
  const int64_t most = ((int64_t)d->seq_kv + 2 * kt - 1) / (2 * kt);
  if (s > most) s = most;
  if (s > 128) s = 128;
  return s < 1 ? 1 : (int)s;
}

static clattn_status alloc_ws(clattn_plan p, decode_state *s) {
  cl_int err;
  s->ws = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, s->ws_o_bytes, NULL, &err);
  if (err == CL_SUCCESS)
    s->wl =
        clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, s->ws_bytes - s->ws_o_bytes, NULL, &err);
  if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clCreateBuffer", err, "decode workspace");
  if (s->fuse) { /* the counters start at 0; each execution leaves them at 0 */
    s->cnt = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, s->cnt_bytes, NULL, &err);
    if (err != CL_SUCCESS) return clattn__cl_fail(p->ctx, "clCreateBuffer", err, "decode counters");
    const cl_int zero = 0;
    err = clEnqueueFillBuffer(p->ctx->queue, s->cnt, &zero, sizeof zero, 0, s->cnt_bytes, 0, NULL,
                              NULL);
    /* every later command after the fill, also on an out-of-order queue */
    if (err == CL_SUCCESS) err = clEnqueueBarrierWithWaitList(p->ctx->queue, 0, NULL, NULL);
    if (err != CL_SUCCESS)
      return clattn__cl_fail(p->ctx, "clEnqueueFillBuffer", err, "decode counters");
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__decode_create(clattn_plan p, const int *params, const char *origin) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  decode_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate decode state");
  p->state = s;
  s->warp = p->variant && !strcmp(p->variant->name, "decode_warp");
  s->tc = p->variant && !strcmp(p->variant->name, "decode_tc");
  s->kt = params[1];
  /* decode_tc: `warps` warps, up to 16 rows (an m-tile) a work-group */
  s->tw = s->tc ? params[4] : 1;
  s->wg = s->tc ? 32 * s->tw : params[2];
  s->qr = eff_qr(s->tc ? 16 : params[3], d);
  s->bn = s->tc ? params[2] : 0;
  s->ns = s->tc ? params[3] : 0;
  s->unroll = s->warp ? params[4] : 0;
  s->fuse = s->tc ? params[5] : 0;
  s->nrb = (group_rows(d) + s->qr - 1) / s->qr;
  /* allh needs the 16-lane CPU form (unit dim strides): the other forms
   * read one KV head a work-item */
  s->allh = !s->warp && !s->tc && allh_applies(params, d) && p->ks.dim == 1 && p->vs.dim == 1;
  s->splits = params[0]
                  ? params[0]
                  : clattn__decode_auto_splits(&ctx->info, d, s->tc, s->tw, s->kt, s->nrb, s->allh);
  /* Workspace: (D + 1) floats per (row, split). */
  const size_t rows = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q;
  size_t parts, o_elems;
  if (!clattn__mul_size(rows, (size_t)s->splits, &parts) ||
      !clattn__mul_size(parts, (size_t)d->head_dim, &o_elems) ||
      !clattn__mul_size(o_elems, sizeof(float), &s->ws_o_bytes) ||
      !clattn__add_size(s->ws_o_bytes, parts * sizeof(float), &s->ws_bytes) ||
      (uint64_t)d->batch * (uint64_t)d->heads * (uint64_t)d->seq_q > (uint64_t)INT32_MAX ||
      (uint64_t)s->nrb * (uint64_t)s->splits > (uint64_t)INT32_MAX)
    return clattn__fail_needed(ctx, UINT64_MAX, "decode workspace size overflows");
  /* fuse: an int counter per unit (batch × kv_heads × row blocks); none otherwise */
  size_t units = 0;
  if ((s->fuse && (!clattn__mul_size((size_t)d->batch, (size_t)d->kv_heads, &units) ||
                   !clattn__mul_size(units, (size_t)s->nrb, &units) ||
                   !clattn__mul_size(units, sizeof(cl_int), &s->cnt_bytes))) ||
      !clattn__add_size(s->ws_bytes, s->cnt_bytes, &p->workspace_bytes))
    return clattn__fail_needed(ctx, UINT64_MAX, "decode workspace size overflows");
  if (p->estimate) return CLATTN_SUCCESS;
  if (s->ws_bytes > ctx->info.max_alloc || s->ws_bytes > ctx->info.global_mem)
    return clattn__fail_needed(ctx, s->ws_bytes,
                               "the decode workspace needs %zu bytes (%d splits), more than the "
                               "device allows in one buffer",
                               s->ws_bytes, s->splits);

  char opts[1024];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DKT=%d -DWG=%d -DQR=%d "
           "-DCAUSAL=%d -DPAGED=%d -DRAGGED=%d",
           (int)d->dtype, d->head_dim, s->kt, s->wg, s->qr, clattn__causal_define(d->mask),
           d->kv_layout != CLATTN_KV_CONTIGUOUS, d->ragged ? 1 : 0);
  /* the merge's work-group: 128 work-items (a power of two, at most the
   * device's). (Growing it with the splits, up to 512, so that every split
   * loads in one pass: commit 54a976f, correct on PoCL but not timed on a
   * GPU, so not the default; bench/RESULTS.md §34.) */
  s->mw = 128;
  while (s->mw > 1 && (size_t)s->mw > ctx->info.max_wg)
    s->mw /= 2;
  clattn__append(opts, sizeof opts, " -DMW=%d%s", s->mw, s->fuse ? " -DFUSE=1" : "");
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS)
    clattn__append(opts, sizeof opts, " -DPAGE=%d", d->page_size);
  /* K/V rows are read as 8-vectors when their elements are contiguous
   * (vload8 needs no alignment beyond the element's). */
  if (d->head_dim % 8 == 0 && p->ks.dim == 1 && p->vs.dim == 1) {
    clattn__append(opts, sizeof opts, " -DVEC8=1");
    /* whole loads of a lane's 8 elements (16 bytes; 8 for one-byte codes;
     * f32 as two 16-byte halves) when every row offset is a multiple of
     * their size (buffers themselves are aligned far beyond that) */
    const int64_t es = (int64_t)clattn__kv_elem_size(d);
    /* decode_tc: cp.async of whole 16-byte chunks */
    const int64_t al = s->tc ? 16 / es : es == 4 ? 4 : 8;
    if (clattn__strides_multiple(&p->ks, al) && clattn__strides_multiple(&p->vs, al))
      clattn__append(opts, sizeof opts, " -DALIGN16=1");
  }
  if (ctx->info.is_cpu && !s->tc) /* decode_tc emulated on a CPU keeps IEEE infinities */
    clattn__append(opts, sizeof opts, " -cl-fast-relaxed-math -DCLATTN_SOFT_HALF=1 -DCLATTN_CPU=1");
  if (s->allh) clattn__append(opts, sizeof opts, " -DALLH=%d", kv_heads_of(d));
  if (s->warp)
    clattn__append(opts, sizeof opts, " -DWARP=1 -DUNROLL=%d -DCLATTN_NV_SHFL=%d", s->unroll,
                   ctx->info.is_nvidia ? 1 : 0);
  if (s->tc)
    clattn__append(opts, sizeof opts, " -DTC=1 -DBN=%d -DNS=%d -DTW=%d -DLDM_ADDR=1%s", s->bn,
                   s->ns, s->tw, ctx->info.nv_emulate ? " -DCLATTN_NV_EMU=1" : "");
  clattn__mods_options(d, opts, sizeof opts); /* softcap, ALiBi, user functions, sinks */
  /* decode_tc on NVIDIA: softcap in MUFU operations (cl/common.cl CLATTN_NV_SOFTCAP) */
  if (s->tc && !ctx->info.nv_emulate && d->softcap > 0.0)
    clattn__append(opts, sizeof opts, " -DCLATTN_NV_SOFTCAP=1");
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
    clattn__append(opts, sizeof opts, " -DKVQ=%d -DKVS=%d", (int)d->kv_dtype, (int)d->kv_scale);
  cl_program prog = NULL;
  bool oom = false;
  char *user_src = clattn__user_source(d, &oom);
  if (oom) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy the user source");
  char files[64] = "decode.cl"; /* the variant's (decode_tc: nv_mma.cl first) */
  if (p->variant) clattn__variant_files(p->variant, files, sizeof files);
  clattn_status st = clattn__get_program_user(ctx, files, opts, user_src, &prog);
  free(user_src);
  if (st != CLATTN_SUCCESS) return st;
  const size_t local = s->tc ? clattn__decode_tc_local(params, d) +
                                   clattn__nv_emu_local(&ctx->info, s->wg) /* tests */
                       : s->warp ? clattn__decode_warp_local(params, d)
                                 : clattn__decode_local(params, d);
  if ((st = clattn__create_kernel_sized(ctx, prog, "decode_split", local, &s->split)) !=
      CLATTN_SUCCESS)
    return st;
  if (!s->fuse &&
      (st = clattn__create_kernel(ctx, prog, "decode_merge", &s->merge)) != CLATTN_SUCCESS)
    return st;
  if (d->sinks) {
    cl_int err;
    s->sinks = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              (size_t)d->heads * sizeof(float), (void *)d->sinks, &err);
    if (!s->sinks) return clattn__cl_fail(ctx, "clCreateBuffer", err, "sinks");
  }
  if (!(p->flags & CLATTN_PLAN_LAZY_WORKSPACE) && (st = alloc_ws(p, s)) != CLATTN_SUCCESS)
    return st;
  static const char *kvname[] = {"contiguous", "paged", "paged head-major"};
  snprintf(p->describe, sizeof p->describe,
           "decode %s d=%d: flash-decoding split-KV%s, %d splits%s, kt=%d wg=%d qr=%d (%d query "
           "rows per KV head), %s KV%s%s [%s]",
           clattn_dtype_name(d->dtype), d->head_dim,
           s->tc     ? " (tensor cores, mma.sync)"
           : s->warp ? " (warp streams)"
           : s->allh ? " (all KV heads a work-item)"
                     : "",
           s->splits, params[0] ? "" : " (auto)", s->kt, s->wg, s->qr, group_rows(d),
           kvname[d->kv_layout], d->kv_layout != CLATTN_KV_CONTIGUOUS ? "" : "",
           d->ragged ? ", ragged" : "", origin);
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS)
    clattn__append(p->describe, sizeof p->describe, " page_size=%d", d->page_size);
  if (s->tc)
    clattn__append(p->describe, sizeof p->describe, " bn=%d ns=%d warps=%d%s", s->bn, s->ns, s->tw,
                   s->fuse ? " (merge fused)" : "");
  clattn__describe_mods(d, p->describe, sizeof p->describe);
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
    clattn__append(p->describe, sizeof p->describe, " kv=%s (scales per %s)",
                   clattn_kv_dtype_name(d->kv_dtype), clattn_kv_scale_name(d->kv_scale));

  return CLATTN_SUCCESS;
}

clattn_status clattn__decode_execute(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                                     const cl_event *wait, cl_event *event) {
  clattn_context ctx = p->ctx;
  decode_state *s = p->state;
  const clattn_attention_desc *d = &p->desc;
  cl_int err = CL_SUCCESS;
  if (!s->wl) {
    const clattn_status ast = alloc_ws(p, s);
    if (ast != CLATTN_SUCCESS) return ast;
  }
  const cl_mem ws_lse = s->wl;
  /* Unused tables point at the workspace: never dereferenced then. */
  const cl_mem cuq = b->cu_seqlens_q ? b->cu_seqlens_q : ws_lse;
  const cl_mem cukv = b->cu_seqlens_kv ? b->cu_seqlens_kv : ws_lse;
  const cl_mem sl = b->seqlens_kv ? b->seqlens_kv : ws_lse;
  const cl_mem bt = b->block_table ? b->block_table : ws_lse;
  const int use_sl = b->seqlens_kv != NULL;
  const int G = d->heads / d->kv_heads;
  const float qscale = (float)(d->scale * 1.4426950408889634);
  const int tq = d->ragged ? d->total_q : 0, tkv = d->ragged ? d->total_kv : 0;

  cl_kernel k = s->split;
  cl_uint a = 0;
  const cl_mem m1[5] = {b->q, b->k, b->v, s->ws, ws_lse};
  for (int i = 0; i < 5; i++)
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &m1[i]);
  const cl_mem tabs[4] = {cuq, cukv, sl, bt};
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &tabs[i]);
  err |= clSetKernelArg(k, a++, sizeof(int), &use_sl);
  const clattn_strides *st3[3] = {&p->qs, &p->ks, &p->vs};
  for (int t = 0; t < 3; t++) {
    const cl_long v4[4] = {st3[t]->batch, st3[t]->head, st3[t]->seq, st3[t]->dim};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(k, a++, sizeof(cl_long), &v4[i]);
  }
  const int ints[12] = {
      d->heads,  G,  d->kv_heads, d->seq_q,     d->seq_kv,    s->nrb,
      s->splits, tq, tkv,         d->page_size, d->num_pages, d->max_pages_per_seq};
  for (int i = 0; i < 12; i++)
    err |= clSetKernelArg(k, a++, sizeof(int), &ints[i]);
  err |= clSetKernelArg(k, a++, sizeof(float), &qscale);
  /* quantized K/V: the scales (unused otherwise: the workspace stands in) */
  const cl_mem ksc = b->k_scale ? b->k_scale : ws_lse, vsc = b->v_scale ? b->v_scale : ws_lse;
  const cl_long ssr_arg = clattn__kv_scale_row_stride(d);
  err |= clSetKernelArg(k, a++, sizeof(cl_mem), &ksc);
  err |= clSetKernelArg(k, a++, sizeof(cl_mem), &vsc);
  err |= clSetKernelArg(k, a++, sizeof(cl_long), &ssr_arg);
  const cl_mem user = b->user ? b->user : ws_lse; /* DECODE_USER_ARG (never read without) */
  err |= clSetKernelArg(k, a++, sizeof(cl_mem), &user);
  if (d->bias_type != CLATTN_BIAS_NONE) { /* FLASH_BIAS_ARGS */
    const cl_long b4[4] = {d->bias_strides.batch, d->bias_strides.head, d->bias_strides.seq,
                           d->bias_strides.dim};
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &b->bias);
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(k, a++, sizeof(cl_long), &b4[i]);
  }

  const int write_lse = b->lse != NULL;
  const cl_mem lse_arg = b->lse ? b->lse : ws_lse;
  const cl_long o4[4] = {p->os.batch, p->os.head, p->os.seq, p->os.dim};
  if (s->fuse) { /* DECODE_FUSE_ARGS: the merge's outputs and the counters */
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &b->o);
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &lse_arg);
    err |= clSetKernelArg(k, a++, sizeof(int), &write_lse);
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(k, a++, sizeof(cl_long), &o4[i]);
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &s->cnt);
    if (d->sinks) err |= clSetKernelArg(k, a++, sizeof(cl_mem), &s->sinks);
  } else {
    cl_kernel m = s->merge;
    cl_uint c = 0;
    const cl_mem m2[4] = {s->ws, ws_lse, b->o, lse_arg};
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(m, c++, sizeof(cl_mem), &m2[i]);
    err |= clSetKernelArg(m, c++, sizeof(int), &write_lse);
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(m, c++, sizeof(cl_mem), &tabs[i]);
    err |= clSetKernelArg(m, c++, sizeof(int), &use_sl);
    for (int i = 0; i < 4; i++)
      err |= clSetKernelArg(m, c++, sizeof(cl_long), &o4[i]);
    const int mints[6] = {d->heads, d->seq_q, d->seq_kv, s->splits, tq, tkv};
    for (int i = 0; i < 6; i++)
      err |= clSetKernelArg(m, c++, sizeof(int), &mints[i]);
    if (d->sinks) err |= clSetKernelArg(m, c++, sizeof(cl_mem), &s->sinks); /* DECODE_SINK_ARGS */
  }
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "decode");
  const size_t gws[3] = {(size_t)s->wg, (size_t)d->batch * (size_t)(s->allh ? 1 : d->kv_heads),
                         (size_t)s->nrb * (size_t)s->splits};
  const size_t lws[3] = {(size_t)s->wg, 1, 1};
  /* the merge waits on the split's event (an out-of-order queue runs
   * commands without one in any order) */
  cl_event split_ev = NULL;
  err = clEnqueueNDRangeKernel(ctx->queue, k, 3, NULL, gws, lws, num_wait, wait,
                               s->profile ? &s->ev[0]
                               : s->fuse  ? event
                                          : &split_ev);
  if (err == CL_SUCCESS && s->fuse) {
    if (s->profile && event) {
      *event = s->ev[0];
      clRetainEvent(*event);
    }
  } else if (err == CL_SUCCESS) {
    cl_kernel m = s->merge;
    /* the merge: a work-group per output row */
    const size_t g2[2] = {(size_t)s->mw, (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q};
    const size_t l2[2] = {(size_t)s->mw, 1};
    err =
        clEnqueueNDRangeKernel(ctx->queue, m, 2, NULL, g2, l2, 1,
                               s->profile ? &s->ev[0] : &split_ev, s->profile ? &s->ev[1] : event);
    if (split_ev) clReleaseEvent(split_ev);
    if (err == CL_SUCCESS && s->profile && event) {
      *event = s->ev[1];
      clRetainEvent(*event);
    }
    if (err != CL_SUCCESS)
      return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "decode_merge");
  }
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "decode_split");
  return CLATTN_SUCCESS;
}

/* Per-kernel medians of `reps` executions: the split kernel, the merge and
 * the idle time between them (the merge's start minus the split's end);
 * fused (decode_tc fuse=1): the split kernel alone. */
int clattn__decode_profile(clattn_plan p, const clattn__buffers *b, int reps, const char **names,
                           double *ms) {
  if (!p || !p->state || reps < 1) return -1;
  decode_state *s = p->state;
  size_t n3;
  double *t = NULL;
  if (clattn__mul_size((size_t)reps, 3 * sizeof *t, &n3)) t = malloc(n3);
  if (!t) {
    clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "profile: host allocation failed");
    return -1;
  }
  int n = -1;
  s->profile = true;
  for (int r = 0; r < reps; r++) {
    s->ev[0] = s->ev[1] = NULL;
    const clattn_status st = clattn__decode_execute(p, b, 0, NULL, NULL);
    cl_int err = st == CLATTN_SUCCESS ? clFinish(p->ctx->queue) : CL_SUCCESS;
    cl_ulong t4[4] = {0, 0, 0, 0};
    for (int i = 0; i < (s->fuse ? 2 : 4) && err == CL_SUCCESS && st == CLATTN_SUCCESS; i++)
      err = clGetEventProfilingInfo(s->ev[i / 2],
                                    i % 2 ? CL_PROFILING_COMMAND_END : CL_PROFILING_COMMAND_START,
                                    sizeof t4[i], &t4[i], NULL);
    for (int i = 0; i < 2; i++)
      if (s->ev[i]) clReleaseEvent(s->ev[i]);
    s->ev[0] = s->ev[1] = NULL;
    if (st != CLATTN_SUCCESS) goto done;
    if (err != CL_SUCCESS) {
      clattn__cl_fail(p->ctx, "clGetEventProfilingInfo", err, "decode profile");
      goto done;
    }
    t[r] = (double)(t4[1] - t4[0]) * 1e-6;
    t[reps + r] = (double)(t4[3] - t4[2]) * 1e-6;
    t[2 * reps + r] = t4[2] > t4[1] ? (double)(t4[2] - t4[1]) * 1e-6 : 0.0;
  }
  static const char *const knames[3] = {NULL, "decode_merge", "gap"}; /* 0: the variant's */
  for (n = 0; n < (s->fuse ? 1 : 3); n++) {
    clattn__sort_doubles(t + (size_t)n * (size_t)reps, (size_t)reps);
    names[n] = n ? knames[n] : p->variant->name;
    ms[n] = t[(size_t)n * (size_t)reps + (size_t)reps / 2];
  }
done:
  s->profile = false;
  free(t);
  return n;
}

void clattn__decode_release(clattn_plan p) {
  decode_state *s = p->state;
  if (!s) return;
  if (s->split) clReleaseKernel(s->split);
  if (s->merge) clReleaseKernel(s->merge);
  if (s->ws) clReleaseMemObject(s->ws);
  if (s->wl) clReleaseMemObject(s->wl);
  if (s->cnt) clReleaseMemObject(s->cnt);
  if (s->sinks) clReleaseMemObject(s->sinks);
  free(s);
  p->state = NULL;
}

/* ---- clattn_merge_states, clattn_kv_append ---------------------------------- */

/* The program of the helper kernels for a dtype (no fast math: the public
 * LSE holds infinities). */
static clattn_status helper_kernel(clattn_context ctx, clattn_dtype dt, const char *name,
                                   cl_kernel *out) {
  char opts[128];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DCLATTN_DTYPE=%d", (int)dt);
  cl_program prog = NULL;
  clattn_status st = clattn__get_program(ctx, "decode.cl", opts, &prog);
  if (st != CLATTN_SUCCESS) return st;
  return clattn__create_kernel(ctx, prog, name, out);
}

clattn_status clattn_merge_states(clattn_context ctx, clattn_dtype dtype, int rows, int head_dim,
                                  int num_states, const cl_mem *o_parts, const cl_mem *lse_parts,
                                  cl_mem o, cl_mem lse, cl_uint num_wait, const cl_event *wait,
                                  cl_event *event) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
#define BAD(...) clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)
  if ((unsigned)dtype > CLATTN_DTYPE_BF16) return BAD("dtype: unknown value %d", (int)dtype);
  if (rows < 1) return BAD("rows must be >= 1 (got %d)", rows);
  if (head_dim < 1) return BAD("head_dim must be >= 1 (got %d)", head_dim);
  if (num_states < 1) return BAD("num_states must be >= 1 (got %d)", num_states);
  if (!o_parts || !lse_parts) return BAD("o_parts and lse_parts must not be NULL");
  if ((num_wait > 0) != (wait != NULL))
    return BAD("wait_list must be NULL exactly when num_wait is 0");
  size_t obytes, lbytes;
  if (!clattn__mul3_size((size_t)rows, (size_t)head_dim, clattn__dtype_size(dtype), &obytes) ||
      !clattn__mul_size((size_t)rows, sizeof(float), &lbytes))
    return BAD("rows * head_dim overflows");
#undef BAD
  clattn_status st;
  char name[32];
  for (int i = 0; i < num_states; i++) {
    snprintf(name, sizeof name, "o_parts[%d]", i);
    if ((st = clattn__check_buffer(ctx, o_parts[i], obytes, name)) != CLATTN_SUCCESS) return st;
    snprintf(name, sizeof name, "lse_parts[%d]", i);
    if ((st = clattn__check_buffer(ctx, lse_parts[i], lbytes, name)) != CLATTN_SUCCESS) return st;
  }
  if ((st = clattn__check_buffer(ctx, o, obytes, "o")) != CLATTN_SUCCESS) return st;
  if (lse && (st = clattn__check_buffer(ctx, lse, lbytes, "lse")) != CLATTN_SUCCESS) return st;
  cl_kernel k = NULL;
  if ((st = helper_kernel(ctx, dtype, "merge_pair", &k)) != CLATTN_SUCCESS) return st;
  cl_int err = CL_SUCCESS;
  /* The running LSE: lse, or a scratch buffer when the caller wants none. */
  cl_mem run = lse;
  if (!run) {
    run = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, lbytes, NULL, &err);
    if (err != CL_SUCCESS) {
      clReleaseKernel(k);
      return clattn__cl_fail(ctx, "clCreateBuffer", err, "merge_states scratch");
    }
  }
  /* Step 1 merges parts 0 and 1 (or part 0 with itself weighted by a -inf
   * LSE: a copy) into (o, run); step s merges (o, run) with part s. */
  const size_t gws = ((size_t)rows + 63) / 64 * 64;
  for (int s = 1; s < (num_states > 1 ? num_states : 2) && err == CL_SUCCESS; s++) {
    const bool first = s == 1;
    const cl_mem oa = first ? o_parts[0] : o, la = first ? lse_parts[0] : run;
    const cl_mem ob = num_states > 1 ? o_parts[s] : o_parts[0];
    const cl_mem lb = num_states > 1 ? lse_parts[s] : NULL;
    cl_mem ninf = NULL;
    cl_mem lbb = lb;
    if (!lbb) { /* one state: merge it with an empty one */
      float *h = malloc(lbytes);
      if (!h) {
        err = CL_OUT_OF_HOST_MEMORY;
        break;
      }
      for (int r = 0; r < rows; r++)
        h[r] = -INFINITY;
      ninf = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, lbytes, h, &err);
      free(h);
      if (err != CL_SUCCESS) break;
      lbb = ninf;
    }
    cl_uint a = 0;
    const cl_mem args[6] = {oa, la, ob, lbb, o, run};
    for (int i = 0; i < 6; i++)
      err |= clSetKernelArg(k, a++, sizeof(cl_mem), &args[i]);
    err |= clSetKernelArg(k, a++, sizeof(int), &rows);
    err |= clSetKernelArg(k, a++, sizeof(int), &head_dim);
    const bool last = s + 1 >= (num_states > 1 ? num_states : 2);
    if (err == CL_SUCCESS)
      err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &gws, NULL, first ? num_wait : 0,
                                   first ? wait : NULL, last ? event : NULL);
    if (ninf) clReleaseMemObject(ninf);
  }
  clReleaseKernel(k);
  if (run != lse) clReleaseMemObject(run);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "merge_pair");
  return CLATTN_SUCCESS;
}

clattn_status clattn_kv_append(clattn_context ctx, const clattn_attention_desc *desc, cl_mem k_new,
                               cl_mem v_new, cl_mem slot_mapping, int num_tokens, cl_mem k_pool,
                               cl_mem v_pool, cl_uint num_wait, const cl_event *wait,
                               cl_event *event) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (desc && desc->kv_layout == CLATTN_KV_CONTIGUOUS)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "desc.kv_layout must be PAGED or PAGED_HEAD_MAJOR for clattn_kv_append "
                        "(clattn_kv_append_ex also fills contiguous caches)");
  const clattn_kv_append_args args = {.k_new = k_new,
                                      .v_new = v_new,
                                      .slot_mapping = slot_mapping,
                                      .num_tokens = num_tokens,
                                      .k_cache = k_pool,
                                      .v_cache = v_pool};
  return clattn_kv_append_ex(ctx, desc, &args, num_wait, wait, event);
}

clattn_status clattn_kv_append_ex(clattn_context ctx, const clattn_attention_desc *desc,
                                  const clattn_kv_append_args *args, cl_uint num_wait,
                                  const cl_event *wait, cl_event *event) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
#define BAD(...) clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)
  if (!args) return BAD("args is NULL");
  clattn_attention_desc d;
  clattn_strides qs, ks, vs, os;
  size_t elems[4];
  clattn_status st = clattn__desc_resolve(ctx, desc, &d, &qs, &ks, &vs, &os, elems);
  if (st != CLATTN_SUCCESS) return st;
  const int num_tokens = args->num_tokens;
  if (num_tokens < 0) return BAD("num_tokens must be >= 0 (got %d)", num_tokens);
  if ((num_wait > 0) != (wait != NULL))
    return BAD("wait_list must be NULL exactly when num_wait is 0");
  const bool quant = d.kv_dtype != CLATTN_KV_DTYPE_SAME;
  if (!quant && (args->k_scale || args->v_scale))
    return BAD("k_scale / v_scale are given but desc.kv_dtype is SAME (not quantized)");
  /* the cache's rows of ps tokens: pages, batch entries, or one packed run */
  const bool paged = d.kv_layout != CLATTN_KV_CONTIGUOUS;
  const int ps = paged ? d.page_size : d.ragged ? d.total_kv : d.seq_kv;
  const int nrows = paged ? d.num_pages : d.ragged ? 1 : d.batch;
  const size_t es = clattn__dtype_size(d.dtype), kes = clattn__kv_elem_size(&d);
  size_t nb, sb, kb, vb, scb;
  if (!clattn__mul3_size((size_t)num_tokens * (size_t)d.kv_heads, (size_t)d.head_dim, es, &nb) ||
      (uint64_t)num_tokens * (uint64_t)d.kv_heads > (uint64_t)INT32_MAX ||
      !clattn__mul_size((size_t)num_tokens, 4, &sb) || !clattn__mul_size(elems[1], kes, &kb) ||
      !clattn__mul_size(elems[2], kes, &vb) ||
      !clattn__mul_size(clattn__kv_scale_floats(&d), sizeof(float), &scb))
    return BAD("sizes overflow");
#undef BAD
  if (num_tokens == 0) { /* nothing to copy; still signal the event */
    if (!event) return CLATTN_SUCCESS;
    cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, num_wait, wait, event);
    return err == CL_SUCCESS
               ? CLATTN_SUCCESS
               : clattn__cl_fail(ctx, "clEnqueueMarkerWithWaitList", err, "kv_append");
  }
  if ((st = clattn__check_buffer(ctx, args->k_new, nb, "k_new")) != CLATTN_SUCCESS ||
      (st = clattn__check_buffer(ctx, args->v_new, nb, "v_new")) != CLATTN_SUCCESS ||
      (st = clattn__check_buffer(ctx, args->slot_mapping, sb, "slot_mapping")) != CLATTN_SUCCESS ||
      (st = clattn__check_buffer(ctx, args->k_cache, kb, "k_cache")) != CLATTN_SUCCESS ||
      (st = clattn__check_buffer(ctx, args->v_cache, vb, "v_cache")) != CLATTN_SUCCESS)
    return st;
  if (quant && ((st = clattn__check_buffer(ctx, args->k_scale, scb, "k_scale")) != CLATTN_SUCCESS ||
                (st = clattn__check_buffer(ctx, args->v_scale, scb, "v_scale")) != CLATTN_SUCCESS))
    return st;
  char opts[160];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DCLATTN_DTYPE=%d -DKVQ=%d -DKVS=%d", (int)d.dtype,
           (int)d.kv_dtype, quant ? (int)d.kv_scale : 0);
  cl_program prog = NULL;
  cl_kernel k = NULL;
  if ((st = clattn__get_program(ctx, "decode.cl", opts, &prog)) != CLATTN_SUCCESS ||
      (st = clattn__create_kernel(ctx, prog, "kv_append", &k)) != CLATTN_SUCCESS)
    return st;
  cl_int err = CL_SUCCESS;
  cl_uint a = 0;
  /* unquantized: the slot table stands in for the scales (never read) */
  const cl_mem mems[7] = {args->k_new,
                          args->v_new,
                          args->slot_mapping,
                          args->k_cache,
                          args->v_cache,
                          quant ? args->k_scale : args->slot_mapping,
                          quant ? args->v_scale : args->slot_mapping};
  for (int i = 0; i < 7; i++)
    err |= clSetKernelArg(k, a++, sizeof(cl_mem), &mems[i]);
  const int ints[5] = {d.kv_heads, d.head_dim, ps, nrows, num_tokens};
  for (int i = 0; i < 5; i++)
    err |= clSetKernelArg(k, a++, sizeof(int), &ints[i]);
  const cl_long st9[9] = {ks.batch, ks.head,  ks.seq,
                          ks.dim,   vs.batch, vs.head,
                          vs.seq,   vs.dim,   clattn__kv_scale_row_stride(&d)};
  for (int i = 0; i < 9; i++)
    err |= clSetKernelArg(k, a++, sizeof(cl_long), &st9[i]);
  const size_t lws = 64, gws = ((size_t)num_tokens * (size_t)d.kv_heads + 63) / 64 * 64;
  if (err == CL_SUCCESS)
    err = clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &gws, &lws, num_wait, wait, event);
  clReleaseKernel(k);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "kv_append");
  return CLATTN_SUCCESS;
}
