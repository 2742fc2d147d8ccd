/* test_store_mem — the broker's in-memory result store (embedded mode):
 * first writer wins, lookups stay right as the table grows past its initial
 * buckets, and results expire after their TTL like the Redis store's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/wg_store.h"
#include "wg_test.h"
#include "wg_test_sys.h"

static void s_put(wg_store_t *s, const char *id, const char *val, uint32_t ttl) {
    cr_assert_eq(s->ops->finish(s, "m", "1-0", id, (const uint8_t *)val, strlen(val), ttl), WG_OK, "%s",
                 wg_errmsg());
}

static void s_expect(wg_store_t *s, const char *id, const char *val) {
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(s->ops->get_result(s, id, &out, &len), WG_OK, "job %s: %s", id, wg_errmsg());
    cr_assert_eq(len, strlen(val));
    cr_assert(memcmp(out, val, len) == 0, "job %s has another result", id);
    free(out);
}

Test(store_mem, first_writer_wins_and_100k_results_stay_reachable) {
    wg_store_t *s = wg_store_mem_new();
    cr_assert(s);
    char id[40], val[40];
    for (int i = 0; i < 100000; i++) { /* 24x the initial buckets: several doublings */
        snprintf(id, sizeof id, "job-%06d", i);
        snprintf(val, sizeof val, "result %d", i);
        s_put(s, id, val, 3600);
    }
    s_put(s, "job-000007", "a second writer", 3600);
    s_expect(s, "job-000007", "result 7");
    for (int i = 0; i < 100000; i += 997) {
        snprintf(id, sizeof id, "job-%06d", i);
        snprintf(val, sizeof val, "result %d", i);
        s_expect(s, id, val);
    }
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(s->ops->get_result(s, "job-missing", &out, &len), WG_ERR_NOTFOUND);
    s->ops->destroy(s);
}

Test(store_mem, results_expire_after_their_ttl) {
    wg_store_t *s = wg_store_mem_new();
    cr_assert(s);
    s_put(s, "old", "first", 1);
    s_put(s, "old2", "second", 1);
    s_expect(s, "old", "first");
    wg_test_sleep_ms(1100);
    s_put(s, "new", "third", 1); /* an insert drops what has expired */
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(s->ops->get_result(s, "old", &out, &len), WG_ERR_NOTFOUND, "an expired result was served");
    cr_assert_eq(s->ops->get_result(s, "old2", &out, &len), WG_ERR_NOTFOUND);
    s_expect(s, "new", "third");
    /* an expired job id can be written again */
    s_put(s, "old", "again", 60);
    s_expect(s, "old", "again");
    s->ops->destroy(s);
}
