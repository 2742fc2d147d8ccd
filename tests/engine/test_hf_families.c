/* HF safetensors layouts of the families whose HF checkpoint is a renaming of
 * a GGUF family (issue 8). The corpus has no HF copies of these, so each test
 * exports the corpus GGUF f32 model to an HF directory with our own exporter
 * (config.json with HF keys, model.safetensors with HF names written from the
 * name lists below, independent of the loader's table, and the inverse of
 * each HF-specific transform: gemma norms stored minus 1, rotate-half q/k for
 * interleaved-rope families, per-expert tensors), then requires the loaded HF
 * directory to give bitwise the same logits as the GGUF. This is a round trip
 * through our own exporter, not a check against checkpoints from the hub. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "wg_test.h"

/* One GGUF -> HF name: gguf is the name after "blk.N." (or a top-level
 * name), hf a printf pattern taking the layer (and expert) index. */
typedef struct {
    const char *gguf; /* GGUF name (suffix for per-layer tensors) */
    const char *hf;   /* HF pattern */
} s_map_t;

enum {
    S_X_MINUS1 = 1u << 0,  /* norm weights stored as w - 1 (gemma) */
    S_X_ROT_HALF = 1u << 1 /* q/k rows to rotate-half order (interleaved-rope families) */
};

/* Llama-style names shared by most families. */
static const s_map_t s_llama[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output.weight", "lm_head.weight"},
    {"output.bias", "lm_head.bias"},
    {"output_norm.weight", "model.norm.weight"},
    {"output_norm.bias", "model.norm.bias"},
    {"attn_norm.weight", "model.layers.%d.input_layernorm.weight"},
    {"attn_norm.bias", "model.layers.%d.input_layernorm.bias"},
    {"attn_q.weight", "model.layers.%d.self_attn.q_proj.weight"},
    {"attn_q.bias", "model.layers.%d.self_attn.q_proj.bias"},
    {"attn_k.weight", "model.layers.%d.self_attn.k_proj.weight"},
    {"attn_k.bias", "model.layers.%d.self_attn.k_proj.bias"},
    {"attn_v.weight", "model.layers.%d.self_attn.v_proj.weight"},
    {"attn_v.bias", "model.layers.%d.self_attn.v_proj.bias"},
    {"attn_output.weight", "model.layers.%d.self_attn.o_proj.weight"},
    {"attn_output.bias", "model.layers.%d.self_attn.o_proj.bias"},
    {"attn_q_norm.weight", "model.layers.%d.self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "model.layers.%d.self_attn.k_norm.weight"},
    {"ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight"},
    {"ffn_norm.bias", "model.layers.%d.post_attention_layernorm.bias"},
    {"ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight"},
    {"ffn_up.weight", "model.layers.%d.mlp.up_proj.weight"},
    {"ffn_down.weight", "model.layers.%d.mlp.down_proj.weight"},
    {"ffn_gate_inp.weight", "model.layers.%d.mlp.gate.weight"},
    {"ffn_gate_exps.weight", "model.layers.%d.mlp.experts.%d.gate_proj.weight"},
    {"ffn_up_exps.weight", "model.layers.%d.mlp.experts.%d.up_proj.weight"},
    {"ffn_down_exps.weight", "model.layers.%d.mlp.experts.%d.down_proj.weight"},
    {NULL, NULL},
};

static const s_map_t s_gemma2[] = {
    {"post_attention_norm.weight", "model.layers.%d.post_attention_layernorm.weight"},
    {"ffn_norm.weight", "model.layers.%d.pre_feedforward_layernorm.weight"},
    {"post_ffw_norm.weight", "model.layers.%d.post_feedforward_layernorm.weight"},
    {NULL, NULL},
};

static const s_map_t s_olmo2[] = {
    {"post_attention_norm.weight", "model.layers.%d.post_attention_layernorm.weight"},
    {"post_ffw_norm.weight", "model.layers.%d.post_feedforward_layernorm.weight"},
    {NULL, NULL},
};

static const s_map_t s_starcoder2[] = {
    {"ffn_up.weight", "model.layers.%d.mlp.c_fc.weight"},
    {"ffn_up.bias", "model.layers.%d.mlp.c_fc.bias"},
    {"ffn_down.weight", "model.layers.%d.mlp.c_proj.weight"},
    {"ffn_down.bias", "model.layers.%d.mlp.c_proj.bias"},
    {NULL, NULL},
};

static const s_map_t s_phi2[] = {
    {"attn_output.weight", "model.layers.%d.self_attn.dense.weight"},
    {"attn_output.bias", "model.layers.%d.self_attn.dense.bias"},
    {"ffn_up.weight", "model.layers.%d.mlp.fc1.weight"},
    {"ffn_up.bias", "model.layers.%d.mlp.fc1.bias"},
    {"ffn_down.weight", "model.layers.%d.mlp.fc2.weight"},
    {"ffn_down.bias", "model.layers.%d.mlp.fc2.bias"},
    {"output_norm.weight", "model.final_layernorm.weight"},
    {"output_norm.bias", "model.final_layernorm.bias"},
    {NULL, NULL},
};

static const s_map_t s_falcon[] = {
    {"token_embd.weight", "transformer.word_embeddings.weight"},
    {"output_norm.weight", "transformer.ln_f.weight"},
    {"output_norm.bias", "transformer.ln_f.bias"},
    {"attn_norm.weight", "transformer.h.%d.input_layernorm.weight"},
    {"attn_norm.bias", "transformer.h.%d.input_layernorm.bias"},
    {"attn_qkv.weight", "transformer.h.%d.self_attention.query_key_value.weight"},
    {"attn_output.weight", "transformer.h.%d.self_attention.dense.weight"},
    {"ffn_up.weight", "transformer.h.%d.mlp.dense_h_to_4h.weight"},
    {"ffn_down.weight", "transformer.h.%d.mlp.dense_4h_to_h.weight"},
    {NULL, NULL},
};

/* ---- a small safetensors writer (F32 only) ---- */

typedef struct {
    char name[160];   /* HF tensor name */
    int64_t shape[4]; /* HF order (slowest first) */
    int n_dims;       /* dims */
    float *data;      /* owned copy */
    size_t n;         /* floats */
} s_ent_t;

typedef struct {
    s_ent_t *e;   /* entries */
    size_t n;     /* count */
    size_t cap;   /* capacity */
} s_st_t;

static void s_st_add(s_st_t *w, const char *name, const int64_t *ne, int n_dims, const float *src) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = realloc(w->e, w->cap * sizeof *w->e);
        cr_assert(w->e);
    }
    s_ent_t *e = &w->e[w->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n_dims = n_dims;
    e->n = 1;
    for (int i = 0; i < n_dims; i++) {
        e->shape[i] = ne[n_dims - 1 - i];
        e->n *= (size_t)ne[i];
    }
    e->data = malloc(e->n * sizeof(float));
    cr_assert(e->data);
    memcpy(e->data, src, e->n * sizeof(float));
}

static void s_st_write(s_st_t *w, const char *path) {
    size_t cap = 256 + w->n * 256, len = 0, off = 0;
    char *h = malloc(cap);
    cr_assert(h);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < w->n; i++) {
        s_ent_t *e = &w->e[i];
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", e->name);
        for (int d = 0; d < e->n_dims; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + e->n * 4);
        off += e->n * 4;
        cr_assert(len < cap);
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    uint64_t hl = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    cr_assert_eq(fwrite(le, 1, 8, f), 8u);
    cr_assert_eq(fwrite(h, 1, len, f), len);
    for (size_t i = 0; i < w->n; i++) {
        cr_assert_eq(fwrite(w->e[i].data, sizeof(float), w->e[i].n, f), w->e[i].n);
        free(w->e[i].data);
    }
    fclose(f);
    free(h);
    free(w->e);
}

/* ---- exporter ---- */

static const char *s_lookup(const s_map_t *fam, const char *key) {
    for (const s_map_t *m = fam; m && m->gguf; m++)
        if (strcmp(m->gguf, key) == 0) return m->hf;
    for (const s_map_t *m = s_llama; m->gguf; m++)
        if (strcmp(m->gguf, key) == 0) return m->hf;
    return NULL;
}

static int64_t s_i(const wg_gguf_t *g, const char *arch, const char *suf, int64_t def) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suf);
    int64_t v;
    return wg_gguf_get_i64(g, k, &v) == WG_OK ? v : def;
}

static double s_f(const wg_gguf_t *g, const char *arch, const char *suf, double def) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suf);
    float v;
    return wg_gguf_get_f32(g, k, &v) == WG_OK ? (double)v : def;
}

/* Write dir/config.json and dir/model.safetensors from the GGUF at `gguf_rel`.
 * `extra` is appended to the JSON object (family keys, starting with ','). */
static void s_export(const char *gguf_rel, const char *dir, const char *hf_arch, const s_map_t *fam,
                     unsigned xf, const char *eps_key, const char *extra) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(gguf_rel), &g), WG_OK, "%s", wg_errmsg());
    const char *arch = NULL;
    cr_assert_eq(wg_gguf_get_str(g, "general.architecture", &arch), WG_OK);
    const int64_t E = s_i(g, arch, "embedding_length", 0), H = s_i(g, arch, "attention.head_count", 0);
    const int64_t HKV = s_i(g, arch, "attention.head_count_kv", H);
    const int64_t HD = s_i(g, arch, "attention.key_length", E / H);
    const int64_t NROT = s_i(g, arch, "rope.dimension_count", HD);
    const double eps = s_f(g, arch, "attention.layer_norm_rms_epsilon", s_f(g, arch, "attention.layer_norm_epsilon", 1e-5));
    s_st_t w = {0};
    bool has_output = false;
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        cr_assert_eq(t->type, WG_TYPE_F32, "%s: exporter handles F32 only", t->name);
        int layer = -1, skip = 0;
        const char *key = t->name;
        if (sscanf(t->name, "blk.%d.%n", &layer, &skip) == 1 && skip > 0) key = t->name + skip;
        const char *pat = s_lookup(fam, key);
        cr_assert(pat, "%s: exporter has no HF name for %s", gguf_rel, t->name);
        if (strcmp(key, "output.weight") == 0) has_output = true;
        const float *src = t->data;
        float *tmp = NULL;
        const size_t n = t->nbytes / sizeof(float);
        if ((xf & S_X_MINUS1) && strstr(key, "norm")) {
            tmp = malloc(n * sizeof(float));
            for (size_t j = 0; j < n; j++) {
                tmp[j] = src[j] - 1.0f;
                cr_assert(tmp[j] + 1.0f == src[j], "%s[%zu]: w-1+1 is not exact", t->name, j);
            }
            src = tmp;
        }
        const bool q = strcmp(key, "attn_q.weight") == 0, k = strcmp(key, "attn_k.weight") == 0;
        if ((xf & S_X_ROT_HALF) && (q || k)) {
            /* inverse of the loader's permutation: hf row h*hd + a*hd/2 + j = gguf row h*hd + 2j + a */
            const int64_t nh = q ? H : HKV, rl = t->ne[0];
            tmp = malloc(n * sizeof(float));
            for (int64_t h = 0; h < nh; h++)
                for (int64_t j = 0; j < HD / 2; j++)
                    for (int64_t a = 0; a < 2; a++)
                        memcpy(tmp + (h * HD + a * (HD / 2) + j) * rl, src + (h * HD + 2 * j + a) * rl,
                               (size_t)rl * sizeof(float));
            src = tmp;
        }
        char name[160];
        if (t->n_dims == 3 && strstr(key, "_exps")) {
            const int64_t per = t->ne[0] * t->ne[1];
            for (int64_t e = 0; e < t->ne[2]; e++) {
                snprintf(name, sizeof name, pat, layer, (int)e);
                s_st_add(&w, name, t->ne, 2, src + e * per);
            }
        } else {
            snprintf(name, sizeof name, pat, layer);
            s_st_add(&w, name, t->ne, (int)t->n_dims, src);
        }
        free(tmp);
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    s_st_write(&w, p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fprintf(f,
            "{\"architectures\":[\"%s\"],\"hidden_size\":%lld,\"num_hidden_layers\":%lld,"
            "\"num_attention_heads\":%lld,\"num_key_value_heads\":%lld,\"intermediate_size\":%lld,"
            "\"head_dim\":%lld,\"rope_theta\":%.9g,\"%s\":%.9g,\"max_position_embeddings\":%lld,"
            "\"partial_rotary_factor\":%.9g,\"tie_word_embeddings\":%s,\"vocab_size\":320,"
            "\"torch_dtype\":\"float32\"%s}\n",
            hf_arch, (long long)E, (long long)s_i(g, arch, "block_count", 0), (long long)H, (long long)HKV,
            (long long)s_i(g, arch, "feed_forward_length", 0), (long long)HD,
            s_f(g, arch, "rope.freq_base", 10000.0), eps_key, eps, (long long)s_i(g, arch, "context_length", 2048),
            (double)NROT / (double)HD, has_output ? "false" : "true", extra);
    fclose(f);
    wg_gguf_close(&g);
}

/* Logits of a fixed 12-token prompt, every position. */
static float *s_logits(const wg_model_t *m) {
    const int32_t V = wg_model_hparams(m)->n_vocab;
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 3 + (int32_t)((37u * (unsigned)i + 11u) % (unsigned)(V - 3));
    wg_session_t *s = wg_session_new(m, 1, 32);
    cr_assert(s);
    float *out = malloc((size_t)(12 * V) * sizeof(float));
    cr_assert_eq(wg_session_eval(s, ids, 12, true, out), WG_OK, "%s", wg_errmsg());
    wg_session_free(&s);
    return out;
}

static void s_round_trip(const char *gguf_rel, const char *hf_arch, const s_map_t *fam, unsigned xf,
                         const char *eps_key, const char *extra) {
    WG_REQUIRE_CORPUS();
    char dir[] = "/tmp/wg_hf_XXXXXX";
    cr_assert(mkdtemp(dir));
    s_export(gguf_rel, dir, hf_arch, fam, xf, eps_key, extra);
    wg_model_t *a = NULL, *b = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(gguf_rel), &a), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_model_load(dir, &b), WG_OK, "%s (%s): %s", hf_arch, dir, wg_errmsg());
    const wg_hparams_t *ha = wg_model_hparams(a), *hb = wg_model_hparams(b);
    cr_assert_str_eq(hb->arch, ha->arch);
    cr_assert_eq(hb->n_vocab, ha->n_vocab);
    cr_assert_eq(hb->n_head_kv, ha->n_head_kv);
    cr_assert_eq(hb->n_rot, ha->n_rot, "%s: n_rot %d vs %d", hf_arch, hb->n_rot, ha->n_rot);
    cr_assert_eq(hb->n_swa, ha->n_swa, "%s: sliding window %d vs %d", hf_arch, hb->n_swa, ha->n_swa);
    cr_assert_eq(hb->swa_pattern, ha->swa_pattern);
    cr_assert_eq(hb->tied_output, ha->tied_output);
    cr_assert(hb->norm_eps == ha->norm_eps, "%s: eps %g vs %g", hf_arch, (double)hb->norm_eps, (double)ha->norm_eps);
    cr_assert(hb->attn_scale == ha->attn_scale && hb->attn_softcap == ha->attn_softcap &&
              hb->final_softcap == ha->final_softcap && hb->clamp_kqv == ha->clamp_kqv &&
              hb->rope_base_swa == ha->rope_base_swa && hb->moe_renorm == ha->moe_renorm);
    const int32_t V = ha->n_vocab;
    float *la = s_logits(a), *lb = s_logits(b);
    for (int i = 0; i < 12; i++)
        cr_assert(memcmp(la + (size_t)i * V, lb + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                  "%s: HF export logits differ from the GGUF at position %d", hf_arch, i);
    free(la);
    free(lb);
    wg_model_free(&a);
    wg_model_free(&b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(hf_families, qwen3moe_round_trip) {
    s_round_trip("models/qwen3moe/qwen3moe-f32.gguf", "Qwen3MoeForCausalLM", NULL, 0, "rms_norm_eps",
                 ",\"num_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":64,"
                 "\"norm_topk_prob\":true,\"decoder_sparse_step\":1,\"mlp_only_layers\":[]");
}

/* sliding window 8 < the 12-token prompt, so the window and pattern matter */
Test(hf_families, gemma2_round_trip) {
    s_round_trip("models/gemma2/gemma2-f32.gguf", "Gemma2ForCausalLM", s_gemma2, S_X_MINUS1, "rms_norm_eps",
                 ",\"sliding_window\":8,\"attn_logit_softcapping\":5.0,\"final_logit_softcapping\":8.0,"
                 "\"query_pre_attn_scalar\":64,\"hidden_activation\":\"gelu_pytorch_tanh\"");
}

/* newer Gemma 3 configs list layer_types instead of sliding_window_pattern */
Test(hf_families, gemma3_round_trip) {
    s_round_trip("models/gemma3/gemma3-f32.gguf", "Gemma3ForCausalLM", s_gemma2, S_X_MINUS1, "rms_norm_eps",
                 ",\"sliding_window\":8,\"layer_types\":[\"sliding_attention\",\"full_attention\"],"
                 "\"rope_local_base_freq\":10000.0,\"query_pre_attn_scalar\":32");
}

Test(hf_families, gemma3_sliding_window_pattern_round_trip) {
    s_round_trip("models/gemma3/gemma3-f32.gguf", "Gemma3ForCausalLM", s_gemma2, S_X_MINUS1, "rms_norm_eps",
                 ",\"sliding_window\":8,\"sliding_window_pattern\":2,\"rope_local_base_freq\":10000.0");
}

Test(hf_families, olmo2_round_trip) {
    s_round_trip("models/olmo2/olmo2-f32.gguf", "Olmo2ForCausalLM", s_olmo2, 0, "rms_norm_eps", "");
}

Test(hf_families, stablelm_round_trip) {
    s_round_trip("models/stablelm/stablelm-f32.gguf", "StableLmForCausalLM", NULL, 0, "layer_norm_eps",
                 ",\"use_qkv_bias\":true,\"use_parallel_residual\":false,\"qk_layernorm\":false");
}

Test(hf_families, starcoder2_round_trip) {
    s_round_trip("models/starcoder2/starcoder2-f32.gguf", "Starcoder2ForCausalLM", s_starcoder2, 0, "norm_epsilon",
                 ",\"use_bias\":true,\"sliding_window\":null,\"hidden_act\":\"gelu_pytorch_tanh\"");
}

Test(hf_families, phi2_round_trip) {
    s_round_trip("models/phi2/phi2-f32.gguf", "PhiForCausalLM", s_phi2, 0, "layer_norm_eps",
                 ",\"hidden_act\":\"gelu_new\"");
}

/* OLMo: interleaved rope in GGUF, rotate-half q/k rows in HF; clip_qkv */
Test(hf_families, olmo_round_trip) {
    s_round_trip("models/olmo/olmo-f32.gguf", "OlmoForCausalLM", NULL, S_X_ROT_HALF, "unused_eps",
                 ",\"clip_qkv\":8.0");
}

/* Falcon-7B style: multi_query, one K/V head, so query_key_value is [q; k; v] */
Test(hf_families, falcon_round_trip) {
    s_round_trip("models/falcon/falcon-f32.gguf", "FalconForCausalLM", s_falcon, 0, "layer_norm_epsilon",
                 ",\"multi_query\":true,\"new_decoder_architecture\":false,\"parallel_attn\":true,"
                 "\"bias\":false,\"alibi\":false");
}
