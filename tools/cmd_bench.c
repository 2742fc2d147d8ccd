/* waggle bench — benchmark dispatcher: `waggle bench <suite> [options]`.
 * One helper file per suite (tools/bench_<suite>.c); add a row to add one. */
#include <stdio.h>
#include <string.h>

#include "bench_kernels.h"
#include "waggle.h"

int wg_bench_engine_main(int argc, char **argv); /* tools/bench_engine.c */
int wg_bench_attn(int argc, char **argv);        /* tools/bench_attn.c */
int wg_bench_json(int argc, char **argv);        /* tools/bench_json.c */

typedef struct {
    const char *name;                    /* suite name on the command line */
    int (*fn)(int argc, char **argv);    /* argv[0] = suite name */
} s_suite_t;

static const s_suite_t s_suites[] = {
    {"kernels", wg_bench_kernels},
    {"engine", wg_bench_engine_main},
    {"attention", wg_bench_attn},
    {"json", wg_bench_json},
};

int wg_cmd_bench(int argc, char **argv) {
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof s_suites / sizeof s_suites[0]; i++)
            if (strcmp(argv[1], s_suites[i].name) == 0) return s_suites[i].fn(argc - 1, argv + 1);
    }
    /* No suite named (`waggle bench -m MODEL ...`): the engine benchmark. */
    if (argc >= 2 && argv[1][0] == '-') return wg_bench_engine_main(argc, argv);
    fprintf(stderr, "waggle bench: suites are 'kernels', 'engine', 'attention' and 'json' (or: waggle bench -m MODEL ...)\n");
    return 2;
}
