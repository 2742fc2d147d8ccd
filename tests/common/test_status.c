#include <criterion/criterion.h>
#include <string.h>

#include "common/wg_status.h"

Test(status, strerror_names_every_code) {
    cr_assert_str_eq(wg_strerror(WG_OK), "success");
    cr_assert_str_eq(wg_strerror(WG_ERR_FORMAT), "malformed input");
    cr_assert_str_eq(wg_status_name(WG_ERR_TRUNCATED), "ERR_TRUNCATED");
    cr_assert_str_eq(wg_strerror((wg_status)-999), "unknown status");
}

Test(status, error_records_reason_and_returns_code) {
    wg_status st = wg_error(WG_ERR_RANGE, "n_dims=%u exceeds %d", 9u, 4);
    cr_assert_eq(st, WG_ERR_RANGE);
    cr_assert_str_eq(wg_errmsg(), "n_dims=9 exceeds 4");
    wg_error_clear();
    cr_assert_str_eq(wg_errmsg(), "");
}

/* Wrapping the previous reason in a new one (the pattern every layer uses)
 * keeps it whole: the new message is formatted before the old is replaced. */
Test(status, error_can_wrap_the_previous_reason) {
    wg_error(WG_ERR_UNSUPPORTED, "kv type q8_0: head sizes must be multiples of %d (this model: keys %d)", 32, 8);
    wg_error(WG_ERR, "worker: scheduler for model '%s': %s", "stories", wg_errmsg());
    cr_assert_str_eq(wg_errmsg(),
                     "worker: scheduler for model 'stories': kv type q8_0: head sizes must be multiples of 32 (this "
                     "model: keys 8)");
    wg_error(WG_ERR, "outer: %s", wg_errmsg());
    cr_assert_str_eq(wg_errmsg(),
                     "outer: worker: scheduler for model 'stories': kv type q8_0: head sizes must be multiples of 32 "
                     "(this model: keys 8)");
}
