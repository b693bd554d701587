/* context.c — device selection, capability query, contexts and error messages. */
#include "tune.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV
#define CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001
#endif

static void get_str(cl_device_id d, cl_device_info p, char *buf, size_t cap) {
  buf[0] = 0;
  if (clGetDeviceInfo(d, p, cap, buf, NULL) != CL_SUCCESS) buf[0] = 0;
  buf[cap - 1] = 0;
}

void clattn__read_device_info(cl_device_id dev, clattn__device_info *info) {
  memset(info, 0, sizeof *info);
  cl_platform_id plat = NULL;
  clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
  if (plat) {
    clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof info->platform_name, info->platform_name,
                      NULL);
    clGetPlatformInfo(plat, CL_PLATFORM_VERSION, sizeof info->platform_version,
                      info->platform_version, NULL);
    info->platform_name[sizeof info->platform_name - 1] = 0;
    info->platform_version[sizeof info->platform_version - 1] = 0;
  }
  get_str(dev, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
  get_str(dev, CL_DEVICE_NAME, info->name, sizeof info->name);
  get_str(dev, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
  get_str(dev, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
  clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof info->type, &info->type, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof info->compute_units,
                  &info->compute_units, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof info->local_mem, &info->local_mem, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof info->global_mem, &info->global_mem, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof info->max_alloc, &info->max_alloc,
                  NULL);
  clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof info->max_wg, &info->max_wg, NULL);
  cl_device_local_mem_type lt = CL_LOCAL;
  clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_TYPE, sizeof lt, &lt, NULL);
  info->local_is_global = lt == CL_GLOBAL;

  size_t ext_len = 0;
  clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len);
  char *ext = calloc(ext_len + 1, 1);
  if (ext) {
    clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL);
    info->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
    info->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    info->subgroups =
        strstr(ext, "cl_khr_subgroups") != NULL || strstr(ext, "cl_intel_subgroups") != NULL;
    if (strstr(ext, "cl_nv_device_attribute_query")) {
      cl_uint ma = 0, mi = 0;
      if (clGetDeviceInfo(dev, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, sizeof ma, &ma, NULL) ==
              CL_SUCCESS &&
          clGetDeviceInfo(dev, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV, sizeof mi, &mi, NULL) ==
              CL_SUCCESS) {
        info->nv_cc_major = (int)ma;
        info->nv_cc_minor = (int)mi;
      }
    }
    free(ext);
  }
  info->is_nvidia = clattn__strcasestr_bool(info->vendor, "nvidia") ||
                    clattn__strcasestr_bool(info->platform_name, "nvidia");
  info->is_amd = clattn__strcasestr_bool(info->vendor, "advanced micro") ||
                 clattn__strcasestr_bool(info->vendor, "amd");
  info->is_intel = clattn__strcasestr_bool(info->vendor, "intel");
  info->is_cpu = (info->type & CL_DEVICE_TYPE_CPU) != 0;
  info->is_pocl = clattn__strcasestr_bool(info->platform_name, "portable computing") ||
                  clattn__strcasestr_bool(info->platform_name, "pocl");
}

/* Enumerates all (platform, device) pairs. Returns count; arrays malloc'ed. */
static int list_devices(cl_platform_id **plats_out, cl_device_id **devs_out, int **pidx_out,
                        int **didx_out) {
  cl_uint np = 0;
  *plats_out = NULL;
  *devs_out = NULL;
  *pidx_out = *didx_out = NULL;
  if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return 0;
  cl_platform_id *plats = calloc(np, sizeof *plats);
  if (!plats) return 0;
  clGetPlatformIDs(np, plats, NULL);
  int cap = 0, n = 0;
  cl_device_id *devs = NULL;
  int *pidx = NULL, *didx = NULL;
  for (cl_uint p = 0; p < np; p++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
      continue;
    cl_device_id *tmp = calloc(nd, sizeof *tmp);
    if (!tmp) continue;
    clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, tmp, NULL);
    for (cl_uint d = 0; d < nd; d++) {
      if (n == cap) {
        int nc = cap ? cap * 2 : 8;
        cl_device_id *nd2 = realloc(devs, (size_t)nc * sizeof *devs);
        int *np2 = realloc(pidx, (size_t)nc * sizeof *pidx);
        int *nd3 = realloc(didx, (size_t)nc * sizeof *didx);
        if (nd2) devs = nd2;
        if (np2) pidx = np2;
        if (nd3) didx = nd3;
        if (!nd2 || !np2 || !nd3) break;
        cap = nc;
      }
      devs[n] = tmp[d];
      pidx[n] = (int)p;
      didx[n] = (int)d;
      n++;
    }
    free(tmp);
  }
  *plats_out = plats;
  *devs_out = devs;
  *pidx_out = pidx;
  *didx_out = didx;
  return n;
}

/* Device identity, the environment's settings and the per-variant caches
 * of a new context. */
static clattn_status fill_context_identity(clattn_context ctx, const clattn__settings *settings) {
  clattn__read_device_info(ctx->device, &ctx->info);
  snprintf(ctx->device_line, sizeof ctx->device_line, "%s / %s / driver %s",
           ctx->info.platform_name, ctx->info.name, ctx->info.driver);
  ctx->settings = *settings;
  ctx->info.nv_emulate = settings->nv_emulate && !ctx->info.is_nvidia;
  ctx->source_hash = calloc((size_t)clattn__variant_count() + 1, sizeof *ctx->source_hash);
  if (!ctx->source_hash)
    return clattn__fail(NULL, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the context");
  return CLATTN_SUCCESS;
}

/* Device enumeration and context creation are serialised across threads:
 * some ICDs (PoCL) race in their first platform enumeration, and the header
 * promises that distinct contexts are independent on every ICD. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static clattn_status context_create_locked(const char *selector, clattn_context *out);

clattn_status clattn_context_create(const char *selector, clattn_context *out) {
  if (!out) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  clattn__fail(NULL, CLATTN_SUCCESS, "%s", "");
  if (pthread_mutex_lock(&create_lock) != 0)
    return clattn__fail(NULL, CLATTN_ERROR_INTERNAL, "cannot lock the device enumeration");
  clattn_status st = context_create_locked(selector, out);
  pthread_mutex_unlock(&create_lock);
  return st;
}

static clattn_status context_create_locked(const char *selector, clattn_context *out) {
  clattn__settings settings;
  clattn__settings_read(&settings);
  if (!selector || !*selector) selector = settings.device;
  if (selector && !*selector) selector = NULL;

  cl_platform_id *plats;
  cl_device_id *devs;
  int *pidx, *didx;
  int n = list_devices(&plats, &devs, &pidx, &didx);
  if (n == 0) {
    free(plats);
    return clattn__fail(NULL, CLATTN_ERROR_NO_DEVICE,
                        "no OpenCL device found (no platform or no device; is an ICD such as "
                        "pocl-opencl-icd installed?)");
  }
  int pick = -1;
  if (!selector) {
    cl_device_type want[3] = {CL_DEVICE_TYPE_GPU, CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_ALL};
    for (int w = 0; w < 3 && pick < 0; w++)
      for (int i = 0; i < n && pick < 0; i++) {
        cl_device_type t = 0;
        clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
        if (t & want[w]) pick = i;
      }
  } else {
    int p = -1, d = -1;
    char tail = 0;
    cl_device_type type = 0;
    if (!strcmp(selector, "gpu") || !strcmp(selector, "GPU"))
      type = CL_DEVICE_TYPE_GPU;
    else if (!strcmp(selector, "cpu") || !strcmp(selector, "CPU"))
      type = CL_DEVICE_TYPE_CPU;
    else if (!strcmp(selector, "accelerator"))
      type = CL_DEVICE_TYPE_ACCELERATOR;
    if (type) {
      for (int i = 0; i < n && pick < 0; i++) {
        cl_device_type t = 0;
        clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
        if (t & type) pick = i;
      }
    } else if (sscanf(selector, "%d:%d%c", &p, &d, &tail) == 2) {
      for (int i = 0; i < n && pick < 0; i++)
        if (pidx[i] == p && didx[i] == d) pick = i;
    } else {
      for (int i = 0; i < n && pick < 0; i++) {
        clattn__device_info info;
        clattn__read_device_info(devs[i], &info);
        /* The platform vendor too: PoCL calls itself "Portable Computing
         * Language", vendor "The pocl project", so "pocl" must match there. */
        char pvendor[256] = {0};
        clGetPlatformInfo(plats[pidx[i]], CL_PLATFORM_VENDOR, sizeof pvendor - 1, pvendor, NULL);
        if (clattn__strcasestr_bool(info.name, selector) ||
            clattn__strcasestr_bool(info.platform_name, selector) ||
            clattn__strcasestr_bool(info.vendor, selector) ||
            clattn__strcasestr_bool(pvendor, selector))
          pick = i;
      }
    }
  }
  if (pick < 0) {
    free(plats);
    free(devs);
    free(pidx);
    free(didx);
    return clattn__fail(NULL, CLATTN_ERROR_NO_DEVICE,
                        "no OpenCL device matches selector '%s' (try `clattn devices`)",
                        selector ? selector : "(default)");
  }
  clattn_context ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    free(plats);
    free(devs);
    free(pidx);
    free(didx);
    return clattn__fail(NULL, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the context");
  }
  ctx->platform = plats[pidx[pick]];
  ctx->device = devs[pick];
  free(plats);
  free(devs);
  free(pidx);
  free(didx);

  cl_int err;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
  ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
  if (!ctx->context) {
    clattn_status st = clattn__cl_fail(NULL, "clCreateContext", err, "");
    free(ctx);
    return st;
  }
  ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, CL_QUEUE_PROFILING_ENABLE, &err);
  if (!ctx->queue) {
    clattn_status st = clattn__cl_fail(NULL, "clCreateCommandQueue", err, "");
    clReleaseContext(ctx->context);
    free(ctx);
    return st;
  }
  clattn_status st = fill_context_identity(ctx, &settings);
  if (st != CLATTN_SUCCESS) {
    clattn_context_release(ctx);
    return st;
  }
  *out = ctx;
  return CLATTN_SUCCESS;
}

clattn_status clattn_context_create_from_queue(cl_command_queue queue, clattn_context *out) {
  if (!out) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  if (!queue) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "queue is NULL");
  clattn__settings settings;
  clattn__settings_read(&settings);
  clattn_context ctx = calloc(1, sizeof *ctx);
  if (!ctx) return clattn__fail(NULL, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the context");
  cl_int err =
      clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof ctx->device, &ctx->device, NULL);
  if (err == CL_SUCCESS)
    err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof ctx->context, &ctx->context, NULL);
  if (err == CL_SUCCESS)
    err = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform,
                          NULL);
  if (err != CL_SUCCESS) {
    free(ctx);
    return clattn__cl_fail(NULL, "clGetCommandQueueInfo", err, "queue is not a valid queue");
  }
  clRetainCommandQueue(queue);
  clRetainContext(ctx->context);
  ctx->queue = queue;
  clattn_status st = fill_context_identity(ctx, &settings);
  if (st != CLATTN_SUCCESS) {
    clattn_context_release(ctx);
    return st;
  }
  *out = ctx;
  return CLATTN_SUCCESS;
}

cl_command_queue clattn_context_queue(clattn_context ctx) { return ctx ? ctx->queue : NULL; }
cl_device_id clattn_context_device(clattn_context ctx) { return ctx ? ctx->device : NULL; }
cl_context clattn_context_cl_context(clattn_context ctx) { return ctx ? ctx->context : NULL; }
const char *clattn_context_device_name(clattn_context ctx) { return ctx ? ctx->device_line : ""; }
const char *clattn_context_last_error(clattn_context ctx) { return ctx ? ctx->msg : ""; }
uint64_t clattn_context_last_needed_bytes(clattn_context ctx) {
  return ctx ? ctx->needed_bytes : 0;
}

clattn_status clattn_device_caps_query(cl_device_id device, clattn_device_caps *out) {
  if (!out) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "out is NULL");
  memset(out, 0, sizeof *out);
  cl_device_type t = 0;
  cl_int err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
  if (err != CL_SUCCESS) return clattn__cl_fail(NULL, "clGetDeviceInfo", err, "device");
  clattn__device_info in;
  clattn__read_device_info(device, &in);
  memcpy(out->platform_name, in.platform_name, sizeof out->platform_name);
  memcpy(out->platform_version, in.platform_version, sizeof out->platform_version);
  memcpy(out->vendor, in.vendor, sizeof out->vendor);
  memcpy(out->name, in.name, sizeof out->name);
  memcpy(out->driver, in.driver, sizeof out->driver);
  memcpy(out->device_version, in.device_version, sizeof out->device_version);
  out->type = in.type;
  out->compute_units = in.compute_units;
  out->local_mem = in.local_mem;
  out->global_mem = in.global_mem;
  out->max_alloc = in.max_alloc;
  out->max_work_group = in.max_wg;
  out->local_is_global = in.local_is_global;
  out->fp16 = in.fp16;
  out->fp64 = in.fp64;
  out->subgroups = in.subgroups;
  out->nv_cc_major = in.nv_cc_major;
  out->nv_cc_minor = in.nv_cc_minor;
  return CLATTN_SUCCESS;
}

void clattn__context_free(clattn_context ctx) {
  clattn__release_programs(ctx);
  clattn__tunedb_forget(ctx);
  free(ctx->source_hash);
  if (ctx->queue) clReleaseCommandQueue(ctx->queue);
  if (ctx->context) clReleaseContext(ctx->context);
  free(ctx);
}

void clattn_context_release(clattn_context ctx) {
  if (!ctx || ctx->released) return;
  /* Live plans keep the context: the last plan release frees it. */
  ctx->released = true;
  if (ctx->live_plans == 0) clattn__context_free(ctx);
}
