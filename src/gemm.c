/* gemm.c - linear layers on cblas_sgemm, split by rows over the pool.
 *
 * Determinism: a row chunk computes each output element with the same
 * sgemm inner loop as an unsplit call (OpenBLAS blocks K by K alone), and
 * chunk starts are multiples of 32 rows so that the same micro-kernel tile
 * shapes cover the same rows. Chunks are only made when each one is still
 * large (OpenBLAS switches to a different "small matrix" kernel below about
 * 1e6 multiply-adds), so results are bitwise identical for any thread count;
 * tests/test_threads.c checks it. */
#include "internal.h"

#include <cblas.h>

#define ROW_ALIGN 32
#define MIN_CHUNK_MACS 4000000.0

typedef struct linear_job {
    const mha__linear *L;
    size_t rows_per_chunk;
} linear_job;

static void linear_rows(const mha__linear *L, size_t r0, size_t nr)
{
    float *out = L->out + r0 * L->ldo;
    float beta = 0.0f;
    if (L->res || (L->bias && L->act < 0)) {
        /* out = res + bias first, then sgemm accumulates (beta = 1): one
         * pass instead of a separate bias and residual pass. */
        const float *bias = L->act < 0 ? L->bias : NULL; /* else the epilogue adds it */
        for (size_t i = 0; i < nr; i++) {
            float *o = out + i * L->ldo;
            const float *r = L->res ? L->res + (r0 + i) * L->ldres : NULL;
            for (size_t j = 0; j < L->N; j++)
                o[j] = (r ? r[j] : 0.0f) + (bias ? bias[j] : 0.0f);
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)L->N, (int)L->K, 1.0f,
                L->x + r0 * L->ldx, (int)L->ldx, L->W, (int)L->K, beta, out, (int)L->ldo);
    if (L->act < 0)
        return;
    /* Fused epilogue while the chunk is still in cache. */
    for (size_t i = 0; i < nr; i++) {
        float *o = out + i * L->ldo;
        if (L->act == MHA_ACT_SWIGLU)
            mha__swiglu_forward(o, o + L->swiglu_n, L->bias, L->swiglu_n);
        else
            mha__act_forward(L->act, o, L->bias, L->N);
    }
}

static void linear_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const linear_job *j = arg;
    size_t r0 = task * j->rows_per_chunk;
    linear_rows(j->L, r0, mha__min(j->rows_per_chunk, j->L->M - r0));
}

void mha__linear_forward(mha_ctx *ctx, const mha__linear *L)
{
    if (L->M == 0)
        return;
    size_t T = mha__pool_threads(ctx->pool), chunks = 1, rows = L->M;
    double macs_per_row = (double)L->N * (double)L->K;
    while (T > 1) {
        size_t r = (L->M + T - 1) / T;
        r = (r + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
        if ((double)r * macs_per_row >= MIN_CHUNK_MACS && r < L->M) {
            rows = r;
            chunks = (L->M + r - 1) / r;
            break;
        }
        T--;
    }
    linear_job job = {L, rows};
    mha__pool_run(ctx->pool, chunks, linear_task, &job);
}
