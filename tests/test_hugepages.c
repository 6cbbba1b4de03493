/* test_hugepages.c - src/memory.c, which this test compiles in (internal):
 * large buffers start on a 2 MiB boundary, are usable to their last byte,
 * and are marked for transparent huge pages (the kernel's THPeligible for
 * their mapping, in /proc/self/smaps); small ones are 64-byte aligned;
 * sizes that overflow give NULL; the calloc form is zeroed. */
#include "testutil.h"

#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

/* The THP mode in brackets, e.g. "madvise"; "" if the kernel has none. */
static void thp_mode(char *mode, size_t n)
{
    mode[0] = '\0';
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return;
    char line[128];
    if (fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b && (size_t)(b - a) < n) {
            memcpy(mode, a + 1, (size_t)(b - a - 1));
            mode[b - a - 1] = '\0';
        }
    }
    fclose(f);
}

/* THPeligible of the mapping that holds p: 1, 0, or -1 if not reported. */
static int thp_eligible(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[256];
    int inside = 0, result = -1;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = a >= lo && a < hi;
        else if (inside && sscanf(line, "THPeligible: %d", &result) == 1)
            break;
    }
    fclose(f);
    return result;
}

static void large_buffers_aligned_and_marked(void **s)
{
    (void)s;
    char mode[32];
    thp_mode(mode, sizeof mode);
    const size_t sizes[] = {2 * MIB, 2 * MIB + 4, 28 * MIB + 12345, 100 * MIB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = mha__big_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % (2 * MIB), 0);
        memset(p, 0xab, sizes[i]); /* all of it is ours (ASan checks) */
        assert_int_equal(p[sizes[i] - 1], 0xab);
        int e = thp_eligible(p);
        if (e >= 0 && (!strcmp(mode, "madvise") || !strcmp(mode, "always")))
            assert_int_equal(e, 1);
        else
            print_message("THP mode '%s', THPeligible %d: not checked\n", mode, e);
        free(p);
    }
}

static void small_buffers_aligned(void **s)
{
    (void)s;
    const size_t sizes[] = {0, 1, 64, 1000, 2 * MIB - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = mha__big_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 1, sizes[i]);
        free(p);
    }
}

static void overflow_gives_null(void **s)
{
    (void)s;
    assert_null(mha__big_alloc(SIZE_MAX));
    assert_null(mha__big_alloc(SIZE_MAX - MIB));
    assert_null(mha__big_calloc(SIZE_MAX / 2, 4));
    assert_null(mha__big_calloc(4, SIZE_MAX / 2));
}

static void calloc_is_zeroed(void **s)
{
    (void)s;
    const size_t n[] = {10, 3 * MIB / 4 + 7};
    for (size_t i = 0; i < 2; i++) {
        float *p = mha__big_calloc(n[i], sizeof(float));
        assert_non_null(p);
        for (size_t j = 0; j < n[i]; j++)
            if (p[j] != 0.0f)
                fail_msg("[%zu] = %g", j, (double)p[j]);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(large_buffers_aligned_and_marked),
        cmocka_unit_test(small_buffers_aligned),
        cmocka_unit_test(overflow_gives_null),
        cmocka_unit_test(calloc_is_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
