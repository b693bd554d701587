/* common.cl — definitions shared by every clattn kernel: storage types, loads/stores, constants. */

/* Storage type of Q, K, V, O: CLATTN_DTYPE 0 = f32, 1 = f16, 2 = bf16.
 * Accumulation is always float. Half is read through vload_half/vstore_half,
 * which need no cl_khr_fp16; bf16 is 16-bit storage converted with bit
 * operations (round to nearest even on store). */
#ifndef CLATTN_DTYPE
#define CLATTN_DTYPE 0
#endif

#if CLATTN_DTYPE == 0
typedef float stype;
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#elif CLATTN_DTYPE == 1
typedef ushort stype; /* raw half bits; pointers are reinterpreted for vload_half */
#define LOAD(p, i) vload_half((i), (const __global half *)(p))
#define STORE(p, i, x) vstore_half_rte((x), (i), (__global half *)(p))
#else
typedef ushort stype;
inline float bf16_to_float(ushort b) { return as_float(((uint)b) << 16); }
inline ushort float_to_bf16(float f) {
  uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (ushort)(u >> 16);
}
#define LOAD(p, i) bf16_to_float((p)[i])
#define STORE(p, i, x) ((p)[i] = float_to_bf16(x))
#endif

#define CLATTN_LOG2E 1.4426950408889634f
#define CLATTN_LN2 0.6931471805599453f
