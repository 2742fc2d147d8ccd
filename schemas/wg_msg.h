/* wg_msg — WGL/1 wire protocol: signature, commands, limits, owned byte buffers.
 *
 * The normative spec is schemas/PROTOCOL.md; this header and its families
 * (wg_msg_producer.h, wg_msg_worker.h, wg_msg_stream.h) are its C codec.
 * Design: encoders pack with msgpack-c; decoders use a bounds-checked pull
 * reader (wg_msg_mp.c) so an untrusted count never drives an allocation and
 * every rejection names the field and the bad value (wg_errmsg()). Decoded
 * structs own their strings/arrays; free them with the family's _clear(). */
#ifndef WG_MSG_H
#define WG_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/wg_status.h"

#define WG_MSG_SIGNATURE "WGL1" /* frame 1 of every message */
#define WG_MSG_SIGNATURE_LEN 4

/* Limits (PROTOCOL.md §3.1). */
#define WG_MSG_MAX_BODY (8u << 20)        /* bytes in a body frame */
#define WG_MSG_MAX_DEPTH 8                /* map/array nesting */
#define WG_MSG_MAX_ID 128                 /* job_id, custom_id, worker_id */
#define WG_MSG_MAX_MODEL 256              /* model name */
#define WG_MSG_MAX_PROMPT (1u << 20)      /* prompt bytes (sum over messages) */
#define WG_MSG_MAX_MESSAGES 256           /* chat messages per job */
#define WG_MSG_MAX_ROLE 32                /* chat role */
#define WG_MSG_MAX_BATCH 1024             /* jobs per SUBMIT */
#define WG_MSG_MAX_STOP 8                 /* stop strings (= the scheduler's WG_MAX_STOP) */
#define WG_MSG_MAX_STOP_LEN 128           /* bytes per stop string */
#define WG_MSG_MAX_STOP_IDS 64            /* stop_token_ids */
#define WG_MSG_MAX_LOGIT_BIAS 1024        /* logit_bias entries */
#define WG_MSG_MAX_TOKENS 131072          /* max_tokens, token_ids, logprobs */
#define WG_MSG_MAX_TEXT (4u << 20)        /* result text bytes */
#define WG_MSG_MAX_MODELS 64              /* models in READY/HEARTBEAT/METRICS */
#define WG_MSG_MAX_REASON 1024            /* reason / error strings */
#define WG_MSG_MAX_ENDPOINT 256           /* stream_endpoint */
#define WG_MSG_MAX_CREDITS 4096           /* READY credits */
#define WG_MSG_MAX_TOP_LOGPROBS 20        /* top_logprobs entries */
#define WG_MSG_MAX_CMD 16                 /* command frame bytes */

typedef enum {
    WG_CMD_UNKNOWN = 0,
    /* frontend */
    WG_CMD_SUBMIT,
    WG_CMD_SUBMITTED,
    WG_CMD_CANCEL, /* also broker -> worker on the backend */
    WG_CMD_STATUS,
    WG_CMD_FETCH,
    WG_CMD_JOBSTATE,
    WG_CMD_RESULT,
    WG_CMD_ERROR,
    WG_CMD_PING,
    WG_CMD_PONG,
    /* backend */
    WG_CMD_READY,
    WG_CMD_HEARTBEAT,
    WG_CMD_JOB,
    WG_CMD_DONE,
    WG_CMD_FAILED,
    WG_CMD_DISCONNECT,
    /* streams */
    WG_CMD_TOKEN,
    WG_CMD_METRICS,
    WG_CMD_COUNT
} wg_msg_cmd;

/* "SUBMIT" etc.; "UNKNOWN" for out-of-range values. Never NULL. */
const char *wg_msg_cmd_name(wg_msg_cmd cmd);

/* Parse a command frame. Errors: ERR_PROTOCOL (unknown or too long; *out = UNKNOWN). */
wg_status wg_msg_cmd_parse(const void *data, size_t len, wg_msg_cmd *out);

/* Check a signature frame. Errors: ERR_VERSION naming what was received. */
wg_status wg_msg_check_signature(const void *data, size_t len);

/* Map a wire error code string ("ERR_FULL") back to a status; unknown -> WG_ERR. */
wg_status wg_msg_status_from_name(const char *name);

/* An encoded body: malloc'd bytes owned by the holder. */
typedef struct wg_msg_buf {
    uint8_t *data; /* (len,) msgpack bytes; NULL when empty */
    size_t len;    /* bytes used */
} wg_msg_buf;

/* Free the bytes and zero the struct; accepts NULL and empty buffers. */
void wg_msg_buf_free(wg_msg_buf *b);

/* Encode an empty map body (0x80) for commands without fields. */
wg_status wg_msg_empty_encode(wg_msg_buf *out);

/* Decode a body that must be a map and whose fields are all ignored
 * (HEARTBEAT broker->worker, PONG): still rejects truncated/oversized/non-map. */
wg_status wg_msg_empty_decode(const uint8_t *data, size_t len);

#endif
