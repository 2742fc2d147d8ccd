/* test_gpu_engine — the forward pass on CUDA (engine/model/wg_forward_cuda.c):
 * every supported family of the conformance corpus against llama.cpp's
 * logits and greedy tokens with the corpus tolerance classes (same checks as
 * tests/conformance, through wg_session_new_on(..., "cuda:0")); batched
 * decode against single-sequence runs; CUDA-graph replays against eager
 * steps; repeated device sessions against free device memory; and the clear
 * refusal of families without device kernels. The GPU cases skip without a
 * GPU (CI); the refusal case runs anywhere the backend is built. */
#include <stdlib.h>

#include "../../kernels/cuda/wg_cuda.h"
#include "../conformance/wg_conf.h"

#define WG_NEED_GPU()                                                                   \
    do {                                                                                \
        if (wg_cuda_device_count() <= 0) cr_skip_test("no CUDA GPU: %s", wg_errmsg()); \
    } while (0)

#define GPU_CONF(name, rel)         \
    Test(gpu_conformance, name) {   \
        WG_NEED_GPU();              \
        (void)wg_conf_check_on(rel, "cuda:0"); \
    }

GPU_CONF(llama_f32, "models/llama/llama-f32.gguf")
GPU_CONF(llama_F16, "models/llama/llama-F16.gguf")
GPU_CONF(llama_BF16, "models/llama/llama-BF16.gguf")
GPU_CONF(llama_Q8_0, "models/llama/llama-Q8_0.gguf")
GPU_CONF(llama_Q4_0, "models/llama/llama-Q4_0.gguf")
GPU_CONF(llama_Q2_K, "models/llama/llama-Q2_K.gguf")
GPU_CONF(llama_Q4_K_M, "models/llama/llama-Q4_K_M.gguf")
GPU_CONF(llama_Q6_K, "models/llama/llama-Q6_K.gguf")
GPU_CONF(llama_IQ4_XS, "models/llama/llama-IQ4_XS.gguf")
GPU_CONF(llama_moe_f32, "models/llama-moe/llama-moe-f32.gguf")
GPU_CONF(llama_moe_Q4_K_M, "models/llama-moe/llama-moe-Q4_K_M.gguf")
GPU_CONF(qwen2_f32, "models/qwen2/qwen2-f32.gguf")
GPU_CONF(qwen2_Q4_0, "models/qwen2/qwen2-Q4_0.gguf")
GPU_CONF(qwen3_f32, "models/qwen3/qwen3-f32.gguf")
GPU_CONF(qwen3moe_f32, "models/qwen3moe/qwen3moe-f32.gguf")
GPU_CONF(phi2_f32, "models/phi2/phi2-f32.gguf")
GPU_CONF(phi3_f32, "models/phi3/phi3-f32.gguf")
GPU_CONF(phi3_Q8_0, "models/phi3/phi3-Q8_0.gguf")
GPU_CONF(gemma_f32, "models/gemma/gemma-f32.gguf")
GPU_CONF(gemma2_f32, "models/gemma2/gemma2-f32.gguf")
GPU_CONF(gemma3_f32, "models/gemma3/gemma3-f32.gguf")
GPU_CONF(starcoder2_f32, "models/starcoder2/starcoder2-f32.gguf")
GPU_CONF(falcon_f32, "models/falcon/falcon-f32.gguf")
GPU_CONF(stablelm_f32, "models/stablelm/stablelm-f32.gguf")
GPU_CONF(olmo_f32, "models/olmo/olmo-f32.gguf")
GPU_CONF(olmo2_f32, "models/olmo2/olmo2-f32.gguf")
GPU_CONF(mistral3_f32, "models/mistral3/mistral3-f32.gguf")
GPU_CONF(stories260K, "trained/stories260K-f32.gguf")

static wg_model_t *s_load(const char *rel) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(rel), &m), WG_OK, "%s: %s", rel, wg_errmsg());
    return m;
}

/* Families without device kernels are refused when the cache is made, with
 * the reason; nothing touches the GPU. */
Test(gpu_engine, unsupported_families_are_refused_with_the_reason) {
    const char *rels[] = {"models/mamba/mamba-f32.gguf", "models/rwkv7/rwkv7-f32.gguf",
                          "models/deepseek2/deepseek2-f32.gguf", "models/gpt-oss/gpt-oss-f32.gguf"};
    for (size_t i = 0; i < sizeof rels / sizeof rels[0]; i++) {
        wg_model_t *m = s_load(rels[i]);
        wg_kv_t *kv = wg_model_kv_new_on(m, 1 << 20, 16, "cuda:0");
        cr_assert_null(kv, "%s: a CUDA cache was made", rels[i]);
        cr_assert(strstr(wg_errmsg(), "not supported on the CUDA backend"), "%s: %s", rels[i], wg_errmsg());
        wg_model_free(&m);
    }
    wg_model_t *m = s_load("models/llama/llama-f32.gguf");
    cr_assert_null(wg_model_kv_new_on(m, 1 << 20, 16, "cuda:x"));
    cr_assert(strstr(wg_errmsg(), "cuda:x"), "%s", wg_errmsg());
    wg_model_free(&m);
}

/* Greedy decode of S sequences: all together in one batch per step, then
 * each alone. Logits agree within the quantized tolerance (the batched step
 * may take the cuBLAS path where a single one takes the mat-vec kernel), and
 * the greedy tokens agree wherever the margin is decisive. */
static void s_decode(wg_model_t *m, int S, int steps, bool together, float *out /* [S][steps][V] */) {
    const int64_t V = wg_model_hparams(m)->n_vocab;
    wg_kv_t *kv = wg_model_kv_new_on(m, (size_t)64 << 20, 16, "cuda:0");
    cr_assert(kv, "%s", wg_errmsg());
    int32_t seq[8], tok[8];
    for (int s = 0; s < S; s++) {
        cr_assert_eq(wg_kv_seq_new(kv, &seq[s]), WG_OK);
        tok[s] = 1 + 7 * s;
    }
    wg_batch_tok_t b[8];
    float *lg = malloc((size_t)(S * V) * sizeof(float));
    for (int p = 0; p < steps; p++) {
        if (together) {
            for (int s = 0; s < S; s++) b[s] = (wg_batch_tok_t){tok[s], p, seq[s], true};
            cr_assert_eq(wg_model_forward(m, kv, NULL, b, S, lg), WG_OK, "%s", wg_errmsg());
        } else {
            for (int s = 0; s < S; s++) {
                b[0] = (wg_batch_tok_t){tok[s], p, seq[s], true};
                cr_assert_eq(wg_model_forward(m, kv, NULL, b, 1, lg + s * V), WG_OK, "%s", wg_errmsg());
            }
        }
        for (int s = 0; s < S; s++) {
            memcpy(out + ((size_t)s * steps + p) * V, lg + s * V, (size_t)V * sizeof(float));
            tok[s] = wg_conf_argmax(lg + s * V, V);
        }
    }
    free(lg);
    wg_kv_free(&kv);
}

Test(gpu_engine, batched_decode_matches_single_sequences) {
    WG_NEED_GPU();
    wg_model_t *m = s_load("models/llama/llama-Q4_K_M.gguf");
    const int S = 5, T = 12;
    const int64_t V = wg_model_hparams(m)->n_vocab;
    float *a = malloc((size_t)(S * T * V) * sizeof(float)), *b = malloc((size_t)(S * T * V) * sizeof(float));
    s_decode(m, S, T, true, a);
    s_decode(m, S, T, false, b);
    double worst = 0;
    for (int64_t i = 0; i < S * T * V; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst) worst = d;
    }
    cr_log_info("batched vs single on cuda:0: max abs diff %.3g", worst);
    cr_assert_leq(worst, 1e-3, "batched decode differs from single runs by %.3g", worst);
    free(a);
    free(b);
    wg_model_free(&m);
}

/* The same decode with CUDA graphs (captured on the second step of a shape,
 * replayed after) and without: bitwise equal, since a replay runs the same
 * kernels on the same inputs. */
Test(gpu_engine, graph_replays_equal_eager_steps_bitwise) {
    WG_NEED_GPU();
    wg_model_t *m = s_load("models/qwen2/qwen2-f32.gguf");
    const int S = 3, T = 10;
    const int64_t V = wg_model_hparams(m)->n_vocab;
    float *a = malloc((size_t)(S * T * V) * sizeof(float)), *b = malloc((size_t)(S * T * V) * sizeof(float));
    setenv("WAGGLE_CUDA_GRAPHS", "1", 1);
    s_decode(m, S, T, true, a);
    setenv("WAGGLE_CUDA_GRAPHS", "0", 1);
    s_decode(m, S, T, true, b);
    unsetenv("WAGGLE_CUDA_GRAPHS");
    cr_assert(memcmp(a, b, (size_t)(S * T * V) * sizeof(float)) == 0, "graph replays differ from eager steps");
    free(a);
    free(b);
    wg_model_free(&m);
}

/* Sessions made and freed on the device (weights uploaded, pool and
 * activations allocated, graphs captured) leave free memory where it was. */
Test(gpu_engine, repeated_device_sessions_do_not_leak) {
    WG_NEED_GPU();
    wg_model_t *m = s_load("models/llama/llama-Q8_0.gguf");
    wg_cuda_t *probe = wg_cuda_new(0);
    cr_assert(probe, "%s", wg_errmsg());
    size_t warm = 0, now = 0;
    const int32_t ids[6] = {1, 5, 9, 2, 7, 3};
    for (int c = 0; c < 30; c++) {
        wg_session_t *s = wg_session_new_on(m, 1, 64, "cuda:0");
        cr_assert(s, "%s", wg_errmsg());
        cr_assert_eq(wg_session_eval(s, ids, 6, false, NULL), WG_OK, "%s", wg_errmsg());
        for (int i = 0; i < 4; i++) cr_assert_eq(wg_session_eval(s, &ids[i], 1, false, NULL), WG_OK, "%s", wg_errmsg());
        wg_session_free(&s);
        cr_assert_eq(wg_cuda_mem_info(probe, &now, NULL), WG_OK);
        if (c == 4) warm = now;
    }
    cr_assert(now + (2u << 20) >= warm, "free device memory fell from %zu to %zu over 25 sessions", warm, now);
    wg_cuda_destroy(&probe);
    wg_model_free(&m);
}
