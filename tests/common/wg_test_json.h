/* wg_test_json — hostile edits of a JSON document, for the suites that feed
 * untrusted JSON to the engine (tokenizer.json, config.json, batch job
 * lines): every value replaced by each of a list of variants, then removed. */
#ifndef WG_TEST_JSON_H
#define WG_TEST_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The usual hostile values: 0, -1, 1e9, 2.5, "", a 300-byte string, null,
 * true, [], {} (k = 0..WG_TJ_HOSTILE_N-1; a new reference). */
#define WG_TJ_HOSTILE_N 10
static inline json_t *wg_test_json_hostile(int k) {
    char big[301];
    switch (k) {
    case 0: return json_integer(0);
    case 1: return json_integer(-1);
    case 2: return json_integer(1000000000);
    case 3: return json_real(2.5);
    case 4: return json_string("");
    case 5:
        memset(big, 'x', 300);
        big[300] = 0;
        return json_string(big);
    case 6: return json_null();
    case 7: return json_true();
    case 8: return json_array();
    default: return json_object();
    }
}

/* The k-th replacement value (a new reference). */
typedef json_t *(*wg_tj_variant_fn)(int k);
/* Called after each edit: k < n_var replaced by variant k, k == n_var removed. */
typedef void (*wg_tj_visit_fn)(json_t *root, const char *path, int k, void *arg);

/* Every value under `node` of document `root` (object members and array
 * items, at any depth; a value's children are edited before the value
 * itself) that `want` accepts (NULL: every value) is set to each of the n_var
 * variants, then removed, with visit() after each edit, and put back. `path`
 * names node ("" for the root); visit gets the edited value's path, such as
 * "body.stop[1]". Members are taken from a snapshot of the keys, so visit
 * may set other members of root. */
static void wg_test_json_mutate(json_t *root, json_t *node, const char *path, bool (*want)(const json_t *v),
                                wg_tj_variant_fn variant, int n_var, wg_tj_visit_fn visit, void *arg) {
    char sub[1024];
    if (json_is_object(node)) {
        char keys[64][96];
        size_t nk = 0;
        const char *k0;
        json_t *v0;
        json_object_foreach(node, k0, v0) {
            if (nk < 64) snprintf(keys[nk++], sizeof keys[0], "%s", k0);
        }
        for (size_t i = 0; i < nk; i++) {
            json_t *keep = json_incref(json_object_get(node, keys[i]));
            if (snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", keys[i]) >= (int)sizeof sub)
                sub[sizeof sub - 2] = '~';
            wg_test_json_mutate(root, keep, sub, want, variant, n_var, visit, arg);
            if (!want || want(keep)) {
                for (int k = 0; k < n_var; k++) {
                    json_object_set_new(node, keys[i], variant(k));
                    visit(root, sub, k, arg);
                }
                json_object_del(node, keys[i]);
                visit(root, sub, n_var, arg);
            }
            json_object_set_new(node, keys[i], keep);
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *keep = json_incref(json_array_get(node, i));
            if (snprintf(sub, sizeof sub, "%s[%zu]", path, i) >= (int)sizeof sub) sub[sizeof sub - 2] = '~';
            wg_test_json_mutate(root, keep, sub, want, variant, n_var, visit, arg);
            if (!want || want(keep)) {
                for (int k = 0; k < n_var; k++) {
                    json_array_set_new(node, i, variant(k));
                    visit(root, sub, k, arg);
                }
                json_array_remove(node, i);
                visit(root, sub, n_var, arg);
                json_array_insert_new(node, i, json_incref(keep));
            }
            json_array_set_new(node, i, keep);
        }
    }
}

#endif
