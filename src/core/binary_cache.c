/* binary_cache.c — cache directory resolution and the on-disk cache of compiled program binaries.
 */
#define _POSIX_C_SOURCE 200809L
#include "cache.h"
#include "sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "CLATTNPB"
#define HEADER_BYTES 88

/* Set by the first failure to create or write cache files: the process then
 * builds from source without touching the disk again. */
static atomic_int cache_off;
static atomic_long n_hits, n_misses, n_stores, n_corrupt;

clattn__cache_stats clattn__binary_cache_stats(void) {
  clattn__cache_stats s;
  s.hits = atomic_load(&n_hits);
  s.misses = atomic_load(&n_misses);
  s.stores = atomic_load(&n_stores);
  s.corrupt = atomic_load(&n_corrupt);
  return s;
}

bool clattn__cache_dir(const clattn__settings *st, char *buf, size_t cap) {
  if (!st->cache_dir[0]) return false;
  int n = snprintf(buf, cap, "%s", st->cache_dir);
  return n > 0 && (size_t)n < cap;
}

int clattn__mkdirs(const char *path) {
  char tmp[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof tmp) return -1;
  memcpy(tmp, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] == '/' || tmp[i] == 0) {
      char c = tmp[i];
      tmp[i] = 0;
      if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
      tmp[i] = c;
    }
  }
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

int clattn__write_atomic(const char *path, const void *data, size_t n) {
  char tmp[4200];
  int len = snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
  if (len < 0 || (size_t)len >= sizeof tmp) return -1;
  int fd = mkstemp(tmp); /* unpredictable name, O_EXCL, mode 0600 */
  if (fd < 0) return -1;
  int bad = fchmod(fd, 0644) != 0;
  const char *p = data;
  size_t left = n;
  while (!bad && left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      bad = 1;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
  bad |= fsync(fd) != 0;
  bad |= close(fd) != 0;
  if (bad || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

void clattn__remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  time_t now = time(NULL);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strstr(e->d_name, ".tmp.")) continue;
    char p[4400];
    int len = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (len < 0 || (size_t)len >= sizeof p || lstat(p, &st) != 0) continue;
    if (S_ISREG(st.st_mode) && st.st_uid == geteuid() && now - st.st_mtime > 3600) unlink(p);
  }
  closedir(d);
}

const char *clattn__cache_file_untrusted(const struct stat *st) {
  if (st->st_uid != geteuid()) return "not owned by the current user";
  if (st->st_mode & (S_IWGRP | S_IWOTH)) return "writable by group or others";
  return NULL;
}

static const char *dir_untrusted(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return NULL; /* absent or unusable: nothing is read from it */
  if (!S_ISDIR(st.st_mode)) return NULL; /* unusable, not untrusted: nothing opens under it */
  return clattn__cache_file_untrusted(&st);
}

const char *clattn__cache_dir_untrusted(const clattn__settings *settings, const char *dir,
                                        char *which, size_t cap) {
  char root[4096], p[4096];
  if (!clattn__cache_dir(settings, root, sizeof root)) return NULL;
  size_t rl = strlen(root), dl = strlen(dir);
  if (dl >= sizeof p) return "path too long";
  const char *why = dir_untrusted(root);
  if (why) {
    snprintf(which, cap, "%s", root);
    return why;
  }
  if (strncmp(dir, root, rl) != 0) { /* not under the root: dir alone */
    why = dir_untrusted(dir);
    if (why) snprintf(which, cap, "%s", dir);
    return why;
  }
  memcpy(p, dir, dl + 1);
  for (size_t i = rl + 1; i <= dl; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char c = p[i];
    p[i] = 0;
    why = dir_untrusted(p);
    if (why) {
      snprintf(which, cap, "%s", p);
      return why;
    }
    p[i] = c;
  }
  return NULL;
}

bool clattn__cache_dir_trusted(clattn_context ctx, const char *dir) {
  char which[4096];
  const char *why = clattn__cache_dir_untrusted(&ctx->settings, dir, which, sizeof which);
  if (!why) return true;
  clattn__append(ctx->msg, sizeof ctx->msg,
                 "%snote: cache directory %s ignored (%s; see README, \"Cache directory trust "
                 "model\")",
                 ctx->msg[0] ? "\n" : "", which, why);
  return false;
}

uint8_t *clattn__read_cache_file(const char *path, size_t *len, const char **why) {
  *why = NULL;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) *why = "cannot open";
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0)
    *why = "cannot stat";
  else if (!S_ISREG(st.st_mode))
    *why = "not a regular file";
  else if ((*why = clattn__cache_file_untrusted(&st)) != NULL)
    ;
  else if (st.st_size < 0 || (uint64_t)st.st_size > ((uint64_t)1 << 30))
    *why = "larger than 1 GiB";
  uint8_t *b = NULL;
  if (!*why) {
    size_t n = (size_t)st.st_size, got = 0;
    b = malloc(n + 1);
    if (!b) *why = "out of memory";
    while (b && got < n) {
      ssize_t r = read(fd, b + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (b && got != n) {
      free(b);
      b = NULL;
      *why = "short read";
    }
    if (b) {
      b[n] = 0;
      *len = n;
    }
  }
  close(fd);
  return b;
}

bool clattn__device_dir(clattn_context ctx, char *buf, size_t cap, bool create) {
  const clattn__device_info *info = &ctx->info;
  char root[4096];
  if (!clattn__cache_dir(&ctx->settings, root, sizeof root)) return false;
  clattn__sha256_ctx h;
  clattn__sha256_init(&h);
  char cc[32];
  snprintf(cc, sizeof cc, "%d.%d", info->nv_cc_major, info->nv_cc_minor);
  const char *parts[5] = {info->platform_name, info->vendor, info->name, info->driver, cc};
  for (int i = 0; i < 5; i++)
    clattn__sha256_update(&h, parts[i], strlen(parts[i]) + 1);
  uint8_t dig[32];
  clattn__sha256_final(&h, dig);
  char hex[65];
  clattn__hex(dig, 4, hex);
  /* Slug: the device name with anything but [A-Za-z0-9._-] as '_'. */
  char slug[49];
  size_t k = 0;
  for (const char *c = info->name; *c && k < sizeof slug - 1; c++) {
    unsigned char u = (unsigned char)*c;
    int ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
             u == '.' || u == '-' || u == '_';
    if (!ok && k > 0 && slug[k - 1] == '_') continue;
    slug[k++] = ok ? (char)u : '_';
  }
  while (k > 0 && slug[k - 1] == '_')
    k--;
  slug[k] = 0;
  int n = snprintf(buf, cap, "%s/%s-%s", root, k ? slug : "device", hex);
  if (n < 0 || (size_t)n >= cap) return false;
  if (create && clattn__mkdirs(buf) != 0) return false;
  return true;
}

void clattn__program_cache_key(const clattn__device_info *info, const char *const *srcs, int nsrc,
                               const char *options, uint8_t key[32]) {
  clattn__sha256_ctx h;
  clattn__sha256_init(&h);
  char head[64];
  snprintf(head, sizeof head, "clattn program cache format %d", CLATTN__BINARY_FORMAT);
  const char *parts[7] = {head,         info->platform_name, info->platform_version,
                          info->vendor, info->name,          info->driver,
                          options};
  for (int i = 0; i < 7; i++)
    clattn__sha256_update(&h, parts[i], strlen(parts[i]) + 1);
  for (int i = 0; i < nsrc; i++) {
    char len[32];
    snprintf(len, sizeof len, "%zu:", strlen(srcs[i]));
    clattn__sha256_update(&h, len, strlen(len));
    clattn__sha256_update(&h, srcs[i], strlen(srcs[i]));
  }
  clattn__sha256_final(&h, key);
}

static bool binary_path(clattn_context ctx, const uint8_t key[32], char *buf, size_t cap,
                        bool create) {
  char dir[4096];
  if (!clattn__device_dir(ctx, dir, sizeof dir, false)) return false;
  int n = snprintf(buf, cap, "%s/programs", dir);
  if (n < 0 || (size_t)n >= cap) return false;
  if (create && clattn__mkdirs(buf) != 0) return false;
  char hex[65];
  clattn__hex(key, 32, hex);
  n = snprintf(buf, cap, "%s/programs/%s.bin", dir, hex);
  return n > 0 && (size_t)n < cap;
}

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

const char *clattn__binary_cache_validate(const uint8_t *b, size_t n, const uint8_t key[32],
                                          const uint8_t **payload, size_t *len) {
  *payload = NULL;
  *len = 0;
  if (n < HEADER_BYTES) return "truncated header";
  if (memcmp(b, MAGIC, 8)) return "bad magic";
  if (get_u32(b + 8) != CLATTN__BINARY_FORMAT) return "unknown format version";
  if (get_u32(b + 12) != HEADER_BYTES) return "bad header size";
  uint64_t plen = get_u64(b + 16);
  if (plen == 0 || plen != n - HEADER_BYTES) return "payload length mismatch (truncated?)";
  if (memcmp(b + 24, key, 32)) return "key mismatch";
  uint8_t sum[32];
  clattn__sha256(b + HEADER_BYTES, (size_t)plen, sum);
  if (memcmp(b + 56, sum, 32)) return "checksum mismatch";
  *payload = b + HEADER_BYTES;
  *len = (size_t)plen;
  return NULL;
}

/* The file's integrity is checked (clattn__binary_cache_validate); its
 * authenticity is not: a self-consistent file is handed to the driver, so
 * the directory must be trusted (checked here: README, "Cache directory
 * trust model"). */
cl_program clattn__binary_cache_load(clattn_context ctx, const uint8_t key[32], const char *options,
                                     size_t *loaded_size) {
  if (atomic_load(&cache_off)) return NULL;
  char path[4400];
  if (!binary_path(ctx, key, path, sizeof path, false)) return NULL;
  char dir[4400];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  if (!clattn__cache_dir_trusted(ctx, dir)) {
    atomic_fetch_add(&n_misses, 1);
    return NULL;
  }
  size_t n = 0;
  const char *why = NULL;
  uint8_t *b = clattn__read_cache_file(path, &n, &why);
  if (!b && !why) {
    atomic_fetch_add(&n_misses, 1);
    return NULL;
  }
  cl_program prog = NULL;
  const uint8_t *payload = NULL;
  size_t len = 0;
  if (b) why = clattn__binary_cache_validate(b, n, key, &payload, &len);
  if (!why) {
    cl_int bst = CL_SUCCESS, err = CL_SUCCESS;
    prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &len, &payload, &bst, &err);
    if (!prog || err != CL_SUCCESS || bst != CL_SUCCESS) {
      why = "the driver refused the binary";
    } else if (clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
      why = "the binary failed to build";
    }
    if (why && prog) {
      clReleaseProgram(prog);
      prog = NULL;
    }
  }
  free(b);
  if (why) {
    atomic_fetch_add(&n_corrupt, 1);
    atomic_fetch_add(&n_misses, 1);
    /* Only a regular file we own is removed (a FIFO, a foreign file: left alone). */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) remove(path);
    clattn__append(ctx->msg, sizeof ctx->msg,
                   "%snote: program cache file %s ignored (%s); rebuilt from source",
                   ctx->msg[0] ? "\n" : "", path, why);
    return NULL;
  }
  atomic_fetch_add(&n_hits, 1);
  *loaded_size = len;
  return prog;
}

void clattn__binary_cache_store(clattn_context ctx, cl_program prog, const uint8_t key[32],
                                size_t *stored_size) {
  char root[4096];
  /* Off (CLATTN_CACHE_DIR=off) is not a failure: nothing to do, and no
   * binary is requested (on PoCL that compiles every kernel once more). */
  if (atomic_load(&cache_off) || !clattn__cache_dir(&ctx->settings, root, sizeof root)) return;
  size_t len = 0;
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) != CL_SUCCESS ||
      len == 0)
    return; /* this driver gives no binary: nothing to cache */
  uint8_t *b = malloc(HEADER_BYTES + len);
  if (!b) return;
  unsigned char *payload = b + HEADER_BYTES;
  char path[4400];
  if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof payload, &payload, NULL) != CL_SUCCESS) {
    free(b);
    return;
  }
  char dir[4400];
  if (!binary_path(ctx, key, path, sizeof path, true)) {
    atomic_store(&cache_off, 1);
    free(b);
    return;
  }
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  if (!clattn__cache_dir_trusted(ctx, dir)) { /* noted; not stored */
    free(b);
    return;
  }
  memcpy(b, MAGIC, 8);
  put_u32(b + 8, CLATTN__BINARY_FORMAT);
  put_u32(b + 12, HEADER_BYTES);
  put_u64(b + 16, (uint64_t)len);
  memcpy(b + 24, key, 32);
  clattn__sha256(payload, len, b + 56);
  if (clattn__write_atomic(path, b, HEADER_BYTES + len) != 0) {
    atomic_store(&cache_off, 1); /* silently build from source from now on */
  } else {
    clattn__remove_stale_tmp(dir);
    atomic_fetch_add(&n_stores, 1);
    if (stored_size) *stored_size = len;
  }
  free(b);
}

bool clattn__binary_cache_eager(const clattn__device_info *info) {
  /* Serialising a PoCL binary compiles every kernel once more for a
   * generic work-group size (seconds per program), and a binary taken right
   * after the build lacks the work-group functions compiled at the first
   * launch: on PoCL the binary is taken when the program is released
   * (clattn__binary_cache_refresh) instead. */
  return !info->is_pocl;
}

void clattn__binary_cache_refresh(clattn_context ctx, clattn__program_entry *e) {
  if (!e->cacheable || e->cached_size || atomic_load(&cache_off)) return;
  /* PoCL's own kernel cache (on unless POCL_KERNEL_CACHE=0) already keeps
   * compiled programs across processes. */
  if (ctx->info.is_pocl && !ctx->settings.pocl_cache_off) return;
  clattn__binary_cache_store(ctx, e->program, e->cache_key, &e->cached_size);
}
