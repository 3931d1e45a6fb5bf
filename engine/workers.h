/*
 * workers.h - a fixed pool of compute threads that run one parallel task at a time.
 *
 * Threading model: the caller (the engine's step thread) is thread 0 and the
 * pool adds n_threads-1 helpers. workers_run(fn) runs fn(ctx, ith, nth) on all
 * n_threads threads at once and returns when every one has finished, so work
 * is split by index (rows of a matrix, heads of an attention layer) with no
 * locks inside fn. Between tasks the helpers spin briefly (decode issues a few
 * hundred short tasks per token, and a futex wake-up costs tens of
 * microseconds), then sleep on a condition variable so they never compete with
 * OpenBLAS's own threads during a long cblas_sgemm.
 *
 * OpenBLAS is called only from thread 0 and only between workers_run calls;
 * it is set to the same thread count, so the two never oversubscribe the cores.
 *
 * A pool is used by one caller thread at a time.
 */
#ifndef SA_WORKERS_H
#define SA_WORKERS_H

typedef void (*workers_fn)(void *ctx, int ith, int nth);

struct workers;

/* n_threads >= 1 (1 = no helper threads). NULL on failure. */
struct workers *workers_create(int n_threads);
void workers_destroy(struct workers *w); /* accepts NULL; joins the helpers */
int workers_count(const struct workers *w);
void workers_run(struct workers *w, workers_fn fn, void *ctx);

/* Split [0, n) into nth near-equal parts; part ith is [*lo, *hi). */
void workers_split(long n, int ith, int nth, long *lo, long *hi);

#endif
