/* fuzz_binary_cache.c — libFuzzer harness: validation of program-binary cache files
 * (clattn__binary_cache_validate: header, lengths, key, checksum), no OpenCL. */
#include "cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size heap copy: ASan sees any read past the file. */
  uint8_t *b = malloc(size ? size : 1);
  if (!b) return 0;
  memcpy(b, data, size);
  uint8_t keys[2][32];
  memset(keys[0], 0, 32);
  /* The file's own key field, so the checksum path is reached. */
  memcpy(keys[1], size >= 56 ? b + 24 : keys[0], 32);
  for (int k = 0; k < 2; k++) {
    const uint8_t *payload = NULL;
    size_t len = 0;
    const char *why = clattn__binary_cache_validate(b, size, keys[k], &payload, &len);
    if (!why) {
      if (!payload || len == 0 || payload < b || payload + len != b + size) abort();
      volatile uint8_t sum = 0;
      for (size_t i = 0; i < len; i++)
        sum ^= payload[i];
      (void)sum;
    } else if (payload || len || !*why) {
      abort();
    }
  }
  free(b);
  return 0;
}
