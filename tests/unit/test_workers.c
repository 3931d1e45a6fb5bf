/* test_workers.c - the worker pool: every thread runs each task exactly once, the caller is
 * thread 0, workers_split covers [0, n) without gaps or overlaps, and thousands of short
 * tasks in a row (the decode pattern) lose no run. Also run under ThreadSanitizer. */
#include "../test.h"

#include "engine/workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MAX_T 8

struct run_ctx {
    atomic_int calls[MAX_T];
    atomic_int wrong_nth;
    pthread_t caller;
    atomic_int caller_not_0;
    long *cells; /* each index of [0, n) incremented by the thread that owns it */
    long n;
};

static void task(void *arg, int ith, int nth)
{
    struct run_ctx *c = arg;
    if (ith >= 0 && ith < MAX_T) atomic_fetch_add(&c->calls[ith], 1);
    if (nth < 1 || ith >= nth) atomic_fetch_add(&c->wrong_nth, 1);
    if (ith == 0 && !pthread_equal(pthread_self(), c->caller)) atomic_fetch_add(&c->caller_not_0, 1);
    long lo, hi;
    workers_split(c->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) c->cells[i]++; /* disjoint ranges: no race (TSan checks) */
}

static void test_split_covers_exactly(void)
{
    for (long n = 0; n < 40; n++)
        for (int nth = 1; nth <= 7; nth++) {
            long next = 0, biggest = 0, smallest = n;
            for (int ith = 0; ith < nth; ith++) {
                long lo, hi;
                workers_split(n, ith, nth, &lo, &hi);
                ASSERT_EQ(lo, next); /* contiguous, in order */
                ASSERT_TRUE(hi >= lo);
                next = hi;
                biggest = hi - lo > biggest ? hi - lo : biggest;
                smallest = hi - lo < smallest ? hi - lo : smallest;
            }
            ASSERT_EQ(next, n);
            ASSERT_TRUE(biggest - smallest <= 1); /* near-equal parts */
        }
}

static void check_pool(int n_threads, int runs, long n)
{
    struct workers *w = workers_create(n_threads);
    ASSERT_TRUE(w != NULL);
    if (!w) return;
    ASSERT_EQ(workers_count(w), n_threads);
    struct run_ctx c = {.caller = pthread_self(), .n = n};
    c.cells = calloc((size_t)n, sizeof *c.cells);
    for (int r = 0; r < runs; r++) workers_run(w, task, &c);
    for (int t = 0; t < MAX_T; t++) ASSERT_EQ(atomic_load(&c.calls[t]), t < n_threads ? runs : 0);
    ASSERT_EQ(atomic_load(&c.wrong_nth), 0);
    ASSERT_EQ(atomic_load(&c.caller_not_0), 0);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += c.cells[i] != runs;
    ASSERT_EQ(bad, 0); /* every index done once per run: the runs did not overlap */
    free(c.cells);
    workers_destroy(w);
}

static void test_one_thread(void) { check_pool(1, 100, 17); }
static void test_many_short_tasks(void) { check_pool(2, 20000, 5); }
static void test_more_threads_than_cores(void) { check_pool(5, 2000, 1000); }

/* Long tasks after a pause: the helpers went to sleep in between and must wake. */
static void test_sleep_and_wake(void)
{
    struct workers *w = workers_create(3);
    struct run_ctx c = {.caller = pthread_self(), .n = 300};
    c.cells = calloc(300, sizeof *c.cells);
    for (int r = 0; r < 5; r++) {
        workers_run(w, task, &c);
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int t = 0; t < 3; t++) ASSERT_EQ(atomic_load(&c.calls[t]), 5);
    free(c.cells);
    workers_destroy(w);
    workers_destroy(NULL);
}

int main(void)
{
    TEST_RUN(test_split_covers_exactly);
    TEST_RUN(test_one_thread);
    TEST_RUN(test_many_short_tasks);
    TEST_RUN(test_more_threads_than_cores);
    TEST_RUN(test_sleep_and_wake);
    TEST_DONE();
}
