/* mask_mod_window.cl — a user mask for the CLI test: keys at most 32 behind the query, none after it (bottom-right, seq_q = seq_kv). */
int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, __global const uchar *user) {
  return kv_idx <= q_idx && kv_idx >= q_idx - 32;
}
