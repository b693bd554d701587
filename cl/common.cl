/* common.cl — definitions shared by every clattn kernel: storage types, loads/stores, constants. */

/* Half bits -> float with integer operations (exact for every half: normals
 * by rebiasing the exponent, subnormals as em·2^-24, inf and NaN kept). The
 * host sets CLATTN_SOFT_HALF on CPUs, where PoCL's vload_half is a library
 * call (flash f16 was 4.4x slower than f32 on PoCL 3.1, AVX-512; this: 2.8x). */
inline float half_bits_to_float(ushort h) {
  const uint em = (uint)h & 0x7fffu;
  const uint r = em < 0x400u    ? as_uint((float)em * 0x1.0p-24f)
                 : em >= 0x7c00u ? (0x7f800000u | ((em & 0x3ffu) << 13))
                                 : (em << 13) + 0x38000000u;
  return as_float(r | (((uint)h & 0x8000u) << 16));
}

/* Storage type of Q, K, V, O: CLATTN_DTYPE 0 = f32, 1 = f16, 2 = bf16.
 * Accumulation is always float. Half is read through vload_half/vstore_half,
 * which need no cl_khr_fp16; bf16 is 16-bit storage converted with bit
 * operations (round to nearest even on store). */
#ifndef CLATTN_DTYPE
#define CLATTN_DTYPE 0
#endif

#if CLATTN_DTYPE == 0
typedef float stype;
typedef float16 STYPE16; /* 16 stored elements */
#define LOAD(p, i) ((p)[i])
#define STORE(p, i, x) ((p)[i] = (x))
#elif CLATTN_DTYPE == 1
typedef ushort stype; /* raw half bits; pointers are reinterpreted for vload_half */
typedef ushort16 STYPE16;
/* float → IEEE half bits, round to nearest even (overflow → inf, NaN kept). */
inline ushort float_to_half_rte(float f) {
  uint u = as_uint(f);
  uint sign = (u >> 16) & 0x8000u;
  uint a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (ushort)(sign | 0x7e00u);  /* NaN */
  if (a >= 0x477ff000u) return (ushort)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (a < 0x38800000u) {                                 /* subnormal half or zero */
    float r = as_float(a) * 16777216.0f;                 /* exact scale by 2^24 */
    return (ushort)(sign | (uint)rint(r));
  }
  uint h = (a - 0x38000000u) >> 13; /* rebias exponent 127 → 15 */
  uint rem = a & 0x1fffu;
  h += (rem > 0x1000u) || (rem == 0x1000u && (h & 1u));
  return (ushort)(sign | h);
}
/* half_bits_to_float on 8 lanes (decode.cl's K/V rows). */
inline float8 half8_to_float8(ushort8 h) {
  const uint8 hu = convert_uint8(h);
  const uint8 em = hu & 0x7fffu;
  const uint8 sub = as_uint8(convert_float8(em) * 0x1.0p-24f);
  const uint8 nrm = (em << 13) + 0x38000000u;
  const uint8 inf = 0x7f800000u | ((em & 0x3ffu) << 13);
  uint8 r = select(nrm, sub, em < 0x400u);
  r = select(r, inf, em >= 0x7c00u);
  return as_float8(r | ((hu & 0x8000u) << 16));
}
#if CLATTN_SOFT_HALF
#define LOAD(p, i) half_bits_to_float((p)[i])
#else
#define LOAD(p, i) vload_half((i), (const __global half *)(p))
#endif
#define STORE(p, i, x) ((p)[i] = float_to_half_rte(x))
#else
typedef ushort stype;
typedef ushort16 STYPE16;
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

/* LOAD4 / LOAD16: 4 or 16 consecutive elements p[0..n) as floats, converted
 * as one vector (no per-element calls). p needs only the alignment of its
 * element type. */
#if CLATTN_DTYPE == 0
#define LOAD4(p) vload4(0, (p))
#define LOAD16(p) vload16(0, (p))
#define LOAD16_PRIVATE(p) vload16(0, (p))
#elif CLATTN_DTYPE == 1
/* vload_halfn: one hardware conversion of n halves where the device has it
 * (F16C on x86 CPUs, measured 1.3x faster than integer conversion on PoCL). */
#define LOAD4(p) vload_half4(0, (const __global half *)(p))
#define LOAD16(p) vload_half16(0, (const __global half *)(p))
#define LOAD16_PRIVATE(p) vload_half16(0, (const half *)(p))
#else
#define LOAD4(p) as_float4(convert_uint4(vload4(0, (p))) << 16)
#define LOAD16(p) as_float16(convert_uint16(vload16(0, (p))) << 16)
#define LOAD16_PRIVATE(p) LOAD16(p)
#endif

/* Masking is a flag, never a score value: a masked key's probability is set
 * to 0 by select() from the mask itself, so every visible key is attended
 * whatever its score. The masked score is only replaced by CLATTN_MASKED, the
 * lowest finite float, so that it cannot raise a running max above the
 * visible scores. Kernels built with -cl-fast-relaxed-math (finite math only,
 * as on CPUs) never compute with infinities: a row without a visible key
 * ends with a running sum of exactly 0 (a visible key contributes
 * exp2(0) = 1 at the row max), and the rescale factor is clamped
 * (CLATTN_RESCALE). -inf is only ever stored, as raw bits. */
#define CLATTN_MASKED (-FLT_MAX)
#define CLATTN_NEG_INF as_float(0xff800000u)
#define CLATTN_LOG2E 1.4426950408889634f
#define CLATTN_LN2 0.6931471805599453f

/* exp2(m_old - m_new) of the online softmax (m_new >= m_old; float or vector), without
 * overflow when m_old is still CLATTN_MASKED: the halves cannot overflow and
 * differences below -200 give 0 either way. Exact otherwise (halving and
 * doubling are exact). */
#define CLATTN_RESCALE(m_old, m_new) exp2(fmax(0.5f * (m_old) - 0.5f * (m_new), -100.0f) * 2.0f)

/* Causal alignment (-DCAUSAL): 1 bottom-right (CLATTN_MASK_CAUSAL, key j
 * visible to query i when j <= i + Nk - Nq), 2 top-left
 * (CLATTN_MASK_CAUSAL_TOP_LEFT, j <= i): the offset of query i's position. */
#define CAUSAL_OFFSET(causal, Nq, Nk) ((causal) == 2 ? 0 : (Nk) - (Nq))

/* Score modifiers (clattn_attention_desc.softcap, .alibi_max_bias), on a
 * score in log2 units (the kernels' q carries scale·log2 e) of the query at
 * key position p (aligned as CAUSAL_OFFSET) and key j:
 *   -DSOFTCAP=1 -DSOFTCAP2=c·log2(e):  s ← SOFTCAP2·tanh(s / SOFTCAP2)
 *   -DALIBI=1 -DALIBI_BIAS=max_bias:   s ← s − slope_h·log2(e)·|p − j|
 * (the header's definitions scaled by log2 e). */
#ifndef SOFTCAP
#define SOFTCAP 0
#endif
#ifndef ALIBI
#define ALIBI 0
#endif
#define SCORE_MODS (SOFTCAP || ALIBI)
#if ALIBI
/* slope of query head h of H, times log2(e) */
inline float alibi_slope2(const int h, const int H) {
  int n = 1;
  while (n * 2 <= H)
    n *= 2;
  const float e = h < n ? (float)(h + 1) / (float)n : (float)(2 * (h - n) + 1) / (float)(2 * n);
  return exp2(-ALIBI_BIAS * e) * CLATTN_LOG2E;
}
#endif
#ifndef CLATTN_CPU
#define CLATTN_CPU 0 /* the host sets 1 for CPU devices */
#endif
#if SOFTCAP && CLATTN_CPU
/* CPUs: s ← SOFTCAP2·tanh(x), x = s / SOFTCAP2, by a rational minimax
 * approximation (Eigen's float tanh: x clamped to ±7.9053, where tanh
 * rounds to ±1; an odd degree-13 polynomial over an even degree-6 one,
 * error a few ulp), the reciprocal as the hardware estimate and one Newton
 * step: about 14 vector operations, no exp2 and no division (a NaN
 * score stays NaN). On PoCL
 * (N = 4096, f32) softcap costs +14 % / +6-8 % over plain flash at
 * d = 64 / 128 this way, +16 % / +9-10 % with the exp2 form below
 * (bench/RESULTS.md §12). t: a temporary of s's type. */
#define SOFTCAP_TANH_P(x, x2)                                                                      \
  ((x) * ((((((-2.76076847742355e-16f * (x2) + 2.00018790482477e-13f) * (x2) -                     \
              8.60467152213735e-11f) * (x2) + 5.12229709037114e-08f) * (x2) +                       \
            1.48572235717979e-05f) * (x2) + 6.37261928875436e-04f) * (x2) +                         \
          4.89352455891786e-03f))
#define SOFTCAP_TANH_Q(x2)                                                                         \
  (((1.19825839466702e-06f * (x2) + 1.18534705686654e-04f) * (x2) + 2.26843463243900e-03f) *      \
       (x2) + 4.89352518554385e-03f)
#define SOFTCAP_RECIP(y) (native_recip(y) * (2.0f - (y)*native_recip(y)))
#define SOFTCAP_APPLY(s, t)                                                                        \
  ((t) = clamp((s) * (1.0f / SOFTCAP2), -7.90531110763549805f, 7.90531110763549805f),             \
   (s) = (s) != (s) ? (s) /* NaN stays NaN */                                                    \
                    : SOFTCAP2 * SOFTCAP_TANH_P((t), (t) * (t)) * SOFTCAP_RECIP(SOFTCAP_TANH_Q((t) * (t))))
#elif SOFTCAP && defined(CLATTN_NV_SOFTCAP) && CLATTN_NV_SOFTCAP
/* decode_tc on NVIDIA (host: -DCLATTN_NV_SOFTCAP=1; flash_tc has its own
 * form, the backward keeps the one below): bf16 through tanh.approx (one
 * MUFU operation, relative error 2^-11, below the rounding of P to bf16),
 * f16 through ex2.approx and rcp.approx (errors ~2^-22: f16's P keeps 11
 * bits), as cl/flash_tc.cl; the IEEE division of the form below cost
 * decode +38 % on an H100 (bench/RESULTS.md §22). */
#if CLATTN_DTYPE == 2
inline float softcap_nv(float x) {
  float r;
  __asm__("tanh.approx.f32 %0, %1;" : "=f"(r) : "f"(x * (1.0f / SOFTCAP2)));
  return SOFTCAP2 * r;
}
#else
/* f16 (decode_tc has no f32): 2C / (1 + e^(-2x/C)) - C, no |x| and no sign (cl/nv_mma.cl
 * NV_SOFTCAP_X) */
inline float softcap_nv(float x) {
  float t, r;
  __asm__("ex2.approx.ftz.f32 %0, %1;" : "=f"(t) : "f"(x * (-2.0f * CLATTN_LOG2E / SOFTCAP2)));
  __asm__("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + t));
  return fma(2.0f * SOFTCAP2, r, -SOFTCAP2);
}
#endif
#define SOFTCAP_APPLY(s, t) ((void)(t), (s) = softcap_nv(s))
#elif SOFTCAP
/* s ← SOFTCAP2·tanh(s / SOFTCAP2) as SOFTCAP2·sign(s)·(1 − t)/(1 + t) with
 * t = e^(−2|s|/SOFTCAP2): one exp2 and a division, on floats and row vectors
 * alike (t a temporary of s's type); GPUs. */
#define SOFTCAP_APPLY(s, t)                                                                        \
  ((t) = exp2(fabs(s) * (-2.0f * CLATTN_LOG2E / SOFTCAP2)),                                        \
   (s) = copysign(SOFTCAP2 * (1.0f - (t)) / (1.0f + (t)), (s)))
#endif
#if SCORE_MODS
inline float score_mods(float s, const float slope2, const int p, const int j) {
#if SOFTCAP
  float t;
  SOFTCAP_APPLY(s, t);
#endif
#if ALIBI
  s -= slope2 * (float)abs(p - j);
#endif
  return s;
}
#endif

/* Key tiles of bn keys that the query rows q0 .. q0+bm-1 visit in a dense
 * flash kernel: all of them, or under a causal mask those up to the block's
 * last visible key; tiles above the diagonal are never visited. */
inline int flash_dense_tiles(const int q0, const int bm, const int bn, const int Nq, const int Nk,
                             const int causal) {
  const int kv_end =
      causal ? clamp(min(q0 + bm, Nq) - 1 + CAUSAL_OFFSET(causal, Nq, Nk) + 1, 0, Nk) : Nk;
  return (kv_end + bn - 1) / bn;
}

/* ---- ragged batches (-DRAGGED=1) in the prefill flash kernels ----
 * Q/O packed [total_q][H][d] and K/V packed [total_kv][Hk][d] (the batch
 * strides are 0), sequence b owning rows cu_q[b] .. cu_q[b+1]-1 and keys
 * cu_kv[b] .. cu_kv[b+1]-1. The kernels take the plan's maxima as Nq_max /
 * Nk_max (FLASH_NQ / FLASH_NK) and FLASH_RAGGED_PROLOGUE declares the
 * sequence's Nq, Nk and first rows qstart, kstart once b is known;
 * inconsistent tables empty the sequence, and a work-group past its
 * sequence's queries visits no key tile (Nk = 0): empty sequences cost a
 * launch only. The LSE is [total_q][H]. */
#ifndef RAGGED
#define RAGGED 0
#endif
#if RAGGED
#define FLASH_NQ Nq_max
#define FLASH_NK Nk_max
#define FLASH_RAGGED_ARGS                                                                      \
  , __global const int *restrict cu_q, __global const int *restrict cu_kv, const int total_q,  \
      const int total_kv
inline void flash_ragged(const int b, __global const int *cu_q, __global const int *cu_kv,
                         const int Nq_max, const int Nk_max, const int total_q,
                         const int total_kv, int *qstart, int *nq, int *kstart, int *nk) {
  const int a = cu_q[b], c = cu_q[b + 1], ka = cu_kv[b], kc = cu_kv[b + 1];
  const bool okq = a >= 0 && a <= c && c <= total_q && c - a <= Nq_max;
  const bool okk = ka >= 0 && ka <= kc && kc <= total_kv && kc - ka <= Nk_max;
  *qstart = okq ? a : 0;
  *nq = okq ? c - a : 0;
  *kstart = okk ? ka : 0;
  *nk = okk ? kc - ka : 0;
}
#define FLASH_RAGGED_PROLOGUE(b, q0)                                                           \
  int qstart, Nq, kstart, Nk;                                                                  \
  flash_ragged((b), cu_q, cu_kv, Nq_max, Nk_max, total_q, total_kv, &qstart, &Nq, &kstart,     \
               &Nk);                                                                           \
  FLASH_USE_BLOCKS(b)                                                                          \
  if ((q0) >= Nq) Nk = 0;
#define FLASH_LSE_INDEX(bh, row) ((long)(qstart + (row)) * H + (bh) % H)
#else
#define FLASH_NQ Nq
#define FLASH_NK Nk
#define FLASH_RAGGED_ARGS
#define FLASH_RAGGED_PROLOGUE(b, q0)                                                           \
  const int qstart = 0, kstart = 0;                                                            \
  FLASH_USE_BLOCKS(b)
#define FLASH_LSE_INDEX(bh, row) ((long)(bh) * Nq + (row))
#endif

/* ---- sparse masks (-DSPARSE=1 element patterns, -DSPARSE=2 block patterns) ----
 * Visibility of key j for the query at key position p (src/sparse.h and the
 * clattn_sparse_desc comment in clattn.h define the patterns; the host builds
 * the tile lists and sp_bits). Element class: band p-left <= j <= p+right
 * with (p-j) % step == 0, or (p-j) % stride == 0 (stride > 0), or a global
 * position (< nglobal, or set in sp_bits when SP_GBITS). Block class: bit
 * (qb - qb0, kb) of the block bitmap, rows of row_words words. */
#ifndef SPARSE
#define SPARSE 0
#endif
#ifndef SP_BAND
#define SP_BAND 0
#endif
#if SPARSE
#define SP_CAUSAL 1
#define SP_GBITS 2
#define SP_EWIN 4
#define SPARSE_MASK_ARGS                                                                       \
  , __global const uint *restrict sp_bits, const int sp_left, const int sp_right,            \
      const int sp_step, const int sp_stride, const int sp_nglobal, const int sp_block,        \
      const int sp_row_words, const int sp_qb0, const int sp_flags
#define SPARSE_MASK_PASS                                                                       \
  sp_bits, sp_left, sp_right, sp_step, sp_stride, sp_nglobal, sp_block, sp_row_words, sp_qb0,  \
      sp_flags

inline bool sp_bit(__global const uint *bits, long i) { return (bits[i >> 5] >> (i & 31)) & 1u; }

inline bool sp_visible(const int p, const int j, const int nk, __global const uint *bits,
                       const int left, const int right, const int step, const int stride,
                       const int nglobal, const int block, const int row_words, const int qb0,
                       const int flags) {
  if (j < 0 || j >= nk) return false;
  if ((flags & SP_CAUSAL) && j > p) return false;
  const int dl = p - j; /* how far back the key lies */
#if SPARSE == 1 && SP_BAND /* a plain band (step 1, no stride, no globals) */
  (void)bits, (void)step, (void)stride, (void)nglobal, (void)block, (void)row_words, (void)qb0;
  return dl <= left && -dl <= right;
#elif SPARSE == 1
  if (dl <= left && -dl <= right && dl % step == 0) return true;
  if (stride > 0 && dl % stride == 0) return true;
  if (j < nglobal || (p >= 0 && p < nglobal)) return true;
  if (flags & SP_GBITS) return sp_bit(bits, j) || (p >= 0 && p < nk && sp_bit(bits, p));
  return false;
#else
  if (p < 0 || p >= nk) return false;
  if ((flags & SP_EWIN) && (dl > left || -dl > right)) return false;
  const int qb = p / block - qb0, kb = j / block;
  return sp_bit(bits, (long)qb * row_words * 32 + kb);
#endif
}
#else
#define SPARSE_MASK_ARGS
#endif

/* ---- the flash kernels' one argument list and prologue ----
 * cl/flash_fwd.cl, cl/flash_rows.cl and cl/flash_tc.cl take the same
 * arguments, in the order src/families/flash.c sets them (ET: the element
 * type of the tensors), and start the same way: the work-group's query block
 * (under a sparse mask the longest tile lists first, under a causal mask the
 * heaviest blocks first), its batch, head and KV head, its sequence (ragged
 * batches) and the bases of its Q, K and V rows. */
#if SPARSE
#define FLASH_SPARSE_ARGS                                                                      \
  , __global const int *restrict sp_tile_off, __global const int *restrict sp_tiles SPARSE_MASK_ARGS
#define FLASH_QUERY_BLOCK() sp_tile_off[nqb + 1 + (int)get_group_id(0)]
#else
#define FLASH_SPARSE_ARGS
#if USER_MASK
/* with a user mask's block lists: the row blocks by descending tile count
 * (mask_order, clattn_plan_update_mask_blocks), the longest first as under
 * a causal mask, so that no long block starts last */
#define FLASH_QUERY_BLOCK()                                                                        \
  (use_blocks_arg ? clamp(mask_order[(long)get_group_id(1) * nqb + get_group_id(0)], 0, nqb - 1)  \
   : CAUSAL   ? nqb - 1 - (int)get_group_id(0)                                                     \
              : (int)get_group_id(0))
#else
#define FLASH_QUERY_BLOCK() (CAUSAL ? nqb - 1 - (int)get_group_id(0) : (int)get_group_id(0))
#endif
#endif
/* ---- user functions (-DUSER_SCORE=1, -DUSER_MASK=1) ----
 * clattn_score_mod / clattn_mask_mod come from the descriptor's source,
 * compiled between this file and the kernel file (clattn.h states their
 * signatures); `user` is the caller's buffer (clattn_exec_args.user, may
 * be NULL). The kernels call them only for rows and keys that exist. */
#ifndef USER_SCORE
#define USER_SCORE 0
#endif
#ifndef USER_MASK
#define USER_MASK 0
#endif
#if USER_MASK
/* With use_blocks, the block classes of clattn_plan_update_mask_blocks:
 * mask_cls (0 hidden, 1 partial, 2 shown per (batch·head, query tile, key
 * tile)) and per row block the list of the tiles not hidden (kt·4 + class,
 * ascending; mask_count entries) and the row blocks by descending count
 * (mask_order); else the kernel evaluates the mask on every tile. Dense
 * loops walk the list (USER_LIST_*), sparse ones read the
 * class of each listed tile (USER_TILE_CLASS). */
#define FLASH_USER_ARGS                                                                        \
  , __global const uchar *restrict user, __global const uchar *restrict mask_cls,              \
      __global const int *restrict mask_list, __global const int *restrict mask_count,         \
      __global const int *restrict mask_order, __global const int *restrict mask_stamp,        \
      const int use_blocks_arg
/* use_blocks: the classes apply to this work-group. Ragged: only when the
 * sequence's rows and keys are those the classes were made for (mask_stamp
 * [4b .. 4b+3] = qstart, Nq, kstart, Nk, written by mask_blocks); with
 * other tables the mask is evaluated on every tile (correct, slower). */
#if RAGGED
#define FLASH_USE_BLOCKS(b)                                                                    \
  const int use_blocks = use_blocks_arg && mask_stamp[4 * (b)] == qstart &&                    \
                         mask_stamp[4 * (b) + 1] == Nq && mask_stamp[4 * (b) + 2] == kstart &&  \
                         mask_stamp[4 * (b) + 3] == Nk;
#else
#define FLASH_USE_BLOCKS(b) const int use_blocks = use_blocks_arg;
#endif
#define USER_TILE_CLASS(bh, qb, kt, nkt)                                                       \
  (use_blocks ? (int)mask_cls[((long)(bh) * nqb + (qb)) * (nkt) + (kt)] : 1)
/* loop count over the row block's tiles, and the entry of step t */
#define USER_LIST_COUNT(bh, qb, ntiles)                                                        \
  (use_blocks ? mask_count[(long)(bh) * nqb + (qb)] : (ntiles))
#define USER_LIST_ENTRY(bh, qb, t, nkt)                                                        \
  (use_blocks ? mask_list[((long)(bh) * nqb + (qb)) * (nkt) + (t)] : (t) * 4 + 1)
#elif USER_SCORE
#define FLASH_USER_ARGS , __global const uchar *restrict user
#define FLASH_USE_BLOCKS(b)
#else
#define FLASH_USER_ARGS
#define FLASH_USE_BLOCKS(b)
#endif

/* The walk over a row block's key tiles (flash_fwd.cl, flash_rows.cl):
 *   const int nloop = FLASH_TILE_COUNT(ntiles);
 *   for (int t = 0; t < nloop; t++) { FLASH_TILE_AT(t) ... }
 * FLASH_TILE_AT declares kv0 (sparse: also ent, the list entry; a user mask:
 * ucls, the tile's class) and, with a user mask's block lists, leaves the
 * loop past the causal limit (the list ascends) and skips hidden tiles. It
 * reads bh, qb, ntiles, Nk (and t0 for sparse masks) of the kernel. */
#if USER_MASK && !SPARSE
#define FLASH_TILE_COUNT(ntiles) USER_LIST_COUNT(bh, qb, ntiles)
#else
#define FLASH_TILE_COUNT(ntiles) (ntiles)
#endif
#if SPARSE && USER_MASK
#define FLASH_TILE_AT(t)                                                                       \
  const int ent = sp_tiles[t0 + (t)];                                                          \
  const int kv0 = (ent >> 1) * BN;                                                             \
  const int ucls = USER_TILE_CLASS(bh, qb, kv0 / BN, (FLASH_NK + BN - 1) / BN);                \
  if (ucls == 0) continue;
#elif SPARSE
#define FLASH_TILE_AT(t)                                                                       \
  const int ent = sp_tiles[t0 + (t)];                                                          \
  const int kv0 = (ent >> 1) * BN;
#elif USER_MASK
#define FLASH_TILE_AT(t)                                                                       \
  const int uent = USER_LIST_ENTRY(bh, qb, t, (FLASH_NK + BN - 1) / BN);                       \
  if ((uent >> 2) >= ntiles) break;                                                            \
  const int kv0 = (uent >> 2) * BN, ucls = uent & 3;                                           \
  if (ucls == 0) continue;
#else
#define FLASH_TILE_AT(t) const int kv0 = (t)*BN;
#endif

/* Attention sinks (-DSINKS=1): one logit per query head, natural units. */
#ifndef SINKS
#define SINKS 0
#endif
#if SINKS
#define FLASH_SINK_ARGS , __global const float *restrict sinks
#else
#define FLASH_SINK_ARGS
#endif

/* KVQ: K/V storage. 0: the descriptor's dtype (stype). 1: int8, 2: fp8
 * e4m3 (E4M3FN), 3: fp8 e5m2 codes, one byte each; an element's value is
 * kvqN(code) · its scale (KVS: 0 per token and KV head, 1 per tensor, 2 per
 * KV head, 3 per KV head and channel). The decode kernels multiply scores and probabilities by per-token
 * scales and fold the others into Q (K's) and into the partial outputs
 * (V's); the flash kernels apply every scale where a tile is converted
 * (KV_SCALE below).
 * (Decoding without integer-to-float instructions, through the mantissa of
 * 2^23, measured 5-10 % slower on an H100: conversions do not bound the
 * 8-bit decode, its per-key work does; 16 codes a lane, which halves the
 * lanes per key, measured 1.4x slower: float16 Q and output rows for 4 query
 * rows take 128 registers; bench/RESULTS.md §16.) */
#ifndef KVQ
#define KVQ 0
#endif
#ifndef KVS
#define KVS 0
#endif
#if KVQ == 0
typedef stype kvtype;
typedef STYPE16 KVTYPE16;
#define KVLOAD(p, i) LOAD(p, i)
#define KVLOAD16(p) LOAD16(p)
#define KVLOAD16_PRIVATE(p) LOAD16_PRIVATE(p)
#else
#if KVQ == 1
typedef char kvtype;
typedef char8 kvtype8;
typedef char16 kvtype16;
#define AS_KV8(x) as_char8(x)
#define KVQ_BODY(N) return convert_float##N(c);
#else
typedef uchar kvtype;
typedef uchar8 kvtype8;
typedef uchar16 kvtype16;
#define AS_KV8(x) as_uchar8(x)
#if KVQ == 2
/* E4M3FN: normals rebias the exponent (+120), subnormals are m·2^-9, S.1111.111 is NaN */
#define KVQ_BODY(N)                                                                                \
  const uint##N u = convert_uint##N(c), em = u & 0x7fu;                                            \
  uint##N r = select((em << 20) + 0x3c000000u, as_uint##N(convert_float##N(em) * 0x1.0p-9f),      \
                     em < 0x8u);                                                                   \
  r = select(r, (uint##N)(0x7fc00000u), em == 0x7fu);                                              \
  return as_float##N(r | ((u & 0x80u) << 24));
#else
/* E5M2: normals rebias the exponent (+112), subnormals are m·2^-16, exponent 31 is inf / NaN */
#define KVQ_BODY(N)                                                                                \
  const uint##N u = convert_uint##N(c), em = u & 0x7fu;                                            \
  uint##N r = select((em << 21) + 0x38000000u, as_uint##N(convert_float##N(em) * 0x1.0p-16f),     \
                     em < 0x4u);                                                                   \
  r = select(r, 0x7f800000u | ((em & 0x3u) << 21), em >= 0x7cu);                                   \
  return as_float##N(r | ((u & 0x80u) << 24));
#endif
#endif
typedef kvtype16 KVTYPE16;
inline float kvq1(const kvtype c) { KVQ_BODY() }
inline float8 kvq8(const kvtype8 c) { KVQ_BODY(8) }
inline float16 kvq16(const kvtype16 c) { KVQ_BODY(16) }
#define KVLOAD(p, i) kvq1((p)[i])
#define KVLOAD16(p) kvq16(vload16(0, (p)))
#define KVLOAD16_PRIVATE(p) kvq16(vload16(0, (p)))
#endif /* KVQ */

/* The flash kernels' K/V element type (FLASH_KVT) and, quantized, the scale
 * arguments (clattn_exec_args.k_scale / v_scale and the token scales' row
 * stride ssr, as in decode). KV_SCALE(sc, b, key, x): the scale of element
 * (key, x) of K or V in KV head hk of batch entry b (key counted from the
 * entry's first row, the ragged offset included); H, G, hk in scope. */
#if KVQ
#define FLASH_KVT(ET) kvtype
#define FLASH_KVQ_ARGS                                                                         \
  , __global const float *restrict ksc, __global const float *restrict vsc, const long ssr
/* KV_SCALE_HK: the same for KV head hk_ of Hk_. */
#if KVS == 0
#define KV_SCALE_HK(sc, b, key, x, hk_, Hk_) (sc)[(long)(b)*ssr + (long)(key) * (Hk_) + (hk_)]
#elif KVS == 1
#define KV_SCALE_HK(sc, b, key, x, hk_, Hk_) (sc)[0]
#elif KVS == 2
#define KV_SCALE_HK(sc, b, key, x, hk_, Hk_) (sc)[hk_]
#else
#define KV_SCALE_HK(sc, b, key, x, hk_, Hk_) (sc)[(hk_)*D + (x)]
#endif
#define KV_SCALE(sc, b, key, x) KV_SCALE_HK(sc, b, key, x, hk, H / G)
#else
#define FLASH_KVT(ET) ET
#define FLASH_KVQ_ARGS
#endif

/* A bias tensor (-DBIAS=1, BIAS_T 0 f32, 1 f16, 2 bf16, 3 bool): element
 * (b, h, i, j) at b·bsb + h·bsh + i·bsq + j·bsk (0 strides broadcast). */
#ifndef BIAS
#define BIAS 0
#endif
#if BIAS
#define FLASH_BIAS_ARGS                                                                        \
  , __global const uchar *restrict bias, const long bsb, const long bsh, const long bsq,       \
      const long bsk
/* The bias value (natural units); a bool mask gives 0 or -inf (its bits,
 * so that finite-math builds keep it) */
inline float bias_load(__global const uchar *p, long e) {
#if BIAS_T == 0
  return ((__global const float *)p)[e];
#elif BIAS_T == 1
  return half_bits_to_float(((__global const ushort *)p)[e]);
#elif BIAS_T == 2
  return as_float((uint)((__global const ushort *)p)[e] << 16);
#else
  return p[e] ? 0.0f : as_float(0xff800000u);
#endif
}
#define BIAS_AT(b, h, i, j)                                                                    \
  bias_load(bias, (long)(b)*bsb + (long)(h)*bsh + (long)(i)*bsq + (long)(j)*bsk)
/* -inf (by its bits) hides the key */
#define BIAS_HIDES(x) (as_uint(x) == 0xff800000u)
#else
#define FLASH_BIAS_ARGS
#endif

/* The flash kernels' arguments and first lines: Q and O of storage type ET,
 * K and V of type KT (FLASH_ARGS / FLASH_PROLOGUE: KT = FLASH_KVT(ET), ET or
 * a quantized K/V's codes; flash_rows reads 16-bit K/V from the plan's f32
 * copy, KT = float, see cl/flash_rows.cl). */
#define FLASH_ARGS(ET) FLASH_ARGS_KV(ET, FLASH_KVT(ET))
#define FLASH_PROLOGUE(ET, rows) FLASH_PROLOGUE_KV(ET, FLASH_KVT(ET), rows)
#define FLASH_ARGS_KV(ET, KT)                                                                  \
  __global const ET *restrict Q, __global const KT *restrict K, __global const KT *restrict V, \
      __global ET *restrict O, __global float *restrict LSE, const int write_lse,               \
      const long qsb, const long qsh, const long qss, const long qsd, const long ksb,          \
      const long ksh, const long kss, const long ksd, const long vsb, const long vsh,          \
      const long vss, const long vsd, const long osb, const long osh, const long oss,          \
      const long osd, const int H, const int G, const int FLASH_NQ, const int FLASH_NK,        \
      const int nqb, const float qscale FLASH_USER_ARGS FLASH_SINK_ARGS FLASH_BIAS_ARGS         \
          FLASH_RAGGED_ARGS FLASH_KVQ_ARGS FLASH_SPARSE_ARGS
#define FLASH_PROLOGUE_KV(ET, KT, rows)                                                        \
  const int qb = FLASH_QUERY_BLOCK();                                                          \
  const int bh = get_group_id(1);                                                              \
  const int b = bh / H, h = bh % H, hk = h / G;                                                \
  const int q0 = qb * (rows);                                                                  \
  FLASH_RAGGED_PROLOGUE(b, q0)                                                                 \
  __global const ET *Qb = Q + (long)b * qsb + (long)qstart * qss + (long)h * qsh;              \
  __global const KT *Kb = K + (long)b * ksb + (long)kstart * kss + (long)hk * ksh;             \
  __global const KT *Vb = V + (long)b * vsb + (long)kstart * vss + (long)hk * vsh;
