/* ptx.c — PTX patching: Hopper instructions (wgmma, sm_90a) that NVIDIA's OpenCL C compiler cannot
 * emit, written into the program's PTX in place of placeholder comments. */
#include "internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * NVIDIA's OpenCL compiler targets sm_90 at most and rejects `wgmma.*` in
 * inline assembly, but its program binary is PTX text, and a program
 * created from PTX that says `.target sm_90a` builds. A kernel that wants
 * wgmma therefore writes placeholder comments through inline assembly
 * (cl/wgmma.cl): the compiler substitutes the operands' PTX registers into
 * the comment, and this file turns each placeholder line into the real
 * instruction. The grammar (one placeholder per line, operands separated by
 * blanks):
 *
 *   // @@CLATTN fence                   wgmma.fence.sync.aligned
 *   // @@CLATTN commit                  wgmma.commit_group.sync.aligned
 *   // @@CLATTN wait N [regs...]        wgmma.wait_group.sync.aligned N (0..7);
 *                                       the registers only pin the
 *                                       accumulators for the compiler
 *   // @@CLATTN keep [regs...]          nothing (the same pinning)
 *   // @@CLATTN proxy                   fence.proxy.async.shared::cta
 *   // @@CLATTN mma_rs N T TB d[N/2] a0 a1 a2 a3 descB scale
 *        wgmma.mma_async.sync.aligned.m64nNk16.f32.T.T {d}, {a}, descB, p, 1, 1, TB
 *   // @@CLATTN mma_ss N T TA TB d[N/2] descA descB scale
 *        wgmma.mma_async.sync.aligned.m64nNk16.f32.T.T {d}, descA, descB, p, 1, 1, TA, TB
 *   // @@CLATTN minctas N T             nothing here; `.minnctapersm N` (1..32) in
 *                                       the header of each entry (before its
 *                                       body's `{`), with `.maxntid T, 1, 1`
 *                                       (T 1..1024, the work-group size) where
 *                                       the header has no .reqntid/.maxntid:
 *                                       ptxas then caps the registers for N
 *                                       work-groups of T per SM
 *
 * with T f16 or bf16, N a multiple of 8 in 8..256, TA/TB 0 or 1, p the
 * predicate scale != 0 (0: D = A·B, else D += A·B). Every operand is
 * checked (registers where the instruction needs registers), the `.target`
 * line becomes sm_90a, and a placeholder left over, an unknown one or a
 * malformed one fails the patch with the line quoted: a program is never
 * built from half-patched text.
 */

#define PH_MARK "// @@CLATTN"
#define MAX_TOK 160

typedef struct out_buf {
  char *s;
  size_t n, cap;
  bool oom;
} out_buf;

static void put(out_buf *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(out_buf *o, const char *fmt, ...) {
  if (o->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    const int k = vsnprintf(o->s + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      o->oom = true;
      return;
    }
    if ((size_t)k < o->cap - o->n) {
      o->n += (size_t)k;
      return;
    }
    const size_t cap = o->cap * 2 + (size_t)k + 1;
    char *s = realloc(o->s, cap);
    if (!s) {
      o->oom = true;
      return;
    }
    o->s = s;
    o->cap = cap;
  }
}

static bool is_reg(const char *t) {
  if (t[0] != '%' || !isalpha((unsigned char)t[1])) return false;
  for (const char *c = t + 1; *c; c++)
    if (!isalnum((unsigned char)*c) && *c != '_') return false;
  return true;
}

static bool is_int(const char *t, long lo, long hi, long *v) {
  char *end;
  const long x = strtol(t, &end, 10);
  if (end == t || *end || x < lo || x > hi) return false;
  if (v) *v = x;
  return true;
}

/* A register or an integer literal (the scale operand). */
static bool is_reg_or_int(const char *t) {
  return is_reg(t) || is_int(t, -2147483647L, 2147483647L, NULL);
}

static int why_line(char *why, size_t cap, int lineno, const char *line, const char *what) {
  snprintf(why, cap, "PTX line %d: %s: '%.200s'", lineno, what, line);
  return -1;
}

/* One placeholder (tokens after the mark) → its PTX; 0, or -1 with why. */
static int emit(out_buf *o, char **tok, int nt, int lineno, const char *line, char *why,
                size_t cap) {
  const char *op = tok[0];
  if (!strcmp(op, "fence") && nt == 1) {
    put(o, "\twgmma.fence.sync.aligned;\n");
  } else if (!strcmp(op, "commit") && nt == 1) {
    put(o, "\twgmma.commit_group.sync.aligned;\n");
  } else if (!strcmp(op, "proxy") && nt == 1) {
    put(o, "\tfence.proxy.async.shared::cta;\n");
  } else if (!strcmp(op, "minctas")) {
    if (nt != 3 || !is_int(tok[1], 1, 32, NULL) || !is_int(tok[2], 1, 1024, NULL))
      return why_line(why, cap, lineno, line, "minctas needs a count 1..32 and a size 1..1024");
  } else if (!strcmp(op, "wait") || !strcmp(op, "keep")) {
    const int first = !strcmp(op, "wait") ? 2 : 1;
    long n = 0;
    if (first == 2 && (nt < 2 || !is_int(tok[1], 0, 7, &n)))
      return why_line(why, cap, lineno, line, "wait needs a group count 0..7");
    for (int i = first; i < nt; i++)
      if (!is_reg(tok[i]))
        return why_line(why, cap, lineno, line, "pinned operand is not a register");
    if (first == 2) put(o, "\twgmma.wait_group.sync.aligned %ld;\n", n);
  } else if (!strcmp(op, "mma_rs") || !strcmp(op, "mma_ss")) {
    const bool rs = !strcmp(op, "mma_rs");
    long n = 0, ta = 0, tb = 0;
    const int head = rs ? 4 : 5; /* op N T [TA] TB */
    if (nt < head || !is_int(tok[1], 8, 256, &n) || n % 8)
      return why_line(why, cap, lineno, line, "N must be a multiple of 8 in 8..256");
    const char *t = tok[2];
    if (strcmp(t, "f16") && strcmp(t, "bf16"))
      return why_line(why, cap, lineno, line, "type must be f16 or bf16");
    if (!rs && !is_int(tok[3], 0, 1, &ta))
      return why_line(why, cap, lineno, line, "TA must be 0 or 1");
    if (!is_int(tok[head - 1], 0, 1, &tb))
      return why_line(why, cap, lineno, line, "TB must be 0 or 1");
    const int nacc = (int)n / 2, nsrc = rs ? 5 : 2;
    if (nt != head + nacc + nsrc + 1)
      return why_line(why, cap, lineno, line, "operand count does not match N");
    for (int i = head; i < head + nacc + nsrc; i++)
      if (!is_reg(tok[i])) return why_line(why, cap, lineno, line, "operand is not a register");
    if (!is_reg_or_int(tok[nt - 1]))
      return why_line(why, cap, lineno, line, "scale is neither a register nor a literal");
    put(o, "\t{\n\t.reg .pred clattn_p;\n\tsetp.ne.b32 clattn_p, %s, 0;\n", tok[nt - 1]);
    put(o, "\twgmma.mma_async.sync.aligned.m64n%ldk16.f32.%s.%s {", n, t, t);
    for (int i = 0; i < nacc; i++)
      put(o, "%s%s", i ? ", " : "", tok[head + i]);
    const int s = head + nacc;
    if (rs)
      put(o, "}, {%s, %s, %s, %s}, %s, clattn_p, 1, 1, %ld;\n\t}\n", tok[s], tok[s + 1], tok[s + 2],
          tok[s + 3], tok[s + 4], tb);
    else
      put(o, "}, %s, %s, clattn_p, 1, 1, %ld, %ld;\n\t}\n", tok[s], tok[s + 1], ta, tb);
  } else {
    return why_line(why, cap, lineno, line, "unknown or malformed placeholder");
  }
  return 0;
}

int clattn__ptx_patch(const char *ptx, size_t len, const char *target, char **out, size_t *out_len,
                      char *why, size_t cap) {
  *out = NULL;
  if (out_len) *out_len = 0;
  if (why && cap) why[0] = 0;
  out_buf o = {malloc(len + 4096), 0, len + 4096, false};
  if (!o.s) {
    snprintf(why, cap, "out of host memory");
    return -1;
  }
  o.s[0] = 0;
  int lineno = 0, replaced = 0, targets = 0, thread_lines = 0;
  /* `minctas N T` anywhere: found first, as it acts on the entries' headers,
   * which come before the bodies that hold the placeholder */
  long minctas = 0, mc_threads = 0;
  static const char mc[] = PH_MARK " minctas ";
  for (size_t i = 0; i + sizeof mc - 1 < len; i++)
    if (ptx[i] == '/' && !memcmp(ptx + i, mc, sizeof mc - 1)) {
      long v[2] = {0, 0};
      size_t j = i + sizeof mc - 1;
      for (int k = 0; k < 2; k++) {
        while (j < len && ptx[j] == ' ')
          j++;
        for (; j < len && isdigit((unsigned char)ptx[j]) && v[k] <= 1024; j++)
          v[k] = 10 * v[k] + (ptx[j] - '0');
      }
      if (v[0] >= 1 && v[0] <= 32 && v[1] >= 1 && v[1] <= 1024 && v[0] > minctas) {
        minctas = v[0];
        mc_threads = v[1];
      }
    }
  bool in_header = false, header_threads = false;
  char *line = NULL;
  size_t line_cap = 0;
  for (size_t pos = 0; pos < len;) {
    const char *nl = memchr(ptx + pos, '\n', len - pos);
    const size_t L = nl ? (size_t)(nl - (ptx + pos)) : len - pos;
    lineno++;
    if (L + 1 > line_cap) {
      char *nline = realloc(line, L + 1);
      if (!nline) {
        o.oom = true;
        break;
      }
      line = nline;
      line_cap = L + 1;
    }
    memcpy(line, ptx + pos, L);
    line[L] = 0;
    pos += L + (nl ? 1 : 0);
    const char *lead = line;
    while (*lead == ' ' || *lead == '\t')
      lead++;
    char *mark = strstr(line, PH_MARK);
    if (strstr(lead, ".entry ") && (!strncmp(lead, ".entry", 6) || !strncmp(lead, ".visible", 8))) {
      in_header = true;
      header_threads = false;
    } else if (in_header && (!strncmp(lead, ".reqntid", 8) || !strncmp(lead, ".maxntid", 8))) {
      header_threads = true;
    }
    if (!strncmp(lead, ".version", 8)) {
      /* wgmma needs PTX ISA 8.0 or newer: an older text is refused, never
       * relabelled */
      const long major = strtol(lead + 8, NULL, 10); /* not strtod: locale-free */
      if (major < 8) {
        why_line(why, cap, lineno, lead, "PTX ISA older than 8.0 has no wgmma");
        free(line);
        free(o.s);
        return -1;
      }
      put(&o, "%s\n", line);
    } else if (!strncmp(lead, ".target", 7) && (lead[7] == ' ' || lead[7] == '\t')) {
      /* ".target sm_90" (maybe ", debug" etc. after it): the architecture
       * becomes the patch target, the rest stays */
      const char *arch = lead + 7;
      while (*arch == ' ' || *arch == '\t')
        arch++;
      const size_t alen = strcspn(arch, ", \t\r");
      if (alen != 5 || strncmp(arch, "sm_90", 5)) {
        char what[96];
        snprintf(what, sizeof what, "the program targets %.*s, the patch needs sm_90",
                 (int)(alen < 40 ? alen : 40), arch);
        why_line(why, cap, lineno, lead, what);
        free(line);
        free(o.s);
        return -1;
      }
      put(&o, ".target %s%s\n", target, arch + alen);
      targets++;
    } else if (minctas > 0 && in_header && lead[0] == '{') {
      /* the end of an entry's header */
      if (!header_threads) put(&o, ".maxntid %ld, 1, 1\n", mc_threads);
      put(&o, ".minnctapersm %ld\n%s\n", minctas, line);
      in_header = false;
      thread_lines++;
    } else if (mark) {
      char *tok[MAX_TOK];
      int nt = 0;
      /* the line as written, for messages (tokenising cuts it) */
      char shown[240];
      snprintf(shown, sizeof shown, "%s", lead);
      for (char *w = mark + strlen(PH_MARK); *w && nt < MAX_TOK;) {
        w += strspn(w, " \t\r");
        if (!*w) break;
        const size_t wl = strcspn(w, " \t\r");
        tok[nt++] = w;
        if (!w[wl]) break;
        w[wl] = 0;
        w += wl + 1;
      }
      if (nt == 0 || nt == MAX_TOK || emit(&o, tok, nt, lineno, shown, why, cap) != 0) {
        if (nt == 0 || nt == MAX_TOK) why_line(why, cap, lineno, shown, "malformed placeholder");
        free(line);
        free(o.s);
        return -1;
      }
      replaced++;
    } else {
      put(&o, "%s\n", line);
    }
    if (o.oom) break;
  }
  free(line);
  if (o.oom) {
    free(o.s);
    snprintf(why, cap, "out of host memory");
    return -1;
  }
  if (minctas > 0 && thread_lines == 0) {
    free(o.s);
    snprintf(why, cap, "minctas %ld: the text has no entry to put .minnctapersm in", minctas);
    return -1;
  }
  if (targets != 1) {
    free(o.s);
    snprintf(why, cap, "the text has %d .target lines (one expected): not PTX?", targets);
    return -1;
  }
  *out = o.s;
  if (out_len) *out_len = o.n;
  return replaced;
}
