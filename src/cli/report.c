/* report.c — JSON and CSV records of a measured point, error printing and byte formatting. */
#include "cli.h"

#include <math.h>
#include <string.h>

void cli_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *c = (const unsigned char *)s; c && *c; c++) {
    switch (*c) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      if (*c < 0x20)
        fprintf(f, "\\u%04x", *c);
      else
        fputc(*c, f);
    }
  }
  fputc('"', f);
}

void cli_json_number(FILE *f, double x) {
  if (isfinite(x))
    fprintf(f, "%.9g", x);
  else
    fputs("null", f);
}

static const char *name_of(const char *const *names, int i) {
  for (int k = 0; names[k]; k++)
    if (k == i) return names[k];
  return "?";
}

static int kv_heads_of(const clattn_attention_desc *d) {
  return d->kv_heads ? d->kv_heads : d->heads;
}

static double scale_of(const clattn_attention_desc *d) {
  return d->scale != 0.0 ? d->scale : 1.0 / sqrt((double)d->head_dim);
}

void cli_json_result(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                     double speedup) {
  cli_json_result_peak(f, device, p, r, speedup, NULL);
}

void cli_json_result_peak(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                          double speedup, const clattn_peak_result *peak) {
  const clattn_attention_desc *d = &p->desc;
  fputs("{\"device\": ", f);
  cli_json_string(f, device);
  fputs(", \"algo\": ", f);
  cli_json_string(f, name_of(cli_algo_names, (int)r->algo));
  if (p->backward) fputs(", \"pass\": \"backward\"", f);
  fputs(", \"config\": ", f);
  cli_json_string(f, r->describe);
  fputs(", \"dtype\": ", f);
  cli_json_string(f, name_of(cli_dtype_names, (int)d->dtype));
  fprintf(f, ", \"batch\": %d, \"heads\": %d, \"kv_heads\": %d", d->batch, d->heads,
          kv_heads_of(d));
  fprintf(f, ", \"seq_q\": %d, \"seq_kv\": %d, \"head_dim\": %d", d->seq_q, d->seq_kv, d->head_dim);
  char mask[160];
  fputs(", \"mask\": ", f);
  cli_json_string(f, cli_mask_string(d, mask, sizeof mask));
  fputs(", \"layout\": ", f);
  cli_json_string(f, name_of(cli_layout_names, (int)d->layout));
  fputs(", \"scale\": ", f);
  cli_json_number(f, scale_of(d));
  fprintf(f, ", \"lse\": %s, \"reps\": %d, \"warmup\": %d", p->lse ? "true" : "false", p->reps,
          p->warmup);
  fputs(", \"median_ms\": ", f);
  cli_json_number(f, r->median_ms);
  fputs(", \"min_ms\": ", f);
  cli_json_number(f, r->min_ms);
  fputs(", \"max_ms\": ", f);
  cli_json_number(f, r->max_ms);
  fputs(", \"flops\": ", f);
  cli_json_number(f, r->flops);
  fputs(", \"tflops\": ", f);
  cli_json_number(f, r->tflops);
  fputs(", \"gbps\": ", f);
  cli_json_number(f, r->gbps);
  if (r->nkernels) {
    fputs(", \"kernels\": {", f);
    for (int i = 0; i < r->nkernels; i++) {
      if (i) fputs(", ", f);
      cli_json_string(f, r->kernel_names[i]);
      fputs(": ", f);
      cli_json_number(f, r->kernel_ms[i]);
    }
    fputs("}", f);
  }
  if (!isnan(speedup)) {
    fputs(", \"speedup_vs_naive\": ", f);
    cli_json_number(f, speedup);
  }
  fprintf(f, ", \"io_bytes\": %llu, \"mem_bytes\": %llu, \"workspace_bytes\": %llu",
          (unsigned long long)r->io_bytes, (unsigned long long)r->mem_bytes,
          (unsigned long long)r->workspace_bytes);
  if (p->reserve_bytes)
    fprintf(f, ", \"reserve_bytes\": %llu", (unsigned long long)p->reserve_bytes);
  fputs(", \"max_abs_err\": ", f);
  cli_json_number(f, r->verified ? r->max_abs_err : NAN);
  fputs(", \"rel_err\": ", f);
  cli_json_number(f, r->verified ? r->rel_err : NAN);
  if (p->lse) {
    fputs(", \"lse_max_abs_err\": ", f);
    cli_json_number(f, r->verified ? r->lse_max_abs_err : NAN);
  }
  fputs(", \"tolerance\": ", f);
  cli_json_number(f, r->tolerance);
  fprintf(f, ", \"rows_checked\": %ld, \"heads_checked\": %ld", r->verified ? r->rows_checked : 0,
          r->verified ? r->heads_checked : 0);
  fprintf(f, ", \"nan_found\": %s", r->nan_found ? "true" : "false");
  fprintf(f, ", \"verified\": %s", r->verified ? (r->passed ? "true" : "false") : "null");
  if (r->compared) {
    fputs(", \"softmax_rel_err\": ", f);
    cli_json_number(f, r->approx_rel_err);
    fputs(", \"softmax_mean_cosine\": ", f);
    cli_json_number(f, r->approx_cos);
  }
  if (d->algo == CLATTN_ALGO_LINEAR) {
    static const char *const maps[] = {"elu", "relu", "favor"};
    fprintf(f, ", \"feature\": \"%s\", \"num_features\": %d, \"feature_seed\": %llu",
            maps[(int)d->feature_map % 3], d->num_features, (unsigned long long)d->feature_seed);
  }
  fprintf(f, ", \"seed\": %llu", (unsigned long long)p->seed);
  fputs(", \"timing\": ", f);
  cli_json_string(f, r->timing);
  if (r->status != CLATTN_SUCCESS) {
    fputs(", \"error\": ", f);
    cli_json_string(f, clattn_status_string(r->status));
    if (r->oom) fprintf(f, ", \"needed_bytes\": %llu", (unsigned long long)r->needed_bytes);
    fputs(", \"message\": ", f);
    cli_json_string(f, r->error);
  }
  if (peak) {
    fputs(", \"peak\": ", f);
    cli_json_peak(f, peak);
  }
  fputc('}', f);
}

void cli_csv_header(FILE *f) {
  fputs("device,algo,config,dtype,batch,heads,kv_heads,seq_q,seq_kv,head_dim,mask,layout,reps,"
        "median_ms,min_ms,max_ms,tflops,gbps,mem_bytes,workspace_bytes,speedup_vs_naive,"
        "max_abs_err,rel_err,verified,seed,error,needed_bytes,feature,flops,io_bytes,"
        "peak_fma_gflops,peak_copy_gbps\n",
        f);
}

/* A CSV field: quoted, with quotes doubled. */
static void csv_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s == '\n' ? ' ' : *s, f);
  }
  fputs("\",", f);
}

static void csv_number(FILE *f, double x, char sep) {
  if (isfinite(x)) fprintf(f, "%.9g", x);
  fputc(sep, f);
}

void cli_csv_row(FILE *f, const char *device, const cli_problem *p, const cli_result *r,
                 double speedup, const clattn_peak_result *peak) {
  const clattn_attention_desc *d = &p->desc;
  char mask[160];
  csv_string(f, device);
  fprintf(f, "%s,", name_of(cli_algo_names, (int)r->algo));
  csv_string(f, r->describe);
  fprintf(f, "%s,%d,%d,%d,%d,%d,%d,", name_of(cli_dtype_names, (int)d->dtype), d->batch, d->heads,
          kv_heads_of(d), d->seq_q, d->seq_kv, d->head_dim);
  csv_string(f, cli_mask_string(d, mask, sizeof mask)); /* sparse masks hold commas */
  fprintf(f, "%s,%d,", name_of(cli_layout_names, (int)d->layout), p->reps);
  csv_number(f, r->median_ms, ',');
  csv_number(f, r->min_ms, ',');
  csv_number(f, r->max_ms, ',');
  csv_number(f, r->tflops, ',');
  csv_number(f, r->gbps, ',');
  fprintf(f, "%llu,%llu,", (unsigned long long)r->mem_bytes,
          (unsigned long long)r->workspace_bytes);
  csv_number(f, speedup, ',');
  csv_number(f, r->verified ? r->max_abs_err : NAN, ',');
  csv_number(f, r->verified ? r->rel_err : NAN, ',');
  fprintf(f, "%s,%llu,", r->verified ? (r->passed ? "true" : "false") : "",
          (unsigned long long)p->seed);
  csv_string(f, r->status != CLATTN_SUCCESS ? clattn_status_string(r->status) : "");
  if (r->oom) fprintf(f, "%llu", (unsigned long long)r->needed_bytes);
  fputc(',', f);
  if (d->algo == CLATTN_ALGO_LINEAR) {
    char feat[48];
    if (d->feature_map == CLATTN_FEATURE_FAVOR)
      snprintf(feat, sizeof feat, "favor:%d", d->num_features ? d->num_features : d->head_dim);
    else
      snprintf(feat, sizeof feat, "%s", d->feature_map == CLATTN_FEATURE_RELU ? "relu" : "elu");
    fputs(feat, f);
  }
  fputc(',', f);
  csv_number(f, r->flops, ',');
  fprintf(f, "%llu,", (unsigned long long)r->io_bytes);
  csv_number(f, peak ? peak->fma_gflops : NAN, ',');
  csv_number(f, peak ? peak->copy_gbps : NAN, '\n');
}

void cli_print_error(const char *what, clattn_status st, const char *msg) {
  fprintf(stderr, "clattn: %s: %s%s%s\n", what, clattn_status_string(st), msg && *msg ? ": " : "",
          msg ? msg : "");
}

const char *cli_fmt_bytes(uint64_t bytes, bool exact, char *buf, size_t cap) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double x = (double)bytes;
  int u = 0;
  while (x >= 1024.0 && u < 4) {
    x /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
  else if (exact)
    snprintf(buf, cap, "%llu (%.1f %s)", (unsigned long long)bytes, x, units[u]);
  else
    snprintf(buf, cap, "%.1f %s", x, units[u]);
  return buf;
}
