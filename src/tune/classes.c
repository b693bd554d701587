/* classes.c — problem classes of the tuning database (head-dim and sequence buckets) and
 * kernel-source hashes. */
#include "tune.h"
#include "sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  snprintf(buf, cap, "%s %s d=%d mask=%s seq=%s", c->kernel, clattn_dtype_name(c->dtype),
           c->head_dim, clattn_mask_name(c->mask), seq);
}

clattn_status clattn__source_hash(clattn_context ctx, const clattn__variant *v, char out[17]) {
  const int idx = clattn__variant_index(v);
  if (idx >= 0 && ctx->source_hash && ctx->source_hash[idx][0]) {
    memcpy(out, ctx->source_hash[idx], 17);
    return CLATTN_SUCCESS;
  }
  clattn__sha256_ctx h;
  clattn__sha256_init(&h);
  for (int i = -1; v->sources[i < 0 ? 0 : i]; i++) {
    const char *name = i < 0 ? "common.cl" : v->sources[i];
    char *src = clattn__kernel_source(ctx, name);
    if (!src) return CLATTN_ERROR_IO;
    clattn__sha256_update(&h, name, strlen(name) + 1);
    clattn__sha256_update(&h, src, strlen(src) + 1);
    free(src);
  }
  uint8_t dig[32];
  clattn__sha256_final(&h, dig);
  clattn__hex(dig, 8, out);
  if (idx >= 0 && ctx->source_hash) memcpy(ctx->source_hash[idx], out, 17);
  return CLATTN_SUCCESS;
}
