/* gemm.c - linear layers on cblas_sgemm, split by rows over the pool.
 *
 * Determinism: a row or column chunk computes each output element with the
 * same sgemm inner loop as an unsplit call (OpenBLAS blocks K by K alone),
 * and chunk starts are multiples of 32 rows / 64 columns so that the same
 * micro-kernel tile shapes cover the same elements. Chunks are only made when each one is still
 * large (OpenBLAS switches to a different "small matrix" kernel below about
 * 1e6 multiply-adds), so results are bitwise identical for any thread count;
 * tests/test_threads.c checks it. */
#include "internal.h"

#include <cblas.h>

#define ROW_ALIGN 32
#define COL_ALIGN 64
#define MIN_CHUNK_MACS 4000000.0

typedef struct linear_job {
    const mha__linear *L;
    size_t chunk; /* rows or columns per task */
    int by_cols;
} linear_job;

/* Rows [r0, r0 + nr) x columns [c0, c0 + nc) of the output. */
static void linear_block(const mha__linear *L, size_t r0, size_t nr, size_t c0, size_t nc)
{
    float *out = L->out + r0 * L->ldo + c0;
    float beta = 0.0f;
    if (L->res || (L->bias && L->act < 0)) {
        /* out = res + bias first, then sgemm accumulates (beta = 1): one
         * pass instead of a separate bias and residual pass. */
        const float *bias = L->act < 0 && L->bias ? L->bias + c0 : NULL;
        for (size_t i = 0; i < nr; i++) {
            float *o = out + i * L->ldo;
            const float *r = L->res ? L->res + (r0 + i) * L->ldres + c0 : NULL;
            for (size_t j = 0; j < nc; j++)
                o[j] = (r ? r[j] : 0.0f) + (bias ? bias[j] : 0.0f);
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)L->K, 1.0f,
                L->x + r0 * L->ldx, (int)L->ldx, L->W + c0 * L->K, (int)L->K, beta, out,
                (int)L->ldo);
    if (L->act < 0)
        return;
    /* Fused epilogue while the block is still in cache. SwiGLU blocks always
     * span full rows (see mha__linear_forward). */
    for (size_t i = 0; i < nr; i++) {
        float *o = out + i * L->ldo;
        if (L->act == MHA_ACT_SWIGLU)
            mha__swiglu_forward(o, o + L->swiglu_n, L->bias, L->swiglu_n);
        else
            mha__act_forward(L->act, o, L->bias ? L->bias + c0 : NULL, nc);
    }
}

static void linear_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const linear_job *j = arg;
    const mha__linear *L = j->L;
    size_t s0 = task * j->chunk;
    if (j->by_cols)
        linear_block(L, 0, L->M, s0, mha__min(j->chunk, L->N - s0));
    else
        linear_block(L, s0, mha__min(j->chunk, L->M - s0), 0, L->N);
}

/* Splits the larger of M and N: a row chunk repacks all of W and a column
 * chunk all of x, so cutting the long side duplicates the smaller operand. */
void mha__linear_forward(mha_ctx *ctx, const mha__linear *L)
{
    if (L->M == 0)
        return;
    linear_job job = {L, L->M, 0};
    job.by_cols = L->act != MHA_ACT_SWIGLU && L->N > L->M;
    size_t dim = job.by_cols ? L->N : L->M, align = job.by_cols ? COL_ALIGN : ROW_ALIGN;
    double macs_per_unit = (double)(job.by_cols ? L->M : L->N) * (double)L->K;
    size_t chunks = 1;
    job.chunk = dim;
    for (size_t T = mha__pool_threads(ctx->pool); T > 1; T--) {
        size_t c = (dim + T - 1) / T;
        c = (c + align - 1) / align * align;
        if (c < dim && (double)c * macs_per_unit >= MIN_CHUNK_MACS) {
            job.chunk = c;
            chunks = (dim + c - 1) / c;
            break;
        }
    }
    mha__pool_run(ctx->pool, chunks, linear_task, &job);
}
