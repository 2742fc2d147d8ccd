/* wg_tok_internal — the tokenizer's private layout, shared by the loaders
 * (GGUF metadata, tokenizer.json) and the algorithms.
 *
 * Design: every loader fills a wg_tok_spec_t (borrowed arrays) and calls
 * wg_tok_build(), which copies what it needs and derives the special-token
 * tables; the pre-tokenizer is compiled at the first encode. Behaviour
 * follows llama.cpp's vocab code (the conformance oracle): same defaults,
 * same special-token splitting, same merge order. Not part of the public API. */
#ifndef WG_TOK_INTERNAL_H
#define WG_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "wg_tok.h"

/* Token attribute bits (GGUF token_type 1..6 map to one bit each). */
enum {
    WG_TA_NORMAL = 1 << 0,
    WG_TA_UNKNOWN = 1 << 1,
    WG_TA_CONTROL = 1 << 2,
    WG_TA_USER = 1 << 3,   /* user-defined: split out before tokenizing */
    WG_TA_UNUSED = 1 << 4,
    WG_TA_BYTE = 1 << 5,   /* <0xNN> byte-fallback token */
    WG_TA_LSTRIP = 1 << 6, /* eat whitespace left of the token when splitting */
    WG_TA_RSTRIP = 1 << 7, /* eat whitespace right of the token when splitting */
};

#define WG_TOK_UNSET (-2) /* spec field not given: use the per-model default */

/* Everything a loader knows. Arrays are borrowed for the duration of
 * wg_tok_build(). */
typedef struct {
    wg_tok_kind_t kind;          /* SPM / BPE / WPM / RWKV */
    int32_t n_vocab;             /* number of tokens */
    const char *const *texts;    /* (n_vocab) raw token strings */
    const uint32_t *lens;        /* (n_vocab) byte lengths; NULL: strlen */
    const float *scores;         /* (n_vocab) or NULL (all 0) */
    const int32_t *types;        /* (n_vocab) GGUF token types or NULL (all normal) */
    int64_t n_merges;            /* BPE merges, rank = index */
    const char *const *merges;   /* (n_merges) "left right" */
    const uint32_t *merge_lens;  /* (n_merges) or NULL: strlen */
    const char *pre;             /* tokenizer.ggml.pre or NULL */
    const char *model_name;      /* general.name or NULL (per-model attrs) */
    const char *chat_template;   /* or NULL */
    int32_t bos, eos, eot, eom, unk, sep, pad, cls; /* ids or WG_TOK_UNSET / -1 */
    int add_bos, add_eos, add_space_prefix;      /* 0/1 or -1 = default */
    int clean_spaces;                            /* 0/1 or -1 = default */
    int32_t n_regex;             /* >0: explicit pre-tokenizer regexes (tokenizer.json) */
    const char *const *regex;    /* (n_regex) PCRE2 patterns, applied in sequence */
    bool no_regex;               /* tokenizer.json without any splitting */
    int ignore_merges;           /* BPE: 0/1 or -1 = the pre-type's default */
    bool spm_merges;             /* SPM-like (byte fallback) BPE: merge by rank, not score */
} wg_tok_spec_t;

/* Build a tokenizer from a spec. On error *out is NULL and wg_errmsg() says why. */
wg_status wg_tok_build(const wg_tok_spec_t *spec, wg_tok_t **out);

/* Regexes llama.cpp applies for a tokenizer.ggml.pre value. Sets *n and
 * returns a static array; ignore_merges, add_bos and clean_spaces receive the
 * pre-type's defaults (-1 = no opinion). WG_ERR_UNSUPPORTED for an unknown name. */
wg_status wg_tok_pre_regexes(const char *pre, const char *const **out, int32_t *n,
                             int *ignore_merges, int *add_bos, int *clean_spaces);

/* The name of built-in pre-tokenizer i (0, 1, ...), NULL past the last. */
const char *wg_tok_pre_name(size_t i);

/* The compiled (and JIT-compiled) form of a pattern that wg_tok_pre_regexes
 * returned, for matching from any thread; `index` is its place in the list,
 * for the error message. Compiled at the first call for that pattern, then
 * shared process-wide: borrowed, never freed. Thread-safe. */
wg_status wg_tok_pre_compiled(const char *pattern, int index, pcre2_code **out);

/* GPT-2 byte <-> unicode mapping. */
uint32_t wg_tok_byte_to_cp(uint8_t b);
int wg_tok_cp_to_byte(uint32_t cp); /* -1 when cp is not a mapped byte */

#endif
