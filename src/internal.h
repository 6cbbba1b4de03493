/* internal.h - shared declarations of libmha's translation units (not installed). */
#ifndef MHA_INTERNAL_H
#define MHA_INTERNAL_H

#include "mha.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Hot elementwise kernels are compiled for several ISAs and picked at load
 * time, so one binary runs everywhere and still uses AVX-512 where present. */
/* gcc only: clang 14's target_clones on functions called from other
 * translation units gave wrong results here (tests fail), so clang builds
 * use the baseline ISA. */
#if defined(MHA_MULTIVERSION) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MHA__VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#define MHA__AVX512 1 /* plus hand-written AVX-512 softmax rows/columns, GELU (math.c) */
#else
#define MHA__VEC
#define MHA__AVX512 0
#endif

/* ---- size arithmetic: every product that sizes memory or a BLAS call goes
 * through these; they return nonzero on overflow. ---- */
static inline int mha__mul(size_t a, size_t b, size_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int mha__add(size_t a, size_t b, size_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int mha__mul3(size_t a, size_t b, size_t c, size_t *r)
{
    size_t t;
    return mha__mul(a, b, &t) || mha__mul(t, c, r);
}
static inline size_t mha__min(size_t a, size_t b) { return a < b ? a : b; }

/* A bump plan over the context workspace: offsets in floats, each region
 * 64-byte aligned. `bad` latches any overflow. */
typedef struct mha__plan {
    size_t total;
    int bad;
} mha__plan;
size_t mha__plan_add(mha__plan *p, size_t rows, size_t cols);

/* ---- thread pool (threads.c) ---- */
typedef struct mha__pool mha__pool;
/* fn(arg, task, thread): thread in [0, n_threads) indexes per-thread scratch. */
typedef void (*mha__task_fn)(void *arg, size_t task, size_t thread);
mha_status mha__pool_create(size_t n_threads, mha__pool **out);
void mha__pool_destroy(mha__pool *pool);
/* Runs tasks 0..n_tasks-1 on the pool (caller included) and returns when all
 * are done. Which thread runs which task varies; tasks must be independent. */
void mha__pool_run(mha__pool *pool, size_t n_tasks, mha__task_fn fn, void *arg);
size_t mha__pool_threads(const mha__pool *pool);
size_t mha__available_cores(void);

/* ---- activations kept for the backward (saved.c) ---- */
enum { MHA__OP_ATTN = 1, MHA__OP_FFN, MHA__OP_LAYER };
typedef struct mha__saved {
    int valid, op;
    uint64_t params_gen;
    size_t batch, seq_q, seq_kv;
    unsigned flags;
    unsigned char *copy; /* the call's inputs, byte for byte */
    size_t cap;
} mha__saved;

/* ---- the context ---- */
struct mha_ctx {
    size_t d_model, n_heads, n_kv_heads, d_head, d_ff;
    int activation, norm_first, bias;
    float ln_eps;
    size_t n_threads;
    size_t attn_bq, attn_bk; /* forward attention tile, see mha__choose_blocks */
    size_t d_q;  /* n_heads * d_head */
    size_t d_kv; /* n_kv_heads * d_head */

    float *params; /* one allocation; see params.c for the order */
    size_t param_off[MHA_PARAM_COUNT];
    size_t param_n[MHA_PARAM_COUNT];
    unsigned char param_set[MHA_PARAM_COUNT];
    size_t params_total; /* floats */

    float *grads; /* parameter gradients, the params' layout; NULL until the first backward */

    float *ws; /* workspace, grown on demand, never shrunk */
    size_t ws_cap;
    mha__saved saved;    /* what ws holds from the last training-mode forward */
    uint64_t params_gen; /* bumped by every weight change */

    mha__pool *pool;
};

/* memory.c: large buffers, on huge pages where the kernel gives them;
 * released with free(). NULL on failure or overflow. */
void *mha__big_alloc(size_t bytes);
void *mha__big_calloc(size_t n, size_t size);

/* params.c */
mha_status mha__params_layout(mha_ctx *ctx);
static inline float *mha__p(const mha_ctx *ctx, mha_param p) { return ctx->params + ctx->param_off[p]; }
static inline const float *mha__p_opt(const mha_ctx *ctx, mha_param p)
{
    return ctx->param_n[p] ? ctx->params + ctx->param_off[p] : NULL;
}
/* MHA_OK when every parameter of list that the config uses has been set. */
mha_status mha__require(const mha_ctx *ctx, const mha_param *list, size_t n);

/* Allocates the (zeroed) gradients on first use. */
mha_status mha__grads_ready(mha_ctx *ctx);

/* context.c */
mha_status mha__ws_reserve(mha_ctx *ctx, size_t n_floats);

/* Training mode: the context has gradients, so its forwards keep values. */
static inline int mha__training(const mha_ctx *ctx) { return ctx->grads != NULL; }

/* ---- argument checks (args.c) ---- */
typedef struct mha__region {
    const void *p;
    size_t bytes;
} mha__region;
/* Nonzero when two non-empty regions overlap. */
int mha__overlap(mha__region a, mha__region b);
/* Validated, resolved view of an mha_attn_args. */
typedef struct mha__attn_view {
    size_t batch, seq_q, seq_kv;
    const float *query, *key, *value; /* key == value == query for self-attention */
    int self;
    const int32_t *kv_lengths;
    const float *attn_bias;
    int causal;
    float *out, *attn_weights;  /* NULL in backward calls */
    size_t bytes_q, bytes_kv;   /* of query and key/value arrays */
#define MHA__N_INPUTS 5
    mha__region inputs[MHA__N_INPUTS]; /* query, key, value, kv_lengths, attn_bias */
} mha__attn_view;
/* Checks a against ctx: struct size, pointers, shapes, flags, kv_lengths,
 * overflow of every buffer size and aliasing of the outputs. */
mha_status mha__attn_args_check(const mha_ctx *ctx, const mha_attn_args *a, mha__attn_view *v);
/* The same for a backward call (a->out, a->attn_weights ignored), plus g:
 * gradient outputs present as the mode needs and overlapping nothing. */
mha_status mha__grad_args_check(const mha_ctx *ctx, const mha_attn_args *a,
                                const mha_grad_args *g, mha__attn_view *v);

/* saved.c: v == NULL for the FFN (x [n, d_model]). */
void mha__saved_drop(mha_ctx *ctx);
void mha__saved_store(mha_ctx *ctx, int op, const mha__attn_view *v, const float *x, size_t n);
/* Called by backward calls: sizes the copy buffer for their shape, so that
 * the training-mode forwards that follow do not allocate. */
void mha__saved_reserve(mha_ctx *ctx, const mha__attn_view *v, const float *x, size_t n);
int mha__saved_match(const mha_ctx *ctx, int op, const mha__attn_view *v, const float *x,
                     size_t n);

/* ---- kernels ---- */
/* gemm.c: out[M, N] = epilogue(x[M, K] . W[N, K]^T + bias[N] + res[M, N]).
 * bias and res may be NULL. Rows are split over the pool. */
typedef struct mha__linear {
    size_t M, N, K;
    const float *x;   size_t ldx;
    const float *W;   /* [N, K], contiguous */
    const float *bias;
    const float *res; size_t ldres;
    float *out;       size_t ldo;
    int act;          /* -1: none; MHA_ACT_*: apply act(x W^T + bias) (SwiGLU: see ffn.c) */
    size_t swiglu_n;  /* SwiGLU: out columns [0, n) are the W1 part, [n, 2n) the W3 gate */
} mha__linear;
void mha__linear_forward(mha_ctx *ctx, const mha__linear *L);
/* C[M, N] = op(A) op(B) + beta C (op: transpose when ta / tb), row-major,
 * split over the pool along M or N, never along the reduction K. */
void mha__gemm(mha_ctx *ctx, int ta, int tb, size_t M, size_t N, size_t K, const float *A,
               size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* dst[j] += sum_i X[i, j] over M rows (column blocks over the pool; each
 * column summed in row order, in double). */
void mha__colsum_acc(mha_ctx *ctx, float *dst, const float *X, size_t M, size_t N, size_t ld);

/* math.c: elementwise kernels on arrays. */
void mha__vexp(float *x, size_t n);
void mha__act_forward(int act, float *x, const float *bias, size_t n);
void mha__swiglu_forward(float *u, const float *g, const float *bias, size_t n);
float mha__softmax_online_row(float *s, const float *bias, size_t n_valid, size_t n, float *m,
                              float *l);
/* Key-major tile t[j * ld + c] (key j < nk, query c < nq); query c sees
 * key j iff c >= j + diag. See math.c. */
void mha__softmax_online_cols(float *t, size_t ld, size_t nk, size_t nq, ptrdiff_t diag,
                              float *m, float *l, float *alpha);
void mha__scale_row(float *x, float s, size_t n);
void mha__act_backward(int act, float *da, const float *pre, size_t n);
void mha__swiglu_forward_keep(float *a, const float *u, const float *g, const float *bias,
                              size_t n);
void mha__swiglu_backward(float *du, float *dg, const float *u, const float *g,
                          const float *bias, const float *da, size_t n);
void mha__softmax_recompute_row(float *s, const float *bias, size_t n_valid, size_t n, float lse);
/* The softmax rows and columns above and mha__act_forward's GELU use
 * hand-written AVX-512 where the CPU has it; these are the vector-extension
 * versions they must match bit for bit (tests/test_kernels.c). */
void mha__act_forward_portable(int act, float *x, const float *bias, size_t n);
float mha__softmax_online_row_portable(float *s, const float *bias, size_t n_valid, size_t n,
                                       float *m, float *l);
void mha__softmax_online_cols_portable(float *t, size_t ld, size_t nk, size_t nq, ptrdiff_t diag,
                                       float *m, float *l, float *alpha);
void mha__softmax_recompute_row_portable(float *s, const float *bias, size_t n_valid, size_t n,
                                         float lse);
void mha__softmax_grad_row(float *dp, const float *p, float D, size_t n);
float mha__dot(const float *a, const float *b, size_t n);
void mha__colsum64(double *acc, const float *X, size_t M, size_t ld);

/* norm.c: out[M, D] = LayerNorm(x[M, D]) * w + b, statistics in double. */
void mha__layernorm_forward(mha_ctx *ctx, float *out, const float *x, const float *w,
                            const float *b, size_t M, size_t D, float eps);
/* Workspace floats the backward needs for M rows. */
size_t mha__layernorm_bwd_ws(size_t M, size_t D);
/* dx = (accumulate ? dx : 0) + dL/dx given dy = dL/d(out); dw, db +=.
 * partials: mha__layernorm_bwd_ws(M, D) floats of scratch. */
void mha__layernorm_backward(mha_ctx *ctx, float *dx, int accumulate, const float *dy,
                             const float *x, const float *w, float *dw, float *db, size_t M,
                             size_t D, float eps, float *partials);

/* attention.c / attention_backward.c */
#ifndef MHA_ATTN_BQ
#define MHA_ATTN_BQ 512 /* largest query rows per forward tile (-D to measure others) */
#endif
#ifndef MHA_ATTN_BK
#define MHA_ATTN_BK 512 /* largest keys per forward tile */
#endif
#ifndef MHA_ATTN_BWD_BQ
#define MHA_ATTN_BWD_BQ 128 /* backward tiles: two live per thread (P and dS) */
#endif
#ifndef MHA_ATTN_BWD_BK
#define MHA_ATTN_BWD_BK 128
#endif
/* The forward tile for this context, from the L2 size (context.c). */
void mha__choose_blocks(size_t d_head, size_t *bq, size_t *bk);
/* Keys j < mha__row_limit(i) are visible to query i (kv_lengths and the
 * bottom-right aligned causal mask: j <= i + Skv - Sq). */
static inline size_t mha__row_limit(size_t i, size_t Sq, size_t Skv, size_t len, int causal)
{
    if (!causal)
        return len;
    size_t c = i + Skv + 1 > Sq ? i + Skv + 1 - Sq : 0;
    return c < len ? c : len;
}
/* Workspace offsets of one attention call (in floats into ctx->ws). */
typedef struct mha__attn_ws {
    size_t q, k, v, o, scratch;
    size_t ldq, ldk, ldv, scratch_stride;
    int backward;
    size_t lse, d_o, dq, dk, dv; /* backward only; dq/dk/dv use ldq/ldk/ldv */
} mha__attn_ws;
mha_status mha__attn_plan(const mha_ctx *ctx, const mha__attn_view *v, int backward,
                          mha__plan *p, mha__attn_ws *w);
size_t mha__attn_bwd_scratch(size_t seq_q);
/* What both attention entry points do after checking their (non-empty)
 * arguments: every attention weight set (else MHA_ERR_PARAM_NOT_SET), the
 * workspace planned into *w (MHA_ERR_OVERFLOW) and reserved
 * (MHA_ERR_NO_MEMORY). */
mha_status mha__attn_prepare(mha_ctx *ctx, const mha__attn_view *v, int backward,
                             mha__attn_ws *w);
/* Projections and core for xq (also the key/value input for self-attention),
 * keeping q, k, v, the core output (and the log-sum-exp when planned for
 * backward) in the workspace; then out = MHA + residual when out != NULL. */
void mha__attn_forward_keep(mha_ctx *ctx, const mha__attn_view *v, const mha__attn_ws *w,
                            const float *xq, const float *residual, float *out);
/* After mha__attn_forward_keep on the same inputs: given dy = dL/d(out),
 * dxq = beta_x dxq + dL/dxq (self-attention: through q, k and v), and for
 * cross-attention dkey, dvalue (overwritten); accumulates the gradients of
 * the attention weights. */
void mha__attn_backward(mha_ctx *ctx, const mha__attn_view *v, const mha__attn_ws *w,
                        const float *xq, const float *dy, float *dxq, float beta_x, float *dkey,
                        float *dvalue);

/* ffn.c */
#define MHA__N_FFN_PARAMS 5
extern const mha_param mha__ffn_params[MHA__N_FFN_PARAMS]; /* W1, B1, W2, B2, W3 */
typedef struct mha__ffn_ws {
    size_t hidden, ldh; /* [n, ldh]: activations, or pre-activations when backward */
    int backward;
    size_t act, dpre;   /* backward: activations [n, d_ff], their gradient [n, ldh] */
} mha__ffn_ws;
void mha__ffn_plan(const mha_ctx *ctx, size_t n_tokens, int backward, mha__plan *p,
                   mha__ffn_ws *w);
/* out = FFN(x) + residual (may be NULL); out NULL: only the kept values. */
void mha__ffn_forward_keep(mha_ctx *ctx, const mha__ffn_ws *w, size_t n_tokens, const float *x,
                           const float *residual, float *out);
/* After mha__ffn_forward_keep (planned for backward) on the same x:
 * dx = beta dx + dL/dx for dy = dL/d(FFN(x)); accumulates FFN weight grads. */
void mha__ffn_backward(mha_ctx *ctx, const mha__ffn_ws *w, size_t n, const float *x,
                       const float *dy, float *dx, float beta);

#endif
