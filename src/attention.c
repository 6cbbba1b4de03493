/* attention.c - multi-head attention forward: projections, tiled online-softmax
 * core (FlashAttention-style, on sgemm), output projection.
 *
 * Work of the core is split into tasks of (batch, head, query block); the
 * block sizes depend on the context (its d_head and the machine's L2) but
 * never on the thread count, so neither do the split and the reduction
 * order. Per task, for each key block:
 *   S = scale * Q_blk K_blk^T          (sgemm, scale folded into alpha)
 *   P = exp(S + bias - m_new), masks   (online softmax, running max m, sum l)
 *   O = alpha * O + P V_blk            (sgemm, beta = 1; 0 on the first block)
 * and at the end O /= l. Extra memory is one BQ x BK tile per thread. The
 * tile is stored key-major (S^T, softmax down its columns) unless an
 * attn_bias or attn_weights, both query-major, is given.
 *
 * Block sizes: mha__choose_blocks (context.c); 512 query rows x 512 keys
 * at d_head 64 on a 2 MiB L2. Measurements in README, "Block sizes". */
#include "internal.h"

#include <cblas.h>
#include <math.h>
size_t mha__attn_bwd_scratch(size_t seq_q)
{
    return 2 * MHA_ATTN_BWD_BQ * MHA_ATTN_BWD_BK + seq_q;
}

typedef struct core_job {
    const mha_ctx *ctx;
    const mha__attn_view *v;
    const float *q, *k, *val; /* projected: [B*S, ld], head h at column h * d_head */
    size_t ldq, ldk, ldv;
    float *o;   /* [B*Sq, d_q] */
    float *lse; /* NULL or [B, H, Sq]: log-sum-exp of each row, for the backward */
    float *scratch;
    size_t scratch_stride, n_qb;
    float scale;
} core_job;

static void core_task(void *arg, size_t task, size_t thread)
{
    const core_job *J = arg;
    const mha__attn_view *v = J->v;
    const size_t H = J->ctx->n_heads, dh = J->ctx->d_head, dq = J->ctx->d_q;
    const size_t group = H / J->ctx->n_kv_heads, Sq = v->seq_q, Skv = v->seq_kv;
    const size_t qb = task % J->n_qb, h = (task / J->n_qb) % H, b = task / J->n_qb / H;
    const size_t BQ = J->ctx->attn_bq;
    const size_t g = h / group, q0 = qb * BQ, nq = mha__min(BQ, Sq - q0);
    const size_t len = v->kv_lengths ? (size_t)v->kv_lengths[b] : Skv;

    const float *Q = J->q + (b * Sq + q0) * J->ldq + h * dh;  /* [nq, dh] ld ldq */
    const float *K = J->k + b * Skv * J->ldk + g * dh;        /* [Skv, dh] ld ldk */
    const float *V = J->val + b * Skv * J->ldv + g * dh;      /* [Skv, dh] ld ldv */
    float *O = J->o + (b * Sq + q0) * dq + h * dh;            /* [nq, dh] ld dq */
    float *m = J->scratch + thread * J->scratch_stride;       /* [BQ] running max */
    float *l = m + BQ;                                        /* [BQ] running sum */
    float *alpha = l + BQ;                                    /* [BQ] rescale factors */
    float *tile = alpha + BQ;                                 /* [BK, BQ] */

    /* With attn_weights the tile is the caller's [nq, Skv] slice, one block
     * wide, so masked entries are written as zeros too. */
    float *W = v->attn_weights ? v->attn_weights + ((b * H + h) * Sq + q0) * Skv : NULL;
    size_t kend = mha__row_limit(q0 + nq - 1, Sq, Skv, len, v->causal), bk = J->ctx->attn_bk;
    if (W)
        kend = bk = Skv;

    for (size_t r = 0; r < nq; r++) {
        if (kend == 0) /* no key at all: the rows stay zeros */
            memset(O + r * dq, 0, dh * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (size_t k0 = 0; k0 < kend; k0 += bk) {
        size_t nk = mha__min(bk, kend - k0);
        if (!W && !v->attn_bias) {
            /* Key-major tile: S^T = K_blk Q_blk^T, O += (S^T)^T V_blk. Both
             * sgemm calls run faster this way round than query-major
             * (README, "Attention tile orientation"). Query c sees key j
             * of the block iff c >= j + diag. */
            ptrdiff_t diag = -(ptrdiff_t)nk;
            if (v->causal)
                diag = (ptrdiff_t)(k0 + Sq) - (ptrdiff_t)(q0 + Skv);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nk, (int)nq, (int)dh,
                        J->scale, K + k0 * J->ldk, (int)J->ldk, Q, (int)J->ldq, 0.0f, tile,
                        (int)nq);
            mha__softmax_online_cols(tile, nq, nk, nq, diag, m, l, alpha);
            if (k0 > 0)
                for (size_t r = 0; r < nq; r++)
                    if (alpha[r] != 1.0f)
                        mha__scale_row(O + r * dq, alpha[r], dh);
            /* The first block overwrites O (beta 0): no zero-fill pass before. */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nq, (int)dh, (int)nk, 1.0f,
                        tile, (int)nq, V + k0 * J->ldv, (int)J->ldv, k0 > 0 ? 1.0f : 0.0f, O,
                        (int)dq);
            continue;
        }
        /* A bias or weights, both query-major: a query-major tile,
         * S = Q_blk K_blk^T, one softmax row per query. */
        size_t lds = W ? Skv : nk;
        float *S = W ? W : tile; /* [nq, nk] ld lds */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)dh, J->scale,
                    Q, (int)J->ldq, K + k0 * J->ldk, (int)J->ldk, 0.0f, S, (int)lds);
        for (size_t r = 0; r < nq; r++) {
            size_t lim = mha__row_limit(q0 + r, Sq, Skv, len, v->causal);
            size_t nv = lim > k0 ? mha__min(lim - k0, nk) : 0;
            const float *bias = v->attn_bias ? v->attn_bias + (q0 + r) * Skv + k0 : NULL;
            float a = mha__softmax_online_row(S + r * lds, bias, nv, nk, &m[r], &l[r]);
            if (a != 1.0f && k0 > 0)
                mha__scale_row(O + r * dq, a, dh);
        }
        /* beta 0 on the first block, as above */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)dh, (int)nk, 1.0f, S,
                    (int)lds, V + k0 * J->ldv, (int)J->ldv, k0 > 0 ? 1.0f : 0.0f, O, (int)dq);
    }
    float *lse = J->lse ? J->lse + (b * H + h) * Sq + q0 : NULL;
    for (size_t r = 0; r < nq; r++) {
        /* l == 0: every key masked, the row is zeros (never 0/0 = NaN). */
        float inv = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
        mha__scale_row(O + r * dq, inv, dh);
        if (W)
            mha__scale_row(W + r * Skv, inv, Skv);
        if (lse)
            lse[r] = l[r] == 0.0f ? -INFINITY : m[r] + logf(l[r]);
    }
}

mha_status mha__attn_plan(const mha_ctx *ctx, const mha__attn_view *v, int backward,
                          mha__plan *p, mha__attn_ws *w)
{
    size_t Nq = v->batch * v->seq_q, Nkv = v->batch * v->seq_kv;
    memset(w, 0, sizeof *w);
    w->backward = backward;
    if (v->self) {
        w->ldq = w->ldk = w->ldv = ctx->d_q + 2 * ctx->d_kv;
        w->q = mha__plan_add(p, Nq, w->ldq);
        w->k = w->q + ctx->d_q;
        w->v = w->k + ctx->d_kv;
    } else {
        w->ldq = ctx->d_q;
        w->ldk = w->ldv = 2 * ctx->d_kv;
        w->q = mha__plan_add(p, Nq, w->ldq);
        w->k = mha__plan_add(p, Nkv, w->ldk);
        w->v = w->k + ctx->d_kv;
    }
    w->o = mha__plan_add(p, Nq, ctx->d_q);
    w->scratch_stride = 3 * ctx->attn_bq + ctx->attn_bq * ctx->attn_bk;
    if (backward) {
        /* gradients of q, k, v laid out exactly like q, k, v */
        w->lse = mha__plan_add(p, v->batch * ctx->n_heads, v->seq_q);
        w->d_o = mha__plan_add(p, Nq, ctx->d_q);
        w->dq = mha__plan_add(p, Nq, w->ldq);
        w->dk = v->self ? w->dq + ctx->d_q : mha__plan_add(p, Nkv, w->ldk);
        w->dv = w->dk + ctx->d_kv;
        size_t bwd = mha__attn_bwd_scratch(v->seq_q);
        if (bwd > w->scratch_stride)
            w->scratch_stride = bwd;
    }
    w->scratch = mha__plan_add(p, ctx->n_threads, w->scratch_stride);
    return p->bad ? MHA_ERR_OVERFLOW : MHA_OK;
}

void mha__attn_forward_keep(mha_ctx *ctx, const mha__attn_view *v, const mha__attn_ws *w,
                            const float *xq, const float *residual, float *out)
{
    float *ws = ctx->ws;
    const size_t Nq = v->batch * v->seq_q, Nkv = v->batch * v->seq_kv, D = ctx->d_model;
    const float *bq = mha__p_opt(ctx, MHA_PARAM_BQ);
    if (v->self) {
        /* WQ|WK|WV and BQ|BK|BV are stored back to back: one fused sgemm. */
        mha__linear qkv = {Nq, w->ldq, D, xq, D, mha__p(ctx, MHA_PARAM_WQ), bq, NULL, 0,
                           ws + w->q, w->ldq, -1, 0};
        mha__linear_forward(ctx, &qkv);
    } else {
        mha__linear q = {Nq, ctx->d_q, D, xq, D, mha__p(ctx, MHA_PARAM_WQ), bq, NULL, 0,
                         ws + w->q, w->ldq, -1, 0};
        mha__linear k = {Nkv, ctx->d_kv, D, v->key, D, mha__p(ctx, MHA_PARAM_WK),
                         mha__p_opt(ctx, MHA_PARAM_BK), NULL, 0, ws + w->k, w->ldk, -1, 0};
        mha__linear val = {Nkv, ctx->d_kv, D, v->value, D, mha__p(ctx, MHA_PARAM_WV),
                           mha__p_opt(ctx, MHA_PARAM_BV), NULL, 0, ws + w->v, w->ldv, -1, 0};
        mha__linear_forward(ctx, &q);
        mha__linear_forward(ctx, &k);
        mha__linear_forward(ctx, &val);
    }

    core_job J = {ctx, v, ws + w->q, ws + w->k, ws + w->v, w->ldq, w->ldk, w->ldv, ws + w->o,
                  w->backward ? ws + w->lse : NULL, ws + w->scratch, w->scratch_stride,
                  (v->seq_q + ctx->attn_bq - 1) / ctx->attn_bq,
                  (float)(1.0 / sqrt((double)ctx->d_head))};
    mha__pool_run(ctx->pool, v->batch * ctx->n_heads * J.n_qb, core_task, &J);

    if (!out)
        return;
    mha__linear o = {Nq, D, ctx->d_q, ws + w->o, ctx->d_q, mha__p(ctx, MHA_PARAM_WO),
                     mha__p_opt(ctx, MHA_PARAM_BO), residual, D, out, D, -1, 0};
    mha__linear_forward(ctx, &o);
}

static const mha_param attn_params[] = {
    MHA_PARAM_WQ, MHA_PARAM_WK, MHA_PARAM_WV, MHA_PARAM_WO,
    MHA_PARAM_BQ, MHA_PARAM_BK, MHA_PARAM_BV, MHA_PARAM_BO,
};

mha_status mha__attn_prepare(mha_ctx *ctx, const mha__attn_view *v, int backward,
                             mha__attn_ws *w)
{
    mha_status st = mha__require(ctx, attn_params, sizeof attn_params / sizeof attn_params[0]);
    mha__plan p = {0, 0};
    if (st || (st = mha__attn_plan(ctx, v, backward, &p, w)))
        return st;
    return mha__ws_reserve(ctx, p.total);
}

mha_status mha_attention_forward(mha_ctx *ctx, const mha_attn_args *a)
{
    mha__attn_view v;
    mha__attn_ws w;
    mha_status st = mha__attn_args_check(ctx, a, &v);
    if (st != MHA_OK || v.batch == 0 || v.seq_q == 0)
        return st;
    const int train = mha__training(ctx); /* lay out and keep values for a backward */
    if ((st = mha__attn_prepare(ctx, &v, train, &w)))
        return st;
    mha__saved_drop(ctx);
    mha__attn_forward_keep(ctx, &v, &w, v.query, NULL, v.out);
    if (train && !v.attn_weights) /* the weights path blocks differently: not kept */
        mha__saved_store(ctx, MHA__OP_ATTN, &v, NULL, 0);
    return MHA_OK;
}
