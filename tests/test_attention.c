/* test_attention.c - mha_attention_forward against the naive reference. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

static void check(mha_config cfg, attn_case c, uint64_t seed)
{
    fixture f;
    fixture_make(&f, &cfg, seed);
    run_attn_case(&f, &c);
    fixture_free(&f);
}

static void self_basic(void **s) { (void)s; check(make_cfg(16, 4, 0, 0, 0), (attn_case){.batch = 1, .seq_q = 5}, 1); }
static void odd_d_model(void **s) { (void)s; check(make_cfg(13, 3, 0, 5, 0), (attn_case){.batch = 2, .seq_q = 7}, 2); }
static void seq_one(void **s) { (void)s; check(make_cfg(12, 2, 0, 0, 0), (attn_case){.batch = 3, .seq_q = 1}, 3); }
static void cross_longer_kv(void **s) { (void)s; check(make_cfg(20, 4, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 5, .seq_kv = 9, .cross = 1}, 4); }
static void cross_shorter_kv(void **s) { (void)s; check(make_cfg(20, 4, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 9, .seq_kv = 3, .cross = 1}, 5); }
static void kv_lengths_self(void **s)
{
    (void)s;
    static const int32_t len[] = {5, 2, 0};
    check(make_cfg(18, 3, 0, 0, 0), (attn_case){.batch = 3, .seq_q = 5, .kv_len = len, .want_weights = 1}, 6);
}
static void kv_lengths_cross(void **s)
{
    (void)s;
    static const int32_t len[] = {1, 6};
    check(make_cfg(15, 5, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 4, .seq_kv = 6, .cross = 1, .kv_len = len}, 7);
}
static void causal_self(void **s) { (void)s; check(make_cfg(16, 2, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 9, .causal = 1}, 8); }
static void causal_cross_bottom_right(void **s) { (void)s; check(make_cfg(16, 2, 0, 0, 0), (attn_case){.batch = 1, .seq_q = 4, .seq_kv = 10, .cross = 1, .causal = 1, .want_weights = 1}, 9); }
static void causal_fully_masked_rows(void **s)
{
    (void)s; /* seq_kv < seq_q: the first rows see no key and must give b_o */
    check(make_cfg(16, 2, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 7, .seq_kv = 3, .cross = 1, .causal = 1, .want_weights = 1}, 10);
}
static void bias_with_neg_inf(void **s) { (void)s; check(make_cfg(16, 4, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 6, .use_bias = 1, .want_weights = 1}, 11); }
static void gqa(void **s) { (void)s; check(make_cfg(24, 6, 2, 0, 0), (attn_case){.batch = 2, .seq_q = 5, .want_weights = 1}, 12); }
static void mqa(void **s) { (void)s; check(make_cfg(24, 4, 1, 0, 0), (attn_case){.batch = 2, .seq_q = 5, .seq_kv = 8, .cross = 1, .causal = 1}, 13); }
static void d_head_independent(void **s) { (void)s; check(make_cfg(10, 3, 0, 7, 0), (attn_case){.batch = 2, .seq_q = 4}, 14); }
static void weights_output(void **s) { (void)s; check(make_cfg(16, 4, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 6, .want_weights = 1}, 15); }
static void no_bias(void **s)
{
    (void)s;
    mha_config c = make_cfg(16, 4, 0, 0, 0);
    c.bias = 0;
    check(c, (attn_case){.batch = 2, .seq_q = 6, .causal = 1}, 16);
}
static void cross_seq_kv_zero(void **s)
{
    (void)s; /* every row masked: out = b_o, weights have no entries */
    check(make_cfg(16, 4, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 3, .seq_kv = 0, .cross = 1}, 17);
}
static void multi_tile_masks(void **s)
{
    (void)s; /* crosses query and key blocks: online rescaling, block skipping */
    static const int32_t len[] = {600, 170}; /* > the 512 x 512 forward tile */
    check(make_cfg(16, 2, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 600, .causal = 1, .kv_len = len, .use_bias = 1}, 18);
}
static void multi_tile_no_bias(void **s)
{
    (void)s; /* as multi_tile_masks without the bias */
    static const int32_t len[] = {600, 530};
    check(make_cfg(16, 2, 0, 0, 0), (attn_case){.batch = 2, .seq_q = 600, .causal = 1, .kv_len = len}, 22);
}
static void multi_tile_cross(void **s)
{
    (void)s;
    static const int32_t len[] = {601, 0, 257};
    check(make_cfg(8, 2, 1, 0, 0), (attn_case){.batch = 3, .seq_q = 70, .seq_kv = 601, .cross = 1, .kv_len = len, .causal = 1}, 19);
}
static void multi_tile_weights(void **s)
{
    (void)s;
    static const int32_t len[] = {290};
    check(make_cfg(12, 3, 0, 0, 0), (attn_case){.batch = 1, .seq_q = 290, .kv_len = len, .causal = 1, .want_weights = 1, .use_bias = 1}, 20);
}
static void gqa_all_masks(void **s)
{
    (void)s;
    static const int32_t len[] = {5, 9};
    check(make_cfg(21, 6, 3, 4, 0), (attn_case){.batch = 2, .seq_q = 7, .seq_kv = 9, .cross = 1, .causal = 1, .kv_len = len, .use_bias = 1, .want_weights = 1}, 21);
}

static void empty_calls_write_nothing(void **s)
{
    (void)s;
    fixture f;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture_make(&f, &cfg, 22);
    float out[8] = {42}, q[8] = {0};
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.query = q;
    a.out = out;
    a.batch = 0;
    a.seq_q = 1;
    assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
    a.batch = 1;
    a.seq_q = 0;
    assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
    a.query = NULL; /* nothing is read in an empty call */
    a.out = NULL;
    assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
    assert_true(out[0] == 42.0f);
    fixture_free(&f);
}

static void large_scores_stable(void **s)
{
    (void)s; /* inputs x30: scores thousands apart, softmax must not overflow */
    mha_config cfg = make_cfg(16, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 23);
    size_t n = 2 * 5 * 16;
    float *q = rand_floats(n, 30.0), *out = malloc(n * sizeof(float));
    double *qd = to_double(q, n), *ref = malloc(n * sizeof(double));
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 2;
    a.seq_q = 5;
    a.query = q;
    a.out = out;
    assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
    naive_attention(&f.nm, 2, 5, 5, qd, NULL, NULL, NULL, NULL, 0, ref, NULL);
    /* outputs are ~30x larger, so is the float rounding */
    assert_close(out, ref, n, 30 * TOL);
    free(q);
    free(out);
    free(qd);
    free(ref);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(self_basic),
        cmocka_unit_test(odd_d_model),
        cmocka_unit_test(seq_one),
        cmocka_unit_test(cross_longer_kv),
        cmocka_unit_test(cross_shorter_kv),
        cmocka_unit_test(kv_lengths_self),
        cmocka_unit_test(kv_lengths_cross),
        cmocka_unit_test(causal_self),
        cmocka_unit_test(causal_cross_bottom_right),
        cmocka_unit_test(causal_fully_masked_rows),
        cmocka_unit_test(bias_with_neg_inf),
        cmocka_unit_test(gqa),
        cmocka_unit_test(mqa),
        cmocka_unit_test(d_head_independent),
        cmocka_unit_test(weights_output),
        cmocka_unit_test(no_bias),
        cmocka_unit_test(cross_seq_kv_zero),
        cmocka_unit_test(multi_tile_masks),
        cmocka_unit_test(multi_tile_no_bias),
        cmocka_unit_test(multi_tile_cross),
        cmocka_unit_test(multi_tile_weights),
        cmocka_unit_test(gqa_all_masks),
        cmocka_unit_test(empty_calls_write_nothing),
        cmocka_unit_test(large_scores_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
