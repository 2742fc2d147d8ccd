/* wg_store_redis — Redis Streams store (PROTOCOL.md §9).
 *
 * Keys: waggle:q:<model> (stream, group `group`), waggle:models (set),
 * waggle:result:<job_id> (SET NX EX), waggle:attempts:<job_id>.
 * A lost connection is retried with exponential backoff (100 ms .. 5 s); calls
 * made while it is down fail fast with ERR_REDIS so the broker can answer
 * producers with a retry hint instead of blocking its loop. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wg_log.h"
#include "common/wg_redis.h"
#include "schemas/wg_msg.h"
#include "wg_store.h"

#define MAX_GROUPS 256

typedef struct redis_store {
    wg_store_t base;              /* ops */
    redisContext *c;              /* NULL while disconnected */
    wg_redis_addr addr;           /* from the URL (user/password overridable) */
    char group[64];               /* consumer group */
    char consumer[128];           /* consumer name */
    char *groups[MAX_GROUPS];     /* models whose group exists (this connection) */
    int n_groups;                 /* entries in groups */
    int64_t next_try_ms;          /* earliest reconnect attempt */
    int64_t backoff_ms;           /* current backoff */
} redis_store;

static int64_t s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_drop(redis_store *r, const char *why) {
    if (r->c) {
        wg_warn("store", "redis connection lost: %s", why);
        redisFree(r->c);
        r->c = NULL;
    }
    for (int i = 0; i < r->n_groups; i++) free(r->groups[i]);
    r->n_groups = 0;
    r->next_try_ms = s_now_ms() + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > 5000 ? 5000 : r->backoff_ms * 2;
}

static wg_status s_connect(redis_store *r) {
    wg_status st = wg_redis_open(&r->addr, 1000, 1000, &r->c, NULL);
    if (st == WG_OK) r->backoff_ms = 100;
    return st;
}

/* Ensure a live connection (with backoff between attempts). */
static wg_status s_ready(redis_store *r) {
    if (r->c && !r->c->err) return WG_OK;
    if (r->c) s_drop(r, r->c->errstr);
    if (s_now_ms() < r->next_try_ms)
        return wg_error(WG_ERR_REDIS, "redis %s:%d unavailable (retrying)", r->addr.host, r->addr.port);
    wg_status st = s_connect(r);
    if (st) {
        r->next_try_ms = s_now_ms() + r->backoff_ms;
        r->backoff_ms = r->backoff_ms * 2 > 5000 ? 5000 : r->backoff_ms * 2;
        return st;
    }
    wg_info("store", "redis connected host=%s port=%d", r->addr.host, r->addr.port);
    return WG_OK;
}

/* Run one command; NULL reply means the connection broke. */
static redisReply *s_cmdv(redis_store *r, int argc, const char **argv, const size_t *lens) {
    if (s_ready(r)) return NULL;
    redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
    if (!rep) {
        wg_error(WG_ERR_REDIS, "redis: %s", r->c->errstr);
        s_drop(r, r->c->errstr);
    }
    return rep;
}

static wg_status s_ensure_group(redis_store *r, const char *model) {
    for (int i = 0; i < r->n_groups; i++)
        if (!strcmp(r->groups[i], model)) return WG_OK;
    char key[300];
    snprintf(key, sizeof key, "waggle:q:%s", model);
    const char *argv[] = {"XGROUP", "CREATE", key, r->group, "0", "MKSTREAM"};
    redisReply *rep = s_cmdv(r, 6, argv, NULL);
    if (!rep) return WG_ERR_REDIS;
    wg_status st = WG_OK;
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0)
        st = wg_error(WG_ERR_REDIS, "XGROUP CREATE %s: %s", key, rep->str);
    freeReplyObject(rep);
    if (st) return st;
    const char *sadd[] = {"SADD", "waggle:models", model};
    if ((rep = s_cmdv(r, 3, sadd, NULL)) == NULL) return WG_ERR_REDIS;
    freeReplyObject(rep);
    if (r->n_groups < MAX_GROUPS) r->groups[r->n_groups++] = strdup(model);
    return WG_OK;
}

static void s_hex(const uint8_t *d, size_t n, char *out) {
    static const char *hx = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

static size_t s_unhex(const char *s, size_t n, uint8_t *out, size_t cap) {
    size_t k = 0;
    for (; 2 * k + 1 < n && k < cap; k++) {
        unsigned v;
        if (sscanf(s + 2 * k, "%2x", &v) != 1) break;
        out[k] = (uint8_t)v;
    }
    return k;
}

static wg_status r_enqueue(wg_store_t *s, const char *model, const char *job_id,
                           const uint8_t *job, size_t job_len, const uint8_t *owner,
                           size_t owner_len, char *entry_id) {
    redis_store *r = (redis_store *)s;
    wg_status st = s_ensure_group(r, model);
    if (st) return st;
    char key[300], ohex[2 * 255 + 1];
    snprintf(key, sizeof key, "waggle:q:%s", model);
    s_hex(owner, owner_len, ohex);
    const char *argv[] = {"XADD", key, "*", "job_id", job_id, "job", (const char *)job, "owner", ohex};
    size_t lens[] = {4, strlen(key), 1, 6, strlen(job_id), 3, job_len, 5, strlen(ohex)};
    /* pipeline: XADD then XREADGROUP so the entry is pending for this consumer */
    if ((st = s_ready(r))) return st;
    redisAppendCommandArgv(r->c, 9, argv, lens);
    const char *rd[] = {"XREADGROUP", "GROUP", r->group, r->consumer, "COUNT", "1000",
                        "STREAMS", key, ">"};
    redisAppendCommandArgv(r->c, 9, rd, NULL);
    redisReply *a = NULL, *b = NULL;
    if (redisGetReply(r->c, (void **)&a) != REDIS_OK || redisGetReply(r->c, (void **)&b) != REDIS_OK) {
        if (a) freeReplyObject(a);
        st = wg_error(WG_ERR_REDIS, "XADD %s: %s", key, r->c->errstr);
        s_drop(r, r->c->errstr);
        return st;
    }
    if (a->type != REDIS_REPLY_STRING) {
        st = wg_error(WG_ERR_REDIS, "XADD %s: %s", key, a->type == REDIS_REPLY_ERROR ? a->str : "bad reply");
    } else {
        snprintf(entry_id, 64, "%s", a->str);
    }
    freeReplyObject(a);
    freeReplyObject(b);
    return st;
}

/* Feed stream entries ([[id, [k, v, ...]], ...]) to fn. */
static int s_feed(redis_store *r, const char *model, redisReply *entries, wg_store_recover_fn fn,
                  void *arg) {
    int n = 0;
    if (!entries || entries->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue; /* deleted entries come back with a nil field list */
        wg_store_entry se = {.model = model, .entry_id = e->element[0]->str};
        uint8_t owner[255];
        redisReply *kv = e->element[1];
        for (size_t k = 0; k + 1 < kv->elements; k += 2) {
            const char *f = kv->element[k]->str;
            redisReply *v = kv->element[k + 1];
            if (!strcmp(f, "job_id")) se.job_id = v->str;
            else if (!strcmp(f, "job")) se.job = (const uint8_t *)v->str, se.job_len = v->len;
            else if (!strcmp(f, "owner")) se.owner_len = s_unhex(v->str, v->len, owner, sizeof owner);
        }
        se.owner = owner;
        if (!se.job_id || !se.job) continue;
        char akey[200];
        snprintf(akey, sizeof akey, "waggle:attempts:%s", se.job_id);
        const char *g[] = {"GET", akey};
        redisReply *ar = s_cmdv(r, 2, g, NULL);
        if (ar && ar->type == REDIS_REPLY_STRING) se.failures = (uint32_t)strtoul(ar->str, NULL, 10);
        if (ar) freeReplyObject(ar);
        /* a result stored before a crash (between SET and XACK) means it is done */
        char rkey[200];
        snprintf(rkey, sizeof rkey, "waggle:result:%s", se.job_id);
        const char *ex[] = {"EXISTS", rkey};
        redisReply *xr = s_cmdv(r, 2, ex, NULL);
        int done = xr && xr->type == REDIS_REPLY_INTEGER && xr->integer == 1;
        if (xr) freeReplyObject(xr);
        if (done) {
            char key[300];
            snprintf(key, sizeof key, "waggle:q:%s", model);
            const char *ack[] = {"XACK", key, r->group, se.entry_id};
            redisReply *q = s_cmdv(r, 4, ack, NULL);
            if (q) freeReplyObject(q);
            continue;
        }
        fn(arg, &se);
        n++;
    }
    return n;
}

static wg_status r_recover(wg_store_t *s, wg_store_recover_fn fn, void *arg) {
    redis_store *r = (redis_store *)s;
    const char *sm[] = {"SMEMBERS", "waggle:models"};
    redisReply *models = s_cmdv(r, 2, sm, NULL);
    if (!models) return WG_ERR_REDIS;
    int total = 0;
    for (size_t m = 0; m < models->elements; m++) {
        const redisReply *me = models->element[m];
        const char *model = me->type == REDIS_REPLY_STRING ? me->str : NULL;
        /* A damaged or foreign entry in the model set (not a name, or a key
         * of another type) is logged and passed over: the other models'
         * pending jobs must still come back. */
        if (!model || !model[0] || me->len > WG_MSG_MAX_MODEL || memchr(model, 0, me->len)) {
            wg_err("store", "recovery: skipping waggle:models entry %zu: not a model name", m);
            continue;
        }
        if (s_ensure_group(r, model)) {
            if (!r->c) break; /* connection lost: reported below */
            wg_err("store", "recovery: skipping model '%s': %s", model, wg_errmsg());
            continue;
        }
        char key[300];
        snprintf(key, sizeof key, "waggle:q:%s", model);
        /* pending entries of any consumer (a dead broker's included) */
        char cursor[64] = "0-0";
        for (int guard = 0; guard < 100000; guard++) {
            const char *ac[] = {"XAUTOCLAIM", key, r->group, r->consumer, "0", cursor, "COUNT", "500"};
            redisReply *rep = s_cmdv(r, 8, ac, NULL);
            if (!rep) break;
            if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
                wg_err("store", "XAUTOCLAIM %s: %s", key, rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
                freeReplyObject(rep);
                break;
            }
            total += s_feed(r, model, rep->element[1], fn, arg);
            snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
            freeReplyObject(rep);
            if (!strcmp(cursor, "0-0")) break;
        }
        /* entries never delivered (crash between XADD and XREADGROUP) */
        for (int guard = 0; guard < 100000; guard++) {
            const char *rd[] = {"XREADGROUP", "GROUP", r->group, r->consumer, "COUNT", "500",
                                "STREAMS", key, ">"};
            redisReply *rep = s_cmdv(r, 9, rd, NULL);
            if (!rep) break;
            int got = 0;
            if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
                redisReply *entries = rep->element[0]->element[1];
                got = (int)entries->elements;
                total += s_feed(r, model, entries, fn, arg);
            }
            freeReplyObject(rep);
            if (!got) break;
        }
    }
    freeReplyObject(models);
    if (!r->c) return wg_error(WG_ERR_REDIS, "redis lost during recovery");
    wg_info("store", "recovered %d pending jobs", total);
    return WG_OK;
}

static wg_status r_finish(wg_store_t *s, const char *model, const char *entry_id,
                          const char *job_id, const uint8_t *result, size_t len, uint32_t ttl_s) {
    redis_store *r = (redis_store *)s;
    char rkey[200], ttl[32], key[300], akey[200];
    snprintf(rkey, sizeof rkey, "waggle:result:%s", job_id);
    snprintf(ttl, sizeof ttl, "%u", ttl_s);
    snprintf(key, sizeof key, "waggle:q:%s", model);
    snprintf(akey, sizeof akey, "waggle:attempts:%s", job_id);
    const char *set[] = {"SET", rkey, (const char *)result, "NX", "EX", ttl};
    size_t setl[] = {3, strlen(rkey), len, 2, 2, strlen(ttl)};
    redisReply *rep = s_cmdv(r, 6, set, setl);
    if (!rep) return WG_ERR_REDIS;
    wg_status st = WG_OK;
    if (rep->type == REDIS_REPLY_ERROR) st = wg_error(WG_ERR_REDIS, "SET %s: %s", rkey, rep->str);
    freeReplyObject(rep);
    if (st) return st;
    /* only now is the queue entry acknowledged (and removed) */
    const char *ack[] = {"XACK", key, r->group, entry_id};
    if (!(rep = s_cmdv(r, 4, ack, NULL))) return WG_ERR_REDIS;
    freeReplyObject(rep);
    const char *del[] = {"XDEL", key, entry_id};
    if (!(rep = s_cmdv(r, 3, del, NULL))) return WG_ERR_REDIS;
    freeReplyObject(rep);
    const char *da[] = {"DEL", akey};
    if ((rep = s_cmdv(r, 2, da, NULL))) freeReplyObject(rep);
    return WG_OK;
}

static wg_status r_get_result(wg_store_t *s, const char *job_id, uint8_t **out, size_t *len) {
    redis_store *r = (redis_store *)s;
    char rkey[200];
    snprintf(rkey, sizeof rkey, "waggle:result:%s", job_id);
    const char *g[] = {"GET", rkey};
    redisReply *rep = s_cmdv(r, 2, g, NULL);
    if (!rep) return WG_ERR_REDIS;
    wg_status st = WG_OK;
    if (rep->type == REDIS_REPLY_STRING) {
        *out = malloc(rep->len ? rep->len : 1);
        if (!*out) st = wg_error(WG_ERR_NOMEM, "result copy");
        else {
            memcpy(*out, rep->str, rep->len);
            *len = rep->len;
        }
    } else if (rep->type == REDIS_REPLY_NIL) {
        st = wg_error(WG_ERR_NOTFOUND, "no result for job_id=%s", job_id);
    } else {
        st = wg_error(WG_ERR_REDIS, "GET %s: %s", rkey, rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
    }
    freeReplyObject(rep);
    return st;
}

static wg_status r_set_failures(wg_store_t *s, const char *job_id, uint32_t failures) {
    redis_store *r = (redis_store *)s;
    char akey[200], v[16];
    snprintf(akey, sizeof akey, "waggle:attempts:%s", job_id);
    snprintf(v, sizeof v, "%u", failures);
    const char *set[] = {"SET", akey, v};
    redisReply *rep = s_cmdv(r, 3, set, NULL);
    if (!rep) return WG_ERR_REDIS;
    freeReplyObject(rep);
    return WG_OK;
}

static int r_healthy(wg_store_t *s) {
    redis_store *r = (redis_store *)s;
    return r->c && !r->c->err;
}

static void r_destroy(wg_store_t *s) {
    redis_store *r = (redis_store *)s;
    if (r->c) redisFree(r->c);
    for (int i = 0; i < r->n_groups; i++) free(r->groups[i]);
    free(r);
}

static const wg_store_ops s_redis_ops = {r_enqueue, r_recover, r_finish, r_get_result,
                                         r_set_failures, r_healthy, r_destroy};

wg_store_t *wg_store_redis_new(const wg_store_redis_cfg *cfg) {
    redis_store *r = calloc(1, sizeof *r);
    if (!r) {
        wg_error(WG_ERR_NOMEM, "redis store");
        return NULL;
    }
    r->base.ops = &s_redis_ops;
    r->backoff_ms = 100;
    if (wg_redis_parse_url(cfg->url, &r->addr)) {
        free(r);
        return NULL;
    }
    if (cfg->user) snprintf(r->addr.user, sizeof r->addr.user, "%s", cfg->user);
    if (cfg->password) snprintf(r->addr.password, sizeof r->addr.password, "%s", cfg->password);
    snprintf(r->group, sizeof r->group, "%s", cfg->group ? cfg->group : "waggle");
    snprintf(r->consumer, sizeof r->consumer, "%s", cfg->consumer ? cfg->consumer : "broker");
    if (s_connect(r)) {
        free(r);
        return NULL;
    }
    return &r->base;
}
