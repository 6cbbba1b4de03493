/* test_ffn.c - mha_ffn_forward against the naive reference. */
#include "testutil.h"

#include <stdlib.h>

static void check(int act, int bias, size_t D, size_t F, size_t N, double in_scale, uint64_t seed)
{
    mha_config cfg = make_cfg(D, 1, 0, 0, F);
    cfg.activation = act;
    cfg.bias = bias;
    fixture f;
    fixture_make(&f, &cfg, seed);
    float *x = rand_floats(N * D, in_scale), *out = malloc(N * D * sizeof(float));
    double *xd = to_double(x, N * D), *ref = malloc(N * D * sizeof(double));
    assert_int_equal(mha_ffn_forward(f.ctx, out, x, N), MHA_OK);
    naive_ffn(&f.nm, N, xd, ref);
    assert_close(out, ref, N * D, TOL * in_scale);
    free(x);
    free(out);
    free(xd);
    free(ref);
    fixture_free(&f);
}

static void relu(void **s) { (void)s; check(MHA_ACT_RELU, 1, 13, 29, 7, 1.0, 1); }
static void relu_nobias(void **s) { (void)s; check(MHA_ACT_RELU, 0, 13, 29, 7, 1.0, 2); }
static void gelu(void **s) { (void)s; check(MHA_ACT_GELU, 1, 17, 40, 9, 1.0, 3); }
static void gelu_nobias(void **s) { (void)s; check(MHA_ACT_GELU, 0, 17, 40, 9, 1.0, 4); }
static void gelu_tails(void **s) { (void)s; check(MHA_ACT_GELU, 1, 16, 33, 5, 6.0, 5); }
static void gelu_tanh(void **s) { (void)s; check(MHA_ACT_GELU_TANH, 1, 11, 23, 6, 1.0, 6); }
static void gelu_tanh_tails(void **s) { (void)s; check(MHA_ACT_GELU_TANH, 0, 11, 23, 6, 6.0, 7); }
static void swiglu(void **s) { (void)s; check(MHA_ACT_SWIGLU, 1, 15, 21, 8, 1.0, 8); }
static void swiglu_nobias(void **s) { (void)s; check(MHA_ACT_SWIGLU, 0, 15, 21, 8, 3.0, 9); }
static void one_token(void **s) { (void)s; check(MHA_ACT_GELU, 1, 9, 0, 1, 1.0, 10); }
static void many_tokens(void **s) { (void)s; check(MHA_ACT_RELU, 1, 64, 200, 300, 1.0, 11); }

static void zero_tokens(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 12);
    assert_int_equal(mha_ffn_forward(f.ctx, NULL, NULL, 0), MHA_OK);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(relu),          cmocka_unit_test(relu_nobias),
        cmocka_unit_test(gelu),          cmocka_unit_test(gelu_nobias),
        cmocka_unit_test(gelu_tails),    cmocka_unit_test(gelu_tanh),
        cmocka_unit_test(gelu_tanh_tails), cmocka_unit_test(swiglu),
        cmocka_unit_test(swiglu_nobias), cmocka_unit_test(one_token),
        cmocka_unit_test(many_tokens),   cmocka_unit_test(zero_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
