/* waggle status — placeholder until its issue lands. */
#include "waggle.h"

int wg_cmd_status(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return wg_cmd_unimplemented("status");
}
