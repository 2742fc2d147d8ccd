/* libFuzzer target for the WGL/1 body decoders: the first byte picks the
 * message kind, the rest is the body; wg_tm_check (tests/common/wg_test_msg.h)
 * traps when a rejected body leaves its struct uncleared or without a
 * message, or an accepted one does not re-encode to bytes that read back the
 * same. ASan/UBSan catch the rest. Run it with ops/fuzz.sh fuzz_msg SECONDS;
 * with WG_FUZZ_WRITE_SEEDS=DIR set it first writes one valid body per kind
 * and variant there (ops/fuzz.sh does that for its seed corpus). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "wg_test_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("WG_FUZZ_WRITE_SEEDS");
    if (!dir) return 0;
    for (int k = 0; k < WG_TM_COUNT; k++)
        for (int v = 0; v < 3; v++) {
            wg_msg_buf b;
            if (wg_tm_sample((wg_tm_kind)k, v, &b) != WG_OK) {
                fprintf(stderr, "fuzz_msg: sample %s/%d does not encode: %s\n", wg_tm_names[k], v, wg_errmsg());
                abort();
            }
            char path[4096];
            snprintf(path, sizeof path, "%s/%s-%d", dir, wg_tm_names[k], v);
            FILE *f = fopen(path, "wb");
            if (!f) {
                perror(path);
                abort();
            }
            const uint8_t sel = (uint8_t)k;
            fwrite(&sel, 1, 1, f);
            fwrite(b.data, 1, b.len, f);
            fclose(f);
            wg_msg_buf_free(&b);
        }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const wg_tm_kind k = (wg_tm_kind)(data[0] % WG_TM_COUNT);
    const char *why = wg_tm_check(k, data + 1, size - 1);
    if (why) {
        fprintf(stderr, "fuzz_msg: %s\n", why);
        __builtin_trap();
    }
    return 0;
}
