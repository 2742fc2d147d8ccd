/* test_gpu_leak — repeated model load/unload must not leak device memory:
 * 100 cycles of "register a model's weights, run a matmul on them, destroy
 * the registry" leave cudaMemGetInfo's free memory where one cycle left it.
 * Skips without a GPU. */
#include "../../kernels/ref/wg_ref.h"
#include "wg_gpu_test.h"

#define N_TENSORS 12
#define CYCLES 100

Test(gpu_leak, hundred_weight_upload_free_cycles_leave_free_memory_flat) {
    WG_GPU_CTX(ctx);
    /* A toy "model": 12 Q4_K matrices of 256 x 4096 (~590 KB each) plus
     * odd-sized tensors, so allocations are not all one size class. */
    const int64_t N = 256, K = 4096;
    const size_t rb = wg_row_size(WG_TYPE_Q4_K, K);
    uint8_t *host[N_TENSORS];
    size_t bytes[N_TENSORS];
    for (int i = 0; i < N_TENSORS; i++) {
        bytes[i] = i % 3 == 2 ? (size_t)(12345 + 1000 * i) : rb * (size_t)N;
        host[i] = calloc(bytes[i], 1);
        cr_assert(host[i]);
    }
    float *dx = NULL, *dy = NULL;
    WG_GPU_OK(wg_cuda_malloc(ctx, (size_t)K * sizeof(float), (void **)&dx));
    WG_GPU_OK(wg_cuda_malloc(ctx, (size_t)N * sizeof(float), (void **)&dy));
    WG_GPU_OK(wg_cuda_memset(ctx, dx, 0, (size_t)K * sizeof(float)));
    size_t first = 0, free_after_warm = 0, mid = 0, free_now = 0, total = 0, free_before = 0;
    WG_GPU_OK(wg_cuda_mem_info(ctx, &free_before, &total));
    for (int c = 0; c < CYCLES; c++) {
        wg_cuda_weights_t *reg = wg_cuda_weights_new(ctx);
        cr_assert(reg, "%s", wg_errmsg());
        for (int i = 0; i < N_TENSORS; i++) {
            const void *d = NULL;
            WG_GPU_OK(wg_cuda_weights_get(reg, host[i], bytes[i], &d));
            if (i % 3 != 2) WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q4_K, d, N, K, dx, 1, dy));
        }
        cr_assert_eq(wg_cuda_weights_count(reg), N_TENSORS);
        size_t held_free = 0;
        WG_GPU_OK(wg_cuda_mem_info(ctx, &held_free, NULL));
        if (c == 0)
            cr_assert(held_free < free_before, "registered weights show up in cudaMemGetInfo (%zu -> %zu)",
                      free_before, held_free);
        WG_GPU_OK(wg_cuda_sync(ctx));
        wg_cuda_weights_destroy(&reg);
        WG_GPU_OK(wg_cuda_mem_info(ctx, &free_now, NULL));
        if (c == 0) first = free_now;
        if (c == 9) free_after_warm = free_now;
        if (c == CYCLES / 2 - 1) mid = free_now;
    }
    /* The driver keeps a few 2 MiB granules of its sub-allocator after the
     * first cycles (seen on an H100: 8 MiB over the first cycles, then flat),
     * so compare from cycle 10 on. Allowance: one 2 MiB granule; leaking even
     * the smallest tensor (12 KB) per cycle would be > 1 MB over 90 cycles,
     * one Q4_K matrix ~53 MB. */
    const size_t slack = 2u << 20;
    cr_assert(free_now + slack >= free_after_warm,
              "free memory fell from %zu to %zu bytes between cycles 10 and %d (after cycle 1: %zu, cycle %d: %zu)",
              free_after_warm, free_now, CYCLES, first, CYCLES / 2, mid);
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dy);
    for (int i = 0; i < N_TENSORS; i++) free(host[i]);
    wg_cuda_destroy(&ctx);
}

Test(gpu_leak, context_create_destroy_cycles_do_not_leak) {
    if (wg_cuda_device_count() <= 0) cr_skip_test("no CUDA GPU: %s", wg_errmsg());
    size_t base = 0, now = 0;
    for (int c = 0; c < 20; c++) {
        wg_cuda_t *ctx = wg_cuda_new(0);
        cr_assert(ctx, "%s", wg_errmsg());
        WG_GPU_OK(wg_cuda_reserve_scratch(ctx, 8u << 20));
        WG_GPU_OK(wg_cuda_mem_info(ctx, &now, NULL));
        if (c == 1) base = now; /* after the first cycle's lazy driver/cuBLAS setup */
        wg_cuda_destroy(&ctx);
        cr_assert_null(ctx);
    }
    cr_assert(now + (2u << 20) >= base, "free memory with a live context fell from %zu to %zu", base, now);
}
