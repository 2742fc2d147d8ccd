/* wg_store_mem — in-memory store for embedded mode: results in a hash table
 * that grows with them and drops each after the result TTL (as the Redis
 * store's keys expire); nothing durable (a process restart loses queued work
 * by design). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wg_strmap.h"
#include "wg_store.h"

#define MEM_BUCKETS0 4096 /* initial buckets; doubles at load factor 1 */

typedef struct mem_result {
    char *job_id;            /* key */
    uint8_t *data;           /* (len,) msgpack RESULT map */
    size_t len;              /* bytes */
    int64_t expires_ms;      /* monotonic time the result expires (the Redis store's EX) */
    wg_strmap_node node;     /* in the results table, key = job_id */
    struct mem_result *older, *newer; /* insertion order: expiry walks from the oldest */
} mem_result;

typedef struct mem_store {
    wg_store_t base;                 /* ops */
    wg_strmap results;               /* mem_result by job_id (node) */
    mem_result *oldest, *newest;     /* insertion order */
    uint64_t next_entry;             /* entry id counter */
} mem_store;

static int64_t s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static wg_status mem_enqueue(wg_store_t *s, const char *model, const char *job_id,
                             const uint8_t *job, size_t job_len, const uint8_t *owner,
                             size_t owner_len, char *entry_id) {
    (void)model, (void)job_id, (void)job, (void)job_len, (void)owner, (void)owner_len;
    mem_store *m = (mem_store *)s;
    snprintf(entry_id, 64, "%llu-0", (unsigned long long)++m->next_entry);
    return WG_OK;
}

static wg_status mem_recover(wg_store_t *s, wg_store_recover_fn fn, void *arg) {
    (void)s, (void)fn, (void)arg;
    return WG_OK;
}

static mem_result *s_find(mem_store *m, const char *job_id) {
    wg_strmap_node *n = wg_strmap_find(&m->results, job_id);
    return n ? WG_CONTAINER_OF(n, mem_result, node) : NULL;
}

static void s_free_result(mem_result *r) {
    free(r->job_id);
    free(r->data);
    free(r);
}

/* Drop results whose TTL has passed, oldest first (a fixed table that kept
 * every result made each lookup walk ever longer chains, and memory grow
 * without bound). */
static void s_expire(mem_store *m, int64_t now) {
    while (m->oldest && m->oldest->expires_ms <= now) {
        mem_result *r = m->oldest;
        wg_strmap_del(&m->results, &r->node);
        m->oldest = r->newer;
        if (m->oldest) m->oldest->older = NULL;
        else m->newest = NULL;
        s_free_result(r);
    }
}

static wg_status mem_finish(wg_store_t *s, const char *model, const char *entry_id,
                            const char *job_id, const uint8_t *result, size_t len, uint32_t ttl_s) {
    (void)model, (void)entry_id;
    mem_store *m = (mem_store *)s;
    const int64_t now = s_now_ms();
    s_expire(m, now);
    if (s_find(m, job_id)) return WG_OK; /* first writer wins */
    mem_result *r = calloc(1, sizeof *r);
    if (!r) return wg_error(WG_ERR_NOMEM, "result for job=%s", job_id);
    r->job_id = strdup(job_id);
    r->data = malloc(len ? len : 1);
    if (!r->job_id || !r->data) {
        s_free_result(r);
        return wg_error(WG_ERR_NOMEM, "result for job=%s", job_id);
    }
    memcpy(r->data, result, len);
    r->len = len;
    r->expires_ms = now + (int64_t)(ttl_s ? ttl_s : 86400) * 1000;
    r->node.key = r->job_id;
    wg_strmap_add(&m->results, &r->node);
    /* TTLs are one setting per broker, so insertion order is expiry order */
    r->older = m->newest;
    if (m->newest) m->newest->newer = r;
    else m->oldest = r;
    m->newest = r;
    return WG_OK;
}

static wg_status mem_get_result(wg_store_t *s, const char *job_id, uint8_t **out, size_t *len) {
    mem_store *m = (mem_store *)s;
    s_expire(m, s_now_ms());
    mem_result *r = s_find(m, job_id);
    if (!r) return wg_error(WG_ERR_NOTFOUND, "no result for job_id=%s", job_id);
    *out = malloc(r->len ? r->len : 1);
    if (!*out) return wg_error(WG_ERR_NOMEM, "result copy");
    memcpy(*out, r->data, r->len);
    *len = r->len;
    return WG_OK;
}

static wg_status mem_set_failures(wg_store_t *s, const char *job_id, uint32_t failures) {
    (void)s, (void)job_id, (void)failures;
    return WG_OK;
}

static int mem_healthy(wg_store_t *s) {
    (void)s;
    return 1;
}

static void mem_destroy(wg_store_t *s) {
    mem_store *m = (mem_store *)s;
    for (mem_result *r = m->oldest, *next; r; r = next) {
        next = r->newer;
        s_free_result(r);
    }
    wg_strmap_clear(&m->results);
    free(m);
}

static const wg_store_ops s_mem_ops = {mem_enqueue, mem_recover,      mem_finish, mem_get_result,
                                       mem_set_failures, mem_healthy, mem_destroy};

wg_store_t *wg_store_mem_new(void) {
    mem_store *m = calloc(1, sizeof *m);
    if (!m) {
        wg_error(WG_ERR_NOMEM, "memory store");
        return NULL;
    }
    if (wg_strmap_init(&m->results, MEM_BUCKETS0) != WG_OK) {
        free(m);
        wg_error(WG_ERR_NOMEM, "memory store");
        return NULL;
    }
    m->base.ops = &s_mem_ops;
    return &m->base;
}
