/* linear_causal.cl — lin_causal: the causal walk of each segment chunk by chunk from its prefix state (after linear_common.cl). */
#if CAUSAL
/* Union of local tiles: the slice phase (Qs, Kr, Ps) and the AV phase (At). */
#define U_QS 0
#define U_KR (U_QS + CFS * LDQC)
#define U_PS (U_KR + CPK * LDKR)
#define U_SLICE (U_PS + CFS * LDV)
#define U_AT (CPK * LDQC)
#define U_SIZE (U_SLICE > U_AT ? U_SLICE : U_AT)

/* Segment s of the keys ([s·L, s·L + L), L a multiple of CH) and the queries
 * at those positions, columns [ct·BD, ct·BD + BD), one batch·head. Pin: the
 * prefix states S[bhk][s] from lin_scan (PM their maxima), used when
 * has_prefix; Pw: this work-group's scratch state (F × BDE floats). */
__kernel __attribute__((reqd_work_group_size(NTC, 1, 1))) void
lin_causal(__global const stype *restrict Q, __global const stype *restrict K,
           __global const stype *restrict V, __global const float *restrict PhiQ,
           __global const float *restrict PhiK, __global const float *restrict RMk,
           __global const float *Pin, __global const float *restrict PM, __global float *Pw,
           __global stype *restrict O, const long qsb, const long qsh, const long qss,
           const long qsd, const long ksb, const long ksh, const long kss, const long ksd,
           const long vsb, const long vsh, const long vss, const long vsd, const long osb,
           const long osh, const long oss, const long osd, const int H, const int G, const int Nq,
           const int Nk, const int L, const int nseg, const int has_prefix, const float sqq,
           const float sqk) {
  __local float4 U4[(U_SIZE + 3) / 4];
  __local float4 Vs4[CPK * LDV / 4]; /* (w·v) rows [key][col] */
  __local float Zs[CFS];             /* z slice of P */
  __local float Ws[CPK];             /* w_j */
  __local float *U = (__local float *)U4;
  __local float *Qs = U + U_QS; /* φ(q) slice, transposed [f][row] */
  __local float *Kr = U + U_KR; /* φ(k) slice, rows [key][f] */
  __local float *Ps = U + U_PS; /* P slice [f][col] */
  __local float *At = U;        /* masked scores, transposed [key][row] */
  __local float *Vs = (__local float *)Vs4;
  const int lid = get_local_id(0);
  const int tr = lid / CTC, tc = lid % CTC;
  const int s = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int ncolt = get_num_groups(1);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Pk = PhiK + (long)bhk * Nk * FPS;
  __global const float *Pi = Pin + ((long)bhk * nseg + s) * (long)(F * DE);
  __global float *Pws = Pw + (((long)bh * nseg + s) * ncolt + ct) * (long)(F * BDE);
  (void)Qb;
  (void)Kb;
  (void)Pq;
  (void)Pk;
  (void)RMk;
  (void)PM;

  /* Rows before the first key (Nq > Nk) see nothing: zeros. */
  if (s == 0 && off < 0) {
    const int nz = min(-off, Nq);
    for (int idx = lid; idx < nz * BD; idx += NTC) {
      const int r = idx / BD, col = col0 + idx % BD;
      if (col < D) STORE(Ob, (long)r * oss + (long)col * osd, 0.0f);
    }
  }

  float M = -INFINITY;
#if FAVOR
  if (has_prefix) M = PM[(long)bhk * nseg + s];
#endif
  const int cb = s * (L / CH);
  /* Top-left (off 0) with Nq > Nk: the last segment walks on past the keys
   * (chunks of no key add nothing) so that rows Nk.. see every key. */
  const int nqc = (Nq + off + CH - 1) / CH;
  const int ce = s == nseg - 1 ? max(min(cb + L / CH, (Nk + CH - 1) / CH), nqc)
                               : min(cb + L / CH, (Nk + CH - 1) / CH);
  for (int c = cb; c < ce; c++) {
    const int kc0 = c * CH, qc0 = kc0 - off;
    const bool has_q = qc0 + CH > 0 && qc0 < Nq;
    const bool upd = c + 1 < ce;
    const bool first = c == cb;
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE); /* previous chunk done, Pw written */
    float alpha = 1.0f;
#if FAVOR
    FOR_ITEMS(j, CPK, NTC, lid) {
      Ws[j] = (j < CH && kc0 + j < Nk) ? RMk[(long)bhk * Nk + kc0 + j] : -INFINITY;
    }
    BARRIER;
    float mt = -INFINITY;
    for (int j = 0; j < CH; j++) mt = fmax(mt, Ws[j]);
    const float mn = fmax(M, mt); /* finite: the chunk holds a key */
    alpha = exp(M - mn);          /* 0 when M == -inf */
    M = mn;
    BARRIER;
#endif
    FOR_ITEMS(idx, CPK * (BD / 4), NTC, lid) {
      const int j = idx / (BD / 4), cc = 4 * (idx % (BD / 4));
      const int key = kc0 + j;
      float4 x = (float4)(0.0f);
      if (j < CH && key < Nk) {
        x = ld4(Vb, (long)key * vss, vsd, col0 + cc);
#if FAVOR
        x *= exp(RMk[(long)bhk * Nk + key] - M);
#endif
      }
      *(__local float4 *)(Vs + j * LDV + cc) = x;
    }
    FOR_ITEMS(j, CPK, NTC, lid) {
      float w = (j < CH && kc0 + j < Nk) ? 1.0f : 0.0f;
#if FAVOR
      if (w > 0.0f) w = exp(RMk[(long)bhk * Nk + kc0 + j] - M);
#endif
      Ws[j] = w;
    }

    float sc[CRQ][CRK], acc[CRQ][CRC], den[CRQ];
    UNROLL for (int i = 0; i < CRQ; i++) {
      den[i] = 0.0f;
      UNROLL for (int k = 0; k < CRK; k++) sc[i][k] = 0.0f;
      UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = 0.0f;
    }

    for (int f0 = 0; f0 < F; f0 += CFS) {
      BARRIER; /* the previous slice is consumed (and Vs, Ws staged) */
      if (has_q) {
        FOR_ITEMS(idx, CPR * (CFS / 4), NTC, lid) {
          const int r = idx / (CFS / 4), f = 4 * (idx % (CFS / 4));
          const int row = qc0 + r;
          const bool ok = r < CH && row >= 0 && row < Nq;
          const float4 x =
              FEAT4(ok, Qb, (long)row * qss, qsd, sqq, Pq + (long)row * FPS, f0 + f);
          Qs[(f + 0) * LDQC + r] = x.x;
          Qs[(f + 1) * LDQC + r] = x.y;
          Qs[(f + 2) * LDQC + r] = x.z;
          Qs[(f + 3) * LDQC + r] = x.w;
        }
      }
      FOR_ITEMS(idx, CPK * (CFP / 4), NTC, lid) {
        const int j = idx / (CFP / 4), f = 4 * (idx % (CFP / 4));
        const int key = kc0 + j;
        const bool ok = j < CH && key < Nk && f < CFS;
        const float4 x = FEAT4(ok, Kb, (long)key * kss, ksd, sqk, Pk + (long)key * FPS, f0 + f);
        *(__local float4 *)(Kr + j * LDKR + f) = x;
      }
      /* P slice (times alpha): the prefix on the segment's first chunk. */
      if (first) {
        FOR_ITEMS(idx, CFS * BD, NTC, lid) {
          const int f = idx / BD, cc = idx % BD;
          float p = 0.0f;
          if (has_prefix && f0 + f < F && col0 + cc < D) p = Pi[(f0 + f) * DE + col0 + cc] * alpha;
          Ps[f * LDV + cc] = p;
        }
        FOR_ITEMS(f, CFS, NTC, lid) {
          Zs[f] = (has_prefix && f0 + f < F) ? Pi[(f0 + f) * DE + D] * alpha : 0.0f;
        }
      } else {
        FOR_ITEMS(idx, CFS * BD, NTC, lid) {
          const int f = idx / BD, cc = idx % BD;
          Ps[f * LDV + cc] = f0 + f < F ? Pws[(f0 + f) * BDE + cc] * alpha : 0.0f;
        }
        FOR_ITEMS(f, CFS, NTC, lid) Zs[f] = f0 + f < F ? Pws[(f0 + f) * BDE + BD] * alpha : 0.0f;
      }
      BARRIER;
      if (has_q) {
        KUNROLL
        for (int f = 0; f < CFS; f++) {
          float a[CRQ], kv[CRK], pv[CRC];
          LOADT(a, CRQ, CTR, tr, Qs + f * LDQC);
          UNROLL for (int k = 0; k < CRK; k++) kv[k] = Kr[(k * CTC + tc) * LDKR + f];
          LOADT(pv, CRC, CTC, tc, Ps + f * LDV);
          const float zf = Zs[f];
          UNROLL for (int i = 0; i < CRQ; i++) {
            den[i] = fma(a[i], zf, den[i]);
            UNROLL for (int k = 0; k < CRK; k++) sc[i][k] = fma(a[i], kv[k], sc[i][k]);
            UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = fma(a[i], pv[u], acc[i][u]);
          }
        }
      }
      if (upd) {
        /* P slice += φ(K_c)ᵀ [w·V_c  w] over the chunk's keys. */
        float dp[CRF][CRC], dz[CRF];
        UNROLL for (int i = 0; i < CRF; i++) {
          dz[i] = 0.0f;
          UNROLL for (int u = 0; u < CRC; u++) dp[i][u] = 0.0f;
        }
        KUNROLL
        for (int j = 0; j < CPK; j++) {
          float a[CRF], v[CRC];
          LOADT(a, CRF, CTR, tr, Kr + j * LDKR);
          LOADT(v, CRC, CTC, tc, Vs + j * LDV);
          const float w = Ws[j];
          UNROLL for (int i = 0; i < CRF; i++) {
            dz[i] = fma(a[i], w, dz[i]);
            UNROLL for (int u = 0; u < CRC; u++) dp[i][u] = fma(a[i], v[u], dp[i][u]);
          }
        }
        UNROLL for (int i = 0; i < CRF; i++) {
          const int f = RIDX(CTR, CRF, tr, i);
          if (f < CFS && f0 + f < F) {
            UNROLL for (int u = 0; u < CRC; u++) {
              const int cc = RIDX(CTC, CRC, tc, u);
              Pws[(f0 + f) * BDE + cc] = Ps[f * LDV + cc] + dp[i][u];
            }
            if (tc == 0) Pws[(f0 + f) * BDE + BD] = Zs[f] + dz[i];
          }
        }
      }
    }

    /* (Barriers outside the has_q branches: PoCL 3.1 miscompiles barriers
     * inside uniform conditionals.) */
    BARRIER; /* every slice read: At may overwrite the slice tiles */
    if (has_q) {
      UNROLL for (int i = 0; i < CRQ; i++) {
        const int r = RIDX(CTR, CRQ, tr, i);
        UNROLL for (int k = 0; k < CRK; k++) {
          const int j = k * CTC + tc; /* consecutive keys across work-items: no bank conflicts */
          At[j * LDQC + r] = j <= r ? sc[i][k] : 0.0f;
        }
      }
    }
    BARRIER;
    if (has_q) {
      KUNROLL
      for (int j = 0; j < CPK; j++) {
        float a[CRQ], v[CRC];
        LOADT(a, CRQ, CTR, tr, At + j * LDQC);
        LOADT(v, CRC, CTC, tc, Vs + j * LDV);
        const float w = Ws[j];
        UNROLL for (int i = 0; i < CRQ; i++) {
          den[i] = fma(a[i], w, den[i]);
          UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = fma(a[i], v[u], acc[i][u]);
        }
      }
      UNROLL for (int i = 0; i < CRQ; i++) {
        const int r = RIDX(CTR, CRQ, tr, i), row = qc0 + r;
        if (r < CH && row >= 0 && row < Nq) {
          const float rd = den[i] > 0.0f ? 1.0f / den[i] : 0.0f;
          const long ro = (long)row * oss;
          STORE_ROW(acc[i], CRC, CTC, tc, Ob, ro, osd, col0, rd);
        }
      }
    }
  }
}
#endif
