/* wg_worker — broker client and engine loop (see wg_worker.h); the stream
 * publisher thread is wg_stream.c.
 *
 * One loop: poll the broker DEALER and the stream thread's note fd without
 * blocking while any scheduler is busy, run one step per busy model, queue
 * the step's TOKEN events for the stream thread and hand them over once per
 * turn, apply its notes (pause/resume a job, a stream's final event out ->
 * DONE), send heartbeats/metrics on their timers, and watch the broker's
 * liveness. Job state lives in a small table keyed by the job pointer the
 * scheduler hands back in each event (req.user). */
#include "wg_worker.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/wg_log.h"
#include "engine/sampler/wg_chat.h"
#include "engine/sched/wg_sched.h"
#include "schemas/wg_msg_mp.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_worker.h"
#include "schemas/wg_msg_zmq.h"
#include "worker/registry/wg_registry.h"
#include "worker/registry/wg_residency.h"
#include "worker/wg_stream.h"

#define S_MOD "worker"
#define S_TOPIC_CAP (3 + WG_MSG_MAX_ID + 1)

#define S_MAX_KNOWN 64 /* registry entries the loader remembers (speculative re-loads) */

typedef struct s_model {
    char *name;              /* name jobs use */
    wg_model_t *owned;       /* loaded here, or NULL when borrowed */
    const wg_model_t *m;     /* the model */
    wg_tok_t *tok_owned;     /* loaded here, or NULL */
    const wg_tok_t *tok;     /* its tokenizer (NULL: no text, chat unsupported) */
    wg_chat_kind_t chat;     /* chat family of its template */
    wg_sched_t *sched;       /* continuous batching over it */
    int32_t n_vocab;         /* logits width */
    void *res_h;             /* residency handle (heap s_model this slot was installed from) or NULL */
    uint32_t unpins;         /* residency: finished sequences whose pin is released at the end of the turn */
    float load_ms[5];        /* residency load: registry, verify, model, tokenizer, scheduler (logged at install) */
} s_model;

typedef struct s_job {
    char *job_id;               /* broker's id (32 hex) */
    char *custom_id;            /* producer's id or NULL */
    uint32_t attempt;           /* delivery attempt */
    uint32_t model;             /* index into w->models */
    wg_seq_handle_t handle;     /* scheduler handle (0 until started) */
    wg_msg_job *held_job;       /* draining: the job not started yet (owned) */
    bool stream;                /* publish TOKEN events */
    bool want_lp;               /* return logprobs in the result */
    bool finished;              /* the scheduler reported its last event */
    bool stream_dead;           /* stream abandoned (or never opened): queue nothing more */
    bool final_sent;            /* its final event is queued and the stream thread has not reported it out */
    bool paused;                /* its sequence is paused in the scheduler */
    uint64_t seq;               /* next TOKEN seq */
    uint64_t sid;               /* stream id in w->stream (0 until its first event) */
    int32_t *stop_ids;          /* (n_stop_ids,) stop tokens, not part of the result */
    uint32_t n_stop_ids;        /* count */
    char *text;                 /* (n_text,) generated text, NUL-terminated */
    size_t n_text, cap_text;    /* bytes used / allocated */
    uint32_t *toks;             /* (n_toks,) generated ids */
    float *lps;                 /* (n_toks,) chosen logprobs when want_lp */
    uint32_t want_top;          /* top alternatives per token to return (sampling.logprobs) */
    uint8_t *n_top;             /* (n_toks,) alternatives kept per token when want_top */
    wg_msg_top_logprob *top;    /* (n_top_total,) alternatives, token-major */
    size_t n_top_total, cap_top; /* used / allocated entries of top */
    bool has_end;               /* end_sample holds the token that ended it (not in toks) */
    wg_sample_t end_sample;     /* that token's sample when want_lp */
    uint32_t n_toks, cap_toks;  /* used / allocated */
    uint32_t prompt_tokens;     /* usage */
    uint32_t completion_tokens; /* usage */
    wg_finish_t finish;         /* how it ended */
    bool pinned;                /* residency: holds a pin on models[pin_slot] */
    bool waiting;               /* residency: held_job waits for its model's load */
    uint32_t pin_slot;          /* residency: slot of the pinned model */
} s_job;

struct wg_worker {
    char *broker_ep;             /* backend endpoint */
    char *stream_ep;             /* bound XPUB endpoint (resolved), or NULL */
    char *advertise;             /* endpoint announced in READY */
    char *id;                    /* worker id */
    char *redis_url;             /* registry or NULL */
    void *ctx;                   /* zmq context */
    bool own_ctx;                /* created here */
    void *dealer;                /* DEALER to the broker */
    wg_stream_t *stream;         /* stream publisher thread (owns the XPUB) or NULL */
    bool curve;                  /* CURVE client */
    char curve_server[41];       /* broker public key */
    char curve_public[41];       /* ours */
    char curve_secret[41];       /* ours */
    s_model *models;             /* (n_models,) */
    uint32_t n_models;           /* count */
    int32_t max_seqs;            /* credits */
    uint32_t hb_ms;              /* heartbeat interval */
    uint32_t liveness;           /* missed intervals */
    uint32_t drain_timeout_ms;   /* drain limit */
    s_job **jobs;                /* (n_jobs,) in flight */
    uint32_t n_jobs, cap_jobs;   /* used / allocated */
    atomic_int stop_req;         /* wg_worker_stop called */
    atomic_int drain_req;        /* wg_worker_drain called */
    bool draining;               /* drain in progress */
    int64_t drain_deadline;      /* ms */
    int64_t last_send_ms;        /* last message to the broker */
    int64_t last_recv_ms;        /* last message from the broker */
    int64_t reconnect_after_ms;  /* silence that triggers a reconnect (backoff) */
    int64_t next_metrics_ms;     /* metrics timer */
    int64_t metrics_t0;          /* start of the metrics interval */
    uint64_t metrics_tok0;       /* tokens at its start */
    uint64_t pc_cached0;         /* prompt tokens found in / computed past the prefix cache by */
    uint64_t pc_computed0;       /* schedulers already freed (METRICS totals) */
    wg_msg_metrics last_metrics; /* latest figures (for HEARTBEAT); models point into model_names */
    char *model_names[WG_MSG_MAX_MODELS]; /* (n_models,) borrowed names for the metrics map */
    wg_msg_model_stat model_stats[WG_MSG_MAX_MODELS]; /* per-model counters for the metrics map (names borrowed from res) */
    wg_registry_t *registry;     /* worker directory connection or NULL */
    int64_t redis_retry_ms;      /* next connection attempt */
    wg_worker_stats st;          /* counters */
    wg_residency_t *res;         /* residency manager (mem_budget > 0) or NULL */
    uint64_t mem_budget;         /* bytes of weights + KV (0 = no residency) */
    uint32_t load_delay_ms;      /* test hook: extra sleep per load */
    wg_registry_t *load_reg;     /* loader thread's own registry connection */
    wg_reg_model known[S_MAX_KNOWN]; /* loader thread: entries of models it loaded, most recent first */
    uint32_t n_known;            /* entries in known */
    size_t kv_budget;            /* KV bytes per model (cfg.kv_budget_bytes) */
    int n_threads;               /* forward threads per model */
    char device[32];             /* "cpu" or "cuda:N" */
    uint32_t n_waiting;          /* jobs waiting for a load */
    uint64_t swaps_logged;       /* loads + evictions already logged */
};

static int64_t s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double s_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t s_unix_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* ---------------------------------------------------------------- jobs */

static void s_job_free(s_job *j) {
    if (!j) return;
    free(j->job_id);
    free(j->custom_id);
    if (j->held_job) {
        wg_msg_job_clear(j->held_job);
        free(j->held_job);
    }
    free(j->stop_ids);
    free(j->text);
    free(j->toks);
    free(j->lps);
    free(j->n_top);
    free(j->top);
    free(j);
}

static s_job *s_job_find(const wg_worker_t *w, const char *job_id) {
    for (uint32_t i = 0; i < w->n_jobs; i++)
        if (strcmp(w->jobs[i]->job_id, job_id) == 0) return w->jobs[i];
    return NULL;
}

static wg_status s_job_add(wg_worker_t *w, s_job *j) {
    if (w->n_jobs == w->cap_jobs) {
        uint32_t nc = w->cap_jobs ? w->cap_jobs * 2 : 64;
        s_job **nj = realloc(w->jobs, nc * sizeof *nj);
        if (!nj) return wg_error(WG_ERR_NOMEM, "worker: job table of %u", nc);
        w->jobs = nj;
        w->cap_jobs = nc;
    }
    w->jobs[w->n_jobs++] = j;
    return WG_OK;
}

static void s_job_remove(wg_worker_t *w, s_job *j) {
    if (j->pinned) w->models[j->pin_slot].unpins++; /* released after this turn's steps (s_res_turn) */
    if (j->waiting && w->n_waiting) w->n_waiting--;
    wg_stream_close(w->stream, j->sid); /* drops what the stream thread may still hold of it */
    for (uint32_t i = 0; i < w->n_jobs; i++)
        if (w->jobs[i] == j) {
            w->jobs[i] = w->jobs[--w->n_jobs];
            break;
        }
    s_job_free(j);
}

/* ---------------------------------------------------------------- broker I/O */

/* Send to the broker. A send that cannot complete within the socket's send
 * timeout is dropped with a warning: the broker requeues what it never hears
 * about, so a lost DONE costs a recomputation, never a result. */
static void s_send(wg_worker_t *w, wg_msg_cmd cmd, const wg_msg_buf *body) {
    wg_status st = wg_msg_send(w->dealer, NULL, 0, cmd, body, 0);
    if (st) wg_warn(S_MOD, "worker=%s send %s failed: %s", w->id, wg_msg_cmd_name(cmd), wg_errmsg());
    w->last_send_ms = s_now_ms();
}

static void s_send_failed(wg_worker_t *w, const char *job_id, wg_status code, const char *reason,
                          bool retryable) {
    char r[WG_MSG_MAX_REASON + 1];
    snprintf(r, sizeof r, "%s", reason ? reason : wg_strerror(code));
    wg_msg_failed f = {.job_id = (char *)job_id, .code = code, .reason = r, .retryable = retryable};
    wg_msg_buf b = {0};
    if (wg_msg_failed_encode(&f, &b) == WG_OK) s_send(w, WG_CMD_FAILED, &b);
    wg_msg_buf_free(&b);
    w->st.jobs_failed++;
    wg_info(S_MOD, "worker=%s job=%s failed code=%s reason=\"%s\"", w->id, job_id,
            wg_status_name(code), r);
}

static uint32_t s_model_names(const wg_worker_t *w, char **names);

static wg_status s_send_ready(wg_worker_t *w) {
    char *names[WG_MSG_MAX_MODELS];
    uint32_t n_names = s_model_names(w, names);
    uint32_t credits = w->draining ? 1u : (uint32_t)w->max_seqs;
    wg_msg_ready r = {.worker_id = w->id, .credits = credits, .models = names,
                      .n_models = n_names, .stream_endpoint = w->advertise};
    if (w->res) {
        r.mem_budget = w->mem_budget;
        r.mem_free = wg_res_mem_free(w->res);
    }
    wg_msg_buf b = {0};
    wg_status st = wg_msg_ready_encode(&r, &b);
    if (st) return st;
    s_send(w, WG_CMD_READY, &b);
    wg_msg_buf_free(&b);
    return WG_OK;
}

static wg_status s_dealer_open(wg_worker_t *w) {
    w->dealer = zmq_socket(w->ctx, ZMQ_DEALER);
    if (!w->dealer) return wg_error(WG_ERR_ZMQ, "worker: DEALER socket: %s", zmq_strerror(errno));
    int zero = 0, sndto = 1000, hwm = 100000, ivl = 100, ivl_max = 5000;
    zmq_setsockopt(w->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(w->dealer, ZMQ_SNDTIMEO, &sndto, sizeof sndto);
    zmq_setsockopt(w->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(w->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(w->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(w->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    if (w->curve) {
        zmq_setsockopt(w->dealer, ZMQ_CURVE_SERVERKEY, w->curve_server, 40);
        zmq_setsockopt(w->dealer, ZMQ_CURVE_PUBLICKEY, w->curve_public, 40);
        zmq_setsockopt(w->dealer, ZMQ_CURVE_SECRETKEY, w->curve_secret, 40);
    }
    if (zmq_connect(w->dealer, w->broker_ep) != 0) {
        wg_status st = wg_error(WG_ERR_ZMQ, "worker: connect broker '%s': %s", w->broker_ep,
                                zmq_strerror(errno));
        zmq_close(w->dealer);
        w->dealer = NULL;
        return st;
    }
    return WG_OK;
}

/* Broker silent for too long: new socket, READY again, longer patience next time. */
static void s_reconnect(wg_worker_t *w) {
    wg_warn(S_MOD, "worker=%s broker silent for %lld ms, reconnecting", w->id,
            (long long)(s_now_ms() - w->last_recv_ms));
    if (w->dealer) zmq_close(w->dealer);
    w->dealer = NULL;
    if (s_dealer_open(w) == WG_OK) s_send_ready(w);
    w->st.reconnects++;
    w->last_recv_ms = s_now_ms();
    int64_t base = (int64_t)w->hb_ms * w->liveness;
    w->reconnect_after_ms = w->reconnect_after_ms * 2 > 30000 ? 30000 : w->reconnect_after_ms * 2;
    if (w->reconnect_after_ms < base) w->reconnect_after_ms = base;
}

/* ---------------------------------------------------------------- registry (Redis) */

/* Refresh this worker's entry in the Redis worker directory (wg_registry:
 * waggle:worker:<id> with a TTL, waggle:workers) so consumers can find its
 * stream endpoint. Failures only delay the next try; dispatch never depends
 * on the directory. */
static void s_registry_refresh(wg_worker_t *w) {
    if (!w->redis_url) return;
    int64_t now = s_now_ms();
    if (now < w->redis_retry_ms) return;
    if (!w->registry && wg_registry_connect(w->redis_url, &w->registry) != WG_OK) {
        w->redis_retry_ms = now + 5000;
        wg_warn(S_MOD, "worker=%s registry unreachable (%s), retry in 5 s", w->id, wg_errmsg());
        return;
    }
    char *names[WG_MSG_MAX_MODELS];
    uint32_t n_names = s_model_names(w, names);
    uint32_t credits = w->draining ? 1u : (uint32_t)w->max_seqs;
    uint32_t running = w->last_metrics.running;
    wg_reg_worker e = {0};
    e.id = w->id;
    e.stream_endpoint = w->advertise ? w->advertise : "";
    e.device = w->device;
    e.mem_budget = w->last_metrics.mem_total_bytes;
    e.mem_free = w->last_metrics.mem_total_bytes > w->last_metrics.mem_used_bytes
                     ? w->last_metrics.mem_total_bytes - w->last_metrics.mem_used_bytes
                     : 0;
    if (w->res) { /* the residency budget, not the host's memory */
        e.mem_budget = w->mem_budget;
        e.mem_free = wg_res_mem_free(w->res);
    }
    e.models = names;
    e.n_models = n_names;
    e.credits = credits;
    e.free_slots = credits > running ? credits - running : 0;
    e.ts_ms = (int64_t)s_unix_ms();
    uint32_t ttl = (uint32_t)((w->hb_ms * w->liveness) / 1000) + 2;
    if (wg_registry_worker_put(w->registry, &e, ttl) != WG_OK) {
        wg_warn(S_MOD, "worker=%s registry refresh failed: %s", w->id, wg_errmsg());
        wg_registry_destroy(&w->registry);
        w->redis_retry_ms = now + 1000;
    }
}

/* ---------------------------------------------------------------- streams */

static void s_resume(wg_worker_t *w, s_job *j) {
    if (j->paused && !j->finished) wg_sched_resume(w->models[j->model].sched, j->handle);
    j->paused = false;
}

static void s_finish_job(wg_worker_t *w, s_job *j);

/* Notes from the stream thread (flow control and stream ends), applied to
 * the scheduler as the old in-loop publisher did: PAUSE stops only that
 * job's sequence (its KV kept), RESUME restarts it; CLOSED / ABANDONED say
 * nothing of the stream is left there, so a finished job's DONE may go.
 * Returns the seconds spent sending results (not publishing work). */
static double s_stream_notes(wg_worker_t *w) {
    double t_results = 0;
    wg_stream_note n;
    wg_stream_notes_take(w->stream);
    while (wg_stream_note_next(w->stream, &n)) {
        s_job *j = n.user;
        switch (n.kind) {
        case WG_STREAM_PAUSE:
            if (!j->finished && j->handle && !j->paused &&
                wg_sched_pause(w->models[j->model].sched, j->handle) == WG_OK)
                j->paused = true;
            break;
        case WG_STREAM_RESUME: s_resume(w, j); break;
        case WG_STREAM_ABANDONED:
            j->stream_dead = true;
            s_resume(w, j);
            /* fall through */
        case WG_STREAM_CLOSED:
            j->final_sent = false;
            if (j->finished) {
                double t0 = s_now_s();
                s_finish_job(w, j); /* closes its stream: later notes of it are skipped */
                t_results += s_now_s() - t0;
            }
            break;
        }
    }
    return t_results;
}

/* ---------------------------------------------------------------- results */

static void s_finish_job(wg_worker_t *w, s_job *j) {
    wg_msg_result r = {0};
    r.job_id = j->job_id;
    r.custom_id = j->custom_id;
    r.text = j->text ? j->text : "";
    r.token_ids = j->toks;
    r.n_tokens = j->n_toks;
    if (j->want_lp) {
        r.logprobs = j->lps;
        r.n_logprobs = j->n_toks;
    }
    if (j->want_top && j->n_top) {
        r.n_top = j->n_top;
        r.top = j->top;
    }
    if (j->want_lp && j->has_end) {
        r.has_end = true;
        r.end_token = (uint32_t)j->end_sample.token;
        r.end_logprob = j->end_sample.logprob;
        uint32_t k = j->end_sample.n_top > 0 ? (uint32_t)j->end_sample.n_top : 0;
        if (k > j->want_top) k = j->want_top;
        r.end_n_top = k;
        for (uint32_t q = 0; q < k; q++)
            r.end_top[q] = (wg_msg_top_logprob){(uint32_t)j->end_sample.top_tokens[q], j->end_sample.top_logprobs[q]};
    }
    r.finish_reason = (char *)(wg_finish_name(j->finish) ? wg_finish_name(j->finish) : "stop");
    r.prompt_tokens = j->prompt_tokens;
    r.completion_tokens = j->completion_tokens;
    wg_msg_buf b = {0};
    wg_status st = wg_msg_result_encode(WG_CMD_DONE, &r, &b);
    if (st == WG_OK) {
        s_send(w, WG_CMD_DONE, &b);
        w->st.jobs_done++;
    } else {
        s_send_failed(w, j->job_id, st, wg_errmsg(), false);
    }
    wg_msg_buf_free(&b);
    s_job_remove(w, j);
}

static wg_status s_job_append(s_job *j, const wg_sched_event_t *ev, bool keep_token) {
    if (ev->text_len) {
        if (j->n_text + ev->text_len + 1 > WG_MSG_MAX_TEXT) return WG_OK; /* keep what fits */
        if (j->n_text + ev->text_len + 1 > j->cap_text) {
            size_t nc = j->cap_text ? j->cap_text : 256;
            while (nc < j->n_text + ev->text_len + 1) nc *= 2;
            char *nt = realloc(j->text, nc);
            if (!nt) return wg_error(WG_ERR_NOMEM, "worker: text of %zu bytes", nc);
            j->text = nt;
            j->cap_text = nc;
        }
        memcpy(j->text + j->n_text, ev->text, ev->text_len);
        j->n_text += ev->text_len;
        j->text[j->n_text] = '\0';
    }
    if (keep_token) {
        if (j->n_toks == j->cap_toks) {
            uint32_t nc = j->cap_toks ? j->cap_toks * 2 : 64;
            uint32_t *nt = realloc(j->toks, nc * sizeof *nt);
            if (!nt) return wg_error(WG_ERR_NOMEM, "worker: %u token ids", nc);
            j->toks = nt;
            float *nl = realloc(j->lps, nc * sizeof *nl);
            if (!nl) return wg_error(WG_ERR_NOMEM, "worker: %u logprobs", nc);
            j->lps = nl;
            if (j->want_top) {
                uint8_t *nn = realloc(j->n_top, nc);
                if (!nn) return wg_error(WG_ERR_NOMEM, "worker: %u top_logprobs rows", nc);
                j->n_top = nn;
            }
            j->cap_toks = nc;
        }
        if (j->want_top) {
            uint32_t k = ev->has_logprobs && ev->sample.n_top > 0 ? (uint32_t)ev->sample.n_top : 0;
            if (k > j->want_top) k = j->want_top;
            if (j->n_top_total + k > j->cap_top) {
                size_t nc = j->cap_top ? j->cap_top * 2 : 64;
                while (nc < j->n_top_total + k) nc *= 2;
                wg_msg_top_logprob *nt = realloc(j->top, nc * sizeof *nt);
                if (!nt) return wg_error(WG_ERR_NOMEM, "worker: %zu top_logprobs", nc);
                j->top = nt;
                j->cap_top = nc;
            }
            for (uint32_t q = 0; q < k; q++)
                j->top[j->n_top_total++] =
                    (wg_msg_top_logprob){(uint32_t)ev->sample.top_tokens[q], ev->sample.top_logprobs[q]};
            j->n_top[j->n_toks] = (uint8_t)k;
        }
        j->lps[j->n_toks] = ev->sample.logprob;
        j->toks[j->n_toks++] = (uint32_t)ev->token;
    }
    return WG_OK;
}

static bool s_is_stop_token(const wg_worker_t *w, const s_job *j, int32_t t) {
    for (uint32_t i = 0; i < j->n_stop_ids; i++)
        if (j->stop_ids[i] == t) return true;
    const s_model *m = &w->models[j->model];
    if (m->tok) return wg_tok_is_eog(m->tok, t);
    return t == wg_model_hparams(m->m)->eos;
}

static void s_on_event(wg_worker_t *w, const wg_sched_event_t *ev) {
    s_job *j = ev->user;
    /* A terminating stop token is not part of the output (its text is empty). */
    bool keep = ev->token >= 0 && !(ev->finish == WG_FINISH_STOP && ev->text_len == 0 &&
                                    s_is_stop_token(w, j, ev->token));
    if (ev->token >= 0) w->st.tokens++;
    if (!keep && ev->token >= 0 && j->want_lp && ev->has_logprobs) {
        j->has_end = true;
        j->end_sample = ev->sample;
    }
    if (s_job_append(j, ev, keep)) wg_warn(S_MOD, "worker=%s job=%s: %s", w->id, j->job_id, wg_errmsg());
    j->prompt_tokens = (uint32_t)ev->n_prompt;
    j->completion_tokens = (uint32_t)ev->n_generated;
    if (ev->finish != WG_FINISH_NONE) {
        j->finished = true;
        j->finish = ev->finish;
    }
    if (j->stream && !j->stream_dead && w->stream) {
        /* Engine-side publishing is a record copy; encoding and sending are the stream thread's. */
        double t0 = s_now_s();
        if (!j->sid) j->sid = wg_stream_open(w->stream, j->job_id, j);
        if (j->sid) {
            wg_stream_ev e = {.seq = j->seq++, .token_id = ev->token >= 0 ? (uint32_t)ev->token : 0,
                              .attempt = j->attempt, .text = ev->text, .text_len = ev->text_len,
                              .final = ev->finish != WG_FINISH_NONE, .finish_reason = wg_finish_name(ev->finish)};
            if (ev->has_logprobs && ev->token >= 0) {
                e.has_logprob = true;
                e.logprob = ev->sample.logprob;
                e.top_tokens = ev->sample.top_tokens;
                e.top_logprobs = ev->sample.top_logprobs;
                e.n_top = ev->sample.n_top > 0 ? (uint32_t)ev->sample.n_top : 0;
            }
            wg_stream_event(w->stream, j->sid, &e);
            j->final_sent = e.final;
        } else {
            j->stream_dead = true;
            wg_warn(S_MOD, "worker=%s job=%s streams nothing: out of memory", w->id, j->job_id);
        }
        w->st.publish_seconds += s_now_s() - t0;
    }
    /* A streamed job's DONE waits until the stream thread has its final event out (s_stream_notes). */
    if (j->finished && !j->final_sent) s_finish_job(w, j);
}

/* ---------------------------------------------------------------- jobs in */

static s_model *s_model_find(wg_worker_t *w, const char *name, uint32_t *idx) {
    for (uint32_t i = 0; i < w->n_models; i++)
        if (w->models[i].name && strcmp(w->models[i].name, name) == 0) {
            *idx = i;
            return &w->models[i];
        }
    return NULL;
}

/* Tokenize the job's prompt or chat messages. */
static wg_status s_prompt_ids(const s_model *m, const wg_msg_job *job, int32_t **ids, size_t *n) {
    if (job->n_prompt_ids) { /* token-id prompt: used verbatim */
        *ids = malloc(job->n_prompt_ids * sizeof **ids);
        if (!*ids) return wg_error(WG_ERR_NOMEM, "prompt: %u token ids", job->n_prompt_ids);
        for (uint32_t i = 0; i < job->n_prompt_ids; i++) {
            if (job->prompt_ids[i] >= (uint32_t)m->n_vocab) {
                free(*ids);
                *ids = NULL;
                return wg_error(WG_ERR_INVAL, "prompt[%u]: token id %u >= n_vocab %d", i, job->prompt_ids[i],
                                m->n_vocab);
            }
            (*ids)[i] = (int32_t)job->prompt_ids[i];
        }
        *n = job->n_prompt_ids;
        return WG_OK;
    }
    if (!m->tok) return wg_error(WG_ERR_UNSUPPORTED, "model '%s' has no tokenizer", m->name);
    if (job->prompt) return wg_tok_encode(m->tok, job->prompt, strlen(job->prompt), true, false, ids, n);
    if (m->chat == WG_CHAT_UNKNOWN)
        return wg_error(WG_ERR_UNSUPPORTED, "model '%s' has a chat template of an unsupported family", m->name);
    wg_chat_msg_t *msgs = calloc(job->n_messages ? job->n_messages : 1, sizeof *msgs);
    if (!msgs) return wg_error(WG_ERR_NOMEM, "messages");
    for (uint32_t i = 0; i < job->n_messages; i++)
        msgs[i] = (wg_chat_msg_t){job->messages[i].role, job->messages[i].content};
    int32_t bos = wg_tok_bos(m->tok), eos = wg_tok_eos(m->tok);
    char *text = NULL;
    wg_status st = wg_chat_render(m->chat, msgs, job->n_messages, true, bos >= 0 ? wg_tok_text(m->tok, bos) : NULL,
                                  eos >= 0 ? wg_tok_text(m->tok, eos) : NULL, &text);
    free(msgs);
    if (st) return st;
    st = wg_tok_encode(m->tok, text, strlen(text), true, true, ids, n);
    free(text);
    return st;
}

/* Admit a decoded job into its model's scheduler; failures become FAILED. */
static void s_start_job(wg_worker_t *w, s_job *j, wg_msg_job *job) {
    uint32_t mi = 0;
    s_model *m = s_model_find(w, job->model, &mi);
    if (!m) {
        char r[512];
        snprintf(r, sizeof r, "model '%.256s' is not served by worker %.128s", job->model, w->id);
        s_send_failed(w, j->job_id, WG_ERR_NOTFOUND, r, true);
        s_job_remove(w, j);
        return;
    }
    j->model = mi;
    wg_status st;
    int32_t *ids = NULL;
    wg_logit_bias_t *bias = NULL;
    size_t n = 0;
    char reason[WG_MSG_MAX_REASON];
    if ((st = s_prompt_ids(m, job, &ids, &n))) goto fail;
    if (n == 0) {
        st = wg_error(WG_ERR_INVAL, "prompt: tokenizes to 0 tokens");
        goto fail;
    }
    if (job->n_stop > WG_MAX_STOP) {
        st = wg_error(WG_ERR_RANGE, "stop: %u strings, this worker supports at most %d", job->n_stop, WG_MAX_STOP);
        goto fail;
    }
    if (job->n_stop_token_ids) {
        j->stop_ids = malloc(job->n_stop_token_ids * sizeof *j->stop_ids);
        if (!j->stop_ids) {
            st = wg_error(WG_ERR_NOMEM, "stop_token_ids");
            goto fail;
        }
        for (uint32_t i = 0; i < job->n_stop_token_ids; i++) {
            if (job->stop_token_ids[i] >= (uint32_t)m->n_vocab) {
                st = wg_error(WG_ERR_RANGE, "stop_token_ids[%u]: %u >= n_vocab %d", i, job->stop_token_ids[i],
                              m->n_vocab);
                goto fail;
            }
            j->stop_ids[i] = (int32_t)job->stop_token_ids[i];
        }
        j->n_stop_ids = job->n_stop_token_ids;
    }
    wg_sched_req_t req = {0};
    req.prompt = ids;
    req.n_prompt = n;
    req.sampling = wg_sampling_defaults();
    const wg_msg_sampling *sp = &job->sampling;
    req.sampling.temperature = (float)sp->temperature;
    req.sampling.top_k = (int32_t)sp->top_k;
    req.sampling.top_p = (float)sp->top_p;
    req.sampling.min_p = (float)sp->min_p;
    req.sampling.repeat_penalty = (float)sp->repetition_penalty;
    req.sampling.repeat_last_n = -1; /* whole history, as waggle run */
    req.sampling.presence_penalty = (float)sp->presence_penalty;
    req.sampling.frequency_penalty = (float)sp->frequency_penalty;
    req.sampling.has_seed = sp->has_seed;
    req.sampling.seed = sp->seed;
    req.sampling.logprobs = sp->logprobs > 0 || sp->chosen_logprob;
    req.sampling.n_logprobs = (int32_t)sp->logprobs;
    if (job->n_logit_bias) {
        bias = malloc(job->n_logit_bias * sizeof *bias);
        if (!bias) {
            st = wg_error(WG_ERR_NOMEM, "logit_bias");
            goto fail;
        }
        for (uint32_t i = 0; i < job->n_logit_bias; i++) {
            if (job->logit_bias[i].token_id >= (uint32_t)m->n_vocab) {
                st = wg_error(WG_ERR_INVAL, "logit_bias[%u]: token id %u >= n_vocab %d", i,
                              job->logit_bias[i].token_id, m->n_vocab);
                goto fail;
            }
            bias[i] = (wg_logit_bias_t){(int32_t)job->logit_bias[i].token_id, job->logit_bias[i].bias};
        }
        req.sampling.logit_bias = bias; /* copied by wg_sched_submit */
        req.sampling.n_logit_bias = job->n_logit_bias;
    }
    req.stop = (const char *const *)job->stop;
    req.n_stop = job->n_stop;
    req.stop_ids = j->stop_ids;
    req.n_stop_ids = j->n_stop_ids;
    req.max_tokens = (int32_t)job->max_tokens;
    req.priority = job->priority;
    req.json = job->json_object;
    req.user = j;
    j->stream = job->stream;
    j->want_lp = sp->logprobs > 0 || sp->chosen_logprob;
    j->want_top = sp->logprobs;
    if ((st = wg_sched_submit(m->sched, &req, &j->handle))) goto fail;
    free(ids);
    free(bias);
    w->st.jobs_received++;
    return;
fail:
    snprintf(reason, sizeof reason, "%s", wg_errmsg());
    free(ids);
    free(bias);
    /* Bad requests fail for good; resource trouble may succeed elsewhere. */
    s_send_failed(w, j->job_id, st, reason, st == WG_ERR_NOMEM);
    s_job_remove(w, j);
}

/* Read job_id out of a body that did not decode, so FAILED can name it. */
static char *s_peek_job_id(const uint8_t *data, size_t len) {
    wg_mp_rd r;
    uint32_t n = 0;
    if (!data || wg_mp_begin(&r, data, len, "JOB", &n)) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (wg_mp_key(&r, &k, &kl)) return NULL;
        if (wg_mp_key_is(k, kl, "job_id")) {
            char *id = NULL;
            if (wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &id)) return NULL;
            return id;
        }
        if (wg_mp_skip(&r)) return NULL;
    }
    return NULL;
}

static void s_res_admit(wg_worker_t *w, s_job *j, wg_msg_job *job);
static void s_heartbeat(wg_worker_t *w);

static void s_on_job(wg_worker_t *w, const wg_msg_in *in) {
    wg_msg_job *job = calloc(1, sizeof *job);
    if (!job) return;
    wg_status st = wg_msg_job_decode(in->body, in->body_len, job);
    if (st) {
        char reason[WG_MSG_MAX_REASON];
        snprintf(reason, sizeof reason, "bad JOB body: %s", wg_errmsg());
        free(job);
        w->st.bad_frames++;
        char *id = s_peek_job_id(in->body, in->body_len);
        if (id) s_send_failed(w, id, st, reason, false);
        else wg_warn(S_MOD, "worker=%s dropped JOB without a readable job_id: %s", w->id, reason);
        free(id);
        return;
    }
    s_job *dup = s_job_find(w, job->job_id);
    if (dup) { /* redelivery of a job we still run: one result will do */
        if (job->attempt) dup->attempt = job->attempt;
        wg_msg_job_clear(job);
        free(job);
        return;
    }
    s_job *j = calloc(1, sizeof *j);
    if (!j || !(j->job_id = strdup(job->job_id)) || (job->custom_id && !(j->custom_id = strdup(job->custom_id))) ||
        s_job_add(w, j) != WG_OK) {
        if (j) s_job_free(j);
        else wg_error(WG_ERR_NOMEM, "job");
        s_send_failed(w, job->job_id, WG_ERR_NOMEM, "worker out of memory", true);
        wg_msg_job_clear(job);
        free(job);
        return;
    }
    j->attempt = job->attempt;
    if (w->draining) { /* handed back by the DISCONNECT that ends the drain */
        j->held_job = job;
        return;
    }
    if (w->res) { /* residency: pin its model, or wait for its load */
        s_res_admit(w, j, job);
        return;
    }
    s_start_job(w, j, job);
    wg_msg_job_clear(job);
    free(job);
}

static void s_on_cancel(wg_worker_t *w, const wg_msg_in *in) {
    wg_msg_req q = {0};
    if (wg_msg_req_decode(WG_CMD_CANCEL, in->body, in->body_len, &q)) {
        w->st.bad_frames++;
        wg_warn(S_MOD, "worker=%s bad CANCEL: %s", w->id, wg_errmsg());
        return;
    }
    s_job *j = q.job_id ? s_job_find(w, q.job_id) : NULL;
    if (j && j->held_job) {
        s_send_failed(w, j->job_id, WG_ERR_CANCELLED, "cancelled before start", false);
        s_job_remove(w, j);
    } else if (j && !j->finished) {
        wg_sched_cancel(w->models[j->model].sched, j->handle);
    }
    wg_msg_req_clear(&q);
}

static void s_read_broker(wg_worker_t *w) {
    for (int k = 0; k < 256; k++) {
        wg_msg_in in;
        wg_status st = wg_msg_recv(w->dealer, false, &in, ZMQ_DONTWAIT);
        if (st == WG_ERR_AGAIN) {
            wg_msg_in_clear(&in);
            return;
        }
        if (st) {
            w->st.bad_frames++;
            wg_warn(S_MOD, "worker=%s dropped malformed broker message: %s", w->id, wg_errmsg());
            wg_msg_in_clear(&in);
            continue;
        }
        w->last_recv_ms = s_now_ms();
        w->reconnect_after_ms = (int64_t)w->hb_ms * w->liveness;
        switch (in.cmd) {
        case WG_CMD_JOB: s_on_job(w, &in); break;
        case WG_CMD_CANCEL: s_on_cancel(w, &in); break;
        case WG_CMD_HEARTBEAT: break;
        case WG_CMD_DISCONNECT:
            wg_info(S_MOD, "worker=%s broker asked to re-register", w->id);
            s_send_ready(w);
            break;
        default:
            w->st.bad_frames++;
            wg_warn(S_MOD, "worker=%s unexpected %s from broker", w->id, wg_msg_cmd_name(in.cmd));
        }
        wg_msg_in_clear(&in);
    }
}

/* ---------------------------------------------------------------- residency */

/* Names advertised in READY/HEARTBEAT/METRICS/registry: the resident models
 * (residency, most recently used first) or every served one. Borrowed. */
static uint32_t s_model_names(const wg_worker_t *w, char **names) {
    if (w->res) return wg_res_models(w->res, (const char **)names, WG_MSG_MAX_MODELS);
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n_models; i++)
        if (w->models[i].name) names[n++] = w->models[i].name;
    return n;
}

/* Free what a slot (or a loaded-but-never-installed model) owns; zeroes it. */
static void s_model_clear(s_model *m) {
    wg_sched_free(&m->sched);
    wg_tok_free(&m->tok_owned);
    wg_model_free(&m->owned);
    free(m->name);
    memset(m, 0, sizeof *m);
}

/* Bytes a resident model holds: weights + its scheduler's KV cache. */
static uint64_t s_model_bytes(const s_model *m) {
    wg_sched_stats_t s;
    wg_sched_stats(m->sched, &s);
    return (uint64_t)wg_model_weight_bytes(m->m) + (uint64_t)s.kv_blocks * s.kv_block_bytes;
}

static wg_status s_load_model(s_model *sm, const wg_worker_model *spec, const wg_worker_cfg *cfg, double *t);

/* The remembered entry of `name`, or -1. Loader thread. */
static int s_known_find(const wg_worker_t *w, const char *name) {
    for (uint32_t i = 0; i < w->n_known; i++)
        if (!strcmp(w->known[i].name, name)) return (int)i;
    return -1;
}

static void s_known_drop(wg_worker_t *w, const char *name) {
    int i = s_known_find(w, name);
    if (i < 0) return;
    wg_reg_model_clear(&w->known[i]);
    memmove(&w->known[i], &w->known[i + 1], (w->n_known - (uint32_t)i - 1) * sizeof *w->known);
    w->n_known--;
}

/* Remember *rm (taken: *rm is left empty) as the newest entry. */
static void s_known_take(wg_worker_t *w, wg_reg_model *rm) {
    s_known_drop(w, rm->name);
    if (w->n_known == S_MAX_KNOWN) wg_reg_model_clear(&w->known[--w->n_known]);
    memmove(&w->known[1], &w->known[0], w->n_known * sizeof *w->known);
    w->known[0] = *rm;
    w->n_known++;
    memset(rm, 0, sizeof *rm);
    rm->file_type = -1;
}

/* Same model as far as a load is concerned: path, digest, size and files
 * (recorded mtimes may differ: the file identity check is the stat). */
static bool s_same_entry(const wg_reg_model *a, const wg_reg_model *b) {
    if (strcmp(a->path, b->path) || strcmp(a->sha256, b->sha256) || strcmp(a->format, b->format) ||
        a->bytes != b->bytes || a->n_files != b->n_files)
        return false;
    for (uint32_t i = 0; i < a->n_files; i++)
        if (strcmp(a->files[i].name, b->files[i].name) || a->files[i].size != b->files[i].size ||
            strcmp(a->files[i].sha256, b->files[i].sha256))
            return false;
    return true;
}

static wg_status s_load_model(s_model *sm, const wg_worker_model *spec, const wg_worker_cfg *cfg, double *t);

/* wg_res_ops.load (loader thread): registry entry -> budget check -> sha256
 * verify -> model, tokenizer, scheduler. The handle is a heap s_model that the
 * owner thread installs into a slot on first acquire (s_res_slot).
 *
 * One Redis round trip, and on a re-load it is hidden: when the loader
 * loaded `name` before and the registry handle's in-process record still
 * vouches for its files (same device, inode, size, mtime), the HGETALL is
 * sent first, the model is loaded from the remembered entry meanwhile, and
 * the reply decides: the same entry (path, digest, files) keeps the load; a
 * changed or removed one discards it and takes the full path with the new
 * entry. Every load therefore still answers to the registry as it is at load
 * time. Nothing is logged in here: the phase times are kept in the handle
 * and logged when it is installed, outside the measured load. */
static wg_status s_res_load(void *arg, const char *name, void **handle, uint64_t *bytes) {
    wg_worker_t *w = arg;
    if (!w->redis_url)
        return wg_error(WG_ERR_NOTFOUND, "model '%s' is not resident and worker %s has no registry (--redis)",
                        name, w->id);
    wg_status st;
    if (!w->load_reg && (st = wg_registry_connect(w->redis_url, &w->load_reg))) return st;
    wg_reg_model rm = {0};
    rm.file_type = -1;
    s_model *m = NULL;
    wg_worker_cfg c = {.kv_budget_bytes = w->kv_budget, .max_seqs = w->max_seqs, .n_threads = w->n_threads,
                       .device = w->device};
    double t[6] = {s_now_s()}; /* start, registry, verify, model (+ test delay), tokenizer, scheduler */
    const int k = s_known_find(w, name);
    /* (the test hook's slow loads always take the plain path, where they sleep) */
    if (k >= 0 && !w->load_delay_ms && wg_registry_get_start(w->load_reg, name) == WG_OK) {
        const wg_reg_model *kn = &w->known[k];
        wg_status ls = WG_ERR;
        if ((uint64_t)kn->bytes <= w->mem_budget && wg_registry_verified(w->load_reg, kn) &&
            (m = calloc(1, sizeof *m))) {
            t[2] = s_now_s();
            ls = s_load_model(m, &(wg_worker_model){.name = name, .path = kn->path}, &c, &t[3]);
        }
        const double t_wait = s_now_s();
        st = wg_registry_get_finish(w->load_reg, name, &rm);
        if (st == WG_OK && ls == WG_OK && s_same_entry(kn, &rm)) {
            /* phases: verify = the stat check, registry = the wait left for the reply */
            const double ms[5] = {s_now_s() - t_wait, t[2] - t[0], t[3] - t[2], t[4] - t[3], t[5] - t[4]};
            for (int i = 0; i < 5; i++) m->load_ms[i] = (float)(ms[i] * 1e3);
            goto loaded;
        }
        if (m) s_model_clear(m);
        free(m);
        m = NULL;
        if (st) goto out; /* e.g. no longer registered */
        t[0] = s_now_s(); /* the entry changed: the full path below, with the entry just read */
    } else if ((st = wg_registry_get(w->load_reg, name, &rm))) {
        goto out;
    }
    t[1] = s_now_s();
    if ((uint64_t)rm.bytes > w->mem_budget) {
        st = wg_error(WG_ERR_FULL, "model '%s' has %lld bytes of weights, over the memory budget of %llu of worker %s",
                      name, (long long)rm.bytes, (unsigned long long)w->mem_budget, w->id);
        goto out;
    }
    if ((st = wg_registry_verify_entry(w->load_reg, &rm, NULL, NULL, NULL))) goto out;
    t[2] = s_now_s();
    if (w->load_delay_ms) usleep((useconds_t)w->load_delay_ms * 1000u);
    if (!(m = calloc(1, sizeof *m))) {
        st = wg_error(WG_ERR_NOMEM, "model '%s'", name);
        goto out;
    }
    if ((st = s_load_model(m, &(wg_worker_model){.name = name, .path = rm.path}, &c, &t[3]))) goto out;
    for (int i = 0; i < 5; i++) m->load_ms[i] = (float)((t[i + 1] - t[i]) * 1e3);
loaded:
    *handle = m;
    *bytes = s_model_bytes(m);
    m = NULL;
    s_known_take(w, &rm);
out:
    if (st) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", wg_errmsg());
        if (m) s_model_clear(m);
        s_known_drop(w, name);
        wg_error(st, "%s", keep);
    }
    free(m);
    wg_reg_model_clear(&rm);
    return st;
}

/* Keep a scheduler's prefix-cache totals before it is freed (METRICS sums
 * the live schedulers' on top). */
static void s_pc_bank(wg_worker_t *w, const wg_sched_t *sched) {
    if (!sched) return;
    wg_sched_stats_t s;
    wg_sched_stats(sched, &s);
    w->pc_cached0 += (uint64_t)s.n_prefix_hit_tokens;
    w->pc_computed0 += (uint64_t)s.n_prefill_tokens;
}

/* wg_res_ops.unload (owner thread): free the model's slot (if installed) and handle. */
static void s_res_unload(void *arg, const char *name, void *handle) {
    wg_worker_t *w = arg;
    s_model *h = handle;
    bool installed = false;
    s_pc_bank(w, h->sched);
    for (uint32_t i = 0; i < w->n_models && !installed; i++)
        if (w->models[i].res_h == h) {
            s_model_clear(&w->models[i]); /* the slot owns what h pointed to */
            installed = true;
        }
    if (!installed) s_model_clear(h);
    free(h);
    wg_info(S_MOD, "worker=%s model=%s unloaded", w->id, name);
}

/* Slot of a resident model's handle, installing it in a free slot the first
 * time. -1 when all WG_MSG_MAX_MODELS slots are taken. */
static int s_res_slot(wg_worker_t *w, void *h) {
    int free_i = -1;
    for (uint32_t i = 0; i < w->n_models; i++) {
        if (w->models[i].res_h == h) return (int)i;
        if (!w->models[i].name && free_i < 0) free_i = (int)i;
    }
    if (free_i < 0) {
        if (w->n_models == WG_MSG_MAX_MODELS) return -1;
        free_i = (int)w->n_models++;
    }
    w->models[free_i] = *(s_model *)h;
    w->models[free_i].res_h = h;
    w->models[free_i].unpins = 0;
    const float *ms = w->models[free_i].load_ms;
    wg_debug(S_MOD, "model=%s load ms: registry %.3f verify %.3f model %.3f tokenizer %.3f scheduler %.3f",
             w->models[free_i].name, ms[0], ms[1], ms[2], ms[3], ms[4]);
    return free_i;
}

/* Start the manager and hand it the preloaded models (they become evictable). */
static wg_status s_res_start(wg_worker_t *w) {
    w->res = wg_res_new(&(wg_res_cfg){.budget = w->mem_budget}, &(wg_res_ops){.load = s_res_load, .unload = s_res_unload, .arg = w});
    if (!w->res) return WG_ERR;
    for (uint32_t i = 0; i < w->n_models; i++) {
        s_model *h = malloc(sizeof *h);
        if (!h) return wg_error(WG_ERR_NOMEM, "worker: residency handle");
        *h = w->models[i];
        h->res_h = NULL;
        w->models[i].res_h = h;
        wg_status st = wg_res_adopt(w->res, w->models[i].name, h, s_model_bytes(h));
        if (st) {
            w->models[i].res_h = NULL;
            free(h);
            return st;
        }
    }
    return WG_OK;
}

/* A job under residency: pin its model and start it, or keep it waiting
 * (held_job, credit taken) while the model loads, or fail it with the load's
 * reason. Takes ownership of `job`. */
static void s_res_admit(wg_worker_t *w, s_job *j, wg_msg_job *job) {
    void *h = NULL;
    wg_status st = wg_res_acquire(w->res, job->model, 0, &h);
    if (st == WG_ERR_AGAIN) {
        if (!j->waiting) {
            j->waiting = true;
            w->n_waiting++;
            w->st.jobs_waited++;
        }
        j->held_job = job;
        return;
    }
    if (j->waiting) {
        j->waiting = false;
        w->n_waiting--;
    }
    j->held_job = NULL;
    if (st == WG_OK) {
        int slot = s_res_slot(w, h);
        if (slot < 0) {
            wg_res_release(w->res, job->model);
            st = wg_error(WG_ERR_FULL, "worker %s: %d models resident already", w->id, WG_MSG_MAX_MODELS);
        } else {
            j->pinned = true;
            j->pin_slot = (uint32_t)slot;
            s_start_job(w, j, job); /* its failures release the pin through s_job_remove */
        }
    }
    if (st != WG_OK) {
        char reason[WG_MSG_MAX_REASON];
        snprintf(reason, sizeof reason, "%s", wg_errmsg());
        /* a broken or oversized file fails for good; a missing one may exist elsewhere */
        bool retry = !(st == WG_ERR_CHECKSUM || st == WG_ERR_TRUNCATED || st == WG_ERR_FULL);
        s_send_failed(w, j->job_id, st, reason, retry);
        s_job_remove(w, j);
    }
    wg_msg_job_clear(job);
    free(job);
}

static void s_res_log(wg_worker_t *w, const char *why) {
    char line[2048], per[4096];
    size_t o = 0;
    line[0] = per[0] = '\0';
    char *names[WG_MSG_MAX_MODELS];
    uint32_t n = s_model_names(w, names);
    for (uint32_t i = 0; i < n && o < sizeof line - 300; i++)
        o += (size_t)snprintf(line + o, sizeof line - o, "%s%s:%llu", i ? "," : "", names[i],
                              (unsigned long long)wg_res_bytes(w->res, names[i]));
    /* per model: loads/load_failures/evictions, load seconds, resident bytes */
    wg_res_model_stats ms[WG_MSG_MAX_MODELS];
    uint32_t k = wg_res_model_stats_get(w->res, ms, WG_MSG_MAX_MODELS);
    o = 0;
    for (uint32_t i = 0; i < k && o < sizeof per - 400; i++)
        o += (size_t)snprintf(per + o, sizeof per - o, "%s%s:%llu/%llu/%llu,%.3fs,%lluB", i ? " " : "", ms[i].name,
                              (unsigned long long)ms[i].loads, (unsigned long long)ms[i].load_failures,
                              (unsigned long long)ms[i].evictions, ms[i].load_seconds,
                              (unsigned long long)ms[i].resident_bytes);
    wg_info(S_MOD, "worker=%s residency %s: loads=%llu load_seconds=%.3f load_failures=%llu evictions=%llu "
            "resident_bytes=%llu resident=[%s] per_model=[%s]", w->id, why, (unsigned long long)w->st.loads,
            w->st.load_seconds, (unsigned long long)w->st.load_failures, (unsigned long long)w->st.evictions,
            (unsigned long long)w->st.resident_bytes, line, per);
}

/* Once per loop turn: release the pins of sequences that ended, swap in
 * finished loads / evict, retry the jobs waiting for a load, refresh the figures. */
static void s_res_turn(wg_worker_t *w) {
    for (uint32_t i = 0; i < w->n_models; i++) {
        s_model *m = &w->models[i];
        if (!m->unpins) continue;
        uint32_t k = m->unpins;
        m->unpins = 0;
        char nm[WG_MSG_MAX_MODEL + 1];
        snprintf(nm, sizeof nm, "%s", m->name);
        while (k--) wg_res_release(w->res, nm); /* the last one may unload the slot */
    }
    wg_res_poll(w->res);
    if (w->n_waiting && !w->draining) {
        s_job **wl = malloc(w->n_jobs * sizeof *wl);
        uint32_t n = 0;
        for (uint32_t i = 0; wl && i < w->n_jobs; i++)
            if (w->jobs[i]->waiting) wl[n++] = w->jobs[i];
        for (uint32_t i = 0; i < n; i++) s_res_admit(w, wl[i], wl[i]->held_job);
        free(wl);
    }
    wg_res_stats rs;
    wg_res_get_stats(w->res, &rs);
    w->st.loads = rs.loads;
    w->st.load_failures = rs.load_failures;
    w->st.load_seconds = rs.load_seconds;
    w->st.evictions = rs.evictions;
    w->st.resident_bytes = rs.resident_bytes;
    if (rs.loads + rs.evictions + rs.load_failures != w->swaps_logged) {
        w->swaps_logged = rs.loads + rs.evictions + rs.load_failures;
        s_res_log(w, "changed");
        s_heartbeat(w); /* the broker routes by the resident set: tell it now */
    }
}

/* ---------------------------------------------------------------- metrics */

static uint64_t s_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, rss = 0;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    return n == 2 ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* The residency-dependent part of last_metrics, read fresh: resident names
 * (an eviction frees the residency's copies, so an older list must never be
 * sent again), resident bytes against the budget, per-model counters (their
 * names live as long as the residency manager). Without residency every
 * served model is resident for good: no loads or evictions, its bytes. */
static void s_metrics_res(wg_worker_t *w) {
    wg_msg_metrics *m = &w->last_metrics;
    m->models = w->model_names;
    m->n_models = s_model_names(w, w->model_names);
    m->model_stats = w->model_stats;
    if (!w->res) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < w->n_models && n < WG_MSG_MAX_MODELS; i++)
            if (w->models[i].name && w->models[i].sched)
                w->model_stats[n++] = (wg_msg_model_stat){.model = w->models[i].name,
                                                          .resident_bytes = s_model_bytes(&w->models[i])};
        m->n_model_stats = n;
        return;
    }
    wg_res_stats rs;
    wg_res_get_stats(w->res, &rs);
    m->mem_used_bytes = rs.resident_bytes;
    m->mem_total_bytes = w->mem_budget;
    wg_res_model_stats ms[WG_MSG_MAX_MODELS];
    uint32_t n = wg_res_model_stats_get(w->res, ms, WG_MSG_MAX_MODELS);
    for (uint32_t i = 0; i < n; i++)
        w->model_stats[i] = (wg_msg_model_stat){.model = (char *)ms[i].name, .loads = ms[i].loads,
                                                .load_failures = ms[i].load_failures,
                                                .load_seconds = ms[i].load_seconds, .evictions = ms[i].evictions,
                                                .resident_bytes = ms[i].resident_bytes};
    m->n_model_stats = n;
}

/* Prefix-cache totals (freed schedulers' plus the live ones') into w->st. */
static void s_pc_totals(wg_worker_t *w) {
    uint64_t cached = w->pc_cached0, computed = w->pc_computed0;
    for (uint32_t i = 0; i < w->n_models; i++) {
        if (!w->models[i].sched) continue;
        wg_sched_stats_t s;
        wg_sched_stats(w->models[i].sched, &s);
        cached += (uint64_t)s.n_prefix_hit_tokens;
        computed += (uint64_t)s.n_prefill_tokens;
    }
    w->st.prompt_tokens_cached = cached;
    w->st.prompt_tokens_computed = computed;
}

static void s_metrics(wg_worker_t *w, int64_t now) {
    wg_msg_metrics *m = &w->last_metrics;
    m->worker_id = w->id;
    m->ts_ms = s_unix_ms();
    double dt = (double)(now - w->metrics_t0) / 1000.0;
    m->tokens_per_s = dt > 0 ? (double)(w->st.tokens - w->metrics_tok0) / dt : 0;
    w->metrics_t0 = now;
    w->metrics_tok0 = w->st.tokens;
    uint32_t running = 0, waiting = 0;
    uint64_t used = 0, total = 0, kv_bytes = 0;
    for (uint32_t i = 0; i < w->n_models; i++) {
        if (!w->models[i].sched) continue; /* free residency slot */
        wg_sched_stats_t s;
        wg_sched_stats(w->models[i].sched, &s);
        running += (uint32_t)s.n_running;
        waiting += (uint32_t)s.n_waiting;
        used += (uint64_t)(s.kv_blocks - s.kv_free_blocks);
        total += (uint64_t)s.kv_blocks;
        kv_bytes += (uint64_t)s.kv_blocks * s.kv_block_bytes;
    }
    s_pc_totals(w);
    m->prompt_tokens_cached = w->st.prompt_tokens_cached;
    m->prompt_tokens_computed = w->st.prompt_tokens_computed;
    for (uint32_t i = 0; i < w->n_jobs; i++) waiting += w->jobs[i]->held_job ? 1 : 0;
    (void)kv_bytes;
    m->running = running;
    m->waiting = waiting;
    m->credits = w->draining ? 1u : (uint32_t)w->max_seqs;
    m->kv_used_blocks = used;
    m->kv_total_blocks = total;
    m->kv_usage = total ? (double)used / (double)total : 0;
    m->mem_used_bytes = s_rss_bytes();
    m->mem_total_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    s_metrics_res(w); /* residency: resident weights + KV against the budget, per-model counters */
    if (w->stream) { /* published by the stream thread, which owns the socket */
        char topic[S_TOPIC_CAP];
        wg_msg_metrics_topic(w->id, topic, sizeof topic);
        wg_msg_buf b = {0};
        if (wg_msg_metrics_encode(m, &b) == WG_OK) wg_stream_metrics(w->stream, topic, &b);
        wg_msg_buf_free(&b);
    }
}

static void s_heartbeat(wg_worker_t *w) {
    wg_msg_heartbeat h = {0};
    h.has_credits = true;
    h.credits = w->draining ? 1u : (uint32_t)w->max_seqs;
    if (w->last_metrics.worker_id) {
        s_metrics_res(w); /* a swap since the last METRICS changed these */
        h.has_metrics = true;
        h.metrics = w->last_metrics;
    }
    char *names[WG_MSG_MAX_MODELS];
    if (w->res) { /* resident set and memory change with every swap */
        h.has_models = true;
        h.models = names;
        h.n_models = s_model_names(w, names);
        h.has_mem = true;
        h.mem_budget = w->mem_budget;
        h.mem_free = wg_res_mem_free(w->res);
    }
    wg_msg_buf b = {0};
    if (wg_msg_heartbeat_encode(&h, &b) == WG_OK) s_send(w, WG_CMD_HEARTBEAT, &b);
    wg_msg_buf_free(&b);
    s_registry_refresh(w);
}

/* ---------------------------------------------------------------- lifecycle */

/* Fill a slot from spec. t (NULL or 3 entries) receives the s_now_s() at the
 * end of the model load, the tokenizer build and the scheduler creation. */
static wg_status s_load_model(s_model *sm, const wg_worker_model *spec, const wg_worker_cfg *cfg, double *t) {
    wg_status st;
    if (!spec->name || !*spec->name || strlen(spec->name) > WG_MSG_MAX_MODEL)
        return wg_error(WG_ERR_INVAL, "worker: model name '%s' must be 1..256 bytes", spec->name ? spec->name : "");
    if (!(sm->name = strdup(spec->name))) return wg_error(WG_ERR_NOMEM, "model name");
    if (spec->model) {
        sm->m = spec->model;
        sm->tok = spec->tok;
        if (t) t[0] = s_now_s();
    } else {
        if (!spec->path) return wg_error(WG_ERR_INVAL, "worker: model '%s' has neither path nor model", spec->name);
        if ((st = wg_model_load(spec->path, &sm->owned))) return st;
        if (t) t[0] = s_now_s();
        sm->m = sm->owned;
        const wg_gguf_t *g = wg_model_gguf(sm->m);
        if (g) {
            st = wg_tok_from_gguf(g, &sm->tok_owned);
        } else {
            char p[4096];
            snprintf(p, sizeof p, "%s/tokenizer.json", spec->path);
            st = wg_tok_from_json(p, &sm->tok_owned);
        }
        if (st) wg_warn(S_MOD, "model=%s no tokenizer (%s): only token-free jobs work", spec->name, wg_errmsg());
        sm->tok = sm->tok_owned;
    }
    if (t) t[1] = s_now_s();
    sm->n_vocab = wg_model_hparams(sm->m)->n_vocab;
    sm->chat = wg_chat_detect(sm->tok ? wg_tok_chat_template(sm->tok) : NULL);
    wg_sched_cfg_t sc = wg_sched_defaults();
    if (cfg->kv_budget_bytes) sc.kv_budget_bytes = cfg->kv_budget_bytes;
    sc.max_seqs = cfg->max_seqs > 0 ? cfg->max_seqs : 64;
    sc.n_threads = cfg->n_threads > 0 ? cfg->n_threads : 1;
    sc.device = cfg->device;
    sc.kv_type = cfg->kv_type;
    sc.prefix_cache = cfg->no_prefix_cache ? -1 : 0;
    sc.max_context = cfg->max_context;
    if (sc.max_batch_tokens < sc.max_seqs) sc.max_batch_tokens = sc.max_seqs;
    sm->sched = wg_sched_new(sm->m, sm->tok, &sc);
    if (!sm->sched) return wg_error(WG_ERR, "worker: scheduler for model '%s': %s", spec->name, wg_errmsg());
    if (t) t[2] = s_now_s();
    return WG_OK;
}

static wg_status s_bind_stream(wg_worker_t *w, const wg_worker_cfg *cfg) {
    void *xpub = zmq_socket(w->ctx, ZMQ_XPUB);
    if (!xpub) return wg_error(WG_ERR_ZMQ, "worker: XPUB socket: %s", zmq_strerror(errno));
    int one = 1, zero = 0, hwm = cfg->stream_hwm ? (int)cfg->stream_hwm : 1000;
    zmq_setsockopt(xpub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(xpub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(xpub, ZMQ_XPUB_NODROP, &one, sizeof one);
    if (cfg->stream_sndbuf > 0) zmq_setsockopt(xpub, ZMQ_SNDBUF, &cfg->stream_sndbuf, sizeof cfg->stream_sndbuf);
    if (zmq_bind(xpub, cfg->stream) != 0) {
        wg_status st = wg_error(WG_ERR_ZMQ, "worker: bind stream '%s': %s", cfg->stream, zmq_strerror(errno));
        zmq_close(xpub);
        return st;
    }
    char ep[512];
    size_t l = sizeof ep;
    if (zmq_getsockopt(xpub, ZMQ_LAST_ENDPOINT, ep, &l) != 0) snprintf(ep, sizeof ep, "%s", cfg->stream);
    /* From here on the socket belongs to the stream thread. */
    wg_stream_cfg sc = {.xpub = xpub, .worker_id = w->id, .stall_ms = cfg->stream_stall_ms,
                        .max_held = cfg->max_buffered_events};
    if (!(w->stream = wg_stream_new(&sc))) return WG_ERR;
    w->stream_ep = strdup(ep);
    if (cfg->stream_advertise) {
        w->advertise = strdup(cfg->stream_advertise);
    } else {
        char *wild = strstr(ep, "0.0.0.0");
        if (wild) { /* a wildcard bind is announced under this host's name */
            char host[256] = "localhost", adv[600];
            gethostname(host, sizeof host - 1);
            snprintf(adv, sizeof adv, "%.*s%s%s", (int)(wild - ep), ep, host, wild + 7);
            w->advertise = strdup(adv);
        } else {
            w->advertise = strdup(ep);
        }
    }
    return w->stream_ep && w->advertise ? WG_OK : wg_error(WG_ERR_NOMEM, "endpoint");
}

wg_worker_t *wg_worker_new(const wg_worker_cfg *cfg) {
    WG_ASSERT(cfg);
    if (!cfg->broker || !*cfg->broker) {
        wg_error(WG_ERR_INVAL, "worker: broker endpoint is required");
        return NULL;
    }
    if (cfg->n_models < (cfg->mem_budget ? 0u : 1u) || cfg->n_models > WG_MSG_MAX_MODELS) {
        wg_error(WG_ERR_INVAL, "worker: %u models (1..%d, or 0 with a memory budget)", cfg->n_models,
                 WG_MSG_MAX_MODELS);
        return NULL;
    }
    if (cfg->max_seqs < 0 || cfg->max_seqs > WG_MSG_MAX_CREDITS) {
        wg_error(WG_ERR_INVAL, "worker: max_seqs %d (1..%d)", cfg->max_seqs, WG_MSG_MAX_CREDITS);
        return NULL;
    }
    if (cfg->liveness && (cfg->liveness < 3 || cfg->liveness > 5)) {
        wg_error(WG_ERR_INVAL, "worker: liveness %u (3..5)", cfg->liveness);
        return NULL;
    }
    wg_worker_t *w = calloc(1, sizeof *w);
    if (!w) {
        wg_error(WG_ERR_NOMEM, "worker");
        return NULL;
    }
    wg_status st = WG_OK;
    w->max_seqs = cfg->max_seqs ? cfg->max_seqs : 64;
    w->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
    w->liveness = cfg->liveness ? cfg->liveness : 3;
    w->drain_timeout_ms = cfg->drain_timeout_ms ? cfg->drain_timeout_ms : 30000;
    w->reconnect_after_ms = (int64_t)w->hb_ms * w->liveness;
    atomic_init(&w->stop_req, 0);
    atomic_init(&w->drain_req, 0);
    w->broker_ep = strdup(cfg->broker);
    if (cfg->redis_url) w->redis_url = strdup(cfg->redis_url);
    if (cfg->worker_id) {
        if (!*cfg->worker_id || strlen(cfg->worker_id) > WG_MSG_MAX_ID) {
            wg_error(WG_ERR_INVAL, "worker: id '%s' must be 1..128 bytes", cfg->worker_id);
            goto err;
        }
        w->id = strdup(cfg->worker_id);
    } else {
        char host[64] = "host", id[128];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(id, sizeof id, "%s-%d-%04lx", host, (int)getpid(), (unsigned long)(ts.tv_nsec & 0xffff));
        w->id = strdup(id);
    }
    if (!w->broker_ep || !w->id) {
        wg_error(WG_ERR_NOMEM, "worker");
        goto err;
    }
    if (cfg->curve_server_key) {
        if (strlen(cfg->curve_server_key) != 40) {
            wg_error(WG_ERR_INVAL, "worker: curve server key of %zu chars (Z85 keys are 40)", strlen(cfg->curve_server_key));
            goto err;
        }
        w->curve = true;
        memcpy(w->curve_server, cfg->curve_server_key, 41);
        if (cfg->curve_secret_key) {
            if (strlen(cfg->curve_secret_key) != 40) {
                wg_error(WG_ERR_INVAL, "worker: curve secret key of %zu chars (Z85 keys are 40)", strlen(cfg->curve_secret_key));
                goto err;
            }
            memcpy(w->curve_secret, cfg->curve_secret_key, 41);
            if (zmq_curve_public(w->curve_public, w->curve_secret) != 0) {
                wg_error(WG_ERR_INVAL, "worker: curve secret key is not valid Z85");
                goto err;
            }
        } else if (zmq_curve_keypair(w->curve_public, w->curve_secret) != 0) {
            wg_error(WG_ERR_UNSUPPORTED, "worker: libzmq built without CURVE");
            goto err;
        }
    }
    w->mem_budget = cfg->mem_budget;
    w->load_delay_ms = cfg->load_delay_ms;
    w->kv_budget = cfg->kv_budget_bytes;
    w->n_threads = cfg->n_threads;
    snprintf(w->device, sizeof w->device, "%s", cfg->device && *cfg->device ? cfg->device : "cpu");
    {
        int cuda = -1;
        if (wg_device_parse(w->device, &cuda)) goto err;
    }
    w->models = calloc(WG_MSG_MAX_MODELS, sizeof *w->models); /* residency installs into free slots */
    if (!w->models) {
        wg_error(WG_ERR_NOMEM, "worker: models");
        goto err;
    }
    for (uint32_t i = 0; i < cfg->n_models; i++) {
        w->n_models = i + 1;
        for (uint32_t k = 0; k < i; k++)
            if (cfg->models[k].name && cfg->models[i].name && strcmp(cfg->models[k].name, cfg->models[i].name) == 0) {
                wg_error(WG_ERR_INVAL, "worker: model name '%s' given twice", cfg->models[i].name);
                goto err;
            }
        if ((st = s_load_model(&w->models[i], &cfg->models[i], cfg, NULL))) goto err;
    }
    if (w->mem_budget && (st = s_res_start(w))) goto err;
    if (cfg->zmq_ctx) {
        w->ctx = cfg->zmq_ctx;
    } else {
        w->ctx = zmq_ctx_new();
        w->own_ctx = true;
        if (!w->ctx) {
            wg_error(WG_ERR_ZMQ, "zmq_ctx_new failed");
            goto err;
        }
    }
    if (cfg->stream && (st = s_bind_stream(w, cfg))) goto err;
    if ((st = s_dealer_open(w))) goto err;
    wg_info(S_MOD, "worker=%s broker=%s stream=%s models=%u credits=%d kv=%s prefix_cache=%s", w->id, w->broker_ep,
            w->advertise ? w->advertise : "-", w->n_models, w->max_seqs, wg_kv_type_name(cfg->kv_type),
            cfg->no_prefix_cache ? "off" : "on");
    return w;
err:
    {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", wg_errmsg());
        wg_worker_destroy(&w);
        wg_error(st ? st : WG_ERR, "%s", keep);
    }
    return NULL;
}

void wg_worker_stop(wg_worker_t *w) {
    if (w) atomic_store(&w->stop_req, 1);
}

void wg_worker_drain(wg_worker_t *w) {
    if (w) atomic_store(&w->drain_req, 1);
}

const char *wg_worker_id(const wg_worker_t *w) { return w ? w->id : NULL; }

void wg_worker_get_stats(const wg_worker_t *w, wg_worker_stats *out) {
    WG_ASSERT(w && out);
    *out = w->st;
    if (w->stream) { /* the stream thread's counters */
        wg_stream_stats ss;
        wg_stream_get_stats(w->stream, &ss);
        out->events_published = ss.events_published;
        out->events_held = ss.events_held;
        out->streams_abandoned = ss.streams_abandoned;
        out->stream_busy_seconds = ss.busy_seconds;
    }
}

static bool s_any_busy(const wg_worker_t *w) {
    for (uint32_t i = 0; i < w->n_models; i++)
        if (w->models[i].sched && wg_sched_busy(w->models[i].sched)) return true;
    return false;
}

/* Jobs that still need the engine or the stream (held-unstarted ones excluded). */
static uint32_t s_active_jobs(const wg_worker_t *w) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n_jobs; i++) n += w->jobs[i]->held_job ? 0 : 1;
    return n;
}

/* A failing step: every job of that model goes back to the broker as retryable. */
static void s_fail_model(wg_worker_t *w, uint32_t mi, wg_status st) {
    char reason[WG_MSG_MAX_REASON];
    snprintf(reason, sizeof reason, "engine step failed: %s", wg_errmsg());
    for (uint32_t i = 0; i < w->n_jobs;) {
        s_job *j = w->jobs[i];
        if (j->model == mi && !j->held_job && j->handle) {
            if (!j->finished) wg_sched_cancel(w->models[mi].sched, j->handle);
            s_send_failed(w, j->job_id, st, reason, true);
            s_job_remove(w, j); /* swaps the last job into i */
            continue;
        }
        i++;
    }
    /* Drop the cancellation events of the jobs just failed. */
    const wg_sched_event_t *ev;
    size_t n;
    wg_sched_step(w->models[mi].sched, &ev, &n);
}

static void s_goodbye(wg_worker_t *w, const char *reason) {
    if (w->res) s_res_log(w, "exit");
    wg_worker_get_stats(w, &w->st); /* the stream thread's counters into the exit line */
    wg_info(S_MOD, "worker=%s exit: reason=\"%s\" jobs_done=%llu jobs_failed=%llu tokens=%llu bad_frames=%llu "
            "events_published=%llu streams_abandoned=%llu reconnects=%llu", w->id, reason,
            (unsigned long long)w->st.jobs_done, (unsigned long long)w->st.jobs_failed,
            (unsigned long long)w->st.tokens, (unsigned long long)w->st.bad_frames,
            (unsigned long long)w->st.events_published, (unsigned long long)w->st.streams_abandoned,
            (unsigned long long)w->st.reconnects);
    if (w->registry) wg_registry_worker_rm(w->registry, w->id);
    wg_msg_disconnect d = {.reason = (char *)reason};
    wg_msg_buf b = {0};
    if (wg_msg_disconnect_encode(&d, &b) == WG_OK) s_send(w, WG_CMD_DISCONNECT, &b);
    wg_msg_buf_free(&b);
    int linger = 1000;
    zmq_setsockopt(w->dealer, ZMQ_LINGER, &linger, sizeof linger);
}

/* Hand the queued stream records over (timed as publishing: it is the
 * engine loop's share of it). */
static void s_stream_flush(wg_worker_t *w) {
    if (!w->stream) return;
    double t0 = s_now_s();
    wg_stream_flush(w->stream);
    w->st.publish_seconds += s_now_s() - t0;
}

wg_status wg_worker_run(wg_worker_t *w) {
    WG_ASSERT(w);
    int64_t now = s_now_ms();
    w->last_recv_ms = now;
    w->metrics_t0 = now;
    w->next_metrics_ms = now + 1000;
    s_send_ready(w);
    s_registry_refresh(w);
    for (;;) {
        if (atomic_load(&w->stop_req)) {
            s_pc_totals(w);
            s_goodbye(w, "stopping");
            wg_info(S_MOD, "worker=%s stopped; %u jobs handed back", w->id, w->n_jobs);
            return WG_OK;
        }
        now = s_now_ms();
        if (atomic_load(&w->drain_req) && !w->draining) {
            w->draining = true;
            w->drain_deadline = now + w->drain_timeout_ms;
            wg_info(S_MOD, "worker=%s draining %u jobs", w->id, s_active_jobs(w));
            s_heartbeat(w); /* credits 1: no new work while in-flight ones finish */
        }
        if (w->draining && (s_active_jobs(w) == 0 || now >= w->drain_deadline)) {
            uint32_t left = s_active_jobs(w);
            s_pc_totals(w);
            s_goodbye(w, left ? "drain timeout" : "drained");
            wg_info(S_MOD, "worker=%s drained; %u unfinished and %u unstarted jobs handed back", w->id, left,
                    w->n_jobs - left);
            return WG_OK;
        }
        bool busy = s_any_busy(w);
        zmq_pollitem_t items[2] = {{w->dealer, 0, ZMQ_POLLIN, 0}, {NULL, w->stream ? wg_stream_fd(w->stream) : -1, ZMQ_POLLIN, 0}};
        int n_items = w->stream ? 2 : 1;
        long timeout = busy ? 0 : w->n_waiting ? 2 : 100; /* stream notes wake the poll */
        if (zmq_poll(items, n_items, timeout) < 0 && errno != EINTR) {
            wg_err(S_MOD, "worker=%s poll: %s", w->id, zmq_strerror(errno));
            return wg_error(WG_ERR_ZMQ, "worker: poll: %s", zmq_strerror(errno));
        }
        if (items[0].revents & ZMQ_POLLIN) s_read_broker(w);
        if (n_items > 1 && (items[1].revents & ZMQ_POLLIN)) {
            double t0 = s_now_s();
            double t_results = s_stream_notes(w);
            w->st.publish_seconds += s_now_s() - t0 - t_results;
        }
        now = s_now_ms();
        /* Engine: one step per busy model. */
        for (uint32_t mi = 0; mi < w->n_models; mi++) {
            if (!w->models[mi].sched || !wg_sched_busy(w->models[mi].sched)) continue;
            const wg_sched_event_t *ev = NULL;
            size_t n_ev = 0;
            double t0 = s_now_s();
            wg_status st = wg_sched_step(w->models[mi].sched, &ev, &n_ev);
            w->st.step_seconds += s_now_s() - t0;
            for (size_t e = 0; e < n_ev; e++) s_on_event(w, &ev[e]);
            if (st) {
                wg_err(S_MOD, "worker=%s model=%s step failed: %s", w->id, w->models[mi].name, wg_errmsg());
                s_fail_model(w, mi, st);
            }
        }
        s_stream_flush(w); /* this turn's events to the stream thread: one hand-over, one wake-up */
        if (w->res) s_res_turn(w);
        now = s_now_ms();
        if (now >= w->next_metrics_ms) {
            s_metrics(w, now);
            w->next_metrics_ms = now + 1000;
        }
        if (now - w->last_send_ms >= (int64_t)w->hb_ms) s_heartbeat(w);
        if (now - w->last_recv_ms > w->reconnect_after_ms) s_reconnect(w);
        s_stream_flush(w); /* what the rest of the turn queued (stream ends, metrics); usually nothing */
    }
}

void wg_worker_destroy(wg_worker_t **pw) {
    if (!pw || !*pw) return;
    wg_worker_t *w = *pw;
    for (uint32_t i = 0; i < w->n_jobs; i++) s_job_free(w->jobs[i]);
    free(w->jobs);
    if (w->dealer) zmq_close(w->dealer);
    wg_stream_destroy(&w->stream); /* joins the stream thread, closes the XPUB */
    if (w->own_ctx && w->ctx) zmq_ctx_term(w->ctx);
    wg_res_destroy(&w->res); /* unloads (and clears the slots of) every resident model */
    wg_registry_destroy(&w->load_reg);
    while (w->n_known) wg_reg_model_clear(&w->known[--w->n_known]);
    for (uint32_t i = 0; i < w->n_models; i++) s_model_clear(&w->models[i]);
    free(w->models);
    wg_registry_destroy(&w->registry);
    free(w->broker_ep);
    free(w->stream_ep);
    free(w->advertise);
    free(w->id);
    free(w->redis_url);
    free(w);
    *pw = NULL;
}
