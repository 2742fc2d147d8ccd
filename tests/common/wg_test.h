/* wg_test — helpers shared by the Criterion suites.
 *
 * Conformance data lives in ../shared/conformance (override with
 * WAGGLE_CONFORMANCE). When it is missing, tests fail loudly under CI=true and
 * skip with a reason otherwise. */
#ifndef WG_TEST_H
#define WG_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static inline const char *wg_test_conformance_dir(void) {
    const char *d = getenv("WAGGLE_CONFORMANCE");
    if (!d || !*d) d = WG_CONFORMANCE_DEFAULT;
    return d;
}

/* Full path of a corpus file (static buffer per call site is not thread-safe;
 * Criterion runs each test in its own process, so one buffer is fine). */
static inline const char *wg_test_corpus(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", wg_test_conformance_dir(), rel);
    return buf;
}

/* Require the corpus: fail under CI, skip elsewhere. Call at the top of a test. */
#define WG_REQUIRE_CORPUS()                                                          \
    do {                                                                             \
        struct stat wg_st_;                                                          \
        char wg_idx_[4096];                                                          \
        snprintf(wg_idx_, sizeof wg_idx_, "%s/index.json", wg_test_conformance_dir()); \
        if (stat(wg_idx_, &wg_st_) != 0) {                                           \
            const char *ci_ = getenv("CI");                                          \
            if (ci_ && strcmp(ci_, "true") == 0)                                     \
                cr_assert_fail("conformance corpus missing at %s (CI=true)",          \
                               wg_test_conformance_dir());                           \
            cr_skip_test("conformance corpus missing at %s", wg_test_conformance_dir()); \
        }                                                                            \
    } while (0)

/* Path of the built waggle binary. */
#define WG_TEST_WAGGLE_BIN WG_BINARY_DIR "/tools/waggle"

#endif
