/* tunedb.c — the per-device tuning database: a versioned text file, merged and replaced atomically
 * under a lock. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include "tune.h"
#include "cache.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * File format, version 1 (one file per device, see clattn.h):
 *
 *   # comments and blank lines are ignored
 *   clattn-tunedb 1
 *   platform Portable Computing Language
 *   vendor AuthenticAMD
 *   device pthread-skylake-avx512-AMD EPYC 7R13 Processor
 *   driver 3.1+debian
 *   cc -
 *   entry kernel=flash src=0123456789abcdef dtype=f32 d=64 mask=none seq=4096
 *         config=bm=64,bn=64,tm=16,tn=4 ms=12.5 default_ms=15.1 verified=1 date=...
 *
 * (an entry is one line). Keys of an entry are separated by blanks; the
 * value runs from the first '=' to the next blank, so config keeps the
 * CLATTN_TUNE_OVERRIDE syntax. Unknown keys are ignored; lines that cannot
 * be parsed are skipped with a note. A leading UTF-8 byte-order mark is
 * accepted. Timings (ms, default_ms) must be finite, >= 0 and at most
 * CLATTN__TUNEDB_MAX_MS; an entry with another value is a bad line.
 *
 * A file whose header cannot be read (no header, another version, binary
 * data, not a regular file, not trusted) is "unreadable": lookups ignore it
 * with a note, and a store never overwrites it: it is renamed aside to
 * tuning.txt.unreadable-<UTC time>-<pid> first (see clattn__tunedb_store).
 */

/* The largest credible timing of one run, in ms (about 2.8 hours). */
#define CLATTN__TUNEDB_MAX_MS 1e7

void clattn__tunedb_free(clattn__tunedb *db) {
  free(db->e);
  memset(db, 0, sizeof *db);
}

static void note(clattn__tunedb *db, const char *fmt, const char *what, int line, const char *why) {
  char buf[400];
  snprintf(buf, sizeof buf, fmt, what, line, why);
  clattn__append(db->note, sizeof db->note, "%s%s", db->note[0] ? "; " : "", buf);
}

static void copy_field(char *dst, size_t cap, const char *src) {
  size_t k = 0;
  while (*src == ' ' || *src == '\t' || *src == '\r' || *src == '\n')
    src++;
  for (; *src && k + 1 < cap; src++)
    dst[k++] = (*src == '\n' || *src == '\r') ? ' ' : *src;
  while (k > 0 && (dst[k - 1] == ' ' || dst[k - 1] == '\t'))
    k--;
  dst[k] = 0;
}

void clattn__device_identity(const clattn__device_info *info, clattn__tunedb *db) {
  copy_field(db->platform, sizeof db->platform, info->platform_name);
  copy_field(db->vendor, sizeof db->vendor, info->vendor);
  copy_field(db->device, sizeof db->device, info->name);
  copy_field(db->driver, sizeof db->driver, info->driver);
  if (info->nv_cc_major > 0)
    snprintf(db->cc, sizeof db->cc, "%d.%d", info->nv_cc_major, info->nv_cc_minor);
  else
    snprintf(db->cc, sizeof db->cc, "-");
  db->has_header = 1;
}

static int parse_int(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < 0 || v > 0x7fffffffL) return -1;
  *out = (int)v;
  return 0;
}

static int parse_double(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v < 0 || v > CLATTN__TUNEDB_MAX_MS) return -1;
  *out = v;
  return 0;
}

/* Parses "entry k=v k=v ..." (line without the leading "entry"). NULL or why not. */
static const char *parse_entry(char *line, clattn__tunedb_entry *e) {
  memset(e, 0, sizeof *e);
  e->head_dim = -1;
  e->seq = -1;
  e->dtype = (clattn_dtype)-1;
  e->mask = (clattn_mask)-1;
  e->ms = e->default_ms = -1;
  char *save = NULL;
  /* '\r' separates too: a value never ends with one (the writer's line
   * would lose it when read back). */
  for (char *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) return "token without '='";
    *eq = 0;
    const char *k = tok, *v = eq + 1;
    if (!strcmp(k, "kernel")) {
      if (!*v || strlen(v) >= sizeof e->kernel) return "bad kernel";
      strcpy(e->kernel, v);
    } else if (!strcmp(k, "src")) {
      if (strlen(v) != 16 || strspn(v, "0123456789abcdef") != 16) return "bad src hash";
      strcpy(e->src, v);
    } else if (!strcmp(k, "dtype")) {
      int t = clattn_dtype_from_name(v);
      if (t < 0) return "unknown dtype";
      e->dtype = (clattn_dtype)t;
    } else if (!strcmp(k, "d")) {
      if (parse_int(v, &e->head_dim) || e->head_dim < 1 || e->head_dim > 4096)
        return "bad head dim";
    } else if (!strcmp(k, "mask")) {
      int m = clattn_mask_from_name(v);
      if (m < 0) return "unknown mask";
      e->mask = (clattn_mask)m;
    } else if (!strcmp(k, "seq")) {
      if (!strcmp(v, "inf"))
        e->seq = CLATTN__SEQ_OPEN;
      else if (parse_int(v, &e->seq) || clattn__seq_bucket_index(e->seq) < 0)
        return "bad seq bucket";
    } else if (!strcmp(k, "config")) {
      if (!*v || strlen(v) >= sizeof e->config) return "bad config";
      strcpy(e->config, v);
    } else if (!strcmp(k, "ms")) {
      if (parse_double(v, &e->ms)) return "bad ms";
    } else if (!strcmp(k, "default_ms")) {
      if (parse_double(v, &e->default_ms)) return "bad default_ms";
    } else if (!strcmp(k, "verified")) {
      if (strcmp(v, "0") && strcmp(v, "1")) return "bad verified";
      e->verified = *v == '1';
    } else if (!strcmp(k, "date")) {
      snprintf(e->date, sizeof e->date, "%s", v);
    } /* other keys: from a later minor revision, ignored */
  }
  if (!e->kernel[0] || !e->src[0] || (int)e->dtype < 0 || e->head_dim < 0 || (int)e->mask < 0 ||
      e->seq < 0 || !e->config[0])
    return "missing field";
  return NULL;
}

static bool same_key(const clattn__tunedb_entry *a, const clattn__tunedb_entry *b) {
  return !strcmp(a->kernel, b->kernel) && !strcmp(a->src, b->src) && a->dtype == b->dtype &&
         a->head_dim == b->head_dim && a->mask == b->mask && a->seq == b->seq;
}

clattn_status clattn__tunedb_put(clattn__tunedb *db, const clattn__tunedb_entry *e) {
  for (int i = 0; i < db->n; i++)
    if (same_key(&db->e[i], e)) {
      db->e[i] = *e;
      return CLATTN_SUCCESS;
    }
  if (db->n == db->cap) {
    int nc = db->cap ? db->cap * 2 : 16;
    clattn__tunedb_entry *ne = realloc(db->e, (size_t)nc * sizeof *ne);
    if (!ne) return CLATTN_ERROR_OUT_OF_MEMORY;
    db->e = ne;
    db->cap = nc;
  }
  db->e[db->n++] = *e;
  return CLATTN_SUCCESS;
}

clattn_status clattn__tunedb_parse(const char *text, const char *what, clattn__tunedb *db) {
  int lineno = 0, have_version = 0;
  const char *p = text;
  if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* UTF-8 byte-order mark */
  char line[2048];
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    lineno++;
    const char *next = nl ? nl + 1 : p + len;
    if (len >= sizeof line) {
      if (!have_version) db->unreadable = 1;
      db->bad_lines++;
      note(db, "%s: line %d ignored (%s)", what, lineno, "too long");
      p = next;
      continue;
    }
    memcpy(line, p, len);
    line[len] = 0;
    p = next;
    if (len && line[len - 1] == '\r') line[--len] = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t')
      s++;
    if (!*s || *s == '#') continue;
    if (!have_version) {
      int v = 0;
      char tail = 0;
      if (sscanf(s, "clattn-tunedb %d %c", &v, &tail) != 1) {
        note(db, "%s: line %d: %s; file ignored", what, lineno,
             "not a clattn tuning database (no 'clattn-tunedb 1' header)");
        db->unreadable = 1;
        return CLATTN_SUCCESS;
      }
      if (v != CLATTN__TUNEDB_VERSION) {
        char why[96];
        snprintf(why, sizeof why, "version %d is not the version this library reads (%d)", v,
                 CLATTN__TUNEDB_VERSION);
        note(db, "%s: line %d: %s; file ignored", what, lineno, why);
        db->unreadable = 1;
        return CLATTN_SUCCESS;
      }
      have_version = 1;
      db->has_header = 1;
      continue;
    }
    const char *fields[5] = {"platform", "vendor", "device", "driver", "cc"};
    char *dst[5] = {db->platform, db->vendor, db->device, db->driver, db->cc};
    size_t caps[5] = {sizeof db->platform, sizeof db->vendor, sizeof db->device, sizeof db->driver,
                      sizeof db->cc};
    int done = 0;
    for (int f = 0; f < 5 && !done; f++) {
      size_t fl = strlen(fields[f]);
      if (!strncmp(s, fields[f], fl) && (s[fl] == ' ' || s[fl] == '\t' || !s[fl])) {
        copy_field(dst[f], caps[f], s + fl);
        done = 1;
      }
    }
    if (done) continue;
    const char *why = "unknown line";
    if (!strncmp(s, "entry", 5) && (s[5] == ' ' || s[5] == '\t')) {
      clattn__tunedb_entry e;
      why = parse_entry(s + 5, &e);
      if (!why) {
        if (clattn__tunedb_put(db, &e) != CLATTN_SUCCESS) return CLATTN_ERROR_OUT_OF_MEMORY;
        continue;
      }
    }
    db->bad_lines++;
    note(db, "%s: line %d ignored (%s)", what, lineno, why);
  }
  if (!have_version && lineno > 0 && !db->note[0])
    note(db, "%s: line %d: %s; file ignored", what, lineno, "no 'clattn-tunedb 1' header");
  return CLATTN_SUCCESS;
}

/* Reads the file at path into db. Never blocks (O_NONBLOCK: a FIFO or device
 * is refused after fstat, not read); `cache`: the file lives in the cache
 * directory and must be trusted (clattn__cache_file_untrusted). A file that
 * exists but is not read is marked unreadable with a note. */
static clattn_status read_db(const char *path, clattn__tunedb *db, bool cache) {
  memset(db, 0, sizeof *db);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? CLATTN_SUCCESS : CLATTN_ERROR_IO;
  struct stat st;
  const char *why = NULL;
  if (fstat(fd, &st) != 0)
    why = "cannot stat";
  else if (!S_ISREG(st.st_mode))
    why = "not a regular file";
  else if (cache)
    why = clattn__cache_file_untrusted(&st);
  if (!why && st.st_size > ((off_t)64 << 20))
    why = "larger than 64 MiB"; /* a sane database is far smaller */
  if (why) {
    close(fd);
    db->unreadable = 1;
    note(db, "%s: line %d: %s; file ignored", path, 0, why);
    return CLATTN_SUCCESS;
  }
  size_t cap = (size_t)st.st_size + 4096, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) {
    close(fd);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  for (;;) { /* to EOF, in case the file grew since fstat */
    ssize_t got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    n += (size_t)got;
    if (n == cap) break;
  }
  close(fd);
  buf[n] = 0;
  if (strlen(buf) != n) { /* NUL bytes: corrupt */
    free(buf);
    db->unreadable = 1;
    note(db, "%s: line %d: %s; file ignored", path, 0, "binary data");
    return CLATTN_SUCCESS;
  }
  clattn_status st2 = clattn__tunedb_parse(buf, path, db);
  free(buf);
  return st2;
}

clattn_status clattn__tunedb_read(const char *path, clattn__tunedb *db) {
  return read_db(path, db, false);
}

static int cmp_entry(const void *pa, const void *pb) {
  const clattn__tunedb_entry *a = pa, *b = pb;
  int c = strcmp(a->kernel, b->kernel);
  if (!c) c = strcmp(a->src, b->src);
  if (!c) c = (int)a->dtype - (int)b->dtype;
  if (!c) c = a->head_dim - b->head_dim;
  if (!c) c = (int)a->mask - (int)b->mask;
  if (!c) c = a->seq < b->seq ? -1 : a->seq > b->seq;
  return c;
}

/* A growing string: appends never cut (the buffer doubles); `bad` after an
 * allocation failure. */
typedef struct strbuf {
  char *s;
  size_t len, cap;
  int bad;
} strbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(strbuf *b, const char *fmt, ...) {
  while (!b->bad) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->bad = 1;
    } else if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    } else {
      size_t nc = b->cap * 2;
      while (nc - b->len <= (size_t)n)
        nc *= 2;
      char *ns = realloc(b->s, nc);
      if (!ns) {
        b->bad = 1;
      } else {
        b->s = ns;
        b->cap = nc;
      }
    }
  }
}

char *clattn__tunedb_format(const clattn__tunedb *db) {
  strbuf b = {malloc(4096), 0, 4096, 0};
  if (!b.s) return NULL;
  b.s[0] = 0;
  clattn__tunedb_entry *sorted = NULL;
  if (db->n) {
    sorted = malloc((size_t)db->n * sizeof *sorted);
    if (!sorted) {
      free(b.s);
      return NULL;
    }
    memcpy(sorted, db->e, (size_t)db->n * sizeof *sorted);
    qsort(sorted, (size_t)db->n, sizeof *sorted, cmp_entry);
  }
  sb_printf(&b,
            "# clattn tuning database: one device, one entry per problem class.\n"
            "# Written by clattn_tune() / `clattn tune`; safe to edit by hand. Entries\n"
            "# whose src differs from the library's kernel source hash are ignored.\n"
            "clattn-tunedb %d\nplatform %s\nvendor %s\ndevice %s\ndriver %s\ncc %s\n",
            CLATTN__TUNEDB_VERSION, db->platform, db->vendor, db->device, db->driver,
            db->cc[0] ? db->cc : "-");
  for (int i = 0; i < db->n; i++) {
    const clattn__tunedb_entry *e = &sorted[i];
    char seq[16];
    clattn__seq_bucket_name(e->seq, seq, sizeof seq);
    sb_printf(&b, "entry kernel=%s src=%s dtype=%s d=%d mask=%s seq=%s config=%s", e->kernel,
              e->src, clattn_dtype_name(e->dtype), e->head_dim, clattn_mask_name(e->mask), seq,
              e->config);
    if (e->ms >= 0) sb_printf(&b, " ms=%.4f", e->ms);
    if (e->default_ms >= 0) sb_printf(&b, " default_ms=%.4f", e->default_ms);
    sb_printf(&b, " verified=%d", e->verified ? 1 : 0);
    if (e->date[0]) sb_printf(&b, " date=%s", e->date);
    sb_printf(&b, "\n");
  }
  free(sorted);
  if (b.bad) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

bool clattn__tunedb_path(clattn_context ctx, char *buf, size_t cap) {
  char dir[4096];
  if (!clattn__device_dir(ctx, dir, sizeof dir, false)) return false;
  int n = snprintf(buf, cap, "%s/tuning.txt", dir);
  return n > 0 && (size_t)n < cap;
}

/* Exclusive lock on <path>.lock (the database itself is replaced by rename,
 * so the lock lives on a separate, stable file). Returns the fd or -1. */
static int lock_db(const char *path) {
  char lp[4300];
  int n = snprintf(lp, sizeof lp, "%s.lock", path);
  if (n < 0 || (size_t)n >= sizeof lp) return -1;
  int fd = open(lp, O_RDWR | O_CREAT, 0644);
  if (fd < 0) return -1;
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

static void unlock_db(int fd) {
  flock(fd, LOCK_UN);
  close(fd);
}

/*
 * Merges e[0..n) into the context's database under its lock and replaces the
 * file atomically. A file it cannot read (a newer or unknown version, no
 * header, binary data, not a regular file, not trusted) is never overwritten:
 * it is renamed aside to tuning.txt.unreadable-<UTC time>-<pid>, a note in
 * ctx->msg says where, and a new database is started. An untrusted cache
 * directory (README, "Cache directory trust model") is refused with
 * CLATTN_ERROR_IO.
 */
clattn_status clattn__tunedb_store(clattn_context ctx, const clattn__tunedb_entry *e, int n) {
  char dir[4096], path[4200];
  if (!clattn__device_dir(ctx, dir, sizeof dir, true) ||
      !clattn__tunedb_path(ctx, path, sizeof path))
    return clattn__fail(ctx, CLATTN_ERROR_IO,
                        "cannot create the cache directory for the tuning database "
                        "(CLATTN_CACHE_DIR=%s)",
                        ctx->settings.cache_env[0] ? ctx->settings.cache_env : "(unset)");
  char which[4096];
  const char *untrusted = clattn__cache_dir_untrusted(&ctx->settings, dir, which, sizeof which);
  if (untrusted)
    return clattn__fail(ctx, CLATTN_ERROR_IO,
                        "tuning database not stored: cache directory %s is not trusted (%s; see "
                        "README, \"Cache directory trust model\")",
                        which, untrusted);
  int fd = lock_db(path);
  if (fd < 0)
    return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot lock the tuning database %s.lock", path);
  clattn__tunedb db;
  clattn_status st = read_db(path, &db, true);
  if (st != CLATTN_SUCCESS) {
    unlock_db(fd);
    clattn__tunedb_free(&db);
    return clattn__fail(ctx, st, "cannot read the tuning database %s", path);
  }
  char moved[2200] = "";
  if (db.unreadable) { /* keep what we could not read: rename it aside */
    char aside[4400], stamp[32] = "";
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(aside, sizeof aside, "%s.unreadable-%s-%ld", path, stamp, (long)getpid());
    if (rename(path, aside) != 0) {
      int err = errno;
      unlock_db(fd);
      clattn__tunedb_free(&db);
      return clattn__fail(ctx, CLATTN_ERROR_IO,
                          "tuning database not stored: %s cannot be read and cannot be moved "
                          "aside to %s: %s",
                          path, aside, strerror(err));
    }
    snprintf(moved, sizeof moved, "%.700s could not be read (%.400s); moved aside to %.680s", path,
             db.note, aside);
    clattn__tunedb_free(&db);
  }
  clattn__device_identity(&ctx->info, &db);
  for (int i = 0; i < n && st == CLATTN_SUCCESS; i++)
    st = clattn__tunedb_put(&db, &e[i]);
  char *text = st == CLATTN_SUCCESS ? clattn__tunedb_format(&db) : NULL;
  int wr = text ? clattn__write_atomic(path, text, strlen(text)) : -1;
  unlock_db(fd);
  free(text);
  if (wr != 0) {
    clattn__tunedb_free(&db);
    return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot write the tuning database %s", path);
  }
  clattn__remove_stale_tmp(dir);
  if (moved[0])
    clattn__append(ctx->msg, sizeof ctx->msg, "%snote: tuning database %s", ctx->msg[0] ? "\n" : "",
                   moved);
  /* The merged database is what this context looks up from now on. */
  clattn__tunedb *mem = ctx->tunedb ? ctx->tunedb : calloc(1, sizeof *mem);
  if (mem) {
    clattn__tunedb_free(mem);
    *mem = db;
    mem->note[0] = 0;
    ctx->tunedb = mem;
    ctx->tunedb_loaded = true;
  } else {
    clattn__tunedb_free(&db);
    ctx->tunedb_loaded = false;
  }
  return CLATTN_SUCCESS;
}

void clattn__tunedb_forget(clattn_context ctx) {
  if (ctx->tunedb) clattn__tunedb_free(ctx->tunedb);
  free(ctx->tunedb);
  ctx->tunedb = NULL;
  ctx->tunedb_loaded = false;
}

/* The context's in-memory database, read from disk at the first lookup (its
 * notes go to the context's message then); NULL when there is none. */
static const clattn__tunedb *ctx_db(clattn_context ctx) {
  if (ctx->tunedb_loaded) return ctx->tunedb;
  ctx->tunedb_loaded = true;
  char path[4200], dir[4200];
  if (!clattn__tunedb_path(ctx, path, sizeof path)) return NULL;
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = 0;
  if (!clattn__cache_dir_trusted(ctx, dir)) return NULL;
  clattn__tunedb *db = calloc(1, sizeof *db);
  if (!db) return NULL;
  if (read_db(path, db, true) != CLATTN_SUCCESS) {
    clattn__tunedb_free(db);
    free(db);
    return NULL;
  }
  ctx->tunedb = db;
  return db;
}

static void ctx_note(clattn_context ctx, const char *text) {
  if (!text[0]) return;
  clattn__append(ctx->msg, sizeof ctx->msg, "%snote: tuning database %s", ctx->msg[0] ? "\n" : "",
                 text);
}

bool clattn__tunedb_lookup(clattn_context ctx, const clattn__variant *v,
                           const clattn_attention_desc *d, int *params, bool *exact,
                           int *found_seq) {
  if (v->num_params == 0) return false;
  const bool first = !ctx->tunedb_loaded;
  const clattn__tunedb *db = ctx_db(ctx);
  if (!db) return false;
  char path[4200];
  if (!clattn__tunedb_path(ctx, path, sizeof path)) path[0] = 0;
  if (first) ctx_note(ctx, db->note);
  if (db->n == 0) return false;
  clattn__tunedb me;
  memset(&me, 0, sizeof me);
  clattn__device_identity(&ctx->info, &me);
  if (strcmp(db->device, me.device) || strcmp(db->platform, me.platform)) {
    if (first) {
      char buf[1200];
      snprintf(buf, sizeof buf, "%.600s is for device '%.200s', not '%.200s': ignored", path,
               db->device, me.device);
      ctx_note(ctx, buf);
    }
    return false;
  }
  char src[17];
  if (clattn__source_hash(ctx, v, src) != CLATTN_SUCCESS) return false;
  const clattn__tune_class cls = clattn__class_of(v->name, d);
  int stale = 0, best = -1, best_dist = 0;
  const int want = clattn__seq_bucket_index(cls.seq);
  for (int i = 0; i < db->n; i++) {
    const clattn__tunedb_entry *e = &db->e[i];
    if (strcmp(e->kernel, v->name)) continue;
    if (strcmp(e->src, src)) {
      stale++;
      continue;
    }
    if (e->dtype != cls.dtype || e->head_dim != cls.head_dim || e->mask != cls.mask) continue;
    /* Every entry passes the same legality check as any configuration; an
     * illegal one (hand-edited, imported from another device) is skipped. */
    int p[CLATTN__MAX_PARAMS];
    if (clattn__config_parse(v, e->config, NULL, p, NULL, 0) != CLATTN_SUCCESS ||
        v->check(p, d, &ctx->info))
      continue;
    const int dd = clattn__seq_bucket_index(e->seq) - want;
    /* nearest bucket; on a tie the larger one (longer runs dominate) */
    const int dist = dd < 0 ? -2 * dd + 1 : 2 * dd;
    if (best < 0 || dist < best_dist) {
      best = i;
      best_dist = dist;
      memcpy(params, p, (size_t)v->num_params * sizeof *p);
    }
  }
  if (stale && first) {
    char buf[1200];
    snprintf(buf, sizeof buf,
             "%.600s: %d %s entr%s for another kernel source ignored (this library's is %s)", path,
             stale, v->name, stale == 1 ? "y" : "ies", src);
    ctx_note(ctx, buf);
  }
  if (best >= 0) {
    *exact = best_dist == 0;
    *found_seq = db->e[best].seq;
  }
  return best >= 0;
}

/* ---- public API ---------------------------------------------------------- */

clattn_status clattn_tunedb_path(clattn_context ctx, char *buf, size_t cap) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!buf || cap == 0)
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "buf is NULL or cap is 0");
  if (!clattn__tunedb_path(ctx, buf, cap)) {
    buf[0] = 0;
    return clattn__fail(ctx, CLATTN_ERROR_UNSUPPORTED,
                        "caches are disabled (CLATTN_CACHE_DIR=off, or no home directory) or "
                        "the path does not fit %zu bytes",
                        cap);
  }
  return CLATTN_SUCCESS;
}

clattn_status clattn_tunedb_export(clattn_context ctx, const char *path) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (!path || !*path) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "path is empty");
  char src[4200];
  clattn__tunedb db;
  memset(&db, 0, sizeof db);
  bool have = clattn__tunedb_path(ctx, src, sizeof src);
  if (have) {
    char dir[4200], which[4096];
    snprintf(dir, sizeof dir, "%s", src);
    *strrchr(dir, '/') = 0;
    const char *untrusted = clattn__cache_dir_untrusted(&ctx->settings, dir, which, sizeof which);
    if (untrusted)
      return clattn__fail(ctx, CLATTN_ERROR_IO,
                          "cache directory %s is not trusted (%s; see README, \"Cache directory "
                          "trust model\")",
                          which, untrusted);
  }
  if (have && read_db(src, &db, true) != CLATTN_SUCCESS) {
    clattn__tunedb_free(&db);
    return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot read the tuning database %s", src);
  }
  char keep[1024];
  snprintf(keep, sizeof keep, "%s", db.note);
  clattn__device_identity(&ctx->info, &db);
  char *text = clattn__tunedb_format(&db);
  int wr = text ? clattn__write_atomic(path, text, strlen(text)) : -1;
  free(text);
  clattn__tunedb_free(&db);
  if (wr != 0) return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot write %s", path);
  ctx_note(ctx, keep);
  return CLATTN_SUCCESS;
}

clattn_status clattn_tunedb_import(clattn_context ctx, const char *path, int *imported) {
  if (!ctx) return CLATTN_ERROR_INVALID_ARGUMENT;
  ctx->msg[0] = 0;
  if (imported) *imported = 0;
  if (!path || !*path) return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "path is empty");
  clattn__tunedb in;
  struct stat sb;
  if (stat(path, &sb) != 0)
    return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot open %s: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode))
    return clattn__fail(ctx, CLATTN_ERROR_IO, "%s is not a regular file", path);
  clattn_status st = clattn__tunedb_read(path, &in);
  if (st != CLATTN_SUCCESS) {
    clattn__tunedb_free(&in);
    return clattn__fail(ctx, CLATTN_ERROR_IO, "cannot read %s", path);
  }
  if (!in.has_header) {
    char why[1100];
    snprintf(why, sizeof why, "%s", in.note[0] ? in.note : "empty file");
    clattn__tunedb_free(&in);
    return clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "%s is not a clattn tuning database: %s", path, why);
  }
  clattn__tunedb me;
  memset(&me, 0, sizeof me);
  clattn__device_identity(&ctx->info, &me);
  if (strcmp(in.platform, me.platform) || strcmp(in.vendor, me.vendor) ||
      strcmp(in.device, me.device) || strcmp(in.cc, me.cc)) {
    st = clattn__fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                      "%s holds tuning results for '%s / %s (cc %s)', not for this device "
                      "'%s / %s (cc %s)'",
                      path, in.platform, in.device, in.cc, me.platform, me.device, me.cc);
    clattn__tunedb_free(&in);
    return st;
  }
  char notes[1200];
  snprintf(notes, sizeof notes, "%s", in.note);
  int n = in.n;
  st = n ? clattn__tunedb_store(ctx, in.e, n) : CLATTN_SUCCESS;
  int driver_differs = strcmp(in.driver, me.driver) != 0;
  char drv[256];
  snprintf(drv, sizeof drv, "%s", in.driver);
  clattn__tunedb_free(&in);
  if (st != CLATTN_SUCCESS) return st;
  if (imported) *imported = n;
  ctx_note(ctx, notes);
  if (driver_differs)
    clattn__append(ctx->msg, sizeof ctx->msg,
                   "%snote: imported entries were measured with driver %s (this one: %s)",
                   ctx->msg[0] ? "\n" : "", drv, me.driver);
  return CLATTN_SUCCESS;
}
