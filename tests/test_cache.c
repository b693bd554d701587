/* test_cache.c — the on-disk program-binary cache: cold vs warm plans, corrupt and truncated files,
 * CLATTN_CACHE_DIR=off, unwritable directories. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "tune.h"
#include "cache.h"
#include "sha256.h"
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
#include <time.h>
#include <unistd.h>
#include <utime.h>

static char root[256];
static const char *const CFG = "bm=8,bn=8,tm=2,tn=4"; /* small: quick to compile */
static char plan_msg[4096]; /* the context's message right after the last plan creation */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void use_cache(const char *name) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  tu_rm_rf(dir);
  mkdir(dir, 0755);
  setenv("CLATTN_CACHE_DIR", dir, 1);
}

/* Path of the single cached program binary (the newest .bin), "" if none. */
static int find_binary(clattn_context ctx, char *out, size_t cap) {
  char base[700], dir[1024];
  out[0] = 0;
  if (!clattn__device_dir(ctx, base, sizeof base, false)) return 0;
  snprintf(dir, sizeof dir, "%s/programs", base);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".bin")) {
      snprintf(out, cap, "%.700s/%.250s", dir, e->d_name);
      n++;
    }
  }
  closedir(d);
  return n;
}

/* Plans (forced small configuration), runs and checks against the float64
 * reference; returns the plan-creation time in seconds. */
static double plan_run_check(clattn_context ctx, double *exec_s) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.head_dim = 16;
  d.seq_q = d.seq_kv = 40;
  d.heads = 2;
  d.algo = CLATTN_ALGO_FLASH;
  size_t el[4];
  assert_int_equal(clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, el), 0);
  float *h[4];
  for (int t = 0; t < 4; t++) {
    h[t] = malloc(el[t] * sizeof(float));
    assert_non_null(h[t]);
    for (size_t i = 0; i < el[t]; i++)
      h[t][i] = (float)sin(0.37 * (double)i + t);
  }
  cl_mem b[4];
  for (int t = 0; t < 4; t++) {
    b[t] = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                          el[t] * sizeof(float), h[t], NULL);
    assert_non_null(b[t]);
  }
  clattn_plan plan = NULL;
  double t0 = now_s();
  clattn_status st = clattn_plan_create_with_config(ctx, &d, 0, CFG, &plan);
  double plan_s = now_s() - t0;
  snprintf(plan_msg, sizeof plan_msg, "%s", clattn_context_last_error(ctx));
  if (st != CLATTN_SUCCESS)
    fail_msg("plan: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  t0 = now_s();
  assert_int_equal(clattn_plan_execute(plan, b[0], b[1], b[2], b[3], NULL, 0, NULL, NULL), 0);
  assert_int_equal(clFinish(clattn_context_queue(ctx)), CL_SUCCESS);
  if (exec_s) *exec_s = now_s() - t0;
  assert_int_equal(clEnqueueReadBuffer(clattn_context_queue(ctx), b[3], CL_TRUE, 0,
                                       el[3] * sizeof(float), h[3], 0, NULL, NULL),
                   CL_SUCCESS);
  double *ref = malloc(el[3] * sizeof(double));
  assert_non_null(ref);
  assert_int_equal(clattn_reference_attention(&d, h[0], h[1], h[2], ref, NULL, NULL, 0), 0);
  double num = 0, den = 0;
  for (size_t i = 0; i < el[3]; i++) {
    num += (h[3][i] - ref[i]) * (h[3][i] - ref[i]);
    den += ref[i] * ref[i];
  }
  double rel = sqrt(num / den);
  if (!(rel <= 1e-5)) fail_msg("relative error %.3g (%s)", rel, clattn_plan_describe(plan));
  clattn_plan_release(plan);
  for (int t = 0; t < 4; t++) {
    clReleaseMemObject(b[t]);
    free(h[t]);
  }
  free(ref);
  return plan_s;
}

/* Plans only (no launch); returns the plan-creation time in seconds. */
static double plan_only(clattn_context ctx) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.head_dim = 16;
  d.seq_q = d.seq_kv = 40;
  d.heads = 2;
  d.algo = CLATTN_ALGO_FLASH;
  clattn_plan plan = NULL;
  double t0 = now_s();
  clattn_status st = clattn_plan_create_with_config(ctx, &d, 0, CFG, &plan);
  double s = now_s() - t0;
  snprintf(plan_msg, sizeof plan_msg, "%s", clattn_context_last_error(ctx));
  if (st != CLATTN_SUCCESS)
    fail_msg("plan: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  clattn_plan_release(plan);
  return s;
}

static unsigned char *slurp(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*size);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return b;
}

static void spit(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

/* A warm plan loads the cached binary and skips compilation. */
static void test_cold_warm(void **state) {
  (void)state;
  use_cache("coldwarm");
  clattn__cache_stats s0 = clattn__binary_cache_stats();
  clattn_context ctx = tu_new_context();
  double cold_exec = 0, warm_exec = 0;
  double cold = plan_run_check(ctx, &cold_exec);
  clattn_context_release(ctx); /* PoCL: the binary is stored here */
  clattn__cache_stats s1 = clattn__binary_cache_stats();
  assert_int_equal(s1.stores - s0.stores, 1);
  assert_int_equal(s1.hits - s0.hits, 0);

  ctx = tu_new_context();
  char bin[1024];
  assert_int_equal(find_binary(ctx, bin, sizeof bin), 1);
  double warm = plan_run_check(ctx, &warm_exec);
  clattn__cache_stats s2 = clattn__binary_cache_stats();
  assert_int_equal(s2.hits - s1.hits, 1);
  printf("plan creation: cold %.3f s, warm %.4f s (x%.0f); first execute: cold %.3f s, warm "
         "%.4f s\n",
         cold, warm, cold / warm, cold_exec, warm_exec);
  assert_true(warm * 5 < cold);
  clattn_context_release(ctx);
  clattn__cache_stats s3 = clattn__binary_cache_stats();
  assert_int_equal(s3.stores, s2.stores); /* nothing new to store */
}

/* Corrupt cached binaries are detected, ignored and replaced (uses the
 * binary test_cold_warm left in its cache directory). */
static void test_corrupt_binary(void **state) {
  (void)state;
  clattn_context ctx = tu_new_context();
  char bin[1024];
  assert_int_equal(find_binary(ctx, bin, sizeof bin), 1);
  clattn_context_release(ctx);
  long size = 0;
  unsigned char *good = slurp(bin, &size);
  char dir_env[1024];
  snprintf(dir_env, sizeof dir_env, "%s", getenv("CLATTN_CACHE_DIR"));
  for (int v = 0; v < 3; v++) {
    if (v == 0) { /* one flipped payload byte: checksum mismatch */
      good[size / 2] ^= 0x5a;
      spit(bin, good, (size_t)size);
      good[size / 2] ^= 0x5a;
    } else if (v == 1) { /* truncated */
      spit(bin, good, (size_t)size / 3);
    } else { /* not a cache file at all */
      spit(bin, "garbage", 7);
    }
    ctx = tu_new_context();
    clattn__cache_stats s0 = clattn__binary_cache_stats();
    if (v == 0)
      plan_run_check(ctx, NULL); /* rebuilt from source, and correct */
    else
      plan_only(ctx);
    clattn__cache_stats s1 = clattn__binary_cache_stats();
    assert_int_equal(s1.corrupt - s0.corrupt, 1);
    assert_int_equal(s1.hits - s0.hits, 0);
    if (!strstr(plan_msg, "ignored")) fail_msg("no note about the corrupt file: '%s'", plan_msg);
    if (v == 0) {
      clattn_context_release(ctx); /* the rebuilt binary is stored again */
      clattn__cache_stats s2 = clattn__binary_cache_stats();
      assert_int_equal(s2.stores - s0.stores, 1); /* at build, or (PoCL) at release */
      ctx = tu_new_context();
      plan_only(ctx); /* and is valid */
      assert_int_equal(clattn__binary_cache_stats().hits - s2.hits, 1);
      clattn_context_release(ctx);
    } else {
      ctx->settings.cache_dir[0] = 0; /* caches off: skip storing the rebuilt one again */
      clattn_context_release(ctx);
    }
  }
  free(good);
}

/* Item 7 of #13: a cache directory or file writable by group or others is
 * ignored with a note; nothing is stored into such a directory. */
static void test_untrusted_cache(void **state) {
  (void)state;
  use_cache("untrusted");
  clattn_context ctx = tu_new_context();
  plan_only(ctx);
  clattn_context_release(ctx); /* PoCL: the binary is stored here */
  ctx = tu_new_context();
  char bin[1024], dir[1024];
  assert_int_equal(find_binary(ctx, bin, sizeof bin), 1);
  snprintf(dir, sizeof dir, "%s", bin);
  *strrchr(dir, '/') = 0;
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 077, 0); /* created 0700 */
  assert_int_equal(chmod(dir, 0777), 0);
  clattn__cache_stats s0 = clattn__binary_cache_stats();
  plan_only(ctx);
  clattn_context_release(ctx); /* PoCL would store the rebuilt binary here */
  clattn__cache_stats s1 = clattn__binary_cache_stats();
  assert_int_equal(s1.hits - s0.hits, 0);
  assert_int_equal(s1.stores - s0.stores, 0);
  assert_int_equal(s1.corrupt - s0.corrupt, 0);
  if (!strstr(plan_msg, "cache directory") || !strstr(plan_msg, "writable by group or others"))
    fail_msg("no note about the untrusted directory: '%s'", plan_msg);
  assert_int_equal(access(bin, F_OK), 0); /* left alone */
  assert_int_equal(chmod(dir, 0700), 0);

  /* A world-writable cache file: ignored, replaced by a rebuilt one. */
  assert_int_equal(chmod(bin, 0666), 0);
  ctx = tu_new_context();
  plan_only(ctx);
  clattn_context_release(ctx);
  clattn__cache_stats s2 = clattn__binary_cache_stats();
  assert_int_equal(s2.hits - s1.hits, 0);
  if (!strstr(plan_msg, "writable by group or others"))
    fail_msg("no note about the untrusted file: '%s'", plan_msg);
  ctx = tu_new_context();
  plan_only(ctx);
  assert_int_equal(clattn__binary_cache_stats().hits - s2.hits, 1);
  assert_string_equal(plan_msg, "");
  clattn_context_release(ctx);
}

/* Item 7 of #13: a FIFO named like a cached binary is not opened for a
 * blocking read: ignored with a note, and left in place. */
static void test_fifo_binary(void **state) {
  (void)state;
  use_cache("fifo");
  clattn_context ctx = tu_new_context();
  char base[700], path[1200];
  assert_true(clattn__device_dir(ctx, base, sizeof base, true));
  snprintf(path, sizeof path, "%s/programs", base);
  assert_int_equal(clattn__mkdirs(path), 0);
  uint8_t key[32];
  for (int i = 0; i < 32; i++)
    key[i] = (uint8_t)(i * 7 + 1);
  char hex[65];
  clattn__hex(key, 32, hex);
  snprintf(path, sizeof path, "%s/programs/%s.bin", base, hex);
  assert_int_equal(mkfifo(path, 0600), 0);
  alarm(60); /* a blocked open would hang: SIGALRM ends the test as a failure */
  size_t got = 0;
  ctx->msg[0] = 0;
  assert_null(clattn__binary_cache_load(ctx, key, "", &got));
  if (!strstr(ctx->msg, "not a regular file")) fail_msg("no note: '%s'", ctx->msg);
  assert_null(clattn__read_file(path, NULL));
  const char *why = NULL;
  size_t n = 0;
  assert_null(clattn__read_cache_file(path, &n, &why));
  assert_non_null(why);
  alarm(0);
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  clattn_context_release(ctx);
}

/* No device: file validation (pure), mkstemp temp files, stale temp files. */
static void test_cache_files(void **state) {
  (void)state;
  /* A self-consistent file is valid; any change to the length is not. */
  uint8_t key[32], b[88 + 16];
  memset(key, 0x42, sizeof key);
  memset(b, 0, sizeof b);
  memcpy(b, "CLATTNPB", 8);
  b[8] = CLATTN__BINARY_FORMAT;
  b[12] = 88;
  b[16] = 16;
  memcpy(b + 24, key, 32);
  memset(b + 88, 0xab, 16);
  clattn__sha256(b + 88, 16, b + 56);
  const uint8_t *payload = NULL;
  size_t len = 0;
  assert_null(clattn__binary_cache_validate(b, sizeof b, key, &payload, &len));
  assert_ptr_equal(payload, b + 88);
  assert_int_equal(len, 16);
  assert_non_null(clattn__binary_cache_validate(b, sizeof b - 8, key, &payload, &len));
  assert_null(payload);
  assert_non_null(clattn__binary_cache_validate(b, 40, key, &payload, &len));
  key[3] ^= 1;
  assert_non_null(clattn__binary_cache_validate(b, sizeof b, key, &payload, &len));

  /* Atomic writes leave no temp file; stale ones (> 1 h) are removed. */
  char dir[512], file[700], old[700], fresh[700];
  snprintf(dir, sizeof dir, "%s/files", root);
  tu_rm_rf(dir);
  assert_int_equal(clattn__mkdirs(dir), 0);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);
  snprintf(file, sizeof file, "%s/a.bin", dir);
  assert_int_equal(clattn__write_atomic(file, "hello", 5), 0);
  size_t n = 0;
  char *text = clattn__read_file(file, &n);
  assert_non_null(text);
  assert_int_equal(n, 5);
  assert_string_equal(text, "hello");
  free(text);
  snprintf(old, sizeof old, "%s/b.bin.tmp.123.0", dir);
  snprintf(fresh, sizeof fresh, "%s/c.bin.tmp.456.1", dir);
  spit(old, "x", 1);
  spit(fresh, "y", 1);
  struct utimbuf ut = {time(NULL) - 7200, time(NULL) - 7200};
  assert_int_equal(utime(old, &ut), 0);
  clattn__remove_stale_tmp(dir);
  assert_int_equal(access(old, F_OK), -1);
  assert_int_equal(access(fresh, F_OK), 0);
  assert_int_equal(access(file, F_OK), 0);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int entries = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    entries += e->d_name[0] != '.';
  closedir(d);
  assert_int_equal(entries, 2); /* a.bin and the fresh temp file */
}

/* CLATTN_CACHE_DIR=off: nothing is read or written. */
static void test_cache_off(void **state) {
  (void)state;
  setenv("CLATTN_CACHE_DIR", "off", 1);
  clattn__cache_stats s0 = clattn__binary_cache_stats();
  clattn_context ctx = tu_new_context();
  char dir[1024];
  assert_false(clattn__device_dir(ctx, dir, sizeof dir, false));
  plan_run_check(ctx, NULL);
  clattn_context_release(ctx);
  clattn__cache_stats s1 = clattn__binary_cache_stats();
  assert_int_equal(s1.stores, s0.stores);
  assert_int_equal(s1.hits, s0.hits);
}

/* An unusable cache directory disables the cache silently for the process
 * (runs last: the switch is process-wide). */
static void test_unwritable_dir(void **state) {
  (void)state;
  char file[512];
  snprintf(file, sizeof file, "%s/not-a-dir", root);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  setenv("CLATTN_CACHE_DIR", file, 1);
  clattn__cache_stats s0 = clattn__binary_cache_stats();
  clattn_context ctx = tu_new_context();
  plan_run_check(ctx, NULL);
  assert_string_equal(plan_msg, "");
  clattn_context_release(ctx);
  clattn__cache_stats s1 = clattn__binary_cache_stats();
  assert_int_equal(s1.stores, s0.stores);
  /* Disabled for the rest of the process, even with a good directory. */
  use_cache("after");
  ctx = tu_new_context();
  plan_only(ctx);
  clattn_context_release(ctx);
  clattn__cache_stats s2 = clattn__binary_cache_stats();
  assert_int_equal(s2.stores, s1.stores);
}

int main(void) {
  /* PoCL keeps its own kernel cache unless told not to; without it clattn's
   * cache is the only one (and stores PoCL binaries), as in the measurement. */
  setenv("POCL_KERNEL_CACHE", "0", 1);
  snprintf(root, sizeof root, "/tmp/clattn-test-cache-XXXXXX");
  if (!mkdtemp(root)) return 1;
  setenv("CLATTN_CACHE_DIR", root, 1);
  unsetenv("CLATTN_TUNE_OVERRIDE");
  unsetenv("CLATTN_KERNEL_DIR");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cold_warm),       cmocka_unit_test(test_corrupt_binary),
      cmocka_unit_test(test_untrusted_cache), cmocka_unit_test(test_fifo_binary),
      cmocka_unit_test(test_cache_files),     cmocka_unit_test(test_cache_off),
      cmocka_unit_test(test_unwritable_dir),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  tu_rm_rf(root);
  return rc;
}
