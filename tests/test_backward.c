/* test_backward.c - every gradient of every backward entry point against
 * central finite differences of the naive float64 reference, for
 * L = sum(dY * forward(inputs, weights)) with a random dY. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OP_ATTN, OP_FFN, OP_LAYER };

typedef struct gcase {
    mha_config cfg;
    int op;
    size_t batch, seq_q, seq_kv;
    int cross, causal, use_bias;
    const int32_t *kv_len;
} gcase;

typedef struct problem {
    const gcase *c;
    fixture f;
    size_t nq, nkv, skv;
    float *q, *k, *v, *bias, *dy;
    double *qd, *kd, *vd; /* perturbed by the finite differences */
} problem;

static void ref_forward(const problem *P, double *out)
{
    const gcase *c = P->c;
    if (c->op == OP_FFN)
        naive_ffn(&P->f.nm, c->batch * c->seq_q, P->qd, out);
    else if (c->op == OP_LAYER)
        naive_layer(&P->f.nm, c->batch, c->seq_q, P->qd, c->kv_len, P->bias, c->causal, out, NULL);
    else
        naive_attention(&P->f.nm, c->batch, c->seq_q, P->skv, P->qd, c->cross ? P->kd : NULL,
                        c->cross ? P->vd : NULL, c->kv_len, P->bias, c->causal, out, NULL);
}

static double loss(const problem *P, double *scratch)
{
    ref_forward(P, scratch);
    double L = 0.0;
    for (size_t i = 0; i < P->nq; i++)
        L += (double)P->dy[i] * scratch[i];
    return L;
}

/* dL/dx[i] by central differences, for every element of x. */
static double *fd_grad(const problem *P, double *x, size_t n)
{
    double *g = malloc((n + 1) * sizeof(double)), *scratch = malloc(P->nq * sizeof(double));
    const double eps = 1e-5;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + eps;
        double lp = loss(P, scratch);
        x[i] = keep - eps;
        double lm = loss(P, scratch);
        x[i] = keep;
        g[i] = (lp - lm) / (2 * eps);
    }
    free(scratch);
    return g;
}

/* Relative to the tensor's largest entry (floored: some gradients are 0
 * analytically, e.g. that of BK, which softmax cancels). */
static void check_grad(const char *what, const float *got, const double *ref, size_t n)
{
    double mx = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(ref[i]));
        double d = fabs((double)got[i] - ref[i]);
        err = isnan(d) ? INFINITY : fmax(err, d);
    }
    if (!(err <= 1e-3 * fmax(mx, 1e-2)))
        fail_msg("%s: max error %.3g, max |grad| %.3g (n = %zu)", what, err, mx, n);
}

static void problem_make(problem *P, const gcase *c, uint64_t seed)
{
    memset(P, 0, sizeof *P);
    P->c = c;
    fixture_make(&P->f, &c->cfg, seed);
    size_t D = c->cfg.d_model;
    P->skv = c->cross ? c->seq_kv : c->seq_q;
    P->nq = c->batch * c->seq_q * D;
    P->nkv = c->batch * P->skv * D;
    P->q = rand_floats(P->nq, 1.0);
    P->dy = rand_floats(P->nq, 1.0);
    if (c->cross) {
        P->k = rand_floats(P->nkv, 1.0);
        P->v = rand_floats(P->nkv, 1.0);
    }
    if (c->use_bias) {
        P->bias = rand_floats(c->seq_q * P->skv, 1.0);
        for (size_t i = 0; i < c->seq_q * P->skv; i += 5)
            P->bias[i] = -INFINITY;
    }
    P->qd = to_double(P->q, P->nq);
    P->kd = c->cross ? to_double(P->k, P->nkv) : NULL;
    P->vd = c->cross ? to_double(P->v, P->nkv) : NULL;
}

static void problem_free(problem *P)
{
    free(P->q);
    free(P->k);
    free(P->v);
    free(P->bias);
    free(P->dy);
    free(P->qd);
    free(P->kd);
    free(P->vd);
    fixture_free(&P->f);
}

static mha_status run_backward(problem *P, float *dq, float *dk, float *dv)
{
    const gcase *c = P->c;
    if (c->op == OP_FFN)
        return mha_ffn_backward(P->f.ctx, dq, P->dy, P->q, c->batch * c->seq_q);
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = c->batch;
    a.seq_q = c->seq_q;
    a.seq_kv = c->cross ? c->seq_kv : 0;
    a.query = P->q;
    a.key = P->k;
    a.value = P->v;
    a.kv_lengths = c->kv_len;
    a.attn_bias = P->bias;
    a.causal = c->causal;
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = P->dy;
    g.d_query = dq;
    g.d_key = dk;
    g.d_value = dv;
    return c->op == OP_LAYER ? mha_layer_backward(P->f.ctx, &a, &g)
                             : mha_attention_backward(P->f.ctx, &a, &g);
}

static const char *pname[MHA_PARAM_COUNT] = {
    "WQ", "WK", "WV", "WO", "BQ", "BK", "BV", "BO", "W1", "B1", "W2", "B2", "W3",
    "LN1_WEIGHT", "LN1_BIAS", "LN2_WEIGHT", "LN2_BIAS",
};

/* Parameters the op reads (the FFN reads no attention weight, etc.). */
static int op_uses(int op, int p)
{
    int attn = p <= MHA_PARAM_BO, ffn = p >= MHA_PARAM_W1 && p <= MHA_PARAM_W3;
    return op == OP_LAYER || (op == OP_ATTN && attn) || (op == OP_FFN && ffn);
}

static void check_case(const gcase *c, uint64_t seed)
{
    problem P;
    problem_make(&P, c, seed);
    float *dq = calloc(P.nq, sizeof(float)), *dk = NULL, *dv = NULL;
    if (c->cross) {
        dk = calloc(P.nkv + 1, sizeof(float));
        dv = calloc(P.nkv + 1, sizeof(float));
    }
    /* an unrelated forward first: the backward must not reuse its values */
    if (c->op != OP_FFN) {
        mha_attn_args a;
        mha_attn_args_init(&a);
        float *junk = rand_floats(P.nq, 3.0), *out = malloc(P.nq * sizeof(float));
        a.batch = c->batch;
        a.seq_q = c->seq_q;
        a.query = junk;
        a.out = out;
        assert_int_equal(mha_attention_forward(P.f.ctx, &a), MHA_OK);
        free(junk);
        free(out);
    }
    assert_int_equal(run_backward(&P, dq, dk, dv), MHA_OK);

    double *g = fd_grad(&P, P.qd, P.nq);
    check_grad(c->op == OP_ATTN ? "d_query" : "d_x", dq, g, P.nq);
    free(g);
    if (c->cross) {
        g = fd_grad(&P, P.kd, P.nkv);
        check_grad("d_key", dk, g, P.nkv);
        free(g);
        g = fd_grad(&P, P.vd, P.nkv);
        check_grad("d_value", dv, g, P.nkv);
        free(g);
    }
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(P.f.ctx, (mha_param)p);
        if (!n)
            continue;
        float *got = malloc(n * sizeof(float));
        assert_int_equal(mha_get_grad(P.f.ctx, (mha_param)p, got, n), MHA_OK);
        if (op_uses(c->op, p)) {
            g = fd_grad(&P, P.f.wd[p], n);
            check_grad(pname[p], got, g, n);
            free(g);
        } else {
            for (size_t i = 0; i < n; i++)
                if (got[i] != 0.0f)
                    fail_msg("%s: gradient of an unused weight is not zero", pname[p]);
        }
        free(got);
    }
    free(dq);
    free(dk);
    free(dv);
    problem_free(&P);
}

static mha_config cfg_act(mha_config c, int act, int bias, int norm_first)
{
    c.activation = act;
    c.bias = bias;
    c.norm_first = norm_first;
    return c;
}

#define CASE(name, seed, ...)                    \
    static void name(void **s)                   \
    {                                            \
        (void)s;                                 \
        const gcase c = __VA_ARGS__;             \
        check_case(&c, seed);                    \
    }

static const int32_t len3[] = {5, 2, 0};
static const int32_t len2[] = {6, 3};
static const int32_t len_long[] = {150, 77};

CASE(attn_self, 1, {make_cfg(10, 2, 0, 5, 0), OP_ATTN, 2, 5, 0, 0, 0, 0, NULL})
CASE(attn_self_masks, 2, {make_cfg(9, 3, 0, 4, 0), OP_ATTN, 3, 5, 0, 0, 1, 1, len3})
CASE(attn_cross, 3, {make_cfg(8, 2, 0, 0, 0), OP_ATTN, 2, 3, 6, 1, 0, 0, len2})
CASE(attn_cross_causal_short_kv, 4, {make_cfg(8, 2, 0, 0, 0), OP_ATTN, 2, 6, 3, 1, 1, 1, NULL})
CASE(attn_gqa, 5, {make_cfg(7, 4, 2, 3, 0), OP_ATTN, 2, 4, 0, 0, 1, 0, NULL})
CASE(attn_mqa_cross_nobias, 6,
     {cfg_act(make_cfg(12, 3, 1, 4, 0), MHA_ACT_RELU, 0, 0), OP_ATTN, 2, 4, 5, 1, 0, 1, NULL})
CASE(attn_multi_tile, 7, {make_cfg(4, 1, 0, 0, 0), OP_ATTN, 2, 150, 0, 0, 1, 0, len_long})
CASE(ffn_relu, 8, {cfg_act(make_cfg(7, 1, 0, 0, 11), MHA_ACT_RELU, 1, 0), OP_FFN, 2, 3, 0, 0, 0, 0, NULL})
CASE(ffn_gelu, 9, {cfg_act(make_cfg(7, 1, 0, 0, 11), MHA_ACT_GELU, 1, 0), OP_FFN, 2, 3, 0, 0, 0, 0, NULL})
CASE(ffn_gelu_tanh_nobias, 10,
     {cfg_act(make_cfg(7, 1, 0, 0, 11), MHA_ACT_GELU_TANH, 0, 0), OP_FFN, 2, 3, 0, 0, 0, 0, NULL})
CASE(ffn_swiglu, 11, {cfg_act(make_cfg(7, 1, 0, 0, 11), MHA_ACT_SWIGLU, 1, 0), OP_FFN, 2, 3, 0, 0, 0, 0, NULL})
CASE(ffn_swiglu_nobias, 12,
     {cfg_act(make_cfg(6, 1, 0, 0, 9), MHA_ACT_SWIGLU, 0, 0), OP_FFN, 1, 4, 0, 0, 0, 0, NULL})
CASE(layer_post_gelu, 13, {cfg_act(make_cfg(8, 2, 0, 0, 12), MHA_ACT_GELU, 1, 0), OP_LAYER, 2, 4, 0, 0, 0, 0, NULL})
CASE(layer_pre_relu_masks, 14,
     {cfg_act(make_cfg(9, 3, 0, 0, 10), MHA_ACT_RELU, 1, 1), OP_LAYER, 3, 5, 0, 0, 1, 1, len3})
CASE(layer_post_swiglu_gqa, 15,
     {cfg_act(make_cfg(8, 4, 2, 3, 10), MHA_ACT_SWIGLU, 1, 0), OP_LAYER, 2, 4, 0, 0, 1, 0, NULL})
CASE(layer_pre_gelu_tanh_nobias, 16,
     {cfg_act(make_cfg(6, 2, 1, 0, 7), MHA_ACT_GELU_TANH, 0, 1), OP_LAYER, 2, 3, 0, 0, 0, 1, NULL})
CASE(layer_post_masks_nobias, 17,
     {cfg_act(make_cfg(7, 1, 0, 0, 9), MHA_ACT_RELU, 0, 0), OP_LAYER, 2, 6, 0, 0, 1, 0, len2})

/* Gradients accumulate across calls until mha_zero_grad; zeros before. */
static void accumulate_and_zero(void **s)
{
    (void)s;
    gcase c = {make_cfg(8, 2, 0, 0, 0), OP_LAYER, 2, 3, 0, 0, 0, 0, NULL};
    problem P;
    problem_make(&P, &c, 20);
    size_t n = mha_param_count(P.f.ctx, MHA_PARAM_W1);
    float *g1 = malloc(n * sizeof(float)), *g2 = malloc(n * sizeof(float));
    float *dq = malloc(P.nq * sizeof(float));
    assert_int_equal(mha_get_grad(P.f.ctx, MHA_PARAM_W1, g1, n), MHA_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(g1[i] == 0.0f);
    assert_int_equal(run_backward(&P, dq, NULL, NULL), MHA_OK);
    assert_int_equal(mha_get_grad(P.f.ctx, MHA_PARAM_W1, g1, n), MHA_OK);
    assert_int_equal(run_backward(&P, dq, NULL, NULL), MHA_OK);
    assert_int_equal(mha_get_grad(P.f.ctx, MHA_PARAM_W1, g2, n), MHA_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(fabsf(g2[i] - 2.0f * g1[i]) <= 1e-5f * (1.0f + fabsf(g1[i])));
    assert_int_equal(mha_zero_grad(P.f.ctx), MHA_OK);
    assert_int_equal(mha_get_grad(P.f.ctx, MHA_PARAM_W1, g2, n), MHA_OK);
    for (size_t i = 0; i < n; i++)
        assert_true(g2[i] == 0.0f);
    assert_int_equal(mha_zero_grad(NULL), MHA_ERR_NULL_ARG);
    free(g1);
    free(g2);
    free(dq);
    problem_free(&P);
}

/* Bad inputs: a status, no output written, gradients unchanged. */
static void backward_errors(void **s)
{
    (void)s;
    gcase c = {make_cfg(8, 2, 0, 0, 0), OP_ATTN, 2, 3, 3, 1, 0, 0, NULL};
    problem P;
    problem_make(&P, &c, 21);
    mha_ctx *ctx = P.f.ctx;
    float *dq = calloc(P.nq, sizeof(float)), *dk = calloc(P.nkv, sizeof(float)),
          *dv = calloc(P.nkv, sizeof(float));
    assert_int_equal(run_backward(&P, dq, dk, dv), MHA_OK);
    size_t n = mha_param_count(ctx, MHA_PARAM_WQ);
    float *before = malloc(n * sizeof(float)), *after = malloc(n * sizeof(float));
    assert_int_equal(mha_get_grad(ctx, MHA_PARAM_WQ, before, n), MHA_OK);

    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 2;
    a.seq_q = 3;
    a.seq_kv = 3;
    a.query = P.q;
    a.key = P.k;
    a.value = P.v;
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = P.dy;
    g.d_query = dq;
    g.d_key = dk;
    g.d_value = dv;
    mha_grad_args bad = g;
    assert_int_equal(mha_attention_backward(ctx, &a, NULL), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_attention_backward(NULL, &a, &g), MHA_ERR_NULL_ARG);
    bad.struct_size = 4;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_STRUCT_SIZE);
    bad = g, bad.d_out = NULL;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_NULL_ARG);
    bad = g, bad.d_query = NULL;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_NULL_ARG);
    bad = g, bad.d_key = NULL;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_NULL_ARG);
    bad = g, bad.d_query = P.q;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_ALIAS);
    bad = g, bad.d_value = P.k + 1;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_ALIAS);
    bad = g, bad.d_value = dk + 2;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_ALIAS);
    bad = g, bad.d_query = (float *)P.dy + 3;
    assert_int_equal(mha_attention_backward(ctx, &a, &bad), MHA_ERR_ALIAS);
    mha_attn_args sa = a;
    sa.key = sa.value = NULL;
    sa.seq_kv = 0;
    assert_int_equal(mha_attention_backward(ctx, &sa, &g), MHA_ERR_BAD_SHAPE);
    assert_int_equal(mha_layer_backward(ctx, &a, &g), MHA_ERR_UNSUPPORTED);
    mha_attn_args ba = a;
    ba.causal = 3;
    assert_int_equal(mha_attention_backward(ctx, &ba, &g), MHA_ERR_BAD_FLAG);
    assert_int_equal(mha_ffn_backward(ctx, dq, P.dy, dq, 2), MHA_ERR_ALIAS);
    assert_int_equal(mha_ffn_backward(ctx, dq, NULL, P.q, 2), MHA_ERR_NULL_ARG);
    assert_int_equal(mha_get_grad(ctx, MHA_PARAM_W3, after, 1), MHA_ERR_PARAM_UNUSED);
    assert_int_equal(mha_get_grad(ctx, MHA_PARAM_WQ, after, n + 1), MHA_ERR_COUNT_MISMATCH);
    assert_int_equal(mha_get_grad(ctx, (mha_param)-3, after, n), MHA_ERR_BAD_PARAM);
    assert_int_equal(mha_get_grad(NULL, MHA_PARAM_WQ, after, n), MHA_ERR_NULL_ARG);
    /* empty calls succeed and change nothing */
    mha_attn_args ea = a;
    ea.batch = 0;
    assert_int_equal(mha_attention_backward(ctx, &ea, &g), MHA_OK);
    assert_int_equal(mha_ffn_backward(ctx, NULL, NULL, NULL, 0), MHA_OK);
    assert_int_equal(mha_get_grad(ctx, MHA_PARAM_WQ, after, n), MHA_OK);
    assert_memory_equal(before, after, n * sizeof(float));
    free(before);
    free(after);
    free(dq);
    free(dk);
    free(dv);
    problem_free(&P);
}

/* ---- values kept by a training-mode forward for the next backward ---- */

/* Self-attention arguments over x [B, S, d_model]; out y (may be NULL). */
static mha_attn_args self_args(size_t B, size_t S, const float *x, float *y, const int32_t *len,
                               int causal)
{
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = S;
    a.query = x;
    a.out = y;
    a.kv_lengths = len;
    a.causal = causal;
    return a;
}

/* d_x and every parameter gradient of one layer backward, in one buffer. */
static float *layer_grads(mha_ctx *ctx, const float *x, const float *dy, size_t B, size_t S,
                          const int32_t *len, int causal, size_t *n_out)
{
    size_t D = 16, n = B * S * D;
    for (int p = 0; p < MHA_PARAM_COUNT; p++)
        n += mha_param_count(ctx, (mha_param)p);
    float *r = malloc(n * sizeof(float)), *at = r + B * S * D;
    mha_attn_args a = self_args(B, S, x, NULL, len, causal);
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = dy;
    g.d_query = r;
    assert_int_equal(mha_zero_grad(ctx), MHA_OK);
    assert_int_equal(mha_layer_backward(ctx, &a, &g), MHA_OK);
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t c = mha_param_count(ctx, (mha_param)p);
        if (c)
            assert_int_equal(mha_get_grad(ctx, (mha_param)p, at, c), MHA_OK);
        at += c;
    }
    *n_out = n;
    return r;
}

static void layer_fwd(mha_ctx *ctx, const float *x, float *y, size_t B, size_t S,
                      const int32_t *len, int causal)
{
    mha_attn_args a = self_args(B, S, x, y, len, causal);
    assert_int_equal(mha_layer_forward(ctx, &a), MHA_OK);
}

/* Whatever ran before, a backward equals a fresh context's backward (which
 * recomputes everything) bit for bit. */
static void kept_values_never_stale(void **s)
{
    (void)s;
    const size_t B = 2, S = 6, N = B * S * 16;
    for (int norm_first = 0; norm_first < 2; norm_first++) {
        mha_config cfg = cfg_act(make_cfg(16, 4, 2, 0, 24), MHA_ACT_GELU, 1, norm_first);
        fixture t, fresh;
        fixture_make(&t, &cfg, 30);
        float *x = rand_floats(N, 1.0), *x2 = rand_floats(N, 1.0), *dy = rand_floats(N, 1.0);
        float *y = malloc(N * sizeof(float));
        int32_t len[2] = {6, 4}, len_b[2] = {5, 4};
        size_t n, n2;
        /* the reference: a fresh context, no forward at all */
        fixture_make(&fresh, &cfg, 30);
        float *ref = layer_grads(fresh.ctx, x, dy, B, S, len, 1, &n);
        /* t enters training mode with a backward on other data */
        free(layer_grads(t.ctx, x2, dy, B, S, NULL, 0, &n2));

        struct {
            const char *what;
            int step;
        } steps[] = {{"forward on the same data", 0}, {"forward on other data", 1},
                     {"same pointer, data changed in place", 2}, {"other kv_lengths", 3},
                     {"causal flag differs", 4}, {"a weight set in between", 5},
                     {"an FFN call in between", 6}, {"attention forward, layer backward", 7}};
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            float *xin = malloc(N * sizeof(float));
            memcpy(xin, x, N * sizeof(float));
            switch (steps[k].step) {
            case 0: layer_fwd(t.ctx, xin, y, B, S, len, 1); break;
            case 1: layer_fwd(t.ctx, x2, y, B, S, len, 1); break;
            case 2:
                memcpy(xin, x2, N * sizeof(float));
                layer_fwd(t.ctx, xin, y, B, S, len, 1);
                memcpy(xin, x, N * sizeof(float));
                break;
            case 3: layer_fwd(t.ctx, xin, y, B, S, len_b, 1); break;
            case 4: layer_fwd(t.ctx, xin, y, B, S, len, 0); break;
            case 5: {
                layer_fwd(t.ctx, xin, y, B, S, len, 1);
                size_t c = mha_param_count(t.ctx, MHA_PARAM_W1);
                float *w = malloc(c * sizeof(float));
                assert_int_equal(mha_get_param(t.ctx, MHA_PARAM_W1, w, c), MHA_OK);
                float keep = w[3];
                w[3] = keep + 0.25f; /* changed and changed back: values kept must go */
                assert_int_equal(mha_set_param(t.ctx, MHA_PARAM_W1, w, c), MHA_OK);
                w[3] = keep;
                assert_int_equal(mha_set_param(t.ctx, MHA_PARAM_W1, w, c), MHA_OK);
                free(w);
                break;
            }
            case 6:
                layer_fwd(t.ctx, xin, y, B, S, len, 1);
                assert_int_equal(mha_ffn_forward(t.ctx, y, x2, B * S), MHA_OK);
                break;
            case 7: {
                mha_attn_args a = self_args(B, S, xin, y, len, 1);
                assert_int_equal(mha_attention_forward(t.ctx, &a), MHA_OK);
                break;
            }
            }
            float *got = layer_grads(t.ctx, xin, dy, B, S, len, 1, &n2);
            assert_int_equal(n, n2);
            if (memcmp(got, ref, n * sizeof(float)) != 0)
                fail_msg("norm_first %d, %s: backward differs from a fresh recompute",
                         norm_first, steps[k].what);
            free(got);
            free(xin);
        }
        free(ref);
        free(x);
        free(x2);
        free(dy);
        free(y);
        fixture_free(&t);
        fixture_free(&fresh);
    }
}

/* The same for attention (cross) and the FFN entry points. */
static void kept_values_attention_ffn(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(16, 4, 0, 0, 32);
    fixture t, fresh;
    fixture_make(&t, &cfg, 31);
    fixture_make(&fresh, &cfg, 31);
    size_t B = 2, Sq = 5, Skv = 7, nq = B * Sq * 16, nkv = B * Skv * 16;
    float *q = rand_floats(nq, 1.0), *k = rand_floats(nkv, 1.0), *v = rand_floats(nkv, 1.0);
    float *dy = rand_floats(nq, 1.0), *y = malloc(nq * sizeof(float));
    float *d1 = malloc((nq + 2 * nkv) * sizeof(float)), *d2 = malloc((nq + 2 * nkv) * sizeof(float));
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = Sq;
    a.seq_kv = Skv;
    a.query = q;
    a.key = k;
    a.value = v;
    a.out = y;
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = dy;
    size_t nw = mha_param_count(t.ctx, MHA_PARAM_WK);
    float *gw1 = malloc(nw * sizeof(float)), *gw2 = malloc(nw * sizeof(float));
    for (int round = 0; round < 3; round++) {
        fixture *f = round == 0 ? &fresh : &t;
        float *d = round == 0 ? d1 : d2;
        g.d_query = d, g.d_key = d + nq, g.d_value = d + nq + nkv;
        if (round == 1) { /* training mode on, then a forward on the same inputs */
            assert_int_equal(mha_attention_backward(t.ctx, &a, &g), MHA_OK);
            assert_int_equal(mha_attention_forward(t.ctx, &a), MHA_OK);
        }
        if (round == 2) { /* a forward whose value input differs */
            float keep = v[7];
            v[7] = keep + 1.0f;
            assert_int_equal(mha_attention_forward(t.ctx, &a), MHA_OK);
            v[7] = keep;
        }
        assert_int_equal(mha_zero_grad(f->ctx), MHA_OK);
        assert_int_equal(mha_attention_backward(f->ctx, &a, &g), MHA_OK);
        assert_int_equal(mha_get_grad(f->ctx, MHA_PARAM_WK, round ? gw2 : gw1, nw), MHA_OK);
        if (round) {
            if (memcmp(d1, d2, (nq + 2 * nkv) * sizeof(float)))
                fail_msg("round %d: input gradients differ", round);
            assert_memory_equal(gw1, gw2, nw * sizeof(float));
        }
    }
    /* FFN: forward on x, then backward on x, vs fresh */
    size_t nt = B * Sq;
    assert_int_equal(mha_ffn_backward(fresh.ctx, d1, dy, q, nt), MHA_OK);
    assert_int_equal(mha_ffn_forward(t.ctx, y, q, nt), MHA_OK);
    assert_int_equal(mha_ffn_backward(t.ctx, d2, dy, q, nt), MHA_OK);
    assert_memory_equal(d1, d2, nq * sizeof(float));
    assert_int_equal(mha_ffn_forward(t.ctx, y, dy, nt), MHA_OK); /* other data */
    assert_int_equal(mha_ffn_backward(t.ctx, d2, dy, q, nt), MHA_OK);
    assert_memory_equal(d1, d2, nq * sizeof(float));
    free(q), free(k), free(v), free(dy), free(y), free(d1), free(d2), free(gw1), free(gw2);
    fixture_free(&t);
    fixture_free(&fresh);
}

/* A context's forward gives the same bits before and after it has run a
 * backward (training mode keeps values, with the same arithmetic). */
static void forward_bits_independent_of_mode(void **s)
{
    (void)s;
    const int acts[] = {MHA_ACT_RELU, MHA_ACT_GELU, MHA_ACT_GELU_TANH, MHA_ACT_SWIGLU};
    for (int k = 0; k < 8; k++) {
        mha_config cfg = cfg_act(make_cfg(16, 4, 2, 0, 40), acts[k % 4], 1, k / 4);
        fixture f;
        fixture_make(&f, &cfg, 40 + (uint64_t)k);
        size_t B = 2, S = 70, n = B * S * 16;
        float *x = rand_floats(n, 1.0), *y1 = malloc(n * 4), *y2 = malloc(n * 4),
              *f1 = malloc(n * 4), *f2 = malloc(n * 4), *a1 = malloc(n * 4), *a2 = malloc(n * 4);
        int32_t len[2] = {70, 33};
        mha_attn_args a = self_args(B, S, x, NULL, len, 1);
        for (int round = 0; round < 2; round++) {
            a.out = round ? y2 : y1;
            assert_int_equal(mha_layer_forward(f.ctx, &a), MHA_OK);
            a.out = round ? a2 : a1;
            assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
            assert_int_equal(mha_ffn_forward(f.ctx, round ? f2 : f1, x, B * S), MHA_OK);
            if (round == 0) { /* enter training mode */
                mha_grad_args g;
                mha_grad_args_init(&g);
                g.d_out = x;
                g.d_query = y2;
                assert_int_equal(mha_layer_backward(f.ctx, &a, &g), MHA_OK);
            }
        }
        assert_memory_equal(y1, y2, n * 4);
        assert_memory_equal(a1, a2, n * 4);
        assert_memory_equal(f1, f2, n * 4);
        free(x), free(y1), free(y2), free(f1), free(f2), free(a1), free(a2);
        fixture_free(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(attn_self),
        cmocka_unit_test(attn_self_masks),
        cmocka_unit_test(attn_cross),
        cmocka_unit_test(attn_cross_causal_short_kv),
        cmocka_unit_test(attn_gqa),
        cmocka_unit_test(attn_mqa_cross_nobias),
        cmocka_unit_test(attn_multi_tile),
        cmocka_unit_test(ffn_relu),
        cmocka_unit_test(ffn_gelu),
        cmocka_unit_test(ffn_gelu_tanh_nobias),
        cmocka_unit_test(ffn_swiglu),
        cmocka_unit_test(ffn_swiglu_nobias),
        cmocka_unit_test(layer_post_gelu),
        cmocka_unit_test(layer_pre_relu_masks),
        cmocka_unit_test(layer_post_swiglu_gqa),
        cmocka_unit_test(layer_pre_gelu_tanh_nobias),
        cmocka_unit_test(layer_post_masks_nobias),
        cmocka_unit_test(accumulate_and_zero),
        cmocka_unit_test(backward_errors),
        cmocka_unit_test(kept_values_never_stale),
        cmocka_unit_test(kept_values_attention_ffn),
        cmocka_unit_test(forward_bits_independent_of_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
