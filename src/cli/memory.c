/* memory.c — `clattn memory`: attention memory from the library's sizing, longest context that
 * fits. */
#include "cli.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_opts {
  const char *device, *seqs;
  int batch, heads, kv_heads, head_dim, dtype, mask, layers, json, check;
  double params, param_bytes;
  uint64_t memory_bytes, max_alloc_bytes;
} mem_opts;

static const char *const mem_mask_names[] = {"none", "causal", NULL};

static cli_opt_table mem_table(mem_opts *o) {
  static cli_opt t[20];
  const cli_opt opts[] = {
      {"device", "SEL", CLI_OPT_STR, &o->device, 0, 0, NULL,
       "device whose memory is the budget and whose plans are sized (default $CLATTN_DEVICE, "
       "else GPU, else CPU)"},
      {"seq", "LIST", CLI_OPT_STR, &o->seqs, 0, 0, NULL,
       "sequence lengths of the table, Nq = Nk (default 2048,8192,32768,131072)"},
      {"batch", "B", CLI_OPT_INT, &o->batch, 1, 0, NULL, "batch (default 1)"},
      {"heads", "H", CLI_OPT_INT, &o->heads, 1, 0, NULL, "query heads per layer (default 32)"},
      {"kv-heads", "HK", CLI_OPT_INT, &o->kv_heads, 0, 0, NULL,
       "key/value heads per layer (default H; LLaMA-2-7B has no GQA)"},
      {"head-dim", "D", CLI_OPT_INT, &o->head_dim, 1, 0, NULL, "head dimension (default 128)"},
      {"dtype", NULL, CLI_OPT_CHOICE, &o->dtype, 0, 0, cli_dtype_names,
       "storage type of Q, K, V, O and of the KV cache (default f16)"},
      {"mask", NULL, CLI_OPT_CHOICE, &o->mask, 0, 0, mem_mask_names,
       "mask of the sized and checked problems (default causal: a decoder's prefill)"},
      {"layers", "L", CLI_OPT_INT, &o->layers, 1, 0, NULL, "layers of the stack (default 32)"},
      {"params", "P", CLI_OPT_DOUBLE, &o->params, 0, 0, NULL,
       "model parameters, held on the device (default 6.74e9)"},
      {"param-bytes", "BYTES", CLI_OPT_DOUBLE, &o->param_bytes, 0, 0, NULL,
       "bytes per parameter (default 2)"},
      {"memory-bytes", "BYTES", CLI_OPT_U64, &o->memory_bytes, 0, 0, NULL,
       "device memory budget (default: the device's global memory)"},
      {"max-alloc-bytes", "BYTES", CLI_OPT_U64, &o->max_alloc_bytes, 0, 0, NULL,
       "largest single buffer (default: the device's largest allocation)"},
      {"check", NULL, CLI_OPT_FLAG, &o->check, 0, 1, NULL,
       "run one layer's attention at each family's largest stack N on the device, with the "
       "rest of the stack (weights, the other layers' KV cache) allocated beside it, and verify "
       "it"},
      {"json", NULL, CLI_OPT_FLAG, &o->json, 0, 1, NULL, "print one JSON object"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

static void mem_defaults(mem_opts *o) {
  memset(o, 0, sizeof *o);
  o->seqs = "2048,8192,32768,131072";
  o->batch = 1;
  o->heads = 32;
  o->head_dim = 128;
  o->dtype = CLATTN_DTYPE_F16;
  o->mask = 1;
  o->layers = 32;
  o->params = 6.74e9;
  o->param_bytes = 2;
}

void cli_help_memory(FILE *f) {
  mem_opts o;
  mem_defaults(&o);
  cli_opt_table tables[1] = {mem_table(&o)};
  fprintf(f,
          "usage: clattn memory [options]\n\n"
          "Peak attention memory of the naive and flash families: Q, K, V, O plus the\n"
          "workspace the plan owns, sized by the library itself (clattn_plan_estimate: the\n"
          "plans' own sizing code, nothing compiled or allocated), at each --seq N.\n\n"
          "Then the largest N before out-of-memory, by binary search on that sizing:\n"
          "  - one attention layer alone: Q + K + V + O + workspace <= memory, each buffer\n"
          "    <= the largest allocation;\n"
          "  - a LLaMA-2-7B-like stack (defaults: 32 layers, 32 heads, d = 128, f16):\n"
          "    weights (params x param-bytes) + KV cache (layers x (K + V) of one layer,\n"
          "    = 2 x L x B x Hk x d x N x bytes) + one layer's Q, O and attention workspace\n"
          "    <= memory. Activations other than attention's, the runtime's own memory and\n"
          "    fragmentation are not counted.\n"
          "The naive family's limits that do not depend on memory (CLBlast's 32-bit indices:\n"
          "B x H x N^2 < 2^31 score elements) are reported apart from memory. A dtype the naive\n"
          "family does not implement is sized with f32 tensors for its workspace (the score\n"
          "matrix is f32 in every dtype), and said so.\n\n"
          "--check runs, for each family, one layer at its largest stack N with the rest\n"
          "of the stack held on the device (`clattn run --reserve`) and verifies the output.\n\n"
          "options:\n");
  cli_print_options(f, tables, 1);
  fprintf(f, "\nexit status: 0 ok, 1 a --check failed, 2 usage error, 3 library error.\n");
}

enum { FAM_FLASH, FAM_NAIVE, NFAM };
static const clattn_algo fam_algo[NFAM] = {CLATTN_ALGO_FLASH, CLATTN_ALGO_NAIVE};
static const char *const fam_name[NFAM] = {"flash", "naive"};

/* Everything the searches and the table need about one family. */
typedef struct fam_ctx {
  clattn_context ctx;
  const mem_opts *o;
  int fam;
  clattn_dtype ws_dtype; /* dtype the workspace is sized with (f32 fallback, see help) */
  char fallback[600];    /* why, when ws_dtype differs from the tensors' dtype */
  bool error;            /* an estimate failed other than by a family limit */
  char error_msg[700];
} fam_ctx;

/* Byte sizes of one layer's attention at N. */
typedef struct layer_sizes {
  uint64_t q, k, v, o, ws;
  clattn_status st; /* clattn_plan_estimate's status */
  char msg[600];    /* its message when not SUCCESS */
} layer_sizes;

static clattn_attention_desc layer_desc(const mem_opts *o, int n, clattn_dtype dt,
                                        clattn_algo algo) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = o->batch;
  d.heads = o->heads;
  d.kv_heads = o->kv_heads;
  d.head_dim = o->head_dim;
  d.seq_q = d.seq_kv = n;
  d.dtype = dt;
  d.mask = o->mask ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
  d.algo = algo;
  return d;
}

static void size_layer(fam_ctx *f, int n, layer_sizes *s) {
  memset(s, 0, sizeof *s);
  clattn_attention_desc d = layer_desc(f->o, n, (clattn_dtype)f->o->dtype, fam_algo[f->fam]);
  size_t elems[4];
  const uint64_t es = cli_dtype_size(d.dtype);
  if (clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, elems) == CLATTN_SUCCESS) {
    s->q = elems[0] * es;
    s->k = elems[1] * es;
    s->v = elems[2] * es;
    s->o = elems[3] * es;
  }
  d.dtype = f->ws_dtype;
  size_t ws = 0;
  s->st = clattn_plan_estimate(f->ctx, &d, &ws);
  s->ws = ws;
  if (s->st != CLATTN_SUCCESS)
    snprintf(s->msg, sizeof s->msg, "%s", clattn_context_last_error(f->ctx));
  /* UNSUPPORTED: a family limit; OUT_OF_MEMORY: sizes beyond the address
   * space (both just "does not fit"); anything else is a real failure. */
  if (s->st != CLATTN_SUCCESS && s->st != CLATTN_ERROR_UNSUPPORTED &&
      s->st != CLATTN_ERROR_OUT_OF_MEMORY && !f->error) {
    f->error = true;
    snprintf(f->error_msg, sizeof f->error_msg, "N=%d: %s: %.600s", n, clattn_status_string(s->st),
             s->msg);
  }
}

/* Whether the sizes are known (the family sized the problem, even if it then
 * refused it for a limit of its own). */
static bool sized(const layer_sizes *s) {
  return s->st == CLATTN_SUCCESS || (s->st == CLATTN_ERROR_UNSUPPORTED && s->ws > 0);
}

typedef struct budget {
  uint64_t memory, max_alloc;
  double weights; /* bytes */
} budget;

static uint64_t max_buffer(const layer_sizes *s) {
  uint64_t m = s->q;
  const uint64_t x[4] = {s->k, s->v, s->o, s->ws};
  for (int i = 0; i < 4; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

static uint64_t single_total(const layer_sizes *s) { return s->q + s->k + s->v + s->o + s->ws; }

/* Weights + every layer's K and V + this layer's Q, O and workspace (double:
 * weights are a float count). */
static double stack_total(const mem_opts *o, const budget *b, const layer_sizes *s) {
  return b->weights + (double)o->layers * (double)(s->k + s->v) + (double)(s->q + s->o + s->ws);
}

typedef enum pred_kind { PRED_SINGLE, PRED_STACK, PRED_FAMILY } pred_kind;

static bool pred(fam_ctx *f, const budget *b, pred_kind k, int n) {
  layer_sizes s;
  size_layer(f, n, &s);
  if (k == PRED_FAMILY) return s.st == CLATTN_SUCCESS;
  if (!sized(&s) || max_buffer(&s) > b->max_alloc) return false;
  if (k == PRED_SINGLE) return single_total(&s) <= b->memory;
  return stack_total(f->o, b, &s) <= (double)b->memory;
}

/* Largest n in 1..INT_MAX with pred true (pred decreasing in n); 0 if none. */
static int search(fam_ctx *f, const budget *b, pred_kind k) {
  if (!pred(f, b, k, 1)) return 0;
  int64_t lo = 1, hi = INT_MAX; /* pred(lo) true; answer in [lo, hi] */
  if (pred(f, b, k, INT_MAX)) return INT_MAX;
  hi = INT_MAX - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (pred(f, b, k, (int)mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return (int)lo;
}

/* Limits of one family. */
typedef struct fam_limits {
  int single_mem, family, stack_mem; /* largest N by memory alone / by the family's own limits */
  char family_msg[600];              /* the refusal at family + 1 */
} fam_limits;

static void find_limits(fam_ctx *f, const budget *b, fam_limits *l) {
  memset(l, 0, sizeof *l);
  l->single_mem = search(f, b, PRED_SINGLE);
  l->stack_mem = search(f, b, PRED_STACK);
  l->family = search(f, b, PRED_FAMILY);
  if (l->family < INT_MAX) {
    layer_sizes s;
    size_layer(f, l->family + 1, &s);
    snprintf(l->family_msg, sizeof l->family_msg, "%s", s.msg);
  }
}

static int imin(int a, int b) { return a < b ? a : b; }

static const char *fmt_n(int n, char *buf, size_t cap) {
  if (n == INT_MAX)
    snprintf(buf, cap, "none below 2^31");
  else
    snprintf(buf, cap, "%d", n);
  return buf;
}

/* The reserve of a --check run: the stack's bytes other than this layer's
 * attention (weights and the other layers' K, V). */
static uint64_t check_reserve(const mem_opts *o, const budget *b, const layer_sizes *s) {
  double r = b->weights + (double)(o->layers - 1) * (double)(s->k + s->v);
  return r > 0 ? (uint64_t)r : 0;
}

typedef struct check_result {
  bool ran, passed;
  int n;
  clattn_dtype dtype;
  uint64_t reserve;
  cli_result r;
  char command[512];
} check_result;

static void run_check(clattn_context ctx, fam_ctx *f, const budget *b, int n, check_result *c) {
  const mem_opts *o = f->o;
  memset(c, 0, sizeof *c);
  c->n = n;
  c->dtype = f->ws_dtype; /* the dtype the family runs (the tensors' unless it falls back) */
  if (n <= 0) return;
  layer_sizes s;
  size_layer(f, n, &s);
  c->reserve = check_reserve(o, b, &s);
  cli_problem p;
  memset(&p, 0, sizeof p);
  p.desc = layer_desc(o, n, c->dtype, fam_algo[f->fam]);
  p.reps = 1;
  p.warmup = 0;
  p.seed = 42;
  p.verify = true;
  p.reserve_bytes = c->reserve;
  char kv[32] = "";
  if (o->kv_heads) snprintf(kv, sizeof kv, " --kv-heads %d", o->kv_heads);
  snprintf(c->command, sizeof c->command,
           "clattn run --algo %s --dtype %s --batch %d --heads %d%s --head-dim %d --seq %d "
           "--mask %s --reserve %llu --reps 1 --warmup 0",
           fam_name[f->fam], cli_dtype_names[c->dtype], o->batch, o->heads, kv, o->head_dim, n,
           mem_mask_names[o->mask], (unsigned long long)c->reserve);
  if (!o->json) {
    printf("check %s N=%d: running `%s` ...\n", fam_name[f->fam], n, c->command);
    fflush(stdout);
  }
  cli_run_point(ctx, &p, &c->r);
  c->ran = true;
  c->passed = c->r.status == CLATTN_SUCCESS && c->r.verified && c->r.passed;
}

int cli_cmd_memory(int argc, char **argv) {
  mem_opts o;
  mem_defaults(&o);
  cli_opt_table tables[1] = {mem_table(&o)};
  int rc = cli_parse_options("memory", argc, argv, tables, 1);
  if (rc < 0) {
    cli_help_memory(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  int *seqs = NULL;
  const int nseqs = cli_parse_int_list("seq", o.seqs, &seqs);
  if (nseqs < 0) return CLI_EXIT_USAGE;
  {
    clattn_attention_desc d = layer_desc(&o, 1, (clattn_dtype)o.dtype, CLATTN_ALGO_FLASH);
    if ((rc = cli_check_desc(&d)) || !(o.params >= 0) || !(o.param_bytes >= 0)) {
      if (!rc) fprintf(stderr, "clattn: --params and --param-bytes must be >= 0\n");
      free(seqs);
      return CLI_EXIT_USAGE;
    }
  }

  clattn_context ctx = cli_open_context(o.device);
  if (!ctx) {
    free(seqs);
    return CLI_EXIT_LIBRARY;
  }
  cl_ulong global = 0, max_alloc = 0;
  clGetDeviceInfo(clattn_context_device(ctx), CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global,
                  NULL);
  clGetDeviceInfo(clattn_context_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                  &max_alloc, NULL);
  budget b;
  b.memory = o.memory_bytes ? o.memory_bytes : global;
  b.max_alloc = o.max_alloc_bytes ? o.max_alloc_bytes : max_alloc;
  b.weights = o.params * o.param_bytes;
  const char *device = clattn_context_device_name(ctx);

  fam_ctx fams[NFAM];
  for (int f = 0; f < NFAM; f++) {
    memset(&fams[f], 0, sizeof fams[f]);
    fams[f].ctx = ctx;
    fams[f].o = &o;
    fams[f].fam = f;
    fams[f].ws_dtype = (clattn_dtype)o.dtype;
    /* A dtype the family refuses even at N = 1: size it with f32 tensors. */
    layer_sizes s;
    size_layer(&fams[f], 1, &s);
    if (s.st == CLATTN_ERROR_UNSUPPORTED && o.dtype != CLATTN_DTYPE_F32) {
      fams[f].ws_dtype = CLATTN_DTYPE_F32;
      snprintf(fams[f].fallback, sizeof fams[f].fallback, "%.590s", s.msg);
    }
  }

  /* The table. */
  layer_sizes(*rows)[NFAM] = calloc((size_t)nseqs, sizeof *rows);
  if (!rows) {
    clattn_context_release(ctx);
    free(seqs);
    return CLI_EXIT_LIBRARY;
  }
  for (int i = 0; i < nseqs; i++)
    for (int f = 0; f < NFAM; f++)
      size_layer(&fams[f], seqs[i], &rows[i][f]);
  fam_limits lim[NFAM];
  for (int f = 0; f < NFAM; f++)
    find_limits(&fams[f], &b, &lim[f]);
  bool lib_error = false;
  for (int f = 0; f < NFAM; f++)
    if (fams[f].error) {
      cli_print_error(fam_name[f], CLATTN_ERROR_INTERNAL, fams[f].error_msg);
      lib_error = true;
    }

  layer_sizes one;
  size_layer(&fams[FAM_FLASH], 1, &one);
  const double kv_per_token = (double)o.layers * (double)(one.k + one.v);
  const int hk = o.kv_heads ? o.kv_heads : o.heads;

  if (!o.json) {
    char b1[64], b2[64], b3[64];
    printf("clattn %s memory on %s\n", clattn_version_string(), device);
    printf("memory budget: %s%s, largest buffer %s\n", cli_fmt_bytes(b.memory, true, b1, sizeof b1),
           o.memory_bytes ? " (--memory-bytes)" : " (the device's global memory)",
           cli_fmt_bytes(b.max_alloc, true, b2, sizeof b2));
    printf("one layer: B=%d H=%d Hk=%d d=%d %s, Nq = Nk = N, mask %s; workspace = "
           "clattn_plan_estimate (the plans' own sizing; nothing allocated)\n",
           o.batch, o.heads, hk, o.head_dim, cli_dtype_names[o.dtype], mem_mask_names[o.mask]);
    for (int f = 0; f < NFAM; f++)
      if (fams[f].fallback[0])
        printf("note: %s %s is refused by this build (\"%s\"): its workspace is sized for f32 "
               "tensors (the score matrix is f32 in every dtype; f32 copies of the inputs that a "
               "half-precision path adds are not counted); Q, K, V, O are %s\n",
               fam_name[f], cli_dtype_names[o.dtype], fams[f].fallback, cli_dtype_names[o.dtype]);
    printf("\npeak attention memory = Q + K + V + O + workspace\n");
    printf("%9s %14s %16s %14s %16s %14s %12s\n", "N", "Q+K+V+O", "naive workspace", "naive peak",
           "flash workspace", "flash peak", "naive/flash");
    bool any_refused = false;
    for (int i = 0; i < nseqs; i++) {
      const layer_sizes *nv = &rows[i][FAM_NAIVE], *fl = &rows[i][FAM_FLASH];
      const bool refused = nv->st != CLATTN_SUCCESS;
      any_refused |= refused;
      char c1[64], c2[64], c3[64], c4[64], c5[64];
      printf("%9d %14s %15s%s %14s %16s %14s %11.1fx\n", seqs[i],
             cli_fmt_bytes(fl->q + fl->k + fl->v + fl->o, false, c1, sizeof c1),
             cli_fmt_bytes(nv->ws, false, c2, sizeof c2), refused ? "*" : " ",
             cli_fmt_bytes(single_total(nv), false, c3, sizeof c3),
             cli_fmt_bytes(fl->ws, false, c4, sizeof c4),
             cli_fmt_bytes(single_total(fl), false, c5, sizeof c5),
             (double)single_total(nv) / (double)single_total(fl));
    }
    if (any_refused)
      for (int i = 0; i < nseqs; i++)
        if (rows[i][FAM_NAIVE].st != CLATTN_SUCCESS) {
          printf("* sized, then refused by the naive family whatever the memory: %s\n",
                 rows[i][FAM_NAIVE].msg);
          break;
        }

    char n1[32], n2[32], n3[32];
    printf("\nlargest N, one attention layer alone (Q + K + V + O + workspace <= %s, each buffer "
           "<= %s):\n",
           cli_fmt_bytes(b.memory, false, b1, sizeof b1),
           cli_fmt_bytes(b.max_alloc, false, b2, sizeof b2));
    for (int f = 0; f < NFAM; f++) {
      const int best = imin(lim[f].single_mem, lim[f].family);
      printf("  %s: N = %s", fam_name[f], fmt_n(best, n1, sizeof n1));
      if (lim[f].family < lim[f].single_mem)
        printf(" (the family's own limit; memory and the largest buffer would allow N = %s): %s\n",
               fmt_n(lim[f].single_mem, n2, sizeof n2), lim[f].family_msg);
      else
        printf(" (memory)\n");
    }
    printf("\nLLaMA-2-7B-like stack: %d layers x (H=%d, Hk=%d, d=%d), %s, batch %d\n", o.layers,
           o.heads, hk, o.head_dim, cli_dtype_names[o.dtype], o.batch);
    printf("  weights %.4g params x %g B = %s; KV cache %s per token (layers x (K + V)); plus one "
           "layer's Q, O and attention workspace\n",
           o.params, o.param_bytes, cli_fmt_bytes((uint64_t)b.weights, true, b1, sizeof b1),
           cli_fmt_bytes((uint64_t)kv_per_token, true, b3, sizeof b3));
    for (int f = 0; f < NFAM; f++) {
      const int best = imin(lim[f].stack_mem, lim[f].family);
      printf("  %s: N = %s", fam_name[f], fmt_n(best, n1, sizeof n1));
      if (best > 0) {
        layer_sizes s;
        size_layer(&fams[f], best, &s);
        printf(" (%s of %s)",
               cli_fmt_bytes((uint64_t)stack_total(&o, &b, &s), false, b2, sizeof b2),
               cli_fmt_bytes(b.memory, false, b3, sizeof b3));
      } else if (b.weights + kv_per_token > (double)b.memory) {
        printf(": the weights and one token's KV cache alone exceed the budget\n");
        continue;
      }
      if (lim[f].family < lim[f].stack_mem)
        printf(", the family's own limit; memory and the largest buffer would allow N = %s\n",
               fmt_n(lim[f].stack_mem, n3, sizeof n3));
      else
        printf(", memory\n");
    }
    printf("  not counted: activations other than attention's, the runtime's own device memory, "
           "fragmentation\n");
    fflush(stdout);
  }

  check_result checks[NFAM];
  memset(checks, 0, sizeof checks);
  bool check_failed = false;
  if (o.check) {
    if (!o.json) printf("\n");
    for (int f = 0; f < NFAM; f++) {
      const int n = imin(lim[f].stack_mem, lim[f].family);
      run_check(ctx, &fams[f], &b, n, &checks[f]);
      check_result *c = &checks[f];
      if (!c->ran) continue;
      check_failed |= !c->passed;
      if (o.json) continue;
      if (c->passed)
        printf("check %s N=%d: PASS, %.1f ms, rel err %.2g over %ld rows, device memory held %llu "
               "bytes (reserve %llu + buffers and workspace %llu)%s\n",
               fam_name[f], c->n, c->r.median_ms, c->r.rel_err, c->r.rows_checked,
               (unsigned long long)(c->reserve + c->r.mem_bytes), (unsigned long long)c->reserve,
               (unsigned long long)c->r.mem_bytes,
               o.memory_bytes && o.memory_bytes < global ? " (--memory-bytes is below the "
                                                           "device's memory: not a limit test)"
                                                         : "");
      else if (c->r.status != CLATTN_SUCCESS)
        printf("check %s N=%d: FAIL: %s%s: %s\n", fam_name[f], c->n,
               clattn_status_string(c->r.status), c->r.oom ? " (out of memory)" : "", c->r.error);
      else
        printf("check %s N=%d: FAIL: verification (rel err %.3g, tolerance %.0e)\n", fam_name[f],
               c->n, c->r.rel_err, c->r.tolerance);
    }
  }

  if (o.json) {
    printf("{\"device\": ");
    cli_json_string(stdout, device);
    printf(", \"memory_bytes\": %llu, \"max_alloc_bytes\": %llu, \"memory_from\": \"%s\"",
           (unsigned long long)b.memory, (unsigned long long)b.max_alloc,
           o.memory_bytes ? "--memory-bytes" : "device");
    printf(", \"layer\": {\"batch\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, "
           "\"dtype\": \"%s\", \"mask\": \"%s\"}",
           o.batch, o.heads, hk, o.head_dim, cli_dtype_names[o.dtype], mem_mask_names[o.mask]);
    printf(", \"stack\": {\"layers\": %d, \"params\": ", o.layers);
    cli_json_number(stdout, o.params);
    printf(", \"param_bytes\": ");
    cli_json_number(stdout, o.param_bytes);
    printf(", \"weights_bytes\": ");
    cli_json_number(stdout, b.weights);
    printf(", \"kv_cache_bytes_per_token\": ");
    cli_json_number(stdout, kv_per_token);
    printf("}, \"workspace_source\": \"clattn_plan_estimate\"");
    for (int f = 0; f < NFAM; f++) {
      printf(", \"%s_workspace_dtype\": \"%s\"", fam_name[f], cli_dtype_names[fams[f].ws_dtype]);
      if (fams[f].fallback[0]) {
        printf(", \"%s_dtype_note\": ", fam_name[f]);
        cli_json_string(stdout, fams[f].fallback);
      }
    }
    printf(", \"table\": [");
    for (int i = 0; i < nseqs; i++) {
      printf("%s\n  {\"seq\": %d, \"q_bytes\": %llu, \"k_bytes\": %llu, \"v_bytes\": %llu, "
             "\"o_bytes\": %llu",
             i ? "," : "", seqs[i], (unsigned long long)rows[i][0].q,
             (unsigned long long)rows[i][0].k, (unsigned long long)rows[i][0].v,
             (unsigned long long)rows[i][0].o);
      for (int f = 0; f < NFAM; f++) {
        const layer_sizes *s = &rows[i][f];
        printf(", \"%s\": {\"workspace_bytes\": %llu, \"peak_bytes\": %llu, \"status\": ",
               fam_name[f], (unsigned long long)s->ws, (unsigned long long)single_total(s));
        cli_json_string(stdout, s->st == CLATTN_SUCCESS ? "ok" : clattn_status_string(s->st));
        if (s->st != CLATTN_SUCCESS) {
          printf(", \"message\": ");
          cli_json_string(stdout, s->msg);
        }
        printf("}");
      }
      printf("}");
    }
    printf("\n]");
    for (int f = 0; f < NFAM; f++) {
      printf(", \"%s_limits\": {\"single_layer_memory\": %d, \"family\": %d, \"single_layer\": %d, "
             "\"stack_memory\": %d, \"stack\": %d",
             fam_name[f], lim[f].single_mem, lim[f].family, imin(lim[f].single_mem, lim[f].family),
             lim[f].stack_mem, imin(lim[f].stack_mem, lim[f].family));
      if (lim[f].family < INT_MAX) {
        printf(", \"family_limit_message\": ");
        cli_json_string(stdout, lim[f].family_msg);
      }
      if (checks[f].ran) {
        const check_result *c = &checks[f];
        printf(", \"check\": {\"seq\": %d, \"dtype\": \"%s\", \"reserve_bytes\": %llu, "
               "\"passed\": %s, \"command\": ",
               c->n, cli_dtype_names[c->dtype], (unsigned long long)c->reserve,
               c->passed ? "true" : "false");
        cli_json_string(stdout, c->command);
        printf(", \"result\": ");
        cli_problem p;
        memset(&p, 0, sizeof p);
        p.desc = layer_desc(&o, c->n, c->dtype, fam_algo[f]);
        p.reps = 1;
        p.seed = 42;
        p.verify = true;
        p.reserve_bytes = c->reserve;
        cli_json_result(stdout, device, &p, &c->r, NAN);
        printf("}");
      }
      printf("}");
    }
    printf("}\n");
  }
  free(rows);
  free(seqs);
  clattn_context_release(ctx);
  if (lib_error) return CLI_EXIT_LIBRARY;
  return check_failed ? CLI_EXIT_VERIFY : CLI_EXIT_OK;
}
