/* threads.c - the per-context thread pool.
 *
 * n_threads - 1 workers plus the calling thread. A job is a count of
 * independent tasks claimed through an atomic counter; the caller takes part
 * and returns once every task is done. Workers spin briefly before sleeping
 * on a condition variable, because a layer issues ~10 jobs back to back and
 * a futex wake-up per job would cost more than the small ones take. The
 * spin is bounded in time (MHA__SPIN_NS), not in iterations: a sched_yield
 * takes ~0.25 us on an idle core (20000 of them, the old bound, ~5 ms) but
 * far longer when another thread is runnable; and after a call returns a
 * spinning worker takes a core from whatever the caller runs next
 * (OpenBLAS's idle workers spin ~0.1 s, which is what slows libmha when
 * both share a process; see README, Threads). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MHA__SPIN_NS 2000000 /* 2 ms: covers the gaps between back-to-back calls */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* For spin loops: nonzero once MHA__SPIN_NS have passed since *t0 (set on
 * the first call); reads the clock every 16th iteration only. */
static int spun_out(unsigned i, uint64_t *t0)
{
    if (i == 0)
        *t0 = now_ns();
    return (i & 15) == 15 && now_ns() - *t0 > MHA__SPIN_NS;
}

struct mha__pool {
    size_t n_threads;
    pthread_t *workers;
    size_t n_started;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    atomic_int stop; /* set under mu; also read while spinning */

    /* The current job. Written by the caller before `generation` is bumped
     * (release) and read by workers after they observe it (acquire). */
    mha__task_fn fn;
    void *arg;
    size_t n_tasks;
    atomic_size_t next;
    atomic_uint generation;
    atomic_size_t pending; /* workers that have not finished the current job */
};

typedef struct worker_arg {
    mha__pool *pool;
    size_t index;
} worker_arg;

static void run_tasks(mha__pool *pool, size_t thread)
{
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
        if (t >= pool->n_tasks)
            break;
        pool->fn(pool->arg, t, thread);
    }
}

static void *worker_main(void *p)
{
    mha__pool *pool = ((worker_arg *)p)->pool;
    size_t index = ((worker_arg *)p)->index;
    free(p);
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        uint64_t t0 = 0;
        for (unsigned i = 0; gen == seen && !spun_out(i, &t0) &&
                             !atomic_load_explicit(&pool->stop, memory_order_relaxed);
             i++) {
            sched_yield();
            gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&pool->mu);
            while (!atomic_load(&pool->stop) &&
                   (gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            int stop = atomic_load(&pool->stop);
            pthread_mutex_unlock(&pool->mu);
            if (stop)
                return NULL;
        }
        seen = gen;
        run_tasks(pool, index);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

size_t mha__available_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (size_t)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

mha_status mha__pool_create(size_t n_threads, mha__pool **out)
{
    *out = NULL;
    mha__pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return MHA_ERR_NO_MEMORY;
    pool->n_threads = n_threads ? n_threads : 1;
    atomic_init(&pool->next, 0);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stop, 0);
    if (pthread_mutex_init(&pool->mu, NULL) != 0) {
        free(pool);
        return MHA_ERR_THREAD;
    }
    if (pthread_cond_init(&pool->cv_work, NULL) != 0) {
        pthread_mutex_destroy(&pool->mu);
        free(pool);
        return MHA_ERR_THREAD;
    }
    if (pthread_cond_init(&pool->cv_done, NULL) != 0) {
        pthread_cond_destroy(&pool->cv_work);
        pthread_mutex_destroy(&pool->mu);
        free(pool);
        return MHA_ERR_THREAD;
    }
    if (pool->n_threads > 1) {
        pool->workers = calloc(pool->n_threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            mha__pool_destroy(pool);
            return MHA_ERR_NO_MEMORY;
        }
        for (size_t i = 1; i < pool->n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) {
                mha__pool_destroy(pool);
                return MHA_ERR_NO_MEMORY;
            }
            wa->pool = pool;
            wa->index = i;
            if (pthread_create(&pool->workers[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                mha__pool_destroy(pool);
                return MHA_ERR_THREAD;
            }
            pool->n_started++;
        }
    }
    *out = pool;
    return MHA_OK;
}

void mha__pool_destroy(mha__pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (size_t i = 0; i < pool->n_started; i++)
        pthread_join(pool->workers[i], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->cv_done);
    pthread_cond_destroy(&pool->cv_work);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

size_t mha__pool_threads(const mha__pool *pool) { return pool->n_threads; }

void mha__pool_run(mha__pool *pool, size_t n_tasks, mha__task_fn fn, void *arg)
{
    if (n_tasks == 0)
        return;
    if (pool->n_started == 0 || n_tasks == 1) {
        for (size_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->n_started, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);

    run_tasks(pool, 0);

    uint64_t t0 = 0;
    for (unsigned i = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) != 0; i++) {
        if (!spun_out(i, &t0)) {
            sched_yield();
            continue;
        }
        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0)
            pthread_cond_wait(&pool->cv_done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
        break;
    }
}
