/* test_alloc.c - once a shape has been seen, forward and backward calls do
 * not allocate.
 * The test binary interposes the allocator (glibc's __libc_* underneath)
 * and counts calls made from any thread while counting is on. Not built
 * under sanitizers, which own the allocator. */
#include "testutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_int counting;
static atomic_long n_allocs;

static void note(void)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&n_allocs, 1);
}
void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { note(); return __libc_memalign(al, n); }
void *memalign(size_t al, size_t n) { note(); return __libc_memalign(al, n); }
int posix_memalign(void **p, size_t al, size_t n)
{
    note();
    *p = __libc_memalign(al, n);
    return *p ? 0 : ENOMEM;
}

typedef struct call {
    fixture *f;
    float *x, *out, *w;
    size_t batch, seq;
} call;

static void forward_all(const call *c)
{
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = c->batch;
    a.seq_q = c->seq;
    a.query = c->x;
    a.out = c->out;
    a.causal = 1;
    assert_int_equal(mha_attention_forward(c->f->ctx, &a), MHA_OK);
    assert_int_equal(mha_layer_forward(c->f->ctx, &a), MHA_OK);
    a.attn_weights = c->w;
    assert_int_equal(mha_attention_forward(c->f->ctx, &a), MHA_OK);
    assert_int_equal(mha_ffn_forward(c->f->ctx, c->out, c->x, c->batch * c->seq), MHA_OK);
    mha_grad_args g;
    mha_grad_args_init(&g);
    g.d_out = c->x;
    g.d_query = c->out;
    a.attn_weights = NULL;
    assert_int_equal(mha_attention_backward(c->f->ctx, &a, &g), MHA_OK);
    assert_int_equal(mha_layer_backward(c->f->ctx, &a, &g), MHA_OK);
    assert_int_equal(mha_ffn_backward(c->f->ctx, c->out, c->x, c->x, c->batch * c->seq), MHA_OK);
}

static long count_allocs(const call *c)
{
    atomic_store(&n_allocs, 0);
    atomic_store(&counting, 1);
    forward_all(c);
    atomic_store(&counting, 0);
    return atomic_load(&n_allocs);
}

static void no_alloc_after_first_call(void **s)
{
    (void)s;
    for (int threads = 1; threads <= 2; threads++) {
        mha_config cfg = make_cfg(64, 4, 2, 0, 0);
        cfg.activation = MHA_ACT_SWIGLU;
        cfg.n_threads = threads;
        fixture f;
        fixture_make(&f, &cfg, 1);
        size_t B = 2, S = 300, D = 64;
        call c = {&f, rand_floats(B * S * D, 1.0), malloc(B * S * D * sizeof(float)),
                  malloc(B * 4 * S * S * sizeof(float)), B, S};
        /* The first call of a shape sizes the workspace: the counter sees it. */
        assert_true(count_allocs(&c) > 0);
        for (int rep = 0; rep < 3; rep++)
            assert_int_equal(count_allocs(&c), 0);
        c.seq = 100; /* a smaller shape fits the workspace already */
        assert_int_equal(count_allocs(&c), 0);
        free(c.x);
        free(c.out);
        free(c.w);
        fixture_free(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(no_alloc_after_first_call)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
