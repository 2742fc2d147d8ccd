/* wg_store_mem — in-memory store for embedded mode: results in a hash table,
 * nothing durable (a process restart loses queued work by design). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg_store.h"

#define MEM_BUCKETS 4096

typedef struct mem_result {
    char *job_id;            /* key */
    uint8_t *data;           /* (len,) msgpack RESULT map */
    size_t len;              /* bytes */
    struct mem_result *next; /* bucket chain */
} mem_result;

typedef struct mem_store {
    wg_store_t base;                /* ops */
    mem_result *buckets[MEM_BUCKETS]; /* results by job_id */
    uint64_t next_entry;            /* entry id counter */
} mem_store;

static unsigned s_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % MEM_BUCKETS;
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
    for (mem_result *r = m->buckets[s_hash(job_id)]; r; r = r->next)
        if (!strcmp(r->job_id, job_id)) return r;
    return NULL;
}

static wg_status mem_finish(wg_store_t *s, const char *model, const char *entry_id,
                            const char *job_id, const uint8_t *result, size_t len, uint32_t ttl_s) {
    (void)model, (void)entry_id, (void)ttl_s;
    mem_store *m = (mem_store *)s;
    if (s_find(m, job_id)) return WG_OK; /* first writer wins */
    mem_result *r = calloc(1, sizeof *r);
    if (!r) return wg_error(WG_ERR_NOMEM, "result for job=%s", job_id);
    r->job_id = strdup(job_id);
    r->data = malloc(len ? len : 1);
    if (!r->job_id || !r->data) {
        free(r->job_id);
        free(r->data);
        free(r);
        return wg_error(WG_ERR_NOMEM, "result for job=%s", job_id);
    }
    memcpy(r->data, result, len);
    r->len = len;
    unsigned h = s_hash(job_id);
    r->next = m->buckets[h];
    m->buckets[h] = r;
    return WG_OK;
}

static wg_status mem_get_result(wg_store_t *s, const char *job_id, uint8_t **out, size_t *len) {
    mem_result *r = s_find((mem_store *)s, job_id);
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
    for (int i = 0; i < MEM_BUCKETS; i++) {
        for (mem_result *r = m->buckets[i]; r;) {
            mem_result *n = r->next;
            free(r->job_id);
            free(r->data);
            free(r);
            r = n;
        }
    }
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
    m->base.ops = &s_mem_ops;
    return &m->base;
}
