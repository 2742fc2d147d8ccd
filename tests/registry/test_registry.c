/* Registry: a real redis-server (temp dir, AOF on), models from the
 * conformance corpus and generated GGUF files; sha256 checked against the
 * sha256sum tool, persistence across a Redis restart, the sha256 cache
 * measured by the handle's counters, the CLI end to end. */
#include <fcntl.h>
#include <sys/stat.h>

#include "../integration/broker_harness.h"
#include "engine/formats/wg_gguf.h"
#include "wg_test.h"
#include "worker/registry/wg_registry.h"

static void s_url(const h_redis *r, char *url, size_t cap) {
    snprintf(url, cap, "redis://127.0.0.1:%d", r->port);
}

/* First word of a shell command's output (sha256sum prints "<hex>  <file>"). */
static void s_sh_first_word(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    char line[1024] = "";
    cr_assert(fgets(line, sizeof line, p), "no output from %s", cmd);
    pclose(p);
    size_t n = strcspn(line, " \t\n");
    cr_assert(n < cap);
    memcpy(out, line, n);
    out[n] = 0;
}

/* A small GGUF model with `n` F16 values; distinct content per seed. */
static void s_write_gguf(const char *path, int n, int seed) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    cr_assert(w);
    wg_gguf_writer_set_str(w, "general.architecture", "llama");
    wg_gguf_writer_set_u32(w, "general.file_type", 1);
    uint16_t *d = calloc((size_t)n, 2);
    for (int i = 0; i < n; i++) d[i] = (uint16_t)(i * 31 + seed);
    int64_t ne[2] = {n / 4, 4};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "token_embd.weight", WG_TYPE_F16, 2, ne, d), WG_OK);
    float norm[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int64_t ne1[1] = {8};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "output_norm.weight", WG_TYPE_F32, 1, ne1, norm), WG_OK);
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK);
    wg_gguf_writer_destroy(&w);
    free(d);
}

static bool s_listed(wg_registry_t *r, const char *name) {
    char **names = NULL;
    uint32_t n = 0;
    cr_assert_eq(wg_registry_list(r, &names, &n), WG_OK, "%s", wg_errmsg());
    bool found = false;
    for (uint32_t i = 0; i < n; i++) found |= !strcmp(names[i], name);
    for (uint32_t i = 1; i < n; i++) cr_assert(strcmp(names[i - 1], names[i]) < 0, "list is sorted");
    wg_registry_names_free(&names, &n);
    return found;
}

Test(registry, gguf_add_show_list_rm_round_trip_with_sha256sum_and_metadata) {
    WG_REQUIRE_CORPUS();
    h_redis rs;
    h_redis_start(&rs);
    char url[64];
    s_url(&rs, url, sizeof url);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    char path[4096];
    snprintf(path, sizeof path, "%s", wg_test_corpus("models/llama/llama-Q4_K_M.gguf"));
    wg_reg_model m;
    cr_assert_eq(wg_registry_add(r, "llama-q4km", path, NULL, NULL, &m), WG_OK, "%s", wg_errmsg());
    wg_reg_model_clear(&m);

    cr_assert_eq(wg_registry_get(r, "llama-q4km", &m), WG_OK, "%s", wg_errmsg());
    char cmd[4200], want[80];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    s_sh_first_word(cmd, want, sizeof want);
    cr_assert_str_eq(m.sha256, want, "registry sha256 differs from sha256sum");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(m.bytes, (int64_t)sb.st_size);
    cr_assert_eq(m.bytes, 833280, "corpus README lists llama-Q4_K_M.gguf at 833,280 bytes");
    cr_assert_str_eq(m.format, "gguf");
    cr_assert_str_eq(m.arch, "llama");
    cr_assert_str_eq(m.quant, "Q4_K_M");
    cr_assert_str_eq(m.dominant_type, "Q4_K", "13 of 16 matrices are Q4_K");
    cr_assert_eq(m.file_type, 15, "LLAMA_FTYPE_MOSTLY_Q4_K_M");
    cr_assert_eq(m.n_tensors, 21, "F32x5 + Q4_Kx13 + Q6_Kx3");
    cr_assert(m.path[0] == '/', "absolute path");
    cr_assert_eq(m.n_files, 1);
    cr_assert_str_eq(m.files[0].sha256, want);
    cr_assert(m.added_at_ms > 1600000000000LL);
    /* a second parser agrees on the parameter count: the HF copy of the same model */
    wg_reg_model hf;
    cr_assert_eq(wg_registry_describe(wg_test_corpus("hf/llama"), &hf), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(m.n_params, hf.n_params, "GGUF %lld vs safetensors %lld params", (long long)m.n_params,
                 (long long)hf.n_params);
    /* llama: 320x256 embd + 320x256 output + 2 layers x (4x256x256/... ) checked in the HF test */
    wg_reg_model_clear(&hf);
    wg_reg_model_clear(&m);

    bool ex = false;
    cr_assert_eq(wg_registry_exists(r, "llama-q4km", &ex), WG_OK);
    cr_assert(ex);
    cr_assert(s_listed(r, "llama-q4km"));
    /* the hash is where docs/REGISTRY.md says */
    redisReply *rep = h_redis_cmd(&rs, "HGET waggle:model:llama-q4km sha256");
    cr_assert(rep && rep->type == REDIS_REPLY_STRING);
    cr_assert_str_eq(rep->str, want);
    freeReplyObject(rep);

    cr_assert_eq(wg_registry_rm(r, "llama-q4km"), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_get(r, "llama-q4km", &m), WG_ERR_NOTFOUND);
    cr_assert(strstr(wg_errmsg(), "llama-q4km"), "reason names the model: %s", wg_errmsg());
    cr_assert_not(s_listed(r, "llama-q4km"));
    cr_assert_eq(wg_registry_rm(r, "llama-q4km"), WG_ERR_NOTFOUND);
    rep = h_redis_cmd(&rs, "EXISTS waggle:model:llama-q4km");
    cr_assert_eq(rep->integer, 0);
    freeReplyObject(rep);
    wg_registry_destroy(&r);
    cr_assert_null(r);
    h_redis_stop(&rs);
}

Test(registry, hf_directory_digest_is_sha256_of_its_sha256sum_manifest) {
    WG_REQUIRE_CORPUS();
    h_redis rs;
    h_redis_start(&rs);
    char url[64];
    s_url(&rs, url, sizeof url);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", wg_test_corpus("hf/qwen2-bf16"));
    wg_reg_model m;
    cr_assert_eq(wg_registry_add(r, "qwen2-bf16", dir, NULL, NULL, &m), WG_OK, "%s", wg_errmsg());
    char cmd[8400], want[80], want_st[80];
    snprintf(cmd, sizeof cmd, "cd '%s' && sha256sum config.json model.safetensors | sha256sum", dir);
    s_sh_first_word(cmd, want, sizeof want);
    cr_assert_str_eq(m.sha256, want);
    snprintf(cmd, sizeof cmd, "sha256sum '%s/model.safetensors'", dir);
    s_sh_first_word(cmd, want_st, sizeof want_st);
    cr_assert_eq(m.n_files, 2);
    cr_assert_str_eq(m.files[0].name, "config.json");
    cr_assert_str_eq(m.files[1].name, "model.safetensors");
    cr_assert_str_eq(m.files[1].sha256, want_st);
    cr_assert_str_eq(m.format, "hf");
    cr_assert_str_eq(m.arch, "qwen2");
    cr_assert_str_eq(m.quant, "BF16", "2-D tensors are BF16, 1-D stay F32");
    snprintf(cmd, sizeof cmd, "cat '%s'/config.json '%s'/model.safetensors | wc -c", dir, dir);
    char bytes[32];
    s_sh_first_word(cmd, bytes, sizeof bytes);
    cr_assert_eq(m.bytes, atoll(bytes));
    wg_reg_model_clear(&m);
    /* F16/BF16/F32 copies hold the same parameters */
    wg_reg_model a, b;
    cr_assert_eq(wg_registry_describe(wg_test_corpus("hf/qwen2"), &a), WG_OK);
    cr_assert_eq(wg_registry_describe(wg_test_corpus("models/qwen2/qwen2-f32.gguf"), &b), WG_OK);
    cr_assert_str_eq(a.quant, "F32");
    cr_assert_eq(a.n_params, b.n_params, "hf %lld vs gguf %lld", (long long)a.n_params, (long long)b.n_params);
    cr_assert_gt(a.n_params, 0);
    wg_reg_model_clear(&a);
    wg_reg_model_clear(&b);
    wg_registry_destroy(&r);
    h_redis_stop(&rs);
}

/* Start redis-server on a fixed port and dir (restarts reuse both). */
static pid_t s_redis_at(int port, const char *dir) {
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof p, "%d", port);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "yes", "--appendfsync", "always", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        bool ok = c && !c->err;
        if (c) redisFree(c);
        if (ok) return pid;
        wg_test_sleep_ms(25);
    }
    cr_assert_fail("redis-server did not start");
    return -1;
}

Test(registry, entries_survive_a_redis_kill_and_restart_through_the_aof) {
    h_redis rs;
    h_redis_start(&rs); /* only for its temp dir and port */
    kill(rs.pid, SIGKILL);
    waitpid(rs.pid, NULL, 0);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/aof", rs.dir);
    mkdir(dir, 0700);
    pid_t pid = s_redis_at(rs.port, dir);
    char url[64], model[256];
    s_url(&rs, url, sizeof url);
    snprintf(model, sizeof model, "%s/m.gguf", rs.dir);
    s_write_gguf(model, 4096, 7);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    wg_reg_model m;
    cr_assert_eq(wg_registry_add(r, "persist", model, NULL, NULL, &m), WG_OK, "%s", wg_errmsg());
    char sha[65];
    memcpy(sha, m.sha256, 65);
    wg_reg_model_clear(&m);
    kill(pid, SIGKILL); /* no graceful shutdown: only the AOF keeps it */
    waitpid(pid, NULL, 0);
    cr_assert_eq(wg_registry_get(r, "persist", &m), WG_ERR_REDIS, "Redis is down");
    cr_assert(strstr(wg_errmsg(), "127.0.0.1"), "reason names the endpoint: %s", wg_errmsg());
    pid = s_redis_at(rs.port, dir);
    /* the same handle reconnects by itself (after its short reconnect backoff) */
    wg_status st = WG_ERR_REDIS;
    for (int i = 0; i < 60 && st == WG_ERR_REDIS; i++) {
        st = wg_registry_get(r, "persist", &m);
        if (st == WG_ERR_REDIS) wg_test_sleep_ms(50);
    }
    cr_assert_eq(st, WG_OK, "%s", wg_errmsg());
    cr_assert_str_eq(m.sha256, sha);
    cr_assert_str_eq(m.quant, "F16");
    cr_assert(s_listed(r, "persist"));
    wg_reg_model_clear(&m);
    wg_registry_destroy(&r);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rs.pid = 0;
    h_redis_stop(&rs);
}

Test(registry, sha256_cache_rehashes_only_when_size_or_mtime_changes) {
    h_redis rs;
    h_redis_start(&rs);
    char url[64], model[256];
    s_url(&rs, url, sizeof url);
    snprintf(model, sizeof model, "%s/c.gguf", rs.dir);
    s_write_gguf(model, 1 << 16, 3);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    wg_registry_stats s0, s1;
    cr_assert_eq(wg_registry_add(r, "c", model, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_get_stats(r, &s0);
    cr_assert_eq(s0.files_hashed, 1);
    /* unchanged: no re-hash */
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_verify(r, "c", model, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_get_stats(r, &s1);
    cr_assert_eq(s1.files_hashed, s0.files_hashed, "unchanged file was re-hashed");
    cr_assert_eq(s1.cache_hits, s0.cache_hits + 2);
    /* re-adding the same unchanged file reuses the hash too */
    cr_assert_eq(wg_registry_add(r, "c", model, NULL, NULL, NULL), WG_OK);
    wg_registry_get_stats(r, &s1);
    cr_assert_eq(s1.files_hashed, s0.files_hashed);
    /* touch: new mtime, same bytes -> one re-hash, still valid, new mtime recorded */
    struct timespec ts[2] = {{0, UTIME_NOW}, {1700000000, 123}};
    cr_assert_eq(utimensat(AT_FDCWD, model, ts, 0), 0);
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_get_stats(r, &s1);
    cr_assert_eq(s1.files_hashed, s0.files_hashed + 1, "touched file must be re-hashed");
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_OK);
    wg_registry_stats s2;
    wg_registry_get_stats(r, &s2);
    cr_assert_eq(s2.files_hashed, s1.files_hashed, "the new mtime was recorded: no second re-hash");
    wg_reg_model m;
    cr_assert_eq(wg_registry_get(r, "c", &m), WG_OK);
    cr_assert_eq(m.files[0].mtime_ns, 1700000000LL * 1000000000LL + 123);
    wg_reg_model_clear(&m);
    /* corrupt one byte in place (same size, new mtime) -> checksum error naming both digests */
    int fd = open(model, O_WRONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(pwrite(fd, "\x55", 1, 20000), 1);
    close(fd);
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_ERR_CHECKSUM);
    cr_assert(strstr(wg_errmsg(), "sha256") && strstr(wg_errmsg(), "registered"), "%s", wg_errmsg());
    /* truncated -> named without hashing */
    wg_registry_get_stats(r, &s1);
    cr_assert_eq(truncate(model, 1000), 0);
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_ERR_TRUNCATED);
    cr_assert(strstr(wg_errmsg(), "1000 bytes"), "%s", wg_errmsg());
    wg_registry_get_stats(r, &s2);
    cr_assert_eq(s2.files_hashed, s1.files_hashed);
    /* missing */
    cr_assert_eq(unlink(model), 0);
    cr_assert_eq(wg_registry_verify(r, "c", NULL, NULL, NULL), WG_ERR_IO);
    cr_assert(strstr(wg_errmsg(), "missing"), "%s", wg_errmsg());
    cr_assert_eq(wg_registry_verify(r, "nope", NULL, NULL, NULL), WG_ERR_NOTFOUND);
    wg_registry_destroy(&r);
    h_redis_stop(&rs);
}

Test(registry, a_copy_at_another_path_is_hashed_and_accepted_when_identical) {
    h_redis rs;
    h_redis_start(&rs);
    char url[64], a[256], b[256], c[256];
    s_url(&rs, url, sizeof url);
    snprintf(a, sizeof a, "%s/a.gguf", rs.dir);
    snprintf(b, sizeof b, "%s/b.gguf", rs.dir);
    snprintf(c, sizeof c, "%s/c.gguf", rs.dir);
    s_write_gguf(a, 2048, 1);
    s_write_gguf(b, 2048, 1); /* same bytes, other path */
    s_write_gguf(c, 2048, 2); /* same size, other bytes */
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK);
    cr_assert_eq(wg_registry_add(r, "a", a, NULL, NULL, NULL), WG_OK);
    wg_registry_stats s0, s1;
    wg_registry_get_stats(r, &s0);
    cr_assert_eq(wg_registry_verify(r, "a", b, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_get_stats(r, &s1);
    cr_assert_eq(s1.files_hashed, s0.files_hashed + 1, "another path is never trusted from the cache");
    cr_assert_eq(wg_registry_verify(r, "a", c, NULL, NULL), WG_ERR_CHECKSUM);
    wg_registry_destroy(&r);
    h_redis_stop(&rs);
}

Test(registry, bad_inputs_are_named) {
    h_redis rs;
    h_redis_start(&rs);
    char url[64], junk[256];
    s_url(&rs, url, sizeof url);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect("http://x:1", &r), WG_ERR_INVAL);
    cr_assert_eq(wg_registry_connect("redis://127.0.0.1:notaport", &r), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "notaport"), "%s", wg_errmsg());
    cr_assert_eq(wg_registry_connect("redis://127.0.0.1:1", &r), WG_ERR_REDIS);
    cr_assert(strstr(wg_errmsg(), "127.0.0.1:1"), "%s", wg_errmsg());
    cr_assert_null(r);
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK);
    cr_assert_eq(wg_registry_add(r, "x", "/nonexistent/model.gguf", NULL, NULL, NULL), WG_ERR_IO);
    cr_assert(strstr(wg_errmsg(), "/nonexistent/model.gguf"), "%s", wg_errmsg());
    snprintf(junk, sizeof junk, "%s/junk.gguf", rs.dir);
    FILE *f = fopen(junk, "w");
    fputs("this is not a model file at all, just text", f);
    fclose(f);
    cr_assert_neq(wg_registry_add(r, "x", junk, NULL, NULL, NULL), WG_OK);
    cr_assert_eq(wg_registry_add(r, "has space", junk, NULL, NULL, NULL), WG_ERR_INVAL);
    cr_assert_eq(wg_registry_add(r, "", junk, NULL, NULL, NULL), WG_ERR_INVAL);
    cr_assert_not(s_listed(r, "x"), "a failed add leaves nothing behind");
    /* a hand-broken entry is reported, not trusted */
    freeReplyObject(h_redis_cmd(&rs, "HSET waggle:model:bad sha256 abc bytes 1 format gguf path /x files []"));
    wg_reg_model m;
    cr_assert_eq(wg_registry_get(r, "bad", &m), WG_ERR_FORMAT);
    cr_assert(strstr(wg_errmsg(), "sha256"), "%s", wg_errmsg());
    wg_registry_destroy(&r);
    h_redis_stop(&rs);
}

Test(registry, auth_with_password_and_acl_user_from_the_url) {
    h_redis rs;
    h_redis_start(&rs);
    freeReplyObject(h_redis_cmd(&rs, "ACL SETUSER alice on >s3cret ~* &* +@all"));
    freeReplyObject(h_redis_cmd(&rs, "CONFIG SET requirepass topsecret"));
    char url[128];
    wg_registry_t *r = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rs.port);
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "connect itself needs no AUTH");
    bool ex;
    cr_assert_eq(wg_registry_exists(r, "m", &ex), WG_ERR_REDIS, "commands need AUTH");
    wg_registry_destroy(&r);
    snprintf(url, sizeof url, "redis://:topsecret@127.0.0.1:%d/2", rs.port);
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_exists(r, "m", &ex), WG_OK);
    wg_registry_destroy(&r);
    snprintf(url, sizeof url, "redis://alice:s3cret@127.0.0.1:%d", rs.port);
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK, "%s", wg_errmsg());
    wg_registry_destroy(&r);
    snprintf(url, sizeof url, "redis://alice:wrong@127.0.0.1:%d", rs.port);
    cr_assert_eq(wg_registry_connect(url, &r), WG_ERR_REDIS);
    cr_assert(strstr(wg_errmsg(), "AUTH") && strstr(wg_errmsg(), "alice"), "%s", wg_errmsg());
    h_redis_stop(&rs);
}

Test(registry, workers_register_with_a_ttl_and_vanish_when_not_refreshed) {
    h_redis rs;
    h_redis_start(&rs);
    char url[64];
    s_url(&rs, url, sizeof url);
    wg_registry_t *r = NULL;
    cr_assert_eq(wg_registry_connect(url, &r), WG_OK);
    char *models[] = {"a", "b"};
    wg_reg_worker w = {.id = "w1", .stream_endpoint = "tcp://h:1", .device = "cpu", .mem_budget = 1000,
                       .mem_free = 400, .models = models, .n_models = 2, .credits = 8, .free_slots = 5};
    wg_reg_worker w2 = {.id = "w2", .device = "cuda:0", .mem_budget = 9, .credits = 1, .free_slots = 1};
    cr_assert_eq(wg_registry_worker_put(r, &w, 1), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_worker_put(r, &w2, 30), WG_OK, "%s", wg_errmsg());
    wg_reg_worker *ws = NULL;
    uint32_t n = 0;
    cr_assert_eq(wg_registry_worker_list(r, &ws, &n), WG_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ws[0].id, "w1");
    cr_assert_str_eq(ws[0].stream_endpoint, "tcp://h:1");
    cr_assert_str_eq(ws[0].device, "cpu");
    cr_assert_eq(ws[0].mem_budget, 1000);
    cr_assert_eq(ws[0].mem_free, 400);
    cr_assert_eq(ws[0].n_models, 2);
    cr_assert_str_eq(ws[0].models[1], "b");
    cr_assert_eq(ws[0].credits, 8);
    cr_assert_eq(ws[0].free_slots, 5);
    cr_assert(ws[0].ttl_s >= 0 && ws[0].ttl_s <= 1);
    cr_assert_eq(ws[1].n_models, 0);
    wg_reg_workers_free(&ws, &n);
    /* w2 keeps refreshing, w1 does not */
    wg_test_sleep_ms(1300);
    cr_assert_eq(wg_registry_worker_put(r, &w2, 30), WG_OK);
    wg_test_sleep_ms(900);
    cr_assert_eq(wg_registry_worker_list(r, &ws, &n), WG_OK);
    cr_assert_eq(n, 1, "the unrefreshed worker expired");
    cr_assert_str_eq(ws[0].id, "w2");
    wg_reg_workers_free(&ws, &n);
    redisReply *rep = h_redis_cmd(&rs, "SISMEMBER waggle:workers w1");
    cr_assert_eq(rep->integer, 0, "expired id pruned from the set");
    freeReplyObject(rep);
    cr_assert_eq(wg_registry_worker_rm(r, "w2"), WG_OK);
    cr_assert_eq(wg_registry_worker_list(r, &ws, &n), WG_OK);
    cr_assert_eq(n, 0);
    wg_registry_destroy(&r);
    h_redis_stop(&rs);
}

/* ---- the CLI ---- */

static int s_run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(registry, cli_add_show_json_list_rm_and_named_errors) {
    WG_REQUIRE_CORPUS();
    h_redis rs;
    h_redis_start(&rs);
    char url[64], cmd[8192], out[65536], want[80];
    s_url(&rs, url, sizeof url);
    const char *model = wg_test_corpus("models/llama/llama-Q8_0.gguf");
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", model);
    snprintf(cmd, sizeof cmd, "%s models add q8 '%s' --redis %s 2>&1", WG_TEST_WAGGLE_BIN, mpath, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s models show q8 --redis %s --json", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", mpath);
    s_sh_first_word(cmd, want, sizeof want);
    char needle[128];
    snprintf(needle, sizeof needle, "\"sha256\": \"%s\"", want);
    cr_assert(strstr(out, needle), "show --json lacks the right sha256:\n%s", out);
    cr_assert(strstr(out, "\"quant\": \"Q8_0\""), "%s", out);
    cr_assert(strstr(out, "\"bytes\": 1441664"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s models show q8 --redis %s", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0);
    const char *fields[] = {"name:", "format:", "path:", "bytes:", "sha256:", "arch:", "quant:", "n_params:", "added_at:"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) cr_assert(strstr(out, fields[i]), "show lacks %s", fields[i]);
    cr_assert(strstr(out, want), "show prints the sha256");
    snprintf(cmd, sizeof cmd, "%s models list --redis %s", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0);
    cr_assert(strstr(out, "q8") && strstr(out, "Q8_0"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s models rm q8 --redis %s", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s models show q8 --redis %s 2>&1", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 1);
    cr_assert(strstr(out, "'q8' is not registered"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s models list --redis redis://127.0.0.1:1 2>&1", WG_TEST_WAGGLE_BIN);
    cr_assert_eq(s_run(cmd, out, sizeof out), 1);
    cr_assert(strstr(out, "unreachable"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s models add z /no/such/file.gguf --redis %s 2>&1", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 1);
    cr_assert(strstr(out, "/no/such/file.gguf"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s models frobnicate --redis %s 2>&1", WG_TEST_WAGGLE_BIN, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 2);
    h_redis_stop(&rs);
}

Test(registry, cli_prints_hashing_progress_for_a_big_file) {
    h_redis rs;
    h_redis_start(&rs);
    char url[64], cmd[1024], out[65536], big[256];
    s_url(&rs, url, sizeof url);
    snprintf(big, sizeof big, "%s/big.gguf", rs.dir);
    s_write_gguf(big, 36 << 20, 5); /* 72 MiB of F16 */
    snprintf(cmd, sizeof cmd, "%s models add big '%s' --redis %s 2>&1 >/dev/null", WG_TEST_WAGGLE_BIN, big, url);
    cr_assert_eq(s_run(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "hashing big:") && strstr(out, "100.0%"), "no progress on stderr:\n%s", out);
    h_redis_stop(&rs);
}
