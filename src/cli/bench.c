/* bench.c — `clattn bench`: sweeps N, masks, families, dtypes, head dims; table, CSV, JSON. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ALGOS 4 /* auto, flash, naive, linear */

static const char *const bench_mask_names[] = {"none", "causal", "both", NULL};
static const char *const bench_family_names[] = {"dense", "sparse", "decode", NULL};

typedef struct bench_opts {
  cli_common common;
  const char *algos, *seqs, *csv, *json;
  const char *dtypes, *head_dims; /* lists overriding --dtype / --head-dim */
  int mask;
  int family;                  /* 0 dense, 1 sparse, 2 decode */
  const char *batches, *pages; /* --family decode: batch sizes, page sizes (0: contiguous) */
  int seq_q;                   /* --family decode: queries per sequence (default 1) */
  const char *pattern;         /* --family sparse: the sparse mask */
  int peak, progress;          /* --peak; --progress auto (-1) / off (0) / on (1) */
  int backward;                /* --backward */
  cli_peak_opts peak_opts;
} bench_opts;

static cli_opt_table bench_table(bench_opts *o) {
  static cli_opt t[19];
  const cli_opt opts[] = {
      {"algo", "LIST", CLI_OPT_STR, &o->algos, 0, 0, NULL,
       "families to compare, of auto,flash,naive,linear (default flash,naive; linear uses "
       "--feature)"},
      {"seq", "LIST", CLI_OPT_STR, &o->seqs, 0, 0, NULL,
       "sequence lengths (default 512,1024,...,16384, stopping where the device memory cannot "
       "hold the inputs)"},
      {"mask", NULL, CLI_OPT_CHOICE, &o->mask, 0, 0, bench_mask_names, "mask(s) (default none)"},
      {"csv", "FILE", CLI_OPT_STR, &o->csv, 0, 0, NULL, "also write the points as CSV"},
      {"json", "FILE", CLI_OPT_STR, &o->json, 0, 0, NULL, "also write the points as a JSON array"},
      {"family", NULL, CLI_OPT_CHOICE, &o->family, 0, 0, bench_family_names,
       "dense: --algo families under --mask; sparse: at each N, flash without a mask, flash "
       "with --pattern and naive with --pattern (the masked baseline), speed-up vs dense flash; "
       "decode: batch x KV length (--seq, default 4096,32768,131072) x page size (--pages), "
       "one query per sequence (--seq-q), time, KV GB/s and %% of the copy rate with --peak "
       "(default dense)"},
      {"batches", "LIST", CLI_OPT_STR, &o->batches, 0, 0, NULL,
       "--family decode: batch sizes (default 1,8,64)"},
      {"pages", "LIST", CLI_OPT_STR, &o->pages, 0, 0, NULL,
       "--family decode: page sizes, 0 = contiguous KV (default 0,16,256)"},
      {"seq-q", "NQ", CLI_OPT_INT, &o->seq_q, 1, 0, NULL,
       "--family decode: queries per sequence, causal when > 1 (default 1)"},
      {"pattern", "SPEC", CLI_OPT_STR, &o->pattern, 0, 0, NULL,
       "sparse mask of --family sparse, as run's --mask (default window:256,256)"},
      {"dtypes", "LIST", CLI_OPT_STR, &o->dtypes, 0, 0, NULL,
       "storage types to sweep, of f32,f16,bf16 (default: --dtype)"},
      {"head-dims", "LIST", CLI_OPT_STR, &o->head_dims, 0, 0, NULL,
       "head dims to sweep (default: --head-dim)"},
      {"peak", NULL, CLI_OPT_FLAG, &o->peak, 0, 1, NULL,
       "first measure the device's f32 FMA rate and copy bandwidth (as `clattn devices --peak`) "
       "and report every point as a percentage of them"},
      {"peak-ms", "MS", CLI_OPT_DOUBLE, &o->peak_opts.fma_ms, 0, 0, NULL,
       "--peak: target duration of one FMA run (default 20)"},
      {"peak-copy-bytes", "BYTES", CLI_OPT_U64, &o->peak_opts.copy_bytes, 0, 0, NULL,
       "--peak: size of the copied buffer (default 268435456)"},
      {"backward", NULL, CLI_OPT_FLAG, &o->backward, 0, 1, NULL,
       "time the backward pass instead (TFLOP/s on 2.5x the forward's FLOPs, as FlashAttention "
       "counts; families without a backward report unsupported)"},
      {"no-progress", NULL, CLI_OPT_FLAG, &o->progress, 0, 0, NULL,
       "no progress line (shown on stderr when it is a terminal)"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

static void bench_defaults(bench_opts *o) {
  memset(o, 0, sizeof *o);
  cli_common_defaults(&o->common);
  o->common.reps = 5;
  o->algos = "flash,naive";
  o->mask = 0;
  o->pattern = "window:256,256";
  o->progress = -1;
  cli_peak_defaults(&o->peak_opts);
}

void cli_help_bench(FILE *f) {
  bench_opts o;
  bench_defaults(&o);
  cli_opt_table tables[2] = {bench_table(&o), cli_common_table(&o.common)};
  fprintf(f, "usage: clattn bench [options]\n\n"
             "Sweeps sequence lengths (Nq = Nk = N), masks and families with the same\n"
             "measurement as `clattn run` (reps default 5, verification off unless --verify)\n"
             "and prints a table: median time and spread ((max - min) / median), TFLOP/s on\n"
             "the work actually done (visible pairs; linear: its state and output products),\n"
             "effective GB/s (q, k, v read, o written once), the device memory the call\n"
             "needed (buffers + plan workspace) and the speed-up over the naive family at the\n"
             "same N. A configuration the device cannot hold is reported as out of memory with\n"
             "the bytes it needed (buffers + clattn_plan_estimate's workspace), one a family\n"
             "refuses (naive at >= 2^31 score elements) as unsupported, and the sweep goes on.\n"
             "Progress is shown on stderr when it is a terminal. bench/plot.py turns --csv\n"
             "files into plots.\n"
             "--family sparse compares a sparse pattern on flash and on naive with dense flash\n"
             "(TFLOP/s counted on the attended pairs; a layout file fits one N only).\n\n"
             "options:\n");
  cli_print_options(f, tables, 2);
  fprintf(f, "\n%s", cli_mask_help);
}

static int mask_width = 7;                   /* wider for sparse pattern names */
static const clattn_peak_result *bench_peak; /* --peak: the measured peak, else NULL */

static void print_header(bool verify, bool sparse) {
  printf("%-6s %7s %-*s %12s %8s %9s %9s %14s %8s", "algo", "N", mask_width, "mask", "median ms",
         "spread", "TFLOP/s", "GB/s", "memory bytes", sparse ? "vs dense" : "speedup");
  if (bench_peak) printf(" %7s %7s", "%FMA", "%copy");
  printf("%s\n", verify ? "  verify" : "");
}

static void print_row(const cli_problem *p, const cli_result *r, double speedup, bool verify) {
  const char *algo = cli_algo_names[r->algo];
  char mask[160];
  printf("%-6s %7d %-*s ", algo, p->desc.seq_q, mask_width,
         cli_mask_string(&p->desc, mask, sizeof mask));
  if (r->status == CLATTN_SUCCESS || r->median_ms > 0) {
    char sp[32] = "-";
    if (!isnan(speedup)) snprintf(sp, sizeof sp, "%.2fx", speedup);
    printf("%12.4f %7.1f%% %9.4f %9.2f %14llu %8s", r->median_ms,
           100.0 * (r->max_ms - r->min_ms) / r->median_ms, r->tflops, r->gbps,
           (unsigned long long)r->mem_bytes, sp);
    if (bench_peak)
      printf(" %6.1f%% %6.1f%%", 100.0 * r->tflops * 1e3 / bench_peak->fma_gflops,
             100.0 * r->gbps / bench_peak->copy_gbps);
    if (verify)
      printf("  %s (%.1e)",
             r->status != CLATTN_SUCCESS ? "error"
             : r->passed                 ? "pass"
                                         : "FAIL",
             r->rel_err);
  } else if (r->oom) {
    printf("out of memory (needs %llu bytes)", (unsigned long long)r->needed_bytes);
  } else if (r->status == CLATTN_ERROR_UNSUPPORTED) {
    printf("unsupported: %.160s", r->error);
  } else {
    printf("error: %s: %.160s", clattn_status_string(r->status), r->error);
  }
  printf("\n");
  fflush(stdout);
}

static FILE *open_out(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) perror(path);
  return f;
}

/* Progress on stderr when it is a terminal: one line, overwritten. */
typedef struct progress {
  bool on;
  int done, total;
  double t0;
} progress;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_show(progress *pg, const cli_problem *p) {
  if (!pg->on) return;
  char mask[160], eta[32] = "";
  const double el = now_s() - pg->t0;
  if (pg->done > 0)
    snprintf(eta, sizeof eta, ", ETA %.0f s", el / pg->done * (pg->total - pg->done));
  fprintf(stderr, "\r\033[K[%d/%d] %s N=%d %s %s d=%d (%.0f s%s)", pg->done + 1, pg->total,
          cli_algo_names[p->desc.algo], p->desc.seq_q, cli_mask_string(&p->desc, mask, sizeof mask),
          cli_dtype_names[p->desc.dtype], p->desc.head_dim, el, eta);
  fflush(stderr);
}

static void progress_clear(const progress *pg) {
  if (pg->on) fprintf(stderr, "\r\033[K");
}

/* Parses --dtypes into dtype indices; returns the count or -1. */
static int parse_dtypes(const char *s, int *out) {
  unsigned bits = 0;
  if (cli_parse_choice_list("dtypes", s, cli_dtype_names, &bits)) return -1;
  int n = 0;
  for (int i = 0; cli_dtype_names[i]; i++)
    if (bits & (1u << i)) out[n++] = i;
  return n;
}

/* --family decode: batch x KV length x page size on the decode kernel. */
static int bench_decode(clattn_context ctx, const bench_opts *o, const cli_problem *base,
                        const int *seqs, int nseqs) {
  static const int def_b[] = {1, 8, 64}, def_n[] = {4096, 32768, 131072}, def_p[] = {0, 16, 256};
  int *bl = NULL, *pl = NULL, nb = 3, np = 3;
  if (o->batches && (nb = cli_parse_int_list("batches", o->batches, &bl)) < 0)
    return CLI_EXIT_USAGE;
  if (o->pages) {
    /* page sizes may be 0 (contiguous): parse by hand */
    const char *s = o->pages;
    pl = malloc((strlen(s) / 2 + 2) * sizeof *pl);
    np = 0;
    for (; pl;) {
      char *end;
      const long x = strtol(s, &end, 10);
      if (end == s || x < 0 || x > 1 << 20 || (*end && *end != ',')) {
        fprintf(stderr, "clattn bench: --pages %s: expected a list of page sizes >= 0\n", o->pages);
        free(bl);
        free(pl);
        return CLI_EXIT_USAGE;
      }
      pl[np++] = (int)x;
      if (!*end) break;
      s = end + 1;
    }
  }
  const int *B = bl ? bl : def_b, *P = pl ? pl : def_p, *Nk = seqs ? seqs : def_n;
  if (!seqs) nseqs = 3;
  const clattn_attention_desc *d = &base->desc;
  const int nq = o->seq_q > 0 ? o->seq_q : 1;
  printf("decode: H=%d Hk=%d d=%d %s, %d quer%s per sequence%s, %d runs after %d warm-up\n",
         d->heads, d->kv_heads ? d->kv_heads : d->heads, d->head_dim, cli_dtype_names[d->dtype], nq,
         nq > 1 ? "ies" : "y", nq > 1 ? " (causal)" : "", base->reps, base->warmup);
  printf("%6s %8s %6s %12s %10s", "batch", "KV", "page", "median ms", "KV GB/s");
  if (bench_peak) printf(" %7s", "%copy");
  printf("%s  %s\n", base->verify ? "  verify" : "", "kernel");
  int rc = CLI_EXIT_OK;
  for (int bi = 0; bi < nb; bi++)
    for (int ni = 0; ni < nseqs; ni++)
      for (int pi = 0; pi < np; pi++) {
        cli_infer in;
        memset(&in, 0, sizeof in);
        in.desc = *d;
        in.desc.batch = B[bi];
        in.desc.seq_q = nq;
        in.desc.seq_kv = Nk[ni];
        in.desc.mask = nq > 1 ? CLATTN_MASK_CAUSAL : CLATTN_MASK_NONE;
        if (in.desc.layout == CLATTN_LAYOUT_BHSD) in.desc.layout = CLATTN_LAYOUT_BSHD;
        in.page_size = P[pi];
        in.sequential_pages = o->common.page_order == 1;
        in.reps = base->reps;
        in.warmup = base->warmup;
        in.seed = base->seed;
        in.verify = base->verify;
        cli_infer_result r;
        char pg[16] = "-";
        if (P[pi]) snprintf(pg, sizeof pg, "%d", P[pi]);
        printf("%6d %8d %6s ", B[bi], Nk[ni], pg);
        if (cli_infer_run(ctx, &in, &r) != CLATTN_SUCCESS) {
          /* a cache the device cannot hold is a result of the sweep, as in the dense one */
          const bool oom = r.status == CLATTN_ERROR_OUT_OF_MEMORY;
          printf("%s: %.200s\n", oom ? "out of memory" : clattn_status_string(r.status), r.error);
          fflush(stdout);
          if (!oom) rc = CLI_EXIT_LIBRARY;
          continue;
        }
        printf("%12.4f %10.2f", r.median_ms, r.kv_gbps);
        if (bench_peak) printf(" %6.1f%%", 100.0 * r.kv_gbps / bench_peak->copy_gbps);
        if (r.verified) {
          printf("  %s (%.1e)", r.passed ? "pass" : "FAIL", r.rel_err);
          if (!r.passed && rc == CLI_EXIT_OK) rc = CLI_EXIT_VERIFY;
        }
        /* the kernel's configuration, without the "decode f32 d=64: " head */
        const char *k = strstr(r.describe, ": ");
        printf("  %.110s\n", k ? k + 2 : r.describe);
        fflush(stdout);
      }
  free(bl);
  free(pl);
  return rc;
}

int cli_cmd_bench(int argc, char **argv) {
  bench_opts o;
  bench_defaults(&o);
  cli_opt_table tables[2] = {bench_table(&o), cli_common_table(&o.common)};
  int rc = cli_parse_options("bench", argc, argv, tables, 2);
  if (rc < 0) {
    cli_help_bench(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  if (o.peak && (rc = cli_check_peak_opts(&o.peak_opts))) return rc;

  unsigned algo_bits = 0;
  if ((rc = cli_parse_choice_list("algo", o.algos, cli_algo_names, &algo_bits))) return rc;
  int algos[MAX_ALGOS], nalgos = 0;
  for (int a = 0; a < MAX_ALGOS; a++)
    if (algo_bits & (1u << a)) algos[nalgos++] = a;
  int dtypes[3] = {o.common.dtype}, ndtypes = 1;
  if (o.dtypes && (ndtypes = parse_dtypes(o.dtypes, dtypes)) < 0) return CLI_EXIT_USAGE;
  int *hds = NULL, nhds = 1;
  if (o.head_dims) {
    if ((nhds = cli_parse_int_list("head-dims", o.head_dims, &hds)) < 0) return CLI_EXIT_USAGE;
  } else if ((hds = malloc(sizeof *hds))) {
    hds[0] = o.common.head_dim;
  }
  if (!hds) return CLI_EXIT_LIBRARY;
  int *seqs = NULL, nseqs;
  bool default_seqs = o.seqs == NULL;
  if (default_seqs) {
    static int def[] = {512, 1024, 2048, 4096, 8192, 16384};
    nseqs = (int)(sizeof def / sizeof def[0]);
    seqs = malloc(sizeof def);
    if (seqs) memcpy(seqs, def, sizeof def);
  } else if ((nseqs = cli_parse_int_list("seq", o.seqs, &seqs)) < 0) {
    free(hds);
    return CLI_EXIT_USAGE;
  }
  if (!seqs) {
    free(hds);
    return CLI_EXIT_LIBRARY;
  }
  int masks[2], nmasks = 0;
  if (o.mask != 1) masks[nmasks++] = CLATTN_MASK_NONE;
  if (o.mask != 0) masks[nmasks++] = CLATTN_MASK_CAUSAL;
  const bool sparse = o.family == 1;
  cli_mask pattern; /* --family sparse */
  cli_mask_init(&pattern);
  clattn_context ctx = NULL;
  FILE *csv = NULL, *json = NULL;
  rc = CLI_EXIT_OK;
  if (sparse && (rc = cli_parse_mask("pattern", o.pattern, &pattern))) goto out;
  if (sparse) nmasks = 1; /* one group per N: dense flash, sparse flash, sparse naive */
  if (sparse) {
    char text[160];
    clattn_attention_desc tmp;
    clattn_attention_desc_init(&tmp);
    cli_mask_apply(&pattern, &tmp);
    mask_width = (int)strlen(cli_mask_string(&tmp, text, sizeof text));
    if (mask_width < 7) mask_width = 7;
  }

  cli_problem base;
  cli_problem_from_common(&o.common, &base);
  base.backward = o.backward != 0;
  if ((rc = cli_parse_feature(o.common.feature, &base.desc))) goto out;
  base.desc.seq_q = base.desc.seq_kv = seqs[0];
  if ((rc = cli_load_user_fns(&o.common, &base.desc, &base.verify))) goto out;
  for (int h = 0; h < nhds; h++) {
    base.desc.head_dim = hds[h];
    if ((rc = cli_check_desc(&base.desc))) goto out;
  }

  ctx = cli_open_context(o.common.device);
  if (!ctx) {
    rc = CLI_EXIT_LIBRARY;
    goto out;
  }
  const char *device = clattn_context_device_name(ctx);
  csv = o.csv ? open_out(o.csv) : NULL;
  json = o.json ? open_out(o.json) : NULL;
  if ((o.csv && !csv) || (o.json && !json)) {
    rc = CLI_EXIT_USAGE;
    goto out;
  }

  printf("clattn %s bench on %s\n", clattn_version_string(), device);
  static clattn_peak_result peak;
  if (o.peak) {
    char perr[1024];
    if (cli_measure_peak(ctx, &o.peak_opts, &peak, perr, sizeof perr) != CLATTN_SUCCESS) {
      fprintf(stderr, "clattn bench: --peak: %s\n", perr);
      rc = CLI_EXIT_LIBRARY;
      goto out;
    }
    bench_peak = &peak;
    printf("peak (measured): %.1f GFLOP/s f32 FMA, %.1f GB/s copy; %%FMA = TFLOP/s / FMA peak, "
           "%%copy = GB/s / copy peak\n",
           peak.fma_gflops, peak.copy_gbps);
  }
  if (o.family == 2) {
    rc = bench_decode(ctx, &o, &base, default_seqs ? NULL : seqs, nseqs);
    goto out;
  }
  if (csv) cli_csv_header(csv);
  if (json) fputs("[", json);
  if (sparse)
    printf("sparse pattern %s: flash without a mask, flash and naive with the pattern; "
           "\"vs dense\" = dense flash time / time\n",
           pattern.text);

  const int npts = sparse ? 3 : nalgos;
  progress pg = {o.progress != 0 && isatty(fileno(stderr)), 0,
                 ndtypes * nhds * nseqs * nmasks * npts, now_s()};
  bool any_fail = false, any_error = false, first_json = true;
  for (int ti = 0; ti < ndtypes; ti++) {
    for (int hi = 0; hi < nhds; hi++) {
      base.desc.dtype = (clattn_dtype)dtypes[ti];
      base.desc.head_dim = hds[hi];
      printf("%sB=%d H=%d Hk=%d d=%d %s %s, %d runs after %d warm-up, seed %llu\n",
             ti + hi ? "\n" : "", base.desc.batch, base.desc.heads,
             base.desc.kv_heads ? base.desc.kv_heads : base.desc.heads, base.desc.head_dim,
             cli_dtype_names[base.desc.dtype], cli_layout_names[base.desc.layout], base.reps,
             base.warmup, (unsigned long long)base.seed);
      print_header(base.verify, sparse);
      for (int si = 0; si < nseqs; si++) {
        base.desc.seq_q = base.desc.seq_kv = seqs[si];
        if (default_seqs && !cli_buffers_fit(ctx, &base.desc, false, NULL, 0)) {
          progress_clear(&pg);
          printf("N=%d: the inputs no longer fit in device memory; stopping the sweep\n", seqs[si]);
          pg.total -= (nseqs - si) * nmasks * npts;
          break;
        }
        for (int mi = 0; mi < nmasks; mi++) {
          cli_problem pts[MAX_ALGOS];
          cli_result res[MAX_ALGOS];
          double naive_ms = NAN, dense_ms = NAN;
          for (int ai = 0; ai < npts; ai++) {
            pts[ai] = base;
            if (sparse) { /* 0: dense flash, 1: sparse flash, 2: naive with the sparse mask */
              pts[ai].desc.algo = ai == 2 ? CLATTN_ALGO_NAIVE : CLATTN_ALGO_FLASH;
              if (ai > 0) cli_mask_apply(&pattern, &pts[ai].desc);
            } else {
              pts[ai].desc.mask = (clattn_mask)masks[mi];
              pts[ai].desc.algo = (clattn_algo)algos[ai];
            }
            progress_show(&pg, &pts[ai]);
            cli_run_point(ctx, &pts[ai], &res[ai]);
            pg.done++;
            if (pts[ai].desc.algo == CLATTN_ALGO_NAIVE && res[ai].status == CLATTN_SUCCESS)
              naive_ms = res[ai].median_ms;
            if (sparse && ai == 0 && res[ai].status == CLATTN_SUCCESS) dense_ms = res[ai].median_ms;
          }
          progress_clear(&pg);
          for (int ai = 0; ai < npts; ai++) {
            const cli_result *r = &res[ai];
            double speedup = r->status == CLATTN_SUCCESS ? naive_ms / r->median_ms : NAN;
            double shown =
                sparse && r->status == CLATTN_SUCCESS ? dense_ms / r->median_ms : speedup;
            print_row(&pts[ai], r, shown, base.verify);
            if (csv) cli_csv_row(csv, device, &pts[ai], r, speedup, bench_peak);
            if (json) {
              fputs(first_json ? "\n  " : ",\n  ", json);
              cli_json_result_peak(json, device, &pts[ai], r, speedup, bench_peak);
              first_json = false;
            }
            any_fail |= r->verified && !r->passed;
            /* out of memory and a family's refusal are results of the sweep */
            any_error |=
                r->status != CLATTN_SUCCESS && !r->oom && r->status != CLATTN_ERROR_UNSUPPORTED;
          }
        }
      }
    }
  }
  progress_clear(&pg);
  if (json) fputs("\n]\n", json);
  rc = any_error ? CLI_EXIT_LIBRARY : any_fail ? CLI_EXIT_VERIFY : CLI_EXIT_OK;
out:;
  bool write_error = false;
  if (csv && fclose(csv) != 0) write_error = true;
  if (json && fclose(json) != 0) write_error = true;
  if (write_error) {
    fprintf(stderr, "clattn bench: writing the output files failed\n");
    if (rc == CLI_EXIT_OK) rc = CLI_EXIT_LIBRARY;
  }
  bench_peak = NULL;
  clattn_context_release(ctx);
  cli_mask_free(&pattern);
  free(seqs);
  free(hds);
  return rc;
}
