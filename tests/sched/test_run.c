/* `waggle run` end to end: 200 mixed jobs through the built binary give each
 * job the text a plain single-sequence generation gives it (session + sampler
 * + detokenizer + stopper, no scheduler); broken lines yield error rows for
 * those lines only; a rerun skips finished custom_ids and repairs a partial
 * last row. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model/wg_model.h"
#include "engine/sampler/wg_chat.h"
#include "engine/sampler/wg_json.h"
#include "engine/sampler/wg_sampler.h"
#include "engine/tokenizer/wg_tok.h"
#include "wg_test.h"
#include "wg_test_json.h"
#include "wg_test_sys.h"

#define MODEL_REL "trained/stories260K-f32.gguf"

static char g_dir[256];

static void mkdir_tmp(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/wg_run_test_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_tmp(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

static int run_waggle_model(const char *model_rel, const char *in, const char *out, const char *extra) {
    char cmd[12288];
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --input '%s' --output '%s' --threads 2 %s 2>'%s/stderr.txt'",
             WG_TEST_WAGGLE_BIN, wg_test_corpus(model_rel), in, out, extra ? extra : "", g_dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int run_waggle(const char *in, const char *out, const char *extra) {
    return run_waggle_model(MODEL_REL, in, out, extra);
}

/* Rows of an output file, in order. */
static json_t *read_rows(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "no output %s", path);
    json_t *rows = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *r = json_loads(line, 0, &je);
        cr_assert_not_null(r, "output row is not JSON: %s (%s)", line, je.text);
        json_array_append_new(rows, r);
    }
    free(line);
    fclose(f);
    return rows;
}

static json_t *find_row(json_t *rows, const char *cid, int *count) {
    json_t *hit = NULL;
    size_t i;
    json_t *r;
    *count = 0;
    json_array_foreach(rows, i, r) {
        json_t *c = json_object_get(r, "custom_id");
        if (json_is_string(c) && strcmp(json_string_value(c), cid) == 0) {
            hit = r;
            (*count)++;
        }
    }
    return hit;
}

/* The one row for cid (asserted: exactly one). */
static json_t *find_one(json_t *rows, const char *cid) {
    int count;
    json_t *r = find_row(rows, cid, &count);
    cr_assert_eq(count, 1, "%s appears %d times", cid, count);
    return r;
}

/* response.body.choices[0] of a result row (NULL when absent). */
static json_t *first_choice(json_t *row) {
    return json_array_get(json_object_get(json_object_get(json_object_get(row, "response"), "body"), "choices"), 0);
}

/* ---- the reference: one sequence, no scheduler ---- */

typedef struct {
    char text[4096];
    const char *finish;
    int n;
} ref_t;

static void reference(const wg_model_t *m, const wg_tok_t *tok, const int32_t *ids, size_t n_ids,
                      wg_sampling_params_t sp, const char *const *stop, size_t n_stop, int32_t max_tokens,
                      ref_t *out) {
    memset(out, 0, sizeof *out);
    wg_session_t *se = wg_session_new(m, 1, 512);
    cr_assert_not_null(se);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    float *lg = malloc((size_t)V * sizeof *lg);
    cr_assert_eq(wg_session_eval(se, ids, (int64_t)n_ids, false, lg), WG_OK);
    wg_sampler_t *sa = wg_sampler_new(&sp, V);
    cr_assert_not_null(sa, "%s", wg_errmsg());
    wg_sampler_accept_prompt(sa, ids, n_ids);
    wg_detok_t *d = wg_detok_new(tok, false);
    wg_stopper_t *st = wg_stopper_new(stop, n_stop);
    size_t len = 0;
    bool by_string = false;
    out->finish = "length";
    for (int32_t i = 0; i < max_tokens; i++) {
        wg_sample_t smp;
        cr_assert_eq(wg_sampler_sample(sa, lg, &smp), WG_OK);
        out->n++;
        if (wg_tok_is_eog(tok, smp.token)) {
            out->finish = "stop";
            break;
        }
        char *piece = NULL, *emit = NULL;
        bool stopped = false;
        cr_assert_eq(wg_detok_push(d, smp.token, &piece), WG_OK);
        cr_assert_eq(wg_stopper_push(st, piece, strlen(piece), &emit, &stopped), WG_OK);
        memcpy(out->text + len, emit, strlen(emit));
        len += strlen(emit);
        free(piece);
        free(emit);
        if (stopped) {
            out->finish = "stop";
            by_string = true;
            break;
        }
        if (i + 1 < max_tokens) cr_assert_eq(wg_session_eval(se, &smp.token, 1, false, lg), WG_OK);
    }
    if (!by_string) {
        /* EOS or length: release what the detokenizer and the stopper hold. */
        char *tail = NULL, *emit = NULL, *rest = NULL;
        bool stopped = false;
        cr_assert_eq(wg_detok_flush(d, &tail), WG_OK);
        if (*tail) {
            cr_assert_eq(wg_stopper_push(st, tail, strlen(tail), &emit, &stopped), WG_OK);
            memcpy(out->text + len, emit, strlen(emit));
            len += strlen(emit);
        }
        if (!stopped) {
            cr_assert_eq(wg_stopper_flush(st, &rest), WG_OK);
            memcpy(out->text + len, rest, strlen(rest));
            len += strlen(rest);
        } else {
            out->finish = "stop";
        }
        free(tail);
        free(emit);
        free(rest);
    }
    out->text[len] = '\0';
    wg_stopper_free(&st);
    wg_detok_free(&d);
    wg_sampler_free(&sa);
    free(lg);
    wg_session_free(&se);
}

static const char *g_words[] = {"Once upon a time", "The cat", "Lily went", "One day, a big", "Tom and Sue",
                                "The sun was", "A little bird", "Mom said", "They played", "In the park"};

Test(run, two_hundred_mixed_jobs_match_single_sequence_generation, .timeout = 120) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(MODEL_REL), &m), WG_OK, "%s", wg_errmsg());
    wg_tok_t *tok = NULL;
    cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(m), &tok), WG_OK);
    enum { N = 200 };
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/results.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    json_t *bodies[N];
    for (int i = 0; i < N; i++) {
        json_t *body = json_object();
        const bool chat = i % 8 == 7;
        if (chat) {
            json_object_set_new(body, "messages",
                                json_pack("[{s:s, s:s}]", "role", "user", "content", g_words[i % 10]));
        } else if (i % 8 == 3) {
            json_object_set_new(body, "prompt", json_pack("[i, i, i, i]", 1, 3 + (400 + i) % 500, 30 + i % 50, 200));
        } else {
            json_object_set_new(body, "prompt", json_string(g_words[i % 10]));
        }
        json_object_set_new(body, "max_tokens", json_integer(1 + (i * 7) % 40));
        switch (i % 4) {
        case 0: json_object_set_new(body, "temperature", json_real(0)); break;
        case 1:
            json_object_set_new(body, "temperature", json_real(0.8));
            json_object_set_new(body, "top_p", json_real(0.9));
            json_object_set_new(body, "seed", json_integer(i));
            break;
        case 2:
            json_object_set_new(body, "temperature", json_real(1.0));
            json_object_set_new(body, "top_k", json_integer(10));
            json_object_set_new(body, "min_p", json_real(0.05));
            json_object_set_new(body, "presence_penalty", json_real(0.6));
            json_object_set_new(body, "seed", json_integer(1000 + i));
            break;
        default:
            json_object_set_new(body, "temperature", json_real(0.5));
            json_object_set_new(body, "frequency_penalty", json_real(0.4));
            json_object_set_new(body, "logit_bias", json_pack("{s:i}", "400", -100));
            break; /* no seed: the run's fixed default */
        }
        if (i % 5 == 0) json_object_set_new(body, "stop", json_pack("[s, s]", "ed", "."));
        char cid[32];
        snprintf(cid, sizeof cid, "job-%d", i);
        json_t *row = json_pack("{s:s, s:s, s:s, s:O}", "custom_id", cid, "method", "POST", "url",
                                chat ? "/v1/chat/completions" : "/v1/completions", "body", body);
        char *s = json_dumps(row, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(row);
        bodies[i] = body;
    }
    fclose(f);
    cr_assert_eq(run_waggle(in, out, "--concurrency 32"), 0);
    json_t *rows = read_rows(out);
    cr_assert_eq(json_array_size(rows), N);
    const wg_chat_kind_t ck = wg_chat_detect(wg_tok_chat_template(tok));
    int n_stop = 0;
    for (int i = 0; i < N; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "job-%d", i);
        json_t *row = find_one(rows, cid);
        json_t *resp = json_object_get(row, "response");
        cr_assert_eq(json_integer_value(json_object_get(resp, "status_code")), 200, "%s failed", cid);
        json_t *rb = json_object_get(resp, "body");
        json_t *ch = json_array_get(json_object_get(rb, "choices"), 0);
        const bool chat = i % 8 == 7;
        const char *text = chat ? json_string_value(json_object_get(json_object_get(ch, "message"), "content"))
                                : json_string_value(json_object_get(ch, "text"));
        cr_assert_str_eq(json_string_value(json_object_get(rb, "object")), chat ? "chat.completion" : "text_completion");
        cr_assert_not_null(text);
        /* Reference, built from the same body. */
        json_t *body = bodies[i];
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (chat) {
            wg_chat_msg_t msg = {"user", g_words[i % 10]};
            char *p = NULL;
            cr_assert_eq(wg_chat_render(ck, &msg, 1, true, NULL, NULL, &p), WG_OK);
            cr_assert_eq(wg_tok_encode(tok, p, strlen(p), true, true, &ids, &n_ids), WG_OK);
            free(p);
        } else if (json_is_array(json_object_get(body, "prompt"))) {
            json_t *pa = json_object_get(body, "prompt");
            n_ids = json_array_size(pa);
            ids = malloc(n_ids * sizeof *ids);
            for (size_t k = 0; k < n_ids; k++) ids[k] = (int32_t)json_integer_value(json_array_get(pa, k));
        } else {
            const char *p = json_string_value(json_object_get(body, "prompt"));
            cr_assert_eq(wg_tok_encode(tok, p, strlen(p), true, false, &ids, &n_ids), WG_OK);
        }
        wg_sampling_params_t sp = wg_sampling_defaults();
        sp.repeat_last_n = -1;
        sp.has_seed = true;
        sp.seed = json_is_integer(json_object_get(body, "seed")) ? (uint64_t)json_integer_value(json_object_get(body, "seed")) : 0;
        sp.temperature = (float)json_number_value(json_object_get(body, "temperature"));
        if (json_object_get(body, "top_p")) sp.top_p = (float)json_number_value(json_object_get(body, "top_p"));
        if (json_object_get(body, "top_k")) sp.top_k = (int32_t)json_integer_value(json_object_get(body, "top_k"));
        if (json_object_get(body, "min_p")) sp.min_p = (float)json_number_value(json_object_get(body, "min_p"));
        if (json_object_get(body, "presence_penalty"))
            sp.presence_penalty = (float)json_number_value(json_object_get(body, "presence_penalty"));
        if (json_object_get(body, "frequency_penalty"))
            sp.frequency_penalty = (float)json_number_value(json_object_get(body, "frequency_penalty"));
        wg_logit_bias_t lb = {400, -INFINITY};
        if (json_object_get(body, "logit_bias")) {
            sp.logit_bias = &lb;
            sp.n_logit_bias = 1;
        }
        const char *stops[2] = {"ed", "."};
        size_t n_st = json_object_get(body, "stop") ? 2 : 0;
        ref_t ref;
        reference(m, tok, ids, n_ids, sp, stops, n_st, (int32_t)json_integer_value(json_object_get(body, "max_tokens")),
                  &ref);
        cr_assert_str_eq(text, ref.text, "%s: text differs", cid);
        cr_assert_str_eq(json_string_value(json_object_get(ch, "finish_reason")), ref.finish, "%s finish", cid);
        json_t *usage = json_object_get(rb, "usage");
        cr_assert_eq(json_integer_value(json_object_get(usage, "prompt_tokens")), (json_int_t)n_ids, "%s", cid);
        cr_assert_eq(json_integer_value(json_object_get(usage, "completion_tokens")), ref.n, "%s", cid);
        n_stop += strcmp(ref.finish, "stop") == 0;
        free(ids);
    }
    cr_assert_gt(n_stop, 5, "stop strings never fired");
    for (int i = 0; i < N; i++) json_decref(bodies[i]);
    json_decref(rows);
    wg_tok_free(&tok);
    wg_model_free(&m);
    rm_tmp();
}

Test(run, broken_lines_give_error_rows_for_those_lines_only) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/results.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    fputs("{\"custom_id\":\"ok1\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"The cat\",\"max_tokens\":5}}\n"
          "{\"custom_id\":\"broken\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"\n"
          "{\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"no id\"}}\n"
          "{\"custom_id\":\"badurl\",\"url\":\"/v1/embeddings\",\"body\":{\"input\":\"x\"}}\n"
          "\n"
          "{\"custom_id\":\"ok2\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4}}\n"
          "{\"custom_id\":\"badtemp\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\",\"temperature\":5}}\n"
          "{\"custom_id\":\"badtok\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[1,99999999]}}\n"
          "{\"custom_id\":\"badmsgs\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":\"hello\"}}\n"
          "{\"custom_id\":\"n2\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\",\"n\":2}}\n"
          "{\"custom_id\":\"ok1\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"dup\"}}\n"
          "{\"custom_id\":\"ok3\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Lily\",\"max_tokens\":3,\"logprobs\":2}}\n",
          f);
    fclose(f);
    cr_assert_eq(run_waggle(in, out, NULL), 0);
    json_t *rows = read_rows(out);
    cr_assert_eq(json_array_size(rows), 11, "one row per non-blank line, got %zu", json_array_size(rows));
    const char *good[] = {"ok1", "ok2", "ok3"};
    for (int i = 0; i < 3; i++) {
        json_t *r = find_one(rows, good[i]);
        cr_assert(json_is_null(json_object_get(r, "error")), "%s has an error", good[i]);
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "response"), "status_code")), 200);
    }
    struct {
        const char *cid;
        const char *needle;
        int line;
    } bad[] = {{"badurl", "/v1/embeddings", 4}, {"badtemp", "temperature", 7}, {"badtok", "prompt[1]", 8},
               {"badmsgs", "messages", 9},     {"n2", "body.n", 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = find_one(rows, bad[i].cid);
        json_t *e = json_object_get(r, "error");
        cr_assert(json_is_object(e), "%s has no error", bad[i].cid);
        const char *msg = json_string_value(json_object_get(e, "message"));
        cr_assert_not_null(strstr(msg, bad[i].needle), "%s: message '%s' should name '%s'", bad[i].cid, msg,
                           bad[i].needle);
        cr_assert_eq(json_integer_value(json_object_get(e, "line")), bad[i].line);
    }
    /* Unidentifiable lines (broken JSON, no custom_id, duplicate id): custom_id null, line named. */
    int null_lines[] = {2, 3, 11}, seen = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        if (!json_is_null(json_object_get(r, "custom_id"))) continue;
        json_t *e = json_object_get(r, "error");
        int ln = (int)json_integer_value(json_object_get(e, "line"));
        bool expected = false;
        for (int k = 0; k < 3; k++) expected |= ln == null_lines[k];
        cr_assert(expected, "unexpected anonymous error at line %d", ln);
        seen++;
    }
    cr_assert_eq(seen, 3);
    json_decref(rows);
    rm_tmp();
}

Test(run, rerun_skips_finished_and_repairs_partial_row) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/results.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    for (int i = 0; i < 12; i++)
        fprintf(f, "{\"custom_id\":\"r%d\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"%s\",\"max_tokens\":%d}}\n", i,
                g_words[i % 10], 3 + i);
    fputs("{bad json\n", f);
    fclose(f);
    cr_assert_eq(run_waggle(in, out, "--concurrency 4"), 0);
    json_t *first = read_rows(out);
    cr_assert_eq(json_array_size(first), 13);
    /* Keep 5 rows and half of the 6th, as an interrupted run would. */
    f = fopen(out, "rb");
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    size_t cut = 0;
    int nl = 0;
    for (size_t k = 0; k < n && nl < 5; k++)
        if (buf[k] == '\n') {
            nl++;
            cut = k + 1;
        }
    f = fopen(out, "wb");
    fwrite(buf, 1, cut + 20, f);
    fclose(f);
    cr_assert_eq(run_waggle(in, out, "--concurrency 4"), 0);
    json_t *second = read_rows(out);
    cr_assert_eq(json_array_size(second), 13, "rows after rerun: %zu", json_array_size(second));
    for (size_t k = 0; k < 5; k++)
        cr_assert(json_equal(json_array_get(first, k), json_array_get(second, k)), "row %zu rewritten", k);
    for (int k = 0; k < 12; k++) {
        char cid[16];
        snprintf(cid, sizeof cid, "r%d", k);
        int c;
        json_t *a = find_row(first, cid, &c);
        json_t *b = find_row(second, cid, &c);
        cr_assert_eq(c, 1, "%s appears %d times after rerun", cid, c);
        const char *ta = json_string_value(json_object_get(first_choice(a), "text"));
        const char *tb = json_string_value(json_object_get(first_choice(b), "text"));
        cr_assert_str_eq(ta, tb, "%s differs between runs", cid);
    }
    /* A third run has nothing left to do. */
    cr_assert_eq(run_waggle(in, out, NULL), 0);
    json_t *third = read_rows(out);
    cr_assert_eq(json_array_size(third), 13);
    json_decref(first);
    json_decref(second);
    json_decref(third);
    rm_tmp();
}

/* ---- the default path (embedded broker + worker over inproc://) vs --direct ---- */

/* JSON equality with reals within 1e-5 (logprobs: the batch a token ran in
 * may round its last bits differently); everything else exact. */
static bool json_close(json_t *a, json_t *b) {
    if (!a || !b) return a == b;
    if (json_is_real(a) && json_is_real(b)) return fabs(json_real_value(a) - json_real_value(b)) <= 1e-5;
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_close(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !json_close(v, w)) return false;
        }
        return true;
    }
    return json_equal(a, b);
}

/* Everything of a row that generation decides: choices (text, finish, logprobs) and usage. */
static json_t *gen_part(json_t *row) {
    json_t *resp = json_object_get(row, "response");
    if (json_is_null(resp) || !resp) return json_deep_copy(json_object_get(json_object_get(row, "error"), "message"));
    json_t *body = json_object_get(resp, "body");
    return json_pack("{s:O, s:O}", "choices", json_object_get(body, "choices"), "usage", json_object_get(body, "usage"));
}

Test(run, embedded_broker_path_equals_direct_path_on_forty_mixed_jobs, .timeout = 120) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    enum { N = 40 };
    char in[512], out_e[512], out_d[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    snprintf(out_e, sizeof out_e, "%s/embedded.jsonl", g_dir);
    snprintf(out_d, sizeof out_d, "%s/direct.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    cr_assert_not_null(f);
    int n_bias = 0, n_ids = 0, n_lp = 0, n_chat = 0;
    for (int i = 0; i < N; i++) {
        json_t *body = json_object();
        const bool chat = i % 5 == 4;
        if (chat) {
            n_chat++;
            json_object_set_new(body, "messages", json_pack("[{s:s, s:s}]", "role", "user", "content", g_words[i % 10]));
            if (i % 2 == 0) {
                json_object_set_new(body, "logprobs", json_true());
                json_object_set_new(body, "top_logprobs", json_integer(i % 4));
                n_lp++;
            }
        } else if (i % 5 == 1) {
            json_object_set_new(body, "prompt", json_pack("[i, i, i]", 1, 10 + i * 7, 100 + i));
            n_ids++;
        } else {
            json_object_set_new(body, "prompt", json_string(g_words[i % 10]));
        }
        if (!chat && i % 3 == 0) {
            json_object_set_new(body, "logprobs", json_integer(i % 6));
            n_lp++;
        }
        if (i % 4 == 2) {
            json_object_set_new(body, "logit_bias", json_pack("{s:i, s:f}", "400", -100, "7", 3.5));
            n_bias++;
        }
        if (i % 7 == 3) json_object_set_new(body, "stop", json_pack("[s, s]", ".", "the"));
        json_object_set_new(body, "max_tokens", json_integer(1 + (i * 11) % 48));
        json_object_set_new(body, "temperature", json_real(i % 2 ? 0.8 : 0));
        if (i % 4 == 1) json_object_set_new(body, "seed", json_integer(i * 31));
        if (i % 6 == 5) json_object_set_new(body, "top_k", json_integer(12));
        json_t *row = json_pack("{s:s, s:s, s:s, s:o}", "custom_id", "", "method", "POST", "url",
                                chat ? "/v1/chat/completions" : "/v1/completions", "body", body);
        char cid[32];
        snprintf(cid, sizeof cid, "job-%d", i);
        json_object_set_new(row, "custom_id", json_string(cid));
        char *s = json_dumps(row, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(row);
    }
    /* one token id out of range: an error row on both paths */
    fprintf(f, "{\"custom_id\":\"bad-id\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[1,99999999]}}\n");
    fclose(f);
    cr_assert(n_bias > 0 && n_ids > 0 && n_lp > 0 && n_chat > 0);
    cr_assert_eq(run_waggle(in, out_e, "--concurrency 8"), 0);
    cr_assert_eq(run_waggle(in, out_d, "--direct --concurrency 8"), 0);
    json_t *re = read_rows(out_e), *rd = read_rows(out_d);
    cr_assert_eq(json_array_size(re), N + 1);
    cr_assert_eq(json_array_size(rd), N + 1);
    int with_lp = 0;
    for (int i = 0; i <= N; i++) {
        char cid[32];
        if (i < N) snprintf(cid, sizeof cid, "job-%d", i);
        else snprintf(cid, sizeof cid, "bad-id");
        int ce = 0, cd = 0;
        json_t *a = find_row(re, cid, &ce), *b = find_row(rd, cid, &cd);
        cr_assert(ce == 1 && cd == 1, "%s: %d/%d rows", cid, ce, cd);
        json_t *ga = gen_part(a), *gb = gen_part(b);
        char *sa = json_dumps(ga, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY),
             *sb = json_dumps(gb, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        cr_assert(json_close(ga, gb), "%s differs:\nembedded %s\ndirect   %s", cid, sa, sb);
        /* texts and token strings are exact */
        json_t *ca = json_object_get(ga, "choices"), *cb = json_object_get(gb, "choices");
        if (ca) {
            json_t *a0 = json_array_get(ca, 0), *b0 = json_array_get(cb, 0);
            json_t *ta = json_object_get(a0, "text"), *tb = json_object_get(b0, "text");
            if (!ta) ta = json_object_get(json_object_get(a0, "message"), "content");
            if (!tb) tb = json_object_get(json_object_get(b0, "message"), "content");
            cr_assert(ta && tb && json_equal(ta, tb), "%s text", cid);
            json_t *la = json_object_get(json_object_get(a0, "logprobs"), "tokens");
            json_t *lb = json_object_get(json_object_get(b0, "logprobs"), "tokens");
            cr_assert(!la == !lb && (!la || json_equal(la, lb)), "%s tokens", cid);
        }
        json_t *c0 = json_array_get(json_object_get(ga, "choices"), 0);
        if (c0 && json_is_object(json_object_get(c0, "logprobs"))) with_lp++;
        free(sa);
        free(sb);
        json_decref(ga);
        json_decref(gb);
    }
    cr_assert_eq(with_lp, n_lp, "every job that asked for logprobs has them (%d of %d)", with_lp, n_lp);
    json_decref(re);
    json_decref(rd);
    rm_tmp();
}

/* A random-weight model emits byte tokens, whose pieces alone are not valid
 * UTF-8: JSON cannot hold them as they are, and such rows were once dropped
 * (the job counted done, no row written). Every job still gets its row, with
 * U+FFFD standing in for the bytes, in the text and in the logprobs. */
Test(run, byte_tokens_in_text_and_logprobs_still_give_every_row, .timeout = 60) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/results.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    cr_assert_not_null(f);
    const int N = 24;
    for (int i = 0; i < N; i++) {
        if (i % 2)
            fprintf(f, "{\"custom_id\":\"j%d\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"Once %d\","
                       "\"max_tokens\":16,\"temperature\":0.9,\"seed\":%d,\"logprobs\":3}}\n", i, i, i);
        else
            fprintf(f, "{\"custom_id\":\"j%d\",\"url\":\"/v1/chat/completions\",\"body\":{\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"Hi %d\"}],\"max_tokens\":16,\"temperature\":0.9,\"seed\":%d,"
                       "\"logprobs\":true,\"top_logprobs\":3}}\n", i, i, i);
    }
    fclose(f);
    cr_assert_eq(run_waggle_model("models/gemma2/gemma2-Q8_0.gguf", in, out, NULL), 0);
    json_t *rows = read_rows(out);
    cr_assert_eq((int)json_array_size(rows), N, "one row per job, got %zu", json_array_size(rows));
    int replaced = 0;
    for (int i = 0; i < N; i++) {
        char cid[16];
        snprintf(cid, sizeof cid, "j%d", i);
        json_t *r = find_one(rows, cid);
        cr_assert(json_is_null(json_object_get(r, "error")), "%s has an error", cid);
        json_t *c0 = first_choice(r);
        json_t *lp = json_object_get(c0, "logprobs");
        cr_assert(json_is_object(lp), "%s has no logprobs", cid);
        char *dump = json_dumps(c0, JSON_COMPACT);
        cr_assert_not_null(dump);
        if (strstr(dump, "\xef\xbf\xbd")) replaced++;
        free(dump);
    }
    cr_assert_gt(replaced, 0, "no row has a replaced byte: the test no longer reaches byte tokens");
    json_decref(rows);
    rm_tmp();
}

/* ---- prefix cache through `waggle run` ---- */

/* Cached and computed prompt tokens from the run's last stderr summary. */
static void prefix_counts(long long *cached, long long *computed) {
    char path[512];
    snprintf(path, sizeof path, "%s/stderr.txt", g_dir);
    cr_assert(wg_test_run_prompt_counts(path, computed, cached), "no prompt-token summary in %s", path);
}

/* Jobs sharing a long opening (a system prompt) give the same rows (texts,
 * finish reasons, logprobs) with the prefix cache, without it and on the
 * direct path; the summary shows the opening found in the cache. */
Test(run, shared_openings_give_the_same_rows_with_and_without_the_prefix_cache, .timeout = 120) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    char in[512], out[3][512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    FILE *f = fopen(in, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 24; i++)
        fprintf(f,
                "{\"custom_id\":\"p%d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":"
                "\"Once upon a time there was a little girl named Lily. She liked to play outside with her big red "
                "ball and her dog. One day the sun was hot and the sky was blue, and Lily went to the park. %s\","
                "\"max_tokens\":%d,\"temperature\":%s,\"seed\":%d,\"logprobs\":2}}\n",
                i, g_words[i % 5], 8 + i % 9, i % 3 ? "0.9" : "0", i);
    fclose(f);
    static const char *extra[3] = {"", "--no-prefix-cache", "--direct"};
    long long cached[3], computed[3];
    json_t *rows[3];
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/out%d.jsonl", g_dir, k);
        cr_assert_eq(run_waggle(in, out[k], extra[k]), 0, "waggle run %s failed", extra[k]);
        prefix_counts(&cached[k], &computed[k]);
        rows[k] = read_rows(out[k]);
        cr_assert_eq(json_array_size(rows[k]), 24);
    }
    /* Which jobs share one step (and so all compute the opening) depends on
     * arrival; every prompt token is either cached or computed either way. */
    for (int k = 0; k < 3; k += 2) {
        cr_assert_gt(cached[k], 16 * 16, "%s: the opening should be found for most jobs: %lld", extra[k], cached[k]);
        cr_assert_eq(cached[k] + computed[k], computed[1], "%s: cached + computed should be every prompt token",
                     extra[k]);
    }
    cr_assert_eq(cached[1], 0);
    for (int i = 0; i < 24; i++) {
        char cid[16];
        snprintf(cid, sizeof cid, "p%d", i);
        json_t *c0 = first_choice(find_one(rows[0], cid));
        cr_assert_not_null(c0);
        for (int k = 1; k < 3; k++)
            cr_assert(json_equal(c0, first_choice(find_one(rows[k], cid))), "%s: choice differs with %s", cid,
                      extra[k]);
    }
    for (int k = 0; k < 3; k++) json_decref(rows[k]);
    rm_tmp();
}

/* JSON mode through `waggle run`: response_format {"type": "json_object"} on
 * completions and chat jobs (greedy and seeded, some pulled towards "}" by
 * logit_bias so their objects close): the embedded path and --direct give
 * the same rows; rows that finished "stop" hold a JSON object, rows cut by
 * max_tokens the start of one; {"type": "text"} is plain generation and an
 * unsupported type is an error row that names it. */
Test(run, json_mode_rows_are_json_objects_on_both_paths, .timeout = 120) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    wg_tok_t *tok = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(MODEL_REL), &m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(m), &tok), WG_OK);
    int32_t close_id = -1;
    char buf[8];
    for (int32_t id = 0; id < wg_tok_n_vocab(tok) && close_id < 0; id++)
        if (wg_tok_piece(tok, id, false, buf, sizeof buf) == 1 && buf[0] == '}') close_id = id;
    cr_assert_geq(close_id, 0);
    wg_tok_free(&tok);
    wg_model_free(&m);
    mkdir_tmp();
    char in[512], out[2][512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    FILE *f = fopen(in, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 16; i++) {
        const bool chat = i % 2;
        char bias[64] = "";
        if (i % 4 < 2) snprintf(bias, sizeof bias, ",\"logit_bias\":{\"%d\":20}", close_id);
        fprintf(f,
                "{\"custom_id\":\"j%d\",\"method\":\"POST\",\"url\":\"/v1/%s\",\"body\":{%s\"%s\"%s,"
                "\"max_tokens\":%d,\"temperature\":%s,\"seed\":%d,\"response_format\":{\"type\":\"json_object\"}%s}}\n",
                i, chat ? "chat/completions" : "completions", chat ? "\"messages\":[{\"role\":\"user\",\"content\":" : "\"prompt\":",
                g_words[i % 10], chat ? "}]" : "", 60 + i, i % 3 ? "0.8" : "0", i, bias);
    }
    fprintf(f, "{\"custom_id\":\"plain\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"The cat\","
               "\"max_tokens\":8,\"response_format\":{\"type\":\"text\"}}}\n");
    fprintf(f, "{\"custom_id\":\"schema\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"The cat\","
               "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}}\n");
    fclose(f);
    static const char *extra[2] = {"", "--direct"};
    json_t *rows[2];
    for (int k = 0; k < 2; k++) {
        snprintf(out[k], sizeof out[k], "%s/out%d.jsonl", g_dir, k);
        cr_assert_eq(run_waggle(in, out[k], extra[k]), 0, "waggle run %s failed", extra[k]);
        rows[k] = read_rows(out[k]);
        cr_assert_eq(json_array_size(rows[k]), 18);
    }
    int whole = 0, cut = 0;
    for (int i = 0; i < 16; i++) {
        char cid[16];
        snprintf(cid, sizeof cid, "j%d", i);
        json_t *c = first_choice(find_one(rows[0], cid));
        cr_assert_not_null(c, "%s has no choice", cid);
        cr_assert(json_equal(c, first_choice(find_one(rows[1], cid))), "%s differs with --direct", cid);
        json_t *msg = json_object_get(c, "message");
        const char *text = json_string_value(msg ? json_object_get(msg, "content") : json_object_get(c, "text"));
        const char *fin = json_string_value(json_object_get(c, "finish_reason"));
        cr_assert(text && fin);
        wg_json_state_t st;
        wg_json_init(&st);
        cr_assert(wg_json_feed(&st, text, strlen(text)), "%s: not the start of a JSON object: %s", cid, text);
        if (!strcmp(fin, "stop")) {
            json_t *o = json_loads(text, 0, NULL);
            cr_assert(o && json_is_object(o), "%s: finished but not an object: %s", cid, text);
            json_decref(o);
            whole++;
        } else {
            cr_assert_str_eq(fin, "length");
            cut++;
        }
    }
    cr_assert_geq(whole, 6, "only %d JSON rows closed their object", whole);
    cr_assert_geq(cut, 1);
    json_t *plain = first_choice(find_one(rows[0], "plain"));
    cr_assert_not_null(plain);
    json_t *err = json_object_get(find_one(rows[0], "schema"), "error");
    cr_assert(json_is_object(err), "json_schema should be an error row");
    cr_assert(strstr(json_string_value(json_object_get(err, "message")), "json_schema"), "%s",
              json_string_value(json_object_get(err, "message")));
    for (int k = 0; k < 2; k++) json_decref(rows[k]);
    rm_tmp();
}

/* Hostile job lines: a complete chat job and a complete completions job
 * (every body field set), each with one value anywhere in the line (at any
 * depth) replaced by each of wg_test_json_hostile's values (0, -1, 1e9, 2.5,
 * "", a 300-byte string, null, true, [], {}) or removed. Through the embedded broker and with --direct, the run
 * exits 0 and writes exactly one row per line: a 200 response, or an error
 * with a message that names its line. */
static int g_hl_n;

/* One line per edit; its custom_id is "h<line>" unless the edit is of
 * custom_id itself. */
static void s_hl_visit(json_t *root, const char *path, int k, void *arg) {
    (void)k;
    FILE *f = arg;
    if (strcmp(path, "custom_id") != 0) json_object_set_new(root, "custom_id", json_sprintf("h%d", g_hl_n + 1));
    char *s = json_dumps(root, JSON_COMPACT);
    cr_assert_not_null(s);
    fprintf(f, "%s\n", s);
    free(s);
    g_hl_n++;
}

Test(run, hostile_job_lines_each_give_exactly_one_row, .timeout = 600) {
    WG_REQUIRE_CORPUS();
    mkdir_tmp();
    char in[512];
    snprintf(in, sizeof in, "%s/jobs.jsonl", g_dir);
    FILE *f = fopen(in, "wb");
    cr_assert_not_null(f);
    g_hl_n = 0;
    /* a complete chat job, a complete completions job, a token-id prompt */
    static const char *const jobs[] = {
        "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\","
        "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"Hi\"}],"
        "\"max_tokens\":3,\"temperature\":0.7,\"top_p\":0.9,\"seed\":5,\"stop\":[\"\\n\",\"cat\"],"
        "\"logprobs\":true,\"top_logprobs\":2,\"logit_bias\":{\"13\":2,\"29\":-100},\"presence_penalty\":0.5,"
        "\"frequency_penalty\":0.25,\"response_format\":{\"type\":\"text\"}}}",
        "{\"custom_id\":\"p\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\","
        "\"prompt\":\"The cat\",\"max_tokens\":3,\"temperature\":0,\"seed\":1,\"stop\":\"dog\",\"logprobs\":1,"
        "\"n\":1,\"echo\":false}}",
        "{\"custom_id\":\"i\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":[1,400,50],\"max_tokens\":2}}",
    };
    for (size_t k = 0; k < sizeof jobs / sizeof jobs[0]; k++) {
        json_error_t je;
        json_t *job = json_loads(jobs[k], 0, &je);
        cr_assert_not_null(job, "job %zu: %s", k, je.text);
        wg_test_json_mutate(job, job, "", NULL, wg_test_json_hostile, WG_TJ_HOSTILE_N, s_hl_visit, f);
        json_decref(job);
    }
    fclose(f);
    cr_assert_gt(g_hl_n, 300, "only %d lines", g_hl_n);
    const char *paths[] = {"", "--direct"};
    json_t *verdict[2] = {json_object(), json_object()}; /* custom_id -> answered, per path */
    for (int pi = 0; pi < 2; pi++) {
        char out[512];
        snprintf(out, sizeof out, "%s/results%d.jsonl", g_dir, pi);
        const int rc = run_waggle(in, out, paths[pi]);
        if (rc != 0) {
            char cmd[600];
            snprintf(cmd, sizeof cmd, "tail -5 '%s/stderr.txt' >&2", g_dir);
            (void)!system(cmd);
        }
        cr_assert_eq(rc, 0, "waggle run %s exited %d", paths[pi], rc);
        json_t *rows = read_rows(out);
        cr_assert_eq((int)json_array_size(rows), g_hl_n, "%s: %zu rows for %d lines", paths[pi],
                     json_array_size(rows), g_hl_n);
        int ok = 0, err = 0;
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r) {
            json_t *e = json_object_get(r, "error");
            const char *cid = json_string_value(json_object_get(r, "custom_id"));
            if (cid) json_object_set_new(verdict[pi], cid, json_boolean(!json_is_object(e)));
            if (json_is_object(e)) {
                const char *msg = json_string_value(json_object_get(e, "message"));
                cr_assert(msg && *msg, "%s: error row without a message", paths[pi]);
                const json_int_t ln = json_integer_value(json_object_get(e, "line"));
                cr_assert(ln >= 1 && ln <= g_hl_n, "%s: error row names line %lld", paths[pi], (long long)ln);
                err++;
            } else {
                cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "response"), "status_code")), 200,
                             "%s: row %zu neither an error nor a 200", paths[pi], i);
                ok++;
            }
        }
        cr_log_info("%s: %d lines, %d answered, %d error rows\n", paths[pi][0] ? paths[pi] : "embedded", g_hl_n, ok,
                    err);
        cr_assert_gt(ok, 50);
        cr_assert_gt(err, 50);
        json_decref(rows);
    }
    /* both paths answer and refuse the same lines */
    cr_assert(json_equal(verdict[0], verdict[1]), "the embedded and --direct paths disagree on which lines are valid");
    json_decref(verdict[0]);
    json_decref(verdict[1]);
    rm_tmp();
}
