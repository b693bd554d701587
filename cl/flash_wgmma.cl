/* flash_wgmma.cl — NVIDIA Hopper (sm_90a) flash forward on warpgroup MMAs (wgmma through PTX placeholders, cl/wgmma.cl) for f16/bf16. */

/*
 * Same function as flash_tc.cl. A work-group is WGS warpgroups of 128
 * work-items; warpgroup w owns the 64 query rows q0 + 64·w + 0..63, warp i
 * of it rows 16·i + 0..15 (the wgmma fragment layout), and keeps its Q rows
 * as A fragments in registers. K and V tiles of BN keys stream through
 * local memory in the no-swizzle core-matrix layouts the descriptors read
 * (a core matrix: 8 rows of 16 bytes, contiguous):
 *   K (B of S = Q·Kᵀ, K-major): the 16-byte chunk of key n, dims
 *     8c..8c+7 at chunk c·BN + n; leading byte offset (next 8 dims) BN·16,
 *     stride byte offset (next 8 keys) 128.
 *   V (B of O = P·V, N-major, transposed): the chunk of key k, dims
 *     8c..8c+7 at chunk ((k/8)·DP/8 + c)·8 + k%8; leading byte offset
 *     (next 8 keys, the K direction) DP·16, stride byte offset (next 8
 *     dims) 128. (Measured on an H100: the fields the other way round
 *     fault.)
 * S = Q·Kᵀ is one wgmma group (m64n32k16 per 32 keys and 16 dims), the
 * online softmax runs on its accumulators (rows g and g+8 of each warp, the
 * row's four lanes exchanging with shuffles), P is converted in registers
 * into the A fragments of O += P·V (m64n32k16 per 32 dims and 16 keys, plus
 * one m64n16k16 when DP % 32 = 16). With VEC_GLOBAL the tiles arrive by
 * cp.async (PIPE below): in ST = 2 stages, or in one stage as flash_tc
 * does. Registers that ordinary instructions write (P fragments, the
 * rescaled O) are pinned before each wgmma.fence, so that ptxas need not
 * inject warpgroup.arrive between the MMAs.
 */

#define DP ((D + 15) / 16 * 16)
#ifndef WGS
#define WGS 1
#endif
#ifndef BN
#define BN 64
#endif
#ifndef ST
#define ST 1 /* K/V stages in local memory (2: double-buffered; 3: the overlapped schedule; both need VEC_GLOBAL) */
#endif
/* The load pipeline: 3 (the overlapped schedule below: a ring of three K
 * tiles and two V tiles, by cp.async), 2 (two stages by cp.async), 1 (one
 * stage by cp.async, K(t+1) during the softmax and P·V of t, V(t+1) during
 * S of t+1), 0 (synchronous loads: strided or unaligned layouts). */
#if !VEC_GLOBAL
#define PIPE 0
#elif ST == 3
#define PIPE 3
#elif ST == 2
#define PIPE 2
#else
#define PIPE 1
#endif
/* K and V tiles in local memory: ST = 3 keeps three K tiles and two V tiles
 * (40 KiB at d = 128 with 32-key tiles). */
#define KST ST
#define VST (ST == 3 ? 2 : ST)
#define KT(i) (KVt + (i) * (BN * CH8))         /* K tile i */
#define VT(i) (KVt + (KST + (i)) * (BN * CH8)) /* V tile i */
/* The overlapped schedule (ST = 3, FlashAttention 3's intra-warpgroup
 * overlap): in the iteration of tile t each warpgroup issues S(t+1) =
 * Q·K(t+1)ᵀ and then O += P(t)·V(t) as two commit groups, waits for the
 * first (wgmma.wait_group 1), runs the softmax of tile t+1 while P·V(t) is
 * still on the tensor cores, and only then waits for it and rescales O. The
 * loads of K(t+2) and V(t+1) go out after the one work-group barrier of the
 * iteration, which both publishes the landed tiles and retires the buffers
 * they overwrite (K(t-1), read by S(t-1) two iterations back; V(t-1), read
 * by P·V(t-1) in the last one). The wait for P·V(t) opens iteration t+1
 * (see the loop). Verified and measured on an H100 (bench/RESULTS.md §26):
 * with three warpgroups 1.12-1.18x flash_tcq at d = 128, 16k; the default
 * configuration of this kernel. */
#define TILE_BYTES (BN * CH8 * 16)
/* Ping-pong (FlashAttention 3's inter-warpgroup schedule): with two or
 * three warpgroups and no barrier between S and P·V (PIPE 0, 2 or 3), the
 * warpgroups take turns issuing their MMAs (warpgroup 0, 1[, 2], 0, ...)
 * through named barriers, so that one warpgroup's S MMAs finish while the
 * others' are still queued and its softmax overlaps them. -DPP=0: all
 * issue at once. Measured on an H100 (bench/RESULTS.md §24, §26): within
 * ±1 % with two warpgroups and two stages (both barriers of a tile keep the
 * warpgroups in step), and 8 % slower in the overlapped schedule (three
 * warpgroups, d = 128: 8.06 vs 7.44 ms at 16k), whose warpgroups then wait
 * for their turn for most of a tile (the phase profile): on by default for
 * PIPE 0 and 2 only. */
#ifndef PP
#define PP (PIPE != 3)
#endif
#ifndef MINCTAS
#define MINCTAS 0 /* work-groups per SM that the registers must allow (0: ptxas decides) */
#endif
/* WIDE: P·V as one m64nDk16 MMA a k-step (D = 64 or 128, as FlashAttention
 * 3 issues it) instead of N = 32 pieces, so that the A fragments (P) go to
 * the tensor cores once. On by default in the overlapped schedule (PIPE 3),
 * where it is verified on an H100 and 4-8 % faster at d = 128 (§26). With
 * the other schedules -DWIDE=1 is an experiment: on the H100 it computed
 * wrong results with 64-key tiles (rel. err. 0.11-0.18 at d = 60 and 64,
 * st = 1 and 2; right with 32-key tiles and in the CPU emulation; cause not
 * found). */
#ifndef WIDE
#define WIDE (PIPE == 3)
#endif
/* Lazy rescaling (cl/nv_mma.cl): O is rescaled only when a row's maximum
 * grows by more than 2^8. On by default in the overlapped schedule, where
 * the rescale is 64 multiplies a tile for 16 scores at d = 128: measured on
 * an H100 1.9 % faster at d = 128 (7.31 vs 7.45 ms, f16, 16k), 1.0-1.6 %
 * causal, 0.7-1.4 % at d = 64 (bench/RESULTS.md §27). -DWG_LAZY=0: eager;
 * CLATTN_LAZY_RESCALE=1 turns it on in the other schedules too. */
#ifndef WG_LAZY
#define WG_LAZY (PIPE == 3 || CLATTN_LAZY_RESCALE)
#endif
#undef SOFTMAX_LAZY
#define SOFTMAX_LAZY WG_LAZY
#if DP == 128
#define WG_MMA_DP WG_MMA128
#elif DP == 64
#define WG_MMA_DP WG_MMA64
#endif
#define WG_STR2(x) #x
#define WG_STR(x) WG_STR2(x)
/* -DWG_PROFILE=1 (a diagnostic build, CLATTN_BUILD_DEFINES): warp 0 of
 * each warpgroup sums the SM clock spent in each phase of a tile and the
 * middle work-group of the first head prints the means per tile (OpenCL
 * printf, on the program's stdout): loads issued and this work-item's
 * landed, top barrier, waiting for its turn, S issued, S waited for,
 * softmax and P, P·V issued and waited for, bottom barrier. With ST = 3
 * the phases are: loads landed, the barrier, the turn, S and P·V issued (as
 * "sissue"), S waited for, softmax, P·V waited for with the rescale and P
 * (as "pv"); "bar2" stays 0. */
#ifndef WG_PROFILE
#define WG_PROFILE 0
#endif
#if WG_PROFILE
#define PROF_CLOCK(x) __asm__ volatile("mov.u32 %0, %%clock;" : "=r"(x)::"memory")
#define PROF(k)                                                                                    \
  do {                                                                                             \
    uint now_;                                                                                     \
    PROF_CLOCK(now_);                                                                              \
    prof_[k] += now_ - prof_t_;                                                                    \
    prof_t_ = now_;                                                                                \
  } while (0)
#else
#define PROF(k) ((void)0)
#endif

#if PP && WGS >= 2 && PIPE != 1 && !CLATTN_NV_EMU /* the emulation has no named barriers */
#define PINGPONG 1
/* bar.sync/bar.arrive on named barrier ID (1 + w: warpgroup w's turn) for
 * 256 work-items: the 128 of warpgroup w wait, the 128 of the one before it
 * in the turn order arrive once they have issued their S MMAs. */
#define NB_SYNC(id) __asm__ volatile("bar.sync %0, 256;" ::"r"(id) : "memory")
#define NB_ARRIVE(id) __asm__ volatile("bar.arrive %0, 256;" ::"r"(id) : "memory")
#else
#define PINGPONG 0
#endif

/* LDW = 1: one more warpgroup, a loader (FlashAttention 3's producer),
 * issues every cp.async of the overlapped schedule (PIPE 3 only), so that
 * the WGS computing warpgroups spend no issue slots on address math and
 * copies (~110 instructions a tile and warp at d = 128, in the SASS). It
 * joins the one barrier of each iteration; in the CPU emulation it also
 * runs the (emulated, work-group-uniform) MMAs on its own rows, whose
 * results it never stores. Measured on an H100 (bench/RESULTS.md §27): two
 * computing warpgroups with the loader are 1-3 % faster than two without,
 * but 25-33 % slower than three (the registers allow no third beside the
 * loader): off by default, a tunable parameter (ld). */
#ifndef LDW
#define LDW 0
#endif
#if LDW && PIPE != 3
#error "flash_wgmma: the loader warpgroup (LDW) needs the overlapped schedule (ST = 3, VEC_GLOBAL)"
#endif
#define BM (64 * WGS)
#define NT (128 * (WGS + LDW))
#if WGS + LDW == 4
#define NT_STR "512" /* NT for the minctas placeholder */
#elif WGS + LDW == 3
#define NT_STR "384"
#elif WGS + LDW == 2
#define NT_STR "256"
#else
#define NT_STR "128"
#endif
/* the work-items that issue the loads: all (LD_NT = NT), or the loader's
 * 128, at local id - LD_BASE */
#if LDW
#define LD_NT 128
#define LD_BASE (128 * WGS)
#else
#define LD_NT NT
#define LD_BASE 0
#endif
#define KCH (DP / 16) /* k-steps of S */
#define NTS (BN / 8)  /* 8-key groups of S */
#define NTO (DP / 8)  /* 8-dim groups of O */
#define KCP (BN / 16) /* k-steps of P·V */
#define CH8 (DP / 8)  /* 16-byte chunks of a row */
#define NC32 (DP / 32)

#if (BN % 32) || (WGS < 1) || (WGS > 3) || (ST < 1) || (ST > 3)
#error "flash_wgmma: BN must be a multiple of 32, WGS 1 to 3, ST 1 to 3"
#endif
#if WGS + LDW > 4
#error "flash_wgmma: at most four warpgroups with the loader"
#endif
#define WG_T MMA_T

/* Local chunk (16 bytes) of key n, dims 8c..8c+7, in the K and V layouts. */
#define K_CHUNK(n, c) ((c) * BN + (n))
#define V_CHUNK(n, c) ((((n) / 8) * CH8 + (c)) * 8 + (n) % 8)

/* Chunk idx of a tile → (key, dim chunk): 8 consecutive work-items take 8
 * consecutive keys of one dim chunk (128 contiguous local bytes in either
 * layout). */
#define TILE_KEY(idx) (((idx) / (8 * CH8)) * 8 + (idx) % 8)
#define TILE_CH(idx) (((idx) / 8) % CH8)

/* Copies keys [row0, row0 + BN) of K or V (keys past `limit`, dims past D →
 * 0) into a local tile, chunk by chunk. */
inline void load_tile(__local uint4 *dst, __global const ushort *base, long ss, long sd, int row0,
                      int limit, int lid, int is_v) {
  for (int idx = lid; idx < BN * CH8; idx += NT) {
    const int r = TILE_KEY(idx), ch = TILE_CH(idx);
    uint4 x = (uint4)(0u);
    if (row0 + r < limit && 8 * ch < D) x = load_chunk16(base, (long)(row0 + r) * ss, ch, sd);
    dst[is_v ? V_CHUNK(r, ch) : K_CHUNK(r, ch)] = x;
  }
}

#if VEC_GLOBAL
/* cp.async version (16-byte aligned rows): missing keys and dims are
 * zero-filled by a source size of 0. Unsigned index math and the tile's
 * first row hoisted (the signed form took ~35 instructions a chunk in the
 * SASS of the sm_90a build). The LD_NT work-items with llid = local id -
 * LD_BASE in [0, LD_NT) copy; a count of chunks a work-item known at
 * compile time (the loop unrolls, its index math leaves the tile loop). */
inline void load_tile_async(__local uint4 *dst, __global const ushort *base, long ss, int row0,
                            int limit, const uint llid, int is_v) {
  __global const ushort *tb = base + (long)row0 * ss;
  const int left = limit - row0; /* keys of the tile that exist: r < left */
#if LDW
#pragma unroll
  for (uint j = 0; j < (uint)((BN * CH8 + LD_NT - 1) / LD_NT); j++) {
    const uint idx = llid + j * LD_NT;
    if ((BN * CH8) % LD_NT && idx >= (uint)(BN * CH8)) break;
#else /* a loop (unrolled, ptxas keeps the chunks' addresses live across the tile loop: spills) */
  for (uint idx = llid; idx < (uint)(BN * CH8); idx += LD_NT) {
#endif
    const uint r = (idx / (8 * CH8)) * 8 + idx % 8, ch = (idx / 8) % CH8;
    const bool ok = (int)r < left && 8 * ch < D;
    __global const ushort *src = ok ? tb + (long)r * ss + 8 * ch : base;
#if CLATTN_NV_EMU /* a plain copy, as the emulated cp.async (no NV_EMU_BASE out here) */
    dst[is_v ? V_CHUNK(r, ch) : K_CHUNK(r, ch)] = ok ? *(__global const uint4 *)src : (uint4)(0u);
#else
    CP_ASYNC16(wg_saddr(dst + (is_v ? V_CHUNK(r, ch) : K_CHUNK(r, ch))), src, ok);
#endif
  }
}
#endif

/* Pins the O accumulators (WG_KEEP*): before a fence, after a wait. */
#if DP % 32
#define KEEP_O()                                                                                   \
  do {                                                                                             \
    _Pragma("unroll") for (int c = 0; c < NC32; c++) WG_KEEP16(o, 4 * c);                          \
    WG_KEEP8(o, 4 * NC32);                                                                         \
  } while (0)
#else
#define KEEP_O()                                                                                   \
  do {                                                                                             \
    _Pragma("unroll") for (int c = 0; c < NC32; c++) WG_KEEP16(o, 4 * c);                          \
  } while (0)
#endif

/* S = Q·Kᵀ of the tile at descriptor kd into s (raw scores; the scale is
 * folded into the exponent). The first k-step writes the accumulators
 * (scale 0): nothing initialises them, so no ordinary instruction touches
 * them between the fence and the MMAs (each such write makes ptxas inject a
 * warpgroup.arrive). */
#define S_MMAS(kd)                                                                                 \
  do {                                                                                             \
    NV_UNROLL for (int kc = 0; kc < KCH; kc++) NV_UNROLL for (int c = 0;                           \
                                                                            c < BN / 32; c++)      \
        WG_MMA32(WG_T, 0, s, 4 * c, qf[kc][0], qf[kc][1], qf[kc][2], qf[kc][3],                    \
                 (kd) + (ulong)((2 * kc * BN * 16 + c * 512) >> 4), WG_S_ACC || kc > 0);           \
  } while (0)
/* O += P·V of the tile at descriptor vd (P: the A fragments pa) */
#if DP % 32
#define PV_MMA_TAIL(vd, kc)                                                                        \
  WG_MMA16(WG_T, 1, o, 4 * NC32, pa[kc][0], pa[kc][1], pa[kc][2], pa[kc][3],                       \
           (vd) + (ulong)((2 * (kc) * DP * 16 + NC32 * 512) >> 4), 1)
#else
#define PV_MMA_TAIL(vd, kc) ((void)0)
#endif
#if WIDE && (DP == 64 || DP == 128)
#define PV_MMAS(vd)                                                                                \
  do {                                                                                             \
    NV_UNROLL for (int kc = 0; kc < KCP; kc++)                                                     \
        WG_MMA_DP(WG_T, 1, o, 0, pa[kc][0], pa[kc][1], pa[kc][2], pa[kc][3],                       \
                  (vd) + (ulong)((2 * kc * DP * 16) >> 4), 1);                                     \
  } while (0)
#else
#define PV_MMAS(vd)                                                                                \
  do {                                                                                             \
    NV_UNROLL for (int kc = 0; kc < KCP; kc++) {                                                   \
      NV_UNROLL for (int c = 0; c < NC32; c++)                                                     \
          WG_MMA32(WG_T, 1, o, 4 * c, pa[kc][0], pa[kc][1], pa[kc][2], pa[kc][3],                  \
                   (vd) + (ulong)((2 * kc * DP * 16 + c * 512) >> 4), 1);                          \
      PV_MMA_TAIL(vd, kc);                                                                         \
    }                                                                                              \
  } while (0)
#endif
/* P (the probabilities in s: the S accumulator layout is the A layout) →
 * the A fragments pa of P·V, pinned (computed before the next fence) */
#define PACK_P()                                                                                   \
  do {                                                                                             \
    _Pragma("unroll") for (int kc = 0; kc < KCP; kc++) {                                           \
      pa[kc][0] = pack2(s[2 * kc][0], s[2 * kc][1]);                                               \
      pa[kc][1] = pack2(s[2 * kc][2], s[2 * kc][3]);                                               \
      pa[kc][2] = pack2(s[2 * kc + 1][0], s[2 * kc + 1][1]);                                       \
      pa[kc][3] = pack2(s[2 * kc + 1][2], s[2 * kc + 1][3]);                                       \
      WG_KEEPR4(pa[kc]);                                                                           \
    }                                                                                              \
  } while (0)
/* Sets the scores of tile kv0 that no query of this warp sees to -inf. */
#if CAUSAL
#define MASK_TILE(kv0)                                                                             \
  do {                                                                                             \
    if (((kv0) + BN > Nk) || ((kv0) + BN - 1 > q0 + 64 * wg + off))                                \
      MASK_FRAGMENT(s, NTS, kv0, t, row0, off, Nk);                                                \
  } while (0)
#else
#define MASK_TILE(kv0)                                                                             \
  do {                                                                                             \
    if ((kv0) + BN > Nk) MASK_FRAGMENT(s, NTS, kv0, t, row0, off, Nk);                             \
  } while (0)
#endif

/* Score modifiers (softcap, ALiBi; cl/common.cl, flash_tc's forms): the
 * scores of tile kv0 into log2 units, capped and/or biased, before the
 * masks; the softmax then takes a unit scale (WG_QS). ALiBi's distance p -
 * key as a float offset from one conversion per row and tile; where every
 * key of the tile lies at or before every row of the warp (causal: every
 * visible score) or at or after it, its term is a row part plus a column
 * constant (one FMA a score). */
/* Softcap alone (WG_CAP_ONLY, as flash_tc's TC_CAP_ONLY): the scores stay
 * in units of the cap, t = tanh(s·qscale / SOFTCAP2) (nv_mma.cl
 * NV_SOFTCAP_FRAG), and the softmax takes SOFTCAP2 as its scale: two
 * multiplies a score fewer (measured 0.7-1.5 % faster on an H100 than the
 * scores in log2 units, bench/RESULTS.md §27). */
#define WG_CAP_ONLY (SOFTCAP && !ALIBI)
/* ALiBi alone with a positive scale (flash_tc's TC_ALIBI_INIT): its term
 * over the scale is the S accumulators' start (ALIBI_INIT_TILE, before the
 * fence of each S's MMAs, which then all accumulate) and the softmax takes
 * the plain scale: one FMA a score instead of a multiply, an FMA and an
 * add. */
#define WG_ALIBI_INIT (ALIBI && ALIBI_RAW && !SOFTCAP && !NO_ALIBI_INIT)
#if ALIBI && CAUSAL
#define WG_ALIBI_SIGN(kv0) 1.0f
#elif ALIBI
#define WG_ALIBI_SIGN(kv0)                                                                         \
  ((kv0) + BN - 1 <= row0 - g + off ? 1.0f : (kv0) >= row0 - g + 15 + off ? -1.0f : 0.0f)
#endif
#if ALIBI
/* ALiBi's term of each score of tile kv0 at slope sl, handed to APPLY(j, e, term): a row part
 * plus a column constant on tiles whose keys all lie on one side of the warp's rows, |p - key|
 * on those across them */
#define WG_ALIBI_EACH(kv0, sl, APPLY)                                                              \
  do {                                                                                             \
    const float pr_[2] = {(float)(row0 + off - (kv0)-2 * t), (float)(row0 + 8 + off - (kv0)-2 * t)}; \
    const float sg_ = WG_ALIBI_SIGN(kv0);                                                          \
    if (sg_ != 0.0f) {                                                                             \
      const float ss_ = (sl)*sg_, rp_[2] = {-ss_ * pr_[0], -ss_ * pr_[1]};                         \
      _Pragma("unroll") for (int j_ = 0; j_ < NTS; j_++)                                           \
      _Pragma("unroll") for (int e_ = 0; e_ < 4; e_++)                                             \
        APPLY(j_, e_, fma(ss_, (float)(8 * j_ + (e_ & 1)), rp_[e_ >> 1]));                         \
    } else {                                                                                       \
      _Pragma("unroll") for (int j_ = 0; j_ < NTS; j_++)                                           \
      _Pragma("unroll") for (int e_ = 0; e_ < 4; e_++)                                             \
        APPLY(j_, e_, -(sl) * fabs(pr_[e_ >> 1] - (float)(8 * j_ + (e_ & 1))));                    \
    }                                                                                              \
  } while (0)
#endif
#if WG_ALIBI_INIT
#define WG_QS qscale
#define MODS_TILE(kv0) ((void)0)
#define WG_S_ACC 1 /* every S MMA accumulates onto the term */
#define WG_ALIBI_SET(j, e, term) (s[j][e] = (term))
#define ALIBI_INIT_TILE(kv0) WG_ALIBI_EACH(kv0, mod_slope_raw, WG_ALIBI_SET)
#elif WG_CAP_ONLY
#define WG_QS (NV_CAP_SCALE * SOFTCAP2)
#define WG_M0 NV_CAP_M0 /* the LSE's offset of the row maximum (nv_mma.cl) */
#define MODS_TILE(kv0) NV_SOFTCAP_FRAG(s, NTS, cap_in)
#elif ALIBI /* with or without softcap */
#define WG_QS 1.0f
#if SOFTCAP
#define WG_CAP(x) NV_SOFTCAP_X(x)
#else
#define WG_CAP(x) ((void)0)
#endif
/* the score in log2 units, capped, plus ALiBi's term */
#define WG_ALIBI_ADD(j, e, term)                                                                   \
  do {                                                                                             \
    float x_ = s[j][e] * qscale;                                                                   \
    WG_CAP(x_);                                                                                    \
    s[j][e] = x_ + (term);                                                                         \
  } while (0)
#define MODS_TILE(kv0) WG_ALIBI_EACH(kv0, mod_slope2, WG_ALIBI_ADD)
#else
#define WG_QS qscale
#define MODS_TILE(kv0) ((void)0)
#endif
#ifndef WG_M0
#define WG_M0 0.0f
#endif
#ifndef WG_S_ACC
#define WG_S_ACC 0
#define ALIBI_INIT_TILE(kv0) ((void)0)
#endif

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_wgmma(FLASH_ARGS(ushort)) {
  /* the KST K tiles, then the VST V tiles (one array: the emulation's base) */
  __local uint4 KVt[(KST + VST) * BN * CH8];
#if CLATTN_NV_EMU
#define NV_EMU_LANES NT
  NV_EMU_SCRATCH;
#define NV_EMU_BASE ((__local uchar *)KVt)
#endif

#if MINCTAS && !CLATTN_NV_EMU
  /* ptxas caps the registers so that MINCTAS work-groups share an SM */
  __asm__ volatile("// @@CLATTN minctas " WG_STR(MINCTAS) " " NT_STR);
#endif
  const int lid = get_local_id(0);
  const int wg = lid / 128, warp = (lid / 32) % 4, lane = lid % 32;
  const int g = lane >> 2, t = lane & 3;
  FLASH_PROLOGUE(ushort, BM)

  const int row0 = q0 + 64 * wg + 16 * warp + g; /* and row0 + 8 */
  /* the loader warpgroup (LDW) copies and never computes: on the GPU in a
   * loop of its own (one loop with both made ptxas keep the loader's
   * addresses live through the MMAs and softmax: spills); in the emulation,
   * whose MMAs are work-group-uniform, it runs the computing loop too, on
   * rows past the work-group's that it never stores */
#if LDW && CLATTN_NV_EMU
  const bool loader = wg == WGS;
#elif LDW /* the loader runs its own loop (below) and returns */
  const bool loader = false;
#else
  const bool loader = true;
#endif
  const uint llid = (uint)(lid - LD_BASE); /* in [0, LD_NT) where loader */

  /* Q → A fragments, straight from global memory (once per kernel). */
  uint qf[KCH][4];
#pragma unroll
  for (int kc = 0; kc < KCH; kc++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      qf[kc][e] = q_pair(Qb, row0 + (e & 1) * 8, 16 * kc + 2 * t + (e >> 1) * 8, Nq, qss, qsd);

  float o[NTO][4];
#pragma unroll
  for (int j = 0; j < NTO; j++)
    o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  const int ntiles = flash_dense_tiles(q0, BM, BN, Nq, Nk, CAUSAL);
#if ALIBI
  const float mod_slope2 = alibi_slope2(h, H);
#endif
#if WG_ALIBI_INIT
  const float mod_slope_raw = mod_slope2 / qscale; /* ALiBi's slope in raw score units */
#endif
#if WG_CAP_ONLY
  const float cap_in = NV_CAP_IN(qscale);
#endif
  /* Descriptors of stage 0; stage 1 lies TILE_BYTES further. */
  const ulong kdesc0 = wg_desc(wg_saddr(KT(0)), BN * 16, 128);
  const ulong vdesc0 = wg_desc(wg_saddr(VT(0)), DP * 16, 128);

#if PINGPONG
  if (wg == WGS - 1 && ntiles > 0) NB_ARRIVE(1); /* warpgroup 0 issues first */
#endif
#if WG_PROFILE
  uint prof_[8] = {0, 0, 0, 0, 0, 0, 0, 0}, prof_t_;
  PROF_CLOCK(prof_t_);
#endif
  float s[NTS][4];
  uint pa[KCP][4];
#if PIPE == 3
  /* Prologue: K(0) and V(0), then K(1); S(0) and its softmax (o is zero:
   * nothing to rescale). */
  float alpha[2] = {1.0f, 1.0f};
  /* the loads of the prologue: K(0), V(0), K(1) (K(0), V(0) landed) */
#define LOAD_PROLOGUE()                                                                            \
  do {                                                                                             \
    if (ntiles > 0) {                                                                              \
      load_tile_async(KT(0), Kb, kss, 0, Nk, llid, 0);                                             \
      load_tile_async(VT(0), Vb, vss, 0, Nk, llid, 1);                                             \
    }                                                                                              \
    CP_COMMIT();                                                                                   \
    if (ntiles > 1) load_tile_async(KT(1), Kb, kss, BN, Nk, llid, 0);                              \
    CP_COMMIT();                                                                                   \
    CP_WAIT(1); /* K(0) and V(0) have landed for this work-item */                                 \
  } while (0)
  /* the loads of iteration `tile` (after its barrier): K(tile + 2), V(tile + 1) */
#define LOAD_STEP(tile)                                                                            \
  do {                                                                                             \
    if ((tile) + 2 < ntiles)                                                                       \
      load_tile_async(KT(((tile) + 2) % 3), Kb, kss, ((tile) + 2) * BN, Nk, llid, 0);              \
    if ((tile) + 1 < ntiles)                                                                       \
      load_tile_async(VT(((tile) + 1) & 1), Vb, vss, ((tile) + 1) * BN, Nk, llid, 1);              \
    CP_COMMIT();                                                                                   \
  } while (0)
#if LDW && !CLATTN_NV_EMU
  /* (the warpgroup index through a shuffle, as CUTLASS does: so ptxas
   * knows the branch warp-uniform and keeps the MMA loop's descriptor math
   * in uniform registers) */
  if (shfl_idx(wg, 0) == WGS) { /* the loader: the computing loop's barriers, one an iteration */
    LOAD_PROLOGUE();
    WG_PROXY();
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int tile = 0; tile < ntiles; tile++) {
      CP_WAIT(0); /* K(tile + 1) and V(tile) have landed */
      WG_PROXY();
      barrier(CLK_LOCAL_MEM_FENCE);
      LOAD_STEP(tile);
    }
    return;
  }
#endif
  if (loader) {
    LOAD_PROLOGUE();
    WG_PROXY();
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (ntiles > 0) {
    ALIBI_INIT_TILE(0);
    WG_FENCE();
    S_MMAS(kdesc0);
    WG_COMMIT();
    WG_WAIT0();
#pragma unroll
    for (int c = 0; c < BN / 32; c++)
      WG_KEEP16(s, 4 * c);
    MODS_TILE(0);
    MASK_TILE(0);
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
      SOFTMAX_STEP_DEFER(s, NTS, rr, m[rr], l[rr], alpha[rr], WG_QS);
  }
  /* Iteration t begins by waiting for P·V(t-1) (issued in iteration t-1
   * with S(t)), rescales O by the factor of softmax(t) and packs P(t): the
   * wait sits across the loop's back edge from the softmax of t, where
   * ptxas cannot move it (within one block it schedules wgmma.wait_group 0
   * right after the wait_group 1, before the softmax: measured in the SASS
   * of CUDA 13.0's ptxas, tests/nvptx_builtins.cl) */
  for (int tile = 0; tile < ntiles; tile++) {
    const int kv1 = (tile + 1) * BN; /* the next tile */
    WG_WAIT0(); /* P·V(tile - 1) is done: o and pa are free */
    KEEP_O();
    /* lazy (WG_LAZY): most tiles keep the max, no rescale */
    if (!SOFTMAX_LAZY || alpha[0] != 1.0f || alpha[1] != 1.0f) {
      RESCALE_O(o, NTO, 0, alpha[0]);
      RESCALE_O(o, NTO, 1, alpha[1]);
    }
    PACK_P();
    ALIBI_INIT_TILE(kv1); /* s is free: the next S starts from ALiBi's term */
    if (loader) {
      CP_WAIT(0); /* K(tile + 1) and V(tile) have landed for this work-item */
      WG_PROXY(); /* (by the writers: the loader's 128 when there is one) */
    }
    PROF(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* ... for all; every warpgroup is done with tile - 1 */
    PROF(1);
    if (loader) LOAD_STEP(tile);
    const ulong vdesc = vdesc0 + (ulong)((tile & 1) * (TILE_BYTES >> 4));
#if PINGPONG
    NB_SYNC(1 + wg); /* this warpgroup's turn */
#endif
    PROF(2);
    /* the fence in each branch, right before its MMAs: a fence before the
     * branch made ptxas inject a warpgroup.arrive in it and serialise every
     * wgmma (C7520) */
    if (tile + 1 < ntiles) {
      const ulong kdesc = kdesc0 + (ulong)(((tile + 1) % 3) * (TILE_BYTES >> 4));
      KEEP_O(); /* rescaled before the fence */
      WG_FENCE();
      S_MMAS(kdesc);
      WG_COMMIT();
      PV_MMAS(vdesc);
      WG_COMMIT();
#if PINGPONG
      NB_ARRIVE(wg + 1 < WGS ? wg + 2 : 1); /* the next warpgroup's turn */
#endif
      PROF(3);
      WG_WAIT1(); /* S(tile + 1) is done; P·V(tile) may still run */
#pragma unroll
      for (int c = 0; c < BN / 32; c++)
        WG_KEEP16(s, 4 * c);
      PROF(4);
      MODS_TILE(kv1);
      MASK_TILE(kv1);
#pragma unroll
      for (int rr = 0; rr < 2; rr++)
        SOFTMAX_STEP_DEFER(s, NTS, rr, m[rr], l[rr], alpha[rr], WG_QS);
      PROF(5);
    } else {
      KEEP_O();
      WG_FENCE();
      PV_MMAS(vdesc);
      WG_COMMIT();
#if PINGPONG
      if (wg < WGS - 1) NB_ARRIVE(wg + 2); /* the last one's last turn has no taker */
#endif
      PROF(3);
    }
    PROF(6);
  }
  WG_WAIT0();
  KEEP_O();
#else
#if PIPE == 2
  /* Two stages: tile t+1 (K and V) streams in while tile t is computed. */
  if (ntiles > 0) {
    load_tile_async(KT(0), Kb, kss, 0, Nk, lid, 0);
    load_tile_async(VT(0), Vb, vss, 0, Nk, lid, 1);
  }
  CP_COMMIT();
#elif PIPE == 1
  if (ntiles > 0) load_tile_async(KT(0), Kb, kss, 0, Nk, lid, 0);
  CP_COMMIT();
  if (ntiles > 0) load_tile_async(VT(0), Vb, vss, 0, Nk, lid, 1);
  CP_COMMIT();
#endif
  for (int tile = 0; tile < ntiles; tile++) {
    const int kv0 = tile * BN;
#if PIPE == 2
    const int stage = tile & 1;
    if (tile + 1 < ntiles) {
      load_tile_async(KT(stage ^ 1), Kb, kss, kv0 + BN, Nk, lid, 0);
      load_tile_async(VT(stage ^ 1), Vb, vss, kv0 + BN, Nk, lid, 1);
    }
    CP_COMMIT();
    CP_WAIT(1); /* tile t has landed for this work-item */
#elif PIPE == 1
    const int stage = 0;
    CP_WAIT(1); /* K(tile) has landed for this work-item */
#else
    const int stage = 0;
    barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's MMAs are done */
    load_tile(KT(0), Kb, kss, ksd, kv0, Nk, lid, 0);
    load_tile(VT(0), Vb, vss, vsd, kv0, Nk, lid, 1);
#endif
    PROF(0);
    WG_PROXY();
    barrier(CLK_LOCAL_MEM_FENCE);
    PROF(1);
    const ulong kdesc = kdesc0 + (ulong)(stage * (TILE_BYTES >> 4));
    const ulong vdesc = vdesc0 + (ulong)(stage * (TILE_BYTES >> 4));

#if PINGPONG
    NB_SYNC(1 + wg); /* this warpgroup's turn */
#endif
    PROF(2);
    ALIBI_INIT_TILE(kv0);
    WG_FENCE();
    S_MMAS(kdesc);
    WG_COMMIT();
#if PINGPONG
    /* the next warpgroup's turn (the last one's last turn has no taker) */
    if (wg < WGS - 1 || tile + 1 < ntiles) NB_ARRIVE(wg + 1 < WGS ? wg + 2 : 1);
#endif
    PROF(3);
    WG_WAIT0();
#pragma unroll
    for (int c = 0; c < BN / 32; c++)
      WG_KEEP16(s, 4 * c);
    PROF(4);

#if PIPE == 1
    barrier(CLK_LOCAL_MEM_FENCE); /* every warpgroup is done reading K(tile) */
    if (tile + 1 < ntiles) load_tile_async(KT(0), Kb, kss, kv0 + BN, Nk, lid, 0);
    CP_COMMIT();
#endif
    MODS_TILE(kv0);
    MASK_TILE(kv0);

    /* Online softmax on the accumulators: rows g and g+8 of the warp. */
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
      SOFTMAX_STEP(s, NTS, o, NTO, rr, m[rr], l[rr], WG_QS);
    PACK_P();
    KEEP_O(); /* the rescaled accumulators too */
    PROF(5);

#if PIPE == 1
    CP_WAIT(1); /* V(tile) has landed */
    WG_PROXY();
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
    /* O += P·V */
    WG_FENCE();
    PV_MMAS(vdesc);
    WG_COMMIT();
    WG_WAIT0();
    KEEP_O();
    PROF(6);
#if PIPE == 1
    barrier(CLK_LOCAL_MEM_FENCE); /* every warpgroup is done reading V(tile) */
    if (tile + 1 < ntiles) load_tile_async(VT(0), Vb, vss, kv0 + BN, Nk, lid, 1);
    CP_COMMIT();
#elif PIPE == 2
    barrier(CLK_LOCAL_MEM_FENCE); /* every warpgroup is done with this stage */
#endif
    PROF(7);
  }
#endif
#if WG_PROFILE
  if (warp == 0 && lane == 0 && ntiles > 0 && get_group_id(0) == get_num_groups(0) / 2 &&
      get_group_id(1) == 0 && get_group_id(2) == 0) {
    const uint n = (uint)ntiles;
    printf("wgprof D=%d WGS=%d BN=%d wg=%d tiles=%d cycles/tile: load %u bar1 %u turn %u "
           "sissue %u swait %u soft %u pv %u bar2 %u\n",
           D, WGS, BN, wg, ntiles, prof_[0] / n, prof_[1] / n, prof_[2] / n, prof_[3] / n,
           prof_[4] / n, prof_[5] / n, prof_[6] / n, prof_[7] / n);
  }
#endif

  __global ushort *Ob = O + (long)b * osb + (long)qstart * oss + (long)h * osh;
  /* the emulated loader's rows are the next work-group's: it stores none
   * (but takes part in the emulated shuffles' barriers) */
  const int nq_store = LDW && wg >= WGS ? 0 : Nq;
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    const int row = row0 + 8 * rr;
    STORE_FRAGMENT_ROW(Ob, oss, osd, LSE, write_lse, FLASH_LSE_INDEX(bh, row), o, NTO, rr, row, t,
                       nq_store, m[rr] - WG_M0, l[rr], WG_QS);
  }
}
