/* naive_bwd.cl — the element-wise steps of the naive backward: P from the scores and LSE, dS = P∘(dP − D). */

/* Both kernels work on one (batch, head) at a time: P and dS are its Nq×Nk
 * matrices (row-major, leading dimension Nk) between CLBlast GEMMs. f32 only. */

#ifndef D
#define D 64
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

/* P = exp(S − LSE_i) for visible pairs, 0 for masked ones (S holds scale·QKᵀ). */
__kernel void naive_bwd_p(__global float *restrict P, __global const float *restrict LSE,
                          const long lse_off, const int Nq, const int Nk SPARSE_MASK_ARGS) {
  const int j = get_global_id(0), i = get_global_id(1);
  if (j >= Nk || i >= Nq) return;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk); /* sparse: bottom-right */
  bool vis = true;
#if CAUSAL
  vis = j <= i + off;
#endif
#if SPARSE
  vis = sp_visible(i + off, j, Nk, SPARSE_MASK_PASS);
#endif
  const long e = (long)i * Nk + j;
  P[e] = vis ? exp(P[e] - LSE[lse_off + i]) : 0.0f;
}

/* Row i: D_i = Σ dO∘O (ascending), then dS = scale · P∘(dP − D_i) in place of dP. */
__kernel void naive_bwd_ds(__global const float *restrict P, __global float *restrict dS,
                           __global const float *restrict O, __global const float *restrict dO,
                           const long o_off, const long oss, const int Nq, const int Nk,
                           const float scale) {
  const int i = get_global_id(0);
  if (i >= Nq) return;
  const long ro = o_off + (long)i * oss;
  float dd = 0.0f;
  for (int x = 0; x < D; x++)
    dd = fma(dO[ro + x], O[ro + x], dd);
  for (int j = 0; j < Nk; j++) {
    const long e = (long)i * Nk + j;
    dS[e] = P[e] * (dS[e] - dd) * scale;
  }
}
