/* peak.c — the CLI's --peak options, the measurement call and the JSON record of a peak. */
#include "cli.h"

#include <math.h>
#include <string.h>

void cli_peak_defaults(cli_peak_opts *o) {
  clattn_peak_request r;
  clattn_peak_request_init(&r);
  o->fma_ms = r.fma_ms;
  o->copy_bytes = r.copy_bytes;
  o->runs = r.runs;
}

int cli_check_peak_opts(const cli_peak_opts *o) {
  const char *why = NULL;
  if (!(o->fma_ms > 0) || o->fma_ms > 60000)
    why = "--peak-ms must be in (0, 60000]";
  else if (o->copy_bytes < 16 || o->copy_bytes > (uint64_t)SIZE_MAX)
    why = "--peak-copy-bytes must be >= 16";
  else if (o->runs < 1 || o->runs > 1000)
    why = "--peak-runs must be in 1..1000";
  if (!why) return 0;
  fprintf(stderr, "clattn: %s\n", why);
  return CLI_EXIT_USAGE;
}

clattn_status cli_measure_peak(clattn_context ctx, const cli_peak_opts *o, clattn_peak_result *r,
                               char *err, size_t cap) {
  clattn_peak_request req;
  clattn_peak_request_init(&req);
  req.fma_ms = o->fma_ms;
  req.copy_bytes = (size_t)o->copy_bytes;
  req.runs = o->runs;
  clattn_status st = clattn_measure_peak(ctx, &req, r);
  if (st != CLATTN_SUCCESS)
    snprintf(err, cap, "%s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
  return st;
}

void cli_json_peak(FILE *f, const clattn_peak_result *r) {
  fputs("{\"fma_gflops\": ", f);
  cli_json_number(f, r->fma_gflops);
  fputs(", \"copy_gbps\": ", f);
  cli_json_number(f, r->copy_gbps);
  fputs(", \"fma_ms\": ", f);
  cli_json_number(f, r->fma_ms);
  fputs(", \"fma_min_ms\": ", f);
  cli_json_number(f, r->fma_min_ms);
  fputs(", \"fma_max_ms\": ", f);
  cli_json_number(f, r->fma_max_ms);
  fputs(", \"copy_ms\": ", f);
  cli_json_number(f, r->copy_ms);
  fputs(", \"copy_min_ms\": ", f);
  cli_json_number(f, r->copy_min_ms);
  fputs(", \"copy_max_ms\": ", f);
  cli_json_number(f, r->copy_max_ms);
  fputs(", \"fma_flop\": ", f);
  cli_json_number(f, r->fma_flop);
  fprintf(f,
          ", \"fma_work_items\": %zu, \"fma_iterations\": %d, \"vector_width\": %d, "
          "\"copy_bytes\": %zu, \"runs\": %d}",
          r->fma_work_items, r->fma_iterations, r->vector_width, r->copy_bytes, r->runs);
}
