/* flash_bwd_tc.cl — NVIDIA sm_80+ attention backward on tensor cores: the dK/dV and dQ passes of flash_bwd.cl with mma.sync m16n8k16 (f16/bf16 in, f32 accumulation). */

/*
 * Compiled after flash_bwd.cl (with -DTC=1: its argument lists, ragged
 * bookkeeping and the D = rowsum(dO∘O) kernel flash_bwd_pre) and nv_mma.cl
 * (mma.sync, ldmatrix, cp.async). The algorithm and the order of every sum
 * are those of flash_bwd.cl; no atomics, bitwise reproducible:
 *
 *   flash_bwd_dkdv  a work-group of KW warps owns 16·KW keys of one (batch,
 *                   KV head); warp w owns keys 16w .. 16w + 15, the M side of
 *                   its MMAs. K and V of those keys stay in local memory (A
 *                   fragments by ldmatrix). Tiles of QM query rows of each
 *                   query head of the group (heads ascending, tiles
 *                   ascending) stream through local memory: Q, dO and the
 *                   rows' LSE·log2 e and D (cp.async, double-buffered when
 *                   KST = 2). Per tile, with keys as rows:
 *                     Sᵀ = K·Qᵀ,  dPᵀ = V·dOᵀ          (B: Q / dO rows, ldmatrix)
 *                     Pᵀ = exp2(Sᵀ·scale·log2 e − LSE·log2 e),  dSᵀ = Pᵀ∘(dPᵀ − D)
 *                     dV += Pᵀ·dO,  dK += dSᵀ·Q         (A: Pᵀ / dSᵀ packed from the
 *                                                     accumulators, B: ldmatrix.trans)
 *   flash_bwd_dq    a work-group of QW warps owns 16·QW query rows of one
 *                   (batch, head); Q and dO are A fragments in registers;
 *                   tiles of KN keys (K, V) stream through local memory:
 *                     S = Q·Kᵀ, dP = dO·Vᵀ, P and dS as above, dQ += dS·K.
 *
 * The accumulator layout of m16n8 (lane 4g + t: rows g and g + 8, columns
 * 2t, 2t + 1 of each 8-column group) is the A-fragment layout of the next
 * MMA, as in flash_tc.cl. ldmatrix address patterns (lane L addresses row
 * L & 7 of 8×8 matrix L >> 3): "A" (rows +8 for matrices 1 and 3, columns
 * +8 for 2 and 3) gives an A fragment of a row-major [m][k] tile without
 * .trans and a B fragment pair of a row-major [k][n] tile with .trans; "B"
 * (rows +8 for 2 and 3, columns +8 for 1 and 3) gives B fragments of two
 * n-tiles of a row-major [n][k] tile.
 *
 * Masks: dense and causal (both alignments, CAUSAL_OFFSET). Rows past Nq
 * have LSE·log2 e = +inf (P = 0) and zero Q / dO; keys past Nk are zeros
 * whose dK / dV rows are never stored (dK/dV pass) or are masked (dQ pass).
 * A masked pair has P = dS = 0 even when its dP is NaN.
 */

#ifndef KW
#define KW 4 /* warps of the dK/dV kernel: 16·KMT·KW keys per work-group */
#endif
#ifndef KMT
#define KMT 1 /* m-tiles of 16 keys per warp there (2: each Q / dO fragment read feeds two MMAs) */
#endif
#ifndef QM
#define QM 64 /* query rows per tile of the dK/dV kernel */
#endif
#ifndef QW
#define QW 4 /* warps of the dQ kernel: 16·QMT·QW query rows per work-group */
#endif
#ifndef QMT
#define QMT 1 /* m-tiles of 16 rows per warp there */
#endif
#ifndef KN
#define KN 64 /* keys per tile of the dQ kernel */
#endif
#ifndef KST
#define KST 1 /* stages of the dK/dV kernel's query tiles (2: cp.async double buffering) */
#endif
#ifndef QST
#define QST 1 /* stages of the dQ kernel's key tiles */
#endif
#ifndef ASYNC
#define ASYNC 0
#endif

#define DP ((D + 15) / 16 * 16) /* head dim padded to the MMA k step */
#define LDK (DP + 8)            /* local row stride (elements): conflict-free ldmatrix */
#define CH8 (DP / 8)            /* 16-byte chunks per row */
#define KCH (DP / 16)           /* k-steps over the head dim */
#define NTO (DP / 8)            /* 8-column groups of a gradient row */
#define BNK (16 * KMT * KW)
#define NTK (32 * KW)
#define BMQ (16 * QMT * QW)
#define NTQ (32 * QW)

#if (QM % 16) || (KN % 16) || QM < 16 || KN < 16
#error "flash_bwd_tc: QM and KN must be multiples of 16"
#endif
#if KST < 1 || KST > 2 || QST < 1 || QST > 2 || ((KST == 2 || QST == 2) && !ASYNC)
#error "flash_bwd_tc: KST and QST are 1, or 2 with ASYNC"
#endif

/* Rows [row0, row0 + n) of a 16-bit tensor into local rows of LDK elements
 * (rows past `limit` and dims past D: zeros), by nt work-items; with ASYNC
 * (16-byte aligned rows) through cp.async, the caller commits the group. */
inline void bwd_tile16(__local ushort *dst, __global const ushort *base, long ss, long sd,
                       int row0, int n, int limit, int lid, int nt) {
  for (int idx = lid; idx < n * CH8; idx += nt) {
    const int r = idx / CH8, ch = idx % CH8;
    const bool ok = row0 + r < limit && 8 * ch < D;
#if ASYNC
    (void)sd;
    __global const ushort *src = ok ? base + (long)(row0 + r) * ss + 8 * ch : base;
    CP_ASYNC16(smem_addr(dst + r * LDK + 8 * ch), src, ok);
#else
    uint4 x = (uint4)(0u);
    if (ok) x = load_chunk16(base, (long)(row0 + r) * ss, ch, sd);
    *(__local uint4 *)(dst + r * LDK + 8 * ch) = x;
#endif
  }
}

/* The A fragments of the accumulator pair x[2kc], x[2kc + 1] (k-step kc). */
#define PACK_A(x, kc, a)                                                                           \
  do {                                                                                             \
    a[0] = pack2(x[2 * (kc)][0], x[2 * (kc)][1]);                                                  \
    a[1] = pack2(x[2 * (kc)][2], x[2 * (kc)][3]);                                                  \
    a[2] = pack2(x[2 * (kc) + 1][0], x[2 * (kc) + 1][1]);                                          \
    a[3] = pack2(x[2 * (kc) + 1][2], x[2 * (kc) + 1][3]);                                          \
  } while (0)

#define ZERO_FRAGS(x, n)                                                                           \
  do {                                                                                             \
    _Pragma("unroll") for (int j_ = 0; j_ < (n); j_++) x[j_][0] = x[j_][1] = x[j_][2] =            \
        x[j_][3] = 0.0f;                                                                           \
  } while (0)

/* Lane offsets of the two ldmatrix patterns (see the top). */
#define A_ROW(lane) ((((lane) >> 3) & 1) * 8 + ((lane)&7))
#define A_COL(lane) (((lane) >> 4) * 8)
#define B_ROW(lane) (((lane) >> 4) * 8 + ((lane)&7))
#define B_COL(lane) ((((lane) >> 3) & 1) * 8)

/* For each of the nm m-tiles: acc[mt][j] += A·(b0, b1) and acc[mt][j + 1] +=
 * A·(b2, b3), the A fragment's registers being AF(mt, 0..3) (a macro: the
 * fragments stay in registers). */
#define MMA_PAIR(acc, nm, j, AF, b0, b1, b2, b3)                                                   \
  _Pragma("unroll") for (int mt_ = 0; mt_ < (nm); mt_++) {                                         \
    MMA(acc[mt_][j], AF(mt_, 0), AF(mt_, 1), AF(mt_, 2), AF(mt_, 3), b0, b1);                      \
    MMA(acc[mt_][(j) + 1], AF(mt_, 0), AF(mt_, 1), AF(mt_, 2), AF(mt_, 3), b2, b3);                \
  }
#define x_af x##_af
/* k-step kc of two products with B from row-major [n][k] local tiles at
 * the ldmatrix addresses B1 and B2 ("B" pattern): acc1 += A1·B1ᵀ, acc2 +=
 * A2·B2ᵀ over nts 8-column groups (S and dP in both passes). */
#define TWO_PRODUCTS_STEP(acc1, AF1, B1, acc2, AF2, B2, nts, nm, kc)                               \
  _Pragma("unroll") for (int j = 0; j < (nts); j += 2) {                                           \
    uint b0, b1, b2, b3;                                                                           \
    const uint o_ = (uint)((j * 8 * LDK + 16 * (kc)) * 2);                                         \
    LDM_X4(b0, b1, b2, b3, (B1) + o_);                                                             \
    MMA_PAIR(acc1, nm, j, AF1, b0, b1, b2, b3);                                                    \
    LDM_X4(b0, b1, b2, b3, (B2) + o_);                                                             \
    MMA_PAIR(acc2, nm, j, AF2, b0, b1, b2, b3);                                                    \
  }
/* The head of step i of n of a loop over tiles streamed through nst
 * stages: after it, stage s holds step i for every work-item. LOAD(s, i)
 * fills stage s with step i. Two stages (cp.async): step i + 1 goes into the
 * other stage first, and the loop body ends with a barrier (that stage was
 * read in step i - 1). One stage: a barrier, the load, a barrier. */
#define STAGE_ENTER(nst, LOAD, i, n, s)                                                            \
  if ((nst) == 2) {                                                                                \
    s = (i)&1;                                                                                     \
    if ((i) + 1 < (n)) LOAD(s ^ 1, (i) + 1);                                                       \
    CP_COMMIT();                                                                                   \
    CP_WAIT(1);                                                                                    \
  } else {                                                                                         \
    s = 0;                                                                                         \
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous step's reads are done */                         \
    LOAD(0, i);                                                                                    \
    if (ASYNC) {                                                                                   \
      CP_COMMIT();                                                                                 \
      CP_WAIT(0);                                                                                  \
    }                                                                                              \
  }                                                                                                \
  barrier(CLK_LOCAL_MEM_FENCE)
#define a_af(m, e) a[m][e]
#define c_af(m, e) c[m][e]
#define pa_af(m, e) pa[m][e]
#define da_af(m, e) da[m][e]
#define qf_af(m, e) qf[m][kc][e]
#define of_af(m, e) of[m][kc][e]

/* Stores row half rr of the nm m-tiles of acc (rows row0 + 16·mt + 8·rr, lane
 * columns 8j + 2t, +1; dims past D and rows at or past limit skipped), times
 * mul, at base + row·rs + dim·ds. */
#define STORE_FRAGS(base, rs, ds, acc, nm, row0, limit, mul)                                       \
  _Pragma("unroll") for (int mt_ = 0; mt_ < (nm); mt_++) {                                         \
    _Pragma("unroll") for (int rr_ = 0; rr_ < 2; rr_++) {                                          \
      const int row_ = (row0) + 16 * mt_ + 8 * rr_;                                                \
      if (row_ < (limit)) {                                                                        \
        _Pragma("unroll") for (int j_ = 0; j_ < NTO; j_++) {                                       \
          _Pragma("unroll") for (int e_ = 0; e_ < 2; e_++) {                                       \
            const int x_ = 8 * j_ + 2 * t + e_;                                                    \
            if (x_ < D)                                                                            \
              STORE(base, (long)row_ * (rs) + (long)x_ * (ds), acc[mt_][j_][2 * rr_ + e_] * (mul)); \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }

/* The forward's modifiers (flash_bwd.cl takes the same): softcap, ALiBi, a
 * bias tensor, the user's mask_mod. TC_EXPONENT turns the raw score x of
 * pair (row i, key j) of head h into its exponent before − LSE·log2 e (log2
 * units) and sets capd (dS's softcap factor, 1 − tanh²) and hid (the bias or
 * the mask hides the pair: P = dS = 0). Bias and mask are evaluated only for
 * rows below Nq and keys below Nk (others are hidden: their P is 0 or their
 * gradient rows are never stored). */
#define TC_MODS (SOFTCAP || ALIBI || BIAS || USER_MASK)
#if TC_MODS
#if SOFTCAP
#define TC_CAP(s2, capd)                                                                           \
  do {                                                                                             \
    float t_;                                                                                      \
    SOFTCAP_APPLY(s2, t_);                                                                         \
    capd = 1.0f - ((s2) * (1.0f / SOFTCAP2)) * ((s2) * (1.0f / SOFTCAP2));                         \
  } while (0)
#else
#define TC_CAP(s2, capd) (void)0
#endif
#if ALIBI
/* tc_slope2: the head's slope, computed once per head (alibi_slope2) */
#define TC_ALIBI(s2, i, j, h) ((s2) -= tc_slope2 * (float)abs((i) + off - (j)))
#else
#define TC_ALIBI(s2, i, j, h) (void)0
#endif
#if BIAS
#define TC_BIAS(s2, hid, i, j, b, h)                                                               \
  do {                                                                                             \
    const float bv_ = BIAS_AT(b, h, i, j);                                                         \
    (s2) += bv_ * CLATTN_LOG2E;                                                                    \
    hid = hid || BIAS_HIDES(bv_);                                                                  \
  } while (0)
#else
#define TC_BIAS(s2, hid, i, j, b, h) (void)0
#endif
#if USER_MASK
#define TC_USER(hid, i, j, b, h) (hid = hid || !clattn_mask_mod((b), (h), (i), (j), user))
#define TC_USER_ARG , __global const uchar *restrict user
#else
#define TC_USER(hid, i, j, b, h) (void)0
#define TC_USER_ARG
#endif
#define TC_EXPONENT(x, i, j, b, h, s2, capd, hid)                                                  \
  do {                                                                                             \
    s2 = (x)*qscale;                                                                               \
    capd = 1.0f;                                                                                   \
    hid = !((i) < Nq && (j) < Nk);                                                                 \
    TC_CAP(s2, capd);                                                                              \
    TC_ALIBI(s2, i, j, h);                                                                         \
    if (!hid) {                                                                                    \
      TC_BIAS(s2, hid, i, j, b, h);                                                                \
      TC_USER(hid, i, j, b, h);                                                                    \
    }                                                                                              \
  } while (0)
#else
#define TC_USER_ARG
#endif

/* ---- dK, dV ---------------------------------------------------------------------------------- */

#define NTSQ (QM / 8) /* 8-row groups of a query tile */
#define QO_STAGE (2 * QM * LDK) /* elements of one stage: Q rows, then dO rows */

__kernel __attribute__((reqd_work_group_size(NTK, 1, 1))) void
flash_bwd_dkdv(BWD_ARGS, __global ushort *restrict dK,
               __global ushort *restrict dV TC_USER_ARG FLASH_BIAS_ARGS) {
  __local uint4 kv_raw[2 * BNK * LDK / 8];
  __local uint4 qo_raw[KST * QO_STAGE / 8];
  __local float ld_s[KST * 2 * QM]; /* per stage: LSE·log2 e of the QM rows, then D */
  __local ushort *Ks = (__local ushort *)kv_raw;
  __local ushort *Vs = Ks + BNK * LDK;
  __local ushort *QOs = (__local ushort *)qo_raw;

  const int lid = get_local_id(0);
  const int warp = lid / 32, lane = lid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int kt = get_group_id(0), bhk = get_group_id(1);
  const int Hk = H / G;
  const int b = bhk / Hk, hk = bhk % Hk;
  const int k0 = kt * BNK;
  BWD_SEQ(b)
  if (k0 >= Nk) return; /* past the sequence's keys (ragged): the whole work-group */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);

  __global const ushort *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const ushort *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
  bwd_tile16(Ks, Kb, kss, ksd, k0, BNK, Nk, lid, NTK);
  bwd_tile16(Vs, Vb, vss, vsd, k0, BNK, Nk, lid, NTK);
#if ASYNC
  CP_COMMIT();
#endif

  const int nqt = (Nq + QM - 1) / QM;
#if CAUSAL
  /* Query i sees key j iff j <= i + off: the first key needs i >= k0 - off. */
  const int qt0 = clamp(k0 - off, 0, Nq) / QM;
#else
  const int qt0 = 0;
#endif
  const int per = nqt - qt0, total = G * per; /* (head, query tile) steps */

  /* Step `it` (head hk·G + it / per, tile qt0 + it % per) into stage s. */
#define DKDV_LOAD(s, it)                                                                           \
  do {                                                                                             \
    const int h_ = hk * G + (it) / per, q0_ = (qt0 + (it) % per) * QM;                             \
    const long bh_ = (long)b * H + h_;                                                             \
    __local ushort *qd_ = QOs + (s)*QO_STAGE;                                                      \
    bwd_tile16(qd_, Q + (long)b * qsb + (long)h_ * qsh + ROW_OFF(qstart, qss), qss, qsd, q0_, QM,  \
               Nq, lid, NTK);                                                                      \
    bwd_tile16(qd_ + QM * LDK, dO + (long)b * osb + (long)h_ * osh + ROW_OFF(qstart, oss), oss,    \
               osd, q0_, QM, Nq, lid, NTK);                                                        \
    for (int r_ = lid; r_ < QM; r_ += NTK) {                                                       \
      const int i_ = q0_ + r_;                                                                     \
      ld_s[(s)*2 * QM + r_] = i_ < Nq ? LSE[BWD_LSE(bh_, i_)] * CLATTN_LOG2E : INFINITY;           \
      ld_s[(s)*2 * QM + QM + r_] = i_ < Nq ? Dd[BWD_D(bh_, i_)] : 0.0f;                            \
    }                                                                                              \
  } while (0)

  /* Warp w owns keys kw0 + 16·mt + 0..15 for its KMT m-tiles. */
  float dk[KMT][NTO][4], dv[KMT][NTO][4];
#pragma unroll
  for (int mt = 0; mt < KMT; mt++) {
    ZERO_FRAGS(dk[mt], NTO);
    ZERO_FRAGS(dv[mt], NTO);
  }
  const int kw0 = k0 + warp * 16 * KMT; /* this warp's first key */
  const uint kA = smem_addr(Ks + (warp * 16 * KMT + A_ROW(lane)) * LDK + A_COL(lane));
  const uint vA = smem_addr(Vs + (warp * 16 * KMT + A_ROW(lane)) * LDK + A_COL(lane));

#if KST == 2
  if (total > 0) DKDV_LOAD(0, 0);
  CP_COMMIT();
#endif
  for (int it = 0; it < total; it++) {
    int s;
    STAGE_ENTER(KST, DKDV_LOAD, it, total, s); /* K and V (first group) have landed too */
    const int q0 = (qt0 + it % per) * QM;
#if TC_MODS
    const int h = hk * G + it / per; /* this step's query head */
#endif
#if ALIBI
    const float tc_slope2 = alibi_slope2(h, H);
#endif
    __local const ushort *Qs = QOs + s * QO_STAGE;
    __local const ushort *Os = Qs + QM * LDK;
    __local const float *Ls = ld_s + s * 2 * QM;
    __local const float *Ds = Ls + QM;

    /* Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: the K and V A fragments of a k-step are
     * reused across the tile's NTSQ row groups, each Q / dO B fragment across
     * the KMT m-tiles. */
    float st[KMT][NTSQ][4], dp[KMT][NTSQ][4];
#pragma unroll
    for (int mt = 0; mt < KMT; mt++) {
      ZERO_FRAGS(st[mt], NTSQ);
      ZERO_FRAGS(dp[mt], NTSQ);
    }
    const uint qB = smem_addr(Qs + B_ROW(lane) * LDK + B_COL(lane));
    const uint oB = smem_addr(Os + B_ROW(lane) * LDK + B_COL(lane));
#pragma unroll
    for (int kc = 0; kc < KCH; kc++) {
      uint a[KMT][4], c[KMT][4];
#pragma unroll
      for (int mt = 0; mt < KMT; mt++) {
        const uint mo = (uint)(16 * mt * LDK * 2 + 32 * kc);
        LDM_X4(a[mt][0], a[mt][1], a[mt][2], a[mt][3], kA + mo);
        LDM_X4(c[mt][0], c[mt][1], c[mt][2], c[mt][3], vA + mo);
      }
      TWO_PRODUCTS_STEP(st, a_af, qB, dp, c_af, oB, NTSQ, KMT, kc);
    }

    /* Pᵀ and dSᵀ in place (keys kw0 + 16·mt + g + 8·(e / 2), rows q0 + 8j +
     * 2t + e % 2). */
#if CAUSAL
    const bool need_mask = k0 + BNK - 1 > q0 + off; /* the tile crosses the diagonal */
#endif
#pragma unroll
    for (int mt = 0; mt < KMT; mt++) {
#pragma unroll
      for (int j = 0; j < NTSQ; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = 8 * j + 2 * t + (e & 1);
#if TC_MODS
          const int key = kw0 + 16 * mt + g + 8 * (e >> 1);
          float s2, capd;
          bool hid;
          TC_EXPONENT(st[mt][j][e], q0 + col, key, b, h, s2, capd, hid);
          float p = hid ? 0.0f : fast_exp2(s2 - Ls[col]);
          float ds = hid ? 0.0f : p * (dp[mt][j][e] - Ds[col]) * capd;
#else
          float p = fast_exp2(fma(st[mt][j][e], qscale, -Ls[col]));
          float ds = p * (dp[mt][j][e] - Ds[col]);
#endif
#if CAUSAL
          if (need_mask && kw0 + 16 * mt + g + 8 * (e >> 1) > q0 + col + off) p = ds = 0.0f;
#endif
          st[mt][j][e] = p;
          dp[mt][j][e] = ds;
        }
      }
    }

    /* dV += Pᵀ·dO and dK += dSᵀ·Q over the tile's rows (k-steps of 16). */
    const uint oT = smem_addr(Os + A_ROW(lane) * LDK + A_COL(lane));
    const uint qT = smem_addr(Qs + A_ROW(lane) * LDK + A_COL(lane));
#pragma unroll
    for (int kc = 0; kc < QM / 16; kc++) {
      uint pa[KMT][4], da[KMT][4];
#pragma unroll
      for (int mt = 0; mt < KMT; mt++) {
        PACK_A(st[mt], kc, pa[mt]);
        PACK_A(dp[mt], kc, da[mt]);
      }
#pragma unroll
      for (int j = 0; j < NTO; j += 2) {
        uint b0, b1, b2, b3;
        const uint o = (uint)((16 * kc * LDK + j * 8) * 2);
        LDM_X4_T(b0, b1, b2, b3, oT + o);
        MMA_PAIR(dv, KMT, j, pa_af, b0, b1, b2, b3);
        LDM_X4_T(b0, b1, b2, b3, qT + o);
        MMA_PAIR(dk, KMT, j, da_af, b0, b1, b2, b3);
      }
    }
#if KST == 2
    barrier(CLK_LOCAL_MEM_FENCE); /* stage s is free for step it + 2 */
#endif
  }
#undef DKDV_LOAD

  __global ushort *dKb = dK + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global ushort *dVb = dV + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
  STORE_FRAGS(dKb, kss, ksd, dk, KMT, kw0 + g, Nk, scale);
  STORE_FRAGS(dVb, vss, vsd, dv, KMT, kw0 + g, Nk, 1.0f);
}

/* ---- dQ -------------------------------------------------------------------------------------- */

#define NTSK (KN / 8) /* 8-key groups of a key tile */
#define KV_STAGE (2 * KN * LDK)

__kernel __attribute__((reqd_work_group_size(NTQ, 1, 1))) void
flash_bwd_dq(BWD_ARGS, __global ushort *restrict dQ TC_USER_ARG FLASH_BIAS_ARGS) {
  __local uint4 kv_raw[QST * KV_STAGE / 8];
  __local ushort *KVs = (__local ushort *)kv_raw;

  const int lid = get_local_id(0);
  const int warp = lid / 32, lane = lid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int qt = get_group_id(0), bh = get_group_id(1);
  const int b = bh / H, h = bh % H, hk = h / G;
  const int q0 = qt * BMQ;
  BWD_SEQ(b)
  if (q0 >= Nq) return; /* past the sequence's rows (ragged) */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
#if ALIBI
  const float tc_slope2 = alibi_slope2(h, H);
#endif

  __global const ushort *Qb = Q + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
  __global const ushort *dOb = dO + (long)b * osb + (long)h * osh + ROW_OFF(qstart, oss);
  __global const ushort *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const ushort *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);

  /* This lane's rows r0[mt] and r0[mt] + 8 of its QMT m-tiles: Q and dO as
   * A fragments, LSE·log2 e (+inf past Nq: P = 0) and D. */
  int r0[QMT];
  uint qf[QMT][KCH][4], of[QMT][KCH][4];
  float Lr[QMT][2], Dr[QMT][2];
#pragma unroll
  for (int mt = 0; mt < QMT; mt++) {
    r0[mt] = q0 + (warp * QMT + mt) * 16 + g;
#pragma unroll
    for (int kc = 0; kc < KCH; kc++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int row = r0[mt] + (e & 1) * 8, col = 16 * kc + 2 * t + (e >> 1) * 8;
        qf[mt][kc][e] = q_pair(Qb, row, col, Nq, qss, qsd);
        of[mt][kc][e] = q_pair(dOb, row, col, Nq, oss, osd);
      }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      const int row = r0[mt] + 8 * rr;
      Lr[mt][rr] = row < Nq ? LSE[BWD_LSE(bh, row)] * CLATTN_LOG2E : INFINITY;
      Dr[mt][rr] = row < Nq ? Dd[BWD_D(bh, row)] : 0.0f;
    }
  }

  float dq[QMT][NTO][4];
#pragma unroll
  for (int mt = 0; mt < QMT; mt++)
    ZERO_FRAGS(dq[mt], NTO);
#if CAUSAL
  const int nkt = flash_dense_tiles(q0, BMQ, KN, Nq, Nk, CAUSAL);
#else
  const int nkt = (Nk + KN - 1) / KN;
#endif

#define DQ_LOAD(s, kt)                                                                             \
  do {                                                                                             \
    bwd_tile16(KVs + (s)*KV_STAGE, Kb, kss, ksd, (kt)*KN, KN, Nk, lid, NTQ);                       \
    bwd_tile16(KVs + (s)*KV_STAGE + KN * LDK, Vb, vss, vsd, (kt)*KN, KN, Nk, lid, NTQ);            \
  } while (0)
#if QST == 2
  if (nkt > 0) DQ_LOAD(0, 0);
  CP_COMMIT();
#endif
  for (int kt = 0; kt < nkt; kt++) {
    int s;
    STAGE_ENTER(QST, DQ_LOAD, kt, nkt, s);
    const int k0 = kt * KN;
    __local const ushort *Ks = KVs + s * KV_STAGE;
    __local const ushort *Vs = Ks + KN * LDK;

    /* S = Q·Kᵀ and dP = dO·Vᵀ: each K / V B fragment feeds the QMT m-tiles. */
    float sc[QMT][NTSK][4], dp[QMT][NTSK][4];
#pragma unroll
    for (int mt = 0; mt < QMT; mt++) {
      ZERO_FRAGS(sc[mt], NTSK);
      ZERO_FRAGS(dp[mt], NTSK);
    }
    const uint kB = smem_addr(Ks + B_ROW(lane) * LDK + B_COL(lane));
    const uint vB = smem_addr(Vs + B_ROW(lane) * LDK + B_COL(lane));
#pragma unroll
    for (int kc = 0; kc < KCH; kc++)
      TWO_PRODUCTS_STEP(sc, qf_af, kB, dp, of_af, vB, NTSK, QMT, kc);

    /* dS (rows r0[mt] + 8·(e / 2), keys k0 + 8j + 2t + e % 2) into dp. */
#if CAUSAL
    const bool need_mask = k0 + KN > Nk || k0 + KN - 1 > q0 + off;
#else
    const bool need_mask = k0 + KN > Nk;
#endif
#pragma unroll
    for (int mt = 0; mt < QMT; mt++) {
#pragma unroll
      for (int j = 0; j < NTSK; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int rr = e >> 1;
#if TC_MODS
          float s2, capd;
          bool hid;
          TC_EXPONENT(sc[mt][j][e], r0[mt] + 8 * rr, k0 + 8 * j + 2 * t + (e & 1), b, h, s2, capd,
                      hid);
          const float p = fast_exp2(s2 - Lr[mt][rr]);
          float ds = hid ? 0.0f : p * (dp[mt][j][e] - Dr[mt][rr]) * capd;
#else
          const float p = fast_exp2(fma(sc[mt][j][e], qscale, -Lr[mt][rr]));
          float ds = p * (dp[mt][j][e] - Dr[mt][rr]);
#endif
          if (need_mask) {
            const int key = k0 + 8 * j + 2 * t + (e & 1);
#if CAUSAL
            const bool dead = key >= Nk || key > r0[mt] + 8 * rr + off;
#else
            const bool dead = key >= Nk;
#endif
            if (dead) ds = 0.0f;
          }
          dp[mt][j][e] = ds;
        }
      }
    }

    /* dQ += dS·K over the tile's keys (k-steps of 16). */
    const uint kT = smem_addr(Ks + A_ROW(lane) * LDK + A_COL(lane));
#pragma unroll
    for (int kc = 0; kc < KN / 16; kc++) {
      uint da[QMT][4];
#pragma unroll
      for (int mt = 0; mt < QMT; mt++)
        PACK_A(dp[mt], kc, da[mt]);
#pragma unroll
      for (int j = 0; j < NTO; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4_T(b0, b1, b2, b3, kT + (uint)((16 * kc * LDK + j * 8) * 2));
        MMA_PAIR(dq, QMT, j, da_af, b0, b1, b2, b3);
      }
    }
#if QST == 2
    barrier(CLK_LOCAL_MEM_FENCE); /* stage s is free for tile kt + 2 */
#endif
  }
#undef DQ_LOAD

  __global ushort *dQb = dQ + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
  STORE_FRAGS(dQb, qss, qsd, dq, QMT, r0[0], Nq, scale);
}
