/* fuzz_layout.c — libFuzzer harness: the CLI's block-layout file parser (--mask layout:FILE,
 * src/cli/mask.c) on arbitrary file contents, then the library's validation of the layout. */
#define _GNU_SOURCE
#include "cli.h"
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The input becomes a file without touching the disk: a memfd, opened by
 * the parser through /proc/self/fd (no change to the parser needed). */
static int fd = -1;
static char spec[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fd = memfd_create("layout", 0);
  if (fd < 0) abort();
  snprintf(spec, sizeof spec, "layout:/proc/self/fd/%d", fd);
  /* The parser reports errors on stderr: run with -close_fd_mask=2 (fuzz/run.sh
   * does), which keeps libFuzzer's and the sanitizers' reports. */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
  cli_mask m;
  cli_mask_init(&m);
  if (cli_parse_mask("mask", spec, &m) == 0) {
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    cli_mask_apply(&m, &d);
    char buf[256];
    cli_mask_string(&d, buf, sizeof buf);
    long long seq = (long long)d.sparse.layout_rows * d.sparse.block_size;
    if (seq >= 1 && seq <= (1 << 20)) { /* the problem size this layout is for */
      d.seq_q = d.seq_kv = (int)seq;
      d.head_dim = 16;
      clattn_attention_desc out;
      clattn_strides s[4];
      size_t el[4];
      (void)clattn__desc_resolve(NULL, &d, &out, &s[0], &s[1], &s[2], &s[3], el);
    }
  }
  cli_mask_free(&m);
  return 0;
}
