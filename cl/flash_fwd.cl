/* flash_fwd.cl — portable fused attention forward: tiled Q·Kᵀ, online softmax, P·V in one pass. */

/*
 * One work-group owns BM query rows of one (batch, head). It streams the keys
 * in tiles of BN through local memory, keeps the running row max m, the
 * running row sum l and the BM×D output accumulator in registers, and writes
 * O (and optionally the log-sum-exp) once. No N×N buffer exists.
 *
 * Work-items form a TM×TN grid. Item (tm, tn) owns
 *   query rows  tm*RM .. tm*RM+RM-1            (RM = BM/TM)
 *   key columns tn*RN .. tn*RN+RN-1 of a tile  (RN = BN/TN)
 *   output dims tn*RD .. tn*RD+RD-1            (RD = DP/TN)
 * so each inner step reads RM + RN (resp. RM + RD) contiguous values from
 * local memory and does RM·RN (RM·RD) multiply-adds.
 *
 * Local memory (floats): Qs[DP][BM] (Q pre-scaled by scale·log2 e, stored
 * transposed), KV[max(DP·BN, BN·DP)] holding first Kᵀ[DP][BN] then V[BN][DP]
 * of the current tile, Ps[BN][BM] (probabilities, transposed) and
 * red[BM][TN] for the row-max exchange.
 */

#ifndef D
#define D 64 /* head dim */
#endif
#ifndef DP
#define DP D /* head dim padded to a multiple of TN (and of 4 when possible) */
#endif
#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 32
#endif
#ifndef TM
#define TM 16
#endif
#ifndef TN
#define TN 8
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

#define NT (TM * TN)
#define RM (BM / TM)
#define RN (BN / TN)
#define RD (DP / TN)

#if (BM % TM) || (BN % TN) || (DP % TN) || (DP < D)
#error "flash_fwd: BM % TM, BN % TN and DP % TN must be 0, DP >= D"
#endif

/* Reads n (compile-time) contiguous floats from local memory into r[]. */
#define LREAD(r, src, n)                                                                      \
  do {                                                                                        \
    if ((n) % 4 == 0) {                                                                       \
      _Pragma("unroll") for (int _v = 0; _v < (n) / 4; _v++) {                                \
        float4 _t = vload4(0, (src) + 4 * _v);                                                \
        (r)[4 * _v] = _t.x;                                                                   \
        (r)[4 * _v + 1] = _t.y;                                                               \
        (r)[4 * _v + 2] = _t.z;                                                               \
        (r)[4 * _v + 3] = _t.w;                                                               \
      }                                                                                       \
    } else {                                                                                  \
      _Pragma("unroll") for (int _v = 0; _v < (n); _v++)(r)[_v] = (src)[_v];                  \
    }                                                                                         \
  } while (0)

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_fwd(__global const stype *restrict Q, __global const stype *restrict K,
          __global const stype *restrict V, __global stype *restrict O,
          __global float *restrict LSE, const int write_lse,
          const long qsb, const long qsh, const long qss, const long qsd,
          const long ksb, const long ksh, const long kss, const long ksd,
          const long vsb, const long vsh, const long vss, const long vsd,
          const long osb, const long osh, const long oss, const long osd,
          const int H, const int G, const int Nq, const int Nk, const int nqb,
          const float qscale) {
  __local float Qs[DP * BM];
  __local float KV[DP * BN];
  __local float Ps[BN * BM];
  __local float red[BM * TN];

  const int lid = get_local_id(0);
  const int tm = lid / TN;
  const int tn = lid % TN;
  /* Heaviest (last) query blocks first when causal. */
  const int qb = CAUSAL ? nqb - 1 - (int)get_group_id(0) : (int)get_group_id(0);
  const int bh = get_group_id(1);
  const int b = bh / H;
  const int h = bh % H;
  const int hk = h / G;
  const int q0 = qb * BM;

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;

  /* Q tile → Qs[k][r], pre-scaled so that scores are in log2 units. */
  for (int idx = lid; idx < BM * DP; idx += NT) {
    int k = idx % DP, r = idx / DP;
    float x = 0.0f;
    if (k < D && q0 + r < Nq) x = LOAD(Qb, (long)(q0 + r) * qss + (long)k * qsd) * qscale;
    Qs[k * BM + r] = x;
  }

  float acc[RM][RD];
  float m[RM], l[RM];
#pragma unroll
  for (int i = 0; i < RM; i++) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < RD; j++) acc[i][j] = 0.0f;
  }

  const int off = Nk - Nq; /* bottom-right causal alignment */
  int kv_end = Nk;
#if CAUSAL
  {
    int q_last = min(q0 + BM, Nq) - 1;
    kv_end = clamp(q_last + off + 1, 0, Nk);
  }
#endif
  const int ntiles = (kv_end + BN - 1) / BN;

  for (int t = 0; t < ntiles; t++) {
    const int kv0 = t * BN;
    barrier(CLK_LOCAL_MEM_FENCE); /* previous tile's Ps / V reads are done */
    for (int idx = lid; idx < BN * DP; idx += NT) {
      int k = idx % DP, c = idx / DP;
      float x = 0.0f;
      if (k < D && kv0 + c < Nk) x = LOAD(Kb, (long)(kv0 + c) * kss + (long)k * ksd);
      KV[k * BN + c] = x;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float s[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < RN; j++) s[i][j] = 0.0f;
    for (int k = 0; k < DP; k++) {
      float a[RM], bb[RN];
      LREAD(a, Qs + k * BM + tm * RM, RM);
      LREAD(bb, KV + k * BN + tn * RN, RN);
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < RN; j++) s[i][j] = fma(a[i], bb[j], s[i][j]);
    }

    /* Mask the tail tile and the causal diagonal (uniform branch). */
    const bool need_mask = (kv0 + BN > Nk) || (CAUSAL && kv0 + BN - 1 > q0 + off);
    if (need_mask) {
#pragma unroll
      for (int i = 0; i < RM; i++) {
        int qrow = q0 + tm * RM + i;
#pragma unroll
        for (int j = 0; j < RN; j++) {
          int key = kv0 + tn * RN + j;
          bool dead = key >= Nk;
#if CAUSAL
          dead = dead || key > qrow + off;
#endif
          if (dead) s[i][j] = -INFINITY;
        }
      }
    }

    /* Row max across the TN items sharing a row. */
#pragma unroll
    for (int i = 0; i < RM; i++) {
      float mx = s[i][0];
#pragma unroll
      for (int j = 1; j < RN; j++) mx = fmax(mx, s[i][j]);
      red[(tm * RM + i) * TN + tn] = mx;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* red visible; every item is done reading Kᵀ */

    /* V tile → KV[c][k] (overwrites Kᵀ). */
    for (int idx = lid; idx < BN * DP; idx += NT) {
      int k = idx % DP, c = idx / DP;
      float x = 0.0f;
      if (k < D && kv0 + c < Nk) x = LOAD(Vb, (long)(kv0 + c) * vss + (long)k * vsd);
      KV[c * DP + k] = x;
    }

#pragma unroll
    for (int i = 0; i < RM; i++) {
      float mx = m[i];
      float rr[TN];
      LREAD(rr, red + (tm * RM + i) * TN, TN);
#pragma unroll
      for (int u = 0; u < TN; u++) mx = fmax(mx, rr[u]);
      /* mx == -inf: every key so far is masked; keep p = 0, alpha = 1. */
      float alpha = (mx == -INFINITY) ? 1.0f : exp2(m[i] - mx);
      float sub = (mx == -INFINITY) ? 0.0f : mx;
      m[i] = mx;
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < RN; j++) {
        float p = exp2(s[i][j] - sub);
        rs += p;
        Ps[(tn * RN + j) * BM + tm * RM + i] = p;
      }
      l[i] = l[i] * alpha + rs;
#pragma unroll
      for (int j = 0; j < RD; j++) acc[i][j] *= alpha;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* Ps and V visible */

    for (int c = 0; c < BN; c++) {
      float p[RM], vv[RD];
      LREAD(p, Ps + c * BM + tm * RM, RM);
      LREAD(vv, KV + c * DP + tn * RD, RD);
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < RD; j++) acc[i][j] = fma(p[i], vv[j], acc[i][j]);
    }
  }

  /* Row sums: each item holds a partial over its columns; reduce over TN. */
  barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
  for (int i = 0; i < RM; i++) red[(tm * RM + i) * TN + tn] = l[i];
  barrier(CLK_LOCAL_MEM_FENCE);

  __global stype *Ob = O + (long)b * osb + (long)h * osh;
#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int r = tm * RM + i;
    const int qrow = q0 + r;
    float rr[TN];
    LREAD(rr, red + r * TN, TN);
    float lt = 0.0f;
#pragma unroll
    for (int u = 0; u < TN; u++) lt += rr[u];
    const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
    if (qrow < Nq) {
#pragma unroll
      for (int j = 0; j < RD; j++) {
        int k = tn * RD + j;
        if (k < D) STORE(Ob, (long)qrow * oss + (long)k * osd, acc[i][j] * inv);
      }
      if (write_lse && tn == 0)
        LSE[(long)bh * Nq + qrow] = lt > 0.0f ? (m[i] + log2(lt)) * CLATTN_LN2 : -INFINITY;
    }
  }
}
