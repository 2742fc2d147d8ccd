/* wg_cuda — CUDA backend entry points (C API over the .cu kernels).
 *
 * Nothing here touches the GPU until called: Criterion's parent process and
 * CPU-only runs never initialise CUDA. */
#ifndef WG_CUDA_H
#define WG_CUDA_H

#include "../../common/wg_status.h"
#include "../quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 (and a reason in wg_errmsg()) when there is
 * no driver or no GPU. */
int wg_cuda_device_count(void);

/* Dequantize n_rows rows of k values of type t from host memory on device
 * `dev`, back to host floats. For checking device kernels against kernels/ref. */
wg_status wg_cuda_dequantize(int dev, wg_type_t t, const void *x, float *y, int64_t n_rows, int64_t k);

#ifdef __cplusplus
}
#endif

#endif
