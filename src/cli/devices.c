/* devices.c — `clattn devices`: lists every OpenCL platform and device with its capabilities. */
#include "cli.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the ICD loader found no platform */
#endif

void cli_help_devices(FILE *f) {
  fprintf(f, "usage: clattn devices [--json]\n\n"
             "Lists every OpenCL device as P:D (platform index : device index, the form\n"
             "--device and $CLATTN_DEVICE accept) with its capabilities. The device that\n"
             "clattn picks by default is marked.\n\n"
             "options:\n"
             "  --json  print a JSON array of objects\n");
}

static const char *type_name(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU) return "GPU";
  if (t & CL_DEVICE_TYPE_CPU) return "CPU";
  if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
  return "other";
}

static void print_json(const clattn__device_info *in, int p, int d, bool is_default, bool first) {
  char idx[32];
  snprintf(idx, sizeof idx, "%d:%d", p, d);
  printf("%s\n  {\"index\": \"%s\", \"platform\": ", first ? "" : ",", idx);
  cli_json_string(stdout, in->platform_name);
  printf(", \"platform_version\": ");
  cli_json_string(stdout, in->platform_version);
  printf(", \"vendor\": ");
  cli_json_string(stdout, in->vendor);
  printf(", \"name\": ");
  cli_json_string(stdout, in->name);
  printf(", \"type\": \"%s\", \"driver_version\": ", type_name(in->type));
  cli_json_string(stdout, in->driver);
  printf(", \"opencl_version\": ");
  cli_json_string(stdout, in->device_version);
  printf(", \"compute_units\": %u, \"local_mem_bytes\": %llu, \"local_mem_is_global\": %s, "
         "\"global_mem_bytes\": %llu, \"max_alloc_bytes\": %llu, \"max_work_group_size\": %zu, "
         "\"fp16\": %s, \"fp64\": %s, \"subgroups\": %s",
         (unsigned)in->compute_units, (unsigned long long)in->local_mem,
         in->local_is_global ? "true" : "false", (unsigned long long)in->global_mem,
         (unsigned long long)in->max_alloc, in->max_wg, in->fp16 ? "true" : "false",
         in->fp64 ? "true" : "false", in->subgroups ? "true" : "false");
  if (in->nv_cc_major)
    printf(", \"nv_compute_capability\": \"%d.%d\"", in->nv_cc_major, in->nv_cc_minor);
  else
    printf(", \"nv_compute_capability\": null");
  printf(", \"default\": %s}", is_default ? "true" : "false");
}

static void print_text(const clattn__device_info *in, int p, int d, bool is_default) {
  char b1[64], b2[64], b3[64];
  printf("%d:%d  %s%s\n", p, d, in->name, is_default ? "  (default)" : "");
  printf("     platform           : %s (%s)\n", in->platform_name, in->platform_version);
  printf("     vendor             : %s\n", in->vendor);
  printf("     type               : %s\n", type_name(in->type));
  printf("     driver             : %s\n", in->driver);
  printf("     OpenCL             : %s\n", in->device_version);
  printf("     compute units      : %u\n", (unsigned)in->compute_units);
  printf("     local memory       : %s%s\n", cli_fmt_bytes(in->local_mem, true, b1, sizeof b1),
         in->local_is_global ? " (emulated in global memory)" : "");
  printf("     global memory      : %s, max alloc %s\n",
         cli_fmt_bytes(in->global_mem, true, b2, sizeof b2),
         cli_fmt_bytes(in->max_alloc, true, b3, sizeof b3));
  printf("     max work-group     : %zu\n", in->max_wg);
  printf("     fp16/fp64/subgroups: %s / %s / %s\n", in->fp16 ? "yes" : "no",
         in->fp64 ? "yes" : "no", in->subgroups ? "yes" : "no");
  if (in->nv_cc_major)
    printf("     compute capability : %d.%d\n", in->nv_cc_major, in->nv_cc_minor);
}

int cli_cmd_devices(int argc, char **argv) {
  int json = 0;
  const cli_opt opts[] = {{"json", NULL, CLI_OPT_FLAG, &json, 0, 1, NULL, "JSON output"},
                          {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  cli_opt_table tables[1] = {opts};
  int rc = cli_parse_options("devices", argc, argv, tables, 1);
  if (rc < 0) {
    cli_help_devices(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;

  /* The device a context with no selector would get, to mark it. */
  cl_device_id def = NULL;
  clattn_context ctx = NULL;
  if (clattn_context_create(NULL, &ctx) == CLATTN_SUCCESS) {
    def = clattn_context_device(ctx);
    clRetainDevice(def);
    clattn_context_release(ctx);
  }

  cl_uint np = 0;
  cl_int err = clGetPlatformIDs(0, NULL, &np);
  if (err != CL_SUCCESS && err != CL_PLATFORM_NOT_FOUND_KHR) {
    fprintf(stderr, "clattn: clGetPlatformIDs failed with OpenCL error %d\n", (int)err);
    if (def) clReleaseDevice(def);
    return CLI_EXIT_LIBRARY;
  }
  cl_platform_id *plats = np ? calloc(np, sizeof *plats) : NULL;
  if (np && (!plats || (err = clGetPlatformIDs(np, plats, NULL)) != CL_SUCCESS)) {
    fprintf(stderr, "clattn: cannot list the OpenCL platforms (error %d)\n", (int)err);
    free(plats);
    if (def) clReleaseDevice(def);
    return CLI_EXIT_LIBRARY;
  }
  int count = 0;
  if (json) printf("[");
  for (cl_uint p = 0; p < np; p++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
      continue;
    cl_device_id *devs = calloc(nd, sizeof *devs);
    if (!devs || clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) != CL_SUCCESS) {
      fprintf(stderr, "clattn: cannot list the devices of platform %u\n", (unsigned)p);
      free(devs);
      continue;
    }
    for (cl_uint d = 0; d < nd; d++) {
      clattn__device_info info;
      clattn__read_device_info(devs[d], &info);
      if (json)
        print_json(&info, (int)p, (int)d, devs[d] == def, count == 0);
      else
        print_text(&info, (int)p, (int)d, devs[d] == def);
      count++;
    }
    free(devs);
  }
  if (json)
    printf("%s]\n", count ? "\n" : "");
  else if (!count)
    printf("no OpenCL device found (is an ICD such as pocl-opencl-icd installed?)\n");
  free(plats);
  if (def) clReleaseDevice(def);
  return count ? CLI_EXIT_OK : CLI_EXIT_LIBRARY;
}
