/* peak.cl — calibration kernels of clattn_measure_peak(): f32 multiply-add rate, copy bandwidth. */

/* VW: float lanes per operation, the device's native vector width for float
 * (1 on GPUs, whose lanes are work-items; 8 or 16 on CPUs, whose lanes are
 * SIMD registers). CW: lanes per copied element (at least 4). */
#ifndef VW
#define VW 1
#endif
#if VW == 1
typedef float vtype;
#define VSUM(t) (t)
#elif VW == 2
typedef float2 vtype;
#define VSUM(t) ((t).s0 + (t).s1)
#elif VW == 4
typedef float4 vtype;
#define VSUM(t) (((t).s0 + (t).s1) + ((t).s2 + (t).s3))
#elif VW == 8
typedef float8 vtype;
#define VSUM4(t) (((t).s0 + (t).s1) + ((t).s2 + (t).s3))
#define VSUM(t) (VSUM4((t).lo) + VSUM4((t).hi))
#else
typedef float16 vtype;
#define VSUM4(t) (((t).s0 + (t).s1) + ((t).s2 + (t).s3))
#define VSUM8(t) (VSUM4((t).lo) + VSUM4((t).hi))
#define VSUM(t) (VSUM8((t).lo) + VSUM8((t).hi))
#endif

/* 8 independent multiply-add chains per work-item, 4 rounds per iteration:
 * 32 * VW FMAs = 64 * VW FLOP. iters, a and b are arguments, so nothing folds
 * at compile time; the chains converge to b / (1 - a) and never overflow or
 * go subnormal. The sum is written so that no chain is dead code. */
#define PEAK_STEP4(x)                                                                              \
  x = mad(x, av, bv);                                                                              \
  x = mad(x, av, bv);                                                                              \
  x = mad(x, av, bv);                                                                              \
  x = mad(x, av, bv)

__kernel void peak_fma(__global float *out, const int iters, const float a, const float b) {
  const uint g = (uint)get_global_id(0);
  const vtype av = (vtype)(a), bv = (vtype)(b);
  const float s = (float)(g & 255u) * (1.0f / 256.0f);
  vtype x0 = (vtype)(s), x1 = (vtype)(s + 0.01f), x2 = (vtype)(s + 0.02f);
  vtype x3 = (vtype)(s + 0.03f), x4 = (vtype)(s + 0.04f), x5 = (vtype)(s + 0.05f);
  vtype x6 = (vtype)(s + 0.06f), x7 = (vtype)(s + 0.07f);
  for (int i = 0; i < iters; i++) {
    PEAK_STEP4(x0);
    PEAK_STEP4(x1);
    PEAK_STEP4(x2);
    PEAK_STEP4(x3);
    PEAK_STEP4(x4);
    PEAK_STEP4(x5);
    PEAK_STEP4(x6);
    PEAK_STEP4(x7);
  }
  const vtype t = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
  out[g] = VSUM(t);
}

#if VW >= 16
typedef float16 ctype;
#elif VW == 8
typedef float8 ctype;
#else
typedef float4 ctype;
#endif

/* dst = src, one element of CW floats per work-item (consecutive work-items,
 * consecutive elements: coalesced on GPUs, sequential on CPUs). */
__kernel void peak_copy(__global const ctype *src, __global ctype *dst) {
  const size_t i = get_global_id(0);
  dst[i] = src[i];
}
