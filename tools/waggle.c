/* waggle — the command-line tool: dispatches to one subcommand per file. */
#include "engine/model/wg_model.h"
#include "waggle.h"

#include <stdio.h>
#include <string.h>

#include "common/wg_mem.h"
#include "common/wg_status.h"

typedef struct {
    const char *name;  /* subcommand */
    wg_cmd_fn fn;      /* entry point */
    const char *help;  /* one line */
} s_command_t;

static const s_command_t s_commands[] = {
#define WG_XX_ROW(name, help) {#name, wg_cmd_##name, help},
    WG_COMMANDS(WG_XX_ROW)
#undef WG_XX_ROW
};

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle COMMAND [ARGS...]\n       waggle --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", s_commands[i].name, s_commands[i].help);
    fprintf(f, "\nRun 'waggle COMMAND --help' for a command's options.\n");
}

bool wg_cli_device_ok(const char *tool, const char *device) {
    int cuda = -1;
    if (wg_device_parse(device, &cuda) == WG_OK) return true;
    fprintf(stderr, "waggle %s: %s\n", tool, wg_errmsg());
    return false;
}

bool wg_cli_kv_type_ok(const char *tool, const char *s, wg_kv_type_t *t) {
    if (wg_kv_type_parse(s, t) == WG_OK) return true;
    fprintf(stderr, "waggle %s: --kv-type: %s\n", tool, wg_errmsg());
    return false;
}

int wg_cmd_unimplemented(const char *name) {
    fprintf(stderr, "waggle %s: not built yet in this version\n", name);
    return 2;
}

int main(int argc, char **argv) {
    wg_mem_tune(); /* `waggle run` loads and frees models like a worker */
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("waggle %s\nbackends: %s\n", WG_VERSION, wg_engine_backends());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        s_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (strcmp(argv[1], s_commands[i].name) == 0) return s_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "waggle: unknown command '%s'\n\n", argv[1]);
    s_usage(stderr);
    return 2;
}
