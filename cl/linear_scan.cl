/* linear_scan.cl — lin_scan: the fixed-order total or exclusive prefix of the split states (after linear_common.cl). */
/* ---------------------------------------------------------------------- */

/* CAUSAL=0: S[bhk][0] = Σ_s S[bhk][s] (PM[bhk·nsplit] its maximum);
 * CAUSAL=1: S[bhk][s] = Σ_{s' < s} S[bhk][s'] (PM[bhk][s] its maximum), the
 * last split's own state is never read. */
#define SCAN_B 8 /* splits whose loads are issued together */
__kernel void lin_scan(__global float *restrict S, __global const float *restrict CM,
                       __global float *restrict PM, const int nsplit) {
  const int e = get_global_id(0);
  const int bhk = get_global_id(1);
  if (e >= F * DE) return;
  const long base = (long)bhk * nsplit * (F * DE) + e;
  __global const float *cm = CM + (long)bhk * nsplit;
  __global float *pm = PM + (long)bhk * nsplit;
  float run = 0.0f;
  float m = -INFINITY;
  (void)cm;
  (void)pm;
  (void)m;
  /* The loop-carried sum would wait for one memory latency per split: load
   * SCAN_B splits at a time, then combine them in order. */
  const int nread = CAUSAL ? nsplit - 1 : nsplit; /* causal: the last split's own state is unused */
  for (int c0 = 0; c0 < nsplit; c0 += SCAN_B) {
    float sv[SCAN_B], mc[SCAN_B];
    UNROLL for (int u = 0; u < SCAN_B; u++) {
      const int c = c0 + u;
      sv[u] = c < nread ? S[base + (long)c * (F * DE)] : 0.0f;
      mc[u] = FAVOR && c < nread ? cm[c] : -INFINITY;
    }
    UNROLL for (int u = 0; u < SCAN_B; u++) {
      const int c = c0 + u;
      if (c < nsplit) {
#if CAUSAL
        S[base + (long)c * (F * DE)] = run;
#if FAVOR
        if (e == 0) pm[c] = m;
#endif
#endif
#if FAVOR
        const float mn = fmax(m, mc[u]);
        if (mn != -INFINITY) {
          run = run * exp(m - mn) + sv[u] * exp(mc[u] - mn);
          m = mn;
        }
#else
        run += sv[u];
#endif
      }
    }
  }
#if !CAUSAL
  S[base] = run;
#if FAVOR
  if (e == 0) pm[0] = m;
#endif
#endif
}
