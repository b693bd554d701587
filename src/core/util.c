/* util.c — small leaf helpers: files, string appends, case-insensitive search. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *clattn__read_file(const char *path, size_t *len) {
  /* O_NONBLOCK and S_ISREG: a FIFO or device named like the file is refused,
   * never waited on. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 &&
      (uint64_t)st.st_size < ((uint64_t)1 << 31)) {
    size_t n = (size_t)st.st_size, got = 0;
    buf = malloc(n + 1);
    while (buf && got < n) {
      ssize_t r = read(fd, buf + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (buf && got != n) {
      free(buf);
      buf = NULL;
    }
    if (buf) {
      buf[n] = 0;
      if (len) *len = n;
    }
  }
  close(fd);
  return buf;
}

void clattn__append(char *buf, size_t cap, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, cap - len, fmt, ap);
  va_end(ap);
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void clattn__sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }

int clattn__strcasestr_bool(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0) return 1;
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n) return 1;
  }
  return 0;
}
