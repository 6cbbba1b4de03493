/* testutil.h - fixtures shared by the CMocka suites: random models set both
 * into a libmha context and into the naive float64 reference. */
#ifndef MHA_TESTUTIL_H
#define MHA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mha.h"
#include "naive.h"

#define TOL 1e-4

typedef struct fixture {
    mha_config cfg;
    mha_ctx *ctx;
    naive_model nm;
    float *wf[MHA_PARAM_COUNT];  /* weights as set into ctx */
    double *wd[MHA_PARAM_COUNT]; /* the same in double, for the reference */
} fixture;

void rng_seed(uint64_t seed);
double rng_uniform(void); /* [-1, 1) */
float *rand_floats(size_t n, double scale);
double *to_double(const float *x, size_t n);

/* A config with the given dims and defaults elsewhere. */
mha_config make_cfg(size_t d_model, size_t n_heads, size_t n_kv_heads, size_t d_head,
                    size_t d_ff);
/* Creates the context and sets random weights (order-1 outputs: W ~ U/sqrt(fan_in)). */
void fixture_make(fixture *f, const mha_config *cfg, uint64_t seed);
void fixture_free(fixture *f);

double max_abs_diff(const float *got, const double *ref, size_t n);
/* Fails the test with a message when max |got - ref| > tol. */
void assert_close(const float *got, const double *ref, size_t n, double tol);

/* Runs mha_attention_forward (or the layer) and the reference on random
 * inputs; checks out (and attn weights when want_weights) within TOL. */
typedef struct attn_case {
    size_t batch, seq_q, seq_kv;
    int cross, causal, want_weights, use_bias;
    const int32_t *kv_len;
    int layer;
} attn_case;
void run_attn_case(fixture *f, const attn_case *c);

#endif
