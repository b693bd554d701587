/* softmax.cl — masked, numerically stable row softmax over the naive family's score matrix. */

#ifndef WG
#define WG 256 /* work-items per row; a power of two */
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

/* S holds rows of Nk scores (already multiplied by the scale) for rows
 * bh*Nq + r. Each work-group normalises one row in place: P = exp(S - max) /
 * sum. Keys j > r + (Nk - Nq) are masked when CAUSAL; with SPARSE the sparse
 * mask (sp_visible, cl/common.cl) is evaluated inline, no mask buffer. A row
 * with no visible key becomes zeros and its LSE -inf. */
#if SPARSE
#define SCORE(j) (sp_visible(r + (Nk - Nq), (j), Nk, SPARSE_MASK_PASS) ? s[j] : -INFINITY)
#else
#define SCORE(j) (s[j])
#endif
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
softmax_rows(__global float *restrict S, __global float *restrict LSE, const int write_lse,
             const int Nq, const int Nk SPARSE_MASK_ARGS) {
  __local float red[WG];
  const long row = get_group_id(0);
  const int r = (int)(row % Nq);
  const int lid = get_local_id(0);
  __global float *s = S + row * (long)Nk;
#if CAUSAL
  const int nvis = clamp(r + (Nk - Nq) + 1, 0, Nk);
#else
  const int nvis = Nk;
#endif
  float mx = -INFINITY;
  for (int j = lid; j < nvis; j += WG) mx = fmax(mx, SCORE(j));
  red[lid] = mx;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = WG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] = fmax(red[lid], red[lid + w]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  mx = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  const float sub = mx == -INFINITY ? 0.0f : mx;
  float sum = 0.0f;
  for (int j = lid; j < nvis; j += WG) sum += exp(SCORE(j) - sub);
  red[lid] = sum;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = WG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] += red[lid + w];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  sum = red[0];
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int j = lid; j < Nk; j += WG) s[j] = j < nvis ? exp(SCORE(j) - sub) * inv : 0.0f;
  if (write_lse && lid == 0) LSE[row] = sum > 0.0f ? sub + log(sum) : -INFINITY;
}
