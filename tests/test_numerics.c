/* test_numerics.c - numeric robustness: scores thousands apart, inputs of
 * 1e30, subnormals, NaN / Inf in inputs (propagated, never a crash),
 * constant rows into LayerNorm. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void forward(fixture *f, int layer, const float *x, float *out, size_t B, size_t S,
                    const float *bias)
{
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = S;
    a.query = x;
    a.out = out;
    a.attn_bias = bias;
    assert_int_equal(layer ? mha_layer_forward(f->ctx, &a) : mha_attention_forward(f->ctx, &a),
                     MHA_OK);
}

/* Relative comparison for outputs of any magnitude. */
static void assert_rel_close(const float *got, const double *ref, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= tol * (1.0 + fabs(ref[i]))))
            fail_msg("[%zu] got %g, want %g", i, got[i], ref[i]);
}

/* The layer on x [B, S, d_model] writes only finite numbers and matches the
 * reference relatively (for inputs far from order 1). */
static void layer_finite_and_close(fixture *f, const float *x, size_t B, size_t S)
{
    size_t n = B * S * f->cfg.d_model;
    float *out = malloc(n * 4);
    double *xd = to_double(x, n), *ref = malloc(n * sizeof(double));
    forward(f, 1, x, out, B, S, NULL);
    naive_layer(&f->nm, B, S, xd, NULL, NULL, 0, ref, NULL);
    for (size_t i = 0; i < n; i++)
        assert_true(isfinite(out[i]));
    assert_rel_close(out, ref, n, 1e-5);
    free(out), free(xd), free(ref);
}

static void scores_thousands_apart(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 1);
    size_t S = 6, n = 2 * S * 8;
    float *x = rand_floats(n, 1.0), *bias = rand_floats(S * S, 5000.0), *out = malloc(n * 4);
    double *xd = to_double(x, n), *ref = malloc(n * sizeof(double));
    forward(&f, 0, x, out, 2, S, bias);
    naive_attention(&f.nm, 2, S, S, xd, NULL, NULL, NULL, bias, 0, ref, NULL);
    assert_close(out, ref, n, TOL);
    free(x), free(bias), free(out), free(xd), free(ref);
    fixture_free(&f);
}

static void inputs_of_1e30_pre_norm(void **s)
{
    (void)s; /* pre-norm: LN1 brings 1e30 rows back to order 1; y ~ x stays finite */
    mha_config cfg = make_cfg(12, 3, 0, 0, 0);
    cfg.norm_first = 1;
    cfg.activation = MHA_ACT_GELU;
    fixture f;
    fixture_make(&f, &cfg, 2);
    size_t n = 2 * 5 * 12;
    float *x = rand_floats(n, 1.0);
    for (size_t i = 0; i < n; i++)
        x[i] *= 1e30f;
    layer_finite_and_close(&f, x, 2, 5);
    free(x);
    fixture_free(&f);
}

static void subnormal_inputs(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    cfg.activation = MHA_ACT_GELU_TANH;
    fixture f;
    fixture_make(&f, &cfg, 3);
    size_t n = 2 * 4 * 8;
    float *x = rand_floats(n, 1.0), *out = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        x[i] *= 1e-39f; /* subnormal */
    double *xd = to_double(x, n), *ref = malloc(n * sizeof(double));
    for (int layer = 0; layer < 2; layer++) {
        forward(&f, layer, x, out, 2, 4, NULL);
        if (layer)
            naive_layer(&f.nm, 2, 4, xd, NULL, NULL, 0, ref, NULL);
        else
            naive_attention(&f.nm, 2, 4, 4, xd, NULL, NULL, NULL, NULL, 0, ref, NULL);
        assert_close(out, ref, n, TOL);
    }
    free(x), free(out), free(xd), free(ref);
    fixture_free(&f);
}

static void nan_and_inf_propagate(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 4);
    size_t S = 5, n = 2 * S * 8;
    float *out = malloc(n * 4);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int layer = 0; layer < 2; layer++)
        for (int k = 0; k < 3; k++) {
            float *x = rand_floats(n, 1.0);
            x[2 * 8 + 3] = bad[k]; /* batch 0, token 2 */
            forward(&f, layer, x, out, 2, S, NULL);
            /* token 2 is a key of every query of batch 0: all its rows are hit */
            for (size_t i = 0; i < S * 8; i++)
                assert_true(isnan(out[i]) || isinf(out[i]));
            for (size_t i = S * 8; i < n; i++) /* batch 1 untouched */
                assert_true(isfinite(out[i]));
            free(x);
        }
    /* NaN in a weight reaches every output it touches, without a crash */
    size_t nb = mha_param_count(f.ctx, MHA_PARAM_BO);
    float *bo = malloc(nb * 4);
    memcpy(bo, f.wf[MHA_PARAM_BO], nb * 4);
    bo[1] = NAN;
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_BO, bo, nb), MHA_OK);
    float *x = rand_floats(n, 1.0);
    forward(&f, 0, x, out, 2, S, NULL);
    for (size_t t = 0; t < 2 * S; t++) {
        assert_true(isnan(out[t * 8 + 1]));
        assert_true(isfinite(out[t * 8 + 0]));
    }
    free(x), free(bo), free(out);
    fixture_free(&f);
}

static void constant_rows_into_layernorm(void **s)
{
    (void)s; /* pre-norm: LN1 sees constant rows (variance 0): LN1(x) = its bias */
    mha_config cfg = make_cfg(10, 2, 0, 0, 0);
    cfg.norm_first = 1;
    fixture f;
    fixture_make(&f, &cfg, 5);
    size_t n = 3 * 4 * 10;
    float *x = malloc(n * 4);
    for (size_t t = 0; t < 12; t++)
        for (size_t i = 0; i < 10; i++)
            x[t * 10 + i] = t == 5 ? 1e30f : (float)t * 0.37f - 1.0f; /* one row of 1e30 */
    layer_finite_and_close(&f, x, 3, 4);
    free(x);
    fixture_free(&f);
}

static void finite_mask_values(void **s)
{
    (void)s; /* -1e30 acts like -inf; a row of only -1e30 is a plain softmax */
    mha_config cfg = make_cfg(8, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &cfg, 6);
    size_t S = 4, n = S * 8;
    float *x = rand_floats(n, 1.0), *bias = calloc(S * S, 4), *out = malloc(n * 4);
    for (size_t j = 1; j < S; j++)
        bias[0 * S + j] = -1e30f;
    for (size_t j = 0; j < S; j++)
        bias[2 * S + j] = -1e30f;
    double *xd = to_double(x, n), *ref = malloc(n * sizeof(double));
    forward(&f, 0, x, out, 1, S, bias);
    naive_attention(&f.nm, 1, S, S, xd, NULL, NULL, NULL, bias, 0, ref, NULL);
    assert_close(out, ref, n, TOL);
    free(x), free(bias), free(out), free(xd), free(ref);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scores_thousands_apart),
        cmocka_unit_test(inputs_of_1e30_pre_norm),
        cmocka_unit_test(subnormal_inputs),
        cmocka_unit_test(nan_and_inf_propagate),
        cmocka_unit_test(constant_rows_into_layernorm),
        cmocka_unit_test(finite_mask_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
