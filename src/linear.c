/* linear.c — host side of the linear family: configuration, features, workspace, launches. */
#include "linear.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct linear_state {
  cl_kernel kstate, kscan, kout;
  cl_mem wt;     /* FAVOR+: ω transposed, head_dim × F floats */
  cl_mem states; /* B·Hk·nch·F·(D+1) floats */
  cl_mem cmax;   /* FAVOR+: B·Hk·nch chunk maxima */
  cl_mem pmax;   /* FAVOR+: B·Hk·nch prefix (or total) maxima */
  cl_mem kfeat;  /* FAVOR+ causal: B·Hk·Nk·F log-features of the keys */
  size_t states_bytes, max_bytes, wt_bytes, kfeat_bytes;
  clattn__linear_cfg cfg;
  int F, nch, ncolt, nqb, scan_wg;
  bool out_of_order;
} linear_state;

static const char *map_name(clattn_feature_map m) {
  switch (m) {
  case CLATTN_FEATURE_ELU1: return "elu+1";
  case CLATTN_FEATURE_RELU: return "relu";
  case CLATTN_FEATURE_FAVOR: return "favor+";
  }
  return "?";
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* Local memory (bytes) the two tiled kernels declare for a configuration. */
static void local_bytes(const clattn__linear_cfg *c, int F, bool favor, bool causal, size_t *state,
                        size_t *out) {
  const size_t fp = (size_t)round_up(F, c->tf), ldf = fp + 1;
  size_t s = (size_t)c->bks * ldf + (size_t)c->bks * (size_t)c->bd;
  if (favor) s += (size_t)c->bks;
  const size_t bx = (size_t)(c->bq > c->bk ? c->bq : c->bk);
  size_t o = (size_t)c->bq * ldf;
  if (favor) o += bx;
  if (causal)
    o += fp * (size_t)(c->bk + 1) + (size_t)c->bq * (size_t)(c->bk + 1) +
         (size_t)c->bk * (size_t)c->bd;
  *state = s * sizeof(float);
  *out = o * sizeof(float);
}

/* NULL when the configuration is legal on the device, else a static reason. */
static const char *cfg_check(const clattn__linear_cfg *c, const clattn__device_info *info, int D,
                             int F, bool favor, bool causal) {
  if (c->chunk < 1 || c->bd < 1 || c->bq < 1 || c->bk < 1 || c->bks < 1 || c->tf < 1 || c->tr < 1 ||
      c->tc < 1)
    return "parameters must be >= 1";
  if (c->bd % c->tc) return "bd must be a multiple of tc";
  if (c->bq % c->tr) return "bq must be a multiple of tr";
  if (c->bk % c->tc) return "bk must be a multiple of tc";
  if ((size_t)(c->tf * c->tc) > info->max_wg || (size_t)(c->tr * c->tc) > info->max_wg)
    return "tf*tc or tr*tc exceeds the device's work-group size";
  const int rf = round_up(F, c->tf) / c->tf, rc = c->bd / c->tc, rq = c->bq / c->tr;
  if (!info->is_cpu && (rf * rc > 128 || rq * rc > 128 || rq * (c->bk / c->tc) > 64))
    return "per-item accumulators exceed the register budget";
  if (rf * rc > 1024 || rq * rc > 1024 || rq * (c->bk / c->tc) > 1024)
    return "per-item accumulators exceed 1024";
  size_t ls, lo;
  local_bytes(c, F, favor, causal, &ls, &lo);
  if (ls > info->local_mem || lo > info->local_mem)
    return "local memory exceeds the device's limit";
  return NULL;
}

/* Built-in default: work-item grids and tiles per device class, the causal
 * chunk, then tiles halved until the configuration is legal.
 * Work-items run along the value columns fastest (tc), so that on GPUs a
 * warp reads contiguous local memory and on CPUs PoCL's vectoriser (one
 * lane per work-item) gets unit-stride loads and broadcasts; each item keeps
 * a register tile of about 16 accumulators (RF×RCOL, RQ×RCOL). */
static bool cfg_default(const clattn__device_info *info, const clattn_attention_desc *d, int F,
                        clattn__linear_cfg *c) {
  const bool favor = d->feature_map == CLATTN_FEATURE_FAVOR;
  const bool causal = d->mask == CLATTN_MASK_CAUSAL;
  const int D = d->head_dim;
  c->tc = 16;
  c->bd = round_up(D < 64 ? D : 64, c->tc);
  c->bk = 32;
  c->bks = 32;
  if (info->is_cpu) {
    c->tf = 16;
    c->tr = 4;
    c->bq = 16;
    c->chunk = 32;
  } else {
    /* Measured on an H200 (B=4, H=16, N=16384, d=64): tr=8 (4 rows per item)
     * and bks=16 beat tr=16 / bks=32 by 5-15% in every mode. */
    c->tf = 16;
    c->tr = 8;
    c->bq = 32;
    c->bks = 16;
    c->chunk = 64;
  }
  while (((size_t)(c->tf * c->tc) > info->max_wg || (size_t)(c->tr * c->tc) > info->max_wg) &&
         c->tc > 1) {
    c->tc /= 2;
    c->bd = round_up(D < c->bd ? D : c->bd, c->tc);
  }
  while ((size_t)(c->tf * c->tc) > info->max_wg && c->tf > 1)
    c->tf /= 2;
  while ((size_t)(c->tr * c->tc) > info->max_wg && c->tr > 1)
    c->tr /= 2;
  if (c->bq % c->tr) c->bq = round_up(c->bq, c->tr);
  for (;;) {
    const char *why = cfg_check(c, info, D, F, favor, causal);
    if (!why) return true;
    size_t ls, lo;
    local_bytes(c, F, favor, causal, &ls, &lo);
    if (ls > info->local_mem && c->bks > 1)
      c->bks /= 2;
    else if (lo > info->local_mem && c->bk > c->tc)
      c->bk = c->bk / 2 / c->tc * c->tc;
    else if (lo > info->local_mem && c->bq > c->tr)
      c->bq = c->bq / 2 / c->tr * c->tr;
    else if (c->bd > c->tc)
      c->bd = round_up(c->bd / 2, c->tc);
    else if (c->tf < 64 && (size_t)(2 * c->tf * c->tc) <= info->max_wg)
      c->tf *= 2;
    else
      return false;
    if (c->bk < c->tc) c->bk = c->tc;
    if (c->bq < c->tr) c->bq = c->tr;
  }
}

static clattn_status make_buffer(clattn_plan p, size_t bytes, const char *what, cl_mem *out) {
  cl_int err;
  *out = clCreateBuffer(p->ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (!*out) {
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_OUT_OF_HOST_MEMORY || err == CL_INVALID_BUFFER_SIZE)
      return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "linear attention needs a %zu-byte %s; clCreateBuffer failed with %s",
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
  if (st == CLATTN_SUCCESS && s->kfeat_bytes)
    st = make_buffer(p, s->kfeat_bytes, "key-feature workspace", &s->kfeat);
  return st;
}

/* Draws ω for `seed` and writes it (transposed, head_dim × F) to s->wt. */
static clattn_status upload_features(clattn_plan p, uint64_t seed) {
  linear_state *s = p->state;
  const int D = p->desc.head_dim, F = s->F;
  float *w = malloc((size_t)F * (size_t)D * sizeof(float));
  float *wt = malloc((size_t)F * (size_t)D * sizeof(float));
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
  for (int f = 0; f < F; f++)
    for (int x = 0; x < D; x++)
      wt[(size_t)x * (size_t)F + f] = w[(size_t)f * (size_t)D + x];
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

static clattn_status linear_create(clattn_plan p) {
  clattn_context ctx = p->ctx;
  clattn_attention_desc *d = &p->desc;
  int F = 0;
  clattn_status st = clattn__linear_resolve(ctx, d, &F);
  if (st != CLATTN_SUCCESS) return st;
  const bool favor = d->feature_map == CLATTN_FEATURE_FAVOR;
  const bool causal = d->mask == CLATTN_MASK_CAUSAL;
  d->num_features = F;
  linear_state *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate linear state");
  p->state = s;
  s->F = F;

  const int D = d->head_dim;
  const char *origin = "built-in default";
  if (!cfg_default(&ctx->info, d, F, &s->cfg))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "no linear-attention configuration fits this device for head_dim %d and "
                        "%d features (local memory %llu bytes, max work-group %zu)",
                        D, F, (unsigned long long)ctx->info.local_mem, ctx->info.max_wg);
  /* A forced configuration: clattn_plan_create_with_config's string, else
   * $CLATTN_LINEAR_OVERRIDE; any subset of the parameters, the rest default. */
  const char *what = "config", *ov = p->config;
  if (ov && *ov) {
    origin = p->config_origin ? p->config_origin : "override (clattn_plan_create_with_config)";
  } else {
    what = "CLATTN_LINEAR_OVERRIDE";
    ov = getenv("CLATTN_LINEAR_OVERRIDE");
    origin = "override (CLATTN_LINEAR_OVERRIDE)";
  }
  bool chunk_given = false;
  if (ov && *ov) {
    clattn__linear_cfg c = s->cfg;
    c.chunk = 0;
    if (clattn__linear_cfg_parse(ov, &c) != CLATTN_SUCCESS)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                          "%s='%s' is not a linear configuration (expected any of e.g. "
                          "'chunk=16,bq=32,bk=32,bks=16,bd=64,tf=16,tr=4,tc=16')",
                          what, ov);
    chunk_given = c.chunk > 0;
    if (!chunk_given) c.chunk = s->cfg.chunk;
    const char *why = cfg_check(&c, &ctx->info, D, F, favor, causal);
    if (why)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                          "%s='%s' is not legal on this device: %s", what, ov, why);
    s->cfg = c;
  } else {
    origin = "built-in default";
  }

  /* Chunking of the keys. Causal: the chunk is the prefix granularity.
   * Non-causal: split so that enough work-groups exist, at least 64 keys each. */
  const size_t bhk = (size_t)d->batch * (size_t)d->kv_heads;
  s->ncolt = (D + s->cfg.bd - 1) / s->cfg.bd;
  if (!causal && !chunk_given) {
    size_t groups = bhk * (size_t)s->ncolt;
    size_t want = 4 * (size_t)(ctx->info.compute_units ? ctx->info.compute_units : 1);
    size_t splits = groups >= want ? 1 : (want + groups - 1) / groups;
    size_t ck = ((size_t)d->seq_kv + splits - 1) / splits;
    if (ck < 64) ck = 64;
    ck = (ck + (size_t)s->cfg.bks - 1) / (size_t)s->cfg.bks * (size_t)s->cfg.bks;
    s->cfg.chunk = (int)ck; /* not clamped to seq_kv: bks, a -D, stays the same */
  }
  const size_t per_state = (size_t)F * (size_t)(D + 1) * sizeof(float);
  const cl_ulong limit =
      ctx->info.max_alloc < ctx->info.global_mem ? ctx->info.max_alloc : ctx->info.global_mem;
  for (;;) {
    s->nch = (d->seq_kv + s->cfg.chunk - 1) / s->cfg.chunk;
    const size_t n = bhk * (size_t)s->nch;
    if (n > SIZE_MAX / per_state)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "linear attention states exceed the address space");
    s->states_bytes = n * per_state;
    /* A causal default chunk grows until the states take at most half of
     * what one buffer may hold. */
    if (!causal || chunk_given || (cl_ulong)s->states_bytes <= limit / 2 ||
        s->cfg.chunk >= d->seq_kv)
      break;
    s->cfg.chunk *= 2;
  }
  if ((cl_ulong)s->states_bytes > limit && !p->estimate)
    return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "linear attention needs a %zu-byte state workspace (B*Hk*chunks*F*(D+1)*4 "
                        "= %zu*%d*%d*%d*4) but the device allows at most %llu bytes in one buffer; "
                        "use a larger chunk",
                        s->states_bytes, bhk, s->nch, F, D + 1, (unsigned long long)limit);
  if (s->cfg.bks > s->cfg.chunk) s->cfg.bks = s->cfg.chunk;
  s->max_bytes = favor ? bhk * (size_t)s->nch * sizeof(float) : 0;
  s->wt_bytes = favor ? (size_t)F * (size_t)D * sizeof(float) : 0;
  s->nqb = (d->seq_q + s->cfg.bq - 1) / s->cfg.bq;
  s->scan_wg = 64;
  while ((size_t)s->scan_wg > ctx->info.max_wg)
    s->scan_wg /= 2;
  /* FAVOR+ causal keeps the keys' log-features for the in-chunk part. */
  const size_t chp = (size_t)((s->cfg.chunk + s->cfg.bks - 1) / s->cfg.bks * s->cfg.bks);
  s->kfeat_bytes = favor && causal ? bhk * (size_t)s->nch * chp * (size_t)F * sizeof(float) : 0;
  if ((cl_ulong)s->kfeat_bytes > limit && !p->estimate)
    return clattn__fail(
        ctx, CLATTN_ERROR_OUT_OF_MEMORY,
        "causal FAVOR+ needs a %zu-byte key-feature workspace (about B*Hk*seq_kv*m*4) "
        "but the device allows at most %llu bytes in one buffer",
        s->kfeat_bytes, (unsigned long long)limit);
  p->workspace_bytes = s->states_bytes + 2 * s->max_bytes + s->wt_bytes + s->kfeat_bytes;
  if (p->estimate) return CLATTN_SUCCESS; /* sizing only */

  cl_command_queue_properties qp = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof qp, &qp, NULL);
  s->out_of_order = (qp & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;

  char opts[512];
  snprintf(opts, sizeof opts,
           "-cl-std=CL1.2 -cl-mad-enable -DCLATTN_DTYPE=%d -DD=%d -DF=%d -DMAP=%d -DCAUSAL=%d "
           "-DTF=%d -DTR=%d -DTC=%d -DBD=%d -DBQ=%d -DBK=%d -DBKS=%d -DUNROLL_HINTS=%d",
           (int)d->dtype, D, F, (int)d->feature_map, causal ? 1 : 0, s->cfg.tf, s->cfg.tr,
           s->cfg.tc, s->cfg.bd, s->cfg.bq, s->cfg.bk, s->cfg.bks, ctx->info.is_cpu ? 0 : 1);
  cl_program prog = NULL;
  st = clattn__get_program(ctx, "linear.cl", opts, &prog);
  if (st == CLATTN_SUCCESS) st = clattn__create_kernel(ctx, prog, "lin_state", &s->kstate);
  if (st == CLATTN_SUCCESS) st = clattn__create_kernel(ctx, prog, "lin_scan", &s->kscan);
  if (st == CLATTN_SUCCESS) st = clattn__create_kernel(ctx, prog, "lin_out", &s->kout);
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
  char seedbuf[64] = "";
  if (favor)
    snprintf(seedbuf, sizeof seedbuf, " m=%d seed=0x%llx", F, (unsigned long long)d->feature_seed);
  snprintf(p->describe, sizeof p->describe,
           "linear %s f32 d=%d%s %s: chunk=%d (%d chunks) bd=%d bq=%d bk=%d bks=%d tf=%d tr=%d "
           "tc=%d, "
           "workspace %zu bytes [%s]",
           map_name(d->feature_map), D, seedbuf, causal ? "causal" : "non-causal", s->cfg.chunk,
           s->nch, s->cfg.bd, s->cfg.bq, s->cfg.bk, s->cfg.bks, s->cfg.tf, s->cfg.tr, s->cfg.tc,
           p->workspace_bytes, origin);
  return CLATTN_SUCCESS;
}

static cl_int set_strides(cl_kernel k, int *a, const clattn_strides *st) {
  cl_long v4[4] = {st->batch, st->head, st->seq, st->dim};
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < 4; i++)
    err |= clSetKernelArg(k, (*a)++, sizeof(cl_long), &v4[i]);
  return err;
}

static clattn_status linear_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                    cl_mem lse, cl_uint num_wait, const cl_event *wait,
                                    cl_event *event) {
  linear_state *s = p->state;
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  if (lse)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "lse must be NULL for linear attention: it has no log-sum-exp");
  if (!s->states) {
    clattn_status st = alloc_workspace(p);
    if (st != CLATTN_SUCCESS) return st;
  }
  /* √scale on keys, sign(scale)·√|scale| on queries: φ(q')ᵀφ(k') with
   * q'ᵀk' = scale·qᵀk. */
  const double rs = sqrt(fabs(d->scale));
  const float sqk = (float)rs, sqq = (float)(d->scale < 0 ? -rs : rs);
  const cl_mem wt = s->wt ? s->wt : s->states; /* never read unless FAVOR+ */
  const cl_mem cm = s->cmax ? s->cmax : s->states, pm = s->pmax ? s->pmax : s->states;
  const cl_mem kf = s->kfeat ? s->kfeat : s->states;
  const int Hk = d->kv_heads, G = d->heads / d->kv_heads;
  const size_t nts = (size_t)(s->cfg.tf * s->cfg.tc), nto = (size_t)(s->cfg.tr * s->cfg.tc);
  const size_t bhk = (size_t)d->batch * (size_t)Hk;
  cl_command_queue queue = ctx->queue;
  cl_int err = CL_SUCCESS;
  int a = 0;
  cl_kernel kr = s->kstate;
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &k);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &wt);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &cm);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &kf);
  err |= set_strides(kr, &a, &p->ks);
  err |= set_strides(kr, &a, &p->vs);
  err |= clSetKernelArg(kr, a++, sizeof(int), &Hk);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_kv);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->nch);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->cfg.chunk);
  err |= clSetKernelArg(kr, a++, sizeof(float), &sqk);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_state");
  size_t gws[3] = {(size_t)s->nch * nts, (size_t)s->ncolt, bhk};
  size_t lws[3] = {nts, 1, 1};
  err = clEnqueueNDRangeKernel(queue, kr, 3, NULL, gws, lws, num_wait, wait, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "lin_state");
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
  kr = s->kscan;
  a = 0;
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &cm);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &pm);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->nch);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_scan");
  const size_t elems = (size_t)s->F * (size_t)(d->head_dim + 1);
  size_t sg[2] = {(elems + (size_t)s->scan_wg - 1) / (size_t)s->scan_wg * (size_t)s->scan_wg, bhk};
  size_t sl[2] = {(size_t)s->scan_wg, 1};
  err = clEnqueueNDRangeKernel(queue, kr, 2, NULL, sg, sl, 0, NULL, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "lin_scan");
  if (s->out_of_order) clEnqueueBarrierWithWaitList(queue, 0, NULL, NULL);
  kr = s->kout;
  a = 0;
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &q);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &k);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &v);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &o);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &wt);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &s->states);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &pm);
  err |= clSetKernelArg(kr, a++, sizeof(cl_mem), &kf);
  err |= set_strides(kr, &a, &p->qs);
  err |= set_strides(kr, &a, &p->ks);
  err |= set_strides(kr, &a, &p->vs);
  err |= set_strides(kr, &a, &p->os);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->heads);
  err |= clSetKernelArg(kr, a++, sizeof(int), &G);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_q);
  err |= clSetKernelArg(kr, a++, sizeof(int), &d->seq_kv);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->nch);
  err |= clSetKernelArg(kr, a++, sizeof(int), &s->cfg.chunk);
  err |= clSetKernelArg(kr, a++, sizeof(float), &sqq);
  err |= clSetKernelArg(kr, a++, sizeof(float), &sqk);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clSetKernelArg", err, "lin_out");
  size_t og[3] = {(size_t)s->nqb * nto, (size_t)s->ncolt, (size_t)d->batch * (size_t)d->heads};
  size_t ol[3] = {nto, 1, 1};
  err = clEnqueueNDRangeKernel(queue, kr, 3, NULL, og, ol, 0, NULL, event);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clEnqueueNDRangeKernel", err, "lin_out");
  return CLATTN_SUCCESS;
}

static void linear_release(clattn_plan p) {
  linear_state *s = p->state;
  if (!s) return;
  if (s->kstate) clReleaseKernel(s->kstate);
  if (s->kscan) clReleaseKernel(s->kscan);
  if (s->kout) clReleaseKernel(s->kout);
  if (s->wt) clReleaseMemObject(s->wt);
  if (s->states) clReleaseMemObject(s->states);
  if (s->cmax) clReleaseMemObject(s->cmax);
  if (s->pmax) clReleaseMemObject(s->pmax);
  if (s->kfeat) clReleaseMemObject(s->kfeat);
  free(s);
  p->state = NULL;
}

const clattn__family clattn__family_linear = {"linear", linear_create, linear_execute,
                                              linear_release};

clattn_status clattn_plan_redraw_features(clattn_plan p, uint64_t seed) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  p->ctx->msg[0] = 0;
  if (p->family != &clattn__family_linear || p->desc.feature_map != CLATTN_FEATURE_FAVOR)
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
