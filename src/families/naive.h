/* naive.h — the naive family's device workspace, computed from a descriptor alone (no plan). */
#ifndef CLATTN_NAIVE_H
#define CLATTN_NAIVE_H

#include "internal.h"

/* Device workspace of a naive plan, in bytes per buffer. The score matrix is
 * B·H·Nq·Nk floats. With 16-bit storage (f16, bf16) the inputs are first
 * converted into packed [b][h][s][d] float copies that CLBlast's SGEMM can
 * read: Q (B·H·Nq·d floats; the same buffer later receives the f32 output
 * P·V before it is rounded into o), K and V (B·Hk·Nk·d floats each, one
 * copy per kv head: GQA is resolved by the GEMM offsets, not by
 * replication). f32 storage needs no copies (q, k, v are 0). A sparse mask's
 * bitmap is not included (its size is known only once the plan has built it;
 * clattn_plan_workspace_size() adds it). */
typedef struct clattn__naive_ws {
  size_t scores; /* B·H·Nq·Nk·4 */
  size_t q;      /* 16-bit storage: B·H·Nq·d·4 (Q in, then O out), else 0 */
  size_t k, v;   /* 16-bit storage: B·Hk·Nk·d·4 each, else 0 */
  size_t total;  /* the sum */
} clattn__naive_ws;

/* Fills *ws from desc (kv_heads 0 means heads; sizes must be positive, as
 * clattn_plan_create validates them). Returns false, with *ws zeroed, when a
 * size does not fit in size_t. */
bool clattn__naive_workspace(const clattn_attention_desc *desc, clattn__naive_ws *ws);

#endif
