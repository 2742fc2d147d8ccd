/* wg_store — the broker's queue store interface: durable (Redis Streams, see
 * PROTOCOL.md §9) or in-memory (embedded mode). The broker keeps dispatch
 * state in memory; the store only makes accepted jobs and results survive a
 * broker restart. All calls run on the broker thread. */
#ifndef WG_STORE_H
#define WG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"

typedef struct wg_store wg_store_t;

/* A job handed back by recovery; every pointer is borrowed for the callback. */
typedef struct wg_store_entry {
    const char *job_id;   /* 32 hex chars */
    const char *model;    /* queue it belongs to */
    const char *entry_id; /* store reference ("1700000000000-0") */
    const uint8_t *job;   /* (job_len,) msgpack job map incl. job_id */
    size_t job_len;       /* bytes */
    const uint8_t *owner; /* (owner_len,) producer routing identity */
    size_t owner_len;     /* bytes */
    uint32_t failures;    /* failed attempts recorded so far */
} wg_store_entry;

typedef void (*wg_store_recover_fn)(void *arg, const wg_store_entry *e);

typedef struct wg_store_ops {
    /* Make the job durable; writes its reference into entry_id (cap >= 64). */
    wg_status (*enqueue)(wg_store_t *s, const char *model, const char *job_id, const uint8_t *job,
                         size_t job_len, const uint8_t *owner, size_t owner_len, char *entry_id);
    /* Call fn for every accepted job without a stored result (start-up). */
    wg_status (*recover)(wg_store_t *s, wg_store_recover_fn fn, void *arg);
    /* Store the result once (first writer wins) then acknowledge the entry. */
    wg_status (*finish)(wg_store_t *s, const char *model, const char *entry_id, const char *job_id,
                        const uint8_t *result, size_t len, uint32_t ttl_s);
    /* Fetch a stored result (malloc'd copy). ERR_NOTFOUND when absent. */
    wg_status (*get_result)(wg_store_t *s, const char *job_id, uint8_t **out, size_t *len);
    /* Record failed attempts (survives restarts; poison-loop guard). */
    wg_status (*set_failures)(wg_store_t *s, const char *job_id, uint32_t failures);
    /* Health for metrics: 1 connected, 0 not. */
    int (*healthy)(wg_store_t *s);
    void (*destroy)(wg_store_t *s);
} wg_store_ops;

struct wg_store {
    const wg_store_ops *ops; /* implementation */
};

/* In-memory store (not durable). NULL on OOM. */
wg_store_t *wg_store_mem_new(void);

typedef struct wg_store_redis_cfg {
    const char *url;      /* redis://[user:pass@]host:port[/db] */
    const char *user;     /* overrides URL user, or NULL */
    const char *password; /* overrides URL password, or NULL */
    const char *group;    /* consumer group, "waggle" */
    const char *consumer; /* consumer name */
} wg_store_redis_cfg;

/* Redis Streams store; connects now (fails if Redis is unreachable at start). */
wg_store_t *wg_store_redis_new(const wg_store_redis_cfg *cfg);

static inline void wg_store_destroy(wg_store_t **ps) {
    if (ps && *ps) {
        (*ps)->ops->destroy(*ps);
        *ps = NULL;
    }
}

#endif
