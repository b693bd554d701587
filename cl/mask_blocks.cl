/* mask_blocks.cl — the block classes of a user mask (desc.mask_mod) over the flash kernel's tiles: 0 hidden, 1 partial, 2 shown (clattn_plan_update_mask_blocks). */

/* One work-item per (key tile, query tile, batch·head): evaluates
 * clattn_mask_mod over the tile's rows and keys that exist (BM × BN of the
 * plan's flash kernel) and writes cls[(bh·nqt + qt)·nkt + kt]. */
__kernel void mask_blocks(__global uchar *restrict cls, __global const uchar *restrict user,
                          const int H, const int Nq, const int Nk, const int nqt, const int nkt) {
  const int kt = get_global_id(0), qt = get_global_id(1), bh = get_global_id(2);
  if (kt >= nkt || qt >= nqt) return;
  const int b = bh / H, h = bh % H;
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
