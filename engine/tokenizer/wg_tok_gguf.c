/* wg_tok_gguf — build a tokenizer from GGUF metadata (tokenizer.ggml.*).
 *
 * Every array is checked for type and length against the token list before
 * use: the file is untrusted. Missing optional keys fall back to llama.cpp's
 * per-model defaults (wg_tok_build decides those). */
#include <stdlib.h>
#include <string.h>

#include "wg_tok_internal.h"

static wg_status s_get_id(const wg_gguf_t *g, const char *key, int32_t *out) {
    int64_t v;
    wg_status st = wg_gguf_get_i64(g, key, &v);
    if (st == WG_ERR_NOTFOUND) {
        wg_error_clear();
        return WG_OK; /* keep WG_TOK_UNSET */
    }
    if (st != WG_OK) return st;
    /* an id outside the vocabulary falls back to the default, as in llama.cpp */
    *out = (v < 0 || v > INT32_MAX) ? WG_TOK_UNSET : (int32_t)v;
    return WG_OK;
}

static wg_status s_get_flag(const wg_gguf_t *g, const char *key, int *out) {
    bool b;
    wg_status st = wg_gguf_get_bool(g, key, &b);
    if (st == WG_ERR_NOTFOUND) {
        wg_error_clear();
        return WG_OK;
    }
    if (st != WG_OK) return st;
    *out = b ? 1 : 0;
    return WG_OK;
}

static const char *s_get_str_opt(const wg_gguf_t *g, const char *key) {
    const wg_gguf_value_t *v = wg_gguf_get(g, key);
    return (v && v->type == WG_GGUF_STRING) ? v->v.str.ptr : NULL;
}

wg_status wg_tok_from_gguf(const wg_gguf_t *g, wg_tok_t **out) {
    WG_ASSERT(g && out);
    *out = NULL;
    wg_tok_spec_t sp = {0};
    sp.bos = sp.eos = sp.eot = sp.eom = sp.unk = sp.sep = sp.pad = sp.cls = WG_TOK_UNSET;
    sp.add_bos = sp.add_eos = sp.add_space_prefix = sp.clean_spaces = sp.ignore_merges = -1;

    const char *model = s_get_str_opt(g, "tokenizer.ggml.model");
    if (!model) return wg_error(WG_ERR_NOTFOUND, "tokenizer.ggml.model: absent (no tokenizer in this file)");
    if (strcmp(model, "llama") == 0) sp.kind = WG_TOK_SPM;
    else if (strcmp(model, "gpt2") == 0) sp.kind = WG_TOK_BPE;
    else if (strcmp(model, "bert") == 0) sp.kind = WG_TOK_WPM;
    else if (strcmp(model, "rwkv") == 0) sp.kind = WG_TOK_RWKV;
    else return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.ggml.model: unsupported tokenizer '%s'", model);

    wg_gguf_vtype_t et;
    uint64_t n;
    const wg_gguf_value_t *items;
    wg_status st = wg_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &items);
    if (st != WG_OK) return wg_error(st, "tokenizer.ggml.tokens: %s", wg_errmsg());
    if (et != WG_GGUF_STRING)
        return wg_error(WG_ERR_FORMAT, "tokenizer.ggml.tokens: element type %s, expected string", wg_gguf_vtype_name(et));
    if (n == 0 || n > (uint64_t)INT32_MAX / 2)
        return wg_error(WG_ERR_FORMAT, "tokenizer.ggml.tokens: bad count %llu", (unsigned long long)n);
    sp.n_vocab = (int32_t)n;

    const char **texts = malloc(n * sizeof *texts);
    uint32_t *lens = malloc(n * sizeof *lens);
    float *scores = NULL;
    int32_t *types = NULL;
    const char **merges = NULL;
    uint32_t *mlens = NULL;
    if (!texts || !lens) {
        st = wg_error(WG_ERR_NOMEM, "tokenizer.ggml.tokens: %llu", (unsigned long long)n);
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (items[i].v.str.len > UINT32_MAX) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.tokens[%llu]: too long", (unsigned long long)i);
            goto done;
        }
        texts[i] = items[i].v.str.ptr;
        lens[i] = (uint32_t)items[i].v.str.len;
    }
    sp.texts = texts;
    sp.lens = lens;

    uint64_t m;
    st = wg_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &m, &items);
    if (st == WG_OK) {
        if (m != n || (et != WG_GGUF_FLOAT32 && et != WG_GGUF_FLOAT64)) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.scores: %llu items of %s for %llu tokens",
                          (unsigned long long)m, wg_gguf_vtype_name(et), (unsigned long long)n);
            goto done;
        }
        scores = malloc(n * sizeof *scores);
        if (!scores) {
            st = wg_error(WG_ERR_NOMEM, "tokenizer.ggml.scores");
            goto done;
        }
        for (uint64_t i = 0; i < n; i++) scores[i] = (float)items[i].v.f64;
        sp.scores = scores;
    } else if (st != WG_ERR_NOTFOUND) {
        goto done;
    }

    st = wg_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &m, &items);
    if (st == WG_OK) {
        bool is_int = et == WG_GGUF_INT32 || et == WG_GGUF_UINT32 || et == WG_GGUF_INT8 || et == WG_GGUF_UINT8 ||
                      et == WG_GGUF_INT16 || et == WG_GGUF_UINT16 || et == WG_GGUF_INT64 || et == WG_GGUF_UINT64;
        if (m != n || !is_int) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.token_type: %llu items of %s for %llu tokens",
                          (unsigned long long)m, wg_gguf_vtype_name(et), (unsigned long long)n);
            goto done;
        }
        types = malloc(n * sizeof *types);
        if (!types) {
            st = wg_error(WG_ERR_NOMEM, "tokenizer.ggml.token_type");
            goto done;
        }
        bool is_signed = et == WG_GGUF_INT32 || et == WG_GGUF_INT8 || et == WG_GGUF_INT16 || et == WG_GGUF_INT64;
        for (uint64_t i = 0; i < n; i++) {
            int64_t v = is_signed ? items[i].v.i64 : (int64_t)items[i].v.u64;
            types[i] = (v < 0 || v > 6) ? 0 : (int32_t)v;
        }
        sp.types = types;
    } else if (st != WG_ERR_NOTFOUND) {
        goto done;
    }

    if (sp.kind == WG_TOK_BPE) {
        st = wg_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &m, &items);
        if (st != WG_OK) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.merges: required for a gpt2 tokenizer (%s)", wg_errmsg());
            goto done;
        }
        if (et != WG_GGUF_STRING) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.merges: element type %s, expected string",
                          wg_gguf_vtype_name(et));
            goto done;
        }
        merges = malloc((m ? m : 1) * sizeof *merges);
        mlens = malloc((m ? m : 1) * sizeof *mlens);
        if (!merges || !mlens) {
            st = wg_error(WG_ERR_NOMEM, "tokenizer.ggml.merges");
            goto done;
        }
        for (uint64_t i = 0; i < m; i++) {
            merges[i] = items[i].v.str.ptr;
            mlens[i] = (uint32_t)(items[i].v.str.len > UINT32_MAX ? 0 : items[i].v.str.len);
        }
        sp.merges = merges;
        sp.merge_lens = mlens;
        sp.n_merges = (int64_t)m;
    }
    wg_error_clear();

    sp.pre = s_get_str_opt(g, "tokenizer.ggml.pre");
    sp.model_name = s_get_str_opt(g, "general.name");
    sp.chat_template = s_get_str_opt(g, "tokenizer.chat_template");
    struct {
        const char *key;
        int32_t *dst;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", &sp.bos},     {"tokenizer.ggml.eos_token_id", &sp.eos},
        {"tokenizer.ggml.eot_token_id", &sp.eot},     {"tokenizer.ggml.eom_token_id", &sp.eom},
        {"tokenizer.ggml.unknown_token_id", &sp.unk}, {"tokenizer.ggml.seperator_token_id", &sp.sep},
        {"tokenizer.ggml.padding_token_id", &sp.pad}, {"tokenizer.ggml.cls_token_id", &sp.cls},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        st = s_get_id(g, ids[i].key, ids[i].dst);
        if (st != WG_OK) goto done;
        if (*ids[i].dst >= sp.n_vocab) *ids[i].dst = WG_TOK_UNSET;
    }
    if (sp.kind == WG_TOK_WPM && sp.cls == WG_TOK_UNSET && sp.bos != WG_TOK_UNSET) sp.cls = sp.bos;
    if ((st = s_get_flag(g, "tokenizer.ggml.add_bos_token", &sp.add_bos)) != WG_OK) goto done;
    if ((st = s_get_flag(g, "tokenizer.ggml.add_eos_token", &sp.add_eos)) != WG_OK) goto done;
    if ((st = s_get_flag(g, "tokenizer.ggml.add_space_prefix", &sp.add_space_prefix)) != WG_OK) goto done;
    if (sp.kind == WG_TOK_BPE && sp.add_space_prefix < 0) sp.add_space_prefix = 0;

    st = wg_tok_build(&sp, out);
done:
    free(texts);
    free(lens);
    free(scores);
    free(types);
    free(merges);
    free(mlens);
    return st;
}
