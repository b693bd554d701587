/* problem.c — options shared by run and bench, and one problem's setup, timing and verification. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_common_defaults(cli_common *c) {
  memset(c, 0, sizeof *c);
  c->device = NULL;
  c->batch = 1;
  c->heads = 8;
  c->kv_heads = 0;
  c->head_dim = 64;
  c->dtype = CLATTN_DTYPE_F32;
  c->layout = CLATTN_LAYOUT_BHSD;
  c->scale = 0.0;
  c->softcap = 0.0;
  c->alibi = 0.0;
  c->reps = 10;
  c->warmup = 1;
  c->seed = 42;
  c->verify = -1;
  c->feature = "elu";
}

cli_opt_table cli_common_table(cli_common *c) {
  static cli_opt t[30];
  const cli_opt opts[] = {
      {"device", "SEL", CLI_OPT_STR, &c->device, 0, 0, NULL,
       "device: P:D, gpu, cpu or a name substring (default $CLATTN_DEVICE, else first GPU, else "
       "CPU)"},
      {"batch", "B", CLI_OPT_INT, &c->batch, 1, 0, NULL, "batch size (default 1)"},
      {"heads", "H", CLI_OPT_INT, &c->heads, 1, 0, NULL, "query heads (default 8)"},
      {"kv-heads", "HK", CLI_OPT_INT, &c->kv_heads, 0, 0, NULL,
       "key/value heads, dividing H (GQA/MQA; default H)"},
      {"head-dim", "D", CLI_OPT_INT, &c->head_dim, 1, 0, NULL, "head dimension (default 64)"},
      {"dtype", NULL, CLI_OPT_CHOICE, &c->dtype, 0, 0, cli_dtype_names,
       "storage type of q, k, v, o (default f32)"},
      {"layout", NULL, CLI_OPT_CHOICE, &c->layout, 0, 0, cli_layout_names,
       "tensor layout (default bhsd)"},
      {"scale", "S", CLI_OPT_DOUBLE, &c->scale, 0, 0, NULL,
       "score scale (default 0 = 1/sqrt(head_dim))"},
      {"softcap", "C", CLI_OPT_DOUBLE, &c->softcap, 0, 0, NULL,
       "logit soft-capping: s = C*tanh(s/C) (Gemma 2; flash kernels, forward; default 0 = off)"},
      {"alibi", "MAX_BIAS", CLI_OPT_DOUBLE, &c->alibi, 0, 0, NULL,
       "ALiBi with the standard slopes of MAX_BIAS (8: BLOOM's; flash kernels, forward; default "
       "0 = off)"},
      {"score-mod", "FILE", CLI_OPT_STR, &c->score_mod_file, 0, 0, NULL,
       "OpenCL C source defining float clattn_score_mod(float score, int b, int h, int q_idx, "
       "int kv_idx, __global const uchar *user) (flash kernels; user is NULL here)"},
      {"mask-mod", "FILE", CLI_OPT_STR, &c->mask_mod_file, 0, 0, NULL,
       "OpenCL C source defining int clattn_mask_mod(int b, int h, int q_idx, int kv_idx, "
       "__global const uchar *user) (non-zero: visible; with --mask)"},
      {"sinks", "V[,V...]", CLI_OPT_STR, &c->sinks, 0, 0, NULL,
       "attention sinks (gpt-oss): one logit per query head, or one for all (flash kernels)"},
      {"bias", "KIND", CLI_OPT_STR, &c->bias, 0, 0, NULL,
       "a bias tensor, checked by --verify: random (f32 [B][H][Nq][Nk], one entry in 8 -inf), "
       "random-bool ([Nq][Nk] shared by every batch entry and head, 3 in 4 visible), FILE "
       "(little-endian float32 values of [B][H][Nq][Nk], or [Nq][Nk] for all; -inf hides) or "
       "bool:FILE (bytes, non-zero = visible)"},
      {"kv-dtype", NULL, CLI_OPT_CHOICE, &c->kv_dtype, 0, 0, cli_kv_dtype_names,
       "K/V cache storage: same (the dtype), int8, fp8e4m3 or fp8e5m2 codes with float scales, "
       "filled by clattn_kv_append_ex from random source values (decode and portable flash "
       "kernels; --verify "
       "checks against the dequantized cache and reports the error against the source)"},
      {"kv-scale", NULL, CLI_OPT_CHOICE, &c->kv_scale, 0, 0, cli_kv_scale_names,
       "scale granularity of a quantized cache: token (per token and KV head, computed on "
       "append), tensor, head or channel (absmax of the source / the code's largest value)"},
      {"page-order", NULL, CLI_OPT_CHOICE, &c->page_order, 0, 0, cli_page_order_names,
       "a paged cache's block tables: shuffled (pages of a sequence anywhere in the pool, the "
       "default) or sequential (in pool order: locality as a contiguous cache)"},
      {"no-mask-blocks", NULL, CLI_OPT_FLAG, &c->no_mask_blocks, 0, 1, NULL,
       "with --mask-mod: no block classes (clattn_plan_update_mask_blocks); the kernels evaluate "
       "the mask on every tile"},
      {"reps", "R", CLI_OPT_INT, &c->reps, 1, 0, NULL, "timed runs per problem"},
      {"warmup", "W", CLI_OPT_INT, &c->warmup, 0, 0, NULL, "untimed runs first (default 1)"},
      {"seed", "S", CLI_OPT_U64, &c->seed, 0, 0, NULL, "seed of the random inputs (default 42)"},
      {"verify", NULL, CLI_OPT_FLAG, &c->verify, 0, 1, NULL,
       "check against the float64 reference (every row when B*H*Nq*Nk*d <= 2^31, else 64 rows)"},
      {"no-verify", NULL, CLI_OPT_FLAG, &c->verify, 0, 0, NULL, "skip the check"},
      {"feature", "SPEC", CLI_OPT_STR, &c->feature, 0, 0, NULL,
       "--algo linear's feature map: elu (elu+1), relu, or favor[:M[,SEED]] (FAVOR+ with M "
       "random features, default head_dim, drawn from SEED, default 0) (default elu)"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

void cli_problem_from_common(const cli_common *c, cli_problem *p) {
  clattn_attention_desc_init(&p->desc);
  p->desc.batch = c->batch;
  p->desc.heads = c->heads;
  p->desc.kv_heads = c->kv_heads;
  p->desc.head_dim = c->head_dim;
  p->desc.dtype = (clattn_dtype)c->dtype;
  p->desc.layout = (clattn_layout)c->layout;
  p->desc.scale = c->scale;
  p->desc.softcap = c->softcap;
  p->desc.alibi_max_bias = c->alibi;
  p->desc.kv_dtype = (clattn_kv_dtype)c->kv_dtype;
  p->desc.kv_scale = (clattn_kv_scale)c->kv_scale;
  p->reps = c->reps;
  p->warmup = c->warmup;
  p->seed = c->seed;
  p->verify = c->verify > 0;
  p->lse = false;
  p->compare_softmax = false;
  p->reserve_bytes = 0;
  p->no_mask_blocks = c->no_mask_blocks != 0;
  p->profile = false;
  p->backward = false;
  p->config = NULL;
}

int cli_parse_feature(const char *spec, clattn_attention_desc *d) {
  const char *why = NULL;
  d->num_features = 0;
  d->feature_seed = 0;
  if (!strcmp(spec, "elu") || !strcmp(spec, "elu1") || !strcmp(spec, "elu+1")) {
    d->feature_map = CLATTN_FEATURE_ELU1;
  } else if (!strcmp(spec, "relu")) {
    d->feature_map = CLATTN_FEATURE_RELU;
  } else if (!strncmp(spec, "favor", 5) && (spec[5] == 0 || spec[5] == ':')) {
    d->feature_map = CLATTN_FEATURE_FAVOR;
    if (spec[5] == ':') {
      char *end = (char *)spec + 6;
      errno = 0;
      long m = isdigit((unsigned char)spec[6]) ? strtol(spec + 6, &end, 10) : 0;
      if (end == spec + 6 || errno || m < 1 || m > 256)
        why = "M must be an integer in 1..256";
      else
        d->num_features = (int)m;
      if (!why && *end == ',') {
        const char *sp = end + 1;
        errno = 0;
        d->feature_seed = isdigit((unsigned char)*sp) ? strtoull(sp, &end, 0) : 0;
        if (end == sp || !isdigit((unsigned char)*sp))
          why = "SEED must be an unsigned integer (decimal or 0x hex)";
        else if (errno == ERANGE)
          why = "SEED out of range (at most 18446744073709551615)";
      }
      if (!why && *end) why = "expected favor, favor:M or favor:M,SEED";
    }
  } else {
    why = "expected elu, relu, favor, favor:M or favor:M,SEED";
  }
  if (!why) return 0;
  fprintf(stderr, "clattn: --feature %s: %s\n", spec, why);
  return CLI_EXIT_USAGE;
}

static char *user_text[2];
static float *sink_values;
/* --bias FILE / bool:FILE: the file's bytes (float32 or one-byte values) */
static unsigned char *bias_file;
static size_t bias_file_bytes;
static void free_user_text(void) {
  free(user_text[0]);
  free(user_text[1]);
  free(sink_values);
  free(bias_file);
}

/* Reads path into *out (malloc'ed, *n bytes, a NUL after them), stopping
 * once more than `limit` bytes are in; false with a message. */
static bool read_file(const char *opt, const char *path, size_t limit, unsigned char **out,
                      size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "clattn: --%s %s: cannot open: %s\n", opt, path, strerror(errno));
    return false;
  }
  size_t cap = 4096, len = 0;
  unsigned char *t = malloc(cap + 1);
  while (t) {
    len += fread(t + len, 1, cap - len, f);
    if (len < cap || len > limit) break;
    unsigned char *t2 = cap > ((size_t)1 << 34) ? NULL : realloc(t, 2 * cap + 1);
    if (!t2) {
      free(t);
      t = NULL;
      break;
    }
    t = t2;
    cap *= 2;
  }
  fclose(f);
  if (!t) {
    fprintf(stderr, "clattn: --%s %s: out of host memory\n", opt, path);
    return false;
  }
  t[len] = 0;
  *out = t;
  *n = len;
  return true;
}

/* --sinks: H values, or one for every head. */
static int parse_sinks(const char *spec, clattn_attention_desc *d) {
  free(sink_values);
  sink_values = malloc((size_t)d->heads * sizeof(float));
  if (!sink_values) {
    fprintf(stderr, "clattn: out of host memory for --sinks\n");
    return CLI_EXIT_USAGE;
  }
  int n = 0;
  for (const char *p = spec; *p;) {
    char *end;
    errno = 0;
    const double x = strtod(p, &end);
    if (end == p || errno || n == d->heads || (*end && *end != ',')) {
      fprintf(stderr,
              "clattn: --sinks %s: give one number, or %d (one per head), comma-separated\n", spec,
              d->heads);
      return CLI_EXIT_USAGE;
    }
    sink_values[n++] = (float)x;
    p = *end ? end + 1 : end;
  }
  if (n != 1 && n != d->heads) {
    fprintf(stderr, "clattn: --sinks %s: %d values for %d heads\n", spec, n, d->heads);
    return CLI_EXIT_USAGE;
  }
  for (int h = n; h < d->heads; h++)
    sink_values[h] = sink_values[0];
  d->sinks = sink_values;
  return 0;
}

int cli_load_user_fns(const cli_common *c, clattn_attention_desc *d, bool *verify) {
  const char *files[2] = {c->score_mod_file, c->mask_mod_file};
  static bool registered = false;
  if ((c->sinks || c->bias || files[0] || files[1]) && !registered) atexit(free_user_text);
  registered = registered || c->sinks || c->bias || files[0] || files[1];
  if (c->sinks) {
    const int rc = parse_sinks(c->sinks, d);
    if (rc) return rc;
  }
  if (c->bias) {
    if (!strcmp(c->bias, "random"))
      d->bias_type = CLATTN_BIAS_F32;
    else if (!strcmp(c->bias, "random-bool"))
      d->bias_type = CLATTN_BIAS_BOOL;
    else { /* FILE (float32) or bool:FILE (bytes, non-zero = visible) */
      const bool bmask = !strncmp(c->bias, "bool:", 5);
      free(bias_file);
      bias_file = NULL;
      if (!read_file("bias", bmask ? c->bias + 5 : c->bias, SIZE_MAX, &bias_file, &bias_file_bytes))
        return CLI_EXIT_USAGE;
      d->bias_type = bmask ? CLATTN_BIAS_BOOL : CLATTN_BIAS_F32;
      if (!bmask && bias_file_bytes % 4) {
        fprintf(stderr, "clattn: --bias %s: %zu bytes, not a whole number of float32 values\n",
                c->bias, bias_file_bytes);
        return CLI_EXIT_USAGE;
      }
    }
    cli_bias_strides(d);
  }
  if (!files[0] && !files[1]) return 0;
  for (int i = 0; i < 2; i++) {
    if (!files[i]) continue;
    unsigned char *t;
    size_t n; /* the library refuses more than 65536 bytes */
    if (!read_file(i ? "mask-mod" : "score-mod", files[i], 65536, &t, &n)) return CLI_EXIT_USAGE;
    free(user_text[i]);
    user_text[i] = (char *)t;
  }
  d->score_mod = user_text[0];
  d->mask_mod = user_text[1];
  if (c->verify > 0) {
    fprintf(stderr, "clattn: --verify with user functions: the float64 reference needs C twins "
                    "of them (clattn_reference_attention_ex); run without --verify\n");
    return CLI_EXIT_USAGE;
  }
  *verify = false;
  return 0;
}

void cli_bias_strides(clattn_attention_desc *d) {
  if (bias_file) { /* the file's size says: [B][H][Nq][Nk], or one [Nq][Nk] for all */
    const size_t n = bias_file_bytes / (d->bias_type == CLATTN_BIAS_F32 ? 4 : 1);
    const size_t full = (size_t)d->batch * d->heads * d->seq_q * d->seq_kv;
    d->bias_strides = n == full && n != (size_t)d->seq_q * d->seq_kv
                          ? (clattn_strides){(int64_t)d->heads * d->seq_q * d->seq_kv,
                                             (int64_t)d->seq_q * d->seq_kv, d->seq_kv, 1}
                          : (clattn_strides){0, 0, d->seq_kv, 1};
    return;
  }
  if (d->bias_type == CLATTN_BIAS_F32)
    d->bias_strides = (clattn_strides){(int64_t)d->heads * d->seq_q * d->seq_kv,
                                       (int64_t)d->seq_q * d->seq_kv, d->seq_kv, 1};
  else if (d->bias_type == CLATTN_BIAS_BOOL)
    d->bias_strides = (clattn_strides){0, 0, d->seq_kv, 1};
}

int cli_check_desc(const clattn_attention_desc *d) {
  const char *why = NULL;
  if (d->head_dim < 1 || d->head_dim > 256)
    why = "--head-dim must be in 1..256";
  else if (d->kv_heads > d->heads || (d->kv_heads && d->heads % d->kv_heads))
    why = "--kv-heads must divide --heads";
  else if (d->seq_q < 1 || d->seq_kv < 1)
    why = "sequence lengths must be >= 1";
  if (!why) return 0;
  fprintf(stderr, "clattn: %s\n", why);
  return CLI_EXIT_USAGE;
}

double cli_flops(const clattn_attention_desc *d) {
  if (d->algo == CLATTN_ALGO_LINEAR) {
    /* The state φ(K)ᵀ[V 1] and the output φ(Q)·state: 2·F·(d+1) per key and
     * per query, F features (the causal in-chunk part and the features
     * themselves are not counted). */
    const double f = d->feature_map == CLATTN_FEATURE_FAVOR && d->num_features > 0 ? d->num_features
                                                                                   : d->head_dim;
    const double hk = d->kv_heads ? d->kv_heads : d->heads;
    return 2.0 * f * (d->head_dim + 1) * d->batch *
           (hk * (double)d->seq_kv + (double)d->heads * d->seq_q);
  }
  const double nq = d->seq_q, nk = d->seq_kv;
  double pairs = nq * nk;
  if (d->mask == CLATTN_MASK_CAUSAL || d->mask == CLATTN_MASK_CAUSAL_TOP_LEFT) {
    if (d->seq_q == d->seq_kv) {
      pairs = nq * nk / 2; /* the usual convention for the square causal case */
    } else {
      /* query i sees keys j <= i + off (Nk - Nq bottom-right, 0 top-left): count exactly */
      const int64_t off = d->mask == CLATTN_MASK_CAUSAL ? (int64_t)d->seq_kv - d->seq_q : 0;
      pairs = 0;
      for (int64_t i = 0; i < d->seq_q; i++) {
        int64_t vis = i + off + 1;
        pairs += (double)(vis < 0 ? 0 : vis > d->seq_kv ? d->seq_kv : vis);
      }
    }
  }
  return 4.0 * d->batch * d->heads * pairs * d->head_dim;
}

/* a·b·c·e, saturated at UINT64_MAX (no device has that much memory). */
static uint64_t sat_mul4(uint64_t a, uint64_t b, uint64_t c, uint64_t e) {
  uint64_t x;
  if (!cli_mul_u64(a, b, &x) || !cli_mul_u64(x, c, &x) || !cli_mul_u64(x, e, &x)) return UINT64_MAX;
  return x;
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
  uint64_t x;
  return cli_add_u64(a, b, &x) ? x : UINT64_MAX;
}

void cli_buffer_bytes(const clattn_attention_desc *d, uint64_t bytes[4]) {
  const uint64_t es = cli_dtype_size(d->dtype);
  const uint64_t hk = d->kv_heads ? (uint64_t)d->kv_heads : (uint64_t)d->heads;
  const uint64_t bd = (uint64_t)d->batch * (uint64_t)d->head_dim * es; /* < 2^42 */
  bytes[0] = bytes[3] = sat_mul4(bd, (uint64_t)d->heads, (uint64_t)d->seq_q, 1);
  bytes[1] = bytes[2] = sat_mul4(bd, hk, (uint64_t)d->seq_kv, 1);
}

uint64_t cli_io_bytes(const clattn_attention_desc *d, bool lse) {
  uint64_t b[4];
  cli_buffer_bytes(d, b);
  uint64_t n = sat_add(sat_add(b[0], b[1]), sat_add(b[2], b[3]));
  if (lse)
    n = sat_add(
        n, sat_mul4((uint64_t)d->batch, (uint64_t)d->heads, (uint64_t)d->seq_q, sizeof(float)));
  return n;
}

#define MAX_RESERVE_CHUNKS 1024

/* Everything one point allocates; released by release_point(). */
typedef struct point {
  clattn_plan plan;
  cl_mem buf[5]; /* q, k, v, o, lse */
  cl_mem bias;   /* --bias */
  void *host_bias;
  void *host[4]; /* q, k, v, o */
  float *lse;
  double *times;
  cl_mem reserve[MAX_RESERVE_CHUNKS]; /* --reserve ballast */
} point;

static void release_point(point *pt) {
  clattn_plan_release(pt->plan);
  for (int i = 0; i < MAX_RESERVE_CHUNKS; i++)
    if (pt->reserve[i]) clReleaseMemObject(pt->reserve[i]);
  for (int i = 0; i < 5; i++)
    if (pt->buf[i]) clReleaseMemObject(pt->buf[i]);
  if (pt->bias) clReleaseMemObject(pt->bias);
  free(pt->host_bias);
  for (int i = 0; i < 4; i++)
    free(pt->host[i]);
  free(pt->lse);
  free(pt->times);
}

static clattn_status fail(cli_result *r, clattn_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static clattn_status fail(cli_result *r, clattn_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->error, sizeof r->error, fmt, ap);
  va_end(ap);
  r->status = st;
  r->oom = st == CLATTN_ERROR_OUT_OF_MEMORY;
  return st;
}

static clattn_status cl_fail(cli_result *r, const char *call, cl_int err, const char *what) {
  bool oom = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
             err == CL_INVALID_BUFFER_SIZE;
  return fail(r, oom ? CLATTN_ERROR_OUT_OF_MEMORY : CLATTN_ERROR_OPENCL,
              "%s failed with OpenCL error %d (%s)", call, (int)err, what);
}

clattn_context cli_open_context(const char *device) {
  clattn_context ctx = NULL;
  clattn_status st = clattn_context_create(device, &ctx);
  if (st != CLATTN_SUCCESS)
    cli_print_error("cannot create a context", st, clattn_last_create_error());
  return ctx;
}

bool cli_bytes_fit(clattn_context ctx, uint64_t total, uint64_t largest, uint64_t host,
                   char *detail, size_t cap) {
  cl_ulong global = 0, max_alloc = 0;
  cl_device_id dev = clattn_context_device(ctx);
  if (clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL) != CL_SUCCESS ||
      clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL) !=
          CL_SUCCESS)
    return true; /* unknown: let the allocations themselves report */
  /* The inputs are made on the host and uploaded: on a device that shares
   * the host's memory (CPUs) those copies take the same memory. */
  cl_device_type type = 0;
  cl_bool unified = CL_FALSE;
  clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  const bool shared = (type & CL_DEVICE_TYPE_CPU) || unified;
  if (shared) total = sat_add(total, host);
  if (largest <= max_alloc && total <= global) return true;
  if (detail)
    snprintf(detail, cap,
             "the q, k, v, o buffers%s need %llu bytes (largest %llu) but the device has %llu "
             "bytes (at most %llu in one buffer)",
             shared ? " and the host copies of q, k, v (the device shares the host's memory)" : "",
             (unsigned long long)total, (unsigned long long)largest, (unsigned long long)global,
             (unsigned long long)max_alloc);
  return false;
}

bool cli_buffers_fit(clattn_context ctx, const clattn_attention_desc *d, bool lse, char *detail,
                     size_t cap) {
  uint64_t b[4];
  cli_buffer_bytes(d, b);
  const uint64_t largest = b[0] > b[1] ? b[0] : b[1];
  return cli_bytes_fit(ctx, cli_io_bytes(d, lse), largest, sat_add(sat_add(b[0], b[1]), b[2]),
                       detail, cap);
}

/* Allocates p->reserve_bytes of device memory in chunks of at most the
 * largest allocation (and 4 GiB) and fills them, so that the memory is really
 * taken before the plan and the buffers are made. */
static clattn_status reserve_memory(clattn_context ctx, const cli_problem *p, point *pt,
                                    cli_result *r) {
  if (!p->reserve_bytes) return CLATTN_SUCCESS;
  cl_ulong max_alloc = 0;
  clGetDeviceInfo(clattn_context_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                  &max_alloc, NULL);
  cl_ulong global = 0;
  clGetDeviceInfo(clattn_context_device(ctx), CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global,
                  NULL);
  if (global && p->reserve_bytes > global)
    return fail(r, CLATTN_ERROR_OUT_OF_MEMORY,
                "--reserve %llu bytes is more than the device's %llu bytes of memory",
                (unsigned long long)p->reserve_bytes, (unsigned long long)global);
  uint64_t chunk = max_alloc ? max_alloc : ((uint64_t)1 << 30);
  if (chunk > ((uint64_t)4 << 30)) chunk = (uint64_t)4 << 30;
  chunk &= ~(uint64_t)255;
  /* Chunk count without overflow (reserve_bytes + chunk - 1 wraps). */
  if (p->reserve_bytes / chunk + (p->reserve_bytes % chunk != 0) > MAX_RESERVE_CHUNKS)
    return fail(r, CLATTN_ERROR_OUT_OF_MEMORY,
                "--reserve %llu bytes needs more than %d buffers of %llu bytes",
                (unsigned long long)p->reserve_bytes, MAX_RESERVE_CHUNKS,
                (unsigned long long)chunk);
  cl_context cl = clattn_context_cl_context(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  uint64_t left = p->reserve_bytes;
  const cl_uint zero = 0;
  for (int i = 0; left > 0; i++) {
    size_t bytes = (size_t)(left < chunk ? left : chunk);
    bytes = (bytes + 3) & ~(size_t)3;
    cl_int err;
    pt->reserve[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!pt->reserve[i]) return cl_fail(r, "clCreateBuffer", err, "--reserve");
    err = clEnqueueFillBuffer(queue, pt->reserve[i], &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS) err = clFinish(queue);
    if (err != CL_SUCCESS) return cl_fail(r, "clEnqueueFillBuffer", err, "--reserve");
    left -= bytes < left ? bytes : left;
  }
  return CLATTN_SUCCESS;
}

/* Creates the device buffers, uploads random inputs and NaN-poisons the outputs. */
static clattn_status setup_buffers(clattn_context ctx, const cli_problem *p, point *pt,
                                   cli_result *r) {
  const clattn_attention_desc *d = &p->desc;
  const size_t es = cli_dtype_size(d->dtype);
  size_t elems[4];
  clattn_status st = clattn_attention_desc_strides(d, NULL, NULL, NULL, NULL, elems);
  if (st != CLATTN_SUCCESS) return fail(r, st, "invalid problem description");
  cl_context cl = clattn_context_cl_context(ctx);
  cl_command_queue queue = clattn_context_queue(ctx);
  static const char *names[5] = {"q", "k", "v", "o", "lse"};
  uint64_t seed_state = p->seed;
  for (int i = 0; i < 3; i++) {
    pt->host[i] = malloc(elems[i] * es);
    if (!pt->host[i])
      return fail(r, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes of host memory for %s",
                  elems[i] * es, names[i]);
    cli_fill_random(pt->host[i], elems[i], d->dtype, cli_splitmix64(&seed_state));
  }
  size_t lse_bytes = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q * sizeof(float);
  cl_int err;
  for (int i = 0; i < 5; i++) {
    if (i == 4 && !p->lse) break;
    size_t bytes = i < 4 ? elems[i] * es : lse_bytes;
    pt->buf[i] =
        clCreateBuffer(cl, i < 3 ? CL_MEM_READ_ONLY : CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!pt->buf[i]) return cl_fail(r, "clCreateBuffer", err, names[i]);
    if (i < 3) {
      err = clEnqueueWriteBuffer(queue, pt->buf[i], CL_TRUE, 0, bytes, pt->host[i], 0, NULL, NULL);
      if (err != CL_SUCCESS) return cl_fail(r, "clEnqueueWriteBuffer", err, names[i]);
    } else {
      unsigned char pattern[4];
      cli_nan_pattern(i == 3 ? d->dtype : CLATTN_DTYPE_F32, pattern);
      size_t psize = i == 3 ? es : sizeof(float);
      err = clEnqueueFillBuffer(queue, pt->buf[i], pattern, psize, 0, bytes, 0, NULL, NULL);
      if (err != CL_SUCCESS) return cl_fail(r, "clEnqueueFillBuffer", err, names[i]);
    }
  }
  if (d->bias_type != CLATTN_BIAS_NONE) { /* --bias: drawn from the seed, or the file */
    const bool f = d->bias_type == CLATTN_BIAS_F32;
    const size_t n = d->bias_strides.batch ? (size_t)d->batch * d->heads * d->seq_q * d->seq_kv
                                           : (size_t)d->seq_q * d->seq_kv;
    const size_t bytes = n * (f ? sizeof(float) : 1);
    if (bias_file && bias_file_bytes != bytes)
      return fail(r, CLATTN_ERROR_INVALID_ARGUMENT,
                  "--bias file: %zu bytes, want %zu (%s values of [%d][%d][%d][%d] or [%d][%d])",
                  bias_file_bytes, bytes, f ? "float32" : "one-byte", d->batch, d->heads, d->seq_q,
                  d->seq_kv, d->seq_q, d->seq_kv);
    if (n > ((size_t)1 << 28))
      return fail(r, CLATTN_ERROR_UNSUPPORTED, "--bias: %zu elements, more than the CLI draws", n);
    pt->host_bias = malloc(bytes);
    if (!pt->host_bias)
      return fail(r, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate %zu bytes for the bias", bytes);
    uint64_t bs = cli_splitmix64(&seed_state);
    if (bias_file) memcpy(pt->host_bias, bias_file, bytes);
    for (size_t e = 0; e < n && !bias_file; e++) {
      const uint64_t x = cli_splitmix64(&bs);
      if (f)
        ((float *)pt->host_bias)[e] =
            (x & 7) == 0 ? -INFINITY : (float)((double)(x >> 11) * 0x1.0p-53 * 4.0 - 2.0);
      else
        ((unsigned char *)pt->host_bias)[e] = (x & 3) != 0;
    }
    pt->bias =
        clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, pt->host_bias, &err);
    if (!pt->bias) return cl_fail(r, "clCreateBuffer", err, "bias");
  }
  err = clFinish(queue);
  if (err != CL_SUCCESS) return cl_fail(r, "clFinish", err, "after uploads");
  if (!p->verify && !p->compare_softmax) /* the host copies are only needed by the reference */
    for (int i = 0; i < 3; i++) {
      free(pt->host[i]);
      pt->host[i] = NULL;
    }
  return CLATTN_SUCCESS;
}

static clattn_status read_back_and_verify(clattn_context ctx, const cli_problem *p, point *pt,
                                          cli_result *r) {
  const clattn_attention_desc *d = clattn_plan_desc(pt->plan);
  size_t elems[4];
  clattn_status st = clattn_attention_desc_strides(d, NULL, NULL, NULL, NULL, elems);
  if (st != CLATTN_SUCCESS) return fail(r, st, "invalid problem description");
  const size_t obytes = elems[3] * cli_dtype_size(d->dtype);
  const size_t lbytes = (size_t)d->batch * (size_t)d->heads * (size_t)d->seq_q * sizeof(float);
  pt->host[3] = malloc(obytes);
  if (p->lse) pt->lse = malloc(lbytes);
  if (!pt->host[3] || (p->lse && !pt->lse))
    return fail(r, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate host memory for the output");
  cl_command_queue queue = clattn_context_queue(ctx);
  cl_int err =
      clEnqueueReadBuffer(queue, pt->buf[3], CL_TRUE, 0, obytes, pt->host[3], 0, NULL, NULL);
  if (err == CL_SUCCESS && p->lse)
    err = clEnqueueReadBuffer(queue, pt->buf[4], CL_TRUE, 0, lbytes, pt->lse, 0, NULL, NULL);
  if (err != CL_SUCCESS) return cl_fail(r, "clEnqueueReadBuffer", err, "output");
  if (p->verify) {
    st = cli_verify(d, pt->host[0], pt->host[1], pt->host[2], pt->host[3], pt->lse, pt->host_bias,
                    r);
    if (st != CLATTN_SUCCESS)
      return fail(r, st, "the host reference failed (%s)", clattn_status_string(st));
  }
  if (p->compare_softmax) {
    st = cli_compare_softmax(d, pt->host[0], pt->host[1], pt->host[2], pt->host[3], r);
    if (st != CLATTN_SUCCESS)
      return fail(r, st, "the softmax reference failed (%s)", clattn_status_string(st));
  }
  return CLATTN_SUCCESS;
}

clattn_status cli_run_point(clattn_context ctx, const cli_problem *p, cli_result *r) {
  if (p->backward) return cli_run_backward_point(ctx, p, r);
  memset(r, 0, sizeof *r);
  r->median_ms = r->min_ms = r->max_ms = r->tflops = r->gbps = NAN;
  r->max_abs_err = r->rel_err = r->lse_max_abs_err = NAN;
  r->approx_rel_err = r->approx_cos = NAN;
  r->tolerance = cli_tolerance(p->desc.dtype);
  r->timing = "";
  r->algo = p->desc.algo;
  clattn_attention_desc dd = p->desc;
  cli_bias_strides(&dd); /* --bias: for this point's sizes */
  const clattn_attention_desc *d = &dd;
  r->flops = cli_flops(d);
  r->io_bytes = cli_io_bytes(d, p->lse);
  r->mem_bytes = r->io_bytes; /* the q, k, v, o (and lse) buffers; the workspace is added later */

  point pt;
  memset(&pt, 0, sizeof pt);
  if (!cli_buffers_fit(ctx, d, p->lse, r->error, sizeof r->error)) {
    r->status = CLATTN_ERROR_OUT_OF_MEMORY;
    r->oom = true;
    r->needed_bytes = sat_add(r->mem_bytes, p->reserve_bytes);
    return r->status;
  }
  if (reserve_memory(ctx, p, &pt, r) != CLATTN_SUCCESS) {
    if (r->oom) r->needed_bytes = sat_add(r->mem_bytes, p->reserve_bytes);
    release_point(&pt);
    return r->status;
  }

  clattn_status st =
      p->config ? clattn_plan_create_with_config(ctx, d, CLATTN_PLAN_DEFAULT, p->config, &pt.plan)
                : clattn_plan_create(ctx, d, CLATTN_PLAN_DEFAULT, &pt.plan);
  if (st != CLATTN_SUCCESS) {
    fail(r, st, "%s", clattn_context_last_error(ctx));
    if (r->oom) {
      /* What the call needed: the buffers plus the workspace the plan sizes
       * (clattn_plan_estimate, which also sizes what a family then refuses),
       * else the bytes the message names. */
      size_t ws = 0;
      const clattn_status est = clattn_plan_estimate(ctx, d, &ws);
      if (est == CLATTN_SUCCESS || ws > 0)
        r->needed_bytes = r->mem_bytes + ws;
      else
        r->needed_bytes = clattn_context_last_needed_bytes(ctx);
      if (!r->needed_bytes) r->needed_bytes = r->mem_bytes;
      r->needed_bytes = sat_add(r->needed_bytes, p->reserve_bytes);
    }
    release_point(&pt);
    return st;
  }
  /* A user mask (the CLI passes no user buffer): its block classes once, as
   * a model would per batch (clattn_plan_update_mask_blocks). */
  if (d->mask_mod && !d->ragged && !p->no_mask_blocks &&
      (st = clattn_plan_update_mask_blocks(pt.plan, NULL, 0, NULL, NULL)) != CLATTN_SUCCESS) {
    fail(r, st, "%s", clattn_context_last_error(ctx));
    release_point(&pt);
    return st;
  }
  snprintf(r->describe, sizeof r->describe, "%s", clattn_plan_describe(pt.plan));
  r->algo = clattn_plan_desc(pt.plan)->algo;
  r->workspace_bytes = clattn_plan_workspace_size(pt.plan);
  /* The plan's own count (its family's: attended pairs, or the linear
   * family's products); cli_flops() only stands in before a plan exists. */
  r->flops = clattn_plan_flops(pt.plan);
  r->mem_bytes += r->workspace_bytes;

  if (setup_buffers(ctx, p, &pt, r) != CLATTN_SUCCESS ||
      !(pt.times = malloc((size_t)p->reps * sizeof *pt.times))) {
    if (r->status == CLATTN_SUCCESS)
      fail(r, CLATTN_ERROR_OUT_OF_MEMORY, "cannot allocate host memory for the timings");
    if (r->oom) r->needed_bytes = sat_add(r->mem_bytes, p->reserve_bytes);
    release_point(&pt);
    return r->status;
  }

  char msg[sizeof r->error];
  st = cli_time_plan(ctx, pt.plan, pt.buf[0], pt.buf[1], pt.buf[2], pt.buf[3], pt.buf[4], pt.bias,
                     p->warmup, p->reps, pt.times, &r->timing, msg, sizeof msg);
  if (st != CLATTN_SUCCESS) {
    fail(r, st, "%s", msg);
    if (r->oom) r->needed_bytes = sat_add(r->mem_bytes, p->reserve_bytes);
    release_point(&pt);
    return st;
  }
  cli_stats(pt.times, p->reps, &r->median_ms, &r->min_ms, &r->max_ms);
  if (p->profile) {
    int n = 0;
    const clattn_exec_args pa = {
        .q = pt.buf[0], .k = pt.buf[1], .v = pt.buf[2], .o = pt.buf[3], .bias = pt.bias};
    if (clattn_plan_profile_ex(pt.plan, &pa, p->reps, 8, r->kernel_names, r->kernel_ms, &n) !=
        CLATTN_SUCCESS) {
      fail(r, CLATTN_ERROR_OPENCL, "per-kernel profile: %s", clattn_context_last_error(ctx));
      release_point(&pt);
      return r->status;
    }
    r->nkernels = n;
  }
  if (r->median_ms > 0) {
    r->tflops = r->flops / (r->median_ms * 1e-3) / 1e12;
    r->gbps = (double)r->io_bytes / (r->median_ms * 1e-3) / 1e9;
  }

  if (p->verify || p->compare_softmax) read_back_and_verify(ctx, p, &pt, r);
  release_point(&pt);
  return r->status;
}
