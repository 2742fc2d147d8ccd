/* wg_matmul — threaded quantized matrix product Y = X @ W^T on the CPU.
 *
 * Two phases in one pool run: (1) every activation row is quantized once
 * to the weight type's vec_dot_type and, for tile kernels, prepared
 * (unsigned copy, float scales, block sums; rows split across threads, each
 * thread waiting for all rows before phase 2); (2) the N weight rows are
 * cut into tiles that threads claim from per-thread lanes (wg_lanes_t).
 * Quantized types use tile kernels (tile_n = 8 or 16 rows): each
 * weight chunk of the tile is unpacked once and applied to ALL M activation
 * rows, so the unpack cost is paid once per call, not once per row group.
 * With one activation row (decode) the types that have a row kernel (gemv)
 * skip the unpack: each thread streams runs of whole weight rows.
 * Float types use multi-row vdot kernels over tiles of WG_CPU_NB rows,
 * WG_CPU_MR activation rows at a time. Either way each output is computed
 * with the same operation sequence as a lone row would be (see
 * wg_cpu_impl.h), so the result is batch invariant and independent of the
 * thread count. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../ref/wg_ref.h"
#include "wg_cpu.h"
#include "wg_cpu_impl.h"

/* Weight rows per tile: 16 rows of Q8_0 at K=4096 is ~70 KiB (L2-resident). */
#define WG_CPU_NB 16

/* Fewest weight rows per claim for row kernels (M = 1). */
#define WG_CPU_GEMV_RUN 16

/* A product with fewer multiply-adds than this runs on the caller alone: a
 * pool run (wake, join) costs a few microseconds, about what ~64K
 * multiply-adds take on one core (tiny models: a 260K-parameter model's
 * 64 x 64 products). Which thread computes a row never changes it. */
#define WG_CPU_SOLO_MACS 65536

static wg_cpu_kernels_t s_kern;       /* kernels in use */
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static bool s_cpu_has(const char *level) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(level, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    if (strcmp(level, "avx512") == 0)
        return s_cpu_has("avx2") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    return strcmp(level, "scalar") == 0;
}

static bool s_select(const char *level) {
    if (!s_cpu_has(level)) return false;
    memset(&s_kern, 0, sizeof s_kern);
#if defined(__x86_64__)
    if (strcmp(level, "avx512") == 0) {
        wg_cpu_kernels_avx512(&s_kern);
        return true;
    }
    if (strcmp(level, "avx2") == 0) {
        wg_cpu_kernels_avx2(&s_kern);
        return true;
    }
#endif
    s_kern.name = "scalar";
    return true;
}

static void s_auto(void) {
    const char *env = getenv("WAGGLE_SIMD");
    if (env && *env && s_select(env)) return;
    if (s_select("avx512")) return;
    if (s_select("avx2")) return;
    s_select("scalar");
}

bool wg_cpu_force_simd(const char *level) {
    pthread_once(&s_once, s_auto);
    if (!level) {
        s_auto();
        return true;
    }
    return s_select(level);
}

const wg_cpu_kernels_t *wg_cpu_kernels(void) {
    pthread_once(&s_once, s_auto);
    return &s_kern;
}

const char *wg_cpu_simd_name(void) {
    pthread_once(&s_once, s_auto);
    return s_kern.name;
}

typedef struct {
    const wg_type_traits_t *tr;  /* weight type traits */
    const uint8_t *W;            /* [N][wrow] weight rows */
    size_t wrow;                 /* bytes per weight row */
    int64_t N, K, M;             /* shapes */
    const float *X;              /* [M][K] activations */
    float *Y;                    /* [M][N] output */
    wg_cpu_quant_fn quant;       /* activation quantizer (NULL: X used as is) */
    uint8_t *xq;                 /* [M][xrow] quantized activations */
    size_t xrow;                 /* bytes per quantized activation row */
    wg_cpu_vdot_fn vdot;         /* SIMD multi-row kernel, or NULL for the ref vec_dot */
    wg_cpu_tile_fn tile;         /* tile kernel (preferred), or NULL */
    wg_cpu_prep_fn prep;         /* activation preparation for tile */
    wg_cpu_qprep_fn qprep;       /* quant + prep in one pass (tile path), or NULL */
    wg_cpu_gemv_fn gemv;         /* row kernel for M = 1 (preferred there), or NULL */
    uint8_t *xp;                 /* [M][xps] prepared activations (tile path) */
    size_t xps;                  /* bytes per prepared activation row */
    struct s_qphase *qp;         /* rows to quantize first in the product's run, or NULL */
    struct wg_lanes *lanes;      /* tile claims (tile kernels at M > 1), or NULL */
    /* The claim counter on a line of its own: every claim writes it, and
     * the fields above are read by both threads on every tile. */
    _Alignas(64) _Atomic int64_t next_tile; /* next tile of WG_CPU_NB weight rows to hand out */
} s_mm;

/* ---- quantizing the activation rows ----
 * Rows (of every activation copy a product run needs) are taken from lanes
 * in grabs of up to a quarter of a thread's share (one shared counter
 * bumped per row cost more than the rows themselves), counted done, and each
 * thread waits for the count before going on. At M > 1 this runs at the
 * start of the product's own pool run (it used to be a pool run of its own: a
 * wake-up and a join for a few microseconds of work). A thread that joins
 * late finds the rows taken and waits only for those in hand; one that never
 * joins (wg_pool_run_any) leaves them to the others. With one row or no
 * pool the caller runs it alone first. Which thread quantizes a row never
 * changes its bytes. */
typedef struct s_qphase {
    s_mm *q;                     /* [nq] activation copies to fill */
    int nq;
    int64_t M;
    wg_lanes_t lanes;            /* units u = m * nq + copy, row-major */
    _Alignas(64) _Atomic int64_t done; /* rows written */
} s_qphase;

/* nth: the threads of the run that will do it (1 on the caller alone). */
static void s_qphase_init(s_qphase *qp, s_mm *q, int nq, int64_t M, int nth) {
    qp->q = q;
    qp->nq = nq;
    qp->M = M;
    wg_lanes_init(&qp->lanes, M * nq, nth);
    atomic_init(&qp->done, 0);
}

/* Quantize activation row x[k] into xq and, with prep (tile kernels), its
 * prepared copy into xp: in one pass where the type has qprep. */
static void s_quant_prep_row(wg_cpu_quant_fn quant, wg_cpu_prep_fn prep, wg_cpu_qprep_fn qprep, const float *x,
                             uint8_t *xq, uint8_t *xp, int64_t k) {
    if (prep && qprep) {
        qprep(x, xq, xp, k);
        return;
    }
    quant(x, xq, k);
    if (prep) prep(xq, xp, k);
}

/* Rows are claimed from lanes (thread i starts at row ~i*M/nth), so a row
 * is usually quantized on the core whose row pass (residual + norm, see
 * engine/model/wg_backend_cpu.c s_par) just wrote it: that measured ~3%
 * faster c=32 decode than rows handed out from one counter. */
static void s_qphase_run(s_qphase *qp, int ith, int nth) {
    const int64_t total = qp->M * qp->nq;
    const int64_t grab = qp->M / (4 * (int64_t)nth) > 1 ? qp->M / (4 * (int64_t)nth) : 1;
    int64_t u0, k;
    while ((k = wg_lanes_claim(&qp->lanes, ith, grab, NULL, NULL, &u0)) > 0) {
        const int64_t u1 = u0 + k;
        for (int64_t u = u0; u < u1; u++) {
            const s_mm *c = &qp->q[u % qp->nq];
            const int64_t m = u / qp->nq;
            s_quant_prep_row(c->quant, c->tile ? c->prep : NULL, c->qprep, c->X + m * c->K,
                             c->xq + (size_t)m * c->xrow, c->tile ? c->xp + (size_t)m * c->xps : NULL, c->K);
        }
        atomic_fetch_add_explicit(&qp->done, u1 - u0, memory_order_release);
    }
    int spins = 0;
    while (atomic_load_explicit(&qp->done, memory_order_acquire) < total) {
        if (++spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

/* Set up the quantizing phase of a product run over pool: inside the run
 * (returned, for the run's workers) at M > 1 with a pool, else done now on
 * the caller alone (NULL returned). */
static s_qphase *s_qphase_start(s_qphase *qp, s_mm *q, int nq, int64_t M, wg_pool_t *pool) {
    const bool in_run = M > 1 && pool;
    s_qphase_init(qp, q, nq, M, in_run ? wg_pool_size(pool) : 1);
    if (in_run) return qp;
    s_qphase_run(qp, 0, 1);
    return NULL;
}

/* One tile: weight rows [nb, ne) against every activation row. */
static void s_dot_tile(const s_mm *c, int64_t nb, int64_t ne) {
    float s[WG_CPU_MR];
    for (int64_t m = 0; m < c->M; m += WG_CPU_MR) {
        const int nr = (int)(c->M - m < WG_CPU_MR ? c->M - m : WG_CPU_MR);
        const uint8_t *xq = c->xq + (size_t)m * c->xrow;
        for (int64_t n = nb; n < ne; n++) {
            const uint8_t *w = c->W + (size_t)n * c->wrow;
            if (c->vdot) {
                c->vdot(c->K, w, xq, c->xrow, nr, s);
            } else {
                for (int r = 0; r < nr; r++)
                    s[r] = c->tr->vec_dot(c->K, w, xq + (size_t)r * c->xrow);
            }
            for (int r = 0; r < nr; r++) c->Y[(m + r) * c->N + n] = s[r];
        }
    }
}

/* Guided claims of rows for row kernels (M = 1): a claim takes 1/(2*nth) of
 * what is left of rows [base, end) (at least WG_CPU_GEMV_RUN), so the first
 * claims are long single streams for the hardware prefetcher and the last
 * ones short, and threads finish together. *nb gets the first row claimed
 * (relative to base); returns the count, 0 when nothing is left. */
static int64_t s_claim_rows(_Atomic int64_t *next, int64_t base, int64_t end, int nth, int64_t *nb) {
    int64_t cur = atomic_load_explicit(next, memory_order_relaxed);
    for (;;) {
        if (cur >= end) return 0;
        int64_t take = (end - cur) / (2 * (int64_t)nth);
        if (take < WG_CPU_GEMV_RUN) take = WG_CPU_GEMV_RUN;
        if (take > end - cur) take = end - cur;
        if (atomic_compare_exchange_weak_explicit(next, &cur, cur + take, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *nb = cur - base;
            return take;
        }
    }
}

/* Tiles of a tile-kernel product. */
static int64_t s_tiles(const s_mm *c) {
    const int64_t tn = s_kern.tile_n;
    return (c->N + tn - 1) / tn;
}

/* Claims of tile-kernel work. The tiles of a run (one product, or several
 * products' tiles as one range [0, last)) are handed out as "units": each
 * of the first `head` tiles is one unit, each of the last last - head tiles
 * two, its activation rows split in halves. Claims of head tiles are runs of
 * up to S_RUN_CAP consecutive tiles (a tile kernel prefetches the start of
 * the next tile in memory, which is then its own next tile, not usually the
 * other thread's), shorter as a lane empties — half of what is left in it
 * (see s_claim_units); the halves at the end let threads finish within
 * about half a tile of each
 * other instead of a whole one (a step's products end ~4 us apart each at
 * M = 32). An output row's numbers do not depend on which other activation
 * rows share its tile call (the kernel keeps one accumulator per row), so a
 * split tile gives the bits of a whole one. */
typedef struct {
    int64_t last, head;  /* tiles of the run; tiles claimed whole */
    int64_t mh;          /* rows of the first half of a split tile (M when none is split) */
} s_units;

/* At least this many activation rows before end tiles are split. */
#define S_SPLIT_MIN_M 8

static s_units s_units_of(int64_t last, int64_t M, int nth) {
    s_units u = {.last = last, .head = last, .mh = M};
    if (nth > 1 && M >= S_SPLIT_MIN_M) {
        u.head = last > nth ? last - nth : 0;
        u.mh = (M / 2 + 3) / 4 * 4; /* whole 4-row groups in the first half */
    }
    return u;
}

/* Unit index of tile t. */
static int64_t s_unit(const s_units *u, int64_t t) { return t <= u->head ? t : u->head + 2 * (t - u->head); }

/* Claims of units come from per-thread lanes (wg_lanes_t) rather than one
 * shared counter: every claim on a shared counter moved its cache line
 * between the cores (~2% of a c=32 decode step went to those exchanges).
 * Claims never straddle a product (seg) or the split tiles. */

/* Units per claim from a lane, at most. A claim is a locked instruction,
 * which waits for the tile kernel's output stores to drain: with runs of
 * 4 (the cap before) it took 2.3% of a c=32 step, with half the lane (capped here)
 * 0.8%. The cap bounds what a thread descheduled right after a claim holds
 * up. */
#define S_RUN_CAP 16

void wg_lanes_init(wg_lanes_t *l, int64_t n, int nth) {
    WG_ASSERT(n >= 0 && n < ((int64_t)1 << 31));
    l->n = nth < 1 ? 1 : nth < WG_LANES ? nth : WG_LANES;
    for (int i = 0; i < l->n; i++) {
        const uint64_t lo = (uint64_t)(n * i / l->n), hi = (uint64_t)(n * (i + 1) / l->n);
        atomic_init(&l->lane[i].w, lo | hi << 32);
    }
}

int64_t wg_lanes_claim(wg_lanes_t *l, int ith, int64_t cap, wg_lanes_clip_fn clip, const void *arg, int64_t *u0) {
    const int own = ith % l->n;
    for (int k = 0; k < l->n; k++) {
        const int v = (own + k) % l->n;
        uint64_t cur = atomic_load_explicit(&l->lane[v].w, memory_order_relaxed);
        for (;;) {
            const int64_t lo = (int64_t)(cur & 0xffffffffu), hi = (int64_t)(cur >> 32);
            if (lo >= hi) break;
            int64_t take = (hi - lo) / 2;
            if (take > cap) take = cap;
            if (take < 1) take = 1;
            const bool back = k != 0; /* others' lanes from the back */
            if (clip) take = clip(arg, back ? hi - 1 : lo, back, hi - lo, take);
            const int64_t a = back ? hi - take : lo;
            const uint64_t nw = back ? (uint64_t)lo | (uint64_t)(hi - take) << 32 : (uint64_t)(lo + take) | (uint64_t)hi << 32;
            if (atomic_compare_exchange_weak_explicit(&l->lane[v].w, &cur, nw, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *u0 = a;
                return take;
            }
        }
    }
    return 0;
}

/* The products of a run as unit ranges: segment p is [seg[p], seg[p + 1]). */
typedef struct {
    const s_units *u;
    int64_t seg[WG_K_MM_MAX + 1];
    int n;
} s_segs;

static void s_segs_init(s_segs *sg, const s_units *u, const int64_t *first_tile, int n) {
    sg->u = u;
    sg->n = n;
    for (int p = 0; p <= n; p++) sg->seg[p] = s_unit(u, first_tile[p]);
}

/* Segment of unit x. */
static int s_seg_of(const s_segs *sg, int64_t x) {
    int p = 0;
    while (p + 1 < sg->n && x >= sg->seg[p + 1]) p++;
    return p;
}

/* Claims stay inside one segment, and split tiles go one at a time. */
static int64_t s_seg_clip(const void *arg, int64_t x, bool back, int64_t left, int64_t take) {
    const s_segs *sg = arg;
    const int sp = s_seg_of(sg, x);
    if (x >= sg->u->head) return 1;
    if (take > left) take = left;
    if (back) {
        if (take > x + 1 - sg->seg[sp]) take = x + 1 - sg->seg[sp];
    } else {
        if (take > sg->u->head - x) take = sg->u->head - x;
        if (take > sg->seg[sp + 1] - x) take = sg->seg[sp + 1] - x;
    }
    return take;
}

/* Claim for thread ith: units [*x0, *x0 + count) of segment *p, or 0 when
 * no lane has any left. */
static int64_t s_claim_units(wg_lanes_t *l, const s_segs *sg, int ith, int *p, int64_t *x0) {
    const int64_t n = wg_lanes_claim(l, ith, S_RUN_CAP, s_seg_clip, sg, x0);
    if (n > 0) *p = s_seg_of(sg, *x0);
    return n;
}

/* Lanes of the units s_units_of cuts from `tiles` tiles at M rows for the
 * threads of pool (the split its workers recompute). */
static void s_tile_lanes_init(wg_lanes_t *l, int64_t tiles, int64_t M, wg_pool_t *pool) {
    const int nth = pool ? wg_pool_size(pool) : 1;
    const s_units u = s_units_of(tiles, M, nth);
    wg_lanes_init(l, s_unit(&u, u.last), nth);
}

/* Tiles of units [x0, x0 + n) (within one segment): *t0 the first tile
 * (from the run's start), *half -1 for whole tiles or the half of a split
 * one; returns the tile count. */
static int64_t s_units_tiles(const s_units *u, int64_t x0, int64_t n, int64_t *t0, int *half) {
    if (x0 < u->head) {
        *t0 = x0;
        *half = -1;
        return n;
    }
    *t0 = u->head + (x0 - u->head) / 2;
    *half = (int)((x0 - u->head) % 2);
    return 1;
}

/* Tiles [t0, t0 + nt) of a tile-kernel product: their weight rows against
 * all M prepared activation rows, or (half 0 / 1) rows [0, mh) / [mh, M). */
static void s_tile_span(const s_mm *c, int64_t t0, int64_t nt, int half, int64_t mh) {
    const int64_t tn = s_kern.tile_n;
    const int64_t t_end = t0 + nt;
    const int64_t row_end = t_end * tn < c->N ? t_end * tn : c->N;
    const int64_t m0 = half == 1 ? mh : 0, m1 = half == 0 ? mh : c->M;
    for (int64_t t = t0; t < t_end; t++) {
        const int64_t nb = t * tn;
        const int nw = (int)(c->N - nb < tn ? c->N - nb : tn);
        c->tile(c->K, c->W + (size_t)nb * c->wrow, c->wrow, nw, c->W + (size_t)row_end * c->wrow,
                c->xp + (size_t)m0 * c->xps, c->xps, m1 - m0, c->Y + m0 * c->N + nb, c->N);
    }
}

/* Work is claimed (tiles from lanes, rows for the row kernels and float
 * tiles from a shared counter) rather than split statically: on a loaded
 * machine a descheduled worker then delays one claim, not half the product.
 * Which thread computes a tile never changes its numbers. */
static void s_dot_rows(void *arg, int ith, int nth) {
    s_mm *c = arg;
    if (c->qp) s_qphase_run(c->qp, ith, nth);
    if (c->gemv) {
        int64_t nb, nw;
        while ((nw = s_claim_rows(&c->next_tile, 0, c->N, nth, &nb)) > 0)
            c->gemv(c->K, c->W + (size_t)nb * c->wrow, c->wrow, nw, c->xp, c->Y + nb);
        return;
    }
    if (c->tile) {
        const s_units u = s_units_of(s_tiles(c), c->M, nth);
        const int64_t first[2] = {0, u.last};
        s_segs sg;
        s_segs_init(&sg, &u, first, 1);
        int p, half;
        int64_t x0, n, t0;
        while ((n = s_claim_units(c->lanes, &sg, ith, &p, &x0)) > 0) {
            const int64_t nt = s_units_tiles(&u, x0, n, &t0, &half);
            s_tile_span(c, t0, nt, half, u.mh);
        }
        return;
    }
    const int64_t n_tiles = (c->N + WG_CPU_NB - 1) / WG_CPU_NB;
    for (;;) {
        const int64_t t = atomic_fetch_add_explicit(&c->next_tile, 1, memory_order_relaxed);
        if (t >= n_tiles) break;
        const int64_t nb = t * WG_CPU_NB;
        s_dot_tile(c, nb, nb + WG_CPU_NB < c->N ? nb + WG_CPU_NB : c->N);
    }
}

/* Activation buffer layout of both entry points: M quantized rows of type
 * vt padded to 64 bytes, then (row kernels and tiles) M prepared rows. */
static size_t s_xq_bytes(wg_type_t vt, int64_t K, int64_t M) {
    return (wg_row_size(vt, K) * (size_t)M + 63) / 64 * 64;
}

/* Whether a product of wt over K with M activation rows can run from one
 * shared prepared copy of the activations: the tile kernel (and, at M = 1,
 * the row kernel) with the quantizer and prep wg_k_matmul_cpu would use, so
 * the outputs are bitwise the same. */
static bool s_prepared_ok(wg_type_t wt, int64_t K, int64_t M) {
    const wg_type_traits_t *tr = wg_type_traits(wt);
    if (!tr || !tr->supported || K % tr->blck_size != 0) return false;
    const wg_type_t vt = tr->vec_dot_type;
    return (M > 1 || s_kern.gemv[wt]) && s_kern.tile[wt] && s_kern.vdot_x[wt] == vt && s_kern.prep[vt] &&
           s_kern.quant[vt];
}

void wg_k_quant_row(wg_type_t vt, const float *x, void *y, int64_t k) {
    pthread_once(&s_once, s_auto);
    const wg_type_traits_t *tr = wg_type_traits(vt);
    WG_ASSERT(tr && tr->from_float && k % tr->blck_size == 0);
    (s_kern.quant[vt] ? s_kern.quant[vt] : tr->from_float)(x, y, k);
}

/* Quantize and prepare one activation row x[K] as type vt into xq. */
static void s_prep_row(wg_type_t vt, const float *x, int64_t K, uint8_t *xq) {
    s_quant_prep_row(s_kern.quant[vt], s_kern.prep[vt], s_kern.qprep[vt], x, xq, xq + s_xq_bytes(vt, K, 1), K);
}

wg_status wg_k_matmul_cpu(wg_pool_t *pool, wg_type_t wt, const void *W, int64_t N, int64_t K,
                          const float *X, int64_t M, float *Y) {
    WG_ASSERT(N >= 0 && K >= 0 && M >= 0);
    WG_ASSERT((W && X && Y) || N == 0 || M == 0);
    pthread_once(&s_once, s_auto);
    const wg_type_traits_t *tr = wg_type_traits(wt);
    if (!tr || !tr->supported || !tr->vec_dot)
        return wg_error(WG_ERR_UNSUPPORTED, "wg_k_matmul_cpu: no kernel for type %d (%s)",
                        (int)wt, tr && tr->name ? tr->name : "?");
    WG_ASSERT(K % tr->blck_size == 0);
    if (N == 0 || M == 0) return WG_OK;
    if (N * K * M < WG_CPU_SOLO_MACS) pool = NULL;
    const wg_type_t vt = tr->vec_dot_type;
    const wg_type_traits_t *vtr = wg_type_traits(vt);
    if (!vtr || (vt != WG_TYPE_F32 && !vtr->from_float))
        return wg_error(WG_ERR_UNSUPPORTED,
                        "wg_k_matmul_cpu: no quantizer for activation type %d of %s", (int)vt,
                        tr->name);

    s_mm c = {
        .tr = tr, .W = W, .wrow = wg_row_size(wt, K), .N = N, .K = K, .M = M, .X = X, .Y = Y,
        .vdot = s_kern.vdot_x[wt] == tr->vec_dot_type ? s_kern.vdot[wt] : NULL,
    };
    if (s_kern.tile[wt] && s_kern.vdot_x[wt] == vt && s_kern.prep[vt]) {
        c.tile = s_kern.tile[wt];
        c.prep = s_kern.prep[vt];
        c.qprep = s_kern.qprep[vt];
        if (M == 1 && s_kern.gemv[wt]) c.gemv = s_kern.gemv[wt];
    }
    atomic_init(&c.next_tile, 0);
    wg_lanes_t lanes;
    if (c.tile && !c.gemv) {
        s_tile_lanes_init(&lanes, s_tiles(&c), M, pool);
        c.lanes = &lanes;
    }
    uint8_t *buf = NULL;
    s_qphase qp;
    if (vt == WG_TYPE_F32) {
        c.xq = (uint8_t *)(uintptr_t)X;  /* read only: no quantizer runs */
        c.xrow = (size_t)K * sizeof(float);
    } else {
        c.quant = s_kern.quant[vt] ? s_kern.quant[vt] : vtr->from_float;
        c.xrow = wg_row_size(vt, K);
        c.xps = c.tile ? wg_cpu_xprep_size(vt, K) : 0;
        const size_t xq_bytes = s_xq_bytes(vt, K, M);
        buf = aligned_alloc(64, xq_bytes + c.xps * (size_t)M + 64);
        if (!buf)
            return wg_error(WG_ERR_NOMEM, "wg_k_matmul_cpu: %zu bytes of activations",
                            xq_bytes + c.xps * (size_t)M);
        c.xq = buf;
        c.xp = buf + xq_bytes;
        c.qp = s_qphase_start(&qp, &c, 1, M, pool);
    }
    wg_pool_run_any(pool, s_dot_rows, &c);
    free(buf);
    return WG_OK;
}

/* ---- several products of the same activations in one pool run ----
 * M = 1: the row kernels over one range of all products' rows. M > 1: the
 * activations quantized and prepared once per activation type, then the
 * products' tile runs handed out from one counter. Either way each output is
 * what a separate wg_k_matmul_cpu call gives, bit for bit. */

typedef struct {
    s_mm mm[WG_K_MM_MAX];        /* one per product (its xp points into buf) */
    int64_t first[WG_K_MM_MAX + 1]; /* first row (M = 1) / tile (M > 1) of each product in one
                                     * range; first[n] = total */
    int n;
    s_qphase *qp;                /* rows to quantize first (M > 1), or NULL */
    wg_lanes_t lanes;            /* tile claims (M > 1) */
    _Alignas(64) _Atomic int64_t next; /* next row of that range to hand out (M = 1; a line of its own) */
} s_mmn;

static void s_tile_runs_n(void *arg, int ith, int nth) {
    s_mmn *c = arg;
    if (c->qp) s_qphase_run(c->qp, ith, nth);
    /* tiles of all products as one range; claims never straddle two */
    const s_units u = s_units_of(c->first[c->n], c->mm[0].M, nth);
    s_segs sg;
    s_segs_init(&sg, &u, c->first, c->n);
    int p, half;
    int64_t x0, n, t0;
    while ((n = s_claim_units(&c->lanes, &sg, ith, &p, &x0)) > 0) {
        const int64_t nt = s_units_tiles(&u, x0, n, &t0, &half);
        s_tile_span(&c->mm[p], t0 - c->first[p], nt, half, u.mh);
    }
}

static void s_dot_runs_n(void *arg, int ith, int nth) {
    (void)ith;
    s_mmn *c = arg;
    /* rows of all products as one range; claims never straddle two */
    for (int p = 0; p < c->n; p++) {
        const s_mm *m = &c->mm[p];
        int64_t nb, nw;
        while ((nw = s_claim_rows(&c->next, c->first[p], c->first[p + 1], nth, &nb)) > 0)
            m->gemv(m->K, m->W + (size_t)nb * m->wrow, m->wrow, nw, m->xp, m->Y + nb);
    }
}

wg_status wg_k_matmul_cpu_n(wg_pool_t *pool, int n, const wg_k_mm_t *mm, int64_t K, const float *X,
                            int64_t M) {
    WG_ASSERT(n >= 0 && n <= WG_K_MM_MAX && K >= 0 && M >= 0);
    pthread_once(&s_once, s_auto);
    bool fused = M >= 1 && n > 1;
    for (int i = 0; i < n && fused; i++) fused = s_prepared_ok(mm[i].type, K, M) && mm[i].N > 0;
    int64_t macs = 0;
    for (int i = 0; i < n; i++) macs += mm[i].N * K * M;
    if (macs < WG_CPU_SOLO_MACS) pool = NULL;
    if (!fused) {
        for (int i = 0; i < n; i++) {
            wg_status st = wg_k_matmul_cpu(pool, mm[i].type, mm[i].W, mm[i].N, K, X, M, mm[i].Y);
            if (st) return st;
        }
        return WG_OK;
    }
    /* One quantized + prepared copy of X per distinct activation type. */
    wg_type_t vts[WG_K_MM_MAX];
    size_t off[WG_K_MM_MAX], total = 0;
    int nv = 0;
    for (int i = 0; i < n; i++) {
        const wg_type_t vt = wg_type_traits(mm[i].type)->vec_dot_type;
        int j = 0;
        while (j < nv && vts[j] != vt) j++;
        if (j == nv) {
            vts[nv] = vt;
            off[nv] = total;
            total += s_xq_bytes(vt, K, M) + wg_cpu_xprep_size(vt, K) * (size_t)M;
            nv++;
        }
    }
    uint8_t *buf = aligned_alloc(64, total + 64);
    if (!buf) return wg_error(WG_ERR_NOMEM, "wg_k_matmul_cpu_n: %zu bytes of activations", total);
    s_mm q[WG_K_MM_MAX];
    for (int j = 0; j < nv; j++) {
        /* every product has a tile kernel (s_prepared_ok): quantize and prepare */
        uint8_t *xq = buf + off[j];
        q[j] = (s_mm){.X = X, .K = K, .M = M, .quant = s_kern.quant[vts[j]], .xq = xq,
                      .xrow = wg_row_size(vts[j], K), .tile = s_kern.tile[mm[0].type], .prep = s_kern.prep[vts[j]],
                      .qprep = s_kern.qprep[vts[j]],
                      .xp = xq + s_xq_bytes(vts[j], K, M), .xps = wg_cpu_xprep_size(vts[j], K)};
    }
    s_qphase qp;
    s_mmn c;
    memset(&c, 0, sizeof c);
    c.qp = s_qphase_start(&qp, q, nv, M, pool);
    c.n = n;
    for (int i = 0; i < n; i++) {
        const wg_type_t vt = wg_type_traits(mm[i].type)->vec_dot_type;
        int j = 0;
        while (vts[j] != vt) j++;
        s_mm *m = &c.mm[i];
        m->W = mm[i].W;
        m->wrow = wg_row_size(mm[i].type, K);
        m->N = mm[i].N;
        m->K = K;
        m->M = M;
        m->Y = mm[i].Y;
        m->gemv = s_kern.gemv[mm[i].type];
        m->tile = s_kern.tile[mm[i].type];
        m->xp = buf + off[j] + s_xq_bytes(vt, K, M);
        m->xps = wg_cpu_xprep_size(vt, K);
        c.first[i + 1] = c.first[i] + (M == 1 ? m->N : s_tiles(m));
    }
    atomic_init(&c.next, 0);
    if (M > 1) s_tile_lanes_init(&c.lanes, c.first[n], M, pool);
    wg_pool_run_any(pool, M == 1 ? s_dot_runs_n : s_tile_runs_n, &c);
    free(buf);
    return WG_OK;
}

/* ---- row products from inside a running pool job (M = 1) ----
 * The row kernels and quantizers of wg_k_matmul_cpu's M = 1 path, taken
 * apart so that a caller that already runs a pool job (a whole decode step
 * as one job, engine/model/wg_backend_cpu.c) can split products between its
 * threads without a pool run per product. */

size_t wg_k_gemv_xsize(wg_type_t wt, int64_t K) {
    pthread_once(&s_once, s_auto);
    /* the conditions under which wg_k_matmul_cpu(_n) runs the row kernel
     * at M = 1, so the rows come out bitwise as they do there */
    if (K <= 0 || !s_prepared_ok(wt, K, 1)) return 0;
    const wg_type_t vt = wg_type_traits(wt)->vec_dot_type;
    return s_xq_bytes(vt, K, 1) + wg_cpu_xprep_size(vt, K);
}

void wg_k_gemv_prep(wg_type_t wt, const float *x, int64_t K, void *xbuf) {
    s_prep_row(wg_type_traits(wt)->vec_dot_type, x, K, xbuf);
}

void wg_k_gemv_rows(wg_type_t wt, const void *W, int64_t K, int64_t nb, int64_t nw, const void *xbuf, float *y) {
    const wg_type_t vt = wg_type_traits(wt)->vec_dot_type;
    const size_t wrow = wg_row_size(wt, K);
    s_kern.gemv[wt](K, (const uint8_t *)W + (size_t)nb * wrow, wrow, nw,
                    (const uint8_t *)xbuf + s_xq_bytes(vt, K, 1), y);
}
