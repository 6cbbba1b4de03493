/* test_api.c - versions, statuses, config, create/destroy, the param table. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static void version_matches_header(void **s)
{
    (void)s;
    assert_int_equal(mha_version(), MHA_VERSION_NUMBER);
    assert_string_equal(mha_version_string(), MHA_VERSION_STRING);
    assert_int_equal(MHA_VERSION_NUMBER,
                     MHA_VERSION_MAJOR * 10000 + MHA_VERSION_MINOR * 100 + MHA_VERSION_PATCH);
}

static void strerror_total(void **s)
{
    (void)s;
#define CHECK_STATUS(name, value, msg)                  \
    assert_int_equal(name, value);                      \
    assert_string_equal(mha_strerror(value), msg);
    MHA_STATUS_LIST(CHECK_STATUS)
#undef CHECK_STATUS
#define ONE(name, value, msg) +1
    const int n_status = 0 MHA_STATUS_LIST(ONE); /* values are 0..n-1, no gaps */
#undef ONE
    for (int i = 0; i < n_status; i++)
        assert_string_not_equal(mha_strerror(i), "unknown status");
    const int odd[] = {-1, n_status, 1000, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        assert_non_null(mha_strerror(odd[i]));
        assert_string_equal(mha_strerror(odd[i]), "unknown status");
    }
    assert_int_equal(MHA_OK, 0);
}

static void config_defaults(void **s)
{
    (void)s;
    mha_config c;
    memset(&c, 0xAB, sizeof c);
    mha_config_init(&c);
    assert_int_equal(c.struct_size, MHA_STRUCT_SIZE(mha_config, n_threads));
    assert_int_equal(c.d_model, 0);
    assert_int_equal(c.n_kv_heads, 0);
    assert_int_equal(c.activation, MHA_ACT_RELU);
    assert_int_equal(c.norm_first, 0);
    assert_int_equal(c.bias, 1);
    assert_true(c.ln_eps == 1e-5f);
    assert_int_equal(c.n_threads, 0);
    mha_attn_args a;
    memset(&a, 0xAB, sizeof a);
    mha_attn_args_init(&a);
    assert_int_equal(a.struct_size, MHA_STRUCT_SIZE(mha_attn_args, attn_weights));
    assert_null(a.query);
    assert_null(a.attn_weights);
    assert_int_equal(a.causal, 0);
}

static void destroy_null(void **s)
{
    (void)s;
    mha_destroy(NULL);
}

static void create_and_counts(void **s)
{
    (void)s;
    mha_config c = make_cfg(12, 6, 2, 5, 40);
    mha_ctx *ctx = NULL;
    assert_int_equal(mha_create(&c, &ctx), MHA_OK);
    assert_non_null(ctx);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_WQ), 6 * 5 * 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_WK), 2 * 5 * 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_WV), 2 * 5 * 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_WO), 12 * 30);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_BQ), 30);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_BK), 10);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_BO), 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_W1), 40 * 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_B1), 40);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_W2), 12 * 40);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_W3), 0);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_LN2_BIAS), 12);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_COUNT), 0);
    assert_int_equal(mha_param_count(NULL, MHA_PARAM_WQ), 0);
    mha_destroy(ctx);

    c = make_cfg(8, 2, 0, 0, 0);
    c.bias = 0;
    c.activation = MHA_ACT_SWIGLU;
    assert_int_equal(mha_create(&c, &ctx), MHA_OK);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_W1), 32 * 8);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_W3), 32 * 8);
    for (int p = MHA_PARAM_BQ; p <= MHA_PARAM_BO; p++)
        assert_int_equal(mha_param_count(ctx, (mha_param)p), 0);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_B1), 0);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_B2), 0);
    assert_int_equal(mha_param_count(ctx, MHA_PARAM_LN1_WEIGHT), 8);
    mha_destroy(ctx);
}

static void set_get_roundtrip(void **s)
{
    (void)s;
    mha_config c = make_cfg(10, 2, 0, 0, 0);
    c.activation = MHA_ACT_SWIGLU;
    mha_ctx *ctx;
    assert_int_equal(mha_create(&c, &ctx), MHA_OK);
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(ctx, (mha_param)p);
        float *w = rand_floats(n, 1.0), *back = calloc(n, sizeof(float));
        assert_int_equal(mha_get_param(ctx, (mha_param)p, back, n), MHA_ERR_PARAM_NOT_SET);
        assert_int_equal(mha_set_param(ctx, (mha_param)p, w, n), MHA_OK);
        assert_int_equal(mha_get_param(ctx, (mha_param)p, back, n), MHA_OK);
        assert_memory_equal(w, back, n * sizeof(float));
        free(w);
        free(back);
    }
    mha_destroy(ctx);
}

static void larger_struct_size_accepted(void **s)
{
    (void)s; /* a caller built against a newer header passes a larger struct */
    struct {
        mha_config c;
        size_t future_field;
    } big;
    memset(&big, 0, sizeof big);
    mha_config_init(&big.c);
    big.c.struct_size = sizeof big;
    big.c.d_model = 8;
    big.c.n_heads = 2;
    mha_ctx *ctx;
    assert_int_equal(mha_create(&big.c, &ctx), MHA_OK);
    mha_destroy(ctx);
}

static void many_threads_config(void **s)
{
    (void)s;
    mha_config c = make_cfg(16, 2, 0, 0, 0);
    c.n_threads = 0; /* all cores */
    fixture f;
    fixture_make(&f, &c, 3);
    run_attn_case(&f, &(attn_case){.batch = 2, .seq_q = 40, .layer = 1});
    fixture_free(&f);
    c.n_threads = 5; /* more threads than cores is allowed */
    fixture_make(&f, &c, 4);
    run_attn_case(&f, &(attn_case){.batch = 3, .seq_q = 70, .causal = 1});
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_matches_header),
        cmocka_unit_test(strerror_total),
        cmocka_unit_test(config_defaults),
        cmocka_unit_test(destroy_null),
        cmocka_unit_test(create_and_counts),
        cmocka_unit_test(set_get_roundtrip),
        cmocka_unit_test(larger_struct_size_accepted),
        cmocka_unit_test(many_threads_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
