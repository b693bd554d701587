/* plan.c — plan objects: validation and resolution of the problem, building with a chosen variant,
 * execution checks, release. */
#include "variant.h"
#include "checked.h"
#include "linear.h"
#include "sparse.h"

#include <stdlib.h>
#include <string.h>

/* Sum over t = 1..x of clamp(t, 0, nk) (0 for x <= 0). */
static uint64_t clamped_sum(int64_t x, uint64_t nk) {
  if (x <= 0) return 0;
  const uint64_t ux = (uint64_t)x;
  if (ux <= nk) return ux * (ux + 1) / 2;
  return nk * (nk + 1) / 2 + (ux - nk) * nk;
}

/* (b, h, i, j) tuples visible without a mask or under a causal mask. Causal:
 * query i sees clamp(i + off + 1, 0, Nk) keys (off = Nk - Nq bottom-right, 0
 * top-left); summed in closed form, so that sizing a long sequence
 * (clattn_plan_estimate) costs no loop over it. */
static uint64_t dense_pairs(const clattn_attention_desc *d) {
  uint64_t per = (uint64_t)d->seq_q * (uint64_t)d->seq_kv;
  if (clattn__mask_is_causal(d->mask)) {
    const int64_t off = clattn__causal_offset(d);
    per = clamped_sum(off + d->seq_q, (uint64_t)d->seq_kv) - clamped_sum(off, (uint64_t)d->seq_kv);
  }
  return per;
}

static void set_pairs(clattn_plan p, uint64_t per_head) {
  const clattn__u128 n = (clattn__u128)per_head * (uint64_t)p->desc.batch * (uint64_t)p->desc.heads;
  p->visible_pairs = n > UINT64_MAX ? UINT64_MAX : (uint64_t)n;
  p->visible_pairs_exact = (double)n;
}

/* Frees a plan that failed before or during its variant's create. */
static void discard(clattn_plan p) {
  if (p->bwd_variant && p->bwd_variant->release) p->bwd_variant->release(p);
  if (p->variant && p->variant->release) p->variant->release(p);
  clattn__sparse_release(p);
  free(p->fn_copy[0]);
  free(p->fn_copy[1]);
  free(p->sinks_copy);
  free(p);
}

/* The plan keeps its own copies of the user functions' text. */
static clattn_status copy_user_functions(clattn_plan p) {
  const char **src[2] = {&p->desc.score_mod, &p->desc.mask_mod};
  for (int i = 0; i < 2; i++) {
    if (!*src[i]) continue;
    const size_t n = strlen(*src[i]) + 1;
    p->fn_copy[i] = malloc(n);
    if (!p->fn_copy[i])
      return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy the user functions");
    memcpy(p->fn_copy[i], *src[i], n);
    *src[i] = p->fn_copy[i];
  }
  if (p->desc.sinks) {
    p->sinks_copy = malloc((size_t)p->desc.heads * sizeof(float));
    if (!p->sinks_copy)
      return clattn__fail(p->ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot copy the sinks");
    memcpy(p->sinks_copy, p->desc.sinks, (size_t)p->desc.heads * sizeof(float));
    p->desc.sinks = p->sinks_copy;
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__plan_new(clattn_context ctx, const clattn_attention_desc *desc,
                               unsigned flags, bool estimate, clattn_plan *out) {
  *out = NULL;
  clattn_plan p = calloc(1, sizeof *p);
  if (!p) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate plan");
  p->ctx = ctx;
  p->flags = flags;
  p->estimate = estimate;
  clattn_status st =
      clattn__desc_resolve(ctx, desc, &p->desc, &p->qs, &p->ks, &p->vs, &p->os, p->elems);
  if (st == CLATTN_SUCCESS) st = copy_user_functions(p);
  if (st != CLATTN_SUCCESS) {
    discard(p);
    return st;
  }
  if (clattn__mask_is_sparse(p->desc.mask)) {
    if (p->desc.algo == CLATTN_ALGO_LINEAR) {
      free(p);
      return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                          "desc.mask %d is a sparse softmax mask: the flash and naive families "
                          "serve it, not desc.algo LINEAR",
                          (int)desc->mask);
    }
    /* Copies the caller's arrays, builds the block lists, counts the pairs. */
    uint64_t pairs = 0;
    st = clattn__sparse_plan_init(p, &pairs);
    if (st != CLATTN_SUCCESS) {
      discard(p);
      return st;
    }
    set_pairs(p, pairs);
  } else {
    set_pairs(p, dense_pairs(&p->desc));
  }
  if (p->desc.algo == CLATTN_ALGO_AUTO) p->desc.algo = CLATTN_ALGO_FLASH;
  if (p->desc.algo == CLATTN_ALGO_LINEAR) { /* the feature map and count */
    int features = 0;
    st = clattn__linear_resolve(ctx, &p->desc, &features);
    if (st != CLATTN_SUCCESS) {
      discard(p);
      return st;
    }
    p->desc.num_features = features;
  }
  *out = p;
  return CLATTN_SUCCESS;
}

clattn_status clattn__plan_build(clattn_plan p, const clattn__variant *v, const int *params,
                                 const char *origin, size_t *estimate_bytes, clattn_plan *out) {
  *out = NULL;
  p->variant = v;
  const clattn_status st = v->create(p, params, origin);
  if (estimate_bytes) *estimate_bytes = clattn_plan_workspace_size(p);
  if (st != CLATTN_SUCCESS) {
    discard(p);
    return st;
  }
  p->ctx->live_plans++;
  *out = p;
  return CLATTN_SUCCESS;
}

void clattn__plan_discard(clattn_plan p) {
  if (p) discard(p);
}

/* Whether two buffers share memory: the same object, or sub-buffers (or a
 * sub-buffer and its parent) whose byte ranges in one parent overlap. */
static bool mem_overlap(cl_mem a, cl_mem b) {
  if (a == b) return true;
  cl_mem root[2] = {a, b};
  size_t off[2] = {0, 0}, size[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    cl_mem m = root[i], parent = NULL;
    if (clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size[i], &size[i], NULL) != CL_SUCCESS)
      return false;
    if (clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL) ==
            CL_SUCCESS &&
        parent) {
      if (clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof off[i], &off[i], NULL) != CL_SUCCESS)
        return false;
      root[i] = parent;
    }
  }
  return root[0] == root[1] && off[0] < off[1] + size[1] && off[1] < off[0] + size[0];
}

/* Reads an int32 table back (blocking) into a malloc'ed array. */
static clattn_status read_table(clattn_context ctx, cl_mem m, size_t n, const char *name,
                                int32_t **out) {
  *out = NULL;
  size_t bytes;
  if (!clattn__mul_size(n, sizeof(int32_t), &bytes))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s: size overflows", name);
  int32_t *h = malloc(bytes ? bytes : 1);
  if (!h) return clattn__fail_needed(ctx, bytes, "cannot allocate a host copy of %s", name);
  cl_int err = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, 0, bytes, h, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    free(h);
    return clattn__cl_fail(ctx, "clEnqueueReadBuffer", err, name);
  }
  *out = h;
  return CLATTN_SUCCESS;
}

/* CLATTN_PLAN_CHECK_TABLES: the first bad entry of the execution's tables. */
static clattn_status check_tables(clattn_plan p, const clattn__buffers *b) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const int B = d->batch;
  int32_t *cq = NULL, *ck = NULL, *sk = NULL, *bt = NULL;
  clattn_status st = CLATTN_SUCCESS;
#define BADT(...)                                                                                  \
  do {                                                                                             \
    st = clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__);                            \
    goto done;                                                                                     \
  } while (0)
  if (b->cu_seqlens_q) {
    if ((st = read_table(ctx, b->cu_seqlens_q, (size_t)B + 1, "cu_seqlens_q", &cq))) goto done;
    if (cq[0] != 0) BADT("cu_seqlens_q[0] is %d, must be 0", cq[0]);
    for (int i = 0; i < B; i++) {
      const int64_t n = (int64_t)cq[i + 1] - cq[i];
      if (n < 0 || n > d->seq_q || cq[i + 1] > d->total_q)
        BADT("cu_seqlens_q[%d] = %d: sequence %d would have %lld query rows (0..seq_q = %d, "
             "ending within total_q = %d)",
             i + 1, cq[i + 1], i, (long long)n, d->seq_q, d->total_q);
    }
  }
  if (b->cu_seqlens_kv) {
    if ((st = read_table(ctx, b->cu_seqlens_kv, (size_t)B + 1, "cu_seqlens_kv", &ck))) goto done;
    if (ck[0] != 0) BADT("cu_seqlens_kv[0] is %d, must be 0", ck[0]);
    for (int i = 0; i < B; i++) {
      const int64_t n = (int64_t)ck[i + 1] - ck[i];
      if (n < 0 || n > d->seq_kv || ck[i + 1] > d->total_kv)
        BADT("cu_seqlens_kv[%d] = %d: sequence %d would have %lld keys (0..seq_kv = %d, ending "
             "within total_kv = %d)",
             i + 1, ck[i + 1], i, (long long)n, d->seq_kv, d->total_kv);
    }
  }
  if (b->seqlens_kv) {
    if ((st = read_table(ctx, b->seqlens_kv, (size_t)B, "seqlens_kv", &sk))) goto done;
    for (int i = 0; i < B; i++)
      if (sk[i] < 0 || sk[i] > d->seq_kv)
        BADT("seqlens_kv[%d] = %d is outside 0..seq_kv = %d", i, sk[i], d->seq_kv);
  }
  if (b->block_table && sk) {
    const size_t mp = (size_t)d->max_pages_per_seq;
    if ((st = read_table(ctx, b->block_table, (size_t)B * mp, "block_table", &bt))) goto done;
    for (int i = 0; i < B; i++) {
      const int used = (sk[i] + d->page_size - 1) / d->page_size;
      for (int j = 0; j < used; j++) {
        const int32_t pg = bt[(size_t)i * mp + (size_t)j];
        if (pg < 0 || pg >= d->num_pages)
          BADT("block_table[%d][%d] = %d is outside 0..num_pages-1 = %d (sequence %d uses %d "
               "pages)",
               i, j, pg, d->num_pages - 1, i, used);
      }
    }
  }
#undef BADT
done:
  free(cq);
  free(ck);
  free(sk);
  free(bt);
  return st;
}

/* The kernels' view of an execution's buffers (the backward's are added by
 * its caller). */
static clattn__buffers buffers_of(const clattn_exec_args *a) {
  const clattn__buffers b = {.q = a->q,
                             .k = a->k,
                             .v = a->v,
                             .o = a->o,
                             .lse = a->lse,
                             .cu_seqlens_q = a->cu_seqlens_q,
                             .cu_seqlens_kv = a->cu_seqlens_kv,
                             .seqlens_kv = a->seqlens_kv,
                             .block_table = a->block_table,
                             .user = a->user,
                             .bias = a->bias,
                             .k_scale = a->k_scale,
                             .v_scale = a->v_scale};
  return b;
}

/* The user functions' buffer and the bias tensor of an execution (forward
 * or backward): present exactly when the descriptor uses them, large
 * enough, and aliasing none of the n outputs. */
static clattn_status check_user_bias(clattn_context ctx, const clattn_attention_desc *d,
                                     const clattn_exec_args *a, const cl_mem *outs,
                                     const char *const *out_names, int n) {
  clattn_status st;
  if (a->user && !d->score_mod && !d->mask_mod)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "user is given but the descriptor has no user function (score_mod / "
                        "mask_mod)");
  if (a->user && (st = clattn__check_buffer(ctx, a->user, 1, "user")) != CLATTN_SUCCESS) return st;
  if ((d->bias_type != CLATTN_BIAS_NONE) != (a->bias != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        a->bias ? "bias is given but desc.bias_type is CLATTN_BIAS_NONE"
                                : "bias is NULL but the descriptor has a bias tensor "
                                  "(desc.bias_type; clattn_exec_args.bias)");
  if (a->bias &&
      (st = clattn__check_buffer(ctx, a->bias, clattn__bias_bytes(d), "bias")) != CLATTN_SUCCESS)
    return st;
  for (int i = 0; i < n; i++)
    if (outs[i] && ((a->user && mem_overlap(outs[i], a->user)) ||
                    (a->bias && mem_overlap(outs[i], a->bias))))
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s must not alias user or bias",
                          out_names[i]);
  return CLATTN_SUCCESS;
}

/* Every check of one forward execution's buffers (sizes, owners, aliasing,
 * the tables the descriptor needs; CLATTN_PLAN_CHECK_TABLES: their
 * contents); *out: the buffers the variant takes. */
static clattn_status check_args(clattn_plan p, const clattn_exec_args *a, cl_uint num_wait,
                                const cl_event *wait, clattn__buffers *out) {
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  const clattn_attention_desc *d = &p->desc;
  const size_t es = clattn__dtype_size(d->dtype);
  /* Sizes in bytes (desc_resolve bounded the element counts; checked anyway). */
  size_t bytes[5];
  for (int i = 0; i < 4; i++)
    if (!clattn__mul_size(p->elems[i], i == 1 || i == 2 ? clattn__kv_elem_size(d) : es, &bytes[i]))
      bytes[i] = SIZE_MAX;
  const size_t lse_rows = d->ragged ? (size_t)d->total_q * (size_t)d->heads
                                    : (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q;
  if (!clattn__mul_size(lse_rows, sizeof(float), &bytes[4])) bytes[4] = SIZE_MAX;
  const cl_mem q = a->q, k = a->k, v = a->v, o = a->o, lse = a->lse;
  clattn_status st;
  if ((st = clattn__check_buffer(ctx, q, bytes[0], "q")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, k, bytes[1], "k")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, v, bytes[2], "v")) != CLATTN_SUCCESS) return st;
  if ((st = clattn__check_buffer(ctx, o, bytes[3], "o")) != CLATTN_SUCCESS) return st;
  if (mem_overlap(o, q) || mem_overlap(o, k) || mem_overlap(o, v))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "o must not alias q, k or v");
  if (lse) {
    if ((st = clattn__check_buffer(ctx, lse, bytes[4], "lse")) != CLATTN_SUCCESS) return st;
    if (mem_overlap(lse, q) || mem_overlap(lse, k) || mem_overlap(lse, v) || mem_overlap(lse, o))
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "lse must not alias q, k, v or o");
  }
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  const cl_mem fwd_outs[2] = {o, lse};
  static const char *const fwd_names[2] = {"o", "lse"};
  if ((st = check_user_bias(ctx, d, a, fwd_outs, fwd_names, 2)) != CLATTN_SUCCESS) return st;
  const bool quant = d->kv_dtype != CLATTN_KV_DTYPE_SAME;
  if (!quant && (a->k_scale || a->v_scale))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "k_scale / v_scale are given but desc.kv_dtype is SAME (not quantized)");
  if (quant) {
    size_t sb;
    if (!clattn__mul_size(clattn__kv_scale_floats(d), sizeof(float), &sb)) sb = SIZE_MAX;
    const cl_mem sc[2] = {a->k_scale, a->v_scale};
    static const char *const sn[2] = {"k_scale", "v_scale"};
    for (int i = 0; i < 2; i++) {
      if (!sc[i])
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s is NULL but desc.kv_dtype is quantized (%s)", sn[i],
                            clattn_kv_dtype_name(d->kv_dtype));
      if ((st = clattn__check_buffer(ctx, sc[i], sb, sn[i])) != CLATTN_SUCCESS) return st;
      if (mem_overlap(sc[i], o) || (lse && mem_overlap(sc[i], lse)))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s must not alias o or lse",
                            sn[i]);
    }
  }
  /* The tables: which the descriptor needs, their sizes. */
  const bool paged = d->kv_layout != CLATTN_KV_CONTIGUOUS;
  const bool decode =
      p->variant && !strncmp(p->variant->name, "decode", 6); /* decode, decode_warp */
  const size_t nb = (size_t)d->batch, nb1 = nb + 1;
  size_t bt_bytes;
  if (!clattn__mul3_size(nb, (size_t)(paged ? d->max_pages_per_seq : 0), 4, &bt_bytes))
    bt_bytes = SIZE_MAX;
  const struct {
    cl_mem m;
    const char *name;
    bool need, allowed;
    size_t bytes;
  } tab[4] = {
      {a->cu_seqlens_q, "cu_seqlens_q", d->ragged != 0, d->ragged != 0, nb1 * 4},
      {a->cu_seqlens_kv, "cu_seqlens_kv", d->ragged && !paged, d->ragged && !paged, nb1 * 4},
      {a->seqlens_kv, "seqlens_kv", paged, paged || (!d->ragged && decode), nb * 4},
      {a->block_table, "block_table", paged, paged, bt_bytes},
  };
  for (int i = 0; i < 4; i++) {
    if (!tab[i].m) {
      if (tab[i].need)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s is NULL but the descriptor (%s) needs it", tab[i].name,
                            d->ragged ? "ragged" : "paged KV cache");
      continue;
    }
    if (!tab[i].allowed)
      return clattn__fail(
          ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s is given but this plan (%s) does not use it%s",
          tab[i].name, p->variant ? p->variant->name : "?",
          i == 2 ? " (seqlens_kv with contiguous K/V needs the decode kernel)" : "");
    if ((st = clattn__check_buffer(ctx, tab[i].m, tab[i].bytes, tab[i].name)) != CLATTN_SUCCESS)
      return st;
    if (mem_overlap(tab[i].m, o) || (lse && mem_overlap(tab[i].m, lse)))
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s must not alias o or lse",
                          tab[i].name);
  }
  const clattn__buffers b = buffers_of(a);
  if (p->flags & CLATTN_PLAN_CHECK_TABLES) {
    if (num_wait) {
      cl_int err = clWaitForEvents(num_wait, wait);
      if (err != CL_SUCCESS) return clattn__cl_fail(ctx, "clWaitForEvents", err, "wait_list");
    }
    if ((st = check_tables(p, &b)) != CLATTN_SUCCESS) return st;
  }
  *out = b;
  return CLATTN_SUCCESS;
}

static clattn_status execute_args(clattn_plan p, const clattn_exec_args *a, cl_uint num_wait,
                                  const cl_event *wait, cl_event *event) {
  clattn__buffers b;
  const clattn_status st = check_args(p, a, num_wait, wait, &b);
  if (st != CLATTN_SUCCESS) return st;
  return p->variant->execute(p, &b, num_wait, wait, event);
}

clattn_status clattn_plan_execute(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
                                  cl_uint num_wait, const cl_event *wait, cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  const clattn_exec_args a = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
  return execute_args(p, &a, num_wait, wait, event);
}

clattn_status clattn_plan_execute_ex(clattn_plan p, const clattn_exec_args *args, cl_uint num_wait,
                                     const cl_event *wait, cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (!args) return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT, "args is NULL");
  return execute_args(p, args, num_wait, wait, event);
}

clattn_status clattn__plan_build_backward(clattn_plan p) {
  if (p->bwd_variant) return CLATTN_SUCCESS;
  const clattn__variant *v = NULL;
  int params[CLATTN__MAX_PARAMS];
  char origin[200];
  clattn_status st = clattn__choose_backward(p, &v, params, origin, sizeof origin);
  if (st != CLATTN_SUCCESS) return st;
  p->bwd_variant = v;
  st = v->create(p, params, origin);
  if (st != CLATTN_SUCCESS) {
    v->release(p);
    p->bwd_variant = NULL;
    p->bwd_workspace_bytes = 0;
    p->bwd_describe[0] = 0;
    return st;
  }
  clattn__append(p->describe, sizeof p->describe, "; backward: %s", p->bwd_describe);
  return CLATTN_SUCCESS;
}

/* The checks and the launch of one backward pass (a: the forward's
 * buffers and, ragged, its cu_seqlens tables). */
static clattn_status backward_args(clattn_plan p, const clattn_exec_args *a, cl_mem dout, cl_mem dq,
                                   cl_mem dk, cl_mem dv, cl_uint num_wait, const cl_event *wait,
                                   cl_event *event) {
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  ctx->needed_bytes = 0;
  const clattn_attention_desc *d = &p->desc;
  const cl_mem q = a->q, k = a->k, v = a->v, o = a->o, lse = a->lse;
  if (d->kv_layout != CLATTN_KV_CONTIGUOUS)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "the backward pass takes contiguous K/V: a paged KV cache is for "
                        "inference");
  if (a->seqlens_kv || a->block_table)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "seqlens_kv and block_table are not used by the backward pass (NULL)");
  if (d->ragged && (!a->cu_seqlens_q || !a->cu_seqlens_kv))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "the plan is ragged: the backward pass needs cu_seqlens_q and "
                        "cu_seqlens_kv (clattn_plan_execute_backward_ex)");
  if (!d->ragged && (a->cu_seqlens_q || a->cu_seqlens_kv))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "cu_seqlens_q / cu_seqlens_kv are given but the plan is not ragged");
  const size_t es = clattn__dtype_size(d->dtype);
  size_t bytes[6];
  for (int i = 0; i < 4; i++)
    if (!clattn__mul_size(p->elems[i], es, &bytes[i])) bytes[i] = SIZE_MAX;
  const size_t lse_rows = d->ragged ? (size_t)d->total_q * (size_t)d->heads
                                    : (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q;
  if (!clattn__mul_size(lse_rows, sizeof(float), &bytes[4])) bytes[4] = SIZE_MAX;
  bytes[5] = ((size_t)d->batch + 1) * sizeof(int);
  /* Arguments, their sizes (q, dq: bytes[0]; k, dk: [1]; v, dv: [2]; o, dout: [3];
   * the tables [5]). */
  const cl_mem mem[11] = {q, k, v, o, lse, dout, dq, dk, dv, a->cu_seqlens_q, a->cu_seqlens_kv};
  static const char *const names[11] = {
      "q", "k", "v", "o", "lse", "dout", "dq", "dk", "dv", "cu_seqlens_q", "cu_seqlens_kv"};
  static const int size_of[11] = {0, 1, 2, 3, 4, 3, 0, 1, 2, 5, 5};
  const int nmem = d->ragged ? 11 : 9;
  clattn_status st;
  for (int i = 0; i < nmem; i++)
    if ((st = clattn__check_buffer(ctx, mem[i], bytes[size_of[i]], names[i])) != CLATTN_SUCCESS)
      return st;
  for (int i = 6; i < 9; i++) /* the outputs alias nothing */
    for (int j = 0; j < nmem; j++)
      if (j != i && mem_overlap(mem[i], mem[j]))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "%s must not alias %s", names[i],
                            names[j]);
  if (d->layout == CLATTN_LAYOUT_STRIDED) {
    const clattn_strides *st3[3] = {&p->qs, &p->ks, &p->vs};
    const int hh[3] = {d->heads, d->kv_heads, d->kv_heads};
    const int nn[3] = {d->seq_q, d->seq_kv, d->seq_kv};
    static const char *const sn[3] = {"q_strides", "k_strides", "v_strides"};
    for (int i = 0; i < 3; i++)
      if (!clattn__strides_disjoint(st3[i], d->batch, hh[i], nn[i], d->head_dim))
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "desc.%s make two elements share an address: the backward pass "
                            "writes d%c with them",
                            sn[i], "qkv"[i]);
  }
  if ((num_wait > 0) != (wait != NULL))
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "wait_list must be NULL exactly when num_wait is 0");
  /* the user functions' buffer and the bias tensor, as the forward takes them */
  if ((st = check_user_bias(ctx, d, a, mem + 6, names + 6, 3)) != CLATTN_SUCCESS) return st;
  if (a->k_scale || a->v_scale)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "k_scale / v_scale: the backward pass takes no quantized K/V");
  if ((st = clattn__plan_build_backward(p)) != CLATTN_SUCCESS) return st;
  clattn__buffers b = buffers_of(a);
  b.dout = dout;
  b.dq = dq;
  b.dk = dk;
  b.dv = dv;
  return p->bwd_variant->execute(p, &b, num_wait, wait, event);
}

clattn_status clattn_plan_execute_backward(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                           cl_mem lse, cl_mem dout, cl_mem dq, cl_mem dk, cl_mem dv,
                                           cl_uint num_wait, const cl_event *wait,
                                           cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  const clattn_exec_args a = {.q = q, .k = k, .v = v, .o = o, .lse = lse};
  return backward_args(p, &a, dout, dq, dk, dv, num_wait, wait, event);
}

clattn_status clattn_plan_execute_backward_ex(clattn_plan p, const clattn_exec_args *args,
                                              cl_mem dout, cl_mem dq, cl_mem dk, cl_mem dv,
                                              cl_uint num_wait, const cl_event *wait,
                                              cl_event *event) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  if (!args) return clattn__fail(p->ctx, CLATTN_ERROR_INVALID_ARGUMENT, "args is NULL");
  return backward_args(p, args, dout, dq, dk, dv, num_wait, wait, event);
}

double clattn_plan_backward_flops(clattn_plan p) { return p ? 2.5 * clattn_plan_flops(p) : 0.0; }

const char *clattn_plan_describe(clattn_plan p) { return p ? p->describe : ""; }

size_t clattn_plan_workspace_size(clattn_plan p) {
  if (!p) return 0;
  /* The family's own workspace plus a sparse mask's tile lists and bitmap. */
  return p->workspace_bytes + p->bwd_workspace_bytes + (p->sparse ? p->sparse->device_bytes : 0);
}

const clattn_attention_desc *clattn_plan_desc(clattn_plan p) { return p ? &p->desc : NULL; }

uint64_t clattn_plan_visible_pairs(clattn_plan p) { return p ? p->visible_pairs : 0; }

double clattn_plan_flops(clattn_plan p) {
  if (!p) return 0.0;
  if (p->variant && p->variant->flops) return p->variant->flops(p);
  return 4.0 * (double)p->desc.head_dim * p->visible_pairs_exact;
}

void clattn_plan_release(clattn_plan p) {
  if (!p) return;
  if (p->bwd_variant && p->bwd_variant->release) p->bwd_variant->release(p);
  if (p->variant && p->variant->release) p->variant->release(p);
  clattn__sparse_release(p);
  clattn_context ctx = p->ctx;
  free(p->fn_copy[0]);
  free(p->fn_copy[1]);
  free(p->sinks_copy);
  free(p);
  if (--ctx->live_plans == 0 && ctx->released) clattn__context_free(ctx);
}

clattn_status clattn_plan_profile(clattn_plan p, cl_mem q, cl_mem k, cl_mem v, cl_mem o, int reps,
                                  int max_kernels, const char **names, double *ms,
                                  int *num_kernels) {
  const clattn_exec_args a = {.q = q, .k = k, .v = v, .o = o};
  return clattn_plan_profile_ex(p, &a, reps, max_kernels, names, ms, num_kernels);
}

clattn_status clattn_plan_profile_ex(clattn_plan p, const clattn_exec_args *args, int reps,
                                     int max_kernels, const char **names, double *ms,
                                     int *num_kernels) {
  if (!p) return CLATTN_ERROR_INVALID_ARGUMENT;
  clattn_context ctx = p->ctx;
  ctx->msg[0] = 0;
  if (!args || !names || !ms || !num_kernels || reps < 1 || max_kernels < 1)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "clattn_plan_profile: args, names, ms and num_kernels must be given, "
                        "reps >= 1 and max_kernels >= 1");
  *num_kernels = 0;
  clattn__buffers b;
  clattn_status st = check_args(p, args, 0, NULL, &b);
  if (st != CLATTN_SUCCESS) return st;
  if (p->variant->profile) {
    const char *nm[16];
    double t[16];
    const int n = p->variant->profile(p, &b, reps, nm, t);
    if (n < 0) return CLATTN_ERROR_OPENCL;
    for (int i = 0; i < n && i < max_kernels; i++) {
      names[i] = nm[i];
      ms[i] = t[i];
    }
    *num_kernels = n < max_kernels ? n : max_kernels;
    return CLATTN_SUCCESS;
  }
  double *t = malloc((size_t)reps * sizeof *t);
  if (!t) return clattn__fail(ctx, CLATTN_ERROR_OUT_OF_MEMORY, "clattn_plan_profile: host memory");
  for (int r = 0; r < reps && st == CLATTN_SUCCESS; r++) {
    cl_event ev = NULL;
    st = p->variant->execute(p, &b, 0, NULL, &ev);
    if (st != CLATTN_SUCCESS) break;
    cl_ulong t0 = 0, t1 = 0;
    cl_int err = clWaitForEvents(1, &ev);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    if (err != CL_SUCCESS) st = clattn__cl_fail(ctx, "clGetEventProfilingInfo", err, "profile");
    t[r] = (double)(t1 - t0) * 1e-6;
  }
  if (st == CLATTN_SUCCESS) {
    clattn__sort_doubles(t, (size_t)reps);
    names[0] = p->variant->name;
    ms[0] = t[reps / 2];
    *num_kernels = 1;
  }
  free(t);
  return st;
}
