/* wg_kv — paged KV cache: fixed-size blocks from one pool, a free list, and a
 * block table per sequence (vLLM's PagedAttention layout). Values are F32 by
 * default, as llama.cpp's f32 cache, so results match its references; an F16
 * cache (wg_kv_new_typed) halves the bytes attention reads per step, at the
 * cost of rounding every stored K/V element to binary16, and a Q8_0 cache
 * takes 34 bytes per 32 elements (0.53 of F16), each row quantized per block
 * of 32 when stored.
 *
 * A block holds `block_tokens` consecutive positions of one sequence for every
 * layer: [layer][K|V][token][dim], elements of the cache's type. A sequence's
 * position p lives in block table[p / block_tokens], slot p % block_tokens, so
 * inside a block the row of position p+1 follows the row of p (k_dim / v_dim
 * elements later). Memory is allocated once
 * (the budget); sequences only move block ids between the free list and their
 * tables, so admission control is a count of free blocks.
 *
 * Recurrent models (Mamba, RWKV) keep a fixed-size state per sequence instead
 * of per-token K/V: wg_kv_new_recurrent makes a cache whose "block" is one
 * sequence's whole state. A sequence takes its block on the first reserve
 * (zeroed: a fresh recurrent state) and holds it whatever its length, so the
 * same admission / preemption bookkeeping (blocks needed, free blocks) drives
 * both kinds, and a preempted sequence restarts from a zero state. Its
 * nominal block_tokens is WG_KV_STATE_TOKENS, the longest sequence it takes.
 *
 * Not thread-safe: one owner (the engine loop) at a time. */
#ifndef WG_KV_H
#define WG_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"

typedef struct wg_kv wg_kv_t;

/* Element type of a K/V cache's rows (a recurrent state is always F32). */
typedef enum {
    WG_KV_F32 = 0,  /* float: the reference numbers */
    WG_KV_F16,      /* IEEE binary16, rounded to nearest even when stored */
    WG_KV_Q8_0,     /* GGUF Q8_0 blocks of 32 (an fp16 scale, 32 int8), quantized when stored;
                     * rows (and, for attention, head slices) are whole blocks */
} wg_kv_type_t;

/* "f32" / "f16" / "q8_0". */
const char *wg_kv_type_name(wg_kv_type_t t);
/* Parse "f32" / "f16" / "q8_0" (case-sensitive). WG_ERR_INVAL naming `s` otherwise. */
wg_status wg_kv_type_parse(const char *s, wg_kv_type_t *t);
/* Bytes of a row of n elements (Q8_0: n % 32 == 0, asserted; 0 for an
 * unknown type). */
size_t wg_kv_row_bytes(wg_kv_type_t t, int64_t n);

#define WG_KV_DEFAULT_BLOCK 16
#define WG_KV_STATE_TOKENS (1 << 20) /* positions one recurrent-state block covers */

/* n_layer layers of k_dim (= n_head_kv*head_dim) keys and v_dim values per
 * token, blocks of block_tokens (0 = WG_KV_DEFAULT_BLOCK), as many blocks as
 * fit in budget_bytes (at least 1). NULL on failure (wg_errmsg). */
wg_kv_t *wg_kv_new(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                   size_t budget_bytes);
/* wg_kv_new with elements of `type` (budget_bytes counts them at their size;
 * Q8_0 needs k_dim and v_dim multiples of 32, else WG_ERR_UNSUPPORTED). */
wg_kv_t *wg_kv_new_typed(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                         size_t budget_bytes, wg_kv_type_t type);
/* The same bookkeeping (blocks, free list, tables) without a host pool: for
 * a cache whose K/V live on a device (wg_kv_k / wg_kv_v must not be called). */
wg_kv_t *wg_kv_new_tables(int32_t n_layer, int32_t k_dim, int32_t v_dim, int32_t block_tokens,
                          size_t budget_bytes);
/* Attach device-side state (set once); dev_free(dev) runs in wg_kv_free. */
void wg_kv_set_device(wg_kv_t *kv, void *dev, void (*dev_free)(void *));
/* The attached device state, or NULL for a host cache. */
void *wg_kv_device(const wg_kv_t *kv);
/* Block table of `seq` (*n_blocks entries; position p in table[p / block_tokens]),
 * or NULL with *n_blocks = 0 for an unknown sequence. Valid until the next
 * reserve / truncate / free of that sequence. */
const int32_t *wg_kv_seq_blocks(const wg_kv_t *kv, int32_t seq, int32_t *n_blocks);

/* A recurrent-state cache: one block = state_floats floats (one sequence's
 * whole state, all layers), as many as fit in budget_bytes (at least 1).
 * NULL on failure (wg_errmsg). */
wg_kv_t *wg_kv_new_recurrent(size_t state_floats, size_t budget_bytes);
void wg_kv_free(wg_kv_t **kv);

/* True for a wg_kv_new_recurrent cache. */
bool wg_kv_is_recurrent(const wg_kv_t *kv);
/* Floats of one sequence's state (0 for a K/V cache). */
size_t wg_kv_state_floats(const wg_kv_t *kv);
/* The state of `seq` (state_floats floats), which must hold its block
 * (reserved with a length >= 1; asserted). Zero right after that reserve. */
float *wg_kv_state(wg_kv_t *kv, int32_t seq);

/* Touch every page of the pool now, so that no later store faults a fresh
 * page in (first touches are slow, and on some VMs very slow: ~0.3 GB/s).
 * For long-lived caches and benchmarks of steady-state steps. */
void wg_kv_prefault(wg_kv_t *kv);

int32_t wg_kv_block_tokens(const wg_kv_t *kv);
wg_kv_type_t wg_kv_type(const wg_kv_t *kv);      /* element type (WG_KV_F32 for a state cache) */
int32_t wg_kv_k_dim(const wg_kv_t *kv);          /* elements per key row */
int32_t wg_kv_v_dim(const wg_kv_t *kv);          /* elements per value row */
int32_t wg_kv_n_blocks(const wg_kv_t *kv);       /* total blocks */
int32_t wg_kv_n_free_blocks(const wg_kv_t *kv);  /* blocks on the free list (+ idle cached blocks, which are
                                                   taken back when the list is empty: see the prefix cache) */
size_t wg_kv_block_bytes(const wg_kv_t *kv);     /* bytes per block (all layers, K and V) */

/* A new empty sequence; *seq gets its id (small, reused after free).
 * WG_ERR_FULL when the sequence table is full. */
wg_status wg_kv_seq_new(wg_kv_t *kv, int32_t *seq);
/* Return all of a sequence's blocks to the free list and forget it. */
void wg_kv_seq_free(wg_kv_t *kv, int32_t seq);
/* Tokens stored for `seq` (-1 for an unknown id). */
int32_t wg_kv_seq_len(const wg_kv_t *kv, int32_t seq);
/* Blocks needed to grow `seq` to new_len tokens (0 if already enough). */
int32_t wg_kv_blocks_needed(const wg_kv_t *kv, int32_t seq, int32_t new_len);
/* Make room for positions up to new_len-1 (allocates blocks; the length only
 * changes via wg_kv_seq_set_len). WG_ERR_FULL leaves the sequence unchanged. */
wg_status wg_kv_reserve(wg_kv_t *kv, int32_t seq, int32_t new_len);
/* Set the stored length (<= reserved capacity). */
wg_status wg_kv_seq_set_len(wg_kv_t *kv, int32_t seq, int32_t len);
/* Drop positions >= new_len and free the blocks no longer used. A recurrent
 * state cannot be rewound: only new_len 0 (or >= len) is accepted there,
 * other lengths give WG_ERR_UNSUPPORTED. */
wg_status wg_kv_truncate(wg_kv_t *kv, int32_t seq, int32_t new_len);

/* Key / value vector of `seq` at position `pos` in `layer` (k_dim / v_dim
 * floats) of an F32 cache (asserted). pos must be inside the reserved
 * capacity (asserted). */
float *wg_kv_k(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos);
float *wg_kv_v(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos);
/* The same rows in the cache's own element type (float, wg_half or
 * wg_block_q8_0 blocks). */
const void *wg_kv_k_row(const wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos);
const void *wg_kv_v_row(const wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos);
/* Store src[0..n) into the first n elements (n <= k_dim / v_dim, asserted;
 * Q8_0: n % 32 == 0) of the key / value row, converted to the cache's type.
 * Any cache type; the conversion of an element never depends on n or on its
 * place in the row (Q8_0: on its block of 32 only). */
void wg_kv_put_k(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, const float *src, int32_t n);
void wg_kv_put_v(wg_kv_t *kv, int32_t layer, int32_t seq, int32_t pos, const float *src, int32_t n);

/* Sliding-window release: return to the free list the blocks of `seq` that
 * hold only positions < pos. Their table entries become holes (-1); those
 * positions must not be read or written again (asserted), and the sequence
 * cannot be truncated back into them. For a cache whose every layer attends
 * only to the last `window` positions: after a step, positions below
 * len - window + 1 are never read again. Returns the blocks freed (0 for a
 * recurrent or device cache, which keep theirs). */
int32_t wg_kv_release_before(wg_kv_t *kv, int32_t seq, int32_t pos);
/* First position of `seq` still held (0 unless blocks were released; -1 for
 * an unknown sequence). */
int32_t wg_kv_seq_first_pos(const wg_kv_t *kv, int32_t seq);

/* ---- prefix cache ----
 * Sequences whose token lists start the same share the K/V blocks of that
 * start instead of computing and storing them again (a system prompt or a
 * few-shot preamble common to many requests). Only full blocks are shared,
 * and only between sequences whose tokens agree from position 0 through the
 * block's end: the K/V of a position depend on every token before it, and
 * the engine computes them bitwise the same in any batch or chunking, so a
 * shared block holds exactly what the sequence would have computed itself.
 * Blocks nobody holds any more stay cached (counted free) until their room
 * is needed, least recently used first. Host K/V caches only. */

/* Turn the prefix cache on (before any block is handed out). WG_ERR_UNSUPPORTED
 * for a recurrent-state or device cache. */
wg_status wg_kv_enable_prefix_cache(wg_kv_t *kv);
bool wg_kv_prefix_cache_on(const wg_kv_t *kv);
/* For a new, empty sequence: attach the longest chain of cached full blocks
 * that matches toks[0..n) from position 0, and set the sequence's length to
 * it. Returns the tokens matched (a multiple of block_tokens, <= n; 0 when the
 * cache is off or nothing matches). Matched blocks that were idle stop
 * counting as free. */
int32_t wg_kv_prefix_match(wg_kv_t *kv, int32_t seq, const int32_t *toks, int32_t n);
/* After K/V of positions [0, n) of `seq` are computed (toks: its tokens):
 * make its full blocks not yet cached findable. A block whose identity is
 * already cached (the same prefix computed by another sequence in the same
 * step) is swapped for the cached one and returns to the free list. Call
 * before wg_kv_release_before for the same step. No-op when the cache is off. */
void wg_kv_prefix_commit(wg_kv_t *kv, int32_t seq, const int32_t *toks, int32_t n);
/* Cached blocks nobody holds (part of wg_kv_n_free_blocks). */
int32_t wg_kv_n_cached_blocks(const wg_kv_t *kv);
/* Cached blocks taken back for new contents so far. */
int64_t wg_kv_n_evicted_blocks(const wg_kv_t *kv);

#endif
