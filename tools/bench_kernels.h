/* bench_kernels — `waggle bench kernels`: CPU matmul throughput against the
 * machine's measured memory read bandwidth. */
#ifndef WG_TOOLS_BENCH_KERNELS_H
#define WG_TOOLS_BENCH_KERNELS_H

/* argv[0] = "kernels". Returns the process exit code. */
int wg_bench_kernels(int argc, char **argv);

#endif
