/* devices.c — `clattn devices`: every OpenCL device, its capabilities and (--peak) measured peak.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001 /* cl_khr_icd: the ICD loader found no platform */
#endif

typedef struct devices_opts {
  int json, peak;
  const char *device;
  cli_peak_opts peak_opts;
} devices_opts;

static cli_opt_table devices_table(devices_opts *o) {
  static cli_opt t[8];
  const cli_opt opts[] = {
      {"json", NULL, CLI_OPT_FLAG, &o->json, 0, 1, NULL, "print a JSON array of objects"},
      {"peak", NULL, CLI_OPT_FLAG, &o->peak, 0, 1, NULL,
       "also measure each device's f32 FMA rate (GFLOP/s) and copy bandwidth (GB/s) with "
       "built-in kernels (OpenCL profiling events, warm-up, median)"},
      {"device", "SEL", CLI_OPT_STR, &o->device, 0, 0, NULL,
       "list (and measure) only the device SEL selects (P:D, gpu, cpu or a name substring)"},
      {"peak-ms", "MS", CLI_OPT_DOUBLE, &o->peak_opts.fma_ms, 0, 0, NULL,
       "target duration of one FMA run (default 20)"},
      {"peak-copy-bytes", "BYTES", CLI_OPT_U64, &o->peak_opts.copy_bytes, 0, 0, NULL,
       "size of the copied buffer (default 268435456, capped at a quarter of global memory)"},
      {"peak-runs", "R", CLI_OPT_INT, &o->peak_opts.runs, 1, 0, NULL,
       "timed runs of each peak kernel, after one warm-up (default 7)"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

static void devices_defaults(devices_opts *o) {
  memset(o, 0, sizeof *o);
  cli_peak_defaults(&o->peak_opts);
}

void cli_help_devices(FILE *f) {
  devices_opts o;
  devices_defaults(&o);
  cli_opt_table tables[1] = {devices_table(&o)};
  fprintf(f, "usage: clattn devices [--json] [--peak] [--device SEL]\n\n"
             "Lists every OpenCL device as P:D (platform index : device index, the form\n"
             "--device and $CLATTN_DEVICE accept) with its capabilities. The device that\n"
             "clattn picks by default is marked. --peak measures, per device, the f32\n"
             "multiply-add rate (8 independent FMA chains per work-item on the device's\n"
             "native float vectors: 1 lane on GPUs, the SIMD width on CPUs; 8 work-groups per\n"
             "compute unit; 2 FLOP per FMA) and the copy bandwidth (a vector of >= 4 floats\n"
             "per work-item between two buffers; bytes read + written), with OpenCL\n"
             "profiling events, one warm-up run and the median of the timed runs: the\n"
             "\"100 %%\" of `clattn bench --peak` and bench/plot.py.\n\n"
             "options:\n");
  cli_print_options(f, tables, 1);
}

/* Measures the peak of device P:D; prints the text line or returns the result. */
static clattn_status measure_device(int p, int d, const cli_peak_opts *po, clattn_peak_result *r,
                                    char *err, size_t cap) {
  char sel[32];
  snprintf(sel, sizeof sel, "%d:%d", p, d);
  clattn_context ctx = NULL;
  clattn_status st = clattn_context_create(sel, &ctx);
  if (st != CLATTN_SUCCESS) {
    snprintf(err, cap, "%s: %s", clattn_status_string(st), clattn_last_create_error());
    return st;
  }
  st = cli_measure_peak(ctx, po, r, err, cap);
  clattn_context_release(ctx);
  return st;
}

static const char *type_name(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU) return "GPU";
  if (t & CL_DEVICE_TYPE_CPU) return "CPU";
  if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
  return "other";
}

static void print_json(const clattn_device_caps *in, int p, int d, bool is_default, bool first,
                       const clattn_peak_result *peak, const char *peak_error) {
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
         (unsigned long long)in->max_alloc, in->max_work_group, in->fp16 ? "true" : "false",
         in->fp64 ? "true" : "false", in->subgroups ? "true" : "false");
  if (in->nv_cc_major)
    printf(", \"nv_compute_capability\": \"%d.%d\"", in->nv_cc_major, in->nv_cc_minor);
  else
    printf(", \"nv_compute_capability\": null");
  printf(", \"default\": %s", is_default ? "true" : "false");
  if (peak) {
    printf(", \"peak\": ");
    cli_json_peak(stdout, peak);
  } else if (peak_error) {
    printf(", \"peak\": null, \"peak_error\": ");
    cli_json_string(stdout, peak_error);
  }
  printf("}");
}

static void print_text(const clattn_device_caps *in, int p, int d, bool is_default,
                       const clattn_peak_result *peak, const char *peak_error) {
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
  printf("     max work-group     : %zu\n", in->max_work_group);
  printf("     fp16/fp64/subgroups: %s / %s / %s\n", in->fp16 ? "yes" : "no",
         in->fp64 ? "yes" : "no", in->subgroups ? "yes" : "no");
  if (in->nv_cc_major)
    printf("     compute capability : %d.%d\n", in->nv_cc_major, in->nv_cc_minor);
  if (peak) {
    char b[64];
    printf("     peak f32 FMA       : %.1f GFLOP/s (median of %d runs of %.2f ms, spread %.1f%%)\n",
           peak->fma_gflops, peak->runs, peak->fma_ms,
           100.0 * (peak->fma_max_ms - peak->fma_min_ms) / peak->fma_ms);
    printf("     peak copy          : %.1f GB/s (%s copied, median of %d runs of %.3f ms, "
           "spread %.1f%%)\n",
           peak->copy_gbps, cli_fmt_bytes(peak->copy_bytes, false, b, sizeof b), peak->runs,
           peak->copy_ms, 100.0 * (peak->copy_max_ms - peak->copy_min_ms) / peak->copy_ms);
  } else if (peak_error) {
    printf("     peak               : not measured: %s\n", peak_error);
  }
}

int cli_cmd_devices(int argc, char **argv) {
  devices_opts o;
  devices_defaults(&o);
  cli_opt_table tables[1] = {devices_table(&o)};
  int rc = cli_parse_options("devices", argc, argv, tables, 1);
  if (rc < 0) {
    cli_help_devices(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  if ((rc = cli_check_peak_opts(&o.peak_opts))) return rc;
  const bool json = o.json != 0;

  /* --device: the one device its selector picks. */
  cl_device_id only = NULL;
  if (o.device) {
    clattn_context sc = cli_open_context(o.device);
    if (!sc) return CLI_EXIT_LIBRARY;
    only = clattn_context_device(sc);
    clRetainDevice(only);
    clattn_context_release(sc);
  }

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
    if (only) clReleaseDevice(only);
    return CLI_EXIT_LIBRARY;
  }
  cl_platform_id *plats = np ? calloc(np, sizeof *plats) : NULL;
  if (np && (!plats || (err = clGetPlatformIDs(np, plats, NULL)) != CL_SUCCESS)) {
    fprintf(stderr, "clattn: cannot list the OpenCL platforms (error %d)\n", (int)err);
    free(plats);
    if (def) clReleaseDevice(def);
    if (only) clReleaseDevice(only);
    return CLI_EXIT_LIBRARY;
  }
  int count = 0;
  bool peak_failed = false;
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
      if (only && devs[d] != only) continue;
      clattn_device_caps info;
      if (clattn_device_caps_query(devs[d], &info) != CLATTN_SUCCESS) continue;
      clattn_peak_result peak;
      char perr[1024] = "";
      bool have_peak = false;
      if (o.peak) {
        if (!json)
          fprintf(stderr, "measuring the peak of %d:%d %s ...\n", (int)p, (int)d, info.name);
        have_peak = measure_device((int)p, (int)d, &o.peak_opts, &peak, perr, sizeof perr) ==
                    CLATTN_SUCCESS;
        if (!have_peak) peak_failed = true;
      }
      if (json)
        print_json(&info, (int)p, (int)d, devs[d] == def, count == 0, have_peak ? &peak : NULL,
                   o.peak && !have_peak ? perr : NULL);
      else
        print_text(&info, (int)p, (int)d, devs[d] == def, have_peak ? &peak : NULL,
                   o.peak && !have_peak ? perr : NULL);
      fflush(stdout);
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
  if (only) clReleaseDevice(only);
  return count && !peak_failed ? CLI_EXIT_OK : CLI_EXIT_LIBRARY;
}
