/* timing.c — times whole plan executions with OpenCL profiling events, and summary statistics. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/*
 * How a run is timed.
 *
 * A plan may enqueue several commands (the naive family: CLBlast GEMM
 * kernels, the softmax kernel, another GEMM) and returns the event of the
 * last one only, so that event's START..END misses the earlier commands.
 * We therefore enqueue a marker (clEnqueueMarkerWithWaitList) just before
 * each execution on the in-order, profiling-enabled queue. The marker
 * completes once every earlier command has completed, so its END is the
 * moment the plan's first command may start, and
 *
 *     time(run i) = END(last event of run i) - END(marker i).
 *
 * The warm-up and timed runs are all enqueued back to back (with clFlush,
 * no host wait in between), so the device is still busy with run i-1 while
 * the host enqueues run i: the host's enqueue cost is hidden as it is in a
 * real pipelined stream, and only shows when the host is slower than the
 * device (then it is a real cost of the plan). We do not gate the queue
 * with a user event instead, because a plan may legitimately block inside
 * its enqueue (CLBlast's batched GEMM uploads its offset tables with a
 * blocking write), which would deadlock behind a gate.
 *
 * Fallback, where markers carry no profiling data: run i's time is
 * END(last event of run i) - END(last event of run i-1) (again valid since
 * the runs are back to back), and for the first timed run with no warm-up
 * before it, START..END of its last event.
 */

static const char *method_marker = "END(plan's last event) - END(marker enqueued before it), runs "
                                   "back to back on an in-order profiling queue";
static const char *method_chain = "END(plan's last event) - END(previous run's last event), runs "
                                  "back to back on an in-order profiling queue";

static cl_int prof(cl_event e, cl_profiling_info what, cl_ulong *t) {
  *t = 0;
  return clGetEventProfilingInfo(e, what, sizeof *t, t, NULL);
}

static void release_events(cl_event *e, int n) {
  for (int i = 0; i < n; i++)
    if (e[i]) clReleaseEvent(e[i]);
}

/* One execution: clattn_plan_execute, or _ex with a bias tensor. */
static clattn_status exec1(clattn_plan plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
                           cl_mem bias, cl_event *ev) {
  if (!bias) return clattn_plan_execute(plan, q, k, v, o, lse, 0, NULL, ev);
  const clattn_exec_args a = {.q = q, .k = k, .v = v, .o = o, .lse = lse, .bias = bias};
  return clattn_plan_execute_ex(plan, &a, 0, NULL, ev);
}

clattn_status cli_time_plan(clattn_context ctx, clattn_plan plan, cl_mem q, cl_mem k, cl_mem v,
                            cl_mem o, cl_mem lse, cl_mem bias, int warmup, int reps,
                            double *times_ms, const char **method, char *msg, size_t cap) {
  cl_command_queue queue = clattn_context_queue(ctx);
  /* ev[0] is the last warm-up run's event (NULL without warm-up); ev[1 + i]
   * and mk[i] belong to timed run i. */
  cl_event *ev = calloc((size_t)reps + 1, sizeof *ev);
  cl_event *mk = calloc((size_t)reps, sizeof *mk);
  clattn_status st = CLATTN_SUCCESS;
  cl_int err = CL_SUCCESS;
  const char *failed = NULL;
  msg[0] = 0;
  if (!ev || !mk) {
    free(ev);
    free(mk);
    snprintf(msg, cap, "cannot allocate %d events on the host", 2 * reps + 1);
    return CLATTN_ERROR_OUT_OF_MEMORY;
  }
  for (int i = 0; i < warmup && st == CLATTN_SUCCESS && !failed; i++) {
    if (ev[0]) clReleaseEvent(ev[0]);
    ev[0] = NULL;
    st = exec1(plan, q, k, v, o, lse, bias, &ev[0]);
    if (st == CLATTN_SUCCESS && (err = clFlush(queue)) != CL_SUCCESS) failed = "clFlush";
  }
  for (int i = 0; i < reps && st == CLATTN_SUCCESS && !failed; i++) {
    if ((err = clEnqueueMarkerWithWaitList(queue, 0, NULL, &mk[i])) != CL_SUCCESS) {
      failed = "clEnqueueMarkerWithWaitList";
      break;
    }
    st = exec1(plan, q, k, v, o, lse, bias, &ev[1 + i]);
    if (st == CLATTN_SUCCESS && (err = clFlush(queue)) != CL_SUCCESS) failed = "clFlush";
  }
  if (st != CLATTN_SUCCESS) snprintf(msg, cap, "%s", clattn_context_last_error(ctx));
  if (st == CLATTN_SUCCESS && !failed && (err = clFinish(queue)) != CL_SUCCESS) failed = "clFinish";

  /* Marker method, if every marker has sane profiling data. */
  bool markers_ok = true;
  for (int i = 0; i < reps && st == CLATTN_SUCCESS && !failed; i++) {
    cl_ulong m_end, prev_end = 0, end;
    if ((err = prof(ev[1 + i], CL_PROFILING_COMMAND_END, &end)) != CL_SUCCESS) {
      failed = "clGetEventProfilingInfo(CL_PROFILING_COMMAND_END)";
      break;
    }
    if (ev[i] && prof(ev[i], CL_PROFILING_COMMAND_END, &prev_end) != CL_SUCCESS) prev_end = 0;
    if (prof(mk[i], CL_PROFILING_COMMAND_END, &m_end) != CL_SUCCESS || m_end == 0 || m_end > end ||
        m_end < prev_end) {
      markers_ok = false;
      break;
    }
    times_ms[i] = (double)(end - m_end) * 1e-6;
  }
  /* Chain method otherwise. */
  for (int i = 0; !markers_ok && i < reps && st == CLATTN_SUCCESS && !failed; i++) {
    cl_ulong a = 0, b = 0;
    err = ev[i] ? prof(ev[i], CL_PROFILING_COMMAND_END, &a)
                : prof(ev[1 + i], CL_PROFILING_COMMAND_START, &a);
    if (err == CL_SUCCESS) err = prof(ev[1 + i], CL_PROFILING_COMMAND_END, &b);
    if (err != CL_SUCCESS) failed = "clGetEventProfilingInfo";
    times_ms[i] = b >= a ? (double)(b - a) * 1e-6 : 0.0;
  }
  if (st == CLATTN_SUCCESS && failed) {
    st = (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
          err == CL_OUT_OF_RESOURCES)
             ? CLATTN_ERROR_OUT_OF_MEMORY
             : CLATTN_ERROR_OPENCL;
    snprintf(msg, cap, "%s failed with OpenCL error %d while timing the plan", failed, (int)err);
  }
  if (st != CLATTN_SUCCESS) clFinish(queue);
  *method = markers_ok ? method_marker : method_chain;
  release_events(ev, reps + 1);
  release_events(mk, reps);
  free(ev);
  free(mk);
  return st;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void cli_stats(double *v, int n, double *median, double *min, double *max) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  *min = v[0];
  *max = v[n - 1];
  *median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
