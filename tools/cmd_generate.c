/* waggle generate — placeholder until its issue lands. */
#include "waggle.h"

int wg_cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return wg_cmd_unimplemented("generate");
}
