/*
 * test.h - tiny unit-test harness: assertions print both values and file:line.
 *
 * A test file defines functions `static void test_x(void)` and lists them in
 * main() through TEST_RUN(test_x). Each failing assertion is reported and the
 * process exits non-zero at the end (after the other tests ran). The closing
 * line has the form "N passed, M failed".
 */
#ifndef SA_TEST_H
#define SA_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures_;
static int test_cur_failed_;
static int test_passed_, test_failed_;

#define TEST_FAIL_(...)                                                                \
    do {                                                                               \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                         \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fprintf(stderr, "\n");                                                         \
        test_failures_++;                                                              \
        test_cur_failed_ = 1;                                                          \
    } while (0)

#define ASSERT_TRUE(c)                                                                 \
    do {                                                                               \
        if (!(c)) TEST_FAIL_("expected true: %s", #c);                                 \
    } while (0)
#define ASSERT_EQ(a, b)                                                                \
    do {                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                            \
        if (a_ != b_) TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);            \
    } while (0)
#define ASSERT_NE(a, b)                                                                \
    do {                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                            \
        if (a_ == b_) TEST_FAIL_("%s != %s: both %lld", #a, #b, a_);                   \
    } while (0)
#define ASSERT_OK(e)                                                                   \
    do {                                                                               \
        int r_ = (e);                                                                  \
        if (r_ != 0) TEST_FAIL_("%s returned %d", #e, r_);                             \
    } while (0)
#define ASSERT_NEAR(a, b, tol)                                                         \
    do {                                                                               \
        double a_ = (double)(a), b_ = (double)(b);                                     \
        if (!(fabs(a_ - b_) <= (tol)))                                                 \
            TEST_FAIL_("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); \
    } while (0)
#define ASSERT_STR_EQ(a, b)                                                            \
    do {                                                                               \
        const char *a_ = (a), *b_ = (b);                                               \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                         \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",       \
                       b_ ? b_ : "(null)");                                            \
    } while (0)
#define ASSERT_CONTAINS(hay, needle)                                                   \
    do {                                                                               \
        const char *h_ = (hay), *n_ = (needle);                                        \
        if (!h_ || !strstr(h_, n_)) TEST_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
    } while (0)

#define TEST_RUN(fn)                                                                   \
    do {                                                                               \
        test_cur_failed_ = 0;                                                          \
        fn();                                                                          \
        if (test_cur_failed_) {                                                        \
            test_failed_++;                                                            \
            fprintf(stderr, "not ok %s\n", #fn);                                       \
        } else {                                                                       \
            test_passed_++;                                                            \
            fprintf(stderr, "ok %s\n", #fn);                                           \
        }                                                                              \
    } while (0)

#define TEST_DONE()                                                                    \
    do {                                                                               \
        printf("%d passed, %d failed\n", test_passed_, test_failed_);                  \
        return test_failed_ ? 1 : 0;                                                   \
    } while (0)

/* Directory of the shared assets (env SHARED, default ../shared). */
static inline const char *test_shared_dir(void)
{
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

/* Deterministic test data (xorshift64): a test file that defines TEST_RNG_SEED
 * before including this header gets rnd32() and rndf() in [-1, 1) from that seed. */
#ifdef TEST_RNG_SEED
#include <stdint.h>
static uint64_t rng_state = TEST_RNG_SEED;
static inline uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static inline float rndf(void) { return (float)rnd32() / 4294967296.0f * 2.0f - 1.0f; }
#endif

/* malloc that aborts the test on failure (n 0 allowed). */
static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

#endif
