/* test_util.c — shared test helpers: seeds, inputs, NaN poisoning, buffers, reference checks. */
#define _DEFAULT_SOURCE /* lstat, mkdtemp */
#include "test_util.h"
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- seeds and random numbers ---- */

#define TU_DEFAULT_SEED UINT64_C(0x5eedc1a77e57)

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

uint64_t tu_base_seed(void) {
  static int init = 0;
  static uint64_t seed = TU_DEFAULT_SEED;
  if (!init) {
    init = 1;
    const char *e = getenv("CLATTN_TEST_SEED");
    if (e && *e) seed = strtoull(e, NULL, 0);
  }
  return seed;
}

uint64_t tu_case_seed(const char *label) {
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a of the label */
  for (const unsigned char *p = (const unsigned char *)label; *p; p++) {
    h ^= *p;
    h *= UINT64_C(1099511628211);
  }
  uint64_t x = tu_base_seed() ^ h;
  return splitmix64(&x);
}

void tu_rng_init(tu_rng *r, uint64_t seed) { r->s = seed; }
uint64_t tu_rng_next(tu_rng *r) { return splitmix64(&r->s); }
double tu_rng_uniform(tu_rng *r, double lo, double hi) {
  return lo + (hi - lo) * ((double)(tu_rng_next(r) >> 11) * 0x1.0p-53);
}

/* Stateless uniform in [lo, hi) from a seed and four indices. */
static double hash_uniform(uint64_t seed, int64_t a, int64_t b, int64_t c, int64_t d, double lo,
                           double hi) {
  uint64_t x = seed;
  x ^= splitmix64(&x) + (uint64_t)a;
  x ^= splitmix64(&x) + (uint64_t)b;
  x ^= splitmix64(&x) + (uint64_t)c;
  x ^= splitmix64(&x) + (uint64_t)d;
  return lo + (hi - lo) * ((double)(splitmix64(&x) >> 11) * 0x1.0p-53);
}

/* ---- storage types ---- */

double tu_rel_tol(clattn_dtype t) {
  return t == CLATTN_DTYPE_F16    ? TU_F16_REL_TOL
         : t == CLATTN_DTYPE_BF16 ? TU_BF16_REL_TOL
                                  : TU_F32_REL_TOL;
}
double tu_lse_tol(clattn_dtype t) { return t == CLATTN_DTYPE_F32 ? TU_F32_LSE_TOL : tu_rel_tol(t); }

uint16_t tu_float_to_half(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf (or is inf) */
  if (a < 0x38800000u) { /* subnormal half (or zero): round a / 2^-24 to an integer */
    float x;
    const uint32_t au = a;
    memcpy(&x, &au, sizeof x);
    const float q = x * 16777216.0f; /* exact: a power of two */
    uint32_t m = (uint32_t)q;
    const float rem = q - (float)m;
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
    return (uint16_t)(sign | m);
  }
  /* normal: rebias the exponent, round the mantissa to 10 bits */
  uint32_t h = ((a - 0x38000000u) >> 13);
  const uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

float tu_half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = (float)m * 0x1.0p-24f;
    return sign ? -f : f;
  }
  uint32_t u = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t tu_float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float tu_bf16_to_float(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Poison of each storage type: a quiet NaN with a payload. */
static const uint16_t poison_half = 0x7ead, poison_bf16 = 0x7fad;

/* ---- host arrays ---- */

static const uint32_t poison_bits = 0x7fc0dead; /* a quiet NaN with a payload */

float *tu_alloc_nan(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) return NULL;
  float nanv;
  memcpy(&nanv, &poison_bits, sizeof nanv);
  for (size_t i = 0; i < n; i++)
    p[i] = nanv;
  return p;
}

int tu_is_poison(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u == poison_bits;
}

/* ---- device buffers ---- */

cl_mem tu_buffer_from_host(clattn_context ctx, const void *host, size_t bytes) {
  cl_int err;
  cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx),
                            CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, (void *)host, &err);
  return err == CL_SUCCESS ? m : NULL;
}

/* A host array of n poison elements of the storage type (4 or 2 bytes). */
static void *alloc_poison(size_t n, clattn_dtype t) {
  if (t == CLATTN_DTYPE_F32) return tu_alloc_nan(n);
  uint16_t *p = malloc((n ? n : 1) * sizeof(uint16_t));
  if (!p) return NULL;
  for (size_t i = 0; i < n; i++)
    p[i] = t == CLATTN_DTYPE_F16 ? poison_half : poison_bf16;
  return p;
}

cl_mem tu_buffer_nan(clattn_context ctx, size_t n) {
  float *h = tu_alloc_nan(n);
  if (!h) return NULL;
  cl_mem m = tu_buffer_from_host(ctx, h, (n ? n : 1) * sizeof(float));
  free(h);
  return m;
}

cl_int tu_buffer_read(clattn_context ctx, cl_mem buf, void *host, size_t bytes) {
  return clEnqueueReadBuffer(clattn_context_queue(ctx), buf, CL_TRUE, 0, bytes, host, 0, NULL,
                             NULL);
}

/* ---- descriptors ---- */

static const char *layout_name(clattn_layout l) {
  switch (l) {
  case CLATTN_LAYOUT_BHSD: return "BHSD";
  case CLATTN_LAYOUT_BSHD: return "BSHD";
  case CLATTN_LAYOUT_STRIDED: return "STRIDED";
  }
  return "?";
}

static const char *algo_name(clattn_algo a) {
  switch (a) {
  case CLATTN_ALGO_AUTO: return "auto";
  case CLATTN_ALGO_FLASH: return "flash";
  case CLATTN_ALGO_NAIVE: return "naive";
  case CLATTN_ALGO_LINEAR: return "linear";
  }
  return "?";
}

void tu_desc_string(const clattn_attention_desc *d, char *buf, size_t cap) {
  static const char *dtypes[3] = {"f32", "f16", "bf16"};
  static const char *masks[7] = {"none",    "causal",  "window",      "dilated",
                                 "strided", "bigbird", "block_layout"};
  int n = snprintf(buf, cap, "B=%d H=%d Hkv=%d Nq=%d Nk=%d d=%d %s %s mask=%s algo=%s scale=%g",
                   d->batch, d->heads, d->kv_heads, d->seq_q, d->seq_kv, d->head_dim,
                   (unsigned)d->dtype < 3 ? dtypes[d->dtype] : "?", layout_name(d->layout),
                   (unsigned)d->mask < 7 ? masks[d->mask] : "?", algo_name(d->algo), d->scale);
  if (d->layout == CLATTN_LAYOUT_STRIDED && n > 0 && (size_t)n < cap) {
    const clattn_strides *s[4] = {&d->q_strides, &d->k_strides, &d->v_strides, &d->o_strides};
    const char *nm = "qkvo";
    for (int i = 0; i < 4 && (size_t)n < cap; i++) {
      int m = snprintf(buf + n, cap - (size_t)n,
                       " %cs={%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "}", nm[i], s[i]->batch,
                       s[i]->head, s[i]->seq, s[i]->dim);
      if (m < 0) break;
      n += m;
    }
  }
}

void tu_set_padded_strides(clattn_attention_desc *d, int pad_seq, int pad_head, int seq_major) {
  const int64_t hd = d->head_dim;
  const int64_t hk = d->kv_heads ? d->kv_heads : d->heads;
  const int64_t ss = hd + pad_seq;
  /* q and o: [b][h][s][d] with padded rows and gaps between heads. */
  clattn_strides qo;
  qo.dim = 1;
  qo.seq = ss;
  qo.head = (int64_t)d->seq_q * ss + pad_head;
  qo.batch = (int64_t)d->heads * qo.head + pad_head;
  clattn_strides kv;
  kv.dim = 1;
  if (seq_major) { /* [b][s][h][d] */
    kv.head = ss;
    kv.seq = hk * ss + pad_head;
    kv.batch = (int64_t)d->seq_kv * kv.seq + pad_head;
  } else {
    kv.seq = ss;
    kv.head = (int64_t)d->seq_kv * ss + pad_head;
    kv.batch = hk * kv.head + pad_head;
  }
  d->layout = CLATTN_LAYOUT_STRIDED;
  d->q_strides = qo;
  d->k_strides = kv;
  d->v_strides = kv;
  d->o_strides = qo;
  d->o_strides.seq += 1; /* o differs from q */
  d->o_strides.head = (int64_t)d->seq_q * d->o_strides.seq + 2 * pad_head;
  d->o_strides.batch = (int64_t)d->heads * d->o_strides.head + 3;
}

/* ---- inputs ---- */

static int64_t off4(const clattn_strides *s, int64_t b, int64_t h, int64_t i, int64_t x) {
  return b * s->batch + h * s->head + i * s->seq + x * s->dim;
}

/* Fills the logical elements of q, k, v (the padding stays NaN). */
static void fill_inputs(const clattn_attention_desc *d, const clattn_strides *qs,
                        const clattn_strides *ks, const clattn_strides *vs, float *q, float *k,
                        float *v, tu_input input, uint64_t seed) {
  const int hkv = d->kv_heads ? d->kv_heads : d->heads;
  const int hd = d->head_dim;
  tu_rng rng;
  tu_rng_init(&rng, seed);
  if (input == TU_INPUT_UNIFORM) {
    for (int b = 0; b < d->batch; b++)
      for (int h = 0; h < d->heads; h++)
        for (int i = 0; i < d->seq_q; i++)
          for (int x = 0; x < hd; x++)
            q[off4(qs, b, h, i, x)] = (float)tu_rng_uniform(&rng, -4.0, 4.0);
    for (int b = 0; b < d->batch; b++)
      for (int h = 0; h < hkv; h++)
        for (int j = 0; j < d->seq_kv; j++)
          for (int x = 0; x < hd; x++) {
            k[off4(ks, b, h, j, x)] = (float)tu_rng_uniform(&rng, -1.0, 1.0);
            v[off4(vs, b, h, j, x)] = (float)tu_rng_uniform(&rng, -1.0, 1.0);
          }
    return;
  }
  /* Extreme scores. Key j of (b, hk) has the row of "base" perm[j] / 2: two
   * keys share every base, so their scores tie exactly. Feature 0 of a base
   * row is an integer m (distinct per base), the other features are small
   * noise; feature 0 of a query is ±C·(1 + u). Distinct bases' scores differ
   * by ≥ scale·C minus the noise. */
  const double scale = d->scale != 0.0 ? d->scale : 1.0 / sqrt((double)hd);
  const int nk = d->seq_kv, nb = (nk + 1) / 2;
  const int one_sign = input == TU_INPUT_EXTREME_ONE_SIGN;
  const double maxm = one_sign ? 2.0 * nb : nb / 2.0 + 1.0;
  const double C = 1e4 / (scale * 2.0 * maxm); /* |score| ≤ scale·2C·maxm = 1e4 */
  const double eps = 0.01;
  int *perm = malloc((size_t)nk * sizeof *perm);
  if (!perm) return;
  for (int j = 0; j < nk; j++)
    perm[j] = j;
  for (int j = nk - 1; j > 0; j--) {
    int r = (int)(tu_rng_next(&rng) % (uint64_t)(j + 1));
    int t = perm[j];
    perm[j] = perm[r];
    perm[r] = t;
  }
  for (int b = 0; b < d->batch; b++)
    for (int h = 0; h < d->heads; h++)
      for (int i = 0; i < d->seq_q; i++) {
        const double sign = (tu_rng_next(&rng) & 1) ? 1.0 : -1.0;
        q[off4(qs, b, h, i, 0)] = (float)(sign * C * tu_rng_uniform(&rng, 1.0, 2.0));
        for (int x = 1; x < hd; x++)
          q[off4(qs, b, h, i, x)] = (float)tu_rng_uniform(&rng, -1, 1);
      }
  for (int b = 0; b < d->batch; b++)
    for (int h = 0; h < hkv; h++)
      for (int j = 0; j < nk; j++) {
        const int base = perm[j] / 2;
        const double m = one_sign ? (double)(nb + base) : (double)(base - nb / 2);
        k[off4(ks, b, h, j, 0)] = (float)m;
        for (int x = 1; x < hd; x++)
          k[off4(ks, b, h, j, x)] = (float)hash_uniform(seed, b, h, base, x, -eps, eps);
        for (int x = 0; x < hd; x++)
          v[off4(vs, b, h, j, x)] = (float)tu_rng_uniform(&rng, -1, 1);
      }
  free(perm);
}

/* ---- running and comparing ---- */

static void summarize(tu_report *rep, const tu_problem *p, const char *describe) {
  char ds[512];
  tu_desc_string(&p->desc, ds, sizeof ds);
  if (rep->status != CLATTN_SUCCESS) {
    snprintf(rep->summary, sizeof rep->summary,
             "[%s] %s\n  seed 0x%016" PRIx64 " (base 0x%" PRIx64 ", set CLATTN_TEST_SEED)\n  %s",
             p->label, ds, p->seed, tu_base_seed(), rep->error);
  } else {
    snprintf(rep->summary, sizeof rep->summary,
             "[%s] %s\n  plan: %s\n  seed 0x%016" PRIx64 " (base 0x%" PRIx64
             ", set CLATTN_TEST_SEED)\n"
             "  rel err %.3g (tol %g), max abs err %.3g, lse err %.3g (tol %g), non-finite %zu, "
             "masked rows %zu (non-zero elements %zu), lse -inf mismatches %zu, padding "
             "written %zu",
             p->label, ds, describe ? describe : "-", p->seed, tu_base_seed(), rep->rel_err,
             rep->rel_tol, rep->max_abs_err, rep->lse_max_err, rep->lse_tol, rep->nonfinite,
             rep->masked_rows, rep->masked_nonzero, rep->lse_inf_mismatch, rep->pad_clobbered);
  }
}

static int fail_report(tu_report *rep, const tu_problem *p, clattn_status st, const char *what,
                       clattn_context ctx) {
  rep->status = st;
  snprintf(rep->error, sizeof rep->error, "%s: %s (%d)%s%s", what, clattn_status_string(st),
           (int)st, ctx ? ": " : "", ctx ? clattn_context_last_error(ctx) : "");
  summarize(rep, p, NULL);
  return -1;
}

static void report_reset(tu_report *rep, const tu_problem *p) {
  memset(rep, 0, sizeof *rep);
  rep->seed = p->seed;
  rep->rel_err = rep->max_abs_err = rep->lse_max_err = NAN;
  rep->rel_tol = tu_rel_tol(p->desc.dtype);
  rep->lse_tol = tu_lse_tol(p->desc.dtype);
}

int tu_problem_init(tu_problem *p, clattn_context ctx, const clattn_attention_desc *desc,
                    tu_input input, int with_lse, const char *label, tu_report *rep) {
  memset(p, 0, sizeof *p);
  p->ctx = ctx;
  p->desc = *desc;
  p->with_lse = with_lse;
  p->input = input;
  p->seed = tu_case_seed(label);
  snprintf(p->label, sizeof p->label, "%s", label);
  report_reset(rep, p);
  clattn_status st = clattn_attention_desc_strides(desc, &p->qs, &p->ks, &p->vs, &p->os, p->elems);
  if (st != CLATTN_SUCCESS) return fail_report(rep, p, st, "clattn_attention_desc_strides", NULL);
  p->nlse = (size_t)desc->batch * (size_t)desc->heads * (size_t)desc->seq_q;
  p->esize = desc->dtype == CLATTN_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
  p->hq = tu_alloc_nan(p->elems[0]);
  p->hk = tu_alloc_nan(p->elems[1]);
  p->hv = tu_alloc_nan(p->elems[2]);
  if (!p->hq || !p->hk || !p->hv)
    return fail_report(rep, p, CLATTN_ERROR_OUT_OF_MEMORY, "host allocation", NULL);
  fill_inputs(desc, &p->qs, &p->ks, &p->vs, p->hq, p->hk, p->hv, input, p->seed);
  const void *src[3] = {p->hq, p->hk, p->hv};
  if (desc->dtype != CLATTN_DTYPE_F32) { /* round to the storage type, keep both views */
    float *h[3] = {p->hq, p->hk, p->hv};
    uint16_t **st16[3] = {&p->sq, &p->sk, &p->sv};
    for (int t = 0; t < 3; t++) {
      uint16_t *x = malloc((p->elems[t] ? p->elems[t] : 1) * sizeof(uint16_t));
      if (!x) return fail_report(rep, p, CLATTN_ERROR_OUT_OF_MEMORY, "host allocation", NULL);
      *st16[t] = x;
      for (size_t e = 0; e < p->elems[t]; e++) {
        if (desc->dtype == CLATTN_DTYPE_F16) {
          x[e] = tu_float_to_half(h[t][e]);
          h[t][e] = tu_half_to_float(x[e]);
        } else {
          x[e] = tu_float_to_bf16(h[t][e]);
          h[t][e] = tu_bf16_to_float(x[e]);
        }
      }
      src[t] = x;
    }
  }
  p->q = tu_buffer_from_host(ctx, src[0], p->elems[0] * p->esize);
  p->k = tu_buffer_from_host(ctx, src[1], p->elems[1] * p->esize);
  p->v = tu_buffer_from_host(ctx, src[2], p->elems[2] * p->esize);
  void *po = alloc_poison(p->elems[3], desc->dtype);
  if (po) p->o = tu_buffer_from_host(ctx, po, (p->elems[3] ? p->elems[3] : 1) * p->esize);
  free(po);
  if (with_lse) p->lse = tu_buffer_nan(ctx, p->nlse);
  if (!p->q || !p->k || !p->v || !p->o || (with_lse && !p->lse))
    return fail_report(rep, p, CLATTN_ERROR_OPENCL, "clCreateBuffer", NULL);
  return 0;
}

static int poison(clattn_context ctx, cl_mem m, size_t n, clattn_dtype t) {
  void *h = alloc_poison(n, t);
  if (!h) return -1;
  const size_t es = t == CLATTN_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
  cl_int err =
      clEnqueueWriteBuffer(clattn_context_queue(ctx), m, CL_TRUE, 0, n * es, h, 0, NULL, NULL);
  free(h);
  return err == CL_SUCCESS ? 0 : -1;
}

int tu_problem_poison(tu_problem *p) {
  if (poison(p->ctx, p->o, p->elems[3], p->desc.dtype)) return -1;
  if (p->lse && poison(p->ctx, p->lse, p->nlse, CLATTN_DTYPE_F32)) return -1;
  return 0;
}

static double load_out(const void *raw, clattn_dtype t, size_t i) {
  if (t == CLATTN_DTYPE_F16) return tu_half_to_float(((const uint16_t *)raw)[i]);
  if (t == CLATTN_DTYPE_BF16) return tu_bf16_to_float(((const uint16_t *)raw)[i]);
  return ((const float *)raw)[i];
}

static int is_poison_out(const void *raw, clattn_dtype t, size_t i) {
  if (t == CLATTN_DTYPE_F16) return ((const uint16_t *)raw)[i] == poison_half;
  if (t == CLATTN_DTYPE_BF16) return ((const uint16_t *)raw)[i] == poison_bf16;
  return tu_is_poison(((const float *)raw)[i]);
}

int tu_problem_compare(tu_problem *p, const char *describe, tu_report *rep) {
  report_reset(rep, p);
  const clattn_attention_desc *desc = &p->desc;
  const size_t B = (size_t)desc->batch, H = (size_t)desc->heads, Nq = (size_t)desc->seq_q;
  const size_t hd = (size_t)desc->head_dim, nlse = p->nlse, no = p->elems[3];
  const clattn_dtype dt = desc->dtype;
  rep->rel_tol = tu_rel_tol(dt);
  rep->lse_tol = tu_lse_tol(dt);
  void *raw = malloc((no ? no : 1) * p->esize);
  float *hl = malloc(nlse * sizeof(float));
  double *ro = malloc(B * H * Nq * hd * sizeof(double)), *rl = malloc(nlse * sizeof(double));
  unsigned char *touched = calloc(no, 1);
  int ret = -1;
  if (!raw || !hl || !ro || !rl || !touched) {
    fail_report(rep, p, CLATTN_ERROR_OUT_OF_MEMORY, "host allocation", NULL);
    goto done;
  }
  cl_int err = tu_buffer_read(p->ctx, p->o, raw, no * p->esize);
  if (err == CL_SUCCESS && p->lse) err = tu_buffer_read(p->ctx, p->lse, hl, nlse * sizeof(float));
  if (err != CL_SUCCESS) {
    rep->status = CLATTN_ERROR_OPENCL;
    snprintf(rep->error, sizeof rep->error, "reading the result failed with %d", (int)err);
    summarize(rep, p, describe);
    goto done;
  }
  const void *rq = p->hq, *rk = p->hk, *rv = p->hv;
  if (dt != CLATTN_DTYPE_F32) {
    rq = p->sq;
    rk = p->sk;
    rv = p->sv;
  }
  clattn_status st = clattn_reference_attention(desc, rq, rk, rv, ro, rl, NULL, 0);
  if (st != CLATTN_SUCCESS) {
    fail_report(rep, p, st, "clattn_reference_attention", NULL);
    goto done;
  }
  double num = 0.0, den = 0.0, maxabs = 0.0, lmax = 0.0;
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < H; h++)
      for (size_t i = 0; i < Nq; i++) {
        const size_t row = (b * H + h) * Nq + i;
        const int masked = isinf(rl[row]) && rl[row] < 0;
        rep->masked_rows += (size_t)masked;
        for (size_t x = 0; x < hd; x++) {
          const int64_t o = off4(&p->os, (int64_t)b, (int64_t)h, (int64_t)i, (int64_t)x);
          touched[o] = 1;
          const double out = load_out(raw, dt, (size_t)o), ref = ro[row * hd + x];
          if (!isfinite(out)) {
            rep->nonfinite++;
            continue;
          }
          if (masked && out != 0.0) rep->masked_nonzero++;
          const double e = fabs(out - ref);
          num += e * e;
          den += ref * ref;
          if (e > maxabs) maxabs = e;
        }
        if (p->lse) {
          const double l = hl[row], r = rl[row];
          const int linf = isinf(l) && l < 0, rinf = isinf(r) && r < 0;
          if (linf != rinf || isnan(l) || (isinf(l) && l > 0)) {
            rep->lse_inf_mismatch++;
          } else if (!rinf) {
            const double e = fabs(l - r) / fmax(1.0, fabs(r));
            if (e > lmax) lmax = e;
          }
        }
      }
  for (size_t e = 0; e < no; e++)
    if (!touched[e] && !is_poison_out(raw, dt, e)) rep->pad_clobbered++;
  rep->rel_err = den > 0.0 ? sqrt(num / den) : sqrt(num);
  rep->max_abs_err = maxabs;
  rep->lse_max_err = p->lse ? lmax : 0.0;
  rep->status = CLATTN_SUCCESS;
  summarize(rep, p, describe);
  ret = 0;
done:
  free(raw);
  free(hl);
  free(ro);
  free(rl);
  free(touched);
  return ret;
}

void tu_problem_free(tu_problem *p) {
  cl_mem *m[5] = {&p->q, &p->k, &p->v, &p->o, &p->lse};
  for (int i = 0; i < 5; i++)
    if (*m[i]) {
      clReleaseMemObject(*m[i]);
      *m[i] = NULL;
    }
  free(p->hq);
  free(p->hk);
  free(p->hv);
  free(p->sq);
  free(p->sk);
  free(p->sv);
  p->hq = p->hk = p->hv = NULL;
  p->sq = p->sk = p->sv = NULL;
}

int tu_run_and_compare(clattn_context ctx, const clattn_attention_desc *desc, tu_input input,
                       int with_lse, unsigned flags, const char *label, tu_report *rep) {
  tu_problem p;
  clattn_plan plan = NULL;
  cl_event ev = NULL;
  int ret = -1;
  if (tu_problem_init(&p, ctx, desc, input, with_lse, label, rep)) goto done;
  clattn_status st = clattn_plan_create(ctx, desc, flags, &plan);
  if (st != CLATTN_SUCCESS) {
    fail_report(rep, &p, st, "clattn_plan_create", ctx);
    goto done;
  }
  st = clattn_plan_execute(plan, p.q, p.k, p.v, p.o, p.lse, 0, NULL, &ev);
  if (st != CLATTN_SUCCESS) {
    fail_report(rep, &p, st, "clattn_plan_execute", ctx);
    goto done;
  }
  cl_int err = ev ? clWaitForEvents(1, &ev) : CL_INVALID_EVENT;
  if (err != CL_SUCCESS) {
    rep->status = CLATTN_ERROR_OPENCL;
    snprintf(rep->error, sizeof rep->error, "waiting for the returned event failed with %d",
             (int)err);
    summarize(rep, &p, clattn_plan_describe(plan));
    goto done;
  }
  ret = tu_problem_compare(&p, clattn_plan_describe(plan), rep);
  snprintf(rep->plan_describe, sizeof rep->plan_describe, "%s", clattn_plan_describe(plan));
done:
  if (ev) clReleaseEvent(ev);
  clattn_plan_release(plan);
  tu_problem_free(&p);
  return ret;
}

int tu_report_ok(const tu_report *rep, int with_lse) {
  if (rep->status != CLATTN_SUCCESS) return 0;
  const double rtol = rep->rel_tol > 0 ? rep->rel_tol : TU_F32_REL_TOL;
  const double ltol = rep->lse_tol > 0 ? rep->lse_tol : TU_F32_LSE_TOL;
  if (!(rep->rel_err <= rtol)) return 0;
  if (rep->nonfinite || rep->masked_nonzero || rep->pad_clobbered) return 0;
  if (with_lse && (rep->lse_inf_mismatch || !(rep->lse_max_err <= ltol))) return 0;
  return 1;
}

void tu_check_case_impl(clattn_context ctx, const clattn_attention_desc *desc, tu_input input,
                        int with_lse, const char *label, const char *file, int line) {
  tu_report rep;
  tu_run_and_compare(ctx, desc, input, with_lse, 0, label, &rep);
  if (!tu_report_ok(&rep, with_lse)) {
    print_error("%s:%d: case failed\n%s\n", file, line, rep.summary);
    fail();
  }
  if (getenv("CLATTN_TEST_VERBOSE")) print_message("%s\n", rep.summary);
}

int tu_parse_filter_args(int argc, char **argv) {
  if (argc == 1) return 0;
  if (argc == 3 && !strcmp(argv[1], "--only")) {
    cmocka_set_test_filter(argv[2]);
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "--skip")) {
    cmocka_set_skip_filter(argv[2]);
    return 0;
  }
  fprintf(stderr, "usage: %s [--only PATTERN | --skip PATTERN]\n", argv[0]);
  return -1;
}

int tu_group_setup(void **state) {
  clattn_context ctx = NULL;
  clattn_status st = clattn_context_create(NULL, &ctx);
  if (st != CLATTN_SUCCESS) {
    print_error("clattn_context_create: %s: %s\n", clattn_status_string(st),
                clattn_last_create_error());
    return -1;
  }
  print_message("device: %s\n", clattn_context_device_name(ctx));
  *state = ctx;
  return 0;
}

int tu_group_teardown(void **state) {
  clattn_context_release((clattn_context)*state);
  *state = NULL;
  return 0;
}

void tu_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        tu_rm_rf(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

clattn_context tu_new_context(void) {
  clattn_context ctx = NULL;
  if (clattn_context_create(NULL, &ctx) != CLATTN_SUCCESS)
    fail_msg("no OpenCL device: %s", clattn_last_create_error());
  return ctx;
}

clattn_context tu_forced_context(const char *override, const clattn_attention_desc *d) {
  setenv("CLATTN_TUNE_OVERRIDE", override, 1);
  clattn_context ctx = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  clattn_plan plan = NULL;
  const clattn_status st = clattn_plan_create(ctx, d, 0, &plan);
  if (st == CLATTN_ERROR_UNSUPPORTED) {
    clattn_context_release(ctx);
    return NULL;
  }
  if (st != CLATTN_SUCCESS) fail_msg("%s: %s", override, clattn_context_last_error(ctx));
  clattn_plan_release(plan);
  return ctx;
}
