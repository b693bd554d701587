/* tma_probe.cl — kernels of bench/tma_probe.c: Hopper tensor maps built on the device (tensormap.replace)
 * and TMA tile loads from OpenCL, against a cp.async ring of the same shape (a measuring tool). */

/* Each __asm__ volatile("// @@RAW " ...) is an inline-asm comment whose text, with the operands substituted by NVIDIA's
 * compiler, becomes the instruction once tma_probe.c strips the "// @@RAW " prefix (sm_90a). */
/* RAW: __asm__ volatile("// @@RAW " ...) written out (OpenCL C 1.2 has no variadic macros) */

inline uint saddr(__local const void *p) { return (uint)(ulong)p; }

/* The tensor map of a 3-D tensor (dims d0 innermost, d1, d2; strides s1, s2 in bytes), 2-byte
 * elements, box (b0, b1, b2), swizzle mode sw (0 none, 3 128B), zero fill, built by the work-group
 * in local memory from zeros and published to gmap (128 bytes, global). */
inline void build_map(__local uint *tms, __global uchar *gmap, ulong base, uint d0, uint d1, uint d2,
                      ulong s1, ulong s2, uint b0, uint b1, uint b2, uint sw, uint stride_shift) {
  const uint lid = get_local_id(0), ta = saddr(tms);
  if (lid < 32) tms[lid] = 0;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid == 0) {
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_address.shared::cta.b1024.b64 [%0], %1;" ::"r"(ta), "l"(base) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.rank.shared::cta.b1024.b32 [%0], 2;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.box_dim.shared::cta.b1024.b32 [%0], 0, %1;" ::"r"(ta), "r"(b0) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.box_dim.shared::cta.b1024.b32 [%0], 1, %1;" ::"r"(ta), "r"(b1) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.box_dim.shared::cta.b1024.b32 [%0], 2, %1;" ::"r"(ta), "r"(b2) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_dim.shared::cta.b1024.b32 [%0], 0, %1;" ::"r"(ta), "r"(d0) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_dim.shared::cta.b1024.b32 [%0], 1, %1;" ::"r"(ta), "r"(d1) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_dim.shared::cta.b1024.b32 [%0], 2, %1;" ::"r"(ta), "r"(d2) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_stride.shared::cta.b1024.b64 [%0], 0, %1;" ::"r"(ta), "l"(s1 >> stride_shift)
        : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.global_stride.shared::cta.b1024.b64 [%0], 1, %1;" ::"r"(ta), "l"(s2 >> stride_shift)
        : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.element_stride.shared::cta.b1024.b32 [%0], 0, 1;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.element_stride.shared::cta.b1024.b32 [%0], 1, 1;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.element_stride.shared::cta.b1024.b32 [%0], 2, 1;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.elemtype.shared::cta.b1024.b32 [%0], 1;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.interleave_layout.shared::cta.b1024.b32 [%0], 0;" ::"r"(ta) : "memory");
    if (sw) /* an immediate operand */
      __asm__ volatile("// @@RAW " "tensormap.replace.tile.swizzle_mode.shared::cta.b1024.b32 [%0], 3;" ::"r"(ta) : "memory");
    else
      __asm__ volatile("// @@RAW " "tensormap.replace.tile.swizzle_mode.shared::cta.b1024.b32 [%0], 0;" ::"r"(ta) : "memory");
    __asm__ volatile("// @@RAW " "tensormap.replace.tile.fill_mode.shared::cta.b1024.b32 [%0], 0;" ::"r"(ta) : "memory");
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < 32) {
    __asm__ volatile("// @@RAW " "tensormap.cp_fenceproxy.global.shared::cta.tensormap::generic.release.gpu.sync.aligned [%0], [%1], 128;" ::"l"(
            gmap),
        "r"(ta)
        : "memory");
    __asm__ volatile("// @@RAW " "fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" ::"l"(gmap) : "memory");
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}

inline void mbar_init(uint mb, uint count) {
  __asm__ volatile("// @@RAW " "mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(mb), "r"(count) : "memory");
}
inline void mbar_expect(uint mb, uint bytes) {
  __asm__ volatile("// @@RAW " "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(mb), "r"(bytes) : "memory");
}
inline void mbar_wait(uint mb, uint parity) {
  uint done = 0;
  do {
    __asm__ volatile("// @@RAW " "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(mb), "r"(parity)
        : "memory");
  } while (!done);
}
inline void tma3(uint dst, __global const uchar *gmap, int c0, int c1, int c2, uint mb) {
  __asm__ volatile("// @@RAW " "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];" ::"r"(dst),
      "l"(gmap), "r"(c0), "r"(c1), "r"(c2), "r"(mb)
      : "memory");
}

/* One box of a [rows][heads][dim] 2-byte tensor at (c0, h, r0) into local memory, copied out as it
 * lies (the host checks the swizzled placement and the zero fill past the rows). */
__kernel __attribute__((reqd_work_group_size(128, 1, 1))) void tma_one(
    __global const ushort *src, __global uchar *gmap, __global ushort *out, uint dim, uint heads, uint rows,
    uint b0, uint b2, int c0, int h, int r0, uint sw, uint stride_shift) {
  __local uint tms[32] __attribute__((aligned(128)));
  __local uint4 tile[1024] __attribute__((aligned(1024))); /* 16 KiB */
  __local ulong mbar;
  const uint lid = get_local_id(0), mb = saddr(&mbar);
  build_map(tms, gmap, (ulong)src, dim, heads, rows, (ulong)dim * 2, (ulong)dim * heads * 2, b0, 1, b2, sw,
            stride_shift);
  for (uint i = lid; i < 1024; i += 128) tile[i] = (uint4)(0xdeadbeefu);
  if (lid == 0) mbar_init(mb, 1);
  barrier(CLK_LOCAL_MEM_FENCE);
  __asm__ volatile("// @@RAW " "fence.proxy.async.shared::cta;" ::: "memory");
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid == 0) {
    mbar_expect(mb, b0 * b2 * 2);
    tma3(saddr(tile), gmap, c0, h, r0, mb);
  }
  mbar_wait(mb, 0);
  __local const ushort *t = (__local const ushort *)tile;
  for (uint i = lid; i < b0 * b2; i += 128) out[i] = t[i];
}

#ifndef NS
#define NS 4
#endif
#ifndef BN
#define BN 16
#endif
#define DIM 128
#define ROWB (DIM * 2)           /* bytes of a key row */
#define TILEB (BN * ROWB)        /* bytes of a K (or V) tile */
#define STAGEB (2 * TILEB)       /* K and V */
#define CHUNKS (STAGEB / 16 / 32) /* 16-byte chunks a lane reads (or loads) a stage */

/* a lane's share of a stage, read as the decode kernels would (16 bytes at a time), folded into x */
#define CONSUME(stage)                                                                             \
  do {                                                                                             \
    __local const uint4 *s_ = (__local const uint4 *)(ring + (stage)*STAGEB);                      \
    _Pragma("unroll") for (int i_ = 0; i_ < CHUNKS; i_++) x ^= s_[i_ * 32 + ln];                  \
  } while (0)

/* Decode-shaped streams: K and V [B·N rows][Hk][DIM], work-group = one warp,
 * (b, hk, split) each; a ring of NS stages of BN keys. TMA: one lane issues 4 (sw 3: two 64-wide
 * boxes a tile) or 2 (sw 0) tensor copies a stage, every lane waits on the stage's mbarrier. */
__kernel __attribute__((reqd_work_group_size(32, 1, 1))) void stream_tma(
    __global const ushort *k, __global const ushort *v, __global uchar *maps, __global uint4 *sink, uint heads,
    uint n, uint splits, uint sw, uint prebuilt) {
  __local uint tms[32] __attribute__((aligned(128)));
  __local uchar ring[NS * STAGEB] __attribute__((aligned(1024)));
  __local ulong mbar[NS];
  const uint wg = get_group_id(0), ln = get_local_id(0);
  const uint split = wg % splits, hk = (wg / splits) % heads, b = wg / splits / heads;
  const uint nb = get_num_groups(0) / splits / heads;
  __global uchar *km = maps + (prebuilt ? 0 : (ulong)wg * 256 + 256), *vm = km + 128;
  const uint bx = sw ? 64 : DIM;
  if (prebuilt) {
    __asm__ volatile("// @@RAW " "fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" ::"l"(km) : "memory");
    __asm__ volatile("// @@RAW " "fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" ::"l"(vm) : "memory");
  } else {
    build_map(tms, km, (ulong)k, DIM, heads, nb * n, ROWB, (ulong)ROWB * heads, bx, 1, BN, sw, 0);
    build_map(tms, vm, (ulong)v, DIM, heads, nb * n, ROWB, (ulong)ROWB * heads, bx, 1, BN, sw, 0);
  }
  if (ln == 0)
    for (int s = 0; s < NS; s++) mbar_init(saddr(&mbar[s]), 1);
  barrier(CLK_LOCAL_MEM_FENCE);
  __asm__ volatile("// @@RAW " "fence.proxy.async.shared::cta;" ::: "memory");
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint len = n / splits, k0 = b * n + split * len, nt = len / BN;
#define ISSUE(t)                                                                                   \
  if (ln == 0) {                                                                                   \
    const uint st_ = (t) % NS, mb_ = saddr(&mbar[st_]), d_ = saddr(ring + st_ * STAGEB);            \
    const int r_ = k0 + (t)*BN;                                                                     \
    mbar_expect(mb_, STAGEB);                                                                      \
    if (sw) {                                                                                      \
      tma3(d_, km, 0, hk, r_, mb_);                                                                \
      tma3(d_ + TILEB / 2, km, 64, hk, r_, mb_);                                                   \
      tma3(d_ + TILEB, vm, 0, hk, r_, mb_);                                                        \
      tma3(d_ + TILEB + TILEB / 2, vm, 64, hk, r_, mb_);                                           \
    } else {                                                                                       \
      tma3(d_, km, 0, hk, r_, mb_);                                                                \
      tma3(d_ + TILEB, vm, 0, hk, r_, mb_);                                                        \
    }                                                                                              \
  }
  for (uint t = 0; t < NS - 1 && t < nt; t++) ISSUE(t);
  uint4 x = (uint4)(0);
  for (uint t = 0; t < nt; t++) {
    if (t + NS - 1 < nt) ISSUE(t + NS - 1);
    mbar_wait(saddr(&mbar[t % NS]), (t / NS) & 1);
    CONSUME(t % NS);
    barrier(CLK_LOCAL_MEM_FENCE); /* the stage is free again */
  }
  sink[wg * 32 + ln] = x;
}

/* the K and V maps of stream_tma, once, into maps[0..255] (one work-group of 32) */
__kernel __attribute__((reqd_work_group_size(32, 1, 1))) void make_maps(__global const ushort *k,
                                                                      __global const ushort *v,
                                                                      __global uchar *maps, uint heads,
                                                                      uint rows, uint sw) {
  __local uint tms[32] __attribute__((aligned(128)));
  const uint bx = sw ? 64 : DIM;
  build_map(tms, maps, (ulong)k, DIM, heads, rows, ROWB, (ulong)ROWB * heads, bx, 1, BN, sw, 0);
  build_map(tms, maps + 128, (ulong)v, DIM, heads, rows, ROWB, (ulong)ROWB * heads, bx, 1, BN, sw, 0);
}

/* the same stream through cp.async (16 bytes a lane an instruction, as decode_tc loads) */
__kernel __attribute__((reqd_work_group_size(32, 1, 1))) void stream_cp(__global const ushort *k,
                                                                      __global const ushort *v,
                                                                      __global uint4 *sink, uint heads,
                                                                      uint n, uint splits) {
  __local uchar ring[NS * STAGEB] __attribute__((aligned(1024)));
  const uint wg = get_group_id(0), ln = get_local_id(0);
  const uint split = wg % splits, hk = (wg / splits) % heads, b = wg / splits / heads;
  const uint len = n / splits, k0 = b * n + split * len, nt = len / BN;
#define CP_ISSUE(t)                                                                                \
  do {                                                                                             \
    const uint st_ = (t) % NS;                                                                     \
    _Pragma("unroll") for (int i_ = 0; i_ < CHUNKS; i_++) {                                        \
      const uint c_ = i_ * 32 + ln, kv_ = c_ / (TILEB / 16), r_ = (c_ % (TILEB / 16)) / (ROWB / 16),  \
                 o_ = c_ % (ROWB / 16);                                                            \
      __global const uchar *g_ = (__global const uchar *)(kv_ ? v : k) +                           \
                                 ((ulong)(k0 + (t)*BN + r_) * heads + hk) * ROWB + o_ * 16;        \
      __asm__ volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(                 \
                           saddr(ring + st_ * STAGEB + c_ * 16)),                                  \
                       "l"(g_)                                                                     \
                       : "memory");                                                                \
    }                                                                                              \
    __asm__ volatile("cp.async.commit_group;" ::: "memory");                                       \
  } while (0)
  for (uint t = 0; t < NS - 1; t++) {
    if (t < nt) CP_ISSUE(t);
    else __asm__ volatile("cp.async.commit_group;" ::: "memory");
  }
  uint4 x = (uint4)(0);
  for (uint t = 0; t < nt; t++) {
    if (t + NS - 1 < nt) CP_ISSUE(t + NS - 1);
    else __asm__ volatile("cp.async.commit_group;" ::: "memory");
#if NS == 2
    __asm__ volatile("cp.async.wait_group 1;" ::: "memory");
#elif NS == 3
    __asm__ volatile("cp.async.wait_group 2;" ::: "memory");
#else
    __asm__ volatile("cp.async.wait_group 3;" ::: "memory");
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    CONSUME(t % NS);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  sink[wg * 32 + ln] = x;
}
