/* params.c - the parameter table: sizes, one allocation, set/get.
 *
 * Storage order differs from the enum so that fused GEMMs read contiguous
 * weights: WQ|WK|WV form one [(H + 2 Hkv) dh, d_model] matrix and BQ|BK|BV
 * one bias vector (one sgemm for self-attention's projections), and W1|W3
 * one [2 d_ff, d_model] matrix (one sgemm for SwiGLU). */
#include "internal.h"

#include <stdlib.h>

static const mha_param storage_order[MHA_PARAM_COUNT] = {
    MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV, MHA_PARAM_BQ, MHA_PARAM_BK, MHA_PARAM_BV,
    MHA_PARAM_WO, MHA_PARAM_BO, MHA_PARAM_W1, MHA_PARAM_W3, MHA_PARAM_B1, MHA_PARAM_W2,
    MHA_PARAM_B2, MHA_PARAM_LN1_WEIGHT, MHA_PARAM_LN1_BIAS, MHA_PARAM_LN2_WEIGHT,
    MHA_PARAM_LN2_BIAS,
};

static int is_bias(mha_param p)
{
    return p == MHA_PARAM_BQ || p == MHA_PARAM_BK || p == MHA_PARAM_BV || p == MHA_PARAM_BO ||
           p == MHA_PARAM_B1 || p == MHA_PARAM_B2;
}

/* Computes counts and offsets and allocates ctx->params. */
mha_status mha__params_layout(mha_ctx *ctx)
{
    size_t D = ctx->d_model, n[MHA_PARAM_COUNT] = {0};
    if (mha__mul(ctx->d_q, D, &n[MHA_PARAM_WQ]) || mha__mul(ctx->d_kv, D, &n[MHA_PARAM_WK]) ||
        mha__mul(D, ctx->d_q, &n[MHA_PARAM_WO]) || mha__mul(ctx->d_ff, D, &n[MHA_PARAM_W1]))
        return MHA_ERR_OVERFLOW;
    n[MHA_PARAM_WV] = n[MHA_PARAM_WK];
    n[MHA_PARAM_W2] = n[MHA_PARAM_W1];
    n[MHA_PARAM_W3] = ctx->activation == MHA_ACT_SWIGLU ? n[MHA_PARAM_W1] : 0;
    n[MHA_PARAM_BQ] = ctx->d_q;
    n[MHA_PARAM_BK] = n[MHA_PARAM_BV] = ctx->d_kv;
    n[MHA_PARAM_BO] = n[MHA_PARAM_B2] = D;
    n[MHA_PARAM_B1] = ctx->d_ff;
    n[MHA_PARAM_LN1_WEIGHT] = n[MHA_PARAM_LN1_BIAS] = D;
    n[MHA_PARAM_LN2_WEIGHT] = n[MHA_PARAM_LN2_BIAS] = D;

    size_t off = 0;
    for (size_t i = 0; i < MHA_PARAM_COUNT; i++) {
        mha_param p = storage_order[i];
        size_t c = (is_bias(p) && !ctx->bias) ? 0 : n[p];
        ctx->param_n[p] = c;
        ctx->param_off[p] = off;
        if (mha__add(off, c, &off))
            return MHA_ERR_OVERFLOW;
    }
    size_t bytes;
    if (mha__mul(off, sizeof(float), &bytes))
        return MHA_ERR_OVERFLOW;
    ctx->params = mha__big_alloc(bytes);
    ctx->params_total = off;
    return ctx->params ? MHA_OK : MHA_ERR_NO_MEMORY;
}

mha_status mha__grads_ready(mha_ctx *ctx)
{
    if (!ctx->grads)
        ctx->grads = mha__big_calloc(ctx->params_total, sizeof(float));
    return ctx->grads ? MHA_OK : MHA_ERR_NO_MEMORY;
}

static mha_status check_param(const mha_ctx *ctx, mha_param p, const void *buf, size_t count)
{
    if (!ctx || !buf)
        return MHA_ERR_NULL_ARG;
    if ((unsigned)p >= MHA_PARAM_COUNT)
        return MHA_ERR_BAD_PARAM;
    if (ctx->param_n[p] == 0)
        return MHA_ERR_PARAM_UNUSED;
    if (count != ctx->param_n[p])
        return MHA_ERR_COUNT_MISMATCH;
    return MHA_OK;
}

size_t mha_param_count(const mha_ctx *ctx, mha_param p)
{
    if (!ctx || (unsigned)p >= MHA_PARAM_COUNT)
        return 0;
    return ctx->param_n[p];
}

mha_status mha_set_param(mha_ctx *ctx, mha_param p, const float *src, size_t count)
{
    mha_status st = check_param(ctx, p, src, count);
    if (st != MHA_OK)
        return st;
    /* memmove: src may legally be a view of memory we returned elsewhere. */
    memmove(mha__p(ctx, p), src, count * sizeof(float));
    ctx->param_set[p] = 1;
    ctx->params_gen++; /* values kept for a backward are stale now */
    return MHA_OK;
}

mha_status mha_get_param(const mha_ctx *ctx, mha_param p, float *dst, size_t count)
{
    mha_status st = check_param(ctx, p, dst, count);
    if (st != MHA_OK)
        return st;
    if (!ctx->param_set[p])
        return MHA_ERR_PARAM_NOT_SET;
    memcpy(dst, mha__p(ctx, p), count * sizeof(float));
    return MHA_OK;
}

mha_status mha__require(const mha_ctx *ctx, const mha_param *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ctx->param_n[list[i]] && !ctx->param_set[list[i]])
            return MHA_ERR_PARAM_NOT_SET;
    return MHA_OK;
}

mha_status mha_get_grad(const mha_ctx *ctx, mha_param p, float *dst, size_t count)
{
    mha_status st = check_param(ctx, p, dst, count);
    if (st != MHA_OK)
        return st;
    if (ctx->grads)
        memcpy(dst, ctx->grads + ctx->param_off[p], count * sizeof(float));
    else
        memset(dst, 0, count * sizeof(float));
    return MHA_OK;
}

mha_status mha_zero_grad(mha_ctx *ctx)
{
    if (!ctx)
        return MHA_ERR_NULL_ARG;
    if (ctx->grads)
        memset(ctx->grads, 0, ctx->params_total * sizeof(float));
    return MHA_OK;
}
