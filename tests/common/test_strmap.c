#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg_strmap.h"

typedef struct item {
    int value;           /* payload, before the node so the container offset is not 0 */
    char key[24];        /* owned key */
    wg_strmap_node node; /* in the map */
} item;

static item *s_item(wg_strmap_node *n) { return n ? WG_CONTAINER_OF(n, item, node) : NULL; }

static item *s_add(wg_strmap *m, item *it, const char *key, int value) {
    snprintf(it->key, sizeof it->key, "%s", key);
    it->value = value;
    it->node.key = it->key;
    wg_strmap_add(m, &it->node);
    return it;
}

Test(strmap, finds_added_entries_by_key_and_not_absent_ones) {
    wg_strmap m;
    cr_assert_eq(wg_strmap_init(&m, 4), WG_OK);
    item a, b;
    s_add(&m, &a, "job-a", 1);
    s_add(&m, &b, "job-b", 2);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(s_item(wg_strmap_find(&m, "job-a")), &a);
    cr_assert_eq(s_item(wg_strmap_find(&m, "job-b"))->value, 2);
    cr_assert_null(wg_strmap_find(&m, "job-c"));
    cr_assert_null(wg_strmap_find(&m, ""));
    cr_assert_null(wg_strmap_find(&m, "job-"));
    wg_strmap_clear(&m);
    cr_assert_null(m.buckets);
    cr_assert_null(wg_strmap_find(&m, "job-a"), "a cleared map finds nothing");
}

Test(strmap, init_rounds_buckets_up_to_a_power_of_two) {
    wg_strmap m;
    cr_assert_eq(wg_strmap_init(&m, 100), WG_OK);
    cr_assert_eq(m.nbuckets, 128);
    wg_strmap_clear(&m);
    cr_assert_eq(wg_strmap_init(&m, 0), WG_OK);
    cr_assert_eq(m.nbuckets, 1);
    wg_strmap_clear(&m);
}

Test(strmap, grows_at_load_factor_one_and_keeps_every_entry) {
    enum { N = 5000 };
    wg_strmap m;
    cr_assert_eq(wg_strmap_init(&m, 8), WG_OK);
    item *items = calloc(N, sizeof *items);
    char k[24];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "%016x", i * 2654435761u);
        s_add(&m, &items[i], k, i);
        cr_assert_geq(m.nbuckets, m.n, "load factor above 1 after %d adds", i + 1);
    }
    cr_assert_eq(m.n, N);
    cr_assert_eq(m.nbuckets, 8192);
    for (int i = 0; i < N; i++)
        cr_assert_eq(s_item(wg_strmap_find(&m, items[i].key)), &items[i], "entry %d lost in a grow", i);
    wg_strmap_clear(&m);
    free(items);
}

Test(strmap, del_removes_that_entry_only) {
    wg_strmap m;
    cr_assert_eq(wg_strmap_init(&m, 1), WG_OK); /* one bucket: chains, then grows twice */
    item it[3];
    s_add(&m, &it[0], "x", 0);
    s_add(&m, &it[1], "y", 1);
    s_add(&m, &it[2], "x", 2); /* a duplicate key: the newest is found first */
    cr_assert_eq(s_item(wg_strmap_find(&m, "x")), &it[2]);
    cr_assert(wg_strmap_del(&m, &it[2].node));
    cr_assert_eq(s_item(wg_strmap_find(&m, "x")), &it[0], "deleting one entry must not hide its twin");
    cr_assert_not(wg_strmap_del(&m, &it[2].node), "deleting twice reports absent");
    cr_assert(wg_strmap_del(&m, &it[1].node));
    cr_assert_null(wg_strmap_find(&m, "y"));
    cr_assert_eq(m.n, 1);
    wg_strmap_clear(&m);
}

Test(strmap, walk_visits_each_entry_once_and_allows_deleting_the_current_one) {
    enum { N = 300 };
    wg_strmap m;
    cr_assert_eq(wg_strmap_init(&m, 16), WG_OK);
    item *items = calloc(N, sizeof *items);
    char k[24];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "k%d", i);
        s_add(&m, &items[i], k, i);
    }
    int seen[N] = {0};
    wg_strmap_iter it;
    wg_strmap_iter_init(&m, &it);
    for (wg_strmap_node *n; (n = wg_strmap_iter_next(&m, &it));) {
        item *e = s_item(n);
        seen[e->value]++;
        if (e->value % 2) {
            cr_assert(wg_strmap_del(&m, n));
            memset(e, 0xa5, sizeof *e); /* as if freed */
        }
    }
    for (int i = 0; i < N; i++) cr_assert_eq(seen[i], 1, "entry %d visited %d times", i, seen[i]);
    cr_assert_eq(m.n, N / 2);
    for (int i = 0; i < N; i += 2) cr_assert_eq(s_item(wg_strmap_find(&m, items[i].key)), &items[i]);
    wg_strmap_clear(&m);
    free(items);
}

Test(strmap, hash_is_fnv1a) {
    cr_assert_eq(wg_strmap_hash(""), 2166136261u);
    cr_assert_eq(wg_strmap_hash("a"), 0xe40c292cu); /* published FNV-1a 32-bit test vector */
}
