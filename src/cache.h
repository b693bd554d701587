/* cache.h — the cache directory and the program-binary cache (binary_cache.c). */
#ifndef CLATTN_CACHE_H
#define CLATTN_CACHE_H

#include "internal.h"

#define CLATTN__BINARY_FORMAT 1

/* The cache root from the settings (CLATTN_CACHE_DIR, $XDG_CACHE_HOME/clattn,
 * ~/.cache/clattn); false when disabled (CLATTN_CACHE_DIR=off) or no home is
 * known. */
bool clattn__cache_dir(const clattn__settings *s, char *buf, size_t cap);
/* <cache root>/<device slug>-<hash of platform, vendor, name, driver, cc>;
 * created when `create`. False when caches are disabled or creation failed. */
bool clattn__device_dir(clattn_context ctx, char *buf, size_t cap, bool create);
/* mkdir -p; 0 on success. */
int clattn__mkdirs(const char *path);
/* Writes data to path atomically (temp file in the same directory + rename). */
int clattn__write_atomic(const char *path, const void *data, size_t n);

/* Cache key of a program: SHA-256 over format version, platform version,
 * device name, vendor, driver, options and every source text. */
void clattn__program_cache_key(const clattn__device_info *info, const char *const *srcs, int nsrc,
                               const char *options, uint8_t key[32]);
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
