/* wg_msg_worker — backend messages worker <-> broker (PROTOCOL.md §6):
 * READY, HEARTBEAT, FAILED, DISCONNECT. JOB is the job map
 * (wg_msg_job_encode/_decode), DONE is the result map
 * (wg_msg_result_encode(WG_CMD_DONE, …)), CANCEL is wg_msg_req (req 0).
 * Ownership and error rules as in wg_msg_producer.h. */
#ifndef WG_MSG_WORKER_H
#define WG_MSG_WORKER_H

#include "wg_msg.h"
#include "wg_msg_stream.h"

typedef struct wg_msg_ready {
    char *worker_id;       /* 1..128 bytes, unique per worker process */
    uint32_t credits;      /* 0..4096 sequence slots; 0 = take no new jobs (draining) */
    char **models;         /* (n_models,) names held or loadable; empty = any */
    uint32_t n_models;     /* <= 64 */
    char *stream_endpoint; /* XPUB endpoint consumers connect to, or NULL */
    uint64_t mem_budget;   /* bytes it may keep resident (weights + KV); 0 = not given: cannot load */
    uint64_t mem_free;     /* mem_budget minus resident bytes; meaningful when mem_budget > 0 */
} wg_msg_ready;

wg_status wg_msg_ready_encode(const wg_msg_ready *m, wg_msg_buf *out);
wg_status wg_msg_ready_decode(const uint8_t *data, size_t len, wg_msg_ready *out);
void wg_msg_ready_clear(wg_msg_ready *m);

/* Worker -> broker heartbeat; the broker -> worker one is an empty map
 * (wg_msg_empty_encode / this decoder accepts it too). */
typedef struct wg_msg_heartbeat {
    bool has_credits;         /* credits present */
    uint32_t credits;         /* new credit limit, 0..4096 (0 = take no new jobs) */
    bool has_models;          /* models present */
    char **models;            /* (n_models,) */
    uint32_t n_models;        /* <= 64 */
    bool has_mem;             /* mem_budget / mem_free present */
    uint64_t mem_budget;      /* as in READY */
    uint64_t mem_free;        /* as in READY */
    bool has_metrics;         /* metrics present */
    wg_msg_metrics metrics;   /* latest figures (§8.2) */
} wg_msg_heartbeat;

wg_status wg_msg_heartbeat_encode(const wg_msg_heartbeat *m, wg_msg_buf *out);
wg_status wg_msg_heartbeat_decode(const uint8_t *data, size_t len, wg_msg_heartbeat *out);
void wg_msg_heartbeat_clear(wg_msg_heartbeat *m);

typedef struct wg_msg_failed {
    char *job_id;    /* required */
    wg_status code;  /* failure class (wire: its name) */
    char *reason;    /* human reason, <= 1024 bytes, or NULL */
    bool retryable;  /* default true; false ends the job at once */
} wg_msg_failed;

wg_status wg_msg_failed_encode(const wg_msg_failed *m, wg_msg_buf *out);
wg_status wg_msg_failed_decode(const uint8_t *data, size_t len, wg_msg_failed *out);
void wg_msg_failed_clear(wg_msg_failed *m);

typedef struct wg_msg_disconnect {
    char *reason; /* or NULL */
} wg_msg_disconnect;

wg_status wg_msg_disconnect_encode(const wg_msg_disconnect *m, wg_msg_buf *out);
wg_status wg_msg_disconnect_decode(const uint8_t *data, size_t len, wg_msg_disconnect *out);
void wg_msg_disconnect_clear(wg_msg_disconnect *m);

#endif
