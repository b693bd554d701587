/* flash_rows.cl — fused attention forward for CPUs: one work-item per query block, vectorised
 * across the block's rows. */

/*
 * The flash_rows variant (CPU devices; one work-item per work-group) runs
 * this kernel instead of flash_fwd.cl. It is written for CPU OpenCL
 * implementations (PoCL), where a work-group runs as a loop on one core and
 * SIMD comes from explicit vector types: the work-item owns BM (8 or 16)
 * query rows and keeps everything as vectors across those rows, so that no
 * operation needs a horizontal reduction or a transposed K:
 *
 *   qT[k]   the block's queries, transposed: lane r = Q[q0 + r][k]·scale·log2 e
 *   s[j]    scores of key j for all rows:   s[j] = Σ_k K[j][k] · qT[k]
 *           (a broadcast key element times a row vector: 4 keys at a time)
 *   m, l    running max / sum per row (vectors), the online softmax is
 *           element-wise across rows
 *   acc[c]  output column c for all rows:   acc[c] += Σ_j V[j][c] · p[j]
 *
 * Keys stream in tiles of BN (the trip counts, the causal skipping of tiles
 * above the diagonal, the sparse tile lists and the masks are those of
 * flash_fwd.cl). Any head dim works: nothing is vectorised along it.
 */

#ifndef D
#define D 64 /* head dim */
#endif
#ifndef BM
#define BM 16 /* query rows per work-item: the vector width */
#endif
#ifndef BN
#define BN 64 /* keys per tile */
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
/* 1 when every tensor has unit dim stride (rows are contiguous). */
#ifndef VEC_GLOBAL
#define VEC_GLOBAL 0
#endif
/* 16-bit storage: -DKV_F32=1 reads K and V from the plan's f32 copy, which
 * flash_rows_kv_f32 (below) writes once per call: every K/V element is
 * converted once instead of once per query block (and query head of a GQA
 * group), and the loops are exactly those of f32 storage. The copy keeps the
 * logical layout of K/V, [batch][kv_head][seq][dim] ([kv_head][total_kv][dim]
 * for packed ragged K/V), so the kernel addresses it with its own strides
 * (the host passes them instead of the caller's). */
#ifndef KV_F32
#define KV_F32 0
#endif
/* 1 when the K and V the kernel reads have rows of exactly D contiguous
 * elements (the f32 copy; f32 storage in the BHSD layout): the row stride is
 * the compile-time D. */
#ifndef KV_PACKED
#define KV_PACKED 0
#endif
#if KVQ && !KV_F32
#error "flash_rows reads quantized K/V from the f32 copy only (KV_F32)"
#endif
#if KV_F32
typedef float ktype; /* element type of the K and V arguments */
#define LOAD_KV(p, i) ((p)[i])
#else
typedef stype ktype;
#define LOAD_KV(p, i) LOAD(p, i)
#endif
#if KV_PACKED
#define KV_ROW_K ((long)D)
#define KV_ROW_V ((long)D)
#define KV_DIM_K 1L
#define KV_DIM_V 1L
#else
#define KV_ROW_K kss
#define KV_ROW_V vss
#define KV_DIM_K ksd
#define KV_DIM_V vsd
#endif
/* 16-bit storage read in the kernel (no f32 copy), contiguous rows: vector
 * conversions of K and V (LOAD16 / LOAD4 in common.cl) instead of one per
 * element. */
#define ROWS_VEC16 (CLATTN_DTYPE != 0 && VEC_GLOBAL && !KV_F32)

#if BM == 8
typedef float8 vrow;
typedef int8 vrowi;
#define VLOAD_ROW vload8
#define VSTORE_ROW vstore8
#define AS_VROWI as_int8
#define ROW_IDS ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define CONVERT_ROW convert_float8
#elif BM == 16
typedef float16 vrow;
typedef int16 vrowi;
#define VLOAD_ROW vload16
#define VSTORE_ROW vstore16
#define AS_VROWI as_int16
#define ROW_IDS ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define CONVERT_ROW convert_float16
#else
#error "flash_rows: BM must be 8 or 16"
#endif

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
flash_rows(FLASH_ARGS_KV(stype, ktype)) {
  FLASH_PROLOGUE_KV(stype, ktype, BM)
  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk); /* causal alignment (sparse: bottom-right) */
#if SCORE_MODS
  /* each row's position among the keys (the modifiers' p); the slope */
  const vrowi mod_pos = (vrowi)(q0 + off) + ROW_IDS;
#if ALIBI
  const float mod_slope2 = alibi_slope2(h, H);
#endif
#endif

  /* Queries transposed into row vectors, pre-scaled to log2 units; rows past
   * Nq are zeros (computed, never stored). */
  vrow qT[D];
  for (int k = 0; k < D; k++) {
    float t[BM];
    for (int r = 0; r < BM; r++)
      t[r] = q0 + r < Nq ? LOAD(Qb, (long)(q0 + r) * qss + (long)k * qsd) * qscale : 0.0f;
    qT[k] = VLOAD_ROW(0, t);
  }

  vrow acc[D];
  for (int c = 0; c < D; c++)
    acc[c] = (vrow)(0.0f);
  vrow m = (vrow)(CLATTN_MASKED), l = (vrow)(0.0f);
#if CAUSAL || SPARSE
  const vrowi qpos = (vrowi)(q0 + off) + ROW_IDS; /* each row's position among the keys */
#endif

#if SPARSE
  const int t0 = sp_tile_off[qb];
  const int ntiles = sp_tile_off[qb + 1] - t0;
#else
  const int ntiles = flash_dense_tiles(q0, BM, BN, Nq, Nk, CAUSAL);
#endif

  const int nloop = FLASH_TILE_COUNT(ntiles); /* with a user mask's lists: those tiles */
  for (int t = 0; t < nloop; t++) {
    FLASH_TILE_AT(t)
    const int nk = min(BN, Nk - kv0);
    __global const ktype *Kt = Kb + (long)kv0 * KV_ROW_K;
    __global const ktype *Vt = Vb + (long)kv0 * KV_ROW_V;
#if USER_MASK
    /* The user's mask first. With block classes (clattn_plan_update_mask_
     * blocks) a hidden tile is skipped at once and a shown one needs no
     * evaluation; else the mask is evaluated here, and a tile it hides
     * entirely costs its evaluations only. */
    vrowi udead[BN];
    int ushown = ucls == 2, uhidden = 0;
    if (ucls == 1) {
      for (int j = 0; j < nk; j++) {
        int d[BM];
        for (int r = 0; r < BM; r++)
          d[r] = q0 + r < Nq && clattn_mask_mod(b, h, q0 + r, kv0 + j, user) ? 0 : -1;
        udead[j] = VLOAD_ROW(0, d);
        ushown |= any(udead[j] == (vrowi)(0));
        uhidden |= any(udead[j] != (vrowi)(0));
      }
      if (!ushown) continue;
    }
#endif

#if BIAS
    /* The bias of the tile first (log2 units): a tile it hides entirely is
     * skipped before any score (a -inf block of an attn_mask costs its
     * reads only). */
    vrow bval[BN];
    vrowi bdead[BN];
    int bshown = 0, bhidden = 0;
    for (int j = 0; j < nk; j++) {
      float u[BM];
      int d[BM];
      for (int r = 0; r < BM; r++) {
        const float x = q0 + r < Nq ? BIAS_AT(b, h, q0 + r, kv0 + j) : as_float(0xff800000u);
        d[r] = BIAS_HIDES(x) ? -1 : 0;
        u[r] = d[r] ? 0.0f : x * CLATTN_LOG2E;
      }
      bval[j] = VLOAD_ROW(0, u);
      bdead[j] = VLOAD_ROW(0, d);
      bshown |= any(bdead[j] == (vrowi)(0));
      bhidden |= any(bdead[j] != (vrowi)(0));
    }
    if (!bshown) continue;
#endif
#if ROWS_VEC16
    /* 16-bit storage: the tiles of K and V are converted to float once, 16
     * elements at a time, so that the loops below read them exactly as they
     * read f32 storage (each element a broadcast memory operand of its FMA;
     * converting a few elements to a vector and broadcasting its lanes took
     * up to 2.5x the instructions of the f32 kernel). */
    float kf[BN * D], vf[BN * D];
    for (int jj = 0; jj < nk; jj++) {
      __global const stype *kr = Kt + (long)jj * kss, *vr = Vt + (long)jj * vss;
      int c = 0;
      for (; c + 16 <= D; c += 16) {
        vstore16(LOAD16(kr + c), 0, kf + jj * D + c);
        vstore16(LOAD16(vr + c), 0, vf + jj * D + c);
      }
      for (; c < D; c++) {
        kf[jj * D + c] = LOAD(kr, c);
        vf[jj * D + c] = LOAD(vr, c);
      }
    }
#define KT_AT(j, k) kf[(j) * D + (k)]
#define VT_AT(c, j) vf[(j) * D + (c)]
#else
#define KT_AT(j, k) LOAD_KV(Kt, (long)(j) * KV_ROW_K + (long)(k) * KV_DIM_K)
#define VT_AT(c, j) LOAD_KV(Vt, (long)(j) * KV_ROW_V + (long)(c) * KV_DIM_V)
#endif

    /* Scores, four keys at a time. */
    vrow s[BN];
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
      vrow a0 = (vrow)(0.0f), a1 = (vrow)(0.0f), a2 = (vrow)(0.0f), a3 = (vrow)(0.0f);
      for (int k = 0; k < D; k++) {
        const vrow q = qT[k];
        a0 = fma((vrow)(KT_AT(j, k)), q, a0);
        a1 = fma((vrow)(KT_AT(j + 1, k)), q, a1);
        a2 = fma((vrow)(KT_AT(j + 2, k)), q, a2);
        a3 = fma((vrow)(KT_AT(j + 3, k)), q, a3);
      }
      s[j] = a0;
      s[j + 1] = a1;
      s[j + 2] = a2;
      s[j + 3] = a3;
    }
    for (; j < nk; j++) {
      vrow a0 = (vrow)(0.0f);
      for (int k = 0; k < D; k++)
        a0 = fma((vrow)(KT_AT(j, k)), qT[k], a0);
      s[j] = a0;
    }

#if SCORE_MODS
    /* softcap, ALiBi (before the masks), row vectors */
    for (j = 0; j < nk; j++) {
#if SOFTCAP
      vrow t;
      SOFTCAP_APPLY(s[j], t);
#endif
#if ALIBI
      s[j] -= mod_slope2 * CONVERT_ROW(abs(mod_pos - (vrowi)(kv0 + j)));
#endif
    }
#endif

#if USER_SCORE
    /* the user's score function, on natural-unit scores, per (row, key) */
    for (j = 0; j < nk; j++) {
      float u[BM];
      VSTORE_ROW(s[j], 0, u);
      for (int r = 0; r < BM; r++)
        if (q0 + r < Nq)
          u[r] = clattn_score_mod(u[r] * CLATTN_LN2, b, h, q0 + r, kv0 + j, user) * CLATTN_LOG2E;
      s[j] = VLOAD_ROW(0, u);
    }
#endif

#if BIAS
    for (j = 0; j < nk; j++)
      s[j] += bval[j];
#endif

    /* Causal diagonal / sparse partial tiles / the user's mask (keys past Nk
     * are never scored): dead[j] flags the masked keys, whose p is set to 0
     * below. */
#if SPARSE || CAUSAL || USER_MASK || BIAS
    vrowi dead[BN];
#if SPARSE
    bool partial = ent & 1;
    if (partial) {
      for (j = 0; j < nk; j++) {
        int d[BM];
        for (int r = 0; r < BM; r++)
          d[r] = sp_visible(q0 + r + off, kv0 + j, Nk, SPARSE_MASK_PASS) ? 0 : -1;
        dead[j] = VLOAD_ROW(0, d);
        s[j] = select(s[j], (vrow)(CLATTN_MASKED), dead[j]);
      }
    }
#elif CAUSAL
    bool partial = kv0 + nk - 1 > q0 + off;
    if (partial) {
      for (j = 0; j < nk; j++) {
        dead[j] = (vrowi)(kv0 + j) > qpos;
        s[j] = select(s[j], (vrow)(CLATTN_MASKED), dead[j]);
      }
    }
#else
    bool partial = false;
#endif
    /* the user mask's and the bias's hidden keys join dead[] */
#define MERGE_DEAD(extra)                                                                          \
  do {                                                                                             \
    for (j = 0; j < nk; j++) {                                                                     \
      dead[j] = partial ? (dead[j] | extra[j]) : extra[j];                                         \
      s[j] = select(s[j], (vrow)(CLATTN_MASKED), dead[j]);                                         \
    }                                                                                              \
    partial = true;                                                                                \
  } while (0)
#if USER_MASK
    if (uhidden) MERGE_DEAD(udead);
#endif
#if BIAS
    if (bhidden) MERGE_DEAD(bdead);
#endif
#undef MERGE_DEAD
#endif

    /* Online softmax, element-wise across the rows. mx stays CLATTN_MASKED
     * while a row has no visible key, and then its l and acc are still 0. */
    vrow mx = m;
    for (j = 0; j < nk; j++)
      mx = fmax(mx, s[j]);
    const vrow alpha = CLATTN_RESCALE(m, mx);
    m = mx;
    vrow rs = (vrow)(0.0f);
    for (j = 0; j < nk; j++) {
      s[j] = exp2(s[j] - mx);
      rs += s[j];
    }
#if SPARSE || CAUSAL || USER_MASK || BIAS
    if (partial) {
      rs = (vrow)(0.0f);
      for (j = 0; j < nk; j++) {
        s[j] = select(s[j], (vrow)(0.0f), dead[j]);
        rs += s[j];
      }
    }
#endif
    l = l * alpha + rs;

    /* acc = acc·alpha + Σ_j V[j] p[j], four output columns at a time. */
    int c = 0;
    for (; c + 4 <= D; c += 4) {
      vrow o0 = acc[c] * alpha, o1 = acc[c + 1] * alpha, o2 = acc[c + 2] * alpha,
           o3 = acc[c + 3] * alpha;
      for (j = 0; j < nk; j++) {
        const vrow p = s[j];
        o0 = fma((vrow)(VT_AT(c, j)), p, o0);
        o1 = fma((vrow)(VT_AT(c + 1, j)), p, o1);
        o2 = fma((vrow)(VT_AT(c + 2, j)), p, o2);
        o3 = fma((vrow)(VT_AT(c + 3, j)), p, o3);
      }
      acc[c] = o0;
      acc[c + 1] = o1;
      acc[c + 2] = o2;
      acc[c + 3] = o3;
    }
    for (; c < D; c++) {
      vrow o0 = acc[c] * alpha;
      for (j = 0; j < nk; j++)
        o0 = fma((vrow)(VT_AT(c, j)), s[j], o0);
      acc[c] = o0;
    }
#undef KT_AT
#undef VT_AT
  }

#if SINKS
  {
    /* the sink: one more term of each row's denominator (log2 units); a row
     * without a visible key puts all its mass there (zeros, LSE = sink) */
    const vrow z = (vrow)(sinks[h] * CLATTN_LOG2E);
    const vrowi empty = AS_VROWI(l) == (vrowi)(0);
    const vrow mm = select(fmax(m, z), z, empty);
    const vrow a = select(exp2(m - mm), (vrow)(0.0f), empty);
    l = l * a + exp2(z - mm);
    for (int c = 0; c < D; c++)
      acc[c] *= a;
    m = mm;
  }
#endif
  /* O = acc / l, written row by row. l is 0 exactly for rows without a
   * visible key (zeros, LSE -inf), else >= 1; NaN rows give NaN. The test is
   * on the bits (+0.0): finite-math builds may fold float compares of NaN. */
  const vrow inv = select((vrow)(1.0f) / l, (vrow)(0.0f), AS_VROWI(l) == (vrowi)(0));
  __global stype *Ob = O + (long)b * osb + (long)qstart * oss + (long)h * osh;
  const int nr = min(BM, Nq - q0);
  for (int c = 0; c < D; c++) {
    float t[BM];
    VSTORE_ROW(acc[c] * inv, 0, t);
    for (int r = 0; r < nr; r++)
      STORE(Ob, (long)(q0 + r) * oss + (long)c * osd, t[r]);
  }
  if (write_lse) {
    float tm[BM], tl[BM];
    VSTORE_ROW(m, 0, tm);
    VSTORE_ROW(l, 0, tl);
    for (int r = 0; r < nr; r++)
      LSE[FLASH_LSE_INDEX(bh, q0 + r)] =
          as_uint(tl[r]) == 0u ? CLATTN_NEG_INF : (tm[r] + log2(tl[r])) * CLATTN_LN2;
  }
}

#if KV_F32
/* The f32 copy of K and V (KV_F32 above): work-item (g, hk, b) converts rows
 * g·KV_CONVERT_ROWS .. of head hk of batch entry b (b = 0 for packed ragged
 * K/V, whose `rows` are total_kv) from the caller's strides into the dense
 * copy, row stride D. */
#ifndef KV_CONVERT_ROWS
#define KV_CONVERT_ROWS 16
#endif
/* Quantized K/V (KVQ): the codes decoded and multiplied by their scales
 * (KV_SCALE_HK, common.cl), so the flash kernel reads plain floats; the copy
 * is the only way flash_rows reads quantized K/V. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
flash_rows_kv_f32(__global const FLASH_KVT(stype) *restrict K,
                  __global const FLASH_KVT(stype) *restrict V, __global float *restrict Kf,
                  __global float *restrict Vf, const long ksb, const long ksh, const long kss,
                  const long ksd, const long vsb, const long vsh, const long vss, const long vsd,
                  const int rows FLASH_KVQ_ARGS) {
  const int s0 = (int)get_group_id(0) * KV_CONVERT_ROWS;
  const long hk = get_group_id(1), b = get_group_id(2), Hk = get_num_groups(1);
  const int n = min(KV_CONVERT_ROWS, rows - s0);
  __global const FLASH_KVT(stype) *kr = K + b * ksb + hk * ksh + (long)s0 * kss;
  __global const FLASH_KVT(stype) *vr = V + b * vsb + hk * vsh + (long)s0 * vss;
  const long dst = ((b * Hk + hk) * rows + s0) * D;
  __global float *kd = Kf + dst, *vd = Vf + dst;
  for (int r = 0; r < n; r++) {
    int c = 0;
#if KVQ
    for (; c < D; c++) {
      kd[r * D + c] = KVLOAD(kr, (long)r * kss + (long)c * ksd) *
                      KV_SCALE_HK(ksc, b, s0 + r, c, hk, Hk);
      vd[r * D + c] = KVLOAD(vr, (long)r * vss + (long)c * vsd) *
                      KV_SCALE_HK(vsc, b, s0 + r, c, hk, Hk);
    }
#endif
#if VEC_GLOBAL && !KVQ
    for (; c + 16 <= D; c += 16) {
      vstore16(LOAD16(kr + (long)r * kss + c), 0, kd + r * D + c);
      vstore16(LOAD16(vr + (long)r * vss + c), 0, vd + r * D + c);
    }
#endif
#if !KVQ
    for (; c < D; c++) {
      kd[r * D + c] = LOAD(kr, (long)r * kss + (long)c * ksd);
      vd[r * D + c] = LOAD(vr, (long)r * vss + (long)c * vsd);
    }
#endif
  }
}
#endif
