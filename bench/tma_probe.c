/* tma_probe.c — dev tool: can OpenCL on Hopper build TMA tensor maps on the device
 * (tensormap.replace) and stream a decode-shaped K/V cache through them faster than cp.async?
 * Prints one line per finding. */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devtool.h"

#define CK(x)                                                                                      \
  do {                                                                                             \
    cl_int e_ = (x);                                                                               \
    if (e_ != CL_SUCCESS) {                                                                        \
      printf("FAIL %s:%d %s -> %d\n", __FILE__, __LINE__, #x, e_);                                 \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static cl_context ctx;
static cl_device_id dev;
static cl_command_queue q;

/* "// @@RAW text" lines become "text"; .target becomes sm_90a; .version becomes ver (if given) */
static char *patch(const char *ptx, const char *ver) {
  size_t cap = strlen(ptx) + 65536, n = 0;
  char *o = malloc(cap);
  for (const char *s = ptx; *s;) {
    const char *e = strchr(s, '\n');
    size_t L = e ? (size_t)(e - s) : strlen(s);
    if (n + L + 256 > cap) o = realloc(o, cap = cap * 2 + L);
    const char *ph = memmem(s, L, "// @@RAW ", 9);
    if (!strncmp(s, ".target", 7))
      n += (size_t)sprintf(o + n, ".target sm_90a\n");
    else if (!strncmp(s, ".version", 8) && ver)
      n += (size_t)sprintf(o + n, ".version %s\n", ver);
    else if (ph) {
      memcpy(o + n, ph + 9, L - (size_t)(ph + 9 - s));
      n += L - (size_t)(ph + 9 - s);
      o[n++] = '\n';
    } else {
      memcpy(o + n, s, L);
      n += L;
      o[n++] = '\n';
    }
    s += L + (e ? 1 : 0);
  }
  o[n] = 0;
  return o;
}

static cl_program build(const char *src, const char *opts) {
  cl_int err;
  cl_program p0 = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
  CK(err);
  err = clBuildProgram(p0, 1, &dev, opts, NULL, NULL);
  if (err) {
    static char log[65536];
    clGetProgramBuildInfo(p0, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
    printf("[build] source build failed %d (%s): %.3000s\n", err, opts, log);
    return NULL;
  }
  size_t sz;
  clGetProgramInfo(p0, CL_PROGRAM_BINARY_SIZES, sizeof sz, &sz, NULL);
  char *ptx = malloc(sz + 1);
  unsigned char *bp = (unsigned char *)ptx;
  clGetProgramInfo(p0, CL_PROGRAM_BINARIES, sizeof bp, &bp, NULL);
  ptx[sz] = 0;
  const char *v = strstr(ptx, ".version");
  printf("[build] %s: PTX %.*s\n", opts, v ? (int)(strchr(v, '\n') - v) : 0, v ? v : "");
  const char *vers[] = {NULL, "8.3", "8.5", "8.7"};
  for (int i = 0; i < 4; i++) {
    char *pt = patch(ptx, vers[i]);
    if (i == 0) {
      FILE *f = fopen(getenv("TMA_PTX") ? getenv("TMA_PTX") : "tma_probe.ptx", "w");
      if (f) fputs(pt, f), fclose(f);
    }
    size_t L = strlen(pt);
    const unsigned char *b = (const unsigned char *)pt;
    cl_int bs;
    cl_program p = clCreateProgramWithBinary(ctx, 1, &dev, &L, &b, &bs, &err);
    if (err == CL_SUCCESS) err = clBuildProgram(p, 1, &dev, "", NULL, NULL);
    if (err == CL_SUCCESS) {
      printf("[build]   patched build OK (.version %s)\n", vers[i] ? vers[i] : "as emitted");
      free(pt);
      free(ptx);
      clReleaseProgram(p0);
      return p;
    }
    static char log[16384];
    log[0] = 0;
    if (p) clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
    for (char *c = log; *c; c++)
      if (*c == '\n') *c = ' ';
    printf("[build]   patched build (.version %s) failed %d: %.1500s\n",
           vers[i] ? vers[i] : "as emitted", err, log);
    if (p) clReleaseProgram(p);
    free(pt);
  }
  free(ptx);
  return NULL;
}

/* sets kernel k's arguments 0 .. n-1 from n (size, pointer) pairs, written A(variable) */
#define A(x) sizeof(x), (const void *)&(x)
static void args(cl_kernel k, int n, ...) {
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const size_t size = va_arg(ap, size_t);
    const void *p = va_arg(ap, const void *);
    CK(clSetKernelArg(k, (cl_uint)i, size, p));
  }
  va_end(ap);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* median of reps launches (profiling events), 2 warm-ups */
static double run_ms(cl_kernel k, size_t g, size_t l, int reps) {
  double t[32];
  for (int r = -2; r < reps; r++) {
    cl_event ev;
    if (clEnqueueNDRangeKernel(q, k, 1, NULL, &g, &l, 0, NULL, &ev) != CL_SUCCESS) return -1;
    if (clWaitForEvents(1, &ev) != CL_SUCCESS) return -2;
    cl_ulong a, b;
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, 8, &a, NULL);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, 8, &b, NULL);
    clReleaseEvent(ev);
    if (r >= 0) t[r] = (double)(b - a) * 1e-6;
  }
  qsort(t, (size_t)reps, sizeof t[0], cmpd);
  return t[reps / 2];
}

static unsigned xorsum(cl_mem sink, size_t n16) {
  unsigned *h = malloc(n16 * 16), x = 0;
  CK(clEnqueueReadBuffer(q, sink, CL_TRUE, 0, n16 * 16, h, 0, NULL, NULL));
  for (size_t i = 0; i < n16 * 4; i++)
    x ^= h[i]; /* every word once: the same whatever lane read it */
  free(h);
  return x;
}

int main(int argc, char **argv) {
  const char *clpath = argc > 1 ? argv[1] : "bench/tma_probe.cl";
  char *src = slurp(clpath);
  if (!src) {
    printf("cannot read %s\n", clpath);
    return 1;
  }
  cl_platform_id plats[8];
  cl_uint np = 0;
  CK(clGetPlatformIDs(8, plats, &np));
  int found = 0;
  for (cl_uint i = 0; i < np && !found; i++) {
    char name[256];
    clGetPlatformInfo(plats[i], CL_PLATFORM_NAME, sizeof name, name, NULL);
    if (strstr(name, "NVIDIA") &&
        clGetDeviceIDs(plats[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) == CL_SUCCESS)
      found = 1;
  }
  if (!found) {
    printf("no NVIDIA device\n");
    return 1;
  }
  cl_int err;
  ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  CK(err);
  q = clCreateCommandQueue(ctx, dev, CL_QUEUE_PROFILING_ENABLE, &err);
  CK(err);
  char dname[256], drv[64];
  clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof dname, dname, NULL);
  clGetDeviceInfo(dev, CL_DRIVER_VERSION, sizeof drv, drv, NULL);
  printf("device %s, driver %s\n", dname, drv);

  /* 1. one box, both swizzles, a box that runs past the rows (zero fill) */
  cl_program p1 = build(src, "-cl-std=CL1.2 -DNS=4 -DBN=16");
  if (!p1) {
    printf("RESULT: the TMA probe does not build\n");
    return 1;
  }
  const unsigned dim = 128, heads = 8, rows = 300;
  size_t nel = (size_t)dim * heads * rows;
  unsigned short *h = malloc(nel * 2), *out = malloc(16384);
  for (size_t i = 0; i < nel; i++)
    h[i] = (unsigned short)(1 + (i * 2654435761u >> 7) % 65000);
  cl_mem dsrc = clCreateBuffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, nel * 2, h, &err);
  CK(err);
  cl_mem dmap = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 4096, NULL, &err);
  CK(err);
  cl_mem dout = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 16384, NULL, &err);
  CK(err);
  cl_kernel k1 = clCreateKernel(p1, "tma_one", &err);
  CK(err);
  int ok_sw[4] = {0};
  for (unsigned sw = 0; sw <= 3; sw += 3)
    for (unsigned shift = 0; shift <= 4; shift += 4) {
      unsigned b0 = sw ? 64 : 128, b2 = 16;
      int c0 = sw ? 64 : 0, hh = 5, r0 = (int)rows - 5;
      args(k1, 13, A(dsrc), A(dmap), A(dout), A(dim), A(heads), A(rows), A(b0), A(b2), A(c0), A(hh),
           A(r0), A(sw), A(shift));
      size_t g = 128, l = 128;
      err = clEnqueueNDRangeKernel(q, k1, 1, NULL, &g, &l, 0, NULL, NULL);
      cl_int e2 = clFinish(q);
      if (err || e2) {
        printf("[1] sw %u shift %u: launch %d finish %d\n", sw, shift, err, e2);
        return 1;
      }
      CK(clEnqueueReadBuffer(q, dout, CL_TRUE, 0, (size_t)b0 * b2 * 2, out, 0, NULL, NULL));
      int bad = 0, first = -1;
      for (unsigned r = 0; r < b2; r++)
        for (unsigned c = 0; c < b0; c++) {
          unsigned want =
              r0 + (int)r < (int)rows ? h[((size_t)(r0 + r) * heads + hh) * dim + c0 + c] : 0;
          size_t at = sw ? (r * 128 + (((c / 8) ^ (r % 8)) * 16) + (c % 8) * 2) / 2 : r * b0 + c;
          if (out[at] != want) {
            if (first < 0) first = (int)(r * b0 + c);
            bad++;
          }
        }
      printf("[1] TMA box %ux1x%u at (%d, %d, %d) of [%u][%u][%u], swizzle %s, stride>>%u: %d/%u "
             "wrong%s\n",
             b0, b2, c0, hh, r0, rows, heads, dim, sw ? "128B" : "none", shift, bad, b0 * b2,
             bad ? "" : " (5 rows in range, 11 zero-filled)");
      if (bad && first >= 0) {
        printf("    first wrong element %d; out[0..7]:", first);
        for (int i = 0; i < 8; i++)
          printf(" %04x", out[i]);
        printf("  want row0:");
        for (int i = 0; i < 8; i++)
          printf(" %04x", h[((size_t)r0 * heads + hh) * dim + c0 + i]);
        printf("\n");
      }
      if (!bad) ok_sw[sw] = 1;
      if (!bad) break; /* the plain stride works: no need for the shifted one */
    }
  if (!ok_sw[0] && !ok_sw[3]) {
    printf("RESULT: device-built tensor maps load wrong data\n");
    return 1;
  }

  /* 2. decode-shaped streams: bf16 K and V [B·N][8][128], work-group = one warp per (b, hk, split)
   */
  struct {
    int ns, bn;
  } prog[] = {{4, 16}, {3, 16}, {2, 32}};
  struct {
    unsigned B, N, splits[3];
  } pts[] = {{8, 32768, {8, 16, 32}}, {1, 131072, {64, 128, 256}}};
  size_t maxrows = 8 * 32768;
  size_t bytes1 = maxrows * heads * dim * 2;
  cl_mem dk = clCreateBuffer(ctx, CL_MEM_READ_ONLY, bytes1, NULL, &err);
  CK(err);
  cl_mem dv = clCreateBuffer(ctx, CL_MEM_READ_ONLY, bytes1, NULL, &err);
  CK(err);
  cl_uint pat1 = 0x3c013bffu, pat2 = 0xbc02bb7fu;
  CK(clEnqueueFillBuffer(q, dk, &pat1, 4, 0, bytes1, 0, NULL, NULL));
  CK(clEnqueueFillBuffer(q, dv, &pat2, 4, 0, bytes1, 0, NULL, NULL));
  /* make K's words differ so the checksums see misplaced data: a strided host pattern in the first
   * MiB */
  {
    size_t n = 1 << 20;
    unsigned *w = malloc(n);
    for (size_t i = 0; i < n / 4; i++)
      w[i] = (unsigned)(i * 2654435761u) | 0x01000100u;
    CK(clEnqueueWriteBuffer(q, dk, CL_TRUE, 0, n, w, 0, NULL, NULL));
    free(w);
  }
  size_t maxwg = 8 * 8 * 256;
  cl_mem sink = clCreateBuffer(ctx, CL_MEM_READ_WRITE, maxwg * 32 * 16, NULL, &err);
  CK(err);
  cl_mem maps = clCreateBuffer(ctx, CL_MEM_READ_WRITE, (maxwg + 1) * 256, NULL, &err);
  CK(err);
  /* the copy peer: read + write bytes of a 512 MiB device copy */
  {
    cl_mem c2 = clCreateBuffer(ctx, CL_MEM_READ_WRITE, bytes1, NULL, &err);
    CK(err);
    double t[7];
    for (int r = -2; r < 7; r++) {
      cl_event ev;
      CK(clEnqueueCopyBuffer(q, dk, c2, 0, 0, bytes1, 0, NULL, &ev));
      CK(clWaitForEvents(1, &ev));
      cl_ulong a, b;
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, 8, &a, NULL);
      clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, 8, &b, NULL);
      clReleaseEvent(ev);
      if (r >= 0) t[r] = (double)(b - a) * 1e-6;
    }
    qsort(t, 7, sizeof t[0], cmpd);
    printf("[2] copy %zu MiB: %.3f ms, %.0f GB/s (read + write)\n", bytes1 >> 20, t[3],
           2.0 * bytes1 / t[3] / 1e6);
    clReleaseMemObject(c2);
  }
  printf("[2] stream GB/s of K+V read (median of 7), work-group = 1 warp per (b, hk, split):\n");
  printf("    %-5s %-8s %-6s %-10s %8s %8s %8s %8s %8s\n", "NS/BN", "B x N", "splits", "",
         "cp.async", "tma0 own", "tma0 pre", "tma3 own", "tma3 pre");
  for (size_t pi = 0; pi < sizeof prog / sizeof prog[0]; pi++) {
    char opts[128];
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DNS=%d -DBN=%d", prog[pi].ns, prog[pi].bn);
    cl_program p = build(src, opts);
    if (!p) continue;
    cl_kernel kt = clCreateKernel(p, "stream_tma", &err);
    CK(err);
    cl_kernel kc = clCreateKernel(p, "stream_cp", &err);
    CK(err);
    cl_kernel km = clCreateKernel(p, "make_maps", &err);
    CK(err);
    for (size_t t = 0; t < sizeof pts / sizeof pts[0]; t++)
      for (int si = 0; si < 3; si++) {
        unsigned B = pts[t].B, N = pts[t].N, sp = pts[t].splits[si];
        if ((N / sp) % prog[pi].bn) continue;
        size_t wgs = (size_t)B * heads * sp;
        double bytes = 2.0 * B * N * heads * dim * 2;
        double ms[5];
        unsigned xs[5];
        args(kc, 6, A(dk), A(dv), A(sink), A(heads), A(N), A(sp));
        ms[0] = run_ms(kc, wgs * 32, 32, 7);
        xs[0] = xorsum(sink, wgs * 32);
        for (int mode = 1; mode < 5; mode++) {
          unsigned sw = mode >= 3 ? 3 : 0, pre = (mode % 2) == 0, rws = B * N;
          if (pre) {
            args(km, 6, A(dk), A(dv), A(maps), A(heads), A(rws), A(sw));
            size_t g = 32;
            CK(clEnqueueNDRangeKernel(q, km, 1, NULL, &g, &g, 0, NULL, NULL));
            CK(clFinish(q));
          }
          args(kt, 9, A(dk), A(dv), A(maps), A(sink), A(heads), A(N), A(sp), A(sw), A(pre));
          if (!ok_sw[sw]) {
            ms[mode] = -3;
            xs[mode] = 0;
            continue;
          }
          ms[mode] = run_ms(kt, wgs * 32, 32, 7);
          xs[mode] = xorsum(sink, wgs * 32);
        }
        char row[64];
        snprintf(row, sizeof row, "%ux%u", B, N);
        printf("    %d/%-3d %-8s %-6u %-10s", prog[pi].ns, prog[pi].bn, row, sp, "GB/s");
        for (int m = 0; m < 5; m++)
          printf(" %8.0f", ms[m] > 0 ? bytes / ms[m] / 1e6 : ms[m]);
        printf("\n    %-5s %-8s %-6s %-10s", "", "", "", "ms");
        for (int m = 0; m < 5; m++)
          printf(" %8.4f", ms[m]);
        printf("\n    %-5s %-8s %-6s %-10s", "", "", "", "checksum");
        for (int m = 0; m < 5; m++)
          printf(" %8x", xs[m]);
        printf("\n");
      }
    clReleaseKernel(kt);
    clReleaseKernel(kc);
    clReleaseKernel(km);
    clReleaseProgram(p);
  }
  return 0;
}
