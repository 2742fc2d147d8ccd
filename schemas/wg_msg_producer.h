/* wg_msg_producer — frontend messages (PROTOCOL.md §4, §5): the job map shared
 * with JOB, SUBMIT/SUBMITTED, CANCEL/STATUS/FETCH/PING requests, JOBSTATE,
 * RESULT (also the DONE body) and ERROR.
 *
 * Decoders take untrusted bytes and fill a caller-owned struct; on error the
 * struct is left cleared (nothing to free) and wg_errmsg() names the field.
 * Every struct is released with its _clear(), which accepts a zeroed struct. */
#ifndef WG_MSG_PRODUCER_H
#define WG_MSG_PRODUCER_H

#include "wg_msg.h"
#include "wg_msg_stream.h"

typedef struct wg_msg_sampling {
    double temperature;        /* >= 0; 0 = greedy; default 1 */
    uint32_t top_k;            /* 0 = off */
    double top_p;              /* (0,1], default 1 */
    double min_p;              /* [0,1], default 0 */
    double repetition_penalty; /* > 0, default 1 */
    double presence_penalty;   /* default 0 */
    double frequency_penalty;  /* default 0 */
    bool has_seed;             /* seed given by the producer */
    uint64_t seed;             /* per-request seed when has_seed */
    uint32_t logprobs;         /* 0..20 top alternatives; 0 = none */
    bool chosen_logprob;       /* return the chosen token's logprob even when logprobs == 0
                                  (wire key `return_logprob`; implied by logprobs > 0) */
} wg_msg_sampling;

typedef struct wg_msg_logit_bias {
    uint32_t token_id; /* token whose logit is shifted */
    float bias;        /* added to the logit; -inf bans the token (finite or -inf only) */
} wg_msg_logit_bias;

typedef struct wg_msg_chat {
    char *role;    /* "system", "user", "assistant"…, 1..32 bytes */
    char *content; /* message text */
} wg_msg_chat;

typedef struct wg_msg_job {
    char *job_id;               /* broker-assigned 32 hex chars; NULL in SUBMIT */
    char *custom_id;            /* producer's id or NULL */
    char *model;                /* required */
    char *prompt;               /* raw prompt, or NULL when messages are used */
    wg_msg_chat *messages;      /* (n_messages,) chat, or NULL when prompt is used */
    uint32_t n_messages;        /* 0 when prompt is used */
    uint32_t max_tokens;        /* 1..131072, default 256 */
    int32_t priority;           /* -100..100, default 0, higher first */
    bool stream;                /* publish token events */
    uint32_t attempt;           /* JOB only: 1 on first delivery; 0 = absent */
    wg_msg_sampling sampling;   /* sampling parameters */
    char **stop;                /* (n_stop,) stop strings */
    uint32_t n_stop;            /* <= 8 (WG_MSG_MAX_STOP) */
    uint32_t *stop_token_ids;   /* (n_stop_token_ids,) */
    uint32_t n_stop_token_ids;  /* <= 64 */
    uint32_t *prompt_ids;       /* (n_prompt_ids,) token-id prompt (wire: `prompt` as an array
                                   of uint), or NULL; exclusive with prompt and messages */
    uint32_t n_prompt_ids;      /* 1..131072 when prompt_ids is set */
    wg_msg_logit_bias *logit_bias; /* (n_logit_bias,) or NULL */
    uint32_t n_logit_bias;      /* <= 1024 */
    bool json_object;           /* response_format "json_object" (since 0.2): JSON mode */
} wg_msg_job;

/* Defaults of PROTOCOL.md §4.1/4.2, all pointers NULL. */
void wg_msg_job_init(wg_msg_job *j);
void wg_msg_job_clear(wg_msg_job *j);
/* Deep copy; dst is initialised first. Errors: ERR_NOMEM. */
wg_status wg_msg_job_copy(wg_msg_job *dst, const wg_msg_job *src);
/* Estimated prompt tokens: ceil(prompt bytes / 4) (the broker has no tokenizer);
 * a token-id prompt counts its ids. */
uint64_t wg_msg_job_prompt_tokens_est(const wg_msg_job *j);

/* JOB body (broker -> worker): the job map, job_id required. */
wg_status wg_msg_job_encode(const wg_msg_job *j, wg_msg_buf *out);
wg_status wg_msg_job_decode(const uint8_t *data, size_t len, wg_msg_job *out);

typedef struct wg_msg_submit {
    uint64_t req;      /* producer's request number, echoed */
    wg_msg_job *jobs;  /* (n_jobs,) */
    uint32_t n_jobs;   /* 1..1024 */
} wg_msg_submit;

wg_status wg_msg_submit_encode(const wg_msg_submit *m, wg_msg_buf *out);
wg_status wg_msg_submit_decode(const uint8_t *data, size_t len, wg_msg_submit *out);
/* The top-level "req" of a body the decoder refused (a field over a limit,
 * say), so the ERROR can still echo it; 0 when the body is not a msgpack map
 * or has no readable uint "req". Overwrites the thread's error message. */
uint64_t wg_msg_peek_req(const uint8_t *data, size_t len);
/* Whether job j (no job_id: a SUBMIT job), sent in a SUBMIT, would be read
 * back by the broker's decoder: a one-job SUBMIT is encoded and decoded.
 * WG_OK, or the encoder's / decoder's error naming the field. Producers
 * check each job with it so one job over a limit cannot get its whole
 * batch refused. */
wg_status wg_msg_job_fits(const wg_msg_job *j);
void wg_msg_submit_clear(wg_msg_submit *m);

typedef struct wg_msg_submitted_item {
    uint32_t index;          /* position in SUBMIT jobs */
    bool accepted;           /* status "accepted" / "rejected" */
    char *job_id;            /* when accepted */
    char *custom_id;         /* echoed or NULL */
    wg_status code;          /* when rejected */
    char *reason;            /* when rejected, or NULL */
    uint64_t retry_after_ms; /* 0 = absent */
} wg_msg_submitted_item;

typedef struct wg_msg_submitted {
    uint64_t req;                 /* echoed */
    wg_msg_submitted_item *items; /* (n_items,) */
    uint32_t n_items;             /* <= 1024 */
} wg_msg_submitted;

wg_status wg_msg_submitted_encode(const wg_msg_submitted *m, wg_msg_buf *out);
wg_status wg_msg_submitted_decode(const uint8_t *data, size_t len, wg_msg_submitted *out);
void wg_msg_submitted_clear(wg_msg_submitted *m);

/* CANCEL / STATUS / FETCH (job_id required) and PING / PONG (job_id ignored);
 * also the backend CANCEL (broker -> worker, req 0). */
typedef struct wg_msg_req {
    uint64_t req;  /* echoed */
    char *job_id;  /* NULL for PING/PONG */
} wg_msg_req;

wg_status wg_msg_req_encode(wg_msg_cmd cmd, const wg_msg_req *m, wg_msg_buf *out);
wg_status wg_msg_req_decode(wg_msg_cmd cmd, const uint8_t *data, size_t len, wg_msg_req *out);
void wg_msg_req_clear(wg_msg_req *m);

typedef struct wg_msg_jobstate {
    uint64_t req;    /* echoed */
    char *job_id;    /* required */
    char *custom_id; /* or NULL */
    char *state;     /* queued|running|done|failed|cancelled */
    uint32_t attempts; /* deliveries so far */
    char *worker_id; /* running on, or NULL */
    char *error;     /* last error, or NULL */
} wg_msg_jobstate;

wg_status wg_msg_jobstate_encode(const wg_msg_jobstate *m, wg_msg_buf *out);
wg_status wg_msg_jobstate_decode(const uint8_t *data, size_t len, wg_msg_jobstate *out);
void wg_msg_jobstate_clear(wg_msg_jobstate *m);

typedef struct wg_msg_result {
    uint64_t req;             /* RESULT: echoed FETCH req, 0 for pushes */
    char *job_id;             /* required */
    char *custom_id;          /* or NULL */
    char *state;              /* RESULT: done|failed|cancelled; NULL in DONE */
    char *text;               /* generated text or NULL */
    uint32_t *token_ids;      /* (n_tokens,) */
    uint32_t n_tokens;        /* <= 131072 */
    float *logprobs;          /* (n_logprobs,) or NULL */
    uint32_t n_logprobs;      /* 0 or n_tokens */
    uint8_t *n_top;           /* (n_tokens,) alternatives per token (<= 20), or NULL = none */
    wg_msg_top_logprob *top;  /* (sum of n_top,) alternatives, token-major, best first */
    bool has_end;             /* end_token present: the token that ended the job (EOS or a
                                 stop token id), sampled but not part of token_ids */
    uint32_t end_token;       /* its id */
    float end_logprob;        /* its logprob */
    uint32_t end_n_top;       /* <= 20 */
    wg_msg_top_logprob end_top[WG_MSG_MAX_TOP_LOGPROBS]; /* (end_n_top,) its alternatives */
    char *finish_reason;      /* stop|length|cancelled, or NULL */
    uint32_t prompt_tokens;   /* usage */
    uint32_t completion_tokens; /* usage */
    char *code;               /* failed: wire error code name, or NULL */
    char *error;              /* failed: reason, or NULL */
    uint32_t attempts;        /* RESULT: deliveries it took */
} wg_msg_result;

/* cmd is WG_CMD_DONE (no state/attempts/req) or WG_CMD_RESULT (state required). */
wg_status wg_msg_result_encode(wg_msg_cmd cmd, const wg_msg_result *m, wg_msg_buf *out);
wg_status wg_msg_result_decode(wg_msg_cmd cmd, const uint8_t *data, size_t len,
                               wg_msg_result *out);
void wg_msg_result_clear(wg_msg_result *m);

typedef struct wg_msg_error {
    uint64_t req;            /* echoed (0 when unknown) */
    wg_status code;          /* wire name via wg_status_name */
    char *reason;            /* human reason or NULL */
    uint64_t retry_after_ms; /* 0 = absent */
} wg_msg_error;

wg_status wg_msg_error_encode(const wg_msg_error *m, wg_msg_buf *out);
wg_status wg_msg_error_decode(const uint8_t *data, size_t len, wg_msg_error *out);
void wg_msg_error_clear(wg_msg_error *m);

#endif
