/* linear_apply.cl — lin_apply: non-causal output φ(Q)·[S z], normalised, on FMA units or tensor cores (after linear_common.cl). */
/* ---------------------------------------------------------------------- */

#if !CAUSAL && !TC
/* o = φ(q)ᵀS / φ(q)ᵀz for BD columns of `bpw` consecutive blocks of BQ rows,
 * S the total (split 0). The work-group walks (block, feature slice)
 * iterations as one software pipeline: the next iteration's φ(Q) slice (and
 * S slice unless S is resident, SRES) is loaded into registers while the
 * current one is multiplied; den = φ(q)ᵀz is summed while the slices are
 * staged (z of every feature in local memory; the partial sums in dred, one
 * slot per staged position, reduced per row when the block is complete). */
#define NSLA CDIV(F, AFS)
#define FZ (NSLA * AFS)
#ifndef SRES
#define SRES 0 /* the whole S (FZ × BD) stays in local memory */
#endif
#define NQL CDIV(BQ * (AFS / 4), NTA) /* φ(q) float4s per work-item and iteration */
#define NSS CDIV(AFS * BD, NTA)       /* S elements per work-item and iteration (!SRES) */

__kernel __attribute__((reqd_work_group_size(NTA, 1, 1))) void
lin_apply(__global const stype *restrict Q, __global const float *restrict PhiQ,
          __global const float *restrict S, __global stype *restrict O, const long qsb,
          const long qsh, const long qss, const long qsd, const long osb, const long osh,
          const long oss, const long osd, const int H, const int G, const int Nq,
          const int nsplit, const float sqq, const int bpw) {
  __local float4 Qs4[AFS * LDQA / 4]; /* φ(q) slice transposed [f][row] */
#if SRES
  __local float4 Ss4[FZ * LDV / 4]; /* all of S [f][col] */
#else
  __local float4 Ss4[AFS * LDV / 4]; /* S slice [f][col] */
#endif
  __local float4 Z4[FZ / 4];                 /* z, 0 past F */
  __local float dred[BQ * (AFS / 4)];        /* den partials of the block */
  __local float *Qs = (__local float *)Qs4;
  __local float *Ss = (__local float *)Ss4;
  __local float *Z = (__local float *)Z4;
  const int lid = get_local_id(0);
  const int tr = lid / ATC, tc = lid % ATC;
  const int g = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int nqb = (Nq + BQ - 1) / BQ;
#if ILV
  const int ng = get_num_groups(0), nit = (g < nqb ? (nqb - g + ng - 1) / ng : 0) * NSLA;
#define QBLK(i) (g + (i)*ng) /* the work-group's i-th row block */
  (void)bpw;
#else
  const int qb0 = g * bpw, nit = min(bpw, nqb - qb0) * NSLA;
#define QBLK(i) (qb0 + (i))
#endif
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Sb = S + (long)bhk * nsplit * (F * DE);
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  (void)Qb;
  (void)Pq;

  FOR_ITEMS(f, FZ, NTA, lid) Z[f] = f < F ? Sb[f * DE + D] : 0.0f;
#if SRES
  FOR_ITEMS(idx, FZ * BD, NTA, lid) {
    const int f = idx / BD, c = idx % BD;
    Ss[f * LDV + c] = (f < F && col0 + c < D) ? Sb[f * DE + col0 + c] : 0.0f;
  }
#endif

  float acc[ARQ][ARC];
  float4 qr[NQL];
#if !SRES
  float sr[NSS];
#endif
  UNROLL for (int i = 0; i < ARQ; i++) UNROLL for (int u = 0; u < ARC; u++) acc[i][u] = 0.0f;

/* Global loads of iteration `it` into the registers. */
#define APPLY_FETCH(it)                                                                           \
  do {                                                                                            \
    const int q0_ = QBLK((it) / NSLA) * BQ, f0_ = ((it) % NSLA) * AFS;                          \
    UNROLL for (int u = 0; u < NQL; u++) {                                                        \
      const int idx = lid + u * NTA, r = idx / (AFS / 4), f = f0_ + 4 * (idx % (AFS / 4));        \
      const int row = q0_ + r;                                                                    \
      qr[u] = (float4)(0.0f);                                                                     \
      APPLY_FETCH_Q                                                                               \
    }                                                                                             \
    APPLY_FETCH_S                                                                                 \
  } while (0)
#if FAVOR
#define APPLY_FETCH_Q                                                                             \
  if (idx < BQ * (AFS / 4) && row < Nq && f < FPS)                                                \
    qr[u] = *(__global const float4 *)(Pq + (long)row * FPS + f);
#else
#define APPLY_FETCH_Q                                                                             \
  if (idx < BQ * (AFS / 4) && row < Nq && f < F) qr[u] = ld4(Qb, (long)row * qss, qsd, f);
#endif
#if SRES
#define APPLY_FETCH_S
#else
#define APPLY_FETCH_S                                                                             \
  UNROLL for (int u = 0; u < NSS; u++) {                                                          \
    const int idx = lid + u * NTA, f = f0_ + idx / BD, c = col0 + idx % BD;                       \
    sr[u] = (idx < AFS * BD && f < F && c < D) ? Sb[f * DE + c] : 0.0f;                           \
  }
#endif

  if (nit > 0) APPLY_FETCH(0);
  for (int it = 0; it < nit; it++) {
    const int sl = it % NSLA, q0 = QBLK(it / NSLA) * BQ, f0 = sl * AFS;
    BARRIER; /* the previous slice is consumed (first time: Z, S staged) */
    UNROLL for (int u = 0; u < NQL; u++) {
      const int idx = lid + u * NTA, r = idx / (AFS / 4), f = 4 * (idx % (AFS / 4));
      if (idx < BQ * (AFS / 4)) {
        float4 x = qr[u];
#if !FAVOR
        if (q0 + r < Nq && f0 + f < F) x = phi4(x * sqq);
#endif
        Qs[(f + 0) * LDQA + r] = x.x;
        Qs[(f + 1) * LDQA + r] = x.y;
        Qs[(f + 2) * LDQA + r] = x.z;
        Qs[(f + 3) * LDQA + r] = x.w;
        /* den partial of this staged position (its own slot until the block ends) */
        dred[idx] = (sl == 0 ? 0.0f : dred[idx]) + dot(x, Z4[(f0 + f) / 4]);
      }
    }
#if !SRES
    UNROLL for (int u = 0; u < NSS; u++) {
      const int idx = lid + u * NTA;
      if (idx < AFS * BD) Ss[(idx / BD) * LDV + idx % BD] = sr[u];
    }
#endif
    BARRIER;
    if (it + 1 < nit) APPLY_FETCH(it + 1);
    __local const float *Sc = Ss + (SRES ? f0 : 0) * LDV;
    KUNROLL
    for (int f = 0; f < AFS; f++) {
      float a[ARQ], sv[ARC];
      LOADT(a, ARQ, ATR, tr, Qs + f * LDQA);
      LOADT(sv, ARC, ATC, tc, Sc + f * LDV);
      UNROLL for (int i = 0; i < ARQ; i++) UNROLL for (int u = 0; u < ARC; u++)
          acc[i][u] = fma(a[i], sv[u], acc[i][u]);
    }
    if (sl == NSLA - 1) {
      /* The block is complete: o = acc / den, then the next block. */
      UNROLL for (int i = 0; i < ARQ; i++) {
        const int r = RIDX(ATR, ARQ, tr, i), row = q0 + r;
        float den = 0.0f;
        for (int u = 0; u < AFS / 4; u++) den += dred[r * (AFS / 4) + u];
        if (row < Nq) {
          /* |acc| <= den·max|v| since every weight is >= 0: the quotient is
           * finite; den == 0 (no key has weight) gives a zero row. */
          const float rd = den > 0.0f ? 1.0f / den : 0.0f;
          const long ro = (long)row * oss;
          STORE_ROW(acc[i], ARC, ATC, tc, Ob, ro, osd, col0, rd);
        }
        UNROLL for (int u = 0; u < ARC; u++) acc[i][u] = 0.0f;
      }
    }
  }
}
#endif

/* ---------------------------------------------------------------------- */

#if !CAUSAL && TC
/* The same on tensor cores: o = φ(q)ᵀS / φ(q)ᵀz for BD columns of `bpw`
 * consecutive blocks of TBQ rows. Sᵀ (S transposed, [column][feature]) and z
 * stay in local memory; warp wq takes TAM m-tiles of 16 rows of a block and
 * reads its φ(q) A fragments straight from global memory: the feature order
 * inside each 16-feature chunk is permuted (a product does not depend on
 * it) so that lane (g, t) holds features 4t..4t+3 of rows g and g + 8, one
 * float4 each, steps 0 and 1 of the chunk taking (4t, 4t+1) and (4t+2,
 * 4t+3); the B fragments of Sᵀ follow the same order (one float4 per n-tile
 * and chunk, rows = 16 (mod 32) floats apart: no bank conflicts). The
 * columns are permuted as well, logical column c of n-tile j being
 * 16(j/2) + 4(c/2) + 2(j%2) + c%2, so that each lane's accumulators are 4
 * consecutive columns of a row: float4 stores. den = φ(q)ᵀz in f32 FMAs
 * beside the products, summed over the 4 lanes of a row by shuffles. */
#define TBQ (TAW * TAM * 16)
#define TFZ (CDIV(F, 16) * 16)
#define LDST (TFZ + (TFZ % 32 ? 0 : 16))
#ifndef SPRE
#define SPRE 0 /* Sᵀ kept split (TF32 hi and lo parts, twice the local memory) */
#endif
#define TNT (TAW * 32)

__kernel __attribute__((reqd_work_group_size(TNT, 1, 1))) void
lin_apply(__global const stype *restrict Q, __global const float *restrict PhiQ,
          __global const float *restrict S, __global stype *restrict O, const long qsb,
          const long qsh, const long qss, const long qsd, const long osb, const long osh,
          const long oss, const long osd, const int H, const int G, const int Nq,
          const int nsplit, const float sqq, const int bpw) {
  __local float4 St4[(SPRE ? 2 : 1) * BD * LDST / 4]; /* Sᵀ [column][feature], 0 past F and D */
  __local float4 Z4[TFZ / 4];        /* z, 0 past F */
  __local float *St = (__local float *)St4;
  __local float *Z = (__local float *)Z4;
  const int lid = get_local_id(0);
  const int wq = lid >> 5, gq = (lid & 31) >> 2, tq = lid & 3;
  const int g = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int nqb = (Nq + TBQ - 1) / TBQ;
#if ILV
  const int ng = get_num_groups(0), nblk = g < nqb ? (nqb - g + ng - 1) / ng : 0;
#define QBLK(i) (g + (i)*ng)
  (void)bpw;
#else
  const int qb0 = g * bpw, nblk = min(bpw, nqb - qb0);
#define QBLK(i) (qb0 + (i))
#endif
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Sb = S + (long)bhk * nsplit * (F * DE);
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  (void)Qb;
  (void)Pq;

  FOR_ITEMS(f, TFZ, TNT, lid) Z[f] = f < F ? Sb[f * DE + D] : 0.0f;
  FOR_ITEMS(idx, TFZ * BD, TNT, lid) {
    const int f = idx / BD, c = idx % BD;
    const float x = (f < F && col0 + c < D) ? Sb[f * DE + col0 + c] : 0.0f;
#if SPRE
    uint hi, lo;
    TF32_SPLIT(x, hi, lo);
    St[c * LDST + f] = as_float(hi);
    St[(BD + c) * LDST + f] = as_float(lo);
#else
    St[c * LDST + f] = x;
#endif
  }
  BARRIER;
  /* Sᵀ row of this lane's B column in n-tile j: 16(j/2) + 4(g/2) + 2(j%2) + g%2. */
  __local const float *Sg = St + (4 * (gq >> 1) + (gq & 1)) * LDST + 4 * tq;

  /* The raw inputs of a block (rows g and g + 8 of each m-tile, features
   * 16i + 4t..+3) are loaded one block ahead (registers, APF: F <= 64) and
   * turned into features when used, so the loads overlap the products. */
#define NCH (TFZ / 16)
#define APF (TFZ <= 64)
#if FAVOR
#define RAW4(valid, ro, phr, f) ((valid) && (f) < FPS ? *(__global const float4 *)((phr) + (f)) : (float4)(0.0f))
#define USE4(valid, x, f) (x)
#else
#define RAW4(valid, ro, phr, f) ((valid) && (f) < F ? ld4(Qb, (ro), qsd, (f)) : (float4)(0.0f))
#define USE4(valid, x, f) ((valid) && (f) < F ? phi4((x)*sqq) : (float4)(0.0f))
#endif
#define FETCHQ(x, blk_)                                                                            \
  do {                                                                                            \
    const int rr_ = QBLK(blk_) * TBQ + wq * (TAM * 16) + gq;                                      \
    UNROLL for (int m = 0; m < TAM; m++) UNROLL for (int i = 0; i < NCH; i++) {                   \
      const int ra_ = rr_ + m * 16, f_ = 16 * i + 4 * tq;                                         \
      x[m][i][0] = RAW4(ra_ < Nq, (long)ra_ * qss, Pq + (long)ra_ * FPS, f_);                     \
      x[m][i][1] = RAW4(ra_ + 8 < Nq, (long)(ra_ + 8) * qss, Pq + (long)(ra_ + 8) * FPS, f_);     \
    }                                                                                             \
  } while (0)
#if APF
  float4 xn[TAM][NCH][2];
  if (nblk > 0) FETCHQ(xn, 0);
#endif

  for (int blk = 0; blk < nblk; blk++) {
    const int r0 = QBLK(blk) * TBQ + wq * (TAM * 16) + gq;
    float acc[TAM][BD / 8][4];
    float den[TAM][2];
    UNROLL for (int m = 0; m < TAM; m++) {
      den[m][0] = den[m][1] = 0.0f;
      UNROLL for (int j = 0; j < BD / 8; j++) UNROLL for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;
    }
#if APF
    float4 xc[TAM][NCH][2];
    UNROLL for (int m = 0; m < TAM; m++) UNROLL for (int i = 0; i < NCH; i++) {
      xc[m][i][0] = xn[m][i][0];
      xc[m][i][1] = xn[m][i][1];
    }
    if (blk + 1 < nblk) FETCHQ(xn, blk + 1);
#endif
    UNROLL for (int i = 0; i < NCH; i++) {
      const int f = 16 * i + 4 * tq;
      const float4 z4 = Z4[4 * i + tq];
      /* A fragments of both steps of the chunk, per m-tile: [m][step]. */
      uint ah[TAM][2][4], al[TAM][2][4];
      UNROLL for (int m = 0; m < TAM; m++) {
        const int ra = r0 + m * 16, rb = ra + 8;
#if APF
        const float4 xa = USE4(ra < Nq, xc[m][i][0], f), xb = USE4(rb < Nq, xc[m][i][1], f);
#else
        const float4 xa = USE4(ra < Nq, RAW4(ra < Nq, (long)ra * qss, Pq + (long)ra * FPS, f), f);
        const float4 xb = USE4(rb < Nq, RAW4(rb < Nq, (long)rb * qss, Pq + (long)rb * FPS, f), f);
#endif
        den[m][0] += dot(xa, z4);
        den[m][1] += dot(xb, z4);
        TF32_SPLIT(xa.s0, ah[m][0][0], al[m][0][0]);
        TF32_SPLIT(xb.s0, ah[m][0][1], al[m][0][1]);
        TF32_SPLIT(xa.s1, ah[m][0][2], al[m][0][2]);
        TF32_SPLIT(xb.s1, ah[m][0][3], al[m][0][3]);
        TF32_SPLIT(xa.s2, ah[m][1][0], al[m][1][0]);
        TF32_SPLIT(xb.s2, ah[m][1][1], al[m][1][1]);
        TF32_SPLIT(xa.s3, ah[m][1][2], al[m][1][2]);
        TF32_SPLIT(xb.s3, ah[m][1][3], al[m][1][3]);
      }
      UNROLL for (int j = 0; j < BD / 8; j++) {
        const float4 s4 =
            *(__local const float4 *)(Sg + (16 * (j >> 1) + 2 * (j & 1)) * LDST + 16 * i);
#if SPRE
        const uint4 h4 = as_uint4(s4);
        const uint4 l4 = *(__local const uint4 *)(Sg + (BD + 16 * (j >> 1) + 2 * (j & 1)) * LDST + 16 * i);
        const uint bh0[2] = {h4.x, h4.y}, bl0[2] = {l4.x, l4.y};
        const uint bh1[2] = {h4.z, h4.w}, bl1[2] = {l4.z, l4.w};
#else
        uint bh0[2], bl0[2], bh1[2], bl1[2];
        TF32_SPLIT(s4.s0, bh0[0], bl0[0]);
        TF32_SPLIT(s4.s1, bh0[1], bl0[1]);
        TF32_SPLIT(s4.s2, bh1[0], bl1[0]);
        TF32_SPLIT(s4.s3, bh1[1], bl1[1]);
#endif
        UNROLL for (int m = 0; m < TAM; m++) {
          MMA3(acc[m][j], ah[m][0], al[m][0], bh0, bl0);
          MMA3(acc[m][j], ah[m][1], al[m][1], bh1, bl1);
        }
      }
    }
    UNROLL for (int m = 0; m < TAM; m++) {
      float da = den[m][0], db = den[m][1];
      da += shfl_xor(da, 1);
      da += shfl_xor(da, 2);
      db += shfl_xor(db, 1);
      db += shfl_xor(db, 2);
      /* Weights are >= 0: den == 0 (no key has weight) gives a zero row. */
      const float rda = da > 0.0f ? 1.0f / da : 0.0f, rdb = db > 0.0f ? 1.0f / db : 0.0f;
      const int ra = r0 + m * 16, rb = ra + 8;
      UNROLL for (int p = 0; p < BD / 16; p++) {
        const int c = col0 + 16 * p + 4 * tq;
        if (ra < Nq)
          st4(Ob, (long)ra * oss, osd, c,
              (float4)(acc[m][2 * p][0], acc[m][2 * p][1], acc[m][2 * p + 1][0],
                       acc[m][2 * p + 1][1]) *
                  rda);
        if (rb < Nq)
          st4(Ob, (long)rb * oss, osd, c,
              (float4)(acc[m][2 * p][2], acc[m][2 * p][3], acc[m][2 * p + 1][2],
                       acc[m][2 * p + 1][3]) *
                  rdb);
      }
    }
  }
}
#endif
