/* test_config.c — property tests of the kernel-variant registry (spaces, legality, defaults, the
 * one configuration parser, selection) and the naive workspace (internal). */
#include "internal.h"
#include "families.h"
#include "tune.h"
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

static clattn__device_info fake_device(int is_cpu, size_t local_mem, size_t max_wg) {
  clattn__device_info info;
  memset(&info, 0, sizeof info);
  info.is_cpu = is_cpu != 0;
  info.type = is_cpu ? CL_DEVICE_TYPE_CPU : CL_DEVICE_TYPE_GPU;
  info.is_nvidia = !is_cpu;
  info.nv_cc_major = is_cpu ? 0 : 9;
  info.local_mem = local_mem;
  info.max_wg = max_wg;
  info.global_mem = (cl_ulong)1 << 34;
  info.max_alloc = (cl_ulong)1 << 32;
  snprintf(info.name, sizeof info.name, "fake %s", is_cpu ? "cpu" : "gpu");
  return info;
}

static clattn_attention_desc problem(clattn_algo algo, clattn_dtype dt, int hd, clattn_mask m) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.algo = algo;
  d.dtype = dt;
  d.head_dim = hd;
  d.mask = m;
  d.seq_q = d.seq_kv = 1000;
  d.kv_heads = d.heads;
  d.scale = 0.125;
  return d;
}

/* Calls body for every point of v's tuner space (parameters the tuner does
 * not search at their fallback value `base`). */
#define FOR_EACH_POINT(v, base, cfg, body)                                                         \
  do {                                                                                             \
    size_t total_ = 1;                                                                             \
    for (int p_ = 0; p_ < (v)->num_params; p_++)                                                   \
      total_ *= (v)->params[p_].values ? (size_t)(v)->params[p_].num_values : 1;                   \
    for (size_t c_ = 0; c_ < total_; c_++) {                                                       \
      int cfg[CLATTN__MAX_PARAMS];                                                                 \
      size_t r_ = c_;                                                                              \
      for (int p_ = (v)->num_params - 1; p_ >= 0; p_--) {                                          \
        const clattn__param *pp_ = &(v)->params[p_];                                               \
        if (pp_->values) {                                                                         \
          cfg[p_] = pp_->values[r_ % (size_t)pp_->num_values];                                     \
          r_ /= (size_t)pp_->num_values;                                                           \
        } else {                                                                                   \
          cfg[p_] = (base)[p_];                                                                    \
        }                                                                                          \
      }                                                                                            \
      body                                                                                         \
    }                                                                                              \
  } while (0)

/* Every variant: a unique name, a family, kernel sources that are embedded,
 * parameters with unique names and ascending tuner values inside their
 * range; every family has a portable variant (a fallback for every fast
 * path). */
static void test_registry_shape(void **state) {
  (void)state;
  const int n = clattn__variant_count();
  assert_true(n >= 6);
  bool portable[4] = {false, false, false, false};
  for (int i = 0; i < n; i++) {
    const clattn__variant *v = clattn__variant_at(i);
    assert_non_null(v->name);
    assert_ptr_equal(clattn__variant_find(v->name), v);
    assert_int_equal(clattn__variant_index(v), i);
    assert_true(v->family >= CLATTN_ALGO_FLASH && v->family <= CLATTN_ALGO_LINEAR);
    if (!v->fast_path) portable[v->family] = true;
    assert_non_null(v->sources[0]);
    for (int s = 0; v->sources[s]; s++) {
      bool found = false;
      for (size_t e = 0; e < clattn__embedded_count; e++)
        found |= !strcmp(clattn__embedded_files[e].name, v->sources[s]);
      if (!found) fail_msg("%s: source %s is not embedded", v->name, v->sources[s]);
    }
    assert_true(v->num_params <= CLATTN__MAX_PARAMS);
    assert_true(v->applicable && v->check && v->fallback && v->local_bytes && v->create &&
                v->execute && v->release);
    for (int p = 0; p < v->num_params; p++) {
      const clattn__param *pp = &v->params[p];
      assert_true(pp->min <= pp->max);
      for (int q = 0; q < p; q++)
        if (!strcmp(pp->name, v->params[q].name)) fail_msg("%s: %s twice", v->name, pp->name);
      for (int k = 0; pp->values && k < pp->num_values; k++) {
        assert_true(pp->values[k] >= pp->min && pp->values[k] <= pp->max);
        if (k) assert_true(pp->values[k] > pp->values[k - 1]);
      }
    }
  }
  for (int f = CLATTN_ALGO_FLASH; f <= CLATTN_ALGO_LINEAR; f++)
    assert_true(portable[f]);
}

/* For every variant, device, head dim and configuration of its space: a
 * configuration the check accepts fits the device's local memory and
 * work-group size (the footprint the kernel creation then verifies). */
static void test_check_respects_limits(void **state) {
  (void)state;
  static const int dims[] = {1, 7, 16, 40, 64, 80, 128, 200, 256};
  for (int i = 0; clattn__variant_at(i); i++) {
    const clattn__variant *v = clattn__variant_at(i);
    for (int cpu = 0; cpu <= 1; cpu++)
      for (size_t a = 0; a < NLOCAL; a++)
        for (size_t w = 0; w < NWG; w++) {
          const clattn__device_info info = fake_device(cpu, local_limits[a], wg_limits[w]);
          for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
            const int hd = dims[di];
            const clattn_attention_desc d =
                problem(v->family, v->fast_path && !cpu ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32, hd,
                        CLATTN_MASK_NONE);
            int base[CLATTN__MAX_PARAMS] = {0};
            if (!v->fallback(&info, &d, base)) continue;
            FOR_EACH_POINT(v, base, cfg, {
              if (v->check(cfg, &d, &info) == NULL &&
                  v->local_bytes(cfg, &d) > (size_t)info.local_mem) {
                char buf[600];
                clattn__config_format(v, cfg, buf, sizeof buf);
                fail_msg("%s accepted %s at d=%d with %zu B local > %zu", v->name, buf, hd,
                         v->local_bytes(cfg, &d), (size_t)info.local_mem);
              }
            });
          }
        }
  }
}

/* The built-in default (table row or fallback) of every applicable variant
 * is legal, on every device class the table covers and on small devices. */
static void test_default_is_legal(void **state) {
  (void)state;
  for (int cpu = 0; cpu <= 1; cpu++)
    for (size_t a = 0; a < NLOCAL; a++)
      for (size_t w = 0; w < NWG; w++) {
        const clattn__device_info info = fake_device(cpu, local_limits[a], wg_limits[w]);
        for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_LINEAR; algo++)
          for (int dt = 0; dt <= 2; dt++)
            for (int hd = 1; hd <= 256; hd += (hd < 16 ? 1 : 13)) {
              const clattn_attention_desc d =
                  problem((clattn_algo)algo, (clattn_dtype)dt, hd, CLATTN_MASK_CAUSAL);
              const clattn__variant *cand[16];
              const int n =
                  clattn__applicable_variants(&info, &d, CLATTN__FORWARD, false, cand, 16, NULL, 0);
              assert_true(n >= 1);
              for (int i = 0; i < n; i++) {
                int params[CLATTN__MAX_PARAMS];
                char label[64];
                if (!clattn__builtin_default(&info, cand[i], &d, params, label, sizeof label)) {
                  /* only on small devices, never for the portable variant on a
                   * device with 32 KiB and 256 work-items */
                  if (!cand[i]->fast_path && local_limits[a] >= 32 * 1024 && wg_limits[w] >= 256)
                    fail_msg("%s: no default for d=%d on %s", cand[i]->name, hd,
                             cpu ? "cpu" : "gpu");
                  continue;
                }
                const char *why = cand[i]->check(params, &d, &info);
                if (why)
                  fail_msg("%s default (%s) illegal at d=%d: %s", cand[i]->name, label, hd, why);
              }
            }
      }
}

/* Explicit illegal configurations are rejected with a reason (issue 13.1:
 * the CPU kernel's private tile; 13.2: linear sizes past int). */
static void test_illegal_rejected(void **state) {
  (void)state;
  const clattn__device_info gpu = fake_device(0, 48 * 1024, 1024);
  const clattn__device_info cpu = fake_device(1, 1024 * 1024, 4096);
  const clattn_attention_desc d64 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F32, 64, 0);
  const clattn_attention_desc d256 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F32, 256, 0);
  const clattn__variant *wg = clattn__variant_find("flash");
  const clattn__variant *rows = clattn__variant_find("flash_rows");
  const clattn__variant *tc = clattn__variant_find("flash_tc");
  static const int bad_wg[][5] = {
      {0, 16, 4, 4, 64},       /* zero */
      {16, 16, 0, 4, 64},      /* zero */
      {-8, 16, 4, 4, 64},      /* negative */
      {16, 16, 3, 4, 64},      /* bm % tm */
      {16, 16, 4, 3, 64},      /* bn % tn */
      {64, 64, 32, 64, 64},    /* 2048 work-items > 1024 */
      {128, 128, 16, 16, 256}, /* local memory */
      {128, 8, 2, 1, 64},      /* 64 rows per item: register tile */
      {64, 64, 4, 4, 256},     /* accumulators */
      {16, 64, 1, 1, 64},      /* tm = tn = 1: that is the row kernel */
      /* tm*tn and the tile products past int (undefined behaviour without
       * the range checks; the sanitizer build aborts on it) */
      {1048576, 1048576, 1048576, 1048576, 64},
      {1048576, 1048576, 1, 1, 64},
      {0x40000000, 0x40000000, 0x40000000, 0x7fffffff, 256},
  };
  for (size_t i = 0; i < sizeof bad_wg / sizeof *bad_wg; i++) {
    const char *why = wg->check(bad_wg[i], bad_wg[i][4] == 256 ? &d256 : &d64, &gpu);
    if (!why) fail_msg("flash accepted case %zu", i);
    assert_true(strlen(why) > 0);
  }
  static const int good_wg[][4] = {{16, 16, 4, 4}, {8, 8, 2, 4}, {64, 32, 16, 8}};
  for (size_t i = 0; i < 3; i++)
    assert_null(wg->check(good_wg[i], &d64, &gpu));
  /* The row kernel: bm is the vector width; bn sizes a private array. */
  static const int bad_rows[][2] = {{32, 64}, {16, 1048576}, {16, 2048}, {8, 0}};
  for (size_t i = 0; i < 4; i++)
    assert_non_null(rows->check(bad_rows[i], &d256, &cpu));
  static const int good_rows[] = {16, 64};
  assert_null(rows->check(good_rows, &d256, &cpu));
  /* Applicability: the row kernel is for CPUs, tensor cores for NVIDIA
   * 16-bit problems (sparse masks too, flash_wgmma dense and causal only). */
  const char *why = NULL;
  assert_int_equal(rows->applicable(&gpu, &d64, &why), 0);
  assert_non_null(why);
  assert_int_equal(tc->applicable(&gpu, &d64, &why), 0); /* f32 */
  clattn_attention_desc h = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 64, 0);
  assert_true(tc->applicable(&gpu, &h, &why) > 0);
  assert_int_equal(tc->applicable(&cpu, &h, &why), 0);
  h.mask = CLATTN_MASK_WINDOW;
  assert_true(tc->applicable(&gpu, &h, &why) > 0);
  assert_int_equal(clattn__variant_find("flash_wgmma")->applicable(&gpu, &h, &why), 0);
  assert_non_null(strstr(why, "dense masks only"));
  h.mask_mod =
      "int clattn_mask_mod(int b, int h, int q, int k, __global const uchar *u) { return 1; }";
  assert_int_equal(tc->applicable(&gpu, &h, &why), 0); /* a sparse mask and a user mask: flash */
  h.mask_mod = NULL;
  {
    /* flash_wgmma takes softcap and ALiBi, not sinks, bias or user functions */
    const clattn__variant *wgv = clattn__variant_find("flash_wgmma");
    clattn_attention_desc hm = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 128, 0);
    hm.softcap = 30.0;
    hm.alibi_max_bias = 8.0;
    assert_true(wgv->applicable(&gpu, &hm, &why) > 0);
    static const float sink[64] = {0};
    hm.sinks = sink;
    assert_int_equal(wgv->applicable(&gpu, &hm, &why), 0);
    assert_non_null(strstr(why, "softcap and ALiBi only"));
  }
  /* Linear: splits past int are out of range at parse time. */
  const clattn__variant *lin = clattn__variant_find("linear");
  const clattn_attention_desc ld = problem(CLATTN_ALGO_LINEAR, CLATTN_DTYPE_F32, 16, 0);
  int base[CLATTN__MAX_PARAMS], out[CLATTN__MAX_PARAMS];
  assert_true(lin->fallback(&cpu, &ld, base));
  assert_null(lin->check(base, &ld, &cpu));
  char err[256];
  static const char *bad_lin[] = {"split=2147483647", "split=99999999999", "chunk=0",
                                  "bd=12,src=8",      "chunk=-1",          "split=1e3"};
  for (size_t i = 0; i < sizeof bad_lin / sizeof *bad_lin; i++) {
    const bool parsed =
        clattn__config_parse(lin, bad_lin[i], base, out, err, sizeof err) == CLATTN_SUCCESS;
    if (parsed && !lin->check(out, &ld, &cpu)) fail_msg("linear accepted '%s'", bad_lin[i]);
  }
}

/* The one parser of configuration strings (API, CLATTN_TUNE_OVERRIDE,
 * database, defaults table). */
static void test_parse(void **state) {
  (void)state;
  const clattn__variant *wg = clattn__variant_find("flash");
  int p[CLATTN__MAX_PARAMS];
  char err[256];
  assert_int_equal(clattn__config_parse(wg, "bm=64,bn=32,tm=16,tn=8", NULL, p, err, sizeof err),
                   CLATTN_SUCCESS);
  assert_int_equal(p[0], 64);
  assert_int_equal(p[1], 32);
  assert_int_equal(p[2], 16);
  assert_int_equal(p[3], 8);
  assert_int_equal(clattn__config_parse(wg, "flash:tn=2,tm=4,bn=8,bm=16", NULL, p, err, sizeof err),
                   CLATTN_SUCCESS);
  assert_int_equal(p[0], 16);
  assert_int_equal(p[3], 2);
  /* Partial strings complete from a base. */
  const int base[4] = {64, 32, 16, 8};
  assert_int_equal(clattn__config_parse(wg, "bn=16", base, p, err, sizeof err), CLATTN_SUCCESS);
  assert_int_equal(p[0], 64);
  assert_int_equal(p[1], 16);
  static const char *bad[] = {"",
                              "bm=64",
                              "bm=64,bn=32,tm=16",
                              "bm=64;bn=32;tm=16;tn=8",
                              "xx=1,bm=64,bn=32,tm=16,tn=8",
                              "bm=64,bn=32,tm=16,tn=",
                              "bm=64,bn=32,tm=16,tn=8 junk",
                              "bm=64,bn=32,tm=16,tn=8,",
                              "bm=0,bn=32,tm=16,tn=8",
                              "bm=64,bm=64,bn=32,tm=16,tn=8",
                              "bm=99999999999,bn=32,tm=16,tn=8",
                              "bm=+64,bn=32,tm=16,tn=8",
                              "bm=0x40,bn=32,tm=16,tn=8",
                              "flash_tc:bm=64,bn=32,tm=16,tn=8"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int out[4] = {1, 2, 3, 4};
    if (clattn__config_parse(wg, bad[i], NULL, out, err, sizeof err) !=
        CLATTN_ERROR_INVALID_ARGUMENT)
      fail_msg("parsed '%s'", bad[i]);
    assert_true(strlen(err) > 0);
    assert_int_equal(out[0], 1);
  }
  /* Routing: keys decide which variant an unprefixed string is for. */
  assert_true(clattn__config_names_fit(wg, "bm=1,tn=2"));
  assert_false(clattn__config_names_fit(wg, "warps=4"));
  assert_true(clattn__config_names_fit(clattn__variant_find("flash_tc"), "warps=4,bn=32"));
  assert_false(clattn__config_names_fit(clattn__variant_find("flash_rows"), "bm=16,tm=1"));
  char pre[32];
  assert_true(clattn__config_prefix("flash_tc:warps=4", pre, sizeof pre));
  assert_string_equal(pre, "flash_tc");
  assert_false(clattn__config_prefix("warps=4", pre, sizeof pre));
  /* A bare variant name: its prefix, and (completed from a base) its defaults. */
  assert_true(clattn__config_prefix("decode_tc", pre, sizeof pre));
  assert_string_equal(pre, "decode_tc");
  assert_false(clattn__config_prefix("no_such_kernel", pre, sizeof pre));
  assert_int_equal(clattn__config_parse(wg, "flash", base, p, err, sizeof err), CLATTN_SUCCESS);
  assert_memory_equal(p, base, sizeof base);
  assert_int_equal(clattn__config_parse(wg, "flash", NULL, p, err, sizeof err),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  /* Round trip: format then parse gives the same configuration, for every
   * variant's default. */
  const clattn__device_info gpu = fake_device(0, 48 * 1024, 1024);
  for (int i = 0; clattn__variant_at(i); i++) {
    const clattn__variant *v = clattn__variant_at(i);
    const clattn_attention_desc d =
        problem(v->family, v->fast_path ? CLATTN_DTYPE_F16 : CLATTN_DTYPE_F32, 64, 0);
    int a[CLATTN__MAX_PARAMS], b[CLATTN__MAX_PARAMS];
    if (!v->fallback(&gpu, &d, a) || v->num_params == 0) continue;
    char buf[700];
    clattn__config_format(v, a, buf, sizeof buf);
    assert_int_equal(clattn__config_parse(v, buf, NULL, b, err, sizeof err), CLATTN_SUCCESS);
    assert_memory_equal(a, b, (size_t)v->num_params * sizeof *a);
  }
}

/* Selection order: fast paths first where they apply, the portable variant
 * always; the portable opt-out leaves only it. */
static void test_selection(void **state) {
  (void)state;
  const clattn__device_info gpu = fake_device(0, 48 * 1024, 1024);
  const clattn__device_info cpu = fake_device(1, 1024 * 1024, 4096);
  const clattn__variant *c[16];
  clattn_attention_desc d = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 64, 0);
  assert_int_equal(clattn__applicable_variants(&gpu, &d, CLATTN__FORWARD, false, c, 16, NULL, 0),
                   4);
  /* the fake GPU is an sm_90: flash_wgmma applies, below flash_tc until
   * faster; flash_tcq (Q in local memory) at head dims padded to a multiple
   * of 64, below flash_tc */
  assert_string_equal(c[0]->name, "flash_tc");
  assert_string_equal(c[1]->name, "flash_tcq");
  assert_string_equal(c[2]->name, "flash_wgmma");
  assert_string_equal(c[3]->name, "flash");
  {
    clattn_attention_desc d80 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 80, 0);
    char why80[2048];
    assert_int_equal(
        clattn__applicable_variants(&gpu, &d80, CLATTN__FORWARD, false, c, 16, why80, sizeof why80),
        3);
    assert_non_null(strstr(why80, "flash_tcq: head_dim padded to 16 must be a multiple of 64"));
    /* head dims padded to 128 with 16-byte rows: flash_wgmma, then flash_tcq
     * (measured faster); 120 = 15 chunks of 8 */
    clattn_attention_desc d128 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_BF16, 120, 0);
    assert_int_equal(
        clattn__applicable_variants(&gpu, &d128, CLATTN__FORWARD, false, c, 16, NULL, 0), 4);
    assert_string_equal(c[0]->name, "flash_wgmma");
    assert_string_equal(c[1]->name, "flash_tcq");
    assert_string_equal(c[2]->name, "flash_tc");
    /* ragged batches: flash_tcq first (flash_wgmma not yet verified there) */
    clattn_attention_desc d128r = d128;
    d128r.ragged = true;
    assert_true(clattn__applicable_variants(&gpu, &d128r, CLATTN__FORWARD, false, c, 16, NULL, 0) >=
                3);
    assert_string_equal(c[0]->name, "flash_tcq");
    /* rows that are not 16-byte multiples (d = 116): flash_tcq first */
    clattn_attention_desc d116 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_BF16, 116, 0);
    assert_int_equal(
        clattn__applicable_variants(&gpu, &d116, CLATTN__FORWARD, false, c, 16, NULL, 0), 4);
    assert_string_equal(c[0]->name, "flash_tcq");
  }
  {
    /* flash_wgmma's warpgroups: three (384 work-items, 168 registers each)
     * up to d = 128 with 32-key tiles, not with 64 */
    const clattn__variant *wg = clattn__variant_find("flash_wgmma");
    clattn_attention_desc d128 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 128, 0);
    const int three32[4] = {3, 32, 2, 0}, three64[4] = {3, 64, 2, 0}, four[4] = {4, 32, 2, 0},
              three64s1[4] = {3, 64, 1, 0};
    assert_null(wg->check(three32, &d128, &gpu));
    assert_null(wg->check(three64, &d, &gpu)); /* d = 64 */
    assert_non_null(strstr(wg->check(three64s1, &d128, &gpu), "168 registers"));
    assert_non_null(strstr(wg->check(four, &d128, &gpu), "wgs 1..3"));
    /* st = 3 (the overlapped schedule): three K and two V tiles, 40 KiB at
     * d = 128 with 32-key tiles; 80 KiB with 64-key tiles or at d = 256 */
    const int ov32[4] = {3, 32, 3, 0}, ov64[4] = {2, 64, 3, 0}, st4[4] = {2, 32, 4, 0};
    assert_null(wg->check(ov32, &d128, &gpu));
    assert_int_equal(wg->local_bytes(ov32, &d128), 5 * 32 * 128 * 2);
    assert_non_null(strstr(wg->check(ov64, &d128, &gpu), "local memory"));
    assert_null(wg->check(ov64, &d, &gpu)); /* d = 64: 40 KiB */
    clattn_attention_desc d256 = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 256, 0);
    const int ov256[4] = {1, 32, 3, 0};
    assert_non_null(strstr(wg->check(ov256, &d256, &gpu), "local memory"));
    assert_non_null(strstr(wg->check(st4, &d128, &gpu), "st 1..3"));
    /* the default: the overlapped schedule with three warpgroups, 32-key
     * tiles above d = 64, 64-key tiles at 64 */
    /* the loader warpgroup (ld = 1): with st = 3, at most two computing
     * warpgroups (512 work-items would leave 128 registers), 16-byte rows */
    const int ld2[4] = {2, 32, 3, 1}, ld3[4] = {3, 32, 3, 1}, ld_st2[4] = {2, 32, 2, 1},
              ld_bad[4] = {2, 32, 3, 2};
    assert_null(wg->check(ld2, &d128, &gpu));
    assert_int_equal(wg->local_bytes(ld2, &d128), 5 * 32 * 128 * 2);
    assert_non_null(strstr(wg->check(ld3, &d128, &gpu), "at most two"));
    assert_non_null(strstr(wg->check(ld_st2, &d128, &gpu), "needs st=3"));
    assert_non_null(strstr(wg->check(ld_bad, &d128, &gpu), "ld 0 or 1"));
    clattn_attention_desc d116w = problem(CLATTN_ALGO_FLASH, CLATTN_DTYPE_F16, 116, 0);
    assert_non_null(strstr(wg->check(ld2, &d116w, &gpu), "head_dim % 8"));
    clattn__device_info wg256 = gpu;
    wg256.max_wg = 256;
    assert_non_null(strstr(wg->check(ld2, &d128, &wg256), "128*(wgs+ld)"));
    int cfg[4];
    assert_true(wg->fallback(&gpu, &d128, cfg));
    assert_int_equal(cfg[0], 3);
    assert_int_equal(cfg[1], 32);
    assert_int_equal(cfg[2], 3);
    assert_int_equal(cfg[3], 0);
    assert_true(wg->fallback(&gpu, &d, cfg));
    assert_int_equal(cfg[0], 3);
    assert_int_equal(cfg[1], 64);
    assert_int_equal(cfg[2], 3);
    assert_int_equal(cfg[3], 0);
    clattn__device_info small = gpu;
    small.max_wg = 256;
    assert_non_null(strstr(wg->check(three32, &d128, &small), "work-group size"));
  }
  /* A variant whose build failed on the device is passed over, with why. */
  clattn__device_info broken = gpu;
  broken.broken_variants = 1ull << clattn__variant_index(clattn__variant_find("flash_wgmma"));
  char whyb[2048];
  assert_int_equal(
      clattn__applicable_variants(&broken, &d, CLATTN__FORWARD, false, c, 16, whyb, sizeof whyb),
      3);
  assert_string_equal(c[0]->name, "flash_tc");
  assert_string_equal(c[1]->name, "flash_tcq");
  assert_string_equal(c[2]->name, "flash");
  assert_non_null(strstr(whyb, "flash_wgmma: its build failed"));
  /* sm_80: mma.sync only. */
  clattn__device_info a100 = gpu;
  a100.nv_cc_major = 8;
  assert_int_equal(clattn__applicable_variants(&a100, &d, CLATTN__FORWARD, false, c, 16, NULL, 0),
                   3);
  assert_string_equal(c[0]->name, "flash_tc");
  assert_string_equal(c[1]->name, "flash_tcq");
  assert_int_equal(clattn__applicable_variants(&gpu, &d, CLATTN__FORWARD, true, c, 16, NULL, 0), 1);
  assert_string_equal(c[0]->name, "flash");
  assert_int_equal(clattn__applicable_variants(&cpu, &d, CLATTN__FORWARD, false, c, 16, NULL, 0),
                   2);
  assert_string_equal(c[0]->name, "flash_rows");
  d.algo = CLATTN_ALGO_AUTO;
  assert_int_equal(clattn__applicable_variants(&cpu, &d, CLATTN__FORWARD, true, c, 16, NULL, 0), 1);
  assert_string_equal(c[0]->name, "flash");
  d.algo = CLATTN_ALGO_LINEAR;
  assert_int_equal(clattn__applicable_variants(&gpu, &d, CLATTN__FORWARD, false, c, 16, NULL, 0),
                   2);
  assert_string_equal(c[0]->name, "linear_tc");
  char why[512];
  assert_int_equal(
      clattn__applicable_variants(&cpu, &d, CLATTN__FORWARD, false, c, 16, why, sizeof why), 1);
  assert_string_equal(c[0]->name, "linear");
  assert_non_null(strstr(why, "linear_tc"));
  d.algo = CLATTN_ALGO_NAIVE;
  assert_int_equal(clattn__applicable_variants(&gpu, &d, CLATTN__FORWARD, false, c, 16, NULL, 0),
                   1);
  assert_string_equal(c[0]->name, "naive");
}

/* decode's automatic split count on a 132-unit GPU (bf16, Hq 32, Hk 8,
 * d 128, one query row: one row block of decode_tc, kt 64): one-warp
 * work-groups in whole rounds, four a unit from B·Hk ≥ 33 up (B = 8: 8
 * splits), two below (B = 1: 33, B = 4: 8), int8 32 a unit rounded up,
 * two warps a work-group half the work-groups, at most a split per two
 * tiles of keys; the CPU form two a unit rounded up. */
static void test_decode_splits(void **state) {
  (void)state;
  clattn__device_info gpu = fake_device(0, 48 * 1024, 1024), cpu = fake_device(1, 1 << 20, 4096);
  gpu.compute_units = 132;
  cpu.compute_units = 2;
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.dtype = CLATTN_DTYPE_BF16;
  d.heads = 32;
  d.kv_heads = 8;
  d.head_dim = 128;
  d.seq_q = 1;
  d.seq_kv = 32768;
  static const int batch[] = {1, 4, 5, 8, 16, 64};
  static const int want[] = {33, 8, 13, 8, 4, 1};
  for (size_t i = 0; i < sizeof batch / sizeof *batch; i++) {
    d.batch = batch[i];
    assert_int_equal(clattn__decode_auto_splits(&gpu, &d, true, 1, 64, 1, false), want[i]);
  }
  d.batch = 8;
  assert_int_equal(clattn__decode_auto_splits(&gpu, &d, true, 2, 64, 1, false), 4);
  d.seq_kv = 300; /* (300 + 127) / 128 = 3 splits at most */
  assert_int_equal(clattn__decode_auto_splits(&gpu, &d, true, 1, 64, 1, false), 3);
  d.seq_kv = 131072;
  d.kv_dtype = CLATTN_KV_DTYPE_INT8;
  assert_int_equal(clattn__decode_auto_splits(&gpu, &d, true, 1, 64, 1, false), 66);
  d.kv_dtype = CLATTN_KV_DTYPE_SAME;
  d.batch = 1; /* CPU: 2 units × 2 over 8 KV heads, rounded up */
  assert_int_equal(clattn__decode_auto_splits(&cpu, &d, false, 1, 64, 1, false), 1);
  assert_int_equal(clattn__decode_auto_splits(&cpu, &d, false, 1, 64, 1, true), 4);
}

/* The total of clattn__naive_workspace(), SIZE_MAX when it does not fit. */
static size_t naive_workspace_bytes(const clattn_attention_desc *d) {
  clattn__naive_ws w;
  return clattn__naive_workspace(d, &w) ? w.total : SIZE_MAX;
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
  assert_int_equal(naive_workspace_bytes(&d), ws.total);
  static const clattn_dtype half[] = {CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (int t = 0; t < 2; t++) {
    d.dtype = half[t];
    assert_true(clattn__naive_workspace(&d, &ws));
    assert_int_equal(ws.scores, 2 * 4 * 7 * 9 * 4);
    assert_int_equal(ws.q, 2 * 4 * 7 * 16 * 4);
    assert_int_equal(ws.k, 2 * 2 * 9 * 16 * 4);
    assert_int_equal(ws.v, ws.k);
    assert_int_equal(ws.total, ws.scores + ws.q + 2 * ws.k);
    assert_int_equal(naive_workspace_bytes(&d), ws.total);
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
    assert_int_equal(naive_workspace_bytes(&d),
                     ((uint64_t)1 << 37) + ((uint64_t)1 << 29) + ((uint64_t)1 << 28));
  d.batch = d.heads = d.kv_heads = d.seq_q = d.seq_kv = 0x7fffffff;
  assert_false(clattn__naive_workspace(&d, &ws));
  assert_int_equal(ws.total, 0);
  assert_true(naive_workspace_bytes(&d) == SIZE_MAX);
  d.batch = 0;
  assert_true(naive_workspace_bytes(&d) == SIZE_MAX);
  assert_true(naive_workspace_bytes(NULL) == SIZE_MAX);
  assert_false(clattn__naive_workspace(NULL, &ws));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_shape),
      cmocka_unit_test(test_check_respects_limits),
      cmocka_unit_test(test_default_is_legal),
      cmocka_unit_test(test_illegal_rejected),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_selection),
      cmocka_unit_test(test_naive_workspace),
      cmocka_unit_test(test_decode_splits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
