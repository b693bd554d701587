/* tf32.cl — f32 products on NVIDIA tensor cores (3xTF32 mma.sync m16n8k8), shared by linear_tc (after linear_common.cl) and flash_tf32 (after nv_mma.cl). */

/*
 * f32 products on mma.sync m16n8k8 .tf32 (10-bit mantissas) kept
 * f32-accurate by splitting each operand x = hi + lo, hi = x rounded to
 * TF32 and lo the remainder cut to TF32, and summing a·b ≈ lo_a·hi_b +
 * hi_a·lo_b + hi_a·hi_b, the small terms first (lo_a·lo_b < 2^-21·|a·b| is
 * dropped): a relative error per product of ~2^-21, f32's order (CUTLASS's
 * OpMultiplyAddFastF32). Fragments (PTX ISA, m16n8k8 .tf32; g = lane / 4,
 * t = lane % 4): A a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);
 * B b0 (k t, n g), b1 (k t + 4, n g); C c0, c1 (g, 2t, 2t + 1), c2, c3
 * (g + 8, 2t, 2t + 1). The tensor cores' f32 accumulation rounds toward
 * zero: long chains of MMAs into one accumulator drift (flash_tc.cl sums
 * per tile). Under CLATTN_NV_EMU nv_mma.cl has defined tf32_hi and MMA8.
 */
#ifndef CLATTN_NV_EMU
#define CLATTN_NV_EMU 0
#endif
#if !CLATTN_NV_EMU
/* x rounded to TF32 (cvt.rna: nearest, ties away from zero), as f32 bits */
inline uint tf32_hi(float x) {
  uint r;
  __asm__("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
/* c += A·B, a[4] and b[2] TF32 operands */
#define MMA8(c, a, b)                                                                              \
  __asm__("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "      \
          "{%8,%9}, {%0,%1,%2,%3};"                                                                \
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                         \
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
#endif
#define TF32_SPLIT(x, hi, lo)                                                                      \
  do {                                                                                             \
    const float x_ = (x);                                                                          \
    hi = tf32_hi(x_);                                                                              \
    lo = as_uint(x_ - as_float(hi)) & 0xffffe000u;                                                 \
  } while (0)
/* c += a·b to f32 accuracy (small terms first) */
#define MMA3(c, ah, al, bh, bl)                                                                    \
  do {                                                                                             \
    MMA8(c, al, bh);                                                                               \
    MMA8(c, ah, bl);                                                                               \
    MMA8(c, ah, bh);                                                                               \
  } while (0)
