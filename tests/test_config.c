/* test_config.c — property tests of the flash configuration space and the naive workspace
 * (internal). */
#include "internal.h"
#include "flash_config.h"
#include "naive.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static const size_t local_limits[] = {16 * 1024, 32 * 1024, 48 * 1024, 64 * 1024, 1024 * 1024};
static const size_t wg_limits[] = {64, 256, 1024, 4096};
#define NLOCAL (sizeof local_limits / sizeof *local_limits)
#define NWG (sizeof wg_limits / sizeof *wg_limits)

/* Calls fn on every configuration of the search space. */
#define FOR_EACH_CFG(cfg)                                                                          \
  for (int ia_ = 0; ia_ < clattn__flash_num_bm; ia_++)                                             \
    for (int ib_ = 0; ib_ < clattn__flash_num_bn; ib_++)                                           \
      for (int ic_ = 0; ic_ < clattn__flash_num_tm; ic_++)                                         \
        for (int id_ = 0; id_ < clattn__flash_num_tn; id_++)                                       \
          for (clattn__flash_cfg                                                                   \
                   cfg = {clattn__flash_bm_values[ia_], clattn__flash_bn_values[ib_],              \
                          clattn__flash_tm_values[ic_], clattn__flash_tn_values[id_]},             \
                   *once_ = &cfg;                                                                  \
               once_; once_ = NULL)

static clattn__device_info fake_device(int is_cpu, size_t local_mem, size_t max_wg) {
  clattn__device_info info;
  memset(&info, 0, sizeof info);
  info.is_cpu = is_cpu != 0;
  info.type = is_cpu ? CL_DEVICE_TYPE_CPU : CL_DEVICE_TYPE_GPU;
  info.is_nvidia = !is_cpu;
  info.local_mem = local_mem;
  info.max_wg = max_wg;
  info.global_mem = (cl_ulong)1 << 34;
  info.max_alloc = (cl_ulong)1 << 32;
  snprintf(info.name, sizeof info.name, "fake %s", is_cpu ? "cpu" : "gpu");
  return info;
}

/* The search space is non-empty and sorted, every value positive. */
static void test_space_shape(void **state) {
  (void)state;
  const int *vals[4] = {clattn__flash_bm_values, clattn__flash_bn_values, clattn__flash_tm_values,
                        clattn__flash_tn_values};
  const int nums[4] = {clattn__flash_num_bm, clattn__flash_num_bn, clattn__flash_num_tm,
                       clattn__flash_num_tn};
  for (int p = 0; p < 4; p++) {
    assert_true(nums[p] > 0);
    for (int i = 0; i < nums[p]; i++) {
      assert_true(vals[p][i] >= 1);
      if (i) assert_true(vals[p][i] > vals[p][i - 1]);
    }
  }
}

/* For every configuration, head dim and limit: a configuration the check
 * accepts respects the limits it names; local bytes grow with head dim. */
static void test_check_respects_limits(void **state) {
  (void)state;
  for (int cpu = 0; cpu <= 1; cpu++)
    for (size_t a = 0; a < NLOCAL; a++)
      for (size_t w = 0; w < NWG; w++) {
        clattn__flash_limits lim = {local_limits[a], wg_limits[w], cpu};
        for (int hd = 1; hd <= 256; hd++) {
          FOR_EACH_CFG(cfg) {
            const int dp = clattn__flash_dp(&cfg, hd);
            assert_true(dp >= hd);
            assert_int_equal(dp % 4, 0);
            const size_t bytes = clattn__flash_local_bytes(&cfg, hd);
            if (hd > 1) assert_true(bytes >= clattn__flash_local_bytes(&cfg, hd - 1));
            if (clattn__flash_cfg_check(&cfg, hd, &lim) == NULL) {
              if (bytes > lim.local_mem || (size_t)(cfg.tm * cfg.tn) > lim.max_wg ||
                  cfg.bm % cfg.tm || cfg.bn % cfg.tn)
                fail_msg("accepted illegal bm=%d bn=%d tm=%d tn=%d d=%d (%zu B, limits %zu B, "
                         "wg %zu)",
                         cfg.bm, cfg.bn, cfg.tm, cfg.tn, hd, bytes, lim.local_mem, lim.max_wg);
              /* The row-vector kernel: CPUs only, bm is its vector width. */
              if (clattn__flash_cfg_is_rows(&cfg) && (!cpu || (cfg.bm != 8 && cfg.bm != 16)))
                fail_msg("accepted row-vector bm=%d bn=%d on a %s", cfg.bm, cfg.bn,
                         cpu ? "cpu" : "gpu");
            } else if (cpu && clattn__flash_cfg_is_rows(&cfg) && (cfg.bm == 8 || cfg.bm == 16)) {
              fail_msg("rejected row-vector bm=%d bn=%d d=%d on a cpu", cfg.bm, cfg.bn, hd);
            }
          }
        }
      }
}

/* The default of each device class is legal whenever any legal configuration
 * exists, and exists exactly then. */
static void test_default_is_legal(void **state) {
  (void)state;
  int found_any = 0;
  for (int cpu = 0; cpu <= 1; cpu++)
    for (size_t a = 0; a < NLOCAL; a++)
      for (size_t w = 0; w < NWG; w++) {
        clattn__device_info info = fake_device(cpu, local_limits[a], wg_limits[w]);
        clattn__flash_limits lim = clattn__flash_limits_of(&info);
        assert_int_equal(lim.local_mem, local_limits[a]);
        assert_int_equal(lim.max_wg, wg_limits[w]);
        for (int hd = 1; hd <= 256; hd++) {
          int any_legal = 0;
          FOR_EACH_CFG(cfg) {
            if (!clattn__flash_cfg_check(&cfg, hd, &lim)) any_legal = 1;
          }
          clattn__flash_cfg out = {0, 0, 0, 0};
          const bool ok = clattn__flash_cfg_default(&info, hd, &lim, &out);
          if (ok != (any_legal != 0))
            fail_msg("%s local %zu wg %zu d=%d: default %s but a legal configuration %s",
                     cpu ? "cpu" : "gpu", lim.local_mem, lim.max_wg, hd, ok ? "found" : "not found",
                     any_legal ? "exists" : "does not exist");
          if (!ok) continue;
          found_any = 1;
          const char *why = clattn__flash_cfg_check(&out, hd, &lim);
          if (why)
            fail_msg("%s local %zu wg %zu d=%d: default bm=%d bn=%d tm=%d tn=%d illegal: %s",
                     cpu ? "cpu" : "gpu", lim.local_mem, lim.max_wg, hd, out.bm, out.bn, out.tm,
                     out.tn, why);
          assert_true(clattn__flash_local_bytes(&out, hd) <= lim.local_mem);
          assert_true((size_t)(out.tm * out.tn) <= lim.max_wg);
        }
      }
  assert_true(found_any);
  /* Devices as the library claims to serve: 32 KiB+ and 256 work-items cover
   * every head dim. */
  for (int cpu = 0; cpu <= 1; cpu++) {
    clattn__device_info info = fake_device(cpu, 32 * 1024, 256);
    clattn__flash_limits lim = clattn__flash_limits_of(&info);
    for (int hd = 1; hd <= 256; hd++) {
      clattn__flash_cfg out;
      if (!clattn__flash_cfg_default(&info, hd, &lim, &out))
        fail_msg("%s with 32 KiB local memory has no configuration for d=%d", cpu ? "cpu" : "gpu",
                 hd);
    }
  }
}

/* Explicit illegal configurations are rejected with a reason. */
static void test_illegal_rejected(void **state) {
  (void)state;
  const clattn__flash_limits lim = {48 * 1024, 1024, 0};
  static const struct {
    clattn__flash_cfg c;
    int hd;
  } bad[] = {
      {{0, 16, 4, 4}, 64},       /* zero */
      {{16, 16, 0, 4}, 64},      /* zero */
      {{-8, 16, 4, 4}, 64},      /* negative */
      {{16, 16, 3, 4}, 64},      /* bm % tm */
      {{16, 16, 4, 3}, 64},      /* bn % tn */
      {{64, 64, 32, 64}, 64},    /* 2048 work-items > 1024 */
      {{128, 128, 16, 16}, 256}, /* local memory */
      {{128, 8, 1, 1}, 64},      /* 128 rows per item: register tile */
      {{64, 64, 4, 4}, 256},     /* accumulators */
      /* tm*tn and the tile products overflow int (undefined behaviour before
       * the checked products; the sanitizer build aborts on it) */
      {{1048576, 1048576, 1048576, 1048576}, 64},
      {{1048576, 1048576, 1, 1}, 64},
      {{0x40000000, 0x40000000, 0x40000000, 0x7fffffff}, 256},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *why = clattn__flash_cfg_check(&bad[i].c, bad[i].hd, &lim);
    if (!why)
      fail_msg("accepted bm=%d bn=%d tm=%d tn=%d d=%d", bad[i].c.bm, bad[i].c.bn, bad[i].c.tm,
               bad[i].c.tn, bad[i].hd);
    assert_true(strlen(why) > 0);
  }
  /* ...and a few legal ones accepted. */
  static const clattn__flash_cfg good[] = {{16, 16, 4, 4}, {8, 8, 2, 4}, {64, 32, 16, 8}};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    assert_null(clattn__flash_cfg_check(&good[i], 64, &lim));
}

/* The override syntax of CLATTN_TUNE_OVERRIDE. */
static void test_parse(void **state) {
  (void)state;
  clattn__flash_cfg c;
  assert_int_equal(clattn__flash_cfg_parse("bm=64,bn=32,tm=16,tn=8", &c), CLATTN_SUCCESS);
  assert_int_equal(c.bm, 64);
  assert_int_equal(c.bn, 32);
  assert_int_equal(c.tm, 16);
  assert_int_equal(c.tn, 8);
  assert_int_equal(clattn__flash_cfg_parse("flash:tn=2,tm=4,bn=8,bm=16", &c), CLATTN_SUCCESS);
  assert_int_equal(c.bm, 16);
  assert_int_equal(c.bn, 8);
  assert_int_equal(c.tm, 4);
  assert_int_equal(c.tn, 2);
  static const char *bad[] = {"",
                              "bm=64",
                              "bm=64,bn=32,tm=16",
                              "bm=64;bn=32;tm=16;tn=8",
                              "xx=1,bm=64,bn=32,tm=16,tn=8",
                              "bm=64,bn=32,tm=16,tn=",
                              "bm=64,bn=32,tm=16,tn=8 junk",
                              "bm=0,bn=32,tm=16,tn=8"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    clattn__flash_cfg out = {1, 2, 3, 4};
    if (clattn__flash_cfg_parse(bad[i], &out) != CLATTN_ERROR_INVALID_ARGUMENT)
      fail_msg("parsed '%s'", bad[i]);
  }
}

/* The naive family's workspace from a descriptor alone (what plan creation
 * allocates and clattn_plan_workspace_size reports; test_api checks the
 * plan's value): the score matrix, plus for 16-bit storage the f32 copies of
 * q/o and of k and v per kv head; NULL, non-positive sizes and overflow give
 * false / SIZE_MAX. */
static void test_naive_workspace(void **state) {
  (void)state;
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 2;
  d.heads = 4;
  d.kv_heads = 2;
  d.seq_q = 7;
  d.seq_kv = 9;
  d.head_dim = 16;
  clattn__naive_ws ws;
  assert_true(clattn__naive_workspace(&d, &ws));
  assert_int_equal(ws.scores, 2 * 4 * 7 * 9 * 4);
  assert_int_equal(ws.q + ws.k + ws.v, 0);
  assert_int_equal(ws.total, ws.scores);
  assert_int_equal(clattn__naive_workspace_bytes(&d), ws.total);
  static const clattn_dtype half[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (int t = 0; t < 2; t++) {
    d.dtype = half[t];
    assert_true(clattn__naive_workspace(&d, &ws));
    assert_int_equal(ws.scores, 2 * 4 * 7 * 9 * 4);
    assert_int_equal(ws.q, 2 * 4 * 7 * 16 * 4);
    assert_int_equal(ws.k, 2 * 2 * 9 * 16 * 4);
    assert_int_equal(ws.v, ws.k);
    assert_int_equal(ws.total, ws.scores + ws.q + 2 * ws.k);
    assert_int_equal(clattn__naive_workspace_bytes(&d), ws.total);
  }
  d.kv_heads = 0; /* = heads */
  assert_true(clattn__naive_workspace(&d, &ws));
  assert_int_equal(ws.k, 2 * 4 * 9 * 16 * 4);
  /* A long-context GQA layer: 32 heads on 8, N = 32768, d = 128, bf16. */
  d.batch = 1;
  d.heads = 32;
  d.kv_heads = 8;
  d.seq_q = d.seq_kv = 32768;
  d.head_dim = 128;
  if (sizeof(size_t) >= 8)
    assert_int_equal(clattn__naive_workspace_bytes(&d),
                     ((uint64_t)1 << 37) + ((uint64_t)1 << 29) + ((uint64_t)1 << 28));
  d.batch = d.heads = d.kv_heads = d.seq_q = d.seq_kv = 0x7fffffff;
  assert_false(clattn__naive_workspace(&d, &ws));
  assert_int_equal(ws.total, 0);
  assert_true(clattn__naive_workspace_bytes(&d) == SIZE_MAX);
  d.batch = 0;
  assert_true(clattn__naive_workspace_bytes(&d) == SIZE_MAX);
  assert_true(clattn__naive_workspace_bytes(NULL) == SIZE_MAX);
  assert_false(clattn__naive_workspace(NULL, &ws));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_space_shape),
      cmocka_unit_test(test_check_respects_limits),
      cmocka_unit_test(test_default_is_legal),
      cmocka_unit_test(test_illegal_rejected),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_naive_workspace),
  };
  return cmocka_run_group_tests_name("clattn flash configuration", tests, NULL, NULL);
}
