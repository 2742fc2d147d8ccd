/* wg_broker — broker core: one thread, one zmq_poll loop over the frontend
 * (producers), backend (workers) and ZAP sockets; state in memory, durability
 * delegated to a wg_store. Invariants: a worker never has more jobs in flight
 * than its credits; a job is acknowledged to its producer only after the store
 * accepted it; its result is stored before its queue entry is acknowledged;
 * DONE/FAILED for a job not running on the sender are ignored (exactly-once
 * result). See PROTOCOL.md for the rules implemented here. */
#include "wg_broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zmq.h>

#include "common/wg_log.h"
#include "common/wg_strmap.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_worker.h"
#include "schemas/wg_msg_zmq.h"
#include "wg_store.h"
#include "worker/registry/wg_registry.h"

#define NBUCKETS0 8192 /* initial buckets of the job table; doubles at load factor 1 */
#define MAX_ALLOW 1024

enum { J_QUEUED, J_RUNNING, J_ENDING, J_ZOMBIE };

typedef struct bworker bworker;

typedef struct bjob {
    char id[33];                /* 32 hex chars */
    wg_msg_job job;             /* decoded job, job.job_id == id */
    char entry_id[64];          /* store reference */
    uint8_t owner[WG_MSG_MAX_IDENTITY]; /* (owner_len,) producer routing id */
    size_t owner_len;           /* 0 after recovery when unknown */
    int state;                  /* J_* */
    uint32_t attempts;          /* deliveries so far */
    uint32_t failures;          /* failed attempts */
    bworker *worker;            /* RUNNING/ZOMBIE: where it runs */
    uint64_t est_tokens;        /* estimated prompt tokens */
    uint64_t seq;               /* FIFO order within a priority */
    int64_t started_ms;         /* last dispatch time */
    int64_t enq_ms;             /* when first queued (age for the starvation guard) */
    wg_msg_buf result;          /* ENDING: encoded RESULT waiting to be stored */
    char end_state[12];         /* ENDING: done|failed|cancelled */
    wg_strmap_node node;        /* in the job table, key = id */
    struct bjob *qprev, *qnext; /* queue links while QUEUED */
} bjob;

struct bworker {
    uint8_t id[WG_MSG_MAX_IDENTITY]; /* (id_len,) routing identity */
    size_t id_len;                   /* bytes */
    char *worker_id;                 /* from READY */
    uint32_t credits;                /* max jobs in flight */
    uint32_t inflight;               /* jobs in flight (RUNNING + ZOMBIE) */
    char **models;                   /* (n_models,) */
    uint32_t n_models;               /* 0 = any */
    char *stream_endpoint;           /* or NULL */
    int64_t last_seen;               /* ms, any message received */
    int64_t last_sent;               /* ms, any message sent */
    bool has_metrics;                /* metrics valid */
    wg_msg_metrics metrics;          /* latest HEARTBEAT metrics */
    uint64_t done, failed;           /* completions from this worker */
    uint64_t mem_budget;             /* READY/HEARTBEAT: bytes it may keep resident; 0 = cannot load */
    uint64_t mem_free;               /* READY/HEARTBEAT: budget not in use */
    char *pending;                   /* model a job was routed here to load, until listed, or NULL */
    int64_t pending_ms;              /* when pending was set */
    char *reserved;                  /* model of a starved job this worker is kept for, or NULL */
    bworker *next;                   /* list */
};

typedef struct bmodel {
    char *name;              /* model name */
    uint64_t q_jobs;         /* waiting jobs */
    uint64_t q_tokens;       /* waiting est. prompt tokens */
    uint64_t running;        /* in flight */
    uint64_t done, failed, cancelled, rejected_full; /* counters */
    double ema_ms;           /* running-time EMA (retry hints) */
    int reg_state;           /* registry: 1 registered, -1 not, 0 not asked yet */
    int64_t reg_checked_ms;  /* when reg_state was last read */
    uint64_t reg_bytes;      /* registered bytes (0 unknown): what a load needs */
    struct bmodel *next;     /* list */
} bmodel;

struct wg_broker {
    wg_broker_cfg cfg;            /* copy (strings borrowed from the caller) */
    void *ctx;                    /* zmq context */
    bool own_ctx;                 /* we created ctx */
    void *fe, *be, *zap;          /* sockets (zap NULL without CURVE) */
    wg_store_t *store;            /* queue store */
    wg_registry_t *reg;           /* model registry (Redis mode) or NULL */
    wg_strmap jobs;               /* bjob by id (node) */
    bjob *qhead, *qtail;          /* queued jobs, priority desc then seq asc */
    uint64_t seq;                 /* next job seq */
    bworker *workers;             /* live workers */
    bmodel *models;               /* per-model figures */
    atomic_int stop;              /* set by wg_broker_stop */
    uint8_t allow[MAX_ALLOW][32]; /* CURVE allow-list, binary keys */
    uint32_t n_allow;             /* entries */
    struct MHD_Daemon *mhd;       /* metrics server or NULL */
    pthread_mutex_t mlock;        /* guards metrics_text */
    char *metrics_text;           /* latest Prometheus snapshot */
    int64_t last_metrics_ms;      /* last snapshot time */
    int64_t last_starve_ms;       /* last starvation scan (s_reserve_for_starved) */
    uint64_t c_submitted, c_accepted, c_rejected, c_done, c_failed, c_cancelled, c_requeued,
        c_dups, c_bad_frontend, c_bad_backend, c_workers_lost, c_zap_denied,
        c_rejected_unknown, c_routed_load, c_routed_swap; /* counters */
};

static int64_t s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bjob *s_find(wg_broker_t *b, const char *id) {
    wg_strmap_node *n = wg_strmap_find(&b->jobs, id);
    return n ? WG_CONTAINER_OF(n, bjob, node) : NULL;
}

static void s_table_add(wg_broker_t *b, bjob *j) {
    j->node.key = j->id;
    wg_strmap_add(&b->jobs, &j->node);
}

static void s_table_del(wg_broker_t *b, bjob *j) { wg_strmap_del(&b->jobs, &j->node); }

/* Walk of the job table; the job just returned may leave the table and be
 * freed before the next call. */
static bjob *s_next_job(wg_broker_t *b, wg_strmap_iter *it) {
    wg_strmap_node *n = wg_strmap_iter_next(&b->jobs, it);
    return n ? WG_CONTAINER_OF(n, bjob, node) : NULL;
}

static void s_job_free(bjob *j) {
    if (!j) return;
    wg_msg_job_clear(&j->job);
    wg_msg_buf_free(&j->result);
    free(j);
}

static bmodel *s_model(wg_broker_t *b, const char *name) {
    for (bmodel *m = b->models; m; m = m->next)
        if (!strcmp(m->name, name)) return m;
    bmodel *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return NULL;
    }
    m->ema_ms = 1000;
    m->next = b->models;
    b->models = m;
    return m;
}

/* ---- queue ---- */

static bool s_before(const bjob *a, const bjob *c) {
    if (a->job.priority != c->job.priority) return a->job.priority > c->job.priority;
    return a->seq < c->seq;
}

static void s_q_push(wg_broker_t *b, bjob *j) {
    bjob *at = b->qtail;
    while (at && s_before(j, at)) at = at->qprev;
    j->qprev = at;
    j->qnext = at ? at->qnext : b->qhead;
    if (j->qnext) j->qnext->qprev = j;
    else b->qtail = j;
    if (at) at->qnext = j;
    else b->qhead = j;
    j->state = J_QUEUED;
    j->worker = NULL;
    bmodel *m = s_model(b, j->job.model);
    if (m) {
        m->q_jobs++;
        m->q_tokens += j->est_tokens;
    }
}

static void s_q_remove(wg_broker_t *b, bjob *j) {
    if (j->qprev) j->qprev->qnext = j->qnext;
    else b->qhead = j->qnext;
    if (j->qnext) j->qnext->qprev = j->qprev;
    else b->qtail = j->qprev;
    j->qprev = j->qnext = NULL;
    bmodel *m = s_model(b, j->job.model);
    if (m) {
        m->q_jobs--;
        m->q_tokens -= j->est_tokens;
    }
}

/* ---- sending ---- */

static void s_send_fe(wg_broker_t *b, const uint8_t *id, size_t id_len, wg_msg_cmd cmd,
                      const wg_msg_buf *body) {
    if (!id_len) return;
    wg_status st = wg_msg_send(b->fe, id, id_len, cmd, body, ZMQ_DONTWAIT);
    if (st && st != WG_ERR_NOTFOUND)
        wg_warn("broker", "frontend send %s failed: %s", wg_msg_cmd_name(cmd), wg_errmsg());
}

static void s_reply_error(wg_broker_t *b, const wg_msg_in *in, uint64_t req, wg_status code,
                          const char *reason, uint64_t retry_ms) {
    char r[WG_MSG_MAX_REASON + 1];
    snprintf(r, sizeof r, "%s", reason ? reason : "");
    wg_msg_error e = {.req = req, .code = code, .reason = r, .retry_after_ms = retry_ms};
    wg_msg_buf buf = {0};
    if (wg_msg_error_encode(&e, &buf) == WG_OK) s_send_fe(b, in->id, in->id_len, WG_CMD_ERROR, &buf);
    wg_msg_buf_free(&buf);
}

static wg_status s_send_be(wg_broker_t *b, bworker *w, wg_msg_cmd cmd, const wg_msg_buf *body) {
    wg_status st = wg_msg_send(b->be, w->id, w->id_len, cmd, body, ZMQ_DONTWAIT);
    if (st == WG_OK) w->last_sent = s_now();
    return st;
}

/* ---- workers ---- */

static bworker *s_worker(wg_broker_t *b, const uint8_t *id, size_t len) {
    for (bworker *w = b->workers; w; w = w->next)
        if (w->id_len == len && !memcmp(w->id, id, len)) return w;
    return NULL;
}

static bool s_worker_has(const bworker *w, const char *model) {
    for (uint32_t i = 0; i < w->n_models; i++)
        if (!strcmp(w->models[i], model)) return true;
    return false;
}

static void s_worker_free(bworker *w) {
    free(w->worker_id);
    for (uint32_t i = 0; i < w->n_models; i++) free(w->models[i]);
    free(w->models);
    free(w->stream_endpoint);
    free(w->pending);
    free(w->reserved);
    wg_msg_metrics_clear(&w->metrics);
    free(w);
}

static uint64_t s_total_credits(wg_broker_t *b) {
    uint64_t c = 0;
    for (bworker *w = b->workers; w; w = w->next) c += w->credits;
    return c;
}

static uint64_t s_retry_hint(wg_broker_t *b, bmodel *m, uint64_t excess) {
    uint64_t slots = s_total_credits(b);
    double ms = (m ? m->ema_ms : 1000.0) * (double)(excess ? excess : 1) / (double)(slots ? slots : 1);
    if (ms < 100) ms = 100;
    if (ms > 60000) ms = 60000;
    return (uint64_t)ms;
}

/* ---- ending jobs ---- */

static void s_try_store(wg_broker_t *b, bjob *j);

/* End a job: build its RESULT, store it (then ack), push it to the producer.
 * `done` may be NULL (failed/cancelled). The job leaves the table once stored,
 * except a cancelled running job, which stays as ZOMBIE until its worker reports. */
static void s_end_job(wg_broker_t *b, bjob *j, const char *state, const wg_msg_result *done,
                      wg_status code, const char *error) {
    wg_msg_result r = {0};
    if (done) r = *done;
    r.req = 0;
    r.job_id = j->id;
    r.custom_id = j->job.custom_id;
    r.state = (char *)state;
    r.attempts = j->attempts;
    char err[WG_MSG_MAX_REASON + 1];
    if (!done) {
        r.code = code ? (char *)wg_status_name(code) : NULL;
        if (error) {
            snprintf(err, sizeof err, "%s", error);
            r.error = err;
        }
        if (!strcmp(state, "cancelled")) r.finish_reason = "cancelled";
    }
    wg_msg_buf_free(&j->result);
    if (wg_msg_result_encode(WG_CMD_RESULT, &r, &j->result) != WG_OK) {
        /* a result too large to store still ends the job, as failed */
        wg_warn("broker", "job=%s result not encodable: %s", j->id, wg_errmsg());
        wg_msg_result f = {.job_id = j->id, .custom_id = j->job.custom_id, .state = "failed",
                           .attempts = j->attempts, .code = "ERR_RANGE", .error = "result too large"};
        wg_msg_result_encode(WG_CMD_RESULT, &f, &j->result);
        state = "failed";
    }
    snprintf(j->end_state, sizeof j->end_state, "%s", state);
    bmodel *m = s_model(b, j->job.model);
    if (m) {
        if (!strcmp(state, "done")) m->done++, b->c_done++;
        else if (!strcmp(state, "failed")) m->failed++, b->c_failed++;
        else m->cancelled++, b->c_cancelled++;
    }
    if (j->state == J_RUNNING && !strcmp(state, "cancelled")) {
        j->state = J_ZOMBIE; /* credit stays taken until the worker answers */
    } else {
        if (j->state == J_RUNNING && j->worker) {
            j->worker->inflight--;
            if (m) m->running--;
        }
        j->worker = NULL;
        j->state = J_ENDING;
    }
    s_try_store(b, j);
}

static void s_try_store(wg_broker_t *b, bjob *j) {
    if (!j->result.data) return;
    wg_status st = b->store->ops->finish(b->store, j->job.model, j->entry_id, j->id, j->result.data,
                                         j->result.len, b->cfg.result_ttl_s);
    if (st) {
        wg_warn("broker", "job=%s result not stored yet (will retry): %s", j->id, wg_errmsg());
        return;
    }
    wg_info("broker", "job=%s ended state=%s attempts=%u", j->id, j->end_state, j->attempts);
    s_send_fe(b, j->owner, j->owner_len, WG_CMD_RESULT, &j->result);
    wg_msg_buf_free(&j->result);
    if (j->state == J_ENDING) {
        s_table_del(b, j);
        s_job_free(j);
    }
}

/* A delivery failed (FAILED or lost worker): requeue or end as failed. */
static void s_attempt_failed(wg_broker_t *b, bjob *j, wg_status code, const char *reason,
                             bool retryable) {
    bmodel *m = s_model(b, j->job.model);
    if (j->state == J_RUNNING) {
        if (j->worker) j->worker->inflight--;
        if (m) m->running--;
        j->worker = NULL;
    }
    j->failures++;
    if (!retryable || j->failures >= b->cfg.max_attempts) {
        wg_warn("broker", "job=%s failed after %u attempts: %s %s", j->id, j->failures,
                wg_status_name(code), reason ? reason : "");
        j->state = J_ENDING; /* credits were released above */
        s_end_job(b, j, "failed", NULL, code, reason);
        return;
    }
    b->store->ops->set_failures(b->store, j->id, j->failures);
    b->c_requeued++;
    wg_info("broker", "job=%s requeued after failure %u/%u: %s", j->id, j->failures,
            b->cfg.max_attempts, reason ? reason : "");
    s_q_push(b, j);
}

static void s_worker_gone(wg_broker_t *b, bworker *w, bool count_failure, const char *why) {
    wg_warn("broker", "worker=%s gone (%s), in flight=%u", w->worker_id ? w->worker_id : "?", why,
            w->inflight);
    wg_strmap_iter it;
    wg_strmap_iter_init(&b->jobs, &it);
    for (bjob *j; (j = s_next_job(b, &it));) {
        if (j->worker != w) continue;
        if (j->state == J_ZOMBIE) {
            s_table_del(b, j);
            s_job_free(j);
            continue;
        }
        if (j->state != J_RUNNING) continue;
        if (count_failure) {
            s_attempt_failed(b, j, WG_ERR_TIMEOUT, "worker lost", true);
        } else {
            j->worker->inflight--;
            bmodel *m = s_model(b, j->job.model);
            if (m) m->running--;
            b->c_requeued++;
            s_q_push(b, j);
        }
    }
    bworker **pp = &b->workers;
    while (*pp && *pp != w) pp = &(*pp)->next;
    if (*pp) *pp = w->next;
    s_worker_free(w);
}

/* ---- dispatch ---- */

/* Registered bytes of a model (what loading it needs); 0 when unknown. Read
 * from the registry at most every 30 s per model. */
static uint64_t s_model_bytes(wg_broker_t *b, bmodel *m) {
    if (!m || !b->reg) return m ? m->reg_bytes : 0;
    int64_t now = s_now();
    if (m->reg_state == 0 || now - m->reg_checked_ms > 30000) {
        wg_reg_model rm;
        wg_status st = wg_registry_get(b->reg, m->name, &rm);
        if (st == WG_OK) {
            m->reg_state = 1;
            m->reg_bytes = (uint64_t)rm.bytes;
            wg_reg_model_clear(&rm);
        } else if (st == WG_ERR_NOTFOUND) {
            m->reg_state = -1;
        }
        m->reg_checked_ms = now;
    }
    return m->reg_bytes;
}

static bool s_holds(const bworker *w, const char *model) {
    return s_worker_has(w, model) || (w->pending && !strcmp(w->pending, model));
}

/* Kept for another model's starved job: takes nothing else. */
static bool s_reserved_other(const bworker *w, const char *model) {
    return w->reserved && strcmp(w->reserved, model) != 0;
}

static void s_set_str(char **dst, const char *v) {
    free(*dst);
    *dst = v ? strdup(v) : NULL;
}

/* Choice of worker for a job (PROTOCOL.md §6 rule 3):
 *   1. a worker that holds the model (READY/HEARTBEAT `models`, or a load we
 *      already routed to it), most free credits first;
 *   2. a worker with a memory budget and enough free memory to load it beside
 *      what it holds, most free memory first;
 *   3. a worker whose budget fits the model but must evict to load it: only
 *      when `allow_swap` (the dispatcher's second pass, after every worker took
 *      what the queue holds for its own models) and the worker is idle, or at
 *      once when the job is starved (waited >= starve_ms) — so workers do not
 *      thrash between models while the queue has work for what they hold;
 *   4. a worker with an empty `models` list and no budget ("any", legacy).
 * Workers reserved for a starved job of another model are skipped. */
static bworker *s_pick(wg_broker_t *b, const bjob *j, bool allow_swap, bool *load) {
    const char *model = j->job.model;
    bworker *best = NULL, *roomy = NULL, *swap = NULL, *any = NULL;
    *load = false;
    for (bworker *w = b->workers; w; w = w->next) {
        if (w->inflight >= w->credits || s_reserved_other(w, model)) continue;
        uint32_t free_c = w->credits - w->inflight;
        if (s_holds(w, model)) {
            if (!best || free_c > best->credits - best->inflight) best = w;
        } else if (w->n_models == 0 && w->mem_budget == 0) {
            if (!any || free_c > any->credits - any->inflight) any = w;
        }
    }
    if (best) return best;
    bmodel *m = NULL;
    for (bmodel *x = b->models; x; x = x->next)
        if (!strcmp(x->name, model)) m = x;
    uint64_t need = s_model_bytes(b, m);
    bool starved = s_now() - j->enq_ms >= (int64_t)b->cfg.starve_ms;
    for (bworker *w = b->workers; w; w = w->next) {
        if (w->inflight >= w->credits || s_reserved_other(w, model) || w->mem_budget == 0) continue;
        if (w->mem_budget < need) continue; /* can never hold it */
        if (w->mem_free >= need) {
            if (!roomy || w->mem_free > roomy->mem_free) roomy = w;
        } else if ((allow_swap && w->inflight == 0) || starved || (w->reserved && !strcmp(w->reserved, model))) {
            if (!swap || w->inflight < swap->inflight) swap = w;
        }
    }
    if (roomy || swap) {
        bworker *w = roomy ? roomy : swap;
        *load = true;
        if (roomy) b->c_routed_load++;
        else b->c_routed_swap++;
        s_set_str(&w->pending, model);
        w->pending_ms = s_now();
        /* the model it loads now takes its share of the budget */
        w->mem_free = w->mem_free > need ? w->mem_free - need : 0;
        if (w->reserved && !strcmp(w->reserved, model)) s_set_str(&w->reserved, NULL);
        return w;
    }
    return any;
}

/* Starvation guard: a job waiting >= starve_ms whose model no live worker
 * holds gets a loading-capable worker reserved for it; that worker takes no
 * other model's jobs until this one is dispatched (its in-flight work drains,
 * then it loads). One reservation per model. */
static void s_reserve_for_starved(wg_broker_t *b) {
    int64_t now = s_now();
    /* The scan walks the whole queue: at most every 100 ms (or starve_ms/4),
     * not on every dispatch — with 100k queued jobs it was 40 % of the
     * broker's time. A starvation bound of seconds loses nothing to that. */
    int64_t every = b->cfg.starve_ms / 4 < 100 ? (int64_t)b->cfg.starve_ms / 4 : 100;
    if (now - b->last_starve_ms < every) return;
    b->last_starve_ms = now;
    for (bjob *j = b->qhead; j; j = j->qnext) {
        if (now - j->enq_ms < (int64_t)b->cfg.starve_ms) continue;
        const char *model = j->job.model;
        bool held = false, reserved = false;
        for (bworker *w = b->workers; w; w = w->next) {
            held |= s_holds(w, model) || (w->n_models == 0 && w->mem_budget == 0);
            reserved |= w->reserved && !strcmp(w->reserved, model);
        }
        if (held || reserved) continue;
        bmodel *m = NULL;
        for (bmodel *x = b->models; x; x = x->next)
            if (!strcmp(x->name, model)) m = x;
        uint64_t need = s_model_bytes(b, m);
        bworker *pick = NULL;
        for (bworker *w = b->workers; w; w = w->next)
            if (w->mem_budget >= need && w->mem_budget > 0 && !w->reserved && (!pick || w->inflight < pick->inflight))
                pick = w;
        if (pick) {
            s_set_str(&pick->reserved, model);
            wg_info("broker", "worker=%s reserved for starved model=%s job=%s", pick->worker_id, model, j->id);
        }
    }
}

static void s_dispatch(wg_broker_t *b) {
    bool any_free = false;
    for (bworker *w = b->workers; w; w = w->next)
        if (w->inflight < w->credits) any_free = true;
    if (any_free && b->qhead) s_reserve_for_starved(b);
    /* pass 0: held models, free memory, starved jobs; pass 1: idle swaps */
    for (int pass = 0; pass < 2; pass++)
    for (bjob *j = b->qhead, *next; j && any_free; j = next) {
        next = j->qnext;
        bool load = false;
        bworker *w = s_pick(b, j, pass == 1, &load);
        if (!w) continue;
        j->job.attempt = j->attempts + 1;
        wg_msg_buf buf = {0};
        wg_status st = wg_msg_job_encode(&j->job, &buf);
        if (st == WG_OK) st = s_send_be(b, w, WG_CMD_JOB, &buf);
        wg_msg_buf_free(&buf);
        if (st) {
            wg_warn("broker", "JOB job=%s to worker=%s not sent: %s", j->id, w->worker_id, wg_errmsg());
            if (st == WG_ERR_NOTFOUND) s_worker_gone(b, w, false, "unroutable");
            return; /* the queue may have changed under us; next tick */
        }
        s_q_remove(b, j);
        j->state = J_RUNNING;
        j->worker = w;
        j->attempts++;
        j->started_ms = s_now();
        w->inflight++;
        bmodel *m = s_model(b, j->job.model);
        if (m) m->running++;
        wg_debug("broker", "dispatch job=%s worker=%s attempt=%u inflight=%u/%u%s", j->id,
                 w->worker_id, j->attempts, w->inflight, w->credits, load ? " (load)" : "");
        any_free = false;
        for (bworker *x = b->workers; x; x = x->next)
            if (x->inflight < x->credits) any_free = true;
    }
}

/* Whether SUBMIT may accept jobs for `model` (cfg.require_registered): a live
 * worker names it, or the registry has it. WG_OK, WG_ERR_NOTFOUND, or
 * WG_ERR_REDIS when the registry cannot be asked. */
static wg_status s_model_known(wg_broker_t *b, const char *model) {
    for (bworker *w = b->workers; w; w = w->next)
        if (s_worker_has(w, model)) return WG_OK;
    if (!b->reg) return WG_ERR_NOTFOUND;
    bmodel *m = NULL;
    for (bmodel *x = b->models; x; x = x->next)
        if (!strcmp(x->name, model)) m = x;
    int64_t now = s_now();
    if (m && m->reg_state == 1 && now - m->reg_checked_ms < 5000) return WG_OK;
    wg_reg_model rm;
    wg_status st = wg_registry_get(b->reg, model, &rm);
    if (st == WG_OK) {
        if ((m = s_model(b, model)) != NULL) {
            m->reg_state = 1;
            m->reg_bytes = (uint64_t)rm.bytes;
            m->reg_checked_ms = now;
        }
        wg_reg_model_clear(&rm);
        return WG_OK;
    }
    if (m && st == WG_ERR_NOTFOUND) {
        m->reg_state = -1;
        m->reg_checked_ms = now;
    }
    return st == WG_ERR_NOTFOUND ? WG_ERR_NOTFOUND : WG_ERR_REDIS;
}

/* ---- frontend ---- */

static void s_job_id(char out[33]) {
    /* Ids are unguessable (a FETCH names one): kernel randomness, drawn 256
     * ids at a time rather than one getrandom system call per job. */
    static uint8_t pool[4096];
    static size_t left;
    uint8_t r[16];
    if (left < sizeof r) {
        left = getrandom(pool, sizeof pool, 0) == (ssize_t)sizeof pool ? sizeof pool : 0;
    }
    if (left >= sizeof r) {
        memcpy(r, pool + sizeof pool - left, sizeof r);
        memset(pool + sizeof pool - left, 0, sizeof r); /* used once */
        left -= sizeof r;
    } else {
        for (int i = 0; i < 16; i++) r[i] = (uint8_t)rand();
    }
    static const char *hx = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hx[r[i] >> 4];
        out[2 * i + 1] = hx[r[i] & 15];
    }
    out[32] = 0;
}

static void s_on_submit(wg_broker_t *b, const wg_msg_in *in) {
    wg_msg_submit sub;
    wg_status dst = wg_msg_submit_decode(in->body, in->body_len, &sub);
    if (dst != WG_OK) {
        b->c_bad_frontend++;
        /* echo the req when it can be read, so the producer knows which
         * batch was refused (waggle submit then resends its jobs one by one) */
        char why[1024];
        snprintf(why, sizeof why, "%s", wg_errmsg());
        s_reply_error(b, in, wg_msg_peek_req(in->body, in->body_len), dst, why, 0);
        return;
    }
    wg_msg_submitted rep = {.req = sub.req, .n_items = sub.n_jobs};
    rep.items = calloc(sub.n_jobs, sizeof *rep.items);
    if (!rep.items) {
        s_reply_error(b, in, sub.req, WG_ERR_NOMEM, "out of memory", 1000);
        wg_msg_submit_clear(&sub);
        return;
    }
    const char *last_unknown = NULL; /* model just found unregistered in this SUBMIT */
    for (uint32_t i = 0; i < sub.n_jobs; i++) {
        wg_msg_job *src = &sub.jobs[i];
        wg_msg_submitted_item *it = &rep.items[i];
        it->index = i;
        it->custom_id = src->custom_id ? strdup(src->custom_id) : NULL;
        b->c_submitted++;
        char why[512];
        if (b->cfg.require_registered) {
            wg_status ks = last_unknown && !strcmp(last_unknown, src->model) ? WG_ERR_NOTFOUND
                                                                             : s_model_known(b, src->model);
            if (ks != WG_OK) {
                if (ks == WG_ERR_NOTFOUND) {
                    snprintf(why, sizeof why,
                             "model '%s' is not registered (waggle models add %s PATH) and no worker serves it",
                             src->model, src->model);
                    last_unknown = src->model;
                    b->c_rejected_unknown++;
                } else {
                    snprintf(why, sizeof why, "model registry unavailable: %s", wg_errmsg());
                    it->retry_after_ms = 1000;
                }
                it->code = ks;
                it->reason = strdup(why);
                b->c_rejected++;
                wg_info("broker", "rejected model=%s: %s", src->model, why);
                continue;
            }
        }
        bmodel *m = s_model(b, src->model);
        uint64_t est = wg_msg_job_prompt_tokens_est(src);
        if (m && (m->q_jobs + 1 > b->cfg.queue_max_jobs || m->q_tokens + est > b->cfg.queue_max_tokens)) {
            bool by_jobs = m->q_jobs + 1 > b->cfg.queue_max_jobs;
            snprintf(why, sizeof why, "queue for model '%s' is full (%llu/%llu %s)", src->model,
                     (unsigned long long)(by_jobs ? m->q_jobs : m->q_tokens),
                     (unsigned long long)(by_jobs ? b->cfg.queue_max_jobs : b->cfg.queue_max_tokens),
                     by_jobs ? "jobs" : "prompt tokens");
            it->code = WG_ERR_FULL;
            it->reason = strdup(why);
            it->retry_after_ms = s_retry_hint(b, m, by_jobs ? m->q_jobs + 1 - b->cfg.queue_max_jobs : 1);
            m->rejected_full++;
            b->c_rejected++;
            continue;
        }
        bjob *j = calloc(1, sizeof *j);
        if (!j || !m) {
            free(j);
            it->code = WG_ERR_NOMEM;
            it->reason = strdup("out of memory");
            it->retry_after_ms = 1000;
            b->c_rejected++;
            continue;
        }
        s_job_id(j->id);
        j->job = *src; /* take ownership of the decoded job */
        wg_msg_job_init(src);
        free(j->job.job_id);
        j->job.job_id = strdup(j->id);
        j->job.attempt = 0;
        j->est_tokens = est;
        j->seq = b->seq++;
        j->enq_ms = s_now();
        memcpy(j->owner, in->id, in->id_len);
        j->owner_len = in->id_len;
        wg_msg_buf blob = {0};
        wg_status st = wg_msg_job_encode(&j->job, &blob);
        if (st == WG_OK)
            st = b->store->ops->enqueue(b->store, j->job.model, j->id, blob.data, blob.len, in->id,
                                        in->id_len, j->entry_id);
        wg_msg_buf_free(&blob);
        if (st) {
            it->code = st == WG_ERR_REDIS ? WG_ERR_REDIS : st;
            snprintf(why, sizeof why, "not stored: %s", wg_errmsg());
            it->reason = strdup(why);
            it->retry_after_ms = 1000;
            b->c_rejected++;
            s_job_free(j);
            continue;
        }
        s_table_add(b, j);
        s_q_push(b, j);
        it->accepted = true;
        it->job_id = strdup(j->id);
        b->c_accepted++;
        wg_debug("broker", "accepted job=%s model=%s", j->id, j->job.model);
    }
    wg_msg_buf buf = {0};
    if (wg_msg_submitted_encode(&rep, &buf) == WG_OK) s_send_fe(b, in->id, in->id_len, WG_CMD_SUBMITTED, &buf);
    wg_msg_buf_free(&buf);
    wg_msg_submitted_clear(&rep);
    wg_msg_submit_clear(&sub);
}

static const char *s_state_name(const bjob *j) {
    switch (j->state) {
    case J_QUEUED: return "queued";
    case J_RUNNING: return "running";
    default: return j->end_state[0] ? j->end_state : "running";
    }
}

static void s_reply_jobstate(wg_broker_t *b, const wg_msg_in *in, uint64_t req, const char *id,
                             const char *custom_id, const char *state, uint32_t attempts,
                             const char *worker_id, const char *error) {
    wg_msg_jobstate js = {.req = req, .job_id = (char *)id, .custom_id = (char *)custom_id,
                          .state = (char *)state, .attempts = attempts,
                          .worker_id = (char *)worker_id, .error = (char *)error};
    wg_msg_buf buf = {0};
    if (wg_msg_jobstate_encode(&js, &buf) == WG_OK) s_send_fe(b, in->id, in->id_len, WG_CMD_JOBSTATE, &buf);
    wg_msg_buf_free(&buf);
}

/* Reply JOBSTATE from the stored result of an ended job; false if none. */
static bool s_jobstate_from_store(wg_broker_t *b, const wg_msg_in *in, uint64_t req, const char *id) {
    uint8_t *data = NULL;
    size_t len = 0;
    wg_status st = b->store->ops->get_result(b->store, id, &data, &len);
    if (st == WG_ERR_REDIS) {
        s_reply_error(b, in, req, WG_ERR_REDIS, wg_errmsg(), 1000);
        return true;
    }
    if (st) return false;
    wg_msg_result r;
    if (wg_msg_result_decode(WG_CMD_RESULT, data, len, &r) == WG_OK) {
        s_reply_jobstate(b, in, req, id, r.custom_id, r.state, r.attempts, NULL, r.error);
        wg_msg_result_clear(&r);
    } else {
        s_reply_error(b, in, req, WG_ERR_FORMAT, "stored result is corrupt", 0);
    }
    free(data);
    return true;
}

static void s_on_req(wg_broker_t *b, const wg_msg_in *in) {
    wg_msg_req q;
    wg_status st = wg_msg_req_decode(in->cmd, in->body, in->body_len, &q);
    if (st) {
        b->c_bad_frontend++;
        s_reply_error(b, in, 0, st, wg_errmsg(), 0);
        return;
    }
    if (in->cmd == WG_CMD_PING) {
        wg_msg_req p = {.req = q.req};
        wg_msg_buf buf = {0};
        if (wg_msg_req_encode(WG_CMD_PONG, &p, &buf) == WG_OK) s_send_fe(b, in->id, in->id_len, WG_CMD_PONG, &buf);
        wg_msg_buf_free(&buf);
        wg_msg_req_clear(&q);
        return;
    }
    bjob *j = s_find(b, q.job_id);
    if (in->cmd == WG_CMD_CANCEL && j && (j->state == J_QUEUED || j->state == J_RUNNING)) {
        if (j->state == J_QUEUED) {
            s_q_remove(b, j);
            j->state = J_ENDING;
        } else {
            wg_msg_req c = {.job_id = j->id};
            wg_msg_buf buf = {0};
            if (wg_msg_req_encode(WG_CMD_CANCEL, &c, &buf) == WG_OK) s_send_be(b, j->worker, WG_CMD_CANCEL, &buf);
            wg_msg_buf_free(&buf);
        }
        char id[33], cid[WG_MSG_MAX_ID + 1] = "";
        snprintf(id, sizeof id, "%s", j->id);
        bool has_cid = j->job.custom_id != NULL;
        if (has_cid) snprintf(cid, sizeof cid, "%s", j->job.custom_id);
        uint32_t att = j->attempts;
        s_end_job(b, j, "cancelled", NULL, WG_ERR_CANCELLED, "cancelled by producer");
        s_reply_jobstate(b, in, q.req, id, has_cid ? cid : NULL, "cancelled", att, NULL, NULL);
    } else if (j && j->state != J_ZOMBIE && in->cmd != WG_CMD_FETCH) {
        s_reply_jobstate(b, in, q.req, j->id, j->job.custom_id, s_state_name(j), j->attempts,
                         j->worker ? j->worker->worker_id : NULL, NULL);
    } else if (j && j->state != J_ZOMBIE && j->state != J_ENDING) {
        s_reply_error(b, in, q.req, WG_ERR_AGAIN, "job has not ended yet",
                      s_retry_hint(b, s_model(b, j->job.model), 1));
    } else if (in->cmd == WG_CMD_FETCH) {
        uint8_t *data = NULL;
        size_t len = 0;
        st = j && j->result.data ? WG_ERR_AGAIN : b->store->ops->get_result(b->store, q.job_id, &data, &len);
        wg_msg_result r;
        if (st == WG_OK && wg_msg_result_decode(WG_CMD_RESULT, data, len, &r) == WG_OK) {
            r.req = q.req;
            wg_msg_buf buf = {0};
            if (wg_msg_result_encode(WG_CMD_RESULT, &r, &buf) == WG_OK) s_send_fe(b, in->id, in->id_len, WG_CMD_RESULT, &buf);
            wg_msg_buf_free(&buf);
            wg_msg_result_clear(&r);
        } else if (st == WG_ERR_NOTFOUND) {
            s_reply_error(b, in, q.req, WG_ERR_NOTFOUND, "unknown job_id", 0);
        } else {
            s_reply_error(b, in, q.req, st ? st : WG_ERR_FORMAT, st ? wg_errmsg() : "stored result is corrupt", 1000);
        }
        free(data);
    } else if (!s_jobstate_from_store(b, in, q.req, q.job_id)) {
        s_reply_error(b, in, q.req, WG_ERR_NOTFOUND, "unknown job_id", 0);
    }
    wg_msg_req_clear(&q);
}

static void s_on_frontend(wg_broker_t *b) {
    wg_msg_in in;
    wg_status st = wg_msg_recv(b->fe, true, &in, ZMQ_DONTWAIT);
    if (st == WG_ERR_AGAIN) {
        wg_msg_in_clear(&in);
        return;
    }
    if (st) {
        b->c_bad_frontend++;
        wg_info("broker", "frontend: bad message: %s", wg_errmsg());
        s_reply_error(b, &in, 0, st, wg_errmsg(), 0);
        wg_msg_in_clear(&in);
        return;
    }
    switch (in.cmd) {
    case WG_CMD_SUBMIT: s_on_submit(b, &in); break;
    case WG_CMD_CANCEL:
    case WG_CMD_STATUS:
    case WG_CMD_FETCH:
    case WG_CMD_PING: s_on_req(b, &in); break;
    default: {
        char r[96];
        snprintf(r, sizeof r, "command %s is not accepted on the frontend", wg_msg_cmd_name(in.cmd));
        b->c_bad_frontend++;
        s_reply_error(b, &in, 0, WG_ERR_PROTOCOL, r, 0);
    }
    }
    wg_msg_in_clear(&in);
}

/* ---- backend ---- */

static void s_set_models(bworker *w, char ***models, uint32_t *n) {
    for (uint32_t i = 0; i < w->n_models; i++) free(w->models[i]);
    free(w->models);
    w->models = *models;
    w->n_models = *n;
    *models = NULL;
    *n = 0;
    /* a routed load is done once the worker lists it; a load that never shows
     * up (failed, evicted) stops attracting jobs after 30 s */
    if (w->pending && (s_worker_has(w, w->pending) || s_now() - w->pending_ms > 30000)) {
        free(w->pending);
        w->pending = NULL;
    }
}

static void s_on_ready(wg_broker_t *b, const wg_msg_in *in, bworker *w) {
    wg_msg_ready r;
    if (wg_msg_ready_decode(in->body, in->body_len, &r)) {
        b->c_bad_backend++;
        wg_warn("broker", "backend: bad READY: %s", wg_errmsg());
        return;
    }
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) {
            wg_msg_ready_clear(&r);
            return;
        }
        memcpy(w->id, in->id, in->id_len);
        w->id_len = in->id_len;
        w->next = b->workers;
        b->workers = w;
        w->last_sent = s_now();
    }
    free(w->worker_id);
    w->worker_id = r.worker_id;
    r.worker_id = NULL;
    free(w->stream_endpoint);
    w->stream_endpoint = r.stream_endpoint;
    r.stream_endpoint = NULL;
    w->credits = r.credits;
    w->mem_budget = r.mem_budget;
    w->mem_free = r.mem_free;
    s_set_models(w, &r.models, &r.n_models);
    wg_info("broker", "worker=%s ready credits=%u models=%u", w->worker_id, w->credits, w->n_models);
    wg_msg_ready_clear(&r);
}

static void s_on_done(wg_broker_t *b, const wg_msg_in *in, bworker *w) {
    wg_msg_result r;
    if (wg_msg_result_decode(WG_CMD_DONE, in->body, in->body_len, &r)) {
        b->c_bad_backend++;
        wg_warn("broker", "worker=%s bad DONE: %s", w->worker_id, wg_errmsg());
        return;
    }
    bjob *j = s_find(b, r.job_id);
    if (j && j->state == J_ZOMBIE && j->worker == w) {
        w->inflight--;
        bmodel *m = s_model(b, j->job.model);
        if (m) m->running--;
        s_table_del(b, j);
        s_job_free(j);
    } else if (j && ((j->state == J_RUNNING && j->worker == w) || j->state == J_QUEUED)) {
        bmodel *m = s_model(b, j->job.model);
        if (j->state == J_QUEUED) {
            s_q_remove(b, j);
            j->state = J_ENDING;
        } else if (m) {
            m->ema_ms = 0.8 * m->ema_ms + 0.2 * (double)(s_now() - j->started_ms);
        }
        w->done++;
        s_end_job(b, j, "done", &r, WG_OK, NULL);
    } else {
        b->c_dups++;
        wg_info("broker", "ignored duplicate/stale DONE job=%s worker=%s", r.job_id, w->worker_id);
    }
    wg_msg_result_clear(&r);
}

static void s_on_failed(wg_broker_t *b, const wg_msg_in *in, bworker *w) {
    wg_msg_failed f;
    if (wg_msg_failed_decode(in->body, in->body_len, &f)) {
        b->c_bad_backend++;
        wg_warn("broker", "worker=%s bad FAILED: %s", w->worker_id, wg_errmsg());
        return;
    }
    bjob *j = s_find(b, f.job_id);
    if (j && j->state == J_ZOMBIE && j->worker == w) {
        w->inflight--;
        bmodel *m = s_model(b, j->job.model);
        if (m) m->running--;
        s_table_del(b, j);
        s_job_free(j);
    } else if (j && j->state == J_RUNNING && j->worker == w) {
        w->failed++;
        s_attempt_failed(b, j, f.code, f.reason, f.retryable);
    } else {
        b->c_dups++;
        wg_info("broker", "ignored stale FAILED job=%s worker=%s", f.job_id, w->worker_id);
    }
    wg_msg_failed_clear(&f);
}

static void s_on_backend(wg_broker_t *b) {
    wg_msg_in in;
    wg_status st = wg_msg_recv(b->be, true, &in, ZMQ_DONTWAIT);
    if (st == WG_ERR_AGAIN) {
        wg_msg_in_clear(&in);
        return;
    }
    if (st) {
        /* workers get no reply to frames they cannot have meant (PROTOCOL.md §3.2, §6.8) */
        b->c_bad_backend++;
        wg_warn("broker", "backend: dropped message: %s", wg_errmsg());
        wg_msg_in_clear(&in);
        return;
    }
    bworker *w = s_worker(b, in.id, in.id_len);
    if (in.cmd == WG_CMD_READY) {
        s_on_ready(b, &in, w);
        if ((w = s_worker(b, in.id, in.id_len)) != NULL) w->last_seen = s_now();
    } else if (!w) {
        if (in.cmd != WG_CMD_DISCONNECT) {
            wg_msg_disconnect d = {.reason = "unknown worker: send READY"};
            wg_msg_buf buf = {0};
            if (wg_msg_disconnect_encode(&d, &buf) == WG_OK)
                wg_msg_send(b->be, in.id, in.id_len, WG_CMD_DISCONNECT, &buf, ZMQ_DONTWAIT);
            wg_msg_buf_free(&buf);
        }
    } else {
        w->last_seen = s_now();
        switch (in.cmd) {
        case WG_CMD_HEARTBEAT: {
            wg_msg_heartbeat h;
            if (wg_msg_heartbeat_decode(in.body, in.body_len, &h) == WG_OK) {
                if (h.has_credits) w->credits = h.credits;
                if (h.has_mem) {
                    w->mem_budget = h.mem_budget;
                    w->mem_free = h.mem_free;
                }
                if (h.has_models) s_set_models(w, &h.models, &h.n_models);
                if (h.has_metrics) {
                    wg_msg_metrics_clear(&w->metrics);
                    w->metrics = h.metrics;
                    memset(&h.metrics, 0, sizeof h.metrics);
                    w->has_metrics = true;
                }
                wg_msg_heartbeat_clear(&h);
            } else {
                b->c_bad_backend++;
            }
            break;
        }
        case WG_CMD_DONE: s_on_done(b, &in, w); break;
        case WG_CMD_FAILED: s_on_failed(b, &in, w); break;
        case WG_CMD_DISCONNECT: s_worker_gone(b, w, false, "disconnect"); break;
        default:
            b->c_bad_backend++;
            wg_warn("broker", "worker=%s sent %s, not a backend command", w->worker_id, wg_msg_cmd_name(in.cmd));
        }
    }
    wg_msg_in_clear(&in);
}

/* ---- ZAP (CURVE allow-list) ---- */

static void s_on_zap(wg_broker_t *b) {
    zmq_msg_t f[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&f[n]);
        if (zmq_msg_recv(&f[n], b->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f[n]);
            break;
        }
        more = zmq_msg_more(&f[n]);
        n++;
    }
    while (more) { /* drain anything beyond 8 frames */
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, b->zap, 0) < 0) break;
        more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    if (n < 6) {
        for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
        return;
    }
    bool ok = false;
    if (n >= 7 && zmq_msg_size(&f[5]) == 5 && !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) &&
        zmq_msg_size(&f[6]) == 32) {
        for (uint32_t i = 0; i < b->n_allow && !ok; i++)
            ok = !memcmp(b->allow[i], zmq_msg_data(&f[6]), 32);
    }
    if (!ok) {
        b->c_zap_denied++;
        char z85[41] = "?";
        if (n >= 7 && zmq_msg_size(&f[6]) == 32) zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32);
        wg_warn("broker", "ZAP: refused client key=%s", z85);
    }
    zmq_send(b->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(b->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    zmq_send(b->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(b->zap, ok ? "OK" : "key not allowed", ok ? 2 : 15, ZMQ_SNDMORE);
    zmq_send(b->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(b->zap, "", 0, 0);
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

/* ---- metrics ---- */

typedef struct sbuf {
    char *p;      /* text */
    size_t n, cap; /* used, allocated */
} sbuf;

static void s_pf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_pf(sbuf *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (s->p && s->n + (size_t)k < s->cap) {
            s->n += (size_t)k;
            return;
        }
        size_t nc = (s->cap ? s->cap * 2 : 4096) + (size_t)k;
        char *np = realloc(s->p, nc);
        if (!np) return;
        s->p = np;
        s->cap = nc;
    }
}

/* A Prometheus label value: backslash, double quote and newline escaped
 * (worker ids and model names come off the wire). cap >= 2 * 256 + 1. */
static const char *s_lv(const char *v, char *buf, size_t cap) {
    size_t o = 0;
    for (const char *p = v ? v : "?"; *p && o + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') buf[o++] = '\\';
        if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
            continue;
        }
        buf[o++] = *p;
    }
    buf[o] = '\0';
    return buf;
}

/* Per-model residency counters of every worker (heartbeat metrics
 * `model_stats`), one family at a time: its TYPE line, then its samples. */
static void s_render_model_stats(const wg_broker_t *b, sbuf *s) {
    enum { F_LOADS, F_FAILURES, F_SECONDS, F_EVICTIONS, F_BYTES, F_N };
    static const char *const type[F_N] = {
        "# TYPE waggle_worker_model_loads_total counter\n",
        "# TYPE waggle_worker_model_load_failures_total counter\n",
        "# TYPE waggle_worker_model_load_seconds_total counter\n",
        "# TYPE waggle_worker_model_evictions_total counter\n",
        "# TYPE waggle_worker_model_resident_bytes gauge\n"};
    char wl[2 * WG_MSG_MAX_ID + 2], ml[2 * WG_MSG_MAX_MODEL + 2];
    for (int f = 0; f < F_N; f++) {
        s_pf(s, "%s", type[f]);
        for (const bworker *w = b->workers; w; w = w->next) {
            if (!w->has_metrics) continue;
            s_lv(w->worker_id, wl, sizeof wl);
            for (uint32_t i = 0; i < w->metrics.n_model_stats; i++) {
                const wg_msg_model_stat *ms = &w->metrics.model_stats[i];
                s_lv(ms->model, ml, sizeof ml);
                switch (f) {
                case F_LOADS:
                    s_pf(s, "waggle_worker_model_loads_total{worker=\"%s\",model=\"%s\"} %llu\n", wl, ml,
                         (unsigned long long)ms->loads);
                    break;
                case F_FAILURES:
                    s_pf(s, "waggle_worker_model_load_failures_total{worker=\"%s\",model=\"%s\"} %llu\n", wl, ml,
                         (unsigned long long)ms->load_failures);
                    break;
                case F_SECONDS:
                    s_pf(s, "waggle_worker_model_load_seconds_total{worker=\"%s\",model=\"%s\"} %.6f\n", wl, ml,
                         ms->load_seconds);
                    break;
                case F_EVICTIONS:
                    s_pf(s, "waggle_worker_model_evictions_total{worker=\"%s\",model=\"%s\"} %llu\n", wl, ml,
                         (unsigned long long)ms->evictions);
                    break;
                default:
                    s_pf(s, "waggle_worker_model_resident_bytes{worker=\"%s\",model=\"%s\"} %llu\n", wl, ml,
                         (unsigned long long)ms->resident_bytes);
                }
            }
        }
    }
}

static void s_render_metrics(wg_broker_t *b) {
    sbuf s = {0};
    s_pf(&s, "# TYPE waggle_broker_jobs_submitted_total counter\nwaggle_broker_jobs_submitted_total %llu\n", (unsigned long long)b->c_submitted);
    s_pf(&s, "# TYPE waggle_broker_jobs_accepted_total counter\nwaggle_broker_jobs_accepted_total %llu\n", (unsigned long long)b->c_accepted);
    s_pf(&s, "# TYPE waggle_broker_jobs_rejected_total counter\nwaggle_broker_jobs_rejected_total %llu\n", (unsigned long long)b->c_rejected);
    s_pf(&s, "# TYPE waggle_broker_jobs_done_total counter\nwaggle_broker_jobs_done_total %llu\n", (unsigned long long)b->c_done);
    s_pf(&s, "# TYPE waggle_broker_jobs_failed_total counter\nwaggle_broker_jobs_failed_total %llu\n", (unsigned long long)b->c_failed);
    s_pf(&s, "# TYPE waggle_broker_jobs_cancelled_total counter\nwaggle_broker_jobs_cancelled_total %llu\n", (unsigned long long)b->c_cancelled);
    s_pf(&s, "# TYPE waggle_broker_jobs_requeued_total counter\nwaggle_broker_jobs_requeued_total %llu\n", (unsigned long long)b->c_requeued);
    s_pf(&s, "# TYPE waggle_broker_duplicate_completions_total counter\nwaggle_broker_duplicate_completions_total %llu\n", (unsigned long long)b->c_dups);
    s_pf(&s, "# TYPE waggle_broker_bad_messages_total counter\nwaggle_broker_bad_messages_total{socket=\"frontend\"} %llu\nwaggle_broker_bad_messages_total{socket=\"backend\"} %llu\n",
         (unsigned long long)b->c_bad_frontend, (unsigned long long)b->c_bad_backend);
    s_pf(&s, "# TYPE waggle_broker_workers_lost_total counter\nwaggle_broker_workers_lost_total %llu\n", (unsigned long long)b->c_workers_lost);
    s_pf(&s, "# TYPE waggle_broker_zap_denied_total counter\nwaggle_broker_zap_denied_total %llu\n", (unsigned long long)b->c_zap_denied);
    s_pf(&s, "# TYPE waggle_broker_jobs_rejected_unknown_model_total counter\nwaggle_broker_jobs_rejected_unknown_model_total %llu\n", (unsigned long long)b->c_rejected_unknown);
    s_pf(&s, "# TYPE waggle_broker_routed_loads_total counter\nwaggle_broker_routed_loads_total{kind=\"beside\"} %llu\nwaggle_broker_routed_loads_total{kind=\"swap\"} %llu\n",
         (unsigned long long)b->c_routed_load, (unsigned long long)b->c_routed_swap);
    s_pf(&s, "# TYPE waggle_broker_store_up gauge\nwaggle_broker_store_up %d\n", b->store->ops->healthy(b->store));
    uint32_t nw = 0;
    for (bworker *w = b->workers; w; w = w->next) nw++;
    s_pf(&s, "# TYPE waggle_broker_workers gauge\nwaggle_broker_workers %u\n", nw);
    s_pf(&s, "# TYPE waggle_broker_queue_jobs gauge\n");
    for (bmodel *m = b->models; m; m = m->next)
        s_pf(&s, "waggle_broker_queue_jobs{model=\"%s\"} %llu\n", m->name, (unsigned long long)m->q_jobs);
    s_pf(&s, "# TYPE waggle_broker_queue_prompt_tokens gauge\n");
    for (bmodel *m = b->models; m; m = m->next)
        s_pf(&s, "waggle_broker_queue_prompt_tokens{model=\"%s\"} %llu\n", m->name, (unsigned long long)m->q_tokens);
    s_pf(&s, "# TYPE waggle_broker_running_jobs gauge\n");
    for (bmodel *m = b->models; m; m = m->next)
        s_pf(&s, "waggle_broker_running_jobs{model=\"%s\"} %llu\n", m->name, (unsigned long long)m->running);
    s_pf(&s, "# TYPE waggle_worker_credits gauge\n# TYPE waggle_worker_inflight gauge\n"
             "# TYPE waggle_worker_prompt_tokens_cached_total counter\n"
             "# TYPE waggle_worker_prompt_tokens_computed_total counter\n");
    char idb[2 * WG_MSG_MAX_ID + 2], mb[2 * WG_MSG_MAX_MODEL + 2];
    for (bworker *w = b->workers; w; w = w->next) {
        const char *id = s_lv(w->worker_id, idb, sizeof idb);
        s_pf(&s, "waggle_worker_credits{worker=\"%s\"} %u\n", id, w->credits);
        s_pf(&s, "waggle_worker_inflight{worker=\"%s\"} %u\n", id, w->inflight);
        if (!w->has_metrics) continue;
        const wg_msg_metrics *m = &w->metrics;
        s_pf(&s, "waggle_worker_tokens_per_second{worker=\"%s\"} %g\n", id, m->tokens_per_s);
        s_pf(&s, "waggle_worker_running_sequences{worker=\"%s\"} %u\n", id, m->running);
        s_pf(&s, "waggle_worker_waiting_sequences{worker=\"%s\"} %u\n", id, m->waiting);
        s_pf(&s, "waggle_worker_kv_usage{worker=\"%s\"} %g\n", id, m->kv_usage);
        s_pf(&s, "waggle_worker_memory_used_bytes{worker=\"%s\"} %llu\n", id, (unsigned long long)m->mem_used_bytes);
        s_pf(&s, "waggle_worker_memory_total_bytes{worker=\"%s\"} %llu\n", id, (unsigned long long)m->mem_total_bytes);
        s_pf(&s, "waggle_worker_prompt_tokens_cached_total{worker=\"%s\"} %llu\n", id,
             (unsigned long long)m->prompt_tokens_cached);
        s_pf(&s, "waggle_worker_prompt_tokens_computed_total{worker=\"%s\"} %llu\n", id,
             (unsigned long long)m->prompt_tokens_computed);
        for (uint32_t i = 0; i < m->n_models; i++)
            s_pf(&s, "waggle_worker_model_resident{worker=\"%s\",model=\"%s\"} 1\n", id, s_lv(m->models[i], mb, sizeof mb));
    }
    s_render_model_stats(b, &s);
    if (!s.p) return;
    pthread_mutex_lock(&b->mlock);
    free(b->metrics_text);
    b->metrics_text = s.p;
    pthread_mutex_unlock(&b->mlock);
}

char *wg_broker_metrics_text(wg_broker_t *b) {
    pthread_mutex_lock(&b->mlock);
    char *t = b->metrics_text ? strdup(b->metrics_text) : strdup("");
    pthread_mutex_unlock(&b->mlock);
    return t;
}

static enum MHD_Result s_http(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
    (void)version, (void)upload, (void)upload_size, (void)con_cls;
    wg_broker_t *b = cls;
    struct MHD_Response *r;
    unsigned code = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0 || strcmp(url, "/metrics") != 0) {
        static char nf[] = "not found\n";
        r = MHD_create_response_from_buffer(strlen(nf), nf, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_NOT_FOUND;
    } else {
        char *t = wg_broker_metrics_text(b);
        if (!t) return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(t), t, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    }
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- lifecycle ---- */

static void s_recover_cb(void *arg, const wg_store_entry *e) {
    wg_broker_t *b = arg;
    bjob *j = calloc(1, sizeof *j);
    if (!j) return;
    if (wg_msg_job_decode(e->job, e->job_len, &j->job) != WG_OK || strlen(e->job_id) != 32 ||
        s_find(b, e->job_id)) {
        wg_err("broker", "recovery: skipping entry %s: %s", e->entry_id, wg_errmsg());
        free(j);
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", e->job_id);
    snprintf(j->entry_id, sizeof j->entry_id, "%s", e->entry_id);
    if (e->owner_len <= sizeof j->owner) {
        memcpy(j->owner, e->owner, e->owner_len);
        j->owner_len = e->owner_len;
    }
    j->failures = e->failures;
    j->attempts = j->job.attempt;
    j->est_tokens = wg_msg_job_prompt_tokens_est(&j->job);
    j->seq = b->seq++;
    j->enq_ms = s_now();
    s_table_add(b, j);
    s_q_push(b, j);
}

static void *s_sock(wg_broker_t *b, const char *ep, const char *what) {
    void *s = zmq_socket(b->ctx, ZMQ_ROUTER);
    if (!s) return NULL;
    int one = 1, zero = 0;
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (b->cfg.curve_secret_key) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, b->cfg.curve_secret_key, 40);
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "waggle", 6);
    }
    if (zmq_bind(s, ep) != 0) {
        wg_error(WG_ERR_ZMQ, "bind %s endpoint '%s': %s", what, ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

wg_broker_t *wg_broker_new(const wg_broker_cfg *cfg) {
    if (!cfg || !cfg->frontend || !cfg->backend) {
        wg_error(WG_ERR_INVAL, "broker: frontend and backend endpoints are required");
        return NULL;
    }
    wg_broker_t *b = calloc(1, sizeof *b);
    if (!b) {
        wg_error(WG_ERR_NOMEM, "broker");
        return NULL;
    }
    b->cfg = *cfg;
    if (wg_strmap_init(&b->jobs, NBUCKETS0) != WG_OK) {
        free(b);
        wg_error(WG_ERR_NOMEM, "broker job table");
        return NULL;
    }
    if (!b->cfg.max_attempts) b->cfg.max_attempts = 3;
    if (!b->cfg.queue_max_jobs) b->cfg.queue_max_jobs = 10000;
    if (!b->cfg.queue_max_tokens) b->cfg.queue_max_tokens = 8000000;
    if (!b->cfg.heartbeat_ms) b->cfg.heartbeat_ms = 1000;
    if (!b->cfg.liveness) b->cfg.liveness = 3;
    if (b->cfg.liveness < 3 || b->cfg.liveness > 5) {
        wg_error(WG_ERR_RANGE, "broker: liveness=%u outside 3..5", b->cfg.liveness);
        free(b);
        return NULL;
    }
    if (!b->cfg.result_ttl_s) b->cfg.result_ttl_s = 86400;
    pthread_mutex_init(&b->mlock, NULL);
    atomic_init(&b->stop, 0);
    if (cfg->curve_secret_key) {
        if (strlen(cfg->curve_secret_key) != 40) {
            wg_error(WG_ERR_INVAL, "broker: CURVE secret key must be 40 Z85 chars, got %zu",
                     strlen(cfg->curve_secret_key));
            goto err;
        }
        if (cfg->n_curve_allow > MAX_ALLOW) {
            wg_error(WG_ERR_RANGE, "broker: %u allowed keys (max %d)", cfg->n_curve_allow, MAX_ALLOW);
            goto err;
        }
        for (uint32_t i = 0; i < cfg->n_curve_allow; i++) {
            if (strlen(cfg->curve_allow[i]) != 40 || !zmq_z85_decode(b->allow[i], cfg->curve_allow[i])) {
                wg_error(WG_ERR_INVAL, "broker: allowed key %u '%s' is not 40 Z85 chars", i, cfg->curve_allow[i]);
                goto err;
            }
        }
        b->n_allow = cfg->n_curve_allow;
    }
    if (cfg->redis_url) {
        wg_store_redis_cfg rc = {.url = cfg->redis_url, .user = cfg->redis_user,
                                 .password = cfg->redis_password, .group = "waggle",
                                 .consumer = cfg->name ? cfg->name : "broker"};
        b->store = wg_store_redis_new(&rc);
    } else {
        b->store = wg_store_mem_new();
    }
    if (!b->store) goto err;
    if (!b->cfg.starve_ms) b->cfg.starve_ms = 10000;
    if (cfg->redis_url && wg_registry_connect_auth(cfg->redis_url, cfg->redis_user, cfg->redis_password, &b->reg) != WG_OK) {
        if (cfg->require_registered) goto err;
        wg_warn("broker", "model registry unavailable (%s): routing without model sizes", wg_errmsg());
    }
    b->ctx = cfg->zmq_ctx;
    if (!b->ctx) {
        b->ctx = zmq_ctx_new();
        b->own_ctx = true;
        if (!b->ctx) {
            wg_error(WG_ERR_ZMQ, "zmq_ctx_new failed");
            goto err;
        }
    }
    if (cfg->curve_secret_key) {
        b->zap = zmq_socket(b->ctx, ZMQ_REP);
        int zero = 0;
        if (b->zap) zmq_setsockopt(b->zap, ZMQ_LINGER, &zero, sizeof zero);
        if (!b->zap || zmq_bind(b->zap, "inproc://zeromq.zap.01") != 0) {
            wg_error(WG_ERR_ZMQ, "bind ZAP handler: %s", zmq_strerror(zmq_errno()));
            goto err;
        }
    }
    if (!(b->fe = s_sock(b, cfg->frontend, "frontend"))) goto err;
    if (!(b->be = s_sock(b, cfg->backend, "backend"))) goto err;
    if (b->store->ops->recover(b->store, s_recover_cb, b) != WG_OK) goto err;
    if (cfg->metrics_http) {
        const char *colon = strrchr(cfg->metrics_http, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (port <= 0 || port > 65535) {
            wg_error(WG_ERR_INVAL, "metrics-http '%s' must be HOST:PORT", cfg->metrics_http);
            goto err;
        }
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        char host[64];
        snprintf(host, sizeof host, "%.*s", (int)(colon - cfg->metrics_http), cfg->metrics_http);
        if (!host[0] || !strcmp(host, "*") || !strcmp(host, "0.0.0.0")) sa.sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
            wg_error(WG_ERR_INVAL, "metrics-http host '%s' is not an IPv4 address", host);
            goto err;
        }
        s_render_metrics(b);
        b->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL,
                                  s_http, b, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                  MHD_OPTION_END);
        if (!b->mhd) {
            wg_error(WG_ERR_IO, "metrics-http: cannot listen on %s", cfg->metrics_http);
            goto err;
        }
    }
    wg_info("broker", "listening frontend=%s backend=%s store=%s curve=%s", cfg->frontend,
            cfg->backend, cfg->redis_url ? "redis" : "memory", cfg->curve_secret_key ? "on" : "off");
    return b;
err:;
    wg_status st = WG_ERR;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", wg_errmsg());
    wg_broker_destroy(&b);
    wg_error(st, "%s", msg);
    return NULL;
}

static void s_tick(wg_broker_t *b) {
    int64_t now = s_now();
    int64_t dead_after = (int64_t)b->cfg.heartbeat_ms * b->cfg.liveness;
    for (bworker *w = b->workers, *next; w; w = next) {
        next = w->next;
        if (now - w->last_seen > dead_after) {
            b->c_workers_lost++;
            s_worker_gone(b, w, true, "heartbeat timeout");
            continue;
        }
        if (now - w->last_sent >= (int64_t)b->cfg.heartbeat_ms) {
            wg_msg_buf hb = {0};
            if (wg_msg_empty_encode(&hb) == WG_OK) s_send_be(b, w, WG_CMD_HEARTBEAT, &hb);
            wg_msg_buf_free(&hb);
        }
    }
    /* results whose store write failed earlier */
    wg_strmap_iter it;
    wg_strmap_iter_init(&b->jobs, &it);
    for (bjob *j; (j = s_next_job(b, &it));)
        if (j->result.data) s_try_store(b, j);
}

wg_status wg_broker_run(wg_broker_t *b) {
    zmq_pollitem_t items[3] = {{b->fe, 0, ZMQ_POLLIN, 0}, {b->be, 0, ZMQ_POLLIN, 0}, {b->zap, 0, ZMQ_POLLIN, 0}};
    int nitems = b->zap ? 3 : 2;
    int64_t last_tick = 0;
    long timeout = b->cfg.heartbeat_ms / 4 < 100 ? (long)b->cfg.heartbeat_ms / 4 : 100;
    if (timeout < 10) timeout = 10;
    while (!atomic_load(&b->stop)) {
        int rc = zmq_poll(items, nitems, timeout);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == ETERM) break;
            return wg_error(WG_ERR_ZMQ, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        /* bounded bursts so one busy socket cannot starve the other */
        for (int k = 0; k < 256 && nitems == 3 && (items[2].revents & ZMQ_POLLIN); k++) {
            s_on_zap(b);
            int ev = 0;
            size_t sz = sizeof ev;
            zmq_getsockopt(b->zap, ZMQ_EVENTS, &ev, &sz);
            if (!(ev & ZMQ_POLLIN)) break;
        }
        for (int k = 0; k < 256 && (items[1].revents & ZMQ_POLLIN); k++) {
            s_on_backend(b);
            int ev = 0;
            size_t sz = sizeof ev;
            zmq_getsockopt(b->be, ZMQ_EVENTS, &ev, &sz);
            if (!(ev & ZMQ_POLLIN)) break;
        }
        for (int k = 0; k < 256 && (items[0].revents & ZMQ_POLLIN); k++) {
            s_on_frontend(b);
            int ev = 0;
            size_t sz = sizeof ev;
            zmq_getsockopt(b->fe, ZMQ_EVENTS, &ev, &sz);
            if (!(ev & ZMQ_POLLIN)) break;
        }
        int64_t now = s_now();
        if (now - last_tick >= timeout) {
            s_tick(b);
            last_tick = now;
        }
        s_dispatch(b);
        if (now - b->last_metrics_ms >= 1000) {
            s_render_metrics(b);
            b->last_metrics_ms = now;
        }
    }
    return WG_OK;
}

void wg_broker_stop(wg_broker_t *b) { atomic_store(&b->stop, 1); }

void wg_broker_destroy(wg_broker_t **pb) {
    if (!pb || !*pb) return;
    wg_broker_t *b = *pb;
    if (b->mhd) MHD_stop_daemon(b->mhd);
    if (b->fe) zmq_close(b->fe);
    if (b->be) zmq_close(b->be);
    if (b->zap) zmq_close(b->zap);
    if (b->own_ctx && b->ctx) zmq_ctx_term(b->ctx);
    wg_strmap_iter it;
    wg_strmap_iter_init(&b->jobs, &it);
    for (bjob *j; (j = s_next_job(b, &it));) s_job_free(j);
    wg_strmap_clear(&b->jobs);
    for (bworker *w = b->workers, *next; w; w = next) {
        next = w->next;
        s_worker_free(w);
    }
    for (bmodel *m = b->models, *next; m; m = next) {
        next = m->next;
        free(m->name);
        free(m);
    }
    wg_store_destroy(&b->store);
    wg_registry_destroy(&b->reg);
    free(b->metrics_text);
    pthread_mutex_destroy(&b->mlock);
    free(b);
    *pb = NULL;
}
