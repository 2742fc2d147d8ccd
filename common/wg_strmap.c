/* wg_strmap — intrusive chained string hash table (see wg_strmap.h). */
#include "wg_strmap.h"

#include <stdlib.h>
#include <string.h>

uint32_t wg_strmap_hash(const char *key) {
    uint32_t h = 2166136261u;
    for (const unsigned char *s = (const unsigned char *)key; *s; s++) h = (h ^ *s) * 16777619u;
    return h;
}

wg_status wg_strmap_init(wg_strmap *m, size_t nbuckets0) {
    WG_ASSERT(m);
    size_t nb = 1;
    while (nb < nbuckets0) nb *= 2;
    memset(m, 0, sizeof *m);
    if (!(m->buckets = calloc(nb, sizeof *m->buckets))) return wg_error(WG_ERR_NOMEM, "hash table of %zu buckets", nb);
    m->nbuckets = nb;
    return WG_OK;
}

void wg_strmap_clear(wg_strmap *m) {
    if (!m) return;
    free(m->buckets);
    memset(m, 0, sizeof *m);
}

/* Twice the buckets: chains stay ~1 long (a fixed table let them grow to
 * dozens with 10^5 broker jobs, and the strcmp walk of every lookup became
 * the broker's largest cost). */
static void s_grow(wg_strmap *m) {
    const size_t nn = m->nbuckets ? m->nbuckets * 2 : 16;
    wg_strmap_node **nb = calloc(nn, sizeof *nb);
    if (!nb) return; /* longer chains, still correct */
    for (size_t i = 0; i < m->nbuckets; i++)
        for (wg_strmap_node *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            const size_t k = e->hash & (nn - 1);
            e->next = nb[k];
            nb[k] = e;
        }
    free(m->buckets);
    m->buckets = nb;
    m->nbuckets = nn;
}

wg_strmap_node *wg_strmap_find(const wg_strmap *m, const char *key) {
    if (!m->nbuckets) return NULL;
    const uint32_t h = wg_strmap_hash(key);
    for (wg_strmap_node *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && !strcmp(e->key, key)) return e;
    return NULL;
}

void wg_strmap_add(wg_strmap *m, wg_strmap_node *node) {
    WG_ASSERT(node && node->key);
    if (m->n >= m->nbuckets) s_grow(m);
    WG_ASSERT(m->nbuckets); /* the first grow of a zeroed map failed: out of memory */
    node->hash = wg_strmap_hash(node->key);
    wg_strmap_node **b = &m->buckets[node->hash & (m->nbuckets - 1)];
    node->next = *b;
    *b = node;
    m->n++;
}

bool wg_strmap_del(wg_strmap *m, wg_strmap_node *node) {
    if (!m->nbuckets) return false;
    wg_strmap_node **pp = &m->buckets[node->hash & (m->nbuckets - 1)];
    while (*pp && *pp != node) pp = &(*pp)->next;
    if (!*pp) return false;
    *pp = node->next;
    node->next = NULL;
    m->n--;
    return true;
}

void wg_strmap_iter_init(const wg_strmap *m, wg_strmap_iter *it) {
    it->bucket = 0;
    it->next = NULL;
    (void)m;
}

wg_strmap_node *wg_strmap_iter_next(const wg_strmap *m, wg_strmap_iter *it) {
    while (!it->next && it->bucket < m->nbuckets) it->next = m->buckets[it->bucket++];
    wg_strmap_node *e = it->next;
    if (e) it->next = e->next;
    return e;
}
