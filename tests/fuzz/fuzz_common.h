/* fuzz_common.h - reading parameters from fuzzer bytes, and the invariants
 * every target checks. Header-only: each target is one translation unit. */
#ifndef MHA_FUZZ_COMMON_H
#define MHA_FUZZ_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"

/* A harness failure: print and abort, so libFuzzer (or the replay driver)
 * reports the input. */
#define FUZZ_CHECK(cond, ...)                                                    \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "invariant failed (%s:%d): ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static inline uint8_t rd_u8(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static inline uint32_t rd_u32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | rd_u8(r);
    return v;
}

/* Mostly ordinary values, sometimes the nasty ones. */
static inline float rd_float(reader *r, int *bounded)
{
    uint8_t k = rd_u8(r);
    float v;
    switch (k % 16) {
    case 0: v = NAN; break;
    case 1: v = INFINITY; break;
    case 2: v = -INFINITY; break;
    case 3: v = 1e30f; break;
    case 4: v = -3e38f; break;
    case 5: v = 1e-40f; break; /* subnormal */
    default: v = ((float)rd_u8(r) - 128.0f) / 64.0f; break;
    }
    if (!(fabsf(v) <= 1e3f))
        *bounded = 0;
    return v;
}

static inline float *rd_floats(reader *r, size_t n, int *bounded)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = rd_float(r, bounded);
    return x;
}

/* Every status the library returns has its own message. */
static inline void check_status(mha_status st)
{
    const char *m = mha_strerror(st);
    FUZZ_CHECK(m != NULL && strcmp(m, "unknown status") != 0, "status %d has no message", st);
}

static inline mha_config rd_config(reader *r)
{
    mha_config c;
    mha_config_init(&c);
    c.d_model = rd_u8(r) % 25;
    c.n_heads = rd_u8(r) % 5;
    c.n_kv_heads = rd_u8(r) % 5;
    c.d_head = rd_u8(r) % 9;
    c.d_ff = rd_u8(r) % 33;
    c.activation = (int)(rd_u8(r) % 6) - 1; /* -1 and 4 are invalid */
    uint8_t f = rd_u8(r);
    c.norm_first = f & 1 ? 1 : (f & 8 ? 2 : 0);
    c.bias = f & 2 ? 0 : (f & 16 ? -1 : 1);
    c.n_threads = (int)(f >> 5) % 4 - (f == 0xff);
    const float eps[] = {1e-5f, 1e-12f, 0.0f, NAN, -1.0f, 1.0f, INFINITY, 1e-5f};
    c.ln_eps = eps[rd_u8(r) % 8];
    if (rd_u8(r) == 0xAA)
        c.struct_size = rd_u8(r); /* too small, mostly */
    return c;
}

/* Creates a context (checking the failure invariants); NULL when refused. */
static inline mha_ctx *fuzz_create(const mha_config *c)
{
    mha_ctx *ctx = (mha_ctx *)(uintptr_t)0x1;
    mha_status st = mha_create(c, &ctx);
    check_status(st);
    if (st != MHA_OK) {
        FUZZ_CHECK(ctx == NULL, "failed mha_create left *out non-NULL");
        return NULL;
    }
    FUZZ_CHECK(ctx != NULL, "mha_create succeeded without a context");
    return ctx;
}

/* Sets the weights from the bytes: right counts mostly, sometimes wrong
 * ones (which must fail) or none. *bounded is cleared by huge values. */
static inline void fuzz_set_params(reader *r, mha_ctx *ctx, int *bounded, int *all_set)
{
    *all_set = 1;
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t n = mha_param_count(ctx, (mha_param)p);
        uint8_t mode = rd_u8(r);
        if (!n)
            continue;
        if (mode == 7) {
            *all_set = 0;
            continue;
        }
        size_t count = mode == 9 ? n + 1 : mode == 11 ? n - 1 : n;
        float *w = rd_floats(r, n + 1, bounded);
        mha_status st = mha_set_param(ctx, (mha_param)p, w, count);
        check_status(st);
        FUZZ_CHECK((st == MHA_OK) == (count == n), "set_param count %zu of %zu: %d", count, n, st);
        if (st != MHA_OK)
            *all_set = 0;
        free(w);
    }
}

/* All parameters, for checking that a failed call changed none. */
static inline float *snapshot_params(mha_ctx *ctx, size_t *total, int grads)
{
    size_t n = 0;
    for (int p = 0; p < MHA_PARAM_COUNT; p++)
        n += mha_param_count(ctx, (mha_param)p);
    float *s = calloc(n + 1, sizeof(float)), *at = s;
    for (int p = 0; p < MHA_PARAM_COUNT; p++) {
        size_t c = mha_param_count(ctx, (mha_param)p);
        if (c) {
            if (grads)
                mha_get_grad(ctx, (mha_param)p, at, c);
            else
                mha_get_param(ctx, (mha_param)p, at, c); /* unset ones stay 0 */
        }
        at += c;
    }
    *total = n;
    return s;
}

static inline int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

#endif
