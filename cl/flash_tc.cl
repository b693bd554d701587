/* flash_tc.cl — NVIDIA sm_80+ flash forward on tensor cores: mma.sync m16n8k16 (f16/bf16 → f32) via
 * inline PTX. */

/*
 * Same function as flash_fwd.cl for f16/bf16 storage, selected at plan time on
 * NVIDIA devices of compute capability >= 8.0. A work-group of WARPS warps
 * owns BM = 16·MT·WARPS query rows; warp w owns MT m-tiles of 16 rows
 * (rows 16·(MT·w + mt) + 0..15). Each warp keeps its Q rows as mma A-fragments
 * in registers for the whole kernel (loaded straight from global memory),
 * streams K
 * and V tiles of BN keys through local memory, computes S = Q·Kᵀ with
 * m16n8k16 MMAs into f32 accumulators, does the online softmax on the
 * accumulator fragments (row max/sum across the 4 lanes of a row with
 * shfl.sync), converts P to f16x2/bf16x2 in registers (the S accumulator
 * layout is exactly the A-fragment layout of the next MMA) and accumulates
 * O += P·V with m16n8k16 MMAs. Fragment layout (PTX ISA, mma.m16n8k16):
 * lane = 4·g + t; A regs hold rows g / g+8, cols 2t..2t+1 / 2t+8..2t+9;
 * B regs hold k rows 2t..2t+1 / 2t+8..2t+9 of column g; C holds rows g / g+8,
 * cols 2t, 2t+1.
 *
 * Local memory: KVs[2·BN][LDK] 16-bit elements; K in the first BN rows, V in
 * the next BN, both row-major [key][dim] with rows padded by 8 elements so
 * that the fragment reads of a warp hit 32 distinct banks; fragments are read
 * with ldmatrix (.trans for V). With MT = 2 every K/V fragment read from local
 * memory feeds two MMAs (one per m-tile): one m16n8k16 needs 256 B of B
 * operand, and at the MMA rate of an H100/H200 SM one m-tile per warp would
 * need more local-memory bandwidth (~164 B/clk) than the SM has (128 B/clk).
 */

/* D, CAUSAL, VEC_GLOBAL: see nv_mma.cl */
#define DP ((D + 15) / 16 * 16) /* head dim padded to the MMA k step */
#ifndef WARPS
#define WARPS 4
#endif
#ifndef MT
#define MT 1 /* m-tiles (16 query rows each) per warp */
#endif
#ifndef BN
#define BN 64
#endif

#define BM (16 * MT * WARPS)
#define NT (32 * WARPS)
#define LDK (DP + 8)  /* row stride (elements) of KVs */
#define KCH (DP / 16) /* k-steps of S = Q Kᵀ */
#define NTS (BN / 8)  /* n-tiles of S */
#define NTO (DP / 8)  /* n-tiles of O */
#define KCP (BN / 16) /* k-steps of O = P V */
#define CH8 (DP / 8)  /* 8-element chunks per row */

/* Forward modifiers (cl/common.cl: softcap, ALiBi, user score_mod and
 * mask_mod, bias tensor, sinks): the scores are scaled into log2 units
 * right after Q·Kᵀ (one multiply each) so that the modifiers see the
 * portable kernel's values, and the softmax runs with a unit scale. A user
 * mask walks its block lists (clattn_plan_update_mask_blocks: hidden tiles
 * cost nothing, shown ones skip the per-element mask) with the cp.async
 * pipeline fetching the next listed tile. */
#define TC_MODS (SCORE_MODS || USER_SCORE || USER_MASK || BIAS || SINKS)
/* every score of a lane: s[mt][j][e] (row row0[mt] + 8·(e/2), key
 * kv0 + 8j + 2t + e%2) */
#define TC_EACH_SCORE(mt, j, e)                                                                    \
  _Pragma("unroll") for (int mt = 0; mt < MT; mt++)                                                \
  _Pragma("unroll") for (int j = 0; j < NTS; j++)                                                  \
  _Pragma("unroll") for (int e = 0; e < 4; e++)
#if TC_MODS
#define TC_QSCALE 1.0f
#else
#define TC_QSCALE tcq
#endif

#if (BN % 16) || (MT < 1) || (MT > 2)
#error "flash_tc: BN must be a multiple of 16 and MT 1 or 2"
#endif
#ifndef ASYNC
#define ASYNC 0
#endif
#if KVQ && (ASYNC || KVS == 3)
#error "flash_tc: 8-bit K/V with synchronous loads and token, tensor or head scales"
#endif

#if KVQ
/* 8-bit K/V (KVQ 1 int8, 2 e4m3, 3 e5m2): rows [row0, row0 + nrows) of
 * codes (rows past `limit` and dims past D → 0), 16 codes a work-item,
 * turned into exact 16-bit values (nv_mma.cl KV8X4_TO_X2) in local rows of
 * LDK elements; the scales multiply scores (K) and probabilities (V), not
 * elements. KV8_VEC: rows of whole 16-byte chunks (unit dim stride, D and
 * the strides multiples of 16). */
#ifndef KV8_VEC
#define KV8_VEC 0
#endif
#define CH16 (DP / 16)
inline void load_tile8(__local ushort *dst, __global const kvtype *base, long ss, long sd,
                       int row0, int nrows, int limit, int lid) {
  for (int idx = lid; idx < nrows * CH16; idx += NT) {
    const int r = idx / CH16, ch = idx % CH16;
    uint4 x = (uint4)(0u);
#if KV8_VEC
    if (row0 + r < limit) x = *(__global const uint4 *)(base + (long)(row0 + r) * ss + 16 * ch);
#else
    if (row0 + r < limit) x = load_chunk8x16(base, (long)(row0 + r) * ss, ch, sd);
#endif
    uint a0, a1, a2, a3, a4, a5, a6, a7;
    KV8X4_TO_X2(x.x, &a0, &a1);
    KV8X4_TO_X2(x.y, &a2, &a3);
    KV8X4_TO_X2(x.z, &a4, &a5);
    KV8X4_TO_X2(x.w, &a6, &a7);
    *(__local uint4 *)(dst + r * LDK + 16 * ch) = (uint4)(a0, a1, a2, a3);
    *(__local uint4 *)(dst + r * LDK + 16 * ch + 8) = (uint4)(a4, a5, a6, a7);
  }
}
#endif

/* Copies rows [row0, row0 + nrows) of a 16-bit tensor (rows past `limit` and
 * dims past D → 0) into local rows of LDK elements. */
inline void load_tile16(__local ushort *dst, __global const ushort *base, long ss, long sd,
                        int row0, int nrows, int limit, int lid) {
  for (int idx = lid; idx < nrows * CH8; idx += NT) {
    const int r = idx / CH8, ch = idx % CH8;
    uint4 x = (uint4)(0u);
    if (row0 + r < limit && 8 * ch < D) x = load_chunk16(base, (long)(row0 + r) * ss, ch, sd);
    *(__local uint4 *)(dst + r * LDK + 8 * ch) = x;
  }
}

inline uint lds32(__local const ushort *p) { return *(__local const uint *)p; }

#if ASYNC
/* cp.async version of load_tile16 (VEC_GLOBAL layouts only): rows past
 * `limit` and chunks past D are zero-filled by a source size of 0. */
inline void load_tile16_async(__local ushort *dst, __global const ushort *base, long ss, int row0,
                              int nrows, int limit, int lid) {
  for (int idx = lid; idx < nrows * CH8; idx += NT) {
    const int r = idx / CH8, ch = idx % CH8;
    const bool ok = row0 + r < limit && 8 * ch < D;
    __global const ushort *src = ok ? base + (long)(row0 + r) * ss + 8 * ch : base;
#if CLATTN_NV_EMU /* a plain copy (the emulation's addresses are relative to the kernel's array) */
    *(__local uint4 *)(dst + r * LDK + 8 * ch) = ok ? *(__global const uint4 *)src : (uint4)(0u);
#else
    CP_ASYNC16(smem_addr(dst + r * LDK + 8 * ch), src, ok);
#endif
  }
}
#endif

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tc(FLASH_ARGS(ushort)) {
  /* uint4 storage: 16-byte alignment for the vector stores. */
  __local uint4 KVs_raw[2 * BN * LDK / 8];
  __local ushort *KVs = (__local ushort *)KVs_raw;
  __local ushort *Ks = KVs;
  __local ushort *Vs = KVs + BN * LDK;
#if KVQ && KVS == 0
  __local float ksl[BN], vsl[BN]; /* the tile's token scales */
#endif
#if CLATTN_NV_EMU /* nv_mma.cl's emulation of the warp-level PTX (tests on CPUs) */
#define NV_EMU_LANES NT
  NV_EMU_SCRATCH;
#define NV_EMU_BASE ((__local uchar *)KVs_raw)
#endif

  const int lid = get_local_id(0);
  const int warp = lid / 32, lane = lid % 32;
  const int g = lane >> 2, t = lane & 3;
  FLASH_PROLOGUE(ushort, BM)

  /* Rows of this lane: row0[mt] and row0[mt] + 8. */
  int row0[MT];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
    row0[mt] = q0 + (warp * MT + mt) * 16 + g;

  /* Q → A fragments, straight from global memory (once per kernel). */
  uint qf[MT][KCH][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int kc = 0; kc < KCH; kc++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        qf[mt][kc][e] = q_pair(Qb, row0[mt] + (e & 1) * 8, 16 * kc + 2 * t + (e >> 1) * 8, Nq,
                               qss, qsd);

  float o[MT][NTO][4];
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int j = 0; j < NTO; j++)
      o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }

  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const int ntiles = flash_dense_tiles(q0, BM, BN, Nq, Nk, CAUSAL);
#if ALIBI
  const float mod_slope2 = alibi_slope2(h, H);
#endif
  /* the scale of the raw scores (log2 e · scale), with 8-bit K's tensor or
   * head scale folded in once (token scales multiply each key's scores) */
#if KVQ && KVS != 0
  const float tcq = qscale * KV_SCALE(ksc, b, 0, 0);
#else
  const float tcq = qscale;
#endif
#if SPARSE
  /* A sparse mask's tiles: the row block's list (kt·2 + partial) from the
   * host (cl/common.cl SPARSE; the longest lists run first); -1 past its
   * end. */
  const int t0 = sp_tile_off[qb], nlist = sp_tile_off[qb + 1] - t0;
#define TC_ENTRY(t) ((t) < nlist ? sp_tiles[t0 + (t)] : -1)
#define TC_SHIFT 1
#elif USER_MASK
  /* The row block's tiles: its list entries (kt·4 + class) while they lie
   * below the causal limit; -1 past the end. A class-0 entry (never in the
   * lists) would be masked element by element. */
  const int nkt = (FLASH_NK + BN - 1) / BN; /* the lists' row stride: the plan's tiles */
  const int nlist = USER_LIST_COUNT(bh, qb, ntiles);
#define TC_ENTRY(t)                                                                                \
  ((t) < nlist && (USER_LIST_ENTRY(bh, qb, t, nkt) >> 2) < ntiles ? USER_LIST_ENTRY(bh, qb, t, nkt) \
                                                                  : -1)
#define TC_SHIFT 2
#endif
#if SPARSE || USER_MASK
  int ent = TC_ENTRY(0);
  const int kv_first = ent >= 0 ? (ent >> TC_SHIFT) * BN : -1;
#else
  const int kv_first = ntiles > 0 ? 0 : -1;
#endif
  /* ldmatrix addresses: lane L addresses row L&7 of matrix L>>3. K: keys +8
   * for matrices 2,3, dims +8 for 1,3. V (.trans): keys +8 for 1,3, dims +8
   * for 2,3. */
  const uint kbase = smem_addr(Ks + ((lane >> 4) * 8 + (lane & 7)) * LDK + ((lane >> 3) & 1) * 8);
  const uint vbase = smem_addr(Vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * LDK + (lane >> 4) * 8);

#if ASYNC
  /* cp.async pipeline over one K and one V buffer: K(t+1) streams in during
   * the softmax and P·V of tile t, V(t+1) during Q·Kᵀ of tile t+1. */
  if (kv_first >= 0) load_tile16_async(Ks, Kb, kss, kv_first, BN, Nk, lid);
  CP_COMMIT();
  if (kv_first >= 0) load_tile16_async(Vs, Vb, vss, kv_first, BN, Nk, lid);
  CP_COMMIT();
#endif
#if SPARSE || USER_MASK
  for (int tile = 0; ent >= 0; tile++) {
    const int kv0 = (ent >> TC_SHIFT) * BN;
#if USER_MASK
    const int ucls = ent & 3;
#endif
    const int nent = TC_ENTRY(tile + 1);
    const int kv_next = nent >= 0 ? (nent >> TC_SHIFT) * BN : -1;
#else
  for (int tile = 0; tile < ntiles; tile++) {
    const int kv0 = tile * BN;
    const int kv_next = tile + 1 < ntiles ? kv0 + BN : -1;
#endif
#if ASYNC
    CP_WAIT(1); /* K(tile) has landed for this work-item */
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    barrier(CLK_LOCAL_MEM_FENCE); /* previous tile's reads are done */
#if KVQ
    load_tile8(Ks, Kb, kss, ksd, kv0, BN, Nk, lid);
    load_tile8(Vs, Vb, vss, vsd, kv0, BN, Nk, lid);
#if KVS == 0
    for (int i = lid; i < BN; i += NT) {
      const bool ok = kv0 + i < Nk;
      ksl[i] = ok ? KV_SCALE(ksc, b, kstart + kv0 + i, 0) : 0.0f;
      vsl[i] = ok ? KV_SCALE(vsc, b, kstart + kv0 + i, 0) : 0.0f;
    }
#endif
#else
    load_tile16(Ks, Kb, kss, ksd, kv0, BN, Nk, lid);
    load_tile16(Vs, Vb, vss, vsd, kv0, BN, Nk, lid);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    /* S = Q·Kᵀ (raw scores; the scale is folded into the exponent). */
    float s[MT][NTS][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < NTS; j++)
        s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < KCH; kc++) {
#pragma unroll
      for (int j = 0; j < NTS; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4(b0, b1, b2, b3, kbase + (uint)((j * 8 * LDK + 16 * kc) * 2));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          MMA(s[mt][j], qf[mt][kc][0], qf[mt][kc][1], qf[mt][kc][2], qf[mt][kc][3], b0, b1);
          MMA(s[mt][j + 1], qf[mt][kc][0], qf[mt][kc][1], qf[mt][kc][2], qf[mt][kc][3], b2, b3);
        }
      }
    }

#if KVQ && KVS == 0 /* K's token scales: per key */
    TC_EACH_SCORE(mt, j, e)
          s[mt][j][e] *= ksl[8 * j + 2 * t + (e & 1)];
#endif
#if ASYNC
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done reading K(tile) */
    if (kv_next >= 0) load_tile16_async(Ks, Kb, kss, kv_next, BN, Nk, lid);
    CP_COMMIT();
#endif
#if TC_MODS
    /* Modifiers on the scores in log2 units (the portable kernel's order:
     * softcap and ALiBi, the user's score function, the bias, the user's
     * mask); rows past Nq and keys past Nk are left to the masks. Softcap:
     * bf16 through tanh.approx (one MUFU operation; its relative error,
     * 2^-11, is far below the rounding of P to bf16 for P·V), f16 through
     * exp2 and a fast reciprocal (two MUFU operations, accurate to ~2^-22:
     * f16's P keeps 11 bits, so tanh.approx's error would double it); ALiBi's distance
     * |p - j| as a float offset from one conversion per row and tile (a
     * conversion per score runs at the MUFU rate too: measured +13-17 % at
     * d = 64 on an H100). */
#if ALIBI
    float pr[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int rr = 0; rr < 2; rr++)
        pr[mt][rr] = (float)(row0[mt] + 8 * rr + off - kv0 - 2 * t);
#endif
    TC_EACH_SCORE(mt, j, e) {
          float x = s[mt][j][e] * tcq;
#if SOFTCAP && CLATTN_DTYPE == 2
          x = SOFTCAP2 * fast_tanh(x * (1.0f / SOFTCAP2));
#elif SOFTCAP /* f16: exp2 and a fast reciprocal (errors ~2^-22) */
          {
            const float tt = fast_exp2(fabs(x) * (-2.0f * CLATTN_LOG2E / SOFTCAP2));
            x = copysign(SOFTCAP2 * (1.0f - tt) * native_recip(1.0f + tt), x);
          }
#endif
#if ALIBI
          x -= mod_slope2 * fabs(pr[mt][e >> 1] - (float)(8 * j + (e & 1)));
#endif
          s[mt][j][e] = x;
        }
#if USER_SCORE || BIAS || USER_MASK
#if USER_SCORE || BIAS
    if (true) {
#else
    if (ucls != 2) { /* tiles the lists show whole skip the mask */
#endif
      TC_EACH_SCORE(mt, j, e) {
            const int qrow = row0[mt] + (e >> 1) * 8, key = kv0 + 8 * j + 2 * t + (e & 1);
            if (qrow < Nq && key < Nk) {
              float x = s[mt][j][e];
#if USER_SCORE
              x = clattn_score_mod(x * CLATTN_LN2, b, h, qrow, key, user) * CLATTN_LOG2E;
#endif
#if BIAS
              const float bv = BIAS_AT(b, h, qrow, key);
              x = BIAS_HIDES(bv) ? -INFINITY : x + bv * CLATTN_LOG2E;
#endif
#if USER_MASK
              if (ucls != 2 && !clattn_mask_mod(b, h, qrow, key, user)) x = -INFINITY;
#endif
              s[mt][j][e] = x;
            }
          }
    }
#endif
#endif
#if SPARSE
    /* a partial tile (host flag) or the tail: each pair's visibility */
    if ((ent & 1) || kv0 + BN > Nk) {
      TC_EACH_SCORE(mt, j, e) {
        const int qrow = row0[mt] + (e >> 1) * 8, key = kv0 + 8 * j + 2 * t + (e & 1);
        if (!sp_visible(qrow + off, key, Nk, SPARSE_MASK_PASS)) s[mt][j][e] = -INFINITY;
      }
    }
#else
#if CAUSAL
    const bool need_mask = (kv0 + BN > Nk) || (kv0 + BN - 1 > q0 + off);
#else
    const bool need_mask = kv0 + BN > Nk;
#endif
    if (need_mask) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
        MASK_FRAGMENT(s[mt], NTS, kv0, t, row0[mt], off, Nk);
    }
#endif

    /* Online softmax on the fragments: rows g and g+8 of each m-tile, the
     * four lanes of a row exchanging max and sum with shuffles. */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int rr = 0; rr < 2; rr++)
        SOFTMAX_STEP(s[mt], NTS, o[mt], NTO, rr, m[mt][rr], l[mt][rr], TC_QSCALE);

#if ASYNC
    CP_WAIT(1); /* V(tile) has landed */
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
#if KVQ && KVS == 0 /* V's token scales into P (after its row sums) */
    TC_EACH_SCORE(mt, j, e)
          s[mt][j][e] *= vsl[8 * j + 2 * t + (e & 1)] * TC_VP2;
#endif
    /* O += P·V: the S accumulator layout is the A-fragment layout. */
#pragma unroll
    for (int kc = 0; kc < KCP; kc++) {
      uint a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = pack2(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        a[mt][1] = pack2(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        a[mt][2] = pack2(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        a[mt][3] = pack2(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int j = 0; j < NTO; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4_T(b0, b1, b2, b3, vbase + (uint)((16 * kc * LDK + j * 8) * 2));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          MMA(o[mt][j], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
          MMA(o[mt][j + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
        }
      }
    }
#if ASYNC
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done reading V(tile) */
    if (kv_next >= 0) load_tile16_async(Vs, Vb, vss, kv_next, BN, Nk, lid);
    CP_COMMIT();
#endif
#if SPARSE || USER_MASK
    ent = nent;
#endif
  }

#if SINKS
  /* the sink: one more term of each row's denominator (log2 units), added
   * by the row's lane t = 0 (the store sums the four lanes' l); a row
   * without a visible key puts all its mass there (zeros, LSE = sink) */
  const float zs = sinks[h] * CLATTN_LOG2E;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      float lt = l[mt][rr];
      lt += shfl_xor(lt, 1);
      lt += shfl_xor(lt, 2);
      const bool empty = lt == 0.0f;
      const float mm = empty ? zs : fmax(m[mt][rr], zs);
      const float a = empty ? 0.0f : exp2(m[mt][rr] - mm);
      l[mt][rr] = l[mt][rr] * a + (t == 0 ? exp2(zs - mm) : 0.0f);
#pragma unroll
      for (int j = 0; j < NTO; j++) {
        o[mt][j][2 * rr] *= a;
        o[mt][j][2 * rr + 1] *= a;
      }
      m[mt][rr] = mm;
    }
#endif

#if KVQ /* V's tensor or head scale, or undoing TC_VP2 */
  {
#if KVS == 0
    const float vs = 1.0f / TC_VP2;
#else
    const float vs = KV_SCALE(vsc, b, 0, 0);
#endif
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < NTO; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          o[mt][j][e] *= vs;
  }
#endif
  __global ushort *Ob = O + (long)b * osb + (long)qstart * oss + (long)h * osh;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      const int row = row0[mt] + 8 * rr;
      STORE_FRAGMENT_ROW(Ob, oss, osd, LSE, write_lse, FLASH_LSE_INDEX(bh, row), o[mt], NTO, rr,
                         row, t, Nq, m[mt][rr], l[mt][rr], TC_QSCALE);
    }
}
