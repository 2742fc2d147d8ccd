/* GGUF reader against the conformance corpus: every GGUF file opens, and known
 * facts (keys, arrays, tensor shapes/offsets, data bytes) read back right. */
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

/* Read a whole file with stdio (independent of the mmap path). */
static uint8_t *s_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static wg_gguf_t *s_open(const char *rel) {
    wg_gguf_t *g = NULL;
    wg_status st = wg_gguf_open(wg_test_corpus(rel), &g);
    cr_assert_eq(st, WG_OK, "open %s: %s", rel, wg_errmsg());
    cr_assert_not_null(g);
    return g;
}

Test(gguf, opens_every_corpus_file) {
    WG_REQUIRE_CORPUS();
    static const char *const patterns[] = {"models/*/*.gguf", "refs/*.gguf", "tokenizer/*.gguf",
                                           "quants/quant-vectors.gguf", "trained/*.gguf"};
    size_t n_files = 0;
    for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
        char pat[4096];
        snprintf(pat, sizeof pat, "%s/%s", wg_test_conformance_dir(), patterns[p]);
        glob_t gl;
        cr_assert_eq(glob(pat, 0, NULL, &gl), 0, "no files for %s", pat);
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            const char *path = gl.gl_pathv[i];
            wg_gguf_t *g = NULL;
            cr_assert_eq(wg_gguf_open(path, &g), WG_OK, "%s: %s", path, wg_errmsg());
            cr_assert_eq(wg_gguf_version(g), 3, "%s", path);
            cr_assert_eq(wg_gguf_alignment(g), 32, "%s", path);
            cr_assert_str_not_empty((char *)wg_gguf_get(g, "general.architecture")->v.str.ptr);
            /* the same bytes through open_mem give the same table */
            size_t len;
            uint8_t *buf = s_slurp(path, &len);
            cr_assert_eq(wg_gguf_file_size(g), len);
            wg_gguf_t *m = NULL;
            cr_assert_eq(wg_gguf_open_mem(buf, len, &m), WG_OK, "%s: %s", path, wg_errmsg());
            cr_assert_eq(wg_gguf_n_kv(m), wg_gguf_n_kv(g));
            cr_assert_eq(wg_gguf_n_tensors(m), wg_gguf_n_tensors(g));
            cr_assert_eq(wg_gguf_data_offset(m), wg_gguf_data_offset(g));
            for (int64_t t = 0; t < wg_gguf_n_tensors(g); t++) {
                const wg_gguf_tensor_t *ti = wg_gguf_tensor(g, t);
                cr_assert_eq(wg_gguf_find_tensor(g, ti->name), ti, "%s: find %s", path, ti->name);
                cr_assert_eq(ti->data, (const uint8_t *)wg_gguf_tensor(g, 0)->data - wg_gguf_tensor(g, 0)->offset +
                                           ti->offset);
                const wg_gguf_tensor_t *mi = wg_gguf_tensor(m, t);
                cr_assert_str_eq(mi->name, ti->name);
                cr_assert_eq(mi->nbytes, ti->nbytes);
                cr_assert_eq(memcmp(mi->data, ti->data, ti->nbytes), 0, "%s: data of %s", path, ti->name);
                cr_assert_eq((const uint8_t *)mi->data - buf, (ptrdiff_t)(wg_gguf_data_offset(m) + mi->offset));
            }
            for (int64_t k = 0; k < wg_gguf_n_kv(g); k++)
                cr_assert_eq(wg_gguf_get(g, wg_gguf_kv_key(g, k)), wg_gguf_kv_value(g, k));
            wg_gguf_close(&m);
            free(buf);
            wg_gguf_close(&g);
            cr_assert_null(g);
            n_files++;
        }
        globfree(&gl);
    }
    cr_assert_geq(n_files, 100, "found only %zu GGUF files", n_files);
}

Test(gguf, llama_f32_metadata) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = s_open("models/llama/llama-f32.gguf");
    cr_assert_eq(wg_gguf_n_kv(g), 23);
    cr_assert_eq(wg_gguf_n_tensors(g), 21);
    cr_assert_str_eq(wg_gguf_kv_key(g, 0), "general.architecture");
    const char *s;
    cr_assert_eq(wg_gguf_get_str(g, "general.architecture", &s), WG_OK);
    cr_assert_str_eq(s, "llama");
    uint32_t u;
    cr_assert_eq(wg_gguf_get_u32(g, "llama.embedding_length", &u), WG_OK);
    cr_assert_eq(u, 256);
    int64_t i64;
    cr_assert_eq(wg_gguf_get_i64(g, "llama.feed_forward_length", &i64), WG_OK);
    cr_assert_eq(i64, 512);
    float f;
    cr_assert_eq(wg_gguf_get_f32(g, "llama.rope.freq_base", &f), WG_OK);
    cr_assert_float_eq(f, 10000.0f, 0);
    cr_assert_eq(wg_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), WG_OK);
    cr_assert_float_eq(f, 1e-5f, 0);
    bool b = false;
    cr_assert_eq(wg_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), WG_OK);
    cr_assert(b);
    cr_assert_eq(wg_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b), WG_OK);
    cr_assert_not(b);

    wg_gguf_vtype_t et;
    uint64_t n;
    const wg_gguf_value_t *items;
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &items), WG_OK);
    cr_assert_eq(et, WG_GGUF_STRING);
    cr_assert_eq(n, 320);
    cr_assert_str_eq(items[0].v.str.ptr, "<unk>");
    cr_assert_str_eq(items[1].v.str.ptr, "<s>");
    cr_assert_str_eq(items[3].v.str.ptr, "<0x00>");
    cr_assert_eq(items[3].v.str.len, 6);
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &items), WG_OK);
    cr_assert_eq(et, WG_GGUF_INT32);
    cr_assert_eq(n, 320);
    cr_assert_eq(items[0].v.i64, 2);
    cr_assert_eq(items[1].v.i64, 3);
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &items), WG_OK);
    cr_assert_eq(et, WG_GGUF_FLOAT32);
    cr_assert_eq(n, 320);

    /* typed getter errors name the key */
    cr_assert_eq(wg_gguf_get_str(g, "llama.block_count", &s), WG_ERR_FORMAT);
    cr_assert(strstr(wg_errmsg(), "llama.block_count"), "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_get_u32(g, "llama.rope.freq_base", &u), WG_ERR_FORMAT);
    cr_assert_eq(wg_gguf_get_bool(g, "general.name", &b), WG_ERR_FORMAT);
    cr_assert_eq(wg_gguf_get_arr(g, "general.name", &et, &n, &items), WG_ERR_FORMAT);
    cr_assert_eq(wg_gguf_get_u32(g, "no.such.key", &u), WG_ERR_NOTFOUND);
    cr_assert(strstr(wg_errmsg(), "no.such.key"), "%s", wg_errmsg());
    cr_assert_null(wg_gguf_get(g, "no.such.key"));
    wg_gguf_close(&g);
}

Test(gguf, llama_f32_tensors) {
    WG_REQUIRE_CORPUS();
    const char *rel = "models/llama/llama-f32.gguf";
    wg_gguf_t *g = s_open(rel);
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, "token_embd.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->type, WG_TYPE_F32);
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->ne[0], 256);
    cr_assert_eq(t->ne[1], 320);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->ne[3], 1);
    cr_assert_eq(t->offset, 0);
    cr_assert_eq(t->nbytes, 256 * 320 * 4);
    t = wg_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->ne[0], 512);
    cr_assert_eq(t->ne[1], 256);
    cr_assert_eq(t->offset, 1969152);
    t = wg_gguf_find_tensor(g, "output_norm.weight");
    cr_assert_eq(t->n_dims, 1);
    cr_assert_eq(t->nbytes, 1024);
    cr_assert_null(wg_gguf_find_tensor(g, "blk.2.attn_q.weight"));
    cr_assert_eq(wg_gguf_data_offset(g) % 32, 0);

    /* data pointers point at the file's bytes: compare with a stdio read */
    size_t len;
    uint8_t *buf = s_slurp(wg_test_corpus(rel), &len);
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        t = wg_gguf_tensor(g, i);
        cr_assert_leq(wg_gguf_data_offset(g) + t->offset + t->nbytes, len);
        cr_assert_eq(memcmp(t->data, buf + wg_gguf_data_offset(g) + t->offset, t->nbytes), 0);
    }
    /* norm weights are 1 +- ~0.1 (std): a wrong data offset would not give that */
    const float *w = wg_gguf_find_tensor(g, "output_norm.weight")->data;
    for (int i = 0; i < 256; i++) cr_assert(w[i] > 0.5f && w[i] < 1.5f, "norm[%d]=%g", i, w[i]);
    free(buf);
    wg_gguf_close(&g);
}

Test(gguf, tokenizer_vocab_arrays) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = s_open("tokenizer/ggml-vocab-gpt-2.gguf");
    cr_assert_eq(wg_gguf_n_tensors(g), 0);
    wg_gguf_vtype_t et;
    uint64_t n;
    const wg_gguf_value_t *items;
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &items), WG_OK);
    cr_assert_eq(n, 50257);
    cr_assert_str_eq(items[0].v.str.ptr, "!");
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &items), WG_OK);
    cr_assert_eq(n, 50257);
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &items), WG_OK);
    cr_assert_eq(et, WG_GGUF_STRING);
    cr_assert_eq(n, 50000);
    cr_assert_str_eq(items[0].v.str.ptr, "\xc4\xa0 t"); /* "Ġ t" */
    wg_gguf_close(&g);
}

Test(gguf, ref_files) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = s_open("refs/llama-f32.ref.gguf");
    const char *s;
    cr_assert_eq(wg_gguf_get_str(g, "general.architecture", &s), WG_OK);
    cr_assert_str_eq(s, "conformance-ref");
    cr_assert_eq(wg_gguf_get_str(g, "ref.model", &s), WG_OK);
    cr_assert_str_eq(s, "llama-f32.gguf");
    uint32_t n_tokens, n_vocab, n_greedy;
    cr_assert_eq(wg_gguf_get_u32(g, "ref.n_tokens", &n_tokens), WG_OK);
    cr_assert_eq(wg_gguf_get_u32(g, "ref.n_vocab", &n_vocab), WG_OK);
    cr_assert_eq(wg_gguf_get_u32(g, "ref.n_greedy", &n_greedy), WG_OK);
    const wg_gguf_tensor_t *tok = wg_gguf_find_tensor(g, "tokens");
    const wg_gguf_tensor_t *lg = wg_gguf_find_tensor(g, "logits");
    const wg_gguf_tensor_t *gr = wg_gguf_find_tensor(g, "greedy");
    const wg_gguf_tensor_t *gm = wg_gguf_find_tensor(g, "greedy_margins");
    cr_assert(tok && lg && gr && gm);
    cr_assert_eq(tok->type, WG_TYPE_I32);
    cr_assert_eq(tok->ne[0], n_tokens);
    cr_assert_eq(lg->type, WG_TYPE_F32);
    cr_assert_eq(lg->ne[0], n_vocab);
    cr_assert_eq(lg->ne[1], n_tokens);
    cr_assert_eq(gr->type, WG_TYPE_I32);
    cr_assert_eq(gr->ne[0], n_greedy);
    cr_assert_eq(gm->ne[0], n_greedy);
    /* llama adds BOS: the first prompt token is <s> = 1; all ids in the vocab */
    const int32_t *ids = tok->data;
    cr_assert_eq(ids[0], 1);
    for (uint32_t i = 0; i < n_tokens; i++) cr_assert(ids[i] >= 0 && (uint32_t)ids[i] < n_vocab);
    /* ref.greedy_min_margin is the min of the greedy_margins tensor */
    float min_margin;
    cr_assert_eq(wg_gguf_get_f32(g, "ref.greedy_min_margin", &min_margin), WG_OK);
    const float *m = gm->data;
    float mn = INFINITY;
    for (uint32_t i = 0; i < n_greedy; i++) mn = m[i] < mn ? m[i] : mn;
    cr_assert_float_eq(mn, min_margin, 0);
    wg_gguf_close(&g);
}

Test(gguf, quant_vectors) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = s_open("quants/quant-vectors.gguf");
    static const struct {
        const char *name;
        wg_type_t type;
        size_t row_bytes; /* bytes of one 512-value row */
    } cases[] = {
        {"q.Q4_0", WG_TYPE_Q4_0, 16 * 18}, {"q.Q4_1", WG_TYPE_Q4_1, 16 * 20},  {"q.Q5_0", WG_TYPE_Q5_0, 16 * 22},
        {"q.Q5_1", WG_TYPE_Q5_1, 16 * 24}, {"q.Q8_0", WG_TYPE_Q8_0, 16 * 34},  {"q.Q2_K", WG_TYPE_Q2_K, 2 * 84},
        {"q.Q3_K", WG_TYPE_Q3_K, 2 * 110}, {"q.Q4_K", WG_TYPE_Q4_K, 2 * 144},  {"q.Q5_K", WG_TYPE_Q5_K, 2 * 176},
        {"q.Q6_K", WG_TYPE_Q6_K, 2 * 210}, {"q.IQ4_NL", WG_TYPE_IQ4_NL, 16 * 18},
        {"q.IQ4_XS", WG_TYPE_IQ4_XS, 2 * 136}, {"q.MXFP4", WG_TYPE_MXFP4, 16 * 17},
        {"q.F16", WG_TYPE_F16, 512 * 2},   {"q.BF16", WG_TYPE_BF16, 512 * 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, cases[i].name);
        cr_assert_not_null(t, "%s", cases[i].name);
        cr_assert_eq(t->type, cases[i].type, "%s", cases[i].name);
        cr_assert_eq(t->ne[0], 512);
        cr_assert_eq(t->ne[1], 8);
        cr_assert_eq(t->nbytes, 8 * cases[i].row_bytes, "%s: %zu", cases[i].name, t->nbytes);
        char src[32];
        snprintf(src, sizeof src, "src.%s", cases[i].name + 2);
        cr_assert_not_null(wg_gguf_find_tensor(g, src), "%s", src);
    }
    wg_gguf_close(&g);
}

Test(gguf, trained_model) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = s_open("trained/stories260K-f32.gguf");
    uint32_t u;
    cr_assert_eq(wg_gguf_get_u32(g, "llama.block_count", &u), WG_OK);
    cr_assert_eq(u, 5);
    uint64_t n;
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n, NULL), WG_OK);
    cr_assert_eq(n, 512);
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, "blk.4.ffn_down.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->ne[0], 172);
    cr_assert_eq(t->ne[1], 64);
    wg_gguf_close(&g);
}

Test(gguf, open_missing_file_names_it) {
    wg_gguf_t *g = (wg_gguf_t *)0x1;
    cr_assert_eq(wg_gguf_open("/nonexistent/x.gguf", &g), WG_ERR_IO);
    cr_assert_null(g);
    cr_assert(strstr(wg_errmsg(), "/nonexistent/x.gguf"), "%s", wg_errmsg());
    wg_gguf_close(&g); /* NULL is fine */
    wg_gguf_close(NULL);
}
