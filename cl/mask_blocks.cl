/* mask_blocks.cl — the block classes of a user mask (desc.mask_mod) over the flash kernel's tiles (0 hidden, 1 partial, 2 shown), each row block's list of the tiles not hidden, and the row blocks by descending list length (clattn_plan_update_mask_blocks). */

/* One work-item per (key tile, query tile, batch·head): evaluates
 * clattn_mask_mod over the tile's rows and keys that exist (BM × BN of the
 * plan's flash kernel; ragged: of the sequence, from cu_q / cu_kv) and
 * writes cls[(bh·nqt + qt)·nkt + kt]. */
__kernel void mask_blocks(__global uchar *restrict cls, __global const uchar *restrict user,
                          const int H, const int Nq_max, const int Nk_max, const int nqt,
                          const int nkt FLASH_RAGGED_ARGS, __global int *restrict stamp) {
  const int kt = get_global_id(0), qt = get_global_id(1), bh = get_global_id(2);
  if (kt >= nkt || qt >= nqt) return;
  const int b = bh / H, h = bh % H;
#if RAGGED
  /* the sequence's rows and keys (indices within it), stamped for the
   * flash kernels (FLASH_USE_BLOCKS): classes made for other tables are not
   * used */
  int qstart, Nq, kstart, Nk;
  flash_ragged(b, cu_q, cu_kv, Nq_max, Nk_max, total_q, total_kv, &qstart, &Nq, &kstart, &Nk);
  if (kt == 0 && qt == 0 && h == 0) {
    stamp[4 * b] = qstart;
    stamp[4 * b + 1] = Nq;
    stamp[4 * b + 2] = kstart;
    stamp[4 * b + 3] = Nk;
  }
#else
  const int Nq = Nq_max, Nk = Nk_max;
#endif
  int shown = 0, hidden = 0;
  for (int r = 0; r < BM && !(shown && hidden); r++) {
    const int i = qt * BM + r;
    if (i >= Nq) break;
    for (int c = 0; c < BN; c++) {
      const int j = kt * BN + c;
      if (j >= Nk) break;
      if (clattn_mask_mod(b, h, i, j, user))
        shown = 1;
      else
        hidden = 1;
    }
  }
  cls[((long)bh * nqt + qt) * nkt + kt] = (uchar)(shown ? (hidden ? 1 : 2) : 0);
}

/* One work-item per (query tile, batch·head): the tiles of the row block
 * that are not hidden, in ascending order, as kt·4 + class, and their
 * count (the kernels walk this list instead of every key tile). */
__kernel void mask_lists(__global const uchar *restrict cls, __global int *restrict list,
                         __global int *restrict count, const int nqt, const int nkt) {
  const int qt = get_global_id(0), bh = get_global_id(1);
  if (qt >= nqt) return;
  const long row = (long)bh * nqt + qt;
  int n = 0;
  for (int kt = 0; kt < nkt; kt++) {
    const int c = cls[row * nkt + kt];
    if (c) list[row * nkt + n++] = kt * 4 + c;
  }
  count[row] = n;
}

/* One work-item per (query tile, batch·head): the row blocks of a
 * batch·head by descending tile count (ties: ascending tile), as order[bh ·
 * nqt + rank] = qt (the flash kernels start the longest first). */
__kernel void mask_order(__global const int *restrict count, __global int *restrict order,
                         const int nqt) {
  const int qt = get_global_id(0), bh = get_global_id(1);
  if (qt >= nqt) return;
  __global const int *c = count + (long)bh * nqt;
  const int mine = c[qt];
  int rank = 0;
  for (int q = 0; q < nqt; q++)
    rank += c[q] > mine || (c[q] == mine && q < qt);
  order[(long)bh * nqt + rank] = qt;
}
