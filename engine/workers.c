#include "workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

struct workers {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint generation; /* bumped for every task */
    atomic_int pending;     /* helpers still running the current task */
    atomic_bool stop;
    workers_fn fn;
    void *ctx;
};

struct worker_arg {
    struct workers *w;
    int ith;
};

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#define SPIN_NS 200000L /* spin this long for the next task before sleeping */

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    struct workers *w = a->w;
    int ith = a->ith;
    free(a);
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&w->generation, memory_order_acquire);
        if (gen == seen) {
            long t0 = now_ns();
            int spins = 0;
            while ((gen = atomic_load_explicit(&w->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&w->stop)) {
                CPU_RELAX();
                if (++spins == 1024) {
                    spins = 0;
                    if (now_ns() - t0 > SPIN_NS) break;
                }
            }
            if (gen == seen && !atomic_load(&w->stop)) {
                pthread_mutex_lock(&w->mu);
                while ((gen = atomic_load(&w->generation)) == seen && !atomic_load(&w->stop))
                    pthread_cond_wait(&w->cv, &w->mu);
                pthread_mutex_unlock(&w->mu);
            }
        }
        if (atomic_load(&w->stop)) return NULL;
        seen = gen;
        w->fn(w->ctx, ith, w->n);
        atomic_fetch_sub_explicit(&w->pending, 1, memory_order_release);
    }
}

struct workers *workers_create(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    struct workers *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = n_threads;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->threads = calloc((size_t)n_threads, sizeof *w->threads);
    if (!w->threads) {
        free(w);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (a) {
            a->w = w;
            a->ith = i;
        }
        if (!a || pthread_create(&w->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            w->n = i; /* only join what started */
            workers_destroy(w);
            return NULL;
        }
    }
    return w;
}

void workers_destroy(struct workers *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, true);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 1; i < w->n; i++) pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->threads);
    free(w);
}

int workers_count(const struct workers *w) { return w ? w->n : 1; }

void workers_run(struct workers *w, workers_fn fn, void *ctx)
{
    if (!w || w->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    w->fn = fn;
    w->ctx = ctx;
    atomic_store_explicit(&w->pending, w->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&w->mu);
    atomic_fetch_add_explicit(&w->generation, 1, memory_order_release);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    fn(ctx, 0, w->n);
    while (atomic_load_explicit(&w->pending, memory_order_acquire) > 0) CPU_RELAX();
}

void workers_split(long n, int ith, int nth, long *lo, long *hi)
{
    long per = n / nth, extra = n % nth;
    *lo = ith * per + (ith < extra ? ith : extra);
    *hi = *lo + per + (ith < extra ? 1 : 0);
}
