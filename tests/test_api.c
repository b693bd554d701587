/* test_api.c — the public API contract: validation and messages, contexts, plans, events, env. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CLATTN_TEST_KERNEL_DIR
#error "CLATTN_TEST_KERNEL_DIR (the source tree's cl/ directory) must be defined"
#endif

/* A small valid problem; head dim 16 keeps kernel builds short. */
static clattn_attention_desc small_desc(clattn_algo algo) {
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = 2;
  d.heads = 4;
  d.kv_heads = 2;
  d.seq_q = 7;
  d.seq_kv = 9;
  d.head_dim = 16;
  d.mask = CLATTN_MASK_CAUSAL;
  d.algo = algo;
  return d;
}

#define ASSERT_MSG_HAS(ctx, needle)                                                                \
  do {                                                                                             \
    const char *m_ = clattn_context_last_error(ctx);                                               \
    if (!strstr(m_, (needle))) fail_msg("message '%s' does not mention '%s'", m_, (needle));       \
  } while (0)

/* Saves and restores one environment variable around a test. */
typedef struct saved_env {
  const char *name;
  char *value; /* NULL when unset */
} saved_env;
static saved_env env_save(const char *name) {
  saved_env s = {name, NULL};
  const char *v = getenv(name);
  if (v) s.value = strdup(v);
  return s;
}
static void env_restore(saved_env *s) {
  if (s->value)
    setenv(s->name, s->value, 1);
  else
    unsetenv(s->name);
  free(s->value);
  s->value = NULL;
}

/* ------------------------------------------------------------------------ */

static void test_version(void **state) {
  (void)state;
  assert_int_equal(clattn_version(), CLATTN_VERSION_HEX);
  assert_int_equal(CLATTN_VERSION_HEX, CLATTN_VERSION_MAJOR * 10000 + CLATTN_VERSION_MINOR * 100 +
                                           CLATTN_VERSION_PATCH);
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", CLATTN_VERSION_MAJOR, CLATTN_VERSION_MINOR,
           CLATTN_VERSION_PATCH);
  assert_string_equal(clattn_version_string(), want);
}

static void test_status_strings(void **state) {
  (void)state;
  static const clattn_status all[] = {CLATTN_SUCCESS,           CLATTN_ERROR_INVALID_ARGUMENT,
                                      CLATTN_ERROR_UNSUPPORTED, CLATTN_ERROR_OUT_OF_MEMORY,
                                      CLATTN_ERROR_OPENCL,      CLATTN_ERROR_BUILD,
                                      CLATTN_ERROR_NO_DEVICE,   CLATTN_ERROR_IO,
                                      CLATTN_ERROR_VERIFY,      CLATTN_ERROR_INTERNAL};
  const size_t n = sizeof all / sizeof *all;
  for (size_t i = 0; i < n; i++) {
    const char *s = clattn_status_string(all[i]);
    assert_non_null(s);
    assert_true(strlen(s) > 0);
    assert_string_not_equal(s, "unknown status");
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(s, clattn_status_string(all[j]));
  }
  assert_string_equal(clattn_status_string(CLATTN_SUCCESS), "success");
  assert_string_equal(clattn_status_string(CLATTN_ERROR_INVALID_ARGUMENT), "invalid argument");
  assert_string_equal(clattn_status_string((clattn_status)1), "unknown status");
  assert_string_equal(clattn_status_string((clattn_status)-10), "unknown status");
  assert_string_equal(clattn_status_string((clattn_status)12345), "unknown status");
}

static void test_desc_defaults_and_strides(void **state) {
  (void)state;
  clattn_attention_desc d;
  memset(&d, 0x5a, sizeof d);
  clattn_attention_desc_init(&d);
  clattn_attention_desc_init(NULL); /* ignored */
  assert_int_equal(d.batch, 1);
  assert_int_equal(d.heads, 1);
  assert_int_equal(d.kv_heads, 0);
  assert_int_equal(d.seq_q, 1);
  assert_int_equal(d.seq_kv, 1);
  assert_int_equal(d.head_dim, 64);
  assert_int_equal(d.dtype, CLATTN_DTYPE_F32);
  assert_int_equal(d.layout, CLATTN_LAYOUT_BHSD);
  assert_int_equal(d.mask, CLATTN_MASK_NONE);
  assert_int_equal(d.algo, CLATTN_ALGO_AUTO);
  assert_true(d.scale == 0.0);

  d = small_desc(CLATTN_ALGO_AUTO); /* B2 H4 Hk2 Nq7 Nk9 d16 */
  clattn_strides q, k, v, o;
  size_t e[4];
  assert_int_equal(clattn_attention_desc_strides(&d, &q, &k, &v, &o, e), CLATTN_SUCCESS);
  assert_int_equal(q.dim, 1);
  assert_int_equal(q.seq, 16);
  assert_int_equal(q.head, 7 * 16);
  assert_int_equal(q.batch, 4 * 7 * 16);
  assert_int_equal(k.seq, 16);
  assert_int_equal(k.head, 9 * 16);
  assert_int_equal(k.batch, 2 * 9 * 16);
  assert_memory_equal(&k, &v, sizeof k);
  assert_memory_equal(&q, &o, sizeof q);
  assert_int_equal(e[0], 2 * 4 * 7 * 16);
  assert_int_equal(e[1], 2 * 2 * 9 * 16);
  assert_int_equal(e[2], 2 * 2 * 9 * 16);
  assert_int_equal(e[3], 2 * 4 * 7 * 16);

  d.layout = CLATTN_LAYOUT_BSHD;
  assert_int_equal(clattn_attention_desc_strides(&d, &q, &k, NULL, NULL, e), CLATTN_SUCCESS);
  assert_int_equal(q.dim, 1);
  assert_int_equal(q.head, 16);
  assert_int_equal(q.seq, 4 * 16);
  assert_int_equal(q.batch, 7 * 4 * 16);
  assert_int_equal(k.head, 16);
  assert_int_equal(k.seq, 2 * 16);
  assert_int_equal(k.batch, 9 * 2 * 16);
  assert_int_equal(e[1], 2 * 2 * 9 * 16);

  /* STRIDED copies the strides; the element count is the span. */
  d.layout = CLATTN_LAYOUT_STRIDED;
  d.q_strides = (clattn_strides){1000, 100, 10, 1};
  d.k_strides = d.v_strides = (clattn_strides){500, 3, 30, 300};
  d.o_strides = (clattn_strides){2000, 200, 20, 1};
  assert_int_equal(clattn_attention_desc_strides(&d, &q, &k, &v, &o, e), CLATTN_SUCCESS);
  assert_memory_equal(&q, &d.q_strides, sizeof q);
  assert_memory_equal(&k, &d.k_strides, sizeof k);
  assert_memory_equal(&o, &d.o_strides, sizeof o);
  assert_int_equal(e[0], 1000 + 3 * 100 + 6 * 10 + 15 + 1);
  assert_int_equal(e[1], 500 + 1 * 3 + 8 * 30 + 15 * 300 + 1);
  assert_int_equal(e[3], 2000 + 3 * 200 + 6 * 20 + 15 + 1);
}

/* One invalid descriptor: the mutation, and a substring the message must contain. */
typedef struct bad_desc {
  const char *what;
  void (*mutate)(clattn_attention_desc *);
  const char *needle;
} bad_desc;

#define MUT(name, body)                                                                            \
  static void name(clattn_attention_desc *d) { body; }
MUT(m_batch0, d->batch = 0)
MUT(m_batchneg, d->batch = -3)
MUT(m_heads0, d->heads = 0)
MUT(m_headsneg, d->heads = -1)
MUT(m_kvneg, d->kv_heads = -2)
MUT(m_kvnodiv, d->kv_heads = 3)
MUT(m_kvgt, d->kv_heads = 8)
MUT(m_seqq0, d->seq_q = 0)
MUT(m_seqqneg, d->seq_q = -7)
MUT(m_seqkv0, d->seq_kv = 0)
MUT(m_seqkvneg, d->seq_kv = -1)
MUT(m_hd0, d->head_dim = 0)
MUT(m_hdneg, d->head_dim = -16)
MUT(m_hd257, d->head_dim = 257)
MUT(m_dtype, d->dtype = (clattn_dtype)3)
MUT(m_dtypeneg, d->dtype = (clattn_dtype)-1)
MUT(m_layout, d->layout = (clattn_layout)3)
MUT(m_mask, d->mask = (clattn_mask)8)
MUT(m_maskneg, d->mask = (clattn_mask)-1)
MUT(m_algo, d->algo = (clattn_algo)4)
MUT(m_fmap, d->feature_map = (clattn_feature_map)3)
MUT(m_scalenan, d->scale = NAN)
MUT(m_scaleinf, d->scale = INFINITY)
MUT(m_scaleninf, d->scale = -INFINITY)
static void strided(clattn_attention_desc *d) {
  clattn_strides q, k, v, o;
  clattn_attention_desc_strides(d, &q, &k, &v, &o, NULL);
  d->layout = CLATTN_LAYOUT_STRIDED;
  d->q_strides = q;
  d->k_strides = k;
  d->v_strides = v;
  d->o_strides = o;
}
MUT(m_qstride, strided(d); d->q_strides.seq = -16)
MUT(m_kstride, strided(d); d->k_strides.dim = -1)
MUT(m_vstride, strided(d); d->v_strides.batch = -1)
MUT(m_ostride, strided(d); d->o_strides.head = -5)
MUT(m_oalias, strided(d); d->o_strides.seq = 0)
MUT(m_overflow, strided(d); d->q_strides.batch = INT64_MAX / 2)
MUT(m_ooverlap, strided(d); d->o_strides.seq = 1; d->o_strides.dim = 1)
MUT(m_ointerleave, strided(d); d->o_strides.seq = 8) /* rows overlap half a row (dim 16) */
MUT(m_scalef32, d->scale = 1e39)
MUT(m_scalelog2e, d->scale = -3.0e38) /* finite in f32, scale*log2(e) is not */
MUT(m_hugesizes, d->batch = d->heads = d->kv_heads = d->seq_q = d->seq_kv = INT_MAX;
    d->head_dim = 256)

static const bad_desc bad_descs[] = {
    {"batch 0", m_batch0, "batch"},
    {"batch -3", m_batchneg, "batch"},
    {"heads 0", m_heads0, "heads"},
    {"heads -1", m_headsneg, "heads"},
    {"kv_heads -2", m_kvneg, "kv_heads"},
    {"kv_heads 3 (does not divide 4)", m_kvnodiv, "kv_heads"},
    {"kv_heads 8 > heads 4", m_kvgt, "kv_heads"},
    {"seq_q 0", m_seqq0, "seq_q"},
    {"seq_q -7", m_seqqneg, "seq_q"},
    {"seq_kv 0", m_seqkv0, "seq_kv"},
    {"seq_kv -1", m_seqkvneg, "seq_kv"},
    {"head_dim 0", m_hd0, "head_dim"},
    {"head_dim -16", m_hdneg, "head_dim"},
    {"head_dim 257", m_hd257, "head_dim"},
    {"dtype 3", m_dtype, "dtype"},
    {"dtype -1", m_dtypeneg, "dtype"},
    {"layout 3", m_layout, "layout"},
    {"mask 8", m_mask, "mask"},
    {"mask -1", m_maskneg, "mask"},
    {"algo 4", m_algo, "algo"},
    {"feature_map 3", m_fmap, "feature_map"},
    {"scale NaN", m_scalenan, "scale"},
    {"scale inf", m_scaleinf, "scale"},
    {"scale -inf", m_scaleninf, "scale"},
    {"q seq stride -16", m_qstride, "q_strides"},
    {"k dim stride -1", m_kstride, "k_strides"},
    {"v batch stride -1", m_vstride, "v_strides"},
    {"o head stride -5", m_ostride, "o_strides"},
    {"o seq stride 0 (aliasing rows)", m_oalias, "o_strides"},
    {"q batch stride overflowing", m_overflow, "overflow"},
    {"o seq = dim stride 1 (overlapping rows)", m_ooverlap, "o_strides"},
    {"o seq stride 8 < row extent 16", m_ointerleave, "o_strides"},
    {"scale 1e39 (not finite in f32)", m_scalef32, "scale"},
    {"scale -3e38 (scale*log2e not finite in f32)", m_scalelog2e, "scale"},
    {"batch = heads = seq = INT_MAX, head_dim 256", m_hugesizes, "overflow"},
};

static void test_invalid_descriptors(void **state) {
  clattn_context ctx = *state;
  for (size_t i = 0; i < sizeof bad_descs / sizeof *bad_descs; i++) {
    for (int algo = CLATTN_ALGO_AUTO; algo <= CLATTN_ALGO_NAIVE; algo++) {
      clattn_attention_desc d = small_desc((clattn_algo)algo);
      bad_descs[i].mutate(&d);
      clattn_plan plan = (clattn_plan)(uintptr_t)0x1;
      clattn_status st = clattn_plan_create(ctx, &d, 0, &plan);
      if (st != CLATTN_ERROR_INVALID_ARGUMENT)
        fail_msg("%s (algo %d): got %s (%s)", bad_descs[i].what, algo, clattn_status_string(st),
                 clattn_context_last_error(ctx));
      assert_null(plan);
      const char *msg = clattn_context_last_error(ctx);
      if (!strstr(msg, bad_descs[i].needle))
        fail_msg("%s: message '%s' does not name '%s'", bad_descs[i].what, msg,
                 bad_descs[i].needle);
      /* The same validation without a context. */
      assert_int_equal(clattn_attention_desc_strides(&d, NULL, NULL, NULL, NULL, NULL),
                       CLATTN_ERROR_INVALID_ARGUMENT);
      float x[4] = {0};
      double o[4];
      assert_int_equal(clattn_reference_attention(&d, x, x, x, o, NULL, NULL, 0),
                       CLATTN_ERROR_INVALID_ARGUMENT);
    }
  }
  /* Unknown plan flags. */
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0x80, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  ASSERT_MSG_HAS(ctx, "flags");
}

/* 16-bit storage: the auto, flash and naive families plan it and say so in
 * describe (their 16-bit results are checked in test_flash and test_naive). */
static void test_16bit_dtypes(void **state) {
  clattn_context ctx = *state;
  static const struct {
    clattn_dtype t;
    const char *name;
  } types[] = {{CLATTN_DTYPE_F16, "f16"}, {CLATTN_DTYPE_BF16, "bf16"}};
  for (size_t i = 0; i < 2; i++)
    for (int algo = CLATTN_ALGO_AUTO; algo <= CLATTN_ALGO_NAIVE; algo++) {
      clattn_attention_desc d = small_desc((clattn_algo)algo);
      d.dtype = types[i].t;
      clattn_plan plan = NULL;
      clattn_status st = clattn_plan_create(ctx, &d, 0, &plan);
      if (st != CLATTN_SUCCESS)
        fail_msg("%s with algo %d: got %s: %s", types[i].name, algo, clattn_status_string(st),
                 clattn_context_last_error(ctx));
      if (!strstr(clattn_plan_describe(plan), types[i].name))
        fail_msg("describe does not name %s: %s", types[i].name, clattn_plan_describe(plan));
      clattn_plan_release(plan);
    }
}

static void test_null_pointers(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(NULL, &d, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  assert_int_equal(clattn_plan_create(ctx, NULL, 0, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(plan);
  ASSERT_MSG_HAS(ctx, "desc");
  assert_int_equal(clattn_plan_create(ctx, &d, 0, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_MSG_HAS(ctx, "out");
  assert_int_equal(clattn_plan_execute(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_context_create("cpu", NULL), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_true(strlen(clattn_last_create_error()) > 0);
  clattn_context c2 = (clattn_context)(uintptr_t)0x1;
  assert_int_equal(clattn_context_create_from_queue(NULL, &c2), CLATTN_ERROR_INVALID_ARGUMENT);
  assert_null(c2);
  assert_non_null(strstr(clattn_last_create_error(), "queue"));
  assert_int_equal(clattn_context_create_from_queue(clattn_context_queue(ctx), NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_attention_desc_strides(NULL, NULL, NULL, NULL, NULL, NULL),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  float x[16 * 16] = {0};
  double o[16 * 16];
  clattn_attention_desc one;
  clattn_attention_desc_init(&one);
  one.head_dim = 16;
  assert_int_equal(clattn_reference_attention(NULL, x, x, x, o, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_reference_attention(&one, NULL, x, x, o, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_reference_attention(&one, x, x, x, NULL, NULL, NULL, 0),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  const int bad_row = 1;
  assert_int_equal(clattn_reference_attention(&one, x, x, x, o, NULL, &bad_row, 1),
                   CLATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(clattn_reference_attention(&one, x, x, x, o, NULL, NULL, 0), CLATTN_SUCCESS);

  /* Accessors and releases accept NULL. */
  assert_null(clattn_context_queue(NULL));
  assert_null(clattn_context_device(NULL));
  assert_null(clattn_context_cl_context(NULL));
  assert_string_equal(clattn_context_device_name(NULL), "");
  assert_string_equal(clattn_context_last_error(NULL), "");
  assert_string_equal(clattn_plan_describe(NULL), "");
  assert_int_equal(clattn_plan_workspace_size(NULL), 0);
  assert_null(clattn_plan_desc(NULL));
  clattn_plan_release(NULL);
  clattn_context_release(NULL);
}

/* Buffer size, aliasing and wait-list checks of execute (flash and naive). */
static void test_execute_argument_checks(void **state) {
  clattn_context ctx = *state;
  for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_NAIVE; algo++) {
    clattn_attention_desc d = small_desc((clattn_algo)algo);
    tu_problem p;
    tu_report rep;
    if (tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 1, "api/execute_checks", &rep))
      fail_msg("%s", rep.summary);
    clattn_plan plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_LAZY_WORKSPACE, &plan),
                     CLATTN_SUCCESS);
    cl_context cl = clattn_context_cl_context(ctx);
    cl_int err;
    /* One buffer 4 bytes short for each argument. */
    const size_t need[5] = {p.elems[0] * 4, p.elems[1] * 4, p.elems[2] * 4, p.elems[3] * 4,
                            p.nlse * 4};
    static const char *names[5] = {"q", "k", "v", "o", "lse"};
    for (int a = 0; a < 5; a++) {
      cl_mem small = clCreateBuffer(cl, CL_MEM_READ_WRITE, need[a] - 4, NULL, &err);
      assert_int_equal(err, CL_SUCCESS);
      cl_mem args[5] = {p.q, p.k, p.v, p.o, p.lse};
      args[a] = small;
      assert_int_equal(
          clattn_plan_execute(plan, args[0], args[1], args[2], args[3], args[4], 0, NULL, NULL),
          CLATTN_ERROR_INVALID_ARGUMENT);
      const char *msg = clattn_context_last_error(ctx);
      char want[64];
      snprintf(want, sizeof want, "%s holds %zu bytes", names[a], need[a] - 4);
      if (!strstr(msg, want)) fail_msg("message '%s' lacks '%s'", msg, want);
      clReleaseMemObject(small);
      /* NULL in place of a required buffer. */
      if (a < 4) {
        args[a] = NULL;
        assert_int_equal(
            clattn_plan_execute(plan, args[0], args[1], args[2], args[3], args[4], 0, NULL, NULL),
            CLATTN_ERROR_INVALID_ARGUMENT);
        char nul[16];
        snprintf(nul, sizeof nul, "%s is NULL", names[a]);
        ASSERT_MSG_HAS(ctx, nul);
      }
    }
    /* o aliasing q, k or v (all the same size here: q and o have one shape). */
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.q, NULL, 0, NULL, NULL),
                     CLATTN_ERROR_INVALID_ARGUMENT);
    ASSERT_MSG_HAS(ctx, "alias");
    /* lse aliasing an input or o (each at least as large as lse here), also
     * through a sub-buffer of o. */
    cl_mem alias_of[4] = {p.q, p.k, p.v, p.o};
    for (int a = 0; a < 4; a++) {
      assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, alias_of[a], 0, NULL, NULL),
                       CLATTN_ERROR_INVALID_ARGUMENT);
      ASSERT_MSG_HAS(ctx, "lse must not alias");
    }
    cl_buffer_region region = {0, need[4]};
    cl_mem sub =
        clCreateSubBuffer(p.o, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, sub, 0, NULL, NULL),
                     CLATTN_ERROR_INVALID_ARGUMENT);
    ASSERT_MSG_HAS(ctx, "lse must not alias");
    clReleaseMemObject(sub);
    /* A buffer of another cl_context (same device) in each position. */
    cl_device_id dev = clattn_context_device(ctx);
    cl_context other = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    for (int a = 0; a < 5; a++) {
      cl_mem foreign = clCreateBuffer(other, CL_MEM_READ_WRITE, need[a], NULL, &err);
      assert_int_equal(err, CL_SUCCESS);
      cl_mem args[5] = {p.q, p.k, p.v, p.o, p.lse};
      args[a] = foreign;
      assert_int_equal(
          clattn_plan_execute(plan, args[0], args[1], args[2], args[3], args[4], 0, NULL, NULL),
          CLATTN_ERROR_INVALID_ARGUMENT);
      char want[64];
      snprintf(want, sizeof want, "%s belongs to another cl_context", names[a]);
      ASSERT_MSG_HAS(ctx, want);
      clReleaseMemObject(foreign);
    }
    clReleaseContext(other);
    /* num_wait / wait_list mismatch. */
    cl_event ue = clCreateUserEvent(cl, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, NULL, 1, NULL, NULL),
                     CLATTN_ERROR_INVALID_ARGUMENT);
    ASSERT_MSG_HAS(ctx, "wait");
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, NULL, 0, &ue, NULL),
                     CLATTN_ERROR_INVALID_ARGUMENT);
    ASSERT_MSG_HAS(ctx, "wait");
    clSetUserEventStatus(ue, CL_COMPLETE);
    clReleaseEvent(ue);
    /* Nothing was enqueued by the failures; a valid call still works and a
     * success clears the message. */
    cl_event ev = NULL;
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, p.lse, 0, NULL, &ev),
                     CLATTN_SUCCESS);
    assert_string_equal(clattn_context_last_error(ctx), "");
    assert_non_null(ev);
    assert_int_equal(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    if (tu_problem_compare(&p, clattn_plan_describe(plan), &rep) || !tu_report_ok(&rep, 1))
      fail_msg("%s", rep.summary);
    clattn_plan_release(plan);
    tu_problem_free(&p);
  }
}

/* Execute waits for its wait list and returns an event for its last command. */
static void test_wait_list_and_event(void **state) {
  clattn_context ctx = *state;
  for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_NAIVE; algo++) {
    clattn_attention_desc d = small_desc((clattn_algo)algo);
    d.seq_q = 65;
    d.seq_kv = 63;
    tu_problem p;
    tu_report rep;
    if (tu_problem_init(&p, ctx, &d, TU_INPUT_UNIFORM, 1, "api/wait_list", &rep))
      fail_msg("%s", rep.summary);
    clattn_plan plan = NULL;
    assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
    /* Warm up (the naive family compiles its GEMMs at the first call). */
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, p.lse, 0, NULL, NULL),
                     CLATTN_SUCCESS);
    assert_int_equal(clFinish(clattn_context_queue(ctx)), CL_SUCCESS);
    assert_int_equal(tu_problem_poison(&p), 0);

    cl_int err;
    cl_event gate = clCreateUserEvent(clattn_context_cl_context(ctx), &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_event done = NULL;
    assert_int_equal(clattn_plan_execute(plan, p.q, p.k, p.v, p.o, p.lse, 1, &gate, &done),
                     CLATTN_SUCCESS);
    assert_non_null(done);
    clFlush(clattn_context_queue(ctx));
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    cl_int status = CL_COMPLETE;
    assert_int_equal(
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL),
        CL_SUCCESS);
    if (status == CL_COMPLETE) fail_msg("attention completed before its wait list");
    assert_int_equal(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    assert_int_equal(
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL),
        CL_SUCCESS);
    assert_int_equal(status, CL_COMPLETE);
    clReleaseEvent(done);
    clReleaseEvent(gate);
    /* The event covers the whole computation: compare without clFinish. */
    if (tu_problem_compare(&p, clattn_plan_describe(plan), &rep) || !tu_report_ok(&rep, 1))
      fail_msg("%s", rep.summary);
    clattn_plan_release(plan);
    tu_problem_free(&p);
  }
}

/* Plans are reusable: the same plan on two problems, and twice on one. */
static void test_plan_reuse(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  tu_problem a, b;
  tu_report rep;
  if (tu_problem_init(&a, ctx, &d, TU_INPUT_UNIFORM, 1, "api/reuse/a", &rep))
    fail_msg("%s", rep.summary);
  if (tu_problem_init(&b, ctx, &d, TU_INPUT_UNIFORM, 0, "api/reuse/b", &rep))
    fail_msg("%s", rep.summary);
  for (int rep_i = 0; rep_i < 2; rep_i++) {
    assert_int_equal(tu_problem_poison(&a), 0);
    assert_int_equal(tu_problem_poison(&b), 0);
    assert_int_equal(clattn_plan_execute(plan, a.q, a.k, a.v, a.o, a.lse, 0, NULL, NULL),
                     CLATTN_SUCCESS);
    assert_int_equal(clattn_plan_execute(plan, b.q, b.k, b.v, b.o, NULL, 0, NULL, NULL),
                     CLATTN_SUCCESS);
    assert_int_equal(clFinish(clattn_context_queue(ctx)), CL_SUCCESS);
    if (tu_problem_compare(&a, clattn_plan_describe(plan), &rep) || !tu_report_ok(&rep, 1))
      fail_msg("%s", rep.summary);
    if (tu_problem_compare(&b, clattn_plan_describe(plan), &rep) || !tu_report_ok(&rep, 0))
      fail_msg("%s", rep.summary);
  }
  tu_problem_free(&a);
  tu_problem_free(&b);
  clattn_plan_release(plan);
}

/* A context adopting the caller's queue (no profiling) plans and executes. */
static void test_context_from_queue(void **state) {
  clattn_context ctx = *state;
  cl_device_id dev = clattn_context_device(ctx);
  cl_int err;
  cl_context cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  cl_command_queue queue = clCreateCommandQueue(cl, dev, 0, &err);
  assert_int_equal(err, CL_SUCCESS);
  clattn_context qctx = NULL;
  assert_int_equal(clattn_context_create_from_queue(queue, &qctx), CLATTN_SUCCESS);
  assert_non_null(qctx);
  assert_ptr_equal(clattn_context_queue(qctx), queue);
  assert_ptr_equal(clattn_context_cl_context(qctx), cl);
  assert_ptr_equal(clattn_context_device(qctx), dev);
  assert_true(strlen(clattn_context_device_name(qctx)) > 0);
  for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_NAIVE; algo++) {
    clattn_attention_desc d = small_desc((clattn_algo)algo);
    tu_report rep;
    tu_run_and_compare(qctx, &d, TU_INPUT_UNIFORM, 1, 0, "api/from_queue", &rep);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
  }
  clattn_context_release(qctx);
  /* The caller's references are intact. */
  assert_int_equal(clFinish(queue), CL_SUCCESS);
  assert_int_equal(clReleaseCommandQueue(queue), CL_SUCCESS);
  assert_int_equal(clReleaseContext(cl), CL_SUCCESS);
}

static int has_device_type(cl_device_type type) {
  cl_uint np = 0;
  if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return 0;
  cl_platform_id plats[16];
  if (np > 16) np = 16;
  clGetPlatformIDs(np, plats, NULL);
  for (cl_uint i = 0; i < np; i++) {
    cl_uint nd = 0;
    if (clGetDeviceIDs(plats[i], type, 0, NULL, &nd) == CL_SUCCESS && nd > 0) return 1;
  }
  return 0;
}

static int icontains(const char *hay, const char *needle) {
  for (; *hay; hay++) {
    size_t i = 0;
    while (needle[i] && hay[i] &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (!needle[i]) return 1;
  }
  return 0;
}

static void expect_select(const char *selector, cl_device_id want) {
  clattn_context c = NULL;
  clattn_status st = clattn_context_create(selector, &c);
  if (st != CLATTN_SUCCESS)
    fail_msg("selector '%s': %s: %s", selector, clattn_status_string(st),
             clattn_last_create_error());
  assert_non_null(c);
  if (want) assert_ptr_equal(clattn_context_device(c), want);
  assert_non_null(clattn_context_queue(c));
  assert_string_equal(clattn_context_last_error(c), "");
  clattn_context_release(c);
}

static void expect_no_device(const char *selector) {
  clattn_context c = (clattn_context)(uintptr_t)0x1;
  clattn_status st = clattn_context_create(selector, &c);
  if (st != CLATTN_ERROR_NO_DEVICE)
    fail_msg("selector '%s': expected NO_DEVICE, got %s", selector ? selector : "(null)",
             clattn_status_string(st));
  assert_null(c);
  assert_true(strlen(clattn_last_create_error()) > 0);
}

static void test_context_selectors(void **state) {
  clattn_context ctx = *state;
  saved_env env = env_save("CLATTN_DEVICE");
  unsetenv("CLATTN_DEVICE");
  cl_device_id dev = clattn_context_device(ctx);
  char name[256] = {0}, pname[256] = {0}, pvendor[256] = {0};
  cl_platform_id plat = NULL;
  clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
  clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
  clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
  clGetPlatformInfo(plat, CL_PLATFORM_VENDOR, sizeof pvendor - 1, pvendor, NULL);

  expect_select(NULL, NULL);
  expect_select("", NULL);
  expect_select("0:0", NULL);
  if (has_device_type(CL_DEVICE_TYPE_CPU))
    expect_select("cpu", NULL);
  else
    expect_no_device("cpu");
  if (has_device_type(CL_DEVICE_TYPE_GPU))
    expect_select("gpu", NULL);
  else
    expect_no_device("gpu");
  /* The device's own name, and a piece of it in another case. */
  expect_select(name, NULL);
  char piece[8] = {0};
  for (int i = 0; i < 6 && name[i]; i++)
    piece[i] = (char)toupper((unsigned char)name[i]);
  if (piece[0]) expect_select(piece, NULL);
  if (icontains(pname, "pocl") || icontains(pname, "portable computing") ||
      icontains(pvendor, "pocl"))
    expect_select("pocl", NULL);
  expect_no_device("no-such-device-xyzzy");
  assert_non_null(strstr(clattn_last_create_error(), "no-such-device-xyzzy"));
  expect_no_device("99:99");
  /* $CLATTN_DEVICE is the default selector. */
  setenv("CLATTN_DEVICE", "no-such-device-xyzzy", 1);
  expect_no_device(NULL);
  setenv("CLATTN_DEVICE", "0:0", 1);
  expect_select(NULL, NULL);
  env_restore(&env);
}

/* Workspace: naive reports B·H·Nq·Nk·4 bytes, plus for 16-bit storage the
 * f32 copies of q/o (B·H·Nq·d·4) and of k and v (B·Hk·Nk·d·4 each); flash 0;
 * describe names the family; the descriptor the plan reports has its
 * defaults resolved. */
static void test_workspace_and_describe(void **state) {
  clattn_context ctx = *state;
  static const clattn_dtype types[] = {CLATTN_DTYPE_F32, CLATTN_DTYPE_F16, CLATTN_DTYPE_BF16};
  for (int t = 0; t < 3; t++)
    for (int lazy = 0; lazy <= 1; lazy++) {
      clattn_attention_desc d = small_desc(CLATTN_ALGO_NAIVE); /* B2 H4 Hk2 Nq7 Nk9 d16 */
      d.dtype = types[t];
      clattn_plan plan = NULL;
      assert_int_equal(clattn_plan_create(ctx, &d, lazy ? CLATTN_PLAN_LAZY_WORKSPACE : 0, &plan),
                       CLATTN_SUCCESS);
      const size_t scores = (size_t)2 * 4 * 7 * 9 * 4;
      const size_t copies = t ? (size_t)2 * 4 * 7 * 16 * 4 + 2 * ((size_t)2 * 2 * 9 * 16 * 4) : 0;
      assert_int_equal(clattn_plan_workspace_size(plan), scores + copies);
      assert_non_null(strstr(clattn_plan_describe(plan), "naive"));
      assert_int_equal(clattn_plan_desc(plan)->algo, CLATTN_ALGO_NAIVE);
      clattn_plan_release(plan);
    }
  clattn_attention_desc d = small_desc(CLATTN_ALGO_AUTO);
  d.kv_heads = 0;
  d.seq_q = 17; /* a prefill kernel: the decode kernel (seq_q <= 16) owns a workspace */
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_workspace_size(plan), 0);
  const char *desc = clattn_plan_describe(plan);
  assert_true(strlen(desc) > 0);
  assert_non_null(strstr(desc, "flash"));
  const clattn_attention_desc *pd = clattn_plan_desc(plan);
  assert_non_null(pd);
  assert_int_equal(pd->algo, CLATTN_ALGO_FLASH);
  assert_int_equal(pd->kv_heads, 4);
  assert_true(fabs(pd->scale - 0.25) < 1e-15);
  clattn_plan_release(plan);
}

/* Counts past 2^64: clattn_plan_visible_pairs saturates, clattn_plan_flops
 * is computed from the exact count; a naive estimate allocates no per-pair
 * host tables (B = 2^24, H = 16 needed 49 GB of them). */
static void test_huge_counts(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d;
  clattn_attention_desc_init(&d);
  d.batch = d.heads = d.seq_q = d.seq_kv = 65536;
  d.head_dim = 16;
  d.algo = CLATTN_ALGO_FLASH;
  clattn_plan plan = NULL;
  if (clattn_plan_create(ctx, &d, 0, &plan) != CLATTN_SUCCESS)
    fail_msg("%s", clattn_context_last_error(ctx));
  assert_true(clattn_plan_visible_pairs(plan) == UINT64_MAX); /* 2^64 */
  assert_true(clattn_plan_flops(plan) == 4.0 * 16 * 18446744073709551616.0);
  clattn_plan_release(plan);
  d.mask = CLATTN_MASK_CAUSAL; /* 2^32 · 65536 · 65537 / 2 = 2^47 · 65537: fits */
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_true(clattn_plan_visible_pairs(plan) == ((uint64_t)65537 << 47));
  assert_true(clattn_plan_flops(plan) == 4.0 * 16 * 65537.0 * 140737488355328.0);
  clattn_plan_release(plan);
  clattn_attention_desc_init(&d);
  d.batch = 1 << 24;
  d.heads = 16;
  d.seq_q = d.seq_kv = 1;
  d.head_dim = 4; /* q holds 2^30 elements: CLBlast's 32-bit indices reach them */
  d.algo = CLATTN_ALGO_NAIVE;
  size_t ws = 0;
  if (clattn_plan_estimate(ctx, &d, &ws) != CLATTN_SUCCESS)
    fail_msg("%s", clattn_context_last_error(ctx));
  assert_int_equal(ws, (size_t)1 << 30); /* 2^28 scores of 4 bytes */
}

/* A naive problem larger than the device allows fails at plan creation,
 * before allocating, with the bytes in the message; flash needs no workspace
 * and plans it. */
static void test_naive_out_of_memory(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = small_desc(CLATTN_ALGO_NAIVE);
  d.batch = 1;
  d.heads = 1;
  d.kv_heads = 0;
  d.seq_q = 1 << 20;
  d.seq_kv = 1 << 20;
  for (int lazy = 0; lazy <= 1; lazy++) {
    clattn_plan plan = (clattn_plan)(uintptr_t)0x1;
    assert_int_equal(clattn_plan_create(ctx, &d, lazy ? CLATTN_PLAN_LAZY_WORKSPACE : 0, &plan),
                     CLATTN_ERROR_OUT_OF_MEMORY);
    assert_null(plan);
    ASSERT_MSG_HAS(ctx, "4398046511104"); /* 2^20 · 2^20 · 4 */
  }
  /* 16-bit storage: the f32 copies of q/o, k and v (2^20 · 16 · 4 bytes
   * each) are counted in the bytes named. */
  d.dtype = CLATTN_DTYPE_BF16;
  clattn_plan plan = (clattn_plan)(uintptr_t)0x1;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_OUT_OF_MEMORY);
  assert_null(plan);
  ASSERT_MSG_HAS(ctx, "4398247837696"); /* 2^42 + 3 · 2^26 */
  ASSERT_MSG_HAS(ctx, "bf16");
  d.dtype = CLATTN_DTYPE_F32;
  d.batch = 8;
  d.heads = 64;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_ERROR_OUT_OF_MEMORY);
  ASSERT_MSG_HAS(ctx, "2251799813685248"); /* 8 · 64 · 2^40 · 4 */
  d.algo = CLATTN_ALGO_FLASH;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_workspace_size(plan), 0);
  clattn_plan_release(plan);
}

/* CLATTN_BUILD_DEFINES reaches the kernel compiler (a define that breaks
 * every kernel fails the plan) and is ignored whole when it holds a word
 * other than -DNAME[=VALUE]. */
static void test_build_defines(void **state) {
  (void)state;
  saved_env env = env_save("CLATTN_BUILD_DEFINES");
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  setenv("CLATTN_BUILD_DEFINES", "-DCLATTN_DTYPE=9", 1); /* no storage type: no kernel builds */
  clattn_context ctx = tu_new_context();
  clattn_plan plan = NULL;
  const clattn_status st = clattn_plan_create(ctx, &d, 0, &plan);
  if (st == CLATTN_SUCCESS)
    fail_msg("CLATTN_BUILD_DEFINES=-DCLATTN_DTYPE=9 did not reach the build");
  assert_null(plan);
  clattn_context_release(ctx);
  /* -O3 (first or last): the value is ignored */
  static const char *ignored[2] = {"-DCLATTN_DTYPE=9 -O3", "-O3 -DCLATTN_DTYPE=9"};
  for (int i = 0; i < 2; i++) {
    setenv("CLATTN_BUILD_DEFINES", ignored[i], 1);
    ctx = tu_new_context();
    tu_report rep;
    tu_run_and_compare(ctx, &d, TU_INPUT_UNIFORM, 1, 0, ignored[i], &rep);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
    clattn_context_release(ctx);
  }
  env_restore(&env);
}

/* CLATTN_TUNE_OVERRIDE selects the flash configuration; an illegal or
 * malformed one is refused. The environment is read when a context is
 * created, so each case uses a fresh context. */
static void test_tune_override(void **state) {
  (void)state;
  saved_env env = env_save("CLATTN_TUNE_OVERRIDE");
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  d.seq_q = 65;
  d.seq_kv = 63;
  setenv("CLATTN_TUNE_OVERRIDE", "bm=16,bn=16,tm=4,tn=4", 1);
  clattn_context ctx = tu_new_context();
  tu_report rep;
  tu_run_and_compare(ctx, &d, TU_INPUT_UNIFORM, 1, 0, "api/override", &rep);
  if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
  if (!strstr(rep.plan_describe, "override") || !strstr(rep.plan_describe, "bm=16 bn=16"))
    fail_msg("describe does not show the override: %s", rep.plan_describe);
  clattn_context_release(ctx);
  static const char *bad[] = {"bm=16,bn=16,tm=3,tn=4", "bm=16,bn=16,tm=4,tn=5",
                              "bm=128,bn=128,tm=128,tn=128", "fast please", "bm=16,zz=1"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("CLATTN_TUNE_OVERRIDE", bad[i], 1);
    ctx = tu_new_context();
    clattn_plan plan = (clattn_plan)(uintptr_t)0x1;
    clattn_status st = clattn_plan_create(ctx, &d, 0, &plan);
    if (st != CLATTN_ERROR_INVALID_ARGUMENT)
      fail_msg("override '%s': got %s", bad[i], clattn_status_string(st));
    assert_null(plan);
    ASSERT_MSG_HAS(ctx, "CLATTN_TUNE_OVERRIDE");
    ASSERT_MSG_HAS(ctx, bad[i]);
    clattn_context_release(ctx);
  }
  /* Empty means no override. */
  setenv("CLATTN_TUNE_OVERRIDE", "", 1);
  ctx = tu_new_context();
  clattn_plan plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_null(strstr(clattn_plan_describe(plan), "override"));
  clattn_plan_release(plan);
  clattn_context_release(ctx);
  env_restore(&env);
}

/* An out-of-memory failure says how many bytes the request needed, as data
 * (clattn_context_last_needed_bytes): the workspace of the refused plan. */
static void test_needed_bytes(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = small_desc(CLATTN_ALGO_LINEAR);
  d.seq_q = 1;
  d.seq_kv = 1 << 27; /* 2^22 state splits of 65x64 floats: 70 GB, more than any buffer */
  d.heads = d.batch = 1;
  d.kv_heads = 0;
  d.mask = CLATTN_MASK_NONE;
  d.head_dim = 64; /* (the GPUs' default linear tiles are illegal at d = 256) */
  clattn_plan plan = NULL;
  size_t est = 0;
  assert_int_equal(clattn_plan_estimate(ctx, &d, &est), CLATTN_SUCCESS);
  assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "linear:split=32", &plan),
                   CLATTN_ERROR_OUT_OF_MEMORY);
  assert_null(plan);
  const uint64_t need = clattn_context_last_needed_bytes(ctx);
  assert_true(need >= (uint64_t)(1 << 22) * 64 * 65 * 4);
  assert_true(est > 0 && est < need); /* the default split needs far less */
  d.seq_q = d.seq_kv = 16;            /* any other result clears it */
  assert_int_equal(clattn_plan_create(ctx, &d, 0, &plan), CLATTN_SUCCESS);
  assert_true(clattn_context_last_needed_bytes(ctx) == 0);
  clattn_plan_release(plan);
}

/* Forced configurations name their kernel variant; every one passes the
 * variant's legality check (issue 13.1: the CPU kernel's private tile), and
 * the portable opt-out leaves the fast paths out. */
static void test_forced_variants(void **state) {
  clattn_context ctx = *state;
  clattn_attention_desc d = small_desc(CLATTN_ALGO_FLASH);
  d.seq_q = d.seq_kv = 40;
  d.head_dim = 16;
  const int cpu = clattn_context_device(ctx) && strstr(clattn_context_device_name(ctx), "pthread");
  clattn_plan plan = NULL;
  clattn_status st = clattn_plan_create_with_config(ctx, &d, 0, "flash_rows:bn=1048576", &plan);
  assert_int_equal(st, cpu ? CLATTN_ERROR_INVALID_ARGUMENT : CLATTN_ERROR_UNSUPPORTED);
  assert_null(plan);
  st = clattn_plan_create_with_config(ctx, &d, 0, "bm=16,bn=1048576,tm=1,tn=1", &plan);
  assert_int_equal(st, CLATTN_ERROR_INVALID_ARGUMENT);
  ASSERT_MSG_HAS(ctx, "1048576");
  if (cpu) {
    assert_int_equal(clattn_plan_create_with_config(ctx, &d, 0, "flash_rows:bn=32", &plan),
                     CLATTN_SUCCESS);
    assert_non_null(strstr(clattn_plan_describe(plan), "flash_rows"));
    assert_non_null(strstr(clattn_plan_describe(plan), "bn=32"));
    clattn_plan_release(plan);
    plan = NULL;
  }
  assert_int_equal(clattn_plan_create(ctx, &d, CLATTN_PLAN_PORTABLE, &plan), CLATTN_SUCCESS);
  assert_non_null(strstr(clattn_plan_describe(plan), "flash f32"));
  clattn_plan_release(plan);
  plan = NULL;
  assert_int_equal(clattn_plan_create(ctx, &d, 1u << 7, &plan), CLATTN_ERROR_INVALID_ARGUMENT);
}

/* CLATTN_KERNEL_DIR loads the kernel sources from a directory: the source
 * tree's cl/ works, an empty directory fails cleanly with CLATTN_ERROR_IO.
 * Programs are cached per context, so each case uses a fresh context. */
static void test_kernel_dir(void **state) {
  (void)state;
  saved_env env = env_save("CLATTN_KERNEL_DIR");
  setenv("CLATTN_KERNEL_DIR", CLATTN_TEST_KERNEL_DIR, 1);
  clattn_context c = NULL;
  assert_int_equal(clattn_context_create(NULL, &c), CLATTN_SUCCESS);
  for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_NAIVE; algo++) {
    clattn_attention_desc d = small_desc((clattn_algo)algo);
    tu_report rep;
    tu_run_and_compare(c, &d, TU_INPUT_UNIFORM, 1, 0, "api/kernel_dir", &rep);
    if (!tu_report_ok(&rep, 1)) fail_msg("%s", rep.summary);
  }
  clattn_context_release(c);

  char dir[] = "/tmp/clattn-test-empty-XXXXXX";
  assert_non_null(mkdtemp(dir));
  setenv("CLATTN_KERNEL_DIR", dir, 1);
  c = NULL;
  assert_int_equal(clattn_context_create(NULL, &c), CLATTN_SUCCESS);
  for (int algo = CLATTN_ALGO_FLASH; algo <= CLATTN_ALGO_NAIVE; algo++) {
    clattn_attention_desc d = small_desc((clattn_algo)algo);
    clattn_plan plan = (clattn_plan)(uintptr_t)0x1;
    clattn_status st = clattn_plan_create(c, &d, 0, &plan);
    if (st != CLATTN_ERROR_IO)
      fail_msg("empty CLATTN_KERNEL_DIR (algo %d): got %s: %s", algo, clattn_status_string(st),
               clattn_context_last_error(c));
    assert_null(plan);
    ASSERT_MSG_HAS(c, dir);
    ASSERT_MSG_HAS(c, ".cl");
  }
  clattn_context_release(c);
  rmdir(dir);
  env_restore(&env);
}

int main(void) {
  unsetenv("CLATTN_TUNE_OVERRIDE");
  unsetenv("CLATTN_KERNEL_DIR");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_status_strings),
      cmocka_unit_test(test_desc_defaults_and_strides),
      cmocka_unit_test(test_invalid_descriptors),
      cmocka_unit_test(test_16bit_dtypes),
      cmocka_unit_test(test_null_pointers),
      cmocka_unit_test(test_execute_argument_checks),
      cmocka_unit_test(test_wait_list_and_event),
      cmocka_unit_test(test_plan_reuse),
      cmocka_unit_test(test_context_from_queue),
      cmocka_unit_test(test_context_selectors),
      cmocka_unit_test(test_workspace_and_describe),
      cmocka_unit_test(test_naive_out_of_memory),
      cmocka_unit_test(test_huge_counts),
      cmocka_unit_test(test_tune_override),
      cmocka_unit_test(test_build_defines),
      cmocka_unit_test(test_forced_variants),
      cmocka_unit_test(test_needed_bytes),
      cmocka_unit_test(test_kernel_dir),
  };
  return cmocka_run_group_tests_name("clattn API", tests, tu_group_setup, tu_group_teardown);
}
