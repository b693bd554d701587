/* flash_bwd.cl — portable deterministic attention backward (FlashAttention-2): D, dK/dV, dQ. */

/*
 * Three kernels, enqueued in this order by src/flash_bwd.c:
 *
 *   flash_bwd_pre   D_i = rowsum(dO_i ∘ O_i), one work-item per query row.
 *   flash_bwd_dkdv  one work-group per (key tile of BN keys, batch, KV
 *                   head): for each query head of the KV head (h = hk·G ..
 *                   hk·G + G − 1, in this order) and each query tile of BM
 *                   rows (ascending) it recomputes the tile's
 *                   P = exp2(q·k·scale·log2e − LSE·log2e) and
 *                   dS = P∘(dO·v − D), then dV += PᵀdO, dK += dSᵀQ.
 *   flash_bwd_dq    one work-group per (query tile of BM rows, batch, head):
 *                   it streams key tiles (ascending), recomputes P and dS,
 *                   and adds dQ += dS K.
 *
 * Every sum runs in one work-item in a fixed order: no atomics, results are
 * bitwise reproducible. P exists only tile by tile. Accumulation is float for every
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

/* Ragged batches (-DRAGGED=1): Q/O/dO/dQ packed [total_q][H][d] and
 * K/V/dK/dV packed [total_kv][Hk][d] (batch strides 0), sequence b owning
 * rows cu_q[b] .. cu_q[b+1]-1 and keys cu_kv[b] .. cu_kv[b+1]-1. The kernels
 * take the plan's maxima (FLASH_NQ / FLASH_NK: Nq_max / Nk_max) and BWD_SEQ
 * declares the sequence's Nq, Nk and first rows (flash_ragged in common.cl:
 * inconsistent tables empty the sequence, nothing is read or written for
 * it); base pointers move to the sequence's first row, so every row index
 * below is relative to it. The LSE is [total_q][H]; the workspace D stays
 * [B·H][Nq_max]. Work-groups past their sequence's rows or keys return at
 * once (the whole work-group: no barrier is skipped by part of it). */
#if RAGGED
#define BWD_RAGGED_ARGS                                                                            \
  , __global const int *restrict cu_q, __global const int *restrict cu_kv, const int total_q,      \
      const int total_kv
#define BWD_SEQ(b)                                                                                 \
  int qstart, Nq, kstart, Nk;                                                                      \
  flash_ragged((b), cu_q, cu_kv, Nq_max, Nk_max, total_q, total_kv, &qstart, &Nq, &kstart, &Nk);
#define BWD_LSE(bh, i) ((long)(qstart + (i)) * H + (bh) % H)
#else
#define BWD_RAGGED_ARGS
#define BWD_SEQ(b) const int qstart = 0, kstart = 0;
#define BWD_LSE(bh, i) ((long)(bh) * Nq + (i))
#endif
#define BWD_D(bh, i) ((long)(bh) * FLASH_NQ + (i)) /* the workspace D */

#if SPARSE
#define BWD_TILE_ARGS , __global const uint *restrict tbits, const int tb_words
#define TILE_LISTED(qt, kt) ((tbits[(long)(qt) * tb_words + ((kt) >> 5)] >> ((kt) & 31)) & 1u)
#else
#define BWD_TILE_ARGS
#endif

#if RAGGED
#define BWD_PRE_RAGGED_ARGS , __global const int *restrict cu_q, const int total_q
#else
#define BWD_PRE_RAGGED_ARGS
#endif

/* The inputs every main kernel takes (strides in elements: q, k, v, o/dO). */
#define BWD_ARGS                                                                                   \
  __global const stype *restrict Q, __global const stype *restrict K,                              \
      __global const stype *restrict V, __global const stype *restrict dO,                         \
      __global const float *restrict LSE, __global const float *restrict Dd, const long qsb,       \
      const long qsh, const long qss, const long qsd, const long ksb, const long ksh,              \
      const long kss, const long ksd, const long vsb, const long vsh, const long vss,              \
      const long vsd, const long osb, const long osh, const long oss, const long osd, const int H, \
      const int G, const int FLASH_NQ, const int FLASH_NK, const float qscale,                     \
      const float scale BWD_RAGGED_ARGS

__kernel void flash_bwd_pre(__global const stype *restrict O, __global const stype *restrict dO,
                            __global float *restrict Dd, const long osb, const long osh,
                            const long oss, const long osd, const int H,
                            const int FLASH_NQ BWD_PRE_RAGGED_ARGS) {
  const int i = get_global_id(0);
  const int bh = get_global_id(1);
  const int b = bh / H, h = bh % H;
#if RAGGED
  const int a = cu_q[b], c = cu_q[b + 1];
  const bool ok = a >= 0 && a <= c && c <= total_q && c - a <= Nq_max;
  const int qstart = ok ? a : 0, Nq = ok ? c - a : 0;
#else
  const int qstart = 0;
#endif
  if (i >= Nq) return;
  const long base = (long)b * osb + (long)h * osh + ROW_OFF(qstart + i, oss);
  float acc = 0.0f;
  for (int x = 0; x < D; x++) {
    const long e = base + (long)x * osd;
    acc = fma(LOAD(dO, e), LOAD(O, e), acc);
  }
  Dd[BWD_D(bh, i)] = acc;
}

/* Softcap (-DSOFTCAP, common.cl): the score s (log2 units) is capped as in
 * the forward, s_c = SOFTCAP2·tanh(s / SOFTCAP2), and dS is taken back
 * through it: ∂s_c/∂s = 1 − tanh² = 1 − (s_c / SOFTCAP2)². BWD_SOFTCAP(s, T)
 * caps s in place and declares the factor; BWD_SOFTCAP_GRAD multiplies dS by
 * it. */
#if SOFTCAP
#define BWD_SOFTCAP(s, T)                                                                          \
  T cap_t;                                                                                         \
  SOFTCAP_APPLY(s, cap_t);                                                                         \
  const T cap_d = 1.0f - ((s) * (1.0f / SOFTCAP2)) * ((s) * (1.0f / SOFTCAP2))
#define BWD_SOFTCAP_GRAD *cap_d
#else
#define BWD_SOFTCAP(s, T) (void)0
#define BWD_SOFTCAP_GRAD
#endif

/* A user mask (-DUSER_MASK, common.cl: clattn_mask_mod compiled in): a pair
 * it hides has P = 0 and dS = 0, as in the forward; `user` is
 * clattn_exec_args.user. It is evaluated for existing rows and keys only. */
/* A bias tensor (-DBIAS, common.cl: FLASH_BIAS_ARGS, BIAS_AT): added to the
 * score after softcap and ALiBi as in the forward (log2 units here); -inf
 * (a false bool) hides the pair. bwd_tile takes (b, h) for both. */
#if USER_MASK
#define BWD_USER_ARG , __global const uchar *restrict user
#define BWD_UPTR_PARAM , __global const uchar *user
#define BWD_UPTR_PASS , user
#else
#define BWD_USER_ARG
#define BWD_UPTR_PARAM
#define BWD_UPTR_PASS
#endif
#if BIAS
#define BWD_BIAS_PARAM                                                                             \
  , __global const uchar *bias, const long bsb, const long bsh, const long bsq, const long bsk
#define BWD_BIAS_PASS , bias, bsb, bsh, bsq, bsk
#else
#define BWD_BIAS_PARAM
#define BWD_BIAS_PASS
#endif
#if USER_MASK || BIAS
#define BWD_USER_PARAM , const int ub, const int uh BWD_UPTR_PARAM BWD_BIAS_PARAM
#define BWD_USER_PASS(b, h) , (b), (h)BWD_UPTR_PASS BWD_BIAS_PASS
#else
#define BWD_USER_PARAM
#define BWD_USER_PASS(b, h)
#endif

/* ALiBi (-DALIBI, common.cl): the score of query position p against key j
 * loses slope2·|p − j| (log2 units), as in the forward; P is recomputed with
 * it and the gradients' formulas are unchanged (an additive constant).
 * Attention sinks need nothing here: the forward's LSE holds them. */
#if ALIBI
#define BWD_ALIBI_PARAM , const float slope2
#define BWD_ALIBI_PASS(h) , alibi_slope2((h), H)
#else
#define BWD_ALIBI_PARAM
#define BWD_ALIBI_PASS(h)
#endif

#ifndef ROWS
#define ROWS 0
#endif
#ifndef TC
#define TC 0
#endif

#if TC
/* -DTC=1: the tensor-core kernels of flash_bwd_tc.cl follow (this file gives
 * them the argument lists, the ragged bookkeeping and flash_bwd_pre). */
#elif !ROWS
/*
 * The work-group kernels (GPUs): NT work-items share a tile of BM query rows
 * × BN keys. Phase 1 recomputes the tile's P and dS into local memory (each
 * work-item a few (row, key) entries, full-length dot products from local
 * rows padded to LD = D + 1 floats so that the items of a warp hit distinct
 * banks); phase 2 accumulates the products, each work-item owning a slice of
 * the outputs: (key c, dims x ≡ x0 mod XS) of dK and dV in the dK/dV kernel,
 * (row r, dims x ≡ x0 mod XS) of dQ in the dQ kernel. Every output element
 * sums its terms in one work-item in ascending order: deterministic.
 */
#ifndef NT
#define NT 128
#endif
#define LD (D + 1)
#define LDP (BN + 1) /* row stride of the P and dS tiles (the dQ pass reads columns) */
#if (NT % BN) || (NT % BM)
#error "flash_bwd: NT must be a multiple of BM and BN"
#endif

/* Rows [row0, row0 + n) of a tensor into a local tile (rows past limit: 0). */
inline void bwd_load(__local float *dst, __global const stype *base, long ss, long sd, int row0,
                     int n, int limit, float mul, int lid) {
  for (int idx = lid; idx < n * D; idx += NT) {
    const int r = idx / D, x = idx % D;
    dst[r * LD + x] = row0 + r < limit ? LOAD(base, ROW_OFF(row0 + r, ss) + (long)x * sd) * mul : 0.0f;
  }
}

/* Phase 1: P and dS of the tile (queries q0.., keys k0..) from Qs (pre-scaled
 * by scale·log2 e), Os (dO), Ks, Vs, Ls (LSE·log2 e), Ds (D). */
inline void bwd_tile(__local const float *Qs, __local const float *Os, __local const float *Ks,
                     __local const float *Vs, __local const float *Ls, __local const float *Ds,
                     __local float *Ps, __local float *dSs, int q0, int k0, int Nq, int Nk,
                     int off, int lid BWD_ALIBI_PARAM BWD_USER_PARAM
#if SPARSE
                     ,
                     __global const uint *restrict sp_bits, const int sp_left, const int sp_right,
                     const int sp_step, const int sp_stride, const int sp_nglobal,
                     const int sp_block, const int sp_row_words, const int sp_qb0,
                     const int sp_flags
#endif
) {
  for (int idx = lid; idx < BM * BN; idx += NT) {
    const int r = idx / BN, c = idx % BN;
    const int i = q0 + r, j = k0 + c;
    bool vis = i < Nq && j < Nk;
#if CAUSAL
    vis = vis && j <= i + off;
#endif
#if SPARSE
    vis = vis && sp_visible(i + off, j, Nk, SPARSE_MASK_PASS);
#endif
#if USER_MASK
    vis = vis && clattn_mask_mod(ub, uh, i, j, user);
#endif
    float p = 0.0f, ds = 0.0f;
    if (vis) {
      float s = 0.0f, dp = 0.0f;
      for (int x = 0; x < D; x++) {
        s = fma(Qs[r * LD + x], Ks[c * LD + x], s);
        dp = fma(Os[r * LD + x], Vs[c * LD + x], dp);
      }
      BWD_SOFTCAP(s, float);
#if ALIBI
      s -= slope2 * (float)abs(i + off - j);
#endif
#if BIAS
      const float bv = BIAS_AT(ub, uh, i, j);
      s += bv * CLATTN_LOG2E;
      p = BIAS_HIDES(bv) ? 0.0f : exp2(s - Ls[r]);
#else
      p = exp2(s - Ls[r]);
#endif
      ds = p * (dp - Ds[r]) BWD_SOFTCAP_GRAD;
    }
    Ps[r * LDP + c] = p;
    dSs[r * LDP + c] = ds;
  }
}

#if SPARSE
#define TILE_MASK_PASS , SPARSE_MASK_PASS
#else
#define TILE_MASK_PASS
#endif

#define XS_KV (NT / BN)              /* dim slices per key in the dK/dV kernel */
#define RX_KV ((D + XS_KV - 1) / XS_KV)
#define XS_Q (NT / BM)               /* dim slices per row in the dQ kernel */
#define RX_Q ((D + XS_Q - 1) / XS_Q)

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_bwd_dkdv(BWD_ARGS, __global stype *restrict dK, __global stype *restrict dV BWD_TILE_ARGS
                             BWD_USER_ARG FLASH_BIAS_ARGS SPARSE_MASK_ARGS) {
  __local float Ks[BN * LD], Vs[BN * LD], Qs[BM * LD], Os[BM * LD];
  __local float Ps[BM * LDP], dSs[BM * LDP], Ls[BM], Ds[BM];

  const int lid = get_local_id(0);
  const int kt = get_group_id(0);
  const int bhk = get_group_id(1);
  const int Hk = H / G;
  const int b = bhk / Hk, hk = bhk % Hk;
  const int k0 = kt * BN;
  BWD_SEQ(b)
  if (k0 >= Nk) return; /* past the sequence's keys (ragged) */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk); /* sparse masks: bottom-right */
  const int c = lid % BN, x0 = lid / BN;         /* this item's outputs: key c, dims x0 + u·XS */

  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
  bwd_load(Ks, Kb, kss, ksd, k0, BN, Nk, qscale, lid);
  bwd_load(Vs, Vb, vss, vsd, k0, BN, Nk, 1.0f, lid);
  float dk[RX_KV], dv[RX_KV];
  for (int u = 0; u < RX_KV; u++) {
    dk[u] = 0.0f;
    dv[u] = 0.0f;
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
    __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
    __global const stype *dOb = dO + (long)b * osb + (long)h * osh + ROW_OFF(qstart, oss);
    for (int qt = qt0; qt < nqt; qt++) {
#if SPARSE
      if (!TILE_LISTED(qt, kt)) continue; /* uniform: the whole work-group skips */
#endif
      const int q0 = qt * BM;
      barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's reads are done */
      bwd_load(Qs, Qb, qss, qsd, q0, BM, Nq, 1.0f, lid);
      bwd_load(Os, dOb, oss, osd, q0, BM, Nq, 1.0f, lid);
      for (int r = lid; r < BM; r += NT) {
        const int i = q0 + r;
        Ls[r] = i < Nq ? LSE[BWD_LSE(bh, i)] * CLATTN_LOG2E : 0.0f;
        Ds[r] = i < Nq ? Dd[BWD_D(bh, i)] : 0.0f;
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      bwd_tile(Qs, Os, Ks, Vs, Ls, Ds, Ps, dSs, q0, k0, Nq, Nk, off,
               lid BWD_ALIBI_PASS(h) BWD_USER_PASS(b, h) TILE_MASK_PASS);
      barrier(CLK_LOCAL_MEM_FENCE);
      for (int r = 0; r < BM; r++) {
        const float p = Ps[r * LDP + c], ds = dSs[r * LDP + c];
#pragma unroll
        for (int u = 0; u < RX_KV; u++) {
          const int x = x0 + u * XS_KV;
          if (x < D) {
            dv[u] = fma(p, Os[r * LD + x], dv[u]);
            dk[u] = fma(ds, Qs[r * LD + x], dk[u]);
          }
        }
      }
    }
  }
  const int j = k0 + c;
  if (j < Nk) {
    __global stype *dKb = dK + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart + j, kss);
    __global stype *dVb = dV + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart + j, vss);
    for (int u = 0; u < RX_KV; u++) {
      const int x = x0 + u * XS_KV;
      if (x < D) {
        STORE(dKb, (long)x * ksd, dk[u] * scale);
        STORE(dVb, (long)x * vsd, dv[u]);
      }
    }
  }
}

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_bwd_dq(BWD_ARGS, __global stype *restrict dQ BWD_TILE_ARGS BWD_USER_ARG FLASH_BIAS_ARGS
                 SPARSE_MASK_ARGS) {
  __local float Ks[BN * LD], Vs[BN * LD], Qs[BM * LD], Os[BM * LD];
  __local float Ps[BM * LDP], dSs[BM * LDP], Ls[BM], Ds[BM];

  const int lid = get_local_id(0);
  const int qt = get_group_id(0);
  const int bh = get_group_id(1);
  const int b = bh / H, h = bh % H, hk = h / G;
  const int q0 = qt * BM;
  BWD_SEQ(b)
  if (q0 >= Nq) return; /* past the sequence's rows (ragged) */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const int r = lid % BM, x0 = lid / BM; /* this item's outputs: row r, dims x0 + u·XS */

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
  __global const stype *dOb = dO + (long)b * osb + (long)h * osh + ROW_OFF(qstart, oss);
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
  bwd_load(Qs, Qb, qss, qsd, q0, BM, Nq, qscale, lid);
  bwd_load(Os, dOb, oss, osd, q0, BM, Nq, 1.0f, lid);
  for (int rr = lid; rr < BM; rr += NT) {
    const int i = q0 + rr;
    Ls[rr] = i < Nq ? LSE[BWD_LSE(bh, i)] * CLATTN_LOG2E : 0.0f;
    Ds[rr] = i < Nq ? Dd[BWD_D(bh, i)] : 0.0f;
  }
  float dq[RX_Q];
  for (int u = 0; u < RX_Q; u++)
    dq[u] = 0.0f;
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
    bwd_load(Ks, Kb, kss, ksd, k0, BN, Nk, 1.0f, lid);
    bwd_load(Vs, Vb, vss, vsd, k0, BN, Nk, 1.0f, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    bwd_tile(Qs, Os, Ks, Vs, Ls, Ds, Ps, dSs, q0, k0, Nq, Nk, off,
             lid BWD_ALIBI_PASS(h) BWD_USER_PASS(b, h) TILE_MASK_PASS);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int cc = 0; cc < BN; cc++) {
      const float ds = dSs[r * LDP + cc];
#pragma unroll
      for (int u = 0; u < RX_Q; u++) {
        const int x = x0 + u * XS_Q;
        if (x < D) dq[u] = fma(ds, Ks[cc * LD + x], dq[u]);
      }
    }
  }
  const int i = q0 + r;
  if (i < Nq) {
    __global stype *dQb = dQ + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart + i, qss);
    for (int u = 0; u < RX_Q; u++) {
      const int x = x0 + u * XS_Q;
      if (x < D) STORE(dQb, (long)x * qsd, dq[u] * scale);
    }
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
#define convert_float8_or16 convert_float8
#else
typedef float16 vrow;
typedef int16 vrowi;
#define VLOAD_ROW vload16
#define VSTORE_ROW vstore16
#define ROW_IDS ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define convert_float8_or16 convert_float16
#endif
#if BIAS
/* The bias of the W pairs (b, h, I, J) over lane u (LIVE: the pair exists),
 * added to the row vector s (log2 units); the pairs it hides leave vis. */
#define BWD_BIAS_ROW(I, J, LIVE)                                                                   \
  do {                                                                                             \
    float bt[W];                                                                                   \
    int shown[W];                                                                                  \
    for (int u = 0; u < W; u++) {                                                                  \
      bt[u] = (LIVE) ? BIAS_AT(b, h, (I), (J)) : 0.0f;                                             \
      shown[u] = BIAS_HIDES(bt[u]) ? 0 : -1;                                                       \
    }                                                                                              \
    s += VLOAD_ROW(0, bt) * CLATTN_LOG2E;                                                          \
    vis = vis & VLOAD_ROW(0, shown);                                                               \
  } while (0)
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
flash_bwd_dkdv(BWD_ARGS, __global stype *restrict dK, __global stype *restrict dV BWD_TILE_ARGS
                             BWD_USER_ARG FLASH_BIAS_ARGS SPARSE_MASK_ARGS) {
  const int kt = get_group_id(0);
  const int bhk = get_group_id(1);
  const int Hk = H / G;
  const int b = bhk / Hk, hk = bhk % Hk;
  const int k0 = kt * W;
  BWD_SEQ(b)
  if (k0 >= Nk) return; /* past the sequence's keys (ragged) */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const vrowi jv = k0 + ROW_IDS;

  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
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
    __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
    __global const stype *dOb = dO + (long)b * osb + (long)h * osh + ROW_OFF(qstart, oss);
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
#if USER_MASK
      {
        int tm[W];
        for (int c = 0; c < W; c++)
          tm[c] = k0 + c < Nk && clattn_mask_mod(b, h, i, k0 + c, user) ? -1 : 0;
        vis = vis & VLOAD_ROW(0, tm);
      }
#endif
      if (!any(vis)) continue;
      const long qo = ROW_OFF(i, qss), oo = ROW_OFF(i, oss);
      float qr[D], orow[D]; /* the row, loaded (and converted) once */
      vrow s = (vrow)(0.0f), dp = (vrow)(0.0f);
      for (int x = 0; x < D; x++) {
        qr[x] = LOAD(Qb, qo + (long)x * qsd);
        orow[x] = LOAD(dOb, oo + (long)x * osd);
        s = fma((vrow)(qr[x]), kT[x], s);
        dp = fma((vrow)(orow[x]), vT[x], dp);
      }
      BWD_SOFTCAP(s, vrow);
#if ALIBI
      s -= alibi_slope2(h, H) * convert_float8_or16(abs(i + off - jv));
#endif
#if BIAS
      BWD_BIAS_ROW(i, k0 + u, k0 + u < Nk);
#endif
      const vrow p = select((vrow)(0.0f), exp2(s - LSE[BWD_LSE(bh, i)] * CLATTN_LOG2E), vis);
      const vrow ds = p * (dp - Dd[BWD_D(bh, i)]) BWD_SOFTCAP_GRAD;
      for (int x = 0; x < D; x++) {
        dvT[x] = fma(p, (vrow)(orow[x]), dvT[x]);
        dkT[x] = fma(ds, (vrow)(qr[x]), dkT[x]);
      }
    }
  }
  __global stype *dKb = dK + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global stype *dVb = dV + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
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
flash_bwd_dq(BWD_ARGS, __global stype *restrict dQ BWD_TILE_ARGS BWD_USER_ARG FLASH_BIAS_ARGS
                 SPARSE_MASK_ARGS) {
  const int qt = get_group_id(0);
  const int bh = get_group_id(1);
  const int b = bh / H, h = bh % H, hk = h / G;
  const int q0 = qt * W;
  BWD_SEQ(b)
  if (q0 >= Nq) return; /* past the sequence's rows (ragged) */
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const vrowi iv = q0 + ROW_IDS;

  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
  __global const stype *dOb = dO + (long)b * osb + (long)h * osh + ROW_OFF(qstart, oss);
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh + ROW_OFF(kstart, kss);
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh + ROW_OFF(kstart, vss);
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
      tl[r] = i < Nq ? LSE[BWD_LSE(bh, i)] * CLATTN_LOG2E : 0.0f;
      td[r] = i < Nq ? Dd[BWD_D(bh, i)] : 0.0f;
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
#if USER_MASK
    {
      int tm[W];
      for (int r = 0; r < W; r++)
        tm[r] = q0 + r < Nq && clattn_mask_mod(b, h, q0 + r, j, user) ? -1 : 0;
      vis = vis & VLOAD_ROW(0, tm);
    }
#endif
    if (!any(vis)) continue;
    const long ko = ROW_OFF(j, kss), vo = ROW_OFF(j, vss);
    float kr[D]; /* the key row, loaded (and converted) once */
    vrow s = (vrow)(0.0f), dp = (vrow)(0.0f);
    for (int x = 0; x < D; x++) {
      kr[x] = LOAD(Kb, ko + (long)x * ksd);
      s = fma(qT[x], (vrow)(kr[x]), s);
      dp = fma(oT[x], (vrow)(LOAD(Vb, vo + (long)x * vsd)), dp);
    }
    BWD_SOFTCAP(s, vrow);
#if ALIBI
    s -= alibi_slope2(h, H) * convert_float8_or16(abs(iv + off - j));
#endif
#if BIAS
    BWD_BIAS_ROW(q0 + u, j, q0 + u < Nq);
#endif
    const vrow p = select((vrow)(0.0f), exp2(s - li), vis);
    const vrow ds = p * (dp - di) BWD_SOFTCAP_GRAD;
    for (int x = 0; x < D; x++)
      dqT[x] = fma(ds, (vrow)(kr[x]), dqT[x]);
  }
  __global stype *dQb = dQ + (long)b * qsb + (long)h * qsh + ROW_OFF(qstart, qss);
  for (int x = 0; x < D; x++) {
    float tq[W];
    VSTORE_ROW(dqT[x] * scale, 0, tq);
    for (int r = 0; r < W; r++)
      if (q0 + r < Nq) STORE(dQb, ROW_OFF(q0 + r, qss) + (long)x * qsd, tq[r]);
  }
}
#endif /* ROWS */
