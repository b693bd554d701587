/* linear_state.cl — lin_state: the state of each key split, φ(K)ᵀ[V 1], on FMA units or tensor cores (after linear_common.cl). */
/* ---------------------------------------------------------------------- */

/* State of the keys [s·L, min(s·L + L, Nk)) of one batch·kv-head, columns
 * [ct·BD, ct·BD + BD) (and z from column block 0): S[bhk][s] (F×DE floats);
 * FAVOR+: its maximum CM[bhk][s] (the split's largest m_j: every key of the
 * split is weighed against it, w_j = exp(m_j − M) <= 1).
 * Software pipeline: the next tile's global loads are issued before the
 * current tile's products (register prefetch, two local buffers, one
 * barrier per tile); z is summed while the tiles are staged. */
#define NKL CDIV(BKS * (SKP / 4), SNT) /* key-feature float4s per work-item and tile */
#define NVL CDIV(BKS * (BD / 4), SNT)  /* value float4s per work-item and tile */
#define KSZ (BKS * SLDK)               /* floats of one key-feature buffer */
#if TC
#define VSZ (2 * BKS * SLDV) /* TF32 hi parts, then lo parts (split once, read by every warp) */
#else
#define VSZ (BKS * SLDV)
#endif
#ifndef ZLOC
#define ZLOC 0 /* z partials in local memory (fewer registers) instead of registers */
#endif

__kernel __attribute__((reqd_work_group_size(SNT, 1, 1))) void
lin_state(__global const stype *restrict K, __global const stype *restrict V,
          __global const float *restrict PhiK, __global const float *restrict RMk,
          __global float *restrict S, __global float *restrict CM, const long ksb, const long ksh,
          const long kss, const long ksd, const long vsb, const long vsh, const long vss,
          const long vsd, const int Hk, const int Nk, const int L, const int nsplit,
          const float sqk) {
  __local float4 Ks4[2 * KSZ / 4]; /* φ(k) rows [key][f], two buffers; z partials at the end */
  __local float4 Vs4[2 * VSZ / 4]; /* (w·v) rows [key][col], two buffers */
  __local float red[SNT];
#if ZLOC
  __local float4 zl[BKS * (SKP / 4)]; /* z partials, one per staged position */
#endif
  const int lid = get_local_id(0);
  const int tf = lid / STC, tc = lid % STC;
  const int s = get_group_id(0), ct = get_group_id(1), bhk = get_group_id(2);
  const int b = bhk / Hk, hk = bhk % Hk;
  const int col0 = ct * BD;
#if ILV
  const int k0 = 0, klim = Nk, ntot = (Nk + BKS - 1) / BKS;
  (void)k0;
  const int ntile = s < ntot ? (ntot - s + nsplit - 1) / nsplit : 0;
#define TILE0(t) ((s + (t)*nsplit) * BKS) /* first key of the split's tile t */
  (void)L;
#else
  const int k0 = s * L, klim = min(k0 + L, Nk);
  const int ntile = (klim - k0 + BKS - 1) / BKS;
#define TILE0(t) (k0 + (t)*BKS)
#endif
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  __global const float *Pk = PhiK + (long)bhk * Nk * FPS;
  __global const float *Rk = RMk + (long)bhk * Nk;
  (void)Kb;
  (void)Pk;
  (void)Rk;
  (void)red;

  float M = 0.0f;
#if FAVOR
  {
    float m = -INFINITY;
    for (int j = lid; j < ntile * BKS; j += SNT) {
      const int key = TILE0(j / BKS) + j % BKS;
      if (key < klim) m = fmax(m, Rk[key]);
    }
    red[lid] = m;
    BARRIER;
    m = -INFINITY;
    for (int u = 0; u < SNT; u++) m = fmax(m, red[u]);
    M = m; /* finite: the split holds a key */
  }
#endif

#if TC
  /* Warp wq owns the features [fw, fw + 16·STM) × the BD columns. */
  const int wq = lid >> 5, gq = (lid & 31) >> 2, tq = lid & 3, fw = wq * (STM * 16);
  float acc[STM][BD / 8][4];
  UNROLL for (int m = 0; m < STM; m++) UNROLL for (int j = 0; j < BD / 8; j++)
      UNROLL for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;
  (void)tf;
  (void)tc;
#else
  float acc[SRF][SRC];
  UNROLL for (int i = 0; i < SRF; i++) UNROLL for (int j = 0; j < SRC; j++) acc[i][j] = 0.0f;
#endif
  float4 kr[NKL], vr[NVL];
#if FAVOR
  float kw[NKL], vw[NVL];
#endif
#if ZLOC
#define ZP(u) zl[lid + (u)*SNT]
  UNROLL for (int u = 0; u < NKL; u++) if (lid + u * SNT < BKS * (SKP / 4)) ZP(u) = (float4)(0.0f);
#else
  float4 zp[NKL];
#define ZP(u) zp[u]
  UNROLL for (int u = 0; u < NKL; u++) zp[u] = (float4)(0.0f);
#endif

/* Global loads of tile t into the registers. */
#define STATE_FETCH(t)                                                                            \
  do {                                                                                            \
    const int kk_ = TILE0(t);                                                                     \
    UNROLL for (int u = 0; u < NKL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (SKP / 4), f = 4 * (idx % (SKP / 4));              \
      const int key = kk_ + j;                                                                    \
      const bool ok = idx < BKS * (SKP / 4) && key < klim && f < F;                               \
      kr[u] = (float4)(0.0f);                                                                     \
      STATE_FETCH_K                                                                               \
    }                                                                                             \
    UNROLL for (int u = 0; u < NVL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (BD / 4), c = 4 * (idx % (BD / 4));                \
      const int key = kk_ + j;                                                                    \
      vr[u] = (float4)(0.0f);                                                                     \
      STATE_FETCH_V0                                                                              \
      if (idx < BKS * (BD / 4) && key < klim) {                                                   \
        vr[u] = ld4(Vb, (long)key * vss, vsd, col0 + c);                                          \
        STATE_FETCH_VW                                                                            \
      }                                                                                           \
    }                                                                                             \
  } while (0)
#if FAVOR
#define STATE_FETCH_K                                                                             \
  kw[u] = -INFINITY;                                                                              \
  if (ok) {                                                                                       \
    kr[u] = *(__global const float4 *)(Pk + (long)key * FPS + f);                                 \
    kw[u] = Rk[key];                                                                              \
  }
#define STATE_FETCH_VW vw[u] = Rk[key];
#define STATE_FETCH_V0 vw[u] = -INFINITY;
#else
#define STATE_FETCH_V0
#define STATE_FETCH_K                                                                             \
  if (ok) kr[u] = ld4(Kb, (long)key * kss, ksd, f);
#define STATE_FETCH_VW
#endif
#if TC
#define STATE_PUT_V(p, x)                                                                         \
  do {                                                                                            \
    uint4 h_, l_;                                                                                 \
    TF32_SPLIT((x).x, h_.x, l_.x);                                                                     \
    TF32_SPLIT((x).y, h_.y, l_.y);                                                                     \
    TF32_SPLIT((x).z, h_.z, l_.z);                                                                     \
    TF32_SPLIT((x).w, h_.w, l_.w);                                                                     \
    *(__local uint4 *)(p) = h_;                                                                   \
    *(__local uint4 *)((p) + BKS * SLDV) = l_;                                                    \
  } while (0)
#else
#define STATE_PUT_V(p, x) (*(__local float4 *)(p) = (x))
#endif
/* The registers into buffer `buf` (features, weights) and the z partials. */
#define STATE_STORE(t, buf)                                                                       \
  do {                                                                                            \
    const int kk_ = TILE0(t);                                                                     \
    __local float *Kd = (__local float *)Ks4 + (buf)*KSZ;                                         \
    __local float *Vd = (__local float *)Vs4 + (buf)*VSZ;                                         \
    UNROLL for (int u = 0; u < NKL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (SKP / 4), f = 4 * (idx % (SKP / 4));              \
      if (idx < BKS * (SKP / 4)) {                                                                \
        const bool ok = kk_ + j < klim && f < F;                                                  \
        float4 x = kr[u];                                                                         \
        STATE_STORE_K                                                                             \
        *(__local float4 *)(Kd + j * SLDK + f) = x;                                               \
      }                                                                                           \
    }                                                                                             \
    UNROLL for (int u = 0; u < NVL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (BD / 4), c = 4 * (idx % (BD / 4));                \
      if (idx < BKS * (BD / 4)) {                                                                 \
        float4 x = vr[u];                                                                         \
        STATE_STORE_V                                                                             \
        STATE_PUT_V(Vd + j * SLDV + c, x);                                                        \
      }                                                                                           \
    }                                                                                             \
  } while (0)
#if FAVOR
#define STATE_STORE_K ZP(u) += x * exp(kw[u] - M); /* kw = -inf: weight 0 */
#define STATE_STORE_V x *= exp(vw[u] - M);
#else
#define STATE_STORE_K                                                                             \
  x = ok ? phi4(x * sqk) : (float4)(0.0f);                                                        \
  ZP(u) += x;
#define STATE_STORE_V
#endif

  if (ntile > 0) {
    STATE_FETCH(0);
    STATE_STORE(0, 0);
  }
  BARRIER;
  for (int t = 0; t < ntile; t++) {
    const int buf = t & 1;
    if (t + 1 < ntile) STATE_FETCH(t + 1);
    __local const float *Kc = (__local const float *)Ks4 + buf * KSZ;
    __local const float *Vc = (__local const float *)Vs4 + buf * VSZ;
#if TC
    /* 8 keys per step: A = φ(K)ᵀ (features × keys), B = [w·v] (keys × columns). */
    UNROLL for (int ks = 0; ks < BKS; ks += 8) {
      __local const float *k0p = Kc + (ks + tq) * SLDK + fw + gq;
      __local const float *v0p = Vc + (ks + tq) * SLDV + gq;
      uint ah[STM][4], al[STM][4];
      UNROLL for (int m = 0; m < STM; m++) {
        TF32_SPLIT(k0p[m * 16], ah[m][0], al[m][0]);
        TF32_SPLIT(k0p[m * 16 + 8], ah[m][1], al[m][1]);
        TF32_SPLIT(k0p[4 * SLDK + m * 16], ah[m][2], al[m][2]);
        TF32_SPLIT(k0p[4 * SLDK + m * 16 + 8], ah[m][3], al[m][3]);
      }
      UNROLL for (int j = 0; j < BD / 8; j++) {
        const uint vh[2] = {as_uint(v0p[8 * j]), as_uint(v0p[4 * SLDV + 8 * j])};
        const uint vl[2] = {as_uint(v0p[BKS * SLDV + 8 * j]),
                            as_uint(v0p[BKS * SLDV + 4 * SLDV + 8 * j])};
        UNROLL for (int m = 0; m < STM; m++) MMA3(acc[m][j], ah[m], al[m], vh, vl);
      }
    }
#else
    KUNROLL_S
    for (int j = 0; j < BKS; j++) {
      float a[SRF], v[SRC];
      LOADT(a, SRF, STF, tf, Kc + j * SLDK);
      LOADT(v, SRC, STC, tc, Vc + j * SLDV);
      UNROLL for (int i = 0; i < SRF; i++) UNROLL for (int u = 0; u < SRC; u++)
          acc[i][u] = fma(a[i], v[u], acc[i][u]);
    }
#endif
    if (t + 1 < ntile) STATE_STORE(t + 1, buf ^ 1);
    BARRIER;
  }

  __global float *Sc = S + ((long)bhk * nsplit + s) * (long)(F * DE);
#if TC
  UNROLL for (int m = 0; m < STM; m++) UNROLL for (int j = 0; j < BD / 8; j++)
      UNROLL for (int e = 0; e < 4; e++) {
    const int f = fw + m * 16 + gq + (e >> 1) * 8, col = col0 + 8 * j + 2 * tq + (e & 1);
    if (f < F && col < D) Sc[f * DE + col] = acc[m][j][e];
  }
#else
  UNROLL for (int i = 0; i < SRF; i++) {
    const int f = RIDX(STF, SRF, tf, i);
    if (f < F) {
      UNROLL for (int u = 0; u < SRC; u++) {
        const int col = col0 + RIDX(STC, SRC, tc, u);
        if (col < D) Sc[f * DE + col] = acc[i][u];
      }
    }
  }
#endif
  /* z = Σ over the keys of the partials, from column block 0. */
  {
#if ZLOC
    __local const float *zf = (__local const float *)zl; /* complete after the last barrier */
#else
    __local float4 *zr = Ks4; /* BKS × SKP/4 float4s: free after the last barrier */
    UNROLL for (int u = 0; u < NKL; u++) {
      const int idx = lid + u * SNT;
      if (idx < BKS * (SKP / 4)) zr[idx] = zp[u];
    }
    BARRIER;
    __local const float *zf = (__local const float *)Ks4;
#endif
    if (ct == 0) {
      for (int f = lid; f < F; f += SNT) {
        float z = 0.0f;
        for (int j = 0; j < BKS; j++) z += zf[j * SKP + f];
        Sc[f * DE + D] = z;
      }
    }
  }
#if FAVOR
  if (ct == 0 && lid == 0) CM[(long)bhk * nsplit + s] = M;
#else
  (void)RMk;
  (void)CM;
#endif
}
