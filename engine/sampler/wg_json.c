/* wg_json — JSON mode: a byte-level JSON object recognizer, a trie of the
 * vocabulary's pieces, and per-sequence token masks (wg_json.h). */
#include "wg_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/wg_status.h"

/* ---- recognizer ---- */

enum {
    J_START,    /* before the top-level object: whitespace, '{' */
    J_OBJ_OPEN, /* after '{': whitespace, a key, '}' */
    J_OBJ_KEY,  /* after ',' in an object: whitespace, a key */
    J_COLON,    /* after a key: whitespace, ':' */
    J_VALUE,    /* after ':' or ',' in an array: whitespace, a value */
    J_ARR_OPEN, /* after '[': whitespace, a value, ']' */
    J_AFTER,    /* after a value in a container: whitespace, ',', the closer */
    J_STR,      /* inside a string */
    J_NUM,      /* inside a number */
    J_LIT,      /* inside true / false / null */
    J_DONE,     /* the top-level object is closed: nothing more */
};

/* Number parts (RFC 8259 section 6): after '-', after a leading 0, in the
 * integer digits, after '.', in the fraction, after e/E, after its sign, in
 * the exponent digits. */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXPSIGN, N_EXPD };

static const char *const s_lits[3] = {"true", "false", "null"};

static inline bool s_is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Enter mode m with every per-mode field cleared, so equal situations are
 * equal states (the mask cache compares them bytewise). */
static inline void s_mode(wg_json_state_t *s, uint8_t m) {
    s->mode = m;
    s->sub = s->cnt = s->u8n = s->u8r = s->key = s->lit = 0;
}

/* Whitespace between the parts of the grammar, as llama.cpp's JSON grammar
 * allows it: nothing, one space or tab, or a line break ("\n", "\r" or
 * "\r\n") followed by at most WG_JSON_MAX_INDENT spaces and tabs. No blank
 * lines and no long runs, so a model cannot pad forever. In the structural
 * modes sub is the phase of the run (0 none yet, 1 a space or tab: closed,
 * 2 after "\r", 3 in the indentation) and cnt the indentation so far. */
static inline bool s_ws(wg_json_state_t *s, uint8_t c) {
    const bool blank = c == ' ' || c == '\t';
    switch (s->sub) {
    case 0:
        s->sub = blank ? 1 : c == '\r' ? 2 : 3;
        return true;
    case 2:
        if (c != '\n') return false;
        s->sub = 3;
        return true;
    case 3: return blank && ++s->cnt <= WG_JSON_MAX_INDENT;
    default: return false;
    }
}

static inline bool s_top_is_obj(const wg_json_state_t *s) { return (s->stack >> (s->depth - 1)) & 1u; }

static inline bool s_value_done(wg_json_state_t *s) {
    s_mode(s, s->depth == 0 ? J_DONE : J_AFTER);
    return true;
}

static bool s_push(wg_json_state_t *s, bool obj) {
    if (s->depth >= WG_JSON_MAX_DEPTH) return false;
    const uint64_t bit = (uint64_t)1 << s->depth;
    s->stack = obj ? s->stack | bit : s->stack & ~bit;
    s->depth++;
    s_mode(s, obj ? J_OBJ_OPEN : J_ARR_OPEN);
    return true;
}

static bool s_pop(wg_json_state_t *s) {
    s->depth--;
    s->stack &= ~((uint64_t)1 << s->depth);
    return s_value_done(s);
}

static bool s_value_start(wg_json_state_t *s, uint8_t c) {
    switch (c) {
    case '{': return s_push(s, true);
    case '[': return s_push(s, false);
    case '"': s_mode(s, J_STR); return true;
    case '-': s_mode(s, J_NUM); s->sub = N_MINUS; s->cnt = 1; return true;
    case 't': case 'f': case 'n':
        s_mode(s, J_LIT);
        s->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
        s->sub = 1;
        return true;
    default:
        if (c < '0' || c > '9') return false;
        s_mode(s, J_NUM);
        s->sub = c == '0' ? N_ZERO : N_INT;
        s->cnt = 1;
        return true;
    }
}

static bool s_byte(wg_json_state_t *s, uint8_t c);

static bool s_num(wg_json_state_t *s, uint8_t c) {
    const bool dig = c >= '0' && c <= '9', e = c == 'e' || c == 'E';
    int next = -1;
    switch (s->sub) {
    case N_MINUS: if (dig) next = c == '0' ? N_ZERO : N_INT; break;
    case N_ZERO: next = c == '.' ? N_DOT : e ? N_EXP : -1; break;
    case N_INT: next = dig ? N_INT : c == '.' ? N_DOT : e ? N_EXP : -1; break;
    case N_DOT: if (dig) next = N_FRAC; break;
    case N_FRAC: next = dig ? N_FRAC : e ? N_EXP : -1; break;
    case N_EXP: next = c == '+' || c == '-' ? N_EXPSIGN : dig ? N_EXPD : -1; break;
    case N_EXPSIGN:
    case N_EXPD: if (dig) next = N_EXPD; break;
    }
    if (next >= 0) {
        s->sub = (uint8_t)next;
        return ++s->cnt <= WG_JSON_MAX_NUM;
    }
    /* A byte no number can go on with ends a complete one; it is then read
     * after the value (numbers live inside the top-level object, depth >= 1). */
    if (s->sub != N_ZERO && s->sub != N_INT && s->sub != N_FRAC && s->sub != N_EXPD) return false;
    s_value_done(s);
    return s_byte(s, c);
}

static inline int s_hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Inside a string. sub: 0 plain, 1 after '\', 2..5 the hex digits of \u
 * (u8r bit 0: all digits 0 so far, bit 1: the first was D). u8n / u8r: UTF-8
 * continuation bytes still due and the range of the next (Unicode table 3-7:
 * 1 A0..BF after E0, 2 80..9F after ED, 3 90..BF after F0, 4 80..8F after F4). */
static bool s_str(wg_json_state_t *s, uint8_t c) {
    if (s->u8n) {
        uint8_t lo = 0x80, hi = 0xBF;
        switch (s->u8r) {
        case 1: lo = 0xA0; break;
        case 2: hi = 0x9F; break;
        case 3: lo = 0x90; break;
        case 4: hi = 0x8F; break;
        }
        if (c < lo || c > hi) return false;
        s->u8n--;
        s->u8r = 0;
        return true;
    }
    if (s->sub == 1) {
        switch (c) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': s->sub = 0; return true;
        case 'u': s->sub = 2; s->u8r = 1; return true;
        default: return false;
        }
    }
    if (s->sub >= 2) {
        const int v = s_hex(c), k = s->sub - 2;
        if (v < 0) return false;
        if (k == 0 && v == 0xD) s->u8r |= 2;
        if (k == 1 && (s->u8r & 2) && v >= 8) return false; /* \uD800..\uDFFF: a surrogate */
        if (v) s->u8r &= (uint8_t)~1u;
        if (k < 3) {
            s->sub++;
            return true;
        }
        if (s->u8r & 1) return false; /* \u0000 */
        s->sub = 0;
        s->u8r = 0;
        return true;
    }
    if (c == '"') {
        if (!s->key) return s_value_done(s);
        s_mode(s, J_COLON);
        return true;
    }
    if (c == '\\') {
        s->sub = 1;
        return true;
    }
    if (c < 0x20) return false; /* raw control characters must be escaped */
    if (c < 0x80) return true;
    if (c >= 0xC2 && c <= 0xDF) s->u8n = 1;
    else if (c == 0xE0) s->u8n = 2, s->u8r = 1;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) s->u8n = 2;
    else if (c == 0xED) s->u8n = 2, s->u8r = 2;
    else if (c == 0xF0) s->u8n = 3, s->u8r = 3;
    else if (c >= 0xF1 && c <= 0xF3) s->u8n = 3;
    else if (c == 0xF4) s->u8n = 3, s->u8r = 4;
    else return false;
    return true;
}

static bool s_byte(wg_json_state_t *s, uint8_t c) {
    switch (s->mode) {
    case J_START:
        if (s_is_ws(c)) return s_ws(s, c);
        return c == '{' && s_push(s, true);
    case J_OBJ_OPEN:
    case J_OBJ_KEY:
        if (s_is_ws(c)) return s_ws(s, c);
        if (c == '"') {
            s_mode(s, J_STR);
            s->key = 1;
            return true;
        }
        return s->mode == J_OBJ_OPEN && c == '}' && s_pop(s);
    case J_COLON:
        if (s_is_ws(c)) return s_ws(s, c);
        if (c != ':') return false;
        s_mode(s, J_VALUE);
        return true;
    case J_VALUE:
        if (s_is_ws(c)) return s_ws(s, c);
        return s_value_start(s, c);
    case J_ARR_OPEN:
        if (s_is_ws(c)) return s_ws(s, c);
        if (c == ']') return s_pop(s);
        return s_value_start(s, c);
    case J_AFTER:
        if (s_is_ws(c)) return s_ws(s, c);
        if (c == ',') {
            s_mode(s, s_top_is_obj(s) ? J_OBJ_KEY : J_VALUE);
            return true;
        }
        return c == (s_top_is_obj(s) ? '}' : ']') && s_pop(s);
    case J_STR: return s_str(s, c);
    case J_NUM: return s_num(s, c);
    case J_LIT: {
        const char *w = s_lits[s->lit];
        if (c != (uint8_t)w[s->sub]) return false;
        if (w[++s->sub] == '\0') return s_value_done(s);
        return true;
    }
    default: return false;
    }
}

void wg_json_init(wg_json_state_t *s) {
    memset(s, 0, sizeof *s);
    s->mode = J_START;
}

bool wg_json_feed(wg_json_state_t *s, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!s_byte(s, (uint8_t)p[i])) return false;
    return true;
}

bool wg_json_done(const wg_json_state_t *s) { return s->mode == J_DONE; }

/* ---- vocabulary trie ---- */

/* Nodes in depth-first order: a node's children follow it, and `skip` is
 * the first node after its subtree, so a walk that refuses a prefix jumps
 * over every token that starts with it. */
typedef struct {
    uint8_t byte;   /* the byte this node adds */
    uint8_t pad;
    uint16_t depth; /* bytes from the root (1 for the root's children) */
    int32_t skip;   /* first node after this subtree */
    int32_t tok0;   /* first of the tokens whose piece ends here, in the trie's sorted ids */
    int32_t ntok;   /* how many (several tokens can have the same piece) */
} s_node_t;

typedef struct {
    const uint8_t *p;
    uint32_t n;
    int32_t id;
} s_piece_t;

typedef struct {
    s_node_t *nodes;    /* [n_nodes] */
    size_t n_nodes;
    int32_t *sorted;    /* its token ids, in piece order */
} s_trie_t;

struct wg_json_vocab {
    int32_t n_vocab;
    char *bytes;        /* every piece, back to back */
    size_t *off;        /* [n_vocab] piece of token id at bytes + off[id] */
    uint16_t *len;      /* [n_vocab] its length (0: never allowed) */
    s_trie_t all;       /* every token with a piece */
    /* Inside a string, away from an escape or a multi-byte character (the
     * state most masks are built in), a piece without '"', '\' escapes
     * that do not close, control bytes or cut characters is always allowed
     * and leads back to the same state: those "plain" tokens are one bit set,
     * and only the others are walked. */
    uint64_t *plain;    /* [words] plain tokens */
    int32_t n_plain;
    s_trie_t odd;       /* tokens with a piece that are not plain */
    uint16_t max_len;   /* longest piece */
};

static void s_trie_free(s_trie_t *t) {
    free(t->nodes);
    free(t->sorted);
}

/* Sorted pieces to depth-first nodes: piece k shares its first `l` bytes
 * (the common prefix with piece k-1) with open nodes; the open nodes deeper
 * than l end there. `open` has room for max_len + 1 entries. */
static bool s_trie_build(s_trie_t *t, const s_piece_t *ps, int32_t n, size_t total_bytes, int32_t *open) {
    t->sorted = malloc((n ? (size_t)n : 1) * sizeof *t->sorted);
    t->nodes = malloc((total_bytes ? total_bytes : 1) * sizeof *t->nodes);
    if (!t->sorted || !t->nodes) return false;
    int32_t n_open = 0;
    for (int32_t k = 0; k < n; k++) {
        const s_piece_t *p = &ps[k];
        uint32_t l = 0;
        if (k > 0) {
            const s_piece_t *q = &ps[k - 1];
            while (l < p->n && l < q->n && p->p[l] == q->p[l]) l++;
        }
        while ((uint32_t)n_open > l) t->nodes[open[n_open--]].skip = (int32_t)t->n_nodes;
        for (uint32_t d = l + 1; d <= p->n; d++) {
            open[d] = (int32_t)t->n_nodes;
            t->nodes[t->n_nodes++] = (s_node_t){.byte = p->p[d - 1], .depth = (uint16_t)d, .tok0 = -1};
            n_open = (int32_t)d;
        }
        s_node_t *end = &t->nodes[open[p->n]];
        if (end->ntok == 0) end->tok0 = k;
        end->ntok++;
        t->sorted[k] = p->id;
    }
    while (n_open > 0) t->nodes[open[n_open--]].skip = (int32_t)t->n_nodes;
    return true;
}

#define S_MAX_PIECE 65535

static int s_piece_cmp(const void *a, const void *b) {
    const s_piece_t *x = a, *y = b;
    const uint32_t n = x->n < y->n ? x->n : y->n;
    const int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

wg_status wg_json_vocab_new(int32_t n_vocab, wg_json_piece_fn piece, void *ctx, wg_json_vocab_t **out) {
    *out = NULL;
    if (n_vocab <= 0 || !piece) return wg_error(WG_ERR_INVAL, "json: vocabulary of %d tokens", n_vocab);
    wg_json_vocab_t *v = calloc(1, sizeof *v);
    s_piece_t *ps = NULL;
    int32_t *open = NULL;
    char small[256];
    bool one[256] = {false};
    if (!v) goto nomem;
    v->n_vocab = n_vocab;
    v->off = calloc((size_t)n_vocab, sizeof *v->off);
    v->len = calloc((size_t)n_vocab, sizeof *v->len);
    if (!v->off || !v->len) goto nomem;
    /* Pieces: lengths first, then one buffer. */
    size_t total = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        const size_t n = piece(ctx, id, small, sizeof small);
        if (n == 0 || n > S_MAX_PIECE) continue; /* control tokens; absurdly long pieces are left out */
        v->off[id] = total;
        v->len[id] = (uint16_t)n;
        total += n;
    }
    v->bytes = malloc(total ? total : 1);
    if (!v->bytes) goto nomem;
    int32_t n_sorted = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (!v->len[id]) continue;
        piece(ctx, id, v->bytes + v->off[id], v->len[id]);
        if (v->len[id] == 1) one[(uint8_t)v->bytes[v->off[id]]] = true;
        if (v->len[id] > v->max_len) v->max_len = v->len[id];
        n_sorted++;
    }
    /* JSON mode must be able to write any object: every printable ASCII
     * character and the four whitespace bytes as tokens of their own. */
    for (int c = 0x09; c < 0x7F; c++) {
        if (c > 0x0D && c < 0x20) continue;
        if (c == 0x0B || c == 0x0C) continue;
        if (!one[c]) {
            wg_json_vocab_free(&v);
            return wg_error(WG_ERR_UNSUPPORTED,
                            "json mode: the vocabulary has no token for the single byte 0x%02x ('%c'); JSON mode needs "
                            "one for every printable ASCII character, tab, newline and carriage return",
                            c, c >= 0x20 ? c : '?');
        }
    }
    ps = malloc((size_t)n_sorted * sizeof *ps);
    open = malloc(((size_t)v->max_len + 1) * sizeof *open);
    v->plain = calloc(((size_t)n_vocab + 63) / 64, sizeof *v->plain);
    if (!ps || !open || !v->plain) goto nomem;
    for (int32_t id = 0, k = 0; id < n_vocab; id++)
        if (v->len[id]) ps[k++] = (s_piece_t){(const uint8_t *)v->bytes + v->off[id], v->len[id], id};
    qsort(ps, (size_t)n_sorted, sizeof *ps, s_piece_cmp);
    if (!s_trie_build(&v->all, ps, n_sorted, total, open)) goto nomem;
    /* plain: from a plain string state the piece is accepted and leads back
     * to it (a '"' would end the string: at depth 0 nothing follows) */
    wg_json_state_t plain0;
    wg_json_init(&plain0);
    s_mode(&plain0, J_STR);
    int32_t n_odd = 0;
    size_t odd_bytes = 0;
    for (int32_t k = 0; k < n_sorted; k++) {
        wg_json_state_t st = plain0;
        const s_piece_t p = ps[k];
        if (wg_json_feed(&st, (const char *)p.p, p.n) && !memcmp(&st, &plain0, sizeof st)) {
            v->plain[p.id >> 6] |= (uint64_t)1 << (p.id & 63);
            v->n_plain++;
        } else {
            ps[n_odd++] = p; /* order kept: still sorted */
            odd_bytes += p.n;
        }
    }
    if (!s_trie_build(&v->odd, ps, n_odd, odd_bytes, open)) goto nomem;
    free(ps);
    free(open);
    *out = v;
    return WG_OK;
nomem:
    free(ps);
    free(open);
    wg_json_vocab_free(&v);
    return wg_error(WG_ERR_NOMEM, "json: vocabulary trie of %d tokens", n_vocab);
}

void wg_json_vocab_free(wg_json_vocab_t **pv) {
    if (!pv || !*pv) return;
    wg_json_vocab_t *v = *pv;
    free(v->bytes);
    free(v->off);
    free(v->len);
    s_trie_free(&v->all);
    s_trie_free(&v->odd);
    free(v->plain);
    free(v);
    *pv = NULL;
}

size_t wg_json_vocab_nodes(const wg_json_vocab_t *v) { return v->all.n_nodes; }

/* ---- per-sequence guide ---- */

/* Masks kept per sequence, keyed by the state they were built for: inside a
 * string or between the items of a flat object the state comes back again
 * and again, so most steps reuse a mask instead of walking the trie. */
#define S_CACHE 8

struct wg_json_guide {
    const wg_json_vocab_t *v;
    wg_json_state_t st;              /* the text so far */
    wg_json_state_t key[S_CACHE];    /* state each cached mask was built for */
    int32_t allowed[S_CACHE];        /* tokens allowed by it */
    int n_cached, next;              /* entries filled, next to replace */
    size_t words;                    /* 64-bit words per mask */
    uint64_t *bits;                  /* [S_CACHE][words] */
    wg_json_state_t *stk;            /* [max_len + 1] walk states by depth */
    int64_t built, reused;
};

wg_json_guide_t *wg_json_guide_new(const wg_json_vocab_t *v) {
    wg_json_guide_t *g = calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->v = v;
    wg_json_init(&g->st);
    g->words = ((size_t)v->n_vocab + 63) / 64;
    g->bits = malloc(S_CACHE * g->words * sizeof *g->bits);
    g->stk = malloc(((size_t)v->max_len + 1) * sizeof *g->stk);
    if (!g->bits || !g->stk) goto nomem;
    return g;
nomem:
    wg_json_guide_free(&g);
    wg_error(WG_ERR_NOMEM, "json: guide");
    return NULL;
}

void wg_json_guide_free(wg_json_guide_t **pg) {
    if (!pg || !*pg) return;
    free((*pg)->bits);
    free((*pg)->stk);
    free(*pg);
    *pg = NULL;
}

/* Walk trie t from the current state, setting the bits of the tokens it
 * allows: a node's state is its parent's fed with its byte; a refused byte
 * skips the node's whole subtree. */
static int32_t s_walk(wg_json_guide_t *g, const s_trie_t *t, uint64_t *bits) {
    wg_json_state_t *stk = g->stk;
    stk[0] = g->st;
    int32_t n = 0;
    for (size_t i = 0; i < t->n_nodes;) {
        const s_node_t *nd = &t->nodes[i];
        wg_json_state_t *s = &stk[nd->depth];
        *s = stk[nd->depth - 1];
        if (!s_byte(s, nd->byte)) {
            i = (size_t)nd->skip;
            continue;
        }
        for (int32_t k = 0; k < nd->ntok; k++) {
            const int32_t id = t->sorted[nd->tok0 + k];
            bits[id >> 6] |= (uint64_t)1 << (id & 63);
        }
        n += nd->ntok;
        i++;
    }
    return n;
}

static int32_t s_build(wg_json_guide_t *g, uint64_t *bits) {
    const wg_json_vocab_t *v = g->v;
    const wg_json_state_t *st = &g->st;
    if (st->mode == J_STR && st->sub == 0 && st->u8n == 0) {
        memcpy(bits, v->plain, g->words * sizeof *bits);
        return v->n_plain + s_walk(g, &v->odd, bits);
    }
    memset(bits, 0, g->words * sizeof *bits);
    return s_walk(g, &v->all, bits);
}

int32_t wg_json_guide_mask(wg_json_guide_t *g, float *logits) {
    int slot = -1;
    for (int i = 0; i < g->n_cached; i++)
        if (!memcmp(&g->key[i], &g->st, sizeof g->st)) {
            slot = i;
            break;
        }
    if (slot >= 0) {
        g->reused++;
    } else {
        slot = g->next;
        g->next = (g->next + 1) % S_CACHE;
        if (g->n_cached < S_CACHE) g->n_cached++;
        g->key[slot] = g->st;
        g->allowed[slot] = s_build(g, g->bits + (size_t)slot * g->words);
        g->built++;
    }
    const uint64_t *b = g->bits + (size_t)slot * g->words;
    const int32_t n_vocab = g->v->n_vocab;
    for (size_t w = 0; w < g->words; w++) {
        const uint64_t m = b[w];
        if (m == ~(uint64_t)0) continue;
        const int32_t i0 = (int32_t)(w * 64), i1 = i0 + 64 < n_vocab ? i0 + 64 : n_vocab;
        for (int32_t i = i0; i < i1; i++)
            if (!((m >> (i - i0)) & 1u)) logits[i] = -INFINITY;
    }
    return g->allowed[slot];
}

static bool s_try(const wg_json_guide_t *g, int32_t id, wg_json_state_t *out) {
    const wg_json_vocab_t *v = g->v;
    if (id < 0 || id >= v->n_vocab || !v->len[id]) return false;
    *out = g->st;
    return wg_json_feed(out, v->bytes + v->off[id], v->len[id]);
}

bool wg_json_guide_allows(const wg_json_guide_t *g, int32_t id) {
    wg_json_state_t s;
    return s_try(g, id, &s);
}

wg_status wg_json_guide_accept(wg_json_guide_t *g, int32_t id) {
    wg_json_state_t s;
    if (!s_try(g, id, &s)) return wg_error(WG_ERR_INVAL, "json mode: token %d cannot continue the JSON text", id);
    g->st = s;
    return WG_OK;
}

bool wg_json_guide_done(const wg_json_guide_t *g) { return wg_json_done(&g->st); }

void wg_json_guide_counts(const wg_json_guide_t *g, int64_t *built, int64_t *reused) {
    if (built) *built = g->built;
    if (reused) *reused = g->reused;
}
