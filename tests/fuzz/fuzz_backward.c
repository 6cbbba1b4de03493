/* fuzz_backward - the backward entry points (and a forward before them,
 * sometimes on other data, to exercise the values kept for a backward),
 * parameters drawn from the input as in fuzz_forward.
 * Invariants: each status has a message; a failed call leaves weights,
 * accumulated gradients and the outputs unchanged; with bounded inputs and
 * weights a successful call writes only finite gradients; a backward after a
 * forward equals a backward without it, bit for bit. */
#include "fuzz_common.h"

static mha_status backward(mha_ctx *ctx, int entry, const mha_attn_args *a,
                           const mha_grad_args *g)
{
    return entry == 0   ? mha_attention_backward(ctx, a, g)
           : entry == 1 ? mha_layer_backward(ctx, a, g)
                        : mha_ffn_backward(ctx, g->d_query, g->d_out, a->query, a->batch * a->seq_q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    mha_config cfg = rd_config(&r);
    mha_ctx *ctx = fuzz_create(&cfg);
    if (!ctx)
        return 0;
    int bounded = 1, all_set;
    fuzz_set_params(&r, ctx, &bounded, &all_set);
    size_t D = cfg.d_model;
    size_t B = rd_u8(&r) % 4, Sq = rd_u8(&r) % 10, Skv = rd_u8(&r) % 10;
    uint8_t flags = rd_u8(&r), entry = rd_u8(&r) % 3, pre = rd_u8(&r);
    int cross = flags & 1;
    if (!cross)
        Skv = Sq;
    size_t nq = B * Sq * D, nkv = B * Skv * D;
    size_t arena_n = 3 * nq + 4 * nkv + Sq * Skv + 8;
    float *arena = rd_floats(&r, arena_n, &bounded);
    float *q = arena, *dy = q + nq, *dq = dy + nq, *k = dq + nq, *v = k + nkv, *dk = v + nkv,
          *dv = dk + nkv, *bias = dv + nkv;
    int32_t *len = malloc((B + 1) * sizeof(int32_t));
    for (size_t b = 0; b < B; b++)
        len[b] = (int32_t)(rd_u8(&r) % (Skv + 2)) - (flags & 32 ? 1 : 0);
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = Sq;
    a.seq_kv = cross ? Skv : 0;
    a.query = q;
    a.key = cross ? k : NULL;
    a.value = cross ? v : NULL;
    a.kv_lengths = flags & 4 ? len : NULL;
    a.attn_bias = flags & 8 ? bias : NULL;
    a.causal = flags & 2 ? 1 : (flags & 64 ? 2 : 0);
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = dy;
    g.d_query = dq;
    g.d_key = cross || (flags & 128) ? dk : NULL;
    g.d_value = cross ? dv : NULL;
    uint8_t alias = rd_u8(&r);
    if (alias == 1)
        g.d_query = q + 1;
    if (alias == 2)
        g.d_value = dk;
    if (alias == 3)
        g.d_out = NULL;

    /* a backward first puts the context in training mode; then maybe a
     * forward on the same or other data, whose kept values may be reused */
    if (pre & 1) {
        float *y = malloc((nq + 1) * sizeof(float)), *junk = malloc((nq + 1) * sizeof(float));
        mha_status s0 = backward(ctx, entry, &a, &g);
        check_status(s0);
        mha_attn_args fa = a;
        fa.out = y;
        for (size_t i = 0; i < nq; i++)
            junk[i] = q[i] + (pre & 2 ? 0.5f : 0.0f);
        fa.query = junk;
        check_status(entry == 2 ? mha_ffn_forward(ctx, y, junk, B * Sq)
                     : entry == 1 ? mha_layer_forward(ctx, &fa)
                                  : mha_attention_forward(ctx, &fa));
        free(y);
        free(junk);
    }
    size_t np, ng, n2;
    float *params = snapshot_params(ctx, &np, 0), *grads = snapshot_params(ctx, &ng, 1);
    float *arena_before = malloc(arena_n * sizeof(float));
    memcpy(arena_before, arena, arena_n * sizeof(float));
    mha_zero_grad(ctx);
    float *zero_grads = snapshot_params(ctx, &ng, 1);
    mha_status st = backward(ctx, entry, &a, &g);
    check_status(st);
    float *p2 = snapshot_params(ctx, &n2, 0);
    FUZZ_CHECK(!memcmp(params, p2, np * sizeof(float)), "a backward changed weights");
    float *g2 = snapshot_params(ctx, &n2, 1);
    if (st != MHA_OK) {
        FUZZ_CHECK(!memcmp(zero_grads, g2, ng * sizeof(float)), "failed backward (%d) changed grads", st);
        FUZZ_CHECK(!memcmp(arena, arena_before, arena_n * sizeof(float)),
                   "failed backward (%d) wrote outputs", st);
    } else if (bounded && g.d_query == dq && B && Sq) {
        FUZZ_CHECK(all_finite(g2, ng), "bounded inputs gave non-finite parameter gradients");
        FUZZ_CHECK(all_finite(dq, nq), "bounded inputs gave non-finite input gradients");
        /* the same backward in a fresh context (no kept values) agrees */
        mha_ctx *fresh = fuzz_create(&cfg);
        for (int p = 0; p < MHA_PARAM_COUNT; p++) {
            size_t c = mha_param_count(ctx, (mha_param)p);
            float *w = malloc((c + 1) * sizeof(float));
            if (c && mha_get_param(ctx, (mha_param)p, w, c) == MHA_OK)
                mha_set_param(fresh, (mha_param)p, w, c);
            free(w);
        }
        float *dq2 = malloc((nq + 1) * sizeof(float));
        mha_grad_args g_fresh = g;
        g_fresh.d_query = dq2;
        if (cross) { /* d_key/d_value are compared through the parameters only */
            g_fresh.d_key = malloc((nkv + 1) * sizeof(float));
            g_fresh.d_value = malloc((nkv + 1) * sizeof(float));
        }
        FUZZ_CHECK(backward(fresh, entry, &a, &g_fresh) == MHA_OK, "fresh backward failed");
        FUZZ_CHECK(!memcmp(dq, dq2, nq * sizeof(float)), "kept values changed the result");
        if (cross) {
            free(g_fresh.d_key);
            free(g_fresh.d_value);
        }
        free(dq2);
        mha_destroy(fresh);
    }
    free(params), free(grads), free(zero_grads), free(p2), free(g2);
    free(arena_before);
    free(arena);
    free(len);
    mha_destroy(ctx);
    return 0;
}
