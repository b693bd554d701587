/* sparse.c — sparse masks: validation, visible key intervals per row, flash tile lists, bitmaps. */
#include "sparse.h"
#include "checked.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD(...) clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

static const char *mask_name(clattn_mask m) {
  switch (m) {
  case CLATTN_MASK_WINDOW: return "WINDOW";
  case CLATTN_MASK_DILATED: return "DILATED";
  case CLATTN_MASK_STRIDED: return "STRIDED";
  case CLATTN_MASK_BIGBIRD: return "BIGBIRD";
  case CLATTN_MASK_BLOCK_LAYOUT: return "BLOCK_LAYOUT";
  default: return "?";
  }
}

static int ceil_div(int a, int b) { return (int)(((int64_t)a + b - 1) / b); }

/* ------------------------------------------------------------------------ */
/* Validation                                                                */
/* ------------------------------------------------------------------------ */

static clattn_status check_window(clattn_context ctx, const clattn_sparse_desc *s,
                                  const char *why) {
  if (s->window_left < 0)
    return BAD("desc.sparse.window_left must be >= 0%s (got %d)", why, s->window_left);
  if (s->window_right < 0)
    return BAD("desc.sparse.window_right must be >= 0%s (got %d)", why, s->window_right);
  return CLATTN_SUCCESS;
}

clattn_status clattn__sparse_validate(clattn_context ctx, const clattn_attention_desc *d) {
  if (!clattn__mask_is_sparse(d->mask)) return CLATTN_SUCCESS;
  const clattn_sparse_desc *s = &d->sparse;
  const char *mn = mask_name(d->mask);
  clattn_status st;
  switch (d->mask) {
  case CLATTN_MASK_WINDOW:
  case CLATTN_MASK_DILATED:
  case CLATTN_MASK_STRIDED:
    if ((st = check_window(ctx, s, "")) != CLATTN_SUCCESS) return st;
    if (s->num_global < 0)
      return BAD("desc.sparse.num_global must be >= 0 (got %d)", s->num_global);
    if (s->num_global_tokens < 0)
      return BAD("desc.sparse.num_global_tokens must be >= 0 (got %d)", s->num_global_tokens);
    if (s->num_global_tokens > 0 && !s->global_tokens)
      return BAD("desc.sparse.global_tokens is NULL but num_global_tokens is %d",
                 s->num_global_tokens);
    for (int i = 0; i < s->num_global_tokens; i++)
      if (s->global_tokens[i] < 0 || s->global_tokens[i] >= d->seq_kv)
        return BAD("desc.sparse.global_tokens[%d] = %d is outside the key positions 0..%d "
                   "(seq_kv - 1)",
                   i, s->global_tokens[i], d->seq_kv - 1);
    if (d->mask == CLATTN_MASK_DILATED && s->dilation < 1)
      return BAD("desc.sparse.dilation must be >= 1 for mask DILATED (got %d)", s->dilation);
    if (d->mask == CLATTN_MASK_STRIDED && s->stride < 1)
      return BAD("desc.sparse.stride must be >= 1 for mask STRIDED (got %d)", s->stride);
    return CLATTN_SUCCESS;
  case CLATTN_MASK_BIGBIRD:
  case CLATTN_MASK_BLOCK_LAYOUT: break;
  default: return CLATTN_SUCCESS;
  }
  if (s->block_size < 1)
    return BAD("desc.sparse.block_size must be >= 1 for mask %s (got %d)", mn, s->block_size);
  if (s->element_window && (st = check_window(ctx, s, " with element_window")) != CLATTN_SUCCESS)
    return st;
  const int nkb = ceil_div(d->seq_kv, s->block_size);
  if (d->mask == CLATTN_MASK_BIGBIRD) {
    if (s->window_blocks < 0)
      return BAD("desc.sparse.window_blocks must be >= 0 (got %d)", s->window_blocks);
    if (s->global_blocks < 0)
      return BAD("desc.sparse.global_blocks must be >= 0 (got %d)", s->global_blocks);
    if (s->random_blocks < 0)
      return BAD("desc.sparse.random_blocks must be >= 0 (got %d)", s->random_blocks);
    return CLATTN_SUCCESS;
  }
  if (s->layout_rows != nkb)
    return BAD("desc.sparse.layout_rows must be ceil(seq_kv / block_size) = ceil(%d / %d) = %d "
               "(one row per query block, positions aligned as documented; got %d)",
               d->seq_kv, s->block_size, nkb, s->layout_rows);
  if (!s->layout_row_offsets) return BAD("desc.sparse.layout_row_offsets is NULL");
  const int *ro = s->layout_row_offsets;
  if (ro[0] != 0) return BAD("desc.sparse.layout_row_offsets[0] must be 0 (got %d)", ro[0]);
  for (int r = 0; r < nkb; r++)
    if (ro[r + 1] < ro[r])
      return BAD("desc.sparse.layout_row_offsets must be non-decreasing: entry %d is %d after "
                 "%d",
                 r + 1, ro[r + 1], ro[r]);
  if (ro[nkb] > 0 && !s->layout_cols)
    return BAD("desc.sparse.layout_cols is NULL but the offsets list %d entries", ro[nkb]);
  for (int r = 0; r < nkb; r++)
    for (int e = ro[r]; e < ro[r + 1]; e++) {
      const int c = s->layout_cols[e];
      if (c < 0 || c >= nkb)
        return BAD("desc.sparse.layout_cols[%d] = %d (row %d) is outside the key blocks "
                   "0..%d",
                   e, c, r, nkb - 1);
      if (e > ro[r] && c <= s->layout_cols[e - 1])
        return BAD("desc.sparse.layout_cols of row %d must be strictly increasing (sorted, no "
                   "duplicates): layout_cols[%d] = %d follows %d",
                   r, e, c, s->layout_cols[e - 1]);
    }
  return CLATTN_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* BigBird random blocks                                                     */
/* ------------------------------------------------------------------------ */

int clattn__bigbird_random(uint64_t seed, int qb, int nkb, int global_blocks, int window_blocks,
                           int causal, int random_blocks, int *scratch, int *out) {
  /* The candidates, ascending, are [G, U] minus the window [wlo, whi]: two
   * runs, so candidate i is computed, not listed (O(R) per query block). */
  const int64_t G = global_blocks, U = causal ? qb : (int64_t)nkb - 1;
  const int64_t wlo = (int64_t)qb - window_blocks, whi = (int64_t)qb + window_blocks;
  const int64_t e1 = U < wlo - 1 ? U : wlo - 1; /* first run: [G, e1] */
  const int64_t n1 = e1 >= G ? e1 - G + 1 : 0;
  const int64_t s2 = whi + 1 > G ? whi + 1 : G; /* second run: [s2, U] */
  const int64_t n2 = U >= s2 ? U - s2 + 1 : 0;
  const int n = (int)(n1 + n2);
  const int r = random_blocks < n ? random_blocks : n;
  uint64_t state = seed ^ ((uint64_t)qb + 1u) * 0xD1B54A32D192ED03ull;
  if ((int64_t)r * r > n) { /* many draws: list the candidates */
    for (int i = 0; i < n; i++)
      scratch[i] = (int)(i < n1 ? G + i : s2 + (i - n1));
    for (int t = 0; t < r; t++) {
      const int u = t + (int)(clattn__splitmix64(&state) % (uint64_t)(n - t));
      const int x = scratch[t];
      scratch[t] = scratch[u];
      scratch[u] = x;
      out[t] = scratch[t];
    }
    return r;
  }
  /* Few draws: the same shuffle on a virtual array; scratch holds the
   * (index, value) pairs of the positions swapped so far. */
  int nsw = 0;
  for (int t = 0; t < r; t++) {
    const int u = t + (int)(clattn__splitmix64(&state) % (uint64_t)(n - t));
    int64_t vt = t < n1 ? G + t : s2 + (t - n1), vu = u < n1 ? G + u : s2 + (u - n1);
    int it = -1, iu = -1;
    for (int k = 0; k < nsw; k++) {
      if (scratch[2 * k] == t) it = k;
      if (scratch[2 * k] == u) iu = k;
    }
    if (it >= 0) vt = scratch[2 * it + 1];
    if (iu >= 0) vu = scratch[2 * iu + 1];
    out[t] = (int)vu; /* position t now holds the old value at u */
    if (iu < 0) {
      iu = nsw++;
      scratch[2 * iu] = u;
    }
    scratch[2 * iu + 1] = (int)vt; /* position u gets the old value at t */
  }
  return r;
}

/* ------------------------------------------------------------------------ */
/* Plan set-up                                                               */
/* ------------------------------------------------------------------------ */

static int cmp_int(const void *a, const void *b) {
  const int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* Block lists of BigBird: global blocks, the window band and the random blocks. */
static clattn_status bigbird_lists(clattn_context ctx, clattn__sparse *s,
                                   const clattn_sparse_desc *sd) {
  const int nkb = s->nkb, G = sd->global_blocks < nkb ? sd->global_blocks : nkb;
  const int W = sd->window_blocks, R = sd->random_blocks;
  /* A row lists at most nkb blocks: reserve that much before filling it. */
  int *scratch = malloc(((size_t)nkb * 2 + 2) * sizeof(int));
  int *rnd = malloc((size_t)nkb * sizeof(int));
  s->brow = malloc(((size_t)nkb + 1) * sizeof(int));
  size_t cap = (size_t)nkb * 4 + 16, n = 0;
  s->bcol = malloc(cap * sizeof(int));
  clattn_status st = CLATTN_SUCCESS;
  if (!scratch || !rnd || !s->brow || !s->bcol) {
    st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate BigBird block lists");
    goto done;
  }
  s->brow[0] = 0;
  for (int qb = 0; qb < nkb; qb++) {
    size_t need = n + (size_t)nkb;
    if (need > cap) {
      size_t nc = cap * 2 > need ? cap * 2 : need;
      int *nb = realloc(s->bcol, nc * sizeof(int));
      if (!nb) {
        st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate BigBird block lists");
        goto done;
      }
      s->bcol = nb;
      cap = nc;
    }
    if (n + (size_t)nkb > (size_t)INT32_MAX) {
      st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                        "BigBird layout has more than 2^31 blocks; use a larger block_size");
      goto done;
    }
    int *dst = s->bcol + n;
    int m = 0;
    if (qb < G) {
      for (int kb = 0; kb < nkb; kb++)
        dst[m++] = kb;
    } else {
      const int nr = clattn__bigbird_random(sd->seed, qb, nkb, G, W, sd->causal, R, scratch, rnd);
      /* Ascending merge of [0, G), the band and the marked random blocks. */
      const int64_t blo = (int64_t)qb - W < 0 ? 0 : (int64_t)qb - W;
      const int64_t bhi = (int64_t)qb + W > nkb - 1 ? nkb - 1 : (int64_t)qb + W;
      for (int kb = 0; kb < G; kb++)
        dst[m++] = kb;
      qsort(rnd, (size_t)nr, sizeof(int), cmp_int);
      int ri = 0;
      for (int64_t kb = blo > G ? blo : G; kb <= bhi; kb++) {
        while (ri < nr && rnd[ri] < kb)
          dst[m++] = rnd[ri++];
        dst[m++] = (int)kb;
      }
      while (ri < nr)
        dst[m++] = rnd[ri++];
    }
    n += (size_t)m;
    s->brow[qb + 1] = (int)n;
  }
done:
  free(scratch);
  free(rnd);
  return st;
}

static clattn_status global_runs(clattn_context ctx, clattn__sparse *s) {
  const int ng = s->nglobal < s->nk ? s->nglobal : s->nk;
  s->gruns = malloc(((size_t)s->ngtok + 1) * sizeof(clattn__ivl));
  if (!s->gruns) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate globals");
  int n = 0;
  if (ng > 0) s->gruns[n++] = (clattn__ivl){0, ng};
  for (int i = 0; i < s->ngtok; i++) {
    const int t = s->gtok[i];
    if (n > 0 && t <= s->gruns[n - 1].b) {
      if (t + 1 > s->gruns[n - 1].b) s->gruns[n - 1].b = t + 1;
    } else {
      s->gruns[n++] = (clattn__ivl){t, t + 1};
    }
  }
  s->ngruns = n;
  return CLATTN_SUCCESS;
}

clattn_status clattn__sparse_plan_init(clattn_plan p, uint64_t *pairs_per_head) {
  clattn_context ctx = p->ctx;
  clattn_attention_desc *d = &p->desc;
  clattn_sparse_desc *sd = &d->sparse;
  clattn__sparse *s = calloc(1, sizeof *s);
  if (!s) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate sparse state");
  p->sparse = s;
  s->nq = d->seq_q;
  s->nk = d->seq_kv;
  s->off = d->seq_kv - d->seq_q;
  s->causal = sd->causal != 0;
  s->step = 1;
  const bool element = d->mask <= CLATTN_MASK_STRIDED;
  s->cls = element ? CLATTN__SPARSE_ELEMENT : CLATTN__SPARSE_BLOCK;
  /* The caller's arrays are not kept: drop the pointers this mask ignores. */
  const int *tok = sd->global_tokens;
  const int *ro = sd->layout_row_offsets, *co = sd->layout_cols;
  sd->global_tokens = NULL;
  sd->layout_row_offsets = NULL;
  sd->layout_cols = NULL;
  if (element) {
    s->left = sd->window_left;
    s->right = sd->window_right;
    s->nglobal = sd->num_global;
    if (d->mask == CLATTN_MASK_DILATED) s->step = sd->dilation;
    if (d->mask == CLATTN_MASK_STRIDED) s->stride = sd->stride;
    if (sd->num_global_tokens > 0) {
      s->gtok = malloc((size_t)sd->num_global_tokens * sizeof(int));
      if (!s->gtok) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy tokens");
      memcpy(s->gtok, tok, (size_t)sd->num_global_tokens * sizeof(int));
      /* The plan's descriptor points at its copy, sorted and unique. */
      sd->global_tokens = s->gtok;
      qsort(s->gtok, (size_t)sd->num_global_tokens, sizeof(int), cmp_int);
      int n = 0;
      for (int i = 0; i < sd->num_global_tokens; i++)
        if (n == 0 || s->gtok[n - 1] != s->gtok[i]) s->gtok[n++] = s->gtok[i];
      s->ngtok = n;
      sd->num_global_tokens = n;
    } else {
      sd->num_global_tokens = 0;
    }
    clattn_status st = global_runs(ctx, s);
    if (st != CLATTN_SUCCESS) return st;
    /* Global-token bitmap (positions < nglobal are compared, not stored). */
    if (s->ngtok > 0) {
      s->bits_words = ((size_t)s->nk + 31) / 32;
      s->bits = calloc(s->bits_words, sizeof(uint32_t));
      if (!s->bits) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate bits");
      for (int i = 0; i < s->ngtok; i++)
        s->bits[s->gtok[i] >> 5] |= 1u << (s->gtok[i] & 31);
    }
  } else {
    s->bs = sd->block_size;
    s->nkb = ceil_div(s->nk, s->bs);
    s->ewin = sd->element_window != 0;
    if (s->ewin) {
      s->left = sd->window_left;
      s->right = sd->window_right;
    }
    if (d->mask == CLATTN_MASK_BIGBIRD) {
      clattn_status st = bigbird_lists(ctx, s, sd);
      if (st != CLATTN_SUCCESS) return st;
      sd->layout_rows = 0;
    } else {
      const size_t nnz = (size_t)ro[s->nkb];
      s->brow = malloc(((size_t)s->nkb + 1) * sizeof(int));
      s->bcol = malloc((nnz ? nnz : 1) * sizeof(int));
      if (!s->brow || !s->bcol)
        return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy the block layout");
      memcpy(s->brow, ro, ((size_t)s->nkb + 1) * sizeof(int));
      if (nnz) memcpy(s->bcol, co, nnz * sizeof(int));
      sd->layout_row_offsets = s->brow;
      sd->layout_cols = s->bcol;
    }
    /* Bitmap rows for the query blocks that hold queries: qb0 .. nkb - 1. */
    s->qb0 = s->off > 0 ? s->off / s->bs : 0;
    s->row_words = (s->nkb + 31) / 32;
    const size_t rows = (size_t)(s->nkb - s->qb0);
    size_t bytes = SIZE_MAX;
    if (!clattn__mul_size(rows, (size_t)s->row_words, &s->bits_words) ||
        !clattn__mul_size(s->bits_words, sizeof(uint32_t), &bytes))
      bytes = SIZE_MAX;
    if (bytes > (size_t)ctx->info.max_alloc)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "the %s mask needs a %zu-byte block bitmap (%zu query blocks x %d key "
                          "blocks of block_size %d) but the device allows %llu bytes in one "
                          "buffer; use a larger block_size",
                          mask_name(d->mask), bytes, rows, s->nkb, s->bs,
                          (unsigned long long)ctx->info.max_alloc);
    s->bits = calloc(s->bits_words ? s->bits_words : 1, sizeof(uint32_t));
    if (!s->bits)
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY,
                          "cannot allocate the %zu-byte host block bitmap", bytes);
    for (int qb = s->qb0; qb < s->nkb; qb++) {
      uint32_t *row = s->bits + (size_t)(qb - s->qb0) * (size_t)s->row_words;
      for (int e = s->brow[qb]; e < s->brow[qb + 1]; e++)
        row[s->bcol[e] >> 5] |= 1u << (s->bcol[e] & 31);
    }
  }

  /* Visible pairs, from the same row intervals the tile lists are made of. */
  clattn__ivl *buf = NULL;
  int cap = 0;
  uint64_t pairs = 0;
  for (int i = 0; i < s->nq; i++) {
    const int n = clattn__sparse_row(s, i + s->off, &buf, &cap);
    if (n < 0) {
      free(buf);
      return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate row intervals");
    }
    for (int t = 0; t < n; t++)
      pairs += (uint64_t)(buf[t].b - buf[t].a);
  }
  free(buf);
  *pairs_per_head = pairs;
  return CLATTN_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* Row intervals                                                             */
/* ------------------------------------------------------------------------ */

static int push(clattn__ivl **buf, int *cap, int n, int64_t a, int64_t b) {
  if (n == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    clattn__ivl *nb = realloc(*buf, (size_t)nc * sizeof **buf);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
  }
  (*buf)[n] = (clattn__ivl){(int)a, (int)b};
  return n + 1;
}

void clattn__sparse_options(const clattn__sparse *s, char *opts, size_t cap) {
  clattn__append(opts, cap, " -DSPARSE=%d", s->cls);
  if (s->cls == CLATTN__SPARSE_ELEMENT && s->step == 1 && s->stride == 0 && s->nglobal == 0 &&
      s->ngtok == 0)
    clattn__append(opts, cap, " -DSP_BAND=1");
}

static bool is_global(const clattn__sparse *s, int pos) {
  if (pos < 0) return false;
  if (pos < s->nglobal) return true;
  if (!s->ngtok) return false;
  return bsearch(&pos, s->gtok, (size_t)s->ngtok, sizeof(int), cmp_int) != NULL;
}

#define PUSH(a, b)                                                                                 \
  do {                                                                                             \
    if ((n = push(buf, cap, n, (a), (b))) < 0) return -1;                                          \
  } while (0)

int clattn__sparse_row(const clattn__sparse *s, int pos, clattn__ivl **buf, int *cap) {
  int64_t hi = s->nk - 1; /* inclusive */
  if (s->causal && pos < hi) hi = pos;
  if (hi < 0) return 0;
  int n = 0;
  if (s->cls == CLATTN__SPARSE_BLOCK) {
    if (pos < 0 || pos >= s->nk) return 0;
    int64_t lo = 0;
    if (s->ewin) {
      if ((int64_t)pos - s->left > lo) lo = (int64_t)pos - s->left;
      if ((int64_t)pos + s->right < hi) hi = (int64_t)pos + s->right;
    }
    const int qb = pos / s->bs;
    for (int e = s->brow[qb]; e < s->brow[qb + 1]; e++) {
      int64_t a = (int64_t)s->bcol[e] * s->bs, b = a + s->bs;
      if (a < lo) a = lo;
      if (b > hi + 1) b = hi + 1;
      if (a >= b) continue;
      if (n > 0 && (*buf)[n - 1].b >= a)
        (*buf)[n - 1].b = (int)b;
      else
        PUSH(a, b);
    }
    return n;
  }
  if (pos >= 0 && pos < s->nk && is_global(s, pos)) {
    PUSH(0, hi + 1);
    return n;
  }
  int64_t blo = (int64_t)pos - s->left, bhi = (int64_t)pos + s->right;
  if (blo < 0) blo = 0;
  if (bhi > hi) bhi = hi;
  if (blo <= bhi) {
    if (s->step == 1) {
      PUSH(blo, bhi + 1);
    } else {
      int64_t r = ((int64_t)pos - blo) % s->step;
      if (r < 0) r += s->step;
      for (int64_t j = blo + r; j <= bhi; j += s->step)
        PUSH(j, j + 1);
    }
  }
  const int end_band = n;
  if (s->stride > 0) {
    int64_t r = (int64_t)pos % s->stride;
    if (r < 0) r += s->stride;
    for (int64_t j = r; j <= hi; j += s->stride)
      PUSH(j, j + 1);
  }
  const int end_stride = n;
  for (int g = 0; g < s->ngruns && s->gruns[g].a <= hi; g++)
    PUSH(s->gruns[g].a, s->gruns[g].b < hi + 1 ? s->gruns[g].b : hi + 1);
  /* Three sorted groups (band, stride points, global runs): merge them into
   * buf[n .. 2n), coalescing overlapping and adjacent intervals, and move the
   * result to the front. Linear in the number of intervals. */
  const int total = n;
  if (total == 0) return 0; /* nothing visible (and *buf may still be NULL) */
  for (int t = 0; t < total; t++)
    PUSH(0, 0); /* room for the merged copy */
  clattn__ivl *b = *buf, *out = b + total;
  int head[3] = {0, end_band, end_stride}, end[3] = {end_band, end_stride, total}, m = 0;
  for (;;) {
    int best = -1;
    for (int g = 0; g < 3; g++)
      if (head[g] < end[g] && (best < 0 || b[head[g]].a < b[head[best]].a)) best = g;
    if (best < 0) break;
    const clattn__ivl x = b[head[best]++];
    if (m > 0 && x.a <= out[m - 1].b) {
      if (x.b > out[m - 1].b) out[m - 1].b = x.b;
    } else {
      out[m++] = x;
    }
  }
  if (m > 0) memmove(b, out, (size_t)m * sizeof *b);
  n = m;
  return n;
}

/* ------------------------------------------------------------------------ */
/* Device data                                                               */
/* ------------------------------------------------------------------------ */

static clattn_status upload(clattn_context ctx, const void *host, size_t bytes, cl_mem *out,
                            const char *what) {
  static const int dummy = 0;
  cl_int err;
  if (bytes == 0) {
    host = &dummy;
    bytes = sizeof dummy;
  }
  *out = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, (void *)host,
                        &err);
  if (!*out) return clattn__cl_fail(ctx, "clCreateBuffer", err, what);
  return CLATTN_SUCCESS;
}

clattn_status clattn__sparse_upload_bits(clattn_plan p) {
  clattn__sparse *s = p->sparse;
  if (s->bits_mem) return CLATTN_SUCCESS;
  size_t bytes = s->bits_words * sizeof(uint32_t);
  s->device_bytes += bytes ? bytes : sizeof(int);
  if (p->estimate) return CLATTN_SUCCESS; /* counted, not uploaded */
  return upload(p->ctx, s->bits, bytes, &s->bits_mem, "sparse mask bitmap");
}

typedef struct qt_len {
  int len, qt;
} qt_len;

static int cmp_qt_len(const void *a, const void *b) {
  const qt_len *x = a, *y = b;
  if (x->len != y->len) return x->len < y->len ? 1 : -1;
  return (x->qt > y->qt) - (x->qt < y->qt);
}

clattn_status clattn__sparse_build_tiles(clattn_plan p, int bm, int bn) {
  clattn_context ctx = p->ctx;
  clattn__sparse *s = p->sparse;
  const int nqt = ceil_div(s->nq, bm), nkt = ceil_div(s->nk, bn);
  int *cnt = calloc((size_t)nkt, sizeof(int));
  int *touched = malloc((size_t)nkt * sizeof(int));
  int *off = malloc(((size_t)nqt * 2 + 1) * sizeof(int));
  qt_len *order = malloc((size_t)nqt * sizeof(qt_len));
  size_t cap = (size_t)nqt * 4 + 64, n = 0;
  int *idx = malloc(cap * sizeof(int));
  clattn__ivl *buf = NULL;
  int bcap = 0;
  clattn_status st = CLATTN_SUCCESS;
  if (!cnt || !touched || !off || !order || !idx) {
    st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate sparse tile lists");
    goto done;
  }
  off[0] = 0;
  s->tiles_partial = 0;
  for (int qt = 0; qt < nqt; qt++) {
    const int q0 = qt * bm, rows = s->nq - q0 < bm ? s->nq - q0 : bm;
    int nt = 0;
    for (int r = 0; r < rows; r++) {
      const int m = clattn__sparse_row(s, q0 + r + s->off, &buf, &bcap);
      if (m < 0) {
        st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate row intervals");
        goto done;
      }
      for (int t = 0; t < m; t++) {
        const int a = buf[t].a, b = buf[t].b;
        for (int kt = a / bn; kt <= (b - 1) / bn; kt++) {
          const int lo = kt * bn > a ? kt * bn : a;
          const int hi = (kt + 1) * bn < b ? (kt + 1) * bn : b;
          if (cnt[kt] == 0) touched[nt++] = kt;
          cnt[kt] += hi - lo;
        }
      }
    }
    qsort(touched, (size_t)nt, sizeof(int), cmp_int);
    if (n + (size_t)nt > cap) {
      size_t nc = cap * 2 > n + (size_t)nt ? cap * 2 : n + (size_t)nt;
      int *ni = realloc(idx, nc * sizeof(int));
      if (!ni) {
        st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate sparse tile lists");
        goto done;
      }
      idx = ni;
      cap = nc;
    }
    if (n + (size_t)nt > (size_t)INT32_MAX) {
      st = clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "sparse tile lists exceed 2^31 tiles");
      goto done;
    }
    for (int t = 0; t < nt; t++) {
      const int kt = touched[t];
      const int keys = s->nk - kt * bn < bn ? s->nk - kt * bn : bn;
      const int partial = cnt[kt] < rows * keys;
      s->tiles_partial += (size_t)partial;
      idx[n++] = kt << 1 | partial;
      cnt[kt] = 0;
    }
    off[qt + 1] = (int)n;
    order[qt] = (qt_len){nt, qt};
  }
  /* Launch order: the longest lists first (global rows, dense bands). */
  qsort(order, (size_t)nqt, sizeof *order, cmp_qt_len);
  for (int qt = 0; qt < nqt; qt++)
    off[nqt + 1 + qt] = order[qt].qt;
  s->tile_bm = bm;
  s->tile_bn = bn;
  s->tile_entries = n;
  if (p->estimate) { /* clattn_plan_estimate: counted, not uploaded */
    s->device_bytes += ((size_t)nqt * 2 + 1) * sizeof(int) + (n ? n : 1) * sizeof(int);
    st = clattn__sparse_upload_bits(p);
    goto done;
  }
  if ((st = upload(ctx, off, ((size_t)nqt * 2 + 1) * sizeof(int), &s->tile_off_mem,
                   "sparse tile offsets")) != CLATTN_SUCCESS)
    goto done;
  if ((st = upload(ctx, idx, n * sizeof(int), &s->tile_idx_mem, "sparse tile lists")) !=
      CLATTN_SUCCESS)
    goto done;
  s->device_bytes += ((size_t)nqt * 2 + 1) * sizeof(int) + (n ? n : 1) * sizeof(int);
  st = clattn__sparse_upload_bits(p);
done:
  free(cnt);
  free(touched);
  free(off);
  free(order);
  free(idx);
  free(buf);
  return st;
}

cl_int clattn__sparse_set_mask_args(const clattn__sparse *s, cl_kernel k, cl_uint first) {
  const int flags = (s->causal ? CLATTN__SP_CAUSAL : 0) | (s->ngtok ? CLATTN__SP_GBITS : 0) |
                    (s->ewin ? CLATTN__SP_EWIN : 0);
  const int v[CLATTN__SP_NUM_INT_ARGS] = {s->left, s->right,     s->step, s->stride, s->nglobal,
                                          s->bs,   s->row_words, s->qb0,  flags};
  cl_int err = clSetKernelArg(k, first, sizeof(cl_mem), &s->bits_mem);
  for (int i = 0; i < CLATTN__SP_NUM_INT_ARGS; i++)
    err |= clSetKernelArg(k, first + 1 + (cl_uint)i, sizeof(int), &v[i]);
  return err;
}

void clattn__sparse_describe(const clattn_attention_desc *d, char *buf, size_t cap) {
  const clattn_sparse_desc *s = &d->sparse;
  buf[0] = 0;
  switch (d->mask) {
  case CLATTN_MASK_WINDOW:
  case CLATTN_MASK_DILATED:
  case CLATTN_MASK_STRIDED:
    clattn__append(buf, cap, "%s L=%d R=%d", clattn_mask_name(d->mask), s->window_left,
                   s->window_right);
    if (d->mask == CLATTN_MASK_DILATED) clattn__append(buf, cap, " d=%d", s->dilation);
    if (d->mask == CLATTN_MASK_STRIDED) clattn__append(buf, cap, " s=%d", s->stride);
    if (s->num_global || s->num_global_tokens)
      clattn__append(buf, cap, " global=%d+%d", s->num_global, s->num_global_tokens);
    break;
  case CLATTN_MASK_BIGBIRD:
    clattn__append(buf, cap, "bigbird b=%d w=%d g=%d r=%d seed=%llu", s->block_size,
                   s->window_blocks, s->global_blocks, s->random_blocks,
                   (unsigned long long)s->seed);
    break;
  case CLATTN_MASK_BLOCK_LAYOUT:
    clattn__append(buf, cap, "layout b=%d rows=%d", s->block_size, s->layout_rows);
    break;
  default: return;
  }
  if ((d->mask == CLATTN_MASK_BIGBIRD || d->mask == CLATTN_MASK_BLOCK_LAYOUT) && s->element_window)
    clattn__append(buf, cap, " window L=%d R=%d", s->window_left, s->window_right);
  if (s->causal) clattn__append(buf, cap, " causal");
}

void clattn__sparse_release(clattn_plan p) {
  clattn__sparse *s = p->sparse;
  if (!s) return;
  if (s->bits_mem) clReleaseMemObject(s->bits_mem);
  if (s->tile_off_mem) clReleaseMemObject(s->tile_off_mem);
  if (s->tile_idx_mem) clReleaseMemObject(s->tile_idx_mem);
  free(s->gtok);
  free(s->gruns);
  free(s->brow);
  free(s->bcol);
  free(s->bits);
  free(s);
  p->sparse = NULL;
}
