/* mha_bench - throughput of libmha against the naive float64 loops (the
 * reference shared with the tests) and against the sgemm-only ceiling: the
 * exact GEMMs the operation needs, timed with cblas_sgemm alone.
 *
 * Each implementation gets warm-up calls, then --reps timed calls; the table
 * shows the median (and min, max). libmha and the ceiling are timed call by
 * call in alternation, so that machine noise hits both alike. FLOPs are counted from the shapes (see
 * README, "How FLOPs are counted"); the naive loops are skipped where they
 * would take longer than --naive-max seconds. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mha.h"
#include "naive.h"

extern void openblas_set_num_threads(int n) __attribute__((weak));

enum { OP_ATTN, OP_FFN, OP_LAYER, OP_BACKWARD, OP_COUNT };
/* backward: one training step of the layer, mha_layer_forward + mha_layer_backward */
static const char *op_names[] = {"attn", "ffn", "layer", "backward"};
static const char *act_names[] = {"relu", "gelu", "gelu_tanh", "swiglu"};

typedef struct opts {
    int op; /* -1: all */
    size_t batch, seq, seq_kv, d_model, heads, kv_heads, d_ff;
    int activation, causal, threads, reps, json;
    double naive_max;
    int shape_given;
} opts;

typedef struct shape {
    size_t batch, seq;
} shape;

/* BERT-base layer at a few sizes: about a minute at 1 thread with naive. */
static const shape default_shapes[] = {{1, 128}, {8, 128}, {1, 512}};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mha_bench [options]\n"
            "  --op attn|ffn|layer|backward|all\n"
            "                            operation (default layer; backward = layer forward +\n"
            "                            backward, a training step)\n"
            "  --batch N --seq N         one shape (default: B1S128, B8S128, B1S512)\n"
            "  --seq-kv N                cross-attention key length (attn only; default seq)\n"
            "  --d-model N (768) --heads N (12) --kv-heads N (heads) --d-ff N (4 d_model)\n"
            "  --activation relu|gelu|gelu_tanh|swiglu (gelu)\n"
            "  --causal                  causal mask\n"
            "  --threads N               threads for libmha and the sgemm ceiling (1)\n"
            "  --reps N                  timed repetitions (10; naive: at most 3)\n"
            "  --naive-max SEC           skip naive loops estimated to take longer (20)\n"
            "  --json                    one JSON object per line instead of a table\n"
            "  --help\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v > (1ull << 40))
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.op = OP_LAYER, .d_model = 768, .heads = 12, .activation = MHA_ACT_GELU,
                .threads = 1, .reps = 10, .naive_max = 20.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t n;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else if (!strcmp(a, "--causal")) {
            o->causal = 1;
        } else if (!v) {
            fprintf(stderr, "mha_bench: unknown option or missing value: %s\n", a);
            return -1;
        } else if (!strcmp(a, "--op")) {
            o->op = -2;
            for (int k = 0; k < OP_COUNT; k++)
                if (!strcmp(v, op_names[k]))
                    o->op = k;
            if (!strcmp(v, "all"))
                o->op = -1;
            if (o->op == -2) {
                fprintf(stderr, "mha_bench: bad --op %s\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--activation")) {
            o->activation = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(v, act_names[k]))
                    o->activation = k;
            if (o->activation < 0) {
                fprintf(stderr, "mha_bench: bad --activation %s\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--naive-max")) {
            char *end;
            o->naive_max = strtod(v, &end);
            if (*end || !(o->naive_max >= 0)) {
                fprintf(stderr, "mha_bench: bad --naive-max %s\n", v);
                return -1;
            }
            i++;
        } else if (parse_size(v, &n) != 0) {
            fprintf(stderr, "mha_bench: bad value for %s: %s\n", a, v);
            return -1;
        } else {
            i++;
            if (!strcmp(a, "--batch"))
                o->batch = n, o->shape_given = 1;
            else if (!strcmp(a, "--seq"))
                o->seq = n, o->shape_given = 1;
            else if (!strcmp(a, "--seq-kv"))
                o->seq_kv = n;
            else if (!strcmp(a, "--d-model"))
                o->d_model = n;
            else if (!strcmp(a, "--heads"))
                o->heads = n;
            else if (!strcmp(a, "--kv-heads"))
                o->kv_heads = n;
            else if (!strcmp(a, "--d-ff"))
                o->d_ff = n;
            else if (!strcmp(a, "--threads") && n >= 1 && n <= 1024)
                o->threads = (int)n;
            else if (!strcmp(a, "--reps") && n >= 1 && n <= 100000)
                o->reps = (int)n;
            else {
                fprintf(stderr, "mha_bench: unknown option or bad value: %s %s\n", a, v);
                return -1;
            }
        }
    }
    if (o->shape_given && (!o->batch || !o->seq)) {
        fprintf(stderr, "mha_bench: --batch and --seq must both be >= 1\n");
        return -1;
    }
    if (!o->d_model || !o->heads || o->d_model % o->heads ||
        (o->kv_heads && o->heads % o->kv_heads)) {
        fprintf(stderr, "mha_bench: d_model must divide by heads, heads by kv-heads\n");
        return -1;
    }
    if (o->seq_kv && o->op != OP_ATTN) {
        fprintf(stderr, "mha_bench: --seq-kv needs --op attn (cross-attention)\n");
        return -1;
    }
    if (!o->kv_heads)
        o->kv_heads = o->heads;
    if (!o->d_ff)
        o->d_ff = 4 * o->d_model;
    return 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct timing {
    double med, min, max;
    int reps, ok;
} timing;

typedef void (*bench_fn)(void *);

static timing summarize(double *t, int reps)
{
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    timing r = {reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]), t[0],
                t[reps - 1], reps, 1};
    return r;
}

static timing time_it(bench_fn fn, void *arg, int warmup, int reps)
{
    for (int i = 0; i < warmup; i++)
        fn(arg);
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = now_ms();
        fn(arg);
        t[i] = now_ms() - t0;
    }
    timing r = summarize(t, reps);
    free(t);
    return r;
}

/* Times a and b alternately, so that on a shared, noisy machine both see
 * the same disturbances and their ratio stays honest. before_b / after_b
 * switch global state (OpenBLAS threads) around b.
 *
 * With one thread the alternation is call by call. With more, idle threads
 * of each side keep spinning after a call (OpenBLAS's workers for 2^28
 * cycles, ~0.1 s; libmha's pool for up to 2 ms) and would take cores from
 * the other side's next call (measured: libmha at 2 threads fell to 0.6 of
 * the ceiling). So there the sides alternate in blocks of BLOCK calls, each
 * block after a pause that outlasts the other side's spinners and one
 * untimed call that wakes its own threads. */
#define BLOCK 5

static void time_pair(bench_fn a, bench_fn b, void *arg, int warmup, int reps, timing *ta,
                      timing *tb, void (*before_b)(void *), void (*after_b)(void *), int threads)
{
    double *t = malloc(sizeof(double) * 2 * (size_t)reps);
    const int block = threads > 1 ? BLOCK : 1;
    int done[2] = {-warmup, -warmup}; /* negative: warm-up calls still to make */
    for (int round = 0; done[0] < reps || done[1] < reps; round++) {
        for (int k = 0; k < 2; k++) {
            int run_b = (k + round) & 1;
            bench_fn fn = run_b ? b : a;
            if (done[run_b] >= reps)
                continue;
            if (run_b && before_b)
                before_b(arg);
            if (threads > 1) {
                struct timespec pause = {0, 150 * 1000 * 1000};
                nanosleep(&pause, NULL);
                fn(arg);
            }
            for (int i = 0; i < block && done[run_b] < reps; i++) {
                double t0 = now_ms();
                fn(arg);
                double dt = now_ms() - t0;
                if (done[run_b] >= 0)
                    t[run_b * reps + done[run_b]] = dt;
                else
                    i--; /* a warm-up call does not count toward the block */
                done[run_b]++;
            }
            if (run_b && after_b)
                after_b(arg);
        }
    }
    *ta = summarize(t, reps);
    *tb = summarize(t + reps, reps);
    free(t);
}

/* ---- one benchmark case ---- */
typedef struct bcase {
    const opts *o;
    int op;
    size_t B, Sq, Skv, D, H, Hkv, dh, F;
    int cross;
    mha_ctx *ctx;
    float *w[MHA_PARAM_COUNT];
    double *wd[MHA_PARAM_COUNT];
    naive_model nm;
    float *xq, *xkv, *out;
    double *xqd, *xkvd, *outd;
    /* sgemm ceiling buffers */
    float *g_qkv, *g_kv, *g_s, *g_o, *g_h, *g_y;
    float *g_dw, *g_dx, *g_dh, *g_dqkv; /* backward ceiling */
    float *dx;                          /* libmha backward output */
    mha_status st;
} bcase;

static double flops_of(const bcase *c)
{
    double Nq = (double)(c->B * c->Sq), Nkv = (double)(c->B * c->Skv), D = (double)c->D;
    double dq = (double)(c->H * c->dh), dkv = (double)(c->Hkv * c->dh), F = (double)c->F;
    double attn = 2 * Nq * D * dq + 2 * Nkv * D * 2 * dkv + 2 * Nq * dq * D +
                  4.0 * (double)c->B * (double)c->H * (double)c->Sq * (double)c->Skv * (double)c->dh;
    double ffn = (c->o->activation == MHA_ACT_SWIGLU ? 6.0 : 4.0) * Nq * D * F;
    /* a backward step: the forward, then two GEMMs per forward GEMM */
    return c->op == OP_ATTN ? attn : c->op == OP_FFN ? ffn : c->op == OP_LAYER ? attn + ffn
                                                                       : 3 * (attn + ffn);
}

static void run_libmha(void *p)
{
    bcase *c = p;
    if (c->op == OP_FFN) {
        c->st = mha_ffn_forward(c->ctx, c->out, c->xq, c->B * c->Sq);
        return;
    }
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = c->B;
    a.seq_q = c->Sq;
    a.seq_kv = c->cross ? c->Skv : 0;
    a.query = c->xq;
    a.key = a.value = c->cross ? c->xkv : NULL;
    a.causal = c->o->causal;
    a.out = c->out;
    c->st = c->op == OP_ATTN ? mha_attention_forward(c->ctx, &a) : mha_layer_forward(c->ctx, &a);
    if (c->op == OP_BACKWARD && c->st == MHA_OK) {
        mha_grad_args g;
        mha_grad_args_init(&g);
        g.d_out = c->xq; /* any data of the right shape */
        g.d_query = c->dx;
        a.out = NULL;
        c->st = mha_layer_backward(c->ctx, &a, &g);
    }
}

static void run_naive(void *p)
{
    bcase *c = p;
    if (c->op == OP_FFN)
        naive_ffn(&c->nm, c->B * c->Sq, c->xqd, c->outd);
    else if (c->op == OP_ATTN)
        naive_attention(&c->nm, c->B, c->Sq, c->Skv, c->xqd, c->cross ? c->xkvd : NULL,
                        c->cross ? c->xkvd : NULL, NULL, NULL, c->o->causal, c->outd, NULL);
    else
        naive_layer(&c->nm, c->B, c->Sq, c->xqd, NULL, NULL, c->o->causal, c->outd, NULL);
}

static void sgemm_nt(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                     size_t ldb, float *C, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

static void sgemm_tn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                     size_t ldb, float *C, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

static void sgemm_nn(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                     size_t ldb, float *C, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

/* The backward GEMMs of the layer (self-attention): for every linear layer
 * dX = dY W and dW = dY^T X; per (batch, head) dV = P^T dO, dP = dO V^T,
 * dQ = dS K, dK = dS^T Q over the full score matrix. */
static void run_sgemm_backward(bcase *c)
{
    size_t N = c->B * c->Sq, D = c->D, dq = c->H * c->dh, dkv = c->Hkv * c->dh, F = c->F;
    size_t F2 = c->o->activation == MHA_ACT_SWIGLU ? 2 * F : F, ld = dq + 2 * dkv, S = c->Sq;
    const float *dy = c->xq;
    /* FFN */
    sgemm_tn(D, F, N, dy, D, c->g_h, F2, c->g_dw, F);                   /* dW2 */
    sgemm_nn(N, F, D, dy, D, c->w[MHA_PARAM_W2], F, c->g_dh, F2);       /* dA */
    sgemm_tn(F2, D, N, c->g_dh, F2, c->g_y, D, c->g_dw, D);             /* dW1 */
    sgemm_nn(N, D, F2, c->g_dh, F2, c->w[MHA_PARAM_W1], D, c->g_dx, D); /* dX */
    /* output projection */
    sgemm_tn(D, dq, N, c->g_dx, D, c->g_o, dq, c->g_dw, dq);            /* dWO */
    sgemm_nn(N, dq, D, c->g_dx, D, c->w[MHA_PARAM_WO], dq, c->g_y, dq); /* dO (into g_y) */
    for (size_t b = 0; b < c->B; b++)
        for (size_t h = 0; h < c->H; h++) {
            size_t g = h / (c->H / c->Hkv);
            const float *Q = c->g_qkv + b * S * ld + h * c->dh, *K = c->g_qkv + b * S * ld + dq + g * c->dh;
            const float *V = K + dkv, *dO = c->g_y + b * S * dq + h * c->dh;
            float *dQ = c->g_dqkv + b * S * ld + h * c->dh, *dK = c->g_dqkv + b * S * ld + dq + g * c->dh;
            sgemm_tn(S, c->dh, S, c->g_s, S, dO, dq, dK + dkv, ld); /* dV = P^T dO */
            sgemm_nt(S, S, c->dh, dO, dq, V, ld, c->g_s, S);        /* dP = dO V^T */
            sgemm_nn(S, c->dh, S, c->g_s, S, K, ld, dQ, ld);        /* dQ = dS K */
            sgemm_tn(S, c->dh, S, c->g_s, S, Q, ld, dK, ld);        /* dK = dS^T Q */
        }
    sgemm_tn(ld, D, N, c->g_dqkv, ld, c->xq, D, c->g_dw, D);             /* dWQKV */
    sgemm_nn(N, D, ld, c->g_dqkv, ld, c->w[MHA_PARAM_WQ], D, c->g_dx, D); /* dX */
}

/* The GEMMs of the operation and nothing else: projections (QKV fused for
 * self-attention, as libmha does), per (batch, head) S^T = K Q^T and
 * O = P V over the full [Skv, Sq] score matrix (key-major, the orientation
 * of libmha's tiles), the output projection, the FFN. */
static void run_sgemm(void *p)
{
    bcase *c = p;
    size_t Nq = c->B * c->Sq, Nkv = c->B * c->Skv, D = c->D, dq = c->H * c->dh,
           dkv = c->Hkv * c->dh, F = c->F;
    const float *x = c->xq;
    if (c->op != OP_FFN) {
        size_t ld = c->cross ? dq : dq + 2 * dkv;
        sgemm_nt(Nq, c->cross ? dq : dq + 2 * dkv, D, x, D, c->w[MHA_PARAM_WQ], D, c->g_qkv, ld);
        const float *k = c->g_qkv + dq, *v = c->g_qkv + dq + dkv;
        size_t ldk = ld;
        if (c->cross) {
            sgemm_nt(Nkv, 2 * dkv, D, c->xkv, D, c->w[MHA_PARAM_WK], D, c->g_kv, 2 * dkv);
            k = c->g_kv;
            v = c->g_kv + dkv;
            ldk = 2 * dkv;
        }
        for (size_t b = 0; b < c->B; b++)
            for (size_t h = 0; h < c->H; h++) {
                size_t g = h / (c->H / c->Hkv);
                /* key-major, as libmha's tiles: S^T = K Q^T, O = (S^T)^T V */
                sgemm_nt(c->Skv, c->Sq, c->dh, k + b * c->Skv * ldk + g * c->dh, ldk,
                         c->g_qkv + b * c->Sq * ld + h * c->dh, ld, c->g_s, c->Sq);
                sgemm_tn(c->Sq, c->dh, c->Skv, c->g_s, c->Sq, v + b * c->Skv * ldk + g * c->dh,
                         ldk, c->g_o + b * c->Sq * dq + h * c->dh, dq);
            }
        sgemm_nt(Nq, D, dq, c->g_o, dq, c->w[MHA_PARAM_WO], dq, c->g_y, D);
        x = c->g_y;
    }
    if (c->op != OP_ATTN) {
        size_t F2 = c->o->activation == MHA_ACT_SWIGLU ? 2 * F : F;
        sgemm_nt(Nq, F2, D, x, D, c->w[MHA_PARAM_W1], D, c->g_h, F2);
        sgemm_nt(Nq, D, F, c->g_h, F2, c->w[MHA_PARAM_W2], F, c->out, D);
    }
    if (c->op == OP_BACKWARD)
        run_sgemm_backward(c);
}

static void blas_threads_on(void *p)
{
    if (openblas_set_num_threads)
        openblas_set_num_threads(((bcase *)p)->o->threads);
}

static void blas_threads_off(void *p)
{
    (void)p;
    if (openblas_set_num_threads)
        openblas_set_num_threads(1); /* libmha's setting: it threads itself */
}

static float *alloc_f(size_t n)
{
    float *p = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "mha_bench: out of memory\n");
        exit(2);
    }
    return p;
}

static float *rand_f(size_t n, float scale, uint64_t *s)
{
    float *p = alloc_f(n);
    for (size_t i = 0; i < n; i++) {
        *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
        p[i] = scale * ((float)(*s >> 40) / 16777216.0f * 2.0f - 1.0f);
    }
    return p;
}

static double *to_d(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static void print_row(const bcase *c, const char *impl, const timing *t, double flops,
                      const timing *ceil_t, const timing *naive_t, const char *note)
{
    const opts *o = c->o;
    double gf = t->ok ? flops / (t->med * 1e6) : 0.0;
    if (o->json) {
        if (!t->ok)
            return;
        printf("{\"impl\":\"%s\",\"op\":\"%s\",\"batch\":%zu,\"seq\":%zu,\"seq_kv\":%zu,"
               "\"d_model\":%zu,\"heads\":%zu,\"kv_heads\":%zu,\"d_ff\":%zu,\"activation\":\"%s\","
               "\"causal\":%d,\"threads\":%d,\"reps\":%d,\"ms\":%.4f,\"ms_min\":%.4f,"
               "\"ms_max\":%.4f,\"gflop\":%.4f,\"gflops\":%.3f",
               impl, op_names[c->op], c->B, c->Sq, c->Skv, c->D, c->H, c->Hkv, c->F,
               act_names[o->activation], o->causal, o->threads, t->reps, t->med, t->min, t->max,
               flops / 1e9, gf);
        if (ceil_t && ceil_t->ok)
            printf(",\"frac_ceiling\":%.4f", ceil_t->med / t->med);
        if (naive_t && naive_t->ok)
            printf(",\"speedup_vs_naive\":%.2f", naive_t->med / t->med);
        printf("}\n");
        return;
    }
    char label[64];
    snprintf(label, sizeof label, "B%zu S%zu%s", c->B, c->Sq, c->cross ? "x" : "");
    if (c->cross)
        snprintf(label + strlen(label), sizeof label - strlen(label), "%zu", c->Skv);
    if (!t->ok) {
        printf("%-6s %-14s %-7s %s\n", op_names[c->op], label, impl, note);
        return;
    }
    printf("%-6s %-14s %-7s %9.3f %9.3f %9.3f %8.1f", op_names[c->op], label, impl, t->med,
           t->min, t->max, gf);
    if (ceil_t && ceil_t->ok)
        printf(" %7.3f", ceil_t->med / t->med);
    else
        printf(" %7s", "-");
    if (naive_t && naive_t->ok)
        printf(" %9.1fx", naive_t->med / t->med);
    else
        printf(" %10s", "-");
    printf("\n");
}

static int bench_one(const opts *o, int op, size_t B, size_t S)
{
    bcase c = {.o = o, .op = op, .B = B, .Sq = S, .D = o->d_model, .H = o->heads,
               .Hkv = o->kv_heads, .F = o->d_ff};
    c.cross = op == OP_ATTN && o->seq_kv && o->seq_kv != S;
    c.Skv = c.cross ? o->seq_kv : S;
    c.dh = c.D / c.H;
    mha_config cfg;
    mha_config_init(&cfg);
    cfg.d_model = c.D;
    cfg.n_heads = c.H;
    cfg.n_kv_heads = c.Hkv;
    cfg.d_ff = c.F;
    cfg.activation = o->activation;
    cfg.n_threads = o->threads;
    mha_status st = mha_create(&cfg, &c.ctx);
    if (st != MHA_OK) {
        fprintf(stderr, "mha_bench: mha_create: %s\n", mha_strerror(st));
        return -1;
    }
    uint64_t seed = 0x1234567;
    c.nm = (naive_model){c.D, c.H, c.Hkv, c.dh, c.F, o->activation, 0, 1, 1e-5, {0}};
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(c.ctx, (mha_param)p);
        if (!n)
            continue;
        c.w[p] = rand_f(n, 0.05f, &seed);
        if (p == MHA_PARAM_LN1_WEIGHT || p == MHA_PARAM_LN2_WEIGHT)
            for (size_t i = 0; i < n; i++)
                c.w[p][i] += 1.0f;
        mha_set_param(c.ctx, (mha_param)p, c.w[p], n);
        c.wd[p] = to_d(c.w[p], n);
        c.nm.w[p] = c.wd[p];
    }
    /* The ceiling reads WQ|WK|WV (and W1|W3) as one matrix, as libmha does. */
    size_t dq = c.H * c.dh, dkv = c.Hkv * c.dh, Nq = B * S, Nkv = B * c.Skv;
    float *wqkv = alloc_f((dq + 2 * dkv) * c.D);
    memcpy(wqkv, c.w[MHA_PARAM_WQ], dq * c.D * sizeof(float));
    memcpy(wqkv + dq * c.D, c.w[MHA_PARAM_WK], dkv * c.D * sizeof(float));
    memcpy(wqkv + (dq + dkv) * c.D, c.w[MHA_PARAM_WV], dkv * c.D * sizeof(float));
    free(c.w[MHA_PARAM_WQ]);
    free(c.w[MHA_PARAM_WK]);
    c.w[MHA_PARAM_WQ] = wqkv;
    c.w[MHA_PARAM_WK] = wqkv + dq * c.D; /* not freed separately */
    float *w13 = NULL;
    if (o->activation == MHA_ACT_SWIGLU) {
        w13 = alloc_f(2 * c.F * c.D);
        memcpy(w13, c.w[MHA_PARAM_W1], c.F * c.D * sizeof(float));
        memcpy(w13 + c.F * c.D, c.w[MHA_PARAM_W3], c.F * c.D * sizeof(float));
        free(c.w[MHA_PARAM_W1]);
        c.w[MHA_PARAM_W1] = w13;
    }

    c.xq = rand_f(Nq * c.D, 1.0f, &seed);
    c.xkv = c.cross ? rand_f(Nkv * c.D, 1.0f, &seed) : NULL;
    c.out = alloc_f(Nq * c.D);
    c.dx = op == OP_BACKWARD ? alloc_f(Nq * c.D) : NULL;
    double flops = flops_of(&c);

    /* libmha and the sgemm ceiling (OpenBLAS's own threads = --threads),
     * interleaved call by call */
    timing t_lib, t_ceil = {0};
    double score_bytes = (double)S * (double)c.Skv * 4.0;
    if (score_bytes < 2.0 * (1u << 30)) {
        c.g_qkv = alloc_f(Nq * (dq + 2 * dkv));
        c.g_kv = alloc_f(Nkv * 2 * dkv);
        c.g_s = alloc_f(S * c.Skv);
        c.g_o = alloc_f(Nq * dq);
        c.g_y = alloc_f(Nq * c.D);
        c.g_h = alloc_f(Nq * c.F * (o->activation == MHA_ACT_SWIGLU ? 2 : 1));
        if (op == OP_BACKWARD) {
            size_t wmax = 2 * c.F * c.D > (dq + 2 * dkv) * c.D ? 2 * c.F * c.D : (dq + 2 * dkv) * c.D;
            c.g_dw = alloc_f(wmax);
            c.g_dx = alloc_f(Nq * c.D);
            c.g_dh = alloc_f(Nq * c.F * 2);
            c.g_dqkv = alloc_f(Nq * (dq + 2 * dkv));
            memset(c.g_s, 0, S * c.Skv * sizeof(float));
        }
        time_pair(run_libmha, run_sgemm, &c, 2, o->reps, &t_lib, &t_ceil, blas_threads_on,
                  blas_threads_off, o->threads);
    } else {
        t_lib = time_it(run_libmha, &c, 2, o->reps);
    }
    if (c.st != MHA_OK) {
        fprintf(stderr, "mha_bench: libmha: %s\n", mha_strerror(c.st));
        return -1;
    }

    /* naive loops (at most 3 reps; the first is not discarded) */
    timing t_naive = {0};
    double est_s = flops / 2.0e9;
    if (est_s <= o->naive_max && op != OP_BACKWARD) {
        c.xqd = to_d(c.xq, Nq * c.D);
        c.xkvd = c.cross ? to_d(c.xkv, Nkv * c.D) : NULL;
        c.outd = malloc(Nq * c.D * sizeof(double));
        int reps = est_s * 3 <= o->naive_max ? 3 : 1;
        t_naive = time_it(run_naive, &c, 0, reps);
    }

    print_row(&c, "libmha", &t_lib, flops, &t_ceil, &t_naive, "");
    if (score_bytes < 2.0 * (1u << 30))
        print_row(&c, "sgemm", &t_ceil, flops, &t_ceil, &t_naive, "");
    else
        print_row(&c, "sgemm", &t_ceil, flops, NULL, NULL, "skipped: S x S scores > 2 GiB");
    char note[96];
    if (op == OP_BACKWARD)
        snprintf(note, sizeof note, "skipped: the naive reference has no backward");
    else
        snprintf(note, sizeof note, "skipped: estimated %.0f s > --naive-max %.0f", est_s,
                 o->naive_max);
    print_row(&c, "naive", &t_naive, flops, &t_ceil, &t_naive, note);

    mha_destroy(c.ctx);
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        if (p != MHA_PARAM_WK)
            free(c.w[p]);
        free(c.wd[p]);
    }
    free(c.xq);
    free(c.xkv);
    free(c.out);
    free(c.xqd);
    free(c.xkvd);
    free(c.outd);
    free(c.g_qkv);
    free(c.g_kv);
    free(c.g_s);
    free(c.g_o);
    free(c.g_y);
    free(c.g_h);
    free(c.g_dw);
    free(c.g_dx);
    free(c.g_dh);
    free(c.g_dqkv);
    free(c.dx);
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (!o.json) {
        printf("libmha %s: d_model %zu, heads %zu (kv %zu), d_ff %zu, %s%s, %d thread(s), "
               "median of %d reps\n",
               mha_version_string(), o.d_model, o.heads, o.kv_heads, o.d_ff,
               act_names[o.activation], o.causal ? ", causal" : "", o.threads, o.reps);
        printf("%-6s %-14s %-7s %9s %9s %9s %8s %7s %10s\n", "op", "shape", "impl", "ms", "min",
               "max", "GFLOP/s", "x ceil", "x naive");
    }
    size_t n_shapes = o.shape_given ? 1 : sizeof default_shapes / sizeof default_shapes[0];
    for (size_t s = 0; s < n_shapes; s++) {
        size_t B = o.shape_given ? o.batch : default_shapes[s].batch;
        size_t S = o.shape_given ? o.seq : default_shapes[s].seq;
        for (int op = 0; op < OP_COUNT; op++)
            if ((o.op == -1 || o.op == op) && bench_one(&o, op, B, S) != 0)
                return 1;
    }
    return 0;
}
