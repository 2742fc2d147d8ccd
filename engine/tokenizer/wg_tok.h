/* wg_tok — tokenizers: SentencePiece-BPE (scores, byte fallback), byte-level
 * BPE (merges + PCRE2 pre-tokenizer regexes), optional WordPiece; read from
 * GGUF metadata (tokenizer.ggml.*) or an HF tokenizer.json.
 *
 * A wg_tok_t is immutable after creation and may be used from many threads
 * (a byte-level BPE's pre-tokenizer regexes are compiled at its first encode,
 * under a lock, and built-in ones once per process).
 * Streaming detokenization (wg_detok_t) is per sequence and never emits a
 * broken UTF-8 sequence: bytes of an incomplete character are held back. */
#ifndef WG_TOK_H
#define WG_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../formats/wg_gguf.h"

typedef struct wg_tok wg_tok_t;

typedef enum {
    WG_TOK_SPM,   /* SentencePiece BPE with scores ("llama") */
    WG_TOK_BPE,   /* byte-level BPE with merges ("gpt2") */
    WG_TOK_WPM,   /* WordPiece ("bert") */
    WG_TOK_RWKV,  /* RWKV trie ("rwkv") */
} wg_tok_kind_t;

/* From GGUF metadata. WG_ERR_NOTFOUND when the file has no tokenizer. */
wg_status wg_tok_from_gguf(const wg_gguf_t *g, wg_tok_t **out);
/* From an HF tokenizer.json (plus tokenizer_config.json beside it when present). */
wg_status wg_tok_from_json(const char *tokenizer_json_path, wg_tok_t **out);
void wg_tok_free(wg_tok_t **t);

wg_tok_kind_t wg_tok_kind(const wg_tok_t *t);
int32_t wg_tok_n_vocab(const wg_tok_t *t);
int32_t wg_tok_bos(const wg_tok_t *t);        /* -1 if none */
int32_t wg_tok_eos(const wg_tok_t *t);        /* -1 if none */
bool wg_tok_add_bos(const wg_tok_t *t);       /* the vocabulary's add-BOS rule */
bool wg_tok_add_eos(const wg_tok_t *t);
/* End of generation: EOS, EOT, <|im_end|>, <|eot_id|>, <|end|> ... */
bool wg_tok_is_eog(const wg_tok_t *t, int32_t id);
bool wg_tok_is_control(const wg_tok_t *t, int32_t id);
/* Token id of an exact vocabulary string, or -1. */
int32_t wg_tok_lookup(const wg_tok_t *t, const char *text, size_t len);
/* The raw vocabulary string of id (as stored), or NULL for an out-of-range id. */
const char *wg_tok_text(const wg_tok_t *t, int32_t id);
/* The chat template string from the model (tokenizer.chat_template), or NULL. */
const char *wg_tok_chat_template(const wg_tok_t *t);

/* Encode `len` bytes of UTF-8 text. add_special: add BOS/EOS (CLS/SEP) as the
 * vocabulary asks. parse_special: text of special/added tokens becomes those
 * tokens. *ids is malloc'd (caller frees), *n its length. */
wg_status wg_tok_encode(const wg_tok_t *t, const char *text, size_t len, bool add_special,
                        bool parse_special, int32_t **ids, size_t *n);

/* Bytes of one token as it contributes to the text (byte-fallback and
 * byte-level mapping undone). Control tokens give "" unless `special`.
 * Writes at most cap bytes; returns the full length (like snprintf, no NUL). */
size_t wg_tok_piece(const wg_tok_t *t, int32_t id, bool special, char *buf, size_t cap);

/* Decode a whole id list to text (malloc'd, NUL-terminated). SPM's leading
 * space of the first token is removed when the vocabulary says so. */
wg_status wg_tok_decode(const wg_tok_t *t, const int32_t *ids, size_t n, bool special, char **text);

/* Streaming detokenizer for one sequence. */
typedef struct wg_detok wg_detok_t;
wg_detok_t *wg_detok_new(const wg_tok_t *t, bool special);
void wg_detok_free(wg_detok_t **d);
/* Push one generated id; appends the newly complete UTF-8 text to *out
 * (malloc'd, NUL-terminated, caller frees; "" when nothing is complete yet). */
wg_status wg_detok_push(wg_detok_t *d, int32_t id, char **out);
/* Emit whatever is held back at the end (invalid tails become U+FFFD). */
wg_status wg_detok_flush(wg_detok_t *d, char **out);

#endif
