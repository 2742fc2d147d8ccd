/* bench_membw — memory read bandwidth for benchmark rooflines. */
#ifndef WG_TOOLS_BENCH_MEMBW_H
#define WG_TOOLS_BENCH_MEMBW_H

#include <stddef.h>

#include "kernels/cpu/wg_cpu.h"

/* Median GB/s of reading a `bytes` buffer (far larger than the caches) with
 * `nth` pool threads over `reps` timed passes after a warm-up; *best gets the
 * fastest pass. The same STREAM-style read loop as `waggle bench kernels`.
 * Returns 0 (and *best = 0) when the buffer or pool cannot be had. */
double wg_bench_read_bw(size_t bytes, int nth, int reps, double *best);

/* The same over an existing buffer (already faulted in), with an existing
 * pool: the roofline of the very pages a benchmark reads. */
double wg_bench_read_bw_buf(const void *buf, size_t bytes, wg_pool_t *pool, int reps, double *best);

#endif
