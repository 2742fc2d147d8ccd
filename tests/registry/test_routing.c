/* Broker + registry: the real waggle-broker with a real redis-server; this
 * process registers models (wg_registry) and plays producers and workers on
 * real ZeroMQ sockets. Proves: unknown models are rejected at SUBMIT,
 * routing prefers the worker holding the model, then one with memory to load
 * it, queued jobs are grouped by the model a worker holds, and a starved
 * model still gets a worker. */
#include "../integration/broker_harness.h"
#include "engine/formats/wg_gguf.h"
#include "worker/registry/wg_registry.h"

static void s_write_gguf(const char *path, int n) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_gguf_writer_set_str(w, "general.architecture", "llama");
    float *d = calloc((size_t)n, sizeof *d);
    int64_t ne[2] = {n / 4, 4};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "token_embd.weight", WG_TYPE_F32, 2, ne, d), WG_OK);
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK);
    wg_gguf_writer_destroy(&w);
    free(d);
}

typedef struct env {
    h_redis r;
    h_broker b;
    void *ctx;
    wg_registry_t *reg;
} env;

static void env_up(env *e, const char *const *extra) {
    memset(e, 0, sizeof *e);
    h_redis_start(&e->r);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", e->r.port);
    cr_assert_eq(wg_registry_connect(url, &e->reg), WG_OK, "%s", wg_errmsg());
    h_broker_start(&e->b, &e->r, extra);
    e->ctx = zmq_ctx_new();
}

static void env_down(env *e) {
    zmq_ctx_shutdown(e->ctx);
    zmq_ctx_term(e->ctx);
    h_broker_kill(&e->b, SIGKILL);
    wg_registry_destroy(&e->reg);
    h_redis_stop(&e->r);
}

/* Register `name` as a generated model of 4*n bytes of F32 (plus header). */
static uint64_t s_register(env *e, const char *name, int n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.gguf", e->r.dir, name);
    s_write_gguf(path, n);
    wg_reg_model m;
    cr_assert_eq(wg_registry_add(e->reg, name, path, NULL, NULL, &m), WG_OK, "%s", wg_errmsg());
    uint64_t bytes = (uint64_t)m.bytes;
    wg_reg_model_clear(&m);
    return bytes;
}

static void s_ready_mem(void *w, const char *id, uint32_t credits, const char *model, uint64_t budget,
                        uint64_t mem_free) {
    char *models[] = {(char *)model};
    wg_msg_ready r = {.worker_id = (char *)id, .credits = credits, .models = models,
                      .n_models = model ? 1 : 0, .mem_budget = budget, .mem_free = mem_free};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_ready_encode(&r, &b), WG_OK);
    cr_assert_eq(wg_msg_send(w, NULL, 0, WG_CMD_READY, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
}

/* Wait until the broker has registered worker w (its READY, on the backend,
 * may be served after a SUBMIT on the frontend): the broker heartbeats only
 * registered workers, the first time one interval (1 s by default) after
 * READY. Answer it, as a worker does, so the death clock starts afresh. */
static void s_wait_registered(void *w) {
    wg_msg_in in;
    cr_assert_eq(h_expect(w, WG_CMD_HEARTBEAT, &in, 5000), WG_OK, "the broker never heartbeat the worker");
    wg_msg_in_clear(&in);
    h_heartbeat(w);
}

/* One SUBMIT with one job per model name; returns the decoded SUBMITTED. */
static void s_submit_models(void *p, const char *const *models, uint32_t n, wg_msg_submitted *rep) {
    wg_msg_submit s = {.req = 9, .n_jobs = n};
    s.jobs = calloc(n, sizeof *s.jobs);
    for (uint32_t i = 0; i < n; i++) {
        wg_msg_job_init(&s.jobs[i]);
        s.jobs[i].model = strdup(models[i]);
        s.jobs[i].prompt = strdup("hello");
        char cid[32];
        snprintf(cid, sizeof cid, "%s-%u", models[i], i);
        s.jobs[i].custom_id = strdup(cid);
    }
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_submit_encode(&s, &b), WG_OK);
    cr_assert_eq(wg_msg_send(p, NULL, 0, WG_CMD_SUBMIT, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
    wg_msg_submit_clear(&s);
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_SUBMITTED, &in, 3000), WG_OK, "no SUBMITTED");
    cr_assert_eq(wg_msg_submitted_decode(in.body, in.body_len, rep), WG_OK);
    cr_assert_eq(rep->n_items, n);
    wg_msg_in_clear(&in);
}

Test(routing, submit_for_an_unregistered_model_is_rejected_at_once_with_a_reason) {
    env e;
    const char *extra[] = {"--require-registered", NULL};
    env_up(&e, extra);
    s_register(&e, "known", 1024);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 4, "preloaded"); /* a worker's preloaded name counts as served */
    s_wait_registered(w);
    const char *models[] = {"ghost", "known", "preloaded", "ghost"};
    wg_msg_submitted rep;
    s_submit_models(p, models, 4, &rep);
    cr_assert_not(rep.items[0].accepted);
    cr_assert_eq(rep.items[0].code, WG_ERR_NOTFOUND);
    cr_assert(strstr(rep.items[0].reason, "'ghost' is not registered"), "reason: %s", rep.items[0].reason);
    cr_assert(rep.items[1].accepted, "registered model accepted: %s", rep.items[1].reason ? rep.items[1].reason : "");
    cr_assert(rep.items[2].accepted, "preloaded model accepted");
    cr_assert_not(rep.items[3].accepted);
    wg_msg_submitted_clear(&rep);
    /* nothing was queued for the unknown model */
    redisReply *x = h_redis_cmd(&e.r, "EXISTS waggle:q:ghost");
    cr_assert_eq(x->integer, 0, "a rejected job reached the durable queue");
    freeReplyObject(x);
    /* registering it makes the next SUBMIT succeed (no stale negative cache) */
    s_register(&e, "ghost", 1024);
    const char *again[] = {"ghost"};
    s_submit_models(p, again, 1, &rep);
    cr_assert(rep.items[0].accepted);
    wg_msg_submitted_clear(&rep);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(routing, without_require_registered_unknown_models_still_queue) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe);
    const char *models[] = {"anything"};
    wg_msg_submitted rep;
    s_submit_models(p, models, 1, &rep);
    cr_assert(rep.items[0].accepted, "default broker keeps the old contract");
    wg_msg_submitted_clear(&rep);
    zmq_close(p);
    env_down(&e);
}

/* Collect the models of the jobs a worker receives within timeout_ms. */
static int s_take_models(void *w, char models[][32], char ids[][33], int max, int timeout_ms) {
    int n = 0;
    int64_t end = wg_test_now_ms() + timeout_ms;
    while (n < max) {
        int left = (int)(end - wg_test_now_ms());
        if (left <= 0) break;
        wg_msg_job j;
        if (h_take_job(w, &j, left) != WG_OK) break;
        snprintf(models[n], 32, "%s", j.model);
        snprintf(ids[n], 33, "%s", j.job_id);
        n++;
        wg_msg_job_clear(&j);
    }
    return n;
}

Test(routing, jobs_go_to_the_worker_that_holds_their_model) {
    env e;
    env_up(&e, NULL);
    s_register(&e, "a", 4096);
    s_register(&e, "b", 4096);
    void *p = h_dealer(e.ctx, e.b.fe);
    void *wa = h_dealer(e.ctx, e.b.be), *wb = h_dealer(e.ctx, e.b.be);
    /* both could load anything (big budgets, free memory); each holds one model */
    s_ready_mem(wa, "wa", 8, "a", 1u << 30, 1u << 29);
    s_ready_mem(wb, "wb", 8, "b", 1u << 30, 1u << 29);
    s_wait_registered(wa);
    s_wait_registered(wb);
    const char *models[] = {"b", "a", "b", "a", "a", "b", "a", "b"};
    wg_msg_submitted rep;
    s_submit_models(p, models, 8, &rep);
    for (int i = 0; i < 8; i++) cr_assert(rep.items[i].accepted);
    wg_msg_submitted_clear(&rep);
    char got[8][32], ids[8][33];
    int na = s_take_models(wa, got, ids, 8, 1500);
    cr_assert_eq(na, 4, "wa got %d jobs", na);
    for (int i = 0; i < na; i++) cr_assert_str_eq(got[i], "a");
    int nb = s_take_models(wb, got, ids, 8, 500);
    cr_assert_eq(nb, 4, "wb got %d jobs", nb);
    for (int i = 0; i < nb; i++) cr_assert_str_eq(got[i], "b");
    zmq_close(p);
    zmq_close(wa);
    zmq_close(wb);
    env_down(&e);
}

Test(routing, an_unheld_model_goes_to_a_worker_with_memory_to_load_it) {
    env e;
    env_up(&e, NULL);
    s_register(&e, "a", 4096);
    uint64_t cb = s_register(&e, "c", 1 << 16); /* ~256 KiB */
    void *p = h_dealer(e.ctx, e.b.fe);
    void *full = h_dealer(e.ctx, e.b.be), *roomy = h_dealer(e.ctx, e.b.be), *small = h_dealer(e.ctx, e.b.be);
    s_ready_mem(full, "full", 8, "a", cb * 2, 0);             /* must evict to load c */
    s_ready_mem(roomy, "roomy", 8, "a", cb * 4, cb * 2);      /* room beside a */
    s_ready_mem(small, "small", 8, NULL, cb / 2, cb / 2);     /* c never fits */
    s_wait_registered(full);
    s_wait_registered(roomy);
    s_wait_registered(small);
    const char *models[] = {"c", "c", "c"};
    wg_msg_submitted rep;
    s_submit_models(p, models, 3, &rep);
    wg_msg_submitted_clear(&rep);
    char got[8][32], ids[8][33];
    cr_assert_eq(s_take_models(roomy, got, ids, 8, 1500), 3, "the worker with free memory loads c");
    cr_assert_eq(s_take_models(full, got, ids, 8, 300), 0);
    cr_assert_eq(s_take_models(small, got, ids, 8, 100), 0, "a worker whose budget cannot hold c gets none");
    zmq_close(p);
    zmq_close(full);
    zmq_close(roomy);
    zmq_close(small);
    env_down(&e);
}

Test(routing, a_busy_worker_finishes_its_models_queue_before_switching) {
    env e;
    env_up(&e, NULL);
    s_register(&e, "a", 4096);
    uint64_t cb = s_register(&e, "c", 4096);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    s_ready_mem(w, "w", 2, "a", cb + 1000, 0); /* budget for one model */
    wg_test_sleep_ms(200);
    const char *models[] = {"a", "c", "a", "a", "c", "a"};
    wg_msg_submitted rep;
    s_submit_models(p, models, 6, &rep);
    wg_msg_submitted_clear(&rep);
    char order[8][32];
    int n = 0;
    for (int round = 0; round < 12 && n < 6; round++) {
        char got[4][32], ids[4][33];
        int k = s_take_models(w, got, ids, 2, 800);
        for (int i = 0; i < k; i++) {
            snprintf(order[n++], 32, "%.31s", got[i]);
            h_done(w, ids[i], "ok");
        }
    }
    cr_assert_eq(n, 6, "all jobs delivered (%d)", n);
    /* the four a-jobs first (the worker holds a), then the two c-jobs */
    for (int i = 0; i < 4; i++) cr_assert_str_eq(order[i], "a", "position %d is %s", i, order[i]);
    for (int i = 4; i < 6; i++) cr_assert_str_eq(order[i], "c", "position %d is %s", i, order[i]);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(routing, a_starved_model_gets_the_worker_despite_a_steady_stream_of_others) {
    env e;
    const char *extra[] = {"--starve-ms", "400", NULL};
    env_up(&e, extra);
    s_register(&e, "a", 4096);
    uint64_t cb = s_register(&e, "c", 4096);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    s_ready_mem(w, "w", 1, "a", cb + 1000, 0);
    wg_test_sleep_ms(200);
    const char *first[] = {"a", "c", "a", "a"};
    wg_msg_submitted rep;
    s_submit_models(p, first, 4, &rep);
    wg_msg_submitted_clear(&rep);
    int64_t t0 = wg_test_now_ms();
    int a_before_c = 0;
    bool got_c = false;
    for (int round = 0; round < 40 && !got_c; round++) {
        char got[2][32], ids[2][33];
        int k = s_take_models(w, got, ids, 1, 2000);
        cr_assert_eq(k, 1, "worker starved of jobs at round %d", round);
        if (!strcmp(got[0], "c")) {
            got_c = true;
            break;
        }
        a_before_c++;
        /* keep the a-queue non-empty so a naive grouping would never switch */
        const char *more[] = {"a"};
        s_submit_models(p, more, 1, &rep);
        wg_msg_submitted_clear(&rep);
        wg_test_sleep_ms(60);
        h_done(w, ids[0], "ok");
    }
    cr_assert(got_c, "model c never dispatched");
    cr_assert_geq(a_before_c, 2, "grouping: the held model ran first (%d)", a_before_c);
    cr_assert_lt(wg_test_now_ms() - t0, 3000, "c waited too long");
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}
