/* libFuzzer target for tokenizers built from untrusted GGUF metadata: the
 * input is a GGUF image; wg_tt_check (tests/common/wg_test_tok.h) builds its
 * tokenizer and traps when a failed build returns one or says nothing, or
 * an accepted one yields ids outside its vocabulary; it encodes, decodes and
 * detokenizes a fixed set of texts, so ASan/UBSan see every path. Run it
 * with ops/fuzz.sh fuzz_tok SECONDS; with WG_FUZZ_WRITE_SEEDS=DIR set it
 * first writes one small vocabulary per tokenizer family there. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "wg_test_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("WG_FUZZ_WRITE_SEEDS");
    if (!dir) return 0;
    for (int k = 0; k < WG_TT_KINDS; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/vocab-%s.gguf", dir, wg_tt_names[k]);
        if (wg_tt_write(k, path) != WG_OK) {
            fprintf(stderr, "fuzz_tok: vocabulary %s: %s\n", wg_tt_names[k], wg_errmsg());
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *why = wg_tt_check(data, size);
    if (why) {
        fprintf(stderr, "fuzz_tok: %s\n", why);
        __builtin_trap();
    }
    return 0;
}
