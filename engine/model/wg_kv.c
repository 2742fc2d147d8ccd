/* wg_kv — paged KV cache (see wg_kv.h). The free list is a stack of block ids;
 * a sequence's blocks go back in reverse order so that allocating and freeing
 * in LIFO order restores the exact initial stack. F16 rows are converted with
 * F16C when the kernel library runs at AVX2 or above (round to nearest even,
 * the same bits as the scalar wg_fp32_to_fp16 except NaN payloads), one path
 * for the cache's whole life so every element gets one formula. Q8_0 rows
 * are quantized per 32 elements with the kernel library's Q8_0 quantizer
 * (the reference's bits at every SIMD level).
 *
 * Prefix cache (wg_kv_enable_prefix_cache): blocks get a reference count, and
 * a full block whose K/V are computed can be registered under its identity:
 * the block before it in the sequence (id and generation, -1 for the first)
 * and its block_tokens token ids. Identities are kept in an open-addressing
 * table (linear probing, backward-shift deletion) keyed by a hash of them,
 * and a lookup compares the whole identity, so a hit is exact, never a hash
 * guess. A registered block nobody holds goes on an LRU list instead of the
 * free list; it still counts as free (wg_kv_n_free_blocks) and is taken back
 * (its identity dropped, its generation bumped, so children that named it
 * can no longer match) only when the free list is empty. Sequences release
 * their blocks last first, so a chain's deepest blocks are the oldest on the
 * list and go first. A registered block is never written again: only full
 * blocks are registered, and a truncation into one copies it first. */
#include "wg_kv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define S_X86 1
#else
#define S_X86 0
#endif

#include "../../kernels/cpu/wg_cpu.h"
#include "../../kernels/quant.h"

typedef struct {
    bool used;          /* slot holds a live sequence */
    int32_t len;        /* tokens stored */
    int32_t n_blocks;   /* blocks in table */
    int32_t cap;        /* allocated entries of table */
    int32_t lo;         /* table[0..lo) released (wg_kv_release_before): holes, -1 */
    int32_t *table;     /* [n_blocks] block ids, position p in table[p / block_tokens] */
    int32_t reg_n;      /* prefix cache: table[0..reg_n) are registered (committed) */
    int32_t tail;       /* the last of them (-1 none) and its generation then: parent of the next */
    uint32_t tail_gen;
    bool chain_off;     /* the chain was cut (a released hole under a truncation): commit nothing more */
} s_seq_t;

/* Identity of a registered block (prefix cache). */
typedef struct {
    uint64_t h;         /* hash of (par, par_gen, tokens) */
    int32_t par;        /* block before it in its sequence, -1 for a first block */
    uint32_t par_gen;   /* that block's generation when this one was registered */
    uint32_t gen;       /* bumped whenever this block's identity is dropped */
    bool reg;           /* registered (in the table) */
    int32_t prev, next; /* LRU links while cached with no holder (-1 ends) */
} s_pblk_t;

struct wg_kv {
    int32_t n_layer;       /* layers */
    int32_t k_dim;         /* elements per key vector */
    int32_t v_dim;         /* elements per value vector */
    int32_t bt;            /* tokens per block */
    int32_t n_blocks;      /* blocks in the pool */
    wg_kv_type_t type;     /* element type (F32 for a recurrent state) */
    size_t k_rb, v_rb;     /* bytes of one key / value row (wg_kv_row_bytes) */
    bool f16c;             /* F16 rows stored with F16C (the library runs at AVX2 or above) */
    size_t layer_bytes;    /* bytes of one layer in a block: bt*(k_rb+v_rb); the state when recurrent */
    char *pool;            /* [n_blocks][n_layer][K: bt rows | V: bt rows] */
    void *map;             /* mapping holding the pool (NULL: pool is malloc'ed) */
    size_t map_bytes;      /* its length */
    int32_t *free_stack;   /* [n_blocks] free block ids; top at n_free-1 */
    int32_t n_free;        /* free blocks */
    size_t state_floats;   /* recurrent cache: floats per block (one sequence's state); 0 for K/V */
    s_seq_t *seqs;         /* [n_seqs] sequence slots */
    int32_t n_seqs;        /* allocated slots */
    void *dev;             /* device-side state (K/V on a GPU), or NULL */
    void (*dev_free)(void *); /* frees `dev` with the cache */
    /* prefix cache (NULL / 0 while off) */
    int32_t *ref;          /* [n_blocks] sequences holding each block */
    s_pblk_t *pb;          /* [n_blocks] identities */
    int32_t *ptok;         /* [n_blocks][bt] token ids of registered blocks */
    int32_t *ht;           /* [ht_mask + 1] registered block ids, -1 empty */
    uint32_t ht_mask;      /* table size - 1 (a power of two >= 2 * n_blocks) */
    int32_t lru_head;      /* oldest cached block with no holder (-1 none) */
    int32_t lru_tail;      /* newest */
    int32_t n_cached;      /* blocks on the LRU list */
    int64_t n_evicted;     /* cached blocks taken back for new contents */
};

static const char *const s_type_names[] = {"f32", "f16", "q8_0"};

const char *wg_kv_type_name(wg_kv_type_t t) {
    return (unsigned)t < sizeof s_type_names / sizeof s_type_names[0] ? s_type_names[t] : "?";
}

size_t wg_kv_row_bytes(wg_kv_type_t t, int64_t n) {
    switch (t) {
    case WG_KV_F32: return (size_t)n * sizeof(float);
    case WG_KV_F16: return (size_t)n * sizeof(wg_half);
    case WG_KV_Q8_0: WG_ASSERT(n % WG_QK8_0 == 0); return (size_t)(n / WG_QK8_0) * sizeof(wg_block_q8_0);
    }
    return 0;
}

wg_status wg_kv_type_parse(const char *s, wg_kv_type_t *t) {
    for (size_t i = 0; s && i < sizeof s_type_names / sizeof s_type_names[0]; i++) {
        if (!strcmp(s, s_type_names[i])) {
            *t = (wg_kv_type_t)i;
            return WG_OK;
        }
    }
    return wg_error(WG_ERR_INVAL, "kv type '%s': expected f32, f16 or q8_0", s ? s : "(null)");
}

#define S_HUGE ((size_t)2 << 20)

/* The K/V pool: big pools are mapped 2 MiB-aligned and advised to use
 * transparent huge pages. Attention walks every sequence's blocks each step,
 * scattered over the pool; with 4 KiB pages the walk misses the TLB on almost
 * every block row (a page-table walk per 256-byte head slice), which cost
 * more than the bytes themselves. */
static void s_pool_alloc(wg_kv_t *kv, size_t bytes) {
    if (bytes < S_HUGE) {
        kv->pool = malloc(bytes);
        return;
    }
    const size_t len = (bytes + S_HUGE - 1) / S_HUGE * S_HUGE + S_HUGE;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    kv->map = m;
    kv->map_bytes = len;
    kv->pool = (char *)(((uintptr_t)m + S_HUGE - 1) & ~(uintptr_t)(S_HUGE - 1));
#ifdef MADV_HUGEPAGE
    madvise(kv->pool, len - S_HUGE, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
#endif
}

static wg_kv_t *s_new(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens, size_t budget_bytes,
                      bool host_pool, wg_kv_type_t type) {
    if (n_layer <= 0 || k_dim <= 0 || v_dim < 0 || block_tokens < 0) {
        wg_error(WG_ERR_INVAL, "kv: bad shape n_layer=%d k_dim=%d v_dim=%d block_tokens=%d",
                 n_layer, k_dim, v_dim, block_tokens);
        return NULL;
    }
    if (type != WG_KV_F32 && type != WG_KV_F16 && type != WG_KV_Q8_0) {
        wg_error(WG_ERR_INVAL, "kv: bad element type %d", (int)type);
        return NULL;
    }
    if (type == WG_KV_Q8_0 && (k_dim % WG_QK8_0 != 0 || v_dim % WG_QK8_0 != 0)) {
        wg_error(WG_ERR_UNSUPPORTED, "kv: q8_0 rows need multiples of %d elements (k_dim=%d v_dim=%d)",
                 WG_QK8_0, k_dim, v_dim);
        return NULL;
    }
    wg_kv_t *kv = calloc(1, sizeof *kv);
    if (!kv) goto nomem;
    kv->n_layer = n_layer;
    kv->k_dim = k_dim;
    kv->v_dim = v_dim;
    kv->type = type;
    kv->k_rb = wg_kv_row_bytes(type, k_dim);
    kv->v_rb = wg_kv_row_bytes(type, v_dim);
    kv->f16c = S_X86 && strcmp(wg_cpu_simd_name(), "scalar") != 0;
    kv->bt = block_tokens ? block_tokens : WG_KV_DEFAULT_BLOCK;
    kv->layer_bytes = (size_t)kv->bt * (kv->k_rb + kv->v_rb);
    size_t block_bytes = kv->layer_bytes * (size_t)n_layer;
    size_t nb = budget_bytes / block_bytes;
    if (nb < 1) nb = 1;
    if (nb > INT32_MAX / 2) {
        wg_error(WG_ERR_RANGE, "kv: budget_bytes=%zu gives too many blocks", budget_bytes);
        free(kv);
        return NULL;
    }
    kv->n_blocks = (int32_t)nb;
    if (host_pool) s_pool_alloc(kv, nb * block_bytes);
    kv->free_stack = malloc(nb * sizeof(int32_t));
    if ((host_pool && !kv->pool) || !kv->free_stack) goto nomem;
    /* Block 0 on top: fresh caches hand out blocks in increasing order. */
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_stack[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    return kv;
nomem:
    wg_error(WG_ERR_NOMEM, "kv: cannot allocate %zu bytes", budget_bytes);
    wg_kv_free(&kv);
    return NULL;
}

wg_kv_t *wg_kv_new(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                   size_t budget_bytes) {
    return s_new(n_layer, k_dim, v_dim, block_tokens, budget_bytes, true, WG_KV_F32);
}

wg_kv_t *wg_kv_new_typed(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                         size_t budget_bytes, wg_kv_type_t type) {
    return s_new(n_layer, k_dim, v_dim, block_tokens, budget_bytes, true, type);
}

wg_kv_t *wg_kv_new_tables(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                          size_t budget_bytes) {
    return s_new(n_layer, k_dim, v_dim, block_tokens, budget_bytes, false, WG_KV_F32);
}

void wg_kv_set_device(wg_kv_t *kv, void *dev, void (*dev_free)(void *)) {
    WG_ASSERT(kv && !kv->dev);
    kv->dev = dev;
    kv->dev_free = dev_free;
}

void *wg_kv_device(const wg_kv_t *kv) { return kv->dev; }

const int32_t *wg_kv_seq_blocks(const wg_kv_t *kv, int32_t seq, int32_t *n_blocks) {
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used) {
        *n_blocks = 0;
        return NULL;
    }
    *n_blocks = kv->seqs[seq].n_blocks;
    return kv->seqs[seq].table;
}

wg_kv_t *wg_kv_new_recurrent(size_t state_floats, size_t budget_bytes) {
    if (state_floats == 0 || state_floats > ((size_t)1 << 40) / sizeof(float)) {
        wg_error(WG_ERR_INVAL, "kv: bad recurrent state size %zu floats", state_floats);
        return NULL;
    }
    wg_kv_t *kv = calloc(1, sizeof *kv);
    if (!kv) goto nomem;
    kv->n_layer = 1;
    kv->bt = WG_KV_STATE_TOKENS;
    kv->type = WG_KV_F32;
    kv->state_floats = state_floats;
    kv->layer_bytes = state_floats * sizeof(float);
    size_t nb = budget_bytes / (state_floats * sizeof(float));
    if (nb < 1) nb = 1;
    if (nb > 1 << 20) nb = 1 << 20;
    kv->n_blocks = (int32_t)nb;
    s_pool_alloc(kv, nb * state_floats * sizeof(float));
    kv->free_stack = malloc(nb * sizeof(int32_t));
    if (!kv->pool || !kv->free_stack) goto nomem;
    for (int32_t i = 0; i < kv->n_blocks; i++) kv->free_stack[i] = kv->n_blocks - 1 - i;
    kv->n_free = kv->n_blocks;
    return kv;
nomem:
    wg_error(WG_ERR_NOMEM, "kv: cannot allocate %zu bytes of recurrent state", budget_bytes);
    wg_kv_free(&kv);
    return NULL;
}

bool wg_kv_is_recurrent(const wg_kv_t *kv) { return kv->state_floats > 0; }
size_t wg_kv_state_floats(const wg_kv_t *kv) { return kv->state_floats; }

void wg_kv_free(wg_kv_t **pkv) {
    if (!pkv || !*pkv) return;
    wg_kv_t *kv = *pkv;
    if (kv->dev && kv->dev_free) kv->dev_free(kv->dev);
    for (int32_t i = 0; i < kv->n_seqs; i++) free(kv->seqs[i].table);
    free(kv->seqs);
    free(kv->free_stack);
    free(kv->ref);
    free(kv->pb);
    free(kv->ptok);
    free(kv->ht);
    if (kv->map)
        munmap(kv->map, kv->map_bytes);
    else
        free(kv->pool);
    free(kv);
    *pkv = NULL;
}

void wg_kv_prefault(wg_kv_t *kv) {
    if (!kv->pool) return;
    const size_t bytes = (size_t)kv->n_blocks * wg_kv_block_bytes(kv);
    volatile char *p = kv->pool;
    for (size_t off = 0; off < bytes; off += 4096) p[off] = p[off];
}

int32_t wg_kv_block_tokens(const wg_kv_t *kv) { return kv->bt; }
wg_kv_type_t wg_kv_type(const wg_kv_t *kv) { return kv->type; }
int32_t wg_kv_k_dim(const wg_kv_t *kv) { return kv->k_dim; }
int32_t wg_kv_v_dim(const wg_kv_t *kv) { return kv->v_dim; }
int32_t wg_kv_n_blocks(const wg_kv_t *kv) { return kv->n_blocks; }
int32_t wg_kv_n_free_blocks(const wg_kv_t *kv) { return kv->n_free + kv->n_cached; }
size_t wg_kv_block_bytes(const wg_kv_t *kv) { return kv->layer_bytes * (size_t)kv->n_layer; }

static s_seq_t *s_seq(const wg_kv_t *kv, int32_t seq) {
    if (seq < 0 || seq >= kv->n_seqs || !kv->seqs[seq].used) return NULL;
    return &kv->seqs[seq];
}

wg_status wg_kv_seq_new(wg_kv_t *kv, int32_t *seq) {
    WG_ASSERT(kv && seq);
    for (int32_t i = 0; i < kv->n_seqs; i++) {
        if (!kv->seqs[i].used) {
            kv->seqs[i].used = true;
            kv->seqs[i].len = 0;
            kv->seqs[i].n_blocks = 0;
            kv->seqs[i].lo = 0;
            kv->seqs[i].reg_n = 0;
            kv->seqs[i].tail = -1;
            kv->seqs[i].tail_gen = 0;
            kv->seqs[i].chain_off = false;
            *seq = i;
            return WG_OK;
        }
    }
    int32_t n = kv->n_seqs ? kv->n_seqs * 2 : 8;
    if (n > 1 << 20) return wg_error(WG_ERR_FULL, "kv: too many sequences (%d)", kv->n_seqs);
    s_seq_t *ns = realloc(kv->seqs, (size_t)n * sizeof *ns);
    if (!ns) return wg_error(WG_ERR_NOMEM, "kv: sequence table of %d", n);
    memset(ns + kv->n_seqs, 0, (size_t)(n - kv->n_seqs) * sizeof *ns);
    kv->seqs = ns;
    *seq = kv->n_seqs;
    kv->n_seqs = n;
    kv->seqs[*seq].used = true;
    kv->seqs[*seq].tail = -1;
    return WG_OK;
}

/* ---- prefix cache internals ---- */

static void s_lru_unlink(wg_kv_t *kv, int32_t b) {
    s_pblk_t *p = &kv->pb[b];
    if (p->prev >= 0) kv->pb[p->prev].next = p->next;
    else kv->lru_head = p->next;
    if (p->next >= 0) kv->pb[p->next].prev = p->prev;
    else kv->lru_tail = p->prev;
    p->prev = p->next = -1;
    kv->n_cached--;
}

static void s_lru_append(wg_kv_t *kv, int32_t b) {
    s_pblk_t *p = &kv->pb[b];
    p->prev = kv->lru_tail;
    p->next = -1;
    if (kv->lru_tail >= 0) kv->pb[kv->lru_tail].next = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

static uint64_t s_mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static uint64_t s_ident_hash(const wg_kv_t *kv, int32_t par, uint32_t par_gen, const int32_t *toks) {
    uint64_t h = s_mix(0x243f6a8885a308d3ull, (uint64_t)(uint32_t)par << 32 | par_gen);
    for (int32_t i = 0; i < kv->bt; i++) h = s_mix(h, (uint32_t)toks[i]);
    return h;
}

/* The registered block with this identity, or -1. */
static int32_t s_find(const wg_kv_t *kv, uint64_t h, int32_t par, uint32_t par_gen, const int32_t *toks) {
    for (uint32_t i = (uint32_t)h & kv->ht_mask;; i = (i + 1) & kv->ht_mask) {
        const int32_t b = kv->ht[i];
        if (b < 0) return -1;
        const s_pblk_t *p = &kv->pb[b];
        if (p->h == h && p->par == par && p->par_gen == par_gen &&
            !memcmp(kv->ptok + (size_t)b * (size_t)kv->bt, toks, (size_t)kv->bt * sizeof *toks))
            return b;
    }
}

static void s_register(wg_kv_t *kv, int32_t b, uint64_t h, int32_t par, uint32_t par_gen, const int32_t *toks) {
    s_pblk_t *p = &kv->pb[b];
    p->h = h;
    p->par = par;
    p->par_gen = par_gen;
    p->reg = true;
    memcpy(kv->ptok + (size_t)b * (size_t)kv->bt, toks, (size_t)kv->bt * sizeof *toks);
    uint32_t i = (uint32_t)h & kv->ht_mask;
    while (kv->ht[i] >= 0) i = (i + 1) & kv->ht_mask;
    kv->ht[i] = b;
}

/* Drop block b's identity (backward-shift deletion keeps every probe run
 * unbroken); its generation moves on so no child can name it again. */
static void s_unregister(wg_kv_t *kv, int32_t b) {
    s_pblk_t *p = &kv->pb[b];
    WG_ASSERT(p->reg);
    uint32_t i = (uint32_t)p->h & kv->ht_mask;
    while (kv->ht[i] != b) i = (i + 1) & kv->ht_mask;
    for (uint32_t j = (i + 1) & kv->ht_mask; kv->ht[j] >= 0; j = (j + 1) & kv->ht_mask) {
        const uint32_t home = (uint32_t)kv->pb[kv->ht[j]].h & kv->ht_mask;
        /* Entry j may move into hole i unless its home lies in (i, j]. */
        if (((j - home) & kv->ht_mask) >= ((j - i) & kv->ht_mask)) {
            kv->ht[i] = kv->ht[j];
            i = j;
        }
    }
    kv->ht[i] = -1;
    p->reg = false;
    p->gen++;
}

/* A block for new contents: from the free list, else the least recently
 * used cached block (its identity dropped). The caller checked that one is
 * there (wg_kv_n_free_blocks). */
static int32_t s_take(wg_kv_t *kv) {
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else {
        WG_ASSERT(kv->ref && kv->n_cached > 0);
        b = kv->lru_head;
        s_lru_unlink(kv, b);
        s_unregister(kv, b);
        kv->n_evicted++;
    }
    if (kv->ref) kv->ref[b] = 1;
    return b;
}

/* One holder lets go of block b: free list, or the LRU list if registered. */
static void s_drop(wg_kv_t *kv, int32_t b) {
    if (kv->ref) {
        WG_ASSERT(kv->ref[b] > 0);
        if (--kv->ref[b] > 0) return;
        if (kv->pb[b].reg) {
            s_lru_append(kv, b);
            return;
        }
    }
    kv->free_stack[kv->n_free++] = b;
}

/* Another holder for a registered block (taken off the LRU list if idle). */
static void s_hold(wg_kv_t *kv, int32_t b) {
    if (kv->ref[b]++ == 0) s_lru_unlink(kv, b);
}

/* Return blocks table[from..n_blocks-1], last first (holes below lo were
 * returned when they were released). */
static void s_release(wg_kv_t *kv, s_seq_t *s, int32_t from) {
    for (int32_t i = s->n_blocks - 1; i >= from && i >= s->lo; i--) s_drop(kv, s->table[i]);
    s->n_blocks = from;
    if (s->lo > from) s->lo = from;
}

void wg_kv_seq_free(wg_kv_t *kv, int32_t seq) {
    s_seq_t *s = s_seq(kv, seq);
    if (!s) return;
    s_release(kv, s, 0);
    s->used = false;
    s->len = 0;
    s->lo = 0;
    s->reg_n = 0;
    s->tail = -1;
    s->chain_off = false;
}

int32_t wg_kv_seq_len(const wg_kv_t *kv, int32_t seq) {
    const s_seq_t *s = s_seq(kv, seq);
    return s ? s->len : -1;
}

int32_t wg_kv_blocks_needed(const wg_kv_t *kv, int32_t seq, int32_t new_len) {
    const s_seq_t *s = s_seq(kv, seq);
    if (!s || new_len <= 0) return 0;
    if (kv->state_floats) return s->n_blocks ? 0 : 1; /* one state block, any length */
    int32_t need = (int32_t)(((int64_t)new_len + kv->bt - 1) / kv->bt);
    return need > s->n_blocks ? need - s->n_blocks : 0;
}

/* Room for `need` entries in s's block table. */
static wg_status s_table_room(s_seq_t *s, int32_t need) {
    if (need <= s->cap) return WG_OK;
    int32_t cap = s->cap ? s->cap : 4;
    while (cap < need) cap *= 2;
    int32_t *t = realloc(s->table, (size_t)cap * sizeof *t);
    if (!t) return wg_error(WG_ERR_NOMEM, "kv: block table of %d", cap);
    s->table = t;
    s->cap = cap;
    return WG_OK;
}

wg_status wg_kv_reserve(wg_kv_t *kv, int32_t seq, int32_t new_len) {
    s_seq_t *s = s_seq(kv, seq);
    if (!s) return wg_error(WG_ERR_INVAL, "kv: unknown sequence %d", seq);
    if (new_len < 0) return wg_error(WG_ERR_INVAL, "kv: bad length %d", new_len);
    int32_t extra = wg_kv_blocks_needed(kv, seq, new_len);
    if (extra == 0) return WG_OK;
    if (extra > wg_kv_n_free_blocks(kv))
        return wg_error(WG_ERR_FULL, "kv: sequence %d needs %d more blocks, %d free", seq, extra,
                        wg_kv_n_free_blocks(kv));
    int32_t need = s->n_blocks + extra;
    wg_status st = s_table_room(s, need);
    if (st) return st;
    while (s->n_blocks < need) s->table[s->n_blocks++] = s_take(kv);
    /* A recurrent sequence starts from a zero state (fresh or recomputed after preemption). */
    if (kv->state_floats) memset(wg_kv_state(kv, seq), 0, kv->state_floats * sizeof(float));
    return WG_OK;
}

wg_status wg_kv_seq_set_len(wg_kv_t *kv, int32_t seq, int32_t len) {
    s_seq_t *s = s_seq(kv, seq);
    if (!s) return wg_error(WG_ERR_INVAL, "kv: unknown sequence %d", seq);
    const int64_t cap = kv->state_floats ? (s->n_blocks ? (int64_t)INT32_MAX : 0) : (int64_t)s->n_blocks * kv->bt;
    if (len < 0 || (int64_t)len > cap)
        return wg_error(WG_ERR_RANGE, "kv: length %d beyond reserved %d", len, s->n_blocks * kv->bt);
    s->len = len;
    return WG_OK;
}

wg_status wg_kv_truncate(wg_kv_t *kv, int32_t seq, int32_t new_len) {
    s_seq_t *s = s_seq(kv, seq);
    if (!s) return wg_error(WG_ERR_INVAL, "kv: unknown sequence %d", seq);
    if (new_len < 0) return wg_error(WG_ERR_INVAL, "kv: bad length %d", new_len);
    if (new_len >= s->len) return WG_OK;
    if (kv->state_floats && new_len > 0)
        return wg_error(WG_ERR_UNSUPPORTED, "kv: recurrent state of sequence %d cannot be rewound from %d to %d", seq,
                        s->len, new_len);
    if (new_len > 0 && new_len <= s->lo * kv->bt)
        return wg_error(WG_ERR_UNSUPPORTED,
                        "kv: sequence %d cannot be rewound to %d: positions below %d were released (sliding window)",
                        seq, new_len, s->lo * kv->bt);
    /* The block left partly kept will be written again from new_len on: if
     * it is registered it must not change under its identity. Held by this
     * sequence alone it just loses the identity; held by others too, this
     * sequence gets a copy (checked before anything changes). */
    const int32_t keep = (new_len + kv->bt - 1) / kv->bt, part = new_len / kv->bt;
    const bool partial = kv->ref && new_len % kv->bt != 0 && part < s->n_blocks && part >= s->lo;
    const int32_t pbk = partial ? s->table[part] : -1;
    const bool copy = partial && kv->ref[pbk] > 1;
    if (copy && wg_kv_n_free_blocks(kv) < 1)
        return wg_error(WG_ERR_FULL, "kv: sequence %d: no free block to copy a shared block into", seq);
    s->len = new_len;
    s_release(kv, s, keep);
    if (copy) {
        const int32_t nb = s_take(kv);
        const size_t bb = wg_kv_block_bytes(kv);
        memcpy(kv->pool + (size_t)nb * bb, kv->pool + (size_t)pbk * bb, bb);
        s_drop(kv, pbk);
        s->table[part] = nb;
    } else if (partial && kv->pb[pbk].reg) {
        s_unregister(kv, pbk);
    }
    if (kv->ref && s->reg_n > part) {
        s->reg_n = part;
        s->tail = part > 0 ? s->table[part - 1] : -1;
        if (s->tail >= 0) s->tail_gen = kv->pb[s->tail].gen;
        else if (part > 0) s->chain_off = true; /* a released hole: the chain cannot go on */
    }
    return WG_OK;
}

/* First byte of the K (v = false) or V row of (layer, seq, pos). */
static char *s_slot(const wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, bool v) {
    const s_seq_t *s = s_seq(kv, seq);
    WG_ASSERT(!kv->state_floats && kv->pool);
    WG_ASSERT(s && layer >= 0 && layer < kv->n_layer && pos >= 0 && pos / kv->bt < s->n_blocks &&
              pos / kv->bt >= s->lo);
    int32_t blk = s->table[pos / kv->bt];
    int32_t off = pos % kv->bt;
    size_t b = ((size_t)blk * (size_t)kv->n_layer + (size_t)layer) * kv->layer_bytes;
    b += v ? (size_t)kv->bt * kv->k_rb + (size_t)off * kv->v_rb : (size_t)off * kv->k_rb;
    return kv->pool + b;
}

float *wg_kv_k(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos) {
    WG_ASSERT(kv->type == WG_KV_F32);
    return (float *)(void *)s_slot(kv, layer, seq, pos, false);
}

float *wg_kv_v(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos) {
    WG_ASSERT(kv->type == WG_KV_F32);
    return (float *)(void *)s_slot(kv, layer, seq, pos, true);
}

const void *wg_kv_k_row(const wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos) {
    return s_slot(kv, layer, seq, pos, false);
}

const void *wg_kv_v_row(const wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos) {
    return s_slot(kv, layer, seq, pos, true);
}

#if S_X86
/* dst[i] = f16(src[i]) for i < n, 8 at a time; the tail goes through the same
 * instruction, padded, so an element's bits never depend on n. */
__attribute__((target("avx2,f16c"))) static void s_to_f16_f16c(wg_half *dst, const float *src, int32_t n) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) {
        float f[8] = {0};
        wg_half h[8];
        memcpy(f, src + i, (size_t)(n - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)(void *)h,
                         _mm256_cvtps_ph(_mm256_loadu_ps(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        memcpy(dst + i, h, (size_t)(n - i) * sizeof(wg_half));
    }
}
#endif

static void s_put(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, const float *src, int32_t n, bool v) {
    WG_ASSERT(n >= 0 && n <= (v ? kv->v_dim : kv->k_dim));
    char *dst = s_slot(kv, layer, seq, pos, v);
    if (kv->type == WG_KV_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    if (kv->type == WG_KV_Q8_0) {
        WG_ASSERT(n % WG_QK8_0 == 0);
        wg_k_quant_row(WG_TYPE_Q8_0, src, dst, n);
        return;
    }
    wg_half *h = (wg_half *)(void *)dst;
#if S_X86
    if (kv->f16c) {
        s_to_f16_f16c(h, src, n);
        return;
    }
#endif
    for (int32_t i = 0; i < n; i++) h[i] = wg_fp32_to_fp16(src[i]);
}

void wg_kv_put_k(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, const float *src, int32_t n) {
    s_put(kv, layer, seq, pos, src, n, false);
}

void wg_kv_put_v(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, const float *src, int32_t n) {
    s_put(kv, layer, seq, pos, src, n, true);
}

float *wg_kv_state(wg_kv_t *kv, int32_t seq) {
    s_seq_t *s = s_seq(kv, seq);
    WG_ASSERT(kv->state_floats && s && s->n_blocks == 1);
    return (float *)(void *)(kv->pool + (size_t)s->table[0] * kv->state_floats * sizeof(float));
}

int32_t wg_kv_release_before(wg_kv_t *kv, int32_t seq, int32_t pos) {
    s_seq_t *s = s_seq(kv, seq);
    if (!s || kv->state_floats || kv->dev || pos <= 0) return 0;
    int32_t upto = pos / kv->bt; /* blocks [0, upto) hold only positions < pos */
    if (upto > s->n_blocks) upto = s->n_blocks;
    int32_t n = 0;
    for (; s->lo < upto; s->lo++, n++) {
        s_drop(kv, s->table[s->lo]);
        s->table[s->lo] = -1;
    }
    return n;
}

int32_t wg_kv_seq_first_pos(const wg_kv_t *kv, int32_t seq) {
    const s_seq_t *s = s_seq(kv, seq);
    return s ? s->lo * kv->bt : -1;
}

/* ---- prefix cache ---- */

wg_status wg_kv_enable_prefix_cache(wg_kv_t *kv) {
    WG_ASSERT(kv);
    if (kv->ref) return WG_OK;
    if (kv->state_floats || !kv->pool)
        return wg_error(WG_ERR_UNSUPPORTED, "kv: prefix cache needs a host K/V cache (not %s)",
                        kv->state_floats ? "a recurrent state" : "a device cache");
    for (int32_t i = 0; i < kv->n_seqs; i++)
        if (kv->seqs[i].used && kv->seqs[i].n_blocks > 0)
            return wg_error(WG_ERR_INVAL, "kv: prefix cache must be enabled before blocks are handed out");
    uint32_t hs = 16;
    while (hs < 2u * (uint32_t)kv->n_blocks) hs *= 2;
    const size_t nb = (size_t)kv->n_blocks;
    kv->ref = calloc(nb, sizeof *kv->ref);
    kv->pb = calloc(nb, sizeof *kv->pb);
    kv->ptok = malloc(nb * (size_t)kv->bt * sizeof *kv->ptok);
    kv->ht = malloc(hs * sizeof *kv->ht);
    if (!kv->ref || !kv->pb || !kv->ptok || !kv->ht) {
        free(kv->ref);
        free(kv->pb);
        free(kv->ptok);
        free(kv->ht);
        kv->ref = NULL;
        kv->pb = NULL;
        kv->ptok = NULL;
        kv->ht = NULL;
        return wg_error(WG_ERR_NOMEM, "kv: prefix cache tables for %d blocks", kv->n_blocks);
    }
    for (uint32_t i = 0; i < hs; i++) kv->ht[i] = -1;
    for (size_t i = 0; i < nb; i++) kv->pb[i].prev = kv->pb[i].next = -1;
    kv->ht_mask = hs - 1;
    kv->lru_head = kv->lru_tail = -1;
    kv->n_cached = 0;
    return WG_OK;
}

bool wg_kv_prefix_cache_on(const wg_kv_t *kv) { return kv->ref != NULL; }
int32_t wg_kv_n_cached_blocks(const wg_kv_t *kv) { return kv->n_cached; }
int64_t wg_kv_n_evicted_blocks(const wg_kv_t *kv) { return kv->n_evicted; }

int32_t wg_kv_prefix_match(wg_kv_t *kv, int32_t seq, const int32_t *toks, int32_t n) {
    s_seq_t *s = s_seq(kv, seq);
    if (!kv->ref || !s || s->n_blocks != 0 || s->len != 0 || n < kv->bt) return 0;
    const int32_t full = n / kv->bt;
    if (s_table_room(s, full) != WG_OK) return 0;
    int32_t par = -1;
    uint32_t pgen = 0;
    for (int32_t i = 0; i < full; i++) {
        const int32_t *t = toks + (size_t)i * (size_t)kv->bt;
        const int32_t b = s_find(kv, s_ident_hash(kv, par, pgen, t), par, pgen, t);
        if (b < 0) break;
        s_hold(kv, b);
        s->table[s->n_blocks++] = b;
        par = b;
        pgen = kv->pb[b].gen;
    }
    s->reg_n = s->n_blocks;
    s->tail = par;
    s->tail_gen = pgen;
    s->len = s->n_blocks * kv->bt;
    return s->len;
}

void wg_kv_prefix_commit(wg_kv_t *kv, int32_t seq, const int32_t *toks, int32_t n) {
    s_seq_t *s = s_seq(kv, seq);
    if (!kv->ref || !s || s->chain_off) return;
    int32_t full = n / kv->bt;
    if (full > s->n_blocks) full = s->n_blocks;
    for (int32_t i = s->reg_n; i < full; i++) {
        int32_t b = s->table[i];
        if (b < 0) { /* released before it was committed: the chain ends here */
            s->chain_off = true;
            return;
        }
        const int32_t *t = toks + (size_t)i * (size_t)kv->bt;
        if (!kv->pb[b].reg) {
            const uint32_t pgen = s->tail >= 0 ? s->tail_gen : 0; /* a first block has no parent */
            const uint64_t h = s_ident_hash(kv, s->tail, pgen, t);
            const int32_t e = s_find(kv, h, s->tail, pgen, t);
            if (e >= 0) { /* the same prefix computed elsewhere: share that block, drop ours */
                s_hold(kv, e);
                s_drop(kv, b);
                s->table[i] = b = e;
            } else {
                s_register(kv, b, h, s->tail, pgen, t);
            }
        }
        s->tail = b;
        s->tail_gen = kv->pb[b].gen;
        s->reg_n = i + 1;
    }
}
