/* linear_common.cl — shared definitions of the linear-attention kernels: parameters, tiles, loads, feature maps, tensor-core helpers. */

/*
 * Linear (kernelised) attention replaces exp(qᵀk·scale) by φ(q)ᵀφ(k) and
 * reassociates:  o_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z  with  S = Σ_j φ(k_j) v_jᵀ (F×D)
 * and z = Σ_j φ(k_j) (F). Both are kept as one F×(D+1) state, z being the
 * last column (the state of V extended by a column of ones).
 *
 * Kernels (one file each, compiled after this one), all specialised by the
 * -D parameters below:
 *
 *   lin_feat   (FAVOR+ only) the features of Q or K rows as a register-tiled
 *              GEMM X·ω, exponentiated against each row's maximum, into a
 *              float workspace Φ (rows of FPS floats); for keys the row
 *              maxima m_j are kept (RM) — see "FAVOR+" below.
 *   lin_state  one work-group per (key split, column block, batch·kv-head):
 *              the split's state Σ_j φ(k_j)[v_j 1]ᵀ, a GEMM over the split's
 *              keys in tiles of BKS (φ(K) tile and V tile in local memory,
 *              SRF×SRC accumulators per work-item).
 *   lin_scan   one work-item per state element and batch·kv-head, walking
 *              the splits in order (deterministic, no atomics): CAUSAL=0 the
 *              total, written over split 0; CAUSAL=1 the exclusive prefix
 *              of every split (segment), in place.
 *   lin_apply  (non-causal) one work-group per (BQ query rows, column block,
 *              batch·head): φ(Q) times the total state, a GEMM over the
 *              features in slices of AFS (both operands in local memory,
 *              ARQ×ARC outputs per work-item), then o = num / den.
 *   lin_causal (causal) one work-group per (segment, column block,
 *              batch·head) walks the segment's chunks of CH keys in order,
 *              starting from the segment's prefix state P (from lin_scan):
 *              for chunk c,
 *                o = [φ(Q_c) P + mask(φ(Q_c) φ(K_c)ᵀ) [V_c 1]] normalised,
 *                P += φ(K_c)ᵀ [V_c 1],
 *              P going through a per-work-group scratch in global memory
 *              (L2-resident) in slices of CFS features. Per-chunk states are
 *              never written; only one state per segment is.
 *
 * Positions: query i sits at key position p = i + CAUSAL_OFFSET (Nk − Nq
 * bottom-right, CAUSAL=1; 0 top-left, CAUSAL=2) and sees keys j <= p; chunk c holds the keys [c·CH, c·CH + CH)
 * and the queries whose position falls there, so inside a chunk the mask is
 * j <= i in chunk-local indices.
 *
 * FAVOR+ (MAP 2): φ(x)_f = exp(a_f − c) with the log-feature
 * a_f = ω_fᵀx − ‖x‖²/2 (ω in Wt, stored transposed, D rows of FPS floats). The stabiliser c
 * cancels in num / den as long as it is the same for every feature of one
 * query and for every key of one sum:
 *   queries: c = max_f a_f (per row, in lin_feat);
 *   keys:    lin_feat stores exp(a − m_j) with the row maximum m_j and m_j
 *            itself; a sum over keys uses a running maximum M of the m_j
 *            summed so far and weighs key j by w_j = exp(m_j − M) <= 1,
 *            folded into the key's [v_j 1] row; when M grows, what was summed
 *            is rescaled by exp(M_old − M) as in an online softmax (per split
 *            in lin_state, CM; across splits in lin_scan, PM; per chunk in
 *            lin_causal). M is never +inf; −inf (nothing summed yet) is
 *            handled so that no NaN arises.
 * The 1/√m factor of FAVOR+ cancels as well and is not applied.
 *
 * Register tiles: a work-item with index t of T along a dimension owns R
 * positions of it, RIDX(T, R, t, r): when R is a multiple of 4, groups of 4
 * consecutive positions (float4 loads from local memory, no bank conflicts
 * along the dimension), else positions r·T + t.
 */

#ifndef D
#define D 64 /* head dim */
#endif
#ifndef MAP
#define MAP 0 /* 0 elu+1, 1 relu, 2 FAVOR+ */
#endif
#ifndef F
#define F D /* features */
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef VEC
#define VEC 0 /* q, k, v rows: unit dim stride, 4-element aligned rows (D % 4 == 0) */
#endif
#ifndef OVEC
#define OVEC 0 /* the same for o */
#endif
#ifndef BD
#define BD 64 /* value columns per work-group (every kernel) */
#endif
/* lin_state */
#ifndef BKS
#define BKS 16 /* keys per tile */
#endif
#ifndef SRF
#define SRF 8 /* features per work-item */
#endif
#ifndef SRC
#define SRC 8 /* columns per work-item */
#endif
/* lin_apply */
#ifndef BQ
#define BQ 64 /* query rows per work-group */
#endif
#ifndef ARQ
#define ARQ 8 /* rows per work-item */
#endif
#ifndef ARC
#define ARC 8 /* columns per work-item */
#endif
#ifndef AFS
#define AFS 32 /* features per slice */
#endif
/* lin_causal */
#ifndef CH
#define CH 64 /* keys (and queries) per chunk */
#endif
#ifndef CTR
#define CTR 16 /* work-items along rows (and features in the state update) */
#endif
#ifndef CTC
#define CTC 8 /* work-items along columns (and keys in the scores) */
#endif
#ifndef CFS
#define CFS 32 /* features per slice */
#endif
/* lin_feat */
#ifndef FBR
#define FBR 64 /* rows per work-group */
#endif
#ifndef FRR
#define FRR 8 /* rows per work-item */
#endif
#ifndef FRF
#define FRF 8 /* features per work-item */
#endif
#ifndef FDS
#define FDS 16 /* head-dim slice */
#endif

/* Explicit unrolling of the register-tile loops: on by default (GPUs keep
 * the tiles in registers); CPUs build with -DUNROLL_HINTS=0, which keeps
 * PoCL's compile time down at the same speed. */
#ifndef TC
#define TC 0 /* NVIDIA sm_80+: lin_state and lin_apply on tensor cores (3×TF32, see below) */
#endif
#ifndef STW
#define STW 4 /* TC lin_state: warps, each owning STM 16-feature m-tiles × BD columns */
#endif
#ifndef STM
#define STM 1
#endif
#ifndef TAW
#define TAW 4 /* TC lin_apply: warps, each owning TAM 16-row m-tiles × BD columns */
#endif
#ifndef TAM
#define TAM 1
#endif

#ifndef ILV
/* Non-causal: split s of lin_state sums the key tiles s, s + nsplit, ... and
 * lin_apply work-group g the row blocks g, g + groups, ..., so that the
 * work-groups resident at one time stream neighbouring memory (contiguous
 * runs per work-group spread the device over hundreds of distant streams:
 * ~2 TB/s on an H200 against 4.2 TB/s for a copy). Causal segments stay
 * contiguous (prefix states). */
#define ILV (!CAUSAL)
#endif

#ifndef UNROLL_HINTS
#define UNROLL_HINTS 1
#endif
#if UNROLL_HINTS
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif
/* Unrolling of the reduction loops of the register-tiled products, per
 * kernel (the local loads of step k+1 are then issued before the products
 * of step k, at the price of registers). Measured on an H200: it helps
 * lin_state and costs the others more registers than it gains. */
#ifndef KUNROLL_STATE
#define KUNROLL_STATE 0
#endif
#ifndef KUNROLL_OTHERS
#define KUNROLL_OTHERS 0
#endif
#if KUNROLL_STATE
#define KUNROLL_S _Pragma("unroll")
#else
#define KUNROLL_S
#endif
#if KUNROLL_OTHERS
#define KUNROLL _Pragma("unroll")
#else
#define KUNROLL
#endif

#define FAVOR (MAP == 2)
#define DE (D + 1)                /* state columns: D of V, then the ones column (z) */
#define FPS ((F + 3) / 4 * 4)     /* row stride of the Φ workspace */
#define CDIV(a, b) (((a) + (b)-1) / (b))
#define R4(x) (CDIV(x, 4) * 4)

/* lin_state work-items: STF along features, STC along columns. */
#define STF CDIV(F, SRF)
#define STC (BD / SRC)
#define NTS (STF * STC)
#define SFP R4(STF * SRF) /* features covered (>= F) */
#define LDKS (SFP + 4)    /* row stride of the key-feature tile */
#define LDV (BD + 4)     /* row stride of value tiles */
/* Staging of lin_state (both variants): SNT work-items, SKP key features
 * per staged row (>= F), row strides SLDK / SLDV. Tensor cores: one warp per
 * STM m-tiles of features, strides = 8 (mod 32) so that the fragment loads
 * (rows t and t + 4, columns g of an 8-key step) hit 32 distinct banks. */
#if TC
#define SNT (STW * 32)
#define SKP (STW * STM * 16)
#define SLDK (SKP + (SKP % 32 ? 24 : 8))
#define SLDV (BD + (BD % 32 ? 24 : 8))
#else
#define SNT NTS
#define SKP SFP
#define SLDK LDKS
#define SLDV LDV
#endif
/* lin_apply */
#define ATR (BQ / ARQ)
#define ATC (BD / ARC)
#define NTA (ATR * ATC)
#define LDQA (R4(BQ) + 4)
/* lin_causal */
#define NTC (CTR * CTC)
#define CRQ CDIV(CH, CTR) /* rows per work-item */
#define CRK CDIV(CH, CTC) /* keys per work-item (scores) */
#define CRC (BD / CTC)    /* columns per work-item */
#define CRF CDIV(CFS, CTR) /* features per work-item (state update) */
#define CPR (CTR * CRQ)    /* chunk rows covered (>= CH) */
#define CPK (CTC * CRK)    /* chunk keys covered (>= CH) */
#define CFP R4(CTR * CRF) /* slice features covered (>= CFS) */
#define LDQC (R4(CPR) + 4)
#define LDKR (CFP + 4)
#define BDE (BD + 1) /* row stride of the causal scratch state */
/* lin_feat */
#define FTR (FBR / FRR)
#define FTF CDIV(F, FRF)
#define NTF (FTR * FTF)
#define FFP R4(FTF * FRF)
#define LDX (R4(FBR) + 4)
#define LDW (FFP + 4)
#define NXI CDIV(FBR * FDS, NTF) /* x elements each work-item stages per slice */
#define NWL CDIV(FDS * (FFP / 4), NTF) /* ω float4s each work-item stages per slice */

#if (BD % SRC) || (BD % ARC) || (BD % CTC) || (BQ % ARQ) || (BD % 4) || (FBR % FRR)
#error "linear: BD must be a multiple of 4, SRC, ARC and CTC; BQ of ARQ; FBR of FRR"
#endif
#if TC && ((BD % 16) || (BKS % 8) || SKP < F)
#error "linear TC: BD must be a multiple of 16, BKS of 8, and STW·STM·16 >= F"
#endif
#if (AFS % 4) || (CFS % 4) || (FDS < 1)
#error "linear: AFS and CFS must be multiples of 4"
#endif
#if !FAVOR && F != D
#error "linear: elu+1 and relu have F == D features"
#endif

#define RIDX(T, R, t, r) (((R) % 4 == 0) ? (((r) >> 2) * ((T) << 2) + ((t) << 2) + ((r)&3)) : ((r) * (T) + (t)))

/* x[r] = p[RIDX(T, R, t, r)], r < R (p: local, 16-byte aligned, rows of a
 * multiple of 4 floats). */
#define LOADT(x, R, T, t, p)                                                                      \
  do {                                                                                            \
    if ((R) % 4 == 0) {                                                                           \
      UNROLL for (int g_ = 0; g_ < (R) / 4; g_++) {                                               \
        const float4 v_ = *(__local const float4 *)((p) + g_ * 4 * (T) + 4 * (t));                \
        x[(4 * g_) % (R)] = v_.s0;                                                                \
        x[(4 * g_ + 1) % (R)] = v_.s1;                                                            \
        x[(4 * g_ + 2) % (R)] = v_.s2;                                                            \
        x[(4 * g_ + 3) % (R)] = v_.s3;                                                            \
      }                                                                                           \
    } else {                                                                                      \
      UNROLL for (int r_ = 0; r_ < (R); r_++) x[r_] = (p)[r_ * (T) + (t)];                        \
    }                                                                                             \
  } while (0)

/* for (idx = lid; idx < n; idx += nt) with a trip count that is the same for
 * every work-item (a guard inside), so that PoCL vectorises across
 * work-items; n and nt are compile-time constants at every use. */
#define FOR_ITEMS(idx, n, nt, lid)                                                                \
  for (int it_##idx = 0, idx = (lid); it_##idx < ((n) + (nt)-1) / (nt); it_##idx++, idx += (nt))  \
    if (idx < (n))

#define BARRIER barrier(CLK_LOCAL_MEM_FENCE)

/* ---- global loads and stores of 4 consecutive head-dim elements ---------- */

/* Elements c..c+3 of the row at offset ro (zeros at dims >= D). */
inline float4 ld4(__global const stype *base, long ro, long sd, int c) {
#if VEC
  if (c >= D) return (float4)(0.0f);
#if CLATTN_DTYPE == 0
  return *(__global const float4 *)(base + ro + c);
#elif CLATTN_DTYPE == 1
  return vload_half4(0, (__global const half *)(base + ro + c));
#else
  const ushort4 u = *(__global const ushort4 *)(base + ro + c);
  return (float4)(bf16_to_float(u.x), bf16_to_float(u.y), bf16_to_float(u.z),
                  bf16_to_float(u.w));
#endif
#else
  float4 x;
  x.x = c + 0 < D ? LOAD(base, ro + (long)(c + 0) * sd) : 0.0f;
  x.y = c + 1 < D ? LOAD(base, ro + (long)(c + 1) * sd) : 0.0f;
  x.z = c + 2 < D ? LOAD(base, ro + (long)(c + 2) * sd) : 0.0f;
  x.w = c + 3 < D ? LOAD(base, ro + (long)(c + 3) * sd) : 0.0f;
  return x;
#endif
}

/* Stores x[0..n) to elements c.. of the row at offset ro (dims < D only). */
inline void st4(__global stype *base, long ro, long sd, int c, float4 x) {
#if OVEC
  if (c >= D) return;
#if CLATTN_DTYPE == 0
  *(__global float4 *)(base + ro + c) = x;
#elif CLATTN_DTYPE == 1
  *(__global ushort4 *)(base + ro + c) = (ushort4)(float_to_half_rte(x.x), float_to_half_rte(x.y),
                                                   float_to_half_rte(x.z), float_to_half_rte(x.w));
#else
  *(__global ushort4 *)(base + ro + c) =
      (ushort4)(float_to_bf16(x.x), float_to_bf16(x.y), float_to_bf16(x.z), float_to_bf16(x.w));
#endif
#else
  if (c + 0 < D) STORE(base, ro + (long)(c + 0) * sd, x.x);
  if (c + 1 < D) STORE(base, ro + (long)(c + 1) * sd, x.y);
  if (c + 2 < D) STORE(base, ro + (long)(c + 2) * sd, x.z);
  if (c + 3 < D) STORE(base, ro + (long)(c + 3) * sd, x.w);
#endif
}

/* ---- tensor cores (TC, NVIDIA sm_80+): 3xTF32 products from tf32.cl (the
 * TC programs list it after this file), warp shuffles here ---- */
#if TC
inline float shfl_xor(float v, int m) {
  float r;
  __asm__ volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
  return r;
}
#endif

/* Output row at offset ro: x[r]·rd (r < R) to columns c0 + RIDX(T, R, t, r)
 * (< D), float4 stores when R is a multiple of 4. */
#define STORE_ROW(x, R, T, t, base, ro, sd, c0, rd)                                               \
  do {                                                                                            \
    if ((R) % 4 == 0) {                                                                           \
      UNROLL for (int g_ = 0; g_ < (R) / 4; g_++)                                                 \
          st4((base), (ro), (sd), (c0) + RIDX(T, R, t, 4 * g_),                                   \
              (float4)(x[(4 * g_) % (R)], x[(4 * g_ + 1) % (R)], x[(4 * g_ + 2) % (R)],           \
                       x[(4 * g_ + 3) % (R)]) *                                                   \
                  (rd));                                                                          \
    } else {                                                                                      \
      UNROLL for (int r_ = 0; r_ < (R); r_++) {                                                   \
        const int col_ = (c0) + RIDX(T, R, t, r_);                                                \
        if (col_ < D) STORE((base), (ro) + (long)col_ * (sd), x[r_] * (rd));                      \
      }                                                                                           \
    }                                                                                             \
  } while (0)

#if !FAVOR
inline float phi1(float x) {
#if MAP == 0
  return x > 0.0f ? x + 1.0f : exp(x); /* elu(x) + 1, exact for x <= 0 */
#else
  return fmax(x, 0.0f);
#endif
}
inline float4 phi4(float4 x) { return (float4)(phi1(x.x), phi1(x.y), phi1(x.z), phi1(x.w)); }
#endif

/* Features f..f+3 (f % 4 == 0) of a row: elu+1 / relu from the input row at
 * offset ro scaled by sq (0 past F); FAVOR+ from the Φ workspace row phr
 * (0 past F, as lin_feat stores them). Invalid rows: pass valid = false. */
#if FAVOR
#define FEAT4(valid, base, ro, sd, sq, phr, f)                                                    \
  ((valid) && (f) < FPS ? *(__global const float4 *)((phr) + (f)) : (float4)(0.0f))
#else
#define FEAT4(valid, base, ro, sd, sq, phr, f)                                                    \
  ((valid) && (f) < F ? phi4(ld4((base), (ro), (sd), (f)) * (sq)) : (float4)(0.0f))
#endif
