/* wg_msg_zmq — multipart framing over ZeroMQ. */
#include "wg_msg_zmq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static wg_status s_zerr(const char *what) {
    int e = zmq_errno();
    if (e == EAGAIN) return wg_error(WG_ERR_AGAIN, "%s: would block", what);
    if (e == EHOSTUNREACH) return wg_error(WG_ERR_NOTFOUND, "%s: peer is gone", what);
    return wg_error(WG_ERR_ZMQ, "%s: %s", what, zmq_strerror(e));
}

wg_status wg_msg_send(void *sock, const void *id, size_t id_len, wg_msg_cmd cmd,
                      const wg_msg_buf *body, int flags) {
    const char *name = wg_msg_cmd_name(cmd);
    static const uint8_t empty_map = 0x80;
    const void *bd = body && body->len ? body->data : &empty_map;
    size_t bl = body && body->len ? body->len : 1;
    if (id && zmq_send(sock, id, id_len, flags | ZMQ_SNDMORE) < 0) return s_zerr("send identity");
    /* once the first frame is queued the rest of the message goes atomically */
    int more = flags & ~ZMQ_DONTWAIT;
    if (zmq_send(sock, "", 0, (id ? more : flags) | ZMQ_SNDMORE) < 0) return s_zerr("send delimiter");
    if (zmq_send(sock, WG_MSG_SIGNATURE, WG_MSG_SIGNATURE_LEN, more | ZMQ_SNDMORE) < 0)
        return s_zerr("send signature");
    if (zmq_send(sock, name, strlen(name), more | ZMQ_SNDMORE) < 0) return s_zerr("send command");
    if (zmq_send(sock, bd, bl, more) < 0) return s_zerr("send body");
    return WG_OK;
}

wg_status wg_msg_publish(void *sock, const char *topic, wg_msg_cmd cmd, const wg_msg_buf *body,
                         int flags) {
    const char *name = wg_msg_cmd_name(cmd);
    static const uint8_t empty_map = 0x80;
    const void *bd = body && body->len ? body->data : &empty_map;
    size_t bl = body && body->len ? body->len : 1;
    int more = flags & ~ZMQ_DONTWAIT;
    if (zmq_send(sock, topic, strlen(topic), flags | ZMQ_SNDMORE) < 0) return s_zerr("publish topic");
    if (zmq_send(sock, WG_MSG_SIGNATURE, WG_MSG_SIGNATURE_LEN, more | ZMQ_SNDMORE) < 0)
        return s_zerr("publish signature");
    if (zmq_send(sock, name, strlen(name), more | ZMQ_SNDMORE) < 0) return s_zerr("publish command");
    if (zmq_send(sock, bd, bl, more) < 0) return s_zerr("publish body");
    return WG_OK;
}

void wg_msg_in_clear(wg_msg_in *in) {
    if (!in) return;
    free(in->body);
    memset(in, 0, sizeof *in);
}

wg_status wg_msg_recv(void *sock, bool router, wg_msg_in *in, int flags) {
    memset(in, 0, sizeof *in);
    wg_status st = WG_OK;
    int want = router ? 5 : 4; /* [id] "" WGL1 cmd body */
    int idx = 0;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, idx == 0 ? flags : 0) < 0) {
            zmq_msg_close(&part);
            if (idx == 0) return s_zerr("recv");
            return s_zerr("recv frame");
        }
        const uint8_t *d = zmq_msg_data(&part);
        size_t n = zmq_msg_size(&part);
        int more = zmq_msg_more(&part);
        int pos = router ? idx : idx + 1; /* 0 id, 1 delim, 2 sig, 3 cmd, 4 body */
        if (st == WG_OK) {
            if (pos == 0) {
                in->id_len = n < sizeof in->id ? n : sizeof in->id;
                memcpy(in->id, d, in->id_len);
            } else if (pos == 1) {
                if (n != 0) st = wg_error(WG_ERR_PROTOCOL, "frame 0 is %zu bytes, expected empty delimiter", n);
            } else if (pos == 2) {
                st = wg_msg_check_signature(d, n);
                in->version_ok = st == WG_OK;
            } else if (pos == 3) {
                st = wg_msg_cmd_parse(d, n, &in->cmd);
            } else if (pos == 4) {
                if (n > WG_MSG_MAX_BODY) {
                    st = wg_error(WG_ERR_RANGE, "%s: body of %zu bytes exceeds %u",
                                  wg_msg_cmd_name(in->cmd), n, WG_MSG_MAX_BODY);
                } else if ((in->body = malloc(n ? n : 1)) == NULL) {
                    st = wg_error(WG_ERR_NOMEM, "body of %zu bytes", n);
                } else {
                    memcpy(in->body, d, n);
                    in->body_len = n;
                }
            }
        }
        zmq_msg_close(&part);
        idx++;
        if (!more) break;
    }
    in->n_frames = idx;
    if (st == WG_OK && idx != want)
        st = wg_error(WG_ERR_PROTOCOL, "message has %d frames, expected %d", idx - (router ? 1 : 0),
                      4);
    return st;
}
