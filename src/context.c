/* context.c — device selection, capability query, contexts and error messages. */
#include "internal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV
#define CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV 0x4000
#define CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV 0x4001
#endif

#if defined(__STDC_NO_THREADS__) || !defined(__STDC_VERSION__)
#define CLATTN_TLS __thread
#else
#define CLATTN_TLS _Thread_local
#endif

static CLATTN_TLS char create_error[2048];

const char *clattn_last_create_error(void) { return create_error; }

clattn_status clattn__fail(clattn_context ctx, clattn_status st, const char *fmt, ...) {
  char *dst = ctx ? ctx->msg : create_error;
  size_t cap = ctx ? sizeof ctx->msg : sizeof create_error;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
  return st;
}

void clattn__append(char *buf, size_t cap, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, cap - len, fmt, ap);
  va_end(ap);
}

const char *clattn__cl_error_name(cl_int err) {
  switch (err) {
#define E(x)                                                                                   \
  case x:                                                                                      \
    return #x;
    E(CL_SUCCESS)
    E(CL_DEVICE_NOT_FOUND)
    E(CL_DEVICE_NOT_AVAILABLE)
    E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    E(CL_OUT_OF_RESOURCES)
    E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE)
    E(CL_MEM_COPY_OVERLAP)
    E(CL_BUILD_PROGRAM_FAILURE)
    E(CL_MAP_FAILURE)
    E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE)
    E(CL_INVALID_PLATFORM)
    E(CL_INVALID_DEVICE)
    E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES)
    E(CL_INVALID_COMMAND_QUEUE)
    E(CL_INVALID_MEM_OBJECT)
    E(CL_INVALID_BINARY)
    E(CL_INVALID_BUILD_OPTIONS)
    E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE)
    E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL)
    E(CL_INVALID_ARG_INDEX)
    E(CL_INVALID_ARG_VALUE)
    E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS)
    E(CL_INVALID_WORK_DIMENSION)
    E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE)
    E(CL_INVALID_GLOBAL_OFFSET)
    E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT)
    E(CL_INVALID_OPERATION)
    E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_GLOBAL_WORK_SIZE)
#undef E
  default:
    return "unknown OpenCL error";
  }
}

clattn_status clattn__cl_fail(clattn_context ctx, const char *call, cl_int err, const char *what) {
  clattn_status st = CLATTN_ERROR_OPENCL;
  if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY)
    st = CLATTN_ERROR_OUT_OF_MEMORY;
  return clattn__fail(ctx, st, "%s failed with %s (%d)%s%s", call, clattn__cl_error_name(err),
                      (int)err, what && *what ? ": " : "", what ? what : "");
}

int clattn__strcasestr_bool(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0) return 1;
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n) return 1;
  }
  return 0;
}

char *clattn__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

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
  clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof info->global_mem, &info->global_mem,
                  NULL);
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

static void fill_context_identity(clattn_context ctx) {
  clattn__read_device_info(ctx->device, &ctx->info);
  snprintf(ctx->device_line, sizeof ctx->device_line, "%s / %s / driver %s",
           ctx->info.platform_name, ctx->info.name, ctx->info.driver);
}

/* Device enumeration and context creation are serialised across threads:
 * some ICDs (PoCL) race in their first platform enumeration, and the header
 * promises that distinct contexts are independent on every ICD. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static clattn_status context_create_locked(const char *selector, clattn_context *out);

clattn_status clattn_context_create(const char *selector, clattn_context *out) {
  if (!out) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  create_error[0] = 0;
  if (pthread_mutex_lock(&create_lock) != 0)
    return clattn__fail(NULL, CLATTN_ERROR_INTERNAL, "cannot lock the device enumeration");
  clattn_status st = context_create_locked(selector, out);
  pthread_mutex_unlock(&create_lock);
  return st;
}

static clattn_status context_create_locked(const char *selector, clattn_context *out) {
  if (!selector || !*selector) selector = getenv("CLATTN_DEVICE");
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
    if (!strcmp(selector, "gpu") || !strcmp(selector, "GPU")) type = CL_DEVICE_TYPE_GPU;
    else if (!strcmp(selector, "cpu") || !strcmp(selector, "CPU")) type = CL_DEVICE_TYPE_CPU;
    else if (!strcmp(selector, "accelerator")) type = CL_DEVICE_TYPE_ACCELERATOR;
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
  fill_context_identity(ctx);
  *out = ctx;
  return CLATTN_SUCCESS;
}

clattn_status clattn_context_create_from_queue(cl_command_queue queue, clattn_context *out) {
  if (!out) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  if (!queue) return clattn__fail(NULL, CLATTN_ERROR_INVALID_ARGUMENT, "queue is NULL");
  clattn_context ctx = calloc(1, sizeof *ctx);
  if (!ctx) return clattn__fail(NULL, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate the context");
  cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof ctx->device, &ctx->device,
                                     NULL);
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
  fill_context_identity(ctx);
  *out = ctx;
  return CLATTN_SUCCESS;
}

cl_command_queue clattn_context_queue(clattn_context ctx) { return ctx ? ctx->queue : NULL; }
cl_device_id clattn_context_device(clattn_context ctx) { return ctx ? ctx->device : NULL; }
cl_context clattn_context_cl_context(clattn_context ctx) { return ctx ? ctx->context : NULL; }
const char *clattn_context_device_name(clattn_context ctx) {
  return ctx ? ctx->device_line : "";
}
const char *clattn_context_last_error(clattn_context ctx) { return ctx ? ctx->msg : ""; }

void clattn__context_free(clattn_context ctx) {
  clattn__release_programs(ctx);
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
