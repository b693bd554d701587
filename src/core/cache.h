/* cache.h — the cache directory, its trust checks, and the program-binary cache (binary_cache.c).
 */
#ifndef CLATTN_CACHE_H
#define CLATTN_CACHE_H

#include "internal.h"

#include <sys/stat.h>

#define CLATTN__BINARY_FORMAT 1

/* The cache root from the context's settings (CLATTN_CACHE_DIR,
 * $XDG_CACHE_HOME/clattn, ~/.cache/clattn); false when disabled
 * (CLATTN_CACHE_DIR=off) or no home is known. */
bool clattn__cache_dir(const clattn__settings *s, char *buf, size_t cap);
/* <cache root>/<device slug>-<hash of platform, vendor, name, driver, cc>;
 * created when `create`. False when caches are disabled or creation failed. */
bool clattn__device_dir(clattn_context ctx, char *buf, size_t cap, bool create);
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
const char *clattn__cache_dir_untrusted(const clattn__settings *settings, const char *dir,
                                        char *which, size_t cap);
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
