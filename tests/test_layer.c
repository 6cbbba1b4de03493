/* test_layer.c - mha_layer_forward (TransformerEncoderLayer) against the
 * naive reference. */
#include "testutil.h"

static void check(int act, int norm_first, int bias, mha_config cfg, attn_case c, uint64_t seed)
{
    cfg.activation = act;
    cfg.norm_first = norm_first;
    cfg.bias = bias;
    c.layer = 1;
    fixture f;
    fixture_make(&f, &cfg, seed);
    run_attn_case(&f, &c);
    fixture_free(&f);
}

#define BASIC (attn_case){.batch = 2, .seq_q = 5}
static void post_relu(void **s) { (void)s; check(MHA_ACT_RELU, 0, 1, make_cfg(16, 4, 0, 0, 24), BASIC, 1); }
static void pre_relu(void **s) { (void)s; check(MHA_ACT_RELU, 1, 1, make_cfg(16, 4, 0, 0, 24), BASIC, 2); }
static void post_gelu(void **s) { (void)s; check(MHA_ACT_GELU, 0, 1, make_cfg(13, 1, 0, 0, 0), BASIC, 3); }
static void pre_gelu(void **s) { (void)s; check(MHA_ACT_GELU, 1, 1, make_cfg(13, 1, 0, 0, 0), BASIC, 4); }
static void post_gelu_tanh(void **s) { (void)s; check(MHA_ACT_GELU_TANH, 0, 1, make_cfg(18, 3, 0, 0, 20), BASIC, 5); }
static void pre_gelu_tanh(void **s) { (void)s; check(MHA_ACT_GELU_TANH, 1, 1, make_cfg(18, 3, 0, 0, 20), BASIC, 6); }
static void post_swiglu(void **s) { (void)s; check(MHA_ACT_SWIGLU, 0, 1, make_cfg(20, 4, 2, 0, 30), BASIC, 7); }
static void pre_swiglu(void **s) { (void)s; check(MHA_ACT_SWIGLU, 1, 1, make_cfg(20, 4, 2, 0, 30), BASIC, 8); }
static void post_nobias(void **s) { (void)s; check(MHA_ACT_RELU, 0, 0, make_cfg(16, 2, 0, 0, 0), BASIC, 9); }
static void pre_nobias(void **s) { (void)s; check(MHA_ACT_GELU, 1, 0, make_cfg(16, 2, 0, 0, 0), BASIC, 10); }
static void seq_one(void **s) { (void)s; check(MHA_ACT_GELU, 0, 1, make_cfg(12, 3, 0, 0, 0), (attn_case){.batch = 3, .seq_q = 1}, 11); }

static void post_all_masks(void **s)
{
    (void)s;
    static const int32_t len[] = {6, 3, 1};
    check(MHA_ACT_GELU, 0, 1, make_cfg(15, 3, 1, 6, 31),
          (attn_case){.batch = 3, .seq_q = 6, .kv_len = len, .causal = 1, .use_bias = 1, .want_weights = 1}, 12);
}
static void pre_all_masks(void **s)
{
    (void)s;
    static const int32_t len[] = {2, 6, 0};
    check(MHA_ACT_SWIGLU, 1, 1, make_cfg(15, 3, 3, 6, 31),
          (attn_case){.batch = 3, .seq_q = 6, .kv_len = len, .causal = 1, .use_bias = 1, .want_weights = 1}, 13);
}
static void long_sequence(void **s)
{
    (void)s;
    static const int32_t len[] = {270, 97};
    check(MHA_ACT_GELU, 1, 1, make_cfg(24, 4, 2, 0, 40), (attn_case){.batch = 2, .seq_q = 270, .kv_len = len}, 14);
}

static void cross_attention_rejected(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 15);
    float q[16] = {0}, k[16] = {0}, out[16];
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 1;
    a.seq_q = 2;
    a.seq_kv = 2;
    a.query = q;
    a.key = k;
    a.value = k;
    a.out = out;
    assert_int_equal(mha_layer_forward(f.ctx, &a), MHA_ERR_UNSUPPORTED);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(post_relu),      cmocka_unit_test(pre_relu),
        cmocka_unit_test(post_gelu),      cmocka_unit_test(pre_gelu),
        cmocka_unit_test(post_gelu_tanh), cmocka_unit_test(pre_gelu_tanh),
        cmocka_unit_test(post_swiglu),    cmocka_unit_test(pre_swiglu),
        cmocka_unit_test(post_nobias),    cmocka_unit_test(pre_nobias),
        cmocka_unit_test(seq_one),        cmocka_unit_test(post_all_masks),
        cmocka_unit_test(pre_all_masks),  cmocka_unit_test(long_sequence),
        cmocka_unit_test(cross_attention_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
