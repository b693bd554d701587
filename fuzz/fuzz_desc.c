/* fuzz_desc.c — libFuzzer harness: descriptor validation (clattn__desc_resolve,
 * clattn_attention_desc_strides) on arbitrary descriptors, no device. */
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARR 4096 /* entries of the owned global-token, offset and column arrays */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  /* Byte 0: which pointers are set; then the descriptor's bytes; the rest
   * fills the arrays. */
  unsigned flags = size ? data[0] : 0;
  if (size) data++, size--;
  size_t nd = size < sizeof d ? size : sizeof d;
  memcpy(&d, data, nd);
  data += nd;
  size -= nd;
  int *g = calloc(ARR, sizeof *g), *off = calloc(ARR + 1, sizeof *off),
      *cols = calloc(ARR, sizeof *cols);
  char *text = calloc(ARR + 1, 1); /* the user functions' source: NUL-terminated */
  float *sinks = calloc(ARR, sizeof *sinks);
  if (!g || !off || !cols || !text || !sinks) goto done;
  for (size_t i = 0; i < size && i < ARR; i++)
    text[i] = (char)data[i];
  for (size_t i = 0; i < size / 4 && i < ARR; i++)
    memcpy(&sinks[i], data + 4 * i, 4);
  for (size_t i = 0; i < size / 4; i++) {
    int v;
    memcpy(&v, data + 4 * i, 4);
    if (i < ARR) g[i] = v;
    if (i < ARR + 1) off[i] = v;
    if (i < ARR) cols[i] = v;
  }
  /* The arrays' lengths are the caller's contract: keep counts within them
   * (negative counts stay, to be refused). Offsets above ARR would let a
   * valid layout name more columns than the array holds. */
  d.sparse.global_tokens = (flags & 1) ? g : NULL;
  if (d.sparse.global_tokens && d.sparse.num_global_tokens > ARR) d.sparse.num_global_tokens = ARR;
  d.sparse.layout_row_offsets = (flags & 2) ? off : NULL;
  d.sparse.layout_cols = (flags & 4) ? cols : NULL;
  if (d.sparse.layout_row_offsets && d.sparse.layout_rows > ARR) d.sparse.layout_rows = ARR;
  for (int i = 0; i <= ARR; i++)
    if (off[i] > ARR) off[i] = ARR;
  if (!d.sparse.layout_cols && (flags & 8)) {
    free(cols);
    cols = NULL;
  }
  /* The user functions (strings) and the sinks (heads floats): owned
   * memory or NULL, as the caller's contract says. */
  d.score_mod = (flags & 16) ? text : NULL;
  d.mask_mod = (flags & 32) ? text : NULL;
  d.sinks = (flags & 64) ? sinks : NULL;
  if (d.sinks && d.heads > ARR) d.heads = ARR;
  clattn_attention_desc out;
  clattn_strides s[4];
  size_t el[4];
  (void)clattn__desc_resolve(NULL, &d, &out, &s[0], &s[1], &s[2], &s[3], el);
  (void)clattn_attention_desc_strides(&d, &s[0], &s[1], &s[2], &s[3], el);
  (void)clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, el);
done:
  free(g);
  free(off);
  free(cols);
  free(text);
  free(sinks);
  return 0;
}
