/* memory.c - the context's large buffers (parameters, gradients, workspace).
 *
 * Buffers of 2 MiB and more start on a 2 MiB boundary, are rounded up to
 * whole 2 MiB pages and ask the kernel for transparent huge pages
 * (MADV_HUGEPAGE; Debian's default THP mode is "madvise", so without asking
 * there are none). OpenBLAS packs the weights on every call, reading each
 * row of W (3 KiB at d_model 768) from another 4 KiB page; with huge pages
 * the same sgemm calls ran 1.5-2.5 % faster here (README, "Memory").
 * Smaller buffers are 64-byte aligned, as the vector kernels want. Either
 * way the buffer is released with free(). */
#include "internal.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *mha__big_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes < HUGE_PAGE)
        return posix_memalign(&p, 64, bytes ? bytes : 64) == 0 ? p : NULL;
    if (bytes > SIZE_MAX - HUGE_PAGE)
        return NULL;
    bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    if (posix_memalign(&p, HUGE_PAGE, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* only a hint: failure changes nothing */
#endif
    return p;
}

void *mha__big_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (mha__mul(n, size, &bytes))
        return NULL;
    void *p = mha__big_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}
