/* wg_status — the one list of error codes, and the per-thread error message.
 *
 * Design: every fallible call returns a wg_status (WG_OK == 0, errors < 0) and
 * writes results through out-params. The human-readable reason (which field,
 * which bad value) is kept in a thread-local buffer set by wg_error(); callers
 * read it with wg_errmsg() until the next error on the same thread. */
#ifndef WG_STATUS_H
#define WG_STATUS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WG_ERRORS(XX)                                                   \
    XX(OK, 0, "success")                                                \
    XX(ERR, -1, "unspecified error")                                    \
    XX(ERR_NOMEM, -2, "out of memory")                                  \
    XX(ERR_IO, -3, "I/O error")                                         \
    XX(ERR_FORMAT, -4, "malformed input")                               \
    XX(ERR_TRUNCATED, -5, "truncated input")                            \
    XX(ERR_RANGE, -6, "value out of range")                             \
    XX(ERR_UNSUPPORTED, -7, "unsupported")                              \
    XX(ERR_NOTFOUND, -8, "not found")                                   \
    XX(ERR_INVAL, -9, "invalid argument")                               \
    XX(ERR_FULL, -10, "capacity exhausted")                             \
    XX(ERR_AGAIN, -11, "try again")                                     \
    XX(ERR_TIMEOUT, -12, "timed out")                                   \
    XX(ERR_CANCELLED, -13, "cancelled")                                 \
    XX(ERR_PROTOCOL, -14, "protocol error")                             \
    XX(ERR_VERSION, -15, "unsupported version")                         \
    XX(ERR_REDIS, -16, "redis error")                                   \
    XX(ERR_ZMQ, -17, "zeromq error")                                    \
    XX(ERR_CHECKSUM, -18, "checksum mismatch")                          \
    XX(ERR_DEVICE, -19, "device error")

typedef enum {
#define WG_XX_ENUM(name, val, str) WG_##name = val,
    WG_ERRORS(WG_XX_ENUM)
#undef WG_XX_ENUM
} wg_status;

/* Static description of a status code ("malformed input"). Never NULL. */
const char *wg_strerror(wg_status st);

/* Name of a status code ("ERR_FORMAT"), for logs and wire error codes. */
const char *wg_status_name(wg_status st);

/* Record a formatted reason for `st` in this thread's buffer and return `st`,
 * so callers can write `return wg_error(WG_ERR_FORMAT, "bad n_dims=%u", n);`. */
wg_status wg_error(wg_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last reason recorded on this thread ("" if none). Valid until the next
 * wg_error() on the same thread. */
const char *wg_errmsg(void);

/* Clear this thread's reason. */
void wg_error_clear(void);

/* Always-on assertion for programmer errors (NULL self, shape mismatch).
 * Never used for untrusted input: that returns an error instead. */
#define WG_ASSERT(cond)                                                      \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,      \
                    __LINE__, #cond);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
