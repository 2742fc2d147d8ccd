/* waggle run — the main job on one machine: a JSONL file of requests in the
 * OpenAI Batch API input format through the continuous-batching engine,
 * results in the Batch API output format.
 *
 *   waggle run [--model M] --input jobs.jsonl --output results.jsonl
 *              [--concurrency N] [--threads N] [--kv-budget BYTES] [--stream N]
 *
 * Design: input lines are parsed and tokenized up front (each bad line becomes
 * an error row at once, never the end of the run); valid jobs are fed to one
 * wg_sched in input order, at most 2*concurrency in flight, and each result
 * is appended to the output and flushed the moment it finishes — so an
 * interrupted run keeps what it has, and a rerun skips the custom_ids (and the
 * unidentifiable bad lines, by line number) already in the output file.
 *
 * Rows: success {"id","custom_id","response":{"status_code":200,"request_id",
 * "body":{OpenAI completion / chat.completion}},"error":null}; bad line
 * {"id","custom_id" (null when unknown),"response":null,"error":{"code":
 * "invalid_request","message":"line N: ...","line":N}}. */
#include <errno.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <zmq.h>

#include "broker/wg_broker.h"
#include "common/wg_log.h"
#include "engine/model/wg_model.h"
#include "engine/sampler/wg_chat.h"
#include "engine/sched/wg_sched.h"
#include "engine/tokenizer/wg_tok.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_zmq.h"
#include "waggle.h"
#include "worker/wg_worker.h"

typedef struct {
    char *custom_id;            /* request id from the input */
    char *model;                /* body.model to echo (or the model's name) */
    bool chat;                  /* /v1/chat/completions */
    int32_t *ids;               /* [n_ids] prompt tokens */
    size_t n_ids;               /* count */
    wg_sampling_params_t sp;    /* sampling */
    wg_logit_bias_t *bias;      /* [sp.n_logit_bias] */
    char *stop[WG_MAX_STOP];    /* stop strings */
    size_t n_stop;              /* count */
    int32_t max_tokens;         /* limit */
    int32_t top_logprobs;       /* alternatives requested */
    bool logprobs;              /* logprobs requested */
    bool json;                  /* body.response_format {"type": "json_object"} */
    int line;                   /* input line number */
    /* results */
    char *text;                 /* generated text */
    size_t n_text, cap_text;    /* bytes, capacity */
    wg_sample_t *lp;            /* [n_lp] per-token samples when logprobs */
    size_t n_lp, cap_lp;        /* count, capacity */
    int32_t n_gen;              /* generated tokens */
    bool done;                  /* result written */
    /* embedded path */
    char *job_id;               /* broker's id once SUBMITTED accepted it */
    size_t printed;             /* --stream: bytes of text already printed */
    uint64_t next_seq;          /* --stream: next TOKEN seq expected (gap = stop live printing) */
    bool stream_gap;            /* --stream: a TOKEN event was missed; print from the result */
} s_job_t;

typedef struct {
    const char *path;          /* output path */
    FILE *f;                   /* append stream */
    char **done_ids;           /* custom_ids already in the output */
    size_t n_done, cap_done;   /* count, capacity */
    int *done_lines;           /* bad lines without custom_id already reported */
    size_t n_lines, cap_lines; /* count, capacity */
} s_out_t;

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle run [--model M] --input jobs.jsonl --output results.jsonl [options]\n"
            "  -m, --model M        GGUF file or HF directory (default: the demo model in examples/models)\n"
            "  -i, --input F        OpenAI Batch API input (JSONL; url /v1/completions or /v1/chat/completions)\n"
            "  -o, --output F       results (JSONL, appended; finished custom_ids are skipped on rerun)\n"
            "  --concurrency N      sequences decoded together (default 64)\n"
            "  --threads N          compute threads (default: online CPUs)\n"
            "  --device D           cpu (default) or cuda:N: where the model runs\n"
            "  --kv-budget BYTES    KV cache size (suffixes K, M, G; default from concurrency)\n"
            "  --kv-type T          K/V cache elements: f32 (default), f16 (half the cache, faster attention)\n"
            "                       or q8_0 (0.53 of f16: twice the sequences per byte)\n"
            "  --max-batch-tokens N tokens per engine step (default 512)\n"
            "  --max-context N      tokens one job may hold, prompt + generated (default: the model's trained\n"
            "                       context; -1: only the KV cache's size): a longer prompt is an error row,\n"
            "                       generation stops there with finish_reason length\n"
            "  --no-prefix-cache    compute every prompt in full instead of sharing the K/V blocks of\n"
            "                       prompt starts other jobs already computed (same outputs either way)\n"
            "  --stream N           print the text of the first N jobs to stdout as it is generated\n"
            "  --direct             drive the engine directly instead of through the embedded broker + worker\n"
            "                       (inproc://, in-memory queue; the default, same code path as the fleet)\n"
            "  -v, --verbose        show the embedded broker's and worker's log lines (also WAGGLE_LOG=info)\n");
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool s_parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return false;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return false;
    *out = (size_t)v;
    return true;
}

static bool s_parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* The demo model: examples/models/waggle-kjv-*.gguf, else stories260K.gguf. */
static char *s_default_model(void) {
    const char *bases[] = {".", getenv("WAGGLE_HOME")};
    for (size_t b = 0; b < 2; b++) {
        if (!bases[b]) continue;
        char pat[4096];
        snprintf(pat, sizeof pat, "%s/examples/models/waggle-kjv-*.gguf", bases[b]);
        glob_t g;
        if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
            char *p = strdup(g.gl_pathv[0]);
            globfree(&g);
            return p;
        }
        globfree(&g);
        snprintf(pat, sizeof pat, "%s/examples/models/stories260K.gguf", bases[b]);
        struct stat st;
        if (stat(pat, &st) == 0) return strdup(pat);
    }
    return NULL;
}

static wg_tok_t *s_load_tok(const wg_model_t *m) {
    wg_tok_t *t = NULL;
    if (wg_model_gguf(m)) {
        if (wg_tok_from_gguf(wg_model_gguf(m), &t) == WG_OK) return t;
        return NULL;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", wg_model_path(m));
    if (wg_tok_from_json(p, &t) == WG_OK) return t;
    return NULL;
}

/* ---- output file: finished ids, append stream ---- */

static bool s_out_has(const s_out_t *o, const char *cid) {
    for (size_t i = 0; i < o->n_done; i++)
        if (strcmp(o->done_ids[i], cid) == 0) return true;
    return false;
}

static bool s_out_has_line(const s_out_t *o, int line) {
    for (size_t i = 0; i < o->n_lines; i++)
        if (o->done_lines[i] == line) return true;
    return false;
}

/* Read what a previous run wrote; cut a partial last line (interrupted write). */
static int s_out_open(s_out_t *o, const char *path) {
    memset(o, 0, sizeof *o);
    o->path = path;
    FILE *f = fopen(path, "r+b");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long good_end = 0;
        while ((n = getline(&line, &cap, f)) > 0) {
            if (line[n - 1] != '\n') break; /* partial row: dropped below */
            good_end = ftell(f);
            json_t *row = json_loads(line, 0, NULL);
            if (!row) continue;
            json_t *cid = json_object_get(row, "custom_id");
            if (json_is_string(cid)) {
                if (o->n_done == o->cap_done) {
                    o->cap_done = o->cap_done ? o->cap_done * 2 : 256;
                    o->done_ids = realloc(o->done_ids, o->cap_done * sizeof *o->done_ids);
                }
                o->done_ids[o->n_done++] = strdup(json_string_value(cid));
            } else {
                json_t *ln = json_object_get(json_object_get(row, "error"), "line");
                if (json_is_integer(ln)) {
                    if (o->n_lines == o->cap_lines) {
                        o->cap_lines = o->cap_lines ? o->cap_lines * 2 : 64;
                        o->done_lines = realloc(o->done_lines, o->cap_lines * sizeof *o->done_lines);
                    }
                    o->done_lines[o->n_lines++] = (int)json_integer_value(ln);
                }
            }
            json_decref(row);
        }
        free(line);
        fflush(f);
        if (ftruncate(fileno(f), good_end) != 0) {
            fclose(f);
            fprintf(stderr, "waggle run: cannot repair output '%s': %s\n", path, strerror(errno));
            return -1;
        }
        fclose(f);
    }
    o->f = fopen(path, "ab");
    if (!o->f) {
        fprintf(stderr, "waggle run: cannot open output '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void s_out_close(s_out_t *o) {
    if (o->f) fclose(o->f);
    for (size_t i = 0; i < o->n_done; i++) free(o->done_ids[i]);
    free(o->done_ids);
    free(o->done_lines);
}

static unsigned long long g_row_seq;

static void s_write_row(s_out_t *o, json_t *row) {
    char *s = row ? json_dumps(row, JSON_COMPACT) : NULL;
    if (!s) {
        /* Never drop a job's row: one that cannot be written says so. */
        const char *cid = json_string_value(json_object_get(row, "custom_id"));
        const char *id = json_string_value(json_object_get(row, "id"));
        json_t *e = json_pack("{s:s, s:o, s:n, s:{s:s, s:s}}", "id", id ? id : "batch_req_unencodable", "custom_id",
                              cid ? json_string(cid) : json_null(), "response", "error", "code", "internal_error",
                              "message", "the result row could not be encoded as JSON");
        s = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        fprintf(stderr, "waggle run: custom_id %s: the result row could not be encoded as JSON\n", cid ? cid : "?");
    }
    if (s) {
        fputs(s, o->f);
        fputc('\n', o->f);
        fflush(o->f);
        free(s);
    }
    json_decref(row);
}

static void s_write_error(s_out_t *o, const char *cid, int line, const char *msg) {
    char id[64], full[1200];
    snprintf(id, sizeof id, "batch_req_%lx%06llx", (unsigned long)time(NULL), ++g_row_seq);
    snprintf(full, sizeof full, "line %d: %s", line, msg);
    json_t *row = json_pack("{s:s, s:o, s:n, s:{s:s, s:s, s:i}}", "id", id, "custom_id",
                            cid ? json_string(cid) : json_null(), "response", "error", "code", "invalid_request",
                            "message", full, "line", line);
    s_write_row(o, row);
}

/* ---- request parsing ---- */

static void s_job_free(s_job_t *j) {
    free(j->custom_id);
    free(j->model);
    free(j->ids);
    free(j->bias);
    for (size_t i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->text);
    free(j->lp);
    free(j->job_id);
}

typedef struct {
    const wg_tok_t *tok;        /* tokenizer */
    int32_t n_vocab;            /* vocabulary size */
    wg_chat_kind_t chat;        /* the model's chat family */
    const char *model_name;     /* echoed when body.model is absent */
} s_ctx_t;

static bool s_num(json_t *body, const char *key, double lo, double hi, double *out, char *err, size_t cap) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) {
        snprintf(err, cap, "body.%s must be a number", key);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        snprintf(err, cap, "body.%s=%g out of range [%g, %g]", key, d, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool s_int(json_t *body, const char *key, long long lo, long long hi, long long *out, char *err,
                  size_t cap) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) {
        snprintf(err, cap, "body.%s must be an integer", key);
        return false;
    }
    long long d = json_integer_value(v);
    if (d < lo || d > hi) {
        snprintf(err, cap, "body.%s=%lld out of range [%lld, %lld]", key, d, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

/* Text of a chat message content: a string or an array of {type:"text", text}. */
static char *s_content(json_t *c) {
    if (json_is_string(c)) return strdup(json_string_value(c));
    if (!json_is_array(c)) return NULL;
    size_t n = 0, i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t)) return NULL;
        n += strlen(json_string_value(t));
    }
    char *out = malloc(n + 1);
    if (!out) return NULL;
    out[0] = '\0';
    json_array_foreach(c, i, part) strcat(out, json_string_value(json_object_get(part, "text")));
    return out;
}

/* Fill j from the body of a request; false with err set on a bad field. */
static bool s_parse_body(const s_ctx_t *cx, json_t *body, s_job_t *j, char *err, size_t cap) {
    json_t *v;
    v = json_object_get(body, "model");
    if (v && !json_is_string(v)) return snprintf(err, cap, "body.model must be a string"), false;
    j->model = strdup(v ? json_string_value(v) : cx->model_name);
    long long n = 1;
    if (!s_int(body, "n", 1, 1, &n, err, cap)) return snprintf(err, cap, "body.n must be 1"), false;
    if (!s_int(body, "best_of", 1, 1, &n, err, cap)) return snprintf(err, cap, "body.best_of must be 1"), false;
    v = json_object_get(body, "echo");
    if (json_is_true(v)) return snprintf(err, cap, "body.echo=true is not supported"), false;

    j->sp = wg_sampling_defaults();
    double d;
    d = 1.0;
    if (!s_num(body, "temperature", 0, 2, &d, err, cap)) return false;
    j->sp.temperature = (float)d;
    d = 1.0;
    if (!s_num(body, "top_p", 0, 1, &d, err, cap)) return false;
    if (d <= 0) return snprintf(err, cap, "body.top_p=%g must be > 0", d), false;
    j->sp.top_p = (float)d;
    d = 0;
    if (!s_num(body, "min_p", 0, 1, &d, err, cap)) return false;
    j->sp.min_p = (float)d;
    long long k = 0;
    if (!s_int(body, "top_k", 0, 1 << 30, &k, err, cap)) return false;
    j->sp.top_k = (int32_t)k;
    d = 0;
    if (!s_num(body, "presence_penalty", -2, 2, &d, err, cap)) return false;
    j->sp.presence_penalty = (float)d;
    d = 0;
    if (!s_num(body, "frequency_penalty", -2, 2, &d, err, cap)) return false;
    j->sp.frequency_penalty = (float)d;
    d = 1;
    if (!s_num(body, "repetition_penalty", 0.01, 10, &d, err, cap)) return false;
    j->sp.repeat_penalty = (float)d;
    j->sp.repeat_last_n = -1;
    v = json_object_get(body, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) return snprintf(err, cap, "body.seed must be an integer"), false;
        j->sp.seed = (uint64_t)json_integer_value(v);
        j->sp.has_seed = true;
    } else {
        /* Unseeded sampling still reproduces per custom_id within a run. */
        j->sp.seed = 0;
        j->sp.has_seed = true;
    }
    long long mt = j->chat ? 256 : 16;
    if (!s_int(body, "max_tokens", 1, 1 << 24, &mt, err, cap)) return false;
    if (j->chat && !s_int(body, "max_completion_tokens", 1, 1 << 24, &mt, err, cap)) return false;
    j->max_tokens = (int32_t)mt;

    if (j->chat) {
        v = json_object_get(body, "logprobs");
        if (v && !json_is_null(v) && !json_is_boolean(v))
            return snprintf(err, cap, "body.logprobs must be a boolean for chat completions"), false;
        j->logprobs = json_is_true(v);
        long long tl = 0;
        if (!s_int(body, "top_logprobs", 0, WG_MAX_TOP_LOGPROBS, &tl, err, cap)) return false;
        if (tl > 0 && !j->logprobs) return snprintf(err, cap, "body.top_logprobs needs body.logprobs=true"), false;
        j->top_logprobs = (int32_t)tl;
    } else {
        long long lp = -1;
        if (!s_int(body, "logprobs", 0, 5, &lp, err, cap)) return false;
        j->logprobs = lp >= 0;
        j->top_logprobs = lp > 0 ? (int32_t)lp : 0;
    }
    j->sp.logprobs = j->logprobs;
    j->sp.n_logprobs = j->top_logprobs;

    v = json_object_get(body, "stop");
    if (json_is_string(v)) {
        if (!*json_string_value(v)) return snprintf(err, cap, "body.stop is empty"), false;
        if (strlen(json_string_value(v)) > WG_MSG_MAX_STOP_LEN)
            return snprintf(err, cap, "body.stop is %zu bytes (at most %u)", strlen(json_string_value(v)),
                            WG_MSG_MAX_STOP_LEN),
                   false;
        j->stop[j->n_stop++] = strdup(json_string_value(v));
    } else if (json_is_array(v)) {
        if (json_array_size(v) > WG_MAX_STOP)
            return snprintf(err, cap, "body.stop has %zu entries (at most %d)", json_array_size(v), WG_MAX_STOP),
                   false;
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e) || !*json_string_value(e))
                return snprintf(err, cap, "body.stop[%zu] must be a non-empty string", i), false;
            if (strlen(json_string_value(e)) > WG_MSG_MAX_STOP_LEN)
                return snprintf(err, cap, "body.stop[%zu] is %zu bytes (at most %u)", i, strlen(json_string_value(e)),
                                WG_MSG_MAX_STOP_LEN),
                       false;
            j->stop[j->n_stop++] = strdup(json_string_value(e));
        }
    } else if (v && !json_is_null(v)) {
        return snprintf(err, cap, "body.stop must be a string or an array of strings"), false;
    }

    if (!wg_cli_response_format(body, &j->json, err, cap)) return false;

    v = json_object_get(body, "logit_bias");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v)) return snprintf(err, cap, "body.logit_bias must be an object"), false;
        j->bias = calloc(json_object_size(v) + 1, sizeof *j->bias);
        const char *key;
        json_t *e;
        json_object_foreach(v, key, e) {
            long t;
            if (!s_parse_int(key, 0, cx->n_vocab - 1, &t))
                return snprintf(err, cap, "body.logit_bias key '%.40s' is not a token id below %d", key, cx->n_vocab),
                       false;
            if (!json_is_number(e) || json_number_value(e) < -100 || json_number_value(e) > 100)
                return snprintf(err, cap, "body.logit_bias[%s] must be a number in [-100, 100]", key), false;
            double b = json_number_value(e);
            j->bias[j->sp.n_logit_bias++] = (wg_logit_bias_t){(int32_t)t, b <= -100 ? -INFINITY : (float)b};
        }
        j->sp.logit_bias = j->bias;
    }

    /* Prompt. */
    if (j->chat) {
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0)
            return snprintf(err, cap, "body.messages must be a non-empty array"), false;
        if (cx->chat == WG_CHAT_UNKNOWN)
            return snprintf(err, cap, "the model's chat template is not supported; use /v1/completions"), false;
        size_t nm = json_array_size(msgs), i;
        wg_chat_msg_t *cm = calloc(nm, sizeof *cm);
        char **contents = calloc(nm, sizeof *contents);
        bool ok = cm && contents;
        json_t *e;
        json_array_foreach(msgs, i, e) {
            if (!ok) break;
            json_t *role = json_object_get(e, "role");
            if (!json_is_string(role)) {
                snprintf(err, cap, "body.messages[%zu].role must be a string", i);
                ok = false;
                break;
            }
            contents[i] = s_content(json_object_get(e, "content"));
            if (!contents[i]) {
                snprintf(err, cap, "body.messages[%zu].content must be a string or text parts", i);
                ok = false;
                break;
            }
            cm[i].role = json_string_value(role);
            cm[i].content = contents[i];
        }
        char *prompt = NULL;
        if (ok) {
            int32_t b = wg_tok_bos(cx->tok), eo = wg_tok_eos(cx->tok);
            wg_status st = wg_chat_render(cx->chat, cm, nm, true, b >= 0 ? wg_tok_text(cx->tok, b) : NULL,
                                          eo >= 0 ? wg_tok_text(cx->tok, eo) : NULL, &prompt);
            if (st) {
                snprintf(err, cap, "body.messages: %s", wg_errmsg());
                ok = false;
            }
        }
        if (ok && wg_tok_encode(cx->tok, prompt, strlen(prompt), true, true, &j->ids, &j->n_ids) != WG_OK) {
            snprintf(err, cap, "cannot tokenize the rendered chat: %s", wg_errmsg());
            ok = false;
        }
        free(prompt);
        for (i = 0; i < nm && contents; i++) free(contents[i]);
        free(contents);
        free(cm);
        if (!ok) return false;
    } else {
        json_t *p = json_object_get(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (json_is_string(p)) {
            const char *t = json_string_value(p);
            if (wg_tok_encode(cx->tok, t, strlen(t), true, false, &j->ids, &j->n_ids) != WG_OK)
                return snprintf(err, cap, "cannot tokenize body.prompt: %s", wg_errmsg()), false;
        } else if (json_is_array(p)) {
            size_t np = json_array_size(p), i;
            json_t *e;
            j->ids = malloc((np ? np : 1) * sizeof *j->ids);
            json_array_foreach(p, i, e) {
                if (!json_is_integer(e))
                    return snprintf(err, cap, "body.prompt[%zu]: only one prompt (a string or token ids) per request",
                                    i),
                           false;
                long long t = json_integer_value(e);
                if (t < 0 || t >= cx->n_vocab)
                    return snprintf(err, cap, "body.prompt[%zu]=%lld is not a token id below %d", i, t, cx->n_vocab),
                           false;
                j->ids[j->n_ids++] = (int32_t)t;
            }
        } else {
            return snprintf(err, cap, "body.prompt must be a string or an array of token ids"), false;
        }
    }
    if (j->n_ids == 0) return snprintf(err, cap, "the prompt is empty"), false;
    return true;
}

/* Parse one input line into j. Returns 1 ok, 0 bad (err set, *cid may be set). */
static int s_parse_line(const s_ctx_t *cx, const char *line, s_job_t *j, char **cid, char *err, size_t cap) {
    json_error_t je;
    json_t *root = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    *cid = NULL;
    if (!root) return snprintf(err, cap, "invalid JSON: %s (column %d)", je.text, je.column), 0;
    int ok = 0;
    json_t *v = json_object_get(root, "custom_id");
    if (!json_is_object(root)) {
        snprintf(err, cap, "a request must be a JSON object");
        goto out;
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        snprintf(err, cap, "custom_id missing or not a non-empty string");
        goto out;
    }
    *cid = strdup(json_string_value(v));
    v = json_object_get(root, "method");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "POST") != 0)) {
        snprintf(err, cap, "method must be \"POST\"");
        goto out;
    }
    v = json_object_get(root, "url");
    if (!json_is_string(v)) {
        snprintf(err, cap, "url missing (\"/v1/completions\" or \"/v1/chat/completions\")");
        goto out;
    }
    if (strcmp(json_string_value(v), "/v1/chat/completions") == 0) j->chat = true;
    else if (strcmp(json_string_value(v), "/v1/completions") != 0) {
        snprintf(err, cap, "url '%.100s' not supported (\"/v1/completions\" or \"/v1/chat/completions\")",
                 json_string_value(v));
        goto out;
    }
    json_t *body = json_object_get(root, "body");
    if (!json_is_object(body)) {
        snprintf(err, cap, "body must be an object");
        goto out;
    }
    ok = s_parse_body(cx, body, j, err, cap) ? 1 : 0;
out:
    json_decref(root);
    return ok;
}

/* ---- results ---- */

static json_t *s_token_str(const wg_tok_t *tok, int32_t id) {
    char buf[256];
    size_t n = wg_tok_piece(tok, id, true, buf, sizeof buf);
    if (n > sizeof buf) n = sizeof buf;
    return wg_cli_json_text(buf, n, false); /* a byte token alone is not valid UTF-8 */
}

static json_t *s_logprobs_json(const wg_tok_t *tok, const s_job_t *j) {
    if (!j->logprobs) return json_null();
    if (j->chat) {
        json_t *content = json_array();
        for (size_t i = 0; i < j->n_lp; i++) {
            const wg_sample_t *s = &j->lp[i];
            json_t *tops = json_array();
            for (int32_t k = 0; k < s->n_top && k < j->top_logprobs; k++)
                json_array_append_new(tops, json_pack("{s:o, s:f}", "token", s_token_str(tok, s->top_tokens[k]),
                                                      "logprob", (double)s->top_logprobs[k]));
            json_array_append_new(content, json_pack("{s:o, s:f, s:o}", "token", s_token_str(tok, s->token),
                                                     "logprob", (double)s->logprob, "top_logprobs", tops));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = 0;
    for (size_t i = 0; i < j->n_lp; i++) {
        const wg_sample_t *s = &j->lp[i];
        json_t *ts = s_token_str(tok, s->token);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_string_length(ts);
        json_array_append_new(toks, ts);
        json_array_append_new(lps, json_real(s->logprob));
        json_t *o = json_object();
        for (int32_t k = 0; k < s->n_top && k < j->top_logprobs; k++) {
            /* keys as the token strings (valid UTF-8, no NUL) */
            json_t *key = s_token_str(tok, s->top_tokens[k]);
            const char *ks = json_string_value(key);
            if (ks) json_object_set_new(o, ks, json_real(s->top_logprobs[k]));
            json_decref(key);
        }
        json_array_append_new(tops, o);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

static void s_write_result(s_out_t *o, const wg_tok_t *tok, s_job_t *j, wg_finish_t fin) {
    char id[64], rid[64], cid[64];
    unsigned long long seq = ++g_row_seq;
    long now = (long)time(NULL);
    snprintf(id, sizeof id, "batch_req_%lx%06llx", (unsigned long)now, seq);
    snprintf(rid, sizeof rid, "req_%lx%06llx", (unsigned long)now, seq);
    snprintf(cid, sizeof cid, "%s-%lx%06llx", j->chat ? "chatcmpl" : "cmpl", (unsigned long)now, seq);
    json_t *text = wg_cli_json_text(j->text ? j->text : "", j->n_text, false);
    json_t *choice;
    if (j->chat)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:s, s:o}", "index", 0, "message", "role", "assistant", "content",
                           text, "finish_reason", wg_finish_name(fin), "logprobs", s_logprobs_json(tok, j));
    else
        choice = json_pack("{s:i, s:o, s:s, s:o}", "index", 0, "text", text, "finish_reason", wg_finish_name(fin),
                           "logprobs", s_logprobs_json(tok, j));
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:I, s:I, s:I}}", "id", cid, "object",
                             j->chat ? "chat.completion" : "text_completion", "created", (json_int_t)now, "model",
                             j->model, "choices", choice, "usage", "prompt_tokens", (json_int_t)j->n_ids,
                             "completion_tokens", (json_int_t)j->n_gen, "total_tokens",
                             (json_int_t)(j->n_ids + (size_t)j->n_gen));
    json_t *row = json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}", "id", id, "custom_id", j->custom_id, "response",
                            "status_code", 200, "request_id", rid, "body", body, "error");
    s_write_row(o, row);
    j->done = true;
}

static void s_append(char **buf, size_t *n, size_t *cap, const char *t, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *n + len + 1) nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *n, t, len);
    *n += len;
    (*buf)[*n] = '\0';
}

/* ---- progress ---- */

typedef struct {
    bool tty;          /* stderr is a terminal */
    double t0;         /* start */
    double last;       /* last print */
    size_t total;      /* jobs to run this time */
} s_prog_t;

static void s_progress(s_prog_t *p, size_t done, long long toks, bool force) {
    double now = s_now();
    if (!force && now - p->last < (p->tty ? 0.1 : 5.0)) return;
    p->last = now;
    double el = now - p->t0;
    double tps = el > 0 ? (double)toks / el : 0;
    double eta = done > 0 && done < p->total ? el / (double)done * (double)(p->total - done) : 0;
    if (p->tty) {
        int w = 30, fill = p->total ? (int)((double)w * (double)done / (double)p->total) : w;
        char bar[40];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
        bar[w] = '\0';
        fprintf(stderr, "\r[%s] %zu/%zu jobs  %.0f tok/s  ETA %.0fs   ", bar, done, p->total, tps, eta);
    } else {
        fprintf(stderr, "waggle run: %zu/%zu jobs, %lld tokens, %.0f tok/s, ETA %.0fs\n", done, p->total, toks, tps,
                eta);
    }
    fflush(stderr);
}

/* ---- the default path: embedded broker + worker over inproc:// ---- */

typedef struct {
    s_job_t *jobs;              /* (n_jobs,) parsed jobs */
    size_t n_jobs;              /* count */
    s_out_t *out;               /* output file */
    const wg_tok_t *tok;        /* for logprob rendering */
    s_prog_t *prog;             /* progress */
    long stream_n;              /* --stream N */
    size_t n_done;              /* jobs with a row written */
    size_t n_bad;               /* error rows */
    long long n_tokens;         /* generated tokens */
    size_t stream_at;           /* job whose text streams live */
    uint64_t pc_cached;         /* prompt tokens found in the prefix cache (worker's final totals) */
    uint64_t pc_computed;       /* prompt tokens computed */
} s_emb_t;

static void *s_broker_thread(void *arg) {
    wg_broker_run((wg_broker_t *)arg);
    return NULL;
}

static void *s_worker_thread(void *arg) {
    wg_worker_run((wg_worker_t *)arg);
    return NULL;
}

static wg_finish_t s_finish_from(const char *f) {
    if (f && !strcmp(f, "length")) return WG_FINISH_LENGTH;
    if (f && !strcmp(f, "cancelled")) return WG_FINISH_CANCELLED;
    return WG_FINISH_STOP;
}

/* The wire job of input job i: token-id prompt (tokenized here, exactly as
 * --direct does), every sampling field, the wire custom_id "<i>". */
static wg_status s_wire_job(const s_job_t *j, size_t i, const char *model, bool stream, wg_msg_job *w, char *cid,
                            size_t cid_cap) {
    wg_msg_job_init(w);
    snprintf(cid, cid_cap, "%zu", i);
    w->custom_id = cid;
    w->model = (char *)model;
    w->prompt_ids = (uint32_t *)j->ids; /* int32 ids >= 0: same bits as uint32 */
    w->n_prompt_ids = (uint32_t)j->n_ids;
    w->max_tokens = j->max_tokens > WG_MSG_MAX_TOKENS ? WG_MSG_MAX_TOKENS : (uint32_t)j->max_tokens;
    w->json_object = j->json;
    w->stream = stream;
    w->sampling.temperature = j->sp.temperature;
    w->sampling.top_k = j->sp.top_k > (1 << 20) ? (1u << 20) : (uint32_t)j->sp.top_k;
    w->sampling.top_p = j->sp.top_p;
    w->sampling.min_p = j->sp.min_p;
    w->sampling.repetition_penalty = j->sp.repeat_penalty;
    w->sampling.presence_penalty = j->sp.presence_penalty;
    w->sampling.frequency_penalty = j->sp.frequency_penalty;
    w->sampling.has_seed = j->sp.has_seed;
    w->sampling.seed = j->sp.seed;
    w->sampling.logprobs = (uint32_t)j->top_logprobs;
    w->sampling.chosen_logprob = j->logprobs;
    w->stop = (char **)j->stop;
    w->n_stop = (uint32_t)j->n_stop;
    if (j->sp.n_logit_bias > WG_MSG_MAX_LOGIT_BIAS)
        return wg_error(WG_ERR_RANGE, "body.logit_bias has %zu entries (at most %d)", j->sp.n_logit_bias,
                        WG_MSG_MAX_LOGIT_BIAS);
    if (j->sp.n_logit_bias) {
        w->logit_bias = malloc(j->sp.n_logit_bias * sizeof *w->logit_bias);
        if (!w->logit_bias) return wg_error(WG_ERR_NOMEM, "logit_bias");
        for (size_t q = 0; q < j->sp.n_logit_bias; q++)
            w->logit_bias[q] = (wg_msg_logit_bias){(uint32_t)j->bias[q].token, j->bias[q].bias};
        w->n_logit_bias = (uint32_t)j->sp.n_logit_bias;
    }
    /* What the broker's decoder would refuse (a prompt over 131072 tokens…)
     * would get the whole SUBMIT refused: it is this job's error row. */
    wg_status st = wg_msg_job_fits(w);
    if (st != WG_OK) return wg_error(st, "the job does not fit the broker protocol: %s", wg_errmsg());
    return WG_OK;
}

/* Print the streaming job's pending text, then move on in input order. */
static void s_emb_stream_advance(s_emb_t *e) {
    while ((long)e->stream_at < e->stream_n && e->stream_at < e->n_jobs) {
        s_job_t *j = &e->jobs[e->stream_at];
        if (!j->done) break;
        if (j->printed < j->n_text) fwrite(j->text + j->printed, 1, j->n_text - j->printed, stdout);
        j->printed = j->n_text;
        fputc('\n', stdout);
        e->stream_at++;
        if ((long)e->stream_at < e->stream_n && e->stream_at < e->n_jobs) {
            s_job_t *nj = &e->jobs[e->stream_at];
            printf("--- %s ---\n", nj->custom_id);
            if (!nj->stream_gap && nj->n_text) {
                fwrite(nj->text, 1, nj->n_text, stdout);
                nj->printed = nj->n_text;
            }
        }
        fflush(stdout);
    }
}

static void s_emb_on_result(s_emb_t *e, const wg_msg_result *r) {
    char *end = NULL;
    unsigned long long i = r->custom_id ? strtoull(r->custom_id, &end, 10) : ~0ull;
    if (!r->custom_id || *end || i >= e->n_jobs || e->jobs[i].done) return;
    s_job_t *j = &e->jobs[i];
    if (strcmp(r->state, "done") != 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", r->error ? r->error : r->state);
        s_write_error(e->out, j->custom_id, j->line, msg);
        j->done = true;
        e->n_bad++;
        e->n_done++;
        return;
    }
    free(j->text);
    j->text = NULL;
    j->n_text = j->cap_text = 0;
    if (j->printed && (j->stream_gap || j->printed > (r->text ? strlen(r->text) : 0))) j->printed = 0;
    if (r->text) s_append(&j->text, &j->n_text, &j->cap_text, r->text, strlen(r->text));
    j->n_gen = (int32_t)r->completion_tokens;
    e->n_tokens += r->completion_tokens;
    if (j->logprobs) {
        size_t n = r->n_logprobs + (r->has_end ? 1 : 0);
        free(j->lp);
        j->lp = calloc(n ? n : 1, sizeof *j->lp);
        j->n_lp = j->cap_lp = j->lp ? n : 0;
        size_t at = 0;
        for (size_t t = 0; j->lp && t < n; t++) {
            wg_sample_t *s = &j->lp[t];
            bool last = t == r->n_logprobs;
            s->token = last ? (int32_t)r->end_token : (int32_t)r->token_ids[t];
            s->logprob = last ? r->end_logprob : r->logprobs[t];
            uint32_t k = last ? r->end_n_top : (r->n_top ? r->n_top[t] : 0);
            if (k > WG_MAX_TOP_LOGPROBS) k = WG_MAX_TOP_LOGPROBS;
            s->n_top = (int32_t)k;
            for (uint32_t q = 0; q < k; q++) {
                const wg_msg_top_logprob *tp = last ? &r->end_top[q] : &r->top[at + q];
                s->top_tokens[q] = (int32_t)tp->token_id;
                s->top_logprobs[q] = tp->logprob;
            }
            if (!last && r->n_top) at += r->n_top[t];
        }
    }
    s_write_result(e->out, e->tok, j, s_finish_from(r->finish_reason));
    e->n_done++;
}

/* A TOKEN event for a --stream job: append and print live when it is the one streaming. */
static void s_emb_on_token(s_emb_t *e, const wg_msg_token *t) {
    for (size_t i = 0; i < e->n_jobs && (long)i < e->stream_n; i++) {
        s_job_t *j = &e->jobs[i];
        if (!j->job_id || strcmp(j->job_id, t->job_id) != 0) continue;
        if (j->done || j->stream_gap) return;
        if (t->seq != j->next_seq) {
            j->stream_gap = true; /* subscribed late or an attempt restarted: the result has it all */
            return;
        }
        j->next_seq++;
        size_t len = t->text_delta ? strlen(t->text_delta) : 0;
        if (len) s_append(&j->text, &j->n_text, &j->cap_text, t->text_delta, len);
        if (i == e->stream_at && j->n_text > j->printed) {
            fwrite(j->text + j->printed, 1, j->n_text - j->printed, stdout);
            j->printed = j->n_text;
            fflush(stdout);
        }
        return;
    }
}

/* Receive one published message (topic, WGL1, command, body) from a SUB socket. */
static bool s_sub_recv(void *sub, wg_msg_token *t) {
    zmq_msg_t f[4];
    int n = 0, more = 1;
    bool ok = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            ok = false;
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 4) f[n++] = m;
        else {
            zmq_msg_close(&m);
            ok = false;
        }
    }
    bool res = false;
    if (ok && n == 4 && zmq_msg_size(&f[2]) == 5 && memcmp(zmq_msg_data(&f[2]), "TOKEN", 5) == 0)
        res = wg_msg_token_decode(zmq_msg_data(&f[3]), zmq_msg_size(&f[3]), t) == WG_OK;
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    return res;
}

/* Run every job through an embedded broker (memory store) and one embedded
 * worker holding the already-loaded model, over inproc://, as a producer:
 * SUBMIT in batches, rows written as RESULT pushes arrive. 0 on success. */
static const char *s_device = "cpu"; /* --device */

/* The prefix cache's share of the prompt tokens, after the summary line. */
static void s_prefix_line(uint64_t cached, uint64_t computed) {
    if (cached + computed == 0) return;
    fprintf(stderr, "waggle run: prompt tokens: %llu computed, %llu found in the prefix cache (%.1f%%)\n",
            (unsigned long long)computed, (unsigned long long)cached, 100.0 * (double)cached / (double)(cached + computed));
}
static bool s_no_prefix_cache;             /* --no-prefix-cache */
static int32_t s_max_context;              /* --max-context (0: the model's) */

static int s_run_embedded(s_emb_t *e, const wg_model_t *m, const char *model_name, wg_kv_type_t kv_type, long concurrency, long threads,
                          size_t kv_budget) {
    int rc = 1;
    char fe[96], be[96], se[96];
    snprintf(fe, sizeof fe, "inproc://waggle-run-%d-frontend", (int)getpid());
    snprintf(be, sizeof be, "inproc://waggle-run-%d-backend", (int)getpid());
    snprintf(se, sizeof se, "inproc://waggle-run-%d-stream", (int)getpid());
    void *ctx = zmq_ctx_new();
    wg_broker_t *b = NULL;
    wg_worker_t *w = NULL;
    void *dealer = NULL, *sub = NULL;
    pthread_t bt, wt;
    bool bt_on = false, wt_on = false;
    if (!ctx) {
        fprintf(stderr, "waggle run: zmq context: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    wg_broker_cfg bc = {0};
    bc.frontend = fe;
    bc.backend = be;
    bc.zmq_ctx = ctx;
    bc.queue_max_jobs = e->n_jobs + 16;
    bc.queue_max_tokens = UINT64_MAX / 4;
    bc.max_attempts = 1; /* a failure here is the request's, not a lost worker's */
    b = wg_broker_new(&bc);
    if (!b) {
        fprintf(stderr, "waggle run: cannot start the embedded broker: %s\n", wg_errmsg());
        goto done;
    }
    wg_worker_model wm = {.name = model_name, .model = m, .tok = e->tok};
    wg_worker_cfg wc = {0};
    wc.broker = be;
    wc.stream = e->stream_n > 0 ? se : NULL;
    wc.zmq_ctx = ctx;
    wc.worker_id = "waggle-run";
    wc.models = &wm;
    wc.n_models = 1;
    wc.n_threads = (int)threads;
    wc.device = s_device;
    wc.max_seqs = (int32_t)concurrency;
    wc.kv_budget_bytes = kv_budget;
    wc.kv_type = kv_type;
    wc.no_prefix_cache = s_no_prefix_cache;
    wc.max_context = s_max_context;
    w = wg_worker_new(&wc);
    if (!w) {
        fprintf(stderr, "waggle run: cannot start the embedded worker: %s\n", wg_errmsg());
        goto done;
    }
    if (pthread_create(&bt, NULL, s_broker_thread, b) != 0) goto done;
    bt_on = true;
    if (pthread_create(&wt, NULL, s_worker_thread, w) != 0) goto done;
    wt_on = true;
    dealer = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(dealer, fe) != 0) {
        fprintf(stderr, "waggle run: connect %s: %s\n", fe, zmq_strerror(zmq_errno()));
        goto done;
    }
    if (e->stream_n > 0) {
        sub = zmq_socket(ctx, ZMQ_SUB);
        zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(sub, se) != 0) {
            fprintf(stderr, "waggle run: connect %s: %s\n", se, zmq_strerror(zmq_errno()));
            goto done;
        }
    }
    if (e->stream_n > 0 && e->n_jobs > 0) {
        printf("--- %s ---\n", e->jobs[0].custom_id);
        fflush(stdout);
    }
    /* SUBMIT everything in batches (<= 1024 jobs, ~4 MiB); the broker queues it. */
    uint64_t req = 0;
    size_t next = 0, pending_replies = 0;
    while (next < e->n_jobs) {
        wg_msg_submit sm = {.req = ++req};
        sm.jobs = calloc(WG_MSG_MAX_BATCH, sizeof *sm.jobs);
        char(*cids)[24] = calloc(WG_MSG_MAX_BATCH, sizeof *cids);
        size_t *idx = calloc(WG_MSG_MAX_BATCH, sizeof *idx);
        if (!sm.jobs || !cids || !idx) {
            free(sm.jobs), free(cids), free(idx);
            fprintf(stderr, "waggle run: out of memory\n");
            goto done;
        }
        size_t bytes = 0;
        while (next < e->n_jobs && sm.n_jobs < WG_MSG_MAX_BATCH && bytes < (4u << 20)) {
            s_job_t *j = &e->jobs[next];
            wg_msg_job *wj = &sm.jobs[sm.n_jobs];
            if (s_wire_job(j, next, model_name, (long)next < e->stream_n, wj, cids[sm.n_jobs], sizeof cids[0])) {
                s_write_error(e->out, j->custom_id, j->line, wg_errmsg());
                j->done = true;
                e->n_bad++;
                e->n_done++;
                free(wj->logit_bias);
                next++;
                continue;
            }
            bytes += j->n_ids * 5 + j->sp.n_logit_bias * 12 + 256;
            for (size_t q = 0; q < j->n_stop; q++) bytes += strlen(j->stop[q]) + 2;
            idx[sm.n_jobs++] = next++;
        }
        wg_msg_buf buf = {0};
        wg_status st = sm.n_jobs ? wg_msg_submit_encode(&sm, &buf) : WG_OK;
        for (uint32_t q = 0; q < sm.n_jobs; q++) free(sm.jobs[q].logit_bias);
        free(sm.jobs), free(cids), free(idx);
        if (st) {
            fprintf(stderr, "waggle run: cannot encode SUBMIT: %s\n", wg_errmsg());
            goto done;
        }
        if (buf.len) {
            if (wg_msg_send(dealer, NULL, 0, WG_CMD_SUBMIT, &buf, 0) != WG_OK) {
                wg_msg_buf_free(&buf);
                fprintf(stderr, "waggle run: SUBMIT failed: %s\n", wg_errmsg());
                goto done;
            }
            pending_replies++;
        }
        wg_msg_buf_free(&buf);
    }
    /* Collect: SUBMITTED replies, RESULT pushes, TOKEN events. */
    while (e->n_done < e->n_jobs) {
        zmq_pollitem_t items[2] = {{dealer, 0, ZMQ_POLLIN, 0}, {sub, 0, ZMQ_POLLIN, 0}};
        int np = sub ? 2 : 1;
        if (zmq_poll(items, np, 100) < 0) {
            if (zmq_errno() == EINTR) continue;
            fprintf(stderr, "waggle run: poll: %s\n", zmq_strerror(zmq_errno()));
            goto done;
        }
        if (sub && (items[1].revents & ZMQ_POLLIN)) {
            for (int k = 0; k < 256; k++) {
                wg_msg_token t;
                memset(&t, 0, sizeof t);
                int ev = 0;
                size_t sz = sizeof ev;
                if (zmq_getsockopt(sub, ZMQ_EVENTS, &ev, &sz) != 0 || !(ev & ZMQ_POLLIN)) break;
                if (s_sub_recv(sub, &t)) {
                    s_emb_on_token(e, &t);
                    wg_msg_token_clear(&t);
                }
            }
        }
        while (items[0].revents & ZMQ_POLLIN) {
            wg_msg_in in;
            memset(&in, 0, sizeof in);
            wg_status st = wg_msg_recv(dealer, false, &in, ZMQ_DONTWAIT);
            if (st == WG_ERR_AGAIN) {
                wg_msg_in_clear(&in);
                break;
            }
            if (st == WG_OK && in.cmd == WG_CMD_RESULT) {
                wg_msg_result r;
                if (wg_msg_result_decode(WG_CMD_RESULT, in.body, in.body_len, &r) == WG_OK) {
                    s_emb_on_result(e, &r);
                    wg_msg_result_clear(&r);
                }
            } else if (st == WG_OK && in.cmd == WG_CMD_SUBMITTED) {
                wg_msg_submitted sd;
                if (wg_msg_submitted_decode(in.body, in.body_len, &sd) == WG_OK) {
                    pending_replies--;
                    for (uint32_t q = 0; q < sd.n_items; q++) {
                        const wg_msg_submitted_item *it = &sd.items[q];
                        char *endp = NULL;
                        unsigned long long i = it->custom_id ? strtoull(it->custom_id, &endp, 10) : ~0ull;
                        if (!it->custom_id || *endp || i >= e->n_jobs) continue;
                        s_job_t *j = &e->jobs[i];
                        if (it->accepted) {
                            free(j->job_id);
                            j->job_id = it->job_id ? strdup(it->job_id) : NULL;
                            if (sub && (long)i < e->stream_n && j->job_id) {
                                char topic[3 + WG_MSG_MAX_ID + 1];
                                size_t tl = wg_msg_token_topic(j->job_id, topic, sizeof topic);
                                zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, tl);
                            }
                        } else if (!j->done) {
                            s_write_error(e->out, j->custom_id, j->line, it->reason ? it->reason : "rejected");
                            j->done = true;
                            e->n_bad++;
                            e->n_done++;
                        }
                    }
                    wg_msg_submitted_clear(&sd);
                }
            } else if (st == WG_OK && in.cmd == WG_CMD_ERROR) {
                wg_msg_error er;
                if (wg_msg_error_decode(in.body, in.body_len, &er) == WG_OK) {
                    fprintf(stderr, "\nwaggle run: the embedded broker refused a request: %s: %s\n",
                            wg_status_name(er.code), er.reason ? er.reason : "");
                    wg_msg_error_clear(&er);
                }
                wg_msg_in_clear(&in);
                goto done;
            }
            wg_msg_in_clear(&in);
        }
        s_emb_stream_advance(e);
        s_progress(e->prog, e->n_done, e->n_tokens, false);
    }
    (void)pending_replies;
    rc = 0;
done:
    if (w) wg_worker_stop(w);
    if (wt_on) pthread_join(wt, NULL);
    if (w) {
        wg_worker_stats ws;
        wg_worker_get_stats(w, &ws);
        e->pc_cached = ws.prompt_tokens_cached;
        e->pc_computed = ws.prompt_tokens_computed;
    }
    if (b) wg_broker_stop(b);
    if (bt_on) pthread_join(bt, NULL);
    if (dealer) zmq_close(dealer);
    if (sub) zmq_close(sub);
    wg_worker_destroy(&w);
    wg_broker_destroy(&b);
    zmq_ctx_term(ctx);
    return rc;
}

int wg_cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    long concurrency = 64, threads = 0, stream_n = 0, max_batch = 0;
    size_t kv_budget = 0;
    bool direct = false, verbose = false;
    wg_kv_type_t kv_type = WG_KV_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL                                                              \
    do {                                                                      \
        if (!val) {                                                           \
            fprintf(stderr, "waggle run: %s needs a value\n", a);             \
            return 2;                                                         \
        }                                                                     \
        i++;                                                                  \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VAL;
            model_path = val;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--input")) {
            NEED_VAL;
            in_path = val;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VAL;
            out_path = val;
        } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-c")) {
            NEED_VAL;
            if (!s_parse_int(val, 1, 4096, &concurrency)) {
                fprintf(stderr, "waggle run: --concurrency '%s' must be an integer in [1, 4096]\n", val);
                return 2;
            }
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            NEED_VAL;
            if (!s_parse_int(val, 1, 1024, &threads)) {
                fprintf(stderr, "waggle run: --threads '%s' must be an integer in [1, 1024]\n", val);
                return 2;
            }
        } else if (!strcmp(a, "--device") || !strcmp(a, "-d")) {
            NEED_VAL;
            if (!wg_cli_device_ok("run", val)) return 2;
            s_device = val;
        } else if (!strcmp(a, "--kv-budget")) {
            NEED_VAL;
            if (!s_parse_size(val, &kv_budget) || kv_budget == 0) {
                fprintf(stderr, "waggle run: --kv-budget '%s' must be a byte count (e.g. 512M)\n", val);
                return 2;
            }
        } else if (!strcmp(a, "--kv-type")) {
            NEED_VAL;
            if (!wg_cli_kv_type_ok("run", val, &kv_type)) return 2;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            s_no_prefix_cache = true;
        } else if (!strcmp(a, "--max-context")) {
            NEED_VAL;
            long mc;
            if (!s_parse_int(val, -1, 1L << 30, &mc)) {
                fprintf(stderr, "waggle run: --max-context '%s' must be -1, 0 or a token count\n", val);
                return 2;
            }
            s_max_context = (int32_t)mc;
        } else if (!strcmp(a, "--max-batch-tokens")) {
            NEED_VAL;
            if (!s_parse_int(val, 1, 1 << 20, &max_batch)) {
                fprintf(stderr, "waggle run: --max-batch-tokens '%s' must be a positive integer\n", val);
                return 2;
            }
        } else if (!strcmp(a, "--direct")) {
            direct = true;
        } else if (!strcmp(a, "--stream")) {
            NEED_VAL;
            if (!s_parse_int(val, 0, 1 << 30, &stream_n)) {
                fprintf(stderr, "waggle run: --stream '%s' must be a count of jobs\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "waggle run: unknown option '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
#undef NEED_VAL
    }
    /* The embedded broker and worker log like daemons; a batch run on a terminal
     * wants only progress and errors unless asked (-v, or WAGGLE_LOG set). */
    if (verbose)
        wg_log_set_level(WG_LOG_INFO);
    else if (!getenv("WAGGLE_LOG"))
        wg_log_set_level(WG_LOG_ERROR);
    if (!in_path || !out_path) {
        fprintf(stderr, "waggle run: --input and --output are required\n");
        s_usage(stderr);
        return 2;
    }
    char *def_model = NULL;
    if (!model_path) {
        def_model = s_default_model();
        if (!def_model) {
            fprintf(stderr, "waggle run: no --model and no demo model in examples/models\n");
            return 2;
        }
        model_path = def_model;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? n : 1;
    }
    int rc = 1;
    wg_model_t *m = NULL;
    wg_tok_t *tok = NULL;
    wg_sched_t *s = NULL;
    s_job_t *jobs = NULL;
    size_t n_jobs = 0, cap_jobs = 0;
    s_out_t out = {0};
    FILE *in = NULL;
    char *line = NULL;
    size_t n_bad = 0, n_skipped = 0;
    long long n_tokens = 0;
    double t0 = s_now();

    if (wg_model_load(model_path, &m) != WG_OK) {
        fprintf(stderr, "waggle run: cannot load model '%s': %s\n", model_path, wg_errmsg());
        goto done;
    }
    tok = s_load_tok(m);
    if (!tok) {
        fprintf(stderr, "waggle run: model '%s' has no usable tokenizer: %s\n", model_path, wg_errmsg());
        goto done;
    }
    in = fopen(in_path, "rb");
    if (!in) {
        fprintf(stderr, "waggle run: cannot open input '%s': %s\n", in_path, strerror(errno));
        goto done;
    }
    if (s_out_open(&out, out_path) != 0) goto done;

    /* Model name to echo when a body has none: the file name without .gguf. */
    char model_name[256];
    {
        const char *b = strrchr(model_path, '/');
        b = b && b[1] ? b + 1 : model_path;
        snprintf(model_name, sizeof model_name, "%s", b);
        char *dot = strstr(model_name, ".gguf");
        if (dot && dot[5] == '\0') *dot = '\0';
    }
    s_ctx_t cx = {tok, wg_model_hparams(m)->n_vocab, wg_chat_detect(wg_tok_chat_template(tok)), model_name};

    /* Parse every line; bad ones become error rows right away. */
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        size_t k = 0;
        while (line[k] == ' ' || line[k] == '\t') k++;
        if (!line[k]) continue;
        if (n_jobs == cap_jobs) {
            cap_jobs = cap_jobs ? cap_jobs * 2 : 256;
            s_job_t *nj = realloc(jobs, cap_jobs * sizeof *nj);
            if (!nj) {
                fprintf(stderr, "waggle run: out of memory at line %d\n", lineno);
                goto done;
            }
            jobs = nj;
        }
        s_job_t *j = &jobs[n_jobs];
        memset(j, 0, sizeof *j);
        j->line = lineno;
        char err[1024] = {0}, *cid = NULL;
        int ok = s_parse_line(&cx, line, j, &cid, err, sizeof err);
        bool dup = false;
        if (cid)
            for (size_t q = 0; q < n_jobs && !dup; q++) dup = strcmp(jobs[q].custom_id, cid) == 0;
        if (dup) {
            /* Report under no id: the first job with this id still runs. */
            char e2[1200];
            snprintf(e2, sizeof e2, "duplicate custom_id '%.200s'", cid);
            if (!s_out_has_line(&out, lineno)) {
                s_write_error(&out, NULL, lineno, e2);
                n_bad++;
            } else {
                n_skipped++;
            }
            free(cid);
            s_job_free(j);
            continue;
        }
        if (cid && s_out_has(&out, cid)) {
            n_skipped++;
            free(cid);
            s_job_free(j);
            continue;
        }
        if (!ok) {
            if (cid || !s_out_has_line(&out, lineno)) {
                s_write_error(&out, cid, lineno, err);
                n_bad++;
            } else {
                n_skipped++;
            }
            free(cid);
            s_job_free(j);
            continue;
        }
        j->custom_id = cid;
        n_jobs++;
    }
    fclose(in);
    in = NULL;

    if (!direct) {
        s_prog_t eprog = {isatty(2) != 0, s_now(), 0, n_jobs};
        s_emb_t e = {.jobs = jobs, .n_jobs = n_jobs, .out = &out, .tok = tok, .prog = &eprog, .stream_n = stream_n};
        if (s_run_embedded(&e, m, model_name, kv_type, concurrency, threads, kv_budget) != 0) goto done;
        s_progress(&eprog, e.n_done, e.n_tokens, true);
        if (eprog.tty) fputc('\n', stderr);
        double ewall = s_now() - t0;
        fprintf(stderr,
                "waggle run: %zu jobs done, %zu bad lines, %zu skipped (already in output); %lld tokens in %.2f s, "
                "%.1f tok/s\n",
                e.n_done, n_bad + e.n_bad, n_skipped, e.n_tokens, ewall, ewall > 0 ? (double)e.n_tokens / ewall : 0.0);
        s_prefix_line(e.pc_cached, e.pc_computed);
        rc = 0;
        goto done;
    }
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = (int32_t)concurrency;
    cfg.n_threads = (int)threads;
    cfg.device = s_device;
    cfg.kv_budget_bytes = kv_budget;
    cfg.kv_type = kv_type;
    cfg.prefix_cache = s_no_prefix_cache ? -1 : 0;
    cfg.max_context = s_max_context;
    if (max_batch) cfg.max_batch_tokens = (int32_t)max_batch;
    s = wg_sched_new(m, tok, &cfg);
    if (!s) {
        fprintf(stderr, "waggle run: cannot start the engine: %s\n", wg_errmsg());
        goto done;
    }
    s_prog_t prog = {isatty(2) != 0, s_now(), 0, n_jobs};
    size_t next = 0, in_flight = 0, n_done = 0;
    size_t stream_at = 0; /* index of the job whose text streams live */
    const size_t max_in_flight = (size_t)concurrency * 2;
    if (stream_n > 0 && n_jobs > 0) {
        printf("--- %s ---\n", jobs[0].custom_id);
        fflush(stdout);
    }
    for (;;) {
        while (next < n_jobs && in_flight < max_in_flight) {
            s_job_t *j = &jobs[next];
            wg_sched_req_t rq = {0};
            rq.prompt = j->ids;
            rq.n_prompt = j->n_ids;
            rq.sampling = j->sp;
            rq.stop = (const char *const *)j->stop;
            rq.n_stop = j->n_stop;
            rq.max_tokens = j->max_tokens;
            rq.json = j->json;
            rq.user = (void *)(intptr_t)next;
            wg_seq_handle_t h;
            if (wg_sched_submit(s, &rq, &h) != WG_OK) {
                s_write_error(&out, j->custom_id, j->line, wg_errmsg());
                j->done = true;
                n_bad++;
                n_done++;
            } else {
                in_flight++;
            }
            next++;
        }
        if (!wg_sched_busy(s)) break;
        const wg_sched_event_t *ev;
        size_t ne;
        wg_status st = wg_sched_step(s, &ev, &ne);
        if (st) {
            fprintf(stderr, "\nwaggle run: engine step failed: %s (%s)\n", wg_strerror(st), wg_errmsg());
            goto done;
        }
        for (size_t e = 0; e < ne; e++) {
            size_t ji = (size_t)(intptr_t)ev[e].user;
            s_job_t *j = &jobs[ji];
            if (ev[e].token >= 0) {
                j->n_gen = ev[e].n_generated;
                n_tokens++;
                if (j->logprobs) {
                    if (j->n_lp == j->cap_lp) {
                        j->cap_lp = j->cap_lp ? j->cap_lp * 2 : 32;
                        j->lp = realloc(j->lp, j->cap_lp * sizeof *j->lp);
                    }
                    if (j->lp) j->lp[j->n_lp++] = ev[e].sample;
                }
            }
            s_append(&j->text, &j->n_text, &j->cap_text, ev[e].text, ev[e].text_len);
            if (ji == stream_at && (long)ji < stream_n && ev[e].text_len) {
                fwrite(ev[e].text, 1, ev[e].text_len, stdout);
                fflush(stdout);
            }
            if (ev[e].finish) {
                s_write_result(&out, tok, j, ev[e].finish);
                in_flight--;
                n_done++;
            }
        }
        /* Streaming: print jobs in input order; a job finished while an earlier one streamed is printed whole. */
        while ((long)stream_at < stream_n && stream_at < n_jobs && jobs[stream_at].done) {
            fputc('\n', stdout);
            stream_at++;
            if ((long)stream_at < stream_n && stream_at < n_jobs) {
                printf("--- %s ---\n", jobs[stream_at].custom_id);
                if (jobs[stream_at].n_text) fwrite(jobs[stream_at].text, 1, jobs[stream_at].n_text, stdout);
                fflush(stdout);
            }
        }
        s_progress(&prog, n_done, n_tokens, false);
    }
    s_progress(&prog, n_done, n_tokens, true);
    if (prog.tty) fputc('\n', stderr);
    double wall = s_now() - t0;
    fprintf(stderr, "waggle run: %zu jobs done, %zu bad lines, %zu skipped (already in output); %lld tokens in %.2f s, "
                    "%.1f tok/s\n",
            n_done, n_bad, n_skipped, n_tokens, wall, wall > 0 ? (double)n_tokens / wall : 0.0);
    {
        wg_sched_stats_t ss;
        wg_sched_stats(s, &ss);
        s_prefix_line((uint64_t)ss.n_prefix_hit_tokens, (uint64_t)ss.n_prefill_tokens);
    }
    rc = 0;
done:
    if (in) fclose(in);
    free(line);
    wg_sched_free(&s);
    for (size_t i = 0; i < n_jobs; i++) s_job_free(&jobs[i]);
    free(jobs);
    s_out_close(&out);
    wg_tok_free(&tok);
    wg_model_free(&m);
    free(def_model);
    return rc;
}
