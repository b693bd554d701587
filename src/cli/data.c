/* data.c — fast seeded random inputs, 16-bit float conversions and NaN patterns for the CLI. */
#include "cli.h"

#include <math.h>
#include <string.h>

size_t cli_dtype_size(clattn_dtype t) { return t == CLATTN_DTYPE_F32 ? 4 : 2; }

uint64_t cli_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* IEEE binary16 from float, round to nearest even (inputs here are finite). */
static uint16_t float_to_half(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
  uint32_t man = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
  if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    man |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent */
  return (uint16_t)(sign | h);
}

static uint16_t float_to_bf16(float f) {
  uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

static double half_to_double(uint16_t h) {
  int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0)
    v = ldexp((double)man, -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = ldexp((double)(man | 0x400), exp - 25);
  return (h & 0x8000u) ? -v : v;
}

static double bf16_to_double(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return (double)f;
}

double cli_load(const void *base, clattn_dtype t, size_t i) {
  switch (t) {
  case CLATTN_DTYPE_F16: return half_to_double(((const uint16_t *)base)[i]);
  case CLATTN_DTYPE_BF16: return bf16_to_double(((const uint16_t *)base)[i]);
  case CLATTN_DTYPE_F32: break;
  }
  return (double)((const float *)base)[i];
}

void cli_fill_random(void *dst, size_t n, clattn_dtype t, uint64_t seed) {
  uint64_t s = seed;
  /* 24 random bits → a float in [-1, 1) on a 2^-23 grid: exact in f32. */
  const float k = 1.0f / 8388608.0f;
  if (t == CLATTN_DTYPE_F32) {
    float *f = dst;
    for (size_t i = 0; i < n; i++)
      f[i] = (float)(int32_t)(cli_splitmix64(&s) >> 40) * k - 1.0f;
    return;
  }
  uint16_t *h = dst;
  for (size_t i = 0; i < n; i++) {
    float x = (float)(int32_t)(cli_splitmix64(&s) >> 40) * k - 1.0f;
    h[i] = t == CLATTN_DTYPE_F16 ? float_to_half(x) : float_to_bf16(x);
  }
}

void cli_nan_pattern(clattn_dtype t, void *pattern) {
  if (t == CLATTN_DTYPE_F32) {
    uint32_t u = 0x7fc00000u;
    memcpy(pattern, &u, sizeof u);
  } else {
    uint16_t u = t == CLATTN_DTYPE_F16 ? 0x7e00u : 0x7fc0u;
    memcpy(pattern, &u, sizeof u);
  }
}
