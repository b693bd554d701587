/* tune.c — `clattn tune`: tunes problem classes on a device with a progress bar, fills the tuning
 * database, imports and exports it. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct tune_opts {
  const char *device, *head_dims, *seqs, *space, *export_file, *import_file, *variant, *feature;
  int algo, dtype, mask, batch, heads, json, exhaustive, no_store;
  double budget;
  uint64_t seed;
} tune_opts;

static cli_opt_table tune_table(tune_opts *o) {
  static cli_opt t[20];
  const cli_opt opts[] = {
      {"device", "SEL", CLI_OPT_STR, &o->device, 0, 0, NULL,
       "device selector (default $CLATTN_DEVICE, else GPU, else CPU)"},
      {"algo", NULL, CLI_OPT_CHOICE, &o->algo, 0, 0, cli_algo_names,
       "family to tune: flash (default) or linear"},
      {"variant", "NAME", CLI_OPT_STR, &o->variant, 0, 0, NULL,
       "kernel variant (flash, flash_rows, flash_tc, linear, linear_tc; default: the one plans "
       "use)"},
      {"feature", "elu|relu|favor[:M]", CLI_OPT_STR, &o->feature, 0, 0, NULL,
       "linear: feature map (default elu)"},
      {"head-dim", "D[,D...]", CLI_OPT_STR, &o->head_dims, 0, 0, NULL,
       "head dims to tune (default 64); each is tuned at its bucket"},
      {"seq", "N[,N...]", CLI_OPT_STR, &o->seqs, 0, 0, NULL,
       "sequence lengths timed (default 4096); results apply to their bucket"},
      {"dtype", NULL, CLI_OPT_CHOICE, &o->dtype, 0, 0, cli_dtype_names, "storage type"},
      {"mask", NULL, CLI_OPT_CHOICE, &o->mask, 0, 0, cli_mask_names, "mask (default none)"},
      {"budget", "SECONDS", CLI_OPT_DOUBLE, &o->budget, 0, 0, NULL,
       "wall-clock budget for all classes together, compilation included (default 60)"},
      {"batch", "B", CLI_OPT_INT, &o->batch, 1, 0, NULL, "batch of the timed problem (default 1)"},
      {"heads", "H", CLI_OPT_INT, &o->heads, 1, 0, NULL,
       "heads of the timed problem (default: enough to fill the device)"},
      {"space", "SPEC", CLI_OPT_STR, &o->space, 0, 0, NULL,
       "restrict parameter values, e.g. 'bm=32,64;tn=4,8'"},
      {"exhaustive", NULL, CLI_OPT_FLAG, &o->exhaustive, 0, 1, NULL,
       "try every legal configuration (within the budget)"},
      {"no-store", NULL, CLI_OPT_FLAG, &o->no_store, 0, 1, NULL,
       "do not write results to the tuning database"},
      {"seed", "S", CLI_OPT_U64, &o->seed, 0, 0, NULL, "seed of sampling and inputs (default 1)"},
      {"json", NULL, CLI_OPT_FLAG, &o->json, 0, 1, NULL, "print JSON on stdout"},
      {"export", "FILE", CLI_OPT_STR, &o->export_file, 0, 0, NULL,
       "write this device's tuning database to FILE (after tuning)"},
      {"import", "FILE", CLI_OPT_STR, &o->import_file, 0, 0, NULL,
       "merge FILE (from `--export`) into this device's database (before tuning)"},
      {NULL, NULL, CLI_OPT_INT, NULL, 0, 0, NULL, NULL}};
  memcpy(t, opts, sizeof opts);
  return t;
}

static void tune_defaults(tune_opts *o) {
  memset(o, 0, sizeof *o);
  o->algo = CLATTN_ALGO_FLASH;
  o->dtype = CLATTN_DTYPE_F32;
  o->mask = CLATTN_MASK_NONE;
  o->budget = 60;
  o->seed = 1;
}

void cli_help_tune(FILE *f) {
  tune_opts o;
  tune_defaults(&o);
  cli_opt_table tables[1] = {tune_table(&o)};
  fprintf(f,
          "usage: clattn tune [options]\n\n"
          "Tunes a kernel variant's tile sizes (flash or linear family, the variant plans of the\n"
          "class would use unless --variant names one) for problem classes (head-dim bucket x\n"
          "sequence bucket, with the given dtype and mask) on one device: every legal "
          "configuration when\n"
          "the space is small, else random samples refined around the best, each built and\n"
          "timed (OpenCL profiling events, median of several runs) within the budget. The\n"
          "winner is checked against the float64 reference and stored in the device's tuning\n"
          "database, which later plans use. A progress bar (candidates done/total, best so far,\n"
          "ETA) goes to stderr on a terminal, one line per candidate otherwise.\n\n"
          "Head-dim buckets: 32, 64, 80, 96, 128, 256 exact, others padded to a multiple of 16.\n"
          "Sequence buckets: powers of two up to 1024, then up to 4096, 16384, and above.\n\n"
          "With --import or --export alone (no --head-dim or --seq) nothing is tuned.\n\n"
          "options:\n");
  cli_print_options(f, tables, 1);
  fprintf(f, "\nexit status: 0 ok, 1 verification failed, 2 usage error, 3 library error.\n");
}

typedef struct progress_state {
  int tty;
  const char *label;
} progress_state;

static void fmt_secs(double s, char *buf, size_t cap) {
  if (!(s >= 0))
    snprintf(buf, cap, "?");
  else if (s < 60)
    snprintf(buf, cap, "%.0fs", s);
  else
    snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static int on_progress(const clattn_tune_progress *p, void *user) {
  progress_state *ps = user;
  char eta[32], best[160];
  fmt_secs(p->eta_s, eta, sizeof eta);
  if (p->best_ms >= 0)
    snprintf(best, sizeof best, "%.4f ms (%s)", p->best_ms, p->best_config);
  else
    snprintf(best, sizeof best, "-");
  if (ps->tty) {
    const int width = 24;
    int total = p->total > 0 ? p->total : 1;
    int filled = (int)((double)p->done / total * width + 0.5);
    if (filled > width) filled = width;
    char bar[32];
    for (int i = 0; i < width; i++)
      bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r\033[K%s [%s] %d/%d %s best %s ETA %s", ps->label, bar, p->done, p->total,
            p->phase, best, eta);
    fflush(stderr);
  } else if (!strcmp(p->phase, "verify")) {
    fprintf(stderr, "%s verify %s: %s\n", ps->label, p->config, p->ms >= 0 ? "pass" : "FAIL");
  } else {
    char ms[32];
    if (p->ms >= 0)
      snprintf(ms, sizeof ms, "%.4f ms", p->ms);
    else
      snprintf(ms, sizeof ms, "failed");
    fprintf(stderr, "%s %d/%d %s %s: %s; best %s; ETA %s\n", ps->label, p->done, p->total, p->phase,
            p->config, ms, best, eta);
  }
  return 0;
}

static void json_result(const clattn_tune_result *r, clattn_status st, const char *msg) {
  printf("    {\"class\": ");
  cli_json_string(stdout, r->problem_class);
  printf(", \"status\": ");
  cli_json_string(stdout, clattn_status_string(st));
  printf(", \"best_config\": ");
  cli_json_string(stdout, r->best_config);
  printf(", \"best_ms\": ");
  cli_json_number(stdout, r->best_ms);
  printf(", \"default_config\": ");
  cli_json_string(stdout, r->default_config);
  printf(", \"default_ms\": ");
  cli_json_number(stdout, r->default_ms);
  printf(", \"speedup\": ");
  cli_json_number(stdout, r->speedup);
  printf(", \"tried\": %d, \"failed\": %d, \"space_size\": %d, \"exhaustive\": %s, ", r->tried,
         r->failed, r->space_size, r->exhaustive ? "true" : "false");
  printf("\"verified\": %s, \"rel_error\": ", r->verified ? "true" : "false");
  cli_json_number(stdout, r->max_rel_error);
  printf(", \"stored\": %s, \"seconds\": ", r->stored ? "true" : "false");
  cli_json_number(stdout, r->elapsed_s);
  printf(", \"batch\": %d, \"heads\": %d, \"seq\": %d, \"head_dim\": %d", r->batch, r->heads,
         r->seq, r->head_dim);
  if (st != CLATTN_SUCCESS) {
    printf(", \"message\": ");
    cli_json_string(stdout, msg);
  }
  printf("}");
}

int cli_cmd_tune(int argc, char **argv) {
  tune_opts o;
  tune_defaults(&o);
  cli_opt_table tables[1] = {tune_table(&o)};
  int rc = cli_parse_options("tune", argc, argv, tables, 1);
  if (rc < 0) {
    cli_help_tune(stdout);
    return CLI_EXIT_OK;
  }
  if (rc) return rc;
  if (!(o.budget >= 0)) {
    fprintf(stderr, "clattn tune: --budget %g: must be >= 0\n", o.budget);
    return CLI_EXIT_USAGE;
  }
  int *hds = NULL, *seqs = NULL;
  int nh = 1, ns = 1;
  static int def_hd = 64, def_seq = 4096;
  if (o.head_dims) {
    nh = cli_parse_int_list("head-dim", o.head_dims, &hds);
    if (nh < 0) return CLI_EXIT_USAGE;
    for (int i = 0; i < nh; i++)
      if (hds[i] > 256) {
        fprintf(stderr, "clattn tune: --head-dim %d: must be 1..256\n", hds[i]);
        free(hds);
        return CLI_EXIT_USAGE;
      }
  }
  if (o.seqs) {
    ns = cli_parse_int_list("seq", o.seqs, &seqs);
    if (ns < 0) {
      free(hds);
      return CLI_EXIT_USAGE;
    }
  }
  const int tune_now = (!o.import_file && !o.export_file) || o.head_dims || o.seqs;
  clattn_feature_map feature_map = CLATTN_FEATURE_ELU1;
  int num_features = 0;
  if (o.feature) {
    char name[16] = "";
    const char *colon = strchr(o.feature, ':');
    const size_t len = colon ? (size_t)(colon - o.feature) : strlen(o.feature);
    const int fm =
        len < sizeof name ? (memcpy(name, o.feature, len), clattn_feature_map_from_name(name)) : -1;
    char *end = NULL;
    const long m = colon ? strtol(colon + 1, &end, 10) : 0;
    if (fm < 0 || (colon && (end == colon + 1 || *end || m < 1 || m > 256)) ||
        (colon && fm != CLATTN_FEATURE_FAVOR)) {
      fprintf(stderr, "clattn tune: --feature %s: expected elu, relu or favor[:M] (M 1..256)\n",
              o.feature);
      free(hds);
      free(seqs);
      return CLI_EXIT_USAGE;
    }
    feature_map = (clattn_feature_map)fm;
    num_features = (int)m;
  }

  clattn_context ctx = cli_open_context(o.device);
  if (!ctx) {
    free(hds);
    free(seqs);
    return CLI_EXIT_LIBRARY;
  }
  const char *device = clattn_context_device_name(ctx);
  char dbpath[4096];
  int have_db = clattn_tunedb_path(ctx, dbpath, sizeof dbpath) == CLATTN_SUCCESS;
  if (!have_db) snprintf(dbpath, sizeof dbpath, "(caches disabled)");
  int exit_code = CLI_EXIT_OK;
  if (o.import_file) {
    int n = 0;
    clattn_status st = clattn_tunedb_import(ctx, o.import_file, &n);
    if (st != CLATTN_SUCCESS) {
      cli_print_error("import failed", st, clattn_context_last_error(ctx));
      exit_code = CLI_EXIT_LIBRARY;
      goto done;
    }
    fprintf(o.json ? stderr : stdout, "imported %d entr%s from %s into %s\n", n,
            n == 1 ? "y" : "ies", o.import_file, dbpath);
    if (clattn_context_last_error(ctx)[0]) fprintf(stderr, "%s\n", clattn_context_last_error(ctx));
  }
  if (tune_now) {
    if (!o.json) {
      printf("clattn %s tune\ndevice    : %s\ndatabase  : %s\n", clattn_version_string(), device,
             dbpath);
      fflush(stdout);
    } else {
      printf("{\"device\": ");
      cli_json_string(stdout, device);
      printf(", \"database\": ");
      cli_json_string(stdout, have_db ? dbpath : "");
      printf(", \"results\": [\n");
    }
    progress_state ps;
    ps.tty = isatty(fileno(stderr));
    const int nclasses = nh * ns;
    int k = 0;
    for (int i = 0; i < nh; i++)
      for (int j = 0; j < ns; j++, k++) {
        clattn_tune_request r;
        clattn_tune_request_init(&r);
        r.algo = (clattn_algo)o.algo;
        r.variant = o.variant;
        r.feature_map = feature_map;
        r.num_features = num_features;
        r.dtype = (clattn_dtype)o.dtype;
        r.mask = (clattn_mask)o.mask;
        r.head_dim = hds ? hds[i] : def_hd;
        r.seq = seqs ? seqs[j] : def_seq;
        r.batch = o.batch;
        r.heads = o.heads;
        r.budget_seconds = o.budget / nclasses;
        r.space = o.space;
        r.seed = o.seed;
        r.flags =
            (o.exhaustive ? CLATTN_TUNE_EXHAUSTIVE : 0) | (o.no_store ? CLATTN_TUNE_NO_STORE : 0);
        char label[64];
        snprintf(label, sizeof label, "d=%d seq=%d", r.head_dim, r.seq);
        ps.label = label;
        r.progress = on_progress;
        r.user = &ps;
        clattn_tune_result res;
        clattn_status st = clattn_tune(ctx, &r, &res);
        if (ps.tty) fprintf(stderr, "\r\033[K");
        const char *msg = clattn_context_last_error(ctx);
        if (st != CLATTN_SUCCESS)
          exit_code = st == CLATTN_ERROR_VERIFY ? CLI_EXIT_VERIFY : CLI_EXIT_LIBRARY;
        if (o.json) {
          json_result(&res, st, msg);
          printf("%s\n", k + 1 < nclasses ? "," : "");
          continue;
        }
        printf("\n%s (timed at B=%d H=%d N=%d d=%d)\n",
               res.problem_class[0] ? res.problem_class : label, res.batch, res.heads, res.seq,
               res.head_dim);
        if (st != CLATTN_SUCCESS && !res.verified) {
          cli_print_error("tuning failed", st, msg);
          continue;
        }
        printf("  best      : %s  %.4f ms\n", res.best_config, res.best_ms);
        if (res.default_ms > 0)
          printf("  default   : %s  %.4f ms\n  speedup   : %.2fx\n", res.default_config,
                 res.default_ms, res.speedup);
        else
          printf("  default   : %s  (failed)\n", res.default_config);
        printf("  candidates: %d of %d legal%s, %d failed, %.1f s\n", res.tried, res.space_size,
               res.exhaustive ? " (all)" : "", res.failed, res.elapsed_s);
        printf("  verified  : %s (relative error %.2g)\n", res.verified ? "yes" : "NO",
               res.max_rel_error);
        printf("  stored    : %s\n", res.stored ? "yes" : o.no_store ? "no (--no-store)" : "no");
        if (st != CLATTN_SUCCESS) cli_print_error("storing failed", st, msg);
        fflush(stdout);
      }
    if (o.json) printf("]}\n");
  }
  if (o.export_file) {
    clattn_status st = clattn_tunedb_export(ctx, o.export_file);
    if (st != CLATTN_SUCCESS) {
      cli_print_error("export failed", st, clattn_context_last_error(ctx));
      exit_code = CLI_EXIT_LIBRARY;
    } else {
      fprintf(o.json ? stderr : stdout, "exported %s to %s\n", dbpath, o.export_file);
    }
  }
done:
  clattn_context_release(ctx);
  free(hds);
  free(seqs);
  return exit_code;
}
