/* tune.c — search spaces, problem classes, the candidate search, the tuner (clattn_tune) and the
 * plan-time configuration choice. */
#define _POSIX_C_SOURCE 200809L
#include "tune.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- registry of tunable kernels ----------------------------------------- */

const clattn__kernel_space *const clattn__kernel_spaces[] = {&clattn__flash_space,
                                                             &clattn__flash_tc_space, NULL};

const clattn__kernel_space *clattn__find_space(const char *name) {
  for (int i = 0; clattn__kernel_spaces[i]; i++)
    if (!strcmp(clattn__kernel_spaces[i]->name, name)) return clattn__kernel_spaces[i];
  return NULL;
}

clattn__space_limits clattn__space_limits_of(const clattn__device_info *info) {
  clattn__space_limits l;
  l.local_mem = (size_t)info->local_mem;
  l.max_wg = info->max_wg;
  l.cpu = info->is_cpu ? 1 : 0;
  return l;
}

void clattn__config_format(const clattn__kernel_space *sp, const int *params, char *buf,
                           size_t cap) {
  buf[0] = 0;
  for (int i = 0; i < sp->num_params; i++)
    clattn__append(buf, cap, "%s%s=%d", i ? "," : "", sp->param_names[i], params[i]);
}

static int param_index(const clattn__kernel_space *sp, const char *name, size_t len) {
  for (int i = 0; i < sp->num_params; i++)
    if (strlen(sp->param_names[i]) == len && !strncmp(sp->param_names[i], name, len)) return i;
  return -1;
}

clattn_status clattn__config_parse(const clattn__kernel_space *sp, const char *s, int *params) {
  int got[CLATTN__MAX_PARAMS] = {0};
  int vals[CLATTN__MAX_PARAMS] = {0};
  size_t nl = strlen(sp->name);
  if (!strncmp(s, sp->name, nl) && s[nl] == ':') s += nl + 1;
  while (*s) {
    const char *eq = strchr(s, '=');
    if (!eq) return CLATTN_ERROR_INVALID_ARGUMENT;
    int pi = param_index(sp, s, (size_t)(eq - s));
    if (pi < 0 || got[pi]) return CLATTN_ERROR_INVALID_ARGUMENT;
    char *end;
    long v = strtol(eq + 1, &end, 10);
    if (end == eq + 1 || v < 1 || v > 1 << 20) return CLATTN_ERROR_INVALID_ARGUMENT;
    vals[pi] = (int)v;
    got[pi] = 1;
    s = end;
    if (*s == ',') {
      s++;
      if (!*s) return CLATTN_ERROR_INVALID_ARGUMENT;
    } else if (*s) {
      return CLATTN_ERROR_INVALID_ARGUMENT;
    }
  }
  for (int i = 0; i < sp->num_params; i++)
    if (!got[i]) return CLATTN_ERROR_INVALID_ARGUMENT;
  memcpy(params, vals, (size_t)sp->num_params * sizeof *params);
  return CLATTN_SUCCESS;
}

/* ---- problem classes ---------------------------------------------------- */

static const int seq_buckets[] = {16, 32, 64, 128, 256, 512, 1024, 4096, 16384, CLATTN__SEQ_OPEN};
#define NUM_SEQ_BUCKETS ((int)(sizeof seq_buckets / sizeof seq_buckets[0]))

int clattn__head_dim_bucket(int d) {
  static const int common[] = {32, 64, 80, 96, 128, 256};
  for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
    if (d == common[i]) return d;
  return d <= 0 ? 16 : (d + 15) / 16 * 16;
}

int clattn__seq_bucket(int seq) {
  for (int i = 0; i < NUM_SEQ_BUCKETS; i++)
    if (seq <= seq_buckets[i]) return seq_buckets[i];
  return CLATTN__SEQ_OPEN;
}

int clattn__seq_bucket_index(int bucket) {
  for (int i = 0; i < NUM_SEQ_BUCKETS; i++)
    if (bucket == seq_buckets[i]) return i;
  return -1;
}

void clattn__seq_bucket_name(int bucket, char *buf, size_t cap) {
  if (bucket == CLATTN__SEQ_OPEN)
    snprintf(buf, cap, "inf");
  else
    snprintf(buf, cap, "%d", bucket);
}

static const char *const mask_names[] = {"none",    "causal",  "window",       "dilated",
                                         "strided", "bigbird", "block_layout", "causal_top_left"};
#define NUM_MASK_NAMES ((int)(sizeof mask_names / sizeof mask_names[0]))

const char *clattn__mask_name(clattn_mask m) {
  return (int)m >= 0 && (int)m < NUM_MASK_NAMES ? mask_names[m] : "?";
}

int clattn__mask_from_name(const char *s) {
  for (int i = 0; i < NUM_MASK_NAMES; i++)
    if (!strcmp(s, mask_names[i])) return i;
  return -1;
}

int clattn__dtype_from_name(const char *s) {
  if (!strcmp(s, "f32")) return CLATTN_DTYPE_F32;
  if (!strcmp(s, "f16")) return CLATTN_DTYPE_F16;
  if (!strcmp(s, "bf16")) return CLATTN_DTYPE_BF16;
  return -1;
}

clattn__tune_class clattn__class_of(const char *kernel, const clattn_attention_desc *d) {
  clattn__tune_class c;
  c.kernel = kernel;
  c.dtype = d->dtype;
  c.head_dim = clattn__head_dim_bucket(d->head_dim);
  c.mask = d->mask;
  c.seq = clattn__seq_bucket(d->seq_q);
  return c;
}

void clattn__class_name(const clattn__tune_class *c, char *buf, size_t cap) {
  char seq[16];
  clattn__seq_bucket_name(c->seq, seq, sizeof seq);
  snprintf(buf, cap, "%s %s d=%d mask=%s seq=%s", c->kernel, clattn__dtype_name(c->dtype),
           c->head_dim, clattn__mask_name(c->mask), seq);
}

clattn_status clattn__source_hash(clattn_context ctx, const clattn__kernel_space *sp,
                                  char out[17]) {
  clattn__sha256_ctx h;
  clattn__sha256_init(&h);
  for (int i = 0; sp->sources[i]; i++) {
    char *src = clattn__kernel_source(ctx, sp->sources[i]);
    if (!src) return CLATTN_ERROR_IO;
    clattn__sha256_update(&h, sp->sources[i], strlen(sp->sources[i]) + 1);
    clattn__sha256_update(&h, src, strlen(src) + 1);
    free(src);
  }
  uint8_t dig[32];
  clattn__sha256_final(&h, dig);
  clattn__hex(dig, 8, out);
  return CLATTN_SUCCESS;
}

/* ---- candidate search ------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int value_pos(const clattn__kernel_space *sp, int p, int v) {
  for (int i = 0; i < sp->num_values[p]; i++)
    if (sp->values[p][i] == v) return i;
  return -1;
}

/* Parses "bm=16,32;tn=4" into allowed[p][value position]. */
static clattn_status parse_restriction(const clattn__kernel_space *sp, const char *spec,
                                       unsigned char allowed[][32], char *err, size_t errcap) {
  for (int p = 0; p < sp->num_params; p++)
    for (int i = 0; i < sp->num_values[p] && i < 32; i++)
      allowed[p][i] = 1;
  if (!spec || !*spec) return CLATTN_SUCCESS;
  const char *s = spec;
  while (*s) {
    while (*s == ';' || *s == ' ')
      s++;
    if (!*s) break;
    const char *eq = strchr(s, '=');
    int pi = eq ? param_index(sp, s, (size_t)(eq - s)) : -1;
    if (pi < 0) {
      snprintf(err, errcap,
               "space '%s': expected PARAM=V1,V2;... with PARAM one of the %s "
               "kernel's parameters",
               spec, sp->name);
      return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    memset(allowed[pi], 0, 32);
    s = eq + 1;
    int any = 0;
    for (;;) {
      char *end;
      long v = strtol(s, &end, 10);
      int pos = end == s ? -1 : value_pos(sp, pi, (int)v);
      if (pos < 0) {
        snprintf(err, errcap, "space '%s': %s takes values from its legal list (", spec,
                 sp->param_names[pi]);
        for (int i = 0; i < sp->num_values[pi]; i++)
          clattn__append(err, errcap, "%s%d", i ? "," : "", sp->values[pi][i]);
        clattn__append(err, errcap, ")");
        return CLATTN_ERROR_INVALID_ARGUMENT;
      }
      allowed[pi][pos] = 1;
      any = 1;
      s = end;
      if (*s == ',')
        s++;
      else
        break;
    }
    if (!any || (*s && *s != ';' && *s != ' ')) {
      snprintf(err, errcap, "space '%s': cannot parse near '%s'", spec, s);
      return CLATTN_ERROR_INVALID_ARGUMENT;
    }
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__search_init(clattn__search *s, const clattn__kernel_space *sp, int head_dim,
                                  const clattn__space_limits *lim, const char *restrict_spec,
                                  const int *first, uint64_t seed, int exhaustive_max, char *err,
                                  size_t errcap) {
  memset(s, 0, sizeof *s);
  s->space = sp;
  s->np = sp->num_params;
  s->best = -1;
  s->rng = seed;
  err[0] = 0;
  unsigned char allowed[CLATTN__MAX_PARAMS][32];
  clattn_status st = parse_restriction(sp, restrict_spec, allowed, err, errcap);
  if (st != CLATTN_SUCCESS) return st;
  size_t total = 1;
  for (int p = 0; p < s->np; p++)
    total *= (size_t)sp->num_values[p];
  s->cfg = malloc((total + 1) * (size_t)s->np * sizeof *s->cfg);
  if (!s->cfg) return CLATTN_ERROR_OUT_OF_MEMORY;
  int n = 0;
  if (first && !sp->check(first, head_dim, lim)) {
    memcpy(s->cfg, first, (size_t)s->np * sizeof *s->cfg);
    n = 1;
    s->has_default = 1;
  }
  int idx[CLATTN__MAX_PARAMS] = {0};
  for (size_t c = 0; c < total; c++) {
    size_t r = c;
    int ok = 1;
    int v[CLATTN__MAX_PARAMS];
    for (int p = s->np - 1; p >= 0; p--) {
      idx[p] = (int)(r % (size_t)sp->num_values[p]);
      r /= (size_t)sp->num_values[p];
      ok &= idx[p] < 32 && allowed[p][idx[p]];
      v[p] = sp->values[p][idx[p]];
    }
    if (!ok || sp->check(v, head_dim, lim)) continue;
    if (s->has_default && !memcmp(v, s->cfg, (size_t)s->np * sizeof *v)) continue;
    memcpy(s->cfg + (size_t)n * (size_t)s->np, v, (size_t)s->np * sizeof *v);
    n++;
  }
  s->num = n;
  if (n == 0) {
    snprintf(err, errcap,
             "no legal configuration of the %s kernel for head_dim %d on this "
             "device%s",
             sp->name, head_dim, restrict_spec && *restrict_spec ? " in the given space" : "");
    free(s->cfg);
    s->cfg = NULL;
    return CLATTN_ERROR_UNSUPPORTED;
  }
  s->st = calloc((size_t)n, 1);
  s->ms = malloc((size_t)n * sizeof *s->ms);
  if (!s->st || !s->ms) {
    clattn__search_free(s);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  for (int i = 0; i < n; i++)
    s->ms[i] = -1;
  s->exhaustive = n <= exhaustive_max;
  return CLATTN_SUCCESS;
}

void clattn__search_free(clattn__search *s) {
  free(s->cfg);
  free(s->st);
  free(s->ms);
  s->cfg = NULL;
  s->st = NULL;
  s->ms = NULL;
}

static int find_cfg(const clattn__search *s, const int *v) {
  for (int i = 0; i < s->num; i++)
    if (!memcmp(s->cfg + (size_t)i * (size_t)s->np, v, (size_t)s->np * sizeof *v)) return i;
  return -1;
}

static int random_untried(clattn__search *s) {
  int left = s->num - s->proposed;
  if (left <= 0) return -1;
  int k = (int)(rng_next(&s->rng) % (uint64_t)left);
  for (int i = 0; i < s->num; i++)
    if (!s->st[i] && k-- == 0) return i;
  return -1;
}

/* An untried legal neighbour of the best: one parameter one step up or
 * down its value list, else two parameters at once (e.g. bm and tm together,
 * keeping their ratio). -1 when none is left. */
static int untried_neighbour(clattn__search *s) {
  if (s->best < 0) return -1;
  const clattn__kernel_space *sp = s->space;
  const int *b = s->cfg + (size_t)s->best * (size_t)s->np;
  int pos[CLATTN__MAX_PARAMS];
  for (int p = 0; p < s->np; p++)
    pos[p] = value_pos(sp, p, b[p]);
  int v[CLATTN__MAX_PARAMS];
  for (int p = 0; p < s->np; p++)
    for (int d = -1; d <= 1; d += 2) {
      int np_ = pos[p] + d;
      if (pos[p] < 0 || np_ < 0 || np_ >= sp->num_values[p]) continue;
      memcpy(v, b, (size_t)s->np * sizeof *v);
      v[p] = sp->values[p][np_];
      int i = find_cfg(s, v);
      if (i >= 0 && !s->st[i]) return i;
    }
  for (int p = 0; p < s->np; p++)
    for (int q = p + 1; q < s->np; q++)
      for (int dp = -1; dp <= 1; dp += 2)
        for (int dq = -1; dq <= 1; dq += 2) {
          int a = pos[p] + dp, c = pos[q] + dq;
          if (pos[p] < 0 || pos[q] < 0 || a < 0 || c < 0 || a >= sp->num_values[p] ||
              c >= sp->num_values[q])
            continue;
          memcpy(v, b, (size_t)s->np * sizeof *v);
          v[p] = sp->values[p][a];
          v[q] = sp->values[q][c];
          int i = find_cfg(s, v);
          if (i >= 0 && !s->st[i]) return i;
        }
  return -1;
}

int clattn__search_next(clattn__search *s, double budget_frac) {
  int i = -1;
  if (s->has_default && !s->st[0]) {
    i = 0;
    s->phase = s->exhaustive ? "exhaustive" : "sample";
  } else if (s->exhaustive) {
    i = random_untried(s);
    s->phase = "exhaustive";
  } else {
    /* Random samples for the first part of the budget (at least 8, at most
     * a quarter of the space), then refinement around the best; once the
     * best's neighbourhood is exhausted, sample again. */
    int target = s->num / 4 < 8 ? 8 : s->num / 4;
    if (s->done < target && budget_frac < 0.5) {
      i = random_untried(s);
      s->phase = "sample";
    } else {
      i = untried_neighbour(s);
      s->phase = "refine";
      if (i < 0) {
        i = random_untried(s);
        s->phase = "sample";
      }
    }
  }
  if (i >= 0) {
    s->st[i] = 1;
    s->proposed++;
  }
  return i;
}

void clattn__search_report(clattn__search *s, int idx, double ms) {
  if (idx < 0 || idx >= s->num) return;
  s->st[idx] = 2;
  s->ms[idx] = ms;
  s->done++;
  if (ms >= 0 && (s->best < 0 || ms < s->ms[s->best])) s->best = idx;
}

/* ---- host data -------------------------------------------------------------- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fill_random(void *dst, size_t n, clattn_dtype t, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    float f = (float)((double)(rng_next(&s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
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
static double time_candidate(clattn_context ctx, tune_io *io, const char *cfg, double best_ms) {
  clattn_plan plan = NULL;
  if (clattn__plan_create_ex(ctx, &io->desc, 0, cfg, "tuner", &plan) != CLATTN_SUCCESS) return -1;
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
      qsort(t, (size_t)n, sizeof *t, cmp_double);
      ms = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    }
  }
  clattn_plan_release(plan);
  return ms;
}

/* Runs the candidate and compares rows of its output with the float64
 * reference. Returns 1 pass, 0 fail, -1 could not run. */
static int verify_candidate(clattn_context ctx, tune_io *io, const char *cfg, double *rel) {
  const clattn_attention_desc *d = &io->desc;
  clattn_plan plan = NULL;
  if (clattn__plan_create_ex(ctx, d, 0, cfg, "tuner", &plan) != CLATTN_SUCCESS) return -1;
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
      if (clattn_reference_attention(d, io->hq, io->hk, io->hv, ref, NULL,
                                     nrows == d->seq_q ? NULL : rows,
                                     nrows == d->seq_q ? 0 : nrows) == CLATTN_SUCCESS) {
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

static clattn_status tune_run(clattn_context ctx, const clattn_tune_request *req,
                              clattn_tune_result *res) {
  const double t0 = now_s();
  const clattn__kernel_space *sp = &clattn__flash_space;
  tune_io io;
  memset(&io, 0, sizeof io);
  clattn_attention_desc *d = &io.desc;
  clattn_attention_desc_init(d);
  d->algo = CLATTN_ALGO_FLASH;
  d->dtype = req->dtype;
  d->head_dim = clattn__head_dim_bucket(req->head_dim);
  d->mask = req->mask;
  d->seq_q = d->seq_kv = req->seq;
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
  /* Half precision on NVIDIA sm_80+: the tensor-core kernel's space. */
  if (clattn__flash_uses_tensor_cores(ctx, d)) sp = &clattn__flash_tc_space;
  clattn__tune_class cls = clattn__class_of(sp->name, d);
  clattn__class_name(&cls, res->problem_class, sizeof res->problem_class);
  res->batch = d->batch;
  res->heads = d->heads;
  res->seq = d->seq_q;
  res->head_dim = d->head_dim;
  res->best_ms = res->default_ms = -1;

  clattn__space_limits lim = clattn__space_limits_of(&ctx->info);
  int defp[CLATTN__MAX_PARAMS];
  char label[64];
  bool have_def = clattn__builtin_default(&ctx->info, sp, d->dtype, d->head_dim, &lim, defp, label,
                                          sizeof label);
  if (have_def) clattn__config_format(sp, defp, res->default_config, sizeof res->default_config);

  clattn__search s;
  char err[512];
  clattn_status st = clattn__search_init(
      &s, sp, d->head_dim, &lim, req->space, have_def ? defp : NULL, req->seed ? req->seed : 1,
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
  char cfg[128], best_cfg[128] = "";
  double spent_cand = 0;
  int stop = 0;
  while (!stop) {
    double el = now_s() - t0;
    if (s.done > 0 && el >= budget) break;
    int idx = clattn__search_next(&s, budget > 0 ? el / budget : 1.0);
    if (idx < 0) break;
    const char *phase = s.phase;
    clattn__config_format(sp, s.cfg + (size_t)idx * (size_t)s.np, cfg, sizeof cfg);
    double c0 = now_s();
    double best_before = s.best >= 0 ? s.ms[s.best] : -1;
    double ms = time_candidate(ctx, &io, cfg, best_before);
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
    clattn__config_format(sp, s.cfg + (size_t)order[k] * (size_t)s.np, cfg, sizeof cfg);
    double rel = INFINITY;
    int ok = verify_candidate(ctx, &io, cfg, &rel);
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
  clattn__config_format(sp, s.cfg + (size_t)winner * (size_t)s.np, res->best_config,
                        sizeof res->best_config);
  res->best_ms = s.ms[winner];
  res->verified = 1;
  res->speedup = res->default_ms > 0 && res->best_ms > 0 ? res->default_ms / res->best_ms : 0;
  clattn__search_free(&s);

  ctx->msg[0] = 0;
  if (req->flags & CLATTN_TUNE_NO_STORE) return CLATTN_SUCCESS;
  clattn__tunedb_entry e;
  memset(&e, 0, sizeof e);
  snprintf(e.kernel, sizeof e.kernel, "%s", sp->name);
  if (clattn__source_hash(ctx, sp, e.src) != CLATTN_SUCCESS)
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
  if (req->algo != CLATTN_ALGO_AUTO && req->algo != CLATTN_ALGO_FLASH)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "clattn_tune: req.algo %d has no tunable kernel (flash only)",
                        (int)req->algo);
  if ((int)req->dtype < 0 || req->dtype > CLATTN_DTYPE_BF16)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "clattn_tune: req.dtype %d unknown",
                        (int)req->dtype);
  if (req->head_dim < 1 || req->head_dim > 256)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_tune: req.head_dim %d outside 1..256", req->head_dim);
  if (req->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(req->mask))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "clattn_tune: req.mask %d: only none and the causal masks are tunable",
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
  return tune_run(ctx, req, res);
}

/* ---- configuration choice at plan time --------------------------------- */

static clattn_status forced(clattn_plan p, const clattn__kernel_space *sp, const char *cfg,
                            const char *what, int *params) {
  const clattn__space_limits lim = clattn__space_limits_of(&p->ctx->info);
  if (clattn__config_parse(sp, cfg, params) != CLATTN_SUCCESS) {
    char example[128];
    int ex[CLATTN__MAX_PARAMS];
    for (int i = 0; i < sp->num_params; i++)
      ex[i] = sp->values[i][0];
    clattn__config_format(sp, ex, example, sizeof example);
    return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "%s='%s' is not a %s configuration (expected every parameter once, "
                        "e.g. '%s')",
                        what, cfg, sp->name, example);
  }
  const char *why = sp->check(params, p->desc.head_dim, &lim);
  if (why)
    return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "%s='%s' is not legal on this device for head_dim %d: %s", what, cfg,
                        p->desc.head_dim, why);
  return CLATTN_SUCCESS;
}

clattn_status clattn__choose_config(clattn_plan p, const clattn__kernel_space *sp, int *params,
                                    char *origin, size_t cap) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  if (p->config && *p->config) {
    clattn_status st = forced(p, sp, p->config, "config", params);
    if (st == CLATTN_SUCCESS)
      snprintf(origin, cap, "%s",
               p->config_origin ? p->config_origin : "override (clattn_plan_create_with_config)");
    return st;
  }
  const char *ov = getenv("CLATTN_TUNE_OVERRIDE");
  if (ov && *ov) {
    clattn_status st = forced(p, sp, ov, "CLATTN_TUNE_OVERRIDE", params);
    if (st == CLATTN_SUCCESS) snprintf(origin, cap, "override (CLATTN_TUNE_OVERRIDE)");
    return st;
  }
  const clattn__space_limits lim = clattn__space_limits_of(&ctx->info);
  clattn__tune_class cls = clattn__class_of(sp->name, d);
  bool exact = false;
  int seq = 0;
  bool tuned = clattn__tunedb_lookup(ctx, sp, &cls, d->head_dim, &lim, params, &exact, &seq);
  if (tuned && (exact || !(p->flags & CLATTN_PLAN_MEASURE))) {
    char sb[16];
    clattn__seq_bucket_name(seq, sb, sizeof sb);
    if (exact)
      snprintf(origin, cap, "tuned");
    else
      snprintf(origin, cap, "tuned (nearest seq bucket %s)", sb);
    return CLATTN_SUCCESS;
  }
  if (p->flags & CLATTN_PLAN_MEASURE) {
    clattn_tune_request r;
    clattn_tune_request_init(&r);
    r.dtype = d->dtype;
    r.head_dim = d->head_dim;
    r.mask = d->mask;
    r.seq = d->seq_q < 16384 ? d->seq_q : 16384;
    const char *b = getenv("CLATTN_TUNE_BUDGET");
    char *end = NULL;
    double budget = b && *b ? strtod(b, &end) : 10.0;
    r.budget_seconds = end && (*end || !(budget >= 0) || !isfinite(budget)) ? 10.0 : budget;
    clattn_tune_result res;
    memset(&res, 0, sizeof res);
    clattn_status st = CLATTN_ERROR_UNSUPPORTED;
    if (r.mask == CLATTN_MASK_NONE || clattn__mask_is_causal(r.mask)) st = tune_run(ctx, &r, &res);
    if ((st == CLATTN_SUCCESS || res.verified) &&
        clattn__config_parse(sp, res.best_config, params) == CLATTN_SUCCESS &&
        !sp->check(params, d->head_dim, &lim)) {
      snprintf(origin, cap, "tuned now (%d candidates in %.1f s)", res.tried, res.elapsed_s);
      return CLATTN_SUCCESS;
    }
    char why[600];
    snprintf(why, sizeof why, "%.590s", ctx->msg);
    snprintf(ctx->msg, sizeof ctx->msg, "note: CLATTN_PLAN_MEASURE could not tune (%s)", why);
    if (tuned) { /* the nearest bucket's entry, looked up above */
      clattn__tunedb_lookup(ctx, sp, &cls, d->head_dim, &lim, params, &exact, &seq);
      char sb[16];
      clattn__seq_bucket_name(seq, sb, sizeof sb);
      snprintf(origin, cap, "tuned (nearest seq bucket %s)", sb);
      return CLATTN_SUCCESS;
    }
  }
  char label[64];
  if (!clattn__builtin_default(&ctx->info, sp, d->dtype, d->head_dim, &lim, params, label,
                               sizeof label))
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "no %s configuration fits this device for head_dim %d (local memory "
                        "%llu bytes, max work-group %zu)",
                        sp->name, d->head_dim, (unsigned long long)ctx->info.local_mem,
                        ctx->info.max_wg);
  snprintf(origin, cap, "built-in default (%s)", label);
  return CLATTN_SUCCESS;
}

clattn_status clattn_plan_create_with_config(clattn_context ctx, const clattn_attention_desc *desc,
                                             unsigned flags, const char *config, clattn_plan *out) {
  return clattn__plan_create_ex(ctx, desc, flags, config && *config ? config : NULL, NULL, out);
}
