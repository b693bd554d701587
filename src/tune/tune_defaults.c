/* tune_defaults.c — built-in kernel configurations per device class, used when nothing is tuned
 * (like CLBlast's database). */
#include "tune.h"

#include <stdio.h>
#include <string.h>

/*
 * One row: a configuration for the devices it matches, for head dims up to
 * max_head_dim. Rows are searched level by level, most specific first:
 *
 *   1. device:        vendor + a substring of the device name ("H200")
 *   2. architecture:  vendor + architecture ("sm_90" from the NVIDIA
 *                     compute capability, "gfx90a" from an AMD device name)
 *   3. vendor:        vendor and device type
 *   4. device class:  device type only (GPU, CPU)
 *
 * Within a level the row with the smallest max_head_dim ≥ head_dim whose
 * configuration is legal on the device wins; of equal rows, the first (so
 * a row may be followed by a smaller tiling for where it does not fit, and
 * a row with `only` set, which only plans of that kind match (ONLY_SPARSE:
 * a sparse mask, ONLY_WINDOW: a window, ONLY_CAP_UNMASKED: bf16 softcap
 * alone without a mask), comes before the row for every plan). When no row applies, the
 * variant's own fallback decides. A row's configuration may name only some
 * parameters: the others come from the fallback.
 * Add a measured device by adding rows; `label` is what describe() shows.
 */
typedef enum { ANY_TYPE = 0, GPU = 1, CPU = 2 } dev_type;
typedef enum { ONLY_ANY = 0, ONLY_SPARSE = 1, ONLY_WINDOW = 2, ONLY_CAP_UNMASKED = 3 } plan_kind;

typedef struct tune_default {
  const char *kernel;
  const char *vendor; /* "nvidia", "amd", "intel", or NULL for any */
  const char *arch;   /* "sm_90", "gfx90a", or NULL */
  const char *device; /* case-insensitive substring of the device name, or NULL */
  dev_type type;
  int dtype; /* clattn_dtype, or -1 for any */
  int max_head_dim;
  const char *config;
  const char *label;
  plan_kind only; /* the plans the row is for (ONLY_ANY, left out: every plan) */
} tune_default;

static const tune_default table[] = {
    /* NVIDIA Hopper: measured on an H200 (sm_90), f32; an exhaustive
     * `clattn tune` at N=4096 (267 legal configurations for d=64, 168 for
     * d=128) found nothing faster than these, which are also the choice for
     * other NVIDIA GPUs (not measured; they fit the 48 KiB local memory of
     * every NVIDIA GPU up to d = 128). */
    {"flash", "nvidia", NULL, NULL, GPU, -1, 64, "bm=64,bn=32,tm=16,tn=8", "NVIDIA GPU", 0},
    {"flash", "nvidia", NULL, NULL, GPU, -1, 128, "bm=64,bn=16,tm=16,tn=8", "NVIDIA GPU", 0},
    {"flash", "nvidia", NULL, NULL, GPU, -1, 256, "bm=32,bn=16,tm=8,tn=8", "NVIDIA GPU", 0},
    /* Tensor-core kernel (f16/bf16 on sm_80+), H200 sweeps at N = 4096
     * (`bash bench/gpu.sh tc`, bench/RESULTS.md): two m-tiles per warp halve
     * the local-memory reads per MMA where the registers allow it (d <= 64);
     * at d = 128 they spill (255 registers), one m-tile and 8 warps win. */
    /* Sparse masks at d <= 64: 64-row blocks; for a window (a band: a few tiles per row
     * block) 32-key tiles waste fewer pairs at its edges: window 256 at N = 16k, f16, H100:
     * 0.1900 vs 0.2069 ms (64-key tiles) vs 0.2329 (128-row blocks) causal, 0.2559 vs 0.2806
     * vs 0.2907 two-sided; BigBird's blocks of 64 keys want 64-key tiles (0.645 vs 0.708 ms at
     * N = 16k, bigbird:64,3,2,3; bench/RESULTS.md §20, §22, §23). */
    {"flash_tc", "nvidia", NULL, NULL, GPU, -1, 64, "warps=4,mt=1,bn=32", "NVIDIA GPU, window",
     ONLY_WINDOW},
    {"flash_tc", "nvidia", NULL, NULL, GPU, -1, 64, "warps=4,mt=1,bn=64", "NVIDIA GPU, sparse",
     ONLY_SPARSE},
    /* bf16 softcap alone (its softmax with a fixed maximum: two MUFU operations a score) without a
     * mask at d <= 64: 8 warps of one m-tile, H100, B·N = 65536, H = 16: 4.45-4.49 / 16.79-16.84 ms
     * at N = 4096 / 16384 against 4.56-4.63 / 17.06-17.19 with the row below (+8-10 % over plain
     * flash instead of +11-12 %); causal keeps the row below (12.32 vs 8.77 ms at 16k;
     * bench/RESULTS.md §28). */
    {"flash_tc", "nvidia", NULL, NULL, GPU, CLATTN_DTYPE_BF16, 64, "warps=8,mt=1,bn=64",
     "NVIDIA GPU, bf16 softcap, no mask", ONLY_CAP_UNMASKED},
    {"flash_tc", "nvidia", NULL, NULL, GPU, -1, 64, "warps=4,mt=2,bn=64", "NVIDIA GPU", 0},
    {"flash_tc", "nvidia", NULL, NULL, GPU, -1, 128, "warps=8,mt=1,bn=64", "NVIDIA GPU", 0},
    {"flash_tc", "nvidia", NULL, NULL, GPU, -1, 256, "warps=8,mt=1,bn=32", "NVIDIA GPU", 0},
    /* Q in local memory (flash_tcq, above flash_tc at head dims 113-128): two m-tiles a warp,
     * 32-key tiles, 48 KiB; H100, N = 4096 / 16384, B·H·N = 262144: 7-10 % faster than
     * flash_tc's 8 warps of 64-key tiles, causal at 16k 2 % slower (bench/RESULTS.md §23). */
    {"flash_tcq", "nvidia", NULL, NULL, GPU, -1, 128, "warps=4,mt=2,bn=32", "NVIDIA GPU", 0},
    /* f32 on tensor cores (3xTF32), H100 sweep at N = 4096 (`bash bench/gpu.sh tf32`,
     * bench/RESULTS.md §21): one m-tile a warp (two spill: f32 Q fragments plus the fresh P·V
     * accumulators), 8 warps, 32-key tiles. */
    {"flash_tf32", "nvidia", NULL, NULL, GPU, -1, 128, "warps=8,mt=1,bn=32", "NVIDIA GPU", 0},
    /* Backward (issue 16), portable work-group kernels on NVIDIA: the Q, dO,
     * K, V tiles and the P, dS tiles within 42 KiB of local memory (not
     * measured yet: `bash bench/gpu.sh backward`). */
    {"flash_bwd", "nvidia", NULL, NULL, GPU, -1, 64, "bm=32,bn=32,nt=128", "NVIDIA GPU", 0},
    {"flash_bwd", "nvidia", NULL, NULL, GPU, -1, 128, "bm=16,bn=16,nt=128", "NVIDIA GPU", 0},
    {"flash_bwd", "nvidia", NULL, NULL, GPU, -1, 256, "bm=8,bn=8,nt=64", "NVIDIA GPU", 0},
    /* AMD GPUs: 64-wide wavefronts, 64 KiB LDS (not measured). */
    {"flash", "amd", NULL, NULL, GPU, -1, 64, "bm=64,bn=32,tm=16,tn=4", "AMD GPU", 0},
    {"flash", "amd", NULL, NULL, GPU, -1, 128, "bm=32,bn=32,tm=8,tn=8", "AMD GPU", 0},
    /* Intel GPUs: SIMD8..32, 64 KiB SLM (not measured). */
    {"flash", "intel", NULL, NULL, GPU, -1, 64, "bm=32,bn=32,tm=8,tn=8", "Intel GPU", 0},
    {"flash", "intel", NULL, NULL, GPU, -1, 128, "bm=32,bn=16,tm=8,tn=8", "Intel GPU", 0},
    /* Any GPU. */
    {"flash", NULL, NULL, NULL, GPU, -1, 128, "bm=64,bn=32,tm=16,tn=8", "GPU", 0},
    /* CPUs: the row-vector kernel (cl/flash_rows.cl), measured with PoCL 3.1
     * on a 2-core AVX-512 EPYC: 10-27x faster than the work-group kernel's
     * best configurations there. */
    {"flash_rows", NULL, NULL, NULL, CPU, -1, 256, "bm=16,bn=64", "CPU", 0},
    /* Backward on CPUs: 16 lanes (AVX-512: one register per vector) ran
     * 1.8x the 8-lane kernel on PoCL 3.1 (N = 2048, d = 64, f32). */
    {"flash_bwd_rows", NULL, NULL, NULL, CPU, -1, 256, "w=16", "CPU", 0},
    /* Linear attention on GPUs, measured on an H200 (d = 64, B·H = 16,
     * N = 64k-128k, bench/linear_sweep.sh): 32-key state tiles, 8x8 register
     * tiles of 128-row output blocks, 16-feature apply slices, 64-key causal
     * chunks walked by 16x8 work-items, 32-row feature blocks of 4x8 tiles.
     * The tensor-core variant: 4 warps of one 16-row m-tile in lin_apply. */
    {"linear", NULL, NULL, NULL, GPU, -1, 256,
     "chunk=64,bks=32,src=8,bq=128,arq=8,arc=8,afs=16,ctr=16,ctc=8,cfs=32,fbr=32,frr=4,frf=8,"
     "fds=16",
     "GPU", 0},
    {"linear", NULL, NULL, NULL, GPU, -1, 256,
     "chunk=64,bks=16,src=8,bq=128,arq=8,arc=8,afs=16,ctr=16,ctc=8,cfs=32,fbr=32,frr=4,frf=8,"
     "fds=16",
     "GPU", 0},
    {"linear_tc", "nvidia", NULL, NULL, GPU, -1, 256,
     "chunk=64,bks=32,ctr=16,ctc=8,cfs=32,fbr=32,frr=4,frf=8,fds=16,taw=4,tam=1,bq=64",
     "NVIDIA GPU", 0},
    /* The same with 16-key state tiles, where 32 do not fit the local memory
     * (d = 64 with 64 features on 48 KiB: without this row the generic
     * tiling ran, 32-key chunks, 1.32x slower causal, H100). */
    {"linear_tc", "nvidia", NULL, NULL, GPU, -1, 256,
     "chunk=64,bks=16,ctr=16,ctc=8,cfs=32,fbr=32,frr=4,frf=8,fds=16,taw=4,tam=1,bq=64",
     "NVIDIA GPU", 0},
    /* Linear attention on CPUs (PoCL vectorises across work-items): smaller
     * tiles and work-groups. */
    {"linear", NULL, NULL, NULL, CPU, -1, 256,
     "chunk=32,bks=32,srf=4,src=8,bq=32,arq=4,arc=8,afs=32,ctr=8,ctc=8,cfs=32,fbr=32,frr=4,frf=8,"
     "fds=16",
     "CPU", 0},
};

static bool vendor_is(const clattn__device_info *info, const char *v) {
  if (!strcmp(v, "nvidia")) return info->is_nvidia;
  if (!strcmp(v, "amd")) return info->is_amd;
  if (!strcmp(v, "intel")) return info->is_intel;
  return false;
}

static void arch_of(const clattn__device_info *info, char *buf, size_t cap) {
  buf[0] = 0;
  if (info->is_nvidia && info->nv_cc_major > 0)
    snprintf(buf, cap, "sm_%d%d", info->nv_cc_major, info->nv_cc_minor);
  else if (info->is_amd && !strncmp(info->name, "gfx", 3))
    snprintf(buf, cap, "%.31s", info->name);
}

static int level_of(const tune_default *r) {
  if (r->device) return 1;
  if (r->arch) return 2;
  if (r->vendor) return 3;
  return 4;
}

/* bf16 softcap alone without a mask (flash_tc's softmax with a fixed maximum) */
static bool cap_unmasked(const clattn_attention_desc *d) {
  return d->mask == CLATTN_MASK_NONE && d->dtype == CLATTN_DTYPE_BF16 && d->softcap > 0.0 &&
         d->alibi_max_bias == 0.0 && !d->score_mod && !d->mask_mod && !d->sinks &&
         d->bias_type == CLATTN_BIAS_NONE && d->kv_dtype == CLATTN_KV_DTYPE_SAME;
}

static bool matches(const tune_default *r, const clattn__device_info *info, const char *arch,
                    const clattn__variant *sp, const clattn_attention_desc *d) {
  const clattn_mask mask = d->mask;
  if (strcmp(r->kernel, sp->name)) return false;
  if (r->dtype >= 0 && r->dtype != (int)d->dtype) return false;
  if (d->head_dim > r->max_head_dim) return false;
  if (r->type == GPU && (info->is_cpu || !(info->type & CL_DEVICE_TYPE_GPU))) return false;
  if (r->type == CPU && !info->is_cpu) return false;
  if (r->vendor && !vendor_is(info, r->vendor)) return false;
  if (r->arch && strcmp(r->arch, arch)) return false;
  if (r->device && !clattn__strcasestr_bool(info->name, r->device)) return false;
  if (r->only == ONLY_SPARSE && !clattn__mask_is_sparse(mask)) return false;
  if (r->only == ONLY_WINDOW && mask != CLATTN_MASK_WINDOW) return false;
  if (r->only == ONLY_CAP_UNMASKED && !cap_unmasked(d)) return false;
  return true;
}

bool clattn__builtin_default(const clattn__device_info *info, const clattn__variant *v,
                             const clattn_attention_desc *d, int *params, char *label, size_t cap) {
  char arch[32];
  arch_of(info, arch, sizeof arch);
  int base[CLATTN__MAX_PARAMS];
  const bool have_base = v->fallback(info, d, base);
  const size_t n = sizeof table / sizeof table[0];
  for (int level = 1; level <= 4; level++) {
    const tune_default *best = NULL;
    int best_params[CLATTN__MAX_PARAMS];
    for (size_t i = 0; i < n; i++) {
      const tune_default *r = &table[i];
      if (level_of(r) != level || !matches(r, info, arch, v, d)) continue;
      if (best && r->max_head_dim >= best->max_head_dim) continue;
      int p[CLATTN__MAX_PARAMS];
      if (clattn__config_parse(v, r->config, have_base ? base : NULL, p, NULL, 0) != CLATTN_SUCCESS)
        continue;
      if (v->check(p, d, info)) continue;
      best = r;
      memcpy(best_params, p, sizeof p);
    }
    if (best) {
      memcpy(params, best_params, (size_t)v->num_params * sizeof *params);
      snprintf(label, cap, "%s", best->label);
      return true;
    }
  }
  if (have_base) {
    memcpy(params, base, (size_t)v->num_params * sizeof *params);
    snprintf(label, cap, "%s", info->is_cpu ? "CPU, generic" : "generic");
    return true;
  }
  return false;
}
