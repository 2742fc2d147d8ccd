/* waggle generate — generate text from a prompt with one model on the CPU:
 * prefill the prompt in one batch, then decode token by token through the
 * sampler. Text streams to stdout as it is produced (timings on stderr), or
 * one JSON object with --json. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/model/wg_model.h"
#include "engine/sampler/wg_sampler.h"
#include "engine/tokenizer/wg_tok.h"
#include "waggle.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle generate -m MODEL (-p TEXT | --tokens ID,ID,...) [options]\n"
            "  -n N            tokens to generate (default 64)\n"
            "  --temp T        temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K       (default 40, 0 = off)    --top-p P (default 0.95)\n"
            "  --min-p P       (default 0.05)           --seed S\n"
            "  --threads N     CPU threads (default 2)  --ignore-eos  --json\n"
            "  --device D      cpu (default) or cuda:N\n"
            "  --kv-type T     K/V cache elements: f32 (default, the reference numbers), f16 (half the\n"
            "                  cache, faster attention; logits within ~1e-2 of f32) or q8_0 (0.53 of f16;\n"
            "                  head sizes that are multiples of 32)\n"
            "  --max-context N prompt + generated tokens at most (default: the model's trained context;\n"
            "                  -1: no limit); a longer prompt is an error, generation stops there\n"
            "MODEL is a GGUF file or an HF model directory. With --tokens no BOS is added;\n"
            "with -p the model's BOS rule applies.\n");
}

static double s_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int s_parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "waggle generate: bad token list at '%s'\n", p);
            free(v);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    *ids = v;
    *n = k;
    return 0;
}

static int s_num(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi)) {
        fprintf(stderr, "waggle generate: bad value for %s: '%s' (expected %g..%g)\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* Tokenizer of the model: GGUF metadata, or tokenizer.json in an HF dir. */
static wg_status s_tokenizer(const wg_model_t *m, wg_tok_t **tok) {
    *tok = NULL;
    if (wg_model_gguf(m)) return wg_tok_from_gguf(wg_model_gguf(m), tok);
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", wg_model_path(m));
    struct stat sb;
    if (stat(p, &sb) != 0) return wg_error(WG_ERR_NOTFOUND, "%s: no tokenizer.json", wg_model_path(m));
    return wg_tok_from_json(p, tok);
}

int wg_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *toks = NULL;
    long n_gen = 64;
    int threads = 2;
    const char *device = "cpu";
    wg_kv_type_t kv_type = WG_KV_F32;
    long max_ctx = 0; /* --max-context: 0 = the model's trained context */
    bool json = false, ignore_eos = false;
    wg_sampling_params_t sp = wg_sampling_defaults();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double d;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (strcmp(a, "--ignore-eos") == 0) {
            ignore_eos = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "waggle generate: option %s needs a value\n", a);
            s_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) prompt = v;
        else if (strcmp(a, "--tokens") == 0) toks = v;
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0) {
            if (s_num(a, v, 0, 1 << 20, &d)) return 2;
            n_gen = (long)d;
        } else if (strcmp(a, "--temp") == 0) {
            if (s_num(a, v, 0, 100, &d)) return 2;
            sp.temperature = (float)d;
        } else if (strcmp(a, "--top-k") == 0) {
            if (s_num(a, v, 0, 1 << 30, &d)) return 2;
            sp.top_k = (int32_t)d;
        } else if (strcmp(a, "--top-p") == 0) {
            if (s_num(a, v, 0, 1, &d)) return 2;
            sp.top_p = (float)d;
        } else if (strcmp(a, "--min-p") == 0) {
            if (s_num(a, v, 0, 1, &d)) return 2;
            sp.min_p = (float)d;
        } else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end || errno) {
                fprintf(stderr, "waggle generate: bad --seed '%s'\n", v);
                return 2;
            }
            sp.seed = s;
            sp.has_seed = true;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
            if (s_num(a, v, 1, 1024, &d)) return 2;
            threads = (int)d;
        } else if (strcmp(a, "--device") == 0 || strcmp(a, "-d") == 0) {
            if (!wg_cli_device_ok("generate", v)) return 2;
            device = v;
        } else if (strcmp(a, "--kv-type") == 0) {
            if (!wg_cli_kv_type_ok("generate", v, &kv_type)) return 2;
        } else if (strcmp(a, "--max-context") == 0) {
            if (s_num(a, v, -1, 1 << 30, &d)) return 2;
            if (d != (double)(long)d) {
                fprintf(stderr, "waggle generate: --max-context must be -1, 0 or a token count, got '%s'\n", v);
                return 2;
            }
            max_ctx = (long)d;
        } else {
            fprintf(stderr, "waggle generate: unknown option %s\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!model || (!prompt == !toks)) {
        fprintf(stderr, "waggle generate: -m and exactly one of -p / --tokens are required\n");
        s_usage(stderr);
        return 2;
    }

    int rc = 1;
    wg_model_t *m = NULL;
    wg_tok_t *tok = NULL;
    wg_session_t *sess = NULL;
    wg_sampler_t *smp = NULL;
    wg_detok_t *detok = NULL;
    int32_t *ids = NULL, *gen = NULL;
    size_t n_ids = 0, n_out = 0;
    float *logits = NULL;
    char *text = NULL;
    const char *finish = "length";
    wg_status st = wg_model_load(model, &m);
    if (st) {
        fprintf(stderr, "waggle generate: %s: %s\n", wg_strerror(st), wg_errmsg());
        goto out;
    }
    const wg_hparams_t *hp = wg_model_hparams(m);
    st = s_tokenizer(m, &tok);
    if (st && prompt) {
        fprintf(stderr, "waggle generate: -p needs the model's tokenizer: %s\n", wg_errmsg());
        goto out;
    }
    if (prompt) {
        st = wg_tok_encode(tok, prompt, strlen(prompt), true, true, &ids, &n_ids);
        if (st) {
            fprintf(stderr, "waggle generate: tokenize: %s\n", wg_errmsg());
            goto out;
        }
    } else if (s_parse_ids(toks, &ids, &n_ids)) {
        rc = 2;
        goto out;
    }
    if (n_ids == 0) {
        fprintf(stderr, "waggle generate: empty prompt\n");
        goto out;
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= hp->n_vocab) {
            fprintf(stderr, "waggle generate: token id %d out of range [0, %d)\n", ids[i], hp->n_vocab);
            goto out;
        }
    /* The scheduler's limit, so `waggle run` and this give the same tokens
     * and stop at the same place. */
    const int64_t ctx = wg_model_context_limit(m, max_ctx);
    if ((int64_t)n_ids >= ctx) {
        fprintf(stderr,
                "waggle generate: prompt of %zu tokens does not fit the model's context of %lld tokens (one token "
                "must still be generated; --max-context changes the limit)\n",
                n_ids, (long long)ctx);
        goto out;
    }
    if ((int64_t)n_ids + n_gen > ctx) n_gen = (long)(ctx - (int64_t)n_ids);
    sess = wg_session_new_typed(m, threads, (int32_t)(n_ids + (size_t)n_gen + 1), device, kv_type);
    smp = wg_sampler_new(&sp, hp->n_vocab);
    logits = malloc((size_t)hp->n_vocab * sizeof(float));
    gen = malloc(((size_t)n_gen + 1) * sizeof(int32_t));
    if (!sess || !smp || !logits || !gen) {
        fprintf(stderr, "waggle generate: %s\n", wg_errmsg()[0] ? wg_errmsg() : "out of memory");
        goto out;
    }
    if (tok && !json) detok = wg_detok_new(tok, false);
    wg_sampler_accept_prompt(smp, ids, n_ids);

    double t0 = s_now_ms();
    st = wg_session_eval(sess, ids, (int64_t)n_ids, false, logits);
    double t1 = s_now_ms();
    if (st) {
        fprintf(stderr, "waggle generate: prefill: %s\n", wg_errmsg());
        goto out;
    }
    for (long i = 0; i < n_gen; i++) {
        wg_sample_t smpl;
        if ((st = wg_sampler_sample(smp, logits, &smpl))) {
            fprintf(stderr, "waggle generate: sampler: %s\n", wg_errmsg());
            goto out;
        }
        int32_t t = smpl.token;
        bool eog = tok ? wg_tok_is_eog(tok, t) : t == hp->eos;
        if (eog && !ignore_eos) {
            finish = "stop";
            break;
        }
        gen[n_out++] = t;
        if (detok) {
            char *piece = NULL;
            if (wg_detok_push(detok, t, &piece) == WG_OK && piece) {
                fputs(piece, stdout);
                fflush(stdout);
            }
            free(piece);
        }
        if (i + 1 == n_gen) break;
        if ((st = wg_session_eval(sess, &t, 1, false, logits))) {
            fprintf(stderr, "waggle generate: decode: %s\n", wg_errmsg());
            goto out;
        }
    }
    double t2 = s_now_ms();
    if (detok) {
        char *rest = NULL;
        if (wg_detok_flush(detok, &rest) == WG_OK && rest) fputs(rest, stdout);
        free(rest);
        fputc('\n', stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double prompt_ms = t1 - t0, gen_ms = t2 - t1;
    const double prompt_tps = prompt_ms > 0 ? (double)n_ids / (prompt_ms / 1e3) : 0;
    const double gen_tps = gen_ms > 0 ? (double)n_out / (gen_ms / 1e3) : 0;
    const long long rss = (long long)ru.ru_maxrss * 1024;
    if (json) {
        if (tok && wg_tok_decode(tok, gen, n_out, false, &text) != WG_OK) text = NULL;
        json_t *o = json_object(), *pt = json_array(), *gt = json_array(), *tm = json_object();
        for (size_t i = 0; i < n_ids; i++) json_array_append_new(pt, json_integer(ids[i]));
        for (size_t i = 0; i < n_out; i++) json_array_append_new(gt, json_integer(gen[i]));
        json_object_set_new(o, "prompt_tokens", pt);
        json_object_set_new(o, "tokens", gt);
        json_object_set_new(o, "text", wg_cli_json_text(text ? text : "", text ? strlen(text) : 0, false));
        json_object_set_new(o, "finish_reason", json_string(finish));
        json_object_set_new(tm, "prompt_ms", json_real(prompt_ms));
        json_object_set_new(tm, "gen_ms", json_real(gen_ms));
        json_object_set_new(tm, "prompt_tps", json_real(prompt_tps));
        json_object_set_new(tm, "gen_tps", json_real(gen_tps));
        json_object_set_new(tm, "peak_rss_bytes", json_integer(rss));
        json_object_set_new(o, "timings", tm);
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr,
                "prompt: %zu tokens in %.1f ms (%.1f tok/s); generated: %zu tokens in %.1f ms (%.1f tok/s); "
                "finish=%s; peak RSS %.1f MiB\n",
                n_ids, prompt_ms, prompt_tps, n_out, gen_ms, gen_tps, finish, (double)rss / 1048576.0);
    }
    rc = 0;
out:
    free(text);
    free(ids);
    free(gen);
    free(logits);
    wg_detok_free(&detok);
    wg_sampler_free(&smp);
    wg_session_free(&sess);
    wg_tok_free(&tok);
    wg_model_free(&m);
    return rc;
}
