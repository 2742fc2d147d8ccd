/* wg_pool — persistent worker threads woken once per wg_pool_run.
 *
 * Design: a run is published by bumping a generation counter; workers spin on
 * it for a short while (decode issues matmuls back to back, so the next run
 * usually arrives within microseconds) and then sleep on a condition variable.
 * The caller runs share 0 itself and spins (then yields) until the other
 * workers have checked in. No allocation happens per run. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wg_cpu.h"
#include "wg_cpu_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define S_PAUSE() _mm_pause()
#else
#define S_PAUSE() ((void)0)
#endif

/* Bit of the join word set once a wg_pool_run_any run stops admitting. */
#define S_CLOSED 0x80000000u

/* Spins before a worker sleeps / the caller yields: ~50-100 us of pause. */
#define S_SPIN_WORKER 20000
#define S_SPIN_CALLER 4000

typedef struct {
    wg_pool_t *pool;  /* owning pool */
    int ith;          /* this worker's share index, 1..n-1 */
    pthread_t tid;    /* thread handle */
} s_worker;

struct wg_pool {
    int n;                                   /* threads including the caller */
    s_worker *workers;                       /* [n-1] spawned workers */
    int n_started;                           /* workers actually created */
    void (*fn)(void *ctx, int ith, int nth); /* job of the current run */
    void *ctx;                               /* its argument */
    bool any;                                /* run started by wg_pool_run_any */
    _Atomic unsigned gen;                    /* run generation, bumped per run */
    _Atomic uint64_t join;                   /* gen << 32 | S_CLOSED | workers inside fn */
    _Atomic int n_done;                      /* workers finished with this run */
    _Atomic int quit;                        /* set by destroy */
    pthread_mutex_t mu;                      /* guards sleeping on cv */
    pthread_cond_t cv;                       /* signalled on a new run / quit */
};

static void *s_worker_main(void *arg) {
    s_worker *w = arg;
    wg_pool_t *p = w->pool;
    /* Generation 0 is the pool's state at creation: a run published before
     * this thread got scheduled is still seen as new. */
    unsigned seen = 0;
    for (;;) {
        unsigned g = seen;
        for (int i = 0; i < S_SPIN_WORKER; i++) {
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
            if (g != seen || atomic_load_explicit(&p->quit, memory_order_relaxed)) break;
            S_PAUSE();
        }
        if (g == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = g;
        /* Join run g unless it is closed or already superseded: a worker that
         * woke late must not touch the fn/ctx of a newer run it did not see. */
        uint64_t j = atomic_load_explicit(&p->join, memory_order_acquire);
        bool joined = false;
        while ((unsigned)(j >> 32) == g && !(j & S_CLOSED)) {
            if (atomic_compare_exchange_weak_explicit(&p->join, &j, j + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                joined = true;
                break;
            }
        }
        if (!joined) continue;
        /* Joined: fn, ctx and any are those of run g until we leave. */
        const bool any = p->any;
        p->fn(p->ctx, w->ith, p->n);
        /* Leave before reporting done: once a full run's caller sees n_done
         * complete it may publish the next run, and must find join settled.
         * run_any callers wait on join alone and never read n_done. */
        atomic_fetch_sub_explicit(&p->join, 1, memory_order_release);
        if (!any) atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
    return NULL;
}

wg_pool_t *wg_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > 1024) {
        wg_error(WG_ERR_INVAL, "wg_pool_new: n_threads=%d outside 1..1024", n_threads);
        return NULL;
    }
    wg_pool_t *p = calloc(1, sizeof *p);
    if (!p) {
        wg_error(WG_ERR_NOMEM, "wg_pool_new: pool");
        return NULL;
    }
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->n_done, 0);
    atomic_init(&p->join, 0);
    atomic_init(&p->quit, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            wg_error(WG_ERR_NOMEM, "wg_pool_new: %d workers", n_threads - 1);
            goto err;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            int rc = pthread_create(&p->workers[i].tid, NULL, s_worker_main, &p->workers[i]);
            if (rc != 0) {
                wg_error(WG_ERR, "wg_pool_new: pthread_create for worker %d: %s", i + 1,
                         strerror(rc));
                goto err;
            }
            p->n_started++;
        }
    }
    return p;
err:
    wg_pool_destroy(&p);
    return NULL;
}

void wg_pool_destroy(wg_pool_t **pool) {
    if (!pool || !*pool) return;
    wg_pool_t *p = *pool;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].tid, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
    *pool = NULL;
}

int wg_pool_size(const wg_pool_t *pool) { return pool ? pool->n : 1; }

/* Publish run gen+1 (fn, ctx, open join word) and wake the workers. */
static unsigned s_publish(wg_pool_t *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx,
                          bool any) {
    pool->any = any;
    pool->fn = fn;
    pool->ctx = ctx;
    const unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->join, (uint64_t)g << 32, memory_order_relaxed);
    /* Bump under the mutex so a worker about to sleep cannot miss it. */
    pthread_mutex_lock(&pool->mu);
    atomic_store_explicit(&pool->gen, g, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return g;
}

static void s_spin_until(_Atomic int *v, int want) {
    int spins = 0;
    while (atomic_load_explicit(v, memory_order_acquire) != want) {
        if (++spins < S_SPIN_CALLER) {
            S_PAUSE();
        } else {
            sched_yield();
        }
    }
}

void wg_pool_run(wg_pool_t *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    WG_ASSERT(fn != NULL);
    if (!pool || pool->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    s_publish(pool, fn, ctx, false);
    fn(ctx, 0, pool->n);
    /* Every worker joins: the run is never closed, and a worker that skipped
     * an older run sees this generation on its next look. */
    s_spin_until(&pool->n_done, pool->n - 1);
}

void wg_pool_run_any(wg_pool_t *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    WG_ASSERT(fn != NULL);
    if (!pool || pool->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    s_publish(pool, fn, ctx, true);
    fn(ctx, 0, pool->n);
    /* Close admission, then wait only for the workers already inside. */
    uint64_t j = atomic_fetch_or_explicit(&pool->join, S_CLOSED, memory_order_acq_rel);
    int spins = 0;
    while ((j & (S_CLOSED - 1)) != 0) {
        if (++spins < S_SPIN_CALLER) {
            S_PAUSE();
        } else {
            sched_yield();
        }
        j = atomic_load_explicit(&pool->join, memory_order_acquire);
    }
}
