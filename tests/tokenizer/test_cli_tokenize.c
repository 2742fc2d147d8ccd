/* `waggle tokenize` run as a process: output format, flags, text files, errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wg_test.h"

/* Run a command, capture stdout (and stderr when merge), return exit code. */
static int s_run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(cli_tokenize, stories_prompt_with_bos) {
    WG_REQUIRE_CORPUS();
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --add-special -- Once upon a time", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("trained/stories260K-f32.gguf"));
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "[1, 403, 407, 261, 378]\n");
}

Test(cli_tokenize, without_add_special_no_bos) {
    WG_REQUIRE_CORPUS();
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -- Once upon a time", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("trained/stories260K-f32.gguf"));
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "[403, 407, 261, 378]\n");
}

Test(cli_tokenize, text_file_exact_bytes) {
    WG_REQUIRE_CORPUS();
    char path[] = "/tmp/wg_tok_cli_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    /* a trailing newline must be tokenized too (gpt-2: "Hello world\n") */
    cr_assert_eq(write(fd, "Hello world\n", 12), 12);
    close(fd);
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --text-file %s", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"), path);
    int rc = s_run(cmd, out, sizeof out);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "[15496, 995, 198]\n");
}

Test(cli_tokenize, parse_special_flag) {
    WG_REQUIRE_CORPUS();
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --parse-special -- '<|endoftext|>Hello'", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"));
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, "[50256, 15496]\n");
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -- '<|endoftext|>Hello'", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"));
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strncmp(out, "[50256", 6) != 0, "special text parsed without --parse-special: %s", out);
}

Test(cli_tokenize, hf_dir_without_tokenizer_json) {
    WG_REQUIRE_CORPUS();
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s -- hi 2>&1", WG_TEST_WAGGLE_BIN, wg_test_corpus("hf/llama"));
    cr_assert_neq(s_run(cmd, out, sizeof out), 0);
    cr_assert(strstr(out, "no tokenizer.json in") && strstr(out, "pass token ids"), "got: %s", out);
}

Test(cli_tokenize, missing_text_is_usage_error) {
    WG_REQUIRE_CORPUS();
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s 2>&1", WG_TEST_WAGGLE_BIN,
             wg_test_corpus("trained/stories260K-f32.gguf"));
    cr_assert_eq(s_run(cmd, out, sizeof out), 2);
    cr_assert(strstr(out, "usage:"), "got: %s", out);
}
