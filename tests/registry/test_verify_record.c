/* Registry: the handle's in-process verification record (an unchanged file
 * is vouched for by a stat, no Redis, no hashing; any change of size, mtime
 * or inode, or a re-registration, runs the full check) and the split
 * wg_registry_get_start/_finish, against a real redis-server. */
#include <fcntl.h>
#include <sys/stat.h>

#include "../integration/broker_harness.h"
#include "engine/formats/wg_gguf.h"
#include "wg_test.h"
#include "worker/registry/wg_registry.h"

/* A small GGUF file with `n` F16 values; distinct content per seed. */
static void s_write_gguf(const char *path, int n, int seed) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    cr_assert(w);
    wg_gguf_writer_set_str(w, "general.architecture", "llama");
    uint16_t *d = calloc((size_t)n, 2);
    for (int i = 0; i < n; i++) d[i] = (uint16_t)(i * 31 + seed);
    int64_t ne[2] = {n / 4, 4};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "token_embd.weight", WG_TYPE_F16, 2, ne, d), WG_OK);
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK);
    wg_gguf_writer_destroy(&w);
    free(d);
}

typedef struct fx {
    h_redis rs;
    wg_registry_t *r;
    char model[256];
} fx;

static void s_setup(fx *f) {
    h_redis_start(&f->rs);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f->rs.port);
    snprintf(f->model, sizeof f->model, "%s/m.gguf", f->rs.dir);
    s_write_gguf(f->model, 1 << 14, 1);
    cr_assert_eq(wg_registry_connect(url, &f->r), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_add(f->r, "m", f->model, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
}

static void s_teardown(fx *f) {
    wg_registry_destroy(&f->r);
    h_redis_stop(&f->rs);
}

static wg_registry_stats s_stats(wg_registry_t *r) {
    wg_registry_stats s;
    wg_registry_get_stats(r, &s);
    return s;
}

Test(verify_record, an_unchanged_file_is_vouched_for_in_process_until_it_changes) {
    fx f;
    s_setup(&f);
    wg_reg_model e;
    cr_assert_eq(wg_registry_get(f.r, "m", &e), WG_OK);
    cr_assert_not(wg_registry_verified(f.r, &e), "nothing verified yet");
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_stats s0 = s_stats(f.r);
    cr_assert_eq(s0.verified_in_process, 0, "the first check is the full one");
    cr_assert(wg_registry_verified(f.r, &e));
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK);
    wg_registry_stats s1 = s_stats(f.r);
    cr_assert_eq(s1.verified_in_process, 2);
    cr_assert_eq(s1.files_hashed, s0.files_hashed);
    /* touch: mtime changes -> no longer vouched for */
    struct timespec ts[2] = {{0, UTIME_NOW}, {1700000000, 5}};
    cr_assert_eq(utimensat(AT_FDCWD, f.model, ts, 0), 0);
    cr_assert_not(wg_registry_verified(f.r, &e), "a touched file must be re-verified");
    wg_registry_stats s2 = s_stats(f.r);
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    wg_registry_stats s3 = s_stats(f.r);
    cr_assert_eq(s3.files_hashed, s2.files_hashed + 1, "the touched file is re-hashed");
    cr_assert_eq(s3.verified_in_process, s2.verified_in_process);
    wg_reg_model_clear(&e);
    s_teardown(&f);
}

Test(verify_record, a_replaced_inode_with_the_same_size_and_mtime_is_re_hashed_and_caught) {
    fx f;
    s_setup(&f);
    wg_reg_model e;
    cr_assert_eq(wg_registry_get(f.r, "m", &e), WG_OK);
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    struct stat sb;
    cr_assert_eq(stat(f.model, &sb), 0);
    /* other bytes, same size, then the original mtime back, renamed over it:
     * only the inode tells it apart */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.new", f.model);
    s_write_gguf(tmp, 1 << 14, 2);
    struct timespec ts[2] = {sb.st_atim, sb.st_mtim};
    cr_assert_eq(utimensat(AT_FDCWD, tmp, ts, 0), 0);
    cr_assert_eq(rename(tmp, f.model), 0);
    cr_assert_not(wg_registry_verified(f.r, &e), "another inode must not be vouched for");
    wg_registry_stats s0 = s_stats(f.r);
    /* Redis' size+mtime record matches, but this process saw another inode:
     * the file is hashed, not taken on trust */
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_ERR_CHECKSUM);
    cr_assert(strstr(wg_errmsg(), "sha256"), "%s", wg_errmsg());
    wg_registry_stats s1 = s_stats(f.r);
    cr_assert_eq(s1.files_hashed, s0.files_hashed + 1);
    wg_reg_model_clear(&e);
    s_teardown(&f);
}

Test(verify_record, a_corrupted_file_fails_naming_the_checksum_and_loses_its_record) {
    fx f;
    s_setup(&f);
    wg_reg_model e;
    cr_assert_eq(wg_registry_get(f.r, "m", &e), WG_OK);
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    int fd = open(f.model, O_WRONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(pwrite(fd, "\x55", 1, 9000), 1);
    close(fd);
    struct stat sb;
    cr_assert_eq(stat(f.model, &sb), 0);
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_ERR_CHECKSUM);
    cr_assert(strstr(wg_errmsg(), "sha256") && strstr(wg_errmsg(), "m.gguf"), "%s", wg_errmsg());
    cr_assert_not(wg_registry_verified(f.r, &e), "a failed check leaves no record");
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_ERR_CHECKSUM, "still bad");
    wg_reg_model_clear(&e);
    s_teardown(&f);
}

Test(verify_record, a_re_registered_digest_is_not_vouched_for_by_the_old_record) {
    fx f;
    s_setup(&f);
    wg_reg_model e, e2;
    cr_assert_eq(wg_registry_get(f.r, "m", &e), WG_OK);
    cr_assert_eq(wg_registry_verify_entry(f.r, &e, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    /* new content at the same path, registered again */
    s_write_gguf(f.model, 1 << 14, 3);
    cr_assert_eq(wg_registry_add(f.r, "m", f.model, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_get(f.r, "m", &e2), WG_OK);
    cr_assert_str_neq(e.sha256, e2.sha256);
    cr_assert_not(wg_registry_verified(f.r, &e2), "the record was for the old digest");
    cr_assert_not(wg_registry_verified(f.r, &e), "the old entry's file changed");
    cr_assert_eq(wg_registry_verify_entry(f.r, &e2, NULL, NULL, NULL), WG_OK, "%s", wg_errmsg());
    cr_assert(wg_registry_verified(f.r, &e2));
    wg_reg_model_clear(&e);
    wg_reg_model_clear(&e2);
    s_teardown(&f);
}

Test(verify_record, get_start_finish_equals_get_and_survives_a_restarted_server) {
    fx f;
    s_setup(&f);
    wg_reg_model a, b;
    cr_assert_eq(wg_registry_get(f.r, "m", &a), WG_OK);
    cr_assert_eq(wg_registry_get_start(f.r, "m"), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_registry_get_finish(f.r, "m", &b), WG_OK, "%s", wg_errmsg());
    cr_assert_str_eq(a.path, b.path);
    cr_assert_str_eq(a.sha256, b.sha256);
    cr_assert_eq(a.n_files, b.n_files);
    wg_reg_model_clear(&b);
    cr_assert_eq(wg_registry_get_start(f.r, "nope"), WG_OK);
    cr_assert_eq(wg_registry_get_finish(f.r, "nope", &b), WG_ERR_NOTFOUND);
    cr_assert(strstr(wg_errmsg(), "not registered"), "%s", wg_errmsg());
    wg_reg_model_clear(&a);
    s_teardown(&f);
}
