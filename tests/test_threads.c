/* test_threads.c — threading contract: concurrent first context creation, context release with live
 * plans. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/*
 * test_concurrent_create must be the first OpenCL use of the process (it
 * runs first and no group setup creates a context): some ICDs race in their
 * first platform enumeration, which the library serialises.
 */

enum { NTHREADS = 4 };

typedef struct create_job {
  pthread_barrier_t *start;
  clattn_context ctx;
  clattn_status st;
  char msg[256];
} create_job;

static void *create_thread(void *arg) {
  create_job *j = arg;
  pthread_barrier_wait(j->start);
  j->st = clattn_context_create("cpu", &j->ctx);
  if (j->st != CLATTN_SUCCESS) snprintf(j->msg, sizeof j->msg, "%s", clattn_last_create_error());
  return NULL;
}

/* Several threads create their first contexts at the same moment: all succeed. */
static void test_concurrent_create(void **state) {
  (void)state;
  pthread_barrier_t start;
  assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
  create_job jobs[NTHREADS];
  pthread_t th[NTHREADS];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < NTHREADS; i++) {
    jobs[i].start = &start;
    assert_int_equal(pthread_create(&th[i], NULL, create_thread, &jobs[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&start);
  int failed = -1;
  for (int i = 0; i < NTHREADS; i++) {
    if (jobs[i].st != CLATTN_SUCCESS) failed = i;
    clattn_context_release(jobs[i].ctx);
  }
  if (failed >= 0)
    fail_msg("thread %d: %s: %s", failed, clattn_status_string(jobs[failed].st), jobs[failed].msg);
}

/* clattn_context_release with live plans is deferred: the plans still
 * execute correctly, and the last plan release frees the context (the
 * sanitizer build checks for use after free and leaks). */
static void test_release_context_before_plans(void **state) {
  (void)state;
  clattn_context ctx = tu_new_context();
  assert_non_null(ctx);
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.seq_q = 5;
  d.seq_kv = 6;
  d.head_dim = 8;
  d.algo = CLATTN_ALGO_FLASH;
  tu_problem p;
  tu_report rep;
  if (tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 1, "threads/release_order", &rep))
    fail_msg("%s", rep.summary);
  clattn_plan a = NULL, b = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &a), CLATTN_SUCCESS);
  d.algo = CLATTN_ALGO_NAIVE;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &b), CLATTN_SUCCESS);
  clattn_context_release(ctx); /* deferred: a and b are alive */
  assert_int_equal(clattn_plan_execute(a, p.q, p.k, p.v, p.o, p.lse, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  if (tu_problem_compare(&p, clattn_plan_describe(a), &rep) || !tu_report_ok(&rep, 1))
    fail_msg("%s", rep.summary);
  clattn_plan_release(a);
  assert_int_equal(tu_problem_poison(&p), 0);
  assert_int_equal(clattn_plan_execute(b, p.q, p.k, p.v, p.o, p.lse, 0, NULL, NULL),
                   CLATTN_SUCCESS);
  if (tu_problem_compare(&p, clattn_plan_describe(b), &rep) || !tu_report_ok(&rep, 1))
    fail_msg("%s", rep.summary);
  tu_problem_free(&p);
  clattn_plan_release(b); /* the last plan: frees the context */
}

int main(int argc, char **argv) {
  if (tu_parse_filter_args(argc, argv)) return 2;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_create),
      cmocka_unit_test(test_release_context_before_plans),
  };
  return cmocka_run_group_tests_name("clattn threads", tests, NULL, NULL);
}
