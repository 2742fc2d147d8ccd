/* wg_sampler — per-sequence token sampling.
 *
 * Order of operations for one token (each step is skipped when off):
 *   1. penalties   over the last `repeat_last_n` accepted tokens (prompt
 *                  included): llama.cpp repetition penalty (positive logits
 *                  divided, non-positive multiplied, once per distinct token),
 *                  then OpenAI presence/frequency: l -= presence*[c>0] + frequency*c
 *   2. logit bias  l += bias (-INFINITY bans the token)
 *   -- temperature 0 stops here: argmax, lowest id on exact ties; no RNG draw.
 *   3. top-k       keep the k largest (ties broken by lowest id)
 *   4. temperature l /= T
 *   5. softmax     over the survivors
 *   6. top-p       keep the smallest most-likely prefix whose mass reaches p
 *                  (always at least one token)
 *   7. min-p       keep tokens with p >= min_p * p_max
 *   8. draw        one uniform double from the sequence's own xoshiro256**
 *                  stream, inverse CDF over the renormalised survivors
 *
 * Cost: a few O(n_vocab) passes and at most one exp per token of the
 * vocabulary (our own branch-free exp, 4 lanes with vector extensions), plus
 * O(n_vocab log k) for top-k (a size-k heap, never a full sort). Top-p without
 * top-k first looks for the nucleus in the best 256 tokens; only when it is
 * wider does it heapify everything (O(n)) and pop the m tokens of the nucleus
 * (O(m log n)). Plain temperature and min-p need no scratch: the logits are
 * overwritten by their weights, min-p is the threshold w >= min_p (the best
 * token has w = 1), and the draw picks a block by its sum, then scans it.
 *
 * Logprobs are the log-softmax of the step-2 logits divided by T (T = 1 for
 * greedy) over the whole vocabulary, i.e. before truncation by top-k/top-p/
 * min-p, so a chosen token's logprob does not depend on the truncation
 * settings (banned tokens have -inf).
 *
 * Determinism: the RNG is a private xoshiro256** seeded through splitmix64,
 * one draw per sampled token (none for greedy); exp is our own code and sums
 * have a fixed association, so the same seed and logits give the same tokens
 * on any machine and whatever else runs in the batch.
 *
 * Side effect: `logits` is scratch. After a call it holds the penalised and
 * biased logits, or (temperature/min-p path) their unnormalised weights. */
#include "wg_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

typedef struct {
    float v;     /* logit (then, after softmax, the probability) */
    int32_t id;  /* token id */
} s_cand_t;

struct wg_sampler {
    wg_sampling_params_t p;   /* validated copy; logit_bias borrowed */
    int32_t n_vocab;          /* logits length */
    uint64_t rng[4];          /* xoshiro256** state */
    int32_t *hist;            /* [n_hist] accepted tokens, oldest first */
    size_t n_hist;            /* tokens in hist */
    size_t cap_hist;          /* allocated entries of hist */
    int32_t *win;             /* [repeat window] scratch copy for penalties */
    size_t cap_win;           /* allocated entries of win */
    s_cand_t *cand;           /* [cap_cand] scratch candidates (top-k / top-p) */
    size_t cap_cand;          /* allocated entries of cand */
    wg_json_guide_t *json;    /* JSON mode: owned guide, or NULL */
};

/* ---- PRNG: splitmix64 for seeding, xoshiro256** for the stream ---- */

static uint64_t s_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t s_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t s_next(uint64_t st[4]) {
    uint64_t out = s_rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = s_rotl(st[3], 45);
    return out;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double s_uniform(uint64_t st[4]) { return (double)(s_next(st) >> 11) * 0x1.0p-53; }

static void s_seed(uint64_t st[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) st[i] = s_splitmix64(&x);
    /* splitmix64 never yields four zero words from one seed, but be explicit */
    if (!(st[0] | st[1] | st[2] | st[3])) st[0] = 1;
}

/* ---- exp for x <= 0, branch-free so the compiler vectorises the loops ----
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor for e^r
 * (relative error < 3e-7), 2^n by building the exponent bits. Results below
 * e^-87 flush to 0 (they are < 1.7e-38 of the top token's weight). Being our
 * own code it gives the same bits on every machine, unlike libm's expf. */
static inline float s_exp_neg(float x) {
    const float lo = -87.0f;
    float xc = x < lo ? lo : x;
    float t = xc * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest (|t| < 2^22) */
    float r = xc - n * 0.693145751953125f;     /* ln2 high part (exact product) */
    r = r - n * 1.428606765330187045e-06f;     /* ln2 low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float e = p * scale;
    return x < lo ? 0.0f : e;
}

/* The same computation on 4 lanes with GCC/clang vector extensions (SSE2 on
 * x86-64, NEON on arm64): bit-identical to s_exp_neg, lane by lane, because
 * every operation is the same IEEE float operation in the same order. */
typedef float s_v4f __attribute__((vector_size(16)));
typedef int32_t s_v4i __attribute__((vector_size(16)));
#define S_SPLAT(v) ((s_v4f){(v), (v), (v), (v)})

static inline s_v4f s_exp_neg4(s_v4f x) {
    const s_v4f lo = S_SPLAT(-87.0f);
    s_v4i under = x < lo; /* all-ones lanes where x < lo */
    s_v4f xc = (s_v4f)(((s_v4i)x & ~under) | ((s_v4i)lo & under));
    s_v4f t = xc * S_SPLAT(1.44269504088896341f);
    s_v4f n = (t + S_SPLAT(12582912.0f)) - S_SPLAT(12582912.0f);
    s_v4f r = xc - n * S_SPLAT(0.693145751953125f);
    r = r - n * S_SPLAT(1.428606765330187045e-06f);
    s_v4f p = S_SPLAT(1.0f / 720.0f);
    p = p * r + S_SPLAT(1.0f / 120.0f);
    p = p * r + S_SPLAT(1.0f / 24.0f);
    p = p * r + S_SPLAT(1.0f / 6.0f);
    p = p * r + S_SPLAT(0.5f);
    p = p * r + S_SPLAT(1.0f);
    p = p * r + S_SPLAT(1.0f);
    s_v4i bits = (__builtin_convertvector(n, s_v4i) + 127) << 23;
    s_v4f e = p * (s_v4f)bits;
    return (s_v4f)((s_v4i)e & ~under);
}

/* w[i] = s_exp_neg((l[i] - maxv) * inv_t) for i < n; w may equal l. */
static void s_exp_rows(const float *l, float *w, size_t n, float maxv, float inv_t) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s_v4f x;
        memcpy(&x, l + i, sizeof x);
        x = s_exp_neg4((x - S_SPLAT(maxv)) * S_SPLAT(inv_t));
        memcpy(w + i, &x, sizeof x);
    }
    for (; i < n; i++) w[i] = s_exp_neg((l[i] - maxv) * inv_t);
}

/* ---- parameters ---- */

wg_sampling_params_t wg_sampling_defaults(void) {
    wg_sampling_params_t p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.seed = 0;
    p.has_seed = false;
    p.n_logprobs = 0;
    p.logprobs = false;
    p.logit_bias = NULL;
    p.n_logit_bias = 0;
    return p;
}

static wg_status s_validate(const wg_sampling_params_t *p, int32_t n_vocab) {
    if (n_vocab <= 0) return wg_error(WG_ERR_INVAL, "n_vocab=%d must be > 0", (int)n_vocab);
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return wg_error(WG_ERR_RANGE, "temperature=%g must be finite and >= 0", (double)p->temperature);
    if (p->top_k < 0) return wg_error(WG_ERR_RANGE, "top_k=%d must be >= 0", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return wg_error(WG_ERR_RANGE, "top_p=%g must be in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return wg_error(WG_ERR_RANGE, "min_p=%g must be in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return wg_error(WG_ERR_RANGE, "repeat_penalty=%g must be finite and > 0", (double)p->repeat_penalty);
    if (p->repeat_last_n < -1)
        return wg_error(WG_ERR_RANGE, "repeat_last_n=%d must be >= -1", (int)p->repeat_last_n);
    if (!isfinite(p->presence_penalty))
        return wg_error(WG_ERR_RANGE, "presence_penalty=%g must be finite", (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return wg_error(WG_ERR_RANGE, "frequency_penalty=%g must be finite", (double)p->frequency_penalty);
    if (p->n_logprobs < 0 || p->n_logprobs > WG_MAX_TOP_LOGPROBS)
        return wg_error(WG_ERR_RANGE, "n_logprobs=%d must be in [0, %d]", (int)p->n_logprobs,
                        WG_MAX_TOP_LOGPROBS);
    if (p->n_logit_bias > 0 && !p->logit_bias)
        return wg_error(WG_ERR_INVAL, "logit_bias is NULL with n_logit_bias=%zu", p->n_logit_bias);
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        const wg_logit_bias_t *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return wg_error(WG_ERR_RANGE, "logit_bias[%zu].token=%d outside [0, %d)", i, (int)b->token,
                            (int)n_vocab);
        if (isnan(b->bias) || (isinf(b->bias) && b->bias > 0))
            return wg_error(WG_ERR_RANGE, "logit_bias[%zu].bias=%g for token %d must be finite or -inf",
                            i, (double)b->bias, (int)b->token);
    }
    return WG_OK;
}

wg_sampler_t *wg_sampler_new(const wg_sampling_params_t *p, int32_t n_vocab) {
    WG_ASSERT(p);
    if (s_validate(p, n_vocab) != WG_OK) return NULL;
    wg_sampler_t *s = calloc(1, sizeof *s);
    if (!s) {
        wg_error(WG_ERR_NOMEM, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    uint64_t seed = p->seed;
    if (!p->has_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)(uintptr_t)s;
        seed = s_splitmix64(&x);
    }
    s_seed(s->rng, seed);
    return s;
}

void wg_sampler_free(wg_sampler_t **sp) {
    if (!sp || !*sp) return;
    wg_sampler_t *s = *sp;
    free(s->hist);
    free(s->win);
    free(s->cand);
    wg_json_guide_free(&s->json);
    free(s);
    *sp = NULL;
}

/* True when the penalties need the token history at all. */
static bool s_penalties_on(const wg_sampler_t *s) {
    return s->p.repeat_last_n != 0 &&
           (s->p.repeat_penalty != 1.0f || s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f);
}

static wg_status s_accept(wg_sampler_t *s, const int32_t *ids, size_t n) {
    if (!s_penalties_on(s) || n == 0) return WG_OK;
    /* Keep only what the window can see: all of it for -1, else the last N. */
    size_t keep_max = s->p.repeat_last_n < 0 ? SIZE_MAX : (size_t)s->p.repeat_last_n;
    if (s->p.repeat_last_n > 0 && n >= keep_max) {
        ids += n - keep_max;
        n = keep_max;
        s->n_hist = 0;
    }
    if (s->n_hist + n > s->cap_hist) {
        if (s->p.repeat_last_n > 0 && s->n_hist + n > 2 * keep_max) {
            /* compact: drop what slid out of the window */
            size_t drop = s->n_hist + n - keep_max;
            if (drop > s->n_hist) drop = s->n_hist;
            memmove(s->hist, s->hist + drop, (s->n_hist - drop) * sizeof *s->hist);
            s->n_hist -= drop;
        }
        if (s->n_hist + n > s->cap_hist) {
            size_t cap = s->cap_hist ? s->cap_hist : 64;
            while (cap < s->n_hist + n) cap *= 2;
            if (s->p.repeat_last_n > 0 && cap < 2 * keep_max) cap = 2 * keep_max;
            int32_t *h = realloc(s->hist, cap * sizeof *h);
            if (!h) return wg_error(WG_ERR_NOMEM, "sampler: history of %zu tokens", cap);
            s->hist = h;
            s->cap_hist = cap;
        }
    }
    memcpy(s->hist + s->n_hist, ids, n * sizeof *ids);
    s->n_hist += n;
    return WG_OK;
}

void wg_sampler_accept_prompt(wg_sampler_t *s, const int32_t *ids, size_t n) {
    WG_ASSERT(s);
    WG_ASSERT(ids || n == 0);
    /* Out of memory here only weakens the penalties; the next sample reports it. */
    (void)s_accept(s, ids, n);
}

static int s_cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Step 1: penalties over the window, each distinct token once. */
static wg_status s_apply_penalties(wg_sampler_t *s, float *logits) {
    if (!s_penalties_on(s) || s->n_hist == 0) return WG_OK;
    size_t n = s->n_hist;
    if (s->p.repeat_last_n > 0 && n > (size_t)s->p.repeat_last_n) n = (size_t)s->p.repeat_last_n;
    const int32_t *src = s->hist + (s->n_hist - n);
    if (n > s->cap_win) {
        int32_t *w = realloc(s->win, n * sizeof *w);
        if (!w) return wg_error(WG_ERR_NOMEM, "sampler: penalty window of %zu tokens", n);
        s->win = w;
        s->cap_win = n;
    }
    memcpy(s->win, src, n * sizeof *src);
    qsort(s->win, n, sizeof *s->win, s_cmp_i32);
    const float rp = s->p.repeat_penalty, pp = s->p.presence_penalty, fp = s->p.frequency_penalty;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && s->win[j] == s->win[i]) j++;
        int32_t t = s->win[i];
        if (t >= 0 && t < s->n_vocab) {
            float l = logits[t];
            if (rp != 1.0f) l = l > 0.0f ? l / rp : l * rp;
            l -= pp + fp * (float)(j - i);
            logits[t] = l;
        }
        i = j;
    }
    return WG_OK;
}

/* a ranks before b: larger logit, then lower id. */
static inline bool s_better(s_cand_t a, s_cand_t b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

/* Min-heap on rank (worst at the root), for keeping the best k. */
static void s_sift_down_worst(s_cand_t *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && s_better(h[w], h[l])) w = l;
        if (r < n && s_better(h[w], h[r])) w = r;
        if (w == i) return;
        s_cand_t t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void s_sift_up_worst(s_cand_t *h, size_t i) {
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!s_better(h[par], h[i])) return;
        s_cand_t t = h[i]; h[i] = h[par]; h[par] = t;
        i = par;
    }
}

/* Max-heap on rank (best at the root), for popping the nucleus in order. */
static void s_sift_down_best(s_cand_t *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;
        if (l < n && s_better(h[l], h[b])) b = l;
        if (r < n && s_better(h[r], h[b])) b = r;
        if (b == i) return;
        s_cand_t t = h[i]; h[i] = h[b]; h[b] = t;
        i = b;
    }
}

static int s_cmp_cand(const void *a, const void *b) {
    s_cand_t x = *(const s_cand_t *)a, y = *(const s_cand_t *)b;
    return s_better(x, y) ? -1 : s_better(y, x) ? 1 : 0;
}

/* The best k finite logits into out[0..ret), sorted best first. O(n log k). */
static size_t s_top_k(const float *logits, int32_t n, s_cand_t *out, size_t k) {
    size_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        float v = logits[i];
        if (v == -INFINITY) continue;
        s_cand_t c = {v, i};
        if (m < k) {
            out[m] = c;
            s_sift_up_worst(out, m);
            m++;
        } else if (s_better(c, out[0])) {
            out[0] = c;
            s_sift_down_worst(out, m, 0);
        }
    }
    qsort(out, m, sizeof *out, s_cmp_cand);
    return m;
}

static wg_status s_reserve_cand(wg_sampler_t *s, size_t n) {
    if (n <= s->cap_cand) return WG_OK;
    s_cand_t *c = realloc(s->cand, n * sizeof *c);
    if (!c) return wg_error(WG_ERR_NOMEM, "sampler: %zu candidates", n);
    s->cand = c;
    s->cap_cand = n;
    return WG_OK;
}

/* Inverse-CDF draw over weights w[0..n) (unnormalised, total `sum`). */
static size_t s_draw_cand(uint64_t rng[4], const s_cand_t *c, size_t n, double sum) {
    double target = s_uniform(rng) * sum, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].v;
        if (target < acc) return i;
    }
    return n - 1; /* rounding: the last survivor */
}

/* Top-p without top-k first looks for the nucleus among the best this many
 * tokens (O(n log 256)); only a flatter distribution needs the full heap. */
#define S_NUCLEUS_GUESS 256

/* Softmax normaliser: sum of exp((l - max)/T) over the whole vocabulary. */
static double s_total(const wg_sampler_t *s, const float *logits, float maxv, float inv_t) {
    double a[8] = {0};
    float w[512];
    for (size_t i0 = 0; i0 < (size_t)s->n_vocab; i0 += 512) {
        size_t len = (size_t)s->n_vocab - i0 < 512 ? (size_t)s->n_vocab - i0 : 512;
        s_exp_rows(logits + i0, w, len, maxv, inv_t);
        for (size_t j = 0; j < len; j++) a[(i0 + j) & 7] += w[j]; /* same lanes as s_sum */
    }
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Length of the shortest best-first prefix of c[0..m) whose weight reaches
 * `need`; 0 when the whole of c[0..m) falls short. */
static size_t s_nucleus_prefix(const s_cand_t *c, size_t m, double need) {
    double acc = 0.0;
    for (size_t i = 0; i < m; i++) {
        acc += c[i].v;
        if (acc >= need) return i + 1;
    }
    return 0;
}

/* Top-p over the whole vocabulary by popping a max-heap of every finite token
 * until the nucleus (or the min-p bound) is reached. Survivors end in
 * s->cand[0..*m), best first, v = unnormalised probability. */
static wg_status s_nucleus_heap(wg_sampler_t *s, const float *logits, float maxv, float inv_t, double need,
                                size_t *m_out) {
    wg_status st = s_reserve_cand(s, (size_t)s->n_vocab);
    if (st) return st;
    size_t n_fin = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (logits[i] == -INFINITY) continue;
        s->cand[n_fin].v = logits[i];
        s->cand[n_fin].id = i;
        n_fin++;
    }
    for (size_t i = n_fin / 2; i-- > 0;) s_sift_down_best(s->cand, n_fin, i);
    /* Pop the best one at a time; each popped element lands in the slot the
     * heap just gave up, so the nucleus collects at the back, best last. */
    size_t heap_n = n_fin, m = 0;
    double acc = 0.0;
    const float pmin_thr = s->p.min_p; /* relative to p_max = exp(0) = 1 */
    while (heap_n > 0) {
        s_cand_t best = s->cand[0];
        float e = s_exp_neg((best.v - maxv) * inv_t);
        if (m > 0 && e < pmin_thr) break; /* min-p: nothing further qualifies */
        s->cand[0] = s->cand[--heap_n];
        s_sift_down_best(s->cand, heap_n, 0);
        s->cand[heap_n].v = e;
        s->cand[heap_n].id = best.id;
        m++;
        acc += e;
        if (acc >= need) break;
    }
    /* nucleus at [n_fin - m, n_fin), worst first: reverse, move to the front */
    s_cand_t *nuc = s->cand + (n_fin - m);
    for (size_t i = 0; i < m / 2; i++) {
        s_cand_t t = nuc[i];
        nuc[i] = nuc[m - 1 - i];
        nuc[m - 1 - i] = t;
    }
    memmove(s->cand, nuc, m * sizeof *nuc);
    *m_out = m;
    return WG_OK;
}

/* Steps 3-8 when top-k and/or top-p are on: survivors in rank order. Sets
 * *total to the full-vocabulary normaliser when it had to compute it. */
static wg_status s_sample_sorted(wg_sampler_t *s, const float *logits, float maxv, int32_t *tok, double *total) {
    const float inv_t = 1.0f / s->p.temperature;
    const double top_p = s->p.top_p, min_p = s->p.min_p;
    const bool topk = s->p.top_k > 0 && s->p.top_k < s->n_vocab;
    size_t k = topk ? (size_t)s->p.top_k : S_NUCLEUS_GUESS;
    if (k > (size_t)s->n_vocab) k = (size_t)s->n_vocab;
    wg_status st = s_reserve_cand(s, k);
    if (st) return st;
    size_t m = s_top_k(logits, s->n_vocab, s->cand, k); /* survivors in s->cand[0..m) */
    double sum = 0.0;
    for (size_t i = 0; i < m; i++) {
        s->cand[i].v = s_exp_neg((s->cand[i].v - maxv) * inv_t);
        sum += s->cand[i].v;
    }
    if (topk) {
        /* top-p over the renormalised top-k survivors */
        size_t keep = top_p < 1.0 ? s_nucleus_prefix(s->cand, m, top_p * sum) : 0;
        if (keep) m = keep;
    } else {
        *total = s_total(s, logits, maxv, inv_t);
        size_t keep = s_nucleus_prefix(s->cand, m, top_p * *total);
        if (keep) m = keep;
        else if (m == k) { /* the nucleus is wider than the guess */
            st = s_nucleus_heap(s, logits, maxv, inv_t, top_p * *total, &m);
            if (st) return st;
        } /* else every finite token is already here and rounding fell short: keep all */
    }
    /* min-p on the sorted survivors (probability relative to the best one) */
    if (min_p > 0.0 && m > 0) {
        double thr = min_p * s->cand[0].v;
        size_t keep = 1;
        while (keep < m && s->cand[keep].v >= thr) keep++;
        m = keep;
    }
    if (m == 0) return wg_error(WG_ERR_RANGE, "no candidate token left after filtering");
    sum = 0.0;
    for (size_t i = 0; i < m; i++) sum += s->cand[i].v;
    *tok = s->cand[s_draw_cand(s->rng, s->cand, m, sum)].id;
    return WG_OK;
}

/* Sum with 8 independent double accumulators: fixed association (the same
 * bits everywhere), but not bound by one add's latency. */
static double s_sum(const float *w, size_t n) {
    double a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += w[i + j];
    for (; i < n; i++) a[i & 7] += w[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#define S_MAX_BLOCKS 256

/* Steps 4-8 with only temperature and/or min-p: no scratch. The logits are
 * overwritten by their unnormalised probabilities exp((l - max)/T) (0 below
 * the min-p bound, which is e >= min_p since p_max has e = 1); *total gets the
 * full normaliser and *e_tok the chosen token's weight. The draw first picks a
 * block of tokens by its sum, then scans inside it. */
static int32_t s_sample_flat(wg_sampler_t *s, float *logits, float maxv, double *total, float *e_tok) {
    const float inv_t = 1.0f / s->p.temperature;
    const float thr = s->p.min_p;
    const size_t n = (size_t)s->n_vocab;
    s_exp_rows(logits, logits, n, maxv, inv_t);
    if (thr > 0.0f) {
        *total = s_sum(logits, n);
        for (size_t i = 0; i < n; i++) logits[i] = logits[i] >= thr ? logits[i] : 0.0f;
    }
    size_t bs = 4096;
    while ((n + bs - 1) / bs > S_MAX_BLOCKS) bs *= 2;
    size_t nb = (n + bs - 1) / bs;
    double bsum[S_MAX_BLOCKS], kept = 0.0;
    for (size_t b = 0; b < nb; b++) {
        size_t len = b + 1 < nb ? bs : n - b * bs;
        bsum[b] = s_sum(logits + b * bs, len);
        kept += bsum[b];
    }
    if (thr <= 0.0f) *total = kept; /* nothing was cut: the same sum */
    double target = s_uniform(s->rng) * kept, acc = 0.0;
    size_t b = 0;
    for (; b + 1 < nb; b++) {
        if (target < acc + bsum[b]) break;
        acc += bsum[b];
    }
    while (bsum[b] == 0.0 && b > 0) b--; /* rounding pushed past the last weighted block */
    size_t lo = b * bs, hi = b + 1 < nb ? lo + bs : n;
    int32_t last = -1;
    for (size_t i = lo; i < hi; i++) {
        float e = logits[i];
        if (e == 0.0f) continue;
        acc += e;
        last = (int32_t)i;
        if (target < acc) break;
    }
    *e_tok = logits[last];
    return last; /* >= 0: the chosen block has weight */
}

/* The max of x[0..n) and the lowest index holding it (-1 when every value
 * is -inf), as the scalar scan gives them, 8 lanes at a time; false (having
 * found nothing) when the CPU lacks AVX2 or some value is NaN, which the
 * scalar scan then names. A decode step samples every sequence over the
 * whole vocabulary, and the branchy scalar scan was ~1.5% of a 32-sequence
 * step. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static bool s_scan_avx2(const float *x, int32_t n, float *maxv, int32_t *arg) {
    const int32_t n8 = n / 8 * 8;
    __m256 m = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
    for (int32_t i = 0; i < n8; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m = _mm256_max_ps(m, v);
    }
    if (_mm256_movemask_ps(bad)) return false;
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float mx = -INFINITY;
    for (int l = 0; l < 8; l++)
        if (lanes[l] > mx) mx = lanes[l];
    for (int32_t i = n8; i < n; i++) {
        if (isnan(x[i])) return false;
        if (x[i] > mx) mx = x[i];
    }
    *maxv = mx;
    *arg = -1;
    if (mx == -INFINITY) return true;
    /* the first value equal to the max (+0 and -0 compare equal, as in the
     * scalar scan, which keeps the first zero) */
    const __m256 mv = _mm256_set1_ps(mx);
    int32_t i = 0;
    for (; i < n8; i += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), mv, _CMP_EQ_OQ));
        if (mask) {
            *arg = i + __builtin_ctz((unsigned)mask);
            return true;
        }
    }
    for (; i < n; i++)
        if (x[i] == mx) {
            *arg = i;
            return true;
        }
    return true; /* not reached: mx is one of the values */
}

static bool s_scan_fast(const float *x, int32_t n, float *maxv, int32_t *arg) {
    return __builtin_cpu_supports("avx2") && s_scan_avx2(x, n, maxv, arg);
}
#else
static bool s_scan_fast(const float *x, int32_t n, float *maxv, int32_t *arg) {
    (void)x, (void)n, (void)maxv, (void)arg;
    return false;
}
#endif

/* Max and argmax of the logits (lowest id on ties); NaN, +inf and an
 * all-banned row are errors. */
static wg_status s_scan(const wg_sampler_t *s, const float *logits, float *maxv_out, int32_t *arg_out) {
    float maxv = -INFINITY;
    int32_t arg = -1;
    if (!s_scan_fast(logits, s->n_vocab, &maxv, &arg)) {
        maxv = -INFINITY;
        arg = -1;
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float v = logits[i];
            if (v > maxv) { maxv = v; arg = i; }
            else if (isnan(v)) return wg_error(WG_ERR_RANGE, "logits[%d] is NaN", (int)i);
        }
    }
    if (arg < 0) return wg_error(WG_ERR_RANGE, "every one of %d tokens is banned (-inf)", (int)s->n_vocab);
    if (maxv == INFINITY) return wg_error(WG_ERR_RANGE, "logits[%d] is +inf", (int)arg);
    *maxv_out = maxv;
    *arg_out = arg;
    return WG_OK;
}

wg_status wg_sampler_sample(wg_sampler_t *s, float *logits, wg_sample_t *out) {
    WG_ASSERT(s && logits && out);
    memset(out, 0, sizeof *out);
    wg_status st = s_apply_penalties(s, logits);
    if (st) return st;
    for (size_t i = 0; i < s->p.n_logit_bias; i++)
        logits[s->p.logit_bias[i].token] += s->p.logit_bias[i].bias;

    float maxv;
    int32_t arg;
    const bool greedy = s->p.temperature == 0.0f;
    const bool want_lp = s->p.logprobs || s->p.n_logprobs > 0;
    bool scanned = false;
    if (s->json) {
        /* JSON mode: tokens that cannot continue the text get -inf. A greedy
         * pick without logprobs needs no mask when the best token can go on:
         * it is then the best of those that can (ties keep the lowest id). */
        scanned = greedy && !want_lp && s_scan(s, logits, &maxv, &arg) == WG_OK &&
                  wg_json_guide_allows(s->json, arg);
        if (!scanned && wg_json_guide_mask(s->json, logits) == 0)
            return wg_error(WG_ERR_RANGE, "json mode: no token of the vocabulary can continue the JSON text");
    }
    if (!scanned && (st = s_scan(s, logits, &maxv, &arg))) return st;

    const float inv_t = greedy ? 1.0f : 1.0f / s->p.temperature;
    /* the top-n alternatives by logit, before the flat path overwrites them */
    s_cand_t top[WG_MAX_TOP_LOGPROBS];
    size_t n_top = s->p.n_logprobs > 0 ? s_top_k(logits, s->n_vocab, top, (size_t)s->p.n_logprobs) : 0;

    int32_t tok = -1;
    double total = -1.0; /* full-vocabulary normaliser, once some step has it */
    float e_tok = -1.0f;  /* chosen token's weight when the logits were overwritten */
    if (greedy) {
        tok = arg;
    } else if ((s->p.top_k > 0 && s->p.top_k < s->n_vocab) || s->p.top_p < 1.0f) {
        st = s_sample_sorted(s, logits, maxv, &tok, &total);
        if (st) return st;
    } else {
        tok = s_sample_flat(s, logits, maxv, &total, &e_tok);
    }
    out->token = tok;
    if (want_lp) {
        if (total < 0.0) total = s_total(s, logits, maxv, inv_t);
        const double lse = log(total);
        out->logprob = (float)((e_tok >= 0.0f ? log(e_tok) : (double)((logits[tok] - maxv) * inv_t)) - lse);
        for (size_t i = 0; i < n_top; i++) {
            out->top_tokens[i] = top[i].id;
            out->top_logprobs[i] = (float)((double)((top[i].v - maxv) * inv_t) - lse);
        }
        out->n_top = (int32_t)n_top;
    }
    if (s->json && (st = wg_json_guide_accept(s->json, tok))) return st;
    return s_accept(s, &tok, 1);
}

void wg_sampler_set_json(wg_sampler_t *s, wg_json_guide_t *g) {
    wg_json_guide_free(&s->json);
    s->json = g;
}

bool wg_sampler_json_done(const wg_sampler_t *s) { return s->json && wg_json_guide_done(s->json); }
