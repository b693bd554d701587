/* linear_feat.cl — lin_feat: FAVOR+ features of query or key rows as a register-tiled GEMM (after linear_common.cl). */
/* ---------------------------------------------------------------------- */

#if FAVOR
/* Features of N rows per batch·head of X (Hx heads per batch): Φ[bh][row]
 * = exp(a − max_f a) (FPS floats, 0 past F); keys also RMx[bh][row] = max_f a. */
__kernel __attribute__((reqd_work_group_size(NTF, 1, 1))) void
lin_feat(__global const stype *restrict X, const long sb, const long sh, const long ss,
         const long sd, const int Hx, const int N, const float sq,
         __global const float *restrict Wt, __global float *restrict Phi,
         __global float *restrict RMx, const int is_key) {
  __local float4 Xs4[FDS * LDX / 4];  /* [c][row] */
  __local float4 Ws4[FDS * LDW / 4];  /* [c][f] */
  __local float red[FBR * (FTF > FDS ? FTF : FDS)]; /* partial maxima, partial norms */
  __local float nrm[FBR];                           /* ‖x‖² per row */
  __local float *Xs = (__local float *)Xs4;
  __local float *Ws = (__local float *)Ws4;
  const int lid = get_local_id(0);
  const int tr = lid / FTF, tf = lid % FTF;
  const int r0 = get_group_id(0) * FBR, bh = get_group_id(1);
  const int b = bh / Hx, h = bh % Hx;
  __global const stype *Xb = X + (long)b * sb + (long)h * sh;

  float acc[FRR][FRF], np[NXI], xr[NXI];
  float4 wr[NWL];
  UNROLL for (int i = 0; i < FRR; i++) UNROLL for (int j = 0; j < FRF; j++) acc[i][j] = 0.0f;
  UNROLL for (int u = 0; u < NXI; u++) np[u] = 0.0f;

  /* Software pipeline over head-dim slices: the next slice of x and ω is
   * loaded into registers while the current one is multiplied. Each
   * work-item stages the same (row, column % FDS) positions of x in every
   * slice and sums their squares (np) towards ‖x‖². */
#define FEAT_FETCH(c0)                                                                            \
  do {                                                                                            \
    UNROLL for (int u = 0; u < NXI; u++) {                                                        \
      const int idx = lid + u * NTF, r = idx / FDS, c = (c0) + idx % FDS;                         \
      xr[u] = (idx < FBR * FDS && r0 + r < N && c < D)                                            \
                  ? LOAD(Xb, (long)(r0 + r) * ss + (long)c * sd) * sq                             \
                  : 0.0f;                                                                         \
    }                                                                                             \
    UNROLL for (int u = 0; u < NWL; u++) {                                                        \
      const int idx = lid + u * NTF, c = (c0) + idx / (FFP / 4), f = 4 * (idx % (FFP / 4));       \
      wr[u] = (idx < FDS * (FFP / 4) && c < D && f < FPS)                                         \
                  ? *(__global const float4 *)(Wt + c * FPS + f)                                  \
                  : (float4)(0.0f);                                                               \
    }                                                                                             \
  } while (0)

  FEAT_FETCH(0);
  for (int c0 = 0; c0 < D; c0 += FDS) {
    BARRIER;
    UNROLL for (int u = 0; u < NXI; u++) {
      const int idx = lid + u * NTF;
      if (idx < FBR * FDS) {
        Xs[(idx % FDS) * LDX + idx / FDS] = xr[u];
        np[u] = fma(xr[u], xr[u], np[u]);
      }
    }
    UNROLL for (int u = 0; u < NWL; u++) {
      const int idx = lid + u * NTF;
      if (idx < FDS * (FFP / 4))
        *(__local float4 *)(Ws + (idx / (FFP / 4)) * LDW + 4 * (idx % (FFP / 4))) = wr[u];
    }
    BARRIER;
    if (c0 + FDS < D) FEAT_FETCH(c0 + FDS);
    KUNROLL
    for (int c = 0; c < FDS; c++) {
      float a[FRR], w[FRF];
      LOADT(a, FRR, FTR, tr, Xs + c * LDX);
      LOADT(w, FRF, FTF, tf, Ws + c * LDW);
      UNROLL for (int i = 0; i < FRR; i++) UNROLL for (int j = 0; j < FRF; j++)
          acc[i][j] = fma(a[i], w[j], acc[i][j]);
    }
  }
  /* ‖x‖² of each row from the partial sums. */
  UNROLL for (int u = 0; u < NXI; u++) {
    const int idx = lid + u * NTF;
    if (idx < FBR * FDS) red[idx] = np[u];
  }
  BARRIER;
  FOR_ITEMS(r, FBR, NTF, lid) {
    float sum = 0.0f;
    for (int c = 0; c < FDS; c++) sum += red[r * FDS + c];
    nrm[r] = sum;
  }
  BARRIER;
  UNROLL for (int i = 0; i < FRR; i++) {
    const int r = RIDX(FTR, FRR, tr, i);
    const float hn = 0.5f * nrm[r];
    float m = -INFINITY;
    UNROLL for (int j = 0; j < FRF; j++) {
      const int f = RIDX(FTF, FRF, tf, j);
      acc[i][j] = f < F ? acc[i][j] - hn : -INFINITY;
      m = fmax(m, acc[i][j]);
    }
    red[r * FTF + tf] = m;
  }
  BARRIER;
  UNROLL for (int i = 0; i < FRR; i++) {
    const int r = RIDX(FTR, FRR, tr, i), row = r0 + r;
    float m = -INFINITY;
    for (int u = 0; u < FTF; u++) m = fmax(m, red[r * FTF + u]);
    if (row < N) {
      __global float *pr = Phi + ((long)bh * N + row) * FPS;
      UNROLL for (int j = 0; j < FRF; j++) {
        const int f = RIDX(FTF, FRF, tf, j);
        if (f < FPS) pr[f] = exp(acc[i][j] - m); /* exp(-inf) = 0 past F */
      }
      if (is_key && tf == 0) RMx[(long)bh * N + row] = m;
    }
  }
}
#endif
