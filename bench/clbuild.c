/* clbuild.c — builds cl/common.cl + a kernel file with given options and prints the build log. */
/*
 * Kernel development aid (not part of the library): on NVIDIA, pass
 * -cl-nv-verbose to see each kernel's registers and spills, e.g.
 *   cc -O2 -o clbuild bench/clbuild.c -lOpenCL
 *   ./clbuild cl/linear.cl "-cl-nv-verbose -DF=64 ..."
 * Uses the first GPU (else the first device) of the first platform that has one.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s KERNEL.cl OPTIONS\n", argv[0]);
    return 2;
  }
  char common_path[4096];
  snprintf(common_path, sizeof common_path, "%s", argv[1]);
  char *slash = strrchr(common_path, '/');
  snprintf(slash ? slash + 1 : common_path,
           sizeof common_path - (size_t)(slash ? slash + 1 - common_path : 0), "common.cl");
  char *src[2] = {slurp(common_path), slurp(argv[1])};
  if (!src[0] || !src[1]) {
    fprintf(stderr, "cannot read %s or %s\n", common_path, argv[1]);
    return 1;
  }
  cl_platform_id plats[8];
  cl_uint np = 0;
  clGetPlatformIDs(8, plats, &np);
  cl_device_id dev = NULL;
  for (cl_uint i = 0; i < np && !dev; i++)
    if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS) dev = NULL;
  for (cl_uint i = 0; i < np && !dev; i++)
    if (clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS) dev = NULL;
  if (!dev) {
    fprintf(stderr, "no OpenCL device\n");
    return 1;
  }
  cl_int err;
  cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  cl_program prog = clCreateProgramWithSource(ctx, 2, (const char **)src, NULL, &err);
  err = clBuildProgram(prog, 1, &dev, argv[2], NULL, NULL);
  size_t n = 0;
  clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
  char *log = malloc(n + 1);
  clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, n, log, NULL);
  log[n] = 0;
  printf("build %s (%d)\n%s\n", err == CL_SUCCESS ? "ok" : "FAILED", (int)err, log);
  free(log);
  free(src[0]);
  free(src[1]);
  clReleaseProgram(prog);
  clReleaseContext(ctx);
  return err == CL_SUCCESS ? 0 : 1;
}
