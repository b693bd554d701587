/* flash_fwd.cl — portable fused attention forward: tiled Q·Kᵀ, online softmax, P·V in one pass. */

/*
 * One work-group owns BM query rows of one (batch, head). It streams the keys
 * in tiles of BN through local memory, keeps the running row max m, the
 * running row sum l and the BM×D output accumulator in registers, and writes
 * O (and optionally the log-sum-exp) once. No N×N buffer exists.
 *
 * Work-items form a TM×TN grid; item (tm, tn) owns, interleaved so that the
 * items of a warp hit distinct local-memory banks:
 *   query rows   r = tm + i·TM          (i < RM = BM/TM)
 *   tile keys    c = tn + j·TN          (j < RN = BN/TN)
 *   output dims  4·(tn + j·TN) + 0..3   (j < RC, float4 chunks of the head dim)
 * Q·Kᵀ reads float4 along the head dim from Qs and KV, P·V reads one float4
 * of V per key; each read feeds RM·RN (resp. RM·4) multiply-adds.
 *
 * Local memory (floats): Qs[BM][DP+4] (Q pre-scaled by scale·log2 e),
 * KV[BN][DP+4] holding first K then V of the current tile, Ps[BN][BM+4]
 * (probabilities) and red[BM][TN] (row-max exchange). DP is the head dim
 * rounded up to 4; rows are padded by 4 floats to spread banks.
 *
 * -DSPARSE=1 (element patterns) / 2 (block patterns): the work-group walks
 * only the key tiles listed for its query tile (host-built per plan, see
 * src/sparse.h); a tile flagged partial (or the tail tile) is masked per
 * element with sp_visible() from common.cl, a fully visible tile skips the
 * mask. The trip count depends only on the query tile, so barriers stay
 * uniform.
 */

#ifndef D
#define D 64 /* head dim */
#endif
#ifndef DP
#define DP ((D + 3) / 4 * 4)
#endif
#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 32
#endif
#ifndef TM
#define TM 16
#endif
#ifndef TN
#define TN 8
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
/* 1 when every tensor has unit dim stride and D % 4 == 0: float4 global I/O. */
#ifndef VEC_GLOBAL
#define VEC_GLOBAL 0
#endif

#define NT (TM * TN)
#define RM (BM / TM)
#define RN (BN / TN)
#define NCH (DP / 4)               /* float4 chunks per row */
#define RC ((NCH + TN - 1) / TN)   /* chunks per work-item */
#define LDQ (DP + 4)               /* row stride of Qs and KV */
#define LDP (BM + 4)               /* row stride of Ps */

#if (BM % TM) || (BN % TN) || (DP % 4) || (DP < D)
#error "flash_fwd: BM % TM and BN % TN must be 0, DP a multiple of 4 and >= D"
#endif

/* Loads 4 consecutive head-dim elements k..k+3 of row `row` of a tensor
 * (zeros past D), scaled by `mul`. */
inline float4 load_row4(__global const stype *base, long row_off, long sd, int k, float mul) {
#if VEC_GLOBAL && CLATTN_DTYPE == 0
  return vload4(0, base + row_off + k) * mul;
#else
  float4 x;
  x.x = (k + 0 < D) ? LOAD(base, row_off + (long)(k + 0) * sd) : 0.0f;
  x.y = (k + 1 < D) ? LOAD(base, row_off + (long)(k + 1) * sd) : 0.0f;
  x.z = (k + 2 < D) ? LOAD(base, row_off + (long)(k + 2) * sd) : 0.0f;
  x.w = (k + 3 < D) ? LOAD(base, row_off + (long)(k + 3) * sd) : 0.0f;
  return x * mul;
#endif
}

/* Copies rows [row0, row0 + nrows) of a tensor (rows past `limit` → zeros)
 * into a local tile with row stride LDQ. */
inline void load_tile(__local float *dst, __global const stype *base, long ss, long sd, int row0,
                      int nrows, int limit, float mul, int lid) {
  for (int idx = lid; idx < nrows * NCH; idx += NT) {
    const int r = idx / NCH, ch = idx % NCH;
    float4 x = (float4)(0.0f);
    if (row0 + r < limit) x = load_row4(base, (long)(row0 + r) * ss, sd, 4 * ch, mul);
    vstore4(x, 0, dst + r * LDQ + 4 * ch);
  }
}

#if KVQ
/* A quantized K or V tile (codes, KVQ in common.cl): each element decoded
 * and multiplied by its scale (KV_SCALE: token, tensor, head or channel) on
 * its way into local memory, so the loops below read floats as for any
 * storage type. Rows past `limit` and dims past D are zeros. */
#define LOAD_KV_TILE(dst, base, ss, sd, row0, nrows, limit, sc)                                   \
  for (int idx_ = lid; idx_ < (nrows)*NCH * 4; idx_ += NT) {                                       \
    const int r_ = idx_ / (NCH * 4), x_ = idx_ % (NCH * 4);                                        \
    float v_ = 0.0f;                                                                               \
    if ((row0) + r_ < (limit) && x_ < D)                                                           \
      v_ = KVLOAD(base, (long)((row0) + r_) * (ss) + (long)x_ * (sd)) *                            \
           KV_SCALE(sc, b, kstart + (row0) + r_, x_);                                              \
    (dst)[r_ * LDQ + x_] = v_;                                                                     \
  }
#else
#define LOAD_KV_TILE(dst, base, ss, sd, row0, nrows, limit, sc)                                   \
  load_tile(dst, base, ss, sd, row0, nrows, limit, 1.0f, lid)
#endif

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void
flash_fwd(FLASH_ARGS(stype)) {
  __local float Qs[BM * LDQ];
  __local float KV[BN * LDQ];
  __local float Ps[BN * LDP];
  __local float red[BM * TN];

  const int lid = get_local_id(0);
  const int tm = lid / TN;
  const int tn = lid % TN;
  FLASH_PROLOGUE(stype, BM)

  /* Q tile, pre-scaled so that scores are in log2 units. */
  load_tile(Qs, Qb, qss, qsd, q0, BM, Nq, qscale, lid);

  float acc[RM][RC * 4];
  float m[RM], l[RM];
#pragma unroll
  for (int i = 0; i < RM; i++) {
    m[i] = CLATTN_MASKED;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < RC * 4; j++) acc[i][j] = 0.0f;
  }

  const int off = CAUSAL_OFFSET(CAUSAL, Nq, Nk); /* causal alignment (sparse: bottom-right) */
#if ALIBI
  const float mod_slope2 = alibi_slope2(h, H);
#elif SCORE_MODS
  const float mod_slope2 = 0.0f;
#endif
#if SPARSE
  /* Only the listed key tiles: empty tiles cost nothing. */
  const int t0 = sp_tile_off[qb];
  const int ntiles = sp_tile_off[qb + 1] - t0;
#else
  const int ntiles = flash_dense_tiles(q0, BM, BN, Nq, Nk, CAUSAL);
#endif

  const int nloop = FLASH_TILE_COUNT(ntiles); /* with a user mask's lists: those tiles */
  for (int t = 0; t < nloop; t++) {
    FLASH_TILE_AT(t) /* uniform across the work-group: the breaks and skips too */
    barrier(CLK_LOCAL_MEM_FENCE); /* previous tile's Ps / V reads are done */
    LOAD_KV_TILE(KV, Kb, kss, ksd, kv0, BN, Nk, ksc);
    barrier(CLK_LOCAL_MEM_FENCE);

    float s[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < RN; j++) s[i][j] = 0.0f;
    for (int k = 0; k < DP; k += 4) {
      float4 a[RM], bb[RN];
#pragma unroll
      for (int i = 0; i < RM; i++) a[i] = vload4(0, Qs + (tm + i * TM) * LDQ + k);
#pragma unroll
      for (int j = 0; j < RN; j++) bb[j] = vload4(0, KV + (tn + j * TN) * LDQ + k);
#pragma unroll
      for (int i = 0; i < RM; i++)
#pragma unroll
        for (int j = 0; j < RN; j++) {
          s[i][j] = fma(a[i].x, bb[j].x, s[i][j]);
          s[i][j] = fma(a[i].y, bb[j].y, s[i][j]);
          s[i][j] = fma(a[i].z, bb[j].z, s[i][j]);
          s[i][j] = fma(a[i].w, bb[j].w, s[i][j]);
        }
    }

#if SCORE_MODS
    /* softcap, ALiBi: before the mask (masked keys are overwritten below) */
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < RN; j++)
        s[i][j] = score_mods(s[i][j], mod_slope2, q0 + tm + i * TM + off, kv0 + tn + j * TN);
#endif

#if USER_SCORE || BIAS
    /* the user's score function (natural units), then the bias (-inf ones
     * are masked below), on the elements that exist */
#pragma unroll
    for (int i = 0; i < RM; i++)
#pragma unroll
      for (int j = 0; j < RN; j++) {
        const int qrow = q0 + tm + i * TM, key = kv0 + tn + j * TN;
        if (qrow < Nq && key < Nk) {
#if USER_SCORE
          s[i][j] = clattn_score_mod(s[i][j] * CLATTN_LN2, b, h, qrow, key, user) * CLATTN_LOG2E;
#endif
#if BIAS
          const float x = BIAS_AT(b, h, qrow, key);
          if (!BIAS_HIDES(x)) s[i][j] += x * CLATTN_LOG2E;
#endif
        }
      }
#endif

    /* Mask the tail tile and the causal diagonal (uniform branch). */
#if BIAS
    const bool need_mask = true; /* the bias may hide any key */
#elif USER_MASK
    const bool need_mask = ucls == 1 || kv0 + BN > Nk
#if CAUSAL
                           || kv0 + BN - 1 > q0 + off
#endif
#if SPARSE
                           || (ent & 1)
#endif
        ;
#elif SPARSE
    const bool need_mask = (ent & 1) || kv0 + BN > Nk; /* partial tile (host flag) or tail */
#elif CAUSAL
    const bool need_mask = (kv0 + BN > Nk) || (kv0 + BN - 1 > q0 + off);
#else
    const bool need_mask = kv0 + BN > Nk;
#endif
    uint dm[RM]; /* bit j: key tn + j*TN is masked for row i (its p is 0) */
#pragma unroll
    for (int i = 0; i < RM; i++) dm[i] = 0u;
    if (need_mask) {
#pragma unroll
      for (int i = 0; i < RM; i++) {
        const int qrow = q0 + tm + i * TM;
#pragma unroll
        for (int j = 0; j < RN; j++) {
          const int key = kv0 + tn + j * TN;
          bool dead = key >= Nk;
#if CAUSAL
          dead = dead || key > qrow + off;
#endif
#if SPARSE
          dead = dead || !sp_visible(qrow + off, key, Nk, SPARSE_MASK_PASS);
#endif
#if USER_MASK
          if (!dead && ucls == 1) dead = qrow >= Nq || !clattn_mask_mod(b, h, qrow, key, user);
#endif
#if BIAS
          if (!dead) dead = qrow >= Nq || BIAS_HIDES(BIAS_AT(b, h, qrow, key));
#endif
          if (dead) {
            s[i][j] = CLATTN_MASKED;
            dm[i] |= 1u << j;
          }
        }
      }
    }

    /* Row max across the TN items sharing a row. */
#pragma unroll
    for (int i = 0; i < RM; i++) {
      float mx = s[i][0];
#pragma unroll
      for (int j = 1; j < RN; j++) mx = fmax(mx, s[i][j]);
      red[(tm + i * TM) * TN + tn] = mx;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* red visible; every item is done reading K */

    LOAD_KV_TILE(KV, Vb, vss, vsd, kv0, BN, Nk, vsc); /* V replaces K */

#pragma unroll
    for (int i = 0; i < RM; i++) {
      const int r = tm + i * TM;
      float mx = m[i];
#pragma unroll
      for (int u = 0; u < TN; u++) mx = fmax(mx, red[r * TN + u]);
      /* Masked keys get p = 0 from their flag; mx stays CLATTN_MASKED while
       * the row has no visible key, and then l and acc are still 0. */
      const float alpha = CLATTN_RESCALE(m[i], mx);
      m[i] = mx;
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < RN; j++) {
        const float p = ((dm[i] >> j) & 1u) ? 0.0f : exp2(s[i][j] - mx);
        rs += p;
        Ps[(tn + j * TN) * LDP + r] = p;
      }
      l[i] = l[i] * alpha + rs;
#pragma unroll
      for (int j = 0; j < RC * 4; j++) acc[i][j] *= alpha;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* Ps and V visible */

    for (int c = 0; c < BN; c++) {
      float p[RM];
#pragma unroll
      for (int i = 0; i < RM; i++) p[i] = Ps[c * LDP + tm + i * TM];
#pragma unroll
      for (int j = 0; j < RC; j++) {
        const int ch = tn + j * TN;
        if (ch < NCH) {
          const float4 vv = vload4(0, KV + c * LDQ + 4 * ch);
#pragma unroll
          for (int i = 0; i < RM; i++) {
            acc[i][4 * j + 0] = fma(p[i], vv.x, acc[i][4 * j + 0]);
            acc[i][4 * j + 1] = fma(p[i], vv.y, acc[i][4 * j + 1]);
            acc[i][4 * j + 2] = fma(p[i], vv.z, acc[i][4 * j + 2]);
            acc[i][4 * j + 3] = fma(p[i], vv.w, acc[i][4 * j + 3]);
          }
        }
      }
    }
  }

  /* Row sums: each item holds a partial over its keys; reduce over TN. */
  barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
  for (int i = 0; i < RM; i++) red[(tm + i * TM) * TN + tn] = l[i];
  barrier(CLK_LOCAL_MEM_FENCE);

  __global stype *Ob = O + (long)b * osb + (long)qstart * oss + (long)h * osh;
#pragma unroll
  for (int i = 0; i < RM; i++) {
    const int r = tm + i * TM;
    const int qrow = q0 + r;
    float lt = 0.0f;
#pragma unroll
    for (int u = 0; u < TN; u++) lt += red[r * TN + u];
#if SINKS
    {
      /* the sink: one more term of the denominator (log2 units); a row
       * without a visible key puts all its mass there (zeros, LSE = sink) */
      const float z = sinks[h] * CLATTN_LOG2E;
      const bool empty = as_uint(lt) == 0u;
      const float mm = empty ? z : fmax(m[i], z);
      const float a = empty ? 0.0f : exp2(m[i] - mm);
      lt = lt * a + exp2(z - mm);
#pragma unroll
      for (int j = 0; j < RC * 4; j++) acc[i][j] *= a;
      m[i] = mm;
    }
#endif
    /* lt is 0 exactly when the row has no visible key (else >= 1); NaN rows
     * give NaN outputs and LSE (bit tests: finite-math builds may fold float
     * compares of NaN). */
    const float inv = as_uint(lt) == 0u ? 0.0f : 1.0f / lt;
    if (qrow < Nq) {
      const long ro = (long)qrow * oss;
#pragma unroll
      for (int j = 0; j < RC; j++) {
        const int ch = tn + j * TN;
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const int k = 4 * ch + u;
          if (k < D) STORE(Ob, ro + (long)k * osd, acc[i][4 * j + u] * inv);
        }
      }
      if (write_lse && tn == 0)
        LSE[FLASH_LSE_INDEX(bh, qrow)] = as_uint(lt) == 0u ? CLATTN_NEG_INF : (m[i] + log2(lt)) * CLATTN_LN2;
    }
  }
}
