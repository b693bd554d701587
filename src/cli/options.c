/* options.c — table-driven "--name value" parsing and help listing shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Choice lists from the library's own name tables (clattn_*_name). */
const char *cli_algo_names[CLATTN_ALGO_LINEAR + 2];
const char *cli_mask_names[CLATTN_MASK_CAUSAL + 2];
const char *cli_dtype_names[CLATTN_DTYPE_BF16 + 2];
const char *cli_layout_names[CLATTN_LAYOUT_BSHD + 2];
const char *cli_kv_dtype_names[CLATTN_KV_DTYPE_FP8_E5M2 + 2];
const char *cli_kv_scale_names[CLATTN_KV_SCALE_CHANNEL + 2];
const char *const cli_page_order_names[] = {"shuffled", "sequential", NULL};

void cli_names_init(void) {
  for (int i = 0; i <= CLATTN_ALGO_LINEAR; i++)
    cli_algo_names[i] = clattn_algo_name((clattn_algo)i);
  for (int i = 0; i <= CLATTN_MASK_CAUSAL; i++)
    cli_mask_names[i] = clattn_mask_name((clattn_mask)i);
  for (int i = 0; i <= CLATTN_DTYPE_BF16; i++)
    cli_dtype_names[i] = clattn_dtype_name((clattn_dtype)i);
  for (int i = 0; i <= CLATTN_LAYOUT_BSHD; i++)
    cli_layout_names[i] = clattn_layout_name((clattn_layout)i);
  for (int i = 0; i <= CLATTN_KV_DTYPE_FP8_E5M2; i++)
    cli_kv_dtype_names[i] = clattn_kv_dtype_name((clattn_kv_dtype)i);
  for (int i = 0; i <= CLATTN_KV_SCALE_CHANNEL; i++)
    cli_kv_scale_names[i] = clattn_kv_scale_name((clattn_kv_scale)i);
}

static const cli_opt *find_opt(const cli_opt_table *tables, int ntables, const char *name,
                               size_t len) {
  for (int t = 0; t < ntables; t++)
    for (const cli_opt *o = tables[t]; o->name; o++)
      if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
  return NULL;
}

static int choice_index(const char *const *choices, const char *s) {
  for (int i = 0; choices[i]; i++)
    if (!strcmp(choices[i], s)) return i;
  return -1;
}

static void print_choices(FILE *f, const char *const *choices) {
  for (int i = 0; choices[i]; i++)
    fprintf(f, "%s%s", i ? "|" : "", choices[i]);
}

static int usage_error(const char *cmd, const char *opt, const char *val, const char *why) {
  fprintf(stderr, "clattn %s: --%s %s: %s (see `clattn help %s`)\n", cmd, opt, val ? val : "", why,
          cmd);
  return CLI_EXIT_USAGE;
}

static int set_value(const char *cmd, const cli_opt *o, const char *val) {
  char *end = NULL;
  errno = 0;
  switch (o->kind) {
  case CLI_OPT_INT: {
    long x = strtol(val, &end, 10);
    if (end == val || *end || errno || x > INT_MAX || x < INT_MIN)
      return usage_error(cmd, o->name, val, "expected an integer");
    if (x < o->min) {
      char why[64];
      snprintf(why, sizeof why, "must be >= %ld", o->min);
      return usage_error(cmd, o->name, val, why);
    }
    *(int *)o->dst = (int)x;
    return 0;
  }
  case CLI_OPT_U64: {
    if (*val == '-') return usage_error(cmd, o->name, val, "expected a non-negative integer");
    unsigned long long x = strtoull(val, &end, 0);
    if (end == val || *end || errno)
      return usage_error(cmd, o->name, val, "expected a non-negative integer");
    *(uint64_t *)o->dst = (uint64_t)x;
    return 0;
  }
  case CLI_OPT_DOUBLE: {
    double x = strtod(val, &end);
    if (end == val || *end || errno || !isfinite(x))
      return usage_error(cmd, o->name, val, "expected a finite number");
    *(double *)o->dst = x;
    return 0;
  }
  case CLI_OPT_STR: *(const char **)o->dst = val; return 0;
  case CLI_OPT_CHOICE: {
    int i = choice_index(o->choices, val);
    if (i < 0) {
      fprintf(stderr, "clattn %s: --%s %s: expected one of ", cmd, o->name, val);
      print_choices(stderr, o->choices);
      fprintf(stderr, "\n");
      return CLI_EXIT_USAGE;
    }
    *(int *)o->dst = i;
    return 0;
  }
  case CLI_OPT_FLAG: break;
  }
  return usage_error(cmd, o->name, val, "internal: bad option kind");
}

int cli_parse_options(const char *cmd, int argc, char **argv, const cli_opt_table *tables,
                      int ntables) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
    if (strncmp(a, "--", 2) != 0 || !a[2]) {
      fprintf(stderr, "clattn %s: unexpected argument '%s' (see `clattn help %s`)\n", cmd, a, cmd);
      return CLI_EXIT_USAGE;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_opt *o = find_opt(tables, ntables, name, len);
    if (!o) {
      fprintf(stderr, "clattn %s: unknown option '%.*s' (see `clattn help %s`)\n", cmd,
              (int)(len + 2), a, cmd);
      return CLI_EXIT_USAGE;
    }
    if (o->kind == CLI_OPT_FLAG) {
      if (eq) return usage_error(cmd, o->name, eq + 1, "takes no value");
      *(int *)o->dst = o->flag_value;
      continue;
    }
    const char *val = eq ? eq + 1 : NULL;
    if (!val) {
      if (i + 1 >= argc) return usage_error(cmd, o->name, NULL, "needs a value");
      val = argv[++i];
    }
    int rc = set_value(cmd, o, val);
    if (rc) return rc;
  }
  return 0;
}

void cli_print_options(FILE *f, const cli_opt_table *tables, int ntables) {
  int width = 0;
  char left[128];
  for (int pass = 0; pass < 2; pass++)
    for (int t = 0; t < ntables; t++)
      for (const cli_opt *o = tables[t]; o->name; o++) {
        if (o->kind == CLI_OPT_CHOICE && !o->metavar) {
          int n = snprintf(left, sizeof left, "--%s ", o->name);
          for (int c = 0; o->choices[c] && n < (int)sizeof left; c++)
            n += snprintf(left + n, sizeof left - (size_t)n, "%s%s", c ? "|" : "", o->choices[c]);
        } else {
          snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "",
                   o->metavar ? o->metavar : "");
        }
        int n = (int)strlen(left);
        if (pass == 0)
          width = n > width ? n : width;
        else
          fprintf(f, "  %-*s  %s\n", width, left, o->help);
      }
}

int cli_parse_int_list(const char *opt, const char *s, int **out) {
  *out = NULL;
  int n = 1;
  for (const char *c = s; *c; c++)
    n += *c == ',';
  int *v = calloc((size_t)n, sizeof *v);
  if (!v) {
    fprintf(stderr, "clattn: out of host memory\n");
    return -1;
  }
  const char *c = s;
  for (int i = 0; i < n; i++) {
    char *end = NULL;
    errno = 0;
    long x = strtol(c, &end, 10);
    if (end == c || (*end && *end != ',') || errno || x < 1 || x > INT_MAX) {
      fprintf(stderr, "clattn: --%s %s: expected a comma-separated list of positive integers\n",
              opt, s);
      free(v);
      return -1;
    }
    v[i] = (int)x;
    c = end + (*end == ',');
  }
  *out = v;
  return n;
}

int cli_parse_choice_list(const char *opt, const char *s, const char *const *choices,
                          unsigned *bits) {
  *bits = 0;
  const char *c = s;
  for (;;) {
    const char *comma = strchr(c, ',');
    size_t len = comma ? (size_t)(comma - c) : strlen(c);
    int found = -1;
    for (int i = 0; choices[i]; i++)
      if (strlen(choices[i]) == len && !strncmp(choices[i], c, len)) found = i;
    if (found < 0) {
      fprintf(stderr, "clattn: --%s %s: '%.*s' is not one of ", opt, s, (int)len, c);
      print_choices(stderr, choices);
      fprintf(stderr, "\n");
      return CLI_EXIT_USAGE;
    }
    *bits |= 1u << found;
    if (!comma) break;
    c = comma + 1;
  }
  return 0;
}
