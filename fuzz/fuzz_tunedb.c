/* fuzz_tunedb.c — libFuzzer harness: tuning-database text round trip (parse → format → parse gives
 * the same database). */
#include "tune.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_tunedb: round trip changed %s\n", what);
    abort();
  }
}

/* "-" is how the format writes an empty cc (no NVIDIA compute capability). */
static const char *cc_of(const clattn__tunedb *db) { return db->cc[0] ? db->cc : "-"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  clattn__tunedb a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (clattn__tunedb_parse(text, "fuzz", &a) != CLATTN_SUCCESS) goto done;
  char *out = clattn__tunedb_format(&a);
  if (!out) goto done;
  check(clattn__tunedb_parse(out, "fuzz2", &b) == CLATTN_SUCCESS, "status");
  check(b.bad_lines == 0, "bad lines (the writer wrote a line the reader rejects)");
  check(b.has_header && !b.unreadable, "header");
  check(a.n == b.n, "entry count");
  check(!strcmp(a.platform, b.platform) && !strcmp(a.vendor, b.vendor) &&
            !strcmp(a.device, b.device) && !strcmp(a.driver, b.driver) &&
            !strcmp(cc_of(&a), cc_of(&b)),
        "identity");
  for (int i = 0; i < a.n; i++) {
    const clattn__tunedb_entry *x = &a.e[i], *y = NULL;
    for (int j = 0; j < b.n && !y; j++)
      if (!strcmp(x->kernel, b.e[j].kernel) && !strcmp(x->src, b.e[j].src) &&
          x->dtype == b.e[j].dtype && x->head_dim == b.e[j].head_dim && x->mask == b.e[j].mask &&
          x->seq == b.e[j].seq)
        y = &b.e[j];
    check(y != NULL, "entry keys");
    check(!strcmp(x->config, y->config) && !strcmp(x->date, y->date) && x->verified == y->verified,
          "entry fields");
    /* timings are written with 4 decimals */
    check((x->ms < 0) == (y->ms < 0) && fabs(x->ms - y->ms) <= 0.51e-4 * (1 + fabs(x->ms) * 1e-9),
          "ms");
    check((x->default_ms < 0) == (y->default_ms < 0) &&
              fabs(x->default_ms - y->default_ms) <= 0.51e-4 * (1 + fabs(x->default_ms) * 1e-9),
          "default_ms");
  }
  free(out);
done:
  clattn__tunedb_free(&a);
  clattn__tunedb_free(&b);
  free(text);
  return 0;
}
