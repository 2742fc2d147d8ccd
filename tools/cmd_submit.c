/* waggle submit — send an OpenAI Batch API JSONL file to a broker and write
 * the results in the Batch API output format as they arrive.
 *
 *   waggle submit --broker EP --input jobs.jsonl --output results.jsonl
 *
 * Design: the input is parsed up front (a bad line becomes an error row at
 * once); jobs go out in SUBMIT batches with a bounded number outstanding.
 * Results come as RESULT pushes to this DEALER (a fixed routing id, so a
 * restarted broker still reaches us) and, for jobs silent for a while, by
 * FETCH polling, so nothing depends on a push arriving. Every row is appended
 * and flushed as it comes: an interrupted run keeps what it has, and a rerun
 * skips custom_ids already in the output. A full queue (ERR_FULL) or an
 * unavailable store (ERR_REDIS) is retried after the broker's retry_after_ms.
 * The body fields map to the job map exactly as `waggle run` reads them
 * (same defaults), so both paths give the same outputs. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/wg_log.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_zmq.h"
#include "waggle.h"

enum { J_TODO, J_SENT, J_ACCEPTED, J_DONE };

typedef struct {
    wg_msg_job job;         /* the job map to send (custom_id, model, prompt/messages, sampling…) */
    bool chat;              /* /v1/chat/completions (output shape) */
    int state;              /* J_* */
    char job_id[33];        /* broker id once accepted */
    int64_t retry_at;       /* ms: not before (full queue) */
    int64_t last_seen;      /* ms: accepted or last fetched */
    bool solo;              /* sent alone: its batch was refused for a reason a retry cannot fix */
} s_item;

typedef struct {
    uint64_t req;           /* SUBMIT request number */
    uint32_t *idx;          /* (n,) item indices in job order */
    uint32_t n;             /* count */
    int64_t sent;           /* ms */
} s_batch;

static volatile sig_atomic_t s_interrupted;
static void s_on_sig(int sig) {
    (void)sig;
    s_interrupted = 1;
}

static int64_t s_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle submit --broker EP --input jobs.jsonl --output results.jsonl [options]\n"
            "  --broker EP                 broker frontend (e.g. tcp://10.0.0.1:7700)\n"
            "  --input F                   OpenAI Batch API input (JSONL; url /v1/completions or /v1/chat/completions)\n"
            "  --output F                  results, Batch API output format (appended; finished custom_ids skipped)\n"
            "  --model NAME                model for lines whose body has none\n"
            "  --batch N                   jobs per SUBMIT message, 1..1024 (default 256)\n"
            "  --window N                  jobs submitted but not finished at most (default 8192)\n"
            "  --priority P                priority of every job, -100..100 (default 0)\n"
            "  --timeout S                 give up after S seconds (default: never)\n"
            "  --stream                    ask workers to publish token events (see waggle tail)\n"
            "  --curve-server-key-file F   broker public key (Z85): enables CURVE\n"
            "  --curve-secret-key-file F   this producer's secret key (Z85), on the broker's allow-list\n");
}

/* ---- output ---- */

typedef struct {
    FILE *f;              /* append stream */
    json_t *done;         /* object used as a set of finished custom_ids */
    unsigned long seq;    /* row counter */
} s_out;

static int s_out_open(s_out *o, const char *path) {
    o->done = json_object();
    FILE *f = fopen(path, "r+b");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long good = 0;
        while ((n = getline(&line, &cap, f)) > 0) {
            if (line[n - 1] != '\n') break; /* partial last row of an interrupted run */
            good = ftell(f);
            json_t *row = json_loads(line, 0, NULL);
            json_t *cid = row ? json_object_get(row, "custom_id") : NULL;
            if (json_is_string(cid)) json_object_set_new(o->done, json_string_value(cid), json_true());
            json_decref(row);
        }
        free(line);
        if (ftruncate(fileno(f), good) != 0) {}
        fclose(f);
    }
    o->f = fopen(path, "ab");
    if (!o->f) {
        fprintf(stderr, "waggle submit: cannot open output '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void s_row(s_out *o, json_t *row) {
    char *s = json_dumps(row, JSON_COMPACT);
    if (s) {
        fputs(s, o->f);
        fputc('\n', o->f);
        fflush(o->f);
        free(s);
    }
    json_decref(row);
}

static void s_error_row(s_out *o, const char *cid, const char *code, const char *msg) {
    char id[64];
    snprintf(id, sizeof id, "batch_req_%lx%06lu", (unsigned long)time(NULL), ++o->seq);
    s_row(o, json_pack("{s:s, s:o, s:n, s:{s:s, s:s}}", "id", id, "custom_id", cid ? json_string(cid) : json_null(),
                       "response", "error", "code", code, "message", msg ? msg : ""));
    if (cid) json_object_set_new(o->done, cid, json_true());
}

static void s_result_row(s_out *o, const s_item *it, const wg_msg_result *r) {
    const char *cid = it->job.custom_id;
    if (r->state && strcmp(r->state, "done") != 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s%s%s", r->state, r->error ? ": " : "", r->error ? r->error : "");
        s_error_row(o, cid, r->code ? r->code : (strcmp(r->state, "cancelled") == 0 ? "ERR_CANCELLED" : "ERR"), msg);
        return;
    }
    char id[64], cmpl[80];
    long now = (long)time(NULL);
    snprintf(id, sizeof id, "batch_req_%lx%06lu", (unsigned long)now, ++o->seq);
    snprintf(cmpl, sizeof cmpl, "%s-%s", it->chat ? "chatcmpl" : "cmpl", r->job_id);
    const char *fr = r->finish_reason ? r->finish_reason : "stop";
    json_t *text = wg_cli_json_text(r->text ? r->text : "", r->text ? strlen(r->text) : 0, false);
    json_t *choice = it->chat ? json_pack("{s:i, s:{s:s, s:o}, s:s, s:n}", "index", 0, "message", "role", "assistant",
                                          "content", text, "finish_reason", fr, "logprobs")
                              : json_pack("{s:i, s:o, s:s, s:n}", "index", 0, "text", text, "finish_reason", fr,
                                          "logprobs");
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:I, s:I, s:I}}", "id", cmpl, "object",
                             it->chat ? "chat.completion" : "text_completion", "created", (json_int_t)now, "model",
                             it->job.model, "choices", choice, "usage", "prompt_tokens", (json_int_t)r->prompt_tokens,
                             "completion_tokens", (json_int_t)r->completion_tokens, "total_tokens",
                             (json_int_t)r->prompt_tokens + r->completion_tokens);
    s_row(o, json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}", "id", id, "custom_id", cid, "response", "status_code",
                       200, "request_id", r->job_id, "body", body, "error"));
    json_object_set_new(o->done, cid, json_true());
}

/* ---- input ---- */

static char *s_content(json_t *c) {
    if (json_is_string(c)) return strdup(json_string_value(c));
    if (!json_is_array(c)) return NULL;
    size_t n = 0, i;
    json_t *p;
    json_array_foreach(c, i, p) {
        json_t *t = json_object_get(p, "text");
        if (!json_is_string(t)) return NULL;
        n += strlen(json_string_value(t));
    }
    char *out = calloc(1, n + 1);
    if (!out) return NULL;
    json_array_foreach(c, i, p) strcat(out, json_string_value(json_object_get(p, "text")));
    return out;
}

static bool s_num(json_t *b, const char *k, double lo, double hi, double *out, char *err, size_t cap) {
    json_t *v = json_object_get(b, k);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return snprintf(err, cap, "body.%s must be a number", k), false;
    double d = json_number_value(v);
    if (d < lo || d > hi) return snprintf(err, cap, "body.%s=%g out of range [%g, %g]", k, d, lo, hi), false;
    *out = d;
    return true;
}

static bool s_int(json_t *b, const char *k, long long lo, long long hi, long long *out, char *err, size_t cap) {
    json_t *v = json_object_get(b, k);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return snprintf(err, cap, "body.%s must be an integer", k), false;
    long long d = json_integer_value(v);
    if (d < lo || d > hi) return snprintf(err, cap, "body.%s=%lld out of range [%lld, %lld]", k, d, lo, hi), false;
    *out = d;
    return true;
}

/* One input line -> job map. false with err (and *cid when known). */
static bool s_parse_line(const char *line, const char *def_model, int priority, s_item *it, char **cid, char *err,
                         size_t cap) {
    json_error_t je;
    json_t *root = json_loads(line, 0, &je);
    bool ok = false;
    wg_msg_job *j = &it->job;
    wg_msg_job_init(j);
    if (!root || !json_is_object(root)) {
        snprintf(err, cap, "not a JSON object: %s", root ? "" : je.text);
        goto out;
    }
    json_t *c = json_object_get(root, "custom_id");
    if (!json_is_string(c) || !*json_string_value(c) || strlen(json_string_value(c)) > WG_MSG_MAX_ID) {
        snprintf(err, cap, "custom_id must be a string of 1..%d bytes", WG_MSG_MAX_ID);
        goto out;
    }
    *cid = strdup(json_string_value(c));
    json_t *url = json_object_get(root, "url"), *body = json_object_get(root, "body");
    const char *u = json_is_string(url) ? json_string_value(url) : "";
    if (strcmp(u, "/v1/chat/completions") == 0) it->chat = true;
    else if (strcmp(u, "/v1/completions") != 0) {
        snprintf(err, cap, "url '%.100s' is not /v1/completions or /v1/chat/completions", u);
        goto out;
    }
    if (!json_is_object(body)) {
        snprintf(err, cap, "body must be an object");
        goto out;
    }
    j->custom_id = strdup(*cid);
    json_t *m = json_object_get(body, "model");
    if (m && !json_is_string(m)) {
        snprintf(err, cap, "body.model must be a string");
        goto out;
    }
    const char *mn = m ? json_string_value(m) : def_model;
    if (!mn || !*mn) {
        snprintf(err, cap, "body.model is missing and no --model was given");
        goto out;
    }
    j->model = strdup(mn);
    j->priority = priority;
    wg_msg_sampling *sp = &j->sampling;
    if (!s_num(body, "temperature", 0, 2, &sp->temperature, err, cap)) goto out;
    if (!s_num(body, "top_p", 1e-9, 1, &sp->top_p, err, cap)) goto out;
    if (!s_num(body, "min_p", 0, 1, &sp->min_p, err, cap)) goto out;
    if (!s_num(body, "presence_penalty", -2, 2, &sp->presence_penalty, err, cap)) goto out;
    if (!s_num(body, "frequency_penalty", -2, 2, &sp->frequency_penalty, err, cap)) goto out;
    if (!s_num(body, "repetition_penalty", 0.01, 10, &sp->repetition_penalty, err, cap)) goto out;
    long long k = 0;
    if (!s_int(body, "top_k", 0, 1 << 30, &k, err, cap)) goto out;
    sp->top_k = (uint32_t)k;
    long long seed = 0; /* unseeded requests use seed 0, as waggle run does */
    if (!s_int(body, "seed", 0, INT64_MAX, &seed, err, cap)) goto out;
    sp->has_seed = true;
    sp->seed = (uint64_t)seed;
    long long mt = it->chat ? 256 : 16;
    if (!s_int(body, "max_tokens", 1, WG_MSG_MAX_TOKENS, &mt, err, cap)) goto out;
    if (it->chat && !s_int(body, "max_completion_tokens", 1, WG_MSG_MAX_TOKENS, &mt, err, cap)) goto out;
    j->max_tokens = (uint32_t)mt;
    json_t *v = json_object_get(body, "stop");
    if (json_is_string(v)) v = json_pack("[O]", v);
    else json_incref(v);
    if (json_is_array(v)) {
        size_t n = json_array_size(v), i;
        if (n > WG_MSG_MAX_STOP) {
            snprintf(err, cap, "body.stop has %zu entries (at most %d)", n, WG_MSG_MAX_STOP);
            json_decref(v);
            goto out;
        }
        j->stop = calloc(n ? n : 1, sizeof *j->stop);
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e) || !*json_string_value(e) || strlen(json_string_value(e)) > WG_MSG_MAX_STOP_LEN) {
                snprintf(err, cap, "body.stop[%zu] must be a string of 1..%d bytes", i, WG_MSG_MAX_STOP_LEN);
                json_decref(v);
                goto out;
            }
            j->stop[j->n_stop++] = strdup(json_string_value(e));
        }
    } else if (v && !json_is_null(v)) {
        snprintf(err, cap, "body.stop must be a string or an array of strings");
        json_decref(v);
        goto out;
    }
    json_decref(v);
    if (!wg_cli_response_format(body, &j->json_object, err, cap)) goto out;
    if (json_object_get(body, "logit_bias") && !json_is_null(json_object_get(body, "logit_bias"))) {
        snprintf(err, cap, "body.logit_bias is not carried by the broker protocol (WGL/1); use waggle run");
        goto out;
    }
    if (it->chat) {
        long long tl = 0;
        if (!s_int(body, "top_logprobs", 0, 20, &tl, err, cap)) goto out;
        if (json_is_true(json_object_get(body, "logprobs"))) sp->logprobs = tl > 0 ? (uint32_t)tl : 0;
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0 || json_array_size(msgs) > WG_MSG_MAX_MESSAGES) {
            snprintf(err, cap, "body.messages must be an array of 1..%d messages", WG_MSG_MAX_MESSAGES);
            goto out;
        }
        size_t n = json_array_size(msgs), i;
        j->messages = calloc(n, sizeof *j->messages);
        json_t *e;
        json_array_foreach(msgs, i, e) {
            json_t *role = json_object_get(e, "role");
            char *content = s_content(json_object_get(e, "content"));
            if (!json_is_string(role) || !content) {
                free(content);
                snprintf(err, cap, "body.messages[%zu] needs a string role and text content", i);
                goto out;
            }
            j->messages[i].role = strdup(json_string_value(role));
            j->messages[i].content = content;
            j->n_messages++;
        }
    } else {
        long long lp = 0;
        if (!s_int(body, "logprobs", 0, 5, &lp, err, cap)) goto out;
        sp->logprobs = (uint32_t)lp;
        json_t *p = json_object_get(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            snprintf(err, cap, "body.prompt must be a string (token-id prompts are not carried by WGL/1)");
            goto out;
        }
        if (strlen(json_string_value(p)) > WG_MSG_MAX_PROMPT) {
            snprintf(err, cap, "body.prompt is longer than %u bytes", WG_MSG_MAX_PROMPT);
            goto out;
        }
        j->prompt = strdup(json_string_value(p));
    }
    /* The broker decodes a SUBMIT as a whole, so a job its decoder would
     * refuse (a role or model name over its wire limit, a NUL byte…) would
     * hold up every job of its batch: it becomes its own error row here.
     * (WAGGLE_SUBMIT_NO_PRECHECK=1 skips this, so the tests reach the
     * broker-side refusal and the one-by-one resend below.) */
    static int precheck = -1;
    if (precheck < 0) precheck = !getenv("WAGGLE_SUBMIT_NO_PRECHECK");
    if (precheck && wg_msg_job_fits(j) != WG_OK) {
        snprintf(err, cap, "the job does not fit the broker protocol: %s", wg_errmsg());
        goto out;
    }
    ok = true;
out:
    json_decref(root);
    if (!ok) wg_msg_job_clear(j);
    return ok;
}

static int s_read_key(const char *path, const char *prefer, char out[41]) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512], first[41] = "";
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *p = line;
        size_t bare = strcspn(p, "\r\n");
        if (bare == 40) { /* a bare key line ('#' and '=' are Z85 characters) */
            if (!first[0]) memcpy(first, p, 40), first[40] = '\0';
            continue;
        }
        int pref = strstr(p, prefer) != NULL;
        char *eq = strchr(p, '=');
        if (eq) p = eq + 1;
        while (*p == ' ' || *p == '"' || *p == '\t') p++;
        if (*p == '#') continue;
        size_t len = strcspn(p, " \t\r\n\"");
        if (len != 40) continue;
        if (pref) memcpy(out, p, 40), out[40] = '\0', found = 1;
        else if (!first[0]) memcpy(first, p, 40), first[40] = '\0';
    }
    fclose(f);
    if (!found && first[0]) memcpy(out, first, 41), found = 1;
    return found ? 0 : -1;
}

/* ---- main loop ---- */

static void s_progress(bool tty, size_t done, size_t total, uint64_t toks, double t0, int64_t *last, bool final) {
    int64_t now = s_ms();
    if (!final && now - *last < (tty ? 200 : 5000)) return;
    *last = now;
    double el = (double)now / 1000.0 - t0;
    double tps = el > 0 ? (double)toks / el : 0;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    if (tty) {
        int w = 30, f = total ? (int)((double)w * (double)done / (double)total) : w;
        char bar[40];
        for (int i = 0; i < w; i++) bar[i] = i < f ? '#' : '.';
        bar[w] = '\0';
        fprintf(stderr, "\r[%s] %zu/%zu  %.0f tok/s  ETA %.0fs   %s", bar, done, total, tps, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "waggle submit: %zu/%zu done, %.0f tok/s, ETA %.0fs\n", done, total, tps, eta);
    }
}

int wg_cmd_submit(int argc, char **argv) {
    static const struct option opts[] = {{"broker", required_argument, 0, 'b'}, {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'}, {"model", required_argument, 0, 'm'},
                                         {"batch", required_argument, 0, 'B'},  {"window", required_argument, 0, 'W'},
                                         {"priority", required_argument, 0, 'p'}, {"timeout", required_argument, 0, 'T'},
                                         {"curve-server-key-file", required_argument, 0, 'S'},
                                         {"curve-secret-key-file", required_argument, 0, 'K'},
                                         {"stream", no_argument, 0, 'X'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *broker = NULL, *input = NULL, *output = NULL, *model = NULL, *srv_file = NULL, *sec_file = NULL;
    bool stream = false;
    long batch = 256, window = 8192, priority = 0, timeout_s = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:i:o:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': broker = optarg; break;
        case 'i': input = optarg; break;
        case 'o': output = optarg; break;
        case 'm': model = optarg; break;
        case 'B': batch = atol(optarg); break;
        case 'W': window = atol(optarg); break;
        case 'p': priority = atol(optarg); break;
        case 'T': timeout_s = atol(optarg); break;
        case 'S': srv_file = optarg; break;
        case 'K': sec_file = optarg; break;
        case 'X': stream = true; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!broker || !input || !output) {
        fprintf(stderr, "waggle submit: --broker, --input and --output are required\n");
        s_usage(stderr);
        return 2;
    }
    if (batch < 1 || batch > WG_MSG_MAX_BATCH || window < 1 || priority < -100 || priority > 100 || timeout_s < 0) {
        fprintf(stderr, "waggle submit: --batch must be 1..1024, --window >= 1, --priority -100..100\n");
        return 2;
    }
    s_out out = {0};
    if (s_out_open(&out, output)) return 1;
    FILE *in = fopen(input, "rb");
    if (!in) {
        fprintf(stderr, "waggle submit: cannot open input '%s': %s\n", input, strerror(errno));
        return 1;
    }
    s_item *items = NULL;
    size_t n_items = 0, cap_items = 0, total = 0, n_done = 0, n_failed = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ln;
    int lineno = 0;
    json_t *seen = json_object();
    while ((ln = getline(&line, &lcap, in)) > 0) {
        lineno++;
        while (ln > 0 && (line[ln - 1] == '\n' || line[ln - 1] == '\r')) line[--ln] = '\0';
        if (ln == 0) continue;
        total++;
        if (n_items == cap_items) {
            cap_items = cap_items ? cap_items * 2 : 1024;
            items = realloc(items, cap_items * sizeof *items);
        }
        s_item *it = &items[n_items];
        memset(it, 0, sizeof *it);
        char *cid = NULL, err[1024] = "";
        bool ok = s_parse_line(line, model, (int)priority, it, &cid, err, sizeof err);
        if (cid && (json_object_get(out.done, cid) || json_object_get(seen, cid))) { /* finished or duplicate */
            if (ok) wg_msg_job_clear(&it->job);
            n_done += json_object_get(out.done, cid) ? 1 : 0;
            if (!json_object_get(out.done, cid)) total--;
            free(cid);
            continue;
        }
        if (cid) json_object_set_new(seen, cid, json_true());
        if (!ok) {
            char msg[1200];
            snprintf(msg, sizeof msg, "line %d: %s", lineno, err);
            s_error_row(&out, cid, "invalid_request", msg);
            n_done++;
            n_failed++;
        } else {
            it->job.stream = stream;
            n_items++;
        }
        free(cid);
    }
    free(line);
    fclose(in);
    json_decref(seen);

    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, hwm = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    char rid[64];
    snprintf(rid, sizeof rid, "submit-%d-%lx", (int)getpid(), (unsigned long)time(NULL));
    zmq_setsockopt(sock, ZMQ_ROUTING_ID, rid, strlen(rid));
    if (srv_file) {
        char srv[41], sec[41], pub[41];
        if (s_read_key(srv_file, "public-key", srv)) {
            fprintf(stderr, "waggle submit: no Z85 key in %s\n", srv_file);
            return 2;
        }
        if (sec_file) {
            if (s_read_key(sec_file, "secret-key", sec) || zmq_curve_public(pub, sec)) {
                fprintf(stderr, "waggle submit: no valid Z85 secret key in %s\n", sec_file);
                return 2;
            }
        } else {
            zmq_curve_keypair(pub, sec);
        }
        zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv, 40);
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    if (zmq_connect(sock, broker) != 0) {
        fprintf(stderr, "waggle submit: cannot connect to '%s': %s\n", broker, zmq_strerror(errno));
        return 2;
    }
    signal(SIGINT, s_on_sig);
    signal(SIGTERM, s_on_sig);

    json_t *by_id = json_object(); /* job_id -> item index */
    s_batch *batches = NULL;
    size_t n_batches = 0, cap_batches = 0;
    uint64_t next_req = 1, toks = 0;
    size_t outstanding = 0, cursor = 0;
    bool tty = isatty(2);
    int64_t last_prog = 0, start = s_ms(), last_fetch_round = 0;
    double t0 = (double)start / 1000.0;
    int rc = 0;
    while (n_done < total) {
        int64_t now = s_ms();
        if (s_interrupted) {
            fprintf(stderr, "\nwaggle submit: interrupted; %zu/%zu rows written (rerun to continue)\n", n_done, total);
            rc = 130;
            break;
        }
        if (timeout_s && now - start > timeout_s * 1000) {
            fprintf(stderr, "\nwaggle submit: timed out; %zu/%zu rows written\n", n_done, total);
            rc = 1;
            break;
        }
        /* Send what the window allows. */
        while ((long)outstanding < window) {
            uint32_t idx[WG_MSG_MAX_BATCH], n = 0;
            size_t scanned = 0;
            for (; scanned < n_items && n < (uint32_t)batch && (long)(outstanding + n) < window; scanned++) {
                size_t i = (cursor + scanned) % n_items;
                if (items[i].state != J_TODO || items[i].retry_at > now) continue;
                /* a solo item goes in a batch of its own */
                if (items[i].solo && n > 0) break;
                idx[n++] = (uint32_t)i;
                if (items[i].solo) {
                    scanned++;
                    break;
                }
            }
            cursor = n_items ? (cursor + scanned) % n_items : 0;
            if (!n) break;
            wg_msg_submit sm = {.req = next_req++, .n_jobs = n};
            sm.jobs = malloc(n * sizeof *sm.jobs);
            for (uint32_t k = 0; k < n; k++) sm.jobs[k] = items[idx[k]].job; /* shallow: not cleared */
            wg_msg_buf b = {0};
            wg_status st = wg_msg_submit_encode(&sm, &b);
            free(sm.jobs);
            if (st) {
                for (uint32_t k = 0; k < n; k++) {
                    s_error_row(&out, items[idx[k]].job.custom_id, wg_status_name(st), wg_errmsg());
                    items[idx[k]].state = J_DONE;
                    n_done++;
                    n_failed++;
                }
                continue;
            }
            wg_msg_send(sock, NULL, 0, WG_CMD_SUBMIT, &b, 0);
            wg_msg_buf_free(&b);
            if (n_batches == cap_batches) {
                cap_batches = cap_batches ? cap_batches * 2 : 16;
                batches = realloc(batches, cap_batches * sizeof *batches);
            }
            s_batch *bt = &batches[n_batches++];
            bt->req = sm.req;
            bt->n = n;
            bt->idx = malloc(n * sizeof *bt->idx);
            memcpy(bt->idx, idx, n * sizeof *idx);
            bt->sent = now;
            for (uint32_t k = 0; k < n; k++) items[idx[k]].state = J_SENT;
            outstanding += n;
        }
        /* Replies. */
        zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
        zmq_poll(&pi, 1, 100);
        for (int k = 0; k < 1000; k++) {
            wg_msg_in m;
            wg_status st = wg_msg_recv(sock, false, &m, ZMQ_DONTWAIT);
            if (st == WG_ERR_AGAIN) {
                wg_msg_in_clear(&m);
                break;
            }
            now = s_ms();
            if (st == WG_OK && m.cmd == WG_CMD_SUBMITTED) {
                wg_msg_submitted r;
                if (wg_msg_submitted_decode(m.body, m.body_len, &r) == WG_OK) {
                    for (size_t bi = 0; bi < n_batches; bi++) {
                        if (batches[bi].req != r.req) continue;
                        s_batch *bt = &batches[bi];
                        for (uint32_t q = 0; q < r.n_items; q++) {
                            wg_msg_submitted_item *e = &r.items[q];
                            if (e->index >= bt->n) continue;
                            s_item *it = &items[bt->idx[e->index]];
                            if (it->state != J_SENT) continue;
                            if (e->accepted && e->job_id) {
                                it->state = J_ACCEPTED;
                                snprintf(it->job_id, sizeof it->job_id, "%s", e->job_id);
                                it->last_seen = now;
                                json_object_set_new(by_id, it->job_id, json_integer((json_int_t)bt->idx[e->index]));
                            } else if (e->code == WG_ERR_FULL || e->code == WG_ERR_REDIS) {
                                it->state = J_TODO;
                                it->retry_at = now + (int64_t)(e->retry_after_ms ? e->retry_after_ms : 500);
                                outstanding--;
                            } else {
                                s_error_row(&out, it->job.custom_id, wg_status_name(e->code), e->reason);
                                it->state = J_DONE;
                                outstanding--;
                                n_done++;
                                n_failed++;
                            }
                        }
                        /* Jobs the reply did not mention go round again. */
                        for (uint32_t q = 0; q < bt->n; q++)
                            if (items[bt->idx[q]].state == J_SENT) {
                                items[bt->idx[q]].state = J_TODO;
                                outstanding--;
                            }
                        free(bt->idx);
                        batches[bi] = batches[--n_batches];
                        break;
                    }
                    wg_msg_submitted_clear(&r);
                }
            } else if (st == WG_OK && m.cmd == WG_CMD_RESULT) {
                wg_msg_result r;
                if (wg_msg_result_decode(WG_CMD_RESULT, m.body, m.body_len, &r) == WG_OK) {
                    json_t *ix = json_object_get(by_id, r.job_id);
                    if (ix) {
                        s_item *it = &items[json_integer_value(ix)];
                        if (it->state == J_ACCEPTED) {
                            s_result_row(&out, it, &r);
                            if (r.state && strcmp(r.state, "done") != 0) n_failed++;
                            toks += r.completion_tokens;
                            it->state = J_DONE;
                            outstanding--;
                            n_done++;
                            wg_msg_job_clear(&it->job);
                            it->job.custom_id = NULL;
                        }
                    }
                    wg_msg_result_clear(&r);
                }
            } else if (st == WG_OK && m.cmd == WG_CMD_ERROR) {
                wg_msg_error e;
                if (wg_msg_error_decode(m.body, m.body_len, &e) == WG_OK) {
                    if (e.req & (1ull << 62)) { /* FETCH reply */
                        size_t i = (size_t)(e.req & ((1ull << 62) - 1));
                        if (i < n_items && items[i].state == J_ACCEPTED && e.code == WG_ERR_NOTFOUND) {
                            /* The broker forgot it (memory store restarted): submit again. */
                            json_object_del(by_id, items[i].job_id);
                            items[i].state = J_TODO;
                            outstanding--;
                        }
                    } else {
                        /* A full queue or an unavailable store passes; anything
                         * else (the broker could not read the batch) would come
                         * back every time: the batch's jobs go again one by one,
                         * and a job refused alone becomes its error row. */
                        const bool transient = e.code == WG_ERR_FULL || e.code == WG_ERR_REDIS ||
                                               e.code == WG_ERR_AGAIN || e.code == WG_ERR_TIMEOUT ||
                                               e.code == WG_ERR_NOMEM;
                        for (size_t bi = 0; bi < n_batches; bi++) {
                            if (batches[bi].req != e.req) continue;
                            for (uint32_t q = 0; q < batches[bi].n; q++) {
                                s_item *it = &items[batches[bi].idx[q]];
                                outstanding--;
                                if (!transient && batches[bi].n == 1) {
                                    s_error_row(&out, it->job.custom_id, wg_status_name(e.code),
                                                e.reason ? e.reason : "refused by the broker");
                                    it->state = J_DONE;
                                    n_done++;
                                    n_failed++;
                                    continue;
                                }
                                it->state = J_TODO;
                                if (transient) {
                                    it->retry_at = now + (int64_t)(e.retry_after_ms ? e.retry_after_ms : 1000);
                                } else {
                                    it->solo = true;
                                    it->retry_at = now;
                                }
                            }
                            fprintf(stderr, "waggle submit: broker refused a batch: %s %s\n", wg_status_name(e.code),
                                    e.reason ? e.reason : "");
                            free(batches[bi].idx);
                            batches[bi] = batches[--n_batches];
                            break;
                        }
                    }
                    wg_msg_error_clear(&e);
                }
            }
            wg_msg_in_clear(&m);
        }
        now = s_ms();
        /* SUBMITs never answered (broker down): send again. */
        for (size_t bi = 0; bi < n_batches;) {
            if (now - batches[bi].sent > 10000) {
                for (uint32_t q = 0; q < batches[bi].n; q++)
                    if (items[batches[bi].idx[q]].state == J_SENT) {
                        items[batches[bi].idx[q]].state = J_TODO;
                        outstanding--;
                    }
                free(batches[bi].idx);
                batches[bi] = batches[--n_batches];
                continue;
            }
            bi++;
        }
        /* FETCH jobs we have not heard about for a while (pushes can be lost). */
        if (now - last_fetch_round > 1000) {
            last_fetch_round = now;
            int sent = 0;
            for (size_t i = 0; i < n_items && sent < 500; i++) {
                s_item *it = &items[i];
                if (it->state != J_ACCEPTED || now - it->last_seen < 5000) continue;
                it->last_seen = now;
                wg_msg_req q = {.req = (1ull << 62) | i, .job_id = it->job_id};
                wg_msg_buf b = {0};
                if (wg_msg_req_encode(WG_CMD_FETCH, &q, &b) == WG_OK) wg_msg_send(sock, NULL, 0, WG_CMD_FETCH, &b, 0);
                wg_msg_buf_free(&b);
                sent++;
            }
        }
        s_progress(tty, n_done, total, toks, t0, &last_prog, false);
    }
    s_progress(tty, n_done, total, toks, t0, &last_prog, true);
    /* every item, done ones too: a job the broker rejected (or one that failed
     * locally) still owns its strings; a cleared job clears again harmlessly */
    for (size_t i = 0; i < n_items; i++) wg_msg_job_clear(&items[i].job);
    for (size_t bi = 0; bi < n_batches; bi++) free(batches[bi].idx);
    free(batches);
    free(items);
    json_decref(by_id);
    json_decref(out.done);
    fclose(out.f);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    if (rc) return rc;
    return n_failed ? 3 : 0;
}
