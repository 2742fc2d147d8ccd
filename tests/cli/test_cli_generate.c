/* `waggle generate`, `waggle logits` and `waggle mkmodel` run as real
 * processes: greedy generation on the trained model reproduces llama.cpp's
 * tokens and text, --tokens adds no BOS, a seed reproduces a sampled run,
 * logits match the reference within the F32 bound, a generated Q4_K_M model
 * has the Q4_K/Q6_K mix and runs, and bad input exits non-zero with a reason. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

#define S_STORIES "trained/stories260K-f32.gguf"
#define S_STORIES_REF "trained/stories260K-f32.ref.gguf"

static char s_dir[256];

static void s_setup(void) {
    snprintf(s_dir, sizeof s_dir, "/tmp/wg_cli_generate_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", s_dir);
    cr_assert_eq(system(cmd), 0);
}

static void s_teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    (void)system(cmd);
}

TestSuite(cli_generate, .init = s_setup, .fini = s_teardown, .timeout = 60);

static char *s_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

/* Run `waggle ARGS` with stdout/stderr captured in s_dir/out and s_dir/err; the exit code. */
static int s_run(const char *args) {
    cr_assert(access(WG_TEST_WAGGLE_BIN, X_OK) == 0, "waggle binary missing at %s", WG_TEST_WAGGLE_BIN);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s/out' 2>'%s/err'", WG_TEST_WAGGLE_BIN, args, s_dir, s_dir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "waggle did not exit normally: %s", cmd);
    return WEXITSTATUS(st);
}

static char *s_captured(const char *which) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", s_dir, which);
    return s_slurp(p, NULL);
}

/* Run a `generate ... --json` and parse its one JSON object. */
static json_t *s_generate_json(const char *args) {
    char full[8192];
    snprintf(full, sizeof full, "generate %s --json --threads 2", args);
    int rc = s_run(full);
    cr_assert_eq(rc, 0, "generate exited %d: %s", rc, s_captured("err"));
    char *out = s_captured("out");
    json_error_t err;
    json_t *o = json_loads(out, 0, &err);
    cr_assert_not_null(o, "not JSON (%s): %.300s", err.text, out);
    free(out);
    return o;
}

/* The I32 tensor `name` of a reference file equals the JSON integer array. */
static void s_assert_ids_equal(const wg_gguf_t *ref, const char *name, json_t *arr, const char *what) {
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(ref, name);
    cr_assert_not_null(t, "reference has no '%s'", name);
    cr_assert_eq(t->type, WG_TYPE_I32);
    const int32_t *v = t->data;
    cr_assert_eq((int64_t)json_array_size(arr), t->ne[0], "%s: %zu ids, reference %lld", what, json_array_size(arr),
                 (long long)t->ne[0]);
    for (int64_t i = 0; i < t->ne[0]; i++)
        cr_assert_eq(json_integer_value(json_array_get(arr, (size_t)i)), v[i], "%s[%lld]: %lld, reference %d", what,
                     (long long)i, (long long)json_integer_value(json_array_get(arr, (size_t)i)), v[i]);
}

static wg_gguf_t *s_open_ref(const char *rel) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK, "%s: %s", rel, wg_errmsg());
    return g;
}

Test(cli_generate, greedy_text_and_tokens_equal_the_reference) {
    WG_REQUIRE_CORPUS();
    char args[8192];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time' -n 64 --temp 0", wg_test_corpus(S_STORIES));
    json_t *o = s_generate_json(args);
    wg_gguf_t *ref = s_open_ref(S_STORIES_REF);
    s_assert_ids_equal(ref, "tokens", json_object_get(o, "prompt_tokens"), "prompt_tokens (BOS + pieces)");
    s_assert_ids_equal(ref, "greedy", json_object_get(o, "tokens"), "greedy tokens");
    const char *want = NULL;
    cr_assert_eq(wg_gguf_get_str(ref, "ref.greedy_text", &want), WG_OK);
    cr_assert_str_eq(json_string_value(json_object_get(o, "text")), want);
    cr_assert_str_eq(json_string_value(json_object_get(o, "finish_reason")), "length");
    wg_gguf_close(&ref);
    json_decref(o);
}

/* Argmax of the last logits row of `waggle logits` over exactly `ids`. */
static int32_t s_logits_argmax(const char *ids) {
    char args[8192], out[512];
    snprintf(out, sizeof out, "%s/argmax.f32", s_dir);
    snprintf(args, sizeof args, "logits -m '%s' --tokens %s -o '%s'", wg_test_corpus(S_STORIES), ids, out);
    cr_assert_eq(s_run(args), 0, "logits: %s", s_captured("err"));
    size_t len = 0;
    char *raw = s_slurp(out, &len);
    const size_t V = 512; /* stories260K vocabulary */
    cr_assert(len >= V * sizeof(float) && len % (V * sizeof(float)) == 0, "logits file of %zu bytes", len);
    const float *row = (const float *)(raw + len - V * sizeof(float));
    int32_t best = 0;
    for (size_t i = 1; i < V; i++)
        if (row[i] > row[best]) best = (int32_t)i;
    free(raw);
    return best;
}

Test(cli_generate, tokens_flag_adds_no_bos) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *ref = s_open_ref(S_STORIES_REF);
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(ref, "tokens");
    cr_assert_not_null(t);
    const int32_t *ids = t->data;
    cr_assert_eq(ids[0], 1, "reference prompt should start with BOS");
    /* The reference prompt ids as given (with its BOS) continue exactly like -p. */
    char list[1024] = "", args[8192];
    for (int64_t i = 0; i < t->ne[0]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", ids[i]);
    snprintf(args, sizeof args, "-m '%s' --tokens %s -n 64 --temp 0", wg_test_corpus(S_STORIES), list);
    json_t *o = s_generate_json(args);
    s_assert_ids_equal(ref, "tokens", json_object_get(o, "prompt_tokens"), "prompt_tokens");
    s_assert_ids_equal(ref, "greedy", json_object_get(o, "tokens"), "greedy tokens");
    json_decref(o);
    json_decref(o);
    /* One token without BOS: generate's first greedy token is the argmax of
     * `waggle logits` over exactly that id (which never adds BOS), and not
     * the argmax with BOS in front (the two differ for this id). */
    const int32_t nobos = s_logits_argmax("261"), bos = s_logits_argmax("1,261");
    cr_assert_neq(nobos, bos, "test premise: BOS should change the next token after id 261");
    snprintf(args, sizeof args, "-m '%s' --tokens 261 -n 1 --temp 0", wg_test_corpus(S_STORIES));
    o = s_generate_json(args);
    json_t *pt = json_object_get(o, "prompt_tokens");
    cr_assert_eq(json_array_size(pt), 1);
    cr_assert_eq(json_integer_value(json_array_get(pt, 0)), 261);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(o, "tokens"), 0)), nobos,
                 "--tokens 261 continued as if BOS had been added");
    json_decref(o);
    wg_gguf_close(&ref);
}

/* Sampled tokens of one run as a comma list (caller frees). */
static char *s_sampled(int seed) {
    char args[8192];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time' -n 48 --temp 1.0 --top-k 0 --top-p 1 --min-p 0 --seed %d",
             wg_test_corpus(S_STORIES), seed);
    json_t *o = s_generate_json(args);
    json_t *gen = json_object_get(o, "tokens");
    cr_assert_gt(json_array_size(gen), 0);
    char *s = calloc(1, 16 * json_array_size(gen) + 1);
    for (size_t i = 0; i < json_array_size(gen); i++)
        sprintf(s + strlen(s), "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(gen, i)));
    json_decref(o);
    return s;
}

Test(cli_generate, seed_reproduces_a_sampled_run) {
    WG_REQUIRE_CORPUS();
    char *a = s_sampled(42), *b = s_sampled(42), *c = s_sampled(7);
    cr_assert_str_eq(a, b, "same seed, different tokens");
    cr_assert_str_neq(a, c, "seeds 42 and 7 sampled the same 48 tokens at temperature 1");
    free(a);
    free(b);
    free(c);
}

Test(cli_generate, bad_flags_and_missing_model_exit_nonzero_with_a_reason) {
    WG_REQUIRE_CORPUS();
    char args[8192];
    cr_assert_neq(s_run("generate -m /nonexistent/model.gguf -p hi -n 4"), 0);
    char *err = s_captured("err");
    cr_assert(strstr(err, "/nonexistent/model.gguf"), "stderr does not name the model: %s", err);
    free(err);

    snprintf(args, sizeof args, "generate -m '%s' -p hi --bogus-flag", wg_test_corpus(S_STORIES));
    cr_assert_neq(s_run(args), 0);
    err = s_captured("err");
    cr_assert(strstr(err, "--bogus-flag"), "stderr does not name the flag: %s", err);
    free(err);

    snprintf(args, sizeof args, "generate -m '%s' -p hi --temp warm", wg_test_corpus(S_STORIES));
    cr_assert_neq(s_run(args), 0);
    err = s_captured("err");
    cr_assert(strstr(err, "--temp") && strstr(err, "warm"), "stderr does not name the option and value: %s", err);
    free(err);

    snprintf(args, sizeof args, "generate -m '%s' --tokens 1,2,x", wg_test_corpus(S_STORIES));
    cr_assert_neq(s_run(args), 0);
    err = s_captured("err");
    cr_assert(strstr(err, "x"), "stderr does not show the bad token: %s", err);
    free(err);

    /* A token id outside the vocabulary is refused, not run. */
    snprintf(args, sizeof args, "generate -m '%s' --tokens 1,100000 -n 2", wg_test_corpus(S_STORIES));
    cr_assert_neq(s_run(args), 0);
    err = s_captured("err");
    cr_assert(strstr(err, "100000"), "stderr does not name the bad id: %s", err);
    free(err);

    cr_assert_neq(s_run("logits -m /nonexistent/model.gguf --tokens 1,2 -o /dev/null"), 0);
    err = s_captured("err");
    cr_assert(strstr(err, "/nonexistent/model.gguf"), "logits stderr: %s", err);
    free(err);
}

/* --kv-type: f32 / f16 are the only values, a bad one exits 2 naming it and
 * the choices (generate, bench, run); `run` takes f16 with or without
 * --direct (the embedded worker has --kv-type too). Greedy text on the trained model is the
 * same with an F16 cache (its margins are far above F16's ~1e-3). */
Test(cli_generate, kv_type_flag_is_checked_and_f16_generates) {
    WG_REQUIRE_CORPUS();
    char args[8192];
    const char *cmds[] = {"generate -m '%s' -p hi --kv-type bf16", "bench -m '%s' --kv-type bf16",
                          "run -m '%s' -i /dev/null -o /dev/null --direct --kv-type bf16"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(args, sizeof args, cmds[i], wg_test_corpus(S_STORIES));
        cr_assert_eq(s_run(args), 2, "%s", args);
        char *err = s_captured("err");
        cr_assert(strstr(err, "--kv-type") && strstr(err, "bf16") && strstr(err, "expected f32, f16 or q8_0"),
                  "%s: stderr does not name the flag, value and choices: %s", args, err);
        free(err);
    }
    /* run takes f16 through the embedded worker too (waggle-worker --kv-type) */
    char in[300], out[300];
    snprintf(in, sizeof in, "%s/kv.jsonl", s_dir);
    snprintf(out, sizeof out, "%s/kv-out.jsonl", s_dir);
    FILE *f = fopen(in, "w");
    cr_assert(f);
    fprintf(f, "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
               "\"Once upon a time\",\"max_tokens\":8,\"temperature\":0}}\n");
    fclose(f);
    snprintf(args, sizeof args, "run -m '%s' -i %s -o %s --kv-type f16", wg_test_corpus(S_STORIES), in, out);
    cr_assert_eq(s_run(args), 0, "%s: %s", args, s_captured("err"));
    size_t olen = 0;
    char *o = s_slurp(out, &olen);
    cr_assert(strstr(o, "\"custom_id\":\"a\"") && strstr(o, "\"status_code\":200"), "run output: %s", o);
    free(o);
    char *text[2];
    const char *types[2] = {"f32", "f16"};
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "generate -m '%s' -p 'Once upon a time' -n 40 --temp 0 --threads 2 --kv-type %s",
                 wg_test_corpus(S_STORIES), types[k]);
        cr_assert_eq(s_run(args), 0, "%s: %s", args, s_captured("err"));
        text[k] = s_captured("out");
    }
    cr_assert_gt(strlen(text[0]), 40);
    cr_assert_str_eq(text[1], text[0], "greedy text differs with an F16 cache");
    free(text[0]);
    free(text[1]);
}

Test(cli_generate, logits_equal_the_reference_within_f32_bound) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *ref = s_open_ref("refs/llama-f32.ref.gguf");
    const wg_gguf_tensor_t *tt = wg_gguf_find_tensor(ref, "tokens"), *lt = wg_gguf_find_tensor(ref, "logits");
    cr_assert(tt && lt);
    const int32_t *ids = tt->data;
    const int64_t n = tt->ne[0], V = lt->ne[0];
    cr_assert_eq(lt->ne[1], n);
    char list[4096] = "", args[8192], out[512];
    for (int64_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", ids[i]);
    snprintf(out, sizeof out, "%s/logits.f32", s_dir);
    snprintf(args, sizeof args, "logits -m '%s' --tokens %s -o '%s' --threads 2",
             wg_test_corpus("models/llama/llama-f32.gguf"), list, out);
    cr_assert_eq(s_run(args), 0, "logits: %s", s_captured("err"));
    size_t len = 0;
    char *got = s_slurp(out, &len);
    cr_assert_eq(len, (size_t)(n * V) * sizeof(float), "output has %zu bytes, want %lld x %lld floats", len,
                 (long long)n, (long long)V);
    const float *want = lt->data;
    double worst = 0;
    for (int64_t i = 0; i < n * V; i++) {
        float g;
        memcpy(&g, got + (size_t)i * sizeof(float), sizeof g);
        const double d = fabs((double)g - (double)want[i]);
        cr_assert(isfinite(g), "logit %lld is not finite", (long long)i);
        if (d > worst) worst = d;
    }
    cr_assert_leq(worst, 5e-4, "max |logits - reference| = %g", worst);
    free(got);
    wg_gguf_close(&ref);
}

Test(cli_generate, mkmodel_q4_k_m_has_the_type_mix_and_generates) {
    char path[512], args[8192];
    snprintf(path, sizeof path, "%s/m5.gguf", s_dir);
    snprintf(args, sizeof args, "mkmodel --arch llama --params 5M --type Q4_K_M -o '%s'", path);
    cr_assert_eq(s_run(args), 0, "mkmodel: %s", s_captured("err"));

    snprintf(args, sizeof args, "inspect --json '%s'", path);
    cr_assert_eq(s_run(args), 0, "inspect: %s", s_captured("err"));
    char *txt = s_captured("out");
    json_error_t jerr;
    json_t *root = json_loads(txt, 0, &jerr);
    cr_assert_not_null(root, "inspect output is not JSON: %s", jerr.text);
    json_t *ts = json_object_get(root, "tensors");
    int n_q4k = 0, n_q6k = 0;
    for (size_t i = 0; i < json_array_size(ts); i++) {
        json_t *t = json_array_get(ts, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *type = json_string_value(json_object_get(t, "type"));
        const size_t nd = json_array_size(json_object_get(t, "shape"));
        if (nd == 1) {
            cr_assert_str_eq(type, "F32", "%s: 1-D tensor stored as %s", name, type);
            continue;
        }
        cr_assert(!strcmp(type, "Q4_K") || !strcmp(type, "Q6_K"), "%s: %s in a Q4_K_M model", name, type);
        n_q4k += !strcmp(type, "Q4_K");
        n_q6k += !strcmp(type, "Q6_K");
        /* llama.cpp's Q4_K_M keeps the output matrix (or tied embedding) at Q6_K. */
        if (!strcmp(name, "output.weight")) cr_assert_str_eq(type, "Q6_K");
    }
    cr_assert_gt(n_q4k, 0, "no Q4_K matrices");
    cr_assert_gt(n_q6k, 0, "no Q6_K matrices");
    cr_assert_gt(n_q4k, n_q6k, "Q4_K should be the majority (%d Q4_K, %d Q6_K)", n_q4k, n_q6k);
    const int64_t n_vocab = json_integer_value(json_object_get(json_object_get(root, "metadata"), "llama.vocab_size"));
    json_decref(root);
    free(txt);

    snprintf(args, sizeof args, "-m '%s' -p 'hello world' -n 8 --temp 0 --ignore-eos", path);
    json_t *o = s_generate_json(args);
    json_t *gen = json_object_get(o, "tokens");
    cr_assert_eq(json_array_size(gen), 8);
    for (size_t i = 0; i < 8; i++) {
        const json_int_t id = json_integer_value(json_array_get(gen, i));
        cr_assert(id >= 0 && (n_vocab <= 0 || id < n_vocab), "token %lld out of range", (long long)id);
    }
    json_decref(o);
}

/* --kv-heads: the preset's query heads over fewer key/value heads (GQA), the
 * K/V matrices shrunk to match; a count that does not divide is refused. The
 * model generates with a Q8_0 K/V cache (head size 64). */
Test(cli_generate, mkmodel_kv_heads_makes_a_gqa_model) {
    char path[512], args[8192];
    snprintf(path, sizeof path, "%s/m5gqa.gguf", s_dir);
    snprintf(args, sizeof args, "mkmodel --params 5M --kv-heads 3 -o '%s'", path);
    cr_assert_neq(s_run(args), 0, "3 kv heads accepted for 4 query heads");
    cr_assert(strstr(s_captured("err"), "--kv-heads 3 does not divide"), "%s", s_captured("err"));
    snprintf(args, sizeof args, "mkmodel --params 5M --kv-heads 2 --type Q8_0 -o '%s'", path);
    cr_assert_eq(s_run(args), 0, "mkmodel: %s", s_captured("err"));
    snprintf(args, sizeof args, "inspect --json '%s'", path);
    cr_assert_eq(s_run(args), 0, "inspect: %s", s_captured("err"));
    char *txt = s_captured("out");
    json_t *root = json_loads(txt, 0, NULL);
    cr_assert_not_null(root);
    json_t *md = json_object_get(root, "metadata");
    const json_int_t nh = json_integer_value(json_object_get(md, "llama.attention.head_count"));
    const json_int_t nkv = json_integer_value(json_object_get(md, "llama.attention.head_count_kv"));
    const json_int_t E = json_integer_value(json_object_get(md, "llama.embedding_length"));
    cr_assert_eq(nkv, 2);
    cr_assert_gt(nh, nkv);
    json_t *ts = json_object_get(root, "tensors");
    int seen = 0;
    for (size_t i = 0; i < json_array_size(ts); i++) {
        json_t *t = json_array_get(ts, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        if (strcmp(name, "blk.0.attn_k.weight") && strcmp(name, "blk.0.attn_v.weight")) continue;
        json_t *shape = json_object_get(t, "shape");
        cr_assert_eq(json_integer_value(json_array_get(shape, 1)), E / nh * nkv, "%s rows", name);
        seen++;
    }
    cr_assert_eq(seen, 2);
    json_decref(root);
    free(txt);
    snprintf(args, sizeof args, "-m '%s' -p 'hello world' -n 6 --temp 0 --ignore-eos --kv-type q8_0", path);
    json_t *o = s_generate_json(args);
    cr_assert_eq(json_array_size(json_object_get(o, "tokens")), 6);
    json_decref(o);
}

/* `waggle bench engine --single --json` (issue 3): one row per thread count,
 * positive rates for every run, a roofline that is bandwidth / bytes per
 * token, and bytes per token made of the multiplied weights (no embedding
 * lookup: stories260K has a separate output matrix) plus the K/V read. */
Test(cli_generate, bench_single_json_is_consistent) {
    WG_REQUIRE_CORPUS();
    char args[8192];
    snprintf(args, sizeof args,
             "bench engine -m '%s' --single --threads 1,2 --reps 2 --prompt-len 16 --gen-len 4 --mem-mb 32 --json",
             wg_test_corpus(S_STORIES));
    cr_assert_eq(s_run(args), 0, "bench: %s", s_captured("err"));
    char *out = s_captured("out");
    json_error_t jerr;
    json_t *d = json_loads(out, 0, &jerr);
    cr_assert_not_null(d, "not JSON (%s): %.300s", jerr.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(d, "mode")), "single");
    const json_int_t wb = json_integer_value(json_object_get(d, "weight_bytes"));
    const json_int_t wpt = json_integer_value(json_object_get(d, "weight_bytes_per_token"));
    const json_int_t kvpt = json_integer_value(json_object_get(d, "kv_bytes_per_token_mean"));
    const json_int_t bpt = json_integer_value(json_object_get(d, "bytes_per_token"));
    /* token_embd (512 x 64 F32 = 131072 bytes) is a lookup, not read whole. */
    cr_assert(wpt > 0 && wpt <= wb - 131072, "weight bytes per token %lld of %lld", (long long)wpt, (long long)wb);
    /* 5 layers x 4 kv heads x (8 + 8) dims x 2 bytes (bench's F16 cache) at mean position 16 + 4/2. */
    cr_assert_str_eq(json_string_value(json_object_get(d, "kv_type")), "f16");
    cr_assert_eq(kvpt, 5 * 4 * 16 * 2 * 18);
    cr_assert_eq(bpt, wpt + kvpt);
    cr_assert_gt(json_integer_value(json_object_get(d, "peak_rss_bytes")), wb);
    json_t *rows = json_object_get(d, "results");
    cr_assert_eq(json_array_size(rows), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *r = json_array_get(rows, i);
        cr_assert_eq(json_integer_value(json_object_get(r, "threads")), (json_int_t)(i + 1));
        json_t *runs = json_object_get(r, "decode_tok_s_runs");
        cr_assert_eq(json_array_size(runs), 2);
        for (size_t k = 0; k < 2; k++) cr_assert_gt(json_number_value(json_array_get(runs, k)), 0);
        cr_assert_gt(json_number_value(json_object_get(r, "prefill_tok_s")), 0);
        json_t *best = json_object_get(r, "read_bw_gbs_best_before_after");
        double bw = json_number_value(json_array_get(best, 0));
        if (json_number_value(json_array_get(best, 1)) > bw) bw = json_number_value(json_array_get(best, 1));
        cr_assert_gt(bw, 0);
        const double roof = json_number_value(json_object_get(r, "roofline_decode_tok_s"));
        cr_assert_float_eq(roof, bw * 1e9 / (double)bpt, roof * 1e-4);
        const double dec = json_number_value(json_object_get(r, "decode_tok_s"));
        cr_assert_float_eq(json_number_value(json_object_get(r, "decode_vs_roofline")), dec / roof, 1e-4);
    }
    json_decref(d);
    free(out);
}

/* The model's trained context bounds prompt + generated tokens, as in the
 * scheduler (stories260K: 512): -n 2000 stops after 507 tokens of a 5-token
 * prompt with finish "length", and those are the first 507 tokens of the
 * unlimited run (--max-context -1); a prompt of 512 tokens or more is refused
 * naming both lengths; a set --max-context cuts there. */
Test(cli_generate, the_model_context_bounds_prompt_and_generation) {
    WG_REQUIRE_CORPUS();
    char args[8192];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time' -n 2000 --temp 0 --ignore-eos", wg_test_corpus(S_STORIES));
    json_t *o = s_generate_json(args);
    json_t *toks = json_object_get(o, "tokens");
    const size_t n_prompt = json_array_size(json_object_get(o, "prompt_tokens"));
    cr_assert_eq(json_array_size(toks), 512 - n_prompt, "generated %zu tokens after a %zu-token prompt",
                 json_array_size(toks), n_prompt);
    cr_assert_str_eq(json_string_value(json_object_get(o, "finish_reason")), "length");
    char args2[8300];
    snprintf(args2, sizeof args2, "%s --max-context -1", args);
    json_t *o2 = s_generate_json(args2);
    json_t *toks2 = json_object_get(o2, "tokens");
    cr_assert_eq(json_array_size(toks2), 2000);
    for (size_t i = 0; i < json_array_size(toks); i++)
        cr_assert_eq(json_integer_value(json_array_get(toks, i)), json_integer_value(json_array_get(toks2, i)),
                     "token %zu differs", i);
    snprintf(args2, sizeof args2, "%s --max-context 40", args);
    json_t *o3 = s_generate_json(args2);
    cr_assert_eq(json_array_size(json_object_get(o3, "tokens")), 40 - n_prompt);
    /* 600 ids of a prompt: refused, naming both lengths */
    char ids[4096] = "";
    size_t off = 0;
    for (int i = 0; i < 600; i++) off += (size_t)snprintf(ids + off, sizeof ids - off, "%s%d", i ? "," : "", 10 + i % 100);
    snprintf(args2, sizeof args2, "generate -m '%s' --tokens %s -n 5", wg_test_corpus(S_STORIES), ids);
    cr_assert_neq(s_run(args2), 0, "a 600-token prompt on a 512-token model must fail");
    char *err = s_captured("err");
    cr_assert(strstr(err, "600 tokens") && strstr(err, "512"), "stderr: %s", err);
    free(err);
    json_decref(o);
    json_decref(o2);
    json_decref(o3);
}
