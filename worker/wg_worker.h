/* wg_worker — the waggle worker: a DEALER client of the broker backend
 * (PROTOCOL.md §6), one continuous-batching scheduler per resident model, and
 * an XPUB stream publisher for token events and metrics (§8).
 *
 * Design: one thread owns the broker socket, every scheduler and all job
 * state (wg_worker_run is that thread's loop), so nothing on the hot path
 * takes a lock per event. The loop alternates "drain the broker socket" and
 * "one scheduler step per busy model"; each step's events become compact
 * records for the stream thread (wg_stream.h) and, on a sequence's last
 * event, the DONE to the broker. Credits are the scheduler's sequence slots
 * (cfg.max_seqs): the broker never sends more, and jobs over a model's
 * running limit simply wait in its scheduler.
 *
 * Streams: a second thread owns the XPUB (subscriptions, msgpack encoding,
 * sends, METRICS too). The engine loop only copies each TOKEN event into a
 * batch and hands the batch over once per loop turn (tens of ns per event);
 * the stream thread naps 1 ms at a time while records keep coming, so a
 * hand-over normally costs no system call.
 *
 * Flow control: the XPUB has ZMQ_XPUB_NODROP, so a publication to a job whose
 * subscriber's pipe is full fails with EAGAIN. The stream thread then holds
 * that event and the job's later ones in order, retries every millisecond,
 * and tells the loop to pause that job's sequence (wg_sched_pause: out of the
 * batch, KV kept) while other jobs keep running; when the held events are
 * out it tells it to resume. A streamed job's DONE is sent only after the
 * stream thread reports its final event published (or dropped: nobody
 * subscribed) or the stream abandoned. A stream that cannot move for
 * cfg.stream_stall_ms or overflows cfg.max_buffered_events is abandoned
 * (consumers recover with FETCH): final results never depend on consumers.
 *
 * The worker can run as a thread inside another process (embedded mode):
 * endpoints are strings (inproc:// works with a shared cfg.zmq_ctx) and
 * models may be handed in already loaded. */
#ifndef WG_WORKER_H
#define WG_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"
#include "engine/model/wg_kv.h"
#include "engine/model/wg_model.h"
#include "engine/tokenizer/wg_tok.h"

typedef struct wg_worker wg_worker_t;

/* One model the worker serves. Either path (loaded by wg_worker_new) or
 * model (+ tok) already loaded by the caller (borrowed; must outlive the
 * worker). */
typedef struct wg_worker_model {
    const char *name;          /* name jobs use ("stories"), 1..256 bytes */
    const char *path;          /* GGUF file or HF directory, or NULL when model is given */
    const wg_model_t *model;   /* preloaded model (borrowed) or NULL */
    const wg_tok_t *tok;       /* its tokenizer (borrowed) when model is given */
} wg_worker_model;

/* Residency (cfg.mem_budget > 0): `models` are preloaded and handed to the
 * residency manager (worker/registry/wg_residency.h), so they may be evicted
 * like any other; n_models may be 0. A JOB for a model that is not resident
 * queues a background load (registry lookup by name -> path, sha256 verify,
 * load, one scheduler) and waits unstarted, its credit held, while the other
 * models keep stepping and heartbeats keep going; when the load completes the
 * least recently used models beyond the budget drain their sequences and are
 * freed. A load that fails (not registered, missing/truncated/corrupted file,
 * over the budget) fails that model's jobs with the reason (checksum and file
 * named) for the manager's retry window; other models are unaffected. */

typedef struct wg_worker_cfg {
    const char *broker;            /* backend endpoint to connect, e.g. tcp://127.0.0.1:7701 */
    const char *stream;            /* XPUB endpoint to bind, or NULL (no streams, metrics only in HEARTBEAT) */
    const char *stream_advertise;  /* endpoint announced in READY (default: stream with * -> hostname) */
    void *zmq_ctx;                 /* external context (borrowed; inproc needs it) or NULL = own */
    const char *redis_url;         /* redis://[user:pass@]host:port: registry of workers, or NULL */
    const char *worker_id;         /* unique id; NULL = "<host>-<pid>-<rand>" */
    const wg_worker_model *models; /* (n_models,) served models */
    uint32_t n_models;             /* 1..64 (0..64 with mem_budget) */
    int n_threads;                 /* forward threads per model; 0 = 1 */
    const char *device;            /* "cpu" (NULL) or "cuda:N": where models run */
    int32_t max_seqs;              /* sequence slots = credits; 0 = 64 */
    size_t kv_budget_bytes;        /* KV bytes per model; 0 = scheduler default */
    wg_kv_type_t kv_type;          /* K/V cache elements: WG_KV_F32 (0, default) or WG_KV_F16 */
    bool no_prefix_cache;          /* turn the schedulers' prefix cache off (it is on by default) */
    int32_t max_context;           /* tokens a sequence may hold (wg_sched_cfg_t.max_context: 0 = the
                                      model's trained context, < 0 = only the KV cache's size) */
    uint32_t heartbeat_ms;         /* heartbeat interval; 0 = 1000 */
    uint32_t liveness;             /* silent intervals before the broker is dead, 3..5; 0 = 3 */
    uint32_t drain_timeout_ms;     /* SIGTERM drain: hand back what is left after this; 0 = 30000 */
    uint32_t stream_hwm;           /* XPUB high-water mark per subscriber, messages; 0 = 1000 */
    uint32_t stream_stall_ms;      /* abandon a stream that cannot move for this long; 0 = 10000 */
    int stream_sndbuf;             /* XPUB kernel send buffer bytes (ZMQ_SNDBUF); 0 = OS default */
    size_t max_buffered_events;    /* held events per paused job before abandoning; 0 = 65536 */
    const char *curve_server_key;  /* broker public key (Z85, 40 chars) enables CURVE, or NULL */
    const char *curve_secret_key;  /* this worker's secret key (Z85); NULL = a fresh ephemeral pair */
    uint64_t mem_budget;           /* bytes of weights + KV kept resident; > 0 enables residency:
                                    * any model registered in redis_url is loaded on demand in the
                                    * background (sha256 verified) and LRU-evicted; 0 = serve only
                                    * `models`, all kept */
    uint32_t load_delay_ms;        /* test hook: sleep this long inside each on-demand load; 0 = none */
} wg_worker_cfg;

/* Figures for tests and benchmarks (all since wg_worker_new). */
typedef struct wg_worker_stats {
    uint64_t jobs_received;      /* JOB messages accepted into a scheduler */
    uint64_t jobs_done;          /* DONE sent */
    uint64_t jobs_failed;        /* FAILED sent */
    uint64_t bad_frames;         /* undecodable/malformed backend messages */
    uint64_t tokens;             /* tokens generated */
    uint64_t events_published;   /* TOKEN events sent on the XPUB (stream thread) */
    uint64_t events_held;        /* publications that hit EAGAIN and were held (stream thread) */
    uint64_t streams_abandoned;  /* streams given up (stall or overflow) */
    uint64_t reconnects;         /* broker sessions re-established */
    double step_seconds;         /* time inside wg_sched_step */
    double publish_seconds;      /* engine-loop time spent on streams: queuing TOKEN records for the
                                  * stream thread, handing them over (one wake-up per turn) and
                                  * applying its flow-control notes; encoding and sending are not in it */
    double stream_busy_seconds;  /* stream thread: time encoding, sending and retrying (its own core) */
    uint64_t loads;              /* residency: on-demand loads completed */
    uint64_t load_failures;      /* residency: loads that failed (checksum, I/O, budget...) */
    double load_seconds;         /* residency: seconds spent loading (loader thread) */
    uint64_t evictions;          /* residency: models evicted to respect mem_budget */
    uint64_t resident_bytes;     /* residency: bytes of resident models now (draining included) */
    uint64_t jobs_waited;        /* residency: jobs that waited for a load before starting */
    uint64_t prompt_tokens_cached;   /* prompt tokens found in the prefix cache (as of the last
                                      * METRICS, and final once wg_worker_run has returned) */
    uint64_t prompt_tokens_computed; /* prompt and recompute tokens computed (same) */
} wg_worker_stats;

/* Load models, bind the stream socket, connect to the broker (READY is sent
 * by wg_worker_run). NULL on failure with the reason in wg_errmsg(). */
wg_worker_t *wg_worker_new(const wg_worker_cfg *cfg);

/* Serve until stopped or drained. Call on one thread only. WG_OK on a clean end. */
wg_status wg_worker_run(wg_worker_t *w);

/* Stop now: in-flight jobs are handed back to the broker (DISCONNECT) and
 * wg_worker_run returns. Thread-safe and async-signal-safe. */
void wg_worker_stop(wg_worker_t *w);

/* Drain: take no new jobs (credits lowered to 1, jobs arriving meanwhile are
 * held unstarted), finish the running ones, then DISCONNECT (which hands back
 * anything unfinished, also after cfg.drain_timeout_ms) and return from
 * wg_worker_run. Thread-safe and async-signal-safe. */
void wg_worker_drain(wg_worker_t *w);

/* The worker's id (borrowed, valid until destroy). */
const char *wg_worker_id(const wg_worker_t *w);

/* Copy of the counters. Thread-safe only while the worker is not running,
 * or approximately (torn reads of counters are harmless) while it is. */
void wg_worker_get_stats(const wg_worker_t *w, wg_worker_stats *out);

/* Close sockets, schedulers and owned models; NULLs *pw; accepts NULL. Not while running. */
void wg_worker_destroy(wg_worker_t **pw);

#endif
