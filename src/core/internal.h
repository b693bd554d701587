/* internal.h — private types and helpers shared by the clattn host sources. */
#ifndef CLATTN_INTERNAL_H
#define CLATTN_INTERNAL_H

#include "clattn.h"
#include "util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLATTN_MSG_MAX 16384
#define CLATTN_MAX_PROGRAMS 64

/* A compiled program, kept per context and keyed by source name + options. */
typedef struct clattn__program_entry {
  char *key; /* "name\n" + options */
  cl_program program;
  unsigned char cache_key[32]; /* program-binary cache key (tune.h) */
  bool cacheable;              /* cache_key is set */
  size_t cached_size;          /* bytes of the binary last stored (0: none) */
  /* CLATTN_NV_VERBOSE: the compiler's register, spill and wgmma lines of
   * the build log, joined (empty otherwise, or when loaded from cache). */
  char compiler_note[320];
} clattn__program_entry;

/* Environment variables, read once when a context is created (settings.c). */
typedef struct clattn__settings {
  char device[256];      /* CLATTN_DEVICE, "" when unset */
  char kernel_dir[4096]; /* CLATTN_KERNEL_DIR, "" when unset */
  char cache_dir[4096];  /* cache root, "" when caches are off or no home is known */
  char cache_env[4096];  /* CLATTN_CACHE_DIR as set ("" when unset), for messages */
  char override[4096];   /* CLATTN_TUNE_OVERRIDE, "" when unset */
  double tune_budget;    /* CLATTN_TUNE_BUDGET seconds (default 10) */
  bool portable;         /* CLATTN_PORTABLE=1: no device fast paths */
  bool nv_verbose;       /* CLATTN_NV_VERBOSE=1: -cl-nv-verbose in NVIDIA builds */
  bool nv_emulate; /* CLATTN_NV_EMULATE=1 (tests): flash_tc, decode_tc with their PTX emulated */
  bool pocl_cache_off;   /* POCL_KERNEL_CACHE=0 */
  /* CLATTN_KV_COPY_MAX: bytes flash_rows may spend on the f32 copy of 16-bit
   * K and V (0: none, convert in the kernel); unset: a quarter of the
   * device's global memory */
  uint64_t kv_copy_max;
  bool kv_copy_max_set;
  /* CLATTN_BUILD_DEFINES (kernel experiments): -DNAME[=VALUE] words added to
   * every program's build options (and its cache key); "" when unset or
   * when it holds anything else */
  char build_defines[256];
} clattn__settings;
void clattn__settings_read(clattn__settings *s);

/* The buffers of one execution. */
typedef struct clattn__buffers {
  cl_mem q, k, v, o, lse;
  /* Inference modes (clattn_exec_args), NULL when unused. */
  cl_mem cu_seqlens_q, cu_seqlens_kv, seqlens_kv, block_table;
  cl_mem user; /* the user functions' buffer (clattn_exec_args.user), or NULL */
  cl_mem bias; /* the bias tensor (clattn_exec_args.bias), or NULL */
  cl_mem k_scale, v_scale; /* quantized K/V scales (clattn_exec_args), or NULL */
  cl_mem dout, dq, dk, dv; /* the backward pass only, else NULL */
} clattn__buffers;

/* Device capabilities, read once at context creation. */
typedef struct clattn__device_info {
  char platform_name[256];
  char platform_version[256];
  char vendor[256];
  char name[256];
  char driver[256];
  char device_version[256];
  cl_device_type type;
  cl_uint compute_units;
  cl_ulong local_mem;
  cl_ulong global_mem;
  cl_ulong max_alloc;
  size_t max_wg;
  bool local_is_global; /* CL_GLOBAL local memory (CPUs) */
  bool fp16, fp64, subgroups;
  int nv_cc_major, nv_cc_minor; /* 0 when not NVIDIA */
  bool is_nvidia, is_amd, is_intel, is_cpu, is_pocl;
  /* CLATTN_NV_EMULATE=1 on a device that is not NVIDIA (tests): flash_tc
   * applies as on NVIDIA and decode_tc when forced, built with their
   * warp-level PTX emulated (cl/nv_mma.cl, CLATTN_NV_EMU) */
  bool nv_emulate;
  /* Set at run time, not read from the device: bit i marks registry
   * variant i whose build failed on this device in this context (a PTX
   * patch the driver refused); the planner passes over it from then on. */
  unsigned long long broken_variants;
} clattn__device_info;

struct clattn_context_s {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  clattn__device_info info;
  char device_line[800];
  char msg[CLATTN_MSG_MAX];
  char broken_why[600]; /* why the last variant marked in info.broken_variants failed */
  clattn__program_entry programs[CLATTN_MAX_PROGRAMS];
  int num_programs;
  int live_plans;            /* plans not yet released; they keep the context alive */
  bool released;             /* clattn_context_release was called: freed with the last plan */
  bool tuning;               /* inside the tuner: candidate binaries are not cached */
  uint64_t needed_bytes;     /* of the last CLATTN_ERROR_OUT_OF_MEMORY, 0 if unknown */
  clattn__settings settings; /* environment, read once at creation */
  /* Tuning database, read once (lazily) and updated by stores and imports. */
  struct clattn__tunedb *tunedb;
  bool tunedb_loaded;
  /* Source hash of each variant (index in the registry), computed once. */
  char (*source_hash)[17];
};

struct clattn_plan_s {
  clattn_context ctx;
  clattn_attention_desc desc; /* resolved: kv_heads, scale, algo set */
  clattn_strides qs, ks, vs, os;
  size_t elems[4]; /* minimal element counts of q, k, v, o */
  unsigned flags;
  const struct clattn__variant *variant; /* chosen kernel variant (variant.h) */
  void *state;
  size_t workspace_bytes;
  char describe[1024];
  const char *config;            /* forced configuration string, or NULL (planner, creation only) */
  struct clattn__sparse *sparse; /* sparse masks only (src/sparse.h), else NULL */
  uint64_t visible_pairs;        /* (b, h, i, j) tuples the mask keeps, saturated */
  double visible_pairs_exact;    /* the same count, not saturated (for the FLOPs) */
  /* The backward pass (clattn_plan_execute_backward), built at creation
   * with CLATTN_PLAN_BACKWARD or at the first backward call: its variant,
   * state and workspace (the variant's create sets them, not the forward's). */
  const struct clattn__variant *bwd_variant;
  void *bwd_state;
  size_t bwd_workspace_bytes;
  char bwd_describe[512];
  /* clattn_plan_estimate: size the plan only (no program, no device memory,
   * no comparison of the workspace with the device's memory). */
  bool estimate;
  /* The plan's copies of desc.score_mod / mask_mod and desc.sinks (desc
   * points at them). */
  char *fn_copy[2];
  float *sinks_copy;
};

/* The dense causal masks: CLATTN_MASK_CAUSAL (bottom-right) or
 * CLATTN_MASK_CAUSAL_TOP_LEFT. */
static inline bool clattn__mask_is_causal(clattn_mask m) {
  return m == CLATTN_MASK_CAUSAL || m == CLATTN_MASK_CAUSAL_TOP_LEFT;
}
/* The sparse family's masks: CLATTN_MASK_WINDOW .. CLATTN_MASK_BLOCK_LAYOUT. */
static inline bool clattn__mask_is_sparse(clattn_mask m) {
  return m >= CLATTN_MASK_WINDOW && m <= CLATTN_MASK_BLOCK_LAYOUT;
}
/* Whether the descriptor sets a score modifier (softcap, ALiBi): only the
 * flash and flash_rows forward kernels take them. */
/* Unit dim stride and batch, head and seq strides that are multiples of q
 * elements: rows of a tensor start on q-element boundaries (whole vector
 * loads; buffers themselves are aligned far beyond that). */
static inline bool clattn__strides_multiple(const clattn_strides *s, int64_t q) {
  return s->dim == 1 && s->seq % q == 0 && s->head % q == 0 && s->batch % q == 0;
}
/* The local memory that nv_mma.cl's PTX emulation (CLATTN_NV_EMU, tests)
 * adds to a kernel of `items` work-items: 6 words of lane exchange each;
 * 0 without the emulation. */
static inline size_t clattn__nv_emu_local(const clattn__device_info *info, size_t items) {
  return info->nv_emulate ? items * 6 * sizeof(cl_uint) : 0;
}
static inline bool clattn__desc_has_mods(const clattn_attention_desc *d) {
  return d->softcap > 0.0 || d->alibi_max_bias > 0.0 || d->score_mod || d->mask_mod || d->sinks ||
         d->bias_type != CLATTN_BIAS_NONE;
}
/* The user functions' source for the program (score_mod, then mask_mod
 * when it is another text), malloc'ed; NULL without them (or out of
 * memory: *oom set). */
char *clattn__user_source(const clattn_attention_desc *d, bool *oom);
/* The -D options of the score modifiers (cl/common.cl, SCORE_MODS), appended
 * to opts; nothing without one. */
void clattn__mods_options(const clattn_attention_desc *d, char *opts, size_t cap);
/* "; softcap 30; ALiBi max_bias 8; ..." for describe(): the modifiers a plan applies. */
void clattn__describe_mods(const clattn_attention_desc *d, char *buf, size_t cap);
/* ALiBi slope of query head h of `heads` for max_bias (the header's formula). */
double clattn__alibi_slope(int h, int heads, double max_bias);

/* The kernels' -DCAUSAL value for a mask: 0 none, 1 bottom-right, 2 top-left
 * (CAUSAL_OFFSET in cl/common.cl). */
static inline int clattn__causal_define(clattn_mask m) {
  return m == CLATTN_MASK_CAUSAL ? 1 : m == CLATTN_MASK_CAUSAL_TOP_LEFT ? 2 : 0;
}
/* Key position of query 0 under a dense causal mask: seq_kv - seq_q
 * (bottom-right) or 0 (top-left); query i sees keys j <= i + offset. */
static inline int64_t clattn__causal_offset(const clattn_attention_desc *d) {
  return d->mask == CLATTN_MASK_CAUSAL_TOP_LEFT ? 0 : (int64_t)d->seq_kv - d->seq_q;
}

/* Plan objects (plan.c). clattn__plan_new validates and resolves the
 * problem (sparse lists, pair count, linear features) into a plan with no
 * variant yet; clattn__plan_build builds it with a variant and its
 * configuration (the planner's choice, or the tuner's candidate), frees it
 * on failure, and with p->estimate only sizes it (*estimate_bytes, may be
 * NULL, receives the workspace reached either way); clattn__plan_discard
 * frees a plan that is not built. */
clattn_status clattn__plan_new(clattn_context ctx, const clattn_attention_desc *desc,
                               unsigned flags, bool estimate, clattn_plan *out);
clattn_status clattn__plan_build(clattn_plan p, const struct clattn__variant *v, const int *params,
                                 const char *origin, size_t *estimate_bytes, clattn_plan *out);
void clattn__plan_discard(clattn_plan p);
/* Chooses and builds the plan's backward pass if it is not built yet (the
 * planner with CLATTN_PLAN_BACKWARD, else the first backward call); appends
 * it to describe(). On failure the plan is left without one. */
clattn_status clattn__plan_build_backward(clattn_plan p);

/* ---- errors ---- */
clattn_status clattn__fail(clattn_context ctx, clattn_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* CLATTN_ERROR_OUT_OF_MEMORY with the bytes the request needed
 * (clattn_context_last_needed_bytes). */
clattn_status clattn__fail_needed(clattn_context ctx, uint64_t bytes, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
clattn_status clattn__cl_fail(clattn_context ctx, const char *call, cl_int err, const char *what);
const char *clattn__cl_error_name(cl_int err);

/* ---- device info ---- */
void clattn__read_device_info(cl_device_id dev, clattn__device_info *info);

/* ---- programs ---- */
/* Source text of an embedded kernel file (e.g. "flash_fwd.cl") or, when
 * CLATTN_KERNEL_DIR is set, the file read from that directory. Returns a
 * malloc'ed string or NULL (with the context message set). */
char *clattn__kernel_source(clattn_context ctx, const char *name);
/* Builds (or reuses) the program made of common.cl + the files `name` lists
 * (blank-separated, in order: "linear_common.cl linear_state.cl ...") with
 * `options`. The program stays owned by the context. */
clattn_status clattn__get_program(clattn_context ctx, const char *name, const char *options,
                                  cl_program *out);
/* The same with the user functions' source (clattn__user_source; NULL:
 * none) between common.cl and the files; part of both program keys. A build
 * that fails with it returns CLATTN_ERROR_INVALID_ARGUMENT and the log. */
clattn_status clattn__get_program_user(clattn_context ctx, const char *name, const char *options,
                                       const char *user_src, cl_program *out);
/* The same with PTX patching (ptx.c): the program is compiled from
 * source, its PTX (NVIDIA's program binary) has its placeholders replaced
 * and its target set to sm_90a, and the patched text is built and cached
 * (the cache key covers the patcher's version). Fails with
 * CLATTN_ERROR_BUILD and the reason when the device, the compiler's output
 * or the patched build refuses. */
clattn_status clattn__get_program_patched(clattn_context ctx, const char *name,
                                          const char *options, cl_program *out);
/* Replaces the placeholders of PTX text (grammar in ptx.c) and sets its
 * `.target` to `target`. Returns the number of placeholders replaced with
 * the new text in *out (malloc'ed, NUL-terminated), or -1 with a reason in
 * why. */
int clattn__ptx_patch(const char *ptx, size_t len, const char *target, char **out, size_t *out_len,
                      char *why, size_t cap);
/* Bytes the bias tensor of d spans (0 without one; SIZE_MAX on overflow). */
size_t clattn__bias_bytes(const clattn_attention_desc *d);
/* Quantized K/V: bytes per K/V element (1 when quantized, else the dtype's),
 * floats per scale buffer (SIZE_MAX on overflow), and the token scales'
 * rows (batch entries, pages, or packed tokens) and the floats per row. */
size_t clattn__kv_elem_size(const clattn_attention_desc *d);
size_t clattn__kv_scale_floats(const clattn_attention_desc *d);
void clattn__kv_scale_geometry(const clattn_attention_desc *d, int64_t *rows, int64_t *row_stride);
/* The token scales' stride between the kernels' K/V rows (key_slot's row:
 * page or batch entry; 0 for packed ragged K/V, whose position is the row). */
int64_t clattn__kv_scale_row_stride(const clattn_attention_desc *d);
/* Version of the patcher's output (part of the binary-cache key). */
#define CLATTN__PTX_PATCH_VERSION 2
#define CLATTN__STR2(x) #x
#define CLATTN__STR(x) CLATTN__STR2(x)
/* The compiler_note of a program of the context ("" if none). */
const char *clattn__program_note(clattn_context ctx, cl_program prog);
/* Creates a kernel from a program; the caller releases it. */
clattn_status clattn__create_kernel(clattn_context ctx, cl_program prog, const char *kname,
                                    cl_kernel *out);
void clattn__release_programs(clattn_context ctx);
/* Frees the context now (clattn_context_release, or the last plan release after it). */
void clattn__context_free(clattn_context ctx);
/* Releases the context's programs except those in keep[0..nkeep) (without
 * caching their binaries: used by the tuner for rejected candidates). */
void clattn__prune_programs(clattn_context ctx, const cl_program *keep, int nkeep);

/* Bytes of local memory an implementation may charge a kernel beyond what
 * its source declares (NVIDIA's driver reports 4 more on every kernel with
 * __local arrays: 24580 for 24576 declared, H200, driver 580). */
#define CLATTN__LOCAL_RESERVE 64

/* clattn__create_kernel with the footprint check: the kernel's local
 * memory (CL_KERNEL_LOCAL_MEM_SIZE) must not exceed `local_bytes`, the size
 * its configuration's geometry says it declares, by more than
 * CLATTN__LOCAL_RESERVE (an internal error otherwise: the host's sizing and
 * the kernel source disagree). */
clattn_status clattn__create_kernel_sized(clattn_context ctx, cl_program prog, const char *kname,
                                          size_t local_bytes, cl_kernel *out);

/* Embedded sources (generated at build time). */
typedef struct clattn__embedded_file {
  const char *name;
  const char *data;
  size_t size;
} clattn__embedded_file;
extern const clattn__embedded_file clattn__embedded_files[];
extern const size_t clattn__embedded_count;

/* ---- descriptors ---- */
size_t clattn__dtype_size(clattn_dtype t);
/* Validates and resolves defaults (kv_heads, scale). Message names the field.
 * ctx may be NULL (no message stored). */
clattn_status clattn__desc_resolve(clattn_context ctx, const clattn_attention_desc *in,
                                   clattn_attention_desc *out, clattn_strides *qs,
                                   clattn_strides *ks, clattn_strides *vs, clattn_strides *os,
                                   size_t elems[4]);
/* True when no two elements (b, h, s, d) of a b×h×n×dim tensor with these
 * strides share an address (outputs: o, and the backward's dq, dk, dv). */
bool clattn__strides_disjoint(const clattn_strides *s, int64_t b, int64_t h, int64_t n,
                              int64_t dim);
/* Checks that a cl_mem holds at least `bytes` (CL_MEM_SIZE). */
clattn_status clattn__check_buffer(clattn_context ctx, cl_mem buf, size_t bytes, const char *arg);

/* ---- host dtype conversions (dtype.c) ---- */
double clattn__half_to_double(uint16_t h);
double clattn__bf16_to_double(uint16_t b);
uint16_t clattn__float_to_half(float f); /* round to nearest even */
uint16_t clattn__float_to_bf16(float f); /* round to nearest even */
/* Element i of a host array of storage type t, as double. */
double clattn__load_elem(const void *base, clattn_dtype t, int64_t i);

/* Validates an optional list of query rows of a reference call. */
bool clattn__rows_valid(const int *rows, int num_rows, int seq_q);

#endif /* CLATTN_INTERNAL_H */
