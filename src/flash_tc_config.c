/* flash_tc_config.c — search space, constraints and fallback of the tensor-core flash kernel
 * (cl/flash_tc.cl). */
#include "tune.h"

#include <stddef.h>

/* warps per work-group, m-tiles (16 query rows) per warp, keys per tile. */
static const int tc_warps_values[] = {2, 4, 8};
static const int tc_mt_values[] = {1, 2};
static const int tc_bn_values[] = {16, 32, 64, 128};
static const char *const tc_param_names[] = {"warps", "mt", "bn"};
static const int *const tc_values[] = {tc_warps_values, tc_mt_values, tc_bn_values};
static const int tc_num_values[] = {3, 2, 4};
static const char *const tc_sources[] = {"common.cl", "flash_tc.cl", NULL};

size_t clattn__flash_tc_local_bytes(int bn, int head_dim) {
  const size_t dp = ((size_t)head_dim + 15) / 16 * 16;
  return 2 * (size_t)bn * (dp + 8) * 2; /* one K and one V tile of 16-bit elements */
}

/* 32-bit registers a lane holds for Q fragments, S and O accumulators: an
 * estimate of what the compiler must keep live (the rest is addressing). */
int clattn__flash_tc_live_regs(int mt, int bn, int head_dim) {
  const int dp = (head_dim + 15) / 16 * 16;
  return mt * (dp / 16 * 4 + dp / 8 * 4 + bn / 8 * 4);
}

static const char *tc_check(const int *p, int head_dim, const clattn__space_limits *lim) {
  const int warps = p[0], mt = p[1], bn = p[2];
  if (warps < 1 || mt < 1 || mt > 2 || bn < 16 || bn % 16) return "parameters out of range";
  if ((size_t)(32 * warps) > lim->max_wg) return "32*warps exceeds the device's work-group size";
  if (clattn__flash_tc_local_bytes(bn, head_dim) > lim->local_mem)
    return "local memory exceeds the device's limit";
  /* Beyond ~240 live registers per lane the kernel spills (255 is the cap). */
  if (clattn__flash_tc_live_regs(mt, bn, head_dim) > 240)
    return "fragments and accumulators exceed the register budget";
  return NULL;
}

static bool tc_fallback(const clattn__device_info *info, int head_dim,
                        const clattn__space_limits *lim, int *params) {
  (void)info;
  /* Most rows per work-group first, then the largest tile that fits. */
  static const int prefs[][3] = {{8, 1, 64}, {4, 2, 64}, {4, 1, 64}, {4, 1, 32},
                                 {4, 1, 16}, {2, 1, 32}, {2, 1, 16}};
  for (size_t i = 0; i < sizeof prefs / sizeof prefs[0]; i++) {
    if (!tc_check(prefs[i], head_dim, lim)) {
      for (int k = 0; k < 3; k++)
        params[k] = prefs[i][k];
      return true;
    }
  }
  return false;
}

const clattn__kernel_space clattn__flash_tc_space = {
    "flash_tc", 3, tc_param_names, tc_values, tc_num_values, tc_sources, tc_check, tc_fallback};
