/* variant.h — the kernel-variant registry: every kernel, when it applies, its search space, its
 * build and launch. */
#ifndef CLATTN_VARIANT_H
#define CLATTN_VARIANT_H

#include "internal.h"

/*
 * A variant is one kernel (or one set of kernels) that computes a family's
 * function: the portable work-group flash kernel, the CPU row-vector flash
 * kernel, the NVIDIA tensor-core flash kernel, the naive GEMM pipeline, the
 * linear FMA kernels, the linear tensor-core kernels. Each is one row of
 * the table in variants.c. Plan creation (plan.c) and the tuner
 * (tuner.c) choose through the same selector (choice.c):
 *
 *   1. the variants of the descriptor's family that are applicable to the
 *      problem on this device (FFTW's `applicable`), highest priority first;
 *      device-specific fast paths are left out under CLATTN_PLAN_PORTABLE or
 *      CLATTN_PORTABLE=1;
 *   2. a forced configuration (clattn_plan_create_with_config, the tuner,
 *      CLATTN_TUNE_OVERRIDE) picks its variant by name ("flash_tc:warps=4")
 *      or by its parameter names;
 *   3. otherwise the tuning database (exact class, then the nearest sequence
 *      bucket), a measurement now (CLATTN_PLAN_MEASURE), the built-in
 *      defaults (tune_defaults.c), the variant's own fallback.
 *
 * Every configuration, from any of these sources, passes the variant's one
 * legality check (`check`) before anything is built.
 *
 * Adding a device fast path: one kernel file in cl/, one row in the table of
 * variants.c, one defaults row in tune_defaults.c.
 */

#define CLATTN__MAX_PARAMS 32

/* One tunable parameter of a variant (a -D parameter of its kernels). */
typedef struct clattn__param {
  const char *name;  /* as in configuration strings */
  int min, max;      /* range a forced value must lie in (then `check` decides) */
  const int *values; /* the tuner's candidates, ascending; NULL: not searched */
  int num_values;
} clattn__param;

typedef struct clattn__variant clattn__variant;

/* What a variant computes for its family. */
typedef enum clattn__pass { CLATTN__FORWARD = 0, CLATTN__BACKWARD = 1 } clattn__pass;

struct clattn__variant {
  const char *name;           /* database kernel=, configuration prefix, describe() */
  clattn_algo family;         /* CLATTN_ALGO_FLASH, _NAIVE or _LINEAR */
  clattn__pass pass;          /* the forward or the backward pass of the family */
  bool fast_path;             /* device-specific: left out by the portable opt-out */
  /* Built through PTX patching (clattn__get_program_patched): when that
   * build fails and the configuration was not forced, the planner marks
   * the variant broken for the context and plans again without it (the
   * next variant, with the reason in describe). */
  bool ptx_patched;
  /* reads quantized K/V (desc.kv_dtype); the others decline it */
  bool kv_quant;
  const char *const *sources; /* kernel files after common.cl, NULL-terminated */
  const clattn__param *params;
  int num_params;
  /* Priority (> 0) when the variant serves this resolved problem on this
   * device, else 0 with a static reason in *why. */
  int (*applicable)(const clattn__device_info *info, const clattn_attention_desc *d,
                    const char **why);
  /* NULL when `params` is legal for the problem on the device (local and
   * private memory, work-group size, registers, tile shapes), else a static
   * reason. */
  const char *(*check)(const int *params, const clattn_attention_desc *d,
                       const clattn__device_info *info);
  /* The last-resort built-in configuration; false when nothing fits. */
  bool (*fallback)(const clattn__device_info *info, const clattn_attention_desc *d, int *params);
  /* Local memory (bytes) the largest kernel of the configuration declares. */
  size_t (*local_bytes)(const int *params, const clattn_attention_desc *d);
  /* Builds the programs and kernels for the chosen configuration (or only
   * sizes the plan when p->estimate); writes p->describe. */
  clattn_status (*create)(clattn_plan p, const int *params, const char *origin);
  clattn_status (*execute)(clattn_plan p, const clattn__buffers *b, cl_uint num_wait,
                           const cl_event *wait, cl_event *event);
  void (*release)(clattn_plan p);
  /* FLOPs of one execution (NULL: 4·head_dim per visible (query, key) pair). */
  double (*flops)(clattn_plan p);
  /* Per-kernel median times of `reps` runs (clattn_plan_profile); NULL: the
   * plan's one kernel is timed by its event. Returns the kernel count or -1
   * (message set). */
  int (*profile)(clattn_plan p, const clattn__buffers *b, int reps, const char **names, double *ms);
};

/* The registry: variant i (0 .. clattn__variant_count() - 1), NULL past
 * the end. */
const clattn__variant *clattn__variant_at(int i);
const clattn__variant *clattn__variant_find(const char *name);
/* v's kernel files (common.cl comes first on its own), blank-separated, in
 * order: the `names` of clattn__get_program. (Inline: the families call it,
 * and the registry calls the families.) */
static inline void clattn__variant_files(const clattn__variant *v, char *buf, size_t cap) {
  if (cap) buf[0] = 0;
  for (int i = 0; v->sources[i]; i++)
    clattn__append(buf, cap, "%s%s", i ? " " : "", v->sources[i]);
}
/* Index of v in the registry (per-context caches are indexed by it). */
int clattn__variant_index(const clattn__variant *v);
/* Number of variants in the registry. */
int clattn__variant_count(void);

/* "bm=64,bn=32,tm=16,tn=8" (every parameter, in the variant's order). */
void clattn__config_format(const clattn__variant *v, const int *params, char *buf, size_t cap);

/* Parses a configuration string for v over base[] (parameters the string
 * does not name keep their value from base; base NULL: every parameter is
 * required). Accepts an optional "name:" prefix naming v. Numbers are
 * decimal, range-checked against each parameter's [min, max]. On failure
 * returns CLATTN_ERROR_INVALID_ARGUMENT with a reason in err. */
clattn_status clattn__config_parse(const clattn__variant *v, const char *s, const int *base,
                                   int *params, char *err, size_t errcap);

/* True when the string's keys are all parameters of v (a prefix must name
 * v). Used to route an unprefixed forced configuration to its variant. */
bool clattn__config_names_fit(const clattn__variant *v, const char *s);

/* The prefix of a configuration string ("flash_tc" in "flash_tc:warps=4"),
 * copied into buf; false when it has none. */
bool clattn__config_prefix(const char *s, char *buf, size_t cap);

/* Applicable variants of the problem's family and the pass on the device,
 * highest priority first; `portable` leaves the fast paths out. Returns the
 * count; why_not (may be NULL) receives the reasons of the others. */
int clattn__applicable_variants(const clattn__device_info *info, const clattn_attention_desc *d,
                                clattn__pass pass, bool portable, const clattn__variant **out,
                                int cap, char *why_not, size_t why_cap);

/* The plan's variant and configuration: forced (p->config, then the
 * context's CLATTN_TUNE_OVERRIDE), tuned, built-in default. origin receives
 * "tuned", "built-in default (NVIDIA GPU)", "override (CLATTN_TUNE_OVERRIDE)"
 * and so on; *settled is false when measuring (CLATTN_PLAN_MEASURE) could
 * still improve the choice (no exact tuned entry for a tunable variant). */
clattn_status clattn__choose(clattn_plan p, const clattn__variant **v, int *params, char *origin,
                             size_t cap, bool *settled);

/* The backward variant of the plan's family and its configuration:
 * CLATTN_TUNE_OVERRIDE entries naming a backward variant
 * ("flash_bwd:bm=16,bn=16"), else tuned, else the built-in default. */
clattn_status clattn__choose_backward(clattn_plan p, const clattn__variant **v, int *params,
                                      char *origin, size_t cap);

#endif
