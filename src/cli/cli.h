/* cli.h — declarations shared by the clattn command-line tool's sources. */
#ifndef CLATTN_CLI_H
#define CLATTN_CLI_H

#include "clattn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of every subcommand. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_VERIFY = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_LIBRARY = 3 };

/* ---- option parsing (options.c) ---------------------------------------- */

typedef enum cli_opt_kind {
  CLI_OPT_INT,    /* int, value >= min */
  CLI_OPT_U64,    /* uint64_t (decimal or 0x hex) */
  CLI_OPT_DOUBLE, /* finite double */
  CLI_OPT_STR,    /* const char * pointing into argv */
  CLI_OPT_FLAG,   /* int set to flag_value, takes no argument */
  CLI_OPT_CHOICE  /* int set to the index of the value in choices */
} cli_opt_kind;

typedef struct cli_opt {
  const char *name;    /* long name without the leading "--" */
  const char *metavar; /* shown in the help; NULL for flags */
  cli_opt_kind kind;
  void *dst;
  long min;                   /* CLI_OPT_INT: smallest legal value */
  int flag_value;             /* CLI_OPT_FLAG: value stored */
  const char *const *choices; /* CLI_OPT_CHOICE: NULL-terminated names */
  const char *help;
} cli_opt;

/* A NULL-name-terminated table of options. */
typedef const cli_opt *cli_opt_table;

/* Parses argv[0..argc) against the tables ("--name value" or "--name=value").
 * Returns 0 when parsed, CLI_EXIT_USAGE after printing a message, or -1 when
 * --help was given (the caller prints its help and exits 0). */
int cli_parse_options(const char *cmd, int argc, char **argv, const cli_opt_table *tables,
                      int ntables);
/* Prints the tables as an aligned "  --name VALUE  help" list. */
void cli_print_options(FILE *f, const cli_opt_table *tables, int ntables);
/* Parses "a,b,c" of positive integers into a malloc'ed array. Returns the
 * count, or -1 after printing a usage message naming `opt`. */
int cli_parse_int_list(const char *opt, const char *s, int **out);
/* Parses "a,b" of names from `choices` into a bit set (bit i = choices[i]).
 * Returns 0, or CLI_EXIT_USAGE after printing a message. */
int cli_parse_choice_list(const char *opt, const char *s, const char *const *choices,
                          unsigned *bits);

/* NULL-terminated choice lists, filled by cli_names_init() at start. */
extern const char *cli_algo_names[];   /* indexed by clattn_algo (auto ... linear) */
extern const char *cli_mask_names[];   /* none, causal */
extern const char *cli_dtype_names[];  /* f32, f16, bf16 */
extern const char *cli_layout_names[]; /* bhsd, bshd */
extern const char *cli_kv_dtype_names[]; /* same, int8, fp8e4m3, fp8e5m2 */
extern const char *cli_kv_scale_names[]; /* token, tensor, head, channel */
extern const char *const cli_page_order_names[]; /* shuffled, sequential */
void cli_names_init(void);

/* Overflow-checked 64-bit arithmetic: false when the exact result does not fit. */
static inline bool cli_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool cli_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/* ---- one problem, set up, timed and verified (problem.c) ----------------- */

/* Options shared by `run` and `bench`, and the parser table that fills them. */
typedef struct cli_common {
  const char *device;
  int batch, heads, kv_heads, head_dim;
  int dtype, layout;
  double scale;
  double softcap, alibi; /* --softcap C, --alibi MAX_BIAS (0: off) */
  int reps, warmup;
  uint64_t seed;
  int verify;          /* -1: the subcommand's default, 0 off, 1 on */
  const char *feature; /* --feature: linear family's feature map (cli_parse_feature) */
  const char *score_mod_file, *mask_mod_file; /* --score-mod / --mask-mod FILE.cl */
  int no_mask_blocks; /* --no-mask-blocks: the kernels evaluate the mask_mod on every tile */
  const char *sinks;  /* --sinks V[,V...]: attention sinks, one per head (or one for all) */
  const char *bias;   /* --bias random|random-bool: a random bias tensor (verified) */
  int kv_dtype, kv_scale; /* --kv-dtype, --kv-scale: a quantized K/V cache */
  int page_order;         /* --page-order: 0 shuffled pages, 1 sequential (paged caches) */
} cli_common;

void cli_common_defaults(cli_common *c);
/* The option table bound to `c`. */
cli_opt_table cli_common_table(cli_common *c);
/* --bias: the descriptor's bias strides for its current sizes (random:
 * a full f32 [B][H][Nq][Nk] tensor; random-bool: one [Nq][Nk] mask for
 * every batch entry and head). */
void cli_bias_strides(clattn_attention_desc *d);
/* Reads --score-mod / --mask-mod into d (the texts live until exit); with
 * them the float64 check is off (the reference needs C twins), and an
 * explicit --verify is a usage error. Also parses --sinks into d. Returns 0 or CLI_EXIT_USAGE
 * (an unreadable file too) after printing a message. */
int cli_load_user_fns(const cli_common *c, clattn_attention_desc *d, bool *verify);
/* Usage checks the library would also make, reported as usage errors (exit
 * 2) by the CLI. Returns 0 or CLI_EXIT_USAGE after printing a message. */
int cli_check_desc(const clattn_attention_desc *d);

typedef struct cli_problem {
  clattn_attention_desc desc; /* algo, sizes, mask, layout, dtype, scale */
  int reps, warmup;
  uint64_t seed;
  bool verify;
  bool lse;
  bool compare_softmax;   /* also measure the error against exact softmax attention */
  uint64_t reserve_bytes; /* device memory allocated and touched before the plan (run --reserve):
                             the rest of a model that must fit beside the attention */
  bool profile;           /* also time each kernel (cli_result.kernels) */
  bool backward;          /* time and verify the backward pass instead (backward.c) */
  bool no_mask_blocks;    /* a mask_mod without clattn_plan_update_mask_blocks */
  const char *config;     /* run --config: a forced kernel configuration, or NULL */
} cli_problem;

/* Creates the context for --device, printing the library's detail on failure
 * (NULL then). */
clattn_context cli_open_context(const char *device);
/* Whether buffers of `total` bytes, the `largest` of them, fit on the
 * context's device (each under the max allocation, all under the global
 * memory), with `host` bytes of host copies counted too on a device that
 * shares the host's memory. *detail (may be NULL) receives a sentence when
 * they do not. */
bool cli_bytes_fit(clattn_context ctx, uint64_t total, uint64_t largest, uint64_t host,
                   char *detail, size_t cap);
/* The same for the q, k, v, o (and lse) buffers of d. */
bool cli_buffers_fit(clattn_context ctx, const clattn_attention_desc *d, bool lse, char *detail,
                     size_t cap);

/* Fills the descriptor fields that come from the common options. */
void cli_problem_from_common(const cli_common *c, cli_problem *p);

typedef struct cli_result {
  clattn_status status;  /* CLATTN_SUCCESS, or the failing call's status */
  char error[1024];      /* the library's message when status != SUCCESS */
  bool oom;              /* status is CLATTN_ERROR_OUT_OF_MEMORY */
  uint64_t needed_bytes; /* with oom: the bytes the failing request needed */
  clattn_algo algo;      /* as resolved by the plan (auto becomes flash) */
  char describe[512];
  double median_ms, min_ms, max_ms;
  double flops, tflops, gbps;
  uint64_t io_bytes, workspace_bytes, mem_bytes; /* mem = io + workspace (reserve excluded) */
  const char *timing;                            /* how the times were taken (see timing.c) */
  /* Verification: `verified` says whether it ran, `passed` its outcome. */
  bool verified, passed, nan_found;
  double max_abs_err, rel_err, lse_max_abs_err, tolerance;
  long rows_checked, rows_total, heads_checked, heads_total;
  /* --compare softmax: the output against exact softmax attention. */
  bool compared;
  double approx_rel_err, approx_cos; /* ‖o − o_softmax‖/‖o_softmax‖, mean row cosine */
  long approx_rows, approx_heads;    /* rows and heads compared */
  /* --profile: median milliseconds of each kernel. */
  int nkernels;
  const char *kernel_names[8];
  double kernel_ms[8];
} cli_result;

/* Floating-point operations of one attention: 4·B·H·Nq·Nk·d, counting only
 * visible (query, key) pairs under the causal mask. */
double cli_flops(const clattn_attention_desc *d);
/* Bytes of q, k, v read once and o (and lse) written once. */
uint64_t cli_io_bytes(const clattn_attention_desc *d, bool lse);
/* Byte sizes of the q, k, v, o buffers a descriptor needs (lse excluded). */
void cli_buffer_bytes(const clattn_attention_desc *d, uint64_t bytes[4]);

/* Sets up random inputs, plans, times and (optionally) verifies one problem.
 * Library failures are recorded in r (status, error, oom); the return value
 * is r->status. */
clattn_status cli_run_point(clattn_context ctx, const cli_problem *p, cli_result *r);

/* ---- inference problems (infer.c): decode, paged KV, ragged batches ------- */

typedef struct cli_infer {
  clattn_attention_desc desc; /* heads, kv_heads, head_dim, dtype, layout, mask, batch, seq_q,
                                 seq_kv (the KV length of every sequence unless lens) */
  int page_size;              /* > 0: a paged cache of this page size */
  bool sequential_pages;      /* pages in pool order (else shuffled) */
  const int *lens;            /* ragged: the KV length of each sequence (nlens of them) */
  int nlens;
  int reps, warmup;
  uint64_t seed;
  bool verify, check_tables;
  bool no_mask_blocks; /* a mask_mod without clattn_plan_update_mask_blocks_ex */
  bool profile;        /* also time each kernel (clattn_plan_profile_ex) */
  const char *config;  /* forced configuration, or NULL */
} cli_infer;

typedef struct cli_infer_result {
  clattn_status status;
  char error[1024];
  char describe[512];
  double median_ms, kv_bytes, kv_gbps;
  bool verified, passed, nan_found;
  double rel_err, max_abs_err, tolerance;
  double quant_err; /* quantized K/V: the output's relative error against the unquantized cache */
  int nkernels;     /* --profile: median milliseconds of each kernel */
  const char *kernel_names[8];
  double kernel_ms[8];
} cli_infer_result;

/* Builds the problem (random inputs; a ragged batch gives sequence b
 * min(seq_q, lens[b]) queries), times clattn_plan_execute_ex (median of
 * reps after warmup) and checks every sequence against the float64
 * reference on its gathered keys. */
clattn_status cli_infer_run(clattn_context ctx, const cli_infer *in, cli_infer_result *r);

/* The backward pass of one problem (run --backward, bench --backward): plan
 * with CLATTN_PLAN_BACKWARD, one forward with LSE, then warm-up and timed
 * backward calls (host clock around each call and clFinish), FLOPs
 * 2.5 x the forward's, gradients against clattn_reference_attention_backward
 * when B*H*Nq*Nk*d <= 2^31. cli_run_point calls it when p->backward. */
clattn_status cli_run_backward_point(clattn_context ctx, const cli_problem *p, cli_result *r);
/* Relative L2 tolerance of each gradient for a storage type. */
double cli_backward_tolerance(clattn_dtype t);

/* ---- inputs (data.c) ------------------------------------------------------ */

size_t cli_dtype_size(clattn_dtype t);
/* Fills n elements of dtype t with uniform values in [-1, 1) from `seed`. */
void cli_fill_random(void *dst, size_t n, clattn_dtype t, uint64_t seed);
/* The element i of a host array of dtype t, as a double. */
double cli_load(const void *base, clattn_dtype t, size_t i);
/* A quiet-NaN element of dtype t (fill pattern, cli_dtype_size(t) bytes). */
void cli_nan_pattern(clattn_dtype t, void *pattern);
uint64_t cli_splitmix64(uint64_t *state);

/* ---- timing (timing.c) ---------------------------------------------------- */

/* Runs the plan `warmup` times, then `reps` timed times, writing each timed
 * run's milliseconds to times_ms. *method names the method used; on
 * failure msg holds the detail. */
clattn_status cli_time_plan(clattn_context ctx, clattn_plan plan, cl_mem q, cl_mem k, cl_mem v,
                            cl_mem o, cl_mem lse, cl_mem bias, int warmup, int reps,
                            double *times_ms, const char **method, char *msg, size_t cap);
/* Median, minimum and maximum of n values (n >= 1; the array is sorted). */
void cli_stats(double *v, int n, double *median, double *min, double *max);

/* ---- verification (verify.c) ---------------------------------------------- */

/* Compares the device output (host copy `o`, in the descriptor's layout and
 * dtype; `lse` may be NULL) with the float64 reference. Checks every element
 * of o for NaN, and the reference on all rows when the problem is small
 * (B·H·Nq·Nk·d ≤ 2^31), else on 64 rows spread over the sequence (first and
 * last included) of a spread of heads. Fills r's verification fields. */
clattn_status cli_verify(const clattn_attention_desc *d, const void *q, const void *k,
                         const void *v, const void *o, const float *lse, const void *bias,
                         cli_result *r);
/* Relative-error tolerance for a storage type. */
double cli_tolerance(clattn_dtype t);
/* --compare softmax: compares the device output `o` with exact softmax
 * attention (clattn_reference_attention) on the same inputs, on the rows and
 * heads cli_verify would check; fills r's approx_* fields. */
clattn_status cli_compare_softmax(const clattn_attention_desc *d, const void *q, const void *k,
                                  const void *v, const void *o, cli_result *r);
/* Parses the linear family's --feature SPEC (elu | relu | favor[:M[,SEED]])
 * into d->feature_map, num_features and feature_seed. Returns 0, or
 * CLI_EXIT_USAGE after printing a message. */
int cli_parse_feature(const char *spec, clattn_attention_desc *d);

/* ---- output (report.c) ---------------------------------------------------- */

/* Writes s as a JSON string literal (with quotes). */
void cli_json_string(FILE *f, const char *s);
/* Writes a JSON number, or null when x is not finite. */
void cli_json_number(FILE *f, double x);
/* Writes one JSON object describing a point (no trailing newline); speedup
 * (vs naive) is written unless it is NaN. */
void cli_json_result(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                     double speedup);
/* The same with a "peak" member (the measured device peak) when peak is not NULL. */
void cli_json_result_peak(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                          double speedup, const clattn_peak_result *peak);
/* Writes the CSV header / one CSV row of a point (peak: NULL, or the measured
 * device peak for the peak_* columns). */
void cli_csv_header(FILE *f);
void cli_csv_row(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                 double speedup, const clattn_peak_result *peak);
/* Prints a library failure (status string and message) to stderr. */
void cli_print_error(const char *what, clattn_status st, const char *msg);
/* Formats a byte count as "117.7 MiB", or with exact as "123456789 (117.7 MiB)". */
const char *cli_fmt_bytes(uint64_t bytes, bool exact, char *buf, size_t cap);

/* ---- masks (mask.c) --------------------------------------------------------- */

/* A parsed --mask specification; owns the layout arrays read from a file. */
typedef struct cli_mask {
  clattn_mask mask;
  clattn_sparse_desc sparse;
  int *off, *cols; /* layout:FILE */
  char text[256];  /* the specification as given */
} cli_mask;

/* Help lines describing the --mask forms and the layout file format. */
extern const char *const cli_mask_help;
void cli_mask_init(cli_mask *m);
/* Parses none | causal | window:L,R[,global:G] | dilated:W,D | strided:W,S |
 * bigbird:B,W,G,R[,SEED] | layout:FILE (sparse forms: optional ",causal").
 * Returns 0, or CLI_EXIT_USAGE after printing a message naming --opt. */
int cli_parse_mask(const char *opt, const char *spec, cli_mask *m);
/* Sets desc->mask and desc->sparse (pointing into m, which must outlive it). */
void cli_mask_apply(const cli_mask *m, clattn_attention_desc *d);
void cli_mask_free(cli_mask *m);
/* Canonical text of a descriptor's mask ("window:256,256,causal"). */
const char *cli_mask_string(const clattn_attention_desc *d, char *buf, size_t cap);

/* ---- peak calibration (peak.c) -------------------------------------------- */

/* The --peak-* options of devices and bench (clattn_peak_request's fields). */
typedef struct cli_peak_opts {
  double fma_ms;
  uint64_t copy_bytes;
  int runs;
} cli_peak_opts;

void cli_peak_defaults(cli_peak_opts *o);
/* Returns 0, or CLI_EXIT_USAGE after printing a message. */
int cli_check_peak_opts(const cli_peak_opts *o);
/* clattn_measure_peak with the options; on failure err holds the status and
 * the library's message. */
clattn_status cli_measure_peak(clattn_context ctx, const cli_peak_opts *o, clattn_peak_result *r,
                               char *err, size_t cap);
/* Writes the result as one JSON object (no trailing newline). */
void cli_json_peak(FILE *f, const clattn_peak_result *r);

/* ---- subcommands ---------------------------------------------------------- */

int cli_cmd_devices(int argc, char **argv);
int cli_cmd_run(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);
int cli_cmd_tune(int argc, char **argv);
int cli_cmd_memory(int argc, char **argv);
void cli_help_devices(FILE *f);
void cli_help_run(FILE *f);
void cli_help_bench(FILE *f);
void cli_help_tune(FILE *f);
void cli_help_memory(FILE *f);

#endif /* CLATTN_CLI_H */
