/* program.c — kernel sources (embedded or from CLATTN_KERNEL_DIR) and per-context program builds.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "tune.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

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

char *clattn__kernel_source(clattn_context ctx, const char *name) {
  const char *dir = getenv("CLATTN_KERNEL_DIR");
  if (dir && *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = clattn__read_file(path, NULL);
    if (!s)
      clattn__fail(ctx, CLATTN_ERROR_IO, "cannot read kernel source '%s' (CLATTN_KERNEL_DIR=%s)",
                   path, dir);
    return s;
  }
  for (size_t i = 0; i < clattn__embedded_count; i++) {
    if (!strcmp(clattn__embedded_files[i].name, name)) {
      char *s = malloc(clattn__embedded_files[i].size + 1);
      if (!s) {
        clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate kernel source copy");
        return NULL;
      }
      memcpy(s, clattn__embedded_files[i].data, clattn__embedded_files[i].size);
      s[clattn__embedded_files[i].size] = 0;
      return s;
    }
  }
  clattn__fail(ctx, CLATTN_ERROR_INTERNAL, "kernel source '%s' is not embedded", name);
  return NULL;
}

/* Builds common.cl + name with options: from the on-disk binary cache when it
 * holds this exact program (key: sources, options, device, driver), else
 * from source (then stored in the cache unless the tuner is running). */
static clattn_status build(clattn_context ctx, const char *name, const char *options,
                           cl_program *out, clattn__program_entry *entry) {
  char *common = clattn__kernel_source(ctx, "common.cl");
  if (!common) return CLATTN_ERROR_IO;
  char *body = clattn__kernel_source(ctx, name);
  if (!body) {
    free(common);
    return CLATTN_ERROR_IO;
  }
  const char *srcs[2] = {common, body};
  clattn__program_cache_key(&ctx->info, srcs, 2, options, entry->cache_key);
  entry->cacheable = true;
  entry->cached_size = 0;
  cl_program cached =
      clattn__binary_cache_load(ctx, entry->cache_key, options, &entry->cached_size);
  if (cached) {
    free(common);
    free(body);
    *out = cached;
    return CLATTN_SUCCESS;
  }
  cl_int err;
  cl_program prog = clCreateProgramWithSource(ctx->context, 2, srcs, NULL, &err);
  free(common);
  free(body);
  if (!prog) return clattn__cl_fail(ctx, "clCreateProgramWithSource", err, name);
  err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    size_t log_len = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len);
    char *log = calloc(log_len + 1, 1);
    if (log) clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL);
    clattn_status st = clattn__fail(ctx, CLATTN_ERROR_BUILD,
                                    "clBuildProgram failed with %s (%d) for %s with options "
                                    "'%s'; build log:\n%s",
                                    clattn__cl_error_name(err), (int)err, name, options,
                                    log ? log : "(unavailable)");
    free(log);
    clReleaseProgram(prog);
    return st;
  }
  if (!ctx->tuning && clattn__binary_cache_eager(&ctx->info))
    clattn__binary_cache_store(ctx, prog, entry->cache_key, &entry->cached_size);
  *out = prog;
  return CLATTN_SUCCESS;
}

clattn_status clattn__get_program(clattn_context ctx, const char *name, const char *options,
                                  cl_program *out) {
  size_t klen = strlen(name) + strlen(options) + 2;
  char *key = malloc(klen);
  if (!key) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate program key");
  snprintf(key, klen, "%s\n%s", name, options);
  for (int i = 0; i < ctx->num_programs; i++) {
    if (!strcmp(ctx->programs[i].key, key)) {
      free(key);
      *out = ctx->programs[i].program;
      return CLATTN_SUCCESS;
    }
  }
  cl_program prog = NULL;
  clattn__program_entry fresh;
  memset(&fresh, 0, sizeof fresh);
  clattn_status st = build(ctx, name, options, &prog, &fresh);
  if (st != CLATTN_SUCCESS) {
    free(key);
    return st;
  }
  if (ctx->num_programs == CLATTN_MAX_PROGRAMS) {
    /* Evict the oldest program; kernels created from it keep it alive. */
    clattn__binary_cache_refresh(ctx, &ctx->programs[0]);
    free(ctx->programs[0].key);
    clReleaseProgram(ctx->programs[0].program);
    memmove(&ctx->programs[0], &ctx->programs[1],
            (CLATTN_MAX_PROGRAMS - 1) * sizeof ctx->programs[0]);
    ctx->num_programs--;
  }
  fresh.key = key;
  fresh.program = prog;
  ctx->programs[ctx->num_programs] = fresh;
  ctx->num_programs++;
  *out = prog;
  return CLATTN_SUCCESS;
}

clattn_status clattn__create_kernel(clattn_context ctx, cl_program prog, const char *kname,
                                    cl_kernel *out) {
  cl_int err;
  *out = clCreateKernel(prog, kname, &err);
  if (!*out) return clattn__cl_fail(ctx, "clCreateKernel", err, kname);
  return CLATTN_SUCCESS;
}

void clattn__prune_programs(clattn_context ctx, const cl_program *keep, int nkeep) {
  int w = 0;
  for (int i = 0; i < ctx->num_programs; i++) {
    bool kept = false;
    for (int j = 0; j < nkeep && !kept; j++)
      kept = ctx->programs[i].program == keep[j];
    if (kept) {
      ctx->programs[w++] = ctx->programs[i];
    } else {
      free(ctx->programs[i].key);
      clReleaseProgram(ctx->programs[i].program);
    }
  }
  ctx->num_programs = w;
}

void clattn__release_programs(clattn_context ctx) {
  for (int i = 0; i < ctx->num_programs; i++) {
    /* Binaries not stored at build time (PoCL, tuner) are stored now, with
     * the work-group functions compiled at the first launch. */
    clattn__binary_cache_refresh(ctx, &ctx->programs[i]);
    free(ctx->programs[i].key);
    clReleaseProgram(ctx->programs[i].program);
  }
  ctx->num_programs = 0;
}
