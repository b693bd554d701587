/* desc.c — version and status strings, descriptor defaults, validation and layout strides. */
#include "internal.h"
#include "checked.h"
#include "sparse.h"

#include <float.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define CLATTN_STR2(x) #x
#define CLATTN_STR(x) CLATTN_STR2(x)

unsigned clattn_version(void) { return CLATTN_VERSION_HEX; }

const char *clattn_version_string(void) {
  return CLATTN_STR(CLATTN_VERSION_MAJOR) "." CLATTN_STR(CLATTN_VERSION_MINOR) "." CLATTN_STR(
      CLATTN_VERSION_PATCH);
}

size_t clattn__dtype_size(clattn_dtype t) { return t == CLATTN_DTYPE_F32 ? 4 : 2; }

void clattn_attention_desc_init(clattn_attention_desc *d) {
  if (!d) return;
  memset(d, 0, sizeof *d);
  d->batch = 1;
  d->heads = 1;
  d->kv_heads = 0;
  d->seq_q = 1;
  d->seq_kv = 1;
  d->head_dim = 64;
  d->dtype = CLATTN_DTYPE_F32;
  d->layout = CLATTN_LAYOUT_BHSD;
  d->scale = 0.0;
  d->mask = CLATTN_MASK_NONE;
  d->algo = CLATTN_ALGO_AUTO;
}

size_t clattn_attention_desc_size(void) { return sizeof(clattn_attention_desc); }

/* Packed strides of a layout; false when a stride overflows 64 bits. */
static bool layout_strides(clattn_layout layout, int64_t hx, int64_t n, int64_t dim,
                           clattn_strides *s) {
  int64_t a, b;
  if (layout == CLATTN_LAYOUT_BSHD) {
    s->dim = 1;
    s->head = dim;
    if (!clattn__mul_i64(hx, dim, &a) || !clattn__mul_i64(n, a, &b)) return false;
    s->seq = a;
    s->batch = b;
  } else {
    s->dim = 1;
    s->seq = dim;
    if (!clattn__mul_i64(n, dim, &a) || !clattn__mul_i64(hx, a, &b)) return false;
    s->head = a;
    s->batch = b;
  }
  return true;
}

/* Number of elements a tensor spans (max offset + 1), or 0 when it or its
 * size in bytes (4 per element at most) overflows. */
static size_t span(const clattn_strides *s, int64_t b, int64_t h, int64_t n, int64_t dim) {
  const int64_t ext[4] = {b - 1, h - 1, n - 1, dim - 1};
  const int64_t st[4] = {s->batch, s->head, s->seq, s->dim};
  int64_t total = 1, t;
  for (int i = 0; i < 4; i++) {
    if (!clattn__mul_i64(ext[i], st[i], &t) || !clattn__add_i64(total, t, &total)) return 0;
  }
  if (total > INT64_MAX / 4 || (uint64_t)total > (uint64_t)SIZE_MAX / 4) return 0;
  return (size_t)total;
}

/* True when no two elements of a (b, h, n, dim) tensor with non-negative
 * strides share an address: ordered by stride, every dimension of size > 1
 * must step past the whole extent of the smaller ones (a conservative test:
 * it also refuses some exotic interleavings that happen not to collide). */
bool clattn__strides_disjoint(const clattn_strides *s, int64_t b, int64_t h, int64_t n,
                              int64_t dim) {
  const int64_t size[4] = {b, h, n, dim};
  const int64_t st[4] = {s->batch, s->head, s->seq, s->dim};
  int idx[4], m = 0;
  for (int i = 0; i < 4; i++) {
    if (size[i] <= 1) continue;
    int j = m++;
    for (; j > 0 && st[idx[j - 1]] > st[i]; j--)
      idx[j] = idx[j - 1];
    idx[j] = i;
  }
  int64_t ext = 0, t; /* largest offset reached by the smaller dimensions */
  for (int k = 0; k < m; k++) {
    const int i = idx[k];
    if (st[i] <= ext) return false;
    if (!clattn__mul_i64(st[i], size[i] - 1, &t) || !clattn__add_i64(ext, t, &ext)) return false;
  }
  return true;
}

#define BAD(...) clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* The inference fields (KV layout, pages, ragged rows). */
static clattn_status inference_validate(clattn_context ctx, const clattn_attention_desc *d) {
  if ((unsigned)d->kv_layout > CLATTN_KV_PAGED_HEAD_MAJOR)
    return BAD("desc.kv_layout: unknown value %d", d->kv_layout);
  if (d->ragged != 0 && d->ragged != 1)
    return BAD("desc.ragged must be 0 or 1 (got %d)", d->ragged);
  const bool paged = d->kv_layout != CLATTN_KV_CONTIGUOUS;
  if (paged) {
    if (d->page_size < 1) return BAD("desc.page_size must be >= 1 (got %d)", d->page_size);
    if (d->num_pages < 1) return BAD("desc.num_pages must be >= 1 (got %d)", d->num_pages);
    const int64_t need = ((int64_t)d->seq_kv + d->page_size - 1) / d->page_size;
    if (d->max_pages_per_seq < need)
      return BAD("desc.max_pages_per_seq must be >= ceil(seq_kv / page_size) = %lld (got %d)",
                 (long long)need, d->max_pages_per_seq);
  }
  if (d->ragged) {
    if (d->total_q < 1)
      return BAD("desc.total_q must be >= 1 with desc.ragged (got %d)", d->total_q);
    if (!paged && d->total_kv < 1)
      return BAD("desc.total_kv must be >= 1 with desc.ragged and contiguous K/V (got %d)",
                 d->total_kv);
  }
  if (paged || d->ragged) {
    if (d->mask != CLATTN_MASK_NONE && !clattn__mask_is_causal(d->mask))
      return BAD("desc.mask: paged and ragged problems take the dense masks only (none, causal, "
                 "causal_top_left)");
    if (d->algo != CLATTN_ALGO_AUTO && d->algo != CLATTN_ALGO_FLASH)
      return BAD("desc.algo: paged and ragged problems are served by the flash family (decode "
                 "kernel) only");
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__desc_resolve(clattn_context ctx, const clattn_attention_desc *in,
                                   clattn_attention_desc *out, clattn_strides *qs,
                                   clattn_strides *ks, clattn_strides *vs, clattn_strides *os,
                                   size_t elems[4]) {
  if (!in) return BAD("desc is NULL");
  clattn_attention_desc d = *in;
  if (d.batch < 1) return BAD("desc.batch must be >= 1 (got %d)", d.batch);
  if (d.heads < 1) return BAD("desc.heads must be >= 1 (got %d)", d.heads);
  if (d.kv_heads < 0) return BAD("desc.kv_heads must be >= 0 (got %d)", d.kv_heads);
  if (d.kv_heads == 0) d.kv_heads = d.heads;
  if (d.kv_heads > d.heads || d.heads % d.kv_heads != 0)
    return BAD("desc.kv_heads (%d) must divide desc.heads (%d)", d.kv_heads, d.heads);
  if (d.seq_q < 1) return BAD("desc.seq_q must be >= 1 (got %d)", d.seq_q);
  if (d.seq_kv < 1) return BAD("desc.seq_kv must be >= 1 (got %d)", d.seq_kv);
  if (d.head_dim < 1 || d.head_dim > 256)
    return BAD("desc.head_dim must be in 1..256 (got %d)", d.head_dim);
  if ((unsigned)d.dtype > CLATTN_DTYPE_BF16) return BAD("desc.dtype: unknown value %d", d.dtype);
  if ((unsigned)d.layout > CLATTN_LAYOUT_STRIDED)
    return BAD("desc.layout: unknown value %d", d.layout);
  if ((unsigned)d.mask > CLATTN_MASK_CAUSAL_TOP_LEFT)
    return BAD("desc.mask: unknown value %d", d.mask);
  if ((unsigned)d.algo > CLATTN_ALGO_LINEAR) return BAD("desc.algo: unknown value %d", d.algo);
  if ((unsigned)d.feature_map > CLATTN_FEATURE_FAVOR)
    return BAD("desc.feature_map: unknown value %d", d.feature_map);
  /* The kernels take the scale as float, the flash kernels as scale·log2(e):
   * both must be finite in float32. */
  if (!isfinite(d.scale) || fabs(d.scale) * 1.4426950408889634 > (double)FLT_MAX)
    return BAD("desc.scale must be finite in float32, also times log2(e): |scale| <= %g (got %g)",
               (double)FLT_MAX / 1.4426950408889634, d.scale);
  if (d.scale == 0.0) d.scale = 1.0 / sqrt((double)d.head_dim);
  if (!(d.softcap >= 0.0 && d.softcap <= 1e30))
    return BAD("desc.softcap must be 0 (off) or a finite value in (0, 1e30] (got %g)", d.softcap);
  if (!(d.alibi_max_bias >= 0.0 && d.alibi_max_bias <= 1e6))
    return BAD("desc.alibi_max_bias must be 0 (off) or a finite value in (0, 1e6] (got %g)",
               d.alibi_max_bias);
  static const char *const fn_field[2] = {"score_mod", "mask_mod"};
  const char *const fn_src[2] = {d.score_mod, d.mask_mod};
  for (int i = 0; i < 2; i++) {
    if (!fn_src[i]) continue;
    size_t n = 0;
    while (n <= 65536 && fn_src[i][n])
      n++;
    if (n == 0 || n > 65536)
      return BAD("desc.%s must be NULL or OpenCL C source of 1 to 65536 bytes (got %s)",
                 fn_field[i], n ? "more" : "an empty string");
  }
  if (d.sinks)
    for (int h = 0; h < d.heads; h++)
      if (!(fabs((double)d.sinks[h]) <= 1e30))
        return BAD("desc.sinks[%d] must be finite with |sink| <= 1e30 (got %g)", h,
                   (double)d.sinks[h]);
  if (d.sinks && d.algo != CLATTN_ALGO_FLASH && d.algo != CLATTN_ALGO_AUTO)
    return BAD("desc.sinks: attention sinks are in the flash family's kernels (desc.algo FLASH "
               "or AUTO)");
  if (d.bias_type < CLATTN_BIAS_NONE || d.bias_type > CLATTN_BIAS_BOOL)
    return BAD("desc.bias_type: unknown value %d", d.bias_type);
  if (d.bias_type != CLATTN_BIAS_NONE) {
    const clattn_strides *b = &d.bias_strides;
    if (b->batch < 0 || b->head < 0 || b->seq < 0 || b->dim < 0)
      return BAD("desc.bias_strides must be >= 0 (0 broadcasts)");
    if (d.ragged) return BAD("desc.bias_type: a bias tensor with a ragged batch is not supported");
    if (d.algo != CLATTN_ALGO_FLASH && d.algo != CLATTN_ALGO_AUTO)
      return BAD("desc.bias_type: the bias is in the flash family's kernels (desc.algo FLASH or "
                 "AUTO)");
    if (clattn__bias_bytes(&d) == SIZE_MAX) return BAD("desc.bias_strides: the span overflows");
  }
  if ((d.score_mod || d.mask_mod) && d.algo != CLATTN_ALGO_FLASH && d.algo != CLATTN_ALGO_AUTO)
    return BAD("desc.score_mod / mask_mod: user functions are compiled into the flash family's "
               "kernels (desc.algo FLASH or AUTO)");
  if ((unsigned)d.kv_dtype > CLATTN_KV_DTYPE_FP8_E5M2)
    return BAD("desc.kv_dtype: unknown value %d", d.kv_dtype);
  if ((unsigned)d.kv_scale > CLATTN_KV_SCALE_CHANNEL)
    return BAD("desc.kv_scale: unknown value %d", d.kv_scale);
  if (d.kv_dtype != CLATTN_KV_DTYPE_SAME) {
    if (d.algo != CLATTN_ALGO_FLASH && d.algo != CLATTN_ALGO_AUTO)
      return BAD("desc.kv_dtype: quantized K/V is read by the flash family's decode kernels "
                 "(desc.algo FLASH or AUTO)");
    if (clattn__kv_scale_floats(&d) == SIZE_MAX)
      return BAD("desc.kv_scale: the number of scales overflows");
  }
  clattn_status sst = clattn__sparse_validate(ctx, &d);
  if (sst != CLATTN_SUCCESS) return sst;

  clattn_status ist = inference_validate(ctx, &d);
  if (ist != CLATTN_SUCCESS) return ist;

  clattn_strides s[4];
  if (d.layout == CLATTN_LAYOUT_STRIDED) {
    s[0] = d.q_strides;
    s[1] = d.k_strides;
    s[2] = d.v_strides;
    s[3] = d.o_strides;
    static const char *names[4] = {"q_strides", "k_strides", "v_strides", "o_strides"};
    for (int i = 0; i < 4; i++) {
      if (s[i].batch < 0 || s[i].head < 0 || s[i].seq < 0 || s[i].dim < 0)
        return BAD("desc.%s: strides must be >= 0", names[i]);
    }
    /* q, k, v are read-only and may overlap; outputs must not. */
    if (!d.ragged && !clattn__strides_disjoint(&s[3], d.batch, d.heads, d.seq_q, d.head_dim))
      return BAD("desc.o_strides {batch %lld, head %lld, seq %lld, dim %lld} make two output "
                 "elements alias (share an address)",
                 (long long)s[3].batch, (long long)s[3].head, (long long)s[3].seq,
                 (long long)s[3].dim);
  } else if (!layout_strides(d.layout, d.heads, d.seq_q, d.head_dim, &s[0]) ||
             !layout_strides(d.layout, d.kv_heads, d.seq_kv, d.head_dim, &s[1]) ||
             !layout_strides(d.layout, d.heads, d.seq_q, d.head_dim, &s[3])) {
    return BAD("descriptor sizes/strides overflow 64-bit offsets");
  } else {
    s[2] = s[1];
  }
  /* Inference modes: packed ragged rows (batch stride 0, total rows) and
   * page pools (the page index takes the batch stride). */
  int64_t qb = d.batch, qn = d.seq_q, kb = d.batch, kn = d.seq_kv;
  if (d.ragged) {
    if (d.layout != CLATTN_LAYOUT_STRIDED) {
      if (!layout_strides(CLATTN_LAYOUT_BSHD, d.heads, d.total_q, d.head_dim, &s[0]))
        return BAD("descriptor sizes/strides overflow 64-bit offsets");
      s[3] = s[0];
      if (d.kv_layout == CLATTN_KV_CONTIGUOUS) {
        if (!layout_strides(CLATTN_LAYOUT_BSHD, d.kv_heads, d.total_kv, d.head_dim, &s[1]))
          return BAD("descriptor sizes/strides overflow 64-bit offsets");
        s[2] = s[1];
      }
    }
    s[0].batch = s[3].batch = 0;
    qb = 1;
    qn = d.total_q;
    if (d.kv_layout == CLATTN_KV_CONTIGUOUS) {
      s[1].batch = s[2].batch = 0;
      kb = 1;
      kn = d.total_kv;
    }
  }
  if (d.kv_layout != CLATTN_KV_CONTIGUOUS) {
    if (d.layout != CLATTN_LAYOUT_STRIDED) {
      clattn_strides ps;
      int64_t a, b;
      ps.dim = 1;
      if (d.kv_layout == CLATTN_KV_PAGED) {
        ps.head = d.head_dim;
        if (!clattn__mul_i64(d.kv_heads, d.head_dim, &a) || !clattn__mul_i64(a, d.page_size, &b))
          return BAD("descriptor sizes/strides overflow 64-bit offsets");
        ps.seq = a;
        ps.batch = b;
      } else {
        ps.seq = d.head_dim;
        if (!clattn__mul_i64(d.page_size, d.head_dim, &a) || !clattn__mul_i64(a, d.kv_heads, &b))
          return BAD("descriptor sizes/strides overflow 64-bit offsets");
        ps.head = a;
        ps.batch = b;
      }
      s[1] = s[2] = ps;
    }
    kb = d.num_pages;
    kn = d.page_size;
  }
  if ((d.ragged || d.kv_layout != CLATTN_KV_CONTIGUOUS) && d.layout == CLATTN_LAYOUT_STRIDED &&
      !clattn__strides_disjoint(&s[3], qb, d.heads, qn, d.head_dim))
    return BAD("desc.o_strides make two output elements alias (share an address)");
  size_t e[4];
  e[0] = span(&s[0], qb, d.heads, qn, d.head_dim);
  e[1] = span(&s[1], kb, d.kv_heads, kn, d.head_dim);
  e[2] = span(&s[2], kb, d.kv_heads, kn, d.head_dim);
  e[3] = span(&s[3], qb, d.heads, qn, d.head_dim);
  for (int i = 0; i < 4; i++)
    if (e[i] == 0) return BAD("descriptor sizes/strides overflow 64-bit offsets");
  if (out) *out = d;
  if (qs) *qs = s[0];
  if (ks) *ks = s[1];
  if (vs) *vs = s[2];
  if (os) *os = s[3];
  if (elems) memcpy(elems, e, sizeof e);
  return CLATTN_SUCCESS;
}

clattn_status clattn_attention_desc_strides(const clattn_attention_desc *desc, clattn_strides *q,
                                            clattn_strides *k, clattn_strides *v, clattn_strides *o,
                                            size_t elems[4]) {
  return clattn__desc_resolve(NULL, desc, NULL, q, k, v, o, elems);
}

clattn_status clattn__check_buffer(clattn_context ctx, cl_mem buf, size_t bytes, const char *arg) {
  if (!buf) return BAD("%s is NULL", arg);
  size_t size = 0;
  cl_int err = clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof size, &size, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clGetMemObjectInfo(CL_MEM_SIZE)", err, arg);
  if (size < bytes) return BAD("%s holds %zu bytes but the descriptor needs %zu", arg, size, bytes);
  cl_context owner = NULL;
  err = clGetMemObjectInfo(buf, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
  if (err != CL_SUCCESS)
    return clattn__cl_fail(ctx, "clGetMemObjectInfo(CL_MEM_CONTEXT)", err, arg);
  if (ctx && owner != ctx->context)
    return BAD("%s belongs to another cl_context than the clattn context's", arg);
  return CLATTN_SUCCESS;
}

bool clattn__rows_valid(const int *rows, int num_rows, int seq_q) {
  if (!rows) return true;
  if (num_rows < 0) return false;
  for (int i = 0; i < num_rows; i++)
    if (rows[i] < 0 || rows[i] >= seq_q) return false;
  return true;
}

double clattn__alibi_slope(int h, int heads, double max_bias) {
  int n = 1;
  while (n * 2 <= heads)
    n *= 2;
  return h < n ? exp2(-max_bias * (h + 1) / n) : exp2(-max_bias * (2 * (h - n) + 1) / (2.0 * n));
}

void clattn__mods_options(const clattn_attention_desc *d, char *opts, size_t cap) {
  /* log2 units, as the kernels' scores: s2 = s·log2(e) */
  if (d->softcap > 0.0)
    clattn__append(opts, cap, " -DSOFTCAP=1 -DSOFTCAP2=%.9ef", d->softcap * 1.4426950408889634);
  /* ALIBI_RAW: a positive scale, so that ALiBi's term may enter the scores in raw units
   * (cl/flash_tc.cl TC_ALIBI_INIT) */
  if (d->alibi_max_bias > 0.0)
    clattn__append(opts, cap, " -DALIBI=1 -DALIBI_BIAS=%.9ef%s", d->alibi_max_bias,
                   d->scale > 0.0 ? " -DALIBI_RAW=1" : "");
  if (d->score_mod) clattn__append(opts, cap, " -DUSER_SCORE=1");
  if (d->mask_mod) clattn__append(opts, cap, " -DUSER_MASK=1");
  if (d->sinks) clattn__append(opts, cap, " -DSINKS=1");
  if (d->bias_type != CLATTN_BIAS_NONE)
    clattn__append(opts, cap, " -DBIAS=1 -DBIAS_T=%d", d->bias_type - 1);
}

void clattn__describe_mods(const clattn_attention_desc *d, char *buf, size_t cap) {
  if (d->softcap > 0.0) clattn__append(buf, cap, "; softcap %g", d->softcap);
  if (d->alibi_max_bias > 0.0) clattn__append(buf, cap, "; ALiBi max_bias %g", d->alibi_max_bias);
  if (d->sinks) clattn__append(buf, cap, "; attention sinks");
  if (d->bias_type != CLATTN_BIAS_NONE)
    clattn__append(buf, cap, "; %s bias tensor",
                   d->bias_type == CLATTN_BIAS_BOOL ? "bool" : "additive");
  if (d->score_mod) clattn__append(buf, cap, "; user score_mod");
  if (d->mask_mod) clattn__append(buf, cap, "; user mask_mod");
}

size_t clattn__bias_bytes(const clattn_attention_desc *d) {
  if (d->bias_type == CLATTN_BIAS_NONE) return 0;
  const clattn_strides *b = &d->bias_strides;
  const int64_t n[4] = {d->batch, d->heads, d->seq_q, d->seq_kv};
  const int64_t st[4] = {b->batch, b->head, b->seq, b->dim};
  uint64_t last = 0; /* the largest element offset */
  for (int i = 0; i < 4; i++) {
    const clattn__u128 t = (clattn__u128)(uint64_t)(n[i] - 1) * (uint64_t)st[i];
    if (t > (clattn__u128)(UINT64_MAX / 8)) return SIZE_MAX;
    last += (uint64_t)t;
  }
  const size_t es = d->bias_type == CLATTN_BIAS_F32 ? 4 : d->bias_type == CLATTN_BIAS_BOOL ? 1 : 2;
  const clattn__u128 bytes = ((clattn__u128)last + 1) * es;
  return bytes > (clattn__u128)(SIZE_MAX - 1) ? SIZE_MAX : (size_t)bytes;
}

char *clattn__user_source(const clattn_attention_desc *d, bool *oom) {
  *oom = false;
  if (!d->score_mod && !d->mask_mod) return NULL;
  const char *a = d->score_mod ? d->score_mod : d->mask_mod;
  const char *b =
      d->score_mod && d->mask_mod && strcmp(d->score_mod, d->mask_mod) ? d->mask_mod : NULL;
  const size_t na = strlen(a), nb = b ? strlen(b) : 0;
  char *s = malloc(na + nb + 3);
  if (!s) {
    *oom = true;
    return NULL;
  }
  memcpy(s, a, na);
  s[na] = '\n';
  if (b) memcpy(s + na + 1, b, nb);
  s[na + 1 + nb] = '\n';
  s[na + 2 + nb] = 0;
  return s;
}

size_t clattn__kv_elem_size(const clattn_attention_desc *d) {
  return d->kv_dtype != CLATTN_KV_DTYPE_SAME ? 1 : clattn__dtype_size(d->dtype);
}

/* Token scales: [rows][tokens per row][Hk], rows = batch entries (tokens =
 * seq_kv), pages (page_size), or one packed run for ragged K/V. */
void clattn__kv_scale_geometry(const clattn_attention_desc *d, int64_t *rows, int64_t *row_stride) {
  const int64_t hk = d->kv_heads > 0 ? d->kv_heads : d->heads;
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS) {
    *rows = d->num_pages;
    *row_stride = (int64_t)d->page_size * hk;
  } else if (d->ragged) {
    *rows = d->total_kv;
    *row_stride = hk; /* row = the packed token; the position adds nothing */
  } else {
    *rows = d->batch;
    *row_stride = (int64_t)d->seq_kv * hk;
  }
}

int64_t clattn__kv_scale_row_stride(const clattn_attention_desc *d) {
  int64_t rows, rs;
  clattn__kv_scale_geometry(d, &rows, &rs);
  /* packed ragged K/V: the kernels' position is the packed row already */
  return d->ragged && d->kv_layout == CLATTN_KV_CONTIGUOUS ? 0 : rs;
}

size_t clattn__kv_scale_floats(const clattn_attention_desc *d) {
  const uint64_t hk = (uint64_t)(d->kv_heads > 0 ? d->kv_heads : d->heads);
  switch (d->kv_scale) {
  case CLATTN_KV_SCALE_TENSOR: return 1;
  case CLATTN_KV_SCALE_HEAD: return (size_t)hk;
  case CLATTN_KV_SCALE_CHANNEL: return (size_t)(hk * (uint64_t)d->head_dim);
  default: break;
  }
  int64_t rows, rs;
  clattn__kv_scale_geometry(d, &rows, &rs);
  size_t n;
  if (rows < 0 || rs < 0 || !clattn__mul_size((size_t)rows, (size_t)rs, &n) || n > SIZE_MAX / 8)
    return SIZE_MAX;
  return n;
}
