/* planner.c — the public plan entry points: validate, choose the variant and configuration
 * (measuring when asked), build. */
#include "tune.h"

#include <stdio.h>
#include <string.h>

/* Creation proper: a resolved plan, the selector's choice, an optional
 * measurement for CLATTN_PLAN_MEASURE (the tuner stores its winner; the
 * selector then finds it), then the variant builds. With `estimate` the
 * same steps size the plan without building or allocating anything. */
static clattn_status create(clattn_context ctx, const clattn_attention_desc *desc, unsigned flags,
                            const char *config, bool estimate, size_t *estimate_bytes,
                            clattn_plan *out) {
  clattn_plan p = NULL;
  clattn_status st = clattn__plan_new(ctx, desc, flags, estimate, &p);
  if (st != CLATTN_SUCCESS) return st;
  p->config = config;
  const clattn__variant *v = NULL;
  int params[CLATTN__MAX_PARAMS];
  char origin[200];
  bool settled = true;
  st = clattn__choose(p, &v, params, origin, sizeof origin, &settled);
  const bool dense = p->desc.mask == CLATTN_MASK_NONE || clattn__mask_is_causal(p->desc.mask);
  const bool fixed = !p->desc.ragged && p->desc.kv_layout == CLATTN_KV_CONTIGUOUS;
  if (st == CLATTN_SUCCESS && !settled && (flags & CLATTN_PLAN_MEASURE) && !estimate && dense &&
      fixed) {
    clattn_tune_request r;
    clattn_tune_request_init(&r);
    r.budget_seconds = ctx->settings.tune_budget;
    r.seq = p->desc.seq_q < 16384 ? p->desc.seq_q : 16384;
    clattn_tune_result res;
    memset(&res, 0, sizeof res);
    const clattn_status ts = clattn__tune_variant(ctx, v, &p->desc, &r, &res);
    int tuned[CLATTN__MAX_PARAMS];
    if ((ts == CLATTN_SUCCESS || res.verified) &&
        clattn__config_parse(v, res.best_config, NULL, tuned, NULL, 0) == CLATTN_SUCCESS &&
        !v->check(tuned, &p->desc, &ctx->info)) {
      memcpy(params, tuned, sizeof tuned);
      snprintf(origin, sizeof origin, "tuned now (%d candidates in %.1f s)", res.tried,
               res.elapsed_s);
    } else {
      char why[600];
      snprintf(why, sizeof why, "%.590s", ctx->msg);
      snprintf(ctx->msg, sizeof ctx->msg, "note: CLATTN_PLAN_MEASURE could not tune (%s)", why);
    }
  }
  if (st != CLATTN_SUCCESS) {
    clattn__plan_discard(p);
    return st;
  }
  const bool forced = !strncmp(origin, "override", 8);
  st = clattn__plan_build(p, v, params, origin, estimate_bytes, out);
  if (st == CLATTN_ERROR_BUILD && v->ptx_patched && !forced) {
    /* The patched build failed (driver, compiler output): never again in
     * this context; plan without the variant and say why. */
    const int vi = clattn__variant_index(v);
    if (vi >= 0 && vi < 64) {
      ctx->info.broken_variants |= 1ull << vi;
      snprintf(ctx->broken_why, sizeof ctx->broken_why, "%s unavailable: %.520s", v->name,
               ctx->msg);
      st = create(ctx, desc, flags, config, estimate, estimate_bytes, out);
      if (st == CLATTN_SUCCESS)
        clattn__append((*out)->describe, sizeof(*out)->describe, "; %s", ctx->broken_why);
      return st;
    }
  }
  if (st != CLATTN_SUCCESS || !(flags & CLATTN_PLAN_BACKWARD)) return st;
  st = clattn__plan_build_backward(*out);
  if (estimate_bytes) *estimate_bytes = clattn_plan_workspace_size(*out);
  if (st != CLATTN_SUCCESS) {
    clattn_plan_release(*out);
    *out = NULL;
  }
  return st;
}

static clattn_status check_call(clattn_context ctx, unsigned flags, clattn_plan *out) {
  if (!out) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "out (plan) is NULL");
  *out = NULL;
  const unsigned known = CLATTN_PLAN_LAZY_WORKSPACE | CLATTN_PLAN_MEASURE | CLATTN_PLAN_PORTABLE |
                         CLATTN_PLAN_CHECK_TABLES | CLATTN_PLAN_BACKWARD;
  if (flags & ~known)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "flags: unknown bits 0x%x",
                        flags & ~known);
  return CLATTN_SUCCESS;
}

clattn_status clattn_plan_create(clattn_context ctx, const clattn_attention_desc *desc,
                                 unsigned flags, clattn_plan *out) {
  return clattn_plan_create_with_config(ctx, desc, flags, NULL, out);
}

clattn_status clattn_plan_create_with_config(clattn_context ctx, const clattn_attention_desc *desc,
                                             unsigned flags, const char *config, clattn_plan *out) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  ctx->needed_bytes = 0;
  clattn_status st = check_call(ctx, flags, out);
  if (st != CLATTN_SUCCESS) return st;
  return create(ctx, desc, flags, config && *config ? config : NULL, false, NULL, out);
}

clattn_status clattn_plan_estimate(clattn_context ctx, const clattn_attention_desc *desc,
                                   size_t *workspace_bytes) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  ctx->needed_bytes = 0;
  if (!workspace_bytes)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "workspace_bytes is NULL");
  *workspace_bytes = 0;
  clattn_plan p = NULL;
  clattn_status st = create(ctx, desc, 0, NULL, true, workspace_bytes, &p);
  clattn_plan_release(p);
  return st;
}
