/* Broker as a thread inside this process (embedded mode: memory store,
 * inproc:// over a shared context), CURVE allow-list via ZAP, and /metrics. */
#include <pthread.h>

#include "broker/wg_broker.h"
#include "broker_harness.h"

static void *s_run(void *arg) {
    wg_broker_run(arg);
    return NULL;
}

Test(broker_embedded, inproc_memory_store_round_trip) {
    void *ctx = zmq_ctx_new();
    wg_broker_cfg cfg = {.frontend = "inproc://fe", .backend = "inproc://be", .zmq_ctx = ctx};
    wg_broker_t *b = wg_broker_new(&cfg);
    cr_assert(b, "%s", wg_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, s_run, b);
    void *p = h_dealer(ctx, "inproc://fe"), *w = h_dealer(ctx, "inproc://be");
    h_ready(w, "emb", 1, NULL); /* no models listed: serves any */
    char ids[2][33];
    cr_assert_eq(h_submit(p, "any-model", 2, ids, NULL), 2);
    wg_msg_job j;
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK);
    cr_assert_eq(h_take_job(w, &(wg_msg_job){0}, 300), WG_ERR_AGAIN, "credits=1");
    h_done(w, j.job_id, "embedded");
    wg_msg_job_clear(&j);
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK);
    h_done(w, j.job_id, "embedded");
    wg_msg_job_clear(&j);
    for (int i = 0; i < 2; i++) {
        wg_msg_result r;
        cr_assert_eq(h_fetch(p, ids[i], &r), WG_OK);
        cr_assert_str_eq(r.text, "embedded");
        cr_assert_str_eq(r.state, "done");
        wg_msg_result_clear(&r);
    }
    char *m = wg_broker_metrics_text(b);
    free(m);
    wg_broker_stop(b);
    pthread_join(th, NULL);
    zmq_close(p);
    zmq_close(w);
    wg_broker_destroy(&b);
    cr_assert_null(b);
    zmq_ctx_term(ctx);
}

static bool s_ping(void *s) {
    wg_msg_req q = {.req = 1};
    wg_msg_buf b = {0};
    wg_msg_req_encode(WG_CMD_PING, &q, &b);
    wg_msg_send(s, NULL, 0, WG_CMD_PING, &b, ZMQ_DONTWAIT);
    wg_msg_buf_free(&b);
    wg_msg_in in;
    wg_status st = h_expect(s, WG_CMD_PONG, &in, 1000);
    wg_msg_in_clear(&in);
    return st == WG_OK;
}

static void *s_curve_client(void *ctx, const char *ep, const char *server_pub, const char *pub,
                            const char *sec) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

Test(broker_embedded, curve_allows_listed_keys_and_refuses_others) {
    char spub[41], ssec[41], apub[41], asec[41], xpub[41], xsec[41];
    cr_assert_eq(zmq_curve_keypair(spub, ssec), 0, "libzmq built without CURVE");
    zmq_curve_keypair(apub, asec);
    zmq_curve_keypair(xpub, xsec);
    char fe[64], be[64];
    snprintf(fe, sizeof fe, "tcp://127.0.0.1:%d", wg_test_free_port());
    snprintf(be, sizeof be, "tcp://127.0.0.1:%d", wg_test_free_port());
    const char *allow[] = {apub};
    wg_broker_cfg cfg = {.frontend = fe, .backend = be, .curve_secret_key = ssec,
                         .curve_allow = allow, .n_curve_allow = 1};
    wg_broker_t *b = wg_broker_new(&cfg);
    cr_assert(b, "%s", wg_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, s_run, b);
    void *ctx = zmq_ctx_new();
    void *ok = s_curve_client(ctx, fe, spub, apub, asec);
    void *bad = s_curve_client(ctx, fe, spub, xpub, xsec);
    void *plain = h_dealer(ctx, fe);
    cr_assert(s_ping(ok), "allowed key was refused");
    cr_assert(!s_ping(bad), "unlisted key got through");
    cr_assert(!s_ping(plain), "client without CURVE got through");
    /* backend too: an unlisted worker never registers */
    void *wbad = s_curve_client(ctx, be, spub, xpub, xsec);
    h_ready(wbad, "intruder", 4, NULL);
    char ids[1][33];
    cr_assert_eq(h_submit(ok, "m", 1, ids, NULL), 1);
    wg_msg_job j;
    cr_assert_eq(h_take_job(wbad, &j, 500), WG_ERR_AGAIN);
    void *wok = s_curve_client(ctx, be, spub, apub, asec);
    h_ready(wok, "good", 4, NULL);
    cr_assert_eq(h_take_job(wok, &j, 2000), WG_OK);
    wg_msg_job_clear(&j);
    char *m = NULL;
    for (int i = 0; i < 20; i++) {
        free(m);
        wg_test_sleep_ms(100);
        m = wg_broker_metrics_text(b);
        if (!strstr(m, "waggle_broker_zap_denied_total 0")) break;
    }
    cr_assert(strstr(m, "waggle_broker_zap_denied_total") && !strstr(m, "waggle_broker_zap_denied_total 0"),
              "denials not counted:\n%s", m);
    free(m);
    wg_broker_stop(b);
    pthread_join(th, NULL);
    zmq_close(ok);
    zmq_close(bad);
    zmq_close(plain);
    zmq_close(wbad);
    zmq_close(wok);
    zmq_ctx_term(ctx);
    wg_broker_destroy(&b);
}

static char *s_http_get(int port, const char *path) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    if (write(s, req, (size_t)n) != n) {}
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(s, buf + len, cap - len - 1)) > 0) len += (size_t)k;
    buf[len] = 0;
    close(s);
    return buf;
}

Test(broker_embedded, metrics_endpoint_reports_broker_and_worker_figures) {
    void *ctx = zmq_ctx_new();
    int port = wg_test_free_port();
    char mh[32];
    snprintf(mh, sizeof mh, "127.0.0.1:%d", port);
    wg_broker_cfg cfg = {.frontend = "inproc://mfe", .backend = "inproc://mbe", .zmq_ctx = ctx,
                         .metrics_http = mh};
    wg_broker_t *b = wg_broker_new(&cfg);
    cr_assert(b, "%s", wg_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, s_run, b);
    void *p = h_dealer(ctx, "inproc://mfe"), *w = h_dealer(ctx, "inproc://mbe");
    h_ready(w, "wm", 3, "m");
    char *models[] = {"m"};
    wg_msg_heartbeat hb = {.has_metrics = true};
    hb.metrics = (wg_msg_metrics){.worker_id = "wm", .tokens_per_s = 123.5, .running = 2,
                                  .kv_usage = 0.25, .models = models, .n_models = 1,
                                  .mem_used_bytes = 4096};
    wg_msg_buf buf = {0};
    cr_assert_eq(wg_msg_heartbeat_encode(&hb, &buf), WG_OK);
    wg_msg_send(w, NULL, 0, WG_CMD_HEARTBEAT, &buf, 0);
    wg_msg_buf_free(&buf);
    cr_assert_eq(h_submit(p, "m", 2, NULL, NULL), 2);
    char *body = NULL;
    for (int i = 0; i < 30; i++) {
        free(body);
        wg_test_sleep_ms(100);
        body = s_http_get(port, "/metrics");
        /* wait for every figure asserted below: dispatch to the worker (inflight)
         * can land after its heartbeat figures are visible */
        if (body && strstr(body, "waggle_worker_tokens_per_second{worker=\"wm\"} 123.5") &&
            strstr(body, "waggle_worker_inflight{worker=\"wm\"} 2") &&
            strstr(body, "waggle_broker_jobs_accepted_total 2"))
            break;
    }
    cr_assert(body && strstr(body, "200 OK"), "%s", body ? body : "(no response)");
    cr_assert(strstr(body, "waggle_broker_jobs_accepted_total 2"), "%s", body);
    cr_assert(strstr(body, "waggle_worker_tokens_per_second{worker=\"wm\"} 123.5"), "%s", body);
    cr_assert(strstr(body, "waggle_worker_inflight{worker=\"wm\"} 2"), "%s", body);
    cr_assert(strstr(body, "waggle_worker_kv_usage{worker=\"wm\"} 0.25"), "%s", body);
    free(body);
    body = s_http_get(port, "/nope");
    cr_assert(body && strstr(body, "404"));
    free(body);
    wg_broker_stop(b);
    pthread_join(th, NULL);
    zmq_close(p);
    zmq_close(w);
    wg_broker_destroy(&b);
    zmq_ctx_term(ctx);
}

Test(broker_embedded, metrics_endpoint_exports_per_model_residency_counters) {
    void *ctx = zmq_ctx_new();
    int port = wg_test_free_port();
    char mh[32];
    snprintf(mh, sizeof mh, "127.0.0.1:%d", port);
    wg_broker_cfg cfg = {.frontend = "inproc://rfe", .backend = "inproc://rbe", .zmq_ctx = ctx,
                         .metrics_http = mh};
    wg_broker_t *b = wg_broker_new(&cfg);
    cr_assert(b, "%s", wg_errmsg());
    pthread_t th;
    pthread_create(&th, NULL, s_run, b);
    void *w = h_dealer(ctx, "inproc://rbe");
    h_ready(w, "wr", 3, "st");
    char *models[] = {"st"};
    /* a model name with a quote, a backslash and a newline must not break the exposition format */
    wg_msg_model_stat ms[] = {
        {.model = "st", .loads = 3, .load_seconds = 0.125, .evictions = 2, .resident_bytes = 2200000},
        {.model = "ll", .loads = 1, .load_failures = 2, .load_seconds = 1.5, .evictions = 1},
        {.model = "q\"x\\y\nz", .loads = 1},
    };
    wg_msg_heartbeat hb = {.has_metrics = true};
    hb.metrics = (wg_msg_metrics){.worker_id = "wr", .models = models, .n_models = 1, .model_stats = ms,
                                  .n_model_stats = 3};
    wg_msg_buf buf = {0};
    cr_assert_eq(wg_msg_heartbeat_encode(&hb, &buf), WG_OK);
    wg_msg_send(w, NULL, 0, WG_CMD_HEARTBEAT, &buf, 0);
    wg_msg_buf_free(&buf);
    static const char *want[] = {
        "waggle_worker_model_loads_total{worker=\"wr\",model=\"st\"} 3\n",
        "waggle_worker_model_loads_total{worker=\"wr\",model=\"ll\"} 1\n",
        "waggle_worker_model_load_seconds_total{worker=\"wr\",model=\"st\"} 0.125000\n",
        "waggle_worker_model_load_seconds_total{worker=\"wr\",model=\"ll\"} 1.500000\n",
        "waggle_worker_model_evictions_total{worker=\"wr\",model=\"st\"} 2\n",
        "waggle_worker_model_evictions_total{worker=\"wr\",model=\"ll\"} 1\n",
        "waggle_worker_model_load_failures_total{worker=\"wr\",model=\"ll\"} 2\n",
        "waggle_worker_model_resident_bytes{worker=\"wr\",model=\"st\"} 2200000\n",
        "waggle_worker_model_resident_bytes{worker=\"wr\",model=\"ll\"} 0\n",
        "waggle_worker_model_loads_total{worker=\"wr\",model=\"q\\\"x\\\\y\\nz\"} 1\n",
    };
    char *body = NULL;
    for (int i = 0; i < 30; i++) {
        free(body);
        wg_test_sleep_ms(100);
        body = s_http_get(port, "/metrics");
        if (body && strstr(body, want[0])) break;
    }
    cr_assert(body, "no /metrics response");
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) cr_assert(strstr(body, want[i]), "no %s in\n%s", want[i], body);
    /* one TYPE line per family, its samples right after it */
    const char *t = strstr(body, "# TYPE waggle_worker_model_resident_bytes gauge\n");
    cr_assert(t, "%s", body);
    cr_assert_null(strstr(t + 1, "# TYPE waggle_worker_model_resident_bytes"), "two TYPE lines");
    cr_assert(strstr(body, "# TYPE waggle_worker_model_loads_total counter\n"), "%s", body);
    /* no raw newline inside a label: every line is a comment or name{...} value */
    for (const char *l = body; (l = strstr(l, "\nwaggle_worker_model_")) != NULL; l++) {
        const char *e = strchr(l + 1, '\n');
        const char *close = strstr(l + 1, "} ");
        cr_assert(close && (!e || close < e), "broken sample line near: %.80s", l + 1);
    }
    free(body);
    wg_broker_stop(b);
    pthread_join(th, NULL);
    zmq_close(w);
    wg_broker_destroy(&b);
    zmq_ctx_term(ctx);
}
