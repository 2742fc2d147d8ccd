/* wg_stream — the worker's stream publisher thread (see wg_stream.h).
 *
 * Records travel producer -> publisher in byte batches: each is an s_rec
 * header followed by its payload, padded to 8 bytes. Three batch buffers
 * rotate (the producer's, the shared one, the publisher's) so the steady
 * state allocates nothing. Notes travel back the same way, as an array.
 *
 * A stream's slot lives from its OPEN record to its CLOSE record on both
 * sides; the producer reuses a slot only after queuing its CLOSE, so the
 * publisher never sees two streams in one slot. Stream ids carry a
 * generation above the slot index so notes written before a CLOSE was read
 * are recognised as stale and dropped. */
#include "wg_stream.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/wg_log.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_zmq.h"

#define S_MOD "worker"
#define S_TOPIC_CAP (3 + WG_MSG_MAX_ID + 1)
#define S_NAP_MS 50 /* publisher naps (no wake-ups needed) this long after the last record */

enum { S_REC_OPEN = 1, S_REC_EVENT, S_REC_CLOSE, S_REC_METRICS };

typedef struct s_rec {
    uint8_t kind;          /* S_REC_* */
    uint8_t final;         /* EVENT: last event of the stream */
    uint8_t has_lp;        /* EVENT: logprob (and top) set */
    uint8_t n_top;         /* EVENT: wg_msg_top_logprob entries at the start of the payload */
    uint32_t len;          /* payload bytes after this header (unpadded) */
    uint64_t sid;          /* OPEN/EVENT/CLOSE: stream id */
    uint64_t seq;          /* EVENT: seq */
    const char *finish;    /* EVENT final: finish reason (static storage) or NULL */
    uint32_t token_id;     /* EVENT: token */
    uint32_t attempt;      /* EVENT: delivery attempt */
    float logprob;         /* EVENT: chosen token's logprob */
    uint32_t aux;          /* METRICS: topic bytes at the start of the payload (body follows) */
} s_rec;
/* Payloads: OPEN job id; EVENT top entries then the text and a NUL; METRICS topic then body. */
_Static_assert(sizeof(s_rec) % 8 == 0, "records are 8-byte aligned");

typedef struct s_bytes {
    uint8_t *p;      /* (cap,) */
    size_t len, cap; /* bytes used / allocated */
} s_bytes;

typedef struct s_note {
    wg_stream_note_kind kind; /* what happened */
    uint64_t sid;             /* to which stream */
} s_note;

typedef struct s_notes {
    s_note *v;           /* (n,) */
    size_t n, cap;       /* used / allocated */
} s_notes;

typedef struct s_slot {   /* producer side */
    uint64_t sid;         /* current stream id, 0 = free */
    void *user;           /* its tag */
} s_slot;

typedef struct s_pub {    /* publisher side: one open stream */
    uint64_t sid;         /* 0 = free */
    char topic[S_TOPIC_CAP]; /* "t/<job_id>" */
    size_t topic_len;     /* bytes */
    uint64_t sub_gen;     /* subscription generation `sub` was computed at */
    bool sub;             /* someone subscribes to a prefix of topic */
    bool dead;            /* abandoned: drop its events until CLOSE */
    bool final_seen;      /* its final event was queued here */
    bool paused;          /* PAUSE sent, RESUME not yet */
    bool logged;          /* "stream paused" logged */
    wg_msg_buf *held;     /* (n_held - head,) encoded events waiting for the pipe, in order */
    size_t head, n_held, cap_held; /* [head, n_held) pending */
    int64_t progress_ms;  /* last time a held event went out (or the first was held) */
} s_pub;

struct wg_stream {
    /* fixed */
    void *xpub;                 /* the socket (publisher thread only) */
    char *worker_id;            /* for logs */
    uint32_t stall_ms;          /* stall limit */
    size_t max_held;            /* held events per stream */
    int wake_fd;                /* eventfd: producer -> publisher */
    int note_fd;                /* eventfd: publisher -> producer */
    pthread_t thr;              /* the publisher */
    bool started;               /* thr is running */
    atomic_int quit;            /* destroy asks the publisher to end */
    atomic_int sleeping;        /* the publisher is (about to be) in a long poll: a flush must wake it */
    /* shared, under mu */
    pthread_mutex_t mu;         /* guards fwd and notes_sh */
    s_bytes fwd;                /* records handed over, not yet taken */
    s_notes notes_sh;           /* notes posted, not yet read */
    /* producer thread only */
    s_bytes batch;              /* records queued since the last flush */
    s_slot *slots;              /* (n_slots,) stream slots */
    uint32_t n_slots, cap_slots; /* used / allocated */
    uint32_t *free_slots;       /* (n_free,) reusable slot indices; cap_slots allocated */
    uint32_t n_free;            /* used */
    uint32_t gen;               /* generation counter for stream ids */
    s_notes notes_rd;           /* notes taken from the publisher */
    size_t next_note;           /* next of notes_rd to hand out */
    /* publisher thread only */
    s_bytes mine;               /* records being processed */
    s_pub *pubs;                /* (n_pubs,) streams by slot */
    uint32_t n_pubs;            /* allocated */
    uint32_t n_holding;         /* streams with held events */
    char **subs;                /* (n_subs,) subscribed prefixes */
    uint32_t n_subs, cap_subs;  /* used / allocated */
    uint64_t sub_gen;           /* bumped on every subscription change */
    s_notes notes_wr;           /* notes of this turn, posted at its end */
    int64_t now_ms;             /* clock of this turn */
    int64_t last_rec_ms;        /* last turn that had records */
    /* publisher counters (read by get_stats from any thread) */
    atomic_uint_fast64_t n_published, n_held_total, n_abandoned, n_metrics;
    atomic_uint_fast64_t busy_ns;
};

static int64_t s_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void s_add(atomic_uint_fast64_t *c, uint64_t v) { atomic_fetch_add_explicit(c, v, memory_order_relaxed); }

/* ---------------------------------------------------------------- buffers */

/* Room for `more` bytes at the end of b. */
static bool s_bytes_reserve(s_bytes *b, size_t more) {
    if (b->len + more <= b->cap) return true;
    size_t nc = b->cap ? b->cap * 2 : 16384;
    while (nc < b->len + more) nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) return false;
    b->p = np;
    b->cap = nc;
    return true;
}

static bool s_notes_push(s_notes *q, wg_stream_note_kind kind, uint64_t sid) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        s_note *nv = realloc(q->v, nc * sizeof *nv);
        if (!nv) return false;
        q->v = nv;
        q->cap = nc;
    }
    q->v[q->n++] = (s_note){kind, sid};
    return true;
}

static void s_wake(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one); /* EAGAIN: the counter is already non-zero */
    (void)r;
}

static void s_unwake(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

/* ---------------------------------------------------------------- producer */

/* Append a record with `len` payload bytes; returns the payload, or NULL (record dropped). */
static uint8_t *s_put(wg_stream_t *s, const s_rec *r, size_t len) {
    size_t total = sizeof *r + ((len + 7) & ~(size_t)7);
    if (!s_bytes_reserve(&s->batch, total)) return NULL;
    uint8_t *at = s->batch.p + s->batch.len;
    memcpy(at, r, sizeof *r);
    ((s_rec *)(void *)at)->len = (uint32_t)len;
    s->batch.len += total;
    return at + sizeof *r;
}

uint64_t wg_stream_open(wg_stream_t *s, const char *job_id, void *user) {
    WG_ASSERT(s && job_id);
    size_t idl = strlen(job_id);
    if (idl > WG_MSG_MAX_ID) idl = WG_MSG_MAX_ID;
    uint32_t slot;
    if (s->n_free) {
        slot = s->free_slots[--s->n_free];
    } else {
        if (s->n_slots == s->cap_slots) { /* the free list grows with the slots: close never allocates it */
            uint32_t nc = s->cap_slots ? s->cap_slots * 2 : 64;
            s_slot *ns = realloc(s->slots, nc * sizeof *ns);
            if (!ns) return 0;
            s->slots = ns;
            uint32_t *nf = realloc(s->free_slots, nc * sizeof *nf);
            if (!nf) return 0;
            s->free_slots = nf;
            s->cap_slots = nc;
        }
        slot = s->n_slots++;
    }
    if (++s->gen == 0) s->gen = 1;
    uint64_t sid = (uint64_t)s->gen << 32 | slot;
    s_rec r = {.kind = S_REC_OPEN, .sid = sid};
    uint8_t *p = s_put(s, &r, idl);
    if (!p) {
        s->slots[slot] = (s_slot){0};
        s->free_slots[s->n_free++] = slot;
        return 0;
    }
    memcpy(p, job_id, idl);
    s->slots[slot] = (s_slot){sid, user};
    return sid;
}

void wg_stream_event(wg_stream_t *s, uint64_t sid, const wg_stream_ev *ev) {
    uint32_t nt = ev->has_logprob ? ev->n_top : 0;
    if (nt > WG_MSG_MAX_TOP_LOGPROBS) nt = WG_MSG_MAX_TOP_LOGPROBS;
    size_t tl = ev->text_len;
    if (tl > UINT32_MAX / 2) tl = 0;
    s_rec r = {.kind = S_REC_EVENT, .final = ev->final, .has_lp = ev->has_logprob, .n_top = (uint8_t)nt,
               .sid = sid, .seq = ev->seq, .finish = ev->final ? ev->finish_reason : NULL,
               .token_id = ev->token_id, .attempt = ev->attempt, .logprob = ev->logprob};
    size_t ttop = nt * sizeof(wg_msg_top_logprob);
    uint8_t *p = s_put(s, &r, ttop + tl + 1);
    if (!p) {
        wg_warn(S_MOD, "worker=%s stream event dropped: out of memory", s->worker_id);
        return;
    }
    wg_msg_top_logprob *top = (wg_msg_top_logprob *)(void *)p;
    for (uint32_t i = 0; i < nt; i++) top[i] = (wg_msg_top_logprob){(uint32_t)ev->top_tokens[i], ev->top_logprobs[i]};
    if (tl) memcpy(p + ttop, ev->text, tl);
    p[ttop + tl] = '\0';
}

void wg_stream_close(wg_stream_t *s, uint64_t sid) {
    if (!s || !sid) return;
    uint32_t slot = (uint32_t)sid;
    if (slot >= s->n_slots || s->slots[slot].sid != sid) return;
    s_rec r = {.kind = S_REC_CLOSE, .sid = sid};
    if (!s_put(s, &r, 0)) {
        /* The publisher keeps the slot's stream: leak the slot rather than reuse it. */
        wg_warn(S_MOD, "worker=%s stream slot %u lost: out of memory", s->worker_id, slot);
        s->slots[slot].sid = UINT64_MAX;
        return;
    }
    s->slots[slot] = (s_slot){0};
    s->free_slots[s->n_free++] = slot;
}

void wg_stream_metrics(wg_stream_t *s, const char *topic, const wg_msg_buf *body) {
    size_t tl = strlen(topic), bl = body ? body->len : 0;
    s_rec r = {.kind = S_REC_METRICS, .aux = (uint32_t)tl};
    uint8_t *p = s_put(s, &r, tl + bl);
    if (!p) return;
    memcpy(p, topic, tl);
    if (bl) memcpy(p + tl, body->data, bl);
}

void wg_stream_flush(wg_stream_t *s) {
    if (!s->batch.len) return;
    pthread_mutex_lock(&s->mu);
    if (!s->fwd.len) { /* the usual case: hand the whole buffer over */
        s_bytes t = s->fwd;
        s->fwd = s->batch;
        s->batch = t;
        s->batch.len = 0;
    } else if (s_bytes_reserve(&s->fwd, s->batch.len)) {
        memcpy(s->fwd.p + s->fwd.len, s->batch.p, s->batch.len);
        s->fwd.len += s->batch.len;
        s->batch.len = 0;
    } /* else: keep it for the next flush */
    pthread_mutex_unlock(&s->mu);
    if (atomic_exchange(&s->sleeping, 0)) s_wake(s->wake_fd); /* else it is awake or napping: it will look */
}

void wg_stream_notes_take(wg_stream_t *s) {
    s_unwake(s->note_fd); /* before taking: a note posted after this wakes the next poll */
    s->notes_rd.n = 0;
    s->next_note = 0;
    pthread_mutex_lock(&s->mu);
    s_notes t = s->notes_sh;
    s->notes_sh = s->notes_rd;
    s->notes_rd = t;
    pthread_mutex_unlock(&s->mu);
}

bool wg_stream_note_next(wg_stream_t *s, wg_stream_note *out) {
    while (s->next_note < s->notes_rd.n) {
        const s_note *n = &s->notes_rd.v[s->next_note++];
        uint32_t slot = (uint32_t)n->sid;
        if (slot < s->n_slots && s->slots[slot].sid == n->sid) { /* else: closed since */
            *out = (wg_stream_note){n->kind, s->slots[slot].user};
            return true;
        }
    }
    return false;
}

int wg_stream_fd(const wg_stream_t *s) { return s->note_fd; }

void wg_stream_get_stats(const wg_stream_t *s, wg_stream_stats *out) {
    WG_ASSERT(s && out);
    out->events_published = atomic_load_explicit(&s->n_published, memory_order_relaxed);
    out->events_held = atomic_load_explicit(&s->n_held_total, memory_order_relaxed);
    out->streams_abandoned = atomic_load_explicit(&s->n_abandoned, memory_order_relaxed);
    out->metrics_published = atomic_load_explicit(&s->n_metrics, memory_order_relaxed);
    out->busy_seconds = (double)atomic_load_explicit(&s->busy_ns, memory_order_relaxed) * 1e-9;
}

/* ---------------------------------------------------------------- publisher */

/* XPUB delivers first subscriptions and last unsubscriptions (not verbose):
 * keep the set of prefixes someone listens to. */
static void s_xpub_read(wg_stream_t *s) {
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->xpub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        const uint8_t *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        if (n >= 1 && (d[0] == 1 || d[0] == 0) && n - 1 <= WG_MSG_MAX_ID + 8) {
            char *p = strndup((const char *)d + 1, n - 1);
            if (p && d[0] == 1) {
                if (s->n_subs == s->cap_subs) {
                    uint32_t nc = s->cap_subs ? s->cap_subs * 2 : 16;
                    char **ns = realloc(s->subs, nc * sizeof *ns);
                    if (ns) {
                        s->subs = ns;
                        s->cap_subs = nc;
                    }
                }
                if (s->n_subs < s->cap_subs) s->subs[s->n_subs++] = p, p = NULL;
            } else if (p) {
                for (uint32_t i = 0; i < s->n_subs; i++)
                    if (strcmp(s->subs[i], p) == 0) {
                        free(s->subs[i]);
                        s->subs[i] = s->subs[--s->n_subs];
                        break;
                    }
            }
            free(p);
            s->sub_gen++;
        }
        zmq_msg_close(&m);
    }
}

static bool s_subscribed(wg_stream_t *s, s_pub *p) {
    if (p->sub_gen == s->sub_gen) return p->sub;
    p->sub = false;
    for (uint32_t i = 0; i < s->n_subs && !p->sub; i++) {
        size_t sl = strlen(s->subs[i]);
        p->sub = sl <= p->topic_len && memcmp(s->subs[i], p->topic, sl) == 0;
    }
    p->sub_gen = s->sub_gen;
    return p->sub;
}

static void s_tell(wg_stream_t *s, wg_stream_note_kind kind, const s_pub *p) {
    if (!s_notes_push(&s->notes_wr, kind, p->sid))
        wg_warn(S_MOD, "worker=%s stream note lost: out of memory", s->worker_id);
}

static void s_drop_held(wg_stream_t *s, s_pub *p) {
    if (p->head == p->n_held) return;
    for (size_t i = p->head; i < p->n_held; i++) wg_msg_buf_free(&p->held[i]);
    p->head = p->n_held = 0;
    s->n_holding--;
}

static void s_abandon(wg_stream_t *s, s_pub *p, const char *why) {
    s_drop_held(s, p);
    p->dead = true;
    p->paused = false; /* ABANDONED implies resume */
    s_tell(s, WG_STREAM_ABANDONED, p);
    s_add(&s->n_abandoned, 1);
    wg_warn(S_MOD, "worker=%s job=%s stream abandoned: %s (result still goes to the broker)", s->worker_id,
            p->topic + 2, why);
}

/* Take ownership of *b as a held event of p. */
static void s_hold(wg_stream_t *s, s_pub *p, wg_msg_buf *b) {
    if (p->n_held - p->head >= s->max_held) {
        wg_msg_buf_free(b);
        s_abandon(s, p, "held-event buffer full");
        return;
    }
    if (p->n_held == p->cap_held) {
        if (p->head > 0) { /* compact */
            memmove(p->held, p->held + p->head, (p->n_held - p->head) * sizeof *p->held);
            p->n_held -= p->head;
            p->head = 0;
        }
        if (p->n_held == p->cap_held) {
            size_t nc = p->cap_held ? p->cap_held * 2 : 16;
            wg_msg_buf *nh = realloc(p->held, nc * sizeof *nh);
            if (!nh) {
                wg_msg_buf_free(b);
                s_abandon(s, p, "out of memory holding events");
                return;
            }
            p->held = nh;
            p->cap_held = nc;
        }
    }
    if (p->head == p->n_held) {
        s->n_holding++;
        p->progress_ms = s->now_ms;
        if (!p->final_seen) { /* backpressure: stop generating for this stream only */
            p->paused = true;
            s_tell(s, WG_STREAM_PAUSE, p);
        }
        if (!p->logged)
            wg_info(S_MOD, "worker=%s job=%s stream paused: subscriber pipe full", s->worker_id, p->topic + 2);
        p->logged = true;
    }
    p->held[p->n_held++] = *b;
    memset(b, 0, sizeof *b);
    s_add(&s->n_held_total, 1);
}

/* Nothing left to publish: RESUME a paused stream, CLOSED after its final event. */
static void s_idle(wg_stream_t *s, s_pub *p) {
    if (p->paused) {
        p->paused = false;
        s_tell(s, WG_STREAM_RESUME, p);
    }
    if (p->final_seen) s_tell(s, WG_STREAM_CLOSED, p);
}

/* Publish p's held events in order until the pipe pushes back. */
static void s_flush_held(wg_stream_t *s, s_pub *p) {
    while (p->head < p->n_held) {
        wg_status st = wg_msg_publish(s->xpub, p->topic, WG_CMD_TOKEN, &p->held[p->head], ZMQ_DONTWAIT);
        if (st == WG_ERR_AGAIN) break;
        wg_msg_buf_free(&p->held[p->head]);
        p->head++;
        p->progress_ms = s->now_ms;
        if (st == WG_OK) s_add(&s->n_published, 1);
    }
    if (p->head == p->n_held) {
        p->head = p->n_held = 0;
        s->n_holding--;
        s_idle(s, p);
    }
}

static void s_pub_free(wg_stream_t *s, s_pub *p) {
    s_drop_held(s, p);
    free(p->held);
    memset(p, 0, sizeof *p);
}

static s_pub *s_pub_of(wg_stream_t *s, uint64_t sid) {
    uint32_t slot = (uint32_t)sid;
    return slot < s->n_pubs && s->pubs[slot].sid == sid ? &s->pubs[slot] : NULL;
}

static void s_on_open(wg_stream_t *s, const s_rec *r, const uint8_t *payload) {
    uint32_t slot = (uint32_t)r->sid;
    if (slot >= s->n_pubs) {
        uint32_t nc = s->n_pubs ? s->n_pubs : 64;
        while (nc <= slot) nc *= 2;
        s_pub *np = realloc(s->pubs, nc * sizeof *np);
        if (!np) {
            wg_warn(S_MOD, "worker=%s stream not opened: out of memory", s->worker_id);
            s_notes_push(&s->notes_wr, WG_STREAM_ABANDONED, r->sid); /* so its DONE does not wait */
            return; /* its events find no stream and are dropped */
        }
        memset(np + s->n_pubs, 0, (nc - s->n_pubs) * sizeof *np);
        s->pubs = np;
        s->n_pubs = nc;
    }
    s_pub *p = &s->pubs[slot];
    if (p->sid) s_pub_free(s, p); /* cannot happen: slots are reused after their CLOSE */
    p->sid = r->sid;
    p->topic_len = (size_t)snprintf(p->topic, sizeof p->topic, "t/%.*s", (int)r->len, (const char *)payload);
    p->sub_gen = s->sub_gen - 1; /* compute on first use */
}

static void s_on_event(wg_stream_t *s, const s_rec *r, const uint8_t *payload) {
    s_pub *p = s_pub_of(s, r->sid);
    if (!p || p->dead) return;
    if (r->final) p->final_seen = true;
    bool holding = p->head < p->n_held;
    if (holding || s_subscribed(s, p)) {
        wg_msg_token t = {0};
        t.job_id = p->topic + 2;
        t.seq = r->seq;
        t.token_id = r->token_id;
        t.attempt = r->attempt;
        t.final = r->final;
        t.finish_reason = (char *)r->finish;
        t.has_logprob = r->has_lp;
        t.logprob = r->logprob;
        t.n_top = r->n_top;
        t.top = r->n_top ? (wg_msg_top_logprob *)(uintptr_t)payload : NULL;
        t.text_delta = (char *)(uintptr_t)(payload + r->n_top * sizeof(wg_msg_top_logprob));
        wg_msg_buf b = {0};
        if (wg_msg_token_encode(&t, &b) == WG_OK) {
            if (holding) {
                s_hold(s, p, &b);
            } else {
                wg_status st = wg_msg_publish(s->xpub, p->topic, WG_CMD_TOKEN, &b, ZMQ_DONTWAIT);
                if (st == WG_ERR_AGAIN) s_hold(s, p, &b);
                else if (st == WG_OK) s_add(&s->n_published, 1);
            }
        }
        wg_msg_buf_free(&b);
    } /* else nobody listens: the event is dropped, as PUB would */
    if (r->final && !p->dead && p->head == p->n_held) s_idle(s, p);
}

static void s_on_metrics(wg_stream_t *s, const s_rec *r, const uint8_t *payload) {
    char topic[S_TOPIC_CAP];
    size_t tl = r->aux < sizeof topic ? r->aux : sizeof topic - 1;
    memcpy(topic, payload, tl);
    topic[tl] = '\0';
    wg_msg_buf b = {.data = (uint8_t *)(uintptr_t)(payload + r->aux), .len = r->len - r->aux};
    if (wg_msg_publish(s->xpub, topic, WG_CMD_METRICS, &b, ZMQ_DONTWAIT) == WG_OK) s_add(&s->n_metrics, 1);
}

static void s_process(wg_stream_t *s) {
    size_t off = 0;
    while (off < s->mine.len) {
        const s_rec *r = (const s_rec *)(const void *)(s->mine.p + off);
        const uint8_t *payload = s->mine.p + off + sizeof *r;
        switch (r->kind) {
        case S_REC_OPEN: s_on_open(s, r, payload); break;
        case S_REC_EVENT: s_on_event(s, r, payload); break;
        case S_REC_CLOSE: {
            s_pub *p = s_pub_of(s, r->sid);
            if (p) s_pub_free(s, p);
            break;
        }
        case S_REC_METRICS: s_on_metrics(s, r, payload); break;
        default: WG_ASSERT(!"bad stream record");
        }
        off += sizeof *r + ((r->len + 7) & ~(size_t)7);
    }
    s->mine.len = 0;
}

static void *s_run(void *arg) {
    wg_stream_t *s = arg;
    /* SCHED_BATCH: a wake-up from the engine loop never preempts it (the
     * kernel does not wake-up-preempt for batch tasks); the publisher runs on
     * a free core or at the next tick. Without it, on a busy machine each
     * hand-over cost the engine loop the publisher's whole turn. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0)
        wg_debug(S_MOD, "worker=%s stream thread: SCHED_BATCH refused", s->worker_id);
    while (!atomic_load(&s->quit)) {
        /* Waking this thread costs the producer a system call (tens of µs on
         * a loaded machine), so while records keep coming it naps 1 ms at a
         * time and looks by itself; only after S_NAP_MS without records does
         * it ask to be woken (sleeping = 1, then one last look at fwd). */
        long timeout = 1;
        if (!s->n_holding && s->now_ms - s->last_rec_ms > S_NAP_MS) {
            atomic_store(&s->sleeping, 1);
            pthread_mutex_lock(&s->mu);
            timeout = s->fwd.len ? 0 : 100;
            pthread_mutex_unlock(&s->mu);
        }
        zmq_pollitem_t it[2] = {{s->xpub, 0, ZMQ_POLLIN, 0}, {NULL, s->wake_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, 2, timeout);
        atomic_store(&s->sleeping, 0);
        if (rc < 0) {
            if (errno == ETERM) break; /* the context is going away */
            if (errno != EINTR) {
                wg_err(S_MOD, "worker=%s stream poll: %s", s->worker_id, zmq_strerror(errno));
                break;
            }
        }
        int64_t t0 = s_now_ns();
        s->now_ms = t0 / 1000000;
        if (it[1].revents & ZMQ_POLLIN) s_unwake(s->wake_fd); /* before taking the batch */
        if (it[0].revents & ZMQ_POLLIN) s_xpub_read(s);
        pthread_mutex_lock(&s->mu);
        s_bytes t = s->fwd;
        s->fwd = s->mine;
        s->mine = t;
        pthread_mutex_unlock(&s->mu);
        if (s->mine.len) s->last_rec_ms = s->now_ms;
        s_process(s);
        /* Held events: retry in order; give up on stalled streams. */
        for (uint32_t i = 0; s->n_holding && i < s->n_pubs; i++) {
            s_pub *p = &s->pubs[i];
            if (!p->sid || p->head == p->n_held) continue;
            s_flush_held(s, p);
            if (p->head < p->n_held && s->now_ms - p->progress_ms > (int64_t)s->stall_ms)
                s_abandon(s, p, "subscriber stalled");
        }
        if (s->notes_wr.n) {
            bool posted = true;
            pthread_mutex_lock(&s->mu);
            for (size_t i = 0; i < s->notes_wr.n && posted; i++)
                posted = s_notes_push(&s->notes_sh, s->notes_wr.v[i].kind, s->notes_wr.v[i].sid);
            pthread_mutex_unlock(&s->mu);
            if (!posted) wg_warn(S_MOD, "worker=%s stream notes lost: out of memory", s->worker_id);
            s->notes_wr.n = 0;
            s_wake(s->note_fd);
        }
        s_add(&s->busy_ns, (uint64_t)(s_now_ns() - t0));
    }
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

wg_stream_t *wg_stream_new(const wg_stream_cfg *cfg) {
    WG_ASSERT(cfg && cfg->xpub);
    wg_stream_t *s = calloc(1, sizeof *s);
    if (!s) {
        zmq_close(cfg->xpub);
        wg_error(WG_ERR_NOMEM, "stream publisher");
        return NULL;
    }
    s->xpub = cfg->xpub;
    s->wake_fd = s->note_fd = -1;
    s->stall_ms = cfg->stall_ms ? cfg->stall_ms : 10000;
    s->max_held = cfg->max_held ? cfg->max_held : 65536;
    atomic_init(&s->quit, 0);
    atomic_init(&s->sleeping, 0);
    atomic_init(&s->n_published, 0);
    atomic_init(&s->n_held_total, 0);
    atomic_init(&s->n_abandoned, 0);
    atomic_init(&s->n_metrics, 0);
    atomic_init(&s->busy_ns, 0);
    pthread_mutex_init(&s->mu, NULL);
    s->worker_id = strdup(cfg->worker_id ? cfg->worker_id : "-");
    if (!s->worker_id) {
        wg_error(WG_ERR_NOMEM, "stream publisher");
        goto err;
    }
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->note_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0 || s->note_fd < 0) {
        wg_error(WG_ERR, "stream publisher: eventfd: %s", strerror(errno));
        goto err;
    }
    /* Signals are the embedding process's business (SIGTERM drains the
     * worker): the publisher blocks them all, so they land on other threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thr, NULL, s_run, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        wg_error(WG_ERR, "stream publisher: thread: %s", strerror(rc));
        goto err;
    }
    s->started = true;
    return s;
err:
    wg_stream_destroy(&s);
    return NULL;
}

void wg_stream_destroy(wg_stream_t **ps) {
    if (!ps || !*ps) return;
    wg_stream_t *s = *ps;
    if (s->started) {
        atomic_store(&s->quit, 1);
        s_wake(s->wake_fd);
        pthread_join(s->thr, NULL);
    }
    if (s->xpub) zmq_close(s->xpub);
    for (uint32_t i = 0; i < s->n_pubs; i++) s_pub_free(s, &s->pubs[i]);
    free(s->pubs);
    for (uint32_t i = 0; i < s->n_subs; i++) free(s->subs[i]);
    free(s->subs);
    free(s->fwd.p);
    free(s->batch.p);
    free(s->mine.p);
    free(s->notes_sh.v);
    free(s->notes_rd.v);
    free(s->notes_wr.v);
    free(s->slots);
    free(s->free_slots);
    if (s->wake_fd >= 0) close(s->wake_fd);
    if (s->note_fd >= 0) close(s->note_fd);
    pthread_mutex_destroy(&s->mu);
    free(s->worker_id);
    free(s);
    *ps = NULL;
}
