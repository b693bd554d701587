/* bench.c — `clattn bench`: sweeps lengths, masks and families; prints a table, writes CSV/JSON. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ALGOS 4 /* auto, flash, naive, linear */

static const char *const bench_mask_names[] = {"none", "causal", "both", NULL};
static const char *const bench_family_names[] = {"dense", "sparse", NULL};

typedef struct bench_opts {
  cli_common common;
  const char *algos, *seqs, *csv, *json;
  int mask;
  int family;          /* 0 dense, 1 sparse */
  const char *pattern; /* --family sparse: the sparse mask */
} bench_opts;

static cli_opt_table bench_table(bench_opts *o) {
  static cli_opt t[8];
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
       "with --pattern and naive with --pattern (the masked baseline), speed-up vs dense flash "
       "(default dense)"},
      {"pattern", "SPEC", CLI_OPT_STR, &o->pattern, 0, 0, NULL,
       "sparse mask of --family sparse, as run's --mask (default window:256,256)"},
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
}

void cli_help_bench(FILE *f) {
  bench_opts o;
  bench_defaults(&o);
  cli_opt_table tables[2] = {bench_table(&o), cli_common_table(&o.common)};
  fprintf(f, "usage: clattn bench [options]\n\n"
             "Sweeps sequence lengths (Nq = Nk = N), masks and families with the same\n"
             "measurement as `clattn run` (reps default 5, verification off unless --verify)\n"
             "and prints a table with the speed-up over the naive family at the same N.\n"
             "A configuration that runs out of device memory is reported and the sweep goes on.\n"
             "--family sparse compares a sparse pattern on flash and on naive with dense flash\n"
             "(TFLOP/s counted on the attended pairs; a layout file fits one N only).\n\n"
             "options:\n");
  cli_print_options(f, tables, 2);
  fprintf(f, "\n%s", cli_mask_help);
}

static int mask_width = 7; /* wider for sparse pattern names */

static void print_header(bool verify, bool sparse) {
  printf("%-6s %7s %-*s %12s %8s %9s %9s %14s %8s%s\n", "algo", "N", mask_width, "mask",
         "median ms", "spread", "TFLOP/s", "GB/s", "memory bytes", sparse ? "vs dense" : "speedup",
         verify ? "  verify" : "");
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
    if (verify)
      printf("  %s (%.1e)",
             r->status != CLATTN_SUCCESS ? "error"
             : r->passed                 ? "pass"
                                         : "FAIL",
             r->rel_err);
  } else if (r->oom) {
    printf("out of memory (needs %llu bytes)", (unsigned long long)r->needed_bytes);
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

  unsigned algo_bits = 0;
  if ((rc = cli_parse_choice_list("algo", o.algos, cli_algo_names, &algo_bits))) return rc;
  int algos[MAX_ALGOS], nalgos = 0;
  for (int a = 0; a < MAX_ALGOS; a++)
    if (algo_bits & (1u << a)) algos[nalgos++] = a;
  int *seqs = NULL, nseqs;
  bool default_seqs = o.seqs == NULL;
  if (default_seqs) {
    static int def[] = {512, 1024, 2048, 4096, 8192, 16384};
    nseqs = (int)(sizeof def / sizeof def[0]);
    seqs = malloc(sizeof def);
    if (seqs) memcpy(seqs, def, sizeof def);
  } else if ((nseqs = cli_parse_int_list("seq", o.seqs, &seqs)) < 0) {
    return CLI_EXIT_USAGE;
  }
  if (!seqs) return CLI_EXIT_LIBRARY;
  int masks[2], nmasks = 0;
  if (o.mask != 1) masks[nmasks++] = CLATTN_MASK_NONE;
  if (o.mask != 0) masks[nmasks++] = CLATTN_MASK_CAUSAL;
  const bool sparse = o.family == 1;
  cli_mask pattern; /* --family sparse */
  cli_mask_init(&pattern);
  if (sparse && (rc = cli_parse_mask("pattern", o.pattern, &pattern))) {
    free(seqs);
    return rc;
  }
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
  if ((rc = cli_parse_feature(o.common.feature, &base.desc))) {
    cli_mask_free(&pattern);
    free(seqs);
    return rc;
  }
  base.desc.seq_q = base.desc.seq_kv = seqs[0];
  if ((rc = cli_check_desc(&base.desc))) {
    cli_mask_free(&pattern);
    free(seqs);
    return rc;
  }

  clattn_context ctx = cli_open_context(o.common.device);
  if (!ctx) {
    cli_mask_free(&pattern);
    free(seqs);
    return CLI_EXIT_LIBRARY;
  }
  const char *device = clattn_context_device_name(ctx);
  FILE *csv = o.csv ? open_out(o.csv) : NULL;
  FILE *json = o.json ? open_out(o.json) : NULL;
  if ((o.csv && !csv) || (o.json && !json)) {
    if (csv) fclose(csv);
    if (json) fclose(json);
    clattn_context_release(ctx);
    cli_mask_free(&pattern);
    free(seqs);
    return CLI_EXIT_USAGE;
  }
  if (csv) cli_csv_header(csv);
  if (json) fputs("[", json);

  printf("clattn %s bench on %s\n", clattn_version_string(), device);
  printf("B=%d H=%d Hk=%d d=%d %s %s, %d runs after %d warm-up, seed %llu\n", base.desc.batch,
         base.desc.heads, base.desc.kv_heads ? base.desc.kv_heads : base.desc.heads,
         base.desc.head_dim, cli_dtype_names[base.desc.dtype], cli_layout_names[base.desc.layout],
         base.reps, base.warmup, (unsigned long long)base.seed);
  if (sparse)
    printf("sparse pattern %s: flash without a mask, flash and naive with the pattern; "
           "\"vs dense\" = dense flash time / time\n",
           pattern.text);
  print_header(base.verify, sparse);
  bool any_fail = false, any_error = false, first_json = true;
  for (int si = 0; si < nseqs; si++) {
    base.desc.seq_q = base.desc.seq_kv = seqs[si];
    if (default_seqs && !cli_buffers_fit(ctx, &base.desc, false, NULL, 0)) {
      printf("N=%d: the inputs no longer fit in device memory; stopping the sweep\n", seqs[si]);
      break;
    }
    for (int mi = 0; mi < nmasks; mi++) {
      cli_problem pts[MAX_ALGOS];
      cli_result res[MAX_ALGOS];
      double naive_ms = NAN, dense_ms = NAN;
      const int npts = sparse ? 3 : nalgos;
      for (int ai = 0; ai < npts; ai++) {
        pts[ai] = base;
        if (sparse) { /* 0: dense flash, 1: sparse flash, 2: naive with the sparse mask */
          pts[ai].desc.algo = ai == 2 ? CLATTN_ALGO_NAIVE : CLATTN_ALGO_FLASH;
          if (ai > 0) cli_mask_apply(&pattern, &pts[ai].desc);
        } else {
          pts[ai].desc.mask = (clattn_mask)masks[mi];
          pts[ai].desc.algo = (clattn_algo)algos[ai];
        }
        cli_run_point(ctx, &pts[ai], &res[ai]);
        if (pts[ai].desc.algo == CLATTN_ALGO_NAIVE && res[ai].status == CLATTN_SUCCESS)
          naive_ms = res[ai].median_ms;
        if (sparse && ai == 0 && res[ai].status == CLATTN_SUCCESS) dense_ms = res[ai].median_ms;
      }
      for (int ai = 0; ai < npts; ai++) {
        const cli_result *r = &res[ai];
        double speedup = r->status == CLATTN_SUCCESS ? naive_ms / r->median_ms : NAN;
        double shown = sparse && r->status == CLATTN_SUCCESS ? dense_ms / r->median_ms : speedup;
        print_row(&pts[ai], r, shown, base.verify);
        if (csv) cli_csv_row(csv, device, &pts[ai], r, speedup);
        if (json) {
          fputs(first_json ? "\n  " : ",\n  ", json);
          cli_json_result(json, device, &pts[ai], r, speedup);
          first_json = false;
        }
        any_fail |= r->verified && !r->passed;
        any_error |= r->status != CLATTN_SUCCESS && !r->oom;
      }
    }
  }
  if (json) fputs("\n]\n", json);
  bool write_error = false;
  if (csv && fclose(csv) != 0) write_error = true;
  if (json && fclose(json) != 0) write_error = true;
  if (write_error) fprintf(stderr, "clattn bench: writing the output files failed\n");
  clattn_context_release(ctx);
  cli_mask_free(&pattern);
  free(seqs);
  if (any_error || write_error) return CLI_EXIT_LIBRARY;
  return any_fail ? CLI_EXIT_VERIFY : CLI_EXIT_OK;
}
