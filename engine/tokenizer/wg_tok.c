/* wg_tok — tokenizer core: vocabulary tables, special-token splitting,
 * SentencePiece-BPE, byte-level BPE, RWKV trie, WordPiece, detokenization.
 *
 * Design: the vocabulary and the merges live in open-addressing hash maps
 * keyed by byte strings; merges run over a linked list of symbols with a
 * binary heap of candidate pairs (stale entries are skipped when popped), so
 * a word of n symbols costs O(n log n), never a rescan per merge. The
 * behaviour (defaults, special-token splitting order, tie-breaking) follows
 * llama.cpp, the reference the conformance corpus was produced with. */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "wg_tok_internal.h"

/* ---------------------------------------------------------------- buffers */

typedef struct {
    int32_t *v;    /* ids */
    size_t n;      /* used */
    size_t cap;    /* allocated */
    bool oom;      /* an allocation failed */
    bool unspelt;  /* text no token spells and no unknown token stands for */
} s_ids_t;

static void s_ids_push(s_ids_t *a, int32_t id) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) {
            a->oom = true;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
}

typedef struct {
    char *p;       /* bytes (NUL-terminated when finished) */
    size_t n;      /* used */
    size_t cap;    /* allocated */
    bool oom;      /* an allocation failed */
} s_buf_t;

static void s_buf_add(s_buf_t *b, const void *src, size_t n) {
    if (b->oom) return;
    if (n >= SIZE_MAX / 2 - b->n) { /* also tells gcc -O3 the sizes below cannot wrap */
        b->oom = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* ---------------------------------------------------------------- hash map */

/* Byte string -> int32, open addressing, linear probing. Keys are borrowed
 * (they point into storage owned by the tokenizer). */
typedef struct {
    const char *key;  /* borrowed bytes, NULL = empty slot */
    uint32_t len;     /* key length */
    int32_t val;      /* value */
} s_slot_t;

typedef struct {
    s_slot_t *slots;  /* (cap) */
    size_t cap;       /* power of two */
    size_t n;         /* used */
} s_map_t;

static uint64_t s_hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool s_map_init(s_map_t *m, size_t n_expected) {
    size_t cap = 16;
    while (cap < n_expected * 2 + 16) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = cap;
    m->n = 0;
    return m->slots != NULL;
}

static s_slot_t *s_map_find_slot(const s_map_t *m, const char *k, size_t n) {
    size_t i = s_hash(k, n) & (m->cap - 1);
    for (;;) {
        s_slot_t *s = &m->slots[i];
        if (!s->key || (s->len == n && memcmp(s->key, k, n) == 0)) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

/* Insert or overwrite (last write wins, like llama.cpp's token_to_id). The
 * map is sized up front, so it never fills. */
static void s_map_put(s_map_t *m, const char *k, size_t n, int32_t v) {
    s_slot_t *s = s_map_find_slot(m, k, n);
    if (!s->key) {
        s->key = k;
        s->len = (uint32_t)n;
        m->n++;
    }
    s->val = v;
}

/* Insert only if absent (first write wins). */
static void s_map_put_first(s_map_t *m, const char *k, size_t n, int32_t v) {
    s_slot_t *s = s_map_find_slot(m, k, n);
    if (!s->key) {
        s->key = k;
        s->len = (uint32_t)n;
        s->val = v;
        m->n++;
    }
}

static int32_t s_map_get(const s_map_t *m, const char *k, size_t n) {
    if (!m->slots) return -1;
    const s_slot_t *s = s_map_find_slot(m, k, n);
    return s->key ? s->val : -1;
}

/* ---------------------------------------------------------------- the type */

#define WG_MAX_REGEX 8

struct wg_tok {
    wg_tok_kind_t kind;        /* algorithm */
    int32_t n_vocab;           /* tokens */
    char **text;               /* (n_vocab) raw strings, NUL-terminated, in text_arena */
    char *text_arena;          /* every token text, back to back */
    uint32_t *len;             /* (n_vocab) byte lengths */
    float *score;              /* (n_vocab) SPM scores */
    uint8_t *attr;             /* (n_vocab) WG_TA_* bits */
    uint8_t *eog;              /* (n_vocab) 1 = ends generation */
    char **piece;              /* (n_vocab) bytes a token contributes (special form), in piece_arena */
    char *piece_arena;         /* every piece, back to back */
    uint32_t *piece_len;       /* (n_vocab) */
    s_map_t vocab;             /* text -> id */
    s_map_t merges;            /* "left right" -> rank (BPE) */
    char **merge_text;         /* (n_merges) merge strings, in merge_arena */
    char *merge_arena;         /* every merge string, back to back */
    int64_t n_merges;          /* merges */
    int32_t byte_id[256];      /* SPM: <0xNN>, BPE: mapped char; -1 none */
    char byte_utf8[256][3];    /* BPE: GPT-2 mapped char of each byte */
    uint8_t byte_utf8_len[256];/* its length */
    int32_t bos, eos, eot, eom, unk, sep, pad, cls; /* special ids, -1 none */
    bool add_bos, add_eos;     /* add_special rules */
    bool add_space_prefix;     /* SPM: "▁" before the first text fragment */
    bool ignore_merges;        /* BPE: a whole word in the vocab is one token */
    bool clean_spaces;         /* decode: HF clean_up_tokenization_spaces */
    bool spm_merges;           /* SPM text handling, but pairs ranked by merges */
    int32_t *special;          /* ids split out before tokenizing, longest first */
    int32_t n_special;         /* count */
    s_map_t special_trie;      /* (node<<8|byte) as 5-byte key -> child node */
    int32_t *trie_tok;         /* (n_trie) special index ending at node or -1 */
    int32_t n_trie;            /* trie nodes */
    int32_t max_special_len;   /* longest special text */
    char *trie_keys;           /* (n_trie * 5) key storage for special_trie */
    /* BPE pre-tokenizer, applied in sequence. Ready for matching only after
     * s_re_prepare (the first encode): the one part of a wg_tok_t written
     * after creation, under re_mu. */
    pcre2_code *re[WG_MAX_REGEX]; /* compiled patterns (NULL until prepared when re_builtin) */
    const char *re_src[WG_MAX_REGEX]; /* re_builtin: the patterns (static strings) */
    int32_t n_re;              /* count */
    bool re_builtin;           /* re[] are borrowed from wg_tok_pre_compiled; else owned, JIT-compiled when prepared */
    atomic_bool re_ready;      /* re[] can be matched (release/acquire) */
    pthread_mutex_t re_mu;     /* serialises preparing re[] */
    /* RWKV: byte trie over unescaped tokens */
    s_map_t rwkv_trie;         /* node/byte key -> child */
    char *rwkv_keys;           /* key storage */
    int32_t *rwkv_tok;         /* (nodes) token id ending at node or -1 */
    int32_t rwkv_nodes;        /* node count */
    int32_t max_len;           /* longest token text (WordPiece search) */
    char *chat_template;       /* or NULL */
};

/* Text the vocabulary cannot spell becomes its unknown token; a vocabulary
 * without one (a hostile or cut-down file: real ones have byte tokens or an
 * unknown token) cannot encode it, which fails the encode instead of handing
 * id -1 to the model. */
static void s_ids_push_unk(const wg_tok_t *t, s_ids_t *a) {
    if (t->unk >= 0) s_ids_push(a, t->unk);
    else a->unspelt = true;
}

/* ------------------------------------------------------------ UTF-8 helper */

/* Length of the UTF-8 sequence that starts with byte c, as llama.cpp counts it
 * (continuation and invalid lead bytes count as one). */
static size_t s_utf8_len(uint8_t c) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

static size_t s_put_utf8(char *out, uint32_t cp) {
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* ------------------------------------------------------------------ tries */

static void s_trie_key(char *k, int32_t node, uint8_t b) {
    memcpy(k, &node, 4);
    k[4] = (char)b;
}

/* ----------------------------------------------------------- free/getters */

void wg_tok_free(wg_tok_t **pt) {
    if (!pt || !*pt) return;
    wg_tok_t *t = *pt;
    free(t->text_arena);
    free(t->piece_arena);
    free(t->merge_arena);
    free(t->text);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->eog);
    free(t->piece);
    free(t->piece_len);
    free(t->vocab.slots);
    free(t->merges.slots);
    free(t->merge_text);
    free(t->special);
    free(t->special_trie.slots);
    free(t->trie_tok);
    free(t->trie_keys);
    if (!t->re_builtin)
        for (int32_t i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    pthread_mutex_destroy(&t->re_mu);
    free(t->rwkv_trie.slots);
    free(t->rwkv_keys);
    free(t->rwkv_tok);
    free(t->chat_template);
    free(t);
    *pt = NULL;
}

wg_tok_kind_t wg_tok_kind(const wg_tok_t *t) { return t->kind; }
int32_t wg_tok_n_vocab(const wg_tok_t *t) { return t->n_vocab; }
int32_t wg_tok_bos(const wg_tok_t *t) { return t->bos; }
int32_t wg_tok_eos(const wg_tok_t *t) { return t->eos; }
bool wg_tok_add_bos(const wg_tok_t *t) { return t->add_bos && t->bos >= 0; }
bool wg_tok_add_eos(const wg_tok_t *t) { return t->add_eos && t->eos >= 0; }

bool wg_tok_is_eog(const wg_tok_t *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

bool wg_tok_is_control(const wg_tok_t *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & WG_TA_CONTROL);
}

int32_t wg_tok_lookup(const wg_tok_t *t, const char *text, size_t len) {
    return s_map_get(&t->vocab, text, len);
}

const char *wg_tok_text(const wg_tok_t *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? t->text[id] : NULL;
}

const char *wg_tok_chat_template(const wg_tok_t *t) { return t->chat_template; }

/* ------------------------------------------------------------------ build */

static const char *const s_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|return|>", "<|call|>", "<|end_of_text|>", "<end_of_utterance>",
};
static const char *const s_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "_<EOT>", "<｜end▁of▁sentence｜>",
};

/* RWKV vocab strings are escaped (\t \n \r \xNN \\ ...); undo it. */
static size_t s_rwkv_unescape(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            if (e == 't') out[o++] = '\t';
            else if (e == 'n') out[o++] = '\n';
            else if (e == 'r') out[o++] = '\r';
            else if (e == 'x') {
                unsigned v = 0;
                for (int k = 0; k < 2 && i + 1 < n; k++) {
                    char h = s[++i];
                    v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
                }
                out[o++] = (char)v;
            } else out[o++] = e;
        } else {
            out[o++] = c;
        }
    }
    return o;
}

static int s_cmp_special_len_desc(const void *a, const void *b, void *arg) {
    const wg_tok_t *t = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static bool s_contains_ci(const char *hay, const char *needle) {
    if (!hay) return false;
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0) return true;
    return false;
}

static int s_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends token id's piece plus a NUL to b (one buffer for the whole
 * vocabulary: a malloc per token made loading slow); *off gets its start. */
static wg_status s_build_piece(wg_tok_t *t, int32_t id, s_buf_t *b, size_t *off) {
    const size_t start = b->n;
    const char *s = t->text[id];
    size_t n = t->len[id];
    uint8_t a = t->attr[id];
    if (t->kind == WG_TOK_RWKV) {
        char *tmp = malloc(n + 1);
        if (!tmp) return wg_error(WG_ERR_NOMEM, "tokenizer piece");
        size_t m = s_rwkv_unescape(s, n, tmp);
        s_buf_add(b, tmp, m);
        free(tmp);
    } else if (a & (WG_TA_UNKNOWN | WG_TA_CONTROL | WG_TA_USER)) {
        s_buf_add(b, s, n);
    } else if (t->kind == WG_TOK_BPE && (a & WG_TA_NORMAL)) {
        utf8proc_int32_t cp;
        size_t i = 0;
        while (i < n) {
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
            if (k <= 0) {
                s_buf_add(b, s + i, 1);
                i++;
                continue;
            }
            int byte = wg_tok_cp_to_byte((uint32_t)cp);
            if (byte >= 0) {
                char c = (char)byte;
                s_buf_add(b, &c, 1);
            } else {
                s_buf_add(b, s + i, (size_t)k);
            }
            i += (size_t)k;
        }
    } else if (a & WG_TA_BYTE) {
        int hi, lo;
        char c;
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && (hi = s_hex(s[3])) >= 0 && (lo = s_hex(s[4])) >= 0)
            c = (char)(hi << 4 | lo); /* the usual "<0xNN>", without strtol's locale work */
        else
            c = (char)strtol(s + 3, NULL, 16);
        s_buf_add(b, &c, 1);
    } else if (a & WG_TA_NORMAL) {
        /* SPM / WPM: "▁" stands for a space; the runs between are copied whole */
        size_t i = 0;
        while (i < n) {
            const char *u = memchr(s + i, 0xe2, n - i);
            size_t run = u ? (size_t)(u - s) - i : n - i;
            if (run) s_buf_add(b, s + i, run);
            i += run;
            if (i == n) break;
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                s_buf_add(b, " ", 1);
                i += 3;
            } else {
                s_buf_add(b, s + i, 1);
                i++;
            }
        }
    }
    const size_t len = b->n - start;
    s_buf_add(b, "", 1); /* the terminator is part of the arena */
    if (b->oom) return wg_error(WG_ERR_NOMEM, "tokenizer piece");
    *off = start;
    t->piece_len[id] = (uint32_t)len;
    return WG_OK;
}

static wg_status s_build_trie(s_map_t *m, char **keys, int32_t **tok, int32_t *n_nodes, size_t total_bytes,
                              int32_t count, const wg_tok_t *t, const int32_t *ids, bool rwkv) {
    size_t max_nodes = total_bytes + 1;
    if (!s_map_init(m, max_nodes)) return wg_error(WG_ERR_NOMEM, "tokenizer trie");
    *keys = malloc(max_nodes * 5);
    *tok = malloc(max_nodes * sizeof(int32_t));
    if (!*keys || !*tok) return wg_error(WG_ERR_NOMEM, "tokenizer trie");
    (*tok)[0] = -1;
    int32_t nodes = 1;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (int32_t i = 0; i < count; i++) {
        int32_t id = ids ? ids[i] : i;
        const char *s = t->text[id];
        size_t n = t->len[id];
        if (rwkv) {
            if (tmp_cap < n + 1) {
                free(tmp);
                tmp_cap = n + 1;
                tmp = malloc(tmp_cap);
                if (!tmp) return wg_error(WG_ERR_NOMEM, "tokenizer trie");
            }
            n = s_rwkv_unescape(s, n, tmp);
            s = tmp;
        }
        int32_t node = 0;
        for (size_t k = 0; k < n; k++) {
            char key[5];
            s_trie_key(key, node, (uint8_t)s[k]);
            int32_t child = s_map_get(m, key, 5);
            if (child < 0) {
                child = nodes++;
                (*tok)[child] = -1;
                char *kp = *keys + (size_t)child * 5;
                memcpy(kp, key, 5);
                s_map_put(m, kp, 5, child);
            }
            node = child;
        }
        if (n > 0) (*tok)[node] = ids ? i : id; /* later entries overwrite: last write wins */
    }
    free(tmp);
    *n_nodes = nodes;
    return WG_OK;
}

wg_status wg_tok_build(const wg_tok_spec_t *sp, wg_tok_t **out) {
    *out = NULL;
    if (sp->n_vocab <= 0) return wg_error(WG_ERR_FORMAT, "tokenizer: n_vocab=%d", sp->n_vocab);
    wg_status st = WG_OK;
    wg_tok_t *t = calloc(1, sizeof *t);
    if (!t) return wg_error(WG_ERR_NOMEM, "tokenizer");
    pthread_mutex_init(&t->re_mu, NULL);
    atomic_init(&t->re_ready, false);
    int32_t n = sp->n_vocab;
    t->kind = sp->kind;
    t->n_vocab = n;
    t->text = calloc((size_t)n, sizeof *t->text);
    t->len = calloc((size_t)n, sizeof *t->len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->attr = calloc((size_t)n, 1);
    t->eog = calloc((size_t)n, 1);
    t->piece = calloc((size_t)n, sizeof *t->piece);
    t->piece_len = calloc((size_t)n, sizeof *t->piece_len);
    if (!t->text || !t->len || !t->score || !t->attr || !t->eog || !t->piece || !t->piece_len ||
        !s_map_init(&t->vocab, (size_t)n)) {
        st = wg_error(WG_ERR_NOMEM, "tokenizer: %d tokens", n);
        goto err;
    }
    size_t total_bytes = 0, arena = 0;
    for (int32_t i = 0; i < n; i++) {
        if (!sp->texts[i]) {
            st = wg_error(WG_ERR_FORMAT, "tokenizer.ggml.tokens[%d]: missing", i);
            goto err;
        }
        const size_t len = sp->lens ? sp->lens[i] : strlen(sp->texts[i]);
        arena += (len ? len : 32) + 1;
    }
    if (!(t->text_arena = malloc(arena))) {
        st = wg_error(WG_ERR_NOMEM, "tokenizer: %zu bytes of token text", arena);
        goto err;
    }
    char *tp = t->text_arena;
    for (int32_t i = 0; i < n; i++) {
        const char *s = sp->texts[i];
        size_t len = sp->lens ? sp->lens[i] : strlen(s);
        char tmp[32];
        if (len == 0) { /* llama.cpp renames empty tokens so they stay unique */
            len = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%d]", i);
            s = tmp;
        }
        t->text[i] = tp;
        memcpy(tp, s, len);
        tp[len] = 0;
        tp += len + 1;
        t->len[i] = (uint32_t)len;
        total_bytes += len;
        if ((int32_t)len > t->max_len) t->max_len = (int32_t)len;
        t->score[i] = sp->scores ? sp->scores[i] : 0.0f;
        uint8_t a = WG_TA_NORMAL;
        if (sp->types) {
            switch (sp->types[i]) {
            case 1: a = WG_TA_NORMAL; break;
            case 2: a = WG_TA_UNKNOWN; break;
            case 3: a = WG_TA_CONTROL; break;
            case 4: a = WG_TA_USER; break;
            case 5: a = WG_TA_UNUSED; break;
            case 6: a = WG_TA_BYTE; break;
            default: a = 0; break;
            }
        }
        t->attr[i] = a;
        s_map_put(&t->vocab, t->text[i], len, i);
    }

    /* per-kind defaults (llama.cpp's) */
    int32_t d_bos = -1, d_eos = -1, d_unk = -1, d_sep = -1, d_pad = -1, d_cls = -1;
    bool d_add_bos = false, d_add_eos = false, d_space = false, d_clean = false;
    switch (t->kind) {
    case WG_TOK_SPM: d_bos = 1; d_eos = 2; d_unk = 0; d_add_bos = true; d_space = true; break;
    case WG_TOK_WPM: d_bos = 101; d_unk = 100; d_sep = 102; d_pad = 0; d_cls = 101; d_add_bos = true; d_clean = true; break;
    case WG_TOK_BPE: d_bos = 11; d_eos = 11; d_clean = true; break;
    case WG_TOK_RWKV: break;
    }
    t->spm_merges = t->kind == WG_TOK_SPM && sp->spm_merges;
    if (t->kind == WG_TOK_BPE) {
        const char *const *re = sp->regex;
        int32_t nre = sp->n_regex;
        int im = -1, ab = -1, cs = -1;
        if (nre <= 0 && !sp->no_regex) {
            st = wg_tok_pre_regexes(sp->pre, &re, &nre, &im, &ab, &cs);
            if (st != WG_OK) goto err;
            t->re_builtin = true;
        }
        if (sp->no_regex) nre = 0;
        if (nre > WG_MAX_REGEX) {
            st = wg_error(WG_ERR_UNSUPPORTED, "tokenizer: %d pre-tokenizer regexes (max %d)", nre, WG_MAX_REGEX);
            goto err;
        }
        /* Built-in patterns are only noted: s_re_prepare fetches them compiled
         * at the first encode. A tokenizer.json's own patterns are compiled
         * now, so a bad one fails the load; their JIT compile waits too. */
        for (int32_t i = 0; i < nre; i++) {
            if (t->re_builtin) {
                t->re_src[i] = re[i];
                t->n_re = i + 1;
                continue;
            }
            int ec;
            PCRE2_SIZE eo;
            t->re[i] = pcre2_compile((PCRE2_SPTR)re[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
            if (!t->re[i]) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(ec, msg, sizeof msg);
                st = wg_error(WG_ERR_FORMAT, "tokenizer: pre-tokenizer regex %d at offset %zu: %s", i,
                              (size_t)eo, (const char *)msg);
                goto err;
            }
            t->n_re = i + 1;
        }
        if (im == 1) t->ignore_merges = true;
        if (sp->ignore_merges >= 0) t->ignore_merges = sp->ignore_merges;
        if (ab == 1) d_add_bos = true;
        if (cs == 0) d_clean = false;
    }
    if (t->kind == WG_TOK_BPE || t->spm_merges) {
        /* merges */
        t->n_merges = sp->n_merges;
        if (sp->n_merges > 0) {
            t->merge_text = calloc((size_t)sp->n_merges, sizeof *t->merge_text);
            if (!t->merge_text || !s_map_init(&t->merges, (size_t)sp->n_merges)) {
                st = wg_error(WG_ERR_NOMEM, "tokenizer: %lld merges", (long long)sp->n_merges);
                goto err;
            }
            size_t marena = 0;
            for (int64_t i = 0; i < sp->n_merges; i++) {
                const char *m = sp->merges[i];
                marena += (m ? (sp->merge_lens ? sp->merge_lens[i] : strlen(m)) : 0) + 1;
            }
            if (!(t->merge_arena = malloc(marena))) {
                st = wg_error(WG_ERR_NOMEM, "tokenizer: %zu bytes of merges", marena);
                goto err;
            }
            char *mp = t->merge_arena;
            for (int64_t i = 0; i < sp->n_merges; i++) {
                const char *m = sp->merges[i];
                size_t ml = m ? (sp->merge_lens ? sp->merge_lens[i] : strlen(m)) : 0;
                t->merge_text[i] = mp;
                mp += ml + 1;
                if (ml) memcpy(t->merge_text[i], m, ml);
                t->merge_text[i][ml] = 0;
                const char *sep = ml > 1 ? memchr(t->merge_text[i] + 1, ' ', ml - 1) : NULL;
                if (!sep) continue; /* llama.cpp keeps an unusable ("","") entry; skip it */
                s_map_put_first(&t->merges, t->merge_text[i], ml, (int32_t)i);
            }
        }
    }
    if (t->kind == WG_TOK_SPM && !t->spm_merges && sp->n_merges > 0) {
        st = wg_error(WG_ERR_INVAL, "tokenizer: merges given for an SPM vocabulary");
        goto err;
    }

#define PICK(field, dflt) t->field = (sp->field == WG_TOK_UNSET) ? (dflt) : sp->field
    PICK(bos, d_bos);
    PICK(eos, d_eos);
    PICK(unk, d_unk);
    PICK(sep, d_sep);
    PICK(pad, d_pad);
    PICK(cls, d_cls);
    PICK(eot, -1);
    PICK(eom, -1);
#undef PICK
    int32_t *ids[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad, &t->cls, &t->eot, &t->eom};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= n || *ids[i] < -1) *ids[i] = -1;
    t->add_bos = sp->add_bos >= 0 ? sp->add_bos : d_add_bos;
    t->add_eos = sp->add_eos >= 0 ? sp->add_eos : d_add_eos;
    t->add_space_prefix = sp->add_space_prefix >= 0 ? sp->add_space_prefix : d_space;
    t->clean_spaces = sp->clean_spaces >= 0 ? sp->clean_spaces : d_clean;
    if (sp->chat_template) {
        t->chat_template = strdup(sp->chat_template);
        if (!t->chat_template) {
            st = wg_error(WG_ERR_NOMEM, "tokenizer chat template");
            goto err;
        }
    }

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        if (t->kind == WG_TOK_SPM) {
            static const char digits[] = "0123456789ABCDEF";
            const char hex[6] = {'<', '0', 'x', digits[b >> 4], digits[b & 15], '>'};
            int32_t id = s_map_get(&t->vocab, hex, 6);
            if (id < 0) {
                char c = (char)b;
                id = s_map_get(&t->vocab, &c, 1);
            }
            t->byte_id[b] = id;
        } else {
            uint32_t cp = wg_tok_byte_to_cp((uint8_t)b);
            t->byte_utf8_len[b] = (uint8_t)s_put_utf8(t->byte_utf8[b], cp);
            t->byte_id[b] = s_map_get(&t->vocab, t->byte_utf8[b], t->byte_utf8_len[b]);
        }
    }

    /* EOT / EOG by text (llama.cpp's workaround for missing metadata); such
     * tokens are forced to control type. */
    for (size_t k = 0; k < sizeof s_eot_texts / sizeof s_eot_texts[0] && t->eot < 0; k++) {
        int32_t id = s_map_get(&t->vocab, s_eot_texts[k], strlen(s_eot_texts[k]));
        if (id >= 0) {
            t->eot = id;
            t->attr[id] |= WG_TA_CONTROL;
        }
    }
    if (t->eom < 0) {
        int32_t id = s_map_get(&t->vocab, "<|eom_id|>", 10);
        if (id >= 0) {
            t->eom = id;
            t->attr[id] |= WG_TA_CONTROL;
        }
    }
    for (size_t k = 0; k < sizeof s_eog_texts / sizeof s_eog_texts[0]; k++) {
        int32_t id = s_map_get(&t->vocab, s_eog_texts[k], strlen(s_eog_texts[k]));
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= WG_TA_CONTROL;
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;

    /* special tokens, longest text first */
    t->special = malloc((size_t)n * sizeof *t->special);
    if (!t->special) {
        st = wg_error(WG_ERR_NOMEM, "tokenizer specials");
        goto err;
    }
    size_t special_bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        if (t->attr[i] & (WG_TA_CONTROL | WG_TA_USER | WG_TA_UNKNOWN)) {
            t->special[t->n_special++] = i;
            special_bytes += t->len[i];
            if ((int32_t)t->len[i] > t->max_special_len) t->max_special_len = (int32_t)t->len[i];
        }
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, s_cmp_special_len_desc, t);
    if (s_contains_ci(sp->model_name, "phi-3") || s_contains_ci(sp->model_name, "phi3")) {
        for (int32_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= WG_TA_RSTRIP;
        const char *on[] = {"</s>"}, *off[] = {"<unk>", "<s>", "<|endoftext|>"};
        int32_t id = s_map_get(&t->vocab, on[0], strlen(on[0]));
        if (id >= 0) t->attr[id] |= WG_TA_RSTRIP;
        for (size_t k = 0; k < 3; k++) {
            id = s_map_get(&t->vocab, off[k], strlen(off[k]));
            if (id >= 0) t->attr[id] &= (uint8_t)~WG_TA_RSTRIP;
        }
    }
    st = s_build_trie(&t->special_trie, &t->trie_keys, &t->trie_tok, &t->n_trie, special_bytes, t->n_special,
                      t, t->special, false);
    if (st != WG_OK) goto err;

    if (t->kind == WG_TOK_RWKV) {
        st = s_build_trie(&t->rwkv_trie, &t->rwkv_keys, &t->rwkv_tok, &t->rwkv_nodes, total_bytes, n, t, NULL,
                          true);
        if (st != WG_OK) goto err;
    }

    {
        /* A piece is never longer than its text: one arena of that size. */
        s_buf_t pb = {.p = malloc(arena + 1), .cap = arena + 1};
        if (!pb.p) pb.oom = true;
        size_t *offs = malloc((size_t)n * sizeof *offs);
        for (int32_t i = 0; i < n && !st && offs && !pb.oom; i++) st = s_build_piece(t, i, &pb, &offs[i]);
        if (!st && (!offs || pb.oom)) st = wg_error(WG_ERR_NOMEM, "tokenizer pieces");
        t->piece_arena = pb.p;
        if (!st)
            for (int32_t i = 0; i < n; i++) t->piece[i] = pb.p + offs[i];
        free(offs);
        if (st != WG_OK) goto err;
    }
    *out = t;
    return WG_OK;
err:
    wg_tok_free(&t);
    return st;
}

/* ------------------------------------------------------- merge machinery */

typedef struct {
    int32_t prev, next;  /* neighbours in the symbol list, -1 = none */
    uint32_t off, n;     /* byte span in the working text; n = 0: merged away */
} s_sym_t;

typedef struct {
    double key;          /* higher merges first (SPM score, or -rank) */
    int32_t left, right; /* symbol indices */
    uint32_t size;       /* bytes of the pair when queued (stale check) */
} s_pair_t;

typedef struct {
    s_pair_t *v;  /* binary max-heap */
    size_t n;     /* used */
    size_t cap;   /* allocated */
    bool oom;     /* allocation failed */
} s_heap_t;

static bool s_pair_better(const s_pair_t *a, const s_pair_t *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static void s_heap_push(s_heap_t *h, s_pair_t p) {
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        s_pair_t *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) {
            h->oom = true;
            return;
        }
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_pair_better(&p, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = p;
}

static s_pair_t s_heap_pop(s_heap_t *h) {
    s_pair_t top = h->v[0];
    s_pair_t last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && s_pair_better(&h->v[c + 1], &h->v[c])) c++;
        if (!s_pair_better(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    const wg_tok_t *t;   /* tokenizer */
    const char *text;    /* working text */
    s_sym_t *sym;        /* symbols */
    size_t n_sym;        /* count */
    s_heap_t heap;       /* candidate pairs */
    s_buf_t scratch;     /* BPE merge key "left right" */
} s_merger_t;

static void s_try_pair(s_merger_t *m, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const s_sym_t *a = &m->sym[l], *b = &m->sym[r];
    s_pair_t p = {0, l, r, a->n + b->n};
    if (m->t->kind == WG_TOK_SPM && !m->t->spm_merges) {
        int32_t id = s_map_get(&m->t->vocab, m->text + a->off, a->n + b->n);
        if (id < 0) return;
        p.key = m->t->score[id];
    } else {
        m->scratch.n = 0;
        s_buf_add(&m->scratch, m->text + a->off, a->n);
        s_buf_add(&m->scratch, " ", 1);
        s_buf_add(&m->scratch, m->text + b->off, b->n);
        if (m->scratch.oom) return;
        int32_t rank = s_map_get(&m->t->merges, m->scratch.p, m->scratch.n);
        if (rank < 0) return;
        p.key = -(double)rank;
    }
    s_heap_push(&m->heap, p);
}

/* Split `text` into UTF-8 characters and merge pairs until none applies. */
static bool s_merge(s_merger_t *m, const char *text, size_t len) {
    m->text = text;
    m->n_sym = 0;
    m->heap.n = 0;
    if (len == 0) return true;
    s_sym_t *ns = realloc(m->sym, len * sizeof *ns);
    if (!ns) return false;
    m->sym = ns;
    size_t off = 0;
    while (off < len) {
        size_t cl = s_utf8_len((uint8_t)text[off]);
        if (cl > len - off) cl = len - off;
        s_sym_t *s = &m->sym[m->n_sym];
        s->off = (uint32_t)off;
        s->n = (uint32_t)cl;
        s->prev = (int32_t)m->n_sym - 1;
        off += cl;
        s->next = off == len ? -1 : (int32_t)m->n_sym + 1;
        m->n_sym++;
    }
    for (size_t i = 1; i < m->n_sym; i++) s_try_pair(m, (int32_t)i - 1, (int32_t)i);
    while (m->heap.n) {
        s_pair_t p = s_heap_pop(&m->heap);
        s_sym_t *a = &m->sym[p.left], *b = &m->sym[p.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != p.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) m->sym[b->next].prev = p.left;
        s_try_pair(m, a->prev, p.left);
        s_try_pair(m, p.left, a->next);
    }
    return !m->heap.oom && !m->scratch.oom;
}

/* ------------------------------------------------------------ SPM encode */

static bool s_spm_encode(const wg_tok_t *t, s_merger_t *m, const char *frag, size_t len, bool prefix,
                         s_ids_t *out) {
    s_buf_t w = {0};
    if (prefix) s_buf_add(&w, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < len; i++) {
        if (frag[i] == ' ') s_buf_add(&w, "\xe2\x96\x81", 3);
        else s_buf_add(&w, frag + i, 1);
    }
    if (w.oom) return false;
    bool ok = s_merge(m, w.p, w.n);
    if (ok && m->n_sym) {
        for (int32_t i = 0; i != -1; i = m->sym[i].next) {
            const s_sym_t *s = &m->sym[i];
            int32_t id = s_map_get(&t->vocab, w.p + s->off, s->n);
            if (id >= 0) {
                s_ids_push(out, id);
                continue;
            }
            for (uint32_t k = 0; k < s->n; k++) {
                int32_t bid = t->byte_id[(uint8_t)w.p[s->off + k]];
                if (bid >= 0) s_ids_push(out, bid);
                else s_ids_push_unk(t, out);
            }
        }
    }
    free(w.p);
    return ok;
}

/* ------------------------------------------------------------ BPE encode */

typedef struct {
    size_t off, len;  /* byte span of a pre-token in the sanitized text */
} s_span_t;

typedef struct {
    s_span_t *v;  /* spans */
    size_t n;     /* used */
    size_t cap;   /* allocated */
    bool oom;     /* allocation failed */
} s_spans_t;

static void s_spans_push(s_spans_t *a, size_t off, size_t len) {
    if (a->oom || len == 0) return;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        s_span_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) {
            a->oom = true;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n].off = off;
    a->v[a->n].len = len;
    a->n++;
}

/* Replace invalid UTF-8 by U+FFFD (as llama.cpp's code-point decoder does),
 * so PCRE2 can match in UTF mode. */
static bool s_sanitize_utf8(const char *s, size_t n, s_buf_t *out) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) {
            s_buf_add(out, "\xef\xbf\xbd", 3);
            i++;
        } else {
            s_buf_add(out, s + i, (size_t)k);
            i += (size_t)k;
        }
    }
    return !out->oom;
}

static bool s_bpe_split(const wg_tok_t *t, const char *text, size_t len, s_spans_t *spans) {
    spans->n = 0;
    s_spans_push(spans, 0, len);
    for (int32_t r = 0; r < t->n_re; r++) {
        s_spans_t next = {0};
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re[r], NULL);
        if (!md) return false;
        for (size_t i = 0; i < spans->n; i++) {
            const char *sub = text + spans->v[i].off;
            size_t sl = spans->v[i].len, start = 0, pos = 0;
            while (pos <= sl) {
                int rc = pcre2_match(t->re[r], (PCRE2_SPTR)sub, sl, pos, PCRE2_NO_UTF_CHECK, md, NULL);
                if (rc < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me == ms) { /* empty match: step one character */
                    if (ms >= sl) break;
                    pos = ms + s_utf8_len((uint8_t)sub[ms]);
                    continue;
                }
                if (ms > start) s_spans_push(&next, spans->v[i].off + start, ms - start);
                s_spans_push(&next, spans->v[i].off + ms, me - ms);
                start = pos = me;
            }
            if (start < sl) s_spans_push(&next, spans->v[i].off + start, sl - start);
        }
        pcre2_match_data_free(md);
        free(spans->v);
        *spans = next;
        if (spans->oom) return false;
    }
    return true;
}

static bool s_bpe_encode(const wg_tok_t *t, s_merger_t *m, const char *frag, size_t len, s_ids_t *out) {
    s_buf_t clean = {0}, w = {0};
    s_spans_t spans = {0};
    bool ok = s_sanitize_utf8(frag, len, &clean);
    if (ok && clean.n) ok = s_bpe_split(t, clean.p, clean.n, &spans);
    for (size_t i = 0; ok && i < spans.n; i++) {
        w.n = 0;
        const uint8_t *word = (const uint8_t *)clean.p + spans.v[i].off;
        for (size_t k = 0; k < spans.v[i].len; k++) s_buf_add(&w, t->byte_utf8[word[k]], t->byte_utf8_len[word[k]]);
        if (w.oom) {
            ok = false;
            break;
        }
        if (t->ignore_merges) {
            int32_t id = s_map_get(&t->vocab, w.p, w.n);
            if (id >= 0) {
                s_ids_push(out, id);
                continue;
            }
        }
        if (!s_merge(m, w.p, w.n)) {
            ok = false;
            break;
        }
        for (int32_t s = 0; m->n_sym && s != -1; s = m->sym[s].next) {
            const s_sym_t *sy = &m->sym[s];
            int32_t id = s_map_get(&t->vocab, w.p + sy->off, sy->n);
            if (id >= 0) {
                s_ids_push(out, id);
                continue;
            }
            for (uint32_t k = 0; k < sy->n; k++) { /* llama.cpp: single bytes of the mapped text */
                int32_t bid = s_map_get(&t->vocab, w.p + sy->off + k, 1);
                if (bid >= 0) s_ids_push(out, bid);
            }
        }
    }
    free(clean.p);
    free(w.p);
    free(spans.v);
    return ok;
}

/* ------------------------------------------------------------ RWKV encode */

static void s_rwkv_encode(const wg_tok_t *t, const char *s, size_t n, s_ids_t *out) {
    size_t pos = 0;
    while (pos < n) {
        int32_t node = 0, best = -1;
        size_t best_end = pos + 1, p = pos;
        while (p < n) {
            char key[5];
            s_trie_key(key, node, (uint8_t)s[p]);
            int32_t child = s_map_get(&t->rwkv_trie, key, 5);
            if (child < 0) break;
            node = child;
            p++;
            if (t->rwkv_tok[node] >= 0) {
                best = t->rwkv_tok[node];
                best_end = p;
            }
        }
        if (best >= 0) s_ids_push(out, best);
        else s_ids_push_unk(t, out);
        pos = best >= 0 ? best_end : pos + 1;
    }
}

/* ------------------------------------------------------------- WPM encode */

static bool s_is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool s_wpm_word(const wg_tok_t *t, const char *word, size_t n, s_ids_t *out) {
    if (n == 0) return true;
    s_buf_t w = {0};
    s_buf_add(&w, "\xe2\x96\x81", 3);
    s_buf_add(&w, word, n);
    if (w.oom) return false;
    size_t start = out->n;
    size_t wn = w.n;
    for (size_t i = 0; i < wn;) {
        bool match = false;
        size_t jmax = i + (size_t)t->max_len + 1 < wn ? i + (size_t)t->max_len + 1 : wn;
        for (size_t j = jmax; j > i; j--) {
            int32_t id = s_map_get(&t->vocab, w.p + i, j - i);
            if (id >= 0) {
                s_ids_push(out, id);
                match = true;
                i = j;
                break;
            }
        }
        if (!match) {
            out->n = start;
            break;
        }
    }
    if (out->n == start) s_ids_push_unk(t, out);
    free(w.p);
    return true;
}

static bool s_wpm_encode(const wg_tok_t *t, const char *s, size_t n, s_ids_t *out) {
    /* BERT-style normalisation as the reference applies it: each character
     * is replaced by the first code point of its canonical decomposition
     * (which drops accents and splits Hangul syllables to their lead jamo),
     * lower-cased, then split on whitespace and punctuation. */
    s_buf_t clean = {0};
    if (!s_sanitize_utf8(s, n, &clean)) return false;
    if (clean.n == 0) return true;
    const utf8proc_uint8_t *nfd = (const utf8proc_uint8_t *)clean.p;
    s_buf_t word = {0};
    bool ok = true;
    size_t i = 0, len = clean.n;
    while (ok && i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(nfd + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            i++;
            continue;
        }
        i += (size_t)k;
        utf8proc_int32_t dec[32];
        int last = 0;
        if (utf8proc_decompose_char(cp, dec, 32, UTF8PROC_DECOMPOSE, &last) >= 1) cp = dec[0];
        utf8proc_category_t cat = utf8proc_category(cp);
        bool ws = cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
                  cp == 0x85 || cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
                  cat == UTF8PROC_CATEGORY_ZP;
        if (ws) {
            ok = s_wpm_word(t, word.p, word.n, out);
            word.n = 0;
            continue;
        }
        bool ctrl = cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CO ||
                    cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CN;
        if (cp == 0 || cp == 0xFFFD || ctrl) continue;
        char enc[4];
        size_t el = s_put_utf8(enc, (uint32_t)utf8proc_tolower(cp));
        bool punct = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
        bool sym = cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
        if (punct || (cp < 0x7F && sym) || s_is_chinese((uint32_t)cp)) {
            ok = s_wpm_word(t, word.p, word.n, out);
            word.n = 0;
            if (ok) ok = s_wpm_word(t, enc, el, out);
        } else {
            s_buf_add(&word, enc, el);
            ok = !word.oom;
        }
    }
    if (ok) ok = s_wpm_word(t, word.p, word.n, out);
    free(word.p);
    free(clean.p);
    return ok && !out->oom;
}

/* ------------------------------------------------- special-token splitting */

typedef struct {
    size_t off, len;  /* raw text span (len > 0), or ... */
    int32_t tok;      /* ... a token id (>= 0) */
} s_frag_t;

typedef struct {
    s_frag_t *v;  /* fragments in order */
    size_t n;     /* used */
    size_t cap;   /* allocated */
    bool oom;     /* allocation failed */
} s_frags_t;

static void s_frags_push(s_frags_t *a, size_t off, size_t len, int32_t tok) {
    if (a->oom) return;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        s_frag_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) {
            a->oom = true;
            return;
        }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n].off = off;
    a->v[a->n].len = len;
    a->v[a->n].tok = tok;
    a->n++;
}

static bool s_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Split raw text on special-token texts as llama.cpp does: one pass per
 * special token, longest text first, over every remaining text fragment.
 * A trie scan first finds which special tokens occur at all, so a vocabulary
 * with thousands of added tokens costs one pass over the text. */
static bool s_partition(const wg_tok_t *t, const char *text, size_t len, bool parse_special, s_frags_t *out) {
    s_frags_push(out, 0, len, -1);
    if (t->n_special == 0 || len == 0) return !out->oom;
    uint8_t *present = calloc((size_t)t->n_special, 1);
    if (!present) return false;
    bool any = false;
    for (size_t i = 0; i < len; i++) {
        int32_t node = 0;
        for (size_t p = i; p < len; p++) {
            char key[5];
            s_trie_key(key, node, (uint8_t)text[p]);
            int32_t child = s_map_get(&t->special_trie, key, 5);
            if (child < 0) break;
            node = child;
            if (t->trie_tok[node] >= 0) {
                present[t->trie_tok[node]] = 1;
                any = true;
            }
        }
    }
    /* several ids may share a text: the trie holds the last, mark them all */
    if (any) {
        for (int32_t k = 0; k < t->n_special; k++) {
            if (present[k]) continue;
            int32_t id = t->special[k];
            int32_t node = 0;
            for (uint32_t p = 0; p < t->len[id] && node >= 0; p++) {
                char key[5];
                s_trie_key(key, node, (uint8_t)t->text[id][p]);
                node = s_map_get(&t->special_trie, key, 5);
            }
            if (node >= 0 && t->trie_tok[node] >= 0 && present[t->trie_tok[node]]) present[k] = 1;
        }
    }
    for (int32_t k = 0; any && k < t->n_special; k++) {
        if (!present[k]) continue;
        int32_t id = t->special[k];
        uint8_t a = t->attr[id];
        if (!parse_special && (a & (WG_TA_CONTROL | WG_TA_UNKNOWN))) continue;
        const char *st = t->text[id];
        size_t sl = t->len[id];
        s_frags_t next = {0};
        for (size_t f = 0; f < out->n; f++) {
            s_frag_t fr = out->v[f];
            if (fr.tok >= 0) {
                s_frags_push(&next, 0, 0, fr.tok);
                continue;
            }
            size_t off = fr.off, flen = fr.len;
            for (;;) {
                const char *hit = flen >= sl ? memmem(text + off, flen, st, sl) : NULL;
                if (!hit) {
                    if (flen > 0) s_frags_push(&next, off, flen, -1);
                    break;
                }
                size_t mpos = (size_t)(hit - text);
                size_t left = mpos - off;
                if (a & WG_TA_LSTRIP)
                    while (left > 0 && s_isspace(text[off + left - 1])) left--;
                if (left > 0) s_frags_push(&next, off, left, -1);
                s_frags_push(&next, 0, 0, id);
                size_t roff = mpos + sl, rlen = off + flen - roff;
                if (a & WG_TA_RSTRIP)
                    while (rlen > 0 && s_isspace(text[roff])) {
                        roff++;
                        rlen--;
                    }
                off = roff;
                flen = rlen;
                if (flen == 0) break;
            }
        }
        free(out->v);
        *out = next;
        if (out->oom) break;
    }
    free(present);
    return !out->oom;
}

/* ------------------------------------------------------------------ encode */

/* Make the pre-tokenizer's patterns ready to match: built-in ones fetched
 * from the process-wide compiled set, a tokenizer.json's JIT-compiled. Done
 * at the first encode rather than at load, so a load (a model swap) compiles
 * nothing and a tokenizer that never encodes never compiles. The first
 * caller does the work under re_mu; the others wait for it, later ones see
 * re_ready. A failure (out of memory) is reported and retried next time. */
static wg_status s_re_prepare(const wg_tok_t *ct) {
    if (atomic_load_explicit(&ct->re_ready, memory_order_acquire)) return WG_OK;
    wg_tok_t *t = (wg_tok_t *)ct; /* allocated non-const; only the fields documented as lazy change */
    wg_status st = WG_OK;
    pthread_mutex_lock(&t->re_mu);
    if (!atomic_load_explicit(&t->re_ready, memory_order_relaxed)) {
        for (int32_t i = 0; i < t->n_re && st == WG_OK; i++) {
            if (t->re_builtin) st = wg_tok_pre_compiled(t->re_src[i], i, &t->re[i]);
            else pcre2_jit_compile(t->re[i], PCRE2_JIT_COMPLETE); /* optional speed-up */
        }
        if (st == WG_OK) atomic_store_explicit(&t->re_ready, true, memory_order_release);
    }
    pthread_mutex_unlock(&t->re_mu);
    return st;
}

wg_status wg_tok_encode(const wg_tok_t *t, const char *text, size_t len, bool add_special, bool parse_special,
                        int32_t **ids, size_t *n) {
    WG_ASSERT(t && ids && n && (text || len == 0));
    *ids = NULL;
    *n = 0;
    if (t->kind == WG_TOK_BPE && t->n_re > 0 && len > 0) {
        wg_status st = s_re_prepare(t);
        if (st != WG_OK) return st;
    }
    s_ids_t out = {0};
    s_frags_t frags = {0};
    s_merger_t m = {.t = t};
    bool ok = true;
    if (len > 0) ok = s_partition(t, text, len, parse_special, &frags);

    if (add_special) {
        if (t->kind == WG_TOK_WPM && t->cls >= 0) s_ids_push(&out, t->cls);
        else if (t->kind != WG_TOK_WPM && t->add_bos && t->bos >= 0) s_ids_push(&out, t->bos);
    }
    bool prev_special = true; /* SPM: space prefix before the first text */
    for (size_t f = 0; ok && f < frags.n; f++) {
        const s_frag_t *fr = &frags.v[f];
        if (fr->tok >= 0) {
            s_ids_push(&out, fr->tok);
            prev_special = true;
            continue;
        }
        const char *s = text + fr->off;
        switch (t->kind) {
        case WG_TOK_SPM:
            ok = s_spm_encode(t, &m, s, fr->len, t->add_space_prefix && prev_special, &out);
            break;
        case WG_TOK_BPE: ok = s_bpe_encode(t, &m, s, fr->len, &out); break;
        case WG_TOK_RWKV: s_rwkv_encode(t, s, fr->len, &out); break;
        case WG_TOK_WPM: ok = s_wpm_encode(t, s, fr->len, &out); break;
        }
        prev_special = false;
    }
    if (add_special) {
        if (t->kind == WG_TOK_WPM) {
            if (t->sep >= 0) s_ids_push(&out, t->sep);
        } else if (t->add_eos && t->eos >= 0) {
            s_ids_push(&out, t->eos);
        }
    }
    free(frags.v);
    free(m.sym);
    free(m.heap.v);
    free(m.scratch.p);
    if (!ok || out.oom) {
        free(out.v);
        return wg_error(WG_ERR_NOMEM, "tokenize: out of memory on %zu bytes of text", len);
    }
    if (out.unspelt) {
        free(out.v);
        return wg_error(WG_ERR_UNSUPPORTED,
                        "tokenize: the text has characters this vocabulary cannot spell (it has no byte tokens "
                        "for them and no unknown token)");
    }
    if (!out.v) out.v = malloc(sizeof(int32_t)); /* a valid pointer even for 0 ids */
    if (!out.v) return wg_error(WG_ERR_NOMEM, "tokenize");
    *ids = out.v;
    *n = out.n;
    return WG_OK;
}

/* ------------------------------------------------------------------ decode */

size_t wg_tok_piece(const wg_tok_t *t, int32_t id, bool special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    if (!special && (t->attr[id] & (WG_TA_CONTROL | WG_TA_UNKNOWN))) return 0;
    size_t n = t->piece_len[id];
    if (buf && cap) memcpy(buf, t->piece[id], n < cap ? n : cap);
    return n;
}

/* HF's clean_up_tokenization_spaces, in llama.cpp's three passes. */
static size_t s_clean_spaces(char *s, size_t n) {
    size_t total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        s[total++] = x;
    }
    n = total;
    total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            total--;
            s[++i] = '\0';
        }
        s[total++] = x;
    }
    n = total;
    total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = s[i];
        if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = s[i + 1];
            if (x1 == 's' || x1 == 'm') total--;
            else if (i + 2 < n && ((x1 == 'r' && s[i + 2] == 'e') || (x1 == 'v' && s[i + 2] == 'e'))) total--;
        }
        s[total++] = x;
    }
    return total;
}

wg_status wg_tok_decode(const wg_tok_t *t, const int32_t *ids, size_t n, bool special, char **text) {
    WG_ASSERT(t && text && (ids || n == 0));
    *text = NULL;
    s_buf_t b = {0};
    s_buf_add(&b, "", 0);
    bool strip = t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            free(b.p);
            return wg_error(WG_ERR_RANGE, "decode: ids[%zu]=%d outside vocabulary of %d", i, id, t->n_vocab);
        }
        if (special || !(t->attr[id] & (WG_TA_CONTROL | WG_TA_UNKNOWN))) {
            const char *p = t->piece[id];
            size_t pl = t->piece_len[id];
            if (strip && pl && p[0] == ' ') {
                p++;
                pl--;
            }
            s_buf_add(&b, p, pl);
        }
        strip = false;
    }
    if (b.oom) {
        free(b.p);
        return wg_error(WG_ERR_NOMEM, "decode of %zu ids", n);
    }
    if (t->clean_spaces) {
        b.n = s_clean_spaces(b.p, b.n);
        b.p[b.n] = 0;
    }
    *text = b.p;
    return WG_OK;
}

/* ------------------------------------------------------- streaming decode */

struct wg_detok {
    const wg_tok_t *t;  /* borrowed tokenizer */
    bool special;       /* render control tokens */
    char hold[8];       /* bytes of an incomplete UTF-8 character */
    size_t n_hold;      /* count */
};

wg_detok_t *wg_detok_new(const wg_tok_t *t, bool special) {
    wg_detok_t *d = calloc(1, sizeof *d);
    if (!d) {
        wg_error(WG_ERR_NOMEM, "detok");
        return NULL;
    }
    d->t = t;
    d->special = special;
    return d;
}

void wg_detok_free(wg_detok_t **d) {
    if (!d || !*d) return;
    free(*d);
    *d = NULL;
}

/* Expected length of a sequence with lead byte c; 0 when c cannot start one. */
static size_t s_seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Move the complete, valid characters of (hold + src) to *out; keep an
 * incomplete tail in hold; invalid bytes become U+FFFD. */
static wg_status s_detok_feed(wg_detok_t *d, const char *src, size_t n, bool final, char **out) {
    s_buf_t b = {0};
    s_buf_add(&b, "", 0);
    s_buf_t in = {0};
    s_buf_add(&in, d->hold, d->n_hold);
    s_buf_add(&in, src, n);
    d->n_hold = 0;
    if (in.oom || b.oom) {
        free(in.p);
        free(b.p);
        return wg_error(WG_ERR_NOMEM, "detok");
    }
    size_t i = 0;
    while (i < in.n) {
        size_t need = s_seq_len((uint8_t)in.p[i]);
        if (need == 0) {
            s_buf_add(&b, "\xef\xbf\xbd", 3);
            i++;
            continue;
        }
        if (i + need > in.n) {
            /* incomplete: hold it if what we have is a valid prefix */
            bool prefix_ok = true;
            for (size_t k = i + 1; k < in.n; k++)
                if (((uint8_t)in.p[k] & 0xC0) != 0x80) prefix_ok = false;
            if (prefix_ok && !final) {
                memcpy(d->hold, in.p + i, in.n - i);
                d->n_hold = in.n - i;
                break;
            }
            s_buf_add(&b, "\xef\xbf\xbd", 3);
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)in.p + i, (utf8proc_ssize_t)need, &cp);
        if (k != (utf8proc_ssize_t)need) {
            s_buf_add(&b, "\xef\xbf\xbd", 3);
            i++;
            continue;
        }
        s_buf_add(&b, in.p + i, need);
        i += need;
    }
    free(in.p);
    if (b.oom) {
        free(b.p);
        return wg_error(WG_ERR_NOMEM, "detok");
    }
    *out = b.p;
    return WG_OK;
}

wg_status wg_detok_push(wg_detok_t *d, int32_t id, char **out) {
    WG_ASSERT(d && out);
    *out = NULL;
    const wg_tok_t *t = d->t;
    if (id < 0 || id >= t->n_vocab) return wg_error(WG_ERR_RANGE, "detok: id=%d outside vocabulary of %d", id, t->n_vocab);
    size_t pl = wg_tok_piece(t, id, d->special, NULL, 0);
    return s_detok_feed(d, t->piece[id], pl, false, out);
}

wg_status wg_detok_flush(wg_detok_t *d, char **out) {
    WG_ASSERT(d && out);
    *out = NULL;
    return s_detok_feed(d, "", 0, true, out);
}
