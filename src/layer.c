/* layer.c - the encoder layer (PyTorch nn.TransformerEncoderLayer, dropout 0).
 *   post-norm: A = x + MHA(x); h = LN1(A); y = LN2(h + FFN(h))
 *   pre-norm:  n = LN1(x); h = x + MHA(n); y = h + FFN(LN2(h))
 * Residuals are folded into the output projections (see gemm.c). The
 * attention and FFN workspaces are never live at the same time, so they
 * share one region after the layer's own two [N, D] buffers. */
#include "internal.h"

static const mha_param all_params[] = {
    MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV, MHA_PARAM_WO, MHA_PARAM_BQ, MHA_PARAM_BK,
    MHA_PARAM_BV, MHA_PARAM_BO, MHA_PARAM_W1, MHA_PARAM_B1, MHA_PARAM_W2, MHA_PARAM_B2,
    MHA_PARAM_W3, MHA_PARAM_LN1_WEIGHT, MHA_PARAM_LN1_BIAS, MHA_PARAM_LN2_WEIGHT,
    MHA_PARAM_LN2_BIAS,
};

mha_status mha_layer_forward(mha_ctx *ctx, const mha_attn_args *a)
{
    mha__attn_view v;
    mha_status st = mha__attn_args_check(ctx, a, &v);
    if (st != MHA_OK)
        return st;
    if (!v.self)
        return MHA_ERR_UNSUPPORTED;
    if (v.batch == 0 || v.seq_q == 0)
        return MHA_OK;
    if ((st = mha__require(ctx, all_params, sizeof all_params / sizeof all_params[0])))
        return st;

    const size_t N = v.batch * v.seq_q, D = ctx->d_model;
    mha__plan p = {0, 0};
    size_t buf_a = mha__plan_add(&p, N, D), buf_b = mha__plan_add(&p, N, D);
    mha__plan pf = p;
    mha__attn_ws aw;
    mha__ffn_ws fw;
    if ((st = mha__attn_plan(ctx, &v, &p, &aw)))
        return st;
    mha__ffn_plan(ctx, N, &pf, &fw);
    if (pf.bad)
        return MHA_ERR_OVERFLOW;
    if ((st = mha__ws_reserve(ctx, p.total > pf.total ? p.total : pf.total)))
        return st;

    float *A = ctx->ws + buf_a, *B = ctx->ws + buf_b, *y = v.out; /* [N, D] each */
    const float *x = v.query, *ln1w = mha__p(ctx, MHA_PARAM_LN1_WEIGHT),
                *ln1b = mha__p(ctx, MHA_PARAM_LN1_BIAS), *ln2w = mha__p(ctx, MHA_PARAM_LN2_WEIGHT),
                *ln2b = mha__p(ctx, MHA_PARAM_LN2_BIAS);
    if (ctx->norm_first) {
        mha__layernorm_forward(ctx, A, x, ln1w, ln1b, N, D, ctx->ln_eps);
        mha__attn_run(ctx, &v, &aw, A, x, B);                          /* B = h */
        mha__layernorm_forward(ctx, A, B, ln2w, ln2b, N, D, ctx->ln_eps);
        mha__ffn_run(ctx, &fw, N, A, B, y);
    } else {
        mha__attn_run(ctx, &v, &aw, x, x, A);
        mha__layernorm_forward(ctx, B, A, ln1w, ln1b, N, D, ctx->ln_eps); /* B = h */
        mha__ffn_run(ctx, &fw, N, B, B, y);
        mha__layernorm_forward(ctx, y, y, ln2w, ln2b, N, D, ctx->ln_eps);
    }
    return MHA_OK;
}
