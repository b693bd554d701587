/* test_tune.c — tuner, search-space constraints, tuning database (corruption, concurrency, source
 * hash, export/import) and overrides. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "tune.h"
#include "variant.h"
#include "cache.h"
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Every test works under a fresh temporary cache directory (never ~/.cache). */
static char root[256];

/* Points CLATTN_CACHE_DIR at <root>/<name> (emptied). */
static void use_cache(const char *name) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  tu_rm_rf(dir);
  mkdir(dir, 0755);
  setenv("CLATTN_CACHE_DIR", dir, 1);
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return buf;
}

/* The small problem every device test plans: d=16 (its own bucket). */
static clattn_attention_desc small_desc(int seq) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.head_dim = 16;
  d.seq_q = d.seq_kv = seq;
  d.algo = CLATTN_ALGO_FLASH;
  return d;
}

/* Stores a hand-made entry (flash f32 d=16 seq=64 -> bm=16,bn=8,tm=2,tn=4). */
static clattn__tunedb_entry store_small_entry(clattn_context ctx) {
  clattn__tunedb_entry e;
  memset(&e, 0, sizeof e);
  snprintf(e.kernel, sizeof e.kernel, "flash");
  assert_int_equal(clattn__source_hash(ctx, clattn__variant_find("flash"), e.src), CLATTN_SUCCESS);
  e.dtype = CLATTN_DTYPE_F32;
  e.head_dim = 16;
  e.mask = CLATTN_MASK_NONE;
  e.seq = 64;
  snprintf(e.config, sizeof e.config, "bm=16,bn=8,tm=2,tn=4");
  e.ms = e.default_ms = -1;
  assert_int_equal(clattn__tunedb_store(ctx, &e, 1), CLATTN_SUCCESS);
  return e;
}

/* Creates a plan for seq and returns its describe line (static buffer). */
static const char *plan_describe(clattn_context ctx, int seq, unsigned flags) {
  static char buf[512];
  clattn_attention_desc d = small_desc(seq);
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create(ctx, &d, flags, &plan);
  if (st != CLATTN_SUCCESS)
    fail_msg("plan_create: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  snprintf(buf, sizeof buf, "%s", clattn_plan_describe(plan));
  clattn_plan_release(plan);
  return buf;
}

#define ASSERT_HAS(hay, needle)                                                                    \
  do {                                                                                             \
    if (!strstr((hay), (needle))) fail_msg("'%s' not found in: %s", (needle), (hay));              \
  } while (0)

/* ---- no device ------------------------------------------------------------ */

static void test_buckets(void **state) {
  (void)state;
  assert_int_equal(clattn__head_dim_bucket(64), 64);
  assert_int_equal(clattn__head_dim_bucket(80), 80);
  assert_int_equal(clattn__head_dim_bucket(96), 96);
  assert_int_equal(clattn__head_dim_bucket(256), 256);
  assert_int_equal(clattn__head_dim_bucket(50), 64);
  assert_int_equal(clattn__head_dim_bucket(1), 16);
  assert_int_equal(clattn__head_dim_bucket(100), 112);
  assert_int_equal(clattn__seq_bucket(1), 16);
  assert_int_equal(clattn__seq_bucket(17), 32);
  assert_int_equal(clattn__seq_bucket(1024), 1024);
  assert_int_equal(clattn__seq_bucket(1025), 4096);
  assert_int_equal(clattn__seq_bucket(4097), 16384);
  assert_int_equal(clattn__seq_bucket(16385), CLATTN__SEQ_OPEN);
  char b[16];
  clattn__seq_bucket_name(CLATTN__SEQ_OPEN, b, sizeof b);
  assert_string_equal(b, "inf");
}

/* A fake timing: deterministic, with some candidates "failing". */
static double fake_ms(const int *p) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 4; i++)
    h = (h ^ (uint64_t)p[i]) * 1099511628211ull;
  return (h % 97 == 0) ? -1 : 1.0 + (double)(h % 1000);
}

/* The search never proposes an illegal or repeated configuration, finds the
 * legal set exactly, proposes the default first, and (exhaustive) finds the
 * true minimum — for several device limits, head dims and restrictions. */
static clattn__device_info fake(int cpu, const char *vendor, int cc, size_t local, size_t wg);

static void test_search_property(void **state) {
  (void)state;
  const clattn__variant *sp = clattn__variant_find("flash");
  static const size_t locals[] = {8 * 1024, 32 * 1024, 48 * 1024, 64 * 1024, 1 << 20};
  static const size_t wgs[] = {32, 64, 256, 1024, 4096};
  static const int hds[] = {1, 16, 40, 64, 80, 128, 200, 256};
  static const char *restricts[] = {NULL, "bm=16,32;tn=4", "tm=1,2,4 ; bn=8,128"};
  long proposals = 0;
  for (size_t a = 0; a < sizeof locals / sizeof *locals; a++)
    for (size_t w = 0; w < sizeof wgs / sizeof *wgs; w++)
      for (size_t h = 0; h < sizeof hds / sizeof *hds; h++)
        for (size_t r = 0; r < sizeof restricts / sizeof *restricts; r++)
          for (int mode = 0; mode < 2; mode++) {
            const clattn__device_info info = fake(0, "Other", 0, locals[a], wgs[w]);
            clattn_attention_desc d = small_desc(64);
            d.head_dim = hds[h];
            int legal = 0;
            for (int i0 = 0; i0 < sp->params[0].num_values; i0++)
              for (int i1 = 0; i1 < sp->params[1].num_values; i1++)
                for (int i2 = 0; i2 < sp->params[2].num_values; i2++)
                  for (int i3 = 0; i3 < sp->params[3].num_values; i3++) {
                    int p[4] = {sp->params[0].values[i0], sp->params[1].values[i1],
                                sp->params[2].values[i2], sp->params[3].values[i3]};
                    if (!sp->check(p, &d, &info)) legal++;
                  }
            int def[4] = {8, 8, 2, 4};
            clattn__search s;
            char err[256];
            clattn_status st =
                clattn__search_init(&s, sp, &d, &info, restricts[r], def, 7 + a * 31 + h,
                                    mode ? 1 << 30 : 0, err, sizeof err);
            if (st == CLATTN_ERROR_UNSUPPORTED) continue; /* nothing legal */
            assert_int_equal(st, CLATTN_SUCCESS);
            if (!restricts[r]) assert_int_equal(s.num, legal);
            assert_true(s.num <= legal);
            int first = 1, best = -1;
            double best_ms = 0;
            for (;;) {
              int idx = clattn__search_next(&s, 0.1);
              if (idx < 0) break;
              assert_true(idx < s.num);
              assert_int_equal(s.st[idx], 1); /* freshly proposed, not a repeat */
              const int *p = s.cfg + (size_t)idx * 4;
              const char *why = sp->check(p, &d, &info);
              if (why)
                fail_msg("illegal proposal bm=%d bn=%d tm=%d tn=%d: %s", p[0], p[1], p[2], p[3],
                         why);
              if (first && s.has_default) assert_memory_equal(p, def, sizeof def);
              first = 0;
              double ms = fake_ms(p);
              if (ms >= 0 && (best < 0 || ms < best_ms)) {
                best = idx;
                best_ms = ms;
              }
              clattn__search_report(&s, idx, ms);
              proposals++;
            }
            assert_int_equal(s.done, s.num); /* without a budget every one is tried */
            if (best >= 0) assert_true(s.ms[s.best] == best_ms);
            clattn__search_free(&s);
          }
  assert_true(proposals > 1000);
  /* A bad restriction is refused with a reason. */
  clattn__search s;
  char err[256];
  const clattn__device_info info = fake(0, "Other", 0, 48 * 1024, 1024);
  const clattn_attention_desc d = small_desc(64);
  assert_int_equal(clattn__search_init(&s, sp, &d, &info, "bm=7", NULL, 1, 0, err, sizeof err),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_HAS(err, "bm");
  assert_int_equal(clattn__search_init(&s, sp, &d, &info, "xx=8", NULL, 1, 0, err, sizeof err),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  /* The linear variant's space: parameters the tuner does not search keep
   * the base configuration's value; every proposal is legal. */
  const clattn__variant *lin = clattn__variant_find("linear");
  const clattn__device_info cpu = fake(1, "Other", 0, 1 << 20, 4096);
  clattn_attention_desc ld = small_desc(64);
  ld.algo = CLATTN_ALGO_LINEAR;
  ld.mask = CLATTN_MASK_CAUSAL;
  int base[CLATTN__MAX_PARAMS];
  assert_true(lin->fallback(&cpu, &ld, base));
  assert_int_equal(clattn__search_init(&s, lin, &ld, &cpu, NULL, base, 3, 0, err, sizeof err),
                   CLATTN_SUCCESS);
  assert_true(s.num > 100);
  for (int i = 0; i < 50; i++) {
    int idx = clattn__search_next(&s, 0.1);
    assert_true(idx >= 0);
    const int *p = s.cfg + (size_t)idx * (size_t)s.np;
    assert_null(lin->check(p, &ld, &cpu));
    assert_int_equal(p[1], base[1]); /* split: not searched */
    clattn__search_report(&s, idx, 1.0 + i);
  }
  clattn__search_free(&s);
}

static clattn__device_info fake(int cpu, const char *vendor, int cc, size_t local, size_t wg) {
  clattn__device_info i;
  memset(&i, 0, sizeof i);
  snprintf(i.name, sizeof i.name, "%s", cpu ? "fake cpu" : "fake gpu");
  snprintf(i.vendor, sizeof i.vendor, "%s", vendor);
  i.type = cpu ? CL_DEVICE_TYPE_CPU : CL_DEVICE_TYPE_GPU;
  i.is_cpu = cpu != 0;
  i.is_nvidia = !strcmp(vendor, "NVIDIA Corporation");
  i.is_amd = !strcmp(vendor, "Advanced Micro Devices, Inc.");
  i.is_intel = !strcmp(vendor, "Intel(R) Corporation");
  i.nv_cc_major = cc / 10;
  i.nv_cc_minor = cc % 10;
  i.local_mem = local;
  i.max_wg = wg;
  return i;
}

/* The built-in default of variant v for d on info: its configuration is cfg
 * (NULL: not checked) and its row's label is label. */
static void expect_default(const clattn__device_info *info, const clattn__variant *v,
                           const clattn_attention_desc *d, const char *cfg, const char *label) {
  int p[CLATTN__MAX_PARAMS];
  char got[64], lab[64];
  assert_true(clattn__builtin_default(info, v, d, p, lab, sizeof lab));
  assert_string_equal(lab, label);
  if (!cfg) return;
  clattn__config_format(v, p, got, sizeof got);
  assert_string_equal(got, cfg);
}

/* Built-in defaults: always legal, and the measured NVIDIA rows are used. */
static void test_builtin_defaults(void **state) {
  (void)state;
  static const char *vendors[] = {"NVIDIA Corporation", "Advanced Micro Devices, Inc.",
                                  "Intel(R) Corporation", "Other"};
  static const size_t locals[] = {16 * 1024, 48 * 1024, 64 * 1024, 1 << 20};
  static const size_t wgs[] = {64, 256, 1024};
  for (int vi = 0; clattn__variant_at(vi); vi++) {
    const clattn__variant *sp = clattn__variant_at(vi);
    for (int cpu = 0; cpu < 2; cpu++)
      for (int v = 0; v < 4; v++)
        for (size_t a = 0; a < 4; a++)
          for (size_t w = 0; w < 3; w++)
            for (int hd = 1; hd <= 256; hd += 17) {
              clattn__device_info info = fake(cpu, vendors[v], v == 0 ? 90 : 0, locals[a], wgs[w]);
              clattn_attention_desc d = small_desc(64);
              d.algo = sp->family;
              d.head_dim = hd;
              int p[CLATTN__MAX_PARAMS];
              char label[64];
              if (clattn__builtin_default(&info, sp, &d, p, label, sizeof label))
                assert_null(sp->check(p, &d, &info));
            }
  }
  const clattn__variant *sp = clattn__variant_find("flash");
  clattn__device_info h200 = fake(0, "NVIDIA Corporation", 90, 48 * 1024, 1024);
  clattn_attention_desc d = small_desc(64);
  d.head_dim = 64;
  int p[CLATTN__MAX_PARAMS];
  char label[64], cfg[128];
  assert_true(clattn__builtin_default(&h200, sp, &d, p, label, 64));
  clattn__config_format(sp, p, cfg, sizeof cfg);
  assert_string_equal(cfg, "bm=64,bn=32,tm=16,tn=8");
  assert_string_equal(label, "NVIDIA GPU");
  d.head_dim = 128;
  assert_true(clattn__builtin_default(&h200, sp, &d, p, label, 64));
  clattn__config_format(sp, p, cfg, sizeof cfg);
  assert_string_equal(cfg, "bm=64,bn=16,tm=16,tn=8");
  /* Linear causal on tensor cores, d = 64, 48 KiB: the NVIDIA row's 32-key
   * state tiles do not fit, the 16-key row after it applies. This is the
   * configuration the tree before the registry reached by halving
   * (`chunk=64 ... state bks=16 ... causal ctr=16`, measured identical on
   * the H100); the generic tiling (chunk=32, ctr=8) ran 1.32x slower. */
  {
    const clattn__variant *ltc = clattn__variant_find("linear_tc");
    clattn_attention_desc dl = small_desc(64);
    dl.algo = CLATTN_ALGO_LINEAR;
    dl.head_dim = 64;
    dl.mask = CLATTN_MASK_CAUSAL;
    assert_true(clattn__builtin_default(&h200, ltc, &dl, p, label, 64));
    assert_string_equal(label, "NVIDIA GPU");
    char lc[512];
    clattn__config_format(ltc, p, lc, sizeof lc);
    ASSERT_HAS(lc, "chunk=64,");
    ASSERT_HAS(lc, ",bks=16,");
    ASSERT_HAS(lc, ",ctr=16,ctc=8,cfs=32,");
  }
  /* flash_tc at d = 64: two m-tiles a warp for dense plans, the sparse
   * row's 64-row blocks for a window (the row only for sparse masks);
   * flash_tf32's measured row for f32. */
  {
    const clattn__variant *tc = clattn__variant_find("flash_tc");
    clattn_attention_desc dt = small_desc(64);
    dt.head_dim = 64;
    dt.dtype = CLATTN_DTYPE_F16;
    expect_default(&h200, tc, &dt, "warps=4,mt=2,bn=64", "NVIDIA GPU");
    dt.mask = CLATTN_MASK_WINDOW;
    expect_default(&h200, tc, &dt, "warps=4,mt=1,bn=32", "NVIDIA GPU, window");
    dt.mask = CLATTN_MASK_BIGBIRD; /* other sparse masks: 64-key tiles */
    expect_default(&h200, tc, &dt, "warps=4,mt=1,bn=64", "NVIDIA GPU, sparse");
    dt.mask = CLATTN_MASK_CAUSAL;
    expect_default(&h200, tc, &dt, NULL, "NVIDIA GPU");
    /* bf16 softcap alone without a mask: 8 warps of one m-tile; with a
     * causal mask, in f16 or with ALiBi beside it, the dense row */
    dt.softcap = 30.0;
    dt.dtype = CLATTN_DTYPE_BF16;
    expect_default(&h200, tc, &dt, NULL, "NVIDIA GPU");
    dt.mask = CLATTN_MASK_NONE;
    expect_default(&h200, tc, &dt, "warps=8,mt=1,bn=64", "NVIDIA GPU, bf16 softcap, no mask");
    dt.alibi_max_bias = 8.0;
    expect_default(&h200, tc, &dt, NULL, "NVIDIA GPU");
    dt.alibi_max_bias = 0.0;
    dt.dtype = CLATTN_DTYPE_F16;
    expect_default(&h200, tc, &dt, NULL, "NVIDIA GPU");
    dt.softcap = 0.0;
    dt.mask = CLATTN_MASK_CAUSAL;
    /* flash_tcq at d = 128: two m-tiles a warp with Q in local memory */
    const clattn__variant *tq = clattn__variant_find("flash_tcq");
    dt.head_dim = 128;
    assert_true(clattn__builtin_default(&h200, tq, &dt, p, label, 64));
    clattn__config_format(tq, p, cfg, sizeof cfg);
    assert_string_equal(cfg, "warps=4,mt=2,bn=32");
    const clattn__variant *tf = clattn__variant_find("flash_tf32");
    dt.dtype = CLATTN_DTYPE_F32;
    dt.head_dim = 128;
    assert_true(clattn__builtin_default(&h200, tf, &dt, p, label, 64));
    clattn__config_format(tf, p, cfg, sizeof cfg);
    assert_string_equal(cfg, "warps=8,mt=1,bn=32");
  }
  /* The CPU kernel's row. */
  clattn__device_info cpu = fake(1, "Other", 0, 1 << 20, 4096);
  assert_true(clattn__builtin_default(&cpu, clattn__variant_find("flash_rows"), &d, p, label, 64));
  assert_string_equal(label, "CPU");
  assert_int_equal(p[0], 16);
  assert_int_equal(p[1], 64);
}

/* The parser survives garbage and keeps the good lines. */
static void test_db_parse(void **state) {
  (void)state;
  const char *good = "entry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=none "
                     "seq=4096 config=bm=64,bn=32,tm=16,tn=8 ms=1.5 default_ms=2 verified=1\n";
  char text[4096];
  snprintf(text, sizeof text,
           "# comment\nclattn-tunedb 1\nplatform P\nvendor V\ndevice D\ndriver 1.0\ncc -\n%s"
           "entry kernel=flash src=zz\n"
           "entry kernel=flash src=0123456789abcdef dtype=f99 d=64 mask=none seq=64 config=x\n"
           "entry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=none seq=100 config=x\n"
           "something else\n"
           "entry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=causal seq=inf "
           "config=bm=8,bn=8,tm=1,tn=1 future_key=7",
           good);
  clattn__tunedb db;
  memset(&db, 0, sizeof db);
  assert_int_equal(clattn__tunedb_parse(text, "t", &db), CLATTN_SUCCESS);
  assert_int_equal(db.n, 2);
  assert_int_equal(db.bad_lines, 4);
  assert_string_equal(db.device, "D");
  assert_int_equal(db.e[1].seq, CLATTN__SEQ_OPEN);
  ASSERT_HAS(db.note, "line 9 ignored");
  /* Round trip. */
  char *out = clattn__tunedb_format(&db);
  assert_non_null(out);
  clattn__tunedb db2;
  memset(&db2, 0, sizeof db2);
  assert_int_equal(clattn__tunedb_parse(out, "t2", &db2), CLATTN_SUCCESS);
  assert_int_equal(db2.n, 2);
  assert_int_equal(db2.bad_lines, 0);
  assert_string_equal(db2.e[0].config, db.e[0].config);
  free(out);
  clattn__tunedb_free(&db);
  clattn__tunedb_free(&db2);
  /* Unknown version, binary junk, no header, empty: no entries, a note. */
  static const char *bad[] = {"clattn-tunedb 99\nentry kernel=flash", "\x01\x02\xff garbage",
                              "entry kernel=flash src=0123456789abcdef", ""};
  for (int i = 0; i < 4; i++) {
    memset(&db, 0, sizeof db);
    assert_int_equal(clattn__tunedb_parse(bad[i], "b", &db), CLATTN_SUCCESS);
    assert_int_equal(db.n, 0);
    if (i < 3) assert_true(db.note[0] != 0);
    clattn__tunedb_free(&db);
  }
}

/* Item 5 of #13: the writer never cuts an entry, whatever its size, and the
 * parser rejects non-finite and absurd timings as bad lines. */
static void test_db_format_no_truncation(void **state) {
  (void)state;
  clattn__tunedb db;
  memset(&db, 0, sizeof db);
  snprintf(db.device, sizeof db.device, "D");
  for (int i = 0; i < 10; i++) {
    clattn__tunedb_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.kernel, sizeof e.kernel, "flash");
    snprintf(e.src, sizeof e.src, "0123456789abcdef");
    e.dtype = CLATTN_DTYPE_F32;
    e.head_dim = 16 * (i + 1);
    e.mask = CLATTN_MASK_NONE;
    e.seq = 64;
    memset(e.config, 'c', sizeof e.config - 1);
    memset(e.date, '2', sizeof e.date - 1);
    e.ms = e.default_ms = 1e300; /* 300+ digits with %.4f */
    e.verified = 1;
    assert_int_equal(clattn__tunedb_put(&db, &e), CLATTN_SUCCESS);
  }
  char *out = clattn__tunedb_format(&db);
  assert_non_null(out);
  int lines = 0;
  for (char *l = strstr(out, "\nentry "); l; l = strstr(l + 1, "\nentry ")) {
    char *end = strchr(l + 1, '\n');
    assert_non_null(end); /* every entry line is complete */
    char date[64];
    snprintf(date, sizeof date, " date=%.31s\n", db.e[0].date);
    assert_memory_equal(end - (strlen(date) - 1), date, strlen(date));
    lines++;
  }
  assert_int_equal(lines, 10);
  /* Parsed back: the absurd timings make every line a bad line, counted and
   * noted like others (nothing silently half-read). */
  clattn__tunedb db2;
  memset(&db2, 0, sizeof db2);
  assert_int_equal(clattn__tunedb_parse(out, "t", &db2), CLATTN_SUCCESS);
  assert_int_equal(db2.n, 0);
  assert_int_equal(db2.bad_lines, 10);
  ASSERT_HAS(db2.note, "bad ms");
  free(out);
  clattn__tunedb_free(&db2);
  /* Sane timings survive the round trip exactly. */
  for (int i = 0; i < db.n; i++)
    db.e[i].ms = db.e[i].default_ms = 12345.5 + i;
  out = clattn__tunedb_format(&db);
  assert_non_null(out);
  memset(&db2, 0, sizeof db2);
  assert_int_equal(clattn__tunedb_parse(out, "t", &db2), CLATTN_SUCCESS);
  assert_int_equal(db2.n, 10);
  assert_int_equal(db2.bad_lines, 0);
  for (int i = 0; i < 10; i++) {
    assert_string_equal(db2.e[i].config, db.e[i].config);
    assert_true(db2.e[i].ms == db.e[i].ms);
  }
  free(out);
  clattn__tunedb_free(&db2);
  clattn__tunedb_free(&db);
  static const char *const bad[] = {"1e300", "inf", "nan", "-1", "1e8", "0x1p2000"};
  for (int i = 0; i < 6; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "clattn-tunedb 1\nentry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=none "
             "seq=64 config=bm=8 ms=%s\n"
             "entry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=none "
             "seq=128 config=bm=8 default_ms=%s\n",
             bad[i], bad[i]);
    memset(&db2, 0, sizeof db2);
    assert_int_equal(clattn__tunedb_parse(text, "t", &db2), CLATTN_SUCCESS);
    if (db2.n != 0 || db2.bad_lines != 2) fail_msg("ms=%s accepted", bad[i]);
    clattn__tunedb_free(&db2);
  }
}

/* Item 6 of #13 (parse side): a UTF-8 BOM is accepted; a newer version or
 * no header marks the file unreadable. */
static void test_db_bom_and_versions(void **state) {
  (void)state;
  clattn__tunedb db;
  memset(&db, 0, sizeof db);
  assert_int_equal(clattn__tunedb_parse("\xEF\xBB\xBF"
                                        "clattn-tunedb 1\ndevice D\nentry kernel=flash "
                                        "src=0123456789abcdef dtype=f32 d=64 mask=none "
                                        "seq=64 config=bm=8\n",
                                        "t", &db),
                   CLATTN_SUCCESS);
  assert_int_equal(db.n, 1);
  assert_int_equal(db.unreadable, 0);
  assert_string_equal(db.device, "D");
  clattn__tunedb_free(&db);
  static const char *const unreadable[] = {"clattn-tunedb 2\nentry kernel=flash\n",
                                           "\xFE\xFF junk\n", "device D\nclattn-tunedb 1\n"};
  for (int i = 0; i < 3; i++) {
    memset(&db, 0, sizeof db);
    assert_int_equal(clattn__tunedb_parse(unreadable[i], "t", &db), CLATTN_SUCCESS);
    assert_int_equal(db.unreadable, 1);
    clattn__tunedb_free(&db);
  }
  memset(&db, 0, sizeof db); /* comments only: nothing to lose */
  assert_int_equal(clattn__tunedb_parse("# nothing\n\n", "t", &db), CLATTN_SUCCESS);
  assert_int_equal(db.unreadable, 0);
  clattn__tunedb_free(&db);
}

/* ---- device ---------------------------------------------------------------- */

static char tuned_cfg[512];

/* Tunes a tiny space, writes the database; a second context reuses it. */
static void test_tune_tiny_and_reuse(void **state) {
  (void)state;
  use_cache("tune");
  clattn_context ctx = tu_new_context();
  clattn_tune_request r;
  clattn_tune_request_init(&r);
  r.head_dim = 16;
  r.seq = 64;
  r.heads = 2;
  r.budget_seconds = 60;
  r.space = "bm=8,16;bn=8;tm=2;tn=4";
  clattn_tune_result res;
  clattn_status st = clattn_tune(ctx, &r, &res);
  if (st != CLATTN_SUCCESS)
    fail_msg("clattn_tune: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  printf("tuned %s: best %s %.3f ms, default %s %.3f ms (x%.2f), %d/%d tried, err %.2g\n",
         res.problem_class, res.best_config, res.best_ms, res.default_config, res.default_ms,
         res.speedup, res.tried, res.space_size, res.max_rel_error);
  assert_string_equal(res.problem_class, "flash f32 d=16 mask=none seq=64");
  assert_true(res.verified);
  assert_true(res.stored);
  assert_true(res.exhaustive);
  assert_true(res.tried >= 2 && res.tried <= 3);
  assert_true(res.default_ms > 0 && res.best_ms > 0);
  assert_true(res.best_ms <= res.default_ms * 1.0); /* the default is a candidate */
  assert_true(res.speedup >= 1.0);
  snprintf(tuned_cfg, sizeof tuned_cfg, "%s", res.best_config);
  char path[1024];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
  ASSERT_HAS(path, root);
  const char *text = read_text(path);
  assert_non_null(text);
  ASSERT_HAS(text, "clattn-tunedb 1");
  char want[600];
  snprintf(want, sizeof want, "config=%s", res.best_config);
  ASSERT_HAS(text, want);
  clattn_context_release(ctx);

  /* A new context finds it without tuning. */
  ctx = tu_new_context();
  const char *d = plan_describe(ctx, 64, 0);
  ASSERT_HAS(d, "[tuned]");
  char cfg_words[160];
  int p[4];
  assert_int_equal(
      clattn__config_parse(clattn__variant_find("flash"), res.best_config, NULL, p, NULL, 0), 0);
  snprintf(cfg_words, sizeof cfg_words, "bm=%d bn=%d tm=%d tn=%d", p[0], p[1], p[2], p[3]);
  ASSERT_HAS(d, cfg_words);
  /* Another sequence bucket takes the nearest tuned one. */
  d = plan_describe(ctx, 100, 0);
  ASSERT_HAS(d, "tuned (nearest seq bucket 64)");
  clattn_context_release(ctx);
}

/* clattn_tune for the linear family: its search space, a verified winner
 * stored under the linear variant's name and used by the next plans. */
static void test_tune_linear(void **state) {
  (void)state;
  use_cache("linear");
  clattn_context ctx = tu_new_context();
  clattn_tune_request r;
  clattn_tune_request_init(&r);
  r.algo = CLATTN_ALGO_LINEAR;
  r.head_dim = 16;
  r.seq = 64;
  r.heads = 2;
  r.budget_seconds = 60;
  r.space = "bks=16,32;srf=4;src=8;bq=32;arq=4;arc=8;afs=16;chunk=32;cfs=16";
  clattn_tune_result res;
  clattn_status st = clattn_tune(ctx, &r, &res);
  if (st != CLATTN_SUCCESS)
    fail_msg("clattn_tune: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  assert_string_equal(res.variant, "linear");
  assert_string_equal(res.problem_class, "linear f32 d=16 mask=none seq=64");
  assert_true(res.verified && res.stored);
  /* the winner is a point of the space, or the built-in default (always a
   * candidate: it won on the H100, whose default has chunk=64) */
  if (strcmp(res.best_config, res.default_config)) ASSERT_HAS(res.best_config, "chunk=32,split=");
  clattn_context_release(ctx);
  ctx = tu_new_context();
  clattn_attention_desc d = small_desc(64);
  d.algo = CLATTN_ALGO_LINEAR;
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  ASSERT_HAS(clattn_plan_describe(plan), "[tuned]");
  clattn_plan_release(plan);
  /* A variant that does not apply is refused. */
  r.variant = "flash";
  assert_int_equal(clattn_tune(ctx, &r, &res), CLATTN_ERROR_UNSUPPORTED);
  clattn_context_release(ctx);
}

/* Child process of test_concurrent_tuners: tunes each sequence bucket in argv. */
static int tune_child(int argc, char **argv) {
  clattn_context ctx;
  if (clattn_context_create(NULL, &ctx) != CLATTN_SUCCESS) return 3;
  int rc = 0;
  for (int i = 0; i < argc; i++) {
    clattn_tune_request r;
    clattn_tune_request_init(&r);
    r.head_dim = 16;
    r.seq = atoi(argv[i]);
    r.heads = 1;
    r.budget_seconds = 0; /* the default only */
    clattn_tune_result res;
    if (clattn_tune(ctx, &r, &res) != CLATTN_SUCCESS || !res.stored) {
      fprintf(stderr, "child tune seq %s: %s\n", argv[i], clattn_context_last_error(ctx));
      rc = 1;
    }
  }
  clattn_context_release(ctx);
  return rc;
}

/* Two processes tuning at once leave a valid database with both results. */
static void test_concurrent_tuners(void **state) {
  (void)state;
  use_cache("fork");
  static char *const lists[2][4] = {{"16", "64", "256", "1024"}, {"32", "128", "512", "4096"}};
  pid_t pid[2];
  for (int c = 0; c < 2; c++) {
    pid[c] = fork();
    assert_true(pid[c] >= 0);
    if (pid[c] == 0) {
      char *args[8] = {"/proc/self/exe", "--tune-child", lists[c][0], lists[c][1],
                       lists[c][2],      lists[c][3],    NULL};
      execv("/proc/self/exe", args);
      _exit(127);
    }
  }
  for (int c = 0; c < 2; c++) {
    int status = 0;
    assert_int_equal(waitpid(pid[c], &status, 0), pid[c]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  clattn_context ctx = tu_new_context();
  char path[1024];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
  clattn__tunedb db;
  assert_int_equal(clattn__tunedb_read(path, &db), CLATTN_SUCCESS);
  assert_int_equal(db.bad_lines, 0);
  assert_int_equal(db.n, 8);
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < 4; i++) {
      int seq = atoi(lists[c][i]), found = 0;
      for (int k = 0; k < db.n; k++)
        found |= db.e[k].seq == seq;
      if (!found) fail_msg("entry for seq bucket %d lost", seq);
    }
  clattn__tunedb_free(&db);
  /* No temporary files are left behind. */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  DIR *dd = opendir(dir);
  assert_non_null(dd);
  struct dirent *e;
  while ((e = readdir(dd)))
    assert_null(strstr(e->d_name, ".tmp."));
  closedir(dd);
  clattn_context_release(ctx);
}

/* Forced configurations: the API call and CLATTN_TUNE_OVERRIDE beat the
 * database; illegal ones are refused naming the constraint. */
static void test_override(void **state) {
  (void)state;
  use_cache("override");
  clattn_context ctx = tu_new_context();
  clattn_attention_desc d = small_desc(64);
  /* A database entry that the overrides must beat. */
  store_small_entry(ctx);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "bm=16 bn=8 tm=2 tn=4 (8 work-items");

  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "bm=8,bn=8,tm=2,tn=4", &plan),
                   CLATTN_SUCCESS);
  ASSERT_HAS(clattn_plan_describe(plan), "bm=8 bn=8 tm=2 tn=4");
  ASSERT_HAS(clattn_plan_describe(plan), "[override (clattn_plan_create_with_config)]");
  clattn_plan_release(plan);
  plan = NULL;
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "bm=8,bn=8,tm=16,tn=4", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  ASSERT_HAS(clattn_context_last_error(ctx), "bm must be a multiple of tm");
  /* A partial string completes from the tuned entry. */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "bm=8,tn=4", &plan), CLATTN_SUCCESS);
  ASSERT_HAS(clattn_plan_describe(plan), "bm=8 bn=8 tm=2 tn=4");
  clattn_plan_release(plan);
  plan = NULL;
  /* NULL / "" config: the normal choice. */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "", &plan), CLATTN_SUCCESS);
  ASSERT_HAS(clattn_plan_describe(plan), "[tuned]");
  clattn_plan_release(plan);

  /* Named variants: a prefix picks the kernel; a partial string completes
   * from the tuned entry; a kernel of another family or one that does not
   * apply is refused. */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "flash:bn=16", &plan),
                   CLATTN_SUCCESS);
  ASSERT_HAS(clattn_plan_describe(plan), "bm=16 bn=16 tm=2 tn=4");
  clattn_plan_release(plan);
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "linear:chunk=8", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "nosuch:bm=8", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "flash_tc:warps=4", &plan),
                   CLATTN_ERROR_UNSUPPORTED); /* f32 */
  ASSERT_HAS(clattn_context_last_error(ctx), "does not apply");
  /* Issue 13.1: an oversized tile is illegal whatever its source. */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "bm=16,bn=1048576,tm=1,tn=1", &plan),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  /* CLATTN_PORTABLE=1 (set for this program) leaves the fast paths out. */
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "flash_rows:bn=64", &plan),
                   CLATTN_ERROR_UNSUPPORTED);
  ASSERT_HAS(clattn_context_last_error(ctx), "portable");
  clattn_context_release(ctx);

  /* The environment's list, read when a context is created; entries for
   * other families are skipped, entries that name no kernel are errors. */
  setenv("CLATTN_TUNE_OVERRIDE", "linear:chunk=16;bm=8,bn=8,tm=2,tn=4", 1);
  ctx = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[override (CLATTN_TUNE_OVERRIDE)]");
  ASSERT_HAS(plan_describe(ctx, 64, 0), "bm=8 bn=8 tm=2 tn=4");
  clattn_context_release(ctx);
  setenv("CLATTN_TUNE_OVERRIDE", "zz=1", 1);
  ctx = tu_new_context();
  unsetenv("CLATTN_TUNE_OVERRIDE");
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_HAS(clattn_context_last_error(ctx), "CLATTN_TUNE_OVERRIDE");
  clattn_context_release(ctx);
}

/* The database is read once per context: entries stored by another context
 * afterwards are seen by new contexts, not by one that has read it; the
 * context's own stores are seen at once. */
static void test_db_in_memory(void **state) {
  (void)state;
  use_cache("memory");
  clattn_context a = tu_new_context();
  ASSERT_HAS(plan_describe(a, 64, 0), "built-in default"); /* a reads the (empty) database */
  clattn_context b = tu_new_context();
  store_small_entry(b);
  ASSERT_HAS(plan_describe(b, 64, 0), "[tuned]");
  ASSERT_HAS(plan_describe(a, 64, 0), "built-in default");
  clattn_context c = tu_new_context();
  ASSERT_HAS(plan_describe(c, 64, 0), "[tuned]");
  store_small_entry(a); /* a's store merges the file and refreshes a's copy */
  ASSERT_HAS(plan_describe(a, 64, 0), "[tuned]");
  clattn_context_release(a);
  clattn_context_release(b);
  clattn_context_release(c);
}

typedef struct db_case {
  const char *what;
  int len; /* -1: strlen */
  const char *expect;
  const char *note;
} db_case;

/* Corrupt, truncated, foreign-version and nonsense database files never
 * break plan creation: they are ignored with a note. */
static void test_corrupt_db_files(void **state) {
  (void)state;
  use_cache("corrupt");
  clattn_context ctx = tu_new_context();
  char path[1024], src[17];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
  assert_int_equal(clattn__source_hash(ctx, clattn__variant_find("flash"), src), CLATTN_SUCCESS);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  assert_int_equal(clattn__mkdirs(dir), 0);
  clattn__tunedb me;
  memset(&me, 0, sizeof me);
  clattn__device_identity(&ctx->info, &me);
  char head[1200];
  snprintf(head, sizeof head,
           "clattn-tunedb 1\nplatform %s\nvendor %s\ndevice %s\ndriver %s\ncc %s\n", me.platform,
           me.vendor, me.device, me.driver, me.cc);
  char good[300];
  snprintf(
      good, sizeof good,
      "entry kernel=flash src=%s dtype=f32 d=16 mask=none seq=64 config=bm=16,bn=8,tm=2,tn=4\n",
      src);
  char text[4096];
  db_case cases[8];
  int nc = 0;
  static const char junk[] = "\x7f"
                             "ELF\x00\x01\x02garbage\xff\xfe";
  cases[nc++] = (db_case){junk, (int)sizeof junk, "built-in default", "ignored"};
  char trunc[1600];
  snprintf(trunc, sizeof trunc, "%s%.*s", head, 40, good); /* cut inside the entry line */
  cases[nc++] = (db_case){trunc, -1, "built-in default", "ignored"};
  static char v99[1600];
  snprintf(v99, sizeof v99, "clattn-tunedb 99\n%s", good);
  cases[nc++] = (db_case){v99, -1, "built-in default", "version 99"};
  static char mixed[2400];
  snprintf(mixed, sizeof mixed, "%sentry garbage here\n%s\x01\x02\nentry kernel=flash src=%s\n",
           head, good, src);
  cases[nc++] = (db_case){mixed, -1, "[tuned]", "line 7 ignored"};
  static char illegal[1600];
  snprintf(
      illegal, sizeof illegal,
      "%sentry kernel=flash src=%s dtype=f32 d=16 mask=none seq=64 config=bm=8,bn=8,tm=16,tn=4\n",
      head, src);
  cases[nc++] = (db_case){illegal, -1, "built-in default", NULL};
  static char stale[1600];
  snprintf(stale, sizeof stale,
           "%sentry kernel=flash src=ffffffffffffffff dtype=f32 d=16 mask=none seq=64 "
           "config=bm=16,bn=8,tm=2,tn=4\n",
           head);
  cases[nc++] = (db_case){stale, -1, "built-in default", "another kernel source"};
  cases[nc++] = (db_case){"", -1, "built-in default", NULL};
  for (int i = 0; i < nc; i++) {
    size_t n = cases[i].len < 0 ? strlen(cases[i].what) : (size_t)cases[i].len;
    memcpy(text, cases[i].what, n);
    write_file(path, text, n);
    /* A context reads the database once: a fresh one per file. */
    clattn_context_release(ctx);
    ctx = tu_new_context();
    clattn_attention_desc d = small_desc(64);
    clattn_plan plan = NULL;
    clattn_status st = clattn_plan_create(ctx, &d, 0, &plan);
    if (st != CLATTN_SUCCESS)
      fail_msg("case %d: %s: %s", i, clattn_status_string(st), clattn_context_last_error(ctx));
    if (!strstr(clattn_plan_describe(plan), cases[i].expect))
      fail_msg("case %d: '%s' not in '%s'", i, cases[i].expect, clattn_plan_describe(plan));
    if (cases[i].note && !strstr(clattn_context_last_error(ctx), cases[i].note))
      fail_msg("case %d: note '%s' not in '%s'", i, cases[i].note, clattn_context_last_error(ctx));
    clattn_plan_release(plan);
  }
  /* Writing merges into a corrupt file: the good entry stays, junk goes. */
  write_file(path, mixed, strlen(mixed));
  clattn__tunedb_entry e;
  memset(&e, 0, sizeof e);
  snprintf(e.kernel, sizeof e.kernel, "flash");
  snprintf(e.src, sizeof e.src, "%s", src);
  e.dtype = CLATTN_DTYPE_F32;
  e.head_dim = 16;
  e.mask = CLATTN_MASK_CAUSAL;
  e.seq = 64;
  snprintf(e.config, sizeof e.config, "bm=8,bn=8,tm=2,tn=4");
  e.ms = e.default_ms = -1;
  assert_int_equal(clattn__tunedb_store(ctx, &e, 1), CLATTN_SUCCESS);
  clattn__tunedb db;
  assert_int_equal(clattn__tunedb_read(path, &db), CLATTN_SUCCESS);
  assert_int_equal(db.n, 2);
  assert_int_equal(db.bad_lines, 0);
  clattn__tunedb_free(&db);
  clattn_context_release(ctx);
}

/* Item 5 of #13, end to end: importing entries with absurd timings imports
 * none of them (each a bad line, noted) instead of reporting them all and
 * storing a cut file; sane ones are all stored. */
static void test_import_absurd_timings(void **state) {
  (void)state;
  use_cache("absurd");
  clattn_context ctx = tu_new_context();
  clattn__tunedb me;
  memset(&me, 0, sizeof me);
  clattn__device_identity(&ctx->info, &me);
  char src[17];
  assert_int_equal(clattn__source_hash(ctx, clattn__variant_find("flash"), src), CLATTN_SUCCESS);
  char file[512];
  snprintf(file, sizeof file, "%s/absurd.txt", root);
  for (int pass = 0; pass < 2; pass++) {
    static char text[16384];
    int len = snprintf(text, sizeof text,
                       "clattn-tunedb 1\nplatform %s\nvendor %s\ndevice %s\ndriver %s\ncc %s\n",
                       me.platform, me.vendor, me.device, me.driver, me.cc);
    for (int i = 0; i < 10; i++)
      len += snprintf(text + len, sizeof text - (size_t)len,
                      "entry kernel=flash src=%s dtype=f32 d=%d mask=none seq=64 "
                      "config=bm=16,bn=8,tm=2,tn=4 ms=%s default_ms=%s verified=1\n",
                      src, 16 * (i + 1), pass ? "12.5" : "1e300", pass ? "13" : "1e300");
    write_file(file, text, (size_t)len);
    int n = -1;
    assert_int_equal(clattn_tunedb_import(ctx, file, &n), CLATTN_SUCCESS);
    if (pass == 0) ASSERT_HAS(clattn_context_last_error(ctx), "bad ms");
    char path[1024];
    assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
    clattn__tunedb db;
    assert_int_equal(clattn__tunedb_read(path, &db), CLATTN_SUCCESS);
    if (pass == 0) {
      assert_int_equal(n, 0);
      assert_int_equal(db.n, 0);
    } else {
      assert_int_equal(n, 10);
      assert_int_equal(db.n, 10);
      assert_int_equal(db.bad_lines, 0);
    }
    clattn__tunedb_free(&db);
  }
  clattn_context_release(ctx);
}

/* Counts files in dir whose name starts with prefix; the last one in out. */
static int count_prefixed(const char *dir, const char *prefix, char *out, size_t cap) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, prefix, strlen(prefix))) {
      n++;
      if (out) snprintf(out, cap, "%.700s/%.250s", dir, e->d_name);
    }
  closedir(d);
  return n;
}

/* Item 6 of #13: a store never replaces a database it could not read (a
 * newer version, no header): the file is moved aside, with a note; a file
 * with a UTF-8 BOM is read and merged. */
static void test_store_keeps_unreadable(void **state) {
  (void)state;
  use_cache("unreadable");
  clattn_context ctx = tu_new_context();
  char path[1024], dir[1024];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  assert_int_equal(clattn__mkdirs(dir), 0);
  static const char *const texts[] = {
      "clattn-tunedb 2\nplatform P\nentry kernel=flash from=the-future\n",
      "\x7f"
      "ELF binary junk\n",
  };
  for (int i = 0; i < 2; i++) {
    char aside[1024];
    int before = count_prefixed(dir, "tuning.txt.unreadable-", NULL, 0);
    write_file(path, texts[i], strlen(texts[i]));
    ctx->msg[0] = 0;
    store_small_entry(ctx);
    ASSERT_HAS(clattn_context_last_error(ctx), "moved aside");
    assert_int_equal(count_prefixed(dir, "tuning.txt.unreadable-", aside, sizeof aside),
                     before + 1);
    if (i == 0) ASSERT_HAS(read_text(aside), "from=the-future");
    ASSERT_HAS(read_text(path), "config=bm=16,bn=8,tm=2,tn=4");
    sleep(i == 0 ? 1 : 0); /* distinct time stamps in the names */
  }
  /* BOM: read, merged, not moved aside. */
  char *cur = read_text(path);
  char *bom = malloc(strlen(cur) + 4);
  assert_non_null(bom);
  snprintf(bom, strlen(cur) + 4, "\xEF\xBB\xBF%s", cur);
  write_file(path, bom, strlen(bom));
  free(bom);
  int before = count_prefixed(dir, "tuning.txt.unreadable-", NULL, 0);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  clattn__tunedb_entry e = store_small_entry(ctx);
  e.mask = CLATTN_MASK_CAUSAL;
  assert_int_equal(clattn__tunedb_store(ctx, &e, 1), CLATTN_SUCCESS);
  assert_int_equal(count_prefixed(dir, "tuning.txt.unreadable-", NULL, 0), before);
  clattn__tunedb db;
  assert_int_equal(clattn__tunedb_read(path, &db), CLATTN_SUCCESS);
  assert_int_equal(db.n, 2);
  clattn__tunedb_free(&db);
  clattn_context_release(ctx);
}

/* Item 7 of #13: a FIFO named like the database never blocks a lookup, a
 * read, an import or a store; a world-writable cache directory or database
 * file is ignored with a note, and a store into it is refused. */
static void test_db_fifo_and_trust(void **state) {
  (void)state;
  use_cache("trust");
  clattn_context ctx = tu_new_context();
  char path[1024], dir[1024];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_SUCCESS);
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  assert_int_equal(clattn__mkdirs(dir), 0);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 077, 0); /* created 0700 */

  alarm(60); /* a blocked open would hang: SIGALRM ends the test as a failure */
  assert_int_equal(mkfifo(path, 0600), 0);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
  ASSERT_HAS(clattn_context_last_error(ctx), "not a regular file");
  assert_null(clattn__read_file(path, NULL));
  clattn__tunedb db;
  assert_int_equal(clattn__tunedb_read(path, &db), CLATTN_SUCCESS);
  assert_int_equal(db.n, 0);
  clattn__tunedb_free(&db);
  int n = -1;
  assert_int_equal(clattn_tunedb_import(ctx, path, &n), CLATTN_ERROR_IO);
  ASSERT_HAS(clattn_context_last_error(ctx), "not a regular file");
  store_small_entry(ctx); /* the FIFO is moved aside */
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  alarm(0);

  /* A database file writable by others is ignored (a context reads the
   * database once: a fresh context after each change). */
  assert_int_equal(chmod(path, 0666), 0);
  clattn_context_release(ctx);
  ctx = tu_new_context();
  ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
  ASSERT_HAS(clattn_context_last_error(ctx), "writable by group or others");
  assert_int_equal(chmod(path, 0644), 0);
  clattn_context_release(ctx);
  ctx = tu_new_context();
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");

  /* A world-writable device directory, then cache root: ignored, not written. */
  const char *root_dir = getenv("CLATTN_CACHE_DIR");
  const char *dirs[2] = {dir, root_dir};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(chmod(dirs[i], 0777), 0);
    clattn_context_release(ctx);
    ctx = tu_new_context();
    ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
    ASSERT_HAS(clattn_context_last_error(ctx), "cache directory");
    ASSERT_HAS(clattn_context_last_error(ctx), "writable by group or others");
    clattn__tunedb_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.kernel, sizeof e.kernel, "flash");
    snprintf(e.src, sizeof e.src, "0123456789abcdef");
    e.head_dim = 16;
    e.seq = 64;
    snprintf(e.config, sizeof e.config, "bm=16,bn=8,tm=2,tn=4");
    assert_int_equal(clattn__tunedb_store(ctx, &e, 1), CLATTN_ERROR_IO);
    ASSERT_HAS(clattn_context_last_error(ctx), "not trusted");
    assert_int_equal(chmod(dirs[i], i == 0 ? 0700 : 0755), 0);
  }
  clattn_context_release(ctx);
  ctx = tu_new_context();
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  /* Owned by root while running as root is fine (the owner check compares
   * with the effective user; other owners cannot be made without privileges). */
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_uid, geteuid());
  clattn_context_release(ctx);
}

/* Writes the embedded kernel sources to dir, flash_fwd.cl with an extra line. */
static void write_changed_sources(const char *dir) {
  mkdir(dir, 0755);
  for (size_t i = 0; i < clattn__embedded_count; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, clattn__embedded_files[i].name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(clattn__embedded_files[i].data, 1, clattn__embedded_files[i].size, f);
    if (!strcmp(clattn__embedded_files[i].name, "flash_fwd.cl"))
      fputs("\n/* a kernel change */\n", f);
    fclose(f);
  }
}

/* A change of the kernel source invalidates the entries made for the old one. */
static void test_source_hash_change(void **state) {
  (void)state;
  use_cache("srchash");
  clattn_context ctx = tu_new_context();
  clattn__tunedb_entry e = store_small_entry(ctx);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  char kdir[512];
  snprintf(kdir, sizeof kdir, "%s/kernels", root);
  write_changed_sources(kdir);
  setenv("CLATTN_KERNEL_DIR", kdir, 1);
  clattn_context changed = tu_new_context();
  unsetenv("CLATTN_KERNEL_DIR");
  char src2[17];
  assert_int_equal(clattn__source_hash(changed, clattn__variant_find("flash"), src2),
                   CLATTN_SUCCESS);
  assert_string_not_equal(src2, e.src);
  ASSERT_HAS(plan_describe(changed, 64, 0), "built-in default");
  ASSERT_HAS(clattn_context_last_error(changed), "another kernel source");
  clattn_context_release(changed);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  clattn_context_release(ctx);
}

/* CLATTN_PLAN_MEASURE tunes when nothing is known, then the entry is reused. */
static void test_measure_flag(void **state) {
  (void)state;
  use_cache("measure");
  setenv("CLATTN_TUNE_BUDGET", "0", 1);
  clattn_context ctx = tu_new_context();
  ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
  ASSERT_HAS(plan_describe(ctx, 64, CLATTN_PLAN_MEASURE), "[tuned now");
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");
  ASSERT_HAS(plan_describe(ctx, 64, CLATTN_PLAN_MEASURE), "[tuned]"); /* no second tuning */
  unsetenv("CLATTN_TUNE_BUDGET");
  clattn_context_release(ctx);
}

/* Export moves entries to another machine (here: another cache dir). */
static void test_export_import(void **state) {
  (void)state;
  use_cache("export-a");
  clattn_context ctx = tu_new_context();
  store_small_entry(ctx);
  char file[512];
  snprintf(file, sizeof file, "%s/exported.txt", root);
  assert_int_equal(clattn_tunedb_export(ctx, file), CLATTN_SUCCESS);
  ASSERT_HAS(read_text(file), "config=bm=16,bn=8,tm=2,tn=4");

  use_cache("export-b");
  clattn_context_release(ctx);
  ctx = tu_new_context(); /* the cache directory is read when a context is created */
  ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
  int n = -1;
  assert_int_equal(clattn_tunedb_import(ctx, file, &n), CLATTN_SUCCESS);
  assert_int_equal(n, 1);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "[tuned]");

  /* Another device's file is refused; a missing one is an I/O error. */
  char other[512], *text = read_text(file);
  char *dev = strstr(text, "\ndevice ");
  assert_non_null(dev);
  memcpy(dev + 8, "XX", 2);
  snprintf(other, sizeof other, "%s/other.txt", root);
  write_file(other, text, strlen(text));
  assert_int_equal(clattn_tunedb_import(ctx, other, &n), CLATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_HAS(clattn_context_last_error(ctx), "not for this device");
  snprintf(other, sizeof other, "%s/missing.txt", root);
  assert_int_equal(clattn_tunedb_import(ctx, other, &n), CLATTN_ERROR_IO);

  /* Caches off: no path, plans still work. */
  setenv("CLATTN_CACHE_DIR", "off", 1);
  clattn_context_release(ctx);
  ctx = tu_new_context();
  char path[512];
  assert_int_equal(clattn_tunedb_path(ctx, path, sizeof path), CLATTN_ERROR_UNSUPPORTED);
  ASSERT_HAS(plan_describe(ctx, 64, 0), "built-in default");
  clattn_context_release(ctx);
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "--tune-child")) return tune_child(argc - 2, argv + 2);
  if (tu_parse_filter_args(argc, argv)) return 2;
  snprintf(root, sizeof root, "/tmp/clattn-test-tune-XXXXXX");
  if (!mkdtemp(root)) return 1;
  setenv("CLATTN_CACHE_DIR", root, 1);
  unsetenv("CLATTN_TUNE_OVERRIDE");
  unsetenv("CLATTN_KERNEL_DIR");
  /* The device tests exercise the portable flash kernel (the "flash"
   * variant) on every device: CPUs would otherwise use flash_rows. */
  setenv("CLATTN_PORTABLE", "1", 1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buckets),
      cmocka_unit_test(test_search_property),
      cmocka_unit_test(test_builtin_defaults),
      cmocka_unit_test(test_db_parse),
      cmocka_unit_test(test_db_format_no_truncation),
      cmocka_unit_test(test_db_bom_and_versions),
      cmocka_unit_test(test_tune_tiny_and_reuse),
      cmocka_unit_test(test_concurrent_tuners),
      cmocka_unit_test(test_override),
      cmocka_unit_test(test_db_in_memory),
      cmocka_unit_test(test_tune_linear),
      cmocka_unit_test(test_corrupt_db_files),
      cmocka_unit_test(test_import_absurd_timings),
      cmocka_unit_test(test_store_keeps_unreadable),
      cmocka_unit_test(test_db_fifo_and_trust),
      cmocka_unit_test(test_source_hash_change),
      cmocka_unit_test(test_measure_flag),
      cmocka_unit_test(test_export_import),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tu_rm_rf(root);
  return rc;
}
