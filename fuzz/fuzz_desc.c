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
  if (!g || !off || !cols) goto done;
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
  return 0;
}
