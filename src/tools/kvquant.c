/* kvquant.c — host twins of the quantized K/V codes: decode as the kernels do, encode as
 * clattn_kv_append_ex does. */
#include "clattn_tools.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

float clattn_kv_code_value(clattn_kv_dtype t, unsigned code) {
  code &= 0xffu;
  if (t == CLATTN_KV_DTYPE_INT8) return (float)(int8_t)(uint8_t)code;
  const uint32_t sign = (code & 0x80u) << 24, em = code & 0x7fu;
  const bool e4m3 = t == CLATTN_KV_DTYPE_FP8_E4M3;
  if (t != CLATTN_KV_DTYPE_FP8_E4M3 && t != CLATTN_KV_DTYPE_FP8_E5M2) return NAN;
  uint32_t r;
  if (e4m3) {
    if (em == 0x7fu) return NAN;
    r = em < 0x8u ? to_bits((float)em * 0x1.0p-9f) : (em << 20) + 0x3c000000u;
  } else {
    if (em >= 0x7cu)
      r = 0x7f800000u | ((em & 0x3u) << 21);
    else
      r = em < 0x4u ? to_bits((float)em * 0x1.0p-16f) : (em << 21) + 0x38000000u;
  }
  return from_bits(r | sign);
}

unsigned clattn_kv_code_of(clattn_kv_dtype t, float y) {
  if (t == CLATTN_KV_DTYPE_INT8) {
    if (isnan(y)) return 0;
    const float r = rintf(y < -127.0f ? -127.0f : y > 127.0f ? 127.0f : y);
    return (unsigned)(uint8_t)(int8_t)r;
  }
  if (t != CLATTN_KV_DTYPE_FP8_E4M3 && t != CLATTN_KV_DTYPE_FP8_E5M2) return 0;
  const bool e4m3 = t == CLATTN_KV_DTYPE_FP8_E4M3;
  const uint32_t sign = (to_bits(y) >> 24) & 0x80u;
  const float a = fabsf(y);
  if (isnan(a)) return sign | 0x7fu;
  if (a >= (e4m3 ? 448.0f : 57344.0f)) return sign | (e4m3 ? 0x7eu : 0x7bu);
  if (a < (e4m3 ? 0x1.0p-6f : 0x1.0p-14f))
    return sign | (uint32_t)rintf(a * (e4m3 ? 0x1.0p9f : 0x1.0p16f));
  uint32_t bits = to_bits(a);
  if (e4m3) {
    bits += 0x7ffffu + ((bits >> 20) & 1u);
    return sign | ((bits >> 20) - (120u << 3));
  }
  bits += 0xfffffu + ((bits >> 21) & 1u);
  return sign | ((bits >> 21) - (112u << 2));
}
