#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "common/wg_redis.h"

Test(redis, parse_url_reads_every_part) {
    wg_redis_addr a;
    cr_assert_eq(wg_redis_parse_url("redis://alice:s3cret@10.0.0.1:6380/2", &a), WG_OK);
    cr_assert_str_eq(a.user, "alice");
    cr_assert_str_eq(a.password, "s3cret");
    cr_assert_str_eq(a.host, "10.0.0.1");
    cr_assert_eq(a.port, 6380);
    cr_assert_eq(a.db, 2);
    cr_assert_eq(wg_redis_parse_url("redis://pw@h", &a), WG_OK);
    cr_assert_str_eq(a.user, "", "a bare password authenticates as the default user");
    cr_assert_str_eq(a.password, "pw");
    cr_assert_str_eq(a.host, "h");
    cr_assert_eq(a.port, 6379);
    cr_assert_eq(a.db, 0);
    cr_assert_eq(wg_redis_parse_url("127.0.0.1:7000", &a), WG_OK, "the scheme may be left out");
    cr_assert_eq(a.port, 7000);
    cr_assert_str_eq(a.user, "", "fields of an earlier parse are cleared");
}

Test(redis, parse_url_names_the_bad_part) {
    wg_redis_addr a;
    struct {
        const char *url, *needle;
    } bad[] = {
        {"", "empty"},
        {"http://h:1", "scheme"},
        {"redis://:1", "host"},
        {"redis://h:0", "bad port '0'"},
        {"redis://h:99999", "bad port '99999'"},
        {"redis://h:12x", "bad port '12x'"},
        {"redis://h:1/x", "bad db 'x'"},
        {"redis://h:1/-1", "bad db '-1'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(wg_redis_parse_url(bad[i].url, &a), WG_ERR_INVAL, "'%s' accepted", bad[i].url);
        cr_assert(strstr(wg_errmsg(), bad[i].needle), "'%s': %s", bad[i].url, wg_errmsg());
    }
}

Test(redis, open_reports_an_unreachable_server) {
    wg_redis_addr a;
    cr_assert_eq(wg_redis_parse_url("redis://127.0.0.1:1", &a), WG_OK);
    struct redisContext *c = (struct redisContext *)1;
    bool reached = true;
    cr_assert_eq(wg_redis_open(&a, 500, 500, &c, &reached), WG_ERR_REDIS);
    cr_assert_null(c);
    cr_assert_not(reached);
    cr_assert(strstr(wg_errmsg(), "redis 127.0.0.1:1 unreachable"), "%s", wg_errmsg());
}
