/* flash_bwd.cl — portable deterministic attention backward (FlashAttention-2): D, dK/dV, dQ. */

/*
 * Three kernels, enqueued in this order by src/flash_bwd.c:
 *
 *   flash_bwd_pre   D_i = rowsum(dO_i ∘ O_i), one work-item per query row.
 *   flash_bwd_dkdv  one work-group of BN work-items per (key tile, batch,
 *                   KV head); work-item c owns key j = k0 + c and keeps k_j,
 *                   v_j, dk_j, dv_j in private memory. For each query head of
 *                   its KV head (h = hk·G .. hk·G + G − 1, in this order) and
 *                   each query tile of BM rows (ascending) it loads Q and dO
 *                   into local memory and, row by row in order, recomputes
 *                   p = exp2(q·k·scale·log2e − LSE·log2e), dv += p·dO,
 *                   ds = p·(dO·v − D), dk += ds·q.
 *   flash_bwd_dq    one work-group of BM work-items per (query tile, batch,
 *                   head); work-item r owns query i = q0 + r and keeps q_i,
 *                   dO_i, dq_i in private memory; it streams K and V tiles of
 *                   BN keys through local memory (ascending) and adds
 *                   dq += ds·k.
 *
 * Every sum runs in one work-item in a fixed order: no atomics, results are
 * bitwise reproducible. P is never stored. Accumulation is float for every
 * storage type. Masks: -DCAUSAL=1/2 (CAUSAL_OFFSET in common.cl) and
 * -DSPARSE=1/2 (sp_visible per element; whole tiles without a visible pair
 * are skipped through a host-built bitmap of (query tile, key tile) pairs,
 * tbits, tb_words words per query tile, so the barrier loops stay uniform).
 *
 * Sequence offsets: every row index is turned into an address by ROW_OFF
 * below, so a ragged batch (per-sequence offsets) changes one place.
 */

#ifndef D
#define D 64
#endif
#ifndef BM
#define BM 32
#endif
#ifndef BN
#define BN 32
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

#define ROW_OFF(row, ss) ((long)(row) * (ss))

#if SPARSE
#define BWD_TILE_ARGS , __global const uint *restrict tbits, const int tb_words
#define TILE_LISTED(qt, kt) ((tbits[(long)(qt) * tb_words + ((kt) >> 5)] >> ((kt) & 31)) & 1u)
#else
#define BWD_TILE_ARGS
#endif

/* The inputs every main kernel takes (strides in elements: q, k, v, o/dO). */
#define BWD_ARGS                                                                                   \
  __global const stype *restrict Q, __global const stype *restrict K,                              \
      __global const stype *restrict V, __global const stype *restrict dO,                         \
      __global const float *restrict LSE, __global const float *restrict Dd, const long qsb,       \
      const long qsh, const long qss, const long qsd, const long ksb, const long ksh,              \
      const long kss, const long ksd, const long vsb, const long vsh, const long vss,              \
      const long vsd, const long osb, const long osh, const long oss, const long osd, const int H, \
      const int G, const int Nq, const int Nk, const float qscale, const float scale

__kernel void flash_bwd_pre(__global const stype *restrict O, __global const stype *restrict dO,
                            __global float *restrict Dd, const long osb, const long osh,
                            const long oss, const long osd, const int H, const int Nq) {
  const int i = get_global_id(0);
  const int bh = get_global_id(1);
  if (i >= Nq) return;
  const int b = bh / H, h = bh % H;
  const long base = (long)b * osb + (long)h * osh + ROW_OFF(i, oss);
  float acc = 0.0f;
  for (int x = 0; x < D; x++) {
    const long e = base + (long)x * osd;
    acc = fma(LOAD(dO, e), LOAD(O, e), acc);
  }
  Dd[(long)bh * Nq + i] = acc;
}

#ifndef ROWS
#define ROWS 0
#endif

#if !ROWS
__kernel __attribute__((reqd_work_group_size(BN, 1, 1))) void
flash_bwd_dkdv(BWD_ARGS, __global stype *restrict dK, __global stype *restrict dV BWD_TILE_ARGS
                             SPARSE_MASK_ARGS) {
  __local float Qs[BM * D];
  __local float Os[BM * D];
  __local float Ls[BM];
  __local float Ds[BM];

  const int lid = get_local_id(0);
  const int kt = get_group_id(0);
  const int bhk = get_group_id(1);
  const int Hk = H / G;
  const int b = bhk / Hk, hk = bhk % Hk;
  const int k0 = kt * BN;
  const int j = k0 + lid;
  const bool active = j < Nk;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk); /* sparse masks: bottom-right */

  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  float kj[D], vj[D], dk[D], dv[D];
  for (int x = 0; x < D; x++) {
    kj[x] = active ? LOAD(Kb, ROW_OFF(j, kss) + (long)x * ksd) * qscale : 0.0f;
    vj[x] = active ? LOAD(Vb, ROW_OFF(j, vss) + (long)x * vsd) : 0.0f;
    dk[x] = 0.0f;
    dv[x] = 0.0f;
  }

  const int nqt = (Nq + BM - 1) / BM;
#if CAUSAL
  /* Query i sees key j iff j <= i + off: the tile's first key needs i >= k0 - off. */
  const int qt0 = clamp(k0 - off, 0, Nq) / BM;
#else
  const int qt0 = 0;
#endif
  for (int hh = 0; hh < G; hh++) {
    const int h = hk * G + hh;
    const long bh = (long)b * H + h;
    __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
    __global const stype *dOb = dO + (long)b * osb + (long)h * osh;
    for (int qt = qt0; qt < nqt; qt++) {
#if SPARSE
      if (!TILE_LISTED(qt, kt)) continue; /* uniform: the whole work-group skips */
#endif
      const int q0 = qt * BM;
      barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's reads are done */
      for (int idx = lid; idx < BM * D; idx += BN) {
        const int r = idx / D, x = idx % D;
        const int i = q0 + r;
        Qs[idx] = i < Nq ? LOAD(Qb, ROW_OFF(i, qss) + (long)x * qsd) : 0.0f;
        Os[idx] = i < Nq ? LOAD(dOb, ROW_OFF(i, oss) + (long)x * osd) : 0.0f;
      }
      for (int r = lid; r < BM; r += BN) {
        const int i = q0 + r;
        Ls[r] = i < Nq ? LSE[bh * Nq + i] * CLATTN_LOG2E : 0.0f;
        Ds[r] = i < Nq ? Dd[bh * Nq + i] : 0.0f;
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      if (active) {
        for (int r = 0; r < BM; r++) {
          const int i = q0 + r;
          bool vis = i < Nq;
#if CAUSAL
          vis = vis && j <= i + off;
#endif
#if SPARSE
          vis = vis && sp_visible(i + off, j, Nk, SPARSE_MASK_PASS);
#endif
          if (!vis) continue;
          float s = 0.0f, dp = 0.0f;
          for (int x = 0; x < D; x++) {
            s = fma(Qs[r * D + x], kj[x], s);
            dp = fma(Os[r * D + x], vj[x], dp);
          }
          const float p = exp2(s - Ls[r]);
          const float ds = p * (dp - Ds[r]);
          for (int x = 0; x < D; x++) {
            dv[x] = fma(p, Os[r * D + x], dv[x]);
            dk[x] = fma(ds, Qs[r * D + x], dk[x]);
          }
        }
      }
    }
  }
  if (active) {
    __global stype *dKb = dK + (long)b * ksb + (long)hk * ksh + ROW_OFF(j, kss);
    __global stype *dVb = dV + (long)b * vsb + (long)hk * vsh + ROW_OFF(j, vss);
    for (int x = 0; x < D; x++) {
      STORE(dKb, (long)x * ksd, dk[x] * scale);
      STORE(dVb, (long)x * vsd, dv[x]);
    }
  }
}

__kernel __attribute__((reqd_work_group_size(BM, 1, 1))) void
flash_bwd_dq(BWD_ARGS, __global stype *restrict dQ BWD_TILE_ARGS SPARSE_MASK_ARGS) {
  __local float Ks[BN * D];
  __local float Vs[BN * D];

  const int lid = get_local_id(0);
  const int qt = get_group_id(0);
  const int bh = get_group_id(1);
  const int b = bh / H, h = bh % H, hk = h / G;
  const int q0 = qt * BM;
  const int i = q0 + lid;
  const bool active = i < Nq;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const stype *dOb = dO + (long)b * osb + (long)h * osh;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  float qi[D], doi[D], dq[D];
  for (int x = 0; x < D; x++) {
    qi[x] = active ? LOAD(Qb, ROW_OFF(i, qss) + (long)x * qsd) * qscale : 0.0f;
    doi[x] = active ? LOAD(dOb, ROW_OFF(i, oss) + (long)x * osd) : 0.0f;
    dq[x] = 0.0f;
  }
  const float li = active ? LSE[(long)bh * Nq + i] * CLATTN_LOG2E : 0.0f;
  const float di = active ? Dd[(long)bh * Nq + i] : 0.0f;

#if CAUSAL
  const int nkt = flash_dense_tiles(q0, BM, BN, Nq, Nk, CAUSAL);
#else
  const int nkt = (Nk + BN - 1) / BN;
#endif
  for (int kt = 0; kt < nkt; kt++) {
#if SPARSE
    if (!TILE_LISTED(qt, kt)) continue; /* uniform */
#endif
    const int k0 = kt * BN;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int idx = lid; idx < BN * D; idx += BM) {
      const int c = idx / D, x = idx % D;
      const int j = k0 + c;
      Ks[idx] = j < Nk ? LOAD(Kb, ROW_OFF(j, kss) + (long)x * ksd) : 0.0f;
      Vs[idx] = j < Nk ? LOAD(Vb, ROW_OFF(j, vss) + (long)x * vsd) : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (active) {
      for (int c = 0; c < BN; c++) {
        const int j = k0 + c;
        bool vis = j < Nk;
#if CAUSAL
        vis = vis && j <= i + off;
#endif
#if SPARSE
        vis = vis && sp_visible(i + off, j, Nk, SPARSE_MASK_PASS);
#endif
        if (!vis) continue;
        float s = 0.0f, dp = 0.0f;
        for (int x = 0; x < D; x++) {
          s = fma(qi[x], Ks[c * D + x], s);
          dp = fma(doi[x], Vs[c * D + x], dp);
        }
        const float p = exp2(s - li);
        const float ds = p * (dp - di);
        for (int x = 0; x < D; x++)
          dq[x] = fma(ds, Ks[c * D + x], dq[x]);
      }
    }
  }
  if (active) {
    __global stype *dQb = dQ + (long)b * qsb + (long)h * qsh + ROW_OFF(i, qss);
    for (int x = 0; x < D; x++)
      STORE(dQb, (long)x * qsd, dq[x] * scale);
  }
}

#else /* ROWS: the CPU kernels */

/*
 * -DROWS=1 (the flash_bwd_rows variant, for CPUs): the same two passes with
 * one work-item per work-group and SIMD from explicit vectors of W = BM = BN
 * lanes (PoCL runs a work-group as a loop on one core). dK/dV: the work-item
 * owns W keys, kept transposed (kT[x], lane c = K[k0 + c][x]); for each query
 * row i (ascending, per query head in order) a broadcast q_i[x] times kT[x]
 * gives the W scores at once, then dvT[x] += p·dO_i[x], dkT[x] += ds·q_i[x].
 * dQ: the work-item owns W query rows (qT, oT, dqT) and streams the keys.
 * Every sum still runs in one fixed order: deterministic.
 */
#if BM != BN || (BM != 8 && BM != 16)
#error "flash_bwd rows: BM == BN must be 8 or 16"
#endif
#define W BM
#if W == 8
typedef float8 vrow;
typedef int8 vrowi;
#define VLOAD_ROW vload8
#define VSTORE_ROW vstore8
#define ROW_IDS ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#else
typedef float16 vrow;
typedef int16 vrowi;
#define VLOAD_ROW vload16
#define VSTORE_ROW vstore16
#define ROW_IDS ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
flash_bwd_dkdv(BWD_ARGS, __global stype *restrict dK, __global stype *restrict dV BWD_TILE_ARGS
                             SPARSE_MASK_ARGS) {
  const int kt = get_group_id(0);
  const int bhk = get_group_id(1);
  const int Hk = H / G;
  const int b = bhk / Hk, hk = bhk % Hk;
  const int k0 = kt * W;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const vrowi jv = k0 + ROW_IDS;

  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  vrow kT[D], vT[D], dkT[D], dvT[D];
  for (int x = 0; x < D; x++) {
    float tk[W], tv[W];
    for (int c = 0; c < W; c++) {
      const int j = k0 + c;
      tk[c] = j < Nk ? LOAD(Kb, ROW_OFF(j, kss) + (long)x * ksd) * qscale : 0.0f;
      tv[c] = j < Nk ? LOAD(Vb, ROW_OFF(j, vss) + (long)x * vsd) : 0.0f;
    }
    kT[x] = VLOAD_ROW(0, tk);
    vT[x] = VLOAD_ROW(0, tv);
    dkT[x] = (vrow)(0.0f);
    dvT[x] = (vrow)(0.0f);
  }
#if CAUSAL
  const int i0 = clamp(k0 - off, 0, Nq); /* earlier rows see none of these keys */
#else
  const int i0 = 0;
#endif
  for (int hh = 0; hh < G; hh++) {
    const int h = hk * G + hh;
    const long bh = (long)b * H + h;
    __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
    __global const stype *dOb = dO + (long)b * osb + (long)h * osh;
    for (int i = i0; i < Nq; i++) {
#if SPARSE
      if (!TILE_LISTED(i / W, kt)) { /* no visible pair in this W×W tile */
        i = (i / W + 1) * W - 1;
        continue;
      }
#endif
      vrowi vis = jv < Nk;
#if CAUSAL
      vis = vis & (jv <= i + off);
#endif
#if SPARSE
      {
        int tm[W];
        for (int c = 0; c < W; c++)
          tm[c] = sp_visible(i + off, k0 + c, Nk, SPARSE_MASK_PASS) ? -1 : 0;
        vis = vis & VLOAD_ROW(0, tm);
      }
#endif
      if (!any(vis)) continue;
      const long qo = ROW_OFF(i, qss), oo = ROW_OFF(i, oss);
      vrow s = (vrow)(0.0f), dp = (vrow)(0.0f);
      for (int x = 0; x < D; x++) {
        s = fma((vrow)(LOAD(Qb, qo + (long)x * qsd)), kT[x], s);
        dp = fma((vrow)(LOAD(dOb, oo + (long)x * osd)), vT[x], dp);
      }
      const vrow p = select((vrow)(0.0f), exp2(s - LSE[bh * Nq + i] * CLATTN_LOG2E), vis);
      const vrow ds = p * (dp - Dd[bh * Nq + i]);
      for (int x = 0; x < D; x++) {
        dvT[x] = fma(p, (vrow)(LOAD(dOb, oo + (long)x * osd)), dvT[x]);
        dkT[x] = fma(ds, (vrow)(LOAD(Qb, qo + (long)x * qsd)), dkT[x]);
      }
    }
  }
  __global stype *dKb = dK + (long)b * ksb + (long)hk * ksh;
  __global stype *dVb = dV + (long)b * vsb + (long)hk * vsh;
  for (int x = 0; x < D; x++) {
    float tk[W], tv[W];
    VSTORE_ROW(dkT[x] * scale, 0, tk);
    VSTORE_ROW(dvT[x], 0, tv);
    for (int c = 0; c < W; c++) {
      const int j = k0 + c;
      if (j < Nk) {
        STORE(dKb, ROW_OFF(j, kss) + (long)x * ksd, tk[c]);
        STORE(dVb, ROW_OFF(j, vss) + (long)x * vsd, tv[c]);
      }
    }
  }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
flash_bwd_dq(BWD_ARGS, __global stype *restrict dQ BWD_TILE_ARGS SPARSE_MASK_ARGS) {
  const int qt = get_group_id(0);
  const int bh = get_group_id(1);
  const int b = bh / H, h = bh % H, hk = h / G;
  const int q0 = qt * W;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const vrowi iv = q0 + ROW_IDS;

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const stype *dOb = dO + (long)b * osb + (long)h * osh;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  vrow qT[D], oT[D], dqT[D];
  for (int x = 0; x < D; x++) {
    float tq[W], to[W];
    for (int r = 0; r < W; r++) {
      const int i = q0 + r;
      tq[r] = i < Nq ? LOAD(Qb, ROW_OFF(i, qss) + (long)x * qsd) * qscale : 0.0f;
      to[r] = i < Nq ? LOAD(dOb, ROW_OFF(i, oss) + (long)x * osd) : 0.0f;
    }
    qT[x] = VLOAD_ROW(0, tq);
    oT[x] = VLOAD_ROW(0, to);
    dqT[x] = (vrow)(0.0f);
  }
  vrow li, di;
  {
    float tl[W], td[W];
    for (int r = 0; r < W; r++) {
      const int i = q0 + r;
      tl[r] = i < Nq ? LSE[(long)bh * Nq + i] * CLATTN_LOG2E : 0.0f;
      td[r] = i < Nq ? Dd[(long)bh * Nq + i] : 0.0f;
    }
    li = VLOAD_ROW(0, tl);
    di = VLOAD_ROW(0, td);
  }
#if CAUSAL
  const int jend = clamp(min(q0 + W, Nq) - 1 + off + 1, 0, Nk);
#else
  const int jend = Nk;
#endif
  for (int j = 0; j < jend; j++) {
#if SPARSE
    if (!TILE_LISTED(qt, j / W)) {
      j = (j / W + 1) * W - 1;
      continue;
    }
#endif
    vrowi vis = iv < Nq;
#if CAUSAL
    vis = vis & (j <= iv + off);
#endif
#if SPARSE
    {
      int tm[W];
      for (int r = 0; r < W; r++)
        tm[r] = sp_visible(q0 + r + off, j, Nk, SPARSE_MASK_PASS) ? -1 : 0;
      vis = vis & VLOAD_ROW(0, tm);
    }
#endif
    if (!any(vis)) continue;
    const long ko = ROW_OFF(j, kss), vo = ROW_OFF(j, vss);
    vrow s = (vrow)(0.0f), dp = (vrow)(0.0f);
    for (int x = 0; x < D; x++) {
      s = fma(qT[x], (vrow)(LOAD(Kb, ko + (long)x * ksd)), s);
      dp = fma(oT[x], (vrow)(LOAD(Vb, vo + (long)x * vsd)), dp);
    }
    const vrow p = select((vrow)(0.0f), exp2(s - li), vis);
    const vrow ds = p * (dp - di);
    for (int x = 0; x < D; x++)
      dqT[x] = fma(ds, (vrow)(LOAD(Kb, ko + (long)x * ksd)), dqT[x]);
  }
  __global stype *dQb = dQ + (long)b * qsb + (long)h * qsh;
  for (int x = 0; x < D; x++) {
    float tq[W];
    VSTORE_ROW(dqT[x] * scale, 0, tq);
    for (int r = 0; r < W; r++)
      if (q0 + r < Nq) STORE(dQb, ROW_OFF(q0 + r, qss) + (long)x * qsd, tq[r]);
  }
}
#endif /* ROWS */
