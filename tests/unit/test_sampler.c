/* test_sampler.c - sampling pipeline against closed-form expectations. */
#include "../test.h"

#include "engine/errors.h"
#include "engine/sampler.h"

#include <float.h>

static struct sampler *make(struct sampler_params p, int32_t n)
{
    struct sampler *s = NULL;
    int rc = sampler_create(&p, n, &s);
    if (rc) TEST_FAIL_("sampler_create: %d", rc);
    return s;
}

static void test_greedy_argmax_and_ties(void)
{
    struct sampler *s = make(sampler_default_params(), 5);
    float l1[5] = {0.1f, 3.0f, -1.0f, 2.9f, 0.0f};
    ASSERT_EQ(sampler_sample(s, l1, NULL), 1);
    float l2[5] = {1.0f, 2.0f, 2.0f, 0.0f, 2.0f};
    ASSERT_EQ(sampler_sample(s, l2, NULL), 1); /* lowest id among equal maxima */
    sampler_destroy(s);
}

static void test_seed_reproducible(void)
{
    struct sampler_params p = sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 42;
    float logits[16];
    for (int i = 0; i < 16; i++) logits[i] = (float)(i % 5) * 0.3f;
    int32_t a[64], b[64], c[64];
    struct sampler *s1 = make(p, 16), *s2 = make(p, 16);
    p.seed = 43;
    struct sampler *s3 = make(p, 16);
    int diff = 0;
    for (int i = 0; i < 64; i++) {
        a[i] = sampler_sample(s1, logits, NULL);
        b[i] = sampler_sample(s2, logits, NULL);
        c[i] = sampler_sample(s3, logits, NULL);
        ASSERT_EQ(a[i], b[i]);
        diff += a[i] != c[i];
    }
    ASSERT_TRUE(diff > 0);
    /* reset restarts the same stream */
    sampler_reset(s1);
    for (int i = 0; i < 64; i++) ASSERT_EQ(sampler_sample(s1, logits, NULL), a[i]);
    sampler_destroy(s1);
    sampler_destroy(s2);
    sampler_destroy(s3);
}

/* Draw N times and compare frequencies with the expected probabilities. */
static void check_distribution(struct sampler_params p, const float *logits, int n, const double *expect)
{
    struct sampler *s = make(p, n);
    int counts[16] = {0};
    const int N = 200000;
    for (int i = 0; i < N; i++) counts[sampler_sample(s, logits, NULL)]++;
    for (int i = 0; i < n; i++) {
        double f = (double)counts[i] / N;
        /* 5 sigma of a binomial proportion, plus a floor */
        double tol = 5 * sqrt(expect[i] * (1 - expect[i]) / N) + 1e-4;
        ASSERT_NEAR(f, expect[i], tol);
    }
    sampler_destroy(s);
}

static void test_temperature_matches_softmax(void)
{
    float logits[4] = {1.0f, 0.5f, 0.0f, -1.0f};
    for (int k = 0; k < 2; k++) {
        double T = k ? 0.5 : 1.0, z = 0, e[4];
        for (int i = 0; i < 4; i++) z += exp(logits[i] / T);
        for (int i = 0; i < 4; i++) e[i] = exp(logits[i] / T) / z;
        struct sampler_params p = sampler_default_params();
        p.temperature = (float)T;
        p.seed = 7 + (uint64_t)k;
        check_distribution(p, logits, 4, e);
    }
}

static void test_top_k_top_p_min_p(void)
{
    /* probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1 */
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    struct sampler_params p = sampler_default_params();
    p.temperature = 1.0f;
    p.seed = 3;
    p.top_k = 2;
    double e_k[4] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    check_distribution(p, logits, 4, e_k);
    p.top_k = 0;
    p.top_p = 0.75f; /* smallest prefix with mass >= 0.75: {0, 1} */
    check_distribution(p, logits, 4, e_k);
    p.top_p = 0.85f; /* {0, 1, 2} */
    double e_p[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    check_distribution(p, logits, 4, e_p);
    p.top_p = 1.0f;
    p.min_p = 0.5f; /* keep p >= 0.25 */
    check_distribution(p, logits, 4, e_k);
    p.top_k = 1; /* top-k 1 is greedy at any temperature */
    p.min_p = 0;
    p.temperature = 5.0f;
    double e_1[4] = {1, 0, 0, 0};
    check_distribution(p, logits, 4, e_1);
}

static void test_penalties(void)
{
    struct sampler_params p = sampler_default_params();
    p.repeat_penalty = 2.0f;
    struct sampler *s = make(p, 3);
    float l[3] = {2.0f, 1.5f, -1.0f};
    ASSERT_EQ(sampler_sample(s, l, NULL), 0);
    sampler_accept(s, 0); /* 2.0 / 2 = 1.0 < 1.5 */
    ASSERT_EQ(sampler_sample(s, l, NULL), 1);
    sampler_destroy(s);

    p = sampler_default_params();
    p.frequency_penalty = 0.1f;
    s = make(p, 3);
    float f[3] = {1.0f, 0.85f, 0.0f};
    sampler_accept(s, 0);
    ASSERT_EQ(sampler_sample(s, f, NULL), 0); /* 0.9 > 0.85 */
    sampler_accept(s, 0);
    ASSERT_EQ(sampler_sample(s, f, NULL), 1); /* 0.8 < 0.85 */
    sampler_destroy(s);

    p = sampler_default_params();
    p.presence_penalty = 0.2f;
    s = make(p, 3);
    sampler_accept(s, 0);
    ASSERT_EQ(sampler_sample(s, f, NULL), 1); /* 0.8 < 0.85 after one occurrence */
    sampler_destroy(s);

    /* the window forgets: last_n = 1 */
    p = sampler_default_params();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 1;
    s = make(p, 3);
    sampler_accept(s, 0);
    sampler_accept(s, 2);
    ASSERT_EQ(sampler_sample(s, l, NULL), 0); /* token 0 left the window */
    sampler_destroy(s);
}

static void test_logprobs(void)
{
    struct sampler_params p = sampler_default_params();
    p.n_logprobs = 5;
    struct sampler *s = make(p, 6);
    float l[6] = {0.3f, 2.0f, -1.0f, 1.0f, 0.0f, 1.5f};
    struct sampler_result r;
    ASSERT_EQ(sampler_sample(s, l, &r), 1);
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp((double)l[i]);
    ASSERT_NEAR(r.logprob, 2.0 - log(z), 1e-5);
    ASSERT_EQ(r.n_top, 5);
    int order[5] = {1, 5, 3, 0, 4};
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(r.top[i].id, order[i]);
        ASSERT_NEAR(r.top[i].logprob, l[order[i]] - log(z), 1e-5);
    }
    sampler_destroy(s);
}

static void test_rejects_bad_params(void)
{
    struct sampler *s;
    struct sampler_params p = sampler_default_params();
    p.temperature = NAN;
    ASSERT_EQ(sampler_create(&p, 10, &s), SA_ERR_RANGE);
    p = sampler_default_params();
    p.top_p = 0;
    ASSERT_EQ(sampler_create(&p, 10, &s), SA_ERR_RANGE);
    p = sampler_default_params();
    p.min_p = 1.5f;
    ASSERT_EQ(sampler_create(&p, 10, &s), SA_ERR_RANGE);
    p = sampler_default_params();
    p.n_logprobs = SAMPLER_MAX_LOGPROBS + 1;
    ASSERT_EQ(sampler_create(&p, 10, &s), SA_ERR_RANGE);
    p = sampler_default_params();
    p.top_k = -1;
    ASSERT_EQ(sampler_create(&p, 10, &s), SA_ERR_RANGE);
}

/* Every configuration the sampler can be in: greedy, plain, and each truncating filter at its edge. */
static struct sampler_params edge_params(int k)
{
    struct sampler_params p = sampler_default_params();
    p.seed = 99 + (uint64_t)k;
    switch (k) {
    case 0: break;                                              /* greedy */
    case 1: p.temperature = 1; break;                           /* plain */
    case 2: p.temperature = 1; p.min_p = 0.5f; break;
    case 3: p.temperature = 1; p.min_p = 1.0f; break;           /* only the maximum */
    case 4: p.temperature = 1; p.top_p = 1e-9f; break;
    case 5: p.temperature = 1; p.top_p = 0.5f; break;
    case 6: p.temperature = 1; p.top_k = 1; break;
    case 7: p.temperature = 2; p.top_k = 3; p.top_p = 0.9f; p.min_p = 0.05f; break;
    default: p.temperature = 0.002f; p.min_p = 0.99f; p.n_logprobs = 4; break;
    }
    return p;
}
#define N_EDGE 9

/* NaN and -inf are impossible tokens; no logit being a number is an error, never a read outside the arrays. */
static void test_non_finite_logits(void)
{
    const float nan = NAN, inf = INFINITY;
    for (int k = 0; k < N_EDGE; k++) {
        struct sampler_params p = edge_params(k);
        struct sampler *s = make(p, 4);
        struct sampler_result r;
        float all_nan[4] = {nan, nan, nan, nan}, all_ninf[4] = {-inf, nan, -inf, -inf};
        ASSERT_EQ(sampler_sample(s, all_nan, &r), SA_ERR_NUMERIC);
        ASSERT_EQ(sampler_sample(s, all_ninf, NULL), SA_ERR_NUMERIC);
        /* NaNs around real numbers: never chosen */
        float mixed[4] = {nan, 1.0f, nan, 0.5f};
        for (int i = 0; i < 200; i++) {
            int32_t t = sampler_sample(s, mixed, &r);
            ASSERT_TRUE(t == 1 || t == 3);
            ASSERT_TRUE(isfinite(r.logprob));
            for (int32_t q = 0; q < r.n_top; q++) ASSERT_TRUE(!isnan(r.top[q].logprob));
        }
        /* +inf is the most likely token there is */
        float pinf[4] = {0.0f, inf, 3.0f, nan};
        for (int i = 0; i < 50; i++) ASSERT_EQ(sampler_sample(s, pinf, &r), 1);
        /* one possible token among -inf */
        float one[4] = {-inf, -inf, -2.0f, -inf};
        ASSERT_EQ(sampler_sample(s, one, NULL), 2);
        sampler_destroy(s);
    }
    /* two +inf tie: both drawn, about equally, nothing else */
    struct sampler_params p = sampler_default_params();
    p.temperature = 1;
    p.seed = 5;
    struct sampler *s = make(p, 3);
    float two[3] = {INFINITY, 0.0f, INFINITY};
    int c[3] = {0};
    for (int i = 0; i < 2000; i++) c[sampler_sample(s, two, NULL)]++;
    ASSERT_EQ(c[1], 0);
    ASSERT_TRUE(c[0] > 850 && c[2] > 850);
    sampler_destroy(s);
}

/* The critical request of issue 12: a repeated word, repeat_penalty 1e-38, min_p 0.5.
 * Penalised logits saturate instead of becoming inf/NaN; the filter keeps the maximum. */
static void test_extreme_penalties(void)
{
    float pens[] = {1e-38f, 1e-30f, 10.0f};
    float freq[] = {-2.0f, 0.0f, 2.0f};
    float large[6] = {3e38f, -3e38f, 1.0f, 2.0f, FLT_MAX, -FLT_MAX};
    for (int k = 0; k < N_EDGE; k++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                struct sampler_params p = edge_params(k);
                p.repeat_penalty = pens[a];
                p.frequency_penalty = freq[b];
                p.presence_penalty = -freq[b];
                struct sampler *s = make(p, 6);
                for (int i = 0; i < 6; i++) sampler_accept(s, i % 3 == 0 ? 0 : 4);
                struct sampler_result r;
                for (int i = 0; i < 20; i++) {
                    int32_t t = sampler_sample(s, large, &r);
                    ASSERT_TRUE(t >= 0 && t < 6);
                    if (t < 0 || t >= 6) break;
                    ASSERT_TRUE(isfinite(r.logprob) || r.logprob == -INFINITY);
                    sampler_accept(s, t);
                }
                sampler_destroy(s);
            }
    /* closed form: with penalty 1e-38, token 0 (logit 2 > 0, seen) becomes 2e38 and wins alone */
    struct sampler_params p = sampler_default_params();
    p.temperature = 1;
    p.min_p = 0.5f;
    p.repeat_penalty = 1e-38f;
    struct sampler *s = make(p, 3);
    sampler_accept(s, 0);
    float l[3] = {2.0f, 5.0f, 4.0f};
    for (int i = 0; i < 100; i++) ASSERT_EQ(sampler_sample(s, l, NULL), 0);
    sampler_destroy(s);
}

/* logit_bias adds to the logit (softmax of logits + bias), -100 bans, +100 forces; repeated
 * ids add up. The reported logprobs stay those of the model's own logits. */
static void test_logit_bias(void)
{
    float logits[4] = {1.0f, 0.5f, 0.0f, -1.0f};
    struct sampler_bias b[3] = {{2, 1.5f}, {0, -0.5f}, {2, 0.25f}};
    struct sampler_params p = sampler_default_params();
    p.temperature = 1;
    p.seed = 3;
    p.bias = b;
    p.n_bias = 3;
    double bias[4] = {-0.5, 0, 1.75, 0}, z = 0, e[4];
    for (int i = 0; i < 4; i++) z += exp(logits[i] + bias[i]);
    for (int i = 0; i < 4; i++) e[i] = exp(logits[i] + bias[i]) / z;
    check_distribution(p, logits, 4, e);
    struct sampler_bias ban = {0, -100}, force = {3, 100};
    p = sampler_default_params();
    p.bias = &ban;
    p.n_bias = 1;
    struct sampler *s = make(p, 4);
    struct sampler_result r;
    p.n_logprobs = 0;
    ASSERT_EQ(sampler_sample(s, logits, &r), 1); /* greedy: 0 is banned */
    ASSERT_NEAR(r.logprob, 0.5 - log(exp(1.0) + exp(0.5) + exp(0.0) + exp(-1.0)), 1e-5); /* unbiased */
    sampler_destroy(s);
    p.bias = &force;
    p.temperature = 1.5f;
    s = make(p, 4);
    for (int i = 0; i < 100; i++) ASSERT_EQ(sampler_sample(s, logits, NULL), 3);
    sampler_destroy(s);
    struct sampler_bias bad = {4, 1};
    p.bias = &bad;
    ASSERT_EQ(sampler_create(&p, 4, &s), SA_ERR_RANGE); /* id out of range */
    bad = (struct sampler_bias){1, NAN};
    ASSERT_EQ(sampler_create(&p, 4, &s), SA_ERR_RANGE);
}

/* min_tokens holds the end-of-generation ids back until that many tokens were accepted;
 * ignore_eos always. */
static void test_min_tokens_and_ignore_eos(void)
{
    float logits[4] = {0.0f, 5.0f, 4.0f, 0.0f}; /* id 1 is EOS and the most likely */
    struct sampler_params p = sampler_default_params();
    p.eog[0] = 1;
    p.n_eog = 1;
    p.min_tokens = 3;
    struct sampler *s = make(p, 4);
    for (int i = 0; i < 3; i++) {
        int32_t t = sampler_sample(s, logits, NULL);
        ASSERT_EQ(t, 2);
        sampler_accept(s, t);
    }
    ASSERT_EQ(sampler_sample(s, logits, NULL), 1); /* allowed from the 4th token */
    sampler_reset(s);
    ASSERT_EQ(sampler_sample(s, logits, NULL), 2); /* the count restarts */
    sampler_destroy(s);
    p.min_tokens = 0;
    p.ignore_eos = true;
    p.temperature = 1;
    s = make(p, 4);
    for (int i = 0; i < 500; i++) ASSERT_NE(sampler_sample(s, logits, NULL), 1);
    sampler_destroy(s);
}

/* A per-call mask of allowed tokens (structured output): greedy and sampled
 * draws stay inside it, logprobs stay the model's, an empty mask is an error. */
static void test_masked(void)
{
    float logits[40];
    for (int i = 0; i < 40; i++) logits[i] = (float)i * 0.1f; /* 39 is the most likely */
    uint32_t allowed[2] = {(1u << 3) | (1u << 17), 1u << (33 - 32)};
    struct sampler_params p = sampler_default_params();
    p.n_logprobs = 1;
    struct sampler *s = NULL;
    ASSERT_OK(sampler_create(&p, 40, &s));
    struct sampler_result res;
    ASSERT_EQ(sampler_sample_masked(s, logits, allowed, &res), 33);
    ASSERT_EQ(res.top[0].id, 39); /* the alternatives are the model's own */
    ASSERT_EQ(sampler_sample_masked(s, logits, NULL, NULL), 39);
    uint32_t none[2] = {0, 0};
    ASSERT_EQ(sampler_sample_masked(s, logits, none, NULL), SA_ERR_NUMERIC);
    sampler_destroy(s);
    p.temperature = 1.5f;
    p.seed = 5;
    ASSERT_OK(sampler_create(&p, 40, &s));
    int hits[3] = {0};
    for (int k = 0; k < 600; k++) {
        int32_t t = sampler_sample_masked(s, logits, allowed, NULL);
        ASSERT_TRUE(t == 3 || t == 17 || t == 33);
        hits[t == 3 ? 0 : t == 17 ? 1 : 2]++;
    }
    ASSERT_TRUE(hits[0] > 0 && hits[1] > 0 && hits[2] > hits[0]); /* all three drawn, by their weights */
    sampler_destroy(s);
}

int main(void)
{
    TEST_RUN(test_greedy_argmax_and_ties);
    TEST_RUN(test_seed_reproducible);
    TEST_RUN(test_temperature_matches_softmax);
    TEST_RUN(test_top_k_top_p_min_p);
    TEST_RUN(test_penalties);
    TEST_RUN(test_logprobs);
    TEST_RUN(test_rejects_bad_params);
    TEST_RUN(test_non_finite_logits);
    TEST_RUN(test_extreme_penalties);
    TEST_RUN(test_logit_bias);
    TEST_RUN(test_min_tokens_and_ignore_eos);
    TEST_RUN(test_masked);
    TEST_DONE();
}
