/* Paged KV cache: block accounting, free-list restoration, truncation,
 * all-or-nothing reservation and per-position addressing. */
#include <criterion/criterion.h>
#include <string.h>

#include "engine/model/wg_kv.h"
#include "kernels/cpu/wg_cpu_impl.h"
#include "kernels/quant.h"
#include "kernels/ref/wg_ref_kernels.h"

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

Test(kv, f16_rows_hold_the_rounded_values_in_half_the_bytes) {
    /* Same shape as s_kv(): 2 layers, 8 key and 4 value elements, 4-token blocks. */
    const size_t block16 = 2 * 4 * (8 + 4) * sizeof(wg_half);
    wg_kv_t *kv = wg_kv_new_typed(2, 8, 4, 4, 10 * block16, WG_KV_F16);
    cr_assert(kv, "%s", wg_errmsg());
    cr_assert_eq(wg_kv_type(kv), WG_KV_F16);
    cr_assert_eq(wg_kv_block_bytes(kv), block16, "F16 blocks are half the F32 size");
    cr_assert_eq(wg_kv_n_blocks(kv), 10);
    int32_t a;
    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 6), 0);
    wg_kv_prefault(kv);
    /* Values that round (and one beyond the f16 range); a partial value row
     * (3 of 4) leaves the last element alone. */
    const float k[8] = {1.0f, -0.1f, 3.14159265f, 65504.0f, 1e-8f, -2.5e-5f, 70000.0f, 0.33333334f};
    const float v[3] = {-7.0f / 3.0f, 1e4f + 0.3f, 6.1e-5f};
    for (int p = 0; p < 6; p++) {
        wg_kv_put_k(kv, 1, a, p, k, 8);
        wg_kv_put_v(kv, 1, a, p, v, 3);
    }
    for (int p = 0; p < 6; p++) {
        const wg_half *kh = wg_kv_k_row(kv, 1, a, p), *vh = wg_kv_v_row(kv, 1, a, p);
        for (int i = 0; i < 8; i++)
            cr_assert_eq(kh[i], wg_fp32_to_fp16(k[i]), "pos %d key %d: %#x vs %#x", p, i, kh[i], wg_fp32_to_fp16(k[i]));
        for (int i = 0; i < 3; i++) cr_assert_eq(vh[i], wg_fp32_to_fp16(v[i]), "pos %d value %d", p, i);
    }
    /* Rows of neighbouring positions follow each other inside a block (wg_kv.h). */
    cr_assert_eq((const char *)wg_kv_k_row(kv, 1, a, 1) - (const char *)wg_kv_k_row(kv, 1, a, 0), 8 * sizeof(wg_half));
    cr_assert_eq((const char *)wg_kv_v_row(kv, 1, a, 3) - (const char *)wg_kv_v_row(kv, 1, a, 2), 4 * sizeof(wg_half));
    wg_kv_free(&kv);
}

Test(kv, f32_rows_are_the_float_rows) {
    wg_kv_t *kv = s_kv();
    cr_assert_eq(wg_kv_type(kv), WG_KV_F32);
    int32_t a;
    wg_kv_seq_new(kv, &a);
    wg_kv_reserve(kv, a, 3);
    const float k[8] = {1, 2, 3, 4, 5, 6, 7, 8.5f};
    wg_kv_put_k(kv, 0, a, 2, k, 8);
    cr_assert_eq(wg_kv_k_row(kv, 0, a, 2), (const void *)wg_kv_k(kv, 0, a, 2));
    cr_assert(memcmp(wg_kv_k(kv, 0, a, 2), k, sizeof k) == 0);
    wg_kv_free(&kv);
}

Test(kv, type_names_parse_and_bad_names_are_errors) {
    wg_kv_type_t t = WG_KV_F16;
    cr_assert_eq(wg_kv_type_parse("f32", &t), WG_OK);
    cr_assert_eq(t, WG_KV_F32);
    cr_assert_eq(wg_kv_type_parse("f16", &t), WG_OK);
    cr_assert_eq(t, WG_KV_F16);
    cr_assert_str_eq(wg_kv_type_name(WG_KV_F16), "f16");
    cr_assert_str_eq(wg_kv_type_name(WG_KV_F32), "f32");
    cr_assert_eq(wg_kv_type_parse("q8_0", &t), WG_OK);
    cr_assert_eq(t, WG_KV_Q8_0);
    cr_assert_str_eq(wg_kv_type_name(WG_KV_Q8_0), "q8_0");
    const char *bad[] = {"bf16", "F16", "", "f16 ", "Q8_0", "q8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(wg_kv_type_parse(bad[i], &t), WG_ERR_INVAL, "'%s' accepted", bad[i]);
        cr_assert(strstr(wg_errmsg(), "expected f32, f16 or q8_0"), "message: %s", wg_errmsg());
    }
    cr_assert_eq(wg_kv_type_parse(NULL, &t), WG_ERR_INVAL);
    cr_assert_null(wg_kv_new_typed(2, 8, 8, 16, 1 << 20, (wg_kv_type_t)7), "unknown element type");
}

/* Q8_0 rows: 34 bytes per 32 elements, each block the reference quantizer's
 * bytes at every SIMD level; rows whose size is not whole blocks refused. */
Test(kv, q8_0_rows_are_reference_blocks) {
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    cr_assert_eq(wg_kv_row_bytes(WG_KV_Q8_0, 64), 2 * sizeof(wg_block_q8_0));
    cr_assert_eq(wg_kv_row_bytes(WG_KV_F16, 64), 128);
    cr_assert_null(wg_kv_new_typed(2, 48, 64, 4, 1 << 20, WG_KV_Q8_0), "48-element rows are not whole blocks");
    cr_assert(strstr(wg_errmsg(), "q8_0") && strstr(wg_errmsg(), "k_dim=48"), "message: %s", wg_errmsg());
    /* 2 layers, 64 key and 32 value elements, 4-token blocks */
    const size_t block8 = 2 * 4 * (2 + 1) * sizeof(wg_block_q8_0);
    wg_kv_t *kv = wg_kv_new_typed(2, 64, 32, 4, 10 * block8, WG_KV_Q8_0);
    cr_assert(kv, "%s", wg_errmsg());
    cr_assert_eq(wg_kv_block_bytes(kv), block8);
    cr_assert_eq(wg_kv_n_blocks(kv), 10);
    int32_t a;
    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 6), 0);
    float k[64], v[32];
    int n_levels = 0;
    for (int li = 0; li < 3; li++) {
        if (!wg_cpu_force_simd(levels[li])) continue;
        n_levels++;
        for (int p = 0; p < 6; p++) {
            for (int i = 0; i < 64; i++)
                k[i] = (float)((i * 37 + p * 11 + li) % 23 - 11) * 0.173f + (i == 5 ? 40.0f : 0.0f);
            for (int i = 0; i < 32; i++) v[i] = (float)((i * 13 + p) % 17 - 8) * -0.01f;
            wg_kv_put_k(kv, 1, a, p, k, 64);
            wg_kv_put_v(kv, 1, a, p, v, 32);
            wg_block_q8_0 rk[2], rv[1];
            wg_k_quant_q8_0_ref(k, rk, 64);
            wg_k_quant_q8_0_ref(v, rv, 32);
            cr_assert(memcmp(wg_kv_k_row(kv, 1, a, p), rk, sizeof rk) == 0, "%s: pos %d key blocks", levels[li], p);
            cr_assert(memcmp(wg_kv_v_row(kv, 1, a, p), rv, sizeof rv) == 0, "%s: pos %d value block", levels[li], p);
        }
    }
    wg_cpu_force_simd(NULL);
    cr_assert_geq(n_levels, 1);
    cr_assert_eq((const char *)wg_kv_k_row(kv, 1, a, 1) - (const char *)wg_kv_k_row(kv, 1, a, 0),
                 2 * sizeof(wg_block_q8_0));
    wg_kv_free(&kv);
}

/* Sliding-window release: whole blocks below a position go back to the free
 * list (idempotent, never a block holding that position), the rest of the
 * sequence keeps its rows, truncating back into released positions is
 * refused with the reason, and freeing the sequence returns every block it
 * still holds. */
Test(kv, release_before_frees_whole_blocks_below_a_position) {
    wg_kv_t *kv = s_kv();
    int32_t a;
    cr_assert_eq(wg_kv_seq_new(kv, &a), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 22), 0); /* 6 blocks of 4 */
    for (int p = 0; p < 22; p++) wg_kv_k(kv, 1, a, p)[0] = (float)p;
    cr_assert_eq(wg_kv_seq_set_len(kv, a, 22), 0);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 4);
    cr_assert_eq(wg_kv_release_before(kv, a, 3), 0, "block 0 still holds position 3");
    cr_assert_eq(wg_kv_release_before(kv, a, 9), 2); /* blocks 0, 1: positions 0..7 */
    cr_assert_eq(wg_kv_release_before(kv, a, 9), 0, "idempotent");
    cr_assert_eq(wg_kv_seq_first_pos(kv, a), 8);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 6);
    const int32_t *t;
    int32_t nb;
    t = wg_kv_seq_blocks(kv, a, &nb);
    cr_assert_eq(nb, 6);
    cr_assert(t[0] == -1 && t[1] == -1 && t[2] >= 0);
    for (int p = 8; p < 22; p++) cr_assert_eq(wg_kv_k(kv, 1, a, p)[0], (float)p, "position %d moved", p);
    cr_assert_eq(wg_kv_truncate(kv, a, 6), WG_ERR_UNSUPPORTED);
    cr_assert(strstr(wg_errmsg(), "released"), "message: %s", wg_errmsg());
    cr_assert_eq(wg_kv_truncate(kv, a, 13), 0); /* blocks 4, 5 back */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 8);
    cr_assert_eq(wg_kv_reserve(kv, a, 30), 0); /* grows at the end again */
    cr_assert_eq(wg_kv_n_free_blocks(kv), 4);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10, "blocks leaked or freed twice");
    wg_kv_free(&kv);
}

/* ---- prefix cache ---- */

/* s_kv with the prefix cache on. */
static wg_kv_t *s_kv_pc(void) {
    wg_kv_t *kv = s_kv();
    cr_assert_eq(wg_kv_enable_prefix_cache(kv), 0);
    return kv;
}

/* Sequence `seq` of the s_kv cache (4-token blocks) holding toks[0..n), each
 * position's key row filled with its token id, committed. */
static void s_fill_commit(wg_kv_t *kv, int32_t seq, const int32_t *toks, int32_t n) {
    const int32_t have = wg_kv_seq_len(kv, seq);
    cr_assert_eq(wg_kv_reserve(kv, seq, n), 0);
    for (int32_t p = have; p < n; p++)
        for (int l = 0; l < 2; l++) wg_kv_k(kv, l, seq, p)[0] = (float)toks[p];
    cr_assert_eq(wg_kv_seq_set_len(kv, seq, n), 0);
    wg_kv_prefix_commit(kv, seq, toks, n);
}

Test(kv, prefix_blocks_are_shared_exactly_and_idle_ones_count_as_free) {
    wg_kv_t *kv = s_kv_pc();
    const int32_t ta[12] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    int32_t a, b, c;
    wg_kv_seq_new(kv, &a);
    s_fill_commit(kv, a, ta, 11); /* blocks 0, 1 full and registered; block 2 partial */
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, ta, 12), 8, "only full registered blocks match");
    cr_assert_eq(wg_kv_seq_len(kv, b), 8);
    for (int p = 0; p < 8; p++) cr_assert_eq(wg_kv_k(kv, 1, b, p), wg_kv_k(kv, 1, a, p), "position %d not shared", p);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 7);
    /* One token different in the second block: only the first block matches. */
    int32_t tc[12];
    memcpy(tc, ta, sizeof tc);
    tc[6] = 99;
    wg_kv_seq_new(kv, &c);
    cr_assert_eq(wg_kv_prefix_match(kv, c, tc, 12), 4);
    /* The same tokens at a different start do not match (identity is the whole prefix). */
    wg_kv_seq_free(kv, c);
    wg_kv_seq_new(kv, &c);
    cr_assert_eq(wg_kv_prefix_match(kv, c, ta + 4, 8), 0);
    wg_kv_seq_free(kv, c);
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10, "idle cached blocks count as free");
    cr_assert_eq(wg_kv_n_cached_blocks(kv), 2);
    /* Still found after every holder left. */
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, ta, 12), 8);
    cr_assert_eq(wg_kv_n_cached_blocks(kv), 0);
    cr_assert_eq(wg_kv_k(kv, 0, b, 5)[0], 10.0f);
    wg_kv_seq_free(kv, b);
    /* Filling the whole cache takes the cached blocks back; nothing matches after. */
    wg_kv_seq_new(kv, &c);
    cr_assert_eq(wg_kv_reserve(kv, c, 40), 0);
    cr_assert_eq(wg_kv_n_evicted_blocks(kv), 2);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 0);
    wg_kv_seq_free(kv, c);
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, ta, 12), 0);
    wg_kv_seq_free(kv, b);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    wg_kv_free(&kv);
}

/* A block whose parent was taken back and reused for the same tokens is not
 * the child of the new parent: identities name the parent's generation. */
Test(kv, a_child_of_a_reused_parent_does_not_match) {
    wg_kv_t *kv = s_kv_pc();
    const int32_t t[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int32_t a, b, fill;
    wg_kv_seq_new(kv, &a);
    s_fill_commit(kv, a, t, 9);
    const int32_t *ta;
    int32_t na;
    ta = wg_kv_seq_blocks(kv, a, &na);
    const int32_t a0 = ta[0], a1 = ta[1];
    /* a lets go of its first block (sliding window) and keeps the second. */
    cr_assert_eq(wg_kv_release_before(kv, a, 4), 1);
    cr_assert_eq(wg_kv_n_cached_blocks(kv), 1);
    /* The cache fills up: the free list first, then the idle first block is taken back. */
    int32_t x;
    wg_kv_seq_new(kv, &x);
    cr_assert_eq(wg_kv_reserve(kv, x, 4 * (wg_kv_n_free_blocks(kv) - 1)), 0);
    cr_assert_eq(wg_kv_n_evicted_blocks(kv), 0);
    wg_kv_seq_new(kv, &fill);
    cr_assert_eq(wg_kv_reserve(kv, fill, 4), 0);
    cr_assert_eq(wg_kv_n_evicted_blocks(kv), 1);
    /* unregistered blocks: straight back to the free list, fill's (a0) on top */
    wg_kv_seq_free(kv, x);
    wg_kv_seq_free(kv, fill);
    /* b computes the same tokens: its first block is new (the old identity is gone),
     * likely in the very slot a0 had; its second must not become a's second. */
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, t, 9), 0);
    s_fill_commit(kv, b, t, 9);
    const int32_t *tb;
    int32_t nb;
    tb = wg_kv_seq_blocks(kv, b, &nb);
    cr_assert_eq(tb[0], a0, "expected the freed slot back (LIFO free list)");
    cr_assert_neq(tb[1], a1, "b's second block was matched to a's under a reused parent");
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    wg_kv_free(&kv);
}

/* Truncating into a shared block gives the truncating sequence its own copy:
 * what it writes next does not reach the other holder. */
Test(kv, truncate_into_a_shared_block_copies_it) {
    wg_kv_t *kv = s_kv_pc();
    const int32_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t a, b;
    wg_kv_seq_new(kv, &a);
    s_fill_commit(kv, a, t, 8);
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, t, 8), 8);
    cr_assert_eq(wg_kv_truncate(kv, b, 6), 0);
    cr_assert_neq(wg_kv_k(kv, 0, b, 4), wg_kv_k(kv, 0, a, 4), "still shared");
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < 6; p++) cr_assert_eq(wg_kv_k(kv, l, b, p)[0], (float)t[p], "copy lost position %d", p);
    cr_assert_eq(wg_kv_reserve(kv, b, 8), 0);
    wg_kv_k(kv, 0, b, 6)[0] = -1.0f;
    cr_assert_eq(wg_kv_k(kv, 0, a, 6)[0], 7.0f, "a's shared block was written through b");
    /* The same truncation of a's own (now unshared) registered block drops its identity. */
    wg_kv_seq_free(kv, b);
    cr_assert_eq(wg_kv_truncate(kv, a, 5), 0);
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, t, 8), 4, "a rewritable block is still findable");
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    wg_kv_free(&kv);
}

Test(kv, prefix_cache_is_refused_for_recurrent_and_device_caches) {
    wg_kv_t *kv = wg_kv_new_recurrent(64, 64 * 4 * 4);
    cr_assert(kv);
    cr_assert_eq(wg_kv_enable_prefix_cache(kv), WG_ERR_UNSUPPORTED);
    wg_kv_free(&kv);
    kv = wg_kv_new_tables(2, 8, 4, 4, 1 << 16);
    cr_assert(kv);
    cr_assert_eq(wg_kv_enable_prefix_cache(kv), WG_ERR_UNSUPPORTED);
    cr_assert(!wg_kv_prefix_cache_on(kv));
    wg_kv_free(&kv);
}

/* A sequence slot used before (its last block had been taken back once)
 * registers its new first block under the same root identity as any other
 * sequence, even when it skipped the match (a prompt shorter than a block). */
Test(kv, a_reused_slot_registers_first_blocks_findably) {
    wg_kv_t *kv = s_kv_pc();
    const int32_t t1[4] = {1, 2, 3, 4}, t2[4] = {7, 7, 8, 8}, t3[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    int32_t x, f, y, a, b;
    wg_kv_seq_new(kv, &x);
    s_fill_commit(kv, x, t1, 4); /* block B registered */
    wg_kv_seq_free(kv, x);       /* B cached */
    wg_kv_seq_new(kv, &f);
    cr_assert_eq(wg_kv_reserve(kv, f, 36), 0); /* the 9 free blocks */
    wg_kv_seq_new(kv, &y);
    cr_assert_eq(wg_kv_reserve(kv, y, 4), 0); /* B taken back: its generation moves on */
    cr_assert_eq(wg_kv_n_evicted_blocks(kv), 1);
    wg_kv_seq_free(kv, f);
    wg_kv_seq_free(kv, y); /* B on top of the free list */
    wg_kv_seq_new(kv, &x);
    s_fill_commit(kv, x, t2, 4); /* in B: the slot's tail now has generation 1 */
    wg_kv_seq_free(kv, x);
    wg_kv_seq_new(kv, &a);
    cr_assert_eq(a, x, "expected the slot back");
    cr_assert_eq(wg_kv_prefix_match(kv, a, t3, 2), 0); /* too short to match anything */
    s_fill_commit(kv, a, t3, 8);
    wg_kv_seq_new(kv, &b);
    cr_assert_eq(wg_kv_prefix_match(kv, b, t3, 8), 8, "a's blocks were registered under a stale root");
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 10);
    wg_kv_free(&kv);
}
