/* flash_config.c — search space, constraints and built-in defaults of the flash kernel. */
#include "flash_config.h"
#include "checked.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int clattn__flash_bm_values[] = {8, 16, 32, 64, 128};
const int clattn__flash_bn_values[] = {8, 16, 32, 64, 128};
const int clattn__flash_tm_values[] = {1, 2, 4, 8, 16, 32};
const int clattn__flash_tn_values[] = {1, 2, 4, 8, 16, 32};
const int clattn__flash_num_bm = 5, clattn__flash_num_bn = 5, clattn__flash_num_tm = 6,
          clattn__flash_num_tn = 6;

clattn__flash_limits clattn__flash_limits_of(const clattn__device_info *info) {
  clattn__flash_limits l;
  l.local_mem = (size_t)info->local_mem;
  l.max_wg = info->max_wg;
  l.cpu = info->is_cpu ? 1 : 0;
  return l;
}

int clattn__flash_dp(const clattn__flash_cfg *c, int head_dim) {
  (void)c;
  return (head_dim + 3) / 4 * 4;
}

bool clattn__flash_cfg_is_rows(const clattn__flash_cfg *c) { return c->tm == 1 && c->tn == 1; }

size_t clattn__flash_local_bytes(const clattn__flash_cfg *c, int head_dim) {
  if (clattn__flash_cfg_is_rows(c)) return 0; /* flash_rows.cl: private memory only */
  /* SIZE_MAX when the product overflows (then no device has that much). */
  const size_t ld = (size_t)clattn__flash_dp(c, head_dim) + 4;
  size_t a, b, e, f, words, bytes;
  if (!clattn__mul_size((size_t)c->bm, ld, &a) || !clattn__mul_size((size_t)c->bn, ld, &b) ||
      !clattn__mul_size((size_t)c->bn, (size_t)c->bm + 4, &e) ||
      !clattn__mul_size((size_t)c->bm, (size_t)c->tn, &f) || !clattn__add_size(a, b, &words) ||
      !clattn__add_size(words, e, &words) || !clattn__add_size(words, f, &words) ||
      !clattn__mul_size(words, sizeof(float), &bytes))
    return SIZE_MAX;
  return bytes;
}

const char *clattn__flash_cfg_check(const clattn__flash_cfg *c, int head_dim,
                                    const clattn__flash_limits *lim) {
  if (c->bm < 1 || c->bn < 1 || c->tm < 1 || c->tn < 1) return "parameters must be >= 1";
  if (c->bm % c->tm) return "bm must be a multiple of tm";
  if (c->bn % c->tn) return "bn must be a multiple of tn";
  if (clattn__flash_cfg_is_rows(c)) {
    /* tm = tn = 1: the row-vector kernel (cl/flash_rows.cl), written for CPUs. */
    if (!lim->cpu) return "tm=tn=1 (the row-vector kernel) is for CPU devices";
    if (c->bm != 8 && c->bm != 16) return "tm=tn=1 (the row-vector kernel) needs bm 8 or 16";
    return NULL;
  }
  size_t wg;
  if (!clattn__mul_size((size_t)c->tm, (size_t)c->tn, &wg) || wg > lim->max_wg)
    return "tm*tn exceeds the device's work-group size";
  if (clattn__flash_local_bytes(c, head_dim) > lim->local_mem)
    return "local memory exceeds the device's limit";
  int rm = c->bm / c->tm, rn = c->bn / c->tn;
  int nch = clattn__flash_dp(c, head_dim) / 4, rc = (int)(((int64_t)nch + c->tn - 1) / c->tn);
  if (rm > 16 || rn > 16) return "per-item register tile larger than 16"; /* bounds rm*rc*4 */
  if (rm * rc * 4 > 128 || rm * rn > 64) return "per-item accumulators exceed the register budget";
  return NULL;
}

/* Preference lists per device class; the first legal entry wins. */
static const clattn__flash_cfg gpu_prefs[] = {
    {64, 32, 16, 8}, {64, 16, 16, 8}, {32, 32, 8, 16}, {32, 16, 8, 8}, {16, 16, 4, 16},
    {16, 16, 4, 8},  {16, 16, 4, 4},  {8, 8, 2, 4},    {8, 8, 1, 1},
};
static const clattn__flash_cfg cpu_prefs[] = {
    {16, 64, 1, 1}, {64, 64, 16, 4}, {32, 64, 8, 4}, {32, 32, 8, 4},
    {16, 16, 4, 4}, {8, 8, 2, 4},    {8, 8, 1, 1},
};

bool clattn__flash_cfg_default(const clattn__device_info *info, int head_dim,
                               const clattn__flash_limits *lim, clattn__flash_cfg *out) {
  const clattn__flash_cfg *list = info->is_cpu ? cpu_prefs : gpu_prefs;
  size_t n =
      info->is_cpu ? sizeof cpu_prefs / sizeof *cpu_prefs : sizeof gpu_prefs / sizeof *gpu_prefs;
  for (size_t i = 0; i < n; i++) {
    if (!clattn__flash_cfg_check(&list[i], head_dim, lim)) {
      *out = list[i];
      return true;
    }
  }
  /* Nothing preferred fits (large head dims, small devices): take the legal
   * configuration with the most work per tile, then the most work-items. */
  bool found = false;
  long best = -1;
  for (int a = 0; a < clattn__flash_num_bm; a++)
    for (int b = 0; b < clattn__flash_num_bn; b++)
      for (int c = 0; c < clattn__flash_num_tm; c++)
        for (int e = 0; e < clattn__flash_num_tn; e++) {
          clattn__flash_cfg cfg = {clattn__flash_bm_values[a], clattn__flash_bn_values[b],
                                   clattn__flash_tm_values[c], clattn__flash_tn_values[e]};
          if (clattn__flash_cfg_check(&cfg, head_dim, lim)) continue;
          long score = (long)cfg.bm * cfg.bn * 1024 + cfg.tm * cfg.tn;
          if (score > best) {
            best = score;
            *out = cfg;
            found = true;
          }
        }
  return found;
}

clattn_status clattn__flash_cfg_parse(const char *s, clattn__flash_cfg *out) {
  clattn__flash_cfg c = {0, 0, 0, 0};
  if (!strncmp(s, "flash:", 6)) s += 6;
  while (*s) {
    char key[8] = {0};
    int val = 0, used = 0;
    if (sscanf(s, "%7[a-z]=%d%n", key, &val, &used) != 2) return CLATTN_ERROR_INVALID_ARGUMENT;
    if (!strcmp(key, "bm"))
      c.bm = val;
    else if (!strcmp(key, "bn"))
      c.bn = val;
    else if (!strcmp(key, "tm"))
      c.tm = val;
    else if (!strcmp(key, "tn"))
      c.tn = val;
    else
      return CLATTN_ERROR_INVALID_ARGUMENT;
    s += used;
    if (*s == ',')
      s++;
    else if (*s)
      return CLATTN_ERROR_INVALID_ARGUMENT;
  }
  if (!c.bm || !c.bn || !c.tm || !c.tn) return CLATTN_ERROR_INVALID_ARGUMENT;
  *out = c;
  return CLATTN_SUCCESS;
}

clattn__flash_cfg clattn__flash_cfg_from_params(const int *params) {
  clattn__flash_cfg c = {params[0], params[1], params[2], params[3]};
  return c;
}

void clattn__flash_cfg_to_params(const clattn__flash_cfg *c, int *params) {
  params[0] = c->bm;
  params[1] = c->bn;
  params[2] = c->tm;
  params[3] = c->tn;
}

/* ---- the flash kernel's search space, as the tuner and plans see it ---- */

static const char *const flash_param_names[] = {"bm", "bn", "tm", "tn"};
static const int *const flash_values[] = {clattn__flash_bm_values, clattn__flash_bn_values,
                                          clattn__flash_tm_values, clattn__flash_tn_values};
#define CLATTN__NV(a) ((int)(sizeof(a) / sizeof(a)[0]))
static const int flash_num_values[] = {
    CLATTN__NV(clattn__flash_bm_values), CLATTN__NV(clattn__flash_bn_values),
    CLATTN__NV(clattn__flash_tm_values), CLATTN__NV(clattn__flash_tn_values)};
static const char *const flash_sources[] = {"common.cl", "flash_fwd.cl", "flash_rows.cl", NULL};

static const char *flash_space_check(const int *params, int head_dim,
                                     const clattn__space_limits *lim) {
  clattn__flash_cfg c = clattn__flash_cfg_from_params(params);
  return clattn__flash_cfg_check(&c, head_dim, lim);
}

static bool flash_space_fallback(const clattn__device_info *info, int head_dim,
                                 const clattn__space_limits *lim, int *params) {
  clattn__flash_cfg c;
  if (!clattn__flash_cfg_default(info, head_dim, lim, &c)) return false;
  clattn__flash_cfg_to_params(&c, params);
  return true;
}

const clattn__kernel_space clattn__flash_space = {"flash",           4,
                                                  flash_param_names, flash_values,
                                                  flash_num_values,  flash_sources,
                                                  flash_space_check, flash_space_fallback};
