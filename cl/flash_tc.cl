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

/*
 * TF32 (f32 storage, -DCLATTN_DTYPE=0 -DTF32=1; the flash_tf32 variant):
 * the same kernel on mma.sync m16n8k8 .tf32 with 3xTF32 products
 * (nv_mma.cl TF32_SPLIT, MMA3) for f32 accuracy. Q stays f32 in registers
 * and is split per k-step and tile; K and V tiles are f32 in local memory
 * and split as their fragments are read. The k index of both products is
 * permuted inside each group of 8 (A's column t ↔ element 2t, t + 4 ↔
 * 2t + 1; B's rows alike), which leaves the sums unchanged and lets a lane
 * read K's two B elements as one float2 and take P's A operand straight
 * from the S accumulators (c0, c2, c1, c3). K rows are padded to 8 mod 32
 * words (float2 reads by 16 lanes hit 32 banks), V rows to 4 mod 16 (rows
 * 2t, 2t + 1 of 8 columns: 32 banks).
 */

/* D, CAUSAL, VEC_GLOBAL: see nv_mma.cl */
#if TF32
#define DP ((D + 7) / 8 * 8) /* head dim padded to the MMA k step */
#else
#define DP ((D + 15) / 16 * 16) /* head dim padded to the MMA k step */
#endif
#ifndef WARPS
#define WARPS 4
#endif
#ifndef MT
#define MT 1 /* m-tiles (16 query rows each) per warp */
#endif
#ifndef BN
#define BN 64
#endif

#ifndef QLOC
#define QLOC 0 /* Q in local memory (the flash_tcq variant) */
#endif

#define BM (16 * MT * WARPS)
#define NT (32 * WARPS)
#define NTS (BN / 8) /* n-tiles of S */
#define NTO (DP / 8) /* n-tiles of O */
#if TF32
#define TC_ET float
#define LDK ((DP + 31) / 32 * 32 + 8) /* row strides (floats) of the K and V tiles */
#define LDV ((DP + 15) / 16 * 16 + 4)
#define KCH (DP / 8) /* k-steps of S = Q Kᵀ */
#define TC_EPC 4     /* elements a 16-byte chunk */
#ifndef TG
#define TG 4 /* n-tiles of O per fresh P·V accumulator */
#endif
#else
#define TC_ET ushort
#if QLOC
#define LDK DP /* row stride (elements) of the Q, K and V tiles: unpadded, swizzled */
#else
#define LDK (DP + 8) /* row stride (elements) of the K and V tiles */
#endif
#define LDV LDK
#define KCH (DP / 16) /* k-steps of S = Q Kᵀ */
#define KCP (BN / 16) /* k-steps of O = P V */
#define TC_EPC 8      /* elements a 16-byte chunk */
#endif
#define TC_CHUNKS (DP / TC_EPC) /* 16-byte chunks a tile row */

/* Forward modifiers (cl/common.cl: softcap, ALiBi, user score_mod and
 * mask_mod, bias tensor, sinks): the scores are scaled into log2 units
 * right after Q·Kᵀ (one multiply each) so that the modifiers see the
 * portable kernel's values, and the softmax runs with a unit scale. A user
 * mask walks its block lists (clattn_plan_update_mask_blocks: hidden tiles
 * cost nothing, shown ones skip the per-element mask) with the cp.async
 * pipeline fetching the next listed tile. */
#define TC_MODS (SCORE_MODS || USER_SCORE || USER_MASK || BIAS || SINKS)
/* zeroes accumulator fragments a[MT][n][4] */
#define TC_ZERO(a, n)                                                                              \
  _Pragma("unroll") for (int mt_ = 0; mt_ < MT; mt_++)                                             \
  _Pragma("unroll") for (int j_ = 0; j_ < (n); j_++)                                               \
  a[mt_][j_][0] = a[mt_][j_][1] = a[mt_][j_][2] = a[mt_][j_][3] = 0.0f
/* every score of a lane: s[mt][j][e] (row row0[mt] + 8·(e/2), key
 * kv0 + 8j + 2t + e%2) */
#define TC_EACH_SCORE(mt, j, e)                                                                    \
  _Pragma("unroll") for (int mt = 0; mt < MT; mt++)                                                \
  _Pragma("unroll") for (int j = 0; j < NTS; j++)                                                  \
  _Pragma("unroll") for (int e = 0; e < 4; e++)
/* Softcap alone (no other score modifier, no sinks): the scores stay in
 * units of the cap, t = tanh(s·tcq / SOFTCAP2), and the softmax takes
 * SOFTCAP2 as its scale (max and LSE included): two multiplies a score fewer
 * than scaling into log2 units and back, in a kernel whose softmax is bound
 * by its instruction issue (measured on an H100: computing half of the
 * exp2s by a polynomial on the FMA units, FlashAttention 4's offload of the
 * MUFU unit, made softcap 7-15 % slower, bench/RESULTS.md §18). */
#define TC_CAP_ONLY (SOFTCAP && !ALIBI && !USER_SCORE && !BIAS && !SINKS)
/* ALiBi with the sign of each tile's distances (below: TC_MODS); -DALIBI_SIGNED=0: |p - key| per
 * score. */
#ifndef ALIBI_SIGNED
#define ALIBI_SIGNED 1
#endif
/* bf16 softcap alone: the capped scores in log2 units lie in [-C, C], C =
 * SOFTCAP2, so the softmax needs no running maximum: p = 2^(x - c) with
 * the fixed c = C for C < 48 (p in [2^-2C, 1]), else 96 - C (p in [2^-96,
 * 2^(2C - 96)]) is neither denormal (P·V keeps values of V down to 2^-30
 * normal) nor large enough to overflow l or O, and bf16's P has f32's
 * exponent range (f16's has not: it keeps the running maximum). No row
 * maximum, shuffles, rescale factor or O rescale per tile: the softmax of
 * this kernel is bound by instruction issue. Up to C = 80 (a cap of 55.4;
 * above it the running maximum). -DNO_CAP_FIXED=1 turns it off. */
#ifndef NO_CAP_FIXED
#define NO_CAP_FIXED 0
#endif
#define TC_CAP_FIXED                                                                               \
  (TC_MODS && TC_CAP_ONLY && CLATTN_DTYPE == 2 && !TF32 && !KVQ && !NO_CAP_FIXED)
#if TC_CAP_FIXED
#define TC_CAP_FIX_OK (SOFTCAP2 <= 80.0f)
#define TC_CAP_SUB (SOFTCAP2 < 48.0f ? SOFTCAP2 : 96.0f - SOFTCAP2)
#endif
/* ALiBi alone (no other modifier, 16-bit or f32 K, a positive scale: the
 * host's -DALIBI_RAW): its term enters S = Q·Kᵀ as the accumulators'
 * initial value, in raw score units (the term over the scale), so that the
 * MMAs add the scores to it and the softmax takes the plain scale: one FMA a
 * score (the row part plus a column constant, signed tiles) where the
 * scores in log2 units took a multiply, an FMA and an add. The term is at
 * most 0 and the sum stays as precise as the terms that matter to the
 * softmax: those within some 24 log2 units of the row maximum, where the
 * term is as small as the scores (a tiny scale overflows only terms whose p
 * is 0 anyway, to -inf). -DNO_ALIBI_INIT=1: the log2-unit form. */
#define TC_ALIBI_INIT                                                                              \
  (ALIBI && ALIBI_RAW && !SOFTCAP && !USER_SCORE && !USER_MASK && !BIAS && !SINKS && !KVQ &&      \
   !NO_ALIBI_INIT)
#if ALIBI
/* the sign of tile kv0's distances p - key: 1 where all its keys lie at or
 * before every row's position (causal: every tile), -1 at or after, 0
 * across */
#if CAUSAL
#define TC_ALIBI_SIGN(kv0) 1.0f
#else
#define TC_ALIBI_SIGN(kv0)                                                                         \
  ((kv0) + BN - 1 <= q0 + off ? 1.0f : (kv0) >= q0 + BM - 1 + off ? -1.0f : 0.0f)
#endif
/* pr[mt][rr]: p - key of the lane's rows for tile kv0's key 2t, a float
 * from one conversion a row and tile */
#define TC_ALIBI_PR(pr, kv0)                                                                       \
  float pr[MT][2];                                                                                 \
  _Pragma("unroll") for (int mt_ = 0; mt_ < MT; mt_++) _Pragma("unroll") for (int rr_ = 0;         \
                                                                              rr_ < 2; rr_++)      \
      pr[mt_][rr_] = (float)(row0[mt_] + 8 * rr_ + off - (kv0)-2 * t)
/* rp[mt][rr]: the row part -ss·pr of ALiBi's term on a tile of sign sg, ss
 * the slope times sg (the term of key column c is then fma(ss, c, rp)) */
#define TC_ALIBI_RP(rp, ss)                                                                        \
  float rp[MT][2];                                                                                 \
  _Pragma("unroll") for (int mt_ = 0; mt_ < MT; mt_++) rp[mt_][0] = -(ss)*pr[mt_][0],              \
                                                       rp[mt_][1] = -(ss)*pr[mt_][1]
#endif
#if TC_ALIBI_INIT
#define TC_QSCALE tcq
#elif TC_MODS && TC_CAP_ONLY
#define TC_QSCALE (NV_CAP_SCALE * SOFTCAP2)
#define TC_M0 NV_CAP_M0 /* the LSE's offset of the row maximum (nv_mma.cl) */
#elif TC_MODS
#define TC_QSCALE 1.0f
#else
#define TC_QSCALE tcq
#endif

#ifndef TC_M0
#define TC_M0 0.0f
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
#if KVQ && TF32
#error "flash_tc: 8-bit K/V with 16-bit Q only"
#endif
#if QLOC && (TF32 || KVQ || DP % 64)
#error "flash_tc: Q in local memory with 16-bit K/V and head dims padded to a multiple of 64"
#endif
/* Element offset of 16-byte chunk ch of local tile row r (row stride ld).
 * QLOC (the flash_tcq variant): rows are unpadded and chunk ch of row r is
 * stored at chunk ch ^ (r % 8), so that the 8 rows an ldmatrix matrix reads
 * at one logical chunk hit 8 distinct 16-byte bank groups (CUTLASS's
 * Swizzle<3,3,3>); the head dim is a multiple of 64 (8 chunks or more). */
#if QLOC
#define TC_TOFF(r, ch, ld) ((r) * (ld) + (((ch) ^ ((r)&7)) * TC_EPC))
#else
#define TC_TOFF(r, ch, ld) ((r) * (ld) + (ch) * TC_EPC)
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

/* Dims TC_EPC·ch .. + TC_EPC - 1 of the row at base + ro (dim stride sd;
 * dims past D: 0) as 16 bytes. */
#if TF32
inline uint4 tc_chunk(__global const float *base, long ro, int ch, long sd) {
#if VEC_GLOBAL
  (void)sd;
  return as_uint4(*(__global const float4 *)(base + ro + 4 * ch));
#else
  float e[4];
  for (int u = 0; u < 4; u++)
    e[u] = 4 * ch + u < D ? base[ro + (long)(4 * ch + u) * sd] : 0.0f;
  return as_uint4((float4)(e[0], e[1], e[2], e[3]));
#endif
}
/* Q element (row, col) as f32 (0 past Nq rows and D dims). */
inline float q_f32(__global const float *Qb, int row, int col, int Nq, long qss, long qsd) {
  return row < Nq && col < D ? Qb[(long)row * qss + (long)col * qsd] : 0.0f;
}
#else
#define tc_chunk load_chunk16
#endif

/* Copies rows [row0, row0 + nrows) of a K or V tensor (rows past `limit`
 * and chunks past D → 0) into local rows of ld elements. */
inline void load_tile(__local TC_ET *dst, int ld, __global const TC_ET *base, long ss, long sd,
                      int row0, int nrows, int limit, int lid) {
  for (int idx = lid; idx < nrows * TC_CHUNKS; idx += NT) {
    const int r = idx / TC_CHUNKS, ch = idx % TC_CHUNKS;
    uint4 x = (uint4)(0u);
    if (row0 + r < limit && TC_EPC * ch < D) x = tc_chunk(base, (long)(row0 + r) * ss, ch, sd);
    *(__local uint4 *)(dst + TC_TOFF(r, ch, ld)) = x;
  }
}

#if ASYNC
/* cp.async version of load_tile (VEC_GLOBAL layouts only): rows past
 * `limit` and chunks past D are zero-filled by a source size of 0. */
inline void load_tile_async(__local TC_ET *dst, int ld, __global const TC_ET *base, long ss,
                            int row0, int nrows, int limit, int lid) {
  for (int idx = lid; idx < nrows * TC_CHUNKS; idx += NT) {
    const int r = idx / TC_CHUNKS, ch = idx % TC_CHUNKS;
    const bool ok = row0 + r < limit && TC_EPC * ch < D;
    __global const TC_ET *src = ok ? base + (long)(row0 + r) * ss + TC_EPC * ch : base;
#if CLATTN_NV_EMU /* a plain copy (the emulation's addresses are relative to the kernel's array) */
    *(__local uint4 *)(dst + TC_TOFF(r, ch, ld)) = ok ? *(__global const uint4 *)src : (uint4)(0u);
#else
    CP_ASYNC16(smem_addr(dst + TC_TOFF(r, ch, ld)), src, ok);
#endif
  }
}
#endif
#define TILE_K(kv) load_tile(Ks, LDK, Kb, kss, ksd, (kv), BN, Nk, lid)
#define TILE_V(kv) load_tile(Vs, LDV, Vb, vss, vsd, (kv), BN, Nk, lid)
#define TILE_K_ASYNC(kv) load_tile_async(Ks, LDK, Kb, kss, (kv), BN, Nk, lid)
#define TILE_V_ASYNC(kv) load_tile_async(Vs, LDV, Vb, vss, (kv), BN, Nk, lid)

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_tc(FLASH_ARGS(TC_ET)) {
#if TF32
  __local float4 KVs_raw[BN * (LDK + LDV) / 4];
  __local float *Ks = (__local float *)KVs_raw;
  __local float *Vs = Ks + BN * LDK;
#else
  /* uint4 storage: 16-byte alignment for the vector stores. QLOC: the
   * work-group's Q rows after K and V (one array: the emulation's shared
   * addresses are offsets into it). */
  __local uint4 KVs_raw[(2 * BN + (QLOC ? BM : 0)) * LDK / 8];
  __local ushort *KVs = (__local ushort *)KVs_raw;
  __local ushort *Ks = KVs;
  __local ushort *Vs = KVs + BN * LDK;
#if QLOC
  __local ushort *Qs = KVs + 2 * BN * LDK;
#endif
#endif
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
  FLASH_PROLOGUE(TC_ET, BM)

  /* Rows of this lane: row0[mt] and row0[mt] + 8. */
  int row0[MT];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
    row0[mt] = q0 + (warp * MT + mt) * 16 + g;

  /* Q → A fragments, straight from global memory (once per kernel). TF32:
   * f32, split per use; a0 (g, 2t), a1 (g + 8, 2t), a2 (g, 2t + 1), a3
   * (g + 8, 2t + 1) of each 8 dims (the permuted k). */
#if QLOC
  /* QLOC: the work-group's BM rows of Q into local memory (swizzled), read
   * as A fragments with ldmatrix at every tile: 64 registers a lane fewer
   * at d = 128 per m-tile, so two m-tiles fit (every K/V fragment read
   * from local memory feeds two MMAs) with Q (32 KiB) and one 32-key K/V
   * tile each (8 KiB) in 48 KiB. Visible after the first tile's barrier. */
  for (int idx = lid; idx < BM * (DP / 8); idx += NT) {
    const int r = idx / (DP / 8), ch = idx % (DP / 8);
    uint4 x = (uint4)(0u);
    if (q0 + r < Nq && 8 * ch < D) x = load_chunk16(Qb, (long)(q0 + r) * qss, ch, qsd);
    *(__local uint4 *)(Qs + TC_TOFF(r, ch, LDK)) = x;
  }
#elif TF32
  float qf[MT][KCH][4];
#define TC_Q_FRAG(row, kc, e)                                                                      \
  q_f32(Qb, (row) + ((e) & 1) * 8, 8 * (kc) + 2 * t + ((e) >> 1), Nq, qss, qsd)
#else
  uint qf[MT][KCH][4];
#define TC_Q_FRAG(row, kc, e)                                                                      \
  q_pair(Qb, (row) + ((e) & 1) * 8, 16 * (kc) + 2 * t + ((e) >> 1) * 8, Nq, qss, qsd)
#endif
#if !QLOC
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int kc = 0; kc < KCH; kc++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        qf[mt][kc][e] = TC_Q_FRAG(row0[mt], kc, e);
#endif

  float o[MT][NTO][4];
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int j = 0; j < NTO; j++)
      o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
#if TC_CAP_FIXED
    if (TC_CAP_FIX_OK) m[mt][0] = m[mt][1] = TC_CAP_SUB / SOFTCAP2; /* m·TC_QSCALE = the fixed c */
#endif
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
#if TC_ALIBI_INIT
  const float mod_slope_raw = mod_slope2 / tcq; /* ALiBi's slope in raw score units */
#endif
#if TC_CAP_ONLY
  const float cap_in = NV_CAP_IN(tcq);
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
#if QLOC
  /* the same rows; the chunk of each read (logical chunk ^ row % 8, and
   * row % 8 = lane % 8 in every matrix) added per k-step and n-tile. Q (A,
   * row-major): rows +8 for matrices 1,3, dims +8 for 2,3. */
  const int kx = lane & 7, kb1 = (lane >> 3) & 1, vb1 = lane >> 4;
  const uint kbase = smem_addr(Ks + ((lane >> 4) * 8 + (lane & 7)) * LDK);
  const uint vbase = smem_addr(Vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * LDK);
  const uint qbase = smem_addr(Qs + (warp * MT * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDK);
#define TC_KADDR(j, kc) (kbase + (uint)((j)*8 * LDK * 2) + (uint)(((2 * (kc) + kb1) ^ kx) * 16))
#define TC_VADDR(kc, j) (vbase + (uint)((kc)*16 * LDK * 2) + (uint)((((j) + vb1) ^ kx) * 16))
#define TC_QADDR(mt, kc) (qbase + (uint)((mt)*16 * LDK * 2) + (uint)(((2 * (kc) + vb1) ^ kx) * 16))
#elif !TF32
  const uint kbase = smem_addr(Ks + ((lane >> 4) * 8 + (lane & 7)) * LDK + ((lane >> 3) & 1) * 8);
  const uint vbase = smem_addr(Vs + (((lane >> 3) & 1) * 8 + (lane & 7)) * LDK + (lane >> 4) * 8);
#define TC_KADDR(j, kc) (kbase + (uint)(((j)*8 * LDK + 16 * (kc)) * 2))
#define TC_VADDR(kc, j) (vbase + (uint)((16 * (kc)*LDK + (j)*8) * 2))
#endif

#if ASYNC
  /* cp.async pipeline over one K and one V buffer: K(t+1) streams in during
   * the softmax and P·V of tile t, V(t+1) during Q·Kᵀ of tile t+1. */
  if (kv_first >= 0) TILE_K_ASYNC(kv_first);
  CP_COMMIT();
  if (kv_first >= 0) TILE_V_ASYNC(kv_first);
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
    TILE_K(kv0);
    TILE_V(kv0);
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    /* S = Q·Kᵀ (raw scores; the scale is folded into the exponent). */
    float s[MT][NTS][4];
#if TC_ALIBI_INIT
    { /* ALiBi's term over the scale as the MMAs' start (above) */
      const float sg = TC_ALIBI_SIGN(kv0);
      TC_ALIBI_PR(pr, kv0);
      if (sg != 0.0f) {
        const float ss = mod_slope_raw * sg;
        TC_ALIBI_RP(rp, ss);
        TC_EACH_SCORE(mt, j, e) { s[mt][j][e] = fma(ss, (float)(8 * j + (e & 1)), rp[mt][e >> 1]); }
      } else {
        TC_EACH_SCORE(mt, j, e) {
              s[mt][j][e] = -mod_slope_raw * fabs(pr[mt][e >> 1] - (float)(8 * j + (e & 1)));
            }
      }
    }
#else
    TC_ZERO(s, NTS);
#endif
#if TF32
NV_UNROLL
    for (int kc = 0; kc < KCH; kc++) {
      uint ah[MT][4], al[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          TF32_SPLIT(qf[mt][kc][e], ah[mt][e], al[mt][e]);
NV_UNROLL
      for (int j = 0; j < NTS; j++) {
        /* b0 (k 2t, key g), b1 (k 2t + 1, key g) of keys 8j.. */
        const float2 kk = *(__local const float2 *)(Ks + (8 * j + g) * LDK + 8 * kc + 2 * t);
        uint bh[2], bl[2];
        TF32_SPLIT(kk.x, bh[0], bl[0]);
        TF32_SPLIT(kk.y, bh[1], bl[1]);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          MMA3(s[mt][j], ah[mt], al[mt], bh, bl);
      }
    }
#else
NV_UNROLL
    for (int kc = 0; kc < KCH; kc++) {
#if QLOC
      uint qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
        LDM_X4(qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], TC_QADDR(mt, kc));
#define TC_QF(mt, e) qa[mt][e]
#else
#define TC_QF(mt, e) qf[mt][kc][e]
#endif
NV_UNROLL
      for (int j = 0; j < NTS; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4(b0, b1, b2, b3, TC_KADDR(j, kc));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          MMA(s[mt][j], TC_QF(mt, 0), TC_QF(mt, 1), TC_QF(mt, 2), TC_QF(mt, 3), b0, b1);
          MMA(s[mt][j + 1], TC_QF(mt, 0), TC_QF(mt, 1), TC_QF(mt, 2), TC_QF(mt, 3), b2, b3);
        }
      }
    }
#endif

#if KVQ && KVS == 0 /* K's token scales: per key */
    TC_EACH_SCORE(mt, j, e)
          s[mt][j][e] *= ksl[8 * j + 2 * t + (e & 1)];
#endif
#if ASYNC
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done reading K(tile) */
    if (kv_next >= 0) TILE_K_ASYNC(kv_next);
    CP_COMMIT();
#endif
#if TC_MODS && !TC_ALIBI_INIT
    /* Modifiers on the scores in log2 units (the portable kernel's order:
     * softcap and ALiBi, the user's score function, the bias, the user's
     * mask); rows past Nq and keys past Nk are left to the masks. Softcap:
     * bf16 through tanh.approx (one MUFU operation; its relative error,
     * 2^-11, is far below the rounding of P to bf16 for P·V), f16 through
     * exp2 and a fast reciprocal (two MUFU operations, one and a half with
     * softcap alone: NV_SOFTCAP_UNIT2; accurate to ~2^-22: f16's P keeps
     * 11 bits, so tanh.approx's error would double it); ALiBi's distance
     * |p - j| as a float offset from one conversion per row and tile (a
     * conversion per score runs at the MUFU rate too: measured +13-17 % at
     * d = 64 on an H100). */
#if ALIBI
    TC_ALIBI_PR(pr, kv0);
#endif
#if TC_CAP_ONLY
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
      NV_SOFTCAP_FRAG(s[mt], NTS, cap_in);
#else
#if ALIBI && ALIBI_SIGNED
    /* A tile whose keys all lie at or before every row's position (sg = 1;
     * causal: every visible score) or all at or after it (sg = -1): the
     * distance is sg·(p - key), and ALiBi's term a row part plus a column
     * constant, one FMA a score (with the score's scale, one more) instead
     * of a subtraction, a multiply and an FMA. */
    const float sg = TC_ALIBI_SIGN(kv0);
    if (sg != 0.0f) {
      const float ss = mod_slope2 * sg;
      TC_ALIBI_RP(rp, ss);
      TC_EACH_SCORE(mt, j, e) {
            const float at = fma(ss, (float)(8 * j + (e & 1)), rp[mt][e >> 1]);
#if SOFTCAP
            float x = s[mt][j][e] * tcq;
            NV_SOFTCAP_X(x);
            s[mt][j][e] = x + at;
#else
            s[mt][j][e] = fma(s[mt][j][e], tcq, at);
#endif
          }
    } else
#endif
    {
      TC_EACH_SCORE(mt, j, e) {
            float x = s[mt][j][e] * tcq;
#if SOFTCAP
            NV_SOFTCAP_X(x);
#endif
#if ALIBI
            x -= mod_slope2 * fabs(pr[mt][e >> 1] - (float)(8 * j + (e & 1)));
#endif
            s[mt][j][e] = x;
          }
    }
#endif
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
#if TC_CAP_FIXED
    if (TC_CAP_FIX_OK) { /* the fixed maximum (above) */
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
          SOFTMAX_ROW_EXP(s[mt], NTS, rr, SOFTCAP2, TC_CAP_SUB, rs);
          l[mt][rr] += rs;
        }
    } else {
#else
    {
#endif
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int rr = 0; rr < 2; rr++)
          SOFTMAX_STEP(s[mt], NTS, o[mt], NTO, rr, m[mt][rr], l[mt][rr], TC_QSCALE);
    }

#if ASYNC
    CP_WAIT(1); /* V(tile) has landed */
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
#if KVQ && KVS == 0 /* V's token scales into P (after its row sums) */
    TC_EACH_SCORE(mt, j, e)
          s[mt][j][e] *= vsl[8 * j + 2 * t + (e & 1)] * TC_VP2;
#endif
    /* O += P·V: the S accumulator layout is the A-fragment layout. */
#if TF32
    /* Groups of TG n-tiles of O, each summed over the tile's keys into a
     * fresh accumulator that is then added to O in the FMA units: the
     * tensor cores' f32 accumulation rounds toward zero (measured: chained
     * over a 16k-key row, O drifted by 1e-4 relative), so no MMA chain spans
     * more than one tile. P is split again for each group. */
NV_UNROLL
    for (int j0 = 0; j0 < NTO; j0 += TG) {
      float acc[MT][TG][4];
      TC_ZERO(acc, TG);
NV_UNROLL
      for (int kc = 0; kc < NTS; kc++) { /* keys 8kc..: A (g, 2t) c0, (g + 8, 2t) c2, (g, 2t + 1) c1, (g + 8, 2t + 1) c3 */
        uint ph[MT][4], pl[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          TF32_SPLIT(s[mt][kc][0], ph[mt][0], pl[mt][0]);
          TF32_SPLIT(s[mt][kc][2], ph[mt][1], pl[mt][1]);
          TF32_SPLIT(s[mt][kc][1], ph[mt][2], pl[mt][2]);
          TF32_SPLIT(s[mt][kc][3], ph[mt][3], pl[mt][3]);
        }
        __local const float *vr = Vs + (8 * kc + 2 * t) * LDV + 8 * j0 + g;
#pragma unroll
        for (int jj = 0; jj < TG; jj++) {
          if (j0 + jj < NTO) {
            uint bh[2], bl[2];
            TF32_SPLIT(vr[8 * jj], bh[0], bl[0]);
            TF32_SPLIT(vr[LDV + 8 * jj], bh[1], bl[1]);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
              MMA3(acc[mt][jj], ph[mt], pl[mt], bh, bl);
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int jj = 0; jj < TG; jj++)
          if (j0 + jj < NTO)
#pragma unroll
            for (int e = 0; e < 4; e++)
              o[mt][j0 + jj][e] += acc[mt][jj][e];
    }
#else
NV_UNROLL
    for (int kc = 0; kc < KCP; kc++) {
      uint a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = pack2(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        a[mt][1] = pack2(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        a[mt][2] = pack2(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        a[mt][3] = pack2(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
NV_UNROLL
      for (int j = 0; j < NTO; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4_T(b0, b1, b2, b3, TC_VADDR(kc, j));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          MMA(o[mt][j], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
          MMA(o[mt][j + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
        }
      }
    }
#endif
#if ASYNC
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done reading V(tile) */
    if (kv_next >= 0) TILE_V_ASYNC(kv_next);
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
  __global TC_ET *Ob = O + (long)b * osb + (long)qstart * oss + (long)h * osh;
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      const int row = row0[mt] + 8 * rr;
      STORE_FRAGMENT_ROW(Ob, oss, osd, LSE, write_lse, FLASH_LSE_INDEX(bh, row), o[mt], NTO, rr,
                         row, t, Nq, m[mt][rr] - TC_M0, l[mt][rr], TC_QSCALE);
    }
}
