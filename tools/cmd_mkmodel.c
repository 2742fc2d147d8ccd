/* waggle mkmodel — write a random-weight model of about N parameters as a real
 * GGUF (benchmarks and load tests without downloading weights).
 *
 * Dimensions follow real models of that size (see s_presets); weights are
 * N(0, 1/fan_in), norms 1. Quantized files use the reference quantizers
 * (wg_type_traits()->from_float), with llama.cpp's K-quant mixes for the _M
 * types: Q4_K_M / Q5_K_M keep attn_v and ffn_down in Q6_K on the layers
 * llama.cpp's use_more_bits() picks (first and last eighth, every third in
 * between) and the output matrix in Q6_K. The tokenizer is copied from
 * --vocab GGUF or synthesized (SentencePiece layout: <unk> <s> </s>, 256 byte
 * tokens, then generated pieces with descending scores). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "kernels/cpu/wg_cpu.h"
#include "kernels/ref/wg_ref.h"
#include "waggle.h"

typedef struct {
    int64_t n_embd;    /* width */
    int32_t n_layer;   /* blocks */
    int64_t n_ff;      /* FFN width */
    int32_t n_head;    /* query heads */
    int32_t n_head_kv; /* kv heads */
} s_dims_t;

/* Shapes of real models, smallest first (head_dim 64 or 128). The ~100M
 * shape has 4 kv heads for its 12 query heads: the 3:1 grouped-query
 * attention of today's ~125M Llama-family models (SmolLM-135M,
 * MobileLLM-125M); --kv-heads 12 gives the multi-head variant. */
static const s_dims_t s_presets[] = {
    {256, 4, 768, 4, 4},       {512, 8, 1536, 8, 8},       {768, 12, 2048, 12, 4},
    {1024, 16, 2816, 16, 8},   {1536, 20, 4096, 12, 4},    {2048, 16, 8192, 32, 8},
    {2048, 22, 5632, 32, 4},   {3072, 28, 8192, 24, 8},    {4096, 32, 11008, 32, 32},
    {4096, 32, 14336, 32, 8},  {5120, 40, 13824, 40, 40},  {8192, 80, 28672, 64, 8},
};

typedef struct {
    const char *arch;   /* GGUF architecture */
    bool tied;          /* no output matrix */
    bool qkv_bias;      /* q/k/v biases (qwen2) */
    bool qk_norm;       /* per-head q/k norms (qwen3) */
    float rope_base;    /* frequency base */
    float eps;          /* rms epsilon */
} s_arch_t;

static const s_arch_t s_archs[] = {
    {"llama", false, false, false, 10000.0f, 1e-5f},
    {"qwen2", true, true, false, 1000000.0f, 1e-6f},
    {"qwen3", true, false, true, 1000000.0f, 1e-6f},
};

/* splitmix64: advance *state, return the mixed value. */
static uint64_t s_splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t s_rng;
static uint64_t s_next(void) { return s_splitmix(&s_rng); }
static float s_gauss(void) {
    double u1 = ((double)(s_next() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(s_next() >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static int64_t s_count(const s_dims_t *d, int64_t vocab, bool tied) {
    const int64_t E = d->n_embd, hd = E / d->n_head, kv = hd * d->n_head_kv;
    int64_t per = E * E * 2 + E * kv * 2 + 3 * E * d->n_ff + 2 * E;
    return vocab * E * (tied ? 1 : 2) + d->n_layer * per + E;
}

static int s_parse_params(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v <= 0) return -1;
    if (*end == 'k' || *end == 'K') v *= 1e3, end++;
    else if (*end == 'm' || *end == 'M') v *= 1e6, end++;
    else if (*end == 'b' || *end == 'B' || *end == 'g' || *end == 'G') v *= 1e9, end++;
    if (*end) return -1;
    *out = v;
    return 0;
}

/* llama.cpp's choice of layers that get more bits in the _M mixes. */
static bool s_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

typedef struct {
    wg_type_t base;     /* most matrices */
    wg_type_t more;     /* attn_v / ffn_down on use_more_bits layers (COUNT = same as base) */
    wg_type_t output;   /* output matrix */
    uint32_t file_type; /* general.file_type (llama_ftype) */
} s_mix_t;

static int s_mix(const char *name, s_mix_t *mx) {
    static const struct {
        const char *name;
        wg_type_t base, more, output;
        uint32_t ft;
    } t[] = {
        {"F32", WG_TYPE_F32, WG_TYPE_COUNT, WG_TYPE_F32, 0},
        {"F16", WG_TYPE_F16, WG_TYPE_COUNT, WG_TYPE_F16, 1},
        {"BF16", WG_TYPE_BF16, WG_TYPE_COUNT, WG_TYPE_BF16, 32},
        {"Q8_0", WG_TYPE_Q8_0, WG_TYPE_COUNT, WG_TYPE_Q8_0, 7},
        {"Q4_0", WG_TYPE_Q4_0, WG_TYPE_COUNT, WG_TYPE_Q6_K, 2},
        {"Q4_1", WG_TYPE_Q4_1, WG_TYPE_COUNT, WG_TYPE_Q6_K, 3},
        {"Q5_0", WG_TYPE_Q5_0, WG_TYPE_COUNT, WG_TYPE_Q6_K, 8},
        {"Q5_1", WG_TYPE_Q5_1, WG_TYPE_COUNT, WG_TYPE_Q6_K, 9},
        {"Q2_K", WG_TYPE_Q2_K, WG_TYPE_COUNT, WG_TYPE_Q6_K, 10},
        {"Q3_K", WG_TYPE_Q3_K, WG_TYPE_COUNT, WG_TYPE_Q6_K, 12},
        {"Q4_K", WG_TYPE_Q4_K, WG_TYPE_COUNT, WG_TYPE_Q6_K, 14},
        {"Q4_K_M", WG_TYPE_Q4_K, WG_TYPE_Q6_K, WG_TYPE_Q6_K, 15},
        {"Q5_K", WG_TYPE_Q5_K, WG_TYPE_COUNT, WG_TYPE_Q6_K, 16},
        {"Q5_K_M", WG_TYPE_Q5_K, WG_TYPE_Q6_K, WG_TYPE_Q6_K, 17},
        {"Q6_K", WG_TYPE_Q6_K, WG_TYPE_COUNT, WG_TYPE_Q6_K, 18},
        {"IQ4_NL", WG_TYPE_IQ4_NL, WG_TYPE_COUNT, WG_TYPE_Q6_K, 25},
        {"IQ4_XS", WG_TYPE_IQ4_XS, WG_TYPE_COUNT, WG_TYPE_Q6_K, 30},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcasecmp(t[i].name, name) == 0) {
            mx->base = t[i].base;
            mx->more = t[i].more == WG_TYPE_COUNT ? t[i].base : t[i].more;
            mx->output = t[i].output;
            mx->file_type = t[i].ft;
            return 0;
        }
    return -1;
}

/* Each matrix takes one draw of the main generator as its seed; row r then
 * has its own splitmix64 stream from (seed, r), so rows are generated and
 * quantized in parallel on every online CPU and a --seed still gives the
 * same file whatever the thread count. */
static wg_pool_t *s_pool;

typedef struct {
    const wg_type_traits_t *tr;  /* NULL for F32 */
    char *dst;                   /* [n][rb] */
    int64_t n, k;
    size_t rb;
    uint64_t seed;
    float scale;
} s_gen_job_t;

static void s_gen_rows(void *ctx, int ith, int nth) {
    const s_gen_job_t *j = ctx;
    const int64_t per = (j->n + nth - 1) / nth, r0 = per * ith, r1 = r0 + per < j->n ? r0 + per : j->n;
    float *row = j->tr ? malloc((size_t)j->k * sizeof(float)) : NULL;
    if (j->tr && !row) return; /* caller checks the sentinel below */
    for (int64_t r = r0; r < r1; r++) {
        float *v = j->tr ? row : (float *)(j->dst + (size_t)r * j->rb);
        uint64_t st = j->seed ^ ((uint64_t)(r + 1) * 0xD1B54A32D192ED03ull);
        for (int64_t i = 0; i < j->k; i += 2) { /* Box-Muller, both outputs */
            const uint64_t z1 = s_splitmix(&st), z2 = s_splitmix(&st);
            const double u1 = ((double)(z1 >> 11) + 1.0) / 9007199254740993.0;
            const double u2 = (double)(z2 >> 11) / 9007199254740992.0;
            const double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
            v[i] = (float)(rad * cos(th)) * j->scale;
            if (i + 1 < j->k) v[i + 1] = (float)(rad * sin(th)) * j->scale;
        }
        if (j->tr) j->tr->from_float(row, j->dst + (size_t)r * j->rb, j->k);
    }
    free(row);
}

/* Random [n][k] matrix N(0, scale^2), quantized to `type`, added to the file. */
static wg_status s_add_matrix(wg_gguf_writer_t *w, const char *name, wg_type_t type, int64_t k, int64_t n,
                              float scale) {
    const wg_type_traits_t *tr = wg_type_traits(type);
    if (!tr || (type != WG_TYPE_F32 && !tr->from_float))
        return wg_error(WG_ERR_UNSUPPORTED, "%s: no quantizer for %s", name, wg_type_name(type));
    if (k % tr->blck_size) return wg_error(WG_ERR_INVAL, "%s: row %lld not a multiple of %s blocks", name, (long long)k, tr->name);
    size_t rb = wg_row_size(type, k);
    char *data = malloc(rb * (size_t)n);
    if (!data) return wg_error(WG_ERR_NOMEM, "%s: %zu bytes", name, rb * (size_t)n);
    s_gen_job_t j = {type == WG_TYPE_F32 ? NULL : tr, data, n, k, rb, s_next(), scale};
    if (s_pool)
        wg_pool_run(s_pool, s_gen_rows, &j);
    else
        s_gen_rows(&j, 0, 1);
    int64_t ne[2] = {k, n};
    wg_status st = wg_gguf_writer_add_tensor(w, name, type, 2, ne, data);
    free(data);
    return st;
}

static wg_status s_add_vec(wg_gguf_writer_t *w, const char *name, int64_t n, float base, float jitter) {
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return wg_error(WG_ERR_NOMEM, "%s", name);
    for (int64_t i = 0; i < n; i++) v[i] = base + jitter * s_gauss();
    int64_t ne[1] = {n};
    wg_status st = wg_gguf_writer_add_tensor(w, name, WG_TYPE_F32, 1, ne, v);
    free(v);
    return st;
}

/* Copy every tokenizer.* key of `path`; *n_vocab gets its size. */
static wg_status s_copy_vocab(wg_gguf_writer_t *w, const char *path, int64_t *n_vocab) {
    wg_gguf_t *g = NULL;
    wg_status st = wg_gguf_open(path, &g);
    if (st) return st;
    *n_vocab = 0;
    for (int64_t i = 0; i < wg_gguf_n_kv(g) && !st; i++) {
        const char *k = wg_gguf_kv_key(g, i);
        if (strncmp(k, "tokenizer.", 10) != 0) continue;
        const wg_gguf_value_t *v = wg_gguf_kv_value(g, i);
        if (strcmp(k, "tokenizer.ggml.tokens") == 0 && v->type == WG_GGUF_ARRAY) *n_vocab = (int64_t)v->v.arr.n;
        st = wg_gguf_writer_set_value(w, k, v);
    }
    wg_gguf_close(&g);
    if (!st && *n_vocab == 0) st = wg_error(WG_ERR_FORMAT, "%s: no tokenizer.ggml.tokens", path);
    return st;
}

/* SentencePiece-style vocabulary of n entries (n >= 259 + 1). */
static wg_status s_synth_vocab(wg_gguf_writer_t *w, int64_t n) {
    char **toks = calloc((size_t)n, sizeof *toks);
    float *scores = malloc((size_t)n * sizeof(float));
    int32_t *types = malloc((size_t)n * sizeof(int32_t));
    wg_status st = WG_OK;
    if (!toks || !scores || !types) {
        st = wg_error(WG_ERR_NOMEM, "vocab of %lld", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        char buf[32];
        if (i == 0) snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1) snprintf(buf, sizeof buf, "<s>");
        else if (i == 2) snprintf(buf, sizeof buf, "</s>");
        else if (i < 259) snprintf(buf, sizeof buf, "<0x%02X>", (unsigned)(i - 3));
        else {
            /* Piece j: "▁" + base-26 word (odd j) or the bare word (even j). */
            int64_t j = (i - 259) / 2 + 1;
            char word[16];
            int len = 0;
            while (j > 0 && len < 15) {
                j--;
                word[len++] = (char)('a' + j % 26);
                j /= 26;
            }
            word[len] = 0;
            snprintf(buf, sizeof buf, "%s%s", (i - 259) % 2 == 0 ? "\xe2\x96\x81" : "", word);
        }
        toks[i] = strdup(buf);
        if (!toks[i]) {
            st = wg_error(WG_ERR_NOMEM, "vocab");
            goto done;
        }
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : (i < 3 ? 3 : (i < 259 ? 6 : 1));
    }
    if ((st = wg_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = wg_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n)) ||
        (st = wg_gguf_writer_set_arr(w, "tokenizer.ggml.scores", WG_GGUF_FLOAT32, scores, (uint64_t)n)) ||
        (st = wg_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", WG_GGUF_INT32, types, (uint64_t)n)) ||
        (st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = wg_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (st = wg_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) ||
        (st = wg_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)))
        goto done;
done:
    if (toks)
        for (int64_t i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return st;
}

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle mkmodel --params N[K|M|B] -o FILE [--arch llama|qwen2|qwen3] [--type TYPE]\n"
               "                      [--vocab VOCAB.gguf] [--vocab-size N] [--kv-heads N] [--seed S]\n"
               "  --kv-heads N  key/value heads (grouped-query attention; must divide the preset's query\n"
               "                heads; default: the preset's, e.g. 4 of 12 for ~100M, 8 of 32 for ~7B)\n"
               "  TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q4_K_M Q5_K Q5_K_M Q6_K IQ4_NL IQ4_XS\n");
}

int wg_cmd_mkmodel(int argc, char **argv) {
    const char *arch_name = "llama", *type_name = "F16", *out = NULL, *vocab = NULL;
    double params = 0;
    int64_t vocab_size = 32000;
    long kv_heads = 0;
    s_rng = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "waggle mkmodel: option %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--arch") == 0) arch_name = v;
        else if (strcmp(a, "--type") == 0) type_name = v;
        else if (strcmp(a, "-o") == 0) out = v;
        else if (strcmp(a, "--vocab") == 0) vocab = v;
        else if (strcmp(a, "--seed") == 0) s_rng = strtoull(v, NULL, 10);
        else if (strcmp(a, "--vocab-size") == 0) {
            vocab_size = strtoll(v, NULL, 10);
            if (vocab_size < 260 || vocab_size > 1000000) {
                fprintf(stderr, "waggle mkmodel: --vocab-size %s outside 260..1000000\n", v);
                return 2;
            }
        } else if (strcmp(a, "--kv-heads") == 0) {
            char *end = NULL;
            kv_heads = strtol(v, &end, 10);
            if (!end || *end || kv_heads < 1 || kv_heads > 1024) {
                fprintf(stderr, "waggle mkmodel: bad --kv-heads '%s' (a head count, 1..1024)\n", v);
                return 2;
            }
        } else if (strcmp(a, "--params") == 0) {
            if (s_parse_params(v, &params) || params < 1e5 || params > 2e11) {
                fprintf(stderr, "waggle mkmodel: bad --params '%s' (e.g. 100M, 1B; 100K..200B)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "waggle mkmodel: unknown option %s\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!out || params == 0) {
        fprintf(stderr, "waggle mkmodel: --params and -o are required\n");
        s_usage(stderr);
        return 2;
    }
    const s_arch_t *arch = NULL;
    for (size_t i = 0; i < sizeof s_archs / sizeof s_archs[0]; i++)
        if (strcmp(s_archs[i].arch, arch_name) == 0) arch = &s_archs[i];
    if (!arch) {
        fprintf(stderr, "waggle mkmodel: unknown --arch '%s' (llama, qwen2, qwen3)\n", arch_name);
        return 2;
    }
    s_mix_t mix;
    if (s_mix(type_name, &mix)) {
        fprintf(stderr, "waggle mkmodel: unknown --type '%s'\n", type_name);
        s_usage(stderr);
        return 2;
    }
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    if (!w) {
        fprintf(stderr, "waggle mkmodel: out of memory\n");
        return 1;
    }
    wg_status st = WG_OK;
    if (vocab) st = s_copy_vocab(w, vocab, &vocab_size);
    else st = s_synth_vocab(w, vocab_size);
    if (st) goto fail;
    /* Preset closest to the target in log scale. */
    const s_dims_t *d = &s_presets[0];
    double best = 1e300;
    for (size_t i = 0; i < sizeof s_presets / sizeof s_presets[0]; i++) {
        double c = (double)s_count(&s_presets[i], vocab_size, arch->tied);
        double dist = fabs(log(c / params));
        if (dist < best) {
            best = dist;
            d = &s_presets[i];
        }
    }
    s_dims_t dims = *d;
    if (kv_heads) {
        if (dims.n_head % kv_heads != 0) {
            fprintf(stderr,
                    "waggle mkmodel: --kv-heads %ld does not divide the %d query heads of the %lld-wide preset\n",
                    kv_heads, dims.n_head, (long long)dims.n_embd);
            wg_gguf_writer_destroy(&w);
            return 2;
        }
        dims.n_head_kv = (int32_t)kv_heads;
    }
    d = &dims;
    const int64_t E = d->n_embd, F = d->n_ff, hd = E / d->n_head, kvd = hd * d->n_head_kv;
    const int64_t n_params = s_count(d, vocab_size, arch->tied);
    char key[128];
#define S_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch->arch), key)
    if ((st = wg_gguf_writer_set_str(w, "general.architecture", arch->arch)) ||
        (st = wg_gguf_writer_set_str(w, "general.name", "waggle-mkmodel random weights")) ||
        (st = wg_gguf_writer_set_u32(w, "general.file_type", mix.file_type)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("context_length"), 4096)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("embedding_length"), (uint32_t)E)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("block_count"), (uint32_t)d->n_layer)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("feed_forward_length"), (uint32_t)F)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("attention.head_count"), (uint32_t)d->n_head)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("attention.head_count_kv"), (uint32_t)d->n_head_kv)) ||
        (st = wg_gguf_writer_set_f32(w, S_KEY("rope.freq_base"), arch->rope_base)) ||
        (st = wg_gguf_writer_set_f32(w, S_KEY("attention.layer_norm_rms_epsilon"), arch->eps)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("rope.dimension_count"), (uint32_t)hd)) ||
        (st = wg_gguf_writer_set_u32(w, S_KEY("vocab_size"), (uint32_t)vocab_size)))
        goto fail;
#undef S_KEY
    fprintf(stderr, "waggle mkmodel: %s n_embd=%lld n_layer=%d n_ff=%lld heads=%d/%d vocab=%lld -> %.1fM params, %s\n",
            arch->arch, (long long)E, d->n_layer, (long long)F, d->n_head, d->n_head_kv, (long long)vocab_size,
            (double)n_params / 1e6, type_name);
    const float se = 1.0f / sqrtf((float)E), sf = 1.0f / sqrtf((float)F);
    const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s_pool = wg_pool_new(ncpu > 1 ? (int)(ncpu < 64 ? ncpu : 64) : 1); /* NULL: quantize on this thread */
    if ((st = s_add_matrix(w, "token_embd.weight", mix.base, E, vocab_size, 1.0f)) ||
        (st = s_add_vec(w, "output_norm.weight", E, 1.0f, 0.0f)))
        goto fail;
    if (!arch->tied && (st = s_add_matrix(w, "output.weight", mix.output, E, vocab_size, 2.0f * se))) goto fail;
    for (int il = 0; il < d->n_layer; il++) {
        char nm[96];
        const wg_type_t tv = s_more_bits(il, d->n_layer) ? mix.more : mix.base;
#define S_NM(s) (snprintf(nm, sizeof nm, "blk.%d." s, il), nm)
        if ((st = s_add_vec(w, S_NM("attn_norm.weight"), E, 1.0f, 0.0f)) ||
            (st = s_add_matrix(w, S_NM("attn_q.weight"), mix.base, E, E, se)) ||
            (st = s_add_matrix(w, S_NM("attn_k.weight"), mix.base, E, kvd, se)) ||
            (st = s_add_matrix(w, S_NM("attn_v.weight"), tv, E, kvd, se)) ||
            (st = s_add_matrix(w, S_NM("attn_output.weight"), mix.base, E, E, se)) ||
            (st = s_add_vec(w, S_NM("ffn_norm.weight"), E, 1.0f, 0.0f)) ||
            (st = s_add_matrix(w, S_NM("ffn_gate.weight"), mix.base, E, F, se)) ||
            (st = s_add_matrix(w, S_NM("ffn_up.weight"), mix.base, E, F, se)) ||
            (st = s_add_matrix(w, S_NM("ffn_down.weight"), tv, F, E, sf)))
            goto fail;
        if (arch->qkv_bias &&
            ((st = s_add_vec(w, S_NM("attn_q.bias"), E, 0.0f, 0.1f)) ||
             (st = s_add_vec(w, S_NM("attn_k.bias"), kvd, 0.0f, 0.1f)) ||
             (st = s_add_vec(w, S_NM("attn_v.bias"), kvd, 0.0f, 0.1f))))
            goto fail;
        if (arch->qk_norm && ((st = s_add_vec(w, S_NM("attn_q_norm.weight"), hd, 1.0f, 0.0f)) ||
                              (st = s_add_vec(w, S_NM("attn_k_norm.weight"), hd, 1.0f, 0.0f))))
            goto fail;
#undef S_NM
    }
    if ((st = wg_gguf_writer_write(w, out))) goto fail;
    wg_gguf_writer_destroy(&w);
    wg_pool_destroy(&s_pool);
    fprintf(stderr, "waggle mkmodel: wrote %s\n", out);
    return 0;
fail:
    wg_pool_destroy(&s_pool);
    fprintf(stderr, "waggle mkmodel: %s: %s\n", wg_strerror(st), wg_errmsg());
    wg_gguf_writer_destroy(&w);
    return 1;
}
