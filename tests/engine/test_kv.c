/* Paged KV cache: block accounting, free-list restoration, truncation,
 * all-or-nothing reservation and per-position addressing. */
#include <criterion/criterion.h>
#include <string.h>

#include "engine/model/wg_kv.h"

/* 2 layers, 8 key floats, 4 value floats, 4-token blocks, 10 blocks. */
static wg_kv_t *s_kv(void) {
    size_t block = 2 * 4 * (8 + 4) * sizeof(float);
    wg_kv_t *kv = wg_kv_new(2, 8, 4, 4, 10 * block);
    cr_assert(kv);
    cr_assert_eq(wg_kv_n_blocks(kv), 10);
    cr_assert_eq(wg_kv_block_bytes(kv), block);
    return kv;
}

Test(kv, free_list_returns_to_start_after_sequences_are_freed) {
    wg_kv_t *kv = s_kv();
    int32_t a, b, c;
    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 1), 0);
    float *first = wg_kv_k(kv, 0, a, 0);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);

    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_seq_new(kv, &b), 0);
    cr_assert_eq(wg_kv_seq_new(kv, &c), 0);
    cr_assert_neq(a, b);
    cr_assert_eq(wg_kv_reserve(kv, a, 5), 0); /* 2 blocks */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 8);
    cr_assert_eq(wg_kv_reserve(kv, b, 16), 0); /* 4 blocks */
    cr_assert_eq(wg_kv_reserve(kv, c, 1), 0);  /* 1 block */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 3);
    cr_assert_eq(wg_kv_reserve(kv, a, 8), 0);  /* still 2 blocks */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 3);
    wg_kv_seq_free(kv, c);
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    cr_assert_eq(wg_kv_seq_len(kv, a), -1, "freed sequence is unknown");
    /* LIFO freeing restored the initial stack: the first block handed out is the same. */
    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 1), 0);
    cr_assert_eq(wg_kv_k(kv, 0, a, 0), first);
    wg_kv_free(&kv);
    cr_assert_null(kv);
}

Test(kv, reservation_is_all_or_nothing_when_full) {
    wg_kv_t *kv = s_kv();
    int32_t a, b;
    wg_kv_seq_new(kv, &a);
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_reserve(kv, a, 32), 0); /* 8 blocks */
    cr_assert_eq(wg_kv_reserve(kv, b, 12), WG_ERR_FULL); /* needs 3, 2 free */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 2);
    cr_assert_eq(wg_kv_blocks_needed(kv, b, 12), 3);
    cr_assert_eq(wg_kv_reserve(kv, b, 8), 0);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 0);
    cr_assert_eq(wg_kv_seq_set_len(kv, b, 9), WG_ERR_RANGE, "length beyond reserved capacity");
    wg_kv_free(&kv);
}

Test(kv, truncate_frees_whole_blocks_only) {
    wg_kv_t *kv = s_kv();
    int32_t a;
    wg_kv_seq_new(kv, &a);
    cr_assert_eq(wg_kv_reserve(kv, a, 10), 0); /* 3 blocks */
    cr_assert_eq(wg_kv_seq_set_len(kv, a, 10), 0);
    cr_assert_eq(wg_kv_truncate(kv, a, 5), 0); /* keeps 2 blocks */
    cr_assert_eq(wg_kv_seq_len(kv, a), 5);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 8);
    cr_assert_eq(wg_kv_truncate(kv, a, 0), 0);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    wg_kv_free(&kv);
}

Test(kv, positions_address_distinct_slots_per_layer_and_sequence) {
    wg_kv_t *kv = s_kv();
    int32_t a, b;
    wg_kv_seq_new(kv, &a);
    wg_kv_seq_new(kv, &b);
    wg_kv_reserve(kv, a, 9);
    wg_kv_reserve(kv, b, 9);
    /* Write a distinct value in every slot, then read all back. */
    for (int s = 0; s < 2; s++)
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < 9; p++) {
                int32_t q = s ? b : a;
                for (int i = 0; i < 8; i++) wg_kv_k(kv, l, q, p)[i] = (float)(s * 1000 + l * 100 + p * 10 + i);
                for (int i = 0; i < 4; i++) wg_kv_v(kv, l, q, p)[i] = -(float)(s * 1000 + l * 100 + p * 10 + i);
            }
    for (int s = 0; s < 2; s++)
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < 9; p++) {
                int32_t q = s ? b : a;
                for (int i = 0; i < 8; i++)
                    cr_assert_eq(wg_kv_k(kv, l, q, p)[i], (float)(s * 1000 + l * 100 + p * 10 + i));
                for (int i = 0; i < 4; i++)
                    cr_assert_eq(wg_kv_v(kv, l, q, p)[i], -(float)(s * 1000 + l * 100 + p * 10 + i));
            }
    wg_kv_free(&kv);
}

Test(kv, bad_shape_is_an_error_not_a_crash) {
    cr_assert_null(wg_kv_new(0, 8, 8, 16, 1 << 20));
    cr_assert_null(wg_kv_new(2, -1, 8, 16, 1 << 20));
}
