/* devtool.h — what the standalone dev tools of bench/ (nv_build_log.c, tma_probe.c) share: reading
 * a file whole. */
#ifndef CLATTN_BENCH_DEVTOOL_H
#define CLATTN_BENCH_DEVTOOL_H
#include <stdio.h>
#include <stdlib.h>

/* the file's bytes and a terminating NUL (NULL when it cannot be opened) */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = 0;
  fclose(f);
  return s;
}
#endif
