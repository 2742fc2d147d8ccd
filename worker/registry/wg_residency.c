/* wg_residency — LRU residency with byte accounting, pins and a background
 * loader (contract in wg_residency.h).
 *
 * One mutex guards the entry list; the loader thread only ever moves an
 * entry from LOADING to LOADED/FAILED and fills its result. Entries are
 * created and freed by the owner thread only, and never while LOADING, so
 * the loader's pointer stays valid without reference counts. Per-model
 * counters live in a second list that only grows (one small record per model
 * ever seen), so a model's counters survive its eviction. */
#include "wg_residency.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wg_log.h"

enum { R_LOADING, R_LOADED, R_RESIDENT, R_DRAINING, R_FAILED };

typedef struct rentry {
    char *name;            /* model name */
    int state;             /* R_* */
    bool started;          /* LOADING: picked by the loader */
    void *handle;          /* RESIDENT/DRAINING/LOADED: the loaded model */
    uint64_t bytes;        /* actual bytes once loaded; expected bytes while loading */
    uint32_t pins;         /* sequences in flight */
    uint64_t last_used;    /* LRU tick */
    wg_status err;         /* FAILED: the load's status */
    char errmsg[1100];     /* FAILED: its message */
    int64_t failed_ms;     /* FAILED: when */
    double load_s;         /* LOADED: seconds the load took */
    struct rentry *next;   /* list */
} rentry;

typedef struct mstat {
    char *name;             /* model name */
    uint64_t loads;         /* successful loads */
    uint64_t load_failures; /* failed loads */
    double load_seconds;    /* seconds of its successful loads */
    uint64_t evictions;     /* evictions */
    uint64_t touched;       /* LRU tick of its last load or eviction (ordering) */
    struct mstat *next;     /* list */
} mstat;

struct wg_residency {
    wg_res_cfg cfg;         /* copy */
    wg_res_ops ops;         /* copy */
    pthread_mutex_t mu;     /* guards the list and entry states */
    pthread_cond_t cv;      /* wakes the loader */
    pthread_t loader;       /* loader thread */
    bool stop;              /* loader exit flag */
    rentry *list;           /* all entries */
    uint64_t tick;          /* LRU clock */
    wg_res_stats st;        /* counters (resident figures computed on demand) */
    mstat *mstats;          /* per-model counters, never freed before destroy */
};

static int64_t s_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double s_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static rentry *s_find(const wg_residency_t *r, const char *name) {
    for (rentry *e = r->list; e; e = e->next)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

/* The counters of `name`, created on first use; NULL only when out of memory
 * (counting is then skipped, never fatal). Call under r->mu. */
static mstat *s_mstat(wg_residency_t *r, const char *name) {
    for (mstat *m = r->mstats; m; m = m->next)
        if (!strcmp(m->name, name)) return m;
    mstat *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return NULL;
    }
    m->next = r->mstats;
    r->mstats = m;
    return m;
}

static void s_unlink_free(wg_residency_t *r, rentry *e) {
    rentry **pp = &r->list;
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    free(e->name);
    free(e);
}

static void *s_loader(void *arg) {
    wg_residency_t *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        rentry *job = NULL;
        while (!r->stop) {
            for (rentry *e = r->list; e; e = e->next)
                if (e->state == R_LOADING && !e->started) job = e; /* oldest is last in the list */
            if (job) break;
            pthread_cond_wait(&r->cv, &r->mu);
        }
        if (r->stop) break;
        job->started = true;
        char name[512];
        snprintf(name, sizeof name, "%s", job->name);
        pthread_mutex_unlock(&r->mu);
        void *h = NULL;
        uint64_t bytes = 0;
        wg_error_clear();
        double t0 = s_sec();
        wg_status st = r->ops.load(r->ops.arg, name, &h, &bytes);
        double dt = s_sec() - t0;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", wg_errmsg());
        pthread_mutex_lock(&r->mu);
        if (st == WG_OK) {
            job->handle = h;
            job->bytes = bytes;
            job->load_s = dt;
            job->state = R_LOADED;
        } else {
            job->err = st;
            snprintf(job->errmsg, sizeof job->errmsg, "model '%s' failed to load: %s", name, msg[0] ? msg : wg_strerror(st));
            job->failed_ms = s_ms();
            job->state = R_FAILED;
            r->st.load_failures++;
            mstat *ms = s_mstat(r, name);
            if (ms) {
                ms->load_failures++;
                ms->touched = ++r->tick;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

wg_residency_t *wg_res_new(const wg_res_cfg *cfg, const wg_res_ops *ops) {
    if (!cfg || !ops || !ops->load || !ops->unload) {
        wg_error(WG_ERR_INVAL, "residency: cfg and ops (load, unload) are required");
        return NULL;
    }
    if (cfg->budget == 0) {
        wg_error(WG_ERR_INVAL, "residency: budget must be > 0 bytes");
        return NULL;
    }
    wg_residency_t *r = calloc(1, sizeof *r);
    if (!r) {
        wg_error(WG_ERR_NOMEM, "residency");
        return NULL;
    }
    r->cfg = *cfg;
    if (!r->cfg.fail_retry_ms) r->cfg.fail_retry_ms = 10000;
    r->ops = *ops;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->loader, NULL, s_loader, r) != 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        wg_error(WG_ERR, "residency: cannot start the loader thread");
        return NULL;
    }
    return r;
}

void wg_res_destroy(wg_residency_t **pr) {
    if (!pr || !*pr) return;
    wg_residency_t *r = *pr;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->loader, NULL);
    while (r->list) {
        rentry *e = r->list;
        if (e->handle && (e->state == R_RESIDENT || e->state == R_DRAINING || e->state == R_LOADED))
            r->ops.unload(r->ops.arg, e->name, e->handle);
        s_unlink_free(r, e);
    }
    while (r->mstats) {
        mstat *m = r->mstats;
        r->mstats = m->next;
        free(m->name);
        free(m);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    *pr = NULL;
}

static rentry *s_new_entry(wg_residency_t *r, const char *name) {
    rentry *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->next = r->list; /* newest first: the loader takes the last (oldest) */
    r->list = e;
    return e;
}

wg_status wg_res_adopt(wg_residency_t *r, const char *name, void *handle, uint64_t bytes) {
    pthread_mutex_lock(&r->mu);
    wg_status st = WG_OK;
    if (s_find(r, name)) {
        st = wg_error(WG_ERR_INVAL, "residency: model '%s' is already known", name);
    } else {
        rentry *e = s_new_entry(r, name);
        if (!e) {
            st = wg_error(WG_ERR_NOMEM, "residency");
        } else {
            e->state = R_RESIDENT;
            e->handle = handle;
            e->bytes = bytes;
            e->last_used = ++r->tick;
            mstat *ms = s_mstat(r, name);
            if (ms) ms->touched = r->tick;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

wg_status wg_res_acquire(wg_residency_t *r, const char *name, uint64_t expected_bytes, void **handle) {
    *handle = NULL;
    pthread_mutex_lock(&r->mu);
    wg_status st;
    rentry *e = s_find(r, name);
    if (e && e->state == R_FAILED && s_ms() - e->failed_ms >= (int64_t)r->cfg.fail_retry_ms) {
        s_unlink_free(r, e); /* retry */
        e = NULL;
    }
    if (!e) {
        if (expected_bytes > r->cfg.budget) {
            st = wg_error(WG_ERR_FULL, "model '%s' needs %llu bytes, over the memory budget of %llu", name,
                          (unsigned long long)expected_bytes, (unsigned long long)r->cfg.budget);
        } else if (!(e = s_new_entry(r, name))) {
            st = wg_error(WG_ERR_NOMEM, "residency");
        } else {
            e->state = R_LOADING;
            e->bytes = expected_bytes;
            wg_info("residency", "model=%s loading", name);
            pthread_cond_signal(&r->cv);
            st = WG_ERR_AGAIN;
        }
    } else if (e->state == R_RESIDENT || e->state == R_DRAINING) {
        e->state = R_RESIDENT; /* a drained-out model asked for again is kept */
        e->pins++;
        e->last_used = ++r->tick;
        *handle = e->handle;
        st = WG_OK;
    } else if (e->state == R_FAILED) {
        st = wg_error(e->err, "%s", e->errmsg);
    } else {
        st = WG_ERR_AGAIN; /* LOADING or LOADED (swapped in by the next poll) */
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

void wg_res_release(wg_residency_t *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    rentry *e = s_find(r, name);
    WG_ASSERT(e && e->pins > 0); /* release without acquire is a programmer error */
    e->pins--;
    if (e->state == R_DRAINING && e->pins == 0) {
        void *h = e->handle;
        char *n = strdup(e->name);
        s_unlink_free(r, e);
        pthread_mutex_unlock(&r->mu);
        r->ops.unload(r->ops.arg, n ? n : name, h); /* outside the lock: may take a while */
        free(n);
        return;
    }
    pthread_mutex_unlock(&r->mu);
}

int wg_res_poll(wg_residency_t *r) {
    int swapped = 0;
    pthread_mutex_lock(&r->mu);
    for (rentry *e = r->list; e; e = e->next) {
        if (e->state != R_LOADED) continue;
        e->state = R_RESIDENT;
        e->last_used = ++r->tick;
        r->st.loads++;
        r->st.load_seconds += e->load_s;
        mstat *ms = s_mstat(r, e->name);
        if (ms) {
            ms->loads++;
            ms->load_seconds += e->load_s;
            ms->touched = e->last_used;
        }
        swapped++;
        wg_info("residency", "model=%s loaded bytes=%llu seconds=%.6f", e->name, (unsigned long long)e->bytes, e->load_s);
    }
    /* restore the budget: evict least recently used; never free a pinned model */
    for (;;) {
        uint64_t used = 0;
        rentry *victim = NULL;
        uint32_t n_res = 0;
        for (rentry *e = r->list; e; e = e->next) {
            if (e->state != R_RESIDENT) continue;
            used += e->bytes;
            n_res++;
            if (!victim || e->last_used < victim->last_used) victim = e;
        }
        if (used <= r->cfg.budget || !victim || n_res <= 1) break; /* the newest always stays */
        r->st.evictions++;
        mstat *ms = s_mstat(r, victim->name);
        if (ms) {
            ms->evictions++;
            ms->touched = ++r->tick;
        }
        if (victim->pins) {
            victim->state = R_DRAINING;
            wg_info("residency", "model=%s draining pins=%u", victim->name, victim->pins);
            continue;
        }
        void *h = victim->handle;
        char *n = strdup(victim->name);
        s_unlink_free(r, victim);
        wg_info("residency", "model=%s evicted", n ? n : "?");
        pthread_mutex_unlock(&r->mu);
        r->ops.unload(r->ops.arg, n ? n : "", h);
        free(n);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return swapped;
}

uint64_t wg_res_mem_free(const wg_residency_t *cr) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    uint64_t used = 0;
    for (rentry *e = r->list; e; e = e->next)
        if (e->state == R_RESIDENT || e->state == R_LOADING || e->state == R_LOADED) used += e->bytes;
    pthread_mutex_unlock(&r->mu);
    return used >= r->cfg.budget ? 0 : r->cfg.budget - used;
}

uint32_t wg_res_models(const wg_residency_t *cr, const char **names, uint32_t cap) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    uint32_t n = 0;
    for (rentry *e = r->list; e; e = e->next)
        if (e->state == R_RESIDENT && n < cap) names[n++] = e->name;
    /* most recently used first (n is small: insertion sort) */
    for (uint32_t i = 1; i < n; i++) {
        const char *x = names[i];
        uint64_t xu = s_find(r, x)->last_used;
        uint32_t k = i;
        while (k > 0 && s_find(r, names[k - 1])->last_used < xu) {
            names[k] = names[k - 1];
            k--;
        }
        names[k] = x;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

uint64_t wg_res_bytes(const wg_residency_t *cr, const char *name) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    rentry *e = s_find(r, name);
    uint64_t b = e && (e->state == R_RESIDENT || e->state == R_DRAINING) ? e->bytes : 0;
    pthread_mutex_unlock(&r->mu);
    return b;
}

uint32_t wg_res_pins(const wg_residency_t *cr, const char *name) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    rentry *e = s_find(r, name);
    uint32_t p = e ? e->pins : 0;
    pthread_mutex_unlock(&r->mu);
    return p;
}

void wg_res_get_stats(const wg_residency_t *cr, wg_res_stats *out) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    out->resident_bytes = 0;
    out->n_resident = out->n_draining = 0;
    out->loading = false;
    for (rentry *e = r->list; e; e = e->next) {
        if (e->state == R_RESIDENT || e->state == R_DRAINING) {
            out->resident_bytes += e->bytes;
            out->n_resident++;
        }
        out->n_draining += e->state == R_DRAINING;
        out->loading |= e->state == R_LOADING || e->state == R_LOADED;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Ordering of wg_res_model_stats_get: resident models above the others. */
typedef struct s_rank {
    const mstat *m; /* the record */
    uint64_t bytes; /* resident bytes (0 = not resident) */
    uint64_t key;   /* larger first */
} s_rank;

static int s_rank_cmp(const void *a, const void *b) {
    const s_rank *x = a, *y = b;
    return x->key < y->key ? 1 : x->key > y->key ? -1 : 0;
}

uint32_t wg_res_model_stats_get(const wg_residency_t *cr, wg_res_model_stats *out, uint32_t cap) {
    wg_residency_t *r = (wg_residency_t *)cr;
    pthread_mutex_lock(&r->mu);
    size_t n = 0;
    for (const mstat *m = r->mstats; m; m = m->next) n++;
    s_rank *rk = n ? malloc(n * sizeof *rk) : NULL;
    uint32_t k = 0;
    if (rk) {
        size_t i = 0;
        for (const mstat *m = r->mstats; m; m = m->next, i++) {
            const rentry *e = s_find(r, m->name);
            bool res = e && (e->state == R_RESIDENT || e->state == R_DRAINING);
            rk[i] = (s_rank){.m = m, .bytes = res ? e->bytes : 0,
                             .key = res ? (UINT64_C(1) << 63) | e->last_used : m->touched};
        }
        qsort(rk, n, sizeof *rk, s_rank_cmp);
        for (; k < cap && k < n; k++)
            out[k] = (wg_res_model_stats){.name = rk[k].m->name, .loads = rk[k].m->loads,
                                          .load_failures = rk[k].m->load_failures,
                                          .load_seconds = rk[k].m->load_seconds,
                                          .evictions = rk[k].m->evictions, .resident_bytes = rk[k].bytes};
    }
    pthread_mutex_unlock(&r->mu);
    free(rk);
    return k;
}
