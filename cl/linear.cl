/* linear.cl — linear attention φ(Q)(φ(K)ᵀ[V 1]): chunk states, a chunk scan, the output pass. */

/*
 * Linear (kernelised) attention replaces exp(qᵀk·scale) by φ(q)ᵀφ(k) and
 * reassociates:  o_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z  with  S = Σ_j φ(k_j) v_jᵀ (F×D)
 * and z = Σ_j φ(k_j) (F). Both are kept as one F×(D+1) state, z being the
 * last column (the state of V extended by a column of ones).
 *
 * Three kernels, all specialised by the -D parameters below:
 *
 *   lin_state  one work-group per (key chunk, column tile, batch·kv-head):
 *              the state of the chunk's keys, S_c = Σ_{j∈c} φ(k_j)[v_j 1]ᵀ,
 *              streamed in sub-tiles of BKS keys through local memory.
 *   lin_scan   one work-item per state element and batch·kv-head, walking
 *              the chunks in order (deterministic, no atomics):
 *              CAUSAL=0: the total Σ_c S_c, written over chunk 0's slot;
 *              CAUSAL=1: the exclusive prefix P_c = Σ_{c'<c} S_c', in place.
 *   lin_out    one work-group per (BQ query rows, column tile, batch·head):
 *              φ(Q) of its rows times the state (total, or for causal the
 *              prefix of the chunk holding the block's first visible key),
 *              plus, when causal, the masked quadratic part over the keys
 *              from that chunk's start to the block's last visible key, in
 *              sub-tiles of BK keys; then o = num / den (0 where den == 0).
 *
 * FAVOR+ causal: lin_state also stores the keys' log-features in KF
 * ([batch·kv-head][chunk][KCHP rows][F]) so that lin_out's in-chunk part
 * reads them instead of recomputing ω·k for every query block that overlaps
 * the keys.
 *
 * FAVOR+ (MAP 2): φ(x)_f = exp(ω_fᵀx − ‖x‖²/2 − c) with ω in Wt (stored
 * transposed, D×F). The log-feature a = Σ_d x_d (ω_fd − x_d/2) is bounded
 * above by ‖ω_f‖²/2. The stabiliser c cancels in num / den as long as it is
 * the same for every key of one sum and every feature of one query:
 *   queries: c = max_f a (per row);
 *   keys:    c = a running max over the keys summed (per chunk in lin_state,
 *            recorded in CM; lin_scan rescales chunk states to a common max
 *            like an online softmax and records the prefix's max in PM;
 *            lin_out rescales the prefix and the intra-chunk keys to the
 *            running max of both). Never +inf; −inf (nothing summed yet) is
 *            handled so that no NaN arises.
 * The 1/√m factor of FAVOR+ cancels as well and is not applied.
 */

#ifndef D
#define D 64 /* head dim */
#endif
#ifndef MAP
#define MAP 0 /* 0 elu+1, 1 relu, 2 FAVOR+ */
#endif
#ifndef F
#define F D /* features */
#endif
#ifndef TF
#define TF 16 /* work-items along features (lin_state) */
#endif
#ifndef TR
#define TR TF /* work-items along query rows (lin_out) */
#endif
#ifndef TC
#define TC 4 /* work-items along value columns (and intra keys in lin_out) */
#endif
#ifndef FP
#define FP ((F + TF - 1) / TF * TF) /* features padded */
#endif
#ifndef BD
#define BD ((D + TC - 1) / TC * TC) /* value columns per work-group */
#endif
#ifndef BQ
#define BQ 32 /* query rows per lin_out work-group */
#endif
#ifndef BK
#define BK 32 /* keys per intra sub-tile of lin_out */
#endif
#ifndef BKS
#define BKS 32 /* keys per sub-tile of lin_state */
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

/* Explicit unrolling of the register-tile loops: on by default (GPUs keep
 * the tiles in registers); CPUs build with -DUNROLL_HINTS=0, which halves
 * PoCL's compile time at the same speed. */
#ifndef UNROLL_HINTS
#define UNROLL_HINTS 1
#endif
#if UNROLL_HINTS
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

/* for (idx = lid; idx < n; idx += nt) with a trip count that is the same for
 * every work-item (a guard inside), so that PoCL vectorises across
 * work-items; n and nt are compile-time constants at every use. */
#define FOR_ITEMS(idx, n, nt, lid)                                                                \
  for (int it_##idx = 0, idx = (lid); it_##idx < ((n) + (nt)-1) / (nt); it_##idx++, idx += (nt))  \
    if (idx < (n))

#define FAVOR (MAP == 2)
#define NTS (TF * TC) /* work-items of lin_state */
#define NTO (TR * TC) /* work-items of lin_out */
#define RF (FP / TF)
#define RCOL (BD / TC)
#define RQ (BQ / TR)
#define RK (BK / TC)
#define DE (D + 1)  /* state columns: D of V, then the ones column (z) */
#define LDF (FP + 1) /* row stride of local feature tiles (odd: spreads banks) */
#define LDA (BK + 1)
#define LDK (BK + 1) /* row stride of the transposed key-feature tile */
#define BX (BQ > BK ? BQ : BK)
/* Rows of one chunk in KF: the chunk length CH rounded up to sub-tiles of BKS. */
#define KCHP (((CH) + BKS - 1) / BKS * BKS)

#if (FP % TF) || (BD % TC) || (BQ % TR) || (BK % TC) || FP < F || BKS < 1
#error "linear: FP % TF, BD % TC, BQ % TR and BK % TC must be 0, FP >= F, BKS >= 1"
#endif
#if !FAVOR && F != D
#error "linear: elu+1 and relu have F == D features"
#endif

#if !FAVOR
inline float phi1(float x) {
#if MAP == 0
  return x > 0.0f ? x + 1.0f : exp(x); /* elu(x) + 1, exact for x <= 0 */
#else
  return fmax(x, 0.0f);
#endif
}
#endif

/*
 * Features of rows [row0, row0 + NR) of a tensor (rows >= lim are invalid),
 * x = row · sqs, into Phi (element (r, f) at r·prs + f·pfs):
 *   elu+1 / relu: φ(x), 0 for invalid rows and padded features;
 *   FAVOR+:       the log-feature a (not yet exponentiated), -inf for invalid
 *                 rows and padded features. Each work-item reads its row of x
 *                 from global memory (the items of a row share it: cached),
 *                 which keeps local memory to the feature tiles.
 * Ends with a barrier; call it uniformly.
 */
inline void feature_tile(__local float *Phi, int prs, int pfs, __global const stype *base, long ss,
                         long sd, int row0, int NR, int lim, float sqs, __global const float *Wt,
                         int lid, int nt) {
#if FAVOR
  FOR_ITEMS(idx, NR * FP, nt, lid) {
    const int r = idx / FP, f = idx % FP;
    float a = -INFINITY;
    if (f < F && row0 + r < lim) {
      const long ro = (long)(row0 + r) * ss;
      a = 0.0f;
      for (int c = 0; c < D; c++) {
        const float x = LOAD(base, ro + (long)c * sd) * sqs;
        a = fma(x, fma(-0.5f, x, Wt[c * F + f]), a);
      }
    }
    Phi[r * prs + f * pfs] = a;
  }
#else
  (void)Wt;
  FOR_ITEMS(idx, NR * FP, nt, lid) {
    const int r = idx / FP, f = idx % FP;
    float p = 0.0f;
    if (f < D && row0 + r < lim) p = phi1(LOAD(base, (long)(row0 + r) * ss + (long)f * sd) * sqs);
    Phi[r * prs + f * pfs] = p;
  }
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
}

#if FAVOR
/* rmax[r] = max_f Phi(r, f) for r < NR. Ends with a barrier. */
inline void row_max(__local const float *Phi, int prs, int pfs, __local float *rmax, int NR,
                    int lid, int nt) {
  FOR_ITEMS(r, NR, nt, lid) {
    float m = -INFINITY;
    for (int f = 0; f < F; f++) m = fmax(m, Phi[r * prs + f * pfs]);
    rmax[r] = m;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}

/* Phi(r, f) = exp(Phi(r, f) − sub) (sub = rmax[r] when per_row, else the
 * scalar s); a -inf reference leaves exp(-inf) = 0. Ends with a barrier. */
inline void exp_tile(__local float *Phi, int prs, int pfs, __local const float *rmax, int NR,
                     int per_row, float s, int lid, int nt) {
  FOR_ITEMS(idx, NR * FP, nt, lid) {
    const int r = idx / FP, f = idx % FP;
    float m = per_row ? rmax[r] : s;
    if (m == -INFINITY) m = 0.0f;
    Phi[r * prs + f * pfs] = exp(Phi[r * prs + f * pfs] - m);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}
#endif

/* ---------------------------------------------------------------------- */

__kernel __attribute__((reqd_work_group_size(NTS, 1, 1))) void
lin_state(__global const stype *restrict K, __global const stype *restrict V,
          __global const float *restrict Wt, __global float *restrict S,
          __global float *restrict CM, __global float *restrict KF, const long ksb,
          const long ksh, const long kss,
          const long ksd, const long vsb, const long vsh, const long vss, const long vsd,
          const int Hk, const int Nk, const int nch, const int CH, const float sqs) {
  __local float Phi[BKS * LDF];
  __local float Vs[BKS * BD];
#if FAVOR
  __local float rmax[BKS];
#endif
  const int lid = get_local_id(0);
  const int tf = lid / TC, tc = lid % TC;
  const int c = get_group_id(0), ct = get_group_id(1), bhk = get_group_id(2);
  const int b = bhk / Hk, hk = bhk % Hk;
  const int col0 = ct * BD;
  const int k0 = c * CH;
  const int klim = min(k0 + CH, Nk);
  const int ntile = (klim - k0 + BKS - 1) / BKS;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;

  float acc[RF][RCOL], z[RF];
UNROLL
  for (int i = 0; i < RF; i++) {
    z[i] = 0.0f;
UNROLL
    for (int j = 0; j < RCOL; j++) acc[i][j] = 0.0f;
  }
  float mrun = -INFINITY;

  for (int t = 0; t < ntile; t++) {
    const int kk = k0 + t * BKS;
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous sub-tile is consumed */
    FOR_ITEMS(idx, BKS * BD, NTS, lid) {
      const int j = idx / BD, col = col0 + idx % BD;
      Vs[idx] = (kk + j < klim && col < D) ? LOAD(Vb, (long)(kk + j) * vss + (long)col * vsd)
                                           : 0.0f;
    }
    feature_tile(Phi, LDF, 1, Kb, kss, ksd, kk, BKS, klim, sqs, Wt, lid, NTS);
#if FAVOR && CAUSAL
    /* Keep the keys' log-features for the in-chunk part of lin_out. */
    if (ct == 0) {
      /* Chunk c's rows are padded to KCHP (whole sub-tiles): the store needs
       * no key bound (rows past the chunk get -inf, never read). The barrier
       * after it is not needed by the algorithm; PoCL 3.1 was seen to drop
       * or misplace these stores without it. */
      __global float *KFc = KF + ((long)bhk * nch + c) * (long)(KCHP * F) + (long)(kk - k0) * F;
      FOR_ITEMS(idx, BKS * F, NTS, lid) KFc[idx] = Phi[(idx / F) * LDF + idx % F];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
#if FAVOR
    row_max(Phi, LDF, 1, rmax, BKS, lid, NTS);
    float mt = -INFINITY;
    for (int r = 0; r < BKS; r++) mt = fmax(mt, rmax[r]);
    const float mnew = fmax(mrun, mt);
    if (mnew > mrun) {
      const float alpha = exp(mrun - mnew); /* 0 when mrun == -inf */
UNROLL
      for (int i = 0; i < RF; i++) {
        z[i] *= alpha;
UNROLL
        for (int j = 0; j < RCOL; j++) acc[i][j] *= alpha;
      }
      mrun = mnew;
    }
    exp_tile(Phi, LDF, 1, rmax, BKS, 0, mrun, lid, NTS);
#endif
    for (int j = 0; j < BKS; j++) {
      float ph[RF], vv[RCOL];
UNROLL
      for (int i = 0; i < RF; i++) ph[i] = Phi[j * LDF + tf + i * TF];
UNROLL
      for (int u = 0; u < RCOL; u++) vv[u] = Vs[j * BD + tc + u * TC];
UNROLL
      for (int i = 0; i < RF; i++) {
        z[i] += ph[i];
UNROLL
        for (int u = 0; u < RCOL; u++) acc[i][u] = fma(ph[i], vv[u], acc[i][u]);
      }
    }
  }

  __global float *Sc = S + ((long)bhk * nch + c) * (long)(F * DE);
UNROLL
  for (int i = 0; i < RF; i++) {
    const int f = tf + i * TF;
    if (f < F) {
UNROLL
      for (int u = 0; u < RCOL; u++) {
        const int col = col0 + tc + u * TC;
        if (col < D) Sc[f * DE + col] = acc[i][u];
      }
      if (ct == 0 && tc == 0) Sc[f * DE + D] = z[i];
    }
  }
#if FAVOR
  if (ct == 0 && lid == 0) CM[(long)bhk * nch + c] = mrun;
#else
  (void)CM;
#endif
}

/* ---------------------------------------------------------------------- */

__kernel void lin_scan(__global float *restrict S, __global const float *restrict CM,
                       __global float *restrict PM, const int nch) {
  const int e = get_global_id(0);
  const int bhk = get_global_id(1);
  if (e >= F * DE) return;
  const long base = (long)bhk * nch * (F * DE) + e;
  float run = 0.0f;
#if FAVOR
  float m = -INFINITY;
#else
  (void)CM;
  (void)PM;
#endif
  for (int c = 0; c < nch; c++) {
    const long idx = base + (long)c * (F * DE);
    const float s = S[idx];
#if CAUSAL
    S[idx] = run;
#if FAVOR
    if (e == 0) PM[(long)bhk * nch + c] = m;
#endif
#endif
#if FAVOR
    const float mc = CM[(long)bhk * nch + c];
    const float mn = fmax(m, mc);
    if (mn != -INFINITY) {
      run = run * exp(m - mn) + s * exp(mc - mn);
      m = mn;
    }
#else
    run += s;
#endif
  }
#if !CAUSAL
  S[base] = run;
#if FAVOR
  if (e == 0) PM[(long)bhk * nch] = m;
#endif
#endif
}

/* ---------------------------------------------------------------------- */

__kernel __attribute__((reqd_work_group_size(NTO, 1, 1))) void
lin_out(__global const stype *restrict Q, __global const stype *restrict K,
        __global const stype *restrict V, __global stype *restrict O,
        __global const float *restrict Wt, __global const float *restrict S,
        __global const float *restrict PM, __global const float *restrict KF, const long qsb,
        const long qsh, const long qss,
        const long qsd, const long ksb, const long ksh, const long kss, const long ksd,
        const long vsb, const long vsh, const long vss, const long vsd, const long osb,
        const long osh, const long oss, const long osd, const int H, const int G, const int Nq,
        const int Nk, const int nch, const int CH, const float sqq, const float sqk) {
  __local float PhiQ[BQ * LDF];
#if FAVOR
  __local float rmax[BX];
#endif
#if CAUSAL
  __local float PhiK[FP * LDK]; /* transposed: (key, f) at f·LDK + key */
  __local float A[BQ * LDA];
  __local float Vs[BK * BD];
#endif
  const int lid = get_local_id(0);
  const int tr = lid / TC, tc = lid % TC;
  const int qb = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int q0 = qb * BQ, col0 = ct * BD;

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  feature_tile(PhiQ, LDF, 1, Qb, qss, qsd, q0, BQ, Nq, sqq, Wt, lid, NTO);
#if FAVOR
  row_max(PhiQ, LDF, 1, rmax, BQ, lid, NTO);
  exp_tile(PhiQ, LDF, 1, rmax, BQ, 1, 0.0f, lid, NTO);
#endif

  /* State part: the total (non-causal) or the prefix of chunk c0. */
  int c0 = 0;
#if CAUSAL
  const int off = Nk - Nq; /* bottom-right alignment: row i sees keys j <= i + off */
  const int e0 = q0 + off;
  c0 = e0 <= 0 ? 0 : e0 / CH;
#endif
  __global const float *Sc = S + ((long)bhk * nch + c0) * (long)(F * DE);
  float acc[RQ][RCOL], den[RQ];
UNROLL
  for (int i = 0; i < RQ; i++) {
    den[i] = 0.0f;
UNROLL
    for (int u = 0; u < RCOL; u++) acc[i][u] = 0.0f;
  }
  for (int f = 0; f < F; f++) {
    float ph[RQ], sv[RCOL];
UNROLL
    for (int i = 0; i < RQ; i++) ph[i] = PhiQ[(tr + i * TR) * LDF + f];
UNROLL
    for (int u = 0; u < RCOL; u++) {
      const int col = col0 + tc + u * TC;
      sv[u] = col < D ? Sc[f * DE + col] : 0.0f;
    }
    const float zf = Sc[f * DE + D];
UNROLL
    for (int i = 0; i < RQ; i++) {
      den[i] = fma(ph[i], zf, den[i]);
UNROLL
      for (int u = 0; u < RCOL; u++) acc[i][u] = fma(ph[i], sv[u], acc[i][u]);
    }
  }
#if !FAVOR
  (void)PM;
#endif

#if CAUSAL
  /* Intra part: keys [c0·CH, kend], masked per row. */
#if FAVOR
  float ref = PM[(long)bhk * nch + c0];
#endif
  const int kstart = c0 * CH;
  const int kend = min(q0 + BQ - 1 + off, Nk - 1);
  const int nint = kend >= kstart ? kend - kstart + 1 : 0;
  const int ntile = (nint + BK - 1) / BK;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  for (int t = 0; t < ntile; t++) {
    const int kk = kstart + t * BK;
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous sub-tile is consumed */
    FOR_ITEMS(idx, BK * BD, NTO, lid) {
      const int j = idx / BD, col = col0 + idx % BD;
      Vs[idx] = (kk + j <= kend && col < D) ? LOAD(Vb, (long)(kk + j) * vss + (long)col * vsd)
                                            : 0.0f;
    }
#if FAVOR
    /* The keys' log-features, as lin_state computed them (KF). */
    FOR_ITEMS(idx, BK * FP, NTO, lid) {
      const int j = idx / FP, f = idx % FP, key = kk + j;
      float a = -INFINITY;
      if (f < F && key <= kend) {
        const int c = key / CH;
        a = KF[(((long)bhk * nch + c) * KCHP + (key - c * CH)) * F + f];
      }
      PhiK[f * LDK + j] = a;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    row_max(PhiK, 1, LDK, rmax, BK, lid, NTO);
    float mt = -INFINITY;
    for (int r = 0; r < BK; r++) mt = fmax(mt, rmax[r]);
    const float mnew = fmax(ref, mt);
    if (mnew > ref) {
      const float alpha = exp(ref - mnew); /* 0 when ref == -inf */
UNROLL
      for (int i = 0; i < RQ; i++) {
        den[i] *= alpha;
UNROLL
        for (int u = 0; u < RCOL; u++) acc[i][u] *= alpha;
      }
      ref = mnew;
    }
    exp_tile(PhiK, 1, LDK, rmax, BK, 0, ref, lid, NTO);
#else
    feature_tile(PhiK, 1, LDK, Kb, kss, ksd, kk, BK, kend + 1, sqk, Wt, lid, NTO);
#endif
#if FAVOR
    (void)Kb;
#endif
    /* A = φ(Q) φ(K)ᵀ on this sub-tile, causally masked. */
    {
      float sc[RQ][RK];
UNROLL
      for (int i = 0; i < RQ; i++)
UNROLL
        for (int u = 0; u < RK; u++) sc[i][u] = 0.0f;
      for (int f = 0; f < F; f++) {
        float a[RQ], bb[RK];
UNROLL
        for (int i = 0; i < RQ; i++) a[i] = PhiQ[(tr + i * TR) * LDF + f];
UNROLL
        for (int u = 0; u < RK; u++) bb[u] = PhiK[f * LDK + tc + u * TC];
UNROLL
        for (int i = 0; i < RQ; i++)
UNROLL
          for (int u = 0; u < RK; u++) sc[i][u] = fma(a[i], bb[u], sc[i][u]);
      }
UNROLL
      for (int i = 0; i < RQ; i++) {
        const int r = tr + i * TR;
UNROLL
        for (int u = 0; u < RK; u++) {
          const int key = tc + u * TC;
          A[r * LDA + key] = (kk + key > q0 + r + off) ? 0.0f : sc[i][u];
        }
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = 0; j < BK; j++) {
      float a[RQ], vv[RCOL];
UNROLL
      for (int i = 0; i < RQ; i++) a[i] = A[(tr + i * TR) * LDA + j];
UNROLL
      for (int u = 0; u < RCOL; u++) vv[u] = Vs[j * BD + tc + u * TC];
UNROLL
      for (int i = 0; i < RQ; i++) {
        den[i] += a[i];
UNROLL
        for (int u = 0; u < RCOL; u++) acc[i][u] = fma(a[i], vv[u], acc[i][u]);
      }
    }
  }
#else
  (void)K;
  (void)V;
  (void)ksb;
  (void)ksh;
  (void)kss;
  (void)ksd;
  (void)vsb;
  (void)vsh;
  (void)vss;
  (void)vsd;
  (void)CH;
  (void)sqk;
#endif

  __global stype *Ob = O + (long)b * osb + (long)h * osh;
UNROLL
  for (int i = 0; i < RQ; i++) {
    const int row = q0 + tr + i * TR;
    if (row < Nq) {
      /* |acc| <= den·max|v| since every weight is >= 0: the quotient is
       * finite; den == 0 (no key has weight) gives a zero row. */
      const float dn = den[i] > 0.0f ? den[i] : 1.0f;
UNROLL
      for (int u = 0; u < RCOL; u++) {
        const int col = col0 + tc + u * TC;
        if (col < D) STORE(Ob, (long)row * oss + (long)col * osd, acc[i][u] / dn);
      }
    }
  }
}
