/* Hostile hyperparameters: for every corpus architecture, every numeric
 * `<arch>.*` key of its F32 model (scalars, and the items of per-layer
 * arrays) is replaced by hostile values (0, 1, 3, a large odd number,
 * 2^32-1; 0, -1, NaN, inf, 1e30 for floats). The model must then either be
 * refused with a message naming the problem, or load and run a prefill and
 * a decode step (which may themselves fail with a message) without a crash,
 * an assertion or an out-of-bounds access: a file is untrusted input. */
#include <criterion/criterion.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "wg_test.h"
#include "wg_test_gguf.h"

/* Loads path and, if it loads, runs 3 tokens then 1; returns whether it
 * loaded. Any refusal must come with a message. */
static bool s_try(const char *path, const char *what) {
    if (getenv("WG_HOSTILE_TRACE")) fprintf(stderr, "try %s\n", what);
    wg_model_t *m = NULL;
    wg_error_clear();
    const wg_status st = wg_model_load(path, &m);
    if (st != WG_OK) {
        cr_assert_null(m, "%s: failed load returned a model", what);
        cr_assert(wg_errmsg()[0], "%s: load refused without a message (%s)", what, wg_status_name(st));
        return false;
    }
    const int32_t nv = wg_model_hparams(m)->n_vocab;
    wg_error_clear();
    wg_session_t *s = wg_session_new(m, 1, 32);
    if (s) {
        int32_t ids[3] = {1 % nv, 2 % nv, 3 % nv};
        wg_error_clear();
        wg_status e = wg_session_eval(s, ids, 3, false, NULL);
        if (e == WG_OK) {
            e = wg_session_eval(s, ids, 1, false, NULL);
            if (e == WG_OK) {
                const float *lg = wg_session_logits(s);
                cr_assert_not_null(lg, "%s: no logits", what);
            }
        }
        if (e != WG_OK) cr_assert(wg_errmsg()[0], "%s: eval failed without a message", what);
        wg_session_free(&s);
    } else {
        cr_assert(wg_errmsg()[0], "%s: session refused without a message", what);
    }
    wg_model_free(&m);
    return true;
}

static bool s_numeric(wg_gguf_vtype_t t) {
    return t != WG_GGUF_STRING && t != WG_GGUF_ARRAY && t != WG_GGUF_BOOL;
}

static bool s_float(wg_gguf_vtype_t t) { return t == WG_GGUF_FLOAT32 || t == WG_GGUF_FLOAT64; }

/* The hostile values for type t (k-th of n). */
static const int S_NVAL = 5;
static wg_gguf_value_t s_hostile(const wg_gguf_value_t *orig, int k) {
    wg_gguf_value_t v = *orig;
    if (s_float(orig->type)) {
        const double f[] = {0.0, -1.0, NAN, INFINITY, 1e30};
        v.v.f64 = f[k];
    } else if (orig->type == WG_GGUF_INT8 || orig->type == WG_GGUF_INT16 || orig->type == WG_GGUF_INT32 ||
               orig->type == WG_GGUF_INT64) {
        const int64_t i[] = {0, 1, 3, orig->v.i64 * 2 + 1, -1};
        v.v.i64 = i[k];
    } else {
        const uint64_t u[] = {0, 1, 3, orig->v.u64 * 2 + 1, orig->type == WG_GGUF_UINT64 ? UINT64_MAX : UINT32_MAX};
        v.v.u64 = u[k];
        if (orig->type == WG_GGUF_UINT8) v.v.u64 &= 0xff;
        if (orig->type == WG_GGUF_UINT16) v.v.u64 &= 0xffff;
    }
    return v;
}

static void s_sweep(const char *rel) {
    WG_REQUIRE_CORPUS();
    char src[4096], path[256];
    snprintf(src, sizeof src, "%s", wg_test_corpus(rel));
    snprintf(path, sizeof path, "/tmp/wg_hostile_%d.gguf", (int)getpid());
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(src, &g), WG_OK, "%s: %s", rel, wg_errmsg());
    const char *arch = NULL;
    cr_assert_eq(wg_gguf_get_str(g, "general.architecture", &arch), WG_OK);
    const size_t al = strlen(arch);
    cr_assert(s_try(src, rel), "%s: the unmodified model must load: %s", rel, wg_errmsg());
    int tried = 0, loaded = 0;
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++) {
        const char *key = wg_gguf_kv_key(g, i);
        if (strncmp(key, arch, al) != 0 || key[al] != '.') continue;
        const wg_gguf_value_t *orig = wg_gguf_kv_value(g, i);
        const bool arr = orig->type == WG_GGUF_ARRAY && s_numeric(orig->v.arr.type) && orig->v.arr.n > 0;
        if (!arr && !s_numeric(orig->type)) continue;
        for (int k = 0; k < S_NVAL; k++) {
            wg_gguf_value_t v;
            wg_gguf_value_t *items = NULL;
            if (arr) {
                /* every layer's entry at once, and (k odd) only the last layer's */
                const uint64_t n = orig->v.arr.n;
                items = malloc(n * sizeof *items);
                cr_assert_not_null(items);
                for (uint64_t j = 0; j < n; j++)
                    items[j] = (k % 2 && j + 1 < n) ? orig->v.arr.items[j] : s_hostile(&orig->v.arr.items[j], k);
                v = *orig;
                v.v.arr.items = items;
            } else {
                v = s_hostile(orig, k);
            }
            wg_gguf_writer_t *w = wg_gguf_writer_new();
            wg_test_gguf_copy(w, g, NULL);
            cr_assert_eq(wg_gguf_writer_set_value(w, key, &v), WG_OK, "%s", wg_errmsg());
            cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK, "%s", wg_errmsg());
            wg_gguf_writer_destroy(&w);
            free(items);
            char what[512];
            snprintf(what, sizeof what, "%s with %s = hostile value %d", rel, key, k);
            loaded += s_try(path, what);
            tried++;
        }
    }
    unlink(path);
    wg_gguf_close(&g);
    cr_assert_gt(tried, 10, "%s: only %d variants", rel, tried);
    cr_log_info("%s: %d hostile variants, %d loaded\n", rel, tried, loaded);
}

#define S_MODEL(name, rel) \
    Test(hostile_hparams, name, .timeout = 600) { s_sweep(rel); }

S_MODEL(llama, "models/llama/llama-f32.gguf")
S_MODEL(llama_moe, "models/llama-moe/llama-moe-f32.gguf")
S_MODEL(qwen2, "models/qwen2/qwen2-f32.gguf")
S_MODEL(qwen3, "models/qwen3/qwen3-f32.gguf")
S_MODEL(qwen3moe, "models/qwen3moe/qwen3moe-f32.gguf")
S_MODEL(gemma, "models/gemma/gemma-f32.gguf")
S_MODEL(gemma2, "models/gemma2/gemma2-f32.gguf")
S_MODEL(gemma3, "models/gemma3/gemma3-f32.gguf")
S_MODEL(mistral3, "models/mistral3/mistral3-f32.gguf")
S_MODEL(phi2, "models/phi2/phi2-f32.gguf")
S_MODEL(phi3, "models/phi3/phi3-f32.gguf")
S_MODEL(olmo, "models/olmo/olmo-f32.gguf")
S_MODEL(olmo2, "models/olmo2/olmo2-f32.gguf")
S_MODEL(stablelm, "models/stablelm/stablelm-f32.gguf")
S_MODEL(starcoder2, "models/starcoder2/starcoder2-f32.gguf")
S_MODEL(falcon, "models/falcon/falcon-f32.gguf")
S_MODEL(deepseek2, "models/deepseek2/deepseek2-f32.gguf")
S_MODEL(gpt_oss, "models/gpt-oss/gpt-oss-f32.gguf")
S_MODEL(minimax_m2, "models/minimax-m2/minimax-m2-f32.gguf")
S_MODEL(mamba, "models/mamba/mamba-f32.gguf")
S_MODEL(rwkv6, "models/rwkv6/rwkv6-f32.gguf")
S_MODEL(rwkv7, "models/rwkv7/rwkv7-f32.gguf")

/* ---- HF directories: hostile config.json values ----
 * Every top-level number of the corpus HF configs, and of their nested
 * objects (rope_scaling…), becomes each of: 0, 1, 3, 1e9, -1, 2.5, a string,
 * null, true; and each key is dropped. Same contract as above. */
#include "wg_test_json.h"

static void s_hf_try(const char *dir, const char *safetensors, json_t *cfg, const char *what, int *tried,
                     int *loaded) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(json_dump_file(cfg, p, JSON_INDENT(1)), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat sb;
    if (lstat(p, &sb) != 0) cr_assert_eq(symlink(safetensors, p), 0);
    *loaded += s_try(dir, what);
    (*tried)++;
}

typedef struct {
    const char *dir, *st;
    int tried, loaded;
} s_hf_t;

static json_t *s_hf_variant(int k) {
    switch (k) {
    case 0: return json_integer(0);
    case 1: return json_integer(1);
    case 2: return json_integer(3);
    case 3: return json_integer(1000000000);
    case 4: return json_integer(-1);
    case 5: return json_real(2.5);
    case 6: return json_string("many");
    case 7: return json_null();
    default: return json_true();
    }
}

static bool s_hf_want(const json_t *v) { return json_is_number(v) || json_is_boolean(v); }

static void s_hf_visit(json_t *root, const char *path, int k, void *arg) {
    s_hf_t *h = arg;
    char what[1400];
    if (snprintf(what, sizeof what, k < 9 ? "%s: %s = variant %d" : "%s: %s dropped", h->dir, path, k) < 0) what[0] = 0;
    s_hf_try(h->dir, h->st, root, what, &h->tried, &h->loaded);
}

static void s_hf_sweep(const char *rel) {
    WG_REQUIRE_CORPUS();
    char src[4096], st[4200], dir[256];
    snprintf(src, sizeof src, "%s", wg_test_corpus(rel));
    snprintf(st, sizeof st, "%s/model.safetensors", src);
    cr_assert(s_try(src, rel), "%s: the unmodified model must load: %s", rel, wg_errmsg());
    char cfgp[4200];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", src);
    json_error_t je;
    json_t *root = json_load_file(cfgp, 0, &je);
    cr_assert_not_null(root, "%s: %s", cfgp, je.text);
    snprintf(dir, sizeof dir, "/tmp/wg_hostile_hf_%d", (int)getpid());
    mkdir(dir, 0700);
    s_hf_t h = {.dir = dir, .st = st};
    wg_test_json_mutate(root, root, "", s_hf_want, s_hf_variant, 9, s_hf_visit, &h);
    const int tried = h.tried, loaded = h.loaded;
    json_decref(root);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
    cr_assert_gt(tried, 50, "%s: only %d variants", rel, tried);
    cr_log_info("%s: %d hostile config variants, %d loaded\n", rel, tried, loaded);
}

#define S_HF(name, rel) \
    Test(hostile_hf_config, name, .timeout = 600) { s_hf_sweep(rel); }

S_HF(llama, "hf/llama")
S_HF(llama_moe, "hf/llama-moe")
S_HF(gemma, "hf/gemma")
S_HF(phi3, "hf/phi3")
S_HF(qwen2, "hf/qwen2")
S_HF(qwen3, "hf/qwen3")
