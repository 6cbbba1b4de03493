/* ffn.c - position-wise feed-forward network, forward and backward.
 *   hidden = act(x W1^T + b1)            (bias + activation fused into the sgemm's epilogue)
 *   out    = hidden W2^T + b2 + residual (bias + residual written first, sgemm beta = 1)
 * SwiGLU computes x [W1|W3]^T in one sgemm (W1 and W3 are stored back to back)
 * and hidden = silu(. + b1) * gate.
 * The backward keeps the pre-activations of a forward recompute:
 *   dW2 += dy^T a, db2 += sum dy, da = dy W2, dpre = da act'(pre),
 *   d[W1|W3] += dpre^T x, db1 += sum dpre, dx = dpre [W1|W3]. */
#include "internal.h"

void mha__ffn_plan(const mha_ctx *ctx, size_t n_tokens, int backward, mha__plan *p,
                   mha__ffn_ws *w)
{
    int swiglu = ctx->activation == MHA_ACT_SWIGLU;
    w->backward = backward;
    w->ldh = swiglu ? 2 * ctx->d_ff : ctx->d_ff;
    w->hidden = mha__plan_add(p, n_tokens, w->ldh); /* backward: pre-activations */
    if (backward) {
        w->act = mha__plan_add(p, n_tokens, ctx->d_ff);
        w->dpre = swiglu ? mha__plan_add(p, n_tokens, w->ldh) : w->act;
    }
}

/* Elementwise passes of the backward, over fixed blocks of rows. */
enum { EW_ACT_FWD, EW_ACT_BWD };
typedef struct ew_job {
    const mha_ctx *ctx;
    const mha__ffn_ws *w;
    int mode;
    size_t n;
} ew_job;

#define EW_ROWS 16

static void ew_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const ew_job *j = arg;
    const mha_ctx *ctx = j->ctx;
    const size_t F = ctx->d_ff, ldh = j->w->ldh;
    const float *b1 = mha__p_opt(ctx, MHA_PARAM_B1);
    float *pre = ctx->ws + j->w->hidden, *act = ctx->ws + j->w->act, *dpre = ctx->ws + j->w->dpre;
    for (size_t r = task * EW_ROWS; r < mha__min(j->n, (task + 1) * EW_ROWS); r++) {
        float *u = pre + r * ldh, *a = act + r * F;
        if (j->mode == EW_ACT_FWD) {
            if (ctx->activation == MHA_ACT_SWIGLU) {
                mha__swiglu_forward_keep(a, u, u + F, b1, F);
            } else {
                /* u += b1 then act: the inference epilogue's arithmetic,
                 * so a forward gives the same bits in either mode */
                if (b1)
                    for (size_t i = 0; i < F; i++)
                        u[i] += b1[i];
                memcpy(a, u, F * sizeof(float));
                mha__act_forward(ctx->activation, a, NULL, F);
            }
        } else if (ctx->activation == MHA_ACT_SWIGLU) {
            float *du = dpre + r * ldh;
            mha__swiglu_backward(du, du + F, u, u + F, b1, a, F); /* a holds da */
        } else {
            mha__act_backward(ctx->activation, a, u, F); /* in place: dpre = act */
        }
    }
}

void mha__ffn_forward_keep(mha_ctx *ctx, const mha__ffn_ws *w, size_t n_tokens, const float *x,
                           const float *residual, float *out)
{
    const size_t D = ctx->d_model;
    float *hidden = ctx->ws + w->hidden; /* [n_tokens, ldh] */
    const float *b1 = mha__p_opt(ctx, MHA_PARAM_B1);
    const float *a = hidden;
    size_t lda = w->ldh;
    if (!w->backward) {
        mha__linear up = {n_tokens, w->ldh, D, x, D, mha__p(ctx, MHA_PARAM_W1), b1, NULL, 0,
                          hidden, w->ldh, ctx->activation, ctx->d_ff};
        mha__linear_forward(ctx, &up);
    } else {
        /* keep pre-activations (b1 is added by the elementwise pass; SwiGLU
         * keeps u without b1, and the gate) */
        mha__linear up = {n_tokens, w->ldh, D, x, D, mha__p(ctx, MHA_PARAM_W1), NULL, NULL, 0,
                          hidden, w->ldh, -1, 0};
        mha__linear_forward(ctx, &up);
        ew_job j = {ctx, w, EW_ACT_FWD, n_tokens};
        mha__pool_run(ctx->pool, (n_tokens + EW_ROWS - 1) / EW_ROWS, ew_task, &j);
        a = ctx->ws + w->act;
        lda = ctx->d_ff;
    }
    if (!out)
        return;
    mha__linear down = {n_tokens, D, ctx->d_ff, a, lda, mha__p(ctx, MHA_PARAM_W2),
                        mha__p_opt(ctx, MHA_PARAM_B2), residual, D, out, D, -1, 0};
    mha__linear_forward(ctx, &down);
}

void mha__ffn_backward(mha_ctx *ctx, const mha__ffn_ws *w, size_t n, const float *x,
                       const float *dy, float *dx, float beta)
{
    const size_t D = ctx->d_model, F = ctx->d_ff;
    const int swiglu = ctx->activation == MHA_ACT_SWIGLU;
    float *act = ctx->ws + w->act, *dpre = ctx->ws + w->dpre, *g = ctx->grads;
    const size_t ldd = swiglu ? w->ldh : F, nd = swiglu ? 2 * F : F;

    mha__gemm(ctx, 1, 0, D, F, n, dy, D, act, F, 1.0f, g + ctx->param_off[MHA_PARAM_W2], F);
    if (ctx->param_n[MHA_PARAM_B2])
        mha__colsum_acc(ctx, g + ctx->param_off[MHA_PARAM_B2], dy, n, D, D);
    /* da = dy W2 replaces the activations, then becomes dpre */
    mha__gemm(ctx, 0, 0, n, F, D, dy, D, mha__p(ctx, MHA_PARAM_W2), F, 0.0f, act, F);
    ew_job j = {ctx, w, EW_ACT_BWD, n};
    mha__pool_run(ctx->pool, (n + EW_ROWS - 1) / EW_ROWS, ew_task, &j);

    /* W1|W3 (and their grads) are contiguous: one GEMM for both */
    mha__gemm(ctx, 1, 0, nd, D, n, dpre, ldd, x, D, 1.0f, g + ctx->param_off[MHA_PARAM_W1], D);
    if (ctx->param_n[MHA_PARAM_B1])
        mha__colsum_acc(ctx, g + ctx->param_off[MHA_PARAM_B1], dpre, n, F, ldd);
    mha__gemm(ctx, 0, 0, n, D, nd, dpre, ldd, mha__p(ctx, MHA_PARAM_W1), D, beta, dx, D);
}

const mha_param mha__ffn_params[MHA__N_FFN_PARAMS] = {
    MHA_PARAM_W1, MHA_PARAM_B1, MHA_PARAM_W2, MHA_PARAM_B2, MHA_PARAM_W3,
};

/* Common checks of mha_ffn_forward / _backward: sizes, aliasing of `out`
 * with the inputs, weights set. */
static mha_status ffn_check(mha_ctx *ctx, const float *out, const float *const *in, size_t n_in,
                            size_t n_tokens)
{
    if (!ctx)
        return MHA_ERR_NULL_ARG;
    if (n_tokens == 0)
        return MHA_OK;
    if (!out)
        return MHA_ERR_NULL_ARG;
    for (size_t i = 0; i < n_in; i++)
        if (!in[i])
            return MHA_ERR_NULL_ARG;
    size_t bytes;
    if (mha__mul3(n_tokens, ctx->d_model, sizeof(float), &bytes) || n_tokens > INT32_MAX)
        return MHA_ERR_OVERFLOW;
    mha__region ro = {out, bytes};
    for (size_t i = 0; i < n_in; i++) {
        mha__region ri = {in[i], bytes};
        if (mha__overlap(ro, ri))
            return MHA_ERR_ALIAS;
    }
    return mha__require(ctx, mha__ffn_params, MHA__N_FFN_PARAMS);
}

static mha_status ffn_prepare(mha_ctx *ctx, size_t n_tokens, int backward, mha__ffn_ws *w)
{
    mha__plan p = {0, 0};
    mha__ffn_plan(ctx, n_tokens, backward, &p, w);
    if (p.bad)
        return MHA_ERR_OVERFLOW;
    mha_status st = mha__ws_reserve(ctx, p.total);
    if (st == MHA_OK && backward)
        st = mha__grads_ready(ctx);
    return st;
}

mha_status mha_ffn_forward(mha_ctx *ctx, float *out, const float *x, size_t n_tokens)
{
    const float *in[] = {x};
    mha__ffn_ws w;
    mha_status st = ffn_check(ctx, out, in, 1, n_tokens);
    const int train = ctx && mha__training(ctx); /* keep values for a backward */
    if (st != MHA_OK || n_tokens == 0 || (st = ffn_prepare(ctx, n_tokens, train, &w)))
        return st;
    mha__saved_drop(ctx);
    mha__ffn_forward_keep(ctx, &w, n_tokens, x, NULL, out);
    if (train)
        mha__saved_store(ctx, MHA__OP_FFN, NULL, x, n_tokens);
    return MHA_OK;
}

mha_status mha_ffn_backward(mha_ctx *ctx, float *d_x, const float *d_out, const float *x,
                            size_t n_tokens)
{
    const float *in[] = {d_out, x};
    mha__ffn_ws w;
    mha_status st = ffn_check(ctx, d_x, in, 2, n_tokens);
    if (st != MHA_OK || n_tokens == 0 || (st = ffn_prepare(ctx, n_tokens, 1, &w)))
        return st;
    int reuse = mha__saved_match(ctx, MHA__OP_FFN, NULL, x, n_tokens);
    mha__saved_drop(ctx);
    if (!reuse)
        mha__ffn_forward_keep(ctx, &w, n_tokens, x, NULL, NULL);
    mha__saved_reserve(ctx, NULL, x, n_tokens);
    mha__ffn_backward(ctx, &w, n_tokens, x, d_out, d_x, 0.0f);
    return MHA_OK;
}
