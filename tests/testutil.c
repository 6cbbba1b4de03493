#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }

double rng_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

float *rand_floats(size_t n, double scale)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_uniform() * scale);
    return x;
}

double *to_double(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof(double));
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = x ? x[i] : 0.0;
    return d;
}

mha_config make_cfg(size_t d_model, size_t n_heads, size_t n_kv_heads, size_t d_head,
                    size_t d_ff)
{
    mha_config c;
    mha_config_init(&c);
    c.d_model = d_model;
    c.n_heads = n_heads;
    c.n_kv_heads = n_kv_heads;
    c.d_head = d_head;
    c.d_ff = d_ff;
    c.n_threads = 1;
    return c;
}

static size_t fan_in(const fixture *f, mha_param p)
{
    switch (p) {
    case MHA_PARAM_WO:
        return f->nm.n_heads * f->nm.d_head;
    case MHA_PARAM_W2:
        return f->nm.d_ff;
    default:
        return f->nm.d_model;
    }
}

void fixture_make(fixture *f, const mha_config *cfg, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->cfg = *cfg;
    assert_int_equal(mha_create(cfg, &f->ctx), MHA_OK);
    naive_model *m = &f->nm;
    m->d_model = cfg->d_model;
    m->n_heads = cfg->n_heads;
    m->n_kv_heads = cfg->n_kv_heads ? cfg->n_kv_heads : cfg->n_heads;
    m->d_head = cfg->d_head ? cfg->d_head : cfg->d_model / cfg->n_heads;
    m->d_ff = cfg->d_ff ? cfg->d_ff : 4 * cfg->d_model;
    m->activation = cfg->activation;
    m->norm_first = cfg->norm_first;
    m->bias = cfg->bias;
    m->ln_eps = cfg->ln_eps;
    rng_seed(seed);
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(f->ctx, (mha_param)p);
        if (!n)
            continue;
        float *w;
        if (p == MHA_PARAM_LN1_WEIGHT || p == MHA_PARAM_LN2_WEIGHT) {
            w = rand_floats(n, 0.3);
            for (size_t i = 0; i < n; i++)
                w[i] += 1.0f;
        } else if (p >= MHA_PARAM_BQ && p <= MHA_PARAM_BO) {
            w = rand_floats(n, 0.5);
        } else if (p == MHA_PARAM_B1 || p == MHA_PARAM_B2 || p == MHA_PARAM_LN1_BIAS ||
                   p == MHA_PARAM_LN2_BIAS) {
            w = rand_floats(n, 0.5);
        } else {
            w = rand_floats(n, sqrt(3.0 / (double)fan_in(f, (mha_param)p)));
        }
        assert_int_equal(mha_set_param(f->ctx, (mha_param)p, w, n), MHA_OK);
        f->wf[p] = w;
        f->wd[p] = to_double(w, n);
        m->w[p] = f->wd[p];
    }
}

void fixture_free(fixture *f)
{
    mha_destroy(f->ctx);
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        free(f->wf[p]);
        free(f->wd[p]);
    }
    memset(f, 0, sizeof *f);
}

double max_abs_diff(const float *got, const double *ref, size_t n)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= mx)) /* NaN counts as infinitely wrong */
            mx = isnan(d) ? INFINITY : d;
    }
    return mx;
}

void assert_close(const float *got, const double *ref, size_t n, double tol)
{
    double d = max_abs_diff(got, ref, n);
    if (!(d <= tol))
        fail_msg("max abs error %.3g > %.3g over %zu values", d, tol, n);
}

void run_attn_case(fixture *f, const attn_case *c)
{
    size_t D = f->nm.d_model, H = f->nm.n_heads;
    size_t skv = c->cross ? c->seq_kv : c->seq_q;
    size_t nq = c->batch * c->seq_q * D, nkv = c->batch * skv * D;
    float *q = rand_floats(nq, 1.0), *k = c->cross ? rand_floats(nkv, 1.0) : NULL;
    float *v = c->cross ? rand_floats(nkv, 1.0) : NULL;
    float *bias = NULL;
    if (c->use_bias) {
        bias = rand_floats(c->seq_q * skv, 1.0);
        /* Some -inf, and one query row entirely -inf. */
        for (size_t i = 0; i < c->seq_q * skv; i += 7)
            bias[i] = -INFINITY;
        if (c->seq_q > 1)
            for (size_t j = 0; j < skv; j++)
                bias[1 * skv + j] = -INFINITY;
    }
    size_t nw = c->batch * H * c->seq_q * skv;
    float *out = malloc((nq ? nq : 1) * sizeof(float));
    float *w = c->want_weights ? malloc((nw ? nw : 1) * sizeof(float)) : NULL;
    double *ref = calloc(nq + 1, sizeof(double)), *wref = calloc(nw + 1, sizeof(double));
    double *qd = to_double(q, nq), *kd = c->cross ? to_double(k, nkv) : NULL;
    double *vd = c->cross ? to_double(v, nkv) : NULL;

    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = c->batch;
    a.seq_q = c->seq_q;
    a.seq_kv = c->cross ? c->seq_kv : 0;
    a.query = q;
    a.key = k;
    a.value = v;
    a.kv_lengths = c->kv_len;
    a.attn_bias = bias;
    a.causal = c->causal;
    a.out = out;
    a.attn_weights = w;
    mha_status st = c->layer ? mha_layer_forward(f->ctx, &a) : mha_attention_forward(f->ctx, &a);
    assert_int_equal(st, MHA_OK);
    if (c->layer)
        naive_layer(&f->nm, c->batch, c->seq_q, qd, c->kv_len, bias, c->causal, ref, wref);
    else
        naive_attention(&f->nm, c->batch, c->seq_q, skv, qd, kd, vd, c->kv_len, bias, c->causal,
                        ref, wref);
    assert_close(out, ref, nq, TOL);
    if (w) {
        assert_close(w, wref, nw, TOL);
        /* again without weights: that path blocks by whole rows, the
         * default one by tiles. out is poisoned so that it must be written. */
        for (size_t i = 0; i < nq; i++)
            out[i] = NAN;
        a.attn_weights = NULL;
        st = c->layer ? mha_layer_forward(f->ctx, &a) : mha_attention_forward(f->ctx, &a);
        assert_int_equal(st, MHA_OK);
        assert_close(out, ref, nq, TOL);
    }
    free(q);
    free(k);
    free(v);
    free(bias);
    free(out);
    free(w);
    free(ref);
    free(wref);
    free(qd);
    free(kd);
    free(vd);
}
