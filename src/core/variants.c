/* variants.c — the registry of kernel variants and the one parser of configuration strings. */
#include "variant.h"
#include "families.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row per kernel variant. VARIANT(name, family, pass, fast path, prefix)
 * names the functions of the family file (families.h): prefix_applicable,
 * _check, _fallback, _local, and the row gives the create / execute /
 * release / flops / profile functions and the parameter table. */
#define VARIANT(n, fam, ps, fast, pre)                                                             \
  .name = n, .family = fam, .pass = ps, .fast_path = fast, .sources = clattn__##pre##_sources,     \
  .applicable = clattn__##pre##_applicable, .check = clattn__##pre##_check,                        \
  .fallback = clattn__##pre##_fallback, .local_bytes = clattn__##pre##_local
#define F CLATTN_ALGO_FLASH
#define N CLATTN_ALGO_NAIVE
#define L CLATTN_ALGO_LINEAR
#define FWD CLATTN__FORWARD

/* One row per kernel variant; within a family the registry order breaks
 * ties of priority (a variant's `applicable` returns its priority). */
static const clattn__variant table[] = {
    {VARIANT("decode", F, FWD, false, decode), .params = clattn__decode_params, .num_params = 5,
     .kv_quant = true, .create = clattn__decode_create, .execute = clattn__decode_execute,
     .release = clattn__decode_release, .profile = clattn__decode_profile},
    {VARIANT("decode_warp", F, FWD, true, decode_warp), .params = clattn__decode_warp_params,
     .num_params = 5, .kv_quant = true, .create = clattn__decode_create,
     .execute = clattn__decode_execute, .release = clattn__decode_release,
     .profile = clattn__decode_profile},
    {VARIANT("decode_tc", F, FWD, true, decode_tc), .params = clattn__decode_tc_params,
     .num_params = 6, .kv_quant = true, .create = clattn__decode_create,
     .execute = clattn__decode_execute, .release = clattn__decode_release,
     .profile = clattn__decode_profile},
    {VARIANT("flash_wgmma", F, FWD, true, flash_wgmma), .params = clattn__flash_wgmma_params,
     .num_params = 4, .ptx_patched = true, .create = clattn__flash_wgmma_create,
     .execute = clattn__flash_execute, .release = clattn__flash_release},
    {VARIANT("flash_tc", F, FWD, true, flash_tc), .params = clattn__flash_tc_params,
     .num_params = 3, .kv_quant = true, .create = clattn__flash_tc_create,
     .execute = clattn__flash_execute, .release = clattn__flash_release},
    {VARIANT("flash_tcq", F, FWD, true, flash_tcq), .params = clattn__flash_tc_params,
     .num_params = 3, .create = clattn__flash_tc_create, .execute = clattn__flash_execute,
     .release = clattn__flash_release},
    {VARIANT("flash_tf32", F, FWD, true, flash_tf32), .params = clattn__flash_tc_params,
     .num_params = 3, .create = clattn__flash_tc_create, .execute = clattn__flash_execute,
     .release = clattn__flash_release},
    {VARIANT("flash_rows", F, FWD, true, flash_rows), .params = clattn__flash_rows_params,
     .num_params = 2, .kv_quant = true, .create = clattn__flash_wg_create,
     .execute = clattn__flash_execute, .release = clattn__flash_release},
    {VARIANT("flash", F, FWD, false, flash_wg), .params = clattn__flash_wg_params, .num_params = 4,
     .kv_quant = true, .create = clattn__flash_wg_create, .execute = clattn__flash_execute,
     .release = clattn__flash_release},
    /* The backward pass (clattn_plan_execute_backward): create, execute and
     * release work on p->bwd_state, not p->state. */
    {VARIANT("flash_bwd_tc", F, CLATTN__BACKWARD, true, flash_bwd_tc),
     .params = clattn__flash_bwd_tc_params, .num_params = 8, .create = clattn__flash_bwd_create,
     .execute = clattn__flash_bwd_execute, .release = clattn__flash_bwd_release},
    {VARIANT("flash_bwd", F, CLATTN__BACKWARD, false, flash_bwd),
     .params = clattn__flash_bwd_params, .num_params = 3, .create = clattn__flash_bwd_create,
     .execute = clattn__flash_bwd_execute, .release = clattn__flash_bwd_release},
    {VARIANT("flash_bwd_rows", F, CLATTN__BACKWARD, true, flash_bwd_rows),
     .params = clattn__flash_bwd_rows_params, .num_params = 1, .create = clattn__flash_bwd_create,
     .execute = clattn__flash_bwd_execute, .release = clattn__flash_bwd_release},
    {VARIANT("naive", N, FWD, false, naive), .create = clattn__naive_create,
     .execute = clattn__naive_execute, .release = clattn__naive_release},
    {VARIANT("naive_bwd", N, CLATTN__BACKWARD, false, naive_bwd),
     .create = clattn__naive_bwd_create, .execute = clattn__naive_bwd_execute,
     .release = clattn__naive_bwd_release},
    {VARIANT("linear_tc", L, FWD, true, linear_tc), .params = clattn__linear_tc_params,
     .num_params = 25, .create = clattn__linear_create, .execute = clattn__linear_execute,
     .release = clattn__linear_release, .flops = clattn__linear_flops,
     .profile = clattn__linear_profile},
    {VARIANT("linear", L, FWD, false, linear), .params = clattn__linear_params, .num_params = 25,
     .create = clattn__linear_create, .execute = clattn__linear_execute,
     .release = clattn__linear_release, .flops = clattn__linear_flops,
     .profile = clattn__linear_profile},
};
#define NUM_VARIANTS ((int)(sizeof table / sizeof table[0]))

#undef F
#undef N
#undef L
#undef FWD

const clattn__variant *clattn__variant_at(int i) {
  return i >= 0 && i < NUM_VARIANTS ? &table[i] : NULL;
}

const clattn__variant *clattn__variant_find(const char *name) {
  for (int i = 0; i < NUM_VARIANTS; i++)
    if (!strcmp(table[i].name, name)) return &table[i];
  return NULL;
}

int clattn__variant_index(const clattn__variant *v) {
  for (int i = 0; i < NUM_VARIANTS; i++)
    if (&table[i] == v) return i;
  return -1;
}

int clattn__variant_count(void) { return NUM_VARIANTS; }

int clattn__applicable_variants(const clattn__device_info *info, const clattn_attention_desc *d,
                                clattn__pass pass, bool portable, const clattn__variant **out,
                                int cap, char *why_not, size_t why_cap) {
  int prio[16], n = 0;
  if (why_not && why_cap) why_not[0] = 0;
  const clattn_algo fam = d->algo == CLATTN_ALGO_AUTO ? CLATTN_ALGO_FLASH : d->algo;
  for (int i = 0; i < NUM_VARIANTS; i++) {
    const clattn__variant *v = &table[i];
    if (v->family != fam || v->pass != pass) continue;
    const char *why = NULL;
    int pr = 0;
    if (portable && v->fast_path)
      why = "a device fast path (CLATTN_PLAN_PORTABLE / CLATTN_PORTABLE)";
    else if (i < 64 && (info->broken_variants >> i & 1))
      why = "its build failed on this device (see the plan's describe)";
    else if (d->kv_dtype != CLATTN_KV_DTYPE_SAME && !v->kv_quant)
      why = "quantized K/V (desc.kv_dtype) is read by the decode kernels, flash and flash_rows";
    else
      pr = v->applicable(info, d, &why);
    if (pr <= 0) {
      if (why_not) clattn__append(why_not, why_cap, "%s%s: %s", *why_not ? "; " : "", v->name, why);
      continue;
    }
    if (n == cap || n == 16) break;
    int j = n++;
    while (j > 0 && prio[j - 1] < pr) { /* stable: registry order breaks ties */
      prio[j] = prio[j - 1];
      out[j] = out[j - 1];
      j--;
    }
    prio[j] = pr;
    out[j] = v;
  }
  return n;
}

void clattn__config_format(const clattn__variant *v, const int *params, char *buf, size_t cap) {
  buf[0] = 0;
  for (int i = 0; i < v->num_params; i++)
    clattn__append(buf, cap, "%s%s=%d", i ? "," : "", v->params[i].name, params[i]);
}

static int param_index(const clattn__variant *v, const char *name, size_t len) {
  for (int i = 0; i < v->num_params; i++)
    if (strlen(v->params[i].name) == len && !strncmp(v->params[i].name, name, len)) return i;
  return -1;
}

bool clattn__config_prefix(const char *s, char *buf, size_t cap) {
  const char *colon = strchr(s, ':');
  const char *eq = strchr(s, '=');
  if (!colon && !eq && *s && clattn__variant_find(s)) /* a bare name: its defaults */
    colon = s + strlen(s);
  if (!colon || (eq && eq < colon)) return false;
  size_t n = (size_t)(colon - s);
  if (n + 1 > cap) n = cap - 1;
  memcpy(buf, s, n);
  buf[n] = 0;
  return true;
}

/* The part after a "name:" prefix naming v; NULL when the prefix names
 * another variant. */
static const char *after_prefix(const clattn__variant *v, const char *s) {
  char pre[64];
  if (!clattn__config_prefix(s, pre, sizeof pre)) return s;
  if (strcmp(pre, v->name)) return NULL;
  const char *colon = strchr(s, ':');
  return colon ? colon + 1 : s + strlen(s);
}

clattn_status clattn__config_parse(const clattn__variant *v, const char *s, const int *base,
                                   int *params, char *err, size_t errcap) {
  int got[CLATTN__MAX_PARAMS] = {0};
  int vals[CLATTN__MAX_PARAMS] = {0};
  if (err && errcap) err[0] = 0;
#define BAD(...)                                                                                   \
  do {                                                                                             \
    if (err) snprintf(err, errcap, __VA_ARGS__);                                                   \
    return CLATTN_ERROR_INVALID_ARGUMENT;                                                          \
  } while (0)
  const char *p = after_prefix(v, s);
  if (!p) BAD("the prefix does not name the %s kernel", v->name);
  if (base) memcpy(vals, base, (size_t)v->num_params * sizeof *vals);
  if (!*p && !base) BAD("empty configuration");
  while (*p) {
    const char *eq = strchr(p, '=');
    const char *comma = strchr(p, ',');
    if (!eq || (comma && comma < eq)) BAD("expected KEY=VALUE near '%.40s'", p);
    int pi = param_index(v, p, (size_t)(eq - p));
    if (pi < 0) BAD("'%.*s' is not a parameter of the %s kernel", (int)(eq - p), p, v->name);
    if (got[pi]) BAD("%s is given twice", v->params[pi].name);
    const char *num = eq + 1;
    if (!(*num >= '0' && *num <= '9') && !(*num == '-' && num[1] >= '0' && num[1] <= '9'))
      BAD("%s: '%.20s' is not a decimal integer", v->params[pi].name, num);
    errno = 0;
    char *end;
    long long x = strtoll(num, &end, 10);
    if (errno == ERANGE || x < v->params[pi].min || x > v->params[pi].max)
      BAD("%s=%.*s is outside %d..%d", v->params[pi].name, (int)(end - num), num, v->params[pi].min,
          v->params[pi].max);
    vals[pi] = (int)x;
    got[pi] = 1;
    p = end;
    if (*p == ',') {
      p++;
      if (!*p) BAD("trailing ','");
    } else if (*p) {
      BAD("unexpected '%.20s' after %s", p, v->params[pi].name);
    }
  }
  if (!base)
    for (int i = 0; i < v->num_params; i++)
      if (!got[i]) BAD("%s is missing (every parameter is required here)", v->params[i].name);
#undef BAD
  memcpy(params, vals, (size_t)v->num_params * sizeof *params);
  return CLATTN_SUCCESS;
}

bool clattn__config_names_fit(const clattn__variant *v, const char *s) {
  const char *p = after_prefix(v, s);
  if (!p) return false;
  while (*p) {
    const char *eq = strchr(p, '=');
    if (!eq || param_index(v, p, (size_t)(eq - p)) < 0) return false;
    const char *comma = strchr(eq, ',');
    if (!comma) break;
    p = comma + 1;
  }
  return true;
}
