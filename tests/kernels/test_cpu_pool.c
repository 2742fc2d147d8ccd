/* Tests of wg_pool: thread counts, every share run exactly once per run,
 * results visible to the caller after wg_pool_run returns, bad sizes. */
#include <dirent.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/wg_cpu.h"
#include "kernels/cpu/wg_cpu_impl.h"
#include "wg_test.h"
#include "wg_test_sys.h"

static int s_threads_now(void) {
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* The thread count once it equals want, or what it is after 2 s: the kernel
 * may still list a joined thread's task for a moment after pthread_join. */
static int s_threads_settle(int want) {
    int64_t end = wg_test_now_ms() + 2000;
    int n;
    while ((n = s_threads_now()) != want && wg_test_now_ms() < end) wg_test_sleep_ms(5);
    return n;
}

Test(cpu_pool, one_thread_spawns_none_and_n_spawns_n_minus_one) {
    const int before = s_threads_now();
    wg_pool_t *p = wg_pool_new(1);
    cr_assert_not_null(p);
    cr_assert_eq(wg_pool_size(p), 1);
    cr_assert_eq(s_threads_now(), before);
    wg_pool_destroy(&p);
    cr_assert_null(p);
    p = wg_pool_new(4);
    cr_assert_not_null(p);
    cr_assert_eq(wg_pool_size(p), 4);
    cr_assert_eq(s_threads_now(), before + 3);
    wg_pool_destroy(&p);
    cr_assert_eq(s_threads_settle(before), before, "the pool's threads outlive wg_pool_destroy");
    wg_pool_destroy(&p); /* NULL is fine */
    wg_pool_destroy(NULL);
}

typedef struct {
    _Atomic int calls[8];  /* calls per share index */
    int nth_seen[8];       /* nth passed to each share */
    long plain[8];         /* written without atomics: must be visible after run */
} s_ctx;

static void s_job(void *arg, int ith, int nth) {
    s_ctx *c = arg;
    atomic_fetch_add(&c->calls[ith], 1);
    c->nth_seen[ith] = nth;
    c->plain[ith] += ith + 1;
}

Test(cpu_pool, every_share_runs_once_per_run) {
    for (int n = 1; n <= 3; n++) {
        wg_pool_t *p = wg_pool_new(n);
        cr_assert_not_null(p);
        s_ctx c;
        memset(&c, 0, sizeof c);
        const int runs = 5000;
        for (int r = 0; r < runs; r++) {
            wg_pool_run(p, s_job, &c);
            /* After return every share of this run has finished. */
            for (int i = 0; i < n; i++)
                cr_assert_eq(c.plain[i], (long)(r + 1) * (i + 1), "n=%d run %d share %d", n, r, i);
        }
        for (int i = 0; i < 8; i++) {
            cr_assert_eq(atomic_load(&c.calls[i]), i < n ? runs : 0, "n=%d share %d", n, i);
            if (i < n) cr_assert_eq(c.nth_seen[i], n);
        }
        wg_pool_destroy(&p);
    }
}

Test(cpu_pool, sleeping_workers_wake_up) {
    wg_pool_t *p = wg_pool_new(2);
    s_ctx c;
    memset(&c, 0, sizeof c);
    for (int r = 0; r < 3; r++) {
        struct timespec ts = {0, 20 * 1000 * 1000}; /* past the spin window: workers sleep */
        nanosleep(&ts, NULL);
        wg_pool_run(p, s_job, &c);
    }
    cr_assert_eq(atomic_load(&c.calls[1]), 3);
    wg_pool_destroy(&p);
}

Test(cpu_pool, bad_sizes_fail_with_reason) {
    cr_assert_null(wg_pool_new(0));
    cr_assert(strstr(wg_errmsg(), "n_threads=0") != NULL, "%s", wg_errmsg());
    cr_assert_null(wg_pool_new(-3));
    cr_assert_null(wg_pool_new(100000));
}

/* wg_pool_run_any: work claimed from a counter is done exactly once whoever
 * joins, and the call returns only after every joined worker has left. */
typedef struct {
    _Atomic int next;     /* next item to claim */
    _Atomic int done[4096]; /* times each item was processed */
} s_any_ctx;

static void s_any_job(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    s_any_ctx *c = arg;
    for (;;) {
        int i = atomic_fetch_add(&c->next, 1);
        if (i >= 4096) break;
        atomic_fetch_add(&c->done[i], 1);
    }
}

static void s_count_job(void *arg, int ith, int nth) {
    (void)nth;
    atomic_fetch_add(&((_Atomic int *)arg)[ith], 1);
}

Test(cpu_pool, run_any_does_all_work_once_and_mixes_with_run) {
    wg_pool_t *p = wg_pool_new(2);
    cr_assert_not_null(p);
    static s_any_ctx c;
    _Atomic int counts[2] = {0, 0};
    for (int r = 0; r < 2000; r++) {
        memset(&c, 0, sizeof c);
        wg_pool_run_any(p, s_any_job, &c);
        for (int i = 0; i < 4096; i++) cr_assert_eq(atomic_load(&c.done[i]), 1, "run %d item %d", r, i);
        wg_pool_run(p, s_count_job, counts); /* full runs still reach every worker */
    }
    cr_assert_eq(atomic_load(&counts[0]), 2000);
    cr_assert_eq(atomic_load(&counts[1]), 2000);
    wg_pool_destroy(&p);
}

/* Lanes hand out every unit exactly once, whatever the thread count (more
 * threads than lanes share them) and claim size; with every thread taking
 * part and no stealing needed, thread i's first claim starts its own lane
 * (unit ~i*n/nth); and a thread that never runs (a pool of 3 driven as if it
 * had 4) has its lane done by the others. */
typedef struct {
    wg_lanes_t lanes;
    int64_t n, cap;
    _Atomic int *seen;     /* [n] claims of each unit */
    int64_t first[32];     /* first unit each thread claimed (-1: none) */
} s_lane_job;

static void s_lane_worker(void *ctx, int ith, int nth) {
    (void)nth;
    s_lane_job *j = ctx;
    int64_t u0, k;
    bool first = true;
    while ((k = wg_lanes_claim(&j->lanes, ith, j->cap, NULL, NULL, &u0)) > 0) {
        cr_assert(k <= j->cap && u0 >= 0 && u0 + k <= j->n, "claim [%lld, +%lld) of %lld", (long long)u0,
                  (long long)k, (long long)j->n);
        if (first) j->first[ith] = u0, first = false;
        for (int64_t u = u0; u < u0 + k; u++) atomic_fetch_add(&j->seen[u], 1);
    }
}

Test(cpu_pool, lanes_hand_out_every_unit_once) {
    static const int threads[] = {1, 2, 3, 9, 17};
    static const int64_t ns[] = {0, 1, 7, 64, 1000};
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
        wg_pool_t *pool = wg_pool_new(threads[ti]);
        cr_assert_not_null(pool);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int64_t cap = 1; cap <= 16; cap *= 4)
                for (int ghost = 0; ghost < 2; ghost++) {
                    s_lane_job j = {.n = ns[ni], .cap = cap};
                    j.seen = calloc((size_t)(ns[ni] + 1), sizeof *j.seen);
                    for (int i = 0; i < 32; i++) j.first[i] = -1;
                    /* ghost: lanes cut for one thread more than will run */
                    wg_lanes_init(&j.lanes, ns[ni], threads[ti] + ghost);
                    wg_pool_run_any(pool, s_lane_worker, &j);
                    for (int64_t u = 0; u < ns[ni]; u++)
                        cr_assert_eq(atomic_load(&j.seen[u]), 1, "%d threads (+%d), n %lld, cap %lld: unit %lld claimed %d times",
                                     threads[ti], ghost, (long long)ns[ni], (long long)cap, (long long)u,
                                     atomic_load(&j.seen[u]));
                    free(j.seen);
                }
        wg_pool_destroy(&pool);
    }
    /* one thread, two lanes: it starts at its own lane's front, unit 0 */
    s_lane_job j = {.n = 100, .cap = 4};
    j.seen = calloc(101, sizeof *j.seen);
    j.first[0] = -1;
    wg_lanes_init(&j.lanes, 100, 2);
    s_lane_worker(&j, 1, 2); /* as thread 1 of 2: its lane is [50, 100) */
    cr_assert_eq(j.first[1], 50, "thread 1 of 2 began at %lld", (long long)j.first[1]);
    for (int64_t u = 0; u < 100; u++) cr_assert_eq(atomic_load(&j.seen[u]), 1);
    free(j.seen);
}
