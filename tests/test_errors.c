/* test_errors.c - every bad input gets its specific status, leaves the
 * context usable and its weights unchanged, and writes no output. */
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static mha_status create_with(void (*edit)(mha_config *))
{
    mha_config c = make_cfg(16, 4, 0, 0, 0);
    edit(&c);
    mha_ctx *ctx = (mha_ctx *)(uintptr_t)1; /* must come back NULL */
    mha_status st = mha_create(&c, &ctx);
    if (st != MHA_OK)
        assert_null(ctx);
    mha_destroy(ctx);
    return st;
}

static void e_small_struct(mha_config *c) { c->struct_size = sizeof(size_t); }
static void e_d_model_0(mha_config *c) { c->d_model = 0; }
static void e_heads_0(mha_config *c) { c->n_heads = 0; }
static void e_kv_not_dividing(mha_config *c) { c->n_kv_heads = 3; }
static void e_kv_too_many(mha_config *c) { c->n_kv_heads = 8; }
static void e_heads_not_dividing(mha_config *c) { c->n_heads = 5; }
static void e_act(mha_config *c) { c->activation = 4; }
static void e_act_neg(mha_config *c) { c->activation = -1; }
static void e_norm_first(mha_config *c) { c->norm_first = 2; }
static void e_bias(mha_config *c) { c->bias = -1; }
static void e_eps0(mha_config *c) { c->ln_eps = 0.0f; }
static void e_eps_nan(mha_config *c) { c->ln_eps = NAN; }
static void e_eps_inf(mha_config *c) { c->ln_eps = INFINITY; }
static void e_eps_neg(mha_config *c) { c->ln_eps = -1e-5f; }
static void e_threads(mha_config *c) { c->n_threads = -2; }
static void e_threads_many(mha_config *c) { c->n_threads = 257; }
static void e_huge(mha_config *c) { c->d_model = SIZE_MAX / 2; c->n_heads = 1; }
static void e_huge_ff(mha_config *c) { c->d_ff = SIZE_MAX / 4; }
static void e_huge_head(mha_config *c) { c->d_head = (size_t)1 << 40; }

static void create_errors(void **s)
{
    (void)s;
    mha_ctx *ctx = (mha_ctx *)(uintptr_t)1;
    assert_int_equal(mha_create(NULL, &ctx), MHA_ERR_NULL_ARG);
    assert_null(ctx);
    mha_config c = make_cfg(16, 4, 0, 0, 0);
    assert_int_equal(mha_create(&c, NULL), MHA_ERR_NULL_ARG);
    assert_int_equal(create_with(e_small_struct), MHA_ERR_STRUCT_SIZE);
    assert_int_equal(create_with(e_d_model_0), MHA_ERR_BAD_CONFIG);
    assert_int_equal(create_with(e_heads_0), MHA_ERR_BAD_CONFIG);
    assert_int_equal(create_with(e_kv_not_dividing), MHA_ERR_BAD_CONFIG);
    assert_int_equal(create_with(e_kv_too_many), MHA_ERR_BAD_CONFIG);
    assert_int_equal(create_with(e_heads_not_dividing), MHA_ERR_BAD_CONFIG);
    assert_int_equal(create_with(e_act), MHA_ERR_BAD_ACTIVATION);
    assert_int_equal(create_with(e_act_neg), MHA_ERR_BAD_ACTIVATION);
    assert_int_equal(create_with(e_norm_first), MHA_ERR_BAD_FLAG);
    assert_int_equal(create_with(e_bias), MHA_ERR_BAD_FLAG);
    assert_int_equal(create_with(e_eps0), MHA_ERR_BAD_EPS);
    assert_int_equal(create_with(e_eps_nan), MHA_ERR_BAD_EPS);
    assert_int_equal(create_with(e_eps_inf), MHA_ERR_BAD_EPS);
    assert_int_equal(create_with(e_eps_neg), MHA_ERR_BAD_EPS);
    assert_int_equal(create_with(e_threads), MHA_ERR_BAD_THREADS);
    assert_int_equal(create_with(e_threads_many), MHA_ERR_BAD_THREADS);
    assert_int_equal(create_with(e_huge), MHA_ERR_OVERFLOW);
    assert_int_equal(create_with(e_huge_ff), MHA_ERR_OVERFLOW);
    assert_int_equal(create_with(e_huge_head), MHA_ERR_OVERFLOW);
}

static void param_errors(void **s)
{
    (void)s;
    mha_config c = make_cfg(8, 2, 0, 0, 0);
    c.bias = 0;
    fixture f;
    fixture_make(&f, &c, 1);
    float buf[512] = {0};
    size_t nq = mha_param_count(f.ctx, MHA_PARAM_WQ);
    assert_int_equal(mha_set_param(NULL, MHA_PARAM_WQ, buf, nq), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_WQ, NULL, nq), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_set_param(f.ctx, (mha_param)-1, buf, nq), MHA_ERR_BAD_PARAM);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_COUNT, buf, nq), MHA_ERR_BAD_PARAM);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_W3, buf, 1), MHA_ERR_PARAM_UNUSED);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_BQ, buf, 8), MHA_ERR_PARAM_UNUSED);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_WQ, buf, nq - 1), MHA_ERR_COUNT_MISMATCH);
    assert_int_equal(mha_set_param(f.ctx, MHA_PARAM_WQ, buf, nq + 1), MHA_ERR_COUNT_MISMATCH);
    assert_int_equal(mha_get_param(NULL, MHA_PARAM_WQ, buf, nq), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_get_param(f.ctx, MHA_PARAM_WQ, NULL, nq), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_get_param(f.ctx, (mha_param)99, buf, nq), MHA_ERR_BAD_PARAM);
    assert_int_equal(mha_get_param(f.ctx, MHA_PARAM_BO, buf, 8), MHA_ERR_PARAM_UNUSED);
    assert_int_equal(mha_get_param(f.ctx, MHA_PARAM_WQ, buf, 3), MHA_ERR_COUNT_MISMATCH);
    /* the weights are untouched and the context still computes correctly */
    assert_int_equal(mha_get_param(f.ctx, MHA_PARAM_WQ, buf, nq), MHA_OK);
    assert_memory_equal(buf, f.wf[MHA_PARAM_WQ], nq * sizeof(float));
    run_attn_case(&f, &(attn_case){.batch = 1, .seq_q = 3, .layer = 1});
    fixture_free(&f);
}

static void unset_params(void **s)
{
    (void)s;
    mha_config c = make_cfg(8, 2, 0, 0, 0);
    mha_ctx *ctx;
    assert_int_equal(mha_create(&c, &ctx), MHA_OK);
    float x[16] = {0}, out[16];
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 1;
    a.seq_q = 2;
    a.query = x;
    a.out = out;
    assert_int_equal(mha_attention_forward(ctx, &a), MHA_ERR_PARAM_NOT_SET);
    assert_int_equal(mha_ffn_forward(ctx, out, x, 2), MHA_ERR_PARAM_NOT_SET);
    assert_int_equal(mha_layer_forward(ctx, &a), MHA_ERR_PARAM_NOT_SET);
    /* set every attention weight but BO: still refused */
    for (int p = MHA_PARAM_WQ; p < MHA_PARAM_BO; p++) {
        size_t n = mha_param_count(ctx, (mha_param)p);
        float *w = rand_floats(n, 0.1);
        assert_int_equal(mha_set_param(ctx, (mha_param)p, w, n), MHA_OK);
        free(w);
    }
    assert_int_equal(mha_attention_forward(ctx, &a), MHA_ERR_PARAM_NOT_SET);
    float bo[8] = {0};
    assert_int_equal(mha_set_param(ctx, MHA_PARAM_BO, bo, 8), MHA_OK);
    assert_int_equal(mha_attention_forward(ctx, &a), MHA_OK);
    assert_int_equal(mha_layer_forward(ctx, &a), MHA_ERR_PARAM_NOT_SET); /* FFN, LN unset */
    mha_destroy(ctx);
}

#define B 2
#define S 3
#define D 8
enum { NQ = B * S * D };

typedef struct bufs {
    float q[NQ], k[NQ], v[NQ], out[NQ], w[B * 2 * S * S], bias[S * S];
    int32_t len[B];
    float big[4 * NQ];
} bufs;

static void fill_valid(bufs *b, mha_attn_args *a, int cross)
{
    for (size_t i = 0; i < NQ; i++)
        b->q[i] = b->k[i] = b->v[i] = (float)((i % 7) * 0.1);
    memset(b->bias, 0, sizeof b->bias);
    b->len[0] = S;
    b->len[1] = 1;
    mha_attn_args_init(a);
    a->batch = B;
    a->seq_q = S;
    a->query = b->q;
    a->out = b->out;
    if (cross) {
        a->seq_kv = S;
        a->key = b->k;
        a->value = b->v;
    }
}

static void attn_args_errors(void **s)
{
    (void)s;
    mha_config c = make_cfg(D, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &c, 2);
    bufs *b = calloc(1, sizeof *b);
    mha_attn_args a;
    struct {
        const char *name;
        mha_status want;
        int cross;
    } rows[] = {
        {"null args", MHA_ERR_NULL_ARG, 0},
        {"struct_size 0", MHA_ERR_STRUCT_SIZE, 0},
        {"query NULL", MHA_ERR_NULL_ARG, 0},
        {"out NULL", MHA_ERR_NULL_ARG, 0},
        {"key without value", MHA_ERR_NULL_ARG, 1},
        {"value without key", MHA_ERR_NULL_ARG, 1},
        {"self seq_kv mismatch", MHA_ERR_BAD_SHAPE, 0},
        {"causal 2", MHA_ERR_BAD_FLAG, 0},
        {"causal -1", MHA_ERR_BAD_FLAG, 0},
        {"kv_len negative", MHA_ERR_BAD_KV_LENGTH, 0},
        {"kv_len > seq_kv", MHA_ERR_BAD_KV_LENGTH, 1},
        {"out == query", MHA_ERR_ALIAS, 0},
        {"out overlaps query tail", MHA_ERR_ALIAS, 0},
        {"out overlaps key", MHA_ERR_ALIAS, 1},
        {"out overlaps value", MHA_ERR_ALIAS, 1},
        {"out overlaps kv_lengths", MHA_ERR_ALIAS, 0},
        {"out overlaps attn_bias", MHA_ERR_ALIAS, 0},
        {"weights overlap out", MHA_ERR_ALIAS, 0},
        {"weights overlap query", MHA_ERR_ALIAS, 0},
        {"weights overlap bias", MHA_ERR_ALIAS, 0},
        {"batch*seq overflows", MHA_ERR_OVERFLOW, 0},
        {"seq_q*seq_kv overflows", MHA_ERR_OVERFLOW, 1},
    };
    for (int entry = 0; entry < 2; entry++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            if (entry == 1 && rows[r].cross)
                continue; /* the layer is self-attention only */
            fill_valid(b, &a, rows[r].cross);
            const mha_attn_args *ap = &a;
            switch (r) {
            case 0: ap = NULL; break;
            case 1: a.struct_size = 0; break;
            case 2: a.query = NULL; break;
            case 3: a.out = NULL; break;
            case 4: a.value = NULL; break;
            case 5: a.key = NULL; break;
            case 6: a.seq_kv = S + 1; break;
            case 7: a.causal = 2; break;
            case 8: a.causal = -1; break;
            case 9: b->len[1] = -1; a.kv_lengths = b->len; break;
            case 10: b->len[1] = S + 1; a.kv_lengths = b->len; break;
            case 11: a.out = b->q; break;
            case 12: a.query = b->big; a.out = b->big + NQ - 1; break;
            case 13: a.out = b->big; a.key = b->big + 3; break;
            case 14: a.out = b->big + NQ / 2; a.value = b->big; break;
            case 15: a.out = b->big; a.kv_lengths = (const int32_t *)(b->big + 5); break;
            case 16: a.out = b->big; a.attn_bias = b->big + NQ - 2; break;
            case 17: a.attn_weights = b->out + 1; break;
            case 18: a.attn_weights = b->q; break;
            case 19: a.attn_weights = b->big; a.attn_bias = b->big + 2; break;
            case 20: a.batch = SIZE_MAX / 4; break;
            case 21: a.seq_q = SIZE_MAX / 2; a.seq_kv = 3; a.batch = 1; break;
            }
            memset(b->out, 0x7f, sizeof b->out);
            unsigned char before[sizeof b->out];
            memcpy(before, b->out, sizeof before);
            mha_status st = entry ? mha_layer_forward(f.ctx, ap) : mha_attention_forward(f.ctx, ap);
            if (st != rows[r].want)
                fail_msg("%s (%s): got %d (%s), want %d", rows[r].name, entry ? "layer" : "attention",
                         st, mha_strerror(st), rows[r].want);
            if (memcmp(before, b->out, sizeof before) != 0)
                fail_msg("%s: output written on error", rows[r].name);
        }
    assert_int_equal(mha_attention_forward(NULL, &a), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_layer_forward(NULL, &a), MHA_ERR_NULL_ARG);
    /* still usable, weights unchanged */
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(f.ctx, (mha_param)p);
        if (n == 0)
            continue;
        float *w = calloc(n, sizeof(float));
        assert_int_equal(mha_get_param(f.ctx, (mha_param)p, w, n), MHA_OK);
        assert_memory_equal(w, f.wf[p], n * sizeof(float));
        free(w);
    }
    run_attn_case(&f, &(attn_case){.batch = 2, .seq_q = 4, .layer = 1, .causal = 1});
    free(b);
    fixture_free(&f);
}

static void ffn_errors(void **s)
{
    (void)s;
    mha_config c = make_cfg(D, 2, 0, 0, 0);
    fixture f;
    fixture_make(&f, &c, 3);
    float *x = rand_floats(4 * D, 1.0), *out = calloc(4 * D, sizeof(float));
    assert_int_equal(mha_ffn_forward(NULL, out, x, 4), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_ffn_forward(f.ctx, NULL, x, 4), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_ffn_forward(f.ctx, out, NULL, 4), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_ffn_forward(f.ctx, x, x, 4), MHA_ERR_ALIAS);
    assert_int_equal(mha_ffn_forward(f.ctx, x + 3, x, 4), MHA_ERR_ALIAS);
    assert_int_equal(mha_ffn_forward(f.ctx, out, x, SIZE_MAX / 8), MHA_ERR_OVERFLOW);
    assert_int_equal(mha_ffn_forward(f.ctx, out, x, (size_t)1 << 40), MHA_ERR_OVERFLOW);
    double *xd = to_double(x, 4 * D), ref[4 * D];
    assert_int_equal(mha_ffn_forward(f.ctx, out, x, 4), MHA_OK);
    naive_ffn(&f.nm, 4, xd, ref);
    assert_close(out, ref, 4 * D, TOL);
    free(x);
    free(out);
    free(xd);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_errors),    cmocka_unit_test(param_errors),
        cmocka_unit_test(unset_params),     cmocka_unit_test(attn_args_errors),
        cmocka_unit_test(ffn_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
