/* `waggle inspect` and `waggle dequant` run as a real process on corpus files:
 * the JSON lists what the GGUF reader reads, dequantized bytes equal the
 * file's (F32) or the corpus's dequantized vectors, errors exit non-zero with
 * the reason on stderr. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

static char s_dir[256];

static void s_setup(void) {
    snprintf(s_dir, sizeof s_dir, "/tmp/wg_cli_inspect_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", s_dir);
    cr_assert_eq(system(cmd), 0);
}

static void s_teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    (void)system(cmd);
}

TestSuite(cli_inspect, .init = s_setup, .fini = s_teardown);

static uint8_t *s_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Run `waggle ARGS` with stdout/stderr captured in s_dir/out, s_dir/err; return the exit code. */
static int s_run(const char *args) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out' 2>'%s/err'", WG_TEST_WAGGLE_BIN, args, s_dir, s_dir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "waggle did not exit normally: %s", cmd);
    return WEXITSTATUS(st);
}

static char *s_captured(const char *which) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", s_dir, which);
    size_t n;
    char *s = (char *)s_slurp(p, &n);
    cr_assert_not_null(s);
    return s;
}

static void s_require_bin(void) {
    if (access(WG_TEST_WAGGLE_BIN, X_OK) != 0) cr_assert_fail("waggle binary missing at %s", WG_TEST_WAGGLE_BIN);
}

Test(cli_inspect, json_lists_metadata_and_tensors) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    char args[8192];
    const char *rel = "models/llama/llama-Q4_K_M.gguf";
    snprintf(args, sizeof args, "inspect --json '%s'", wg_test_corpus(rel));
    cr_assert_eq(s_run(args), 0, "stderr: %s", s_captured("err"));
    char *out = s_captured("out");
    json_error_t err;
    json_t *root = json_loads(out, 0, &err);
    cr_assert_not_null(root, "not JSON (%s): %.200s", err.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(root, "format")), "gguf");
    cr_assert_eq(json_integer_value(json_object_get(root, "version")), 3);
    json_t *md = json_object_get(root, "metadata");
    cr_assert_str_eq(json_string_value(json_object_get(md, "general.architecture")), "llama");
    cr_assert_eq(json_integer_value(json_object_get(md, "llama.embedding_length")), 256);
    cr_assert(json_is_true(json_object_get(md, "tokenizer.ggml.add_bos_token")));
    json_t *toks = json_object_get(md, "tokenizer.ggml.tokens");
    cr_assert_eq(json_array_size(toks), 320);
    cr_assert_str_eq(json_string_value(json_array_get(toks, 1)), "<s>");
    cr_assert_float_eq(json_real_value(json_object_get(md, "llama.attention.layer_norm_rms_epsilon")), 1e-5f, 1e-12);

    /* the tensor list is the reader's, in file order */
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK);
    json_t *ts = json_object_get(root, "tensors");
    cr_assert_eq((int64_t)json_array_size(ts), wg_gguf_n_tensors(g));
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        json_t *jt = json_array_get(ts, (size_t)i);
        cr_assert_str_eq(json_string_value(json_object_get(jt, "name")), t->name);
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(jt, "offset")), t->offset);
        cr_assert_eq((size_t)json_integer_value(json_object_get(jt, "bytes")), t->nbytes);
        json_t *shape = json_object_get(jt, "shape");
        cr_assert_eq(json_array_size(shape), t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            cr_assert_eq(json_integer_value(json_array_get(shape, d)), t->ne[d]);
    }
    json_t *emb = NULL;
    for (size_t i = 0; i < json_array_size(ts); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(ts, i), "name")), "token_embd.weight") == 0)
            emb = json_array_get(ts, i);
    cr_assert_not_null(emb);
    cr_assert_str_eq(json_string_value(json_object_get(emb, "type")), "Q4_K");
    wg_gguf_close(&g);
    json_decref(root);
}

Test(cli_inspect, human_output) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    char args[8192];
    snprintf(args, sizeof args, "inspect '%s'", wg_test_corpus("models/llama/llama-Q4_K_M.gguf"));
    cr_assert_eq(s_run(args), 0);
    char *out = s_captured("out");
    cr_assert(strstr(out, "GGUF v3"), "%s", out);
    cr_assert(strstr(out, "alignment:   32"), "%s", out);
    cr_assert(strstr(out, "arr[str] n=320 [\"<unk>\", \"<s>\""), "%s", out);
    cr_assert(strstr(out, "token_embd.weight"), "%s", out);
    cr_assert(strstr(out, "Q6_K"), "%s", out);
    cr_assert(strstr(out, "tensors (21)"), "%s", out);
}

Test(cli_inspect, hf_directory_json) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    char args[8192];
    snprintf(args, sizeof args, "inspect --json '%s'", wg_test_corpus("hf/llama"));
    cr_assert_eq(s_run(args), 0, "stderr: %s", s_captured("err"));
    json_error_t err;
    json_t *root = json_loads(s_captured("out"), 0, &err);
    cr_assert_not_null(root, "%s", err.text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "format")), "hf");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(root, "config"), "hidden_size")), 256);
    json_t *ts = json_object_get(root, "tensors");
    cr_assert_eq(json_array_size(ts), 21);
    bool found = false;
    for (size_t i = 0; i < json_array_size(ts); i++) {
        json_t *t = json_array_get(ts, i);
        if (strcmp(json_string_value(json_object_get(t, "name")), "model.embed_tokens.weight") != 0) continue;
        found = true;
        cr_assert_str_eq(json_string_value(json_object_get(t, "type")), "F32");
        json_t *shape = json_object_get(t, "shape"); /* numpy order */
        cr_assert_eq(json_integer_value(json_array_get(shape, 0)), 320);
        cr_assert_eq(json_integer_value(json_array_get(shape, 1)), 256);
        cr_assert_eq(json_integer_value(json_object_get(t, "bytes")), 320 * 256 * 4);
    }
    cr_assert(found);
    json_decref(root);
}

Test(cli_inspect, bad_file_fails_with_reason) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    /* a GGUF cut in the middle of its tensor table */
    size_t len;
    uint8_t *buf = s_slurp(wg_test_corpus("models/llama/llama-f32.gguf"), &len);
    cr_assert_not_null(buf);
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open_mem(buf, len, &g), WG_OK);
    size_t cut = (size_t)wg_gguf_data_offset(g) - 40;
    wg_gguf_close(&g);
    char path[512];
    snprintf(path, sizeof path, "%s/cut.gguf", s_dir);
    FILE *f = fopen(path, "wb");
    cr_assert_eq(fwrite(buf, 1, cut, f), cut);
    fclose(f);
    free(buf);
    char args[8192];
    snprintf(args, sizeof args, "inspect '%s'", path);
    cr_assert_neq(s_run(args), 0);
    char *e = s_captured("err");
    cr_assert(strstr(e, "cut.gguf") && strstr(e, "truncated"), "stderr: %s", e);
    snprintf(args, sizeof args, "inspect --json '%s/does-not-exist.gguf'", s_dir);
    cr_assert_neq(s_run(args), 0);
    cr_assert(strstr(s_captured("err"), "does-not-exist.gguf"), "stderr: %s", s_captured("err"));
    cr_assert_neq(s_run("inspect"), 0); /* usage */
}

/* Dequantize `tensor` of corpus file `rel` into s_dir/NAME and return its bytes. */
static float *s_dequant(const char *rel, const char *tensor, size_t *n_floats) {
    char args[8192], out[512];
    snprintf(out, sizeof out, "%s/deq.bin", s_dir);
    snprintf(args, sizeof args, "dequant '%s' '%s' -o '%s'", wg_test_corpus(rel), tensor, out);
    cr_assert_eq(s_run(args), 0, "%s: stderr: %s", args, s_captured("err"));
    size_t len;
    float *y = (float *)s_slurp(out, &len);
    cr_assert_not_null(y);
    cr_assert_eq(len % 4, 0);
    *n_floats = len / 4;
    unlink(out);
    return y;
}

Test(cli_inspect, dequant_f32_equals_file_bytes) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    const char *rel = "models/llama/llama-f32.gguf";
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK);
    static const char *const names[] = {"token_embd.weight", "blk.1.ffn_down.weight", "output_norm.weight"};
    for (int i = 0; i < 3; i++) {
        const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, names[i]);
        size_t n;
        float *y = s_dequant(rel, names[i], &n);
        cr_assert_eq(n * 4, t->nbytes, "%s", names[i]);
        cr_assert_eq(memcmp(y, t->data, t->nbytes), 0, "%s", names[i]);
        free(y);
    }
    wg_gguf_close(&g);
}

Test(cli_inspect, dequant_quantized_matches_corpus_vectors) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    const char *rel = "quants/quant-vectors.gguf";
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK);
    static const char *const types[] = {"Q8_0", "Q4_0", "F16", "BF16"};
    for (int i = 0; i < 4; i++) {
        char q[32], deq[32];
        snprintf(q, sizeof q, "q.%s", types[i]);
        snprintf(deq, sizeof deq, "deq.%s", types[i]);
        const wg_gguf_tensor_t *ref = wg_gguf_find_tensor(g, deq);
        cr_assert_not_null(ref);
        size_t n;
        float *y = s_dequant(rel, q, &n);
        cr_assert_eq(n, 512 * 8, "%s", q);
        cr_assert_eq(memcmp(y, ref->data, ref->nbytes), 0, "%s differs from %s", q, deq);
        free(y);
    }
    /* integer tensors convert value by value: the reference prompt ids */
    const char *rrel = "refs/llama-f32.ref.gguf";
    wg_gguf_t *r = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rrel), &r), WG_OK);
    const wg_gguf_tensor_t *tok = wg_gguf_find_tensor(r, "tokens");
    size_t n;
    float *y = s_dequant(rrel, "tokens", &n);
    cr_assert_eq(n, (size_t)tok->ne[0]);
    for (size_t i = 0; i < n; i++) cr_assert_eq(y[i], (float)((const int32_t *)tok->data)[i]);
    free(y);
    wg_gguf_close(&r);
    wg_gguf_close(&g);
}

Test(cli_inspect, dequant_safetensors_matches_gguf) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    /* HF F32 embeddings are the GGUF token_embd bytes; the f16 copy of qwen2
     * holds the same numbers as qwen2-F16.gguf */
    size_t na, nb;
    float *a = s_dequant("hf/llama", "model.embed_tokens.weight", &na);
    float *b = s_dequant("models/llama/llama-f32.gguf", "token_embd.weight", &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(a, b, na * 4), 0);
    free(a);
    free(b);
    a = s_dequant("hf/qwen2-f16/model.safetensors", "model.embed_tokens.weight", &na);
    b = s_dequant("models/qwen2/qwen2-F16.gguf", "token_embd.weight", &nb);
    cr_assert_eq(na, nb);
    cr_assert_gt(na, 0);
    cr_assert_eq(memcmp(a, b, na * 4), 0);
    free(a);
    free(b);
}

Test(cli_inspect, dequant_unknown_tensor_fails) {
    WG_REQUIRE_CORPUS();
    s_require_bin();
    char args[8192];
    snprintf(args, sizeof args, "dequant '%s' no.such.tensor -o '%s/x.bin'",
             wg_test_corpus("models/llama/llama-f32.gguf"), s_dir);
    cr_assert_neq(s_run(args), 0);
    cr_assert(strstr(s_captured("err"), "no.such.tensor"), "stderr: %s", s_captured("err"));
    char p[512];
    snprintf(p, sizeof p, "%s/x.bin", s_dir);
    cr_assert_neq(access(p, F_OK), 0, "no output file on failure");
    snprintf(args, sizeof args, "dequant '%s' model.nope -o '%s/x.bin'", wg_test_corpus("hf/llama"), s_dir);
    cr_assert_neq(s_run(args), 0);
    cr_assert(strstr(s_captured("err"), "model.nope"), "stderr: %s", s_captured("err"));
    cr_assert_neq(s_run("dequant only-one-arg"), 0);
}
