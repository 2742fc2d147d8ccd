/* wg_residency — which models a worker keeps resident, within a byte budget.
 *
 * Design: the residency manager owns an LRU of resident models with byte
 * accounting and one background loader thread. The worker's loop (the
 * "owner" thread) asks for a model with wg_res_acquire: a resident model is
 * pinned and returned at once; a missing one is queued for the loader and
 * WG_ERR_AGAIN is returned, so loading never blocks heartbeats or the token
 * streams of other models. wg_res_poll (called every loop turn) swaps
 * finished loads in and then restores the budget by evicting least recently
 * used models. A model with pins (sequences in flight) is never freed: it is
 * marked draining (no new pins) and freed by the wg_res_release that drops
 * its last pin. Hot-swap therefore is: load beside the serving model, switch
 * when the load completes, drain the old one, free it.
 *
 * Budget: `budget` bounds the bytes of resident, non-draining models once
 * wg_res_poll has run. While a load is in progress and while a replaced
 * model drains, memory can exceed it by that model (the price of never
 * stopping the serving model during a swap).
 *
 * Threads: every call except the ops->load callback runs on the owner
 * thread; ops->load runs on the loader thread (one load at a time); ops->unload
 * always runs on the owner thread (inside poll, release or destroy). */
#ifndef WG_RESIDENCY_H
#define WG_RESIDENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/wg_status.h"

typedef struct wg_residency wg_residency_t;

typedef struct wg_res_ops {
    /* Load `name` (loader thread). On success set *handle and *bytes (weights
     * + KV it will hold); on failure return the status with wg_error() set
     * (the message is kept and handed to every acquire of that model). */
    wg_status (*load)(void *arg, const char *name, void **handle, uint64_t *bytes);
    /* Free a loaded model (owner thread). */
    void (*unload)(void *arg, const char *name, void *handle);
    void *arg; /* passed back verbatim */
} wg_res_ops;

typedef struct wg_res_cfg {
    uint64_t budget;        /* bytes of resident models at rest (> 0) */
    uint32_t fail_retry_ms; /* a failed load is reported for this long before a new try; 0 = 10000 */
} wg_res_cfg;

typedef struct wg_res_stats {
    uint64_t loads;          /* successful loads */
    uint64_t load_failures;  /* failed loads */
    double load_seconds;     /* total time inside ops->load for successful loads */
    uint64_t evictions;      /* models freed to respect the budget */
    uint64_t resident_bytes; /* bytes of resident models (draining included) */
    uint32_t n_resident;     /* resident models (draining included) */
    uint32_t n_draining;     /* evicted models still waiting for their pins to drop */
    bool loading;            /* a load is queued or running */
} wg_res_stats;

/* Start the manager and its loader thread. NULL with wg_errmsg() on failure. */
wg_residency_t *wg_res_new(const wg_res_cfg *cfg, const wg_res_ops *ops);

/* Stop the loader (waits for a load in progress), unload every model
 * (pinned or not: the caller has stopped using them); NULLs *pr; accepts NULL. */
void wg_res_destroy(wg_residency_t **pr);

/* Hand over a model the caller already loaded (a --model NAME=PATH preload).
 * It counts against the budget like any other. ERR_INVAL if already known. */
wg_status wg_res_adopt(wg_residency_t *r, const char *name, void *handle, uint64_t bytes);

/* Pin `name` for one sequence and return its handle (valid until the matching
 * wg_res_release). Errors:
 *   WG_ERR_AGAIN  not resident yet: a load was queued (or is running); call
 *                 again after wg_res_poll;
 *   WG_ERR_FULL   `expected_bytes` (registry size; 0 = unknown) exceeds the budget;
 *   the load's own status (ERR_CHECKSUM, ERR_IO, ...) with its message, for
 *                 fail_retry_ms after a failed load. */
wg_status wg_res_acquire(wg_residency_t *r, const char *name, uint64_t expected_bytes, void **handle);

/* Drop one pin taken by wg_res_acquire. A draining model whose last pin drops
 * is unloaded here. */
void wg_res_release(wg_residency_t *r, const char *name);

/* Swap in completed loads, evict LRU models beyond the budget (pinned ones
 * are marked draining instead), free drained ones. Returns the number of
 * models that became resident in this call. */
int wg_res_poll(wg_residency_t *r);

/* Bytes of budget not used by resident non-draining models or the load in progress. */
uint64_t wg_res_mem_free(const wg_residency_t *r);

/* Names of resident, non-draining models (what READY/HEARTBEAT `models`
 * lists), most recently used first; writes up to `cap` borrowed pointers
 * (valid until the next call that changes residency) and returns the count. */
uint32_t wg_res_models(const wg_residency_t *r, const char **names, uint32_t cap);

/* Resident bytes of one model (0 when not resident) — metrics per model. */
uint64_t wg_res_bytes(const wg_residency_t *r, const char *name);

/* Pins currently held on `name`. */
uint32_t wg_res_pins(const wg_residency_t *r, const char *name);

void wg_res_get_stats(const wg_residency_t *r, wg_res_stats *out);

/* Counters of one model (metrics per model). A model gets a record the first
 * time it is adopted or a load of it ends (success or failure); records are
 * kept until wg_res_destroy, so counters never go back when a model is evicted. */
typedef struct wg_res_model_stats {
    const char *name;        /* borrowed, valid until wg_res_destroy */
    uint64_t loads;          /* successful on-demand loads (an adopted preload is not one) */
    uint64_t load_failures;  /* failed loads */
    double load_seconds;     /* total time inside ops->load for its successful loads */
    uint64_t evictions;      /* times it was evicted (freed or marked draining) for the budget */
    uint64_t resident_bytes; /* bytes it holds now (draining included); 0 when not resident */
} wg_res_model_stats;

/* Per-model counters, resident models first (most recently used first), then
 * the others, most recently loaded or evicted first; writes up to `cap` and
 * returns the count written. Owner thread. */
uint32_t wg_res_model_stats_get(const wg_residency_t *r, wg_res_model_stats *out, uint32_t cap);

#endif
