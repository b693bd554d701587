/* tune.h — private interfaces of the search spaces, tuner, tuning database, built-in defaults and
 * program-binary cache. */
#ifndef CLATTN_TUNE_H
#define CLATTN_TUNE_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- SHA-256 (sha256.c) --------------------------------------------------- */

typedef struct clattn__sha256_ctx {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t fill;
} clattn__sha256_ctx;

void clattn__sha256_init(clattn__sha256_ctx *s);
void clattn__sha256_update(clattn__sha256_ctx *s, const void *data, size_t n);
void clattn__sha256_final(clattn__sha256_ctx *s, uint8_t out[32]);
void clattn__sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n + 1 chars). */
void clattn__hex(const uint8_t *bytes, size_t n, char *out);

/* ---- kernel search spaces ------------------------------------------------- */

#define CLATTN__MAX_PARAMS 8

/* Device limits every configuration must respect. */
typedef struct clattn__space_limits {
  size_t local_mem; /* bytes of local memory per work-group */
  size_t max_wg;    /* work-items per work-group */
  int cpu;          /* 1 on CPU devices: kernels written for CPUs become legal */
} clattn__space_limits;

/*
 * A tunable kernel: its parameters, their legal values and the constraints a
 * configuration must meet, as data. The tuner enumerates the space through
 * this table, and plan creation validates every configuration (tuned,
 * default or forced) with the same `check`. A new kernel registers its space
 * in clattn__kernel_spaces[] (tune.c).
 */
typedef struct clattn__kernel_space {
  const char *name; /* "flash": the database's kernel= and the API's kernel name */
  int num_params;
  const char *const *param_names; /* num_params names, as in config strings */
  const int *const *values;       /* legal values of each parameter, ascending */
  const int *num_values;
  const char *const *sources; /* kernel files the source hash covers, NULL-terminated */
  /* NULL when the configuration is legal for head_dim under lim, else a
   * static reason. */
  const char *(*check)(const int *params, int head_dim, const clattn__space_limits *lim);
  /* Last-resort built-in choice when no table entry applies; false if nothing fits. */
  bool (*fallback)(const clattn__device_info *info, int head_dim, const clattn__space_limits *lim,
                   int *params);
} clattn__kernel_space;

extern const clattn__kernel_space clattn__flash_space;
/* The NVIDIA tensor-core kernel (cl/flash_tc.cl): warps, mt, bn. */
extern const clattn__kernel_space clattn__flash_tc_space;
size_t clattn__flash_tc_local_bytes(int bn, int head_dim);
int clattn__flash_tc_live_regs(int mt, int bn, int head_dim);
/* NULL-terminated registry of every tunable kernel. */
extern const clattn__kernel_space *const clattn__kernel_spaces[];
const clattn__kernel_space *clattn__find_space(const char *name);

clattn__space_limits clattn__space_limits_of(const clattn__device_info *info);
/* "bm=64,bn=32,tm=16,tn=8" (in the space's parameter order). */
void clattn__config_format(const clattn__kernel_space *sp, const int *params, char *buf,
                           size_t cap);
/* Parses a config string (any order, every parameter required, optional
 * "name:" prefix). */
clattn_status clattn__config_parse(const clattn__kernel_space *sp, const char *s, int *params);

/* ---- problem classes ---------------------------------------------------- */

#define CLATTN__SEQ_OPEN 0x7fffffff /* upper bound of the open bucket (> 16384) */

/* Head dims: 32, 64, 80, 96, 128 and 256 are their own bucket; any other d
 * is padded up to a multiple of 16. */
int clattn__head_dim_bucket(int head_dim);
/* Sequence buckets by upper bound: powers of two 16..1024, then 4096, 16384
 * and open. */
int clattn__seq_bucket(int seq);
int clattn__seq_bucket_index(int bucket); /* -1 when not a bucket bound */
/* "4096" or "inf". */
void clattn__seq_bucket_name(int bucket, char *buf, size_t cap);
const char *clattn__mask_name(clattn_mask m);
int clattn__mask_from_name(const char *s);  /* -1 when unknown */
int clattn__dtype_from_name(const char *s); /* -1 when unknown */

typedef struct clattn__tune_class {
  const char *kernel;
  clattn_dtype dtype;
  int head_dim; /* bucket */
  clattn_mask mask;
  int seq; /* bucket upper bound */
} clattn__tune_class;

/* The class of a resolved descriptor (buckets of head_dim and seq_q). */
clattn__tune_class clattn__class_of(const char *kernel, const clattn_attention_desc *d);
/* "flash f32 d=64 mask=none seq=4096" */
void clattn__class_name(const clattn__tune_class *c, char *buf, size_t cap);

/* First 16 hex digits of the SHA-256 of the space's kernel sources (as the
 * library would compile them, CLATTN_KERNEL_DIR included). */
clattn_status clattn__source_hash(clattn_context ctx, const clattn__kernel_space *sp, char out[17]);

/* ---- search (tune.c) ------------------------------------------------------ */

/* The candidate generator of the tuner, separate from timing so it can be
 * tested: exhaustive over small spaces, else random samples then local
 * refinement around the best. Every proposal is a legal configuration. */
typedef struct clattn__search {
  const clattn__kernel_space *space;
  int np;
  int *cfg;          /* num × np parameter values of the legal configurations */
  int num;           /* legal configurations (the default first when given) */
  unsigned char *st; /* 0 untried, 1 proposed, 2 measured */
  double *ms;        /* measured median (negative: failed) */
  int has_default;
  int exhaustive;
  int done, proposed;
  int best; /* index, -1 before the first success */
  uint64_t rng;
  const char *phase; /* of the last proposal: "exhaustive", "sample", "refine" */
} clattn__search;

/* Enumerates the legal configurations. `restrict_spec` limits parameter
 * values ("bm=16,32;tn=4", NULL for none); `first` (may be NULL) is
 * proposed first even if outside the restriction (when legal).
 * exhaustive_max: spaces up to this size are searched exhaustively. */
clattn_status clattn__search_init(clattn__search *s, const clattn__kernel_space *sp, int head_dim,
                                  const clattn__space_limits *lim, const char *restrict_spec,
                                  const int *first, uint64_t seed, int exhaustive_max, char *err,
                                  size_t errcap);
/* Next candidate (index into s->cfg), or -1 when every candidate was tried.
 * budget_frac: fraction of the time budget already used (0..1). */
int clattn__search_next(clattn__search *s, double budget_frac);
/* Records a candidate's median time in ms (negative: failed). */
void clattn__search_report(clattn__search *s, int idx, double ms);
void clattn__search_free(clattn__search *s);

/* ---- configuration choice at plan time (tune.c) ------------------------- */

/* Chooses the configuration of `sp` for plan p: the forced one
 * (clattn_plan_create_with_config or the tuner), CLATTN_TUNE_OVERRIDE, the
 * tuning database (exact class, else nearest sequence bucket), a measurement
 * now (CLATTN_PLAN_MEASURE), else the built-in defaults. origin receives
 * "tuned", "built-in default (...)", "override (...)" and so on. */
clattn_status clattn__choose_config(clattn_plan p, const clattn__kernel_space *sp, int *params,
                                    char *origin, size_t cap);

/* ---- built-in defaults (tune_defaults.c) -------------------------------- */

/* Fallback chain device → architecture → vendor → device class → generic.
 * label receives where it came from ("NVIDIA sm_90", "CPU", ...). */
bool clattn__builtin_default(const clattn__device_info *info, const clattn__kernel_space *sp,
                             clattn_dtype dtype, int head_dim, const clattn__space_limits *lim,
                             int *params, char *label, size_t cap);

/* ---- tuning database (tunedb.c) ------------------------------------------ */

#define CLATTN__TUNEDB_VERSION 1

typedef struct clattn__tunedb_entry {
  char kernel[24];
  char src[17];
  clattn_dtype dtype;
  int head_dim; /* bucket */
  clattn_mask mask;
  int seq; /* bucket */
  char config[128];
  double ms, default_ms;
  int verified;
  char date[32];
} clattn__tunedb_entry;

typedef struct clattn__tunedb {
  char platform[256], vendor[256], device[256], driver[256], cc[16];
  int has_header;
  clattn__tunedb_entry *e;
  int n, cap;
  int bad_lines;
  /* The file exists but was not read (no header, another version, binary
   * data, not a regular file, not trusted): never overwritten. */
  int unreadable;
  char note[1024]; /* why lines or the file were ignored ("" if none) */
} clattn__tunedb;

void clattn__tunedb_free(clattn__tunedb *db);
/* Parses the text of a database; never fails on content (bad lines are
 * counted and noted; a file without a readable header is marked unreadable);
 * a leading UTF-8 BOM is skipped; `what` names the file in notes. */
clattn_status clattn__tunedb_parse(const char *text, const char *what, clattn__tunedb *db);
/* Reads a database file; a missing file gives an empty database. Never
 * blocks: a FIFO or other non-regular file is marked unreadable, not read. */
clattn_status clattn__tunedb_read(const char *path, clattn__tunedb *db);
/* Serialises to a malloc'ed string. */
char *clattn__tunedb_format(const clattn__tunedb *db);
/* Adds or replaces (same kernel, src, dtype, d, mask, seq) an entry. */
clattn_status clattn__tunedb_put(clattn__tunedb *db, const clattn__tunedb_entry *e);
/* Path of the context's database; false when caches are disabled. */
bool clattn__tunedb_path(clattn_context ctx, char *buf, size_t cap);
/* Locks, re-reads, merges the entries in, writes a temp file and renames. A
 * file it cannot read is renamed aside (tuning.txt.unreadable-<time>-<pid>),
 * never overwritten; an untrusted cache directory is refused (IO error). */
clattn_status clattn__tunedb_store(clattn_context ctx, const clattn__tunedb_entry *e, int n);
/* The database entry for the class (exact, else the nearest sequence bucket)
 * that is legal for head_dim on this device. *exact tells which. Notes about
 * ignored lines go to ctx->msg. */
bool clattn__tunedb_lookup(clattn_context ctx, const clattn__kernel_space *sp,
                           const clattn__tune_class *cls, int head_dim,
                           const clattn__space_limits *lim, int *params, bool *exact,
                           int *found_seq);
void clattn__device_identity(const clattn__device_info *info, clattn__tunedb *db);

/* ---- cache directory and program binaries (binary_cache.c) -------------- */

#define CLATTN__BINARY_FORMAT 1

/* The cache root (CLATTN_CACHE_DIR, $XDG_CACHE_HOME/clattn, ~/.cache/clattn);
 * false when disabled (CLATTN_CACHE_DIR=off) or no home is known. */
bool clattn__cache_dir(char *buf, size_t cap);
/* <cache root>/<device slug>-<hash of platform, vendor, name, driver, cc>;
 * created when `create`. False when caches are disabled or creation failed. */
bool clattn__device_dir(const clattn__device_info *info, char *buf, size_t cap, bool create);
/* mkdir -p with mode 0700; 0 on success. */
int clattn__mkdirs(const char *path);
/* Writes data to path atomically: a mkstemp temp file <path>.tmp.XXXXXX in
 * the same directory, fsync, rename. */
int clattn__write_atomic(const char *path, const void *data, size_t n);
/* Removes regular files <dir>/<name>.tmp.<suffix> older than an hour (left by a crash). */
void clattn__remove_stale_tmp(const char *dir);

/* Trust model of the cache (README, "Cache directory trust model"): a
 * directory or file is used only when owned by the effective user and not
 * writable by group or others. NULL when st passes, else why not. */
const char *clattn__cache_file_untrusted(const struct stat *st);
/* Checks the cache root and every directory from it down to dir (a path
 * under the root); a directory that does not exist yet passes. NULL when all
 * pass, else why not, with the offending path in which. */
const char *clattn__cache_dir_untrusted(const char *dir, char *which, size_t cap);
/* The same, as a note in ctx->msg ("cache directory ... ignored"). */
bool clattn__cache_dir_trusted(clattn_context ctx, const char *dir);
/* Opens path without blocking (O_NONBLOCK), and reads it only when it is a
 * regular, trusted file. NULL with *why NULL when absent; NULL with *why set
 * when refused or unreadable. */
uint8_t *clattn__read_cache_file(const char *path, size_t *len, const char **why);

/* Cache key of a program: SHA-256 over format version, platform version,
 * device name, vendor, driver, options and every source text. */
void clattn__program_cache_key(const clattn__device_info *info, const char *const *srcs, int nsrc,
                               const char *options, uint8_t key[32]);
/* Validates the bytes of a cache file (header, format, length, key,
 * SHA-256 of the payload): NULL and the payload when valid, else why not.
 * Pure (no OpenCL, no I/O). */
const char *clattn__binary_cache_validate(const uint8_t *b, size_t n, const uint8_t key[32],
                                          const uint8_t **payload, size_t *len);
/* A built program from the cached binary, or NULL (absent, corrupt, or the
 * driver refused it; corruption is noted in ctx->msg and the file removed). */
cl_program clattn__binary_cache_load(clattn_context ctx, const uint8_t key[32], const char *options,
                                     size_t *loaded_size);
/* Whether a freshly built program is stored at once (true) or when it is
 * released (PoCL: see binary_cache.c). */
bool clattn__binary_cache_eager(const clattn__device_info *info);
/* Stores the program's binary; records the stored size. Failures disable
 * the cache for the process. */
void clattn__binary_cache_store(clattn_context ctx, cl_program prog, const uint8_t key[32],
                                size_t *stored_size);
/* Stores an entry not stored yet (PoCL, or built by the tuner) when its
 * program is released; on PoCL only when POCL_KERNEL_CACHE=0 (PoCL's own
 * kernel cache already covers the other case). */
void clattn__binary_cache_refresh(clattn_context ctx, clattn__program_entry *e);

/* Counters for tests: loads served, builds from source, binaries written. */
typedef struct clattn__cache_stats {
  long hits, misses, stores, corrupt;
} clattn__cache_stats;
clattn__cache_stats clattn__binary_cache_stats(void);

#endif
