/* dtype.c — host conversions between float/double and the 16-bit storage types (f16, bf16). */
#include "internal.h"

#include <math.h>
#include <string.h>

double clattn__half_to_double(uint16_t h) {
  const uint64_t sign = (uint64_t)(h >> 15) << 63;
  const int e = (h >> 10) & 31;
  const uint64_t m = h & 1023u;
  double v;
  if (e == 0) { /* zero or subnormal: m · 2^-24, exact */
    v = (double)m * (1.0 / 16777216.0);
    return sign ? -v : v;
  }
  uint64_t bits = e == 31 ? (0x7ffull << 52) | (m << 42) /* inf / NaN */
                          : ((uint64_t)(e - 15 + 1023) << 52) | (m << 42);
  bits |= sign;
  memcpy(&v, &bits, sizeof v);
  return v;
}

double clattn__bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return (double)f;
}

uint16_t clattn__float_to_half(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
  if (a < 0x38800000u) {                                   /* subnormal half */
    float af;
    memcpy(&af, &a, sizeof af);
    return (uint16_t)(sign | (uint32_t)lrintf(af * 16777216.0f));
  }
  uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;
  h += (rem > 0x1000u) || (rem == 0x1000u && (h & 1u));
  return (uint16_t)(sign | h);
}

uint16_t clattn__float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

double clattn__load_elem(const void *base, clattn_dtype t, int64_t i) {
  switch (t) {
  case CLATTN_DTYPE_F16: return clattn__half_to_double(((const uint16_t *)base)[i]);
  case CLATTN_DTYPE_BF16: return clattn__bf16_to_double(((const uint16_t *)base)[i]);
  default: return (double)((const float *)base)[i];
  }
}
