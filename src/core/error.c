/* error.c — failure messages: the context's detailed message, the thread's creation error, OpenCL
 * error names. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

#if defined(__STDC_NO_THREADS__) || !defined(__STDC_VERSION__)
#define CLATTN_TLS __thread
#else
#define CLATTN_TLS _Thread_local
#endif

static CLATTN_TLS char create_error[2048];

const char *clattn_last_create_error(void) { return create_error; }

static void set_message(clattn_context ctx, const char *fmt, va_list ap) {
  char *dst = ctx ? ctx->msg : create_error;
  size_t cap = ctx ? sizeof ctx->msg : sizeof create_error;
  vsnprintf(dst, cap, fmt, ap);
}

clattn_status clattn__fail(clattn_context ctx, clattn_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_message(ctx, fmt, ap);
  va_end(ap);
  if (ctx) ctx->needed_bytes = 0;
  return st;
}

clattn_status clattn__fail_needed(clattn_context ctx, uint64_t bytes, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_message(ctx, fmt, ap);
  va_end(ap);
  if (ctx) ctx->needed_bytes = bytes;
  return CLATTN_ERROR_OUT_OF_MEMORY;
}

const char *clattn__cl_error_name(cl_int err) {
  switch (err) {
#define E(x)                                                                                       \
  case x: return #x;
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
  default: return "unknown OpenCL error";
  }
}

clattn_status clattn__cl_fail(clattn_context ctx, const char *call, cl_int err, const char *what) {
  clattn_status st = CLATTN_ERROR_OPENCL;
  if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY)
    st = CLATTN_ERROR_OUT_OF_MEMORY;
  return clattn__fail(ctx, st, "%s failed with %s (%d)%s%s", call, clattn__cl_error_name(err),
                      (int)err, what && *what ? ": " : "", what ? what : "");
}
