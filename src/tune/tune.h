/* tune.h — private interfaces of tuning: problem classes, the candidate search, the tuning
 * database, built-in defaults. */
#ifndef CLATTN_TUNE_H
#define CLATTN_TUNE_H

#include "variant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- problem classes (classes.c) ------------------------------------------ */

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

typedef struct clattn__tune_class {
  const char *kernel; /* variant name */
  clattn_dtype dtype;
  int head_dim; /* bucket */
  clattn_mask mask;
  int seq; /* bucket upper bound */
} clattn__tune_class;

/* The class of a resolved descriptor (buckets of head_dim and seq_q). */
clattn__tune_class clattn__class_of(const char *kernel, const clattn_attention_desc *d);
/* "flash f32 d=64 mask=none seq=4096" */
void clattn__class_name(const clattn__tune_class *c, char *buf, size_t cap);

/* First 16 hex digits of the SHA-256 of the variant's kernel sources (as
 * the library compiles them, CLATTN_KERNEL_DIR included), computed once per
 * context. */
clattn_status clattn__source_hash(clattn_context ctx, const clattn__variant *v, char out[17]);

/* ---- search (search.c) ----------------------------------------------------- */

/* The candidate generator of the tuner, separate from timing so it can be
 * tested: exhaustive over small spaces, else random samples then local
 * refinement around the best. Every proposal is a legal configuration.
 * Parameters without tuner values keep their value from `base`. */
typedef struct clattn__search {
  const clattn__variant *variant;
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

/* Enumerates the legal configurations of v for the problem d on the device.
 * `restrict_spec` limits parameter values ("bm=16,32;tn=4", NULL for
 * none); `first` (may be NULL) is proposed first even if outside the
 * restriction (when legal) and supplies the values of parameters the tuner
 * does not search. exhaustive_max: spaces up to this size are searched
 * exhaustively. */
clattn_status clattn__search_init(clattn__search *s, const clattn__variant *v,
                                  const clattn_attention_desc *d, const clattn__device_info *info,
                                  const char *restrict_spec, const int *first, uint64_t seed,
                                  int exhaustive_max, char *err, size_t errcap);
/* Next candidate (index into s->cfg), or -1 when every candidate was tried.
 * budget_frac: fraction of the time budget already used (0..1). */
int clattn__search_next(clattn__search *s, double budget_frac);
/* Records a candidate's median time in ms (negative: failed). */
void clattn__search_report(clattn__search *s, int idx, double ms);
void clattn__search_free(clattn__search *s);

/* ---- the tuner (tuner.c) --------------------------------------------------- */

/* Tunes the class of the descriptor `d` for variant v (plan.c calls it for
 * CLATTN_PLAN_MEASURE before building; clattn_tune for a request). */
clattn_status clattn__tune_variant(clattn_context ctx, const clattn__variant *v,
                                   const clattn_attention_desc *d, const clattn_tune_request *req,
                                   clattn_tune_result *res);

/* ---- built-in defaults (tune_defaults.c) ------------------------------------ */

/* Fallback chain device → architecture → vendor → device class → the
 * variant's own fallback. label receives where it came from ("NVIDIA sm_90",
 * "CPU", ...). */
bool clattn__builtin_default(const clattn__device_info *info, const clattn__variant *v,
                             const clattn_attention_desc *d, int *params, char *label, size_t cap);

/* ---- tuning database (tunedb.c) --------------------------------------------- */

#define CLATTN__TUNEDB_VERSION 1

typedef struct clattn__tunedb_entry {
  char kernel[24];
  char src[17];
  clattn_dtype dtype;
  int head_dim; /* bucket */
  clattn_mask mask;
  int seq; /* bucket */
  char config[512];
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
/* Locks, re-reads, merges the entries in, writes a temp file and renames (the
 * context's in-memory copy becomes the merged database). A
 * file it cannot read is renamed aside (tuning.txt.unreadable-<time>-<pid>),
 * never overwritten; an untrusted cache directory is refused (IO error). */
clattn_status clattn__tunedb_store(clattn_context ctx, const clattn__tunedb_entry *e, int n);
/* The database entry for the class (exact, else the nearest sequence bucket)
 * that is legal for the problem d on this device, from the context's
 * in-memory copy (read from disk once). *exact tells which. Notes about
 * ignored lines go to ctx->msg. */
bool clattn__tunedb_lookup(clattn_context ctx, const clattn__variant *v,
                           const clattn_attention_desc *d, int *params, bool *exact,
                           int *found_seq);
/* Frees the context's in-memory database (context release). */
void clattn__tunedb_forget(clattn_context ctx);
void clattn__device_identity(const clattn__device_info *info, clattn__tunedb *db);

#endif
