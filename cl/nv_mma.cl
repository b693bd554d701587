/* nv_mma.cl — what the NVIDIA tensor-core kernels (flash_tc.cl, flash_wgmma.cl, flash_bwd_tc.cl) share: 16-bit type names, mma.sync, ldmatrix, packing, shuffles, exp2, chunk loads and the online softmax and epilogue on m16n8 accumulator fragments. */

/*
 * Both kernels keep S and O in the accumulator layout of mma.m16n8 (wgmma
 * repeats it along N): lane 4·g + t of a warp holds, for each group j of 8
 * columns, x[j][0..1] = row g, columns 8j + 2t, +1 and x[j][2..3] = row
 * g + 8, the same columns. The helpers below take such fragments as
 * float (*)[4] with their group counts; every call has constant counts, so
 * after inlining the loops unroll and the fragments stay in registers.
 */
#ifndef TF32
#define TF32 0 /* f32 storage on 3xTF32 mma.sync m16n8k8 (flash_tc.cl) */
#endif
#if CLATTN_DTYPE == 1
#define MMA_T "f16"
#define CVT_X2 "cvt.rn.f16x2.f32"
#elif CLATTN_DTYPE == 2
#define MMA_T "bf16"
#define CVT_X2 "cvt.rn.bf16x2.f32"
#elif !(CLATTN_DTYPE == 0 && TF32)
#error "the tensor-core kernels need CLATTN_DTYPE 1 (f16) or 2 (bf16), or 0 (f32) with TF32"
#endif
/* The kernels' parameters these helpers read (the host always passes them). */
#ifndef D
#define D 64
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef VEC_GLOBAL
#define VEC_GLOBAL 0 /* unit dim stride, D % 8 == 0, strides % 8 == 0: 16-byte I/O */
#endif

#ifndef CLATTN_NV_EMU
#define CLATTN_NV_EMU 0
#endif
#if CLATTN_NV_EMU
/* CPU emulation of the warp-level PTX below (CLATTN_NV_EMULATE=1, tests
 * only: the tensor-core kernels' indexing, masking and paging run on PoCL
 * in CI). A work-group of 32 work-items is the warp; lanes exchange their
 * registers through local scratch between barriers (the kernels call every
 * one of these in work-group-uniform control flow; work-item i is lane
 * i % 32 of warp i / 32). The kernel defines NV_EMU_LANES (its work-group
 * size) and NV_EMU_BASE (the __local uchar * that the 32-bit "shared
 * addresses" of smem_addr are byte offsets from) and declares
 * NV_EMU_SCRATCH. Products
 * are summed in f32 in k order (the hardware's order and rounding differ
 * within the tests' tolerances); cp.async is a plain copy. */
#define NV_EMU_SCRATCH __local uint nv_emu_x[NV_EMU_LANES * 6]
/* loops around emulated PTX stay loops (unrolled, their barriers made
 * PoCL's kernel builds take minutes) */
#define NV_UNROLL _Pragma("unroll 1")
inline float emu_h2f(uint h) {
#if CLATTN_DTYPE == 1
  const ushort hs = (ushort)h;
  return vload_half(0, (const half *)&hs);
#else
  return as_float((h & 0xffffu) << 16);
#endif
}
inline uint emu_f2h(float x) {
#if CLATTN_DTYPE == 1
  ushort hs;
  vstore_half_rte(x, 0, (half *)&hs);
  return hs;
#else
  const uint u = as_uint(x);
  if (isnan(x)) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
#endif
}
/* One MMA of the warp: m16n8k16 on 16-bit pairs (tf32 = 0) or m16n8k8 on
 * TF32 (tf32 = 1, one element a register, of which the hardware reads the
 * top 19 bits). In 32-bit registers both have the same fragments: register
 * column kk (0..7) of A row `row` is in lane 4·(row % 8) + kk % 4, register
 * row / 8 + 2·(kk / 4); of B column `col` in lane 4·col + kk % 4, register
 * 4 + kk / 4; a 16-bit register holds k = 2kk (low half) and 2kk + 1. */
inline void emu_mma(float *c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1,
                    __local uint *x, const int tf32) {
  const int lane = get_local_id(0) % 32, g = lane >> 2, t = lane & 3;
  x += (get_local_id(0) / 32) * 32 * 6; /* this warp's lanes */
  x[lane * 6 + 0] = a0;
  x[lane * 6 + 1] = a1;
  x[lane * 6 + 2] = a2;
  x[lane * 6 + 3] = a3;
  x[lane * 6 + 4] = b0;
  x[lane * 6 + 5] = b1;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int per = tf32 ? 1 : 2; /* elements a register */
  float r[4];
  for (int e = 0; e < 4; e++) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    float acc = c[e];
    for (int k = 0; k < 8 * per; k++) {
      const int kk = k / per, hi = k % per;
      const uint aw = x[(4 * (row % 8) + kk % 4) * 6 + row / 8 + 2 * (kk / 4)];
      const uint bw = x[(4 * col + kk % 4) * 6 + 4 + kk / 4];
      acc += tf32 ? as_float(aw & 0xffffe000u) * as_float(bw & 0xffffe000u)
                  : emu_h2f(aw >> (16 * hi)) * emu_h2f(bw >> (16 * hi));
    }
    r[e] = acc;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int e = 0; e < 4; e++)
    c[e] = r[e];
}
#define MMA(c, a0, a1, a2, a3, b0, b1)                                                             \
  emu_mma((c), (a0), (a1), (a2), (a3), (b0), (b1), nv_emu_x, 0)
#define MMA8(c, a, b) emu_mma((c), (a)[0], (a)[1], (a)[2], (a)[3], (b)[0], (b)[1], nv_emu_x, 1)
/* cvt.rna.tf32.f32: to the nearest TF32, ties away from zero */
inline uint tf32_hi(float x) {
  const uint u = as_uint(x);
  return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
}
#define smem_addr(p) ((uint)(int)((__local const uchar *)(p)-NV_EMU_BASE)) /* signed offset */
/* ldmatrix .x4: lane L gives the address of row L % 8 of matrix L / 8; lane
 * l gets (row l / 4, cols 2(l % 4), +1) of each matrix, .trans (rows
 * 2(l % 4), +1, col l / 4). */
inline void emu_ldm(uint *r, uint addr, int trans, __local uint *x, __local const uchar *base) {
  const int lane = get_local_id(0) % 32;
  x += (get_local_id(0) / 32) * 32;
  x[lane] = addr;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int m = 0; m < 4; m++) {
    if (!trans) {
      r[m] = *(__local const uint *)(base + (int)x[m * 8 + (lane >> 2)] + 4 * (lane & 3));
    } else {
      const int r0 = (int)x[m * 8 + 2 * (lane & 3)], r1 = (int)x[m * 8 + 2 * (lane & 3) + 1];
      const uint lo = *(__local const ushort *)(base + r0 + 2 * (lane >> 2));
      const uint hi = *(__local const ushort *)(base + r1 + 2 * (lane >> 2));
      r[m] = lo | (hi << 16);
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}
#define EMU_LDM(r0, r1, r2, r3, addr, tr)                                                          \
  do {                                                                                             \
    uint r_[4];                                                                                    \
    emu_ldm(r_, (addr), (tr), nv_emu_x, NV_EMU_BASE);                                              \
    r0 = r_[0];                                                                                    \
    r1 = r_[1];                                                                                    \
    r2 = r_[2];                                                                                    \
    r3 = r_[3];                                                                                    \
  } while (0)
#define LDM_X4(r0, r1, r2, r3, addr) EMU_LDM(r0, r1, r2, r3, addr, 0)
#define LDM_X4_T(r0, r1, r2, r3, addr) EMU_LDM(r0, r1, r2, r3, addr, 1)
inline uint pack2(float lo, float hi) { return emu_f2h(lo) | (emu_f2h(hi) << 16); }
inline float emu_shfl_xor(float v, int m, __local uint *x) {
  const int lane = get_local_id(0) % 32;
  x += (get_local_id(0) / 32) * 32;
  x[lane] = as_uint(v);
  barrier(CLK_LOCAL_MEM_FENCE);
  const float r = as_float(x[lane ^ m]);
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
#define shfl_xor(v, m) emu_shfl_xor((v), (m), nv_emu_x)
inline int emu_shfl_idx(int v, int src, __local uint *x) {
  x += (get_local_id(0) / 32) * 32;
  x[get_local_id(0) % 32] = (uint)v;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int r = (int)x[src & 31];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
#define shfl_idx(v, src) emu_shfl_idx((v), (src), nv_emu_x)
inline float fast_exp2(float x) { return exp2(x); }
inline float fast_tanh(float x) { return tanh(x); }
#define NV_MIN_NAN(x, c) ((x) > (c) ? (c) : (x)) /* min(x, c), NaN for a NaN x */
#define CP_ASYNC16(dst, src, ok)                                                                   \
  (*(__local uint4 *)(NV_EMU_BASE + (int)(dst)) =                                                  \
       (ok) ? *(__global const uint4 *)(src) : (uint4)(0u))
#define CP_ASYNC4(dst, src, ok)                                                                    \
  (*(__local uint *)(NV_EMU_BASE + (int)(dst)) = (ok) ? *(__global const uint *)(src) : 0u)
#define CP_COMMIT() (void)0
#define CP_WAIT(n) (void)0
inline uint prmt(uint a, uint b, uint sel) {
  const ulong x = (ulong)a | ((ulong)b << 32);
  uint d = 0u;
  for (int i = 0; i < 4; i++)
    d |= (uint)((x >> (8 * ((sel >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return d;
}
inline uint sub_h2(uint a, uint b) {
  return emu_f2h(emu_h2f(a) - emu_h2f(b)) | (emu_f2h(emu_h2f(a >> 16) - emu_h2f(b >> 16)) << 16);
}
inline uint mul_x2(uint a, uint b) {
  return emu_f2h(emu_h2f(a) * emu_h2f(b)) | (emu_f2h(emu_h2f(a >> 16) * emu_h2f(b >> 16)) << 16);
}
#else
#define NV_UNROLL _Pragma("unroll")
/* One m16n8k16 MMA: c += A·B, A in four 16-bit-pair registers, B in two. */
#define MMA(c, a0, a1, a2, a3, b0, b1)                                                             \
  __asm__ volatile("mma.sync.aligned.m16n8k16.row.col.f32." MMA_T "." MMA_T ".f32 "                \
                   "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                         \
                   : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                \
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))

/* Shared-state-space address of a local pointer, for ldmatrix / cp.async.
 * LDM_ADDR 1: the integer value of a __local pointer is already the shared
 * address; 2: it is a generic address (convert with cvta.to.shared). */
#ifndef LDM_ADDR
#define LDM_ADDR 1
#endif
inline uint smem_addr(__local const void *p) {
#if LDM_ADDR == 1
  return (uint)(ulong)p;
#else
  uint r;
  __asm__("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }"
          : "=r"(r)
          : "l"((ulong)p));
  return r;
#endif
}
#define LDM_X4(r0, r1, r2, r3, addr)                                                               \
  __asm__ volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"                 \
                   : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)                                        \
                   : "r"(addr))
#define LDM_X4_T(r0, r1, r2, r3, addr)                                                             \
  __asm__ volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"           \
                   : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)                                        \
                   : "r"(addr))

#if !TF32
/* Packs two floats into one f16x2/bf16x2 register, lo in the low half. */
inline uint pack2(float lo, float hi) {
  uint r;
  __asm__(CVT_X2 " %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
#endif

inline float shfl_xor(float v, int m) {
  float r;
  __asm__ volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
  return r;
}

/* lane src's v */
inline int shfl_idx(int v, int src) {
  int r;
  __asm__ volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v), "r"(src));
  return r;
}

/* tanh.approx.f32 (sm_75+): one MUFU operation, relative error at most
 * 2^-10.99 (PTX ISA), what FlashAttention's softcap uses (cutlass::fast_tanh) */
inline float fast_tanh(float x) {
  float r;
  __asm__("tanh.approx.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

inline float fast_exp2(float x) {
  float r;
  __asm__("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

/* min(x, c), NaN for a NaN x (sm_80+: one instruction) */
inline float nv_min_nan(float x, float c) {
  float r;
  __asm__("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(x), "f"(c));
  return r;
}
#define NV_MIN_NAN(x, c) nv_min_nan((x), (c))

/* cp.async of 16 bytes from global src to the local (shared-space) address
 * dst; ok false: 16 zero bytes (src must still be a valid address). Then
 * CP_COMMIT closes a group and CP_WAIT(n) waits until at most n groups of
 * this work-item are in flight. */
/* CLATTN_CP_L2: the L2 prefetch size cp.async asks for (0: none; 64, 128
 * or 256 bytes: .L2::NB, PTX ISA 7.4). */
#ifndef CLATTN_CP_L2
#define CLATTN_CP_L2 256
#endif
#if CLATTN_CP_L2 == 256
#define CP_L2_HINT ".L2::256B"
#elif CLATTN_CP_L2 == 128
#define CP_L2_HINT ".L2::128B"
#elif CLATTN_CP_L2 == 64
#define CP_L2_HINT ".L2::64B"
#else
#define CP_L2_HINT ""
#endif
#define CP_ASYNC16(dst, src, ok)                                                                   \
  __asm__ volatile("cp.async.cg.shared.global" CP_L2_HINT " [%0], [%1], 16, %2;"                   \
                   :                                                                               \
                   : "r"(dst), "l"(src), "r"((ok) ? 16 : 0)                                        \
                   : "memory")
/* cp.async of 4 bytes (through L1: .ca), ok false: 4 zero bytes. */
#define CP_ASYNC4(dst, src, ok)                                                                    \
  __asm__ volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;"                                  \
                   :                                                                               \
                   : "r"(dst), "l"(src), "r"((ok) ? 4 : 0)                                         \
                   : "memory")
#define CP_COMMIT() __asm__ volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) __asm__ volatile("cp.async.wait_group " #n ";" ::: "memory")

/* Bytes of a and b picked by the nibbles of sel (PTX prmt: a's bytes 0-3, b's 4-7). */
inline uint prmt(uint a, uint b, uint sel) {
  uint d;
  __asm__("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
  return d;
}
/* Two f16 differences a − b, halfwise (sub.f16x2). */
inline uint sub_h2(uint a, uint b) {
  uint d;
  __asm__("sub.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
}
/* Two products a·b of the MMA's 16-bit type, halfwise (bf16: an fma with
 * -0, sm_80; subnormals kept). */
inline uint mul_x2(uint a, uint b) {
  uint d;
#if CLATTN_DTYPE == 1
  __asm__("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#else
  __asm__("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
#endif
  return d;
}
#endif /* CLATTN_NV_EMU */

/* Four int8 codes (bytes of w) as two 16-bit pairs, exactly: *lo = codes 0,
 * 1, *hi = codes 2, 3 (first in the low half). f16: each biased code
 * (x + 128) is the low byte of the half 1024 + x + 128, less 1152. bf16:
 * through f32 (2^23 + x + 128, less 2^23 + 128), whose exact values keep
 * their top halves. */
inline void i8x4_to_x2(const uint w, uint *lo, uint *hi) {
  const uint u = w ^ 0x80808080u;
#if CLATTN_DTYPE == 1
  const uint a = prmt(u, 0x64646464u, 0x4140u), b = prmt(u, 0x64646464u, 0x4342u);
  *lo = sub_h2(a, 0x64806480u);
  *hi = sub_h2(b, 0x64806480u);
#else
  const float f0 = as_float(prmt(u, 0x4b000000u, 0x7650u)) - 8388736.0f;
  const float f1 = as_float(prmt(u, 0x4b000000u, 0x7651u)) - 8388736.0f;
  const float f2 = as_float(prmt(u, 0x4b000000u, 0x7652u)) - 8388736.0f;
  const float f3 = as_float(prmt(u, 0x4b000000u, 0x7653u)) - 8388736.0f;
  *lo = prmt(as_uint(f0), as_uint(f1), 0x7632u);
  *hi = prmt(as_uint(f2), as_uint(f3), 0x7632u);
#endif
}

/* Four fp8 codes (KVQ 2: e4m3, 3: e5m2; bytes 0-3 of w) → their values as
 * two pairs of the MMA's 16-bit type, exactly (the same layout as
 * i8x4_to_x2). Each code goes to the top byte of a half (x); its exponent
 * and mantissa bits move down to where the 16-bit format keeps them, which
 * gives the value times a power of two (subnormals included), undone by
 * one multiply by that power. e5m2 in f16 is the code itself. The codes
 * that are inf / NaN (e4m3: S.1111.111; e5m2: exponent 31) would come out
 * finite: a cheap test of the four finds them and the rare branch sets the
 * halves (f16 e5m2 needs none). */
#if CLATTN_DTYPE == 1
#define FP8_SHIFT (KVQ == 2 ? 1 : 0)
#define FP8_MASK (KVQ == 2 ? 0x3f803f80u : 0x7f007f00u)
#define FP8_POW2 0x5c005c00u /* 256 in f16 */
#else
#define FP8_SHIFT (KVQ == 2 ? 4 : 3)
#define FP8_MASK (KVQ == 2 ? 0x07f007f0u : 0x0fe00fe0u)
#define FP8_POW2 (KVQ == 2 ? 0x7b807b80u : 0x77807780u) /* 2^120, 2^112 in bf16 */
#endif
inline uint fp8x2_bits(uint x) { return ((x >> FP8_SHIFT) & FP8_MASK) | (x & 0x80008000u); }
/* byte c's half when the code is inf / NaN */
inline uint fp8_special(uint c) {
#if KVQ == 2
  return ((c & 0x80u) << 8) | 0x7fffu;
#elif CLATTN_DTYPE == 1
  return c << 8;
#else
  return ((c & 0x80u) << 8) | 0x7f80u | ((c & 3u) ? 0x40u : 0u);
#endif
}
inline void fp8x4_to_x2(const uint w, uint *lo, uint *hi) {
  const uint xl = prmt(w, 0u, 0x1404u), xh = prmt(w, 0u, 0x3424u);
#if KVQ == 3 && CLATTN_DTYPE == 1
  *lo = xl;
  *hi = xh;
#else
  *lo = mul_x2(fp8x2_bits(xl), FP8_POW2);
  *hi = mul_x2(fp8x2_bits(xh), FP8_POW2);
#if KVQ == 2
  const uint sp = ((w & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u; /* 0x80 where 0x7f */
#else
  const uint sp = ((w & 0x7c7c7c7cu) + 0x04040404u) & 0x80808080u; /* exponent 31 */
#endif
  if (sp) {
    if (sp & 0x80u) *lo = (*lo & 0xffff0000u) | fp8_special(w & 0xffu);
    if (sp & 0x8000u) *lo = (*lo & 0xffffu) | (fp8_special((w >> 8) & 0xffu) << 16);
    if (sp & 0x800000u) *hi = (*hi & 0xffff0000u) | fp8_special((w >> 16) & 0xffu);
    if (sp & 0x80000000u) *hi = (*hi & 0xffffu) | (fp8_special(w >> 24) << 16);
  }
#endif
}
/* 8-bit K/V with token scales and f16 P (decode_tc, flash_tc): P times
 * TC_VP2, a power of two near 1 / the code's largest value, before V's
 * token scales multiply it, so that P·scale stays above the f16
 * subnormals (e5m2's scales of absmax / 57344 would lose bits there); the
 * kernels divide it out of the output. */
#if KVQ && KVS == 0 && CLATTN_DTYPE == 1
#define TC_VP2 (KVQ == 1 ? 64.0f : KVQ == 2 ? 256.0f : 32768.0f)
#else
#define TC_VP2 1.0f
#endif
/* the tensor-core kernels' 8-bit codes → 16-bit pairs */
#if KVQ == 1
#define KV8X4_TO_X2(w, lo, hi) i8x4_to_x2((w), (lo), (hi))
#else
#define KV8X4_TO_X2(w, lo, hi) fp8x4_to_x2((w), (lo), (hi))
#endif

/* Codes 16·ch .. 16·ch + 15 of the one-byte row at base + ro, dim stride
 * sd (dims past D: 0), as 16 bytes. */
inline uint4 load_chunk8x16(__global const void *basev, long ro, int ch, long sd) {
  __global const uchar *base = (__global const uchar *)basev;
  uint w[4] = {0u, 0u, 0u, 0u};
  for (int u = 0; u < 16; u++) {
    const int k = 16 * ch + u;
    if (k < D) w[u >> 2] |= (uint)base[ro + (long)k * sd] << (8 * (u & 3));
  }
  return (uint4)(w[0], w[1], w[2], w[3]);
}

/* Dims 8·ch .. 8·ch + 7 of the 16-bit row at base + ro (dims past D: 0), as
 * 16 bytes. */
inline uint4 load_chunk16(__global const ushort *base, long ro, int ch, long sd) {
#if VEC_GLOBAL
  (void)sd;
  return *(__global const uint4 *)(base + ro + 8 * ch);
#else
  ushort e[8];
  for (int u = 0; u < 8; u++) {
    const int k = 8 * ch + u;
    e[u] = k < D ? base[ro + (long)k * sd] : (ushort)0;
  }
  return (uint4)((uint)e[0] | ((uint)e[1] << 16), (uint)e[2] | ((uint)e[3] << 16),
                 (uint)e[4] | ((uint)e[5] << 16), (uint)e[6] | ((uint)e[7] << 16));
#endif
}

/* The A-fragment register of Q elements (row, col) and (row, col + 1):
 * zero past Nq rows and D dims. */
inline uint q_pair(__global const ushort *Qb, int row, int col, int Nq, long qss, long qsd) {
  uint lo = 0u, hi = 0u;
  if (row < Nq) {
    const long ro = (long)row * qss;
    if (col < D) lo = Qb[ro + (long)col * qsd];
    if (col + 1 < D) hi = Qb[ro + (long)(col + 1) * qsd];
  }
  return lo | (hi << 16);
}

/* The fragment loops below are macros, not functions: passed through
 * pointers, the fragments were seen to leave the registers for the stack
 * (clang, nvptx). */

/* Sets the scores of s[nts][4] (keys kv0 + 8j + 2t + e%2, rows rg + 8·(e/2))
 * that no query sees to -inf: keys past Nk and, causal, keys after the
 * row's position (row + off). */
#if CAUSAL
#define NV_DEAD(key, rg, e, off, Nk) ((key) >= (Nk) || (key) > (rg) + ((e) >> 1) * 8 + (off))
#else
#define NV_DEAD(key, rg, e, off, Nk) ((key) >= (Nk))
#endif
#define MASK_FRAGMENT(s, nts, kv0, t, rg, off, Nk)                                                 \
  do {                                                                                             \
    _Pragma("unroll") for (int j_ = 0; j_ < (nts); j_++) {                                         \
      _Pragma("unroll") for (int e_ = 0; e_ < 4; e_++) {                                           \
        const int key_ = (kv0) + j_ * 8 + 2 * (t) + (e_ & 1);                                      \
        if (NV_DEAD(key_, rg, e_, off, Nk)) s[j_][e_] = -INFINITY;                                 \
      }                                                                                            \
    }                                                                                              \
  } while (0)

/* One online-softmax step for row half rr (0: row g, 1: row g + 8) of the
 * fragments: the row's running max m and sum l (the four lanes of the row
 * exchange with shuffles), s turned into unnormalised probabilities, o
 * rescaled. Raw scores; qscale is log2(e)·scale. Lazy rescaling
 * (FlashAttention 4's): with a positive scale the running max moves only
 * when the tile's exceeds it by more than 8 in log2 units, so the rescale
 * of o and l (4·nto multiplies a lane, an exp2) is skipped for most tiles
 * and p stays at most 2^8 (f16's P included); the four lanes of a row take
 * the same branch. Off: measured slower on an H100 (+6.7 % f16 d = 64,
 * +8.3 % bf16 d = 128 causal, bench/RESULTS.md §24): the test and branch
 * cost more than the multiplies they save (-DCLATTN_LAZY_RESCALE=1, e.g.
 * through CLATTN_BUILD_DEFINES, for other devices). */
#ifndef CLATTN_LAZY_RESCALE
#define CLATTN_LAZY_RESCALE 0
#endif
/* ALIBI_RAW (host: a positive scale): the tensor-core flash kernels may
 * start S = Q·Kᵀ from ALiBi's term in raw score units (flash_tc.cl
 * TC_ALIBI_INIT, flash_wgmma.cl WG_ALIBI_INIT); -DNO_ALIBI_INIT=1 keeps the
 * log2-unit form. */
#ifndef ALIBI_RAW
#define ALIBI_RAW 0
#endif
#ifndef NO_ALIBI_INIT
#define NO_ALIBI_INIT 0
#endif
/* what the macros below use: a kernel may redefine it (flash_wgmma) */
#define SOFTMAX_LAZY CLATTN_LAZY_RESCALE
#if SOFTCAP
/* Softcap on a score x in log2 units (flash_tc, flash_wgmma): bf16 through tanh.approx, f16 and
 * f32 through exp2 and a fast reciprocal (errors ~2^-22). f16: tanh(y) = 2 / (1 + e^(-2y)) - 1,
 * with no |y| and no sign: e^(-2y) overflows to +inf for y < -44 and the reciprocal of 1 + inf is
 * 0 (t = -1); the absolute error of t, ~2^-21 (what the softmax sees: C·t), is as small as the
 * form below makes it. Five instructions a score (multiply, exp2, add, reciprocal, FMA) where
 * the form with |y|, 1 - u and the sign takes seven (bench/RESULTS.md §33); f32 keeps the form
 * below (its tolerance is 1e-5). */
#if CLATTN_DTYPE == 2
#define NV_SOFTCAP_X(x) (x = SOFTCAP2 * fast_tanh((x) * (1.0f / SOFTCAP2)))
#elif CLATTN_DTYPE == 1
#define NV_SOFTCAP_X(x)                                                                            \
  (x = fma(2.0f * SOFTCAP2,                                                                        \
           native_recip(1.0f + fast_exp2((x) * (-2.0f * CLATTN_LOG2E / SOFTCAP2))), -SOFTCAP2))
#else
#define NV_SOFTCAP_X(x)                                                                            \
  do {                                                                                             \
    const float tt_ = fast_exp2(fabs(x) * (-2.0f * CLATTN_LOG2E / SOFTCAP2));                      \
    x = copysign(SOFTCAP2 * (1.0f - tt_) * native_recip(1.0f + tt_), x);                          \
  } while (0)
#endif
/* Softcap alone, in units of the cap (flash_tc's TC_CAP_ONLY, flash_wgmma's
 * WG_CAP_ONLY): a raw score x → tanh(x·q / SOFTCAP2) for the scale q, the
 * softmax then scaled by NV_CAP_SCALE·SOFTCAP2. NV_CAP_IN(q): the factor of
 * the raw score inside the tanh (bf16) or inside its exp2 (f16, f32).
 * f16: the score kept is r = 1 / (1 + e^(-2y)) = (tanh(y) + 1) / 2 (per
 * pair of scores: two multiplies, two caps, two exp2s, two adds, one
 * reciprocal and three multiplies, NV_SOFTCAP_UNIT2) and the softmax's
 * scale is 2·SOFTCAP2: 2C·(r - r_max) = C·(t - t_max), so P, l and O are
 * those of t, and only the LSE, C·t_max + log2(l) = 2C·(r_max - 1/2) +
 * log2(l), takes the row maximum less NV_CAP_M0 = 1/2. */
#if CLATTN_DTYPE == 2
#define NV_CAP_IN(q) ((q) * (1.0f / SOFTCAP2))
#define NV_SOFTCAP_UNIT(x, cap_in) (x = fast_tanh((x) * (cap_in)))
#elif CLATTN_DTYPE == 1
#define NV_CAP_IN(q) ((q) * (-2.0f * CLATTN_LOG2E / SOFTCAP2))
#define NV_CAP_SCALE 2.0f
#define NV_CAP_M0 0.5f
/* Two scores of one row at once, their reciprocals from one (Montgomery's
 * trick: 1/a = b/(ab), 1/b = a/(ab)): five MUFU operations for two scores
 * with the softmax's exp2s instead of six, for two more multiplies and the
 * caps. The exponents are capped at 63 so that ab stays finite (r = 2^-63
 * is t = -1 to f32), by a min that keeps NaN (NV_MIN_NAN). Measured on an
 * H100 against one reciprocal a score (bench/RESULTS.md §34): f16 d = 64
 * 5.66 ms against 5.76, causal 3.11 against 3.18, d = 128 (flash_wgmma)
 * 8.34 against 8.64. Moving exp2s to the FMA pipe as well (a degree-4
 * polynomial, FlashAttention 4's offload of the MUFU unit) measured 6-26 %
 * slower there (§34): these loops are bound by instruction issue and
 * latency more than by the MUFU unit. */
#define NV_SOFTCAP_UNIT2(x0, x1, cap_in)                                                           \
  do {                                                                                             \
    const float a_ = 1.0f + fast_exp2(NV_MIN_NAN((x0) * (cap_in), 63.0f));                         \
    const float b_ = 1.0f + fast_exp2(NV_MIN_NAN((x1) * (cap_in), 63.0f));                         \
    const float q_ = native_recip(a_ * b_);                                                        \
    x0 = q_ * b_;                                                                                  \
    x1 = q_ * a_;                                                                                  \
  } while (0)
#else
#define NV_CAP_IN(q) ((q) * (-2.0f * CLATTN_LOG2E / SOFTCAP2))
#define NV_SOFTCAP_UNIT(x, cap_in)                                                                 \
  do {                                                                                             \
    const float tu_ = fast_exp2(fabs(x) * (cap_in));                                               \
    x = copysign((1.0f - tu_) * native_recip(1.0f + tu_), x);                                      \
  } while (0)
#endif
#ifndef NV_CAP_SCALE
#define NV_CAP_SCALE 1.0f
#define NV_CAP_M0 0.0f
#endif
#ifndef NV_SOFTCAP_UNIT2
#define NV_SOFTCAP_UNIT2(x0, x1, cap_in)                                                           \
  do {                                                                                             \
    NV_SOFTCAP_UNIT(x0, cap_in);                                                                   \
    NV_SOFTCAP_UNIT(x1, cap_in);                                                                   \
  } while (0)
#endif
/* Softcap alone on every score of fragment s (nts groups of 8 columns): a
 * lane's two pairs, each of one row, through NV_SOFTCAP_UNIT2 */
#define NV_SOFTCAP_FRAG(s, nts, cap_in)                                                            \
  do {                                                                                             \
    _Pragma("unroll") for (int j_ = 0; j_ < (nts); j_++) {                                         \
      NV_SOFTCAP_UNIT2(s[j_][0], s[j_][1], cap_in);                                                \
      NV_SOFTCAP_UNIT2(s[j_][2], s[j_][3], cap_in);                                                \
    }                                                                                              \
  } while (0)
#endif
/* mx = the maximum of row half rr's scores in the fragments (the row's four lanes exchange) */
#define SOFTMAX_ROW_MAX(s, nts, rr, mx)                                                            \
  float mx = -INFINITY;                                                                            \
  _Pragma("unroll") for (int j_ = 0; j_ < (nts); j_++) mx =                                        \
      fmax(mx, fmax(s[j_][2 * (rr)], s[j_][2 * (rr) + 1]));                                        \
  mx = fmax(mx, shfl_xor(mx, 1));                                                                  \
  mx = fmax(mx, shfl_xor(mx, 2))
/* row half rr's scores s → p = 2^(s·qscale − sub), their sum (this lane's) into a new rs */
#define SOFTMAX_ROW_EXP(s, nts, rr, qscale, sub, rs)                                               \
  float rs = 0.0f;                                                                                 \
  _Pragma("unroll") for (int j_ = 0; j_ < (nts); j_++) {                                           \
    s[j_][2 * (rr)] = fast_exp2(fma(s[j_][2 * (rr)], (qscale), -(sub)));                           \
    s[j_][2 * (rr) + 1] = fast_exp2(fma(s[j_][2 * (rr) + 1], (qscale), -(sub)));                   \
    rs += s[j_][2 * (rr)] + s[j_][2 * (rr) + 1];                                                   \
  }
/* The step without the rescale of o: alpha = its factor, for a caller that
 * rescales o later (flash_wgmma's overlapped schedule: once the P·V MMAs
 * accumulating into o have completed). Lazy (SOFTMAX_LAZY): alpha
 * is exactly 1 while the max stays (the caller may skip the rescale). */
#define SOFTMAX_STEP_DEFER(s, nts, rr, m, l, alpha, qscale)                                        \
  do {                                                                                             \
    SOFTMAX_ROW_MAX(s, nts, rr, mx_);                                                              \
    alpha = 1.0f;                                                                                  \
    if (!SOFTMAX_LAZY || !((qscale) > 0.0f) || (m) == -INFINITY ||                          \
        (mx_ - (m)) * (qscale) > 8.0f) {                                                           \
      const float mnew_ = fmax(m, mx_);                                                            \
      alpha = mnew_ == -INFINITY ? 1.0f : fast_exp2((m - mnew_) * (qscale));                       \
      m = mnew_;                                                                                   \
    }                                                                                              \
    const float sub_ = m == -INFINITY ? 0.0f : m * (qscale);                                       \
    SOFTMAX_ROW_EXP(s, nts, rr, qscale, sub_, rs_);                                                \
    l = l * alpha + rs_;                                                                           \
  } while (0)
/* o's row half rr (0: row g, 1: row g + 8) times alpha */
#define RESCALE_O(o, nto, rr, alpha)                                                               \
  _Pragma("unroll") for (int j_ = 0; j_ < (nto); j_++) {                                           \
    o[j_][2 * (rr)] *= (alpha);                                                                    \
    o[j_][2 * (rr) + 1] *= (alpha);                                                                \
  }
/* The step with the rescale of o (lazy: skipped while alpha is 1) */
#define SOFTMAX_STEP(s, nts, o, nto, rr, m, l, qscale)                                             \
  do {                                                                                             \
    float alpha_;                                                                                  \
    SOFTMAX_STEP_DEFER(s, nts, rr, m, l, alpha_, qscale);                                          \
    if (!SOFTMAX_LAZY || alpha_ != 1.0f) {                                                  \
      RESCALE_O(o, nto, rr, alpha_);                                                              \
    }                                                                                              \
  } while (0)

/* The epilogue of row half rr: O row = o / l (the row's four lanes sum
 * their l), its LSE (natural log) at LSE[lse_at] when asked. */
#define STORE_FRAGMENT_ROW(Ob, oss, osd, LSE, write_lse, lse_at, o, nto, rr, row, t, Nq, m, l,     \
                           qscale)                                                                 \
  do {                                                                                             \
    float lt_ = (l);                                                                               \
    lt_ += shfl_xor(lt_, 1);                                                                       \
    lt_ += shfl_xor(lt_, 2);                                                                       \
    const float inv_ = lt_ == 0.0f ? 0.0f : 1.0f / lt_; /* NaN rows stay NaN */                    \
    if ((row) < (Nq)) {                                                                            \
      const long ro_ = (long)(row) * (oss);                                                        \
      _Pragma("unroll") for (int j_ = 0; j_ < (nto); j_++) {                                       \
        _Pragma("unroll") for (int e_ = 0; e_ < 2; e_++) {                                         \
          const int k_ = 8 * j_ + 2 * (t) + e_;                                                    \
          if (k_ < D) STORE(Ob, ro_ + (long)k_ * (osd), o[j_][2 * (rr) + e_] * inv_);              \
        }                                                                                          \
      }                                                                                            \
      if ((write_lse) && (t) == 0)                                                                 \
        LSE[lse_at] = lt_ == 0.0f ? -INFINITY : ((m) * (qscale) + log2(lt_)) * CLATTN_LN2;         \
    }                                                                                              \
  } while (0)
