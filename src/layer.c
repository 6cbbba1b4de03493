/* layer.c - the encoder layer (PyTorch nn.TransformerEncoderLayer, dropout 0).
 *   post-norm: A = x + MHA(x); h = LN1(A); U = h + FFN(h); y = LN2(U)
 *   pre-norm:  n1 = LN1(x); h = x + MHA(n1); n2 = LN2(h); y = h + FFN(n2)
 * Residuals are folded into the output projections (see gemm.c). In the
 * forward the attention and FFN workspaces are never live at once, so they
 * share one region after the layer's own buffers; the backward keeps both. */
#include "internal.h"

static const mha_param all_params[] = {
    MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV, MHA_PARAM_WO, MHA_PARAM_BQ, MHA_PARAM_BK,
    MHA_PARAM_BV, MHA_PARAM_BO, MHA_PARAM_W1, MHA_PARAM_B1, MHA_PARAM_W2, MHA_PARAM_B2,
    MHA_PARAM_W3, MHA_PARAM_LN1_WEIGHT, MHA_PARAM_LN1_BIAS, MHA_PARAM_LN2_WEIGHT,
    MHA_PARAM_LN2_BIAS,
};

/* Workspace of one layer call: n_bufs [N, D] buffers, then the attention
 * and FFN regions (shared in the forward, separate in the backward). */
typedef struct layer_ws {
    size_t buf[5];
    size_t ln_partials;
    mha__attn_ws aw;
    mha__ffn_ws fw;
} layer_ws;

static mha_status layer_prepare(mha_ctx *ctx, const mha__attn_view *v, int backward,
                                layer_ws *L)
{
    const size_t N = v->batch * v->seq_q, D = ctx->d_model;
    mha__plan p = {0, 0};
    for (int i = 0; i < (backward ? 5 : 2); i++)
        L->buf[i] = mha__plan_add(&p, N, D);
    if (backward)
        L->ln_partials = mha__plan_add(&p, mha__layernorm_bwd_ws(N, D), 1);
    mha__plan pf = p;
    mha_status st = mha__attn_plan(ctx, v, backward, &p, &L->aw);
    if (st != MHA_OK)
        return st;
    if (backward)
        pf = p; /* the FFN's kept values must survive the attention's */
    mha__ffn_plan(ctx, N, backward, &pf, &L->fw);
    if (pf.bad)
        return MHA_ERR_OVERFLOW;
    if ((st = mha__ws_reserve(ctx, p.total > pf.total ? p.total : pf.total)))
        return st;
    return backward ? mha__grads_ready(ctx) : MHA_OK;
}

/* What both entry points do after checking their arguments (check = that
 * status): self-attention only, empty calls succeed at once (*empty), every
 * weight set, workspace (and gradients) ready. */
static mha_status layer_begin(mha_ctx *ctx, mha_status check, const mha__attn_view *v,
                              int backward, layer_ws *L, int *empty)
{
    *empty = 0;
    if (check != MHA_OK)
        return check;
    if (!v->self)
        return MHA_ERR_UNSUPPORTED;
    if (v->batch == 0 || v->seq_q == 0) {
        *empty = 1;
        return MHA_OK;
    }
    mha_status st = mha__require(ctx, all_params, sizeof all_params / sizeof all_params[0]);
    return st != MHA_OK ? st : layer_prepare(ctx, v, backward, L);
}

/* The forward keeping what the backward needs, in L's buffers:
 *   pre-norm:  buf0 = n1, buf1 = h, buf2 = n2 (and the FFN's values)
 *   post-norm: buf0 = A,  buf1 = h, buf2 = U
 * y = the layer's output, or NULL when only the kept values are wanted. */
static void layer_forward_keep(mha_ctx *ctx, const mha__attn_view *v, const layer_ws *L,
                               float *y)
{
    const size_t N = v->batch * v->seq_q, D = ctx->d_model;
    float *b0 = ctx->ws + L->buf[0], *b1 = ctx->ws + L->buf[1], *b2 = ctx->ws + L->buf[2];
    const float *x = v->query, *ln1w = mha__p(ctx, MHA_PARAM_LN1_WEIGHT),
                *ln1b = mha__p(ctx, MHA_PARAM_LN1_BIAS), *ln2w = mha__p(ctx, MHA_PARAM_LN2_WEIGHT),
                *ln2b = mha__p(ctx, MHA_PARAM_LN2_BIAS);
    if (ctx->norm_first) {
        mha__layernorm_forward(ctx, b0, x, ln1w, ln1b, N, D, ctx->ln_eps);
        mha__attn_forward_keep(ctx, v, &L->aw, b0, x, b1);
        mha__layernorm_forward(ctx, b2, b1, ln2w, ln2b, N, D, ctx->ln_eps);
        mha__ffn_forward_keep(ctx, &L->fw, N, b2, b1, y);
    } else {
        mha__attn_forward_keep(ctx, v, &L->aw, x, x, b0);
        mha__layernorm_forward(ctx, b1, b0, ln1w, ln1b, N, D, ctx->ln_eps);
        mha__ffn_forward_keep(ctx, &L->fw, N, b1, b1, b2);
        if (y)
            mha__layernorm_forward(ctx, y, b2, ln2w, ln2b, N, D, ctx->ln_eps);
    }
}

mha_status mha_layer_forward(mha_ctx *ctx, const mha_attn_args *a)
{
    mha__attn_view v;
    layer_ws L;
    const int train = ctx && mha__training(ctx); /* keep values for a backward */
    int empty;
    mha_status st = layer_begin(ctx, mha__attn_args_check(ctx, a, &v), &v, train, &L, &empty);
    if (st != MHA_OK || empty)
        return st;
    mha__saved_drop(ctx);
    if (train) {
        layer_forward_keep(ctx, &v, &L, v.out);
        if (!v.attn_weights) /* the weights path blocks differently: not kept */
            mha__saved_store(ctx, MHA__OP_LAYER, &v, NULL, 0);
        return MHA_OK;
    }

    const size_t N = v.batch * v.seq_q, D = ctx->d_model;
    float *A = ctx->ws + L.buf[0], *B = ctx->ws + L.buf[1], *y = v.out; /* [N, D] each */
    const float *x = v.query, *ln1w = mha__p(ctx, MHA_PARAM_LN1_WEIGHT),
                *ln1b = mha__p(ctx, MHA_PARAM_LN1_BIAS), *ln2w = mha__p(ctx, MHA_PARAM_LN2_WEIGHT),
                *ln2b = mha__p(ctx, MHA_PARAM_LN2_BIAS);
    if (ctx->norm_first) {
        mha__layernorm_forward(ctx, A, x, ln1w, ln1b, N, D, ctx->ln_eps);
        mha__attn_forward_keep(ctx, &v, &L.aw, A, x, B); /* B = h */
        mha__layernorm_forward(ctx, A, B, ln2w, ln2b, N, D, ctx->ln_eps);
        mha__ffn_forward_keep(ctx, &L.fw, N, A, B, y);
    } else {
        mha__attn_forward_keep(ctx, &v, &L.aw, x, x, A);
        mha__layernorm_forward(ctx, B, A, ln1w, ln1b, N, D, ctx->ln_eps); /* B = h */
        mha__ffn_forward_keep(ctx, &L.fw, N, B, B, y);
        mha__layernorm_forward(ctx, y, y, ln2w, ln2b, N, D, ctx->ln_eps);
    }
    return MHA_OK;
}

mha_status mha_layer_backward(mha_ctx *ctx, const mha_attn_args *a, const mha_grad_args *g)
{
    mha__attn_view v;
    layer_ws L;
    int empty;
    mha_status st = layer_begin(ctx, mha__grad_args_check(ctx, a, g, &v), &v, 1, &L, &empty);
    if (st != MHA_OK || empty)
        return st;

    const size_t N = v.batch * v.seq_q, D = ctx->d_model, bytes = N * D * sizeof(float);
    float *ws = ctx->ws, *gr = ctx->grads, *part = ws + L.ln_partials;
    float *b0 = ws + L.buf[0], *b1 = ws + L.buf[1], *b2 = ws + L.buf[2], *b3 = ws + L.buf[3],
          *b4 = ws + L.buf[4]; /* [N, D] each */
    const float *x = v.query, *dy = g->d_out;
    float *dx = g->d_query, eps = ctx->ln_eps;
    const float *ln1w = mha__p(ctx, MHA_PARAM_LN1_WEIGHT), *ln2w = mha__p(ctx, MHA_PARAM_LN2_WEIGHT);
    float *dln1w = gr + ctx->param_off[MHA_PARAM_LN1_WEIGHT],
          *dln1b = gr + ctx->param_off[MHA_PARAM_LN1_BIAS],
          *dln2w = gr + ctx->param_off[MHA_PARAM_LN2_WEIGHT],
          *dln2b = gr + ctx->param_off[MHA_PARAM_LN2_BIAS];
    int reuse = mha__saved_match(ctx, MHA__OP_LAYER, &v, NULL, 0);
    mha__saved_drop(ctx);
    if (!reuse)
        layer_forward_keep(ctx, &v, &L, NULL);
    mha__saved_reserve(ctx, &v, NULL, 0);
    if (ctx->norm_first) {
        float *n1 = b0, *h = b1, *n2 = b2, *dn = b3, *dh = b4;
        /* y = h + FFN(n2): dh = dy + LN2'(FFN'(dy)) */
        mha__ffn_backward(ctx, &L.fw, N, n2, dy, dn, 0.0f);
        memcpy(dh, dy, bytes);
        mha__layernorm_backward(ctx, dh, 1, dn, h, ln2w, dln2w, dln2b, N, D, eps, part);
        /* h = x + MHA(n1): dx = dh + LN1'(MHA'(dh)) */
        mha__attn_backward(ctx, &v, &L.aw, n1, dh, dn, 0.0f, NULL, NULL);
        memcpy(dx, dh, bytes);
        mha__layernorm_backward(ctx, dx, 1, dn, x, ln1w, dln1w, dln1b, N, D, eps, part);
    } else {
        float *A = b0, *h = b1, *U = b2, *dU = b3, *dh = b4;
        /* y = LN2(U), U = h + FFN(h): dh = dU + FFN'(dU) */
        mha__layernorm_backward(ctx, dU, 0, dy, U, ln2w, dln2w, dln2b, N, D, eps, part);
        memcpy(dh, dU, bytes);
        mha__ffn_backward(ctx, &L.fw, N, h, dU, dh, 1.0f);
        /* h = LN1(A), A = x + MHA(x): dx = dA + MHA'(dA) */
        float *dA = dU;
        mha__layernorm_backward(ctx, dA, 0, dh, A, ln1w, dln1w, dln1b, N, D, eps, part);
        memcpy(dx, dA, bytes);
        mha__attn_backward(ctx, &v, &L.aw, x, dA, dx, 1.0f, NULL, NULL);
    }
    return MHA_OK;
}
