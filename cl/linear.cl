/* linear.cl — linear attention φ(Q)(φ(K)ᵀ[V 1]): features, split states, scan, apply, causal walk. */

/*
 * Linear (kernelised) attention replaces exp(qᵀk·scale) by φ(q)ᵀφ(k) and
 * reassociates:  o_i = φ(q_i)ᵀ S / φ(q_i)ᵀ z  with  S = Σ_j φ(k_j) v_jᵀ (F×D)
 * and z = Σ_j φ(k_j) (F). Both are kept as one F×(D+1) state, z being the
 * last column (the state of V extended by a column of ones).
 *
 * Kernels, all specialised by the -D parameters below:
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

/* ---- tensor cores (TC, NVIDIA sm_80+) ----------------------------------
 * f32 products on mma.sync m16n8k8 TF32 (10-bit mantissas) kept f32-accurate
 * by splitting each operand x = hi + lo, hi = x rounded to TF32 and lo the
 * remainder truncated to TF32, and summing a·b ≈ lo_a·hi_b + hi_a·lo_b +
 * hi_a·hi_b (lo_a·lo_b < 2^-21·|a·b| is dropped): relative error per
 * product ~2^-21, the f32 FMA path's order. Fragments (PTX ISA, m16n8k8
 * .tf32; g = lane / 4, t = lane % 4): A a0 (g, t), a1 (g + 8, t), a2 (g, t + 4),
 * a3 (g + 8, t + 4); B b0 (k t, n g), b1 (k t + 4, n g); C c0, c1 (g, 2t, 2t + 1),
 * c2, c3 (g + 8, 2t, 2t + 1). */
#if TC
inline uint tf32_hi(float x) {
  uint r;
  __asm__("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
#define SPLIT(x, hi, lo)                                                                          \
  do {                                                                                            \
    const float x_ = (x);                                                                         \
    hi = tf32_hi(x_);                                                                             \
    lo = as_uint(x_ - as_float(hi)) & 0xffffe000u;                                                \
  } while (0)
#define MMA8(c, a, b)                                                                             \
  __asm__("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "     \
          "{%8,%9}, {%0,%1,%2,%3};"                                                               \
          : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                        \
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
/* c += a·b to f32 accuracy (small terms first). */
#define MMA3(c, ah, al, bh, bl)                                                                   \
  do {                                                                                            \
    MMA8(c, al, bh);                                                                              \
    MMA8(c, ah, bl);                                                                              \
    MMA8(c, ah, bh);                                                                              \
  } while (0)
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

/* ---------------------------------------------------------------------- */

#if FAVOR
/* Features of N rows per batch·head of X (Hx heads per batch): Φ[bh][row]
 * = exp(a − max_f a) (FPS floats, 0 past F); keys also RMx[bh][row] = max_f a. */
__kernel __attribute__((reqd_work_group_size(NTF, 1, 1))) void
lin_feat(__global const stype *restrict X, const long sb, const long sh, const long ss,
         const long sd, const int Hx, const int N, const float sq,
         __global const float *restrict Wt, __global float *restrict Phi,
         __global float *restrict RMx, const int is_key) {
  __local float4 Xs4[FDS * LDX / 4];  /* [c][row] */
  __local float4 Ws4[FDS * LDW / 4];  /* [c][f] */
  __local float red[FBR * (FTF > FDS ? FTF : FDS)]; /* partial maxima, partial norms */
  __local float nrm[FBR];                           /* ‖x‖² per row */
  __local float *Xs = (__local float *)Xs4;
  __local float *Ws = (__local float *)Ws4;
  const int lid = get_local_id(0);
  const int tr = lid / FTF, tf = lid % FTF;
  const int r0 = get_group_id(0) * FBR, bh = get_group_id(1);
  const int b = bh / Hx, h = bh % Hx;
  __global const stype *Xb = X + (long)b * sb + (long)h * sh;

  float acc[FRR][FRF], np[NXI], xr[NXI];
  float4 wr[NWL];
  UNROLL for (int i = 0; i < FRR; i++) UNROLL for (int j = 0; j < FRF; j++) acc[i][j] = 0.0f;
  UNROLL for (int u = 0; u < NXI; u++) np[u] = 0.0f;

  /* Software pipeline over head-dim slices: the next slice of x and ω is
   * loaded into registers while the current one is multiplied. Each
   * work-item stages the same (row, column % FDS) positions of x in every
   * slice and sums their squares (np) towards ‖x‖². */
#define FEAT_FETCH(c0)                                                                            \
  do {                                                                                            \
    UNROLL for (int u = 0; u < NXI; u++) {                                                        \
      const int idx = lid + u * NTF, r = idx / FDS, c = (c0) + idx % FDS;                         \
      xr[u] = (idx < FBR * FDS && r0 + r < N && c < D)                                            \
                  ? LOAD(Xb, (long)(r0 + r) * ss + (long)c * sd) * sq                             \
                  : 0.0f;                                                                         \
    }                                                                                             \
    UNROLL for (int u = 0; u < NWL; u++) {                                                        \
      const int idx = lid + u * NTF, c = (c0) + idx / (FFP / 4), f = 4 * (idx % (FFP / 4));       \
      wr[u] = (idx < FDS * (FFP / 4) && c < D && f < FPS)                                         \
                  ? *(__global const float4 *)(Wt + c * FPS + f)                                  \
                  : (float4)(0.0f);                                                               \
    }                                                                                             \
  } while (0)

  FEAT_FETCH(0);
  for (int c0 = 0; c0 < D; c0 += FDS) {
    BARRIER;
    UNROLL for (int u = 0; u < NXI; u++) {
      const int idx = lid + u * NTF;
      if (idx < FBR * FDS) {
        Xs[(idx % FDS) * LDX + idx / FDS] = xr[u];
        np[u] = fma(xr[u], xr[u], np[u]);
      }
    }
    UNROLL for (int u = 0; u < NWL; u++) {
      const int idx = lid + u * NTF;
      if (idx < FDS * (FFP / 4))
        *(__local float4 *)(Ws + (idx / (FFP / 4)) * LDW + 4 * (idx % (FFP / 4))) = wr[u];
    }
    BARRIER;
    if (c0 + FDS < D) FEAT_FETCH(c0 + FDS);
    KUNROLL
    for (int c = 0; c < FDS; c++) {
      float a[FRR], w[FRF];
      LOADT(a, FRR, FTR, tr, Xs + c * LDX);
      LOADT(w, FRF, FTF, tf, Ws + c * LDW);
      UNROLL for (int i = 0; i < FRR; i++) UNROLL for (int j = 0; j < FRF; j++)
          acc[i][j] = fma(a[i], w[j], acc[i][j]);
    }
  }
  /* ‖x‖² of each row from the partial sums. */
  UNROLL for (int u = 0; u < NXI; u++) {
    const int idx = lid + u * NTF;
    if (idx < FBR * FDS) red[idx] = np[u];
  }
  BARRIER;
  FOR_ITEMS(r, FBR, NTF, lid) {
    float sum = 0.0f;
    for (int c = 0; c < FDS; c++) sum += red[r * FDS + c];
    nrm[r] = sum;
  }
  BARRIER;
  UNROLL for (int i = 0; i < FRR; i++) {
    const int r = RIDX(FTR, FRR, tr, i);
    const float hn = 0.5f * nrm[r];
    float m = -INFINITY;
    UNROLL for (int j = 0; j < FRF; j++) {
      const int f = RIDX(FTF, FRF, tf, j);
      acc[i][j] = f < F ? acc[i][j] - hn : -INFINITY;
      m = fmax(m, acc[i][j]);
    }
    red[r * FTF + tf] = m;
  }
  BARRIER;
  UNROLL for (int i = 0; i < FRR; i++) {
    const int r = RIDX(FTR, FRR, tr, i), row = r0 + r;
    float m = -INFINITY;
    for (int u = 0; u < FTF; u++) m = fmax(m, red[r * FTF + u]);
    if (row < N) {
      __global float *pr = Phi + ((long)bh * N + row) * FPS;
      UNROLL for (int j = 0; j < FRF; j++) {
        const int f = RIDX(FTF, FRF, tf, j);
        if (f < FPS) pr[f] = exp(acc[i][j] - m); /* exp(-inf) = 0 past F */
      }
      if (is_key && tf == 0) RMx[(long)bh * N + row] = m;
    }
  }
}
#endif

/* ---------------------------------------------------------------------- */

/* State of the keys [s·L, min(s·L + L, Nk)) of one batch·kv-head, columns
 * [ct·BD, ct·BD + BD) (and z from column block 0): S[bhk][s] (F×DE floats);
 * FAVOR+: its maximum CM[bhk][s] (the split's largest m_j: every key of the
 * split is weighed against it, w_j = exp(m_j − M) <= 1).
 * Software pipeline: the next tile's global loads are issued before the
 * current tile's products (register prefetch, two local buffers, one
 * barrier per tile); z is summed while the tiles are staged. */
#define NKL CDIV(BKS * (SKP / 4), SNT) /* key-feature float4s per work-item and tile */
#define NVL CDIV(BKS * (BD / 4), SNT)  /* value float4s per work-item and tile */
#define KSZ (BKS * SLDK)               /* floats of one key-feature buffer */
#if TC
#define VSZ (2 * BKS * SLDV) /* TF32 hi parts, then lo parts (split once, read by every warp) */
#else
#define VSZ (BKS * SLDV)
#endif
#ifndef ZLOC
#define ZLOC 0 /* z partials in local memory (fewer registers) instead of registers */
#endif

__kernel __attribute__((reqd_work_group_size(SNT, 1, 1))) void
lin_state(__global const stype *restrict K, __global const stype *restrict V,
          __global const float *restrict PhiK, __global const float *restrict RMk,
          __global float *restrict S, __global float *restrict CM, const long ksb, const long ksh,
          const long kss, const long ksd, const long vsb, const long vsh, const long vss,
          const long vsd, const int Hk, const int Nk, const int L, const int nsplit,
          const float sqk) {
  __local float4 Ks4[2 * KSZ / 4]; /* φ(k) rows [key][f], two buffers; z partials at the end */
  __local float4 Vs4[2 * VSZ / 4]; /* (w·v) rows [key][col], two buffers */
  __local float red[SNT];
#if ZLOC
  __local float4 zl[BKS * (SKP / 4)]; /* z partials, one per staged position */
#endif
  const int lid = get_local_id(0);
  const int tf = lid / STC, tc = lid % STC;
  const int s = get_group_id(0), ct = get_group_id(1), bhk = get_group_id(2);
  const int b = bhk / Hk, hk = bhk % Hk;
  const int col0 = ct * BD;
#if ILV
  const int k0 = 0, klim = Nk, ntot = (Nk + BKS - 1) / BKS;
  (void)k0;
  const int ntile = s < ntot ? (ntot - s + nsplit - 1) / nsplit : 0;
#define TILE0(t) ((s + (t)*nsplit) * BKS) /* first key of the split's tile t */
  (void)L;
#else
  const int k0 = s * L, klim = min(k0 + L, Nk);
  const int ntile = (klim - k0 + BKS - 1) / BKS;
#define TILE0(t) (k0 + (t)*BKS)
#endif
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  __global const float *Pk = PhiK + (long)bhk * Nk * FPS;
  __global const float *Rk = RMk + (long)bhk * Nk;
  (void)Kb;
  (void)Pk;
  (void)Rk;
  (void)red;

  float M = 0.0f;
#if FAVOR
  {
    float m = -INFINITY;
    for (int j = lid; j < ntile * BKS; j += SNT) {
      const int key = TILE0(j / BKS) + j % BKS;
      if (key < klim) m = fmax(m, Rk[key]);
    }
    red[lid] = m;
    BARRIER;
    m = -INFINITY;
    for (int u = 0; u < SNT; u++) m = fmax(m, red[u]);
    M = m; /* finite: the split holds a key */
  }
#endif

#if TC
  /* Warp wq owns the features [fw, fw + 16·STM) × the BD columns. */
  const int wq = lid >> 5, gq = (lid & 31) >> 2, tq = lid & 3, fw = wq * (STM * 16);
  float acc[STM][BD / 8][4];
  UNROLL for (int m = 0; m < STM; m++) UNROLL for (int j = 0; j < BD / 8; j++)
      UNROLL for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;
  (void)tf;
  (void)tc;
#else
  float acc[SRF][SRC];
  UNROLL for (int i = 0; i < SRF; i++) UNROLL for (int j = 0; j < SRC; j++) acc[i][j] = 0.0f;
#endif
  float4 kr[NKL], vr[NVL];
#if FAVOR
  float kw[NKL], vw[NVL];
#endif
#if ZLOC
#define ZP(u) zl[lid + (u)*SNT]
  UNROLL for (int u = 0; u < NKL; u++) if (lid + u * SNT < BKS * (SKP / 4)) ZP(u) = (float4)(0.0f);
#else
  float4 zp[NKL];
#define ZP(u) zp[u]
  UNROLL for (int u = 0; u < NKL; u++) zp[u] = (float4)(0.0f);
#endif

/* Global loads of tile t into the registers. */
#define STATE_FETCH(t)                                                                            \
  do {                                                                                            \
    const int kk_ = TILE0(t);                                                                     \
    UNROLL for (int u = 0; u < NKL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (SKP / 4), f = 4 * (idx % (SKP / 4));              \
      const int key = kk_ + j;                                                                    \
      const bool ok = idx < BKS * (SKP / 4) && key < klim && f < F;                               \
      kr[u] = (float4)(0.0f);                                                                     \
      STATE_FETCH_K                                                                               \
    }                                                                                             \
    UNROLL for (int u = 0; u < NVL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (BD / 4), c = 4 * (idx % (BD / 4));                \
      const int key = kk_ + j;                                                                    \
      vr[u] = (float4)(0.0f);                                                                     \
      STATE_FETCH_V0                                                                              \
      if (idx < BKS * (BD / 4) && key < klim) {                                                   \
        vr[u] = ld4(Vb, (long)key * vss, vsd, col0 + c);                                          \
        STATE_FETCH_VW                                                                            \
      }                                                                                           \
    }                                                                                             \
  } while (0)
#if FAVOR
#define STATE_FETCH_K                                                                             \
  kw[u] = -INFINITY;                                                                              \
  if (ok) {                                                                                       \
    kr[u] = *(__global const float4 *)(Pk + (long)key * FPS + f);                                 \
    kw[u] = Rk[key];                                                                              \
  }
#define STATE_FETCH_VW vw[u] = Rk[key];
#define STATE_FETCH_V0 vw[u] = -INFINITY;
#else
#define STATE_FETCH_V0
#define STATE_FETCH_K                                                                             \
  if (ok) kr[u] = ld4(Kb, (long)key * kss, ksd, f);
#define STATE_FETCH_VW
#endif
#if TC
#define STATE_PUT_V(p, x)                                                                         \
  do {                                                                                            \
    uint4 h_, l_;                                                                                 \
    SPLIT((x).x, h_.x, l_.x);                                                                     \
    SPLIT((x).y, h_.y, l_.y);                                                                     \
    SPLIT((x).z, h_.z, l_.z);                                                                     \
    SPLIT((x).w, h_.w, l_.w);                                                                     \
    *(__local uint4 *)(p) = h_;                                                                   \
    *(__local uint4 *)((p) + BKS * SLDV) = l_;                                                    \
  } while (0)
#else
#define STATE_PUT_V(p, x) (*(__local float4 *)(p) = (x))
#endif
/* The registers into buffer `buf` (features, weights) and the z partials. */
#define STATE_STORE(t, buf)                                                                       \
  do {                                                                                            \
    const int kk_ = TILE0(t);                                                                     \
    __local float *Kd = (__local float *)Ks4 + (buf)*KSZ;                                         \
    __local float *Vd = (__local float *)Vs4 + (buf)*VSZ;                                         \
    UNROLL for (int u = 0; u < NKL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (SKP / 4), f = 4 * (idx % (SKP / 4));              \
      if (idx < BKS * (SKP / 4)) {                                                                \
        const bool ok = kk_ + j < klim && f < F;                                                  \
        float4 x = kr[u];                                                                         \
        STATE_STORE_K                                                                             \
        *(__local float4 *)(Kd + j * SLDK + f) = x;                                               \
      }                                                                                           \
    }                                                                                             \
    UNROLL for (int u = 0; u < NVL; u++) {                                                        \
      const int idx = lid + u * SNT, j = idx / (BD / 4), c = 4 * (idx % (BD / 4));                \
      if (idx < BKS * (BD / 4)) {                                                                 \
        float4 x = vr[u];                                                                         \
        STATE_STORE_V                                                                             \
        STATE_PUT_V(Vd + j * SLDV + c, x);                                                        \
      }                                                                                           \
    }                                                                                             \
  } while (0)
#if FAVOR
#define STATE_STORE_K ZP(u) += x * exp(kw[u] - M); /* kw = -inf: weight 0 */
#define STATE_STORE_V x *= exp(vw[u] - M);
#else
#define STATE_STORE_K                                                                             \
  x = ok ? phi4(x * sqk) : (float4)(0.0f);                                                        \
  ZP(u) += x;
#define STATE_STORE_V
#endif

  if (ntile > 0) {
    STATE_FETCH(0);
    STATE_STORE(0, 0);
  }
  BARRIER;
  for (int t = 0; t < ntile; t++) {
    const int buf = t & 1;
    if (t + 1 < ntile) STATE_FETCH(t + 1);
    __local const float *Kc = (__local const float *)Ks4 + buf * KSZ;
    __local const float *Vc = (__local const float *)Vs4 + buf * VSZ;
#if TC
    /* 8 keys per step: A = φ(K)ᵀ (features × keys), B = [w·v] (keys × columns). */
    UNROLL for (int ks = 0; ks < BKS; ks += 8) {
      __local const float *k0p = Kc + (ks + tq) * SLDK + fw + gq;
      __local const float *v0p = Vc + (ks + tq) * SLDV + gq;
      uint ah[STM][4], al[STM][4];
      UNROLL for (int m = 0; m < STM; m++) {
        SPLIT(k0p[m * 16], ah[m][0], al[m][0]);
        SPLIT(k0p[m * 16 + 8], ah[m][1], al[m][1]);
        SPLIT(k0p[4 * SLDK + m * 16], ah[m][2], al[m][2]);
        SPLIT(k0p[4 * SLDK + m * 16 + 8], ah[m][3], al[m][3]);
      }
      UNROLL for (int j = 0; j < BD / 8; j++) {
        const uint vh[2] = {as_uint(v0p[8 * j]), as_uint(v0p[4 * SLDV + 8 * j])};
        const uint vl[2] = {as_uint(v0p[BKS * SLDV + 8 * j]),
                            as_uint(v0p[BKS * SLDV + 4 * SLDV + 8 * j])};
        UNROLL for (int m = 0; m < STM; m++) MMA3(acc[m][j], ah[m], al[m], vh, vl);
      }
    }
#else
    KUNROLL_S
    for (int j = 0; j < BKS; j++) {
      float a[SRF], v[SRC];
      LOADT(a, SRF, STF, tf, Kc + j * SLDK);
      LOADT(v, SRC, STC, tc, Vc + j * SLDV);
      UNROLL for (int i = 0; i < SRF; i++) UNROLL for (int u = 0; u < SRC; u++)
          acc[i][u] = fma(a[i], v[u], acc[i][u]);
    }
#endif
    if (t + 1 < ntile) STATE_STORE(t + 1, buf ^ 1);
    BARRIER;
  }

  __global float *Sc = S + ((long)bhk * nsplit + s) * (long)(F * DE);
#if TC
  UNROLL for (int m = 0; m < STM; m++) UNROLL for (int j = 0; j < BD / 8; j++)
      UNROLL for (int e = 0; e < 4; e++) {
    const int f = fw + m * 16 + gq + (e >> 1) * 8, col = col0 + 8 * j + 2 * tq + (e & 1);
    if (f < F && col < D) Sc[f * DE + col] = acc[m][j][e];
  }
#else
  UNROLL for (int i = 0; i < SRF; i++) {
    const int f = RIDX(STF, SRF, tf, i);
    if (f < F) {
      UNROLL for (int u = 0; u < SRC; u++) {
        const int col = col0 + RIDX(STC, SRC, tc, u);
        if (col < D) Sc[f * DE + col] = acc[i][u];
      }
    }
  }
#endif
  /* z = Σ over the keys of the partials, from column block 0. */
  {
#if ZLOC
    __local const float *zf = (__local const float *)zl; /* complete after the last barrier */
#else
    __local float4 *zr = Ks4; /* BKS × SKP/4 float4s: free after the last barrier */
    UNROLL for (int u = 0; u < NKL; u++) {
      const int idx = lid + u * SNT;
      if (idx < BKS * (SKP / 4)) zr[idx] = zp[u];
    }
    BARRIER;
    __local const float *zf = (__local const float *)Ks4;
#endif
    if (ct == 0) {
      for (int f = lid; f < F; f += SNT) {
        float z = 0.0f;
        for (int j = 0; j < BKS; j++) z += zf[j * SKP + f];
        Sc[f * DE + D] = z;
      }
    }
  }
#if FAVOR
  if (ct == 0 && lid == 0) CM[(long)bhk * nsplit + s] = M;
#else
  (void)RMk;
  (void)CM;
#endif
}

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

/* ---------------------------------------------------------------------- */

#if !CAUSAL && !TC
/* o = φ(q)ᵀS / φ(q)ᵀz for BD columns of `bpw` consecutive blocks of BQ rows,
 * S the total (split 0). The work-group walks (block, feature slice)
 * iterations as one software pipeline: the next iteration's φ(Q) slice (and
 * S slice unless S is resident, SRES) is loaded into registers while the
 * current one is multiplied; den = φ(q)ᵀz is summed while the slices are
 * staged (z of every feature in local memory; the partial sums in dred, one
 * slot per staged position, reduced per row when the block is complete). */
#define NSLA CDIV(F, AFS)
#define FZ (NSLA * AFS)
#ifndef SRES
#define SRES 0 /* the whole S (FZ × BD) stays in local memory */
#endif
#define NQL CDIV(BQ * (AFS / 4), NTA) /* φ(q) float4s per work-item and iteration */
#define NSS CDIV(AFS * BD, NTA)       /* S elements per work-item and iteration (!SRES) */

__kernel __attribute__((reqd_work_group_size(NTA, 1, 1))) void
lin_apply(__global const stype *restrict Q, __global const float *restrict PhiQ,
          __global const float *restrict S, __global stype *restrict O, const long qsb,
          const long qsh, const long qss, const long qsd, const long osb, const long osh,
          const long oss, const long osd, const int H, const int G, const int Nq,
          const int nsplit, const float sqq, const int bpw) {
  __local float4 Qs4[AFS * LDQA / 4]; /* φ(q) slice transposed [f][row] */
#if SRES
  __local float4 Ss4[FZ * LDV / 4]; /* all of S [f][col] */
#else
  __local float4 Ss4[AFS * LDV / 4]; /* S slice [f][col] */
#endif
  __local float4 Z4[FZ / 4];                 /* z, 0 past F */
  __local float dred[BQ * (AFS / 4)];        /* den partials of the block */
  __local float *Qs = (__local float *)Qs4;
  __local float *Ss = (__local float *)Ss4;
  __local float *Z = (__local float *)Z4;
  const int lid = get_local_id(0);
  const int tr = lid / ATC, tc = lid % ATC;
  const int g = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int nqb = (Nq + BQ - 1) / BQ;
#if ILV
  const int ng = get_num_groups(0), nit = (g < nqb ? (nqb - g + ng - 1) / ng : 0) * NSLA;
#define QBLK(i) (g + (i)*ng) /* the work-group's i-th row block */
  (void)bpw;
#else
  const int qb0 = g * bpw, nit = min(bpw, nqb - qb0) * NSLA;
#define QBLK(i) (qb0 + (i))
#endif
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Sb = S + (long)bhk * nsplit * (F * DE);
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  (void)Qb;
  (void)Pq;

  FOR_ITEMS(f, FZ, NTA, lid) Z[f] = f < F ? Sb[f * DE + D] : 0.0f;
#if SRES
  FOR_ITEMS(idx, FZ * BD, NTA, lid) {
    const int f = idx / BD, c = idx % BD;
    Ss[f * LDV + c] = (f < F && col0 + c < D) ? Sb[f * DE + col0 + c] : 0.0f;
  }
#endif

  float acc[ARQ][ARC];
  float4 qr[NQL];
#if !SRES
  float sr[NSS];
#endif
  UNROLL for (int i = 0; i < ARQ; i++) UNROLL for (int u = 0; u < ARC; u++) acc[i][u] = 0.0f;

/* Global loads of iteration `it` into the registers. */
#define APPLY_FETCH(it)                                                                           \
  do {                                                                                            \
    const int q0_ = QBLK((it) / NSLA) * BQ, f0_ = ((it) % NSLA) * AFS;                          \
    UNROLL for (int u = 0; u < NQL; u++) {                                                        \
      const int idx = lid + u * NTA, r = idx / (AFS / 4), f = f0_ + 4 * (idx % (AFS / 4));        \
      const int row = q0_ + r;                                                                    \
      qr[u] = (float4)(0.0f);                                                                     \
      APPLY_FETCH_Q                                                                               \
    }                                                                                             \
    APPLY_FETCH_S                                                                                 \
  } while (0)
#if FAVOR
#define APPLY_FETCH_Q                                                                             \
  if (idx < BQ * (AFS / 4) && row < Nq && f < FPS)                                                \
    qr[u] = *(__global const float4 *)(Pq + (long)row * FPS + f);
#else
#define APPLY_FETCH_Q                                                                             \
  if (idx < BQ * (AFS / 4) && row < Nq && f < F) qr[u] = ld4(Qb, (long)row * qss, qsd, f);
#endif
#if SRES
#define APPLY_FETCH_S
#else
#define APPLY_FETCH_S                                                                             \
  UNROLL for (int u = 0; u < NSS; u++) {                                                          \
    const int idx = lid + u * NTA, f = f0_ + idx / BD, c = col0 + idx % BD;                       \
    sr[u] = (idx < AFS * BD && f < F && c < D) ? Sb[f * DE + c] : 0.0f;                           \
  }
#endif

  if (nit > 0) APPLY_FETCH(0);
  for (int it = 0; it < nit; it++) {
    const int sl = it % NSLA, q0 = QBLK(it / NSLA) * BQ, f0 = sl * AFS;
    BARRIER; /* the previous slice is consumed (first time: Z, S staged) */
    UNROLL for (int u = 0; u < NQL; u++) {
      const int idx = lid + u * NTA, r = idx / (AFS / 4), f = 4 * (idx % (AFS / 4));
      if (idx < BQ * (AFS / 4)) {
        float4 x = qr[u];
#if !FAVOR
        if (q0 + r < Nq && f0 + f < F) x = phi4(x * sqq);
#endif
        Qs[(f + 0) * LDQA + r] = x.x;
        Qs[(f + 1) * LDQA + r] = x.y;
        Qs[(f + 2) * LDQA + r] = x.z;
        Qs[(f + 3) * LDQA + r] = x.w;
        /* den partial of this staged position (its own slot until the block ends) */
        dred[idx] = (sl == 0 ? 0.0f : dred[idx]) + dot(x, Z4[(f0 + f) / 4]);
      }
    }
#if !SRES
    UNROLL for (int u = 0; u < NSS; u++) {
      const int idx = lid + u * NTA;
      if (idx < AFS * BD) Ss[(idx / BD) * LDV + idx % BD] = sr[u];
    }
#endif
    BARRIER;
    if (it + 1 < nit) APPLY_FETCH(it + 1);
    __local const float *Sc = Ss + (SRES ? f0 : 0) * LDV;
    KUNROLL
    for (int f = 0; f < AFS; f++) {
      float a[ARQ], sv[ARC];
      LOADT(a, ARQ, ATR, tr, Qs + f * LDQA);
      LOADT(sv, ARC, ATC, tc, Sc + f * LDV);
      UNROLL for (int i = 0; i < ARQ; i++) UNROLL for (int u = 0; u < ARC; u++)
          acc[i][u] = fma(a[i], sv[u], acc[i][u]);
    }
    if (sl == NSLA - 1) {
      /* The block is complete: o = acc / den, then the next block. */
      UNROLL for (int i = 0; i < ARQ; i++) {
        const int r = RIDX(ATR, ARQ, tr, i), row = q0 + r;
        float den = 0.0f;
        for (int u = 0; u < AFS / 4; u++) den += dred[r * (AFS / 4) + u];
        if (row < Nq) {
          /* |acc| <= den·max|v| since every weight is >= 0: the quotient is
           * finite; den == 0 (no key has weight) gives a zero row. */
          const float rd = den > 0.0f ? 1.0f / den : 0.0f;
          const long ro = (long)row * oss;
          STORE_ROW(acc[i], ARC, ATC, tc, Ob, ro, osd, col0, rd);
        }
        UNROLL for (int u = 0; u < ARC; u++) acc[i][u] = 0.0f;
      }
    }
  }
}
#endif

/* ---------------------------------------------------------------------- */

#if !CAUSAL && TC
/* The same on tensor cores: o = φ(q)ᵀS / φ(q)ᵀz for BD columns of `bpw`
 * consecutive blocks of TBQ rows. Sᵀ (S transposed, [column][feature]) and z
 * stay in local memory; warp wq takes TAM m-tiles of 16 rows of a block and
 * reads its φ(q) A fragments straight from global memory: the feature order
 * inside each 16-feature chunk is permuted (a product does not depend on
 * it) so that lane (g, t) holds features 4t..4t+3 of rows g and g + 8, one
 * float4 each, steps 0 and 1 of the chunk taking (4t, 4t+1) and (4t+2,
 * 4t+3); the B fragments of Sᵀ follow the same order (one float4 per n-tile
 * and chunk, rows = 16 (mod 32) floats apart: no bank conflicts). The
 * columns are permuted as well, logical column c of n-tile j being
 * 16(j/2) + 4(c/2) + 2(j%2) + c%2, so that each lane's accumulators are 4
 * consecutive columns of a row: float4 stores. den = φ(q)ᵀz in f32 FMAs
 * beside the products, summed over the 4 lanes of a row by shuffles. */
#define TBQ (TAW * TAM * 16)
#define TFZ (CDIV(F, 16) * 16)
#define LDST (TFZ + (TFZ % 32 ? 0 : 16))
#ifndef SPRE
#define SPRE 0 /* Sᵀ kept split (TF32 hi and lo parts, twice the local memory) */
#endif
#define TNT (TAW * 32)

__kernel __attribute__((reqd_work_group_size(TNT, 1, 1))) void
lin_apply(__global const stype *restrict Q, __global const float *restrict PhiQ,
          __global const float *restrict S, __global stype *restrict O, const long qsb,
          const long qsh, const long qss, const long qsd, const long osb, const long osh,
          const long oss, const long osd, const int H, const int G, const int Nq,
          const int nsplit, const float sqq, const int bpw) {
  __local float4 St4[(SPRE ? 2 : 1) * BD * LDST / 4]; /* Sᵀ [column][feature], 0 past F and D */
  __local float4 Z4[TFZ / 4];        /* z, 0 past F */
  __local float *St = (__local float *)St4;
  __local float *Z = (__local float *)Z4;
  const int lid = get_local_id(0);
  const int wq = lid >> 5, gq = (lid & 31) >> 2, tq = lid & 3;
  const int g = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int nqb = (Nq + TBQ - 1) / TBQ;
#if ILV
  const int ng = get_num_groups(0), nblk = g < nqb ? (nqb - g + ng - 1) / ng : 0;
#define QBLK(i) (g + (i)*ng)
  (void)bpw;
#else
  const int qb0 = g * bpw, nblk = min(bpw, nqb - qb0);
#define QBLK(i) (qb0 + (i))
#endif
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Sb = S + (long)bhk * nsplit * (F * DE);
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  (void)Qb;
  (void)Pq;

  FOR_ITEMS(f, TFZ, TNT, lid) Z[f] = f < F ? Sb[f * DE + D] : 0.0f;
  FOR_ITEMS(idx, TFZ * BD, TNT, lid) {
    const int f = idx / BD, c = idx % BD;
    const float x = (f < F && col0 + c < D) ? Sb[f * DE + col0 + c] : 0.0f;
#if SPRE
    uint hi, lo;
    SPLIT(x, hi, lo);
    St[c * LDST + f] = as_float(hi);
    St[(BD + c) * LDST + f] = as_float(lo);
#else
    St[c * LDST + f] = x;
#endif
  }
  BARRIER;
  /* Sᵀ row of this lane's B column in n-tile j: 16(j/2) + 4(g/2) + 2(j%2) + g%2. */
  __local const float *Sg = St + (4 * (gq >> 1) + (gq & 1)) * LDST + 4 * tq;

  /* The raw inputs of a block (rows g and g + 8 of each m-tile, features
   * 16i + 4t..+3) are loaded one block ahead (registers, APF: F <= 64) and
   * turned into features when used, so the loads overlap the products. */
#define NCH (TFZ / 16)
#define APF (TFZ <= 64)
#if FAVOR
#define RAW4(valid, ro, phr, f) ((valid) && (f) < FPS ? *(__global const float4 *)((phr) + (f)) : (float4)(0.0f))
#define USE4(valid, x, f) (x)
#else
#define RAW4(valid, ro, phr, f) ((valid) && (f) < F ? ld4(Qb, (ro), qsd, (f)) : (float4)(0.0f))
#define USE4(valid, x, f) ((valid) && (f) < F ? phi4((x)*sqq) : (float4)(0.0f))
#endif
#define FETCHQ(x, blk_)                                                                            \
  do {                                                                                            \
    const int rr_ = QBLK(blk_) * TBQ + wq * (TAM * 16) + gq;                                      \
    UNROLL for (int m = 0; m < TAM; m++) UNROLL for (int i = 0; i < NCH; i++) {                   \
      const int ra_ = rr_ + m * 16, f_ = 16 * i + 4 * tq;                                         \
      x[m][i][0] = RAW4(ra_ < Nq, (long)ra_ * qss, Pq + (long)ra_ * FPS, f_);                     \
      x[m][i][1] = RAW4(ra_ + 8 < Nq, (long)(ra_ + 8) * qss, Pq + (long)(ra_ + 8) * FPS, f_);     \
    }                                                                                             \
  } while (0)
#if APF
  float4 xn[TAM][NCH][2];
  if (nblk > 0) FETCHQ(xn, 0);
#endif

  for (int blk = 0; blk < nblk; blk++) {
    const int r0 = QBLK(blk) * TBQ + wq * (TAM * 16) + gq;
    float acc[TAM][BD / 8][4];
    float den[TAM][2];
    UNROLL for (int m = 0; m < TAM; m++) {
      den[m][0] = den[m][1] = 0.0f;
      UNROLL for (int j = 0; j < BD / 8; j++) UNROLL for (int e = 0; e < 4; e++) acc[m][j][e] = 0.0f;
    }
#if APF
    float4 xc[TAM][NCH][2];
    UNROLL for (int m = 0; m < TAM; m++) UNROLL for (int i = 0; i < NCH; i++) {
      xc[m][i][0] = xn[m][i][0];
      xc[m][i][1] = xn[m][i][1];
    }
    if (blk + 1 < nblk) FETCHQ(xn, blk + 1);
#endif
    UNROLL for (int i = 0; i < NCH; i++) {
      const int f = 16 * i + 4 * tq;
      const float4 z4 = Z4[4 * i + tq];
      /* A fragments of both steps of the chunk, per m-tile: [m][step]. */
      uint ah[TAM][2][4], al[TAM][2][4];
      UNROLL for (int m = 0; m < TAM; m++) {
        const int ra = r0 + m * 16, rb = ra + 8;
#if APF
        const float4 xa = USE4(ra < Nq, xc[m][i][0], f), xb = USE4(rb < Nq, xc[m][i][1], f);
#else
        const float4 xa = USE4(ra < Nq, RAW4(ra < Nq, (long)ra * qss, Pq + (long)ra * FPS, f), f);
        const float4 xb = USE4(rb < Nq, RAW4(rb < Nq, (long)rb * qss, Pq + (long)rb * FPS, f), f);
#endif
        den[m][0] += dot(xa, z4);
        den[m][1] += dot(xb, z4);
        SPLIT(xa.s0, ah[m][0][0], al[m][0][0]);
        SPLIT(xb.s0, ah[m][0][1], al[m][0][1]);
        SPLIT(xa.s1, ah[m][0][2], al[m][0][2]);
        SPLIT(xb.s1, ah[m][0][3], al[m][0][3]);
        SPLIT(xa.s2, ah[m][1][0], al[m][1][0]);
        SPLIT(xb.s2, ah[m][1][1], al[m][1][1]);
        SPLIT(xa.s3, ah[m][1][2], al[m][1][2]);
        SPLIT(xb.s3, ah[m][1][3], al[m][1][3]);
      }
      UNROLL for (int j = 0; j < BD / 8; j++) {
        const float4 s4 =
            *(__local const float4 *)(Sg + (16 * (j >> 1) + 2 * (j & 1)) * LDST + 16 * i);
#if SPRE
        const uint4 h4 = as_uint4(s4);
        const uint4 l4 = *(__local const uint4 *)(Sg + (BD + 16 * (j >> 1) + 2 * (j & 1)) * LDST + 16 * i);
        const uint bh0[2] = {h4.x, h4.y}, bl0[2] = {l4.x, l4.y};
        const uint bh1[2] = {h4.z, h4.w}, bl1[2] = {l4.z, l4.w};
#else
        uint bh0[2], bl0[2], bh1[2], bl1[2];
        SPLIT(s4.s0, bh0[0], bl0[0]);
        SPLIT(s4.s1, bh0[1], bl0[1]);
        SPLIT(s4.s2, bh1[0], bl1[0]);
        SPLIT(s4.s3, bh1[1], bl1[1]);
#endif
        UNROLL for (int m = 0; m < TAM; m++) {
          MMA3(acc[m][j], ah[m][0], al[m][0], bh0, bl0);
          MMA3(acc[m][j], ah[m][1], al[m][1], bh1, bl1);
        }
      }
    }
    UNROLL for (int m = 0; m < TAM; m++) {
      float da = den[m][0], db = den[m][1];
      da += shfl_xor(da, 1);
      da += shfl_xor(da, 2);
      db += shfl_xor(db, 1);
      db += shfl_xor(db, 2);
      /* Weights are >= 0: den == 0 (no key has weight) gives a zero row. */
      const float rda = da > 0.0f ? 1.0f / da : 0.0f, rdb = db > 0.0f ? 1.0f / db : 0.0f;
      const int ra = r0 + m * 16, rb = ra + 8;
      UNROLL for (int p = 0; p < BD / 16; p++) {
        const int c = col0 + 16 * p + 4 * tq;
        if (ra < Nq)
          st4(Ob, (long)ra * oss, osd, c,
              (float4)(acc[m][2 * p][0], acc[m][2 * p][1], acc[m][2 * p + 1][0],
                       acc[m][2 * p + 1][1]) *
                  rda);
        if (rb < Nq)
          st4(Ob, (long)rb * oss, osd, c,
              (float4)(acc[m][2 * p][2], acc[m][2 * p][3], acc[m][2 * p + 1][2],
                       acc[m][2 * p + 1][3]) *
                  rdb);
      }
    }
  }
}
#endif

#if CAUSAL
/* Union of local tiles: the slice phase (Qs, Kr, Ps) and the AV phase (At). */
#define U_QS 0
#define U_KR (U_QS + CFS * LDQC)
#define U_PS (U_KR + CPK * LDKR)
#define U_SLICE (U_PS + CFS * LDV)
#define U_AT (CPK * LDQC)
#define U_SIZE (U_SLICE > U_AT ? U_SLICE : U_AT)

/* Segment s of the keys ([s·L, s·L + L), L a multiple of CH) and the queries
 * at those positions, columns [ct·BD, ct·BD + BD), one batch·head. Pin: the
 * prefix states S[bhk][s] from lin_scan (PM their maxima), used when
 * has_prefix; Pw: this work-group's scratch state (F × BDE floats). */
__kernel __attribute__((reqd_work_group_size(NTC, 1, 1))) void
lin_causal(__global const stype *restrict Q, __global const stype *restrict K,
           __global const stype *restrict V, __global const float *restrict PhiQ,
           __global const float *restrict PhiK, __global const float *restrict RMk,
           __global const float *Pin, __global const float *restrict PM, __global float *Pw,
           __global stype *restrict O, const long qsb, const long qsh, const long qss,
           const long qsd, const long ksb, const long ksh, const long kss, const long ksd,
           const long vsb, const long vsh, const long vss, const long vsd, const long osb,
           const long osh, const long oss, const long osd, const int H, const int G, const int Nq,
           const int Nk, const int L, const int nseg, const int has_prefix, const float sqq,
           const float sqk) {
  __local float4 U4[(U_SIZE + 3) / 4];
  __local float4 Vs4[CPK * LDV / 4]; /* (w·v) rows [key][col] */
  __local float Zs[CFS];             /* z slice of P */
  __local float Ws[CPK];             /* w_j */
  __local float *U = (__local float *)U4;
  __local float *Qs = U + U_QS; /* φ(q) slice, transposed [f][row] */
  __local float *Kr = U + U_KR; /* φ(k) slice, rows [key][f] */
  __local float *Ps = U + U_PS; /* P slice [f][col] */
  __local float *At = U;        /* masked scores, transposed [key][row] */
  __local float *Vs = (__local float *)Vs4;
  const int lid = get_local_id(0);
  const int tr = lid / CTC, tc = lid % CTC;
  const int s = get_group_id(0), ct = get_group_id(1), bh = get_group_id(2);
  const int ncolt = get_num_groups(1);
  const int b = bh / H, h = bh % H, hk = h / G, Hk = H / G;
  const int bhk = b * Hk + hk;
  const int col0 = ct * BD;
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk);
  __global const stype *Qb = Q + (long)b * qsb + (long)h * qsh;
  __global const stype *Kb = K + (long)b * ksb + (long)hk * ksh;
  __global const stype *Vb = V + (long)b * vsb + (long)hk * vsh;
  __global stype *Ob = O + (long)b * osb + (long)h * osh;
  __global const float *Pq = PhiQ + (long)bh * Nq * FPS;
  __global const float *Pk = PhiK + (long)bhk * Nk * FPS;
  __global const float *Pi = Pin + ((long)bhk * nseg + s) * (long)(F * DE);
  __global float *Pws = Pw + (((long)bh * nseg + s) * ncolt + ct) * (long)(F * BDE);
  (void)Qb;
  (void)Kb;
  (void)Pq;
  (void)Pk;
  (void)RMk;
  (void)PM;

  /* Rows before the first key (Nq > Nk) see nothing: zeros. */
  if (s == 0 && off < 0) {
    const int nz = min(-off, Nq);
    for (int idx = lid; idx < nz * BD; idx += NTC) {
      const int r = idx / BD, col = col0 + idx % BD;
      if (col < D) STORE(Ob, (long)r * oss + (long)col * osd, 0.0f);
    }
  }

  float M = -INFINITY;
#if FAVOR
  if (has_prefix) M = PM[(long)bhk * nseg + s];
#endif
  const int cb = s * (L / CH);
  /* Top-left (off 0) with Nq > Nk: the last segment walks on past the keys
   * (chunks of no key add nothing) so that rows Nk.. see every key. */
  const int nqc = (Nq + off + CH - 1) / CH;
  const int ce = s == nseg - 1 ? max(min(cb + L / CH, (Nk + CH - 1) / CH), nqc)
                               : min(cb + L / CH, (Nk + CH - 1) / CH);
  for (int c = cb; c < ce; c++) {
    const int kc0 = c * CH, qc0 = kc0 - off;
    const bool has_q = qc0 + CH > 0 && qc0 < Nq;
    const bool upd = c + 1 < ce;
    const bool first = c == cb;
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE); /* previous chunk done, Pw written */
    float alpha = 1.0f;
#if FAVOR
    FOR_ITEMS(j, CPK, NTC, lid) {
      Ws[j] = (j < CH && kc0 + j < Nk) ? RMk[(long)bhk * Nk + kc0 + j] : -INFINITY;
    }
    BARRIER;
    float mt = -INFINITY;
    for (int j = 0; j < CH; j++) mt = fmax(mt, Ws[j]);
    const float mn = fmax(M, mt); /* finite: the chunk holds a key */
    alpha = exp(M - mn);          /* 0 when M == -inf */
    M = mn;
    BARRIER;
#endif
    FOR_ITEMS(idx, CPK * (BD / 4), NTC, lid) {
      const int j = idx / (BD / 4), cc = 4 * (idx % (BD / 4));
      const int key = kc0 + j;
      float4 x = (float4)(0.0f);
      if (j < CH && key < Nk) {
        x = ld4(Vb, (long)key * vss, vsd, col0 + cc);
#if FAVOR
        x *= exp(RMk[(long)bhk * Nk + key] - M);
#endif
      }
      *(__local float4 *)(Vs + j * LDV + cc) = x;
    }
    FOR_ITEMS(j, CPK, NTC, lid) {
      float w = (j < CH && kc0 + j < Nk) ? 1.0f : 0.0f;
#if FAVOR
      if (w > 0.0f) w = exp(RMk[(long)bhk * Nk + kc0 + j] - M);
#endif
      Ws[j] = w;
    }

    float sc[CRQ][CRK], acc[CRQ][CRC], den[CRQ];
    UNROLL for (int i = 0; i < CRQ; i++) {
      den[i] = 0.0f;
      UNROLL for (int k = 0; k < CRK; k++) sc[i][k] = 0.0f;
      UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = 0.0f;
    }

    for (int f0 = 0; f0 < F; f0 += CFS) {
      BARRIER; /* the previous slice is consumed (and Vs, Ws staged) */
      if (has_q) {
        FOR_ITEMS(idx, CPR * (CFS / 4), NTC, lid) {
          const int r = idx / (CFS / 4), f = 4 * (idx % (CFS / 4));
          const int row = qc0 + r;
          const bool ok = r < CH && row >= 0 && row < Nq;
          const float4 x =
              FEAT4(ok, Qb, (long)row * qss, qsd, sqq, Pq + (long)row * FPS, f0 + f);
          Qs[(f + 0) * LDQC + r] = x.x;
          Qs[(f + 1) * LDQC + r] = x.y;
          Qs[(f + 2) * LDQC + r] = x.z;
          Qs[(f + 3) * LDQC + r] = x.w;
        }
      }
      FOR_ITEMS(idx, CPK * (CFP / 4), NTC, lid) {
        const int j = idx / (CFP / 4), f = 4 * (idx % (CFP / 4));
        const int key = kc0 + j;
        const bool ok = j < CH && key < Nk && f < CFS;
        const float4 x = FEAT4(ok, Kb, (long)key * kss, ksd, sqk, Pk + (long)key * FPS, f0 + f);
        *(__local float4 *)(Kr + j * LDKR + f) = x;
      }
      /* P slice (times alpha): the prefix on the segment's first chunk. */
      if (first) {
        FOR_ITEMS(idx, CFS * BD, NTC, lid) {
          const int f = idx / BD, cc = idx % BD;
          float p = 0.0f;
          if (has_prefix && f0 + f < F && col0 + cc < D) p = Pi[(f0 + f) * DE + col0 + cc] * alpha;
          Ps[f * LDV + cc] = p;
        }
        FOR_ITEMS(f, CFS, NTC, lid) {
          Zs[f] = (has_prefix && f0 + f < F) ? Pi[(f0 + f) * DE + D] * alpha : 0.0f;
        }
      } else {
        FOR_ITEMS(idx, CFS * BD, NTC, lid) {
          const int f = idx / BD, cc = idx % BD;
          Ps[f * LDV + cc] = f0 + f < F ? Pws[(f0 + f) * BDE + cc] * alpha : 0.0f;
        }
        FOR_ITEMS(f, CFS, NTC, lid) Zs[f] = f0 + f < F ? Pws[(f0 + f) * BDE + BD] * alpha : 0.0f;
      }
      BARRIER;
      if (has_q) {
        KUNROLL
        for (int f = 0; f < CFS; f++) {
          float a[CRQ], kv[CRK], pv[CRC];
          LOADT(a, CRQ, CTR, tr, Qs + f * LDQC);
          UNROLL for (int k = 0; k < CRK; k++) kv[k] = Kr[(k * CTC + tc) * LDKR + f];
          LOADT(pv, CRC, CTC, tc, Ps + f * LDV);
          const float zf = Zs[f];
          UNROLL for (int i = 0; i < CRQ; i++) {
            den[i] = fma(a[i], zf, den[i]);
            UNROLL for (int k = 0; k < CRK; k++) sc[i][k] = fma(a[i], kv[k], sc[i][k]);
            UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = fma(a[i], pv[u], acc[i][u]);
          }
        }
      }
      if (upd) {
        /* P slice += φ(K_c)ᵀ [w·V_c  w] over the chunk's keys. */
        float dp[CRF][CRC], dz[CRF];
        UNROLL for (int i = 0; i < CRF; i++) {
          dz[i] = 0.0f;
          UNROLL for (int u = 0; u < CRC; u++) dp[i][u] = 0.0f;
        }
        KUNROLL
        for (int j = 0; j < CPK; j++) {
          float a[CRF], v[CRC];
          LOADT(a, CRF, CTR, tr, Kr + j * LDKR);
          LOADT(v, CRC, CTC, tc, Vs + j * LDV);
          const float w = Ws[j];
          UNROLL for (int i = 0; i < CRF; i++) {
            dz[i] = fma(a[i], w, dz[i]);
            UNROLL for (int u = 0; u < CRC; u++) dp[i][u] = fma(a[i], v[u], dp[i][u]);
          }
        }
        UNROLL for (int i = 0; i < CRF; i++) {
          const int f = RIDX(CTR, CRF, tr, i);
          if (f < CFS && f0 + f < F) {
            UNROLL for (int u = 0; u < CRC; u++) {
              const int cc = RIDX(CTC, CRC, tc, u);
              Pws[(f0 + f) * BDE + cc] = Ps[f * LDV + cc] + dp[i][u];
            }
            if (tc == 0) Pws[(f0 + f) * BDE + BD] = Zs[f] + dz[i];
          }
        }
      }
    }

    /* (Barriers outside the has_q branches: PoCL 3.1 miscompiles barriers
     * inside uniform conditionals.) */
    BARRIER; /* every slice read: At may overwrite the slice tiles */
    if (has_q) {
      UNROLL for (int i = 0; i < CRQ; i++) {
        const int r = RIDX(CTR, CRQ, tr, i);
        UNROLL for (int k = 0; k < CRK; k++) {
          const int j = k * CTC + tc; /* consecutive keys across work-items: no bank conflicts */
          At[j * LDQC + r] = j <= r ? sc[i][k] : 0.0f;
        }
      }
    }
    BARRIER;
    if (has_q) {
      KUNROLL
      for (int j = 0; j < CPK; j++) {
        float a[CRQ], v[CRC];
        LOADT(a, CRQ, CTR, tr, At + j * LDQC);
        LOADT(v, CRC, CTC, tc, Vs + j * LDV);
        const float w = Ws[j];
        UNROLL for (int i = 0; i < CRQ; i++) {
          den[i] = fma(a[i], w, den[i]);
          UNROLL for (int u = 0; u < CRC; u++) acc[i][u] = fma(a[i], v[u], acc[i][u]);
        }
      }
      UNROLL for (int i = 0; i < CRQ; i++) {
        const int r = RIDX(CTR, CRQ, tr, i), row = qc0 + r;
        if (r < CH && row >= 0 && row < Nq) {
          const float rd = den[i] > 0.0f ? 1.0f / den[i] : 0.0f;
          const long ro = (long)row * oss;
          STORE_ROW(acc[i], CRC, CTC, tc, Ob, ro, osd, col0, rd);
        }
      }
    }
  }
}
#endif
