/* test_kernels.c - the softmax rows and the GELU of src/math.c, which this
 * test compiles in (they are internal): the dispatching versions
 * (hand-written AVX-512 where the CPU has it) must equal the portable
 * vector-extension versions bit for bit, and both must match exp / erf in
 * double precision. Rows of every length around the 16-lane width, with
 * masked tails, -inf / NaN / +inf / signed-zero scores, arguments around
 * exp's -87 and +88 cut-offs and erf's clamp, and running max / sum carried
 * over from an earlier block. The key-major softmax tile (columns) is held
 * to the same, and to the row kernel column by column. */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t lengths[] = {1, 7, 15, 16, 17, 31, 32, 33, 100, 512, 1030};

/* Same bits, or both NaN (NaN payloads are not part of the contract). */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

static void assert_same_row(const float *a, const float *b, size_t n, const char *what)
{
    for (size_t j = 0; j < n; j++)
        if (!same(a[j], b[j]))
            fail_msg("%s: [%zu] dispatch %a, portable %a", what, j, (double)a[j], (double)b[j]);
}

/* Scores: random of the given scale, with some specials mixed in. */
static void fill_scores(float *s, size_t n, double scale, int specials)
{
    for (size_t j = 0; j < n; j++) {
        s[j] = (float)(rng_uniform() * scale);
        if (!specials)
            continue;
        double u = rng_uniform();
        if (u > 0.9)
            s[j] = -INFINITY;
        else if (u > 0.85)
            s[j] = (float)(-87.0 + rng_uniform()); /* around the underflow cut-off */
        else if (u < -0.98)
            s[j] = NAN;
        else if (u < -0.9) /* signed zeros: the max of a row of negatives */
            s[j] = u < -0.94 ? -0.0f : 0.0f;
    }
}

static int have_avx512(void)
{
#if MHA__AVX512
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

static void online_row_matches_portable(void **st)
{
    (void)st;
    if (!have_avx512())
        skip(); /* the dispatcher is the portable code itself */
    rng_seed(11);
    const size_t N = 1030;
    float *a = malloc(N * 4), *b = malloc(N * 4), *bias = malloc(N * 4);
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
        for (int variant = 0; variant < 24; variant++) {
            size_t n = lengths[li], nvalid[] = {n, n - 1, n / 2, 0};
            size_t nv = nvalid[variant % 4];
            double scale = variant % 3 == 0 ? 1.0 : variant % 3 == 1 ? 30.0 : 1000.0;
            fill_scores(a, n, scale, variant % 2);
            memcpy(b, a, n * 4);
            int with_bias = variant / 4 % 2, carried = variant / 8 % 3;
            fill_scores(bias, n, 3.0, 1);
            float m0 = carried == 0 ? -INFINITY : (float)(rng_uniform() * 40.0);
            float l0 = carried == 0 ? 0.0f : (float)(1.0 + rng_uniform() * 0.5);
            if (carried == 2)
                m0 = 200.0f; /* earlier max above every score: alpha = 1 */
            float ma = m0, la = l0, mb = m0, lb = l0;
            float alpha_a = mha__softmax_online_row(a, with_bias ? bias : NULL, nv, n, &ma, &la);
            float alpha_b =
                mha__softmax_online_row_portable(b, with_bias ? bias : NULL, nv, n, &mb, &lb);
            char what[64];
            snprintf(what, sizeof what, "online p, n %zu, n_valid %zu", n, nv);
            assert_same_row(a, b, n, what);
            assert_true(same(ma, mb) && same(la, lb) && same(alpha_a, alpha_b));
        }
    /* Rows <= 0 with +0 and -0 mixed: a zero is the max, and which zero a
     * reduction meets first depends on its order. */
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
        for (int variant = 0; variant < 16; variant++) {
            size_t n = lengths[li];
            for (size_t j = 0; j < n; j++) {
                double u = rng_uniform();
                a[j] = u > 0.3 ? (float)(u - 1.5) : u > -0.3 ? 0.0f : -0.0f;
            }
            memcpy(b, a, n * 4);
            float ma = -INFINITY, la = 0.0f, mb = -INFINITY, lb = 0.0f;
            mha__softmax_online_row(a, NULL, n, n, &ma, &la);
            mha__softmax_online_row_portable(b, NULL, n, n, &mb, &lb);
            assert_same_row(a, b, n, "zeros as the max");
            assert_true(same(ma, mb) && same(la, lb));
        }
    free(a);
    free(b);
    free(bias);
}

static void recompute_row_matches_portable(void **st)
{
    (void)st;
    if (!have_avx512())
        skip();
    rng_seed(12);
    const size_t N = 1030;
    float *a = malloc(N * 4), *b = malloc(N * 4), *bias = malloc(N * 4);
    const float lses[] = {0.0f, 5.5f, -3.25f, -95.0f, -INFINITY, INFINITY, NAN};
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
        for (size_t k = 0; k < sizeof lses / sizeof *lses; k++)
            for (int variant = 0; variant < 4; variant++) {
                size_t n = lengths[li], nv = variant % 2 ? n : n / 2;
                fill_scores(a, n, 10.0, 1);
                /* -95 puts arguments around exp's +88 cut-off (inf above) */
                memcpy(b, a, n * 4);
                fill_scores(bias, n, 2.0, 1);
                const float *bp = variant / 2 ? bias : NULL;
                mha__softmax_recompute_row(a, bp, nv, n, lses[k]);
                mha__softmax_recompute_row_portable(b, bp, nv, n, lses[k]);
                char what[80];
                snprintf(what, sizeof what, "recomputed p, n %zu, n_valid %zu, lse %g", n, nv,
                         (double)lses[k]);
                assert_same_row(a, b, n, what);
            }
    free(a);
    free(b);
    free(bias);
}

/* Against double precision: p = exp(s - max) / carried sum, within a few
 * float ulps, and exactly 0 for masked keys and the padded tail. */
static void online_row_matches_exp(void **st)
{
    (void)st;
    rng_seed(13);
    const size_t N = 1030;
    float *s = malloc(N * 4), *s0 = malloc(N * 4);
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
        for (int variant = 0; variant < 6; variant++) {
            size_t n = lengths[li], nv = variant % 2 ? n : (n + 1) / 2;
            for (size_t j = 0; j < n; j++)
                s0[j] = rng_uniform() > 0.8 ? -INFINITY : (float)(rng_uniform() * 40.0);
            s0[0] = 1.0f; /* at least one finite score */
            memcpy(s, s0, n * 4);
            float m = -INFINITY, l = 0.0f;
            mha__softmax_online_row(s, NULL, nv, n, &m, &l);
            double mx = -INFINITY, sum = 0.0;
            for (size_t j = 0; j < nv; j++)
                mx = s0[j] > mx ? s0[j] : mx;
            assert_true(m == (float)mx);
            for (size_t j = 0; j < n; j++) {
                /* s - max is a float subtraction (its rounding is the
                 * softmax's, as in PyTorch); exp of it must be near exact */
                double want = j < nv ? exp((double)(s0[j] - (float)mx)) : 0.0;
                sum += want;
                if (want == 0.0 || want < 1e-37) /* exp_core flushes below e^-87 */
                    assert_true(s[j] == 0.0f || want != 0.0);
                else if (fabs(s[j] - want) > 4e-7 * want)
                    fail_msg("n %zu [%zu]: p %.9g, exp %.9g", n, j, (double)s[j], want);
            }
            assert_true(fabs(l - sum) <= 1e-5 * sum);
        }
    free(s);
    free(s0);
}

/* Close within rel (a few ulps), or both NaN, or equal (zeros, infinities). */
static int close_f(float a, float b, double rel)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b || (isfinite(a) && isfinite(b) && fabs((double)a - b) <= rel * fabs((double)b));
}

/* Key-major tiles: widths around the 16-lane vectors and the 64-query
 * strips, heights, every position of the causal diagonal (none, through the
 * tile, right of it, past it), specials in the scores, and two key blocks
 * in a row (the running max and sum carried). */
static const size_t tile_widths[] = {1, 15, 16, 17, 63, 64, 65, 100, 130};
static const size_t tile_heights[] = {1, 7, 33, 100};
#define TILE_MAX (100 * 130)

static void tile_diags(ptrdiff_t *d, size_t nq, size_t nk)
{
    d[0] = -(ptrdiff_t)nk; /* no mask */
    d[1] = 0;
    d[2] = -(ptrdiff_t)nk / 2;
    d[3] = (ptrdiff_t)nq / 2;
    d[4] = (ptrdiff_t)nq + 3; /* some rows see no query at all */
}

static void online_cols_match_portable(void **st)
{
    (void)st;
    if (!have_avx512())
        skip();
    rng_seed(15);
    float *a = malloc(TILE_MAX * 4), *b = malloc(TILE_MAX * 4);
    float ma[130], la[130], aa[130], mb[130], lb[130], ab[130];
    for (size_t wi = 0; wi < sizeof tile_widths / sizeof *tile_widths; wi++)
        for (size_t hi = 0; hi < sizeof tile_heights / sizeof *tile_heights; hi++)
            for (int di = 0; di < 5; di++)
                for (int variant = 0; variant < 4; variant++) {
                    size_t nq = tile_widths[wi], nk = tile_heights[hi];
                    ptrdiff_t diags[5];
                    tile_diags(diags, nq, nk);
                    for (size_t c = 0; c < nq; c++) {
                        /* carried state: none, or a max below / above the scores */
                        ma[c] = mb[c] = variant < 2 ? -INFINITY : variant == 2 ? 3.0f : 200.0f;
                        la[c] = lb[c] = variant < 2 ? 0.0f : 1.25f;
                    }
                    fill_scores(a, nq * nk, variant == 1 ? 1000.0 : 30.0, variant != 0);
                    memcpy(b, a, nq * nk * 4);
                    mha__softmax_online_cols(a, nq, nk, nq, diags[di], ma, la, aa);
                    mha__softmax_online_cols_portable(b, nq, nk, nq, diags[di], mb, lb, ab);
                    char what[80];
                    snprintf(what, sizeof what, "cols p, nq %zu, nk %zu, diag %td", nq, nk,
                             diags[di]);
                    assert_same_row(a, b, nq * nk, what);
                    assert_same_row(ma, mb, nq, "cols m");
                    assert_same_row(la, lb, nq, "cols l");
                    assert_same_row(aa, ab, nq, "cols alpha");
                }
    free(a);
    free(b);
}

/* The key-major tile against the row kernel run on each query's column:
 * the max and masked zeros exactly, p, l and alpha to a few ulps (a column
 * is summed in another order than a row's lanes). */
static void online_cols_match_rows(void **st)
{
    (void)st;
    rng_seed(14);
    float *t = malloc(TILE_MAX * 4), *t0 = malloc(TILE_MAX * 4), *row = malloc(100 * 4);
    float m[130], l[130], alpha[130], rm[130], rl[130];
    for (size_t wi = 0; wi < sizeof tile_widths / sizeof *tile_widths; wi++)
        for (size_t hi = 0; hi < sizeof tile_heights / sizeof *tile_heights; hi++)
            for (int di = 0; di < 5; di++)
                for (int specials = 0; specials < 2; specials++) {
                    size_t nq = tile_widths[wi], nk = tile_heights[hi];
                    ptrdiff_t diags[5];
                    tile_diags(diags, nq, nk);
                    for (size_t c = 0; c < nq; c++) {
                        m[c] = rm[c] = -INFINITY;
                        l[c] = rl[c] = 0.0f;
                    }
                    for (size_t block = 0; block < 2; block++) {
                        /* the second block sits nk / 2 keys further right */
                        ptrdiff_t diag = diags[di] - (ptrdiff_t)(block * nk / 2);
                        fill_scores(t, nq * nk, block ? 30.0 : 10.0, specials);
                        memcpy(t0, t, nq * nk * 4);
                        mha__softmax_online_cols(t, nq, nk, nq, diag, m, l, alpha);
                        for (size_t c = 0; c < nq; c++) {
                            ptrdiff_t lim = (ptrdiff_t)c - diag + 1; /* keys j <= c - diag */
                            size_t nv = lim < 0 ? 0 : (size_t)lim > nk ? nk : (size_t)lim;
                            for (size_t j = 0; j < nk; j++)
                                row[j] = t0[j * nq + c];
                            float ra = mha__softmax_online_row_portable(row, NULL, nv, nk,
                                                                        &rm[c], &rl[c]);
                            if (!same(m[c], rm[c]) || !close_f(l[c], rl[c], 1e-6) ||
                                !close_f(alpha[c], ra, 3e-7))
                                fail_msg("nq %zu nk %zu diag %td col %zu: m %g/%g l %g/%g "
                                         "alpha %g/%g",
                                         nq, nk, diag, c, (double)m[c], (double)rm[c],
                                         (double)l[c], (double)rl[c], (double)alpha[c],
                                         (double)ra);
                            for (size_t j = 0; j < nk; j++) {
                                float p = t[j * nq + c];
                                if (j >= nv ? p != 0.0f : !close_f(p, row[j], 3e-7))
                                    fail_msg("nq %zu nk %zu diag %td [%zu, %zu]: p %g, row %g",
                                             nq, nk, diag, j, c, (double)p, (double)row[j]);
                            }
                            rl[c] = l[c]; /* one carried sum, so differences do not add up */
                        }
                    }
                }
    free(t);
    free(t0);
    free(row);
}

/* Inputs for the GELU: a random spread plus every special value, both sides
 * of the erf clamp at |x| = 4 sqrt(2), and a bias that may add more. */
static void fill_gelu(float *x, float *bias, size_t n)
{
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 5.656854f,
                                     5.656855f, -5.656854f, -5.656855f, 1e-30f, -1e-30f, 40.0f,
                                     -40.0f, 3e38f, -3e38f};
    for (size_t j = 0; j < n; j++) {
        x[j] = (float)(rng_uniform() * 6.0);
        bias[j] = (float)(rng_uniform() * 0.5);
        if (rng_uniform() > 0.7)
            x[j] = specials[(size_t)((rng_uniform() + 1.0) * 7.49)];
    }
}

static void gelu_matches_portable(void **st)
{
    (void)st;
    if (!have_avx512())
        skip();
    rng_seed(14);
    const size_t N = 1030;
    float *a = malloc(N * 4), *b = malloc(N * 4), *bias = malloc(N * 4);
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++)
        for (int variant = 0; variant < 8; variant++) {
            size_t n = lengths[li];
            fill_gelu(a, bias, n);
            memcpy(b, a, n * 4);
            const float *bp = variant % 2 ? bias : NULL;
            mha__act_forward(MHA_ACT_GELU, a, bp, n);
            mha__act_forward_portable(MHA_ACT_GELU, b, bp, n);
            char what[64];
            snprintf(what, sizeof what, "gelu, n %zu, bias %d", n, bp != NULL);
            assert_same_row(a, b, n, what);
        }
    free(a);
    free(b);
    free(bias);
}

/* Against x Phi(x) in double: within 2.5e-7 (1 + |x|) absolute (erf's own
 * error, up to 3.4e-7, scaled by x / 2, and float rounding) plus a few
 * ulps; NaN and +inf kept. */
static void gelu_matches_erf(void **st)
{
    (void)st;
    rng_seed(15);
    const size_t N = 1030;
    float *x = malloc(N * 4), *x0 = malloc(N * 4), *bias = malloc(N * 4);
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        size_t n = lengths[li];
        fill_gelu(x0, bias, n);
        memcpy(x, x0, n * 4);
        mha__act_forward(MHA_ACT_GELU, x, bias, n);
        for (size_t j = 0; j < n; j++) {
            float in = x0[j] + bias[j];
            double want = 0.5 * in * (1.0 + erf(in / sqrt(2.0)));
            if (isnan(in) || in == -INFINITY) /* -inf: 0.5 x (1 + erf) is -inf * 0 */
                assert_true(isnan(x[j]));
            else if (in == INFINITY)
                assert_true(x[j] == INFINITY);
            else if (fabs(x[j] - want) > 2.5e-7 * (1.0 + fabs(in)) + 5e-7 * fabs(want))
                fail_msg("gelu(%.9g) = %.9g, want %.9g", (double)in, (double)x[j], want);
        }
    }
    free(x);
    free(x0);
    free(bias);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(online_row_matches_portable),
        cmocka_unit_test(recompute_row_matches_portable),
        cmocka_unit_test(online_row_matches_exp),
        cmocka_unit_test(online_cols_match_portable),
        cmocka_unit_test(online_cols_match_rows),
        cmocka_unit_test(gelu_matches_portable),
        cmocka_unit_test(gelu_matches_erf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
