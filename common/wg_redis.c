/* wg_redis — Redis URL parsing and connection setup (see wg_redis.h). */
#include "wg_redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wg_status wg_redis_parse_url(const char *url, wg_redis_addr *a) {
    WG_ASSERT(a);
    memset(a, 0, sizeof *a);
    if (!url || !*url) return wg_error(WG_ERR_INVAL, "redis URL is empty");
    const char *p = url;
    if (!strncmp(p, "redis://", 8)) p += 8;
    else if (strstr(p, "://")) return wg_error(WG_ERR_INVAL, "redis URL '%s': scheme must be redis://", url);
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(a->user, sizeof a->user, "%.*s", (int)(colon - p), p);
            snprintf(a->password, sizeof a->password, "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(a->password, sizeof a->password, "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof a->host)
        return wg_error(WG_ERR_INVAL, "redis URL '%s': missing or too long host", url);
    snprintf(a->host, sizeof a->host, "%.*s", (int)(hend - p), p);
    a->port = 6379;
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port <= 0 || port > 65535)
            return wg_error(WG_ERR_INVAL, "redis URL '%s': bad port '%.*s'", url, (int)(end - colon - 1), colon + 1);
        a->port = (int)port;
    }
    if (slash && slash[1]) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 65535) return wg_error(WG_ERR_INVAL, "redis URL '%s': bad db '%s'", url, slash + 1);
        a->db = (int)db;
    }
    return WG_OK;
}

static struct timeval s_tv(int ms) { return (struct timeval){ms / 1000, (ms % 1000) * 1000}; }

wg_status wg_redis_open(const wg_redis_addr *a, int connect_ms, int cmd_ms, redisContext **out, bool *reached) {
    WG_ASSERT(a && out);
    *out = NULL;
    if (reached) *reached = false;
    redisContext *c = redisConnectWithTimeout(a->host, a->port, s_tv(connect_ms));
    if (!c || c->err) {
        wg_status st = wg_error(WG_ERR_REDIS, "redis %s:%d unreachable: %s", a->host, a->port,
                                c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return st;
    }
    if (reached) *reached = true;
    redisSetTimeout(c, s_tv(cmd_ms));
    redisReply *rep = NULL;
    if (a->password[0]) {
        rep = a->user[0] ? redisCommand(c, "AUTH %s %s", a->user, a->password)
                         : redisCommand(c, "AUTH %s", a->password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            wg_status st = wg_error(WG_ERR_REDIS, "redis %s:%d: AUTH as user '%s' refused: %s", a->host, a->port,
                                    a->user[0] ? a->user : "default", rep ? rep->str : c->errstr);
            if (rep) freeReplyObject(rep);
            redisFree(c);
            return st;
        }
        freeReplyObject(rep);
    }
    if (a->db) {
        rep = redisCommand(c, "SELECT %d", a->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            wg_status st = wg_error(WG_ERR_REDIS, "redis %s:%d: SELECT %d failed: %s", a->host, a->port, a->db,
                                    rep ? rep->str : c->errstr);
            if (rep) freeReplyObject(rep);
            redisFree(c);
            return st;
        }
        freeReplyObject(rep);
    }
    *out = c;
    return WG_OK;
}
