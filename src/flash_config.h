/* flash_config.h — the flash kernel's tunable parameters, their legal values and constraints. */
#ifndef CLATTN_FLASH_CONFIG_H
#define CLATTN_FLASH_CONFIG_H

#include "tune.h"

/* One configuration of cl/flash_fwd.cl or, with tm = tn = 1, cl/flash_rows.cl (-D parameters). */
typedef struct clattn__flash_cfg {
  int bm; /* query rows per work-group */
  int bn; /* keys per tile */
  int tm; /* work-items along the query rows */
  int tn; /* work-items along the keys / output dims */
} clattn__flash_cfg;

/* Device limits a configuration must respect (local_mem, max_wg). */
typedef clattn__space_limits clattn__flash_limits;

/* Legal values of each parameter (the search space, as data). */
extern const int clattn__flash_bm_values[];
extern const int clattn__flash_bn_values[];
extern const int clattn__flash_tm_values[];
extern const int clattn__flash_tn_values[];
extern const int clattn__flash_num_bm, clattn__flash_num_bn, clattn__flash_num_tm,
    clattn__flash_num_tn;

clattn__flash_limits clattn__flash_limits_of(const clattn__device_info *info);
/* Head dim padded as the kernel pads it (DP). */
int clattn__flash_dp(const clattn__flash_cfg *c, int head_dim);
/* tm = tn = 1 selects the row-vector kernel (cl/flash_rows.cl, for CPUs):
 * one work-item owns bm query rows as a vector and streams bn keys per tile. */
bool clattn__flash_cfg_is_rows(const clattn__flash_cfg *c);
/* Local memory the kernel declares for this configuration and head dim. */
size_t clattn__flash_local_bytes(const clattn__flash_cfg *c, int head_dim);
/* NULL when legal, else a static reason. */
const char *clattn__flash_cfg_check(const clattn__flash_cfg *c, int head_dim,
                                    const clattn__flash_limits *lim);
/* Built-in default for the device class; false if nothing fits. */
bool clattn__flash_cfg_default(const clattn__device_info *info, int head_dim,
                               const clattn__flash_limits *lim, clattn__flash_cfg *out);
/* Parses "bm=64,bn=32,tm=16,tn=8" (any order, optional "flash:" prefix). */
clattn_status clattn__flash_cfg_parse(const char *s, clattn__flash_cfg *out);
/* Conversions between the struct and the space's parameter vector
 * (clattn__flash_space: bm, bn, tm, tn). */
clattn__flash_cfg clattn__flash_cfg_from_params(const int *params);
void clattn__flash_cfg_to_params(const clattn__flash_cfg *c, int *params);

#endif
