/* decode.cl — split-KV decode (flash-decoding) over contiguous, ragged or paged KV, its merge, the
 * public state merge and the paged-cache append. */

/* -D parameters of decode_split / decode_merge:
 *   D head dim, KT keys per tile, WG work-items, QR packed query rows per
 *   work-group (rows r = i·G + g: query i of head hk·G + g, so every query
 *   head of a KV head reads each K/V byte once), CAUSAL (0, 1 bottom-right,
 *   2 top-left), PAGED (K/V pools behind a block table), RAGGED (Q/O packed
 *   by cu_seqlens_q; contiguous K/V packed by cu_seqlens_kv).
 * Work-group (row block, split) of (b, hk) visits the keys of its split in
 * tiles of KT, keeps the running max / sum in local memory and WG-strided
 * output accumulators in registers, and writes a normalised partial output
 * and its log2-sum-exp to the workspace; decode_merge combines the splits
 * in order (deterministic). Every table entry is range-checked before it
 * is used: a bad page index masks its keys, a bad length or offset empties
 * its sequence. */
#ifndef D
#define D 64
#endif
#ifndef KT
#define KT 32
#endif
#ifndef WG
#define WG 64
#endif
#ifndef QR
#define QR 8
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef PAGED
#define PAGED 0
#endif
#ifndef PAGE
#define PAGE 1
#endif
#ifndef VEC8
#define VEC8 0
#endif
#ifndef ALLH
#define ALLH 0
#endif
/* The causal test of key j for the query at key position p (always true
 * without a causal mask; a preprocessor choice, not a constant operand). */
#if CAUSAL
#define DECODE_VISIBLE(j, p) ((j) <= (p))
#else
#define DECODE_VISIBLE(j, p) true
#endif
#ifndef RAGGED
#define RAGGED 0
#endif
/* VEC8 (unit dim strides, D % 8 == 0): K/V rows read as 8-vectors (16 bytes
 * of bf16/f16) straight from memory. */
#if VEC8
#if CLATTN_DTYPE == 0
#define LOAD8(p, off, c) vload8((c), (p) + (off))
#elif CLATTN_DTYPE == 2
#define LOAD8(p, off, c) as_float8(convert_uint8(vload8((c), (p) + (off))) << 16)
#elif CLATTN_SOFT_HALF
#define LOAD8(p, off, c) half8_to_float8(vload8((c), (p) + (off)))
#else
#define LOAD8(p, off, c) vload_half8((c), (const __global half *)((p) + (off)))
#endif
#endif
/* ALIGN16 (the plan checked that every K/V row offset is a multiple of 16
 * bytes, VEC8 set): each 8-vector is read with whole 16-byte loads. vload8 of
 * 16-bit elements may only assume 2-byte alignment and NVIDIA's compiler
 * emits eight 2-byte loads for it. */
#ifndef ALIGN16
#define ALIGN16 0
#endif
#if VEC8 && ALIGN16
#if CLATTN_DTYPE == 0
#define KV8(p, off, c)                                                                           \
  ((float8)(*(__global const float4 *)((p) + (off) + (c)*8),                                      \
            *(__global const float4 *)((p) + (off) + (c)*8 + 4)))
#else
#if CLATTN_DTYPE == 1 && CLATTN_NV_SHFL
/* the two halves of a word (low first) as floats, in PTX */
inline float2 nv_h2f2(const uint w) {
  float a, b;
  __asm__("{ .reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\tcvt.f32.f16 %0, l;\n\tcvt.f32.f16 %1, h;\n\t}"
          : "=f"(a), "=f"(b)
          : "r"(w));
  return (float2)(a, b);
}
#endif
/* 8 stored 16-bit elements (element 2i in the low half of word i) as floats */
inline float8 kv16x8(const uint4 u) {
#if CLATTN_DTYPE == 2
  const float4 lo = as_float4(u << 16), hi = as_float4(u & 0xffff0000u);
  return (float8)(lo.x, hi.x, lo.y, hi.y, lo.z, hi.z, lo.w, hi.w);
#elif CLATTN_NV_SHFL
  /* NVIDIA (decode_warp): the hardware conversion, two halves a word (the
   * integer conversion below measured 0.55x of bf16's bandwidth there) */
  return (float8)(nv_h2f2(u.x), nv_h2f2(u.y), nv_h2f2(u.z), nv_h2f2(u.w));
#else
  /* integer conversion (exact); vload_half8 of a private copy went through
   * memory on NVIDIA (measured 24 % below bf16) */
  return half8_to_float8(as_ushort8(u));
#endif
}
#define KV8(p, off, c) kv16x8(*(__global const uint4 *)((p) + (off) + (c)*8))
#endif
#elif VEC8
#define KV8(p, off, c) LOAD8(p, off, c)
#endif

/* Quantized K/V (KVQ, KVS, kvtype, kvqN: cl/common.cl): 8 codes a lane. */
#if KVQ
#undef KV8
#if VEC8 && ALIGN16 /* here: every row offset a multiple of 8 bytes */
#define KV8(p, off, c) kvq8(AS_KV8(*(__global const uint2 *)((p) + (off) + (c)*8)))
#elif VEC8
#define KV8(p, off, c) kvq8(vload8((c), (p) + (off)))
#endif
#endif

/* The scales of a quantized K/V (kernel arguments ksc, vsc, ssr; hk in
 * scope). KCH(dd) / VCH(dd): the channel-type factor of dimension dd
 * (tensor, head or channel scales; 1 otherwise); KTOK / VTOK(row, pos): the
 * token scale of the key at (row, pos) of key_slot() (1 otherwise). */
#if KVQ && KVS == 1
#define KCH(dd) ksc[0]
#define VCH(dd) vsc[0]
#elif KVQ && KVS == 2
#define KCH(dd) ksc[hk]
#define VCH(dd) vsc[hk]
#elif KVQ && KVS == 3
#define KCH(dd) ksc[hk * D + (dd)]
#define VCH(dd) vsc[hk * D + (dd)]
#else
#define KCH(dd) 1.0f
#define VCH(dd) 1.0f
#endif
#if KVQ && KVS == 3
#define KCH8(d0) vload8(0, ksc + hk * D + (d0))
#define KCH16(d0) vload16(0, ksc + hk * D + (d0))
#else
#define KCH8(d0) ((float8)(KCH(0)))
#define KCH16(d0) ((float16)(KCH(0)))
#endif
#if KVQ && KVS == 0
#define KTOK(row, pos) ksc[(row)*ssr + (pos)*Hk + hk]
#define VTOK(row, pos) vsc[(row)*ssr + (pos)*Hk + hk]
#else
#define KTOK(row, pos) 1.0f
#define VTOK(row, pos) 1.0f
#endif
/* Output elements (row, dim) each work-item accumulates. */
#define NO ((QR * D + WG - 1) / WG)

/* The geometry of sequence b: its first query row q0 and count nq, its
 * first key row k0 (contiguous) and key count nk, all clamped to the
 * plan's maxima; inconsistent tables give an empty sequence. */
inline void seq_geometry(const int b, __global const int *cu_q, __global const int *cu_kv,
                         __global const int *seqlens, const int use_seqlens, const int Nq_max,
                         const int Nk_max, const int total_q, const int total_kv, int *q0, int *nq,
                         int *k0, int *nk) {
#if RAGGED
  const int a = cu_q[b], c = cu_q[b + 1];
  const bool okq = a >= 0 && a <= c && c <= total_q && c - a <= Nq_max;
  *q0 = okq ? a : 0;
  *nq = okq ? c - a : 0;
#else
  *q0 = 0;
  *nq = Nq_max;
#endif
#if PAGED
  *k0 = 0;
  *nk = clamp(seqlens[b], 0, Nk_max);
#elif RAGGED
  const int ka = cu_kv[b], kc = cu_kv[b + 1];
  const bool okk = ka >= 0 && ka <= kc && kc <= total_kv && kc - ka <= Nk_max;
  *k0 = okk ? ka : 0;
  *nk = okk ? kc - ka : 0;
#else
  *k0 = 0;
  *nk = use_seqlens ? clamp(seqlens[b], 0, Nk_max) : Nk_max;
#endif
}

/* Where key j of sequence b lives: its row (a page of the pool, or the
 * batch entry) and its position in that row. False for a key at or past ke
 * or behind a page id outside the pool; the row and position then still
 * point inside the buffers, and callers read nothing. */
inline bool key_slot(const int j, const int ke, const int b, const int k0,
                     __global const int *btab, const int maxp, const int num_pages,
                     long *row, long *pos) {
  bool ok = j < ke;
#if PAGED
  /* PAGE: the plan's page size as a constant (a shift or a multiply, not a
   * division, per key) */
  const int lpg = j / PAGE;
  const int pg = ok ? btab[(long)b * maxp + lpg] : 0;
  ok = ok && pg >= 0 && pg < num_pages;
  *row = (long)(ok ? pg : 0);
  *pos = (long)(j - lpg * PAGE);
#else
  *row = (long)b;
  *pos = (long)(k0 + (ok ? j : 0));
#endif
  return ok;
}

#if PAGED
/* key_slot with the key's block-table entry pg read beforehand (0 for a key
 * at or past ke). */
inline bool key_slot_pg(const int j, const int ke, const int pg, const int num_pages, long *row,
                        long *pos) {
  const bool ok = j < ke && pg >= 0 && pg < num_pages;
  *row = (long)(ok ? pg : 0);
  *pos = (long)(j - j / PAGE * PAGE);
  return ok;
}
#endif

#ifndef WARP
#define WARP 0
#endif
#ifndef TC
#define TC 0 /* decode_tc: mma.sync (nv_mma.cl comes first) */
#endif
#ifndef CLATTN_NV_SHFL
#define CLATTN_NV_SHFL 0
#endif
#if WARP && CLATTN_NV_SHFL
/* NVIDIA: the value of lane lane ^ m of the warp (all 32 lanes take part:
 * callers keep every lane in step). */
inline float shfl_xor_f(float v, int m) {
  float r;
  __asm__ volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
  return r;
}
#define SHFL_XOR(v, m) shfl_xor_f(v, m)
#elif WARP
/* Other devices (the CPU tests of this kernel): the same exchange through
 * local memory. Every work-item of the work-group calls it equally often
 * (the loops around it are uniform), so its barriers are legal. */
inline float shfl_xor_local(float v, int m, __local float *x) {
  const int i = (int)get_local_id(0);
  x[i] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  const float r = x[i ^ m];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
#define SHFL_XOR(v, m) shfl_xor_local(v, m, lxch)
#endif

/* The workspace slot of packed row r (query r / G of head hk·G + r % G) of
 * sequence b, split sp. */
inline long partial_slot(const int r, const int b, const int hk, const int G, const int H,
                         const int Nq_max, const int splits, const int sp) {
  return ((long)(b * H + hk * G + r % G) * Nq_max + r / G) * splits + sp;
}

/* Score modifiers (common.cl: softcap, ALiBi; the user's score_mod and
 * mask_mod) on the score s (log2 units) of query row i of head h at key
 * position p against key j of sequence b; *vis (the key exists and passes
 * the causal mask) is cleared where the user mask hides the key. The user
 * functions are called only for such keys. */
#define DECODE_MODS (SCORE_MODS || USER_SCORE || USER_MASK || BIAS)
/* a bias tensor (common.cl: FLASH_BIAS_ARGS, BIAS_AT): added after the
 * score modifiers, -inf hiding the key, as in the prefill kernels */
#if BIAS
#define DECODE_BIAS_PARAM                                                                          \
  , __global const uchar *bias, const long bsb, const long bsh, const long bsq, const long bsk
#define DECODE_BIAS_PASS , bias, bsb, bsh, bsq, bsk
#else
#define DECODE_BIAS_PARAM
#define DECODE_BIAS_PASS
#endif
#if DECODE_MODS
#define DECODE_USER_ARG , __global const uchar *restrict user
inline float decode_mods(float s, const float slope2, const int b, const int h, const int i,
                         const int p, const int j, __global const uchar *user,
                         bool *vis DECODE_BIAS_PARAM) {
  if (!*vis) return s;
#if SCORE_MODS
  s = score_mods(s, slope2, p, j);
#else
  (void)slope2;
  (void)p;
#endif
#if USER_SCORE
  s = clattn_score_mod(s * CLATTN_LN2, b, h, i, j, user) * CLATTN_LOG2E;
#endif
#if BIAS
  const float bv = BIAS_AT(b, h, i, j);
  s += bv * CLATTN_LOG2E;
  if (BIAS_HIDES(bv)) *vis = false;
#endif
#if USER_MASK
  *vis = *vis && clattn_mask_mod(b, h, i, j, user) != 0;
#endif
  (void)b;
  (void)h;
  (void)i;
  (void)j;
  (void)user;
  return s;
}
#if ALIBI
#define DECODE_SLOPE(h) alibi_slope2((h), H)
#else
#define DECODE_SLOPE(h) 0.0f
#endif
#else
#define DECODE_USER_ARG , __global const uchar *restrict user_unused
#endif

/* A CPU work-item's normalised partial row and its log2-sum-exp (l is
 * exactly 0 without a visible key: zeros and the masked value). */
inline void store_partial(__global float *ws_o, __global float *ws_lse, const long slot,
                          const float *af, const float m, const float l,
                          __global const float *vsc, const int hk) {
  const bool empty = as_uint(l) == 0u;
  const float inv = empty ? 0.0f : 1.0f / l;
  for (int dd = 0; dd < D; dd++)
    ws_o[slot * D + dd] = af[dd] * inv * VCH(dd);
  ws_lse[slot] = empty ? CLATTN_MASKED : m + log2(l);
}

#define DECODE_TABLE_ARGS                                                                          \
  __global const int *restrict cu_q, __global const int *restrict cu_kv,                           \
      __global const int *restrict seqlens, __global const int *restrict btab,                     \
      const int use_seqlens

#if SINKS
#define DECODE_SINK_ARGS , __global const float *restrict sinks
#define DECODE_SINK_PASS , sinks
#else
#define DECODE_SINK_ARGS
#define DECODE_SINK_PASS
#endif
#ifndef FUSE
#define FUSE 0 /* decode_tc: the last work-group of a unit merges its splits (no merge kernel) */
#endif
#if FUSE && TC && !CLATTN_NV_EMU
/* The partials of other work-groups of the same kernel: from L2 (ld.cg, not
 * L1), after a gpu-scope fence (CUDA's threadFenceReduction pattern). */
inline float ld_cg(__global const float *p) {
  float x;
  __asm__ volatile("ld.global.cg.f32 %0, [%1];" : "=f"(x) : "l"(p) : "memory");
  return x;
}
inline float4 ld_cg4(__global const float *p) {
  float4 x;
  __asm__ volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                   : "=f"(x.x), "=f"(x.y), "=f"(x.z), "=f"(x.w)
                   : "l"(p)
                   : "memory");
  return x;
}
#define MLD(p) ld_cg(p)
#define MLD4(p) ld_cg4(p)
#define FUSE_FENCE() __asm__ volatile("membar.gl;" ::: "memory")
#elif FUSE
#define MLD(p) (*(volatile __global const float *)(p))
#define MLD4(p) (*(volatile __global const float4 *)(p))
#define FUSE_FENCE() mem_fence(CLK_GLOBAL_MEM_FENCE)
#endif
#if FUSE
#define DECODE_FUSE_ARGS                                                                           \
  , __global stype *restrict out, __global float *restrict out_lse, const int write_lse,          \
      const long osb, const long osh, const long oss, const long osd,                              \
      __global int *restrict ws_cnt DECODE_SINK_ARGS
#else
#define DECODE_FUSE_ARGS
#endif

/* The merge of output row (b, h, i) from its splits' partials by MW
 * work-items (lid < MW): the decode_merge kernel's work-group (the fused
 * form, FUSE, merges with merge_unit below).
 * The splits are spread over MY = MW / MX groups of MX work-items (split
 * y, y + MY, ...), each group's work-items over the dims (dd = x, x + MX,
 * ...). One pass: a group loads the log2-sum-exps and the partial rows of
 * MU splits at once (every work-item has MU independent loads in flight),
 * merges them into its running (maximum, weight, sums), rescaled when the
 * maximum grows; the groups' states meet in local memory in a fixed order
 * (deterministic). (A first pass over the LSEs for their maximum cost one
 * more round trip and a barrier tree: bench/RESULTS.md §29.) */
#ifndef MW
#define MW 128
#endif
#define MX (D < 32 ? (D < MW ? D : MW) : (32 < MW ? 32 : MW))
#define MY (MW / MX)
#define MDC ((D + MX - 1) / MX) /* dims a work-item sums */
#ifndef MU
#define MU 8 /* splits a work-item group loads at once (H100: 8 over 4, §29) */
#endif
/* The merged row's LSE (natural log; NaN for a NaN row, -inf for a row
 * that saw no key) from its log2 maximum M and weight W, where the
 * output's LSE layout puts it (packed rows when RAGGED). */
void store_merged_lse(__global float *restrict lse, const int b, const int h, const int i,
                      const int q0, const int H, const int Nq_max, const bool isnan_row,
                      const float M, const float W) {
#if RAGGED
  const long li = (long)(q0 + i) * H + h;
#else
  const long li = (long)(b * H + h) * Nq_max + i;
#endif
  lse[li] = isnan_row ? as_float(0x7fc00000u) : W > 0.0f ? (M + log2(W)) * CLATTN_LN2 : CLATTN_NEG_INF;
}

/* (Not `inline`: a compiler that does not inline this larger body would
 * otherwise call a function that C99 inline semantics never define; so is
 * merge_unit. The partials are not written while either runs: restrict
 * holds, also fused.) */
void merge_row(__global const float *restrict ws_o, __global const float *restrict ws_lse,
               __global stype *restrict o, __global float *restrict lse, const int write_lse,
               const int b, const int h, const int i, const int q0, const long osb, const long osh,
               const long oss, const long osd, const int H, const int Nq_max, const int splits,
               const int lid, __local float *gm, __local float *gw, __local float *part,
               __local int *gnan DECODE_SINK_ARGS) {
  const long base = ((long)(b * H + h) * Nq_max + i) * splits;
  const int x = lid % MX, y = lid / MX;
  /* the group's state: maximum (CLATTN_MASKED: none yet), weight, sums; a
   * NaN LSE (a NaN score) makes the row NaN, as in the flash kernels
   * (tested on the bits: finite-math builds fold float compares) */
  float M = CLATTN_MASKED, W = 0.0f, acc[MDC];
  int nan = 0;
#pragma unroll
  for (int c = 0; c < MDC; c++)
    acc[c] = 0.0f;
  if (y < MY)
    for (int sp0 = y; sp0 < splits; sp0 += MY * MU) {
      float ls[MU], v[MU][MDC];
#pragma unroll
      for (int u = 0; u < MU; u++) {
        const int sp = sp0 + u * MY;
        ls[u] = sp < splits ? ws_lse[base + sp] : CLATTN_MASKED;
        __global const float *src = ws_o + (base + (sp < splits ? sp : 0)) * D;
#pragma unroll
        for (int c = 0; c < MDC; c++)
          v[u][c] = sp < splits && x + c * MX < D ? src[x + c * MX] : 0.0f;
      }
      float mc = M;
#pragma unroll
      for (int u = 0; u < MU; u++) {
        nan |= (as_uint(ls[u]) & 0x7fffffffu) > 0x7f800000u;
        mc = ls[u] > CLATTN_MASKED ? fmax(mc, ls[u]) : mc;
      }
      const float a = exp2(M - mc); /* 1 while both are CLATTN_MASKED (W, acc are 0 then) */
      W *= a;
#pragma unroll
      for (int c = 0; c < MDC; c++)
        acc[c] *= a;
#pragma unroll
      for (int u = 0; u < MU; u++) {
        const float w = ls[u] > CLATTN_MASKED ? exp2(ls[u] - mc) : 0.0f;
        W += w;
#pragma unroll
        for (int c = 0; c < MDC; c++)
          acc[c] = mad(w, v[u][c], acc[c]);
      }
      M = mc;
    }
  if (y < MY) {
#pragma unroll
    for (int c = 0; c < MDC; c++)
      if (x + c * MX < D) part[y * D + x + c * MX] = acc[c];
    if (x == 0) {
      gm[y] = M;
      gw[y] = W;
      gnan[y] = nan;
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  /* the groups in order: the row's maximum, each group's factor */
  M = CLATTN_MASKED;
  bool isnan_row = false;
  for (int yy = 0; yy < MY; yy++) {
    M = fmax(M, gm[yy]);
    isnan_row = isnan_row || gnan[yy] != 0;
  }
  W = 0.0f;
  for (int yy = 0; yy < MY; yy++)
    W = mad(gw[yy], exp2(gm[yy] - M), W);
  const float M0 = M; /* the groups' reference (the sink may raise M below) */
#if SINKS
  /* the sink: one more term of the denominator (log2 units); a row without
   * a visible key puts all its mass there (zeros, LSE = sink) */
  float a = 1.0f;
  if (!isnan_row) {
    const float z = sinks[h] * CLATTN_LOG2E, M2 = fmax(M, z);
    a = exp2(M - M2);
    W = W * a + exp2(z - M2);
    M = M2;
  }
#endif
  const bool any = W > 0.0f;
  const float qnan = as_float(0x7fc00000u);
  for (int dd = lid; dd < D; dd += MW) {
    float xs = 0.0f;
    for (int yy = 0; yy < MY; yy++)
      xs = mad(part[yy * D + dd], exp2(gm[yy] - M0), xs);
#if SINKS
    xs *= a;
#endif
    STORE(o, (long)b * osb + (long)(q0 + i) * oss + (long)h * osh + (long)dd * osd,
          isnan_row ? qnan
          : any     ? xs / W
                    : 0.0f);
  }
  if (write_lse && lid == 0) store_merged_lse(lse, b, h, i, q0, H, Nq_max, isnan_row, M, W);
}

#if FUSE
/* The fused merge (decode_tc's last work-group of a unit): the unit's rows
 * r0 .. rend-1 (row r: query head hk·G + r % G, query i = r / G) merged at
 * once by the WG work-items, no local memory, no barrier. A row's D dims
 * are FCH float4 chunks; the (row, chunk) pairs are dealt out over the
 * work-items, FNP a work-item, FPP of them at a time (a pass). Every
 * work-item walks all splits of a pass's pairs (deterministic order) with
 * FMU splits × FPP pairs of loads in flight (FLD float4 loads: the rows'
 * rounds of L2 round trips overlap, where merge_row went row after row;
 * one pass where the unit has at most 4 rows of D = 128 a warp, batch-1
 * decode of GQA 4:1), keeping each pair's running
 * (maximum, weight, sums) as merge_row's groups do; the row's LSEs are
 * read by all its work-items (one transaction a warp), so no state needs
 * to meet another work-item's. */
#define FCH (D / 4)
#define FNP ((QR * FCH + WG - 1) / WG) /* pairs a work-item */
#define FPP (FNP < 4 ? FNP : 4)          /* pairs a pass (registers: 4 states) */
#ifndef FLD
#define FLD 32 /* float4 loads a work-item has in flight */
#endif
#define FMU (FPP * 8 <= FLD ? 8 : FPP >= FLD ? 1 : FLD / FPP)
void merge_unit(__global const float *restrict ws_o, __global const float *restrict ws_lse,
                __global stype *restrict o, __global float *restrict lse, const int write_lse,
                const int b, const int hk, const int G, const int r0, const int rend, const int q0,
                const long osb, const long osh, const long oss, const long osd, const int H,
                const int Nq_max, const int splits, const int lid DECODE_SINK_ARGS) {
  const float qnan = as_float(0x7fc00000u);
  for (int j0 = 0; j0 < FNP; j0 += FPP) {
    float M[FPP], W[FPP];
    float4 acc[FPP];
    int nan[FPP];
    long base[FPP];
#pragma unroll
    for (int j = 0; j < FPP; j++) {
      const int pr = lid + (j0 + j) * WG, r = r0 + pr / FCH;
      /* -1: no pair (past the work-item's pairs or the unit's rows) */
      base[j] = j0 + j < FNP && pr < QR * FCH && r < rend
                    ? ((long)(b * H + hk * G + r % G) * Nq_max + r / G) * splits
                    : -1;
      M[j] = CLATTN_MASKED;
      W[j] = 0.0f;
      acc[j] = (float4)(0.0f);
      nan[j] = 0;
    }
    const int c4 = 4 * (lid % FCH); /* the chunk's first dim (WG is a multiple of FCH) */
    for (int sp0 = 0; sp0 < splits; sp0 += FMU) {
      float ls[FPP][FMU];
      float4 v[FPP][FMU];
#pragma unroll
      for (int j = 0; j < FPP; j++)
#pragma unroll
        for (int u = 0; u < FMU; u++) {
          /* a pair or split that does not exist takes no part; each load
           * under its own condition (loading every one unconditionally
           * measured 1.28-1.39x slower on an H100, bench/RESULTS.md §33) */
          const bool in = base[j] >= 0 && sp0 + u < splits;
          const long e = in ? base[j] + sp0 + u : 0;
          ls[j][u] = in ? MLD(ws_lse + e) : CLATTN_MASKED;
          v[j][u] = in ? MLD4(ws_o + e * D + c4) : (float4)(0.0f);
        }
#pragma unroll
      for (int j = 0; j < FPP; j++) {
        float mc = M[j];
#pragma unroll
        for (int u = 0; u < FMU; u++) {
          nan[j] |= (as_uint(ls[j][u]) & 0x7fffffffu) > 0x7f800000u;
          mc = ls[j][u] > CLATTN_MASKED ? fmax(mc, ls[j][u]) : mc;
        }
        const float a = exp2(M[j] - mc); /* 1 while both are CLATTN_MASKED */
        W[j] *= a;
        acc[j] *= a;
#pragma unroll
        for (int u = 0; u < FMU; u++) {
          const float w = ls[j][u] > CLATTN_MASKED ? exp2(ls[j][u] - mc) : 0.0f;
          W[j] += w;
          const float4 x = v[j][u]; /* (scalar mads: PTX checks stub scalar built-ins only) */
          acc[j] = (float4)(mad(w, x.x, acc[j].x), mad(w, x.y, acc[j].y),
                            mad(w, x.z, acc[j].z), mad(w, x.w, acc[j].w));
        }
        M[j] = mc;
      }
    }
#pragma unroll
    for (int j = 0; j < FPP; j++) {
      if (base[j] < 0) continue;
      const int r = r0 + (lid + (j0 + j) * WG) / FCH, h = hk * G + r % G, i = r / G;
      float Mj = M[j], Wj = W[j];
      float4 xs = acc[j];
#if SINKS
      if (!nan[j]) { /* the sink: one more term of the denominator (log2 units) */
        const float z = sinks[h] * CLATTN_LOG2E, M2 = fmax(Mj, z), a = exp2(Mj - M2);
        Wj = Wj * a + exp2(z - M2);
        xs *= a;
        Mj = M2;
      }
#endif
      const bool any = Wj > 0.0f;
      const float4 y = nan[j] ? (float4)(qnan) : any ? xs / Wj : (float4)(0.0f);
      const long ob = (long)b * osb + (long)(q0 + i) * oss + (long)h * osh + (long)c4 * osd;
      STORE(o, ob, y.x);
      STORE(o, ob + osd, y.y);
      STORE(o, ob + 2 * osd, y.z);
      STORE(o, ob + 3 * osd, y.w);
      if (write_lse && c4 == 0) store_merged_lse(lse, b, h, i, q0, H, Nq_max, nan[j], Mj, Wj);
    }
  }
}
#endif

__kernel __attribute__((reqd_work_group_size(MW, 1, 1))) void
decode_merge(__global const float *restrict ws_o, __global const float *restrict ws_lse,
             __global stype *restrict o, __global float *restrict lse, const int write_lse,
             DECODE_TABLE_ARGS, const long osb, const long osh, const long oss, const long osd,
             const int H, const int Nq_max, const int Nk_max, const int splits, const int total_q,
             const int total_kv DECODE_SINK_ARGS) {
  __local float gm[MY], gw[MY], part[MY * D];
  __local int gnan[MY];
  const int row = get_group_id(1);
  const int b = row / (H * Nq_max), h = (row / Nq_max) % H, i = row % Nq_max;
  int q0, nq, k0, nk;
  seq_geometry(b, cu_q, cu_kv, seqlens, use_seqlens, Nq_max, Nk_max, total_q, total_kv, &q0, &nq,
               &k0, &nk);
  if (i >= nq) return; /* the whole work-group: no barrier is skipped by a part of it */
  merge_row(ws_o, ws_lse, o, lse, write_lse, b, h, i, q0, osb, osh, oss, osd, H, Nq_max, splits,
            get_local_id(0), gm, gw, part, gnan DECODE_SINK_PASS);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
decode_split(__global const stype *restrict q, __global const kvtype *restrict k,
             __global const kvtype *restrict v, __global float *restrict ws_o,
             __global float *restrict ws_lse, DECODE_TABLE_ARGS, const long qsb, const long qsh,
             const long qss, const long qsd, const long ksb, const long ksh, const long kss,
             const long ksd, const long vsb, const long vsh, const long vss, const long vsd,
             const int H, const int G, const int Hk, const int Nq_max, const int Nk_max,
             const int nrb, const int splits, const int total_q, const int total_kv, const int ps,
             const int num_pages, const int maxp, const float qscale,
             __global const float *restrict ksc, __global const float *restrict vsc,
             const long ssr DECODE_USER_ARG FLASH_BIAS_ARGS DECODE_FUSE_ARGS) {
#if WG > 1 && !WARP && !TC
  __local float lq[QR][D];
  __local float lk[KT][D + 1];
  __local float lv[KT][D];
  __local float lp[QR][KT];
  __local float lm[QR], ll[QR], la[QR];
  __local float lks[KT], lvs[KT]; /* the tile's token scales (1 without) */
  __local int lok[KT];
#endif

  const int lid = get_local_id(0);
  /* The KV heads of a sequence are neighbouring work-groups (dimension 1):
   * heads interleaved in memory ([token][kv_head][d] rows) are then read
   * at about the same time, sharing cache lines and prefetch streams. */
  const int rb = get_group_id(2) / splits, sp = get_group_id(2) % splits;
#if ALLH
  /* ALLH (the CPU form): one work-item reads every KV head of its keys */
  const int b = get_group_id(1), hk = 0;
#else
  const int b = get_group_id(1) / Hk, hk = get_group_id(1) % Hk;
#endif
  int q0, nq, k0, nk;
  seq_geometry(b, cu_q, cu_kv, seqlens, use_seqlens, Nq_max, Nk_max, total_q, total_kv, &q0, &nq,
               &k0, &nk);
  const int rows = nq * G, r0 = rb * QR;
  /* A work-group past its sequence's rows (an empty sequence) visits no
   * tile and writes nothing: it costs its launch only. (No early return:
   * the barriers below stay uniform for PoCL.) */
  const bool wg_live = r0 < rows;
  const int off = CAUSAL == 2 ? 0 : nk - nq;

  /* Keys of this split: whole tiles, the last split takes the rest. */
  const int ntiles_all = (nk + KT - 1) / KT;
  const int tps = (ntiles_all + splits - 1) / splits;
  const int kb = min(sp * tps * KT, nk);
  int ke = min(kb + tps * KT, nk);
#if CAUSAL
  const int ilast = (max(min(r0 + QR, rows) - 1, 0)) / G;
  ke = clamp(ilast + off + 1, kb, ke);
#endif
  const int ntiles = wg_live ? (ke - kb + KT - 1) / KT : 0;

#if TC
  /* NVIDIA sm_80+ (the decode_tc variant, -DTC=1, nv_mma.cl): one warp a
   * work-group. Its QR packed rows (at most 16) are the M = 16 rows of
   * mma.sync m16n8k16 (rows past QR are zero), Q stays in registers as A
   * fragments, and the split's keys stream through a ring of NS stages of
   * BN keys (K and V rows, cp.async where every row offset is a multiple of
   * 16 bytes): S = Q·Kᵀ, the online softmax on the accumulator fragments,
   * O += P·V. Per key a warp issues about one MMA and a few loads where
   * decode_warp runs about 90 instructions per key and KV head
   * (bench/RESULTS.md §14): the KV stream, not the arithmetic, is the
   * limit. Paged pools whose page size is a multiple of BN are walked page
   * by page: the block-table entries 32 at a time, one a lane, a tile's
   * from a shuffle. Keys that
   * do not exist (past ke, behind a bad page id) are zero-filled and masked
   * by a per-stage flag.
   * 16-bit K/V: fragments through ldmatrix (.trans for V) from rows padded
   * by 8 elements. 8-bit K/V (KVQ 1 int8, 2 e4m3, 3 e5m2): rows of D + 16
   * codes; a lane reads 4 codes with one 32-bit load and turns them into
   * two 16-bit pairs exactly (nv_mma.cl: int8 by magic numbers, fp8 by
   * moving its bits and one multiply by a power of two). The reduction
   * order is free, so the fragments take the codes as they lie: S's k step
   * kc pairs dims 16kc + 4t + 0/1 and 2/3 (Q is loaded in that order), and
   * the V fragments of n-tiles 4q .. 4q + 3 come from the same four codes
   * of two key rows (one byte permute), so output column c of n-tile
   * 4q + i is dim 32q + 4c + i. Token scales come with the tile (4-byte
   * cp.async) and multiply scores (K) and probabilities (V); tensor and
   * head scales multiply the scores and the partial output. */
#if KVQ
#define TRB (D + 16) /* local row stride, bytes */
#define TCH (D / 16) /* 16-byte chunks per row */
#else
#define TRB (2 * (D + 8)) /* local row stride, bytes: conflict-free ldmatrix */
#define TCH (D / 8)
#endif
#define TKC (D / 16)        /* k-steps of S */
#define TNO (D / 8)         /* n-tiles of O */
#define TNS (BN / 8)        /* n-tiles of S */
#define TKP (BN / 16)       /* k-steps of P·V */
#define TKS (32 / TCH)      /* keys a warp's chunk loads cover at once */
#define TLK (BN * TCH / 32) /* chunks a lane loads per K (or V) tile */
#ifndef TW
#define TW 1 /* warps a work-group: each its own ring, tiles TW apart, merged at the end */
#endif
#if D % 16 || 32 % TCH || BN % 16 || BN * TCH < 32 || NS < 2 || NS > 4 || WG != 32 * TW ||     \
    QR > 16 || (KVQ && (KVS == 3 || D % 32)) || (TW != 1 && TW != 2 && TW != 4)
#error "decode_tc: D in 16, 32, 64, 128 (8-bit: 32, 64, 128, token/tensor/head scales); BN a multiple of 16; NS in 2..4; WG 32 TW, TW 1, 2 or 4; QR <= 16"
#endif
/* the softmax's scale: qscale on raw scores, 1 where the modifiers made
 * them log2 units */
#if DECODE_MODS
#define TC_QS 1.0f
#else
#define TC_QS qscale
#endif
#if NS == 2
#define TC_WAIT() CP_WAIT(0)
#elif NS == 3
#define TC_WAIT() CP_WAIT(1)
#else
#define TC_WAIT() CP_WAIT(2)
#endif
#define TPW (PAGED && PAGE % BN == 0) /* a tile lies in one page */
#define TC_RING (NS * 2 * BN * TRB) /* bytes of a warp's ring */
#define TC_XCH ((TW - 1) * 32 * (4 * TNO + 4) * 4) /* the warps' merge: o, m, l of warps 1.. */
  __local uint4 ring_raw[(TW * TC_RING > TC_XCH ? TW * TC_RING : TC_XCH) / 16];
#if FUSE /* the last work-group of its unit (it merges the unit's rows) */
  __local int flast;
#endif
  /* the lane (ln) and warp (wp): warp wp reads tiles wp, wp + TW, ... of
   * the split through its own ring */
  const int ln = lid & 31, wp = lid >> 5;
  __local int okey_all[TW][NS][BN];
  __local int(*okey)[BN] = okey_all[wp];
#if KVQ && KVS == 0
  __local float lks_all[TW][NS][BN], lvs_all[TW][NS][BN]; /* the tile's token scales */
  __local float(*lks)[BN] = lks_all[wp];
  __local float(*lvs)[BN] = lvs_all[wp];
#define TKSC(st, kl) lks[st][kl]
#define TVSC(st, kl) lvs[st][kl]
#elif KVQ
  const float kscale_c = KCH(0); /* a tensor's or head's K scale */
#define TKSC(st, kl) kscale_c
#endif
  __local uchar *ring = (__local uchar *)ring_raw + wp * TC_RING;
#if CLATTN_NV_EMU /* nv_mma.cl's emulation of the warp-level PTX (tests on CPUs) */
#define NV_EMU_LANES WG
  NV_EMU_SCRATCH;
#define NV_EMU_BASE ((__local uchar *)ring_raw)
#endif
  const int g = ln >> 2, t4 = ln & 3;
  /* the lane's two rows (g, g + 8): live, query index */
  bool rok[2];
  int ri[2];
  uint qf[TKC][4];
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    const int r = r0 + g + 8 * rr;
    rok[rr] = wg_live && g + 8 * rr < QR && r < rows;
    ri[rr] = rok[rr] ? r / G : 0;
  }
#if DECODE_MODS /* the rows' ALiBi slopes, once (not an exp2 a score) */
  float rslope[2];
#pragma unroll
  for (int rr = 0; rr < 2; rr++)
    rslope[rr] = DECODE_SLOPE(hk * G + (r0 + g + 8 * rr) % G);
#endif
#pragma unroll
  for (int e = 0; e < 4; e++) {
    const int rr = e & 1, r = r0 + g + 8 * rr;
    const long qa = rok[rr] ? (long)b * qsb + (long)(q0 + r / G) * qss + (long)(hk * G + r % G) * qsh
                            : 0;
#pragma unroll
    for (int kc = 0; kc < TKC; kc++) {
#if KVQ /* the dims of the codes a lane reads: 16kc + 4t + 0/1 (e < 2), + 2/3 */
      const int col = 16 * kc + 4 * t4 + (e >> 1) * 2;
#else
      const int col = 16 * kc + 2 * t4 + (e >> 1) * 8;
#endif
      qf[kc][e] = rok[rr] ? (uint)q[qa + (long)col * qsd] | ((uint)q[qa + (long)(col + 1) * qsd] << 16)
                          : 0u;
    }
  }
  float o[TNO][4], m[2], l[2];
#pragma unroll
  for (int j = 0; j < TNO; j++)
    o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  m[0] = m[1] = -INFINITY;
  l[0] = l[1] = 0.0f;

  const int ntl = wg_live ? (ke - kb + BN - 1) / BN : 0;
  /* steps of the work-group: step i, warp wp's tile i·TW + wp; a tile
   * past ntl (a warp's last step, TW > 1) has no keys: its loads are
   * zero-fills, its keys are masked (every warp runs every step: uniform
   * barriers, also for the emulation's) */
  const int nst = (ntl + TW - 1) / TW;
#define TC_TILE(i) ((i)*TW + wp)
  const int cch = ln % TCH, ckey = ln / TCH; /* the lane's chunk and first key of a tile */
  /* TC_ISSUE(it, pgv): the loads of step it (warp wp's tile TC_TILE(it),
   * keys kb + TC_TILE(it)·BN ...) into stage it % NS; pgv: the tile's
   * block-table entry (TPW). */
#if TPW
#define TC_SLOT(j, kl, pgv, kr, kj)                                                                \
  ((kr) = (long)((pgv) >= 0 && (pgv) < num_pages ? (pgv) : 0),                                     \
   (kj) = (long)((j) - (j) / PAGE * PAGE), (j) < ke && (pgv) >= 0 && (pgv) < num_pages)
  /* The split's block-table entries 32 pages at a time: lane L holds entry
   * L of window pw_w (its pages pg0 + 32·pw_w ...), and the next window is
   * loaded when this one comes into use, so that a tile's page id is a
   * shuffle, not a load one tile ahead of its use (H100, bench/RESULTS.md
   * §17 run E: 1-2 points of the 4-6 % that paged caches lose at two
   * work-groups a compute unit). */
  const int pg0 = kb / PAGE, npg = ntl > 0 ? (ke - 1) / PAGE - pg0 + 1 : 0;
#define TC_PW(w) ((w)*32 + ln < npg ? btab[(long)b * maxp + pg0 + (w)*32 + ln] : 0)
  int pw_w = 0, pw_cur = TC_PW(0), pw_nxt = TC_PW(1);
  /* dst = the block-table entry of tile tl (0 past the split); tl ascends
   * by TW a call (TW·BN <= 32 pages), so the window moves by at most one */
#define TC_PAGE_NEXT(tl, dst)                                                                      \
  do {                                                                                             \
    const int li_ = (kb + (tl)*BN) / PAGE - pg0;                                                   \
    if ((li_ >> 5) != pw_w) {                                                                      \
      pw_w++;                                                                                      \
      pw_cur = pw_nxt;                                                                             \
      pw_nxt = TC_PW(pw_w + 1);                                                                    \
    }                                                                                              \
    (dst) = shfl_idx(pw_cur, li_ & 31);                                                            \
    if (kb + (tl)*BN >= ke) (dst) = 0;                                                             \
  } while (0)
#else
#define TC_SLOT(j, kl, pgv, kr, kj) key_slot((j), ke, b, k0, btab, maxp, num_pages, &(kr), &(kj))
#define TC_PAGE_NEXT(tl, dst) ((dst) = 0)
#endif
#if ALIGN16
#define TC_CHUNK(dst, src, ro, sd, ok)                                                             \
  CP_ASYNC16(smem_addr(dst), (ok) ? (src) + (ro) + cch * (16 / sizeof(kvtype)) : (src), (ok))
#define TC_SCALE(dst, src, ok) CP_ASYNC4(smem_addr(dst), (ok) ? (src) : ksc, (ok))
#else /* element loads (strided head dims, unaligned rows), stored as they come */
#if KVQ
#define TC_CHUNK(dst, src, ro, sd, ok)                                                             \
  (*(__local uint4 *)(dst) = (ok) ? load_chunk8x16((src), (ro), cch, (sd)) : (uint4)(0u))
#else
#define TC_CHUNK(dst, src, ro, sd, ok)                                                             \
  (*(__local uint4 *)(dst) = (ok) ? load_chunk16((src), (ro), cch, (sd)) : (uint4)(0u))
#endif
#define TC_SCALE(dst, src, ok) (*(dst) = (ok) ? *(src) : 0.0f)
#endif
#if KVQ && KVS == 0
#define TC_TOKEN_SCALES(st, kl, kr, kj, ok)                                                        \
  if (cch == 0) {                                                                                  \
    TC_SCALE(&lks[st][kl], ksc + (kr)*ssr + (kj)*Hk + hk, ok);                                     \
    TC_SCALE(&lvs[st][kl], vsc + (kr)*ssr + (kj)*Hk + hk, ok);                                     \
  }
#else
#define TC_TOKEN_SCALES(st, kl, kr, kj, ok)
#endif
#define TC_ISSUE(it, pgv)                                                                          \
  do {                                                                                             \
    __local uchar *ks_ = ring + ((it) % NS) * (2 * BN * TRB);                                      \
    _Pragma("unroll") for (int i_ = 0; i_ < TLK; i_++) {                                           \
      const int kl_ = ckey + i_ * TKS, j_ = kb + TC_TILE(it) * BN + kl_;                          \
      long kr_, kj_;                                                                               \
      const bool ok_ = TC_SLOT(j_, kl_, pgv, kr_, kj_);                                            \
      TC_CHUNK(ks_ + kl_ * TRB + cch * 16, k, kr_ * ksb + kj_ * kss + (long)hk * ksh, ksd, ok_);    \
      TC_CHUNK(ks_ + (BN + kl_) * TRB + cch * 16, v, kr_ * vsb + kj_ * vss + (long)hk * vsh, vsd,   \
               ok_);                                                                               \
      TC_TOKEN_SCALES((it) % NS, kl_, kr_, kj_, ok_)                                               \
      if (cch == 0) okey[(it) % NS][kl_] = ok_;                                                    \
    }                                                                                              \
  } while (0)
  int pgn;
  TC_PAGE_NEXT(TC_TILE(0), pgn);
#pragma unroll
  for (int s0 = 0; s0 < NS - 1; s0++) {
    if (s0 < nst) TC_ISSUE(s0, pgn);
    CP_COMMIT();
    TC_PAGE_NEXT(TC_TILE(s0 + 1), pgn);
  }
#if !KVQ
  /* ldmatrix lane addresses (flash_tc.cl): K: keys +8 for matrices 2, 3,
   * dims +8 for 1, 3; V (.trans): keys +8 for 1, 3, dims +8 for 2, 3. */
  const uint kbase0 = smem_addr(ring + ((ln >> 4) * 8 + (ln & 7)) * TRB + ((ln >> 3) & 1) * 16);
  const uint vbase0 = smem_addr(ring + (BN + ((ln >> 3) & 1) * 8 + (ln & 7)) * TRB + (ln >> 4) * 16);
#endif
  for (int tl = 0; tl < nst; tl++) {
    TC_WAIT(); /* this lane's copies of step tl have landed */
    barrier(CLK_LOCAL_MEM_FENCE); /* everyone's; stage (tl - 1) % NS is free */
    if (tl + NS - 1 < nst) TC_ISSUE(tl + NS - 1, pgn);
    CP_COMMIT();
    TC_PAGE_NEXT(TC_TILE(tl + NS), pgn);
    const int st = tl % NS, j0 = kb + TC_TILE(tl) * BN;
    float s[TNS][4];
#pragma unroll
    for (int j = 0; j < TNS; j++)
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#if KVQ
    __local const uchar *kt = ring + st * (2 * BN * TRB), *vt = kt + BN * TRB;
NV_UNROLL
    for (int kc = 0; kc < TKC; kc++)
NV_UNROLL
      for (int j = 0; j < TNS; j++) {
        uint b0, b1;
        KV8X4_TO_X2(*(__local const uint *)(kt + (8 * j + g) * TRB + 16 * kc + 4 * t4), &b0, &b1);
        MMA(s[j], qf[kc][0], qf[kc][1], qf[kc][2], qf[kc][3], b0, b1);
      }
#else
    const uint sb = (uint)(st * 2 * BN * TRB);
NV_UNROLL
    for (int kc = 0; kc < TKC; kc++)
NV_UNROLL
      for (int j = 0; j < TNS; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4(b0, b1, b2, b3, kbase0 + sb + (uint)(j * 8 * TRB + 32 * kc));
        MMA(s[j], qf[kc][0], qf[kc][1], qf[kc][2], qf[kc][3], b0, b1);
        MMA(s[j + 1], qf[kc][0], qf[kc][1], qf[kc][2], qf[kc][3], b2, b3);
      }
#endif
    /* keys that do not exist (or, causal, come after the row's position);
     * int8: the keys' K scales */
#pragma unroll
    for (int j = 0; j < TNS; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int kl = 8 * j + 2 * t4 + (e & 1);
        bool dead = !okey[st][kl];
#if CAUSAL
        dead = dead || j0 + kl > ri[e >> 1] + off;
#endif
#if KVQ
        s[j][e] *= TKSC(st, kl);
#endif
#if DECODE_MODS
        { /* the modifiers on log2-unit scores (the softmax below then takes a unit scale) */
          const int r = r0 + g + 8 * (e >> 1), hq = hk * G + r % G;
          bool vis = !dead && rok[e >> 1];
          s[j][e] = decode_mods(s[j][e] * qscale, rslope[e >> 1], b, hq, ri[e >> 1],
                                ri[e >> 1] + off, j0 + kl, user, &vis DECODE_BIAS_PASS);
          dead = !vis;
        }
#endif
        if (dead) s[j][e] = -INFINITY;
      }
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
      SOFTMAX_STEP(s, TNS, o, TNO, rr, m[rr], l[rr], TC_QS);
#if KVQ && KVS == 0
    /* V's token scales into P (f16 P: times TC_VP2, about 1 / the code's
     * largest value, so that P·scale stays above the f16 subnormals, where
     * e5m2's scales of absmax / 57344 would lose bits; undone at the end) */
#pragma unroll
    for (int j = 0; j < TNS; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        s[j][e] *= TVSC(st, 8 * j + 2 * t4 + (e & 1)) * TC_VP2;
#endif
NV_UNROLL
    for (int kc = 0; kc < TKP; kc++) {
      const uint a0 = pack2(s[2 * kc][0], s[2 * kc][1]), a1 = pack2(s[2 * kc][2], s[2 * kc][3]);
      const uint a2 = pack2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      const uint a3 = pack2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#if KVQ
NV_UNROLL
      for (int qg = 0; qg < TNO / 4; qg++) {
        /* codes of dims 32qg + 4g .. + 3 of keys 16kc + 2t (+1, +8, +9) */
        __local const uchar *vr = vt + (16 * kc + 2 * t4) * TRB + 32 * qg + 4 * g;
        const uint wa = *(__local const uint *)vr, wb = *(__local const uint *)(vr + TRB);
        const uint wc = *(__local const uint *)(vr + 8 * TRB);
        const uint wd = *(__local const uint *)(vr + 9 * TRB);
        uint b0[4], b1[4];
        KV8X4_TO_X2(prmt(wa, wb, 0x5140u), &b0[0], &b0[1]);
        KV8X4_TO_X2(prmt(wa, wb, 0x7362u), &b0[2], &b0[3]);
        KV8X4_TO_X2(prmt(wc, wd, 0x5140u), &b1[0], &b1[1]);
        KV8X4_TO_X2(prmt(wc, wd, 0x7362u), &b1[2], &b1[3]);
#pragma unroll
        for (int i = 0; i < 4; i++)
          MMA(o[4 * qg + i], a0, a1, a2, a3, b0[i], b1[i]);
      }
#else
NV_UNROLL
      for (int j = 0; j < TNO; j += 2) {
        uint b0, b1, b2, b3;
        LDM_X4_T(b0, b1, b2, b3, vbase0 + sb + (uint)(16 * kc * TRB + j * 16));
        MMA(o[j], a0, a1, a2, a3, b0, b1);
        MMA(o[j + 1], a0, a1, a2, a3, b2, b3);
      }
#endif
    }
  }
  CP_WAIT(0);
#if TW > 1
  /* The warps' states meet in warp 0 (same fragment layout in every warp:
   * lane ln of warp w adds its own values), weighted by 2^((m_w - M)·QS);
   * a warp without a visible key (m = -inf) weighs 0, a NaN stays NaN. */
  barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with its ring */
  __local float *xch = (__local float *)ring_raw;
#define TC_X(w, i) xch[(((w)-1) * (4 * TNO + 4) + (i)) * 32 + ln]
  if (wp > 0) {
#pragma unroll
    for (int j = 0; j < TNO; j++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        TC_X(wp, 4 * j + e) = o[j][e];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      TC_X(wp, 4 * TNO + rr) = m[rr];
      TC_X(wp, 4 * TNO + 2 + rr) = l[rr];
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (wp == 0) {
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
      float M = m[rr];
      for (int w = 1; w < TW; w++)
        M = fmax(M, TC_X(w, 4 * TNO + rr));
      const float f0 = m[rr] == -INFINITY ? 0.0f : exp2((m[rr] - M) * TC_QS);
      l[rr] *= f0;
#pragma unroll
      for (int j = 0; j < TNO; j++) {
        o[j][2 * rr] *= f0;
        o[j][2 * rr + 1] *= f0;
      }
      for (int w = 1; w < TW; w++) {
        const float mw = TC_X(w, 4 * TNO + rr);
        const float f = mw == -INFINITY ? 0.0f : exp2((mw - M) * TC_QS);
        l[rr] = mad(f, TC_X(w, 4 * TNO + 2 + rr), l[rr]);
#pragma unroll
        for (int j = 0; j < TNO; j++) {
          o[j][2 * rr] = mad(f, TC_X(w, 4 * j + 2 * rr), o[j][2 * rr]);
          o[j][2 * rr + 1] = mad(f, TC_X(w, 4 * j + 2 * rr + 1), o[j][2 * rr + 1]);
        }
      }
      m[rr] = M;
    }
  }
#undef TC_X
#endif
  /* the normalised partial rows and their log2-sum-exps (warp 0) */
#pragma unroll
  for (int rr = 0; rr < 2; rr++) {
    float lt = l[rr];
    lt += shfl_xor(lt, 1);
    lt += shfl_xor(lt, 2);
    if (rok[rr] && wp == 0) {
      const long slot = partial_slot(r0 + g + 8 * rr, b, hk, G, H, Nq_max, splits, sp);
      const bool empty = as_uint(lt) == 0u;
      const float inv = empty ? 0.0f : 1.0f / lt * VCH(0) * (1.0f / TC_VP2);
#if KVQ /* column c of n-tile 4q + i is dim 32q + 4c + i */
#pragma unroll
      for (int qg = 0; qg < TNO / 4; qg++)
#pragma unroll
        for (int e = 0; e < 2; e++)
          vstore4((float4)(o[4 * qg][2 * rr + e], o[4 * qg + 1][2 * rr + e],
                           o[4 * qg + 2][2 * rr + e], o[4 * qg + 3][2 * rr + e]) *
                      inv,
                  0, ws_o + slot * D + 32 * qg + 8 * t4 + 4 * e);
#else
#pragma unroll
      for (int j = 0; j < TNO; j++)
        vstore2((float2)(o[j][2 * rr], o[j][2 * rr + 1]) * inv, 0,
                ws_o + slot * D + 8 * j + 2 * t4);
#endif
      if (t4 == 0) ws_lse[slot] = empty ? CLATTN_MASKED : m[rr] * TC_QS + log2(lt);
    }
  }
#if FUSE
  /* The unit (b, hk, row block rb) is done when all its `splits` work-groups
   * have written their partial rows: each counts itself in after a fence,
   * and the last one merges the unit's rows (the counter back to 0 for the
   * next execution). A work-group without rows counts too. */
  FUSE_FENCE();
  barrier(CLK_GLOBAL_MEM_FENCE | CLK_LOCAL_MEM_FENCE);
  __global int *cnt = ws_cnt + (long)get_group_id(1) * nrb + rb;
  if (lid == 0) flast = atomic_inc(cnt) == splits - 1;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (flast) {
    FUSE_FENCE();
    merge_unit(ws_o, ws_lse, out, out_lse, write_lse, b, hk, G, r0, min(r0 + QR, rows), q0, osb,
               osh, oss, osd, H, Nq_max, splits, lid DECODE_SINK_PASS);
    if (lid == 0) *cnt = 0;
  }
#endif
#elif WARP
  /* NVIDIA (the decode_warp variant): each key is read by LPK = D/8 lanes,
   * 8 elements a lane (16-byte loads of 16-bit storage), so a warp walks
   * 32/LPK keys at once and the work-group NSW = WG/LPK key streams. Every
   * stream keeps its own running max, sum and output rows (QR of them, in
   * registers) over the keys kb + s, kb + s + NSW, ...; a key's score is
   * summed over its lanes with butterfly shuffles (inline PTX on NVIDIA, an
 * exchange through local memory elsewhere: CPUs test this kernel, no
 * device picks it there); UNROLL keys per stream
   * are loaded before any is used (loads in flight) and share one rescale.
   * The streams are merged once, in local memory, at the end: no barrier in
   * the loop over the keys. */
#define LPK (D / 8)
#define NSW (WG / LPK)
#ifndef UNROLL
#define UNROLL 4
#endif
/* lane's 8 elements through the scalar loader LD (strided head dims) */
#define LANE8_WITH(LD, p, off, lane, sd)                                                           \
  ((float8)(LD(p, (off) + (long)((lane)*8 + 0) * (sd)), LD(p, (off) + (long)((lane)*8 + 1) * (sd)), \
            LD(p, (off) + (long)((lane)*8 + 2) * (sd)), LD(p, (off) + (long)((lane)*8 + 3) * (sd)), \
            LD(p, (off) + (long)((lane)*8 + 4) * (sd)), LD(p, (off) + (long)((lane)*8 + 5) * (sd)), \
            LD(p, (off) + (long)((lane)*8 + 6) * (sd)), LD(p, (off) + (long)((lane)*8 + 7) * (sd))))
#if VEC8
#define LANE8(p, off, lane, sd) LOAD8(p, off, lane)
#else
#define LANE8(p, off, lane, sd) LANE8_WITH(LOAD, p, off, lane, sd)
#endif
  __local float lsm[NSW][QR], lsl[NSW][QR], lsa[NSW][QR][D];
  __local float lxch[WG]; /* the exchange of SHFL_XOR off NVIDIA */
  const int lane = lid % LPK, sw = lid / LPK;
  float8 qv[QR], acc[QR];
  float m[QR], l[QR];
#pragma unroll
  for (int rr = 0; rr < QR; rr++) {
    const int r = r0 + rr;
    const int i = r / G, h = hk * G + r % G;
    const long qa = (long)b * qsb + (long)(q0 + i) * qss + (long)h * qsh;
    qv[rr] = r < rows ? LANE8(q, qa, lane, qsd) * qscale * KCH8(lane * 8) : (float8)(0.0f);
    acc[rr] = (float8)(0.0f);
    m[rr] = CLATTN_MASKED;
    l[rr] = 0.0f;
  }
  /* Key lanes in flight are kept as stored (uint4: 8 16-bit elements) where
   * whole 16-byte loads apply and converted at their use; the next step's
   * UNROLL keys are fetched before this step's are used (one step of
   * software pipelining). Addresses come from key_slot(), which points
   * inside the buffers even for a key that does not exist, so every load is
   * unconditional; such keys are dropped by select afterwards. */
#if VEC8 && ALIGN16 && KVQ
  typedef uint2 kvraw;
#define KVRAW(p, off, lane, sd) (*(__global const uint2 *)((p) + (off) + (lane)*8))
#define KVCVT(x) kvq8(AS_KV8(x))
#elif VEC8 && ALIGN16 && CLATTN_DTYPE != 0
  typedef uint4 kvraw;
#define KVRAW(p, off, lane, sd) (*(__global const uint4 *)((p) + (off) + (lane)*8))
#define KVCVT(x) kv16x8(x)
#else
  typedef float8 kvraw;
#if VEC8
#define KVRAW(p, off, lane, sd) KV8(p, off, lane)
#else
#define KVRAW(p, off, lane, sd) LANE8_WITH(KVLOAD, p, off, lane, sd)
#endif
#define KVCVT(x) (x)
#endif
  kvraw kn[UNROLL], vn[UNROLL];
  bool okn[UNROLL];
  float ksn[UNROLL], vsn[UNROLL]; /* the keys' token scales (1 without) */
#if PAGED
  /* Paged: the block-table entries of a step's keys are read one step
   * before its K/V rows (PAGE_FETCH(t + 1) while step t computes), so the
   * rows' loads never wait for a page id; key_slot_pg checks them as
   * key_slot does. */
  int pgn[UNROLL];
#define PAGE_FETCH(t_)                                                                             \
  _Pragma("unroll") for (int u = 0; u < UNROLL; u++) {                                             \
    const int j_ = kb + ((t_)*UNROLL + u) * NSW + sw;                                              \
    pgn[u] = j_ < ke ? btab[(long)b * maxp + j_ / PAGE] : 0;                                       \
  }
#define WARP_SLOT(t_, u, kr, kj)                                                                   \
  key_slot_pg(kb + ((t_)*UNROLL + (u)) * NSW + sw, ke, pgn[u], num_pages, &(kr), &(kj))
#else
#define PAGE_FETCH(t_) (void)0
#define WARP_SLOT(t_, u, kr, kj)                                                                   \
  key_slot(kb + ((t_)*UNROLL + (u)) * NSW + sw, ke, b, k0, btab, maxp, num_pages, &(kr), &(kj))
#endif
#define WARP_FETCH(t_)                                                                             \
  _Pragma("unroll") for (int u = 0; u < UNROLL; u++) {                                             \
    long kr, kj;                                                                                   \
    okn[u] = WARP_SLOT(t_, u, kr, kj);                                                             \
    kn[u] = KVRAW(k, kr * ksb + kj * kss + (long)hk * ksh, lane, ksd);                             \
    vn[u] = KVRAW(v, kr * vsb + kj * vss + (long)hk * vsh, lane, vsd);                             \
    ksn[u] = KTOK(kr, kj);                                                                         \
    vsn[u] = VTOK(kr, kj);                                                                         \
  }
  const int nsteps = wg_live ? (ke - kb + NSW * UNROLL - 1) / (NSW * UNROLL) : 0;
  if (nsteps > 0) {
    PAGE_FETCH(0);
    WARP_FETCH(0);
    PAGE_FETCH(1);
  }
  for (int t = 0; t < nsteps; t++) {
    kvraw kc[UNROLL], vc[UNROLL];
    bool okk[UNROLL];
    float ks[UNROLL], vs[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      kc[u] = kn[u];
      vc[u] = vn[u];
      okk[u] = okn[u];
      ks[u] = ksn[u];
      vs[u] = vsn[u];
    }
    if (t + 1 < nsteps) {
      WARP_FETCH(t + 1);
      PAGE_FETCH(t + 2);
    }
    float8 kx[UNROLL], vx[UNROLL];
    int jj[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      jj[u] = kb + (t * UNROLL + u) * NSW + sw;
      kx[u] = KVCVT(kc[u]);
      vx[u] = okk[u] ? KVCVT(vc[u]) : (float8)(0.0f);
    }
#pragma unroll
    for (int rr = 0; rr < QR; rr++) {
      const int i = (r0 + rr) / G;
      const bool live = r0 + rr < rows;
      float sv[UNROLL];
      float mx = m[rr];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
        const float8 pr = qv[rr] * kx[u];
        const float4 p4 = pr.lo + pr.hi;
        float sc = (p4.x + p4.y) + (p4.z + p4.w);
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1)
          sc += SHFL_XOR(sc, o);
        bool vis = okk[u] && live && DECODE_VISIBLE(jj[u], i + off);
        float s = sc * ks[u];
#if DECODE_MODS
        const int h = hk * G + (r0 + rr) % G;
        s = decode_mods(s, DECODE_SLOPE(h), b, h, i, i + off, jj[u], user, &vis DECODE_BIAS_PASS);
#endif
        sv[u] = vis ? s : CLATTN_MASKED;
        mx = fmax(mx, sv[u]);
      }
      /* one rescale for the UNROLL keys; masked keys get p = 0 */
      const float a = CLATTN_RESCALE(m[rr], mx);
      float8 o = acc[rr] * a;
      float ps = 0.0f;
#pragma unroll
      for (int u = 0; u < UNROLL; u++) {
        const float pu =
            as_int(sv[u]) == as_int(CLATTN_MASKED) ? 0.0f : exp2(sv[u] - mx);
        ps += pu;
        o = mad((float8)(pu * vs[u]), vx[u], o);
      }
      acc[rr] = o;
      l[rr] = l[rr] * a + ps;
      m[rr] = mx;
    }
  }
  /* merge the NSW streams: max, rescaled sums and outputs, in stream order */
#pragma unroll
  for (int rr = 0; rr < QR; rr++) {
    if (lane == 0) {
      lsm[sw][rr] = m[rr];
      lsl[sw][rr] = l[rr];
    }
    vstore8(acc[rr], lane, &lsa[sw][rr][0]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int e = lid; e < QR * D; e += WG) {
    const int rr = e / D, dd = e % D, r = r0 + rr;
    if (r >= rows) continue;
    float mm = CLATTN_MASKED;
    for (int x = 0; x < NSW; x++)
      mm = fmax(mm, lsm[x][rr]);
    float ll = 0.0f, oo = 0.0f;
    for (int x = 0; x < NSW; x++) {
      const float w = CLATTN_RESCALE(lsm[x][rr], mm);
      ll = mad(lsl[x][rr], w, ll);
      oo = mad(lsa[x][rr][dd], w, oo);
    }
    const long slot = partial_slot(r, b, hk, G, H, Nq_max, splits, sp);
    /* l is exactly 0 without a visible key (tested on the bits) */
    const bool empty = as_uint(ll) == 0u;
    ws_o[slot * D + dd] = empty ? 0.0f : oo / ll * VCH(dd);
    if (dd == 0) ws_lse[slot] = empty ? CLATTN_MASKED : mm + log2(ll);
  }
#elif WG == 1 && VEC8 && D % 16 == 0 && KT % 16 == 0
  /* CPUs, contiguous head dim, D % 16 == 0: one work-item per (row block,
   * split, b, hk), everything in 16-lane vectors (one AVX-512 register;
   * two AVX2 ones). Scores: each key row is loaded and converted once,
   * 16 elements at a time, and multiplied into the QR rows' partial sums;
   * the partial-sum vectors of 16 keys are then reduced together
   * (hsum16x16: 15 shuffle-adds for 16 keys, not 4 per key), so the
   * softmax works on vectors of 16 keys. P·V: 16 output columns of the QR
   * rows stay in registers while the tile's V rows stream past. A key's
   * row is read only when key_slot() says it exists. */
#define DV16 (D / 16)
  /* ALLH = Hk (-DALLH, allh=1): the work-item serves its row block of every
   * KV head of (b, split) and walks the keys token by token, each token's
   * K rows of all heads (then V rows) in memory order: a token's heads are
   * one contiguous run in [token][kv_head][dim] caches and paged pools, so
   * K and V are two sequential streams the hardware prefetchers follow
   * (one head a work-item reads 2 KiB-strided rows at Hk = 8, d = 128,
   * 16-bit). Row R = hh·QR + rr is row rr of KV head hh; NH: the KV heads
   * of a work-item. */
#if ALLH
#define NH ALLH
#else
#define NH 1
#endif
#ifndef PVC /* output chunks of 16 per row in registers in P·V (about 16 vectors) */
#define PVC (QR >= 16 ? 1 : 16 / QR < DV16 ? 16 / QR : DV16)
#endif
/* EO (bf16 K/V, 32-dim blocks, 4-byte aligned rows): 32 stored elements
 * are one uint16 and become two float16 by one shift (the even dims) and
 * one mask (the odd dims), half the instructions of widening each 16; Q
 * and the output rows are kept in the same order (chunk 2c: the even dims
 * of block c, 2c + 1: its odd dims), and the output is put back in order
 * once, when the split's partial rows are stored. */
#ifndef EO
#define EO (CLATTN_DTYPE == 2 && !KVQ && D % 32 == 0 && ALIGN16 && PVC % 2 == 0)
#endif
/* 32 stored bf16 elements w: the even ones into e, the odd ones into o */
#define BF16_EO(w, e, o)                                                                           \
  const float16 e = as_float16((w) << 16), o = as_float16((w) & (uint16)(0xffff0000u))
  float16 qv[NH * QR][DV16], acc[NH * QR][DV16], part[NH * QR][16];
  float16 sc[NH * QR][KT / 16]; /* scores, then probabilities, of the tile */
  float mrow[NH * QR], lrow[NH * QR];
  long koff[KT], voff[KT];
  /* token scales (1 without) of head hh at hh·KT */
  float kscl[NH * KT] __attribute__((aligned(64))), vscl[NH * KT];
  KVTYPE16 vst[KT * NH * DV16]; /* the tile's V rows, as stored (key tt, head hh at tt·NH + hh) */
  int kok[KT] __attribute__((aligned(64)));
  int qpos[QR], qlive[QR];
  for (int rr = 0; rr < QR; rr++) {
    const int r = r0 + rr;
    qpos[rr] = r / G + off;        /* the row's position among the keys (causal) */
    qlive[rr] = r < rows ? -1 : 0; /* a row past the sequence's rows sees no key */
  }
  for (int hh = 0; hh < NH; hh++) {
    const int hkx = ALLH ? hh : hk;
    const int hk = hkx; /* KCH16 */
    for (int rr = 0; rr < QR; rr++) {
      const int r = r0 + rr;
      const int i = r / G, h = hk * G + r % G;
      const long qa = (long)b * qsb + (long)(q0 + i) * qss + (long)h * qsh;
      for (int c = 0; c < DV16; c++) {
        qv[hh * QR + rr][c] =
            r < rows ? LOAD16(q + qa + c * 16) * qscale * KCH16(c * 16) : (float16)(0.0f);
        acc[hh * QR + rr][c] = (float16)(0.0f);
      }
#if EO
      for (int c = 0; c < DV16; c += 2) {
        const float16 f0 = qv[hh * QR + rr][c], f1 = qv[hh * QR + rr][c + 1];
        qv[hh * QR + rr][c] = (float16)(f0.even, f1.even);
        qv[hh * QR + rr][c + 1] = (float16)(f0.odd, f1.odd);
      }
#endif
      mrow[hh * QR + rr] = CLATTN_MASKED;
      lrow[hh * QR + rr] = 0.0f;
    }
  }
  for (int t = 0; t < ntiles; t++) {
    const int j0 = kb + t * KT;
    for (int tt = 0; tt < KT; tt++) {
      long kr, kj;
      kok[tt] = key_slot(j0 + tt, ke, b, k0, btab, maxp, num_pages, &kr, &kj) ? -1 : 0;
      koff[tt] = kr * ksb + kj * kss + (long)hk * ksh; /* hk = 0 with ALLH */
      voff[tt] = kr * vsb + kj * vss + (long)hk * vsh;
      for (int hh = 0; hh < NH; hh++) {
        const int hkx = ALLH ? hh : hk;
        const int hk = hkx; /* KTOK, VTOK */
        kscl[hh * KT + tt] = KTOK(kr, kj);
        vscl[hh * KT + tt] = VTOK(kr, kj);
      }
    }
    for (int g = 0; g < KT / 16; g++) {
      for (int u = 0; u < 16; u++) {
        const int tt = g * 16 + u;
        for (int hh = 0; hh < NH; hh++) {
          float16 pa[QR];
#pragma unroll
          for (int rr = 0; rr < QR; rr++)
            pa[rr] = (float16)(0.0f);
          if (kok[tt]) {
            /* this key's V row is copied aside now, so that its cache misses
             * overlap those of the K row (P·V reads it from here) */
            __global const kvtype *vp = v + voff[tt] + (long)(ALLH ? hh : 0) * vsh;
#pragma unroll
            for (int c = 0; c < DV16; c++)
              vst[(tt * NH + hh) * DV16 + c] = vload16(c, vp);
            __global const kvtype *kp = k + koff[tt] + (long)(ALLH ? hh : 0) * ksh;
#if EO
#pragma unroll
            for (int c = 0; c < DV16; c += 2) {
              const uint16 w = vload16(c / 2, (__global const uint *)kp);
              BF16_EO(w, ke, ko);
#pragma unroll
              for (int rr = 0; rr < QR; rr++)
                pa[rr] = fma(qv[hh * QR + rr][c + 1], ko, fma(qv[hh * QR + rr][c], ke, pa[rr]));
            }
#else
#pragma unroll
            for (int c = 0; c < DV16; c++) {
              const float16 kx = KVLOAD16(kp + c * 16);
#pragma unroll
              for (int rr = 0; rr < QR; rr++)
                pa[rr] = fma(qv[hh * QR + rr][c], kx, pa[rr]);
            }
#endif
          }
#pragma unroll
          for (int rr = 0; rr < QR; rr++)
            part[hh * QR + rr][u] = pa[rr];
        }
      }
      const int16 okv = vload16(g, kok);
#if CAUSAL
      const int16 jv = (int16)(j0 + g * 16) +
                       (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
      for (int hh = 0; hh < NH; hh++) {
        const int hkx = ALLH ? hh : hk;
        const int hk = hkx; /* the modifiers */
        for (int rr = 0; rr < QR; rr++) {
          const int R = hh * QR + rr;
          /* lane u of the reduction is key g·16 + u */
          float16 a8[8], a4[4], a2[2];
          for (int e = 0; e < 8; e++)
            a8[e] = (float16)(part[R][2 * e].even, part[R][2 * e + 1].even) +
                    (float16)(part[R][2 * e].odd, part[R][2 * e + 1].odd);
          for (int e = 0; e < 4; e++)
            a4[e] = (float16)(a8[2 * e].even, a8[2 * e + 1].even) +
                    (float16)(a8[2 * e].odd, a8[2 * e + 1].odd);
          for (int e = 0; e < 2; e++)
            a2[e] = (float16)(a4[2 * e].even, a4[2 * e + 1].even) +
                    (float16)(a4[2 * e].odd, a4[2 * e + 1].odd);
          const float16 sv = (float16)(a2[0].even, a2[1].even) + (float16)(a2[0].odd, a2[1].odd);
#if CAUSAL
          const int16 vis = okv & (int16)(qlive[rr]) & (jv <= (int16)(qpos[rr]));
#else
          const int16 vis = okv & (int16)(qlive[rr]);
#endif
          /* visibility travels as the masked value's bits */
          sc[R][g] = select((float16)(CLATTN_MASKED), sv * vload16(g, kscl + hh * KT), vis);
#if DECODE_MODS
          { /* the modifiers, per key of the 16 */
            float x16[16];
            int v16[16];
            vstore16(sc[R][g], 0, x16);
            vstore16(vis, 0, v16);
            const int r = r0 + rr, h = hk * G + r % G;
            const float slope = DECODE_SLOPE(h);
            for (int u = 0; u < 16; u++) {
              bool vu = v16[u] != 0;
              const float y = decode_mods(x16[u], slope, b, h, r / G, r / G + off,
                                          j0 + g * 16 + u, user, &vu DECODE_BIAS_PASS);
              x16[u] = vu ? y : CLATTN_MASKED;
            }
            sc[R][g] = vload16(0, x16);
          }
#endif
        }
      }
    }
    for (int R = 0; R < NH * QR; R++) {
      float16 mx16 = sc[R][0];
      for (int g = 1; g < KT / 16; g++)
        mx16 = fmax(mx16, sc[R][g]);
      const float8 mx8 = fmax(mx16.lo, mx16.hi);
      const float4 mx4 = fmax(mx8.lo, mx8.hi);
      const float mx = fmax(fmax(mx4.x, mx4.y), fmax(mx4.z, mx4.w));
      const float m_new = fmax(mrow[R], mx);
      const float a = CLATTN_RESCALE(mrow[R], m_new);
      float16 sum16 = (float16)(0.0f);
      for (int g = 0; g < KT / 16; g++) {
        const float16 x = sc[R][g];
        const float16 p16 = select(exp2(x - m_new), (float16)(0.0f),
                                   as_int16(x) == (int16)(as_int(CLATTN_MASKED)));
        sc[R][g] = p16;
        sum16 += p16;
      }
      const float8 s8 = sum16.lo + sum16.hi;
      const float4 s4 = s8.lo + s8.hi;
      lrow[R] = lrow[R] * a + ((s4.x + s4.y) + (s4.z + s4.w));
      mrow[R] = m_new;
      for (int c = 0; c < DV16; c++)
        acc[R][c] *= a;
#if KVQ && KVS == 0
      /* the V token scales, once per probability (not per output chunk) */
      for (int g = 0; g < KT / 16; g++)
        sc[R][g] *= vload16(g, vscl + (R / QR) * KT);
#endif
    }
    /* P·V: PVC output chunks of the QR rows in registers (QR·PVC vectors)
     * while the tile's V rows stream past; each probability is a scalar
     * operand (a broadcast the FMA takes from memory). */
    for (int hh = 0; hh < NH; hh++)
      for (int c0 = 0; c0 < DV16; c0 += PVC) {
        float16 o[QR][PVC];
#pragma unroll
        for (int rr = 0; rr < QR; rr++)
#pragma unroll
          for (int c = 0; c < PVC; c++)
            o[rr][c] = c0 + c < DV16 ? acc[hh * QR + rr][c0 + c] : (float16)(0.0f);
        for (int tt = 0; tt < KT; tt++) {
          if (!kok[tt]) continue;
          const KVTYPE16 *vr = vst + (tt * NH + hh) * DV16 + c0;
#if EO
#pragma unroll
          for (int c = 0; c < PVC; c += 2) {
            if (c0 + c >= DV16) break;
            const uint16 w = vload16(0, (const uint *)(vr + c));
            BF16_EO(w, ve, vo);
#pragma unroll
            for (int rr = 0; rr < QR; rr++) {
              const float16 pp = (float16)(((const float *)sc[hh * QR + rr])[tt]);
              o[rr][c] = fma(pp, ve, o[rr][c]);
              o[rr][c + 1] = fma(pp, vo, o[rr][c + 1]);
            }
          }
#else
#pragma unroll
          for (int c = 0; c < PVC; c++) {
            if (c0 + c >= DV16) break;
            const float16 vx = KVLOAD16_PRIVATE((const kvtype *)(vr + c));
#pragma unroll
            for (int rr = 0; rr < QR; rr++)
              o[rr][c] = fma((float16)(((const float *)sc[hh * QR + rr])[tt]), vx, o[rr][c]);
          }
#endif
        }
#pragma unroll
        for (int rr = 0; rr < QR; rr++)
#pragma unroll
          for (int c = 0; c < PVC; c++)
            if (c0 + c < DV16) acc[hh * QR + rr][c0 + c] = o[rr][c];
      }
  }
  for (int hh = 0; hh < NH; hh++)
    for (int rr = 0; rr < QR && r0 + rr < rows; rr++) {
      const int hkx = ALLH ? hh : hk;
#if EO /* the dims back in order */
      float16 ord[DV16];
      for (int c = 0; c < DV16; c += 2) {
        const float16 e = acc[hh * QR + rr][c], od = acc[hh * QR + rr][c + 1];
        const uint16 lo = (uint16)(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        ord[c] = shuffle2(e, od, lo);
        ord[c + 1] = shuffle2(e, od, lo + (uint16)(8u));
      }
      const float *af = (const float *)ord;
#else
      const float *af = (const float *)acc[hh * QR + rr];
#endif
      store_partial(ws_o, ws_lse, partial_slot(r0 + rr, b, hkx, G, H, Nq_max, splits, sp), af,
                    mrow[hh * QR + rr], lrow[hh * QR + rr], vsc, hkx);
    }
#undef NH
#elif WG == 1
  /* CPUs: one work-item per (row block, split, b, hk), rows in private
   * arrays; the loops over the head dim are contiguous and vectorise. */
  /* float8 rows (the head dim padded to DV8 vectors with zeros): explicit
   * vectors, as PoCL's compiler does not reassociate float reductions. */
#define DV8 ((D + 7) / 8)
  float8 qv[QR][DV8], acc[QR][DV8], krow[DV8];
  float sc[QR][KT] __attribute__((aligned(32))), mrow[QR], lrow[QR];
  float *kf = (float *)krow;
  for (int c = 0; c < DV8; c++)
    krow[c] = (float8)(0.0f);
  for (int rr = 0; rr < QR; rr++) {
    const int r = r0 + rr;
    const int i = r / G, h = hk * G + r % G;
    const long qa = (long)b * qsb + (long)(q0 + i) * qss + (long)h * qsh;
    float *qf = (float *)qv[rr];
    for (int c = 0; c < DV8; c++) {
      qv[rr][c] = (float8)(0.0f);
      acc[rr][c] = (float8)(0.0f);
    }
    if (r < rows)
      for (int dd = 0; dd < D; dd++)
        qf[dd] = LOAD(q, qa + (long)dd * qsd) * qscale * KCH(dd);
    mrow[rr] = CLATTN_MASKED;
    lrow[rr] = 0.0f;
  }
  for (int t = 0; t < ntiles; t++) {
    const int j0 = kb + t * KT;
    for (int tt = 0; tt < KT; tt++) {
      const int j = j0 + tt;
      long kr, kj;
      const bool ok = key_slot(j, ke, b, k0, btab, maxp, num_pages, &kr, &kj);
      const long ka = kr * ksb + kj * kss + (long)hk * ksh;
#if VEC8
      for (int c = 0; c < DV8; c++)
        krow[c] = ok ? KV8(k, ka, c) : (float8)(0.0f);
#else
      if (ok)
        for (int dd = 0; dd < D; dd++)
          kf[dd] = KVLOAD(k, ka + (long)dd * ksd);
#endif
      const float kts = KTOK(kr, kj);
      for (int rr = 0; rr < QR; rr++) {
        float8 s8 = (float8)(0.0f);
        for (int c = 0; c < DV8; c++)
          s8 = mad(qv[rr][c], krow[c], s8);
        const float4 s4 = s8.lo + s8.hi;
        const float s = (s4.x + s4.y) + (s4.z + s4.w);
        const int i = (r0 + rr) / G;
        bool vis = ok && r0 + rr < rows && DECODE_VISIBLE(j, i + off);
        /* visibility travels as the masked value's bits */
#if DECODE_MODS
        const int h = hk * G + (r0 + rr) % G;
        const float sm =
            decode_mods(s * kts, DECODE_SLOPE(h), b, h, i, i + off, j, user, &vis DECODE_BIAS_PASS);
#else
        const float sm = s * kts;
#endif
        sc[rr][tt] = vis ? sm : CLATTN_MASKED;
      }
    }
    for (int rr = 0; rr < QR; rr++) {
      /* 8 scores at a time: vector max, exp2 and select (KT % 8 == 0). */
      float8 *sv = (float8 *)sc[rr];
      float8 mx8 = (float8)(CLATTN_MASKED);
      for (int c = 0; c < KT / 8; c++)
        mx8 = fmax(mx8, sv[c]);
      const float4 mx4 = fmax(mx8.lo, mx8.hi);
      const float mx = fmax(fmax(mx4.x, mx4.y), fmax(mx4.z, mx4.w));
      const float m_new = fmax(mrow[rr], mx);
      const float a = CLATTN_RESCALE(mrow[rr], m_new);
      float8 sum8 = (float8)(0.0f);
      for (int c = 0; c < KT / 8; c++) {
        const float8 x = sv[c];
        const float8 p8 = select(exp2(x - m_new), (float8)(0.0f),
                                 as_int8(x) == (int8)(as_int(CLATTN_MASKED)));
        sv[c] = p8;
        sum8 += p8;
      }
      const float4 s4 = sum8.lo + sum8.hi;
      const float sum = (s4.x + s4.y) + (s4.z + s4.w);
      lrow[rr] = lrow[rr] * a + sum;
      mrow[rr] = m_new;
      for (int c = 0; c < DV8; c++)
        acc[rr][c] *= a;
    }
    for (int tt = 0; tt < KT; tt++) {
      const int j = j0 + tt;
      long vr, vj;
      const bool ok = key_slot(j, ke, b, k0, btab, maxp, num_pages, &vr, &vj);
      if (!ok) continue;
      const long va = vr * vsb + vj * vss + (long)hk * vsh;
#if VEC8
      for (int c = 0; c < DV8; c++)
        krow[c] = KV8(v, va, c);
#else
      for (int dd = 0; dd < D; dd++)
        kf[dd] = KVLOAD(v, va + (long)dd * vsd);
#endif
      const float vts = VTOK(vr, vj);
      for (int rr = 0; rr < QR; rr++) {
        const float8 p8 = (float8)(sc[rr][tt] * vts);
        for (int c = 0; c < DV8; c++)
          acc[rr][c] = mad(p8, krow[c], acc[rr][c]);
      }
    }
  }
  for (int rr = 0; rr < QR && r0 + rr < rows; rr++)
    store_partial(ws_o, ws_lse, partial_slot(r0 + rr, b, hk, G, H, Nq_max, splits, sp),
                  (const float *)acc[rr], mrow[rr], lrow[rr], vsc, hk);
#else

  for (int e = lid; e < QR * D; e += WG) {
    const int rr = e / D, dd = e % D, r = r0 + rr;
    float x = 0.0f;
    if (r < rows) {
      const int i = r / G, h = hk * G + r % G;
      x = LOAD(q, (long)b * qsb + (long)(q0 + i) * qss + (long)h * qsh + (long)dd * qsd) * qscale *
          KCH(dd);
    }
    lq[rr][dd] = x;
  }
  for (int rr = lid; rr < QR; rr += WG) {
    lm[rr] = CLATTN_MASKED;
    ll[rr] = 0.0f;
  }
  float acc[NO];
  for (int o = 0; o < NO; o++)
    acc[o] = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);

  for (int t = 0; t < ntiles; t++) {
    const int j0 = kb + t * KT;
#if VEC8
    for (int e = lid; e < KT * (D / 8); e += WG) {
      const int tt = e / (D / 8), c = e % (D / 8), j = j0 + tt;
      long kr, kj;
      const bool ok = key_slot(j, ke, b, k0, btab, maxp, num_pages, &kr, &kj);
      const float8 kx = ok ? KV8(k, kr * ksb + kj * kss + (long)hk * ksh, c) : (float8)(0.0f);
      const float8 vx = ok ? KV8(v, kr * vsb + kj * vss + (long)hk * vsh, c) : (float8)(0.0f);
      float tk[8], tv[8];
      vstore8(kx, 0, tk);
      vstore8(vx, 0, tv);
      for (int u = 0; u < 8; u++) {
        lk[tt][c * 8 + u] = tk[u];
        lv[tt][c * 8 + u] = tv[u];
      }
      if (c == 0) {
        lok[tt] = ok;
        lks[tt] = KTOK(kr, kj);
        lvs[tt] = VTOK(kr, kj);
      }
    }
#else
    for (int e = lid; e < KT * D; e += WG) {
      const int tt = e / D, dd = e % D, j = j0 + tt;
      long kr, kj;
      const bool ok = key_slot(j, ke, b, k0, btab, maxp, num_pages, &kr, &kj);
      const long ka = kr * ksb + kj * kss + (long)hk * ksh + (long)dd * ksd;
      const long va = kr * vsb + kj * vss + (long)hk * vsh + (long)dd * vsd;
      lk[tt][dd] = ok ? KVLOAD(k, ka) : 0.0f;
      lv[tt][dd] = ok ? KVLOAD(v, va) : 0.0f;
      if (dd == 0) {
        lok[tt] = ok;
        lks[tt] = KTOK(kr, kj);
        lvs[tt] = VTOK(kr, kj);
      }
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = lid; e < QR * KT; e += WG) {
      const int rr = e / KT, tt = e % KT;
      float s = 0.0f;
      for (int dd = 0; dd < D; dd++)
        s = mad(lq[rr][dd], lk[tt][dd], s);
      /* visibility travels as the masked value's bits */
      const int r = r0 + rr, i = r / G;
      bool vis = r < rows && lok[tt] && DECODE_VISIBLE(j0 + tt, i + off);
      s *= lks[tt];
#if DECODE_MODS
      const int h = hk * G + r % G;
      s = decode_mods(s, DECODE_SLOPE(h), b, h, i, i + off, j0 + tt, user, &vis DECODE_BIAS_PASS);
#endif
      lp[rr][tt] = vis ? s : CLATTN_MASKED;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int rr0 = 0; rr0 < QR; rr0 += WG) {
      const int rr = rr0 + lid;
      if (rr < QR) {
        float mx = CLATTN_MASKED;
        for (int tt = 0; tt < KT; tt++)
          mx = fmax(mx, lp[rr][tt]);
        const float m_old = lm[rr], m_new = fmax(m_old, mx);
        const float a = CLATTN_RESCALE(m_old, m_new);
        float sum = 0.0f;
        for (int tt = 0; tt < KT; tt++) {
          const bool vis = as_int(lp[rr][tt]) != as_int(CLATTN_MASKED);
          const float p = vis ? exp2(lp[rr][tt] - m_new) : 0.0f;
          lp[rr][tt] = p;
          sum += p;
        }
        ll[rr] = ll[rr] * a + sum;
        lm[rr] = m_new;
        la[rr] = a;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int o = 0; o < NO; o++) {
      const int e = lid + o * WG;
      if (e < QR * D) {
        const int rr = e / D, dd = e % D;
        float x = acc[o] * la[rr];
        for (int tt = 0; tt < KT; tt++)
          x = mad(lp[rr][tt] * lvs[tt], lv[tt][dd], x);
        acc[o] = x;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  for (int o = 0; o < NO; o++) {
    const int e = lid + o * WG;
    if (e < QR * D) {
      const int rr = e / D, dd = e % D, r = r0 + rr;
      if (r < rows) {
        const int i = r / G, h = hk * G + r % G;
        const long slot = ((long)(b * H + h) * Nq_max + i) * splits + sp;
        /* l is exactly 0 without a visible key, NaN when a score was NaN
         * (tested on the bits: finite-math builds fold float compares). */
        const float l = ll[rr];
        const bool empty = as_uint(l) == 0u;
        ws_o[slot * D + dd] = empty ? 0.0f : acc[o] / l * VCH(dd);
        if (dd == 0) ws_lse[slot] = empty ? CLATTN_MASKED : lm[rr] + log2(l);
      }
    }
  }
#endif
}

/* clattn_merge_states: (oa, la) ⊕ (ob, lb) → (out, lout), one work-item per
 * row (so out may be oa: each row is read before it is written). LSE in
 * natural log; -inf (or NaN) marks a part without keys. */
__kernel void merge_pair(__global const stype *oa, __global const float *la,
                         __global const stype *ob, __global const float *lb, __global stype *out,
                         __global float *lout, const int rows, const int dim) {
  const int r = get_global_id(0);
  if (r >= rows) return;
  const float a = la[r], c = lb[r];
  const bool za = a > -FLT_MAX, zc = c > -FLT_MAX;
  const float M = za && zc ? fmax(a, c) : za ? a : c;
  const float wa = za ? exp(a - M) : 0.0f, wc = zc ? exp(c - M) : 0.0f;
  const float W = wa + wc;
  const long base = (long)r * dim;
  for (int dd = 0; dd < dim; dd++) {
    const float x = (za ? wa * LOAD(oa, base + dd) : 0.0f) + (zc ? wc * LOAD(ob, base + dd) : 0.0f);
    STORE(out, base + dd, W > 0.0f ? x / W : 0.0f);
  }
  lout[r] = W > 0.0f ? M + log(W) : CLATTN_NEG_INF;
}

/* clattn_kv_append(_ex): token t (row t of kn / vn, [ntok][Hk][dim]) into
 * slot slots[t] of the cache: row slot / ps (a page, a batch entry, or 0 for
 * packed ragged K/V), position slot % ps; slots outside the nrows·ps of the
 * cache are skipped. One work-item per (token, KV head). Quantized caches
 * (KVQ) get codes, rounded to nearest even and saturated; per-token scales
 * (KVS 0) are computed here (absmax / the largest code value, 1 for a zero
 * row), the others are read. */
#if KVQ
#if KVQ == 1
#define KVQ_MAX 127.0f
#elif KVQ == 2
#define KVQ_MAX 448.0f
#else
#define KVQ_MAX 57344.0f
#endif
inline kvtype kv_quantize(const float y) {
#if KVQ == 1
  return isnan(y) ? (char)0 : (char)clamp(rint(y), -127.0f, 127.0f);
#else
  const uint sign = (as_uint(y) >> 24) & 0x80u;
  const float a = fabs(y);
  if (isnan(a)) return (uchar)(sign | 0x7fu);
  if (a >= KVQ_MAX) return (uchar)(sign | (KVQ == 2 ? 0x7eu : 0x7bu)); /* saturate */
#if KVQ == 2
  if (a < 0x1.0p-6f) return (uchar)(sign | (uint)rint(a * 0x1.0p9f)); /* subnormal (or 8: min normal) */
  uint bits = as_uint(a);
  bits += 0x7ffffu + ((bits >> 20) & 1u); /* round the mantissa to 3 bits, ties to even */
  return (uchar)(sign | ((bits >> 20) - (120u << 3)));
#else
  if (a < 0x1.0p-14f) return (uchar)(sign | (uint)rint(a * 0x1.0p16f));
  uint bits = as_uint(a);
  bits += 0xfffffu + ((bits >> 21) & 1u); /* 2 mantissa bits */
  return (uchar)(sign | ((bits >> 21) - (112u << 2)));
#endif
#endif
}
#endif
__kernel void kv_append(__global const stype *kn, __global const stype *vn,
                        __global const int *slots, __global kvtype *kp, __global kvtype *vp,
                        __global float *ksc, __global float *vsc, const int Hk, const int dim,
                        const int ps, const int nrows, const int ntok, const long ksb,
                        const long ksh, const long kss, const long ksd, const long vsb,
                        const long vsh, const long vss, const long vsd, const long ssr) {
  const int th = get_global_id(0);
  if (th >= ntok * Hk) return;
  const int t = th / Hk, hk = th % Hk;
  const int slot = slots[t];
  if (slot < 0 || (long)slot >= (long)nrows * ps) return;
  const long row = slot / ps, pos = slot % ps;
  const long src = ((long)t * Hk + hk) * dim;
  for (int w = 0; w < 2; w++) {
    __global const stype *x = w ? vn : kn;
    __global kvtype *dst = w ? vp : kp;
    const long base = w ? row * vsb + pos * vss + hk * vsh : row * ksb + pos * kss + hk * ksh;
    const long sd = w ? vsd : ksd;
#if KVQ == 0
    (void)ksc;
    (void)vsc;
    (void)ssr;
    for (int dd = 0; dd < dim; dd++)
      dst[base + dd * sd] = x[src + dd];
#else
    __global float *sc = w ? vsc : ksc;
#if KVS == 0
    float amax = 0.0f;
    for (int dd = 0; dd < dim; dd++)
      amax = fmax(amax, fabs(LOAD(x, src + dd)));
    const float tok = amax > 0.0f && amax <= FLT_MAX ? amax / KVQ_MAX : 1.0f;
    sc[row * ssr + pos * Hk + hk] = tok;
#endif
    for (int dd = 0; dd < dim; dd++) {
#if KVS == 0
      const float s = tok;
#elif KVS == 1
      const float s = sc[0];
#elif KVS == 2
      const float s = sc[hk];
#else
      const float s = sc[hk * dim + dd];
#endif
      dst[base + dd * sd] = kv_quantize(LOAD(x, src + dd) / s);
    }
#endif
  }
}
