/* wg_status — error names and the thread-local reason buffer. */
#include "wg_status.h"

#include <string.h>

static _Thread_local char s_msg[1024];

const char *wg_strerror(wg_status st) {
    switch (st) {
#define WG_XX_STR(name, val, str) \
    case WG_##name:               \
        return str;
        WG_ERRORS(WG_XX_STR)
#undef WG_XX_STR
    }
    return "unknown status";
}

const char *wg_status_name(wg_status st) {
    switch (st) {
#define WG_XX_NAME(name, val, str) \
    case WG_##name:                \
        return #name;
        WG_ERRORS(WG_XX_NAME)
#undef WG_XX_NAME
    }
    return "UNKNOWN";
}

/* Formatted into a local buffer first: callers wrap the previous reason as
 * wg_error(st, "context: %s", wg_errmsg()), and formatting straight into
 * s_msg would read the argument while overwriting it. */
wg_status wg_error(wg_status st, const char *fmt, ...) {
    char buf[sizeof s_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(s_msg, buf, strlen(buf) + 1);
    return st;
}

const char *wg_errmsg(void) { return s_msg; }

void wg_error_clear(void) { s_msg[0] = '\0'; }
