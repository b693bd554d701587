/* test_util.h — shared test helpers: seeds, inputs, NaN poisoning, buffers, reference checks. */
#ifndef CLATTN_TEST_UTIL_H
#define CLATTN_TEST_UTIL_H

#include <clattn.h>

#include <stddef.h>
#include <stdint.h>

/* Tolerances for f32 storage (DESIGN.md, Testing): the output must satisfy
 * ‖out − ref‖₂ / ‖ref‖₂ ≤ TU_F32_REL_TOL against the float64 reference, and
 * every LSE value |lse − ref| ≤ TU_F32_LSE_TOL · max(1, |ref|). Fully masked
 * rows must be exactly zero with LSE exactly -inf. */
#define TU_F32_REL_TOL 1e-5
#define TU_F32_LSE_TOL 1e-5
/* 16-bit storage (the inputs are exactly representable, the reference uses
 * them as stored; the error is the output's rounding plus f32 accumulation):
 * f16 ≈ 1e-3 and bf16 ≈ 1e-2 relative for the output and the LSE. */
#define TU_F16_REL_TOL 1e-3
#define TU_BF16_REL_TOL 1e-2
/* The output tolerance of a storage type (the LSE uses the same bound
 * relative to max(1, |ref|)). */
double tu_rel_tol(clattn_dtype t);
double tu_lse_tol(clattn_dtype t);

/* IEEE half / bfloat16 conversions (round to nearest even). */
uint16_t tu_float_to_half(float f);
float tu_half_to_float(uint16_t h);
uint16_t tu_float_to_bf16(float f);
float tu_bf16_to_float(uint16_t b);

/* ---- seeds and random numbers ---- */

/* Base seed of this process: $CLATTN_TEST_SEED (decimal or 0x hex) if set,
 * else a fixed default, so that runs are reproducible. */
uint64_t tu_base_seed(void);
/* Seed of one case: a hash of the base seed and the case label, so that a
 * case's inputs do not depend on which other cases ran before it. */
uint64_t tu_case_seed(const char *label);

typedef struct tu_rng {
  uint64_t s;
} tu_rng;
void tu_rng_init(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [lo, hi). */
double tu_rng_uniform(tu_rng *r, double lo, double hi);

/* ---- host arrays ---- */

/* malloc'ed array of n floats, every element NaN (the poison value). */
float *tu_alloc_nan(size_t n);
/* True if x is the exact poison bit pattern that tu_alloc_nan writes. */
int tu_is_poison(float x);

/* ---- device buffers ---- */

/* Read/write buffer initialised from host memory; NULL on failure. */
cl_mem tu_buffer_from_host(clattn_context ctx, const void *host, size_t bytes);
/* Read/write buffer of `n` floats, every element the NaN poison. */
cl_mem tu_buffer_nan(clattn_context ctx, size_t n);
/* Blocking read of a whole buffer into host memory; CL_SUCCESS or the error. */
cl_int tu_buffer_read(clattn_context ctx, cl_mem buf, void *host, size_t bytes);

/* ---- descriptors ---- */

/* One line describing a descriptor (shape, layout, strides, mask, algo). */
void tu_desc_string(const clattn_attention_desc *d, char *buf, size_t cap);
/* A STRIDED layout with padding: every seq stride is head_dim + pad_seq, heads
 * are not contiguous (pad_head extra elements between them) and the batch
 * stride has pad_head more again. `seq_major` puts the seq index outside the
 * head index (BSHD-like) in k and v. Dim strides are 1. */
void tu_set_padded_strides(clattn_attention_desc *d, int pad_seq, int pad_head, int seq_major);

/* ---- running a problem and comparing it with the reference ---- */

typedef enum tu_input {
  /* q ~ U[-4, 4), k, v ~ U[-1, 1): scores of standard deviation ≈ 1.3. */
  TU_INPUT_UNIFORM = 0,
  /* Scores of magnitude up to ≈ 1e4, distinct scores of a row at least
   * ≈ 1e4 / (2·seq_kv) apart, and exact ties (every key row is stored twice,
   * with different values), so the exact softmax is well conditioned (ties
   * mix two values) although exp(score) overflows f32 by far. */
  TU_INPUT_EXTREME_MIXED = 1,
  /* As EXTREME_MIXED but every score of a row has the same sign, around
   * ±1e4 (all large positive or all large negative). */
  TU_INPUT_EXTREME_ONE_SIGN = 2
} tu_input;

typedef struct tu_report {
  clattn_status status; /* plan create / execute status */
  char error[1024];     /* context message when status != SUCCESS */
  uint64_t seed;
  double rel_err;          /* ‖out − ref‖ / ‖ref‖ */
  double max_abs_err;      /* max |out − ref| */
  double lse_max_err;      /* max |lse − ref| / max(1, |ref|) over finite refs */
  double rel_tol, lse_tol; /* the tolerances of the dtype (tu_rel_tol, tu_lse_tol) */
  size_t nonfinite;        /* output elements that are NaN or ±inf */
  size_t masked_rows;      /* rows with no visible key (LSE -inf) */
  size_t masked_nonzero;   /* elements of those rows that are not exactly 0 */
  size_t lse_inf_mismatch; /* LSE rows where exactly one of out/ref is -inf */
  size_t pad_clobbered;    /* elements of o outside the tensor that were written */
  char plan_describe[512];
  char summary[2048]; /* everything above, for failure messages */
} tu_report;

/* One problem: host inputs, device buffers (o and lse NaN-poisoned). */
typedef struct tu_problem {
  clattn_context ctx;
  clattn_attention_desc desc;
  clattn_strides qs, ks, vs, os;
  size_t elems[4]; /* element counts of q, k, v, o (clattn_attention_desc_strides) */
  size_t nlse;     /* batch·heads·seq_q */
  int with_lse;
  tu_input input;
  uint64_t seed;
  char label[256];
  /* Host inputs as float (padding NaN). For f16/bf16 descriptors they hold
   * the values exactly as stored (already rounded to 16 bits). */
  float *hq, *hk, *hv;
  /* f16/bf16 descriptors: the 16-bit storage of hq, hk, hv (what the
   * device buffers and the reference get); NULL for f32. */
  uint16_t *sq, *sk, *sv;
  size_t esize;           /* bytes per element of q, k, v, o */
  cl_mem q, k, v, o, lse; /* lse NULL unless with_lse */
} tu_problem;

/* Makes fresh random inputs for `desc` seeded by tu_case_seed(label) and
 * the device buffers (exactly as large as the descriptor needs). Returns 0,
 * or -1 with the reason in rep (status, error, summary). */
int tu_problem_init(tu_problem *p, clattn_context ctx, const clattn_attention_desc *desc,
                    tu_input input, int with_lse, const char *label, tu_report *rep);
/* Re-poisons o and lse with NaN (blocking; o in the descriptor's dtype). */
int tu_problem_poison(tu_problem *p);
/* Reads o (and lse) back (blocking, after the caller's synchronisation) and
 * compares them with the float64 reference; fills rep and returns 0, or -1
 * when something other than the comparison failed. `describe` (may be NULL)
 * goes into the summary. */
int tu_problem_compare(tu_problem *p, const char *describe, tu_report *rep);
void tu_problem_free(tu_problem *p);

/* tu_problem_init, clattn_plan_create(desc->algo, flags), execute with a
 * returned event, wait, tu_problem_compare. Returns 0 when the problem ran
 * (whatever the error), -1 when something failed (rep->status, rep->error). */
int tu_run_and_compare(clattn_context ctx, const clattn_attention_desc *desc, tu_input input,
                       int with_lse, unsigned flags, const char *label, tu_report *rep);

/* True when the report passes every f32 check (tolerances above). */
int tu_report_ok(const tu_report *rep, int with_lse);

/* cmocka helper: runs the case and fails the current test with the summary
 * (label, descriptor, seed, errors) when it does not pass. */
#define TU_CHECK_CASE(ctx, desc, input, with_lse, label)                                           \
  tu_check_case_impl((ctx), (desc), (input), (with_lse), (label), __FILE__, __LINE__)
void tu_check_case_impl(clattn_context ctx, const clattn_attention_desc *desc, tu_input input,
                        int with_lse, const char *label, const char *file, int line);

/* Command line of a test executable: no arguments (run every test),
 * "--only PATTERN" or "--skip PATTERN" (cmocka test-name globs, e.g. to split
 * an executable into several ctest entries). Returns 0, or -1 after printing
 * the usage. */
int tu_parse_filter_args(int argc, char **argv);

/* Context for a test group: clattn_context_create(NULL) (default device
 * selection, $CLATTN_DEVICE honoured); prints the device once. */
int tu_group_setup(void **state);
int tu_group_teardown(void **state);

/* Removes a file or a directory tree (best effort). */
void tu_rm_rf(const char *path);

/* A context on the default device; fails the test when there is none. */
clattn_context tu_new_context(void);

/* A context whose plans are forced to `override` (CLATTN_TUNE_OVERRIDE,
 * read when the context is made), or NULL when that kernel does not apply
 * to d on this device (the caller skips); fails the test on other errors. */
clattn_context tu_forced_context(const char *override, const clattn_attention_desc *d);

#endif
