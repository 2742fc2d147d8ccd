/* Tests of wg_hfconfig (HF config.json reader): the corpus configs, dotted
 * paths, arrays, null-as-absent, type errors naming the key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_hfconfig.h"
#include "wg_test.h"

static wg_hfconfig_t *s_mem(const char *json) {
    wg_hfconfig_t *c = NULL;
    cr_assert_eq(wg_hfconfig_open_mem(json, strlen(json), &c), WG_OK, "%s", wg_errmsg());
    return c;
}

static const char *s_cfg =
    "{\"hidden_size\":4096,\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,"
    "\"max_position_embeddings\":131072.0,\"tie_word_embeddings\":false,"
    "\"hidden_act\":\"silu\",\"sliding_window\":null,\"eos_token_id\":[128001,128008,128009],"
    "\"bos_token_id\":128000,\"architectures\":[\"LlamaForCausalLM\"],"
    "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1,"
    "\"long_factor\":[1.0,1.5,2.25],\"inner\":{\"deep\":true}},"
    "\"quantization_config\":null,\"odd.key\":7,\"bad_arr\":[1,\"x\"],\"frac\":2.5}";

Test(hfconfig, typed_getters) {
    wg_hfconfig_t *c = s_mem(s_cfg);
    int64_t i;
    double d;
    bool b;
    const char *s;
    cr_expect_eq(wg_hfconfig_get_i64(c, "hidden_size", &i), WG_OK);
    cr_expect_eq(i, 4096);
    cr_expect_eq(wg_hfconfig_get_i64(c, "max_position_embeddings", &i), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(i, 131072);
    cr_expect_eq(wg_hfconfig_get_f64(c, "rms_norm_eps", &d), WG_OK);
    cr_expect_eq(d, 1e-05);
    cr_expect_eq(wg_hfconfig_get_f64(c, "hidden_size", &d), WG_OK); /* integer as number */
    cr_expect_eq(d, 4096.0);
    cr_expect_eq(wg_hfconfig_get_f64(c, "rope_theta", &d), WG_OK);
    cr_expect_eq(d, 500000.0);
    b = true;
    cr_expect_eq(wg_hfconfig_get_bool(c, "tie_word_embeddings", &b), WG_OK);
    cr_expect_eq(b, false);
    cr_expect_eq(wg_hfconfig_get_str(c, "hidden_act", &s), WG_OK);
    cr_expect_str_eq(s, "silu");
    cr_expect_eq(wg_hfconfig_get_i64(c, "odd.key", &i), WG_OK, "literal dotted key");
    cr_expect_eq(i, 7);
    wg_hfconfig_close(&c);
    cr_expect_null(c);
    wg_hfconfig_close(&c);
}

Test(hfconfig, dotted_paths_and_indices) {
    wg_hfconfig_t *c = s_mem(s_cfg);
    double d;
    int64_t i;
    bool b = false;
    const char *s;
    cr_expect_eq(wg_hfconfig_get_f64(c, "rope_scaling.factor", &d), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(d, 8.0);
    cr_expect_eq(wg_hfconfig_get_i64(c, "rope_scaling.low_freq_factor", &i), WG_OK);
    cr_expect_eq(i, 1);
    cr_expect_eq(wg_hfconfig_get_str(c, "rope_scaling.rope_type", &s), WG_OK);
    cr_expect_str_eq(s, "llama3");
    cr_expect_eq(wg_hfconfig_get_bool(c, "rope_scaling.inner.deep", &b), WG_OK);
    cr_expect(b);
    cr_expect_eq(wg_hfconfig_get_str(c, "architectures.0", &s), WG_OK);
    cr_expect_str_eq(s, "LlamaForCausalLM");
    cr_expect_eq(wg_hfconfig_get_f64(c, "rope_scaling.long_factor.2", &d), WG_OK);
    cr_expect_eq(d, 2.25);
    cr_expect_eq(wg_hfconfig_get_str(c, "architectures.1", &s), WG_ERR_NOTFOUND);
    cr_expect_eq(wg_hfconfig_get_f64(c, "rope_scaling.missing", &d), WG_ERR_NOTFOUND);
    cr_expect_eq(wg_hfconfig_get_f64(c, "quantization_config.bits", &d), WG_ERR_NOTFOUND);
    /* Walking through a scalar is a type error naming the key. */
    cr_expect_eq(wg_hfconfig_get_f64(c, "hidden_size.x", &d), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "hidden_size.x") != NULL, "%s", wg_errmsg());
    wg_hfconfig_close(&c);
}

Test(hfconfig, missing_and_null_are_notfound) {
    wg_hfconfig_t *c = s_mem(s_cfg);
    int64_t i = 42;
    cr_expect_eq(wg_hfconfig_get_i64(c, "num_experts", &i), WG_ERR_NOTFOUND);
    cr_expect(strstr(wg_errmsg(), "num_experts") != NULL, "%s", wg_errmsg());
    cr_expect_eq(i, 42, "out untouched on error");
    cr_expect_eq(wg_hfconfig_get_i64(c, "sliding_window", &i), WG_ERR_NOTFOUND);
    cr_expect(!wg_hfconfig_has(c, "sliding_window"));
    cr_expect(!wg_hfconfig_has(c, "nope"));
    cr_expect(wg_hfconfig_has(c, "rope_scaling"));
    cr_expect(wg_hfconfig_has(c, "rope_scaling.factor"));
    wg_hfconfig_close(&c);
}

Test(hfconfig, wrong_type_is_format_error_naming_key) {
    wg_hfconfig_t *c = s_mem(s_cfg);
    int64_t i;
    double d;
    bool b;
    const char *s;
    static const char *const keys[] = {"hidden_act", "rope_scaling", "frac", "tie_word_embeddings"};
    cr_expect_eq(wg_hfconfig_get_i64(c, keys[0], &i), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "hidden_act") && strstr(wg_errmsg(), "string"), "%s",
              wg_errmsg());
    cr_expect_eq(wg_hfconfig_get_f64(c, keys[1], &d), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "rope_scaling") != NULL, "%s", wg_errmsg());
    cr_expect_eq(wg_hfconfig_get_i64(c, keys[2], &i), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "frac") && strstr(wg_errmsg(), "2.5"), "%s", wg_errmsg());
    cr_expect_eq(wg_hfconfig_get_str(c, keys[3], &s), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "tie_word_embeddings") != NULL, "%s", wg_errmsg());
    cr_expect_eq(wg_hfconfig_get_bool(c, "hidden_size", &b), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "hidden_size") != NULL, "%s", wg_errmsg());
    wg_hfconfig_close(&c);
}

Test(hfconfig, number_arrays) {
    wg_hfconfig_t *c = s_mem(s_cfg);
    double d[4] = {0};
    int64_t v[4] = {0};
    size_t n = 0;
    cr_expect_eq(wg_hfconfig_get_f64_arr(c, "rope_scaling.long_factor", d, 4, &n), WG_OK);
    cr_expect_eq(n, 3);
    cr_expect_eq(d[0], 1.0);
    cr_expect_eq(d[1], 1.5);
    cr_expect_eq(d[2], 2.25);
    cr_expect_eq(wg_hfconfig_get_i64_arr(c, "eos_token_id", v, 4, &n), WG_OK);
    cr_expect_eq(n, 3);
    cr_expect_eq(v[0], 128001);
    cr_expect_eq(v[2], 128009);
    /* A lone number is an array of one. */
    cr_expect_eq(wg_hfconfig_get_i64_arr(c, "bos_token_id", v, 4, &n), WG_OK);
    cr_expect_eq(n, 1);
    cr_expect_eq(v[0], 128000);
    /* Too small: RANGE with the needed count. */
    cr_expect_eq(wg_hfconfig_get_i64_arr(c, "eos_token_id", v, 2, &n), WG_ERR_RANGE);
    cr_expect_eq(n, 3);
    cr_expect_eq(wg_hfconfig_get_f64_arr(c, "bad_arr", d, 4, &n), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "bad_arr") && strstr(wg_errmsg(), "[1]"), "%s", wg_errmsg());
    cr_expect_eq(wg_hfconfig_get_i64_arr(c, "rope_scaling.long_factor", v, 4, &n), WG_ERR_FORMAT);
    cr_expect_eq(wg_hfconfig_get_f64_arr(c, "hidden_act", d, 4, &n), WG_ERR_FORMAT);
    cr_expect_eq(wg_hfconfig_get_f64_arr(c, "absent", d, 4, &n), WG_ERR_NOTFOUND);
    wg_hfconfig_close(&c);
}

Test(hfconfig, bad_documents) {
    wg_hfconfig_t *c = (wg_hfconfig_t *)0x1;
    static const char *const bad[] = {"", "{", "[1,2]", "\"x\"", "{\"a\":1,\"a\":2}",
                                      "{\"a\":1} x"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        c = (wg_hfconfig_t *)0x1;
        cr_expect_eq(wg_hfconfig_open_mem(bad[k], strlen(bad[k]), &c), WG_ERR_FORMAT, "'%s'",
                     bad[k]);
        cr_expect_null(c);
    }
    cr_expect_eq(wg_hfconfig_open("/nonexistent/dir", &c), WG_ERR_NOTFOUND);
    cr_expect(strstr(wg_errmsg(), "/nonexistent/dir") != NULL, "%s", wg_errmsg());
    cr_expect_eq(wg_hfconfig_open("/tmp", &c), WG_ERR_NOTFOUND); /* no /tmp/config.json */
    cr_expect(strstr(wg_errmsg(), "config.json") != NULL, "%s", wg_errmsg());
}

Test(hfconfig, open_file_path) {
    char path[] = "/tmp/wg_hfc_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *j = "{\"model_type\":\"qwen2\",\"num_hidden_layers\":24}";
    cr_assert_eq(write(fd, j, strlen(j)), (ssize_t)strlen(j));
    close(fd);
    wg_hfconfig_t *c = NULL;
    cr_assert_eq(wg_hfconfig_open(path, &c), WG_OK, "%s", wg_errmsg());
    int64_t n;
    cr_expect_eq(wg_hfconfig_get_i64(c, "num_hidden_layers", &n), WG_OK);
    cr_expect_eq(n, 24);
    wg_hfconfig_close(&c);
    unlink(path);
}

/* Values as the corpus configs hold them (see each hf dir's config.json). */
static const struct {
    const char *dir;
    const char *model_type;
    const char *arch;
    int64_t hidden, layers, heads, kv_heads, vocab;
    double eps, theta;
    bool tied;
} s_corpus[] = {
    {"hf/llama", "llama", "LlamaForCausalLM", 256, 2, 4, 2, 320, 1e-5, 10000.0, false},
    {"hf/llama-moe", "mixtral", "MixtralForCausalLM", 256, 1, 4, 2, 320, 1e-5, 10000.0, false},
    {"hf/gemma", "gemma", "GemmaForCausalLM", 64, 2, 2, 1, 320, 1e-6, 10000.0, true},
    {"hf/phi3", "phi3", "Phi3ForCausalLM", 64, 2, 2, 2, 320, 1e-5, 10000.0, false},
    {"hf/phi3-f16", "phi3", "Phi3ForCausalLM", 64, 2, 2, 2, 320, 1e-5, 10000.0, false},
    {"hf/qwen2", "qwen2", "Qwen2ForCausalLM", 64, 2, 2, 1, 320, 1e-6, 1000000.0, true},
    {"hf/qwen2-f16", "qwen2", "Qwen2ForCausalLM", 64, 2, 2, 1, 320, 1e-6, 1000000.0, true},
    {"hf/qwen2-bf16", "qwen2", "Qwen2ForCausalLM", 64, 2, 2, 1, 320, 1e-6, 1000000.0, true},
    {"hf/qwen3", "qwen3", "Qwen3ForCausalLM", 64, 2, 4, 2, 320, 1e-6, 1000000.0, true},
    {"trained/stories260K-hf", "llama", "LlamaForCausalLM", 64, 5, 8, 4, 512, 1e-5, 10000.0, true},
};

Test(hfconfig, corpus_configs) {
    WG_REQUIRE_CORPUS();
    for (size_t k = 0; k < sizeof s_corpus / sizeof s_corpus[0]; k++) {
        wg_hfconfig_t *c = NULL;
        cr_assert_eq(wg_hfconfig_open(wg_test_corpus(s_corpus[k].dir), &c), WG_OK, "%s",
                     wg_errmsg());
        const char *s;
        int64_t i;
        double d;
        bool b;
        cr_expect_eq(wg_hfconfig_get_str(c, "model_type", &s), WG_OK);
        cr_expect_str_eq(s, s_corpus[k].model_type, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_str(c, "architectures.0", &s), WG_OK);
        cr_expect_str_eq(s, s_corpus[k].arch, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_i64(c, "hidden_size", &i), WG_OK);
        cr_expect_eq(i, s_corpus[k].hidden, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_i64(c, "num_hidden_layers", &i), WG_OK);
        cr_expect_eq(i, s_corpus[k].layers, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_i64(c, "num_attention_heads", &i), WG_OK);
        cr_expect_eq(i, s_corpus[k].heads, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_i64(c, "num_key_value_heads", &i), WG_OK);
        cr_expect_eq(i, s_corpus[k].kv_heads, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_i64(c, "vocab_size", &i), WG_OK);
        cr_expect_eq(i, s_corpus[k].vocab, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_f64(c, "rms_norm_eps", &d), WG_OK);
        cr_expect_eq(d, s_corpus[k].eps, "%s: %g", s_corpus[k].dir, d);
        cr_expect_eq(wg_hfconfig_get_f64(c, "rope_theta", &d), WG_OK);
        cr_expect_eq(d, s_corpus[k].theta, "%s", s_corpus[k].dir);
        cr_expect_eq(wg_hfconfig_get_bool(c, "tie_word_embeddings", &b), WG_OK);
        cr_expect_eq(b, s_corpus[k].tied, "%s", s_corpus[k].dir);
        /* eos_token_id is an int here; the array getter accepts it too. */
        int64_t eos[4];
        size_t n;
        cr_expect_eq(wg_hfconfig_get_i64_arr(c, "eos_token_id", eos, 4, &n), WG_OK);
        cr_expect_eq(n, 1);
        wg_hfconfig_close(&c);
    }
    /* Null values read as absent (phi3 writes rope_scaling: null). */
    wg_hfconfig_t *c = NULL;
    cr_assert_eq(wg_hfconfig_open(wg_test_corpus("hf/phi3"), &c), WG_OK, "%s", wg_errmsg());
    double f;
    cr_expect_eq(wg_hfconfig_get_f64(c, "rope_scaling.factor", &f), WG_ERR_NOTFOUND);
    cr_expect(!wg_hfconfig_has(c, "sliding_window"));
    cr_expect_eq(wg_hfconfig_get_f64(c, "partial_rotary_factor", &f), WG_OK);
    cr_expect_eq(f, 1.0);
    wg_hfconfig_close(&c);
}
