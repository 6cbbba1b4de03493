/* context.c - mha_create / mha_destroy, config validation, workspace. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* OpenBLAS's thread count is process-global. When the CBLAS in use is
 * OpenBLAS we pin it to 1, since every context parallelises itself and
 * nested BLAS threads would oversubscribe the cores. Weak, so any CBLAS
 * links. */
extern void openblas_set_num_threads(int n) __attribute__((weak));

/* Each thread has ~0.5 MiB of attention scratch; beyond this, more threads
 * cannot help on any machine libmha targets. */
#define MHA__MAX_THREADS 256

/* The smallest struct_size a caller may pass (version 1's mha_config). */
#define MHA__CONFIG_V1_SIZE MHA_STRUCT_SIZE(mha_config, n_threads)

static mha_status config_check(const mha_config *cfg, mha_ctx *c)
{
    if (cfg->struct_size < MHA__CONFIG_V1_SIZE)
        return MHA_ERR_STRUCT_SIZE;
    if (cfg->d_model == 0 || cfg->n_heads == 0)
        return MHA_ERR_BAD_CONFIG;
    size_t kv = cfg->n_kv_heads ? cfg->n_kv_heads : cfg->n_heads;
    if (kv > cfg->n_heads || cfg->n_heads % kv != 0)
        return MHA_ERR_BAD_CONFIG;
    size_t dh = cfg->d_head;
    if (dh == 0) {
        if (cfg->d_model % cfg->n_heads != 0)
            return MHA_ERR_BAD_CONFIG;
        dh = cfg->d_model / cfg->n_heads;
    }
    size_t dff = cfg->d_ff;
    if (dff == 0 && mha__mul(cfg->d_model, 4, &dff))
        return MHA_ERR_OVERFLOW;
    if (cfg->activation < MHA_ACT_RELU || cfg->activation > MHA_ACT_SWIGLU)
        return MHA_ERR_BAD_ACTIVATION;
    if ((cfg->norm_first != 0 && cfg->norm_first != 1) || (cfg->bias != 0 && cfg->bias != 1))
        return MHA_ERR_BAD_FLAG;
    if (!isfinite(cfg->ln_eps) || !(cfg->ln_eps > 0.0f))
        return MHA_ERR_BAD_EPS;
    if (cfg->n_threads < 0 || cfg->n_threads > MHA__MAX_THREADS)
        return MHA_ERR_BAD_THREADS;

    c->d_model = cfg->d_model;
    c->n_heads = cfg->n_heads;
    c->n_kv_heads = kv;
    c->d_head = dh;
    c->d_ff = dff;
    c->activation = cfg->activation;
    c->norm_first = cfg->norm_first;
    c->bias = cfg->bias;
    c->ln_eps = cfg->ln_eps;
    c->n_threads = cfg->n_threads ? (size_t)cfg->n_threads : mha__available_cores();
    if (c->n_threads > MHA__MAX_THREADS)
        c->n_threads = MHA__MAX_THREADS;
    if (mha__mul(cfg->n_heads, dh, &c->d_q) || mha__mul(kv, dh, &c->d_kv))
        return MHA_ERR_OVERFLOW;
    /* Every GEMM dimension must also fit the int of the CBLAS interface;
     * the widest is d_q + 2 d_kv (fused QKV) or 2 d_ff (SwiGLU). */
    size_t qkv, ff2;
    if (mha__add(c->d_q, c->d_kv, &qkv) || mha__add(qkv, c->d_kv, &qkv) ||
        mha__mul(dff, 2, &ff2) || qkv > INT32_MAX || ff2 > INT32_MAX || c->d_model > INT32_MAX)
        return MHA_ERR_OVERFLOW;
    return MHA_OK;
}

/* The forward attention tile: BQ query rows x BK keys. Per task the score
 * tile (BQ x BK), the K and V blocks (2 x BK x dh) and the Q and O blocks
 * (2 x BQ x dh) are reused by every sgemm of a key block, so they should
 * stay in the core's L2 (the sgemm packs them into L1 itself). Start from
 * 512 x 512 and halve the larger side (BQ on a tie) until that working set
 * fits in 3/4 of L2: at d_head 64, 512 x 512 on a 2 MiB L2 and 256 x 512 on
 * a 1.25 MiB one, each measured best on such a machine (README "Block
 * sizes"). */
void mha__choose_blocks(size_t d_head, size_t *bq, size_t *bk)
{
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t budget = (l2 > 0 ? (size_t)l2 : (size_t)1 << 20) / 4 * 3 / sizeof(float);
    size_t q = MHA_ATTN_BQ, k = MHA_ATTN_BK;
    while (q > 32 && q * k + 2 * k * d_head + 2 * q * d_head > budget) {
        if (k > q)
            k /= 2;
        else
            q /= 2;
    }
    *bq = q;
    *bk = k;
}

mha_status mha_create(const mha_config *cfg, mha_ctx **out)
{
    if (out)
        *out = NULL;
    if (!cfg || !out)
        return MHA_ERR_NULL_ARG;
    mha_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return MHA_ERR_NO_MEMORY;
    mha_status st = config_check(cfg, c);
    if (st == MHA_OK) {
        mha__choose_blocks(c->d_head, &c->attn_bq, &c->attn_bk);
        st = mha__params_layout(c);
    }
    if (st == MHA_OK)
        st = mha__pool_create(c->n_threads, &c->pool);
    if (st != MHA_OK) {
        mha_destroy(c);
        return st;
    }
    if (openblas_set_num_threads)
        openblas_set_num_threads(1);
    *out = c;
    return MHA_OK;
}

void mha_destroy(mha_ctx *ctx)
{
    if (!ctx)
        return;
    mha__pool_destroy(ctx->pool);
    free(ctx->params);
    free(ctx->grads);
    free(ctx->ws);
    free(ctx->saved.copy);
    free(ctx);
}

/* Grows the workspace to at least n floats. Never shrinks, so once a shape
 * has been seen, later calls of that shape (or smaller) do not allocate. */
mha_status mha__ws_reserve(mha_ctx *ctx, size_t n)
{
    if (n <= ctx->ws_cap)
        return MHA_OK;
    size_t bytes;
    if (mha__mul(n, sizeof(float), &bytes))
        return MHA_ERR_OVERFLOW;
    /* the old contents are dead: no copy */
    void *p = mha__big_alloc(bytes);
    if (!p)
        return MHA_ERR_NO_MEMORY;
    free(ctx->ws);
    ctx->ws = p;
    ctx->ws_cap = n;
    mha__saved_drop(ctx); /* whatever was kept is gone with the old buffer */
    return MHA_OK;
}

size_t mha__plan_add(mha__plan *p, size_t rows, size_t cols)
{
    size_t n, at = p->total;
    if (mha__mul(rows, cols, &n) || mha__add(n, 15, &n)) {
        p->bad = 1;
        return 0;
    }
    n &= ~(size_t)15; /* keep every region 64-byte aligned */
    if (mha__add(p->total, n, &p->total))
        p->bad = 1;
    return at;
}
