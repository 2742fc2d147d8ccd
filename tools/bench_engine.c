/* waggle bench engine — throughput and latency of the continuous-batching
 * engine at several concurrencies, against the matrix-product roofline; or,
 * with --single, one sequence's prefill and decode speed per thread count
 * against the memory roofline (issue 3).
 *
 *   waggle bench -m MODEL [--concurrency 1,8,32,64] [--prompt-len 128]
 *                [--gen-len 128] [--threads 2] [--kv-type f16|f32|q8_0]
 *                [--shared-prefix N] [--no-prefix-cache] [--json]
 *   waggle bench -m MODEL --single [--threads 1,2] [--prompt-len 128]
 *                [--gen-len 64] [--reps 3] [--mem-mb 512] [--kv-type f16|f32|q8_0] [--json]
 *
 * The K/V cache is F16 by default on the CPU (llama-bench's default; the
 * engine library and `waggle generate/run` default to the reference F32),
 * and its pages are touched before the clock starts (a worker's cache
 * outlives its requests).
 *
 * --single: a wg_session (batch 1) prefills P random tokens in one call,
 * then decodes G tokens one step at a time (greedy), `reps` times per thread
 * count; medians are reported with every run. The roofline is the decode
 * speed if each step only had to read its bytes once from DRAM: bytes per
 * token (every weight matrix a step multiplies — not the embedding lookup —
 * plus the K/V read at the mean decode position) over the read bandwidth
 * measured in the same process before and after the runs with the kernel
 * bench's STREAM-style loop (best of both). Peak RSS is VmHWM over the
 * engine runs (the high-water mark is reset after the first bandwidth
 * buffer is freed).
 *
 * Per concurrency C: C requests of random prompt tokens (greedy, EOS
 * ignored) are submitted at once and run to the end. Reported: aggregate
 * prefill tokens/s (all prompt tokens / time until every sequence has its
 * first token), aggregate decode tokens/s (tokens emitted after that / the
 * remaining time), the same over pure-decode steps only, TTFT and
 * inter-token latency p50/p99, KV memory used at the peak, and the prompt
 * tokens the prefix cache let the engine skip. With --shared-prefix N the
 * first N tokens of every prompt are the same (a system prompt), so all but
 * the first requests to be admitted find them cached. The roofline is
 * measured in process: every weight matrix of the model multiplied by an
 * M = C activation batch with wg_k_matmul_cpu (the kernel the forward pass
 * uses) on the same threads; C / (sum of those times) is the most decode
 * tokens/s a step that only does matrix products could reach. Of 15 such
 * passes the best gives `matmul_roofline_tok_s` / `decode_vs_roofline` (the
 * strict figure) and the median `matmul_roofline_median_tok_s` /
 * `decode_vs_roofline_median` (the kernel bench's statistic; the decode rate
 * it is divided by is itself an average over the run, so on a shared
 * machine the best pass alone favours the roofline). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "engine/sched/wg_sched.h"
#include "bench_membw.h"
#include "kernels/cpu/wg_cpu.h"
#include "waggle.h"

int wg_bench_engine_main(int argc, char **argv);

/* --device: "cpu" or "cuda:N"; with a GPU the roofline is the device's
 * measured copy bandwidth (model-bandwidth utilisation), not the CPU's. */
static const char *s_device = "cpu";
static int s_cuda = -1;
static double s_dev_bw;      /* GB/s (bytes read + written), measured once */
/* --kv-type: F16 by default on the CPU, as llama-bench (llama.cpp's default
 * cache); the CUDA cache is F32 only. */
static wg_kv_type_t s_kv_type = WG_KV_F16;
static bool s_kv_type_set;
/* --shared-prefix N: prompt tokens common to every request; --no-prefix-cache. */
static long s_shared;
static bool s_no_pc;
static char s_dev_name[128];

/* Percentile (0..100) of a sorted array, nearest rank. */
static double s_pct(const double *v, size_t n, double p) {
    if (n == 0) return 0;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

/* Passes of the matmul roofline per concurrency (best taken). The roofline is
 * a best case, and on a shared machine a few passes can all land in someone
 * else's burst (3 passes gave 0.75k-2.8k tok/s at c=32 in one session); a
 * pass is one step's products (~15 ms at M=32 for a 134M model), so 15 cost
 * little. */
#define S_ROOF_REPS 15

/* Seconds for one pass of every weight matrix at batch M: the best of reps
 * (returned) and their median (*median: the statistic `waggle bench kernels`
 * reports, comparable with a decode rate averaged over a whole run). */
static double s_matmul_roofline(const wg_model_t *m, wg_pool_t *pool, int64_t M, int reps, int64_t *n_mats,
                                double *median) {
    const wg_gguf_t *g = wg_model_gguf(m);
    if (!g) return 0;
    const bool has_output = wg_gguf_find_tensor(g, "output.weight") != NULL;
    int64_t kmax = 0, nmax = 0;
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        if (t->n_dims != 2) continue;
        if (t->ne[0] > kmax) kmax = t->ne[0];
        if (t->ne[1] > nmax) nmax = t->ne[1];
    }
    float *X = malloc((size_t)(M * kmax) * sizeof(float));
    float *Y = malloc((size_t)(M * nmax) * sizeof(float));
    if (!X || !Y) {
        free(X);
        free(Y);
        return 0;
    }
    for (int64_t i = 0; i < M * kmax; i++) X[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double best = INFINITY, times[S_ROOF_REPS];
    if (reps > S_ROOF_REPS) reps = S_ROOF_REPS;
    for (int r = 0; r < reps; r++) {
        double t0 = wg_bench_now();
        int64_t nm = 0;
        for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
            const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
            if (t->n_dims != 2 || t->ne[1] == 1) continue;
            /* token_embd is a lookup unless it doubles as the output matrix. */
            if (strcmp(t->name, "token_embd.weight") == 0 && has_output) continue;
            if (wg_k_matmul_cpu(pool, t->type, t->data, t->ne[1], t->ne[0], X, M, Y) != WG_OK) continue;
            nm++;
        }
        double dt = wg_bench_now() - t0;
        if (dt < best) best = dt;
        times[r] = dt;
        *n_mats = nm;
    }
    free(X);
    free(Y);
    qsort(times, (size_t)reps, sizeof *times, wg_bench_cmp_double);
    *median = reps > 0 ? times[reps / 2] : 0;
    return best;
}

typedef struct {
    int32_t conc;              /* concurrency */
    double prefill_tok_s;      /* prompt tokens / time to last first token */
    double decode_tok_s;       /* tokens after the last first token / remaining time */
    double decode_step_tok_s;  /* tokens / time over steps with decode tokens only */
    double ttft_p50, ttft_p99; /* ms */
    double itl_p50, itl_p99;   /* ms */
    size_t kv_used;            /* bytes at peak */
    size_t kv_budget;          /* bytes allocated */
    int64_t steps;             /* forward steps */
    int64_t preemptions;       /* should be 0 with the budget we give */
    int64_t prefix_hits;       /* prompt tokens found in the prefix cache */
    double wall;               /* seconds */
    double roofline_tok_s;     /* C / matmul time at M = C (best pass) */
    double roofline_med_tok_s; /* C / median matmul pass time at M = C */
} s_res_t;

static int s_bench_one(const wg_model_t *m, int32_t C, int32_t P, int32_t G, int threads, s_res_t *r) {
    const wg_hparams_t *hp = wg_model_hparams(m);
    memset(r, 0, sizeof *r);
    r->conc = C;
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = C;
    cfg.max_batch_tokens = 512 > C ? 512 : C;
    cfg.prefill_chunk = 512;
    cfg.n_threads = threads;
    cfg.device = s_device;
    cfg.kv_type = s_kv_type;
    cfg.prefix_cache = s_no_pc ? -1 : 0;
    /* the shape asked for (--prompt-len + --gen-len) whatever the model's
     * trained context, as llama-bench does */
    cfg.max_context = -1;
    /* Steady state: a worker's cache outlives its requests, so its pages are
     * touched once; fresh-page faults here would be this run's own cost (and
     * first touches cost ~0.3 GB/s on some VMs). Done before the clock starts. */
    cfg.kv_prefault = true;
    const int32_t bt = WG_KV_DEFAULT_BLOCK;
    size_t tok_bytes = wg_model_kv_token_bytes(m, s_kv_type);
    size_t blocks_per_seq = (size_t)(P + G + bt) / (size_t)bt + 1;
    cfg.kv_budget_bytes = (size_t)C * blocks_per_seq * (size_t)bt * tok_bytes;
    wg_sched_t *s = wg_sched_new(m, NULL, &cfg);
    if (!s) {
        fprintf(stderr, "waggle bench: engine: %s\n", wg_errmsg());
        return -1;
    }
    int32_t *prompt = malloc((size_t)P * sizeof *prompt);
    double *first = calloc((size_t)C, sizeof *first), *last = calloc((size_t)C, sizeof *last);
    double *ttft = malloc((size_t)C * sizeof *ttft);
    size_t cap_itl = (size_t)C * (size_t)G, n_itl = 0;
    double *itl = malloc(cap_itl * sizeof *itl);
    if (!prompt || !first || !last || !ttft || !itl) {
        fprintf(stderr, "waggle bench: out of memory\n");
        wg_sched_free(&s);
        return -1;
    }
    uint64_t rng = 0x853c49e6748fea9bull;
    for (int32_t k = 0; k < P && k < s_shared; k++) { /* the shared start, drawn once */
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        prompt[k] = (int32_t)((rng >> 33) % (uint64_t)hp->n_vocab);
    }
    double t0 = wg_bench_now();
    for (int32_t i = 0; i < C; i++) {
        for (int32_t k = (int32_t)(s_shared < P ? s_shared : P); k < P; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            prompt[k] = (int32_t)((rng >> 33) % (uint64_t)hp->n_vocab);
        }
        wg_sched_req_t rq = {0};
        rq.prompt = prompt;
        rq.n_prompt = (size_t)P;
        rq.sampling = wg_sampling_defaults();
        rq.sampling.temperature = 0;
        rq.max_tokens = G;
        rq.ignore_eos = true;
        rq.user = (void *)(intptr_t)i;
        wg_seq_handle_t h;
        if (wg_sched_submit(s, &rq, &h) != WG_OK) {
            fprintf(stderr, "waggle bench: submit: %s\n", wg_errmsg());
            wg_sched_free(&s);
            return -1;
        }
    }
    int32_t n_first = 0;
    double t_all_first = 0, dec_step_time = 0;
    int64_t toks_after = 0, dec_step_toks = 0;
    while (wg_sched_busy(s)) {
        const wg_sched_event_t *ev;
        size_t ne;
        wg_sched_stats_t before, after;
        wg_sched_stats(s, &before);
        double ts = wg_bench_now();
        if (wg_sched_step(s, &ev, &ne) != WG_OK) {
            fprintf(stderr, "waggle bench: step: %s\n", wg_errmsg());
            wg_sched_free(&s);
            return -1;
        }
        double now = wg_bench_now();
        wg_sched_stats(s, &after);
        if (after.n_prefill_tokens == before.n_prefill_tokens && ne > 0) {
            dec_step_time += now - ts;
            dec_step_toks += (int64_t)ne;
        }
        for (size_t e = 0; e < ne; e++) {
            int32_t i = (int32_t)(intptr_t)ev[e].user;
            if (ev[e].token < 0) continue;
            if (first[i] == 0) {
                first[i] = now;
                ttft[n_first++] = (now - t0) * 1e3;
                if (n_first == C) t_all_first = now;
            } else {
                if (n_itl < cap_itl) itl[n_itl++] = (now - last[i]) * 1e3;
                if (t_all_first > 0 && now > t_all_first) toks_after++;
            }
            last[i] = now;
        }
    }
    double t_end = wg_bench_now();
    wg_sched_stats_t st;
    wg_sched_stats(s, &st);
    r->wall = t_end - t0;
    r->prefill_tok_s = t_all_first > t0 ? (double)C * P / (t_all_first - t0) : 0;
    r->decode_tok_s = t_end > t_all_first ? (double)toks_after / (t_end - t_all_first) : 0;
    r->decode_step_tok_s = dec_step_time > 0 ? (double)dec_step_toks / dec_step_time : 0;
    qsort(ttft, (size_t)n_first, sizeof *ttft, wg_bench_cmp_double);
    qsort(itl, n_itl, sizeof *itl, wg_bench_cmp_double);
    r->ttft_p50 = s_pct(ttft, (size_t)n_first, 50);
    r->ttft_p99 = s_pct(ttft, (size_t)n_first, 99);
    r->itl_p50 = s_pct(itl, n_itl, 50);
    r->itl_p99 = s_pct(itl, n_itl, 99);
    r->kv_used = (size_t)st.kv_peak_blocks * st.kv_block_bytes;
    r->kv_budget = (size_t)st.kv_blocks * st.kv_block_bytes;
    r->steps = st.n_steps;
    r->preemptions = st.n_preemptions;
    r->prefix_hits = st.n_prefix_hit_tokens;
    if (s_cuda < 0) {
        wg_pool_t *pool = wg_pool_new(threads);
        int64_t n_mats = 0;
        double med = 0;
        double mm = pool ? s_matmul_roofline(m, pool, C, S_ROOF_REPS, &n_mats, &med) : 0;
        wg_pool_destroy(&pool);
        r->roofline_tok_s = mm > 0 ? (double)C / mm : 0;
        r->roofline_med_tok_s = med > 0 ? (double)C / med : 0;
    }
    free(prompt);
    free(first);
    free(last);
    free(ttft);
    free(itl);
    wg_sched_free(&s);
    return 0;
}

/* ---- --single: one sequence, per thread count, against the memory roofline ---- */

/* Bytes one decode step reads from the weights: every matrix multiplied per
 * token (token_embd only when it doubles as the output matrix) and 1-D
 * tensors (norms, biases). Falls back to the model's weight bytes for an HF
 * directory. */
static double s_bytes_per_token(const wg_model_t *m) {
    const wg_gguf_t *g = wg_model_gguf(m);
    if (!g) return (double)wg_model_weight_bytes(m);
    const bool has_output = wg_gguf_find_tensor(g, "output.weight") != NULL;
    double b = 0;
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        if (strcmp(t->name, "token_embd.weight") == 0 && has_output) continue;
        b += (double)t->nbytes;
    }
    return b;
}

/* VmHWM of this process in bytes (0 when /proc is unavailable). */
static size_t s_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0); false when refused. */
static bool s_reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    const bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static double s_median_d(double *v, int n) {
    double t[64];
    if (n > 64) n = 64;
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, wg_bench_cmp_double);
    return n == 0 ? 0 : n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct {
    int threads;              /* pool size */
    int reps;                 /* runs */
    double prefill[64];       /* tokens/s per run */
    double decode[64];        /* tokens/s per run */
    double dec_cpu[64];       /* process CPU seconds / (wall seconds * threads) while decoding, per run */
    double step_ms_p50;       /* median decode step over all runs */
    double bw_med[2];         /* GB/s, median: before, after */
    double bw_best[2];        /* GB/s, best: before, after */
} s_single_t;

/* CPU seconds used by every thread of the process so far. */
static double s_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int32_t s_argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int s_single_run(const wg_model_t *m, int32_t P, int32_t G, s_single_t *r) {
    const wg_hparams_t *hp = wg_model_hparams(m);
    wg_session_t *s = wg_session_new_typed(m, r->threads, P + G + 1, s_device, s_kv_type);
    int32_t *prompt = malloc((size_t)P * sizeof *prompt);
    double *steps = malloc((size_t)r->reps * (size_t)G * sizeof *steps);
    if (!s || !prompt || !steps) {
        fprintf(stderr, "waggle bench: session: %s\n", s ? "out of memory" : wg_errmsg());
        wg_session_free(&s);
        free(prompt);
        free(steps);
        return -1;
    }
    uint64_t rng = 0x853c49e6748fea9bull;
    for (int32_t k = 0; k < P; k++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        prompt[k] = (int32_t)((rng >> 33) % (uint64_t)hp->n_vocab);
    }
    size_t n_steps = 0;
    /* One untimed warm-up run pages the weights in and grows the scratch. */
    for (int rep = -1; rep < r->reps; rep++) {
        if (wg_session_truncate(s, 0) != WG_OK) goto fail;
        double t0 = wg_bench_now();
        if (wg_session_eval(s, prompt, P, false, NULL) != WG_OK) goto fail;
        const double tp = wg_bench_now() - t0;
        int32_t tok = s_argmax(wg_session_logits(s), hp->n_vocab);
        const double td0 = wg_bench_now(), c0 = s_cpu_now();
        for (int32_t i = 0; i < G; i++) {
            const double ts = wg_bench_now();
            if (wg_session_eval(s, &tok, 1, false, NULL) != WG_OK) goto fail;
            tok = s_argmax(wg_session_logits(s), hp->n_vocab);
            if (rep >= 0) steps[n_steps++] = (wg_bench_now() - ts) * 1e3;
        }
        const double td = wg_bench_now() - td0, tc = s_cpu_now() - c0;
        if (rep < 0) continue;
        r->dec_cpu[rep] = tc / (td * r->threads);
        r->prefill[rep] = (double)P / tp;
        r->decode[rep] = (double)G / td;
    }
    qsort(steps, n_steps, sizeof *steps, wg_bench_cmp_double);
    r->step_ms_p50 = s_pct(steps, n_steps, 50);
    wg_session_free(&s);
    free(prompt);
    free(steps);
    return 0;
fail:
    fprintf(stderr, "waggle bench: eval: %s\n", wg_errmsg());
    wg_session_free(&s);
    free(prompt);
    free(steps);
    return -1;
}

static int s_bench_single(const char *model, const wg_model_t *m, const int *threads, int n_threads, int32_t P,
                          int32_t G, int reps, size_t mem_bytes, bool json) {
    const wg_hparams_t *hp = wg_model_hparams(m);
    s_single_t res[16];
    memset(res, 0, sizeof res);
    for (int i = 0; i < n_threads; i++) {
        res[i].threads = threads[i];
        res[i].reps = reps;
        if (s_cuda >= 0)
            res[i].bw_med[0] = res[i].bw_best[0] = s_dev_bw;
        else
            res[i].bw_med[0] = wg_bench_read_bw(mem_bytes, threads[i], 9, &res[i].bw_best[0]);
    }
    const bool hwm_reset = s_reset_peak_rss();
    for (int i = 0; i < n_threads; i++) {
        if (s_single_run(m, P, G, &res[i]) != 0) return 1;
        if (!json) fprintf(stderr, "%d thread%s done\n", threads[i], threads[i] > 1 ? "s" : "");
    }
    const size_t rss = s_peak_rss();
    for (int i = 0; i < n_threads; i++) {
        if (s_cuda >= 0)
            res[i].bw_med[1] = res[i].bw_best[1] = s_dev_bw;
        else
            res[i].bw_med[1] = wg_bench_read_bw(mem_bytes, threads[i], 9, &res[i].bw_best[1]);
    }
    const double wbytes = s_bytes_per_token(m);
    /* K and V of every layer at the mean decode position, in the cache's type. */
    const double kv_tok = (double)wg_model_kv_token_bytes(m, s_kv_type);
    const double kvbytes = round(kv_tok * ((double)P + (double)G / 2.0));
    const double bpt = wbytes + kvbytes;
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3) load[0] = load[1] = load[2] = -1;

    json_t *rows = json_array();
    for (int i = 0; i < n_threads; i++) {
        s_single_t *r = &res[i];
        const double bw = r->bw_best[0] > r->bw_best[1] ? r->bw_best[0] : r->bw_best[1];
        const double roof = bw > 0 ? bw * 1e9 / bpt : 0;
        const double dec = s_median_d(r->decode, reps);
        json_t *pf = json_array(), *dc = json_array(), *cu = json_array();
        for (int k = 0; k < reps; k++) {
            json_array_append_new(pf, json_real(r->prefill[k]));
            json_array_append_new(dc, json_real(r->decode[k]));
            json_array_append_new(cu, json_real(r->dec_cpu[k]));
        }
        json_array_append_new(
            rows, json_pack("{s:i, s:f, s:o, s:f, s:o, s:o, s:f, s:[f,f], s:[f,f], s:f, s:f}", "threads", r->threads,
                            "prefill_tok_s", s_median_d(r->prefill, reps), "prefill_tok_s_runs", pf, "decode_tok_s",
                            dec, "decode_tok_s_runs", dc, "decode_cpu_share_runs", cu, "decode_step_ms_p50",
                            r->step_ms_p50,
                            "read_bw_gbs_median_before_after", r->bw_med[0], r->bw_med[1],
                            "read_bw_gbs_best_before_after", r->bw_best[0], r->bw_best[1], "roofline_decode_tok_s",
                            roof, "decode_vs_roofline", roof > 0 ? dec / roof : 0.0));
    }
    json_t *doc = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:I, s:b, s:[f,f,f], s:o}",
                            "mode", "single", "model", model, "arch", hp->arch, "weight_bytes",
                            (json_int_t)wg_model_weight_bytes(m), "weight_bytes_per_token", (json_int_t)llround(wbytes),
                            "kv_bytes_per_token_mean", (json_int_t)llround(kvbytes), "bytes_per_token",
                            (json_int_t)llround(bpt), "n_layer", hp->n_layer,
                            "n_embd", hp->n_embd, "n_vocab", hp->n_vocab, "simd", wg_cpu_simd_name(), "prompt_len",
                            (int)P, "gen_len", (int)G, "reps", reps, "peak_rss_bytes", (json_int_t)rss,
                            "peak_rss_excludes_bw_buffer", hwm_reset, "loadavg", load[0], load[1], load[2],
                            "results", rows);
    json_object_set_new(doc, "device", json_string(s_device));
    json_object_set_new(doc, "kv_type", json_string(wg_kv_type_name(s_kv_type)));
    if (s_cuda >= 0) {
        json_object_set_new(doc, "device_name", json_string(s_dev_name));
        json_object_set_new(doc, "device_copy_bw_gbs", json_real(s_dev_bw));
    }
    if (json) {
        char *txt = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        puts(txt);
        free(txt);
    } else {
        printf("model %s (%s, %.1f MB weights, %.1f MB read per decoded token), %s, prompt %d, gen %d, %d runs, "
               "load %.1f\n",
               model, hp->arch, (double)wg_model_weight_bytes(m) / 1e6, bpt / 1e6, wg_cpu_simd_name(), (int)P,
               (int)G, reps, load[0]);
        printf("%7s %12s %12s %10s %9s %12s %12s %7s\n", "threads", "prefill t/s", "decode t/s", "step p50", "cpu share",
               "read GB/s", "roofline t/s", "ratio");
        for (int i = 0; i < n_threads; i++) {
            s_single_t *r = &res[i];
            const double bw = r->bw_best[0] > r->bw_best[1] ? r->bw_best[0] : r->bw_best[1];
            const double roof = bw > 0 ? bw * 1e9 / bpt : 0;
            const double dec = s_median_d(r->decode, reps);
            printf("%7d %12.1f %12.1f %8.2fms %9.2f %12.2f %12.1f %7.2f\n", r->threads, s_median_d(r->prefill, reps),
                   dec, r->step_ms_p50, s_median_d(r->dec_cpu, reps), bw, roof, roof > 0 ? dec / roof : 0.0);
        }
        printf("peak RSS %.1f MB%s\n", (double)rss / 1e6, hwm_reset ? "" : " (includes the bandwidth buffer)");
    }
    json_decref(doc);
    return 0;
}

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle bench [engine] -m MODEL [--concurrency 1,8,32,64] [--prompt-len 128] [--gen-len 128]\n"
               "                    [--threads 2] [--device cpu|cuda:N] [--kv-type f16|f32|q8_0] [--json]\n"
               "       waggle bench [engine] -m MODEL --single [--threads 1,2] [--prompt-len 128] [--gen-len 64]\n"
               "                    [--reps 3] [--mem-mb 512] [--device cpu|cuda:N] [--kv-type f16|f32|q8_0] [--json]\n"
               "  --kv-type T  K/V cache elements: f16 (default on the CPU, as llama-bench), f32 (the engine's\n"
               "               library default and the only type on CUDA) or q8_0\n"
               "  --shared-prefix N  the first N prompt tokens are the same in every request (default 0)\n"
               "  --no-prefix-cache  compute every prompt in full (default: cached prompt blocks are shared)\n");
}

int wg_bench_engine_main(int argc, char **argv) {
    const char *model = NULL, *conc = "1,8,32,64", *thr = NULL;
    long P = 128, G = -1, threads = 2, reps = 3, mem_mb = 512;
    bool json = false, single = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--single")) {
            single = true;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            s_no_pc = true;
        } else if (!v) {
            fprintf(stderr, "waggle bench: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            model = argv[++i];
        } else if (!strcmp(a, "--device") || !strcmp(a, "-d")) {
            s_device = argv[++i];
            if (!wg_cli_device_ok("bench", s_device)) return 2;
            wg_device_parse(s_device, &s_cuda);
        } else if (!strcmp(a, "--kv-type")) {
            if (!wg_cli_kv_type_ok("bench", argv[++i], &s_kv_type)) return 2;
            s_kv_type_set = true;
        } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-c")) {
            conc = argv[++i];
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            thr = argv[++i];
        } else if (!strcmp(a, "--prompt-len") || !strcmp(a, "--gen-len") || !strcmp(a, "--reps") ||
                   !strcmp(a, "--mem-mb") || !strcmp(a, "--shared-prefix")) {
            char *end;
            errno = 0;
            long x = strtol(v, &end, 10);
            if (errno || *end || x < 1 || x > 1 << 20) {
                fprintf(stderr, "waggle bench: %s '%s' must be a positive integer\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--prompt-len")) P = x;
            else if (!strcmp(a, "--gen-len")) G = x;
            else if (!strcmp(a, "--reps")) reps = x;
            else if (!strcmp(a, "--shared-prefix")) s_shared = x;
            else mem_mb = x;
            i++;
        } else {
            fprintf(stderr, "waggle bench: unknown option '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!model) {
        s_usage(stderr);
        return 2;
    }
    int thr_list[16] = {2}, n_thr = 1;
    if (thr) {
        n_thr = 0;
        for (const char *p = thr; *p && n_thr < 16;) {
            char *end;
            long t = strtol(p, &end, 10);
            if (end == p || t < 1 || t > 1024 || (*end && *end != ',')) {
                fprintf(stderr, "waggle bench: bad --threads list '%s'\n", thr);
                return 2;
            }
            thr_list[n_thr++] = (int)t;
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (!single && n_thr != 1) {
        fprintf(stderr, "waggle bench: --threads takes one value without --single\n");
        return 2;
    }
    if (single && reps > 64) {
        fprintf(stderr, "waggle bench: --reps %ld is more than 64\n", reps);
        return 2;
    }
    threads = thr_list[0];
    if (G < 0) G = single ? 64 : 128;
    if (s_cuda >= 0 && !s_kv_type_set) s_kv_type = WG_KV_F32;
    if (single && !thr) {
        thr_list[0] = 1;
        thr_list[1] = 2;
        n_thr = 2;
    }
    int32_t concs[32];
    int n_conc = 0;
    for (const char *p = conc; *p && n_conc < 32;) {
        char *end;
        long c = strtol(p, &end, 10);
        if (end == p || c < 1 || c > 4096) {
            fprintf(stderr, "waggle bench: bad --concurrency list '%s'\n", conc);
            return 2;
        }
        concs[n_conc++] = (int32_t)c;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "waggle bench: bad --concurrency list '%s'\n", conc);
            return 2;
        }
    }
    wg_model_t *m = NULL;
    if (wg_model_load(model, &m) != WG_OK) {
        fprintf(stderr, "waggle bench: cannot load '%s': %s\n", model, wg_errmsg());
        return 1;
    }
    if (s_cuda >= 0) {
        if (wg_device_probe(s_device, s_dev_name, sizeof s_dev_name, &s_dev_bw) != WG_OK) {
            fprintf(stderr, "waggle bench: %s\n", wg_errmsg());
            wg_model_free(&m);
            return 1;
        }
        if (!json) fprintf(stderr, "%s: %s, copy bandwidth %.0f GB/s\n", s_device, s_dev_name, s_dev_bw);
        if (single && !thr) n_thr = 1;
    }
    if (single) {
        const int rc = s_bench_single(model, m, thr_list, n_thr, (int32_t)P, (int32_t)G, (int)reps,
                                      (size_t)mem_mb << 20, json);
        wg_model_free(&m);
        return rc;
    }
    const wg_hparams_t *hp = wg_model_hparams(m);
    s_res_t res[32];
    for (int k = 0; k < n_conc; k++) {
        if (s_bench_one(m, concs[k], (int32_t)P, (int32_t)G, (int)threads, &res[k]) != 0) {
            wg_model_free(&m);
            return 1;
        }
        if (!json)
            fprintf(stderr, "concurrency %d done in %.1f s\n", concs[k], res[k].wall);
    }
    double d1 = 0, d32 = 0, d1s = 0, d64 = 0; /* decode tok/s; pure-decode-step tok/s */
    for (int k = 0; k < n_conc; k++) {
        if (res[k].conc == 1) {
            d1 = res[k].decode_tok_s;
            d1s = res[k].decode_step_tok_s;
        }
        if (res[k].conc == 32) d32 = res[k].decode_tok_s;
        if (res[k].conc == 64) d64 = res[k].decode_step_tok_s;
    }
    /* GPU: model-bandwidth utilisation of the pure-decode steps (weights read
     * once per step, shared by its C tokens) against the measured copy bandwidth. */
    const double wbytes = s_bytes_per_token(m);
    json_t *rows = json_array();
    for (int k = 0; k < n_conc; k++) {
        s_res_t *r = &res[k];
        if (s_cuda >= 0) r->roofline_tok_s = s_dev_bw * 1e9 / wbytes * r->conc;
        json_t *row =
            json_pack("{s:i, s:f, s:f, s:f, s:{s:f, s:f}, s:{s:f, s:f}, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I}",
                      "concurrency", r->conc, "prefill_tok_s", r->prefill_tok_s, "decode_tok_s", r->decode_tok_s,
                      "decode_only_steps_tok_s", r->decode_step_tok_s, "ttft_ms", "p50", r->ttft_p50, "p99",
                      r->ttft_p99, "itl_ms", "p50", r->itl_p50, "p99", r->itl_p99, "kv_bytes_used",
                      (json_int_t)r->kv_used, "kv_bytes_budget", (json_int_t)r->kv_budget, "steps",
                      (json_int_t)r->steps, "preemptions", (json_int_t)r->preemptions, "wall_s", r->wall,
                      "matmul_roofline_tok_s", r->roofline_tok_s, "decode_vs_roofline",
                      r->roofline_tok_s > 0 ? r->decode_step_tok_s / r->roofline_tok_s : 0.0,
                      "prefix_cache_hit_tokens", (json_int_t)r->prefix_hits);
        if (r->roofline_med_tok_s > 0) {
            json_object_set_new(row, "matmul_roofline_median_tok_s", json_real(r->roofline_med_tok_s));
            json_object_set_new(row, "decode_vs_roofline_median", json_real(r->decode_step_tok_s / r->roofline_med_tok_s));
        }
        json_array_append_new(rows, row);
    }
    json_t *doc = json_pack("{s:s, s:s, s:I, s:i, s:i, s:i, s:s, s:i, s:i, s:o}", "model", model, "arch", hp->arch,
                            "weight_bytes", (json_int_t)wg_model_weight_bytes(m), "n_layer", hp->n_layer, "n_embd",
                            hp->n_embd, "n_vocab", hp->n_vocab, "simd", wg_cpu_simd_name(), "threads", (int)threads,
                            "prompt_len", (int)P, "results", rows);
    json_object_set_new(doc, "gen_len", json_integer(G));
    json_object_set_new(doc, "device", json_string(s_device));
    json_object_set_new(doc, "kv_type", json_string(wg_kv_type_name(s_kv_type)));
    json_object_set_new(doc, "shared_prefix", json_integer(s_shared));
    json_object_set_new(doc, "prefix_cache", json_boolean(!s_no_pc));
    if (s_cuda >= 0) {
        json_object_set_new(doc, "device_name", json_string(s_dev_name));
        json_object_set_new(doc, "device_copy_bw_gbs", json_real(s_dev_bw));
        json_object_set_new(doc, "weight_bytes_per_step", json_integer((json_int_t)llround(wbytes)));
        json_object_set_new(doc, "roofline", json_string("weights read once per step at the copy bandwidth; "
                                                         "decode_vs_roofline = model-bandwidth utilisation"));
        if (d1s > 0 && d64 > 0) json_object_set_new(doc, "decode_step_gain_c64_over_c1", json_real(d64 / d1s));
    }
    if (d1 > 0 && d32 > 0) json_object_set_new(doc, "decode_gain_c32_over_c1", json_real(d32 / d1));
    if (json) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        puts(s);
        free(s);
    } else {
        printf("model %s (%s, %.1f MB weights), %ld threads, %s, prompt %ld, gen %ld, kv %s\n", model, hp->arch,
               (double)wg_model_weight_bytes(m) / 1e6, threads, wg_cpu_simd_name(), P, G, wg_kv_type_name(s_kv_type));
        printf("%6s %12s %12s %12s %10s %10s %9s %9s %10s %12s %7s %9s\n", "conc", "prefill t/s", "decode t/s",
               "dec-step t/s", "ttft p50", "ttft p99", "itl p50", "itl p99", "kv MB", "roofline t/s", "ratio",
               "ratio med");
        for (int k = 0; k < n_conc; k++) {
            s_res_t *r = &res[k];
            printf("%6d %12.1f %12.1f %12.1f %8.1fms %8.1fms %7.2fms %7.2fms %10.2f %12.1f %7.2f %9.2f\n", r->conc,
                   r->prefill_tok_s, r->decode_tok_s, r->decode_step_tok_s, r->ttft_p50, r->ttft_p99, r->itl_p50,
                   r->itl_p99, (double)r->kv_used / 1e6, r->roofline_tok_s,
                   r->roofline_tok_s > 0 ? r->decode_step_tok_s / r->roofline_tok_s : 0.0,
                   r->roofline_med_tok_s > 0 ? r->decode_step_tok_s / r->roofline_med_tok_s : 0.0);
        }
        if (s_shared > 0)
            for (int k = 0; k < n_conc; k++)
                printf("concurrency %d: %lld of %lld prompt tokens found in the prefix cache%s\n", res[k].conc,
                       (long long)res[k].prefix_hits, (long long)res[k].conc * P, s_no_pc ? " (cache off)" : "");
        if (d1 > 0 && d32 > 0) printf("decode gain of concurrency 32 over 1: %.2fx\n", d32 / d1);
        if (s_cuda >= 0)
            printf("%s (%s): roofline = weights (%.1f MB) read once per step at %.0f GB/s; ratio = MBU\n",
                   s_device, s_dev_name, wbytes / 1e6, s_dev_bw);
        if (s_cuda >= 0 && d1s > 0 && d64 > 0)
            printf("decode-step gain of concurrency 64 over 1: %.2fx\n", d64 / d1s);
    }
    json_decref(doc);
    wg_model_free(&m);
    return 0;
}
