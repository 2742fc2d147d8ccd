/* wg_stream — the worker's stream publisher: one thread that owns the XPUB
 * socket (PROTOCOL.md §8), so msgpack encoding, zmq sends and flow control
 * happen beside the engine loop instead of inside it.
 *
 * Design: two threads, two queues, no per-event system call.
 *   producer (the worker's engine loop): wg_stream_event appends a compact
 *     record (ids, seq, token, text delta, logprobs) to a private batch -- a
 *     memcpy, no lock; wg_stream_flush hands the batch over under a mutex,
 *     once per loop turn. While records keep coming the publisher naps 1 ms
 *     at a time and looks by itself; only a publisher idle for 50 ms asks to
 *     be woken, and then the flush writes an eventfd. (A wake-up per step
 *     cost the engine loop 30-240 us on a loaded 2-core machine: the write
 *     is a preemption point.) The publisher runs SCHED_BATCH, so its
 *     wake-ups never preempt the engine loop.
 *   publisher (the thread started by wg_stream_new): tracks subscriptions,
 *     encodes and publishes each record with ZMQ_DONTWAIT on the NODROP XPUB.
 *     A publication that hits EAGAIN (a subscriber's pipe is full) is held,
 *     in order with the later events of its stream, and retried every
 *     millisecond; the producer is told PAUSE (stop generating for that
 *     stream only) and, once its held events are out, RESUME. A stream that
 *     cannot move for stall_ms or holds more than max_held events is
 *     abandoned (warned once; consumers recover with FETCH).
 * The publisher answers through notes (PAUSE, RESUME, ABANDONED, CLOSED) that
 * the producer reads with wg_stream_notes_take / wg_stream_note_next; wg_stream_fd becomes readable when
 * notes wait, so the producer can sleep in zmq_poll.
 *
 * Streams: wg_stream_open gives a stream id; its events follow in seq order,
 * the one with final=true last. After the final event the publisher sends
 * CLOSED once that event is published or dropped (nobody subscribed), or
 * ABANDONED if the stream was given up; either means "nothing of this stream
 * is left in the publisher", so a result may be sent after it and the final
 * event is never behind the result. wg_stream_close ends a stream id on the
 * producer side (always, final event or not): whatever the publisher still
 * holds of it is dropped, later notes for it are filtered out, and its slot
 * is reused.
 *
 * Threads: every function but new/destroy/get_stats is called on the
 * producer thread only; get_stats from any thread. */
#ifndef WG_STREAM_H
#define WG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"
#include "schemas/wg_msg.h"

typedef struct wg_stream wg_stream_t;

typedef struct wg_stream_cfg {
    void *xpub;            /* bound XPUB socket with ZMQ_XPUB_NODROP; taken (closed by destroy), used only by the
                            * publisher thread from wg_stream_new on */
    const char *worker_id; /* for log lines (copied) */
    uint32_t stall_ms;     /* abandon a stream whose held events cannot move for this long; 0 = 10000 */
    size_t max_held;       /* held events per stream before abandoning it; 0 = 65536 */
} wg_stream_cfg;

/* One token event; everything is copied by wg_stream_event. */
typedef struct wg_stream_ev {
    uint64_t seq;                /* 0,1,2... per stream */
    uint32_t token_id;           /* sampled token (0 when none) */
    uint32_t attempt;            /* delivery attempt (0 = absent) */
    const char *text;            /* (text_len,) text delta, not NUL-terminated; may be NULL when text_len is 0 */
    size_t text_len;             /* bytes */
    bool final;                  /* last event of the stream */
    const char *finish_reason;   /* final only: a string with static storage ("stop", "length", "cancelled") */
    bool has_logprob;            /* logprob (and top) are set */
    float logprob;               /* chosen token's logprob */
    const int32_t *top_tokens;   /* (n_top,) alternatives, best first */
    const float *top_logprobs;   /* (n_top,) their logprobs */
    uint32_t n_top;              /* <= WG_MSG_MAX_TOP_LOGPROBS (more are cut) */
} wg_stream_ev;

typedef enum {
    WG_STREAM_PAUSE = 1, /* a publication of the stream hit EAGAIN: pause its sequence */
    WG_STREAM_RESUME,    /* its held events are out: resume it */
    WG_STREAM_ABANDONED, /* given up (stall or overflow): send it nothing more; the publisher holds nothing of it */
    WG_STREAM_CLOSED,    /* its final event is published (or dropped: nobody listened); nothing of it is held */
} wg_stream_note_kind;

typedef struct wg_stream_note {
    wg_stream_note_kind kind; /* what happened */
    void *user;               /* the tag given to wg_stream_open */
} wg_stream_note;

/* Figures since wg_stream_new (publisher side). */
typedef struct wg_stream_stats {
    uint64_t events_published;  /* TOKEN events sent */
    uint64_t events_held;       /* events held behind a full pipe */
    uint64_t streams_abandoned; /* streams given up */
    uint64_t metrics_published; /* METRICS messages sent */
    double busy_seconds;        /* publisher thread time spent working (not waiting) */
} wg_stream_stats;

/* Start the publisher thread on cfg->xpub. NULL on failure with the reason in
 * wg_errmsg() (the socket is closed then too). */
wg_stream_t *wg_stream_new(const wg_stream_cfg *cfg);

/* Stop and join the thread, close the socket, free what is held; NULLs *ps;
 * accepts NULL. Nothing not yet flushed is published. */
void wg_stream_destroy(wg_stream_t **ps);

/* A new stream for topic "t/<job_id>"; `user` comes back in its notes.
 * Returns its id (> 0), or 0 when out of memory (the job then streams nothing). */
uint64_t wg_stream_open(wg_stream_t *s, const char *job_id, void *user);

/* Queue one event of stream `sid` (copied; no lock, no system call). An
 * allocation failure drops the event with a warning. */
void wg_stream_event(wg_stream_t *s, uint64_t sid, const wg_stream_ev *ev);

/* End stream `sid` on the producer side (see the header comment). Accepts 0. */
void wg_stream_close(wg_stream_t *s, uint64_t sid);

/* Queue a METRICS publication on `topic` (body copied). Dropped if a pipe is full. */
void wg_stream_metrics(wg_stream_t *s, const char *topic, const wg_msg_buf *body);

/* Hand what was queued since the last flush to the publisher and wake it
 * (one lock, one eventfd write; nothing when nothing was queued). */
void wg_stream_flush(wg_stream_t *s);

/* Take the notes posted since the last take (call when wg_stream_fd polls
 * readable, once per loop turn); then read them with wg_stream_note_next. */
void wg_stream_notes_take(wg_stream_t *s);

/* The next taken note, in order; false when none is left. A note of a
 * stream closed since it was posted (even by the handling of an earlier
 * note) is skipped, so `user` is always the tag of an open stream. */
bool wg_stream_note_next(wg_stream_t *s, wg_stream_note *out);

/* A file descriptor that polls readable while notes wait (zmq_poll item fd). */
int wg_stream_fd(const wg_stream_t *s);

/* Copy of the publisher's counters (any thread). */
void wg_stream_get_stats(const wg_stream_t *s, wg_stream_stats *out);

#endif
