/* args.c - validation of call arguments shared by every entry point. */
#include "internal.h"

#include <stdint.h>

/* The smallest struct_size accepted (version 1 of mha_attn_args). */
#define MHA__ATTN_ARGS_V1_SIZE MHA_STRUCT_SIZE(mha_attn_args, attn_weights)

int mha__overlap(mha__region a, mha__region b)
{
    if (!a.p || !b.p || a.bytes == 0 || b.bytes == 0)
        return 0;
    uintptr_t a0 = (uintptr_t)a.p, b0 = (uintptr_t)b.p;
    return a0 < b0 + b.bytes && b0 < a0 + a.bytes;
}

/* bytes = n1 * n2 * n3 * elem, nonzero on overflow. */
static int bytes_of(size_t n1, size_t n2, size_t n3, size_t elem, size_t *bytes)
{
    size_t t;
    return mha__mul3(n1, n2, n3, &t) || mha__mul(t, elem, bytes);
}

/* The smallest struct_size accepted (version 1.1 of mha_grad_args). */
#define MHA__GRAD_ARGS_V1_SIZE MHA_STRUCT_SIZE(mha_grad_args, d_value)

static mha_status attn_args_check(const mha_ctx *ctx, const mha_attn_args *a, int backward,
                                  mha__attn_view *v)
{
    if (!ctx || !a)
        return MHA_ERR_NULL_ARG;
    if (a->struct_size < MHA__ATTN_ARGS_V1_SIZE)
        return MHA_ERR_STRUCT_SIZE;
    if (a->causal != 0 && a->causal != 1)
        return MHA_ERR_BAD_FLAG;
    if (!a->key != !a->value)
        return MHA_ERR_NULL_ARG;
    v->self = a->key == NULL;
    v->batch = a->batch;
    v->seq_q = a->seq_q;
    v->seq_kv = a->seq_kv;
    if (v->self) {
        if (a->seq_kv != 0 && a->seq_kv != a->seq_q)
            return MHA_ERR_BAD_SHAPE;
        v->seq_kv = a->seq_q;
    }
    v->query = a->query;
    v->key = v->self ? a->query : a->key;
    v->value = v->self ? a->query : a->value;
    v->kv_lengths = a->kv_lengths;
    v->attn_bias = a->attn_bias;
    v->causal = a->causal;
    /* the backward neither reads nor writes out and attn_weights */
    v->out = backward ? NULL : a->out;
    v->attn_weights = backward ? NULL : a->attn_weights;
    if (v->batch == 0 || v->seq_q == 0)
        return MHA_OK; /* empty call: nothing is read or written */
    if (!a->query || (!backward && !a->out))
        return MHA_ERR_NULL_ARG;

    size_t D = ctx->d_model, n_q, n_kv, n_bias, n_w, n_len;
    if (bytes_of(v->batch, v->seq_q, D, sizeof(float), &n_q) ||
        bytes_of(v->batch, v->seq_kv, D, sizeof(float), &n_kv) ||
        bytes_of(v->seq_q, v->seq_kv, 1, sizeof(float), &n_bias) ||
        bytes_of(v->batch, ctx->n_heads, v->seq_q, sizeof(float), &n_w) ||
        mha__mul(n_w, v->seq_kv, &n_w) || bytes_of(v->batch, 1, 1, sizeof(int32_t), &n_len))
        return MHA_ERR_OVERFLOW;
    /* CBLAS takes int dimensions: rows of the projections are batch * seq. */
    if (n_q / sizeof(float) / D > INT32_MAX || n_kv / sizeof(float) / D > INT32_MAX)
        return MHA_ERR_OVERFLOW;

    if (v->kv_lengths)
        for (size_t b = 0; b < v->batch; b++)
            if (v->kv_lengths[b] < 0 || (size_t)v->kv_lengths[b] > v->seq_kv)
                return MHA_ERR_BAD_KV_LENGTH;

    mha__region in[] = {
        {a->query, n_q},
        {v->self ? NULL : a->key, n_kv},
        {v->self ? NULL : a->value, n_kv},
        {a->kv_lengths, n_len},
        {a->attn_bias, n_bias},
    };
    mha__region out = {v->out, n_q}, w = {v->attn_weights, n_w};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (mha__overlap(out, in[i]) || mha__overlap(w, in[i]))
            return MHA_ERR_ALIAS;
    if (mha__overlap(out, w))
        return MHA_ERR_ALIAS;
    v->bytes_q = n_q;
    v->bytes_kv = n_kv;
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        v->inputs[i] = in[i];
    return MHA_OK;
}

mha_status mha__attn_args_check(const mha_ctx *ctx, const mha_attn_args *a, mha__attn_view *v)
{
    return attn_args_check(ctx, a, 0, v);
}

mha_status mha__grad_args_check(const mha_ctx *ctx, const mha_attn_args *a,
                                const mha_grad_args *g, mha__attn_view *v)
{
    mha_status st = attn_args_check(ctx, a, 1, v);
    if (st != MHA_OK)
        return st;
    if (!g)
        return MHA_ERR_NULL_ARG;
    if (g->struct_size < MHA__GRAD_ARGS_V1_SIZE)
        return MHA_ERR_STRUCT_SIZE;
    if (v->self && (g->d_key || g->d_value))
        return MHA_ERR_BAD_SHAPE;
    if (v->batch == 0 || v->seq_q == 0)
        return MHA_OK;
    if (!g->d_out || !g->d_query || (!v->self && (!g->d_key || !g->d_value)))
        return MHA_ERR_NULL_ARG;
    mha__region d_out = {g->d_out, v->bytes_q};
    mha__region outs[] = {{g->d_query, v->bytes_q}, {g->d_key, v->bytes_kv},
                          {g->d_value, v->bytes_kv}};
    for (size_t o = 0; o < 3; o++) {
        if (mha__overlap(outs[o], d_out))
            return MHA_ERR_ALIAS;
        for (size_t i = 0; i < MHA__N_INPUTS; i++)
            if (mha__overlap(outs[o], v->inputs[i]))
                return MHA_ERR_ALIAS;
        for (size_t k = o + 1; k < 3; k++)
            if (mha__overlap(outs[o], outs[k]))
                return MHA_ERR_ALIAS;
    }
    return MHA_OK;
}
