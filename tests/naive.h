/* naive.h - the textbook float64 reference of libmha, shared by the tests and
 * the bench. Straight loops, double accumulation, no BLAS, no tiling. */
#ifndef MHA_NAIVE_H
#define MHA_NAIVE_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

typedef struct naive_model {
    size_t d_model, n_heads, n_kv_heads, d_head, d_ff; /* resolved (no zeros) */
    int activation, norm_first, bias;
    double ln_eps;
    const double *w[MHA_PARAM_COUNT]; /* design.md layouts; NULL when unused */
} naive_model;

/* y[N, n_out] = x[N, n_in] W[n_out, n_in]^T + b[n_out] (b may be NULL). */
void naive_linear(size_t N, size_t n_in, size_t n_out, const double *x, const double *W,
                  const double *b, double *y);
/* y[N, D] = LayerNorm(x) * w + b. */
void naive_layernorm(size_t N, size_t D, const double *x, const double *w, const double *b,
                     double eps, double *y);
double naive_act(int act, double x);
/* Multi-head attention incl. W_o. xk = xv = NULL: self-attention (Skv = Sq).
 * weights: NULL or [B, H, Sq, Skv]. */
void naive_attention(const naive_model *m, size_t B, size_t Sq, size_t Skv, const double *xq,
                     const double *xk, const double *xv, const int32_t *kv_len,
                     const float *attn_bias, int causal, double *out, double *weights);
/* out[N, D] = FFN(x). */
void naive_ffn(const naive_model *m, size_t N, const double *x, double *out);
/* PyTorch TransformerEncoderLayer (dropout 0), self-attention. */
void naive_layer(const naive_model *m, size_t B, size_t S, const double *x,
                 const int32_t *kv_len, const float *attn_bias, int causal, double *out,
                 double *weights);

#endif
