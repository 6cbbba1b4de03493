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
 * squares overflow float) and for constant rows (variance exactly 0). The
 * sums run in 8 double lanes (vector extensions: the auto-vectoriser will
 * not reorder a floating-point reduction). */
typedef double vd __attribute__((vector_size(64)));
#define DL 8

static inline __attribute__((always_inline)) vd load_vd(const float *x)
{
    return (vd){x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]};
}

static inline __attribute__((always_inline)) double sum_vd(vd v)
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

MHA__VEC static void layernorm_row(float *out, const float *x, const float *w, const float *b,
                                   size_t D, float eps)
{
    size_t i, Dv = D / DL * DL;
    vd acc = {0};
    double sum = 0.0;
    for (i = 0; i < Dv; i += DL)
        acc += load_vd(x + i);
    for (; i < D; i++)
        sum += x[i];
    double mean = (sum + sum_vd(acc)) / (double)D, var = 0.0;
    acc = (vd){0};
    for (i = 0; i < Dv; i += DL) {
        vd d = load_vd(x + i) - mean;
        acc += d * d;
    }
    for (; i < D; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var = (var + sum_vd(acc)) / (double)D;
    float rstd = (float)(1.0 / sqrt(var + (double)eps)), meanf = (float)mean;
    for (i = 0; i < D; i++)
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
