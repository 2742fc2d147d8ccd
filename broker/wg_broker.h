/* wg_broker — the waggle broker: job intake on a frontend ROUTER, durable
 * queue (pluggable store: Redis Streams or memory), dispatch to workers on a
 * backend ROUTER within their credits, heartbeats, requeue, results.
 *
 * Design: one thread owns every socket and all state (no locks on the hot
 * path); wg_broker_run() is that thread's loop and can run inside another
 * process (embedded mode, inproc:// endpoints with a shared zmq context).
 * The only cross-thread calls are wg_broker_stop() and the metrics HTTP
 * thread, which reads a text snapshot under a mutex. Protocol: PROTOCOL.md. */
#ifndef WG_BROKER_H
#define WG_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/wg_status.h"

typedef struct wg_broker wg_broker_t;

typedef struct wg_broker_cfg {
    const char *frontend;          /* producer endpoint to bind, e.g. tcp://127.0.0.1:7700 */
    const char *backend;           /* worker endpoint to bind */
    void *zmq_ctx;                 /* external context (borrowed; inproc needs it) or NULL */
    const char *redis_url;         /* redis://[user:pass@]host:port[/db]; NULL = memory store */
    const char *redis_user;        /* ACL user (overrides the URL) or NULL */
    const char *redis_password;    /* password (overrides the URL) or NULL */
    const char *name;              /* consumer name in the Redis group; NULL = "broker" */
    const char *metrics_http;      /* HOST:PORT for GET /metrics, or NULL */
    uint32_t max_attempts;         /* failed attempts before a job fails; 0 = 3 */
    uint64_t queue_max_jobs;       /* waiting jobs per model; 0 = 10000 */
    uint64_t queue_max_tokens;     /* waiting est. prompt tokens per model; 0 = 8000000 */
    uint32_t heartbeat_ms;         /* heartbeat interval; 0 = 1000 */
    uint32_t liveness;             /* missed intervals before death, 3..5; 0 = 3 */
    uint32_t result_ttl_s;         /* result key TTL; 0 = 86400 */
    const char *curve_secret_key;  /* Z85 (40 chars) broker secret key, or NULL = no CURVE */
    const char *const *curve_allow; /* (n_curve_allow,) Z85 client public keys */
    uint32_t n_curve_allow;        /* allow-list length */
    bool require_registered;       /* reject SUBMIT for a model neither registered in the Redis
                                      model registry (waggle models add) nor named by a live
                                      worker's READY/HEARTBEAT `models` (memory store: workers only) */
    uint32_t starve_ms;            /* a queued job older than this may make a loading-capable
                                      worker switch models even while it is busy; 0 = 10000 */
} wg_broker_cfg;

/* Create the broker: binds both endpoints, connects the store and recovers
 * pending jobs (Redis). Returns NULL on failure with the reason in wg_errmsg(). */
wg_broker_t *wg_broker_new(const wg_broker_cfg *cfg);

/* Serve until wg_broker_stop(). Call on one thread only. Returns WG_OK on stop. */
wg_status wg_broker_run(wg_broker_t *b);

/* Ask wg_broker_run to return (thread-safe, async-signal-safe). */
void wg_broker_stop(wg_broker_t *b);

/* Close sockets, store and HTTP server; NULLs *pb; accepts NULL. Not while running. */
void wg_broker_destroy(wg_broker_t **pb);

/* Current Prometheus text (malloc'd; caller frees). Thread-safe; NULL on OOM. */
char *wg_broker_metrics_text(wg_broker_t *b);

#endif
