/* settings.c — the environment variables clattn reads, read once when a context is created. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool flag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

static void copy_env(char *dst, size_t cap, const char *name) {
  const char *v = getenv(name);
  snprintf(dst, cap, "%s", v ? v : "");
}

void clattn__settings_read(clattn__settings *s) {
  memset(s, 0, sizeof *s);
  copy_env(s->device, sizeof s->device, "CLATTN_DEVICE");
  copy_env(s->kernel_dir, sizeof s->kernel_dir, "CLATTN_KERNEL_DIR");
  copy_env(s->override, sizeof s->override, "CLATTN_TUNE_OVERRIDE");
  copy_env(s->cache_env, sizeof s->cache_env, "CLATTN_CACHE_DIR");
  /* The cache root: CLATTN_CACHE_DIR (off / OFF / 0: none), else
   * $XDG_CACHE_HOME/clattn, else ~/.cache/clattn. */
  const char *dir = s->cache_env;
  int n = 0;
  if (*dir) {
    if (strcmp(dir, "off") && strcmp(dir, "OFF") && strcmp(dir, "0"))
      n = snprintf(s->cache_dir, sizeof s->cache_dir, "%s", dir);
  } else if ((dir = getenv("XDG_CACHE_HOME")) && *dir) {
    n = snprintf(s->cache_dir, sizeof s->cache_dir, "%s/clattn", dir);
  } else if ((dir = getenv("HOME")) && *dir) {
    n = snprintf(s->cache_dir, sizeof s->cache_dir, "%s/.cache/clattn", dir);
  }
  if (n <= 0 || (size_t)n >= sizeof s->cache_dir) s->cache_dir[0] = 0;
  s->tune_budget = 10.0;
  const char *b = getenv("CLATTN_TUNE_BUDGET");
  if (b && *b) {
    char *end;
    const double x = strtod(b, &end);
    if (!*end && x >= 0 && isfinite(x)) s->tune_budget = x;
  }
  s->portable = flag("CLATTN_PORTABLE");
  s->nv_verbose = flag("CLATTN_NV_VERBOSE");
  s->nv_emulate = flag("CLATTN_NV_EMULATE");
  const char *kc = getenv("CLATTN_KV_COPY_MAX");
  if (kc && *kc) {
    char *end;
    errno = 0;
    const unsigned long long x = strtoull(kc, &end, 10);
    if (!*end && errno == 0 && kc[0] != '-') {
      s->kv_copy_max = x;
      s->kv_copy_max_set = true;
    }
  }
  /* only -D words of [A-Za-z0-9_.=-], so that no other build option gets in */
  const char *bd = getenv("CLATTN_BUILD_DEFINES");
  s->build_defines[0] = 0;
  if (bd && *bd && strlen(bd) < sizeof s->build_defines) {
    bool ok = true, word_start = true;
    for (const char *c = bd; *c && ok; c++) {
      if (*c == ' ') {
        word_start = true;
        continue;
      }
      if (word_start)
        ok = ok && c[0] == '-' && c[1] == 'D' && (isalpha((unsigned char)c[2]) || c[2] == '_');
      word_start = false;
      ok = ok && (isalnum((unsigned char)*c) || strchr("_.=-", *c));
    }
    if (ok) snprintf(s->build_defines, sizeof s->build_defines, "%s", bd);
  }
  const char *pk = getenv("POCL_KERNEL_CACHE");
  s->pocl_cache_off = pk && !strcmp(pk, "0");
}
