/* waggle run — placeholder until its issue lands. */
#include "waggle.h"

int wg_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return wg_cmd_unimplemented("run");
}
