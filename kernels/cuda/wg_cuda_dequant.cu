/* wg_cuda_dequant — device dequantization of the legacy block types.
 * One thread per block: y[32 values] = d * (q - 8) for Q4_0, d * q for Q8_0. */
#include <cuda_runtime.h>

#include "wg_cuda.h"

__device__ static float s_h2f(wg_half h) { return wg_fp16_to_fp32(h); }

__global__ static void k_dequant_q4_0(const wg_block_q4_0 *x, float *y, int64_t nb) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= nb) return;
    const float d = s_h2f(x[i].d);
    for (int j = 0; j < WG_QK4_0 / 2; j++) {
        y[i * WG_QK4_0 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
        y[i * WG_QK4_0 + j + WG_QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
}

__global__ static void k_dequant_q8_0(const wg_block_q8_0 *x, float *y, int64_t nb) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= nb) return;
    const float d = s_h2f(x[i].d);
    for (int j = 0; j < WG_QK8_0; j++) y[i * WG_QK8_0 + j] = x[i].qs[j] * d;
}

extern "C" int wg_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        wg_error(WG_ERR_DEVICE, "no CUDA device: %s", cudaGetErrorString(e));
        return 0;
    }
    return n;
}

extern "C" wg_status wg_cuda_dequantize(int dev, wg_type_t t, const void *x, float *y, int64_t n_rows,
                                        int64_t k) {
    size_t bsz;
    if (t == WG_TYPE_Q4_0)
        bsz = sizeof(wg_block_q4_0);
    else if (t == WG_TYPE_Q8_0)
        bsz = sizeof(wg_block_q8_0);
    else
        return wg_error(WG_ERR_UNSUPPORTED, "cuda dequantize: type id %d", (int)t);
    if (k % 32) return wg_error(WG_ERR_INVAL, "cuda dequantize: k=%lld not a multiple of 32", (long long)k);
    const int64_t nb = n_rows * k / 32;
    void *dx = NULL;
    float *dy = NULL;
    wg_status st = WG_OK;
    if (cudaSetDevice(dev) != cudaSuccess || cudaMalloc(&dx, nb * bsz) != cudaSuccess ||
        cudaMalloc((void **)&dy, nb * 32 * sizeof(float)) != cudaSuccess) {
        st = wg_error(WG_ERR_DEVICE, "cuda dequantize: allocation on device %d failed", dev);
        goto out;
    }
    cudaMemcpy(dx, x, nb * bsz, cudaMemcpyHostToDevice);
    if (t == WG_TYPE_Q4_0)
        k_dequant_q4_0<<<(unsigned)((nb + 255) / 256), 256>>>((const wg_block_q4_0 *)dx, dy, nb);
    else
        k_dequant_q8_0<<<(unsigned)((nb + 255) / 256), 256>>>((const wg_block_q8_0 *)dx, dy, nb);
    if (cudaMemcpy(y, dy, nb * 32 * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
        st = wg_error(WG_ERR_DEVICE, "cuda dequantize: kernel failed: %s", cudaGetErrorString(cudaGetLastError()));
out:
    cudaFree(dx);
    cudaFree(dy);
    return st;
}
