/* norm.c - LayerNorm and residual adds, split over the pool in fixed row
 * blocks (so the split never depends on the thread count). */
#include "internal.h"

#include <math.h>

#define ROWS_PER_TASK 16

typedef struct rows_job {
    float *out;
    const float *x;
    const float *w, *bias;
    size_t M, D;
    float eps;
} rows_job;

/* Two-pass statistics in double: exact enough for rows of 1e30 (whose
 * squares overflow float) and for constant rows (variance exactly 0). */
MHA__VEC static void layernorm_row(float *out, const float *x, const float *w, const float *b,
                                   size_t D, float eps)
{
    double sum = 0.0;
    for (size_t i = 0; i < D; i++)
        sum += x[i];
    double mean = sum / (double)D, var = 0.0;
    for (size_t i = 0; i < D; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    var /= (double)D;
    float rstd = (float)(1.0 / sqrt(var + (double)eps)), meanf = (float)mean;
    for (size_t i = 0; i < D; i++)
        out[i] = (x[i] - meanf) * rstd * w[i] + b[i];
}

static void layernorm_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const rows_job *j = arg;
    size_t r0 = task * ROWS_PER_TASK, r1 = mha__min(r0 + ROWS_PER_TASK, j->M);
    for (size_t r = r0; r < r1; r++)
        layernorm_row(j->out + r * j->D, j->x + r * j->D, j->w, j->bias, j->D, j->eps);
}

void mha__layernorm_forward(mha_ctx *ctx, float *out, const float *x, const float *w,
                            const float *b, size_t M, size_t D, float eps)
{
    rows_job j = {out, x, w, b, M, D, eps};
    mha__pool_run(ctx->pool, (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK, layernorm_task, &j);
}
