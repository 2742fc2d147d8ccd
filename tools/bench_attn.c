/* bench_attn — `waggle bench attention`: the CPU backend's decode attention
 * over the paged cache, alone, against the machine's read bandwidth.
 *
 * A decode step of S sequences at context C reads every cached K and V row
 * of every layer once: S * C * layers * (k_row + v_row) bytes. Those bytes
 * divided by the measured read bandwidth are the step's attention roofline;
 * the benchmark reports the time of one call per layer (n_tok = S, each token
 * at position C-1 of its own sequence) and the fraction of that roofline. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "bench_membw.h"
#include "common/wg_status.h"
#include "engine/model/wg_backend.h"
#include "engine/model/wg_kv.h"
#include "kernels/cpu/wg_cpu.h"

typedef struct {
    int seqs, ctx, layers, heads, kv_heads, head_dim, threads, reps;
    wg_kv_type_t kt;
    int json;
} s_opts;

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle bench attention [--seqs 32] [--ctx 192] [--layers 12] [--heads 12] [--kv-heads 12]\n"
               "                              [--head-dim 64] [--kv-type f16|f32|q8_0] [--threads 2] [--reps 5] [--json]\n"
               "  one decode step's attention (one query token per sequence, every layer) over a\n"
               "  paged cache of random K/V; reports ms per step, K/V GB/s and the fraction of the\n"
               "  measured read bandwidth (the roofline: attention reads each cached row once).\n");
}

static int s_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end = NULL;
    const long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "waggle bench attention: %s wants an integer in [%d, %d], got '%s'\n", flag, lo, hi,
                v ? v : "(nothing)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int s_parse(int argc, char **argv, s_opts *o) {
    *o = (s_opts){.seqs = 32, .ctx = 192, .layers = 12, .heads = 12, .kv_heads = 12, .head_dim = 64,
                  .threads = 2, .reps = 5, .kt = WG_KV_F16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--seqs") == 0) rc = s_int(a, v, 1, 4096, &o->seqs);
        else if (strcmp(a, "--ctx") == 0) rc = s_int(a, v, 1, 1 << 20, &o->ctx);
        else if (strcmp(a, "--layers") == 0) rc = s_int(a, v, 1, 1024, &o->layers);
        else if (strcmp(a, "--heads") == 0) rc = s_int(a, v, 1, 1024, &o->heads);
        else if (strcmp(a, "--kv-heads") == 0) rc = s_int(a, v, 1, 1024, &o->kv_heads);
        else if (strcmp(a, "--head-dim") == 0) rc = s_int(a, v, 8, 1024, &o->head_dim);
        else if (strcmp(a, "--threads") == 0) rc = s_int(a, v, 1, 1024, &o->threads);
        else if (strcmp(a, "--reps") == 0) rc = s_int(a, v, 1, 1000, &o->reps);
        else if (strcmp(a, "--kv-type") == 0) {
            if (!v || wg_kv_type_parse(v, &o->kt) != WG_OK) {
                fprintf(stderr, "waggle bench attention: --kv-type wants f16, f32 or q8_0, got '%s'\n",
                        v ? v : "(nothing)");
                return -1;
            }
        } else {
            fprintf(stderr, "waggle bench attention: unknown option '%s'\n", a);
            s_usage(stderr);
            return -1;
        }
        if (rc) return -1;
        i++;
    }
    if (o->heads % o->kv_heads) {
        fprintf(stderr, "waggle bench attention: --heads (%d) must be a multiple of --kv-heads (%d)\n", o->heads,
                o->kv_heads);
        return -1;
    }
    return 0;
}

int wg_bench_attn(int argc, char **argv) {
    s_opts o;
    if (s_parse(argc, argv, &o)) return 2;
    const int32_t kd = o.kv_heads * o.head_dim;
    const int32_t bt = WG_KV_DEFAULT_BLOCK;
    const int32_t blocks_seq = (o.ctx + bt - 1) / bt;
    const size_t row_b = wg_kv_row_bytes(o.kt, kd);
    const size_t budget = (size_t)o.seqs * blocks_seq * bt * o.layers * 2 * row_b;
    wg_kv_t *kv = wg_kv_new_typed(o.layers, kd, kd, bt, budget, o.kt);
    if (!kv) {
        fprintf(stderr, "waggle bench attention: cache of %zu bytes: %s\n", budget, wg_errmsg());
        return 1;
    }
    wg_kv_prefault(kv);
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)o.seqs), *pos = malloc(sizeof(int32_t) * (size_t)o.seqs);
    float *row = malloc(sizeof(float) * (size_t)kd);
    float *q = malloc(sizeof(float) * (size_t)o.seqs * o.heads * o.head_dim);
    float *out = malloc(sizeof(float) * (size_t)o.seqs * o.heads * o.head_dim);
    wg_pool_t *pool = o.threads > 1 ? wg_pool_new(o.threads) : NULL;
    if (!seq || !pos || !row || !q || !out || (o.threads > 1 && !pool)) {
        fprintf(stderr, "waggle bench attention: out of memory\n");
        return 1;
    }
    uint64_t rs = 0x9e3779b97f4a7c15ull;
    fprintf(stderr, "waggle bench attention: filling %d sequences x %d positions x %d layers (%.1f MB of K/V)\n",
            o.seqs, o.ctx, o.layers, (double)o.seqs * o.ctx * o.layers * 2 * row_b / 1e6);
    /* Sequences take their blocks in turn, one block each per round, so
     * their blocks interleave in the pool as those of a batch that grew
     * together do. */
    for (int s = 0; s < o.seqs; s++)
        if (wg_kv_seq_new(kv, &seq[s]) != WG_OK) {
            fprintf(stderr, "waggle bench attention: %s\n", wg_errmsg());
            return 1;
        }
    for (int32_t b = 1; b <= blocks_seq; b++)
        for (int s = 0; s < o.seqs; s++) {
            const int32_t len = b * bt < o.ctx ? b * bt : o.ctx;
            if (wg_kv_reserve(kv, seq[s], len) != WG_OK) {
                fprintf(stderr, "waggle bench attention: %s\n", wg_errmsg());
                return 1;
            }
        }
    for (int s = 0; s < o.seqs; s++) {
        wg_kv_seq_set_len(kv, seq[s], o.ctx);
        pos[s] = o.ctx - 1;
        for (int32_t l = 0; l < o.layers; l++)
            for (int32_t p = 0; p < o.ctx; p++) {
                for (int32_t i = 0; i < kd; i++) {
                    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
                    row[i] = (float)((int32_t)(rs >> 40) - (1 << 23)) / (float)(1 << 23);
                }
                wg_kv_put_k(kv, l, seq[s], p, row, kd);
                wg_kv_put_v(kv, l, seq[s], p, row, kd);
            }
    }
    for (size_t i = 0; i < (size_t)o.seqs * o.heads * o.head_dim; i++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        q[i] = (float)((int32_t)(rs >> 40) - (1 << 23)) / (float)(1 << 23);
    }
    wg_attn_args_t a = {.kv = kv, .n_tok = o.seqs, .seq = seq, .pos = pos, .q = q,
                        .q_stride = (int64_t)o.heads * o.head_dim, .out = out, .n_head = o.heads,
                        .n_head_kv = o.kv_heads, .head_dim = o.head_dim, .head_dim_v = o.head_dim,
                        .scale = 1.0f / sqrtf((float)o.head_dim)};
    double *t = malloc(sizeof(double) * (size_t)o.reps);
    double bw_best = 0;
    const double bw = wg_bench_read_bw(512u << 20, o.threads, 5, &bw_best);
    for (int r = -1; r < o.reps; r++) { /* r = -1: warm-up */
        const double t0 = wg_bench_now();
        for (int32_t l = 0; l < o.layers; l++) {
            a.layer = l;
            if (wg_backend_cpu.attention(pool, &a) != WG_OK) {
                fprintf(stderr, "waggle bench attention: %s\n", wg_errmsg());
                return 1;
            }
        }
        if (r >= 0) t[r] = wg_bench_now() - t0;
    }
    double bw_after_best = 0;
    const double bw_after = wg_bench_read_bw(512u << 20, o.threads, 5, &bw_after_best);
    qsort(t, (size_t)o.reps, sizeof *t, wg_bench_cmp_double);
    /* FNV-1a of the last layer's outputs: equal across builds whose kernels
     * give the same bits */
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *ob = (const unsigned char *)out;
    for (size_t i = 0; i < sizeof(float) * (size_t)o.seqs * o.heads * o.head_dim; i++) h = (h ^ ob[i]) * 0x100000001b3ull;
    char hs[17];
    snprintf(hs, sizeof hs, "%016llx", (unsigned long long)h);
    const double med = t[o.reps / 2], best = t[0];
    const double bytes = (double)o.seqs * o.ctx * o.layers * 2 * (double)row_b;
    const double roof_bw = bw > bw_after ? bw : bw_after;
    const double roof_ms = bytes / (roof_bw * 1e9) * 1e3;
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s}",
                          "seqs", o.seqs, "ctx", o.ctx, "layers", o.layers, "heads", o.heads, "kv_heads",
                          o.kv_heads, "head_dim", o.head_dim, "kv_type", wg_kv_type_name(o.kt), "threads",
                          o.threads, "kv_bytes_per_step", bytes, "step_ms_median", med * 1e3, "step_ms_best",
                          best * 1e3, "kv_gb_s", bytes / med / 1e9, "read_bw_gb_s_before", bw,
                          "read_bw_gb_s_after", bw_after, "roofline_ms", roof_ms, "vs_roofline", roof_ms / (med * 1e3),
                          "out_fnv1a", hs);
    if (o.json) {
        char *s = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else {
        printf("attention %s: %d seqs x ctx %d x %d layers, %d/%d heads of %d: %.3f ms/step (best %.3f), "
               "%.1f GB/s of K/V; read bandwidth %.1f / %.1f GB/s; roofline %.3f ms = %.2f; out %s\n",
               wg_kv_type_name(o.kt), o.seqs, o.ctx, o.layers, o.heads, o.kv_heads, o.head_dim, med * 1e3,
               best * 1e3, bytes / med / 1e9, bw, bw_after, roof_ms, roof_ms / (med * 1e3), hs);
    }
    json_decref(j);
    free(t);
    free(seq);
    free(pos);
    free(row);
    free(q);
    free(out);
    wg_pool_destroy(&pool);
    wg_kv_free(&kv);
    return 0;
}
