/* sha256.h — SHA-256 (sha256.c) for cache keys and kernel-source hashes. */
#ifndef CLATTN_SHA256_H
#define CLATTN_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct clattn__sha256_ctx {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t fill;
} clattn__sha256_ctx;

void clattn__sha256_init(clattn__sha256_ctx *s);
void clattn__sha256_update(clattn__sha256_ctx *s, const void *data, size_t n);
void clattn__sha256_final(clattn__sha256_ctx *s, uint8_t out[32]);
void clattn__sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n + 1 chars). */
void clattn__hex(const uint8_t *bytes, size_t n, char *out);

#endif
