/* Hostile bodies for every WGL/1 decoder: every one-byte change, insertion
 * and deletion of a valid body of each kind (all optional fields set) is
 * either rejected with a message and a cleared struct, or accepted as
 * something that re-encodes and reads back the same (wg_test_msg.h). The
 * same property runs under libFuzzer in tests/fuzz/fuzz_msg.c. */
#include <criterion/criterion.h>

#include "wg_test_msg.h"

/* Bytes tried at each position: msgpack type markers that change what
 * follows (nil, bools, wide strings/arrays/maps, floats, wide ints,
 * negative fixint, fixstr/fixarray/fixmap heads), and extreme values. */
static const uint8_t s_bytes[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xc3,
                                  0xca, 0xcb, 0xcc, 0xce, 0xcf, 0xd0, 0xd3, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
                                  0xde, 0xdf, 0xe0, 0xff};

static int s_variants(wg_tm_kind k) {
    switch (k) {
    case WG_TM_JOB:
    case WG_TM_SUBMIT: return 3;
    case WG_TM_RESULT:
    case WG_TM_TOKEN:
    case WG_TM_HEARTBEAT:
    case WG_TM_FAILED: return 2;
    default: return 1;
    }
}

/* Runs the property over the mutations of kind k's samples (cr_assert on a
 * violation); returns how many mutated bodies were tried. */
static long s_sweep(wg_tm_kind k) {
    long total = 0;
    for (int v = 0; v < s_variants(k); v++) {
        wg_msg_buf b;
        cr_assert_eq(wg_tm_sample(k, v, &b), WG_OK, "%s sample %d does not encode: %s", wg_tm_names[k], v,
                     wg_errmsg());
        const char *why = wg_tm_check(k, b.data, b.len);
        cr_assert_null(why, "valid %s sample %d: %s", wg_tm_names[k], v, why);
        uint8_t *m = malloc(b.len + 1);
        cr_assert_not_null(m);
        for (size_t i = 0; i < b.len; i++) {
            /* replace byte i */
            for (size_t x = 0; x < sizeof s_bytes + 2; x++) {
                memcpy(m, b.data, b.len);
                m[i] = x < sizeof s_bytes ? s_bytes[x] : (uint8_t)(b.data[i] ^ (x == sizeof s_bytes ? 0x01 : 0x80));
                if (m[i] == b.data[i]) continue;
                wg_error_clear();
                why = wg_tm_check(k, m, b.len);
                cr_assert_null(why, "%s sample %d, byte %zu of %zu set to 0x%02x: %s", wg_tm_names[k], v, i, b.len,
                               m[i], why);
                total++;
            }
            /* delete byte i */
            memcpy(m, b.data, i);
            memcpy(m + i, b.data + i + 1, b.len - i - 1);
            why = wg_tm_check(k, m, b.len - 1);
            cr_assert_null(why, "%s sample %d without byte %zu: %s", wg_tm_names[k], v, i, why);
            total++;
            /* insert a byte before byte i */
            for (size_t x = 0; x < sizeof s_bytes; x += 3) {
                memcpy(m, b.data, i);
                m[i] = s_bytes[x];
                memcpy(m + i + 1, b.data + i, b.len - i);
                why = wg_tm_check(k, m, b.len + 1);
                cr_assert_null(why, "%s sample %d with 0x%02x inserted at %zu: %s", wg_tm_names[k], v, s_bytes[x],
                               i, why);
                total++;
            }
        }
        free(m);
        wg_msg_buf_free(&b);
    }
    return total;
}

Test(msg_mutate, job) { cr_assert_gt(s_sweep(WG_TM_JOB), 100); }
Test(msg_mutate, submit) { cr_assert_gt(s_sweep(WG_TM_SUBMIT), 100); }
Test(msg_mutate, submitted) { cr_assert_gt(s_sweep(WG_TM_SUBMITTED), 100); }
Test(msg_mutate, cancel) { cr_assert_gt(s_sweep(WG_TM_CANCEL), 100); }
Test(msg_mutate, ping) { cr_assert_gt(s_sweep(WG_TM_PING), 100); }
Test(msg_mutate, jobstate) { cr_assert_gt(s_sweep(WG_TM_JOBSTATE), 100); }
Test(msg_mutate, done) { cr_assert_gt(s_sweep(WG_TM_DONE), 100); }
Test(msg_mutate, result) { cr_assert_gt(s_sweep(WG_TM_RESULT), 100); }
Test(msg_mutate, error) { cr_assert_gt(s_sweep(WG_TM_ERROR), 100); }
Test(msg_mutate, token) { cr_assert_gt(s_sweep(WG_TM_TOKEN), 100); }
Test(msg_mutate, metrics) { cr_assert_gt(s_sweep(WG_TM_METRICS), 100); }
Test(msg_mutate, ready) { cr_assert_gt(s_sweep(WG_TM_READY), 100); }
Test(msg_mutate, heartbeat) { cr_assert_gt(s_sweep(WG_TM_HEARTBEAT), 100); }
Test(msg_mutate, failed) { cr_assert_gt(s_sweep(WG_TM_FAILED), 100); }
Test(msg_mutate, disconnect) { cr_assert_gt(s_sweep(WG_TM_DISCONNECT), 100); }
Test(msg_mutate, empty) { cr_assert_gt(s_sweep(WG_TM_EMPTY), 20); } /* a one-byte body */

/* The broker echoes the req of a SUBMIT it cannot decode: wg_msg_peek_req
 * reads it from a body whose job breaks a limit, and gives 0 for bodies
 * that are not maps or have no uint req. */
Test(msg_mutate, peek_req_reads_the_req_of_a_refused_submit) {
    wg_msg_submit m = {.req = 4242, .n_jobs = 1};
    m.jobs = calloc(1, sizeof *m.jobs);
    wg_tm_job(&m.jobs[0], false, 0);
    free(m.jobs[0].messages[0].role);
    m.jobs[0].messages[0].role = strdup("a-role-name-far-longer-than-thirty-two-bytes");
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_submit_encode(&m, &b), WG_OK, "%s", wg_errmsg());
    wg_msg_submit back;
    cr_assert_neq(wg_msg_submit_decode(b.data, b.len, &back), WG_OK, "the long role must be refused");
    cr_assert(strstr(wg_errmsg(), "role"), "%s", wg_errmsg());
    cr_assert_eq(wg_msg_peek_req(b.data, b.len), 4242);
    /* truncated before req is reached, or not a map: 0 */
    cr_assert_eq(wg_msg_peek_req(b.data, 1), 0);
    const uint8_t arr[] = {0x91, 0x01}, noreq[] = {0x81, 0xa1, 'x', 0x05}, strreq[] = {0x81, 0xa3, 'r', 'e', 'q', 0xa1, '7'};
    cr_assert_eq(wg_msg_peek_req(arr, sizeof arr), 0);
    cr_assert_eq(wg_msg_peek_req(noreq, sizeof noreq), 0);
    cr_assert_eq(wg_msg_peek_req(strreq, sizeof strreq), 0);
    wg_msg_buf_free(&b);
    wg_msg_submit_clear(&m);
}
