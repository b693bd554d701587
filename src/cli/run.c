/* run.c — `clattn run`: times one attention problem and checks it against the reference. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct run_opts {
  cli_common common;
  int algo, seq, seq_q, seq_kv, lse, json, profile, backward;
  const char *mask;    /* --mask specification (mask.c) */
  const char *compare; /* --compare: NULL or "softmax" */
  uint64_t reserve;    /* --reserve: device bytes taken before the run */
  int paged;           /* --paged PAGE_SIZE (0: contiguous KV) */
  const char *ragged;  /* --ragged L1,L2,...: KV lengths of a ragged batch */
  int check_tables;    /* --check-tables */
  const char *config;  /* --config */
} run_opts;

static cli_opt_table run_table(run_opts *o) {
  static cli_opt t[16];
  const cli_opt opts[] = {
      {"algo", NULL, CLI_OPT_CHOICE, &o->algo, 0, 0, cli_algo_names, "family (default flash)"},
      {"seq", "N", CLI_OPT_INT, &o->seq, 1, 0, NULL, "query and key length (default 2048)"},
      {"seq-q", "NQ", CLI_OPT_INT, &o->seq_q, 1, 0, NULL, "query length (default N)"},
      {"seq-kv", "NK", CLI_OPT_INT, &o->seq_kv, 1, 0, NULL, "key/value length (default N)"},
      {"mask", "SPEC", CLI_OPT_STR, &o->mask, 0, 0, NULL,
       "none, causal (bottom-right aligned, FlashAttention), causal-top-left (PyTorch's "
       "is_causal) or a sparse pattern, below (default none)"},
      {"lse", NULL, CLI_OPT_FLAG, &o->lse, 0, 1, NULL, "also write (and check) the log-sum-exp"},
      {"json", NULL, CLI_OPT_FLAG, &o->json, 0, 1, NULL, "print one JSON object instead of text"},
      {"backward", NULL, CLI_OPT_FLAG, &o->backward, 0, 1, NULL,
       "time the backward pass (dQ, dK, dV; deterministic) after one forward, FLOPs 2.5x the "
       "forward's, and check the gradients against the float64 reference (--verify)"},
      {"profile", NULL, CLI_OPT_FLAG, &o->profile, 0, 1, NULL,
       "also time each kernel (median over the runs, one execution at a time): the linear "
       "family's kernels; decode's split kernel, merge and the idle time between them"},
      {"compare", "WHAT", CLI_OPT_STR, &o->compare, 0, 0, NULL,
       "softmax: also print the error of the output against exact softmax attention on the "
       "same inputs (relative error, mean cosine similarity of output rows; for --algo linear, "
       "the approximation error)"},
      {"reserve", "BYTES", CLI_OPT_U64, &o->reserve, 0, 0, NULL,
       "first allocate and fill BYTES of device memory (in buffers of at most the largest "
       "allocation) and keep them during the run: checks that the problem fits beside the rest "
       "of a model (`clattn memory --check` prints such commands)"},
      {"paged", "PS", CLI_OPT_INT, &o->paged, 1, 0, NULL,
       "KV in a paged cache of PS-token pages (shuffled pages, block table; the decode kernel)"},
      {"ragged", "L1,L2,..", CLI_OPT_STR, &o->ragged, 0, 0, NULL,
       "a ragged batch: the KV length of each sequence (0 allowed); each has min(seq-q, L) "
       "queries, packed rows (cu_seqlens)"},
      {"check-tables", NULL, CLI_OPT_FLAG, &o->check_tables, 0, 1, NULL,
       "--paged / --ragged: validate the tables on the host first (CLATTN_PLAN_CHECK_TABLES)"},
      {"config", "CFG", CLI_OPT_STR, &o->config, 0, 0, NULL,
       "force a kernel configuration, e.g. decode:splits=8,kt=32"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

/* --profile's line: each kernel's median milliseconds. */
static void print_kernels(int n, const char *const *names, const double *ms) {
  for (int i = 0; i < n; i++)
    printf("%s%s %.4f ms", i ? ", " : "kernels   : ", names[i], ms[i]);
  if (n) printf("\n");
}

/* --paged / --ragged: the inference path (infer.c). */
static int run_inference(const run_opts *o, cli_problem *p) {
  int *lens = NULL, nlens = 0;
  if (o->ragged) { /* non-negative lengths: a sequence of length 0 is allowed */
    const char *s = o->ragged;
    lens = malloc((strlen(s) / 2 + 2) * sizeof *lens);
    if (!lens) return CLI_EXIT_LIBRARY;
    for (;;) {
      char *end;
      const long x = strtol(s, &end, 10);
      if (end == s || x < 0 || x > 1 << 30 || (*end && *end != ',')) {
        fprintf(stderr, "clattn: --ragged %s: expected a comma-separated list of lengths >= 0\n",
                o->ragged);
        free(lens);
        return CLI_EXIT_USAGE;
      }
      lens[nlens++] = (int)x;
      if (!*end) break;
      s = end + 1;
    }
  }
  clattn_context ctx = cli_open_context(o->common.device);
  if (!ctx) {
    free(lens);
    return CLI_EXIT_LIBRARY;
  }
  cli_infer in;
  memset(&in, 0, sizeof in);
  in.desc = p->desc;
  in.page_size = o->paged;
  in.sequential_pages = o->common.page_order == 1;
  in.lens = lens;
  in.nlens = nlens;
  in.reps = p->reps;
  in.warmup = p->warmup;
  in.seed = p->seed;
  in.verify = p->verify;
  in.check_tables = o->check_tables != 0;
  in.no_mask_blocks = p->no_mask_blocks;
  in.profile = p->profile;
  in.config = o->config;
  const clattn_attention_desc *d = &p->desc;
  printf("clattn %s run\ndevice    : %s\n", clattn_version_string(),
         clattn_context_device_name(ctx));
  printf("problem   : B=%d H=%d Hk=%d Nq=%d Nk=%s%d d=%d %s mask=%s, %s KV%s\n",
         nlens ? nlens : d->batch, d->heads, d->kv_heads ? d->kv_heads : d->heads, d->seq_q,
         nlens ? "ragged, max " : "", d->seq_kv, d->head_dim, cli_dtype_names[d->dtype],
         clattn_mask_name(d->mask), o->paged ? "paged" : "contiguous", nlens ? ", ragged" : "");
  if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
    printf("kv cache  : %s codes, scales per %s\n", clattn_kv_dtype_name(d->kv_dtype),
           clattn_kv_scale_name(d->kv_scale));
  cli_infer_result r;
  clattn_status st = cli_infer_run(ctx, &in, &r);
  int rc = CLI_EXIT_OK;
  if (r.describe[0]) printf("config    : %s\n", r.describe);
  if (st != CLATTN_SUCCESS) {
    cli_print_error("run failed", st, r.error);
    rc = CLI_EXIT_LIBRARY;
  } else {
    printf("time      : median %.4f ms over %d runs\n", r.median_ms, p->reps);
    printf("speed     : %.2f GB/s of KV read (%.1f MB of K and V)\n", r.kv_gbps, r.kv_bytes / 1e6);
    print_kernels(r.nkernels, r.kernel_names, r.kernel_ms);
    if (r.verified) {
      printf("verify    : max abs err %.3g, rel err %.3g (tolerance %.0e)%s: %s\n", r.max_abs_err,
             r.rel_err, r.tolerance, r.nan_found ? ", NaN found" : "", r.passed ? "PASS" : "FAIL");
      if (!r.passed) rc = CLI_EXIT_VERIFY;
      if (d->kv_dtype != CLATTN_KV_DTYPE_SAME)
        printf("quantized : rel err %.3g against the unquantized %s cache (reference on the "
               "dequantized cache above)\n",
               r.quant_err, cli_dtype_names[d->dtype]);
    } else {
      printf("verify    : skipped\n");
    }
  }
  clattn_context_release(ctx);
  free(lens);
  return rc;
}

static void run_defaults(run_opts *o) {
  memset(o, 0, sizeof *o);
  cli_common_defaults(&o->common);
  o->algo = CLATTN_ALGO_FLASH;
  o->mask = "none";
  o->seq = 2048;
}

void cli_help_run(FILE *f) {
  run_opts o;
  run_defaults(&o);
  cli_opt_table tables[2] = {run_table(&o), cli_common_table(&o.common)};
  fprintf(f, "usage: clattn run [options]\n\n"
             "Runs one attention problem on random inputs (uniform in [-1,1), seeded), prints\n"
             "the median time of the timed runs with their spread, TFLOP/s (4*B*H*Nq*Nk*d,\n"
             "visible pairs only under causal and sparse masks), effective GB/s (q, k, v read\n"
             "and o written once), device memory used, and the error against the float64\n"
             "reference.\n\n"
             "options:\n");
  cli_print_options(f, tables, 2);
  fprintf(f, "\n%s", cli_mask_help);
  fprintf(f, "\nexit status: 0 pass, 1 verification failed, 2 usage error, 3 library error.\n");
}

/* The lines known before the run. */
static void print_header(const char *device, const cli_problem *p) {
  const clattn_attention_desc *d = &p->desc;
  char mask[160];
  printf("clattn %s run\n", clattn_version_string());
  printf("device    : %s\n", device);
  printf("problem   : B=%d H=%d Hk=%d Nq=%d Nk=%d d=%d %s %s mask=%s%s, seed %llu\n", d->batch,
         d->heads, d->kv_heads ? d->kv_heads : d->heads, d->seq_q, d->seq_kv, d->head_dim,
         cli_dtype_names[d->dtype], cli_layout_names[d->layout],
         cli_mask_string(d, mask, sizeof mask), p->lse ? " +lse" : "", (unsigned long long)p->seed);
  fflush(stdout);
}

static void print_result(const cli_problem *p, const cli_result *r) {
  char b1[64], b2[64], b3[64];
  if (r->describe[0]) printf("config    : %s\n", r->describe);
  if (!(r->median_ms > 0)) return;
  printf("time      : median %.4f ms, min %.4f, max %.4f (spread %.1f%%) over %d runs after %d "
         "warm-up\n",
         r->median_ms, r->min_ms, r->max_ms, 100.0 * (r->max_ms - r->min_ms) / r->median_ms,
         p->reps, p->warmup);
  printf("speed     : %.4f TFLOP/s (%.2f GFLOP/s), %.2f GB/s effective\n", r->tflops,
         r->tflops * 1e3, r->gbps);
  printf("memory    : %s on the device (buffers %s + workspace %s)\n",
         cli_fmt_bytes(r->mem_bytes, true, b1, sizeof b1),
         cli_fmt_bytes(r->mem_bytes - r->workspace_bytes, false, b2, sizeof b2),
         cli_fmt_bytes(r->workspace_bytes, false, b3, sizeof b3));
  if (p->reserve_bytes)
    printf("reserved  : %s more held during the run (--reserve): %s in all\n",
           cli_fmt_bytes(p->reserve_bytes, true, b2, sizeof b2),
           cli_fmt_bytes(p->reserve_bytes + r->mem_bytes, true, b3, sizeof b3));
  printf("timing    : %s\n", r->timing);
  print_kernels(r->nkernels, r->kernel_names, r->kernel_ms);
  if (!r->verified) {
    printf("verify    : %s\n", p->verify ? "not done (error)" : "skipped");
    return;
  }
  printf("verify    : max abs err %.3g, rel err %.3g (tolerance %.0e)", r->max_abs_err, r->rel_err,
         r->tolerance);
  if (p->lse) printf(", lse max abs err %.3g", r->lse_max_abs_err);
  printf("\n            over %ld of %ld rows in %ld of %ld heads%s: %s\n", r->rows_checked,
         r->rows_total, r->heads_checked, r->heads_total,
         r->nan_found ? ", NaN found in the output" : "", r->passed ? "PASS" : "FAIL");
}

static void print_compare(const cli_result *r) {
  if (!r->compared) return;
  printf("vs softmax: rel err %.4g, mean cosine similarity of output rows %.6f\n"
         "            over %ld rows in %ld heads (exact softmax attention, float64, same inputs)\n",
         r->approx_rel_err, r->approx_cos, r->approx_rows, r->approx_heads);
}

int cli_cmd_run(int argc, char **argv) {
  run_opts o;
  run_defaults(&o);
  o.seq_q = o.seq_kv = 0;
  cli_opt_table tables[2] = {run_table(&o), cli_common_table(&o.common)};
  int rc = cli_parse_options("run", argc, argv, tables, 2);
  if (rc < 0) {
    cli_help_run(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;

  cli_problem p;
  cli_problem_from_common(&o.common, &p);
  p.verify = o.common.verify != 0; /* on unless --no-verify */
  p.lse = o.lse != 0;
  p.desc.algo = (clattn_algo)o.algo;
  if ((rc = cli_parse_feature(o.common.feature, &p.desc))) return rc;
  if (o.compare && strcmp(o.compare, "softmax")) {
    fprintf(stderr, "clattn: --compare %s: only 'softmax' is known\n", o.compare);
    return CLI_EXIT_USAGE;
  }
  p.compare_softmax = o.compare != NULL;
  p.reserve_bytes = o.reserve;
  p.profile = o.profile != 0;
  p.backward = o.backward != 0;
  p.config = o.config;
  cli_mask mask;
  cli_mask_init(&mask);
  if ((rc = cli_parse_mask("mask", o.mask, &mask))) return rc;
  cli_mask_apply(&mask, &p.desc);
  p.desc.seq_q = o.seq_q ? o.seq_q : o.seq;
  p.desc.seq_kv = o.seq_kv ? o.seq_kv : o.seq;
  if ((rc = cli_load_user_fns(&o.common, &p.desc, &p.verify)) || (rc = cli_check_desc(&p.desc))) {
    cli_mask_free(&mask);
    return rc;
  }
  if (o.paged || o.ragged || p.desc.kv_dtype != CLATTN_KV_DTYPE_SAME) {
    cli_mask_free(&mask);
    return run_inference(&o, &p);
  }

  clattn_context ctx = cli_open_context(o.common.device);
  if (!ctx) {
    cli_mask_free(&mask);
    if (o.json) {
      fputs("{\"error\": \"no device\", \"message\": ", stdout);
      cli_json_string(stdout, clattn_last_create_error());
      fputs("}\n", stdout);
    }
    return CLI_EXIT_LIBRARY;
  }
  const char *device = clattn_context_device_name(ctx);
  if (!o.json) print_header(device, &p);
  cli_result r;
  clattn_status st = cli_run_point(ctx, &p, &r);
  if (o.json) {
    cli_json_result(stdout, device, &p, &r, NAN);
    fputc('\n', stdout);
  } else {
    print_result(&p, &r);
    print_compare(&r);
  }
  if (st != CLATTN_SUCCESS) {
    if (r.oom) {
      char b[64];
      fprintf(stderr, "clattn: out of memory: this problem needs %s of device memory\n",
              cli_fmt_bytes(r.needed_bytes, true, b, sizeof b));
    }
    cli_print_error(r.describe[0] ? "run failed" : "plan creation failed", st, r.error);
    rc = CLI_EXIT_LIBRARY;
  } else {
    rc = r.verified && !r.passed ? CLI_EXIT_VERIFY : CLI_EXIT_OK;
  }
  clattn_context_release(ctx);
  cli_mask_free(&mask);
  return rc;
}
