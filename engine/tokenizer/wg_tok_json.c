/* wg_tok_json — build a tokenizer from a HuggingFace tokenizer.json (and the
 * tokenizer_config.json beside it, when present).
 *
 * Supported: model.type "BPE" — byte-level (ByteLevel pre-tokenizer, optional
 * Split regexes and Digits, in order) or, with byte_fallback, SentencePiece-
 * style (Prepend/Replace normaliser or Metaspace: spaces become "▁", <0xNN>
 * byte tokens) merged by merge rank; vocab, merges as "a b" strings or
 * [a, b] pairs, added_tokens (special → control, else user-defined);
 * model.type "WordPiece" is not. The file is untrusted: every field is type-
 * checked and errors name it. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "wg_tok_internal.h"

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

typedef struct {
    const char *re[8];  /* patterns in application order */
    int32_t n;          /* count */
    bool byte_level;    /* a ByteLevel step was seen */
    int metaspace;      /* -1 none, else 1 = add prefix space, 0 = never */
} s_pre_t;

static wg_status s_walk_pre(json_t *p, s_pre_t *pre) {
    if (!p || json_is_null(p)) return WG_OK;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return wg_error(WG_ERR_FORMAT, "tokenizer.json: pre_tokenizer without a type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) return wg_error(WG_ERR_FORMAT, "tokenizer.json: pre_tokenizer.pretokenizers not an array");
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            wg_status st = s_walk_pre(e, pre);
            if (st != WG_OK) return st;
        }
        return WG_OK;
    }
    if (pre->n >= 8) return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: more than 8 pre-tokenizer steps");
    if (strcmp(type, "Split") == 0) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (!re) return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: Split pre-tokenizer without a Regex pattern");
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        if (beh && strcmp(beh, "Isolated") != 0)
            return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: Split behavior '%s' (only Isolated)", beh);
        if (json_is_true(json_object_get(p, "invert")))
            return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: inverted Split");
        pre->re[pre->n++] = re;
    } else if (strcmp(type, "ByteLevel") == 0) {
        pre->byte_level = true;
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur)) pre->re[pre->n++] = GPT2_PATTERN;
        if (json_is_true(json_object_get(p, "add_prefix_space")))
            return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: ByteLevel add_prefix_space=true");
    } else if (strcmp(type, "Digits") == 0) {
        pre->re[pre->n++] = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        json_t *aps = json_object_get(p, "add_prefix_space");
        pre->metaspace = (scheme && strcmp(scheme, "never") == 0) || json_is_false(aps) ? 0 : 1;
    } else {
        return wg_error(WG_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer type '%s'", type);
    }
    return WG_OK;
}

/* Prepend "▁" in the normaliser means SPM's add_space_prefix. */
static void s_walk_norm(json_t *n, int *prepend) {
    if (!n || json_is_null(n)) return;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type) return;
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(n, "normalizers"), i, e) s_walk_norm(e, prepend);
    } else if (strcmp(type, "Prepend") == 0) {
        *prepend = 1;
    }
}

static const char *s_token_str(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

wg_status wg_tok_from_json(const char *path, wg_tok_t **out) {
    WG_ASSERT(path && out);
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!root) return wg_error(WG_ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    json_t *cfg = NULL;
    wg_status st = WG_OK;
    const char **texts = NULL;
    uint32_t *lens = NULL;
    int32_t *types = NULL;
    char **merge_buf = NULL;
    size_t n_merge_buf = 0;
    char (*holes)[24] = NULL;
    wg_tok_spec_t sp = {0};
    sp.bos = sp.eos = sp.eot = sp.eom = sp.unk = sp.sep = sp.pad = sp.cls = WG_TOK_UNSET;
    sp.add_bos = sp.add_eos = sp.add_space_prefix = sp.clean_spaces = sp.ignore_merges = -1;

    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype) {
        st = wg_error(WG_ERR_FORMAT, "%s: model.type missing", path);
        goto done;
    }
    if (strcmp(mtype, "BPE") != 0) {
        st = wg_error(WG_ERR_UNSUPPORTED, "%s: model.type '%s' (only BPE)", path, mtype);
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) {
        st = wg_error(WG_ERR_FORMAT, "%s: model.vocab is not an object", path);
        goto done;
    }
    json_t *added = json_object_get(root, "added_tokens");
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            st = wg_error(WG_ERR_FORMAT, "%s: model.vocab['%s'] bad id", path, key);
            goto done;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t i;
    json_t *e;
    json_array_foreach(added, i, e) {
        json_t *jid = json_object_get(e, "id");
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= (1 << 24) ||
            !json_is_string(json_object_get(e, "content"))) {
            st = wg_error(WG_ERR_FORMAT, "%s: added_tokens[%zu] needs an id and a content", path, i);
            goto done;
        }
        if (json_integer_value(jid) > max_id) max_id = json_integer_value(jid);
    }
    if (max_id < 0) {
        st = wg_error(WG_ERR_FORMAT, "%s: empty vocabulary", path);
        goto done;
    }
    int32_t n = (int32_t)max_id + 1;
    texts = calloc((size_t)n, sizeof *texts);
    lens = calloc((size_t)n, sizeof *lens);
    types = calloc((size_t)n, sizeof *types);
    holes = calloc((size_t)n, sizeof *holes);
    if (!texts || !lens || !types || !holes) {
        st = wg_error(WG_ERR_NOMEM, "%s: %d tokens", path, n);
        goto done;
    }
    bool byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        texts[id] = key;
        lens[id] = (uint32_t)strlen(key);
        types[id] = 1;
        if (byte_fallback && lens[id] == 6 && strncmp(key, "<0x", 3) == 0 && key[5] == '>') types[id] = 6;
    }
    json_array_foreach(added, i, e) {
        int32_t id = (int32_t)json_integer_value(json_object_get(e, "id"));
        json_t *c = json_object_get(e, "content");
        texts[id] = json_string_value(c);
        lens[id] = (uint32_t)json_string_length(c);
        types[id] = json_is_true(json_object_get(e, "special")) ? 3 : 4;
    }
    for (int32_t k = 0; k < n; k++) {
        if (texts[k]) continue;
        snprintf(holes[k], sizeof holes[k], "<unused_%d>", k);
        texts[k] = holes[k];
        lens[k] = (uint32_t)strlen(holes[k]);
        types[k] = 5;
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) {
        json_t *uid = json_object_get(vocab, unk);
        if (json_is_integer(uid)) {
            sp.unk = (int32_t)json_integer_value(uid);
            types[sp.unk] = 2;
        }
    }
    if (json_is_boolean(json_object_get(model, "ignore_merges")))
        sp.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    /* merges: "a b" or ["a", "b"] */
    json_t *merges = json_object_get(model, "merges");
    size_t nm = json_array_size(merges);
    merge_buf = calloc(nm ? nm : 1, sizeof *merge_buf);
    if (!merge_buf) {
        st = wg_error(WG_ERR_NOMEM, "%s: merges", path);
        goto done;
    }
    json_array_foreach(merges, i, e) {
        if (json_is_string(e)) {
            merge_buf[i] = strdup(json_string_value(e));
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
            size_t la = strlen(a), lb = strlen(b);
            merge_buf[i] = malloc(la + lb + 2);
            if (merge_buf[i]) {
                memcpy(merge_buf[i], a, la);
                merge_buf[i][la] = ' ';
                memcpy(merge_buf[i] + la + 1, b, lb + 1);
            }
        } else {
            st = wg_error(WG_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", path, i);
            goto done;
        }
        n_merge_buf = i + 1;
        if (!merge_buf[i]) {
            st = wg_error(WG_ERR_NOMEM, "%s: merges", path);
            goto done;
        }
    }

    s_pre_t pre = {.metaspace = -1};
    st = s_walk_pre(json_object_get(root, "pre_tokenizer"), &pre);
    if (st != WG_OK) goto done;
    sp.n_vocab = n;
    sp.texts = texts;
    sp.lens = lens;
    sp.types = types;
    sp.merges = (const char *const *)merge_buf;
    sp.n_merges = (int64_t)nm;
    if (byte_fallback) {
        int prepend = 0;
        s_walk_norm(json_object_get(root, "normalizer"), &prepend);
        sp.kind = WG_TOK_SPM;
        sp.spm_merges = true;
        sp.add_space_prefix = pre.metaspace >= 0 ? pre.metaspace : prepend;
    } else {
        sp.kind = WG_TOK_BPE;
        sp.add_space_prefix = 0;
        sp.regex = pre.re;
        sp.n_regex = pre.n;
        sp.no_regex = pre.n == 0;
        sp.clean_spaces = json_is_true(json_object_get(root, "clean_up_tokenization_spaces")) ? 1 : 0;
    }

    /* tokenizer_config.json: BOS/EOS and their add rules, chat template */
    size_t pl = strlen(path);
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *cfg_path = malloc(pl + 32);
    if (cfg_path) {
        memcpy(cfg_path, path, dl);
        strcpy(cfg_path + dl, "tokenizer_config.json");
        cfg = json_load_file(cfg_path, 0, &je);
        free(cfg_path);
    }
    if (cfg) {
        json_t *v;
        if (json_is_boolean(v = json_object_get(cfg, "add_bos_token"))) sp.add_bos = json_is_true(v);
        if (json_is_boolean(v = json_object_get(cfg, "add_eos_token"))) sp.add_eos = json_is_true(v);
        if (json_is_boolean(v = json_object_get(cfg, "clean_up_tokenization_spaces")) && !byte_fallback)
            sp.clean_spaces = json_is_true(v);
        sp.chat_template = json_string_value(json_object_get(cfg, "chat_template"));
        const char *bos = s_token_str(json_object_get(cfg, "bos_token"));
        const char *eos = s_token_str(json_object_get(cfg, "eos_token"));
        for (int32_t k = 0; k < n; k++) {
            if (bos && strcmp(texts[k], bos) == 0) sp.bos = k;
            if (eos && strcmp(texts[k], eos) == 0) sp.eos = k;
        }
    }
    if (sp.kind == WG_TOK_BPE) {
        if (sp.bos == WG_TOK_UNSET) sp.bos = -1;
        if (sp.eos == WG_TOK_UNSET) {
            /* no config: the usual end-of-text token, when present */
            sp.eos = -1;
            for (int32_t k = 0; k < n; k++)
                if (strcmp(texts[k], "<|endoftext|>") == 0) sp.eos = k;
        }
        if (sp.add_bos < 0) sp.add_bos = 0;
    }
    st = wg_tok_build(&sp, out);
done:
    for (size_t k = 0; k < n_merge_buf; k++) free(merge_buf[k]);
    free(merge_buf);
    free(texts);
    free(lens);
    free(types);
    free(holes);
    json_decref(cfg);
    json_decref(root);
    return st;
}
