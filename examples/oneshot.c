/* oneshot.c — the smallest complete clattn program: one causal attention, checked against the float64 reference. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  clattn_context ctx;
  if (clattn_context_create(NULL, &ctx) != CLATTN_SUCCESS) { /* $CLATTN_DEVICE, GPU, else CPU */
    fprintf(stderr, "clattn: %s\n", clattn_last_create_error());
    return 1;
  }
  printf("device: %s\n", clattn_context_device_name(ctx));

  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 1;
  d.heads = 4;
  d.kv_heads = 2; /* GQA: two query heads per key/value head */
  d.seq_q = d.seq_kv = 300;
  d.head_dim = 64;
  d.mask = CLATTN_MASK_CAUSAL;

  size_t n[4]; /* elements of q, k, v, o */
  clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, n);
  float *host[4];
  cl_mem buf[4];
  int status = 1;
  cl_int err = CL_SUCCESS;
  srand(7);
  for (int t = 0; t < 4; t++) {
    host[t] = malloc(n[t] * sizeof(float));
    for (size_t i = 0; i < n[t]; i++) host[t][i] = t < 3 ? 2.0f * rand() / RAND_MAX - 1.0f : NAN;
    buf[t] = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                            n[t] * sizeof(float), host[t], &err);
  }
  clattn_plan plan;
  if (err != CL_SUCCESS || clattn_plan_create(ctx, &d, 0, &plan) != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s (OpenCL %d)\n", clattn_context_last_error(ctx), err);
    goto out;
  }
  printf("plan:   %s\n", clattn_plan_describe(plan));
  if (clattn_plan_execute(plan, buf[0], buf[1], buf[2], buf[3], NULL, 0, NULL, NULL) !=
      CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s\n", clattn_context_last_error(ctx));
    clattn_plan_release(plan);
    goto out;
  }
  clEnqueueReadBuffer(clattn_context_queue(ctx), buf[3], CL_TRUE, 0, n[3] * sizeof(float), host[3],
                      0, NULL, NULL);
  double *ref = malloc(n[3] * sizeof(double)), num = 0, den = 0;
  clattn_reference_attention(&d, host[0], host[1], host[2], ref, NULL, NULL, 0);
  for (size_t i = 0; i < n[3]; i++) {
    double e = isnan(host[3][i]) ? 1e30 : host[3][i] - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
  }
  double rel = sqrt(num / den);
  printf("relative error vs float64 reference: %.2e (%s)\n", rel, rel <= 1e-5 ? "ok" : "FAILED");
  status = rel <= 1e-5 ? 0 : 1;
  free(ref);
  clattn_plan_release(plan);
out:
  for (int t = 0; t < 4; t++) {
    clReleaseMemObject(buf[t]);
    free(host[t]);
  }
  clattn_context_release(ctx);
  return status;
}
