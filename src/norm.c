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

/* (macros: vector values never cross a call, see math.c) */
#define LOAD_VD(x) ((vd){(x)[0], (x)[1], (x)[2], (x)[3], (x)[4], (x)[5], (x)[6], (x)[7]})
#define SUM_VD(v) ((((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7])))

/* mean and 1/sqrt(var + eps) of a row, in double. Four accumulators of 8
 * lanes: one would make each pass wait on the add latency (4 cycles per 8
 * elements); with four the loads and converts set the pace. */
static inline __attribute__((always_inline)) void row_stats(const float *x, size_t D, float eps,
                                                            float *meanf, float *rstd)
{
    size_t i, D4 = D / (4 * DL) * (4 * DL), Dv = D / DL * DL;
    vd a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    double sum = 0.0;
    for (i = 0; i < D4; i += 4 * DL) {
        a0 += LOAD_VD(x + i);
        a1 += LOAD_VD(x + i + DL);
        a2 += LOAD_VD(x + i + 2 * DL);
        a3 += LOAD_VD(x + i + 3 * DL);
    }
    for (; i < Dv; i += DL)
        a0 += LOAD_VD(x + i);
    for (; i < D; i++)
        sum += x[i];
    a0 = (a0 + a1) + (a2 + a3);
    double mean = (sum + SUM_VD(a0)) / (double)D, var = 0.0;
    a0 = a1 = a2 = a3 = (vd){0};
    for (i = 0; i < D4; i += 4 * DL) {
        vd d0 = LOAD_VD(x + i) - mean, d1 = LOAD_VD(x + i + DL) - mean;
        vd d2 = LOAD_VD(x + i + 2 * DL) - mean, d3 = LOAD_VD(x + i + 3 * DL) - mean;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; i < Dv; i += DL) {
        vd d = LOAD_VD(x + i) - mean;
        a0 += d * d;
    }
    for (; i < D; i++)
        var += (x[i] - mean) * (x[i] - mean);
    a0 = (a0 + a1) + (a2 + a3);
    var = (var + SUM_VD(a0)) / (double)D;
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
    *meanf = (float)mean;
}

MHA__VEC static void layernorm_row(float *out, const float *x, const float *w, const float *b,
                                   size_t D, float eps)
{
    float mean, rstd;
    row_stats(x, D, eps, &mean, &rstd);
    for (size_t i = 0; i < D; i++)
        out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* xhat = (x - mean) rstd, g = dy w:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)),  dw += dy xhat,  db += dy */
MHA__VEC static void layernorm_row_backward(float *dx, int accumulate, const float *dy,
                                            const float *x, const float *w, float *dw,
                                            float *db, size_t D, float eps)
{
    float mean, rstd;
    row_stats(x, D, eps, &mean, &rstd);
    double sg = 0.0, sgx = 0.0;
    for (size_t i = 0; i < D; i++) {
        float xhat = (x[i] - mean) * rstd, g = dy[i] * w[i];
        sg += g;
        sgx += (double)g * xhat;
        dw[i] += dy[i] * xhat;
        db[i] += dy[i];
    }
    float mg = (float)(sg / (double)D), mgx = (float)(sgx / (double)D);
    for (size_t i = 0; i < D; i++) {
        float xhat = (x[i] - mean) * rstd;
        float d = rstd * (dy[i] * w[i] - mg - xhat * mgx);
        dx[i] = accumulate ? dx[i] + d : d;
    }
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

typedef struct bwd_job {
    float *dx;
    int accumulate;
    const float *dy, *x, *w;
    float *partials; /* [tasks, 2 D]: per-block dw | db */
    size_t M, D;
    float eps;
} bwd_job;

static void layernorm_bwd_task(void *arg, size_t task, size_t thread)
{
    (void)thread;
    const bwd_job *j = arg;
    size_t r0 = task * ROWS_PER_TASK, r1 = mha__min(r0 + ROWS_PER_TASK, j->M);
    float *dw = j->partials + task * 2 * j->D, *db = dw + j->D;
    memset(dw, 0, 2 * j->D * sizeof(float));
    for (size_t r = r0; r < r1; r++)
        layernorm_row_backward(j->dx + r * j->D, j->accumulate, j->dy + r * j->D,
                               j->x + r * j->D, j->w, dw, db, j->D, j->eps);
}

size_t mha__layernorm_bwd_ws(size_t M, size_t D)
{
    return (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK * 2 * D;
}

void mha__layernorm_backward(mha_ctx *ctx, float *dx, int accumulate, const float *dy,
                             const float *x, const float *w, float *dw, float *db, size_t M,
                             size_t D, float eps, float *partials)
{
    size_t tasks = (M + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    bwd_job j = {dx, accumulate, dy, x, w, partials, M, D, eps};
    mha__pool_run(ctx->pool, tasks, layernorm_bwd_task, &j);
    /* the fixed row blocks are summed in order: the same for any thread count */
    for (size_t t = 0; t < tasks; t++) {
        const float *p = partials + t * 2 * D;
        for (size_t i = 0; i < D; i++) {
            dw[i] += p[i];
            db[i] += p[D + i];
        }
    }
}
