/* saved.c - activations kept from a forward call for the next backward.
 *
 * Once a context has run a backward (it owns gradients: "training mode"),
 * its forward calls lay the workspace out as the backward does and keep
 * what the backward needs there (projections, attention output and
 * log-sum-exp, LayerNorm inputs, FFN pre-activations). A backward call
 * reuses them only when it is certainly the same computation: same entry
 * point, shapes and flags, weights not set since (a generation counter), and
 * inputs, kv_lengths and attn_bias equal byte for byte to copies taken by
 * the forward. Otherwise it recomputes. Any other call that uses the
 * workspace, a workspace reallocation or a weight change drops the saved
 * state. Inference-only contexts never pay for any of this. */
#include "internal.h"

#include <stdlib.h>

/* attn_bias copies above this many floats are not kept (then no reuse). */
#define MAX_BIAS_COPY ((size_t)1 << 24)

void mha__saved_drop(mha_ctx *ctx) { ctx->saved.valid = 0; }

typedef struct piece {
    const void *p;
    size_t bytes;
} piece;

/* The inputs that define a call, in a fixed order. */
static size_t pieces_of(const mha_ctx *ctx, const mha__attn_view *v, const float *x, size_t n,
                        piece *out)
{
    size_t k = 0, D = ctx->d_model;
    if (!v) {
        out[k++] = (piece){x, n * D * sizeof(float)};
        return k;
    }
    out[k++] = (piece){v->query, v->batch * v->seq_q * D * sizeof(float)};
    if (!v->self) {
        out[k++] = (piece){v->key, v->batch * v->seq_kv * D * sizeof(float)};
        out[k++] = (piece){v->value, v->batch * v->seq_kv * D * sizeof(float)};
    }
    if (v->kv_lengths)
        out[k++] = (piece){v->kv_lengths, v->batch * sizeof(int32_t)};
    if (v->attn_bias)
        out[k++] = (piece){v->attn_bias, v->seq_q * v->seq_kv * sizeof(float)};
    return k;
}

static void key_of(const mha_ctx *ctx, int op, const mha__attn_view *v, size_t n,
                   mha__saved *s)
{
    s->op = op;
    s->params_gen = ctx->params_gen;
    s->batch = v ? v->batch : n;
    s->seq_q = v ? v->seq_q : 0;
    s->seq_kv = v ? v->seq_kv : 0;
    s->flags = v ? (v->self | v->causal << 1 | (v->kv_lengths != NULL) << 2 |
                    (v->attn_bias != NULL) << 3)
                 : 0;
}

/* Room for the inputs of a call like this one; 0 when they are not kept. */
static int reserve(mha_ctx *ctx, const mha__attn_view *v, const float *x, size_t n, piece *pc,
                   size_t *np)
{
    mha__saved *s = &ctx->saved;
    if (v && v->attn_bias && v->seq_q * v->seq_kv > MAX_BIAS_COPY)
        return 0;
    size_t total = 0;
    *np = pieces_of(ctx, v, x, n, pc);
    for (size_t i = 0; i < *np; i++)
        total += pc[i].bytes;
    if (total > s->cap) {
        void *p = realloc(s->copy, total);
        if (!p)
            return 0; /* only the reuse is lost */
        s->copy = p;
        s->cap = total;
    }
    return 1;
}

void mha__saved_reserve(mha_ctx *ctx, const mha__attn_view *v, const float *x, size_t n)
{
    piece pc[5];
    size_t np;
    (void)reserve(ctx, v, x, n, pc, &np);
}

void mha__saved_store(mha_ctx *ctx, int op, const mha__attn_view *v, const float *x, size_t n)
{
    mha__saved *s = &ctx->saved;
    piece pc[5];
    size_t np;
    s->valid = 0;
    if (!reserve(ctx, v, x, n, pc, &np))
        return;
    unsigned char *at = s->copy;
    for (size_t i = 0; i < np; i++) {
        memcpy(at, pc[i].p, pc[i].bytes);
        at += pc[i].bytes;
    }
    key_of(ctx, op, v, n, s);
    s->valid = 1;
}

int mha__saved_match(const mha_ctx *ctx, int op, const mha__attn_view *v, const float *x,
                     size_t n)
{
    const mha__saved *s = &ctx->saved;
    if (!s->valid)
        return 0;
    mha__saved k;
    key_of(ctx, op, v, n, &k);
    if (k.op != s->op || k.params_gen != s->params_gen || k.batch != s->batch ||
        k.seq_q != s->seq_q || k.seq_kv != s->seq_kv || k.flags != s->flags)
        return 0;
    piece pc[5];
    size_t np = pieces_of(ctx, v, x, n, pc);
    const unsigned char *at = s->copy;
    for (size_t i = 0; i < np; i++) {
        if (memcmp(at, pc[i].p, pc[i].bytes) != 0)
            return 0;
        at += pc[i].bytes;
    }
    return 1;
}
