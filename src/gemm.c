/* gemm.c - linear layers and plain GEMMs on cblas_sgemm, split over the pool
 * by rows or columns of the output (never along the reduction).
 *
 * Determinism: a row or column chunk computes each output element with the
 * same sgemm inner loop as an unsplit call (OpenBLAS blocks K by K alone),
 * and chunk starts are multiples of 32 rows / 64 columns so that the same
 * micro-kernel tile shapes cover the same elements. Chunks are only made
 * when each one is still large (OpenBLAS switches to a different "small
 * matrix" kernel at 1e6 multiply-adds and below), so results are bitwise
 * identical for any thread count; tests/test_threads.c checks 1-8 threads. */
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
            /* one branch-free loop per case, so that each vectorises */
            if (r && bias)
                for (size_t j = 0; j < nc; j++)
                    o[j] = r[j] + bias[j];
            else if (r)
                memcpy(o, r, nc * sizeof(float));
            else
                memcpy(o, bias, nc * sizeof(float));
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

/* How to cut an [M, N] output over the pool: along the longer side (a row
 * chunk repacks all of the right operand and a column chunk all of the left
 * one, so cutting the long side duplicates the smaller operand), chunk
 * starts aligned, every chunk still large. "Every" includes the last one,
 * which aligned starts can leave short (900 rows in chunks of 128 leave 4):
 * below 1e6 multiply-adds OpenBLAS takes its small-matrix kernel, whose
 * results differ in the last bits, and the split would then show in the
 * output. Returns the number of chunks. */
static size_t plan_split(const mha_ctx *ctx, size_t M, size_t N, size_t K, int allow_cols,
                         int *by_cols, size_t *chunk)
{
    *by_cols = allow_cols && N > M;
    size_t dim = *by_cols ? N : M, align = *by_cols ? COL_ALIGN : ROW_ALIGN;
    double macs_per_unit = (double)(*by_cols ? M : N) * (double)K;
    *chunk = dim;
    for (size_t T = mha__pool_threads(ctx->pool); T > 1; T--) {
        size_t c = (dim + T - 1) / T;
        c = (c + align - 1) / align * align;
        if (c >= dim)
            continue;
        size_t n = (dim + c - 1) / c, last = dim - (n - 1) * c;
        if ((double)last * macs_per_unit >= MIN_CHUNK_MACS) { /* last <= c */
            *chunk = c;
            return n;
        }
    }
    return 1;
}

void mha__linear_forward(mha_ctx *ctx, const mha__linear *L)
{
    if (L->M == 0 || L->N == 0)
        return;
    linear_job job = {L, 0, 0};
    size_t chunks = plan_split(ctx, L->M, L->N, L->K, L->act != MHA_ACT_SWIGLU, &job.by_cols,
                               &job.chunk);
    mha__pool_run(ctx->pool, chunks, linear_task, &job);
}

typedef struct gemm_job {
    int ta, tb;
    size_t M, N, K;
    const float *A;
    size_t lda;
    const float *B;
    size_t ldb;
    float beta;
    float *C;
    size_t ldc;
    size_t chunk;
    int by_cols;
} gemm_job;

static void gemm_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const gemm_job *g = arg;
    size_t s0 = task * g->chunk, M = g->M, N = g->N;
    const float *A = g->A, *B = g->B;
    float *C = g->C;
    if (g->by_cols) {
        N = mha__min(g->chunk, g->N - s0);
        B += g->tb ? s0 * g->ldb : s0;
        C += s0;
    } else {
        M = mha__min(g->chunk, g->M - s0);
        A += g->ta ? s0 : s0 * g->lda;
        C += s0 * g->ldc;
    }
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)g->K, 1.0f, A, (int)g->lda, B, (int)g->ldb, g->beta, C,
                (int)g->ldc);
}

void mha__gemm(mha_ctx *ctx, int ta, int tb, size_t M, size_t N, size_t K, const float *A,
               size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) { /* sgemm would only scale C; keep it explicit and portable */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    gemm_job g = {ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, 0, 0};
    size_t chunks = plan_split(ctx, M, N, K, 1, &g.by_cols, &g.chunk);
    mha__pool_run(ctx->pool, chunks, gemm_task, &g);
}

typedef struct colsum_job {
    float *dst;
    const float *X;
    size_t M, N, ld;
} colsum_job;

#define COLSUM_BLOCK 64 /* mha__colsum64's width */

static void colsum_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const colsum_job *j = arg;
    size_t c0 = task * COLSUM_BLOCK, nc = mha__min(COLSUM_BLOCK, j->N - c0);
    double acc[COLSUM_BLOCK] = {0};
    if (nc == COLSUM_BLOCK)
        mha__colsum64(acc, j->X + c0, j->M, j->ld);
    else /* the same sums, for the last, narrower block */
        for (size_t i = 0; i < j->M; i++) {
            const float *x = j->X + i * j->ld + c0;
            for (size_t c = 0; c < nc; c++)
                acc[c] += x[c];
        }
    for (size_t c = 0; c < nc; c++)
        j->dst[c0 + c] += (float)acc[c];
}

void mha__colsum_acc(mha_ctx *ctx, float *dst, const float *X, size_t M, size_t N, size_t ld)
{
    colsum_job j = {dst, X, M, N, ld};
    mha__pool_run(ctx->pool, (N + COLSUM_BLOCK - 1) / COLSUM_BLOCK, colsum_task, &j);
}
