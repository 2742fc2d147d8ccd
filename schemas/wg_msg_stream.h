/* wg_msg_stream — worker XPUB messages (PROTOCOL.md §8): TOKEN events on
 * topic "t/<job_id>" and METRICS on "m/<worker_id>". Frames: topic, "WGL1",
 * command, body. Ownership and error rules as in wg_msg_producer.h. */
#ifndef WG_MSG_STREAM_H
#define WG_MSG_STREAM_H

#include "wg_msg.h"

typedef struct wg_msg_top_logprob {
    uint32_t token_id; /* alternative token */
    float logprob;     /* its logprob */
} wg_msg_top_logprob;

typedef struct wg_msg_token {
    char *job_id;             /* required */
    uint64_t seq;             /* 0,1,2… per job and attempt */
    uint32_t token_id;        /* sampled token */
    char *text_delta;         /* whole UTF-8 characters; "" allowed; NULL encodes "" */
    bool has_logprob;         /* logprob present */
    float logprob;            /* chosen token's logprob */
    wg_msg_top_logprob *top;  /* (n_top,) alternatives or NULL */
    uint32_t n_top;           /* <= 20 */
    uint32_t attempt;         /* 0 = absent */
    bool final;               /* last event of the job */
    char *finish_reason;      /* final only: stop|length|cancelled */
} wg_msg_token;

wg_status wg_msg_token_encode(const wg_msg_token *m, wg_msg_buf *out);
wg_status wg_msg_token_decode(const uint8_t *data, size_t len, wg_msg_token *out);
void wg_msg_token_clear(wg_msg_token *m);
/* Topic "t/<job_id>" into buf (cap >= 3 + WG_MSG_MAX_ID). Returns its length. */
size_t wg_msg_token_topic(const char *job_id, char *buf, size_t cap);

/* Residency counters of one model (METRICS `model_stats`, since 0.2). */
typedef struct wg_msg_model_stat {
    char *model;             /* 1..256 bytes; unique within one metrics map */
    uint64_t loads;          /* on-demand loads completed */
    uint64_t load_failures;  /* loads that failed */
    double load_seconds;     /* seconds spent in its completed loads (finite, >= 0) */
    uint64_t evictions;      /* times it was evicted to respect the memory budget */
    uint64_t resident_bytes; /* bytes it holds now (weights + KV); 0 = not resident */
} wg_msg_model_stat;

typedef struct wg_msg_metrics {
    char *worker_id;          /* required */
    uint64_t ts_ms;           /* unix milliseconds */
    double tokens_per_s;      /* generated tokens per second, last interval */
    uint32_t running;         /* sequences in the batch */
    uint32_t waiting;         /* admitted but waiting (prefill / paused) */
    uint32_t credits;         /* current credit limit */
    uint64_t kv_used_blocks;  /* paged KV blocks in use */
    uint64_t kv_total_blocks; /* paged KV blocks in all */
    double kv_usage;          /* 0..1 */
    char **models;            /* (n_models,) resident models */
    uint32_t n_models;        /* <= 64 */
    uint64_t mem_used_bytes;  /* model + KV memory in use */
    uint64_t mem_total_bytes; /* memory budget */
    wg_msg_model_stat *model_stats; /* (n_model_stats,) per-model residency counters or NULL */
    uint32_t n_model_stats;   /* <= 64; 0 = not sent */
    uint64_t prompt_tokens_cached;   /* since 0.2: prompt tokens whose K/V came from the prefix cache (total) */
    uint64_t prompt_tokens_computed; /* since 0.2: prompt and recompute tokens computed (total) */
} wg_msg_metrics;

wg_status wg_msg_metrics_encode(const wg_msg_metrics *m, wg_msg_buf *out);
wg_status wg_msg_metrics_decode(const uint8_t *data, size_t len, wg_msg_metrics *out);
void wg_msg_metrics_clear(wg_msg_metrics *m);
/* Deep copy into a zeroed dst. Errors: ERR_NOMEM. */
wg_status wg_msg_metrics_copy(wg_msg_metrics *dst, const wg_msg_metrics *src);
size_t wg_msg_metrics_topic(const char *worker_id, char *buf, size_t cap);

#endif
