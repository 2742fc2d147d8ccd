/* wg_strmap — intrusive chained hash table keyed by NUL-terminated strings.
 *
 * The owner embeds a wg_strmap_node in its own struct and points node.key at
 * its key (which must outlive the entry and not change while it is in the
 * map); the table only allocates its bucket array, so adding never fails and
 * entries cost no allocation of their own. Buckets double at load factor 1
 * (an allocation failure there keeps the old array: longer chains, still
 * correct). Keys are hashed once (FNV-1a) and the hash kept in the node, so
 * a lookup compares strings only on a full-hash match and growing rehashes
 * nothing. Not thread-safe: one owner thread. */
#ifndef WG_STRMAP_H
#define WG_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_status.h"

/* The struct that embeds `member` (a wg_strmap_node) at address ptr. */
#define WG_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef struct wg_strmap_node {
    struct wg_strmap_node *next; /* bucket chain */
    const char *key;             /* borrowed from the owner; set before wg_strmap_add */
    uint32_t hash;               /* FNV-1a of key, set by wg_strmap_add */
} wg_strmap_node;

typedef struct wg_strmap {
    wg_strmap_node **buckets; /* [nbuckets] chains */
    size_t nbuckets;          /* power of two */
    size_t n;                 /* entries */
} wg_strmap;

/* Where a walk is: see wg_strmap_iter_next. */
typedef struct wg_strmap_iter {
    size_t bucket;        /* next bucket to open */
    wg_strmap_node *next; /* next node to return, or NULL */
} wg_strmap_iter;

/* nbuckets0 is rounded up to a power of two (at least 1). ERR_NOMEM leaves
 * *m empty (wg_strmap_clear is still safe). */
wg_status wg_strmap_init(wg_strmap *m, size_t nbuckets0);

/* Frees the bucket array (not the entries: they belong to the owner, who
 * walks them first if they need freeing). Safe on a zeroed or cleared map. */
void wg_strmap_clear(wg_strmap *m);

uint32_t wg_strmap_hash(const char *key);

/* The entry whose key equals key, or NULL. */
wg_strmap_node *wg_strmap_find(const wg_strmap *m, const char *key);

/* Adds node (node->key set by the caller). Does not check for an equal key
 * already present: the newest one is found first. */
void wg_strmap_add(wg_strmap *m, wg_strmap_node *node);

/* Removes node (this very entry, found by address). false if absent. */
bool wg_strmap_del(wg_strmap *m, wg_strmap_node *node);

/* Walk every entry once, in no particular order:
 *   wg_strmap_iter it; wg_strmap_iter_init(m, &it);
 *   for (wg_strmap_node *n; (n = wg_strmap_iter_next(m, &it));) ...
 * The node just returned may be deleted (and freed) during the walk; adding
 * entries or deleting any other one during a walk is not allowed. */
void wg_strmap_iter_init(const wg_strmap *m, wg_strmap_iter *it);
wg_strmap_node *wg_strmap_iter_next(const wg_strmap *m, wg_strmap_iter *it);

#endif
