/* Tests for wg_sampler: greedy, seeded draws, the distribution each filter
 * produces (checked against a plain full-sort reference written here), the
 * penalties' exact effect on logits, bias, logprobs, validation, and cost on
 * a 152k vocabulary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wg_status.h"
#include "engine/sampler/wg_sampler.h"

/* deterministic test data (independent of the sampler's RNG) */
static uint64_t t_lcg = 12345;
static double t_rand(void) {
    t_lcg = t_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(t_lcg >> 11) * 0x1.0p-53;
}

static wg_sampler_t *t_new(wg_sampling_params_t p, int32_t n) {
    wg_sampler_t *s = wg_sampler_new(&p, n);
    cr_assert_not_null(s, "sampler_new: %s", wg_errmsg());
    return s;
}

static int32_t t_draw(wg_sampler_t *s, const float *logits, int32_t n, wg_sample_t *out) {
    float *tmp = malloc((size_t)n * sizeof *tmp);
    memcpy(tmp, logits, (size_t)n * sizeof *tmp);
    wg_sample_t o;
    wg_status st = wg_sampler_sample(s, tmp, &o);
    cr_assert_eq(st, WG_OK, "sample: %s", wg_errmsg());
    free(tmp);
    if (out) *out = o;
    return o.token;
}

/* Reference distribution: full sort, top-k, temperature, softmax, top-p, min-p. */
static void t_ref_dist(const float *l, int32_t n, float T, int k, double top_p, double min_p, double *prob) {
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    for (int32_t i = 0; i < n; i++) idx[i] = i;
    for (int32_t i = 0; i < n; i++) /* selection sort is fine for small n */
        for (int32_t j = i + 1; j < n; j++)
            if (l[idx[j]] > l[idx[i]] || (l[idx[j]] == l[idx[i]] && idx[j] < idx[i])) {
                int32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
            }
    int32_t m = (k > 0 && k < n) ? k : n;
    double *p = calloc((size_t)n, sizeof *p), sum = 0;
    for (int32_t i = 0; i < m; i++) sum += p[i] = exp(((double)l[idx[i]] - l[idx[0]]) / T);
    for (int32_t i = 0; i < m; i++) p[i] /= sum;
    int32_t keep = m;
    if (top_p < 1.0) {
        double acc = 0;
        for (int32_t i = 0; i < m; i++) {
            acc += p[i];
            if (acc >= top_p) { keep = i + 1; break; }
        }
    }
    int32_t keep2 = 1;
    while (keep2 < keep && p[keep2] >= min_p * p[0]) keep2++;
    sum = 0;
    for (int32_t i = 0; i < keep2; i++) sum += p[i];
    for (int32_t i = 0; i < n; i++) prob[i] = 0;
    for (int32_t i = 0; i < keep2; i++) prob[idx[i]] = p[i] / sum;
    free(p);
    free(idx);
}

/* Pearson chi-square of counts against probs; tokens with prob 0 must never occur. */
static double t_chi2(const int *count, const double *prob, int32_t n, int draws, int *dof) {
    double chi = 0;
    *dof = -1;
    for (int32_t i = 0; i < n; i++) {
        if (prob[i] == 0) {
            cr_assert_eq(count[i], 0, "token %d has probability 0 but was drawn %d times", i, count[i]);
            continue;
        }
        double e = prob[i] * draws;
        chi += (count[i] - e) * (count[i] - e) / e;
        (*dof)++;
    }
    return chi;
}

/* chi-square critical values at p = 0.001 for dof 1..9 */
static const double t_chi_crit[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88};

static void t_check_dist(wg_sampling_params_t p, const float *l, int32_t n, int draws) {
    double prob[16];
    int count[16] = {0};
    cr_assert(n <= 16);
    t_ref_dist(l, n, p.temperature, p.top_k, p.top_p, p.min_p, prob);
    p.has_seed = true;
    p.seed = 42;
    wg_sampler_t *s = t_new(p, n);
    for (int d = 0; d < draws; d++) count[t_draw(s, l, n, NULL)]++;
    int dof;
    double chi = t_chi2(count, prob, n, draws, &dof);
    cr_assert(dof >= 0 && dof <= 9);
    if (dof > 0) /* dof 0: one survivor, already checked that nothing else occurred */
        cr_assert_lt(chi, t_chi_crit[dof], "chi2=%.2f dof=%d (T=%g k=%d p=%g min_p=%g)", chi, dof,
                 (double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p);
    wg_sampler_free(&s);
    cr_assert_null(s);
}

static const float t_l8[8] = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.7f, 0.0f, 2.2f};

Test(sampler, greedy_picks_argmax) {
    wg_sampling_params_t p = wg_sampling_defaults();
    p.temperature = 0;
    float l[1000];
    for (int trial = 0; trial < 20; trial++) {
        int32_t best = 0;
        for (int i = 0; i < 1000; i++) {
            l[i] = (float)(t_rand() * 20 - 10);
            if (l[i] > l[best]) best = i;
        }
        wg_sampler_t *s = t_new(p, 1000);
        cr_assert_eq(t_draw(s, l, 1000, NULL), best);
        wg_sampler_free(&s);
    }
}

Test(sampler, greedy_lowest_id_on_exact_ties) {
    wg_sampling_params_t p = wg_sampling_defaults();
    p.temperature = 0;
    float l[10] = {0, 1, 5, 3, 5, 5, -2, 1, 0, 5};
    wg_sampler_t *s = t_new(p, 10);
    cr_assert_eq(t_draw(s, l, 10, NULL), 2);
    wg_sampler_free(&s);
}

/* The greedy scan (8 lanes at a time where the CPU has AVX2) gives the
 * scalar scan's answer for every length, tail and lane: the lowest index of
 * the max among ties in different lanes, the first of +0/-0 when zero is the
 * max, +inf and NaN named at their first index, all -inf an error. */
Test(sampler, greedy_scan_matches_the_scalar_scan_at_every_length_and_lane) {
    wg_sampling_params_t p = wg_sampling_defaults();
    p.temperature = 0;
    for (int32_t n = 1; n <= 70; n++) {
        float *l = malloc((size_t)n * sizeof *l);
        for (int trial = 0; trial < 40; trial++) {
            /* few distinct values: ties across lanes are common */
            for (int32_t i = 0; i < n; i++) l[i] = (float)((int)(t_rand() * 5) - 4);
            const int kind = trial % 5;
            const int32_t at = (int32_t)(t_rand() * n), at2 = (int32_t)(t_rand() * n);
            if (kind == 1) { /* zero as the max, either sign, first one wins */
                for (int32_t i = 0; i < n; i++) l[i] = -1.0f;
                l[at] = -0.0f;
                l[at2] = 0.0f;
            } else if (kind == 2) {
                l[at] = INFINITY;
            } else if (kind == 3) {
                l[at] = NAN;
            } else if (kind == 4) {
                for (int32_t i = 0; i < n; i++) l[i] = -INFINITY;
            }
            /* the scalar scan, written out */
            float mx = -INFINITY;
            int32_t arg = -1, nan_at = -1;
            for (int32_t i = 0; i < n && nan_at < 0; i++) {
                if (l[i] > mx) { mx = l[i]; arg = i; }
                else if (isnan(l[i])) nan_at = i;
            }
            wg_sampler_t *s = t_new(p, n);
            float *tmp = malloc((size_t)n * sizeof *tmp);
            memcpy(tmp, l, (size_t)n * sizeof *tmp);
            wg_sample_t o;
            wg_status st = wg_sampler_sample(s, tmp, &o);
            char want[64];
            if (nan_at >= 0) {
                snprintf(want, sizeof want, "logits[%d] is NaN", (int)nan_at);
                cr_assert_eq(st, WG_ERR_RANGE, "n=%d: NaN at %d not refused", (int)n, (int)nan_at);
                cr_assert(strstr(wg_errmsg(), want), "n=%d: '%s', want '%s'", (int)n, wg_errmsg(), want);
            } else if (arg < 0) {
                cr_assert_eq(st, WG_ERR_RANGE, "n=%d: all -inf not refused", (int)n);
            } else if (mx == INFINITY) {
                snprintf(want, sizeof want, "logits[%d] is +inf", (int)arg);
                cr_assert_eq(st, WG_ERR_RANGE);
                cr_assert(strstr(wg_errmsg(), want), "n=%d: '%s', want '%s'", (int)n, wg_errmsg(), want);
            } else {
                cr_assert_eq(st, WG_OK, "n=%d: %s", (int)n, wg_errmsg());
                cr_assert_eq(o.token, arg, "n=%d kind=%d: token %d, scalar scan %d", (int)n, kind, (int)o.token,
                             (int)arg);
            }
            free(tmp);
            wg_sampler_free(&s);
        }
        free(l);
    }
}

Test(sampler, same_seed_same_sequence_different_seed_differs) {
    wg_sampling_params_t p = wg_sampling_defaults();
    p.has_seed = true;
    p.seed = 1234;
    p.top_k = 6;
    p.top_p = 0.95f;
    enum { N = 64, DRAWS = 1000 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(t_rand() * 2);
    wg_sampler_t *a = t_new(p, N), *b = t_new(p, N);
    p.seed = 1235;
    wg_sampler_t *c = t_new(p, N);
    int diff = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t ta = t_draw(a, l, N, NULL), tb = t_draw(b, l, N, NULL), tc = t_draw(c, l, N, NULL);
        cr_assert_eq(ta, tb, "draw %d: %d vs %d with the same seed", d, ta, tb);
        diff += ta != tc;
    }
    cr_assert_gt(diff, DRAWS / 4, "seeds 1234 and 1235 gave nearly identical sequences (%d diffs)", diff);
    wg_sampler_free(&a);
    wg_sampler_free(&b);
    wg_sampler_free(&c);
}

Test(sampler, seed_fixes_the_stream_across_machines) {
    /* The RNG is our own xoshiro256** over splitmix64, so the first draws for a
     * seed are a fixed sequence. Uniform logits make token = floor(u * 16). */
    wg_sampling_params_t p = wg_sampling_defaults();
    p.has_seed = true;
    p.seed = 7;
    float l[16] = {0};
    wg_sampler_t *a = t_new(p, 16);
    int32_t first[8];
    for (int i = 0; i < 8; i++) first[i] = t_draw(a, l, 16, NULL);
    wg_sampler_free(&a);
    /* recompute the expected stream independently from the published algorithms */
    uint64_t x = 7, st[4];
    for (int i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        st[i] = z ^ (z >> 31);
    }
    for (int i = 0; i < 8; i++) {
        uint64_t r = ((st[1] * 5) << 7 | (st[1] * 5) >> 57) * 9, t = st[1] << 17;
        st[2] ^= st[0]; st[3] ^= st[1]; st[1] ^= st[2]; st[0] ^= st[3]; st[2] ^= t;
        st[3] = st[3] << 45 | st[3] >> 19;
        double u = (double)(r >> 11) * 0x1.0p-53;
        cr_assert_eq(first[i], (int32_t)(u * 16), "draw %d", i);
    }
}

Test(sampler, temperature_frequencies_match_softmax) {
    wg_sampling_params_t p = wg_sampling_defaults();
    float temps[] = {1.0f, 0.7f, 2.0f};
    for (int i = 0; i < 3; i++) {
        p.temperature = temps[i];
        t_check_dist(p, t_l8, 8, 100000);
    }
}

Test(sampler, temperature_test_detects_a_wrong_distribution) {
    /* the chi-square check must reject draws from T=1 when T=0.5 is expected */
    wg_sampling_params_t p = wg_sampling_defaults();
    p.has_seed = true;
    p.seed = 42;
    double prob[8];
    int count[8] = {0}, dof;
    t_ref_dist(t_l8, 8, 0.5f, 0, 1, 0, prob);
    wg_sampler_t *s = t_new(p, 8);
    for (int d = 0; d < 100000; d++) count[t_draw(s, t_l8, 8, NULL)]++;
    cr_assert_gt(t_chi2(count, prob, 8, 100000, &dof), t_chi_crit[7] * 10);
    wg_sampler_free(&s);
}

Test(sampler, top_k_frequencies_and_support) {
    wg_sampling_params_t p = wg_sampling_defaults();
    p.top_k = 3;
    t_check_dist(p, t_l8, 8, 100000); /* only ids 1, 7, 3 may occur */
    p.top_k = 5;
    p.temperature = 0.8f;
    t_check_dist(p, t_l8, 8, 100000);
}

Test(sampler, top_k_never_outside_the_k_best_large_vocab) {
    enum { N = 5000, K = 10 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(t_rand() * 3);
    /* the K best by a full scan */
    int32_t best[K];
    for (int k = 0; k < K; k++) {
        int32_t b = -1;
        for (int i = 0; i < N; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= best[j] == i;
            if (!taken && (b < 0 || l[i] > l[b])) b = i;
        }
        best[k] = b;
    }
    wg_sampling_params_t p = wg_sampling_defaults();
    p.top_k = K;
    p.temperature = 5.0f; /* flat: all K should show up */
    p.has_seed = true;
    wg_sampler_t *s = t_new(p, N);
    int seen[K] = {0};
    for (int d = 0; d < 3000; d++) {
        int32_t t = t_draw(s, l, N, NULL);
        int j = 0;
        while (j < K && best[j] != t) j++;
        cr_assert_lt(j, K, "draw %d picked token %d outside the top %d", d, t, K);
        seen[j]++;
    }
    for (int j = 0; j < K; j++) cr_assert_gt(seen[j], 0, "top token %d never drawn", best[j]);
    wg_sampler_free(&s);
}

Test(sampler, top_p_excludes_the_tail) {
    /* probabilities 0.5, 0.3, 0.15, 0.05 (order shuffled): top_p 0.75 keeps 0.5 and 0.3 */
    float l[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.top_p = 0.75f;
    t_check_dist(p, l, 4, 50000);
    p.top_p = 0.9f; /* keeps three */
    t_check_dist(p, l, 4, 50000);
    p.top_p = 0.01f; /* keeps at least one */
    t_check_dist(p, l, 4, 1000);
    p.top_k = 3; /* the top-k path: renormalised over three, then 0.5/0.95 >= 0.5 keeps one */
    p.top_p = 0.5f;
    t_check_dist(p, t_l8, 8, 20000);
    p.top_p = 0.8f;
    t_check_dist(p, t_l8, 8, 50000);
    p.top_k = 0;
    t_check_dist(p, t_l8, 8, 50000);
}

Test(sampler, top_p_large_vocab_draws_only_the_nucleus) {
    enum { N = 150000 };
    float *l = malloc(N * sizeof *l);
    for (int i = 0; i < N; i++) l[i] = (float)(t_rand() * 4 - 10);
    int hot[5] = {77, 1234, 99999, 5, 149999};
    for (int j = 0; j < 5; j++) l[hot[j]] = 8.0f - (float)j * 0.1f;
    /* the five hot tokens hold > 0.99 of the mass; top_p 0.9 must stay inside them */
    wg_sampling_params_t p = wg_sampling_defaults();
    p.top_p = 0.9f;
    p.has_seed = true;
    wg_sampler_t *s = t_new(p, N);
    int seen[5] = {0};
    for (int d = 0; d < 500; d++) {
        int32_t t = t_draw(s, l, N, NULL);
        int j = 0;
        while (j < 5 && hot[j] != t) j++;
        cr_assert_lt(j, 5, "token %d is outside the nucleus", t);
        seen[j]++;
    }
    for (int j = 0; j < 4; j++) cr_assert_gt(seen[j], 0);
    wg_sampler_free(&s);
    free(l);
}

Test(sampler, min_p_drops_tokens_below_the_relative_threshold) {
    float l[5] = {logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f), -INFINITY};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.min_p = 0.3f; /* threshold 0.12: 0.1 goes */
    t_check_dist(p, l, 5, 50000);
    p.min_p = 0.6f; /* threshold 0.24: keeps 0.4 and 0.3 */
    t_check_dist(p, l, 5, 50000);
    p.top_p = 0.95f; /* heap path with min-p */
    t_check_dist(p, l, 5, 50000);
    p.top_k = 3; /* top-k path with min-p */
    t_check_dist(p, l, 5, 50000);
    p.min_p = 1.0f; /* only the best */
    p.top_k = 0;
    p.top_p = 1.0f;
    t_check_dist(p, t_l8, 8, 1000);
}

/* Log-softmax differences recover the penalised logits exactly (up to float). */
static void t_penalised(wg_sampling_params_t p, const float *l, int32_t n, const int32_t *hist, size_t nh,
                        float *outl) {
    p.temperature = 0;
    p.n_logprobs = n;
    p.logprobs = true;
    wg_sampler_t *s = t_new(p, n);
    wg_sampler_accept_prompt(s, hist, nh);
    wg_sample_t o;
    t_draw(s, l, n, &o);
    cr_assert_eq(o.n_top, n);
    /* anchor: token n-1 is never penalised in these tests */
    float anchor = 0;
    for (int i = 0; i < n; i++)
        if (o.top_tokens[i] == n - 1) anchor = o.top_logprobs[i];
    for (int i = 0; i < n; i++) outl[o.top_tokens[i]] = o.top_logprobs[i] - anchor + l[n - 1];
    wg_sampler_free(&s);
}

Test(sampler, repetition_penalty_divides_positive_multiplies_negative) {
    float l[5] = {2.0f, -2.0f, 1.0f, -0.5f, 0.5f}, got[5];
    int32_t hist[] = {0, 1, 1, 3};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.repeat_penalty = 2.0f;
    t_penalised(p, l, 5, hist, 4, got);
    float want[5] = {1.0f, -4.0f, 1.0f, -1.0f, 0.5f}; /* once per distinct token */
    for (int i = 0; i < 5; i++) cr_assert_float_eq(got[i], want[i], 1e-5, "token %d: %g vs %g", i, got[i], want[i]);
}

Test(sampler, presence_and_frequency_penalties_subtract_by_count) {
    float l[5] = {2.0f, -2.0f, 1.0f, -0.5f, 0.5f}, got[5];
    int32_t hist[] = {0, 1, 1, 3, 1};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    t_penalised(p, l, 5, hist, 5, got);
    float want[5] = {2.0f - 0.75f, -2.0f - 0.5f - 0.75f, 1.0f, -0.5f - 0.75f, 0.5f};
    for (int i = 0; i < 5; i++) cr_assert_float_eq(got[i], want[i], 1e-5, "token %d: %g vs %g", i, got[i], want[i]);
}

Test(sampler, penalty_window_covers_only_the_last_n_tokens) {
    float l[5] = {2.0f, -2.0f, 1.0f, -0.5f, 0.5f}, got[5];
    int32_t hist[] = {0, 2, 1, 1};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 1.0f;
    p.repeat_last_n = 2; /* sees {1, 1} only */
    t_penalised(p, l, 5, hist, 4, got);
    float want[5] = {2.0f, -4.0f - 2.0f, 1.0f, -0.5f, 0.5f};
    for (int i = 0; i < 5; i++) cr_assert_float_eq(got[i], want[i], 1e-5, "token %d: %g vs %g", i, got[i], want[i]);
    p.repeat_last_n = 0; /* off */
    t_penalised(p, l, 5, hist, 4, got);
    for (int i = 0; i < 5; i++) cr_assert_float_eq(got[i], l[i], 1e-5);
}

Test(sampler, sampled_tokens_feed_the_penalties) {
    /* greedy with a strong frequency penalty must rotate through tokens */
    float l[3] = {3.0f, 2.9f, 2.8f};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.temperature = 0;
    p.frequency_penalty = 1.0f;
    wg_sampler_t *s = t_new(p, 3);
    cr_assert_eq(t_draw(s, l, 3, NULL), 0);
    cr_assert_eq(t_draw(s, l, 3, NULL), 1);
    cr_assert_eq(t_draw(s, l, 3, NULL), 2);
    cr_assert_eq(t_draw(s, l, 3, NULL), 0);
    wg_sampler_free(&s);
}

Test(sampler, logit_bias_bans_and_shifts) {
    wg_logit_bias_t bias[2] = {{1, -INFINITY}, {4, 1.0f}};
    wg_sampling_params_t p = wg_sampling_defaults();
    p.temperature = 0;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    wg_sampler_t *s = t_new(p, 8);
    cr_assert_eq(t_draw(s, t_l8, 8, NULL), 7); /* 1 (2.5) banned: next best is 7 (2.2) */
    wg_sampler_free(&s);
    p.n_logit_bias = 2; /* token 4: -1 + 1 = 0, unchanged rank; bias is additive */
    p.temperature = 1;
    p.has_seed = true;
    float biased[8];
    memcpy(biased, t_l8, sizeof biased);
    biased[1] = -INFINITY;
    biased[4] += 1.0f;
    double prob[8];
    int count[8] = {0}, dof;
    t_ref_dist(biased, 8, 1, 0, 1, 0, prob);
    s = t_new(p, 8);
    for (int d = 0; d < 50000; d++) count[t_draw(s, t_l8, 8, NULL)]++;
    cr_assert_eq(count[1], 0, "banned token drawn");
    cr_assert_lt(t_chi2(count, prob, 8, 50000, &dof), t_chi_crit[dof]);
    wg_sampler_free(&s);
}

Test(sampler, all_tokens_banned_is_an_error_not_a_crash) {
    float l[3] = {-INFINITY, -INFINITY, -INFINITY};
    wg_sampling_params_t p = wg_sampling_defaults();
    wg_sampler_t *s = t_new(p, 3);
    wg_sample_t o;
    cr_assert_eq(wg_sampler_sample(s, l, &o), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "banned"));
    float n[3] = {0, NAN, 1};
    cr_assert_eq(wg_sampler_sample(s, n, &o), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "logits[1]"), "%s", wg_errmsg());
    wg_sampler_free(&s);
}

Test(sampler, logprobs_are_the_log_softmax_and_top_is_sorted) {
    enum { N = 1000 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(t_rand() * 10 - 5);
    float temps[] = {0.8f, 0.0f};
    for (int ti = 0; ti < 2; ti++) {
        wg_sampling_params_t p = wg_sampling_defaults();
        p.temperature = temps[ti];
        p.top_k = 50;
        p.logprobs = true;
        p.n_logprobs = 20;
        p.has_seed = true;
        double T = temps[ti] > 0 ? temps[ti] : 1.0, mx = -1e30, sum = 0;
        for (int i = 0; i < N; i++) mx = fmax(mx, l[i]);
        for (int i = 0; i < N; i++) sum += exp((l[i] - mx) / T);
        wg_sampler_t *s = t_new(p, N);
        for (int d = 0; d < 50; d++) {
            wg_sample_t o;
            int32_t t = t_draw(s, l, N, &o);
            double want = (l[t] - mx) / T - log(sum);
            cr_assert_float_eq(o.logprob, want, 1e-4, "chosen %d: %g vs %g", t, o.logprob, want);
            cr_assert_eq(o.n_top, 20);
            double mass = 0;
            for (int i = 0; i < 20; i++) {
                int32_t id = o.top_tokens[i];
                double w = (l[id] - mx) / T - log(sum);
                cr_assert_float_eq(o.top_logprobs[i], w, 1e-4);
                if (i) cr_assert_geq(o.top_logprobs[i - 1], o.top_logprobs[i]);
                mass += exp(o.top_logprobs[i]);
                /* nothing outside the list beats its last entry */
                if (i == 19)
                    for (int j = 0; j < N; j++) {
                        bool in = false;
                        for (int q = 0; q < 20; q++) in |= o.top_tokens[q] == j;
                        if (!in) cr_assert_leq(l[j], l[id]);
                    }
            }
            cr_assert_leq(mass, 1.0 + 1e-6);
            cr_assert_gt(mass, 0.0);
        }
        wg_sampler_free(&s);
    }
}

Test(sampler, invalid_params_name_the_field) {
    static const char *const cases[] = {
        "temperature", "top_p", "top_p", "min_p", "n_logprobs", "top_k", "repeat_penalty",
        "logit_bias[0].token", "logit_bias[0].bias",
    };
    wg_logit_bias_t bad_tok = {8, 1.0f}, bad_bias = {2, INFINITY};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wg_sampling_params_t p = wg_sampling_defaults();
        switch (i) {
        case 0: p.temperature = -0.5f; break;
        case 1: p.top_p = 0.0f; break;
        case 2: p.top_p = 1.5f; break;
        case 3: p.min_p = 1.1f; break;
        case 4: p.n_logprobs = 21; break;
        case 5: p.top_k = -1; break;
        case 6: p.repeat_penalty = 0.0f; break;
        case 7: p.logit_bias = &bad_tok; p.n_logit_bias = 1; break;
        case 8: p.logit_bias = &bad_bias; p.n_logit_bias = 1; break;
        }
        wg_error_clear();
        wg_sampler_t *s = wg_sampler_new(&p, 8);
        cr_assert_null(s, "case %zu accepted", i);
        cr_assert(strstr(wg_errmsg(), cases[i]), "case %zu: '%s' does not name %s", i, wg_errmsg(),
                  cases[i]);
    }
    wg_sampling_params_t ok = wg_sampling_defaults();
    ok.top_p = 1.0f;
    ok.min_p = 1.0f;
    ok.n_logprobs = 20;
    wg_sampler_t *s = wg_sampler_new(&ok, 8);
    cr_assert_not_null(s, "boundary values rejected: %s", wg_errmsg());
    wg_sampler_free(&s);
    wg_sampler_free(&s); /* NULL-safe */
}

static double t_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

Test(sampler, cost_on_a_152k_vocabulary) {
    enum { N = 152064, REPS = 30 };
    float *l = malloc(N * sizeof *l), *tmp = malloc(N * sizeof *tmp);
    for (int i = 0; i < N; i++) l[i] = (float)(t_rand() * 8 - 4 + (i % 97 == 0 ? 6 : 0));
    struct { const char *name; float T; int k; float tp; float mp; float rp; int lp; } cfg[] = {
        {"greedy", 0, 0, 1, 0, 1, 0},        {"temperature", 0.8f, 0, 1, 0, 1, 0},
        {"top_k40", 0.8f, 40, 1, 0, 1, 0},   {"top_p0.9", 0.8f, 0, 0.9f, 0, 1, 0},
        {"min_p0.05", 0.8f, 0, 1, 0.05f, 1, 0},
        {"k40_p0.9_minp_rep_lp5", 0.8f, 40, 0.9f, 0.05f, 1.1f, 5},
        {"peaked_top_p0.9", 0.8f, 0, 0.9f, 0, 1, 0},
    };
    printf("{\"bench\":\"sampler\",\"n_vocab\":%d,\"results\":[", N);
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        wg_sampling_params_t p = wg_sampling_defaults();
        p.temperature = cfg[c].T;
        p.top_k = cfg[c].k;
        p.top_p = cfg[c].tp;
        p.min_p = cfg[c].mp;
        p.repeat_penalty = cfg[c].rp;
        p.n_logprobs = cfg[c].lp;
        p.has_seed = true;
        wg_sampler_t *s = t_new(p, N);
        if (strncmp(cfg[c].name, "peaked", 6) == 0) /* LM-like: a few dominant tokens */
            for (int i = 0; i < N; i += 5000) l[i] += 12.0f;
        double best = 1e9;
        for (int r = 0; r < REPS; r++) {
            memcpy(tmp, l, N * sizeof *l);
            wg_sample_t o;
            double t0 = t_now();
            cr_assert_eq(wg_sampler_sample(s, tmp, &o), WG_OK);
            double dt = t_now() - t0;
            if (dt < best) best = dt;
        }
        printf("%s{\"config\":\"%s\",\"us_per_token\":%.1f}", c ? "," : "", cfg[c].name, best * 1e6);
        /* generous bound: a full sort of 152k would be ~10 ms; we want a few passes */
        cr_assert_lt(best, 0.02, "%s took %.1f us", cfg[c].name, best * 1e6);
        wg_sampler_free(&s);
    }
    printf("]}\n");
    free(l);
    free(tmp);
}

Test(sampler, penalty_window_survives_long_histories_in_chunks) {
    /* 10 tokens; history i % 9 fed in chunks (exercises the history
     * compaction), window 3: only the last three ids are penalised. */
    enum { V = 10 };
    float l[V], got[V];
    for (int i = 0; i < V; i++) l[i] = 1.0f + 0.1f * (float)i;
    int32_t hist[1000];
    for (int i = 0; i < 1000; i++) hist[i] = i % 9;
    wg_sampling_params_t p = wg_sampling_defaults();
    p.frequency_penalty = 1.0f;
    p.repeat_last_n = 3;
    p.temperature = 0;
    p.n_logprobs = V;
    wg_sampler_t *s = t_new(p, V);
    for (int i = 0; i < 1000; i += 7) wg_sampler_accept_prompt(s, hist + i, i + 7 <= 1000 ? 7 : 1000 - i);
    wg_sample_t o;
    t_draw(s, l, V, &o);
    float anchor = 0;
    for (int i = 0; i < V; i++)
        if (o.top_tokens[i] == 9) anchor = o.top_logprobs[i];
    for (int i = 0; i < V; i++) got[o.top_tokens[i]] = o.top_logprobs[i] - anchor + l[9];
    /* last three of the history: 997 % 9 = 7, 998 % 9 = 8, 999 % 9 = 0 */
    for (int i = 0; i < V; i++) {
        float want = l[i] - ((i == 7 || i == 8 || i == 0) ? 1.0f : 0.0f);
        cr_assert_float_eq(got[i], want, 1e-5, "token %d: %g vs %g", i, got[i], want);
    }
    wg_sampler_free(&s);
    /* one prompt longer than the window gives the same result */
    s = t_new(p, V);
    wg_sampler_accept_prompt(s, hist, 1000);
    wg_sample_t o2;
    t_draw(s, l, V, &o2);
    cr_assert_eq(o2.token, o.token);
    for (int i = 0; i < V; i++) cr_assert_float_eq(o2.top_logprobs[i], o.top_logprobs[i], 1e-6);
    wg_sampler_free(&s);
}
