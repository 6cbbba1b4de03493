/* naive.c - see naive.h. Written for clarity, not speed. */
#include "naive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void naive_linear(size_t N, size_t n_in, size_t n_out, const double *x, const double *W,
                  const double *b, double *y)
{
    for (size_t t = 0; t < N; t++)
        for (size_t o = 0; o < n_out; o++) {
            double s = b ? b[o] : 0.0;
            for (size_t i = 0; i < n_in; i++)
                s += x[t * n_in + i] * W[o * n_in + i];
            y[t * n_out + o] = s;
        }
}

void naive_layernorm(size_t N, size_t D, const double *x, const double *w, const double *b,
                     double eps, double *y)
{
    for (size_t t = 0; t < N; t++) {
        const double *r = x + t * D;
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < D; i++)
            mean += r[i];
        mean /= (double)D;
        for (size_t i = 0; i < D; i++)
            var += (r[i] - mean) * (r[i] - mean);
        var /= (double)D;
        double rstd = 1.0 / sqrt(var + eps);
        for (size_t i = 0; i < D; i++)
            y[t * D + i] = (r[i] - mean) * rstd * w[i] + b[i];
    }
}

double naive_act(int act, double x)
{
    switch (act) {
    case MHA_ACT_RELU:
        return x > 0.0 ? x : 0.0;
    case MHA_ACT_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case MHA_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
    default: /* SiLU, the gate of SwiGLU */
        return x / (1.0 + exp(-x));
    }
}

void naive_attention(const naive_model *m, size_t B, size_t Sq, size_t Skv, const double *xq,
                     const double *xk, const double *xv, const int32_t *kv_len,
                     const float *attn_bias, int causal, double *out, double *weights)
{
    size_t D = m->d_model, H = m->n_heads, Hkv = m->n_kv_heads, dh = m->d_head;
    if (!xk) {
        xk = xv = xq;
        Skv = Sq;
    }
    double *q = malloc(sizeof(double) * (B * Sq * H * dh + 1));
    double *k = malloc(sizeof(double) * (B * Skv * Hkv * dh + 1));
    double *v = malloc(sizeof(double) * (B * Skv * Hkv * dh + 1));
    double *cat = calloc(B * Sq * H * dh + 1, sizeof(double));
    double *p = malloc(sizeof(double) * (Skv + 1));
    naive_linear(B * Sq, D, H * dh, xq, m->w[MHA_PARAM_WQ], m->w[MHA_PARAM_BQ], q);
    naive_linear(B * Skv, D, Hkv * dh, xk, m->w[MHA_PARAM_WK], m->w[MHA_PARAM_BK], k);
    naive_linear(B * Skv, D, Hkv * dh, xv, m->w[MHA_PARAM_WV], m->w[MHA_PARAM_BV], v);
    double scale = 1.0 / sqrt((double)dh);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            size_t g = h / (H / Hkv);
            for (size_t i = 0; i < Sq; i++) {
                double mx = -INFINITY;
                for (size_t j = 0; j < Skv; j++) {
                    int masked = (kv_len && (int64_t)j >= kv_len[b]) ||
                                 (causal && (int64_t)j > (int64_t)i + (int64_t)Skv - (int64_t)Sq);
                    double s = -INFINITY;
                    if (!masked) {
                        s = 0.0;
                        for (size_t d = 0; d < dh; d++)
                            s += q[(b * Sq + i) * H * dh + h * dh + d] *
                                 k[(b * Skv + j) * Hkv * dh + g * dh + d];
                        s *= scale;
                        if (attn_bias)
                            s += attn_bias[i * Skv + j];
                    }
                    p[j] = s;
                    if (s > mx)
                        mx = s;
                }
                double sum = 0.0;
                for (size_t j = 0; j < Skv; j++) {
                    p[j] = mx == -INFINITY ? 0.0 : exp(p[j] - mx);
                    sum += p[j];
                }
                for (size_t j = 0; j < Skv; j++) {
                    p[j] = sum > 0.0 ? p[j] / sum : 0.0; /* fully masked row: zeros */
                    if (weights)
                        weights[((b * H + h) * Sq + i) * Skv + j] = p[j];
                    for (size_t d = 0; d < dh; d++)
                        cat[(b * Sq + i) * H * dh + h * dh + d] +=
                            p[j] * v[(b * Skv + j) * Hkv * dh + g * dh + d];
                }
            }
        }
    naive_linear(B * Sq, H * dh, D, cat, m->w[MHA_PARAM_WO], m->w[MHA_PARAM_BO], out);
    free(q);
    free(k);
    free(v);
    free(cat);
    free(p);
}

void naive_ffn(const naive_model *m, size_t N, const double *x, double *out)
{
    size_t D = m->d_model, F = m->d_ff;
    double *h = malloc(sizeof(double) * (N * F + 1));
    naive_linear(N, D, F, x, m->w[MHA_PARAM_W1], m->w[MHA_PARAM_B1], h);
    if (m->activation == MHA_ACT_SWIGLU) {
        double *gate = malloc(sizeof(double) * (N * F + 1));
        naive_linear(N, D, F, x, m->w[MHA_PARAM_W3], NULL, gate);
        for (size_t i = 0; i < N * F; i++)
            h[i] = naive_act(MHA_ACT_SWIGLU, h[i]) * gate[i];
        free(gate);
    } else {
        for (size_t i = 0; i < N * F; i++)
            h[i] = naive_act(m->activation, h[i]);
    }
    naive_linear(N, F, D, h, m->w[MHA_PARAM_W2], m->w[MHA_PARAM_B2], out);
    free(h);
}

void naive_layer(const naive_model *m, size_t B, size_t S, const double *x,
                 const int32_t *kv_len, const float *attn_bias, int causal, double *out,
                 double *weights)
{
    size_t N = B * S, D = m->d_model;
    double *a = calloc(N * D + 1, sizeof(double));
    double *h = calloc(N * D + 1, sizeof(double));
    double *t = calloc(N * D + 1, sizeof(double));
    const double *l1w = m->w[MHA_PARAM_LN1_WEIGHT], *l1b = m->w[MHA_PARAM_LN1_BIAS];
    const double *l2w = m->w[MHA_PARAM_LN2_WEIGHT], *l2b = m->w[MHA_PARAM_LN2_BIAS];
    if (m->norm_first) {
        naive_layernorm(N, D, x, l1w, l1b, m->ln_eps, t);
        naive_attention(m, B, S, S, t, NULL, NULL, kv_len, attn_bias, causal, a, weights);
        for (size_t i = 0; i < N * D; i++)
            h[i] = x[i] + a[i];
        naive_layernorm(N, D, h, l2w, l2b, m->ln_eps, t);
        naive_ffn(m, N, t, a);
        for (size_t i = 0; i < N * D; i++)
            out[i] = h[i] + a[i];
    } else {
        naive_attention(m, B, S, S, x, NULL, NULL, kv_len, attn_bias, causal, a, weights);
        for (size_t i = 0; i < N * D; i++)
            t[i] = x[i] + a[i];
        naive_layernorm(N, D, t, l1w, l1b, m->ln_eps, h);
        naive_ffn(m, N, h, a);
        for (size_t i = 0; i < N * D; i++)
            t[i] = h[i] + a[i];
        naive_layernorm(N, D, t, l2w, l2b, m->ln_eps, out);
    }
    free(a);
    free(h);
    free(t);
}
