/* bench_util — small pieces every `waggle bench` suite uses. */
#ifndef WG_TOOLS_BENCH_UTIL_H
#define WG_TOOLS_BENCH_UTIL_H

/* Monotonic clock in seconds. */
double wg_bench_now(void);

/* qsort comparator for doubles, ascending. */
int wg_bench_cmp_double(const void *a, const void *b);

#endif
