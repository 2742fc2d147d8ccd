/* wg_json — JSON mode (OpenAI's response_format {"type": "json_object"}):
 * constrained decoding that only lets a sequence generate text that is, or
 * can still become, one JSON object (RFC 8259), and tells when it is whole.
 *
 * Three parts:
 * - wg_json_state_t, a byte-level recognizer: a pushdown automaton whose
 *   stack is a bit per open container (object or array), so its whole state
 *   is 16 bytes and is copied and compared as a value. Strings must be valid
 *   UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) and may
 *   not hold raw control characters; \u escapes of surrogates and of U+0000
 *   are refused (write the character itself), so every finished text is
 *   accepted by strict parsers. Bounded: containers nest at most
 *   WG_JSON_MAX_DEPTH deep, numbers have at most WG_JSON_MAX_NUM bytes, and
 *   whitespace between tokens is nothing, one space or tab, or one line
 *   break followed by at most WG_JSON_MAX_INDENT spaces or tabs (as
 *   llama.cpp's JSON grammar: no blank lines), so a sequence cannot loop on
 *   padding. The top-level value must be an object; the text is
 *   whole when it closes, and nothing may follow.
 * - wg_json_vocab_t, the model's token pieces (the bytes each token adds to
 *   the text) in a trie laid out in depth-first order with skip links, built
 *   once per vocabulary and shared read-only by every sequence and thread.
 * - wg_json_guide_t, one sequence's recognizer state plus a small cache of
 *   token masks keyed by that state. A mask is the set of tokens whose whole
 *   piece the recognizer accepts from the current state (one depth-first walk
 *   of the trie that skips every subtree whose prefix is refused); tokens
 *   with an empty piece (control tokens, end of generation) are never in it:
 *   the sequence ends when the object is whole.
 *
 * The mask depends only on the sequence's own text, so JSON mode keeps the
 * engine's batch invariance. */
#ifndef WG_JSON_H
#define WG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"

#define WG_JSON_MAX_DEPTH 64 /* nested objects / arrays */
#define WG_JSON_MAX_INDENT 32 /* spaces and tabs after a line break */
#define WG_JSON_MAX_NUM 32   /* bytes of one number */

/* Recognizer state: a value type (copy, compare with memcmp). */
typedef struct {
    uint64_t stack; /* bit d: the container at depth d+1 is an object (1) or an array (0) */
    uint8_t depth;  /* open containers */
    uint8_t mode;   /* what may come next (internal) */
    uint8_t sub;    /* position in a whitespace run, string escape, number or literal */
    uint8_t cnt;    /* indentation / number length so far */
    uint8_t u8n;    /* UTF-8 continuation bytes still expected in a string */
    uint8_t u8r;    /* range of the next one; flags of a \u escape */
    uint8_t key;    /* the string being read is an object key */
    uint8_t lit;    /* which literal (true / false / null) */
} wg_json_state_t;

/* The state before any byte. */
void wg_json_init(wg_json_state_t *s);
/* Feed bytes; false (state unspecified) at the first byte that no JSON
 * object text can have there. */
bool wg_json_feed(wg_json_state_t *s, const char *p, size_t n);
/* The object is complete. */
bool wg_json_done(const wg_json_state_t *s);

/* The bytes token `id` adds to the text, as the detokenizer emits them:
 * writes at most cap bytes to buf, returns the full length (0 for control
 * tokens). */
typedef size_t (*wg_json_piece_fn)(void *ctx, int32_t id, char *buf, size_t cap);

typedef struct wg_json_vocab wg_json_vocab_t;
/* Trie of the n_vocab tokens' pieces into *out. WG_ERR_NOMEM, or
 * WG_ERR_UNSUPPORTED naming the byte when the vocabulary cannot spell every
 * JSON text: it needs a token of exactly one byte for each printable ASCII
 * character, tab, newline and carriage return (byte-level BPE and
 * byte-fallback vocabularies have them). */
wg_status wg_json_vocab_new(int32_t n_vocab, wg_json_piece_fn piece, void *ctx, wg_json_vocab_t **out);
void wg_json_vocab_free(wg_json_vocab_t **v);
/* Trie nodes (for tests and memory reports). */
size_t wg_json_vocab_nodes(const wg_json_vocab_t *v);

typedef struct wg_json_guide wg_json_guide_t;
/* A guide at the start of a text over `v` (borrowed; must outlive it). */
wg_json_guide_t *wg_json_guide_new(const wg_json_vocab_t *v);
void wg_json_guide_free(wg_json_guide_t **g);
/* Set logits[i] = -inf for every token that cannot come next; returns how
 * many can (0: none, the caller must not sample). */
int32_t wg_json_guide_mask(wg_json_guide_t *g, float *logits);
/* Whether token `id` can come next (no mask built). */
bool wg_json_guide_allows(const wg_json_guide_t *g, int32_t id);
/* Advance over token `id`; WG_ERR_INVAL naming the token when it cannot come
 * next (the state is then unchanged). */
wg_status wg_json_guide_accept(wg_json_guide_t *g, int32_t id);
bool wg_json_guide_done(const wg_json_guide_t *g);
/* Masks built so far and masks served from the cache (statistics). */
void wg_json_guide_counts(const wg_json_guide_t *g, int64_t *built, int64_t *reused);

#endif
