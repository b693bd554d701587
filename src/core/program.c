/* program.c — kernel sources (embedded or from CLATTN_KERNEL_DIR) and per-context program builds.
 */
#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *clattn__kernel_source(clattn_context ctx, const char *name) {
  const char *dir = ctx->settings.kernel_dir;
  if (*dir) {
    char path[4200];
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
#define MAX_SOURCES 8

/* The texts of common.cl and of each file in the blank-separated list
 * `names` (in order); the count, or -1 (message set, texts freed). */
static int load_sources(clattn_context ctx, const char *names, const char *extra, char **texts) {
  int n = 0;
  texts[n] = clattn__kernel_source(ctx, "common.cl");
  if (!texts[n]) return -1;
  n++;
  if (extra) { /* the user functions: after common.cl, before the kernel files */
    const size_t len = strlen(extra);
    texts[n] = malloc(len + 1);
    if (!texts[n]) {
      free(texts[0]);
      clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the user source copy");
      return -1;
    }
    memcpy(texts[n], extra, len + 1);
    n++;
  }
  for (const char *p = names; *p;) {
    while (*p == ' ')
      p++;
    size_t len = strcspn(p, " ");
    if (!len) break;
    char one[128];
    if (len >= sizeof one || n == MAX_SOURCES) {
      clattn__fail(ctx, CLATTN_ERROR_INTERNAL, "kernel source list '%s' is too long", names);
      texts[n] = NULL;
    } else {
      memcpy(one, p, len);
      one[len] = 0;
      texts[n] = clattn__kernel_source(ctx, one);
    }
    if (!texts[n]) {
      for (int i = 0; i < n; i++)
        free(texts[i]);
      return -1;
    }
    n++;
    p += len;
  }
  return n;
}

/* Builds common.cl + the files of `names` (blank-separated, in order) with
 * options: from the on-disk binary cache when it holds this exact program
 * (key: sources, options, device, driver), else from source (then stored in
 * the cache unless the tuner is running). */
/* CLATTN_NV_VERBOSE: the lines of the program's build log that say
 * registers, spills or wgmma, joined with " | " into note. */
static void compiler_note(clattn_context ctx, cl_program prog, char *note, size_t cap) {
  note[0] = 0;
  if (!ctx->settings.nv_verbose) return;
  size_t log_len = 0;
  clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len);
  char *log = calloc(log_len + 1, 1);
  if (!log) return;
  clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL);
  int arrives = 0; /* ptxas C7519: a warpgroup.arrive injected before a wgmma (one per line) */
  for (char *line = log; *line;) {
    char *end = strchr(line, '\n');
    if (end) *end = 0;
    if (strstr(line, "C7519")) {
      arrives++;
    } else if (strstr(line, "registers") || strstr(line, "spill") || strstr(line, "wgmma") ||
               strstr(line, "GMMA")) {
      const char *t = line;
      while (*t == ' ' || *t == '\t')
        t++;
      if (!strncmp(t, "ptxas info    : ", 16)) t += 16;
      clattn__append(note, cap, "%s%s", note[0] ? " | " : "", t);
    }
    if (!end) break;
    line = end + 1;
  }
  if (arrives)
    clattn__append(note, cap, "%s%d x warpgroup.arrive injected by ptxas (C7519)",
                   note[0] ? " | " : "", arrives);
  free(log);
}

const char *clattn__program_note(clattn_context ctx, cl_program prog) {
  for (int i = 0; i < ctx->num_programs; i++)
    if (ctx->programs[i].program == prog) return ctx->programs[i].compiler_note;
  return "";
}

/* CLATTN_ERROR_BUILD for a failed clBuildProgram of `what`, with the
 * build log; releases the program. */
static clattn_status build_failed(clattn_context ctx, cl_program prog, cl_int err, const char *what,
                                  const char *options) {
  size_t log_len = 0;
  clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len);
  char *log = calloc(log_len + 1, 1);
  if (log) clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL);
  clattn_status st = clattn__fail(ctx, CLATTN_ERROR_BUILD,
                                  "clBuildProgram failed with %s (%d) for %s with options "
                                  "'%s'; build log:\n%s",
                                  clattn__cl_error_name(err), (int)err, what, options,
                                  log ? log : "(unavailable)");
  free(log);
  clReleaseProgram(prog);
  return st;
}

/* The PTX of a program built from source (NVIDIA: CL_PROGRAM_BINARIES is
 * PTX text), patched (ptx.c) and built again from the patched text. */
static clattn_status patch_and_rebuild(clattn_context ctx, const char *name, const char *options,
                                       cl_program *prog) {
  size_t size = 0;
  cl_int err = clGetProgramInfo(*prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL);
  if (err != CL_SUCCESS || size == 0)
    return clattn__fail(ctx, CLATTN_ERROR_BUILD,
                        "PTX patch of %s: the driver gives no program binary (%s)", name,
                        clattn__cl_error_name(err));
  char *ptx = malloc(size + 1);
  if (!ptx) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the PTX copy");
  unsigned char *bp = (unsigned char *)ptx;
  err = clGetProgramInfo(*prog, CL_PROGRAM_BINARIES, sizeof bp, &bp, NULL);
  if (err != CL_SUCCESS) {
    free(ptx);
    return clattn__cl_fail(ctx, "clGetProgramInfo(CL_PROGRAM_BINARIES)", err, name);
  }
  ptx[size] = 0;
  const char *nul = memchr(ptx, 0, size);
  const size_t len = nul ? (size_t)(nul - ptx) : size;
  char why[400], *patched = NULL;
  size_t plen = 0;
  const int n = clattn__ptx_patch(ptx, len, "sm_90a", &patched, &plen, why, sizeof why);
  free(ptx);
  if (n < 0) return clattn__fail(ctx, CLATTN_ERROR_BUILD, "PTX patch of %s refused: %s", name, why);
  cl_int bst = CL_SUCCESS;
  const unsigned char *pp = (const unsigned char *)patched;
  cl_program p2 = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &plen, &pp, &bst, &err);
  if (!p2 || err != CL_SUCCESS || bst != CL_SUCCESS) {
    free(patched);
    if (p2) clReleaseProgram(p2);
    return clattn__fail(ctx, CLATTN_ERROR_BUILD,
                        "PTX patch of %s: the driver refused the patched PTX (%s, binary status "
                        "%d)",
                        name, clattn__cl_error_name(err), (int)bst);
  }
  free(patched);
  err = clBuildProgram(p2, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    char what[300];
    snprintf(what, sizeof what, "PTX patch of %s: the patched PTX (%d placeholders)", name, n);
    return build_failed(ctx, p2, err, what, options);
  }
  clReleaseProgram(*prog);
  *prog = p2;
  return CLATTN_SUCCESS;
}

static clattn_status build(clattn_context ctx, const char *name, const char *options,
                           const char *extra, bool patch, cl_program *out,
                           clattn__program_entry *entry) {
  if (patch && !(ctx->info.is_nvidia && ctx->info.nv_cc_major == 9 && ctx->info.nv_cc_minor == 0))
    return clattn__fail(ctx, CLATTN_ERROR_BUILD,
                        "PTX patch of %s: the device is not an NVIDIA sm_90 (Hopper) GPU", name);
  char *texts[MAX_SOURCES];
  const int nsrc = load_sources(ctx, name, extra, texts);
  if (nsrc < 0) return ctx->msg[0] ? CLATTN_ERROR_IO : CLATTN_ERROR_INTERNAL;
  const char *srcs[MAX_SOURCES];
  for (int i = 0; i < nsrc; i++)
    srcs[i] = texts[i];
  /* A patched program is cached as its patched PTX, under a key that also
   * names the patcher's version (the same sources give other text when the
   * patcher changes). */
  char keyopts[4200];
  snprintf(keyopts, sizeof keyopts, "%s%s", options,
           patch ? "\n@ptx-patch sm_90a v" CLATTN__STR(CLATTN__PTX_PATCH_VERSION) : "");
  clattn__program_cache_key(&ctx->info, srcs, nsrc, keyopts, entry->cache_key);
  entry->cacheable = true;
  entry->cached_size = 0;
  cl_program cached =
      clattn__binary_cache_load(ctx, entry->cache_key, options, &entry->cached_size);
  if (cached) {
    for (int i = 0; i < nsrc; i++)
      free(texts[i]);
    *out = cached;
    return CLATTN_SUCCESS;
  }
  cl_int err;
  cl_program prog = clCreateProgramWithSource(ctx->context, (cl_uint)nsrc, srcs, NULL, &err);
  for (int i = 0; i < nsrc; i++)
    free(texts[i]);
  if (!prog) return clattn__cl_fail(ctx, "clCreateProgramWithSource", err, name);
  err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    const clattn_status st = build_failed(ctx, prog, err, name, options);
    if (!extra) return st;
    /* with user functions, the caller's source is the first suspect */
    static const char head[] =
        "desc.score_mod / mask_mod: the user functions do not compile with the kernel; ";
    const size_t keep = sizeof ctx->msg - sizeof head;
    char *log = malloc(keep);
    if (log) {
      memcpy(log, ctx->msg, keep - 1);
      log[keep - 1] = 0;
    }
    clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s%s", head, log ? log : "");
    free(log);
    return CLATTN_ERROR_INVALID_ARGUMENT;
  }
  if (patch) {
    const clattn_status st = patch_and_rebuild(ctx, name, options, &prog);
    if (st != CLATTN_SUCCESS) {
      clReleaseProgram(prog);
      return st;
    }
  }
  compiler_note(ctx, prog, entry->compiler_note, sizeof entry->compiler_note);
  if (!ctx->tuning && clattn__binary_cache_eager(&ctx->info))
    clattn__binary_cache_store(ctx, prog, entry->cache_key, &entry->cached_size);
  *out = prog;
  return CLATTN_SUCCESS;
}

static clattn_status get_program(clattn_context ctx, const char *name, const char *options0,
                                 const char *extra, bool patch, cl_program *out) {
  /* the options, with CLATTN_BUILD_DEFINES (experiments) after them */
  char opts_buf[2048];
  const char *options = options0;
  if (ctx->settings.build_defines[0]) {
    const int n =
        snprintf(opts_buf, sizeof opts_buf, "%s %s", options0, ctx->settings.build_defines);
    if (n < 0 || (size_t)n >= sizeof opts_buf)
      return clattn__fail(ctx, CLATTN_ERROR_INTERNAL,
                          "build options too long with CLATTN_BUILD_DEFINES");
    options = opts_buf;
  }
  /* the key: files, options, the patch mark, the user source */
  size_t klen = strlen(name) + strlen(options) + (extra ? strlen(extra) : 0) + 8;
  char *key = malloc(klen);
  if (!key) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate program key");
  snprintf(key, klen, "%s\n%s%s%s%s", name, options, patch ? "\n@" : "", extra ? "\n#" : "",
           extra ? extra : "");
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
  clattn_status st = build(ctx, name, options, extra, patch, &prog, &fresh);
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

clattn_status clattn__get_program(clattn_context ctx, const char *name, const char *options,
                                  cl_program *out) {
  return get_program(ctx, name, options, NULL, false, out);
}

clattn_status clattn__get_program_user(clattn_context ctx, const char *name, const char *options,
                                       const char *user_src, cl_program *out) {
  return get_program(ctx, name, options, user_src, false, out);
}

clattn_status clattn__get_program_patched(clattn_context ctx, const char *name, const char *options,
                                          cl_program *out) {
  return get_program(ctx, name, options, NULL, true, out);
}

clattn_status clattn__create_kernel(clattn_context ctx, cl_program prog, const char *kname,
                                    cl_kernel *out) {
  cl_int err;
  *out = clCreateKernel(prog, kname, &err);
  if (!*out) return clattn__cl_fail(ctx, "clCreateKernel", err, kname);
  return CLATTN_SUCCESS;
}

clattn_status clattn__create_kernel_sized(clattn_context ctx, cl_program prog, const char *kname,
                                          size_t local_bytes, cl_kernel *out) {
  clattn_status st = clattn__create_kernel(ctx, prog, kname, out);
  if (st != CLATTN_SUCCESS) return st;
  cl_ulong used = 0;
  cl_int err = clGetKernelWorkGroupInfo(*out, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof used,
                                        &used, NULL);
  if (err != CL_SUCCESS) return CLATTN_SUCCESS; /* not reported: nothing to compare */
  if (used > (cl_ulong)local_bytes + CLATTN__LOCAL_RESERVE) {
    clReleaseKernel(*out);
    *out = NULL;
    return clattn__fail(ctx, CLATTN_ERROR_INTERNAL,
                        "kernel %s declares %llu bytes of local memory where its configuration "
                        "says %zu: the host's sizing and the kernel source disagree",
                        kname, (unsigned long long)used, local_bytes);
  }
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
