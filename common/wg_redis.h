/* wg_redis — Redis connection setup shared by the broker's queue store and the
 * model registry: URL parsing and connect + timeouts + AUTH + SELECT. What to
 * do with the connection afterwards (reconnect policy, backoff, commands) stays
 * with each caller: the broker's loop must fail fast, a CLI may wait. */
#ifndef WG_REDIS_H
#define WG_REDIS_H

#include <stdbool.h>

#include "wg_status.h"

struct redisContext; /* hiredis */

typedef struct wg_redis_addr {
    char host[256];     /* host name or address */
    int port;           /* 6379 unless given */
    int db;             /* SELECT index, 0 unless given */
    char user[128];     /* ACL user or "" (then AUTH uses the password alone) */
    char password[256]; /* password or "" (no AUTH) */
} wg_redis_addr;

/* Parses `[redis://][user[:password]@]host[:port][/db]` into *out (zeroed
 * first). Untrusted input: ERR_INVAL names the URL and the bad part (another
 * scheme, empty or too long host, bad port or db). */
wg_status wg_redis_parse_url(const char *url, wg_redis_addr *out);

/* Connects to a (connect_ms to connect, then cmd_ms per command), AUTHs
 * when a password is set and SELECTs a non-zero db. On success *out owns a
 * live context (redisFree it); on failure *out is NULL and ERR_REDIS says
 * which step failed ("redis HOST:PORT unreachable: ...", "AUTH as user ...
 * refused", "SELECT n failed"). *reached (if not NULL) tells whether the
 * server answered at all (false: unreachable; callers back off on that). */
wg_status wg_redis_open(const wg_redis_addr *a, int connect_ms, int cmd_ms, struct redisContext **out,
                        bool *reached);

#endif
