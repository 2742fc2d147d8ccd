/* Hostile vocabularies: what a tokenizer built from an untrusted GGUF must
 * do whatever its metadata says (tests/tokenizer/test_tok_mutate.c sweeps
 * mutations of small valid vocabularies through it; tests/fuzz/fuzz_tok.c
 * feeds it libFuzzer's inputs):
 *
 *   - wg_tok_from_gguf either fails with *out NULL and a message, or builds
 *     a tokenizer whose every id has a text and a piece, whose special ids
 *     are -1 or inside the vocabulary, and which encodes a fixed set of
 *     texts (ASCII, multi-byte and invalid UTF-8, special-token text, long
 *     runs) to ids inside the vocabulary, decodes and detokenizes them.
 *
 * Plus one small valid vocabulary per tokenizer family (SPM with byte
 * fallback, byte-level BPE with three pre-tokenizers, WordPiece, RWKV) as
 * GGUF images: the seeds of both. Header-only (static functions). */
#ifndef WG_TEST_TOK_H
#define WG_TEST_TOK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wg_status.h"
#include "engine/formats/wg_gguf.h"
#include "engine/tokenizer/wg_tok.h"

#define WG_TT_KINDS 6

static const char *const wg_tt_names[WG_TT_KINDS] = {"spm", "bpe-gpt2", "bpe-llama3", "bpe-qwen2", "wpm", "rwkv"};

/* token types as GGUF stores them */
enum { WG_TT_NORMAL = 1, WG_TT_UNKNOWN = 2, WG_TT_CONTROL = 3, WG_TT_USER = 4, WG_TT_BYTE = 6 };

/* Writes vocabulary `kind` as a GGUF file at path. */
static wg_status wg_tt_write(int kind, const char *path) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    if (!w) return WG_ERR_NOMEM;
    const char *tok[64];
    int32_t type[64];
    float score[64];
    int n = 0;
#define WG_TT_ADD(s, t) (tok[n] = (s), type[n] = (t), score[n] = -(float)n, n++)
    wg_status st = WG_OK;
    switch (kind) {
    case 0: /* SentencePiece with byte fallback */
        st = wg_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
        WG_TT_ADD("<unk>", WG_TT_UNKNOWN);
        WG_TT_ADD("<s>", WG_TT_CONTROL);
        WG_TT_ADD("</s>", WG_TT_CONTROL);
        WG_TT_ADD("<0x0A>", WG_TT_BYTE);
        WG_TT_ADD("<0xC3>", WG_TT_BYTE);
        WG_TT_ADD("<0xA9>", WG_TT_BYTE);
        WG_TT_ADD("<0xFF>", WG_TT_BYTE);
        WG_TT_ADD("\xe2\x96\x81", WG_TT_NORMAL); /* ▁ */
        WG_TT_ADD("\xe2\x96\x81" "the", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81" "a", WG_TT_NORMAL);
        WG_TT_ADD("t", WG_TT_NORMAL);
        WG_TT_ADD("h", WG_TT_NORMAL);
        WG_TT_ADD("e", WG_TT_NORMAL);
        WG_TT_ADD("a", WG_TT_NORMAL);
        WG_TT_ADD("b", WG_TT_NORMAL);
        WG_TT_ADD("th", WG_TT_NORMAL);
        WG_TT_ADD("he", WG_TT_NORMAL);
        WG_TT_ADD("ab", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81" "ab", WG_TT_NORMAL);
        WG_TT_ADD("<|tool|>", WG_TT_USER);
        break;
    case 1: /* byte-level BPE: the vocabulary is in GPT-2's byte-to-unicode map */
    case 2:
    case 3:
        st = wg_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        if (!st) st = wg_gguf_writer_set_str(w, "tokenizer.ggml.pre", kind == 1 ? "gpt-2" : kind == 2 ? "llama-bpe" : "qwen2");
        WG_TT_ADD("a", WG_TT_NORMAL);
        WG_TT_ADD("b", WG_TT_NORMAL);
        WG_TT_ADD("c", WG_TT_NORMAL);
        WG_TT_ADD("1", WG_TT_NORMAL);
        WG_TT_ADD("2", WG_TT_NORMAL);
        WG_TT_ADD("\xc4\xa0", WG_TT_NORMAL); /* Ġ: space */
        WG_TT_ADD("\xc4\x8a", WG_TT_NORMAL); /* Ċ: newline */
        WG_TT_ADD("\xc3\x83", WG_TT_NORMAL); /* Ã: byte 0xC3 */
        WG_TT_ADD("\xc2\xa9", WG_TT_NORMAL); /* ©: byte 0xA9 */
        WG_TT_ADD("ab", WG_TT_NORMAL);
        WG_TT_ADD("abc", WG_TT_NORMAL);
        WG_TT_ADD("\xc4\xa0" "a", WG_TT_NORMAL);
        WG_TT_ADD("\xc4\xa0" "ab", WG_TT_NORMAL);
        WG_TT_ADD("\xc3\x83\xc2\xa9", WG_TT_NORMAL); /* é */
        WG_TT_ADD("12", WG_TT_NORMAL);
        WG_TT_ADD("<|endoftext|>", WG_TT_CONTROL);
        WG_TT_ADD("<|im_start|>", WG_TT_CONTROL);
        break;
    case 4: /* WordPiece */
        st = wg_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
        WG_TT_ADD("[PAD]", WG_TT_CONTROL);
        WG_TT_ADD("[UNK]", WG_TT_UNKNOWN);
        WG_TT_ADD("[CLS]", WG_TT_CONTROL);
        WG_TT_ADD("[SEP]", WG_TT_CONTROL);
        WG_TT_ADD("[MASK]", WG_TT_CONTROL);
        WG_TT_ADD("\xe2\x96\x81" "the", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81" "a", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81" "hello", WG_TT_NORMAL);
        WG_TT_ADD("s", WG_TT_NORMAL);
        WG_TT_ADD("b", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81,", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81.", WG_TT_NORMAL);
        WG_TT_ADD("\xe2\x96\x81\xc3\xa9", WG_TT_NORMAL);
        break;
    case 5: /* RWKV: escaped strings */
        st = wg_gguf_writer_set_str(w, "tokenizer.ggml.model", "rwkv");
        WG_TT_ADD("<s>", WG_TT_CONTROL);
        WG_TT_ADD("a", WG_TT_NORMAL);
        WG_TT_ADD("b", WG_TT_NORMAL);
        WG_TT_ADD(" ", WG_TT_NORMAL);
        WG_TT_ADD("\\n", WG_TT_NORMAL);
        WG_TT_ADD("\\t", WG_TT_NORMAL);
        WG_TT_ADD("\\xc3", WG_TT_NORMAL);
        WG_TT_ADD("\\xa9", WG_TT_NORMAL);
        WG_TT_ADD("\\\\", WG_TT_NORMAL);
        WG_TT_ADD("ab", WG_TT_NORMAL);
        WG_TT_ADD(" the", WG_TT_NORMAL);
        break;
    default: st = WG_ERR_INVAL;
    }
#undef WG_TT_ADD
    if (!st) st = wg_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, (uint64_t)n);
    if (!st) st = wg_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", WG_GGUF_INT32, type, (uint64_t)n);
    if (!st && (kind == 0 || kind == 5)) st = wg_gguf_writer_set_arr(w, "tokenizer.ggml.scores", WG_GGUF_FLOAT32, score, (uint64_t)n);
    if (!st && kind >= 1 && kind <= 3) {
        const char *merges[] = {"a b", "ab c", "\xc4\xa0 a", "\xc4\xa0" "a b", "1 2", "\xc3\x83 \xc2\xa9"};
        st = wg_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, sizeof merges / sizeof merges[0]);
    }
    if (!st && kind == 0) {
        st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
        if (!st) st = wg_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    }
    if (!st && kind >= 1 && kind <= 3) {
        st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 15);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 15);
        if (!st) st = wg_gguf_writer_set_str(w, "tokenizer.chat_template", "{{ messages[0].content }}");
    }
    if (!st && kind == 4) {
        st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.cls_token_id", 2);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3);
        if (!st) st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
    }
    if (!st) st = wg_gguf_writer_write(w, path);
    wg_gguf_writer_destroy(&w);
    return st;
}

/* Vocabulary `kind` as a malloc'd GGUF image (*len bytes), or NULL. */
static uint8_t *wg_tt_image(int kind, size_t *len) {
    char path[] = "/tmp/wg_tt_vocab_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    uint8_t *buf = NULL;
    if (wg_tt_write(kind, path) == WG_OK) {
        FILE *f = fopen(path, "rb");
        if (f && fseek(f, 0, SEEK_END) == 0) {
            long n = ftell(f);
            if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
                fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            }
            *len = (size_t)n;
        }
        if (f) fclose(f);
    }
    unlink(path);
    return buf;
}

static char wg_tt_why[512];

/* Texts every accepted tokenizer must encode, decode and detokenize. */
static const char *const wg_tt_texts[] = {
    "",
    "a",
    "the abc ab 12 1212",
    "  leading and  double  spaces\n\nand\ttabs\r\n",
    "\xc3\xa9" "t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
    "\xff\xfe\xc3 invalid \xe2\x82 utf-8 \xc0\xaf",
    "<|endoftext|>x<s>y</s>[CLS]<|im_start|><|tool|>",
    "it's we're I'LL 2024-11-24 3.14159 ,.;:!?",
    "abababababababababababababababababababababababababababababababababababababab"
    "abababababababababababababababababababababababababababababababababababababab",
};

/* NULL when tokenizer t (built from untrusted data) behaves as described at
 * the top: special ids inside the vocabulary, every id with a text and a
 * piece, the texts above encoded to ids inside the vocabulary (or refused
 * with a message), decoded and detokenized. Frees t. */
static const char *wg_tt_check_tok(wg_tok_t *t) {
    const int32_t nv = wg_tok_n_vocab(t);
    const char *bad = NULL;
    char piece[64];
    if (nv <= 0) {
        bad = "no tokens";
    } else if (wg_tok_bos(t) < -1 || wg_tok_bos(t) >= nv || wg_tok_eos(t) < -1 || wg_tok_eos(t) >= nv) {
        snprintf(wg_tt_why, sizeof wg_tt_why, "bos %d / eos %d outside [-1, %d)", wg_tok_bos(t), wg_tok_eos(t), nv);
        bad = wg_tt_why;
    }
    for (int32_t id = 0; !bad && id < nv; id++) {
        if (!wg_tok_text(t, id)) {
            snprintf(wg_tt_why, sizeof wg_tt_why, "token %d has no text", id);
            bad = wg_tt_why;
        }
        (void)wg_tok_is_eog(t, id);
        (void)wg_tok_is_control(t, id);
        (void)wg_tok_piece(t, id, false, piece, sizeof piece);
        (void)wg_tok_piece(t, id, true, piece, sizeof piece);
    }
    (void)wg_tok_chat_template(t);
    for (size_t k = 0; !bad && k < sizeof wg_tt_texts / sizeof wg_tt_texts[0]; k++)
        for (int mode = 0; !bad && mode < 4; mode++) {
            int32_t *ids = NULL;
            size_t nid = 0;
            wg_error_clear();
            if (wg_tok_encode(t, wg_tt_texts[k], strlen(wg_tt_texts[k]), mode & 1, mode & 2, &ids, &nid) != WG_OK) {
                if (!wg_errmsg()[0]) {
                    snprintf(wg_tt_why, sizeof wg_tt_why, "encode of text %zu failed without a message", k);
                    bad = wg_tt_why;
                }
                free(ids);
                continue;
            }
            for (size_t i = 0; !bad && i < nid; i++)
                if (ids[i] < 0 || ids[i] >= nv) {
                    snprintf(wg_tt_why, sizeof wg_tt_why, "text %zu (mode %d): id %d outside [0, %d)", k, mode,
                             ids[i], nv);
                    bad = wg_tt_why;
                }
            if (!bad) {
                char *text = NULL;
                if (wg_tok_decode(t, ids, nid, mode & 2, &text) == WG_OK) free(text);
                wg_detok_t *dt = wg_detok_new(t, mode & 2);
                for (size_t i = 0; dt && i < nid; i++) {
                    char *out = NULL;
                    if (wg_detok_push(dt, ids[i], &out) == WG_OK) free(out);
                }
                char *tail = NULL;
                if (dt && wg_detok_flush(dt, &tail) == WG_OK) free(tail);
                wg_detok_free(&dt);
            }
            free(ids);
        }
    wg_tok_free(&t);
    return bad;
}

/* NULL when a build's outcome is as described at the top: a failure with
 * no tokenizer and a message, or a tokenizer that passes wg_tt_check_tok. */
static const char *wg_tt_built(wg_status st, wg_tok_t *t) {
    if (st != WG_OK) {
        const char *bad = t ? "failed but returned a tokenizer" : !wg_errmsg()[0] ? "failed without a message" : NULL;
        if (bad) snprintf(wg_tt_why, sizeof wg_tt_why, "%s (%s)", bad, wg_status_name(st));
        return bad ? wg_tt_why : NULL;
    }
    return wg_tt_check_tok(t);
}

/* NULL when the GGUF image d[0..n) behaves as described at the top. */
static const char *wg_tt_check(const uint8_t *d, size_t n) {
    wg_gguf_t *g = NULL;
    if (wg_gguf_open_mem(d, n, &g) != WG_OK) return NULL; /* the reader's own fuzz target covers this */
    wg_tok_t *t = NULL;
    wg_error_clear();
    const wg_status st = wg_tok_from_gguf(g, &t);
    const char *bad = wg_tt_built(st, t);
    wg_gguf_close(&g);
    return bad;
}

#endif
