/* nv_build_log.c — dev tool: builds cl/common.cl + a kernel file with given options (plus
 * -cl-nv-verbose) on a device and prints the build log (register and spill counts on NVIDIA). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtool.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s DEVICE-SUBSTRING KERNEL.cl \"OPTIONS\" [PTX-OUT]\n", argv[0]);
    return 2;
  }
  cl_platform_id plats[8];
  cl_uint np = 0;
  clGetPlatformIDs(8, plats, &np);
  cl_device_id dev = NULL;
  for (cl_uint i = 0; i < np && !dev; i++) {
    cl_device_id devs[8];
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 8, devs, &nd) != CL_SUCCESS) continue;
    for (cl_uint j = 0; j < nd && !dev; j++) {
      char name[256] = "", pname[256] = "";
      clGetDeviceInfo(devs[j], CL_DEVICE_NAME, sizeof name, name, NULL);
      clGetPlatformInfo(plats[i], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
      if (strstr(name, argv[1]) || strstr(pname, argv[1])) dev = devs[j];
    }
  }
  if (!dev) {
    fprintf(stderr, "no device matching %s\n", argv[1]);
    return 1;
  }
  char *common = slurp("cl/common.cl"), *body = slurp(argv[2]);
  if (!common || !body) {
    fprintf(stderr, "cannot read cl/common.cl or %s\n", argv[2]);
    return 1;
  }
  cl_int err;
  cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  const char *srcs[2] = {common, body};
  cl_program prog = clCreateProgramWithSource(ctx, 2, srcs, NULL, &err);
  char opts[2048];
  snprintf(opts, sizeof opts, "%s -cl-nv-verbose", argv[3]);
  err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
  size_t n = 0;
  clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  char *log = malloc(n + 1);
  clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, n, log, NULL);
  log[n] = 0;
  printf("build %s (%d)\n%s\n", err == CL_SUCCESS ? "ok" : "FAILED", err, log);
  if (err == CL_SUCCESS && argc > 4) { /* the binary: PTX on NVIDIA */
    size_t bs = 0;
    clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bs, &bs, NULL);
    unsigned char *bin = malloc(bs);
    clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL);
    FILE *f = fopen(argv[4], "wb");
    if (f) {
      fwrite(bin, 1, bs, f);
      fclose(f);
    }
    free(bin);
  }
  free(log);
  free(common);
  free(body);
  clReleaseProgram(prog);
  clReleaseContext(ctx);
  return err == CL_SUCCESS ? 0 : 1;
}
