/* ffn.c - position-wise feed-forward network forward.
 *   hidden = act(x W1^T + b1)            (bias + activation fused into the sgemm's epilogue)
 *   out    = hidden W2^T + b2 + residual (bias + residual written first, sgemm beta = 1)
 * SwiGLU computes x [W1|W3]^T in one sgemm (W1 and W3 are stored back to back)
 * and hidden = silu(. + b1) * gate in place. */
#include "internal.h"

void mha__ffn_plan(const mha_ctx *ctx, size_t n_tokens, mha__plan *p, mha__ffn_ws *w)
{
    w->ldh = ctx->activation == MHA_ACT_SWIGLU ? 2 * ctx->d_ff : ctx->d_ff;
    w->hidden = mha__plan_add(p, n_tokens, w->ldh);
}

void mha__ffn_run(mha_ctx *ctx, const mha__ffn_ws *w, size_t n_tokens, const float *x,
                  const float *residual, float *out)
{
    const size_t D = ctx->d_model;
    float *hidden = ctx->ws + w->hidden; /* [n_tokens, ldh] */
    mha__linear up = {n_tokens, w->ldh, D, x, D, mha__p(ctx, MHA_PARAM_W1),
                      mha__p_opt(ctx, MHA_PARAM_B1), NULL, 0, hidden, w->ldh,
                      ctx->activation, ctx->d_ff};
    mha__linear_forward(ctx, &up);
    mha__linear down = {n_tokens, D, ctx->d_ff, hidden, w->ldh, mha__p(ctx, MHA_PARAM_W2),
                        mha__p_opt(ctx, MHA_PARAM_B2), residual, D, out, D, -1, 0};
    mha__linear_forward(ctx, &down);
}

static const mha_param ffn_params[] = {
    MHA_PARAM_W1, MHA_PARAM_B1, MHA_PARAM_W2, MHA_PARAM_B2, MHA_PARAM_W3,
};

mha_status mha_ffn_forward(mha_ctx *ctx, float *out, const float *x, size_t n_tokens)
{
    if (!ctx)
        return MHA_ERR_NULL_ARG;
    if (n_tokens == 0)
        return MHA_OK;
    if (!out || !x)
        return MHA_ERR_NULL_ARG;
    size_t bytes;
    if (mha__mul3(n_tokens, ctx->d_model, sizeof(float), &bytes) || n_tokens > INT32_MAX)
        return MHA_ERR_OVERFLOW;
    mha__region ro = {out, bytes}, rx = {x, bytes};
    if (mha__overlap(ro, rx))
        return MHA_ERR_ALIAS;
    mha_status st = mha__require(ctx, ffn_params, sizeof ffn_params / sizeof ffn_params[0]);
    if (st != MHA_OK)
        return st;
    mha__plan p = {0, 0};
    mha__ffn_ws w;
    mha__ffn_plan(ctx, n_tokens, &p, &w);
    if (p.bad)
        return MHA_ERR_OVERFLOW;
    if ((st = mha__ws_reserve(ctx, p.total)))
        return st;
    mha__ffn_run(ctx, &w, n_tokens, x, NULL, out);
    return MHA_OK;
}
