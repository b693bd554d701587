/* decode.c — a generation loop on a paged KV cache: one plan, clattn_kv_append +
 * clattn_plan_execute_ex per step. */
#include <clattn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    clattn_status st_ = (call);                                                                    \
    if (st_ != CLATTN_SUCCESS) {                                                                   \
      fprintf(stderr, "%s: %s\n", #call, ctx ? clattn_context_last_error(ctx) : "");               \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

int main(void) {
  enum { B = 2, HQ = 8, HK = 2, D = 64, PAGE = 16, MAXLEN = 256, STEPS = 40 };
  const int maxp = MAXLEN / PAGE, npages = B * maxp;
  clattn_context ctx = NULL;
  CHECK(clattn_context_create(NULL, &ctx));
  cl_context clctx = clattn_context_cl_context(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);

  /* The plan is made once, for the maxima; lengths and pages change every step. */
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = B;
  d.heads = HQ;
  d.kv_heads = HK;
  d.head_dim = D;
  d.seq_q = 1;       /* one new token per sequence and step */
  d.seq_kv = MAXLEN; /* the longest context the plan serves */
  d.layout = CLATTN_LAYOUT_BSHD;
  d.kv_layout = CLATTN_KV_PAGED; /* pools [pages][PAGE][HK][D] */
  d.page_size = PAGE;
  d.num_pages = npages;
  d.max_pages_per_seq = maxp;
  d.mask = CLATTN_MASK_CAUSAL;
  clattn_plan plan = NULL;
  CHECK(clattn_plan_create(ctx, &d, 0, &plan));
  printf("plan: %s\n", clattn_plan_describe(plan));

  /* Sequence b owns pages b, b + B, b + 2B, ... (any order works). */
  int table[B * MAXLEN / PAGE], lens[B] = {0, 0};
  for (int b = 0; b < B; b++)
    for (int p = 0; p < maxp; p++)
      table[b * maxp + p] = p * B + b;
  const size_t pool = (size_t)npages * PAGE * HK * D * sizeof(float);
  cl_int err;
  cl_mem kpool = clCreateBuffer(clctx, CL_MEM_READ_WRITE, pool, NULL, &err);
  cl_mem vpool = clCreateBuffer(clctx, CL_MEM_READ_WRITE, pool, NULL, &err);
  cl_mem bt =
      clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof table, table, &err);
  cl_mem seqlens = clCreateBuffer(clctx, CL_MEM_READ_WRITE, sizeof lens, NULL, &err);
  cl_mem slots = clCreateBuffer(clctx, CL_MEM_READ_WRITE, B * sizeof(int), NULL, &err);
  cl_mem knew = clCreateBuffer(clctx, CL_MEM_READ_WRITE, B * HK * D * sizeof(float), NULL, &err);
  cl_mem vnew = clCreateBuffer(clctx, CL_MEM_READ_WRITE, B * HK * D * sizeof(float), NULL, &err);
  cl_mem q = clCreateBuffer(clctx, CL_MEM_READ_WRITE, B * HQ * D * sizeof(float), NULL, &err);
  cl_mem o = clCreateBuffer(clctx, CL_MEM_READ_WRITE, B * HQ * D * sizeof(float), NULL, &err);
  if (err != CL_SUCCESS) return 1;

  static float hk[B * HK * D], hv[B * HK * D], hq[B * HQ * D], ho[B * HQ * D];
  double checksum = 0;
  for (int step = 0; step < STEPS; step++) {
    /* The model produced this step's q, k, v (here: a deterministic pattern). */
    for (int i = 0; i < B * HK * D; i++) {
      hk[i] = (float)sin(0.01 * (step * 131 + i));
      hv[i] = (float)cos(0.02 * (step * 17 + i));
    }
    for (int i = 0; i < B * HQ * D; i++)
      hq[i] = (float)sin(0.03 * (step * 7 + i));
    int slot[B];
    for (int b = 0; b < B; b++) { /* the new token's slot: page, then row in it */
      slot[b] = table[b * maxp + lens[b] / PAGE] * PAGE + lens[b] % PAGE;
      lens[b]++;
    }
    clEnqueueWriteBuffer(queue, knew, CL_FALSE, 0, sizeof hk, hk, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, vnew, CL_FALSE, 0, sizeof hv, hv, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, q, CL_FALSE, 0, sizeof hq, hq, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, slots, CL_FALSE, 0, sizeof slot, slot, 0, NULL, NULL);
    clEnqueueWriteBuffer(queue, seqlens, CL_FALSE, 0, sizeof lens, lens, 0, NULL, NULL);
    /* Append the new K/V rows into their pages, then attend over the cache. */
    CHECK(clattn_kv_append(ctx, &d, knew, vnew, slots, B, kpool, vpool, 0, NULL, NULL));
    clattn_exec_args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.k = kpool;
    a.v = vpool;
    a.o = o;
    a.seqlens_kv = seqlens;
    a.block_table = bt;
    CHECK(clattn_plan_execute_ex(plan, &a, 0, NULL, NULL));
    clEnqueueReadBuffer(queue, o, CL_TRUE, 0, sizeof ho, ho, 0, NULL, NULL);
    for (int i = 0; i < B * HQ * D; i++) {
      if (isnan(ho[i])) {
        fprintf(stderr, "NaN in the output at step %d\n", step);
        return 1;
      }
      checksum += ho[i];
    }
  }
  printf("%d decode steps of %d sequences, context %d tokens: checksum %.6f\n", STEPS, B, lens[0],
         checksum);
  const cl_mem all[] = {kpool, vpool, bt, seqlens, slots, knew, vnew, q, o};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    clReleaseMemObject(all[i]);
  clattn_plan_release(plan);
  clattn_context_release(ctx);
  return 0;
}
