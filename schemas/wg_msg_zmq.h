/* wg_msg_zmq — sending and receiving WGL/1 multipart messages on ZeroMQ
 * sockets (PROTOCOL.md §3, §8). The receiver always drains the whole multipart
 * message, copies the body into owned memory, and reports framing faults as a
 * status while keeping whatever it could read (identity, command) so the
 * caller can still answer ERROR. */
#ifndef WG_MSG_ZMQ_H
#define WG_MSG_ZMQ_H

#include "wg_msg.h"

#define WG_MSG_MAX_IDENTITY 255 /* ZeroMQ routing ids are 1..255 bytes */

typedef struct wg_msg_in {
    uint8_t id[WG_MSG_MAX_IDENTITY]; /* (id_len,) ROUTER routing identity */
    size_t id_len;                   /* 0 when not received from a ROUTER */
    wg_msg_cmd cmd;                  /* parsed command or WG_CMD_UNKNOWN */
    uint8_t *body;                   /* (body_len,) owned copy of the body frame, or NULL */
    size_t body_len;                 /* bytes in body */
    int n_frames;                    /* frames received (identity included) */
    bool version_ok;                 /* signature frame was WGL1 */
} wg_msg_in;

/* Send one message. id/id_len: routing identity for ROUTER sockets (NULL for
 * DEALER). flags: 0 or ZMQ_DONTWAIT. Errors: ERR_AGAIN (would block),
 * ERR_NOTFOUND (unroutable with ROUTER_MANDATORY), ERR_ZMQ. */
wg_status wg_msg_send(void *sock, const void *id, size_t id_len, wg_msg_cmd cmd,
                      const wg_msg_buf *body, int flags);

/* Publish on a PUB/XPUB socket: frames topic, WGL1, command, body. */
wg_status wg_msg_publish(void *sock, const char *topic, wg_msg_cmd cmd, const wg_msg_buf *body,
                         int flags);

/* Receive one message (blocking unless flags has ZMQ_DONTWAIT). router: the
 * socket is a ROUTER (expect an identity frame first). Returns ERR_AGAIN when
 * nothing is waiting, ERR_PROTOCOL for wrong frame counts / empty delimiter /
 * unknown command, ERR_VERSION for a bad signature, ERR_RANGE for a body over
 * WG_MSG_MAX_BODY. `in` must be cleared with wg_msg_in_clear in every case. */
wg_status wg_msg_recv(void *sock, bool router, wg_msg_in *in, int flags);
void wg_msg_in_clear(wg_msg_in *in);

#endif
