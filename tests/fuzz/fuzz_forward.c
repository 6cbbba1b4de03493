/* fuzz_forward - every forward entry point with parameters drawn from the
 * input: config, weights (NaN, Inf, huge, wrong counts, unset), shapes
 * (including 0), masks (including invalid lengths), aliasing.
 * Invariants: each status has a message; a failed create leaves *out NULL;
 * a failed call leaves weights and outputs unchanged; with bounded (|v| <=
 * 1e3, finite) inputs and weights a successful call writes only finite
 * numbers, and attention weights are probabilities. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    mha_config cfg = rd_config(&r);
    mha_ctx *ctx = fuzz_create(&cfg);
    if (!ctx)
        return 0;
    int bounded = 1, all_set;
    fuzz_set_params(&r, ctx, &bounded, &all_set);
    size_t D = cfg.d_model, H = cfg.n_heads;
    size_t B = rd_u8(&r) % 4, Sq = rd_u8(&r) % 10, Skv = rd_u8(&r) % 10;
    uint8_t flags = rd_u8(&r), entry = rd_u8(&r) % 3;
    int cross = flags & 1, causal = flags & 2 ? 1 : (flags & 64 ? 3 : 0);
    if (!cross) /* sometimes a wrong seq_kv for self-attention; 0 means seq_q */
        Skv = flags & 128 && Skv ? Skv : Sq;
    size_t nq = B * Sq * D, nkv = B * Skv * D, nw = B * H * Sq * Skv;
    /* inputs live in one arena so that aliasing cases point into it */
    size_t arena_n = 2 * nq + 2 * nkv + Sq * Skv + nw + 8;
    float *arena = rd_floats(&r, arena_n, &bounded);
    float *q = arena, *out = q + nq, *k = out + nq, *v = k + nkv, *bias = v + nkv;
    float *w = bias + Sq * Skv;
    int32_t *len = malloc((B + 1) * sizeof(int32_t));
    for (size_t b = 0; b < B; b++)
        len[b] = (int32_t)(rd_u8(&r) % (Skv + 3)) - (flags & 32 ? 1 : 0);
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = B;
    a.seq_q = Sq;
    a.seq_kv = cross || (flags & 128) ? Skv : 0;
    a.query = q;
    a.key = cross ? k : NULL;
    a.value = cross ? v : NULL;
    a.kv_lengths = flags & 4 ? len : NULL;
    a.attn_bias = flags & 8 ? bias : NULL;
    a.causal = causal;
    a.out = out;
    a.attn_weights = flags & 16 ? w : NULL;
    uint8_t alias = rd_u8(&r);
    if (alias == 1)
        a.out = q + 1; /* overlaps the query */
    if (alias == 2 && a.attn_weights)
        a.attn_weights = out; /* overlaps the output */
    if (alias == 3)
        a.query = NULL;

    size_t np, np2;
    float *before = snapshot_params(ctx, &np, 0);
    float *arena_before = malloc(arena_n * sizeof(float));
    memcpy(arena_before, arena, arena_n * sizeof(float));
    mha_status st = entry == 0   ? mha_attention_forward(ctx, &a)
                    : entry == 1 ? mha_layer_forward(ctx, &a)
                                 : mha_ffn_forward(ctx, a.out, a.query, B * Sq);
    check_status(st);
    float *after = snapshot_params(ctx, &np2, 0);
    FUZZ_CHECK(np == np2 && !memcmp(before, after, np * sizeof(float)), "a call changed weights");
    if (st != MHA_OK) {
        FUZZ_CHECK(!memcmp(arena, arena_before, arena_n * sizeof(float)),
                   "failed call (%d) wrote its outputs", st);
    } else if (bounded && a.query == q && a.out == out && B && Sq) {
        FUZZ_CHECK(all_finite(out, nq), "finite inputs gave a non-finite output (entry %d)", entry);
        if (a.attn_weights == w && entry != 2)
            for (size_t i = 0; i < B * H * Sq; i++) {
                double sum = 0;
                for (size_t j = 0; j < Skv; j++) {
                    float p = w[i * Skv + j];
                    FUZZ_CHECK(p >= 0.0f && p <= 1.0f, "weight %g out of [0, 1]", p);
                    sum += p;
                }
                FUZZ_CHECK(sum == 0.0 || fabs(sum - 1.0) < 1e-3, "weights sum to %g", sum);
            }
    }
    /* a successful call is never refused for missing weights it uses */
    if (all_set && st == MHA_ERR_PARAM_NOT_SET)
        FUZZ_CHECK(0, "PARAM_NOT_SET with every weight set");
    free(before);
    free(after);
    free(arena_before);
    free(arena);
    free(len);
    mha_destroy(ctx);
    return 0;
}
