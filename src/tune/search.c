/* search.c — the tuner's candidate generator over a variant's search space (exhaustive, sampled,
 * refined). */
#include "tune.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- candidate search ------------------------------------------------------ */

#define rng_next clattn__splitmix64

/* Candidate values of parameter p: the tuner's list, or the one value of
 * the base configuration for parameters the tuner does not search. */
static int nvals(const clattn__variant *v, int p) {
  return v->params[p].values ? v->params[p].num_values : 1;
}

static int value_at(const clattn__variant *v, const int *base, int p, int i) {
  return v->params[p].values ? v->params[p].values[i] : base[p];
}

static int value_pos(const clattn__variant *v, int p, int x) {
  if (!v->params[p].values) return -1;
  for (int i = 0; i < v->params[p].num_values; i++)
    if (v->params[p].values[i] == x) return i;
  return -1;
}

static int param_index(const clattn__variant *v, const char *name, size_t len) {
  for (int i = 0; i < v->num_params; i++)
    if (strlen(v->params[i].name) == len && !strncmp(v->params[i].name, name, len)) return i;
  return -1;
}

/* Parses "bm=16,32;tn=4" into allowed[p][value position]. */
static clattn_status parse_restriction(const clattn__variant *sp, const char *spec,
                                       unsigned char allowed[][32], char *err, size_t errcap) {
  for (int p = 0; p < sp->num_params; p++)
    for (int i = 0; i < nvals(sp, p) && i < 32; i++)
      allowed[p][i] = 1;
  if (!spec || !*spec) return CLATTN_SUCCESS;
  const char *s = spec;
  while (*s) {
    while (*s == ';' || *s == ' ')
      s++;
    if (!*s) break;
    const char *eq = strchr(s, '=');
    int pi = eq ? param_index(sp, s, (size_t)(eq - s)) : -1;
    if (pi < 0 || !sp->params[pi].values) {
      snprintf(err, errcap,
               "space '%s': expected PARAM=V1,V2;... with PARAM one of the %s "
               "kernel's searched parameters",
               spec, sp->name);
      return CLATTN_ERROR_INVALID_ARGUMENT;
    }
    memset(allowed[pi], 0, 32);
    s = eq + 1;
    int any = 0;
    for (;;) {
      char *end;
      long v = strtol(s, &end, 10);
      int pos = end == s ? -1 : value_pos(sp, pi, (int)v);
      if (pos < 0) {
        snprintf(err, errcap, "space '%s': %s takes values from its legal list (", spec,
                 sp->params[pi].name);
        for (int i = 0; i < sp->params[pi].num_values; i++)
          clattn__append(err, errcap, "%s%d", i ? "," : "", sp->params[pi].values[i]);
        clattn__append(err, errcap, ")");
        return CLATTN_ERROR_INVALID_ARGUMENT;
      }
      allowed[pi][pos] = 1;
      any = 1;
      s = end;
      if (*s == ',')
        s++;
      else
        break;
    }
    if (!any || (*s && *s != ';' && *s != ' ')) {
      snprintf(err, errcap, "space '%s': cannot parse near '%s'", spec, s);
      return CLATTN_ERROR_INVALID_ARGUMENT;
    }
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn__search_init(clattn__search *s, const clattn__variant *sp,
                                  const clattn_attention_desc *d, const clattn__device_info *info,
                                  const char *restrict_spec, const int *first, uint64_t seed,
                                  int exhaustive_max, char *err, size_t errcap) {
  memset(s, 0, sizeof *s);
  s->variant = sp;
  s->np = sp->num_params;
  s->best = -1;
  s->rng = seed;
  err[0] = 0;
  unsigned char allowed[CLATTN__MAX_PARAMS][32];
  clattn_status st = parse_restriction(sp, restrict_spec, allowed, err, errcap);
  if (st != CLATTN_SUCCESS) return st;
  int base[CLATTN__MAX_PARAMS] = {0};
  if (first) memcpy(base, first, (size_t)s->np * sizeof *base);
  size_t total = 1;
  for (int p = 0; p < s->np; p++)
    total *= (size_t)nvals(sp, p);
  if (total > 1u << 20) {
    snprintf(err, errcap, "the %s kernel's search space is too large (%zu points)", sp->name,
             total);
    return CLATTN_ERROR_INTERNAL;
  }
  s->cfg = malloc((total + 1) * (size_t)s->np * sizeof *s->cfg);
  if (!s->cfg) return CLATTN_ERROR_OUT_OF_MEMORY;
  int n = 0;
  if (first && !sp->check(first, d, info)) {
    memcpy(s->cfg, first, (size_t)s->np * sizeof *s->cfg);
    n = 1;
    s->has_default = 1;
  }
  int idx[CLATTN__MAX_PARAMS] = {0};
  for (size_t c = 0; c < total; c++) {
    size_t r = c;
    int ok = 1;
    int v[CLATTN__MAX_PARAMS];
    for (int p = s->np - 1; p >= 0; p--) {
      idx[p] = (int)(r % (size_t)nvals(sp, p));
      r /= (size_t)nvals(sp, p);
      ok &= idx[p] < 32 && allowed[p][idx[p]];
      v[p] = value_at(sp, base, p, idx[p]);
    }
    if (!ok || sp->check(v, d, info)) continue;
    if (s->has_default && !memcmp(v, s->cfg, (size_t)s->np * sizeof *v)) continue;
    memcpy(s->cfg + (size_t)n * (size_t)s->np, v, (size_t)s->np * sizeof *v);
    n++;
  }
  s->num = n;
  if (n == 0) {
    snprintf(err, errcap,
             "no legal configuration of the %s kernel for head_dim %d on this "
             "device%s",
             sp->name, d->head_dim, restrict_spec && *restrict_spec ? " in the given space" : "");
    free(s->cfg);
    s->cfg = NULL;
    return CLATTN_ERROR_UNSUPPORTED;
  }
  s->st = calloc((size_t)n, 1);
  s->ms = malloc((size_t)n * sizeof *s->ms);
  if (!s->st || !s->ms) {
    clattn__search_free(s);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  for (int i = 0; i < n; i++)
    s->ms[i] = -1;
  s->exhaustive = n <= exhaustive_max;
  return CLATTN_SUCCESS;
}

void clattn__search_free(clattn__search *s) {
  free(s->cfg);
  free(s->st);
  free(s->ms);
  s->cfg = NULL;
  s->st = NULL;
  s->ms = NULL;
}

static int find_cfg(const clattn__search *s, const int *v) {
  for (int i = 0; i < s->num; i++)
    if (!memcmp(s->cfg + (size_t)i * (size_t)s->np, v, (size_t)s->np * sizeof *v)) return i;
  return -1;
}

static int random_untried(clattn__search *s) {
  int left = s->num - s->proposed;
  if (left <= 0) return -1;
  int k = (int)(rng_next(&s->rng) % (uint64_t)left);
  for (int i = 0; i < s->num; i++)
    if (!s->st[i] && k-- == 0) return i;
  return -1;
}

/* An untried legal neighbour of the best: one parameter one step up or
 * down its value list, else two parameters at once (e.g. bm and tm together,
 * keeping their ratio). -1 when none is left. */
static int untried_neighbour(clattn__search *s) {
  if (s->best < 0) return -1;
  const clattn__variant *sp = s->variant;
  const int *b = s->cfg + (size_t)s->best * (size_t)s->np;
  int pos[CLATTN__MAX_PARAMS];
  for (int p = 0; p < s->np; p++)
    pos[p] = value_pos(sp, p, b[p]);
  int v[CLATTN__MAX_PARAMS];
  for (int p = 0; p < s->np; p++)
    for (int d = -1; d <= 1; d += 2) {
      int np_ = pos[p] + d;
      if (pos[p] < 0 || np_ < 0 || np_ >= nvals(sp, p)) continue;
      memcpy(v, b, (size_t)s->np * sizeof *v);
      v[p] = sp->params[p].values[np_];
      int i = find_cfg(s, v);
      if (i >= 0 && !s->st[i]) return i;
    }
  for (int p = 0; p < s->np; p++)
    for (int q = p + 1; q < s->np; q++)
      for (int dp = -1; dp <= 1; dp += 2)
        for (int dq = -1; dq <= 1; dq += 2) {
          int a = pos[p] + dp, c = pos[q] + dq;
          if (pos[p] < 0 || pos[q] < 0 || a < 0 || c < 0 || a >= nvals(sp, p) || c >= nvals(sp, q))
            continue;
          memcpy(v, b, (size_t)s->np * sizeof *v);
          v[p] = sp->params[p].values[a];
          v[q] = sp->params[q].values[c];
          int i = find_cfg(s, v);
          if (i >= 0 && !s->st[i]) return i;
        }
  return -1;
}

int clattn__search_next(clattn__search *s, double budget_frac) {
  int i = -1;
  if (s->has_default && !s->st[0]) {
    i = 0;
    s->phase = s->exhaustive ? "exhaustive" : "sample";
  } else if (s->exhaustive) {
    i = random_untried(s);
    s->phase = "exhaustive";
  } else {
    /* Random samples for the first part of the budget (at least 8, at most
     * a quarter of the space), then refinement around the best; once the
     * best's neighbourhood is exhausted, sample again. */
    int target = s->num / 4 < 8 ? 8 : s->num / 4;
    if (s->done < target && budget_frac < 0.5) {
      i = random_untried(s);
      s->phase = "sample";
    } else {
      i = untried_neighbour(s);
      s->phase = "refine";
      if (i < 0) {
        i = random_untried(s);
        s->phase = "sample";
      }
    }
  }
  if (i >= 0) {
    s->st[i] = 1;
    s->proposed++;
  }
  return i;
}

void clattn__search_report(clattn__search *s, int idx, double ms) {
  if (idx < 0 || idx >= s->num) return;
  s->st[idx] = 2;
  s->ms[idx] = ms;
  s->done++;
  if (ms >= 0 && (s->best < 0 || ms < s->ms[s->best])) s->best = idx;
}
