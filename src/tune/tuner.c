/* tuner.c — clattn_tune(): times a variant's candidates on random data, verifies the winner, stores
 * it. */
#define _POSIX_C_SOURCE 200809L
#include "tune.h"
#include "util.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- host data -------------------------------------------------------------- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fill_random(void *dst, size_t n, clattn_dtype t, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    float f =
        (float)((double)(clattn__splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
    if (t == CLATTN_DTYPE_F32) {
      ((float *)dst)[i] = f;
    } else if (t == CLATTN_DTYPE_F16) {
      ((uint16_t *)dst)[i] = clattn__float_to_half(f);
    } else {
      ((uint16_t *)dst)[i] = clattn__float_to_bf16(f);
    }
  }
}

/* ---- the tuner -------------------------------------------------------------- */

void clattn_tune_request_init(clattn_tune_request *r) {
  if (!r) return;
  memset(r, 0, sizeof *r);
  r->algo = CLATTN_ALGO_FLASH;
  r->dtype = CLATTN_DTYPE_F32;
  r->head_dim = 64;
  r->mask = CLATTN_MASK_NONE;
  r->seq = 4096;
  r->budget_seconds = 60;
  r->seed = 1;
}

typedef struct tune_io {
  clattn_attention_desc desc;
  size_t elems[4];
  void *hq, *hk, *hv;
  cl_mem q, k, v, o;
  bool profiling;
} tune_io;

static void io_free(tune_io *io) {
  free(io->hq);
  free(io->hk);
  free(io->hv);
  if (io->q) clReleaseMemObject(io->q);
  if (io->k) clReleaseMemObject(io->k);
  if (io->v) clReleaseMemObject(io->v);
  if (io->o) clReleaseMemObject(io->o);
  memset(io, 0, sizeof *io);
}

static clattn_status io_setup(clattn_context ctx, tune_io *io, uint64_t seed) {
  size_t es = clattn__dtype_size(io->desc.dtype);
  clattn_status st = clattn_attention_desc_strides(&io->desc, NULL, NULL, NULL, NULL, io->elems);
  if (st != CLATTN_SUCCESS)
    return clattn__fail(ctx, st, "tuning problem is not a valid descriptor");
  void **host[3] = {&io->hq, &io->hk, &io->hv};
  cl_mem *dev[4] = {&io->q, &io->k, &io->v, &io->o};
  for (int t = 0; t < 4; t++) {
    size_t bytes = io->elems[t] * es;
    void *h = NULL;
    if (t < 3) {
      h = malloc(bytes);
      if (!h) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "tuner: %zu host bytes", bytes);
      fill_random(h, io->elems[t], io->desc.dtype, seed * 7919u + (uint64_t)t);
      *host[t] = h;
    }
    cl_int err;
    *dev[t] = clCreateBuffer(ctx->context,
                             t < 3 ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE,
                             bytes, h, &err);
    if (!*dev[t]) return clattn__cl_fail(ctx, "clCreateBuffer", err, "tuner inputs");
  }
  cl_command_queue_properties props = 0;
  clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
  io->profiling = (props & CL_QUEUE_PROFILING_ENABLE) != 0;
  return CLATTN_SUCCESS;
}

/* Runs the plan once and returns its time in ms (profiling events when the
 * queue has them, else wall-clock), or a negative value on failure. */
static double run_once(clattn_context ctx, clattn_plan plan, tune_io *io) {
  cl_event ev = NULL;
  double t0 = now_s();
  if (clattn_plan_execute(plan, io->q, io->k, io->v, io->o, NULL, 0, NULL,
                          io->profiling ? &ev : NULL) != CLATTN_SUCCESS)
    return -1;
  cl_int err = clFinish(ctx->queue);
  double wall = (now_s() - t0) * 1e3;
  double ms = wall;
  if (ev) {
    cl_int status = CL_COMPLETE;
    clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
    cl_ulong a = 0, b = 0;
    if (status < 0)
      err = status;
    else if (clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof a, &a, NULL) ==
                 CL_SUCCESS &&
             clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof b, &b, NULL) ==
                 CL_SUCCESS &&
             b > a)
      ms = (double)(b - a) * 1e-6;
    clReleaseEvent(ev);
  }
  return err == CL_SUCCESS ? ms : -1;
}

/* Builds and times one candidate: one warm-up, then the median of 3 to 7
 * runs (fewer when clearly slower than the best). Negative on failure. */
/* The candidate's plan, built directly with the variant and configuration
 * (no selection). */
static clattn_plan candidate_plan(clattn_context ctx, const clattn_attention_desc *d,
                                  const clattn__variant *v, const int *params) {
  clattn_plan p = NULL, plan = NULL;
  if (clattn__plan_new(ctx, d, 0, false, &p) != CLATTN_SUCCESS) return NULL;
  if (v->check(params, &p->desc, &ctx->info)) {
    clattn__plan_discard(p);
    return NULL;
  }
  return clattn__plan_build(p, v, params, "tuner", NULL, &plan) == CLATTN_SUCCESS ? plan : NULL;
}

static double time_candidate(clattn_context ctx, tune_io *io, const clattn__variant *v,
                             const int *params, double best_ms) {
  clattn_plan plan = candidate_plan(ctx, &io->desc, v, params);
  if (!plan) return -1;
  double warm = run_once(ctx, plan, io);
  double ms = -1;
  if (warm >= 0) {
    int reps = warm < 20 ? 7 : warm < 200 ? 5 : 3;
    double t[7];
    int n = 0;
    for (int r = 0; r < reps; r++) {
      double x = run_once(ctx, plan, io);
      if (x < 0) {
        n = 0;
        break;
      }
      t[n++] = x;
      if (best_ms > 0 && n >= 2 && x > 3 * best_ms) break; /* clearly slower */
    }
    if (n > 0) {
      clattn__sort_doubles(t, (size_t)n);
      ms = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    }
  }
  clattn_plan_release(plan);
  return ms;
}

/* Runs the candidate and compares rows of its output with the float64
 * reference. Returns 1 pass, 0 fail, -1 could not run. */
static int verify_candidate(clattn_context ctx, tune_io *io, const clattn__variant *v,
                            const int *params, double *rel) {
  const clattn_attention_desc *d = &io->desc;
  clattn_plan plan = candidate_plan(ctx, d, v, params);
  if (!plan) return -1;
  size_t es = clattn__dtype_size(d->dtype);
  void *ho = malloc(io->elems[3] * es);
  int result = -1;
  if (ho && run_once(ctx, plan, io) >= 0 &&
      clEnqueueReadBuffer(ctx->queue, io->o, CL_TRUE, 0, io->elems[3] * es, ho, 0, NULL, NULL) ==
          CL_SUCCESS) {
    const double bh = (double)d->batch * d->heads;
    const double per_row = bh * (double)d->seq_kv * d->head_dim;
    int nrows = d->seq_q;
    if (per_row * nrows > (double)(1 << 27)) {
      nrows = (int)((double)(1 << 27) / per_row);
      if (nrows < 2) nrows = 2;
      if (nrows > 16) nrows = 16;
      if (nrows > d->seq_q) nrows = d->seq_q;
    }
    int *rows = malloc((size_t)nrows * sizeof *rows);
    size_t on = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q * (size_t)d->head_dim;
    double *ref = malloc(on * sizeof *ref);
    if (rows && ref) {
      for (int i = 0; i < nrows; i++)
        rows[i] = nrows == 1 ? 0 : (int)((long long)i * (d->seq_q - 1) / (nrows - 1));
      /* The reference of the plan's resolved problem (linear attention:
       * its own reference with the plan's features). */
      const clattn_attention_desc *pd = clattn_plan_desc(plan);
      float *feat = NULL;
      clattn_status rs = CLATTN_ERROR_OUT_OF_MEMORY;
      if (pd->algo != CLATTN_ALGO_LINEAR) {
        rs = clattn_reference_attention(d, io->hq, io->hk, io->hv, ref, NULL,
                                        nrows == d->seq_q ? NULL : rows,
                                        nrows == d->seq_q ? 0 : nrows);
      } else if (pd->feature_map != CLATTN_FEATURE_FAVOR ||
                 ((feat = malloc((size_t)pd->num_features * (size_t)pd->head_dim * sizeof *feat)) !=
                      NULL &&
                  clattn_favor_features(pd->head_dim, pd->num_features, pd->feature_seed, feat) ==
                      CLATTN_SUCCESS)) {
        rs =
            clattn_reference_linear(pd, io->hq, io->hk, io->hv, feat, ref,
                                    nrows == d->seq_q ? NULL : rows, nrows == d->seq_q ? 0 : nrows);
      }
      free(feat);
      if (rs == CLATTN_SUCCESS) {
        double num = 0, den = 0;
        bool nan = false;
        for (int b = 0; b < d->batch * d->heads; b++)
          for (int i = 0; i < nrows; i++)
            for (int k = 0; k < d->head_dim; k++) {
              size_t idx =
                  (((size_t)b * (size_t)d->seq_q) + (size_t)rows[i]) * (size_t)d->head_dim +
                  (size_t)k;
              double x = clattn__load_elem(ho, d->dtype, idx), r = ref[idx];
              if (x != x) nan = true;
              num += (x - r) * (x - r);
              den += r * r;
            }
        *rel = nan ? INFINITY : sqrt(num / (den > 0 ? den : 1));
        double tol = d->dtype == CLATTN_DTYPE_F32   ? 1e-4
                     : d->dtype == CLATTN_DTYPE_F16 ? 5e-3
                                                    : 3e-2;
        result = *rel <= tol ? 1 : 0;
      }
    }
    free(rows);
    free(ref);
  }
  free(ho);
  clattn_plan_release(plan);
  return result;
}

static void utc_date(char *buf, size_t cap) {
  time_t t = time(NULL);
  struct tm tm;
  if (gmtime_r(&t, &tm))
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
  else
    snprintf(buf, cap, "unknown");
}

/* Programs added to the context since `snap` (not in snap, not `also`). */
static cl_program newest_program(clattn_context ctx, const cl_program *snap, int nsnap,
                                 cl_program also) {
  for (int i = ctx->num_programs - 1; i >= 0; i--) {
    cl_program p = ctx->programs[i].program;
    bool old = p == also;
    for (int j = 0; j < nsnap && !old; j++)
      old = snap[j] == p;
    if (!old) return p;
  }
  return NULL;
}

clattn_status clattn__tune_variant(clattn_context ctx, const clattn__variant *v,
                                   const clattn_attention_desc *problem,
                                   const clattn_tune_request *req, clattn_tune_result *res) {
  const double t0 = now_s();
  if (v->num_params == 0)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "clattn_tune: the %s kernel has no tunable parameters", v->name);
  tune_io io;
  memset(&io, 0, sizeof io);
  clattn_attention_desc *d = &io.desc;
  /* The timed problem: the class's representative (head dim at its bucket,
   * seq_q = seq_kv, dense layout) with the problem's family fields. */
  *d = *problem;
  d->layout = CLATTN_LAYOUT_BHSD;
  d->kv_heads = 0;
  d->head_dim = clattn__head_dim_bucket(problem->head_dim);
  if (req->seq > 0) d->seq_q = req->seq;
  d->seq_kv = d->seq_q;
  d->batch = req->batch > 0 ? req->batch : 1;
  if (req->heads > 0) {
    d->heads = req->heads;
  } else {
    /* Enough (batch · heads) for about 8 work-groups of 64 rows per compute
     * unit, within a quarter of global memory and the largest allocation. */
    double want = 512.0 * (ctx->info.compute_units ? ctx->info.compute_units : 1) /
                  ((double)d->batch * d->seq_q);
    d->heads = want < 1 ? 1 : want > 64 ? 64 : (int)ceil(want);
    double per_head = (double)d->batch * d->seq_q * d->head_dim * clattn__dtype_size(d->dtype);
    while (d->heads > 1 && (per_head * d->heads * 4 > (double)ctx->info.global_mem / 4 ||
                            per_head * d->heads > (double)ctx->info.max_alloc))
      d->heads /= 2;
  }
  clattn__tune_class cls = clattn__class_of(v->name, d);
  clattn__class_name(&cls, res->problem_class, sizeof res->problem_class);
  res->batch = d->batch;
  res->heads = d->heads;
  res->seq = d->seq_q;
  res->head_dim = d->head_dim;
  res->best_ms = res->default_ms = -1;
  snprintf(res->variant, sizeof res->variant, "%s", v->name);

  /* The legality checks see the resolved problem (linear: its features). */
  clattn_attention_desc rd;
  clattn_strides qs, ks, vs, os;
  size_t el[4];
  clattn_status st = clattn__desc_resolve(ctx, d, &rd, &qs, &ks, &vs, &os, el);
  if (st != CLATTN_SUCCESS) return st;
  int defp[CLATTN__MAX_PARAMS];
  char label[64];
  bool have_def = clattn__builtin_default(&ctx->info, v, &rd, defp, label, sizeof label);
  if (have_def) clattn__config_format(v, defp, res->default_config, sizeof res->default_config);

  clattn__search s;
  char err[512];
  st = clattn__search_init(&s, v, &rd, &ctx->info, req->space, have_def ? defp : NULL,
                           req->seed ? req->seed : 1,
                           (req->flags & CLATTN_TUNE_EXHAUSTIVE) ? INT_MAX : 48, err, sizeof err);
  if (st != CLATTN_SUCCESS) return clattn__fail(ctx, st, "clattn_tune: %s", err);
  res->space_size = s.num;
  st = io_setup(ctx, &io, req->seed ? req->seed : 1);
  if (st != CLATTN_SUCCESS) {
    clattn__search_free(&s);
    io_free(&io);
    return st;
  }

  /* Programs that exist before tuning stay; a rejected candidate's program
   * is released as soon as it is measured, the best one is kept. */
  int nsnap = ctx->num_programs;
  cl_program snap[CLATTN_MAX_PROGRAMS + 1];
  for (int i = 0; i < nsnap; i++)
    snap[i] = ctx->programs[i].program;
  cl_program best_prog = NULL;
  const bool was_tuning = ctx->tuning;
  ctx->tuning = true;

  const double budget = req->budget_seconds > 0 ? req->budget_seconds : 0;
  char cfg[600], best_cfg[600] = "";
  double spent_cand = 0;
  int stop = 0;
  while (!stop) {
    double el_s = now_s() - t0;
    if (s.done > 0 && el_s >= budget) break;
    int idx = clattn__search_next(&s, budget > 0 ? el_s / budget : 1.0);
    if (idx < 0) break;
    const char *phase = s.phase;
    snprintf(cfg, sizeof cfg, "%s:", v->name);
    clattn__config_format(v, s.cfg + (size_t)idx * (size_t)s.np, cfg + strlen(cfg),
                          sizeof cfg - strlen(cfg));
    double c0 = now_s();
    double best_before = s.best >= 0 ? s.ms[s.best] : -1;
    double ms = time_candidate(ctx, &io, v, s.cfg + (size_t)idx * (size_t)s.np, best_before);
    spent_cand += now_s() - c0;
    int prev_best = s.best;
    clattn__search_report(&s, idx, ms);
    if (ms < 0) res->failed++;
    if (idx == 0 && s.has_default) res->default_ms = ms;
    if (s.best != prev_best) {
      cl_program np_ = newest_program(ctx, snap, nsnap, best_prog);
      if (np_) best_prog = np_;
      snprintf(best_cfg, sizeof best_cfg, "%s", cfg);
    }
    snap[nsnap] = best_prog;
    clattn__prune_programs(ctx, snap, nsnap + (best_prog ? 1 : 0));
    if (req->progress) {
      clattn_tune_progress pr;
      memset(&pr, 0, sizeof pr);
      pr.done = s.done;
      pr.space_size = s.num;
      pr.elapsed_s = now_s() - t0;
      double avg = spent_cand / s.done, left = budget - pr.elapsed_s;
      if (left < 0) left = 0;
      int afford = (int)(left / (avg > 0 ? avg : 1e-3));
      pr.total = s.done + (afford < s.num - s.done ? afford : s.num - s.done);
      pr.eta_s = (pr.total - s.done) * avg;
      pr.best_ms = s.best >= 0 ? s.ms[s.best] : -1;
      pr.best_config = best_cfg;
      pr.config = cfg;
      pr.ms = ms;
      pr.phase = phase;
      stop = req->progress(&pr, req->user) != 0;
    }
  }
  res->tried = s.done;
  res->exhaustive = s.done == s.num;

  /* Verify in order of speed until one passes (at most three tries). */
  int order[3], norder = 0;
  for (int k = 0; k < 3; k++) {
    int bi = -1;
    for (int i = 0; i < s.num; i++) {
      bool used = false;
      for (int j = 0; j < norder; j++)
        used |= order[j] == i;
      if (!used && s.st[i] == 2 && s.ms[i] >= 0 && (bi < 0 || s.ms[i] < s.ms[bi])) bi = i;
    }
    if (bi >= 0) order[norder++] = bi;
  }
  int winner = -1;
  for (int k = 0; k < norder && winner < 0; k++) {
    snprintf(cfg, sizeof cfg, "%s:", v->name);
    clattn__config_format(v, s.cfg + (size_t)order[k] * (size_t)s.np, cfg + strlen(cfg),
                          sizeof cfg - strlen(cfg));
    double rel = INFINITY;
    int ok = verify_candidate(ctx, &io, v, s.cfg + (size_t)order[k] * (size_t)s.np, &rel);
    res->max_rel_error = rel;
    if (req->progress) {
      clattn_tune_progress pr;
      memset(&pr, 0, sizeof pr);
      pr.done = pr.total = s.done;
      pr.space_size = s.num;
      pr.elapsed_s = now_s() - t0;
      pr.eta_s = 0;
      pr.best_ms = s.ms[order[k]];
      pr.best_config = cfg;
      pr.config = cfg;
      pr.ms = ok == 1 ? s.ms[order[k]] : -1;
      pr.phase = "verify";
      req->progress(&pr, req->user);
    }
    if (ok == 1) winner = order[k];
  }
  /* Keep the winner's program (the plan that uses it finds it in the
   * context; on PoCL its binary is cached when the context releases it). */
  ctx->tuning = was_tuning;
  snap[nsnap] = best_prog;
  clattn__prune_programs(ctx, snap, nsnap + (winner >= 0 && winner == s.best && best_prog ? 1 : 0));
  io_free(&io);
  res->elapsed_s = now_s() - t0;
  if (winner < 0) {
    clattn__search_free(&s);
    if (norder == 0)
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "clattn_tune: no candidate of %s built and ran on this device (%d tried)",
                          res->problem_class, res->tried);
    return clattn__fail(ctx, CLATTN_ERROR_VERIFY,
                        "clattn_tune: the fastest candidates of %s failed verification against "
                        "the reference (relative error %.3g)",
                        res->problem_class, res->max_rel_error);
  }
  clattn__config_format(v, s.cfg + (size_t)winner * (size_t)s.np, res->best_config,
                        sizeof res->best_config);
  res->best_ms = s.ms[winner];
  res->verified = 1;
  res->speedup = res->default_ms > 0 && res->best_ms > 0 ? res->default_ms / res->best_ms : 0;
  clattn__search_free(&s);

  ctx->msg[0] = 0;
  if (req->flags & CLATTN_TUNE_NO_STORE) return CLATTN_SUCCESS;
  clattn__tunedb_entry e;
  memset(&e, 0, sizeof e);
  snprintf(e.kernel, sizeof e.kernel, "%s", v->name);
  if (clattn__source_hash(ctx, v, e.src) != CLATTN_SUCCESS)
    return CLATTN_ERROR_IO; /* message set by clattn__kernel_source */
  e.dtype = cls.dtype;
  e.head_dim = cls.head_dim;
  e.mask = cls.mask;
  e.seq = cls.seq;
  snprintf(e.config, sizeof e.config, "%s", res->best_config);
  e.ms = res->best_ms;
  e.default_ms = res->default_ms;
  e.verified = 1;
  utc_date(e.date, sizeof e.date);
  char path[4200];
  if (!clattn__tunedb_path(ctx, path, sizeof path)) return CLATTN_SUCCESS; /* caches off */
  st = clattn__tunedb_store(ctx, &e, 1);
  if (st == CLATTN_SUCCESS) res->stored = 1;
  return st;
}

clattn_status clattn_tune(clattn_context ctx, const clattn_tune_request *req,
                          clattn_tune_result *res) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!req || !res)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "clattn_tune: %s is NULL",
                        !req ? "req" : "result");
  memset(res, 0, sizeof *res);
  if (req->algo != CLATTN_ALGO_AUTO && req->algo != CLATTN_ALGO_FLASH &&
      req->algo != CLATTN_ALGO_LINEAR)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "clattn_tune: req.algo %d has no tunable kernel (flash and linear have)",
                        (int)req->algo);
  if ((int)req->dtype < 0 || req->dtype > CLATTN_DTYPE_BF16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "clattn_tune: req.dtype %d unknown",
                        (int)req->dtype);
  if (req->head_dim < 1 || req->head_dim > 256)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_tune: req.head_dim %d outside 1..256", req->head_dim);
  if (req->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(req->mask))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "clattn_tune: req.mask %d: only none and causal are tunable",
                        (int)req->mask);
  if (req->seq < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "clattn_tune: req.seq %d < 1",
                        req->seq);
  if (req->batch < 0 || req->heads < 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_tune: req.batch and req.heads must be >= 0 (0 = automatic)");
  if (!(req->budget_seconds >= 0) || !isfinite(req->budget_seconds))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_tune: req.budget_seconds must be finite and >= 0");
  if (req->flags & ~(unsigned)(CLATTN_TUNE_NO_STORE | CLATTN_TUNE_EXHAUSTIVE))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "clattn_tune: unknown flags 0x%x",
                        req->flags);
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.algo = req->algo == CLATTN_ALGO_AUTO ? CLATTN_ALGO_FLASH : req->algo;
  d.dtype = req->dtype;
  d.head_dim = clattn__head_dim_bucket(req->head_dim);
  d.mask = req->mask;
  d.seq_q = d.seq_kv = req->seq;
  d.feature_map = req->feature_map;
  d.num_features = req->num_features;
  /* The variant plans would choose (the selector's applicable list), or the
   * one the request names. */
  clattn_attention_desc rd;
  clattn_strides qs, ks, vs, os;
  size_t el[4];
  clattn_status st = clattn__desc_resolve(ctx, &d, &rd, &qs, &ks, &vs, &os, el);
  if (st != CLATTN_SUCCESS) return st;
  const clattn__variant *cand[16];
  char why_not[1024];
  int n = clattn__applicable_variants(&ctx->info, &rd, CLATTN__FORWARD, ctx->settings.portable,
                                      cand, 16, why_not, sizeof why_not);
  const clattn__variant *v = NULL;
  if (req->variant && *req->variant) {
    for (int i = 0; i < n && !v; i++)
      if (!strcmp(cand[i]->name, req->variant)) v = cand[i];
    if (!v)
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "clattn_tune: req.variant '%s' is not a kernel that applies here (%s)",
                          req->variant, why_not[0] ? why_not : "another family");
  } else {
    for (int i = 0; i < n && !v; i++)
      if (cand[i]->num_params > 0) v = cand[i];
    if (!v)
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "clattn_tune: no tunable kernel applies: %s", why_not);
  }
  return clattn__tune_variant(ctx, v, &d, req, res);
}
