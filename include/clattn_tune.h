/* clattn_tune.h — clattn's tuning API: the autotuner and the per-device tuning database. */
#ifndef CLATTN_TUNE_H_PUBLIC
#define CLATTN_TUNE_H_PUBLIC

#include "clattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Tuning and caches                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Kernel configurations (tile sizes) are tuned per device and problem class
 * and kept in a tuning database, one human-readable text file per device:
 *
 *     <cache>/<device>-<hash>/tuning.txt
 *
 * where <cache> is $CLATTN_CACHE_DIR, else $XDG_CACHE_HOME/clattn, else
 * ~/.cache/clattn, and <hash> covers the platform, vendor, device name,
 * driver version and NVIDIA compute capability. CLATTN_CACHE_DIR=off
 * disables the database and the program-binary cache (compiled kernels,
 * kept beside it in <cache>/<device>-<hash>/programs/).
 *
 * A problem class is (kernel, dtype, head-dim bucket, mask kind, sequence
 * bucket). Head dims 32, 64, 80, 96, 128 and 256 are their own bucket; other
 * head dims are padded up to a multiple of 16. Sequence buckets follow
 * seq_q: powers of two up to 1024 (16, 32, ..., 1024; shorter sequences go
 * to 16), then 1025..4096, 4097..16384 and above 16384 ("inf"). Entries carry
 * a hash of the kernel source: a changed kernel ignores older entries.
 */

/** Progress of clattn_tune(), passed to the callback after each candidate. */
typedef struct clattn_tune_progress {
  int done;                /**< candidates measured or discarded so far */
  int total;               /**< candidates the search expects to try (an estimate
                                when sampling under a time budget) */
  int space_size;          /**< legal configurations in the search space */
  double elapsed_s;        /**< seconds since the start */
  double eta_s;            /**< estimated seconds left (negative when unknown) */
  double best_ms;          /**< best median so far (negative before the first) */
  const char *best_config; /**< its configuration ("" before the first) */
  const char *config;      /**< the candidate just handled */
  double ms;               /**< its median time (negative: it failed to build or run) */
  const char *phase;       /**< "exhaustive", "sample", "refine" or "verify" */
} clattn_tune_progress;

/** Progress callback; return non-zero to stop the search early (the best
 *  configuration so far is still verified and reported). */
typedef int (*clattn_tune_progress_fn)(const clattn_tune_progress *progress, void *user);

/** Tuning flags (bitwise or). */
enum {
  CLATTN_TUNE_DEFAULT = 0,
  /** Do not write the result to the tuning database. */
  CLATTN_TUNE_NO_STORE = 1u << 0,
  /** Try every legal configuration (within the budget) however large the
   *  space; without it, spaces above 48 configurations are sampled at random
   *  and then refined around the best (neighbours in each parameter). */
  CLATTN_TUNE_EXHAUSTIVE = 1u << 1
};

/** What to tune. Initialise with clattn_tune_request_init(). */
typedef struct clattn_tune_request {
  clattn_algo algo; /**< kernel family: CLATTN_ALGO_FLASH (AUTO = flash) or
                         CLATTN_ALGO_LINEAR */
  /** NULL (default): the kernel variant plans of this problem would use;
   *  else a variant's name ("flash", "flash_rows", "flash_tc", "linear",
   *  "linear_tc"), which must apply to the problem on this device. */
  const char *variant;
  clattn_feature_map feature_map; /**< linear: φ (default elu+1) */
  int num_features;               /**< linear FAVOR+: m (0: head_dim) */
  clattn_dtype dtype;             /**< storage type. Default f32. */
  int head_dim;                   /**< timed at its bucket's head dim. Default 64. */
  clattn_mask mask;               /**< CLATTN_MASK_NONE or CLATTN_MASK_CAUSAL. */
  int seq;                        /**< seq_q = seq_kv of the timed problem; the result is
                                       stored for its bucket. Default 4096. */
  int batch, heads;               /**< timed problem's batch and heads; 0 (default):
                                       batch 1 and enough heads to fill the device */
  double budget_seconds;          /**< wall-clock budget of the search, compilation
                                       included (the default configuration is always
                                       measured). Default 60. */
  /** NULL, or restricts parameter values: "bm=16,32;tn=4" (parameters not
   *  named keep every legal value). The built-in default is always tried. */
  const char *space;
  unsigned flags;                   /**< CLATTN_TUNE_* */
  uint64_t seed;                    /**< sampling and random data. Default 1. */
  clattn_tune_progress_fn progress; /**< may be NULL */
  void *user;                       /**< passed to progress */
} clattn_tune_request;

/** Result of clattn_tune(). */
typedef struct clattn_tune_result {
  char problem_class[160];         /**< "flash f32 d=64 mask=none seq=4096" */
  char variant[32];                /**< the kernel variant tuned ("flash", "flash_tc", ...) */
  char best_config[512];           /**< e.g. "bm=64,bn=64,tm=16,tn=4" */
  char default_config[512];        /**< the built-in default for this device */
  double best_ms;                  /**< median time of the best configuration */
  double default_ms;               /**< median time of the built-in default */
  double speedup;                  /**< default_ms / best_ms (≥ 1: the default is a candidate) */
  int tried;                       /**< candidates measured or discarded */
  int failed;                      /**< of which failed to build or run */
  int space_size;                  /**< legal configurations in the space */
  int exhaustive;                  /**< 1 when every legal configuration was tried */
  int verified;                    /**< 1 when the best passed the reference check */
  double max_rel_error;            /**< its ‖out − ref‖ / ‖ref‖ on the rows checked */
  int stored;                      /**< 1 when written to the tuning database */
  double elapsed_s;                /**< wall-clock seconds of the whole call */
  int batch, heads, seq, head_dim; /**< the timed problem */
} clattn_tune_result;

/** Sets the defaults listed in clattn_tune_request. NULL is ignored. */
CLATTN_API void clattn_tune_request_init(clattn_tune_request *req);

/**
 * Tunes one problem class on the context's device: enumerates the kernel's
 * legal configurations (local memory, work-group and register limits prune
 * the space), builds and times candidates with OpenCL profiling events on
 * random inputs of the requested size (one warm-up, then the median of
 * several runs), skips candidates that fail to build or run, verifies the
 * winner against clattn_reference_attention() (a subset of rows for large
 * problems) and stores it in the tuning database (unless
 * CLATTN_TUNE_NO_STORE or caches are off). Plans created afterwards for the
 * class use it. Errors: INVALID_ARGUMENT (bad request or space), VERIFY (no
 * measured configuration passed the check; nothing stored), OPENCL /
 * OUT_OF_MEMORY (the inputs could not be set up), IO (the database could
 * not be written; *result is still filled).
 */
CLATTN_API clattn_status clattn_tune(clattn_context ctx, const clattn_tune_request *req,
                                     clattn_tune_result *result);

/** Writes the path of the context's tuning database into buf (whether or
 *  not the file exists yet). UNSUPPORTED when caches are disabled. */
CLATTN_API clattn_status clattn_tunedb_path(clattn_context ctx, char *buf, size_t cap);

/** Copies the context's tuning database (its device header and every entry)
 *  to `path`, e.g. to move tuning results to another machine. IO on failure;
 *  an empty database exports a header only. */
CLATTN_API clattn_status clattn_tunedb_export(clattn_context ctx, const char *path);

/**
 * Merges the entries of an exported database into the context's one (an
 * imported entry replaces the entry of the same class and kernel source).
 * The file must be for the same device (platform, vendor, device name and
 * compute capability; a different driver version is accepted with a note).
 * *imported (may be NULL) receives the number of entries merged. Corrupt
 * lines are skipped with a note in clattn_context_last_error().
 */
CLATTN_API clattn_status clattn_tunedb_import(clattn_context ctx, const char *path, int *imported);

#ifdef __cplusplus
}
#endif

#endif
