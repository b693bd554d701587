/* reuse_plan.c — an application-owned OpenCL queue, one plan reused over several calls, chained with events. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                                 \
  do {                                                                                           \
    cl_int e_ = (x);                                                                             \
    if (e_ != CL_SUCCESS) {                                                                      \
      fprintf(stderr, "%s failed: %d\n", #x, e_);                                                \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

int main(void) {
  /* The application's own OpenCL objects: first device of the first platform. */
  cl_platform_id plat;
  cl_device_id dev;
  cl_int err;
  CHECK(clGetPlatformIDs(1, &plat, NULL));
  CHECK(clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL));
  cl_context clctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  CHECK(err);
  cl_command_queue queue = clCreateCommandQueue(clctx, dev, 0, &err);
  CHECK(err);

  clattn_context ctx;
  if (clattn_context_create_from_queue(queue, &ctx) != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s\n", clattn_last_create_error());
    return 1;
  }
  printf("device: %s\n", clattn_context_device_name(ctx));

  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 2;
  d.heads = 4;
  d.seq_q = 1;      /* decode: one new query ... */
  d.seq_kv = 513;   /* ... against the whole cache */
  d.head_dim = 80;
  d.layout = CLATTN_LAYOUT_BSHD;
  d.mask = CLATTN_MASK_CAUSAL;
  clattn_plan plan;
  if (clattn_plan_create(ctx, &d, 0, &plan) != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s\n", clattn_context_last_error(ctx));
    return 1;
  }
  printf("plan:   %s\n", clattn_plan_describe(plan));

  size_t n[4];
  clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, n);
  float *h[4];
  cl_mem b[4];
  for (int t = 0; t < 4; t++) {
    h[t] = malloc(n[t] * sizeof(float));
    b[t] = clCreateBuffer(clctx, CL_MEM_READ_WRITE, n[t] * sizeof(float), NULL, &err);
    CHECK(err);
  }
  double *ref = malloc(n[3] * sizeof(double));
  int failures = 0;
  srand(11);
  for (int call = 0; call < 3; call++) {
    for (int t = 0; t < 3; t++)
      for (size_t i = 0; i < n[t]; i++) h[t][i] = 2.0f * rand() / RAND_MAX - 1.0f;
    cl_event up[3], done;
    for (int t = 0; t < 3; t++)
      CHECK(clEnqueueWriteBuffer(queue, b[t], CL_FALSE, 0, n[t] * sizeof(float), h[t], 0, NULL,
                                 &up[t]));
    /* The plan waits for the uploads and hands back an event for the read. */
    if (clattn_plan_execute(plan, b[0], b[1], b[2], b[3], NULL, 3, up, &done) != CLATTN_SUCCESS) {
      fprintf(stderr, "clattn: %s\n", clattn_context_last_error(ctx));
      return 1;
    }
    CHECK(clEnqueueReadBuffer(queue, b[3], CL_TRUE, 0, n[3] * sizeof(float), h[3], 1, &done,
                              NULL));
    for (int t = 0; t < 3; t++) clReleaseEvent(up[t]);
    clReleaseEvent(done);
    clattn_reference_attention(&d, h[0], h[1], h[2], ref, NULL, NULL, 0);
    double num = 0, den = 0;
    for (size_t i = 0; i < n[3]; i++) { /* reference is BHSD, output BSHD */
      size_t x = i % 80, hh = (i / 80) % 4, bb = i / 320;
      double e = h[3][i] - ref[(bb * 4 + hh) * 80 + x];
      num += e * e;
      den += ref[(bb * 4 + hh) * 80 + x] * ref[(bb * 4 + hh) * 80 + x];
    }
    double rel = sqrt(num / den);
    printf("call %d: relative error %.2e\n", call, rel);
    failures += !(rel <= 1e-5);
  }
  free(ref);
  for (int t = 0; t < 4; t++) {
    clReleaseMemObject(b[t]);
    free(h[t]);
  }
  clattn_plan_release(plan);
  clattn_context_release(ctx);
  clReleaseCommandQueue(queue);
  clReleaseContext(clctx);
  printf("%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
