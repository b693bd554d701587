/* softmax.cl — the naive family's kernels: masked row softmax, 16-bit <-> f32 conversions. */

#ifndef WG
#define WG 256 /* work-items per row; a power of two */
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

/* S holds rows of Nk scores (already multiplied by the scale) for rows
 * bh*Nq + r. Each work-group normalises one row in place: P = exp(S - max) /
 * sum. Keys j > r + CAUSAL_OFFSET are masked when CAUSAL; with SPARSE the sparse
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
  const int nvis = clamp(r + CAUSAL_OFFSET(CAUSAL, Nq, Nk) + 1, 0, Nk);
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
  if (write_lse && lid == 0) LSE[row] = sum == 0.0f ? -INFINITY : sub + log(sum); /* NaN rows: NaN */
}

#if CLATTN_DTYPE != 0
/* 16-bit storage (-DCLATTN_DTYPE=1 f16, 2 bf16; LOAD / STORE in common.cl):
 * CLBlast's SGEMM reads and writes f32, so Q, K and V are first copied into
 * packed [nb][nh][ns][D] float tensors and the f32 output is then rounded
 * into o (f16 and bf16 round to nearest even). Element i < n of the packed
 * tensor is (b, h, s, x) of the strided one, at b·sb + h·sh + s·ss + x·sd
 * (64-bit element offsets). One work-item per element, consecutive items
 * along x: both sides are contiguous when the dim stride is 1. n fits in an
 * int (the host keeps every GEMM operand below 2^31 elements). */
inline long packed_to_strided(const int i, const int D, const int S, const int Hx, const long sb,
                              const long sh, const long ss, const long sd) {
  const int row = i / D, x = i - row * D;
  const int bh = row / S, s = row - bh * S;
  const int b = bh / Hx, h = bh - b * Hx;
  return b * sb + h * sh + s * ss + x * sd;
}

__kernel void to_f32(__global const stype *restrict src, __global float *restrict dst,
                     const int n, const int D, const int S, const int Hx, const long sb,
                     const long sh, const long ss, const long sd) {
  const size_t gi = get_global_id(0);
  if (gi >= (size_t)n) return;
  const int i = (int)gi;
  dst[i] = LOAD(src, packed_to_strided(i, D, S, Hx, sb, sh, ss, sd));
}

__kernel void from_f32(__global const float *restrict src, __global stype *restrict dst,
                       const int n, const int D, const int S, const int Hx, const long sb,
                       const long sh, const long ss, const long sd) {
  const size_t gi = get_global_id(0);
  if (gi >= (size_t)n) return;
  const int i = (int)gi;
  STORE(dst, packed_to_strided(i, D, S, Hx, sb, sh, ss, sd), src[i]);
}
#endif
