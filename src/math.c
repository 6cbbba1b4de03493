/* math.c - vectorisable elementwise kernels: exp, activations, online softmax.
 *
 * libm's expf/erff are scalar calls; on a 768-wide model the softmax and the
 * GELU would then cost a third of the GEMM time. These loops are written so
 * that the compiler vectorises them (no calls, bit casts through memcpy,
 * explicit lanes for reductions), and MHA__VEC builds them for AVX-512 and
 * AVX2 too. Accuracy: exp within 2 ulp on [-87, 88]; erf within 3.4e-7
 * absolute (see erf_rational). */
#include "internal.h"

#include <math.h>

#define LANES 16

static inline float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* exp(x): 0 below -87, +inf above 88, NaN stays NaN. Cephes polynomial on
 * r = x - n ln2 with n = round(x / ln2), rounding by the 1.5 * 2^23 trick so
 * no float-to-int conversion (undefined for NaN) is ever made. */
static inline float exp_core(float x)
{
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float scale = bits_to_float((float_to_bits(t) - 0x4B400000u + 127u) << 23);
    float y = p * scale;
    y = x < -87.0f ? 0.0f : y;
    y = x > 88.0f ? INFINITY : y;
    return y;
}

/* x / (1 + exp(-a)): the shared form of SiLU (a = x) and GELU-tanh. */
static inline float div_sigmoid(float x, float a) { return x / (1.0f + exp_core(-a)); }

/* erf(x) as the rational fit used by Eigen and XLA: x P(x^2) / Q(x^2) on
 * [-4, 4] (erf is +-1 in float beyond), absolute error at most 3.4e-7
 * (scanned in steps of 1e-5 against double erf; largest near |x| = 3.9) and
 * no exp, so the GELU costs one division and a dozen FMAs per element. */
static inline float erf_rational(float x)
{
    x = x > 4.0f ? 4.0f : x; /* NaN passes through both clamps */
    x = x < -4.0f ? -4.0f : x;
    float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return x * p / q;
}

static inline float gelu_erf(float x)
{
    return 0.5f * x * (1.0f + erf_rational(x * 0.70710678118654752f));
}

static inline float gelu_tanh(float x)
{
    /* 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for negative x. */
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return div_sigmoid(x, 2.0f * u);
}

MHA__VEC void mha__vexp(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = exp_core(x[i]);
}

static inline float relu(float x) { return x < 0.0f ? 0.0f : x; /* NaN passes through */ }

/* x[i] = act(x[i] + bias[i]) for RELU / GELU / GELU_TANH; bias may be NULL.
 * One pass either way (the GEMM epilogue reads x from L3 at large shapes);
 * without a bias nothing is added, so -0 stays -0. */
#define ACT_LOOP(f)                                                                               \
    do {                                                                                          \
        if (bias)                                                                                 \
            for (size_t i = 0; i < n; i++)                                                        \
                x[i] = f(x[i] + bias[i]);                                                         \
        else                                                                                      \
            for (size_t i = 0; i < n; i++)                                                        \
                x[i] = f(x[i]);                                                                   \
    } while (0)

MHA__VEC void mha__act_forward_portable(int act, float *x, const float *bias, size_t n)
{
    switch (act) {
    case MHA_ACT_RELU:
        ACT_LOOP(relu);
        break;
    case MHA_ACT_GELU:
        ACT_LOOP(gelu_erf);
        break;
    case MHA_ACT_GELU_TANH:
        ACT_LOOP(gelu_tanh);
        break;
    default:
        if (bias) /* no activation: the bias alone */
            for (size_t i = 0; i < n; i++)
                x[i] += bias[i];
        break;
    }
}
#undef ACT_LOOP

/* u[i] = silu(u[i] + bias[i]) * g[i]; bias may be NULL. */
MHA__VEC void mha__swiglu_forward(float *u, const float *g, const float *bias, size_t n)
{
    if (bias)
        for (size_t i = 0; i < n; i++)
            u[i] += bias[i];
    for (size_t i = 0; i < n; i++)
        u[i] = div_sigmoid(u[i], u[i]) * g[i];
}

MHA__VEC void mha__scale_row(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* 16-float vectors (GCC/clang vector extensions): one AVX-512 register, or
 * two AVX2 / four SSE registers on the other clones. Used where the
 * auto-vectoriser gives up: max reductions (NaN semantics) and exp + sum
 * fused in one pass. */
/* (Built with -Wno-psabi on gcc: these helpers are static inline and never
 * cross an ABI boundary.) */
/* Vector values never cross a function boundary (clang rejects passing a
 * 64-byte vector in the AVX2 clone, and the ABI would differ per clone):
 * the helpers are macros or take pointers. */
#define MHA__INLINE inline __attribute__((always_inline))
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

#define VSPLAT(x) ((vf){0} + (x))
#define VSELECT(mask, a, b) ((vf)(((mask) & (vi)(a)) | (~(mask) & (vi)(b))))

/* *x = exp(*x), lane by lane, as exp_core. */
static MHA__INLINE void exp_v(vf *x)
{
    vf lo = VSPLAT(-87.0f), hi = VSPLAT(88.0f), in = *x;
    vf xc = VSELECT(in < lo, lo, in);
    xc = VSELECT(xc > hi, hi, xc);
    vf t = xc * 1.44269504088896341f + 12582912.0f;
    vf n = t - 12582912.0f;
    vf r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = VSPLAT(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vf y = p * (vf)(((vi)t - 0x4B400000 + 127) << 23);
    y = VSELECT(in < lo, VSPLAT(0.0f), y);
    *x = VSELECT(in > hi, VSPLAT(INFINITY), y);
}

/* The lanes summed as a tree of halves: lane k + lane k+8, then k + k+4,
 * k + k+2, k + k+1. hsum_avx512 adds the same pairs, so both round alike. */
static MHA__INLINE float hsum(const vf *v)
{
    float t[LANES];
    memcpy(t, v, sizeof t);
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++)
            t[k] += t[k + w];
    return t[0];
}

/* *x = s[0, LANES) + bias[0, LANES), written back to s; no add without a bias. */
static MHA__INLINE void load_bias(vf *x, float *s, const float *bias)
{
    memcpy(x, s, sizeof *x);
    if (bias) {
        vf b;
        memcpy(&b, bias, sizeof b);
        *x += b;
        memcpy(s, x, sizeof *x);
    }
}

/* The largest lane (the lanes hold no NaN). Max is exact, so any order gives
 * the same value but for the sign of a zero; callers add +0.0f to the row's
 * max, which makes that -0 a +0 (and changes nothing else: exp(s - m) is
 * the same for m = +-0). */
static MHA__INLINE float hmax(const vf *v)
{
    float mx = (*v)[0];
    for (int k = 1; k < LANES; k++)
        mx = (*v)[k] > mx ? (*v)[k] : mx;
    return mx;
}

/* The scalar parts the portable and AVX-512 softmax rows share. */

/* The scalar tail [j0, n_valid) of a row's max pass: adds the bias and
 * folds those scores into the lanes' max. Returns the row max, -0 made +0
 * (see hmax). */
static MHA__INLINE float row_max_tail(float *s, const float *bias, size_t j0, size_t n_valid,
                                      float lanes_max)
{
    float mx = -INFINITY;
    for (size_t j = j0; j < n_valid; j++) {
        if (bias)
            s[j] += bias[j];
        mx = s[j] > mx ? s[j] : mx;
    }
    return (lanes_max > mx ? lanes_max : mx) + 0.0f;
}

/* s[j] = exp(s[j] - m) over the scalar tail [j0, n_valid); their sum. */
static MHA__INLINE float exp_tail(float *s, size_t j0, size_t n_valid, float m)
{
    float sum = 0.0f;
    for (size_t j = j0; j < n_valid; j++) {
        s[j] = exp_core(s[j] - m);
        sum += s[j];
    }
    return sum;
}

/* Moves the running max to m_new and the running sum to l alpha + sum;
 * returns alpha = exp(m_old - m_new). Rows and the columns' scalar tail. */
static MHA__INLINE float running_update(float *m, float *l, float m_new, float sum)
{
    float m_old = *m, alpha = m_old == m_new ? 1.0f : exp_core(m_old - m_new);
    *l = *l * alpha + sum;
    *m = m_new;
    return alpha;
}

/* Zeros the masked keys [n_valid, n), then running_update. */
static MHA__INLINE float row_finish(float *s, size_t n_valid, size_t n, float *m, float *l,
                                    float m_new, float sum)
{
    for (size_t j = n_valid; j < n; j++)
        s[j] = 0.0f;
    return running_update(m, l, m_new, sum);
}

/* One row of an online softmax over a score tile (FlashAttention).
 * s[0, n) holds scaled scores of keys k0..k0+n; keys at j >= n_valid are
 * masked. Adds the bias row (may be NULL), updates the running max *m and
 * running sum *l, overwrites s with p = exp(s - m_new) (0 where masked) and
 * returns the factor exp(m_old - m_new) by which earlier output must be
 * rescaled. A row with no finite score so far keeps m = -inf and p = 0,
 * except that NaN scores stay NaN so that they propagate. */
MHA__VEC float mha__softmax_online_row_portable(float *s, const float *bias, size_t n_valid,
                                                size_t n, float *m, float *l)
{
    size_t j, nv = n_valid / LANES * LANES;
    /* two running maxima (even and odd vectors): two dependency chains */
    vf vmx0 = VSPLAT(-INFINITY), vmx1 = vmx0, x, y;
    for (j = 0; j < nv; j += 2 * LANES) {
        load_bias(&x, s + j, bias ? bias + j : NULL);
        vmx0 = VSELECT(x > vmx0, x, vmx0); /* NaN is skipped */
        if (j + LANES < nv) {
            load_bias(&y, s + j + LANES, bias ? bias + j + LANES : NULL);
            vmx1 = VSELECT(y > vmx1, y, vmx1);
        }
    }
    vmx0 = VSELECT(vmx1 > vmx0, vmx1, vmx0);
    float mx = row_max_tail(s, bias, nv, n_valid, hmax(&vmx0));

    float m_new = mx > *m ? mx : *m, sum = 0.0f;
    if (m_new == -INFINITY) {
        for (j = 0; j < n_valid; j++) {
            s[j] = s[j] == -INFINITY ? 0.0f : s[j];
            sum += s[j];
        }
    } else {
        vf acc = VSPLAT(0.0f);
        for (j = 0; j < nv; j += LANES) {
            memcpy(&x, s + j, sizeof x);
            x -= m_new;
            exp_v(&x);
            memcpy(s + j, &x, sizeof x);
            acc += x;
        }
        sum = exp_tail(s, nv, n_valid, m_new);
        sum += hsum(&acc);
    }
    return row_finish(s, n_valid, n, m, l, m_new, sum);
}

/* ---- key-major online softmax ----
 * The same online softmax as the rows above, over a tile stored key-major:
 * t[j * ld + c] is the scaled score of key j (< nk) for query c (< nq).
 * Query c sees key j iff c >= j + diag (the causal diagonal; diag <= -nk
 * when every query sees every key), so the visible queries of each key row
 * are a suffix of it, and the rows with none come last. Per query, as
 * mha__softmax_online_row per row: running max m[c] and sum l[c] updated,
 * the column overwritten with p = exp(s - m_new) (0 where masked), and the
 * factor exp(m_old - m_new) for earlier output stored in alpha[c]. Each
 * column is summed over its keys in order: there are no horizontal
 * reductions, and a column's bits do not depend on which strip it is in.
 * Strips of 64 queries: one 64-byte line per key row, and the max pass and
 * the exp pass of a strip keep four vectors of state in registers. */

/* First visible query of key row j (may be negative or past the strip). */
static MHA__INLINE ptrdiff_t first_query(size_t j, ptrdiff_t diag) { return (ptrdiff_t)j + diag; }

/* The queries [c0, nq) past the last whole vector, one by one. */
static MHA__INLINE void cols_tail(float *t, size_t ld, size_t nk, size_t nq, ptrdiff_t diag,
                                  size_t c0, float *m, float *l, float *alpha)
{
    for (size_t c = c0; c < nq; c++) {
        float mx = -INFINITY, sum = 0.0f;
        size_t nv = 0; /* keys [0, nv) visible to c */
        while (nv < nk && (ptrdiff_t)c >= first_query(nv, diag)) {
            float x = t[nv * ld + c];
            mx = x > mx ? x : mx;
            nv++;
        }
        float mn = (mx > m[c] ? mx : m[c]) + 0.0f, mz = mn == -INFINITY ? 0.0f : mn;
        for (size_t j = 0; j < nk; j++) {
            float *x = &t[j * ld + c];
            *x = j < nv ? exp_core(*x - mz) : 0.0f;
            sum += *x;
        }
        alpha[c] = running_update(&m[c], &l[c], mn, sum);
    }
}

/* Lanes of the vector at column c that query index >= first sees. */
static MHA__INLINE vi cols_visible(size_t c, ptrdiff_t first)
{
    vf col;
    for (int k = 0; k < LANES; k++)
        col[k] = (float)k;
    /* exact in float: c and first lie below the strip's end (<= nq) */
    return col + (float)c >= (float)first;
}

/* One strip of NV vectors from column c0. */
static MHA__INLINE void cols_strip(float *t, size_t ld, size_t nk, ptrdiff_t diag, size_t c0,
                                   const int NV, float *m, float *l, float *alpha)
{
    vf mx[4], acc[4], mz[4], x;
    const ptrdiff_t end = (ptrdiff_t)(c0 + (size_t)NV * LANES);
    size_t j, jvis;
    for (int v = 0; v < NV; v++)
        mx[v] = VSPLAT(-INFINITY);
    for (j = 0; j < nk && first_query(j, diag) < end; j++)
        for (int v = 0; v < NV; v++) {
            size_t c = c0 + (size_t)v * LANES;
            memcpy(&x, t + j * ld + c, sizeof x);
            if (first_query(j, diag) > (ptrdiff_t)c)
                x = VSELECT(cols_visible(c, first_query(j, diag)), x, VSPLAT(-INFINITY));
            mx[v] = VSELECT(x > mx[v], x, mx[v]); /* NaN is skipped */
        }
    jvis = j; /* rows [jvis, nk) see no query of the strip */
    for (int v = 0; v < NV; v++) {
        vf mo, a;
        memcpy(&mo, m + c0 + v * LANES, sizeof mo);
        mx[v] = VSELECT(mx[v] > mo, mx[v], mo) + 0.0f; /* m_new, -0 made +0 */
        /* no finite score yet (m = -inf): exp(s - 0) keeps -inf -> 0, NaN */
        mz[v] = VSELECT(mx[v] == VSPLAT(-INFINITY), VSPLAT(0.0f), mx[v]);
        a = mo - mx[v];
        exp_v(&a);
        a = VSELECT(mo == mx[v], VSPLAT(1.0f), a);
        memcpy(alpha + c0 + v * LANES, &a, sizeof a);
        memcpy(m + c0 + v * LANES, &mx[v], sizeof mx[v]);
        acc[v] = VSPLAT(0.0f);
    }
    for (j = 0; j < jvis; j++)
        for (int v = 0; v < NV; v++) {
            size_t c = c0 + (size_t)v * LANES;
            memcpy(&x, t + j * ld + c, sizeof x);
            x -= mz[v];
            exp_v(&x);
            if (first_query(j, diag) > (ptrdiff_t)c)
                x = VSELECT(cols_visible(c, first_query(j, diag)), x, VSPLAT(0.0f));
            memcpy(t + j * ld + c, &x, sizeof x);
            acc[v] += x;
        }
    for (; j < nk; j++)
        memset(t + j * ld + c0, 0, (size_t)NV * LANES * sizeof(float));
    for (int v = 0; v < NV; v++) {
        vf lo, a;
        memcpy(&lo, l + c0 + v * LANES, sizeof lo);
        memcpy(&a, alpha + c0 + v * LANES, sizeof a);
        lo = lo * a + acc[v];
        memcpy(l + c0 + v * LANES, &lo, sizeof lo);
    }
}

MHA__VEC void mha__softmax_online_cols_portable(float *t, size_t ld, size_t nk, size_t nq,
                                                ptrdiff_t diag, float *m, float *l, float *alpha)
{
    size_t c0 = 0, whole = nq / LANES * LANES;
    for (; c0 + 4 * LANES <= whole; c0 += 4 * LANES)
        cols_strip(t, ld, nk, diag, c0, 4, m, l, alpha);
    for (; c0 < whole; c0 += LANES)
        cols_strip(t, ld, nk, diag, c0, 1, m, l, alpha);
    cols_tail(t, ld, nk, nq, diag, c0, m, l, alpha);
}

/* ---- backward ---- */

/* d/dx of each activation at the pre-activation x. */
static inline float gelu_erf_grad(float x)
{
    float cdf = 0.5f * (1.0f + erf_rational(x * 0.70710678118654752f));
    return cdf + x * 0.39894228040143268f * exp_core(-0.5f * x * x);
}

static inline float gelu_tanh_grad(float x)
{
    const float c = 0.7978845608028654f, k = 0.044715f;
    float u = c * (x + k * x * x * x);
    float s = 1.0f / (1.0f + exp_core(-2.0f * u)); /* (1 + tanh u) / 2 */
    float t = 2.0f * s - 1.0f;
    return s + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * k * x * x);
}

/* da[i] *= act'(pre[i]) (RELU, GELU, GELU_TANH). */
MHA__VEC void mha__act_backward(int act, float *da, const float *pre, size_t n)
{
    switch (act) {
    case MHA_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            da[i] = pre[i] > 0.0f ? da[i] : 0.0f;
        break;
    case MHA_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            da[i] *= gelu_erf_grad(pre[i]);
        break;
    case MHA_ACT_GELU_TANH:
        for (size_t i = 0; i < n; i++)
            da[i] *= gelu_tanh_grad(pre[i]);
        break;
    default:
        break;
    }
}

/* SwiGLU forward keeping its inputs: a[i] = silu(u[i] + b[i]) * g[i]. */
MHA__VEC void mha__swiglu_forward_keep(float *a, const float *u, const float *g,
                                       const float *bias, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = u[i] + (bias ? bias[i] : 0.0f);
        a[i] = div_sigmoid(x, x) * g[i];
    }
}

/* With x = u + b and s = sigmoid(x): du = da g s (1 + x (1 - s)),
 * dg = da x s. Written over du[] and dg[] (which may alias nothing else). */
MHA__VEC void mha__swiglu_backward(float *du, float *dg, const float *u, const float *g,
                                   const float *bias, const float *da, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = u[i] + (bias ? bias[i] : 0.0f);
        float s = 1.0f / (1.0f + exp_core(-x));
        float d = da[i];
        du[i] = d * g[i] * s * (1.0f + x * (1.0f - s));
        dg[i] = d * x * s;
    }
}

/* P = exp(s - lse) for the first n_valid scores (bias added first), 0 for
 * the rest; lse = -inf (row fully masked) gives zeros. */
MHA__VEC void mha__softmax_recompute_row_portable(float *s, const float *bias, size_t n_valid,
                                                  size_t n, float lse)
{
    size_t j;
    if (lse == -INFINITY)
        n_valid = 0;
    for (j = 0; j < n_valid; j++)
        s[j] = exp_core(s[j] + (bias ? bias[j] : 0.0f) - lse);
    for (; j < n; j++)
        s[j] = 0.0f;
}

/* dS = P (dP - D) in place over dp. */
MHA__VEC void mha__softmax_grad_row(float *dp, const float *p, float D, size_t n)
{
    for (size_t j = 0; j < n; j++)
        dp[j] = p[j] * (dp[j] - D);
}

/* acc[c] += X[i, c] for c < 64, over rows i < M (ld floats apart), each
 * column summed in row order in double: the bias gradients. Eight 8-double
 * accumulators that stay in registers; a plain loop over acc[64] kept them
 * in memory and ran at ~1.4 ns per element. */
typedef float vf8 __attribute__((vector_size(32)));
typedef double vd8 __attribute__((vector_size(64)));

MHA__VEC void mha__colsum64(double *acc, const float *X, size_t M, size_t ld)
{
    vd8 a[8];
    memcpy(a, acc, sizeof a);
    for (size_t i = 0; i < M; i++) {
        const float *x = X + i * ld;
        for (int k = 0; k < 8; k++) {
            vf8 v;
            memcpy(&v, x + 8 * k, sizeof v);
            a[k] += __builtin_convertvector(v, vd8);
        }
    }
    memcpy(acc, a, sizeof a);
}

MHA__VEC float mha__dot(const float *a, const float *b, size_t n)
{
    float lane[LANES] = {0};
    size_t j, nv = n / LANES * LANES;
    for (j = 0; j < nv; j += LANES)
        for (int k = 0; k < LANES; k++)
            lane[k] += a[j + k] * b[j + k];
    float s = 0.0f;
    for (; j < n; j++)
        s += a[j] * b[j];
    for (int k = 0; k < LANES; k++)
        s += lane[k];
    return s;
}

/* ---- AVX-512 softmax rows and columns, GELU ----
 * The exp of the softmax is most of libmha's own (non-sgemm) time in
 * attention, the GELU most of it in the FFN. Written with intrinsics the
 * softmax row takes about 2/3 of the vector-extension loop's time:
 * vscalefps applies 2^n (and underflows/overflows to 0/inf by itself), so
 * only the x < -87 lanes need a mask, and the max pass is one vmaxps. The
 * arithmetic is exp_core's, operation for operation (same FMAs, same
 * summation order), so results are bitwise those of the other builds;
 * tests/test_kernels.c compares them. */
#if MHA__AVX512
#include <immintrin.h>

#define MHA__AVX512_FN __attribute__((target("avx512f")))

/* exp_core of 16 lanes that are <= 88 or NaN (softmax arguments are <= 0). */
static inline MHA__AVX512_FN __m512 exp_avx512(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    /* lanes x >= -87 (or NaN) keep their value; below, exp_core gives 0 */
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_NLT_UQ);
    __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r,
                               _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

static inline MHA__AVX512_FN __m512 load_bias_avx512(float *s, const float *bias)
{
    __m512 x = _mm512_loadu_ps(s);
    if (bias) {
        x = _mm512_add_ps(x, _mm512_loadu_ps(bias));
        _mm512_storeu_ps(s, x);
    }
    return x;
}

/* hsum's tree: lanes k + k+8, k + k+4, k + k+2, k + k+1 (IEEE addition
 * commutes, so only the pairs matter). */
static inline MHA__AVX512_FN float hsum_avx512(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a8 = _mm256_add_ps(lo, hi);
    __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
    __m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));
    __m128 a1 = _mm_add_ss(a2, _mm_shuffle_ps(a2, a2, 1));
    return _mm_cvtss_f32(a1);
}

static MHA__AVX512_FN float online_row_avx512(float *s, const float *bias, size_t n_valid,
                                              size_t n, float *m, float *l)
{
    size_t j, nv = n_valid / LANES * LANES;
    __m512 vmx0 = _mm512_set1_ps(-INFINITY), vmx1 = vmx0;
    for (j = 0; j < nv; j += 2 * LANES) {
        /* max(x, vmx) = x > vmx ? x : vmx: NaN is skipped */
        vmx0 = _mm512_max_ps(load_bias_avx512(s + j, bias ? bias + j : NULL), vmx0);
        if (j + LANES < nv)
            vmx1 = _mm512_max_ps(load_bias_avx512(s + j + LANES, bias ? bias + j + LANES : NULL),
                                 vmx1);
    }
    float mx = row_max_tail(s, bias, nv, n_valid,
                            _mm512_reduce_max_ps(_mm512_max_ps(vmx1, vmx0)));

    float m_new = mx > *m ? mx : *m;
    if (m_new == -INFINITY) /* nothing finite yet: the rare path, shared */
        return mha__softmax_online_row_portable(s, NULL, n_valid, n, m, l);
    __m512 vm = _mm512_set1_ps(m_new), acc = _mm512_setzero_ps();
    for (j = 0; j < nv; j += LANES) {
        __m512 p = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), vm));
        _mm512_storeu_ps(s + j, p);
        acc = _mm512_add_ps(acc, p);
    }
    float sum = exp_tail(s, nv, n_valid, m_new);
    sum += hsum_avx512(acc);
    return row_finish(s, n_valid, n, m, l, m_new, sum);
}

static MHA__AVX512_FN void recompute_row_avx512(float *s, const float *bias, size_t n_valid,
                                                size_t n, float lse)
{
    size_t j = 0, nv = n_valid / LANES * LANES;
    __m512 vl = _mm512_set1_ps(lse), hi = _mm512_set1_ps(88.0f);
    for (; j < nv; j += LANES) {
        __m512 x = _mm512_loadu_ps(s + j);
        if (bias)
            x = _mm512_add_ps(x, _mm512_loadu_ps(bias + j));
        x = _mm512_sub_ps(x, vl);
        /* x <= 0 up to rounding (lse >= every score); exp_core's +inf
         * above 88 kept all the same */
        __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
        __m512 p = _mm512_mask_blend_ps(over, exp_avx512(x), _mm512_set1_ps(INFINITY));
        _mm512_storeu_ps(s + j, p);
    }
    for (; j < n_valid; j++)
        s[j] = exp_core(s[j] + (bias ? bias[j] : 0.0f) - lse);
    for (; j < n; j++)
        s[j] = 0.0f;
}

/* gelu_erf of 16 lanes, erf_rational's operations in its order. The clamps
 * are vminps/vmaxps with the constant first, so that NaN passes through as
 * in the ternaries (the compiler turned those into masked FMAs; this runs
 * in about 0.6 of that loop's time). */
static inline MHA__AVX512_FN __m512 gelu_avx512(__m512 v)
{
#define C(c) _mm512_set1_ps(c)
    __m512 x = _mm512_mul_ps(v, C(0.70710678118654752f));
    x = _mm512_max_ps(C(-4.0f), _mm512_min_ps(C(4.0f), x));
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_fmadd_ps(x2, C(-2.72614225801306e-10f), C(2.77068142495902e-08f));
    p = _mm512_fmadd_ps(x2, p, C(-2.10102402082508e-06f));
    p = _mm512_fmadd_ps(x2, p, C(-5.69250639462346e-05f));
    p = _mm512_fmadd_ps(x2, p, C(-7.34990630326855e-04f));
    p = _mm512_fmadd_ps(x2, p, C(-2.95459980854025e-03f));
    p = _mm512_fmadd_ps(x2, p, C(-1.60960333262415e-02f));
    __m512 q = _mm512_fmadd_ps(x2, C(-1.45660718464996e-05f), C(-2.13374055278905e-04f));
    q = _mm512_fmadd_ps(x2, q, C(-1.68282697438203e-03f));
    q = _mm512_fmadd_ps(x2, q, C(-7.37332916720468e-03f));
    q = _mm512_fmadd_ps(x2, q, C(-1.42647390514189e-02f));
    __m512 erf = _mm512_div_ps(_mm512_mul_ps(x, p), q);
    return _mm512_mul_ps(_mm512_mul_ps(C(0.5f), v), _mm512_add_ps(C(1.0f), erf));
#undef C
}

/* x[i] = gelu_erf(x[i] + bias[i]); bias may be NULL. The tail is one masked
 * vector, so every element takes the same path. */
static MHA__AVX512_FN void gelu_row_avx512(float *x, const float *bias, size_t n)
{
    for (size_t j = 0; j < n; j += LANES) {
        __mmask16 k = n - j >= LANES ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + j);
        if (bias)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + j));
        _mm512_mask_storeu_ps(x + j, k, gelu_avx512(v));
    }
}

/* Lanes of the vector at column c that see a key row whose first visible
 * query is first (> c): lanes k >= first - c. */
static inline MHA__AVX512_FN __mmask16 cols_visible_avx512(size_t c, ptrdiff_t first)
{
    ptrdiff_t d = first - (ptrdiff_t)c;
    return d >= LANES ? (__mmask16)0 : (__mmask16)(0xffffu << d);
}

/* cols_strip with intrinsics, operation for operation: masked lanes are
 * left out of the max by a masked vmaxps instead of a -inf, and zeroed
 * after the exp (exp_avx512 of them may be anything, it is discarded). */
static inline MHA__AVX512_FN __attribute__((always_inline)) void
cols_strip_avx512(float *t, size_t ld, size_t nk, ptrdiff_t diag, size_t c0, const int NV,
                  float *m, float *l, float *alpha)
{
    __m512 mx[4], acc[4], mz[4];
    const ptrdiff_t end = (ptrdiff_t)(c0 + (size_t)NV * LANES);
    size_t j, jvis;
    for (int v = 0; v < NV; v++)
        mx[v] = _mm512_set1_ps(-INFINITY);
    for (j = 0; j < nk && first_query(j, diag) < end; j++) {
        const ptrdiff_t f = first_query(j, diag);
        for (int v = 0; v < NV; v++) {
            size_t c = c0 + (size_t)v * LANES;
            __m512 x = _mm512_loadu_ps(t + j * ld + c);
            if (f > (ptrdiff_t)c) /* lanes left of f keep their max */
                mx[v] = _mm512_mask_max_ps(mx[v], cols_visible_avx512(c, f), x, mx[v]);
            else
                mx[v] = _mm512_max_ps(x, mx[v]);
        }
    }
    jvis = j;
    for (int v = 0; v < NV; v++) {
        __m512 mo = _mm512_loadu_ps(m + c0 + v * LANES);
        __m512 mn = _mm512_add_ps(_mm512_max_ps(mx[v], mo), _mm512_setzero_ps());
        mz[v] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mn, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ),
                                     mn, _mm512_setzero_ps());
        __m512 a = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mo, mn, _CMP_EQ_OQ),
                                        exp_avx512(_mm512_sub_ps(mo, mn)), _mm512_set1_ps(1.0f));
        _mm512_storeu_ps(alpha + c0 + v * LANES, a);
        _mm512_storeu_ps(m + c0 + v * LANES, mn);
        acc[v] = _mm512_setzero_ps();
    }
    for (j = 0; j < jvis; j++) {
        const ptrdiff_t f = first_query(j, diag);
        for (int v = 0; v < NV; v++) {
            size_t c = c0 + (size_t)v * LANES;
            __m512 p = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(t + j * ld + c), mz[v]));
            if (f > (ptrdiff_t)c)
                p = _mm512_maskz_mov_ps(cols_visible_avx512(c, f), p);
            _mm512_storeu_ps(t + j * ld + c, p);
            acc[v] = _mm512_add_ps(acc[v], p);
        }
    }
    for (; j < nk; j++)
        memset(t + j * ld + c0, 0, (size_t)NV * LANES * sizeof(float));
    for (int v = 0; v < NV; v++) {
        __m512 lo = _mm512_loadu_ps(l + c0 + v * LANES);
        __m512 a = _mm512_loadu_ps(alpha + c0 + v * LANES);
        _mm512_storeu_ps(l + c0 + v * LANES, _mm512_fmadd_ps(lo, a, acc[v]));
    }
}

static MHA__AVX512_FN void online_cols_avx512(float *t, size_t ld, size_t nk, size_t nq,
                                              ptrdiff_t diag, float *m, float *l, float *alpha)
{
    size_t c0 = 0, whole = nq / LANES * LANES;
    for (; c0 + 4 * LANES <= whole; c0 += 4 * LANES)
        cols_strip_avx512(t, ld, nk, diag, c0, 4, m, l, alpha);
    for (; c0 < whole; c0 += LANES)
        cols_strip_avx512(t, ld, nk, diag, c0, 1, m, l, alpha);
    cols_tail(t, ld, nk, nq, diag, c0, m, l, alpha);
}
#endif

void mha__act_forward(int act, float *x, const float *bias, size_t n)
{
#if MHA__AVX512
    if (act == MHA_ACT_GELU && __builtin_cpu_supports("avx512f")) {
        gelu_row_avx512(x, bias, n);
        return;
    }
#endif
    mha__act_forward_portable(act, x, bias, n);
}

float mha__softmax_online_row(float *s, const float *bias, size_t n_valid, size_t n, float *m,
                              float *l)
{
#if MHA__AVX512
    if (__builtin_cpu_supports("avx512f"))
        return online_row_avx512(s, bias, n_valid, n, m, l);
#endif
    return mha__softmax_online_row_portable(s, bias, n_valid, n, m, l);
}

void mha__softmax_online_cols(float *t, size_t ld, size_t nk, size_t nq, ptrdiff_t diag,
                              float *m, float *l, float *alpha)
{
#if MHA__AVX512
    if (__builtin_cpu_supports("avx512f")) {
        online_cols_avx512(t, ld, nk, nq, diag, m, l, alpha);
        return;
    }
#endif
    mha__softmax_online_cols_portable(t, ld, nk, nq, diag, m, l, alpha);
}

void mha__softmax_recompute_row(float *s, const float *bias, size_t n_valid, size_t n, float lse)
{
#if MHA__AVX512
    if (lse != -INFINITY && __builtin_cpu_supports("avx512f")) {
        recompute_row_avx512(s, bias, n_valid, n, lse);
        return;
    }
#endif
    mha__softmax_recompute_row_portable(s, bias, n_valid, n, lse);
}
