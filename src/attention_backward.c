/* attention_backward.c - gradients of multi-head attention.
 *
 * The core follows FlashAttention's backward: P is recomputed tile by tile
 * from the scores and the per-row log-sum-exp saved by the forward recompute,
 * so memory stays O(seq). Per tile (query block i, key block j):
 *   S  = scale Q_i K_j^T;  P = exp(S + bias - lse), masks
 *   dV_j += P^T dO_i;      dP = dO_i V_j^T;  dS = P (dP - D_i), D = rowsum(dO O)
 *   dQ_i += scale dS K_j;  dK_j += scale dS^T Q_i
 * A task owns one (batch, kv head): it loops over the query heads of its
 * group, key blocks and query blocks in a fixed order, so dK, dV (summed
 * over the group and the queries) and dQ are accumulated by one thread in
 * one order: no atomics, bitwise identical for any thread count. */
#include "internal.h"

#include <cblas.h>
#include <math.h>

typedef struct bwd_job {
    const mha_ctx *ctx;
    const mha__attn_view *v;
    const mha__attn_ws *w;
    float scale;
} bwd_job;

static void bwd_task(void *arg, size_t task, size_t thread)
{
    const bwd_job *J = arg;
    const mha__attn_view *v = J->v;
    const mha__attn_ws *w = J->w;
    const float *ws = J->ctx->ws;
    const size_t H = J->ctx->n_heads, dh = J->ctx->d_head, dqw = J->ctx->d_q;
    const size_t Hkv = J->ctx->n_kv_heads, group = H / Hkv, Sq = v->seq_q, Skv = v->seq_kv;
    const size_t b = task / Hkv, g = task % Hkv;
    const size_t len = v->kv_lengths ? (size_t)v->kv_lengths[b] : Skv;
    const size_t BQ = MHA_ATTN_BWD_BQ, BK = MHA_ATTN_BWD_BK;

    float *P = J->ctx->ws + w->scratch + thread * w->scratch_stride; /* [BQ, BK] */
    float *dS = P + BQ * BK;                                        /* [BQ, BK] */
    float *Dr = dS + BQ * BK;                                       /* [Sq] */
    const float *K = ws + w->k + b * Skv * w->ldk + g * dh;         /* [Skv, dh] ld ldk */
    const float *V = ws + w->v + b * Skv * w->ldv + g * dh;         /* [Skv, dh] ld ldv */
    float *dK = J->ctx->ws + w->dk + b * Skv * w->ldk + g * dh;     /* [Skv, dh] ld ldk */
    float *dV = J->ctx->ws + w->dv + b * Skv * w->ldv + g * dh;     /* [Skv, dh] ld ldv */
    for (size_t j = 0; j < Skv; j++) {
        memset(dK + j * w->ldk, 0, dh * sizeof(float));
        memset(dV + j * w->ldv, 0, dh * sizeof(float));
    }
    const size_t kend = mha__row_limit(Sq - 1, Sq, Skv, len, v->causal);

    for (size_t hh = 0; hh < group; hh++) {
        const size_t h = g * group + hh;
        const float *Q = ws + w->q + b * Sq * w->ldq + h * dh;  /* [Sq, dh] ld ldq */
        const float *O = ws + w->o + b * Sq * dqw + h * dh;     /* [Sq, dh] ld dq */
        const float *dO = ws + w->d_o + b * Sq * dqw + h * dh;  /* [Sq, dh] ld dq */
        float *dQ = J->ctx->ws + w->dq + b * Sq * w->ldq + h * dh; /* [Sq, dh] ld ldq */
        const float *lse = ws + w->lse + (b * H + h) * Sq;      /* [Sq] */
        for (size_t r = 0; r < Sq; r++) {
            memset(dQ + r * w->ldq, 0, dh * sizeof(float));
            Dr[r] = mha__dot(dO + r * dqw, O + r * dqw, dh);
        }
        for (size_t k0 = 0; k0 < kend; k0 += BK) {
            size_t nk = mha__min(BK, kend - k0);
            for (size_t q0 = 0; q0 < Sq; q0 += BQ) {
                size_t nq = mha__min(BQ, Sq - q0);
                if (mha__row_limit(q0 + nq - 1, Sq, Skv, len, v->causal) <= k0)
                    continue; /* every row of this block is masked on these keys */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)dh,
                            J->scale, Q + q0 * w->ldq, (int)w->ldq, K + k0 * w->ldk,
                            (int)w->ldk, 0.0f, P, (int)BK);
                for (size_t r = 0; r < nq; r++) {
                    size_t lim = mha__row_limit(q0 + r, Sq, Skv, len, v->causal);
                    size_t nv = lim > k0 ? mha__min(lim - k0, nk) : 0;
                    const float *bias = v->attn_bias ? v->attn_bias + (q0 + r) * Skv + k0 : NULL;
                    mha__softmax_recompute_row(P + r * BK, bias, nv, nk, lse[q0 + r]);
                }
                /* dV_j += P^T dO_i */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)dh, (int)nq,
                            1.0f, P, (int)BK, dO + q0 * dqw, (int)dqw, 1.0f, dV + k0 * w->ldv,
                            (int)w->ldv);
                /* dP = dO_i V_j^T, then dS = P (dP - D) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)dh,
                            1.0f, dO + q0 * dqw, (int)dqw, V + k0 * w->ldv, (int)w->ldv, 0.0f,
                            dS, (int)BK);
                for (size_t r = 0; r < nq; r++)
                    mha__softmax_grad_row(dS + r * BK, P + r * BK, Dr[q0 + r], nk);
                /* dQ_i += scale dS K_j;  dK_j += scale dS^T Q_i */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)dh, (int)nk,
                            J->scale, dS, (int)BK, K + k0 * w->ldk, (int)w->ldk, 1.0f,
                            dQ + q0 * w->ldq, (int)w->ldq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)dh, (int)nq,
                            J->scale, dS, (int)BK, Q + q0 * w->ldq, (int)w->ldq, 1.0f,
                            dK + k0 * w->ldk, (int)w->ldk);
            }
        }
    }
}

/* dx = beta dx + dP W (P = projected gradients [M, n] ld ldp, W [n, D]);
 * dW += dP^T x; db += colsum(dP). */
static void projection_backward(mha_ctx *ctx, size_t M, size_t n, const float *dP, size_t ldp,
                                const float *x, mha_param wp, mha_param bp, float *dx,
                                float beta)
{
    const size_t D = ctx->d_model;
    if (dx)
        mha__gemm(ctx, 0, 0, M, D, n, dP, ldp, mha__p(ctx, wp), D, beta, dx, D);
    mha__gemm(ctx, 1, 0, n, D, M, dP, ldp, x, D, 1.0f, ctx->grads + ctx->param_off[wp], D);
    if (ctx->param_n[bp])
        mha__colsum_acc(ctx, ctx->grads + ctx->param_off[bp], dP, M, n, ldp);
}

void mha__attn_backward(mha_ctx *ctx, const mha__attn_view *v, const mha__attn_ws *w,
                        const float *xq, const float *dy, float *dxq, float beta_x, float *dkey,
                        float *dvalue)
{
    float *ws = ctx->ws;
    const size_t Nq = v->batch * v->seq_q, Nkv = v->batch * v->seq_kv, D = ctx->d_model;
    const size_t dq = ctx->d_q, dkv = ctx->d_kv;

    /* output projection: dWO += dy^T o, dBO += colsum(dy), dO = dy WO */
    mha__gemm(ctx, 1, 0, D, dq, Nq, dy, D, ws + w->o, dq, 1.0f,
              ctx->grads + ctx->param_off[MHA_PARAM_WO], dq);
    if (ctx->param_n[MHA_PARAM_BO])
        mha__colsum_acc(ctx, ctx->grads + ctx->param_off[MHA_PARAM_BO], dy, Nq, D, D);
    mha__gemm(ctx, 0, 0, Nq, dq, D, dy, D, mha__p(ctx, MHA_PARAM_WO), dq, 0.0f, ws + w->d_o, dq);

    bwd_job J = {ctx, v, w, (float)(1.0 / sqrt((double)ctx->d_head))};
    mha__pool_run(ctx->pool, v->batch * ctx->n_kv_heads, bwd_task, &J);

    if (v->self) {
        /* [dQ|dK|dV], WQ|WK|WV and BQ|BK|BV are contiguous (grads share the
         * parameters' layout): one GEMM each way and one column sum. */
        projection_backward(ctx, Nq, dq + 2 * dkv, ws + w->dq, w->ldq, xq, MHA_PARAM_WQ,
                            MHA_PARAM_BQ, dxq, beta_x);
        return;
    }
    projection_backward(ctx, Nq, dq, ws + w->dq, w->ldq, xq, MHA_PARAM_WQ, MHA_PARAM_BQ, dxq,
                        beta_x);
    projection_backward(ctx, Nkv, dkv, ws + w->dk, w->ldk, v->key, MHA_PARAM_WK, MHA_PARAM_BK,
                        dkey, 0.0f);
    projection_backward(ctx, Nkv, dkv, ws + w->dv, w->ldv, v->value, MHA_PARAM_WV,
                        MHA_PARAM_BV, dvalue, 0.0f);
}

mha_status mha_attention_backward(mha_ctx *ctx, const mha_attn_args *a, const mha_grad_args *g)
{
    mha__attn_view v;
    mha_status st = mha__grad_args_check(ctx, a, g, &v);
    if (st != MHA_OK || v.batch == 0 || v.seq_q == 0)
        return st;
    mha__attn_ws w;
    if ((st = mha__attn_prepare(ctx, &v, 1, &w)) || (st = mha__grads_ready(ctx)))
        return st;
    int reuse = mha__saved_match(ctx, MHA__OP_ATTN, &v, NULL, 0);
    mha__saved_drop(ctx);
    if (!reuse)
        mha__attn_forward_keep(ctx, &v, &w, v.query, NULL, NULL);
    mha__saved_reserve(ctx, &v, NULL, 0);
    mha__attn_backward(ctx, &v, &w, v.query, g->d_out, g->d_query, 0.0f, g->d_key, g->d_value);
    return MHA_OK;
}
