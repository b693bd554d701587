/* train_step.c — training an attention layer with clattn: forward, backward, SGD on the Q/K/V
 * projections; the loss falls. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A causal self-attention layer on random data: x is N tokens of E features,
 * Q = x Wq, K = x Wk, V = x Wv (E × H·d each, laid out [seq][heads][dim] =
 * CLATTN_LAYOUT_BSHD), O = attention(Q, K, V). The loss is the mean squared
 * distance of O to a fixed random target. Each step runs the forward (with
 * the log-sum-exp) and the backward on the device, then on the host
 * dW = xᵀ dQ (and so on) and W -= lr · dW. The projections are small host
 * GEMMs; the attention is clattn's.
 */

enum { N = 96, E = 32, H = 2, DH = 16, HD = H * DH, STEPS = 30 };

static float frand(void) { return 2.0f * (float)rand() / (float)RAND_MAX - 1.0f; }

/* out[N][HD] = x[N][E] · w[E][HD] */
static void project(const float *x, const float *w, float *out) {
  for (int s = 0; s < N; s++)
    for (int c = 0; c < HD; c++) {
      float acc = 0.0f;
      for (int e = 0; e < E; e++)
        acc += x[s * E + e] * w[e * HD + c];
      out[s * HD + c] = acc;
    }
}

/* w -= lr · xᵀ g */
static void sgd(const float *x, const float *g, float *w, float lr) {
  for (int e = 0; e < E; e++)
    for (int c = 0; c < HD; c++) {
      float acc = 0.0f;
      for (int s = 0; s < N; s++)
        acc += x[s * E + e] * g[s * HD + c];
      w[e * HD + c] -= lr * acc;
    }
}

int main(void) {
  clattn_context ctx;
  if (clattn_context_create(NULL, &ctx) != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s\n", clattn_last_create_error());
    return 1;
  }
  printf("device: %s\n", clattn_context_device_name(ctx));
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.heads = H;
  d.seq_q = d.seq_kv = N;
  d.head_dim = DH;
  d.layout = CLATTN_LAYOUT_BSHD;
  d.mask = CLATTN_MASK_CAUSAL;
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, &d, CLATTN_PLAN_BACKWARD, &plan) != CLATTN_SUCCESS) {
    fprintf(stderr, "clattn: %s\n", clattn_context_last_error(ctx));
    clattn_context_release(ctx);
    return 1;
  }
  printf("plan: %s\n", clattn_plan_describe(plan));

  srand(11);
  static float x[N * E], target[N * HD], w[3][E * HD], act[3][N * HD], o[N * HD], dout[N * HD],
      grad[3][N * HD];
  for (int i = 0; i < N * E; i++)
    x[i] = frand();
  for (int i = 0; i < N * HD; i++)
    target[i] = 0.5f * frand();
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < E * HD; i++)
      w[t][i] = 0.3f * frand();

  /* Device buffers: q, k, v, o, lse, dout, dq, dk, dv. */
  const size_t bytes = sizeof(float) * N * HD;
  cl_mem buf[9];
  cl_int err = CL_SUCCESS;
  for (int i = 0; i < 9; i++) {
    buf[i] = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE,
                            i == 4 ? sizeof(float) * H * N : bytes, NULL, &err);
    if (!buf[i]) {
      fprintf(stderr, "clCreateBuffer failed: %d\n", err);
      return 1;
    }
  }
  cl_command_queue queue = clattn_context_queue(ctx);
  const float lr = 0.5f;
  double first = 0, last = 0;
  int status = 0;
  for (int step = 0; step < STEPS && !status; step++) {
    for (int t = 0; t < 3; t++) {
      project(x, w[t], act[t]);
      err |= clEnqueueWriteBuffer(queue, buf[t], CL_FALSE, 0, bytes, act[t], 0, NULL, NULL);
    }
    if (err != CL_SUCCESS ||
        clattn_plan_execute(plan, buf[0], buf[1], buf[2], buf[3], buf[4], 0, NULL, NULL) !=
            CLATTN_SUCCESS ||
        clEnqueueReadBuffer(queue, buf[3], CL_TRUE, 0, bytes, o, 0, NULL, NULL) != CL_SUCCESS) {
      fprintf(stderr, "forward failed: %s\n", clattn_context_last_error(ctx));
      status = 1;
      break;
    }
    /* loss = mean over tokens of ½‖o − target‖²; dO = (o − target) / N. */
    double loss = 0;
    for (int i = 0; i < N * HD; i++) {
      const double r = o[i] - target[i];
      loss += 0.5 * r * r / N;
      dout[i] = (float)(r / N);
    }
    if (step == 0) first = loss;
    last = loss;
    printf("step %2d  loss %.6f\n", step, loss);
    err = clEnqueueWriteBuffer(queue, buf[5], CL_FALSE, 0, bytes, dout, 0, NULL, NULL);
    if (err != CL_SUCCESS ||
        clattn_plan_execute_backward(plan, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6],
                                     buf[7], buf[8], 0, NULL, NULL) != CLATTN_SUCCESS) {
      fprintf(stderr, "backward failed: %s\n", clattn_context_last_error(ctx));
      status = 1;
      break;
    }
    for (int t = 0; t < 3; t++)
      err |= clEnqueueReadBuffer(queue, buf[6 + t], CL_TRUE, 0, bytes, grad[t], 0, NULL, NULL);
    if (err != CL_SUCCESS) {
      status = 1;
      break;
    }
    for (int t = 0; t < 3; t++)
      sgd(x, grad[t], w[t], lr);
  }
  if (!status) {
    const int fell = isfinite(last) && last < 0.9 * first;
    printf("loss %.6f -> %.6f: %s\n", first, last, fell ? "falling" : "NOT falling");
    status = !fell;
  }
  for (int i = 0; i < 9; i++)
    clReleaseMemObject(buf[i]);
  clattn_plan_release(plan);
  clattn_context_release(ctx);
  return status;
}
