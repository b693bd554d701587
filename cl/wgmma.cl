/* wgmma.cl — placeholders for Hopper's warpgroup MMA (wgmma.*, sm_90a), turned into PTX instructions by the program layer (src/core/ptx.c). */

/*
 * NVIDIA's OpenCL C compiler rejects wgmma in inline assembly; a kernel
 * writes these placeholder comments instead and its variant builds through
 * clattn__get_program_patched(), which replaces them in the PTX (the
 * compiler has put each operand's register into the comment) and builds
 * the result for sm_90a. Only kernels built that way may use them: built
 * as plain OpenCL they compile to nothing and compute garbage.
 *
 * The accumulators of an MMA are named as a float array and the index of
 * its first 8-column group: x[j][0..3], x[j+1][0..3], ... (the m16n8
 * accumulator layout of each warp, repeated along N). A fragments are the
 * four f16x2/bf16x2 registers of the m16n8k16 A layout (warp i of the
 * warpgroup holds rows 16i..16i+15); B comes from local memory through a
 * matrix descriptor (wg_desc).
 */
#if CLATTN_NV_EMU
/* CPU emulation (CLATTN_NV_EMULATE=1, tests in CI): each MMA runs at once
 * in program order, so the fences, commits, waits and pins are nothing;
 * the A fragments of the warpgroup meet in the kernel's scratch
 * (NV_EMU_SCRATCH, cl/nv_mma.cl) between barriers, B is read through the
 * descriptor from local memory at NV_EMU_BASE (the "shared addresses" are
 * byte offsets from it), products summed in f32 in k order. Every call is
 * in work-group-uniform control flow (all warpgroups issue the same MMAs). */
#define WG_FENCE() ((void)0)
#define WG_COMMIT() ((void)0)
#define WG_PROXY() ((void)0)
#define WG_WAIT0() ((void)0)
#define WG_WAIT1() ((void)0)
#define WG_KEEP16(x, j) ((void)0)
#define WG_KEEP8(x, j) ((void)0)
#define WG_KEEPR4(x) ((void)0)
#define wg_saddr(p) ((uint)((__local const uchar *)(p)-NV_EMU_BASE))
/* D[64 x 8·nj] (+)= A · B[16 x 8·nj]: B element (k, n) at the descriptor's
 * start + (k/8)·lbo + (n/8)·sbo + (K-major, tb 0: (n%8)·16 + (k%8)·2;
 * N-major, tb 1: (k%8)·16 + (n%8)·2), the layouts cl/flash_wgmma.cl
 * writes (the fields as measured on an H100) */
inline void emu_wgmma(float *acc, const int nj, uint a0, uint a1, uint a2, uint a3, ulong desc,
                      const int tb, const int scale, __local uint *x, __local const uchar *base) {
  const int lid = get_local_id(0), w0 = lid - lid % 128, warp = (lid % 128) / 32;
  const int lane = lid % 32, g = lane >> 2, t = lane & 3;
  x[lid * 6 + 0] = a0;
  x[lid * 6 + 1] = a1;
  x[lid * 6 + 2] = a2;
  x[lid * 6 + 3] = a3;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int start = (int)((desc & 0x3FFFu) << 4), lbo = (int)(((desc >> 16) & 0x3FFFu) << 4),
            sbo = (int)(((desc >> 32) & 0x3FFFu) << 4);
  for (int j = 0; j < nj; j++)
    for (int e = 0; e < 4; e++) {
      const int row = 16 * warp + g + 8 * (e >> 1), col = 8 * j + 2 * t + (e & 1);
      /* the lane of warp row/16 holding A(row, k): lane (row%8)·4 + (k%8)/2,
       * register row%16/8 + 2·(k/8), half k%2 */
      __local const uint *ar = x + (w0 + 32 * (row / 16) + 4 * (row % 8)) * 6 + (row % 16) / 8;
      float s = scale ? acc[4 * j + e] : 0.0f;
      for (int k = 0; k < 16; k++) {
        const uint aw = ar[((k % 8) / 2) * 6 + 2 * (k / 8)];
        const int off = start + (k / 8) * lbo + (col / 8) * sbo +
                        (tb ? (k % 8) * 16 + (col % 8) * 2 : (col % 8) * 16 + (k % 8) * 2);
        s += emu_h2f(aw >> (16 * (k % 2))) * emu_h2f(*(__local const ushort *)(base + off));
      }
      acc[4 * j + e] = s;
    }
  barrier(CLK_LOCAL_MEM_FENCE);
}
/* the accumulator groups x[j], x[j + 1], ... lie contiguous in x[][4] */
#define WG_MMA_EMU(nj, TB, x, j, a0, a1, a2, a3, desc, scale)                                      \
  emu_wgmma(&x[j][0], (nj), (a0), (a1), (a2), (a3), (desc), (TB), (scale), nv_emu_x, NV_EMU_BASE)
#define WG_MMA32(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  WG_MMA_EMU(4, TB, x, j, a0, a1, a2, a3, desc, scale)
#define WG_MMA16(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  WG_MMA_EMU(2, TB, x, j, a0, a1, a2, a3, desc, scale)
#define WG_MMA64(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  WG_MMA_EMU(8, TB, x, j, a0, a1, a2, a3, desc, scale)
#define WG_MMA128(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                        \
  WG_MMA_EMU(16, TB, x, j, a0, a1, a2, a3, desc, scale)
#else
#define WG_FENCE() __asm__ volatile("// @@CLATTN fence" ::: "memory")
#define WG_COMMIT() __asm__ volatile("// @@CLATTN commit" ::: "memory")
/* Local memory written by ordinary stores (cp.async included) becomes
 * visible to the tensor cores' async proxy: in every writing work-item,
 * before the barrier that precedes the MMAs. */
#define WG_PROXY() __asm__ volatile("// @@CLATTN proxy" ::: "memory")
#define WG_WAIT0() __asm__ volatile("// @@CLATTN wait 0" ::: "memory")
/* ... until at most one group is pending (groups complete in order) */
#define WG_WAIT1() __asm__ volatile("// @@CLATTN wait 1" ::: "memory")

#define WG_ACC8(x, j) "+f"(x[j][0]), "+f"(x[j][1]), "+f"(x[j][2]), "+f"(x[j][3]),                  \
  "+f"(x[(j) + 1][0]), "+f"(x[(j) + 1][1]), "+f"(x[(j) + 1][2]), "+f"(x[(j) + 1][3])
#define WG_ACC16(x, j) WG_ACC8(x, j), WG_ACC8(x, (j) + 2)
/* Pins accumulators for the compiler (emits nothing): after WG_WAIT0, so
 * that no read of them is moved above the wait. */
#define WG_KEEP16(x, j)                                                                            \
  __asm__ volatile("// @@CLATTN keep %0 %1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 %13 %14 %15"        \
                   : WG_ACC16(x, j)::"memory")
#define WG_KEEP8(x, j)                                                                             \
  __asm__ volatile("// @@CLATTN keep %0 %1 %2 %3 %4 %5 %6 %7" : WG_ACC8(x, j)::"memory")

/* Pins four 32-bit registers (A fragments) the same way: computed before
 * the next WG_FENCE. */
#define WG_KEEPR4(x)                                                                               \
  __asm__ volatile("// @@CLATTN keep %0 %1 %2 %3"                                                  \
                   : "+r"(x[0]), "+r"(x[1]), "+r"(x[2]), "+r"(x[3])::"memory")

/* D[64 x 32] (+)= A[64 x 16] (registers) · B[16 x 32] (descriptor desc); T
 * "f16" or "bf16", TB 0 (B K-major) or 1 (B N-major), scale 0: D = A·B. */
#define WG_MMA32(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  __asm__ volatile("// @@CLATTN mma_rs 32 " T " " #TB                                              \
                   " %0 %1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 %13 %14 %15 %16 %17 %18 %19 %20 %21" \
                   : WG_ACC16(x, j)                                                                \
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale)                     \
                   : "memory")
/* The same with N = 16. */
#define WG_MMA16(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  __asm__ volatile("// @@CLATTN mma_rs 16 " T " " #TB " %0 %1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 %13" \
                   : WG_ACC8(x, j)                                                                 \
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale)                     \
                   : "memory")

/* The same with N = 64 and N = 128 (one instruction where the N = 32 form
 * takes two or four: the A fragments go to the tensor cores once). */
#define WG_ACC32(x, j) WG_ACC16(x, j), WG_ACC16(x, (j) + 4)
#define WG_ACC64(x, j) WG_ACC32(x, j), WG_ACC32(x, (j) + 8)
#define WG_MMA64(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                         \
  __asm__ volatile("// @@CLATTN mma_rs 64 " T " " #TB                                              \
                   " %0 %1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 %13 %14 %15 %16 %17 %18"            \
                   " %19 %20 %21 %22 %23 %24 %25 %26 %27 %28 %29 %30 %31 %32 %33 %34 %35 %36 %37"  \
                   : WG_ACC32(x, j)                                                                \
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale)                     \
                   : "memory")
#define WG_MMA128(T, TB, x, j, a0, a1, a2, a3, desc, scale)                                        \
  __asm__ volatile("// @@CLATTN mma_rs 128 " T " " #TB                                             \
                   " %0 %1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 %13 %14 %15 %16 %17"                \
                   " %18 %19 %20 %21 %22 %23 %24 %25 %26 %27 %28 %29 %30 %31 %32 %33 %34 %35"      \
                   " %36 %37 %38 %39 %40 %41 %42 %43 %44 %45 %46 %47 %48 %49 %50 %51 %52 %53"      \
                   " %54 %55 %56 %57 %58 %59 %60 %61 %62 %63 %64 %65 %66 %67 %68 %69"              \
                   : WG_ACC64(x, j)                                                                \
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(scale)                     \
                   : "memory")

/* Shared-state-space address of a __local pointer (its integer value on
 * NVIDIA's OpenCL). */
inline uint wg_saddr(__local const void *p) { return (uint)(ulong)p; }

#endif

/* Matrix descriptor without swizzling: start address, leading-dimension
 * byte offset lbo and stride byte offset sbo (all multiples of 16; PTX ISA,
 * "Matrix Descriptor Format"). Offsetting the start by k bytes adds k >> 4. */
inline ulong wg_desc(uint saddr, uint lbo, uint sbo) {
  return (ulong)((saddr & 0x3FFFFu) >> 4) | ((ulong)(lbo >> 4) << 16) | ((ulong)(sbo >> 4) << 32);
}
