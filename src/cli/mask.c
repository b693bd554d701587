/* mask.c — the CLI's --mask specifications (none, causal, sparse patterns) and layout files. */
#define _POSIX_C_SOURCE 200809L /* getline */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *const cli_mask_help =
    "  mask specifications (--mask):\n"
    "    none | causal (bottom-right) | causal-top-left (PyTorch is_causal)\n"
    "    window:L,R[,global:G]      keys p-L..p+R of the query's position p; the first G\n"
    "                               positions attend to and are seen by every position\n"
    "    dilated:W,D[,global:G]     every D-th key within p-W..p+W\n"
    "    strided:W,S[,global:G]     keys p-W..p+W and every S-th key (Sparse Transformer)\n"
    "    bigbird:B,W,G,R[,SEED]     blocks of B positions: W window blocks each side, G global\n"
    "                               blocks, R random blocks per query block (seed SEED, default "
    "0)\n"
    "    layout:FILE                a block layout read from FILE (format below)\n"
    "  every sparse form but layout takes a trailing ',causal' (also j <= p).\n"
    "  layout file: '#' starts a comment line; the first other line is\n"
    "    BLOCK_SIZE ROWS [causal]\n"
    "  with ROWS = ceil(seq_kv / BLOCK_SIZE), then exactly ROWS lines, line r listing the\n"
    "  key blocks query block r attends to (ascending, separated by spaces or commas;\n"
    "  an empty line or '-' for none). Queries sit at key position i + seq_kv - seq_q.\n";

void cli_mask_init(cli_mask *m) {
  memset(m, 0, sizeof *m);
  m->mask = CLATTN_MASK_NONE;
  snprintf(m->text, sizeof m->text, "none");
}

void cli_mask_free(cli_mask *m) {
  free(m->off);
  free(m->cols);
  m->off = m->cols = NULL;
}

void cli_mask_apply(const cli_mask *m, clattn_attention_desc *d) {
  d->mask = m->mask;
  d->sparse = m->sparse;
}

static int usage(const char *opt, const char *spec, const char *why) {
  fprintf(stderr, "clattn: --%s %s: %s (see `clattn help run`)\n", opt, spec, why);
  return CLI_EXIT_USAGE;
}

/* One unsigned decimal number at s (digits only: no sign, no space) up to
 * max: false when s holds none or it is larger (errno ERANGE included);
 * *end is set past it. The caller checks what follows (full token). */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out, const char **end) {
  if (!isdigit((unsigned char)*s)) return false;
  char *e;
  errno = 0;
  const unsigned long long x = strtoull(s, &e, 10);
  if (errno == ERANGE || x > max) return false;
  *out = (uint64_t)x;
  *end = e;
  return true;
}

/* Parses up to max comma-separated non-negative integers from s, each at
 * most INT_MAX (those at index >= wide_from: any uint64); stops at a field
 * that is not a number. Returns the count, or -1 when a number is out of
 * range; *end past the last one. */
static int parse_ints(const char *s, uint64_t *v, int max, int wide_from, const char **end) {
  int n = 0;
  *end = s;
  while (n < max && isdigit((unsigned char)*s)) {
    const char *e;
    if (!parse_u64(s, n >= wide_from ? UINT64_MAX : (uint64_t)INT_MAX, &v[n], &e)) return -1;
    n++;
    s = e;
    *end = s;
    if (*s != ',' || !isdigit((unsigned char)s[1])) break;
    s++;
  }
  return n;
}

static bool is_blank(const char *s) { return strspn(s, " \t\r\n") == strlen(s); }
static bool ends_token(char c) { return !c || c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Reads a layout file into m (block size, rows, CSR). Numbers are whole
 * tokens of digits within int range; the row offsets grow as rows are read
 * (a huge ROWS in the header allocates nothing by itself). */
static int read_layout(const char *opt, const char *spec, const char *path, cli_mask *m) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "clattn: --%s %s: cannot open '%s': %s\n", opt, spec, path, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  const size_t max_line = 65535;
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t len;
  int lineno = 0, bs = 0, rows = -1, causal = 0, r = 0;
  size_t cap = 0, n = 0, off_cap = 0;
  int rc = 0;
  while ((len = getline(&line, &line_cap, f)) >= 0) {
    lineno++;
    if (memchr(line, 0, (size_t)len)) {
      fprintf(stderr, "clattn: %s:%d: NUL byte in a text line\n", path, lineno);
      rc = CLI_EXIT_USAGE;
      break;
    }
    if ((size_t)len > max_line + 1 || ((size_t)len == max_line + 1 && line[len - 1] != '\n')) {
      fprintf(stderr, "clattn: %s:%d: line longer than %zu characters\n", path, lineno, max_line);
      rc = CLI_EXIT_USAGE;
      break;
    }
    char *s = line;
    while (*s == ' ' || *s == '\t')
      s++;
    if (*s == '#') continue;
    if (rows < 0) {
      if (is_blank(s)) continue;
      uint64_t b = 0, nr = 0;
      const char *e = s;
      bool ok = parse_u64(e, INT_MAX, &b, &e) && b >= 1 && (*e == ' ' || *e == '\t');
      while (ok && (*e == ' ' || *e == '\t'))
        e++;
      ok = ok && parse_u64(e, INT_MAX, &nr, &e) && ends_token(*e);
      while (ok && (*e == ' ' || *e == '\t'))
        e++;
      if (ok && !strncmp(e, "causal", 6) && ends_token(e[6])) {
        causal = 1;
        e += 6;
      }
      if (!ok || !is_blank(e)) {
        fprintf(stderr,
                "clattn: %s:%d: expected 'BLOCK_SIZE ROWS [causal]' with BLOCK_SIZE in "
                "1..2147483647 and ROWS in 0..2147483647\n",
                path, lineno);
        rc = CLI_EXIT_USAGE;
        break;
      }
      bs = (int)b;
      rows = (int)nr;
      continue;
    }
    if (r == rows) { /* only blank lines may follow */
      if (!is_blank(s)) {
        fprintf(stderr, "clattn: %s:%d: more than the %d rows the header announces\n", path, lineno,
                rows);
        rc = CLI_EXIT_USAGE;
        break;
      }
      continue;
    }
    if ((size_t)r + 2 > off_cap) {
      size_t nc = off_cap ? off_cap * 2 : 1024;
      if (nc > (size_t)rows + 1) nc = (size_t)rows + 1;
      int *no = realloc(m->off, nc * sizeof(int));
      if (!no) {
        rc = CLI_EXIT_LIBRARY;
        break;
      }
      if (!m->off) no[0] = 0;
      m->off = no;
      off_cap = nc;
    }
    if (*s == '-' && ends_token(s[1])) { /* '-': no key block */
      if (!is_blank(s + 1)) {
        fprintf(stderr, "clattn: %s:%d: '-' (no block) must be alone on its line\n", path, lineno);
        rc = CLI_EXIT_USAGE;
        break;
      }
      s += strlen(s);
    }
    for (;;) {
      while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\r')
        s++;
      if (*s == '\n' || !*s) break;
      const char *e;
      uint64_t c;
      if (!parse_u64(s, INT_MAX, &c, &e) || !(ends_token(*e) || *e == ',')) {
        const size_t tok = strcspn(s, " \t,\r\n");
        fprintf(stderr, "clattn: %s:%d: '%.*s' is not a block index (0..2147483647)\n", path,
                lineno, (int)(tok < 20 ? tok : 20), s);
        rc = CLI_EXIT_USAGE;
        break;
      }
      if (n == cap) {
        size_t nc = cap ? cap * 2 : 1024;
        int *nb = realloc(m->cols, nc * sizeof(int));
        if (!nb) {
          rc = CLI_EXIT_LIBRARY;
          break;
        }
        m->cols = nb;
        cap = nc;
      }
      m->cols[n++] = (int)c;
      s = (char *)e;
    }
    if (rc) break;
    if (n > INT_MAX) {
      fprintf(stderr, "clattn: %s:%d: more than 2147483647 block entries\n", path, lineno);
      rc = CLI_EXIT_USAGE;
      break;
    }
    m->off[++r] = (int)n;
  }
  free(line);
  fclose(f);
  if (!rc && rows < 0) {
    fprintf(stderr, "clattn: %s: no 'BLOCK_SIZE ROWS' header line\n", path);
    rc = CLI_EXIT_USAGE;
  }
  if (!rc && r < rows) {
    fprintf(stderr, "clattn: %s: the header announces %d rows but the file has %d\n", path, rows,
            r);
    rc = CLI_EXIT_USAGE;
  }
  if (!rc && !m->off && !(m->off = calloc(1, sizeof(int)))) rc = CLI_EXIT_LIBRARY;
  if (rc == CLI_EXIT_LIBRARY) fprintf(stderr, "clattn: out of host memory reading %s\n", path);
  if (rc) return rc;
  m->sparse.block_size = bs;
  m->sparse.layout_rows = rows;
  m->sparse.layout_row_offsets = m->off;
  m->sparse.layout_cols = m->cols ? m->cols : m->off; /* any non-NULL pointer when empty */
  m->sparse.causal = causal;
  return 0;
}

int cli_parse_mask(const char *opt, const char *spec, cli_mask *m) {
  cli_mask_free(m);
  cli_mask_init(m);
  snprintf(m->text, sizeof m->text, "%s", spec);
  if (!strcmp(spec, "none")) return 0;
  if (!strcmp(spec, "causal")) {
    m->mask = CLATTN_MASK_CAUSAL;
    return 0;
  }
  if (!strcmp(spec, "causal-top-left")) {
    m->mask = CLATTN_MASK_CAUSAL_TOP_LEFT;
    return 0;
  }
  static const struct {
    const char *name;
    clattn_mask mask;
    int min, max; /* numbers after the colon */
  } forms[] = {{"window:", CLATTN_MASK_WINDOW, 2, 2},
               {"dilated:", CLATTN_MASK_DILATED, 2, 2},
               {"strided:", CLATTN_MASK_STRIDED, 2, 2},
               {"bigbird:", CLATTN_MASK_BIGBIRD, 4, 5},
               {"layout:", CLATTN_MASK_BLOCK_LAYOUT, 0, 0}};
  int fi = -1;
  for (int i = 0; i < 5; i++)
    if (!strncmp(spec, forms[i].name, strlen(forms[i].name))) fi = i;
  if (fi < 0)
    return usage(opt, spec,
                 "expected none, causal, causal-top-left, window:, dilated:, strided:, bigbird: or "
                 "layout:");
  m->mask = forms[fi].mask;
  const char *s = spec + strlen(forms[fi].name);
  if (m->mask == CLATTN_MASK_BLOCK_LAYOUT) {
    if (!*s) return usage(opt, spec, "layout: needs a file name");
    const int rc = read_layout(opt, spec, s, m);
    if (rc) cli_mask_free(m);
    return rc;
  }
  uint64_t v[5];
  const char *end;
  /* BigBird's fifth number is the seed: any uint64. */
  int n = parse_ints(s, v, forms[fi].max, 4, &end);
  if (n < 0)
    return usage(opt, spec,
                 "number out of range (at most 2147483647; a BigBird seed at most "
                 "18446744073709551615)");
  if (n < forms[fi].min) return usage(opt, spec, "too few numbers (non-negative integers)");
  clattn_sparse_desc *sp = &m->sparse;
  switch (m->mask) {
  case CLATTN_MASK_WINDOW:
    sp->window_left = (int)v[0];
    sp->window_right = (int)v[1];
    break;
  case CLATTN_MASK_DILATED:
    sp->window_left = sp->window_right = (int)v[0];
    sp->dilation = (int)v[1];
    break;
  case CLATTN_MASK_STRIDED:
    sp->window_left = sp->window_right = (int)v[0];
    sp->stride = (int)v[1];
    break;
  default: /* BIGBIRD */
    sp->block_size = (int)v[0];
    sp->window_blocks = (int)v[1];
    sp->global_blocks = (int)v[2];
    sp->random_blocks = (int)v[3];
    sp->seed = n > 4 ? v[4] : 0;
    break;
  }
  while (*end == ',') {
    end++;
    if (!strncmp(end, "causal", 6) && (end[6] == ',' || !end[6])) {
      sp->causal = 1;
      end += 6;
    } else if (!strncmp(end, "global:", 7) && m->mask != CLATTN_MASK_BIGBIRD) {
      uint64_t g;
      const char *e2;
      if (parse_ints(end + 7, &g, 1, 1, &e2) != 1)
        return usage(opt, spec, "global: needs a count (at most 2147483647)");
      sp->num_global = (int)g;
      end = e2;
    } else {
      break;
    }
  }
  if (*end) return usage(opt, spec, "unexpected text after the numbers");
  return 0;
}

const char *cli_mask_string(const clattn_attention_desc *d, char *buf, size_t cap) {
  const clattn_sparse_desc *s = &d->sparse;
  switch (d->mask) {
  case CLATTN_MASK_NONE: snprintf(buf, cap, "none"); break;
  case CLATTN_MASK_CAUSAL: snprintf(buf, cap, "causal"); break;
  case CLATTN_MASK_CAUSAL_TOP_LEFT: snprintf(buf, cap, "causal-top-left"); break;
  case CLATTN_MASK_WINDOW:
    snprintf(buf, cap, "window:%d,%d", s->window_left, s->window_right);
    break;
  case CLATTN_MASK_DILATED: snprintf(buf, cap, "dilated:%d,%d", s->window_left, s->dilation); break;
  case CLATTN_MASK_STRIDED: snprintf(buf, cap, "strided:%d,%d", s->window_left, s->stride); break;
  case CLATTN_MASK_BIGBIRD:
    snprintf(buf, cap, "bigbird:%d,%d,%d,%d,%llu", s->block_size, s->window_blocks,
             s->global_blocks, s->random_blocks, (unsigned long long)s->seed);
    break;
  case CLATTN_MASK_BLOCK_LAYOUT:
    snprintf(buf, cap, "layout:b%d,%d-rows", s->block_size, s->layout_rows);
    break;
  default: snprintf(buf, cap, "?"); break;
  }
  size_t len = strlen(buf);
  if (d->mask >= CLATTN_MASK_WINDOW && d->mask <= CLATTN_MASK_STRIDED && s->num_global > 0 &&
      len < cap)
    snprintf(buf + len, cap - len, ",global:%d", s->num_global);
  len = strlen(buf);
  if (d->mask >= CLATTN_MASK_WINDOW && s->causal && len < cap)
    snprintf(buf + len, cap - len, ",causal");
  return buf;
}
