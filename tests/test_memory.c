/* test_memory.c - attention memory is O(seq): self-attention at S = 16384,
 * d_model 512, 8 heads, batch 1 stays under 512 MiB peak RSS (one S x S score
 * matrix alone would be 1 GiB). Inputs and output are 32 MiB each. */
#include "testutil.h"

#include <stdlib.h>
#include <sys/resource.h>

static void long_sequence_peak_rss(void **s)
{
    (void)s;
    mha_config cfg = make_cfg(512, 8, 0, 0, 0);
    cfg.n_threads = 0;
    fixture f;
    fixture_make(&f, &cfg, 1);
    size_t S = 16384, n = S * 512;
    float *x = rand_floats(n, 1.0), *out = malloc(n * sizeof(float));
    mha_attn_args a;
    mha_attn_args_init(&a);
    a.batch = 1;
    a.seq_q = S;
    a.query = x;
    a.out = out;
    a.causal = 1;
    assert_int_equal(mha_attention_forward(f.ctx, &a), MHA_OK);
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    long mib = ru.ru_maxrss / 1024;
    print_message("peak RSS %ld MiB\n", mib);
#ifndef MHA_TEST_NO_RSS_LIMIT
    assert_true(mib < 512);
#endif
    /* spot-check a few rows against the reference on a short prefix:
     * causal rows only see earlier keys, so row i of the long run equals
     * row i of a run on the first i + 1 tokens */
    size_t P = 40;
    double *xd = to_double(x, P * 512), *ref = malloc(P * 512 * sizeof(double));
    naive_attention(&f.nm, 1, P, P, xd, NULL, NULL, NULL, NULL, 1, ref, NULL);
    assert_close(out, ref, P * 512, TOL);
    free(xd);
    free(ref);
    free(x);
    free(out);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(long_sequence_peak_rss)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
