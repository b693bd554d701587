/* choice.c — the one selector of a plan's kernel variant and configuration (plans and the tuner use
 * it). */
#include "tune.h"

#include <stdio.h>
#include <string.h>

/* Next ';'-separated entry of a forced configuration list into buf. */
static const char *next_entry(const char *s, char *buf, size_t cap) {
  while (*s == ';' || *s == ' ')
    s++;
  if (!*s) return NULL;
  size_t n = 0;
  while (s[n] && s[n] != ';')
    n++;
  size_t k = n < cap - 1 ? n : cap - 1;
  memcpy(buf, s, k);
  buf[k] = 0;
  while (k > 0 && buf[k - 1] == ' ')
    buf[--k] = 0;
  return s + n;
}

/* A default configuration of v to complete a partial forced one: the
 * database entry, else the built-in default. */
static bool base_config(clattn_plan p, const clattn__variant *v, int *params) {
  bool exact;
  int seq;
  char label[64];
  if (clattn__tunedb_lookup(p->ctx, v, &p->desc, params, &exact, &seq)) return true;
  return clattn__builtin_default(&p->ctx->info, v, &p->desc, params, label, sizeof label);
}

/*
 * A forced configuration list ("[variant:]k=v,...;[variant:]k=v,..."): the
 * first entry that concerns this plan's family decides. An entry concerns
 * it when its prefix names one of the family's variants, or, without a
 * prefix, when its keys are parameters of one of the applicable variants
 * (tried in priority order; one whose legality check fails gives way to the
 * next, as a forced tiling the tensor cores cannot take selects the
 * portable kernel). Parameters an entry does not name keep their default.
 * `strict` (the API's string): an entry that concerns no variant of the
 * family is an error; otherwise (the environment's list, shared by every
 * plan) only an entry that names no variant at all is.
 * Returns CLATTN_SUCCESS with *v set, CLATTN_SUCCESS with *v NULL when no
 * entry applies, or an error.
 */
static clattn_status forced(clattn_plan p, const char *list, const char *what, bool strict,
                            const clattn__variant *const *cand, int ncand,
                            const clattn__variant **v, int *params) {
  clattn_context ctx = p->ctx;
  *v = NULL;
  char entry[1024];
  const char *s = list;
  while ((s = next_entry(s, entry, sizeof entry)) != NULL) {
    char pre[64], err[256] = "";
    if (clattn__config_prefix(entry, pre, sizeof pre)) {
      const clattn__variant *named = clattn__variant_find(pre);
      if (!named)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s='%s': no kernel variant is named '%s'", what, list, pre);
      if (named->pass != CLATTN__FORWARD) { /* the backward's (clattn__choose_backward) */
        if (strict)
          return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                              "%s='%s': %s is a backward kernel (force it with "
                              "CLATTN_TUNE_OVERRIDE)",
                              what, list, pre);
        continue;
      }
      const clattn_algo fam = p->desc.algo == CLATTN_ALGO_AUTO ? CLATTN_ALGO_FLASH : p->desc.algo;
      if (named->family != fam) {
        if (strict)
          return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                              "%s='%s': %s is not a kernel of this plan's family", what, list, pre);
        continue;
      }
      bool ok = false;
      for (int i = 0; i < ncand; i++)
        ok |= cand[i] == named;
      if (!ok) {
        const char *why = "left out by the portable opt-out";
        if (!(ctx->settings.portable || (p->flags & CLATTN_PLAN_PORTABLE)) || !named->fast_path)
          named->applicable(&ctx->info, &p->desc, &why);
        return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                            "%s='%s': the %s kernel does not apply here: %s", what, list, pre, why);
      }
      int base[CLATTN__MAX_PARAMS];
      if (!base_config(p, named, base) ||
          clattn__config_parse(named, entry, base, params, err, sizeof err) != CLATTN_SUCCESS)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s='%s' is not a %s configuration: %s", what, list, named->name,
                            err[0] ? err : "no default to complete it");
      const char *why = named->check(params, &p->desc, &ctx->info);
      if (why)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s='%s' is not legal on this device for head_dim %d: %s", what, list,
                            p->desc.head_dim, why);
      *v = named;
      return CLATTN_SUCCESS;
    }
    /* No prefix: the first applicable variant whose parameters fit. */
    const char *first_why = NULL;
    const clattn__variant *first_fit = NULL;
    for (int i = 0; i < ncand; i++) {
      if (!clattn__config_names_fit(cand[i], entry)) continue;
      int base[CLATTN__MAX_PARAMS];
      if (!base_config(p, cand[i], base)) continue;
      if (clattn__config_parse(cand[i], entry, base, params, err, sizeof err) != CLATTN_SUCCESS)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "%s='%s' is not a %s configuration: %s", what, list, cand[i]->name,
                            err);
      const char *why = cand[i]->check(params, &p->desc, &ctx->info);
      if (!why) {
        *v = cand[i];
        return CLATTN_SUCCESS;
      }
      if (!first_fit) {
        first_fit = cand[i];
        first_why = why;
      }
    }
    if (first_fit)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                          "%s='%s' is not legal on this device for head_dim %d: %s", what, list,
                          p->desc.head_dim, first_why);
    bool any = false;
    for (int i = 0; clattn__variant_at(i) && !any; i++)
      any = clattn__variant_at(i)->num_params > 0 &&
            clattn__config_names_fit(clattn__variant_at(i), entry);
    if (strict || !any)
      return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                          "%s='%s': '%s' is not a configuration of %s (keys must be the "
                          "parameters of one kernel, e.g. 'bm=64,bn=32,tm=16,tn=8', or name it: "
                          "'flash_tc:warps=4,mt=2,bn=64')",
                          what, list, entry,
                          any ? "a kernel that applies to this plan" : "any kernel");
  }
  return CLATTN_SUCCESS;
}

/* The error when no configuration of the last candidate variant fits the device. */
static clattn_status no_config_fits(clattn_context ctx, const clattn__variant *v,
                                    const clattn_attention_desc *d) {
  return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                      "no configuration of the %s kernel fits this device for head_dim %d (local "
                      "memory %llu bytes, max work-group %zu)",
                      v->name, d->head_dim, (unsigned long long)ctx->info.local_mem,
                      ctx->info.max_wg);
}

clattn_status clattn__choose(clattn_plan p, const clattn__variant **out, int *params, char *origin,
                             size_t cap, bool *settled) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const bool portable = ctx->settings.portable || (p->flags & CLATTN_PLAN_PORTABLE);
  const clattn__variant *cand[16];
  char why_not[1024];
  const int n = clattn__applicable_variants(&ctx->info, d, CLATTN__FORWARD, portable, cand, 16,
                                            why_not, sizeof why_not);
  if (n == 0)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED, "no kernel applies to this problem: %s",
                        why_not);

  /* 1. Forced: the API's (or the tuner's) string, then CLATTN_TUNE_OVERRIDE. */
  const clattn__variant *v = NULL;
  clattn_status st;
  if (p->config && *p->config) {
    st = forced(p, p->config, "config", true, cand, n, &v, params);
    if (st != CLATTN_SUCCESS) return st;
    snprintf(origin, cap, "override (clattn_plan_create_with_config)");
    *out = v;
    *settled = true;
    return CLATTN_SUCCESS;
  }
  if (ctx->settings.override[0]) {
    st = forced(p, ctx->settings.override, "CLATTN_TUNE_OVERRIDE", false, cand, n, &v, params);
    if (st != CLATTN_SUCCESS) return st;
    if (v) {
      snprintf(origin, cap, "override (CLATTN_TUNE_OVERRIDE)");
      *out = v;
      *settled = true;
      return CLATTN_SUCCESS;
    }
  }

  /* 2. The first applicable variant with a configuration: tuned (exact
   * class, else the nearest sequence bucket), else the built-in default.
   * *settled tells the planner whether CLATTN_PLAN_MEASURE has anything
   * left to measure. */
  for (int i = 0; i < n; i++) {
    v = cand[i];
    bool exact = false;
    int seq = 0;
    if (clattn__tunedb_lookup(ctx, v, d, params, &exact, &seq)) {
      char sb[16];
      clattn__seq_bucket_name(seq, sb, sizeof sb);
      if (exact)
        snprintf(origin, cap, "tuned");
      else
        snprintf(origin, cap, "tuned (nearest seq bucket %s)", sb);
      *out = v;
      *settled = exact || v->num_params == 0;
      return CLATTN_SUCCESS;
    }
    char label[64];
    if (clattn__builtin_default(&ctx->info, v, d, params, label, sizeof label)) {
      snprintf(origin, cap, "built-in default (%s)", label);
      *out = v;
      *settled = v->num_params == 0;
      return CLATTN_SUCCESS;
    }
  }
  return no_config_fits(ctx, cand[n - 1], d);
}

clattn_status clattn__choose_backward(clattn_plan p, const clattn__variant **out, int *params,
                                      char *origin, size_t cap) {
  clattn_context ctx = p->ctx;
  const clattn_attention_desc *d = &p->desc;
  const bool portable = ctx->settings.portable || (p->flags & CLATTN_PLAN_PORTABLE);
  const clattn__variant *cand[16];
  char why_not[1024];
  const int n = clattn__applicable_variants(&ctx->info, d, CLATTN__BACKWARD, portable, cand, 16,
                                            why_not, sizeof why_not);
  if (n == 0)
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "no backward kernel of the %s family applies to this problem%s%s",
                        clattn_algo_name(d->algo), why_not[0] ? ": " : "", why_not);
  /* CLATTN_TUNE_OVERRIDE entries that name a backward variant; the others
   * concern the forward pass. */
  char entry[1024];
  const char *s = ctx->settings.override;
  while ((s = next_entry(s, entry, sizeof entry)) != NULL) {
    char pre[64], err[256] = "";
    if (!clattn__config_prefix(entry, pre, sizeof pre)) continue;
    for (int i = 0; i < n; i++) {
      if (strcmp(cand[i]->name, pre)) continue;
      int base[CLATTN__MAX_PARAMS];
      if (!base_config(p, cand[i], base) ||
          clattn__config_parse(cand[i], entry, base, params, err, sizeof err) != CLATTN_SUCCESS)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "CLATTN_TUNE_OVERRIDE='%s' is not a %s configuration: %s",
                            ctx->settings.override, pre, err[0] ? err : "no default");
      const char *why = cand[i]->check(params, d, &ctx->info);
      if (why)
        return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                            "CLATTN_TUNE_OVERRIDE='%s' is not legal on this device for head_dim "
                            "%d: %s",
                            ctx->settings.override, d->head_dim, why);
      snprintf(origin, cap, "override (CLATTN_TUNE_OVERRIDE)");
      *out = cand[i];
      return CLATTN_SUCCESS;
    }
  }
  for (int i = 0; i < n; i++) {
    bool exact = false;
    int seq = 0;
    if (clattn__tunedb_lookup(ctx, cand[i], d, params, &exact, &seq)) {
      snprintf(origin, cap, exact ? "tuned" : "tuned (nearest seq bucket)");
      *out = cand[i];
      return CLATTN_SUCCESS;
    }
    char label[64];
    if (clattn__builtin_default(&ctx->info, cand[i], d, params, label, sizeof label)) {
      snprintf(origin, cap, "built-in default (%s)", label);
      *out = cand[i];
      return CLATTN_SUCCESS;
    }
  }
  return no_config_fits(ctx, cand[n - 1], d);
}
